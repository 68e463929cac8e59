//! The gRPC front: `inference.GRPCInferenceService` (the Open Inference Protocol's gRPC side,
//! under the name Triton's and KServe's clients call) over the same runtime as HTTP. Requests are
//! converted ([`convert`]) and run by the runtime's inference service as HTTP's are
//! ([`ferroserve_runtime::service`]: validation, deadline, classification, statistics); every
//! error is answered through the one [`crate::error::code_of`] mapping. Served by the same
//! hyper machinery as HTTP ([`crate::conn`]: plain HTTP/2, through hyper-util's connection
//! builder for its stream limit), with the client's `grpc-timeout` honoured as a deadline; a
//! handler's panic answers INTERNAL.

pub mod convert;

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroserve_core::{ErrorKind, InferError};
use ferroserve_runtime::{Call, Deadline, Origin, Transport};
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Caller;
use crate::error::{grpc_status, panicked};
use crate::labels::label_enum;
use crate::state::{request_line, AppState};
use crate::{stats, v2};

/// Messages, server trait and client generated from `proto/grpc_service.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::*;

/// Requests of one `ModelStreamInfer` stream run at once; answers keep request order.
const STREAM_CONCURRENCY: usize = 16;

label_enum! {
    /// The service's methods: the bounded `method` label of `ferroserve_grpc_responses_total`,
    /// and the `path` of their log lines.
    pub enum Method {
        ServerLive => "ServerLive",
        ServerReady => "ServerReady",
        ModelReady => "ModelReady",
        ServerMetadata => "ServerMetadata",
        ModelMetadata => "ModelMetadata",
        ModelInfer => "ModelInfer",
        ModelStreamInfer => "ModelStreamInfer",
        ModelStatistics => "ModelStatistics",
        ModelConfig => "ModelConfig",
        RepositoryIndex => "RepositoryIndex",
        RepositoryModelLoad => "RepositoryModelLoad",
        RepositoryModelUnload => "RepositoryModelUnload",
    }
}

/// The service: shared state, and a signal that ends open streams when the server stops.
pub struct InferenceService {
    state: Arc<AppState>,
    stopping: watch::Receiver<bool>,
}

impl InferenceService {
    pub fn new(state: Arc<AppState>, stopping: watch::Receiver<bool>) -> Self {
        InferenceService { state, stopping }
    }

    fn log(&self, method: Method, started: Instant, code: tonic::Code) {
        use tonic::Code::{DataLoss, DeadlineExceeded, Internal, Unavailable, Unknown};
        // The codes HTTP would answer with a 5xx status.
        let server_fault = matches!(
            code,
            Internal | Unknown | DataLoss | Unavailable | DeadlineExceeded
        );
        let Some(level) = self
            .state
            .request_log
            .line(code != tonic::Code::Ok, server_fault)
        else {
            return;
        };
        let micros = started.elapsed().as_micros() as u64;
        let path = method.as_str();
        let code = format!("{code:?}");
        request_line!(Some(level), method = "gRPC", path, %code, micros);
    }

    /// Answers a unary call: logged, and counted in `ferroserve_grpc_responses_total`.
    fn answer<T>(
        &self,
        method: Method,
        started: Instant,
        r: Result<T, InferError>,
    ) -> Result<Response<T>, Status> {
        let (r, code) = match r {
            Ok(v) => (Ok(Response::new(v)), tonic::Code::Ok),
            Err(e) => {
                let s = grpc_status(e);
                let code = s.code();
                (Err(s), code)
            }
        };
        self.state.answers.grpc(method, code);
        self.log(method, started, code);
        r
    }
}

/// The `grpc-timeout` header: 1 to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())??;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The caller the auth middleware left in the call's extensions ([`crate::auth`]).
fn caller_of<T>(req: &Request<T>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anyone)
}

/// Whether `caller` may use `model` (and the model's rate limit), when auth is set up.
fn admit(state: &AppState, caller: &Caller, model: &str) -> Result<(), InferError> {
    match &state.auth {
        Some(auth) => auth.admit_model(caller, model),
        None => Ok(()),
    }
}

