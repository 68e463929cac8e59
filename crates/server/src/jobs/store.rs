//! Where batch jobs live: one SQLite file under `--data-dir` (`jobs.sqlite`, WAL mode) holding
//! each job, its chunks (their input until they are done) and their results.
//!
//! A chunk is computed at least once and committed exactly once: its result and the job's
//! counters change in one transaction, and a result already there is never written again
//! (`INSERT OR IGNORE` on the chunk's key decides). A server killed mid-job finds the chunks not
//! committed still pending when it starts again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// The database's file name under `--data-dir`.
pub const FILE: &str = "jobs.sqlite";

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version TEXT,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    rows_total INTEGER NOT NULL,
    chunks_total INTEGER NOT NULL,
    rows_done INTEGER NOT NULL DEFAULT 0,
    chunks_done INTEGER NOT NULL DEFAULT 0,
    rows_failed INTEGER NOT NULL DEFAULT 0,
    chunks_failed INTEGER NOT NULL DEFAULT 0,
    options TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    job TEXT NOT NULL,
    idx INTEGER NOT NULL,
    first_row INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    format TEXT NOT NULL,
    input BLOB,
    state TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    job TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job, idx)
) WITHOUT ROWID;
";

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(s: &str) -> State {
        match s {
            "queued" => State::Queued,
            "running" => State::Running,
            "succeeded" => State::Succeeded,
            "cancelled" => State::Cancelled,
            _ => State::Failed,
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

/// The options a job was submitted with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Options {
    pub chunk_rows: usize,
    pub concurrency: usize,
    pub retries: u32,
    pub timeout_secs: f64,
    pub probabilities: bool,
    /// Who submitted it, when keys are checked: the key's name, or `jwt:` and the token's
    /// subject. Only they, and callers with the `manage` scope, see it, read its results and
    /// cancel it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub model: String,
    pub version: Option<String>,
    pub state: State,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub rows_total: u64,
    pub chunks_total: u64,
    pub rows_done: u64,
    pub chunks_done: u64,
    pub rows_failed: u64,
    pub chunks_failed: u64,
    pub options: Options,
}

/// How a chunk's input text is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON list of rows or records.
    Json,
    /// CSV, the file's header line (if any) first.
    Csv,
}

impl Format {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// One chunk to run.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub idx: u64,
    pub first_row: u64,
    pub rows: u64,
    pub format: Format,
    pub input: Vec<u8>,
}

/// A failed chunk, for the job's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkError {
    pub chunk: u64,
    /// The first and last rows it covers.
    pub rows: [u64; 2],
    pub error: String,
    pub attempts: u32,
}

/// What the job routes and drivers need of where jobs live: this SQLite file ([`Store`]) or,
/// with `--jobs-redis`, Redis ([`super::shared::RedisStore`]). Every call blocks (run them on
/// a blocking thread).
pub trait JobStore: Send + Sync {
    /// Stores a new job, queued, with its chunks (taken one at a time from `chunks`): a job is
    /// there whole or not at all. Returns its rows and chunks.
    fn create(
        &self,
        job: &Job,
        chunks: &mut dyn Iterator<Item = Result<Chunk, String>>,
    ) -> Result<(u64, u64), String>;
    fn get(&self, id: &str) -> Result<Option<Job>, String>;
    /// The newest jobs first, at most `limit`.
    fn list(&self, limit: usize) -> Result<Vec<Job>, String>;
    /// One chunk's input, if it is still pending.
    fn chunk(&self, id: &str, idx: u64) -> Result<Option<Chunk>, String>;
    /// Marks a queued job running (its start time).
    fn start(&self, id: &str, now_ms: i64) -> Result<(), String>;
    /// Commits one chunk's result lines, exactly once: `error` set for a chunk that failed
    /// (its lines then say so for each row). Returns whether this call committed it (false: it
    /// was committed before, or the job is no longer running). The job finishes with its last
    /// chunk.
    fn commit(
        &self,
        id: &str,
        chunk: &Chunk,
        data: &[u8],
        error: Option<&str>,
        attempts: u32,
        now_ms: i64,
    ) -> Result<bool, String>;
    /// Cancels a job that has not finished; returns its state after the call.
    fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<State>, String>;
    /// A job's failed chunks, at most `limit`.
    fn errors(&self, id: &str, limit: usize) -> Result<Vec<ChunkError>, String>;
    /// Up to `limit` committed results from chunk `from` on, stopping at the first chunk not
    /// committed (results are read in input order).
    fn results(&self, id: &str, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, String>;
    /// Deletes the jobs that finished before `before_ms`; returns how many.
    fn expire(&self, before_ms: i64) -> Result<usize, String>;
}

/// The jobs database.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn err(e: rusqlite::Error) -> String {
    e.to_string()
}

