//! The `ferroserve` binary: `ferroserve serve` runs the HTTP and gRPC servers side by side over
//! a model repository (by default the bundled `examples/models`) or a single model file
//! (`--model`, `MODEL_FILE`; a pickle is converted on start and cached, see [`pickles`]);
//! `ferroserve import` turns a pickle, booster file or ONNX graph into a verified repository
//! entry; `ferroserve batch` sends a CSV or JSON Lines file to any v2 server and writes the
//! answers in order ([`batch`]).

/// mimalloc, not the system allocator: requests allocate on the async runtime's threads and
/// free on others (the batcher, the instance threads, the prediction log's writers), which
/// glibc's malloc serves with locked arenas; mimalloc frees across threads without a lock.
/// Built without transparent huge pages (feature `no_thp`): with them, each arena's first
/// touch zeroes 2 MiB at once, which made a thousand small models' start-up spend a fifth of
/// its time in the kernel's page clearing and held 30 MB more (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod batch;
mod config_file;
mod import;
mod pickles;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use ferroserve_runtime::{ControlMode, HandleConfig, Registry, RegistryConfig, Runtime};
use ferroserve_server::conn::ConnLimits;
use ferroserve_server::{AppState, Limits, RequestLog};

#[derive(Parser)]
#[command(
    name = "ferroserve",
    version,
    about = "Serve XGBoost, LightGBM, scikit-learn and ONNX models over the Open Inference Protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a model repository (default: the bundled examples/models) or one model file.
    Serve(Box<ServeArgs>),
    /// Import a scikit-learn pickle/joblib file, an XGBoost/LightGBM model or an ONNX graph into
    /// a repository, verified against the original library. Pickles run code when loaded: only
    /// import files you trust.
    #[command(long_about = import::LONG_ABOUT)]
    Import(import::ImportArgs),
    /// Send a CSV or JSON Lines file to any v2 (Open Inference Protocol) server in chunks and
    /// write the answers in input order; resumable, shardable. Exit status: 0 all rows ok, 2
    /// usage or metadata error, 3 some rows failed (see the failed file). See docs/batch.md.
    Batch(Box<batch::BatchArgs>),
    /// Read the prediction log.
    #[command(subcommand)]
    Log(LogCommand),
}

#[derive(Subcommand)]
enum LogCommand {
    /// Print a model's records from the SQLite prediction log as JSON lines, oldest first, then
    /// follow new ones as they are written (Ctrl-C stops).
    Tail(TailArgs),
}

#[derive(Args)]
struct TailArgs {
    /// The model whose records to print.
    #[arg(long)]
    model: String,
    /// The server's data folder (where predictions.sqlite is).
    #[arg(long, env = "FERROSERVE_DATA_DIR", default_value = "ferroserve-data")]
    data_dir: PathBuf,
    /// How many of the newest records to print first, before following.
    #[arg(long, default_value_t = 10)]
    last: usize,
    /// Print what is there and stop instead of following.
    #[arg(long)]
    no_follow: bool,
    /// Read the model's Redis stream (`ferroserve:predictions:{model}`) at this URL instead of
    /// the SQLite log.
    #[arg(long, value_name = "redis://HOST:PORT")]
    redis: Option<String>,
}

/// `ferroserve log tail`: pages through the log with the reader the HTTP route uses, then
/// polls for new records.
fn log_tail(args: TailArgs) -> anyhow::Result<()> {
    use ferroserve_predlog::sqlite::{Query, Reader};
    use std::io::Write;
    if let Some(url) = &args.redis {
        return log_tail_redis(url, &args);
    }
    let reader = Reader::new(&args.data_dir);
    // Find the cursor `last` records before the end: walk to the end once, keeping the seqs.
    let mut q = Query {
        model: args.model.clone(),
        limit: 1000,
        ..Default::default()
    };
    let mut pending = std::collections::VecDeque::new();
    let mut newest = None;
    loop {
        let page = reader.page(&q).map_err(anyhow::Error::msg)?;
        newest = page.last.or(newest);
        for r in page.records {
            pending.push_back(r);
            if pending.len() > args.last {
                pending.pop_front();
            }
        }
        match page.next {
            Some(n) => q.cursor = Some(n),
            None => break,
        }
    }
    let mut out = std::io::stdout().lock();
    for r in &pending {
        writeln!(out, "{r}")?;
    }
    out.flush()?;
    if args.no_follow {
        return Ok(());
    }
    // Follow: what comes after the newest record seen, asked twice a second.
    let mut cursor = newest;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let page = reader
            .page(&Query {
                model: args.model.clone(),
                limit: 1000,
                cursor,
                ..Default::default()
            })
            .map_err(anyhow::Error::msg)?;
        for r in &page.records {
            writeln!(out, "{r}")?;
        }
        out.flush()?;
        cursor = page.last.or(cursor);
    }
}

