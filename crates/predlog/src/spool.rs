//! The durable mode's spool (`<data-dir>/spool/`): the request path appends each record to it,
//! one JSON line ([`Record::json_line`]) in one `write`, before the answer goes out; each sink's
//! writer delivers from it in order and keeps its place in a cursor file; a segment every
//! sink has passed is deleted. A record that was answered is therefore in the file (in the
//! kernel's page cache at least) and survives the server being killed (`kill -9`); a sink that
//! is down gets it when it is back, after a restart if need be. Delivery is at least once: a
//! server killed between a sink's write and its cursor update delivers that batch again (the
//! record's `id` tells the copies apart). The spool is not synced to the disk on every write,
//! so a power cut can lose the last records the kernel had not written yet.
//!
//! Files: segments `NNNNNNNNNNNNNNNN.jsonl` (a new one at each start and every
//! [`SEGMENT_BYTES`], or a quarter of the spool's limit when less) and `cursor-<sink>` (`<segment> <offset>`, replaced atomically).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use crate::record::Record;

/// A segment past this many bytes is closed and a new one started.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// Most bytes one read of a segment takes.
const READ_BYTES: usize = 4 << 20;

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// [`SEGMENT_BYTES`], or a quarter of `max_bytes` when that is less (only whole segments
    /// are freed, so most of a full spool must be in closed ones).
    segment_bytes: u64,
    /// Bytes of the segments on disk.
    bytes: AtomicU64,
    /// The segment being appended to, and its length; created on the first append.
    append: Mutex<Appender>,
    /// The appender's segment number (read without the lock).
    current: AtomicU64,
    /// Set when an append failed: new requests that need the spool are refused.
    broken: AtomicBool,
    /// Each reader's segment, so that segments all have passed can be deleted.
    positions: Mutex<HashMap<String, u64>>,
    /// Pinged after each append (one waiting ping per reader is enough).
    wakers: Mutex<Vec<Sender<()>>>,
}

struct Appender {
    seg: u64,
    file: Option<File>,
    len: u64,
}

impl Spool {
    /// Opens the spool in `dir` (created on the first append), holding at most `max_bytes`;
    /// segments left by an earlier run are kept for delivery.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Arc<Spool>, String> {
        let segs = segments(dir)?;
        let mut bytes = 0;
        for &s in &segs {
            bytes += fs::metadata(segment_path(dir, s)).map_or(0, |m| m.len());
        }
        let next = segs.last().map_or(1, |s| s + 1);
        Ok(Arc::new(Spool {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            segment_bytes: SEGMENT_BYTES.min(max_bytes / 4).max(1),
            bytes: AtomicU64::new(bytes),
            append: Mutex::new(Appender {
                seg: next,
                file: None,
                len: 0,
            }),
            current: AtomicU64::new(next),
            broken: AtomicBool::new(false),
            positions: Mutex::new(HashMap::new()),
            wakers: Mutex::new(Vec::new()),
        }))
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Why a new record could not be taken now, if it could not.
    pub fn refusal(&self) -> Option<String> {
        if self.broken.load(Ordering::Relaxed) {
            return Some("the prediction log's spool cannot be written (see the server log); records cannot be kept durably".into());
        }
        let b = self.bytes();
        (b >= self.max_bytes).then(|| {
            format!(
                "the prediction log's spool is full ({} of {} MB) because a sink is behind or down; retry once it catches up",
                b >> 20,
                self.max_bytes >> 20
            )
        })
    }

    /// Appends `line` (one record, ending in a newline) in one write.
    pub fn append(&self, line: &[u8]) -> Result<(), String> {
        let mut a = self.append.lock().unwrap_or_else(|e| e.into_inner());
        let r = self.append_locked(&mut a, line);
        drop(a);
        match &r {
            Ok(()) => {
                for w in self.wakers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    let _ = w.try_send(());
                }
            }
            Err(e) => {
                if !self.broken.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "the prediction log's spool cannot be written: requests with a durable prediction log are refused from now on");
                }
            }
        }
        r
    }

    fn append_locked(&self, a: &mut Appender, line: &[u8]) -> Result<(), String> {
        if a.file.is_some() && a.len > 0 && a.len + line.len() as u64 > self.segment_bytes {
            a.file = None;
            a.seg += 1;
            a.len = 0;
            self.current.store(a.seg, Ordering::Release);
        }
        if a.file.is_none() {
            fs::create_dir_all(&self.dir).map_err(|e| format!("the spool folder: {e}"))?;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, a.seg))
                .map_err(|e| format!("a spool segment: {e}"))?;
            a.file = Some(f);
        }
        let f = a.file.as_mut().expect("opened above");
        f.write_all(line)
            .map_err(|e| format!("a spool segment: {e}"))?;
        a.len += line.len() as u64;
        self.bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// A reader for the sink `name` (a file name's worth of text), from where its cursor says
    /// (the oldest segment when it has none).
    pub fn reader(self: &Arc<Spool>, name: &str) -> SpoolReader {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        let cursor = self.dir.join(format!("cursor-{name}"));
        let oldest = segments(&self.dir)
            .ok()
            .and_then(|s| s.first().copied())
            .unwrap_or_else(|| self.current.load(Ordering::Acquire));
        let (seg, off) = fs::read_to_string(&cursor)
            .ok()
            .and_then(|t| {
                let (s, o) = t.trim().split_once(' ')?;
                Some((s.parse().ok()?, o.parse().ok()?))
            })
            .filter(|&(s, _)| s >= oldest)
            .unwrap_or((oldest, 0));
        self.positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), seg);
        SpoolReader {
            spool: self.clone(),
            name: name.to_string(),
            cursor,
            seg,
            off,
            pending: None,
            wake: rx,
        }
    }

    /// Deletes the segments every reader has passed.
    fn release(&self) {
        let least = {
            let p = self.positions.lock().unwrap_or_else(|e| e.into_inner());
            p.values().copied().min()
        };
        let Some(least) = least else { return };
        let current = self.current.load(Ordering::Acquire);
        for s in segments(&self.dir).unwrap_or_default() {
            if s < least && s < current {
                let path = segment_path(&self.dir, s);
                let len = fs::metadata(&path).map_or(0, |m| m.len());
                if fs::remove_file(&path).is_ok() {
                    self.bytes.fetch_sub(len, Ordering::Relaxed);
                }
            }
        }
    }
}

