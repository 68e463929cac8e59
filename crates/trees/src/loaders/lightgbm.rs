//! LightGBM text models, as written by `Booster.save_model` / `model_to_string` (format `v4`,
//! and the `v2`/`v3` files of older releases as far as they share it).
//!
//! The file is a header of `key=value` lines, then one block per tree (`Tree=<i>` followed by
//! space-separated arrays), then `end of trees` and sections this engine does not need (feature
//! importances, parameters, pandas categories). Trees are stored per iteration, class-major:
//! tree `i` adds to output column `i % num_tree_per_iteration`.
//!
//! Each split is mapped to the IR so that predictions match LightGBM's own `Tree::Decision`:
//!
//! - numerical splits go left on `x <= threshold`; the missing type (bits 2–3 of
//!   `decision_type`) decides what happens first: `None` compares NaN as `0.0`
//!   ([`Missing::AsZero`]), `Zero` sends NaN and the zero band to the default child
//!   ([`Missing::ZeroOrNan`]), `NaN` sends NaN to the default child ([`Missing::Default`]);
//! - LightGBM's prediction API replaces every input in the zero band `[-kZeroThreshold,
//!   kZeroThreshold]` by `0.0` before walking the trees; a numerical threshold inside that band is
//!   therefore moved to the band's edge on the side `0.0` falls, which gives the same decision for
//!   every input without touching the input;
//! - categorical splits go left when the value, truncated toward zero, is in the node's bitset;
//!   NaN always goes right (whatever the missing type), and so does every value that truncates
//!   to a negative integer. LightGBM truncates *before* the sign test, so an input in `(-1, 0)`
//!   is category 0: the tree is marked with [`Tree::cat_truncate_first`].
//!
//! Leaf values are summed in `f64` ([`Accumulate::F64`]), as LightGBM does; `average_output`
//! (random-forest mode) divides the sum by the number of iterations. Objectives map to
//! post-transforms; anything else (linear trees, unknown objectives, `sigmoid` other than 1,
//! `reg_sqrt`) is rejected with an error naming it. LightGBM boosters do not store class labels:
//! classes are the indices `0..num_class`.

use std::collections::HashMap;
use std::str::FromStr;

use crate::ir::{
    Accumulate, Aggregate, BinaryScores, Cmp, Forest, LeafKind, Missing, PostTransform,
    SourceFormat, Task, Tree,
};
use crate::TreeError;

const FORMAT: &str = "lightgbm";

/// LightGBM's `kZeroThreshold`: the C++ literal `1e-35f` (a float) stored in a double.
const K_ZERO_THRESHOLD: f64 = crate::ir::ZERO_THRESHOLD;

fn parse_err(message: impl Into<String>) -> TreeError {
    TreeError::parse(FORMAT, message)
}

fn unsupported(message: impl Into<String>) -> TreeError {
    TreeError::unsupported(FORMAT, message)
}

/// One run of `key=value` lines: the header or one tree. A bare `key` line (as
/// `average_output`) has the value `""`.
struct Block<'a> {
    /// How errors name the block: `header` or `tree 3`.
    name: String,
    entries: HashMap<&'a str, &'a str>,
}

impl<'a> Block<'a> {
    fn new(name: String) -> Self {
        Block {
            name,
            entries: HashMap::new(),
        }
    }

    fn insert(&mut self, line: &'a str) -> Result<(), TreeError> {
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line.trim(), ""),
        };
        if self.entries.insert(key, value).is_some() {
            return Err(parse_err(format!(
                "{}: key `{key}` appears twice",
                self.name
            )));
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.entries.get(key).copied()
    }

    fn require(&self, key: &str) -> Result<&'a str, TreeError> {
        self.get(key)
            .ok_or_else(|| parse_err(format!("{}: missing key `{key}`", self.name)))
    }

    /// A single number.
    fn scalar<T: FromStr>(&self, key: &str) -> Result<T, TreeError> {
        let v = self.require(key)?;
        v.parse().map_err(|_| {
            parse_err(format!(
                "{}: key `{key}`: `{}` is not a valid number",
                self.name,
                shorten(v)
            ))
        })
    }

    fn scalar_opt<T: FromStr>(&self, key: &str) -> Result<Option<T>, TreeError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.scalar(key).map(Some),
        }
    }

    /// A space-separated array that must hold exactly `len` numbers.
    fn array<T: FromStr>(&self, key: &str, len: usize) -> Result<Vec<T>, TreeError> {
        let v = self.require(key)?;
        let out = v
            .split_ascii_whitespace()
            .map(|s| {
                s.parse().map_err(|_| {
                    parse_err(format!(
                        "{}: key `{key}`: `{}` is not a valid number",
                        self.name,
                        shorten(s)
                    ))
                })
            })
            .collect::<Result<Vec<T>, _>>()?;
        if out.len() != len {
            return Err(parse_err(format!(
                "{}: key `{key}` has {} values, expected {len}",
                self.name,
                out.len()
            )));
        }
        Ok(out)
    }
}

