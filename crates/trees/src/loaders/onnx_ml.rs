//! ONNX-ML tree ensembles: a graph made of exactly one `ai.onnx.ml` `TreeEnsembleClassifier`
//! or `TreeEnsembleRegressor` (attribute generations of opsets 1 and 3: `nodes_values` or
//! `nodes_values_as_tensor`, ...), optionally preceded by `Cast` / `Identity` on the feature
//! input and followed by the `Cast` / `Identity` / `ZipMap` nodes (and onnxmltools' `Mul` by a
//! constant 1) that skl2onnx and onnxmltools emit, read into a [`Forest`]. Anything else in the
//! graph, including the opset-5 `TreeEnsemble` operator that neither converter emits, is
//! refused with [`TreeError::Unsupported`] naming the operator, so that the server can hand the
//! graph to ONNX Runtime instead.
//!
//! The semantics reproduced are ONNX Runtime's, which defines what these operators answer in
//! practice:
//! - a node whose `nodes_missing_value_tracks_true` is set sends NaN to its true branch; other
//!   nodes let NaN follow the comparison's IEEE result (false for every mode but `BRANCH_NEQ`).
//!   Both become [`Missing::Default`] with the right `default_left`;
//! - binary classifiers follow ONNX Runtime's rules (see [`binary_layout`]), including the
//!   "all weights positive" rule that yields `[1 - s, s]` untransformed for `NONE` and
//!   `SOFTMAX`, and `[-s, s]` when some weight is negative;
//! - a single-target regressor ignores every post-transform but `PROBIT` in ONNX Runtime; the
//!   loader refuses those ambiguous models rather than guess.
//!
//! Sums run in `f64` ([`Accumulate::F64`]): ONNX Runtime sums in `f32`, but the goldens come
//! from the training libraries, and scikit-learn and LightGBM sum in `f64`.

use std::collections::{BTreeMap, HashMap, HashSet};

use ferroserve_onnx_proto::{
    AttributeProto, AttributeType, DataType, GraphProto, ModelProto, NodeProto, TensorProto,
};
use prost::Message;

use crate::ir::{
    Accumulate, Aggregate, BinaryScores, ClassLabels, Cmp, Forest, LeafKind, Missing,
    PostTransform, SourceFormat, Task, Tree,
};
use crate::TreeError;

const FORMAT: &str = "onnx";
const ML_DOMAIN: &str = "ai.onnx.ml";

fn parse_err(message: impl Into<String>) -> TreeError {
    TreeError::parse(FORMAT, message)
}

fn unsupported(message: impl Into<String>) -> TreeError {
    TreeError::unsupported(FORMAT, message)
}

/// Reads an ONNX model file (a serialized `ModelProto`).
pub fn from_bytes(bytes: &[u8]) -> Result<Forest, TreeError> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| parse_err(format!("not a valid ONNX ModelProto: {e}")))?;
    from_model(&model)
}

/// Reads a decoded ONNX model.
pub fn from_model(model: &ModelProto) -> Result<Forest, TreeError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| parse_err("the model has no graph"))?;
    let plan = analyse_graph(graph)?;
    let node = &graph.node[plan.tree_node];
    let what = node_label(node);
    match plan.kind {
        EnsembleKind::Classifier => {
            let attrs = Attrs::new(node, CLASSIFIER_ATTRS)?;
            classifier(&attrs, plan.n_features).map_err(|e| in_node(e, &what))
        }
        EnsembleKind::Regressor => {
            let attrs = Attrs::new(node, REGRESSOR_ATTRS)?;
            regressor(&attrs, plan.n_features).map_err(|e| in_node(e, &what))
        }
    }
}

fn node_label(node: &NodeProto) -> String {
    if node.name.is_empty() {
        node.op_type.clone()
    } else {
        format!("{} '{}'", node.op_type, node.name)
    }
}

/// Prefixes an error's message with the node it is about.
fn in_node(e: TreeError, what: &str) -> TreeError {
    match e {
        TreeError::Parse { format, message } => TreeError::Parse {
            format,
            message: format!("{what}: {message}"),
        },
        TreeError::Unsupported { format, message } => TreeError::Unsupported {
            format,
            message: format!("{what}: {message}"),
        },
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// The graph around the ensemble
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnsembleKind {
    Classifier,
    Regressor,
}

/// The operators a tree graph may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Tree(EnsembleKind),
    Cast,
    Identity,
    ZipMap,
    Mul,
}

fn classify_op(node: &NodeProto) -> Result<Op, TreeError> {
    let default_domain = matches!(node.domain.as_str(), "" | "ai.onnx");
    let ml = node.domain == ML_DOMAIN;
    let op = match node.op_type.as_str() {
        "TreeEnsembleClassifier" if ml => Op::Tree(EnsembleKind::Classifier),
        "TreeEnsembleRegressor" if ml => Op::Tree(EnsembleKind::Regressor),
        "ZipMap" if ml => Op::ZipMap,
        "Cast" if default_domain => Op::Cast,
        "Identity" if default_domain => Op::Identity,
        "Mul" if default_domain => Op::Mul,
        "TreeEnsemble" if ml => {
            return Err(unsupported(format!(
                "operator ai.onnx.ml TreeEnsemble (opset 5) in node {} is not read by the \
                 native tree engine (only TreeEnsembleClassifier / TreeEnsembleRegressor)",
                node_label(node)
            )))
        }
        other => {
            let domain = if node.domain.is_empty() {
                "ai.onnx"
            } else {
                node.domain.as_str()
            };
            return Err(unsupported(format!(
                "operator {other} (domain {domain}) in node '{}': the native tree engine reads \
                 only a TreeEnsembleClassifier or TreeEnsembleRegressor with Cast, Identity and \
                 ZipMap around it",
                node.name
            )));
        }
    };
    Ok(op)
}

/// Where a value in the graph comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The feature tensor (the graph input, possibly cast).
    Features,
    /// The ensemble's label output.
    Label,
    /// The ensemble's scores / probabilities / values.
    Scores,
}

impl Flow {
    fn as_str(self) -> &'static str {
        match self {
            Flow::Features => "features",
            Flow::Label => "labels",
            Flow::Scores => "scores",
        }
    }
}

struct GraphPlan {
    tree_node: usize,
    kind: EnsembleKind,
    /// Feature count declared by the input's shape, if it is.
    n_features: Option<usize>,
}

/// Checks that the graph is one tree ensemble with only harmless nodes around it, following
/// every value from the graph input through the nodes (which ONNX keeps in topological order).
fn analyse_graph(graph: &GraphProto) -> Result<GraphPlan, TreeError> {
    let initializers: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name.as_str()))
        .collect();
    let input = match inputs.as_slice() {
        [one] => *one,
        _ => {
            return Err(unsupported(format!(
                "the graph has {} inputs; the native tree engine reads graphs with one feature \
                 tensor input",
                inputs.len()
            )))
        }
    };
    let n_features = input_features(input)?;

    let mut flow: HashMap<&str, Flow> = HashMap::new();
    flow.insert(input.name.as_str(), Flow::Features);
    let mut tree: Option<(usize, EnsembleKind)> = None;
    for (idx, node) in graph.node.iter().enumerate() {
        let op = classify_op(node)?;
        let label = node_label(node);
        let source = |i: usize| -> Result<Flow, TreeError> {
            let name = node
                .input
                .get(i)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| parse_err(format!("node {label} lacks input {i}")))?;
            flow.get(name.as_str()).copied().ok_or_else(|| {
                unsupported(format!(
                    "node {label} reads '{name}', which comes neither from the graph input nor \
                     from the tree ensemble"
                ))
            })
        };
        let out = match op {
            Op::Tree(kind) => {
                if let Some((first, _)) = tree {
                    return Err(unsupported(format!(
                        "the graph holds more than one tree ensemble ({} and {label})",
                        node_label(&graph.node[first])
                    )));
                }
                if node.input.len() != 1 || source(0)? != Flow::Features {
                    return Err(unsupported(format!(
                        "{label} does not read the graph's feature input"
                    )));
                }
                tree = Some((idx, kind));
                match kind {
                    EnsembleKind::Classifier => vec![Flow::Label, Flow::Scores],
                    EnsembleKind::Regressor => vec![Flow::Scores],
                }
            }
            Op::Identity => vec![source(0)?],
            Op::Cast => {
                let from = source(0)?;
                let attrs = Attrs::new(node, &["to", "saturate", "round_mode"])?;
                let to = attrs
                    .int("to")?
                    .ok_or_else(|| parse_err(format!("{label} has no 'to' attribute")))?;
                let to_type = i32::try_from(to).ok().and_then(DataType::from_i32);
                let float = matches!(to_type, Some(DataType::Float) | Some(DataType::Double));
                if from != Flow::Label && !float {
                    let name = to_type.map_or_else(|| to.to_string(), |t| t.as_str().to_string());
                    return Err(unsupported(format!(
                        "{label} casts the {} to {name}; only FLOAT or DOUBLE keeps the tree \
                         ensemble's meaning",
                        from.as_str()
                    )));
                }
                vec![from]
            }
            Op::ZipMap => {
                if source(0)? != Flow::Scores {
                    return Err(unsupported(format!(
                        "{label} does not read the tree ensemble's probabilities"
                    )));
                }
                vec![Flow::Scores]
            }
            Op::Mul => {
                // onnxmltools multiplies LightGBM probabilities by an initializer `one`.
                let names: Vec<&str> = node.input.iter().map(String::as_str).collect();
                let ok = match names.as_slice() {
                    [a, b] => {
                        let (data, constant) = if initializers.contains_key(a) {
                            (b, a)
                        } else {
                            (a, b)
                        };
                        flow.get(data) == Some(&Flow::Scores)
                            && initializers
                                .get(constant)
                                .and_then(|t| tensor_reals(t, "initializer").ok())
                                .is_some_and(|v| !v.is_empty() && v.iter().all(|&x| x == 1.0))
                    }
                    _ => false,
                };
                if !ok {
                    return Err(unsupported(format!(
                        "operator Mul (domain ai.onnx) in node {label} is not a multiplication of \
                         the scores by the constant 1; the native tree engine does not evaluate \
                         arithmetic around the tree ensemble"
                    )));
                }
                vec![Flow::Scores]
            }
        };
        for (name, f) in node.output.iter().zip(out) {
            if !name.is_empty() {
                flow.insert(name.as_str(), f);
            }
        }
    }
    let (tree_node, kind) = tree.ok_or_else(|| {
        unsupported(
            "the graph holds no ai.onnx.ml TreeEnsembleClassifier or TreeEnsembleRegressor node",
        )
    })?;
    Ok(GraphPlan {
        tree_node,
        kind,
        n_features,
    })
}

