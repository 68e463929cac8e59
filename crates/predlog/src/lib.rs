//! The prediction log: one record per inference request, answered or refused, kept by one or
//! more sinks.
//!
//! The request path only builds the record and hands it to a bounded queue per sink
//! ([`PredictionLog`], an inference-service [`Hook`]); one thread per sink takes what is queued,
//! writes it in batches and does the sink's upkeep (retention). When a queue is full (its sink
//! is slow or down) the record is dropped for that sink, counted, and warned about at most once
//! a minute: the answer is never delayed. [`PredictionLog::close`] flushes every queued record
//! (graceful shutdown).
//!
//! What a record holds, per model (`[prediction_log]` in model.toml) over the server's
//! defaults: nothing, the outputs, or the inputs and outputs, for a fraction of the requests
//! chosen by the request's id, with at most `max_rows` rows of each tensor.

pub mod record;
pub mod redis_sink;
pub mod sqlite;
pub mod text;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use ferroserve_core::config::{LogContent, PredictionLogConfig};
use ferroserve_runtime::service::{Finished, Hook};
use ferroserve_runtime::{Origin, ServedVersion};

pub use record::Record;

/// Records a sink's queue holds before new ones are dropped for it.
pub const QUEUE: usize = 16_384;
/// Most records one write takes.
const BATCH: usize = 512;
/// How often a writer does its sink's upkeep.
const UPKEEP: Duration = Duration::from_secs(60);
/// Least time between two warnings about dropped records.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the server records when a model's `[prediction_log]` says nothing: the outputs of
/// every request, at most 100 rows of each.
pub fn default_settings() -> PredictionLogConfig {
    PredictionLogConfig {
        record: Some(LogContent::Outputs),
        sample: Some(1.0),
        max_rows: Some(100),
    }
}

/// Where records go.
pub trait Sink: Send + 'static {
    /// Writes a batch, in order.
    fn write(&mut self, batch: &[Arc<Record>]) -> Result<(), String>;
    /// Periodic upkeep (retention), about once a minute, and once at the start.
    fn upkeep(&mut self) {}
}

/// What one sink did, for the metrics.
#[derive(Debug, Default)]
pub struct SinkCounters {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    /// Writes that failed (their records are counted as dropped).
    pub failures: AtomicU64,
    /// Total time spent writing, microseconds, and the writes it was spent in.
    pub write_us: AtomicU64,
    pub writes: AtomicU64,
}

enum Msg {
    Record(Arc<Record>),
    /// Write everything before this, then answer.
    Flush(Sender<()>),
}

struct Writer {
    /// `sqlite`, `redis`, ...: the label of its metrics.
    kind: String,
    tx: Sender<Msg>,
    counters: Arc<SinkCounters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The prediction log: a [`Hook`] handing each request's record to every sink's queue.
pub struct PredictionLog {
    defaults: PredictionLogConfig,
    writers: Vec<Writer>,
    seq: AtomicU64,
    boot: u64,
    warned: Mutex<Option<Instant>>,
}

impl PredictionLog {
    /// A log with `defaults` (over [`default_settings`]) for models that say nothing.
    pub fn new(defaults: PredictionLogConfig) -> PredictionLog {
        PredictionLog {
            defaults: defaults.over(&default_settings()),
            writers: Vec::new(),
            seq: AtomicU64::new(0),
            boot: record::now_ms() as u64,
            warned: Mutex::new(None),
        }
    }

    /// Adds a sink, written by a thread of its own from now on.
    pub fn with_sink(mut self, kind: &str, sink: Box<dyn Sink>) -> PredictionLog {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let counters = Arc::new(SinkCounters::default());
        let c = counters.clone();
        let label = kind.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("fs-log-{kind}"))
            .spawn(move || write_loop(&label, sink, rx, &c))
            .expect("spawn a prediction log writer");
        self.writers.push(Writer {
            kind: kind.to_string(),
            tx,
            counters,
            thread: Mutex::new(Some(thread)),
        });
        self
    }

    /// Each sink's kind and counters, for the metrics.
    pub fn sinks(&self) -> Vec<(&str, &SinkCounters, usize)> {
        self.writers
            .iter()
            .map(|w| (w.kind.as_str(), w.counters.as_ref(), w.tx.len()))
            .collect()
    }

    /// The settings in force for `served`.
    pub fn settings(&self, served: &ServedVersion) -> PredictionLogConfig {
        match &served.config.prediction_log {
            Some(p) => p.over(&self.defaults),
            None => self.defaults.clone(),
        }
    }

