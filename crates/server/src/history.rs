//! The server's own short history of each model version's traffic, for the dashboard's live
//! charts without a Prometheus: every second the counters `/metrics` reads are read again and
//! what changed becomes a sample (requests, errors, rows, batches and their mean size, queue
//! depth, latency p50/p95/p99 from the latency histogram's buckets). The last 10 minutes are
//! kept second by second, the hour before that in 10-second steps.
//!
//! A version gets a track at its first request: an idle model costs nothing here. A track with
//! no traffic for an hour is dropped, as is one whose version is no longer served.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use ferroserve_runtime::stats::{VersionStats, LATENCY_BUCKETS};
use ferroserve_runtime::{Runtime, ServedVersion};
use serde::Serialize;

/// Samples kept second by second.
pub const FINE: usize = 600;
/// Seconds per coarse sample, and how many are kept (an hour before the fine ones).
pub const COARSE_STEP: u64 = 10;
pub const COARSE: usize = 300;
/// Latency buckets, with the overflow above the last bound.
const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// What one version did in one step (`seconds` long, ending at `t`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Unix time, seconds, at the end of the step.
    pub t: u64,
    pub seconds: u64,
    pub requests: u64,
    /// Requests that did not succeed (any outcome but success).
    pub errors: u64,
    /// Rows answered successfully.
    pub rows: u64,
    pub batches: u64,
    /// Mean rows per batch in the step (0 without a batch).
    pub batch_rows: f64,
    /// Requests admitted and not answered, at the end of the step.
    pub queue_depth: u64,
    /// Latency quantiles in milliseconds (`None` without a request), interpolated within
    /// the latency histogram's buckets as Prometheus's `histogram_quantile` does.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The counters of a version at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Reading {
    requests: u64,
    successes: u64,
    rows: u64,
    batches: u64,
    batch_rows_sum: f64,
    latency: [u64; BUCKETS],
}

impl Reading {
    fn of(s: &VersionStats) -> Reading {
        let requests: u64 = s.requests.iter().map(|r| r.load(Relaxed)).sum();
        let successes = s.requests[0].load(Relaxed);
        let (cumulative, _, count) = s.latency_seconds.snapshot();
        let mut latency = [0u64; BUCKETS];
        let mut prev = 0;
        for (i, (_, c)) in cumulative.iter().enumerate() {
            latency[i] = c.saturating_sub(prev);
            prev = *c;
        }
        latency[BUCKETS - 1] = count.saturating_sub(prev);
        let (_, batch_rows_sum, batches) = s.batch_rows.snapshot();
        Reading {
            requests,
            successes,
            rows: s.inference_count.load(Relaxed),
            batches,
            batch_rows_sum,
            latency,
        }
    }
}

/// What changed between two readings (a counter that went back, as after a reload, counts
/// from zero).
#[derive(Debug, Clone, Copy, Default)]
struct Delta {
    requests: u64,
    errors: u64,
    rows: u64,
    batches: u64,
    batch_rows_sum: f64,
    latency: [u64; BUCKETS],
}

impl Delta {
    fn between(a: &Reading, b: &Reading) -> Delta {
        let d = |x: u64, y: u64| if y >= x { y - x } else { y };
        let requests = d(a.requests, b.requests);
        let successes = d(a.successes, b.successes);
        let mut latency = [0u64; BUCKETS];
        for (i, l) in latency.iter_mut().enumerate() {
            *l = d(a.latency[i], b.latency[i]);
        }
        Delta {
            requests,
            errors: requests.saturating_sub(successes),
            rows: d(a.rows, b.rows),
            batches: d(a.batches, b.batches),
            batch_rows_sum: if b.batch_rows_sum >= a.batch_rows_sum {
                b.batch_rows_sum - a.batch_rows_sum
            } else {
                b.batch_rows_sum
            },
            latency,
        }
    }