/// At most 40 characters of `s`, for error messages.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(40).collect::<String>())
    }
}

/// What the objective line says about turning raw scores into answers.
struct Objective {
    task: Task,
    post_transform: PostTransform,
}

/// Reads the `objective` header (`binary sigmoid:1`, `multiclass num_class:3`, `poisson`, ...).
/// `None` (no objective line: a custom objective) answers raw scores.
fn objective(line: Option<&str>, num_class: usize) -> Result<Objective, TreeError> {
    let Some(line) = line else {
        return Ok(Objective {
            task: Task::Regression,
            post_transform: PostTransform::Identity,
        });
    };
    let mut tokens = line.split_ascii_whitespace();
    let name = tokens
        .next()
        .ok_or_else(|| parse_err("header: key `objective` is empty"))?;
    let mut params: HashMap<&str, &str> = HashMap::new();
    let mut flags: Vec<&str> = Vec::new();
    for t in tokens {
        match t.split_once(':') {
            Some((k, v)) => {
                params.insert(k, v);
            }
            None => flags.push(t),
        }
    }
    let sigmoid = |what: &str| -> Result<(), TreeError> {
        match params.get("sigmoid") {
            None => Ok(()),
            Some(v) => match v.parse::<f64>() {
                Ok(1.0) => Ok(()),
                Ok(_) => Err(unsupported(format!(
                    "objective `{what}` with sigmoid:{v} (only sigmoid:1 is supported)"
                ))),
                Err(_) => Err(parse_err(format!(
                    "header: objective `{what}`: sigmoid:{v} is not a number"
                ))),
            },
        }
    };
    let class_count = |what: &str| -> Result<(), TreeError> {
        match params.get("num_class") {
            None => Ok(()),
            Some(v) if v.parse::<usize>().ok() == Some(num_class) => Ok(()),
            Some(v) => Err(parse_err(format!(
                "header: objective `{what}` says num_class:{v}, header says num_class={num_class}"
            ))),
        }
    };
    let single_output = |what: &str| -> Result<(), TreeError> {
        if num_class != 1 {
            return Err(parse_err(format!(
                "header: objective `{what}` with num_class={num_class}, expected 1"
            )));
        }
        Ok(())
    };
    let regression = |what: &str, post_transform| -> Result<Objective, TreeError> {
        if flags.contains(&"sqrt") {
            return Err(unsupported(format!(
                "objective `{what}` with reg_sqrt (predictions are squared back)"
            )));
        }
        single_output(what)?;
        Ok(Objective {
            task: Task::Regression,
            post_transform,
        })
    };
    match name {
        "binary" => {
            sigmoid(name)?;
            single_output(name)?;
            Ok(Objective {
                task: Task::Classification {
                    n_classes: 2,
                    binary: BinaryScores::OneMinus,
                },
                post_transform: PostTransform::Logistic,
            })
        }
        "multiclass" | "multiclassova" => {
            class_count(name)?;
            if num_class < 2 {
                return Err(parse_err(format!(
                    "header: objective `{name}` with num_class={num_class}"
                )));
            }
            let post_transform = if name == "multiclass" {
                PostTransform::Softmax
            } else {
                // One binary classifier per class; the probabilities are not normalised.
                sigmoid(name)?;
                PostTransform::Logistic
            };
            Ok(Objective {
                task: Task::Classification {
                    n_classes: num_class,
                    binary: BinaryScores::PerClass,
                },
                post_transform,
            })
        }
        "cross_entropy" | "xentropy" => regression(name, PostTransform::Logistic),
        "regression"
        | "regression_l2"
        | "l2"
        | "mean_squared_error"
        | "mse"
        | "l2_root"
        | "root_mean_squared_error"
        | "rmse"
        | "regression_l1"
        | "l1"
        | "mean_absolute_error"
        | "mae"
        | "huber"
        | "fair"
        | "quantile"
        | "mape"
        | "mean_absolute_percentage_error" => regression(name, PostTransform::Identity),
        "poisson" | "gamma" | "tweedie" => regression(name, PostTransform::Exp),
        "lambdarank" | "rank_xendcg" | "xendcg" | "xe_ndcg" | "xe_ndcg_mart" | "xendcg_mart" => {
            regression(name, PostTransform::Identity)
        }
        "custom" | "none" | "null" | "na" => {
            // Trained with a custom objective: LightGBM answers the raw scores.
            Ok(Objective {
                task: Task::Regression,
                post_transform: PostTransform::Identity,
            })
        }
        other => Err(unsupported(format!("objective `{}`", shorten(other)))),
    }
}

