//! The Open Inference Protocol (v2) REST routes. An inference request is decoded here (JSON,
//! or JSON with binary tensor data) and run by the runtime's inference service
//! ([`ferroserve_runtime::service`]), the one path every front takes: validation against the
//! model, deadline, batching, the classification extension, statistics.

pub mod binary;
pub mod config_override;
pub mod json;
pub mod model_config;
pub mod numbers;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferroserve_core::InferError;
use ferroserve_runtime::service::deadline;
use ferroserve_runtime::service::validate::max_values;
use ferroserve_runtime::{Call, Deadline, Origin, ServedVersion, Transport};
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
    caller: Option<axum::Extension<crate::auth::Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // A key limited to some models sees only those.
    let caller = caller.map_or_else(crate::auth::Caller::anyone, |c| c.0);
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
        .filter(|e| (!ready_only || e.ready) && caller.may_use(&e.name))
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
    let call = Call::now(Origin::HttpV2);
    let decoded = async {
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
        let timeout_ms = headers.get(deadline::HTTP_HEADER).map(|v| v.as_bytes());
        let deadline = Deadline::read(&req.parameters, Transport::Http { timeout_ms })?;
        Ok::<_, ApiError>((req, choice, deadline))
    }
    .await;
    let (req, choice, deadline) = match decoded {
        Ok(d) => d,
        Err(e) => return Err(st.service.refused(&served, call, e.0).into()),
    };
    let answered = st.service.infer(&served, req, deadline, call).await?;
    let (body, header_len) = binary::write_response(answered.response, &choice);
    // Compressed when asked (tritonclient's response_compression_algorithm); the binary header
    // length counts the uncompressed JSON, as the client splits after decompressing. Errors
    // stay uncompressed: clients read them as they are.
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

/// `GET /v2/models/stats`: the statistics extension ([`crate::stats`]) of every ready version.
/// A key limited to some models sees only theirs.
pub async fn all_stats(
    State(st): State<Arc<AppState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> Response {
    let caller = caller.map_or_else(crate::auth::Caller::anyone, |c| c.0);
    let mut rows = stats::all(&st.runtime());
    rows.retain(|s| caller.may_use(&s.name));
    ok_json(json!({ "model_stats": rows }))
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
