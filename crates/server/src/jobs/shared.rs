//! Batch jobs shared by several servers through Redis (`--jobs-redis redis://HOST:PORT[/DB]`):
//! job state and results where every server reads them, and the chunks to run in one Redis
//! Stream read by a consumer group, so that any server takes the next chunk (docs/batch.md).
//!
//! Keys (the `{ID}` braces are a Redis Cluster hash tag: a job's keys live on one node):
//!
//! - `ferroserve:jobs:{ID}`, a hash: the job (`model`, `version`, `state`, `created_ms`,
//!   `started_ms`, `finished_ms`, `rows_total`, `chunks_total`, `rows_done`, `chunks_done`,
//!   `rows_failed`, `chunks_failed`, `options`).
//! - `ferroserve:jobs:{ID}:inputs`, a hash: chunk index → `first_row rows format\n` and the
//!   chunk's input text; a chunk's field goes when it commits.
//! - `ferroserve:jobs:{ID}:results`, a hash: chunk index → its result lines.
//! - `ferroserve:jobs:{ID}:errors`, a hash: chunk index → the failed chunk (JSON).
//! - `ferroserve:jobs:index`, a sorted set: job ids by creation time (`GET /jobs`).
//! - `ferroserve:jobs:chunks`, a stream with the consumer group `ferroserve`: one entry
//!   (`job`, `chunk`) per chunk to run, deleted once the chunk is committed.
//!
//! A chunk is committed exactly once: one Lua script checks the job is running, writes the
//! result with `HSETNX` (a second commit of the same chunk changes nothing) and moves the
//! counters, finishing the job with its last chunk (its keys then expire after
//! `--jobs-keep-hours`). A chunk is computed at least once: a server that dies holding entries
//! leaves them pending in the group, and the others take them over with `XAUTOCLAIM` once they
//! have been idle for the visibility timeout; a server computing a chunk keeps its entry fresh
//! (`XCLAIM ... JUSTID`) so that a slow chunk is not taken over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{Connection, RedisResult, Script};

use super::store::{Chunk, ChunkError, Format, Job, JobStore, State};

/// The stream of chunks to run.
pub const STREAM: &str = "ferroserve:jobs:chunks";
/// The consumer group every server reads [`STREAM`] in.
pub const GROUP: &str = "ferroserve";
/// The sorted set of job ids.
pub const INDEX: &str = "ferroserve:jobs:index";

const TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept for reuse.
const POOLED: usize = 8;
/// Chunks written per pipeline when a job is created (and at most this many bytes).
const PIPELINE_CHUNKS: usize = 64;
const PIPELINE_BYTES: usize = 8 << 20;

fn job_key(id: &str) -> String {
    format!("ferroserve:jobs:{{{id}}}")
}

fn sub_key(id: &str, what: &str) -> String {
    format!("ferroserve:jobs:{{{id}}}:{what}")
}

/// One chunk delivered to this server: its stream entry, job and index.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry: String,
    pub job: String,
    pub idx: u64,
}

impl Delivery {
    fn of(s: &StreamId) -> Option<Delivery> {
        Some(Delivery {
            entry: s.id.clone(),
            job: s.get::<String>("job")?,
            idx: s.get::<String>("chunk")?.parse().ok()?,
        })
    }
}

const START: &str = r"
if redis.call('HGET', KEYS[1], 'state') == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'started_ms', ARGV[1])
end
return 1
";

/// KEYS: job, results, errors, inputs. ARGV: chunk, data, error JSON ('' when it succeeded),
/// now, rows, keep seconds.
const COMMIT: &str = r"
local s = redis.call('HGET', KEYS[1], 'state')
if s ~= 'running' and s ~= 'queued' then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
local rows = tonumber(ARGV[5])
redis.call('HINCRBY', KEYS[1], 'rows_done', rows)
local done = redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
if ARGV[3] ~= '' then
  redis.call('HINCRBY', KEYS[1], 'rows_failed', rows)
  redis.call('HINCRBY', KEYS[1], 'chunks_failed', 1)
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
end
if s == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running')
  redis.call('HSETNX', KEYS[1], 'started_ms', ARGV[4])
