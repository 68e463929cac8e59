//! The friendly routes: the request shapes people write by hand, for every model.
//!
//! - `GET /models`, `GET /models/{model}`: what each model reads and answers.
//! - `GET /models/{model}/predict?<feature>=<value>&...`: one row from query parameters.
//! - `POST /models/{model}/predict`: rows `[[...]]`, one row `[...]`, records `[{...}]` or one
//!   record `{...}` (any pandas `orient`, query parameter `orient`), KServe v1
//!   `{"instances": [...]}`, Ray `{"array": ..., "shape": ..., "dtype": ...}`, CSV (a `text/csv`
//!   body or a multipart file, header row optional), or a form; answered
//!   `{"predictions": [...]}` (class names when the model has them; `?probabilities=true` adds
//!   `"probabilities"`), or CSV to clients that accept `text/csv` first.
//! - `POST /v1/models/{model}:predict`, `GET /v1/models/{model}`: KServe v1.
//! - Route aliases from `model.toml` (`[[routes]]`): the exact URLs and shapes of hand-written
//!   services; a path claimed by several models is served by the one `--route-owner` names.
//!
//! Requests are read straight into one row buffer ([`parse`]), checked against the model's
//! features ([`table`]), run by the runtime's inference service as v2 requests are
//! ([`ferroserve_runtime::service`]), and answered straight from the output tensors
//! ([`answer`]). Every problem with the data is listed in one 422 answer.

pub mod answer;
pub mod custom;
pub mod parse;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use ferroserve_core::config::{Layout, RequestForm, RouteMethod};
use ferroserve_core::{
    AdapterRequest, ErrorDetail, ErrorKind, InferError, InferRequest, Parameters, Problem,
    RequestedOutput, Tensor,
};
use ferroserve_runtime::service::deadline;
use ferroserve_runtime::{Call, Deadline, Origin, ServedVersion, Transport, VersionState};
use serde_json::json;

use crate::body::{read_body, Limit};
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;
use answer::{Answerer, Outputs};
use parse::Parsed;
use table::{Spec, Table};

/// A route alias claimed by several models that `--route-owner` does not settle.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub method: RouteMethod,
    pub path: String,
    pub models: Vec<String>,
}

struct Builtin {
    get: Arc<Spec>,
    post: Arc<Spec>,
    v1: Arc<Spec>,
}

/// What a route alias path answers for one method.
#[derive(Clone)]
enum Target {
    Alias(Arc<Spec>),
    Conflict(Conflict),
}

/// Everything the friendly routes work out from one snapshot of the model set
/// ([`crate::views`]).
pub struct Friendly {
    tables: HashMap<String, BTreeMap<u64, Arc<Table>>>,
    builtin: HashMap<String, Builtin>,
    /// Route aliases served, in path order.
    pub aliases: Vec<Arc<Spec>>,
    pub conflicts: Vec<Conflict>,
    /// Models the friendly routes cannot serve, and why.
    pub untabular: BTreeMap<String, String>,
    /// The alias paths, each with what its GET and POST answer: the one lookup table the
    /// alias routes are dispatched through.
    lookup: HashMap<String, [Option<Target>; 2]>,
}

fn method_slot(m: RouteMethod) -> usize {
    match m {
        RouteMethod::Get => 0,
        RouteMethod::Post => 1,
    }
}

