//! The batcher and handle, end to end inside the runtime: batches form under concurrency and
//! after the queue delay, large requests are split and reassembled in order, expired and
//! abandoned requests are never computed, a full queue refuses at once — and batched answers
//! equal one-by-one answers on a real forest (property test).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ferroserve_core::config::BatchingConfig;
use ferroserve_core::model::Batch;
use ferroserve_core::{
    Backend, BackendError, DataType, ErrorKind, Instance, LoadedModel, ModelConfig, ModelMetadata,
    Tensor, TensorData, TensorMeta,
};
use ferroserve_runtime::batcher::TIMER_SLACK;
use ferroserve_runtime::handle::{HandleConfig, ModelHandle, Priority};
use ferroserve_runtime::VersionStats;

/// A test model: `y = 2x` for a `[-1, 2]` FP32 input, and `n` = the size of the batch each row
/// was computed in. It records batch sizes and can be held shut by a gate.
struct Doubler {
    meta: ModelMetadata,
    batches: Mutex<Vec<usize>>,
    /// The first input value of each batch and the thread that computed it, in order.
    firsts: Mutex<Vec<(f32, String)>>,
    threads: Mutex<Vec<String>>,
    gate: (Mutex<bool>, Condvar),
    /// Batches that reached the model (counted before the gate).
    entered: std::sync::atomic::AtomicUsize,
}

impl Doubler {
    fn new() -> Arc<Doubler> {
        Arc::new(Doubler {
            meta: ModelMetadata {
                platform: "test".into(),
                inputs: vec![TensorMeta {
                    name: "x".into(),
                    datatype: DataType::Fp32,
                    shape: vec![-1, 2],
                }],
                outputs: vec![
                    TensorMeta {
                        name: "y".into(),
                        datatype: DataType::Fp32,
                        shape: vec![-1, 2],
                    },
                    TensorMeta {
                        name: "n".into(),
                        datatype: DataType::Int64,
                        shape: vec![-1],
                    },
                ],
                ..Default::default()
            },
            batches: Mutex::new(Vec::new()),
            firsts: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            gate: (Mutex::new(true), Condvar::new()),
            entered: Default::default(),
        })
    }

    fn close_gate(&self) {
        *self.gate.0.lock().unwrap() = false;
    }

    fn open_gate(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    /// Waits (at most 10 s) until `f` holds.
    async fn until(what: &str, f: impl Fn() -> bool) {
        let t = std::time::Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{what}: not within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn batches(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }
}

impl LoadedModel for Doubler {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, BackendError> {
        Ok(Box::new(DoublerInstance(self)))
    }
}

/// An instance of the test model: everything it records is the model's.
struct DoublerInstance(Arc<Doubler>);

impl Instance for DoublerInstance {
    fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, BackendError> {
        self.0.infer(batch)
    }
}

impl Doubler {
    fn infer(&self, batch: &Batch) -> Result<Vec<Tensor>, BackendError> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut open = self.gate.0.lock().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !*open && std::time::Instant::now() < deadline {
            open = self
                .gate
                .1
                .wait_timeout(open, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        drop(open);
        self.batches.lock().unwrap().push(batch.rows);
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().name().unwrap_or("").to_string());
        let TensorData::Fp32(x) = &batch.inputs[0].data else {
            return Err(BackendError::Input("FP32 expected".into()));
        };
        self.firsts.lock().unwrap().push((
            x.first().copied().unwrap_or(f32::NAN),
            std::thread::current().name().unwrap_or("").to_string(),
        ));
        let r = batch.rows as i64;
        Ok(vec![
            Tensor::new(
                "y",
                vec![r, 2],
                TensorData::Fp32(x.iter().map(|v| v * 2.0).collect()),
            ),
            Tensor::new("n", vec![r], TensorData::Int64(vec![r; batch.rows])),
        ])
    }
}

/// Runs a test's body, failing it when it has not finished within 20 s instead of hanging: a
/// batcher that never answers is a failure, found fast. (Not for tests on tokio's paused
/// clock: it would jump to the timeout while a real instance thread computes.)
async fn within<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), body)
        .await
        .expect("the test did not finish within 20 s: something was never answered")
}

