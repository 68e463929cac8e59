//! `ferroserve serve --model model.pkl` (`MODEL_FILE=/data/model.pkl`): a pickle the operator
//! points the server at is converted and verified on start exactly as `ferroserve import` does
//! ([`Helper::convert`]), into a cache under the data folder, then served natively from there.
//!
//! The cache is `<data-dir>/pickles/<key>/`, `key` the SHA-256 of the pickle's bytes, the
//! ferroserve version and the helper's own SHA-256 (an upgraded converter converts again). An
//! entry is a model folder: `model.toml`, the version folder `1/` with the artifact (or, for a
//! pickle the converter cannot convert, the pickle itself for the Python backend), `verify.json`
//! (the sample rows and the library's answers it was checked on) and `entry.json` (what it was
//! made from and how). A restart with the same file finds the entry and runs no Python.
//!
//! Entries are written in a staging folder beside them (`pickles/.staging-*`) and renamed into
//! place, which is atomic: a crash mid-conversion leaves only a staging folder (removed by a
//! later start once it is an hour old), and of two servers converting the same file at once,
//! one rename wins and the other server serves the winner's entry. Nothing is cached when the
//! conversion fails for a reason the machine can fix (no Python, a missing library), so the
//! next start tries again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferroserve_runtime::{Failure, FoundModel, ScanOptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::import::{self, Helper, TempDir};

/// The cache's sub-folder of the data folder.
pub const PICKLES: &str = "pickles";

/// Staging folders older than this are left-overs of a crash, removed at start.
const STALE_STAGING: Duration = Duration::from_secs(3600);

/// How a pickle given to `serve` is handled.
#[derive(Debug, Clone)]
pub struct PickleOptions {
    /// The data folder (`--data-dir`); the cache is its `pickles/` sub-folder.
    pub data_dir: PathBuf,
    /// How the converter runs.
    pub helper: Helper,
    /// `--no-pickle`: refuse pickles altogether.
    pub no_pickle: bool,
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file's bytes, read in pieces.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The cache key of a pickle whose bytes hash to `file_sha`, converted by the helper whose
/// source hashes to `helper_sha`, by this version of ferroserve.
pub fn cache_key(file_sha: &str, helper_sha: &str) -> String {
    let text = format!(
        "ferroserve pickle cache 1\nferroserve {}\nhelper {helper_sha}\nfile {file_sha}\n",
        env!("CARGO_PKG_VERSION")
    );
    hex(&Sha256::digest(text.as_bytes()))
}

/// What a cache entry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A converted, verified artifact served natively.
    Converted,
    /// The pickle itself, for the Python backend (the converter could not convert it).
    Python,
}

/// A cache entry ready to serve.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The entry's folder (a model folder).
    pub dir: PathBuf,
    pub kind: EntryKind,
    /// Found in the cache (no conversion ran).
    pub cached: bool,
    /// Python entries: why the converter could not convert the pickle.
    pub why_python: Option<String>,
}

/// A failure: `reason` for answers (no path, no file content), `detail` for the log.
fn fail(reason: impl std::fmt::Display, detail: impl std::fmt::Display) -> Failure {
    Failure {
        reason: reason.to_string(),
        detail: detail.to_string(),
    }
}

fn file_name(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "the model file".into())
}

/// Reads an entry's `entry.json`; `None` when the folder is not a whole entry.
fn read_entry(dir: &Path) -> Option<Entry> {
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("entry.json")).ok()?).ok()?;
    let kind = match v["kind"].as_str()? {
        "converted" => EntryKind::Converted,
        "python" => EntryKind::Python,
        _ => return None,
    };
    dir.join("model.toml").is_file().then_some(())?;
    dir.join("1").is_dir().then_some(())?;
    Some(Entry {
        dir: dir.to_path_buf(),
        kind,
        cached: true,
        why_python: v["why_python"].as_str().map(str::to_string),
    })
}

