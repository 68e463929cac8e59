//! API keys, scopes, the models a key may use, rate limits and CORS, end to end: the real
//! binary with `--api-keys FILE` on 127.0.0.1, every route class over HTTP (reqwest) and the
//! gRPC methods (a tonic client of the project's proto) with no key, a wrong key, a key of the
//! wrong scope, a key for another model and a valid key; the keys file changed while serving;
//! a key's and a model's rate limit reached (429 with Retry-After, RESOURCE_EXHAUSTED) and then
//! served again; CORS preflights allowed and refused.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{request_file, Server};
use ferroserve_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferroserve_server::grpc::proto::model_infer_request::InferInputTensor;
use ferroserve_server::grpc::proto::*;
use serde_json::{json, Value};
use tonic::Code;

fn sha(key: &str) -> String {
    ferroserve_server::auth::sha256_hex(key)
}

/// A key of these tests: name, key, scopes, models, rate.
type KeySpec = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

const KEYS: [KeySpec; 8] = [
    ("reader", "key-reader-1", "\"read\"", None, None),
    (
        "iris-app",
        "key-iris-2",
        "\"infer\"",
        Some("\"iris\""),
        None,
    ),
    ("ops", "key-ops-3", "\"manage\", \"read\"", None, None),
    ("root", "key-root-4", "\"admin\"", None, None),
    ("slow", "key-slow-5", "\"infer\"", None, Some("2/s")),
    ("jobs", "key-jobs-6", "\"infer\"", Some("\"iris\""), None),
    ("other-app", "key-other-7", "\"infer\"", None, None),
    (
        "iris-reader",
        "key-iris-read-8",
        "\"read\"",
        Some("\"iris\""),
        None,
    ),
];

fn keys_file(keys: &[KeySpec]) -> String {
    let mut s = String::new();
    for (name, key, scopes, models, rate) in keys {
        s += &format!(
            "[[keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [{scopes}]\n",
            sha(key)
        );
        if let Some(m) = models {
            s += &format!("models = [{m}]\n");
        }
        if let Some(r) = rate {
            s += &format!("rate = \"{r}\"\n");
        }
        s += "\n";
    }
    s
}

struct Setup {
    _dir: tempfile::TempDir,
    keys: std::path::PathBuf,
    s: Server,
}

fn start(extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, keys_file(&KEYS)).unwrap();
    let data = dir.path().join("data");
    let mut args = vec![
        "--api-keys",
        keys.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--request-log",
        "off",
        "--model-rate-limit",
        "diabetes=2/s",
        "--cors-origin",
        "https://app.example.com",
    ];
    args.extend_from_slice(extra);
    // The index needs a key here: wait for the models with the admin's.
    let s = Server::start_unloaded(&args, &[]);
    let t = Instant::now();
    loop {
        let (status, _, body) = call(
            &s,
            "POST",
            "/v2/repository/index",
            Some("key-root-4"),
            Some(b"{}".to_vec()),
        );
        assert_eq!(status, 200, "{body}");
        if !body.contains("LOADING") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "models still loading: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Setup { _dir: dir, keys, s }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Status and body of a request with `key` as a bearer token (`None`: no key).
fn call(
    s: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = http().request(method.parse().unwrap(), s.url(path));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().unwrap())
}

fn iris_v2() -> Vec<u8> {
    request_file("iris_v2.json")
}

fn wine_v2() -> Vec<u8> {
    request_file("wine_v2.json")
}

/// A refusal is a v2 error body whose message says nothing about which part of a key matched.
fn refused(what: &str, got: (u16, reqwest::header::HeaderMap, String), status: u16) {
    assert_eq!(got.0, status, "{what}: {}", got.2);
    let v: Value = serde_json::from_str(&got.2).unwrap_or_else(|_| panic!("{what}: {}", got.2));
    let msg = v["error"].as_str().unwrap_or_else(|| panic!("{what}: {v}"));
    assert!(!msg.contains("key-"), "{what}: the key is quoted: {msg}");
    if status == 401 {
        assert!(
            got.1.get("www-authenticate").is_some(),
            "{what}: no WWW-Authenticate"
        );
    }
}

