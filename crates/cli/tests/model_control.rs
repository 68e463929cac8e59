//! The live registry against the real binary: models load in the background, explicit load and
//! unload over HTTP and gRPC, poll mode following new version folders — with a client sending
//! steady traffic throughout that must see no failed request.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{examples, Server};
use serde_json::{json, Value};

use ferroserve_testkit::copy_dir;

fn repo(models: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for m in models {
        copy_dir(&examples().join(m), &dir.path().join(m));
    }
    let p = dir.path().to_path_buf();
    (dir, p)
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = http().post(s.url(path)).json(body).send().unwrap();
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(Value::Null))
}

fn breast_cancer_request() -> (Value, Value) {
    let exp = common::expected();
    let want = exp["breast_cancer"].clone();
    let rows = want["rows"].as_array().unwrap().clone();
    let f = rows[0].as_array().unwrap().len();
    let flat: Vec<Value> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect();
    let req = json!({"inputs": [{"name": "input", "shape": [rows.len(), f], "datatype": "FP32", "data": flat}]});
    (req, want)
}

/// Sends breast_cancer requests until stopped; every answer must be a 200 from a whole model
/// (outputs as the library predicts them, from a version that exists).
fn steady_traffic(
    s: &Server,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<Vec<String>>, Arc<AtomicUsize>) {
    let url = s.url("/v2/models/breast_cancer/infer");
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    let h = std::thread::spawn(move || {
        let (req, want) = breast_cancer_request();
        let client = http();
        let mut failures = Vec::new();
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
            match client.post(&url).json(&req).send() {
                Ok(r) if r.status() == 200 => {
                    let a: Value = r.json().unwrap();
                    common::assert_outputs_match("breast_cancer during reloads", &a, &want, 1e-5);
                }
                Ok(r) => failures.push(format!("{} {}", r.status(), r.text().unwrap_or_default())),
                Err(e) => failures.push(e.to_string()),
            }
            n.fetch_add(1, Ordering::Relaxed);
        }
        failures
    });
    (h, count)
}

