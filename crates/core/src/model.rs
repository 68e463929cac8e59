//! The traits a backend implements and the metadata a loaded model describes itself with.

use std::path::Path;
use std::sync::Arc;

use crate::{BackendError, DataType, ModelConfig, Task, Tensor};

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
    /// What the model predicts (a classifier with its class labels, a regressor) and which
    /// outputs answer it.
    pub task: Task,
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

    /// Whether every input's and output's first dimension is the batch (`-1`): requests may
    /// then carry any number of rows, and Triton's view of the model (`max_batch_size` > 0,
    /// `dims` without that dimension) applies.
    pub fn batches(&self) -> bool {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .all(|t| t.shape.first() == Some(&-1))
    }

    /// A tensor's dimensions as Triton's model configuration writes them: without the batch
    /// dimension when the model [`batches`](Self::batches), else the full shape.
    pub fn config_dims(&self, t: &TensorMeta) -> Vec<i64> {
        if self.batches() {
            t.shape[1..].to_vec()
        } else {
            t.shape.clone()
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

/// A model loaded once and shared by every instance that runs it. Immutable after load: what
/// one instance needs for itself (an ONNX Runtime session, scratch buffers) is its
/// [`Instance`], which it makes once and keeps (the analysis is done once, at load; the state
/// per runner belongs to the runner).
pub trait LoadedModel: Send + Sync {
    fn metadata(&self) -> &ModelMetadata;

    /// Makes the state one instance runs the model with. Called once per instance, on the thread
    /// that will run it; may take a while (ONNX Runtime builds a session).
    fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, BackendError>;

    /// Whether the model can serve now; `Err` says why not (a Python model with no live
    /// worker). A version that is not healthy is not ready: requests go to another or are
    /// refused with the reason. Cheap: asked on every request.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether the runtime may make an extra instance to compute a cheap request on the caller's
    /// task. Not for models whose instances are costly processes.
    fn inline_instance(&self) -> bool {
        true
    }

    /// Whether a request larger than `max_batch_size` may run in fewer, larger pieces than
    /// `max_batch_size` rows each: one per instance, each at least `max_batch_size` rows. For
    /// engines whose cost per row only falls as batches grow (the tree engine, ONNX Runtime),
    /// cutting a large request into small batches adds their overhead and gains nothing but the
    /// parallelism of the instances. `false` (the default) splits at `max_batch_size`, for
    /// models that may rely on it (a Python predictor's batches).
    fn keeps_large_requests(&self) -> bool {
        false
    }

    /// Whether the model's batches run on the process's shared compute pool (one thread per
    /// core for every model) rather than on threads of its own, one per instance. For engines
    /// that compute without waiting on anything (the tree engine, ONNX Runtime); `false` (the
    /// default) for models that wait while computing (a Python predictor's worker process),
    /// which would hold a pool thread idle.
    fn shares_compute_pool(&self) -> bool {
        false
    }

    /// The HTTP adapter that turns a friendly request into the model's inputs, when the model
    /// has one (a Python `adapter`).
    fn adapter(&self) -> Option<&dyn Adapter> {
        None
    }
}

/// A friendly request as an HTTP adapter sees it.
#[derive(Debug, Clone, Default)]
pub struct AdapterRequest {
    /// The query string's pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The body, when there is one (JSON).
    pub body: Option<Vec<u8>>,
}

/// Turns a friendly request into a model's input tensors (blocking: it may run Python).
pub trait Adapter: Send + Sync {
    fn adapt(&self, req: &AdapterRequest) -> Result<Vec<Tensor>, BackendError>;
}

/// One instance's own state for running a model. Only its owner runs it, one batch at a time,
/// so it needs no lock.
pub trait Instance: Send {
    /// Runs the model on a batch. Synchronous and CPU-bound: on an instance thread, or on the
    /// caller's task for a model cheap enough to compute inline. Returns the requested outputs,
    /// each with `batch.rows` along its first dimension.
    fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, BackendError>;
}

/// Turns an artifact into a loaded model. Backends are peers: the runtime keeps a list of them
/// and offers an artifact to those that take it, in order, unless `model.toml` names one.
pub trait Backend: Send + Sync {
    /// Its name in `model.toml` (`backend = "trees"`) and in the log.
    fn name(&self) -> &'static str;

    /// What it runs models on, as an answer names it when a model needs it (`"ONNX Runtime"`).
    fn title(&self) -> &'static str;

    /// Extensions (lower case, without the dot) of the artifacts it reads, in the order they are
    /// listed to users; a version folder's artifact is the one file with an extension some
    /// backend lists.
    fn extensions(&self) -> &'static [&'static str];

    /// Whether it takes `file` when `model.toml` names no backend. By default, when the file's
    /// extension is one of [`Backend::extensions`] (in any case).
    fn takes(&self, file: &Path) -> bool {
        file.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| self.extensions().iter().any(|x| e.eq_ignore_ascii_case(x)))
    }

    /// Loads the artifact `file` (inside a version folder) with the model's configuration.
    /// [`BackendError::Unsupported`] says the file is well formed but holds something this
    /// backend does not implement, so that the next backend taking the file may load it.
    fn load(&self, cfg: &ModelConfig, file: &Path) -> Result<Arc<dyn LoadedModel>, BackendError>;

    /// Whether its artifact is the version folder itself (a Python predictor's code) rather
    /// than one file in it: [`Backend::load`] is then given the folder.
    fn reads_folder(&self) -> bool {
        false
    }
}
