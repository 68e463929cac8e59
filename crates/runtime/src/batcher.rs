//! Dynamic batching: the policy (a pure function of the queue and a clock you pass in) and the
//! task that owns a model version's queue.
//!
//! The task waits for an idle instance, then asks the policy what to do with the queue: send a
//! batch of the first `n` requests, wait a while for more, or nothing. While every instance is
//! busy, requests keep queueing, so batches grow with load on their own; `max_queue_delay` only
//! adds waiting when an instance is idle. Expired requests and requests whose caller has gone
//! (client disconnected) are removed before each decision and never computed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroserve_core::config::BatchingConfig;
use ferroserve_core::model::Batch;
use ferroserve_core::{ErrorKind, InferError, Tensor};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::stats::VersionStats;

/// What the batcher should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the first `n` queued requests as one batch.
    Dispatch { n: usize },
    /// Nothing to send yet; decide again after this long (or when a request arrives).
    Wait(Duration),
    /// The queue is empty.
    Idle,
}

/// One queued request as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Queued {
    pub rows: usize,
    pub enqueued: Instant,
    /// A chunk of a request larger than one batch: it never waits for company (the client
    /// already sent a batch; waiting would only add latency).
    pub eager: bool,
}

/// The batching policy of one model version.
#[derive(Debug, Clone)]
pub struct Policy {
    pub enabled: bool,
    pub max_batch_size: usize,
    pub max_queue_delay: Duration,
    /// Sorted, largest first.
    pub preferred: Vec<usize>,
}

impl Policy {
    pub fn from_config(c: &BatchingConfig) -> Policy {
        let mut preferred = c.preferred_batch_sizes.clone();
        preferred.sort_unstable_by(|a, b| b.cmp(a));
        preferred.dedup();
        Policy {
            enabled: c.enabled,
            max_batch_size: c.max_batch_size.max(1),
            max_queue_delay: c.max_queue_delay(),
            preferred,
        }
    }

    /// Decides, for a queue in arrival order (each request at most `max_batch_size` rows), what
    /// to do at time `now`, given that an instance is free.
    pub fn decide(&self, queue: &[Queued], now: Instant) -> Decision {
        let Some(first) = queue.first() else {
            return Decision::Idle;
        };
        if !self.enabled {
            return Decision::Dispatch { n: 1 };
        }
        // The longest prefix that fits in one batch (the first request always fits).
        let mut rows = 0;
        let mut fit = 0;
        for q in queue {
            if rows + q.rows > self.max_batch_size && fit > 0 {
                break;
            }
            rows += q.rows;
            fit += 1;
        }
        if fit < queue.len() || rows >= self.max_batch_size || first.eager {
            return Decision::Dispatch { n: fit };
        }
        // A preferred size that a prefix reaches exactly goes at once.
        if !self.preferred.is_empty() {
            let mut sum = 0;
            let mut best: Option<(usize, usize)> = None;
            for (i, q) in queue[..fit].iter().enumerate() {
                sum += q.rows;
                if self.preferred.contains(&sum) && best.is_none_or(|(s, _)| sum > s) {
                    best = Some((sum, i + 1));
                }
            }
            if let Some((_, n)) = best {
                return Decision::Dispatch { n };
            }
        }
        let waited = now.saturating_duration_since(first.enqueued);
        if waited >= self.max_queue_delay {
            Decision::Dispatch { n: fit }
        } else {
            Decision::Wait(self.max_queue_delay - waited)
        }
    }
}

/// The answer to one queued request: its outputs, or why not.
pub type Reply = Result<Vec<Tensor>, InferError>;

/// A request (or one chunk of a large request) waiting in the queue.
pub struct Entry {
    pub inputs: Vec<Tensor>,
    pub rows: usize,
    /// Outputs to compute; empty means all.
    pub outputs: Arc<[String]>,
    pub enqueued: Instant,
    pub deadline: Option<Instant>,
    /// Part of a request split at `max_batch_size` (see [`Queued::eager`]).
    pub eager: bool,
    /// A batch job's chunk: runs after online requests (see [`run`]).
    pub background: bool,
    pub reply: oneshot::Sender<Reply>,
}

