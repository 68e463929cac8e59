//! The fast batch predictor.
use super::Predictions;
use crate::Forest;

/// A forest compiled for fast prediction.
pub struct CompiledForest {
    forest: Forest,
}

impl CompiledForest {
    pub fn new(forest: Forest) -> Self {
        CompiledForest { forest }
    }

    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    pub fn predict(&self, rows: &[f32]) -> Predictions {
        super::reference::predict_reference(&self.forest, rows)
    }
}
