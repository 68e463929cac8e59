//! `ferroserve-runtime` owns the models a server runs: scanning a repository
//! ([`repository`]), loading each version with its backend (one list of peers, [`backends`]),
//! starting its instances behind admission control ([`handle`]), and answering which model and
//! version a request goes to ([`Runtime`]). It uses tokio only for the oneshot replies and the
//! admission semaphore; compute runs on the instances' own threads.

pub mod backends;
pub mod batcher;
pub mod error;
pub mod handle;
pub mod repository;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;

use ferroserve_core::{InferError, LoadedModel, ModelConfig};

pub use error::{LoadError, RepositoryError};
pub use handle::{HandleConfig, ModelHandle};
pub use repository::{scan_repository, single_model, Failure, FoundModel, ScanOptions};
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
pub enum VersionState {
    Ready(Arc<ServedVersion>),
    Unavailable(String),
}

/// A model and its versions.
pub struct ModelEntry {
    pub name: String,
    pub versions: BTreeMap<u64, VersionState>,
    /// Why the model has no versions at all (bad model.toml, no artifact ...).
    pub problem: Option<String>,
    /// The model's `model.toml` (default when it has none or it could not be read).
    pub config: ModelConfig,
}

impl ModelEntry {
    /// The highest-numbered ready version.
    pub fn latest_ready(&self) -> Option<&Arc<ServedVersion>> {
        self.versions.values().rev().find_map(|v| match v {
            VersionState::Ready(s) => Some(s),
            VersionState::Unavailable(_) => None,
        })
    }

    /// Why the model is not ready (the first reason found).
    pub fn reason(&self) -> Option<String> {
        if let Some(p) = &self.problem {
            return Some(p.clone());
        }
        if self.latest_ready().is_some() {
            return None;
        }
        self.versions.iter().find_map(|(v, s)| match s {
            VersionState::Unavailable(r) => Some(format!("version {v}: {r}")),
            VersionState::Ready(_) => None,
        })
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub name: String,
    pub version: Option<u64>,
    pub ready: bool,
    pub reason: Option<String>,
}

/// Every model the server runs. Built once at start-up and shared (`Arc`).
pub struct Runtime {
    models: BTreeMap<String, ModelEntry>,
    load_failures: u64,
}

impl Runtime {
    /// Starts the batcher and instances of every loaded version found (on the current tokio
    /// runtime). `defaults` holds the server-wide instance count and queue size, which a model's
    /// `model.toml` may override.
    pub fn start(found: Vec<FoundModel>, defaults: &HandleConfig) -> Runtime {
        let mut models = BTreeMap::new();
        let mut load_failures = 0;
        for f in found {
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
                            // With the instance count resolved (the model's, or the server's).
                            config: ModelConfig {
                                instances: Some(handle_cfg.instances),
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
            models.insert(
                f.name.clone(),
                ModelEntry {
                    name: f.name,
                    versions,
                    problem: f.problem.map(|p| p.reason),
                    config,
                },
            );
        }
        Runtime {
            models,
            load_failures,
        }
    }

    /// Models or versions that failed to load at start-up.
    pub fn load_failures(&self) -> u64 {
        self.load_failures
    }

    pub fn models(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.values()
    }

    /// The model named `name`, or a not-found error listing the models there are. The message
    /// starts as Triton's does ("Request for unknown model"), which Triton's clients check.
    pub fn model(&self, name: &str) -> Result<&ModelEntry, InferError> {
        self.models.get(name).ok_or_else(|| {
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
                    Some(VersionState::Ready(s)) => Ok(s.clone()),
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
                    reason: m.problem.clone(),
                });
            }
            for (v, s) in &m.versions {
                out.push(IndexEntry {
                    name: m.name.clone(),
                    version: Some(*v),
                    ready: matches!(s, VersionState::Ready(_)),
                    reason: match s {
                        VersionState::Unavailable(r) => Some(r.clone()),
                        VersionState::Ready(_) => None,
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
