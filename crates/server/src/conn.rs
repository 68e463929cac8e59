//! Serving connections, for both fronts (HTTP and gRPC), with the limits a server open to
//! untrusted clients needs: a cap on open connections, a header-read timeout (the first request
//! head, and each later one once its first byte arrives, must be complete in time; a connection
//! that sends nothing is closed after the same time), an idle timeout (no request in flight, no
//! byte received), a body-read timeout (the whole body within a time of its head), a stalled
//! writer timeout (a client that stops reading its answers), a global cap on request-body bytes
//! buffered in flight (503 past it), and graceful shutdown with a drain deadline. Each limit
//! that fires logs a warning (at most one line per limit and front every ten seconds, with the
//! count) and counts in `/metrics`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::labels::label_enum;

label_enum! {
    /// Which front a connection belongs to (a metric label).
    pub enum Front {
        Http => "http",
        Grpc => "grpc",
    }
}

label_enum! {
    /// Why a connection was closed or a request body refused by a limit.
    pub enum Limit {
        /// The request head did not arrive within the header-read timeout.
        Header => "header_timeout",
        /// No request in flight and nothing received for the idle timeout.
        Idle => "idle_timeout",
        /// The request body did not arrive within the body-read timeout.
        Body => "body_timeout",
        /// The client stopped reading its answer for the idle timeout.
        Write => "write_stalled",
        /// The connection cap was reached with every connection busy: the new one was refused.
        Connections => "max_connections",
        /// The connection cap was reached: the connection idle the longest (no request in flight,
        /// or a head not yet complete) was closed to make room for the new one.
        Evicted => "evicted",
        /// The global cap on buffered request-body bytes was reached: the request was refused.
        Buffered => "max_buffered_bytes",
        /// The drain deadline passed at shutdown: the connection was closed.
        Drain => "drain_timeout",
    }
}

impl Limit {
    /// The flag that sets this limit (named in warnings and errors).
    pub fn flag(self) -> &'static str {
        match self {
            Limit::Header => "--header-read-timeout",
            Limit::Idle | Limit::Write => "--idle-timeout",
            Limit::Body => "--body-read-timeout",
            Limit::Connections | Limit::Evicted => "--max-connections",
            Limit::Buffered => "--max-buffered-bytes",
            Limit::Drain => "--drain-timeout",
        }
    }
}

