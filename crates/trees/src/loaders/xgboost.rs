//! XGBoost JSON and UBJSON models (`Booster.save_model`, 2.x and 3.x).
use crate::{Forest, TreeError};

pub fn from_json_bytes(_bytes: &[u8]) -> Result<Forest, TreeError> {
    Err(TreeError::unsupported("xgboost", "not implemented yet"))
}

pub fn from_ubjson_bytes(_bytes: &[u8]) -> Result<Forest, TreeError> {
    Err(TreeError::unsupported("xgboost", "not implemented yet"))
}
