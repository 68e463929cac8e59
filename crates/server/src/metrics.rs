//! `/metrics`: the runtime's per-version statistics rendered in the Prometheus text format,
//! and the answers of both fronts counted by route class or method and status ([`Answers`]:
//! what is asked of no model, an unknown model or an unknown path, is counted there).
//! Names follow Prometheus conventions (`_total`, `_seconds`); labels are bounded: model,
//! version, outcome, route class, gRPC method, status code.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ferroserve_runtime::stats::Histogram;
use ferroserve_runtime::{Outcome, Runtime, ServedVersion, VersionState};

use crate::grpc::Method;
use crate::labels::label_enum;
use crate::state::AppState;

/// `GET /metrics`: every metric, the connections' included.
pub async fn route(State(st): State<Arc<AppState>>) -> Response {
    let mut text = String::new();
    crate::conn::render(&mut text, &st.connections);
    if let Some(tls) = &st.tls {
        tls.render(&mut text);
    }
    if let Some(auth) = &st.auth {
        auth.render(&mut text);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&st.runtime(), &st.answers) + &text + &prediction_log(&st),
    )
        .into_response()
}

label_enum! {
    /// What an HTTP route serves: the bounded `route` label of `ferroserve_http_responses_total`.
    pub enum RouteClass {
        /// `POST /v2/models/{m}[/versions/{v}]/infer`.
        V2Infer => "v2_infer",
        /// The other `/v2/models/...` routes: metadata, readiness, configuration, statistics.
        V2Model => "v2_model",
        /// `/v2`, `/v2/health/*`, `/v2/repository/index`.
        V2Server => "v2_server",
        /// The friendly routes (`/models/...`, KServe v1, `GET /`) and route aliases.
        Friendly => "friendly",
        /// `/metrics`.
        Metrics => "metrics",
        /// `/openapi.json`, `/docs/`, `/apidocs/`.
        Docs => "docs",
        /// No route: the path is unknown to the server.
        Unmatched => "unmatched",
    }
}

impl RouteClass {
    /// The class of the route template that matched a request (`None`: none did).
    pub fn of(template: Option<&str>) -> RouteClass {
        let Some(t) = template else {
            return RouteClass::Unmatched;
        };
        match t {
            "/v2/models/{model}/infer" | "/v2/models/{model}/versions/{version}/infer" => {
                RouteClass::V2Infer
            }
            "/metrics" => RouteClass::Metrics,
            "/openapi.json" => RouteClass::Docs,
            t if t.starts_with("/v2/models/") => RouteClass::V2Model,
            t if t == "/v2" || t.starts_with("/v2/") => RouteClass::V2Server,
            t if t == "/docs" || t.starts_with("/docs/") => RouteClass::Docs,
            t if t == "/apidocs" || t.starts_with("/apidocs/") => RouteClass::Docs,
            _ => RouteClass::Friendly,
        }
    }
}

/// HTTP status codes counted one by one (100 to 599); any other is counted as `other`.
const HTTP_CODES: usize = 500;
/// gRPC status codes: 0 (OK) to 16 (UNAUTHENTICATED).
const GRPC_CODES: usize = 17;
/// Codes rendered even at zero, so that a rate over them exists before the first one (a
/// series that appears at its first increment hides that increment from `increase()`): what
/// this server answers (the one error mapping, 200 and 405).
const HTTP_ALWAYS: [u16; 11] = [200, 400, 404, 405, 413, 415, 422, 429, 500, 503, 504];
const GRPC_ALWAYS: [tonic::Code; 7] = [
    tonic::Code::Ok,
    tonic::Code::InvalidArgument,
    tonic::Code::NotFound,
    tonic::Code::ResourceExhausted,
    tonic::Code::Unavailable,
    tonic::Code::DeadlineExceeded,
    tonic::Code::Internal,
];

/// Every answer of both fronts, by route class (HTTP) or method (gRPC) and status: one atomic
/// counter per pair, counted with one relaxed add.
pub struct Answers {
    /// `[class][code - 100]`, then one `other` slot per class.
    http: Vec<AtomicU64>,
    /// `[method][code]`.
    grpc: Vec<AtomicU64>,
}

