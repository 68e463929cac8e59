//! `/openapi.json`: an OpenAPI 3.1 document generated from the live repository at start-up.
//! Every model gets typed schemas (its feature names, its classes) with examples from its
//! `sample_rows`; every route alias is described in its own request and answer shapes; every
//! error answer points to the one `Error` schema the server writes ([`crate::error`]).

use ferroserve_core::config::{Answer, Layout, RequestForm, RouteMethod};
use ferroserve_core::{DataType, Problem};
use serde_json::{json, Map, Value};

use crate::friendly::parse::Orient;
use crate::friendly::table::{Spec, Table};
use crate::friendly::Friendly;
use crate::AppState;

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

/// A path segment, percent-encoded where needed.
fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn op_id(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("_")
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": r("Error") } }
    })
}

/// The error answers of an operation.
fn errors(codes: &[u16]) -> Map<String, Value> {
    let mut m = Map::new();
    for &c in codes {
        let d = match c {
            400 => "Malformed request (bad JSON, bad v2 tensors)",
            404 => "Unknown model, version or route",
            413 => "Body over --max-body-bytes, or too many rows for a v2 request",
            415 => "Unsupported Content-Type",
            422 => "The request's data does not fit the model: every bad row, column or field is listed in `details`",
            429 => "The model's queue is full; retry (Retry-After)",
            500 => "The model failed while running",
            503 => "The model is not ready (the reason is in the message); retry (Retry-After)",
            _ => "Error",
        };
        m.insert(c.to_string(), error_response(d));
    }
    m
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn number() -> Value {
    json!({ "type": ["number", "null"] })
}

/// Per-model schemas, named `<model>.<Thing>`.
struct ModelSchemas<'a> {
    table: &'a Table,
    c: String,
}

impl<'a> ModelSchemas<'a> {
    fn new(table: &'a Table) -> Self {
        ModelSchemas {
            table,
            c: component_name(&table.model),
        }
    }

    fn name(&self, thing: &str) -> String {
        format!("{}.{thing}", self.c)
    }

    fn rf(&self, thing: &str) -> Value {
        r(&self.name(thing))
    }

    fn sample(&self, i: usize) -> &[f64] {
        &self.table.samples[i % self.table.samples.len()]
    }

    fn samples(&self) -> Vec<Vec<f64>> {
        self.table.samples.iter().take(3).cloned().collect()
    }

    fn record_example(&self, names: &[String], row: &[f64]) -> Value {
        Value::Object(
            names
                .iter()
                .zip(row)
                .map(|(n, v)| (n.clone(), json!(v)))
                .collect(),
        )
    }