/// A batch the batcher dispatched to an instance, with where each part of the answer goes.
pub struct Dispatched {
    pub batch: Batch,
    pub parts: Vec<Part>,
    pub stats: Arc<VersionStats>,
    /// Held while the instance works: the batcher waits for a free one before deciding.
    pub _instance: OwnedSemaphorePermit,
}

/// One request's share of a batch.
pub struct Part {
    pub rows: usize,
    pub outputs: Arc<[String]>,
    pub reply: oneshot::Sender<Reply>,
}

/// Joins the inputs of `entries` along the first dimension into one batch.
pub fn assemble(entries: Vec<Entry>) -> Result<(Batch, Vec<Part>), (InferError, Vec<Part>)> {
    let mut parts = Vec::with_capacity(entries.len());
    let mut inputs: Vec<Tensor> = Vec::new();
    let mut rows = 0;
    let mut all_outputs = false;
    let mut outputs: Vec<String> = Vec::new();
    let mut error = None;
    for (k, e) in entries.into_iter().enumerate() {
        if error.is_none() {
            if k == 0 {
                inputs = e.inputs;
            } else {
                for (dst, src) in inputs.iter_mut().zip(&e.inputs) {
                    if let Err(err) = dst.data.extend(&src.data) {
                        error = Some(err);
                        break;
                    }
                    if let Some(d0) = dst.shape.first_mut() {
                        *d0 += e.rows as i64;
                    }
                }
            }
        }
        rows += e.rows;
        if e.outputs.is_empty() {
            all_outputs = true;
        } else {
            for o in e.outputs.iter() {
                if !outputs.contains(o) {
                    outputs.push(o.clone());
                }
            }
        }
        parts.push(Part {
            rows: e.rows,
            outputs: e.outputs,
            reply: e.reply,
        });
    }
    if let Some(err) = error {
        return Err((err, parts));
    }
    if all_outputs {
        outputs.clear();
    }
    Ok((
        Batch {
            inputs,
            rows,
            outputs,
        },
        parts,
    ))
}

/// Splits a batch's outputs back to its parts, in order, each part keeping the outputs it
/// asked for.
pub fn split(outputs: Vec<Tensor>, parts: &[Part]) -> Result<Vec<Vec<Tensor>>, InferError> {
    if parts.len() == 1 {
        let want = &parts[0].outputs;
        return Ok(vec![outputs
            .into_iter()
            .filter(|t| want.is_empty() || want.contains(&t.name))
            .collect()]);
    }
    let total: usize = parts.iter().map(|p| p.rows).sum();
    let mut out: Vec<Vec<Tensor>> = parts.iter().map(|_| Vec::new()).collect();
    for t in outputs {
        let inner: usize = t.shape.iter().skip(1).map(|&d| d.max(0) as usize).product();
        if t.shape.first().copied() != Some(total as i64) || t.data.len() != total * inner {
            return Err(InferError::internal(format!(
                "output '{}' has shape {:?}, expected {total} rows",
                t.name, t.shape
            )));
        }
        let mut start = 0;
        for (p, dst) in parts.iter().zip(out.iter_mut()) {
            let end = start + p.rows;
            if p.outputs.is_empty() || p.outputs.contains(&t.name) {
                let mut shape = t.shape.clone();
                shape[0] = p.rows as i64;
                dst.push(Tensor {
                    name: t.name.clone(),
                    shape,
                    data: t.data.slice(start * inner, end * inner),
                    parameters: t.parameters.clone(),
                });
            }
            start = end;
        }
    }
    Ok(out)
}

/// Removes entries whose caller is gone (never computed) or whose deadline passed (answered
/// with a timeout, never computed).
fn prune(queue: &mut VecDeque<Entry>, now: Instant, pending: &AtomicUsize) {
    queue.retain_mut(|e| {
        let keep = keep(e, now);
        if !keep {
            pending.fetch_sub(1, Ordering::Relaxed);
        }
        keep
    });
}