    fn add(&mut self, o: &Delta) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.rows += o.rows;
        self.batches += o.batches;
        self.batch_rows_sum += o.batch_rows_sum;
        for (a, b) in self.latency.iter_mut().zip(o.latency.iter()) {
            *a += b;
        }
    }

    fn idle(&self) -> bool {
        self.requests == 0 && self.batches == 0
    }

    fn sample(&self, t: u64, seconds: u64, queue_depth: u64) -> Sample {
        Sample {
            t,
            seconds,
            requests: self.requests,
            errors: self.errors,
            rows: self.rows,
            batches: self.batches,
            batch_rows: if self.batches > 0 {
                self.batch_rows_sum / self.batches as f64
            } else {
                0.0
            },
            queue_depth,
            p50_ms: quantile(&self.latency, 0.50),
            p95_ms: quantile(&self.latency, 0.95),
            p99_ms: quantile(&self.latency, 0.99),
        }
    }
}

/// The `q` quantile of per-bucket counts over [`LATENCY_BUCKETS`] (and the overflow), in
/// milliseconds: linear within the bucket it falls in, from the bucket's lower bound (0 for the
/// first); in the overflow, the last bound.
pub fn quantile(counts: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                return Some(LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1] * 1e3);
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let within = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
            return Some((lower + (upper - lower) * within) * 1e3);
        }
        below += c;
    }
    Some(LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1] * 1e3)
}

/// One version's history.
struct Track {
    last: Reading,
    fine: VecDeque<Sample>,
    coarse: VecDeque<Sample>,
    /// The fine steps not yet folded into a coarse sample.
    pending: Delta,
    pending_secs: u64,
    /// Unix seconds of the last step with traffic.
    active: u64,
}

/// The history of every version that has had traffic.
#[derive(Default)]
pub struct History {
    tracks: Mutex<HashMap<(String, u64), Track>>,
    /// The last reading of each version without a track (a few counters each), so that a
    /// track starts from the traffic of its first step, not from everything since start.
    untracked: Mutex<HashMap<(String, u64), Reading>>,
}

impl History {
    /// Takes one step at Unix time `now` (seconds): reads every ready version of `rt`.
    pub fn step(&self, rt: &Runtime, now: u64) {
        let served: Vec<&std::sync::Arc<ServedVersion>> =
            crate::stats::ready_versions(rt).collect();
        let mut tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let mut untracked = self.untracked.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = std::collections::HashSet::new();
        for v in served {
            let key = (v.name.clone(), v.version);
            seen.insert(key.clone());
            let reading = Reading::of(&v.stats);
            let depth = v.handle.queue_depth() as u64;
            let track = match tracks.get_mut(&key) {
                Some(t) => t,
                None => {
                    // No track until the first request.
                    let last = untracked.get(&key).copied().unwrap_or_default();
                    if reading == last && depth == 0 {
                        untracked.insert(key, reading);
                        continue;
                    }
                    untracked.remove(&key);
                    tracks.entry(key).or_insert(Track {
                        last,
                        fine: VecDeque::with_capacity(16),
                        coarse: VecDeque::new(),
                        pending: Delta::default(),
                        pending_secs: 0,
                        active: now,
                    })
                }
            };
            let delta = Delta::between(&track.last, &reading);
            track.last = reading;
            if !delta.idle() || depth > 0 {
                track.active = now;
            }
            track.fine.push_back(delta.sample(now, 1, depth));
            track.pending.add(&delta);
            track.pending_secs += 1;
            if track.fine.len() > FINE {
                track.fine.pop_front();
            }
            if track.pending_secs >= COARSE_STEP {
                let s = track.pending.sample(now, track.pending_secs, depth);
                track.coarse.push_back(s);
                if track.coarse.len() > COARSE + FINE / COARSE_STEP as usize {
                    track.coarse.pop_front();
                }
                track.pending = Delta::default();
                track.pending_secs = 0;
            }
        }
        // An hour without traffic: back to a reading.
        tracks.retain(|k, t| {
            let keep = seen.contains(k) && now.saturating_sub(t.active) < 3600;
            if !keep && seen.contains(k) {
                untracked.insert(k.clone(), t.last);
            }
            keep
        });
        untracked.retain(|k, _| seen.contains(k));
    }