fn deadline_of<T>(req: &Request<T>) -> Option<Duration> {
    req.metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_timeout)
}

/// One inference: find the model, convert, run through the runtime's inference service (as
/// over HTTP: validation, classification, statistics), convert back. `deadline` is the
/// client's `grpc-timeout`; the request's own `timeout` parameter (microseconds, as Triton) also
/// counts, the earlier wins ([`Deadline::read`]).
async fn infer_one(
    state: &AppState,
    m: ModelInferRequest,
    deadline: Option<Duration>,
    origin: Origin<'_>,
    caller: &Caller,
) -> Result<ModelInferResponse, InferError> {
    admit(state, caller, &m.model_name)?;
    let served = state
        .runtime()
        .version(&m.model_name, Some(&m.model_version))?;
    let call = Call::now(origin);
    let decoded = convert::request_from_proto(m).and_then(|req| {
        let d = Deadline::read(&req.parameters, Transport::Grpc { timeout: deadline })?;
        Ok((req, d))
    });
    let (req, deadline) = match decoded {
        Ok(d) => d,
        Err(e) => return Err(state.service.refused(&served, call, e)),
    };
    let answered = state.service.infer(&served, req, deadline, call).await?;
    Ok(convert::response_to_proto(answered.response))
}

/// One answer on a stream: a response, or the error message with the request's identity.
async fn stream_answer(
    state: Arc<AppState>,
    m: ModelInferRequest,
    caller: Arc<Caller>,
) -> ModelStreamInferResponse {
    let (model_name, model_version, id) =
        (m.model_name.clone(), m.model_version.clone(), m.id.clone());
    // A panic answers this message as INTERNAL, and the stream goes on: the stream's answers
    // are computed while its body is sent, where the router's panic layer cannot reach.
    let r = match AssertUnwindSafe(infer_one(&state, m, None, Origin::GrpcStream, &caller))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(panic) => Err(panicked(panic.as_ref())),
    };
    let code = match &r {
        Ok(_) => tonic::Code::Ok,
        Err(e) => crate::error::code_of(e.kind),
    };
    state.answers.grpc(Method::ModelStreamInfer, code);
    match r {
        Ok(r) => ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(r),
        },
        Err(e) => ModelStreamInferResponse {
            error_message: e.message,
            infer_response: Some(ModelInferResponse {
                model_name,
                model_version,
                id,
                ..Default::default()
            }),
        },
    }
}

/// The statistics extension's record of one version, from the one view both fronts answer
/// ([`crate::stats`]).
fn model_statistics(s: stats::Statistics) -> proto::ModelStatistics {
    let d = |t: stats::Tally| {
        Some(StatisticDuration {
            count: t.count,
            ns: t.ns,
        })
    };
    let i = s.inference_stats;
    proto::ModelStatistics {
        name: s.name,
        version: s.version,
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(InferStatistics {
            success: d(i.success),
            fail: d(i.fail),
            queue: d(i.queue),
            compute_input: d(i.compute_input),
            compute_infer: d(i.compute_infer),
            compute_output: d(i.compute_output),
            cache_hit: d(i.cache_hit),
            cache_miss: d(i.cache_miss),
        }),
        batch_stats: s
            .batch_stats
            .into_iter()
            .map(|b| InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: d(b.compute_input),
                compute_infer: d(b.compute_infer),
                compute_output: d(b.compute_output),
            })
            .collect(),
        memory_usage: Vec::new(),
        response_stats: Default::default(),
    }
}

