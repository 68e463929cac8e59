//! XGBoost models as `Booster.save_model` writes them (2.x and 3.x), in JSON (`.json`) and in
//! Universal Binary JSON (`.ubj`, decoded by [`ubjson`]): `gbtree` and `dart` boosters with
//! scalar-leaf trees, numerical and categorical splits.
//!
//! What the loader reproduces, checked against XGBoost 3.2's own predictions:
//!
//! - Numerical split: `x < split_condition` goes left; a missing value (NaN) follows
//!   `default_left`. Thresholds and leaves are `f32` in XGBoost and are kept at those values.
//! - Categorical split (`split_type` 1): the listed categories go **right**; every other value
//!   goes left, including categories never seen in training, negative values and values of
//!   2^24 or more (XGBoost's `InvalidCat`). The IR sends "in set" left, so children and the
//!   default direction are swapped.
//! - XGBoost predicts with the right child at `left + 1` and never reads `right_children`; a
//!   file where that does not hold is rejected rather than read two different ways.
//! - The margin starts at the base score and adds each tree's leaf in tree order in `f32`
//!   ([`Accumulate::F32`]). `base_score` is stored in the objective's output space ("[5E-1]" in
//!   3.x, possibly one value per class or target; "5E-1" before 3.1) and turned into a margin
//!   in `f32` with the objective's link: logit for `binary:logistic` and `reg:logistic`
//!   (clamped to `[1e-6, 1 - 1e-6]` as 3.2 does), log for `count:poisson`, `reg:gamma`,
//!   `reg:tweedie`, identity otherwise (including `binary:logitraw`).
//! - `dart`: each tree's leaves are scaled by its `weight_drop` in `f32`, as
//!   `Booster.predict(DMatrix)` does. (`inplace_predict` on a dart model subtracts the base
//!   score from `base + leaf` in `f32` and may differ from that in the last bit.)
//! - All trees are used, as a loaded `Booster` predicts; `best_iteration` (early stopping,
//!   which only the scikit-learn wrapper applies) is ignored.
//! - Models trained on pandas categories (3.1+) record the category names under `cats`; the
//!   engine reads the category *codes* those names were mapped to in training.
//!
//! Rejected with an error naming the construct: `gblinear`, vector-leaf trees
//! (`multi_strategy="multi_output_tree"`), `binary:hinge`, multi-label `binary:logistic`, and any
//! other objective not listed in [`Objective`].

mod ubjson;

use serde_json::{Map, Value};

use crate::ir::{
    Accumulate, Aggregate, BinaryScores, Cmp, LeafKind, Missing, PostTransform, SourceFormat, Task,
    Tree,
};
use crate::{Forest, TreeError};

const FORMAT: &str = "xgboost";

/// Category values XGBoost can match: it treats `x >= 2^24` as an invalid category.
const MAX_CATEGORY: i64 = 1 << 24;

/// More classes or targets than this is taken for a corrupt file rather than allocated.
const MAX_OUTPUTS: usize = 1 << 20;

/// Reads a model saved as JSON text.
pub fn from_json_bytes(bytes: &[u8]) -> Result<Forest, TreeError> {
    let text = quote_non_finite(bytes);
    let doc: Value = serde_json::from_slice(&text)
        .map_err(|e| TreeError::parse(FORMAT, format!("not valid JSON: {e}")))?;
    from_document(&doc, SourceFormat::XgboostJson)
}

/// Reads a model saved as UBJSON (`.ubj`, the default format of XGBoost 2.x and 3.x).
pub fn from_ubjson_bytes(bytes: &[u8]) -> Result<Forest, TreeError> {
    let doc = ubjson::decode(bytes)
        .map_err(|e| TreeError::parse(FORMAT, format!("not valid UBJSON: {e}")))?;
    from_document(&doc, SourceFormat::XgboostUbjson)
}