/// The feature count the graph input declares: `Some(n)` for a `[N, n]` tensor with a fixed
/// `n`, `None` when the width is symbolic or the shape absent.
fn input_features(
    input: &ferroserve_onnx_proto::ValueInfoProto,
) -> Result<Option<usize>, TreeError> {
    let tensor = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| {
            unsupported(format!(
                "graph input '{}' is not a tensor; the native tree engine reads a [N, features] \
                 tensor",
                input.name
            ))
        })?;
    let elem = DataType::from_i32(tensor.elem_type);
    match elem {
        Some(DataType::Float | DataType::Double | DataType::Int64 | DataType::Int32) => {}
        other => {
            let name = other.map_or_else(|| tensor.elem_type.to_string(), |t| t.as_str().into());
            return Err(unsupported(format!(
                "graph input '{}' has element type {name}; the native tree engine reads FLOAT, \
                 DOUBLE, INT64 or INT32 features",
                input.name
            )));
        }
    }
    let Some(shape) = &tensor.shape else {
        return Ok(None);
    };
    match shape.dim.as_slice() {
        [_, width] => match width.dim_value {
            Some(n) if n > 0 => Ok(Some(n as usize)),
            Some(n) => Err(parse_err(format!(
                "graph input '{}' declares {n} features",
                input.name
            ))),
            None => Ok(None),
        },
        dims => Err(unsupported(format!(
            "graph input '{}' has rank {}; the native tree engine reads a [N, features] tensor",
            input.name,
            dims.len()
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------------

const NODE_ATTRS: &[&str] = &[
    "nodes_falsenodeids",
    "nodes_featureids",
    "nodes_hitrates",
    "nodes_hitrates_as_tensor",
    "nodes_missing_value_tracks_true",
    "nodes_modes",
    "nodes_nodeids",
    "nodes_treeids",
    "nodes_truenodeids",
    "nodes_values",
    "nodes_values_as_tensor",
    "post_transform",
    "base_values",
    "base_values_as_tensor",
];

const CLASSIFIER_ATTRS: &[&str] = &[
    "class_ids",
    "class_nodeids",
    "class_treeids",
    "class_weights",
    "class_weights_as_tensor",
    "classlabels_int64s",
    "classlabels_strings",
];

const REGRESSOR_ATTRS: &[&str] = &[
    "aggregate_function",
    "n_targets",
    "target_ids",
    "target_nodeids",
    "target_treeids",
    "target_weights",
    "target_weights_as_tensor",
];

/// A node's attributes by name, with typed accessors that check the declared type.
struct Attrs<'a> {
    map: HashMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attrs<'a> {
    /// Indexes `node`'s attributes, refusing duplicates and names outside `known` (and, for the
    /// tree ensembles, the node attributes shared by both operators).
    fn new(node: &'a NodeProto, known: &[&str]) -> Result<Attrs<'a>, TreeError> {
        let tree = matches!(
            node.op_type.as_str(),
            "TreeEnsembleClassifier" | "TreeEnsembleRegressor"
        );
        let mut map = HashMap::new();
        for a in &node.attribute {
            let name = a.name.as_str();
            let shared = tree && NODE_ATTRS.contains(&name);
            if !(known.contains(&name) || shared) {
                return Err(unsupported(format!(
                    "attribute '{name}' of {} is not known to the native tree engine",
                    node_label(node)
                )));
            }
            if map.insert(name, a).is_some() {
                return Err(parse_err(format!(
                    "attribute '{name}' appears twice in {}",
                    node_label(node)
                )));
            }
        }
        Ok(Attrs { map })
    }

    /// The attribute `name` if present, after checking it has type `want`.
    fn typed(
        &self,
        name: &str,
        want: AttributeType,
    ) -> Result<Option<&'a AttributeProto>, TreeError> {
        let Some(a) = self.map.get(name).copied() else {
            return Ok(None);
        };
        match AttributeType::from_i32(a.r#type) {
            Some(t) if t == want => Ok(Some(a)),
            Some(t) => Err(parse_err(format!(
                "attribute '{name}' has type {}, expected {}",
                t.as_str(),
                want.as_str()
            ))),
            None => Err(parse_err(format!(
                "attribute '{name}' has unknown type code {}",
                a.r#type
            ))),
        }
    }

    fn int(&self, name: &str) -> Result<Option<i64>, TreeError> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i))
    }

    fn ints(&self, name: &str) -> Result<&'a [i64], TreeError> {
        Ok(self
            .typed(name, AttributeType::Ints)?
            .map_or(&[][..], |a| a.ints.as_slice()))
    }

    fn string(&self, name: &str) -> Result<Option<&'a [u8]>, TreeError> {
        Ok(self
            .typed(name, AttributeType::String)?
            .map(|a| a.s.as_slice()))
    }

    fn strings(&self, name: &str) -> Result<&'a [Vec<u8>], TreeError> {
        Ok(self
            .typed(name, AttributeType::Strings)?
            .map_or(&[][..], |a| a.strings.as_slice()))
    }

    /// A list of reals given either as `name` (floats) or as `name_as_tensor` (a float or
    /// double tensor); `None` when neither is present.
    fn reals(&self, name: &str) -> Result<Option<Vec<f64>>, TreeError> {
        let tensor_name = format!("{name}_as_tensor");
        let floats = self.typed(name, AttributeType::Floats)?;
        let tensor = self.typed(&tensor_name, AttributeType::Tensor)?;
        match (floats, tensor) {
            (Some(_), Some(_)) => Err(parse_err(format!(
                "both '{name}' and '{tensor_name}' are given"
            ))),
            (Some(a), None) => Ok(Some(a.floats.iter().map(|&v| v as f64).collect())),
            (None, Some(a)) => {
                let t = a.t.as_ref().ok_or_else(|| {
                    parse_err(format!("attribute '{tensor_name}' holds no tensor"))
                })?;
                tensor_reals(t, &tensor_name).map(Some)
            }
            (None, None) => Ok(None),
        }
    }
}

