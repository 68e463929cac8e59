//! Who may call what, on both fronts: API keys with scopes, the models a key may use, rate
//! limits per key and per model ([`Auth`]); the classification of every HTTP route and gRPC
//! method by the scope it needs ([`http_need`], [`grpc_need`]); and the two middlewares that
//! check them before any handler runs ([`http_layer`], [`grpc_layer`]), leaving the caller
//! ([`Caller`]) in the request's extensions for the handlers that learn the model only from
//! the body (route aliases, `POST /jobs`, gRPC), which call [`Auth::admit_model`].
//!
//! Keys are given as the hex SHA-256 of the key (the key itself is never stored): the keys
//! file (`--api-keys FILE`, TOML, read again when it changes) and `FERROSERVE_API_KEYS`
//! (`NAME:SCOPE+SCOPE:SHA256HEX`, comma-separated). A request presents its key as
//! `Authorization: Bearer KEY` or `X-API-Key: KEY` (HTTP headers; gRPC metadata of the same
//! names). The presented key's hash is compared with every key's in constant time, and an
//! answer never says which part of a key matched.
//!
//! With no key configured, authentication is off (every caller may do everything) and only
//! the per-model rate limits, if any, apply.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferroserve_core::InferError;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// What a key may do. `admin` holds every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Inference: v2 `infer`, the friendly routes and route aliases, batch jobs of one's own.
    Infer,
    /// Reading: server and model metadata, configuration, statistics, the repository index,
    /// recorded predictions, `/metrics`, the OpenAPI document and Swagger UI.
    Read,
    /// Changing the model set (load, unload) and administering batch jobs (list, cancel).
    Manage,
    /// Everything.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Infer, Scope::Read, Scope::Manage, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Infer => "infer",
            Scope::Read => "read",
            Scope::Manage => "manage",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// What a route needs beyond the key's scope: the class `--auth-open` names to leave it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Liveness and readiness (server and model): always open, for probes.
    Health,
    /// The dashboard's static files (`/ui/`): always open, as they hold no data; every call
    /// the page makes is checked as any client's.
    Assets,
    /// `GET /v2/caller`: who the presented key or token is, with no scope needed (anyone
    /// when no key is presented: the answer then says what is open).
    Identity,
    Metrics,
    Docs,
    /// The other reading routes (scope `read`).
    Metadata,
    Infer,
    /// Batch jobs: one's own with `infer`, everyone's with `manage` (the handlers check the
    /// owner); open when `infer` is.
    Jobs,
    Manage,
}

impl Class {
    /// The classes `--auth-open` accepts (health is always open; manage never is).
    pub const OPENABLE: [(&'static str, Class); 4] = [
        ("metrics", Class::Metrics),
        ("docs", Class::Docs),
        ("metadata", Class::Metadata),
        ("infer", Class::Infer),
    ];

    fn scope(self) -> Scope {
        match self {
            Class::Health
            | Class::Assets
            | Class::Identity
            | Class::Metrics
            | Class::Docs
            | Class::Metadata => Scope::Read,
            Class::Infer | Class::Jobs => Scope::Infer,
            Class::Manage => Scope::Manage,
        }
    }

    /// Whether `caller`'s scopes let it call a route of this class.
    fn allows(self, caller: &Caller) -> bool {
        self == Class::Identity
            || caller.has(self.scope())
            || (self == Class::Jobs && caller.has(Scope::Manage))
    }

    /// Whether `--auth-open` left this class open.
    fn open_in(self, open: &[Class]) -> bool {
        open.contains(&self) || (self == Class::Jobs && open.contains(&Class::Infer))
    }
}

/// What a request needs: its class, and the model it names when its path names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub class: Class,
    pub model: Option<String>,
}

/// A rate: `N` requests per second, minute or hour (`"5/s"`, `"300/m"`, `"1000/h"`), as a token
/// bucket holding at most `N` tokens, refilled at `N` per unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_unit: f64,
    pub unit: Duration,
}

impl Rate {
    pub fn parse(s: &str) -> Result<Rate, String> {
        let (n, unit) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected N/s, N/m or N/h (\"5/s\", \"300/m\")"))?;
        let per_unit: f64 = n
            .trim()
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 1.0)
            .ok_or_else(|| format!("{s:?}: the count must be a number of at least 1"))?;
        let unit = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            u => return Err(format!("{s:?}: unknown unit {u:?} (s, m or h)")),
        };
        Ok(Rate { per_unit, unit })
    }

    fn per_sec(&self) -> f64 {
        self.per_unit / self.unit.as_secs_f64()
    }
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: &Rate) -> Bucket {
        Bucket {
            tokens: rate.per_unit,
            at: Instant::now(),
        }
    }

    /// Takes a token, or says in how many whole seconds one will be there.
    fn take(&mut self, rate: &Rate, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec()).min(rate.per_unit);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / rate.per_sec()).ceil().max(1.0) as u64)
        }
    }
}

/// One key, as configured.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: Arc<str>,
    sha256: [u8; 32],
    scopes: u8,
    /// The models it may use; `None`: every model.
    models: Option<Arc<[String]>>,
    rate: Option<Rate>,
    /// Its counters and rate bucket, kept across reloads by name ([`Auth::reload`]).
    state: Arc<KeyState>,
}

