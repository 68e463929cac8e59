//! Triton's model repository extension: `POST /v2/repository/models/{m}/load` and `/unload`
//! over HTTP (and, through [`load`] and [`unload`], gRPC's `RepositoryModelLoad` and
//! `RepositoryModelUnload`). Allowed in `--model-control-mode explicit`; in the other modes
//! the answer says why not, as Triton's does.
//!
//! A load takes Triton's parameters ([`LoadParams`]): `config`, a JSON model configuration
//! merged over the model's `model.toml` for this load ([`super::config_override`]), and
//! `file:<path>`, the model folder's files (base64 in HTTP JSON, bytes over gRPC), which are
//! loaded instead of the repository's folder. Any other parameter is refused, as Triton does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use ferroserve_core::InferError;
use ferroserve_runtime::files::ModelFile;
use ferroserve_runtime::{ControlMode, LoadOptions, RegistryError};

use crate::body::{read_body, Limit};
use crate::error::ApiError;
use crate::extract::Path;
use crate::AppState;

/// Most an unload body holds (`{"parameters": {...}}`). A load's may carry files: it is held
/// to `--max-body-bytes`.
const UNLOAD_BODY_BYTES: usize = 64 * 1024;

/// The prefix of a load parameter carrying one file of the model folder.
const FILE_PREFIX: &str = "file:";

fn refused(e: RegistryError) -> InferError {
    match e {
        // How the server was started, not a passing state: a client error (400) that says
        // which flag allows it. (Triton answers UNAVAILABLE; a 503 would tell clients and
        // load balancers to retry what can never succeed.)
        RegistryError::NoRepository | RegistryError::NotAllowed(_) => {
            InferError::invalid(e.to_string())
        }
        // Triton answers files that cannot make a model folder as a failure to poll its
        // repository: INTERNAL, which its clients check.
        RegistryError::Files { .. } => InferError::internal(e.to_string()),
        // Triton answers a failed load or unload as a bad request.
        RegistryError::UnknownModel(_)
        | RegistryError::LoadFailed { .. }
        | RegistryError::NotLoaded(_) => InferError::invalid(e.to_string()),
    }
}

/// Whether `what` (load, unload) may be done now: a refusal in this mode comes before any
/// look at the request's parameters.
pub fn allowed(st: &AppState, what: &str, name: &str) -> Result<(), InferError> {
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
    // How the server was started, not a passing state: 400, not 503 (see `refused`).
    Err(InferError::invalid(format!(
        "failed to {what} '{name}': {why}"
    )))
}

/// A load's parameters, as both fronts read them off the wire.
#[derive(Debug, Default)]
pub struct LoadParams {
    /// `config`: Triton's JSON model configuration, as text.
    pub config: Option<String>,
    /// `file:<path>` parameters, the prefix taken off.
    pub files: Vec<ModelFile>,
}

/// The parameter `key` of a load of `name` is not one ferroserve takes.
pub fn unknown_parameter(name: &str, key: &str) -> InferError {
    let shown: String = key.chars().take(60).collect();
    InferError::invalid(format!(
        "failed to load '{name}': unrecognized load parameter '{shown}' (ferroserve takes \"config\" and \"file:<path>\")"
    ))
}

/// The parameter `key` of a load of `name` has the wrong type.
pub fn wrongly_typed(name: &str, key: &str, want: &str) -> InferError {
    let shown: String = key.chars().take(60).collect();
    InferError::invalid(format!(
        "failed to load '{name}': the load parameter '{shown}' must be {want}"
    ))
}

/// The path of a `file:<path>` parameter, if `key` is one.
pub fn file_path(key: &str) -> Option<&str> {
    key.strip_prefix(FILE_PREFIX)
}

/// Loads (or reloads) `name` with `params`.
pub async fn load(st: &AppState, name: &str, params: LoadParams) -> Result<(), InferError> {
    allowed(st, "load", name)?;
    let config = params
        .config
        .as_deref()
        .map(|text| super::config_override::parse(name, text))
        .transpose()
        .map_err(|e| {
            InferError::invalid(format!(
                "failed to load '{name}': invalid config override: {e}"
            ))
        })?;
    let opts = LoadOptions {
        config,
        files: params.files,
    };
    st.registry.load_with(name, opts).await.map_err(refused)
}

/// Unloads `name`.
pub fn unload(st: &AppState, name: &str) -> Result<(), InferError> {
    allowed(st, "unload", name)?;
    st.registry.unload(name).map_err(refused)
}

