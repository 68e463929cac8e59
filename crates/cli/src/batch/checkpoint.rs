//! The checkpoint: how far a run got, written atomically (a temporary file renamed over it)
//! after every chunk written in order, so that a rerun with the same arguments resumes
//! where the last one stopped. It names the input (size, modification time, a hash of its
//! first 64 KiB) and the options that shape the output; a rerun whose input or options differ
//! is refused. A finished run leaves it with `"state": "complete"`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What identifies the input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    pub mtime_ns: u128,
    /// SHA-256 of the first 64 KiB, hex.
    pub head_sha256: String,
}

impl Fingerprint {
    pub fn of(path: &Path) -> io::Result<Fingerprint> {
        let meta = fs::metadata(path)?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut head = Vec::with_capacity(1 << 16);
        File::open(path)?.take(1 << 16).read_to_end(&mut head)?;
        let hash = Sha256::digest(&head);
        Ok(Fingerprint {
            size: meta.len(),
            mtime_ns,
            head_sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

/// The options whose change would change the output (the server's URL, concurrency,
/// retries, timeouts and headers do not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub model: String,
    pub version: Option<String>,
    pub input_format: super::input::InputFormat,
    pub output_format: super::output::OutputFormat,
    pub outputs: Vec<String>,
    pub chunk_rows: usize,
    pub shard_index: u64,
    pub shard_count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Complete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// `running` while rows remain, `complete` once every row is written.
    pub state: State,
    pub input: Fingerprint,
    pub options: Options,
    /// The next chunk to send (chunk k holds rows k × chunk_rows ...).
    pub next_chunk: u64,
    /// Rows of this shard written so far (to the output or the failed file).
    pub rows_done: u64,
    pub rows_ok: u64,
    pub rows_failed: u64,
    /// The output file's length after those rows.
    pub output_bytes: u64,
    /// The failed file's length after those rows.
    pub failed_bytes: u64,
    /// The CSV output's columns, once its header is written.
    #[serde(default)]
    pub csv_columns: Option<Vec<String>>,
}

impl Checkpoint {
    /// The checkpoint at `path`, `None` if there is none.
    pub fn read(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
        match fs::read(path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
                anyhow::anyhow!(
                    "the checkpoint {} cannot be read ({e}); pass --restart to start over",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    /// Writes it to `path` atomically: to `path.tmp`, then renamed; `sync` also makes it
    /// durable (the data files are synced before).
    pub fn write(&self, path: &Path, sync: bool) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
        f.write_all(b"\n")?;
        if sync {
            f.sync_data()?;
        }
        fs::rename(&tmp, path)
    }

    /// Why this checkpoint cannot be resumed with `input` and `options`, if it cannot.
    pub fn mismatch(&self, input: &Fingerprint, options: &Options) -> Option<String> {
        if self.input != *input {
            return Some(format!(
                "the input file changed since the checkpoint was written (size {} → {}, or its modification time or first 64 KiB)",
                self.input.size, input.size
            ));
        }
        if self.options != *options {
            let was = serde_json::to_value(&self.options).unwrap_or_default();
            let now = serde_json::to_value(options).unwrap_or_default();
            let diff: Vec<String> = was
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| now.get(k.as_str()) != Some(v))
                .map(|(k, v)| format!("{k}: {v} → {}", now[k.as_str()]))
                .collect();
            return Some(format!(
                "the options changed since the checkpoint was written ({})",
                diff.join(", ")
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            model: "iris".into(),
            version: None,
            input_format: super::super::input::InputFormat::Csv,
            output_format: super::super::output::OutputFormat::Jsonl,
            outputs: vec![],
            chunk_rows: 1000,
            shard_index: 0,
            shard_count: 1,
        }
    }

    #[test]
    fn round_trip_and_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        fs::write(&input, "a,b\n1,2\n").unwrap();
        let fp = Fingerprint::of(&input).unwrap();
        assert_eq!(fp.size, 8);
        let c = Checkpoint {
            state: State::Running,
            input: fp.clone(),
            options: options(),
            next_chunk: 3,
            rows_done: 3000,
            rows_ok: 2999,
            rows_failed: 1,
            output_bytes: 12345,
            failed_bytes: 67,
            csv_columns: None,
        };
        let path = dir.path().join("out.checkpoint");
        c.write(&path, true).unwrap();
        let back = Checkpoint::read(&path).unwrap().unwrap();
        assert_eq!((back.next_chunk, back.output_bytes), (3, 12345));
        assert!(back.mismatch(&fp, &options()).is_none());
        let mut o = options();
        o.chunk_rows = 500;
        let m = back.mismatch(&fp, &o).unwrap();
        assert!(m.contains("chunk_rows: 1000 → 500"), "{m}");
        fs::write(&input, "a,b\n1,3\n").unwrap();
        let m = back
            .mismatch(&Fingerprint::of(&input).unwrap(), &options())
            .unwrap();
        assert!(m.contains("input file changed"), "{m}");
        assert!(Checkpoint::read(&dir.path().join("none"))
            .unwrap()
            .is_none());
        fs::write(&path, "{").unwrap();
        assert!(Checkpoint::read(&path)
            .unwrap_err()
            .to_string()
            .contains("--restart"));
    }
}