    /// Writes every record queued so far, waiting at most `limit`; then stops the writers
    /// (records handed over later are dropped and counted). For graceful shutdown.
    pub fn close(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut acks = Vec::new();
        for w in &self.writers {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let left = deadline.saturating_duration_since(Instant::now());
            if w.tx.send_timeout(Msg::Flush(tx), left).is_ok() {
                acks.push((w, rx));
            }
        }
        for (w, rx) in acks {
            let left = deadline.saturating_duration_since(Instant::now());
            if rx.recv_timeout(left).is_err() {
                tracing::warn!(sink = %w.kind, "the prediction log's sink did not flush in time; queued records are lost");
                continue;
            }
            if let Some(t) = w.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = t.join();
            }
        }
    }

    /// The record of `done` per `settings`, or `None` when it is not to be recorded.
    fn record_of(&self, done: &Finished<'_>, settings: &PredictionLogConfig) -> Option<Record> {
        let content = settings.record.unwrap_or(LogContent::Outputs);
        if content == LogContent::None {
            return None;
        }
        let id = match done.id() {
            Some(id) => id.to_string(),
            None => format!(
                "fs-{:x}-{:x}",
                self.boot,
                self.seq.fetch_add(1, Ordering::Relaxed)
            ),
        };
        if !sampled(&id, settings.sample.unwrap_or(1.0)) {
            return None;
        }
        let max_rows = settings.max_rows.unwrap_or(100);
        let total = match (done.result, done.inputs) {
            (Ok(_), _) => done.rows,
            (Err(_), Some((_, total))) => total,
            (Err(_), None) => 0,
        };
        let (status, error, outputs) = match done.result {
            Ok(r) => (200, None, Some(text::first_rows(&r.outputs, max_rows))),
            Err(e) => (e.kind.http_status(), Some(e.message.clone()), None),
        };
        let inputs = match (content, done.inputs) {
            (LogContent::All, Some((t, _))) => Some(text::first_rows(t, max_rows)),
            _ => None,
        };
        let latency_us = done.latency.as_micros() as u64;
        Some(Record {
            id,
            time_ms: record::now_ms() - (latency_us / 1000) as i64,
            model: done.served.name.clone(),
            version: done.served.version,
            protocol: done.origin.protocol(),
            route: route(done.origin, &done.served.name),
            status,
            error,
            latency_us,
            rows: total as u64,
            rows_omitted: total.saturating_sub(max_rows) as u64,
            inputs,
            outputs,
        })
    }

    fn dropped(&self, w: &Writer) {
        let n = w.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(sink = %w.kind, dropped = n, "the prediction log's sink is behind or down: records are being dropped (counted in ferroserve_prediction_log_records_total{{result=\"dropped\"}})");
        }
    }
}

impl Hook for PredictionLog {
    fn input_rows(&self, served: &ServedVersion) -> usize {
        let s = self.settings(served);
        if self.writers.is_empty() || s.record != Some(LogContent::All) || s.sample == Some(0.0) {
            return 0;
        }
        s.max_rows.unwrap_or(100)
    }

    fn finished(&self, done: &Finished<'_>) {
        if self.writers.is_empty() {
            return;
        }
        let settings = self.settings(done.served);
        let Some(record) = self.record_of(done, &settings) else {
            return;
        };
        let record = Arc::new(record);
        for w in &self.writers {
            match w.tx.try_send(Msg::Record(record.clone())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped(w),
            }
        }
    }
}

/// The route of a request from `origin`.
fn route(origin: Origin<'_>, model: &str) -> String {
    match origin {
        Origin::HttpV2 => format!("/v2/models/{model}/infer"),
        Origin::Grpc => "inference.GRPCInferenceService/ModelInfer".into(),
        Origin::GrpcStream => "inference.GRPCInferenceService/ModelStreamInfer".into(),
        Origin::Friendly { path } => path.to_string(),
    }
}

/// Whether the request `id` is in the sample `rate` (0 to 1): the same id always gets the
/// same answer (FNV-1a of its bytes, as a fraction of 2^64).
pub fn sampled(id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h as f64 / 18_446_744_073_709_551_616.0) < rate
}

fn write_loop(kind: &str, mut sink: Box<dyn Sink>, rx: Receiver<Msg>, c: &SinkCounters) {
    sink.upkeep();
    let mut last_upkeep = Instant::now();
    let mut batch: Vec<Arc<Record>> = Vec::with_capacity(BATCH);
    loop {
        let first = match rx.recv_timeout(UPKEEP) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut flush = None;
        let mut next = first;
        while let Some(m) = next {
            match m {
                Msg::Record(r) => batch.push(r),
                Msg::Flush(ack) => {
                    flush = Some(ack);
                    break;
                }
            }
            if batch.len() >= BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            let started = Instant::now();
            match sink.write(&batch) {
                Ok(()) => {
                    c.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    c.failures.fetch_add(1, Ordering::Relaxed);
                    c.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::warn!(sink = %kind, error = %e, records = batch.len(), "the prediction log could not write a batch; its records are dropped");
                }
            }
            c.write_us
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            c.writes.fetch_add(1, Ordering::Relaxed);
            batch.clear();
        }
        if last_upkeep.elapsed() >= UPKEEP {
            sink.upkeep();
            last_upkeep = Instant::now();
        }
        if let Some(ack) = flush {
            // Everything before the flush is written (a batch stops at it).
            let _ = ack.send(());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_deterministic_and_near_its_rate() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("req-{i}")).collect();
        let kept = ids.iter().filter(|id| sampled(id, 0.25)).count();
        assert!((4_500..5_500).contains(&kept), "{kept} of 20000 at 0.25");
        for id in &ids[..100] {
            assert_eq!(sampled(id, 0.25), sampled(id, 0.25));
        }
        assert!(ids.iter().all(|id| sampled(id, 1.0)));
        assert!(!ids.iter().any(|id| sampled(id, 0.0)));
        // A request kept at a rate is kept at every higher rate.
        assert!(ids
            .iter()
            .filter(|id| sampled(id, 0.1))
            .all(|id| sampled(id, 0.5)));
    }
}
