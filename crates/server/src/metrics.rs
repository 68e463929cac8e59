//! `/metrics`: the runtime's per-version statistics rendered in the Prometheus text format.
//! Names follow Prometheus conventions (`_total`, `_seconds`); labels are bounded: model,
//! version, outcome.

use std::fmt::Write;

use ferroserve_runtime::stats::Histogram;
use ferroserve_runtime::{Outcome, Runtime, VersionState};

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
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

/// Renders every metric.
pub fn render(rt: &Runtime) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let served: Vec<_> = rt
        .models()
        .flat_map(|m| {
            m.versions.values().filter_map(|v| match v {
                VersionState::Ready(s) => Some(s.clone()),
                VersionState::Unavailable(_) => None,
            })
        })
        .collect();
    let labels = |s: &ferroserve_runtime::ServedVersion| {
        format!("model=\"{}\",version=\"{}\"", esc(&s.name), s.version)
    };

    header(
        &mut out,
        "ferroserve_requests_total",
        "counter",
        "Inference requests by model, version and outcome.",
    );
    for s in &served {
        for o in Outcome::ALL {
            let _ = writeln!(
                out,
                "ferroserve_requests_total{{{},outcome=\"{}\"}} {}",
                labels(s),
                o.as_str(),
                s.stats.requests(o)
            );
        }
    }
    header(
        &mut out,
        "ferroserve_inference_rows_total",
        "counter",
        "Rows answered successfully.",
    );
    for s in &served {
        let _ = writeln!(
            out,
            "ferroserve_inference_rows_total{{{}}} {}",
            labels(s),
            s.stats
                .inference_count
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "ferroserve_batches_total",
        "counter",
        "Batches run by the model's instances.",
    );
    for s in &served {
        let _ = writeln!(
            out,
            "ferroserve_batches_total{{{}}} {}",
            labels(s),
            s.stats
                .execution_count
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "ferroserve_request_duration_seconds",
        "histogram",
        "Total time from request to answer (server side).",
    );
    for s in &served {
        histogram(
            &mut out,
            "ferroserve_request_duration_seconds",
            &labels(s),
            &s.stats.latency_seconds,
        );
    }
    header(
        &mut out,
        "ferroserve_queue_duration_seconds",
        "histogram",
        "Time requests waited in the model's queue.",
    );
    for s in &served {
        histogram(
            &mut out,
            "ferroserve_queue_duration_seconds",
            &labels(s),
            &s.stats.queue_seconds,
        );
    }
    header(
        &mut out,
        "ferroserve_compute_duration_seconds",
        "histogram",
        "Time an instance spent on one batch.",
    );
    for s in &served {
        histogram(
            &mut out,
            "ferroserve_compute_duration_seconds",
            &labels(s),
            &s.stats.compute_seconds,
        );
    }
    header(
        &mut out,
        "ferroserve_batch_rows",
        "histogram",
        "Rows per batch run.",
    );
    for s in &served {
        histogram(
            &mut out,
            "ferroserve_batch_rows",
            &labels(s),
            &s.stats.batch_rows,
        );
    }
    header(
        &mut out,
        "ferroserve_queue_depth",
        "gauge",
        "Requests admitted and not yet answered.",
    );
    for s in &served {
        let _ = writeln!(
            out,
            "ferroserve_queue_depth{{{}}} {}",
            labels(s),
            s.handle.queue_depth()
        );
    }
    header(
        &mut out,
        "ferroserve_instance_busy_seconds_total",
        "counter",
        "Time the model's instances spent computing.",
    );
    for s in &served {
        let (_, ns) = s.stats.busy.get();
        let _ = writeln!(
            out,
            "ferroserve_instance_busy_seconds_total{{{}}} {}",
            labels(s),
            ns as f64 / 1e9
        );
    }
    header(
        &mut out,
        "ferroserve_model_ready",
        "gauge",
        "1 when the model version is loaded and serving.",
    );
    for m in rt.models() {
        for (v, st) in &m.versions {
            let ready = matches!(st, VersionState::Ready(_)) as u8;
            let _ = writeln!(
                out,
                "ferroserve_model_ready{{model=\"{}\",version=\"{v}\"}} {ready}",
                esc(&m.name)
            );
        }
    }
    header(
        &mut out,
        "ferroserve_model_load_failures_total",
        "counter",
        "Models or versions that failed to load.",
    );
    let _ = writeln!(
        out,
        "ferroserve_model_load_failures_total {}",
        rt.load_failures()
    );
    out
}
