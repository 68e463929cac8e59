//! `/openapi.json`: an OpenAPI 3.1 document generated from the live repository at start-up.
//! Every model gets typed schemas (its feature names, its classes) with examples from its
//! `sample_rows` ([`components`]); every friendly route and route alias is described in its own
//! request and answer shapes ([`friendly`]), beside the v2 routes ([`v2`]); every error answer
//! points to the one `Error` schema the server writes, under the status the one mapping gives
//! its kind ([`crate::error::status_of`], [`errors`]).

mod components;
mod friendly;
mod jobs;
mod v2;

use ferroserve_core::ErrorKind;
use serde_json::{json, Map, Value};

use crate::error::status_of;
use crate::friendly::Friendly;
use ferroserve_runtime::Runtime;

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// What an error answer of each kind means, as the document says it.
fn meaning(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "Malformed request (bad JSON, bad v2 tensors)",
        ErrorKind::NotFound => "Unknown model, version or route",
        ErrorKind::TooLarge => "Body over --max-body-bytes, or too many rows for a v2 request",
        ErrorKind::UnsupportedMediaType => "Unsupported Content-Type",
        ErrorKind::Unprocessable => "The request's data does not fit the model: every bad row, column or field is listed in `details`",
        ErrorKind::Overloaded => "The model's queue is full; retry (Retry-After)",
        ErrorKind::Internal => "The model failed while running",
        ErrorKind::Unavailable => {
            "The model is not ready (the reason is in the message); retry (Retry-After)"
        }
        ErrorKind::DeadlineExceeded => "The request's deadline passed before it was answered",
        ErrorKind::RequestTimeout => "The request body did not arrive in time (--body-read-timeout)",
        ErrorKind::Unauthenticated => "No API key or token, or not a valid one (--api-keys)",
        ErrorKind::Forbidden => "The key or token may not call this route or use this model",
        ErrorKind::RateLimited => "A rate limit of the key or the model is reached; retry after Retry-After seconds",
    }
}

/// The error answers of an operation that may fail with `kinds`: each under the status
/// [`status_of`] gives it, in the one `Error` body, in status order.
fn errors(kinds: &[ErrorKind]) -> Map<String, Value> {
    let mut answers: Vec<(u16, ErrorKind)> =
        kinds.iter().map(|&k| (status_of(k).as_u16(), k)).collect();
    answers.sort_by_key(|&(status, _)| status);
    let mut m = Map::new();
    for (status, kind) in answers {
        m.insert(
            status.to_string(),
            json!({
                "description": meaning(kind),
                "content": { "application/json": { "schema": r("Error") } }
            }),
        );
    }
    m
}

/// The OpenAPI document of this server, as it is configured now.
pub fn document(rt: &Runtime, f: &Friendly, secured: bool) -> Value {
    let models: Vec<String> = rt.models().map(|m| m.name.clone()).collect();
    let mut components = Map::new();
    components::common(&mut components, &models);
    let mut paths = Map::new();
    let mut tags = Vec::new();
    friendly::welcome(&mut paths, f);
    paths.insert(
        "/metrics".into(),
        json!({ "get": { "tags": ["server"], "operationId": "metrics", "summary": "Prometheus metrics",
            "responses": { "200": { "description": "Prometheus text format",
                "content": { "text/plain": { "schema": { "type": "string" } } } } } } }),
    );
    friendly::paths(&mut paths, &mut components, &mut tags, rt, f, &models);
    v2::paths(&mut paths, &models, v2::example(rt, f));
    jobs::components(&mut components);
    jobs::paths(&mut paths);
    tags.push(json!({ "name": "jobs", "description": "Batch jobs: many rows, run in the background, results in input order" }));
    tags.push(json!({ "name": "server", "description": "The server and its models" }));
    tags.push(json!({ "name": "v2", "description": "Open Inference Protocol (KServe v2 / Triton) REST API" }));
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ferroserve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Models served by this ferroserve, with typed request and answer schemas per model. Errors share one body: {\"error\": \"...\", \"details\": [...]}.",
        },
        "tags": tags,
        "paths": paths,
        "components": { "schemas": components },
    });
    if secured {
        secure(&mut doc);
    }
    doc
}

/// With API keys: the two ways to send one (Swagger UI's "Authorize"), required everywhere but
/// on the health routes, and the refusals every operation may answer.
fn secure(doc: &mut Value) {
    doc["components"]["securitySchemes"] = json!({
        "bearer": { "type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY, or a JSON Web Token when the server takes them (docs/security.md)" },
        "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" }
    });
    doc["security"] = json!([{ "bearer": [] }, { "apiKey": [] }]);
    let refusals = errors(&[
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::RateLimited,
    ]);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let health = path.starts_with("/v2/health/") || path.ends_with("/ready");
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            if health {
                op.insert("security".into(), json!([]));
            } else if let Some(resp) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for (code, r) in &refusals {
                    resp.entry(code.clone()).or_insert_with(|| r.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_come_from_the_one_status_mapping() {
        let m = errors(&[
            ErrorKind::Unavailable,
            ErrorKind::InvalidInput,
            ErrorKind::NotFound,
        ]);
        let codes: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(codes, ["400", "404", "503"]);
        assert_eq!(m["404"]["description"], "Unknown model, version or route");
        assert_eq!(
            m["503"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        assert!(errors(&[]).is_empty());
    }
}
