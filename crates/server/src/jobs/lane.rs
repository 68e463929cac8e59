//! The threads batch jobs do their own work on: reading a chunk's rows and writing its answer
//! lines. They run in the background scheduling class (`SCHED_IDLE` on Linux, see
//! [`run_in_background`]), as the models' background instances do, so that when the
//! machine is busy the scheduler gives the threads answering online requests the CPU first: the
//! models compute job chunks on their background instance (`Priority::Background`), and this
//! keeps the rest of a job's work from competing with online requests on equal terms.

use std::sync::Arc;

use ferroserve_core::InferError;

type Work = Box<dyn FnOnce() + Send>;

/// A few background threads taking work from one queue.
pub struct Lane {
    tx: crossbeam_channel::Sender<Work>,
}

use ferroserve_runtime::handle::run_in_background;

impl Lane {
    /// A lane of `threads` threads (at least one), started now.
    pub fn new(threads: usize) -> Arc<Lane> {
        let (tx, rx) = crossbeam_channel::unbounded::<Work>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("fs-jobs-{i}"))
                .spawn(move || {
                    run_in_background();
                    while let Ok(work) = rx.recv() {
                        // A panic in one chunk's work drops its answer (the caller sees an
                        // error), not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                    }
                })
                .expect("spawn a batch-job thread");
        }
        Arc::new(Lane { tx })
    }

    /// Runs `f` on the lane and waits for its answer.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, InferError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| InferError::internal("the batch-job threads have stopped"))?;
        rx.await
            .map_err(|_| InferError::internal("a batch-job chunk's work failed; see the log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_background_thread_and_a_panic_is_an_error() {
        let lane = Lane::new(1);
        let (name, policy) = lane
            .run(|| {
                // SAFETY: reads the calling thread's scheduling policy.
                let policy = unsafe { libc::sched_getscheduler(0) };
                (std::thread::current().name().map(String::from), policy)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("fs-jobs-0"));
        if cfg!(target_os = "linux") {
            assert_eq!(policy, libc::SCHED_IDLE);
        }
        let e = lane.run(|| -> u8 { panic!("a bug") }).await.unwrap_err();
        assert!(e.message.contains("failed"));
        assert_eq!(
            lane.run(|| 7).await.unwrap(),
            7,
            "the thread survived the panic"
        );
    }
}