async fn parameters(
    headers: &HeaderMap,
    body: Body,
    limit: Limit,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
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

/// A load's parameters from HTTP JSON: `config` a string (or, for hand-written requests, the
/// configuration object itself), `file:<path>` base64 strings.
fn http_load_params(
    name: &str,
    params: serde_json::Map<String, serde_json::Value>,
) -> Result<LoadParams, InferError> {
    use serde_json::Value;
    let mut out = LoadParams::default();
    for (key, value) in params {
        if key == "config" {
            out.config = Some(match value {
                Value::String(s) => s,
                Value::Object(_) => value.to_string(),
                _ => {
                    return Err(wrongly_typed(
                        name,
                        &key,
                        "a string holding the JSON model configuration",
                    ))
                }
            });
        } else if let Some(path) = file_path(&key) {
            let Value::String(b64) = value else {
                return Err(wrongly_typed(name, &key, "a base64 string"));
            };
            let content = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| wrongly_typed(name, &key, "a base64 string"))?;
            out.files.push(ModelFile {
                path: path.to_string(),
                content,
            });
        } else {
            return Err(unknown_parameter(name, &key));
        }
    }
    Ok(out)
}

pub async fn load_route(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    allowed(&st, "load", &model)?;
    let params = parameters(&headers, body, Limit::flag(st.limits.max_body_bytes)).await?;
    let params = http_load_params(&model, params)?;
    load(&st, &model, params).await?;
    Ok(super::ok_json(serde_json::json!({})))
}

pub async fn unload_route(
    State(st): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = Limit::fixed(
        UNLOAD_BODY_BYTES,
        "model unload bodies are at most 64 KiB; --max-body-bytes does not raise it",
        st.limits.max_body_bytes,
    );
    parameters(&headers, body, limit).await?;
    unload(&st, &model)?;
    Ok(super::ok_json(serde_json::json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: serde_json::Value) -> Result<LoadParams, InferError> {
        http_load_params("simple", v.as_object().unwrap().clone())
    }

    #[test]
    fn http_parameters_are_config_and_base64_files_only() {
        let p =
            params(json!({"config": "{\"max_batch_size\":\"16\"}", "file:1/model.onnx": "AAEC"}))
                .unwrap();
        assert_eq!(p.config.as_deref(), Some("{\"max_batch_size\":\"16\"}"));
        assert_eq!(
            p.files,
            [ModelFile {
                path: "1/model.onnx".into(),
                content: vec![0, 1, 2]
            }]
        );
        // The object itself, for hand-written requests.
        let p = params(json!({"config": {"max_batch_size": 4}})).unwrap();
        assert_eq!(p.config.as_deref(), Some("{\"max_batch_size\":4}"));
        for (v, says) in [
            (json!({"config": 16}), "'config' must be a string"),
            (
                json!({"file:a": "not base64!"}),
                "'file:a' must be a base64 string",
            ),
            (json!({"file:a": [1]}), "'file:a' must be a base64 string"),
            (
                json!({"unload_dependents": false}),
                "unrecognized load parameter 'unload_dependents'",
            ),
        ] {
            let e = params(v.clone()).unwrap_err();
            assert!(
                e.message.starts_with("failed to load 'simple': "),
                "{v}: {}",
                e.message
            );
            assert!(e.message.contains(says), "{v}: {}", e.message);
            assert_eq!(e.kind, ferroserve_core::ErrorKind::InvalidInput);
        }
    }

    #[tokio::test]
    async fn a_refusal_in_this_mode_comes_before_the_parameters() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        // The bundled repository, fixed: model control is refused whatever the body says.
        let app = crate::app(crate::testing::examples_state());
        let req = axum::http::Request::post("/v2/repository/models/iris/load")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"parameters": {"bogus": 1, "file:../x": "!"}}"#,
            ))
            .unwrap();
        let r = app.oneshot(req).await.unwrap();
        assert_eq!(r.status(), 400);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let e = v["error"].as_str().unwrap();
        assert!(
            e.starts_with("failed to load 'iris': the model control mode is none"),
            "{e}"
        );
    }

    #[test]
    fn failures_to_take_files_are_internal_as_tritons() {
        let e = refused(RegistryError::Files {
            name: "simple".into(),
            reason: "file:x: bad".into(),
        });
        assert_eq!(e.kind, ferroserve_core::ErrorKind::Internal);
        assert_eq!(
            e.message,
            "failed to load 'simple': failed to poll from model repository: file:x: bad"
        );
        let e = refused(RegistryError::UnknownModel("x".into()));
        assert_eq!(e.kind, ferroserve_core::ErrorKind::InvalidInput);
    }
}
