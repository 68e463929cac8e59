//! What ONNX Runtime does not say about a graph, read from the file itself: the class labels of
//! ZipMap nodes (a sequence-of-maps output has no size in its type) and of classifier nodes, the
//! producer and the operators used (for the model's description).

use std::collections::BTreeSet;

use ferroserve_core::ClassLabels;
use ferroserve_onnx_proto::{AttributeProto, ModelProto};
use prost::Message;

/// Facts about a graph that its session does not expose.
#[derive(Debug, Clone, Default)]
pub struct GraphFacts {
    /// Graph output name → labels of the ZipMap node that produces it.
    pub zipmaps: Vec<(String, ClassLabels)>,
    /// Labels of the first classifier node (`classlabels_*` attribute), if any.
    pub classifier_labels: Option<ClassLabels>,
    pub producer: String,
    pub operators: BTreeSet<String>,
}

impl GraphFacts {
    pub fn zipmap_labels(&self, output: &str) -> Option<&ClassLabels> {
        self.zipmaps
            .iter()
            .find(|(n, _)| n == output)
            .map(|(_, l)| l)
    }
}

fn labels_of(attrs: &[AttributeProto]) -> Option<ClassLabels> {
    for a in attrs {
        match a.name.as_str() {
            "classlabels_int64s" | "classlabels_ints" if !a.ints.is_empty() => {
                return Some(ClassLabels::Int(a.ints.clone()))
            }
            "classlabels_strings" if !a.strings.is_empty() => {
                return Some(ClassLabels::Str(
                    a.strings
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect(),
                ))
            }
            _ => {}
        }
    }
    None
}

/// Reads what it can; a file ONNX Runtime accepts but this reader does not simply yields no
/// facts (ONNX Runtime stays the judge of the graph).
pub fn read(bytes: &[u8]) -> GraphFacts {
    let Ok(model) = ModelProto::decode(bytes) else {
        return GraphFacts::default();
    };
    let mut facts = GraphFacts {
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        ..GraphFacts::default()
    };
    let Some(graph) = model.graph else {
        return facts;
    };
    for node in &graph.node {
        facts.operators.insert(node.op_type.clone());
        let labels = labels_of(&node.attribute);
        match (node.op_type.as_str(), labels) {
            ("ZipMap", Some(l)) => {
                if let Some(out) = node.output.first() {
                    facts.zipmaps.push((out.clone(), l));
                }
            }
            (_, Some(l)) if facts.classifier_labels.is_none() => facts.classifier_labels = Some(l),
            _ => {}
        }
    }
    // A ZipMap output renamed by an Identity node (skl2onnx does this) keeps its labels.
    let mut renamed = Vec::new();
    for node in &graph.node {
        if node.op_type == "Identity" {
            if let (Some(i), Some(o)) = (node.input.first(), node.output.first()) {
                if let Some(l) = facts.zipmap_labels(i) {
                    renamed.push((o.clone(), l.clone()));
                }
            }
        }
    }
    facts.zipmaps.extend(renamed);
    facts
}