/// `ferroserve log tail --redis URL`: the newest entries of the model's stream, then new ones
/// (`XREAD BLOCK`).
fn log_tail_redis(url: &str, args: &TailArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let mut reader = ferroserve_predlog::redis_sink::StreamReader::open(url, &args.model)
        .map_err(|e| anyhow::anyhow!("--redis {e}"))?;
    let mut out = std::io::stdout().lock();
    // At least one entry, for the cursor: what follows the newest (all of a stream that is
    // empty yet: `0-0`).
    let first = reader.last(args.last.max(1)).map_err(anyhow::Error::msg)?;
    let mut cursor = first
        .last()
        .map_or_else(|| "0-0".to_string(), |(id, _)| id.clone());
    for (_, r) in first.iter().skip(first.len().saturating_sub(args.last)) {
        writeln!(out, "{r}")?;
    }
    out.flush()?;
    if args.no_follow {
        return Ok(());
    }
    loop {
        let entries = reader
            .after(&cursor, Duration::from_secs(1))
            .map_err(anyhow::Error::msg)?;
        for (id, r) in entries {
            writeln!(out, "{r}")?;
            cursor = id;
        }
        out.flush()?;
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Triton's model control modes.
#[derive(Clone, Copy, ValueEnum)]
enum ControlModeArg {
    /// Load every model at start; the model set changes only by restarting.
    None,
    /// Load every model at start, then follow the repository (--repository-poll-secs).
    Poll,
    /// Load the models named by --load-model; the rest by the load API.
    Explicit,
}

#[derive(Clone, Copy, ValueEnum)]
enum RequestLogArg {
    /// No per-request lines.
    Off,
    /// A line for each answer with a 5xx status (warn) or a 4xx status (debug).
    Errors,
    /// A line for every request, at debug level.
    Debug,
    /// A line for every request, at info level.
    Info,
}

/// Everything `serve` is configured with.
#[derive(Args)]
struct ServeArgs {
    /// A TOML file of settings: each key the long name of one of these flags
    /// (`data-dir = "/srv/data"`, `prediction-log = ["sqlite"]`). The command line wins over
    /// the environment, which wins over the file.
    #[arg(long, env = "FERROSERVE_CONFIG")]
    config: Option<PathBuf>,
    /// Model repository: <dir>/<model>/model.toml plus numeric version folders. With --model
    /// too: both on the command line is an error; else the command line's wins, and a model
    /// from the environment or a config file wins over a repository from either (the container
    /// image sets FERROSERVE_REPOSITORY=/models; `-e MODEL_FILE=...` serves one file).
    #[arg(long, env = "FERROSERVE_REPOSITORY")]
    repository: Option<PathBuf>,
    /// Serve a single model file (XGBoost .json/.ubj, LightGBM .txt, ONNX .onnx), or a folder
    /// holding one (KServe's /mnt/models), instead, or a
    /// scikit-learn / XGBoost / LightGBM pickle (.pkl, .pickle, .joblib, .sav), converted and
    /// verified on start as `ferroserve import` does and cached under --data-dir. Unpickling
    /// runs code stored in the file: serve only pickles you trust (--no-pickle refuses them).
    #[arg(long, env = "MODEL_FILE")]
    model: Option<PathBuf>,
    /// The server's data folder: converted pickles are cached in its pickles/ sub-folder.
    #[arg(long, env = "FERROSERVE_DATA_DIR", default_value = "ferroserve-data")]
    data_dir: PathBuf,
    /// Keep a record of every prediction (repeatable): `sqlite`, a file under --data-dir
    /// (read back with GET /v2/models/{m}/predictions); `redis://HOST:PORT[/DB]`, one
    /// stream per model (`ferroserve:predictions:{model}`); `http(s)://...`, CloudEvents as
    /// KServe's inference logger sends them; `file:PATH`, JSON Lines, rotated.
    #[arg(long = "prediction-log", env = "FERROSERVE_PREDICTION_LOG", value_delimiter = ',', value_parser = parse_sink)]
    prediction_log: Vec<String>,
    /// What a prediction record holds, unless a model's [prediction_log] says otherwise:
    /// none, outputs, or all (inputs and outputs).
    #[arg(long, env = "FERROSERVE_PREDICTION_LOG_RECORD", default_value = "outputs", value_parser = ["none", "outputs", "all"])]
    prediction_log_record: String,
    /// The fraction of requests recorded (0 to 1), chosen by request id.
    #[arg(long, env = "FERROSERVE_PREDICTION_LOG_SAMPLE", default_value_t = 1.0, value_parser = parse_fraction)]
    prediction_log_sample: f64,
    /// Rows of each input and output a record holds (the rest are counted).
    #[arg(long, env = "FERROSERVE_PREDICTION_LOG_MAX_ROWS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    prediction_log_max_rows: u64,
    /// Days the SQLite prediction log keeps records (0: no limit by age).
    #[arg(
        long,
        env = "FERROSERVE_PREDICTION_LOG_RETENTION_DAYS",
        default_value_t = 30
    )]
    prediction_log_retention_days: u64,
    /// Most records the SQLite prediction log keeps, the oldest deleted first (0: no limit).
    #[arg(
        long,
        env = "FERROSERVE_PREDICTION_LOG_MAX_RECORDS",
        default_value_t = 10_000_000
    )]
    prediction_log_max_records: u64,
    /// Entries each Redis stream keeps, about (XADD MAXLEN ~), the oldest trimmed first.
    #[arg(long, env = "FERROSERVE_PREDICTION_LOG_REDIS_MAXLEN", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    prediction_log_redis_maxlen: u64,
    /// best-effort: a sink that is slow or down loses the records past its queue (counted),
    /// answers are never delayed. durable: each record is appended to a spool under
    /// --data-dir before its answer goes out and delivered from there, nothing lost; requests
    /// are refused (503) while the spool is full. A model's [prediction_log] mode overrides it.
    #[arg(long, env = "FERROSERVE_PREDICTION_LOG_MODE", default_value = "best-effort", value_parser = ["best-effort", "durable"])]
    prediction_log_mode: String,
    /// Most megabytes the durable mode's spool holds (records a sink has not taken yet).
    #[arg(long, env = "FERROSERVE_PREDICTION_LOG_SPOOL_MAX_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    prediction_log_spool_max_mb: u64,
    /// Megabytes a `file:` prediction log grows to before it is rotated (PATH.1, PATH.2, ...).
    #[arg(long, env = "FERROSERVE_PREDICTION_LOG_FILE_MAX_MB", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    prediction_log_file_max_mb: u64,
    /// Rotated files a `file:` prediction log keeps (0: none, the full file is deleted).
    #[arg(long, env = "FERROSERVE_PREDICTION_LOG_FILE_KEEP", default_value_t = 5)]
    prediction_log_file_keep: usize,
    /// Hours a finished batch job (POST /jobs) and its results are kept.
    #[arg(long, env = "FERROSERVE_JOBS_KEEP_HOURS", default_value_t = 24.0)]
    jobs_keep_hours: f64,
    /// Threads computing the batches of every tree and ONNX Runtime model (shared by all
    /// models, so threads do not grow with their number); 0: one per core. A model's
    /// `instances` is how many of them its batches may use at once.
    #[arg(long, env = "FERROSERVE_COMPUTE_THREADS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1024))]
    compute_threads: u64,
    /// Batch-job chunks this server runs at once, over all jobs.
    #[arg(long, env = "FERROSERVE_JOBS_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs_workers: u64,
    /// Most rows one batch job may have.
    #[arg(long, env = "FERROSERVE_JOBS_MAX_ROWS", default_value_t = 100_000_000)]
    jobs_max_rows: u64,
    /// Largest file a batch job may upload, in megabytes.
    #[arg(long, env = "FERROSERVE_JOBS_MAX_UPLOAD_MB", default_value_t = 4096)]
    jobs_max_upload_mb: u64,
    /// Share batch jobs with the other servers given the same Redis (redis://HOST:PORT[/DB]):
    /// job state and results in Redis, chunks taken from one stream by every server.
    #[arg(long, env = "FERROSERVE_JOBS_REDIS")]
    jobs_redis: Option<String>,
    /// With --jobs-redis: seconds a chunk held by a server that stopped answering waits before
    /// another server takes it over.
    #[arg(
        long,
        env = "FERROSERVE_JOBS_REDIS_VISIBILITY_SECS",
        default_value_t = 30.0
    )]
    jobs_redis_visibility_secs: f64,
    /// Turn batch jobs off (POST /jobs answers 404).
    #[arg(long, env = "FERROSERVE_NO_JOBS")]
    no_jobs: bool,
    /// Refuse pickles altogether (--model / MODEL_FILE naming one): no code from a file is run.
    #[arg(long, env = "FERROSERVE_NO_PICKLE")]
    no_pickle: bool,
    /// Python interpreter that converts a pickle given with --model.
    #[arg(long, env = "FERROSERVE_PYTHON", default_value = "python3")]
    python_interpreter: String,
    /// Name of the single model served with --model (default: the file's stem).
    #[arg(long, env = "FERROSERVE_MODEL_NAME")]
    model_name: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "FERROSERVE_HOST", default_value = "0.0.0.0")]
    host: String,
    /// HTTP port (0 picks a free port, printed at start).
    #[arg(long, env = "FERROSERVE_HTTP_PORT", default_value_t = 8000)]
    http_port: u16,
    /// More HTTP ports serving the same routes (repeatable; the environment takes a
    /// comma-separated list): e.g. 5000 in the tutorial image, so that `-p 5000:5000` works as
    /// a Flask app's image did. Each port has its own --max-connections.
    /// An empty value adds none (`FERROSERVE_EXTRA_HTTP_PORT=` turns the image's off).
    #[arg(
        long = "extra-http-port",
        env = "FERROSERVE_EXTRA_HTTP_PORT",
        value_delimiter = ',',
        value_parser = parse_extra_port
    )]
    extra_http_ports: Vec<Option<u16>>,
    /// gRPC port (0 picks a free port, printed at start).
    #[arg(long, env = "FERROSERVE_GRPC_PORT", default_value_t = 8001)]
    grpc_port: u16,
    /// Largest request body in bytes.
    #[arg(long, env = "FERROSERVE_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Streams one gRPC connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS):
    /// beyond it, a client's further calls on that connection wait for one to close.
    #[arg(long, env = "FERROSERVE_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    grpc_max_concurrent_streams: u32,
    /// Compute threads per model version.
    #[arg(long, env = "FERROSERVE_INSTANCES", default_value_t = 1)]
    instances: usize,
    /// Requests queued per model version before new ones are refused with 429.
    #[arg(long, env = "FERROSERVE_MAX_QUEUE_SIZE", default_value_t = 1024)]
    max_queue_size: usize,
    /// Report ready only when every model is ready (default: when at least one is).
    #[arg(long, env = "FERROSERVE_STRICT_READINESS")]
    strict_readiness: bool,
    /// Log filter (tracing syntax, e.g. "info" or "ferroserve=debug").
    #[arg(long, env = "FERROSERVE_LOG", default_value = "info")]
    log: String,
    /// Log format.
    #[arg(
        long,
        env = "FERROSERVE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Which model serves a route alias (from model.toml) that several models declare:
    /// PATH=MODEL, repeatable (environment: comma-separated).
    #[arg(long = "route-owner", env = "FERROSERVE_ROUTE_OWNER", value_delimiter = ',', value_parser = parse_owner)]
    route_owner: Vec<(String, String)>,
    /// API keys: a TOML file of [[keys]] (name, sha256 = the key's hex SHA-256, scopes of
    /// infer / read / manage / admin, optional models and rate such as "5/s"), read again when
    /// it changes. With keys, every route but health needs one (Authorization: Bearer KEY or
    /// X-API-Key: KEY); see docs/security.md.
    #[arg(long = "api-keys", env = "FERROSERVE_API_KEYS_FILE")]
    api_keys: Option<PathBuf>,
    /// More API keys, from the environment only: NAME:SCOPE+SCOPE:SHA256HEX, comma-separated.
    #[arg(
        long = "api-key-hashes",
        env = "FERROSERVE_API_KEYS",
        hide = true,
        hide_env_values = true
    )]
    api_key_hashes: Option<String>,
    /// Route classes that need no key even when keys are set up (health always): metrics,
    /// docs, metadata, infer. Repeatable (environment: comma-separated).
    #[arg(long = "auth-open", env = "FERROSERVE_AUTH_OPEN", value_delimiter = ',', value_parser = parse_open)]
    auth_open: Vec<ferroserve_server::auth::Class>,
    /// A model's rate limit, whoever calls: MODEL=RATE ("iris=100/s", "wine=3000/m"); past it,
    /// 429 with Retry-After. Repeatable (environment: comma-separated).
    #[arg(long = "model-rate-limit", env = "FERROSERVE_MODEL_RATE_LIMIT", value_delimiter = ',', value_parser = parse_model_rate)]
    model_rate_limit: Vec<(String, ferroserve_server::auth::Rate)>,
    /// Origins a browser page may call the API from (CORS): https://app.example.com, or * for
    /// any. Repeatable (environment: comma-separated). None: no CORS headers.
    #[arg(
        long = "cors-origin",
        env = "FERROSERVE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// With --cors-origin: the methods allowed (default GET, POST).
    #[arg(
        long = "cors-method",
        env = "FERROSERVE_CORS_METHODS",
        value_delimiter = ','
    )]
    cors_methods: Vec<String>,
    /// With --cors-origin: the request headers allowed (default content-type, authorization,
    /// x-api-key).
    #[arg(
        long = "cors-header",
        env = "FERROSERVE_CORS_HEADERS",
        value_delimiter = ','
    )]
    cors_headers: Vec<String>,
    /// TLS on both ports (HTTPS, gRPC over TLS; HTTP/2 by ALPN): the certificate chain, PEM,
    /// read again when it changes (rotation: connections accepted after use the new one).
    #[arg(long = "tls-cert", env = "FERROSERVE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// With --tls-cert: its private key, PEM (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(long = "tls-key", env = "FERROSERVE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With --tls-cert: require a client certificate signed by one of the CAs in this PEM file
    /// (mutual TLS); connections without one are refused at the handshake.
    #[arg(
        long = "tls-client-ca",
        env = "FERROSERVE_TLS_CLIENT_CA",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
    /// JSON Web Tokens accepted as Bearer tokens beside API keys: the HS256 secret, in a file
    /// (its bytes as they are, a final newline removed).
    #[arg(long = "jwt-secret-file", env = "FERROSERVE_JWT_SECRET_FILE")]
    jwt_secret_file: Option<PathBuf>,
    /// JSON Web Tokens signed with RS256 or ES256: the public keys as a JWKS file ({"keys":
    /// [...]}, chosen by `kid`), read again when it changes.
    #[arg(long = "jwt-jwks", env = "FERROSERVE_JWT_JWKS")]
    jwt_jwks: Option<PathBuf>,
    /// With JWT: the audience a token must name (`aud`); repeatable. None: `aud` not checked.
    #[arg(
        long = "jwt-audience",
        env = "FERROSERVE_JWT_AUDIENCE",
        value_delimiter = ','
    )]
    jwt_audience: Vec<String>,
    /// With JWT: the issuer a token must name (`iss`); repeatable. None: `iss` not checked.
    #[arg(
        long = "jwt-issuer",
        env = "FERROSERVE_JWT_ISSUER",
        value_delimiter = ','
    )]
    jwt_issuer: Vec<String>,
    /// With JWT: the claim holding the scopes (a space-separated string, or an array).
    #[arg(
        long = "jwt-scopes-claim",
        env = "FERROSERVE_JWT_SCOPES_CLAIM",
        default_value = "scope"
    )]
    jwt_scopes_claim: String,
    /// With JWT: the claim holding the models a token may use (an array, or a space-separated
    /// string). None: a token may use every model.
    #[arg(long = "jwt-models-claim", env = "FERROSERVE_JWT_MODELS_CLAIM")]
    jwt_models_claim: Option<String>,
    /// With JWT: clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(
        long = "jwt-leeway-secs",
        env = "FERROSERVE_JWT_LEEWAY_SECS",
        default_value_t = 30
    )]
    jwt_leeway_secs: u64,
    /// How the model set may change while serving: none, poll (follow the repository) or
    /// explicit (POST /v2/repository/models/NAME/load and /unload).
    #[arg(
        long,
        env = "FERROSERVE_MODEL_CONTROL_MODE",
        value_enum,
        default_value = "none"
    )]
    model_control_mode: ControlModeArg,
    /// Seconds between two reads of the repository in poll mode.
    #[arg(long, env = "FERROSERVE_REPOSITORY_POLL_SECS", default_value = "5", value_parser = parse_seconds)]
    repository_poll_secs: Duration,
    /// explicit mode: a model to load at start (repeatable; `*` loads every model; environment:
    /// comma-separated).
    #[arg(
        long = "load-model",
        env = "FERROSERVE_LOAD_MODEL",
        value_delimiter = ','
    )]
    load_model: Vec<String>,
    /// Follow symbolic links that lead out of the model repository (model folders, model.toml,
    /// version folders, artifacts). By default such a link makes its model or version not ready,
    /// and links inside the repository work as usual.
    #[arg(long, env = "FERROSERVE_FOLLOW_SYMLINKS")]
    follow_symlinks: bool,
    /// Which requests get a log line (method, path, status, latency).
    #[arg(
        long,
        env = "FERROSERVE_REQUEST_LOG",
        value_enum,
        default_value = "errors"
    )]
    request_log: RequestLogArg,
    /// Seconds a client has to send a request's head: from connecting (or from the first byte
    /// of a later request on the same connection) to the end of its headers.
    #[arg(long, env = "FERROSERVE_HEADER_READ_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    header_read_timeout: Duration,
    /// Seconds a connection may stay open with no request in flight and nothing received, or
    /// with its client not reading an answer.
    #[arg(long, env = "FERROSERVE_IDLE_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    idle_timeout: Duration,
    /// Seconds a client has to send a request's whole body once its headers have arrived
    /// (408 past it).
    #[arg(long, env = "FERROSERVE_BODY_READ_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    body_read_timeout: Duration,
    /// Open connections per front (HTTP, gRPC); new ones past it are refused (HTTP: 503).
    /// Default: 4096, or 3/8 of the open-file limit when that is lower.
    #[arg(long, env = "FERROSERVE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Bytes of request bodies held in memory at once, all requests together; requests past
    /// it are refused with 503 and Retry-After.
    #[arg(long, env = "FERROSERVE_MAX_BUFFERED_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_buffered_bytes: usize,
    /// Seconds shutdown (SIGTERM, Ctrl-C) waits for requests in flight before closing the
    /// connections still open and exiting.
    #[arg(long, env = "FERROSERVE_DRAIN_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    drain_timeout: Duration,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 86_400.0 => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!(
            "expected a number of seconds greater than 0 and at most 86400 (e.g. 10 or 0.5), got {s:?}"
        )),
    }
}