/// Limits on connections (see the module documentation).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    /// Open connections per front; past it new connections are refused (HTTP: a 503 answer).
    pub max_connections: usize,
    /// Request-body bytes buffered at once, all requests of both fronts together.
    pub max_buffered_bytes: usize,
    /// How long shutdown waits for connections to finish before closing them.
    pub drain_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            max_buffered_bytes: 256 * 1024 * 1024,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Per front: 4096, or less when the process may open fewer files (three quarters of the
/// descriptor limit, split between the two fronts, so that models, logs and the other front
/// keep descriptors to work with).
pub fn default_max_connections() -> usize {
    let files = open_file_limit().unwrap_or(1024);
    (files.saturating_mul(3) / 8).clamp(16, 4096) as usize
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    // rlim_t is u64 on Linux, not on every Unix.
    #[allow(clippy::unnecessary_cast)]
    let cur = lim.rlim_cur as u64;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(cur)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Counters behind the connection metrics, shared by both fronts.
#[derive(Debug, Default)]
pub struct ConnStats {
    open: [AtomicUsize; 2],
    in_flight: [AtomicUsize; 2],
    accepted: [AtomicU64; 2],
    limited: [[AtomicU64; Limit::ALL.len()]; 2],
    buffered: Arc<Budget>,
    warned: [[AtomicU64; Limit::ALL.len()]; 2],
    started: OnceInstant,
}

#[derive(Debug)]
struct OnceInstant(Instant);

impl Default for OnceInstant {
    fn default() -> Self {
        OnceInstant(Instant::now())
    }
}

impl ConnStats {
    pub fn open(&self, front: Front) -> usize {
        self.open[front.index()].load(Ordering::Relaxed)
    }

    /// Requests read and not yet answered (HTTP/2: calls, streams included).
    pub fn in_flight(&self, front: Front) -> usize {
        self.in_flight[front.index()].load(Ordering::Relaxed)
    }

    pub fn limited(&self, front: Front, limit: Limit) -> u64 {
        self.limited[front.index()][limit.index()].load(Ordering::Relaxed)
    }

    /// Request-body bytes buffered right now.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered.used.load(Ordering::Relaxed)
    }

    /// Counts a limit that fired and logs it, at most once per ten seconds per limit and front.
    fn fired(&self, front: Front, limit: Limit) {
        let n = self.limited[front.index()][limit.index()].fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.started.0.elapsed().as_millis() as u64 + 1;
        let last = &self.warned[front.index()][limit.index()];
        let prev = last.load(Ordering::Relaxed);
        if (prev == 0 || now.saturating_sub(prev) >= 10_000)
            && last
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                front = front.as_str(),
                limit = limit.as_str(),
                total = n,
                flag = limit.flag(),
                "{}",
                match limit {
                    Limit::Header => "closed a connection whose request head did not arrive in time",
                    Limit::Idle => "closed an idle connection",
                    Limit::Body => "refused a request whose body did not arrive in time",
                    Limit::Write => "closed a connection whose client stopped reading its answers",
                    Limit::Connections =>
                        "refused a connection: the connection cap is reached and every connection is busy",
                    Limit::Evicted =>
                        "closed the connection idle the longest: the connection cap is reached",
                    Limit::Buffered =>
                        "refused a request: the request bodies in flight hold the most memory allowed",
                    Limit::Drain => "closed a connection still open at the drain deadline",
                }
            );
        }
    }
}

/// Renders the connection metrics in the Prometheus text format.
pub fn render(out: &mut String, stats: &ConnStats) {
    use crate::metrics::{header, sample};
    let front = |f: Front| format!("front=\"{}\"", f.as_str());
    let name = "ferroserve_connections_open";
    header(out, name, "gauge", "Connections open now, by front.");
    for f in Front::ALL {
        sample(out, name, &front(f), stats.open(f));
    }
    let name = "ferroserve_requests_in_flight";
    header(
        out,
        name,
        "gauge",
        "Requests read and not yet answered (gRPC: calls, streams included), by front; this scrape counts itself.",
    );
    for f in Front::ALL {
        sample(out, name, &front(f), stats.in_flight(f));
    }
    let name = "ferroserve_connections_total";
    header(out, name, "counter", "Connections accepted, by front.");
    for f in Front::ALL {
        let accepted = stats.accepted[f.index()].load(Ordering::Relaxed);
        sample(out, name, &front(f), accepted);
    }
    let name = "ferroserve_connection_limits_total";
    header(
        out,
        name,
        "counter",
        "Connections closed or refused, and requests refused, by a connection limit.",
    );
    for f in Front::ALL {
        for l in Limit::ALL {
            let labels = format!("{},limit=\"{}\"", front(f), l.as_str());
            sample(out, name, &labels, stats.limited(f, l));
        }
    }
    let name = "ferroserve_request_body_buffered_bytes";
    header(
        out,
        name,
        "gauge",
        "Request-body bytes held in memory now, all requests together.",
    );
    sample(out, name, "", stats.buffered_bytes());
}

/// Why reading a request body stopped: found by [`fault_of`] in a body error's source chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyFault {
    pub limit: Limit,
    pub after: Duration,
}

impl std::fmt::Display for BodyFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.limit {
            Limit::Body => write!(
                f,
                "the request body did not arrive within {} s of its headers (--body-read-timeout)",
                self.after.as_secs_f64()
            ),
            _ => write!(
                f,
                "the server is holding as many request bodies in memory as it allows (--max-buffered-bytes); retry later"
            ),
        }
    }
}

impl std::error::Error for BodyFault {}

