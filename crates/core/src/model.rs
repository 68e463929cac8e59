//! The traits a backend implements and the metadata a loaded model describes itself with.

use std::path::Path;
use std::sync::Arc;

use crate::{BackendError, DataType, ModelConfig, Tensor};

/// Name, type and shape of one input or output (`-1` for a variable dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMeta {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// What a loaded model tells clients about itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelMetadata {
    /// The v2 `platform`, e.g. `ferroserve_trees` or `onnxruntime_onnx`.
    pub platform: String,
    pub inputs: Vec<TensorMeta>,
    pub outputs: Vec<TensorMeta>,
    /// Names of the columns of the first input, when known.
    pub feature_names: Option<Vec<String>>,
    /// Class labels in class-index order (as text), for classifiers.
    pub class_labels: Option<Vec<String>>,
    /// Short description of the artifact (format, trees, classes) for the status page and logs.
    pub description: String,
}

impl ModelMetadata {
    /// The number of features when the model reads one tabular input (shape `[-1, n]`), which
    /// is what the friendly routes (rows, records, CSV, query parameters) feed.
    pub fn tabular_features(&self) -> Option<usize> {
        match self.inputs.as_slice() {
            [one] => match one.shape.as_slice() {
                [_, n] if *n >= 0 => Some(*n as usize),
                _ => None,
            },
            _ => None,
        }
    }

    /// Feature names: the model's own, or `f0`, `f1`, ... when it has none.
    pub fn feature_names_or_default(&self) -> Vec<String> {
        match (&self.feature_names, self.tabular_features()) {
            (Some(n), _) => n.clone(),
            (None, Some(n)) => (0..n).map(|i| format!("f{i}")).collect(),
            (None, None) => Vec::new(),
        }
    }
}

/// One batch handed to a model: one tensor per model input, rows along the first dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub inputs: Vec<Tensor>,
    pub rows: usize,
    /// Names of the outputs to compute; empty means every output.
    pub outputs: Vec<String>,
}

/// A model loaded once and shared by every instance that runs it. Immutable after load.
pub trait LoadedModel: Send + Sync {
    fn metadata(&self) -> &ModelMetadata;

    /// Runs the model on a batch. Synchronous and CPU-bound: never called on the async runtime.
    /// Returns the requested outputs, each with `batch.rows` along its first dimension.
    fn infer(&self, batch: &Batch) -> Result<Vec<Tensor>, BackendError>;
}

/// Turns an artifact into a loaded model.
pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;

    /// Loads the artifact `file` (inside a version folder) with the model's configuration.
    fn load(&self, cfg: &ModelConfig, file: &Path) -> Result<Arc<dyn LoadedModel>, BackendError>;
}
