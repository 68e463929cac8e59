//! Batch jobs: many rows for one model, submitted once, run in chunks in the background, the
//! results kept in input order (docs/batch.md).
//!
//! - `POST /jobs`: a JSON body `{"model": ..., "rows": [[...]]}` (or `"records": [{...}]`), or
//!   a multipart upload (a `model` field and a CSV or JSON Lines `file`, streamed to disk);
//!   options `chunk_rows`, `concurrency`, `retries`, `timeout_secs`, `outputs`. Answers `202`
//!   with the job's id and URL at once.
//! - `GET /jobs`, `GET /jobs/{id}`: state, progress, rows/s, ETA, the failed chunks.
//! - `GET /jobs/{id}/results`: JSON Lines (or CSV), one line per input row, in input order, as
//!   far as the job has got.
//! - `POST /jobs/{id}/cancel`.
//!
//! Jobs live in SQLite under `--data-dir` ([`store`]); a job interrupted by a crash resumes
//! when the server starts again. Chunks are read with the friendly routes' parsers, run through
//! the inference service like any request (on the model's background instance, see `ferroserve_runtime::batcher::run`), and answered
//! with the friendly routes' answers, one line per row.

pub mod lane;
pub mod shared;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use ferroserve_core::config::RouteMethod;
use ferroserve_core::{ErrorKind, InferError, InferRequest, RequestedOutput, Tensor};
use ferroserve_predlog::record::{now_ms, rfc3339};
use ferroserve_runtime::{Call, Deadline, Origin};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::body::{read_body, Limit};
use crate::error::ApiError;
use crate::extract::Path;
use crate::friendly::answer::{Answerer, Outputs};
use crate::friendly::table::{Spec, Table};
use crate::friendly::{parse, FState};
use crate::state::AppState;
use shared::{Delivery, RedisStore};
use store::{Chunk, Format, Job, JobStore, Options, State, Store};

/// How the server runs batch jobs (`--jobs-*` flags).
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Where `jobs.sqlite` and uploads go (`--data-dir`).
    pub data_dir: PathBuf,
    /// How long a finished job is kept (`--jobs-keep-hours`).
    pub keep: Duration,
    /// Chunks this server runs at once, over all jobs (`--jobs-workers`).
    pub workers: usize,
    /// The most rows one job may have (`--jobs-max-rows`).
    pub max_rows: u64,
    /// The largest uploaded file (`--jobs-max-upload-mb`).
    pub max_upload_bytes: u64,
    /// Jobs shared with other servers through this Redis (`--jobs-redis`); `None`: SQLite.
    pub redis: Option<String>,
    /// How long a chunk a server holds may go without news before another server takes it
    /// over (`--jobs-redis-visibility-secs`).
    pub visibility: Duration,
}

impl JobsConfig {
    pub fn new(data_dir: PathBuf) -> JobsConfig {
        JobsConfig {
            data_dir,
            keep: Duration::from_secs(24 * 3600),
            workers: 2,
            max_rows: 100_000_000,
            max_upload_bytes: 4 << 30,
            redis: None,
            visibility: Duration::from_secs(30),
        }
    }
}

/// Defaults of a job's options.
const CHUNK_ROWS: usize = 1000;
const CONCURRENCY: usize = 2;
const RETRIES: u32 = 3;
const TIMEOUT_SECS: f64 = 60.0;
/// Failed chunks shown in a job's status.
const ERRORS_SHOWN: usize = 100;
/// Jobs `GET /jobs` lists.
const LISTED: usize = 100;

/// The batch jobs of one server.
pub struct Jobs {
    cfg: JobsConfig,
    /// Opened by the first job (or at start when jobs are there to resume).
    store: OnceLock<Arc<Store>>,
    /// With `--jobs-redis`: where jobs live instead, shared with the other servers.
    shared: Option<Arc<RedisStore>>,
    /// This server's name in the Redis consumer group.
    consumer: String,
    /// The threads that read chunks and write their answers, started by the first chunk.
    lane: OnceLock<Arc<lane::Lane>>,
    slots: Arc<Semaphore>,
    /// Jobs running here, with their cancel flags.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

fn internal(e: impl std::fmt::Display) -> InferError {
    tracing::error!(error = %e, "batch jobs: store failed");
    InferError::internal("the batch job store failed; see the server log")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, InferError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(internal)
}

impl Jobs {
    /// The jobs of a server configured by `cfg`; fails only on a `--jobs-redis` URL that does
    /// not parse (Redis itself is reached on first use).
    pub fn new(cfg: JobsConfig) -> Result<Jobs, String> {
        let shared = match &cfg.redis {
            Some(url) => Some(Arc::new(RedisStore::new(url, cfg.keep)?)),
            None => None,
        };
        Ok(Jobs {
            slots: Arc::new(Semaphore::new(cfg.workers.max(1))),
            cfg,
            store: OnceLock::new(),
            shared,
            consumer: consumer_name(),
            lane: OnceLock::new(),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// The jobs' threads: as many as `--jobs-workers`, at most one per core.
    fn lane(&self) -> Arc<lane::Lane> {
        self.lane
            .get_or_init(|| {
                lane::Lane::new(
                    self.cfg
                        .workers
                        .min(std::thread::available_parallelism().map_or(2, |n| n.get())),
                )
            })
            .clone()
    }

    /// Where jobs live: Redis with `--jobs-redis`, else SQLite (opened on first use).
    fn store(&self) -> Result<Arc<dyn JobStore>, InferError> {
        if let Some(r) = &self.shared {
            return Ok(r.clone());
        }
        Ok(self.local()?)
    }

    /// The SQLite store.
    fn local(&self) -> Result<Arc<Store>, InferError> {
        if let Some(s) = self.store.get() {
            return Ok(s.clone());
        }
        let s = Store::open(&self.cfg.data_dir).map_err(|e| {
            tracing::error!(error = %e, "batch jobs: cannot open the store under --data-dir");
            InferError::unavailable(
                "batch jobs cannot open their store under --data-dir; see the server log",
            )
        })?;
        Ok(self.store.get_or_init(|| Arc::new(s)).clone())
    }

    /// The store, only if it exists (reads never create the SQLite file).
    fn existing(&self) -> Result<Option<Arc<dyn JobStore>>, InferError> {
        if self.shared.is_none() && self.store.get().is_none() && !Store::exists(&self.cfg.data_dir)
        {
            return Ok(None);
        }
        self.store().map(Some)
    }
}

/// A name for this process in the consumer group, unique among the servers sharing a Redis:
/// host name, process id and a random part.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "ferroserve".into());
    format!("{host}-{}-{}", std::process::id(), &new_id()[4..])
}

/// Starts the server's job work: resumes the jobs a previous run left unfinished and expires
/// finished ones after `--jobs-keep-hours`.
pub fn start(app: &Arc<AppState>) {
    let Some(jobs) = app.jobs.clone() else {
        return;
    };
    if let Some(shared) = jobs.shared.clone() {
        tracing::info!(redis = %shared.shown(), consumer = %jobs.consumer, "batch jobs shared through Redis");
        tokio::spawn(consume(app.clone(), jobs.clone(), shared));
    } else {
        resume(app, &jobs);
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Ok(Some(store)) = jobs.existing() else {
                continue;
            };
            let before = now_ms() - jobs.cfg.keep.as_millis() as i64;
            match blocking(move || store.expire(before)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "batch jobs expired"),
                Err(e) => tracing::warn!(error = %e.message, "batch jobs: expiry failed"),
            }
        }
    });
}

