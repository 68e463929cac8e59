//! The Open Inference Protocol (v2) REST routes, and [`run`], the one path every front (HTTP
//! JSON, HTTP binary, gRPC) takes to validate a request against its model, run it and apply the
//! classification extension.

pub mod binary;
pub mod classification;
pub mod config_override;
pub mod json;
pub mod model_config;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferroserve_core::model::Batch;
use ferroserve_core::{
    InferError, InferRequest, InferResponse, LoadedModel, RequestedOutput, Tensor, TensorData,
};
use ferroserve_runtime::{Outcome, ServedVersion};
use serde_json::json;

use crate::body::{accepted_coding, body_kind, compress, read_body, BodyKind, Limit};
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;
use crate::stats;

pub mod control;

/// The protocol extensions this server implements (and no others), over HTTP and gRPC.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "statistics",
    "model_configuration",
    "model_repository",
];

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub(crate) fn ok_json(v: serde_json::Value) -> Response {
    json_response(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default())
}

pub async fn server_metadata() -> Response {
    ok_json(json!({
        "name": "ferroserve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

pub async fn live() -> Response {
    ok_json(json!({ "live": true }))
}

pub async fn ready(State(st): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if st.is_ready() {
        Ok(ok_json(json!({ "ready": true })))
    } else {
        let reasons: Vec<String> = st
            .runtime()
            .models()
            .filter_map(|m| m.reason().map(|r| format!("{}: {r}", m.name)))
            .collect();
        Err(ApiError(InferError::unavailable(format!(
            "server is not ready: {}",
            if reasons.is_empty() {
                "no models".into()
            } else {
                reasons.join("; ")
            }
        ))))
    }
}

fn tensor_meta_json(t: &ferroserve_core::TensorMeta) -> serde_json::Value {
    json!({ "name": t.name, "datatype": t.datatype.as_str(), "shape": t.shape })
}

fn model_metadata_json(st: &AppState, v: &ServedVersion) -> serde_json::Value {
    let m = v.model.metadata();
    let rt = st.runtime();
    let entry = rt.model(&v.name).ok();
    let versions: Vec<String> = entry
        .map(|e| e.versions.keys().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    let mut params = serde_json::Map::new();
    if let Some(names) = &m.feature_names {
        params.insert("feature_names".into(), json!(names));
    }
    if let Some(labels) = m.task.class_labels() {
        params.insert("class_labels".into(), json!(labels.as_strings()));
    }
    params.insert("description".into(), json!(m.description));
    json!({
        "name": v.name,
        "versions": versions,
        "platform": m.platform,
        "inputs": m.inputs.iter().map(tensor_meta_json).collect::<Vec<_>>(),
        "outputs": m.outputs.iter().map(tensor_meta_json).collect::<Vec<_>>(),
        "parameters": params,
    })
}

pub async fn model_metadata(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    let v = st.runtime().version(&model, None)?;
    Ok(ok_json(model_metadata_json(&st, &v)))
}

pub async fn version_metadata(
    State(st): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let v = st.runtime().version(&model, Some(&version))?;
    Ok(ok_json(model_metadata_json(&st, &v)))
}

/// `GET /v2/models/{m}/config`: Triton's model configuration extension.
pub async fn model_config(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    let v = st.runtime().version(&model, None)?;
    Ok(ok_json(model_config::TritonConfig::of(&v).to_json()))
}

/// `GET /v2/models/{m}/versions/{v}/config`.
pub async fn version_config(
    State(st): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let v = st.runtime().version(&model, Some(&version))?;
    Ok(ok_json(model_config::TritonConfig::of(&v).to_json()))
}

pub async fn model_ready(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    let v = st.runtime().version(&model, None)?;
    Ok(ok_json(
        json!({ "name": v.name, "version": v.version.to_string(), "ready": true }),
    ))
}

pub async fn version_ready(
    State(st): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let v = st.runtime().version(&model, Some(&version))?;
    Ok(ok_json(
        json!({ "name": v.name, "version": v.version.to_string(), "ready": true }),
    ))
}

/// The most `POST /v2/repository/index` reads: its body holds at most `{"ready": true}`.
const INDEX_BODY_BYTES: usize = 64 * 1024;

pub async fn repository_index(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The body may hold {"ready": true} to list ready models only.
    let limit = Limit::fixed(
        INDEX_BODY_BYTES,
        "POST /v2/repository/index reads at most {\"ready\": true}; --max-body-bytes does not raise it",
        st.limits.max_body_bytes,
    );
    let bytes = read_body(body, &headers, limit).await?;
    let ready_only = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        false
    } else {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
        v.get("ready").and_then(|r| r.as_bool()).unwrap_or(false)
    };
    let rows: Vec<serde_json::Value> = st
        .runtime()
        .index()
        .into_iter()
        .filter(|e| !ready_only || e.ready)
        .map(|e| {
            let mut o = json!({
                "name": e.name,
                "state": e.state,
                "reason": e.reason.unwrap_or_default(),
            });
            if let Some(v) = e.version {
                o["version"] = json!(v.to_string());
            }
            o
        })
        .collect();
    Ok(ok_json(serde_json::Value::Array(rows)))
}

pub async fn infer(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    infer_inner(st, model, None, headers, body).await
}

pub async fn infer_version(
    State(st): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    infer_inner(st, model, Some(version), headers, body).await
}

async fn infer_inner(
    st: Arc<AppState>,
    model: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Find the model first: an unknown model is a 404 whatever the body holds.
    let served = st.runtime().version(&model, version.as_deref())?;
    let started = Instant::now();
    let result = async {
        let kind = body_kind(&headers, true)?;
        let header_len = binary::header_length(&headers)?;
        if kind == BodyKind::OctetStream && header_len.is_none() {
            return Err(ApiError::invalid(
                "an application/octet-stream body needs an Inference-Header-Content-Length header giving the length of its JSON part",
            ));
        }
        let bytes = read_body(body, &headers, Limit::flag(st.limits.max_body_bytes)).await?;
        let (head, bin) = binary::split(bytes, header_len)?;
        let (mut req, has_data) = json::parse_request_limited(&head, max_values(&served))?;
        binary::fill_inputs(&mut req.inputs, &has_data, &bin)?;
        let choice = binary::OutputChoice::from_request(&req)?;
        let timeout = request_timeout(&req, &headers)?;
        let (resp, rows) = run(&served, req, timeout).await?;
        Ok::<_, ApiError>((binary::write_response(resp, &choice), rows))
    }
    .await;
    match result {
        Ok(((body, header_len), rows)) => {
            served
                .stats
                .request_done(Outcome::Success, rows, started.elapsed());
            // Compressed when asked (tritonclient's response_compression_algorithm); the
            // binary header length counts the uncompressed JSON, as the client splits after
            // decompressing. Errors stay uncompressed: clients read them as they are.
            if let Some(coding) = accepted_coding(&headers) {
                let (body, encoding) = compress(&body, coding);
                let mut r = match header_len {
                    None => json_response(StatusCode::OK, body),
                    Some(header_len) => binary_response(body, header_len),
                };
                r.headers_mut().insert(header::CONTENT_ENCODING, encoding);
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
                return Ok(r);
            }
            Ok(match header_len {
                None => json_response(StatusCode::OK, body),
                Some(header_len) => binary_response(body, header_len),
            })
        }
        Err(e) => {
            served
                .stats
                .request_done(Outcome::of(e.0.kind), 0, started.elapsed());
            Err(e)
        }
    }
}

fn binary_response(body: Vec<u8>, header_len: usize) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(binary::HEADER),
                HeaderValue::from(header_len),
            ),
        ],
        body,
    )
        .into_response()
}

