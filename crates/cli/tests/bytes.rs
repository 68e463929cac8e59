//! End-to-end: BYTES elements are bytes. An identity graph on ONNX Runtime
//! (`crates/onnx/tests/fixtures/identity_bytes.onnx`) gets elements that are not text (NUL bytes,
//! invalid UTF-8, empty, all 256 byte values) over the HTTP binary extension and over gRPC (typed
//! `bytes_contents` and `raw_input_contents`), and must answer them exactly: as binary output,
//! as gRPC `raw_output_contents`. JSON carries NUL as `"\u0000"` both ways.

mod common;

use bytes::Bytes;
use common::{client, repo_root, Server};
use ferroserve_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferroserve_server::grpc::proto::model_infer_request::InferInputTensor;
use ferroserve_server::grpc::proto::*;
use ferroserve_testkit::{require, Need};
use serde_json::{json, Value};

/// Elements no text encoding would carry as they are.
fn elements() -> Vec<Vec<u8>> {
    vec![
        b"he\0llo".to_vec(),
        vec![0xff, 0xfe],
        vec![],
        vec![0],
        "ünï".as_bytes().to_vec(),
        vec![0xc3],
        (0..=255u8).collect(),
    ]
}

/// The binary encoding of BYTES: each element a 4-byte little-endian length, then its bytes.
fn encode(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in items {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }
    out
}

fn decode(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        out.push(b[4..4 + n].to_vec());
        b = &b[4 + n..];
    }
    assert!(b.is_empty(), "{} stray bytes after the elements", b.len());
    out
}

fn identity_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("identity/1");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::copy(
        repo_root().join("crates/onnx/tests/fixtures/identity_bytes.onnx"),
        m.join("model.onnx"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("identity/model.toml"),
        "backend = \"onnx\"\n",
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
async fn bytes_that_are_not_text_go_through_onnx_runtime_unchanged() {
    require(Need::OnnxRuntime, "the BYTES end-to-end test");
    let dir = identity_repo();
    let s = Server::start(&["--repository", dir.path().to_str().unwrap()], &[]);
    let items = elements();
    let n = items.len();

    // HTTP, binary in and out.
    let bin = encode(&items);
    let header = json!({
        "inputs": [{"name": "x", "datatype": "BYTES", "shape": [n],
                    "parameters": {"binary_data_size": bin.len()}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": true}}],
    });
    let mut body = serde_json::to_vec(&header).unwrap();
    let header_len = body.len();
    body.extend_from_slice(&bin);
    let r = client()
        .post(s.url("/v2/models/identity/infer"))
        .header("Inference-Header-Content-Length", header_len.to_string())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let head_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&body[..head_len]).unwrap();
    let out = &head["outputs"][0];
    assert_eq!(out["datatype"], "BYTES");
    assert_eq!(out["shape"], json!([n]));
    assert_eq!(out["parameters"]["binary_data_size"], bin.len());
    assert_eq!(decode(&body[head_len..]), items);

    // JSON carries NUL (as \u0000) both ways.
    let r = client()
        .post(s.url("/v2/models/identity/infer"))
        .json(
            &json!({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [3],
                                  "data": ["a\u{0}b", "\u{0}", "ünï"]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["outputs"][0]["data"], json!(["a\u{0}b", "\u{0}", "ünï"]));

    // gRPC, typed contents and raw contents in; raw contents out.
    let mut c = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let tensor = InferInputTensor {
        name: "x".into(),
        datatype: "BYTES".into(),
        shape: vec![n as i64],
        ..Default::default()
    };
    let typed = ModelInferRequest {
        model_name: "identity".into(),
        inputs: vec![InferInputTensor {
            contents: Some(InferTensorContents {
                bytes_contents: items.clone(),
                ..Default::default()
            }),
            ..tensor.clone()
        }],
        ..Default::default()
    };
    let raw = ModelInferRequest {
        model_name: "identity".into(),
        inputs: vec![tensor],
        raw_input_contents: vec![Bytes::from(bin.clone())],
        ..Default::default()
    };
    for (what, req) in [("typed", typed), ("raw", raw)] {
        let a = c
            .model_infer(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"))
            .into_inner();
        assert_eq!(a.outputs[0].datatype, "BYTES", "{what}");
        assert_eq!(a.outputs[0].shape, vec![n as i64], "{what}");
        assert_eq!(decode(&a.raw_output_contents[0]), items, "{what}");
    }
}