/// Resumes the jobs a previous run left unfinished in SQLite.
fn resume(app: &Arc<AppState>, jobs: &Arc<Jobs>) {
    if !Store::exists(&jobs.cfg.data_dir) {
        return;
    }
    match jobs.local() {
        Ok(store) => match store.unfinished() {
            Ok(list) => {
                for j in list {
                    tracing::info!(job = %j.id, model = %j.model, done = j.rows_done, total = j.rows_total, "batch job resumed");
                    spawn_driver(app.clone(), j.id);
                }
            }
            Err(e) => tracing::error!(error = %e, "batch jobs: cannot read the jobs to resume"),
        },
        Err(e) => tracing::error!(error = %e.message, "batch jobs: cannot resume"),
    }
}

fn spawn_driver(app: Arc<AppState>, id: String) {
    let Some(jobs) = app.jobs.clone() else {
        return;
    };
    let flag = Arc::new(AtomicBool::new(false));
    {
        let mut r = jobs.running.lock().unwrap_or_else(|p| p.into_inner());
        if r.contains_key(&id) {
            return;
        }
        r.insert(id.clone(), flag.clone());
    }
    tokio::spawn(async move {
        if let Err(e) = drive(&app, &jobs, &id, &flag).await {
            tracing::error!(job = %id, error = %e.message, "batch job stopped");
        }
        jobs.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    });
}

/// Runs one job's pending chunks, `concurrency` at a time (and within the server's
/// `--jobs-workers`), until each is committed or the job is cancelled.
async fn drive(
    app: &Arc<AppState>,
    jobs: &Arc<Jobs>,
    id: &str,
    cancelled: &Arc<AtomicBool>,
) -> Result<(), InferError> {
    let local = jobs.local()?;
    let store: Arc<dyn JobStore> = local.clone();
    models_started(app).await;
    let s = store.clone();
    let idc = id.to_string();
    let Some(job) = blocking(move || s.get(&idc)).await? else {
        return Ok(());
    };
    if job.state.finished() {
        return Ok(());
    }
    let (s, idc) = (store.clone(), id.to_string());
    blocking(move || s.start(&idc, now_ms())).await?;
    let idc = id.to_string();
    let pending = blocking(move || local.pending(&idc)).await?;
    let job = Arc::new(job);
    futures_util::stream::iter(pending)
        .map(|idx| {
            let (app, jobs, store, job) = (app.clone(), jobs.clone(), store.clone(), job.clone());
            let cancelled = cancelled.clone();
            async move {
                let Ok(_slot) = jobs.slots.clone().acquire_owned().await else {
                    return;
                };
                if cancelled.load(Ordering::Relaxed) {
                    return;
                }
                let (s, id) = (store.clone(), job.id.clone());
                let chunk = match blocking(move || s.chunk(&id, idx)).await {
                    Ok(Some(c)) => c,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!(job = %job.id, chunk = idx, error = %e.message, "batch job chunk not read");
                        return;
                    }
                };
                if let Err(e) = one_chunk(&app, &store, &job, chunk, &cancelled).await {
                    tracing::error!(job = %job.id, chunk = idx, error = %e.message, "batch job chunk not committed");
                }
            }
        })
        .buffer_unordered(job.options.concurrency.max(1))
        .for_each(|()| async {})
        .await;
    Ok(())
}

fn retryable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Overloaded
            | ErrorKind::Unavailable
            | ErrorKind::DeadlineExceeded
            | ErrorKind::Internal
            | ErrorKind::NotFound
    )
}

