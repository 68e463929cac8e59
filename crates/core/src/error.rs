//! Errors: one transport-neutral [`ErrorKind`], mapped once to HTTP statuses and once to gRPC
//! codes by the server; [`InferError`] carries a kind and a message for the client.

use std::fmt;

/// What class of failure an error is, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or does not fit the model (HTTP 400, gRPC INVALID_ARGUMENT).
    InvalidInput,
    /// Well-formed but semantically invalid rows/fields (friendly routes answer 422).
    Unprocessable,
    /// No such model, version or route (404, NOT_FOUND).
    NotFound,
    /// The body or batch is over a configured limit (413, RESOURCE_EXHAUSTED / INVALID_ARGUMENT).
    TooLarge,
    /// The model's queue is full (429 with Retry-After, RESOURCE_EXHAUSTED).
    Overloaded,
    /// The model or server is not ready (503, UNAVAILABLE).
    Unavailable,
    /// The request's deadline passed before it could be answered (504, DEADLINE_EXCEEDED).
    DeadlineExceeded,
    /// The content type is not one the route accepts (415, INVALID_ARGUMENT).
    UnsupportedMediaType,
    /// A bug or an unexpected backend failure (500, INTERNAL).
    Internal,
}

/// An error answered to a client: a kind and a message saying which field, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferError {
    pub kind: ErrorKind,
    pub message: String,
}

impl InferError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        InferError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for InferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InferError {}

/// Errors from a backend, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The artifact cannot be loaded (the reason is shown in the model's status).
    #[error("{0}")]
    Load(String),
    /// The batch does not fit the model.
    #[error("{0}")]
    Input(String),
    /// The model failed while running.
    #[error("{0}")]
    Run(String),
}

impl From<BackendError> for InferError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Load(m) => InferError::unavailable(m),
            BackendError::Input(m) => InferError::invalid(m),
            BackendError::Run(m) => InferError::internal(m),
        }
    }
}