/// Triton's `ModelConfig` message from the one view both fronts answer.
fn model_config_proto(c: v2::model_config::TritonConfig) -> proto::ModelConfig {
    use ferroserve_core::config::VersionPolicy;
    use ferroserve_core::DataType as D;
    use proto::model_version_policy::PolicyChoice;
    use proto::DataType as P;
    let data_type = |dt: D| -> i32 {
        (match dt {
            D::Bool => P::TypeBool,
            D::Uint8 => P::TypeUint8,
            D::Uint16 => P::TypeUint16,
            D::Uint32 => P::TypeUint32,
            D::Uint64 => P::TypeUint64,
            D::Int8 => P::TypeInt8,
            D::Int16 => P::TypeInt16,
            D::Int32 => P::TypeInt32,
            D::Int64 => P::TypeInt64,
            D::Fp16 => P::TypeFp16,
            D::Fp32 => P::TypeFp32,
            D::Fp64 => P::TypeFp64,
            D::Bytes => P::TypeString,
            D::Bf16 => P::TypeBf16,
        }) as i32
    };
    proto::ModelConfig {
        instance_group: vec![proto::ModelInstanceGroup {
            name: format!("{}_0", c.name),
            count: c.instances,
            kind: proto::model_instance_group::Kind::Cpu as i32,
        }],
        name: c.name,
        platform: c.platform,
        backend: c.backend.to_string(),
        max_batch_size: c.max_batch_size,
        input: c
            .inputs
            .into_iter()
            .map(|t| proto::ModelInput {
                name: t.name,
                data_type: data_type(t.datatype),
                dims: t.dims,
            })
            .collect(),
        output: c
            .outputs
            .into_iter()
            .map(|t| proto::ModelOutput {
                name: t.name,
                data_type: data_type(t.datatype),
                dims: t.dims,
            })
            .collect(),
        dynamic_batching: c.dynamic_batching.map(|d| proto::ModelDynamicBatching {
            preferred_batch_size: d.preferred_batch_size,
            max_queue_delay_microseconds: d.max_queue_delay_microseconds,
            default_queue_policy: Some(proto::ModelQueuePolicy {
                default_timeout_microseconds: d.default_timeout_microseconds,
                allow_timeout_override: true,
                max_queue_size: d.max_queue_size,
            }),
        }),
        version_policy: Some(proto::ModelVersionPolicy {
            policy_choice: Some(match c.version_policy {
                VersionPolicy::Latest(n) => {
                    PolicyChoice::Latest(model_version_policy::Latest { num_versions: n })
                }
                VersionPolicy::All => PolicyChoice::All(model_version_policy::All {}),
                VersionPolicy::Specific(v) => {
                    PolicyChoice::Specific(model_version_policy::Specific {
                        versions: v
                            .into_iter()
                            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
                            .collect(),
                    })
                }
            }),
        }),
    }
}

fn tensor_metadata(t: &ferroserve_core::TensorMeta) -> model_metadata_response::TensorMetadata {
    model_metadata_response::TensorMetadata {
        name: t.name.clone(),
        datatype: t.datatype.as_str().to_string(),
        shape: t.shape.clone(),
    }
}

