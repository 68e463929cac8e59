//! The live model set: one swappable snapshot ([`Runtime`]) that requests take whole, and the
//! model control that replaces it — loading models in the background at start, loading,
//! replacing and unloading them while serving, and (in `poll` mode) following the repository.
//!
//! A load builds the new versions beside the ones serving; the snapshot is swapped only once
//! they are ready, so a request sees the old model or the new one, never a mix. Requests that
//! took the old snapshot keep its versions (`Arc`) until they are answered; the old versions'
//! batchers answer what they had queued, then their instances stop. A load that fails leaves
//! what was serving in place, with the failure in the index and the log. Loads and unloads are
//! serialised; lookups never wait for them.
//!
//! A load may carry [`LoadOptions`] (Triton's load parameters): a [`ConfigOverride`] merged over
//! the model's `model.toml` for that load only, and the model folder's files, loaded from a
//! private folder instead of the repository ([`crate::files`]). The next load without them
//! reads the repository and `model.toml` again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ferroserve_core::ConfigOverride;

use crate::error::RepositoryError;
use crate::files::{self, ModelFile};
use crate::repository::{self, Fingerprint, FoundModel, ScanOptions};
use crate::{start_model, HandleConfig, ModelEntry, Runtime, VersionState};

/// Triton's model control modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMode {
    /// Load every model at start; the set changes only by restarting.
    #[default]
    None,
    /// Load every model at start, then follow the repository: new, changed and removed model
    /// folders are loaded, reloaded and unloaded every poll interval.
    Poll,
    /// Load the models named at start (`--load-model`); the rest by the load API.
    Explicit,
}

/// How the registry is set up.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    pub mode: ControlMode,
    /// How often `poll` mode reads the repository.
    pub poll_every: Duration,
    /// `explicit` mode: the models loaded at start (`*`: all).
    pub load_at_start: Vec<String>,
    pub defaults: HandleConfig,
    pub scan: ScanOptions,
}

/// Why a model-control call failed (the message is the answer's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No such model folder in the repository.
    #[error("failed to load '{0}': no model folder of that name in the repository")]
    UnknownModel(String),
    /// The model loaded no version that can serve.
    #[error("failed to load '{name}': {reason}")]
    LoadFailed { name: String, reason: String },
    /// Unloading a model that is not loaded.
    #[error("failed to unload '{0}': the model is not loaded")]
    NotLoaded(String),
    /// Model control needs a repository (the server serves one file).
    #[error(
        "model control needs a model repository (--repository); this server serves one model file"
    )]
    NoRepository,
    /// Changing the model set is not allowed in this mode.
    #[error("{0}")]
    NotAllowed(String),
    /// The files sent with a load cannot make a model folder (a bad path, no config). Said as
    /// Triton says it, whose clients check the words.
    #[error("failed to load '{name}': failed to poll from model repository: {reason}")]
    Files { name: String, reason: String },
}

/// What a load is asked besides "read the repository" (Triton's load parameters).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Settings merged over the model's `model.toml` for this load (Triton's `config`).
    pub config: Option<ConfigOverride>,
    /// The model folder's files (Triton's `file:<path>`): when any, the model is loaded from
    /// them instead of the repository, and `config` must be given (as Triton requires).
    pub files: Vec<ModelFile>,
}

/// The live registry.
pub struct Registry {
    current: RwLock<Arc<Runtime>>,
    repo: Option<PathBuf>,
    cfg: RegistryConfig,
    /// Serialises the loads and unloads of each model (different models load in parallel;
    /// lookups never wait).
    control: Mutex<BTreeMap<String, Arc<Mutex<()>>>>,
    /// Start-time loads not finished yet (the server is not ready before they are).
    starting: std::sync::atomic::AtomicUsize,
    /// What each loaded model's folder held when it was loaded (poll mode compares).
    loaded_prints: Mutex<BTreeMap<String, Fingerprint>>,
    /// Poll mode: what each changed folder held at the last poll (taken once it holds still).
    seen_prints: Mutex<BTreeMap<String, (Fingerprint, std::time::Instant)>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    /// A registry serving `runtime` as it is (single model file, tests).
    pub fn fixed(runtime: Arc<Runtime>) -> Arc<Registry> {
        let (changed, _) = tokio::sync::watch::channel(runtime.generation());
        Arc::new(Registry {
            current: RwLock::new(runtime),
            repo: None,
            cfg: RegistryConfig::default(),
            control: Mutex::default(),
            starting: Default::default(),
            loaded_prints: Mutex::default(),
            seen_prints: Mutex::default(),
            changed,
        })
    }

