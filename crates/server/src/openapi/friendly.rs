//! The paths of the friendly routes: `GET /`, `/models`, `/models/{model}`; each model's
//! `/models/<model>/predict` (query parameters, and every body form) and KServe v1 routes; and
//! every route alias, described in its own request and answer shapes.

use ferroserve_core::config::{Answer, Layout, RequestForm, RouteMethod};
use ferroserve_core::ErrorKind::{self, *};
use serde_json::{json, Map, Value};

use super::components::ModelSchemas;
use super::{errors, ok_json, r};
use crate::friendly::parse::Orient;
use crate::friendly::table::Spec;
use crate::friendly::Friendly;
use ferroserve_runtime::Runtime;

/// The errors a predict route reading query parameters answers.
const QUERY_ERRORS: &[ErrorKind] = &[
    InvalidInput,
    NotFound,
    Unprocessable,
    Overloaded,
    Internal,
    Unavailable,
];
/// The errors a predict route reading a body answers.
const BODY_ERRORS: &[ErrorKind] = &[
    InvalidInput,
    NotFound,
    // The body did not arrive in time (--body-read-timeout).
    RequestTimeout,
    TooLarge,
    UnsupportedMediaType,
    Unprocessable,
    Overloaded,
    Internal,
    Unavailable,
];

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

fn method_key(m: RouteMethod) -> &'static str {
    match m {
        RouteMethod::Get => "get",
        RouteMethod::Post => "post",
    }
}

/// Each friendly operation of a model: what it reads (the request body or query parameters)
/// and answers, in terms of the model's schemas.
impl ModelSchemas<'_> {
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
        let kinds = match spec.form {
            RequestForm::Query => QUERY_ERRORS,
            _ => BODY_ERRORS,
        };
        responses.extend(errors(kinds));
        op.insert("responses".into(), Value::Object(responses));
        Value::Object(op)
    }
}

/// `GET /`, unless a route alias (or a conflict between aliases) takes it.
pub(super) fn welcome(paths: &mut Map<String, Value>, f: &Friendly) {
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
                    "docs": { "type": "string" }, "dashboard": { "type": "string" }, "openapi": { "type": "string" } },
                    "required": ["name", "version", "status", "models"], "additionalProperties": false })) } } }),
        );
    }
}

/// `/models`, `/models/{model}`, each model's predict and KServe v1 routes (its schemas into
/// `components`, its tag into `tags`), then every route alias.
pub(super) fn paths(
    paths: &mut Map<String, Value>,
    components: &mut Map<String, Value>,
    tags: &mut Vec<Value>,
    rt: &Runtime,
    f: &Friendly,
    models: &[String],
) {
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
    card_resp.extend(errors(&[NotFound]));
    paths.insert(
        "/models/{model}".into(),
        json!({ "get": { "tags": ["server"], "operationId": "model_card",
            "summary": "What a model reads and answers, and its routes",
            "parameters": [{ "name": "model", "in": "path", "required": true, "schema": { "type": "string", "enum": models } }],
            "responses": card_resp } }),
    );
    for entry in rt.models() {
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
        ms.components(components);
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
        status.extend(errors(&[NotFound, Unavailable]));
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
        let op = if spec.job {
            super::jobs::alias_operation(
                op_id(&["alias", spec.method.as_str(), &spec.path]),
                summary,
                &spec.model,
            )
        } else {
            ms.operation(
                spec,
                op_id(&["alias", spec.method.as_str(), &spec.path]),
                summary,
                description,
            )
        };
        let entry = paths.entry(spec.path.clone()).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(method_key(spec.method).into(), op);
        }
    }
}