/// The category set of one bitset: bit `b` of word `w` is category `32 * w + b`.
fn bitset_categories(words: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for (w, &word) in words.iter().enumerate() {
        for b in 0..32 {
            if word & (1 << b) != 0 {
                out.push(32 * w as u32 + b);
            }
        }
    }
    out
}

/// Moves a numerical threshold out of the zero band. LightGBM's prediction API turns every
/// input in `[-kZeroThreshold, kZeroThreshold]` into `0.0`; the returned threshold makes
/// `x <= t'` agree with LightGBM's `zeroed(x) <= t` for every `x`.
fn threshold_outside_zero_band(t: f64) -> f64 {
    if (-K_ZERO_THRESHOLD..K_ZERO_THRESHOLD).contains(&t) {
        if t >= 0.0 {
            // 0.0 <= t: the whole band goes left.
            K_ZERO_THRESHOLD
        } else {
            // 0.0 > t: the whole band goes right; below the band, everything still goes left.
            (-K_ZERO_THRESHOLD).next_down()
        }
    } else {
        t
    }
}

/// Reads one `Tree=` block into an IR tree adding to output `output`.
fn read_tree(
    block: &Block<'_>,
    output: u32,
    n_features: usize,
    categorical: &mut Vec<u32>,
) -> Result<Tree, TreeError> {
    let name = &block.name;
    let mut tree = Tree {
        leaf_kind: LeafKind::Scalar { output },
        ..Tree::default()
    };
    if let Some(v) = block.get("is_linear") {
        match v {
            "0" => {}
            "1" => {
                return Err(unsupported(format!(
                    "{name}: linear tree (is_linear=1, trained with linear_tree)"
                )))
            }
            other => {
                return Err(parse_err(format!(
                    "{name}: key `is_linear`: `{}` is not 0 or 1",
                    shorten(other)
                )))
            }
        }
    }
    let num_leaves: i64 = block.scalar("num_leaves")?;
    if num_leaves < 1 {
        return Err(parse_err(format!(
            "{name}: key `num_leaves` is {num_leaves}, expected at least 1"
        )));
    }
    let num_leaves = num_leaves as usize;
    let leaf_value: Vec<f64> = block.array("leaf_value", num_leaves)?;
    if num_leaves == 1 {
        tree.push_leaf(&leaf_value);
        return Ok(tree);
    }
    let n_split = num_leaves - 1;
    let split_feature: Vec<i64> = block.array("split_feature", n_split)?;
    let threshold: Vec<f64> = block.array("threshold", n_split)?;
    let decision_type: Vec<i64> = block.array("decision_type", n_split)?;
    let left_child: Vec<i64> = block.array("left_child", n_split)?;
    let right_child: Vec<i64> = block.array("right_child", n_split)?;
    let num_cat: usize = block.scalar_opt("num_cat")?.unwrap_or(0);

    // Category sets, one per `cat_boundaries` interval.
    if num_cat > 0 {
        let boundaries: Vec<i64> = block.array("cat_boundaries", num_cat + 1)?;
        let words = block
            .require("cat_threshold")?
            .split_ascii_whitespace()
            .count();
        let cat_threshold: Vec<u32> = block.array("cat_threshold", words)?;
        if boundaries[0] != 0
            || boundaries.windows(2).any(|w| w[0] > w[1])
            || boundaries[num_cat] != cat_threshold.len() as i64
        {
            return Err(parse_err(format!(
                "{name}: key `cat_boundaries` does not split the {} words of `cat_threshold` \
                 into {num_cat} increasing runs",
                cat_threshold.len()
            )));
        }
        for w in boundaries.windows(2) {
            let set = bitset_categories(&cat_threshold[w[0] as usize..w[1] as usize]);
            tree.cat_sets.push(set);
        }
    }

    // IR ids: split `i` of the file is node `i`, leaf `j` is node `n_split + j`.
    let child = |key: &str, node: usize, c: i64| -> Result<u32, TreeError> {
        if c >= 0 {
            if (c as usize) < n_split && c != 0 {
                return Ok(c as u32);
            }
        } else {
            let leaf = !c;
            if (leaf as usize) < num_leaves {
                return Ok((n_split + leaf as usize) as u32);
            }
        }
        Err(parse_err(format!(
            "{name}: key `{key}`: node {node} has child {c}, out of range for {n_split} splits \
             and {num_leaves} leaves"
        )))
    };
    for i in 0..n_split {
        let f = split_feature[i];
        if f < 0 || f as usize >= n_features {
            return Err(parse_err(format!(
                "{name}: key `split_feature`: node {i} reads feature {f}, the model has \
                 {n_features} (max_feature_idx={})",
                n_features as i64 - 1
            )));
        }
        let dt = decision_type[i];
        if !(0..16).contains(&dt) {
            return Err(unsupported(format!(
                "{name}: key `decision_type`: node {i} has {dt}, which sets unknown bits"
            )));
        }
        let is_categorical = dt & 1 != 0;
        let default_left = dt & 2 != 0;
        let missing = match (dt >> 2) & 3 {
            0 => Missing::AsZero,
            1 => Missing::ZeroOrNan,
            2 => Missing::Default,
            _ => {
                return Err(parse_err(format!(
                    "{name}: key `decision_type`: node {i} has missing type 3 (decision_type={dt})"
                )))
            }
        };
        let left = child("left_child", i, left_child[i])?;
        let right = child("right_child", i, right_child[i])?;
        let t = threshold[i];
        if is_categorical {
            let k = t as i64;
            if !(t >= 0.0 && t == k as f64 && (k as usize) < num_cat) {
                return Err(parse_err(format!(
                    "{name}: key `threshold`: categorical node {i} names category set {t}, the \
                     tree has {num_cat} (num_cat)"
                )));
            }
            if !categorical.contains(&(f as u32)) {
                categorical.push(f as u32);
            }
            // NaN goes right whatever the missing type; so does any value that truncates to a
            // negative integer (LightGBM `CategoricalDecision`).
            tree.push_split(
                f as u32,
                Cmp::InSet(k as u32),
                0.0,
                Missing::Default,
                false,
                left,
                right,
                1,
            );
        } else {
            tree.push_split(
                f as u32,
                Cmp::Le,
                threshold_outside_zero_band(t),
                missing,
                default_left,
                left,
                right,
                1,
            );
        }
    }
    for v in &leaf_value {
        tree.push_leaf(&[*v]);
    }
    if num_cat > 0 {
        tree.cat_truncate_first = true;
    }
    // Every split and leaf reached from the root exactly once.
    let mut seen = vec![false; tree.len()];
    let mut stack = vec![0u32];
    while let Some(n) = stack.pop() {
        let n = n as usize;
        if seen[n] {
            return Err(parse_err(format!(
                "{name}: keys `left_child`/`right_child`: node {n} is reached twice"
            )));
        }
        seen[n] = true;
        if !tree.is_leaf[n] {
            stack.push(tree.left[n]);
            stack.push(tree.right[n]);
        }
    }
    if let Some(n) = seen.iter().position(|s| !s) {
        let what = if n < n_split {
            format!("split {n}")
        } else {
            format!("leaf {}", n - n_split)
        };
        return Err(parse_err(format!(
            "{name}: keys `left_child`/`right_child`: {what} is not reachable from the root"
        )));
    }
    Ok(tree)
}

