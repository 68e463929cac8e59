//! The one mapping from [`ErrorKind`] to HTTP statuses ([`status_of`]) and the one mapping to
//! gRPC codes ([`code_of`]), side by side; and the one error body every HTTP route answers: the
//! v2 `{"error": "..."}`, plus `"details"` (one entry per bad row, column or field) for
//! validation errors.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferroserve_core::{ErrorDetail, ErrorKind, InferError};

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
    StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The gRPC code of each error kind.
pub fn code_of(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::InvalidInput => tonic::Code::InvalidArgument,
        ErrorKind::Unprocessable => tonic::Code::InvalidArgument,
        ErrorKind::NotFound => tonic::Code::NotFound,
        // As gRPC itself answers a message over the size limit.
        ErrorKind::TooLarge => tonic::Code::ResourceExhausted,
        ErrorKind::Overloaded => tonic::Code::ResourceExhausted,
        ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::DeadlineExceeded | ErrorKind::RequestTimeout => tonic::Code::DeadlineExceeded,
        ErrorKind::UnsupportedMediaType => tonic::Code::InvalidArgument,
        ErrorKind::Internal => tonic::Code::Internal,
        ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorKind::Forbidden => tonic::Code::PermissionDenied,
        ErrorKind::RateLimited => tonic::Code::ResourceExhausted,
    }
}

/// An error answered over gRPC: its code and the same message HTTP would answer.
pub fn grpc_status(e: InferError) -> tonic::Status {
    tonic::Status::new(code_of(e.kind), e.message)
}

/// What a panic said (its `&str` or `String` payload), logged as a handler's panic, and the
/// internal error both fronts answer for it.
pub fn panicked(panic: &(dyn std::any::Any + Send)) -> InferError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(%what, "handler panicked");
    InferError::internal(format!("internal error: {what}"))
}

#[derive(serde::Serialize)]
struct DetailJson<'a> {
    problem: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    expected: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    got: Option<&'a str>,
    message: String,
}

#[derive(serde::Serialize)]
struct ErrorJson<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<DetailJson<'a>>,
}

/// The error body: `{"error": message}` and, when there are any, `"details"`.
pub fn error_body(message: &str, details: &[ErrorDetail]) -> String {
    let doc = ErrorJson {
        error: message,
        details: details
            .iter()
            .map(|d| DetailJson {
                problem: d.problem.as_str(),
                row: d.row,
                column: d.column,
                field: d.field.as_deref(),
                expected: &d.expected,
                got: d.got.as_deref(),
                message: d.message(),
            })
            .collect(),
    };
    serde_json::to_string(&doc).unwrap_or_else(|_| "{\"error\":\"error\"}".into())
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
            error_body(&self.0.message, &self.0.details),
        )
            .into_response();
        if let Some(secs) = self.0.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        } else if matches!(self.0.kind, ErrorKind::Overloaded | ErrorKind::Unavailable) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.0.kind == ErrorKind::Unauthenticated {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ferroserve\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_status_and_a_code() {
        let kinds = [
            ErrorKind::InvalidInput,
            ErrorKind::Unprocessable,
            ErrorKind::NotFound,
            ErrorKind::TooLarge,
            ErrorKind::Overloaded,
            ErrorKind::Unavailable,
            ErrorKind::DeadlineExceeded,
            ErrorKind::RequestTimeout,
            ErrorKind::UnsupportedMediaType,
            ErrorKind::Internal,
            ErrorKind::Unauthenticated,
            ErrorKind::Forbidden,
            ErrorKind::RateLimited,
        ];
        let table: Vec<(u16, tonic::Code)> = kinds
            .iter()
            .map(|&k| (status_of(k).as_u16(), code_of(k)))
            .collect();
        assert_eq!(
            table,
            [
                (400, tonic::Code::InvalidArgument),
                (422, tonic::Code::InvalidArgument),
                (404, tonic::Code::NotFound),
                (413, tonic::Code::ResourceExhausted),
                (429, tonic::Code::ResourceExhausted),
                (503, tonic::Code::Unavailable),
                (504, tonic::Code::DeadlineExceeded),
                (408, tonic::Code::DeadlineExceeded),
                (415, tonic::Code::InvalidArgument),
                (500, tonic::Code::Internal),
                (401, tonic::Code::Unauthenticated),
                (403, tonic::Code::PermissionDenied),
                (429, tonic::Code::ResourceExhausted),
            ]
        );
        let s = grpc_status(InferError::not_found("unknown model 'x'"));
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::NotFound, "unknown model 'x'")
        );
    }
}
