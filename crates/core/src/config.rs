//! `model.toml`: the per-model configuration. Every field is optional; without a file the
//! configuration is inferred from the artifact. The doc comment on each field is its reference;
//! `docs/configuration.md` repeats it, and a test checks that every field is documented there.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{ClassLabels, DataType, ModelMetadata};

/// Path prefixes the server's own routes use; a route alias may not start with one.
pub const RESERVED_PATH_PREFIXES: [&str; 9] = [
    "/v1",
    "/v2",
    "/models",
    "/docs",
    "/apidocs",
    "/openapi.json",
    "/metrics",
    "/health",
    "/jobs",
];

/// Which backend runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The native tree engine (XGBoost, LightGBM, ONNX tree ensembles).
    Trees,
    /// ONNX Runtime.
    Onnx,
    /// A Python predictor (`predictor = "module:Class"`), run in supervised worker processes.
    Python,
}

/// Which versions of a model are served.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum VersionPolicy {
    /// The `n` highest-numbered versions: `version_policy = { latest = 2 }`.
    Latest(u32),
    /// Every version folder: `version_policy = "all"`.
    All,
    /// Exactly these versions: `version_policy = { specific = [1, 3] }`.
    Specific(Vec<u64>),
}

/// ONNX Runtime's graph optimisation level (`optimization_level` in `model.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizationLevel {
    /// No graph optimisation (`ORT_DISABLE_ALL`).
    Disable,
    /// Constant folding and redundant-node removal (`ORT_ENABLE_BASIC`).
    Basic,
    /// Basic plus operator fusions (`ORT_ENABLE_EXTENDED`).
    Extended,
    /// Everything ONNX Runtime offers, layout optimisations included (`ORT_ENABLE_ALL`, ONNX
    /// Runtime's own default).
    All,
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

/// The contents of `<repository>/<model>/model.toml`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model's name in URLs. Default: the folder name. Must match the folder name when
    /// given (it is checked), so that a repository is never ambiguous.
    pub name: Option<String>,
    /// Backend: `"trees"` or `"onnx"`. Default: inferred from the artifact (XGBoost and LightGBM
    /// files and ONNX graphs that hold only a tree ensemble run on `trees`; other ONNX graphs on
    /// `onnx`). Set `"onnx"` to force ONNX Runtime for a tree ensemble.
    pub backend: Option<BackendKind>,
    /// The artifact's file name inside each version folder, e.g. `"model.json"` (a relative
    /// path; absolute paths are refused). Default: the only model file there (`.json`, `.ubj`,
    /// `.txt`, `.onnx`, `.lgb`).
    pub file: Option<String>,
    /// Which versions to serve: `{ latest = N }` (default `{ latest = 1 }`), `"all"`, or
    /// `{ specific = [..] }`.
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// Feature names, overriding (or supplying) those recorded in the artifact; their count must
    /// equal the model's number of features.
    pub feature_names: Option<Vec<String>>,
    /// Class labels in class-index order, overriding those recorded in the artifact (e.g.
    /// `["setosa", "versicolor", "virginica"]`); answered as the `label` output (BYTES) when set.
    pub class_labels: Option<Vec<String>>,
    /// Data type of the probability and value outputs: `"FP32"` (default) or `"FP64"`. Scores
    /// are computed in double precision; FP64 keeps all of it (regression values above ~100
    /// lose digits past 1e-5 in FP32).
    pub output_datatype: Option<String>,
    /// Threads one batch may use inside the model (large batches only; `trees` backend). Default 1.
    pub threads: Option<usize>,
    /// Threads ONNX Runtime may use inside one operator while running one batch (`onnx`
    /// backend; its session's intra-op thread pool). Default 1: the server already runs
    /// `--instances` batches at once, and more threads only pay off for large batches.
    pub intra_op_threads: Option<usize>,
    /// ONNX Runtime's graph optimisation level (`onnx` backend): `"disable"`, `"basic"`,
    /// `"extended"` or `"all"`. Default `"all"`, as in ONNX Runtime.
    pub optimization_level: Option<OptimizationLevel>,
    /// Largest number of rows one request may carry. Default 100000.
    pub max_request_rows: Option<usize>,
    /// Free text shown in the model's metadata.
    pub description: Option<String>,
    /// Compute threads (instances) running this model, each taking one batch at a time.
    /// Default: `--instances` (1).
    pub instances: Option<usize>,
    /// Dynamic batching: how requests are grouped before they reach an instance.
    #[serde(default)]
    pub batching: BatchingConfig,
    /// Other names the friendly routes accept for features: a table alias → feature name,
    /// e.g. `{ slength = "sepal length (cm)" }`.
    #[serde(default)]
    pub feature_aliases: BTreeMap<String, String>,
    /// A few typical input rows (in feature order): the examples of the OpenAPI document and
    /// Swagger UI. Each must have one value per feature.
    #[serde(default)]
    pub sample_rows: Vec<Vec<f64>>,
    /// Route aliases: extra URLs answering with this model in a shape of your choosing, so that
    /// hand-written clients (the FastAPI, Flask, Ray Serve tutorials ...) work unchanged. Each is
    /// a `[[routes]]` table; see [`RouteConfig`].
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// `python` backend: the predictor, `"module:Class"`: a module in the version folder
    /// (`model:AdderPredictor` for `model.py`) or any module the interpreter can import. A class
    /// with `from_checkpoint(checkpoint)` and `predict(batch)` (Ray's `Predictor`), or a plain
    /// class with `load()` and `predict(batch)` (MLServer's and KServe's shape).
    pub predictor: Option<String>,
    /// `python` backend: what `from_checkpoint` is given: a folder relative to the version
    /// folder (`checkpoint = "ckpt"`, as `Checkpoint.from_directory`), or an inline table
    /// (`[checkpoint]` with `increment = 2`, as `Checkpoint.from_dict`). Default: an empty dict.
    pub checkpoint: Option<CheckpointConfig>,
    /// `python` backend: an HTTP adapter, `"module:function"`, for the friendly routes: its
    /// parameters are filled by name from the query string and the JSON body (converted to
    /// their annotated type: `int`, `float`, `bool`, `str`; a parameter annotated `dict`,
    /// `list` or a DataFrame gets the whole JSON body) and it returns the predictor's input.
    pub adapter: Option<String>,
    /// `python` backend: the interpreter, or a virtualenv folder (its `bin/python` is used).
    /// Default `python3` on PATH (or `FERROSERVE_PYTHON`).
    pub python: Option<String>,
    /// `python` backend: what `predict` is given: `"numpy"` (an array; a dict of arrays for
    /// several inputs) or `"pandas"` (a DataFrame, one column per feature). Default: from the
    /// annotation of `predict`'s parameter (a DataFrame annotation means `"pandas"`), else
    /// `"numpy"`.
    pub batch_format: Option<BatchFormat>,
    /// `python` backend: the inputs, `[[inputs]]` with `name`, `datatype` and `shape` (first
    /// dimension `-1`, the batch). Default: one input `input`, FP64, `[-1, -1]`.
    #[serde(default)]
    pub inputs: Vec<TensorConfig>,
    /// `python` backend: the outputs, as `[[inputs]]`. Default: one output `output`, FP64,
    /// `[-1, -1]`. What `predict` returns is answered with its own names and types: a DataFrame
    /// gives one output per column, a dict one per key, a list of objects one JSON text per row.
    #[serde(default)]
    pub outputs: Vec<TensorConfig>,
    /// `python` backend: longest one `predict` call may take before its worker is killed and
    /// restarted (its requests answer 503). Default `"60s"`.
    pub worker_timeout: Option<String>,
    /// `python` backend: longest a worker may take to start (import the module and build the
    /// predictor). Default `"120s"`.
    pub worker_start_timeout: Option<String>,
    /// `[prediction_log]`: what the prediction log records of this model's requests, over the
    /// server's `--prediction-log-*` settings.
    pub prediction_log: Option<PredictionLogConfig>,
}

