//! A model version's handle: admission control in front of its batcher and instances.
//!
//! Callers clone a [`ModelHandle`] and `submit` a batch. Admission takes one permit from one
//! semaphore per version — the only place backpressure is decided: no permit means the queue is
//! full and the caller is answered at once (429). The request goes to the version's batcher
//! task ([`crate::batcher`]), split into chunks when larger than `max_batch_size` rows (of
//! `max_batch_size` rows, or one per instance for models that keep large requests together:
//! [`LoadedModel::keeps_large_requests`]);
//! the batcher groups queued requests into batches for the instance threads, which compute
//! (never on the async runtime), split the outputs back and answer each request on its oneshot.
//! Each instance thread makes its own state for the model when it starts
//! ([`LoadedModel::instance`]: an ONNX Runtime session, scratch buffers) and runs every batch
//! with it. A panic inside a model is caught, answered as an internal error, and the instance
//! keeps serving. A cheap model (measured cost below `inline_compute_below`) whose queue is empty
//! is computed on the caller's own task instead: a batch could not form, and the two thread hops
//! would cost more than the model. Those requests share one more instance state, made by the
//! first of them; one request at a time computes with it, and a request that finds it in use
//! goes through the batcher.
//! Inline computations also take an idle instance's permit (the batcher's, with
//! `try_acquire`: no wait, and none when every instance is busy, when the request is queued
//! instead), so that at most `instances` computations of a version run at once, inline or not.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferroserve_core::config::BatchingConfig;
use ferroserve_core::model::Batch;
use ferroserve_core::{ErrorKind, InferError, Instance, LoadedModel, Tensor};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::batcher::{self, Dispatched, Entry, Policy};
use crate::stats::VersionStats;

/// Whose work a request is: online requests come first; background work (a batch job's
/// chunks) takes the instances they leave idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    #[default]
    Online,
    Background,
}

/// How a version's instances and queue are set up.
#[derive(Debug, Clone)]
pub struct HandleConfig {
    /// Compute threads running this model.
    pub instances: usize,
    /// Requests admitted (queued or running) at once; more are refused with `Overloaded`.
    pub max_queue_size: usize,
    pub batching: BatchingConfig,
}

impl Default for HandleConfig {
    fn default() -> Self {
        HandleConfig {
            instances: 1,
            max_queue_size: 1024,
            batching: BatchingConfig::default(),
        }
    }
}

/// A cloneable handle to a running model version.
#[derive(Clone)]
pub struct ModelHandle {
    tx: mpsc::UnboundedSender<Entry>,
    model: Arc<dyn LoadedModel>,
    /// Requests sent to the batcher and not yet taken from its queue.
    pending: Arc<AtomicUsize>,
    /// Compute inline below this measured cost when the queue is empty (zero: never).
    inline_below: Duration,
    /// Whether the model lets an extra instance compute inline ([`LoadedModel::inline_instance`]).
    inline_allowed: bool,
    /// One permit per instance, shared with the batcher: held by every computation, inline
    /// ones included.
    instances: Arc<Semaphore>,
    /// The instance state requests computed inline share.
    inline: Arc<Mutex<Inline>>,
    admission: Arc<Semaphore>,
    max_queue_size: usize,
    max_batch_size: usize,
    /// Rows a piece of a request larger than `max_batch_size` has: at most `max_batch_size`,
    /// or, when the model keeps large requests together, one piece per instance.
    split: Split,
    default_timeout: Option<Duration>,
    stats: Arc<VersionStats>,
    background: Arc<BackgroundInstance>,
}

/// How much lower than the server's the background instance (and the batch jobs' own
/// threads) run where the idle scheduling class is not available: nice 10 is about a tenth of
/// the CPU of a normal thread when they compete.
pub const BACKGROUND_NICE: i32 = 10;

/// Moves the calling thread to the background: on Linux the idle scheduling class
/// (`SCHED_IDLE`: it runs only on a CPU no normal thread wants, and a waking normal thread
/// takes the CPU from it at once), else (or when that is refused) [`BACKGROUND_NICE`] lower
/// priority. Neither needs a privilege; a thread cannot come back from either.
pub fn run_in_background() {
    #[cfg(target_os = "linux")]
    // SAFETY: these calls only read and set the calling thread's scheduling (pid 0 / its tid).
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 {
            return;
        }
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS as _, tid);
        let _ = libc::setpriority(libc::PRIO_PROCESS as _, tid, background_nice(now));
    }
}

/// The nice value a thread at `now` moves to when the idle class is refused: [`BACKGROUND_NICE`]
/// more, at most 19 (the lowest).
pub fn background_nice(now: i32) -> i32 {
    (now + BACKGROUND_NICE).min(19)
}