impl Friendly {
    pub fn build(st: &AppState, rt: &ferroserve_runtime::Runtime) -> Friendly {
        let mut tables: HashMap<String, BTreeMap<u64, Arc<Table>>> = HashMap::new();
        let mut builtin = HashMap::new();
        let mut untabular = BTreeMap::new();
        let mut claims: BTreeMap<(String, RouteMethod), Vec<Arc<Spec>>> = BTreeMap::new();
        for entry in rt.models() {
            for state in entry.versions.values() {
                let VersionState::Ready(s) = state else {
                    continue;
                };
                match Table::build(s) {
                    Ok(t) => {
                        tables
                            .entry(entry.name.clone())
                            .or_default()
                            .insert(s.version, Arc::new(t));
                    }
                    Err(e) => {
                        untabular.insert(entry.name.clone(), e);
                    }
                }
            }
            builtin.insert(
                entry.name.clone(),
                Builtin {
                    get: Arc::new(Spec::predict(&entry.name, RouteMethod::Get)),
                    post: Arc::new(Spec::predict(&entry.name, RouteMethod::Post)),
                    v1: Arc::new(Spec::kserve_v1(&entry.name)),
                },
            );
            for r in &entry.config.routes {
                claims
                    .entry((r.path.clone(), r.method))
                    .or_default()
                    .push(Arc::new(Spec::alias(&entry.name, r)));
            }
        }
        let mut aliases = Vec::new();
        let mut conflicts = Vec::new();
        for ((path, method), mut specs) in claims {
            if specs.len() == 1 {
                aliases.extend(specs.pop());
                continue;
            }
            let owner = st
                .route_owners
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, m)| m.as_str());
            match specs.iter().position(|s| Some(s.model.as_str()) == owner) {
                Some(i) => aliases.push(specs.swap_remove(i)),
                None => {
                    let models: Vec<String> = specs.iter().map(|s| s.model.clone()).collect();
                    tracing::warn!(
                        method = method.as_str(),
                        %path,
                        models = %models.join(", "),
                        "route alias claimed by several models; not served until --route-owner {path}=MODEL picks one"
                    );
                    conflicts.push(Conflict {
                        method,
                        path,
                        models,
                    });
                }
            }
        }
        for (path, model) in &st.route_owners {
            let claimed = aliases.iter().any(|s| &s.path == path && &s.model == model);
            if !claimed {
                tracing::warn!(%path, %model, "--route-owner names a route alias that model does not declare");
            }
        }
        let mut lookup: HashMap<String, [Option<Target>; 2]> = HashMap::new();
        for s in &aliases {
            lookup.entry(s.path.clone()).or_default()[method_slot(s.method)] =
                Some(Target::Alias(s.clone()));
        }
        for c in &conflicts {
            lookup.entry(c.path.clone()).or_default()[method_slot(c.method)] =
                Some(Target::Conflict(c.clone()));
        }
        Friendly {
            tables,
            builtin,
            aliases,
            conflicts,
            untabular,
            lookup,
        }
    }

    /// The table of a served version (built now if the server started without it).
    pub fn table(&self, served: &ServedVersion) -> Result<Arc<Table>, InferError> {
        if let Some(t) = self
            .tables
            .get(served.name.as_str())
            .and_then(|v| v.get(&served.version))
        {
            return Ok(t.clone());
        }
        Table::build(served)
            .map(Arc::new)
            .map_err(InferError::invalid)
    }

    /// The table of a model's latest ready version, for documentation.
    pub fn latest_table(&self, model: &str) -> Option<&Arc<Table>> {
        self.tables.get(model).and_then(|v| v.values().next_back())
    }

    fn builtin(&self, model: &str, pick: fn(&Builtin) -> &Arc<Spec>) -> Arc<Spec> {
        match self.builtin.get(model) {
            Some(b) => pick(b).clone(),
            None => {
                // Unknown model: the runtime lookup answers 404 with the list of models.
                let b = Builtin {
                    get: Arc::new(Spec::predict(model, RouteMethod::Get)),
                    post: Arc::new(Spec::predict(model, RouteMethod::Post)),
                    v1: Arc::new(Spec::kserve_v1(model)),
                };
                pick(&b).clone()
            }
        }
    }
}

/// The state of the friendly handlers: the server's, and the friendly views of the snapshot
/// of the model set current when the request arrived.
#[derive(Clone)]
pub struct FState {
    pub app: Arc<AppState>,
    pub f: Arc<Friendly>,
}

impl FState {
    pub fn of(app: &Arc<AppState>) -> FState {
        FState {
            app: app.clone(),
            f: app.views().friendly.clone(),
        }
    }
}