/// `[prediction_log]` in `model.toml`, and the server's defaults for it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionLogConfig {
    /// What a record holds: `none` (no record), `outputs`, or `all` (inputs and outputs).
    pub record: Option<LogContent>,
    /// The fraction of requests recorded, 0 to 1, chosen by the request's id (the same id is
    /// always recorded, or never).
    pub sample: Option<f64>,
    /// Rows of a request's inputs and outputs a record holds; the rest are counted.
    pub max_rows: Option<usize>,
    /// `best-effort` (records beyond a sink's queue are dropped and counted) or `durable`
    /// (each record is on disk, in the spool, before its answer goes out).
    pub mode: Option<LogMode>,
}

impl PredictionLogConfig {
    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        if let Some(s) = self.sample {
            if !(0.0..=1.0).contains(&s) {
                return Err(format!("prediction_log.sample: {s}: expected 0 to 1"));
            }
        }
        if self.max_rows == Some(0) {
            return Err("prediction_log.max_rows: expected at least 1".into());
        }
        Ok(())
    }

    /// `self` where set, else `base`.
    pub fn over(&self, base: &PredictionLogConfig) -> PredictionLogConfig {
        PredictionLogConfig {
            record: self.record.or(base.record),
            sample: self.sample.or(base.sample),
            max_rows: self.max_rows.or(base.max_rows),
            mode: self.mode.or(base.mode),
        }
    }
}

/// `prediction_log.mode`: what happens to records when a sink is slow or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogMode {
    /// Records beyond a sink's queue are dropped (and counted); answers are never delayed.
    BestEffort,
    /// Records are appended to a spool on disk before the answer goes out, and delivered from
    /// there; when the spool is full, requests are refused (503) rather than records dropped.
    Durable,
}

impl LogMode {
    pub fn parse(s: &str) -> Option<LogMode> {
        match s {
            "best-effort" | "best_effort" => Some(LogMode::BestEffort),
            "durable" => Some(LogMode::Durable),
            _ => None,
        }
    }
}

/// `prediction_log.record`: what a prediction record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogContent {
    /// Nothing is recorded.
    None,
    /// The outputs (and everything but the inputs).
    Outputs,
    /// The inputs and the outputs.
    All,
}

impl LogContent {
    pub fn parse(s: &str) -> Option<LogContent> {
        match s {
            "none" => Some(LogContent::None),
            "outputs" => Some(LogContent::Outputs),
            "all" => Some(LogContent::All),
            _ => None,
        }
    }
}

/// `checkpoint` in `model.toml` (`python` backend).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum CheckpointConfig {
    /// A folder, relative to the version folder.
    Dir(String),
    /// The checkpoint's dictionary itself.
    Dict(toml::Table),
}

/// `batch_format` in `model.toml` (`python` backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchFormat {
    /// A NumPy array (a dict of arrays for several inputs).
    Numpy,
    /// A pandas DataFrame.
    Pandas,
}

impl BatchFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchFormat::Numpy => "numpy",
            BatchFormat::Pandas => "pandas",
        }
    }
}

/// One `[[inputs]]` or `[[outputs]]` table (`python` backend).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorConfig {
    /// The tensor's name.
    pub name: String,
    /// Its v2 data type: `"FP64"`, `"FP32"`, `"INT64"`, `"BYTES"`, ...
    pub datatype: String,
    /// Its shape, the batch first: `[-1, 4]` (`-1` for a dimension of any size).
    pub shape: Vec<i64>,
}

/// HTTP method of a route alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize)]
pub enum RouteMethod {
    #[serde(rename = "GET")]
    Get,
    #[default]
    #[serde(rename = "POST")]
    Post,
}

impl RouteMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteMethod::Get => "GET",
            RouteMethod::Post => "POST",
        }
    }
}