/// The request's deadline: its `timeout` parameter (microseconds, as Triton) or the
/// `X-Request-Timeout-Ms` header.
pub fn request_timeout(
    req: &InferRequest,
    headers: &HeaderMap,
) -> Result<Option<Duration>, ApiError> {
    if let Some(p) = req.parameters.get("timeout") {
        let us = p.as_i64().filter(|&v| v > 0).ok_or_else(|| {
            ApiError::invalid("parameter 'timeout' must be a positive number of microseconds")
        })?;
        return Ok(Some(Duration::from_micros(us as u64)));
    }
    if let Some(h) = headers.get("x-request-timeout-ms") {
        let ms: f64 = h
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|v: &f64| *v > 0.0 && v.is_finite())
            .ok_or_else(|| {
                ApiError::invalid(
                    "header X-Request-Timeout-Ms must be a positive number of milliseconds",
                )
            })?;
        return Ok(Some(Duration::from_secs_f64(ms / 1e3)));
    }
    Ok(None)
}

/// The most values any one input of `served` can hold in a request within its row limit
/// (unbounded when an input has a variable dimension past the batch one).
pub fn max_values(served: &ServedVersion) -> usize {
    let rows = served.config.max_request_rows();
    served
        .model
        .metadata()
        .inputs
        .iter()
        .map(|i| {
            let (batch, rest) = match i.shape.split_first() {
                Some((&-1, rest)) => (rows, rest),
                _ => (1, &i.shape[..]),
            };
            rest.iter().try_fold(batch, |n, &d| {
                usize::try_from(d)
                    .ok()
                    .and_then(|d| n.checked_mul(d.max(1)))
            })
        })
        .try_fold(0usize, |m, n| n.map(|n| m.max(n)))
        .unwrap_or(usize::MAX)
}

