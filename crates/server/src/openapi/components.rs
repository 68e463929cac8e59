//! The document's schemas (`#/components/schemas`): those every document has ([`common`]:
//! the one error body, v2 tensors, model metadata, the model card) and each model's own
//! ([`ModelSchemas`], named `<model>.<Thing>`: its rows and records by feature name, every
//! request form, its labels and probabilities), with examples from its `sample_rows`.

use ferroserve_core::{DataType, Problem};
use serde_json::{json, Map, Value};

use super::r;
use crate::friendly::table::Table;

/// A name usable in `#/components/schemas/...`.
fn component_name(model: &str) -> String {
    model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A number, or null for a missing one.
fn number() -> Value {
    json!({ "type": ["number", "null"] })
}

/// The schemas every document has: the one error body, v2 tensors, requests, answers and
/// metadata, the model card.
pub(super) fn common(out: &mut Map<String, Value>, models: &[String]) {
    let problems: Vec<&str> = Problem::ALL.iter().map(|p| p.as_str()).collect();
    out.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "Every error: `error` says what went wrong, which field, what was expected (the v2 error body); validation errors (422) also list each problem in `details`",
            "properties": {
                "error": { "type": "string" },
                "details": { "type": "array", "items": r("ErrorDetail") },
            },
            "required": ["error"],
            "additionalProperties": false,
        }),
    );
    out.insert(
        "ErrorDetail".into(),
        json!({
            "type": "object",
            "description": "One bad row, column or field",
            "properties": {
                "problem": { "type": "string", "enum": problems },
                "row": { "type": "integer", "minimum": 0, "description": "0-based data row (a CSV header is not counted)" },
                "column": { "type": "integer", "minimum": 0, "description": "0-based position in the row" },
                "field": { "type": "string", "description": "feature, query parameter, JSON key or CSV header" },
                "expected": { "type": "string" },
                "got": { "type": "string" },
                "message": { "type": "string", "description": "the whole detail in one line" },
            },
            "required": ["problem", "expected", "message"],
            "additionalProperties": false,
        }),
    );
    let datatypes: Vec<&str> = DataType::ALL.iter().map(|d| d.as_str()).collect();
    let params = json!({ "type": "object", "additionalProperties": { "type": ["string", "number", "boolean"] } });
    out.insert(
        "V2Tensor".into(),
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "shape": { "type": "array", "items": { "type": "integer" } },
                "datatype": { "type": "string", "enum": datatypes },
                "parameters": params,
                "data": { "type": "array" },
            },
            "required": ["name", "shape", "datatype"],
        }),
    );
    out.insert(
        "V2InferRequest".into(),
        json!({
            "type": "object",
            "properties": {
                "id": { "type": "string" },
                "parameters": params,
                "inputs": { "type": "array", "items": r("V2Tensor") },
                "outputs": { "type": "array", "items": {
                    "type": "object",
                    "properties": { "name": { "type": "string" }, "parameters": params },
                    "required": ["name"],
                    "additionalProperties": false,
                } },
            },
            "required": ["inputs"],
            "additionalProperties": false,
        }),
    );
    out.insert(
        "V2InferResponse".into(),
        json!({
            "type": "object",
            "properties": {
                "model_name": { "type": "string" },
                "model_version": { "type": "string" },
                "id": { "type": "string" },
                "parameters": params,
                "outputs": { "type": "array", "items": r("V2Tensor") },
            },
            "required": ["model_name", "model_version", "outputs"],
            "additionalProperties": false,
        }),
    );
    let meta = json!({ "type": "object", "properties": {
        "name": { "type": "string" }, "datatype": { "type": "string", "enum": datatypes },
        "shape": { "type": "array", "items": { "type": "integer" } } },
        "required": ["name", "datatype", "shape"], "additionalProperties": false });
    out.insert(
        "V2ModelMetadata".into(),
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "versions": { "type": "array", "items": { "type": "string" } },
                "platform": { "type": "string" },
                "inputs": { "type": "array", "items": meta },
                "outputs": { "type": "array", "items": meta },
                "parameters": { "type": "object", "properties": {
                    "feature_names": { "type": "array", "items": { "type": "string" } },
                    "class_labels": { "type": "array", "items": { "type": "string" } },
                    "description": { "type": "string" },
                } },
            },
            "required": ["name", "versions", "platform", "inputs", "outputs"],
        }),
    );
    out.insert(
        "V2ModelReady".into(),
        json!({ "type": "object", "properties": { "name": { "type": "string" }, "version": { "type": "string" }, "ready": { "const": true } },
                "required": ["name", "version", "ready"], "additionalProperties": false }),
    );
    out.insert(
        "V2IndexEntry".into(),
        json!({ "type": "object", "properties": {
            "name": { "type": "string" }, "version": { "type": "string" },
            "state": { "type": "string", "enum": ["READY", "UNAVAILABLE"] }, "reason": { "type": "string" } },
            "required": ["name", "state", "reason"], "additionalProperties": false }),
    );
    out.insert(
        "ModelCard".into(),
        json!({
            "type": "object",
            "description": "What a model reads and answers, and the routes that answer with it",
            "properties": {
                "name": { "type": "string", "enum": models },
                "ready": { "type": "boolean" },
                "version": { "type": "string" },
                "versions": { "type": "array", "items": { "type": "string" } },
                "reason": { "type": "string" },
                "task": { "type": "string", "enum": ["classification", "regression"] },
                "features": { "type": "array", "items": { "type": "string" } },
                "feature_aliases": { "type": "object", "additionalProperties": { "type": "string" } },
                "classes": { "type": "array", "items": { "type": "string" } },
                "sample_rows": { "type": "array", "items": { "type": "array", "items": { "type": ["number", "null"] } } },
                "description": { "type": "string" },
                "friendly": { "type": "string" },
                "routes": { "type": "array", "items": {
                    "type": "object",
                    "properties": { "method": { "type": "string", "enum": ["GET", "POST"] }, "path": { "type": "string" } },
                    "required": ["method", "path"], "additionalProperties": false } },
            },
            "required": ["name", "ready", "versions", "routes"],
            "additionalProperties": false,
        }),
    );
}