type AnswerStream =
    Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        self.answer(
            Method::ServerLive,
            Instant::now(),
            Ok(ServerLiveResponse { live: true }),
        )
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.state.is_ready();
        self.answer(
            Method::ServerReady,
            Instant::now(),
            Ok(ServerReadyResponse { ready }),
        )
    }

    async fn model_ready(
        &self,
        req: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let started = Instant::now();
        let r = req.into_inner();
        // Unknown and not-ready models are both "not ready", as the HTTP client reads a 404.
        let ready = match self.state.runtime().version(&r.name, Some(&r.version)) {
            Ok(_) => Ok(true),
            Err(e) => match e.kind {
                ErrorKind::NotFound | ErrorKind::Unavailable => Ok(false),
                ErrorKind::InvalidInput
                | ErrorKind::Unprocessable
                | ErrorKind::TooLarge
                | ErrorKind::Overloaded
                | ErrorKind::DeadlineExceeded
                | ErrorKind::RequestTimeout
                | ErrorKind::UnsupportedMediaType
                | ErrorKind::Internal
                | ErrorKind::Unauthenticated
                | ErrorKind::Forbidden
                | ErrorKind::RateLimited => Err(e),
            },
        };
        self.answer(
            Method::ModelReady,
            started,
            ready.map(|ready| ModelReadyResponse { ready }),
        )
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.answer(
            Method::ServerMetadata,
            Instant::now(),
            Ok(ServerMetadataResponse {
                name: "ferroserve".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                extensions: v2::EXTENSIONS.iter().map(|s| s.to_string()).collect(),
            }),
        )
    }

    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let started = Instant::now();
        let caller = caller_of(&req);
        let r = req.into_inner();
        let st = &self.state;
        let answer = admit(st, &caller, &r.name)
            .and_then(|()| st.runtime().version(&r.name, Some(&r.version)))
            .map(|v| {
                let m = v.model.metadata();
                let versions = st
                    .runtime()
                    .model(&v.name)
                    .map(|e| e.versions.keys().map(|k| k.to_string()).collect())
                    .unwrap_or_default();
                ModelMetadataResponse {
                    name: v.name.clone(),
                    versions,
                    platform: m.platform.clone(),
                    inputs: m.inputs.iter().map(tensor_metadata).collect(),
                    outputs: m.outputs.iter().map(tensor_metadata).collect(),
                }
            });
        self.answer(Method::ModelMetadata, started, answer)
    }

    async fn model_infer(
        &self,
        req: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let started = Instant::now();
        let deadline = deadline_of(&req);
        let caller = caller_of(&req);
        let r = infer_one(
            &self.state,
            req.into_inner(),
            deadline,
            Origin::Grpc,
            &caller,
        )
        .await;
        self.answer(Method::ModelInfer, started, r)
    }

    type ModelStreamInferStream = AnswerStream;

    async fn model_stream_infer(
        &self,
        req: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<AnswerStream>, Status> {
        let started = Instant::now();
        let state = self.state.clone();
        let caller = Arc::new(caller_of(&req));
        let mut stopping = self.stopping.clone();
        // When the server stops, stop reading new requests; those running are answered and
        // the stream then ends, so a client holding a stream open cannot hold up shutdown.
        let stop = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        let answers = req
            .into_inner()
            .take_until(stop)
            .map(move |msg| {
                let state = state.clone();
                let caller = caller.clone();
                async move {
                    match msg {
                        Ok(m) => Ok(stream_answer(state, m, caller).await),
                        Err(status) => Err(oversized_is_resource_exhausted(status)),
                    }
                }
            })
            .buffered(STREAM_CONCURRENCY);
        self.log(Method::ModelStreamInfer, started, tonic::Code::Ok);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn model_statistics(
        &self,
        req: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let started = Instant::now();
        let caller = caller_of(&req);
        let r = req.into_inner();
        // As `GET /v2/models[/{m}[/versions/{v}]]/stats`: every model, one model's ready
        // versions, or one version.
        let model = Some(r.name.as_str()).filter(|n| !n.is_empty());
        let version = Some(r.version.as_str()).filter(|v| !v.is_empty());
        // A key limited to some models sees only theirs.
        let stats = model
            .map_or(Ok(()), |m| admit(&self.state, &caller, m))
            .and_then(|()| stats::select(&self.state.runtime(), model, version))
            .map(|s| {
                s.into_iter()
                    .filter(|s| caller.may_use(&s.name))
                    .map(model_statistics)
                    .collect()
            });
        self.answer(
            Method::ModelStatistics,
            started,
            stats.map(|model_stats| ModelStatisticsResponse { model_stats }),
        )
    }

    async fn model_config(
        &self,
        req: Request<proto::ModelConfigRequest>,
    ) -> Result<Response<proto::ModelConfigResponse>, Status> {
        let started = Instant::now();
        let caller = caller_of(&req);
        let r = req.into_inner();
        let answer = admit(&self.state, &caller, &r.name)
            .and_then(|()| self.state.runtime().version(&r.name, Some(&r.version)))
            .map(|v| proto::ModelConfigResponse {
                config: Some(model_config_proto(v2::model_config::TritonConfig::of(&v))),
            });
        self.answer(Method::ModelConfig, started, answer)
    }

    async fn repository_index(
        &self,
        req: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let caller = caller_of(&req);
        let ready_only = req.into_inner().ready;
        // A key limited to some models sees only those.
        let models = self
            .state
            .runtime()
            .index()
            .into_iter()
            .filter(|e| (!ready_only || e.ready) && caller.may_use(&e.name))
            .map(|e| repository_index_response::ModelIndex {
                name: e.name,
                version: e.version.map(|v| v.to_string()).unwrap_or_default(),
                state: e.state.into(),
                reason: e.reason.unwrap_or_default(),
            })
            .collect();
        self.answer(
            Method::RepositoryIndex,
            Instant::now(),
            Ok(RepositoryIndexResponse { models }),
        )
    }

    async fn repository_model_load(
        &self,
        req: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let started = Instant::now();
        let caller = caller_of(&req);
        let r = req.into_inner();
        let answer = match admit(&self.state, &caller, &r.model_name)
            .and_then(|()| crate::v2::control::allowed(&self.state, "load", &r.model_name))
            .and_then(|()| load_params(&r.model_name, r.parameters))
        {
            Ok(params) => crate::v2::control::load(&self.state, &r.model_name, params).await,
            Err(e) => Err(e),
        }
        .map(|()| RepositoryModelLoadResponse {});
        self.answer(Method::RepositoryModelLoad, started, answer)
    }

    async fn repository_model_unload(
        &self,
        req: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let started = Instant::now();
        let caller = caller_of(&req);
        let r = req.into_inner();
        let answer = admit(&self.state, &caller, &r.model_name)
            .and_then(|()| crate::v2::control::unload(&self.state, &r.model_name))
            .map(|()| RepositoryModelUnloadResponse {});
        self.answer(Method::RepositoryModelUnload, started, answer)
    }
}

/// A load's parameters from gRPC: `config` a `string_param`, `file:<path>` a `bytes_param`
/// (as Triton takes them).
fn load_params(
    name: &str,
    params: std::collections::HashMap<String, ModelRepositoryParameter>,
) -> Result<v2::control::LoadParams, InferError> {
    use model_repository_parameter::ParameterChoice;
    use v2::control::{file_path, unknown_parameter, wrongly_typed};
    let mut out = v2::control::LoadParams::default();
    // In key order, so that the first bad parameter named is always the same one.
    let mut params: Vec<_> = params.into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, value) in params {
        let choice = value.parameter_choice;
        if key == "config" {
            let Some(ParameterChoice::StringParam(s)) = choice else {
                return Err(wrongly_typed(
                    name,
                    &key,
                    "a string_param holding the JSON model configuration",
                ));
            };
            out.config = Some(s);
        } else if let Some(path) = file_path(&key) {
            let Some(ParameterChoice::BytesParam(content)) = choice else {
                return Err(wrongly_typed(name, &key, "a bytes_param"));
            };
            out.files.push(ferroserve_runtime::files::ModelFile {
                path: path.to_string(),
                content,
            });
        } else {
            return Err(unknown_parameter(name, &key));
        }
    }
    Ok(out)
}

