//! The embedded sink: a SQLite file (`<data-dir>/predictions.sqlite`), in WAL mode, each batch
//! written in one transaction; retention by age and by count. [`Reader`] reads it back (the
//! `GET /v2/models/{m}/predictions` route, `ferroserve log tail`), from its own connection.
//!
//! The schema (one row per record; `inputs` and `outputs` are JSON texts):
//!
//! ```sql
//! CREATE TABLE predictions (
//!     seq          INTEGER PRIMARY KEY AUTOINCREMENT, -- order of writing; the read cursor
//!     id           TEXT NOT NULL,    -- the request's id, or the server's fs-...
//!     time_ms      INTEGER NOT NULL, -- arrival, milliseconds since the Unix epoch
//!     model        TEXT NOT NULL,
//!     version      INTEGER NOT NULL,
//!     protocol     TEXT NOT NULL,    -- http_v2, grpc, grpc_stream, friendly, job
//!     route        TEXT NOT NULL,
//!     status       INTEGER NOT NULL, -- HTTP status (200 on success)
//!     error        TEXT,             -- the error message, on failure
//!     latency_us   INTEGER NOT NULL,
//!     rows         INTEGER NOT NULL,
//!     rows_omitted INTEGER NOT NULL, -- rows past max_rows, not in inputs and outputs
//!     inputs       TEXT,             -- [{name, datatype, shape, data}] or NULL
//!     outputs      TEXT
//! );
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags};
use serde_json::{json, Value};

use crate::record::{self, Record};
use crate::Sink;

/// The file's name under the data folder.
pub const FILE: &str = "predictions.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    route TEXT NOT NULL,
    status INTEGER NOT NULL,
    error TEXT,
    latency_us INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    rows_omitted INTEGER NOT NULL,
    inputs TEXT,
    outputs TEXT
);
CREATE INDEX IF NOT EXISTS predictions_model_seq ON predictions (model, seq);
";

/// Records one INSERT statement takes (13 values each, under SQLite's limit of 32,766).
const ROWS_PER_INSERT: usize = 64;

/// `INSERT ... VALUES (...), (...)` for `rows` records.
fn insert_sql(rows: usize) -> String {
    let mut s = String::from(
        "INSERT INTO predictions (id, time_ms, model, version, protocol, route, status, \
         error, latency_us, rows, rows_omitted, inputs, outputs) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            s.push(',');
        }
        s.push_str("(?,?,?,?,?,?,?,?,?,?,?,?,?)");
    }
    s
}

/// Retention: records older than `max_age`, and the oldest past `max_records`, are deleted
/// at each upkeep (about once a minute).
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_records: Option<u64>,
}

/// The SQLite sink.
pub struct SqliteSink {
    conn: Connection,
    retention: Retention,
}

impl SqliteSink {
    /// Opens (creating it and its folder if needed) the log in `data_dir`.
    pub fn open(data_dir: &Path, retention: Retention) -> Result<SqliteSink, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("the data folder cannot be created ({e})"))?;
        let conn = Connection::open(data_dir.join(FILE))
            .map_err(|e| format!("the prediction log cannot be opened ({e})"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .and_then(|_| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .map_err(|e| format!("the prediction log cannot be set up ({e})"))?;
        Ok(SqliteSink { conn, retention })
    }

    fn insert(&mut self, batch: &[Arc<Record>]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        // Up to ROWS_PER_INSERT records per statement: a statement's run costs more than a row.
        for chunk in batch.chunks(ROWS_PER_INSERT) {
            let mut st = tx.prepare_cached(&insert_sql(chunk.len()))?;
            let texts: Vec<_> = chunk
                .iter()
                .map(|r| (r.inputs_text(), r.outputs_text()))
                .collect();
            let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(13 * chunk.len());
            let numbers: Vec<[i64; 4]> = chunk
                .iter()
                .map(|r| {
                    [
                        r.version as i64,
                        r.latency_us as i64,
                        r.rows as i64,
                        r.rows_omitted as i64,
                    ]
                })
                .collect();
            for ((r, (inputs, outputs)), n) in chunk.iter().zip(&texts).zip(&numbers) {
                values.extend_from_slice(&[
                    &r.id,
                    &r.time_ms,
                    &r.model,
                    &n[0],
                    &r.protocol,
                    &r.route,
                    &r.status,
                    &r.error,
                    &n[1],
                    &n[2],
                    &n[3],
                    inputs,
                    outputs,
                ]);
            }
            st.execute(values.as_slice())?;
        }
        tx.commit()
    }

    /// Applies the retention now; the records deleted.
    pub fn prune(&mut self) -> rusqlite::Result<usize> {
        let mut n = 0;
        if let Some(age) = self.retention.max_age {
            let before = record::now_ms() - age.as_millis() as i64;
            // Records are written in the order they are answered, so the old ones are the
            // first by `seq`: found walking from the start, with no index on time (one less
            // index to update per insert).
            n += self.conn.execute(
                "DELETE FROM predictions WHERE seq < COALESCE(\
                 (SELECT seq FROM predictions WHERE time_ms >= ?1 ORDER BY seq LIMIT 1), \
                 (SELECT MAX(seq) + 1 FROM predictions))",
                [before],
            )?;
        }
        if let Some(max) = self.retention.max_records {
            n += self.conn.execute(
                "DELETE FROM predictions WHERE seq <= (SELECT MAX(seq) FROM predictions) - ?1",
                [max as i64],
            )?;
        }
        Ok(n)
    }
}

impl Sink for SqliteSink {
    fn write(&mut self, batch: &[Arc<Record>]) -> Result<(), String> {
        self.insert(batch).map_err(|e| e.to_string())
    }

    fn upkeep(&mut self) {
        match self.prune() {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "prediction log retention"),
            Err(e) => tracing::warn!(error = %e, "prediction log retention failed"),
        }
    }
}

