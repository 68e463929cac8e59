//! Per-version statistics, kept with atomics on the hot path and read by `/metrics`
//! (Prometheus) and `/v2/models/{m}/stats` (the v2 statistics extension, Triton's shape). The
//! events are named here, in one place; the server only renders them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferroserve_core::ErrorKind;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Upper bounds (rows) of the batch size histogram buckets.
pub const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// A Prometheus histogram with fixed buckets (counts per bucket, not cumulative).
pub struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    counts: [AtomicU64; N],
    overflow: AtomicU64,
    sum_bits: AtomicU64,
    count: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds: &'static [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        match self.bounds.iter().position(|&b| v <= b) {
            Some(i) => self.counts[i].fetch_add(1, Relaxed),
            None => self.overflow.fetch_add(1, Relaxed),
        };
        self.count.fetch_add(1, Relaxed);
        let mut cur = self.sum_bits.load(Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match self
                .sum_bits
                .compare_exchange_weak(cur, new, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(x) => cur = x,
            }
        }
    }

    /// `(upper bound, cumulative count)` per bucket, then the sum and the total count.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let mut acc = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&b, c)| {
                acc += c.load(Relaxed);
                (b, acc)
            })
            .collect();
        (
            buckets,
            f64::from_bits(self.sum_bits.load(Relaxed)),
            self.count.load(Relaxed),
        )
    }
}

/// A count and a total duration, as the statistics extension reports them.
#[derive(Default)]
pub struct Duration2 {
    pub count: AtomicU64,
    pub ns: AtomicU64,
}

impl Duration2 {
    pub fn add(&self, n: u64, d: Duration) {
        self.count.fetch_add(n, Relaxed);
        self.ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    pub fn get(&self) -> (u64, u64) {
        (self.count.load(Relaxed), self.ns.load(Relaxed))
    }
}

/// How a request ended, the `outcome` label of `ferroserve_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    InvalidInput,
    TooLarge,
    Overloaded,
    Timeout,
    Unavailable,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Success,
        Outcome::InvalidInput,
        Outcome::TooLarge,
        Outcome::Overloaded,
        Outcome::Timeout,
        Outcome::Unavailable,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::InvalidInput => "invalid_input",
            Outcome::TooLarge => "too_large",
            Outcome::Overloaded => "overloaded",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }

    pub fn of(kind: ErrorKind) -> Outcome {
        match kind {
            ErrorKind::InvalidInput
            | ErrorKind::Unprocessable
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden => Outcome::InvalidInput,
            ErrorKind::TooLarge => Outcome::TooLarge,
            ErrorKind::Overloaded | ErrorKind::RateLimited => Outcome::Overloaded,
            ErrorKind::DeadlineExceeded | ErrorKind::RequestTimeout => Outcome::Timeout,
            ErrorKind::Unavailable => Outcome::Unavailable,
            ErrorKind::NotFound | ErrorKind::Internal => Outcome::Error,
        }
    }

    fn index(self) -> usize {
        Outcome::ALL.iter().position(|&o| o == self).unwrap_or(0)
    }
}

/// Everything measured about one model version.
/// One snapshot of [`VersionStats::phases`]: `(count, ns)` per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    pub success: (u64, u64),
    pub fail: (u64, u64),
    pub queue: (u64, u64),
    pub compute_input: (u64, u64),
    pub compute_infer: (u64, u64),
    pub compute_output: (u64, u64),
}

pub struct VersionStats {
    /// Requests by outcome.
    pub requests: [AtomicU64; 7],
    /// Rows answered successfully (`inference_count` in the statistics extension).
    pub inference_count: AtomicU64,
    /// Batches run (`execution_count`).
    pub execution_count: AtomicU64,
    /// Rows computed in those batches.
    pub rows_computed: AtomicU64,
    /// Milliseconds since the epoch of the last successful inference.
    pub last_inference_ms: AtomicU64,
    pub success: Duration2,
    pub fail: Duration2,
    pub queue: Duration2,
    pub compute_infer: Duration2,
    /// Time instances spent computing (seconds, for `instance busy time`).
    pub busy: Duration2,
    pub latency_seconds: Histogram<16>,
    pub queue_seconds: Histogram<16>,
    pub compute_seconds: Histogram<16>,
    pub batch_rows: Histogram<12>,
    /// Per batch size (rows): batches and compute time (`batch_stats`).
    pub by_batch_size: Mutex<std::collections::BTreeMap<usize, (u64, u64)>>,
}