/// Reads a LightGBM text model.
#[allow(clippy::should_implement_trait)]
pub fn from_str(text: &str) -> Result<Forest, TreeError> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    match lines.by_ref().find(|l| !l.trim().is_empty()) {
        Some(l) if l.trim() == "tree" => {}
        Some(l) => {
            return Err(parse_err(format!(
                "first line is `{}`, expected `tree`",
                shorten(l)
            )))
        }
        None => return Err(parse_err("empty file")),
    }

    // Split into the header and the tree blocks, up to `end of trees`.
    let mut header = Block::new("header".to_string());
    let mut trees: Vec<Block<'_>> = Vec::new();
    let mut ended = false;
    for line in lines.by_ref() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        if l == "end of trees" {
            ended = true;
            break;
        }
        if let Some(idx) = l.strip_prefix("Tree=") {
            if idx.trim().parse::<usize>().ok() != Some(trees.len()) {
                return Err(parse_err(format!(
                    "block `Tree={}` where tree {} was expected",
                    shorten(idx),
                    trees.len()
                )));
            }
            trees.push(Block::new(format!("tree {}", trees.len())));
            continue;
        }
        match trees.last_mut() {
            Some(block) => block.insert(l)?,
            None => header.insert(l)?,
        }
    }
    if !ended {
        return Err(parse_err(format!(
            "truncated file: no `end of trees` line after {} trees",
            trees.len()
        )));
    }

    if let Some(v) = header.get("version") {
        match v {
            "v2" | "v3" | "v4" => {}
            other => return Err(unsupported(format!("format version `{}`", shorten(other)))),
        }
    }
    let num_class: usize = header.scalar("num_class")?;
    if num_class == 0 {
        return Err(parse_err("header: key `num_class` is 0"));
    }
    let per_iteration: usize = header
        .scalar_opt("num_tree_per_iteration")?
        .unwrap_or(num_class);
    if per_iteration == 0 {
        return Err(parse_err("header: key `num_tree_per_iteration` is 0"));
    }
    let max_feature_idx: i64 = header.scalar("max_feature_idx")?;
    if max_feature_idx < 0 || max_feature_idx >= u32::MAX as i64 / 4 {
        return Err(parse_err(format!(
            "header: key `max_feature_idx` is {max_feature_idx}"
        )));
    }
    let n_features = max_feature_idx as usize + 1;
    let feature_names = match header.get("feature_names") {
        None => None,
        Some(v) => {
            let names: Vec<String> = v.split_ascii_whitespace().map(str::to_string).collect();
            if names.len() != n_features {
                return Err(parse_err(format!(
                    "header: key `feature_names` has {} names for {n_features} features \
                     (max_feature_idx={max_feature_idx})",
                    names.len()
                )));
            }
            Some(names)
        }
    };
    // Features LightGBM binned as categorical: their `feature_infos` entry is a list of
    // categories (`0:3:1`) rather than a range (`[0:7.5]`) or `none`.
    let mut categorical: Vec<u32> = Vec::new();
    if let Some(v) = header.get("feature_infos") {
        let infos: Vec<&str> = v.split_ascii_whitespace().collect();
        if infos.len() != n_features {
            return Err(parse_err(format!(
                "header: key `feature_infos` has {} entries for {n_features} features",
                infos.len()
            )));
        }
        for (i, info) in infos.iter().enumerate() {
            if !info.starts_with('[') && *info != "none" {
                categorical.push(i as u32);
            }
        }
    }
    let objective = objective(header.get("objective"), num_class)?;
    if let Task::Classification { n_classes, binary } = objective.task {
        let expected = match binary {
            BinaryScores::PerClass => n_classes,
            BinaryScores::OneMinus | BinaryScores::NegatePositive => 1,
        };
        if per_iteration != expected {
            return Err(parse_err(format!(
                "header: key `num_tree_per_iteration` is {per_iteration}, the objective needs \
                 {expected}"
            )));
        }
    }
    let average = header.get("average_output").is_some();

    if trees.is_empty() {
        return Err(parse_err("the model has no trees"));
    }
    if !trees.len().is_multiple_of(per_iteration) {
        return Err(parse_err(format!(
            "{} trees is not a whole number of iterations of {per_iteration} trees \
             (num_tree_per_iteration)",
            trees.len()
        )));
    }
    let trees = trees
        .iter()
        .enumerate()
        .map(|(i, block)| {
            read_tree(
                block,
                (i % per_iteration) as u32,
                n_features,
                &mut categorical,
            )
        })
        .collect::<Result<Vec<Tree>, TreeError>>()?;
    categorical.sort_unstable();
    categorical.dedup();

    Ok(Forest {
        n_features,
        feature_names,
        categorical_features: categorical,
        n_outputs: per_iteration,
        base_score: vec![0.0; per_iteration],
        aggregate: if average {
            Aggregate::Average
        } else {
            Aggregate::Sum
        },
        accumulate: Accumulate::F64,
        post_transform: objective.post_transform,
        task: objective.task,
        class_labels: None,
        trees,
        predicts_label_only: false,
        source: SourceFormat::LightgbmText,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loaders::{load_bytes, ModelFormat};
    use crate::predict_reference;

    /// A binary model over 3 features: tree 0 splits numerically (missing type NaN, default
    /// left) then on a category set {0, 2, 33}; tree 1 is a single leaf.
    fn model() -> String {
        "tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=2
objective=binary sigmoid:1
feature_names=a b c
feature_infos=[0:1] 0:2:33 none
tree_sizes=1 1

Tree=0
num_leaves=3
num_cat=1
split_feature=0 1
split_gain=1 1
threshold=0.5 0
decision_type=10 1
left_child=1 -1
right_child=-3 -2
leaf_value=1.5 -2.25 0.125
leaf_weight=1 1 1
leaf_count=1 1 1
internal_value=0 0
internal_weight=0 0
internal_count=2 2
cat_boundaries=0 2
cat_threshold=5 2
is_linear=0
shrinkage=1


Tree=1
num_leaves=1
num_cat=0
split_feature=
split_gain=
threshold=
decision_type=
left_child=
right_child=
leaf_value=0.25
leaf_weight=
leaf_count=4
internal_value=
internal_weight=
internal_count=
is_linear=0
shrinkage=1


end of trees

feature_importances:
a=1

parameters:
[boosting: gbdt]
end of parameters

pandas_categorical:null
"
        .to_string()
    }

    fn load(text: &str) -> Result<Forest, TreeError> {
        load_bytes(ModelFormat::LightgbmText, text.as_bytes())
    }

    fn err(text: &str) -> String {
        match load(text) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_parse_error(text: &str, needles: &[&str]) {
        let e = load(text).expect_err("expected an error");
        assert!(
            matches!(e, TreeError::Parse { .. }),
            "not a parse error: {e}"
        );
        let msg = e.to_string();
        for n in needles {
            assert!(msg.contains(n), "`{msg}` does not mention `{n}`");
        }
    }

    fn assert_unsupported(text: &str, needles: &[&str]) {
        let e = load(text).expect_err("expected an error");
        assert!(
            matches!(e, TreeError::Unsupported { .. }),
            "not unsupported: {e}"
        );
        let msg = e.to_string();
        for n in needles {
            assert!(msg.contains(n), "`{msg}` does not mention `{n}`");
        }
    }

    #[test]
    fn reads_the_header_and_trees() {
        let f = load(&model()).unwrap();
        assert_eq!(f.n_features, 3);
        assert_eq!(
            f.feature_names.as_deref(),
            Some(&["a".to_string(), "b".into(), "c".into()][..])
        );
        assert_eq!(f.categorical_features, vec![1]);
        assert_eq!(f.trees.len(), 2);
        assert_eq!(f.trees[0].cat_sets, vec![vec![0, 2, 33]]);
        assert_eq!(f.trees[1].len(), 1);
        assert_eq!(f.post_transform, PostTransform::Logistic);
        assert_eq!(f.accumulate, Accumulate::F64);
        assert_eq!(f.aggregate, Aggregate::Sum);
        assert!(f.class_labels.is_none());
    }

    #[test]
    fn predicts_like_lightgbm_decides() {
        let f = load(&model()).unwrap();
        let nan = f32::NAN;
        // (a, b) -> leaf of tree 0; tree 1 adds 0.25.
        let cases: &[(f32, f32, f64)] = &[
            (0.2, 0.0, 1.5),    // a <= 0.5, b = 0 in set -> leaf 0
            (0.2, 1.0, -2.25),  // b = 1 not in set -> leaf 1
            (0.2, 2.9, 1.5),    // truncated to 2
            (0.2, 33.0, 1.5),   // second bitset word
            (0.2, 34.0, -2.25), // past the set
            (0.2, -0.5, 1.5),   // (-1, 0) truncates to category 0
            (0.2, -1.0, -2.25), // negative: right
            (0.2, nan, -2.25),  // NaN: right, whatever the missing type
            (0.2, 3e9, -2.25),  // huge: right
            (nan, 1.0, -2.25),  // NaN on a missing-type-NaN split: default left
            (0.7, 0.0, 0.125),  // a > 0.5 -> leaf 2
        ];
        for &(a, b, leaf) in cases {
            let p = predict_reference(&f, &[a, b, 0.0]);
            assert_eq!(p.raw[0], leaf + 0.25, "a={a} b={b}");
        }
    }

    #[test]
    fn missing_types_decode() {
        for (dt, missing, default_left) in [
            (0, Missing::AsZero, false),
            (2, Missing::AsZero, true),
            (4, Missing::ZeroOrNan, false),
            (6, Missing::ZeroOrNan, true),
            (8, Missing::Default, false),
            (10, Missing::Default, true),
        ] {
            let text = model().replace("decision_type=10 1", &format!("decision_type={dt} 1"));
            let f = load(&text).unwrap();
            assert_eq!(f.trees[0].missing[0], missing, "decision_type {dt}");
            assert_eq!(
                f.trees[0].default_left[0], default_left,
                "decision_type {dt}"
            );
        }
        assert_parse_error(
            &model().replace("decision_type=10 1", "decision_type=14 1"),
            &["tree 0", "decision_type", "missing type 3"],
        );
        assert_unsupported(
            &model().replace("decision_type=10 1", "decision_type=18 1"),
            &["tree 0", "decision_type", "18"],
        );
    }

    #[test]
    fn zero_band_thresholds_move_to_the_band_edge() {
        let z = K_ZERO_THRESHOLD;
        assert_eq!(threshold_outside_zero_band(0.0), z);
        assert_eq!(threshold_outside_zero_band(-0.0), z);
        assert_eq!(threshold_outside_zero_band(1e-36), z);
        assert_eq!(threshold_outside_zero_band(-z), (-z).next_down());
        assert_eq!(threshold_outside_zero_band(z), z);
        assert_eq!(threshold_outside_zero_band(0.5), 0.5);
        assert_eq!(threshold_outside_zero_band(-1e-30), -1e-30);
    }

    #[test]
    fn truncated_files_are_errors_never_panics() {
        let text = model();
        let end = text.find("end of trees").unwrap();
        assert_parse_error(&text[..end], &["truncated", "end of trees"]);
        // Every prefix either loads or fails cleanly.
        for cut in 0..text.len() {
            if text.is_char_boundary(cut) {
                let _ = load(&text[..cut]);
            }
        }
        assert_parse_error("", &["empty"]);
        assert_parse_error("{\"learner\": 1}", &["first line"]);
    }

    #[test]
    fn linear_trees_are_unsupported() {
        assert_unsupported(
            &model().replacen("is_linear=0", "is_linear=1", 1),
            &["tree 0", "linear tree"],
        );
    }

    #[test]
    fn objectives() {
        let with =
            |o: &str| model().replace("objective=binary sigmoid:1", &format!("objective={o}"));
        assert_unsupported(&with("frobnicate"), &["objective `frobnicate`"]);
        assert_unsupported(&with("binary sigmoid:2"), &["sigmoid:2"]);
        assert_unsupported(&with("regression sqrt"), &["reg_sqrt"]);
        assert_unsupported(&with("cross_entropy_lambda"), &["cross_entropy_lambda"]);
        for (o, t) in [
            ("regression", PostTransform::Identity),
            ("regression_l1", PostTransform::Identity),
            ("huber", PostTransform::Identity),
            ("fair", PostTransform::Identity),
            ("quantile", PostTransform::Identity),
            ("mape", PostTransform::Identity),
            ("poisson", PostTransform::Exp),
            ("gamma", PostTransform::Exp),
            ("tweedie", PostTransform::Exp),
            ("cross_entropy", PostTransform::Logistic),
            ("lambdarank", PostTransform::Identity),
            ("rank_xendcg", PostTransform::Identity),
        ] {
            let f = load(&with(o)).unwrap();
            assert_eq!(f.post_transform, t, "{o}");
            assert_eq!(f.task, Task::Regression, "{o}");
        }
        // No objective line: a custom objective, raw scores.
        let f = load(&model().replace("objective=binary sigmoid:1\n", "")).unwrap();
        assert_eq!(f.post_transform, PostTransform::Identity);
        // A multiclass objective needs num_class trees per iteration.
        assert_parse_error(&with("multiclass num_class:3"), &["num_class"]);
    }

    #[test]
    fn length_mismatches_name_key_and_tree() {
        assert_parse_error(
            &model().replace("threshold=0.5 0", "threshold=0.5"),
            &["tree 0", "`threshold`", "1 values, expected 2"],
        );
        assert_parse_error(
            &model().replace("leaf_value=1.5 -2.25 0.125", "leaf_value=1.5 -2.25"),
            &["tree 0", "`leaf_value`"],
        );
        assert_parse_error(
            &model().replace("leaf_value=0.25", "leaf_value="),
            &["tree 1", "`leaf_value`"],
        );
        assert_parse_error(
            &model().replace("cat_boundaries=0 2", "cat_boundaries=0 3"),
            &["tree 0", "`cat_boundaries`"],
        );
        assert_parse_error(
            &model().replace("feature_names=a b c", "feature_names=a b"),
            &["header", "`feature_names`"],
        );
    }

    #[test]
    fn out_of_range_references_name_key_and_tree() {
        assert_parse_error(
            &model().replace("left_child=1 -1", "left_child=5 -1"),
            &["tree 0", "`left_child`", "child 5"],
        );
        assert_parse_error(
            &model().replace("right_child=-3 -2", "right_child=-4 -2"),
            &["tree 0", "`right_child`", "child -4"],
        );
        // Both children of a split on the same leaf.
        assert_parse_error(
            &model().replace("right_child=-3 -2", "right_child=-3 -1"),
            &["tree 0", "reached twice"],
        );
        assert_parse_error(
            &model().replace("split_feature=0 1", "split_feature=0 3"),
            &["tree 0", "`split_feature`", "feature 3"],
        );
        assert_parse_error(
            &model().replace("threshold=0.5 0", "threshold=0.5 1"),
            &["tree 0", "`threshold`", "category set 1"],
        );
    }

    #[test]
    fn bad_numbers_and_missing_keys() {
        assert_parse_error(
            &model().replace("threshold=0.5 0", "threshold=0.5x 0"),
            &["tree 0", "`threshold`", "0.5x"],
        );
        assert_parse_error(
            &model().replace("num_leaves=3", "num_leaves=three"),
            &["tree 0", "`num_leaves`"],
        );
        assert_parse_error(
            &model().replace("max_feature_idx=2\n", ""),
            &["header", "`max_feature_idx`"],
        );
        assert_parse_error(
            &model().replace("split_feature=0 1\n", ""),
            &["tree 0", "missing key `split_feature`"],
        );
        assert_parse_error(&model().replace("Tree=1", "Tree=7"), &["Tree=7"]);
        assert_parse_error(
            &model().replace("num_class=1", "num_class=-1"),
            &["`num_class`"],
        );
    }

    #[test]
    fn iterations_and_random_forest_mode() {
        let mc = model()
            .replace("num_class=1", "num_class=2")
            .replace("num_tree_per_iteration=1", "num_tree_per_iteration=2")
            .replace(
                "objective=binary sigmoid:1",
                "objective=multiclass num_class:2",
            );
        let f = load(&mc).unwrap();
        assert_eq!(f.n_outputs, 2);
        assert_eq!(f.trees[1].leaf_kind, LeafKind::Scalar { output: 1 });
        let rf = model().replace("feature_names", "average_output\nfeature_names");
        assert_eq!(load(&rf).unwrap().aggregate, Aggregate::Average);
        let mc_rf = mc.replace("feature_names", "average_output\nfeature_names");
        assert_eq!(load(&mc_rf).unwrap().aggregate, Aggregate::Average);
        let three = mc
            .replace("num_class=2", "num_class=3")
            .replace("num_tree_per_iteration=2", "num_tree_per_iteration=3")
            .replace("num_class:2", "num_class:3");
        assert!(err(&three).contains("whole number of iterations"));
    }

    #[test]
    fn detected_by_content_whatever_the_extension() {
        let text = model();
        for name in ["model.txt", "model", "model.lgb", "model.bin"] {
            assert_eq!(
                ModelFormat::detect(std::path::Path::new(name), text.as_bytes()),
                Some(ModelFormat::LightgbmText),
                "{name}"
            );
        }
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(
            ModelFormat::detect(std::path::Path::new("m.txt"), crlf.as_bytes()),
            Some(ModelFormat::LightgbmText)
        );
        assert_eq!(load(&crlf).unwrap(), load(&text).unwrap());
    }
}
