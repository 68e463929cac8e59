//! The batch-job routes (`/jobs`, [`crate::jobs`]) and the route aliases that start a job.

use ferroserve_core::ErrorKind;
use serde_json::{json, Map, Value};

use super::{errors, ok_json, r};

/// The schemas of the job routes.
pub(super) fn components(out: &mut Map<String, Value>) {
    out.insert(
        "JobAccepted".into(),
        json!({
            "type": "object",
            "required": ["id", "url", "results_url", "model", "state", "rows_total", "chunks_total"],
            "properties": {
                "id": { "type": "string" },
                "url": { "type": "string", "description": "GET it for the job's state" },
                "results_url": { "type": "string" },
                "model": { "type": "string" },
                "state": { "type": "string", "enum": ["queued", "succeeded"] },
                "rows_total": { "type": "integer" },
                "chunks_total": { "type": "integer" },
            }
        }),
    );
    out.insert(
        "Job".into(),
        json!({
            "type": "object",
            "required": ["id", "url", "model", "state", "rows_total", "rows_done", "rows_failed", "chunks_total", "chunks_done", "chunks_failed", "rows_per_second", "created"],
            "properties": {
                "id": { "type": "string" },
                "url": { "type": "string" },
                "results_url": { "type": "string" },
                "model": { "type": "string" },
                "version": { "type": ["string", "null"] },
                "state": { "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"] },
                "rows_total": { "type": "integer" },
                "rows_done": { "type": "integer", "description": "Rows committed, answered or failed" },
                "rows_failed": { "type": "integer" },
                "chunks_total": { "type": "integer" },
                "chunks_done": { "type": "integer" },
                "chunks_failed": { "type": "integer" },
                "rows_per_second": { "type": "number" },
                "eta_seconds": { "type": ["number", "null"] },
                "created": { "type": "string" },
                "started": { "type": ["string", "null"] },
                "finished": { "type": ["string", "null"] },
                "options": { "type": "object" },
                "errors": {
                    "type": "array",
                    "description": "The failed chunks (at most 100), with the first and last rows each covers",
                    "items": {
                        "type": "object",
                        "properties": {
                            "chunk": { "type": "integer" },
                            "rows": { "type": "array", "items": { "type": "integer" } },
                            "error": { "type": "string" },
                            "attempts": { "type": "integer" },
                        }
                    }
                },
            }
        }),
    );
}

/// The answer of a route alias with `job = true`.
pub(super) fn alias_operation(id: String, summary: String, model: &str) -> Value {
    let mut responses = errors(&[
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::TooLarge,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ]);
    responses.insert("200".into(), ok_json("The job started", r("JobAccepted")));
    json!({
        "tags": [model],
        "operationId": id,
        "summary": summary,
        "description": format!("Declared in {model}/model.toml with job = true: the body, a JSON list of rows or records, becomes a batch job on {model}; answered at once. GET /jobs/{{id}} follows it."),
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "array", "items": {} } } } },
        "responses": responses,
    })
}

pub(super) fn paths(paths: &mut Map<String, Value>) {
    let id_param =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
    let mut create = errors(&[
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::TooLarge,
        ErrorKind::RequestTimeout,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ]);
    create.insert(
        "202".into(),
        ok_json("The job is stored and queued", r("JobAccepted")),
    );
    let mut one = errors(&[
        ErrorKind::NotFound,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ]);
    one.insert("200".into(), ok_json("The job", r("Job")));
    let mut listed = errors(&[
        ErrorKind::NotFound,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ]);
    listed.insert(
        "200".into(),
        ok_json(
            "The newest jobs (at most 100)",
            json!({ "type": "object", "properties": { "jobs": { "type": "array", "items": r("Job") } } }),
        ),
    );
    let mut cancelled = errors(&[
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ]);
    cancelled.insert("200".into(), ok_json("The job, cancelled", r("Job")));
    let mut results = errors(&[
        ErrorKind::NotFound,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ]);
    results.insert(
        "200".into(),
        json!({
            "description": "One line per input row, in input order, as far as the job has got: {\"row\": i, \"prediction\": ...} (or {\"row\": i, \"error\": ...}); CSV to clients that prefer text/csv",
            "content": {
                "application/x-ndjson": { "schema": { "type": "string" } },
                "text/csv": { "schema": { "type": "string" } },
            }
        }),
    );
    paths.insert(
        "/jobs".into(),
        json!({
            "post": {
                "tags": ["jobs"], "operationId": "job_create", "summary": "Start a batch job",
                "description": "A JSON body {\"model\": ..., \"rows\": [[...]]} or {\"model\": ..., \"records\": [{...}]}, or multipart/form-data with a model field and a CSV or JSON Lines file; options chunk_rows, concurrency, retries, timeout_secs, outputs ([\"prediction\", \"probabilities\"]).",
                "requestBody": { "required": true, "content": {
                    "application/json": { "schema": {
                        "type": "object", "required": ["model"],
                        "properties": {
                            "model": { "type": "string" },
                            "version": { "type": "string" },
                            "rows": { "type": "array", "items": { "type": "array" } },
                            "records": { "type": "array", "items": { "type": "object" } },
                            "chunk_rows": { "type": "integer", "minimum": 1 },
                            "concurrency": { "type": "integer", "minimum": 1, "maximum": 64 },
                            "retries": { "type": "integer", "minimum": 0, "maximum": 20 },
                            "timeout_secs": { "type": "number" },
                            "outputs": { "type": "array", "items": { "type": "string", "enum": ["prediction", "probabilities"] } },
                        }
                    } },
                    "multipart/form-data": { "schema": {
                        "type": "object", "required": ["model", "file"],
                        "properties": { "model": { "type": "string" }, "file": { "type": "string", "format": "binary" } }
                    } }
                } },
                "responses": create,
            },
            "get": { "tags": ["jobs"], "operationId": "job_list", "summary": "The newest batch jobs", "responses": listed },
        }),
    );
    paths.insert(
        "/jobs/{id}".into(),
        json!({ "get": { "tags": ["jobs"], "operationId": "job_status", "summary": "A batch job's state and progress", "parameters": id_param, "responses": one } }),
    );
    paths.insert(
        "/jobs/{id}/results".into(),
        json!({ "get": { "tags": ["jobs"], "operationId": "job_results", "summary": "A batch job's results, in input order", "parameters": id_param, "responses": results } }),
    );
    paths.insert(
        "/jobs/{id}/cancel".into(),
        json!({ "post": { "tags": ["jobs"], "operationId": "job_cancel", "summary": "Cancel a batch job", "parameters": id_param, "responses": cancelled } }),
    );
}
