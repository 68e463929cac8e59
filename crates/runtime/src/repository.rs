//! The model repository: `<repo>/<model>/model.toml` plus numeric version folders
//! `<repo>/<model>/<n>/` holding one artifact each. Scanning never fails as a whole: a model or
//! version that cannot be loaded is kept with the reason, reported not ready, while the others
//! serve.
//!
//! Reasons reach clients (the repository index, not-ready answers), so they name files relative
//! to the repository (`iris/1/model.onnx: ...`) and never quote a file's content; the full path
//! and the underlying error in full (a TOML parse error quotes the offending line) are the
//! [`Failure::detail`], which only the server log gets. Symbolic links that lead out of the
//! repository (a model folder, `model.toml`, a version folder, an artifact) are not followed
//! unless [`ScanOptions::follow_symlinks`] says so; links inside it work as usual.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferroserve_core::config::VersionPolicy;
use ferroserve_core::{ConfigOverride, LoadedModel, ModelConfig};

use crate::backends;
use crate::error::{LoadError, RepositoryError};

/// Extensions of pickles, which must be imported first.
pub const PICKLE_EXTENSIONS: [&str; 4] = ["pkl", "pickle", "joblib", "sav"];

/// How a repository (or the folder of a single model file) is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Follow symbolic links that lead out of the repository (model folders, `model.toml`,
    /// version folders, artifacts). Off by default: such a link makes its model or version not
    /// ready, and the reason names the link.
    pub follow_symlinks: bool,
}

/// Why a model or version cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What answers say: files named relative to the repository, no file content.
    pub reason: String,
    /// What the server log says besides: full paths and the underlying error in full.
    pub detail: String,
}

impl Failure {
    fn same(text: impl Into<String>) -> Failure {
        let text = text.into();
        Failure {
            reason: text.clone(),
            detail: text,
        }
    }
}

/// One version found on disk and what became of it.
pub struct FoundVersion {
    pub version: u64,
    pub result: Result<Arc<dyn LoadedModel>, Failure>,
}

/// One model folder.
pub struct FoundModel {
    pub name: String,
    pub config: Result<ModelConfig, Failure>,
    pub versions: Vec<FoundVersion>,
    /// Why the model has no servable version, when that is decided before any version is tried.
    pub problem: Option<Failure>,
}

/// The folder files are named relative to, and whether links out of it are followed.
struct Root {
    /// As given: the paths scanned are built on it, so answers name them by stripping it.
    shown: PathBuf,
    /// Where it really is (links resolved): a path whose real place is not under it leads out.
    real: PathBuf,
    follow_symlinks: bool,
}

impl Root {
    fn new(dir: &Path, opts: &ScanOptions) -> std::io::Result<Root> {
        let shown = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        Ok(Root {
            real: shown.canonicalize()?,
            shown,
            follow_symlinks: opts.follow_symlinks,
        })
    }

    /// `p` as answers name it: relative to the root, `/`-separated (only the file name when
    /// `p` is not under the root).
    fn name(&self, p: &Path) -> String {
        let rel = p
            .strip_prefix(&self.shown)
            .ok()
            .map(Path::to_path_buf)
            .or_else(|| p.file_name().map(PathBuf::from))
            .unwrap_or_default();
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.is_empty() {
            ".".into()
        } else {
            parts.join("/")
        }
    }

    /// A failure about `p`: named relative in the reason, in full in the detail.
    fn fail(&self, p: &Path, what: impl std::fmt::Display) -> Failure {
        Failure {
            reason: format!("{}: {what}", self.name(p)),
            detail: format!("{}: {what}", p.display()),
        }
    }

    /// Refuses `p` when its real place (every link on the way resolved) is outside the root,
    /// unless links out are followed.
    fn inside(&self, p: &Path) -> Result<(), Failure> {
        if self.follow_symlinks {
            return Ok(());
        }
        match p.canonicalize() {
            Ok(real) if real.starts_with(&self.real) => Ok(()),
            Ok(real) => Err(Failure {
                reason: format!(
                    "{}: leads out of the repository, which the server does not follow unless \
                     started with --follow-symlinks",
                    self.name(p)
                ),
                detail: format!(
                    "{} resolves to {}, outside {}",
                    p.display(),
                    real.display(),
                    self.real.display()
                ),
            }),
            Err(e) => Err(self.fail(p, e)),
        }
    }
}

