//! The model repository: `<repo>/<model>/model.toml` plus numeric version folders
//! `<repo>/<model>/<n>/` holding one artifact each. Scanning never fails as a whole: a model or
//! version that cannot be loaded is kept with the reason, reported not ready, while the others
//! serve.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferroserve_core::config::{BackendKind, VersionPolicy};
use ferroserve_core::{Backend, LoadedModel, ModelConfig};

use ferroserve_onnx::OnnxBackend;
use ferroserve_trees::TreeError;

use crate::trees_backend::{TreesBackend, TreesModel};

/// Extensions of files the server can serve.
pub const MODEL_EXTENSIONS: [&str; 6] = ["json", "ubj", "txt", "lgb", "onnx", "model"];
/// Extensions of pickles, which must be imported first.
pub const PICKLE_EXTENSIONS: [&str; 4] = ["pkl", "pickle", "joblib", "sav"];

/// One version found on disk and what became of it.
pub struct FoundVersion {
    pub version: u64,
    pub result: Result<Arc<dyn LoadedModel>, String>,
}

/// One model folder.
pub struct FoundModel {
    pub name: String,
    pub config: Result<ModelConfig, String>,
    pub versions: Vec<FoundVersion>,
    /// Why the model has no servable version, when that is decided before any version is tried.
    pub problem: Option<String>,
}

/// Explains how to serve a pickle.
pub fn pickle_help(path: &Path) -> String {
    format!(
        "{} is a Python pickle, which ferroserve does not load directly (unpickling runs code). \
         Convert it once with `ferroserve import {} --out <repository>/<name>`, then serve the repository",
        path.display(),
        path.display()
    )
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Picks the artifact in a version folder: the configured file, or the only model file.
fn find_artifact(dir: &Path, cfg: &ModelConfig) -> Result<PathBuf, String> {
    if let Some(file) = &cfg.file {
        let p = dir.join(file);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{} does not exist (model.toml file = {file:?})",
                p.display()
            ))
        };
    }
    let mut found = Vec::new();
    let mut pickles = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_file() {
            continue;
        }
        let ext = extension(&p);
        if MODEL_EXTENSIONS.contains(&ext.as_str()) {
            found.push(p);
        } else if PICKLE_EXTENSIONS.contains(&ext.as_str()) {
            pickles.push(p);
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 if !pickles.is_empty() => Err(pickle_help(&pickles[0])),
        0 => Err(format!(
            "no model file in {} (expected one of .{})",
            dir.display(),
            MODEL_EXTENSIONS.join(", .")
        )),
        _ => Err(format!(
            "{} model files in {}; name one with `file = \"...\"` in model.toml",
            found.len(),
            dir.display()
        )),
    }
}

/// Loads one artifact with the right backend: `backend` in model.toml when set; otherwise
/// XGBoost and LightGBM files and ONNX graphs that are only a tree ensemble go to the native
/// engine, and every other ONNX graph goes to ONNX Runtime.
pub fn load_artifact(cfg: &ModelConfig, file: &Path) -> Result<Arc<dyn LoadedModel>, String> {
    let ext = extension(file);
    if PICKLE_EXTENSIONS.contains(&ext.as_str()) {
        return Err(pickle_help(file));
    }
    let model = load_with_backend(cfg, file, &ext)?;
    // The parts of model.toml that depend on the model (feature counts, classes).
    cfg.check_model(model.metadata())
        .map_err(|e| format!("model.toml: {e}"))?;
    Ok(model)
}

fn load_with_backend(
    cfg: &ModelConfig,
    file: &Path,
    ext: &str,
) -> Result<Arc<dyn LoadedModel>, String> {
    let on_onnx = |why: Option<String>| {
        OnnxBackend.load(cfg, file).map_err(|e| match why {
            Some(why) => format!(
                "{}: {e} (it needs ONNX Runtime because {why})",
                file.display()
            ),
            None => format!("{}: {e}", file.display()),
        })
    };
    match cfg.backend {
        Some(BackendKind::Onnx) => on_onnx(None),
        Some(BackendKind::Trees) => TreesBackend
            .load(cfg, file)
            .map_err(|e| format!("{}: {e}", file.display())),
        None if ext == "onnx" => match ferroserve_trees::load_path(file) {
            Ok(forest) => TreesModel::new(cfg, forest)
                .map(|m| Arc::new(m) as Arc<dyn LoadedModel>)
                .map_err(|e| format!("{}: {e}", file.display())),
            // Not (only) a tree ensemble: ONNX Runtime runs it.
            Err(e @ TreeError::Unsupported { .. }) => {
                tracing::debug!(file = %file.display(), reason = %e, "not a pure tree ensemble: ONNX Runtime");
                on_onnx(Some(e.to_string()))
            }
            Err(e) => Err(format!("{}: {e}", file.display())),
        },
        None => TreesBackend
            .load(cfg, file)
            .map_err(|e| format!("{}: {e}", file.display())),
    }
}

