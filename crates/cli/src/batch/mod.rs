//! `ferroserve batch`: sends a CSV or JSON Lines file, chunk by chunk, to any Open Inference
//! Protocol (v2) server (ferroserve, Triton, MLServer, KServe) and writes the answers in input
//! order. It uses only `GET /v2/models/{m}[/versions/{v}]` and
//! `POST /v2/models/{m}[/versions/{v}]/infer` with JSON tensors.
//!
//! A reader thread reads the input (never whole) into chunks of `--chunk-rows` rows and
//! encodes each chunk's request body ([`plan`], [`encode`], [`input`]); the chunks are sent
//! `--concurrency` at a time, each retried on its own ([`client`]); finished chunks wait in a
//! reorder buffer and are written in order ([`output`]). A chunk holds its concurrency permit
//! until it is written, so at most `--concurrency` chunks are in flight or waiting, whatever
//! the file's size. After each chunk written the [`checkpoint`] records how far the run got.
//! See docs/batch.md.

mod checkpoint;
mod client;
mod encode;
mod input;
mod output;
mod plan;
mod progress;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use reqwest::Url;

use checkpoint::{Checkpoint, Fingerprint, Options, State};
use input::{InputFormat, RawRow, Reader};
use output::{OutputFormat, Sink};
use plan::{Mapper, Metadata};

/// Exit status when every row was written to the output.
pub const EXIT_OK: i32 = 0;
/// Exit status for a usage error, an input that does not fit the model, or a model whose
/// metadata cannot be had.
pub const EXIT_USAGE: i32 = 2;
/// Exit status when the run finished but some rows are in the failed file.
pub const EXIT_ROWS_FAILED: i32 = 3;

/// An error that exits with [`EXIT_USAGE`].
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// The server's base URL (http://HOST:PORT, a path prefix allowed); the runner calls
    /// {URL}/v2/models/{MODEL}[/versions/{V}] and .../infer.
    #[arg(long, env = "FERROSERVE_BATCH_URL")]
    url: String,
    /// The model to run.
    #[arg(long, env = "FERROSERVE_BATCH_MODEL")]
    model: String,
    /// The model version (default: the server's choice).
    #[arg(long, env = "FERROSERVE_BATCH_VERSION")]
    version: Option<String>,
    /// The input: CSV with a header row, or JSON Lines (each line an array of values or an
    /// object keyed by column name).
    input: PathBuf,
    /// Where the answers go, one row per input row, in input order.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// The input's format (default: by extension, .csv or .jsonl/.ndjson).
    #[arg(long, value_enum)]
    input_format: Option<InputFormat>,
    /// The output's format (default: by extension, .csv, else JSON Lines).
    #[arg(long, value_enum)]
    output_format: Option<OutputFormat>,
    /// Rows per request.
    #[arg(long, env = "FERROSERVE_BATCH_CHUNK_ROWS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_rows: u64,
    /// Requests in flight at once (chunks in flight or waiting to be written in order).
    #[arg(long, env = "FERROSERVE_BATCH_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Retries per chunk on 429, 502, 503, 504, connection errors and timeouts.
    #[arg(long, env = "FERROSERVE_BATCH_RETRIES", default_value_t = 8)]
    retries: u32,
    /// Seconds one request may take, answer included.
    #[arg(long, env = "FERROSERVE_BATCH_TIMEOUT_SECS", default_value = "60", value_parser = crate::parse_seconds)]
    timeout_secs: Duration,
    /// The outputs to ask for, comma-separated (default: all the model has).
    #[arg(long, value_delimiter = ',')]
    outputs: Vec<String>,
    /// Where failed rows go, one JSON line each (default: OUTPUT.failed.jsonl).
    #[arg(long)]
    failed: Option<PathBuf>,
    /// The checkpoint that lets a rerun resume (default: OUTPUT.checkpoint).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Start over: ignore (and replace) the checkpoint, rewrite the output.
    #[arg(long)]
    restart: bool,
    /// No progress on stderr (the summary line stays).
    #[arg(long)]
    no_progress: bool,
    /// This shard's number, from 0 (default: $JOB_COMPLETION_INDEX when --shard-count is
    /// given): chunk k belongs to shard k % COUNT.
    #[arg(long)]
    shard_index: Option<u64>,
    /// How many shards split the input (a Kubernetes Indexed Job's completions).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    shard_count: Option<u64>,
    /// A header sent with every request, NAME:VALUE (repeatable; e.g. "Authorization: Bearer
    /// TOKEN"; environment: comma-separated).
    #[arg(long = "header", env = "FERROSERVE_BATCH_HEADER", value_delimiter = ',', value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// With an https:// URL: trust the CA certificates of this PEM file too (a server with a
    /// certificate of a private CA).
    #[arg(long = "ca-cert", env = "FERROSERVE_BATCH_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// With an https:// URL to a server that requires client certificates (--tls-client-ca):
    /// this client's certificate and key, PEM (both in one file, or the key in --client-key).
    #[arg(long = "client-cert", env = "FERROSERVE_BATCH_CLIENT_CERT")]
    client_cert: Option<std::path::PathBuf>,
    /// With --client-cert: the key, when it is not in the certificate's file.
    #[arg(
        long = "client-key",
        env = "FERROSERVE_BATCH_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<std::path::PathBuf>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?}: expected NAME:VALUE")),
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Rows of shard `index` of `count` in a file of `total` rows cut in chunks of `chunk`.
fn shard_rows(total: u64, chunk: u64, index: u64, count: u64) -> u64 {
    let chunks = total.div_ceil(chunk);
    (index..chunks)
        .step_by(count as usize)
        .map(|k| chunk.min(total - k * chunk))
        .sum()
}