    /// The samples of `model` (every version when `version` is `None`) over the last
    /// `seconds`: second by second for up to 10 minutes, in 10-second steps beyond; oldest
    /// first, `(version, samples)` per version.
    pub fn series(
        &self,
        model: &str,
        version: Option<u64>,
        seconds: u64,
    ) -> Vec<(u64, Vec<Sample>)> {
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(u64, Vec<Sample>)> = tracks
            .iter()
            .filter(|((m, v), _)| m == model && version.is_none_or(|x| x == *v))
            .map(|((_, v), t)| {
                let samples = if seconds <= FINE as u64 {
                    let skip = t.fine.len().saturating_sub(seconds as usize);
                    t.fine.iter().skip(skip).copied().collect()
                } else {
                    let n = seconds.div_ceil(COARSE_STEP) as usize;
                    let skip = t.coarse.len().saturating_sub(n);
                    t.coarse.iter().skip(skip).copied().collect()
                };
                (*v, samples)
            })
            .collect();
        out.sort_by_key(|(v, _)| *v);
        out
    }

    /// The models with a track now.
    pub fn models(&self) -> Vec<String> {
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let mut m: Vec<String> = tracks.keys().map(|(m, _)| m.clone()).collect();
        m.sort();
        m.dedup();
        m
    }
}

/// Seconds `GET /v2/models/{model}/history` answers by default, and at most.
pub const DEFAULT_SECONDS: u64 = 300;
pub const MAX_SECONDS: u64 = 3600;

/// `GET /v2/models/{model}/history?seconds=N&version=V`: the model's samples over the last `N`
/// seconds (default 300, at most 3600): one per second up to 600, one per 10 seconds beyond.
pub async fn route(
    axum::extract::State(st): axum::extract::State<std::sync::Arc<crate::state::AppState>>,
    axum::extract::Path(model): axum::extract::Path<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<axum::response::Response, crate::error::ApiError> {
    use ferroserve_core::InferError;
    let bad = |key: &str, v: &str, want: &str| {
        crate::error::ApiError(InferError::invalid(format!(
            "query parameter {key}={v:?}: expected {want}"
        )))
    };
    let mut seconds = DEFAULT_SECONDS;
    let mut version = None;
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match &*k {
            "seconds" => {
                seconds = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=MAX_SECONDS).contains(n))
                    .ok_or_else(|| bad("seconds", &v, "a whole number of seconds from 1 to 3600"))?
            }
            "version" => {
                version = Some(
                    v.parse::<u64>()
                        .map_err(|_| bad("version", &v, "a version number"))?,
                )
            }
            _ => {}
        }
    }
    // An unknown model is a 404, as on every route of a model.
    st.runtime().model(&model)?;
    let series = st.history.series(&model, version, seconds);
    let versions: Vec<serde_json::Value> = series
        .into_iter()
        .map(|(v, samples)| serde_json::json!({ "version": v.to_string(), "samples": samples }))
        .collect();
    Ok(crate::v2::ok_json(serde_json::json!({
        "model": model,
        "step_seconds": if seconds <= FINE as u64 { 1 } else { COARSE_STEP },
        "versions": versions,
    })))
}