/// Per-model schemas, named `<model>.<Thing>`.
pub(super) struct ModelSchemas<'a> {
    pub(super) table: &'a Table,
    c: String,
}

impl<'a> ModelSchemas<'a> {
    pub(super) fn new(table: &'a Table) -> Self {
        ModelSchemas {
            table,
            c: component_name(&table.model),
        }
    }

    fn name(&self, thing: &str) -> String {
        format!("{}.{thing}", self.c)
    }

    pub(super) fn rf(&self, thing: &str) -> Value {
        r(&self.name(thing))
    }

    pub(super) fn sample(&self, i: usize) -> &[f64] {
        &self.table.samples[i % self.table.samples.len()]
    }

    pub(super) fn samples(&self) -> Vec<Vec<f64>> {
        self.table.samples.iter().take(3).cloned().collect()
    }

    pub(super) fn record_example(&self, names: &[String], row: &[f64]) -> Value {
        Value::Object(
            names
                .iter()
                .zip(row)
                .map(|(n, v)| (n.clone(), json!(v)))
                .collect(),
        )
    }

    pub(super) fn row_schema(&self, names: &[String]) -> Value {
        let n = names.len();
        json!({
            "type": "array",
            "description": format!("One row: {n} values in this order: {} (null: missing)", names.join(", ")),
            "items": number(),
            "minItems": n,
            "maxItems": n,
            "example": self.sample(0),
        })
    }

    pub(super) fn record_schema(&self, names: &[String]) -> Value {
        let props: Map<String, Value> = names.iter().map(|n| (n.clone(), number())).collect();
        json!({
            "type": "object",
            "description": "One row by feature name (null: missing)",
            "properties": props,
            "required": names,
            "additionalProperties": false,
            "example": self.record_example(names, self.sample(0)),
        })
    }

    /// The value one row answers.
    fn label_schema(&self) -> Value {
        let t = self.table;
        match (&t.classes, t.label_is_text || t.names_from_probabilities) {
            (Some(c), true) => json!({ "type": "string", "enum": c }),
            (Some(c), false) => {
                let ints: Vec<i64> = c.iter().filter_map(|x| x.parse().ok()).collect();
                if ints.len() == c.len() {
                    json!({ "type": "integer", "enum": ints })
                } else {
                    json!({ "type": "integer" })
                }
            }
            (None, _) if t.targets > 1 => json!({
                "type": "array", "items": { "type": ["number", "null"] },
                "minItems": t.targets, "maxItems": t.targets
            }),
            (None, _) => {
                json!({ "type": ["number", "null"], "description": "null where the model answers NaN" })
            }
        }
    }

    fn probabilities_schema(&self) -> Value {
        let k = self.table.classes.as_ref().map_or(0, Vec::len);
        json!({
            "type": "array",
            "description": format!("Class probabilities in class order: {} (null where the model answers NaN)", self.table.classes.as_ref().map(|c| c.join(", ")).unwrap_or_default()),
            "items": { "type": ["number", "null"] },
            "minItems": k,
            "maxItems": k,
        })
    }