/// The values of a FLOAT or DOUBLE tensor, checked against its dimensions.
fn tensor_reals(t: &TensorProto, what: &str) -> Result<Vec<f64>, TreeError> {
    if t.data_location == 1 {
        return Err(unsupported(format!(
            "{what} keeps its data in an external file"
        )));
    }
    let values: Vec<f64> = match DataType::from_i32(t.data_type) {
        Some(DataType::Float) => {
            if t.raw_data.is_empty() {
                t.float_data.iter().map(|&v| v as f64).collect()
            } else if !t.raw_data.chunks_exact(4).remainder().is_empty() {
                return Err(parse_err(format!(
                    "{what}: {} bytes of raw FLOAT data",
                    t.raw_data.len()
                )));
            } else {
                t.raw_data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                    .collect()
            }
        }
        Some(DataType::Double) => {
            if t.raw_data.is_empty() {
                t.double_data.clone()
            } else if !t.raw_data.chunks_exact(8).remainder().is_empty() {
                return Err(parse_err(format!(
                    "{what}: {} bytes of raw DOUBLE data",
                    t.raw_data.len()
                )));
            } else {
                t.raw_data
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect()
            }
        }
        other => {
            let name = other.map_or_else(|| t.data_type.to_string(), |d| d.as_str().into());
            return Err(unsupported(format!(
                "{what} has element type {name}; expected FLOAT or DOUBLE"
            )));
        }
    };
    let mut expected: usize = 1;
    for &d in &t.dims {
        expected = usize::try_from(d)
            .ok()
            .and_then(|d| expected.checked_mul(d))
            .ok_or_else(|| parse_err(format!("{what} has dimension {d}")))?;
    }
    if values.len() != expected {
        return Err(parse_err(format!(
            "{what} holds {} values for dimensions {:?}",
            values.len(),
            t.dims
        )));
    }
    Ok(values)
}

fn post_transform(attrs: &Attrs<'_>) -> Result<Post, TreeError> {
    Ok(match attrs.string("post_transform")? {
        None => Post::None,
        Some(s) => match s {
            b"NONE" => Post::None,
            b"LOGISTIC" => Post::Logistic,
            b"SOFTMAX" => Post::Softmax,
            b"SOFTMAX_ZERO" => Post::SoftmaxZero,
            b"PROBIT" => Post::Probit,
            other => {
                return Err(parse_err(format!(
                    "unknown post_transform '{}' (expected NONE, LOGISTIC, SOFTMAX, \
                     SOFTMAX_ZERO or PROBIT)",
                    String::from_utf8_lossy(other)
                )))
            }
        },
    })
}

/// ONNX's `post_transform` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Post {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl Post {
    fn to_ir(self) -> PostTransform {
        match self {
            Post::None => PostTransform::Identity,
            Post::Logistic => PostTransform::Logistic,
            Post::Softmax => PostTransform::Softmax,
            Post::SoftmaxZero => PostTransform::SoftmaxZero,
            Post::Probit => PostTransform::Probit,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Post::None => "NONE",
            Post::Logistic => "LOGISTIC",
            Post::Softmax => "SOFTMAX",
            Post::SoftmaxZero => "SOFTMAX_ZERO",
            Post::Probit => "PROBIT",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes and leaf weights
// ---------------------------------------------------------------------------------------------

/// A node's mode, decoded from its byte string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Split(Cmp),
    Leaf,
}

fn decode_mode(s: &[u8], index: usize) -> Result<Mode, TreeError> {
    Ok(match s {
        b"BRANCH_LEQ" => Mode::Split(Cmp::Le),
        b"BRANCH_LT" => Mode::Split(Cmp::Lt),
        b"BRANCH_GTE" => Mode::Split(Cmp::Ge),
        b"BRANCH_GT" => Mode::Split(Cmp::Gt),
        b"BRANCH_EQ" => Mode::Split(Cmp::Eq),
        b"BRANCH_NEQ" => Mode::Split(Cmp::Ne),
        b"LEAF" => Mode::Leaf,
        other => {
            return Err(parse_err(format!(
                "unknown node mode '{}' at node {index} (expected BRANCH_LEQ, BRANCH_LT, \
                 BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ or LEAF)",
                String::from_utf8_lossy(other)
            )))
        }
    })
}

/// The `nodes_*` attributes, checked for equal lengths.
struct Nodes {
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    feature_ids: Vec<i64>,
    modes: Vec<Mode>,
    values: Vec<f64>,
    true_ids: Vec<i64>,
    false_ids: Vec<i64>,
    tracks_true: Vec<bool>,
}

fn check_len(name: &str, len: usize, reference: &str, n: usize) -> Result<(), TreeError> {
    if len != n {
        return Err(parse_err(format!(
            "{name} has {len} values but {reference} has {n}"
        )));
    }
    Ok(())
}

fn read_nodes(attrs: &Attrs<'_>) -> Result<Nodes, TreeError> {
    let modes = attrs
        .strings("nodes_modes")?
        .iter()
        .enumerate()
        .map(|(i, m)| decode_mode(m, i))
        .collect::<Result<Vec<_>, _>>()?;
    let n = modes.len();
    if n == 0 {
        return Err(parse_err(
            "the ensemble has no nodes (nodes_modes is empty)",
        ));
    }
    let values = attrs.reals("nodes_values")?.unwrap_or_default();
    check_len("nodes_values", values.len(), "nodes_modes", n)?;
    let list = |name: &str| -> Result<Vec<i64>, TreeError> {
        let v = attrs.ints(name)?;
        check_len(name, v.len(), "nodes_modes", n)?;
        Ok(v.to_vec())
    };
    let tracks = attrs.ints("nodes_missing_value_tracks_true")?;
    let tracks_true = if tracks.is_empty() {
        vec![false; n]
    } else {
        check_len(
            "nodes_missing_value_tracks_true",
            tracks.len(),
            "nodes_modes",
            n,
        )?;
        tracks.iter().map(|&t| t != 0).collect()
    };
    Ok(Nodes {
        tree_ids: list("nodes_treeids")?,
        node_ids: list("nodes_nodeids")?,
        feature_ids: list("nodes_featureids")?,
        true_ids: list("nodes_truenodeids")?,
        false_ids: list("nodes_falsenodeids")?,
        modes,
        values,
        tracks_true,
    })
}

/// Leaf weights: `(tree id, node id, column id, weight)` per entry.
struct Weights {
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    ids: Vec<i64>,
    weights: Vec<f64>,
}

fn read_weights(attrs: &Attrs<'_>, prefix: &str) -> Result<Weights, TreeError> {
    let weights_name = format!("{prefix}_weights");
    let weights = attrs.reals(&weights_name)?.unwrap_or_default();
    let n = weights.len();
    let list = |suffix: &str| -> Result<Vec<i64>, TreeError> {
        let name = format!("{prefix}_{suffix}");
        let v = attrs.ints(&name)?;
        check_len(&name, v.len(), &weights_name, n)?;
        Ok(v.to_vec())
    };
    Ok(Weights {
        tree_ids: list("treeids")?,
        node_ids: list("nodeids")?,
        ids: list("ids")?,
        weights,
    })
}

/// One tree of the source, before it becomes an IR [`Tree`]: local node indices into the
/// attribute arrays, and each leaf's weights as `(column, weight)`.
struct SourceTree {
    id: i64,
    /// Indices into the `nodes_*` arrays, in attribute order.
    nodes: Vec<usize>,
    /// Weights per local node index.
    leaf_weights: Vec<Vec<(usize, f64)>>,
    /// Local index of each node id.
    by_id: NodeIds,
}

/// The local index of each node id of a tree: a table indexed by the id (exporters number a
/// tree's nodes from 0, so this is a dense array), and a map for ids the table would not hold
/// cheaply (negative, or far past the ids seen so far).
#[derive(Default)]
struct NodeIds {
    dense: Vec<u32>,
    sparse: HashMap<i64, usize>,
}

impl NodeIds {
    const NONE: u32 = u32::MAX;

    fn slot(&self, id: i64) -> Option<usize> {
        let i = usize::try_from(id).ok()?;
        (i < self.dense.len().max(1024) * 2).then_some(i)
    }

    /// Records `id` at `local`; false when `id` was already there.
    fn insert(&mut self, id: i64, local: usize) -> bool {
        match (self.slot(id), u32::try_from(local)) {
            (Some(i), Ok(l)) if l != Self::NONE => {
                if i >= self.dense.len() {
                    self.dense.resize(i + 1, Self::NONE);
                }
                if self.dense[i] != Self::NONE || self.sparse.contains_key(&id) {
                    return false;
                }
                self.dense[i] = l;
                true
            }
            _ => {
                let in_dense = self
                    .slot(id)
                    .and_then(|i| self.dense.get(i))
                    .is_some_and(|&l| l != Self::NONE);
                !in_dense && self.sparse.insert(id, local).is_none()
            }
        }
    }

    fn get(&self, id: i64) -> Option<usize> {
        if let Some(&l) = usize::try_from(id).ok().and_then(|i| self.dense.get(i)) {
            if l != Self::NONE {
                return Some(l as usize);
            }
        }
        self.sparse.get(&id).copied()
    }

    /// The local index of an id known to be there.
    fn of(&self, id: i64) -> usize {
        self.get(id)
            .expect("node id checked when the tree was grouped")
    }
}

/// Groups nodes and weights per tree, checking ids; `n_cols` bounds the weight column ids
/// (named `column` in messages: "class" or "target").
fn group_trees(
    nodes: &Nodes,
    weights: &Weights,
    n_cols: usize,
    column: &str,
) -> Result<Vec<SourceTree>, TreeError> {
    let mut by_tree: BTreeMap<i64, SourceTree> = BTreeMap::new();
    for (i, &t) in nodes.tree_ids.iter().enumerate() {
        let tree = by_tree.entry(t).or_insert_with(|| SourceTree {
            id: t,
            nodes: Vec::new(),
            leaf_weights: Vec::new(),
            by_id: NodeIds::default(),
        });
        let local = tree.nodes.len();
        if !tree.by_id.insert(nodes.node_ids[i], local) {
            return Err(parse_err(format!(
                "tree {t}: node id {} appears twice",
                nodes.node_ids[i]
            )));
        }
        tree.nodes.push(i);
        tree.leaf_weights.push(Vec::new());
    }
    for k in 0..weights.weights.len() {
        let (t, n, c, w) = (
            weights.tree_ids[k],
            weights.node_ids[k],
            weights.ids[k],
            weights.weights[k],
        );
        let local = by_tree
            .get(&t)
            .and_then(|tree| tree.by_id.get(n))
            .ok_or_else(|| {
                parse_err(format!(
                    "{column} weight {k} is for node {n} of tree {t}, which does not exist"
                ))
            })?;
        let tree = by_tree.get_mut(&t).expect("tree exists");
        if nodes.modes[tree.nodes[local]] != Mode::Leaf {
            return Err(parse_err(format!(
                "{column} weight {k} is for node {n} of tree {t}, which is not a leaf"
            )));
        }
        let col = usize::try_from(c)
            .ok()
            .filter(|&c| c < n_cols)
            .ok_or_else(|| {
                parse_err(format!(
                    "{column} weight {k} is for {column} {c}, outside 0..{n_cols}"
                ))
            })?;
        tree.leaf_weights[local].push((col, w));
    }
    Ok(by_tree.into_values().collect())
}

/// Whether a column receives a weight on every row (some tree has one at each of its leaves),
/// on no row (no weight at all), or on some rows only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    Always,
    Never,
    Sometimes,
}