fn parse_owner(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((path, model)) if path.starts_with('/') && !model.is_empty() => {
            Ok((path.to_string(), model.to_string()))
        }
        _ => Err(format!(
            "expected PATH=MODEL (e.g. /predict=wine), got {s:?}"
        )),
    }
}

fn parse_open(s: &str) -> Result<ferroserve_server::auth::Class, String> {
    ferroserve_server::auth::Class::OPENABLE
        .iter()
        .find(|(n, _)| *n == s.trim())
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            format!("{s:?}: expected metrics, docs, metadata or infer (health is always open)")
        })
}

fn parse_model_rate(s: &str) -> Result<(String, ferroserve_server::auth::Rate), String> {
    let (model, rate) = s
        .split_once('=')
        .filter(|(m, _)| !m.trim().is_empty())
        .ok_or_else(|| format!("expected MODEL=RATE (e.g. iris=100/s), got {s:?}"))?;
    Ok((
        model.trim().to_string(),
        ferroserve_server::auth::Rate::parse(rate)?,
    ))
}

/// API keys and rate limits, when any is set up (None: every caller may do everything).
fn auth_of(args: &ServeArgs) -> anyhow::Result<Option<Arc<ferroserve_server::auth::Auth>>> {
    let jwt = if args.jwt_secret_file.is_some() || args.jwt_jwks.is_some() {
        Some(ferroserve_server::jwt::JwtConfig {
            secret_file: args.jwt_secret_file.clone(),
            jwks_file: args.jwt_jwks.clone(),
            audience: args.jwt_audience.clone(),
            issuer: args.jwt_issuer.clone(),
            scopes_claim: args.jwt_scopes_claim.clone(),
            models_claim: args.jwt_models_claim.clone(),
            leeway: args.jwt_leeway_secs,
        })
    } else {
        None
    };
    let keys = args.api_keys.is_some() || args.api_key_hashes.is_some() || jwt.is_some();
    if !keys {
        if !ferroserve_server::auth::is_loopback(&args.host) {
            tracing::warn!(host = %args.host, "listening beyond this machine with no API keys: anyone who can reach the ports may call every route (load and unload, jobs included); set --api-keys (docs/security.md) or --host 127.0.0.1");
        }
        if args.model_rate_limit.is_empty() {
            return Ok(None);
        }
    }
    let auth = ferroserve_server::auth::Auth::new(ferroserve_server::auth::AuthConfig {
        keys_file: args.api_keys.clone(),
        keys_env: args.api_key_hashes.clone(),
        open: args.auth_open.clone(),
        model_rates: args.model_rate_limit.clone(),
        jwt,
    })
    .map_err(anyhow::Error::msg)?;
    if keys {
        let names = auth.key_names();
        tracing::info!(keys = names.len(), jwt = auth.takes_tokens(), open = ?args.auth_open, "API keys required");
        if names.is_empty() && !auth.takes_tokens() {
            tracing::warn!(
                "API keys are required but none is configured: every route but health is refused"
            );
        }
    }
    let auth = Arc::new(auth);
    auth.watch(Duration::from_secs(1));
    Ok(Some(auth))
}

