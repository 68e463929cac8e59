//! `ferroserve-server` owns the HTTP front: the Open Inference Protocol (v2) REST routes
//! ([`v2`]), the friendly routes and route aliases of hand-written services ([`friendly`]), the
//! OpenAPI document ([`openapi`]) and Swagger UI ([`docs`]), request bodies with their limits
//! ([`body`]), the single mapping from error kinds to HTTP statuses and the one error body
//! ([`error`]), Prometheus metrics ([`metrics`]), the counting and logging of every answer
//! ([`observe`]), and serving with graceful shutdown ([`conn`]); and the gRPC front ([`grpc`]).
//! What the handlers of both fronts share is in [`state`]; the views both fronts write out
//! are [`stats`] (the statistics extension) and [`v2::model_config`]. Routes are built by
//! [`app`] (and the gRPC ones by [`grpc_app`]) so tests can drive them without a socket
//! (`tests/routes.rs`). Inference requests of both fronts are run by the runtime's inference
//! service ([`ferroserve_runtime::service`]); the fronts decode and encode.

pub mod auth;
pub mod body;
pub mod conn;
pub mod docs;
pub mod error;
pub mod extract;
pub mod friendly;
pub mod grpc;
pub mod history;
pub mod jobs;
pub mod jwt;
mod labels;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod predictions;
pub mod state;
pub mod stats;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod ui;
pub mod v2;
pub mod views;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
pub use crate::state::{AppState, Limits, RequestLog};

/// All routes.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(v2::server_metadata))
        // The Open Inference Protocol's OpenAPI document writes the path with a slash.
        .route("/v2/", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/repository/index", post(v2::repository_index))
        .route(
            "/v2/repository/models/{model}/load",
            post(v2::control::load_route),
        )
        .route(
            "/v2/repository/models/{model}/unload",
            post(v2::control::unload_route),
        )
        .route("/metrics", get(metrics::route))
        .route("/v2/caller", get(auth::caller_route))
        .route("/v2/models/stats", get(v2::all_stats))
        .route("/v2/models/{model}/stats", get(v2::model_stats))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(v2::version_stats),
        )
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route("/v2/models/{model}/config", get(v2::model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(v2::version_config),
        )
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route("/v2/models/{model}/predictions", get(predictions::route))
        .route("/v2/models/{model}/history", get(history::route))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(v2::version_metadata),
        )
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(v2::version_ready),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(v2::infer_version),
        )
        .merge(friendly::router())
        .merge(jobs::router())
        .merge(docs::router())
        .merge(ui::router())
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        // A bug must not drop the connection: a panic in a handler answers 500, in the one
        // error body, and the server keeps serving.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            observe::panic_answer,
        ))
        // Who may call what (API keys, scopes, rate limits): before any handler runs.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::http_layer,
        ))
        // A preflight is answered, and every answer (a refusal too) gets its CORS headers,
        // before the key check.
        .layer(tower::util::option_layer(state.cors.clone()))
        // Around it, so that the 500 of a panic and a refused key are counted and logged too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

/// The gRPC routes ([`grpc::routes`]) as served: a unary call refused for its size answers
/// RESOURCE_EXHAUSTED (`grpc::oversized_headers`), and a panic in a handler answers INTERNAL
/// (as over HTTP it answers 500) while the server keeps serving (`grpc::panic_status`).
pub fn grpc_app(state: Arc<AppState>, stopping: tokio::sync::watch::Receiver<bool>) -> Router {
    grpc::routes(state.clone(), stopping)
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::grpc_layer,
        ))
        .layer(tower::util::MapResponseLayer::new(
            grpc::oversized_headers::<axum::body::Body>,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            grpc::panic_status,
        ))
}

/// A path no fixed route matches: a route alias of the current model set ([`friendly::dispatch`]),
/// or no route — which, while models are still loading, may be one of theirs: 503, retry.
async fn fallback(
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    caller: Option<axum::Extension<auth::Caller>>,
    body: axum::body::Body,
) -> Response {
    let caller = caller.map_or_else(auth::Caller::anyone, |c| c.0);
    if let Some(answer) = friendly::dispatch(&st, &method, &uri, &headers, body, &caller).await {
        return answer;
    }
    let loading = st.runtime().models().filter(|m| m.loading).count();
    if loading > 0 {
        let mut r = ApiError(ferroserve_core::InferError::unavailable(format!(
            "no route for {method} {} yet: {loading} model(s) are still loading, and their route aliases are not known until they are; retry shortly",
            uri.path()
        )))
        .into_response();
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return r;
    }
    ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response()
}

pub(crate) async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let mut r =
        ApiError::invalid(format!("{method} is not allowed on {}", uri.path())).into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops accepting, lets requests
/// in flight finish up to the drain deadline, and returns (see [`conn`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cfg = state.front(conn::Front::Http);
    conn::serve(listener, app(state), cfg, shutdown).await
}