/// XGBoost writes non-finite floats as the bare tokens `NaN`, `Infinity` and `-Infinity`
/// (2.x does so for the unused `split_conditions` of categorical splits), which JSON does not
/// allow. Outside strings they are turned into the strings `"NaN"`, ... that [`At::floats`]
/// reads back, the same representation the UBJSON decoder gives them.
fn quote_non_finite(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const TOKENS: [&[u8]; 3] = [b"NaN", b"Infinity", b"-Infinity"];
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'N' || b == b'I' || b == b'-' {
            if let Some(t) = TOKENS.iter().find(|t| bytes[i..].starts_with(t)) {
                let o = out.get_or_insert_with(|| Vec::with_capacity(bytes.len() + 64));
                o.extend_from_slice(&bytes[copied..i]);
                o.push(b'"');
                o.extend_from_slice(t);
                o.push(b'"');
                i += t.len();
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    match out {
        Some(mut o) => {
            o.extend_from_slice(&bytes[copied..]);
            std::borrow::Cow::Owned(o)
        }
        None => std::borrow::Cow::Borrowed(bytes),
    }
}

/// The objectives the engine serves, grouped by how predictions are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Objective {
    /// `binary:logistic`: sigmoid, probabilities `[1 - p, p]`.
    BinaryLogistic,
    /// `reg:logistic`: sigmoid, a regression value.
    RegLogistic,
    /// `binary:logitraw`: XGBoost answers the margin itself.
    LogitRaw,
    /// `multi:softprob`: softmax over the classes.
    Softprob,
    /// `multi:softmax`: softmax, but XGBoost answers only the class.
    Softmax,
    /// Identity link and transform: squared, absolute, pseudo-Huber, squared-log and quantile
    /// errors, ranking.
    Identity,
    /// Log link, `exp` transform: `count:poisson`, `reg:gamma`, `reg:tweedie`.
    Exp,
}

impl Objective {
    fn from_name(name: &str) -> Result<Objective, TreeError> {
        Ok(match name {
            "binary:logistic" => Objective::BinaryLogistic,
            "reg:logistic" => Objective::RegLogistic,
            "binary:logitraw" => Objective::LogitRaw,
            "multi:softprob" => Objective::Softprob,
            "multi:softmax" => Objective::Softmax,
            "reg:squarederror"
            | "reg:linear"
            | "reg:absoluteerror"
            | "reg:pseudohubererror"
            | "reg:squaredlogerror"
            | "reg:quantileerror"
            | "rank:pairwise"
            | "rank:ndcg"
            | "rank:map" => Objective::Identity,
            "count:poisson" | "reg:gamma" | "reg:tweedie" => Objective::Exp,
            "binary:hinge" => {
                return Err(TreeError::unsupported(
                    FORMAT,
                    "objective binary:hinge (its answer is a 0/1 step of the margin)",
                ))
            }
            other => {
                return Err(TreeError::unsupported(
                    FORMAT,
                    format!("objective {other:?}"),
                ))
            }
        })
    }

    /// Turns one `base_score` value into a margin, in `f32` as XGBoost does.
    fn link(self, name: &str, p: f32) -> Result<f32, TreeError> {
        match self {
            Objective::BinaryLogistic | Objective::RegLogistic => {
                if !(0.0..=1.0).contains(&p) {
                    return Err(TreeError::parse(
                        FORMAT,
                        format!("base_score {p} of {name} is not a probability"),
                    ));
                }
                let p = p.clamp(1e-6, 1.0 - 1e-6);
                Ok(-(1.0f32 / p - 1.0f32).ln())
            }
            Objective::Exp => {
                if p.is_nan() || p <= 0.0 {
                    return Err(TreeError::parse(
                        FORMAT,
                        format!("base_score {p} of {name} must be positive"),
                    ));
                }
                Ok(p.ln())
            }
            Objective::LogitRaw
            | Objective::Softprob
            | Objective::Softmax
            | Objective::Identity => Ok(p),
        }
    }
}

/// A path into the document, for error messages.
struct At<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> At<'a> {
    fn root(value: &'a Value) -> Self {
        At {
            value,
            path: String::new(),
        }
    }

    fn err<T>(&self, what: impl std::fmt::Display) -> Result<T, TreeError> {
        let path = if self.path.is_empty() {
            "document"
        } else {
            &self.path
        };
        Err(TreeError::parse(FORMAT, format!("{path}: {what}")))
    }

    fn object(&self) -> Result<&'a Map<String, Value>, TreeError> {
        match self.value {
            Value::Object(m) => Ok(m),
            other => self.err(format!("expected an object, found {}", kind(other))),
        }
    }

    fn child(&self, name: String, value: &'a Value) -> At<'a> {
        At { value, path: name }
    }

    fn get(&self, key: &str) -> Result<At<'a>, TreeError> {
        let m = self.object()?;
        match m.get(key) {
            Some(v) => Ok(self.child(self.join(key), v)),
            None => self.err(format!("missing field {key:?}")),
        }
    }

    fn opt(&self, key: &str) -> Result<Option<At<'a>>, TreeError> {
        let m = self.object()?;
        Ok(m.get(key).map(|v| self.child(self.join(key), v)))
    }

    fn join(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.path)
        }
    }

    fn str(&self) -> Result<&'a str, TreeError> {
        match self.value {
            Value::String(s) => Ok(s),
            other => self.err(format!("expected a string, found {}", kind(other))),
        }
    }

    fn array(&self) -> Result<&'a [Value], TreeError> {
        match self.value {
            Value::Array(a) => Ok(a),
            other => self.err(format!("expected an array, found {}", kind(other))),
        }
    }

    /// A non-negative integer written as a number or, as XGBoost writes its parameters, as a
    /// decimal string.
    fn count(&self) -> Result<usize, TreeError> {
        let n = match self.value {
            Value::String(s) => s.trim().parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        match n.and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Ok(n),
            None => self.err(format!(
                "expected a non-negative integer, found {}",
                self.value
            )),
        }
    }

    fn ints(&self) -> Result<Vec<i64>, TreeError> {
        let a = self.array()?;
        let mut out = Vec::with_capacity(a.len());
        for (i, v) in a.iter().enumerate() {
            match v {
                Value::Number(n) if n.as_i64().is_some() => out.push(n.as_i64().unwrap_or(0)),
                Value::Bool(b) => out.push(i64::from(*b)),
                other => return self.err(format!("[{i}]: expected an integer, found {other}")),
            }
        }
        Ok(out)
    }

    /// Floats, including the non-finite values XGBoost writes as `NaN`, `Infinity`,
    /// `-Infinity` (see [`quote_non_finite`]).
    fn floats(&self) -> Result<Vec<f32>, TreeError> {
        let a = self.array()?;
        let mut out = Vec::with_capacity(a.len());
        for (i, v) in a.iter().enumerate() {
            let x = match v {
                Value::Number(n) => n.as_f64().map(|x| x as f32),
                Value::String(s) => match s.as_str() {
                    "NaN" => Some(f32::NAN),
                    "Infinity" => Some(f32::INFINITY),
                    "-Infinity" => Some(f32::NEG_INFINITY),
                    _ => None,
                },
                _ => None,
            };
            match x {
                Some(x) => out.push(x),
                None => return self.err(format!("[{i}]: expected a number, found {v}")),
            }
        }
        Ok(out)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses `base_score`: "[5E-1]", "[1E0,2E0]" (3.1+) or "5E-1" (earlier).
fn parse_base_score(at: &At<'_>) -> Result<Vec<f32>, TreeError> {
    let s = at.str()?.trim();
    let inner = match (s.strip_prefix('['), s.ends_with(']')) {
        (Some(rest), true) => &rest[..rest.len() - 1],
        (None, false) => s,
        _ => return at.err(format!("unbalanced brackets in {s:?}")),
    };
    let mut out = Vec::new();
    for part in inner.split(',') {
        match part.trim().parse::<f32>() {
            Ok(x) if x.is_finite() => out.push(x),
            _ => return at.err(format!("bad number {part:?} in {s:?}")),
        }
    }
    Ok(out)
}

fn from_document(doc: &Value, source: SourceFormat) -> Result<Forest, TreeError> {
    let root = At::root(doc);
    let learner = root.get("learner")?;

    let obj_at = learner.get("objective")?.get("name")?;
    let objective_name = obj_at.str()?;
    let objective = Objective::from_name(objective_name)?;

    let params = learner.get("learner_model_param")?;
    let n_features = params.get("num_feature")?.count()?;
    let num_class = params.get("num_class")?.count()?;
    let num_target = match params.opt("num_target")? {
        Some(t) => t.count()?,
        None => 1,
    };
    if n_features == 0 || n_features > u32::MAX as usize {
        return params
            .get("num_feature")?
            .err(format!("{n_features} features"));
    }
    if num_class > MAX_OUTPUTS || num_target > MAX_OUTPUTS {
        return params.err(format!(
            "{num_class} classes and {num_target} targets (at most {MAX_OUTPUTS} outputs)"
        ));
    }

    let booster = learner.get("gradient_booster")?;
    let booster_name = booster.get("name")?.str()?;
    let (model, weight_drop) = match booster_name {
        "gbtree" => (booster.get("model")?, None),
        "dart" => {
            let w = booster.get("weight_drop")?.floats()?;
            (booster.get("gbtree")?.get("model")?, Some(w))
        }
        "gblinear" => {
            return Err(TreeError::unsupported(
                FORMAT,
                "booster gblinear (a linear model, not trees)",
            ))
        }
        other => return Err(TreeError::unsupported(FORMAT, format!("booster {other:?}"))),
    };

    // Output columns and what they mean.
    let (n_outputs, task, post_transform) = match objective {
        Objective::Softprob | Objective::Softmax => {
            if num_class < 2 {
                return params.get("num_class")?.err(format!(
                    "{objective_name} needs at least 2 classes, found {num_class}"
                ));
            }
            if num_target > 1 {
                return Err(TreeError::unsupported(
                    FORMAT,
                    format!("{objective_name} with {num_target} targets"),
                ));
            }
            let task = Task::Classification {
                n_classes: num_class,
                binary: BinaryScores::PerClass,
            };
            (num_class, task, PostTransform::Softmax)
        }
        _ if num_class > 1 => {
            return params.get("num_class")?.err(format!(
                "{num_class} classes with the non-multiclass objective {objective_name}"
            ))
        }
        Objective::BinaryLogistic => {
            if num_target > 1 {
                return Err(TreeError::unsupported(
                    FORMAT,
                    format!("binary:logistic with {num_target} targets (multi-label)"),
                ));
            }
            let task = Task::Classification {
                n_classes: 2,
                binary: BinaryScores::OneMinus,
            };
            (1, task, PostTransform::Logistic)
        }
        Objective::RegLogistic => (num_target.max(1), Task::Regression, PostTransform::Logistic),
        Objective::LogitRaw | Objective::Identity => {
            (num_target.max(1), Task::Regression, PostTransform::Identity)
        }
        Objective::Exp => (num_target.max(1), Task::Regression, PostTransform::Exp),
    };

    let bs_at = params.get("base_score")?;
    let mut base = parse_base_score(&bs_at)?;
    if base.len() == 1 && n_outputs > 1 {
        // Before 3.1 the intercept was one value shared by every output.
        base = vec![base[0]; n_outputs];
    }
    if base.len() != n_outputs {
        return bs_at.err(format!("{} values for {n_outputs} outputs", base.len()));
    }
    let base_score = base
        .iter()
        .map(|&p| objective.link(objective_name, p).map(f64::from))
        .collect::<Result<Vec<_>, _>>()?;

    // Feature names and types.
    let mut feature_names = None;
    if let Some(names) = learner.opt("feature_names")? {
        let a = names.array()?;
        if !a.is_empty() {
            if a.len() != n_features {
                return names.err(format!("{} names for {n_features} features", a.len()));
            }
            let mut v = Vec::with_capacity(a.len());
            for (i, n) in a.iter().enumerate() {
                v.push(
                    names
                        .child(format!("{}[{i}]", names.path), n)
                        .str()?
                        .to_owned(),
                );
            }
            feature_names = Some(v);
        }
    }
    let mut categorical_features = Vec::new();
    if let Some(types) = learner.opt("feature_types")? {
        let a = types.array()?;
        if !a.is_empty() && a.len() != n_features {
            return types.err(format!("{} types for {n_features} features", a.len()));
        }
        for (i, t) in a.iter().enumerate() {
            if types.child(format!("{}[{i}]", types.path), t).str()? == "c" {
                categorical_features.push(i as u32);
            }
        }
    }

    // Trees.
    let trees_at = model.get("trees")?;
    let trees_json = trees_at.array()?;
    let info_at = model.get("tree_info")?;
    let tree_info = info_at.ints()?;
    if tree_info.len() != trees_json.len() {
        return info_at.err(format!(
            "{} entries for {} trees",
            tree_info.len(),
            trees_json.len()
        ));
    }
    if let Some(p) = model.opt("gbtree_model_param")? {
        if let Some(nt) = p.opt("num_trees")? {
            let declared = nt.count()?;
            if declared != trees_json.len() {
                return nt.err(format!(
                    "declares {declared} trees, the model holds {}",
                    trees_json.len()
                ));
            }
        }
    }
    if let Some(w) = &weight_drop {
        if w.len() != trees_json.len() {
            return booster.get("weight_drop")?.err(format!(
                "{} weights for {} trees",
                w.len(),
                trees_json.len()
            ));
        }
    }
    let mut trees = Vec::with_capacity(trees_json.len());
    for (t, tj) in trees_json.iter().enumerate() {
        let at = trees_at.child(format!("{}[{t}]", trees_at.path), tj);
        let output = tree_info[t];
        if output < 0 || output as usize >= n_outputs {
            return info_at.err(format!(
                "tree {t} adds to output {output}, the model has {n_outputs}"
            ));
        }
        let weight = weight_drop.as_ref().map(|w| w[t]);
        trees.push(read_tree(&at, t, output as u32, weight, n_features)?);
    }

    let forest = Forest {
        n_features,
        feature_names,
        categorical_features,
        n_outputs,
        base_score,
        aggregate: Aggregate::Sum,
        accumulate: Accumulate::F32,
        post_transform,
        task,
        class_labels: None,
        trees,
        predicts_label_only: objective == Objective::Softmax,
        source,
    };
    forest.validate()?;
    Ok(forest)
}

/// Reads one scalar-leaf tree; `weight` is the dart weight of the tree.
fn read_tree(
    at: &At<'_>,
    t: usize,
    output: u32,
    weight: Option<f32>,
    n_features: usize,
) -> Result<Tree, TreeError> {
    let param = at.get("tree_param")?;
    if let Some(s) = param.opt("size_leaf_vector")? {
        let size = s.count()?;
        if size > 1 {
            return Err(TreeError::unsupported(
                FORMAT,
                format!(
                    "tree {t} has vector leaves (size_leaf_vector {size}, \
                     multi_strategy=\"multi_output_tree\")"
                ),
            ));
        }
    }
    let n = param.get("num_nodes")?.count()?;
    if n == 0 {
        return param.err(format!("tree {t} has no nodes"));
    }
    let field = |name: &str| -> Result<At<'_>, TreeError> { at.get(name) };
    let check_len = |f: &At<'_>, len: usize| -> Result<(), TreeError> {
        if len != n {
            f.err(format!("{len} entries for {n} nodes"))
        } else {
            Ok(())
        }
    };
    let left_at = field("left_children")?;
    let left = left_at.ints()?;
    check_len(&left_at, left.len())?;
    let right_at = field("right_children")?;
    let right = right_at.ints()?;
    check_len(&right_at, right.len())?;
    let idx_at = field("split_indices")?;
    let split_index = idx_at.ints()?;
    check_len(&idx_at, split_index.len())?;
    let cond_at = field("split_conditions")?;
    let cond = cond_at.floats()?;
    check_len(&cond_at, cond.len())?;
    let dl_at = field("default_left")?;
    let default_left = dl_at.ints()?;
    check_len(&dl_at, default_left.len())?;
    let split_type = match at.opt("split_type")? {
        Some(st) => {
            let v = st.ints()?;
            check_len(&st, v.len())?;
            v
        }
        None => vec![0; n],
    };

    // Category sets by node: `categories_nodes[k]` uses
    // `categories[categories_segments[k] .. + categories_sizes[k]]`.
    let mut node_set: Vec<Option<Vec<u32>>> = vec![None; n];
    if let Some(nodes_at) = at.opt("categories_nodes")? {
        let nodes = nodes_at.ints()?;
        let seg_at = field("categories_segments")?;
        let segs = seg_at.ints()?;
        let size_at = field("categories_sizes")?;
        let sizes = size_at.ints()?;
        let cats_at = field("categories")?;
        let cats = cats_at.ints()?;
        if segs.len() != nodes.len() || sizes.len() != nodes.len() {
            return nodes_at.err(format!(
                "{} categorical nodes but {} segments and {} sizes",
                nodes.len(),
                segs.len(),
                sizes.len()
            ));
        }
        for k in 0..nodes.len() {
            let node = nodes[k];
            if node < 0 || node as usize >= n {
                return nodes_at.err(format!("[{k}]: node {node} out of range ({n} nodes)"));
            }
            let (beg, size) = (segs[k], sizes[k]);
            let end = beg.checked_add(size);
            match end {
                Some(end) if beg >= 0 && size > 0 && end as u64 <= cats.len() as u64 => {}
                _ => {
                    return seg_at.err(format!(
                        "[{k}]: categories {beg}..+{size} outside the {} listed",
                        cats.len()
                    ))
                }
            }
            let mut set = Vec::with_capacity(size as usize);
            for &c in &cats[beg as usize..(beg + size) as usize] {
                if c < 0 {
                    return cats_at.err(format!("negative category {c}"));
                }
                // XGBoost never matches values of 2^24 or more, so neither may the set.
                if c < MAX_CATEGORY {
                    set.push(c as u32);
                }
            }
            set.sort_unstable();
            set.dedup();
            if node_set[node as usize].replace(set).is_some() {
                return nodes_at.err(format!("node {node} listed twice"));
            }
        }
    }

    let mut tree = Tree {
        leaf_kind: LeafKind::Scalar { output },
        ..Tree::default()
    };
    for i in 0..n {
        let node =
            |what: String| -> Result<Tree, TreeError> { at.err(format!("node {i}: {what}")) };
        if left[i] == -1 {
            if node_set[i].is_some() {
                return node("a leaf with a category set".into());
            }
            let v = match weight {
                Some(w) => cond[i] * w,
                None => cond[i],
            };
            tree.push_leaf(&[f64::from(v)]);
            continue;
        }
        let (l, r) = (left[i], right[i]);
        if l <= 0 || l as usize >= n {
            return node(format!("left child {l} out of range ({n} nodes)"));
        }
        if r != l + 1 || r as usize >= n {
            return node(format!(
                "right child {r} is not the node after left child {l} (XGBoost predicts with \
                 left + 1)"
            ));
        }
        let f = split_index[i];
        if f < 0 || f as usize >= n_features {
            return node(format!("splits on feature {f}, the model has {n_features}"));
        }
        let dl = match default_left[i] {
            0 => false,
            1 => true,
            other => return node(format!("default_left is {other}, expected 0 or 1")),
        };
        let (l, r) = (l as u32, r as u32);
        match split_type[i] {
            0 => {
                if node_set[i].is_some() {
                    return node("a numerical split with a category set".into());
                }
                tree.push_split(
                    f as u32,
                    Cmp::Lt,
                    f64::from(cond[i]),
                    Missing::Default,
                    dl,
                    l,
                    r,
                    1,
                );
            }
            1 => {
                let Some(set) = node_set[i].take() else {
                    return node("a categorical split without categories".into());
                };
                let k = tree.cat_sets.len() as u32;
                tree.cat_sets.push(set);
                // XGBoost: listed categories go right. IR: in the set goes left.
                tree.push_split(f as u32, Cmp::InSet(k), 0.0, Missing::Default, !dl, r, l, 1);
            }
            other => return node(format!("unknown split_type {other}")),
        }
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(left: Value, right: Value, idx: Value, cond: Value, dl: Value) -> Value {
        let n = left.as_array().unwrap().len();
        json!({
            "tree_param": {"num_nodes": n.to_string(), "size_leaf_vector": "1", "num_feature": "2"},
            "left_children": left, "right_children": right, "split_indices": idx,
            "split_conditions": cond, "default_left": dl, "split_type": vec![0; n],
            "categories": [], "categories_nodes": [], "categories_segments": [],
            "categories_sizes": []
        })
    }

    fn stump() -> Value {
        tree(
            json!([1, -1, -1]),
            json!([2, -1, -1]),
            json!([1, 0, 0]),
            json!([0.5, -1.0, 2.0]),
            json!([1, 0, 0]),
        )
    }

    fn model(objective: &str, booster: Value, num_class: u32, base: &str) -> Value {
        json!({
            "learner": {
                "attributes": {},
                "feature_names": [], "feature_types": [],
                "gradient_booster": booster,
                "learner_model_param": {"base_score": base, "boost_from_average": "1",
                    "num_class": num_class.to_string(), "num_feature": "2", "num_target": "1"},
                "objective": {"name": objective}
            },
            "version": [3, 2, 0]
        })
    }

    fn gbtree(trees: Vec<Value>) -> Value {
        let info = vec![0; trees.len()];
        json!({"name": "gbtree", "model": {
            "gbtree_model_param": {"num_trees": trees.len().to_string(), "num_parallel_tree": "1"},
            "iteration_indptr": [], "tree_info": info, "trees": trees}})
    }

    fn load(doc: &Value) -> Result<Forest, TreeError> {
        let f = from_json_bytes(&serde_json::to_vec(doc).unwrap())?;
        f.validate()?;
        Ok(f)
    }

    fn err(doc: &Value) -> String {
        load(doc).unwrap_err().to_string()
    }

    /// Encodes a JSON value as UBJSON the way XGBoost does (typed arrays where it can).
    fn to_ubjson(v: &Value, out: &mut Vec<u8>) {
        fn len(n: usize, out: &mut Vec<u8>) {
            out.push(b'L');
            out.extend_from_slice(&(n as i64).to_be_bytes());
        }
        match v {
            Value::Null => out.push(b'Z'),
            Value::Bool(b) => out.push(if *b { b'T' } else { b'F' }),
            Value::Number(n) => match n.as_i64() {
                Some(i) => {
                    out.push(b'L');
                    out.extend_from_slice(&i.to_be_bytes());
                }
                None => {
                    out.push(b'd');
                    out.extend_from_slice(&(n.as_f64().unwrap() as f32).to_be_bytes());
                }
            },
            Value::String(s) => {
                out.push(b'S');
                len(s.len(), out);
                out.extend_from_slice(s.as_bytes());
            }
            Value::Array(a) => {
                out.push(b'[');
                if !a.is_empty() && a.iter().all(|x| x.is_f64()) {
                    out.extend_from_slice(b"$d#");
                    len(a.len(), out);
                    for x in a {
                        out.extend_from_slice(&(x.as_f64().unwrap() as f32).to_be_bytes());
                    }
                } else {
                    out.push(b'#');
                    len(a.len(), out);
                    for x in a {
                        to_ubjson(x, out);
                    }
                }
            }
            Value::Object(m) => {
                out.push(b'{');
                for (k, x) in m {
                    len(k.len(), out);
                    out.extend_from_slice(k.as_bytes());
                    to_ubjson(x, out);
                }
                out.push(b'}');
            }
        }
    }

    #[test]
    fn reads_a_stump_from_json_and_ubjson() {
        let doc = model("binary:logistic", gbtree(vec![stump()]), 0, "[5E-1]");
        let f = load(&doc).unwrap();
        assert_eq!(f.n_outputs, 1);
        assert_eq!(f.base_score, vec![0.0]);
        assert_eq!(f.trees[0].cmp[0], Cmp::Lt);
        assert!(f.trees[0].default_left[0]);
        let mut ub = Vec::new();
        to_ubjson(&doc, &mut ub);
        let g = from_ubjson_bytes(&ub).unwrap();
        assert_eq!(g.trees, f.trees);
        assert_eq!(g.source, SourceFormat::XgboostUbjson);
    }

    #[test]
    fn base_score_goes_through_the_link() {
        let f = load(&model("count:poisson", gbtree(vec![stump()]), 0, "2E0")).unwrap();
        assert_eq!(f.base_score, vec![f64::from(2.0f32.ln())]);
        assert_eq!(f.post_transform, PostTransform::Exp);
        let f = load(&model("binary:logitraw", gbtree(vec![stump()]), 0, "[2E0]")).unwrap();
        assert_eq!(f.base_score, vec![2.0]);
    }

    #[test]
    fn categorical_split_swaps_children() {
        let mut t = stump();
        t["split_type"] = json!([1, 0, 0]);
        t["categories"] = json!([3, 1, 1 << 24]);
        t["categories_nodes"] = json!([0]);
        t["categories_segments"] = json!([0]);
        t["categories_sizes"] = json!([3]);
        let f = load(&model("reg:squarederror", gbtree(vec![t]), 0, "[0E0]")).unwrap();
        let tr = &f.trees[0];
        assert_eq!(tr.cmp[0], Cmp::InSet(0));
        assert_eq!(tr.cat_sets[0], vec![1, 3]);
        assert_eq!((tr.left[0], tr.right[0], tr.default_left[0]), (2, 1, false));
    }

    #[test]
    fn malformed_and_unsupported_models_are_named_errors() {
        let good = model("binary:logistic", gbtree(vec![stump()]), 0, "[5E-1]");
        let text = serde_json::to_vec(&good).unwrap();
        let e = from_json_bytes(&text[..text.len() / 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        let mut ub = Vec::new();
        to_ubjson(&good, &mut ub);
        for cut in [1, ub.len() / 3, ub.len() - 1] {
            let e = from_ubjson_bytes(&ub[..cut]).unwrap_err().to_string();
            assert!(
                e.contains("not valid UBJSON") && e.contains("truncated"),
                "{e}"
            );
        }

        let with = |f: &dyn Fn(&mut Value)| {
            let mut d = good.clone();
            f(&mut d);
            err(&d)
        };
        let with_tree = |f: &dyn Fn(&mut Value)| {
            with(&|d| f(&mut d["learner"]["gradient_booster"]["model"]["trees"][0]))
        };
        let cases: Vec<(String, &str)> = vec![
            (
                with_tree(&|t| t["split_conditions"] = json!([0.5, 1.0])),
                "split_conditions: 2 entries for 3 nodes",
            ),
            (
                with_tree(&|t| t["left_children"] = json!([7, -1, -1])),
                "left child 7 out of range",
            ),
            (
                with_tree(&|t| t["right_children"] = json!([1, -1, -1])),
                "right child 1 is not the node after left child",
            ),
            (
                with_tree(&|t| t["split_indices"] = json!([5, 0, 0])),
                "splits on feature 5",
            ),
            (
                with_tree(&|t| t["split_type"] = json!([2, 0, 0])),
                "unknown split_type 2",
            ),
            (
                with_tree(&|t| t["split_type"] = json!([1, 0, 0])),
                "categorical split without categories",
            ),
            (
                with_tree(&|t| t["tree_param"]["size_leaf_vector"] = json!("3")),
                "vector leaves",
            ),
            (
                with(&|d| d["learner"]["gradient_booster"]["name"] = json!("gblinear")),
                "gblinear",
            ),
            (
                with(&|d| d["learner"]["objective"]["name"] = json!("survival:aft")),
                "objective \"survival:aft\"",
            ),
            (
                with(&|d| d["learner"]["objective"]["name"] = json!("binary:hinge")),
                "binary:hinge",
            ),
            (
                with(&|d| d["learner"]["learner_model_param"]["base_score"] = json!("[1,2]")),
                "base_score: 2 values for 1 outputs",
            ),
            (
                with(&|d| d["learner"]["learner_model_param"]["base_score"] = json!("[x]")),
                "bad number",
            ),
            (
                with(&|d| d["learner"]["gradient_booster"]["model"]["tree_info"] = json!([3])),
                "adds to output 3",
            ),
            (
                with(&|d| d["learner"]["gradient_booster"]["model"]["tree_info"] = json!([0, 0])),
                "2 entries for 1 trees",
            ),
            (
                with(&|d| d["learner"]["feature_names"] = json!(["a"])),
                "1 names for 2 features",
            ),
            (
                with(&|d| {
                    d["learner"]["objective"]["name"] = json!("multi:softprob");
                }),
                "needs at least 2 classes",
            ),
            (
                with(&|d| {
                    d["learner"]["gradient_booster"]["name"] = json!("dart");
                }),
                "weight_drop",
            ),
            (
                with(&|d| {
                    d["learner"]
                        .as_object_mut()
                        .unwrap()
                        .remove("learner_model_param");
                }),
                "missing field \"learner_model_param\"",
            ),
        ];
        for (got, want) in cases {
            assert!(got.contains(want), "expected {want:?} in {got:?}");
        }
    }

    #[test]
    fn non_finite_tokens_of_xgboost_2_are_read() {
        let q = quote_non_finite(br#"{"a NaN": [NaN, -Infinity, 1E0, Infinity], "b": "x\"NaN"}"#);
        let v: Value = serde_json::from_slice(&q).unwrap();
        assert_eq!(
            v,
            json!({"a NaN": ["NaN", "-Infinity", 1.0, "Infinity"], "b": "x\"NaN"})
        );
        // XGBoost 2.x writes NaN as the (unused) condition of a categorical split.
        let mut t = stump();
        t["split_type"] = json!([1, 0, 0]);
        t["categories"] = json!([1]);
        t["categories_nodes"] = json!([0]);
        t["categories_segments"] = json!([0]);
        t["categories_sizes"] = json!([1]);
        let doc = model("reg:squarederror", gbtree(vec![t]), 0, "5E-1");
        let text = serde_json::to_string(&doc)
            .unwrap()
            .replace("[0.5,-1.0,2.0]", "[NaN,-1.0,2.0]");
        assert!(text.contains("NaN"));
        let f = from_json_bytes(text.as_bytes()).unwrap();
        assert_eq!(f.trees[0].cmp[0], Cmp::InSet(0));
        assert_eq!(f.base_score, vec![0.5]);
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let mut t = stump();
        t["split_type"] = json!([1, 0, 0]);
        t["categories"] = json!([1, 4]);
        t["categories_nodes"] = json!([0]);
        t["categories_segments"] = json!([0]);
        t["categories_sizes"] = json!([2]);
        let doc = model(
            "multi:softprob",
            gbtree(vec![t.clone(), t.clone(), t]),
            3,
            "[0E0]",
        );
        let mut doc = doc;
        doc["learner"]["gradient_booster"]["model"]["tree_info"] = json!([0, 1, 2]);
        let mut ub = Vec::new();
        to_ubjson(&doc, &mut ub);
        assert!(from_ubjson_bytes(&ub).is_ok());
        for i in 0..ub.len() {
            for b in [0u8, 1, 0x7f, 0x80, 0xff, b'[', b'{', b'L', b'$', b'#'] {
                let mut m = ub.clone();
                m[i] = b;
                let _ = from_ubjson_bytes(&m);
            }
            let _ = from_ubjson_bytes(&ub[..i]);
        }
        let text = serde_json::to_vec(&doc).unwrap();
        for i in 0..text.len() {
            let _ = from_json_bytes(&text[..i]);
            let mut m = text.clone();
            m[i] = b'9';
            let _ = from_json_bytes(&m);
        }
    }

    #[test]
    fn dart_scales_leaves_in_f32() {
        let b = json!({"name": "dart", "weight_drop": [0.3],
            "gbtree": gbtree(vec![stump()])});
        let f = load(&model("reg:squarederror", b, 0, "[0E0]")).unwrap();
        assert_eq!(f.trees[0].values[2], f64::from(2.0f32 * 0.3f32));
    }
}