/// Reads `<dir>/model.toml` if present.
fn read_config(dir: &Path, name: &str) -> Result<ModelConfig, String> {
    let path = dir.join("model.toml");
    if !path.exists() {
        return Ok(ModelConfig::default());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cfg = ModelConfig::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(n) = &cfg.name {
        if n != name {
            return Err(format!(
                "{}: name = {n:?} but the folder is {name:?}; they must match",
                path.display()
            ));
        }
    }
    Ok(cfg)
}

/// Numeric version folders of a model, selected by the policy.
fn select_versions(dir: &Path, policy: &VersionPolicy) -> Result<Vec<u64>, String> {
    let mut all: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
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
            let missing: Vec<_> = want.iter().filter(|v| !all.contains(v)).collect();
            if !missing.is_empty() {
                return Err(format!(
                    "version_policy names versions {missing:?} that have no folder in {}",
                    dir.display()
                ));
            }
            let mut v = want.clone();
            v.sort_unstable();
            v.dedup();
            v
        }
    })
}

/// Scans one model folder and loads its selected versions.
pub fn scan_model(dir: &Path) -> FoundModel {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let config = read_config(dir, &name);
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
    let versions = match select_versions(dir, &cfg.version_policy) {
        Ok(v) => v,
        Err(e) => {
            found.problem = Some(e);
            return found;
        }
    };
    if versions.is_empty() {
        // A model file straight in the model folder is served as version 1.
        match find_artifact(dir, &cfg) {
            Ok(file) => found.versions.push(FoundVersion {
                version: 1,
                result: load_artifact(&cfg, &file),
            }),
            Err(e) => {
                found.problem = Some(format!("no version folders in {} and {e}", dir.display()))
            }
        }
        return found;
    }
    for v in versions {
        let vdir = dir.join(v.to_string());
        let result = find_artifact(&vdir, &cfg).and_then(|file| load_artifact(&cfg, &file));
        found.versions.push(FoundVersion { version: v, result });
    }
    found
}

/// Scans a repository: every sub-folder is a model (hidden folders are skipped).
pub fn scan_repository(repo: &Path) -> Result<Vec<FoundModel>, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo)
        .map_err(|e| format!("cannot read model repository {}: {e}", repo.display()))?
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
    Ok(load_in_parallel(&dirs))
}

/// Loads model folders on up to 8 threads at once (start-up time is about the slowest model,
/// not the sum: ONNX Runtime's one-time load overlaps the tree models), keeping the folders'
/// order.
fn load_in_parallel(dirs: &[PathBuf]) -> Vec<FoundModel> {
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
                let found =
                    std::panic::catch_unwind(|| scan_model(d)).unwrap_or_else(|_| FoundModel {
                        name: d
                            .file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default(),
                        config: Err("loading this model panicked".into()),
                        versions: Vec::new(),
                        problem: Some(
                            "loading this model panicked (a bug: please report it)".into(),
                        ),
                    });
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

/// A single model file served without a repository (`--model FILE`, `MODEL_FILE`).
pub fn single_model(file: &Path, name: Option<&str>) -> FoundModel {
    let name = name.map(str::to_string).unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into())
    });
    // A model.toml next to the file applies to it; for a file inside a numeric version folder
    // of a repository (`<model>/<n>/<file>`), the model folder's model.toml does.
    let cfg_path = single_model_config(file);
    let config = match cfg_path {
        Some(p) => std::fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|t| ModelConfig::from_toml(&t))
            .map_err(|e| format!("{}: {e}", p.display())),
        None => Ok(ModelConfig::default()),
    };
    let result = match &config {
        Ok(cfg) => load_artifact(cfg, file),
        Err(e) => Err(e.clone()),
    };
    FoundModel {
        name,
        config,
        versions: vec![FoundVersion { version: 1, result }],
        problem: None,
    }
}

/// The model.toml that applies to a single model file, if any.
fn single_model_config(file: &Path) -> Option<PathBuf> {
    let dir = file.parent()?;
    let here = dir.join("model.toml");
    if here.is_file() {
        return Some(here);
    }
    let is_version = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.parse::<u64>().is_ok());
    let above = dir.parent()?.join("model.toml");
    (is_version && above.is_file()).then_some(above)
}