/// The start of tonic's message for a message over the size limit.
const OVERSIZED: &str = "Error, decoded message length too large";

/// tonic refuses a message over the size limit with OUT_OF_RANGE; gRPC itself (and our mapping
/// of `TooLarge`) says RESOURCE_EXHAUSTED.
fn oversized_is_resource_exhausted(s: Status) -> Status {
    if s.code() == tonic::Code::OutOfRange && s.message().starts_with(OVERSIZED) {
        Status::resource_exhausted(format!(
            "{} (--max-body-bytes)",
            s.message().replacen("Error, decoded", "request", 1)
        ))
    } else {
        s
    }
}

/// The same for a unary call, whose refusal travels in the response headers.
pub(crate) fn oversized_headers<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let h = resp.headers();
    let msg = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode);
    let Some(msg) =
        msg.filter(|m| h.get("grpc-status").is_some_and(|v| v == "11") && m.starts_with(OVERSIZED))
    else {
        return resp;
    };
    let s = oversized_is_resource_exhausted(Status::out_of_range(msg));
    let h = resp.headers_mut();
    h.insert("grpc-status", http::HeaderValue::from_static("8"));
    if let Ok(v) = http::HeaderValue::from_str(&percent_encode(s.message())) {
        h.insert("grpc-message", v);
    }
    resp
}

