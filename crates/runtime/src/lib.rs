//! `ferroserve-runtime` owns the models a server runs: scanning a repository ([`repository`])
//! or a model folder sent with a load ([`files`]), loading each version with its backend (one
//! list of peers, [`backends`]), starting its instances behind admission control ([`handle`]),
//! keeping the live model set ([`registry`]), answering which model and version a request goes
//! to ([`Runtime`]), and the inference service every front calls with a decoded request
//! ([`service`]: validation against the model's metadata, deadline, admission and batching, the
//! classification extension, statistics, the hooks told after each request). It uses tokio only
//! for the oneshot replies, the admission semaphore and deadlines; compute runs on the
//! instances' own threads.

pub mod backends;
pub mod batcher;
pub mod error;
pub mod files;
pub mod handle;
pub mod pool;
pub mod registry;
pub mod repository;
pub mod service;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferroserve_core::{InferError, LoadedModel, ModelConfig};

pub use error::{LoadError, RepositoryError};
pub use handle::{HandleConfig, ModelHandle, Priority};
pub use registry::{ControlMode, LoadOptions, Registry, RegistryConfig, RegistryError};
pub use repository::{scan_repository, single_model, Failure, FoundModel, ScanOptions};
pub use service::{Answered, Call, Deadline, InferenceService, Origin, Transport};
pub use stats::{Outcome, VersionStats};

/// A version that is loaded and serving.
pub struct ServedVersion {
    pub name: String,
    pub version: u64,
    pub model: Arc<dyn LoadedModel>,
    pub handle: ModelHandle,
    pub config: ModelConfig,
    pub stats: Arc<VersionStats>,
}

/// The state of one version.
#[derive(Clone)]
pub enum VersionState {
    Ready(Arc<ServedVersion>),
    Unavailable(String),
}

/// A model and its versions.
#[derive(Clone)]
pub struct ModelEntry {
    pub name: String,
    pub versions: BTreeMap<u64, VersionState>,
    /// Why the model has no versions at all (bad model.toml, no artifact ...).
    pub problem: Option<String>,
    /// The model's `model.toml` (default when it has none or it could not be read).
    pub config: ModelConfig,
    /// Being loaded for the first time: no version to serve yet.
    pub loading: bool,
    /// Why the last load or reload failed, when versions loaded before it still serve.
    pub last_failure: Option<String>,
}

impl ModelEntry {
    /// The highest-numbered ready version (loaded, and healthy: a Python model with no live
    /// worker is not ready).
    pub fn latest_ready(&self) -> Option<&Arc<ServedVersion>> {
        self.versions.values().rev().find_map(|v| match v {
            VersionState::Ready(s) if s.model.health().is_ok() => Some(s),
            VersionState::Ready(_) | VersionState::Unavailable(_) => None,
        })
    }

    /// A model known and not loaded yet (shown in the index as LOADING).
    pub fn loading(name: &str) -> ModelEntry {
        ModelEntry {
            name: name.to_string(),
            versions: BTreeMap::new(),
            problem: None,
            config: ModelConfig::default(),
            loading: true,
            last_failure: None,
        }
    }

    /// A model in the repository that is not loaded (explicit model control; unloaded).
    pub fn not_loaded(name: &str, why: &str) -> ModelEntry {
        ModelEntry {
            problem: Some(why.to_string()),
            loading: false,
            ..ModelEntry::loading(name)
        }
    }

    /// Whether any version serves.
    pub fn is_ready(&self) -> bool {
        self.latest_ready().is_some()
    }