/// A version's background instance: one more instance, for batch jobs' chunks, on a thread at
/// the background CPU priority ([`run_in_background`]); made on the first background request.
struct BackgroundInstance {
    started: std::sync::Once,
    rx: crossbeam_channel::Receiver<Dispatched>,
    model: Arc<dyn LoadedModel>,
    name: String,
}

impl BackgroundInstance {
    fn start(&self) {
        self.started.call_once(|| {
            let (rx, model) = (self.rx.clone(), self.model.clone());
            std::thread::Builder::new()
                .name(format!("fs-{}-bg", self.name))
                .spawn(move || {
                    run_in_background();
                    instance_loop(model, rx)
                })
                .expect("spawn the background instance thread");
        });
    }
}

impl ModelHandle {
    /// Starts the batcher task (on the current tokio runtime) and `cfg.instances` compute
    /// threads for `model`. They stop when every handle is dropped and the queue is empty.
    pub fn start(
        name: &str,
        model: Arc<dyn LoadedModel>,
        cfg: &HandleConfig,
        stats: Arc<VersionStats>,
    ) -> ModelHandle {
        let instances = cfg.instances.max(1);
        let model_for_background = model.clone();
        // The instances: states on the shared compute pool, or threads of the model's own.
        let to_online = if model.shares_compute_pool() {
            crate::pool::States::make(instances, || model.clone().instance()).route()
        } else {
            let (batches_tx, batches_rx) = crossbeam_channel::unbounded::<Dispatched>();
            for i in 0..instances {
                let rx = batches_rx.clone();
                let model = model.clone();
                std::thread::Builder::new()
                    .name(format!("fs-{name}-{i}"))
                    .spawn(move || instance_loop(model, rx))
                    .expect("spawn instance thread");
            }
            batcher::channel_route(batches_tx)
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let permits = Arc::new(Semaphore::new(instances));
        let inline_allowed = model.inline_instance();
        let keeps_large = model.keeps_large_requests();
        let (background_tx, background_rx) = crossbeam_channel::unbounded::<Dispatched>();
        tokio::spawn(batcher::run(
            Policy::from_config(&cfg.batching),
            rx,
            batcher::Instances {
                online: permits.clone(),
                to_online,
                background: Arc::new(Semaphore::new(1)),
                to_background: batcher::channel_route(background_tx),
            },
            stats.clone(),
            pending.clone(),
        ));
        ModelHandle {
            tx,
            model,
            pending,
            inline_below: cfg.batching.inline_compute_below(),
            inline_allowed,
            instances: permits,
            inline: Arc::new(Mutex::new(Inline::Unmade)),
            admission: Arc::new(Semaphore::new(cfg.max_queue_size.max(1))),
            max_queue_size: cfg.max_queue_size.max(1),
            max_batch_size: cfg.batching.max_batch_size.max(1),
            split: Split {
                max_batch_size: cfg.batching.max_batch_size.max(1),
                instances: if keeps_large { Some(instances) } else { None },
            },
            default_timeout: cfg.batching.default_timeout(),
            stats,
            background: Arc::new(BackgroundInstance {
                started: std::sync::Once::new(),
                rx: background_rx,
                model: model_for_background,
                name: name.to_string(),
            }),
        }
    }

    /// Requests admitted and not yet answered (queued or running).
    pub fn queue_depth(&self) -> usize {
        self.max_queue_size - self.admission.available_permits()
    }

    pub fn stats(&self) -> &Arc<VersionStats> {
        &self.stats
    }

    /// Runs `batch` as an online request, answering within `timeout` (or the model's default)
    /// if given.
    pub async fn submit(
        &self,
        batch: Batch,
        timeout: Option<Duration>,
    ) -> Result<Vec<Tensor>, InferError> {
        self.submit_as(batch, timeout, Priority::Online).await
    }

    /// Runs `batch` at `priority`: background work (batch jobs) runs on the version's
    /// background instance, apart from online requests, and never computes inline (see
    /// [`batcher::run`]).
    pub async fn submit_as(
        &self,
        batch: Batch,
        timeout: Option<Duration>,
        priority: Priority,
    ) -> Result<Vec<Tensor>, InferError> {
        let background = priority == Priority::Background;
        if background {
            self.background.start();
        }
        let _permit = self.admission.clone().try_acquire_owned().map_err(|_| {
            InferError::new(
                ErrorKind::Overloaded,
                format!(
                    "model queue is full ({} requests admitted); retry later",
                    self.max_queue_size
                ),
            )
        })?;
        if !background {
            if let Some(out) = self.try_inline(&batch) {
                return out;
            }
        }
        let now = batcher::clock();
        let deadline = timeout.or(self.default_timeout).map(|t| now + t);
        let outputs: Arc<[String]> = Arc::from(batch.outputs);
        let mut replies = Vec::new();
        let eager = batch.rows > self.max_batch_size;
        for (inputs, rows) in chunks(batch.inputs, batch.rows, self.split.piece(batch.rows)) {
            let (reply, rx) = oneshot::channel();
            self.pending.fetch_add(1, Ordering::Relaxed);
            self.tx
                .send(Entry {
                    inputs,
                    rows,
                    outputs: outputs.clone(),
                    enqueued: now,
                    deadline,
                    eager,
                    background,
                    reply,
                })
                .map_err(|_| {
                    self.pending.fetch_sub(1, Ordering::Relaxed);
                    InferError::unavailable("model is shutting down")
                })?;
            replies.push(rx);
        }
        let mut joined: Option<Vec<Tensor>> = None;
        for rx in replies {
            let answer = match deadline {
                Some(d) => match tokio::time::timeout_at(d.into(), rx).await {
                    Ok(a) => a,
                    Err(_) => {
                        return Err(InferError::new(
                            ErrorKind::DeadlineExceeded,
                            "the request's timeout passed before it was answered",
                        ))
                    }
                },
                None => rx.await,
            };
            let part = answer
                .map_err(|_| InferError::internal("model instance stopped before answering"))??;
            joined = Some(match joined {
                None => part,
                Some(mut acc) => {
                    for (dst, src) in acc.iter_mut().zip(part) {
                        dst.data.extend(&src.data)?;
                        if let (Some(a), Some(b)) = (dst.shape.first_mut(), src.shape.first()) {
                            *a += *b;
                        }
                    }
                    acc
                }
            });
        }
        Ok(joined.unwrap_or_default())
    }
}

impl ModelHandle {
    /// Computes `batch` on the caller's task when the model is cheap (its measured cost for
    /// these rows is below `inline_compute_below`), nothing is queued and an instance is idle
    /// (its permit is held while computing): a batch could not form anyway, and two thread hops
    /// would cost more than the model.
    fn try_inline(&self, batch: &Batch) -> Option<Result<Vec<Tensor>, InferError>> {
        if self.inline_below.is_zero()
            || !self.inline_allowed
            || batch.rows > self.max_batch_size
            || self.pending.load(Ordering::Relaxed) != 0
        {
            return None;
        }
        let cost = self.stats.estimated_compute(batch.rows, 8)?;
        if cost >= self.inline_below {
            return None;
        }
        // Every instance busy (inline or on its thread): the queue, like any other request.
        let _instance = self.instances.try_acquire().ok()?;
        // Another request is computing inline: this one goes through the batcher.
        let mut slot = self.inline.try_lock().ok()?;
        if let Inline::Unmade = *slot {
            *slot = match self.model.clone().instance() {
                Ok(instance) => Inline::Ready(instance),
                Err(e) => {
                    tracing::warn!(error = %e, "no instance for inline compute; every request goes through the batcher");
                    Inline::Failed
                }
            };
        }
        let Inline::Ready(instance) = &mut *slot else {
            return None;
        };
        // Counted as queued for no time, as Triton counts every request in its queue statistics
        // (perf_analyzer finds the version a request went to by its queue count).
        self.stats.dequeued(Duration::ZERO);
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| instance.run(batch)));
        self.stats.batch_done(batch.rows, started.elapsed());
        Some(match result {
            Ok(r) => r.map_err(InferError::from).map(|outs| {
                outs.into_iter()
                    .filter(|t| batch.outputs.is_empty() || batch.outputs.contains(&t.name))
                    .collect()
            }),
            Err(panic) => Err(panic_error(panic)),
        })
    }
}