/// One chunk, read and encoded.
struct Chunk {
    /// Its place among this run's chunks (0, 1, 2 ...): the order of writing.
    seq: u64,
    /// Its number in the whole input.
    k: u64,
    /// Rows sent: number and the row as read (JSON).
    sent: Vec<(u64, String)>,
    /// Rows refused before sending: number, the row as read, why.
    local: Vec<(u64, String, String)>,
    body: Option<bytes::Bytes>,
}

struct Done {
    chunk: Chunk,
    result: Result<Vec<output::Output>, String>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// What the reader thread needs.
struct ReadPlan {
    reader: Reader,
    mapper: Mapper,
    chunk_rows: u64,
    start_chunk: u64,
    shard_index: u64,
    shard_count: u64,
    outputs: Vec<String>,
}

/// The request body of one chunk: `{"inputs": [...], "outputs": [...]}` (v2 JSON tensors).
fn body(mapper: &Mapper, bufs: &[String], n: usize, outputs: &[String]) -> String {
    let mut b = String::with_capacity(bufs.iter().map(String::len).sum::<usize>() + 256);
    b.push_str("{\"inputs\":[");
    for (i, (inp, data)) in mapper.inputs.iter().zip(bufs).enumerate() {
        if i > 0 {
            b.push(',');
        }
        let shape = if inp.rank2 {
            format!("[{n},{}]", inp.per_row)
        } else {
            format!("[{n}]")
        };
        b.push_str(&format!(
            "{{\"name\":{},\"shape\":{shape},\"datatype\":{},\"data\":[{data}]}}",
            serde_json::to_string(&inp.name).unwrap_or_default(),
            serde_json::to_string(&inp.datatype).unwrap_or_default(),
        ));
    }
    b.push(']');
    if !outputs.is_empty() {
        b.push_str(",\"outputs\":[");
        for (i, o) in outputs.iter().enumerate() {
            if i > 0 {
                b.push(',');
            }
            b.push_str(&format!(
                "{{\"name\":{}}}",
                serde_json::to_string(o).unwrap_or_default()
            ));
        }
        b.push(']');
    }
    b.push('}');
    b
}

/// The reader thread: reads every row (those of other shards and of chunks already done
/// without parsing them) and sends this run's chunks, encoded, down `tx`.
fn read_chunks(mut p: ReadPlan, tx: tokio::sync::mpsc::Sender<Chunk>) -> anyhow::Result<()> {
    let (mut row, mut k, mut seq) = (0u64, 0u64, 0u64);
    let header = p.mapper.header.clone();
    loop {
        let mine = k >= p.start_chunk && k % p.shard_count == p.shard_index;
        let mut bufs = vec![String::new(); p.mapper.inputs.len()];
        let (mut sent, mut local) = (Vec::new(), Vec::new());
        let mut n = 0;
        while n < p.chunk_rows {
            let Some(r) = p.reader.read(!mine).context("reading the input")? else {
                break;
            };
            if mine {
                let input = r.input_json(&header);
                match p.mapper.encode(&r, &mut bufs) {
                    Ok(()) => sent.push((row, input)),
                    Err(e) => local.push((row, input, e)),
                }
            }
            drop::<RawRow>(r);
            row += 1;
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        if mine {
            let body = (!sent.is_empty())
                .then(|| bytes::Bytes::from(body(&p.mapper, &bufs, sent.len(), &p.outputs)));
            let chunk = Chunk {
                seq,
                k,
                sent,
                local,
                body,
            };
            if tx.blocking_send(chunk).is_err() {
                return Ok(());
            }
            seq += 1;
        }
        k += 1;
    }
}

/// Opens `path` for appending after truncating it to `len` (what the checkpoint recorded), or
/// creates it empty (`len` 0, no file yet, or a fresh start).
fn open_at(path: &Path, len: u64, what: &str) -> anyhow::Result<File> {
    if len == 0 {
        return File::create(path)
            .with_context(|| format!("creating the {what} {}", path.display()));
    }
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening the {what} {} to resume", path.display()))?;
    let have = f.metadata()?.len();
    if have < len {
        return Err(usage(format!(
            "the {what} {} holds {have} bytes, less than the {len} the checkpoint recorded: it was changed or lost; pass --restart to start over",
            path.display()
        )));
    }
    f.set_len(len)?;
    let mut f = f;
    use std::io::Seek;
    f.seek(std::io::SeekFrom::End(0))?;
    Ok(f)
}

/// Fetches the model's metadata; any failure is a usage error.
async fn metadata(
    http: &reqwest::Client,
    base: &Url,
    args: &BatchArgs,
    retried: &AtomicU64,
) -> anyhow::Result<Metadata> {
    let url = client::model_url(base, &args.model, args.version.as_deref(), false);
    let call = client::Call {
        client: http,
        url: &url,
        body: None,
        retries: args.retries.min(3),
    };
    match call.run(retried).await {
        client::Outcome::Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            usage(format!(
                "GET {url}: the answer is not v2 model metadata ({e})"
            ))
        }),
        client::Outcome::Failed(Some(s), msg) if s.as_u16() == 404 => Err(usage(format!(
            "model {:?}{} not found at {base}: {msg}",
            args.model,
            args.version
                .as_deref()
                .map(|v| format!(" version {v}"))
                .unwrap_or_default()
        ))),
        client::Outcome::Failed(_, msg) => Err(usage(format!(
            "GET {url}: cannot read the model's metadata: {msg}"
        ))),
    }
}

