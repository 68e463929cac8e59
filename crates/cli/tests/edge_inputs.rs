//! End-to-end: inputs at the edges, on every adapter of the real binary (v2 JSON, v2 binary,
//! gRPC, the friendly routes' JSON, CSV, query parameters and forms): numbers a type cannot
//! hold and infinities follow one rule everywhere; a URL whose path is not UTF-8 gets the v2
//! error body; 0-d (`shape: []`) inputs get a clean 400 / INVALID_ARGUMENT. Each bad request is
//! answered and the server keeps serving.

mod common;

use std::collections::HashMap;

use common::{client, Server};
use ferroserve_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferroserve_server::grpc::proto::model_infer_request::InferInputTensor;
use ferroserve_server::grpc::proto::{InferTensorContents, ModelInferRequest};
use serde_json::{json, Value};

const FP32_RANGE: &str = "numbers up to ±3.4028235e38";

fn iris_v2(datatype: &str, data: Value) -> Value {
    json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": datatype, "data": data}]})
}

/// POSTs `body` with `content_type`; answers the status and the body as JSON.
async fn post(s: &Server, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = client()
        .post(s.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
    (status, v)
}

async fn get(s: &Server, path: &str) -> (u16, String, Value) {
    let r = client().get(s.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
    (status, ct, v)
}

/// (problem, row, column, field, got) of each detail of a friendly error.
fn details(v: &Value) -> Vec<(String, Value, Value, Value, Value)> {
    v["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details in {v}"))
        .iter()
        .map(|d| {
            (
                d["problem"].as_str().unwrap().to_string(),
                d["row"].clone(),
                d["column"].clone(),
                d["field"].clone(),
                d["got"].clone(),
            )
        })
        .collect()
}

fn grpc_input(datatype: &str, shape: Vec<i64>, contents: InferTensorContents) -> InferInputTensor {
    InferInputTensor {
        name: "input".into(),
        datatype: datatype.into(),
        shape,
        parameters: HashMap::new(),
        contents: Some(contents),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_follow_one_rule_on_every_adapter() {
    let s = Server::start(&[], &[]);
    let json_ct = "application/json";
    let v2 = |b: Value| serde_json::to_vec(&b).unwrap();

    // v2 JSON: a value the request's datatype cannot hold.
    for (dt, x, shown) in [
        ("FP32", json!(1e39), "1e39"),
        ("FP32", json!(-3.5e38), "-3.5e38"),
        ("FP16", json!(70000), "70000"),
        ("BF16", json!(1e39), "1e39"),
    ] {
        let (st, e) = post(
            &s,
            "/v2/models/iris/infer",
            json_ct,
            v2(iris_v2(dt, json!([x, 1, 1, 1]))),
        )
        .await;
        assert_eq!(st, 400, "{dt} {x}: {e}");
        let want = format!("input 'input': value {shown} is out of range for {dt} (");
        assert!(e["error"].as_str().unwrap().starts_with(&want), "{e}");
    }
    // ... or that the model's input type (FP32) cannot hold.
    let model_type = format!(
        "input 'input': value 1e39 (element 2) is out of range for FP32, the model's input type ({FP32_RANGE})"
    );
    let (st, e) = post(
        &s,
        "/v2/models/iris/infer",
        json_ct,
        v2(iris_v2("FP64", json!([1, 1, 1e39, 1]))),
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str().unwrap()),
        (400, model_type.as_str())
    );
    // 1e400, beyond every float (the v2 JSON reader names the value and the type; readers
    // built on serde_json say "number out of range").
    let (st, e) = post(
        &s,
        "/v2/models/iris/infer",
        json_ct,
        br#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1e400,1,1,1]}]}"#
            .to_vec(),
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("input 'input': value 1e400 is out of range for FP32 ("),
        "{e}"
    );

    // v2 binary: raw FP64 bits, converted to the model's FP32.
    let raw: Vec<u8> = [1.0f64, 1.0, 1e39, 1.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let mut body = serde_json::to_vec(&json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "parameters": {"binary_data_size": 32}}]})).unwrap();
    let header_len = body.len();
    body.extend_from_slice(&raw);
    let r = client()
        .post(s.url("/v2/models/iris/infer"))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", header_len.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], model_type.as_str());

    // gRPC: typed FP64 contents and raw FP64 bits, for the model's FP32.
    let mut g = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let typed = ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![grpc_input(
            "FP64",
            vec![1, 4],
            InferTensorContents {
                fp64_contents: vec![1.0, 1.0, 1e39, 1.0],
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    let mut raw_req = typed.clone();
    raw_req.inputs[0].contents = None;
    raw_req.raw_input_contents = vec![raw.clone().into()];
    for m in [typed, raw_req] {
        let e = g.model_infer(m).await.unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::InvalidArgument, model_type.as_str())
        );
    }
    // An FP64 infinity is a value of FP32: converted, not refused (the model answers).
    let inf = ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![grpc_input(
            "FP64",
            vec![1, 4],
            InferTensorContents {
                fp64_contents: vec![5.1, 3.5, f64::INFINITY, 0.2],
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    assert!(g.model_infer(inf).await.is_ok());

    // The friendly routes: one 422 detail per value, where it is, in every form.
    let feature = |i: usize| {
        [
            "sepal length (cm)",
            "sepal width (cm)",
            "petal length (cm)",
            "petal width (cm)",
        ][i]
    };
    let (st, e) = post(
        &s,
        "/models/iris/predict",
        json_ct,
        br#"[[5.1, 3.5, 1.4, 0.2], [1e39, 3.5, 1.4, -1e39]]"#.to_vec(),
    )
    .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(
        details(&e),
        [
            (
                "out_of_range".into(),
                json!(1),
                json!(0),
                json!(feature(0)),
                json!("1e39")
            ),
            (
                "out_of_range".into(),
                json!(1),
                json!(3),
                json!(feature(3)),
                json!("-1e39")
            ),
        ]
    );
    assert!(
        e["details"][0]["expected"]
            .as_str()
            .unwrap()
            .contains(FP32_RANGE),
        "{e}"
    );
    let (st, e) = post(
        &s,
        "/models/iris/predict",
        "text/csv",
        b"5.1,3.5,1.4,0.2\ninf,1e400,1e39,-Infinity\n".to_vec(),
    )
    .await;
    assert_eq!(st, 422, "{e}");
    assert_eq!(
        details(&e),
        [
            (
                "not_a_number".into(),
                json!(1),
                json!(0),
                json!(feature(0)),
                json!("\"inf\"")
            ),
            (
                "out_of_range".into(),
                json!(1),
                json!(1),
                json!(feature(1)),
                json!("\"1e400\"")
            ),
            (
                "out_of_range".into(),
                json!(1),
                json!(2),
                json!(feature(2)),
                json!("1e39")
            ),
            (
                "not_a_number".into(),
                json!(1),
                json!(3),
                json!(feature(3)),
                json!("\"-Infinity\"")
            ),
        ]
    );
    let pairs = "sepal_length=inf&sepal_width=1e400&petal_length=1e39&petal_width=1";
    let r = client()
        .get(s.url(&format!("/models/iris/predict?{pairs}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let from_query: Value = r.json().await.unwrap();
    let (st, from_form) = post(
        &s,
        "/models/iris/predict",
        "application/x-www-form-urlencoded",
        pairs.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(st, 422);
    for e in [&from_query, &from_form] {
        let got: Vec<(String, Value)> = details(e)
            .into_iter()
            .map(|(p, _, _, _, got)| (p, got))
            .collect();
        assert_eq!(
            got,
            [
                ("not_a_number".into(), json!("\"inf\"")),
                ("out_of_range".into(), json!("\"1e400\"")),
                ("out_of_range".into(), json!("1e39")),
            ],
            "{e}"
        );
    }
    let (st, e) = post(
        &s,
        "/models/iris/predict",
        json_ct,
        b"[[1e400, 3.5, 1.4, 0.2]]".to_vec(),
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        e["error"].as_str().unwrap().contains("number out of range"),
        "{e}"
    );

    // Missing values read the same in every form (NaN: the trees route them as trained), and
    // the largest FP32 is a value.
    let mut answers = Vec::new();
    for (ct, body) in [
        (json_ct, br#"[[5.1, null, 1.4, 3.4028235e38]]"#.to_vec()),
        ("text/csv", b"5.1,,1.4,3.4028235e38\n".to_vec()),
        ("text/csv", b"5.1,NaN,1.4,3.4028235e38\n".to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"sepal_length=5.1&sepal_width=NA&petal_length=1.4&petal_width=3.4028235e38".to_vec(),
        ),
    ] {
        let (st, a) = post(&s, "/models/iris/predict?probabilities=true", ct, body).await;
        assert_eq!(st, 200, "{ct}: {a}");
        answers.push(a);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    // Still serving.
    let (st, _) = post(
        &s,
        "/v2/models/iris/infer",
        json_ct,
        v2(iris_v2("FP32", json!([5.1, 3.5, 1.4, 0.2]))),
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_path_that_is_not_utf8_gets_the_v2_error_body() {
    let s = Server::start(&[], &[]);
    for (method, path, key) in [
        ("GET", "/v2/models/%FF", "model"),
        ("GET", "/v2/models/%FF/ready", "model"),
        ("GET", "/v2/models/iris/versions/%C3%28/ready", "version"),
        ("GET", "/v2/models/%FF/stats", "model"),
        ("GET", "/v2/models/%FF/config", "model"),
        ("POST", "/v2/models/%FF/infer", "model"),
        ("POST", "/v2/models/iris/versions/%FF/infer", "version"),
        ("GET", "/models/%FF", "model"),
        ("GET", "/models/%FF/predict", "model"),
        ("POST", "/v1/models/%FF:predict", "name"),
        ("GET", "/docs/%FF.js", "file"),
    ] {
        let r = match method {
            "GET" => client().get(s.url(path)),
            _ => client().post(s.url(path)).body("{}"),
        }
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 400, "{method} {path}");
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            e,
            json!({"error": format!("invalid URL {path}: the path segment for {{{key}}} is not UTF-8 once percent-decoded")}),
        );
    }
    // Percent-encoded UTF-8 is a name like any other (here an unknown model).
    let (st, ct, e) = get(&s, "/v2/models/%C3%A9").await;
    assert_eq!((st, ct.as_str()), (404, "application/json"));
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("Request for unknown model"),
        "{e}"
    );
    let (st, _, _) = get(&s, "/v2/models/iris").await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_limit_error_names_what_sets_the_limit() {
    let index_rule = "request body is larger than the limit of 65536 bytes (POST /v2/repository/index reads at most {\"ready\": true}; --max-body-bytes does not raise it)";
    // The repository index reads at most 64 KiB, whatever --max-body-bytes says above it.
    let s = Server::start(&[], &[]);
    let (st, e) = post(
        &s,
        "/v2/repository/index",
        "application/json",
        vec![b' '; 70_000],
    )
    .await;
    assert_eq!((st, e["error"].as_str().unwrap()), (413, index_rule));
    let (st, _) = post(
        &s,
        "/v2/repository/index",
        "application/json",
        b"{\"ready\": true}".to_vec(),
    )
    .await;
    assert_eq!(st, 200);
    drop(s);
    // Below it, --max-body-bytes is the limit everywhere, and every error names it.
    let s = Server::start(&["--max-body-bytes", "4096"], &[]);
    let flag = "request body is larger than the limit of 4096 bytes (--max-body-bytes)";
    for path in [
        "/v2/repository/index",
        "/v2/models/iris/infer",
        "/models/iris/predict",
        "/v1/models/iris:predict",
    ] {
        let (st, e) = post(&s, path, "application/json", vec![b' '; 5000]).await;
        assert_eq!((st, e["error"].as_str().unwrap()), (413, flag), "{path}");
    }
    let mut g = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let big = ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![grpc_input(
            "FP32",
            vec![2000, 4],
            InferTensorContents {
                fp32_contents: vec![1.0; 8000],
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    let e = g.model_infer(big).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(
        e.message().ends_with("(--max-body-bytes)"),
        "{}",
        e.message()
    );
}

/// A v2 binary request: the JSON header, then `bin`.
async fn post_binary(s: &Server, path: &str, header: &Value, bin: &[u8]) -> (u16, Value) {
    let mut body = serde_json::to_vec(header).unwrap();
    let n = body.len();
    body.extend_from_slice(bin);
    let r = client()
        .post(s.url(path))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", n.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Sends one FP32 scalar (`shape: []`) as input `input_name` to `model` over v2 JSON, v2
/// binary and gRPC (typed and raw), checking that each answers exactly `message` (400 /
/// INVALID_ARGUMENT), and that the gRPC connection still serves afterwards.
async fn scalar_is_refused_everywhere(s: &Server, model: &str, input_name: &str, message: &str) {
    let path = format!("/v2/models/{model}/infer");
    let json_body =
        json!({"inputs": [{"name": input_name, "shape": [], "datatype": "FP32", "data": [1.5]}]});
    let (st, e) = post(
        s,
        &path,
        "application/json",
        serde_json::to_vec(&json_body).unwrap(),
    )
    .await;
    assert_eq!((st, e["error"].as_str().unwrap()), (400, message), "JSON");
    let header = json!({"inputs": [{"name": input_name, "shape": [], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]});
    let (st, e) = post_binary(s, &path, &header, &1.5f32.to_le_bytes()).await;
    assert_eq!((st, e["error"].as_str().unwrap()), (400, message), "binary");
    let mut g = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let mut typed = ModelInferRequest {
        model_name: model.into(),
        inputs: vec![grpc_input(
            "FP32",
            vec![],
            InferTensorContents {
                fp32_contents: vec![1.5],
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    typed.inputs[0].name = input_name.into();
    let mut raw = typed.clone();
    raw.inputs[0].contents = None;
    raw.raw_input_contents = vec![1.5f32.to_le_bytes().to_vec().into()];
    for m in [typed, raw] {
        let e = g.model_infer(m).await.unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::InvalidArgument, message)
        );
    }
    // The same connection goes on.
    assert!(
        g.server_live(ferroserve_server::grpc::proto::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scalar_for_a_model_with_a_batch_dimension_is_a_clean_400() {
    let s = Server::start(&[], &[]);
    scalar_is_refused_everywhere(
        &s,
        "iris",
        "input",
        "input 'input': shape [] is a scalar (0-d), but the model expects shape [-1, 4], whose first dimension is the batch (rows)",
    )
    .await;
    let (st, _) = post(
        &s,
        "/v2/models/iris/infer",
        "application/json",
        serde_json::to_vec(&iris_v2("FP32", json!([5.1, 3.5, 1.4, 0.2]))).unwrap(),
    )
    .await;
    assert_eq!(st, 200);
}

/// An ONNX graph `y = Identity(x)` on FP32 scalars: input and output of shape [].
fn scalar_identity_onnx() -> Vec<u8> {
    use ferroserve_onnx_proto::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
        TypeProtoTensor, ValueInfoProto,
    };
    use prost::Message;
    let scalar = |name: &str| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                // FLOAT
                elem_type: 1,
                shape: Some(TensorShapeProto { dim: vec![] }),
            }),
        }),
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "ferroserve-tests".into(),
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: vec!["x".into()],
                output: vec!["y".into()],
                name: "identity".into(),
                op_type: "Identity".into(),
                ..Default::default()
            }],
            name: "scalar_identity".into(),
            input: vec![scalar("x")],
            output: vec![scalar("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
async fn a_model_whose_input_is_a_scalar_answers_400_not_a_panic() {
    ferroserve_testkit::require(ferroserve_testkit::Need::OnnxRuntime, "a 0-d ONNX graph");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scalar/1")).unwrap();
    std::fs::write(
        dir.path().join("scalar/1/model.onnx"),
        scalar_identity_onnx(),
    )
    .unwrap();
    let s = Server::start(&["--repository", dir.path().to_str().unwrap()], &[]);
    let (st, _, meta) = get(&s, "/v2/models/scalar").await;
    assert_eq!(st, 200, "{meta}");
    assert_eq!(meta["inputs"][0]["shape"], json!([]), "{meta}");
    scalar_is_refused_everywhere(
        &s,
        "scalar",
        "x",
        "input 'x': shape [] is a scalar (0-d), as this model declares input 'x'; ferroserve runs models along a first, batch dimension, which this input lacks (export the model with a batch dimension, shape [-1], to serve it)",
    )
    .await;
    // No panic was logged on either front.
    let logs: Vec<String> = s.stderr.try_iter().collect();
    assert!(!logs.iter().any(|l| l.contains("panicked")), "{logs:#?}");
}
