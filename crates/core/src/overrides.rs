//! A load's override of a model's settings: what one load of a model asks to change in its
//! `model.toml` ([`ConfigOverride::apply`]), and what the loaded model must then be for the load
//! to be taken ([`ConfigOverride::check_model`]). It is the meaning of Triton's `config` load
//! parameter free of any wire format: the server reads Triton's JSON model configuration into
//! it, naming every key it cannot honour.
//!
//! An override is merged over the model's `model.toml` (keys it does not give keep their
//! `model.toml` value; Triton replaces the whole configuration, but most of `model.toml` has no
//! Triton key) and lasts for the one load: the next load without one reads `model.toml` alone.

use std::time::Duration;

use crate::config::{BackendKind, VersionPolicy};
use crate::{DataType, ModelConfig, ModelMetadata};

/// Most instances an override may ask for (a load parameter comes from a client; each
/// instance is a thread).
pub const MAX_OVERRIDE_INSTANCES: usize = 64;

/// What one load changes in the model's settings. Every field is optional: `None` keeps the
/// `model.toml` value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOverride {
    /// The backend to run the model on (Triton's `backend` or `platform`).
    pub backend: Option<BackendKind>,
    /// The artifact's file name in each version folder (Triton's `default_model_filename`).
    pub file: Option<String>,
    /// Which versions to serve (Triton's `version_policy`).
    pub version_policy: Option<VersionPolicy>,
    /// Triton's `max_batch_size`: the most rows one request may carry and one batch may hold
    /// (`max_request_rows` and `batching.max_batch_size`). `Some(0)` says the model has no
    /// batch dimension, which must be true of the loaded model.
    pub max_batch_size: Option<usize>,
    /// Triton's `dynamic_batching`: batching on, with these settings.
    pub batching: Option<BatchingOverride>,
    /// Compute threads (the sum of Triton's `instance_group` counts).
    pub instances: Option<usize>,
    /// Inputs the loaded model must have as described (Triton's `input`, which cannot change
    /// a model: accepted when it says what the model is).
    pub inputs: Vec<TensorExpectation>,
    /// Outputs likewise (Triton's `output`).
    pub outputs: Vec<TensorExpectation>,
}

/// Triton's `dynamic_batching`, as far as ferroserve's batcher has its settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchingOverride {
    /// `preferred_batch_size`.
    pub preferred_batch_sizes: Option<Vec<usize>>,
    /// `max_queue_delay_microseconds`.
    pub max_queue_delay: Option<Duration>,
    /// `default_queue_policy.max_queue_size`; `Some(None)` is Triton's 0 (no bound of the
    /// model's own): the server's `--max-queue-size` applies.
    pub max_queue_size: Option<Option<usize>>,
    /// `default_queue_policy.default_timeout_microseconds`; `Some(None)` is Triton's 0 (no
    /// default deadline).
    pub default_timeout: Option<Option<Duration>>,
}

/// An input or output as an override describes it: what the model must have.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorExpectation {
    pub name: String,
    /// When given, the tensor's datatype.
    pub datatype: Option<DataType>,
    /// When given, its dimensions as Triton writes them ([`ModelMetadata::config_dims`]).
    pub dims: Option<Vec<i64>>,
}

/// A duration as `model.toml` writes one, in whole microseconds.
fn micros(d: Duration) -> String {
    format!("{}us", d.as_micros())
}

