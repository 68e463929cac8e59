//! What the container image relies on: `FERROSERVE_REPOSITORY` set in the image with
//! `-e MODEL_FILE=...` given at `docker run` serves the one file; `--model` and `--repository`
//! both on the command line are refused; `--extra-http-port` (`FERROSERVE_EXTRA_HTTP_PORT`)
//! serves the same routes on more ports, as the tutorial image's port 5000.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{examples, ferroserve, repo_root};
use serde_json::{json, Value};

/// `ferroserve serve` on loopback with free ports; the addresses of every "listening" line.
struct Started {
    child: std::process::Child,
    lines: Vec<String>,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str], envs: &[(&str, &str)], listening_lines: usize) -> Started {
    let mut cmd = ferroserve();
    cmd.args([
        "serve",
        "--host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
    ])
    .args(args)
    .envs(envs.iter().copied())
    .current_dir(repo_root())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("start ferroserve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut s = Started {
        child,
        lines: Vec::new(),
    };
    while s.lines.len() < listening_lines {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no listening line after {:?}", s.lines));
        if line.contains(" listening on ") {
            s.lines.push(line);
        }
    }
    s
}

fn addr(line: &str) -> String {
    line.rsplit(' ').next().unwrap().to_string()
}

fn get(base: &str, path: &str) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .get(format!("http://{base}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// The repository index once nothing in it is loading (at most 30 s).
fn index(base: &str) -> Vec<Value> {
    let t = Instant::now();
    loop {
        let r = reqwest::blocking::Client::new()
            .post(format!("http://{base}/v2/repository/index"))
            .json(&json!({}))
            .timeout(Duration::from_secs(10))
            .send()
            .unwrap();
        let text = r.text().unwrap();
        if !text.contains("\"LOADING\"") || t.elapsed() > Duration::from_secs(30) {
            return serde_json::from_str(&text).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn model_file_in_the_environment_wins_over_the_images_repository() {
    let repo = examples();
    let file = repo.join("iris/1/model.onnx");
    let s = start(
        &[],
        &[
            ("FERROSERVE_REPOSITORY", repo.to_str().unwrap()),
            ("MODEL_FILE", file.to_str().unwrap()),
        ],
        2,
    );
    let base = addr(&s.lines[0]);
    let idx = index(&base);
    let names: Vec<&str> = idx.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["model"], "{idx:?}");
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{base}/v2/models/model/infer"))
        .json(&json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(s);

    // A repository on the command line wins over MODEL_FILE in the environment.
    let s = start(
        &["--repository", repo.to_str().unwrap()],
        &[("MODEL_FILE", file.to_str().unwrap())],
        2,
    );
    let idx = index(&addr(&s.lines[0]));
    assert!(idx.iter().any(|m| m["name"] == "iris"), "{idx:?}");
    assert!(!idx.iter().any(|m| m["name"] == "model"), "{idx:?}");
    drop(s);

    // The repository alone, from the environment, serves every model of it.
    let s = start(&[], &[("FERROSERVE_REPOSITORY", repo.to_str().unwrap())], 2);
    let idx = index(&addr(&s.lines[0]));
    assert!(idx.len() > 1, "{idx:?}");
    assert!(idx.iter().any(|m| m["name"] == "iris"), "{idx:?}");
}

#[test]
fn model_and_repository_both_on_the_command_line_are_refused() {
    let repo = examples();
    let file = repo.join("iris/1/model.onnx");
    let out = ferroserve()
        .args(["serve", "--http-port", "0", "--grpc-port", "0"])
        .args(["--model", file.to_str().unwrap()])
        .args(["--repository", repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--model and --repository cannot be used together"),
        "{err}"
    );
}

#[test]
fn extra_http_ports_serve_the_same_routes() {
    let s = start(
        &["--extra-http-port", "0"],
        &[("FERROSERVE_EXTRA_HTTP_PORT", "0")],
        3,
    );
    // The command line wins over the environment: one extra port, printed after gRPC's.
    assert!(
        s.lines[0].starts_with("ferroserve: HTTP listening on "),
        "{:?}",
        s.lines
    );
    assert!(
        s.lines[1].starts_with("ferroserve: gRPC listening on "),
        "{:?}",
        s.lines
    );
    assert!(
        s.lines[2].starts_with("ferroserve: HTTP also listening on "),
        "{:?}",
        s.lines
    );
    let (main, extra) = (addr(&s.lines[0]), addr(&s.lines[2]));
    assert_ne!(main, extra);
    index(&main);
    for base in [&main, &extra] {
        assert_eq!(get(base, "/v2/health/ready").0, 200, "{base}");
        let (status, body) = get(base, "/v2/models/iris");
        assert_eq!(status, 200, "{base}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["name"],
            "iris"
        );
    }
    drop(s);

    // An empty setting adds none (how a deployment turns the Python image's ports off).
    let s = start(&[], &[("FERROSERVE_EXTRA_HTTP_PORT", "")], 2);
    assert_eq!(get(&addr(&s.lines[0]), "/v2/health/live").0, 200);
    drop(s);

    // The environment's comma-separated list, alone: two more ports.
    let s = start(&[], &[("FERROSERVE_EXTRA_HTTP_PORT", "0,0")], 4);
    for line in &s.lines[2..] {
        assert_eq!(get(&addr(line), "/v2/health/live").0, 200, "{line}");
    }
}

#[test]
fn an_extra_port_in_use_is_refused_at_start_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = ferroserve()
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ])
        .args(["--extra-http-port", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--extra-http-port"), "{err}");
    assert!(err.contains(&port), "{err}");
}

#[test]
fn a_folder_holding_one_model_file_is_served_as_kserve_leaves_it() {
    // KServe's storage initializer: the model's files in /mnt/models; its examples name XGBoost
    // and LightGBM models model.bst. The content tells the format.
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt/models");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::copy(
        examples().join("diabetes/1/model.txt"),
        mnt.join("model.bst"),
    )
    .unwrap();
    std::fs::write(mnt.join(".hidden.json"), b"{}").unwrap();
    std::fs::write(mnt.join("README.md"), b"not a model").unwrap();
    let s = start(
        &[
            "--model",
            mnt.to_str().unwrap(),
            "--model-name",
            "lightgbm-diabetes",
        ],
        &[],
        2,
    );
    let base = addr(&s.lines[0]);
    let idx = index(&base);
    assert_eq!(idx.len(), 1, "{idx:?}");
    assert_eq!(idx[0]["name"], "lightgbm-diabetes");
    assert_eq!(idx[0]["state"], "READY", "{idx:?}");
    let body = std::fs::read(repo_root().join("examples/requests/diabetes_v2.json")).unwrap();
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{base}/v2/models/lightgbm-diabetes/infer"))
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    let want = &common::expected()["diabetes"]["requests"]["diabetes_v2.json"];
    common::assert_outputs_match("diabetes in a folder", &answer, want, 1e-4);
    drop(s);

    // No model file, or two: refused at start, naming what was found.
    let refused = |what: &str| {
        let out = ferroserve()
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--http-port",
                "0",
                "--grpc-port",
                "0",
            ])
            .args(["--model", mnt.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    std::fs::copy(examples().join("iris/1/model.onnx"), mnt.join("model.onnx")).unwrap();
    let err = refused("two files");
    assert!(
        err.contains("2 model files in the folder (model.bst, model.onnx)"),
        "{err}"
    );
    std::fs::remove_file(mnt.join("model.bst")).unwrap();
    std::fs::remove_file(mnt.join("model.onnx")).unwrap();
    let err = refused("none");
    assert!(err.contains("no model file in the folder"), "{err}");
}

/// Writes a ConfigMap volume as the kubelet does: the files in a timestamped hidden folder,
/// `..data` linked to it, each top-level name linked through `..data`; an update writes a new
/// folder, swaps `..data` atomically (a rename) and removes the old folder.
fn configmap_volume(root: &std::path::Path, generation: u32, models: &[&str]) {
    use std::os::unix::fs::symlink;
    let stamp = format!("..2026_12_03_00_00_0{generation}.000000001");
    for m in models {
        let from = examples().join(m);
        let to = root.join(&stamp).join(m);
        std::fs::create_dir_all(to.join("1")).unwrap();
        std::fs::copy(from.join("model.toml"), to.join("model.toml")).unwrap();
        for f in std::fs::read_dir(from.join("1")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join("1").join(f.file_name().unwrap())).unwrap();
        }
    }
    let old = std::fs::read_link(root.join("..data")).ok();
    symlink(&stamp, root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    for m in models {
        let link = root.join(m);
        if link.symlink_metadata().is_err() {
            symlink(format!("..data/{m}"), &link).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(root.join(old)).unwrap();
    }
}

#[test]
fn a_kubernetes_configmap_volume_is_a_repository_and_its_updates_are_followed() {
    // deploy/k8s mounts the models' ConfigMap at /models with `model-control-mode = "poll"`.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("models");
    std::fs::create_dir_all(&root).unwrap();
    configmap_volume(&root, 1, &["iris"]);
    let s = start(
        &[
            "--repository",
            root.to_str().unwrap(),
            "--model-control-mode",
            "poll",
            "--repository-poll-secs",
            "0.2",
        ],
        &[],
        2,
    );
    let base = addr(&s.lines[0]);
    let idx = index(&base);
    let names: Vec<&str> = idx.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["iris"],
        "the kubelet's hidden entries are no models: {idx:?}"
    );
    assert_eq!(idx[0]["state"], "READY", "{idx:?}");

    // `kubectl apply` of a ConfigMap with a second model: served once the kubelet swapped it.
    configmap_volume(&root, 2, &["iris", "breast_cancer"]);
    let t = Instant::now();
    loop {
        let idx = index(&base);
        let ready = |n: &str| idx.iter().any(|m| m["name"] == n && m["state"] == "READY");
        if ready("iris") && ready("breast_cancer") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{idx:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The old generation's files are gone: iris answers from the new one.
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{base}/v2/models/iris/infer"))
        .json(&json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
