//! `model.toml`: the per-model configuration. Every field is optional; without a file the
//! configuration is inferred from the artifact. The doc comment on each field is its reference;
//! `docs/configuration.md` repeats it, and a test checks that every field is documented there.

use serde::Deserialize;

use crate::DataType;

/// Which backend runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The native tree engine (XGBoost, LightGBM, ONNX tree ensembles).
    Trees,
    /// ONNX Runtime.
    Onnx,
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
    /// The artifact's file name inside each version folder, e.g. `"model.json"`. Default: the
    /// only model file there (`.json`, `.ubj`, `.txt`, `.onnx`, `.lgb`).
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
}

/// `[batching]` in `model.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Group queued requests into batches. With `false` every request is computed alone (large
    /// requests are still split at `max_batch_size`). Default `true`.
    pub enabled: bool,
    /// Most rows in one batch; larger client requests are split across batches and instances
    /// and reassembled in order. Default 1024.
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

impl ModelConfig {
    /// Parses `model.toml` text; unknown keys are errors naming the key.
    pub fn from_toml(text: &str) -> Result<ModelConfig, String> {
        let cfg: ModelConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.check()?;
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
        self.batching.check()
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
        } = ModelConfig::default();
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
            "batching.enabled",
            "batching.max_batch_size",
            "batching.max_queue_delay",
            "batching.preferred_batch_sizes",
            "batching.max_queue_size",
            "batching.default_timeout",
            "batching.inline_compute_below",
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
}