/// Removes staging folders a crash left behind (an hour old: a server converting now is not
/// disturbed).
fn remove_stale_staging(pickles: &Path) {
    let Ok(rd) = std::fs::read_dir(pickles) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".staging-") && !name.starts_with(".broken-") {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_STAGING);
        if old {
            tracing::info!(folder = %e.path().display(), "removing a staging folder left by an interrupted conversion");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Flushes every file under `dir` and the folders themselves to disk, so that the rename that
/// publishes an entry never publishes files still only in memory.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            std::fs::File::open(&p)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Finds the pickle's cache entry, or converts it into a new one.
pub fn prepare(file: &Path, opts: &PickleOptions) -> Result<Entry, Failure> {
    let shown = file_name(file);
    let file_sha = file_sha256(file).map_err(|e| {
        fail(
            format!("{shown}: cannot be read: {e}"),
            format!("{}: {e}", file.display()),
        )
    })?;
    let helper_sha =
        Helper::hash().map_err(|e| fail("the import helper cannot be read", format!("{e:#}")))?;
    let key = cache_key(&file_sha, &helper_sha);
    let pickles = opts.data_dir.join(PICKLES);
    let dir = pickles.join(&key);
    if dir.exists() {
        if let Some(entry) = read_entry(&dir) {
            return Ok(entry);
        }
        // Not a whole entry (written by hand, or damaged): moved aside and made again.
        tracing::warn!(folder = %dir.display(), "a pickle cache entry is incomplete: converting again");
        if let Ok(aside) = TempDir::new_in(&pickles, ".broken") {
            let target = aside.0.join("entry");
            let _ = std::fs::rename(&dir, &target);
        }
    }
    std::fs::create_dir_all(&pickles).map_err(|e| {
        fail(
            format!(
                "the pickle cache cannot be created in the data folder ({e}): start the server \
                 with --data-dir (FERROSERVE_DATA_DIR) naming a writable folder"
            ),
            format!("creating {}: {e}", pickles.display()),
        )
    })?;
    remove_stale_staging(&pickles);
    let staging = TempDir::new_in(&pickles, &format!(".staging-{}", &key[..16])).map_err(|e| {
        fail(format!("the pickle cache cannot be written ({e}): start the server with --data-dir naming a writable folder"),
            format!("staging in {}: {e}", pickles.display()),
        )
    })?;
    let stage = staging.0.join("convert");
    tracing::info!(file = %file.display(), python = %opts.helper.python, "converting the pickle (once: the result is cached under the data folder)");
    let started = std::time::Instant::now();
    let converted = opts.helper.convert(file, &stage);
    let io = |what: &str, e: std::io::Error| {
        fail(
            format!("the pickle cache cannot be written ({what}: {e})"),
            format!("{}: {what}: {e}", staging.0.display()),
        )
    };
    let mut record = json!({
        "format": 1,
        "file_name": shown,
        "file_sha256": file_sha,
        "helper_sha256": helper_sha,
        "ferroserve": env!("CARGO_PKG_VERSION"),
        "created_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    let (kind, why_python) = match converted {
        Ok(c) => {
            let vdir = staging.0.join("1");
            std::fs::create_dir_all(&vdir).map_err(|e| io("version folder", e))?;
            std::fs::rename(stage.join(&c.artifact), vdir.join(&c.artifact))
                .map_err(|e| io("artifact", e))?;
            std::fs::write(staging.0.join("model.toml"), &c.toml)
                .map_err(|e| io("model.toml", e))?;
            std::fs::rename(stage.join("verify.json"), staging.0.join("verify.json"))
                .map_err(|e| io("verify.json", e))?;
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                artifact = %c.artifact,
                "pickle converted; verified on {} rows against {}: {}",
                c.rows,
                c.library,
                c.summary
            );
            record["kind"] = json!("converted");
            record["artifact"] = json!(c.artifact);
            record["verified"] = json!(format!(
                "{} rows against {}: {}",
                c.rows, c.library, c.summary
            ));
            record["n_features"] = json!(c.n_features);
            (EntryKind::Converted, None)
        }
        Err(e) => match e.python_fallback() {
            Some(n_features) => {
                let why = e.reason();
                import::write_python_folder(
                    file,
                    &staging.0,
                    &staging.0.join("1"),
                    &format!("pickle {shown}, served unconverted by the Python backend"),
                    n_features,
                )
                .map_err(|e| fail("the pickle cache cannot be written", format!("{e:#}")))?;
                record["kind"] = json!("python");
                record["why_python"] = json!(why);
                record["n_features"] = json!(n_features);
                (EntryKind::Python, Some(why))
            }
            None => {
                let reason = e.reason();
                return Err(fail(
                    if reason.starts_with(&shown) {
                        reason
                    } else {
                        format!("{shown} cannot be served: {reason}")
                    },
                    format!("{}: {}", file.display(), e.detail()),
                ));
            }
        },
    };
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::write(
        staging.0.join("entry.json"),
        serde_json::to_vec_pretty(&record).unwrap_or_default(),
    )
    .map_err(|e| io("entry.json", e))?;
    sync_tree(&staging.0).map_err(|e| io("flushing", e))?;
    match std::fs::rename(&staging.0, &dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
            }
            Ok(Entry {
                dir,
                kind,
                cached: false,
                why_python,
            })
        }
        // Another server published the same entry first: serve its entry.
        Err(_) if read_entry(&dir).is_some() => {
            tracing::info!("another server cached this pickle at the same time: using its entry");
            Ok(read_entry(&dir)
                .map(|e| Entry { cached: false, ..e })
                .unwrap_or(Entry {
                    dir,
                    kind,
                    cached: false,
                    why_python,
                }))
        }
        Err(e) => Err(io("publishing the entry", e)),
    }
}