/// What a read asks for: one model's records, oldest first, after `cursor`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub model: String,
    /// Milliseconds since the epoch, inclusive.
    pub since: Option<i64>,
    /// Milliseconds since the epoch, exclusive.
    pub until: Option<i64>,
    pub version: Option<u64>,
    pub outcome: Option<OutcomeFilter>,
    pub limit: usize,
    /// The `next` of the previous page.
    pub cursor: Option<i64>,
}

/// `outcome=`: `success` (status 200), `error` (any other), or one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeFilter {
    Success,
    Error,
    Status(u16),
}

impl OutcomeFilter {
    pub fn parse(s: &str) -> Option<OutcomeFilter> {
        match s {
            "success" => Some(OutcomeFilter::Success),
            "error" => Some(OutcomeFilter::Error),
            _ => s
                .parse()
                .ok()
                .filter(|c| (100..600).contains(c))
                .map(OutcomeFilter::Status),
        }
    }
}

/// A page of records and the cursor of the next one (`None` past the last record).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<Value>,
    pub next: Option<i64>,
    /// The `seq` of the last record of the page (a cursor after it, to follow new records).
    pub last: Option<i64>,
}

/// Reads the log back, from a connection of its own.
pub struct Reader {
    path: PathBuf,
}

impl Reader {
    pub fn new(data_dir: &Path) -> Reader {
        Reader {
            path: data_dir.join(FILE),
        }
    }

