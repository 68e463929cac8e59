//! Starting one worker process: the interpreter runs a short bootstrap (`-c`) that reads the
//! `ferroserve` module and the runner from its stdin (so the binary needs no files beside it and
//! always runs its own runner), then talks over the socket it finds at fd 3. The worker is the
//! leader of its own process group (a timeout kills the predictor's children too) and gets
//! SIGTERM if the server's supervising thread dies (`PR_SET_PDEATHSIG`), so a server that is
//! killed leaves no worker behind. Its stdout and stderr reach the server log line by line,
//! tagged with the model and the worker.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::wire;

/// The `ferroserve` module and its runner, sent to every worker.
const MODULES: [(&str, &str); 2] = [
    (
        "ferroserve",
        include_str!("../../../python/ferroserve/__init__.py"),
    ),
    (
        "ferroserve._runner",
        include_str!("../../../python/ferroserve/_runner.py"),
    ),
];

/// Installs the modules read from stdin and runs the runner on fd 3.
const BOOTSTRAP: &str = "import sys, json, types
h = json.loads(sys.stdin.buffer.read())
sys.stdin.close()
for name, src in h['modules']:
    m = types.ModuleType(name)
    m.__file__ = '<ferroserve>/' + name.replace('.', '/') + '.py'
    if '.' not in name:
        m.__path__ = []
    sys.modules[name] = m
    exec(compile(src, m.__file__, 'exec'), m.__dict__)
sys.modules['ferroserve._runner'].main(h['config'])
";

/// What a worker is started with.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The model's name, for log lines.
    pub model: String,
    /// The interpreter.
    pub python: PathBuf,
    /// The version folder: the worker's working directory and first import path.
    pub dir: PathBuf,
    /// What the runner is told (predictor, checkpoint, inputs, ...).
    pub config: Value,
    pub start_timeout: Duration,
}

/// A started worker: its process and the socket to it.
pub struct Started {
    pub child: Child,
    pub conn: UnixStream,
    /// What the runner said when it was ready (Python version, batch format).
    pub info: Value,
}

/// Lines the worker wrote to stderr lately (the reason a start failed often is there).
#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<Vec<String>>>);

impl Tail {
    fn push(&self, line: String) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == 20 {
            t.remove(0);
        }
        t.push(line);
    }

    pub fn last(&self) -> Option<String> {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().rev().find(|l| !l.trim().is_empty()).cloned()
    }
}

/// The interpreter `python` names: a virtualenv folder means its `bin/python`.
pub fn interpreter(python: &str) -> PathBuf {
    let p = Path::new(python);
    if p.is_dir() {
        let bin = p.join("bin").join("python");
        if bin.exists() {
            return bin;
        }
    }
    p.to_path_buf()
}

/// Starts a worker and waits (at most `spec.start_timeout`) until its runner says it is ready.
/// Must be called on a thread that outlives the worker: the worker is told to stop when the
/// thread that started it ends.
/// `pid_seen` is told the worker's process id once it runs, and `None` before it is reaped
/// after a failed start (so that whoever stops the worker meanwhile signals the right one).
pub fn start(
    spec: &Spec,
    worker: usize,
    tail: &Tail,
    pid_seen: &dyn Fn(Option<libc::pid_t>),
) -> Result<Started, String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socket pair: {e}"))?;
    let theirs: OwnedFd = theirs.into();
    let fd = theirs.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(&spec.python);
    cmd.arg("-u")
        .arg("-c")
        .arg(BOOTSTRAP)
        .current_dir(&spec.dir)
        .env("PYTHONUNBUFFERED", "1")
        .env("FERROSERVE_WORKER", worker.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (dup2, fcntl, setpgid, prctl, getppid, _exit) run
    // between fork and exec, on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setpgid(0, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The server died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "the Python interpreter {:?} was not found: install Python 3, or set `python` in model.toml (an interpreter or a virtualenv folder)",
            spec.python.display().to_string()
        ),
        _ => format!("starting {:?}: {e}", spec.python.display().to_string()),
    })?;
    drop(theirs);
    pid_seen(Some(child.id() as libc::pid_t));
    forward(child.stdout.take(), &spec.model, worker, false, None);
    forward(
        child.stderr.take(),
        &spec.model,
        worker,
        true,
        Some(tail.clone()),
    );
    let header = serde_json::json!({ "modules": MODULES, "config": spec.config });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // The worker reads all of it before anything else; it fails only if the worker died.
    let _ = stdin.write_all(header.to_string().as_bytes());
    drop(stdin);
    match handshake(&ours, spec.start_timeout) {
        Ok(info) => {
            let _ = ours.set_read_timeout(None);
            Ok(Started {
                child,
                conn: ours,
                info,
            })
        }
        Err(why) => {
            let pid = child.id() as libc::pid_t;
            kill_group(pid, libc::SIGKILL);
            wait_exit(pid);
            pid_seen(None);
            let status = child.wait().ok();
            // Let the stderr forwarder catch the last lines.
            std::thread::sleep(Duration::from_millis(50));
            let mut why = why;
            if why.is_empty() {
                why = match (tail.last(), status) {
                    (Some(line), _) => format!("the worker exited at start: {line}"),
                    (None, Some(s)) => format!("the worker exited at start ({s})"),
                    (None, None) => "the worker exited at start".into(),
                };
            }
            Err(why)
        }
    }
}

