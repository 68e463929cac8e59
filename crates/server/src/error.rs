//! The one mapping from [`ErrorKind`] to HTTP, and the v2 error body `{"error": "..."}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferroserve_core::{ErrorKind, InferError};

/// An error answered over HTTP.
#[derive(Debug)]
pub struct ApiError(pub InferError);

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError(InferError::invalid(msg))
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError(InferError::not_found(msg))
    }
}

/// The HTTP status of each error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The v2 error body.
pub fn error_body(message: &str) -> String {
    let mut s = String::with_capacity(message.len() + 16);
    s.push_str("{\"error\":");
    s.push_str(&serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into()));
    s.push('}');
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        let mut resp = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            error_body(&self.0.message),
        )
            .into_response();
        if matches!(self.0.kind, ErrorKind::Overloaded | ErrorKind::Unavailable) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
