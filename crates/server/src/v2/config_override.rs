//! Triton's `config` load parameter: a model configuration in Triton's JSON (its `ModelConfig`
//! in protobuf's JSON mapping, with the field names of `config.pbtxt`), read into the
//! [`ConfigOverride`] the registry merges over the model's `model.toml` for one load.
//!
//! Every key of Triton's `ModelConfig` is known here, and each is one of three kinds:
//! - honoured: `max_batch_size`, `dynamic_batching` (`preferred_batch_size`,
//!   `max_queue_delay_microseconds`, `default_queue_policy`'s `max_queue_size` and
//!   `default_timeout_microseconds`), `instance_group` (CPU counts), `version_policy`,
//!   `default_model_filename`, and `backend` / `platform` naming one of ferroserve's backends;
//! - taken when they say what is served: `name` (the model's own), `input` and `output` (as the
//!   model has them; checked once it is loaded), and settings that ask for what ferroserve
//!   always does (`preserve_ordering`, a `REJECT` timeout action, timeouts a request may
//!   override);
//! - refused, naming the key, unless empty: everything else (sequence batching, ensembles,
//!   optimisation policies, backend parameters, warm-up, GPUs ...). An empty value (absent,
//!   `null`, `false`, `0`, `""`, `[]`, `{}`) asks for nothing and is taken.
//!
//! A key Triton does not have is refused too. Integers may be JSON numbers or strings of
//! digits (`{"max_batch_size": "16"}`, as protobuf's JSON mapping allows); enums are their
//! names (`KIND_CPU`, `TYPE_INT32`).

use std::time::Duration;

use ferroserve_core::config::{BackendKind, VersionPolicy};
use ferroserve_core::overrides::{BatchingOverride, TensorExpectation};
use ferroserve_core::{ConfigOverride, DataType};
use serde::Deserialize;
use serde_json::Value;

use super::model_config::type_name;

/// An integer, as a JSON number or a string holding one.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Int(i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer (a JSON number or a string of digits)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Int, E> {
                v.trim()
                    .parse()
                    .map(Int)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

impl Int {
    /// The value if it lies in `lo..=hi`, else an error naming `what`.
    fn within(self, what: &str, lo: i64, hi: i64) -> Result<usize, String> {
        if (lo..=hi).contains(&self.0) {
            Ok(self.0 as usize)
        } else {
            Err(format!("{what} = {}: expected {lo} to {hi}", self.0))
        }
    }
}

/// A key ferroserve has no setting for: taken only when it asks for nothing.
type Unsupported = Option<Value>;

/// Whether `v` asks for nothing: `null`, `false`, `0`, `""` (or `"0"`), `[]`, or an object
/// of such.
fn asks_nothing(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s.trim().parse::<i64>() == Ok(0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(asks_nothing),
    }
}

/// Refuses each of `keys` whose value asks for something, saying why ferroserve cannot.
fn refuse_unsupported(keys: &[(&str, &Unsupported, &str)]) -> Result<(), String> {
    for (key, value, why) in keys {
        if let Some(v) = value.as_ref().filter(|v| !asks_nothing(v)) {
            return Err(format!(
                "{key} = {}: {why}; ferroserve takes it only empty",
                brief(v)
            ));
        }
    }
    Ok(())
}

/// At most 60 characters of a JSON value, for messages.
fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// Triton's `ModelConfig`, every key of it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "ModelConfig")]
struct ModelConfigJson {
    name: Option<String>,
    platform: Option<String>,
    backend: Option<String>,
    runtime: Unsupported,
    version_policy: Option<VersionPolicyJson>,
    max_batch_size: Option<Int>,
    input: Option<Vec<TensorJson>>,
    output: Option<Vec<TensorJson>>,
    batch_input: Unsupported,
    batch_output: Unsupported,
    optimization: Unsupported,
    dynamic_batching: Option<DynamicBatchingJson>,
    sequence_batching: Option<Value>,
    ensemble_scheduling: Option<Value>,
    instance_group: Option<Vec<InstanceGroupJson>>,
    default_model_filename: Option<String>,
    cc_model_filenames: Unsupported,
    metric_tags: Unsupported,
    parameters: Unsupported,
    model_warmup: Unsupported,
    model_operations: Unsupported,
    model_transaction_policy: Unsupported,
    model_repository_agents: Unsupported,
    response_cache: Unsupported,
    model_metrics: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "ModelVersionPolicy")]