/// Results counted per key: `allowed`, `unauthenticated`, `forbidden`, `rate_limited`.
const RESULTS: [&str; 4] = ["allowed", "unauthenticated", "forbidden", "rate_limited"];
const ALLOWED: usize = 0;
const UNAUTHENTICATED_AT: usize = 1;
const FORBIDDEN: usize = 2;
const RATE_LIMITED: usize = 3;

/// One key's counters and token bucket (the bucket with the rate it was made for: a new rate
/// starts a full one).
#[derive(Debug, Default)]
pub struct KeyState {
    counts: [std::sync::atomic::AtomicU64; 4],
    bucket: Mutex<Option<(Rate, Bucket)>>,
}

impl KeyState {
    fn count(&self, result: usize) {
        self.counts[result].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The keys file: `[[keys]]` tables.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    sha256: String,
    scopes: Vec<String>,
    models: Option<Vec<String>>,
    rate: Option<String>,
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn key_of(
    name: &str,
    sha256: &str,
    scopes: &[String],
    models: Option<Vec<String>>,
    rate: Option<&str>,
) -> Result<Key, String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(format!(
            "key name {name:?}: 1 to 64 letters, digits or - _ . @ (it is a metrics label)"
        ));
    }
    let sha256 = parse_hash(sha256).ok_or_else(|| {
        format!("key {name:?}: `sha256` must be 64 hex digits (the SHA-256 of the key: printf %s KEY | sha256sum)")
    })?;
    if scopes.is_empty() {
        return Err(format!(
            "key {name:?}: no scopes (infer, read, manage, admin)"
        ));
    }
    let mut bits = 0;
    for s in scopes {
        let scope = Scope::parse(s).ok_or_else(|| {
            format!("key {name:?}: unknown scope {s:?} (infer, read, manage, admin)")
        })?;
        bits |= scope.bit();
    }
    let rate = rate
        .map(Rate::parse)
        .transpose()
        .map_err(|e| format!("key {name:?}: rate {e}"))?;
    Ok(Key {
        name: name.into(),
        sha256,
        scopes: bits,
        models: models.map(Into::into),
        rate,
        state: Arc::default(),
    })
}

/// Reads a keys file's text.
pub fn parse_keys_file(text: &str) -> Result<Vec<Key>, String> {
    let file: KeysFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
    file.keys
        .into_iter()
        .map(|k| key_of(&k.name, &k.sha256, &k.scopes, k.models, k.rate.as_deref()))
        .collect()
}

/// Reads `FERROSERVE_API_KEYS`: `NAME:SCOPE+SCOPE:SHA256HEX`, comma-separated.
pub fn parse_keys_env(text: &str) -> Result<Vec<Key>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(scopes), Some(hash)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "FERROSERVE_API_KEYS: an entry is not NAME:SCOPE+SCOPE:SHA256HEX (entry {})",
                    entry.split(':').next().unwrap_or_default()
                ));
            };
            let scopes: Vec<String> = scopes.split('+').map(str::to_string).collect();
            key_of(name, hash, &scopes, None, None)
        })
        .collect()
}

/// The hex SHA-256 of a key, as the keys file holds it.
pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who is calling: the key that authenticated the request (`None` when authentication is
/// off), what it may do and which models it may use.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: Option<Arc<str>>,
    /// Who owns what the caller creates (batch jobs): the key's name, or `jwt:SUBJECT`.
    owner: Option<Arc<str>>,
    scopes: u8,
    models: Option<Arc<[String]>>,
    rate: Option<Rate>,
    state: Option<Arc<KeyState>>,
}

impl Caller {
    /// Authentication off: everything.
    pub fn anyone() -> Caller {
        Caller {
            key: None,
            owner: None,
            scopes: Scope::Admin.bit(),
            models: None,
            rate: None,
            state: None,
        }
    }

    /// No key presented while authentication is on: no scope at all.
    pub fn nobody() -> Caller {
        Caller {
            scopes: 0,
            ..Caller::anyone()
        }
    }

    /// The caller's scopes, `admin` holding the others.
    pub fn scopes(&self) -> Vec<Scope> {
        Scope::ALL.into_iter().filter(|s| self.has(*s)).collect()
    }

    /// The models the caller is limited to, `None` for every model.
    pub fn models(&self) -> Option<&[String]> {
        self.models.as_deref()
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Who owns what the caller creates: the key's name, `jwt:SUBJECT`; `None` with keys off.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// What authenticated the caller, as an error message names it.
    fn credential(&self) -> &'static str {
        if self.key.as_deref() == Some(JWT_NAME) {
            "token"
        } else {
            "key"
        }
    }

