//! End-to-end: answers never show where the repository is on disk nor what a file holds. A
//! repository of broken models (bad TOML, `model.toml` linked to a secret file outside, links
//! out for an artifact, a version folder and a model folder, `..` out of a version folder, an
//! absolute `file`, a missing, a corrupt and an absent artifact, a pickle, a dangling link ...)
//! is served, every GET route (and the POST ones that answer about a model) is asked over HTTP
//! and the metadata, ready, statistics, configuration, index and infer calls over gRPC, and no
//! answer may hold the temporary folder's path or the secret file's content, while the server
//! log holds the full paths and the quoted TOML line. Links inside the repository keep working;
//! `--follow-symlinks` follows the links out. In single-model mode the answers name the file,
//! not its folder.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{client, examples, Server};
use ferroserve_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferroserve_server::grpc::proto::*;
use serde_json::Value;

const SECRET: &str = "FERROSERVE-SECRET-7b1d";
const BAD_LINE: &str = "BADLINE-MARKER-91 ::: nope";

fn model_json() -> PathBuf {
    examples().join("breast_cancer/1/model.json")
}

fn write(p: &Path, content: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn copy_model(to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(model_json(), to).unwrap();
}

fn link(target: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, at).unwrap();
}

/// `<tmp>/outside` (a secret file, a model, a version folder, a model folder) and `<tmp>/repo`.
fn layout(tmp: &Path) -> PathBuf {
    let out = tmp.join("outside");
    write(
        &out.join("secret.txt"),
        format!("{SECRET}\nroot:x:0:0:root:/root:/bin/bash\n").as_bytes(),
    );
    copy_model(&out.join("model.json"));
    copy_model(&out.join("version/model.json"));
    copy_model(&out.join("model_folder/1/model.json"));

    let repo = tmp.join("repo");
    copy_model(&repo.join("good/1/model.json"));
    // Links that stay inside the repository work (`.shared` is hidden: not a model).
    copy_model(&repo.join(".shared/model.json"));
    write(
        &repo.join(".shared/model.toml"),
        b"description = \"linked inside\"\n",
    );
    copy_model(&repo.join("toml_inside/1/model.json"));
    link(
        Path::new("../.shared/model.toml"),
        &repo.join("toml_inside/model.toml"),
    );
    link(
        Path::new("../../.shared/model.json"),
        &repo.join("artifact_inside/1/model.json"),
    );
    link(&repo.join("good/1"), &repo.join("version_inside/1"));
    link(Path::new("good"), &repo.join("folder_inside"));

    // Links out.
    copy_model(&repo.join("toml_secret/1/model.json"));
    link(
        &out.join("secret.txt"),
        &repo.join("toml_secret/model.toml"),
    );
    link(
        &out.join("model.json"),
        &repo.join("artifact_out/1/model.json"),
    );
    link(&out.join("version"), &repo.join("version_out/1"));
    link(&out.join("model_folder"), &repo.join("folder_out"));
    std::fs::create_dir_all(repo.join("dotdot/1")).unwrap();
    write(
        &repo.join("dotdot/model.toml"),
        b"file = \"../../../outside/model.json\"\n",
    );
    std::fs::create_dir_all(repo.join("absolute/1")).unwrap();
    write(
        &repo.join("absolute/model.toml"),
        format!("file = {:?}\n", out.join("model.json").to_str().unwrap()).as_bytes(),
    );

    // Broken in other ways.
    copy_model(&repo.join("bad_toml/1/model.json"));
    write(
        &repo.join("bad_toml/model.toml"),
        format!("threads = 1\n{BAD_LINE}\n").as_bytes(),
    );
    std::fs::create_dir_all(repo.join("missing/1")).unwrap();
    write(&repo.join("missing/model.toml"), b"file = \"nope.json\"\n");
    write(&repo.join("corrupt/1/model.json"), b"{\"learner\": 12");
    write(&repo.join("corrupt_onnx/1/model.onnx"), b"\x08\x07garbage");
    write(
        &repo.join("corrupt_onnx/model.toml"),
        b"backend = \"onnx\"\n",
    );
    std::fs::create_dir_all(repo.join("empty/1")).unwrap();
    write(&repo.join("pickled/1/model.pkl"), b"\x80\x04not really");
    copy_model(&repo.join("dangling/1/model.json"));
    link(&tmp.join("nowhere.toml"), &repo.join("dangling/model.toml"));
    copy_model(&repo.join("renamed/1/model.json"));
    write(&repo.join("renamed/model.toml"), b"name = \"other\"\n");
    copy_model(&repo.join("policy/1/model.json"));
    write(
        &repo.join("policy/model.toml"),
        b"version_policy = { specific = [1, 7] }\n",
    );
    copy_model(&repo.join("misfit/1/model.json"));
    write(
        &repo.join("misfit/model.toml"),
        b"feature_names = [\"a\"]\n",
    );
    copy_model(&repo.join("misfit_rows/1/model.json"));
    write(
        &repo.join("misfit_rows/model.toml"),
        b"sample_rows = [[1.0]]\n",
    );
    repo
}

