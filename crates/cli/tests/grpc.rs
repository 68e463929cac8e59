//! End-to-end over gRPC: the real binary on 127.0.0.1 port 0 driven by a tonic client generated
//! from the project's own `grpc_service.proto`: health, metadata, index, inference with typed and
//! raw contents (checked against the training libraries' predictions and against the HTTP
//! answer), classification, streaming, every error class with its code, and a graceful stop with
//! a stream still open. (Deadlines are tested in-process in `ferroserve_server::grpc`: clients
//! enforce their own deadline first.)

mod common;

use bytes::Bytes;
use common::{assert_outputs_match, client, examples, library_names, Server};
use ferroserve_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferroserve_server::grpc::proto::infer_parameter::ParameterChoice;
use ferroserve_server::grpc::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use ferroserve_server::grpc::proto::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use tonic::transport::Channel;
use tonic::Code;

type Client = GrpcInferenceServiceClient<Channel>;

async fn connect(s: &Server) -> Client {
    GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .expect("connect to the gRPC port")
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(examples().join("expected.json")).unwrap()).unwrap()
}

fn rows_of(model: &str) -> (Vec<f32>, i64, i64) {
    let exp = expected();
    let rows = exp[model]["rows"].as_array().unwrap().clone();
    let f = rows[0].as_array().unwrap().len() as i64;
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    (flat, rows.len() as i64, f)
}

fn typed_request(model: &str, x: &[f32], n: i64, f: i64) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        id: "g-1".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![n, f],
            parameters: HashMap::new(),
            contents: Some(InferTensorContents {
                fp32_contents: x.to_vec(),
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

fn raw_request(model: &str, x: &[f32], n: i64, f: i64) -> ModelInferRequest {
    let mut r = typed_request(model, x, n, f);
    r.inputs[0].contents = None;
    r.raw_input_contents = vec![Bytes::from(
        x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )];
    r
}

fn raw_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn raw_strings(b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = b;
    while rest.len() >= 4 {
        let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        out.push(String::from_utf8(rest[4..4 + n].to_vec()).unwrap());
        rest = &rest[4 + n..];
    }
    assert!(
        rest.is_empty(),
        "{} stray bytes after the strings",
        rest.len()
    );
    out
}

/// A gRPC answer as the v2 JSON answer (`outputs` with name, datatype, shape, data), from typed
/// or raw contents, so it can be compared with the library by `assert_outputs_match`.
fn as_json(r: &ModelInferResponse) -> Value {
    let outputs: Vec<Value> = r
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let data: Value = match (r.raw_output_contents.get(i), &o.contents) {
                (Some(raw), _) => match o.datatype.as_str() {
                    "FP32" => json!(raw_f32(raw)),
                    "FP64" => json!(raw
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                        .collect::<Vec<_>>()),
                    "INT64" => json!(raw
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect::<Vec<_>>()),
                    "BYTES" => json!(raw_strings(raw)),
                    t => panic!("output {}: no decoder here for raw {t}", o.name),
                },
                (None, Some(c)) => match o.datatype.as_str() {
                    "FP32" => json!(c.fp32_contents),
                    "FP64" => json!(c.fp64_contents),
                    "INT64" => json!(c.int64_contents),
                    "INT32" => json!(c.int_contents),
                    "BYTES" => json!(c
                        .bytes_contents
                        .iter()
                        .map(|b| String::from_utf8(b.to_vec()).unwrap())
                        .collect::<Vec<_>>()),
                    t => panic!("output {}: no decoder here for typed {t}", o.name),
                },
                (None, None) => panic!("output {} has no contents", o.name),
            };
            json!({"name": o.name, "datatype": o.datatype, "shape": o.shape, "data": data})
        })
        .collect();
    json!({ "outputs": outputs })
}

