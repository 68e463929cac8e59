//! Swagger UI at `/docs/` and `/apidocs/` (the Flasgger path), and `/openapi.json`. The
//! Swagger UI files are compiled into the binary from the `utoipa-swagger-ui` crate's vendored
//! copy (feature `vendored`): nothing is fetched at build or run time, and the page loads no
//! script, style or font from anywhere but this server.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use utoipa_swagger_ui::Config;

use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

/// What the documentation routes serve.
pub struct Docs {
    /// The OpenAPI document, serialized once.
    pub openapi: Vec<u8>,
    config: Arc<Config<'static>>,
}

impl Docs {
    pub fn new(openapi: &serde_json::Value) -> Docs {
        let config = Config::new(["/openapi.json"])
            .try_it_out_enabled(true)
            .display_request_duration(true)
            .doc_expansion("list")
            .deep_linking(true)
            .filter(true)
            .default_models_expand_depth(0)
            .validator_url("none");
        Docs {
            openapi: serde_json::to_vec(openapi).unwrap_or_default(),
            config: Arc::new(config),
        }
    }

    fn file(&self, path: &str) -> Response {
        match utoipa_swagger_ui::serve(path, self.config.clone()) {
            Ok(Some(f)) => {
                let mut resp = (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_str(&f.content_type)
                            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
                    )],
                    f.bytes.into_owned(),
                )
                    .into_response();
                if f.gzpipped {
                    resp.headers_mut()
                        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                resp
            }
            Ok(None) => ApiError::not_found(format!("no Swagger UI file '{path}'")).into_response(),
            Err(e) => ApiError(ferroserve_core::InferError::internal(format!(
                "Swagger UI: {e}"
            )))
            .into_response(),
        }
    }
}

/// `/openapi.json`, `/docs/...` and `/apidocs/...`, of the current model set.
pub fn router() -> Router<Arc<AppState>> {
    let docs = |st: &AppState| st.views().docs();
    let openapi = move |State(st): State<Arc<AppState>>| async move {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            docs(&st).openapi.clone(),
        )
            .into_response()
    };
    let index = move |State(st): State<Arc<AppState>>| async move { docs(&st).file("index.html") };
    let file = move |State(st): State<Arc<AppState>>, Path(p): Path<String>| async move {
        docs(&st).file(&p)
    };
    Router::new()
        .route("/docs", get(|| async { Redirect::permanent("/docs/") }))
        .route("/docs/", get(index))
        .route("/docs/{*file}", get(file))
        .route(
            "/apidocs",
            get(|| async { Redirect::permanent("/apidocs/") }),
        )
        .route("/apidocs/", get(index))
        .route("/apidocs/{*file}", get(file))
        .route("/openapi.json", get(openapi))
}