/// The instance state of the requests computed inline: made by the first of them.
enum Inline {
    Unmade,
    Ready(Box<dyn Instance>),
    /// The model could not make one (logged once): never inline.
    Failed,
}

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> InferError {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(%msg, "model panicked");
    InferError::internal(format!("model failed: {msg}"))
}

/// How a request larger than one batch is cut.
#[derive(Debug, Clone, Copy)]
struct Split {
    max_batch_size: usize,
    /// `Some(instances)`: the model keeps large requests together
    /// ([`LoadedModel::keeps_large_requests`]), cut only to use its instances.
    instances: Option<usize>,
}

impl Split {
    /// The most rows one piece of a request of `rows` rows has (a request of at most
    /// `max_batch_size` rows is one piece either way).
    fn piece(&self, rows: usize) -> usize {
        match self.instances {
            Some(n) => rows.div_ceil(n.max(1)).max(self.max_batch_size),
            None => self.max_batch_size,
        }
    }
}

/// Splits inputs with `rows` rows into chunks of at most `max` rows.
fn chunks(inputs: Vec<Tensor>, rows: usize, max: usize) -> Vec<(Vec<Tensor>, usize)> {
    if rows <= max {
        return vec![(inputs, rows)];
    }
    let mut out = Vec::with_capacity(rows.div_ceil(max));
    let mut start = 0;
    while start < rows {
        let end = (start + max).min(rows);
        let part = inputs
            .iter()
            .map(|t| {
                let inner: usize = t.shape.iter().skip(1).map(|&d| d.max(0) as usize).product();
                let mut shape = t.shape.clone();
                if let Some(d0) = shape.first_mut() {
                    *d0 = (end - start) as i64;
                }
                Tensor {
                    name: t.name.clone(),
                    shape,
                    data: t.data.slice(start * inner, end * inner),
                    parameters: t.parameters.clone(),
                }
            })
            .collect();
        out.push((part, end - start));
        start = end;
    }
    out
}