/// Explains how to serve a pickle (`shown`: how to name it).
pub fn pickle_help(shown: &str) -> String {
    format!(
        "{shown} is a Python pickle, which ferroserve does not load directly (unpickling runs code). \
         Convert it once with `ferroserve import {shown} --out <repository>/<name>`, then serve the repository \
         (or serve the file alone with `ferroserve serve --model`, which converts it on start)"
    )
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Picks the artifact in a version folder: the configured file, or the only model file. Either
/// must really be inside the repository (unless links out are followed).
fn find_artifact(root: &Root, dir: &Path, cfg: &ModelConfig) -> Result<PathBuf, Failure> {
    // A backend whose artifact is the folder itself (a Python predictor's code).
    if cfg
        .backend
        .is_some_and(|k| backends::named(k).reads_folder())
    {
        return Ok(dir.to_path_buf());
    }
    if let Some(file) = &cfg.file {
        let p = dir.join(file);
        if !p.is_file() {
            return Err(root.fail(&p, RepositoryError::NoSuchFile(file.clone())));
        }
        root.inside(&p)?;
        return Ok(p);
    }
    let extensions = backends::model_extensions();
    let mut found = Vec::new();
    let mut pickles = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| root.fail(dir, e))?;
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_file() {
            continue;
        }
        let ext = extension(&p);
        if extensions.contains(&ext.as_str()) {
            found.push(p);
        } else if PICKLE_EXTENSIONS.contains(&ext.as_str()) {
            pickles.push(p);
        }
    }
    found.sort();
    match found.len() {
        1 => {
            let p = found.remove(0);
            root.inside(&p)?;
            Ok(p)
        }
        0 if !pickles.is_empty() => Err(Failure {
            reason: pickle_help(&root.name(&pickles[0])),
            detail: pickle_help(&pickles[0].display().to_string()),
        }),
        0 => Err(root.fail(dir, RepositoryError::NoModelFile(extensions))),
        _ => Err(root.fail(dir, RepositoryError::SeveralModelFiles(found.len()))),
    }
}

/// Loads one artifact with the right backend ([`backends::load`]: `backend` in model.toml when
/// set; otherwise XGBoost and LightGBM files and ONNX graphs that are only a tree ensemble go to
/// the native engine, and every other ONNX graph goes to ONNX Runtime), then checks the parts of
/// model.toml that depend on the model. Errors do not name the file.
pub fn load_artifact(cfg: &ModelConfig, file: &Path) -> Result<Arc<dyn LoadedModel>, LoadError> {
    let ext = extension(file);
    if PICKLE_EXTENSIONS.contains(&ext.as_str()) {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(LoadError::Pickle { name });
    }
    let model = backends::load(cfg, file)?;
    // The parts of model.toml that depend on the model (feature counts, classes).
    cfg.check_model(model.metadata())
        .map_err(LoadError::Config)?;
    Ok(model)
}

/// Loads a version's artifact, naming the artifact or `toml` (the model.toml that applies) in
/// the failure; with a load's override, the loaded model must be what the override says.
fn load_version(
    root: &Root,
    cfg: &ModelConfig,
    file: &Path,
    toml: &Path,
    over: Option<&ConfigOverride>,
) -> Result<Arc<dyn LoadedModel>, Failure> {
    let model = load_artifact(cfg, file).map_err(|e| match e {
        // The reason names model.toml already.
        LoadError::Config(m) => root.fail(toml, m),
        e => root.fail(file, e),
    })?;
    if let Some(o) = over {
        o.check_model(model.metadata())
            .map_err(|e| Failure::same(format!("config override: {e}")))?;
    }
    Ok(model)
}

