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
    /// Threads one batch may use inside the model (large batches only). Default 1.
    pub threads: Option<usize>,
    /// Largest number of rows one request may carry. Default 100000.
    pub max_request_rows: Option<usize>,
    /// Free text shown in the model's metadata.
    pub description: Option<String>,
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
        if self.max_request_rows == Some(0) {
            return Err("max_request_rows = 0: expected at least 1".into());
        }
        if let VersionPolicy::Latest(0) = self.version_policy {
            return Err("version_policy = { latest = 0 }: expected at least 1".into());
        }
        Ok(())
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
            "#,
        )
        .unwrap();
        assert_eq!(cfg.version_policy, VersionPolicy::Latest(2));
        assert_eq!(cfg.backend, Some(BackendKind::Trees));
        assert_eq!(cfg.output_datatype(), DataType::Fp64);
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
            max_request_rows: _,
            description: _,
        } = ModelConfig::default();
        let fields = [
            "name",
            "backend",
            "file",
            "version_policy",
            "feature_names",
            "class_labels",
            "output_datatype",
            "threads",
            "max_request_rows",
            "description",
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
    fn rejects_unknown_keys_and_bad_values() {
        let e = ModelConfig::from_toml("nmae = \"x\"").unwrap_err();
        assert!(e.contains("nmae"), "{e}");
        let e = ModelConfig::from_toml("output_datatype = \"INT8\"").unwrap_err();
        assert!(e.contains("output_datatype"), "{e}");
        assert!(ModelConfig::from_toml("backend = \"tf\"").is_err());
    }
}