/// The [`BodyFault`] somewhere in `e`'s source chain, if any.
pub fn fault_of(e: &(dyn std::error::Error + 'static)) -> Option<BodyFault> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(f) = err.downcast_ref::<BodyFault>() {
            return Some(*f);
        }
        cur = err.source();
    }
    None
}

/// Bytes of request bodies held now, against the cap.
#[derive(Debug, Default)]
struct Budget {
    used: AtomicUsize,
}

/// One request's share of the budget, given back when the request is answered (or dropped).
struct Ticket {
    budget: Arc<Budget>,
    max: usize,
    held: AtomicUsize,
}

impl Ticket {
    fn take(&self, n: usize) -> bool {
        let before = self.budget.used.fetch_add(n, Ordering::Relaxed);
        if before + n > self.max {
            self.budget.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        self.held.fetch_add(n, Ordering::Relaxed);
        true
    }
}

impl Ticket {
    /// Holds exactly `n` bytes: takes more, or gives back the difference.
    fn hold(&self, n: usize) -> bool {
        let held = self.held.load(Ordering::Relaxed);
        if n > held {
            self.take(n - held)
        } else {
            self.budget.used.fetch_sub(held - n, Ordering::Relaxed);
            self.held.store(n, Ordering::Relaxed);
            true
        }
    }
}

/// Where a gRPC request body is in its length-prefixed messages (1 byte flag, 4 bytes length,
/// then the message).
#[derive(Debug, Default)]
struct GrpcFrames {
    /// A stream of messages (not one unary request).
    streaming: bool,
    prefix: [u8; 5],
    prefix_have: usize,
    body_left: u64,
    /// Bytes of the message being received (prefix included); 0 between messages.
    message_bytes: usize,
}

impl GrpcFrames {
    fn in_message(&self) -> bool {
        self.prefix_have > 0 || self.body_left > 0
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = if self.body_left == 0 {
                let take = (5 - self.prefix_have).min(data.len());
                self.prefix[self.prefix_have..self.prefix_have + take]
                    .copy_from_slice(&data[..take]);
                self.prefix_have += take;
                if self.prefix_have == 5 {
                    let len = [
                        self.prefix[1],
                        self.prefix[2],
                        self.prefix[3],
                        self.prefix[4],
                    ];
                    self.body_left = u32::from_be_bytes(len) as u64;
                }
                take
            } else {
                let take = (self.body_left as usize).min(data.len());
                self.body_left -= take as u64;
                take
            };
            self.message_bytes += take;
            data = &data[take..];
            if self.prefix_have == 5 && self.body_left == 0 {
                self.prefix_have = 0;
                self.message_bytes = 0;
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let held = *self.held.get_mut();
        if held > 0 {
            self.budget.used.fetch_sub(held, Ordering::Relaxed);
        }
    }
}

const NONE: u64 = u64::MAX;

/// What a connection is doing, as the watchdog sees it (times in ms since it opened).
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// A request has been served on this connection.
    served: AtomicBool,
    /// The connection began with the HTTP/2 preface.
    h2: AtomicBool,
    /// When the last request was answered (or the connection opened).
    last_end: AtomicU64,
    /// When the first byte arrived while no request was in flight (a head being read).
    head_since: AtomicU64,
    /// When a write first could not proceed, while it still cannot.
    write_blocked: AtomicU64,
    /// The first read has been looked at for the HTTP/2 preface.
    sniffed: AtomicBool,
    /// Chosen to be closed to make room under the connection cap.
    evicting: AtomicBool,
    evict: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            last_end: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            write_blocked: AtomicU64::new(NONE),
            sniffed: AtomicBool::new(false),
            evicting: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
        }
    }

    /// How long since this connection last did something useful, if it may be evicted: no
    /// request in flight (a head still arriving counts as none), not already being evicted.
    fn idle_for(&self) -> Option<u64> {
        if self.in_flight.load(Ordering::Relaxed) > 0 || self.evicting.load(Ordering::Relaxed) {
            return None;
        }
        let head = self.head_since.load(Ordering::Relaxed);
        let since = if head != NONE {
            head
        } else {
            self.last_end.load(Ordering::Relaxed)
        };
        Some(self.now().saturating_sub(since))
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn read(&self, data: &[u8]) {
        if !self.sniffed.load(Ordering::Relaxed) {
            self.sniffed.store(true, Ordering::Relaxed);
            if data.starts_with(b"PRI * HTTP/2") {
                self.h2.store(true, Ordering::Relaxed);
            }
        }
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NONE
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
    }

    fn ended(&self) {
        self.last_end.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The limit this connection has passed, if any.
    fn expired(&self, limits: &ConnLimits) -> Option<Limit> {
        let now = self.now();
        let passed = |since: u64, d: Duration| since != NONE && now >= since + d.as_millis() as u64;
        if passed(
            self.write_blocked.load(Ordering::Relaxed),
            limits.idle_timeout,
        ) {
            return Some(Limit::Write);
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last_end = self.last_end.load(Ordering::Relaxed);
        if self.h2.load(Ordering::Relaxed) {
            // HTTP/2 clients ping and settle windows while idle: only the absence of requests
            // counts.
            return passed(last_end, limits.idle_timeout).then_some(Limit::Idle);
        }
        let head_since = self.head_since.load(Ordering::Relaxed);
        if head_since != NONE {
            return passed(head_since, limits.header_read_timeout).then_some(Limit::Header);
        }
        if !self.served.load(Ordering::Relaxed) {
            // Connected and silent: the first request is late.
            return passed(0, limits.header_read_timeout).then_some(Limit::Header);
        }
        passed(last_end, limits.idle_timeout).then_some(Limit::Idle)
    }
}

/// The socket, watched: reads and stalled writes are noted in the connection's [`Activity`].
struct Watched<S> {
    io: S,
    act: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let got = &buf.filled()[before..];
            if !got.is_empty() {
                this.act.read(got);
            }
        }
        r
    }
}

