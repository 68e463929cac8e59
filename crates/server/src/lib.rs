//! `ferroserve-server` owns the HTTP front: the Open Inference Protocol (v2) REST routes
//! ([`v2`]), the friendly routes and route aliases of hand-written services ([`friendly`]), the
//! OpenAPI document ([`openapi`]) and Swagger UI ([`docs`]), request bodies with their limits
//! ([`body`]), the single mapping from error kinds to HTTP statuses and the one error body
//! ([`error`]), Prometheus metrics ([`metrics`]), the counting and logging of every answer
//! ([`observe`]), and serving with graceful shutdown ([`conn`]); and the gRPC front ([`grpc`]).
//! What the handlers of both fronts share is in [`state`]; the views both fronts write out
//! are [`stats`] (the statistics extension) and [`v2::model_config`]. Routes are built by
//! [`app`] so tests can drive them without a socket (`tests/routes.rs`).

pub mod body;
pub mod conn;
pub mod docs;
pub mod error;
pub mod extract;
pub mod friendly;
pub mod grpc;
mod labels;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod state;
pub mod stats;
#[cfg(test)]
mod testing;
pub mod v2;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
pub use crate::state::{AppState, Limits, RequestLog};

/// All routes.
pub fn app(state: Arc<AppState>) -> Router {
    let friendly = Arc::new(friendly::Friendly::build(&state));
    let doc = openapi::document(&state, &friendly);
    let docs = Arc::new(docs::Docs::new(&doc));
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
        .merge(friendly::router(state.clone(), friendly))
        .merge(docs::router(docs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // A bug must not drop the connection: a panic in a handler answers 500, in the one
        // error body, and the server keeps serving.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            observe::panic_answer,
        ))
        // Around it, so that the 500 of a panic is counted and logged too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
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
    let routes = conn::Routes::new(app(state.clone()));
    // Everything derived from the model set follows it: the routes are rebuilt on each change.
    let mut changed = state.registry.subscribe();
    let (rebuild, st) = (routes.clone(), state.clone());
    tokio::spawn(async move {
        while changed.changed().await.is_ok() {
            rebuild.replace(app(st.clone()));
        }
    });
    conn::serve(listener, routes, cfg, shutdown).await
}