/// What a route alias reads its rows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestForm {
    /// Anything the friendly routes read: JSON rows, records (any pandas orient), KServe v1
    /// instances, Ray arrays, CSV (body or multipart), query parameters.
    #[default]
    Auto,
    /// JSON rows `[[...], ...]` (or one row `[...]`), in feature order.
    Rows,
    /// JSON records `[{"feature": value, ...}, ...]` (or one record `{...}`).
    Records,
    /// KServe v1 / TF Serving `{"instances": [...]}`.
    Instances,
    /// Ray Serve `{"array": [...], "shape": [...], "dtype": "..."}`.
    Array,
    /// CSV: a `text/csv` body or a multipart file field; header row optional.
    Csv,
    /// One row from query parameters, one per feature.
    Query,
}

impl RequestForm {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestForm::Auto => "auto",
            RequestForm::Rows => "rows",
            RequestForm::Records => "records",
            RequestForm::Instances => "instances",
            RequestForm::Array => "array",
            RequestForm::Csv => "csv",
            RequestForm::Query => "query",
        }
    }
}

/// What a route answers for each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Classifiers: the class name (the class number when the model has no names).
    /// Regressors: the predicted value.
    Label,
    /// Classifiers: the class index, 0-based (what scikit-learn's `predict` returns for a model
    /// trained on class numbers).
    ClassIndex,
    /// Classifiers: the list of class probabilities, in class order.
    Probabilities,
    /// Binary classifiers: the probability of the second (positive) class, as XGBoost's
    /// `predict` answers for `binary:logistic`.
    Probability,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Label => "label",
            Answer::ClassIndex => "class_index",
            Answer::Probabilities => "probabilities",
            Answer::Probability => "probability",
        }
    }
}

/// How a route lays out its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `{"<response_key>": [answer, ...]}` (plus `"probabilities"` when asked for).
    #[default]
    Object,
    /// `[answer, ...]`.
    List,
    /// `[{"<response_key>": answer}, ...]`, one object per row (pandas records).
    Records,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Object => "object",
            Layout::List => "list",
            Layout::Records => "records",
        }
    }
}

/// One route alias (`[[routes]]` in `model.toml`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The URL path, e.g. `"/predict"`; letters, digits and `/ . _ - ~ : @` only. It may not
    /// start with a path the server uses itself (`/v1`, `/v2`, `/models`, `/docs`, `/apidocs`,
    /// `/openapi.json`, `/metrics`, `/health`, `/jobs`).
    pub path: String,
    /// `"GET"` (rows from query parameters) or `"POST"` (default).
    #[serde(default)]
    pub method: RouteMethod,
    /// What the request carries: `"auto"` (default: every friendly form), `"rows"`,
    /// `"records"`, `"instances"`, `"array"`, `"csv"` or `"query"`. GET routes read `"query"`.
    #[serde(default)]
    pub request: RequestForm,
    /// The JSON key holding the rows or records, e.g. `"batches"` for `{"batches": [[...]]}`.
    pub request_key: Option<String>,
    /// The multipart field holding the CSV file, e.g. `"input_file"`; default: the first file.
    pub csv_field: Option<String>,
    /// The names this route uses for the features, in feature order (e.g. `["slength",
    /// "swidth", "plength", "pwidth"]`); they are accepted besides the feature names and
    /// aliases, and shown in the OpenAPI document.
    pub features: Option<Vec<String>>,
    /// What each row answers: `"label"` (default), `"class_index"`, `"probabilities"` or
    /// `"probability"`.
    pub answer: Option<Answer>,
    /// Answer layout: `"object"` (default), `"list"` or `"records"`.
    #[serde(default)]
    pub response: Layout,
    /// The key of the answer in the `"object"` and `"records"` layouts; default
    /// `"predictions"`.
    pub response_key: Option<String>,
    /// When the request is a single row (a record object, a flat row, query parameters), answer
    /// that row's value without the surrounding list: `{"prediction": "setosa"}`, `"setosa"`.
    #[serde(default)]
    pub unwrap_single: bool,
    /// One line for the OpenAPI document.
    pub summary: Option<String>,
    /// A POST route whose body (a JSON list of rows or records) starts a batch job on this
    /// model and answers `202` with the job's id and URL at once (`GET /jobs/{id}` follows it),
    /// instead of answering the predictions.
    #[serde(default)]
    pub job: bool,
}

impl RouteConfig {
    pub fn response_key(&self) -> &str {
        self.response_key.as_deref().unwrap_or("predictions")
    }

    /// The form a request takes on this route (GET routes read query parameters).
    pub fn form(&self) -> RequestForm {
        match (self.method, self.request) {
            (RouteMethod::Get, _) => RequestForm::Query,
            (RouteMethod::Post, f) => f,
        }
    }

