//! Extractors whose every rejection answers the v2 error body (`{"error": "..."}`), like every
//! other failure: axum's own answer plain text (a URL whose percent-decoded path segment is not
//! UTF-8, `/v2/models/%FF/infer`, is a `text/plain` 400 from `axum::extract::Path`).

use axum::extract::path::ErrorKind as PathErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ferroserve_core::InferError;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `axum::extract::Path`, refusing in the v2 error body: a path segment that is not UTF-8 once
/// percent-decoded is a 400 naming the URL and the segment.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(path_error(e, parts.uri.path())),
        }
    }
}

/// The v2 error for a path the router matched but the extractor refused.
fn path_error(e: PathRejection, path: &str) -> ApiError {
    match e {
        PathRejection::FailedToDeserializePathParams(d) => match d.kind() {
            PathErrorKind::InvalidUtf8InPathParam { key } => ApiError::invalid(format!(
                "invalid URL {path}: the path segment for {{{key}}} is not UTF-8 once percent-decoded"
            )),
            _ => ApiError::invalid(format!("invalid URL {path}: {}", d.body_text())),
        },
        // A route declared without the parameters its handler reads: ours, not the client's.
        other => ApiError(InferError::internal(format!(
            "cannot read the parameters of {path}: {}",
            other.body_text()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn answer(app: Router, uri: &str) -> (StatusCode, String, String) {
        let r = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_path_segment_that_is_not_utf8_is_a_v2_error() {
        let app = Router::new()
            .route(
                "/v2/models/{model}/versions/{version}",
                get(|Path((m, v)): Path<(String, String)>| async move { format!("{m} {v}") }),
            )
            .route(
                "/n/{n}",
                get(|Path(n): Path<u8>| async move { n.to_string() }),
            );
        let (status, ct, body) = answer(app.clone(), "/v2/models/%FF/versions/1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "invalid URL /v2/models/%FF/versions/1: the path segment for {model} is not UTF-8 once percent-decoded"})
        );
        let (status, _, body) = answer(app.clone(), "/v2/models/a%20b/versions/%C3%A9").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "a b é"));
        // Any other refusal is a v2 error too.
        let (status, ct, body) = answer(app, "/n/300").await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::BAD_REQUEST, "application/json")
        );
        assert!(
            body.starts_with("{\"error\":\"invalid URL /n/300: "),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_route_without_its_parameters_is_an_internal_error() {
        let e =
            path_error(PathRejection::MissingPathParams(Default::default()), "/x").into_response();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
