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
//! In the durable mode ([`LogMode::Durable`], per model or for the server) the request path
//! instead appends the record to the [`spool::Spool`] on disk before the answer goes out, and
//! each writer delivers from there, retrying a sink that is down without dropping anything;
//! when the spool is full, new requests to such models are refused (503, [`Hook::admit`]).
//!
//! What a record holds, per model (`[prediction_log]` in model.toml) over the server's
//! defaults: nothing, the outputs, or the inputs and outputs, for a fraction of the requests
//! chosen by the request's id, with at most `max_rows` rows of each tensor.

pub mod cloudevents;
pub mod file;
pub mod record;
pub mod redis_sink;
pub mod spool;
pub mod sqlite;
pub mod text;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use ferroserve_core::config::{LogContent, LogMode, PredictionLogConfig};
use ferroserve_core::InferError;
use ferroserve_runtime::service::{Finished, Hook};
use ferroserve_runtime::{Origin, ServedVersion};

pub use record::{Record, Values};
pub use spool::Spool;

/// Records a sink's queue holds before new ones are dropped for it.
pub const QUEUE: usize = 16_384;
/// Most records one write takes.
const BATCH: usize = 512;
/// How long a writer waits for more records after the first of a batch (a write costs far
/// more than a record: one SQLite transaction, one Redis pipeline).
const LINGER: Duration = Duration::from_millis(20);
/// How often a writer does its sink's upkeep.
const UPKEEP: Duration = Duration::from_secs(60);
/// Least time between two warnings about dropped records.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The first and the longest wait before a sink that failed is tried again with what the
/// spool holds for it.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LAST: Duration = Duration::from_secs(5);

/// What the server records when a model's `[prediction_log]` says nothing: the outputs of
/// every request, at most 100 rows of each.
pub fn default_settings() -> PredictionLogConfig {
    PredictionLogConfig {
        record: Some(LogContent::Outputs),
        sample: Some(1.0),
        max_rows: Some(100),
        mode: Some(LogMode::BestEffort),
    }
}

/// A sink's wait after failing to reach its server: it doubles from 100 ms to 10 s while the
/// server stays down, and batches within it fail at once (a server that is down costs no time).
pub(crate) struct Backoff {
    next: Duration,
    until: Option<Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const LAST: Duration = Duration::from_secs(10);

    pub(crate) fn new() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
            until: None,
        }
    }

    /// The error to fail a batch with while waiting: `shown` (the server) is down.
    pub(crate) fn check(&self, shown: &str) -> Result<(), String> {
        match self
            .until
            .map(|t| t.saturating_duration_since(Instant::now()))
        {
            Some(left) if !left.is_zero() => Err(format!("{shown} is down; retrying in {left:?}")),
            _ => Ok(()),
        }
    }

    pub(crate) fn failed(&mut self) {
        self.until = Some(Instant::now() + self.next);
        self.next = (self.next * 2).min(Backoff::LAST);
    }

    /// The server answered: whether it had been failing.
    pub(crate) fn succeeded(&mut self) -> bool {
        self.next = Backoff::FIRST;
        self.until.take().is_some()
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
    /// Records appended to the spool for this sink (durable mode).
    pub spooled: AtomicU64,
    /// Writes that failed (their records are counted as dropped).
    pub failures: AtomicU64,
    /// Total time spent writing, microseconds, and the writes it was spent in.
    pub write_us: AtomicU64,
    pub writes: AtomicU64,
}

/// One sink as the metrics show it.
pub struct SinkView<'a> {
    pub kind: &'a str,
    pub target: &'a str,
    pub counters: &'a SinkCounters,
    pub queued: usize,
}

enum Msg {
    Record(Arc<Record>),
    /// Write everything before this (and what the spool holds, until the deadline), then
    /// answer.
    Flush(Sender<()>, Instant),
}