fn coverage(trees: &[SourceTree], nodes: &Nodes, col: usize) -> Coverage {
    let is_leaf = |i: usize| nodes.modes[i] == Mode::Leaf;
    let mut any = false;
    for tree in trees {
        let mut all = true;
        for (local, &i) in tree.nodes.iter().enumerate() {
            if !is_leaf(i) {
                continue;
            }
            let has = tree.leaf_weights[local].iter().any(|&(c, _)| c == col);
            any |= has;
            all &= has;
        }
        if all {
            return Coverage::Always;
        }
    }
    if any {
        Coverage::Sometimes
    } else {
        Coverage::Never
    }
}

/// Builds the IR trees. `n_cols` is the number of output columns; `min_max` asks for the
/// stricter leaf checks a MIN / MAX aggregate needs; `every_column` makes every tree of a
/// several-column model a vector tree, so that it counts for every column (ONNX Runtime's
/// AVERAGE divides each column by the number of all trees, MIN / MAX compare all trees).
fn build_trees(
    source: &[SourceTree],
    nodes: &Nodes,
    n_cols: usize,
    min_max: bool,
    every_column: bool,
) -> Result<(Vec<Tree>, usize), TreeError> {
    let mut max_feature: Option<u32> = None;
    let mut trees = Vec::with_capacity(source.len());
    for st in source {
        let t = st.id;
        let m = st.nodes.len();
        // Root: the one node no split points to.
        let mut referenced = vec![false; m];
        for &i in &st.nodes {
            if let Mode::Split(_) = nodes.modes[i] {
                for (which, child) in [("true", nodes.true_ids[i]), ("false", nodes.false_ids[i])] {
                    let local = st.by_id.get(child).ok_or_else(|| {
                        parse_err(format!(
                            "tree {t}: node {} has {which} child {child}, which does not exist",
                            nodes.node_ids[i]
                        ))
                    })?;
                    referenced[local] = true;
                }
            }
        }
        let roots: Vec<usize> = (0..m).filter(|&l| !referenced[l]).collect();
        let root = match roots.as_slice() {
            [r] => *r,
            [] => {
                return Err(parse_err(format!(
                    "tree {t} has no root (its nodes form a cycle)"
                )))
            }
            many => {
                return Err(parse_err(format!(
                    "tree {t} has {} roots (node ids {:?}...)",
                    many.len(),
                    many.iter()
                        .take(3)
                        .map(|&l| nodes.node_ids[st.nodes[l]])
                        .collect::<Vec<_>>()
                )))
            }
        };

        // Leaf layout.
        let cols: HashSet<usize> = st
            .leaf_weights
            .iter()
            .flat_map(|w| w.iter().map(|&(c, _)| c))
            .collect();
        let leaf_kind = if n_cols == 1 {
            LeafKind::Scalar { output: 0 }
        } else if every_column {
            LeafKind::Vector
        } else {
            match cols.len() {
                0 => LeafKind::Scalar { output: 0 },
                1 => LeafKind::Scalar {
                    output: *cols.iter().next().expect("one column") as u32,
                },
                _ => LeafKind::Vector,
            }
        };
        let width = match leaf_kind {
            LeafKind::Scalar { .. } => 1,
            LeafKind::Vector => n_cols,
        };

        // Preorder numbering from the root: the true child right after its parent.
        let mut new_id: Vec<Option<u32>> = vec![None; m];
        let mut order = Vec::with_capacity(m);
        let mut stack = vec![root];
        while let Some(l) = stack.pop() {
            if new_id[l].is_some() {
                return Err(parse_err(format!(
                    "tree {t}: node {} is reached twice (shared child or cycle)",
                    nodes.node_ids[st.nodes[l]]
                )));
            }
            new_id[l] = Some(order.len() as u32);
            order.push(l);
            let i = st.nodes[l];
            if let Mode::Split(_) = nodes.modes[i] {
                stack.push(st.by_id.of(nodes.false_ids[i]));
                stack.push(st.by_id.of(nodes.true_ids[i]));
            }
        }
        if order.len() != m {
            return Err(parse_err(format!(
                "tree {t}: {} of its {m} nodes are unreachable from the root",
                m - order.len()
            )));
        }

        let mut tree = Tree {
            leaf_kind,
            ..Tree::default()
        };
        let mut leaf = vec![0.0f64; width];
        for &l in &order {
            let i = st.nodes[l];
            match nodes.modes[i] {
                Mode::Split(cmp) => {
                    let f = u32::try_from(nodes.feature_ids[i]).map_err(|_| {
                        parse_err(format!(
                            "tree {t}: node {} reads feature {}",
                            nodes.node_ids[i], nodes.feature_ids[i]
                        ))
                    })?;
                    max_feature = Some(max_feature.map_or(f, |m| m.max(f)));
                    // NaN: the true branch if the node tracks missing values, otherwise the
                    // comparison's own result (false, except for `!=`).
                    let nan_true = nodes.tracks_true[i] || cmp == Cmp::Ne;
                    let yes = new_id[st.by_id.of(nodes.true_ids[i])].expect("numbered");
                    let no = new_id[st.by_id.of(nodes.false_ids[i])].expect("numbered");
                    tree.push_split(
                        f,
                        cmp,
                        nodes.values[i],
                        Missing::Default,
                        nan_true,
                        yes,
                        no,
                        width,
                    );
                }
                Mode::Leaf => {
                    leaf.iter_mut().for_each(|v| *v = 0.0);
                    let ws = &st.leaf_weights[l];
                    if min_max && n_cols == 1 && ws.len() != 1 {
                        return Err(unsupported(format!(
                            "tree {t}: leaf {} has {} weights; a MIN/MAX ensemble needs exactly \
                             one per leaf",
                            nodes.node_ids[i],
                            ws.len()
                        )));
                    }
                    for &(c, w) in ws {
                        let slot = if width == 1 { 0 } else { c };
                        leaf[slot] += w;
                    }
                    tree.push_leaf(&leaf);
                }
            }
        }
        trees.push(tree);
    }
    let n_features = max_feature.map_or(1, |m| m as usize + 1);
    Ok((trees, n_features))
}

fn resolve_features(
    declared: Option<usize>,
    used: usize,
    any_split: bool,
) -> Result<usize, TreeError> {
    match declared {
        Some(n) if any_split && used > n => Err(parse_err(format!(
            "a node reads feature {} but the input declares {n} features",
            used - 1
        ))),
        Some(n) => Ok(n),
        None => Ok(used),
    }
}

// ---------------------------------------------------------------------------------------------
// Classifier
// ---------------------------------------------------------------------------------------------