/// Whether a queued entry stays: not if its caller is gone or its deadline passed (then it is
/// answered with a timeout).
fn keep(e: &mut Entry, now: Instant) -> bool {
    if e.reply.is_closed() {
        tracing::debug!("request dropped before compute: the client went away");
        return false;
    }
    if e.deadline.is_some_and(|d| now >= d) {
        let (tx, _) = oneshot::channel();
        let reply = std::mem::replace(&mut e.reply, tx);
        let _ = reply.send(Err(InferError::new(
            ErrorKind::DeadlineExceeded,
            "the request's timeout passed while it was queued; it was not computed",
        )));
        return false;
    }
    true
}

/// How late tokio's timer may fire (it counts whole milliseconds). The loop asks the policy as
/// if it were this much later, so a wait is never overshot by the timer's rounding: a
/// `max_queue_delay` of 2 ms waits 1 to 2 ms, not 2 to 3.
pub const TIMER_SLACK: Duration = Duration::from_millis(1);

/// The batcher's clock: tokio's, so that tests can pause and advance it.
pub fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn push(e: Entry, queue: &mut VecDeque<Entry>, background: &mut VecDeque<Entry>) {
    if e.background {
        background.push_back(e);
    } else {
        queue.push_back(e);
    }
}

fn drain(
    rx: &mut mpsc::UnboundedReceiver<Entry>,
    queue: &mut VecDeque<Entry>,
    background: &mut VecDeque<Entry>,
) {
    while let Ok(e) = rx.try_recv() {
        push(e, queue, background);
    }
}

/// How many entries from the front of `queue` fit in one batch of `max` rows (at least one).
fn fitting(queue: &VecDeque<Entry>, max: usize) -> usize {
    let mut rows = 0;
    let mut n = 0;
    for e in queue {
        if rows + e.rows > max && n > 0 {
            break;
        }
        rows += e.rows;
        n += 1;
    }
    n
}

/// Where a version's dispatched batches go: its instance threads' channel, or the shared
/// compute pool ([`crate::pool`]). A batch that cannot go (the model is shutting down) comes
/// back.
pub type Route = Arc<dyn Fn(Dispatched) -> Result<(), Dispatched> + Send + Sync>;

/// A route to a channel that instance threads read.
pub fn channel_route(tx: crossbeam_channel::Sender<Dispatched>) -> Route {
    Arc::new(move |d| {
        tx.send(d)
            .map_err(|crossbeam_channel::SendError(back)| back)
    })
}

/// Where dispatched batches go: the instances' route, the background instance's, and what
/// answers them on failure.
struct Sender<'a> {
    to_instances: &'a Route,
    to_background: &'a Route,
    stats: &'a Arc<VersionStats>,
    pending: &'a AtomicUsize,
}