    /// Whether the caller may use `model`.
    pub fn may_use(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// A file as last read: modification time, length, SHA-256 of the content.
type Stamp = (Option<SystemTime>, u64, [u8; 32]);

/// Where the keys come from, and what was last read there.
struct Source {
    file: Option<PathBuf>,
    env: Vec<Key>,
    /// The file's (modification time, length, content hash) when last read.
    seen: Mutex<Option<Stamp>>,
}

/// The authorization settings of a server, shared by both fronts.
pub struct Auth {
    keys: RwLock<Arc<[Key]>>,
    /// Authentication is on (a keys file or `FERROSERVE_API_KEYS` was given).
    on: bool,
    source: Source,
    open: Vec<Class>,
    /// Every key name configured since start, with its state (`ferroserve_auth_requests_total`
    /// labels: bounded by the names the keys files held).
    states: Mutex<HashMap<Arc<str>, Arc<KeyState>>>,
    /// Requests with no key, or one that is not valid (the empty key name).
    anonymous: KeyState,
    model_rates: Vec<(String, Rate)>,
    model_buckets: Mutex<HashMap<String, Bucket>>,
    /// JSON Web Tokens, when accepted; their callers count under the key name `jwt`.
    jwt: Option<(crate::jwt::Jwt, Arc<KeyState>)>,
}

/// How [`Auth`] is set up (`ferroserve serve`'s flags).
#[derive(Default)]
pub struct AuthConfig {
    pub keys_file: Option<PathBuf>,
    pub keys_env: Option<String>,
    pub open: Vec<Class>,
    pub model_rates: Vec<(String, Rate)>,
    pub jwt: Option<crate::jwt::JwtConfig>,
}

/// The key name JWT callers are counted under.
pub const JWT_NAME: &str = "jwt";

const UNAUTHENTICATED: &str =
    "an API key is required: Authorization: Bearer KEY, or X-API-Key: KEY";
const INVALID: &str = "the API key is not valid";

impl Auth {
    /// Reads the keys (the file, then the environment's); an error names what is wrong.
    pub fn new(cfg: AuthConfig) -> Result<Auth, String> {
        let env = match &cfg.keys_env {
            Some(text) => parse_keys_env(text)?,
            None => Vec::new(),
        };
        let on = cfg.keys_file.is_some() || cfg.keys_env.is_some() || cfg.jwt.is_some();
        let mut states = HashMap::new();
        let jwt = match cfg.jwt {
            Some(c) => {
                let state = Arc::new(KeyState::default());
                states.insert(Arc::from(JWT_NAME), state.clone());
                Some((crate::jwt::Jwt::new(c)?, state))
            }
            None => None,
        };
        let auth = Auth {
            keys: RwLock::new(Arc::from(Vec::new())),
            on,
            source: Source {
                file: cfg.keys_file,
                env,
                seen: Mutex::new(None),
            },
            open: cfg.open,
            states: Mutex::new(states),
            anonymous: KeyState::default(),
            model_rates: cfg.model_rates,
            model_buckets: Mutex::new(HashMap::new()),
            jwt,
        };
        auth.reload()?;
        Ok(auth)
    }

    /// Whether keys are checked at all.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Whether JSON Web Tokens are accepted.
    pub fn takes_tokens(&self) -> bool {
        self.jwt.is_some()
    }

    /// The keys in force, by name.
    pub fn key_names(&self) -> Vec<Arc<str>> {
        self.keys_now().iter().map(|k| k.name.clone()).collect()
    }

    fn keys_now(&self) -> Arc<[Key]> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the keys file again if it changed since the last read (modification time,
    /// length, content). `Ok(true)`: new keys are in force. An error leaves the old keys.
    pub fn reload(&self) -> Result<bool, String> {
        let mut keys = Vec::new();
        if let Some(path) = &self.source.file {
            let shown = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let meta = std::fs::metadata(path).map_err(|e| format!("--api-keys {shown}: {e}"))?;
            let stamp = (meta.modified().ok(), meta.len());
            let mut seen = self.source.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen
                .as_ref()
                .is_some_and(|(m, l, _)| (*m, *l) == stamp && stamp.0.is_some())
            {
                return Ok(false);
            }
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("--api-keys {shown}: {e}"))?;
            let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
            if seen.as_ref().is_some_and(|(_, _, d)| *d == digest) {
                *seen = Some((stamp.0, stamp.1, digest));
                return Ok(false);
            }
            keys = parse_keys_file(&text).map_err(|e| format!("--api-keys {shown}: {e}"))?;
            *seen = Some((stamp.0, stamp.1, digest));
        }
        keys.extend(self.source.env.iter().cloned());
        let mut names = std::collections::HashSet::new();
        for k in &keys {
            if !names.insert(k.name.clone()) {
                return Err(format!("two keys are named {:?}", k.name));
            }
            if self.jwt.is_some() && &*k.name == JWT_NAME {
                return Err(format!(
                    "a key is named {JWT_NAME:?}, the name JSON Web Tokens are counted under"
                ));
            }
        }
        // A name keeps its counters and bucket across reloads.
        {
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            for k in &mut keys {
                k.state = states.entry(k.name.clone()).or_default().clone();
            }
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(keys);
        Ok(true)
    }

    /// Follows the keys file: every `every`, reads it again when it changed (a bad file is
    /// logged and the keys in force stay), until the process exits.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let jwks = self.jwt.as_ref().is_some_and(|(j, _)| j.follows_file());
        if self.source.file.is_none() && !jwks {
            return;
        }
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("fs-api-keys".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(auth) = weak.upgrade() else { return };
                if let Some((jwt, _)) = &auth.jwt {
                    match jwt.reload() {
                        Ok(true) => tracing::info!("JWKS file read again"),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "JWKS file not read again: the keys in force stay")
                        }
                    }
                }
                if auth.source.file.is_none() {
                    continue;
                }
                match auth.reload() {
                    Ok(true) => {
                        tracing::info!(keys = auth.key_names().len(), "API keys file read again")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "API keys file not read again: the keys in force stay")
                    }
                }
            })
            .ok();
    }

    fn count(&self, caller: &Caller, result: usize) {
        caller
            .state
            .as_deref()
            .unwrap_or(&self.anonymous)
            .count(result);
    }

    /// The key presented in `headers`: `Authorization: Bearer KEY` or `X-API-Key: KEY`.
    fn presented(headers: &HeaderMap) -> Option<&str> {
        if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
            let v = v.to_str().ok()?.trim();
            let (scheme, rest) = v.split_once(' ')?;
            return scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim());
        }
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }

    /// The key whose hash is the presented key's, compared with every key in constant time.
    fn find(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for k in keys.iter() {
            let diff = k
                .sha256
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            // No early exit: every key is compared whatever matched before.
            if std::hint::black_box(diff) == 0 {
                found = Some(k);
            }
        }
        found.map(|k| Caller {
            key: Some(k.name.clone()),
            owner: Some(k.name.clone()),
            scopes: k.scopes,
            models: k.models.clone(),
            rate: k.rate,
            state: Some(k.state.clone()),
        })
    }

    /// The caller a presented credential stands for: a JSON Web Token (when accepted and the
    /// credential has a token's form), otherwise an API key. `Err`: why it is refused.
    fn identify(&self, presented: &str) -> Result<Caller, &'static str> {
        if let Some((jwt, state)) = &self.jwt {
            if crate::jwt::Jwt::looks_like(presented) {
                let grant = jwt.verify(presented)?;
                let scopes = grant
                    .scopes
                    .iter()
                    .filter_map(|s| Scope::parse(s))
                    .fold(0u8, |acc, s| acc | s.bit());
                return Ok(Caller {
                    key: Some(Arc::from(JWT_NAME)),
                    owner: Some(Arc::from(format!(
                        "{JWT_NAME}:{}",
                        grant.subject.as_deref().unwrap_or("")
                    ))),
                    scopes,
                    models: grant.models.map(Arc::from),
                    rate: None,
                    state: Some(state.clone()),
                });
            }
        }
        self.find(presented).ok_or(INVALID)
    }

    /// Authenticates a request needing `need`, and applies its key's rate limit.
    pub fn check(&self, headers: &HeaderMap, need: &Need) -> Result<Caller, InferError> {
        if matches!(need.class, Class::Health | Class::Assets) {
            return Ok(Caller::anyone());
        }
        let caller = if !self.on {
            Caller::anyone()
        } else {
            let open = need.class.open_in(&self.open);
            match Self::presented(headers) {
                None if open => Caller::anyone(),
                None if need.class == Class::Identity => Caller::nobody(),
                None => {
                    self.anonymous.count(UNAUTHENTICATED_AT);
                    return Err(InferError::unauthenticated(UNAUTHENTICATED));
                }
                // A wrong key on an open route is refused too: the client means a key.
                Some(p) => match self.identify(p) {
                    Err(why) => {
                        self.anonymous.count(UNAUTHENTICATED_AT);
                        return Err(InferError::unauthenticated(why));
                    }
                    Ok(caller) => {
                        if !open && !need.class.allows(&caller) {
                            self.count(&caller, FORBIDDEN);
                            return Err(InferError::forbidden(format!(
                                "this {} may not call this route: it needs the `{}` scope{}",
                                caller.credential(),
                                need.class.scope().as_str(),
                                if need.class == Class::Jobs {
                                    " (or `manage`)"
                                } else {
                                    ""
                                }
                            )));
                        }
                        if let Err(secs) = self.take_key_token(&caller) {
                            self.count(&caller, RATE_LIMITED);
                            return Err(InferError::rate_limited(
                                format!("this key's rate limit is reached; retry in {secs} s"),
                                secs,
                            ));
                        }
                        caller
                    }
                },
            }
        };
        if let Some(model) = &need.model {
            self.admit_model(&caller, model)?;
        }
        self.count(&caller, ALLOWED);
        Ok(caller)
    }

    /// A token of the caller's key's bucket, when the key has a rate.
    fn take_key_token(&self, caller: &Caller) -> Result<(), u64> {
        let (Some(state), Some(rate)) = (&caller.state, caller.rate) else {
            return Ok(());
        };
        let mut b = state.bucket.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(&*b, Some((r, _)) if *r == rate) {
            *b = Some((rate, Bucket::full(&rate)));
        }
        match &mut *b {
            Some((r, bucket)) => bucket.take(r, Instant::now()),
            None => Ok(()),
        }
    }

    /// Whether `caller` may use `model`, and the model's rate limit: what the handlers that
    /// learn the model from the body call (route aliases, `POST /jobs`, gRPC).
    pub fn admit_model(&self, caller: &Caller, model: &str) -> Result<(), InferError> {
        if !caller.may_use(model) {
            self.count(caller, FORBIDDEN);
            return Err(InferError::forbidden(format!(
                "this {} may not use this model",
                caller.credential()
            )));
        }
        if let Some((_, rate)) = self.model_rates.iter().find(|(m, _)| m == model) {
            let mut b = self.model_buckets.lock().unwrap_or_else(|e| e.into_inner());
            let bucket = b
                .entry(model.to_string())
                .or_insert_with(|| Bucket::full(rate));
            if let Err(secs) = bucket.take(rate, Instant::now()) {
                drop(b);
                self.count(caller, RATE_LIMITED);
                return Err(InferError::rate_limited(
                    format!("model {model:?}'s rate limit is reached; retry in {secs} s"),
                    secs,
                ));
            }
        }
        Ok(())
    }

    /// `ferroserve_auth_requests_total`, in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("# HELP ferroserve_auth_requests_total Requests checked by API key (key: its name; empty: none or not valid) and result: allowed, unauthenticated, forbidden, rate_limited.\n# TYPE ferroserve_auth_requests_total counter\n");
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<(&str, &KeyState)> = states.iter().map(|(k, s)| (&**k, &**s)).collect();
        rows.push(("", &self.anonymous));
        rows.sort_by_key(|(k, _)| *k);
        for (key, state) in rows {
            for (i, result) in RESULTS.iter().enumerate() {
                let n = state.counts[i].load(std::sync::atomic::Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "ferroserve_auth_requests_total{{key=\"{key}\",result=\"{result}\"}} {n}"
                );
            }
        }
    }
}

