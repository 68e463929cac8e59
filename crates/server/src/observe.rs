//! What happens around every HTTP route: each answer counted by route class and status
//! (`ferroserve_http_responses_total`) and logged at the request-log level ([`observe`]); and
//! a handler's panic answered 500, in the one error body ([`panic_answer`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{panicked, ApiError};
use crate::metrics::RouteClass;
use crate::state::{request_line, AppState, RequestLog};

/// A panic in a handler, as HTTP answers it: 500 with what the panic said.
pub fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError(panicked(panic.as_ref())).into_response()
}

/// Every answer counted by route class and status (`ferroserve_http_responses_total`: 404s of
/// unknown models and paths included), and one structured line per request when asked:
/// method, path, status, latency.
pub async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // The router sets the matched route's template before this layer runs (none: no route).
    let class = RouteClass::of(
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str()),
    );
    // Route aliases are answered by the fallback, which marks its answers as friendly.
    let class_of = |resp: &Response| {
        resp.extensions()
            .get::<RouteClass>()
            .copied()
            .unwrap_or(class)
    };
    if st.request_log == RequestLog::Off {
        let resp = next.run(req).await;
        st.answers.http(class_of(&resp), resp.status().as_u16());
        return resp;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    st.answers.http(class_of(&resp), status);
    let micros = started.elapsed().as_micros() as u64;
    // A readiness probe answered 503 (models still loading, or not ready) is the answer the
    // probe asks for, not a fault: it is logged like any failed request, not as a warning.
    let probe =
        matches!(class, RouteClass::V2Server | RouteClass::V2Model) && path.ends_with("/ready");
    request_line!(
        st.request_log.line(status >= 400, status >= 500 && !probe),
        %method, %path, status, micros
    );
    resp
}
