//! The `trees` backend: serves a [`CompiledForest`] as a [`LoadedModel`], beside the engine it
//! runs (the runtime lists it with its peers and never looks inside).
//!
//! One input, FP32 `[-1, n_features]` (any numeric type is accepted and converted); outputs
//! `label` (INT64 class labels, or BYTES when the labels are strings) and `probabilities`
//! (`[-1, n_classes]`) for classifiers, `value` (`[-1]`, or `[-1, n_targets]`) for regressors.

use std::path::Path;
use std::sync::Arc;

use ferroserve_core::model::Batch;
use ferroserve_core::{
    Backend, BackendError, ClassLabels, Classifier, DataType, Instance, LoadedModel, ModelConfig,
    ModelMetadata, Regressor, Task as CoreTask, Tensor, TensorData, TensorMeta,
};

use crate::ir::Task;
use crate::{CompiledForest, Forest, TreeError};

/// Name of the single input of a tree model.
pub const INPUT: &str = "input";
/// A classifier's output of labels (its metadata's task names it).
pub const LABEL: &str = "label";
/// A classifier's output of class probabilities.
pub const PROBABILITIES: &str = "probabilities";
/// A regressor's output.
pub const VALUE: &str = "value";

/// The `trees` backend: XGBoost (JSON, UBJSON), LightGBM (text) and ONNX graphs that are only
/// a tree ensemble. An ONNX graph holding anything else is [`BackendError::Unsupported`], so
/// that ONNX Runtime may take it.
pub struct TreesBackend;

impl Backend for TreesBackend {
    fn name(&self) -> &'static str {
        "trees"
    }

    fn title(&self) -> &'static str {
        "the tree engine"
    }

    fn extensions(&self) -> &'static [&'static str] {
        &["json", "ubj", "txt", "lgb", "onnx", "model"]
    }

    /// Every file: the loaders also recognise their formats by content (a booster saved as
    /// `model.bin`, LightGBM text without an extension).
    fn takes(&self, _file: &Path) -> bool {
        true
    }

    fn load(&self, cfg: &ModelConfig, file: &Path) -> Result<Arc<dyn LoadedModel>, BackendError> {
        let forest = crate::load_path(file).map_err(|e| match e {
            TreeError::Unsupported { .. } => BackendError::Unsupported(e.to_string()),
            e => BackendError::Load(e.to_string()),
        })?;
        Ok(Arc::new(TreesModel::new(cfg, forest)?))
    }
}

/// A loaded tree ensemble.
pub struct TreesModel {
    engine: CompiledForest,
    meta: ModelMetadata,
    labels: Option<ClassLabels>,
    out_dtype: DataType,
}

impl TreesModel {
    pub fn new(cfg: &ModelConfig, forest: Forest) -> Result<Self, BackendError> {
        let nf = forest.n_features;
        let feature_names = match &cfg.feature_names {
            Some(names) if names.len() != nf => {
                return Err(BackendError::Load(format!(
                    "model.toml feature_names has {} names but the model reads {nf} features",
                    names.len()
                )))
            }
            Some(names) => Some(names.clone()),
            None => forest.feature_names.clone(),
        };
        let labels = match (forest.n_classes(), &cfg.class_labels) {
            (None, Some(_)) => {
                return Err(BackendError::Load(
                    "model.toml sets class_labels but the model is a regressor".into(),
                ))
            }
            (None, None) => None,
            (Some(n), Some(l)) if l.len() != n => {
                return Err(BackendError::Load(format!(
                    "model.toml class_labels has {} labels but the model has {n} classes",
                    l.len()
                )))
            }
            (Some(_), Some(l)) => Some(ClassLabels::Str(l.clone())),
            (Some(n), None) => Some(
                forest
                    .class_labels
                    .clone()
                    .unwrap_or_else(|| ClassLabels::Int((0..n as i64).collect())),
            ),
        };
        let out_dtype = cfg.output_datatype();
        let inputs = vec![TensorMeta {
            name: INPUT.into(),
            datatype: DataType::Fp32,
            shape: vec![-1, nf as i64],
        }];
        let outputs = match forest.task {
            Task::Classification { n_classes, .. } => vec![
                TensorMeta {
                    name: LABEL.into(),
                    datatype: match labels {
                        Some(ClassLabels::Str(_)) => DataType::Bytes,
                        _ => DataType::Int64,
                    },
                    shape: vec![-1],
                },
                TensorMeta {
                    name: PROBABILITIES.into(),
                    datatype: out_dtype,
                    shape: vec![-1, n_classes as i64],
                },
            ],
            Task::Regression => vec![TensorMeta {
                name: VALUE.into(),
                datatype: out_dtype,
                shape: if forest.n_outputs == 1 {
                    vec![-1]
                } else {
                    vec![-1, forest.n_outputs as i64]
                },
            }],
        };
        let description = format!(
            "{} tree ensemble: {} trees, {} features, {}",
            forest.source.as_str(),
            forest.trees.len(),
            nf,
            match forest.n_classes() {
                Some(n) => format!("{n} classes"),
                None => format!("{} regression output(s)", forest.n_outputs),
            }
        );
        let task = match &labels {
            Some(labels) => CoreTask::Classifier(Classifier {
                labels: labels.clone(),
                label_output: Some(LABEL.into()),
                probabilities_output: Some(PROBABILITIES.into()),
            }),
            None => CoreTask::Regressor(Regressor {
                output: VALUE.into(),
            }),
        };
        let meta = ModelMetadata {
            platform: "ferroserve_trees".into(),
            inputs,
            outputs,
            feature_names,
            task,
            description: cfg.description.clone().unwrap_or(description),
        };
        let engine = CompiledForest::new(forest).with_threads(cfg.threads.unwrap_or(1));
        Ok(TreesModel {
            engine,
            meta,
            labels,
            out_dtype,
        })
    }