/// Reads `path` (a model.toml) if there is anything at that name (a dangling link is reported,
/// not taken for a missing file).
fn read_config(root: &Root, path: &Path) -> Result<ModelConfig, Failure> {
    if path.symlink_metadata().is_err() {
        return Ok(ModelConfig::default());
    }
    root.inside(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| root.fail(path, e))?;
    ModelConfig::parse_toml(&text).map_err(|e| Failure {
        reason: format!("{}: {}", root.name(path), e.message),
        detail: format!("{}: {}", path.display(), e.report),
    })
}

/// Reads `<dir>/model.toml` of the model `name`, whose `name` key must match the folder.
fn read_model_config(root: &Root, dir: &Path, name: &str) -> Result<ModelConfig, Failure> {
    let path = dir.join("model.toml");
    let cfg = read_config(root, &path)?;
    if let Some(n) = &cfg.name {
        if n != name {
            return Err(root.fail(
                &path,
                RepositoryError::NameMismatch {
                    name: n.clone(),
                    folder: name.to_string(),
                },
            ));
        }
    }
    Ok(cfg)
}

/// Numeric version folders of a model, selected by the policy.
fn select_versions(root: &Root, dir: &Path, policy: &VersionPolicy) -> Result<Vec<u64>, Failure> {
    let mut all: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| root.fail(dir, e))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()))
        .collect();
    all.sort_unstable();
    Ok(match policy {
        VersionPolicy::All => all,
        VersionPolicy::Latest(n) => {
            let skip = all.len().saturating_sub(*n as usize);
            all.split_off(skip)
        }
        VersionPolicy::Specific(want) => {
            let missing: Vec<u64> = want.iter().filter(|v| !all.contains(v)).copied().collect();
            if !missing.is_empty() {
                return Err(root.fail(dir, RepositoryError::MissingVersions(missing)));
            }
            let mut v = want.clone();
            v.sort_unstable();
            v.dedup();
            v
        }
    })
}

/// Scans one model folder and loads its selected versions; `over`: a load's override, merged
/// over its model.toml before any version loads.
fn scan_model(root: &Root, dir: &Path, over: Option<&ConfigOverride>) -> FoundModel {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let config = root
        .inside(dir)
        .and_then(|()| read_model_config(root, dir, &name))
        .and_then(|cfg| match over {
            Some(o) => o
                .apply(&cfg)
                .map_err(|e| Failure::same(format!("config override: {e}"))),
            None => Ok(cfg),
        });
    load_model(root, dir, name, config, over)
}

/// Loads the selected versions of the model folder `dir` under `config` (its model.toml, read
/// already), named `name`.
fn load_model(
    root: &Root,
    dir: &Path,
    name: String,
    config: Result<ModelConfig, Failure>,
    over: Option<&ConfigOverride>,
) -> FoundModel {
    let mut found = FoundModel {
        name,
        config: config.clone(),
        versions: Vec::new(),
        problem: None,
    };
    let cfg = match config {
        Ok(c) => c,
        Err(e) => {
            found.problem = Some(e);
            return found;
        }
    };
    let toml = dir.join("model.toml");
    let versions = match select_versions(root, dir, &cfg.version_policy) {
        Ok(v) => v,
        Err(e) => {
            found.problem = Some(e);
            return found;
        }
    };
    if versions.is_empty() {
        // A model file straight in the model folder is served as version 1.
        match find_artifact(root, dir, &cfg) {
            Ok(file) => found.versions.push(FoundVersion {
                version: 1,
                result: load_version(root, &cfg, &file, &toml, over),
            }),
            Err(e) => {
                found.problem = Some(Failure {
                    reason: format!("no version folders, and {}", e.reason),
                    detail: format!("no version folders, and {}", e.detail),
                })
            }
        }
        return found;
    }
    for v in versions {
        let vdir = dir.join(v.to_string());
        let result = root
            .inside(&vdir)
            .and_then(|()| find_artifact(root, &vdir, &cfg))
            .and_then(|file| load_version(root, &cfg, &file, &toml, over));
        found.versions.push(FoundVersion { version: v, result });
    }
    found
}