    /// Why the model is not ready (the first reason found).
    pub fn reason(&self) -> Option<String> {
        if self.loading {
            return Some("loading".into());
        }
        if let Some(p) = &self.problem {
            return Some(p.clone());
        }
        if self.latest_ready().is_some() {
            return None;
        }
        self.versions.iter().find_map(|(v, s)| match s {
            VersionState::Unavailable(r) => Some(format!("version {v}: {r}")),
            VersionState::Ready(s) => s.model.health().err().map(|r| format!("version {v}: {r}")),
        })
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<u64>,
    pub ready: bool,
    /// Triton's state names: `READY`, `UNAVAILABLE`, `LOADING`.
    pub state: &'static str,
    pub reason: Option<String>,
}

/// The models the server runs at one moment: an immutable snapshot, shared (`Arc`) by the
/// requests that took it. The [`Registry`] replaces it as a whole when a model is loaded,
/// replaced or unloaded; a request keeps the versions it took until it is answered.
#[derive(Clone)]
pub struct Runtime {
    /// Shared between snapshots: a new snapshot copies pointers, not entries (a repository of
    /// a thousand models makes a thousand snapshots while it loads).
    models: BTreeMap<String, Arc<ModelEntry>>,
    load_failures: Arc<AtomicU64>,
    /// Counts the snapshots: every change makes a higher one.
    generation: u64,
}

/// Starts the batcher and instances of every loaded version of `f` (on the current tokio
/// runtime); returns the entry and how many of its parts failed to load. `defaults` holds the
/// server-wide instance count and queue size, which a model's `model.toml` may override.
pub fn start_model(f: FoundModel, defaults: &HandleConfig) -> (ModelEntry, u64) {
    let mut load_failures = 0;
    let mut versions = BTreeMap::new();
    let config = f.config.clone().unwrap_or_default();
    let handle_cfg = HandleConfig {
        instances: config.instances.unwrap_or(defaults.instances),
        max_queue_size: config
            .batching
            .max_queue_size
            .unwrap_or(defaults.max_queue_size),
        batching: config.batching.clone(),
    };
    if f.problem.is_some() {
        load_failures += 1;
    }
    for v in f.versions {
        let state = match v.result {
            Ok(model) => {
                let stats = Arc::new(VersionStats::default());
                let handle = ModelHandle::start(
                    &format!("{}-{}", f.name, v.version),
                    model.clone(),
                    &handle_cfg,
                    stats.clone(),
                );
                tracing::info!(model = %f.name, version = v.version, "{}", model.metadata().description);
                VersionState::Ready(Arc::new(ServedVersion {
                    name: f.name.clone(),
                    version: v.version,
                    model,
                    handle,
                    // With the instance count and queue bound resolved (the model's, or the
                    // server's).
                    config: ModelConfig {
                        instances: Some(handle_cfg.instances),
                        batching: ferroserve_core::config::BatchingConfig {
                            max_queue_size: Some(handle_cfg.max_queue_size),
                            ..config.batching.clone()
                        },
                        ..config.clone()
                    },
                    stats,
                }))
            }
            Err(Failure { reason, detail }) => {
                load_failures += 1;
                tracing::warn!(model = %f.name, version = v.version, %reason, %detail, "model version not ready");
                VersionState::Unavailable(reason)
            }
        };
        versions.insert(v.version, state);
    }
    if let Some(p) = &f.problem {
        tracing::warn!(model = %f.name, reason = %p.reason, detail = %p.detail, "model not ready");
    }
    (
        ModelEntry {
            name: f.name,
            versions,
            problem: f.problem.map(|p| p.reason),
            config,
            loading: false,
            last_failure: None,
        },
        load_failures,
    )
}

impl Runtime {
    /// Starts every model found (see [`start_model`]).
    pub fn start(found: Vec<FoundModel>, defaults: &HandleConfig) -> Runtime {
        let rt = Runtime::empty();
        let mut models = BTreeMap::new();
        for f in found {
            let (entry, failed) = start_model(f, defaults);
            rt.load_failures.fetch_add(failed, Ordering::Relaxed);
            models.insert(entry.name.clone(), Arc::new(entry));
        }
        Runtime { models, ..rt }
    }

    /// No models.
    pub fn empty() -> Runtime {
        Runtime {
            models: BTreeMap::new(),
            load_failures: Arc::default(),
            generation: 0,
        }
    }