/// How ONNX Runtime lays out a two-class classifier's scores.
#[derive(Debug, Clone, PartialEq)]
struct BinaryLayout {
    /// Score columns the trees add to: 1 (single score) or 2 (one per class).
    n_cols: usize,
    binary: BinaryScores,
    base: Vec<f64>,
    transform: PostTransform,
}

/// ONNX Runtime's answer for a `TreeEnsembleClassifier` with two class labels, as observed on
/// ONNX Runtime 1.31 (its `TreeAggregatorClassifier` and `write_scores`) and expressed with the
/// IR. Write `s0`, `s1` for the sums of the class-0 and class-1 weights reached by a row, and
/// `b` for `base_values`. A base value is added to a class's score only on rows where some
/// reached leaf carries a weight for that class; otherwise the score is 0.
///
/// - No weight anywhere is for class 1 and `b` has at most one value: one score
///   `s = s0 + b[0]`. Then
///   - `LOGISTIC`: `[1 - sigmoid(s), sigmoid(s)]`;
///   - `NONE`, `SOFTMAX`, `SOFTMAX_ZERO`: `[1 - s, s]` when no weight is negative ("all
///     positive", e.g. a random forest's averaged probabilities), `[-s, s]` otherwise, with no
///     transform at all;
///   - `PROBIT` writes one meaningful column only: refused.
/// - No class-1 weight and two base values: `[s0 + b[0], 0]` (`b[1]` is dropped), then the
///   post-transform over both columns.
/// - Class-1 weights on every row, at most one base value: `[s0 + b[0], s1]`, then the
///   post-transform over both columns. With two base values ONNX Runtime drops the class-1
///   weights: refused.
/// - Class-1 weights on some rows only: the layout changes from row to row: refused. So is a
///   non-zero base value for a class whose weights reach some rows only.
fn binary_layout(
    post: Post,
    base: &[f64],
    class0: Coverage,
    class1: Coverage,
    all_positive: bool,
) -> Result<BinaryLayout, TreeError> {
    if base.len() > 2 {
        return Err(parse_err(format!(
            "base_values has {} values for 2 classes",
            base.len()
        )));
    }
    let b0 = base.first().copied().unwrap_or(0.0);
    let b0 =
        match class0 {
            Coverage::Always => b0,
            Coverage::Never => 0.0,
            Coverage::Sometimes if b0 == 0.0 => 0.0,
            Coverage::Sometimes => return Err(unsupported(
                "binary classifier with a non-zero base value for class 0, whose weights are on \
                 some leaves only: ONNX Runtime adds it on some rows only",
            )),
        };
    let two_columns = |base: Vec<f64>| BinaryLayout {
        n_cols: 2,
        binary: BinaryScores::PerClass,
        base,
        transform: post.to_ir(),
    };
    match (class1, base.len()) {
        (Coverage::Sometimes, _) => Err(unsupported(
            "binary classifier whose class-1 weights are on some leaves only: ONNX Runtime's \
             output layout would depend on the row",
        )),
        (Coverage::Always, 2) => Err(unsupported(
            "binary classifier with two base_values and class-1 weights: ONNX Runtime drops \
             the class-1 weights in this layout",
        )),
        (Coverage::Always, _) | (Coverage::Never, 2) => Ok(two_columns(vec![b0, 0.0])),
        (Coverage::Never, _) => {
            if class0 == Coverage::Never {
                return Err(parse_err("binary classifier without any class weight"));
            }
            let (binary, transform) = match post {
                Post::Probit => {
                    return Err(unsupported(
                        "binary classifier with one score column and post_transform PROBIT: \
                         ONNX Runtime writes a single meaningful column",
                    ))
                }
                Post::Logistic => (BinaryScores::OneMinus, PostTransform::Logistic),
                Post::None | Post::Softmax | Post::SoftmaxZero if all_positive => {
                    (BinaryScores::OneMinus, PostTransform::Identity)
                }
                Post::None | Post::Softmax | Post::SoftmaxZero => {
                    (BinaryScores::NegatePositive, PostTransform::Identity)
                }
            };
            Ok(BinaryLayout {
                n_cols: 1,
                binary,
                base: vec![b0],
                transform,
            })
        }
    }
}