#[test]
fn every_route_class_needs_a_key_of_its_scope_and_model() {
    let Setup { s, _dir, .. } = start(&[]);
    // Health stays open: probes carry no key.
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/iris/ready",
    ] {
        assert_eq!(call(&s, "GET", path, None, None).0, 200, "{path}");
    }
    // Reading: metadata, config, stats, index, metrics, docs.
    for (method, path) in [
        ("GET", "/v2"),
        ("GET", "/v2/models/iris"),
        ("GET", "/v2/models/iris/config"),
        ("GET", "/v2/models/iris/stats"),
        ("POST", "/v2/repository/index"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/models/iris"),
    ] {
        let body = (method == "POST").then(|| b"{}".to_vec());
        refused(path, call(&s, method, path, None, body.clone()), 401);
        refused(
            path,
            call(&s, method, path, Some("key-nope"), body.clone()),
            401,
        );
        refused(
            path,
            call(&s, method, path, Some("key-reader-"), body.clone()),
            401,
        );
        refused(
            path,
            call(&s, method, path, Some("key-iris-2"), body.clone()),
            403,
        );
        assert_eq!(
            call(&s, method, path, Some("key-reader-1"), body.clone()).0,
            200,
            "{path}"
        );
        assert_eq!(
            call(&s, method, path, Some("key-root-4"), body).0,
            200,
            "{path}"
        );
    }
    // The OpenAPI document says how to send a key (Swagger UI's Authorize), and that health
    // needs none.
    let (_, _, doc) = call(&s, "GET", "/openapi.json", Some("key-reader-1"), None);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKey"]["name"],
        "X-API-Key"
    );
    assert_eq!(
        doc["paths"]["/v2/health/ready"]["get"]["security"],
        json!([])
    );
    assert!(doc["paths"]["/v2/models/{model}/infer"]["post"]["responses"]["401"].is_object());
    // A key limited to iris may not read another model's metadata either.
    refused(
        "wine metadata",
        call(&s, "GET", "/v2/models/wine", Some("key-iris-2"), None),
        403,
    );
    // Inference: v2, the friendly routes, KServe v1, a route alias (the FastAPI tutorial's
    // /predict serves wine).
    let infer = "/v2/models/iris/infer";
    refused("infer", call(&s, "POST", infer, None, Some(iris_v2())), 401);
    refused(
        "infer",
        call(&s, "POST", infer, Some("key-reader-1"), Some(iris_v2())),
        403,
    );
    refused(
        "infer",
        call(&s, "POST", infer, Some("key-ops-3"), Some(iris_v2())),
        403,
    );
    assert_eq!(
        call(&s, "POST", infer, Some("key-iris-2"), Some(iris_v2())).0,
        200
    );
    refused(
        "wine infer",
        call(
            &s,
            "POST",
            "/v2/models/wine/infer",
            Some("key-iris-2"),
            Some(wine_v2()),
        ),
        403,
    );
    assert_eq!(
        call(
            &s,
            "POST",
            "/v2/models/wine/infer",
            Some("key-root-4"),
            Some(wine_v2())
        )
        .0,
        200
    );
    let rows = br#"[[5.1, 3.5, 1.4, 0.2]]"#.to_vec();
    assert_eq!(
        call(
            &s,
            "POST",
            "/models/iris/predict",
            Some("key-iris-2"),
            Some(rows.clone())
        )
        .0,
        200
    );
    refused(
        "wine predict",
        call(
            &s,
            "POST",
            "/models/wine/predict",
            Some("key-iris-2"),
            Some(rows),
        ),
        403,
    );
    let v1 = br#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#.to_vec();
    assert_eq!(
        call(
            &s,
            "POST",
            "/v1/models/iris:predict",
            Some("key-iris-2"),
            Some(v1.clone())
        )
        .0,
        200
    );
    refused(
        "v1 no key",
        call(&s, "POST", "/v1/models/iris:predict", None, Some(v1)),
        401,
    );
    let batch = request_file("wine_batch_1.json");
    refused(
        "alias no key",
        call(&s, "POST", "/predict", None, Some(batch.clone())),
        401,
    );
    refused(
        "alias of another model",
        call(
            &s,
            "POST",
            "/predict",
            Some("key-iris-2"),
            Some(batch.clone()),
        ),
        403,
    );
    assert_eq!(
        call(&s, "POST", "/predict", Some("key-root-4"), Some(batch)).0,
        200
    );
    // Managing: load and unload need `manage` (this server's model set is fixed: refused for
    // that reason, not for the key's).
    let load = "/v2/repository/models/iris/load";
    refused(
        "load",
        call(&s, "POST", load, Some("key-reader-1"), Some(b"{}".to_vec())),
        403,
    );
    let (status, _, body) = call(&s, "POST", load, Some("key-ops-3"), Some(b"{}".to_vec()));
    assert!(![401, 403].contains(&status), "{status} {body}");
    // X-API-Key is a key as Bearer is; another scheme is none.
    let r = http()
        .get(s.url("/v2/models/iris"))
        .header("x-api-key", "key-reader-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .get(s.url("/v2/models/iris"))
        .header("authorization", "Basic key-reader-1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // Every refusal was counted by key name; no key appears as the empty name.
    let (_, _, metrics) = call(&s, "GET", "/metrics", Some("key-reader-1"), None);
    for line in [
        "ferroserve_auth_requests_total{key=\"iris-app\",result=\"forbidden\"}",
        "ferroserve_auth_requests_total{key=\"\",result=\"unauthenticated\"}",
        "ferroserve_auth_requests_total{key=\"root\",result=\"allowed\"}",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    assert!(!metrics.contains("key-"), "a key in /metrics");
}

#[test]
fn batch_jobs_need_infer_for_their_model_and_are_seen_by_their_owner_and_manage_only() {
    let Setup { s, _dir, .. } = start(&[]);
    let job = |key: &str, model: &str| {
        let body = json!({"model": model, "rows": [[5.1, 3.5, 1.4, 0.2]]});
        call(
            &s,
            "POST",
            "/jobs",
            Some(key),
            Some(body.to_string().into_bytes()),
        )
    };
    refused("job of another model", job("key-jobs-6", "wine"), 403);
    refused("job with read", job("key-reader-1", "iris"), 403);
    let (status, _, body) = job("key-jobs-6", "iris");
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The owner sees its job, in the list too, and its results; the job names its owner.
    let (status, _, body) = call(&s, "GET", &format!("/jobs/{id}"), Some("key-jobs-6"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"owner\":\"jobs\""), "{body}");
    let listed = |key: &str| {
        let (status, _, body) = call(&s, "GET", "/jobs", Some(key), None);
        assert_eq!(status, 200, "{body}");
        body.contains(&id)
    };
    assert!(listed("key-jobs-6"));
    // Another key with `infer`: the job is not there for it (404, as one that does not exist).
    for (method, path) in [
        ("GET", format!("/jobs/{id}")),
        ("GET", format!("/jobs/{id}/results")),
        ("POST", format!("/jobs/{id}/cancel")),
    ] {
        let (status, _, body) = call(&s, method, &path, Some("key-other-7"), None);
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(body.contains("no batch job"), "{body}");
    }
    assert!(!listed("key-other-7"));
    // `manage` sees every job; `read` alone none of the routes.
    assert!(listed("key-ops-3"));
    assert_eq!(
        call(&s, "GET", &format!("/jobs/{id}"), Some("key-ops-3"), None).0,
        200
    );
    refused(
        "list jobs with read",
        call(&s, "GET", "/jobs", Some("key-reader-1"), None),
        403,
    );
    // The owner may cancel (refused only because a one-row job has finished already).
    let (status, _, body) = call(
        &s,
        "POST",
        &format!("/jobs/{id}/cancel"),
        Some("key-jobs-6"),
        None,
    );
    assert!(
        status == 200 || (status == 400 && body.contains("has already")),
        "{status} {body}"
    );
}

#[test]
fn rate_limits_answer_429_with_retry_after_then_serve_again() {
    let Setup { s, _dir, .. } = start(&[]);
    // The key's: 2 per second.
    let infer = |key: &str, model: &str, body: Vec<u8>| {
        call(
            &s,
            "POST",
            &format!("/v2/models/{model}/infer"),
            Some(key),
            Some(body),
        )
    };
    let t = Instant::now();
    assert_eq!(infer("key-slow-5", "iris", iris_v2()).0, 200);
    assert_eq!(infer("key-slow-5", "iris", iris_v2()).0, 200);
    let third = infer("key-slow-5", "iris", iris_v2());
    if t.elapsed() < Duration::from_millis(400) {
        refused("third in a second", third.clone(), 429);
        assert_eq!(third.1.get("retry-after").unwrap(), "1");
        // Another key is not held up by it.
        assert_eq!(infer("key-root-4", "iris", iris_v2()).0, 200);
    }
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(infer("key-slow-5", "iris", iris_v2()).0, 200);
    // The model's: diabetes 2 per second, whichever key calls.
    let body = request_file("diabetes_v2.json");
    let t = Instant::now();
    assert_eq!(infer("key-root-4", "diabetes", body.clone()).0, 200);
    assert_eq!(infer("key-ops-3", "diabetes", body.clone()).0, 403);
    assert_eq!(infer("key-slow-5", "diabetes", body.clone()).0, 200);
    let third = infer("key-root-4", "diabetes", body.clone());
    if t.elapsed() < Duration::from_millis(400) {
        refused("model limit", third.clone(), 429);
        assert!(third.2.contains("diabetes"), "{}", third.2);
    }
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(infer("key-root-4", "diabetes", body).0, 200);
}

#[test]
fn the_keys_file_is_followed_while_serving() {
    let Setup { s, keys, _dir } = start(&[]);
    let read = |key: &str| call(&s, "GET", "/v2/models/iris", Some(key), None).0;
    assert_eq!(read("key-reader-1"), 200);
    assert_eq!(read("key-new-7"), 401);
    // The reader key rotated: a new key, the old one gone.
    std::fs::write(
        &keys,
        keys_file(&[("reader", "key-new-7", "\"read\"", None, None)]),
    )
    .unwrap();
    let t = Instant::now();
    while read("key-new-7") != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the new key was not taken"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read("key-reader-1"), 401);
    // A broken file is refused, and the keys in force stay.
    std::fs::write(&keys, "[[keys]]\nname = \"broken\"\n").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(read("key-new-7"), 200);
}

#[test]
fn cors_preflights_are_answered_for_allowed_origins_only() {
    let Setup { s, _dir, .. } = start(&["--auth-open", "metrics"]);
    let preflight = |origin: &str| {
        http()
            .request(reqwest::Method::OPTIONS, s.url("/v2/models/iris/infer"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .unwrap()
    };
    let ok = preflight("https://app.example.com");
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    let methods = ok.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let no = preflight("https://evil.example.net");
    assert!(no.headers().get("access-control-allow-origin").is_none());
    // A refusal carries the headers too, so that the page can read why.
    let r = http()
        .get(s.url("/v2/models/iris"))
        .header("origin", "https://app.example.com")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers().get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    // --auth-open metrics: no key needed there, a wrong one still refused.
    assert_eq!(call(&s, "GET", "/metrics", None, None).0, 200);
    assert_eq!(call(&s, "GET", "/metrics", Some("key-wrong"), None).0, 401);
    assert_eq!(call(&s, "GET", "/openapi.json", None, None).0, 401);
}

fn with_key<T>(msg: T, key: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(k) = key {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    r
}

fn iris_grpc(model: &str) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, if model == "wine" { 13 } else { 4 }],
            parameters: HashMap::new(),
            contents: Some(InferTensorContents {
                fp32_contents: if model == "wine" {
                    vec![
                        13.0, 2.0, 2.4, 19.0, 100.0, 2.3, 2.0, 0.36, 1.6, 5.0, 1.0, 2.6, 740.0,
                    ]
                } else {
                    vec![5.1, 3.5, 1.4, 0.2]
                },
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_methods_need_keys_as_http_routes_do() {
    let Setup { s, _dir, .. } = tokio::task::spawn_blocking(|| start(&[])).await.unwrap();
    let mut c = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let code = |r: Result<tonic::Response<_>, tonic::Status>| match r {
        Ok(_) => Code::Ok,
        Err(s) => {
            assert!(!s.message().contains("key-"), "{s:?}");
            s.code()
        }
    };
    assert_eq!(
        code(
            c.server_live(with_key(ServerLiveRequest {}, None))
                .await
                .map(|_| tonic::Response::new(()))
        ),
        Code::Ok
    );
    let ready = ModelReadyRequest {
        name: "iris".into(),
        version: String::new(),
    };
    assert_eq!(
        code(
            c.model_ready(with_key(ready, None))
                .await
                .map(|_| tonic::Response::new(()))
        ),
        Code::Ok
    );
    let meta = |m: &str| ModelMetadataRequest {
        name: m.into(),
        version: String::new(),
    };
    for (key, want) in [
        (None, Code::Unauthenticated),
        (Some("key-nope"), Code::Unauthenticated),
        (Some("key-iris-2"), Code::PermissionDenied),
        (Some("key-reader-1"), Code::Ok),
    ] {
        let got = code(
            c.model_metadata(with_key(meta("iris"), key))
                .await
                .map(|_| tonic::Response::new(())),
        );
        assert_eq!(got, want, "metadata with {key:?}");
    }
    for (key, model, want) in [
        (None, "iris", Code::Unauthenticated),
        (Some("key-reader-1"), "iris", Code::PermissionDenied),
        (Some("key-iris-2"), "iris", Code::Ok),
        (Some("key-iris-2"), "wine", Code::PermissionDenied),
        (Some("key-root-4"), "wine", Code::Ok),
    ] {
        let got = code(
            c.model_infer(with_key(iris_grpc(model), key))
                .await
                .map(|_| tonic::Response::new(())),
        );
        assert_eq!(got, want, "infer {model} with {key:?}");
    }
    let load = RepositoryModelLoadRequest {
        model_name: "iris".into(),
        ..Default::default()
    };
    assert_eq!(
        code(
            c.repository_model_load(with_key(load, Some("key-reader-1")))
                .await
                .map(|_| tonic::Response::new(()))
        ),
        Code::PermissionDenied
    );
    // A stream: each message's model is checked; the stream itself needs `infer`.
    let stream = tokio_stream::iter(vec![iris_grpc("iris"), iris_grpc("wine")]);
    let mut answers = c
        .model_stream_infer(with_key(stream, Some("key-iris-2")))
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    assert!(first.error_message.is_empty(), "{first:?}");
    let second = answers.message().await.unwrap().unwrap();
    assert!(
        second.error_message.contains("may not use this model"),
        "{second:?}"
    );
    let stream = tokio_stream::iter(vec![iris_grpc("iris")]);
    assert_eq!(
        c.model_stream_infer(with_key(stream, Some("key-reader-1")))
            .await
            .err()
            .map(|s| s.code()),
        Some(Code::PermissionDenied)
    );
    // The key's rate limit: RESOURCE_EXHAUSTED.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(code(
            c.model_infer(with_key(iris_grpc("iris"), Some("key-slow-5")))
                .await
                .map(|_| tonic::Response::new(())),
        ));
    }
    assert_eq!(codes[..2], [Code::Ok, Code::Ok]);
    assert!(
        [Code::ResourceExhausted, Code::Ok].contains(&codes[2]),
        "{codes:?}"
    );
    tokio::task::spawn_blocking(move || drop(s)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_some_models_sees_only_those_in_the_index_and_statistics() {
    // The HTTP half with the blocking client, off the runtime; then gRPC.
    let setup = tokio::task::spawn_blocking(|| {
        let setup = start(&[]);
        http_index_and_stats_are_filtered(&setup.s);
        setup
    })
    .await
    .unwrap();
    let s = &setup.s;
    let mut c = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let index = c
        .repository_index(with_key(
            RepositoryIndexRequest::default(),
            Some("key-iris-read-8"),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<String> = index.models.iter().map(|m| m.name.clone()).collect();
    got.dedup();
    assert_eq!(got, ["iris"]);
    let stats = c
        .model_statistics(with_key(
            ModelStatisticsRequest::default(),
            Some("key-iris-read-8"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!stats.model_stats.is_empty());
    assert!(stats.model_stats.iter().all(|m| m.name == "iris"));
    let all = c
        .model_statistics(with_key(
            ModelStatisticsRequest::default(),
            Some("key-reader-1"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(all.model_stats.iter().any(|m| m.name != "iris"));
    tokio::task::spawn_blocking(move || drop(setup))
        .await
        .unwrap();
}

fn http_index_and_stats_are_filtered(s: &Server) {
    let names = |rows: &Value, field: &str| -> Vec<String> {
        let mut n: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[field].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n.dedup();
        n
    };
    let get = |method: &str, path: &str, key: &str| {
        let (status, _, body) = call(
            s,
            method,
            path,
            Some(key),
            (method == "POST").then(|| b"{}".to_vec()),
        );
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let everyone = names(&get("POST", "/v2/repository/index", "key-reader-1"), "name");
    assert!(everyone.len() > 1 && everyone.contains(&"iris".to_string()));
    assert_eq!(
        names(
            &get("POST", "/v2/repository/index", "key-iris-read-8"),
            "name"
        ),
        ["iris"]
    );
    assert!(
        names(
            &get("GET", "/v2/models/stats", "key-reader-1")["model_stats"],
            "name"
        )
        .len()
            > 1
    );
    assert_eq!(
        names(
            &get("GET", "/v2/models/stats", "key-iris-read-8")["model_stats"],
            "name"
        ),
        ["iris"]
    );
}

#[test]
fn no_keys_beyond_loopback_warns_once_and_loopback_does_not() {
    let run = |host: &str| {
        let mut child = common::ferroserve()
            .args([
                "serve",
                "--host",
                host,
                "--http-port",
                "0",
                "--grpc-port",
                "0",
            ])
            .args(["--log", "warn", "--no-jobs"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once it prints its listening line, the start-up warnings are out.
        use std::io::BufRead;
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let wide = run("0.0.0.0");
    assert_eq!(wide.matches("no API keys").count(), 1, "{wide}");
    let local = run("127.0.0.1");
    assert!(!local.contains("no API keys"), "{local}");
}

#[test]
fn the_caller_route_says_who_the_key_is_and_what_it_may_do() {
    let setup = start(&[
        "--auth-open",
        "metrics",
        "--model-control-mode",
        "explicit",
        "--load-model",
        "iris",
    ]);
    let s = &setup.s;
    let who = |key: Option<&str>| {
        let (status, _, body) = call(s, "GET", "/v2/caller", key, None);
        assert_eq!(status, 200, "{key:?}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    // No key: not signed in, no scope, and what is open without one.
    assert_eq!(
        who(None),
        json!({"auth": true, "authenticated": false, "name": null, "scopes": [], "models": null,
               "open": ["metrics"], "model_control": "explicit", "may_load": false})
    );
    refused(
        "a wrong key",
        call(s, "GET", "/v2/caller", Some("key-nope"), None),
        401,
    );
    let reader = who(Some("key-reader-1"));
    assert_eq!(reader["authenticated"], true);
    assert_eq!(reader["name"], "reader");
    assert_eq!(reader["scopes"], json!(["read"]));
    assert_eq!(reader["may_load"], false, "read may not load");
    let ops = who(Some("key-ops-3"));
    assert_eq!(ops["scopes"], json!(["read", "manage"]));
    assert_eq!(ops["may_load"], true, "manage may load in explicit mode");
    // What may_load promises holds: the load is accepted for ops, refused for the reader.
    let load = |key| {
        call(
            s,
            "POST",
            "/v2/repository/models/wine/load",
            Some(key),
            None,
        )
        .0
    };
    assert_eq!(load("key-reader-1"), 403);
    assert_eq!(load("key-ops-3"), 200);
    let root = who(Some("key-root-4"));
    assert_eq!(root["scopes"], json!(["infer", "read", "manage", "admin"]));
    let iris = who(Some("key-iris-2"));
    assert_eq!(
        iris["scopes"],
        json!(["infer"]),
        "no scope is needed to ask"
    );
    assert_eq!(iris["models"], json!(["iris"]));
    assert_eq!(iris["may_load"], false);

    // Keys off: everyone may do everything, but load and unload only in explicit mode.
    let open = Server::start(&["--request-log", "off", "--no-jobs"], &[]);
    let (status, _, body) = call(&open, "GET", "/v2/caller", None, None);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["auth"], false);
    assert_eq!(v["scopes"], json!(["infer", "read", "manage", "admin"]));
    assert_eq!(v["model_control"], "none");
    assert_eq!(v["may_load"], false, "model control none");
}

#[test]
fn the_dashboard_files_are_open_and_its_calls_are_checked() {
    let setup = start(&[]);
    let s = &setup.s;
    for path in ["/ui/", "/ui/app.js", "/ui/app.css", "/ui/icon.svg"] {
        let (status, headers, _) = call(s, "GET", path, None, None);
        assert_eq!(status, 200, "{path} without a key");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("connect-src 'self'"),
            "{path}"
        );
    }
    let (status, _, body) = call(s, "GET", "/ui/nope.js", None, None);
    assert_eq!(status, 404, "{body}");
    // What the page calls is checked as any client's call.
    refused(
        "the index without a key",
        call(s, "POST", "/v2/repository/index", None, None),
        401,
    );
}