    pub(super) fn components(&self, out: &mut Map<String, Value>) {
        let t = self.table;
        let names = &t.names;
        let max = t.max_rows;
        out.insert(self.name("Row"), self.row_schema(names));
        out.insert(self.name("Record"), self.record_schema(names));
        out.insert(
            self.name("Rows"),
            json!({ "type": "array", "items": self.rf("Row"), "minItems": 1, "maxItems": max,
                    "example": self.samples() }),
        );
        let records: Vec<Value> = self
            .samples()
            .iter()
            .map(|s| self.record_example(names, s))
            .collect();
        out.insert(
            self.name("Records"),
            json!({ "type": "array", "items": self.rf("Record"), "minItems": 1, "maxItems": max,
                    "example": records }),
        );
        out.insert(
            self.name("Instances"),
            json!({
                "type": "object",
                "description": "KServe v1 / TF Serving: rows or records under \"instances\"",
                "properties": { "instances": { "anyOf": [self.rf("Rows"), self.rf("Records")] } },
                "required": ["instances"],
                "additionalProperties": false,
                "example": { "instances": self.samples() },
            }),
        );
        out.insert(
            self.name("Array"),
            json!({
                "type": "object",
                "description": format!("Ray Serve NdArray: one row [{n}] or rows [r, {n}]; shape optional (reshapes the flat values); dtype optional (numpy name)", n = t.n()),
                "properties": {
                    "array": { "anyOf": [self.rf("Row"), self.rf("Rows")] },
                    "shape": { "type": "array", "items": { "type": "integer", "minimum": -1 } },
                    "dtype": { "type": "string", "enum": ["float32", "float64", "float", "int32", "int64"] },
                },
                "required": ["array"],
                "additionalProperties": false,
                "example": { "array": self.samples() },
            }),
        );
        let column: Value = json!({ "type": "object", "additionalProperties": number() });
        let col_props: Map<String, Value> =
            names.iter().map(|n| (n.clone(), column.clone())).collect();
        let col_example: Map<String, Value> = names
            .iter()
            .enumerate()
            .map(|(j, n)| {
                let m: Map<String, Value> = self
                    .samples()
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i.to_string(), json!(s[j])))
                    .collect();
                (n.clone(), Value::Object(m))
            })
            .collect();
        out.insert(
            self.name("Columns"),
            json!({
                "type": "object",
                "description": "pandas orient=columns: {feature: {row label: value}}",
                "properties": col_props,
                "required": names,
                "additionalProperties": false,
                "example": col_example,
            }),
        );
        let idx_example: Map<String, Value> = self
            .samples()
            .iter()
            .enumerate()
            .map(|(i, s)| (i.to_string(), self.record_example(names, s)))
            .collect();
        out.insert(
            self.name("Index"),
            json!({
                "type": "object",
                "description": "pandas orient=index: {row label: {feature: value}}",
                "additionalProperties": self.rf("Record"),
                "minProperties": 1,
                "example": idx_example,
            }),
        );
        out.insert(
            self.name("Split"),
            json!({
                "type": "object",
                "description": "pandas orient=split: column names, row labels, rows in the columns' order",
                "properties": {
                    "columns": { "type": "array", "items": { "type": "string", "enum": names }, "minItems": t.n(), "maxItems": t.n(), "uniqueItems": true },
                    "index": { "type": "array" },
                    "data": self.rf("Rows"),
                },
                "required": ["columns", "data"],
                "additionalProperties": false,
                "example": { "columns": names, "index": (0..self.samples().len()).collect::<Vec<_>>(), "data": self.samples() },
            }),
        );
        out.insert(self.name("Label"), self.label_schema());
        let mut pred_props = Map::new();
        pred_props.insert(
            "predictions".into(),
            json!({ "type": "array", "items": self.rf("Label") }),
        );
        if t.is_classifier() {
            out.insert(self.name("Probabilities"), self.probabilities_schema());
            pred_props.insert(
                "probabilities".into(),
                json!({ "type": "array", "items": self.rf("Probabilities") }),
            );
        }
        out.insert(
            self.name("Predictions"),
            json!({
                "type": "object",
                "description": if t.is_classifier() { "One class name (or number) per row; probabilities with ?probabilities=true" } else { "One predicted value per row" },
                "properties": pred_props,
                "required": ["predictions"],
                "additionalProperties": false,
            }),
        );
    }
}