fn cfg(max_batch: usize, delay: &str, max_queue: usize) -> HandleConfig {
    HandleConfig {
        instances: 1,
        max_queue_size: max_queue,
        batching: BatchingConfig {
            max_batch_size: max_batch,
            max_queue_delay: delay.into(),
            ..BatchingConfig::default()
        },
    }
}

fn rows(values: &[f32]) -> Batch {
    let n = values.len() / 2;
    Batch {
        inputs: vec![Tensor::new(
            "x",
            vec![n as i64, 2],
            TensorData::Fp32(values.to_vec()),
        )],
        rows: n,
        outputs: vec![],
    }
}

fn start(model: &Arc<Doubler>, c: &HandleConfig) -> ModelHandle {
    ModelHandle::start("t", model.clone(), c, Arc::new(VersionStats::default()))
}

#[tokio::test(start_paused = true)]
async fn requests_arriving_within_the_delay_share_one_batch() {
    let m = Doubler::new();
    let h = start(&m, &cfg(16, "10ms", 64));
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.submit(rows(&[i as f32, 1.0]), None).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    for i in 3..5 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.submit(rows(&[i as f32, 1.0]), None).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let out = t.await.unwrap().unwrap();
        assert_eq!(out[0].data, TensorData::Fp32(vec![2.0 * i as f32, 2.0]));
        assert_eq!(
            out[1].data,
            TensorData::Int64(vec![5]),
            "row {i} should be in the batch of 5"
        );
    }
    assert_eq!(m.batches(), vec![5]);
    // The first request waited out the 10 ms delay, not more (less by at most the timer's slack).
    let waited = t0.elapsed();
    assert!(
        waited <= Duration::from_millis(10) && waited >= Duration::from_millis(10) - TIMER_SLACK,
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_request_waits_exactly_the_delay_and_zero_delay_adds_nothing() {
    let m = Doubler::new();
    let h = start(&m, &cfg(16, "3ms", 64));
    let t0 = tokio::time::Instant::now();
    h.submit(rows(&[1.0, 2.0]), None).await.unwrap();
    let waited = t0.elapsed();
    assert!(
        waited <= Duration::from_millis(3) && waited >= Duration::from_millis(3) - TIMER_SLACK,
        "{waited:?}"
    );
    let h0 = start(&m, &cfg(16, "0ms", 64));
    let t1 = tokio::time::Instant::now();
    h0.submit(rows(&[1.0, 2.0]), None).await.unwrap();
    assert_eq!(t1.elapsed(), Duration::ZERO);
}

/// Requests already waiting in the channel when the batcher wakes all join the first batch, even
/// with no queue delay.
#[tokio::test(start_paused = true)]
async fn requests_sent_together_go_in_one_batch() {
    let m = Doubler::new();
    let mut c = cfg(8, "0ms", 64);
    c.batching.inline_compute_below = "0us".into();
    let h = start(&m, &c);
    let (a, b, c2, d) = tokio::join!(
        h.submit(rows(&[1.0, 1.0]), None),
        h.submit(rows(&[2.0, 2.0]), None),
        h.submit(rows(&[3.0, 3.0]), None),
        h.submit(rows(&[4.0, 4.0]), None),
    );
    for (k, out) in [a, b, c2, d].into_iter().enumerate() {
        let out = out.unwrap();
        let v = 2.0 * (k + 1) as f32;
        assert_eq!(out[0].data, TensorData::Fp32(vec![v, v]));
        assert_eq!(
            out[1].data,
            TensorData::Int64(vec![4]),
            "computed in a batch of 4"
        );
    }
    assert_eq!(m.batches(), vec![4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_goes_without_waiting_and_large_requests_are_split_in_order() {
    within(async {
        let m = Doubler::new();
        let h = start(&m, &cfg(4, "10s", 64));
        let x: Vec<f32> = (0..20).map(|v| v as f32).collect();
        let out = tokio::time::timeout(Duration::from_secs(5), h.submit(rows(&x), None))
            .await
            .expect("a request of several full batches must not wait out the delay")
            .unwrap();
        assert_eq!(out[0].shape, vec![10, 2]);
        assert_eq!(
            out[0].data,
            TensorData::Fp32(x.iter().map(|v| v * 2.0).collect())
        );
        assert_eq!(out[1].shape, vec![10]);
        // Chunks of 4, 4 and 2 rows, none waiting out the 10 s delay.
        assert_eq!(m.batches(), vec![4, 4, 2]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_abandoned_requests_are_never_computed() {
    within(async {
        let m = Doubler::new();
        let h = start(&m, &cfg(1, "0ms", 64));
        m.close_gate();
        // A occupies the only instance until the gate opens.
        let ha = h.clone();
        let a = tokio::spawn(async move { ha.submit(rows(&[1.0, 1.0]), None).await });
        let entered = || m.entered.load(std::sync::atomic::Ordering::SeqCst);
        Doubler::until("A reaches the instance", || entered() == 1).await;
        // B times out while queued.
        let hb = h.clone();
        let b = tokio::spawn(async move {
            hb.submit(rows(&[2.0, 2.0]), Some(Duration::from_millis(20)))
                .await
        });
        // C's client goes away while queued.
        let hc = h.clone();
        let c = tokio::spawn(async move { hc.submit(rows(&[3.0, 3.0]), None).await });
        Doubler::until("A, B and C admitted", || h.queue_depth() == 3).await;
        c.abort();
        let err = b.await.unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::DeadlineExceeded);
        assert!(h.queue_depth() >= 1);
        m.open_gate();
        a.await.unwrap().unwrap();
        // D, after the gate opened, is computed; B and C never were.
        h.submit(rows(&[4.0, 4.0]), None).await.unwrap();
        assert_eq!(m.batches(), vec![1, 1], "only A and D may be computed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once() {
    within(async {
        let m = Doubler::new();
        let h = start(&m, &cfg(1, "0ms", 2));
        m.close_gate();
        let mut admitted = Vec::new();
        for i in 0..2 {
            let h = h.clone();
            admitted.push(tokio::spawn(async move {
                h.submit(rows(&[i as f32, 0.0]), None).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.queue_depth(), 2);
        let err = tokio::time::timeout(Duration::from_secs(1), h.submit(rows(&[9.0, 9.0]), None))
            .await
            .expect("refusal must be immediate")
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Overloaded);
        m.open_gate();
        for t in admitted {
            t.await.unwrap().unwrap();
        }
        assert_eq!(h.queue_depth(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_batching_computes_each_request_alone() {
    within(async {
        let m = Doubler::new();
        let mut c = cfg(16, "0ms", 64);
        c.batching.enabled = false;
        let h = start(&m, &c);
        m.close_gate();
        let mut tasks = Vec::new();
        for i in 0..4 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                h.submit(rows(&[i as f32, 0.0, 1.0, 1.0]), None).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        m.open_gate();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(m.batches(), vec![2, 2, 2, 2]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheap_model_with_an_empty_queue_is_computed_on_the_request_task() {
    within(async {
        for (inline, expect_inline) in [("50ms", true), ("0us", false)] {
            let m = Doubler::new();
            let mut c = cfg(16, "0ms", 64);
            c.batching.inline_compute_below = inline.into();
            let h = start(&m, &c);
            for i in 0..12 {
                let out = h.submit(rows(&[i as f32, 1.0]), None).await.unwrap();
                assert_eq!(out[0].data, TensorData::Fp32(vec![2.0 * i as f32, 2.0]));
            }
            let threads = m.threads.lock().unwrap().clone();
            // The first batches run on instance threads (no cost measured yet).
            assert!(
                threads[..8].iter().all(|t| t.starts_with("fs-")),
                "{threads:?}"
            );
            let later_inline = threads[8..].iter().all(|t| !t.starts_with("fs-"));
            assert_eq!(
                later_inline, expect_inline,
                "inline_compute_below = {inline}: {threads:?}"
            );
        }
    })
    .await;
}

mod property {
    use super::*;
    use ferroserve_trees::backend::TreesBackend;
    use proptest::prelude::*;

    fn forest() -> Arc<dyn LoadedModel> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../trees/tests/fixtures/lgb_multiclass.txt");
        TreesBackend
            .load(&ModelConfig::default(), &path)
            .expect("fixture loads")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

        /// Requests of random sizes, sent concurrently through a batcher with a random
        /// configuration, get exactly the answers they get alone.
        #[test]
        fn batched_answers_equal_one_by_one_answers(
            sizes in proptest::collection::vec(1usize..12, 1..24),
            max_batch in 1usize..20,
            delay_us in 0u64..1500,
            instances in 1usize..3,
            seed in any::<u64>(),
        ) {
            let model = forest();
            let nf = model.metadata().inputs[0].shape[1] as usize;
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                if state % 10 == 0 { f32::NAN } else { (state % 2000) as f32 / 100.0 - 5.0 }
            };
            let requests: Vec<Batch> = sizes.iter().map(|&n| Batch {
                inputs: vec![Tensor::new("input", vec![n as i64, nf as i64], TensorData::Fp32((0..n * nf).map(|_| next()).collect()))],
                rows: n,
                outputs: vec![],
            }).collect();
            let mut one = model.clone().instance().unwrap();
            let alone: Vec<Vec<Tensor>> = requests.iter().map(|b| one.run(b).unwrap()).collect();
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let batched: Vec<Vec<Tensor>> = rt.block_on(async {
                let h = ModelHandle::start("p", model.clone(), &HandleConfig {
                    instances,
                    max_queue_size: 1024,
                    batching: BatchingConfig { max_batch_size: max_batch, max_queue_delay: format!("{delay_us}us"), ..BatchingConfig::default() },
                }, Arc::new(VersionStats::default()));
                let tasks: Vec<_> = requests.into_iter().map(|b| { let h = h.clone(); tokio::spawn(async move { h.submit(b, None).await }) }).collect();
                let mut out = Vec::new();
                for t in tasks { out.push(t.await.unwrap().unwrap()); }
                out
            });
            prop_assert_eq!(batched, alone);
        }
    }
}

fn background(h: &ModelHandle, x: f32) -> tokio::task::JoinHandle<Vec<Tensor>> {
    let h = h.clone();
    tokio::spawn(async move {
        h.submit_as(rows(&[x, 0.0]), None, Priority::Background)
            .await
            .unwrap()
    })
}

fn online(h: &ModelHandle, x: f32) -> tokio::task::JoinHandle<Vec<Tensor>> {
    let h = h.clone();
    tokio::spawn(async move { h.submit(rows(&[x, 0.0]), None).await.unwrap() })
}

fn entered(m: &Doubler) -> usize {
    m.entered.load(std::sync::atomic::Ordering::SeqCst)
}

/// Where each batch ran: the thread of the batch whose first value is `x`.
fn thread_of(m: &Doubler, x: f32) -> String {
    let f = m.firsts.lock().unwrap();
    f.iter()
        .find(|(v, _)| *v == x)
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| panic!("no batch began with {x}: {f:?}"))
}

/// An online request never waits for a batch job's chunks: with the background instance busy
/// and two chunks queued, it computes at once on the version's instance; the queued chunks then
/// go together, on the background instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_requests_never_wait_for_background_work() {
    within(async {
        let m = Doubler::new();
        let h = start(&m, &cfg(16, "0ms", 64));
        m.close_gate();
        let first = background(&h, 100.0);
        Doubler::until("the first chunk computing", || entered(&m) == 1).await;
        let b = background(&h, 200.0);
        Doubler::until("the second chunk queued", || h.queue_depth() == 2).await;
        let c = background(&h, 300.0);
        Doubler::until("the third chunk queued", || h.queue_depth() == 3).await;
        let o = online(&h, 1.0);
        Doubler::until("the online request computing beside the chunk", || {
            entered(&m) == 2
        })
        .await;
        m.open_gate();
        assert_eq!(o.await.unwrap()[0].data, TensorData::Fp32(vec![2.0, 0.0]));
        for (t, x) in [(first, 100.0), (b, 200.0), (c, 300.0)] {
            let out = t.await.unwrap();
            assert_eq!(out[0].data, TensorData::Fp32(vec![2.0 * x, 0.0]));
        }
        let mut sizes = m.batches();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![1, 1, 2], "the two queued chunks in one batch");
        assert_eq!(thread_of(&m, 1.0), "fs-t-0");
        assert_eq!(thread_of(&m, 100.0), "fs-t-bg");
        assert_eq!(thread_of(&m, 200.0), "fs-t-bg");
    })
    .await;
}

/// Background work has one instance of its own, whatever the version's instances: three chunks
/// run one at a time, and two online requests meanwhile find both instances free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_has_one_instance_and_leaves_the_others_to_online_requests() {
    within(async {
        let m = Doubler::new();
        let mut c = cfg(1, "0ms", 64);
        c.instances = 2;
        let h = start(&m, &c);
        m.close_gate();
        let chunks: Vec<_> = (0..3).map(|i| background(&h, 100.0 + i as f32)).collect();
        Doubler::until("one chunk computing", || entered(&m) == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(entered(&m), 1, "a second chunk computed at once");
        let o1 = online(&h, 1.0);
        let o2 = online(&h, 2.0);
        Doubler::until("both online requests computing", || entered(&m) == 3).await;
        m.open_gate();
        for o in [o1, o2] {
            o.await.unwrap();
        }
        for t in chunks {
            t.await.unwrap();
        }
        assert_eq!(m.batches(), vec![1; 5]);
        for x in [100.0, 101.0, 102.0] {
            assert_eq!(thread_of(&m, x), "fs-t-bg");
        }
        for x in [1.0, 2.0] {
            assert!(thread_of(&m, x).starts_with("fs-t-") && thread_of(&m, x) != "fs-t-bg");
        }
    })
    .await;
}

/// The background instance runs in the idle scheduling class; the version's instances do not.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_instance_runs_in_the_idle_class() {
    within(async {
        let m = Doubler::new();
        let h = start(&m, &cfg(16, "0ms", 64));
        background(&h, 5.0).await.unwrap();
        // A thread's nice value and scheduling policy, from /proc (fields 19 and 41 of its
        // stat line).
        let sched_of = |name: &str| -> Option<(i32, i32)> {
            // Threads of other tests come and go meanwhile: one that is gone is skipped.
            for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
                let dir = t.path();
                let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
                    continue;
                };
                if comm.trim() == name {
                    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                    let f: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
                    return Some((f.get(16)?.parse().ok()?, f.get(38)?.parse().ok()?));
                }
            }
            None
        };
        let (nice, policy) = sched_of("fs-t-0").unwrap();
        assert_eq!(policy, libc::SCHED_OTHER);
        // The idle class, and nothing more: its nice value is the process's.
        assert_eq!(sched_of("fs-t-bg"), Some((nice, libc::SCHED_IDLE)));
        h.submit(rows(&[1.0, 0.0]), None).await.unwrap();
    })
    .await;
}