    fn row_schema(&self, names: &[String]) -> Value {
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

    fn record_schema(&self, names: &[String]) -> Value {
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

    fn answer_schema(&self, a: Answer) -> Value {
        let k = self.table.classes.as_ref().map_or(0, Vec::len);
        match a {
            Answer::Label => self.rf("Label"),
            Answer::ClassIndex => {
                json!({ "type": "integer", "minimum": 0, "maximum": k.saturating_sub(1) })
            }
            Answer::Probabilities => self.rf("Probabilities"),
            Answer::Probability => {
                json!({ "type": ["number", "null"], "minimum": 0, "maximum": 1 })
            }
        }
    }

    fn components(&self, out: &mut Map<String, Value>) {
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

    /// The JSON request body a route accepts.
    fn request_schema(&self, spec: &Spec) -> Value {
        let names = spec.display_names(self.table);
        let custom = spec.names.is_some();
        let (row, record) = if custom {
            (self.row_schema(names), self.record_schema(names))
        } else {
            (self.rf("Row"), self.rf("Record"))
        };
        let rows = json!({ "type": "array", "items": row, "minItems": 1, "maxItems": self.table.max_rows });
        let records = json!({ "type": "array", "items": record, "minItems": 1, "maxItems": self.table.max_rows });
        let keyed = |inner: Value, k: &str| {
            json!({
                "type": "object",
                "properties": { k: inner },
                "required": [k],
                "additionalProperties": false,
            })
        };
        match (spec.form, &spec.request_key) {
            (RequestForm::Rows, Some(k)) => keyed(rows, k),
            (RequestForm::Records, Some(k)) => keyed(records, k),
            (_, Some(k)) => keyed(json!({ "anyOf": [rows, records] }), k),
            (RequestForm::Rows, None) => json!({ "anyOf": [rows, row] }),
            (RequestForm::Records, None) => json!({ "anyOf": [records, record] }),
            (RequestForm::Instances, None) => self.rf("Instances"),
            (RequestForm::Array, None) => self.rf("Array"),
            (RequestForm::Auto | RequestForm::Csv | RequestForm::Query, None) => json!({
                "anyOf": [
                    rows, row, records, record,
                    self.rf("Instances"), self.rf("Array"), self.rf("Split"), self.rf("Columns"), self.rf("Index"),
                ]
            }),
        }
    }

    fn request_examples(&self, spec: &Spec) -> Map<String, Value> {
        let names = spec.display_names(self.table);
        let rows = self.samples();
        let records: Vec<Value> = rows.iter().map(|s| self.record_example(names, s)).collect();
        let mut ex = Map::new();
        let mut add = |k: &str, summary: &str, v: Value| {
            ex.insert(k.into(), json!({ "summary": summary, "value": v }));
        };
        match (spec.form, &spec.request_key) {
            (_, Some(k)) => {
                let inner = if spec.form == RequestForm::Records {
                    json!(records)
                } else {
                    json!(rows)
                };
                add("rows", "rows", json!({ k: inner }));
            }
            (RequestForm::Rows, None) => {
                add("rows", "rows, in feature order", json!(rows));
                add("row", "one row", json!(rows[0]));
            }
            (RequestForm::Records, None) => {
                add("records", "records by feature name", json!(records));
                add("record", "one record", records[0].clone());
            }
            (RequestForm::Instances, None) => add(
                "instances",
                "KServe v1 instances",
                json!({ "instances": rows }),
            ),
            (RequestForm::Array, None) => add("array", "Ray array", json!({ "array": rows })),
            (RequestForm::Auto | RequestForm::Csv | RequestForm::Query, None) => {
                add("rows", "rows, in feature order", json!(rows));
                add(
                    "records",
                    "records by feature name (pandas orient=records)",
                    json!(records),
                );
                add("record", "one record", records[0].clone());
                add(
                    "instances",
                    "KServe v1 instances",
                    json!({ "instances": rows }),
                );
                add("array", "Ray Serve array", json!({ "array": rows }));
                add(
                    "split",
                    "pandas orient=split",
                    json!({ "columns": names, "data": rows }),
                );
            }
        }
        ex
    }

    fn csv_example(&self, spec: &Spec, header: bool) -> String {
        let mut s = String::new();
        if header {
            let names: Vec<String> = spec
                .display_names(self.table)
                .iter()
                .map(|n| {
                    if n.contains([',', '"', '\n']) {
                        format!("\"{}\"", n.replace('"', "\"\""))
                    } else {
                        n.clone()
                    }
                })
                .collect();
            s.push_str(&names.join(","));
            s.push('\n');
        }
        for row in self.samples() {
            let v: Vec<String> = row.iter().map(|x| x.to_string()).collect();
            s.push_str(&v.join(","));
            s.push('\n');
        }
        s
    }

    fn request_body(&self, spec: &Spec) -> Value {
        let mut content = Map::new();
        let json_ok = !matches!(spec.form, RequestForm::Csv);
        let csv_ok = matches!(spec.form, RequestForm::Auto | RequestForm::Csv);
        if json_ok {
            content.insert(
                "application/json".into(),
                json!({ "schema": self.request_schema(spec), "examples": self.request_examples(spec) }),
            );
        }
        if csv_ok {
            let field = spec.csv_field.clone().unwrap_or_else(|| "file".into());
            content.insert(
                "multipart/form-data".into(),
                json!({
                    "schema": {
                        "type": "object",
                        "properties": { field.clone(): { "type": "string", "format": "binary", "contentMediaType": "text/csv",
                            "description": "CSV file: one row per line, header row optional; an empty cell, NA or NaN is a missing value, infinities are refused" } },
                        "required": [field],
                    }
                }),
            );
            content.insert(
                "text/csv".into(),
                json!({
                    "schema": { "type": "string", "description": "CSV: one row per line in feature order, or any order under a header row of feature names; an empty cell, NA or NaN is a missing value, infinities are refused" },
                    "example": self.csv_example(spec, spec.form == RequestForm::Auto),
                }),
            );
        }
        json!({ "required": true, "content": content })
    }

    /// The 200 answer of a route.
    fn response_schema(&self, spec: &Spec) -> Value {
        let v = self.answer_schema(spec.answer);
        let probs = self.table.is_classifier() && spec.layout != Layout::List;
        let either = |one: Value| {
            if spec.unwrap_single {
                json!({ "anyOf": [one.clone(), { "type": "array", "items": one }] })
            } else {
                json!({ "type": "array", "items": one })
            }
        };
        let k = spec.response_key.as_str();
        let record = |value: Value| {
            let mut props = Map::new();
            props.insert(k.into(), value);
            if probs && k != "probabilities" {
                props.insert("probabilities".into(), self.rf("Probabilities"));
            }
            json!({ "type": "object", "properties": props, "required": [k], "additionalProperties": false })
        };
        if !spec.alias {
            return self.rf("Predictions");
        }
        match spec.layout {
            Layout::Object => {
                let mut props = Map::new();
                props.insert(k.into(), either(v));
                if probs && k != "probabilities" {
                    props.insert("probabilities".into(), either(self.rf("Probabilities")));
                }
                json!({ "type": "object", "properties": props, "required": [k], "additionalProperties": false })
            }
            Layout::List => either(v),
            Layout::Records => either(record(v)),
        }
    }

    fn query_params(&self, spec: &Spec) -> Vec<Value> {
        let t = self.table;
        spec.display_names(t)
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut desc = format!("Feature {i}");
                if n != &t.names[i] {
                    desc = format!("{} ({})", desc, t.names[i]);
                }
                desc.push_str(&format!(
                    ": a finite number within the range of {}, or empty, NA or NaN for a missing value (infinities are refused, as in JSON)",
                    t.input_dtype
                ));
                json!({
                    "name": n, "in": "query", "required": true,
                    "description": desc,
                    "schema": { "type": "number" },
                    "example": self.sample(0)[i],
                })
            })
            .collect()
    }

    fn option_params(&self, spec: &Spec, with_orient: bool) -> Vec<Value> {
        let mut p = Vec::new();
        let taken = |n: &str| spec.lookup(self.table, n).is_some();
        if self.table.is_classifier() && spec.layout != Layout::List && !taken("probabilities") {
            p.push(json!({
                "name": "probabilities", "in": "query", "required": false,
                "description": "Add the class probabilities to the answer",
                "schema": { "type": "boolean" },
            }));
        }
        if with_orient && !taken("orient") {
            let orients: Vec<&str> = Orient::ALL.iter().map(|o| o.as_str()).collect();
            p.push(json!({
                "name": "orient", "in": "query", "required": false,
                "description": "pandas orient of a JSON body (default: detected from its shape)",
                "schema": { "type": "string", "enum": orients },
            }));
        }
        p
    }

    fn operation(&self, spec: &Spec, id: String, summary: String, description: String) -> Value {
        let mut op = Map::new();
        op.insert("tags".into(), json!([self.table.model]));
        op.insert("operationId".into(), json!(id));
        op.insert(
            "summary".into(),
            json!(spec.summary.clone().unwrap_or(summary)),
        );
        op.insert("description".into(), json!(description));
        let mut params = Vec::new();
        match spec.form {
            RequestForm::Query => params.extend(self.query_params(spec)),
            _ => op
                .insert("requestBody".into(), self.request_body(spec))
                .map_or((), |_| ()),
        }
        let with_orient = matches!(spec.form, RequestForm::Auto);
        params.extend(self.option_params(spec, with_orient));
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        let mut ok = Map::new();
        ok.insert(
            "application/json".into(),
            json!({ "schema": self.response_schema(spec) }),
        );
        if spec.csv_answer {
            ok.insert(
                "text/csv".into(),
                json!({ "schema": { "type": "string", "description": "prediction column (then probability_<class> columns), for Accept: text/csv" } }),
            );
        }
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({ "description": "The answer, one per row", "content": ok }),
        );
        let codes: &[u16] = match spec.form {
            RequestForm::Query => &[400, 404, 422, 429, 500, 503],
            _ => &[400, 404, 413, 415, 422, 429, 500, 503],
        };
        responses.extend(errors(codes));
        op.insert("responses".into(), Value::Object(responses));
        Value::Object(op)
    }
}