    fn check(&self) -> Result<(), String> {
        let p = &self.path;
        let what = format!("routes: path {p:?}");
        if !p.starts_with('/') {
            return Err(format!("{what}: must start with '/'"));
        }
        if let Some(c) = p
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "/._-~:@".contains(*c)))
        {
            return Err(format!(
                "{what}: character {c:?} is not allowed (letters, digits and / . _ - ~ : @)"
            ));
        }
        if p.contains("//") || p.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(format!("{what}: empty, '.' or '..' segment"));
        }
        if p.split('/')
            .any(|seg| seg.starts_with(':') || seg.starts_with('@'))
        {
            return Err(format!("{what}: a segment may not start with ':' or '@'"));
        }
        if let Some(r) = RESERVED_PATH_PREFIXES
            .iter()
            .find(|r| p == *r || p.starts_with(&format!("{r}/")))
        {
            return Err(format!("{what}: {r} is the server's own"));
        }
        if self.method == RouteMethod::Get
            && !matches!(self.request, RequestForm::Auto | RequestForm::Query)
        {
            return Err(format!(
                "{what}: a GET route reads query parameters; request = {:?} needs method = \"POST\"",
                self.request.as_str()
            ));
        }
        if self.request_key.is_some()
            && !matches!(
                self.request,
                RequestForm::Rows | RequestForm::Records | RequestForm::Auto
            )
        {
            return Err(format!(
                "{what}: request_key applies to request = \"rows\", \"records\" or \"auto\""
            ));
        }
        if self.request_key.as_deref() == Some("") || self.response_key.as_deref() == Some("") {
            return Err(format!("{what}: empty request_key or response_key"));
        }
        if self.csv_field.is_some() && !matches!(self.request, RequestForm::Csv | RequestForm::Auto)
        {
            return Err(format!(
                "{what}: csv_field applies to request = \"csv\" or \"auto\""
            ));
        }
        if let Some(f) = &self.features {
            let mut seen = std::collections::HashSet::new();
            if let Some(d) = f.iter().find(|n| !seen.insert(n.as_str())) {
                return Err(format!("{what}: feature name {d:?} is listed twice"));
            }
        }
        Ok(())
    }
}

/// `[batching]` in `model.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Group queued requests into batches. With `false` every request is computed alone (large
    /// requests are still split at `max_batch_size`). Default `true`.
    pub enabled: bool,
    /// Most rows one batch gathers from queued requests. A larger client request is cut into
    /// pieces, reassembled in order: of this many rows, or, for models that keep large requests
    /// together (the tree engine, ONNX Runtime), one piece per instance. Default 1024.
    pub max_batch_size: usize,
    /// How long the oldest queued request may wait for others before its batch goes, e.g.
    /// `"2ms"`, `"500us"`. Default `"0ms"`: a batch goes as soon as an instance is free, with
    /// whatever has queued meanwhile (no added latency when idle).
    pub max_queue_delay: String,
    /// Batch sizes (rows) to prefer: when the queue can form one of them exactly, that batch
    /// goes at once instead of waiting out the delay. Default none.
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests admitted (queued or running) per model version; more are refused at once with
    /// 429 and `Retry-After`. Default: `--max-queue-size` (1024).
    pub max_queue_size: Option<usize>,
    /// Default deadline for a request to this model, e.g. `"500ms"`; a request still queued
    /// when it passes is answered 504 and never computed. A request's own `timeout` parameter
    /// (microseconds) or `X-Request-Timeout-Ms` header takes precedence. Default none.
    pub default_timeout: Option<String>,
    /// A request whose measured compute cost is below this, arriving while the model's queue is
    /// empty, is computed on the request's own task instead of going through the batcher and an
    /// instance thread (two thread hops cost as much as a cheap model). `"0us"` turns it off.
    /// Default `"10us"`, about the cost of the hops: dearer models gain more from batches.
    pub inline_compute_below: String,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            enabled: true,
            max_batch_size: 1024,
            max_queue_delay: "0ms".into(),
            preferred_batch_sizes: Vec::new(),
            max_queue_size: None,
            default_timeout: None,
            inline_compute_below: "10us".into(),
        }
    }
}

/// Parses a duration such as `"2ms"`, `"500us"`, `"1.5s"`, `"0"`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix("µs") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if t == "0" {
        ("0", 0.0)
    } else {
        return Err(format!(
            "duration {s:?}: expected a number with a unit, e.g. \"2ms\", \"500us\", \"1s\""
        ));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("duration {s:?}: {num:?} is not a number"))?;
    if !(v >= 0.0 && v.is_finite() && v * scale <= 3600.0) {
        return Err(format!("duration {s:?}: expected 0 to 1 hour"));
    }
    Ok(std::time::Duration::from_secs_f64(v * scale))
}

impl BatchingConfig {
    /// The parsed `max_queue_delay`.
    pub fn max_queue_delay(&self) -> std::time::Duration {
        parse_duration(&self.max_queue_delay).unwrap_or_default()
    }

    /// The parsed `inline_compute_below`.
    pub fn inline_compute_below(&self) -> std::time::Duration {
        parse_duration(&self.inline_compute_below).unwrap_or_default()
    }

    /// The parsed `default_timeout`.
    pub fn default_timeout(&self) -> Option<std::time::Duration> {
        self.default_timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
    }

    fn check(&self) -> Result<(), String> {
        if self.max_batch_size == 0 {
            return Err("batching.max_batch_size = 0: expected at least 1".into());
        }
        parse_duration(&self.max_queue_delay)
            .map_err(|e| format!("batching.max_queue_delay: {e}"))?;
        if let Some(t) = &self.default_timeout {
            parse_duration(t).map_err(|e| format!("batching.default_timeout: {e}"))?;
        }
        parse_duration(&self.inline_compute_below)
            .map_err(|e| format!("batching.inline_compute_below: {e}"))?;
        if let Some(&p) = self
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p == 0 || p > self.max_batch_size)
        {
            return Err(format!(
                "batching.preferred_batch_sizes has {p}: expected 1 to max_batch_size ({})",
                self.max_batch_size
            ));
        }
        if self.max_queue_size == Some(0) {
            return Err("batching.max_queue_size = 0: expected at least 1".into());
        }
        Ok(())
    }
}

/// Checks a `"module:name"` target (`predictor`, `adapter`).
fn check_target(key: &str, v: &str) -> Result<(), String> {
    let ident = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|p| {
                p.chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && p.chars().all(|c| c.is_alphanumeric() || c == '_')
            })
    };
    match v.split_once(':') {
        Some((m, n)) if ident(m) && ident(n) && !n.contains('.') => Ok(()),
        _ => Err(format!(
            "{key} = {v:?}: expected \"module:name\", e.g. \"model:AdderPredictor\""
        )),
    }
}

