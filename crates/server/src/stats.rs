//! The statistics extension (Triton's shape): one version's counters read once from the
//! runtime ([`Statistics::of`]) and written out by both fronts, as JSON by the v2 routes
//! (`GET /v2/models[/{m}[/versions/{v}]]/stats`, serde) and as `ModelStatistics` by gRPC; which
//! versions a request asks for is decided here too ([`select`]). [`ready_versions`] is the set
//! both, and `/metrics`, report on.
//!
//! Counted as Triton counts (`VersionStats::phases`): every request dequeued, inline ones with
//! no wait; the three compute phases with one count, the time all in `compute_infer`; no cache.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use ferroserve_core::InferError;
use ferroserve_runtime::{Runtime, ServedVersion, VersionState};
use serde::Serialize;

/// Every ready version of every model, in model then version order.
pub fn ready_versions(rt: &Runtime) -> impl Iterator<Item = &Arc<ServedVersion>> {
    rt.models()
        .flat_map(|m| m.versions.values())
        .filter_map(ready)
}

fn ready(v: &VersionState) -> Option<&Arc<ServedVersion>> {
    match v {
        VersionState::Ready(s) => Some(s),
        VersionState::Unavailable(_) => None,
    }
}

/// A count of events and the nanoseconds they took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: u64,
    pub ns: u64,
}

impl From<(u64, u64)> for Tally {
    fn from((count, ns): (u64, u64)) -> Tally {
        Tally { count, ns }
    }
}

/// The phases of a version's requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InferenceStats {
    pub success: Tally,
    pub fail: Tally,
    pub queue: Tally,
    pub compute_input: Tally,
    pub compute_infer: Tally,
    pub compute_output: Tally,
    pub cache_hit: Tally,
    pub cache_miss: Tally,
}

/// The batches of one size a version ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchStats {
    pub batch_size: u64,
    pub compute_input: Tally,
    pub compute_infer: Tally,
    pub compute_output: Tally,
}

/// One version's statistics, field for field as the extension names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statistics {
    pub name: String,
    pub version: String,
    /// Milliseconds since the epoch of the last request answered (0: none yet).
    pub last_inference: u64,
    /// Rows answered successfully.
    pub inference_count: u64,
    /// Batches run.
    pub execution_count: u64,
    pub inference_stats: InferenceStats,
    pub batch_stats: Vec<BatchStats>,
}

impl Statistics {
    /// The counters of `v` as they are now.
    pub fn of(v: &ServedVersion) -> Statistics {
        let s = &v.stats;
        let p = s.phases();
        let batch_stats = s
            .by_batch_size
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(&size, &(count, ns))| BatchStats {
                        batch_size: size as u64,
                        compute_input: Tally { count, ns: 0 },
                        compute_infer: Tally { count, ns },
                        compute_output: Tally { count, ns: 0 },
                    })
                    .collect()
            })
            .unwrap_or_default();
        Statistics {
            name: v.name.clone(),
            version: v.version.to_string(),
            last_inference: s.last_inference_ms.load(Relaxed),
            inference_count: s.inference_count.load(Relaxed),
            execution_count: s.execution_count.load(Relaxed),
            inference_stats: InferenceStats {
                success: p.success.into(),
                fail: p.fail.into(),
                queue: p.queue.into(),
                compute_input: p.compute_input.into(),
                compute_infer: p.compute_infer.into(),
                compute_output: p.compute_output.into(),
                cache_hit: Tally::default(),
                cache_miss: Tally::default(),
            },
            batch_stats,
        }
    }
}

/// The statistics of every ready version of every model.
pub fn all(rt: &Runtime) -> Vec<Statistics> {
    ready_versions(rt).map(|v| Statistics::of(v)).collect()
}

/// The statistics a request asks for: of every ready version of every model (no model), of a
/// model's ready versions (no version), or of one version (ready, or the lookup's error).
pub fn select(
    rt: &Runtime,
    model: Option<&str>,
    version: Option<&str>,
) -> Result<Vec<Statistics>, InferError> {
    match (model, version) {
        (None, _) => Ok(all(rt)),
        (Some(m), None) => rt.model(m).map(|e| {
            e.versions
                .values()
                .filter_map(ready)
                .map(|v| Statistics::of(v))
                .collect()
        }),
        (Some(m), Some(v)) => rt.version(m, Some(v)).map(|v| vec![Statistics::of(&v)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::examples_state;
    use std::time::Duration;

    #[tokio::test]
    async fn statistics_are_read_once_and_selected_as_asked() {
        let st = examples_state();
        let rt = &st.runtime();
        let all = select(rt, None, None).unwrap();
        let ready: Vec<(String, String)> = ready_versions(rt)
            .map(|v| (v.name.clone(), v.version.to_string()))
            .collect();
        assert!(!ready.is_empty());
        assert_eq!(
            all.iter()
                .map(|s| (s.name.clone(), s.version.clone()))
                .collect::<Vec<_>>(),
            ready
        );
        let v = rt.version("diabetes", None).unwrap();
        v.stats.dequeued(Duration::from_nanos(7));
        v.stats.batch_done(3, Duration::from_nanos(11));
        let one = select(rt, Some("diabetes"), Some("1")).unwrap();
        assert_eq!(one.len(), 1);
        let s = &one[0];
        assert_eq!(
            (s.execution_count, s.inference_stats.queue),
            (1, Tally { count: 1, ns: 7 })
        );
        assert_eq!(s.inference_stats.compute_infer, Tally { count: 1, ns: 11 });
        assert_eq!(s.inference_stats.compute_input, Tally { count: 1, ns: 0 });
        assert_eq!(
            s.batch_stats,
            [BatchStats {
                batch_size: 3,
                compute_input: Tally { count: 1, ns: 0 },
                compute_infer: Tally { count: 1, ns: 11 },
                compute_output: Tally { count: 1, ns: 0 },
            }]
        );
        assert_eq!(select(rt, Some("diabetes"), None).unwrap(), one);
        assert_eq!(
            select(rt, Some("nope"), None).unwrap_err().kind,
            ferroserve_core::ErrorKind::NotFound
        );
        assert_eq!(
            select(rt, Some("diabetes"), Some("9")).unwrap_err().kind,
            ferroserve_core::ErrorKind::NotFound
        );
        // The JSON the v2 routes answer, in Triton's names.
        let j = serde_json::to_value(s).unwrap();
        assert_eq!(j["inference_stats"]["compute_infer"]["ns"], 11);
        assert_eq!(j["batch_stats"][0]["batch_size"], 3);
        assert_eq!(j["inference_stats"]["cache_miss"]["count"], 0);
    }
}