/// TLS on both fronts, when `--tls-cert` is given.
fn tls_of(args: &ServeArgs) -> anyhow::Result<Option<Arc<ferroserve_server::tls::Tls>>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let tls = ferroserve_server::tls::Tls::new(ferroserve_server::tls::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: args.tls_client_ca.clone(),
    })
    .map_err(anyhow::Error::msg)?;
    tracing::info!(client_certificates = tls.mutual(), "TLS on both ports");
    let tls = Arc::new(tls);
    tls.watch(Duration::from_secs(1));
    Ok(Some(tls))
}

fn init_logging(filter: &str, format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // ONNX Runtime reports every session option at info level; keep its warnings only unless
    // the filter asks about it (`--log ort=info`).
    if !filter.to_string().contains("ort") {
        if let Ok(d) = "ort=warn".parse() {
            filter = filter.add_directive(d);
        }
    }
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// `--model` and `--repository` on the command line together are refused; otherwise the one on
/// the command line wins, and a model from the environment or the config file wins over a
/// repository from either (the image sets `FERROSERVE_REPOSITORY`, `docker run -e MODEL_FILE`).
fn one_of_model_and_repository(
    args: &mut ServeArgs,
    m: &clap::ArgMatches,
    cmd: &mut clap::Command,
) {
    use clap::parser::ValueSource::CommandLine;
    if args.model.is_none() || args.repository.is_none() {
        return;
    }
    if m.value_source("repository") == Some(CommandLine)
        && m.value_source("model") == Some(CommandLine)
    {
        cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            "--model and --repository cannot be used together: give one",
        )
        .exit();
    }
    // The command line wins over the environment and the file; between two settings that are
    // not on it, the model does.
    if m.value_source("repository") == Some(CommandLine) {
        args.model = None;
    } else {
        args.repository = None;
    }
}