fn class_labels(attrs: &Attrs<'_>) -> Result<ClassLabels, TreeError> {
    let ints = attrs.ints("classlabels_int64s")?;
    let strings = attrs.strings("classlabels_strings")?;
    match (ints.is_empty(), strings.is_empty()) {
        (false, true) => Ok(ClassLabels::Int(ints.to_vec())),
        (true, false) => strings
            .iter()
            .map(|s| {
                String::from_utf8(s.clone())
                    .map_err(|_| parse_err("a class label in classlabels_strings is not UTF-8"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ClassLabels::Str),
        (false, false) => Err(parse_err(
            "both classlabels_int64s and classlabels_strings are given",
        )),
        (true, true) => Err(parse_err(
            "neither classlabels_int64s nor classlabels_strings is given",
        )),
    }
}

fn classifier(attrs: &Attrs<'_>, declared: Option<usize>) -> Result<Forest, TreeError> {
    let labels = class_labels(attrs)?;
    let n_classes = labels.len();
    if n_classes < 2 {
        return Err(unsupported(format!(
            "classifier with {n_classes} class label(s)"
        )));
    }
    let post = post_transform(attrs)?;
    let base = attrs.reals("base_values")?.unwrap_or_default();
    let nodes = read_nodes(attrs)?;
    let weights = read_weights(attrs, "class")?;
    let source = group_trees(&nodes, &weights, n_classes, "class")?;

    let (n_cols, binary, base_score, transform) = if n_classes > 2 {
        if !base.is_empty() && base.len() != n_classes {
            return Err(parse_err(format!(
                "base_values has {} values for {n_classes} classes",
                base.len()
            )));
        }
        let base = if base.is_empty() {
            vec![0.0; n_classes]
        } else {
            base
        };
        (n_classes, BinaryScores::PerClass, base, post.to_ir())
    } else {
        let all_positive = !weights.weights.iter().any(|&w| w < 0.0);
        let layout = binary_layout(
            post,
            &base,
            coverage(&source, &nodes, 0),
            coverage(&source, &nodes, 1),
            all_positive,
        )?;
        (layout.n_cols, layout.binary, layout.base, layout.transform)
    };

    let (trees, used) = build_trees(&source, &nodes, n_cols, false, false)?;
    let any_split = nodes.modes.iter().any(|m| *m != Mode::Leaf);
    let n_features = resolve_features(declared, used, any_split)?;
    Ok(Forest {
        n_features,
        feature_names: None,
        categorical_features: Vec::new(),
        n_outputs: n_cols,
        base_score,
        aggregate: Aggregate::Sum,
        accumulate: Accumulate::F64,
        post_transform: transform,
        task: Task::Classification { n_classes, binary },
        class_labels: Some(labels),
        trees,
        predicts_label_only: false,
        source: SourceFormat::OnnxMl,
    })
}

// ---------------------------------------------------------------------------------------------
// Regressor
// ---------------------------------------------------------------------------------------------

fn aggregate_function(attrs: &Attrs<'_>) -> Result<Aggregate, TreeError> {
    Ok(match attrs.string("aggregate_function")? {
        None => Aggregate::Sum,
        Some(s) => match s {
            b"SUM" => Aggregate::Sum,
            b"AVERAGE" => Aggregate::Average,
            b"MIN" => Aggregate::Min,
            b"MAX" => Aggregate::Max,
            other => {
                return Err(parse_err(format!(
                    "unknown aggregate_function '{}' (expected SUM, AVERAGE, MIN or MAX)",
                    String::from_utf8_lossy(other)
                )))
            }
        },
    })
}

fn regressor(attrs: &Attrs<'_>, declared: Option<usize>) -> Result<Forest, TreeError> {
    let post = post_transform(attrs)?;
    let aggregate = aggregate_function(attrs)?;
    let base = attrs.reals("base_values")?.unwrap_or_default();
    let nodes = read_nodes(attrs)?;
    let weights = read_weights(attrs, "target")?;
    let n_targets = match attrs.int("n_targets")? {
        Some(n) if n >= 1 => n as usize,
        Some(n) => return Err(parse_err(format!("n_targets is {n}"))),
        None => weights
            .ids
            .iter()
            .copied()
            .max()
            .map_or(1, |m| m.max(0) as usize + 1),
    };
    if !base.is_empty() && base.len() != n_targets {
        return Err(parse_err(format!(
            "base_values has {} values for {n_targets} targets",
            base.len()
        )));
    }
    if n_targets == 1 && matches!(post, Post::Logistic | Post::Softmax | Post::SoftmaxZero) {
        return Err(unsupported(format!(
            "single-target regressor with post_transform {}: ONNX Runtime ignores that \
             transform for one target",
            post.as_str()
        )));
    }
    let source = group_trees(&nodes, &weights, n_targets, "target")?;
    let min_max = matches!(aggregate, Aggregate::Min | Aggregate::Max);
    if min_max && n_targets > 1 {
        // ONNX Runtime takes the min / max over the leaves that carry a weight for the target;
        // the IR takes it over every tree. They agree when each target is on every leaf or on
        // none.
        for col in 0..n_targets {
            let on_every_leaf = source.iter().all(|t| {
                t.nodes.iter().enumerate().all(|(l, &i)| {
                    nodes.modes[i] != Mode::Leaf
                        || t.leaf_weights[l].iter().filter(|&&(c, _)| c == col).count() == 1
                })
            });
            let nowhere = coverage(&source, &nodes, col) == Coverage::Never;
            if !on_every_leaf && !nowhere {
                return Err(unsupported(format!(
                    "MIN/MAX regressor whose target {col} has weights on some leaves only"
                )));
            }
        }
    }
    let every_column = min_max || aggregate == Aggregate::Average;
    let (trees, used) = build_trees(&source, &nodes, n_targets, min_max, every_column)?;
    let any_split = nodes.modes.iter().any(|m| *m != Mode::Leaf);
    let n_features = resolve_features(declared, used, any_split)?;
    Ok(Forest {
        n_features,
        feature_names: None,
        categorical_features: Vec::new(),
        n_outputs: n_targets,
        base_score: if base.is_empty() {
            vec![0.0; n_targets]
        } else {
            base
        },
        aggregate,
        accumulate: Accumulate::F64,
        post_transform: post.to_ir(),
        task: Task::Regression,
        class_labels: None,
        trees,
        predicts_label_only: false,
        source: SourceFormat::OnnxMl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_dense_sparse_and_twice() {
        let mut ids = NodeIds::default();
        // Exporters' 0..n, out of order; a negative id and one far past the rest.
        for (id, local) in [(2, 0), (0, 1), (1, 2), (-5, 3), (1 << 40, 4), (3000, 5)] {
            assert!(ids.insert(id, local), "{id}");
        }
        for (id, local) in [(2, 0), (0, 1), (1, 2), (-5, 3), (1 << 40, 4), (3000, 5)] {
            assert_eq!(ids.get(id), Some(local), "{id}");
            assert_eq!(ids.of(id), local);
        }
        assert!(
            ids.dense.len() <= 3001,
            "the table grows to the ids seen, not past them"
        );
        assert!(ids.sparse.contains_key(&(1 << 40)) && ids.sparse.contains_key(&-5));
        assert_eq!(ids.get(7), None);
        assert_eq!(ids.get(-1), None);
        assert_eq!(ids.get(1 << 41), None);
        // An id given twice is refused wherever it was kept.
        for id in [0, 2, 3000, -5, 1 << 40] {
            assert!(!ids.insert(id, 9), "{id} twice");
        }
        // An id kept in the map before the table reached it is still found, and still once.
        let mut ids = NodeIds::default();
        assert!(ids.insert(5000, 0));
        assert!(ids.sparse.contains_key(&5000));
        for i in 0..3000 {
            assert!(ids.insert(i, (i + 1) as usize));
        }
        assert!(
            !ids.insert(5000, 7),
            "kept in the map, refused from the table"
        );
        assert_eq!(ids.get(5000), Some(0));
        assert_eq!(ids.get(2999), Some(3000));
    }
    use crate::predict_reference;
    use ferroserve_onnx_proto::{
        Dimension, OperatorSetIdProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
    };

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    fn floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 6,
            floats: v.to_vec(),
            ..Default::default()
        }
    }

    fn strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 8,
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 3,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 2,
            i: v,
            ..Default::default()
        }
    }

    fn node(
        op: &str,
        domain: &str,
        input: &[&str],
        output: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> NodeProto {
        NodeProto {
            input: input.iter().map(|s| s.to_string()).collect(),
            output: output.iter().map(|s| s.to_string()).collect(),
            name: format!("{op}_0"),
            op_type: op.into(),
            domain: domain.into(),
            attribute: attrs,
        }
    }

    fn model(nodes: Vec<NodeProto>, n_features: i64) -> ModelProto {
        let input = ValueInfoProto {
            name: "X".into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TypeProtoTensor {
                    elem_type: 1,
                    shape: Some(TensorShapeProto {
                        dim: vec![
                            Dimension {
                                dim_value: None,
                                dim_param: Some("N".into()),
                            },
                            Dimension {
                                dim_value: Some(n_features),
                                dim_param: None,
                            },
                        ],
                    }),
                }),
            }),
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: ML_DOMAIN.into(),
                version: 3,
            }],
            graph: Some(GraphProto {
                node: nodes,
                name: "g".into(),
                input: vec![input],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A stump on feature 1 (`x <= 0.5` is true → node id 20), with sparse, non-zero-based node
    /// ids in tree 7, and the given leaf class weights `[(node, class, weight)]`.
    fn stump_attrs(mode: &str, weights: &[(i64, i64, f32)]) -> Vec<AttributeProto> {
        vec![
            ints("nodes_treeids", &[7, 7, 7]),
            ints("nodes_nodeids", &[10, 20, 30]),
            ints("nodes_featureids", &[1, 0, 0]),
            strings("nodes_modes", &[mode, "LEAF", "LEAF"]),
            floats("nodes_values", &[0.5, 0.0, 0.0]),
            ints("nodes_truenodeids", &[20, 0, 0]),
            ints("nodes_falsenodeids", &[30, 0, 0]),
            ints("class_treeids", &vec![7; weights.len()]),
            ints(
                "class_nodeids",
                &weights.iter().map(|w| w.0).collect::<Vec<_>>(),
            ),
            ints(
                "class_ids",
                &weights.iter().map(|w| w.1).collect::<Vec<_>>(),
            ),
            floats(
                "class_weights",
                &weights.iter().map(|w| w.2).collect::<Vec<_>>(),
            ),
            ints("classlabels_int64s", &[0, 1, 2]),
        ]
    }

    const THREE: &[(i64, i64, f32)] = &[(20, 0, 0.7), (20, 1, 0.2), (20, 2, 0.1), (30, 2, 1.0)];

    fn classifier_model(attrs: Vec<AttributeProto>) -> ModelProto {
        model(
            vec![node(
                "TreeEnsembleClassifier",
                ML_DOMAIN,
                &["X"],
                &["label", "probabilities"],
                attrs,
            )],
            2,
        )
    }

    fn load(m: &ModelProto) -> Result<Forest, TreeError> {
        let f = from_bytes(&m.encode_to_vec())?;
        f.validate()?;
        Ok(f)
    }

    fn replace(mut attrs: Vec<AttributeProto>, a: AttributeProto) -> Vec<AttributeProto> {
        attrs.retain(|x| x.name != a.name);
        attrs.push(a);
        attrs
    }

    fn expect_err(r: Result<Forest, TreeError>, parse: bool, words: &[&str]) {
        let e = r.expect_err("expected an error");
        let msg = e.to_string();
        match (&e, parse) {
            (TreeError::Parse { .. }, true) | (TreeError::Unsupported { .. }, false) => {}
            _ => panic!("wrong error kind: {msg}"),
        }
        for w in words {
            assert!(msg.contains(w), "'{msg}' does not mention '{w}'");
        }
    }

    #[test]
    fn loads_sparse_ids_and_predicts() {
        let f = load(&classifier_model(stump_attrs("BRANCH_LEQ", THREE))).unwrap();
        assert_eq!(f.n_features, 2);
        assert_eq!(f.class_labels, Some(ClassLabels::Int(vec![0, 1, 2])));
        assert_eq!(f.trees.len(), 1);
        let p = predict_reference(&f, &[9.0, 0.5, 9.0, 0.6]);
        assert_eq!(
            p.scores_row(0),
            &[0.7f32 as f64, 0.2f32 as f64, 0.1f32 as f64]
        );
        assert_eq!(p.scores_row(1), &[0.0, 0.0, 1.0]);
        assert_eq!(p.labels, Some(vec![0, 2]));
    }

    #[test]
    fn every_mode_and_missing_rule() {
        // (mode, x, goes to the true node?) with NaN following the comparison when untracked.
        let cases = [
            ("BRANCH_LEQ", 0.5, true),
            ("BRANCH_LT", 0.5, false),
            ("BRANCH_GTE", 0.5, true),
            ("BRANCH_GT", 0.5, false),
            ("BRANCH_EQ", 0.5, true),
            ("BRANCH_NEQ", 0.5, false),
            ("BRANCH_LEQ", f32::NAN, false),
            ("BRANCH_GT", f32::NAN, false),
            ("BRANCH_NEQ", f32::NAN, true),
        ];
        for (mode, x, left) in cases {
            let f = load(&classifier_model(stump_attrs(mode, THREE))).unwrap();
            let p = predict_reference(&f, &[0.0, x]);
            assert_eq!(p.labels.unwrap()[0] == 0, left, "{mode} with {x}");
        }
        // Tracked: NaN goes to the true branch whatever the comparison.
        let attrs = replace(
            stump_attrs("BRANCH_GT", THREE),
            ints("nodes_missing_value_tracks_true", &[1, 0, 0]),
        );
        let f = load(&classifier_model(attrs)).unwrap();
        assert_eq!(
            predict_reference(&f, &[0.0, f32::NAN]).labels.unwrap()[0],
            0
        );
    }

    /// Two-class layouts against answers recorded from ONNX Runtime 1.31 on the same stump
    /// (row 0 reaches node 20, row 1 node 30).
    #[test]
    fn binary_rules_follow_onnx_runtime() {
        const POS: &[(i64, i64, f32)] = &[(20, 0, 0.25), (30, 0, 0.75)];
        const MIX: &[(i64, i64, f32)] = &[(20, 0, -1.0), (30, 0, 2.0)];
        const C1: &[(i64, i64, f32)] = &[(20, 1, 0.25), (30, 1, 0.75)];
        const BOTH: &[(i64, i64, f32)] = &[(20, 0, 0.4), (20, 1, 0.6), (30, 0, 0.9), (30, 1, 0.1)];
        const PART: &[(i64, i64, f32)] = &[(20, 0, 0.25)];
        #[allow(clippy::type_complexity)]
        let cases: &[(&[(i64, i64, f32)], &str, &[f32], [[f64; 2]; 2])] = &[
            (POS, "NONE", &[], [[0.75, 0.25], [0.25, 0.75]]),
            (POS, "NONE", &[0.5], [[0.25, 0.75], [-0.25, 1.25]]),
            (POS, "NONE", &[0.1, 0.2], [[0.35, 0.0], [0.85, 0.0]]),
            (MIX, "NONE", &[], [[1.0, -1.0], [-2.0, 2.0]]),
            (MIX, "NONE", &[0.5], [[0.5, -0.5], [-2.5, 2.5]]),
            (
                POS,
                "LOGISTIC",
                &[],
                [[0.43782, 0.56218], [0.32082, 0.67918]],
            ),
            (
                MIX,
                "LOGISTIC",
                &[0.5],
                [[0.62246, 0.37754], [0.07586, 0.92414]],
            ),
            (
                POS,
                "LOGISTIC",
                &[0.1, 0.2],
                [[0.58662, 0.5], [0.70057, 0.5]],
            ),
            (
                POS,
                "SOFTMAX",
                &[0.1, 0.2],
                [[0.58662, 0.41338], [0.70057, 0.29943]],
            ),
            (POS, "SOFTMAX", &[0.5], [[0.25, 0.75], [-0.25, 1.25]]),
            (MIX, "SOFTMAX", &[], [[1.0, -1.0], [-2.0, 2.0]]),
            (MIX, "SOFTMAX_ZERO", &[0.1, 0.2], [[1.0, 0.0], [1.0, 0.0]]),
            (C1, "NONE", &[], [[0.0, 0.25], [0.0, 0.75]]),
            (C1, "NONE", &[0.5], [[0.0, 0.25], [0.0, 0.75]]),
            (C1, "LOGISTIC", &[], [[0.5, 0.56218], [0.5, 0.67918]]),
            (BOTH, "NONE", &[0.5], [[0.9, 0.6], [1.4, 0.1]]),
            (PART, "LOGISTIC", &[], [[0.43782, 0.56218], [0.5, 0.5]]),
        ];
        for (weights, post, base, want) in cases {
            let mut attrs = stump_attrs("BRANCH_LEQ", weights);
            attrs = replace(attrs, ints("classlabels_int64s", &[0, 1]));
            attrs = replace(attrs, string("post_transform", post));
            if !base.is_empty() {
                attrs = replace(attrs, floats("base_values", base));
            }
            let f = load(&classifier_model(attrs)).unwrap();
            let p = predict_reference(&f, &[0.0, 0.0, 0.0, 1.0]);
            for (r, want_row) in want.iter().enumerate() {
                for (c, want_cell) in want_row.iter().enumerate() {
                    let got = p.scores_row(r)[c];
                    assert!(
                        (got - want_cell).abs() < 1e-5,
                        "{post} {base:?} {weights:?}: row {r} = {:?}, want {:?}",
                        p.scores_row(r),
                        want_row
                    );
                }
            }
        }
        let two = |w: &[(i64, i64, f32)], post: &str, base: &[f32]| {
            let mut attrs = stump_attrs("BRANCH_LEQ", w);
            attrs = replace(attrs, ints("classlabels_int64s", &[0, 1]));
            attrs = replace(attrs, string("post_transform", post));
            if !base.is_empty() {
                attrs = replace(attrs, floats("base_values", base));
            }
            load(&classifier_model(attrs))
        };
        // PROBIT with one column: ONNX Runtime writes NaN in the second one.
        expect_err(two(POS, "PROBIT", &[]), false, &["PROBIT"]);
        // Class-1 weights on one leaf only: the layout would change from row to row.
        expect_err(
            two(&[(20, 0, 0.25), (30, 1, 0.75)], "NONE", &[]),
            false,
            &["some leaves"],
        );
        // Two base values with class-1 weights: ONNX Runtime drops those weights.
        expect_err(two(BOTH, "NONE", &[0.1, 0.2]), false, &["drops"]);
        // A base value that ONNX Runtime adds on some rows only.
        expect_err(two(PART, "NONE", &[0.5]), false, &["some rows"]);
    }

    #[test]
    fn truncated_protobuf_is_a_parse_error() {
        let bytes = classifier_model(stump_attrs("BRANCH_LEQ", THREE)).encode_to_vec();
        for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            expect_err(from_bytes(&bytes[..cut]), true, &["ModelProto"]);
        }
        expect_err(from_bytes(&[]), true, &["no graph"]);
    }

    #[test]
    fn unknown_node_mode_is_named() {
        let m = classifier_model(stump_attrs("BRANCH_SOMETIMES", THREE));
        expect_err(load(&m), true, &["BRANCH_SOMETIMES", "node 0"]);
        // Case matters: the byte string is matched exactly.
        expect_err(
            load(&classifier_model(stump_attrs("branch_gte", THREE))),
            true,
            &["branch_gte"],
        );
    }

    #[test]
    fn extra_operator_is_named() {
        let mut m = classifier_model(stump_attrs("BRANCH_LEQ", THREE));
        let g = m.graph.as_mut().unwrap();
        g.node
            .insert(0, node("MatMul", "", &["X", "W"], &["X2"], vec![]));
        expect_err(load(&m), false, &["MatMul"]);
        let mut m = classifier_model(stump_attrs("BRANCH_LEQ", THREE));
        m.graph.as_mut().unwrap().node[0].op_type = "TreeEnsemble".into();
        expect_err(load(&m), false, &["TreeEnsemble", "opset 5"]);
        // A Mul that is not by one.
        let mut m = classifier_model(stump_attrs("BRANCH_LEQ", THREE));
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(TensorProto {
            name: "two".into(),
            data_type: 1,
            float_data: vec![2.0],
            ..Default::default()
        });
        g.node
            .push(node("Mul", "", &["probabilities", "two"], &["p2"], vec![]));
        expect_err(load(&m), false, &["Mul"]);
    }

    #[test]
    fn harmless_nodes_around_the_ensemble_are_accepted() {
        let mut m = classifier_model(stump_attrs("BRANCH_LEQ", THREE));
        let g = m.graph.as_mut().unwrap();
        g.node[0].input = vec!["Xf".into()];
        g.node
            .insert(0, node("Cast", "", &["X"], &["Xf"], vec![int("to", 1)]));
        g.initializer.push(TensorProto {
            name: "one".into(),
            data_type: 1,
            raw_data: 1.0f32.to_le_bytes().to_vec(),
            ..Default::default()
        });
        g.node.push(node(
            "Cast",
            "",
            &["label"],
            &["label64"],
            vec![int("to", 7)],
        ));
        g.node
            .push(node("Mul", "", &["probabilities", "one"], &["p1"], vec![]));
        g.node.push(node(
            "ZipMap",
            ML_DOMAIN,
            &["p1"],
            &["zip"],
            vec![ints("classlabels_int64s", &[0, 1, 2])],
        ));
        load(&m).unwrap();
        // Casting the features to an integer type changes the model: refused.
        let g = m.graph.as_mut().unwrap();
        g.node[0].attribute = vec![int("to", 7)];
        expect_err(load(&m), false, &["Cast", "INT64"]);
    }

    #[test]
    fn mismatched_attribute_lengths_are_named() {
        let attrs = replace(
            stump_attrs("BRANCH_LEQ", THREE),
            floats("nodes_values", &[0.5, 0.0]),
        );
        expect_err(
            load(&classifier_model(attrs)),
            true,
            &["nodes_values has 2 values"],
        );
        let attrs = replace(stump_attrs("BRANCH_LEQ", THREE), ints("class_ids", &[0, 1]));
        expect_err(load(&classifier_model(attrs)), true, &["class_ids"]);
        let attrs = replace(
            stump_attrs("BRANCH_LEQ", THREE),
            ints("nodes_missing_value_tracks_true", &[1]),
        );
        expect_err(
            load(&classifier_model(attrs)),
            true,
            &["nodes_missing_value_tracks_true"],
        );
    }

    #[test]
    fn bad_node_ids_are_named() {
        // A child that does not exist.
        let attrs = replace(
            stump_attrs("BRANCH_LEQ", THREE),
            ints("nodes_truenodeids", &[21, 0, 0]),
        );
        expect_err(
            load(&classifier_model(attrs)),
            true,
            &["child 21", "does not exist"],
        );
        // The same node id twice.
        let attrs = replace(
            stump_attrs("BRANCH_LEQ", THREE),
            ints("nodes_nodeids", &[10, 20, 20]),
        );
        expect_err(load(&classifier_model(attrs)), true, &["appears twice"]);
        // Both children the same node.
        let attrs = replace(
            stump_attrs("BRANCH_LEQ", THREE),
            ints("nodes_falsenodeids", &[20, 0, 0]),
        );
        expect_err(load(&classifier_model(attrs)), true, &["roots"]);
        // A weight on a node that is not there, or not a leaf.
        let w = [(20, 0, 0.7), (99, 2, 1.0)];
        expect_err(
            load(&classifier_model(stump_attrs("BRANCH_LEQ", &w))),
            true,
            &["node 99"],
        );
        let w = [(10, 0, 0.7), (30, 2, 1.0)];
        expect_err(
            load(&classifier_model(stump_attrs("BRANCH_LEQ", &w))),
            true,
            &["not a leaf"],
        );
        // A class id past the labels.
        let w = [(20, 3, 0.7), (30, 2, 1.0)];
        expect_err(
            load(&classifier_model(stump_attrs("BRANCH_LEQ", &w))),
            true,
            &["class 3"],
        );
        // A cycle: 10 -> 20 -> 10.
        let attrs = stump_attrs("BRANCH_LEQ", &[(30, 0, 1.0)]);
        let attrs = replace(
            attrs,
            strings("nodes_modes", &["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"]),
        );
        let attrs = replace(attrs, ints("nodes_truenodeids", &[20, 10, 0]));
        let attrs = replace(attrs, ints("nodes_falsenodeids", &[30, 30, 0]));
        assert!(load(&classifier_model(attrs)).is_err());
        // A negative feature id.
        let attrs = replace(
            stump_attrs("BRANCH_LEQ", THREE),
            ints("nodes_featureids", &[-1, 0, 0]),
        );
        expect_err(load(&classifier_model(attrs)), true, &["feature -1"]);
        // A feature past the declared input width.
        let attrs = replace(
            stump_attrs("BRANCH_LEQ", THREE),
            ints("nodes_featureids", &[5, 0, 0]),
        );
        expect_err(load(&classifier_model(attrs)), true, &["feature 5"]);
    }

    #[test]
    fn wrong_attribute_type_and_unknown_attribute() {
        let mut bad = floats("nodes_treeids", &[7.0, 7.0, 7.0]);
        bad.ints = vec![7, 7, 7];
        let attrs = replace(stump_attrs("BRANCH_LEQ", THREE), bad);
        expect_err(
            load(&classifier_model(attrs)),
            true,
            &["nodes_treeids", "FLOATS"],
        );
        let mut attrs = stump_attrs("BRANCH_LEQ", THREE);
        attrs.push(ints("nodes_magic", &[1]));
        expect_err(load(&classifier_model(attrs)), false, &["nodes_magic"]);
        let attrs = replace(
            stump_attrs("BRANCH_LEQ", THREE),
            string("post_transform", "SQUASH"),
        );
        expect_err(load(&classifier_model(attrs)), true, &["SQUASH"]);
    }

    fn regressor_model(extra: Vec<AttributeProto>) -> ModelProto {
        let mut attrs = vec![
            ints("nodes_treeids", &[0, 0, 0, 1]),
            ints("nodes_nodeids", &[0, 1, 2, 0]),
            ints("nodes_featureids", &[0, 0, 0, 0]),
            strings("nodes_modes", &["BRANCH_LT", "LEAF", "LEAF", "LEAF"]),
            ints("nodes_truenodeids", &[1, 0, 0, 0]),
            ints("nodes_falsenodeids", &[2, 0, 0, 0]),
            ints("target_treeids", &[0, 0, 1]),
            ints("target_nodeids", &[1, 2, 0]),
            ints("target_ids", &[0, 0, 0]),
            int("n_targets", 1),
        ];
        // nodes_values as a double tensor in raw little-endian bytes.
        let raw: Vec<u8> = [1.5f64, 0.0, 0.0, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        attrs.push(AttributeProto {
            name: "nodes_values_as_tensor".into(),
            r#type: 4,
            t: Some(TensorProto {
                dims: vec![4],
                data_type: 11,
                raw_data: raw,
                ..Default::default()
            }),
            ..Default::default()
        });
        attrs.push(floats("target_weights", &[1.0, 2.0, 10.0]));
        for a in extra {
            attrs = replace(attrs, a);
        }
        model(
            vec![node(
                "TreeEnsembleRegressor",
                ML_DOMAIN,
                &["X"],
                &["Y"],
                attrs,
            )],
            1,
        )
    }

    #[test]
    fn regressor_aggregates() {
        let f = load(&regressor_model(vec![floats("base_values", &[100.0])])).unwrap();
        let p = predict_reference(&f, &[1.0, 2.0]);
        assert_eq!(p.scores, vec![111.0, 112.0]);
        let f = load(&regressor_model(vec![string(
            "aggregate_function",
            "AVERAGE",
        )]))
        .unwrap();
        assert_eq!(predict_reference(&f, &[1.0]).scores, vec![5.5]);
        let f = load(&regressor_model(vec![string("aggregate_function", "MIN")])).unwrap();
        assert_eq!(predict_reference(&f, &[1.0]).scores, vec![1.0]);
        let f = load(&regressor_model(vec![string("aggregate_function", "MAX")])).unwrap();
        assert_eq!(predict_reference(&f, &[1.0]).scores, vec![10.0]);
        expect_err(
            load(&regressor_model(vec![string(
                "aggregate_function",
                "MEDIAN",
            )])),
            true,
            &["MEDIAN"],
        );
        expect_err(
            load(&regressor_model(vec![string("post_transform", "LOGISTIC")])),
            false,
            &["LOGISTIC"],
        );
        expect_err(
            load(&regressor_model(vec![floats("base_values", &[1.0, 2.0])])),
            true,
            &["base_values"],
        );
        // Both the list and the tensor form of the same attribute.
        expect_err(
            load(&regressor_model(vec![floats(
                "nodes_values",
                &[1.0, 0.0, 0.0, 0.0],
            )])),
            true,
            &["nodes_values"],
        );
    }

    /// ONNX Runtime 1.31 divides every target of an AVERAGE by the number of all trees, even
    /// trees that carry no weight for it: `[[0.5, 5.0], [1.0, 5.0]]` here.
    #[test]
    fn average_divides_by_all_trees() {
        let m = regressor_model(vec![
            int("n_targets", 2),
            ints("target_ids", &[0, 0, 1]),
            string("aggregate_function", "AVERAGE"),
        ]);
        let f = load(&m).unwrap();
        let p = predict_reference(&f, &[1.0, 2.0]);
        assert_eq!(p.scores, vec![0.5, 5.0, 1.0, 5.0]);
    }

    /// Corrupting any single byte of a valid model gives a model or an error, never a panic.
    #[test]
    fn corrupted_bytes_never_panic() {
        let bytes = classifier_model(stump_attrs("BRANCH_LEQ", THREE)).encode_to_vec();
        for i in 0..bytes.len() {
            for v in [0u8, 1, 0x7f, 0xff, bytes[i] ^ 0x10] {
                let mut b = bytes.clone();
                b[i] = v;
                if let Ok(f) = from_bytes(&b) {
                    let _ = f.validate();
                }
            }
        }
    }
}
