//! Errors: one transport-neutral [`ErrorKind`], mapped once to HTTP statuses and once to gRPC
//! codes by the server; [`InferError`] carries a kind, a message for the client and, for
//! validation errors, one [`ErrorDetail`] per bad row, column or field.

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
    /// The client did not send its request body in time (408, DEADLINE_EXCEEDED).
    RequestTimeout,
    /// The content type is not one the route accepts (415, INVALID_ARGUMENT).
    UnsupportedMediaType,
    /// A bug or an unexpected backend failure (500, INTERNAL).
    Internal,
    /// No API key or token, or one that is not valid (401, UNAUTHENTICATED).
    Unauthenticated,
    /// A valid key or token without the scope or the model asked for (403, PERMISSION_DENIED).
    Forbidden,
    /// A key's or a model's rate limit is reached (429 with Retry-After, RESOURCE_EXHAUSTED).
    RateLimited,
}

impl ErrorKind {
    /// The HTTP status answered for this kind (the status a prediction record shows, whatever
    /// the protocol).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::Unprocessable => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::TooLarge => 413,
            ErrorKind::Overloaded => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::DeadlineExceeded => 504,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Internal => 500,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::RateLimited => 429,
        }
    }
}

/// What was wrong with one row, column or field of a request (a stable code clients can match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// A row has more or fewer values than the model has features.
    WrongFeatureCount,
    /// A name (record key, query parameter, CSV header, split column) is not a feature.
    UnknownFeature,
    /// A feature has no value.
    MissingFeature,
    /// A feature is given twice.
    DuplicateFeature,
    /// A value is not a number (nor null / empty, which mean missing).
    NotANumber,
    /// A number the model's input type cannot hold: too large for it (`1e39` for FP32, which
    /// would become infinity; `1e400`, beyond any float), or not whole for an integer input.
    OutOfRange,
    /// More rows than the model accepts in one request (`max_request_rows`).
    TooManyRows,
    /// A CSV line has more columns than the model has features.
    TooManyColumns,
    /// The request holds no rows.
    NoRows,
    /// The body's structure is not one the route accepts (wrong JSON shape, bad `shape`, ...).
    BadShape,
    /// A field outside the data has a bad value (unknown `orient`, `dtype`, ...).
    BadValue,
}

impl Problem {
    pub const ALL: [Problem; 11] = [
        Problem::WrongFeatureCount,
        Problem::UnknownFeature,
        Problem::MissingFeature,
        Problem::DuplicateFeature,
        Problem::NotANumber,
        Problem::OutOfRange,
        Problem::TooManyRows,
        Problem::TooManyColumns,
        Problem::NoRows,
        Problem::BadShape,
        Problem::BadValue,
    ];

    /// The code written in error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::WrongFeatureCount => "wrong_feature_count",
            Problem::UnknownFeature => "unknown_feature",
            Problem::MissingFeature => "missing_feature",
            Problem::DuplicateFeature => "duplicate_feature",
            Problem::NotANumber => "not_a_number",
            Problem::OutOfRange => "out_of_range",
            Problem::TooManyRows => "too_many_rows",
            Problem::TooManyColumns => "too_many_columns",
            Problem::NoRows => "no_rows",
            Problem::BadShape => "bad_shape",
            Problem::BadValue => "bad_value",
        }
    }
}

/// One bad row, column or field: where, what was expected, what came instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    pub problem: Problem,
    /// 0-based row of the request (data rows: a CSV header is not counted).
    pub row: Option<usize>,
    /// 0-based position of the value within its row.
    pub column: Option<usize>,
    /// The feature, query parameter, JSON key or CSV header concerned.
    pub field: Option<String>,
    /// What was expected, for a person.
    pub expected: String,
    /// What came instead, shortened.
    pub got: Option<String>,
}

impl ErrorDetail {
    pub fn new(problem: Problem, expected: impl Into<String>) -> Self {
        ErrorDetail {
            problem,
            row: None,
            column: None,
            field: None,
            expected: expected.into(),
            got: None,
        }
    }

    pub fn row(mut self, row: usize) -> Self {
        self.row = Some(row);
        self
    }

    pub fn column(mut self, column: usize) -> Self {
        self.column = Some(column);
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn got(mut self, got: impl Into<String>) -> Self {
        let mut g: String = got.into();
        if g.len() > 80 {
            let mut cut = 77;
            while !g.is_char_boundary(cut) {
                cut -= 1;
            }
            g.truncate(cut);
            g.push_str("...");
        }
        self.got = Some(g);
        self
    }

    /// One line saying where and what: `row 2, feature 'x': expected a number, got "abc"`.
    pub fn message(&self) -> String {
        let mut s = String::new();
        if let Some(r) = self.row {
            s.push_str(&format!("row {r}"));
        }
        if let Some(c) = self.column {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&format!("column {c}"));
        }
        if let Some(f) = &self.field {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&format!("'{f}'"));
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str("expected ");
        s.push_str(&self.expected);
        if let Some(g) = &self.got {
            s.push_str(", got ");
            s.push_str(g);
        }
        s
    }
}

/// An error answered to a client: a kind, a message saying which field and what was expected,
/// and for validation errors the list of every bad row, column or field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferError {
    pub kind: ErrorKind,
    pub message: String,
    /// One entry per problem found (empty for errors that are not about the request's data).
    pub details: Vec<ErrorDetail>,
    /// Seconds after which a retry may succeed (`Retry-After`), when the error says.
    pub retry_after: Option<u64>,
}

impl InferError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        InferError {
            kind,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    /// A validation error (`Unprocessable`) listing `details`; `total` counts every problem
    /// found, which may be more than the details kept.
    pub fn unprocessable(details: Vec<ErrorDetail>, total: usize) -> Self {
        let total = total.max(details.len());
        let mut message = match total {
            1 => "1 problem in the request: ".to_string(),
            n => format!("{n} problems in the request: "),
        };
        for (i, d) in details.iter().take(3).enumerate() {
            if i > 0 {
                message.push_str("; ");
            }
            message.push_str(&d.message());
        }
        if total > 3 {
            message.push_str(&format!("; and {} more (see details)", total - 3));
        }
        InferError {
            kind: ErrorKind::Unprocessable,
            message,
            details,
            retry_after: None,
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

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// A rate limit reached: a retry may succeed after `retry_after` seconds.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(ErrorKind::RateLimited, message);
        e.retry_after = Some(retry_after);
        e
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
    /// The artifact is well formed but holds something this backend does not implement (the
    /// message names it): another backend may take it.
    #[error("{0}")]
    Unsupported(String),
    /// The batch does not fit the model.
    #[error("{0}")]
    Input(String),
    /// The model failed while running.
    #[error("{0}")]
    Run(String),
    /// The model cannot run the batch now, through no fault of the batch (a Python worker that
    /// crashed, hung or is restarting): the client may retry.
    #[error("{0}")]
    Unavailable(String),
}

impl From<BackendError> for InferError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Load(m) | BackendError::Unsupported(m) | BackendError::Unavailable(m) => {
                InferError::unavailable(m)
            }
            BackendError::Input(m) => InferError::invalid(m),
            BackendError::Run(m) => InferError::internal(m),
        }
    }
}