    pub fn forest(&self) -> &Forest {
        self.engine.forest()
    }

    fn scores_tensor(&self, name: &str, shape: Vec<i64>, v: Vec<f64>) -> Tensor {
        let data = match self.out_dtype {
            DataType::Fp64 => TensorData::Fp64(v),
            _ => TensorData::Fp32(v.into_iter().map(|x| x as f32).collect()),
        };
        Tensor::new(name, shape, data)
    }
}

impl LoadedModel for TreesModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, BackendError> {
        Ok(Box::new(TreesInstance { model: self }))
    }

    /// The forest walk's cost per row is flat from a few hundred rows on: a large request is
    /// cut only to use the instances.
    fn keeps_large_requests(&self) -> bool {
        true
    }

    /// Computes without waiting on anything: on the shared compute pool.
    fn shares_compute_pool(&self) -> bool {
        true
    }
}

/// An instance of a tree model: the compiled forest is shared, and the predictor needs nothing
/// of its own between batches.
pub struct TreesInstance {
    model: Arc<TreesModel>,
}

impl Instance for TreesInstance {
    fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, BackendError> {
        self.model.infer(batch)
    }
}

impl TreesModel {
    /// Runs the forest on a batch (from any thread: the model holds no state of a run).
    pub fn infer(&self, batch: &Batch) -> Result<Vec<Tensor>, BackendError> {
        let nf = self.engine.forest().n_features;
        let input = match batch.inputs.as_slice() {
            [one] => one,
            other => {
                return Err(BackendError::Input(format!(
                    "expected 1 input tensor, got {}",
                    other.len()
                )))
            }
        };
        let rows = batch.rows;
        if input.data.len() != rows * nf {
            return Err(BackendError::Input(format!(
                "input '{}' has {} values; {rows} rows of {nf} features need {}",
                input.name,
                input.data.len(),
                rows * nf
            )));
        }
        let converted;
        let x: &[f32] = match &input.data {
            TensorData::Fp32(v) => v,
            other => {
                converted = other
                    .clone()
                    .into_f32()
                    .map_err(|e| BackendError::Input(e.message))?;
                &converted
            }
        };
        let p = self.engine.predict(x);
        let wants =
            |name: &str| batch.outputs.is_empty() || batch.outputs.iter().any(|o| o == name);
        let mut out = Vec::with_capacity(2);
        let r = rows as i64;
        match &self.labels {
            Some(labels) => {
                if wants(LABEL) {
                    let idx = p.labels.as_deref().unwrap_or(&[]);
                    let data = match labels {
                        ClassLabels::Int(l) => {
                            TensorData::Int64(idx.iter().map(|&i| l[i as usize]).collect())
                        }
                        ClassLabels::Str(l) => TensorData::Bytes(
                            idx.iter()
                                .map(|&i| l[i as usize].as_bytes().to_vec())
                                .collect(),
                        ),
                    };
                    out.push(Tensor::new(LABEL, vec![r], data));
                }
                if wants(PROBABILITIES) {
                    let shape = vec![r, p.n_scores as i64];
                    out.push(self.scores_tensor(PROBABILITIES, shape, p.scores));
                }
            }
            None => {
                if wants(VALUE) {
                    let shape = if p.n_scores == 1 {
                        vec![r]
                    } else {
                        vec![r, p.n_scores as i64]
                    };
                    out.push(self.scores_tensor(VALUE, shape, p.scores));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::Task as CoreTask;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn the_task_names_the_outputs() {
        let m = TreesBackend
            .load(&ModelConfig::default(), &fixture("lgb_multiclass.txt"))
            .unwrap();
        let CoreTask::Classifier(c) = &m.metadata().task else {
            panic!("{:?}", m.metadata().task)
        };
        assert_eq!(c.labels, ClassLabels::Int(vec![0, 1, 2]));
        assert_eq!(c.label_output.as_deref(), Some(LABEL));
        assert_eq!(c.probabilities_output.as_deref(), Some(PROBABILITIES));
        // Named classes in model.toml: the labels are strings.
        let cfg = ModelConfig::from_toml(r#"class_labels = ["a", "b", "c"]"#).unwrap();
        let m = TreesBackend
            .load(&cfg, &fixture("lgb_multiclass.txt"))
            .unwrap();
        assert_eq!(
            m.metadata().task.class_labels(),
            Some(&ClassLabels::Str(vec!["a".into(), "b".into(), "c".into()]))
        );
        let m = TreesBackend
            .load(&ModelConfig::default(), &fixture("lgb_huber.txt"))
            .unwrap();
        assert_eq!(
            m.metadata().task,
            CoreTask::Regressor(Regressor {
                output: VALUE.into()
            })
        );
    }

    #[test]
    fn graphs_that_are_not_only_trees_are_passed_on() {
        // A scaler and a linear model: well formed, unsupported (ONNX Runtime's), not broken.
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/models/wine_pipeline/1/model.onnx");
        let e = TreesBackend
            .load(&ModelConfig::default(), &file)
            .err()
            .unwrap();
        assert!(matches!(e, BackendError::Unsupported(_)), "{e:?}");
        assert!(e.to_string().starts_with("unsupported onnx model"), "{e}");
        // A malformed file is a load failure: no other backend would read it either.
        let dir = std::env::temp_dir().join(format!("ferroserve-backend-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.json");
        std::fs::write(&file, b"{\"learner\": 3").unwrap();
        let e = TreesBackend
            .load(&ModelConfig::default(), &file)
            .err()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(e, BackendError::Load(_)), "{e:?}");
    }
}