struct VersionPolicyJson {
    latest: Option<LatestJson>,
    all: Option<EmptyJson>,
    specific: Option<SpecificJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Latest")]
struct LatestJson {
    num_versions: Option<Int>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "All")]
struct EmptyJson {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Specific")]
struct SpecificJson {
    versions: Option<Vec<Int>>,
}

/// `ModelInput` and `ModelOutput`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "ModelInput")]
struct TensorJson {
    name: String,
    data_type: Option<String>,
    dims: Option<Vec<Int>>,
    format: Option<String>,
    reshape: Unsupported,
    is_shape_tensor: Unsupported,
    allow_ragged_batch: Unsupported,
    optional: Unsupported,
    is_non_linear_format_io: Unsupported,
    label_filename: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "ModelDynamicBatching")]
struct DynamicBatchingJson {
    preferred_batch_size: Option<Vec<Int>>,
    max_queue_delay_microseconds: Option<Int>,
    /// Taken either way: a `ModelStreamInfer` stream's answers always keep its requests'
    /// order, and every other call has its own answer.
    #[allow(dead_code)]
    preserve_ordering: Option<bool>,
    priority_levels: Unsupported,
    default_priority_level: Unsupported,
    default_queue_policy: Option<QueuePolicyJson>,
    priority_queue_policy: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "ModelQueuePolicy")]
struct QueuePolicyJson {
    timeout_action: Option<String>,
    default_timeout_microseconds: Option<Int>,
    allow_timeout_override: Option<bool>,
    max_queue_size: Option<Int>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "ModelInstanceGroup")]
struct InstanceGroupJson {
    /// Any name: ferroserve's instances are one group.
    #[allow(dead_code)]
    name: Option<String>,
    kind: Option<String>,
    count: Option<Int>,
    gpus: Unsupported,
    secondary_devices: Unsupported,
    profile: Unsupported,
    passive: Unsupported,
    host_policy: Unsupported,
    rate_limiter: Unsupported,
}

/// Triton's `backend` or `platform` name of one of ferroserve's backends (`""`: none given).
fn backend_named(key: &str, name: &str) -> Result<Option<BackendKind>, String> {
    match (key, name) {
        (_, "") => Ok(None),
        ("backend", "onnxruntime") | ("platform", "onnxruntime_onnx") => Ok(Some(BackendKind::Onnx)),
        (_, "ferroserve_trees") => Ok(Some(BackendKind::Trees)),
        ("backend", other) => Err(format!(
            "backend {other:?}: ferroserve runs \"onnxruntime\" (ONNX Runtime) and \"ferroserve_trees\" (its tree engine)"
        )),
        (_, other) => Err(format!(
            "{key} {other:?}: ferroserve runs \"onnxruntime_onnx\" (ONNX Runtime) and \"ferroserve_trees\" (its tree engine)"
        )),
    }
}

/// A `TYPE_*` name (Triton's model configuration data types; BYTES is `TYPE_STRING`).
fn data_type_named(what: &str, name: &str) -> Result<DataType, String> {
    DataType::ALL
        .into_iter()
        .find(|&d| type_name(d) == name)
        .ok_or_else(|| {
            format!("{what}.data_type {name:?}: not a data type (TYPE_FP32, TYPE_INT64, TYPE_STRING ...)")
        })
}

fn version_policy(p: VersionPolicyJson) -> Result<VersionPolicy, String> {
    match (p.latest, p.all, p.specific) {
        (Some(l), None, None) => {
            let n = l
                .num_versions
                .ok_or("version_policy.latest: num_versions is missing")?;
            Ok(VersionPolicy::Latest(n.within(
                "version_policy.latest.num_versions",
                1,
                u32::MAX.into(),
            )? as u32))
        }
        (None, Some(EmptyJson {}), None) => Ok(VersionPolicy::All),
        (None, None, Some(s)) => {
            let versions = s
                .versions
                .unwrap_or_default()
                .into_iter()
                .map(|v| {
                    v.within("version_policy.specific.versions", 0, i64::MAX)
                        .map(|v| v as u64)
                })
                .collect::<Result<Vec<u64>, String>>()?;
            if versions.is_empty() {
                return Err("version_policy.specific: no versions".into());
            }
            Ok(VersionPolicy::Specific(versions))
        }
        _ => Err("version_policy: give exactly one of latest, all, specific".into()),
    }
}