/// `ferroserve batch`: returns the exit status (an `Err` holding a [`UsageError`] exits 2,
/// any other 1).
pub async fn run(args: BatchArgs) -> anyhow::Result<i32> {
    let input_format = match args.input_format.or_else(|| InputFormat::of(&args.input)) {
        Some(f) => f,
        None => {
            return Err(usage(format!(
                "cannot tell the format of {} from its extension: pass --input-format csv or jsonl",
                args.input.display()
            )))
        }
    };
    let output_format = args.output_format.unwrap_or_else(|| {
        match args.output.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => OutputFormat::Csv,
            _ => OutputFormat::Jsonl,
        }
    });
    let failed_path = args
        .failed
        .clone()
        .unwrap_or_else(|| with_suffix(&args.output, ".failed.jsonl"));
    let checkpoint_path = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| with_suffix(&args.output, ".checkpoint"));
    let (shard_index, shard_count) = match (args.shard_index, args.shard_count) {
        (None, None) => (0, 1),
        (Some(_), None) => return Err(usage("--shard-index needs --shard-count")),
        (i, Some(n)) => {
            let i = match i {
                Some(i) => i,
                None => std::env::var("JOB_COMPLETION_INDEX")
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| {
                        usage("--shard-count needs --shard-index or a numeric JOB_COMPLETION_INDEX")
                    })?,
            };
            if i >= n {
                return Err(usage(format!(
                    "--shard-index {i} is not below --shard-count {n}"
                )));
            }
            (i, n)
        }
    };
    let fingerprint = Fingerprint::of(&args.input).map_err(|e| {
        usage(format!(
            "cannot read the input {}: {e}",
            args.input.display()
        ))
    })?;
    let options = Options {
        model: args.model.clone(),
        version: args.version.clone(),
        input_format,
        output_format,
        outputs: args.outputs.clone(),
        chunk_rows: args.chunk_rows as usize,
        shard_index,
        shard_count,
    };
    let mut ck = if args.restart {
        None
    } else {
        Checkpoint::read(&checkpoint_path).map_err(|e| usage(e.to_string()))?
    };
    if let Some(c) = &ck {
        if let Some(why) = c.mismatch(&fingerprint, &options) {
            return Err(usage(format!(
                "cannot resume from the checkpoint {}: {why}. Pass --restart to start over (the output is rewritten)",
                checkpoint_path.display()
            )));
        }
        if c.state == State::Complete {
            eprintln!(
                "batch: already complete ({} rows ok, {} rows failed; checkpoint {}): nothing to do. Pass --restart to run again",
                c.rows_ok,
                c.rows_failed,
                checkpoint_path.display()
            );
            return Ok(if c.rows_failed > 0 {
                EXIT_ROWS_FAILED
            } else {
                EXIT_OK
            });
        }
    }

    let base = Url::parse(&args.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            usage(format!(
                "--url {:?}: expected http(s)://HOST[:PORT][/PREFIX]",
                args.url
            ))
        })?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &args.headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| usage(format!("--header {k}: not a header name")))?;
        let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
            usage(format!(
                "--header {k}: the value is not a valid header value"
            ))
        })?;
        headers.append(name, value);
    }
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(args.timeout_secs)
        .connect_timeout(args.timeout_secs.min(Duration::from_secs(10)))
        .default_headers(headers)
        .pool_max_idle_per_host(args.concurrency as usize);
    if let Some(p) = &args.ca_cert {
        let pem = std::fs::read(p).map_err(|e| usage(format!("--ca-cert {}: {e}", p.display())))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            usage(format!(
                "--ca-cert {}: not PEM certificates ({e})",
                p.display()
            ))
        })? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(p) = &args.client_cert {
        let mut pem =
            std::fs::read(p).map_err(|e| usage(format!("--client-cert {}: {e}", p.display())))?;
        if let Some(k) = &args.client_key {
            pem.push(b'\n');
            pem.extend(
                std::fs::read(k)
                    .map_err(|e| usage(format!("--client-key {}: {e}", k.display())))?,
            );
        }
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            usage(format!(
                "--client-cert {}: needs a PEM certificate and its key ({e})",
                p.display()
            ))
        })?;
        builder = builder.identity(id);
    }
    let http = builder.build().context("building the HTTP client")?;
    let retried = Arc::new(AtomicU64::new(0));
    let meta = metadata(&http, &base, &args, &retried).await?;

    let reader = Reader::open(&args.input, input_format).map_err(|e| {
        usage(format!(
            "cannot read the input {}: {e}",
            args.input.display()
        ))
    })?;
    let mapper = match &reader.columns {
        Some(cols) => Mapper::new(&meta, cols).map_err(usage)?,
        // No rows: nothing to map.
        None => Mapper::empty(),
    };
    let ignored = mapper.ignored();
    if !ignored.is_empty() {
        eprintln!(
            "batch: columns no input of model {} takes, not sent: {}",
            meta.name,
            ignored.join(", ")
        );
    }
    for o in &args.outputs {
        if !meta.outputs.iter().any(|m| &m.name == o) && !meta.outputs.is_empty() {
            return Err(usage(format!(
                "--outputs {o}: model {} has no output {o} (its outputs: {})",
                meta.name,
                meta.outputs
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let order: Vec<String> = if args.outputs.is_empty() {
        meta.outputs.iter().map(|o| o.name.clone()).collect()
    } else {
        args.outputs.clone()
    };

    // The files: truncated to what the checkpoint recorded, or new.
    let (mut out, mut failed) = match &ck {
        Some(c) => (
            Sink::new(
                open_at(&args.output, c.output_bytes, "output")?,
                c.output_bytes,
            ),
            Sink::new(
                open_at(&failed_path, c.failed_bytes, "failed file")?,
                c.failed_bytes,
            ),
        ),
        None => (
            Sink::new(open_at(&args.output, 0, "output")?, 0),
            Sink::new(open_at(&failed_path, 0, "failed file")?, 0),
        ),
    };
    let mut state = ck.take().unwrap_or(Checkpoint {
        state: State::Running,
        input: fingerprint,
        options,
        next_chunk: 0,
        rows_done: 0,
        rows_ok: 0,
        rows_failed: 0,
        output_bytes: 0,
        failed_bytes: 0,
        csv_columns: None,
    });
    if state.rows_done > 0 {
        eprintln!(
            "batch: resuming after {} rows ({} ok, {} failed) from the checkpoint {}",
            state.rows_done,
            state.rows_ok,
            state.rows_failed,
            checkpoint_path.display()
        );
    }
    state
        .write(&checkpoint_path, false)
        .with_context(|| format!("writing the checkpoint {}", checkpoint_path.display()))?;

    let total = if args.no_progress {
        None
    } else {
        input::count_rows(&args.input, input_format)
            .ok()
            .map(|t| shard_rows(t, args.chunk_rows, shard_index, shard_count))
    };
    let mut progress = progress::Progress::new(!args.no_progress, total, state.rows_done);

    // Reader thread → dispatcher → requests → reorder buffer → writer (here).
    let (chunk_tx, mut chunk_rx) = tokio::sync::mpsc::channel::<Chunk>(1);
    let plan = ReadPlan {
        reader,
        mapper,
        chunk_rows: args.chunk_rows,
        start_chunk: state.next_chunk,
        shard_index,
        shard_count,
        outputs: args.outputs.clone(),
    };
    let reading = tokio::task::spawn_blocking(move || read_chunks(plan, chunk_tx));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let infer_url = Arc::new(client::model_url(
        &base,
        &args.model,
        args.version.as_deref(),
        true,
    ));
    let order = Arc::new(order);
    let retries = args.retries;
    {
        let retried = retried.clone();
        tokio::spawn(async move {
            while let Some(chunk) = chunk_rx.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (http, url, order, retried, done_tx) = (
                    http.clone(),
                    infer_url.clone(),
                    order.clone(),
                    retried.clone(),
                    done_tx.clone(),
                );
                tokio::spawn(async move {
                    let mut chunk = chunk;
                    // The body is not kept once answered: a chunk waiting its turn holds its
                    // rows and answer only.
                    let result = match chunk.body.take() {
                        None => Ok(Vec::new()),
                        Some(b) => {
                            let call = client::Call {
                                client: &http,
                                url: &url,
                                body: Some(b),
                                retries,
                            };
                            match call.run(&retried).await {
                                client::Outcome::Ok(body) => {
                                    output::split(&body, chunk.sent.len(), &order)
                                        .map_err(|e| format!("bad answer: {e}"))
                                }
                                client::Outcome::Failed(_, msg) => Err(msg),
                            }
                        }
                    };
                    let _ = done_tx.send(Done {
                        chunk,
                        result,
                        _permit: permit,
                    });
                });
            }
        });
    }

    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut line = String::new();
    let mut last_sync = Instant::now();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + progress.every(),
        progress.every(),
    );
    loop {
        tokio::select! {
            d = done_rx.recv() => {
                let Some(d) = d else { break };
                waiting.insert(d.chunk.seq, d);
                while let Some(d) = waiting.remove(&next_seq) {
                    write_chunk(d, output_format, &mut out, &mut failed, &mut state, &mut line)?;
                    next_seq += 1;
                    out.flush()?;
                    failed.flush()?;
                    let sync = last_sync.elapsed() > Duration::from_secs(10);
                    if sync {
                        out.sync()?;
                        failed.sync()?;
                        last_sync = Instant::now();
                    }
                    state.write(&checkpoint_path, sync).context("writing the checkpoint")?;
                    progress.show(state.rows_done, state.rows_failed);
                }
            }
            _ = tick.tick() => progress.show(state.rows_done, state.rows_failed),
        }
    }
    reading.await.context("the reader thread")??;
    out.sync()?;
    failed.sync()?;
    state.state = State::Complete;
    state
        .write(&checkpoint_path, true)
        .context("writing the checkpoint")?;
    if state.failed_bytes == 0 {
        let _ = fs::remove_file(&failed_path);
    }
    progress.summary(
        state.rows_ok,
        state.rows_failed,
        retried.load(Ordering::Relaxed),
    );
    if state.rows_failed > 0 {
        eprintln!(
            "batch: {} rows failed: see {}",
            state.rows_failed,
            failed_path.display()
        );
        return Ok(EXIT_ROWS_FAILED);
    }
    Ok(EXIT_OK)
}

/// Writes one chunk's rows (answers to the output, failures to the failed file) and moves the
/// checkpoint past it.
fn write_chunk(
    d: Done,
    format: OutputFormat,
    out: &mut Sink,
    failed: &mut Sink,
    state: &mut Checkpoint,
    line: &mut String,
) -> anyhow::Result<()> {
    let Done { chunk, result, .. } = d;
    let mut result = result;
    if let (Ok(outs), OutputFormat::Csv) = (&result, format) {
        if !chunk.sent.is_empty() {
            let cols = output::csv_columns(outs);
            match &state.csv_columns {
                None => {
                    out.write(&output::csv_header(&cols))?;
                    state.csv_columns = Some(cols);
                }
                Some(c) if *c != cols => {
                    result = Err(format!(
                        "bad answer: its outputs make the CSV columns {}, the file has {}",
                        cols.join(","),
                        c.join(",")
                    ));
                }
                Some(_) => {}
            }
        }
    }
    for (row, input, error) in &chunk.local {
        failed.write(&output::failed_line(*row, error, input))?;
        state.rows_failed += 1;
    }
    match &result {
        Ok(outs) => {
            for (j, (row, _)) in chunk.sent.iter().enumerate() {
                output::row_line(format, *row, outs, j, line);
                out.write(line)?;
            }
            state.rows_ok += chunk.sent.len() as u64;
        }
        Err(e) => {
            for (row, input) in &chunk.sent {
                failed.write(&output::failed_line(*row, e, input))?;
            }
            state.rows_failed += chunk.sent.len() as u64;
        }
    }
    state.rows_done += (chunk.sent.len() + chunk.local.len()) as u64;
    state.next_chunk = chunk.k + 1;
    state.output_bytes = out.len;
    state.failed_bytes = failed.len;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shards_take_chunks_round_robin() {
        // 10 rows in chunks of 3: chunks of 3, 3, 3, 1 rows.
        assert_eq!(super::shard_rows(10, 3, 0, 1), 10);
        assert_eq!(super::shard_rows(10, 3, 0, 2), 6);
        assert_eq!(super::shard_rows(10, 3, 1, 2), 4);
        assert_eq!(super::shard_rows(10, 3, 2, 3), 3);
        assert_eq!(super::shard_rows(0, 3, 0, 3), 0);
    }
}
