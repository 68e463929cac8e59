//! The forest IR: every loader produces a [`Forest`], every predictor consumes one.
//!
//! Semantics of one split node, for an input value `x` (an `f32` feature value):
//!
//! 1. Missing values: according to the node's [`Missing`] mode, `x` may be replaced by `0.0`
//!    ([`Missing::AsZero`]) or sent to the default child ([`Missing::Default`],
//!    [`Missing::ZeroOrNan`]); the default child is `left` when `default_left` is set.
//! 2. Otherwise the comparison [`Cmp`] is evaluated between `x` and the node's threshold (or its
//!    category set); **true goes left**, false goes right.
//!
//! Thresholds are kept as `f64`, exactly as the source file wrote them; inputs are `f32`, and each
//! comparison is made between the input widened to `f64` and the threshold. The fast predictor
//! rounds thresholds to `f32` in the direction that keeps every comparison identical.

/// How a comparison between the feature value `x` and the node's threshold `t` is made.
/// The branch taken when the comparison is true is always `left`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cmp {
    /// `x < t` (XGBoost numerical splits, ONNX `BRANCH_LT`).
    Lt,
    /// `x <= t` (LightGBM, scikit-learn, ONNX `BRANCH_LEQ`).
    #[default]
    Le,
    /// `x > t` (ONNX `BRANCH_GT`).
    Gt,
    /// `x >= t` (ONNX `BRANCH_GTE`).
    Ge,
    /// `x == t` (ONNX `BRANCH_EQ`).
    Eq,
    /// `x != t` (ONNX `BRANCH_NEQ`).
    Ne,
    /// `x` is a category in the node's category set (the index into [`Tree::cat_sets`]).
    /// A value is truncated toward zero; negative values and values past the set's range are
    /// not in the set. Whether a value in `(-1, 0)` counts as negative (the default, XGBoost)
    /// or truncates to category 0 (LightGBM) is set per tree by [`Tree::cat_truncate_first`].
    InSet(u32),
}

/// What a split does with missing values (NaN) and, for LightGBM, zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// NaN goes to the default child; every other value is compared (XGBoost, LightGBM
    /// `missing_type=NaN`, ONNX).
    Default,
    /// NaN is replaced by 0.0, then compared like any value (LightGBM `missing_type=None`).
    AsZero,
    /// NaN and values in LightGBM's zero band `[-ZERO_THRESHOLD, ZERO_THRESHOLD]` go to the
    /// default child (LightGBM `missing_type=Zero`).
    ZeroOrNan,
}

/// LightGBM's `kZeroThreshold`: values in `[-ZERO_THRESHOLD, ZERO_THRESHOLD]` count as zero
/// (both ends included, as in LightGBM's `Tree::IsZero`). The C++ constant is the `float`
/// literal `1e-35f` stored in a `double`, so it is `1.0000000180025095e-35`, not `1e-35`: an
/// `f32` input can equal it exactly.
pub const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// Which output columns a tree's leaves add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// One value per leaf, added to output column `output` (boosted trees: one tree per class).
    Scalar { output: u32 },
    /// `n_outputs` values per leaf, added to every output column (random forests, ONNX leaves
    /// that carry weights for several classes).
    Vector,
}

/// One decision tree, as a struct of arrays indexed by node id. Node 0 is the root.
///
/// For a leaf, `is_leaf[i]` is set and the split fields are ignored. Leaf values live in
/// `values`: one per node for [`LeafKind::Scalar`], `n_outputs` per node (row-major) for
/// [`LeafKind::Vector`]; entries of split nodes are zero.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tree {
    pub feature: Vec<u32>,
    pub threshold: Vec<f64>,
    pub cmp: Vec<Cmp>,
    pub missing: Vec<Missing>,
    pub default_left: Vec<bool>,
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    pub is_leaf: Vec<bool>,
    pub values: Vec<f64>,
    /// Category sets referenced by [`Cmp::InSet`]: sorted, deduplicated category values.
    pub cat_sets: Vec<Vec<u32>>,
    /// For [`Cmp::InSet`] splits: truncate the value toward zero *before* the sign test, so
    /// that a value in `(-1, 0)` is category 0 (LightGBM's `static_cast<int>`). When unset,
    /// every value below zero is in no set.
    pub cat_truncate_first: bool,
    pub leaf_kind: LeafKind,
}

impl Default for LeafKind {
    fn default() -> Self {
        LeafKind::Scalar { output: 0 }
    }
}

impl Tree {
    /// Number of nodes (splits and leaves).
    pub fn len(&self) -> usize {
        self.is_leaf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.is_leaf.is_empty()
    }