end
if done >= tonumber(redis.call('HGET', KEYS[1], 'chunks_total')) then
  local failed = tonumber(redis.call('HGET', KEYS[1], 'chunks_failed') or '0')
  local final = 'succeeded'
  if failed > 0 then final = 'failed' end
  redis.call('HSET', KEYS[1], 'state', final, 'finished_ms', ARGV[4])
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
end
return 1
";

/// KEYS: job, results, errors, inputs. ARGV: now, keep seconds. Returns the state after.
const CANCEL: &str = r"
local s = redis.call('HGET', KEYS[1], 'state')
if s == 'queued' or s == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_ms', ARGV[1])
  redis.call('DEL', KEYS[4])
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
  return 'cancelled'
end
return s
";

/// Jobs in Redis.
pub struct RedisStore {
    client: redis::Client,
    /// The URL without its password, for messages.
    shown: String,
    pool: Mutex<Vec<Connection>>,
    /// How long a finished job's keys live (`--jobs-keep-hours`).
    keep: Duration,
    start: Script,
    commit: Script,
    cancel: Script,
}

/// `url` without a password.
pub fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl RedisStore {
    /// Jobs in the Redis at `url`, kept `keep` after they finish. Connects on first use.
    pub fn new(url: &str, keep: Duration) -> Result<RedisStore, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("--jobs-redis {}: {e}", shown(url)))?;
        Ok(RedisStore {
            client,
            shown: shown(url),
            pool: Mutex::new(Vec::new()),
            keep,
            start: Script::new(START),
            commit: Script::new(COMMIT),
            cancel: Script::new(CANCEL),
        })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn keep_secs(&self) -> u64 {
        self.keep.as_secs().max(1)
    }

    /// Runs `f` on a pooled connection (a new one when none is free); a connection that
    /// failed is dropped, not pooled.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, String> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut c = match pooled {
            Some(c) => c,
            None => {
                let c = self
                    .client
                    .get_connection_with_timeout(TIMEOUT)
                    .map_err(|e| format!("Redis {}: {e}", self.shown))?;
                let _ = c.set_read_timeout(Some(TIMEOUT));
                let _ = c.set_write_timeout(Some(TIMEOUT));
                c
            }
        };
        match f(&mut c) {
            Ok(v) => {
                let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                if pool.len() < POOLED {
                    pool.push(c);
                }
                Ok(v)
            }
            Err(e) => {
                if !(e.is_io_error() || e.is_timeout() || e.is_connection_dropped()) {
                    let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                    if pool.len() < POOLED {
                        pool.push(c);
                    }
                }
                Err(format!("Redis {}: {e}", self.shown))
            }
        }
    }

    /// Creates the consumer group (and the stream) if they are not there.
    pub fn ensure_group(&self) -> Result<(), String> {
        let made = self.with(|c| {
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(STREAM)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query::<()>(c)
        });
        match made {
            Err(e) if e.contains("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Up to `count` chunks not yet delivered to any server, waiting at most `block` for one.
    pub fn read(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, String> {
        let reply: Option<StreamReadReply> = self.with(|c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(STREAM)
                .arg(">")
                .query(c)
        })?;
        Ok(reply
            .map(|r| {
                r.keys
                    .iter()
                    .flat_map(|k| k.ids.iter().filter_map(Delivery::of))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Takes over up to `count` chunks another consumer has held for at least `idle` (it died,
    /// or lost its connection), scanning the group's pending entries from `cursor`. Returns the
    /// cursor to go on from (`0-0` when the scan went round) and the chunks.
    pub fn autoclaim(
        &self,
        consumer: &str,
        idle: Duration,
        cursor: &str,
        count: usize,
    ) -> Result<(String, Vec<Delivery>), String> {
        let reply: StreamAutoClaimReply = self.with(|c| {
            redis::cmd("XAUTOCLAIM")
                .arg(STREAM)
                .arg(GROUP)
                .arg(consumer)
                .arg(idle.as_millis() as u64)
                .arg(cursor)
                .arg("COUNT")
                .arg(count)
                .query(c)
        })?;
        let got = reply.claimed.iter().filter_map(Delivery::of).collect();
        Ok((reply.next_stream_id, got))
    }

    /// Marks a chunk this server is computing as fresh, so that no other server takes it over.
    pub fn touch(&self, consumer: &str, entry: &str) -> Result<(), String> {
        self.with(|c| {
            redis::cmd("XCLAIM")
                .arg(STREAM)
                .arg(GROUP)
                .arg(consumer)
                .arg(0)
                .arg(entry)
                .arg("JUSTID")
                .query::<()>(c)
        })
    }

    /// Done with a chunk's entry (committed, or its job is gone or finished).
    pub fn ack(&self, entry: &str) -> Result<(), String> {
        self.with(|c| {
            redis::pipe()
                .cmd("XACK")
                .arg(STREAM)
                .arg(GROUP)
                .arg(entry)
                .ignore()
                .cmd("XDEL")
                .arg(STREAM)
                .arg(entry)
                .ignore()
                .query::<()>(c)
        })
    }

    fn write_job(&self, job: &Job, rows: u64, n: u64) -> Result<(), String> {
        let opts = serde_json::to_string(&job.options).map_err(|e| e.to_string())?;
        let key = job_key(&job.id);
        let created = job.created_ms.to_string();
        let mut fields: Vec<(&str, String)> = vec![
            ("model", job.model.clone()),
            ("version", job.version.clone().unwrap_or_default()),
            ("state", if n == 0 { "succeeded" } else { "queued" }.into()),
            ("created_ms", created.clone()),
            ("rows_total", rows.to_string()),
            ("chunks_total", n.to_string()),
            ("rows_done", "0".into()),
            ("chunks_done", "0".into()),
            ("rows_failed", "0".into()),
            ("chunks_failed", "0".into()),
            ("options", opts),
        ];
        if n == 0 {
            fields.push(("started_ms", created.clone()));
            fields.push(("finished_ms", created));
        }
        let mut p = redis::pipe();
        p.atomic();
        p.cmd("HSET").arg(&key);
        for (k, v) in &fields {
            p.arg(*k).arg(v);
        }
        p.ignore();
        p.cmd("ZADD")
            .arg(INDEX)
            .arg(job.created_ms)
            .arg(&job.id)
            .ignore();
        if n == 0 {
            p.cmd("EXPIRE").arg(&key).arg(self.keep_secs()).ignore();
        }
        self.with(|c| p.query::<()>(c))
    }

    fn create_inner(
        &self,
        job: &Job,
        chunks: &mut dyn Iterator<Item = Result<Chunk, String>>,
    ) -> Result<(u64, u64), String> {
        let inputs = sub_key(&job.id, "inputs");
        let (mut rows, mut n) = (0u64, 0u64);
        let mut p = redis::pipe();
        let (mut queued, mut bytes) = (0usize, 0usize);
        for c in chunks {
            let c = c?;
            let mut v = format!("{} {} {}\n", c.first_row, c.rows, c.format.as_str()).into_bytes();
            v.extend_from_slice(&c.input);
            bytes += v.len();
            p.cmd("HSET").arg(&inputs).arg(c.idx).arg(v).ignore();
            rows += c.rows;
            n += 1;
            queued += 1;
            if queued >= PIPELINE_CHUNKS || bytes >= PIPELINE_BYTES {
                self.with(|con| p.query::<()>(con))?;
                p = redis::pipe();
                (queued, bytes) = (0, 0);
            }
        }
        if queued > 0 {
            self.with(|con| p.query::<()>(con))?;
        }
        // The job before its entries: a server that reads an entry finds its job.
        self.write_job(job, rows, n)?;
        let mut first = 0u64;
        while first < n {
            let last = (first + 256).min(n);
            let mut p = redis::pipe();
            for idx in first..last {
                p.cmd("XADD")
                    .arg(STREAM)
                    .arg("*")
                    .arg("job")
                    .arg(&job.id)
                    .arg("chunk")
                    .arg(idx)
                    .ignore();
            }
            self.with(|con| p.query::<()>(con))?;
            first = last;
        }
        Ok((rows, n))
    }

    /// Removes what a job that could not be created left (best effort; entries already in the
    /// stream find no job and are dropped).
    fn remove(&self, id: &str) {
        let _ = self.with(|c| {
            redis::pipe()
                .cmd("DEL")
                .arg(job_key(id))
                .arg(sub_key(id, "inputs"))
                .ignore()
                .cmd("ZREM")
                .arg(INDEX)
                .arg(id)
                .ignore()
                .query::<()>(c)
        });
    }
}

fn job_of(id: &str, h: &HashMap<String, String>) -> Option<Job> {
    if h.is_empty() {
        return None;
    }
    let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
    let count = |k: &str| num(k).unwrap_or(0).max(0) as u64;
    Some(Job {
        id: id.to_string(),
        model: h.get("model")?.clone(),
        version: h.get("version").filter(|v| !v.is_empty()).cloned(),
        state: State::parse(h.get("state").map_or("", |s| s.as_str())),
        created_ms: num("created_ms").unwrap_or(0),
        started_ms: num("started_ms"),
        finished_ms: num("finished_ms"),
        rows_total: count("rows_total"),
        chunks_total: count("chunks_total"),
        rows_done: count("rows_done"),
        chunks_done: count("chunks_done"),
        rows_failed: count("rows_failed"),
        chunks_failed: count("chunks_failed"),
        options: serde_json::from_str(h.get("options")?).ok()?,
    })
}

/// A chunk's stored input: `first_row rows format\n` then its text.
fn chunk_of(idx: u64, v: &[u8]) -> Option<Chunk> {
    let nl = v.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&v[..nl]).ok()?;
    let mut parts = head.split(' ');
    let first_row = parts.next()?.parse().ok()?;
    let rows = parts.next()?.parse().ok()?;
    let format = Format::parse(parts.next()?)?;
    Some(Chunk {
        idx,
        first_row,
        rows,
        format,
        input: v[nl + 1..].to_vec(),
    })
}

impl JobStore for RedisStore {
    fn create(
        &self,
        job: &Job,
        chunks: &mut dyn Iterator<Item = Result<Chunk, String>>,
    ) -> Result<(u64, u64), String> {
        let made = self.create_inner(job, chunks);
        if made.is_err() {
            self.remove(&job.id);
        }
        made
    }

    fn get(&self, id: &str) -> Result<Option<Job>, String> {
        let h: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(job_key(id)).query(c))?;
        Ok(job_of(id, &h))
    }

    fn list(&self, limit: usize) -> Result<Vec<Job>, String> {
        let ids: Vec<String> = self.with(|c| {
            redis::cmd("ZREVRANGE")
                .arg(INDEX)
                .arg(0)
                .arg(limit.max(1) as i64 - 1)
                .query(c)
        })?;
        let mut p = redis::pipe();
        for id in &ids {
            p.cmd("HGETALL").arg(job_key(id));
        }
        let hs: Vec<HashMap<String, String>> = self.with(|c| p.query(c))?;
        Ok(ids
            .iter()
            .zip(&hs)
            .filter_map(|(id, h)| job_of(id, h))
            .collect())
    }

    fn chunk(&self, id: &str, idx: u64) -> Result<Option<Chunk>, String> {
        let v: Option<Vec<u8>> = self.with(|c| {
            redis::cmd("HGET")
                .arg(sub_key(id, "inputs"))
                .arg(idx)
                .query(c)
        })?;
        Ok(v.and_then(|v| chunk_of(idx, &v)))
    }

    fn start(&self, id: &str, now_ms: i64) -> Result<(), String> {
        self.with(|c| self.start.key(job_key(id)).arg(now_ms).invoke::<()>(c))
    }

    fn commit(
        &self,
        id: &str,
        chunk: &Chunk,
        data: &[u8],
        error: Option<&str>,
        attempts: u32,
        now_ms: i64,
    ) -> Result<bool, String> {
        let error = match error {
            Some(e) => serde_json::to_string(&ChunkError {
                chunk: chunk.idx,
                rows: [
                    chunk.first_row,
                    chunk.first_row + chunk.rows.saturating_sub(1),
                ],
                error: e.to_string(),
                attempts,
            })
            .map_err(|e| e.to_string())?,
            None => String::new(),
        };
        let done: i64 = self.with(|c| {
            self.commit
                .key(job_key(id))
                .key(sub_key(id, "results"))
                .key(sub_key(id, "errors"))
                .key(sub_key(id, "inputs"))
                .arg(chunk.idx)
                .arg(data)
                .arg(&error)
                .arg(now_ms)
                .arg(chunk.rows)
                .arg(self.keep_secs())
                .invoke(c)
        })?;
        Ok(done == 1)
    }

    fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<State>, String> {
        let s: Option<String> = self.with(|c| {
            self.cancel
                .key(job_key(id))
                .key(sub_key(id, "results"))
                .key(sub_key(id, "errors"))
                .key(sub_key(id, "inputs"))
                .arg(now_ms)
                .arg(self.keep_secs())
                .invoke(c)
        })?;
        Ok(s.map(|s| State::parse(&s)))
    }

    fn errors(&self, id: &str, limit: usize) -> Result<Vec<ChunkError>, String> {
        let h: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(sub_key(id, "errors")).query(c))?;
        let mut out: Vec<ChunkError> = h
            .values()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect();
        out.sort_by_key(|e| e.chunk);
        out.truncate(limit);
        Ok(out)
    }

    fn results(&self, id: &str, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, String> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let got: Vec<Option<Vec<u8>>> = self.with(|c| {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(sub_key(id, "results"));
            for idx in from..from + limit as u64 {
                cmd.arg(idx);
            }
            cmd.query(c)
        })?;
        Ok(got.into_iter().map_while(|v| v).collect())
    }

    /// Finished jobs' keys expire in Redis on their own; this removes the ids of the jobs gone
    /// from the index.
    fn expire(&self, _before_ms: i64) -> Result<usize, String> {
        let ids: Vec<String> =
            self.with(|c| redis::cmd("ZRANGE").arg(INDEX).arg(0).arg(-1).query(c))?;
        let mut gone = Vec::new();
        for batch in ids.chunks(512) {
            let mut p = redis::pipe();
            for id in batch {
                p.cmd("EXISTS").arg(job_key(id));
            }
            let there: Vec<bool> = self.with(|c| p.query(c))?;
            gone.extend(
                batch
                    .iter()
                    .zip(there)
                    .filter(|(_, t)| !t)
                    .map(|(id, _)| id.clone()),
            );
        }
        if !gone.is_empty() {
            self.with(|c| redis::cmd("ZREM").arg(INDEX).arg(&gone).query::<()>(c))?;
        }
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_chunk_reads_back() {
        let c = chunk_of(4, b"8000 2000 csv\na,b\n1,2\n").unwrap();
        assert_eq!((c.idx, c.first_row, c.rows), (4, 8000, 2000));
        assert_eq!(c.format, Format::Csv);
        assert_eq!(c.input, b"a,b\n1,2\n");
        assert!(chunk_of(1, b"no header line").is_none());
        assert!(chunk_of(1, b"1 2 xml\n").is_none());
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            shown("redis://:secret@10.0.0.1:6379/2"),
            "redis://10.0.0.1:6379/2"
        );
        assert_eq!(shown("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn a_jobs_keys_share_one_hash_tag() {
        assert_eq!(job_key("j1"), "ferroserve:jobs:{j1}");
        assert_eq!(sub_key("j1", "results"), "ferroserve:jobs:{j1}:results");
    }
}