/// `grpc-message` is percent-encoded (RFC 3986 style, spaces as %20).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A handler's panic as gRPC answers it: INTERNAL, with what the panic said, in a trailers-only
/// response; the connection and the server go on.
pub(crate) fn panic_status(
    panic: Box<dyn std::any::Any + Send + 'static>,
) -> http::Response<tonic::body::Body> {
    grpc_status(panicked(panic.as_ref())).into_http()
}

/// The gRPC routes: the inference service, with message size limits from `state.limits`
/// (larger messages, or compressed ones that grow larger once decompressed, are refused with
/// RESOURCE_EXHAUSTED); gzip and deflate messages are read, and answers are compressed when the
/// client's `grpc-accept-encoding` asks for it; any other method is UNIMPLEMENTED. Served with
/// [`oversized_headers`] and [`panic_status`] around them ([`crate::grpc_app`]).
pub fn routes(state: Arc<AppState>, stopping: watch::Receiver<bool>) -> tonic::service::Routes {
    use tonic::codec::CompressionEncoding;
    let limit = state.limits.max_body_bytes;
    let svc = GrpcInferenceServiceServer::new(InferenceService::new(state, stopping))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Deflate);
    tonic::service::Routes::new(svc)
}

/// Serves gRPC on `listener` until `shutdown` resolves, then ends open streams, lets requests
/// in flight finish, and returns.
///
/// Each connection allows `limits.grpc_max_concurrent_streams` streams at once (hyper's default
/// is 200: a client holding 200 idle streams on a connection, `ModelStreamInfer` calls waiting
/// for requests, left every further call on it waiting for a stream to close). Connections are
/// served by [`crate::conn`], as HTTP's are: timeouts, caps, graceful stop with a drain
/// deadline.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let mut stop = rx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let cfg = state.front(crate::conn::Front::Grpc);
    crate::conn::serve(listener, crate::grpc_app(state, rx), cfg, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RequestLog;
    use crate::testing::examples_state;

    /// Clients enforce their own deadline too (and tonic's reports CANCELLED), so the server's
    /// answer is checked here, in-process.
    #[tokio::test]
    async fn a_passed_deadline_is_deadline_exceeded() {
        let (_tx, rx) = watch::channel(false);
        let svc = InferenceService::new(examples_state(), rx);
        let rows = 20_000usize;
        let x: Vec<u8> = (0..rows * 30)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        let m = ModelInferRequest {
            model_name: "breast_cancer".into(),
            inputs: vec![model_infer_request::InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![rows as i64, 30],
                ..Default::default()
            }],
            raw_input_contents: vec![x.into()],
            ..Default::default()
        };
        let mut req = Request::new(m.clone());
        req.metadata_mut()
            .insert("grpc-timeout", "1n".parse().unwrap());
        let e = svc.model_infer(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{}", e.message());
        // Without a deadline the same request is answered.
        let r = svc.model_infer(Request::new(m)).await.unwrap().into_inner();
        assert_eq!(r.outputs.len(), 2);
    }

    use prost::Message;

    /// A model whose metadata panics once armed (a stand-in for any bug in a handler).
    struct Trap {
        armed: std::sync::atomic::AtomicBool,
        meta: ferroserve_core::ModelMetadata,
    }

    impl ferroserve_core::LoadedModel for Trap {
        fn metadata(&self) -> &ferroserve_core::ModelMetadata {
            if self.armed.load(std::sync::atomic::Ordering::Relaxed) {
                panic!("trap sprung");
            }
            &self.meta
        }
        fn instance(
            self: Arc<Self>,
        ) -> Result<Box<dyn ferroserve_core::Instance>, ferroserve_core::BackendError> {
            struct Nothing;
            impl ferroserve_core::Instance for Nothing {
                fn run(
                    &mut self,
                    _: &ferroserve_core::model::Batch,
                ) -> Result<Vec<ferroserve_core::Tensor>, ferroserve_core::BackendError>
                {
                    Ok(Vec::new())
                }
            }
            Ok(Box::new(Nothing))
        }
    }

    /// One gRPC message as a request body: the 5-byte prefix (uncompressed, length), then it.
    fn frame(m: &impl prost::Message) -> Vec<u8> {
        let b = m.encode_to_vec();
        let mut out = vec![0u8];
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(&b);
        out
    }

    /// Calls `method` of the gRPC routes `app`, in-process: the answer's headers, body and
    /// trailers.
    async fn call<S, B>(
        app: &S,
        method: &str,
        body: Vec<u8>,
    ) -> (http::HeaderMap, Vec<u8>, Option<http::HeaderMap>)
    where
        S: tower::Service<
                http::Request<http_body_util::Full<bytes::Bytes>>,
                Response = http::Response<B>,
            > + Clone,
        S::Error: std::fmt::Debug,
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let req = http::Request::post(format!("/inference.GRPCInferenceService/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let r = app.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status(), 200);
        let headers = r.headers().clone();
        let collected = r.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (headers, collected.to_bytes().to_vec(), trailers)
    }

    #[tokio::test]
    async fn a_handler_panic_answers_internal_and_the_server_keeps_serving() {
        let trap = Arc::new(Trap {
            armed: false.into(),
            meta: Default::default(),
        });
        let found = vec![ferroserve_runtime::FoundModel {
            name: "trap".into(),
            config: Ok(Default::default()),
            versions: vec![ferroserve_runtime::repository::FoundVersion {
                version: 1,
                result: Ok(trap.clone()),
            }],
            problem: None,
        }];
        let runtime = ferroserve_runtime::Runtime::start(found, &Default::default());
        let mut st = AppState::new(Arc::new(runtime));
        st.request_log = RequestLog::Off;
        let st = Arc::new(st);
        let (_tx, rx) = watch::channel(false);
        let app = crate::grpc_app(st.clone(), rx);
        trap.armed.store(true, std::sync::atomic::Ordering::Relaxed);

        // A unary call: INTERNAL with the panic's message, in a trailers-only answer.
        let meta = ModelMetadataRequest {
            name: "trap".into(),
            version: String::new(),
        };
        let (h, body, _) = call(&app, "ModelMetadata", frame(&meta)).await;
        assert_eq!(h["grpc-status"], "13", "{h:?}");
        let msg = percent_decode(h["grpc-message"].to_str().unwrap());
        assert_eq!(msg, "internal error: trap sprung");
        assert!(body.is_empty());
        // A stream: the message is answered with the error, and the stream ends cleanly.
        let m = ModelInferRequest {
            model_name: "trap".into(),
            id: "s-1".into(),
            ..Default::default()
        };
        let (_, body, trailers) = call(&app, "ModelStreamInfer", frame(&m)).await;
        let answer = ModelStreamInferResponse::decode(&body[5..]).unwrap();
        assert_eq!(answer.error_message, "internal error: trap sprung");
        assert_eq!(answer.infer_response.unwrap().id, "s-1");
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
        // The same router keeps answering.
        let (h, body, trailers) = call(&app, "ServerLive", frame(&ServerLiveRequest {})).await;
        let status = trailers.as_ref().map_or(&h, |t| t)["grpc-status"].clone();
        assert_eq!(status, "0");
        assert!(ServerLiveResponse::decode(&body[5..]).unwrap().live);
        assert_eq!(
            st.answers
                .grpc_count(Method::ModelStreamInfer, tonic::Code::Internal),
            1
        );
    }

    #[test]
    fn oversized_messages_are_resource_exhausted() {
        let s = oversized_is_resource_exhausted(Status::out_of_range(
            "Error, decoded message length too large: found 9 bytes, the limit is: 8 bytes",
        ));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(
            s.message().starts_with("request message length too large"),
            "{}",
            s.message()
        );
        let other = oversized_is_resource_exhausted(Status::out_of_range("x"));
        assert_eq!(other.code(), tonic::Code::OutOfRange);
        assert_eq!(percent_decode("a%20b%zz%"), "a b%zz%");
        assert_eq!(percent_encode("a b%\n"), "a b%25%0A");
    }

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "123456789m", "10x", "-1m", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }
}
