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
    request_line!(
        st.request_log.line(status >= 400, status >= 500),
        %method, %path, status, micros
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Method;
    use tower::ServiceExt;

    use crate::app;
    use crate::testing::examples_state;

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
