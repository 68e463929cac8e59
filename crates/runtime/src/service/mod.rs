//! The inference service: the one path every front takes with a decoded request (HTTP v2 JSON
//! and binary, gRPC unary and streamed, the friendly routes, batch jobs' chunks).
//!
//! A front finds the version a request goes to ([`crate::Runtime::version`]), notes when the
//! request arrived ([`Call::now`]), decodes its wire format into an [`InferRequest`], reads its
//! [`Deadline`] ([`Deadline::read`]), and calls [`InferenceService::infer`], which
//!
//! 1. checks the classification parameters ([`classification::requested`]) and validates the
//!    request against the model's metadata, building the batch ([`validate::to_batch`]: the
//!    inputs' data is moved, never copied);
//! 2. submits it to the version's handle: admission, batching, the instances
//!    ([`crate::ModelHandle::submit`]), under the deadline ([`Deadline::bound`]);
//! 3. applies the classification extension to the outputs and assembles the response;
//! 4. records the request in the version's statistics, once: success with its rows, or failure
//!    by error kind, with the latency since the request arrived;
//! 5. tells the hooks ([`Hook`]), if any.
//!
//! A request that fails before it reaches the service (a body that does not parse) is recorded
//! the same way by [`InferenceService::refused`], so statistics count every request a version
//! was asked, whatever went wrong. The front then encodes the response, or maps the error once
//! (HTTP status, gRPC code).

pub mod classification;
pub mod deadline;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroserve_core::{InferError, InferRequest, InferResponse, Tensor};

pub use deadline::{Deadline, Transport};

use crate::{Outcome, Priority, ServedVersion};

/// Where a request came from: the protocol and, for the friendly routes, the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// `POST /v2/models/{m}[/versions/{v}]/infer`, JSON or binary tensor data.
    HttpV2,
    /// gRPC `ModelInfer`.
    Grpc,
    /// One message of a gRPC `ModelStreamInfer` stream.
    GrpcStream,
    /// A friendly route (built-in or a `model.toml` alias), by its documented path.
    Friendly { path: &'a str },
    /// A chunk of the batch job `id` (`POST /jobs`): background work, after online requests.
    Job { id: &'a str },
}

impl Origin<'_> {
    /// The protocol, as a bounded label: `http_v2`, `grpc`, `grpc_stream`, `friendly`, `job`.
    pub fn protocol(&self) -> &'static str {
        match self {
            Origin::HttpV2 => "http_v2",
            Origin::Grpc => "grpc",
            Origin::GrpcStream => "grpc_stream",
            Origin::Friendly { .. } => "friendly",
            Origin::Job { .. } => "job",
        }
    }

    /// Batch jobs run in the background; everything else is online.
    pub fn priority(&self) -> Priority {
        match self {
            Origin::Job { .. } => Priority::Background,
            _ => Priority::Online,
        }
    }
}

/// One request on its way through the service: where it came from and when it arrived (its
/// latency counts from then: reading and decoding the body included).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub origin: Origin<'a>,
    pub started: Instant,
}

impl<'a> Call<'a> {
    /// A request from `origin` arriving now.
    pub fn now(origin: Origin<'a>) -> Call<'a> {
        Call {
            origin,
            started: Instant::now(),
        }
    }
}

/// A request answered: the response, and the rows it answered (counted in the statistics).
#[derive(Debug)]
pub struct Answered {
    pub response: InferResponse,
    pub rows: usize,
}

/// What a [`Hook`] is told about one finished request.
pub struct Finished<'a> {
    pub origin: Origin<'a>,
    /// The model version that answered (or refused) it.
    pub served: &'a ServedVersion,
    /// The request as decoded, after the service used it: its requested outputs and
    /// parameters are there; its inputs are not (their data was moved to the model, never
    /// copied; see `inputs`), nor, when it was answered, its id (moved to the response; see
    /// [`Finished::id`]). `None` when the request failed before it was decoded.
    pub request: Option<&'a InferRequest>,
    /// A copy of the first rows of the request's inputs, made before they went to the model,
    /// when a hook asked for them ([`Hook::input_rows`]), with the rows the request had in all.
    pub inputs: Option<(&'a [Tensor], usize)>,
    pub result: Result<&'a InferResponse, &'a InferError>,
    /// Rows answered (0 on failure).
    pub rows: usize,
    /// Since the request arrived ([`Call::started`]): the latency the statistics record.
    pub latency: Duration,
}

impl Finished<'_> {
    /// The request's id, if it had one.
    pub fn id(&self) -> Option<&str> {
        match self.result {
            Ok(r) => r.id.as_deref(),
            Err(_) => self.request.and_then(|r| r.id.as_deref()),
        }
    }
}