/// Waits for the runner's first frame. An empty error means the worker went away without
/// saying why (its stderr says).
fn handshake(conn: &UnixStream, timeout: Duration) -> Result<Value, String> {
    let deadline = Instant::now() + timeout;
    let mut r = conn;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the worker did not start within {:?} (worker_start_timeout)",
                timeout
            ));
        }
        conn.set_read_timeout(Some(left.min(Duration::from_secs(1))))
            .map_err(|e| e.to_string())?;
        match wire::read_frame(&mut r) {
            Ok((wire::READY, body)) => {
                return Ok(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            Ok((wire::START_FAILED, body)) => return Err(python_error(&body).start_message()),
            Ok((tag, _)) => return Err(format!("the worker sent frame {tag} before starting")),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return Err(String::new()),
        }
    }
}

/// An exception the runner reported.
#[derive(Debug, Clone, Default)]
pub struct PythonError {
    /// The exception's type name (`ValueError`).
    pub kind: String,
    pub message: String,
    pub traceback: String,
    /// `"input"` when the request was at fault (an adapter's parameter), else empty.
    pub blame: String,
    /// The module that could not be imported, for `ModuleNotFoundError`.
    pub missing: Option<String>,
}

impl PythonError {
    /// Why a worker could not start, with what to do.
    pub fn start_message(&self) -> String {
        match &self.missing {
            Some(m) => format!(
                "the predictor needs the Python module {m:?}, which the interpreter cannot import ({}): install it (pip install {}) into the interpreter the model uses (`python` in model.toml)",
                self.message,
                m.split('.').next().unwrap_or(m)
            ),
            None => format!("the predictor failed to start: {}: {}", self.kind, self.message),
        }
    }
}

pub fn python_error(body: &[u8]) -> PythonError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    PythonError {
        kind: s("type"),
        message: s("message"),
        traceback: s("traceback"),
        blame: s("blame"),
        missing: v.get("missing").and_then(Value::as_str).map(str::to_string),
    }
}

/// Copies a worker's output to the log, one event per line (bounded length).
fn forward(
    pipe: Option<impl Read + Send + 'static>,
    model: &str,
    worker: usize,
    stderr: bool,
    tail: Option<Tail>,
) {
    let Some(pipe) = pipe else { return };
    let model = model.to_string();
    let _ = std::thread::Builder::new()
        .name(format!(
            "fs-py-{model}-{worker}-{}",
            if stderr { "err" } else { "out" }
        ))
        .spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.by_ref().take(16 * 1024).read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                if stderr {
                    tracing::warn!(target: "ferroserve::python", model = %model, worker, "{line}");
                    if let Some(t) = &tail {
                        t.push(line);
                    }
                } else {
                    tracing::info!(target: "ferroserve::python", model = %model, worker, "{line}");
                }
            }
        });
}

/// Signals a worker's whole process group.
pub fn kill_group(pid: libc::pid_t, sig: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill has no memory effects; a group that no longer exists is ESRCH.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// Blocks until the process `pid` (our child) has exited, leaving it unreaped (so its pid, and
/// its process group's, cannot be reused while we still signal them).
pub fn wait_exit(pid: libc::pid_t) {
    loop {
        // SAFETY: waitid writes only into the zeroed siginfo we pass.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}