impl Store {
    /// Opens (creating if needed) `<dir>/jobs.sqlite`.
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the data folder: {e}"))?;
        let path = dir.join(FILE);
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Whether a database exists under `dir` (jobs to resume).
    pub fn exists(dir: &Path) -> bool {
        dir.join(FILE).exists()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
        let opts: String = r.get(13)?;
        let state: String = r.get(3)?;
        Ok(Job {
            id: r.get(0)?,
            model: r.get(1)?,
            version: r.get(2)?,
            state: State::parse(&state),
            created_ms: r.get(4)?,
            started_ms: r.get(5)?,
            finished_ms: r.get(6)?,
            rows_total: r.get::<_, i64>(7)? as u64,
            chunks_total: r.get::<_, i64>(8)? as u64,
            rows_done: r.get::<_, i64>(9)? as u64,
            chunks_done: r.get::<_, i64>(10)? as u64,
            rows_failed: r.get::<_, i64>(11)? as u64,
            chunks_failed: r.get::<_, i64>(12)? as u64,
            options: serde_json::from_str(&opts).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    13,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        })
    }

    const COLUMNS: &'static str = "id, model, version, state, created_ms, started_ms, finished_ms, rows_total, chunks_total, rows_done, chunks_done, rows_failed, chunks_failed, options";