/// Answers every part of a batch with `e`.
pub(crate) fn answer_all(work: Dispatched, e: &InferError) {
    for part in work.parts {
        let _ = part.reply.send(Err(e.clone()));
    }
}

/// A computed batch: its instance's permit and each part's answer.
pub(crate) struct Done {
    permit: tokio::sync::OwnedSemaphorePermit,
    answers: Vec<(tokio::sync::oneshot::Sender<batcher::Reply>, batcher::Reply)>,
}

impl Done {
    /// The instance is idle from here: its permit goes back before the answers do, so that a
    /// caller's next request finds it free (and may compute inline).
    pub(crate) fn answer(self) {
        drop(self.permit);
        for (reply, answer) in self.answers {
            let _ = reply.send(answer);
        }
    }
}

/// Computes one dispatched batch on `instance` (a panic in the model is caught and answered),
/// counting it in the version's statistics; nothing is computed when every caller has gone.
pub(crate) fn compute(instance: &mut dyn Instance, work: Dispatched) -> Done {
    let Dispatched {
        batch,
        parts,
        stats,
        _instance: permit,
    } = work;
    if parts.iter().all(|p| p.reply.is_closed()) {
        tracing::debug!("batch dropped before compute: every client went away");
        return Done {
            permit,
            answers: Vec::new(),
        };
    }
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| instance.run(&batch)));
    stats.batch_done(batch.rows, started.elapsed());
    let result = match result {
        Ok(r) => r.map_err(InferError::from),
        Err(panic) => Err(panic_error(panic)),
    };
    let answers = match result.and_then(|outs| batcher::split(outs, &parts)) {
        Ok(split) => parts
            .into_iter()
            .zip(split)
            .map(|(part, outs)| (part.reply, Ok(outs)))
            .collect(),
        Err(e) => parts
            .into_iter()
            .map(|part| (part.reply, Err(e.clone())))
            .collect(),
    };
    Done { permit, answers }
}

