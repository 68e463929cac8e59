//! The compute pool: one set of threads, one per core unless set (`--compute-threads`), that
//! runs the batches of every model whose engine computes without waiting on anything (the tree
//! engine, ONNX Runtime: [`ferroserve_core::LoadedModel::shares_compute_pool`]). Threads do not
//! grow with the number of models, and an idle model costs no thread at all: a thousand
//! models in one process are a thousand queues and a thousand sets of instance states, served
//! by as many threads as the machine has cores.
//!
//! A model's `instances` stay what they were: how many of its batches may compute at once (the
//! batcher's permits), each with its own state ([`ferroserve_core::Instance`]: an ONNX Runtime
//! session, scratch buffers), made when the model starts. A batch takes a free state, computes
//! on a pool thread, and gives the state back before its permit, so that the next batch of the
//! model finds one. Models that wait on something while computing (a Python predictor's worker
//! process) keep threads of their own, so that a slow worker never holds a pool thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ferroserve_core::{InferError, Instance};

use crate::batcher::{Dispatched, Route};

type Job = Box<dyn FnOnce() + Send>;

static THREADS: AtomicUsize = AtomicUsize::new(0);
static POOL: OnceLock<(crossbeam_channel::Sender<Job>, usize)> = OnceLock::new();

/// Sets the pool's size (0: one thread per core). Takes effect if called before the first
/// model starts; later calls change nothing.
pub fn set_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

/// The pool's size: what [`set_threads`] set, else one per core.
pub fn threads() -> usize {
    pool().1
}

fn pool() -> &'static (crossbeam_channel::Sender<Job>, usize) {
    POOL.get_or_init(|| {
        let n = match THREADS.load(Ordering::Relaxed) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..n {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("fs-compute-{i}"))
                .spawn(move || {
                    for job in rx {
                        // A job answers its own panics (a model's is caught where it runs);
                        // this keeps the thread serving whatever escapes.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .expect("spawn a compute thread");
        }
        (tx, n)
    })
}

/// The instance states of one pooled model version: one per instance, made at start.
pub struct States {
    free: Mutex<Vec<Box<dyn Instance>>>,
    /// Why the states could not be made: every batch is answered with it.
    failed: Option<InferError>,
}

impl States {
    /// `count` states made by `make`; the first failure is kept, logged, and answers every
    /// batch (as an instance thread that could not start answers each of its batches).
    pub fn make(
        count: usize,
        mut make: impl FnMut() -> Result<Box<dyn Instance>, ferroserve_core::BackendError>,
    ) -> Arc<States> {
        let mut free = Vec::with_capacity(count);
        let mut failed = None;
        for _ in 0..count.max(1) {
            match make() {
                Ok(s) => free.push(s),
                Err(e) => {
                    let e = InferError::from(e);
                    tracing::error!(error = %e, "a model instance could not start; it answers every batch with why");
                    failed = Some(InferError::new(
                        e.kind,
                        format!("model instance could not start: {e}"),
                    ));
                    break;
                }
            }
        }
        Arc::new(States {
            free: Mutex::new(free),
            failed,
        })
    }

    /// The route the batcher sends this version's batches by: each a job on the pool.
    pub fn route(self: &Arc<Self>) -> Route {
        let states = self.clone();
        let (tx, _) = pool();
        let tx = tx.clone();
        Arc::new(move |work: Dispatched| {
            let states = states.clone();
            // The pool's threads never stop, so the job is always taken.
            let _ = tx.send(Box::new(move || states.run(work)));
            Ok(())
        })
    }

    fn run(&self, work: Dispatched) {
        if let Some(e) = &self.failed {
            crate::handle::answer_all(work, e);
            return;
        }
        let state = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some(mut state) = state else {
            // Cannot happen: a batch holds one of `instances` permits, and there are as many
            // states.
            crate::handle::answer_all(work, &InferError::internal("no free model instance"));
            return;
        };
        let done = crate::handle::compute(&mut *state, work);
        // The state is free again before the permit is: the next batch finds one.
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state);
        done.answer();
    }
}
