//! What every handler of both fronts shares: the model registry, the inference service, the
//! limits on requests and connections, the request-log level and the readiness rule
//! ([`AppState`]).

use std::sync::Arc;

use ferroserve_runtime::{InferenceService, Runtime};

use crate::{conn, metrics};

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

/// The level one request's log line is written at ([`RequestLog::line`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineLevel {
    Warn,
    Info,
    Debug,
}

impl RequestLog {
    /// The level of the line for an answer, or `None` for no line: `failed` is an error answer
    /// (HTTP 4xx and 5xx, any gRPC code but OK), `server_fault` one HTTP answers with a 5xx
    /// status (gRPC: the codes HTTP would answer so).
    pub fn line(self, failed: bool, server_fault: bool) -> Option<LineLevel> {
        match self {
            RequestLog::Off => None,
            RequestLog::Info => Some(LineLevel::Info),
            RequestLog::Debug => Some(LineLevel::Debug),
            RequestLog::Errors if server_fault => Some(LineLevel::Warn),
            RequestLog::Errors if failed => Some(LineLevel::Debug),
            RequestLog::Errors => None,
        }
    }
}

/// Writes one request's log line (target `ferroserve::request`) at `level`
/// (a [`RequestLog::line`]), with the fields given: `request_line!(level, %method, status)`.
macro_rules! request_line {
    ($level:expr, $($fields:tt)*) => {
        match $level {
            Some($crate::state::LineLevel::Warn) => {
                tracing::warn!(target: "ferroserve::request", $($fields)*)
            }
            Some($crate::state::LineLevel::Info) => {
                tracing::info!(target: "ferroserve::request", $($fields)*)
            }
            Some($crate::state::LineLevel::Debug) => {
                tracing::debug!(target: "ferroserve::request", $($fields)*)
            }
            None => {}
        }
    };
}
pub(crate) use request_line;

/// Everything the handlers share.
pub struct AppState {
    /// The live model set; [`AppState::runtime`] is the snapshot a request takes.
    pub registry: Arc<ferroserve_runtime::Registry>,
    /// What every inference request of both fronts goes through (with its hooks).
    pub service: InferenceService,
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
    /// What the HTTP front derives from the current model set ([`AppState::views`]).
    pub views: crate::views::ViewCache,
    /// The prediction log, when one is on (its sinks' counters go to `/metrics`; it is also
    /// one of `service`'s hooks).
    pub prediction_log: Option<Arc<ferroserve_predlog::PredictionLog>>,
    /// Where `GET /v2/models/{m}/predictions` reads records back (the SQLite sink's file).
    pub predictions: Option<Arc<ferroserve_predlog::sqlite::Reader>>,
    /// Batch jobs (`POST /jobs`), when enabled.
    pub jobs: Option<Arc<crate::jobs::Jobs>>,
    /// API keys, scopes and rate limits ([`crate::auth`]), when any is set up.
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// `--cors-origin`: the CORS layer of the HTTP front, outside the key check (a preflight
    /// carries no key).
    pub cors: Option<tower_http::cors::CorsLayer>,
    /// TLS on both fronts (`--tls-cert`), when on.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The last hour of each model version's traffic (`GET /v2/models/{m}/history`), stepped
    /// by [`crate::history::start`].
    pub history: Arc<crate::history::History>,
}

impl AppState {
    /// State serving `runtime` as it is (no model control).
    pub fn new(runtime: Arc<Runtime>) -> Self {
        AppState::with_registry(ferroserve_runtime::Registry::fixed(runtime))
    }

    /// State serving the live model set of `registry`.
    pub fn with_registry(registry: Arc<ferroserve_runtime::Registry>) -> Self {
        AppState {
            registry,
            service: InferenceService::default(),
            limits: Limits::default(),
            strict_readiness: false,
            request_log: RequestLog::Errors,
            route_owners: Vec::new(),
            connections: Arc::default(),
            answers: metrics::Answers::default(),
            views: Default::default(),
            prediction_log: None,
            predictions: None,
            jobs: None,
            auth: None,
            cors: None,
            tls: None,
            history: Default::default(),
        }
    }

    /// The models serving now: a request takes this once and uses it throughout.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.registry.snapshot()
    }

    /// The friendly tables, route aliases and OpenAPI document of the current model set.
    pub fn views(&self) -> Arc<crate::views::Views> {
        self.views.get(self)
    }

    /// How `front`'s listener is served: the connection limits and counters both fronts share,
    /// and (gRPC) the streams a connection may have open at once.
    pub fn front(&self, front: conn::Front) -> conn::FrontConfig {
        conn::FrontConfig {
            front,
            limits: self.limits.conn.clone(),
            stats: self.connections.clone(),
            max_concurrent_streams: match front {
                conn::Front::Http => None,
                conn::Front::Grpc => Some(self.limits.grpc_max_concurrent_streams),
            },
            tls: self.tls.clone(),
        }
    }

    /// The readiness rule both fronts answer (`/v2/health/ready`, gRPC `ServerReady`).
    pub fn is_ready(&self) -> bool {
        // Not before the models loading at start have each loaded or failed.
        if !self.registry.started() {
            return false;
        }
        if self.strict_readiness {
            self.runtime().all_ready()
        } else {
            self.runtime().any_ready()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_the_level_of_a_request_line() {
        use LineLevel::*;
        let table: Vec<[Option<LineLevel>; 3]> = [
            RequestLog::Off,
            RequestLog::Errors,
            RequestLog::Debug,
            RequestLog::Info,
        ]
        .iter()
        .map(|l| {
            [
                l.line(false, false),
                l.line(true, false),
                l.line(true, true),
            ]
        })
        .collect();
        assert_eq!(
            table,
            [
                [None, None, None],
                [None, Some(Debug), Some(Warn)],
                [Some(Debug), Some(Debug), Some(Debug)],
                [Some(Info), Some(Info), Some(Info)],
            ]
        );
    }
}