fn output<'a>(
    r: &'a ModelInferResponse,
    name: &str,
) -> (usize, &'a model_infer_response::InferOutputTensor) {
    r.outputs
        .iter()
        .enumerate()
        .find(|(_, o)| o.name == name)
        .unwrap_or_else(|| panic!("no output {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_index_and_inference_agree_with_the_libraries_and_http() {
    let s = Server::start(&[], &[]);
    let mut c = connect(&s).await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "ferroserve");
    assert_eq!(
        meta.extensions,
        [
            "binary_tensor_data",
            "classification",
            "statistics",
            "model_configuration",
            "model_repository"
        ]
    );
    let http_meta: Value = client()
        .get(s.url("/v2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http_meta["extensions"], json!(meta.extensions));

    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(
        c.model_ready(ready("iris", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        c.model_ready(ready("iris", "1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !c.model_ready(ready("iris", "7"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !c.model_ready(ready("nope", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );

    let m = c
        .model_metadata(ModelMetadataRequest {
            name: "breast_cancer".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.versions, ["1"]);
    assert_eq!(m.platform, "ferroserve_trees");
    assert_eq!(
        (m.inputs[0].name.as_str(), m.inputs[0].datatype.as_str()),
        ("input", "FP32")
    );
    assert_eq!(m.inputs[0].shape, [-1, 30]);
    let names: Vec<&str> = m.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["label", "probabilities"]);

    let idx = c
        .repository_index(RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The tree models are always ready (ONNX Runtime ones need its library).
    for name in ["breast_cancer", "diabetes", "iris", "wine"] {
        let m = idx.models.iter().find(|m| m.name == name).unwrap();
        assert_eq!((m.state.as_str(), m.version.as_str()), ("READY", "1"));
    }

    // Typed contents in or raw in: raw out either way (as Triton answers); the same numbers, the
    // libraries' numbers.
    let exp = expected();
    let tol = exp["tolerance"].as_f64().unwrap();
    let (x, n, f) = rows_of("breast_cancer");
    let typed = c
        .model_infer(typed_request("breast_cancer", &x, n, f))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            typed.model_name.as_str(),
            typed.model_version.as_str(),
            typed.id.as_str()
        ),
        ("breast_cancer", "1", "g-1")
    );
    assert_eq!(typed.raw_output_contents.len(), typed.outputs.len());
    assert!(typed.outputs.iter().all(|o| o.contents.is_none()));
    let (pi, p) = output(&typed, "probabilities");
    assert_eq!(p.shape, [n, 2]);
    let typed_p = raw_f32(&typed.raw_output_contents[pi]);
    assert_outputs_match(
        "breast_cancer typed",
        &as_json(&typed),
        &exp["breast_cancer"],
        tol,
    );
    let want_labels = library_names(&exp["breast_cancer"]);

    let raw = c
        .model_infer(raw_request("breast_cancer", &x, n, f))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw.raw_output_contents.len(), 2);
    assert!(raw.outputs.iter().all(|o| o.contents.is_none()));
    let (pi, _) = output(&raw, "probabilities");
    assert_eq!(raw_f32(&raw.raw_output_contents[pi]), typed_p);
    let (li, _) = output(&raw, "label");
    assert_eq!(raw_strings(&raw.raw_output_contents[li]), want_labels);

    // Every tree model, typed and raw, answers its library's answers on its sample rows.
    for model in ["iris", "wine", "breast_cancer", "diabetes"] {
        let (x, n, f) = rows_of(model);
        for (form, req) in [
            ("typed", typed_request(model, &x, n, f)),
            ("raw", raw_request(model, &x, n, f)),
        ] {
            let r = c.model_infer(req).await.unwrap().into_inner();
            assert_outputs_match(&format!("{model} {form}"), &as_json(&r), &exp[model], tol);
        }
    }

    // The HTTP answer to the same rows is the same.
    let rows: Vec<Vec<f32>> = x.chunks(f as usize).map(|r| r.to_vec()).collect();
    let http: Value = client()
        .post(s.url("/v2/models/breast_cancer/infer"))
        .json(&json!({"inputs": [{"name": "input", "shape": [n, f], "datatype": "FP32", "data": rows}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let http_p: Vec<f32> = http["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(http_p, typed_p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_and_requested_outputs() {
    let s = Server::start(&[], &[]);
    let mut c = connect(&s).await;
    let mut req = raw_request("iris", &[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3], 2, 4);
    req.outputs = vec![InferRequestedOutputTensor {
        name: "probabilities".into(),
        parameters: HashMap::from([(
            "classification".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(2)),
            },
        )]),
    }];
    let r = c.model_infer(req.clone()).await.unwrap().into_inner();
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(
        (r.outputs[0].datatype.as_str(), &r.outputs[0].shape[..]),
        ("BYTES", &[2i64, 2][..])
    );
    let top = raw_strings(&r.raw_output_contents[0]);
    assert_eq!(top[0], "1:0:setosa");
    assert!(top[2].ends_with(":2:virginica"), "{top:?}");
    // Typed request: the same strings, raw as well.
    let x = [5.1f32, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3];
    let mut typed = typed_request("iris", &x, 2, 4);
    typed.outputs = req.outputs.clone();
    let t = c.model_infer(typed).await.unwrap().into_inner();
    assert!(t.outputs[0].contents.is_none());
    assert_eq!(raw_strings(&t.raw_output_contents[0]), top);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_its_code_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    // A copy of iris limited to 2 rows per request, and a model that cannot load.
    std::fs::create_dir_all(repo.join("small/1")).unwrap();
    std::fs::copy(
        examples().join("iris/1/model.onnx"),
        repo.join("small/1/model.onnx"),
    )
    .unwrap();
    std::fs::write(repo.join("small/model.toml"), "max_request_rows = 2\n").unwrap();
    std::fs::create_dir_all(repo.join("broken/1")).unwrap();
    std::fs::write(repo.join("broken/1/model.json"), b"{not json").unwrap();
    let s = Server::start(
        &[
            "--repository",
            repo.to_str().unwrap(),
            "--max-body-bytes",
            "65536",
        ],
        &[],
    );
    let mut c = connect(&s).await;
    let row = [5.1f32, 3.5, 1.4, 0.2];
    let mut cases: Vec<(&str, ModelInferRequest, Code, &str)> = vec![
        (
            "unknown model",
            typed_request("nope", &row, 1, 4),
            Code::NotFound,
            // Triton's wording, which its clients check.
            "Request for unknown model 'nope'",
        ),
        (
            "unknown version",
            {
                let mut r = typed_request("small", &row, 1, 4);
                r.model_version = "9".into();
                r
            },
            Code::NotFound,
            "unknown version",
        ),
        (
            "not ready",
            typed_request("broken", &row, 1, 4),
            Code::Unavailable,
            "not ready",
        ),
        (
            "wrong width",
            typed_request("small", &row[..3], 1, 3),
            Code::InvalidArgument,
            "dimension 1 is 3",
        ),
        (
            "shape/data",
            typed_request("small", &row, 2, 4),
            Code::InvalidArgument,
            "needs 8 values",
        ),
        (
            "too many rows",
            typed_request("small", &[row, row, row].concat(), 3, 4),
            Code::ResourceExhausted,
            "max_request_rows",
        ),
        (
            "raw size",
            {
                let mut r = raw_request("small", &row, 1, 4);
                r.raw_input_contents[0] = Bytes::from_static(&[0; 12]);
                r
            },
            Code::InvalidArgument,
            "need 16 bytes",
        ),
        (
            "raw count",
            {
                let mut r = raw_request("small", &row, 1, 4);
                r.raw_input_contents.push(Bytes::new());
                r
            },
            Code::InvalidArgument,
            "2 entries",
        ),
        (
            "datatype",
            {
                let mut r = typed_request("small", &row, 1, 4);
                r.inputs[0].datatype = "FP99".into();
                r
            },
            Code::InvalidArgument,
            "unknown datatype",
        ),
        (
            "wrong field",
            {
                let mut r = typed_request("small", &row, 1, 4);
                r.inputs[0].datatype = "INT64".into();
                r
            },
            Code::InvalidArgument,
            "int64_contents",
        ),
    ];
    let mut unknown_output = typed_request("small", &row, 1, 4);
    unknown_output.outputs.push(InferRequestedOutputTensor {
        name: "nope".into(),
        parameters: HashMap::new(),
    });
    cases.push((
        "unknown output",
        unknown_output,
        Code::InvalidArgument,
        "unknown output 'nope'",
    ));
    let mut bad_k = typed_request("small", &row, 1, 4);
    bad_k.outputs.push(InferRequestedOutputTensor {
        name: "probabilities".into(),
        parameters: HashMap::from([(
            "classification".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(0)),
            },
        )]),
    });
    cases.push((
        "classification 0",
        bad_k,
        Code::InvalidArgument,
        "at least 1",
    ));
    // Over --max-body-bytes: gRPC refuses the message itself.
    let big = vec![1.0f32; 65536 / 4 + 16];
    cases.push((
        "message too large",
        raw_request("small", &big, (big.len() / 4) as i64, 4),
        Code::ResourceExhausted,
        "",
    ));
    for (what, req, code, msg) in cases {
        let e = c.model_infer(req).await.expect_err(what);
        assert_eq!(e.code(), code, "{what}: {}", e.message());
        assert!(e.message().contains(msg), "{what}: {}", e.message());
        still_serving_small(&mut c).await;
    }
    let e = c
        .model_metadata(ModelMetadataRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .model_metadata(ModelMetadataRequest {
            name: "broken".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    // Statistics: the failures and successes above, the same numbers as over HTTP.
    let stats = c
        .model_statistics(ModelStatisticsRequest {
            name: "small".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.model_stats.len(), 1);
    let st = &stats.model_stats[0];
    assert_eq!((st.name.as_str(), st.version.as_str()), ("small", "1"));
    let inf = st.inference_stats.as_ref().unwrap();
    let (ok, failed) = (inf.success.unwrap().count, inf.fail.unwrap().count);
    assert!(ok >= 11 && failed >= 8, "success {ok}, fail {failed}");
    assert!(st.inference_count >= ok && st.last_inference > 0);
    let http: Value = client()
        .get(s.url("/v2/models/small/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        http["model_stats"][0]["inference_stats"]["success"]["count"],
        ok
    );
    assert_eq!(
        http["model_stats"][0]["inference_stats"]["fail"]["count"],
        failed
    );
    let all = c
        .model_statistics(ModelStatisticsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.model_stats.len(),
        1,
        "only ready versions have statistics"
    );
    let e = c
        .model_statistics(ModelStatisticsRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let idx = c
        .repository_index(RepositoryIndexRequest {
            ready: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(idx.models.len(), 1);
    let idx = c
        .repository_index(RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    let broken = idx.models.iter().find(|m| m.name == "broken").unwrap();
    assert_eq!(broken.state, "UNAVAILABLE");
    assert!(!broken.reason.is_empty());
}

async fn still_serving_small(c: &mut Client) {
    c.model_infer(typed_request("small", &[5.1, 3.5, 1.4, 0.2], 1, 4))
        .await
        .expect("inference stopped working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_answers_in_order_with_errors_inline() {
    let s = Server::start(&[], &[]);
    let mut c = connect(&s).await;
    let row = [5.1f32, 3.5, 1.4, 0.2];
    let reqs: Vec<ModelInferRequest> = (0..10)
        .map(|i| {
            let mut r = if i == 4 {
                typed_request("nope", &row, 1, 4)
            } else {
                raw_request("iris", &row, 1, 4)
            };
            r.id = format!("s-{i}");
            r
        })
        .collect();
    let mut answers = c
        .model_stream_infer(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(a) = answers.message().await.unwrap() {
        got.push(a);
    }
    assert_eq!(got.len(), 10);
    for (i, a) in got.iter().enumerate() {
        let r = a.infer_response.as_ref().unwrap();
        assert_eq!(r.id, format!("s-{i}"));
        if i == 4 {
            assert!(
                a.error_message.contains("unknown model 'nope'"),
                "{}",
                a.error_message
            );
        } else {
            assert_eq!(a.error_message, "");
            assert_eq!(raw_strings(&r.raw_output_contents[0]), ["setosa"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_both_fronts_with_a_stream_still_open() {
    let s = Server::start(&[], &[]);
    let mut c = connect(&s).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<ModelInferRequest>(4);
    tx.send(raw_request("iris", &[5.1, 3.5, 1.4, 0.2], 1, 4))
        .await
        .unwrap();
    let mut answers = c
        .model_stream_infer(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(answers.message().await.unwrap().is_some());
    // The stream stays open (tx alive) while the server is told to stop.
    let status = tokio::task::spawn_blocking(move || s.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    drop(tx);
}

async fn grpc_limit(s: &Server, what: &str) -> f64 {
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(what)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {what} in /metrics"))
}

/// The idle timeout closes a gRPC connection with no call in flight (with GOAWAY, so the
/// channel reconnects for the next call), but a stream resting between messages for longer
/// than the body-read timeout is left alone: only a message that stops half-way is timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_connections_idle_out_and_resting_streams_do_not() {
    let s = Server::start(&["--idle-timeout", "1", "--body-read-timeout", "0.5"], &[]);
    let mut c = connect(&s).await;
    c.model_infer(raw_request("iris", &[5.1, 3.5, 1.4, 0.2], 1, 4))
        .await
        .expect("inference");
    let open = "ferroserve_connections_open{front=\"grpc\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while grpc_limit(&s, open).await > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle gRPC connection not closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        grpc_limit(
            &s,
            "ferroserve_connection_limits_total{front=\"grpc\",limit=\"idle_timeout\"}"
        )
        .await
            >= 1.0
    );
    // The same client goes on working.
    c.model_infer(raw_request("iris", &[5.1, 3.5, 1.4, 0.2], 1, 4))
        .await
        .expect("inference");

    let (tx, rx) = tokio::sync::mpsc::channel::<ModelInferRequest>(4);
    let mut answers = c
        .model_stream_infer(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        tx.send(raw_request("iris", &[5.1, 3.5, 1.4, 0.2], 1, 4))
            .await
            .unwrap();
        let a = answers.message().await.unwrap().expect("an answer");
        assert_eq!(a.error_message, "", "message {i}");
        // Longer than the body-read timeout (and than the idle timeout: a call is in flight).
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    drop(tx);
    assert!(answers.message().await.unwrap().is_none());
}