fn wait_ready(s: &Server, model: &str) {
    let t = Instant::now();
    loop {
        let r = http()
            .get(s.url(&format!("/v2/models/{model}/ready")))
            .send();
        if r.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{model} not ready in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn explicit_loads_reloads_and_unloads_fail_no_request() {
    let (_dir, repo) = repo(&["breast_cancer", "diabetes"]);
    let s = Server::start(
        &[
            "--repository",
            repo.to_str().unwrap(),
            "--model-control-mode",
            "explicit",
            "--load-model",
            "breast_cancer",
        ],
        &[],
    );
    wait_ready(&s, "breast_cancer");
    // diabetes is in the index, not loaded.
    let (code, idx) = post(&s, "/v2/repository/index", &json!({}));
    assert_eq!(code, 200);
    let d = idx
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "diabetes")
        .unwrap()
        .clone();
    assert_eq!(d["state"], "UNAVAILABLE", "{idx}");
    let metadata: Value = http().get(s.url("/v2")).send().unwrap().json().unwrap();
    assert!(metadata["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("model_repository")));

    let stop = Arc::new(AtomicBool::new(false));
    let (traffic, count) = steady_traffic(&s, stop.clone());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut grpc = rt.block_on(async {
        ferroserve_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient::connect(s.grpc.clone()).await.unwrap()
    });
    for i in 0..50 {
        // Reload the model under traffic, over HTTP and gRPC in turn.
        if i % 2 == 0 {
            let (code, body) = post(&s, "/v2/repository/models/breast_cancer/load", &json!({}));
            assert_eq!(code, 200, "{body}");
        } else {
            rt.block_on(grpc.repository_model_load(
                ferroserve_server::grpc::proto::RepositoryModelLoadRequest {
                    model_name: "breast_cancer".into(),
                    ..Default::default()
                },
            ))
            .unwrap();
        }
        // Load and unload another model beside it.
        let (code, body) = post(&s, "/v2/repository/models/diabetes/load", &json!({}));
        assert_eq!(code, 200, "{body}");
        if i % 2 == 0 {
            let (code, body) = post(&s, "/v2/repository/models/diabetes/unload", &json!({}));
            assert_eq!(code, 200, "{body}");
        } else {
            rt.block_on(grpc.repository_model_unload(
                ferroserve_server::grpc::proto::RepositoryModelUnloadRequest {
                    model_name: "diabetes".into(),
                    ..Default::default()
                },
            ))
            .unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let failures = traffic.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        count.load(Ordering::Relaxed) >= 50,
        "too little traffic to tell"
    );
    // Errors name the model and say what failed.
    let (code, body) = post(&s, "/v2/repository/models/nope/load", &json!({}));
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to load 'nope'"),
        "{body}"
    );
    let (code, body) = post(&s, "/v2/repository/models/diabetes/unload", &json!({}));
    assert_eq!(code, 400, "{body}");
}

#[test]
fn poll_mode_serves_new_versions_and_keeps_serving_through_a_broken_one() {
    let (_dir, repo) = repo(&["breast_cancer"]);
    let s = Server::start(
        &[
            "--repository",
            repo.to_str().unwrap(),
            "--model-control-mode",
            "poll",
            "--repository-poll-secs",
            "0.2",
        ],
        &[],
    );
    wait_ready(&s, "breast_cancer");
    let stop = Arc::new(AtomicBool::new(false));
    let (traffic, count) = steady_traffic(&s, stop.clone());
    let model = repo.join("breast_cancer");
    let version_of = |s: &Server| -> u64 {
        let m: Value = http()
            .get(s.url("/v2/models/breast_cancer"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        m["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str()?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    let mut waited = Vec::new();
    for v in 2..=6u64 {
        // A version folder written elsewhere and moved in whole.
        let staging = repo.join(format!(".staging-{v}"));
        copy_dir(&model.join("1"), &staging);
        let t = Instant::now();
        std::fs::rename(&staging, model.join(v.to_string())).unwrap();
        while version_of(&s) < v {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "version {v} not served"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        waited.push(t.elapsed());
    }
    // A broken version: refused, the last good one keeps serving, the index says why.
    std::fs::create_dir_all(model.join("7")).unwrap();
    std::fs::write(model.join("7/model.json"), "{not json").unwrap();
    let t = Instant::now();
    loop {
        let (_, idx) = post(&s, "/v2/repository/index", &json!({}));
        let says = idx.to_string();
        if says.contains("the last load failed") || says.contains("breast_cancer/7") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the broken version is not reported: {idx}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(version_of(&s), 6);
    stop.store(true, Ordering::Relaxed);
    let failures = traffic.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(count.load(Ordering::Relaxed) >= 20);
    eprintln!("new version folder to serving it (poll 0.2 s): {waited:?}");
}

#[test]
fn the_server_answers_live_before_its_models_are_loaded() {
    let s = Server::start_unloaded(&[], &[]);
    // The listening line is printed once the ports are bound, before models load: live at once.
    let r = http().get(s.url("/v2/health/live")).send().unwrap();
    assert_eq!(r.status(), 200);
    wait_ready(&s, "breast_cancer");
    let (_, idx) = post(&s, "/v2/repository/index", &json!({}));
    assert!(idx
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["state"] != "LOADING" || e["name"] != "breast_cancer"));
}

fn get_json(s: &Server, path: &str) -> Value {
    http().get(s.url(path)).send().unwrap().json().unwrap()
}

fn load_with_config(s: &Server, model: &str, config: &str) -> (u16, Value) {
    post(
        s,
        &format!("/v2/repository/models/{model}/load"),
        &json!({"parameters": {"config": config}}),
    )
}

/// The error of a refused load: it names the model and never a folder of the server's.
fn load_error(body: &Value, model: &str, repo: &Path) -> String {
    let e = body["error"].as_str().unwrap_or_default().to_string();
    assert!(
        e.starts_with(&format!("failed to load '{model}': ")),
        "{body}"
    );
    assert!(
        !e.contains(&*repo.to_string_lossy())
            && !e.contains("/tmp")
            && !e.contains("ferroserve-load"),
        "an answer names a folder: {e}"
    );
    e
}

#[test]
fn a_config_override_is_served_over_http_and_grpc_and_a_bad_one_leaves_the_old_model() {
    use ferroserve_server::grpc::proto::{
        grpc_inference_service_client::GrpcInferenceServiceClient, model_repository_parameter,
        ModelConfigRequest, ModelRepositoryParameter, RepositoryModelLoadRequest,
    };
    let (_dir, repo) = repo(&["breast_cancer"]);
    let s = Server::start(
        &[
            "--repository",
            repo.to_str().unwrap(),
            "--model-control-mode",
            "explicit",
            "--load-model",
            "breast_cancer",
        ],
        &[],
    );
    wait_ready(&s, "breast_cancer");
    let before = get_json(&s, "/v2/models/breast_cancer/config");
    assert_eq!(before["max_batch_size"], 100000, "{before}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut grpc = rt.block_on(async {
        GrpcInferenceServiceClient::connect(s.grpc.clone())
            .await
            .unwrap()
    });
    let grpc_config = |grpc: &mut GrpcInferenceServiceClient<_>| {
        rt.block_on(grpc.model_config(ModelConfigRequest {
            name: "breast_cancer".into(),
            version: String::new(),
        }))
        .unwrap()
        .into_inner()
        .config
        .unwrap()
    };
    let grpc_load = |grpc: &mut GrpcInferenceServiceClient<_>, config: &str| {
        rt.block_on(
            grpc.repository_model_load(RepositoryModelLoadRequest {
                model_name: "breast_cancer".into(),
                parameters: [(
                    "config".to_string(),
                    ModelRepositoryParameter {
                        parameter_choice: Some(
                            model_repository_parameter::ParameterChoice::StringParam(config.into()),
                        ),
                    },
                )]
                .into(),
                ..Default::default()
            }),
        )
    };

    let stop = Arc::new(AtomicBool::new(false));
    let (traffic, count) = steady_traffic(&s, stop.clone());

    // Over HTTP, as tritonclient sends it: the config as a JSON string, integers as strings.
    let config = r#"{"name": "breast_cancer", "max_batch_size": "16",
        "dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 200,
                             "default_queue_policy": {"max_queue_size": 64}},
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}]}"#;
    let (code, body) = load_with_config(&s, "breast_cancer", config);
    assert_eq!(code, 200, "{body}");
    let c = get_json(&s, "/v2/models/breast_cancer/config");
    assert_eq!(c["max_batch_size"], 16, "{c}");
    assert_eq!(
        c["dynamic_batching"]["preferred_batch_size"],
        json!([4, 8]),
        "{c}"
    );
    assert_eq!(
        c["dynamic_batching"]["max_queue_delay_microseconds"], 200,
        "{c}"
    );
    assert_eq!(
        c["dynamic_batching"]["default_queue_policy"]["max_queue_size"], 64,
        "{c}"
    );
    assert_eq!(c["instance_group"][0]["count"], 2, "{c}");
    // The same over gRPC.
    let g = grpc_config(&mut grpc);
    assert_eq!(g.max_batch_size, 16);
    assert_eq!(g.instance_group[0].count, 2);
    let db = g.dynamic_batching.unwrap();
    assert_eq!(
        (db.preferred_batch_size, db.max_queue_delay_microseconds),
        (vec![4, 8], 200)
    );
    assert_eq!(db.default_queue_policy.unwrap().max_queue_size, 64);
    // max_batch_size bounds the rows of one request.
    let rows: Vec<f32> = vec![0.0; 17 * 30];
    let r = http()
        .post(s.url("/v2/models/breast_cancer/infer"))
        .json(&json!({"inputs": [{"name": "input", "shape": [17, 30], "datatype": "FP32", "data": rows}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);

    // Bad configs are refused; the model loaded last keeps serving as it was.
    for (bad, says) in [
        (
            r#""parameters": {"config": {{"max_batch_size": "16"}}}"#,
            "invalid config override: ",
        ),
        (
            r#"{"max_batch_size": 8, "nonsense": 1}"#,
            "unknown field `nonsense`",
        ),
        (r#"{"sequence_batching": {}}"#, "sequence_batching"),
        (r#"{"instance_group": [{"kind": "KIND_GPU"}]}"#, "KIND_GPU"),
        (r#"{"name": "iris"}"#, "name \"iris\""),
        // Only knowable once loaded: this model has a batch dimension.
        (r#"{"max_batch_size": 0}"#, "max_batch_size 0"),
        (
            r#"{"input": [{"name": "input", "data_type": "TYPE_FP64"}]}"#,
            "the model's is FP32",
        ),
        (
            r#"{"max_batch_size": 2, "dynamic_batching": {"preferred_batch_size": [4]}}"#,
            "preferred_batch_sizes has 4",
        ),
    ] {
        let (code, body) = load_with_config(&s, "breast_cancer", bad);
        assert_eq!(code, 400, "{bad}: {body}");
        let e = load_error(&body, "breast_cancer", &repo);
        assert!(e.contains(says), "{bad}: {e}");
        assert_eq!(
            get_json(&s, "/v2/models/breast_cancer/config")["max_batch_size"],
            16,
            "{bad}"
        );
    }
    // The same over gRPC: INVALID_ARGUMENT, in the same words.
    let e = grpc_load(&mut grpc, "{not json").unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with("failed to load 'breast_cancer': invalid config override: "),
        "{}",
        e.message()
    );
    assert_eq!(grpc_config(&mut grpc).max_batch_size, 16);

    // Over gRPC, a new override replaces the last one whole.
    grpc_load(&mut grpc, r#"{"max_batch_size": 32}"#).unwrap();
    let g = grpc_config(&mut grpc);
    assert_eq!((g.max_batch_size, g.instance_group[0].count), (32, 1));
    assert_eq!(
        get_json(&s, "/v2/models/breast_cancer/config")["max_batch_size"],
        32
    );
    // The config answer, sent back, loads as it is.
    let answer = get_json(&s, "/v2/models/breast_cancer/config");
    let (code, body) = load_with_config(&s, "breast_cancer", &answer.to_string());
    assert_eq!(code, 200, "{body}");
    assert_eq!(get_json(&s, "/v2/models/breast_cancer/config"), answer);
    // A load without one goes back to model.toml.
    let (code, body) = post(&s, "/v2/repository/models/breast_cancer/load", &json!({}));
    assert_eq!(code, 200, "{body}");
    assert_eq!(get_json(&s, "/v2/models/breast_cancer/config"), before);

    stop.store(true, Ordering::Relaxed);
    let failures = traffic.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(count.load(Ordering::Relaxed) >= 10);
}

#[test]
fn a_model_folder_sent_as_files_loads_from_a_private_folder_with_its_paths_checked() {
    use base64::Engine;
    use ferroserve_server::grpc::proto::{
        grpc_inference_service_client::GrpcInferenceServiceClient, model_repository_parameter,
        ModelRepositoryParameter, RepositoryModelLoadRequest,
    };
    let (_dir, repo) = repo(&["breast_cancer"]);
    let s = Server::start(
        &[
            "--repository",
            repo.to_str().unwrap(),
            "--model-control-mode",
            "explicit",
        ],
        &[],
    );
    let toml = std::fs::read(repo.join("breast_cancer/model.toml")).unwrap();
    let model = std::fs::read(repo.join("breast_cancer/1/model.json")).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    // Over HTTP, base64 in the JSON body: a model the repository does not have.
    let (code, body) = post(
        &s,
        "/v2/repository/models/bc_sent/load",
        &json!({"parameters": {"config": "{\"max_batch_size\": 8}",
                               "file:model.toml": b64(&toml), "file:1/model.json": b64(&model)}}),
    );
    assert_eq!(code, 200, "{body}");
    wait_ready(&s, "bc_sent");
    assert_eq!(
        get_json(&s, "/v2/models/bc_sent/config")["max_batch_size"],
        8
    );
    let (req, want) = breast_cancer_request();
    let a: Value = http()
        .post(s.url("/v2/models/bc_sent/infer"))
        .json(&req)
        .send()
        .unwrap()
        .json()
        .unwrap();
    common::assert_outputs_match("bc_sent", &a, &want, 1e-5);
    // Its model.toml came along (the class labels).
    let meta = get_json(&s, "/v2/models/bc_sent");
    assert!(meta.to_string().contains("malignant"), "{meta}");
    // Nothing of it is left on disk, and the repository is as it was.
    assert!(!repo.join("bc_sent").exists());
    // Unloaded, it leaves the index (the repository has no such folder).
    let (code, _) = post(&s, "/v2/repository/models/bc_sent/unload", &json!({}));
    assert_eq!(code, 200);
    let (_, idx) = post(&s, "/v2/repository/index", &json!({}));
    assert!(!idx.to_string().contains("bc_sent"), "{idx}");

    // Paths are checked before anything is written: 500, as Triton answers, in its words.
    let long = format!("file:{}", "A".repeat(256));
    for (key, says) in [
        ("file:../x.json", "'..'"),
        ("file:/etc/x.json", "absolute"),
        (long.as_str(), "256 bytes"),
        ("file:1//model.json", "empty path component"),
    ] {
        let (code, body) = post(
            &s,
            "/v2/repository/models/breast_cancer/load",
            &json!({"parameters": {"config": "{}", key: b64(b"x")}}),
        );
        assert_eq!(code, 500, "{key}: {body}");
        let e = load_error(&body, "breast_cancer", &repo);
        assert!(
            e.contains("failed to poll from model repository") && e.contains(says),
            "{key}: {e}"
        );
    }
    // Files need a config, as in Triton; a file that is not base64 is a bad request.
    let (code, body) = post(
        &s,
        "/v2/repository/models/breast_cancer/load",
        &json!({"parameters": {"file:1/model.json": b64(&model)}}),
    );
    assert_eq!(code, 500, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("\"config\" parameter must be given"));
    let (code, body) = post(
        &s,
        "/v2/repository/models/breast_cancer/load",
        &json!({"parameters": {"config": "{}", "file:1/model.json": "%%%"}}),
    );
    assert_eq!(code, 400, "{body}");

    // Over gRPC, bytes: a broken model file fails the load, and what served before serves on.
    let (code, body) = post(&s, "/v2/repository/models/breast_cancer/load", &json!({}));
    assert_eq!(code, 200, "{body}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut grpc = rt.block_on(async {
        GrpcInferenceServiceClient::connect(s.grpc.clone())
            .await
            .unwrap()
    });
    let param = |c: model_repository_parameter::ParameterChoice| ModelRepositoryParameter {
        parameter_choice: Some(c),
    };
    use model_repository_parameter::ParameterChoice::{BytesParam, StringParam};
    let e = rt
        .block_on(
            grpc.repository_model_load(RepositoryModelLoadRequest {
                model_name: "breast_cancer".into(),
                parameters: [
                    ("config".to_string(), param(StringParam("{}".into()))),
                    (
                        "file:1/model.json".to_string(),
                        param(BytesParam(b"{not json".to_vec())),
                    ),
                ]
                .into(),
                ..Default::default()
            }),
        )
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().starts_with("failed to load 'breast_cancer': ")
            && !e.message().contains("/tmp"),
        "{}",
        e.message()
    );
    wait_ready(&s, "breast_cancer");
    let a: Value = http()
        .post(s.url("/v2/models/breast_cancer/infer"))
        .json(&req)
        .send()
        .unwrap()
        .json()
        .unwrap();
    common::assert_outputs_match("breast_cancer after a broken upload", &a, &want, 1e-5);
    // A file as a string over gRPC is refused by type.
    let e = rt
        .block_on(
            grpc.repository_model_load(RepositoryModelLoadRequest {
                model_name: "breast_cancer".into(),
                parameters: [
                    ("config".to_string(), param(StringParam("{}".into()))),
                    (
                        "file:1/model.json".to_string(),
                        param(StringParam("{}".into())),
                    ),
                ]
                .into(),
                ..Default::default()
            }),
        )
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("must be a bytes_param"),
        "{}",
        e.message()
    );
}