impl Sender<'_> {
    /// Sends the first `n` entries of `queue` as one batch, on the instance `permit` holds (the
    /// background instance for background entries).
    fn dispatch(
        &self,
        queue: &mut VecDeque<Entry>,
        n: usize,
        now: Instant,
        permit: OwnedSemaphorePermit,
        background: bool,
    ) {
        let taken: Vec<Entry> = queue.drain(..n).collect();
        self.pending.fetch_sub(taken.len(), Ordering::Relaxed);
        for e in &taken {
            self.stats
                .dequeued(now.saturating_duration_since(e.enqueued));
        }
        match assemble(taken) {
            Ok((batch, parts)) => {
                let dispatched = Dispatched {
                    batch,
                    parts,
                    stats: self.stats.clone(),
                    _instance: permit,
                };
                let to = if background {
                    self.to_background
                } else {
                    self.to_instances
                };
                if let Err(back) = to(dispatched) {
                    for p in back.parts {
                        let _ = p
                            .reply
                            .send(Err(InferError::unavailable("model is shutting down")));
                    }
                }
            }
            Err((err, parts)) => {
                for p in parts {
                    let _ = p.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// The version's instances and its background instance, as the batcher sees them.
pub struct Instances {
    /// One permit per instance (shared with inline computations).
    pub online: Arc<Semaphore>,
    pub to_online: Route,
    /// One permit: the background instance (batch jobs' chunks).
    pub background: Arc<Semaphore>,
    pub to_background: Route,
}

/// The task owning one model version's queue. Ends when every sender is dropped and the queue
/// is empty.
///
/// Online requests and background entries (batch jobs' chunks) queue apart and run apart:
/// online requests on the version's instances, batched by the policy; background entries on
/// its one background instance (a thread at a lower CPU priority, see
/// [`crate::handle::lower_thread_priority`]), as soon as it is free, a batch of as many as fit
/// in `max_batch_size` rows (a job's chunk is a batch already: it never waits for company). So
/// an online request never waits for a job's chunk, and when the machine is busy the scheduler
/// gives the online instances the CPU first.
pub async fn run(
    policy: Policy,
    mut rx: mpsc::UnboundedReceiver<Entry>,
    instances: Instances,
    stats: Arc<VersionStats>,
    pending: Arc<AtomicUsize>,
) {
    let mut queue: VecDeque<Entry> = VecDeque::new();
    let mut bg: VecDeque<Entry> = VecDeque::new();
    let mut open = true;
    let mut view: Vec<Queued> = Vec::new();
    let send = Sender {
        to_instances: &instances.to_online,
        to_background: &instances.to_background,
        stats: &stats,
        pending: &pending,
    };
    let background = &instances.background;
    loop {
        if queue.is_empty() && bg.is_empty() {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(e) => push(e, &mut queue, &mut bg),
                None => return,
            }
        }
        drain(&mut rx, &mut queue, &mut bg);
        let now = clock();
        prune(&mut queue, now, &pending);
        prune(&mut bg, now, &pending);
        // Background work goes whenever its instance is free.
        if !bg.is_empty() {
            if let Ok(slot) = background.clone().try_acquire_owned() {
                let n = fitting(&bg, policy.max_batch_size);
                send.dispatch(&mut bg, n, now, slot, true);
                continue;
            }
        }
        if queue.is_empty() {
            // Only background work, its instance busy: wait for it or for a request.
            tokio::select! {
                m = rx.recv(), if open => match m {
                    Some(e) => push(e, &mut queue, &mut bg),
                    None => open = false,
                },
                s = background.clone().acquire_owned(), if !bg.is_empty() => drop(s),
                // Both emptied by pruning and no more senders: the top of the loop ends.
                else => {}
            }
            continue;
        }
        // An idle instance for the online requests; requests keep arriving meanwhile, and the
        // background instance may come free.
        let permit = tokio::select! {
            biased;
            p = instances.online.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            m = rx.recv(), if open => {
                match m {
                    Some(e) => push(e, &mut queue, &mut bg),
                    None => open = false,
                }
                continue;
            }
            s = background.clone().acquire_owned(), if !bg.is_empty() => {
                drop(s);
                continue;
            }
        };
        loop {
            drain(&mut rx, &mut queue, &mut bg);
            let now = clock();
            prune(&mut queue, now, &pending);
            view.clear();
            view.extend(queue.iter().map(|e| Queued {
                rows: e.rows,
                enqueued: e.enqueued,
                eager: e.eager,
            }));
            match policy.decide(&view, now + TIMER_SLACK) {
                Decision::Idle => break,
                Decision::Wait(d) => {
                    tokio::select! {
                        m = rx.recv(), if open => match m {
                            Some(e) => push(e, &mut queue, &mut bg),
                            None => open = false,
                        },
                        _ = tokio::time::sleep(d) => {}
                    }
                }
                Decision::Dispatch { n } => {
                    send.dispatch(&mut queue, n, now, permit, false);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: usize, delay_ms: u64, preferred: &[usize]) -> Policy {
        let mut p = preferred.to_vec();
        p.sort_unstable_by(|a, b| b.cmp(a));
        Policy {
            enabled: true,
            max_batch_size: max,
            max_queue_delay: Duration::from_millis(delay_ms),
            preferred: p,
        }
    }

    fn q(t0: Instant, rows: &[(usize, u64)]) -> Vec<Queued> {
        rows.iter()
            .map(|&(rows, ms)| Queued {
                rows,
                enqueued: t0 + Duration::from_millis(ms),
                eager: false,
            })
            .collect()
    }

    #[test]
    fn empty_queue_is_idle() {
        let t0 = Instant::now();
        assert_eq!(policy(8, 2, &[]).decide(&[], t0), Decision::Idle);
    }

    #[test]
    fn waits_out_the_delay_for_the_oldest_then_sends_all() {
        let t0 = Instant::now();
        let p = policy(8, 2, &[]);
        let queue = q(t0, &[(1, 0), (1, 1)]);
        assert_eq!(
            p.decide(&queue, t0 + Duration::from_micros(500)),
            Decision::Wait(Duration::from_micros(1500))
        );
        assert_eq!(
            p.decide(&queue, t0 + Duration::from_millis(2)),
            Decision::Dispatch { n: 2 }
        );
        assert_eq!(
            p.decide(&queue, t0 + Duration::from_millis(9)),
            Decision::Dispatch { n: 2 }
        );
    }

    #[test]
    fn zero_delay_sends_at_once() {
        let t0 = Instant::now();
        assert_eq!(
            policy(8, 0, &[]).decide(&q(t0, &[(3, 0)]), t0),
            Decision::Dispatch { n: 1 }
        );
    }

    #[test]
    fn a_full_batch_goes_without_waiting() {
        let t0 = Instant::now();
        let p = policy(4, 100, &[]);
        assert_eq!(
            p.decide(&q(t0, &[(2, 0), (2, 0)]), t0),
            Decision::Dispatch { n: 2 }
        );
        // More than fits: the prefix that fits goes now.
        assert_eq!(
            p.decide(&q(t0, &[(2, 0), (1, 0), (2, 0)]), t0),
            Decision::Dispatch { n: 2 }
        );
    }

    #[test]
    fn preferred_sizes_go_early_largest_first() {
        let t0 = Instant::now();
        let p = policy(16, 100, &[2, 4]);
        assert_eq!(
            p.decide(&q(t0, &[(1, 0), (1, 0), (2, 0), (1, 0)]), t0),
            Decision::Dispatch { n: 3 }
        );
        assert_eq!(
            p.decide(&q(t0, &[(1, 0), (1, 0)]), t0),
            Decision::Dispatch { n: 2 }
        );
        assert!(matches!(p.decide(&q(t0, &[(3, 0)]), t0), Decision::Wait(_)));
    }

    #[test]
    fn chunks_of_a_split_request_never_wait() {
        let t0 = Instant::now();
        let p = policy(4, 100, &[]);
        let mut queue = q(t0, &[(2, 0)]);
        queue[0].eager = true;
        assert_eq!(p.decide(&queue, t0), Decision::Dispatch { n: 1 });
    }

    #[test]
    fn disabled_sends_one_request_at_a_time() {
        let t0 = Instant::now();
        let mut p = policy(16, 100, &[]);
        p.enabled = false;
        assert_eq!(
            p.decide(&q(t0, &[(1, 0), (1, 0)]), t0),
            Decision::Dispatch { n: 1 }
        );
    }

    #[test]
    fn split_returns_each_part_its_rows_and_outputs() {
        use ferroserve_core::TensorData;
        let (tx1, _r1) = oneshot::channel();
        let (tx2, _r2) = oneshot::channel();
        let parts = vec![
            Part {
                rows: 1,
                outputs: Arc::from(vec![]),
                reply: tx1,
            },
            Part {
                rows: 2,
                outputs: Arc::from(vec!["p".to_string()]),
                reply: tx2,
            },
        ];
        let outs = vec![
            Tensor::new("l", vec![3], TensorData::Int64(vec![0, 1, 2])),
            Tensor::new(
                "p",
                vec![3, 2],
                TensorData::Fp32(vec![0., 1., 2., 3., 4., 5.]),
            ),
        ];
        let s = split(outs, &parts).unwrap();
        assert_eq!(s[0].len(), 2);
        assert_eq!(s[0][1].data, TensorData::Fp32(vec![0., 1.]));
        assert_eq!(s[1].len(), 1);
        assert_eq!(s[1][0].shape, vec![2, 2]);
        assert_eq!(s[1][0].data, TensorData::Fp32(vec![2., 3., 4., 5.]));
    }

    fn entry(x: Vec<f32>, rows: usize, outputs: &[&str]) -> (Entry, oneshot::Receiver<Reply>) {
        let (reply, rx) = oneshot::channel();
        let width = x.len() / rows.max(1);
        let e = Entry {
            inputs: vec![
                Tensor::new(
                    "x",
                    vec![rows as i64, width as i64],
                    ferroserve_core::TensorData::Fp32(x),
                ),
                Tensor::new(
                    "k",
                    vec![rows as i64],
                    ferroserve_core::TensorData::Int64(vec![rows as i64; rows]),
                ),
            ],
            rows,
            outputs: Arc::from(outputs.iter().map(|o| o.to_string()).collect::<Vec<_>>()),
            enqueued: Instant::now(),
            deadline: None,
            eager: false,
            background: false,
            reply,
        };
        (e, rx)
    }

    #[test]
    fn background_entries_fill_a_batch_up_to_exactly_its_rows() {
        let q: VecDeque<Entry> = [3, 5, 8, 1]
            .into_iter()
            .map(|r| entry(vec![0.0; r], r, &[]).0)
            .collect();
        assert_eq!(fitting(&q, 16), 3, "3 + 5 + 8 is exactly 16");
        assert_eq!(fitting(&q, 15), 2);
        assert_eq!(fitting(&q, 17), 4);
        assert_eq!(fitting(&q, 2), 1, "the first goes even when larger");
        assert_eq!(fitting(&VecDeque::new(), 4), 0);
    }

    #[test]
    fn assemble_joins_inputs_in_order_and_counts_rows() {
        use ferroserve_core::TensorData;
        let (a, _ra) = entry(vec![1., 2.], 1, &["p"]);
        let (b, _rb) = entry(vec![3., 4., 5., 6.], 2, &["l", "p"]);
        let (c, _rc) = entry(vec![7., 8.], 1, &["l"]);
        let (batch, parts) = assemble(vec![a, b, c]).map_err(|(e, _)| e).unwrap();
        assert_eq!(batch.rows, 4);
        assert_eq!(batch.inputs.len(), 2);
        assert_eq!(batch.inputs[0].name, "x");
        assert_eq!(batch.inputs[0].shape, vec![4, 2]);
        assert_eq!(
            batch.inputs[0].data,
            TensorData::Fp32(vec![1., 2., 3., 4., 5., 6., 7., 8.])
        );
        assert_eq!(batch.inputs[1].shape, vec![4]);
        assert_eq!(batch.inputs[1].data, TensorData::Int64(vec![1, 2, 2, 1]));
        // The union of what the parts asked for, in first-asked order, once each.
        assert_eq!(batch.outputs, vec!["p".to_string(), "l".to_string()]);
        let rows: Vec<usize> = parts.iter().map(|p| p.rows).collect();
        assert_eq!(rows, vec![1, 2, 1]);
        assert_eq!(&parts[1].outputs[..], &["l".to_string(), "p".to_string()]);
        // One part asking for everything makes the batch compute everything.
        let (a, _ra) = entry(vec![1., 2.], 1, &["p"]);
        let (b, _rb) = entry(vec![3., 4.], 1, &[]);
        let (batch, parts) = assemble(vec![a, b]).map_err(|(e, _)| e).unwrap();
        assert!(batch.outputs.is_empty());
        assert_eq!(batch.rows, 2);
        assert_eq!(parts.len(), 2);
        // A single entry is the batch as it came.
        let (a, _ra) = entry(vec![1., 2., 3., 4.], 2, &[]);
        let (batch, _) = assemble(vec![a]).map_err(|(e, _)| e).unwrap();
        assert_eq!(batch.inputs[0].shape, vec![2, 2]);
        assert_eq!(batch.rows, 2);
    }

    #[test]
    fn assemble_refuses_inputs_of_different_types_and_keeps_every_part() {
        use ferroserve_core::TensorData;
        let (a, _ra) = entry(vec![1., 2.], 1, &[]);
        let (mut b, _rb) = entry(vec![3., 4.], 1, &[]);
        b.inputs[0].data = TensorData::Fp64(vec![3., 4.]);
        let (c, _rc) = entry(vec![5., 6.], 1, &[]);
        let Err((e, parts)) = assemble(vec![a, b, c]) else {
            panic!("mixed types must not assemble");
        };
        assert!(
            e.message.contains("cannot join FP32 and FP64"),
            "{}",
            e.message
        );
        assert_eq!(parts.len(), 3, "every request must still be answered");
    }

    #[test]
    fn split_hands_every_part_its_own_rows() {
        use ferroserve_core::TensorData;
        let mut replies = Vec::new();
        let parts: Vec<Part> = [(2usize, vec![]), (1, vec!["y".to_string()]), (3, vec![])]
            .into_iter()
            .map(|(rows, outs)| {
                let (reply, rx) = oneshot::channel();
                replies.push(rx);
                Part {
                    rows,
                    outputs: Arc::from(outs),
                    reply,
                }
            })
            .collect();
        let y: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let outs = vec![
            Tensor::new("y", vec![6, 2], TensorData::Fp32(y)),
            Tensor::new("z", vec![6], TensorData::Int64(vec![0, 1, 2, 3, 4, 5])),
        ];
        let s = split(outs.clone(), &parts).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0][0].shape, vec![2, 2]);
        assert_eq!(s[0][0].data, TensorData::Fp32(vec![0., 1., 2., 3.]));
        assert_eq!(s[0][1].name, "z");
        assert_eq!(s[0][1].shape, vec![2]);
        assert_eq!(s[0][1].data, TensorData::Int64(vec![0, 1]));
        assert_eq!(s[1].len(), 1);
        assert_eq!(s[1][0].name, "y");
        assert_eq!(s[1][0].data, TensorData::Fp32(vec![4., 5.]));
        assert_eq!(s[2][0].shape, vec![3, 2]);
        assert_eq!(
            s[2][0].data,
            TensorData::Fp32(vec![6., 7., 8., 9., 10., 11.])
        );
        assert_eq!(s[2][1].data, TensorData::Int64(vec![3, 4, 5]));
        // An output with another row count, or data not matching its shape, is an error.
        let mut bad = outs.clone();
        bad[1].shape = vec![5];
        let e = split(bad, &parts).unwrap_err();
        assert!(
            e.message.contains("'z'") && e.message.contains("expected 6 rows"),
            "{}",
            e.message
        );
        let mut bad = outs;
        bad[0].data = TensorData::Fp32(vec![0.; 6]);
        assert!(split(bad, &parts).is_err());
    }

    #[test]
    fn a_single_part_keeps_only_the_outputs_it_asked_for() {
        use ferroserve_core::TensorData;
        let (reply, _rx) = oneshot::channel();
        let parts = [Part {
            rows: 2,
            outputs: Arc::from(vec!["b".to_string()]),
            reply,
        }];
        let outs = vec![
            Tensor::new("a", vec![2], TensorData::Int64(vec![1, 2])),
            Tensor::new("b", vec![2], TensorData::Int64(vec![3, 4])),
        ];
        let s = split(outs, &parts).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].len(), 1);
        assert_eq!(s[0][0].name, "b");
        assert_eq!(s[0][0].data, TensorData::Int64(vec![3, 4]));
    }

    #[test]
    fn queued_requests_that_expired_or_were_abandoned_are_pruned() {
        let t0 = Instant::now();
        let pending = AtomicUsize::new(3);
        let (mut live, mut live_rx) = entry(vec![1., 2.], 1, &[]);
        live.deadline = Some(t0 + Duration::from_secs(10));
        let (mut expired, mut expired_rx) = entry(vec![3., 4.], 1, &[]);
        expired.deadline = Some(t0 + Duration::from_millis(5));
        let (gone, gone_rx) = entry(vec![5., 6.], 1, &[]);
        drop(gone_rx);
        let mut queue = VecDeque::from([live, expired, gone]);
        prune(&mut queue, t0 + Duration::from_millis(5), &pending);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0].deadline, Some(t0 + Duration::from_secs(10)));
        assert_eq!(pending.load(Ordering::Relaxed), 1);
        let e = expired_rx.try_recv().unwrap().unwrap_err();
        assert_eq!(e.kind, ErrorKind::DeadlineExceeded);
        assert!(
            live_rx.try_recv().is_err(),
            "the live request is not answered yet"
        );
    }
}
