//! LightGBM text models (`Booster.save_model`, `model_to_string`).
use crate::{Forest, TreeError};

#[allow(clippy::should_implement_trait)]
pub fn from_str(_text: &str) -> Result<Forest, TreeError> {
    Err(TreeError::unsupported("lightgbm", "not implemented yet"))
}