/// The model `name` from the pickle `file`: refused under `--no-pickle`, else prepared
/// ([`prepare`]) and served from its cache entry, a model.toml beside the pickle layered over
/// the entry's. Every failure is the model's (not ready, with the reason); the server runs on.
pub fn serve_pickle(
    file: &Path,
    name: &str,
    opts: &PickleOptions,
    scan: &ScanOptions,
) -> FoundModel {
    let failed = |f: Failure| FoundModel {
        name: name.to_string(),
        config: Err(f.clone()),
        versions: Vec::new(),
        problem: Some(f),
    };
    let shown = file_name(file);
    if opts.no_pickle {
        let text = format!(
            "{shown} is a Python pickle, refused: the server runs with --no-pickle \
             (FERROSERVE_NO_PICKLE), which loads no pickle because unpickling runs code stored \
             in the file. Convert it where pickles are allowed (`ferroserve import {shown} --out \
             <repository>/<name>`) and serve that, or start without --no-pickle"
        );
        return failed(Failure {
            reason: text.clone(),
            detail: format!("{}: {text}", file.display()),
        });
    }
    let entry = match prepare(file, opts) {
        Ok(e) => e,
        Err(f) => return failed(f),
    };
    match (entry.kind, entry.cached) {
        (EntryKind::Converted, true) => tracing::info!(
            entry = %entry.dir.display(),
            "serving the pickle's cached conversion (no Python run)"
        ),
        (EntryKind::Converted, false) => {
            tracing::info!(entry = %entry.dir.display(), "pickle converted and cached")
        }
        (EntryKind::Python, _) => tracing::warn!(
            entry = %entry.dir.display(),
            "the model runs in Python (the Python backend, ferroserve:PicklePredictor), not \
             natively: the converter cannot convert it: {}",
            entry.why_python.as_deref().unwrap_or("(reason not recorded)")
        ),
    }
    let settings = ferroserve_runtime::repository::single_model_config(file);
    if let Some(s) = &settings {
        tracing::info!(settings = %s.display(), "layering the model.toml beside the pickle over the converted model's");
    }
    ferroserve_runtime::repository::prepared_model(&entry.dir, name, settings.as_deref(), scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_the_file_and_the_helper() {
        let a = cache_key("f1", "h1");
        assert_eq!(a.len(), 64);
        assert_eq!(a, cache_key("f1", "h1"));
        assert_ne!(a, cache_key("f2", "h1"));
        assert_ne!(a, cache_key("f1", "h2"));
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }

    #[test]
    fn only_whole_entries_are_read_and_old_staging_goes() {
        let tmp = std::env::temp_dir().join(format!("ferroserve-pickles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let e = tmp.join("k");
        std::fs::create_dir_all(e.join("1")).unwrap();
        std::fs::write(e.join("model.toml"), "").unwrap();
        assert!(read_entry(&e).is_none(), "no entry.json: not whole");
        std::fs::write(e.join("entry.json"), r#"{"kind": "converted"}"#).unwrap();
        assert_eq!(read_entry(&e).unwrap().kind, EntryKind::Converted);
        std::fs::write(e.join("entry.json"), r#"{"kind": "other"}"#).unwrap();
        assert!(read_entry(&e).is_none());
        // A young staging folder (a server converting now) stays.
        let young = tmp.join(".staging-young");
        std::fs::create_dir_all(&young).unwrap();
        remove_stale_staging(&tmp);
        assert!(young.is_dir());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