/// One sink's way through the spool.
pub struct SpoolReader {
    spool: Arc<Spool>,
    name: String,
    cursor: PathBuf,
    seg: u64,
    off: u64,
    /// Where the records [`SpoolReader::next`] returned end: the position
    /// [`SpoolReader::commit`] moves to.
    pending: Option<(u64, u64)>,
    wake: Receiver<()>,
}

impl SpoolReader {
    /// Pinged after records are appended.
    pub fn wake(&self) -> &Receiver<()> {
        &self.wake
    }

    /// Up to `max` records from the reader's place, which does not move until
    /// [`SpoolReader::commit`]; empty when it has read everything appended so far.
    pub fn next(&mut self, max: usize) -> Result<Vec<Arc<Record>>, String> {
        loop {
            // The appender's segment, before reading: a segment before it is complete.
            let current = self.spool.current.load(Ordering::Acquire);
            let (records, end) = self.read(max)?;
            if !records.is_empty() {
                self.pending = Some((self.seg, end));
                return Ok(records);
            }
            if end != self.off {
                // Lines that did not parse, skipped.
                self.pending = Some((self.seg, end));
                self.commit();
                continue;
            }
            if self.seg >= current {
                return Ok(Vec::new());
            }
            // This segment is complete and read: on to the next.
            self.pending = Some((self.seg + 1, 0));
            self.commit();
        }
    }

    /// Records from the current segment at the reader's place: what parsed, and where the
    /// last complete line read ends.
    fn read(&mut self, max: usize) -> Result<(Vec<Arc<Record>>, u64), String> {
        let path = segment_path(&self.spool.dir, self.seg);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), self.off))
            }
            Err(e) => return Err(format!("a spool segment: {e}")),
        };
        f.seek(SeekFrom::Start(self.off))
            .map_err(|e| format!("a spool segment: {e}"))?;
        let mut buf = Vec::new();
        f.take(READ_BYTES as u64)
            .read_to_end(&mut buf)
            .map_err(|e| format!("a spool segment: {e}"))?;
        let mut records = Vec::new();
        let mut used = 0;
        while records.len() < max {
            let Some(nl) = buf[used..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let line = &buf[used..used + nl];
            used += nl + 1;
            match std::str::from_utf8(line)
                .map_err(|e| e.to_string())
                .and_then(Record::from_json_line)
            {
                Ok(r) => records.push(Arc::new(r)),
                Err(e) => {
                    tracing::warn!(error = %e, "prediction log spool: a line that does not read is skipped")
                }
            }
        }
        if used == 0 && buf.len() >= READ_BYTES {
            // One line longer than a read: cannot be a record this server wrote.
            tracing::warn!("prediction log spool: an over-long line is skipped");
            let end = self.off + buf.len() as u64;
            return Ok((Vec::new(), end));
        }
        Ok((records, self.off + used as u64))
    }

    /// Moves past what [`SpoolReader::next`] returned (its records are delivered) and saves
    /// the place.
    pub fn commit(&mut self) {
        let Some((seg, off)) = self.pending.take() else {
            return;
        };
        let moved_segment = seg != self.seg;
        self.seg = seg;
        self.off = off;
        let tmp = self.cursor.with_extension("tmp");
        let saved =
            fs::write(&tmp, format!("{seg} {off}\n")).and_then(|_| fs::rename(&tmp, &self.cursor));
        if let Err(e) = saved {
            tracing::warn!(error = %e, "prediction log spool: a cursor cannot be saved (records may be delivered again after a restart)");
        }
        if moved_segment {
            self.spool
                .positions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(self.name.clone(), seg);
            self.spool.release();
        }
    }
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:016}.jsonl"))
}