impl ConfigOverride {
    /// `cfg` with this override merged over it, checked as `model.toml` is (a preferred batch
    /// size above the new `max_batch_size` is refused, naming both).
    pub fn apply(&self, cfg: &ModelConfig) -> Result<ModelConfig, String> {
        let mut out = cfg.clone();
        if let Some(b) = self.backend {
            out.backend = Some(b);
        }
        if let Some(f) = &self.file {
            out.file = Some(f.clone());
        }
        if let Some(p) = &self.version_policy {
            out.version_policy = p.clone();
        }
        if let Some(n) = self.max_batch_size.filter(|&n| n > 0) {
            out.max_request_rows = Some(n);
            out.batching.max_batch_size = n;
        }
        if let Some(b) = &self.batching {
            out.batching.enabled = true;
            if let Some(p) = &b.preferred_batch_sizes {
                out.batching.preferred_batch_sizes = p.clone();
            }
            if let Some(d) = b.max_queue_delay {
                out.batching.max_queue_delay = micros(d);
            }
            if let Some(q) = b.max_queue_size {
                out.batching.max_queue_size = q;
            }
            if let Some(t) = b.default_timeout {
                out.batching.default_timeout = t.map(micros);
            }
        }
        if let Some(n) = self.instances {
            if n == 0 || n > MAX_OVERRIDE_INSTANCES {
                return Err(format!(
                    "instance_group: {n} instances; expected 1 to {MAX_OVERRIDE_INSTANCES}"
                ));
            }
            out.instances = Some(n);
        }
        out.check().map_err(|e| format!("with the override, {e}"))?;
        Ok(out)
    }