impl axum::extract::FromRequestParts<Arc<AppState>> for FState {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _parts: &mut axum::http::request::Parts,
        st: &Arc<AppState>,
    ) -> Result<FState, Self::Rejection> {
        Ok(FState::of(st))
    }
}

/// How a request body is encoded.
enum Content {
    Json,
    Csv,
    Multipart(String),
    Form,
}

fn content(headers: &HeaderMap) -> Result<Content, InferError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Content::Json);
    };
    let raw = ct.to_str().unwrap_or("");
    let lower = raw.to_ascii_lowercase();
    let essence = lower.split(';').next().unwrap_or("").trim();
    match essence {
        "" | "application/json" | "text/plain" => Ok(Content::Json),
        e if e.ends_with("+json") => Ok(Content::Json),
        "text/csv" | "application/csv" => Ok(Content::Csv),
        "application/x-www-form-urlencoded" => Ok(Content::Form),
        "multipart/form-data" => multer::parse_boundary(raw)
            .map(Content::Multipart)
            .map_err(|e| InferError::invalid(format!("multipart/form-data without a usable boundary: {e}"))),
        other => Err(InferError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "unsupported Content-Type '{other}': send application/json, text/csv or multipart/form-data"
            ),
        )),
    }
}

fn unsupported(form: RequestForm, what: &str) -> InferError {
    InferError::new(
        ErrorKind::UnsupportedMediaType,
        format!(
            "this route reads {} and does not take {what}",
            match form {
                RequestForm::Csv => "CSV (text/csv or a multipart file)",
                _ => "JSON (application/json)",
            }
        ),
    )
}

/// The CSV file of a multipart body: the named field, or the first file (else first field).
async fn multipart_file(
    body: Bytes,
    boundary: String,
    field: Option<&str>,
) -> Result<Bytes, InferError> {
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let malformed =
        |e: multer::Error| InferError::invalid(format!("malformed multipart body: {e}"));
    let mut first_file = None;
    let mut first_any = None;
    let mut names = Vec::new();
    while let Some(f) = mp.next_field().await.map_err(malformed)? {
        let name = f.name().unwrap_or("").to_string();
        let is_file = f.file_name().is_some();
        let data = f.bytes().await.map_err(malformed)?;
        match field {
            Some(want) if want == name => return Ok(data),
            Some(_) => {}
            None if is_file && first_file.is_none() => first_file = Some(data),
            None if first_any.is_none() => first_any = Some(data),
            None => {}
        }
        names.push(name);
    }
    let got = if names.is_empty() {
        "no fields".to_string()
    } else {
        format!("fields {}", names.join(", "))
    };
    match field {
        Some(want) => Err(InferError::unprocessable(
            vec![ErrorDetail::new(
                Problem::BadShape,
                format!("a multipart field \"{want}\" holding a CSV file"),
            )
            .field(want)
            .got(got)],
            1,
        )),
        None => first_file.or(first_any).ok_or_else(|| {
            InferError::unprocessable(
                vec![
                    ErrorDetail::new(Problem::BadShape, "a multipart file field holding CSV")
                        .got(got),
                ],
                1,
            )
        }),
    }
}

/// Whether the client prefers CSV to JSON (`Accept`, with q-values and specificity).
pub fn wants_csv(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    // (q, exact, position) of the best range matching each type.
    let mut csv: Option<(f32, bool, usize)> = None;
    let mut json: Option<(f32, bool, usize)> = None;
    for (pos, range) in accept.split(',').enumerate() {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let better = |cur: Option<(f32, bool, usize)>, exact: bool| match cur {
            None => Some((q, exact, pos)),
            Some((_, cur_exact, _)) if exact && !cur_exact => Some((q, exact, pos)),
            Some(c) => Some(c),
        };
        match media.as_str() {
            "text/csv" => csv = better(csv, true),
            "text/*" => csv = better(csv, false),
            "application/json" => json = better(json, true),
            "application/*" => json = better(json, false),
            "*/*" => {
                csv = better(csv, false);
                json = better(json, false);
            }
            _ => {}
        }
    }
    match (csv, json) {
        (Some((qc, _, _)), None) => qc > 0.0,
        (Some((qc, ec, pc)), Some((qj, ej, pj))) => {
            qc > qj || (qc == qj && qc > 0.0 && ec && (!ej || pc < pj))
        }
        (None, _) => false,
    }
}