/// The class of an HTTP request, by the route template it matched (`None`: no fixed route: a
/// route alias or an unknown path, which needs `infer`; the alias's model is checked when it
/// is found), and the model its path names.
pub fn http_need(method: &Method, template: Option<&str>, path: &str) -> Need {
    let seg = |i: usize| {
        path.trim_start_matches('/')
            .split('/')
            .nth(i)
            .map(percent_decode)
    };
    let (class, model) = match template {
        // GET /: the friendly front's welcome (or the FastAPI tutorial's alias).
        None if path == "/" && method == Method::GET => (Class::Metadata, None),
        None => (Class::Infer, None),
        Some(t) => match t {
            "/v2/health/live" | "/v2/health/ready" => (Class::Health, None),
            "/v2/models/{model}/ready" | "/v2/models/{model}/versions/{version}/ready" => {
                (Class::Health, None)
            }
            "/v2/models/{model}/infer" | "/v2/models/{model}/versions/{version}/infer" => {
                (Class::Infer, seg(2))
            }
            "/v2/repository/models/{model}/load" | "/v2/repository/models/{model}/unload" => {
                (Class::Manage, seg(3))
            }
            "/v2/models/stats" => (Class::Metadata, None),
            t if t.starts_with("/v2/models/{model}") => (Class::Metadata, seg(2)),
            "/metrics" => (Class::Metrics, None),
            "/v2/caller" => (Class::Identity, None),
            t if t == "/ui" || t.starts_with("/ui/") => (Class::Assets, None),
            "/openapi.json" => (Class::Docs, None),
            t if t.starts_with("/docs") || t.starts_with("/apidocs") => (Class::Docs, None),
            "/models/{model}/predict" => (Class::Infer, seg(1)),
            "/models/{model}" => (Class::Metadata, seg(1)),
            "/v1/models/{name}" => {
                let name = seg(2).unwrap_or_default();
                let model = name.split(':').next().unwrap_or_default().to_string();
                if method == Method::POST {
                    (Class::Infer, Some(model))
                } else {
                    (Class::Metadata, Some(model))
                }
            }
            // Batch jobs: one's own with `infer` (the handlers check the owner), every job's
            // with `manage`.
            "/jobs" if method == Method::POST => (Class::Infer, None),
            t if t.starts_with("/jobs") => (Class::Jobs, None),
            // /v2, /v2/repository/index, /models, GET / and the other fixed routes.
            _ => (Class::Metadata, None),
        },
    };
    Need { class, model }
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The class of a gRPC method, by its path (`/inference.GRPCInferenceService/ModelInfer`).
/// Which model a call names is in its message: the handlers check it.
pub fn grpc_need(path: &str) -> Need {
    let method = path.rsplit('/').next().unwrap_or_default();
    let class = match method {
        "ServerLive" | "ServerReady" | "ModelReady" => Class::Health,
        "ModelInfer" | "ModelStreamInfer" => Class::Infer,
        "RepositoryModelLoad" | "RepositoryModelUnload" => Class::Manage,
        "ServerMetadata" | "ModelMetadata" | "ModelStatistics" | "ModelConfig"
        | "RepositoryIndex" => Class::Metadata,
        // Anything else (the shared-memory extension, methods of later versions): `manage`.
        _ => Class::Manage,
    };
    Need { class, model: None }
}

/// The HTTP front's check, before any handler: 401 / 403 / 429 in the v2 error shape, or the
/// request goes on with its [`Caller`] in its extensions.
pub async fn http_layer(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let Some(auth) = st.auth.as_ref() else {
        return next.run(req).await;
    };
    let template = req.extensions().get::<axum::extract::MatchedPath>();
    let need = http_need(req.method(), template.map(|m| m.as_str()), req.uri().path());
    match auth.check(req.headers(), &need) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// The gRPC front's check: a refusal is a trailers-only gRPC answer (UNAUTHENTICATED,
/// PERMISSION_DENIED, RESOURCE_EXHAUSTED), or the call goes on with its [`Caller`].
pub async fn grpc_layer(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let Some(auth) = st.auth.as_ref() else {
        return next.run(req).await;
    };
    let need = grpc_need(req.uri().path());
    match auth.check(req.headers(), &need) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => crate::error::grpc_status(e).into_http(),
    }
}

/// `GET /v2/caller`: who the request's key or token is and what it may do, so that a client
/// (the dashboard) shows only what it may use. No scope is needed; a wrong key is a 401 as
/// anywhere. `authenticated` is false with no key presented (or keys off, `auth` false);
/// `open` lists what `--auth-open` leaves open without one; `may_load` is whether load and
/// unload would be accepted: the model control mode allows them and the caller has `manage`.
pub async fn caller_route(
    State(st): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
) -> Response {
    let caller = caller.map(|c| c.0).unwrap_or_else(Caller::anyone);
    let on = st.auth.as_ref().is_some_and(|a| a.is_on());
    let open: Vec<&str> = match &st.auth {
        Some(a) if on => Class::OPENABLE
            .iter()
            .filter(|(_, c)| a.open.contains(c))
            .map(|(n, _)| *n)
            .collect(),
        _ => Vec::new(),
    };
    let mode = match st.registry.mode() {
        ferroserve_runtime::ControlMode::None => "none",
        ferroserve_runtime::ControlMode::Poll => "poll",
        ferroserve_runtime::ControlMode::Explicit => "explicit",
    };
    let body = serde_json::json!({
        "auth": on,
        "authenticated": on && caller.key.is_some(),
        "name": caller.owner(),
        "scopes": caller.scopes().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "models": caller.models(),
        "open": open,
        "model_control": mode,
        "may_load": st.registry.allows_control() && caller.has(Scope::Manage),
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

/// The CORS layer of `--cors-origin` (`*`: any origin), `--cors-method` (default GET, POST)
/// and `--cors-header` (default content-type, authorization, x-api-key); `None` without
/// origins: no CORS headers, and a browser page of another origin cannot read the answers.
pub fn cors(
    origins: &[String],
    methods: &[String],
    headers: &[String],
) -> Result<Option<tower_http::cors::CorsLayer>, String> {
    use axum::http::{header, HeaderName, HeaderValue};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(None);
    }
    let origin = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| {
                let o = o.trim().trim_end_matches('/');
                if !(o.starts_with("http://") || o.starts_with("https://")) {
                    return Err(format!(
                        "--cors-origin {o:?}: expected http(s)://HOST[:PORT], or *"
                    ));
                }
                HeaderValue::from_str(o)
                    .map_err(|_| format!("--cors-origin {o:?}: not a valid origin"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    let methods = if methods.is_empty() {
        vec![Method::GET, Method::POST]
    } else {
        methods
            .iter()
            .map(|m| {
                m.trim()
                    .to_ascii_uppercase()
                    .parse::<Method>()
                    .map_err(|_| format!("--cors-method {m:?}: not an HTTP method"))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let headers = if headers.is_empty() {
        vec![
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ]
    } else {
        headers
            .iter()
            .map(|h| {
                h.trim()
                    .parse::<HeaderName>()
                    .map_err(|_| format!("--cors-header {h:?}: not a header name"))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    ))
}

/// Whether `host` (what `--host` binds) is a loopback address.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(file: &str) -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.toml");
        std::fs::write(&p, file).unwrap();
        let a = Auth::new(AuthConfig {
            keys_file: Some(p),
            ..AuthConfig::default()
        })
        .unwrap();
        (dir, a)
    }

    fn headers(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {key}").parse().unwrap());
        h
    }

    fn need(class: Class, model: Option<&str>) -> Need {
        Need {
            class,
            model: model.map(str::to_string),
        }
    }

    #[test]
    fn rates_parse_and_refuse_what_is_not_one() {
        assert_eq!(
            Rate::parse("5/s").unwrap(),
            Rate {
                per_unit: 5.0,
                unit: Duration::from_secs(1)
            }
        );
        assert_eq!(Rate::parse("300/m").unwrap().per_sec(), 5.0);
        assert_eq!(Rate::parse(" 3600 / h ").unwrap().per_sec(), 1.0);
        for bad in ["5", "0/s", "-1/s", "5/d", "x/s", "NaN/s", "inf/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_gives_its_capacity_then_one_per_interval() {
        let rate = Rate::parse("2/s").unwrap();
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 2.0,
            at: t0,
        };
        assert!(b.take(&rate, t0).is_ok());
        assert!(b.take(&rate, t0).is_ok());
        assert_eq!(b.take(&rate, t0), Err(1));
        // Half a second later: one token back.
        assert!(b.take(&rate, t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(&rate, t0 + Duration::from_millis(500)).is_err());
        // Never more than the capacity, however long it waited.
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(&rate, later).is_ok());
        assert!(b.take(&rate, later).is_ok());
        assert!(b.take(&rate, later).is_err());
        let slow = Rate::parse("1/m").unwrap();
        let mut b = Bucket {
            tokens: 0.0,
            at: t0,
        };
        assert_eq!(b.take(&slow, t0), Err(60));
    }

    #[test]
    fn keys_authenticate_by_hash_scope_and_model() {
        let file = format!(
            "[[keys]]\nname = \"reader\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n\n[[keys]]\nname = \"iris-only\"\nsha256 = \"{}\"\nscopes = [\"infer\"]\nmodels = [\"iris\"]\n\n[[keys]]\nname = \"root\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\n",
            sha256_hex("r-key"),
            sha256_hex("i-key"),
            sha256_hex("a-key")
        );
        let (_d, a) = auth(&file);
        let kind = |h: &HeaderMap, n: &Need| a.check(h, n).err().map(|e| e.kind);
        use ferroserve_core::ErrorKind::*;
        // Health is always open; the rest needs a key.
        assert_eq!(kind(&HeaderMap::new(), &need(Class::Health, None)), None);
        assert_eq!(
            kind(&HeaderMap::new(), &need(Class::Metadata, None)),
            Some(Unauthenticated)
        );
        assert_eq!(
            kind(&headers("nope"), &need(Class::Metadata, None)),
            Some(Unauthenticated)
        );
        assert_eq!(kind(&headers("r-key"), &need(Class::Metadata, None)), None);
        assert_eq!(
            kind(&headers("r-key"), &need(Class::Infer, Some("iris"))),
            Some(Forbidden)
        );
        assert_eq!(
            kind(&headers("i-key"), &need(Class::Infer, Some("iris"))),
            None
        );
        assert_eq!(
            kind(&headers("i-key"), &need(Class::Infer, Some("wine"))),
            Some(Forbidden)
        );
        assert_eq!(
            kind(&headers("i-key"), &need(Class::Manage, None)),
            Some(Forbidden)
        );
        for class in [Class::Metadata, Class::Infer, Class::Manage, Class::Metrics] {
            assert_eq!(kind(&headers("a-key"), &need(class, Some("wine"))), None);
        }
        // X-API-Key works as Bearer does; another scheme is no key.
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "r-key".parse().unwrap());
        assert_eq!(kind(&h, &need(Class::Metadata, None)), None);
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic r-key".parse().unwrap());
        assert_eq!(
            kind(&h, &need(Class::Metadata, None)),
            Some(Unauthenticated)
        );
        // The answer never says which part of a key matched: one message for every wrong key.
        let msg = |k: &str| {
            a.check(&headers(k), &need(Class::Metadata, None))
                .unwrap_err()
                .message
        };
        assert_eq!(msg("r-ke"), msg("zzzzz"));
        assert_eq!(msg("r-key2"), INVALID);
    }

    #[test]
    fn open_classes_take_no_key_but_refuse_a_wrong_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.toml");
        std::fs::write(&p, "keys = []\n").unwrap();
        let a = Auth::new(AuthConfig {
            keys_file: Some(p),
            open: vec![Class::Metrics],
            ..AuthConfig::default()
        })
        .unwrap();
        assert!(a
            .check(&HeaderMap::new(), &need(Class::Metrics, None))
            .is_ok());
        assert!(a.check(&headers("x"), &need(Class::Metrics, None)).is_err());
        assert!(a
            .check(&HeaderMap::new(), &need(Class::Docs, None))
            .is_err());
    }

    #[test]
    fn a_keys_rate_and_a_models_rate_are_token_buckets() {
        let file = format!(
            "[[keys]]\nname = \"slow\"\nsha256 = \"{}\"\nscopes = [\"infer\"]\nrate = \"2/m\"\n",
            sha256_hex("s")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.toml");
        std::fs::write(&p, file).unwrap();
        let a = Auth::new(AuthConfig {
            keys_file: Some(p),
            model_rates: vec![("wine".into(), Rate::parse("1/h").unwrap())],
            ..AuthConfig::default()
        })
        .unwrap();
        let n = need(Class::Infer, Some("iris"));
        assert!(a.check(&headers("s"), &n).is_ok());
        assert!(a.check(&headers("s"), &n).is_ok());
        let e = a.check(&headers("s"), &n).unwrap_err();
        assert_eq!(e.kind, ferroserve_core::ErrorKind::RateLimited);
        assert!(e.retry_after.unwrap() >= 29, "{e:?}");
        // The model's limit holds whoever calls.
        let anyone = Caller::anyone();
        assert!(a.admit_model(&anyone, "wine").is_ok());
        let e = a.admit_model(&anyone, "wine").unwrap_err();
        assert_eq!(e.kind, ferroserve_core::ErrorKind::RateLimited);
        assert!(e.retry_after.unwrap() > 3000);
        assert!(a.admit_model(&anyone, "iris").is_ok());
        let mut text = String::new();
        a.render(&mut text);
        assert!(
            text.contains("ferroserve_auth_requests_total{key=\"slow\",result=\"rate_limited\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferroserve_auth_requests_total{key=\"slow\",result=\"allowed\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn bad_keys_files_and_entries_are_refused_naming_what_is_wrong() {
        let h = sha256_hex("k");
        for (text, says) in [
            ("[[keys]]\nname = \"a\"\nsha256 = \"abc\"\nscopes = [\"read\"]\n", "64 hex digits"),
            (&*format!("[[keys]]\nname = \"a\"\nsha256 = \"{h}\"\nscopes = [\"root\"]\n"), "unknown scope \"root\""),
            (&*format!("[[keys]]\nname = \"a\"\nsha256 = \"{h}\"\nscopes = []\n"), "no scopes"),
            (&*format!("[[keys]]\nname = \"a b\"\nsha256 = \"{h}\"\nscopes = [\"read\"]\n"), "key name"),
            (&*format!("[[keys]]\nname = \"a\"\nsha256 = \"{h}\"\nscopes = [\"read\"]\nrate = \"fast\"\n"), "rate"),
            (&*format!("[[keys]]\nname = \"a\"\nsha256 = \"{h}\"\nscopes = [\"read\"]\nkey = \"x\"\n"), "unknown field"),
        ] {
            let e = parse_keys_file(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        let keys = parse_keys_env(&format!("ci:infer+read:{h}, ops:admin:{h}")).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(
            keys[0].scopes & Scope::Read.bit() != 0 && keys[0].scopes & Scope::Manage.bit() == 0
        );
        assert!(parse_keys_env("ci:infer").is_err());
        // Two keys of one name: refused.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.toml");
        std::fs::write(
            &p,
            format!("[[keys]]\nname = \"ci\"\nsha256 = \"{h}\"\nscopes = [\"read\"]\n"),
        )
        .unwrap();
        let e = Auth::new(AuthConfig {
            keys_file: Some(p),
            keys_env: Some(format!("ci:infer:{h}")),
            ..AuthConfig::default()
        })
        .err()
        .unwrap();
        assert!(e.contains("two keys are named"), "{e}");
    }

    #[test]
    fn the_keys_file_is_read_again_when_it_changes_and_a_bad_one_keeps_the_old_keys() {
        let (dir, a) = auth(&format!(
            "[[keys]]\nname = \"one\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n",
            sha256_hex("1")
        ));
        let p = dir.path().join("keys.toml");
        assert_eq!(a.reload(), Ok(false));
        std::fs::write(
            &p,
            format!(
                "[[keys]]\nname = \"two\"\nsha256 = \"{}\"\nscopes = [\"read\"]\n# longer\n",
                sha256_hex("2")
            ),
        )
        .unwrap();
        assert_eq!(a.reload(), Ok(true));
        let n = need(Class::Metadata, None);
        assert!(a.check(&headers("2"), &n).is_ok());
        assert!(a.check(&headers("1"), &n).is_err());
        std::fs::write(&p, "[[keys]]\nname = \"broken\"\n").unwrap();
        assert!(a.reload().is_err());
        assert!(a.check(&headers("2"), &n).is_ok());
    }

    #[test]
    fn routes_and_methods_are_classified() {
        let c = |m: Method, t: Option<&str>, p: &str| {
            let n = http_need(&m, t, p);
            (n.class, n.model)
        };
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            c(get.clone(), Some("/v2/health/ready"), "/v2/health/ready"),
            (Class::Health, None)
        );
        assert_eq!(
            c(
                get.clone(),
                Some("/v2/models/{model}/ready"),
                "/v2/models/iris/ready"
            ),
            (Class::Health, None)
        );
        assert_eq!(
            c(
                post.clone(),
                Some("/v2/models/{model}/infer"),
                "/v2/models/iris/infer"
            ),
            (Class::Infer, Some("iris".into()))
        );
        assert_eq!(
            c(
                post.clone(),
                Some("/v2/models/{model}/versions/{version}/infer"),
                "/v2/models/my%20m/versions/1/infer"
            ),
            (Class::Infer, Some("my m".into()))
        );
        assert_eq!(
            c(get.clone(), Some("/v2/models/{model}"), "/v2/models/iris"),
            (Class::Metadata, Some("iris".into()))
        );
        assert_eq!(
            c(
                get.clone(),
                Some("/v2/models/{model}/predictions"),
                "/v2/models/iris/predictions"
            ),
            (Class::Metadata, Some("iris".into()))
        );
        assert_eq!(
            c(
                post.clone(),
                Some("/v2/repository/models/{model}/load"),
                "/v2/repository/models/iris/load"
            ),
            (Class::Manage, Some("iris".into()))
        );
        assert_eq!(
            c(
                post.clone(),
                Some("/v2/repository/index"),
                "/v2/repository/index"
            ),
            (Class::Metadata, None)
        );
        assert_eq!(
            c(get.clone(), Some("/metrics"), "/metrics"),
            (Class::Metrics, None)
        );
        assert_eq!(
            c(get.clone(), Some("/docs/{*file}"), "/docs/x.js"),
            (Class::Docs, None)
        );
        assert_eq!(
            c(
                post.clone(),
                Some("/v1/models/{name}"),
                "/v1/models/iris:predict"
            ),
            (Class::Infer, Some("iris".into()))
        );
        assert_eq!(
            c(get.clone(), Some("/v1/models/{name}"), "/v1/models/iris"),
            (Class::Metadata, Some("iris".into()))
        );
        assert_eq!(
            c(
                post.clone(),
                Some("/models/{model}/predict"),
                "/models/iris/predict"
            ),
            (Class::Infer, Some("iris".into()))
        );
        assert_eq!(
            c(post.clone(), Some("/jobs"), "/jobs"),
            (Class::Infer, None)
        );
        assert_eq!(c(get.clone(), Some("/jobs"), "/jobs"), (Class::Jobs, None));
        assert_eq!(
            c(get.clone(), Some("/jobs/{id}/results"), "/jobs/j/results"),
            (Class::Jobs, None)
        );
        assert_eq!(
            c(post.clone(), Some("/jobs/{id}/cancel"), "/jobs/j/cancel"),
            (Class::Jobs, None)
        );
        assert_eq!(c(post.clone(), None, "/predict"), (Class::Infer, None));
        let g = |m: &str| grpc_need(&format!("/inference.GRPCInferenceService/{m}")).class;
        assert_eq!(g("ServerLive"), Class::Health);
        assert_eq!(g("ModelReady"), Class::Health);
        assert_eq!(g("ModelInfer"), Class::Infer);
        assert_eq!(g("ModelStreamInfer"), Class::Infer);
        assert_eq!(g("ModelMetadata"), Class::Metadata);
        assert_eq!(g("RepositoryIndex"), Class::Metadata);
        assert_eq!(g("RepositoryModelLoad"), Class::Manage);
        assert_eq!(g("SystemSharedMemoryRegister"), Class::Manage);
    }
}