impl Default for Answers {
    fn default() -> Self {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Answers {
            http: zeros(RouteClass::ALL.len() * (HTTP_CODES + 1)),
            grpc: zeros(Method::ALL.len() * GRPC_CODES),
        }
    }
}

impl Answers {
    fn http_slot(class: RouteClass, status: u16) -> usize {
        let code = match status {
            100..=599 => (status - 100) as usize,
            _ => HTTP_CODES,
        };
        class.index() * (HTTP_CODES + 1) + code
    }

    fn grpc_slot(method: Method, code: tonic::Code) -> usize {
        method.index() * GRPC_CODES + (code as usize).min(GRPC_CODES - 1)
    }

    /// Counts one HTTP answer.
    pub fn http(&self, class: RouteClass, status: u16) {
        self.http[Self::http_slot(class, status)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one gRPC answer (for a stream, one per message answered).
    pub fn grpc(&self, method: Method, code: tonic::Code) {
        self.grpc[Self::grpc_slot(method, code)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn http_count(&self, class: RouteClass, status: u16) -> u64 {
        self.http[Self::http_slot(class, status)].load(Ordering::Relaxed)
    }

    pub fn grpc_count(&self, method: Method, code: tonic::Code) -> u64 {
        self.grpc[Self::grpc_slot(method, code)].load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        header(
            out,
            "ferroserve_http_responses_total",
            "counter",
            "HTTP answers by route class (v2_infer, v2_model, v2_server, friendly, metrics, docs; unmatched: no route) and status code. An unknown model is a 404 of its route's class, an unknown path a 404 of unmatched.",
        );
        for class in RouteClass::ALL {
            for status in 100..=600u16 {
                let n = self.http[Self::http_slot(class, status)].load(Ordering::Relaxed);
                let always = HTTP_ALWAYS.contains(&status);
                if n == 0 && !always {
                    continue;
                }
                let code = if status == 600 {
                    "other".to_string()
                } else {
                    status.to_string()
                };
                let labels = format!("route=\"{}\",code=\"{code}\"", class.as_str());
                sample(out, "ferroserve_http_responses_total", &labels, n);
            }
        }
        header(
            out,
            "ferroserve_grpc_responses_total",
            "counter",
            "gRPC answers by method and status code (a stream counts each message it answers). An unknown model is NotFound.",
        );
        for method in Method::ALL {
            for c in 0..GRPC_CODES as i32 {
                let code = tonic::Code::from_i32(c);
                let n = self.grpc_count(method, code);
                if n == 0 && !GRPC_ALWAYS.contains(&code) {
                    continue;
                }
                let labels = format!("method=\"{}\",code=\"{code:?}\"", method.as_str());
                sample(out, "ferroserve_grpc_responses_total", &labels, n);
            }
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `# HELP` and `# TYPE` lines that open a metric family.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample: `name{labels} value`, or `name value` without labels.
pub(crate) fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn histogram<const N: usize>(out: &mut String, name: &str, labels: &str, h: &Histogram<N>) {
    let (buckets, sum, count) = h.snapshot();
    for (le, c) in buckets {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// The labels of one served version.
fn version_labels(model: &str, version: u64) -> String {
    format!("model=\"{}\",version=\"{version}\"", esc(model))
}

/// A family with one sample per served version.
fn per_version<V: std::fmt::Display>(
    out: &mut String,
    served: &[&Arc<ServedVersion>],
    (name, kind, help): (&str, &str, &str),
    value: impl Fn(&ServedVersion) -> V,
) {
    header(out, name, kind, help);
    for s in served {
        sample(out, name, &version_labels(&s.name, s.version), value(s));
    }
}

/// A histogram family with one histogram per served version.
fn histograms<const N: usize>(
    out: &mut String,
    served: &[&Arc<ServedVersion>],
    (name, help): (&str, &str),
    h: impl Fn(&ServedVersion) -> &Histogram<N>,
) {
    header(out, name, "histogram", help);
    for s in served {
        histogram(out, name, &version_labels(&s.name, s.version), h(s));
    }
}

/// Renders every metric.
pub fn render(rt: &Runtime, answers: &Answers) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let served: Vec<_> = crate::stats::ready_versions(rt).collect();
    let name = "ferroserve_requests_total";
    header(
        &mut out,
        name,
        "counter",
        "Inference requests by model, version and outcome.",
    );
    for s in &served {
        for o in Outcome::ALL {
            let labels = format!(
                "{},outcome=\"{}\"",
                version_labels(&s.name, s.version),
                o.as_str()
            );
            sample(&mut out, name, &labels, s.stats.requests(o));
        }
    }
    per_version(
        &mut out,
        &served,
        (
            "ferroserve_inference_rows_total",
            "counter",
            "Rows answered successfully.",
        ),
        |s| s.stats.inference_count.load(Ordering::Relaxed),
    );
    per_version(
        &mut out,
        &served,
        (
            "ferroserve_batches_total",
            "counter",
            "Batches run by the model's instances.",
        ),
        |s| s.stats.execution_count.load(Ordering::Relaxed),
    );
    histograms(
        &mut out,
        &served,
        (
            "ferroserve_request_duration_seconds",
            "Total time from request to answer (server side).",
        ),
        |s| &s.stats.latency_seconds,
    );
    histograms(
        &mut out,
        &served,
        (
            "ferroserve_queue_duration_seconds",
            "Time requests waited in the model's queue.",
        ),
        |s| &s.stats.queue_seconds,
    );
    histograms(
        &mut out,
        &served,
        (
            "ferroserve_compute_duration_seconds",
            "Time an instance spent on one batch.",
        ),
        |s| &s.stats.compute_seconds,
    );
    histograms(
        &mut out,
        &served,
        ("ferroserve_batch_rows", "Rows per batch run."),
        |s| &s.stats.batch_rows,
    );
    per_version(
        &mut out,
        &served,
        (
            "ferroserve_queue_depth",
            "gauge",
            "Requests admitted and not yet answered.",
        ),
        |s| s.handle.queue_depth(),
    );
    per_version(
        &mut out,
        &served,
        (
            "ferroserve_instance_busy_seconds_total",
            "counter",
            "Time the model's instances spent computing.",
        ),
        |s| s.stats.busy.get().1 as f64 / 1e9,
    );
    let name = "ferroserve_model_ready";
    header(
        &mut out,
        name,
        "gauge",
        "1 when the model version is loaded and serving.",
    );
    for m in rt.models() {
        for (&v, st) in &m.versions {
            let ready = matches!(st, VersionState::Ready(_)) as u8;
            sample(&mut out, name, &version_labels(&m.name, v), ready);
        }
    }
    let name = "ferroserve_model_load_failures_total";
    header(
        &mut out,
        name,
        "counter",
        "Models or versions that failed to load.",
    );
    sample(&mut out, name, "", rt.load_failures());
    answers.render(&mut out);
    out
}

/// The prediction log's sinks: records written, dropped and spooled, queue lengths, write
/// time; the spool's size.
fn prediction_log(st: &AppState) -> String {
    let mut out = String::new();
    let Some(log) = &st.prediction_log else {
        return out;
    };
    let sinks = log.sinks();
    let labels = |s: &ferroserve_predlog::SinkView<'_>| {
        format!("sink=\"{}\",target=\"{}\"", s.kind, esc(s.target))
    };
    let name = "ferroserve_prediction_log_records_total";
    header(
        &mut out,
        name,
        "counter",
        "Prediction records per sink: written; dropped (best-effort: the sink's queue full, or a write failed); spooled (durable: appended to the spool for it).",
    );
    for s in &sinks {
        let c = s.counters;
        for (result, n) in [
            ("written", &c.written),
            ("dropped", &c.dropped),
            ("spooled", &c.spooled),
        ] {
            let l = format!("{},result=\"{result}\"", labels(s));
            sample(&mut out, name, &l, n.load(Ordering::Relaxed));
        }
    }
    let name = "ferroserve_prediction_log_queued";
    header(
        &mut out,
        name,
        "gauge",
        "Prediction records waiting in a sink's queue (best-effort).",
    );
    for s in &sinks {
        sample(&mut out, name, &labels(s), s.queued);
    }
    let name = "ferroserve_prediction_log_write_seconds_total";
    header(
        &mut out,
        name,
        "counter",
        "Time a sink spent writing batches of records.",
    );
    for s in &sinks {
        let secs = s.counters.write_us.load(Ordering::Relaxed) as f64 / 1e6;
        sample(&mut out, name, &labels(s), secs);
    }
    let name = "ferroserve_prediction_log_writes_total";
    header(
        &mut out,
        name,
        "counter",
        "Batches of records a sink wrote (or failed to).",
    );
    for s in &sinks {
        let n = s.counters.writes.load(Ordering::Relaxed);
        sample(&mut out, name, &labels(s), n);
    }
    if let Some(spool) = log.spool() {
        let name = "ferroserve_prediction_log_spool_bytes";
        header(
            &mut out,
            name,
            "gauge",
            "Bytes in the durable prediction log's spool (records not yet taken by every sink).",
        );
        sample(&mut out, name, "", spool.bytes());
        let name = "ferroserve_prediction_log_spool_limit_bytes";
        header(
            &mut out,
            name,
            "gauge",
            "The spool's limit: past it, requests with a durable prediction log are refused.",
        );
        sample(&mut out, name, "", spool.max_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_template_has_its_class() {
        use RouteClass::*;
        for (t, class) in [
            (Some("/v2/models/{model}/infer"), V2Infer),
            (Some("/v2/models/{model}/versions/{version}/infer"), V2Infer),
            (Some("/v2/models/{model}"), V2Model),
            (Some("/v2/models/{model}/versions/{version}/stats"), V2Model),
            (Some("/v2/models/stats"), V2Model),
            (Some("/v2"), V2Server),
            (Some("/v2/"), V2Server),
            (Some("/v2/health/ready"), V2Server),
            (Some("/v2/repository/index"), V2Server),
            (Some("/metrics"), Metrics),
            (Some("/openapi.json"), Docs),
            (Some("/docs/{*file}"), Docs),
            (Some("/apidocs"), Docs),
            (Some("/models/{model}/predict"), Friendly),
            (Some("/v1/models/{name}"), Friendly),
            (Some("/"), Friendly),
            (Some("/predict"), Friendly),
            (Some("/v2x"), Friendly),
            (Some("/docsy"), Friendly),
            (None, Unmatched),
        ] {
            assert_eq!(RouteClass::of(t), class, "{t:?}");
        }
    }

    #[test]
    fn answers_are_counted_by_class_or_method_and_code() {
        let a = Answers::default();
        a.http(RouteClass::V2Infer, 404);
        a.http(RouteClass::V2Infer, 404);
        a.http(RouteClass::Unmatched, 404);
        a.http(RouteClass::Docs, 308);
        a.http(RouteClass::Friendly, 999);
        a.grpc(Method::ModelInfer, tonic::Code::NotFound);
        a.grpc(Method::ModelStreamInfer, tonic::Code::Ok);
        assert_eq!(a.http_count(RouteClass::V2Infer, 404), 2);
        assert_eq!(a.http_count(RouteClass::V2Model, 404), 0);
        assert_eq!(a.grpc_count(Method::ModelInfer, tonic::Code::NotFound), 1);
        let mut out = String::new();
        a.render(&mut out);
        let lines: Vec<&str> = out.lines().collect();
        for want in [
            "ferroserve_http_responses_total{route=\"v2_infer\",code=\"404\"} 2",
            "ferroserve_http_responses_total{route=\"unmatched\",code=\"404\"} 1",
            "ferroserve_http_responses_total{route=\"docs\",code=\"308\"} 1",
            "ferroserve_http_responses_total{route=\"friendly\",code=\"other\"} 1",
            // Zero, rendered all the same.
            "ferroserve_http_responses_total{route=\"v2_model\",code=\"404\"} 0",
            "ferroserve_grpc_responses_total{method=\"ModelInfer\",code=\"NotFound\"} 1",
            "ferroserve_grpc_responses_total{method=\"ModelStreamInfer\",code=\"Ok\"} 1",
            "ferroserve_grpc_responses_total{method=\"ServerLive\",code=\"Ok\"} 0",
        ] {
            assert!(lines.contains(&want), "{want} not in\n{out}");
        }
        // Codes never answered and not in the usual set are left out.
        assert!(!out.contains("code=\"201\""));
        assert!(!out.contains("code=\"Aborted\""));
        assert!(out.contains("# TYPE ferroserve_http_responses_total counter"));
    }
}
