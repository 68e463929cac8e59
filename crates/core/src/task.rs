//! What a model predicts: its class labels, in one type that every backend and front uses.

use std::borrow::Cow;

/// Class labels in class-index order (the columns of the probabilities), as the artifact
/// records them or `model.toml` names them. The one label type of every backend and front.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLabels {
    /// Integer classes (the boosters, scikit-learn with integer targets, ONNX
    /// `classlabels_int64s`).
    Int(Vec<i64>),
    /// Named classes.
    Str(Vec<String>),
}

impl ClassLabels {
    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Int(v) => v.len(),
            ClassLabels::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label of class `i` as text (`None` past the last class).
    pub fn name(&self, i: usize) -> Option<Cow<'_, str>> {
        match self {
            ClassLabels::Int(v) => v.get(i).map(|l| Cow::Owned(l.to_string())),
            ClassLabels::Str(v) => v.get(i).map(|l| Cow::Borrowed(l.as_str())),
        }
    }

    /// Every label as text, in class order.
    pub fn as_strings(&self) -> Vec<String> {
        match self {
            ClassLabels::Int(v) => v.iter().map(i64::to_string).collect(),
            ClassLabels::Str(v) => v.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_text_in_class_order() {
        let ints = ClassLabels::Int(vec![3, -1]);
        assert_eq!(ints.len(), 2);
        assert!(!ints.is_empty());
        assert_eq!(ints.name(0).as_deref(), Some("3"));
        assert_eq!(ints.name(1).as_deref(), Some("-1"));
        assert_eq!(ints.name(2), None);
        assert_eq!(ints.as_strings(), ["3", "-1"]);
        let names = ClassLabels::Str(vec!["setosa".into()]);
        assert_eq!(names.name(0).as_deref(), Some("setosa"));
        assert_eq!(names.as_strings(), ["setosa"]);
        assert!(ClassLabels::Str(Vec::new()).is_empty());
    }
}