/// Scans a repository: every sub-folder is a model (hidden folders are skipped).
pub fn scan_repository(
    repo: &Path,
    opts: &ScanOptions,
) -> Result<Vec<FoundModel>, RepositoryError> {
    let root = Root::new(repo, opts).map_err(|e| cannot_read(repo, e))?;
    let dirs = model_dirs(&root).map_err(|e| cannot_read(repo, e))?;
    Ok(load_in_parallel(&root, &dirs))
}

fn cannot_read(repo: &Path, error: std::io::Error) -> RepositoryError {
    RepositoryError::Unreadable {
        path: repo.to_path_buf(),
        error,
    }
}

/// The model folders of a repository, sorted (hidden folders skipped).
fn model_dirs(root: &Root) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root.shown)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .map(|n| n.to_string_lossy().starts_with('.'))
                .unwrap_or(true)
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The names of the models in a repository (its model folders), sorted.
pub fn model_names(repo: &Path, opts: &ScanOptions) -> Result<Vec<String>, RepositoryError> {
    let root = Root::new(repo, opts).map_err(|e| cannot_read(repo, e))?;
    let dirs = model_dirs(&root).map_err(|e| cannot_read(repo, e))?;
    Ok(dirs
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect())
}

/// Whether `name` can be a model folder's name: one plain path component, not hidden.
pub fn is_model_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && Path::new(name).components().count() == 1
}

/// Scans and loads the one model folder `name` of a repository; `None` when the repository
/// has no such folder (or `name` is not a plain folder name).
pub fn scan_one(
    repo: &Path,
    name: &str,
    opts: &ScanOptions,
) -> Result<Option<FoundModel>, RepositoryError> {
    scan_one_with(repo, name, opts, None)
}

/// [`scan_one`] with a load's override merged over the model's model.toml (a failure to
/// merge, or a loaded version that is not what the override says, is the model's or the
/// version's failure, reason `config override: ...`).
pub fn scan_one_with(
    repo: &Path,
    name: &str,
    opts: &ScanOptions,
    over: Option<&ConfigOverride>,
) -> Result<Option<FoundModel>, RepositoryError> {
    if !is_model_name(name) {
        return Ok(None);
    }
    let root = Root::new(repo, opts).map_err(|e| cannot_read(repo, e))?;
    let dir = root.shown.join(name);
    if !dir.is_dir() {
        return Ok(None);
    }
    Ok(Some(
        std::panic::catch_unwind(|| scan_model(&root, &dir, over))
            .unwrap_or_else(|_| panicked(&dir)),
    ))
}

/// What a model folder holds, as far as loading it goes: every file under it (two levels: the
/// folder, its version folders) with its size and modification time. Two equal fingerprints
/// mean nothing a load reads has changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<(String, u64, Option<std::time::SystemTime>)>);

impl Fingerprint {
    /// Whether nothing in it was modified in the last `d` (a copy still being written is not).
    pub fn quiet_for(&self, d: Duration) -> bool {
        let Some(before) = std::time::SystemTime::now().checked_sub(d) else {
            return true;
        };
        self.0
            .iter()
            .all(|(_, _, t)| t.is_some_and(|t| t <= before))
    }

    /// How long until nothing in it was modified for `d` (zero when that holds already; a file
    /// with no modification time counts as modified now).
    pub fn quiet_in(&self, d: Duration) -> Duration {
        let now = std::time::SystemTime::now();
        self.0
            .iter()
            .map(|(_, _, t)| {
                let age = t
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default();
                d.saturating_sub(age)
            })
            .max()
            .unwrap_or_default()
    }
}

