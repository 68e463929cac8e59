//! `ferroserve-python` owns the Python backend: models that are code (`predictor =
//! "module:Class"` in `model.toml`), run in worker processes the server supervises, never in the
//! server's own process (a crash in a C extension or a hung GIL takes down one worker, not the
//! server). One worker per instance runs the runner embedded in the binary
//! (`python/ferroserve/_runner.py`), which builds the predictor once and then answers batches;
//! batches come from the server's batcher like any model's and travel over a Unix socket as
//! raw tensor bytes ([`wire`]). A worker that crashes or passes its timeout is killed and started
//! again ([`slot`]); only the batch it held fails (503), and the model is not ready while it
//! has no live worker.

pub mod model;
pub mod slot;
pub mod wire;
pub mod worker;

use std::path::Path;
use std::sync::Arc;

use ferroserve_core::{Backend, BackendError, LoadedModel, ModelConfig};

pub use model::PythonModel;

/// The backend: never picked by a file's extension, only by `backend = "python"`.
pub struct PythonBackend;

impl Backend for PythonBackend {
    fn name(&self) -> &'static str {
        "python"
    }

    fn title(&self) -> &'static str {
        "Python"
    }

    fn extensions(&self) -> &'static [&'static str] {
        &[]
    }

    fn reads_folder(&self) -> bool {
        true
    }

    fn load(&self, cfg: &ModelConfig, dir: &Path) -> Result<Arc<dyn LoadedModel>, BackendError> {
        Ok(PythonModel::load(cfg, dir)?)
    }
}
