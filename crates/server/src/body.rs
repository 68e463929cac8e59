//! Reading request bodies: content type checked, size limited, every failure a v2 error.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use ferroserve_core::{ErrorKind, InferError};

use crate::error::ApiError;

/// What a body claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    OctetStream,
}

/// Accepts JSON (or no content type at all, as many clients send); `octet_ok` also accepts
/// `application/octet-stream`.
pub fn body_kind(headers: &HeaderMap, octet_ok: bool) -> Result<BodyKind, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") || essence.is_empty() {
        Ok(BodyKind::Json)
    } else if octet_ok && essence == "application/octet-stream" {
        Ok(BodyKind::OctetStream)
    } else {
        Err(ApiError(InferError::new(
            ErrorKind::UnsupportedMediaType,
            if octet_ok {
                format!("unsupported Content-Type '{essence}': send 'application/json', or 'application/octet-stream' with an Inference-Header-Content-Length header")
            } else {
                format!(
                    "unsupported Content-Type '{essence}': send 'Content-Type: application/json'"
                )
            },
        )))
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError(InferError::new(
            ErrorKind::TooLarge,
            format!("request body is larger than the limit of {limit} bytes (--max-body-bytes)"),
        ))
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            // A length-limit failure is reported as such; anything else is a broken upload.
            let msg = e.to_string();
            if msg.contains("length limit") {
                Err(too_large())
            } else {
                Err(ApiError::invalid(format!(
                    "could not read the request body: {msg}"
                )))
            }
        }
    }
}