    /// Appends a split node and returns its id. Children are set later with [`Tree::set_children`]
    /// or given now.
    #[allow(clippy::too_many_arguments)]
    pub fn push_split(
        &mut self,
        feature: u32,
        cmp: Cmp,
        threshold: f64,
        missing: Missing,
        default_left: bool,
        left: u32,
        right: u32,
        width: usize,
    ) -> u32 {
        let id = self.len() as u32;
        self.feature.push(feature);
        self.threshold.push(threshold);
        self.cmp.push(cmp);
        self.missing.push(missing);
        self.default_left.push(default_left);
        self.left.push(left);
        self.right.push(right);
        self.is_leaf.push(false);
        self.values.extend(std::iter::repeat_n(0.0, width));
        id
    }

    /// Appends a leaf carrying `values` (one value for scalar trees, `n_outputs` for vector
    /// trees) and returns its id.
    pub fn push_leaf(&mut self, values: &[f64]) -> u32 {
        let id = self.len() as u32;
        self.feature.push(0);
        self.threshold.push(0.0);
        self.cmp.push(Cmp::Le);
        self.missing.push(Missing::Default);
        self.default_left.push(false);
        self.left.push(0);
        self.right.push(0);
        self.is_leaf.push(true);
        self.values.extend_from_slice(values);
        id
    }

    pub fn set_children(&mut self, node: u32, left: u32, right: u32) {
        self.left[node as usize] = left;
        self.right[node as usize] = right;
    }

    /// Depth of the deepest leaf (a single leaf has depth 0).
    pub fn depth(&self) -> usize {
        let mut max = 0;
        let mut stack = vec![(0u32, 0usize)];
        while let Some((n, d)) = stack.pop() {
            let i = n as usize;
            if i >= self.len() {
                continue;
            }
            if self.is_leaf[i] {
                max = max.max(d);
            } else {
                stack.push((self.left[i], d + 1));
                stack.push((self.right[i], d + 1));
            }
        }
        max
    }
}

/// How per-tree outputs combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Sum of leaves plus base score (boosting).
    Sum,
    /// Mean of leaves over the trees plus base score (random forests, LightGBM `average_output`).
    Average,
    /// Smallest leaf value over the trees plus base score (ONNX regressor `MIN`).
    Min,
    /// Largest leaf value over the trees plus base score (ONNX regressor `MAX`).
    Max,
}

/// Precision of the running sum over trees. XGBoost and ONNX Runtime sum in `f32`, in tree order;
/// LightGBM and scikit-learn in `f64`. Matching the library's precision and order is what makes
/// results agree to the last bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulate {
    F32,
    F64,
}

/// The function applied to the aggregated raw scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostTransform {
    /// Raw values as they are.
    Identity,
    /// `1 / (1 + exp(-x))` per column.
    Logistic,
    /// Softmax over the output columns.
    Softmax,
    /// ONNX `SOFTMAX_ZERO`: softmax where zero scores stay zero.
    SoftmaxZero,
    /// ONNX `PROBIT`: the inverse of the standard normal CDF, `sqrt(2) * erfinv(2x - 1)`.
    Probit,
    /// `exp(x)` (XGBoost `count:poisson`, `reg:gamma`, `reg:tweedie`; LightGBM `poisson` ...).
    Exp,
}

/// How the model's answer is read from the transformed scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// One value per output column.
    Regression,
    /// Classification. `n_classes` probabilities per row are produced from the transformed
    /// scores as described by `binary`.
    Classification {
        n_classes: usize,
        binary: BinaryScores,
    },
}

/// How a classifier turns its output columns into `n_classes` probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryScores {
    /// There is one column per class already (multiclass, or ONNX two-column binary).
    PerClass,
    /// One column `p` holds the positive class: probabilities are `[1 - p, p]`
    /// (XGBoost `binary:logistic`, LightGBM `binary`).
    OneMinus,
    /// ONNX Runtime's binary rule for a single score `s` (see the ONNX-ML loader for when it
    /// applies): the scores are `[-s, s]`, then the post-transform.
    NegatePositive,
}

/// Class labels, when the source file records them: the type every crate uses, from
/// `ferroserve-core`.
pub use ferroserve_core::ClassLabels;

/// Which library and format a forest was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    XgboostJson,
    XgboostUbjson,
    LightgbmText,
    OnnxMl,
}

impl SourceFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::XgboostJson => "xgboost-json",
            SourceFormat::XgboostUbjson => "xgboost-ubjson",
            SourceFormat::LightgbmText => "lightgbm-text",
            SourceFormat::OnnxMl => "onnx-ml",
        }
    }
}

/// A whole tree ensemble and the facts needed to turn leaf sums into answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    /// Number of input features the model reads (the input row width).
    pub n_features: usize,
    /// Feature names, when the source file records them (length `n_features`).
    pub feature_names: Option<Vec<String>>,
    /// Features declared categorical by the source file (indices).
    pub categorical_features: Vec<u32>,
    /// Number of raw score columns (1 for regression and binary models, `n_classes` for
    /// multiclass boosting).
    pub n_outputs: usize,
    /// Added to each output column after aggregation, before the transform (length `n_outputs`).
    pub base_score: Vec<f64>,
    pub aggregate: Aggregate,
    pub accumulate: Accumulate,
    pub post_transform: PostTransform,
    pub task: Task,
    pub class_labels: Option<ClassLabels>,
    pub trees: Vec<Tree>,
    /// For XGBoost `multi:softmax`: the library answers the class index, not probabilities.
    pub predicts_label_only: bool,
    pub source: SourceFormat,
}