    /// One page of `q` (an empty page when the log does not exist yet).
    pub fn page(&self, q: &Query) -> Result<Page, String> {
        if !self.path.exists() {
            return Ok(Page {
                records: Vec::new(),
                next: None,
                last: None,
            });
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("the prediction log cannot be read ({e})"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let (status_min, status_max, status_not) = match q.outcome {
            None => (0, 999, -1),
            Some(OutcomeFilter::Success) => (200, 200, -1),
            Some(OutcomeFilter::Error) => (0, 999, 200),
            Some(OutcomeFilter::Status(s)) => (s as i64, s as i64, -1),
        };
        let mut st = conn
            .prepare_cached(
                "SELECT seq, id, time_ms, model, version, protocol, route, status, error, \
                 latency_us, rows, rows_omitted, inputs, outputs FROM predictions \
                 WHERE model = ?1 AND seq > ?2 AND time_ms >= ?3 AND time_ms < ?4 \
                 AND (?5 < 0 OR version = ?5) AND status BETWEEN ?6 AND ?7 AND status != ?8 \
                 ORDER BY seq LIMIT ?9",
            )
            .map_err(|e| e.to_string())?;
        let limit = q.limit.max(1);
        let rows = st
            .query_map(
                params![
                    q.model,
                    q.cursor.unwrap_or(0),
                    q.since.unwrap_or(i64::MIN),
                    q.until.unwrap_or(i64::MAX),
                    q.version.map_or(-1, |v| v as i64),
                    status_min,
                    status_max,
                    status_not,
                    (limit + 1) as i64,
                ],
                |row| {
                    let text = |i: usize| -> rusqlite::Result<Value> {
                        Ok(row
                            .get::<_, Option<String>>(i)?
                            .and_then(|s| serde_json::from_str(&s).ok())
                            .unwrap_or(Value::Null))
                    };
                    let seq: i64 = row.get(0)?;
                    let record = json!({
                        "id": row.get::<_, String>(1)?,
                        "time": record::rfc3339(row.get(2)?),
                        "model": row.get::<_, String>(3)?,
                        "version": row.get::<_, i64>(4)?.to_string(),
                        "protocol": row.get::<_, String>(5)?,
                        "route": row.get::<_, String>(6)?,
                        "status": row.get::<_, i64>(7)?,
                        "error": row.get::<_, Option<String>>(8)?,
                        "latency_us": row.get::<_, i64>(9)?,
                        "rows": row.get::<_, i64>(10)?,
                        "rows_omitted": row.get::<_, i64>(11)?,
                        "inputs": text(12)?,
                        "outputs": text(13)?,
                    });
                    Ok((seq, record))
                },
            )
            .map_err(|e| e.to_string())?;
        let mut records = Vec::new();
        let mut last = None;
        let mut more = false;
        for r in rows {
            let (seq, rec) = r.map_err(|e| e.to_string())?;
            if records.len() == limit {
                more = true;
                break;
            }
            last = Some(seq);
            records.push(rec);
        }
        Ok(Page {
            records,
            next: if more { last } else { None },
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64, model: &str, status: u16) -> Arc<Record> {
        Arc::new(Record {
            id: format!("r{i}"),
            time_ms: 1_000 + i as i64,
            model: model.into(),
            version: 1 + i % 2,
            protocol: "http_v2",
            route: format!("/v2/models/{model}/infer"),
            status,
            error: (status != 200).then(|| "bad".to_string()),
            latency_us: 10,
            rows: 1,
            rows_omitted: 0,
            inputs: None,
            outputs: Some(crate::Values::Tensors(vec![ferroserve_core::Tensor::new(
                "y",
                vec![1],
                ferroserve_core::TensorData::Fp64(vec![i as f64]),
            )])),
        })
    }

    #[test]
    fn written_records_read_back_in_pages_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = SqliteSink::open(dir.path(), Retention::default()).unwrap();
        let batch: Vec<_> = (0..10)
            .map(|i| {
                rec(
                    i,
                    if i == 3 { "other" } else { "m" },
                    if i == 5 { 400 } else { 200 },
                )
            })
            .collect();
        sink.write(&batch).unwrap();
        let reader = Reader::new(dir.path());
        let mut q = Query {
            model: "m".into(),
            limit: 4,
            ..Default::default()
        };
        let mut ids = Vec::new();
        for _ in 0..5 {
            let page = reader.page(&q).unwrap();
            ids.extend(
                page.records
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_string()),
            );
            match page.next {
                Some(n) => q.cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(ids, ["r0", "r1", "r2", "r4", "r5", "r6", "r7", "r8", "r9"]);
        let only = |f: &dyn Fn(&mut Query)| {
            let mut q = Query {
                model: "m".into(),
                limit: 100,
                ..Default::default()
            };
            f(&mut q);
            reader
                .page(&q)
                .unwrap()
                .records
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(only(&|q| q.outcome = Some(OutcomeFilter::Error)), ["r5"]);
        assert_eq!(
            only(&|q| q.outcome = Some(OutcomeFilter::Status(400))),
            ["r5"]
        );
        assert_eq!(only(&|q| q.version = Some(2)), ["r1", "r5", "r7", "r9"]);
        assert_eq!(
            only(&|q| {
                q.since = Some(1_002);
                q.until = Some(1_005)
            }),
            ["r2", "r4"]
        );
        let first = &reader.page(&q).unwrap();
        assert!(first.records.is_empty() || first.records[0]["outputs"][0]["data"].is_array());
    }

    #[test]
    fn retention_keeps_the_newest_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = SqliteSink::open(
            dir.path(),
            Retention {
                max_age: None,
                max_records: Some(3),
            },
        )
        .unwrap();
        let batch: Vec<_> = (0..10).map(|i| rec(i, "m", 200)).collect();
        sink.write(&batch).unwrap();
        assert_eq!(sink.prune().unwrap(), 7);
        let page = Reader::new(dir.path())
            .page(&Query {
                model: "m".into(),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let ids: Vec<_> = page.records.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, [json!("r7"), json!("r8"), json!("r9")]);
        // By age: every record here is from 1970.
        let mut sink = SqliteSink::open(
            dir.path(),
            Retention {
                max_age: Some(Duration::from_secs(3600)),
                max_records: None,
            },
        )
        .unwrap();
        assert_eq!(sink.prune().unwrap(), 3);
    }
}