    /// Checks what the override says the loaded model is: a batch dimension or none
    /// (`max_batch_size` > 0 or 0), and the inputs and outputs it describes.
    pub fn check_model(&self, meta: &ModelMetadata) -> Result<(), String> {
        match (self.max_batch_size, meta.batches()) {
            (Some(0), true) => {
                return Err(
                    "max_batch_size 0 says the model has no batch dimension, but every \
                     input and output of this one starts with one (-1): give 1 or more"
                        .into(),
                )
            }
            (Some(n), false) if n > 0 => {
                return Err(format!(
                    "max_batch_size {n} needs a batch dimension (-1 first) on every input and \
                     output, which this model does not have: give 0"
                ))
            }
            _ => {}
        }
        for (what, want, have) in [
            ("input", &self.inputs, &meta.inputs),
            ("output", &self.outputs, &meta.outputs),
        ] {
            for w in want {
                let Some(t) = have.iter().find(|t| t.name == w.name) else {
                    let names: Vec<&str> = have.iter().map(|t| t.name.as_str()).collect();
                    return Err(format!(
                        "{what} {:?}: the model has no such {what} ({}s: {}); the override cannot \
                         change a model's {what}s",
                        w.name,
                        what,
                        names.join(", ")
                    ));
                };
                if let Some(dt) = w.datatype.filter(|&dt| dt != t.datatype) {
                    return Err(format!(
                        "{what} {:?}: the override says {}, the model's is {}; the override \
                         cannot change a model's {what}s",
                        w.name,
                        dt.as_str(),
                        t.datatype.as_str()
                    ));
                }
                let dims = meta.config_dims(t);
                if let Some(d) = w.dims.as_ref().filter(|d| **d != dims) {
                    return Err(format!(
                        "{what} {:?}: the override says dims {d:?}, the model's are {dims:?}; \
                         the override cannot change a model's {what}s",
                        w.name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TensorMeta;

    fn meta(batched: bool) -> ModelMetadata {
        let first = if batched { -1 } else { 1 };
        let t = |n: &str| TensorMeta {
            name: n.into(),
            datatype: DataType::Int32,
            shape: vec![first, 16],
        };
        ModelMetadata {
            inputs: vec![t("INPUT0"), t("INPUT1")],
            outputs: vec![t("OUTPUT0")],
            ..Default::default()
        }
    }

    #[test]
    fn max_batch_size_sets_the_request_and_batch_bounds() {
        let o = ConfigOverride {
            max_batch_size: Some(16),
            ..Default::default()
        };
        let cfg = o.apply(&ModelConfig::default()).unwrap();
        assert_eq!(cfg.max_request_rows, Some(16));
        assert_eq!(cfg.batching.max_batch_size, 16);
        // A preferred size of model.toml's above it is refused, naming both.
        let toml = ModelConfig::from_toml("[batching]\npreferred_batch_sizes = [32]").unwrap();
        let e = o.apply(&toml).unwrap_err();
        assert!(
            e.contains("preferred_batch_sizes has 32") && e.contains("(16)"),
            "{e}"
        );
        // 0 changes nothing here; the model must then have no batch dimension.
        let zero = ConfigOverride {
            max_batch_size: Some(0),
            ..Default::default()
        };
        assert_eq!(
            zero.apply(&ModelConfig::default()).unwrap(),
            ModelConfig::default()
        );
        assert!(zero
            .check_model(&meta(true))
            .unwrap_err()
            .contains("give 1"));
        zero.check_model(&meta(false)).unwrap();
        assert!(o.check_model(&meta(false)).unwrap_err().contains("give 0"));
        o.check_model(&meta(true)).unwrap();
    }

    #[test]
    fn batching_instances_and_the_rest_merge_over_model_toml() {
        let toml = ModelConfig::from_toml(
            "description = \"kept\"\ninstances = 3\n[batching]\nenabled = false\nmax_queue_size = 7\ndefault_timeout = \"1s\"",
        )
        .unwrap();
        let o = ConfigOverride {
            backend: Some(BackendKind::Onnx),
            file: Some("m.onnx".into()),
            version_policy: Some(VersionPolicy::All),
            batching: Some(BatchingOverride {
                preferred_batch_sizes: Some(vec![4, 8]),
                max_queue_delay: Some(Duration::from_micros(1500)),
                max_queue_size: Some(None),
                default_timeout: None,
            }),
            instances: Some(2),
            ..Default::default()
        };
        let cfg = o.apply(&toml).unwrap();
        assert_eq!(cfg.description.as_deref(), Some("kept"));
        assert_eq!(cfg.backend, Some(BackendKind::Onnx));
        assert_eq!(cfg.file.as_deref(), Some("m.onnx"));
        assert_eq!(cfg.version_policy, VersionPolicy::All);
        assert_eq!(cfg.instances, Some(2));
        assert!(cfg.batching.enabled);
        assert_eq!(cfg.batching.preferred_batch_sizes, [4, 8]);
        assert_eq!(cfg.batching.max_queue_delay(), Duration::from_micros(1500));
        assert_eq!(cfg.batching.max_queue_size, None);
        assert_eq!(cfg.batching.default_timeout(), Some(Duration::from_secs(1)));
        let none = ConfigOverride {
            batching: Some(BatchingOverride {
                default_timeout: Some(None),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(none.apply(&toml).unwrap().batching.default_timeout, None);
        for n in [0, MAX_OVERRIDE_INSTANCES + 1] {
            let e = ConfigOverride {
                instances: Some(n),
                ..Default::default()
            }
            .apply(&toml)
            .unwrap_err();
            assert!(e.contains("instance_group"), "{e}");
        }
    }

    #[test]
    fn inputs_and_outputs_are_taken_when_they_say_what_the_model_is() {
        let want = |name: &str, datatype, dims: Option<Vec<i64>>| ConfigOverride {
            inputs: vec![TensorExpectation {
                name: name.into(),
                datatype,
                dims,
            }],
            ..Default::default()
        };
        want("INPUT0", Some(DataType::Int32), Some(vec![16]))
            .check_model(&meta(true))
            .unwrap();
        want("INPUT1", None, None).check_model(&meta(true)).unwrap();
        // Without a batch dimension, dims are the full shape.
        want("INPUT1", None, Some(vec![1, 16]))
            .check_model(&meta(false))
            .unwrap();
        for (o, says) in [
            (
                want("INPUTX", None, None),
                "no such input (inputs: INPUT0, INPUT1)",
            ),
            (want("INPUT0", Some(DataType::Fp32), None), "says FP32"),
            (want("INPUT0", None, Some(vec![8])), "dims [8]"),
        ] {
            let e = o.check_model(&meta(true)).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        let out = ConfigOverride {
            outputs: vec![TensorExpectation {
                name: "OUTPUT9".into(),
                datatype: None,
                dims: None,
            }],
            ..Default::default()
        };
        assert!(out
            .check_model(&meta(true))
            .unwrap_err()
            .starts_with("output \"OUTPUT9\""));
    }
}
