//! Triton's model configuration extension (`GET /v2/models/{m}[/versions/{v}]/config`, gRPC
//! `ModelConfig`): what a served version is, in the shape of Triton's `ModelConfig`, so tools
//! that read it first (perf_analyzer, model analyzers) work. One view, [`TritonConfig::of`],
//! that both fronts write out. Sent back as a load's `config` it reads as an override that
//! changes nothing ([`super::config_override`]).

use ferroserve_core::config::VersionPolicy;
use ferroserve_core::DataType;
use ferroserve_runtime::ServedVersion;
use serde_json::json;

/// One input or output: name, datatype and dimensions (without the batch dimension when the
/// model batches, as Triton writes them).
pub struct TensorConfig {
    pub name: String,
    pub datatype: DataType,
    pub dims: Vec<i64>,
}

/// A served version as Triton describes a model.
pub struct TritonConfig {
    pub name: String,
    pub platform: String,
    pub backend: &'static str,
    /// Rows one request may carry when every input and output's first dimension is the batch
    /// (`-1`); 0 when the model does not batch (then `dims` are the full shapes).
    pub max_batch_size: i32,
    pub inputs: Vec<TensorConfig>,
    pub outputs: Vec<TensorConfig>,
    /// Present when dynamic batching is on.
    pub dynamic_batching: Option<DynamicBatching>,
    pub instances: i32,
    pub version_policy: VersionPolicy,
}

/// Triton's `dynamic_batching`, as ferroserve's batcher runs.
pub struct DynamicBatching {
    pub preferred_batch_size: Vec<i32>,
    /// The longest a request waits for company.
    pub max_queue_delay_microseconds: u64,
    /// Requests admitted (queued or running) per version.
    pub max_queue_size: u32,
    /// The model's default deadline (0: none).
    pub default_timeout_microseconds: u64,
}

/// Triton's name of a datatype in its model configuration (`TYPE_*`; BYTES is `TYPE_STRING`).
pub fn type_name(dt: DataType) -> &'static str {
    match dt {
        DataType::Bool => "TYPE_BOOL",
        DataType::Uint8 => "TYPE_UINT8",
        DataType::Uint16 => "TYPE_UINT16",
        DataType::Uint32 => "TYPE_UINT32",
        DataType::Uint64 => "TYPE_UINT64",
        DataType::Int8 => "TYPE_INT8",
        DataType::Int16 => "TYPE_INT16",
        DataType::Int32 => "TYPE_INT32",
        DataType::Int64 => "TYPE_INT64",
        DataType::Fp16 => "TYPE_FP16",
        DataType::Fp32 => "TYPE_FP32",
        DataType::Fp64 => "TYPE_FP64",
        DataType::Bytes => "TYPE_STRING",
        DataType::Bf16 => "TYPE_BF16",
    }
}

fn clamp_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl TritonConfig {
    pub fn of(v: &ServedVersion) -> Self {
        let m = v.model.metadata();
        let batched = m.batches();
        let tensors = |ts: &[ferroserve_core::TensorMeta]| {
            ts.iter()
                .map(|t| TensorConfig {
                    name: t.name.clone(),
                    datatype: t.datatype,
                    dims: m.config_dims(t),
                })
                .collect()
        };
        let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let b = &v.config.batching;
        TritonConfig {
            name: v.name.clone(),
            platform: m.platform.clone(),
            backend: match m.platform.as_str() {
                "onnxruntime_onnx" => "onnxruntime",
                // Triton's name for its Python backend.
                "python" => "python",
                _ => "ferroserve_trees",
            },
            max_batch_size: if batched {
                clamp_i32(v.config.max_request_rows())
            } else {
                0
            },
            inputs: tensors(&m.inputs),
            outputs: tensors(&m.outputs),
            dynamic_batching: b.enabled.then(|| DynamicBatching {
                preferred_batch_size: b
                    .preferred_batch_sizes
                    .iter()
                    .map(|&n| clamp_i32(n))
                    .collect(),
                max_queue_delay_microseconds: micros(b.max_queue_delay()),
                max_queue_size: b
                    .max_queue_size
                    .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                default_timeout_microseconds: b.default_timeout().map_or(0, micros),
            }),
            instances: clamp_i32(v.config.instances.unwrap_or(1)),
            version_policy: v.config.version_policy.clone(),
        }
    }

    /// The JSON answer, as Triton's HTTP `.../config` writes it.
    pub fn to_json(&self) -> serde_json::Value {
        let tensors = |ts: &[TensorConfig]| {
            ts.iter()
                .map(|t| json!({ "name": t.name, "data_type": type_name(t.datatype), "dims": t.dims }))
                .collect::<Vec<_>>()
        };
        let mut doc = json!({
            "name": self.name,
            "platform": self.platform,
            "backend": self.backend,
            "version_policy": match &self.version_policy {
                VersionPolicy::Latest(n) => json!({ "latest": { "num_versions": n } }),
                VersionPolicy::All => json!({ "all": {} }),
                VersionPolicy::Specific(v) => json!({ "specific": { "versions": v } }),
            },
            "max_batch_size": self.max_batch_size,
            "input": tensors(&self.inputs),
            "output": tensors(&self.outputs),
            "instance_group": [{ "name": format!("{}_0", self.name), "kind": "KIND_CPU", "count": self.instances }],
        });
        if let Some(d) = &self.dynamic_batching {
            doc["dynamic_batching"] = json!({
                "preferred_batch_size": d.preferred_batch_size,
                "max_queue_delay_microseconds": d.max_queue_delay_microseconds,
                "default_queue_policy": {
                    "max_queue_size": d.max_queue_size,
                    "default_timeout_microseconds": d.default_timeout_microseconds,
                    // A request's own timeout always takes precedence.
                    "allow_timeout_override": true,
                },
            });
        }
        doc
    }
}