fn method_key(m: RouteMethod) -> &'static str {
    match m {
        RouteMethod::Get => "get",
        RouteMethod::Post => "post",
    }
}

fn common_components(out: &mut Map<String, Value>, models: &[String]) {
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

fn v2_paths(paths: &mut Map<String, Value>, models: &[String], example: Option<Value>) {
    let model = json!({ "name": "model", "in": "path", "required": true, "schema": { "type": "string", "enum": models } });
    let version = json!({ "name": "version", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[0-9]+$" }, "example": "1" });
    let get = |id: &str, summary: &str, ok: Value, params: Vec<Value>, codes: &[u16]| {
        let mut responses = Map::new();
        responses.insert("200".into(), ok);
        responses.extend(errors(codes));
        json!({ "get": { "tags": ["v2"], "operationId": id, "summary": summary, "parameters": params, "responses": responses } })
    };
    let server_meta = json!({ "type": "object", "properties": {
        "name": { "type": "string" }, "version": { "type": "string" },
        "extensions": { "type": "array", "items": { "type": "string" } } },
        "required": ["name", "version", "extensions"], "additionalProperties": false });
    paths.insert(
        "/v2".into(),
        get(
            "v2_server_metadata",
            "Server metadata",
            ok_json("name, version, extensions", server_meta.clone()),
            vec![],
            &[],
        ),
    );
    // The path the Open Inference Protocol's own OpenAPI document gives.
    paths.insert(
        "/v2/".into(),
        get(
            "v2_server_metadata_slash",
            "Server metadata (the protocol document's path)",
            ok_json("name, version, extensions", server_meta),
            vec![],
            &[],
        ),
    );
    paths.insert(
        "/v2/health/live".into(),
        get(
            "v2_live",
            "Liveness",
            ok_json("live", json!({ "type": "object", "properties": { "live": { "const": true } }, "required": ["live"], "additionalProperties": false })),
            vec![],
            &[],
        ),
    );
    paths.insert(
        "/v2/health/ready".into(),
        get(
            "v2_ready",
            "Readiness (503 with the reasons when not ready)",
            ok_json("ready", json!({ "type": "object", "properties": { "ready": { "const": true } }, "required": ["ready"], "additionalProperties": false })),
            vec![],
            &[503],
        ),
    );
    paths.insert(
        "/v2/models/{model}".into(),
        get(
            "v2_model_metadata",
            "Model metadata: inputs, outputs, feature names, class labels",
            ok_json("metadata", r("V2ModelMetadata")),
            vec![model.clone()],
            &[404, 503],
        ),
    );
    paths.insert(
        "/v2/models/{model}/ready".into(),
        get(
            "v2_model_ready",
            "Model readiness",
            ok_json("ready", r("V2ModelReady")),
            vec![model.clone()],
            &[404, 503],
        ),
    );
    paths.insert(
        "/v2/models/{model}/versions/{version}".into(),
        get(
            "v2_version_metadata",
            "Version metadata",
            ok_json("metadata", r("V2ModelMetadata")),
            vec![model.clone(), version.clone()],
            &[404, 503],
        ),
    );
    paths.insert(
        "/v2/models/{model}/versions/{version}/ready".into(),
        get(
            "v2_version_ready",
            "Version readiness",
            ok_json("ready", r("V2ModelReady")),
            vec![model.clone(), version.clone()],
            &[404, 503],
        ),
    );
    let stats = json!({ "type": "object", "description": "The v2 statistics extension (Triton's shape)",
        "properties": { "model_stats": { "type": "array", "items": { "type": "object",
            "properties": { "name": { "type": "string" }, "version": { "type": "string" } },
            "required": ["name", "version"] } } },
        "required": ["model_stats"] });
    paths.insert(
        "/v2/models/stats".into(),
        get(
            "v2_all_stats",
            "Statistics of every model version",
            ok_json("statistics", stats.clone()),
            vec![],
            &[],
        ),
    );
    paths.insert(
        "/v2/models/{model}/stats".into(),
        get(
            "v2_model_stats",
            "Statistics of a model's versions",
            ok_json("statistics", stats.clone()),
            vec![model.clone()],
            &[404, 503],
        ),
    );
    paths.insert(
        "/v2/models/{model}/versions/{version}/stats".into(),
        get(
            "v2_version_stats",
            "Statistics of one version",
            ok_json("statistics", stats),
            vec![model.clone(), version.clone()],
            &[404, 503],
        ),
    );
    let tensor_config = json!({ "type": "object", "properties": {
        "name": { "type": "string" }, "data_type": { "type": "string" },
        "dims": { "type": "array", "items": { "type": "integer" } } },
        "required": ["name", "data_type", "dims"] });
    let config = json!({ "type": "object",
        "description": "Triton's model configuration extension: the version as Triton's ModelConfig",
        "properties": { "name": { "type": "string" }, "platform": { "type": "string" },
            "backend": { "type": "string" }, "version_policy": { "type": "object" },
            "max_batch_size": { "type": "integer" },
            "input": { "type": "array", "items": tensor_config.clone() },
            "output": { "type": "array", "items": tensor_config },
            "instance_group": { "type": "array", "items": { "type": "object" } },
            "dynamic_batching": { "type": "object" } },
        "required": ["name", "platform", "backend", "max_batch_size", "input", "output", "instance_group"] });
    paths.insert(
        "/v2/models/{model}/config".into(),
        get(
            "v2_model_config",
            "Model configuration (Triton's shape)",
            ok_json("configuration", config.clone()),
            vec![model.clone()],
            &[404, 503],
        ),
    );
    paths.insert(
        "/v2/models/{model}/versions/{version}/config".into(),
        get(
            "v2_version_config",
            "Configuration of one version (Triton's shape)",
            ok_json("configuration", config),
            vec![model.clone(), version.clone()],
            &[404, 503],
        ),
    );
    let infer = |id: &str, params: Vec<Value>| {
        let mut responses = Map::new();
        responses.insert("200".into(), ok_json("outputs", r("V2InferResponse")));
        responses.extend(errors(&[400, 404, 413, 415, 429, 500, 503]));
        json!({ "post": {
            "tags": ["v2"], "operationId": id,
            "summary": "Inference (Open Inference Protocol v2 JSON)",
            "parameters": params,
            "requestBody": { "required": true, "content": { "application/json": {
                "schema": r("V2InferRequest"),
                "example": example.clone().unwrap_or_else(|| json!({ "inputs": [] })),
            } } },
            "responses": responses,
        } })
    };
    paths.insert(
        "/v2/models/{model}/infer".into(),
        infer("v2_infer", vec![model.clone()]),
    );
    paths.insert(
        "/v2/models/{model}/versions/{version}/infer".into(),
        infer("v2_infer_version", vec![model, version]),
    );
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        ok_json(
            "every model and version with its state",
            json!({ "type": "array", "items": r("V2IndexEntry") }),
        ),
    );
    responses.extend(errors(&[400]));
    paths.insert(
        "/v2/repository/index".into(),
        json!({ "post": {
            "tags": ["v2"], "operationId": "v2_repository_index",
            "summary": "Repository index",
            "requestBody": { "required": false, "content": { "application/json": { "schema": {
                "type": "object", "properties": { "ready": { "type": "boolean" } } } } } },
            "responses": responses,
        } }),
    );
}

/// The OpenAPI document of this server, as it is configured now.
pub fn document(st: &AppState, f: &Friendly) -> Value {
    let models: Vec<String> = st.runtime().models().map(|m| m.name.clone()).collect();
    let mut components = Map::new();
    common_components(&mut components, &models);
    let mut paths = Map::new();
    let mut tags = Vec::new();
    let root_taken = f
        .aliases
        .iter()
        .any(|s| s.path == "/" && s.method == RouteMethod::Get)
        || f.conflicts
            .iter()
            .any(|c| c.path == "/" && c.method == RouteMethod::Get);
    if !root_taken {
        paths.insert(
            "/".into(),
            json!({ "get": { "tags": ["server"], "operationId": "welcome", "summary": "What this server is and where its documentation is",
                "responses": { "200": ok_json("welcome", json!({ "type": "object", "properties": {
                    "name": { "type": "string" }, "version": { "type": "string" }, "message": { "type": "string" },
                    "status": { "type": "string", "enum": ["alive"], "description": "KServe v1 liveness" },
                    "models": { "type": "array", "items": { "type": "string" } },
                    "docs": { "type": "string" }, "openapi": { "type": "string" } },
                    "required": ["name", "version", "status", "models"], "additionalProperties": false })) } } }),
        );
    }
    paths.insert(
        "/metrics".into(),
        json!({ "get": { "tags": ["server"], "operationId": "metrics", "summary": "Prometheus metrics",
            "responses": { "200": { "description": "Prometheus text format",
                "content": { "text/plain": { "schema": { "type": "string" } } } } } } }),
    );
    let mut list_resp = Map::new();
    list_resp.insert(
        "200".into(),
        ok_json(
            "every model",
            json!({ "type": "array", "items": r("ModelCard") }),
        ),
    );
    paths.insert(
        "/models".into(),
        json!({ "get": { "tags": ["server"], "operationId": "list_models", "summary": "Every model: features, classes, routes, readiness", "responses": list_resp } }),
    );
    let mut card_resp = Map::new();
    card_resp.insert("200".into(), ok_json("the model", r("ModelCard")));
    card_resp.extend(errors(&[404]));
    paths.insert(
        "/models/{model}".into(),
        json!({ "get": { "tags": ["server"], "operationId": "model_card",
            "summary": "What a model reads and answers, and its routes",
            "parameters": [{ "name": "model", "in": "path", "required": true, "schema": { "type": "string", "enum": models } }],
            "responses": card_resp } }),
    );
    for entry in st.runtime().models() {
        let name = &entry.name;
        let seg = segment(name);
        let description = f
            .latest_table(name)
            .map(|t| t.description.clone())
            .or_else(|| entry.reason())
            .unwrap_or_default();
        tags.push(json!({ "name": name, "description": description }));
        let Some(table) = f.latest_table(name) else {
            continue;
        };
        let ms = ModelSchemas::new(table);
        ms.components(&mut components);
        let names_line = table.names.join(", ");
        let get_spec = Spec::predict(name, RouteMethod::Get);
        let post_spec = Spec::predict(name, RouteMethod::Post);
        let v1_spec = Spec::kserve_v1(name);
        paths.insert(
            format!("/models/{seg}/predict"),
            json!({
                "get": ms.operation(&get_spec, op_id(&[name, "predict", "query"]),
                    format!("Predict one row from query parameters ({name})"),
                    format!("One query parameter per feature: {names_line}. Feature aliases are accepted too.")),
                "post": ms.operation(&post_spec, op_id(&[name, "predict"]),
                    format!("Predict rows, records, instances, an array or CSV ({name})"),
                    format!("Features in order: {names_line}. JSON rows, one row, records (pandas orient with ?orient=), KServe v1 instances, Ray arrays; CSV as text/csv or a multipart file (header row optional). Answers CSV when Accept prefers text/csv.")),
            }),
        );
        let mut status = Map::new();
        status.insert(
            "200".into(),
            ok_json("ready", json!({ "type": "object", "properties": { "name": { "type": "string" }, "ready": { "const": true } }, "required": ["name", "ready"], "additionalProperties": false })),
        );
        status.extend(errors(&[404, 503]));
        paths.insert(
            format!("/v1/models/{seg}"),
            json!({ "get": { "tags": [name], "operationId": op_id(&[name, "kserve_v1_status"]), "summary": format!("KServe v1 model status ({name})"), "responses": status } }),
        );
        paths.insert(
            format!("/v1/models/{seg}:predict"),
            json!({ "post": ms.operation(&v1_spec, op_id(&[name, "kserve_v1_predict"]),
                format!("KServe v1 predict ({name})"),
                "{\"instances\": [...]} → {\"predictions\": [...]}".into()) }),
        );
    }
    for spec in &f.aliases {
        let Some(table) = f.latest_table(&spec.model) else {
            continue;
        };
        let ms = ModelSchemas::new(table);
        let summary = format!("{} (route alias of {})", spec.path, spec.model);
        let description = format!(
            "Declared in {}/model.toml: reads {}{}, answers {} as {}{}.",
            spec.model,
            spec.form.as_str(),
            spec.request_key
                .as_ref()
                .map(|k| format!(" under \"{k}\""))
                .unwrap_or_default(),
            spec.answer.as_str(),
            spec.layout.as_str(),
            if spec.unwrap_single {
                " (a single row unwrapped)"
            } else {
                ""
            },
        );
        let op = ms.operation(
            spec,
            op_id(&["alias", spec.method.as_str(), &spec.path]),
            summary,
            description,
        );
        let entry = paths.entry(spec.path.clone()).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(method_key(spec.method).into(), op);
        }
    }
    // The v2 example: the first row of the first model that has one.
    let v2_example = st.runtime().models().find_map(|m| {
        let t = f.latest_table(&m.name)?;
        Some(json!({ "inputs": [{
            "name": t.input_name, "shape": [1, t.n()], "datatype": t.input_dtype.as_str(),
            "data": t.samples[0],
        }] }))
    });
    v2_paths(&mut paths, &models, v2_example);
    tags.push(json!({ "name": "server", "description": "The server and its models" }));
    tags.push(json!({ "name": "v2", "description": "Open Inference Protocol (KServe v2 / Triton) REST API" }));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ferroserve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Models served by this ferroserve, with typed request and answer schemas per model. Errors share one body: {\"error\": \"...\", \"details\": [...]}.",
        },
        "tags": tags,
        "paths": paths,
        "components": { "schemas": components },
    })
}