fn respond(status: StatusCode, ctype: &'static str, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(ctype))],
        body,
    )
        .into_response()
}

/// Reads, runs and answers one friendly request on `spec`.
pub async fn serve_spec(
    fs: &FState,
    spec: &Spec,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    caller: Option<&crate::auth::Caller>,
) -> Result<Response, ApiError> {
    if spec.job {
        // The job's model is checked where every job's is (`jobs::target`).
        let anyone = crate::auth::Caller::anyone();
        let caller = caller.unwrap_or(&anyone);
        return crate::jobs::from_alias(fs, spec, headers, body, caller).await;
    }
    // A route alias names its model only here; a built-in route's path named it, and the
    // middleware checked it (`None`).
    if let (Some(auth), Some(caller)) = (&fs.app.auth, caller) {
        auth.admit_model(caller, &spec.model)?;
    }
    let served = fs.app.runtime().version(&spec.model, None)?;
    let service = &fs.app.service;
    let call = Call::now(Origin::Friendly { path: &spec.path });
    // Counted in the model's statistics and metrics like every v2 request, refused or not.
    let d = match decode(fs, &served, spec, query, headers, body).await {
        Ok(d) => d,
        Err(e) => return Err(service.refused(&served, call, e.0).into()),
    };
    let answered = service.infer(&served, d.req, d.deadline, call).await?;
    if d.table.custom {
        let a = custom::CustomAnswer {
            outputs: &answered.response.outputs,
            rows: d.rows,
            layout: spec.layout,
            key: &spec.response_key,
            unwrap: spec.unwrap_single && d.single && d.rows == 1,
        };
        return Ok(respond(StatusCode::OK, "application/json", a.to_json()));
    }
    let a = Answerer {
        out: Outputs::new(&answered.response, d.rows, &d.table),
        answer: spec.answer,
        layout: spec.layout,
        key: &spec.response_key,
        unwrap: spec.unwrap_single && d.single && d.rows == 1,
        probabilities: d.probabilities,
    };
    Ok(if spec.csv_answer && wants_csv(headers) {
        respond(StatusCode::OK, "text/csv", a.to_csv(&d.table))
    } else {
        respond(StatusCode::OK, "application/json", a.to_json())
    })
}

/// A friendly request read: the request for the service and what its answer needs.
struct Decoded {
    req: InferRequest,
    deadline: Deadline,
    table: Arc<Table>,
    rows: usize,
    /// One row or record sent bare (not in a list).
    single: bool,
    probabilities: bool,
}

