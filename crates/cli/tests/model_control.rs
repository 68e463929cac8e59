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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

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