/// The fingerprint of the model folder `name` (empty when it is gone).
pub fn fingerprint(repo: &Path, name: &str) -> Fingerprint {
    fn walk(
        dir: &Path,
        prefix: &str,
        depth: usize,
        out: &mut Vec<(String, u64, Option<std::time::SystemTime>)>,
    ) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let fname = e.file_name().to_string_lossy().into_owned();
            if fname.starts_with('.') {
                continue;
            }
            let path = e.path();
            let key = format!("{prefix}{fname}");
            // Through links, as loading reads them.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                out.push((format!("{key}/"), 0, meta.modified().ok()));
                if depth > 0 {
                    walk(&path, &format!("{key}/"), depth - 1, out);
                }
            } else {
                out.push((key, meta.len(), meta.modified().ok()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo.join(name), "", 1, &mut out);
    out.sort();
    Fingerprint(out)
}

/// Loads model folders on up to 8 threads at once (start-up time is about the slowest model,
/// not the sum: ONNX Runtime's one-time load overlaps the tree models), keeping the folders'
/// order.
fn load_in_parallel(root: &Root, dirs: &[PathBuf]) -> Vec<FoundModel> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<FoundModel>>> = dirs.iter().map(|_| Mutex::new(None)).collect();
    let workers = dirs.len().clamp(1, 8);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = dirs.get(i) else { break };
                let found = std::panic::catch_unwind(|| scan_model(root, d, None))
                    .unwrap_or_else(|_| panicked(d));
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(found);
                }
            });
        }
    });
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect()
}

/// What a model whose load panicked becomes.
fn panicked(dir: &Path) -> FoundModel {
    panicked_named(
        &dir.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
    )
}

/// What the model `name` becomes when its load panicked.
pub fn panicked_named(name: &str) -> FoundModel {
    FoundModel {
        name: name.to_string(),
        config: Err(Failure::same("loading this model panicked")),
        versions: Vec::new(),
        problem: Some(Failure::same(
            "loading this model panicked (a bug: please report it)",
        )),
    }
}

/// A single model file served without a repository (`--model FILE`, `MODEL_FILE`). Answers name
/// files relative to the folder of the model.toml that applies (the file's own folder, or the
/// model folder above a numeric version folder), never that folder's place on disk. The file
/// itself was named by the operator and is read wherever it leads; its model.toml is held to
/// `opts` like a repository's.
pub fn single_model(file: &Path, name: Option<&str>, opts: &ScanOptions) -> FoundModel {
    let name = name.map(str::to_string).unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into())
    });
    // A model.toml next to the file applies to it; for a file inside a numeric version folder
    // of a repository (`<model>/<n>/<file>`), the model folder's model.toml does.
    let cfg_path = single_model_config(file);
    let base = cfg_path
        .as_deref()
        .unwrap_or(file)
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let base = base.as_path();
    let root = match Root::new(base, opts) {
        Ok(r) => r,
        Err(e) => {
            let f = Failure {
                reason: format!("cannot read the model's folder: {e}"),
                detail: format!("cannot read {}: {e}", base.display()),
            };
            return FoundModel {
                name,
                config: Err(f.clone()),
                versions: vec![FoundVersion {
                    version: 1,
                    result: Err(f),
                }],
                problem: None,
            };
        }
    };
    let toml = cfg_path.unwrap_or_else(|| base.join("model.toml"));
    let config = read_config(&root, &toml);
    let result = match &config {
        Ok(cfg) => load_version(&root, cfg, file, &toml, None),
        Err(e) => Err(e.clone()),
    };
    FoundModel {
        name,
        config,
        versions: vec![FoundVersion { version: 1, result }],
        problem: None,
    }
}