/// Reads one request to a served version on `spec` into an inference request.
async fn decode(
    fs: &FState,
    served: &ServedVersion,
    spec: &Spec,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Decoded, ApiError> {
    let st = &fs.app;
    let table = fs.f.table(served)?;
    // A deadline from the X-Request-Timeout-Ms header, as on the v2 routes.
    let timeout_ms = headers.get(deadline::HTTP_HEADER).map(|v| v.as_bytes());
    let deadline = Deadline::read(&Parameters::default(), Transport::Http { timeout_ms })?;
    if served.model.adapter().is_some() {
        let req = adapt(fs, served, query, headers, body).await?;
        let rows = req
            .inputs
            .first()
            .and_then(|t| t.shape.first())
            .map_or(0, |&r| r.max(0) as usize);
        return Ok(Decoded {
            req,
            deadline,
            table,
            rows,
            single: true,
            probabilities: false,
        });
    }
    let (opts, pairs) = parse::split_query(query, spec, &table)?;
    if opts.probabilities && (!table.is_classifier() || spec.layout == Layout::List) {
        let why = if table.is_classifier() {
            "false: this route's answer is a bare list"
        } else {
            "false: this model is a regressor"
        };
        return Err(InferError::unprocessable(
            vec![ErrorDetail::new(Problem::BadValue, why)
                .field("probabilities")
                .got("true")],
            1,
        )
        .into());
    }
    let parsed: Parsed = match spec.form {
        RequestForm::Query => parse::read_pairs(pairs, spec, &table)?,
        form => {
            let kind = content(headers)?;
            let bytes = read_body(body, headers, Limit::flag(st.limits.max_body_bytes)).await?;
            let body_empty = bytes.iter().all(|b| b.is_ascii_whitespace());
            let csv_ok = matches!(form, RequestForm::Auto | RequestForm::Csv);
            let json_ok = !matches!(form, RequestForm::Csv);
            if form == RequestForm::Auto && body_empty && !pairs.is_empty() {
                // Feature values in the query of a POST (Ray's own-adapter example).
                parse::read_pairs(pairs, spec, &table)?
            } else {
                if let Some((k, _)) = pairs.first() {
                    return Err(InferError::unprocessable(
                        vec![ErrorDetail::new(
                            Problem::BadValue,
                            "only the query parameters orient and probabilities",
                        )
                        .field(k.as_ref())],
                        pairs.len(),
                    )
                    .into());
                }
                let looks_json = bytes
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b'{' || *b == b'[');
                match kind {
                    Content::Json if form == RequestForm::Csv => {
                        parse::read_csv(&bytes, spec, &table)?
                    }
                    Content::Json => parse::read_json(&bytes, spec, &table, opts.orient)?,
                    Content::Csv if csv_ok => parse::read_csv(&bytes, spec, &table)?,
                    Content::Multipart(boundary) if csv_ok => {
                        let file =
                            multipart_file(bytes, boundary, spec.csv_field.as_deref()).await?;
                        parse::read_csv(&file, spec, &table)?
                    }
                    Content::Form if json_ok && looks_json => {
                        parse::read_json(&bytes, spec, &table, opts.orient)?
                    }
                    Content::Form if form == RequestForm::Auto => {
                        parse::read_pairs(form_urlencoded::parse(&bytes), spec, &table)?
                    }
                    Content::Csv | Content::Multipart(_) => {
                        return Err(unsupported(form, "CSV").into())
                    }
                    Content::Form => return Err(unsupported(form, "a form").into()),
                }
            }
        }
    };
    let outputs = table
        .outputs_for(spec.answer, opts.probabilities)
        .into_iter()
        .map(|name| RequestedOutput {
            name: name.to_string(),
            parameters: Default::default(),
        })
        .collect();
    let req = InferRequest {
        id: None,
        inputs: vec![Tensor::new(
            table.input_name.clone(),
            vec![parsed.rows as i64, table.n() as i64],
            parsed.data,
        )],
        outputs,
        parameters: Default::default(),
    };
    Ok(Decoded {
        req,
        deadline,
        table,
        rows: parsed.rows,
        single: parsed.single,
        probabilities: opts.probabilities,
    })
}

