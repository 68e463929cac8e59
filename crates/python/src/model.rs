//! A Python model: its configuration for the runner, its metadata, its workers (one per
//! instance, plus one for the HTTP adapter when it has one).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroserve_core::config::{CheckpointConfig, TensorConfig};
use ferroserve_core::model::Batch;
use ferroserve_core::{
    Adapter, AdapterRequest, BackendError, DataType, Instance, LoadedModel, ModelConfig,
    ModelMetadata, Task, Tensor, TensorMeta,
};
use serde_json::{json, Value};

use crate::slot::{Liveness, Slot};
use crate::wire;
use crate::worker::{self, Spec};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A loaded Python model.
pub struct PythonModel {
    meta: ModelMetadata,
    spec: Spec,
    call_timeout: Duration,
    live: Arc<Liveness>,
    /// Workers started and not yet taken by an instance (the one started by the load).
    pool: Mutex<Vec<Slot>>,
    next_index: AtomicUsize,
    adapter: Option<PythonAdapter>,
}

fn tensors(list: &[TensorConfig], default: &str) -> Vec<TensorMeta> {
    if list.is_empty() {
        return vec![TensorMeta {
            name: default.into(),
            datatype: DataType::Fp64,
            shape: vec![-1, -1],
        }];
    }
    list.iter()
        .map(|t| TensorMeta {
            name: t.name.clone(),
            // Checked when model.toml was read.
            datatype: DataType::parse(&t.datatype).unwrap_or(DataType::Fp64),
            shape: t.shape.clone(),
        })
        .collect()
}

fn runner_tensors(list: &[TensorMeta]) -> Value {
    list.iter()
        .map(|t| json!({ "name": t.name, "datatype": t.datatype.as_str(), "shape": t.shape }))
        .collect()
}

