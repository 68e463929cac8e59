//! One supervised worker: a thread that starts the worker, waits for it to exit and starts it
//! again (after a back-off when it keeps failing), and the calls made on it. A call takes the
//! worker's socket for its duration (one call at a time per worker), so a worker that dies or
//! hangs fails only the call it held: the caller kills a hung one, and the supervisor, which sees
//! every exit, brings the next one up.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferroserve_core::BackendError;

use crate::wire;
use crate::worker::{self, python_error, PythonError, Spec, Tail};

/// Back-off between starts of a worker that keeps failing: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(30);
/// A worker that ran this long resets the back-off.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// How long a stopped worker has to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Starting,
    Ready,
    Busy,
    /// The last start failed (why); the next is after a back-off.
    Failed(String),
    Stopped,
}

struct State {
    phase: Phase,
    /// The socket, while the worker is ready and idle.
    conn: Option<UnixStream>,
    /// The live worker's process id.
    pid: Option<libc::pid_t>,
    /// Counts worker exits: a call that started on an earlier worker does not touch this one.
    generation: u64,
    /// Why the last worker went away.
    last_exit: Option<String>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// The model's workers, for readiness.
    live: Arc<Liveness>,
}

/// How many of a model's workers are live, and why the last one went down.
#[derive(Default)]
pub struct Liveness {
    live: AtomicUsize,
    why: Mutex<String>,
}

impl Liveness {
    /// `Ok` while some worker is live, else why none is.
    pub fn health(&self) -> Result<(), String> {
        if self.live.load(Ordering::Acquire) > 0 {
            return Ok(());
        }
        let why = self.why.lock().unwrap_or_else(|e| e.into_inner());
        Err(if why.is_empty() {
            "no Python worker is running".into()
        } else {
            format!("no Python worker is running: {why}")
        })
    }

    fn up(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    fn down(&self, why: &str) {
        *self.why.lock().unwrap_or_else(|e| e.into_inner()) = why.to_string();
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    fn failed(&self, why: &str) {
        *self.why.lock().unwrap_or_else(|e| e.into_inner()) = why.to_string();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A supervised worker.
pub struct Slot {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    call_timeout: Duration,
    start_timeout: Duration,
}

/// How a call failed.
pub enum CallError {
    /// The worker could not take it (starting, failed, died or hung): 503.
    Unavailable(String),
    /// Python raised.
    Python(PythonError),
    /// The worker answered something that is not an answer.
    Protocol(String),
}

impl CallError {
    pub fn into_backend(self, what: &str) -> BackendError {
        match self {
            CallError::Unavailable(m) => BackendError::Unavailable(m),
            CallError::Protocol(m) => BackendError::Run(m),
            CallError::Python(e) if e.blame == "input" => BackendError::Input(e.message),
            CallError::Python(e) => {
                BackendError::Run(format!("{what} raised {}: {}", e.kind, e.message))
            }
        }
    }
}

impl Slot {
    /// Starts the supervisor, which starts the worker.
    pub fn start(spec: Spec, index: usize, live: Arc<Liveness>, call_timeout: Duration) -> Slot {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                phase: Phase::Starting,
                conn: None,
                pid: None,
                generation: 0,
                last_exit: None,
                stop: false,
            }),
            cv: Condvar::new(),
            live,
        });
        let start_timeout = spec.start_timeout;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fs-py-{}-{index}", spec.model))
            .spawn(move || supervise(s, spec, index))
            .expect("spawn a worker supervisor");
        Slot {
            shared,
            thread: Some(thread),
            call_timeout,
            start_timeout,
        }
    }

