//! Triton's model configuration extension (`GET /v2/models/{m}[/versions/{v}]/config`, gRPC
//! `ModelConfig`): what a served version is, in the shape of Triton's `ModelConfig`, so tools
//! that read it first (perf_analyzer, model analyzers) work. One view, [`TritonConfig::of`],
//! that both fronts write out.

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
    /// Dynamic batching on: preferred batch sizes and the longest wait for company.
    pub dynamic_batching: Option<(Vec<i32>, u64)>,
    pub instances: i32,
    pub version_policy: VersionPolicy,
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
        let batched = m
            .inputs
            .iter()
            .chain(&m.outputs)
            .all(|t| t.shape.first() == Some(&-1));
        let tensors = |ts: &[ferroserve_core::TensorMeta]| {
            ts.iter()
                .map(|t| TensorConfig {
                    name: t.name.clone(),
                    datatype: t.datatype,
                    dims: if batched {
                        t.shape[1..].to_vec()
                    } else {
                        t.shape.clone()
                    },
                })
                .collect()
        };
        let b = &v.config.batching;
        TritonConfig {
            name: v.name.clone(),
            platform: m.platform.clone(),
            backend: if m.platform == "onnxruntime_onnx" {
                "onnxruntime"
            } else {
                "ferroserve_trees"
            },
            max_batch_size: if batched {
                clamp_i32(v.config.max_request_rows())
            } else {
                0
            },
            inputs: tensors(&m.inputs),
            outputs: tensors(&m.outputs),
            dynamic_batching: b.enabled.then(|| {
                (
                    b.preferred_batch_sizes
                        .iter()
                        .map(|&n| clamp_i32(n))
                        .collect(),
                    u64::try_from(b.max_queue_delay().as_micros()).unwrap_or(u64::MAX),
                )
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
        if let Some((preferred, delay)) = &self.dynamic_batching {
            doc["dynamic_batching"] = json!({
                "preferred_batch_size": preferred,
                "max_queue_delay_microseconds": delay,
            });
        }
        doc
    }
}