fn tensors(what: &str, ts: Vec<TensorJson>) -> Result<Vec<TensorExpectation>, String> {
    ts.into_iter()
        .map(|t| {
            let at = format!("{what} {:?}", t.name);
            refuse_unsupported(&[
                (
                    &format!("{at}.reshape"),
                    &t.reshape,
                    "ferroserve does not reshape tensors",
                ),
                (
                    &format!("{at}.is_shape_tensor"),
                    &t.is_shape_tensor,
                    "ferroserve has no shape tensors",
                ),
                (
                    &format!("{at}.allow_ragged_batch"),
                    &t.allow_ragged_batch,
                    "ferroserve does not batch ragged tensors",
                ),
                (
                    &format!("{at}.optional"),
                    &t.optional,
                    "a model's inputs are all required",
                ),
                (
                    &format!("{at}.is_non_linear_format_io"),
                    &t.is_non_linear_format_io,
                    "ferroserve's tensors are linear",
                ),
                (
                    &format!("{at}.label_filename"),
                    &t.label_filename,
                    "class labels are set in model.toml (class_labels)",
                ),
            ])?;
            match t.format.as_deref() {
                None | Some("") | Some("FORMAT_NONE") => {}
                Some(f) => {
                    return Err(format!(
                    "{at}.format {f:?}: ferroserve's tensors have no image format (FORMAT_NONE)"
                ))
                }
            }
            Ok(TensorExpectation {
                datatype: t
                    .data_type
                    .as_deref()
                    .map(|d| data_type_named(&at, d))
                    .transpose()?,
                dims: t.dims.map(|ds| ds.into_iter().map(|d| d.0).collect()),
                name: t.name,
            })
        })
        .collect()
}

fn dynamic_batching(b: DynamicBatchingJson) -> Result<BatchingOverride, String> {
    refuse_unsupported(&[
        (
            "dynamic_batching.priority_levels",
            &b.priority_levels,
            "ferroserve's queues have no priorities",
        ),
        (
            "dynamic_batching.default_priority_level",
            &b.default_priority_level,
            "ferroserve's queues have no priorities",
        ),
        (
            "dynamic_batching.priority_queue_policy",
            &b.priority_queue_policy,
            "ferroserve's queues have no priorities",
        ),
    ])?;
    let mut out = BatchingOverride {
        preferred_batch_sizes: b
            .preferred_batch_size
            .map(|ps| {
                ps.into_iter()
                    .map(|p| p.within("dynamic_batching.preferred_batch_size", 1, i32::MAX.into()))
                    .collect()
            })
            .transpose()?,
        max_queue_delay: b
            .max_queue_delay_microseconds
            .map(|d| {
                d.within(
                    "dynamic_batching.max_queue_delay_microseconds",
                    0,
                    3_600_000_000,
                )
                .map(|us| Duration::from_micros(us as u64))
            })
            .transpose()?,
        ..BatchingOverride::default()
    };
    if let Some(q) = b.default_queue_policy {
        match q.timeout_action.as_deref() {
            None | Some("") | Some("REJECT") => {}
            Some("DELAY") => return Err("dynamic_batching.default_queue_policy.timeout_action DELAY: ferroserve answers a request whose deadline has passed at once (REJECT)".into()),
            Some(other) => return Err(format!("dynamic_batching.default_queue_policy.timeout_action {other:?}: not REJECT or DELAY")),
        }
        if q.allow_timeout_override == Some(false) {
            return Err("dynamic_batching.default_queue_policy.allow_timeout_override false: a request's own timeout always takes precedence in ferroserve".into());
        }
        out.max_queue_size = q
            .max_queue_size
            .map(|n| {
                n.within(
                    "dynamic_batching.default_queue_policy.max_queue_size",
                    0,
                    u32::MAX.into(),
                )
                .map(|n| (n > 0).then_some(n))
            })
            .transpose()?;
        out.default_timeout = q
            .default_timeout_microseconds
            .map(|t| {
                t.within(
                    "dynamic_batching.default_queue_policy.default_timeout_microseconds",
                    0,
                    3_600_000_000,
                )
                .map(|us| (us > 0).then(|| Duration::from_micros(us as u64)))
            })
            .transpose()?;
    }
    Ok(out)
}

