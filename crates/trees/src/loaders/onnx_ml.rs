//! ONNX-ML `TreeEnsembleClassifier` / `TreeEnsembleRegressor` graphs.
use crate::{Forest, TreeError};

pub fn from_bytes(_bytes: &[u8]) -> Result<Forest, TreeError> {
    Err(TreeError::unsupported("onnx", "not implemented yet"))
}
