//! Triton's model repository extension: `POST /v2/repository/models/{m}/load` and `/unload`
//! over HTTP (and, through [`load`] and [`unload`], gRPC's `RepositoryModelLoad` and
//! `RepositoryModelUnload`). Allowed in `--model-control-mode explicit`; in the other modes
//! the answer says why not, as Triton's does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use ferroserve_core::InferError;
use ferroserve_runtime::{ControlMode, RegistryError};

use crate::body::{read_body, Limit};
use crate::error::ApiError;
use crate::extract::Path;
use crate::AppState;

/// Most a load or unload body holds (`{"parameters": {...}}`).
const CONTROL_BODY_BYTES: usize = 64 * 1024;

fn refused(e: RegistryError) -> InferError {
    match e {
        RegistryError::NoRepository | RegistryError::NotAllowed(_) => {
            InferError::unavailable(e.to_string())
        }
        // Triton answers a failed load or unload as a bad request.
        _ => InferError::invalid(e.to_string()),
    }
}

fn allowed(st: &AppState, what: &str, name: &str) -> Result<(), InferError> {
    if st.registry.allows_control() {
        return Ok(());
    }
    let why = match st.registry.mode() {
        ControlMode::Explicit => "this server serves one model file, not a repository".to_string(),
        mode => format!(
            "the model control mode is {}: start ferroserve with --model-control-mode explicit to {what} models",
            match mode {
                ControlMode::Poll => "poll (the repository decides what is loaded)",
                _ => "none (every model is loaded at start)",
            }
        ),
    };
    Err(InferError::unavailable(format!(
        "failed to {what} '{name}': {why}"
    )))
}

/// Loads (or reloads) `name`; `with_config`: the request carried a `config` parameter, which
/// ferroserve does not take yet (the model's own `model.toml` applies).
pub async fn load(st: &AppState, name: &str, with_config: bool) -> Result<(), InferError> {
    allowed(st, "load", name)?;
    if with_config {
        return Err(InferError::invalid(format!(
            "failed to load '{name}': the \"config\" parameter is not supported; set the model's settings in its model.toml"
        )));
    }
    st.registry.load(name).await.map_err(refused)
}

/// Unloads `name`.
pub fn unload(st: &AppState, name: &str) -> Result<(), InferError> {
    allowed(st, "unload", name)?;
    st.registry.unload(name).map_err(refused)
}

async fn parameters(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let limit = Limit::fixed(
        CONTROL_BODY_BYTES,
        "model load and unload bodies are at most 64 KiB; --max-body-bytes does not raise it",
        st.limits.max_body_bytes,
    );
    let bytes = read_body(body, headers, limit).await?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Default::default());
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
    match v.get("parameters") {
        None | Some(serde_json::Value::Null) => Ok(Default::default()),
        Some(serde_json::Value::Object(p)) => Ok(p.clone()),
        Some(_) => Err(ApiError::invalid(
            "\"parameters\" must be an object (e.g. {\"parameters\": {}})",
        )),
    }
}

pub async fn load_route(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let params = parameters(&st, &headers, body).await?;
    load(&st, &model, params.contains_key("config")).await?;
    Ok(super::ok_json(serde_json::json!({})))
}

pub async fn unload_route(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    parameters(&st, &headers, body).await?;
    unload(&st, &model)?;
    Ok(super::ok_json(serde_json::json!({})))
}