impl PythonModel {
    /// Starts the first worker, which imports the predictor and builds it from its checkpoint:
    /// a load fails (the model is not ready, with why) when that fails.
    pub fn load(cfg: &ModelConfig, dir: &Path) -> Result<Arc<PythonModel>, BackendError> {
        let predictor = cfg
            .predictor
            .clone()
            .ok_or_else(|| BackendError::Load("backend = \"python\" needs predictor".into()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| BackendError::Load(format!("the version folder: {e}")))?;
        let inputs = tensors(&cfg.inputs, "input");
        let outputs = tensors(&cfg.outputs, "output");
        if let (Some(names), [one]) = (&cfg.feature_names, inputs.as_slice()) {
            match one.shape.as_slice() {
                [_, n] if *n >= 0 && *n as usize != names.len() => {
                    return Err(BackendError::Load(format!(
                        "feature_names lists {} names; input {:?} has {n} columns",
                        names.len(),
                        one.name
                    )))
                }
                _ => {}
            }
        }
        let checkpoint = match &cfg.checkpoint {
            None => Value::Null,
            Some(CheckpointConfig::Dir(d)) => {
                let p = dir.join(d);
                if !p.is_dir() {
                    return Err(BackendError::Load(format!(
                        "checkpoint = {d:?}: no such folder in the version folder"
                    )));
                }
                json!({ "dir": p })
            }
            Some(CheckpointConfig::Dict(t)) => json!({
                "dict": serde_json::to_value(t).map_err(|e| BackendError::Load(format!("checkpoint: {e}")))?
            }),
        };
        let python = cfg
            .python
            .clone()
            .or_else(|| std::env::var("FERROSERVE_PYTHON").ok())
            .unwrap_or_else(|| "python3".into());
        let model = cfg.name.clone().unwrap_or_else(|| {
            dir.parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let config = json!({
            "model": model,
            "predictor": predictor,
            "checkpoint": checkpoint,
            "batch_format": cfg.batch_format.map(|b| b.as_str()),
            "inputs": runner_tensors(&inputs),
            "outputs": runner_tensors(&outputs),
            "feature_names": cfg.feature_names,
            "role": "predict",
        });
        let spec = Spec {
            model: model.clone(),
            python: worker::interpreter(&python),
            dir: dir.clone(),
            config,
            start_timeout: cfg.python_timeout(&cfg.worker_start_timeout, START_TIMEOUT),
        };
        let call_timeout = cfg.python_timeout(&cfg.worker_timeout, CALL_TIMEOUT);
        let live = Arc::new(Liveness::default());
        let first = Slot::start(spec.clone(), 0, live.clone(), call_timeout);
        first.wait_started().map_err(BackendError::Load)?;
        let adapter = match &cfg.adapter {
            None => None,
            Some(a) => {
                let mut s = spec.clone();
                s.config["role"] = json!("adapter");
                s.config["adapter"] = json!(a);
                // The adapter's worker does not count for readiness: requests that do not
                // go through it are served without it.
                let slot = Slot::start(s, usize::MAX, Arc::new(Liveness::default()), call_timeout);
                slot.wait_started().map_err(BackendError::Load)?;
                Some(PythonAdapter { slot })
            }
        };
        let description = format!(
            "Python predictor {predictor}{}{}",
            cfg.batch_format
                .map(|b| format!(" ({} batches)", b.as_str()))
                .unwrap_or_default(),
            cfg.adapter
                .as_deref()
                .map(|a| format!(", HTTP adapter {a}"))
                .unwrap_or_default(),
        );
        Ok(Arc::new(PythonModel {
            meta: ModelMetadata {
                platform: "python".into(),
                inputs,
                outputs,
                feature_names: cfg.feature_names.clone(),
                task: Task::Custom,
                description,
            },
            spec,
            call_timeout,
            live,
            pool: Mutex::new(vec![first]),
            next_index: AtomicUsize::new(1),
            adapter,
        }))
    }
}

impl LoadedModel for PythonModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, BackendError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let slot = pooled.unwrap_or_else(|| {
            let i = self.next_index.fetch_add(1, Ordering::Relaxed);
            Slot::start(self.spec.clone(), i, self.live.clone(), self.call_timeout)
        });
        Ok(Box::new(PythonInstance { slot }))
    }

    fn health(&self) -> Result<(), String> {
        self.live.health()
    }

    fn inline_instance(&self) -> bool {
        false
    }

    fn adapter(&self) -> Option<&dyn Adapter> {
        self.adapter.as_ref().map(|a| a as &dyn Adapter)
    }
}

/// One instance: one worker process.
struct PythonInstance {
    slot: Slot,
}

impl Instance for PythonInstance {
    fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, BackendError> {
        let body = wire::encode_tensors(&batch.inputs);
        let answer = self
            .slot
            .call(wire::PREDICT, &body)
            .map_err(|e| e.into_backend("predict"))?;
        let mut outs = wire::decode_tensors(&answer).map_err(BackendError::Run)?;
        for t in &outs {
            if t.shape.first().copied() != Some(batch.rows as i64) {
                return Err(BackendError::Run(format!(
                    "predict returned {} rows in {:?} for a batch of {} (one answer per row is needed)",
                    t.shape.first().copied().unwrap_or(0),
                    t.name,
                    batch.rows
                )));
            }
        }
        if !batch.outputs.is_empty() {
            if let Some(missing) = batch
                .outputs
                .iter()
                .find(|n| !outs.iter().any(|t| &t.name == *n))
            {
                let got: Vec<&str> = outs.iter().map(|t| t.name.as_str()).collect();
                return Err(BackendError::Run(format!(
                    "predict returned no output {missing:?} (it returned {})",
                    got.join(", ")
                )));
            }
            outs.retain(|t| batch.outputs.contains(&t.name));
        }
        Ok(outs)
    }
}

/// The HTTP adapter's worker (calls one at a time).
struct PythonAdapter {
    slot: Slot,
}

impl Adapter for PythonAdapter {
    fn adapt(&self, req: &AdapterRequest) -> Result<Vec<Tensor>, BackendError> {
        let head = json!({ "query": req.query, "has_body": req.body.is_some() }).to_string();
        let body = req.body.as_deref().unwrap_or_default();
        let mut frame = Vec::with_capacity(4 + head.len() + body.len());
        frame.extend_from_slice(&(head.len() as u32).to_le_bytes());
        frame.extend_from_slice(head.as_bytes());
        frame.extend_from_slice(body);
        let answer = self
            .slot
            .call(wire::ADAPT, &frame)
            .map_err(|e| e.into_backend("the HTTP adapter"))?;
        wire::decode_tensors(&answer).map_err(BackendError::Run)
    }
}