/// Takes a step every second while the process runs.
pub fn start(st: &std::sync::Arc<crate::state::AppState>) {
    let weak = std::sync::Arc::downgrade(st);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(st) = weak.upgrade() else { return };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            st.history.step(&st.runtime(), now);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(at: &[(usize, u64)]) -> [u64; BUCKETS] {
        let mut c = [0u64; BUCKETS];
        for &(i, n) in at {
            c[i] = n;
        }
        c
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
        assert_eq!(quantile(&[0; BUCKETS], 0.5), None);
        // 100 requests in (0.25 ms, 0.5 ms]: the median is halfway, 0.375 ms.
        let c = counts(&[(2, 100)]);
        assert!((quantile(&c, 0.5).unwrap() - 0.375).abs() < 1e-9);
        assert!((quantile(&c, 0.99).unwrap() - 0.4975).abs() < 1e-9);
        // 90 in the first bucket (0, 0.1 ms], 10 in (1 ms, 2.5 ms]: p50 in the first, p95 and
        // p99 in the other.
        let c = counts(&[(0, 90), (4, 10)]);
        assert!((quantile(&c, 0.5).unwrap() - 0.1 * 50.0 / 90.0).abs() < 1e-9);
        assert!((quantile(&c, 0.95).unwrap() - (1.0 + 1.5 * 0.5)).abs() < 1e-9);
        // In the overflow: the last bound.
        let c = counts(&[(BUCKETS - 1, 3)]);
        assert_eq!(quantile(&c, 0.5), Some(10_000.0));
    }

    #[test]
    fn deltas_count_what_changed_and_restart_from_zero_when_counters_go_back() {
        let a = Reading {
            requests: 10,
            successes: 8,
            rows: 40,
            batches: 5,
            batch_rows_sum: 40.0,
            latency: counts(&[(1, 10)]),
        };
        let b = Reading {
            requests: 25,
            successes: 20,
            rows: 100,
            batches: 8,
            batch_rows_sum: 100.0,
            latency: counts(&[(1, 20), (3, 5)]),
        };
        let d = Delta::between(&a, &b);
        assert_eq!((d.requests, d.errors, d.rows, d.batches), (15, 3, 60, 3));
        assert_eq!(d.latency, counts(&[(1, 10), (3, 5)]));
        let s = d.sample(100, 1, 2);
        assert_eq!(s.batch_rows, 20.0);
        assert_eq!(s.queue_depth, 2);
        // A reload: the new counters are below the old ones.
        let c = Reading {
            requests: 3,
            successes: 3,
            ..Reading::default()
        };
        let d = Delta::between(&b, &c);
        assert_eq!((d.requests, d.errors), (3, 0));
    }

    #[tokio::test]
    async fn steps_follow_real_requests_per_second_and_idle_models_get_no_track() {
        use tower::ServiceExt;
        let st = crate::testing::examples_state();
        let h = History::default();
        h.step(&st.runtime(), 1000);
        assert!(h.models().is_empty(), "a track before any request");
        let body = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/requests/iris_v2.json"),
        )
        .unwrap();
        let post = |body: Vec<u8>| {
            axum::http::Request::post("/v2/models/iris/infer")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap()
        };
        for (i, n) in [(1001u64, 7usize), (1002, 0), (1003, 3)] {
            for _ in 0..n {
                let r = crate::app(st.clone())
                    .oneshot(post(body.clone()))
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
            // And one refused request in the last step.
            if i == 1003 {
                let r = crate::app(st.clone())
                    .oneshot(post(b"{\"inputs\": []}".to_vec()))
                    .await
                    .unwrap();
                assert_eq!(r.status(), 400);
            }
            h.step(&st.runtime(), i);
        }
        assert_eq!(h.models(), ["iris"]);
        let series = h.series("iris", None, 60);
        assert_eq!(series.len(), 1);
        let (_, samples) = &series[0];
        let got: Vec<(u64, u64, u64)> = samples
            .iter()
            .map(|s| (s.t, s.requests, s.errors))
            .collect();
        assert_eq!(got, [(1001, 7, 0), (1002, 0, 0), (1003, 4, 1)]);
        assert!(
            samples[0].rows >= 7
                && samples[0].p50_ms.is_some()
                && samples[0].p99_ms >= samples[0].p50_ms
        );
        assert_eq!(samples[1].p50_ms, None);
        assert_eq!(h.series("iris", None, 1)[0].1.len(), 1);
        assert!(h.series("wine", None, 60).is_empty());
        // Ten steps make a coarse sample holding their sum.
        for t in 1004..1011 {
            h.step(&st.runtime(), t);
        }
        let coarse = &h.series("iris", None, 3600)[0].1;
        assert_eq!(coarse.len(), 1);
        assert_eq!(
            (
                coarse[0].t,
                coarse[0].seconds,
                coarse[0].requests,
                coarse[0].errors
            ),
            (1010, 10, 11, 1)
        );
        // An hour without traffic: the track goes.
        h.step(&st.runtime(), 1003 + 3600);
        assert!(h.models().is_empty());
    }
}