fn instances(groups: Vec<InstanceGroupJson>) -> Result<Option<usize>, String> {
    let mut total: Option<usize> = None;
    for (i, g) in groups.into_iter().enumerate() {
        let at = format!("instance_group[{i}]");
        refuse_unsupported(&[
            (
                &format!("{at}.gpus"),
                &g.gpus,
                "ferroserve runs models on the CPU",
            ),
            (
                &format!("{at}.secondary_devices"),
                &g.secondary_devices,
                "ferroserve runs models on the CPU",
            ),
            (
                &format!("{at}.profile"),
                &g.profile,
                "ferroserve has no TensorRT profiles",
            ),
            (
                &format!("{at}.passive"),
                &g.passive,
                "every instance of ferroserve's takes batches",
            ),
            (
                &format!("{at}.host_policy"),
                &g.host_policy,
                "ferroserve has no host policies",
            ),
            (
                &format!("{at}.rate_limiter"),
                &g.rate_limiter,
                "ferroserve has no rate limiter (the queue bound is max_queue_size)",
            ),
        ])?;
        match g.kind.as_deref() {
            None | Some("") | Some("KIND_AUTO") | Some("KIND_CPU") => {}
            Some(k @ ("KIND_GPU" | "KIND_MODEL")) => {
                return Err(format!(
                    "{at}.kind {k}: ferroserve runs models on the CPU (KIND_CPU)"
                ))
            }
            Some(other) => {
                return Err(format!(
                    "{at}.kind {other:?}: not KIND_CPU, KIND_GPU, KIND_MODEL or KIND_AUTO"
                ))
            }
        }
        let n = match g.count {
            Some(c) => c.within(&format!("{at}.count"), 1, i32::MAX.into())?,
            None => 1,
        };
        total = Some(total.unwrap_or(0).saturating_add(n));
    }
    Ok(total)
}

