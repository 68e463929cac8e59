//! `ferroserve-onnx` owns the ONNX Runtime backend: any ONNX graph the native tree engine does
//! not take (scikit-learn pipelines, linear models, MLPs, small networks) runs on ONNX Runtime
//! through the `ort` crate. The library is loaded at run time (`ort`'s `load-dynamic`), found
//! through `ORT_DYLIB_PATH` or the `onnxruntime` Python wheel ([`library`]); without it a model
//! that needs it is not ready and its reason says what to install. [`OnnxModel`] describes the
//! graph in v2 terms (names, data types, shapes with `-1`), turns ZipMap outputs into a
//! probabilities tensor, carries strings as BYTES (any bytes, NUL and invalid UTF-8 included,
//! both ways: the `strings` module), and runs synchronously on the calling instance thread with a session
//! of its own.

pub mod graph;
pub mod library;
pub mod model;
mod strings;

use std::path::Path;
use std::sync::Arc;

use ferroserve_core::{Backend, BackendError, LoadedModel, ModelConfig};

pub use library::{find_library, runtime, INSTALL_HINT};
pub use model::{OnnxInstance, OnnxModel};

/// Everything that can go wrong finding ONNX Runtime, loading a graph or running it.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// ONNX Runtime itself cannot be found or loaded; the message says what to install.
    #[error("{0}")]
    Library(String),
    /// The graph cannot be loaded.
    #[error("{0}")]
    Load(String),
    /// The request does not fit the graph.
    #[error("{0}")]
    Input(String),
    /// ONNX Runtime failed while running.
    #[error("ONNX Runtime failed: {0}")]
    Run(String),
}

impl From<OnnxError> for BackendError {
    fn from(e: OnnxError) -> Self {
        match e {
            OnnxError::Library(m) | OnnxError::Load(m) => BackendError::Load(m),
            OnnxError::Input(m) => BackendError::Input(m),
            e @ OnnxError::Run(_) => BackendError::Run(e.to_string()),
        }
    }
}

/// The `onnx` backend.
pub struct OnnxBackend;

impl Backend for OnnxBackend {
    fn name(&self) -> &'static str {
        "onnx"
    }

    fn title(&self) -> &'static str {
        "ONNX Runtime"
    }

    fn extensions(&self) -> &'static [&'static str] {
        &["onnx"]
    }

    fn load(&self, cfg: &ModelConfig, file: &Path) -> Result<Arc<dyn LoadedModel>, BackendError> {
        Ok(Arc::new(OnnxModel::load(cfg, file)?))
    }
}
