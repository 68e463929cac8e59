//! A model's handle: admission control in front of its instances.
//!
//! Callers clone a [`ModelHandle`] and `submit` a batch; admission takes a permit from one
//! semaphore (the only place backpressure is decided: no permit means the queue is full and the
//! caller is answered at once); the job goes on a channel that the model's instance threads
//! read; the answer comes back on a oneshot. Compute never runs on the async runtime. A job whose
//! caller has gone away (client disconnected) is skipped, not computed. A panic inside a model
//! is caught, answered as an internal error, and the instance keeps serving.

use std::sync::Arc;
use std::time::Instant;

use ferroserve_core::model::Batch;
use ferroserve_core::{ErrorKind, InferError, LoadedModel, Tensor};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// How a model's instances are set up.
#[derive(Debug, Clone)]
pub struct HandleConfig {
    /// Compute threads running this model.
    pub instances: usize,
    /// Requests admitted (queued or running) at once; more are refused with `Overloaded`.
    pub max_queue_size: usize,
}

impl Default for HandleConfig {
    fn default() -> Self {
        HandleConfig {
            instances: 1,
            max_queue_size: 1024,
        }
    }
}

struct Job {
    batch: Batch,
    reply: oneshot::Sender<Result<Vec<Tensor>, InferError>>,
    _permit: OwnedSemaphorePermit,
}

/// A cloneable handle to a running model.
#[derive(Clone)]
pub struct ModelHandle {
    tx: crossbeam_channel::Sender<Job>,
    permits: Arc<Semaphore>,
    max_queue_size: usize,
}

impl ModelHandle {
    /// Starts `cfg.instances` threads running `model`. They stop when every handle is dropped.
    pub fn start(name: &str, model: Arc<dyn LoadedModel>, cfg: &HandleConfig) -> ModelHandle {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..cfg.instances.max(1) {
            let rx = rx.clone();
            let model = model.clone();
            std::thread::Builder::new()
                .name(format!("fs-{name}-{i}"))
                .spawn(move || instance_loop(model, rx))
                .expect("spawn instance thread");
        }
        ModelHandle {
            tx,
            permits: Arc::new(Semaphore::new(cfg.max_queue_size)),
            max_queue_size: cfg.max_queue_size,
        }
    }

    /// Requests queued or running now.
    pub fn queue_depth(&self) -> usize {
        self.max_queue_size - self.permits.available_permits()
    }

    /// Runs `batch` on one of the model's instances.
    pub async fn submit(&self, batch: Batch) -> Result<Vec<Tensor>, InferError> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            InferError::new(
                ErrorKind::Overloaded,
                format!(
                    "model queue is full ({} requests waiting); retry later",
                    self.max_queue_size
                ),
            )
        })?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                batch,
                reply,
                _permit: permit,
            })
            .map_err(|_| InferError::unavailable("model is shutting down"))?;
        rx.await
            .map_err(|_| InferError::internal("model instance stopped before answering"))?
    }
}

fn instance_loop(model: Arc<dyn LoadedModel>, rx: crossbeam_channel::Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        if job.reply.is_closed() {
            tracing::debug!("request dropped before compute: client went away");
            continue;
        }
        let started = Instant::now();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.infer(&job.batch)));
        let result = match result {
            Ok(r) => r.map_err(InferError::from),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(%msg, "model panicked");
                Err(InferError::internal(format!("model failed: {msg}")))
            }
        };
        tracing::trace!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "batch computed"
        );
        let _ = job.reply.send(result);
    }
}
