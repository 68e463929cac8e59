//! End-to-end: `/metrics` (Prometheus text) and the v2 statistics extension count what the
//! server did; request timeouts are validated.

mod common;

use common::{client, Server};
use serde_json::{json, Value};

fn iris_body(rows: usize) -> Value {
    let data: Vec<f32> = (0..rows).flat_map(|_| [5.1, 3.5, 1.4, 0.2]).collect();
    json!({"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": data}]})
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .unwrap_or_else(|| panic!("no metric line starting with {line_prefix}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_statistics_count_requests_rows_and_batches() {
    let s = Server::start(&[], &[]);
    let c = client();
    for rows in [1, 3, 2500] {
        let r = c
            .post(s.url("/v2/models/iris/infer"))
            .json(&iris_body(rows))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let bad = c
        .post(s.url("/v2/models/iris/infer"))
        .json(&json!({"inputs": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let r = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let l = "model=\"iris\",version=\"1\"";
    assert_eq!(
        metric(
            &text,
            &format!("ferroserve_requests_total{{{l},outcome=\"success\"}}")
        ),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            &format!("ferroserve_requests_total{{{l},outcome=\"invalid_input\"}}")
        ),
        1.0
    );
    assert_eq!(
        metric(&text, &format!("ferroserve_inference_rows_total{{{l}}}")),
        2504.0
    );
    // Three requests, three batches: 2500 rows are more than max_batch_size (1024), but the tree
    // engine keeps a large request whole on a model of one instance.
    assert_eq!(
        metric(&text, &format!("ferroserve_batches_total{{{l}}}")),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            &format!("ferroserve_request_duration_seconds_count{{{l}}}")
        ),
        4.0
    );
    assert!(
        metric(
            &text,
            &format!("ferroserve_batch_rows_bucket{{{l},le=\"1024\"}}")
        ) >= 2.0
    );
    assert_eq!(
        metric(
            &text,
            &format!("ferroserve_batch_rows_bucket{{{l},le=\"+Inf\"}}")
        ),
        metric(&text, &format!("ferroserve_batch_rows_count{{{l}}}"))
    );
    assert_eq!(
        metric(&text, &format!("ferroserve_queue_depth{{{l}}}")),
        0.0
    );
    assert_eq!(
        metric(&text, &format!("ferroserve_model_ready{{{l}}}")),
        1.0
    );
    // The bundled repository's two ONNX Runtime models fail to load where the library is not
    // installed (`build.rs` sets `no_onnxruntime` then, never under CI=true); nothing else fails.
    let load_failures = if cfg!(no_onnxruntime) { 2.0 } else { 0.0 };
    assert_eq!(
        metric(&text, "ferroserve_model_load_failures_total"),
        load_failures
    );
    assert!(text.contains("# TYPE ferroserve_compute_duration_seconds histogram"));
    assert!(text.contains("# TYPE ferroserve_instance_busy_seconds_total counter"));

    let stats: Value = c
        .get(s.url("/v2/models/iris/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = &stats["model_stats"][0];
    assert_eq!(m["name"], "iris");
    assert_eq!(m["version"], "1");
    assert_eq!(m["inference_count"], 2504);
    assert_eq!(m["inference_stats"]["success"]["count"], 3);
    assert_eq!(m["inference_stats"]["fail"]["count"], 1);
    assert_eq!(m["execution_count"], 3, "the 2500 rows in one batch");
    assert!(m["last_inference"].as_u64().unwrap() > 0);
    let sizes: Vec<u64> = m["batch_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch_size"].as_u64().unwrap())
        .collect();
    assert!(sizes.contains(&2500), "{sizes:?}");
    let all: Value = c
        .get(s.url("/v2/models/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let index: Value = c
        .post(s.url("/v2/repository/index"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ready = index
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "READY")
        .count();
    assert_eq!(all["model_stats"].as_array().unwrap().len(), ready);
    let v: Value = c
        .get(s.url("/v2/models/iris/versions/1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["model_stats"][0]["inference_count"], 2504);
    assert_eq!(
        c.get(s.url("/v2/models/nope/stats"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let meta: Value = c
        .get(s.url("/v2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("statistics")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeouts_are_validated_and_generous_ones_succeed() {
    let s = Server::start(&[], &[]);
    let c = client();
    let mut body = iris_body(1);
    body["parameters"] = json!({"timeout": 5_000_000});
    assert_eq!(
        c.post(s.url("/v2/models/iris/infer"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    body["parameters"] = json!({"timeout": -3});
    let r = c
        .post(s.url("/v2/models/iris/infer"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("timeout"));
    let r = c
        .post(s.url("/v2/models/iris/infer"))
        .header("X-Request-Timeout-Ms", "soon")
        .json(&iris_body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(s.url("/v2/models/iris/infer"))
        .header("X-Request-Timeout-Ms", "2000")
        .json(&iris_body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_and_paths_are_counted_by_route_class_and_code() {
    use ferroserve_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use ferroserve_server::grpc::proto::{ModelInferRequest, ModelMetadataRequest};

    let s = Server::start(&[], &[]);
    let c = client();
    let line = |route: &str, code: &str| {
        format!("ferroserve_http_responses_total{{route=\"{route}\",code=\"{code}\"}}")
    };
    // Before any: the usual codes are there at zero, so a rate over them starts at once.
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&text, &line("v2_infer", "404")), 0.0);
    assert_eq!(metric(&text, &line("unmatched", "404")), 0.0);
    assert!(text.contains("# TYPE ferroserve_http_responses_total counter"));
    for _ in 0..3 {
        let r = c
            .post(s.url("/v2/models/nope/infer"))
            .json(&iris_body(1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    for path in ["/v2/models/nope", "/v2/models/iris/versions/9/ready"] {
        assert_eq!(c.get(s.url(path)).send().await.unwrap().status(), 404);
    }
    assert_eq!(
        c.get(s.url("/models/nope/predict?a=1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    for path in ["/nope", "/v3/models/iris/infer"] {
        assert_eq!(c.get(s.url(path)).send().await.unwrap().status(), 404);
    }
    let ok = c
        .post(s.url("/v2/models/iris/infer"))
        .json(&iris_body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let mut g = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let e = g
        .model_infer(ModelInferRequest {
            model_name: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = g
        .model_metadata(ModelMetadataRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // A stream counts each message it answers.
    let msgs = vec![
        ModelInferRequest {
            model_name: "nope".into(),
            ..Default::default()
        };
        2
    ];
    let mut answers = g
        .model_stream_infer(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(a) = answers.message().await.unwrap() {
        assert!(
            a.error_message.starts_with("Request for unknown model"),
            "{}",
            a.error_message
        );
        n += 1;
    }
    assert_eq!(n, 2);

    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&text, &line("v2_infer", "404")), 3.0);
    assert_eq!(metric(&text, &line("v2_infer", "200")), 1.0);
    assert_eq!(metric(&text, &line("v2_model", "404")), 2.0);
    assert_eq!(metric(&text, &line("friendly", "404")), 1.0);
    assert_eq!(metric(&text, &line("unmatched", "404")), 2.0);
    // The first /metrics, answered before this one was rendered.
    assert_eq!(metric(&text, &line("metrics", "200")), 1.0);
    let grpc = |method: &str, code: &str| {
        format!("ferroserve_grpc_responses_total{{method=\"{method}\",code=\"{code}\"}}")
    };
    assert_eq!(metric(&text, &grpc("ModelInfer", "NotFound")), 1.0);
    assert_eq!(metric(&text, &grpc("ModelMetadata", "NotFound")), 1.0);
    assert_eq!(metric(&text, &grpc("ModelStreamInfer", "NotFound")), 2.0);
    assert_eq!(metric(&text, &grpc("ModelInfer", "Ok")), 0.0);
    // Nothing of this is in a model's own counters (no model was found).
    assert_eq!(
        metric(
            &text,
            "ferroserve_requests_total{model=\"iris\",version=\"1\",outcome=\"success\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_route_follows_the_traffic_second_by_second() {
    let s = Server::start(&[], &[]);
    let c = client();
    let get = |q: &str| {
        let c = c.clone();
        let url = s.url(&format!("/v2/models/iris/history{q}"));
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // No traffic yet: no version listed.
    let (status, h) = get("").await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(
        (h["model"].as_str(), h["step_seconds"].as_u64()),
        (Some("iris"), Some(1))
    );
    assert_eq!(h["versions"], json!([]));
    for _ in 0..5 {
        let r = c
            .post(s.url("/v2/models/iris/infer"))
            .json(&iris_body(2))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let bad = c
        .post(s.url("/v2/models/iris/infer"))
        .json(&json!({"inputs": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Within a few seconds the samples hold them all.
    let t = std::time::Instant::now();
    let samples = loop {
        let (_, h) = get("?seconds=60").await;
        let samples = h["versions"][0]["samples"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let sum = |k: &str| samples.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
        if sum("requests") == 6 {
            assert_eq!((sum("errors"), sum("rows")), (1, 10), "{h}");
            assert_eq!(h["versions"][0]["version"], "1");
            break samples;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{h}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let busy: Vec<&Value> = samples
        .iter()
        .filter(|s| s["requests"].as_u64() > Some(0))
        .collect();
    assert!(busy
        .iter()
        .all(|s| s["seconds"] == 1 && s["p50_ms"].as_f64().is_some_and(|p| p > 0.0)));
    assert!(samples
        .iter()
        .filter(|s| s["requests"] == 0)
        .all(|s| s["p50_ms"].is_null()));
    // Longer spans come in 10-second steps; bad parameters and unknown models are refused.
    assert_eq!(get("?seconds=3600").await.1["step_seconds"], 10);
    for (q, want) in [
        ("?seconds=0", "seconds"),
        ("?seconds=3601", "seconds"),
        ("?version=x", "version"),
    ] {
        let (status, e) = get(q).await;
        assert_eq!(status, 400, "{q}: {e}");
        assert!(e["error"].as_str().unwrap().contains(want), "{e}");
    }
    assert_eq!(get("?version=7").await.1["versions"], json!([]));
    let r = c
        .get(s.url("/v2/models/nope/history"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
