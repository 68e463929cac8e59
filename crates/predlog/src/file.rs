//! The JSON Lines sink (`--prediction-log file:PATH`): each record one line of JSON (the object
//! the read-back route answers, [`Record::json_line`]) appended to `PATH`; a batch is one
//! `write`. When the file would pass its size limit it is rotated: `PATH` becomes `PATH.1`,
//! `PATH.1` becomes `PATH.2`, ..., the oldest past `keep` deleted; a new `PATH` is started.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::record::Record;
use crate::Sink;

pub struct FileSink {
    path: PathBuf,
    file: Option<File>,
    len: u64,
    max_bytes: u64,
    keep: usize,
    /// The file's name, shown in messages (never the path).
    name: String,
}

impl FileSink {
    /// A sink appending to `path` (made with its folder if needed), rotated past `max_bytes`,
    /// keeping `keep` rotated files.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<FileSink, String> {
        let name = file_name(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| format!("{name}: its folder cannot be made ({e})"))?;
        }
        let mut s = FileSink {
            path: path.to_path_buf(),
            file: None,
            len: 0,
            max_bytes: max_bytes.max(1),
            keep,
            name,
        };
        s.reopen()?;
        Ok(s)
    }

    /// The file's name (for the metrics: no folder).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn reopen(&mut self) -> Result<(), String> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.name))?;
        self.len = f.metadata().map_or(0, |m| m.len());
        self.file = Some(f);
        Ok(())
    }

    fn rotated(&self, i: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> Result<(), String> {
        self.file = None;
        if self.keep == 0 {
            let _ = fs::remove_file(&self.path);
        } else {
            let _ = fs::remove_file(self.rotated(self.keep));
            for i in (1..self.keep).rev() {
                let _ = fs::rename(self.rotated(i), self.rotated(i + 1));
            }
            fs::rename(&self.path, self.rotated(1))
                .map_err(|e| format!("{}: cannot be rotated ({e})", self.name))?;
        }
        self.reopen()
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &[Arc<Record>]) -> Result<(), String> {
        let mut text = String::new();
        for r in batch {
            text.push_str(&r.json_line());
        }
        if self.len > 0 && self.len + text.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let f = self.file.as_mut().expect("opened above");
        match f.write_all(text.as_bytes()) {
            Ok(()) => {
                self.len += text.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Opened again on the next batch (the file may have been moved away).
                self.file = None;
                Err(format!("{}: {e}", self.name))
            }
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || "prediction log".into(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Values;

    fn rec(i: u64) -> Arc<Record> {
        Arc::new(Record {
            id: format!("f-{i}"),
            time_ms: 1_764_670_000_000,
            model: "iris".into(),
            version: 1,
            protocol: "friendly",
            route: "/predict".into(),
            status: 200,
            error: None,
            latency_us: 5,
            rows: 1,
            rows_omitted: 0,
            inputs: None,
            outputs: Some(Values::Json("[]".into())),
        })
    }

    fn ids(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
            .map(|s| s.trim_matches('"').to_string())
            .collect()
    }

    #[test]
    fn lines_are_appended_and_the_file_rotates_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/iris.jsonl");
        let line = rec(0).json_line().len() as u64;
        // Room for three records per file, two rotated files kept.
        let mut sink = FileSink::open(&path, 3 * line, 2).unwrap();
        assert_eq!(sink.name(), "iris.jsonl");
        for i in 0..10 {
            sink.write(&[rec(i)]).unwrap();
        }
        assert_eq!(ids(&path), ["f-9"]);
        assert_eq!(ids(&sink.rotated(1)), ["f-6", "f-7", "f-8"]);
        assert_eq!(ids(&sink.rotated(2)), ["f-3", "f-4", "f-5"]);
        assert!(!sink.rotated(3).exists(), "only two kept");
        // A sink opened on an existing file appends to it (and counts what it holds).
        drop(sink);
        let mut sink = FileSink::open(&path, 4 * line, 2).unwrap();
        assert_eq!(sink.len, line);
        sink.write(&[rec(10), rec(11)]).unwrap();
        assert_eq!(ids(&path), ["f-9", "f-10", "f-11"]);
    }
}