/// The segment numbers in `dir`, in order (none when it does not exist).
fn segments(dir: &Path) -> Result<Vec<u64>, String> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("the spool folder cannot be read ({e})")),
    };
    let mut segs: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".jsonl")?.parse().ok()
        })
        .collect();
    segs.sort_unstable();
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Values;
    use ferroserve_core::{Tensor, TensorData};

    fn rec(i: u64) -> Record {
        Record {
            id: format!("r-{i}"),
            time_ms: 1_764_670_000_000 + i as i64,
            model: "iris".into(),
            version: 2,
            protocol: "http_v2",
            route: "/v2/models/iris/infer".into(),
            status: 200,
            error: i.is_multiple_of(3).then(|| format!("boom \"{i}\"\n")),
            latency_us: 10 + i,
            rows: 1,
            rows_omitted: 0,
            inputs: None,
            outputs: Some(Values::Tensors(vec![Tensor::new(
                "label",
                vec![1],
                TensorData::Int64(vec![i as i64]),
            )])),
        }
    }

    fn ids(r: &[Arc<Record>]) -> Vec<String> {
        r.iter().map(|r| r.id.clone()).collect()
    }

    #[test]
    fn records_read_back_in_order_and_resume_from_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        let mut rd = spool.reader("sqlite");
        assert!(rd.next(10).unwrap().is_empty(), "nothing yet");
        for i in 0..5 {
            spool.append(rec(i).json_line().as_bytes()).unwrap();
        }
        let got = rd.next(3).unwrap();
        assert_eq!(ids(&got), ["r-0", "r-1", "r-2"]);
        assert_eq!(*got[0], {
            let mut r = rec(0);
            r.outputs = Some(Values::Json(
                r#"[{"name":"label","datatype":"INT64","shape":[1],"data":[0]}]"#.into(),
            ));
            r
        });
        // Not committed: the same records again.
        assert_eq!(ids(&rd.next(3).unwrap()), ["r-0", "r-1", "r-2"]);
        rd.commit();
        // A second run (same folder) starts where the cursor is.
        drop(rd);
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        let mut rd = spool.reader("sqlite");
        assert_eq!(ids(&rd.next(10).unwrap()), ["r-3", "r-4"]);
        rd.commit();
        spool.append(rec(5).json_line().as_bytes()).unwrap();
        assert_eq!(ids(&rd.next(10).unwrap()), ["r-5"], "across segments");
        // The first segment was deleted once the only sink had passed it: a sink added now
        // starts at the oldest segment left.
        assert_eq!(segments(dir.path()).unwrap(), [2]);
        let mut other = spool.reader("redis-1");
        assert_eq!(ids(&other.next(10).unwrap()), ["r-5"]);
    }

    #[test]
    fn segments_all_readers_passed_are_deleted_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(rec(0).json_line().as_bytes()).unwrap();
        // A torn last line (a power cut) in a segment a later start does not append to.
        spool.append(b"{\"id\":\"tor").unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        let mut a = spool.reader("a");
        let mut b = spool.reader("b");
        let before = spool.bytes();
        assert!(before > 0);
        spool.append(rec(1).json_line().as_bytes()).unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 2);
        let got = a.next(10).unwrap();
        assert_eq!(ids(&got), ["r-0"]);
        a.commit();
        assert_eq!(ids(&a.next(10).unwrap()), ["r-1"], "the torn line skipped");
        a.commit();
        assert_eq!(
            segments(dir.path()).unwrap().len(),
            2,
            "b has not passed it"
        );
        assert_eq!(ids(&b.next(10).unwrap()), ["r-0"]);
        b.commit();
        assert_eq!(ids(&b.next(10).unwrap()), ["r-1"]);
        b.commit();
        assert_eq!(
            segments(dir.path()).unwrap().len(),
            1,
            "the first segment deleted"
        );
        assert!(spool.bytes() < before + 400);
    }

    #[test]
    fn a_full_spool_refuses_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let line = rec(1).json_line();
        let spool = Spool::open(dir.path(), 3 * line.len() as u64).unwrap();
        for _ in 0..2 {
            spool.append(line.as_bytes()).unwrap();
            assert_eq!(spool.refusal(), None);
        }
        spool.append(line.as_bytes()).unwrap();
        let why = spool.refusal().expect("full");
        assert!(why.contains("spool is full"), "{why}");
        // Segments are a quarter of the limit: each line here is one, and a reader that has
        // passed them frees all but the current one.
        assert_eq!(segments(dir.path()).unwrap().len(), 3);
        let mut rd = spool.reader("a");
        assert_eq!(rd.next(10).unwrap().len(), 1);
        rd.commit();
        assert_eq!(rd.next(10).unwrap().len(), 1);
        rd.commit();
        assert_eq!(rd.next(10).unwrap().len(), 1);
        rd.commit();
        assert!(rd.next(10).unwrap().is_empty());
        assert_eq!(segments(dir.path()).unwrap().len(), 1);
        assert_eq!(spool.refusal(), None, "{} bytes", spool.bytes());
    }
}