impl Default for VersionStats {
    fn default() -> Self {
        VersionStats {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            inference_count: AtomicU64::new(0),
            execution_count: AtomicU64::new(0),
            rows_computed: AtomicU64::new(0),
            last_inference_ms: AtomicU64::new(0),
            success: Duration2::default(),
            fail: Duration2::default(),
            queue: Duration2::default(),
            compute_infer: Duration2::default(),
            busy: Duration2::default(),
            latency_seconds: Histogram::new(&LATENCY_BUCKETS),
            queue_seconds: Histogram::new(&LATENCY_BUCKETS),
            compute_seconds: Histogram::new(&LATENCY_BUCKETS),
            batch_rows: Histogram::new(&BATCH_BUCKETS),
            by_batch_size: Mutex::new(Default::default()),
        }
    }
}

impl VersionStats {
    /// A request finished (any front), with its total latency.
    pub fn request_done(&self, outcome: Outcome, rows: usize, latency: Duration) {
        self.requests[outcome.index()].fetch_add(1, Relaxed);
        self.latency_seconds.observe(latency.as_secs_f64());
        if outcome == Outcome::Success {
            self.success.add(1, latency);
            self.inference_count.fetch_add(rows as u64, Relaxed);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            self.last_inference_ms.store(now, Relaxed);
        } else {
            self.fail.add(1, latency);
        }
    }

    /// The measured compute time of `rows` rows (average per row so far times `rows`), once at
    /// least `min_batches` batches have run.
    pub fn estimated_compute(&self, rows: usize, min_batches: u64) -> Option<Duration> {
        let (batches, ns) = self.compute_infer.get();
        let computed = self.rows_computed.load(Relaxed);
        if batches < min_batches || computed == 0 {
            return None;
        }
        Some(Duration::from_nanos(
            (ns as u128 * rows as u128 / computed as u128).min(u64::MAX as u128) as u64,
        ))
    }

    pub fn requests(&self, outcome: Outcome) -> u64 {
        self.requests[outcome.index()].load(Relaxed)
    }

    /// The statistics extension's phases, counted as Triton counts them: every request in
    /// `queue` (inline ones with no wait), and `compute_input`, `compute_infer`,
    /// `compute_output` with the same count (one per computed batch; the time is all in
    /// `compute_infer`: inputs and outputs are converted within it). Each is `(count, ns)`.
    pub fn phases(&self) -> Phases {
        let (count, ns) = self.compute_infer.get();
        Phases {
            success: self.success.get(),
            fail: self.fail.get(),
            queue: self.queue.get(),
            compute_input: (count, 0),
            compute_infer: (count, ns),
            compute_output: (count, 0),
        }
    }

    /// A request left the queue for an instance after waiting `waited`.
    pub fn dequeued(&self, waited: Duration) {
        self.queue.add(1, waited);
        self.queue_seconds.observe(waited.as_secs_f64());
    }

    /// An instance ran a batch of `rows` rows in `took`.
    pub fn batch_done(&self, rows: usize, took: Duration) {
        self.execution_count.fetch_add(1, Relaxed);
        self.rows_computed.fetch_add(rows as u64, Relaxed);
        self.compute_infer.add(1, took);
        self.busy.add(1, took);
        self.compute_seconds.observe(took.as_secs_f64());
        self.batch_rows.observe(rows as f64);
        if let Ok(mut m) = self.by_batch_size.lock() {
            let e = m.entry(rows).or_insert((0, 0));
            e.0 += 1;
            e.1 += took.as_nanos() as u64;
        }
    }
}