/// Computes one chunk (with retries) and commits its lines; returns whether this call
/// committed them (false: committed before, or the job is no longer running, or cancelled).
async fn one_chunk(
    app: &Arc<AppState>,
    store: &Arc<dyn JobStore>,
    job: &Job,
    chunk: Chunk,
    cancelled: &AtomicBool,
) -> Result<bool, InferError> {
    let idx = chunk.idx;
    let mut attempts = 0u32;
    let (data, error) = loop {
        attempts += 1;
        match compute(app, job, &chunk).await {
            Ok(lines) => break (lines, None),
            Err(e) if retryable(e.kind) && attempts <= job.options.retries => {
                let wait = Duration::from_millis(250u64 << (attempts - 1).min(6));
                let jitter = Duration::from_millis(now_ms().rem_euclid(100) as u64);
                tracing::debug!(job = %job.id, chunk = idx, attempt = attempts, error = %e.message, "batch job chunk retried");
                tokio::time::sleep(wait + jitter).await;
                if cancelled.load(Ordering::Relaxed) {
                    return Ok(false);
                }
            }
            Err(e) => {
                let msg = e.message.clone();
                let mut lines = Vec::with_capacity(chunk.rows as usize * 48);
                let quoted = serde_json::to_string(&msg).unwrap_or_default();
                for r in chunk.first_row..chunk.first_row + chunk.rows {
                    lines.extend_from_slice(
                        format!("{{\"row\":{r},\"error\":{quoted}}}\n").as_bytes(),
                    );
                }
                break (lines, Some(msg));
            }
        }
    };
    let (s, id) = (store.clone(), job.id.clone());
    let failed = error.is_some();
    let committed =
        blocking(move || s.commit(&id, &chunk, &data, error.as_deref(), attempts, now_ms()))
            .await?;
    if committed && failed {
        tracing::warn!(job = %job.id, chunk = idx, "batch job chunk failed");
    }
    Ok(committed)
}

