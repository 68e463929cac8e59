//! The benchmark ceiling (`bench/run.py` measures ferroserve as a fraction of it): the least a
//! Rust server must do to answer an Open Inference Protocol (v2) JSON inference request. It
//! serves `POST /v2/models/{model}/infer` with axum and tokio, configured as ferroserve is (one
//! multi-thread runtime with the default worker count), parses the body with serde into typed
//! structs whose tensor `data` is a `Vec<f32>`, and answers a constant response shaped like
//! ferroserve's iris answer (one `label` and three `probabilities` per row) with no model behind
//! it. `GET /v2/health/ready` answers 200.
//!
//!     ferroserve-bench-ceiling [--host 127.0.0.1] [--port 0]
//!
//! prints `ceiling: HTTP listening on ADDR` once the socket is bound.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// A v2 inference request, as a real server reads it.
#[derive(Deserialize)]
#[allow(dead_code)] // fields are parsed (the work being measured), not all read
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<IgnoredAny>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<IgnoredAny>,
}

/// One input tensor with flat FP32 data.
#[derive(Deserialize)]
#[allow(dead_code)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<IgnoredAny>,
    data: Vec<f32>,
}

#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: (LabelTensor, ProbaTensor),
}

#[derive(Serialize)]
struct LabelTensor {
    name: &'static str,
    datatype: &'static str,
    shape: [usize; 1],
    data: Vec<&'static str>,
}

#[derive(Serialize)]
struct ProbaTensor {
    name: &'static str,
    datatype: &'static str,
    shape: [usize; 2],
    data: Vec<f32>,
}

fn bad_request(msg: String) -> Response {
    let body = serde_json::to_vec(&serde_json::json!({ "error": msg })).unwrap_or_default();
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn infer(Path(model): Path<String>, body: Bytes) -> Response {
    let req: InferRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e.to_string()),
    };
    let Some(input) = req.inputs.first() else {
        return bad_request("no inputs".into());
    };
    let rows = match input.shape.first() {
        Some(&n) if n >= 0 => n as usize,
        _ => return bad_request("bad shape".into()),
    };
    // A constant answer per row: no model runs.
    let mut proba = Vec::with_capacity(rows * 3);
    for _ in 0..rows {
        proba.extend_from_slice(&[1.0, 0.0, 0.0]);
    }
    let resp = InferResponse {
        model_name: &model,
        model_version: "1",
        id: req.id.as_deref(),
        outputs: (
            LabelTensor {
                name: "label",
                datatype: "BYTES",
                shape: [rows],
                data: vec!["setosa"; rows],
            },
            ProbaTensor {
                name: "probabilities",
                datatype: "FP32",
                shape: [rows, 3],
                data: proba,
            },
        ),
    };
    match serde_json::to_vec(&resp) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn app() -> Router {
    Router::new()
        .route("/v2/health/ready", get(|| async { StatusCode::OK }))
        .route("/v2/models/{model}/infer", post(infer))
}

fn main() -> std::io::Result<()> {
    let mut host = "127.0.0.1".to_string();
    let mut port = "0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--host" => host = args.next().unwrap_or(host),
            "--port" => port = args.next().unwrap_or(port),
            other => {
                eprintln!("unknown argument {other}; usage: ferroserve-bench-ceiling [--host H] [--port P]");
                std::process::exit(2);
            }
        }
    }
    // As ferroserve: a multi-thread runtime with tokio's default worker count (one per core).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(format!("{host}:{port}")).await?;
        println!("ceiling: HTTP listening on {}", listener.local_addr()?);
        axum::serve(listener, app()).await
    })
}
