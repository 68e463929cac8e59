//! The paths of the Open Inference Protocol (v2) REST routes: server and model metadata,
//! health, readiness, statistics, configuration, inference, the repository index.

use ferroserve_core::ErrorKind::{self, *};
use serde_json::{json, Map, Value};

use super::{errors, ok_json, r};
use crate::friendly::Friendly;
use ferroserve_runtime::Runtime;

/// The inference body shown: the first row of the first model that has one.
pub(super) fn example(rt: &Runtime, f: &Friendly) -> Option<Value> {
    rt.models().find_map(|m| {
        let t = f.latest_table(&m.name)?;
        Some(json!({ "inputs": [{
            "name": t.input_name, "shape": [1, t.n()], "datatype": t.input_dtype.as_str(),
            "data": t.samples[0],
        }] }))
    })
}

/// Every v2 path; `example` is the body shown for inference.
pub(super) fn paths(paths: &mut Map<String, Value>, models: &[String], example: Option<Value>) {
    let model = json!({ "name": "model", "in": "path", "required": true, "schema": { "type": "string", "enum": models } });
    let version = json!({ "name": "version", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[0-9]+$" }, "example": "1" });
    let get = |id: &str, summary: &str, ok: Value, params: Vec<Value>, kinds: &[ErrorKind]| {
        let mut responses = Map::new();
        responses.insert("200".into(), ok);
        responses.extend(errors(kinds));
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
            &[Unavailable],
        ),
    );
    paths.insert(
        "/v2/models/{model}".into(),
        get(
            "v2_model_metadata",
            "Model metadata: inputs, outputs, feature names, class labels",
            ok_json("metadata", r("V2ModelMetadata")),
            vec![model.clone()],
            &[NotFound, Unavailable],
        ),
    );
    paths.insert(
        "/v2/models/{model}/ready".into(),
        get(
            "v2_model_ready",
            "Model readiness",
            ok_json("ready", r("V2ModelReady")),
            vec![model.clone()],
            &[NotFound, Unavailable],
        ),
    );
    paths.insert(
        "/v2/models/{model}/versions/{version}".into(),
        get(
            "v2_version_metadata",
            "Version metadata",
            ok_json("metadata", r("V2ModelMetadata")),
            vec![model.clone(), version.clone()],
            &[NotFound, Unavailable],
        ),
    );
    paths.insert(
        "/v2/models/{model}/versions/{version}/ready".into(),
        get(
            "v2_version_ready",
            "Version readiness",
            ok_json("ready", r("V2ModelReady")),
            vec![model.clone(), version.clone()],
            &[NotFound, Unavailable],
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
            &[NotFound, Unavailable],
        ),
    );
    paths.insert(
        "/v2/models/{model}/versions/{version}/stats".into(),
        get(
            "v2_version_stats",
            "Statistics of one version",
            ok_json("statistics", stats),
            vec![model.clone(), version.clone()],
            &[NotFound, Unavailable],
        ),
    );
    let tensors = json!({ "type": ["array", "null"], "items": { "type": "object", "properties": {
        "name": { "type": "string" }, "datatype": { "type": "string" },
        "shape": { "type": "array", "items": { "type": "integer" } }, "data": { "type": "array" } } } });
    let record = json!({ "type": "object", "properties": {
        "id": { "type": "string" }, "time": { "type": "string", "format": "date-time" },
        "model": { "type": "string" }, "version": { "type": "string" },
        "protocol": { "type": "string", "enum": ["http_v2", "grpc", "grpc_stream", "friendly", "job"] },
        "route": { "type": "string" }, "status": { "type": "integer" },
        "error": { "type": ["string", "null"] }, "latency_us": { "type": "integer" },
        "rows": { "type": "integer" }, "rows_omitted": { "type": "integer" },
        "inputs": tensors.clone(), "outputs": tensors },
        "required": ["id", "time", "model", "version", "protocol", "route", "status", "latency_us", "rows"] });
    let page = json!({ "type": "object", "description": "One page of the prediction log, oldest first",
        "properties": { "records": { "type": "array", "items": record },
            "next": { "type": ["string", "null"], "description": "the cursor of the next page; null after the last record" } },
        "required": ["records", "next"] });
    let query = |name: &str, schema: Value, description: &str| json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description });
    let mut op = get(
        "v2_model_predictions",
        "The model's prediction log, read back (needs --prediction-log sqlite)",
        ok_json("records", page),
        vec![
            model.clone(),
            query(
                "since",
                json!({ "type": "string" }),
                "from this time: RFC 3339 UTC, a date, or milliseconds since the epoch",
            ),
            query(
                "until",
                json!({ "type": "string" }),
                "before this time (same forms)",
            ),
            query(
                "version",
                json!({ "type": "string", "pattern": "^[0-9]+$" }),
                "one version",
            ),
            query(
                "outcome",
                json!({ "type": "string" }),
                "success, error, or one status such as 400",
            ),
            query(
                "limit",
                json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 }),
                "records per page",
            ),
            query(
                "cursor",
                json!({ "type": "string", "pattern": "^[0-9]+$" }),
                "the `next` of the previous page",
            ),
        ],
        &[InvalidInput, NotFound, Internal],
    );
    op["get"]["tags"] = json!(["prediction log"]);
    paths.insert("/v2/models/{model}/predictions".into(), op);
    let ms = json!({ "type": ["number", "null"], "description": "milliseconds; null without a request in the step" });
    let sample = json!({ "type": "object", "properties": {
        "t": { "type": "integer", "description": "Unix time (s) at the end of the step" },
        "seconds": { "type": "integer" }, "requests": { "type": "integer" },
        "errors": { "type": "integer" }, "rows": { "type": "integer" },
        "batches": { "type": "integer" }, "batch_rows": { "type": "number" },
        "queue_depth": { "type": "integer" },
        "p50_ms": ms.clone(), "p95_ms": ms.clone(), "p99_ms": ms },
        "required": ["t", "seconds", "requests", "errors", "rows", "batches", "batch_rows", "queue_depth", "p50_ms", "p95_ms", "p99_ms"] });
    let history = json!({ "type": "object", "properties": {
        "model": { "type": "string" },
        "step_seconds": { "type": "integer", "enum": [1, 10] },
        "versions": { "type": "array", "items": { "type": "object", "properties": {
            "version": { "type": "string" },
            "samples": { "type": "array", "items": sample } }, "required": ["version", "samples"] } } },
        "required": ["model", "step_seconds", "versions"] });
    let mut op = get(
        "v2_model_history",
        "The model's traffic over the last hour, kept by the server: requests, errors, rows, batches, queue depth and latency quantiles per step (1 s for up to 600 s, 10 s beyond); versions without traffic are absent",
        ok_json("samples per version, oldest first", history),
        vec![
            model.clone(),
            query(
                "seconds",
                json!({ "type": "integer", "minimum": 1, "maximum": 3600, "default": 300 }),
                "how far back",
            ),
            query(
                "version",
                json!({ "type": "string", "pattern": "^[0-9]+$" }),
                "one version",
            ),
        ],
        &[InvalidInput, NotFound],
    );
    op["get"]["tags"] = json!(["server"]);
    paths.insert("/v2/models/{model}/history".into(), op);
    let caller = json!({ "type": "object", "properties": {
        "auth": { "type": "boolean", "description": "whether keys or tokens are checked" },
        "authenticated": { "type": "boolean", "description": "whether a key or token was presented and accepted" },
        "name": { "type": ["string", "null"], "description": "the key's name, or jwt:SUBJECT" },
        "scopes": { "type": "array", "items": { "type": "string", "enum": ["infer", "read", "manage", "admin"] } },
        "models": { "type": ["array", "null"], "items": { "type": "string" }, "description": "the models the caller is limited to; null for every model" },
        "open": { "type": "array", "items": { "type": "string" }, "description": "what --auth-open leaves open without a key" },
        "model_control": { "type": "string", "enum": ["none", "poll", "explicit"] },
        "may_load": { "type": "boolean", "description": "whether load and unload would be accepted for this caller" } },
        "required": ["auth", "authenticated", "name", "scopes", "models", "open", "model_control", "may_load"] });
    let mut op = get(
        "v2_caller",
        "Who the presented key or token is and what it may do (no scope needed; without a key: what is open)",
        ok_json("the caller", caller),
        vec![],
        &[],
    );
    op["get"]["tags"] = json!(["server"]);
    paths.insert("/v2/caller".into(), op);
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
            &[NotFound, Unavailable],
        ),
    );
    paths.insert(
        "/v2/models/{model}/versions/{version}/config".into(),
        get(
            "v2_version_config",
            "Configuration of one version (Triton's shape)",
            ok_json("configuration", config),
            vec![model.clone(), version.clone()],
            &[NotFound, Unavailable],
        ),
    );
    let infer = |id: &str, params: Vec<Value>| {
        let mut responses = Map::new();
        responses.insert("200".into(), ok_json("outputs", r("V2InferResponse")));
        // 408: the body did not arrive in time (--body-read-timeout); 504: the request's
        // deadline (`timeout` parameter, X-Request-Timeout-Ms) passed in the queue.
        responses.extend(errors(&[
            InvalidInput,
            NotFound,
            RequestTimeout,
            TooLarge,
            UnsupportedMediaType,
            Overloaded,
            Internal,
            Unavailable,
            DeadlineExceeded,
        ]));
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
    responses.extend(errors(&[InvalidInput]));
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
    // Model control: any folder name of the repository, loaded or not.
    let any_model =
        json!({ "name": "model", "in": "path", "required": true, "schema": { "type": "string" } });
    for (verb, summary, body) in [
        (
            "load",
            "Load, reload or replace a model (--model-control-mode explicit); the old versions serve until the new ones are ready",
            json!({ "type": "object", "properties": { "parameters": { "type": "object", "properties": {
                "config": { "type": "string", "description": "A Triton-style JSON model config overriding the model's settings for this load (docs/configuration.md lists the keys honoured)" } },
                "additionalProperties": { "type": "string", "contentEncoding": "base64",
                    "description": "file:<relative path>: a file of the model folder to load instead of the repository's (base64; needs config)" } } } }),
        ),
        (
            "unload",
            "Unload a model (--model-control-mode explicit); requests already accepted are answered",
            json!({ "type": "object", "properties": { "parameters": { "type": "object" } } }),
        ),
    ] {
        let mut responses = Map::new();
        responses.insert("200".into(), ok_json("done", json!({ "type": "object" })));
        let kinds: &[ErrorKind] = if verb == "load" {
            // Internal: files that cannot be written (Triton's "failed to poll from model
            // repository").
            &[InvalidInput, TooLarge, Internal]
        } else {
            &[InvalidInput, TooLarge]
        };
        responses.extend(errors(kinds));
        paths.insert(
            format!("/v2/repository/models/{{model}}/{verb}"),
            json!({ "post": {
                "tags": ["v2"], "operationId": format!("v2_repository_model_{verb}"),
                "summary": summary,
                "parameters": [any_model.clone()],
                "requestBody": { "required": false, "content": { "application/json": { "schema": body } } },
                "responses": responses,
            } }),
        );
    }
}