/// Why `model.toml` text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where and what (`line 2, column 7: unknown field ...`), without quoting the file: what
    /// answers say.
    pub message: String,
    /// The parser's full report, which quotes the offending line: for the server log only.
    pub report: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ConfigError {
    fn from_toml(e: &toml::de::Error, text: &str) -> ConfigError {
        let report = e.to_string().trim_end().to_string();
        // Without its input the error prints only its message (and the key it was in).
        let mut bare = e.clone();
        bare.set_input(None);
        let what = bare.to_string().trim_end().replace('\n', " ");
        let message = match e.span() {
            Some(span) => {
                let (line, column) = line_and_column(text, span.start);
                format!("line {line}, column {column}: {what}")
            }
            None => what,
        };
        ConfigError { message, report }
    }
}

/// The 1-based line and column (in characters) of byte `at` of `text`.
fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

impl ModelConfig {
    /// Parses `model.toml` text; unknown keys are errors naming the key. The error says where
    /// and what without quoting the text (see [`ModelConfig::parse_toml`] for the full report).
    pub fn from_toml(text: &str) -> Result<ModelConfig, String> {
        Self::parse_toml(text).map_err(|e| e.message)
    }

    /// Parses `model.toml` text. The error's `message` names the line and column and what was
    /// wrong, and never quotes the text (a `model.toml` that is really some other file must not
    /// have its content answered to clients); its `report` is the parser's own, quoting the
    /// offending line, for the server log.
    pub fn parse_toml(text: &str) -> Result<ModelConfig, ConfigError> {
        let cfg: ModelConfig =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text))?;
        cfg.check().map_err(|m| ConfigError {
            message: m.clone(),
            report: m,
        })?;
        Ok(cfg)
    }

    /// Parses `over` layered over `base` (two `model.toml` texts): each top-level key `over`
    /// sets replaces `base`'s whole (a `[[routes]]` list, `[batching]` table ...), the others
    /// stay. Errors in `over` name its own lines.
    pub fn parse_layered(base: &str, over: &str) -> Result<ModelConfig, ConfigError> {
        // Each text alone first, so that an error points into the right one.
        Self::parse_toml(over)?;
        Self::parse_toml(base)?;
        let table = |text: &str| {
            toml::from_str::<toml::Table>(text).map_err(|e| ConfigError::from_toml(&e, text))
        };
        let mut merged = table(base)?;
        for (k, v) in table(over)? {
            merged.insert(k, v);
        }
        let cfg: ModelConfig =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let m = e.to_string().trim_end().replace('\n', " ");
                    ConfigError {
                        message: m.clone(),
                        report: m,
                    }
                })?;
        cfg.check().map_err(|m| ConfigError {
            message: m.clone(),
            report: m,
        })?;
        Ok(cfg)
    }

    /// Checks values serde cannot.
    pub fn check(&self) -> Result<(), String> {
        if let Some(dt) = &self.output_datatype {
            match DataType::parse(dt) {
                Some(DataType::Fp32) | Some(DataType::Fp64) => {}
                _ => {
                    return Err(format!(
                        "output_datatype = {dt:?}: expected \"FP32\" or \"FP64\""
                    ))
                }
            }
        }
        if let Some(f) = &self.file {
            // Not echoed: an absolute path may name the repository's place on disk.
            if std::path::Path::new(f).has_root() {
                return Err(
                    "file: expected a path relative to the version folder, got an absolute path"
                        .into(),
                );
            }
        }
        if self.threads == Some(0) {
            return Err("threads = 0: expected at least 1".into());
        }
        if self.intra_op_threads == Some(0) {
            return Err("intra_op_threads = 0: expected at least 1".into());
        }
        if self.max_request_rows == Some(0) {
            return Err("max_request_rows = 0: expected at least 1".into());
        }
        if let VersionPolicy::Latest(0) = self.version_policy {
            return Err("version_policy = { latest = 0 }: expected at least 1".into());
        }
        if self.instances == Some(0) {
            return Err("instances = 0: expected at least 1".into());
        }
        self.check_python()?;
        if let Some(p) = &self.prediction_log {
            p.check()?;
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.routes {
            r.check()?;
            if !seen.insert((r.method, r.path.as_str())) {
                return Err(format!(
                    "routes: {} {} is listed twice",
                    r.method.as_str(),
                    r.path
                ));
            }
        }
        self.batching.check()
    }

    /// The `python` backend's keys: only with `backend = "python"`, which needs `predictor`.
    fn check_python(&self) -> Result<(), String> {
        let python = self.backend == Some(BackendKind::Python);
        let set = [
            ("predictor", self.predictor.is_some()),
            ("checkpoint", self.checkpoint.is_some()),
            ("adapter", self.adapter.is_some()),
            ("python", self.python.is_some()),
            ("batch_format", self.batch_format.is_some()),
            ("inputs", !self.inputs.is_empty()),
            ("outputs", !self.outputs.is_empty()),
            ("worker_timeout", self.worker_timeout.is_some()),
            ("worker_start_timeout", self.worker_start_timeout.is_some()),
        ];
        if !python {
            if let Some((key, _)) = set.iter().find(|(_, on)| *on) {
                return Err(format!("{key}: only for backend = \"python\""));
            }
            return Ok(());
        }
        let Some(p) = &self.predictor else {
            return Err("backend = \"python\" needs predictor = \"module:Class\"".into());
        };
        for (key, v) in [("predictor", Some(p)), ("adapter", self.adapter.as_ref())] {
            if let Some(v) = v {
                check_target(key, v)?;
            }
        }
        if let Some(CheckpointConfig::Dir(d)) = &self.checkpoint {
            let path = std::path::Path::new(d);
            if path.has_root()
                || path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err("checkpoint: expected a folder inside the version folder".into());
            }
        }
        for (key, list) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            let mut seen = std::collections::HashSet::new();
            for t in list {
                let what = format!("{key} {:?}", t.name);
                if t.name.is_empty() || !seen.insert(t.name.as_str()) {
                    return Err(format!("{what}: empty or repeated name"));
                }
                if DataType::parse(&t.datatype).is_none() {
                    return Err(format!(
                        "{what}: datatype {:?} is not a v2 data type (FP64, FP32, INT64, BYTES, ...)",
                        t.datatype
                    ));
                }
                if t.shape.first() != Some(&-1) || t.shape.iter().any(|&d| d < -1) {
                    return Err(format!(
                        "{what}: shape {:?}: expected the batch first (-1), then sizes or -1",
                        t.shape
                    ));
                }
            }
        }
        for (key, t) in [
            ("worker_timeout", &self.worker_timeout),
            ("worker_start_timeout", &self.worker_start_timeout),
        ] {
            if let Some(t) = t {
                let d = parse_duration(t).map_err(|e| format!("{key}: {e}"))?;
                if d.is_zero() {
                    return Err(format!("{key}: expected more than 0"));
                }
            }
        }
        Ok(())
    }

    /// Checks the parts of the configuration that depend on the loaded model (feature count,
    /// classes): feature aliases name features, route feature lists and sample rows have one
    /// entry per feature, class answers go to classifiers.
    pub fn check_model(&self, meta: &ModelMetadata) -> Result<(), String> {
        let uses_features = !self.feature_aliases.is_empty()
            || !self.sample_rows.is_empty()
            || !self.routes.is_empty();
        let Some(n) = meta.tabular_features() else {
            return if uses_features {
                Err("feature_aliases, sample_rows and routes need a model with one input of shape [-1, n_features]".into())
            } else {
                Ok(())
            };
        };
        let names = meta.feature_names_or_default();
        for (alias, target) in &self.feature_aliases {
            if !names.iter().any(|f| f == target) {
                return Err(format!(
                    "feature_aliases: {alias:?} = {target:?} is not a feature of the model (features: {})",
                    names.join(", ")
                ));
            }
            if names.iter().any(|f| f == alias && f != target) {
                return Err(format!(
                    "feature_aliases: {alias:?} is already the name of another feature"
                ));
            }
        }
        for (i, row) in self.sample_rows.iter().enumerate() {
            if row.len() != n {
                return Err(format!(
                    "sample_rows[{i}] has {} values; the model has {n} features",
                    row.len()
                ));
            }
        }
        let classes = meta.task.class_labels().map(ClassLabels::len);
        for r in &self.routes {
            let what = format!("routes: {} {}", r.method.as_str(), r.path);
            if meta.task == crate::Task::Custom && r.answer.is_some() {
                return Err(format!(
                    "{what}: answer applies to classifiers and regressors; this model's outputs are its answer (leave answer out)"
                ));
            }
            if let Some(f) = &r.features {
                if f.len() != n {
                    return Err(format!(
                        "{what}: features lists {} names; the model has {n} features",
                        f.len()
                    ));
                }
            }
            match (r.answer, classes) {
                (None | Some(Answer::Label), _) => {}
                (Some(a @ (Answer::ClassIndex | Answer::Probabilities)), None) => {
                    return Err(format!(
                        "{what}: answer = {:?} needs a classifier; this model is a regressor",
                        a.as_str()
                    ))
                }
                (Some(Answer::ClassIndex | Answer::Probabilities), Some(_)) => {}
                (Some(Answer::Probability), Some(2)) => {}
                (Some(Answer::Probability), other) => {
                    return Err(format!(
                    "{what}: answer = \"probability\" needs a binary classifier; this model has {}",
                    match other {
                        Some(k) => format!("{k} classes (use \"probabilities\")"),
                        None => "no classes (it is a regressor)".into(),
                    }
                ))
                }
            }
        }
        Ok(())
    }

    /// A `python` backend timeout: the configured one or `default`.
    pub fn python_timeout(
        &self,
        t: &Option<String>,
        default: std::time::Duration,
    ) -> std::time::Duration {
        t.as_deref()
            .and_then(|t| parse_duration(t).ok())
            .unwrap_or(default)
    }

    /// The output data type for scores (FP32 unless configured).
    pub fn output_datatype(&self) -> DataType {
        self.output_datatype
            .as_deref()
            .and_then(DataType::parse)
            .unwrap_or(DataType::Fp32)
    }

    pub fn max_request_rows(&self) -> usize {
        self.max_request_rows.unwrap_or(100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let cfg = ModelConfig::from_toml(
            r#"
            name = "iris"
            backend = "trees"
            file = "model.onnx"
            version_policy = { latest = 2 }
            feature_names = ["a", "b"]
            class_labels = ["x", "y"]
            output_datatype = "FP64"
            threads = 2
            intra_op_threads = 3
            optimization_level = "extended"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.version_policy, VersionPolicy::Latest(2));
        assert_eq!(cfg.backend, Some(BackendKind::Trees));
        assert_eq!(cfg.output_datatype(), DataType::Fp64);
        assert_eq!(cfg.intra_op_threads, Some(3));
        assert_eq!(cfg.optimization_level, Some(OptimizationLevel::Extended));
        let all = ModelConfig::from_toml("version_policy = \"all\"").unwrap();
        assert_eq!(all.version_policy, VersionPolicy::All);
        let sp = ModelConfig::from_toml("version_policy = { specific = [1, 3] }").unwrap();
        assert_eq!(sp.version_policy, VersionPolicy::Specific(vec![1, 3]));
    }

    #[test]
    fn layered_keys_replace_the_base_ones_whole() {
        let base = "description = \"converted\"\nclass_labels = [\"a\", \"b\"]\n\
                    [batching]\nmax_batch_size = 8\n";
        let over = "class_labels = [\"x\", \"y\"]\n[[routes]]\nmethod = \"GET\"\n\
                    path = \"/prediction\"\nfeatures = [\"p\", \"q\"]\n";
        let cfg = ModelConfig::parse_layered(base, over).unwrap();
        assert_eq!(cfg.description.as_deref(), Some("converted"));
        assert_eq!(cfg.class_labels, Some(vec!["x".into(), "y".into()]));
        assert_eq!(cfg.batching.max_batch_size, 8);
        assert_eq!(cfg.routes.len(), 1);
        // An error in the layer names its own line.
        let e = ModelConfig::parse_layered(base, "\n\nnot_a_key = 1\n").unwrap_err();
        assert!(e.message.starts_with("line 3"), "{e:?}");
    }

    #[test]
    fn every_field_is_documented() {
        // Destructuring without `..` stops compiling when a field is added: add it here and to
        // docs/configuration.md.
        let ModelConfig {
            name: _,
            backend: _,
            file: _,
            version_policy: _,
            feature_names: _,
            class_labels: _,
            output_datatype: _,
            threads: _,
            intra_op_threads: _,
            optimization_level: _,
            max_request_rows: _,
            description: _,
            instances: _,
            batching: _,
            feature_aliases: _,
            sample_rows: _,
            routes: _,
            predictor: _,
            checkpoint: _,
            adapter: _,
            python: _,
            batch_format: _,
            inputs: _,
            outputs: _,
            worker_timeout: _,
            worker_start_timeout: _,
            prediction_log: _,
        } = ModelConfig::default();
        let RouteConfig {
            path: _,
            method: _,
            request: _,
            request_key: _,
            csv_field: _,
            features: _,
            answer: _,
            response: _,
            response_key: _,
            unwrap_single: _,
            summary: _,
            job: _,
        } = RouteConfig::default();
        let BatchingConfig {
            enabled: _,
            max_batch_size: _,
            max_queue_delay: _,
            preferred_batch_sizes: _,
            max_queue_size: _,
            default_timeout: _,
            inline_compute_below: _,
        } = BatchingConfig::default();
        let fields = [
            "name",
            "backend",
            "file",
            "version_policy",
            "feature_names",
            "class_labels",
            "output_datatype",
            "threads",
            "intra_op_threads",
            "optimization_level",
            "max_request_rows",
            "description",
            "instances",
            "feature_aliases",
            "sample_rows",
            "routes",
            "path",
            "method",
            "request",
            "request_key",
            "csv_field",
            "features",
            "answer",
            "response",
            "response_key",
            "unwrap_single",
            "summary",
            "job",
            "batching.enabled",
            "batching.max_batch_size",
            "batching.max_queue_delay",
            "batching.preferred_batch_sizes",
            "batching.max_queue_size",
            "batching.default_timeout",
            "batching.inline_compute_below",
            "predictor",
            "checkpoint",
            "adapter",
            "python",
            "batch_format",
            "inputs",
            "outputs",
            "worker_timeout",
            "worker_start_timeout",
            "prediction_log.record",
            "prediction_log.sample",
            "prediction_log.max_rows",
        ];
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ))
        .unwrap();
        for f in fields {
            assert!(doc.contains(&format!("| `{f}` |")), "{f} is not documented");
        }
    }

    #[test]
    fn batching_table_and_durations() {
        let cfg = ModelConfig::from_toml(
            "instances = 2\n[batching]\nmax_batch_size = 32\nmax_queue_delay = \"2ms\"\npreferred_batch_sizes = [16, 32]\n",
        )
        .unwrap();
        assert_eq!(cfg.instances, Some(2));
        assert_eq!(cfg.batching.max_batch_size, 32);
        assert_eq!(
            cfg.batching.max_queue_delay(),
            std::time::Duration::from_millis(2)
        );
        assert!(cfg.batching.enabled);
        assert_eq!(
            parse_duration("500us").unwrap(),
            std::time::Duration::from_micros(500)
        );
        assert_eq!(
            parse_duration("1.5s").unwrap(),
            std::time::Duration::from_millis(1500)
        );
        for bad in ["2", "ms", "-1ms", "2h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let e =
            ModelConfig::from_toml("[batching]\nmax_batch_size = 8\npreferred_batch_sizes = [16]")
                .unwrap_err();
        assert!(e.contains("preferred_batch_sizes"), "{e}");
        let e = ModelConfig::from_toml("[batching]\nmax_queue_delay = \"soon\"").unwrap_err();
        assert!(e.contains("max_queue_delay"), "{e}");
        let e = ModelConfig::from_toml("[batching]\nmax_delay = \"1ms\"").unwrap_err();
        assert!(e.contains("max_delay"), "{e}");
    }

    #[test]
    fn parse_errors_say_where_without_quoting_the_file() {
        // A model.toml that is really another file (here a passwd line): the message names the
        // line and column and what was expected; only the report, for the log, quotes it.
        let text = "\nroot:x:0:0:root:/root:/bin/bash\n";
        let e = ModelConfig::parse_toml(text).unwrap_err();
        assert!(e.message.starts_with("line 2, column "), "{}", e.message);
        assert!(
            !e.message.contains("root:x") && !e.message.contains("bin"),
            "{}",
            e.message
        );
        assert!(!e.message.contains('\n'), "{}", e.message);
        assert!(
            e.report.contains("root:x:0:0:root:/root:/bin/bash"),
            "{}",
            e.report
        );
        assert_eq!(ModelConfig::from_toml(text).unwrap_err(), e.message);
        // Serde's errors keep their message (the unknown key is what helps) and gain the place.
        let e = ModelConfig::parse_toml("threads = 1\nnmae = \"x\"\n").unwrap_err();
        assert!(
            e.message
                .starts_with("line 2, column 1: unknown field `nmae`"),
            "{}",
            e.message
        );
        // A multi-byte character before the error counts as one column.
        let e = ModelConfig::parse_toml("description = \"é\" x").unwrap_err();
        assert!(
            e.message.starts_with("line 1, column 19: "),
            "{}",
            e.message
        );
        // Checks serde cannot do are reported as they are.
        let e = ModelConfig::parse_toml("threads = 0").unwrap_err();
        assert_eq!(e.message, "threads = 0: expected at least 1");
    }

    #[test]
    fn the_artifact_file_is_relative_to_its_version_folder() {
        ModelConfig::from_toml("file = \"model.json\"").unwrap();
        ModelConfig::from_toml("file = \"sub/model.json\"").unwrap();
        let e = ModelConfig::from_toml("file = \"/srv/models/iris/1/model.json\"").unwrap_err();
        assert!(e.contains("relative to the version folder"), "{e}");
        assert!(!e.contains("/srv"), "{e}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let e = ModelConfig::from_toml("nmae = \"x\"").unwrap_err();
        assert!(e.contains("nmae"), "{e}");
        let e = ModelConfig::from_toml("output_datatype = \"INT8\"").unwrap_err();
        assert!(e.contains("output_datatype"), "{e}");
        assert!(ModelConfig::from_toml("backend = \"tf\"").is_err());
        let e = ModelConfig::from_toml("intra_op_threads = 0").unwrap_err();
        assert!(e.contains("intra_op_threads"), "{e}");
        assert!(ModelConfig::from_toml("optimization_level = \"max\"").is_err());
    }

    #[test]
    fn routes_parse_and_bad_routes_are_refused() {
        let cfg = ModelConfig::from_toml(
            r#"
            sample_rows = [[1.0, 2.0]]
            [feature_aliases]
            x = "a"
            [[routes]]
            path = "/predict"
            request = "rows"
            request_key = "batches"
            response_key = "Prediction"
            [[routes]]
            method = "GET"
            path = "/prediction"
            features = ["p", "q"]
            answer = "class_index"
            response = "list"
            unwrap_single = true
            "#,
        )
        .unwrap();
        assert_eq!(cfg.routes.len(), 2);
        assert_eq!(cfg.routes[0].method, RouteMethod::Post);
        assert_eq!(cfg.routes[0].response_key(), "Prediction");
        assert_eq!(cfg.routes[1].form(), RequestForm::Query);
        assert_eq!(cfg.routes[1].answer, Some(Answer::ClassIndex));
        assert_eq!(cfg.feature_aliases["x"], "a");
        for (toml, says) in [
            ("[[routes]]\npath = \"predict\"", "start with '/'"),
            ("[[routes]]\npath = \"/a{b}\"", "not allowed"),
            ("[[routes]]\npath = \"/v2/x\"", "server's own"),
            ("[[routes]]\npath = \"/models\"", "server's own"),
            ("[[routes]]\npath = \"/a//b\"", "segment"),
            (
                "[[routes]]\npath = \"/a\"\nmethod = \"GET\"\nrequest = \"csv\"",
                "GET route",
            ),
            (
                "[[routes]]\npath = \"/a\"\nrequest = \"csv\"\nrequest_key = \"k\"",
                "request_key",
            ),
            (
                "[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"/a\"",
                "twice",
            ),
            (
                "[[routes]]\npath = \"/a\"\nfeatures = [\"x\", \"x\"]",
                "twice",
            ),
            ("[[routes]]\npath = \"/a\"\nbogus = 1", "bogus"),
            ("[[routes]]\npath = \"/a\"\nmethod = \"PUT\"", "PUT"),
        ] {
            let e = ModelConfig::from_toml(toml).unwrap_err();
            assert!(e.contains(says), "{toml}: {e}");
        }
        // Routes with the same path and different methods are fine.
        ModelConfig::from_toml(
            "[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"/a\"\nmethod = \"GET\"",
        )
        .unwrap();
    }

    #[test]
    fn model_dependent_checks() {
        use crate::{DataType, TensorMeta};
        let meta = |classes: Option<usize>| ModelMetadata {
            inputs: vec![TensorMeta {
                name: "input".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 2],
            }],
            feature_names: Some(vec!["a".into(), "b".into()]),
            task: match classes {
                Some(k) => crate::Task::Classifier(crate::Classifier {
                    labels: crate::ClassLabels::Int((0..k as i64).collect()),
                    label_output: None,
                    probabilities_output: None,
                }),
                None => crate::Task::Other,
            },
            ..Default::default()
        };
        let ok = |t: &str, m: &ModelMetadata| ModelConfig::from_toml(t).unwrap().check_model(m);
        ok("feature_aliases = { x = \"a\" }", &meta(None)).unwrap();
        let e = ok("feature_aliases = { x = \"c\" }", &meta(None)).unwrap_err();
        assert!(e.contains("not a feature"), "{e}");
        let e = ok("feature_aliases = { b = \"a\" }", &meta(None)).unwrap_err();
        assert!(e.contains("another feature"), "{e}");
        let e = ok("sample_rows = [[1.0]]", &meta(None)).unwrap_err();
        assert!(e.contains("2 features"), "{e}");
        let e = ok("[[routes]]\npath = \"/a\"\nfeatures = [\"x\"]", &meta(None)).unwrap_err();
        assert!(e.contains("2 features"), "{e}");
        let e = ok(
            "[[routes]]\npath = \"/a\"\nanswer = \"class_index\"",
            &meta(None),
        )
        .unwrap_err();
        assert!(e.contains("regressor"), "{e}");
        ok(
            "[[routes]]\npath = \"/a\"\nanswer = \"probability\"",
            &meta(Some(2)),
        )
        .unwrap();
        let e = ok(
            "[[routes]]\npath = \"/a\"\nanswer = \"probability\"",
            &meta(Some(3)),
        )
        .unwrap_err();
        assert!(e.contains("binary"), "{e}");
        let mut two_inputs = meta(None);
        two_inputs.inputs.push(two_inputs.inputs[0].clone());
        let e = ok("[[routes]]\npath = \"/a\"", &two_inputs).unwrap_err();
        assert!(e.contains("one input"), "{e}");
        ok("", &two_inputs).unwrap();
    }
}