/// What no answer may contain: every spelling of the temporary folder, and the secret.
fn forbidden(tmp: &Path) -> Vec<String> {
    let mut v = vec![
        tmp.display().to_string(),
        tmp.canonicalize().unwrap().display().to_string(),
        SECRET.to_string(),
        "root:x:0:0".to_string(),
        BAD_LINE.to_string(),
        "BADLINE-MARKER".to_string(),
    ];
    v.sort();
    v.dedup();
    v
}

#[track_caller]
fn assert_clean(what: &str, answer: &str, forbidden: &[String]) {
    for f in forbidden {
        assert!(
            !answer.contains(f.as_str()),
            "{what} holds {f:?}:\n{answer}"
        );
    }
}

/// Every answer over HTTP about the server and each of `models`: GET routes (those listed
/// here and every GET path of /openapi.json) and the POST ones that answer about a model.
async fn http_answers(s: &Server, models: &[String]) -> Vec<(String, String)> {
    let c = client();
    let mut paths: BTreeSet<String> = [
        "/",
        "/v2",
        "/v2/",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/stats",
        "/metrics",
        "/models",
        "/openapi.json",
        "/docs/",
        "/apidocs/",
        "/no/such/route",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for m in models.iter().map(String::as_str).chain(["nope"]) {
        for p in [
            "",
            "/ready",
            "/config",
            "/stats",
            "/versions/1",
            "/versions/1/ready",
            "/versions/1/config",
            "/versions/1/stats",
            "/versions/7",
            "/versions/7/ready",
        ] {
            paths.insert(format!("/v2/models/{m}{p}"));
        }
        paths.insert(format!("/models/{m}"));
        paths.insert(format!("/models/{m}/predict"));
        paths.insert(format!("/v1/models/{m}"));
    }
    let doc: Value = c
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if ops.get("get").is_none() {
            continue;
        }
        if !path.contains('{') {
            paths.insert(path.clone());
            continue;
        }
        for m in models {
            let mut p = path.clone();
            for (k, v) in [
                ("{model}", m.as_str()),
                ("{model_name}", m.as_str()),
                ("{name}", m.as_str()),
                ("{version}", "1"),
                ("{model_version}", "1"),
            ] {
                p = p.replace(k, v);
            }
            paths.insert(p);
        }
    }
    let mut out = Vec::new();
    for p in &paths {
        let r = c.get(s.url(p)).send().await.unwrap();
        let status = r.status();
        let headers = format!("{:?}", r.headers());
        let body = r.text().await.unwrap();
        out.push((format!("GET {p} ({status})"), format!("{headers}\n{body}")));
    }
    let posts: Vec<(String, &str)> = models
        .iter()
        .flat_map(|m| {
            [
                (format!("/v2/models/{m}/infer"), r#"{"inputs": []}"#),
                (
                    format!("/v2/models/{m}/versions/1/infer"),
                    r#"{"inputs": []}"#,
                ),
                (format!("/models/{m}/predict"), "[[1.0, 2.0]]"),
                (
                    format!("/v1/models/{m}:predict"),
                    r#"{"instances": [[1.0]]}"#,
                ),
            ]
        })
        .chain([("/v2/repository/index".to_string(), "{}")])
        .collect();
    for (p, body) in posts {
        let r = c
            .post(s.url(&p))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        out.push((format!("POST {p} ({status})"), r.text().await.unwrap()));
    }
    out
}

/// Every answer over gRPC about the server and each of `models`.
async fn grpc_answers(s: &Server, models: &[String]) -> Vec<(String, String)> {
    let mut c = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .expect("connect to the gRPC port");
    let mut out = vec![
        (
            "ServerMetadata".to_string(),
            format!("{:?}", c.server_metadata(ServerMetadataRequest {}).await),
        ),
        (
            "ServerReady".to_string(),
            format!("{:?}", c.server_ready(ServerReadyRequest {}).await),
        ),
        (
            "RepositoryIndex".to_string(),
            format!(
                "{:?}",
                c.repository_index(RepositoryIndexRequest::default()).await
            ),
        ),
        (
            "ModelStatistics (all)".to_string(),
            format!(
                "{:?}",
                c.model_statistics(ModelStatisticsRequest::default()).await
            ),
        ),
    ];
    for m in models {
        for version in ["", "1", "7"] {
            let what = |call: &str| format!("{call} {m} version {version:?}");
            let (name, version) = (m.clone(), version.to_string());
            out.push((
                what("ModelMetadata"),
                format!(
                    "{:?}",
                    c.model_metadata(ModelMetadataRequest {
                        name: name.clone(),
                        version: version.clone(),
                    })
                    .await
                ),
            ));
            out.push((
                what("ModelReady"),
                format!(
                    "{:?}",
                    c.model_ready(ModelReadyRequest {
                        name: name.clone(),
                        version: version.clone(),
                    })
                    .await
                ),
            ));
            out.push((
                what("ModelStatistics"),
                format!(
                    "{:?}",
                    c.model_statistics(ModelStatisticsRequest {
                        name: name.clone(),
                        version: version.clone(),
                    })
                    .await
                ),
            ));
            out.push((
                what("ModelConfig"),
                format!(
                    "{:?}",
                    c.model_config(ModelConfigRequest {
                        name: name.clone(),
                        version: version.clone(),
                    })
                    .await
                ),
            ));
            out.push((
                what("ModelInfer"),
                format!(
                    "{:?}",
                    c.model_infer(ModelInferRequest {
                        model_name: name,
                        model_version: version,
                        ..Default::default()
                    })
                    .await
                ),
            ));
        }
    }
    out
}

/// Everything the server logged so far (waiting until it has been quiet for a moment).
fn log_of(s: &Server) -> String {
    let mut lines = Vec::new();
    while let Ok(l) = s.stderr.recv_timeout(Duration::from_millis(500)) {
        lines.push(l);
        if lines.len() > 100_000 {
            break;
        }
    }
    lines.join("\n")
}

async fn index(s: &Server) -> Vec<Value> {
    client()
        .post(s.url("/v2/repository/index"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `name`'s (first) row of the index: its state and reason.
fn row<'a>(index: &'a [Value], name: &str) -> (&'a str, &'a str) {
    let m = index
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {index:?}"));
    (
        m["state"].as_str().unwrap(),
        m["reason"].as_str().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_shows_the_repository_path_or_a_files_content() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let repo = layout(tmp);
    let s = Server::start(&["--repository", repo.to_str().unwrap()], &[]);
    let idx = index(&s).await;

    for name in [
        "good",
        "toml_inside",
        "artifact_inside",
        "version_inside",
        "folder_inside",
    ] {
        assert_eq!(row(&idx, name), ("READY", ""), "{name}");
    }
    for (name, says) in [
        (
            "toml_secret",
            "toml_secret/model.toml: leads out of the repository",
        ),
        (
            "artifact_out",
            "artifact_out/1/model.json: leads out of the repository",
        ),
        ("version_out", "version_out/1: leads out of the repository"),
        ("folder_out", "folder_out: leads out of the repository"),
        (
            "dotdot",
            "dotdot/1/../../../outside/model.json: leads out of the repository",
        ),
        (
            "absolute",
            "absolute/model.toml: file: expected a path relative to the version folder",
        ),
        ("bad_toml", "bad_toml/model.toml: line 2, column 19: "),
        (
            "missing",
            "missing/1/nope.json: does not exist (model.toml file = \"nope.json\")",
        ),
        ("corrupt", "corrupt/1/model.json: malformed xgboost model"),
        ("corrupt_onnx", "corrupt_onnx/1/model.onnx: "),
        ("empty", "empty/1: no model file"),
        ("pickled", "pickled/1/model.pkl is a Python pickle"),
        ("dangling", "dangling/model.toml: "),
        ("renamed", "renamed/model.toml: name = \"other\""),
        (
            "policy",
            "policy: version_policy names versions [7] that have no folder",
        ),
        (
            "misfit",
            "misfit/1/model.json: model.toml feature_names has 1 names",
        ),
        ("misfit_rows", "misfit_rows/model.toml: sample_rows"),
    ] {
        let (state, reason) = row(&idx, name);
        assert_eq!(state, "UNAVAILABLE", "{name}: {reason}");
        assert!(
            reason.starts_with(says),
            "{name}: {reason:?}, expected {says:?}"
        );
    }
    // The --follow-symlinks hint is given where it helps.
    assert!(row(&idx, "artifact_out").1.contains("--follow-symlinks"));

    let models: Vec<String> = idx
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let forbidden = forbidden(tmp);
    let http = http_answers(&s, &models).await;
    assert!(http.len() > 300, "{} HTTP answers", http.len());
    for (what, answer) in &http {
        assert_clean(what, answer, &forbidden);
    }
    let grpc = grpc_answers(&s, &models).await;
    for (what, answer) in &grpc {
        assert_clean(what, answer, &forbidden);
    }
    // The not-ready reasons did reach the answers (the walk saw them), named relatively.
    let all: String = http.iter().chain(&grpc).map(|(_, a)| a.as_str()).collect();
    for says in [
        "toml_secret/model.toml: leads out",
        "bad_toml/model.toml: line 2",
        "corrupt/1/model.json: malformed",
    ] {
        assert!(all.contains(says), "no answer says {says:?}");
    }

    // The log has the detail: the full paths, where the links lead, the quoted TOML line.
    let log = log_of(&s);
    let real = tmp.canonicalize().unwrap();
    for want in [
        repo.join("bad_toml/model.toml").display().to_string(),
        BAD_LINE.to_string(),
        format!("resolves to {}", real.join("outside/secret.txt").display()),
        format!("resolves to {}", real.join("outside/version").display()),
        repo.join("corrupt/1/model.json").display().to_string(),
    ] {
        assert!(log.contains(&want), "the log lacks {want:?}:\n{log}");
    }
    // A refused link is never read: not even the log has the secret.
    assert!(!log.contains(SECRET), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_symlinks_serves_the_links_out_and_still_quotes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let repo = layout(tmp);
    let s = Server::start(
        &["--repository", repo.to_str().unwrap()],
        &[("FERROSERVE_FOLLOW_SYMLINKS", "true")],
    );
    let idx = index(&s).await;
    for name in [
        "good",
        "toml_inside",
        "artifact_out",
        "version_out",
        "folder_out",
        "dotdot",
    ] {
        assert_eq!(row(&idx, name), ("READY", ""), "{name}");
    }
    // The secret is read now, as TOML: the answer says where it went wrong, not what is there.
    let (state, reason) = row(&idx, "toml_secret");
    assert_eq!(state, "UNAVAILABLE");
    assert!(
        reason.starts_with("toml_secret/model.toml: line 1, column "),
        "{reason}"
    );
    let models: Vec<String> = ["toml_secret", "artifact_out", "bad_toml", "missing"]
        .map(String::from)
        .to_vec();
    let forbidden = forbidden(tmp);
    for (what, answer) in http_answers(&s, &models)
        .await
        .iter()
        .chain(&grpc_answers(&s, &models).await)
    {
        assert_clean(what, answer, &forbidden);
    }
    // The log quotes it: the operator asked for links out to be followed.
    let log = log_of(&s);
    assert!(log.contains(SECRET), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_model_file_is_named_without_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let file = tmp.join("deep/folder/iris/1/model.json");
    copy_model(&file);
    write(
        &tmp.join("deep/folder/iris/model.toml"),
        b"description = \"one file\"\n",
    );
    let s = Server::start(&["--model", file.to_str().unwrap()], &[]);
    let idx = index(&s).await;
    assert_eq!(row(&idx, "model"), ("READY", ""));
    let models = vec!["model".to_string()];
    let forbidden = forbidden(tmp);
    for (what, answer) in http_answers(&s, &models)
        .await
        .iter()
        .chain(&grpc_answers(&s, &models).await)
    {
        assert_clean(what, answer, &forbidden);
    }
    drop(s);
    // A model.toml beside the file that links out of its folder is refused at start-up, and
    // the operator's terminal gets the full story.
    std::fs::remove_file(tmp.join("deep/folder/iris/model.toml")).unwrap();
    write(&tmp.join("elsewhere.toml"), b"description = \"x\"\n");
    link(
        &tmp.join("elsewhere.toml"),
        &tmp.join("deep/folder/iris/model.toml"),
    );
    let mut child = common::ferroserve()
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ])
        .args(["--model", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..200 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ferroserve served a model whose model.toml links out of its folder");
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("resolves to") && err.contains("elsewhere.toml"),
        "{err}"
    );
}