impl<S> Watched<S> {
    fn note_write<T>(&self, r: &Poll<io::Result<T>>) {
        match r {
            Poll::Pending => {
                if self.act.write_blocked.load(Ordering::Relaxed) == NONE {
                    self.act
                        .write_blocked
                        .store(self.act.now(), Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {
                if self.act.write_blocked.load(Ordering::Relaxed) != NONE {
                    self.act.write_blocked.store(NONE, Ordering::Relaxed);
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.note_write(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.note_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Held from a request's head until its answer's body is finished or dropped.
struct InFlight {
    act: Arc<Activity>,
    cfg: Arc<FrontConfig>,
    _ticket: Arc<Ticket>,
}

impl InFlight {
    fn new(act: Arc<Activity>, cfg: Arc<FrontConfig>, ticket: Arc<Ticket>) -> Self {
        act.started();
        cfg.stats.in_flight[cfg.front.index()].fetch_add(1, Ordering::Relaxed);
        InFlight {
            act,
            cfg,
            _ticket: ticket,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.act.ended();
        self.cfg.stats.in_flight[self.cfg.front.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body under the body-read timeout and the buffered-bytes cap.
///
/// Over HTTP the whole body is timed from the request's head and its bytes are held until the
/// answer. Over gRPC the body is a series of length-prefixed messages: only the message being
/// received holds budget; a unary call's body is timed from its head, a stream's each message
/// from its first byte (a stream may rest between messages as long as it likes).
struct Metered {
    inner: Incoming,
    ticket: Arc<Ticket>,
    /// When the body (or the message being received) must be complete; `None`: not timed now.
    deadline_at: Option<tokio::time::Instant>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// gRPC message framing, when this is a gRPC request body.
    grpc: Option<GrpcFrames>,
    timeout: Duration,
    front: Front,
    stats: Arc<ConnStats>,
    failed: bool,
}

impl Metered {
    fn fail(&mut self, limit: Limit) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.failed = true;
        self.stats.fired(self.front, limit);
        let fault = BodyFault {
            limit,
            after: self.timeout,
        };
        let err: BoxError = match self.front {
            // tonic finds a Status in a body error's source chain and answers it.
            Front::Grpc => Box::new(grpc_status(fault)),
            Front::Http => Box::new(fault),
        };
        Poll::Ready(Some(Err(err)))
    }
}

/// The gRPC answer to a body fault, with the fault as its source.
fn grpc_status(fault: BodyFault) -> tonic::Status {
    let code = match fault.limit {
        Limit::Body => tonic::Code::DeadlineExceeded,
        _ => tonic::Code::Unavailable,
    };
    let mut s = tonic::Status::new(code, fault.to_string());
    s.set_source(Arc::new(fault));
    s
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let ok = match &mut this.grpc {
                        None => this.ticket.take(data.len()),
                        Some(g) => {
                            let was_in = g.in_message();
                            g.feed(data);
                            if g.streaming && g.in_message() != was_in {
                                this.deadline_at = g
                                    .in_message()
                                    .then(|| tokio::time::Instant::now() + this.timeout);
                                this.deadline = None;
                            }
                            this.ticket.hold(g.message_bytes)
                        }
                    };
                    if !ok {
                        return this.fail(Limit::Buffered);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(at) = this.deadline_at else {
                    return Poll::Pending;
                };
                let sleep = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                ready!(sleep.as_mut().poll(cx));
                this.fail(Limit::Body)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body, holding its request's [`InFlight`] until it is sent or dropped.
struct Answer {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What serving a front needs besides its routes.
#[derive(Clone)]
pub struct FrontConfig {
    pub front: Front,
    pub limits: ConnLimits,
    pub stats: Arc<ConnStats>,
    /// HTTP/2 streams a client may open at once on one connection.
    pub max_concurrent_streams: Option<u32>,
    /// TLS, when on (`--tls-cert`).
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// The per-connection service: notes each request, meters its body, calls the routes.
#[derive(Clone)]
struct Service {
    router: Router,
    act: Arc<Activity>,
    cfg: Arc<FrontConfig>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let cfg = &self.cfg;
        let ticket = Arc::new(Ticket {
            budget: cfg.stats.buffered.clone(),
            max: cfg.limits.max_buffered_bytes,
            held: AtomicUsize::new(0),
        });
        let in_flight = InFlight::new(self.act.clone(), cfg.clone(), ticket.clone());
        // A body declared larger than what is left of the budget is refused before it is read.
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if cfg.front == Front::Http
            && declared.is_some_and(|n| {
                n.saturating_add(cfg.stats.buffered_bytes()) > cfg.limits.max_buffered_bytes
            })
        {
            cfg.stats.fired(cfg.front, Limit::Buffered);
            let fault = BodyFault {
                limit: Limit::Buffered,
                after: Duration::ZERO,
            };
            let resp = buffered_refusal(&fault).map(|b| {
                Body::new(Answer {
                    inner: b,
                    _in_flight: in_flight,
                })
            });
            return Box::pin(async move { Ok(resp) });
        }
        let (parts, body) = req.into_parts();
        let grpc = (cfg.front == Front::Grpc).then(|| GrpcFrames {
            streaming: parts.uri.path().ends_with("StreamInfer"),
            ..GrpcFrames::default()
        });
        let timed_from_head = !grpc.as_ref().is_some_and(|g| g.streaming);
        let body = Metered {
            inner: body,
            ticket,
            deadline_at: timed_from_head
                .then(|| tokio::time::Instant::now() + cfg.limits.body_read_timeout),
            deadline: None,
            grpc,
            timeout: cfg.limits.body_read_timeout,
            front: cfg.front,
            stats: cfg.stats.clone(),
            failed: false,
        };
        let req = Request::from_parts(parts, Body::new(body));
        let fut = self.router.clone().oneshot(req);
        Box::pin(async move {
            let resp = match fut.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(resp.map(|b| {
                Body::new(Answer {
                    inner: b,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

fn buffered_refusal(fault: &BodyFault) -> Response<Body> {
    use axum::response::IntoResponse;
    crate::error::ApiError(ferroserve_core::InferError::new(
        ferroserve_core::ErrorKind::Unavailable,
        fault.to_string(),
    ))
    .into_response()
}

/// How often each connection's watchdog looks at it.
fn tick(limits: &ConnLimits) -> Duration {
    let shortest = limits
        .header_read_timeout
        .min(limits.idle_timeout)
        .min(limits.body_read_timeout);
    (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to finish (HTTP/1: after the request in flight; HTTP/2: GOAWAY), waits for them
/// up to the drain deadline, closes those still open, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: FrontConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cfg = Arc::new(cfg);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut live: Vec<Arc<Activity>> = Vec::new();
    let mut refusing = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            Some(_) = refusing.join_next(), if !refusing.is_empty() => {}
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                let max = cfg.limits.max_connections;
                if conns.len() >= max {
                    // Room is made by closing the connection idle the longest (a slow or silent
                    // client loses its place to a new one); only when every connection is busy
                    // (or too many are already closing) is the new one refused.
                    live.retain(|a| Arc::strong_count(a) > 1);
                    let victim = (conns.len() < max + 64)
                        .then(|| live.iter().filter_map(|a| Some((a.idle_for()?, a))).max_by_key(|(d, _)| *d))
                        .flatten();
                    match victim {
                        Some((_, a)) => {
                            cfg.stats.fired(cfg.front, Limit::Evicted);
                            a.evicting.store(true, Ordering::Relaxed);
                            a.evict.notify_one();
                        }
                        None => {
                            cfg.stats.fired(cfg.front, Limit::Connections);
                            // A few refusals at a time get an answer; past that the socket
                            // just closes.
                            // (Not over TLS: a plain answer would not be understood.)
                            if cfg.front == Front::Http && cfg.tls.is_none() && refusing.len() < 64 {
                                refusing.spawn(refuse(tcp, max));
                            }
                            continue;
                        }
                    }
                }
                let _ = tcp.set_nodelay(true);
                cfg.stats.accepted[cfg.front.index()].fetch_add(1, Ordering::Relaxed);
                let act = Arc::new(Activity::new());
                if live.len() >= 2 * conns.len() + 64 {
                    live.retain(|a| Arc::strong_count(a) > 1);
                }
                live.push(act.clone());
                conns.spawn(connection(tcp, act, router.clone(), cfg.clone(), drain_rx.clone()));
            }
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    refusing.abort_all();
    if !conns.is_empty() {
        let deadline = tokio::time::sleep(cfg.limits.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = conns.join_next() => if done.is_none() { break },
                _ = &mut deadline => {
                    let n = conns.len();
                    for _ in 0..n {
                        cfg.stats.fired(cfg.front, Limit::Drain);
                    }
                    tracing::warn!(front = cfg.front.as_str(), open = n, "the drain deadline passed (--drain-timeout): closing the connections still open");
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }
    Ok(())
}

/// An accept error: the connection it concerned is gone; when the process is out of
/// descriptors, pausing briefly keeps the loop from spinning.
async fn accept_failed(e: io::Error) {
    let out_of_files =
        matches!(e.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE);
    if out_of_files {
        tracing::warn!(error = %e, "cannot accept a connection: out of file descriptors (raise the limit, or lower --max-connections)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    } else {
        tracing::debug!(error = %e, "accept failed");
    }
}

/// Answers a connection over the cap with a 503 (after reading what the client sent, briefly,
/// so that closing does not reset the answer away).
async fn refuse(tcp: TcpStream, cap: usize) {
    let body = format!(
        "{{\"error\":\"the server has {cap} connections open, its limit (--max-connections); retry later\"}}"
    );
    answer_and_close(tcp, "503 Service Unavailable", "retry-after: 1\r\n", &body).await;
}

/// Writes one plain HTTP/1.1 JSON answer and closes, after reading what the client sent,
/// briefly, so that closing does not reset the answer away.
async fn answer_and_close(mut tcp: TcpStream, status: &str, headers: &str, body: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{headers}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Answers a plain HTTP request sent to a TLS port with a 400 saying so.
async fn plain_to_tls(tcp: TcpStream) {
    let body = "{\"error\":\"this port speaks TLS: use https://\"}";
    answer_and_close(tcp, "400 Bad Request", "", body).await;
}

async fn connection(
    tcp: TcpStream,
    act: Arc<Activity>,
    router: Router,
    cfg: Arc<FrontConfig>,
    drain: watch::Receiver<bool>,
) {
    let front = cfg.front;
    let stats = cfg.stats.clone();
    stats.open[front.index()].fetch_add(1, Ordering::Relaxed);
    struct Open(Arc<ConnStats>, Front);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.open[self.1.index()].fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _open = Open(stats.clone(), front);
    match cfg.tls.clone() {
        None => serve_connection(tcp, act, router, cfg, drain).await,
        Some(tls) => {
            // The handshake has the time a request head has. A client speaking plain HTTP to
            // a TLS port is told so, in plain HTTP (a TLS hello begins with 0x16).
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            let shaken = tokio::time::timeout(cfg.limits.header_read_timeout, async {
                let mut first = [0u8; 1];
                if matches!(tcp.peek(&mut first).await, Ok(1) if first[0] != 0x16) {
                    return Err(tcp);
                }
                Ok(acceptor.accept(tcp).await)
            })
            .await;
            match shaken {
                Ok(Err(tcp)) => {
                    tls.handshake(front, false);
                    if front == Front::Http {
                        plain_to_tls(tcp).await;
                    }
                }
                Ok(Ok(Ok(stream))) => {
                    tls.handshake(front, true);
                    serve_connection(stream, act, router, cfg, drain).await
                }
                Ok(Ok(Err(e))) => {
                    tls.handshake(front, false);
                    tracing::debug!(front = front.as_str(), error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    tls.handshake(front, false);
                    stats.fired(front, Limit::Header);
                    tracing::debug!(
                        front = front.as_str(),
                        "TLS handshake timed out (--header-read-timeout)"
                    );
                }
            }
        }
    }
}

/// Serves one connection (plain or TLS) until it ends, is evicted, drained or times out.
async fn serve_connection<S>(
    io: S,
    act: Arc<Activity>,
    router: Router,
    cfg: Arc<FrontConfig>,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let front = cfg.front;
    let stats = cfg.stats.clone();
    let io = TokioIo::new(Watched {
        io,
        act: act.clone(),
    });
    let svc = Service {
        router,
        act: act.clone(),
        cfg: cfg.clone(),
    };
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // The watchdog below times heads and idleness; hyper's own header timer would also close
    // idle keep-alive connections at the header timeout.
    b.http1().timer(TokioTimer::new()).header_read_timeout(None);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.max_concurrent_streams);
    let conn = b.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut watchdog = tokio::time::interval(tick(&cfg.limits));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    // Once asked to close (idle, or draining), the connection gets one idle timeout's worth
    // of ticks to finish before it is dropped.
    let mut closing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(front = front.as_str(), error = %e, "connection ended with an error");
                }
                break;
            }
            _ = act.evict.notified() => break,
            _ = drain.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = watchdog.tick() => {
                let Some(limit) = act.expired(&cfg.limits) else { continue };
                match limit {
                    Limit::Idle if closing_since.is_none() => {
                        stats.fired(front, limit);
                        closing_since = Some(Instant::now());
                        conn.as_mut().graceful_shutdown();
                    }
                    Limit::Idle => {
                        if closing_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
                            break;
                        }
                    }
                    _ => {
                        stats.fired(front, limit);
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_refuses_past_the_cap_and_gives_back_what_it_held() {
        let budget = Arc::new(Budget::default());
        let t = Ticket {
            budget: budget.clone(),
            max: 100,
            held: AtomicUsize::new(0),
        };
        assert!(t.take(60));
        let u = Ticket {
            budget: budget.clone(),
            max: 100,
            held: AtomicUsize::new(0),
        };
        assert!(!u.take(41), "60 + 41 is over 100");
        assert!(u.take(40));
        assert_eq!(budget.used.load(Ordering::Relaxed), 100);
        drop(t);
        assert_eq!(budget.used.load(Ordering::Relaxed), 40);
        drop(u);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }

    fn limits() -> ConnLimits {
        ConnLimits {
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            ..ConnLimits::default()
        }
    }

    fn at(act: &mut Activity, ms: u64) {
        act.opened = Instant::now() - Duration::from_millis(ms);
    }

    #[test]
    fn grpc_framing_follows_messages_across_chunks() {
        let mut g = GrpcFrames::default();
        let mut msg = vec![0u8, 0, 0, 0, 3, b'a', b'b', b'c'];
        msg.extend_from_slice(&[0, 0, 0, 0, 0]); // an empty message
        msg.extend_from_slice(&[1, 0, 0, 1, 0]); // 256 bytes follow
        g.feed(&msg[..2]);
        assert!(g.in_message());
        assert_eq!(g.message_bytes, 2);
        g.feed(&msg[2..8]);
        assert!(!g.in_message(), "the first message is complete");
        assert_eq!(g.message_bytes, 0);
        g.feed(&msg[8..]);
        assert!(g.in_message());
        assert_eq!(g.message_bytes, 5);
        g.feed(&[7u8; 255]);
        assert_eq!(g.message_bytes, 260);
        g.feed(&[7u8; 1]);
        assert!(!g.in_message());
        assert_eq!(g.message_bytes, 0);
    }

    #[test]
    fn a_held_amount_moves_both_ways() {
        let budget = Arc::new(Budget::default());
        let t = Ticket {
            budget: budget.clone(),
            max: 10,
            held: AtomicUsize::new(0),
        };
        assert!(t.hold(8));
        assert!(t.hold(3));
        assert_eq!(budget.used.load(Ordering::Relaxed), 3);
        assert!(!t.hold(11));
        assert_eq!(budget.used.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_silent_connection_passes_the_header_timeout() {
        let mut a = Activity::new();
        assert_eq!(a.expired(&limits()), None);
        at(&mut a, 150);
        assert_eq!(a.expired(&limits()), Some(Limit::Header));
    }

    #[test]
    fn a_head_is_timed_from_its_first_byte_and_idleness_from_the_last_answer() {
        let mut a = Activity::new();
        a.started();
        at(&mut a, 1000);
        assert_eq!(
            a.expired(&limits()),
            None,
            "a request in flight is not timed"
        );
        a.ended();
        assert_eq!(a.expired(&limits()), None);
        at(&mut a, 1350);
        assert_eq!(a.expired(&limits()), Some(Limit::Idle));
        at(&mut a, 1000);
        a.last_end.store(1000, Ordering::Relaxed);
        a.read(b"GET / HT");
        at(&mut a, 1050);
        assert_eq!(a.expired(&limits()), None);
        at(&mut a, 1120);
        assert_eq!(a.expired(&limits()), Some(Limit::Header));
    }

    #[test]
    fn http2_connections_are_timed_by_requests_only() {
        let mut a = Activity::new();
        a.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        at(&mut a, 200);
        assert_eq!(a.expired(&limits()), None, "a ping is not a slow head");
        at(&mut a, 310);
        assert_eq!(a.expired(&limits()), Some(Limit::Idle));
    }

    #[test]
    fn a_stalled_write_is_timed_even_with_a_request_in_flight() {
        let mut a = Activity::new();
        a.started();
        a.write_blocked.store(0, Ordering::Relaxed);
        at(&mut a, 310);
        assert_eq!(a.expired(&limits()), Some(Limit::Write));
    }

    #[test]
    fn faults_are_found_through_wrappers() {
        let f = BodyFault {
            limit: Limit::Body,
            after: Duration::from_secs(3),
        };
        let wrapped = axum::Error::new(Box::new(f) as BoxError);
        assert_eq!(fault_of(&wrapped), Some(f));
        let s = grpc_status(f);
        assert_eq!(s.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(fault_of(&s), Some(f));
        assert!(f.to_string().contains("--body-read-timeout"));
        assert_eq!(fault_of(&io::Error::other("x")), None);
    }
}
