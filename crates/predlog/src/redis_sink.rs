//! The Redis sink (`--prediction-log redis://HOST:PORT[/DB]`): one stream per model,
//! `ferroserve:predictions:{model}`, each record one entry added with
//! `XADD key MAXLEN ~ N * field value ...` (a batch is one pipeline), so that
//! `redis-cli XRANGE ferroserve:predictions:iris - +` shows them.
//!
//! Fields of an entry: `id`, `time` (RFC 3339), `time_ms`, `model`, `version`, `protocol`,
//! `route`, `status`, `error` (empty on success), `latency_us`, `rows`, `rows_omitted`,
//! `inputs` and `outputs` (JSON texts; empty when not recorded).
//!
//! A connection that fails is dropped and made again on a later batch, after a back-off that
//! doubles from 100 ms to 10 s while Redis stays down; the batches in between fail at once (and
//! their records are counted as dropped), so a Redis that is down costs no time.

use std::sync::Arc;
use std::time::Duration;

use crate::record::{self, Record};
use crate::{Backoff, Sink};

/// The stream of `model`'s records.
pub fn stream_key(model: &str) -> String {
    format!("ferroserve:predictions:{model}")
}

const TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisSink {
    client: redis::Client,
    /// What the URL is shown as in messages (without a password).
    shown: String,
    conn: Option<redis::Connection>,
    maxlen: u64,
    backoff: Backoff,
}

impl RedisSink {
    /// A sink writing to `url`, each stream trimmed to about `maxlen` entries. The connection
    /// is made on the first batch.
    pub fn new(url: &str, maxlen: u64) -> Result<RedisSink, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{}: {e}", shown(url)))?;
        Ok(RedisSink {
            client,
            shown: shown(url),
            conn: None,
            maxlen: maxlen.max(1),
            backoff: Backoff::new(),
        })
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn connection(&mut self) -> Result<&mut redis::Connection, String> {
        if self.conn.is_none() {
            self.backoff.check(&self.shown)?;
            match self.client.get_connection_with_timeout(TIMEOUT) {
                Ok(c) => {
                    let _ = c.set_read_timeout(Some(TIMEOUT));
                    let _ = c.set_write_timeout(Some(TIMEOUT));
                    if self.backoff.succeeded() {
                        tracing::info!(redis = %self.shown, "prediction log: Redis is back");
                    }
                    self.conn = Some(c);
                }
                Err(e) => {
                    self.backoff.failed();
                    return Err(format!("{}: {e}", self.shown));
                }
            }
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }
}

impl Sink for RedisSink {
    fn write(&mut self, batch: &[Arc<Record>]) -> Result<(), String> {
        // Connected first: a Redis that is down costs no pipeline.
        self.connection()?;
        let maxlen = self.maxlen;
        let mut pipe = redis::pipe();
        for r in batch {
            pipe.cmd("XADD")
                .arg(stream_key(&r.model))
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*")
                .arg("id")
                .arg(&r.id)
                .arg("time")
                .arg(record::rfc3339(r.time_ms))
                .arg("time_ms")
                .arg(r.time_ms)
                .arg("model")
                .arg(&r.model)
                .arg("version")
                .arg(r.version)
                .arg("protocol")
                .arg(r.protocol)
                .arg("route")
                .arg(&r.route)
                .arg("status")
                .arg(r.status)
                .arg("error")
                .arg(r.error.as_deref().unwrap_or(""))
                .arg("latency_us")
                .arg(r.latency_us)
                .arg("rows")
                .arg(r.rows)
                .arg("rows_omitted")
                .arg(r.rows_omitted)
                .arg("inputs")
                .arg(r.inputs_text().as_deref().unwrap_or(""))
                .arg("outputs")
                .arg(r.outputs_text().as_deref().unwrap_or(""))
                .ignore();
        }
        let shown = self.shown.clone();
        let conn = self.connection()?;
        match pipe.query::<()>(conn) {
            Ok(()) => Ok(()),
            Err(e) => {
                // The next batch connects again (at once: a dropped connection is the usual
                // cause, and a server still down fails that connect and starts the back-off).
                self.conn = None;
                Err(format!("{shown}: {e}"))
            }
        }
    }
}

/// One stream entry's fields.
type Fields = std::collections::HashMap<String, String>;

/// Reads a model's stream back (`ferroserve log tail --redis`): entries as the JSON objects
/// the read-back route answers.
pub struct StreamReader {
    conn: redis::Connection,
    key: String,
}

impl StreamReader {
    pub fn open(url: &str, model: &str) -> Result<StreamReader, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{}: {e}", shown(url)))?;
        let conn = client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|e| format!("{}: {e}", shown(url)))?;
        Ok(StreamReader {
            conn,
            key: stream_key(model),
        })
    }

    /// The newest `n` entries, oldest first, with their stream ids.
    pub fn last(&mut self, n: usize) -> Result<Vec<(String, serde_json::Value)>, String> {
        let mut entries: Vec<(String, Fields)> = redis::cmd("XREVRANGE")
            .arg(&self.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(n.max(1))
            .query(&mut self.conn)
            .map_err(|e| e.to_string())?;
        entries.truncate(n);
        entries.reverse();
        Ok(entries
            .into_iter()
            .map(|(id, f)| (id, entry_json(&f)))
            .collect())
    }

    /// Entries after the stream id `after` (`$` for only new ones), waiting at most `block`
    /// for the first.
    pub fn after(
        &mut self,
        after: &str,
        block: Duration,
    ) -> Result<Vec<(String, serde_json::Value)>, String> {
        type Reply = Option<Vec<(String, Vec<(String, Fields)>)>>;
        let reply: Reply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(after)
            .query(&mut self.conn)
            .map_err(|e| e.to_string())?;
        Ok(reply
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(_, entries)| entries)
            .map(|(id, f)| (id, entry_json(&f)))
            .collect())
    }
}

/// A stream entry as the record's JSON object (the fields in the same types as the read-back
/// route's).
fn entry_json(f: &Fields) -> serde_json::Value {
    let text = |k: &str| f.get(k).cloned().unwrap_or_default();
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let json_or_null = |k: &str| {
        f.get(k)
            .filter(|v| !v.is_empty())
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let error = f.get("error").filter(|e| !e.is_empty()).cloned();
    serde_json::json!({
        "id": text("id"),
        "time": text("time"),
        "model": text("model"),
        "version": text("version"),
        "protocol": text("protocol"),
        "route": text("route"),
        "status": num("status"),
        "error": error,
        "latency_us": num("latency_us"),
        "rows": num("rows"),
        "rows_omitted": num("rows_omitted"),
        "inputs": json_or_null("inputs"),
        "outputs": json_or_null("outputs"),
    })
}

/// `url` without its password.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            shown("redis://:secret@host:6379/2"),
            "redis://…@host:6379/2"
        );
        assert_eq!(shown("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert!(
            RedisSink::new("redis://127.0.0.1:1", 10).is_ok(),
            "connects lazily"
        );
        assert!(RedisSink::new("nonsense", 10).is_err());
    }
}