/// The bundled example repository: ./examples/models, else the one beside the sources.
fn default_repository() -> Option<PathBuf> {
    let here = Path::new("examples/models");
    if here.is_dir() {
        return Some(here.to_path_buf());
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    built.is_dir().then_some(built)
}

/// SIGHUP (a closed terminal, or `kill -HUP` expecting a reload) would end the process: it is
/// logged and ignored.
fn ignore_sighup() {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP ignored: the configuration is read at start; restart ferroserve to change it");
            }
        });
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}

/// Model files `--model DIR` looks for: what the native engine, ONNX Runtime and the pickle
/// converter read (`.bst`: KServe's examples' name for XGBoost and LightGBM models).
const MODEL_FILE_EXTENSIONS: [&str; 9] = [
    "json", "ubj", "ubjson", "bst", "txt", "lgb", "lgbm", "onnx", "model",
];

/// `--model DIR`: the one model file in a folder, as KServe's storage initializer leaves a
/// model in `/mnt/models` (a file, or a folder's contents). None or several: refused, naming
/// what was found.
fn model_in_folder(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("--model {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let known = MODEL_FILE_EXTENSIONS.contains(&ext.as_str())
            || ferroserve_runtime::repository::PICKLE_EXTENSIONS.contains(&ext.as_str());
        if !name.starts_with('.') && name != "model.toml" && known && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "--model {}: no model file in the folder (expected one of .{}, or a pickle: .{})",
            dir.display(),
            MODEL_FILE_EXTENSIONS.join(", ."),
            ferroserve_runtime::repository::PICKLE_EXTENSIONS.join(", .")
        ),
        _ => bail!(
            "--model {}: {} model files in the folder ({}); give the file, or use --repository",
            dir.display(),
            found.len(),
            found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    // Before any model starts: the pool is made with the first one.
    ferroserve_runtime::pool::set_threads(args.compute_threads as usize);
    let started = Instant::now();
    if let Some(dir) = args.model.as_ref().filter(|m| m.is_dir()) {
        let file = model_in_folder(dir)?;
        tracing::info!(file = %file.display(), "--model names a folder: serving its model file");
        args.model = Some(file);
    }
    let scan = ferroserve_runtime::ScanOptions {
        follow_symlinks: args.follow_symlinks,
    };
    let defaults = HandleConfig {
        instances: args.instances.max(1),
        max_queue_size: args.max_queue_size.max(1),
        ..HandleConfig::default()
    };
    let repo = match (&args.model, &args.repository) {
        (Some(_), _) => None,
        (None, Some(repo)) => Some(repo.clone()),
        (None, None) => {
            let repo = default_repository().context(
                "no --repository or --model given and the bundled examples/models was not found",
            )?;
            tracing::info!(repository = %repo.display(), "serving the bundled example models");
            Some(repo)
        }
    };
    let registry = match (&args.model, repo) {
        (Some(file), _) if import::is_pickle(file) => {
            if !file.is_file() {
                bail!("model file {} does not exist", file.display());
            }
            let name = args.model_name.clone().unwrap_or_else(|| {
                file.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "model".into())
            });
            let opts = pickles::PickleOptions {
                data_dir: args.data_dir.clone(),
                helper: import::Helper {
                    python: args.python_interpreter.clone(),
                    rows: 64,
                    timeout: import::HELPER_TIMEOUT,
                },
                no_pickle: args.no_pickle,
            };
            if opts.no_pickle {
                tracing::error!(file = %file.display(), "the model file is a pickle and --no-pickle refuses pickles: nothing to serve");
            } else {
                tracing::warn!(file = %file.display(), "the model file is a Python pickle: unpickling it (to convert it, the first time) runs code stored in the file. Serve only pickles you trust; --no-pickle refuses them");
            }
            // Listeners bind at once (health probes answer); the model is LOADING while it
            // converts.
            let (file, shown) = (file.clone(), name.clone());
            Registry::one_model(&shown, defaults, move || {
                pickles::serve_pickle(&file, &name, &opts, &scan)
            })
        }
        (Some(file), _) => {
            if !file.is_file() {
                bail!("model file {} does not exist", file.display());
            }
            let m = ferroserve_runtime::single_model(file, args.model_name.as_deref(), &scan);
            if let Some(Err(failure)) = m.versions.first().map(|v| v.result.as_ref().map(|_| ())) {
                // At start-up, on the operator's terminal: the full detail.
                bail!("cannot serve {}: {}", file.display(), failure.detail);
            }
            Registry::fixed(Arc::new(Runtime::start(vec![m], &defaults)))
        }
        // Listeners bind at once; the models load in the background, each serving when ready.
        (None, Some(repo)) => Registry::start(
            repo,
            RegistryConfig {
                mode: match args.model_control_mode {
                    ControlModeArg::None => ControlMode::None,
                    ControlModeArg::Poll => ControlMode::Poll,
                    ControlModeArg::Explicit => ControlMode::Explicit,
                },
                poll_every: args.repository_poll_secs,
                load_at_start: args.load_model.clone(),
                defaults,
                scan,
            },
        )
        .map_err(anyhow::Error::msg)?,
        (None, None) => unreachable!("a repository is always found or the start failed"),
    };
    let (prediction_log, predictions) = prediction_log(&args)?;
    let jobs = if args.no_jobs {
        None
    } else {
        let mut cfg = ferroserve_server::jobs::JobsConfig::new(args.data_dir.clone());
        cfg.keep = Duration::from_secs_f64(args.jobs_keep_hours.max(0.0) * 3600.0);
        cfg.workers = args.jobs_workers as usize;
        cfg.max_rows = args.jobs_max_rows;
        cfg.max_upload_bytes = args.jobs_max_upload_mb.saturating_mul(1 << 20);
        cfg.redis = args.jobs_redis.clone();
        if !(args.jobs_redis_visibility_secs.is_finite() && args.jobs_redis_visibility_secs >= 1.0)
        {
            bail!("--jobs-redis-visibility-secs must be at least 1");
        }
        cfg.visibility = Duration::from_secs_f64(args.jobs_redis_visibility_secs);
        Some(Arc::new(
            ferroserve_server::jobs::Jobs::new(cfg).map_err(|e| anyhow::anyhow!(e))?,
        ))
    };
    let state = Arc::new(AppState {
        registry,
        service: match &prediction_log {
            Some(log) => ferroserve_runtime::InferenceService::new().with_hook(log.clone()),
            None => Default::default(),
        },
        prediction_log: prediction_log.clone(),
        predictions,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            conn: ConnLimits {
                header_read_timeout: args.header_read_timeout,
                idle_timeout: args.idle_timeout,
                body_read_timeout: args.body_read_timeout,
                max_connections: args
                    .max_connections
                    .unwrap_or_else(ferroserve_server::conn::default_max_connections)
                    .max(1),
                max_buffered_bytes: args.max_buffered_bytes.max(1),
                drain_timeout: args.drain_timeout,
            },
            grpc_max_concurrent_streams: args.grpc_max_concurrent_streams,
        },
        strict_readiness: args.strict_readiness,
        request_log: match args.request_log {
            RequestLogArg::Off => RequestLog::Off,
            RequestLogArg::Errors => RequestLog::Errors,
            RequestLogArg::Debug => RequestLog::Debug,
            RequestLogArg::Info => RequestLog::Info,
        },
        route_owners: args.route_owner.clone(),
        connections: Default::default(),
        answers: Default::default(),
        views: Default::default(),
        jobs,
        auth: auth_of(&args)?,
        cors: ferroserve_server::auth::cors(
            &args.cors_origins,
            &args.cors_methods,
            &args.cors_headers,
        )
        .map_err(anyhow::Error::msg)?,
        tls: tls_of(&args)?,
        history: Default::default(),
    });
    ferroserve_server::jobs::start(&state);
    ferroserve_server::history::start(&state);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.http_port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.http_port))?;
    let grpc_listener = tokio::net::TcpListener::bind((args.host.as_str(), args.grpc_port))
        .await
        .with_context(|| format!("cannot listen on {}:{} (gRPC)", args.host, args.grpc_port))?;
    let mut extra_listeners = Vec::with_capacity(args.extra_http_ports.len());
    for &port in args.extra_http_ports.iter().flatten() {
        let l = match tokio::net::TcpListener::bind((args.host.as_str(), port)).await {
            Ok(l) => l,
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && port < 1024 {
                    " (a port below 1024 needs root, or net.ipv4.ip_unprivileged_port_start=0 as Docker sets in containers: podman run --sysctl net.ipv4.ip_unprivileged_port_start=0; or leave this port out)"
                } else {
                    ""
                };
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot listen on {}:{port} (--extra-http-port / FERROSERVE_EXTRA_HTTP_PORT){hint}",
                    args.host
                )));
            }
        };
        extra_listeners.push(l);
    }
    let addr = listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;
    tracing::info!(%addr, ready = state.is_ready(), startup_ms = started.elapsed().as_secs_f64() * 1e3, "HTTP listening");
    tracing::info!(addr = %grpc_addr, "gRPC listening");
    // The HTTP line first: scripts that read only the first line find the HTTP address.
    println!("ferroserve: HTTP listening on {addr}");
    println!("ferroserve: gRPC listening on {grpc_addr}");
    for l in &extra_listeners {
        let extra = l.local_addr()?;
        tracing::info!(addr = %extra, "HTTP also listening");
        println!("ferroserve: HTTP also listening on {extra}");
    }
    ignore_sighup();
    // One signal stops both fronts.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut extra = tokio::task::JoinSet::new();
    for l in extra_listeners {
        extra.spawn(ferroserve_server::serve(
            l,
            state.clone(),
            stopped(stop_rx.clone()),
        ));
    }
    let extra = async move {
        while let Some(served) = extra.join_next().await {
            served.map_err(std::io::Error::other)??;
        }
        Ok(())
    };
    let served = tokio::try_join!(
        ferroserve_server::serve(listener, state.clone(), stopped(stop_rx.clone())),
        ferroserve_server::grpc::serve(grpc_listener, state, stopped(stop_rx)),
        extra,
    );
    // Every answered request's record is queued by now: write them all.
    if let Some(log) = prediction_log {
        tokio::task::spawn_blocking(move || log.close(PREDICTION_LOG_FLUSH))
            .await
            .ok();
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Longest graceful shutdown waits for the prediction log's sinks to write what is queued.
const PREDICTION_LOG_FLUSH: Duration = Duration::from_secs(30);

/// The prediction log `--prediction-log` asks for, and its reader.
#[allow(clippy::type_complexity)]
fn prediction_log(
    args: &ServeArgs,
) -> anyhow::Result<(
    Option<Arc<ferroserve_predlog::PredictionLog>>,
    Option<Arc<ferroserve_predlog::sqlite::Reader>>,
)> {
    use ferroserve_predlog::sqlite;
    if args.prediction_log.is_empty() {
        return Ok((None, None));
    }
    let defaults = ferroserve_core::config::PredictionLogConfig {
        record: ferroserve_core::config::LogContent::parse(&args.prediction_log_record),
        sample: Some(args.prediction_log_sample),
        max_rows: Some(args.prediction_log_max_rows as usize),
        mode: ferroserve_core::config::LogMode::parse(&args.prediction_log_mode),
    };
    // The spool is always opened (its folder is made on the first durable record): what an
    // earlier run left there is delivered whatever the mode now.
    let spool = ferroserve_predlog::Spool::open(
        &args.data_dir.join("spool"),
        args.prediction_log_spool_max_mb << 20,
    )
    .map_err(|e| anyhow::anyhow!("--prediction-log: {e}; give --data-dir a readable folder"))?;
    let mut log = ferroserve_predlog::PredictionLog::new(defaults).with_spool(spool);
    let mut reader = None;
    let mut seen = std::collections::HashSet::new();
    for sink in &args.prediction_log {
        if !seen.insert(sink.as_str()) {
            continue;
        }
        match sink.as_str() {
            "sqlite" => {
                let retention = sqlite::Retention {
                    max_age: (args.prediction_log_retention_days > 0)
                        .then(|| Duration::from_secs(args.prediction_log_retention_days * 86_400)),
                    max_records: (args.prediction_log_max_records > 0)
                        .then_some(args.prediction_log_max_records),
                };
                let s = sqlite::SqliteSink::open(&args.data_dir, retention).map_err(|e| {
                    anyhow::anyhow!(
                        "--prediction-log sqlite: {e}; give --data-dir a writable folder"
                    )
                })?;
                log = log.with_sink("sqlite", sqlite::FILE, Box::new(s));
                reader = Some(Arc::new(sqlite::Reader::new(&args.data_dir)));
                tracing::info!(file = %args.data_dir.join(sqlite::FILE).display(), "prediction log: SQLite");
            }
            url if url.starts_with("redis://") => {
                let s = ferroserve_predlog::redis_sink::RedisSink::new(
                    url,
                    args.prediction_log_redis_maxlen,
                )
                .map_err(|e| anyhow::anyhow!("--prediction-log {e}"))?;
                let target = s.shown().to_string();
                log = log.with_sink("redis", &target, Box::new(s));
                tracing::info!("prediction log: Redis streams ferroserve:predictions:{{model}}");
            }
            url if url.starts_with("http://") || url.starts_with("https://") => {
                let s = ferroserve_predlog::cloudevents::CloudEventsSink::new(url)
                    .map_err(|e| anyhow::anyhow!("--prediction-log {e}"))?;
                let target = s.shown().to_string();
                log = log.with_sink("cloudevents", &target, Box::new(s));
                tracing::info!(url = %target, "prediction log: CloudEvents (KServe's inference logger format)");
            }
            file if file.starts_with("file:") => {
                let path = std::path::Path::new(&file["file:".len()..]);
                let s = ferroserve_predlog::file::FileSink::open(
                    path,
                    args.prediction_log_file_max_mb << 20,
                    args.prediction_log_file_keep,
                )
                .map_err(|e| anyhow::anyhow!("--prediction-log file: {e}"))?;
                let target = s.name().to_string();
                log = log.with_sink("file", &target, Box::new(s));
                tracing::info!(file = %path.display(), "prediction log: JSON Lines");
            }
            other => bail!("--prediction-log {other}: unknown sink"),
        }
    }
    Ok((Some(Arc::new(log)), reader))
}

fn parse_sink(s: &str) -> Result<String, String> {
    match s {
        "sqlite" => Ok(s.to_string()),
        _ if s.starts_with("redis://") => Ok(s.to_string()),
        _ if s.starts_with("http://") || s.starts_with("https://") => Ok(s.to_string()),
        _ if s.starts_with("file:") && s.len() > "file:".len() => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?}: expected sqlite, redis://HOST:PORT, http(s)://URL (CloudEvents) or file:PATH (JSON Lines)"
        )),
    }
}

fn parse_extra_port(s: &str) -> Result<Option<u16>, String> {
    match s.trim() {
        "" => Ok(None),
        p => p
            .parse()
            .map(Some)
            .map_err(|_| format!("{p:?}: expected a port number from 0 to 65535")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("{s:?}: expected a number from 0 to 1"))
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = Cli::command();
    if let Some(path) = config_file::named(&argv) {
        cmd = match config_file::apply(cmd, Path::new(&path)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        };
    }
    let matches = cmd.clone().get_matches_from(argv);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(mut args) => {
            if let Some(("serve", m)) = matches.subcommand() {
                one_of_model_and_repository(&mut args, m, &mut cmd);
            }
            init_logging(&args.log, args.log_format);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(serve(*args))
        }
        Command::Import(args) => {
            init_logging("warn", LogFormat::Text);
            import::run(args)
        }
        Command::Log(LogCommand::Tail(args)) => log_tail(args),
        Command::Batch(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let code = match rt.block_on(batch::run(*args)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    if e.downcast_ref::<batch::UsageError>().is_some() {
                        batch::EXIT_USAGE
                    } else {
                        1
                    }
                }
            };
            drop(rt);
            std::process::exit(code)
        }
    }
}