fn instance_loop(model: Arc<dyn LoadedModel>, rx: crossbeam_channel::Receiver<Dispatched>) {
    // This instance's own state for the model, made on its own thread.
    let mut instance = match model.instance() {
        Ok(instance) => instance,
        Err(e) => {
            let e = InferError::from(e);
            tracing::error!(error = %e, "a model instance could not start; it answers every batch with why");
            let e = InferError::new(e.kind, format!("model instance could not start: {e}"));
            for work in rx {
                answer_all(work, &e);
            }
            return;
        }
    };
    while let Ok(work) = rx.recv() {
        compute(&mut *instance, work).answer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::TensorData;
    use std::sync::atomic::Ordering;

    #[test]
    fn the_background_nice_value_is_ten_lower_and_at_most_19() {
        assert_eq!(background_nice(0), 10);
        assert_eq!(background_nice(-5), 5);
        assert_eq!(background_nice(5), 15);
        assert_eq!(background_nice(12), 19);
    }

    /// Runs a test's body, failing it when it has not finished within 20 s instead of hanging: a
    /// batcher that never answers is a failure, found fast. (Not for tests on tokio's paused
    /// clock: it would jump to the timeout while a real instance thread computes.)
    async fn within<F: std::future::Future>(body: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(20), body)
            .await
            .expect("the test did not finish within 20 s: something was never answered")
    }

    #[test]
    fn chunks_cut_every_input_along_the_first_dimension() {
        let x: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let mut k = Tensor::new("k", vec![5], TensorData::Int64(vec![0, 1, 2, 3, 4]));
        k.parameters.insert("p", ferroserve_core::Param::Bool(true));
        let inputs = vec![Tensor::new("x", vec![5, 2], TensorData::Fp32(x)), k];
        let c = chunks(inputs.clone(), 5, 2);
        let rows: Vec<usize> = c.iter().map(|(_, r)| *r).collect();
        assert_eq!(rows, vec![2, 2, 1]);
        assert_eq!(c[0].0[0].name, "x");
        assert_eq!(c[0].0[0].shape, vec![2, 2]);
        assert_eq!(c[0].0[0].data, TensorData::Fp32(vec![0., 1., 2., 3.]));
        assert_eq!(c[1].0[0].data, TensorData::Fp32(vec![4., 5., 6., 7.]));
        assert_eq!(c[2].0[0].shape, vec![1, 2]);
        assert_eq!(c[2].0[0].data, TensorData::Fp32(vec![8., 9.]));
        assert_eq!(c[1].0[1].shape, vec![2]);
        assert_eq!(c[1].0[1].data, TensorData::Int64(vec![2, 3]));
        assert_eq!(c[2].0[1].data, TensorData::Int64(vec![4]));
        assert_eq!(c[2].0[1].parameters, inputs[1].parameters);
        // Whole multiples and requests that fit are not cut further.
        let c = chunks(inputs.clone(), 5, 5);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, inputs);
        assert_eq!(c[0].1, 5);
        let four = vec![Tensor::new(
            "k",
            vec![4],
            TensorData::Int64(vec![0, 1, 2, 3]),
        )];
        let c = chunks(four, 4, 2);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].0[0].data, TensorData::Int64(vec![2, 3]));
    }

    #[test]
    fn chunks_of_three_dimensional_inputs_keep_the_inner_shape() {
        let x: Vec<i32> = (0..12).collect();
        let inputs = vec![Tensor::new("x", vec![3, 2, 2], TensorData::Int32(x))];
        let c = chunks(inputs, 3, 2);
        assert_eq!(c[0].0[0].shape, vec![2, 2, 2]);
        assert_eq!(c[0].0[0].data, TensorData::Int32((0..8).collect()));
        assert_eq!(c[1].0[0].shape, vec![1, 2, 2]);
        assert_eq!(c[1].0[0].data, TensorData::Int32((8..12).collect()));
    }

    #[test]
    fn a_panic_message_is_kept() {
        let e = panic_error(Box::new("boom"));
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message.contains("model failed: boom"), "{}", e.message);
        let e = panic_error(Box::new(String::from("bang")));
        assert!(e.message.contains("bang"), "{}", e.message);
        let e = panic_error(Box::new(7u8));
        assert!(e.message.contains("unknown panic"), "{}", e.message);
    }

    /// A model answering `a = x` and `b = -x` for a `[-1, 1]` FP32 input; panics on NaN.
    struct Echo(ferroserve_core::ModelMetadata);

    impl LoadedModel for Echo {
        fn metadata(&self) -> &ferroserve_core::ModelMetadata {
            &self.0
        }
        fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, ferroserve_core::BackendError> {
            Ok(Box::new(EchoInstance))
        }
    }

    struct EchoInstance;

    impl Instance for EchoInstance {
        fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, ferroserve_core::BackendError> {
            let TensorData::Fp32(x) = &batch.inputs[0].data else {
                unreachable!("FP32 input")
            };
            assert!(!x.iter().any(|v| v.is_nan()), "NaN in the input");
            let r = batch.rows as i64;
            Ok(vec![
                Tensor::new("a", vec![r], TensorData::Fp32(x.clone())),
                Tensor::new(
                    "b",
                    vec![r],
                    TensorData::Fp32(x.iter().map(|v| -v).collect()),
                ),
            ])
        }
    }

    fn batch(x: &[f32], outputs: &[&str]) -> Batch {
        Batch {
            inputs: vec![Tensor::new(
                "x",
                vec![x.len() as i64, 1],
                TensorData::Fp32(x.to_vec()),
            )],
            rows: x.len(),
            outputs: outputs.iter().map(|o| o.to_string()).collect(),
        }
    }

    /// A handle whose model has run 8 one-row batches of 1 µs each (1 µs per row measured),
    /// computing inline below 2 µs, at most 4 rows per batch.
    fn measured_handle() -> ModelHandle {
        let stats = Arc::new(VersionStats::default());
        for _ in 0..8 {
            stats.batch_done(1, Duration::from_micros(1));
        }
        let cfg = HandleConfig {
            instances: 1,
            max_queue_size: 8,
            batching: BatchingConfig {
                max_batch_size: 4,
                inline_compute_below: "2us".into(),
                ..BatchingConfig::default()
            },
        };
        let h = ModelHandle::start(
            "echo",
            Arc::new(Echo(Default::default())),
            &cfg,
            stats.clone(),
        );
        assert!(Arc::ptr_eq(h.stats(), &stats));
        h
    }

    #[tokio::test]
    async fn cheap_batches_with_an_empty_queue_are_computed_inline() {
        within(async {
            let mut h = measured_handle();
            // Two rows cost 2 µs as measured: not below the bound. (Checked before anything runs:
            // each inline compute adds its real time to the measure.)
            assert!(h.try_inline(&batch(&[1.0, 2.0], &[])).is_none());
            // One row: 1 µs measured, below 2 µs.
            let out = h.try_inline(&batch(&[1.5], &[])).expect("inline").unwrap();
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].name, "a");
            assert_eq!(out[1].data, TensorData::Fp32(vec![-1.5]));
            assert_eq!(h.stats().execution_count.load(Ordering::Relaxed), 9);
            // From here on, a bound no real compute reaches.
            h.inline_below = Duration::from_secs(1);
            // Only the outputs asked for.
            let out = h
                .try_inline(&batch(&[2.0], &["b"]))
                .expect("inline")
                .unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].name, "b");
            assert_eq!(out[0].data, TensorData::Fp32(vec![-2.0]));
            // A panic is an internal error, and the model keeps serving.
            let e = h
                .try_inline(&batch(&[f32::NAN], &[]))
                .expect("inline")
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::Internal);
            assert!(e.message.contains("NaN in the input"), "{}", e.message);
            assert!(h.try_inline(&batch(&[1.0], &[])).is_some());
        })
        .await;
    }

    #[tokio::test]
    async fn models_refusing_inline_instances_are_never_computed_inline() {
        within(async {
            let mut h = measured_handle();
            h.inline_below = Duration::from_secs(1);
            assert!(h.try_inline(&batch(&[1.0], &[])).is_some());
            // A Python model: its instances are worker processes.
            h.inline_allowed = false;
            assert!(h.try_inline(&batch(&[1.0], &[])).is_none());
        })
        .await;
    }

    #[tokio::test]
    async fn inline_compute_needs_an_empty_queue_and_a_batch_that_fits() {
        within(async {
            let mut h = measured_handle();
            h.inline_below = Duration::from_secs(1);
            assert!(h.try_inline(&batch(&[1.0, 2.0, 3.0, 4.0], &[])).is_some());
            assert!(h
                .try_inline(&batch(&[1.0, 2.0, 3.0, 4.0, 5.0], &[]))
                .is_none());
            h.pending.store(1, Ordering::Relaxed);
            assert!(h.try_inline(&batch(&[1.0], &[])).is_none());
            h.pending.store(0, Ordering::Relaxed);
            assert!(h.try_inline(&batch(&[1.0], &[])).is_some());
            // Not measured yet: never inline.
            let fresh = ModelHandle {
                stats: Arc::new(VersionStats::default()),
                ..h.clone()
            };
            assert!(fresh.try_inline(&batch(&[1.0], &[])).is_none());
        })
        .await;
    }

    /// A model that records how many of its computations run at once: each waits (up to
    /// 100 ms) for another to join it, so that two that can overlap do.
    struct Crowd {
        meta: ferroserve_core::ModelMetadata,
        running: AtomicUsize,
        most: AtomicUsize,
    }

    impl LoadedModel for Crowd {
        fn metadata(&self) -> &ferroserve_core::ModelMetadata {
            &self.meta
        }
        fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, ferroserve_core::BackendError> {
            Ok(Box::new(CrowdInstance(self)))
        }
    }

    struct CrowdInstance(Arc<Crowd>);

    impl Instance for CrowdInstance {
        fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, ferroserve_core::BackendError> {
            let c = &self.0;
            let now = c.running.fetch_add(1, Ordering::SeqCst) + 1;
            c.most.fetch_max(now, Ordering::SeqCst);
            let started = Instant::now();
            while c.running.load(Ordering::SeqCst) < 2
                && started.elapsed() < Duration::from_millis(100)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            c.most
                .fetch_max(c.running.load(Ordering::SeqCst), Ordering::SeqCst);
            c.running.fetch_sub(1, Ordering::SeqCst);
            let r = batch.rows as i64;
            Ok(vec![Tensor::new(
                "a",
                vec![r],
                TensorData::Fp32(vec![0.0; batch.rows]),
            )])
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn inline_computations_are_bounded_by_the_instances() {
        within(async {
            let stats = Arc::new(VersionStats::default());
            for _ in 0..8 {
                stats.batch_done(1, Duration::from_micros(1));
            }
            let model = Arc::new(Crowd {
                meta: Default::default(),
                running: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
            });
            let cfg = HandleConfig {
                instances: 1,
                max_queue_size: 16,
                batching: BatchingConfig {
                    max_batch_size: 4,
                    // Far above any measure here: every request may go inline.
                    inline_compute_below: "10s".into(),
                    ..BatchingConfig::default()
                },
            };
            let h = ModelHandle::start("crowd", model.clone(), &cfg, stats.clone());
            // Four callers at once, on four worker threads: one instance, one computation at a
            // time, whether inline or queued.
            let calls: Vec<_> = (0..4)
                .map(|i| {
                    let h = h.clone();
                    tokio::spawn(async move { h.submit(batch(&[i as f32], &[]), None).await })
                })
                .collect();
            for c in calls {
                let out = c.await.unwrap().unwrap();
                assert_eq!(out[0].shape, vec![1]);
            }
            assert_eq!(model.most.load(Ordering::SeqCst), 1);
            assert_eq!(h.queue_depth(), 0);
            // With the permits back, the next one is computed inline again.
            assert!(h.try_inline(&batch(&[1.0], &[])).is_some());
            // While an instance is busy, no inline compute: the permit is the instance's.
            let busy = h.instances.clone().try_acquire_owned().unwrap();
            assert!(h.try_inline(&batch(&[1.0], &[])).is_none());
            drop(busy);
            assert!(h.try_inline(&batch(&[1.0], &[])).is_some());
        })
        .await;
    }

    #[tokio::test]
    async fn submitted_requests_are_answered_within_their_timeout() {
        within(async {
            let h = measured_handle();
            // Five rows: more than a batch, so never inline; chunks of 4 and 1 joined back.
            let out = h
                .submit(
                    batch(&[1.0, 2.0, 3.0, 4.0, 5.0], &["b"]),
                    Some(Duration::from_secs(60)),
                )
                .await
                .unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].shape, vec![5]);
            assert_eq!(
                out[0].data,
                TensorData::Fp32(vec![-1.0, -2.0, -3.0, -4.0, -5.0])
            );
            assert_eq!(h.queue_depth(), 0);
        })
        .await;
    }

    #[test]
    fn a_large_request_is_cut_at_max_batch_size_or_per_instance() {
        let cut = |instances, rows| {
            Split {
                max_batch_size: 64,
                instances,
            }
            .piece(rows)
        };
        assert_eq!(cut(None, 1000), 64, "split at max_batch_size");
        assert_eq!(cut(Some(1), 1000), 1000, "one instance: kept whole");
        assert_eq!(cut(Some(2), 1000), 500, "one piece per instance");
        assert_eq!(cut(Some(3), 1000), 334);
        assert_eq!(cut(Some(32), 1000), 64, "never below max_batch_size");
        assert_eq!(cut(Some(2), 64), 64, "a request that fits is not cut");
        assert_eq!(cut(Some(2), 65), 64);
        assert_eq!(cut(Some(0), 1000), 1000);
    }

    /// A model recording the rows of every batch it computes (answering `a = x`), keeping large
    /// requests together or not.
    struct Sizes {
        meta: ferroserve_core::ModelMetadata,
        keeps: bool,
        pooled: bool,
        seen: Mutex<Vec<usize>>,
    }

    impl LoadedModel for Sizes {
        fn metadata(&self) -> &ferroserve_core::ModelMetadata {
            &self.meta
        }
        fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, ferroserve_core::BackendError> {
            Ok(Box::new(SizesInstance(self)))
        }
        fn keeps_large_requests(&self) -> bool {
            self.keeps
        }
        fn shares_compute_pool(&self) -> bool {
            self.pooled
        }
    }

    struct SizesInstance(Arc<Sizes>);

    impl Instance for SizesInstance {
        fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, ferroserve_core::BackendError> {
            self.0.seen.lock().unwrap().push(batch.rows);
            Ok(vec![Tensor::new(
                "a",
                vec![batch.rows as i64],
                batch.inputs[0].data.clone(),
            )])
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_requests_run_whole_or_per_instance_when_the_model_keeps_them_together() {
        within(async {
            for (keeps, instances, want, pooled) in [
                (false, 1, vec![2, 4, 4], false),
                (true, 1, vec![10], false),
                (true, 2, vec![5, 5], false),
                (true, 4, vec![2, 4, 4], false),
                (true, 2, vec![5, 5], true),
                (false, 3, vec![2, 4, 4], true),
            ] {
                let model = Arc::new(Sizes {
                    meta: Default::default(),
                    keeps,
                    pooled,
                    seen: Mutex::new(Vec::new()),
                });
                let cfg = HandleConfig {
                    instances,
                    max_queue_size: 8,
                    batching: BatchingConfig {
                        max_batch_size: 4,
                        ..BatchingConfig::default()
                    },
                };
                let h = ModelHandle::start("sizes", model.clone(), &cfg, Default::default());
                let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
                let out = h.submit(batch(&x, &["a"]), None).await.unwrap();
                assert_eq!(out[0].shape, vec![10]);
                assert_eq!(out[0].data, TensorData::Fp32(x), "rows back in order");
                let mut seen = model.seen.lock().unwrap().clone();
                seen.sort_unstable();
                assert_eq!(
                    seen, want,
                    "keeps {keeps}, {instances} instances, pooled {pooled}"
                );
            }
        })
        .await;
    }

    /// A model that counts the instances it made, and fails to make any when told to.
    struct Counted {
        meta: ferroserve_core::ModelMetadata,
        made: AtomicUsize,
        fail: bool,
        pooled: bool,
    }

    impl LoadedModel for Counted {
        fn metadata(&self) -> &ferroserve_core::ModelMetadata {
            &self.meta
        }
        fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, ferroserve_core::BackendError> {
            if self.fail {
                return Err(ferroserve_core::BackendError::Load("no session".into()));
            }
            self.made.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(EchoInstance))
        }
        fn shares_compute_pool(&self) -> bool {
            self.pooled
        }
    }

    /// A started handle of `instances` instances (at most 4 rows a batch, inline below 1 s)
    /// whose model has been measured, so that one-row requests may run inline.
    fn counted(instances: usize, fail: bool, pooled: bool) -> (ModelHandle, Arc<Counted>) {
        let model = Arc::new(Counted {
            meta: Default::default(),
            made: AtomicUsize::new(0),
            fail,
            pooled,
        });
        let stats = Arc::new(VersionStats::default());
        for _ in 0..8 {
            stats.batch_done(1, Duration::from_micros(1));
        }
        let cfg = HandleConfig {
            instances,
            max_queue_size: 8,
            batching: BatchingConfig {
                max_batch_size: 4,
                inline_compute_below: "1s".into(),
                ..BatchingConfig::default()
            },
        };
        (
            ModelHandle::start("counted", model.clone(), &cfg, stats),
            model,
        )
    }

    #[tokio::test]
    async fn every_instance_makes_its_own_state_and_inline_compute_one_more() {
        within(async {
            let (h, model) = counted(2, false, false);
            // Five rows: two batches, on the instance threads.
            let out = h.submit(batch(&[1.0; 5], &["a"]), None).await.unwrap();
            assert_eq!(out[0].shape, vec![5]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while model.made.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(
                model.made.load(Ordering::SeqCst),
                2,
                "one per instance thread"
            );
            // The first request computed inline makes the inline state; the next ones reuse it.
            for x in [1.0, 2.0, 3.0] {
                let out = h.try_inline(&batch(&[x], &["b"])).expect("inline").unwrap();
                assert_eq!(out[0].data, TensorData::Fp32(vec![-x]));
            }
            assert_eq!(model.made.load(Ordering::SeqCst), 3);
            // While a request computes inline, another goes through the batcher.
            let busy = h.inline.lock().unwrap();
            assert!(h.try_inline(&batch(&[1.0], &[])).is_none());
            drop(busy);
            assert!(h.try_inline(&batch(&[1.0], &[])).is_some());
            assert_eq!(model.made.load(Ordering::SeqCst), 3);
        })
        .await;
    }

    #[tokio::test]
    async fn a_pooled_model_makes_its_states_at_start_and_computes_on_the_pool() {
        within(async {
            let (h, model) = counted(3, false, true);
            assert_eq!(
                model.made.load(Ordering::SeqCst),
                3,
                "one state per instance, at start"
            );
            // Nine rows in batches of at most 4, on the pool's threads, joined back in order.
            let x: Vec<f32> = (1..=9).map(|i| i as f32).collect();
            let out = h.submit(batch(&x, &["b"]), None).await.unwrap();
            assert_eq!(
                out[0].data,
                TensorData::Fp32(x.iter().map(|v| -v).collect())
            );
            // A panic in the model is answered, and the pool goes on serving.
            let e = h
                .submit(batch(&[f32::NAN; 5], &[]), None)
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::Internal);
            assert!(e.message.contains("NaN in the input"), "{}", e.message);
            for _ in 0..4 {
                let out = h.submit(batch(&[2.0; 5], &["a"]), None).await.unwrap();
                assert_eq!(out[0].shape, vec![5]);
            }
            assert_eq!(
                model.made.load(Ordering::SeqCst),
                3,
                "no state made after start"
            );
            assert_eq!(h.queue_depth(), 0);
            assert!(crate::pool::threads() >= 1);
        })
        .await;
    }

    #[tokio::test]
    async fn a_model_without_instances_answers_why_and_never_inline() {
        within(async {
            for pooled in [false, true] {
                let (h, _) = counted(1, true, pooled);
                assert!(h.try_inline(&batch(&[1.0], &[])).is_none());
                assert!(matches!(*h.inline.lock().unwrap(), Inline::Failed));
                assert!(h.try_inline(&batch(&[1.0], &[])).is_none());
                for _ in 0..2 {
                    let e = h
                        .submit(batch(&[1.0; 5], &[]), Some(Duration::from_secs(60)))
                        .await
                        .unwrap_err();
                    assert_eq!(e.kind, ErrorKind::Unavailable);
                    assert_eq!(e.message, "model instance could not start: no session");
                }
            }
        })
        .await;
    }
}
