//! `ferroserve-trees` owns tree ensembles: one forest IR ([`ir::Forest`]), loaders that turn
//! XGBoost (JSON, UBJSON), LightGBM (text) and ONNX-ML (`TreeEnsembleClassifier`,
//! `TreeEnsembleRegressor`) files into it, a plain reference predictor kept as the test oracle and
//! a fast batch predictor ([`CompiledForest`]) that serves, and the `trees` backend
//! ([`backend`]: a forest as a `ferroserve-core` `LoadedModel`). It is a pure library: no async
//! runtime, no I/O beyond reading the model file.

pub mod backend;
pub mod ir;
pub mod loaders;
pub mod predict;

pub use ir::Forest;
pub use loaders::{load_bytes, load_path, ModelFormat};
pub use predict::fast::{CompiledForest, Shape, Walk};
pub use predict::reference::predict_reference;
pub use predict::Predictions;

/// Everything that can go wrong reading or checking a model.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The file could not be read (the caller names the file).
    #[error("cannot read the file: {0}")]
    Io(#[source] std::io::Error),
    /// The bytes are not a well-formed file of the expected format.
    #[error("malformed {format} model: {message}")]
    Parse {
        format: &'static str,
        message: String,
    },
    /// The file is well formed but uses something the engine does not implement; the message
    /// names the construct.
    #[error("unsupported {format} model: {message}")]
    Unsupported {
        format: &'static str,
        message: String,
    },
    /// The loaded forest breaks an invariant of the IR.
    #[error("invalid forest: {0}")]
    Invalid(String),
}

impl TreeError {
    pub fn parse(format: &'static str, message: impl Into<String>) -> Self {
        TreeError::Parse {
            format,
            message: message.into(),
        }
    }

    pub fn unsupported(format: &'static str, message: impl Into<String>) -> Self {
        TreeError::Unsupported {
            format,
            message: message.into(),
        }
    }
}