/// Something told after each inference request, answered or refused, on the request's own task
/// once its statistics are recorded and before the front encodes the answer: the prediction
/// log's hook point. It must not block or wait (hand the record to a bounded channel, and drop
/// it when that is full); what it does adds to every request's latency.
pub trait Hook: Send + Sync {
    /// How many rows of the inputs of a request to `served` this hook wants to be shown in
    /// [`Finished::inputs`] (copied before they go to the model, so a copy only when asked):
    /// 0, the default, for none.
    fn input_rows(&self, served: &ServedVersion) -> usize {
        let _ = served;
        0
    }

    /// Whether a request to `served` may be run at all (before it is): the durable prediction
    /// log refuses requests when it could not keep their record. The default admits all.
    fn admit(&self, served: &ServedVersion) -> Result<(), InferError> {
        let _ = served;
        Ok(())
    }

    fn finished(&self, done: &Finished<'_>);
}

/// The inference service, shared by every front (one per server, in its shared state): the
/// hooks told after each request (none by default).
#[derive(Clone, Default)]
pub struct InferenceService {
    hooks: Vec<Arc<dyn Hook>>,
}

impl InferenceService {
    /// A service without hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a hook, told after every request from then on (in the order added).
    pub fn with_hook(mut self, hook: Arc<dyn Hook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Validates `req` against `served`'s model, runs it within `deadline` and applies the
    /// classification extension; records the outcome in `served`'s statistics and tells the
    /// hooks. Returns the response and the rows answered.
    pub async fn infer(
        &self,
        served: &ServedVersion,
        mut req: InferRequest,
        deadline: Deadline,
        call: Call<'_>,
    ) -> Result<Answered, InferError> {
        let wanted = self
            .hooks
            .iter()
            .map(|h| h.input_rows(served))
            .max()
            .unwrap_or(0);
        let copied = (wanted > 0).then(|| first_rows_of(&req.inputs, wanted));
        let admitted = self.hooks.iter().try_for_each(|h| h.admit(served));
        let result = match admitted {
            Ok(()) => {
                deadline
                    .bound(run(
                        served,
                        &mut req,
                        deadline.timeout(),
                        call.origin.priority(),
                    ))
                    .await
            }
            Err(e) => Err(e),
        };
        let latency = call.started.elapsed();
        let rows = match &result {
            Ok(a) => a.rows,
            Err(_) => 0,
        };
        record(served, result.as_ref().err(), rows, latency);
        if !self.hooks.is_empty() {
            self.tell(&Finished {
                origin: call.origin,
                served,
                request: Some(&req),
                inputs: copied.as_ref().map(|(t, n)| (t.as_slice(), *n)),
                result: result.as_ref().map(|a| &a.response),
                rows,
                latency,
            });
        }
        result
    }

    /// Records a request to `served` that failed before it could be run (its body did not
    /// read or decode, its deadline did not parse ...), as [`InferenceService::infer`] records
    /// a failure, and tells the hooks; returns the error to answer.
    pub fn refused(&self, served: &ServedVersion, call: Call<'_>, e: InferError) -> InferError {
        let latency = call.started.elapsed();
        record(served, Some(&e), 0, latency);
        if !self.hooks.is_empty() {
            self.tell(&Finished {
                origin: call.origin,
                served,
                request: None,
                inputs: None,
                result: Err(&e),
                rows: 0,
                latency,
            });
        }
        e
    }

    fn tell(&self, done: &Finished<'_>) {
        for h in &self.hooks {
            h.finished(done);
        }
    }
}

/// Copies of the first `rows` rows of each input (along its first dimension), and the rows the
/// first input had in all.
fn first_rows_of(inputs: &[Tensor], rows: usize) -> (Vec<Tensor>, usize) {
    let total = inputs
        .first()
        .and_then(|t| t.shape.first())
        .map_or(0, |&n| n.max(0) as usize);
    (first_rows(inputs, rows), total)
}

/// Copies of the first `rows` rows of each tensor (along its first dimension; the whole tensor
/// when it has no more).
pub fn first_rows(tensors: &[Tensor], rows: usize) -> Vec<Tensor> {
    tensors
        .iter()
        .map(|t| {
            let Some((&first, rest)) = t.shape.split_first() else {
                return t.clone();
            };
            if first.max(0) as usize <= rows {
                return t.clone();
            }
            let per_row: usize = rest.iter().map(|&d| d.max(0) as usize).product();
            let end = (rows * per_row).min(t.data.len());
            let mut shape = t.shape.clone();
            shape[0] = rows as i64;
            Tensor {
                name: t.name.clone(),
                shape,
                data: t.data.slice(0, end),
                parameters: t.parameters.clone(),
            }
        })
        .collect()
}

/// The one place a request's outcome goes into the statistics.
fn record(served: &ServedVersion, failure: Option<&InferError>, rows: usize, latency: Duration) {
    let outcome = failure.map_or(Outcome::Success, |e| Outcome::of(e.kind));
    served.stats.request_done(outcome, rows, latency);
}

/// Validates a request against the model, runs it and assembles the response (with the rows
/// answered). Takes the request's inputs, and its id for the response.
async fn run(
    served: &ServedVersion,
    req: &mut InferRequest,
    timeout: Option<Duration>,
    priority: Priority,
) -> Result<Answered, InferError> {
    let inputs = std::mem::take(&mut req.inputs);
    let meta = served.model.metadata();
    let classify = classification::requested(&req.outputs, meta)?;
    let batch = validate::to_batch(
        served.model.as_ref(),
        inputs,
        &req.outputs,
        served.config.max_request_rows(),
    )?;
    let rows = batch.rows;
    let mut outputs = served.handle.submit_as(batch, timeout, priority).await?;
    classification::apply(&mut outputs, &classify, meta)?;
    Ok(Answered {
        response: InferResponse {
            model_name: served.name.clone(),
            model_version: served.version.to_string(),
            id: req.id.take(),
            outputs,
            parameters: Default::default(),
        },
        rows,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use ferroserve_core::model::Batch;
    use ferroserve_core::{
        BackendError, DataType, ErrorKind, Instance, LoadedModel, ModelConfig, ModelMetadata,
        Param, Parameters, RequestedOutput, Tensor, TensorData, TensorMeta,
    };

    use super::*;
    use crate::{HandleConfig, ModelHandle, VersionStats};

    /// Two scores per row (`[-1, 2]` in, the same out as `scores`), after `delay`.
    struct Scores {
        meta: ModelMetadata,
        delay: Duration,
    }

    struct ScoresInstance(Duration);

    impl Instance for ScoresInstance {
        fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, BackendError> {
            std::thread::sleep(self.0);
            let x = batch.inputs[0].clone();
            Ok(vec![Tensor::new("scores", x.shape, x.data)])
        }
    }

    impl LoadedModel for Scores {
        fn metadata(&self) -> &ModelMetadata {
            &self.meta
        }
        fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, BackendError> {
            Ok(Box::new(ScoresInstance(self.delay)))
        }
    }

    fn served(delay: Duration) -> ServedVersion {
        let meta = |name: &str| TensorMeta {
            name: name.into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 2],
        };
        let model = Arc::new(Scores {
            meta: ModelMetadata {
                inputs: vec![meta("x")],
                outputs: vec![meta("scores")],
                ..Default::default()
            },
            delay,
        });
        let stats = Arc::new(VersionStats::default());
        let handle = ModelHandle::start(
            "scores",
            model.clone(),
            &HandleConfig::default(),
            stats.clone(),
        );
        ServedVersion {
            name: "scores".into(),
            version: 3,
            model,
            handle,
            config: ModelConfig::default(),
            stats,
        }
    }

    fn request(rows: usize) -> InferRequest {
        let values = (0..rows * 2).map(|i| i as f32).collect();
        InferRequest {
            id: Some("r-1".into()),
            inputs: vec![Tensor::new(
                "x",
                vec![rows as i64, 2],
                TensorData::Fp32(values),
            )],
            outputs: Vec::new(),
            parameters: Parameters::default(),
        }
    }

    /// What a hook saw of one request: origin, id, rows, error kind, whether it had a request.
    type Sight = (String, Option<String>, usize, Option<ErrorKind>, bool);

    #[derive(Default)]
    struct Seen(Mutex<Vec<Sight>>);

    impl Hook for Seen {
        fn finished(&self, d: &Finished<'_>) {
            let origin = match d.origin {
                Origin::Friendly { path } => format!("friendly {path}"),
                o => o.protocol().to_string(),
            };
            assert_eq!(d.served.name, "scores");
            assert!(d.latency > Duration::ZERO);
            let kind = d.result.err().map(|e| e.kind);
            let id = d.id().map(str::to_string);
            self.0
                .lock()
                .unwrap()
                .push((origin, id, d.rows, kind, d.request.is_some()));
        }
    }

    fn counts(s: &VersionStats) -> (u64, u64, u64, u64) {
        (
            s.requests(Outcome::Success),
            s.requests(Outcome::InvalidInput),
            s.requests(Outcome::Timeout),
            s.inference_count.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Refuses every request (as a full durable spool does), and counts what it is told.
    #[derive(Default)]
    struct Refuses(Mutex<Vec<Option<ErrorKind>>>);

    impl Hook for Refuses {
        fn admit(&self, _: &ServedVersion) -> Result<(), InferError> {
            Err(InferError::unavailable("no room"))
        }
        fn finished(&self, d: &Finished<'_>) {
            self.0.lock().unwrap().push(d.result.err().map(|e| e.kind));
        }
    }

    #[tokio::test]
    async fn a_hook_that_refuses_stops_the_request_before_it_runs() {
        let v = served(Duration::ZERO);
        let hook = Arc::new(Refuses::default());
        let svc = InferenceService::new().with_hook(hook.clone());
        let e = svc
            .infer(&v, request(2), Deadline::NONE, Call::now(Origin::Grpc))
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::Unavailable, "no room")
        );
        // Not run (no inference counted), recorded as a failure, the hook told.
        assert_eq!(
            v.stats
                .inference_count
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(v.stats.requests(Outcome::Success), 0);
        assert_eq!(*hook.0.lock().unwrap(), [Some(ErrorKind::Unavailable)]);
    }

    #[tokio::test]
    async fn statistics_are_recorded_once_and_the_hooks_told_with_the_origin() {
        let v = served(Duration::ZERO);
        let seen = Arc::new(Seen::default());
        let svc = InferenceService::new().with_hook(seen.clone());

        let a = svc
            .infer(&v, request(3), Deadline::NONE, Call::now(Origin::HttpV2))
            .await
            .unwrap();
        assert_eq!(a.rows, 3);
        assert_eq!(
            (
                a.response.model_name.as_str(),
                a.response.model_version.as_str()
            ),
            ("scores", "3")
        );
        assert_eq!(a.response.id.as_deref(), Some("r-1"));
        assert_eq!(a.response.outputs[0].shape, vec![3, 2]);
        assert_eq!(counts(&v.stats), (1, 0, 0, 3));

        // Refused by validation: one failure, by kind, no rows.
        let mut bad = request(1);
        bad.inputs
            .push(Tensor::new("y", vec![1], TensorData::Fp32(vec![0.0])));
        let e = svc
            .infer(
                &v,
                bad,
                Deadline::NONE,
                Call::now(Origin::Friendly { path: "/predict" }),
            )
            .await
            .unwrap_err();
        assert_eq!(e.message, "expected 1 input(s) (x), got 2");
        assert_eq!(counts(&v.stats), (1, 1, 0, 3));

        // Refused before it was decoded: counted the same way.
        let e = svc.refused(
            &v,
            Call::now(Origin::Grpc),
            InferError::invalid("malformed"),
        );
        assert_eq!(e.message, "malformed");
        assert_eq!(counts(&v.stats), (1, 2, 0, 3));
        assert_eq!(v.stats.phases().success.0, 1);
        assert_eq!(v.stats.phases().fail.0, 2);

        let seen = seen.0.lock().unwrap();
        assert_eq!(
            *seen,
            [
                ("http_v2".into(), Some("r-1".into()), 3, None, true),
                (
                    "friendly /predict".into(),
                    Some("r-1".into()),
                    0,
                    Some(ErrorKind::InvalidInput),
                    true
                ),
                ("grpc".into(), None, 0, Some(ErrorKind::InvalidInput), false),
            ]
        );
    }

    #[tokio::test]
    async fn the_classification_extension_is_applied() {
        let v = served(Duration::ZERO);
        let mut req = request(2);
        let mut parameters = Parameters::default();
        parameters.insert(classification::PARAM, Param::Int(1));
        req.outputs = vec![RequestedOutput {
            name: "scores".into(),
            parameters,
        }];
        let a = InferenceService::new()
            .infer(&v, req, Deadline::NONE, Call::now(Origin::GrpcStream))
            .await
            .unwrap();
        let t = &a.response.outputs[0];
        assert_eq!(t.shape, vec![2, 1]);
        assert_eq!(
            t.data,
            TensorData::Bytes(vec![b"1:1".to_vec(), b"3:1".to_vec()])
        );
    }

    #[tokio::test]
    async fn a_grpc_deadline_that_passes_is_one_timeout() {
        let v = served(Duration::from_millis(300));
        let deadline = Deadline::read(
            &Parameters::default(),
            Transport::Grpc {
                timeout: Some(Duration::from_millis(20)),
            },
        )
        .unwrap();
        let e = InferenceService::new()
            .infer(&v, request(1), deadline, Call::now(Origin::Grpc))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::DeadlineExceeded, "{}", e.message);
        assert_eq!(counts(&v.stats), (0, 0, 1, 0));
    }
}