    /// A registry of the one model `name`, shown as LOADING until `load` (run off the async
    /// runtime) has found it, then serving it or showing why it cannot: a single model file
    /// that takes a while to prepare (a pickle converted at start), while the listeners answer
    /// health probes. The model set never changes after that. Must be called on a tokio
    /// runtime; returns at once.
    pub fn one_model(
        name: &str,
        defaults: HandleConfig,
        load: impl FnOnce() -> FoundModel + Send + 'static,
    ) -> Arc<Registry> {
        let rt = Runtime::empty().with_model(ModelEntry::loading(name));
        let reg = Registry::fixed(Arc::new(rt));
        reg.starting.store(1, Ordering::SeqCst);
        let cfg = RegistryConfig {
            defaults,
            ..RegistryConfig::default()
        };
        let task = reg.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                .unwrap_or_else(|_| repository::panicked_named(&name));
            let (entry, failed) = start_model(found, &cfg.defaults);
            task.snapshot().count_load_failures(failed);
            task.swap(|rt| rt.with_model(entry));
            task.starting.store(0, Ordering::SeqCst);
            let generation = task.snapshot().generation();
            let _ = task.changed.send(generation);
        });
        reg
    }

    /// A registry over the repository `repo`: every model folder shows as LOADING (in
    /// `explicit` mode, those not named to load at start as not loaded) and loads in the
    /// background, in parallel, each serving as soon as it is ready. Must be called on a tokio
    /// runtime; returns at once.
    pub fn start(repo: PathBuf, cfg: RegistryConfig) -> Result<Arc<Registry>, RepositoryError> {
        let names = repository::model_names(&repo, &cfg.scan)?;
        let wanted = |n: &str| match cfg.mode {
            ControlMode::Explicit => cfg.load_at_start.iter().any(|w| w == "*" || w == n),
            _ => true,
        };
        let mut rt = Runtime::empty();
        for n in &names {
            rt = rt.with_model(if wanted(n) {
                ModelEntry::loading(n)
            } else {
                ModelEntry::not_loaded(n, NOT_LOADED)
            });
        }
        let (changed, _) = tokio::sync::watch::channel(rt.generation());
        let reg = Arc::new(Registry {
            current: RwLock::new(Arc::new(rt)),
            repo: Some(repo),
            cfg: cfg.clone(),
            control: Mutex::default(),
            starting: Default::default(),
            loaded_prints: Mutex::default(),
            seen_prints: Mutex::default(),
            changed,
        });
        let at_start: Vec<String> = names.into_iter().filter(|n| wanted(n)).collect();
        reg.starting.store(at_start.len(), Ordering::SeqCst);
        // As many loaders as cores, each taking the next model: the loads run in parallel
        // without a thread (and an allocator arena) per model, and each model serves as soon
        // as it is ready.
        let loaders = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(at_start.len());
        let next = Arc::new(Mutex::new(at_start.into_iter()));
        for _ in 0..loaders {
            let (reg, next) = (reg.clone(), next.clone());
            tokio::task::spawn_blocking(move || loop {
                let Some(n) = next.lock().unwrap_or_else(|e| e.into_inner()).next() else {
                    return;
                };
                // Counted down however the load ends (a panic included).
                struct Done<'a>(&'a Registry);
                impl Drop for Done<'_> {
                    fn drop(&mut self) {
                        if self.0.starting.fetch_sub(1, Ordering::SeqCst) == 1 {
                            let generation = self.0.snapshot().generation();
                            let _ = self.0.changed.send(generation);
                        }
                    }
                }
                let _done = Done(&reg);
                let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    reg.load_blocking(&n)
                }));
                match loaded {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(model = %n, error = %e, "model not loaded at start")
                    }
                    Err(_) => tracing::error!(model = %n, "loading the model panicked"),
                }
            });
        }
        if cfg.mode == ControlMode::Poll {
            let weak = Arc::downgrade(&reg);
            let every = cfg.poll_every.max(Duration::from_millis(100));
            tokio::spawn(async move {
                let mut wait = every;
                loop {
                    tokio::time::sleep(wait).await;
                    let Some(reg) = weak.upgrade() else { break };
                    // A change not yet quiet is looked at again as soon as it is, not a whole
                    // poll later.
                    let recheck = tokio::task::spawn_blocking(move || reg.poll_once())
                        .await
                        .ok()
                        .flatten();
                    wait = recheck.map_or(every, |r| r.clamp(Duration::from_millis(20), every));
                }
            });
        }
        Ok(reg)
    }

    /// The models serving now. A request takes it once and keeps it until it is answered.
    pub fn snapshot(&self) -> Arc<Runtime> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tells when the model set changed (the new snapshot's generation).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Whether every load started with the server has ended (served or failed).
    pub fn started(&self) -> bool {
        self.starting.load(Ordering::SeqCst) == 0
    }

    /// The lock that serialises loads and unloads of the model `name`.
    fn model_lock(&self, name: &str) -> Arc<Mutex<()>> {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    pub fn mode(&self) -> ControlMode {
        self.cfg.mode
    }

    /// Whether the load and unload calls may change the model set.
    pub fn allows_control(&self) -> bool {
        self.repo.is_some() && self.cfg.mode == ControlMode::Explicit
    }

    fn swap(&self, f: impl FnOnce(&Runtime) -> Runtime) {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        let next = Arc::new(f(&cur));
        let generation = next.generation();
        *cur = next;
        drop(cur);
        let _ = self.changed.send(generation);
    }

    /// Loads (or reloads) the model `name` from the repository, off the async runtime.
    pub async fn load(self: &Arc<Self>, name: &str) -> Result<(), RegistryError> {
        self.load_with(name, LoadOptions::default()).await
    }

    /// Loads (or reloads) the model `name` with `opts`, off the async runtime.
    pub async fn load_with(
        self: &Arc<Self>,
        name: &str,
        opts: LoadOptions,
    ) -> Result<(), RegistryError> {
        let reg = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || reg.load_blocking_with(&name, &opts))
            .await
            .unwrap_or_else(|e| {
                Err(RegistryError::LoadFailed {
                    name: String::new(),
                    reason: format!("the load task failed: {e}"),
                })
            })
    }

    /// Loads (or reloads) the model `name`: its versions are built beside those serving and
    /// take over only when ready. Blocking (loading reads and compiles model files).
    pub fn load_blocking(&self, name: &str) -> Result<(), RegistryError> {
        self.load_blocking_with(name, &LoadOptions::default())
    }

    /// [`Registry::load_blocking`] with `opts`: an override of model.toml's settings, or the
    /// model folder's files (checked before anything is written or locked).
    pub fn load_blocking_with(&self, name: &str, opts: &LoadOptions) -> Result<(), RegistryError> {
        let repo = self.repo.as_ref().ok_or(RegistryError::NoRepository)?;
        if !opts.files.is_empty() {
            return self.load_files(name, opts);
        }
        let lock = self.model_lock(name);
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        let print = repository::fingerprint(repo, name);
        let scanned = repository::scan_one_with(repo, name, &self.cfg.scan, opts.config.as_ref());
        let found = scanned.map_err(|e| {
            // The detail names the repository's path: the log has it, the answer does not.
            tracing::warn!(model = %name, error = %e, "model load failed");
            RegistryError::LoadFailed {
                name: name.to_string(),
                reason: "the model repository cannot be read".into(),
            }
        })?;
        let Some(found) = found else {
            return Err(RegistryError::UnknownModel(name.to_string()));
        };
        let result = self.install(found);
        self.loaded_prints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), print);
        result
    }

    /// Loads the model `name` from the files sent with the load, written into a private folder
    /// that is removed once the load has ended. The folder is read as a repository of its own,
    /// never following links out of it.
    fn load_files(&self, name: &str, opts: &LoadOptions) -> Result<(), RegistryError> {
        let refuse = |reason: String| RegistryError::Files {
            name: name.to_string(),
            reason,
        };
        if opts.config.is_none() {
            return Err(refuse(
                "the \"config\" parameter must be given with \"file:\" parameters".into(),
            ));
        }
        if !repository::is_model_name(name) {
            return Err(refuse("the model name is not a plain folder name".into()));
        }
        files::check(&opts.files).map_err(refuse)?;
        let lock = self.model_lock(name);
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        let written = files::write(name, &opts.files).map_err(refuse)?;
        let found = repository::scan_one_with(
            written.repository(),
            name,
            &ScanOptions::default(),
            opts.config.as_ref(),
        )
        .map_err(|e| {
            tracing::warn!(model = %name, error = %e, "the files of a load cannot be read");
            refuse("the files cannot be read back".into())
        })?
        .ok_or_else(|| refuse("the model folder was not written".into()))?;
        let result = self.install(found);
        // Loaded from elsewhere: poll mode (which never takes files) has nothing to compare.
        self.loaded_prints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        drop(written);
        result
    }

    /// Starts `found`'s versions and swaps them in: loaded versions replace those of the same
    /// model; versions that failed keep the old one of that number serving (if any). Fails
    /// (leaving what served) when no version of the new load can serve.
    fn install(&self, found: FoundModel) -> Result<(), RegistryError> {
        let name = found.name.clone();
        let (mut entry, failed) = start_model(found, &self.cfg.defaults);
        let current = self.snapshot();
        current.count_load_failures(failed);
        let old = current.model(&name).ok().cloned();
        let ok = entry.is_ready();
        let failure = (!ok || failed > 0).then(|| {
            entry
                .reason()
                .unwrap_or_else(|| "a version failed to load".into())
        });
        if let Some(old) = old.filter(|o| o.is_ready()) {
            if !ok {
                // Nothing new serves: the old model stays as it was, with the failure shown.
                let reason = failure.clone().unwrap_or_default();
                tracing::warn!(model = %name, %reason, "reload failed; the versions loaded before keep serving");
                let mut kept = old.clone();
                kept.last_failure = Some(format!("the last load failed: {reason}"));
                self.swap(|rt| rt.with_model(kept));
                return Err(RegistryError::LoadFailed { name, reason });
            }
            // Versions that failed now but served before keep serving.
            for (v, state) in entry.versions.iter_mut() {
                if let (VersionState::Unavailable(_), Some(VersionState::Ready(prev))) =
                    (&*state, old.versions.get(v))
                {
                    *state = VersionState::Ready(prev.clone());
                }
            }
            entry.last_failure = failure
                .clone()
                .map(|r| format!("the last load failed: {r}"));
        }
        let ready = entry.is_ready();
        self.swap(|rt| rt.with_model(entry));
        if ready {
            tracing::info!(model = %name, "model loaded");
            Ok(())
        } else {
            Err(RegistryError::LoadFailed {
                name,
                reason: failure.unwrap_or_else(|| "no version to serve".into()),
            })
        }
    }

    /// Unloads the model `name`: it leaves the snapshot at once (new requests get "unknown"
    /// or, in the index, "not loaded"); requests already holding it are answered.
    pub fn unload(&self, name: &str) -> Result<(), RegistryError> {
        let lock = self.model_lock(name);
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot();
        match current.model(name) {
            Ok(m) if m.is_ready() || m.loading => {}
            _ => return Err(RegistryError::NotLoaded(name.to_string())),
        }
        self.loaded_prints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let in_repo = self.repo.as_ref().is_some_and(|r| r.join(name).is_dir());
        self.swap(|rt| {
            if in_repo {
                rt.with_model(ModelEntry::not_loaded(name, UNLOADED))
            } else {
                rt.without_model(name)
            }
        });
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// Poll mode, once: loads new model folders, reloads changed ones (once a change has held
    /// still for one poll: a folder still being written is not loaded half-way), unloads
    /// removed ones.
    ///
    /// Returns how soon to look again when a change was seen that is not quiet yet (the time
    /// until nothing in it was modified for [`QUIET`]).
    pub fn poll_once(&self) -> Option<Duration> {
        let repo = self.repo.clone()?;
        let names = match repository::model_names(&repo, &self.cfg.scan) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the repository; keeping the models loaded");
                return None;
            }
        };
        let loaded: Vec<String> = self.snapshot().models().map(|m| m.name.clone()).collect();
        for gone in loaded.iter().filter(|n| !names.contains(n)) {
            let _ = self.unload(gone);
            let _ = self.swap_out(gone);
        }
        let mut recheck: Option<Duration> = None;
        for n in &names {
            let now = repository::fingerprint(&repo, n);
            let same_as_loaded = self
                .loaded_prints
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(n)
                == Some(&now);
            if same_as_loaded {
                continue;
            }
            // Taken once nothing in it changed for a second (a folder moved in whole, an old
            // copy at once; a fresh copy a second after its last write), or once it has held
            // still from one poll to the next (at least a poll interval).
            let still = {
                let mut seen = self.seen_prints.lock().unwrap_or_else(|e| e.into_inner());
                let held = seen
                    .get(n)
                    .is_some_and(|(p, at)| *p == now && at.elapsed() >= self.cfg.poll_every);
                let still = held || now.quiet_for(QUIET);
                if !still {
                    let until = now.quiet_in(QUIET);
                    recheck = Some(recheck.map_or(until, |r| r.min(until)));
                }
                match seen.get(n) {
                    // Keep when it was first seen like this.
                    Some((p, _)) if *p == now => {}
                    _ => {
                        seen.insert(n.clone(), (now, std::time::Instant::now()));
                    }
                }
                still
            };
            if still {
                match self.load_blocking(n) {
                    Ok(()) => tracing::info!(model = %n, "repository change loaded"),
                    Err(e) => {
                        tracing::warn!(model = %n, error = %e, "repository change not loaded")
                    }
                }
            }
        }
        recheck
    }

    /// Drops a model whose folder is gone from the snapshot entirely.
    fn swap_out(&self, name: &str) -> Result<(), RegistryError> {
        let lock = self.model_lock(name);
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.swap(|rt| rt.without_model(name));
        Ok(())
    }
}