struct Writer {
    /// `sqlite`, `redis`, ...: the label of its metrics.
    kind: String,
    /// Where it writes, as shown.
    target: String,
    tx: Sender<Msg>,
    counters: Arc<SinkCounters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The prediction log: a [`Hook`] handing each request's record to every sink's queue.
pub struct PredictionLog {
    defaults: PredictionLogConfig,
    writers: Vec<Writer>,
    spool: Option<Arc<Spool>>,
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
            spool: None,
            seq: AtomicU64::new(0),
            boot: record::now_ms() as u64,
            warned: Mutex::new(None),
        }
    }

    /// Keeps durable records in `spool` (before any sink is added: each sink reads it, and
    /// delivers what an earlier run left there).
    pub fn with_spool(mut self, spool: Arc<Spool>) -> PredictionLog {
        assert!(self.writers.is_empty(), "the spool comes before the sinks");
        self.spool = Some(spool);
        self
    }

    /// The spool, if there is one.
    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_deref()
    }

    /// Adds a sink, written by a thread of its own from now on: of `kind` (`sqlite`, `redis`,
    /// ...: the metrics' `sink` label), writing to `target` (its `target` label, and what names
    /// its place in the spool from one run to the next: a URL without its password, a file's
    /// name, never a path).
    pub fn with_sink(mut self, kind: &str, target: &str, sink: Box<dyn Sink>) -> PredictionLog {
        let name = format!("{kind}-{:016x}", fnv1a(target.as_bytes()));
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let counters = Arc::new(SinkCounters::default());
        let c = counters.clone();
        let label = kind.to_string();
        let reader = self.spool.as_ref().map(|s| s.reader(&name));
        let thread = std::thread::Builder::new()
            .name(format!("fs-log-{kind}"))
            .spawn(move || {
                Writing {
                    kind: &label,
                    sink,
                    rx,
                    spool: reader,
                    c: &c,
                    retry_at: None,
                    retry: RETRY_FIRST,
                    warned: None,
                }
                .run()
            })
            .expect("spawn a prediction log writer");
        self.writers.push(Writer {
            kind: kind.to_string(),
            target: target.to_string(),
            tx,
            counters,
            thread: Mutex::new(Some(thread)),
        });
        self
    }

    /// Each sink's kind, target, counters and queue length, for the metrics.
    pub fn sinks(&self) -> Vec<SinkView<'_>> {
        self.writers
            .iter()
            .map(|w| SinkView {
                kind: &w.kind,
                target: &w.target,
                counters: &w.counters,
                queued: w.tx.len(),
            })
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
            if w.tx.send_timeout(Msg::Flush(tx, deadline), left).is_ok() {
                acks.push((w, rx));
            }
        }
        for (w, rx) in acks {
            // The writer stops delivering from the spool at the deadline: a moment more for it
            // to answer.
            let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
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
            Ok(r) => (
                200,
                None,
                Some(Values::Tensors(text::first_rows(&r.outputs, max_rows))),
            ),
            Err(e) => (e.kind.http_status(), Some(e.message.clone()), None),
        };
        let inputs = match (content, done.inputs) {
            (LogContent::All, Some((t, _))) => Some(Values::Tensors(text::first_rows(t, max_rows))),
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

    /// The spool, when `settings` ask for the durable mode.
    fn durable(&self, settings: &PredictionLogConfig) -> Option<&Spool> {
        match settings.mode {
            Some(LogMode::Durable) => self.spool.as_deref(),
            _ => None,
        }
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

    fn admit(&self, served: &ServedVersion) -> Result<(), InferError> {
        if self.writers.is_empty() {
            return Ok(());
        }
        let settings = self.settings(served);
        if settings.record == Some(LogContent::None) || settings.sample == Some(0.0) {
            return Ok(());
        }
        match self.durable(&settings).and_then(Spool::refusal) {
            Some(why) => Err(InferError::unavailable(why)),
            None => Ok(()),
        }
    }

    fn finished(&self, done: &Finished<'_>) {
        if self.writers.is_empty() {
            return;
        }
        let settings = self.settings(done.served);
        let Some(record) = self.record_of(done, &settings) else {
            return;
        };
        if let Some(spool) = self.durable(&settings) {
            // A full spool refuses requests (`admit`); their records, and those of other
            // failures while it is full, are not kept. Every answered request's is.
            let ok = (done.result.is_ok() || spool.refusal().is_none())
                && spool.append(record.json_line().as_bytes()).is_ok();
            for w in &self.writers {
                if ok {
                    w.counters.spooled.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.dropped(w);
                }
            }
            return;
        }
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
        Origin::Job { id } => format!("/jobs/{id}"),
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
    (fnv1a(id.as_bytes()) as f64 / 18_446_744_073_709_551_616.0) < rate
}

/// FNV-1a, 64 bits: request ids' sampling, and sinks' names in the spool.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One sink's writer thread.
struct Writing<'a> {
    kind: &'a str,
    sink: Box<dyn Sink>,
    rx: Receiver<Msg>,
    spool: Option<spool::SpoolReader>,
    c: &'a SinkCounters,
    /// When the sink failed with what the spool holds: when to try again, and the wait after
    /// that.
    retry_at: Option<Instant>,
    retry: Duration,
    warned: Option<Instant>,
}

impl Writing<'_> {
    fn run(mut self) {
        self.sink.upkeep();
        let mut last_upkeep = Instant::now();
        let mut batch: Vec<Arc<Record>> = Vec::with_capacity(BATCH);
        // When to deliver from the spool next: at once at the start (what an earlier run left),
        // then LINGER after a wake-up, so that a delivery takes many records.
        let mut spool_due = Some(Instant::now());
        loop {
            let mut more = false;
            if spool_due.is_some_and(|t| Instant::now() >= t) {
                // `more` when a batch was delivered: there may be more at once.
                more = self.deliver_spooled();
                // Again at once, or when a sink that failed is to be tried again, or (None)
                // when new records wake the writer.
                spool_due = if more {
                    Some(Instant::now())
                } else {
                    self.retry_at
                };
            }
            let now = Instant::now();
            let mut wait = self
                .retry_at
                .map_or(UPKEEP, |t| t.saturating_duration_since(now))
                .min(UPKEEP);
            if let Some(t) = spool_due {
                wait = wait.min(t.saturating_duration_since(now));
            }
            if more {
                wait = Duration::ZERO;
            }
            // Woken by the spool only when no delivery is due yet (each wake-up costs the
            // appender a system call).
            let wake = match spool_due {
                None => self.spool.as_ref().map(|s| s.wake().clone()),
                Some(_) => None,
            };
            let first = match wake {
                Some(wake) => crossbeam_channel::select! {
                    recv(self.rx) -> m => match m {
                        Ok(m) => Some(m),
                        Err(_) => return,
                    },
                    recv(wake) -> _ => {
                        spool_due.get_or_insert(Instant::now() + LINGER);
                        None
                    },
                    default(wait) => None,
                },
                None => match self.rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            // A record: let more gather for LINGER (asleep, so that the request path hands
            // them over without waking this thread), then take them, so that one write (one
            // transaction, one pipeline) carries many: a write costs far more than a record.
            let mut flush = None;
            if let Some(m) = first {
                // Not when a batch is already waiting (a sink that is behind writes at once).
                if matches!(m, Msg::Record(_)) && self.rx.len() + 1 < BATCH {
                    std::thread::sleep(LINGER);
                }
                let mut next = Some(m);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Record(r) => batch.push(r),
                        Msg::Flush(ack, deadline) => {
                            flush = Some((ack, deadline));
                            break;
                        }
                    }
                    if batch.len() >= BATCH {
                        break;
                    }
                    next = self.rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                if let Err(e) = self.write(&batch) {
                    self.c
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::warn!(sink = %self.kind, error = %e, records = batch.len(), "the prediction log could not write a batch; its records are dropped");
                }
                batch.clear();
            }
            if last_upkeep.elapsed() >= UPKEEP {
                self.sink.upkeep();
                last_upkeep = Instant::now();
            }
            if let Some((ack, deadline)) = flush {
                // Everything before the flush is written (a batch stops at it); then what the
                // spool holds, while the sink takes it and time allows.
                self.retry_at = None;
                while Instant::now() < deadline && self.deliver_spooled() {}
                if self.spool.is_some() && self.retry_at.is_some() {
                    tracing::warn!(sink = %self.kind, "the prediction log's sink is down at shutdown: what the spool holds for it is delivered at the next start");
                }
                let _ = ack.send(());
                return;
            }
        }
    }

    /// Writes `batch`, counting it.
    fn write(&mut self, batch: &[Arc<Record>]) -> Result<(), String> {
        let started = Instant::now();
        let r = self.sink.write(batch);
        match &r {
            Ok(()) => {
                self.c
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.c.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.c
            .write_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.c.writes.fetch_add(1, Ordering::Relaxed);
        r
    }

    /// Delivers one batch of what the spool holds, unless waiting to retry; whether a whole
    /// batch went (there may be more).
    fn deliver_spooled(&mut self) -> bool {
        if self.spool.is_none() || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        let batch = match self.spool.as_mut().map(|s| s.next(BATCH)) {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                self.failed(&e);
                return false;
            }
            None => return false,
        };
        if batch.is_empty() {
            return false;
        }
        match self.write(&batch) {
            Ok(()) => {
                if let Some(s) = self.spool.as_mut() {
                    s.commit();
                }
                self.retry_at = None;
                self.retry = RETRY_FIRST;
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    /// The sink failed with spooled records: they stay, and are tried again after a wait
    /// that doubles while it keeps failing.
    fn failed(&mut self, e: &str) {
        self.retry_at = Some(Instant::now() + self.retry);
        self.retry = (self.retry * 2).min(RETRY_LAST);
        if self.warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            self.warned = Some(Instant::now());
            tracing::warn!(sink = %self.kind, error = %e, "the prediction log's sink failed; the spool keeps its records and they are tried again");
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