/// Reads Triton's JSON model configuration `text`, given to a load of the model `model`.
pub fn parse(model: &str, text: &str) -> Result<ConfigOverride, String> {
    let c: ModelConfigJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(n) = c.name.as_deref().filter(|n| !n.is_empty() && *n != model) {
        return Err(format!(
            "name {n:?}: the model being loaded is {model:?} (a model is loaded under its own name)"
        ));
    }
    if c.sequence_batching.is_some() {
        return Err(
            "sequence_batching: ferroserve has no sequence batcher (stateful models)".into(),
        );
    }
    if c.ensemble_scheduling.is_some() {
        return Err("ensemble_scheduling: ferroserve runs no ensembles".into());
    }
    refuse_unsupported(&[
        (
            "runtime",
            &c.runtime,
            "ferroserve picks the runtime by its backend",
        ),
        (
            "batch_input",
            &c.batch_input,
            "ferroserve has no batch inputs",
        ),
        (
            "batch_output",
            &c.batch_output,
            "ferroserve has no batch outputs",
        ),
        (
            "optimization",
            &c.optimization,
            "ONNX Runtime's settings are in model.toml (optimization_level, intra_op_threads)",
        ),
        (
            "cc_model_filenames",
            &c.cc_model_filenames,
            "ferroserve has no per-GPU model files",
        ),
        (
            "metric_tags",
            &c.metric_tags,
            "ferroserve's metrics have fixed labels",
        ),
        (
            "parameters",
            &c.parameters,
            "backend settings are in model.toml (threads, intra_op_threads, optimization_level)",
        ),
        (
            "model_warmup",
            &c.model_warmup,
            "ferroserve does not warm models up",
        ),
        (
            "model_operations",
            &c.model_operations,
            "ferroserve loads no custom operations",
        ),
        (
            "model_transaction_policy",
            &c.model_transaction_policy,
            "ferroserve answers each request once (not decoupled)",
        ),
        (
            "model_repository_agents",
            &c.model_repository_agents,
            "ferroserve has no repository agents",
        ),
        (
            "response_cache",
            &c.response_cache,
            "ferroserve has no response cache",
        ),
        (
            "model_metrics",
            &c.model_metrics,
            "ferroserve's metrics are not set per model",
        ),
    ])?;
    let by_backend = c
        .backend
        .as_deref()
        .map(|b| backend_named("backend", b))
        .transpose()?
        .flatten();
    let by_platform = c
        .platform
        .as_deref()
        .map(|p| backend_named("platform", p))
        .transpose()?
        .flatten();
    let backend = match (by_backend, by_platform) {
        (Some(a), Some(b)) if a != b => {
            return Err("backend and platform name different backends".into())
        }
        (a, b) => a.or(b),
    };
    Ok(ConfigOverride {
        backend,
        file: c.default_model_filename.filter(|f| !f.is_empty()),
        version_policy: c.version_policy.map(version_policy).transpose()?,
        max_batch_size: c
            .max_batch_size
            .map(|n| n.within("max_batch_size", 0, i32::MAX.into()))
            .transpose()?,
        batching: c.dynamic_batching.map(dynamic_batching).transpose()?,
        instances: instances(c.instance_group.unwrap_or_default())?,
        inputs: tensors("input", c.input.unwrap_or_default())?,
        outputs: tensors("output", c.output.unwrap_or_default())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> ConfigOverride {
        parse("simple", text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        parse("simple", text).expect_err(text)
    }

    #[test]
    fn max_batch_size_takes_numbers_and_numeric_strings() {
        assert_eq!(ok(r#"{"max_batch_size":"16"}"#).max_batch_size, Some(16));
        assert_eq!(ok(r#"{"max_batch_size": 16}"#).max_batch_size, Some(16));
        assert_eq!(ok(r#"{"max_batch_size": 0}"#).max_batch_size, Some(0));
        assert_eq!(ok("{}"), ConfigOverride::default());
        for (text, says) in [
            (
                r#"{"max_batch_size": -1}"#,
                "max_batch_size = -1: expected 0 to",
            ),
            (r#"{"max_batch_size": "sixteen"}"#, "an integer"),
            (r#"{"max_batch_size": 1.5}"#, "an integer"),
            (r#"{"max_batch_size": 99999999999999999999}"#, ""),
        ] {
            assert!(err(text).contains(says), "{text}: {}", err(text));
        }
    }

    #[test]
    fn the_examples_wrong_format_is_refused() {
        // What Triton's model control examples send as "the config with wrong format".
        let e = err(r#""parameters": {"config": {{"max_batch_size": "16"}}}"#);
        assert!(!e.is_empty());
        assert!(err("").contains("EOF"), "{}", err(""));
        assert!(err("[]").contains("expected struct"), "{}", err("[]"));
        assert!(err(r#"{"max_batch_size": 8"#).contains("EOF"));
    }

    #[test]
    fn dynamic_batching_and_instance_groups_map_onto_the_batcher_and_instances() {
        let o = ok(r#"{
            "dynamic_batching": {
                "preferred_batch_size": [4, "8"],
                "max_queue_delay_microseconds": "100",
                "preserve_ordering": true,
                "default_queue_policy": {"max_queue_size": 32, "default_timeout_microseconds": 5000,
                                         "timeout_action": "REJECT", "allow_timeout_override": true}
            },
            "instance_group": [{"count": 2, "kind": "KIND_CPU"}, {"name": "more", "kind": "KIND_AUTO"}]
        }"#);
        let b = o.batching.unwrap();
        assert_eq!(b.preferred_batch_sizes, Some(vec![4, 8]));
        assert_eq!(b.max_queue_delay, Some(Duration::from_micros(100)));
        assert_eq!(b.max_queue_size, Some(Some(32)));
        assert_eq!(b.default_timeout, Some(Some(Duration::from_millis(5))));
        assert_eq!(o.instances, Some(3));
        // Triton's 0: no bound or deadline of the model's own.
        let b = ok(r#"{"dynamic_batching": {"default_queue_policy": {"max_queue_size": 0, "default_timeout_microseconds": 0}}}"#)
            .batching
            .unwrap();
        assert_eq!(
            (b.max_queue_size, b.default_timeout),
            (Some(None), Some(None))
        );
        assert_eq!(
            ok(r#"{"dynamic_batching": {}}"#).batching,
            Some(BatchingOverride::default())
        );
        assert_eq!(ok(r#"{"instance_group": []}"#).instances, None);
        for (text, says) in [
            (
                r#"{"instance_group": [{"count": 1, "kind": "KIND_GPU"}]}"#,
                "instance_group[0].kind KIND_GPU: ferroserve runs models on the CPU",
            ),
            (
                r#"{"instance_group": [{"kind": "KIND_TPU"}]}"#,
                "\"KIND_TPU\": not KIND_CPU",
            ),
            (
                r#"{"instance_group": [{"count": 0}]}"#,
                "instance_group[0].count = 0",
            ),
            (
                r#"{"instance_group": [{"count": 1, "gpus": [0]}]}"#,
                "instance_group[0].gpus = [0]",
            ),
            (
                r#"{"dynamic_batching": {"priority_levels": 2}}"#,
                "priority_levels = 2: ferroserve's queues have no priorities",
            ),
            (
                r#"{"dynamic_batching": {"default_queue_policy": {"timeout_action": "DELAY"}}}"#,
                "DELAY",
            ),
            (
                r#"{"dynamic_batching": {"default_queue_policy": {"allow_timeout_override": false}}}"#,
                "allow_timeout_override false",
            ),
            (
                r#"{"dynamic_batching": {"preferred_batch_size": [0]}}"#,
                "preferred_batch_size = 0",
            ),
            (
                r#"{"dynamic_batching": {"max_queue_delay_microseconds": -5}}"#,
                "max_queue_delay_microseconds = -5",
            ),
            (
                r#"{"dynamic_batching": {"max_delay": 5}}"#,
                "unknown field `max_delay`",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn name_backend_platform_and_version_policy() {
        ok(r#"{"name": "simple"}"#);
        assert!(
            err(r#"{"name": "other"}"#).contains("\"other\": the model being loaded is \"simple\"")
        );
        assert_eq!(
            ok(r#"{"backend": "onnxruntime"}"#).backend,
            Some(BackendKind::Onnx)
        );
        assert_eq!(
            ok(r#"{"platform": "onnxruntime_onnx"}"#).backend,
            Some(BackendKind::Onnx)
        );
        assert_eq!(
            ok(r#"{"platform": "ferroserve_trees", "backend": "ferroserve_trees"}"#).backend,
            Some(BackendKind::Trees)
        );
        assert!(err(r#"{"backend": "pytorch"}"#).contains("backend \"pytorch\""));
        assert!(err(r#"{"platform": "tensorflow_savedmodel"}"#)
            .contains("platform \"tensorflow_savedmodel\""));
        assert!(
            err(r#"{"platform": "onnxruntime_onnx", "backend": "ferroserve_trees"}"#)
                .contains("different")
        );
        assert_eq!(
            ok(r#"{"default_model_filename": "m.onnx"}"#)
                .file
                .as_deref(),
            Some("m.onnx")
        );
        assert_eq!(
            ok(r#"{"version_policy": {"latest": {"num_versions": "2"}}}"#).version_policy,
            Some(VersionPolicy::Latest(2))
        );
        assert_eq!(
            ok(r#"{"version_policy": {"all": {}}}"#).version_policy,
            Some(VersionPolicy::All)
        );
        assert_eq!(
            ok(r#"{"version_policy": {"specific": {"versions": [1, "3"]}}}"#).version_policy,
            Some(VersionPolicy::Specific(vec![1, 3]))
        );
        for (text, says) in [
            (r#"{"version_policy": {}}"#, "exactly one"),
            (
                r#"{"version_policy": {"all": {}, "latest": {"num_versions": 1}}}"#,
                "exactly one",
            ),
            (
                r#"{"version_policy": {"latest": {}}}"#,
                "num_versions is missing",
            ),
            (
                r#"{"version_policy": {"latest": {"num_versions": 0}}}"#,
                "num_versions = 0",
            ),
            (
                r#"{"version_policy": {"specific": {"versions": []}}}"#,
                "no versions",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn inputs_and_outputs_become_expectations() {
        let o = ok(
            r#"{"input": [{"name": "INPUT0", "data_type": "TYPE_INT32", "dims": ["16"], "format": "FORMAT_NONE"}],
                       "output": [{"name": "OUTPUT0", "label_filename": ""}]}"#,
        );
        assert_eq!(
            o.inputs,
            [TensorExpectation {
                name: "INPUT0".into(),
                datatype: Some(DataType::Int32),
                dims: Some(vec![16])
            }]
        );
        assert_eq!(
            o.outputs,
            [TensorExpectation {
                name: "OUTPUT0".into(),
                datatype: None,
                dims: None
            }]
        );
        assert_eq!(
            ok(r#"{"input": [{"name": "s", "data_type": "TYPE_STRING"}]}"#).inputs[0].datatype,
            Some(DataType::Bytes)
        );
        for (text, says) in [
            (
                r#"{"input": [{"name": "a", "data_type": "FP32"}]}"#,
                "input \"a\".data_type \"FP32\": not a data type",
            ),
            (
                r#"{"input": [{"name": "a", "format": "FORMAT_NCHW"}]}"#,
                "FORMAT_NCHW",
            ),
            (
                r#"{"input": [{"name": "a", "reshape": {"shape": [4]}}]}"#,
                "input \"a\".reshape",
            ),
            (
                r#"{"input": [{"name": "a", "optional": true}]}"#,
                "input \"a\".optional = true",
            ),
            (
                r#"{"input": [{"data_type": "TYPE_FP32"}]}"#,
                "missing field `name`",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn keys_ferroserve_cannot_honour_are_refused_by_name_unless_empty() {
        // Empty asks for nothing.
        ok(
            r#"{"parameters": {}, "model_warmup": [], "optimization": {"priority": 0},
               "model_transaction_policy": {"decoupled": false}, "response_cache": {"enable": false},
               "metric_tags": null, "runtime": "", "batch_input": []}"#,
        );
        for (text, says) in [
            (
                r#"{"parameters": {"x": {"string_value": "1"}}}"#,
                "parameters = {\"x\":",
            ),
            (
                r#"{"model_transaction_policy": {"decoupled": true}}"#,
                "not decoupled",
            ),
            (r#"{"response_cache": {"enable": true}}"#, "response cache"),
            (
                r#"{"optimization": {"graph": {"level": 1}}}"#,
                "optimization_level",
            ),
            (r#"{"sequence_batching": {}}"#, "sequence batcher"),
            (r#"{"ensemble_scheduling": {"step": []}}"#, "ensembles"),
            (r#"{"runtime": "model.py"}"#, "runtime = \"model.py\""),
            (r#"{"max_batchsize": 8}"#, "unknown field `max_batchsize`"),
        ] {
            let e = err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        // Long values are cut short in the message.
        let e = err(&format!(
            r#"{{"parameters": {{"x": "{}"}}}}"#,
            "y".repeat(500)
        ));
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn the_config_answer_reads_back_as_an_override_that_changes_nothing_else() {
        // What GET /v2/models/simple/config answers, sent back with one change.
        let text = r#"{"name": "simple", "platform": "onnxruntime_onnx", "backend": "onnxruntime",
            "version_policy": {"latest": {"num_versions": 1}}, "max_batch_size": 16,
            "input": [{"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [16]}],
            "output": [{"name": "OUTPUT0", "data_type": "TYPE_INT32", "dims": [16]}],
            "instance_group": [{"name": "simple_0", "kind": "KIND_CPU", "count": 1}],
            "dynamic_batching": {"preferred_batch_size": [], "max_queue_delay_microseconds": 0,
              "default_queue_policy": {"max_queue_size": 1024, "default_timeout_microseconds": 0,
                "allow_timeout_override": true}}}"#;
        let o = ok(text);
        assert_eq!(o.max_batch_size, Some(16));
        assert_eq!(o.instances, Some(1));
        assert_eq!(o.backend, Some(BackendKind::Onnx));
    }
}