/// A model folder prepared by the server (a pickle's cache entry: `model.toml` plus version
/// folders), served as the model `name`. `settings`, a model.toml of the operator's (the one
/// beside the pickle, see [`single_model_config`]), is layered over the folder's own: each key it
/// sets replaces the folder's (routes, feature aliases, batching, feature names ...). Answers
/// name files relative to `dir` (and `settings` by its file name), never their place on disk.
pub fn prepared_model(
    dir: &Path,
    name: &str,
    settings: Option<&Path>,
    opts: &ScanOptions,
) -> FoundModel {
    let unreadable = |f: Failure| FoundModel {
        name: name.to_string(),
        config: Err(f.clone()),
        versions: Vec::new(),
        problem: Some(f),
    };
    let root = match Root::new(dir, opts) {
        Ok(r) => r,
        Err(e) => {
            return unreadable(Failure {
                reason: format!("cannot read the prepared model: {e}"),
                detail: format!("cannot read {}: {e}", dir.display()),
            })
        }
    };
    let own = dir.join("model.toml");
    let base = std::fs::read_to_string(&own).map_err(|e| root.fail(&own, e));
    let config = base.and_then(|base| match settings {
        None => ModelConfig::parse_toml(&base).map_err(|e| Failure {
            reason: format!("model.toml: {}", e.message),
            detail: format!("{}: {}", own.display(), e.report),
        }),
        Some(path) => {
            let shown = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let over = std::fs::read_to_string(path).map_err(|e| Failure {
                reason: format!("{shown}: {e}"),
                detail: format!("{}: {e}", path.display()),
            })?;
            ModelConfig::parse_layered(&base, &over).map_err(|e| Failure {
                reason: format!("{shown}: {}", e.message),
                detail: format!("{} over {}: {}", path.display(), own.display(), e.report),
            })
        }
    });
    load_model(&root, dir, name.to_string(), config, None)
}

/// The model.toml that applies to a single model file, if any: the one beside it, or, for a
/// file in a numeric version folder, the model folder's.
pub fn single_model_config(file: &Path) -> Option<PathBuf> {
    let dir = file.parent()?;
    let here = dir.join("model.toml");
    if here.symlink_metadata().is_ok() {
        return Some(here);
    }
    let is_version = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.parse::<u64>().is_ok());
    let above = dir.parent()?.join("model.toml");
    (is_version && above.symlink_metadata().is_ok()).then_some(above)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(dir: &Path, follow_symlinks: bool) -> Root {
        Root::new(dir, &ScanOptions { follow_symlinks }).unwrap()
    }

    #[test]
    fn names_are_relative_to_the_root_and_never_absolute() {
        let tmp = std::env::temp_dir();
        let r = root(&tmp, false);
        assert_eq!(r.name(&tmp.join("iris/1/model.onnx")), "iris/1/model.onnx");
        assert_eq!(r.name(&tmp.join("iris/1/../x.json")), "iris/1/../x.json");
        assert_eq!(r.name(&tmp), ".");
        // Not under the root: the file name only.
        assert_eq!(
            r.name(Path::new("/elsewhere/deep/model.json")),
            "model.json"
        );
        let f = r.fail(&tmp.join("iris/model.toml"), "bad");
        assert_eq!(f.reason, "iris/model.toml: bad");
        assert_eq!(
            f.detail,
            format!("{}: bad", tmp.join("iris/model.toml").display())
        );
        // An empty folder (a bare file name's parent) is the current one.
        assert_eq!(root(Path::new(""), false).shown, PathBuf::from("."));
    }

    #[test]
    fn links_out_are_refused_unless_followed() {
        let tmp = std::env::temp_dir().join(format!("ferroserve-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("repo/m")).unwrap();
        std::fs::write(tmp.join("secret"), b"s").unwrap();
        std::fs::write(tmp.join("repo/m/real.toml"), b"").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.join("secret"), tmp.join("repo/m/out.toml")).unwrap();
            std::os::unix::fs::symlink("real.toml", tmp.join("repo/m/in.toml")).unwrap();
            let r = root(&tmp.join("repo"), false);
            let e = r.inside(&tmp.join("repo/m/out.toml")).unwrap_err();
            assert!(
                e.reason
                    .starts_with("m/out.toml: leads out of the repository"),
                "{e:?}"
            );
            assert!(!e.reason.contains(&*tmp.to_string_lossy()), "{e:?}");
            assert!(e.detail.contains("secret"), "{e:?}");
            r.inside(&tmp.join("repo/m/in.toml")).unwrap();
            root(&tmp.join("repo"), true)
                .inside(&tmp.join("repo/m/out.toml"))
                .unwrap();
        }
        // `..` out is the same as a link out.
        let r = root(&tmp.join("repo"), false);
        assert!(r.inside(&tmp.join("repo/m/../../secret")).is_err());
        r.inside(&tmp.join("repo/m/real.toml")).unwrap();
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