/// How long a changed model folder must be untouched to be loaded at the first poll that sees
/// the change.
const QUIET: Duration = Duration::from_secs(1);

const NOT_LOADED: &str =
    "not loaded (explicit model control: load it with POST /v2/repository/models/<name>/load)";
const UNLOADED: &str = "unloaded";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant;

    /// A repository of copies of the bundled tree models, in a fresh temporary folder.
    fn repo(models: &[&str]) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fs-registry-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
        for m in models {
            copy_dir(&examples.join(m), &dir.join(m));
        }
        dir
    }

    use ferroserve_testkit::copy_dir;

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{what}: not within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn ready(reg: &Registry, name: &str) -> Option<Vec<u64>> {
        let snap = reg.snapshot();
        let m = snap.model(name).ok()?;
        let v: Vec<u64> = m
            .versions
            .iter()
            .filter(|(_, s)| matches!(s, VersionState::Ready(_)))
            .map(|(v, _)| *v)
            .collect();
        (!v.is_empty()).then_some(v)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn models_load_in_the_background_and_serve_when_ready() {
        let dir = repo(&["breast_cancer", "diabetes"]);
        let reg = Registry::start(dir.clone(), RegistryConfig::default()).unwrap();
        // Known at once, loading or loaded.
        let names: Vec<String> = reg.snapshot().models().map(|m| m.name.clone()).collect();
        assert_eq!(names, ["breast_cancer", "diabetes"]);
        until("both ready", || {
            ready(&reg, "breast_cancer").is_some() && ready(&reg, "diabetes").is_some()
        })
        .await;
        assert!(reg.snapshot().generation() >= 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_model_is_loading_until_prepared_then_serves_or_says_why_not() {
        let dir = repo(&["diabetes"]);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let folder = dir.join("diabetes");
        let reg = Registry::one_model("sugar", HandleConfig::default(), move || {
            let _ = wait.recv_timeout(Duration::from_secs(20));
            repository::prepared_model(&folder, "sugar", None, &ScanOptions::default())
        });
        let snap = reg.snapshot();
        assert!(snap.model("sugar").unwrap().loading);
        assert!(!reg.started());
        go.send(()).unwrap();
        until("served", || ready(&reg, "sugar").is_some()).await;
        until("started", || reg.started()).await;
        assert!(!reg.allows_control());
        // A load that panics is the model's failure, not the server's.
        let reg = Registry::one_model("boom", HandleConfig::default(), || panic!("in the test"));
        until("failed", || reg.started()).await;
        let snap = reg.snapshot();
        let m = snap.model("boom").unwrap();
        assert!(!m.loading && !m.is_ready(), "{:?}", m.reason());
        assert!(m.reason().unwrap().contains("panicked"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn explicit_mode_loads_what_it_is_told_and_unloads() {
        let dir = repo(&["breast_cancer", "diabetes"]);
        let cfg = RegistryConfig {
            mode: ControlMode::Explicit,
            load_at_start: vec!["diabetes".into()],
            ..RegistryConfig::default()
        };
        let reg = Registry::start(dir.clone(), cfg).unwrap();
        assert!(reg.allows_control());
        until("diabetes ready", || ready(&reg, "diabetes").is_some()).await;
        let idx = reg.snapshot().index();
        let bc = idx.iter().find(|e| e.name == "breast_cancer").unwrap();
        assert_eq!(bc.state, "UNAVAILABLE");
        assert!(
            bc.reason.as_deref().unwrap().contains("not loaded"),
            "{bc:?}"
        );

        reg.load("breast_cancer").await.unwrap();
        assert_eq!(ready(&reg, "breast_cancer"), Some(vec![1]));
        // A request holding the old snapshot keeps its version across an unload.
        let held = reg.snapshot().version("breast_cancer", None).unwrap();
        reg.unload("breast_cancer").unwrap();
        assert_eq!(ready(&reg, "breast_cancer"), None);
        assert_eq!(held.version, 1);
        assert_eq!(
            reg.unload("breast_cancer"),
            Err(RegistryError::NotLoaded("breast_cancer".into()))
        );
        assert_eq!(
            reg.load("nope").await,
            Err(RegistryError::UnknownModel("nope".into()))
        );
        assert!(matches!(
            reg.load("../breast_cancer").await,
            Err(RegistryError::UnknownModel(_))
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_reload_leaves_the_old_version_serving() {
        let dir = repo(&["breast_cancer"]);
        let reg = Registry::start(dir.clone(), RegistryConfig::default()).unwrap();
        until("ready", || ready(&reg, "breast_cancer").is_some()).await;
        let before = reg.snapshot().version("breast_cancer", None).unwrap();
        std::fs::write(dir.join("breast_cancer/1/model.json"), "{not json").unwrap();
        let e = reg.load("breast_cancer").await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to load 'breast_cancer': "),
            "{e}"
        );
        let after = reg.snapshot().version("breast_cancer", None).unwrap();
        assert!(
            Arc::ptr_eq(&before, &after),
            "the old version must keep serving"
        );
        let idx = reg.snapshot().index();
        assert_eq!(idx[0].state, "READY");
        assert!(
            idx[0]
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("the last load failed"),
            "{idx:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_override_lasts_one_load_and_a_bad_one_leaves_the_old_version() {
        let dir = repo(&["breast_cancer"]);
        let cfg = RegistryConfig {
            mode: ControlMode::Explicit,
            load_at_start: vec!["*".into()],
            ..RegistryConfig::default()
        };
        let reg = Registry::start(dir.clone(), cfg).unwrap();
        until("ready", || ready(&reg, "breast_cancer").is_some()).await;
        let with = |o: ConfigOverride| LoadOptions {
            config: Some(o),
            files: Vec::new(),
        };
        let over = ConfigOverride {
            max_batch_size: Some(16),
            instances: Some(2),
            ..ConfigOverride::default()
        };
        reg.load_with("breast_cancer", with(over)).await.unwrap();
        let v = reg.snapshot().version("breast_cancer", None).unwrap();
        assert_eq!(v.config.max_request_rows, Some(16));
        assert_eq!(v.config.batching.max_batch_size, 16);
        assert_eq!(v.config.instances, Some(2));
        // Only the loaded model can tell: it has a batch dimension.
        let bad = ConfigOverride {
            max_batch_size: Some(0),
            ..ConfigOverride::default()
        };
        let e = reg.load_with("breast_cancer", with(bad)).await.unwrap_err();
        assert!(
            e.to_string().contains("config override: max_batch_size 0"),
            "{e}"
        );
        let after = reg.snapshot().version("breast_cancer", None).unwrap();
        assert!(Arc::ptr_eq(&v, &after), "the old version must keep serving");
        // The next load without one reads model.toml alone.
        reg.load("breast_cancer").await.unwrap();
        let v = reg.snapshot().version("breast_cancer", None).unwrap();
        assert_eq!(v.config.max_request_rows, None);
        assert_eq!(v.config.instances, Some(1));
        // Files need a config, and their paths are checked before anything is written.
        let file = |path: &str| ModelFile {
            path: path.into(),
            content: b"{}".to_vec(),
        };
        let e = reg
            .load_with(
                "sent",
                LoadOptions {
                    config: None,
                    files: vec![file("1/model.json")],
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::Files { .. }), "{e}");
        let e = reg
            .load_with(
                "sent",
                LoadOptions {
                    config: Some(ConfigOverride::default()),
                    files: vec![file("../model.json")],
                },
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "failed to load 'sent': failed to poll from model repository: file:../model.json"
            ),
            "{e}"
        );
        assert!(reg.snapshot().model("sent").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn poll_mode_follows_new_changed_and_removed_folders() {
        let dir = repo(&["breast_cancer"]);
        let cfg = RegistryConfig {
            mode: ControlMode::Poll,
            poll_every: Duration::from_millis(200),
            ..RegistryConfig::default()
        };
        let reg = Registry::start(dir.clone(), cfg).unwrap();
        until("ready", || ready(&reg, "breast_cancer").is_some()).await;
        // A new version folder, moved in whole (a rename: nothing half-written).
        let staging = dir.join(".staging-2");
        copy_dir(&dir.join("breast_cancer/1"), &staging);
        std::fs::rename(&staging, dir.join("breast_cancer/2")).unwrap();
        until("version 2", || {
            ready(&reg, "breast_cancer") == Some(vec![1, 2])
                || ready(&reg, "breast_cancer") == Some(vec![2])
        })
        .await;
        // A new model folder.
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/diabetes"),
            &dir.join("diabetes"),
        );
        until("diabetes", || ready(&reg, "diabetes").is_some()).await;
        // A removed one.
        std::fs::remove_dir_all(dir.join("diabetes")).unwrap();
        until("diabetes gone", || {
            reg.snapshot().model("diabetes").is_err()
        })
        .await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A fresh copy (written just now) is not loaded while it may still be being written, and
    /// is looked at again as soon as it has been quiet for a second, not a poll interval later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fresh_copy_waits_until_quiet_then_loads_without_waiting_a_poll() {
        let dir = repo(&["breast_cancer"]);
        let cfg = RegistryConfig {
            mode: ControlMode::Poll,
            // Longer than the test: every poll here is called by hand.
            poll_every: Duration::from_secs(3600),
            ..RegistryConfig::default()
        };
        let reg = Registry::start(dir.clone(), cfg).unwrap();
        until("ready", || ready(&reg, "breast_cancer").is_some()).await;
        copy_dir(&dir.join("breast_cancer/1"), &dir.join("breast_cancer/2"));
        let r = reg.clone();
        let recheck = tokio::task::spawn_blocking(move || r.poll_once())
            .await
            .unwrap()
            .expect("a change not yet quiet asks for a recheck");
        assert!(recheck <= QUIET, "{recheck:?}");
        assert_eq!(
            ready(&reg, "breast_cancer"),
            Some(vec![1]),
            "not loaded yet"
        );
        tokio::time::sleep(recheck + Duration::from_millis(50)).await;
        let r = reg.clone();
        let again = tokio::task::spawn_blocking(move || r.poll_once())
            .await
            .unwrap();
        assert_eq!(again, None, "nothing left to look at again");
        assert_eq!(ready(&reg, "breast_cancer"), Some(vec![2]));
        let _ = std::fs::remove_dir_all(dir);
    }
}