/// Runs the model's HTTP adapter (a Python `adapter`) on the request: the query's pairs and the JSON body become its arguments, and what it returns the model's inputs.
async fn adapt(
    fs: &FState,
    served: &ServedVersion,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<InferRequest, ApiError> {
    let bytes = read_body(body, headers, Limit::flag(fs.app.limits.max_body_bytes)).await?;
    let req = AdapterRequest {
        query: query
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        body: (!bytes.iter().all(|b| b.is_ascii_whitespace())).then(|| bytes.to_vec()),
    };
    let model = served.model.clone();
    let inputs = tokio::task::spawn_blocking(move || match model.adapter() {
        Some(a) => a.adapt(&req),
        None => Ok(Vec::new()),
    })
    .await
    .map_err(|e| InferError::internal(format!("the HTTP adapter failed: {e}")))?
    .map_err(InferError::from)?;
    Ok(InferRequest {
        id: None,
        inputs,
        outputs: Vec::new(),
        parameters: Default::default(),
    })
}

async fn predict_get(
    fs: FState,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let spec = fs.f.builtin(&model, |b| &b.get);
    serve_spec(&fs, &spec, uri.query(), &headers, Body::empty(), None).await
}

async fn predict_post(
    fs: FState,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let spec = fs.f.builtin(&model, |b| &b.post);
    serve_spec(&fs, &spec, uri.query(), &headers, body, None).await
}

async fn v1_predict(
    fs: FState,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some((model, verb)) = name.rsplit_once(':') else {
        return Err(ApiError::not_found(format!(
            "KServe v1 predicts at POST /v1/models/{name}:predict"
        )));
    };
    if verb != "predict" {
        return Err(ApiError::not_found(format!(
            "unknown KServe v1 verb ':{verb}'; this server answers :predict"
        )));
    }
    let spec = fs.f.builtin(model, |b| &b.v1);
    serve_spec(&fs, &spec, uri.query(), &headers, body, None).await
}

async fn v1_status(fs: FState, Path(name): Path<String>) -> Result<Response, ApiError> {
    if name.contains(':') {
        return Err(ApiError::not_found(format!(
            "no route for GET /v1/models/{name}; predictions are POST"
        )));
    }
    let v = fs.app.runtime().version(&name, None)?;
    Ok(json_ok(&json!({ "name": v.name, "ready": true })))
}

fn json_ok(v: &serde_json::Value) -> Response {
    respond(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// The routes (method, path) that answer with a model.
pub fn routes_of(f: &Friendly, model: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("GET", format!("/models/{model}/predict")),
        ("POST", format!("/models/{model}/predict")),
        ("POST", format!("/v1/models/{model}:predict")),
        ("POST", format!("/v2/models/{model}/infer")),
    ];
    out.extend(
        f.aliases
            .iter()
            .filter(|s| s.model == model)
            .map(|s| (s.method.as_str(), s.path.clone())),
    );
    out
}

/// What the friendly routes tell about one model.
fn model_card(
    st: &AppState,
    f: &Friendly,
    entry: &ferroserve_runtime::ModelEntry,
) -> serde_json::Value {
    let mut card = serde_json::Map::new();
    card.insert("name".into(), json!(entry.name));
    let ready = entry.latest_ready();
    card.insert("ready".into(), json!(ready.is_some()));
    card.insert(
        "versions".into(),
        json!(entry
            .versions
            .keys()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()),
    );
    if let Some(r) = entry.reason() {
        card.insert("reason".into(), json!(r));
    }
    if let Some(t) = f.latest_table(&entry.name) {
        card.insert("version".into(), json!(t.version.to_string()));
        card.insert(
            "task".into(),
            json!(if t.is_classifier() {
                "classification"
            } else {
                "regression"
            }),
        );
        card.insert("features".into(), json!(t.names));
        let aliases: serde_json::Map<String, serde_json::Value> = t
            .aliases
            .iter()
            .map(|(a, i)| (a.clone(), json!(t.names[*i])))
            .collect();
        card.insert("feature_aliases".into(), serde_json::Value::Object(aliases));
        if let Some(c) = &t.classes {
            card.insert("classes".into(), json!(c));
        }
        card.insert("sample_rows".into(), json!(t.samples));
        card.insert("description".into(), json!(t.description));
    } else if let Some(why) = f.untabular.get(&entry.name) {
        card.insert("friendly".into(), json!(why));
    }
    card.insert(
        "routes".into(),
        json!(routes_of(f, &entry.name)
            .into_iter()
            .map(|(m, p)| json!({ "method": m, "path": p }))
            .collect::<Vec<_>>()),
    );
    let _ = st;
    serde_json::Value::Object(card)
}

async fn list_models(fs: FState) -> Response {
    let cards: Vec<serde_json::Value> = fs
        .app
        .runtime()
        .models()
        .map(|e| model_card(&fs.app, &fs.f, e))
        .collect();
    json_ok(&serde_json::Value::Array(cards))
}

async fn get_model(fs: FState, Path(model): Path<String>) -> Result<Response, ApiError> {
    let rt = fs.app.runtime();
    let entry = rt.model(&model)?;
    Ok(json_ok(&model_card(&fs.app, &fs.f, entry)))
}

async fn welcome(fs: FState) -> Response {
    let rt = fs.app.runtime();
    let models: Vec<&str> = rt.models().map(|m| m.name.as_str()).collect();
    json_ok(&json!({
        "name": "ferroserve",
        "version": env!("CARGO_PKG_VERSION"),
        "message": "ferroserve is up",
        // KServe v1 liveness (the KServe SDK's `is_server_live` reads it).
        "status": "alive",
        "models": models,
        "docs": "/docs",
        "dashboard": "/ui/",
        "openapi": "/openapi.json",
    }))
}

fn conflict_error(c: &Conflict) -> ApiError {
    ApiError::not_found(format!(
        "{} {} is claimed by models {} in their model.toml; start the server with --route-owner {}=MODEL to choose one (each model also answers at /models/MODEL/predict)",
        c.method.as_str(),
        c.path,
        c.models.join(", "),
        c.path
    ))
}

/// The friendly routes. Route aliases, their conflicts and `GET /` are answered by
/// [`dispatch`], the router's fallback, from the lookup table of the current snapshot.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/models", get(list_models))
        .route("/models/{model}", get(get_model))
        .route(
            "/models/{model}/predict",
            get(predict_get).post(predict_post),
        )
        .route("/v1/models/{name}", get(v1_status).post(v1_predict))
}

/// What a path no fixed route matches answers: a route alias of the current snapshot, a
/// conflict between aliases, `GET /` (unless an alias takes it), or `None` (no such route).
/// The answer carries [`RouteClass::Friendly`](crate::metrics::RouteClass) for the metrics.
pub async fn dispatch(
    st: &Arc<AppState>,
    method: &axum::http::Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    caller: &crate::auth::Caller,
) -> Option<Response> {
    let fs = FState::of(st);
    let path = uri.path();
    let slot = match *method {
        axum::http::Method::GET | axum::http::Method::HEAD => 0,
        axum::http::Method::POST => 1,
        _ => 2,
    };
    let targets = fs.f.lookup.get(path);
    let answer = match targets.and_then(|t| t.get(slot)).cloned().flatten() {
        Some(Target::Alias(spec)) => {
            serve_spec(&fs, &spec, uri.query(), headers, body, Some(caller))
                .await
                .unwrap_or_else(|e| e.into_response())
        }
        Some(Target::Conflict(c)) => conflict_error(&c).into_response(),
        None if slot == 0 && path == "/" => welcome(fs).await,
        None if targets.is_some() || path == "/" => {
            crate::method_not_allowed(method.clone(), uri.clone()).await
        }
        None => return None,
    };
    let mut answer = answer;
    answer
        .extensions_mut()
        .insert(crate::metrics::RouteClass::Friendly);
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn csv_only_when_preferred() {
        assert!(!wants_csv(&HeaderMap::new()));
        assert!(wants_csv(&accept("text/csv")));
        assert!(wants_csv(&accept("text/csv, application/json;q=0.5")));
        assert!(wants_csv(&accept("text/csv, */*")));
        assert!(!wants_csv(&accept("*/*")));
        assert!(!wants_csv(&accept("application/json, text/csv")));
        assert!(!wants_csv(&accept("text/csv;q=0.2, application/json")));
        assert!(!wants_csv(&accept("text/csv;q=0")));
        assert!(!wants_csv(&accept("application/json")));
    }
}