impl Forest {
    /// Number of classes for classifiers, `None` for regressors.
    pub fn n_classes(&self) -> Option<usize> {
        match self.task {
            Task::Classification { n_classes, .. } => Some(n_classes),
            Task::Regression => None,
        }
    }

    /// How many trees add to each output column (the divisor of [`Aggregate::Average`]):
    /// vector trees add to every column, scalar trees to theirs.
    pub fn trees_per_output(&self) -> Vec<usize> {
        let mut n = vec![0usize; self.n_outputs];
        for t in &self.trees {
            match t.leaf_kind {
                LeafKind::Scalar { output } => {
                    if let Some(c) = n.get_mut(output as usize) {
                        *c += 1;
                    }
                }
                LeafKind::Vector => n.iter_mut().for_each(|c| *c += 1),
            }
        }
        n
    }

    /// Width of the transformed score row: `n_classes` for classifiers, `n_outputs` otherwise.
    pub fn n_scores(&self) -> usize {
        self.n_classes().unwrap_or(self.n_outputs)
    }

    /// Values per leaf in `tree`.
    pub fn leaf_width(&self, tree: &Tree) -> usize {
        match tree.leaf_kind {
            LeafKind::Scalar { .. } => 1,
            LeafKind::Vector => self.n_outputs,
        }
    }

    /// Checks the structural invariants every predictor relies on, so that a loader bug or a
    /// corrupt file becomes a load error rather than a panic or a wrong answer.
    pub fn validate(&self) -> Result<(), crate::TreeError> {
        use crate::TreeError::Invalid;
        if self.n_outputs == 0 {
            return Err(Invalid("model has no outputs".into()));
        }
        if self.base_score.len() != self.n_outputs {
            return Err(Invalid(format!(
                "base_score has {} values for {} outputs",
                self.base_score.len(),
                self.n_outputs
            )));
        }
        if let Some(names) = &self.feature_names {
            if names.len() != self.n_features {
                return Err(Invalid(format!(
                    "{} feature names for {} features",
                    names.len(),
                    self.n_features
                )));
            }
        }
        if let Task::Classification { n_classes, binary } = self.task {
            if n_classes < 2 {
                return Err(Invalid(format!("classifier with {n_classes} classes")));
            }
            let expected = match binary {
                BinaryScores::PerClass => n_classes,
                BinaryScores::OneMinus | BinaryScores::NegatePositive => 1,
            };
            if self.n_outputs != expected {
                return Err(Invalid(format!(
                    "classifier with {n_classes} classes has {} score columns, expected {expected}",
                    self.n_outputs
                )));
            }
            if let Some(labels) = &self.class_labels {
                if labels.len() != n_classes {
                    return Err(Invalid(format!(
                        "{} class labels for {n_classes} classes",
                        labels.len()
                    )));
                }
            }
        }
        if self.trees.is_empty() {
            return Err(Invalid("model has no trees".into()));
        }
        for (t, tree) in self.trees.iter().enumerate() {
            let n = tree.len();
            let width = self.leaf_width(tree);
            let lens = [
                tree.feature.len(),
                tree.threshold.len(),
                tree.cmp.len(),
                tree.missing.len(),
                tree.default_left.len(),
                tree.left.len(),
                tree.right.len(),
            ];
            if n == 0 || lens.iter().any(|&l| l != n) || tree.values.len() != n * width {
                return Err(Invalid(format!("tree {t}: inconsistent node arrays")));
            }
            if let LeafKind::Scalar { output } = tree.leaf_kind {
                if output as usize >= self.n_outputs {
                    return Err(Invalid(format!(
                        "tree {t} adds to output {output} of {}",
                        self.n_outputs
                    )));
                }
            }
            // Every node reachable from the root exactly once, children after parents: no cycles.
            let mut seen = vec![false; n];
            let mut stack = vec![0u32];
            while let Some(i) = stack.pop() {
                let i = i as usize;
                if i >= n || seen[i] {
                    return Err(Invalid(format!(
                        "tree {t}: node {i} out of range or shared"
                    )));
                }
                seen[i] = true;
                if tree.is_leaf[i] {
                    continue;
                }
                if tree.feature[i] as usize >= self.n_features {
                    return Err(Invalid(format!(
                        "tree {t} node {i} reads feature {} of {}",
                        tree.feature[i], self.n_features
                    )));
                }
                if let Cmp::InSet(s) = tree.cmp[i] {
                    if s as usize >= tree.cat_sets.len() {
                        return Err(Invalid(format!("tree {t} node {i}: missing category set")));
                    }
                }
                stack.push(tree.left[i]);
                stack.push(tree.right[i]);
            }
        }
        Ok(())
    }
}