    /// Waits until the first start is done: `Err` with why when it failed.
    pub fn wait_started(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.start_timeout + Duration::from_secs(1);
        let mut st = self.shared.lock();
        loop {
            match &st.phase {
                Phase::Ready | Phase::Busy => return Ok(()),
                Phase::Failed(why) => return Err(why.clone()),
                Phase::Stopped => return Err("stopped".into()),
                Phase::Starting => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("the worker did not start in time".into());
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Why the worker is not live, when it is not.
    pub fn why_down(&self) -> Option<String> {
        let st = self.shared.lock();
        match &st.phase {
            Phase::Ready | Phase::Busy => None,
            Phase::Failed(w) => Some(w.clone()),
            Phase::Stopped => Some("stopped".into()),
            Phase::Starting => Some(match &st.last_exit {
                Some(e) => format!("restarting after {e}"),
                None => "starting".into(),
            }),
        }
    }

    /// Sends one request and waits for its answer: a worker starting is waited for (at most its
    /// start timeout), one that failed to start is not; a worker that does not answer within
    /// the call timeout is killed.
    pub fn call(&self, tag: u8, body: &[u8]) -> Result<Vec<u8>, CallError> {
        let (mut conn, generation) = self.take()?;
        let result = exchange(&mut conn, tag, body, self.call_timeout);
        let mut st = self.shared.lock();
        let same = st.generation == generation;
        match result {
            Ok((wire::OK, answer)) => {
                if same {
                    st.conn = Some(conn);
                    st.phase = Phase::Ready;
                }
                drop(st);
                self.shared.cv.notify_all();
                Ok(answer)
            }
            Ok((wire::ERROR, e)) => {
                if same {
                    st.conn = Some(conn);
                    st.phase = Phase::Ready;
                }
                drop(st);
                self.shared.cv.notify_all();
                Err(CallError::Python(python_error(&e)))
            }
            Ok((t, _)) => {
                self.fail(st, generation);
                Err(CallError::Protocol(format!(
                    "the Python worker answered frame {t}; it was restarted"
                )))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                self.fail(st, generation);
                Err(CallError::Unavailable(format!(
                    "the Python worker did not answer within {:?} (worker_timeout): it was killed and is restarting",
                    self.call_timeout
                )))
            }
            Err(_) => {
                // The worker died: the supervisor says how, soon.
                let deadline = Instant::now() + Duration::from_millis(500);
                while st.generation == generation && Instant::now() < deadline {
                    st = self
                        .shared
                        .cv
                        .wait_timeout(st, Duration::from_millis(50))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                let how = st.last_exit.clone().unwrap_or_else(|| "exited".into());
                if st.generation == generation {
                    self.fail(st, generation);
                }
                Err(CallError::Unavailable(format!(
                    "the Python worker {how} while running this batch; it is restarting"
                )))
            }
        }
    }

    /// Takes the socket of a ready worker, waiting while it starts or is busy.
    fn take(&self) -> Result<(UnixStream, u64), CallError> {
        let deadline = Instant::now() + self.start_timeout.max(self.call_timeout);
        let mut st = self.shared.lock();
        loop {
            match &st.phase {
                Phase::Ready => {
                    if let Some(c) = st.conn.take() {
                        st.phase = Phase::Busy;
                        return Ok((c, st.generation));
                    }
                }
                Phase::Failed(why) => {
                    return Err(CallError::Unavailable(format!(
                        "the Python worker cannot start: {why}"
                    )))
                }
                Phase::Stopped => {
                    return Err(CallError::Unavailable("the model is stopping".into()))
                }
                Phase::Starting | Phase::Busy => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::Unavailable(
                    "no Python worker became free in time".into(),
                ));
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Kills the worker of `generation` (hung or talking nonsense); the supervisor restarts it.
    fn fail(&self, mut st: MutexGuard<'_, State>, generation: u64) {
        if st.generation == generation {
            if let Some(pid) = st.pid {
                worker::kill_group(pid, libc::SIGKILL);
            }
            st.phase = Phase::Starting;
        }
        drop(st);
        self.shared.cv.notify_all();
    }

    /// Stops the worker (SIGTERM, then SIGKILL after a grace period) and its supervisor.
    pub fn stop(&mut self) {
        let pid = {
            let mut st = self.shared.lock();
            st.stop = true;
            st.conn = None;
            st.pid
        };
        self.shared.cv.notify_all();
        if let Some(pid) = pid {
            worker::kill_group(pid, libc::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            let mut st = self.shared.lock();
            while st.pid == Some(pid) && Instant::now() < deadline {
                st = self
                    .shared
                    .cv
                    .wait_timeout(st, Duration::from_millis(20))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if st.pid == Some(pid) {
                worker::kill_group(pid, libc::SIGKILL);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn exchange(
    conn: &mut UnixStream,
    tag: u8,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u8, Vec<u8>)> {
    conn.set_write_timeout(Some(timeout))?;
    conn.set_read_timeout(Some(timeout))?;
    wire::write_frame(conn, tag, body)?;
    wire::read_frame(conn)
}

/// The supervisor: start, wait for the exit, start again, until stopped.
fn supervise(shared: Arc<Shared>, spec: Spec, index: usize) {
    let tail = Tail::default();
    let mut backoff = BACKOFF_FIRST;
    loop {
        if shared.lock().stop {
            break;
        }
        let started_at = Instant::now();
        let started = worker::start(&spec, index, &tail, &|pid| {
            let mut st = shared.lock();
            st.pid = pid;
            if pid.is_some() && st.stop {
                // Stopped while this one was being started: it goes at once.
                worker::kill_group(pid.unwrap_or(0), libc::SIGKILL);
            }
        });
        let mut st = shared.lock();
        let mut w = match started {
            Ok(w) if !st.stop => w,
            Ok(mut w) => {
                let pid = w.child.id() as libc::pid_t;
                worker::kill_group(pid, libc::SIGKILL);
                worker::wait_exit(pid);
                st.pid = None;
                drop(st);
                let _ = w.child.wait();
                break;
            }
            Err(_) if st.stop => break,
            Err(why) => {
                tracing::error!(model = %spec.model, worker = index, reason = %why, retry_in = ?backoff, "Python worker could not start");
                shared.live.failed(&why);
                st.phase = Phase::Failed(why);
                drop(st);
                shared.cv.notify_all();
                if !sleep_unless_stopped(&shared, backoff) {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_LAST);
                let mut st = shared.lock();
                if st.stop {
                    break;
                }
                st.phase = Phase::Starting;
                continue;
            }
        };
        let pid = w.child.id() as libc::pid_t;
        st.conn = Some(w.conn);
        st.pid = Some(pid);
        st.phase = Phase::Ready;
        shared.live.up();
        drop(st);
        shared.cv.notify_all();
        tracing::info!(model = %spec.model, worker = index, pid, python = %w.info.get("python").and_then(|v| v.as_str()).unwrap_or("?"), "Python worker ready");
        worker::wait_exit(pid);
        // Exited, not yet reaped: its process group can still be signalled safely.
        worker::kill_group(pid, libc::SIGKILL);
        let status = w.child.wait();
        let how = match status {
            Ok(s) => describe(s),
            Err(e) => format!("was lost ({e})"),
        };
        let mut st = shared.lock();
        st.generation += 1;
        st.conn = None;
        st.pid = None;
        shared.live.down(&format!("the last one {how}"));
        let stop = st.stop;
        if stop {
            st.phase = Phase::Stopped;
        } else {
            st.phase = Phase::Starting;
            st.last_exit = Some(how.clone());
        }
        drop(st);
        shared.cv.notify_all();
        if stop {
            break;
        }
        tracing::warn!(model = %spec.model, worker = index, pid, "Python worker {how}; restarting");
        if started_at.elapsed() >= HEALTHY_RUN {
            backoff = BACKOFF_FIRST;
        } else {
            if !sleep_unless_stopped(&shared, backoff) {
                break;
            }
            backoff = (backoff * 2).min(BACKOFF_LAST);
        }
    }
    let mut st = shared.lock();
    st.phase = Phase::Stopped;
    st.pid = None;
    drop(st);
    shared.cv.notify_all();
}

/// Sleeps `d` or until stopped; false when stopped.
fn sleep_unless_stopped(shared: &Shared, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    let mut st = shared.lock();
    while !st.stop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        st = shared
            .cv
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    false
}

fn describe(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "exited".into(),
    }
}