    /// This snapshot with `entry` in place of the model of its name (added if new).
    pub fn with_model(&self, entry: ModelEntry) -> Runtime {
        let mut next = self.clone();
        next.generation += 1;
        next.models.insert(entry.name.clone(), Arc::new(entry));
        next
    }

    /// This snapshot without the model `name`.
    pub fn without_model(&self, name: &str) -> Runtime {
        let mut next = self.clone();
        next.generation += 1;
        next.models.remove(name);
        next
    }

    /// Counts a failed load (kept across snapshots).
    pub fn count_load_failures(&self, n: u64) {
        self.load_failures.fetch_add(n, Ordering::Relaxed);
    }

    /// Which snapshot this is: every change makes a higher number.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Models or versions that failed to load, at start-up or since.
    pub fn load_failures(&self) -> u64 {
        self.load_failures.load(Ordering::Relaxed)
    }

    pub fn models(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.values().map(|e| &**e)
    }

    /// The model named `name`, or a not-found error listing the models there are. The message
    /// starts as Triton's does ("Request for unknown model"), which Triton's clients check.
    pub fn model(&self, name: &str) -> Result<&ModelEntry, InferError> {
        self.models.get(name).map(|e| &**e).ok_or_else(|| {
            let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
            InferError::not_found(format!(
                "Request for unknown model '{name}'; this server has: {}",
                if known.is_empty() {
                    "no models".into()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The version a request goes to: the given one, or the highest ready one.
    pub fn version(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<ServedVersion>, InferError> {
        let entry = self.model(name)?;
        match version {
            None | Some("") => entry.latest_ready().cloned().ok_or_else(|| {
                InferError::unavailable(format!(
                    "model '{name}' is not ready: {}",
                    entry.reason().unwrap_or_else(|| "no version loaded".into())
                ))
            }),
            Some(v) => {
                let n: u64 = v.parse().map_err(|_| {
                    InferError::not_found(format!(
                        // Triton's wording first, which its clients check.
                        "failed to get model version from specified version string '{v}': unknown version of model '{name}' (versions are numbers)"
                    ))
                })?;
                match entry.versions.get(&n) {
                    Some(VersionState::Ready(s)) => match s.model.health() {
                        Ok(()) => Ok(s.clone()),
                        Err(r) => Err(InferError::unavailable(format!(
                            "version {n} of model '{name}' is not ready: {r}"
                        ))),
                    },
                    Some(VersionState::Unavailable(r)) => Err(InferError::unavailable(format!(
                        "version {n} of model '{name}' is not ready: {r}"
                    ))),
                    None => Err(InferError::not_found(format!(
                        "unknown version {n} of model '{name}'; served versions: {:?}",
                        entry.versions.keys().collect::<Vec<_>>()
                    ))),
                }
            }
        }
    }

    /// Every model and version with its state.
    pub fn index(&self) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        for m in self.models.values() {
            if m.versions.is_empty() {
                out.push(IndexEntry {
                    name: m.name.clone(),
                    version: None,
                    ready: false,
                    state: if m.loading { "LOADING" } else { "UNAVAILABLE" },
                    reason: m.reason(),
                });
            }
            for (v, s) in &m.versions {
                let health = match s {
                    VersionState::Ready(s) => s.model.health(),
                    VersionState::Unavailable(r) => Err(r.clone()),
                };
                let ready = health.is_ok();
                out.push(IndexEntry {
                    name: m.name.clone(),
                    version: Some(*v),
                    ready,
                    state: if ready { "READY" } else { "UNAVAILABLE" },
                    reason: match health {
                        Err(r) => Some(r),
                        // A failed reload leaves the versions loaded before it serving.
                        Ok(()) => m.last_failure.clone(),
                    },
                });
            }
        }
        out
    }

    /// Whether every model has a ready version.
    pub fn all_ready(&self) -> bool {
        self.models.values().all(|m| m.latest_ready().is_some())
    }

    /// Whether at least one model has a ready version.
    pub fn any_ready(&self) -> bool {
        self.models.values().any(|m| m.latest_ready().is_some())
    }
}
