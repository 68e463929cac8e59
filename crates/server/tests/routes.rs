//! In-process route tests: the router `app(state)` builds, driven with
//! `tower::ServiceExt::oneshot`, no socket and no binary. The pattern for a route's contract
//! (status, body, errors) beside the end-to-end tests of `crates/cli/tests`, which start the
//! real server: build the state from a repository, send one request, read the answer. Answers
//! are compared with the training library's (`examples/models/expected.json`) through the one
//! helper every test uses (`ferroserve_testkit`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use ferroserve_server::metrics::RouteClass;
use ferroserve_server::{app, AppState, RequestLog};
use ferroserve_testkit::{assert_close, assert_same, numbers, strings, Tol};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models")
}

/// The bundled repository served (its tree models need nothing but Rust), request log off.
fn state() -> Arc<AppState> {
    let found = ferroserve_runtime::scan_repository(&examples(), &Default::default()).unwrap();
    let runtime = ferroserve_runtime::Runtime::start(found, &Default::default());
    let mut st = AppState::new(Arc::new(runtime));
    st.request_log = RequestLog::Off;
    Arc::new(st)
}

/// The routes over [`state`].
fn routes() -> Router {
    app(state())
}

/// `examples/models/expected.json`: the training libraries' answers.
fn expected() -> Value {
    let text = std::fs::read(examples().join("expected.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// The tolerance expected.json states for the libraries' answers.
fn tolerance(all: &Value) -> Tol {
    Tol::abs(all["tolerance"].as_f64().unwrap())
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
}

/// Sends one request (with a JSON body when given) and reads the JSON answer.
async fn send(app: &Router, method: Method, uri: &str, body: Option<Value>) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: {e}: {}", String::from_utf8_lossy(&bytes)));
    Answer {
        status,
        content_type,
        body,
    }
}

#[tokio::test]
async fn health_answers_live_and_ready() {
    let app = routes();
    let a = send(&app, Method::GET, "/v2/health/live", None).await;
    assert_eq!(
        (a.status, a.body),
        (StatusCode::OK, json!({ "live": true }))
    );
    // The tree models load without ONNX Runtime: the server is ready.
    let a = send(&app, Method::GET, "/v2/health/ready", None).await;
    assert_eq!(
        (a.status, a.body),
        (StatusCode::OK, json!({ "ready": true }))
    );
}

#[tokio::test]
async fn metadata_names_inputs_outputs_features_and_classes() {
    let app = routes();
    let want = &expected()["breast_cancer"];
    let a = send(&app, Method::GET, "/v2/models/breast_cancer", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.content_type, "application/json");
    let m = &a.body;
    assert_eq!(m["name"], "breast_cancer");
    assert_eq!(m["versions"], json!(["1"]));
    assert_eq!(
        m["inputs"],
        json!([{ "name": "input", "datatype": "FP32", "shape": [-1, 30] }])
    );
    assert_same(
        "feature_names",
        &strings(&m["parameters"]["feature_names"]),
        &strings(&want["feature_names"]),
    );
    assert_same(
        "class_labels",
        &strings(&m["parameters"]["class_labels"]),
        &["malignant".to_string(), "benign".to_string()],
    );
    let outputs: Vec<&str> = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(outputs, ["label", "probabilities"]);
}

#[tokio::test]
async fn v2_infer_answers_what_the_library_answered() {
    let app = routes();
    let all = expected();
    let want = &all["diabetes"];
    let rows = want["rows"].as_array().unwrap();
    let body = json!({
        "id": "r-1",
        "inputs": [{
            "name": "input",
            "shape": [rows.len(), 10],
            "datatype": "FP32",
            "data": rows,
        }],
    });
    let a = send(&app, Method::POST, "/v2/models/diabetes/infer", Some(body)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["model_name"], "diabetes");
    assert_eq!(a.body["model_version"], "1");
    assert_eq!(a.body["id"], "r-1");
    let out = &a.body["outputs"][0];
    assert_eq!(out["name"], "value");
    assert_eq!(out["shape"][0], rows.len());
    assert_close(
        "diabetes value",
        &numbers(&out["data"]),
        &numbers(&want["value"]),
        tolerance(&all),
    );
}

#[tokio::test]
async fn friendly_predict_answers_class_names_and_probabilities() {
    let app = routes();
    let all = expected();
    let want = &all["breast_cancer"];
    let names = strings(&want["feature_names"]);
    let records: Vec<Value> = want["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let values = row.as_array().unwrap();
            Value::Object(names.iter().cloned().zip(values.iter().cloned()).collect())
        })
        .collect();
    let a = send(
        &app,
        Method::POST,
        "/models/breast_cancer/predict?probabilities=true",
        Some(json!(records)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_same(
        "predictions",
        &strings(&a.body["predictions"]),
        &strings(&want["label_names"]),
    );
    assert_close(
        "probabilities",
        &numbers(&a.body["probabilities"]),
        &numbers(&want["probabilities"]),
        tolerance(&all),
    );
}

#[tokio::test]
async fn errors_answer_their_status_in_the_one_error_body() {
    let app = routes();
    // An unknown model: 404, naming the models there are.
    let a = send(
        &app,
        Method::POST,
        "/v2/models/nope/infer",
        Some(json!({ "inputs": [] })),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let msg = a.body["error"].as_str().unwrap();
    assert!(msg.contains("unknown model 'nope'"), "{msg}");
    assert!(msg.contains("diabetes"), "{msg}");
    // Rows that do not fit the model: 422, every problem placed.
    let a = send(
        &app,
        Method::POST,
        "/models/diabetes/predict",
        Some(json!([[1, 2, 3], vec![0.5; 10]])),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let d = a.body["details"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["problem"], "wrong_feature_count");
    assert_eq!(
        (&d[0]["row"], &d[0]["got"]),
        (&json!(0), &json!("3 values"))
    );
    // Malformed JSON: 400; a method the route does not take: 405; both in the one body.
    let req = Request::post("/v2/models/diabetes/infer")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"inputs\": ["))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let a = send(&app, Method::DELETE, "/v2/models/diabetes", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let msg = a.body["error"].as_str().unwrap();
    assert!(msg.contains("DELETE"), "{msg}");
}

/// The answer-observing layer (`observe.rs`) counts every answer by route class and status,
/// unknown models and paths included, and `/metrics` says so.
#[tokio::test]
async fn every_answer_is_counted_by_route_class_and_status() {
    let st = state();
    let app = app(st.clone());
    for (method, uri, status) in [
        (Method::GET, "/v2/models/nope", 404),
        (Method::GET, "/v2/models/nope/versions/1/ready", 404),
        (Method::POST, "/v2/models/nope/infer", 404),
        (Method::POST, "/v2/models/nope/infer", 404),
        (Method::POST, "/models/nope/predict", 404),
        (Method::GET, "/no/such/path", 404),
        (Method::GET, "/v2/models/iris", 200),
        (Method::GET, "/v2/models/iris/infer", 405),
        (Method::GET, "/v2/health/live", 200),
        (Method::GET, "/docs", 308),
        (Method::GET, "/metrics", 200),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let r = app.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {uri}");
    }
    let a = &st.answers;
    assert_eq!(a.http_count(RouteClass::V2Infer, 404), 2);
    assert_eq!(a.http_count(RouteClass::V2Infer, 405), 1);
    assert_eq!(a.http_count(RouteClass::V2Model, 404), 2);
    assert_eq!(a.http_count(RouteClass::V2Model, 200), 1);
    assert_eq!(a.http_count(RouteClass::Friendly, 404), 1);
    assert_eq!(a.http_count(RouteClass::Unmatched, 404), 1);
    assert_eq!(a.http_count(RouteClass::V2Server, 200), 1);
    assert_eq!(a.http_count(RouteClass::Docs, 308), 1);
    assert_eq!(a.http_count(RouteClass::Metrics, 200), 1);
    // And /metrics says so.
    let r = app
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains("ferroserve_http_responses_total{route=\"v2_infer\",code=\"404\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("ferroserve_http_responses_total{route=\"unmatched\",code=\"404\"} 1\n"));
}

/// A fresh repository holding a copy of the bundled `models`.
fn repo_of(models: &[&str]) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fs-routes-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for m in models {
        ferroserve_testkit::copy_dir(&examples().join(m), &dir.join(m));
    }
    dir
}

fn wine_batch() -> Value {
    let all = expected();
    assert!(all["wine"]["requests"]["wine_batch_1.json"].is_object());
    let body = std::fs::read(examples().join("../requests/wine_batch_1.json")).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// The routes follow the model set: a route alias, the model list and the OpenAPI document
/// appear with the model's load and go with its unload, with no router rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_aliases_and_the_openapi_document_follow_loads_and_unloads() {
    use ferroserve_runtime::{ControlMode, Registry, RegistryConfig};
    let dir = repo_of(&["wine", "diabetes"]);
    let reg = Registry::start(
        dir.clone(),
        RegistryConfig {
            mode: ControlMode::Explicit,
            load_at_start: vec!["diabetes".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let mut st = AppState::with_registry(reg.clone());
    st.request_log = RequestLog::Off;
    let st = Arc::new(st);
    let app = app(st.clone());
    for _ in 0..2000 {
        if reg.started() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(reg.started(), "diabetes loads at start within 10 s");
    let want = expected()["wine"]["requests"]["wine_batch_1.json"]["label"].clone();
    let has_predict = |doc: &Value| doc["paths"].get("/predict").is_some();

    // Not loaded: no such route, and the document does not list it.
    let a = send(&app, Method::POST, "/predict", Some(wine_batch())).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    assert!(!has_predict(
        &send(&app, Method::GET, "/openapi.json", None).await.body
    ));

    for round in 0..3 {
        reg.load("wine").await.unwrap();
        let a = send(&app, Method::POST, "/predict", Some(wine_batch())).await;
        assert_eq!(a.status, StatusCode::OK, "round {round}: {}", a.body);
        assert_eq!(a.body, json!({ "Prediction": want }), "round {round}");
        let doc = send(&app, Method::GET, "/openapi.json", None).await.body;
        assert!(
            has_predict(&doc),
            "round {round}: /predict documented once loaded"
        );
        let cards = send(&app, Method::GET, "/models", None).await.body;
        let wine = cards
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "wine")
            .unwrap()
            .clone();
        assert_eq!(wine["ready"], true);
        assert!(wine["routes"]
            .as_array()
            .unwrap()
            .contains(&json!({ "method": "POST", "path": "/predict" })));
        // GET on a POST alias: the path exists, the method does not.
        let a = send(&app, Method::GET, "/predict", None).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{}", a.body);

        reg.unload("wine").unwrap();
        let a = send(&app, Method::POST, "/predict", Some(wine_batch())).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "round {round}: {}", a.body);
        assert!(!has_predict(
            &send(&app, Method::GET, "/openapi.json", None).await.body
        ));
    }
    // Alias answers count as friendly routes, not as unmatched paths.
    // 200: three predictions and three model lists.
    assert_eq!(st.answers.http_count(RouteClass::Friendly, 200), 6);
    assert_eq!(st.answers.http_count(RouteClass::Friendly, 405), 3);
    assert_eq!(st.answers.http_count(RouteClass::Unmatched, 404), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// While a model is still loading, a path that may be one of its route aliases is 503 with
/// Retry-After, not 404; the v2 routes of the loading model say it is loading.
#[tokio::test]
async fn unknown_paths_while_models_load_are_503_retry() {
    use ferroserve_runtime::{ModelEntry, Registry, Runtime};
    let rt = Runtime::empty().with_model(ModelEntry::loading("wine"));
    let mut st = AppState::with_registry(Registry::fixed(Arc::new(rt)));
    st.request_log = RequestLog::Off;
    let app = app(Arc::new(st));
    let req = Request::post("/predict")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("1 model(s) are still loading"),
        "{body}"
    );
    let a = send(
        &app,
        Method::POST,
        "/v2/models/wine/infer",
        Some(json!({"inputs": []})),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(
        a.body["error"].as_str().unwrap().contains("loading"),
        "{}",
        a.body
    );
    let a = send(&app, Method::GET, "/v2/health/ready", None).await;
    assert_ne!(a.status, StatusCode::OK);
}