    /// Jobs not finished, oldest first: what a starting server resumes.
    pub fn unfinished(&self) -> Result<Vec<Job>, String> {
        let conn = self.lock();
        let mut st = conn
            .prepare(&format!(
                "SELECT {} FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_ms, id",
                Self::COLUMNS
            ))
            .map_err(err)?;
        let rows = st.query_map([], Self::row_to_job).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    /// The indices of a job's chunks not committed yet, in order.
    pub fn pending(&self, id: &str) -> Result<Vec<u64>, String> {
        let conn = self.lock();
        let mut st = conn
            .prepare("SELECT idx FROM chunks WHERE job = ?1 AND state = 'pending' ORDER BY idx")
            .map_err(err)?;
        let rows = st
            .query_map(params![id], |r| r.get::<_, i64>(0).map(|i| i as u64))
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }
}

impl JobStore for Store {
    fn create(
        &self,
        job: &Job,
        chunks: &mut dyn Iterator<Item = Result<Chunk, String>>,
    ) -> Result<(u64, u64), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(err)?;
        let opts = serde_json::to_string(&job.options).map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO jobs (id, model, version, state, created_ms, rows_total, chunks_total, options)
             VALUES (?1, ?2, ?3, 'queued', ?4, 0, 0, ?5)",
            params![job.id, job.model, job.version, job.created_ms, opts],
        )
        .map_err(err)?;
        let (mut rows, mut n) = (0u64, 0u64);
        {
            let mut ins = tx
                .prepare(
                    "INSERT INTO chunks (job, idx, first_row, rows, format, input) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for c in chunks {
                let c = c?;
                ins.execute(params![
                    job.id,
                    c.idx as i64,
                    c.first_row as i64,
                    c.rows as i64,
                    c.format.as_str(),
                    c.input
                ])
                .map_err(err)?;
                rows += c.rows;
                n += 1;
            }
        }
        tx.execute(
            "UPDATE jobs SET rows_total = ?2, chunks_total = ?3 WHERE id = ?1",
            params![job.id, rows as i64, n as i64],
        )
        .map_err(err)?;
        if n == 0 {
            tx.execute(
                "UPDATE jobs SET state = 'succeeded', started_ms = created_ms, finished_ms = created_ms WHERE id = ?1",
                params![job.id],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok((rows, n))
    }

    fn get(&self, id: &str) -> Result<Option<Job>, String> {
        let conn = self.lock();
        conn.query_row(
            &format!("SELECT {} FROM jobs WHERE id = ?1", Self::COLUMNS),
            params![id],
            Self::row_to_job,
        )
        .optional()
        .map_err(err)
    }

    fn list(&self, limit: usize) -> Result<Vec<Job>, String> {
        let conn = self.lock();
        let mut st = conn
            .prepare(&format!(
                "SELECT {} FROM jobs ORDER BY created_ms DESC, id DESC LIMIT ?1",
                Self::COLUMNS
            ))
            .map_err(err)?;
        let rows = st
            .query_map(params![limit as i64], Self::row_to_job)
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn chunk(&self, id: &str, idx: u64) -> Result<Option<Chunk>, String> {
        let conn = self.lock();
        conn.query_row(
            "SELECT first_row, rows, format, input FROM chunks WHERE job = ?1 AND idx = ?2 AND state = 'pending'",
            params![id, idx as i64],
            |r| {
                let f: String = r.get(2)?;
                Ok(Chunk {
                    idx,
                    first_row: r.get::<_, i64>(0)? as u64,
                    rows: r.get::<_, i64>(1)? as u64,
                    format: if f == "csv" { Format::Csv } else { Format::Json },
                    input: r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                })
            },
        )
        .optional()
        .map_err(err)
    }

    fn start(&self, id: &str, now_ms: i64) -> Result<(), String> {
        let conn = self.lock();
        conn.execute(
            "UPDATE jobs SET state = 'running', started_ms = COALESCE(started_ms, ?2) WHERE id = ?1 AND state = 'queued'",
            params![id, now_ms],
        )
        .map_err(err)?;
        Ok(())
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
        let idx = chunk.idx;
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(err)?;
        let running: Option<String> = tx
            .query_row("SELECT state FROM jobs WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?;
        if !matches!(running.as_deref(), Some("running") | Some("queued")) {
            return Ok(false);
        }
        let added = tx
            .execute(
                "INSERT OR IGNORE INTO results (job, idx, data) VALUES (?1, ?2, ?3)",
                params![id, idx as i64, data],
            )
            .map_err(err)?;
        if added == 0 {
            return Ok(false);
        }
        let rows: i64 = tx
            .query_row(
                "SELECT rows FROM chunks WHERE job = ?1 AND idx = ?2",
                params![id, idx as i64],
                |r| r.get(0),
            )
            .map_err(err)?;
        let failed = error.is_some();
        tx.execute(
            "UPDATE chunks SET state = ?3, error = ?4, attempts = ?5, input = NULL WHERE job = ?1 AND idx = ?2",
            params![
                id,
                idx as i64,
                if failed { "failed" } else { "done" },
                error,
                attempts
            ],
        )
        .map_err(err)?;
        tx.execute(
            "UPDATE jobs SET rows_done = rows_done + ?2, chunks_done = chunks_done + 1,
                 rows_failed = rows_failed + ?3, chunks_failed = chunks_failed + ?4
             WHERE id = ?1",
            params![id, rows, if failed { rows } else { 0 }, failed as i64],
        )
        .map_err(err)?;
        tx.execute(
            "UPDATE jobs SET finished_ms = ?2,
                 state = CASE WHEN chunks_failed > 0 THEN 'failed' ELSE 'succeeded' END
             WHERE id = ?1 AND chunks_done = chunks_total",
            params![id, now_ms],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }

    fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<State>, String> {
        let conn = self.lock();
        conn.execute(
            "UPDATE jobs SET state = 'cancelled', finished_ms = ?2 WHERE id = ?1 AND state IN ('queued', 'running')",
            params![id, now_ms],
        )
        .map_err(err)?;
        conn.execute(
            "UPDATE chunks SET input = NULL WHERE job = ?1 AND state = 'pending'
               AND (SELECT state FROM jobs WHERE id = ?1) = 'cancelled'",
            params![id],
        )
        .map_err(err)?;
        conn.query_row("SELECT state FROM jobs WHERE id = ?1", params![id], |r| {
            r.get::<_, String>(0)
        })
        .optional()
        .map(|s| s.map(|s| State::parse(&s)))
        .map_err(err)
    }

    fn errors(&self, id: &str, limit: usize) -> Result<Vec<ChunkError>, String> {
        let conn = self.lock();
        let mut st = conn
            .prepare(
                "SELECT idx, first_row, rows, error, attempts FROM chunks
                 WHERE job = ?1 AND state = 'failed' ORDER BY idx LIMIT ?2",
            )
            .map_err(err)?;
        let rows = st
            .query_map(params![id, limit as i64], |r| {
                let first = r.get::<_, i64>(1)? as u64;
                let n = r.get::<_, i64>(2)? as u64;
                Ok(ChunkError {
                    chunk: r.get::<_, i64>(0)? as u64,
                    rows: [first, first + n.saturating_sub(1)],
                    error: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    attempts: r.get::<_, i64>(4)? as u32,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn results(&self, id: &str, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, String> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(
                "SELECT idx, data FROM results WHERE job = ?1 AND idx >= ?2 ORDER BY idx LIMIT ?3",
            )
            .map_err(err)?;
        let mut rows = st
            .query(params![id, from as i64, limit as i64])
            .map_err(err)?;
        let mut out = Vec::new();
        let mut want = from;
        while let Some(r) = rows.next().map_err(err)? {
            let idx = r.get::<_, i64>(0).map_err(err)? as u64;
            if idx != want {
                break;
            }
            out.push(r.get::<_, Vec<u8>>(1).map_err(err)?);
            want += 1;
        }
        Ok(out)
    }

    fn expire(&self, before_ms: i64) -> Result<usize, String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(err)?;
        let ids: Vec<String> = {
            let mut st = tx
                .prepare("SELECT id FROM jobs WHERE finished_ms IS NOT NULL AND finished_ms < ?1")
                .map_err(err)?;
            let r = st
                .query_map(params![before_ms], |r| r.get(0))
                .map_err(err)?;
            r.collect::<Result<_, _>>().map_err(err)?
        };
        for id in &ids {
            tx.execute("DELETE FROM results WHERE job = ?1", params![id])
                .map_err(err)?;
            tx.execute("DELETE FROM chunks WHERE job = ?1", params![id])
                .map_err(err)?;
            tx.execute("DELETE FROM jobs WHERE id = ?1", params![id])
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> Job {
        Job {
            id: id.into(),
            model: "m".into(),
            version: None,
            state: State::Queued,
            created_ms: 1,
            started_ms: None,
            finished_ms: None,
            rows_total: 0,
            chunks_total: 0,
            rows_done: 0,
            chunks_done: 0,
            rows_failed: 0,
            chunks_failed: 0,
            options: Options {
                chunk_rows: 2,
                concurrency: 1,
                retries: 0,
                timeout_secs: 1.0,
                probabilities: false,
                owner: None,
            },
        }
    }

    fn chunks(n: u64) -> impl Iterator<Item = Result<Chunk, String>> {
        (0..n).map(|i| {
            Ok(Chunk {
                idx: i,
                first_row: 2 * i,
                rows: 2,
                format: Format::Json,
                input: b"[[1],[2]]".to_vec(),
            })
        })
    }

    /// Chunk `i` of [`chunks`] (as a commit names it).
    fn at(i: u64) -> Chunk {
        chunks(i + 1).last().unwrap().unwrap()
    }

    #[test]
    fn a_chunk_commits_once_and_the_last_one_finishes_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.create(&job("a"), &mut chunks(3)).unwrap(), (6, 3));
        s.start("a", 2).unwrap();
        assert_eq!(s.pending("a").unwrap(), vec![0, 1, 2]);
        assert!(s.commit("a", &at(1), b"one\n", None, 1, 3).unwrap());
        assert!(!s.commit("a", &at(1), b"again\n", None, 1, 3).unwrap());
        // In order: nothing before chunk 0 is committed.
        assert!(s.results("a", 0, 10).unwrap().is_empty());
        assert!(s.commit("a", &at(0), b"zero\n", None, 1, 4).unwrap());
        assert_eq!(
            s.results("a", 0, 10).unwrap(),
            vec![b"zero\n".to_vec(), b"one\n".to_vec()]
        );
        assert_eq!(s.get("a").unwrap().unwrap().state, State::Running);
        assert!(s.commit("a", &at(2), b"two\n", Some("bad"), 2, 5).unwrap());
        let j = s.get("a").unwrap().unwrap();
        assert_eq!(j.state, State::Failed);
        assert_eq!((j.rows_done, j.rows_failed, j.chunks_done), (6, 2, 3));
        assert_eq!(j.finished_ms, Some(5));
        let e = s.errors("a", 10).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].rows, [4, 5]);
        assert!(s.pending("a").unwrap().is_empty());
    }

    #[test]
    fn a_cancelled_job_takes_no_more_results_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.create(&job("b"), &mut chunks(2)).unwrap();
        assert_eq!(s.cancel("b", 7).unwrap(), Some(State::Cancelled));
        assert!(!s.commit("b", &at(0), b"x\n", None, 1, 8).unwrap());
        assert!(s.unfinished().unwrap().is_empty());
        assert_eq!(s.cancel("nope", 7).unwrap(), None);
        assert_eq!(s.expire(7).unwrap(), 0);
        assert_eq!(s.expire(8).unwrap(), 1);
        assert!(s.get("b").unwrap().is_none());
    }

    #[test]
    fn jobs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.create(&job("c"), &mut chunks(2)).unwrap();
            s.commit("c", &at(0), b"z\n", None, 1, 2).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.unfinished().unwrap().len(), 1);
        assert_eq!(s.pending("c").unwrap(), vec![1]);
        assert_eq!(s.chunk("c", 1).unwrap().unwrap().first_row, 2);
        assert!(s.chunk("c", 0).unwrap().is_none());
    }
}
