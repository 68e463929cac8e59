//! `ferroserve-server` owns the HTTP front: the Open Inference Protocol (v2) REST routes
//! ([`v2`]), the friendly routes and route aliases of hand-written services ([`friendly`]), the
//! OpenAPI document ([`openapi`]) and Swagger UI ([`docs`]), request bodies with their limits
//! ([`body`]), the single mapping from error kinds to HTTP statuses and the one error body
//! ([`error`]), Prometheus metrics ([`metrics`]), request logging, and serving with graceful
//! shutdown. Routes are built by [`app`] so tests can drive them without a socket.

pub mod body;
pub mod conn;
pub mod docs;
pub mod error;
pub mod extract;
pub mod friendly;
pub mod grpc;
pub mod metrics;
pub mod openapi;
pub mod v2;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ferroserve_runtime::Runtime;

use crate::error::ApiError;

/// Limits on what a request may carry, and on connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Timeouts, connection caps, buffered bytes, drain deadline.
    pub conn: conn::ConnLimits,
    /// Streams one gRPC connection may have open at once (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`;
    /// a client opens more only as others close).
    pub grpc_max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024 * 1024,
            conn: conn::ConnLimits::default(),
            grpc_max_concurrent_streams: 1024,
        }
    }
}

/// The level of the one log line written per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLog {
    Off,
    /// Answers with a 5xx status at warn, 4xx at debug.
    Errors,
    Debug,
    Info,
}

/// Everything the handlers share.
pub struct AppState {
    /// The live model set; [`AppState::runtime`] is the snapshot a request takes.
    pub registry: Arc<ferroserve_runtime::Registry>,
    pub limits: Limits,
    /// Ready only when every model has a ready version (otherwise: when at least one has).
    pub strict_readiness: bool,
    pub request_log: RequestLog,
    /// `--route-owner PATH=MODEL`: which model serves a route alias several models declare.
    pub route_owners: Vec<(String, String)>,
    /// Connection counters of both fronts (and the buffered-bytes budget they share).
    pub connections: Arc<conn::ConnStats>,
    /// Every answer of both fronts, by route class or method and status (`/metrics`).
    pub answers: metrics::Answers,
}

impl AppState {
    /// State serving `runtime` as it is (no model control).
    pub fn new(runtime: Arc<Runtime>) -> Self {
        AppState::with_registry(ferroserve_runtime::Registry::fixed(runtime))
    }

    pub fn with_registry(registry: Arc<ferroserve_runtime::Registry>) -> Self {
        AppState {
            registry,
            limits: Limits::default(),
            strict_readiness: false,
            request_log: RequestLog::Errors,
            route_owners: Vec::new(),
            connections: Arc::default(),
            answers: metrics::Answers::default(),
        }
    }

    /// The models serving now: a request takes this once and uses it throughout.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.registry.snapshot()
    }

    pub fn is_ready(&self) -> bool {
        if self.strict_readiness {
            self.runtime().all_ready()
        } else {
            self.runtime().any_ready()
        }
    }
}

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
        .route("/metrics", get(metrics_route))
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
            panic_answer,
        ))
        // Around it, so that the 500 of a panic is counted and logged too.
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError(error::panicked(panic.as_ref())).into_response()
}

async fn metrics_route(State(st): State<Arc<AppState>>) -> Response {
    let mut text = String::new();
    conn::render(&mut text, &st.connections);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&st.runtime(), &st.answers) + &text,
    )
        .into_response()
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

/// Every answer counted by route class and status (`ferroserve_http_responses_total`: 404s of
/// unknown models and paths included), and one structured line per request when asked:
/// method, path, status, latency.
async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // The router sets the matched route's template before this layer runs (none: no route).
    let class = metrics::RouteClass::of(
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str()),
    );
    if st.request_log == RequestLog::Off {
        let resp = next.run(req).await;
        st.answers.http(class, resp.status().as_u16());
        return resp;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    st.answers.http(class, status);
    let micros = started.elapsed().as_micros() as u64;
    match st.request_log {
        RequestLog::Info => {
            tracing::info!(target: "ferroserve::request", %method, %path, status, micros)
        }
        RequestLog::Debug => {
            tracing::debug!(target: "ferroserve::request", %method, %path, status, micros)
        }
        RequestLog::Errors if status >= 500 => {
            tracing::warn!(target: "ferroserve::request", %method, %path, status, micros)
        }
        RequestLog::Errors if status >= 400 => {
            tracing::debug!(target: "ferroserve::request", %method, %path, status, micros)
        }
        RequestLog::Errors | RequestLog::Off => {}
    }
    resp
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops accepting, lets requests
/// in flight finish up to the drain deadline, and returns (see [`conn`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cfg = conn::FrontConfig {
        front: conn::Front::Http,
        limits: state.limits.conn.clone(),
        stats: state.connections.clone(),
        max_concurrent_streams: None,
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use metrics::RouteClass;
    use tower::ServiceExt;

    fn examples_state() -> Arc<AppState> {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
        let found = ferroserve_runtime::scan_repository(&repo, &Default::default()).unwrap();
        let runtime = Runtime::start(found, &Default::default());
        let mut st = AppState::new(Arc::new(runtime));
        st.request_log = RequestLog::Off;
        Arc::new(st)
    }

    #[tokio::test]
    async fn every_answer_is_counted_by_route_class_and_status() {
        let st = examples_state();
        let app = app(st.clone());
        for (method, uri, status) in [
            (Method::GET, "/v2/models/nope", 404),
            (Method::GET, "/v2/models/nope/versions/1/ready", 404),
            (Method::POST, "/v2/models/nope/infer", 404),
            (Method::POST, "/v2/models/nope/infer", 404),
            (Method::POST, "/models/nope/predict", 404),
            (Method::GET, "/no/such/path", 404),
            (Method::GET, "/v2/models/iris", 200),
            (Method::GET, "/v2/models/iris/infer", 405),
            (Method::GET, "/v2/health/live", 200),
            (Method::GET, "/docs", 308),
            (Method::GET, "/metrics", 200),
        ] {
            let req = Request::builder()
                .method(method.clone())
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            let r = app.clone().oneshot(req).await.unwrap();
            assert_eq!(r.status().as_u16(), status, "{method} {uri}");
        }
        let a = &st.answers;
        assert_eq!(a.http_count(RouteClass::V2Infer, 404), 2);
        assert_eq!(a.http_count(RouteClass::V2Infer, 405), 1);
        assert_eq!(a.http_count(RouteClass::V2Model, 404), 2);
        assert_eq!(a.http_count(RouteClass::V2Model, 200), 1);
        assert_eq!(a.http_count(RouteClass::Friendly, 404), 1);
        assert_eq!(a.http_count(RouteClass::Unmatched, 404), 1);
        assert_eq!(a.http_count(RouteClass::V2Server, 200), 1);
        assert_eq!(a.http_count(RouteClass::Docs, 308), 1);
        assert_eq!(a.http_count(RouteClass::Metrics, 200), 1);
        // And /metrics says so.
        let r = app
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("ferroserve_http_responses_total{route=\"v2_infer\",code=\"404\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("ferroserve_http_responses_total{route=\"unmatched\",code=\"404\"} 1\n")
        );
    }
}