/// Waits (at most 10 minutes) for the models to have loaded once: they load in the
/// background at start, and a job's first chunk would otherwise find its model missing.
async fn models_started(app: &Arc<AppState>) {
    for _ in 0..6000 {
        if app.registry.started() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How often a server looks for chunks a dead server left, at most.
fn claim_every(visibility: Duration) -> Duration {
    (visibility / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// What one step of [`consume`] asked Redis.
enum Step {
    /// The consumer group is there.
    Grouped,
    /// Chunks other servers held too long (and the cursor to go on from).
    Claimed(String, Vec<Delivery>),
    /// New chunks.
    Read(Vec<Delivery>),
}

/// With `--jobs-redis`: takes chunks from the shared stream, `--jobs-workers` at a time, for
/// as long as the server runs; chunks other servers held past the visibility timeout first.
async fn consume(app: Arc<AppState>, jobs: Arc<Jobs>, shared: Arc<RedisStore>) {
    models_started(&app).await;
    let mut backoff = Duration::from_millis(100);
    let mut cursor = "0-0".to_string();
    let mut last_claim: Option<std::time::Instant> = None;
    let mut grouped = false;
    loop {
        let Ok(slot) = jobs.slots.clone().acquire_owned().await else {
            return;
        };
        let (s, consumer) = (shared.clone(), jobs.consumer.clone());
        let step = if !grouped {
            blocking(move || s.ensure_group().map(|()| Step::Grouped)).await
        } else if last_claim.is_none_or(|t| t.elapsed() >= claim_every(jobs.cfg.visibility)) {
            let (idle, from) = (jobs.cfg.visibility, cursor.clone());
            blocking(move || {
                s.autoclaim(&consumer, idle, &from, 1)
                    .map(|(next, got)| Step::Claimed(next, got))
            })
            .await
        } else {
            blocking(move || s.read(&consumer, 1, Duration::from_secs(1)).map(Step::Read)).await
        };
        let got = match step {
            Ok(Step::Grouped) => {
                grouped = true;
                Vec::new()
            }
            Ok(Step::Claimed(next, got)) => {
                if got.is_empty() {
                    last_claim = Some(std::time::Instant::now());
                } else {
                    tracing::info!(job = %got[0].job, chunk = got[0].idx, "batch job chunk taken over from a server that stopped answering");
                }
                cursor = next;
                backoff = Duration::from_millis(100);
                got
            }
            Ok(Step::Read(got)) => {
                backoff = Duration::from_millis(100);
                got
            }
            Err(e) => {
                if e.message.contains("NOGROUP") {
                    grouped = false;
                }
                tracing::warn!(error = %e.message, "batch jobs: Redis failed; retrying");
                drop(slot);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let mut slot = Some(slot);
        for d in got {
            let (app, jobs, shared) = (app.clone(), jobs.clone(), shared.clone());
            let held = slot.take();
            tokio::spawn(async move {
                let _slot = held;
                if let Err(e) = run_delivery(&app, &jobs, &shared, &d).await {
                    tracing::error!(job = %d.job, chunk = d.idx, error = %e.message, "batch job chunk not committed");
                }
            });
        }
    }
}

/// Runs one chunk delivered from the shared stream, keeping its entry fresh while it runs, and
/// acknowledges it once committed (or once its job is gone or finished).
async fn run_delivery(
    app: &Arc<AppState>,
    jobs: &Arc<Jobs>,
    shared: &Arc<RedisStore>,
    d: &Delivery,
) -> Result<(), InferError> {
    let store: Arc<dyn JobStore> = shared.clone();
    let (s, id) = (store.clone(), d.job.clone());
    let job = blocking(move || s.get(&id)).await?;
    let chunk = match &job {
        Some(j) if !j.state.finished() => {
            let (s, id, idx) = (store.clone(), d.job.clone(), d.idx);
            blocking(move || s.chunk(&id, idx)).await?
        }
        _ => None,
    };
    let (Some(job), Some(chunk)) = (job, chunk) else {
        // Its job finished, was cancelled or expired, or the chunk is committed already.
        let (s, entry) = (shared.clone(), d.entry.clone());
        return blocking(move || s.ack(&entry)).await;
    };
    if job.state == State::Queued {
        let (s, id) = (store.clone(), job.id.clone());
        blocking(move || s.start(&id, now_ms())).await?;
    }
    // Kept fresh (and watched for a cancel) while it computes.
    let cancelled = Arc::new(AtomicBool::new(false));
    let keeper = tokio::spawn(keep_fresh(
        shared.clone(),
        jobs.consumer.clone(),
        d.clone(),
        (jobs.cfg.visibility / 3).max(Duration::from_millis(50)),
        cancelled.clone(),
    ));
    let done = one_chunk(app, &store, &job, chunk, &cancelled).await;
    keeper.abort();
    if done.is_ok() {
        let (s, entry) = (shared.clone(), d.entry.clone());
        blocking(move || s.ack(&entry)).await?;
    }
    done.map(|_| ())
}

/// Every `every`, marks the chunk `d` fresh in the group and sets `cancelled` once its job
/// has finished (cancelled, or gone).
async fn keep_fresh(
    shared: Arc<RedisStore>,
    consumer: String,
    d: Delivery,
    every: Duration,
    cancelled: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(every).await;
        let (s, consumer, d) = (shared.clone(), consumer.clone(), d.clone());
        let news = blocking(move || {
            s.touch(&consumer, &d.entry)?;
            s.get(&d.job)
        })
        .await;
        if let Ok(j) = news {
            if j.is_none_or(|j| j.state.finished()) {
                cancelled.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// The built-in friendly spec jobs read their rows with.
fn spec_of(model: &str) -> Spec {
    Spec::predict(model, RouteMethod::Post)
}

/// Runs one chunk: its rows read as the friendly routes read them, answered one line per row.
async fn compute(app: &Arc<AppState>, job: &Job, chunk: &Chunk) -> Result<Vec<u8>, InferError> {
    let fs = FState::of(app);
    let served = app.runtime().version(&job.model, job.version.as_deref())?;
    let table = fs.f.table(&served)?;
    let spec = spec_of(&job.model);
    let answer = spec.answer;
    let lane = jobs_of(app)?.lane();
    // Reading and answering run on the jobs' own lower-priority threads (see `lane`).
    let (input, format, t) = (chunk.input.clone(), chunk.format, table.clone());
    let parsed = lane
        .run(move || match format {
            Format::Json => parse::read_json(&input, &spec, &t, None),
            Format::Csv => parse::read_csv(&input, &spec, &t),
        })
        .await??;
    let outputs = table
        .outputs_for(answer, job.options.probabilities)
        .into_iter()
        .map(|name| RequestedOutput {
            name: name.to_string(),
            parameters: Default::default(),
        })
        .collect();
    let rows = parsed.rows;
    let req = InferRequest {
        id: Some(format!("{}-{}", job.id, chunk.idx)),
        inputs: vec![Tensor::new(
            table.input_name.clone(),
            vec![rows as i64, table.n() as i64],
            parsed.data,
        )],
        outputs,
        parameters: Default::default(),
    };
    let deadline = Deadline::after(Duration::from_secs_f64(job.options.timeout_secs));
    let call = Call::now(Origin::Job { id: &job.id });
    let answered = app.service.infer(&served, req, deadline, call).await?;
    let (probabilities, first_row) = (job.options.probabilities, chunk.first_row);
    lane.run(move || {
        let a = Answerer {
            out: Outputs::new(&answered.response, rows, &table),
            answer,
            layout: ferroserve_core::config::Layout::Records,
            key: "prediction",
            unwrap: false,
            probabilities,
        };
        let mut out = Vec::with_capacity(rows * 40);
        a.write_lines(first_row, &mut out);
        out
    })
    .await
}

/// A job's options as a request gives them (JSON body or multipart fields).
#[derive(Debug, Default, Deserialize)]
struct Asked {
    model: Option<String>,
    version: Option<String>,
    chunk_rows: Option<usize>,
    concurrency: Option<usize>,
    retries: Option<u32>,
    timeout_secs: Option<f64>,
    /// `["prediction"]` (default) or `["prediction", "probabilities"]`.
    outputs: Option<Vec<String>>,
}

impl Asked {
    fn set_field(&mut self, name: &str, v: &str) -> Result<(), InferError> {
        let bad =
            |what: &str| InferError::invalid(format!("field '{name}': expected {what}, got '{v}'"));
        match name {
            "model" => self.model = Some(v.to_string()),
            "version" => self.version = Some(v.to_string()),
            "chunk_rows" => self.chunk_rows = Some(v.parse().map_err(|_| bad("a whole number"))?),
            "concurrency" => self.concurrency = Some(v.parse().map_err(|_| bad("a whole number"))?),
            "retries" => self.retries = Some(v.parse().map_err(|_| bad("a whole number"))?),
            "timeout_secs" => {
                self.timeout_secs = Some(v.parse().map_err(|_| bad("a number of seconds"))?)
            }
            "outputs" => {
                self.outputs = Some(
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                )
            }
            _ => {}
        }
        Ok(())
    }

    /// The options, checked against the model's table.
    fn options(&self, table: &Table) -> Result<Options, InferError> {
        let chunk_rows = self.chunk_rows.unwrap_or(CHUNK_ROWS.min(table.max_rows));
        if chunk_rows == 0 || chunk_rows > table.max_rows {
            return Err(InferError::invalid(format!(
                "field 'chunk_rows': expected 1 to {} (the model's max_request_rows), got {chunk_rows}",
                table.max_rows
            )));
        }
        let concurrency = self.concurrency.unwrap_or(CONCURRENCY);
        if !(1..=64).contains(&concurrency) {
            return Err(InferError::invalid(format!(
                "field 'concurrency': expected 1 to 64, got {concurrency}"
            )));
        }
        let retries = self.retries.unwrap_or(RETRIES);
        if retries > 20 {
            return Err(InferError::invalid(format!(
                "field 'retries': expected 0 to 20, got {retries}"
            )));
        }
        let timeout_secs = self.timeout_secs.unwrap_or(TIMEOUT_SECS);
        if !(timeout_secs > 0.0 && timeout_secs <= 3600.0) {
            return Err(InferError::invalid(format!(
                "field 'timeout_secs': expected more than 0 and at most 3600, got {timeout_secs}"
            )));
        }
        let mut probabilities = false;
        for o in self.outputs.iter().flatten() {
            match o.as_str() {
                "prediction" => {}
                "probabilities" if table.is_classifier() => probabilities = true,
                other => {
                    return Err(InferError::invalid(format!(
                        "field 'outputs': expected \"prediction\"{}, got \"{other}\"",
                        if table.is_classifier() {
                            " or \"probabilities\""
                        } else {
                            " (this model is a regressor)"
                        }
                    )))
                }
            }
        }
        Ok(Options {
            chunk_rows,
            concurrency,
            retries,
            timeout_secs,
            probabilities,
            owner: None,
        })
    }
}

/// A JSON body: the options and the rows or records.
#[derive(Deserialize)]
struct JsonJob<'a> {
    #[serde(flatten)]
    asked: Asked,
    #[serde(borrow)]
    rows: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    records: Option<Vec<&'a RawValue>>,
}

fn new_id() -> String {
    use std::sync::atomic::AtomicU64;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = now_ms() as u64;
    let mix = (t ^ (std::process::id() as u64) << 40 ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_mul(0xff51_afd7_ed55_8ccd);
    format!("job-{t:x}-{:08x}", (mix >> 32) as u32)
}

/// What a new job is for: the model (checked now) and its options.
struct Target {
    job: Job,
}

fn target(fs: &FState, asked: &Asked, caller: &crate::auth::Caller) -> Result<Target, InferError> {
    let Some(model) = asked.model.clone() else {
        return Err(InferError::invalid(
            "field 'model': expected the name of the model to run the job on",
        ));
    };
    // The model comes with the body: the caller's key may be limited to others.
    if let Some(auth) = &fs.app.auth {
        auth.admit_model(caller, &model)?;
    }
    let served = fs.app.runtime().version(&model, asked.version.as_deref())?;
    let table = fs.f.table(&served)?;
    let mut options = asked.options(&table)?;
    options.owner = caller.owner().map(str::to_string);
    Ok(Target {
        job: Job {
            id: new_id(),
            model,
            version: asked.version.clone(),
            state: State::Queued,
            created_ms: now_ms(),
            started_ms: None,
            finished_ms: None,
            rows_total: 0,
            chunks_total: 0,
            rows_done: 0,
            chunks_done: 0,
            rows_failed: 0,
            chunks_failed: 0,
            options,
        },
    })
}

/// Chunks of a list of JSON rows or records.
fn json_chunks(items: &[&RawValue], chunk_rows: usize) -> Vec<Result<Chunk, String>> {
    items
        .chunks(chunk_rows)
        .enumerate()
        .map(|(i, part)| {
            let mut input =
                Vec::with_capacity(part.iter().map(|r| r.get().len() + 1).sum::<usize>() + 2);
            input.push(b'[');
            for (k, r) in part.iter().enumerate() {
                if k > 0 {
                    input.push(b',');
                }
                input.extend_from_slice(r.get().as_bytes());
            }
            input.push(b']');
            Ok(Chunk {
                idx: i as u64,
                first_row: (i * chunk_rows) as u64,
                rows: part.len() as u64,
                format: Format::Json,
                input,
            })
        })
        .collect()
}

fn accepted(job: &Job, rows: u64, chunks: u64) -> Response {
    let url = format!("/jobs/{}", job.id);
    let body = json!({
        "id": job.id,
        "url": url,
        "results_url": format!("{url}/results"),
        "model": job.model,
        "state": if chunks == 0 { "succeeded" } else { "queued" },
        "rows_total": rows,
        "chunks_total": chunks,
    });
    (
        StatusCode::ACCEPTED,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::LOCATION,
                HeaderValue::from_str(&url).unwrap_or(HeaderValue::from_static("/jobs")),
            ),
        ],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

fn jobs_of(app: &Arc<AppState>) -> Result<Arc<Jobs>, InferError> {
    app.jobs
        .clone()
        .ok_or_else(|| InferError::not_found("batch jobs are not enabled on this server"))
}

/// Stores a job and starts it.
async fn submit(
    app: &Arc<AppState>,
    t: Target,
    chunks: impl Iterator<Item = Result<Chunk, String>> + Send + 'static,
) -> Result<Response, InferError> {
    let jobs = jobs_of(app)?;
    let store = jobs.store()?;
    let job = t.job;
    let max_rows = jobs.cfg.max_rows;
    let j = job.clone();
    let (rows, n) = tokio::task::spawn_blocking(move || {
        let mut total = 0u64;
        let mut limited = chunks.map(|c| {
            let c = c?;
            total += c.rows;
            if total > max_rows {
                return Err(format!(
                    "LIMIT:the job has more than {max_rows} rows (--jobs-max-rows)"
                ));
            }
            Ok(c)
        });
        store.create(&j, &mut limited)
    })
    .await
    .map_err(internal)?
    .map_err(|e| match e.strip_prefix("LIMIT:") {
        Some(m) => InferError::new(ErrorKind::TooLarge, m),
        None => match e.strip_prefix("INPUT:") {
            Some(m) => InferError::invalid(m),
            None => internal(e),
        },
    })?;
    tracing::info!(job = %job.id, model = %job.model, rows, chunks = n, "batch job submitted");
    // Shared jobs are taken from the Redis stream by whichever server is free.
    if n > 0 && jobs.shared.is_none() {
        spawn_driver(app.clone(), job.id.clone());
    }
    Ok(accepted(&job, rows, n))
}

/// `POST /jobs`.
async fn create(
    AxState(app): AxState<Arc<AppState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = caller.map_or_else(crate::auth::Caller::anyone, |c| c.0);
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let fs = FState::of(&app);
    if essence == "multipart/form-data" {
        let boundary = multer::parse_boundary(&ct).map_err(|e| {
            InferError::invalid(format!(
                "multipart/form-data without a usable boundary: {e}"
            ))
        })?;
        return Ok(upload(&app, &fs, body, boundary, &caller).await?);
    }
    if !(essence == "application/json" || essence.ends_with("+json")) {
        return Err(InferError::new(
            ErrorKind::UnsupportedMediaType,
            format!("POST /jobs takes application/json or multipart/form-data, not '{essence}'"),
        )
        .into());
    }
    let bytes = read_body(body, &headers, Limit::flag(app.limits.max_body_bytes)).await?;
    let parsed: JsonJob<'_> = serde_json::from_slice(&bytes)
        .map_err(|e| InferError::invalid(format!("the job's JSON body does not parse: {e}")))?;
    let items = match (&parsed.rows, &parsed.records) {
        (Some(r), None) | (None, Some(r)) => r,
        _ => {
            return Err(InferError::invalid(
                "the job's JSON body needs exactly one of 'rows' (a list of rows) and 'records' (a list of objects), or upload a file as multipart/form-data",
            )
            .into())
        }
    };
    let t = target(&fs, &parsed.asked, &caller)?;
    let chunks = json_chunks(items, t.job.options.chunk_rows);
    Ok(submit(&app, t, chunks.into_iter()).await?)
}

/// A route alias with `job = true`: the body's list of rows or records becomes a job (the
/// Cortex tutorial's fire-and-forget batch endpoint).
pub async fn from_alias(
    fs: &FState,
    spec: &Spec,
    headers: &HeaderMap,
    body: Body,
    caller: &crate::auth::Caller,
) -> Result<Response, ApiError> {
    let app = &fs.app;
    let bytes = read_body(body, headers, Limit::flag(app.limits.max_body_bytes)).await?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| InferError::invalid(format!("the body does not parse as JSON: {e}")))?;
    let list = match &value {
        serde_json::Value::Array(_) => &value,
        serde_json::Value::Object(o) => match spec.request_key.as_deref().and_then(|k| o.get(k)) {
            Some(v @ serde_json::Value::Array(_)) => v,
            _ => {
                return Err(InferError::invalid(
                    "this route starts a batch job: send a JSON list of rows or records",
                )
                .into())
            }
        },
        _ => {
            return Err(InferError::invalid(
                "this route starts a batch job: send a JSON list of rows or records",
            )
            .into())
        }
    };
    let text = serde_json::to_string(list).unwrap_or_default();
    let items: Vec<&RawValue> = serde_json::from_str(&text)
        .map_err(|e| InferError::invalid(format!("the body does not parse as JSON: {e}")))?;
    let asked = Asked {
        model: Some(spec.model.clone()),
        ..Asked::default()
    };
    let t = target(fs, &asked, caller)?;
    let chunks = json_chunks(&items, t.job.options.chunk_rows);
    let mut answer = submit(app, t, chunks.into_iter()).await?;
    // The clients of such endpoints check for 200 (the Cortex tutorial's test.py does).
    *answer.status_mut() = StatusCode::OK;
    Ok(answer)
}

/// A multipart upload: option fields and one `file`, streamed to a file under `--data-dir`.
async fn upload(
    app: &Arc<AppState>,
    fs: &FState,
    body: Body,
    boundary: String,
    caller: &crate::auth::Caller,
) -> Result<Response, InferError> {
    let jobs = jobs_of(app)?;
    let uploads = jobs.cfg.data_dir.join("jobs-uploads");
    tokio::fs::create_dir_all(&uploads)
        .await
        .map_err(internal)?;
    let malformed =
        |e: multer::Error| InferError::invalid(format!("malformed multipart body: {e}"));
    let mut mp = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut asked = Asked::default();
    let mut file: Option<(PathBuf, Option<Format>)> = None;
    let guard = UploadGuard(Vec::new());
    let mut guard = guard;
    while let Some(mut f) = mp.next_field().await.map_err(malformed)? {
        let name = f.name().unwrap_or("").to_string();
        if name == "file" || (f.file_name().is_some() && file.is_none()) {
            let fname = f.file_name().unwrap_or("").to_ascii_lowercase();
            let ctype = f
                .content_type()
                .map(|m| m.essence_str().to_string())
                .unwrap_or_default();
            let format = if fname.ends_with(".csv") || ctype == "text/csv" {
                Some(Format::Csv)
            } else if fname.ends_with(".jsonl")
                || fname.ends_with(".ndjson")
                || fname.ends_with(".json")
                || ctype.contains("json")
            {
                Some(Format::Json)
            } else {
                None
            };
            let path = uploads.join(format!("{}.part", new_id()));
            guard.0.push(path.clone());
            let mut out = tokio::fs::File::create(&path).await.map_err(internal)?;
            let mut size = 0u64;
            while let Some(bytes) = f.chunk().await.map_err(malformed)? {
                size += bytes.len() as u64;
                if size > jobs.cfg.max_upload_bytes {
                    return Err(InferError::new(
                        ErrorKind::TooLarge,
                        format!(
                            "the uploaded file is larger than {} MB (--jobs-max-upload-mb)",
                            jobs.cfg.max_upload_bytes >> 20
                        ),
                    ));
                }
                tokio::io::AsyncWriteExt::write_all(&mut out, &bytes)
                    .await
                    .map_err(internal)?;
            }
            tokio::io::AsyncWriteExt::flush(&mut out)
                .await
                .map_err(internal)?;
            file = Some((path, format));
        } else {
            let text = f.text().await.map_err(malformed)?;
            if text.len() > 64 * 1024 {
                return Err(InferError::invalid(format!("field '{name}' is too long")));
            }
            asked.set_field(&name, text.trim())?;
        }
    }
    let Some((path, format)) = file else {
        return Err(InferError::invalid(
            "a multipart job needs a 'file' field holding CSV or JSON Lines (and a 'model' field)",
        ));
    };
    let t = target(fs, &asked, caller)?;
    let chunk_rows = t.job.options.chunk_rows;
    let reader = FileChunks::open(&path, format, chunk_rows).map_err(|e| {
        match e.strip_prefix("INPUT:") {
            Some(m) => InferError::invalid(m),
            None => internal(e),
        }
    })?;
    let r = submit(app, t, reader).await;
    drop(guard);
    r
}

/// Removes uploaded files when the request is done with them (they are in the store by then).
struct UploadGuard(Vec<PathBuf>);

impl Drop for UploadGuard {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The chunks of an uploaded CSV or JSON Lines file, read a chunk at a time.
struct FileChunks {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    format: Format,
    /// A CSV file's header line, put before every chunk's rows.
    header: Option<String>,
    chunk_rows: usize,
    idx: u64,
    row: u64,
    /// A first line read while looking for the header, to go in the first chunk.
    first: Option<String>,
}

impl FileChunks {
    fn open(
        path: &std::path::Path,
        format: Option<Format>,
        chunk_rows: usize,
    ) -> Result<FileChunks, String> {
        use std::io::BufRead;
        let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut lines = std::io::BufReader::with_capacity(1 << 20, f).lines();
        let mut first = None;
        for l in lines.by_ref() {
            let l =
                l.map_err(|e| format!("INPUT:the uploaded file cannot be read as text: {e}"))?;
            if !l.trim().is_empty() {
                first = Some(l);
                break;
            }
        }
        let format = format.unwrap_or(match first.as_deref().map(str::trim_start) {
            Some(l) if l.starts_with('{') || l.starts_with('[') => Format::Json,
            _ => Format::Csv,
        });
        let mut header = None;
        if format == Format::Csv {
            if let Some(l) = &first {
                let is_header = l.split(',').any(|c| {
                    let c = c.trim().trim_matches('"');
                    !c.is_empty() && parse::parse_number(c).is_err()
                });
                if is_header {
                    header = first.take();
                }
            }
        }
        Ok(FileChunks {
            lines,
            format,
            header,
            chunk_rows,
            idx: 0,
            row: 0,
            first,
        })
    }
}

impl Iterator for FileChunks {
    type Item = Result<Chunk, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut input = Vec::new();
        let mut rows = 0usize;
        match self.format {
            Format::Json => input.push(b'['),
            Format::Csv => {
                if let Some(h) = &self.header {
                    input.extend_from_slice(h.as_bytes());
                    input.push(b'\n');
                }
            }
        }
        while rows < self.chunk_rows {
            let line = match self.first.take() {
                Some(l) => l,
                None => match self.lines.next() {
                    Some(Ok(l)) => l,
                    Some(Err(e)) => {
                        return Some(Err(format!(
                            "INPUT:the uploaded file cannot be read as text: {e}"
                        )))
                    }
                    None => break,
                },
            };
            if line.trim().is_empty() {
                continue;
            }
            if self.format == Format::Json && rows > 0 {
                input.push(b',');
            }
            input.extend_from_slice(line.as_bytes());
            if self.format == Format::Csv {
                input.push(b'\n');
            }
            rows += 1;
        }
        if rows == 0 {
            return None;
        }
        if self.format == Format::Json {
            input.push(b']');
        }
        let c = Chunk {
            idx: self.idx,
            first_row: self.row,
            rows: rows as u64,
            format: self.format,
            input,
        };
        self.idx += 1;
        self.row += rows as u64;
        Some(Ok(c))
    }
}

fn status_json(job: &Job, errors: Option<Vec<store::ChunkError>>) -> serde_json::Value {
    let now = now_ms();
    let end = job.finished_ms.unwrap_or(now);
    let secs = job
        .started_ms
        .map(|s| (end - s).max(1) as f64 / 1000.0)
        .unwrap_or(0.0);
    let rate = if secs > 0.0 {
        job.rows_done as f64 / secs
    } else {
        0.0
    };
    let left = job.rows_total.saturating_sub(job.rows_done);
    let eta = if job.state.finished() {
        Some(0.0)
    } else if rate > 0.0 {
        Some((left as f64 / rate * 10.0).round() / 10.0)
    } else {
        None
    };
    let url = format!("/jobs/{}", job.id);
    let mut v = json!({
        "id": job.id,
        "url": url,
        "results_url": format!("{url}/results"),
        "model": job.model,
        "version": job.version,
        "state": job.state.as_str(),
        "rows_total": job.rows_total,
        "rows_done": job.rows_done,
        "rows_failed": job.rows_failed,
        "chunks_total": job.chunks_total,
        "chunks_done": job.chunks_done,
        "chunks_failed": job.chunks_failed,
        "rows_per_second": (rate * 10.0).round() / 10.0,
        "eta_seconds": eta,
        "created": rfc3339(job.created_ms),
        "started": job.started_ms.map(rfc3339),
        "finished": job.finished_ms.map(rfc3339),
        "options": job.options,
    });
    if let Some(e) = errors {
        v["errors"] = json!(e);
    }
    v
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

fn no_job(id: &str) -> InferError {
    InferError::not_found(format!(
        "no batch job '{id}' (finished jobs are kept for --jobs-keep-hours)"
    ))
}

/// Whether `caller` may see `job`: its owner, or a caller with the `manage` scope (anyone, with
/// keys off).
fn may_see(caller: &crate::auth::Caller, job: &Job) -> bool {
    caller.has(crate::auth::Scope::Manage)
        || (caller.owner().is_some() && caller.owner() == job.options.owner.as_deref())
}

/// The job `id`, when `caller` may see it: another's job is "not found", as one that does not
/// exist.
async fn load_for(
    app: &Arc<AppState>,
    id: &str,
    caller: &crate::auth::Caller,
) -> Result<(Arc<dyn JobStore>, Job), InferError> {
    let (store, job) = load(app, id).await?;
    if !may_see(caller, &job) {
        return Err(no_job(id));
    }
    Ok((store, job))
}

async fn load(app: &Arc<AppState>, id: &str) -> Result<(Arc<dyn JobStore>, Job), InferError> {
    let jobs = jobs_of(app)?;
    let Some(store) = jobs.existing()? else {
        return Err(no_job(id));
    };
    let (s, idc) = (store.clone(), id.to_string());
    match blocking(move || s.get(&idc)).await? {
        Some(j) => Ok((store, j)),
        None => Err(no_job(id)),
    }
}

/// `GET /jobs/{id}`.
async fn status(
    AxState(app): AxState<Arc<AppState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller.map_or_else(crate::auth::Caller::anyone, |c| c.0);
    let (store, job) = load_for(&app, &id, &caller).await?;
    let errors = if job.chunks_failed > 0 {
        let s = store.clone();
        Some(blocking(move || s.errors(&id, ERRORS_SHOWN)).await?)
    } else {
        Some(Vec::new())
    };
    Ok(json_response(StatusCode::OK, &status_json(&job, errors)))
}

/// `GET /jobs`: the latest jobs the caller may see (its own; every job with `manage`).
async fn list(
    AxState(app): AxState<Arc<AppState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> Result<Response, ApiError> {
    let caller = caller.map_or_else(crate::auth::Caller::anyone, |c| c.0);
    let jobs = jobs_of(&app)?;
    let list = match jobs.existing()? {
        Some(store) => blocking(move || store.list(LISTED)).await?,
        None => Vec::new(),
    };
    let items: Vec<serde_json::Value> = list
        .iter()
        .filter(|j| may_see(&caller, j))
        .map(|j| status_json(j, None))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "jobs": items })))
}

/// `POST /jobs/{id}/cancel`.
async fn cancel(
    AxState(app): AxState<Arc<AppState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller.map_or_else(crate::auth::Caller::anyone, |c| c.0);
    let (store, job) = load_for(&app, &id, &caller).await?;
    if job.state.finished() {
        return Err(ApiError::from(InferError::new(
            ErrorKind::InvalidInput,
            format!(
                "batch job '{id}' has already {}",
                match job.state {
                    State::Cancelled => "been cancelled".to_string(),
                    s => s.as_str().to_string(),
                }
            ),
        )));
    }
    if let Some(jobs) = app.jobs.clone() {
        if let Some(flag) = jobs
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            flag.store(true, Ordering::Relaxed);
        }
    }
    let idc = id.clone();
    let s = store.clone();
    blocking(move || s.cancel(&idc, now_ms())).await?;
    let (_, job) = load(&app, &id).await?;
    tracing::info!(job = %id, "batch job cancelled");
    Ok(json_response(StatusCode::OK, &status_json(&job, None)))
}

/// Results read per step of the stream.
const RESULTS_STEP: usize = 16;

/// `GET /jobs/{id}/results`: the committed prefix, in input order, as JSON Lines or CSV.
async fn results(
    AxState(app): AxState<Arc<AppState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = caller.map_or_else(crate::auth::Caller::anyone, |c| c.0);
    let (store, job) = load_for(&app, &id, &caller).await?;
    let csv = crate::friendly::wants_csv(&headers);
    let classes: Option<Vec<String>> = if csv && job.options.probabilities {
        let fs = FState::of(&app);
        fs.f.latest_table(&job.model)
            .and_then(|t| t.classes.clone())
    } else {
        None
    };
    let header_line = csv.then(|| csv_header(&job, classes.as_deref()));
    let state = (store, id, 0u64, header_line);
    let stream = futures_util::stream::unfold(Some(state), move |st| async move {
        let (store, id, from, header_line) = st?;
        if let Some(h) = header_line {
            return Some((
                Ok::<Bytes, std::io::Error>(Bytes::from(h)),
                Some((store, id, from, None)),
            ));
        }
        let (s, idc) = (store.clone(), id.clone());
        let got = tokio::task::spawn_blocking(move || s.results(&idc, from, RESULTS_STEP))
            .await
            .ok()?
            .ok()?;
        if got.is_empty() {
            return None;
        }
        let n = got.len() as u64;
        let mut buf = Vec::with_capacity(got.iter().map(Vec::len).sum());
        for g in got {
            if csv {
                to_csv_lines(&g, &mut buf);
            } else {
                buf.extend_from_slice(&g);
            }
        }
        Some((Ok(Bytes::from(buf)), Some((store, id, from + n, None))))
    });
    let ctype = if csv {
        "text/csv"
    } else {
        "application/x-ndjson"
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (
                header::HeaderName::from_static("x-job-state"),
                HeaderValue::from_static(job.state.as_str()),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn csv_header(job: &Job, classes: Option<&[String]>) -> Vec<u8> {
    let mut h = String::from("row,prediction");
    if job.options.probabilities {
        match classes {
            Some(c) => {
                for c in c {
                    h.push_str(&format!(",probability_{c}"));
                }
            }
            None => h.push_str(",probabilities"),
        }
    }
    h.push_str(",error\n");
    h.into_bytes()
}

/// JSON result lines as CSV rows: `row`, `prediction` (a list joined by spaces), the
/// probabilities, `error`.
fn to_csv_lines(lines: &[u8], out: &mut Vec<u8>) {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_writer(Vec::new());
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let mut rec = vec![text(&v["row"]), text(&v["prediction"])];
        match &v["probabilities"] {
            serde_json::Value::Array(p) => rec.extend(p.iter().map(|x| x.to_string())),
            serde_json::Value::Null => {}
            other => rec.push(other.to_string()),
        }
        rec.push(text(&v["error"]));
        let _ = w.write_record(&rec);
    }
    out.extend(w.into_inner().unwrap_or_default());
}

/// The job routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/jobs", post(create).get(list))
        .route("/jobs/{id}", get(status))
        .route("/jobs/{id}/results", get(results))
        .route("/jobs/{id}/cancel", post(cancel))
}