/// Validates a request against the model, runs it and assembles the response; returns it with
/// the number of rows answered.
pub async fn run(
    served: &ServedVersion,
    mut req: InferRequest,
    timeout: Option<Duration>,
) -> Result<(InferResponse, usize), InferError> {
    let inputs = std::mem::take(&mut req.inputs);
    let meta = served.model.metadata();
    let classify = classification::requested(&req.outputs, meta)?;
    let batch = to_batch(
        served.model.as_ref(),
        inputs,
        &req.outputs,
        served.config.max_request_rows(),
    )?;
    let rows = batch.rows;
    let mut outputs = served.handle.submit(batch, timeout).await?;
    classification::apply(&mut outputs, &classify, meta)?;
    Ok((
        InferResponse {
            model_name: served.name.clone(),
            model_version: served.version.to_string(),
            id: req.id,
            outputs,
            parameters: Default::default(),
        },
        rows,
    ))
}

/// Checks inputs and requested outputs against the model's metadata and builds the batch.
pub fn to_batch(
    model: &dyn LoadedModel,
    mut given: Vec<Tensor>,
    requested: &[RequestedOutput],
    max_rows: usize,
) -> Result<Batch, InferError> {
    let meta = model.metadata();
    if given.len() != meta.inputs.len() {
        let names: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(InferError::invalid(format!(
            "expected {} input(s) ({}), got {}",
            meta.inputs.len(),
            names.join(", "),
            given.len()
        )));
    }
    let mut inputs = Vec::with_capacity(given.len());
    let mut rows = None;
    for want in &meta.inputs {
        // With a single input any name is accepted; with several, names must match.
        let at = if meta.inputs.len() == 1 {
            0
        } else {
            given
                .iter()
                .position(|t| t.name == want.name)
                .ok_or_else(|| {
                    let expected: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
                    let got: Vec<&str> = given.iter().map(|t| t.name.as_str()).collect();
                    InferError::invalid(format!(
                        "missing input '{}': got {}; this model's inputs are: {}",
                        want.name,
                        got.join(", "),
                        expected.join(", ")
                    ))
                })?
        };
        let t = &mut given[at];
        let mut shape = t.shape.clone();
        // A single row may be sent without its batch dimension.
        if shape.len() + 1 == want.shape.len() && want.shape[0] == -1 {
            shape.insert(0, 1);
        }
        if shape.len() != want.shape.len() {
            if t.shape.is_empty() {
                return Err(InferError::invalid(format!(
                    "input '{}': shape [] is a scalar (0-d), but the model expects shape {:?}, whose first dimension is the batch (rows)",
                    t.name, want.shape
                )));
            }
            return Err(InferError::invalid(format!(
                "input '{}': shape {:?} does not match the model's {:?}",
                t.name, t.shape, want.shape
            )));
        }
        for (d, (&got, &exp)) in shape.iter().zip(&want.shape).enumerate() {
            if exp >= 0 && got != exp {
                return Err(InferError::invalid(format!(
                    "input '{}': dimension {d} is {got}, the model expects {exp} (shape {:?})",
                    t.name, want.shape
                )));
            }
        }
        // Rows are the first dimension: a model whose input has none (0-d) cannot be batched,
        // as Triton refuses a batching model without its batch dimension.
        let Some(&n) = shape.first() else {
            return Err(InferError::invalid(format!(
                "input '{}': shape [] is a scalar (0-d), as this model declares input '{}'; ferroserve runs models along a first, batch dimension, which this input lacks (export the model with a batch dimension, shape [-1], to serve it)",
                t.name, want.name
            )));
        };
        let n = n as usize;
        if n > max_rows {
            return Err(InferError::new(
                ferroserve_core::ErrorKind::TooLarge,
                format!("input '{}' has {n} rows; this model accepts at most {max_rows} per request (max_request_rows)", t.name),
            ));
        }
        match rows {
            None => rows = Some(n),
            Some(r) if r != n => {
                return Err(InferError::invalid(format!(
                    "inputs disagree on the number of rows ({r} and {n})"
                )))
            }
            _ => {}
        }
        if t.data.datatype() == ferroserve_core::DataType::Bytes
            && want.datatype != ferroserve_core::DataType::Bytes
        {
            return Err(InferError::invalid(format!(
                "input '{}': BYTES data for a {} input",
                t.name, want.datatype
            )));
        }
        // Numbers are converted to the model's input type; one it cannot hold (1e39 as FP64
        // for an FP32 input, 300 for UINT8) is refused, not turned into infinity or wrapped.
        let unheld = if want.datatype.holds_all(t.data.datatype()) {
            None
        } else {
            t.data.first_unheld(want.datatype)
        };
        if let Some((i, value)) = unheld {
            return Err(InferError::invalid(format!(
                "input '{}': value {value} (element {i}) is out of range for {}, the model's input type ({})",
                t.name,
                want.datatype,
                want.datatype.range()
            )));
        }
        inputs.push(Tensor {
            name: want.name.clone(),
            shape,
            data: std::mem::replace(&mut t.data, TensorData::empty(want.datatype)),
            parameters: Default::default(),
        });
    }
    let mut outputs = Vec::with_capacity(requested.len());
    for o in requested {
        if !meta.outputs.iter().any(|m| m.name == o.name) {
            let names: Vec<&str> = meta.outputs.iter().map(|m| m.name.as_str()).collect();
            return Err(InferError::invalid(format!(
                "unknown output '{}'; this model's outputs are: {}",
                o.name,
                names.join(", ")
            )));
        }
        outputs.push(o.name.clone());
    }
    Ok(Batch {
        inputs,
        rows: rows.unwrap_or(0),
        outputs,
    })
}

