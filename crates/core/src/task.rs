//! What a model predicts, as its backend declares it: a classifier (its class labels, and which
//! outputs hold each row's label and its class probabilities) or a regressor (which output holds
//! the value). The fronts read this — the friendly routes' answers, the v2 metadata's class
//! labels, top-k classification — instead of guessing from output names, so a backend may name
//! its outputs as its artifact does.

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

/// What a model predicts, and which of its outputs says it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Task {
    /// One class per row, out of known classes.
    Classifier(Classifier),
    /// One value (or one per target) per row.
    Regressor(Regressor),
    /// Code whose outputs are its answer as they are (a Python predictor): the friendly routes
    /// answer every output it returns, by name.
    Custom,
    /// Anything else, or not known (a graph whose outputs do not say): clients read the outputs
    /// by name.
    #[default]
    Other,
}

/// A classifier's classes and the outputs that answer with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    /// Class labels in class-index order.
    pub labels: ClassLabels,
    /// The output holding each row's predicted label (`[-1]`, integers or BYTES), if any.
    pub label_output: Option<String>,
    /// The output holding each row's class probabilities (`[-1, classes]`), if any.
    pub probabilities_output: Option<String>,
}

/// A regressor's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Regressor {
    /// The output holding each row's value (`[-1]`), or values (`[-1, targets]`).
    pub output: String,
}

impl Task {
    /// The class labels, for classifiers.
    pub fn class_labels(&self) -> Option<&ClassLabels> {
        match self {
            Task::Classifier(c) => Some(&c.labels),
            Task::Regressor(_) | Task::Custom | Task::Other => None,
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

    #[test]
    fn only_classifiers_have_labels() {
        let labels = ClassLabels::Int(vec![0, 1]);
        let c = Task::Classifier(Classifier {
            labels: labels.clone(),
            label_output: Some("label".into()),
            probabilities_output: None,
        });
        assert_eq!(c.class_labels(), Some(&labels));
        let r = Task::Regressor(Regressor {
            output: "value".into(),
        });
        assert_eq!(r.class_labels(), None);
        assert_eq!(Task::default(), Task::Other);
        assert_eq!(Task::Other.class_labels(), None);
    }
}