/// `GET /v2/models/stats`: the statistics extension ([`crate::stats`]) of every ready version.
pub async fn all_stats(State(st): State<Arc<AppState>>) -> Response {
    ok_json(json!({ "model_stats": stats::all(&st.runtime()) }))
}

/// `GET /v2/models/{m}/stats`: of a model's ready versions.
pub async fn model_stats(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    let rows = stats::select(&st.runtime(), Some(&model), None)?;
    Ok(ok_json(json!({ "model_stats": rows })))
}

/// `GET /v2/models/{m}/versions/{v}/stats`: of one version.
pub async fn version_stats(
    State(st): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let rows = stats::select(&st.runtime(), Some(&model), Some(&version))?;
    Ok(ok_json(json!({ "model_stats": rows })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::{BackendError, DataType, ModelMetadata, TensorMeta};

    /// A model with the given inputs (name, type, shape) that answers nothing.
    struct Declared(ModelMetadata);

    impl Declared {
        fn new(inputs: &[(&str, DataType, &[i64])]) -> Declared {
            Declared(ModelMetadata {
                inputs: inputs
                    .iter()
                    .map(|(name, datatype, shape)| TensorMeta {
                        name: name.to_string(),
                        datatype: *datatype,
                        shape: shape.to_vec(),
                    })
                    .collect(),
                ..Default::default()
            })
        }
    }

    impl LoadedModel for Declared {
        fn metadata(&self) -> &ModelMetadata {
            &self.0
        }
        fn instance(self: Arc<Self>) -> Result<Box<dyn ferroserve_core::Instance>, BackendError> {
            struct Nothing;
            impl ferroserve_core::Instance for Nothing {
                fn run(&mut self, _: &Batch) -> Result<Vec<Tensor>, BackendError> {
                    Ok(Vec::new())
                }
            }
            Ok(Box::new(Nothing))
        }
    }

    fn one(name: &str, shape: Vec<i64>, data: TensorData) -> Vec<Tensor> {
        vec![Tensor::new(name, shape, data)]
    }

    #[test]
    fn values_the_models_input_type_cannot_hold_are_refused() {
        let m = Declared::new(&[("x", DataType::Fp32, &[-1, 2])]);
        let e = to_batch(
            &m,
            one(
                "x",
                vec![2, 2],
                TensorData::Fp64(vec![1.0, 2.0, 3.0, -1e39]),
            ),
            &[],
            100,
        )
        .unwrap_err();
        assert_eq!(e.kind, ferroserve_core::ErrorKind::InvalidInput);
        assert_eq!(
            e.message,
            "input 'x': value -1e39 (element 3) is out of range for FP32, the model's input type (numbers up to ±3.4028235e38)"
        );
        // What FP32 holds is converted as before (by the backend), infinities and NaN included.
        let b = to_batch(
            &m,
            one(
                "x",
                vec![2, 2],
                TensorData::Fp64(vec![3e38, f64::NAN, f64::INFINITY, 1e-60]),
            ),
            &[],
            100,
        )
        .unwrap();
        assert_eq!(b.rows, 2);
        let m = Declared::new(&[("k", DataType::Uint8, &[-1])]);
        let e = to_batch(
            &m,
            one("k", vec![2], TensorData::Int64(vec![7, 300])),
            &[],
            100,
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("input 'k': value 300 (element 1) is out of range for UINT8"),
            "{}",
            e.message
        );
        assert!(to_batch(
            &m,
            one("k", vec![2], TensorData::Int64(vec![7, 255])),
            &[],
            100
        )
        .is_ok());
    }

    #[test]
    fn zero_dimensional_inputs_are_refused_with_the_reason() {
        // A model whose input is 0-d: no batch dimension to run along.
        let m = Declared::new(&[("s", DataType::Fp32, &[])]);
        let e = to_batch(&m, one("s", vec![], TensorData::Fp32(vec![1.0])), &[], 100).unwrap_err();
        assert_eq!(e.kind, ferroserve_core::ErrorKind::InvalidInput);
        assert!(
            e.message.starts_with(
                "input 's': shape [] is a scalar (0-d), as this model declares input 's'; ferroserve runs models along a first, batch dimension"
            ),
            "{}",
            e.message
        );
        // A scalar for a model with a batch dimension and features.
        let m = Declared::new(&[("x", DataType::Fp32, &[-1, 4])]);
        let e = to_batch(&m, one("x", vec![], TensorData::Fp32(vec![1.0])), &[], 100).unwrap_err();
        assert_eq!(
            e.message,
            "input 'x': shape [] is a scalar (0-d), but the model expects shape [-1, 4], whose first dimension is the batch (rows)"
        );
        // A scalar for a one-dimensional input is one row of one value, as [n] is one row of
        // an [-1, n] input.
        let m = Declared::new(&[("k", DataType::Int64, &[-1])]);
        let b = to_batch(&m, one("k", vec![], TensorData::Int64(vec![7])), &[], 100).unwrap();
        assert_eq!((b.rows, b.inputs[0].shape.as_slice()), (1, &[1][..]));
    }
}
