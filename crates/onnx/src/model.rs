//! An ONNX graph on ONNX Runtime as a [`LoadedModel`].
//!
//! Metadata comes from the session (names, element types, shapes with `-1` for symbolic
//! dimensions) and from the file (ZipMap class labels). `ort` runs a session through `&mut`, so
//! a session belongs to one runner: each instance owns one ([`OnnxInstance`], made by
//! [`OnnxModel::new_instance`]) and runs every batch with it, without a lock. The first
//! instance gets the session built at load time (to read the graph's inputs and outputs); each
//! one after gets a new one, built from the same bytes and options.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ferroserve_core::config::OptimizationLevel;
use ferroserve_core::model::Batch;
use ferroserve_core::tensor::{f32_to_bf16, f32_to_f16};
use ferroserve_core::{
    BackendError, ClassLabels, Classifier, DataType, Instance, LoadedModel, ModelConfig,
    ModelMetadata, Regressor, Task, Tensor, TensorData, TensorMeta,
};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynMap, DynValue, Tensor as OrtTensor, TensorElementType, TensorRef, ValueType};

use crate::graph;
use crate::{library, strings, OnnxError};

/// How one graph output is answered.
#[derive(Debug, Clone)]
enum OutputKind {
    /// A tensor, answered as it is.
    Tensor(DataType),
    /// A sequence of maps (ZipMap: class → probability), answered as FP32 `[rows, classes]`
    /// in the order of `labels` (from the ZipMap node; else the first row's keys).
    ProbabilityMaps { labels: Option<ClassLabels> },
}

#[derive(Debug, Clone)]
struct Output {
    name: String,
    kind: OutputKind,
}

#[derive(Debug, Clone)]
struct Input {
    name: String,
    elem: TensorElementType,
}

/// Everything needed to build one more session.
struct Recipe {
    bytes: Arc<[u8]>,
    intra_op_threads: usize,
    level: GraphOptimizationLevel,
}

/// A loaded ONNX graph: what every instance shares.
pub struct OnnxModel {
    recipe: Recipe,
    /// The session built at load time, until the first instance takes it.
    first: Mutex<Option<Session>>,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    meta: ModelMetadata,
    /// Every input's first dimension is fixed to 1 (graphs exported with a batch of one): a
    /// batch of several rows runs row by row and the outputs are joined.
    one_row_at_a_time: bool,
}

/// The v2 data type of an ONNX element type, or `None` for those v2 cannot carry.
pub fn datatype_of(t: TensorElementType) -> Option<DataType> {
    Some(match t {
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Bfloat16 => DataType::Bf16,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::String => DataType::Bytes,
        // Complex numbers, 2/4/8-bit types and anything newer: no v2 data type.
        _ => return None,
    })
}

fn level(l: Option<OptimizationLevel>) -> GraphOptimizationLevel {
    match l {
        Some(OptimizationLevel::Disable) => GraphOptimizationLevel::Disable,
        Some(OptimizationLevel::Basic) => GraphOptimizationLevel::Level1,
        Some(OptimizationLevel::Extended) => GraphOptimizationLevel::Level2,
        Some(OptimizationLevel::All) | None => GraphOptimizationLevel::All,
    }
}

fn ort_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Recipe {
    fn session(&self) -> Result<Session, OnnxError> {
        let rt = library::runtime()?;
        let load = |m: String| OnnxError::Load(m);
        Session::builder(&rt.env)
            .map_err(ort_err)
            .map_err(load)?
            .with_intra_threads(self.intra_op_threads)
            .map_err(ort_err)
            .map_err(load)?
            .with_inter_threads(1)
            .map_err(ort_err)
            .map_err(load)?
            .with_optimization_level(self.level)
            .map_err(ort_err)
            .map_err(load)?
            .commit_from_memory(&self.bytes)
            .map_err(ort_err)
            .map_err(load)
    }
}

/// What the graph predicts, read from its outputs' kinds and shapes (never their names).
/// With class labels it is a classifier: its probabilities are the one ZipMap output, else the
/// one floating-point tensor `[rows, classes]`, and its label the one integer or string tensor
/// of one value per row (`[rows]` or `[rows, 1]`); either is left out when no output, or more
/// than one, fits. Without class labels, a graph whose only output is numbers, one row per row
/// (`[rows]` or `[rows, targets]`), is a regressor. Any other graph does not say.
fn task_of(labels: Option<ClassLabels>, outputs: &[Output], meta: &[TensorMeta]) -> Task {
    fn only<'a>(mut it: impl Iterator<Item = &'a TensorMeta>) -> Option<String> {
        match (it.next(), it.next()) {
            (Some(one), None) => Some(one.name.clone()),
            _ => None,
        }
    }
    let floats = |m: &TensorMeta| {
        matches!(
            m.datatype,
            DataType::Fp16 | DataType::Bf16 | DataType::Fp32 | DataType::Fp64
        )
    };
    match labels {
        Some(labels) => {
            let classes = labels.len() as i64;
            let zipmaps = outputs
                .iter()
                .zip(meta)
                .filter(|(o, _)| matches!(o.kind, OutputKind::ProbabilityMaps { .. }))
                .map(|(_, m)| m);
            let tensors = outputs
                .iter()
                .zip(meta)
                .filter(|(o, m)| {
                    matches!(o.kind, OutputKind::Tensor(_))
                        && floats(m)
                        && matches!(m.shape.as_slice(), [_, c] if *c == classes || *c < 0)
                })
                .map(|(_, m)| m);
            let probabilities_output = only(zipmaps).or_else(|| only(tensors));
            let label_output = only(meta.iter().filter(|m| {
                matches!(
                    m.datatype,
                    DataType::Int64 | DataType::Int32 | DataType::Bytes
                ) && matches!(m.shape.as_slice(), [_] | [_, 1])
            }));
            Task::Classifier(Classifier {
                labels,
                label_output,
                probabilities_output,
            })
        }
        None => match meta {
            [one]
                if !matches!(one.datatype, DataType::Bytes | DataType::Bool)
                    && matches!(one.shape.len(), 1 | 2) =>
            {
                Task::Regressor(Regressor {
                    output: one.name.clone(),
                })
            }
            _ => Task::Other,
        },
    }
}

fn shape_of(s: &[i64]) -> Vec<i64> {
    s.iter().map(|&d| if d < 0 { -1 } else { d }).collect()
}

impl OnnxModel {
    /// Loads `file` on ONNX Runtime with the model's configuration.
    pub fn load(cfg: &ModelConfig, file: &Path) -> Result<OnnxModel, OnnxError> {
        // Find the library first: without it nothing else matters, and its message says what
        // to install.
        let rt = library::runtime()?;
        let bytes: Arc<[u8]> = std::fs::read(file)
            .map_err(|e| OnnxError::Load(format!("cannot read the file: {e}")))?
            .into();
        let recipe = Recipe {
            bytes,
            intra_op_threads: cfg.intra_op_threads.unwrap_or(1).max(1),
            level: level(cfg.optimization_level),
        };
        let session = recipe.session()?;
        let facts = graph::read(&recipe.bytes);

        let mut inputs = Vec::new();
        let mut input_meta = Vec::new();
        for i in session.inputs() {
            match i.dtype() {
                ValueType::Tensor { ty, shape, .. } => {
                    let datatype = datatype_of(*ty).ok_or_else(|| {
                        OnnxError::Load(format!(
                            "input '{}' has element type {ty}, which the v2 protocol cannot carry",
                            i.name()
                        ))
                    })?;
                    inputs.push(Input {
                        name: i.name().to_string(),
                        elem: *ty,
                    });
                    input_meta.push(TensorMeta {
                        name: i.name().to_string(),
                        datatype,
                        shape: shape_of(shape),
                    });
                }
                other => {
                    return Err(OnnxError::Load(format!(
                        "input '{}' is a {other}, not a tensor; only tensor inputs can be sent over the v2 protocol",
                        i.name()
                    )))
                }
            }
        }

        let mut outputs = Vec::new();
        let mut output_meta = Vec::new();
        for o in session.outputs() {
            let (kind, meta) = match o.dtype() {
                ValueType::Tensor { ty, shape, .. } => {
                    let datatype = datatype_of(*ty).ok_or_else(|| {
                        OnnxError::Load(format!(
                            "output '{}' has element type {ty}, which the v2 protocol cannot carry",
                            o.name()
                        ))
                    })?;
                    (
                        OutputKind::Tensor(datatype),
                        TensorMeta {
                            name: o.name().to_string(),
                            datatype,
                            shape: shape_of(shape),
                        },
                    )
                }
                ValueType::Sequence(inner) => match inner.as_ref() {
                    ValueType::Map { key, value }
                        if matches!(key, TensorElementType::Int64 | TensorElementType::String)
                            && matches!(
                                value,
                                TensorElementType::Float32 | TensorElementType::Float64
                            ) =>
                    {
                        let labels = facts.zipmap_labels(o.name()).cloned();
                        let n = labels.as_ref().map_or(-1, |l| l.len() as i64);
                        (
                            OutputKind::ProbabilityMaps { labels },
                            TensorMeta {
                                name: o.name().to_string(),
                                datatype: DataType::Fp32,
                                shape: vec![-1, n],
                            },
                        )
                    }
                    other => {
                        return Err(OnnxError::Load(format!(
                            "output '{}' is a sequence of {other}; only tensors and sequences of \
                             class→probability maps (ZipMap) can be answered",
                            o.name()
                        )))
                    }
                },
                other => {
                    return Err(OnnxError::Load(format!(
                        "output '{}' is a {other}; only tensors and sequences of \
                         class→probability maps (ZipMap) can be answered",
                        o.name()
                    )))
                }
            };
            outputs.push(Output {
                name: o.name().to_string(),
                kind,
            });
            output_meta.push(meta);
        }

        // Class labels: model.toml, else a ZipMap's, else a classifier node's.
        let graph_labels = facts
            .zipmaps
            .first()
            .map(|(_, l)| l.clone())
            .or_else(|| facts.classifier_labels.clone());
        let class_labels = match (&cfg.class_labels, &graph_labels) {
            (Some(c), Some(g)) if c.len() != g.len() => {
                return Err(OnnxError::Load(format!(
                    "model.toml class_labels has {} labels but the graph has {} classes",
                    c.len(),
                    g.len()
                )))
            }
            (Some(c), _) => Some(ClassLabels::Str(c.clone())),
            (None, Some(g)) => Some(g.clone()),
            (None, None) => None,
        };
        let task = task_of(class_labels, &outputs, &output_meta);

        // Feature names: model.toml (checked against the input's width, or the number of
        // inputs when there is one per column), else the inputs' names when each is a column.
        let one_column_each = input_meta.len() > 1
            && input_meta
                .iter()
                .all(|m| m.shape.len() == 2 && m.shape[1] == 1);
        let feature_names = match &cfg.feature_names {
            Some(names) => {
                let width = match input_meta.as_slice() {
                    [one] if one.shape.len() == 2 && one.shape[1] >= 0 => {
                        Some(one.shape[1] as usize)
                    }
                    _ if one_column_each => Some(input_meta.len()),
                    _ => None,
                };
                if let Some(w) = width.filter(|w| *w != names.len()) {
                    return Err(OnnxError::Load(format!(
                        "model.toml feature_names has {} names but the graph reads {w} features",
                        names.len()
                    )));
                }
                Some(names.clone())
            }
            None if one_column_each => Some(input_meta.iter().map(|m| m.name.clone()).collect()),
            None => None,
        };

        let ops: Vec<&str> = facts.operators.iter().map(String::as_str).collect();
        let description = format!(
            "ONNX graph{} on ONNX Runtime {}: {} input(s), {} output(s); operators: {}",
            if facts.producer.is_empty() {
                String::new()
            } else {
                format!(" from {}", facts.producer)
            },
            rt.version,
            input_meta.len(),
            output_meta.len(),
            if ops.is_empty() {
                "unknown".into()
            } else {
                ops.join(", ")
            }
        );
        let meta = ModelMetadata {
            platform: "onnxruntime_onnx".into(),
            inputs: input_meta,
            outputs: output_meta,
            feature_names,
            task,
            description: cfg.description.clone().unwrap_or(description),
        };
        let one_row_at_a_time =
            !meta.inputs.is_empty() && meta.inputs.iter().all(|m| m.shape.first() == Some(&1));
        Ok(OnnxModel {
            recipe,
            first: Mutex::new(Some(session)),
            inputs,
            outputs,
            meta,
            one_row_at_a_time,
        })
    }

    /// An instance with a session of its own: the one built at load time for the first
    /// instance, a new one for each after.
    pub fn new_instance(self: &Arc<Self>) -> Result<OnnxInstance, OnnxError> {
        let first = match self.first.lock() {
            Ok(mut s) => s.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let session = match first {
            Some(s) => s,
            None => self.recipe.session()?,
        };
        Ok(OnnxInstance {
            model: self.clone(),
            session,
        })
    }

    /// The wanted outputs (all when `wanted` is empty), in graph order, as response tensors.
    fn collect(
        &self,
        out: &mut ort::session::SessionOutputs<'_>,
        wanted: &[String],
    ) -> Result<Vec<Tensor>, OnnxError> {
        let mut tensors = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            if !wanted.is_empty() && !wanted.iter().any(|n| n == &o.name) {
                continue;
            }
            let v = out.remove(o.name.as_str()).ok_or_else(|| {
                OnnxError::Run(format!("ONNX Runtime gave no output '{}'", o.name))
            })?;
            tensors.push(from_value(o, &v)?);
        }
        Ok(tensors)
    }
}

/// One instance of an ONNX graph: the shared model and a session only this instance runs.
pub struct OnnxInstance {
    model: Arc<OnnxModel>,
    session: Session,
}

impl OnnxInstance {
    /// The model this instance runs.
    pub fn model(&self) -> &Arc<OnnxModel> {
        &self.model
    }

    /// Runs the graph; the outputs in graph order, those not wanted left out.
    pub fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, OnnxError> {
        if self.model.one_row_at_a_time && batch.rows > 1 {
            return self.run_row_by_row(batch);
        }
        self.run_once(batch)
    }

    /// Runs a batch of several rows through a graph that takes one row, and joins the outputs
    /// along their first dimension (the batcher joins requests of one row each).
    fn run_row_by_row(&mut self, batch: &Batch) -> Result<Vec<Tensor>, OnnxError> {
        let mut joined: Vec<Tensor> = Vec::new();
        for r in 0..batch.rows {
            let inputs = batch
                .inputs
                .iter()
                .map(|t| {
                    let per_row = t.data.len() / batch.rows.max(1);
                    let mut shape = t.shape.clone();
                    if let Some(d0) = shape.first_mut() {
                        *d0 = 1;
                    }
                    Tensor::new(
                        t.name.clone(),
                        shape,
                        t.data.slice(r * per_row, (r + 1) * per_row),
                    )
                })
                .collect();
            let one = Batch {
                inputs,
                rows: 1,
                outputs: batch.outputs.clone(),
            };
            let out = self.run_once(&one)?;
            if joined.is_empty() {
                joined = out;
                continue;
            }
            for (acc, t) in joined.iter_mut().zip(out) {
                acc.data
                    .extend(&t.data)
                    .map_err(|e| OnnxError::Run(format!("output '{}': {e}", t.name)))?;
                if let (Some(a), Some(b)) = (acc.shape.first_mut(), t.shape.first()) {
                    *a += *b;
                }
            }
        }
        Ok(joined)
    }

    fn run_once(&mut self, batch: &Batch) -> Result<Vec<Tensor>, OnnxError> {
        let model = &self.model;
        if batch.inputs.len() != model.inputs.len() {
            return Err(OnnxError::Input(format!(
                "expected {} input tensor(s), got {}",
                model.inputs.len(),
                batch.inputs.len()
            )));
        }
        let mut inputs: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(model.inputs.len());
        for (spec, t) in model.inputs.iter().zip(&batch.inputs) {
            let t = if t.name == spec.name {
                t
            } else {
                batch
                    .inputs
                    .iter()
                    .find(|x| x.name == spec.name)
                    .ok_or_else(|| OnnxError::Input(format!("missing input '{}'", spec.name)))?
            };
            let value: SessionInputValue<'_> = match (&t.data, spec.elem) {
                // The common case is passed by reference, without a copy.
                (TensorData::Fp32(data), TensorElementType::Float32) => {
                    TensorRef::from_array_view((t.shape.clone(), data.as_slice()))
                        .map_err(|e| OnnxError::Input(format!("input '{}': {e}", spec.name)))?
                        .into()
                }
                _ => to_value(spec, t)?.into(),
            };
            inputs.push((spec.name.as_str(), value));
        }
        let mut out = self.session.run(inputs).map_err(run_error)?;
        model.collect(&mut out, &batch.outputs)
    }
}

/// ONNX Runtime's complaints about shapes and types are the client's doing; the rest is ours.
fn run_error(e: ort::Error) -> OnnxError {
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    if lower.contains("invalid argument")
        || lower.contains("invalid_argument")
        || lower.contains("got invalid dimensions")
        || lower.contains("invalid rank")
    {
        OnnxError::Input(msg)
    } else {
        OnnxError::Run(msg)
    }
}

macro_rules! numeric_vec {
    ($data:expr, $name:expr, $t:ty, $same:ident, $from_f64:expr) => {
        match $data {
            TensorData::$same(v) => v.clone(),
            TensorData::Bytes(_) => {
                return Err(OnnxError::Input(format!(
                    "input '{}': BYTES data for a numeric input",
                    $name
                )))
            }
            other => (0..other.len())
                .map(|i| other.get_f64(i).map_or(<$t>::default(), $from_f64))
                .collect::<Vec<$t>>(),
        }
    };
}

fn owned<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
    shape: &[i64],
    v: Vec<T>,
) -> Result<DynValue, String> {
    OrtTensor::from_array((shape.to_vec(), v))
        .map(|t| t.into_dyn())
        .map_err(|e| e.to_string())
}

/// Converts a request tensor to the element type the graph declares (numbers to numbers, BYTES
/// to strings; anything else is the client's mistake).
fn to_value(spec: &Input, t: &Tensor) -> Result<DynValue, OnnxError> {
    let name = &spec.name;
    let shape = &t.shape;
    let r = match spec.elem {
        TensorElementType::String => {
            let TensorData::Bytes(items) = &t.data else {
                return Err(OnnxError::Input(format!(
                    "input '{name}' takes strings (BYTES), got {}",
                    t.data.datatype()
                )));
            };
            // BYTES are bytes: every element reaches the graph as it came, NUL and invalid
            // UTF-8 included.
            strings::to_tensor(shape, items)
        }
        TensorElementType::Float32 => owned(
            shape,
            numeric_vec!(&t.data, name, f32, Fp32, |x: f64| x as f32),
        ),
        TensorElementType::Float64 => {
            owned(shape, numeric_vec!(&t.data, name, f64, Fp64, |x: f64| x))
        }
        TensorElementType::Int64 => owned(
            shape,
            numeric_vec!(&t.data, name, i64, Int64, |x: f64| x as i64),
        ),
        TensorElementType::Int32 => owned(
            shape,
            numeric_vec!(&t.data, name, i32, Int32, |x: f64| x as i32),
        ),
        TensorElementType::Int16 => owned(
            shape,
            numeric_vec!(&t.data, name, i16, Int16, |x: f64| x as i16),
        ),
        TensorElementType::Int8 => owned(
            shape,
            numeric_vec!(&t.data, name, i8, Int8, |x: f64| x as i8),
        ),
        TensorElementType::Uint64 => owned(
            shape,
            numeric_vec!(&t.data, name, u64, Uint64, |x: f64| x as u64),
        ),
        TensorElementType::Uint32 => owned(
            shape,
            numeric_vec!(&t.data, name, u32, Uint32, |x: f64| x as u32),
        ),
        TensorElementType::Uint16 => owned(
            shape,
            numeric_vec!(&t.data, name, u16, Uint16, |x: f64| x as u16),
        ),
        TensorElementType::Uint8 => owned(
            shape,
            numeric_vec!(&t.data, name, u8, Uint8, |x: f64| x as u8),
        ),
        TensorElementType::Bool => owned(
            shape,
            numeric_vec!(&t.data, name, bool, Bool, |x: f64| x != 0.0),
        ),
        TensorElementType::Float16 => {
            let bits = numeric_vec!(&t.data, name, u16, Fp16, |x: f64| f32_to_f16(x as f32));
            owned(
                shape,
                bits.into_iter()
                    .map(half::f16::from_bits)
                    .collect::<Vec<_>>(),
            )
        }
        TensorElementType::Bfloat16 => {
            let bits = numeric_vec!(&t.data, name, u16, Bf16, |x: f64| f32_to_bf16(x as f32));
            owned(
                shape,
                bits.into_iter()
                    .map(half::bf16::from_bits)
                    .collect::<Vec<_>>(),
            )
        }
        other => {
            return Err(OnnxError::Input(format!(
                "input '{name}' has element type {other}, which cannot be sent"
            )))
        }
    };
    r.map_err(|e| OnnxError::Input(format!("input '{name}': {e}")))
}

fn extract<T: ort::value::PrimitiveTensorElementType + Clone>(
    v: &DynValue,
) -> Result<(Vec<i64>, Vec<T>), OnnxError> {
    let (shape, data) = v
        .try_extract_tensor::<T>()
        .map_err(|e| OnnxError::Run(e.to_string()))?;
    Ok((shape.to_vec(), data.to_vec()))
}

/// Converts one graph output to a response tensor.
fn from_value(o: &Output, v: &DynValue) -> Result<Tensor, OnnxError> {
    match &o.kind {
        OutputKind::Tensor(dt) => {
            let (shape, data) = match dt {
                DataType::Fp32 => extract::<f32>(v).map(|(s, d)| (s, TensorData::Fp32(d)))?,
                DataType::Fp64 => extract::<f64>(v).map(|(s, d)| (s, TensorData::Fp64(d)))?,
                DataType::Int64 => extract::<i64>(v).map(|(s, d)| (s, TensorData::Int64(d)))?,
                DataType::Int32 => extract::<i32>(v).map(|(s, d)| (s, TensorData::Int32(d)))?,
                DataType::Int16 => extract::<i16>(v).map(|(s, d)| (s, TensorData::Int16(d)))?,
                DataType::Int8 => extract::<i8>(v).map(|(s, d)| (s, TensorData::Int8(d)))?,
                DataType::Uint64 => extract::<u64>(v).map(|(s, d)| (s, TensorData::Uint64(d)))?,
                DataType::Uint32 => extract::<u32>(v).map(|(s, d)| (s, TensorData::Uint32(d)))?,
                DataType::Uint16 => extract::<u16>(v).map(|(s, d)| (s, TensorData::Uint16(d)))?,
                DataType::Uint8 => extract::<u8>(v).map(|(s, d)| (s, TensorData::Uint8(d)))?,
                DataType::Bool => extract::<bool>(v).map(|(s, d)| (s, TensorData::Bool(d)))?,
                DataType::Fp16 => extract::<half::f16>(v).map(|(s, d)| {
                    (
                        s,
                        TensorData::Fp16(d.into_iter().map(|x| x.to_bits()).collect()),
                    )
                })?,
                DataType::Bf16 => extract::<half::bf16>(v).map(|(s, d)| {
                    (
                        s,
                        TensorData::Bf16(d.into_iter().map(|x| x.to_bits()).collect()),
                    )
                })?,
                DataType::Bytes => {
                    let (shape, items) = strings::from_tensor(v)
                        .map_err(|e| OnnxError::Run(format!("output '{}': {e}", o.name)))?;
                    (shape, TensorData::Bytes(items))
                }
            };
            Ok(Tensor::new(o.name.clone(), shape, data))
        }
        OutputKind::ProbabilityMaps { labels } => {
            let maps = v
                .try_extract_sequence::<ort::value::DynMapValueType>()
                .map_err(|e| OnnxError::Run(format!("output '{}': {e}", o.name)))?;
            let rows = maps.len();
            let mut probs: Vec<f32> = Vec::new();
            let mut order: Option<ClassLabels> = labels.clone();
            for m in &maps {
                let row =
                    map_row(m).map_err(|e| OnnxError::Run(format!("output '{}': {e}", o.name)))?;
                let want = order.get_or_insert_with(|| row.keys());
                row.push_in_order(want, &mut probs);
            }
            let n = order.as_ref().map_or(0, ClassLabels::len);
            Ok(Tensor::new(
                o.name.clone(),
                vec![rows as i64, n as i64],
                TensorData::Fp32(probs),
            ))
        }
    }
}

/// One ZipMap row: class → probability.
enum Row {
    Int(Vec<(i64, f32)>),
    Str(Vec<(String, f32)>),
}

impl Row {
    fn keys(&self) -> ClassLabels {
        match self {
            Row::Int(v) => ClassLabels::Int(v.iter().map(|(k, _)| *k).collect()),
            Row::Str(v) => ClassLabels::Str(v.iter().map(|(k, _)| k.clone()).collect()),
        }
    }

    /// Appends the row's probabilities in label order (a class the row lacks gets 0).
    fn push_in_order(&self, labels: &ClassLabels, out: &mut Vec<f32>) {
        match (self, labels) {
            (Row::Int(kv), ClassLabels::Int(l)) => out.extend(
                l.iter()
                    .map(|c| kv.iter().find(|(k, _)| k == c).map_or(0.0, |(_, p)| *p)),
            ),
            (Row::Str(kv), ClassLabels::Str(l)) => out.extend(
                l.iter()
                    .map(|c| kv.iter().find(|(k, _)| k == c).map_or(0.0, |(_, p)| *p)),
            ),
            // Labels of the other kind than the keys (a graph ZipMap relabelled): positional.
            (Row::Int(kv), ClassLabels::Str(l)) => {
                out.extend((0..l.len()).map(|i| kv.get(i).map_or(0.0, |(_, p)| *p)))
            }
            (Row::Str(kv), ClassLabels::Int(l)) => {
                out.extend((0..l.len()).map(|i| kv.get(i).map_or(0.0, |(_, p)| *p)))
            }
        }
    }
}

fn map_row(m: &DynMap) -> Result<Row, String> {
    match m.dtype() {
        ValueType::Map {
            key: TensorElementType::Int64,
            value: TensorElementType::Float32,
        } => Ok(Row::Int(
            m.try_extract_key_values::<i64, f32>().map_err(ort_err)?,
        )),
        ValueType::Map {
            key: TensorElementType::Int64,
            value: TensorElementType::Float64,
        } => Ok(Row::Int(
            m.try_extract_key_values::<i64, f64>()
                .map_err(ort_err)?
                .into_iter()
                .map(|(k, v)| (k, v as f32))
                .collect(),
        )),
        ValueType::Map {
            key: TensorElementType::String,
            value: TensorElementType::Float32,
        } => Ok(Row::Str(
            m.try_extract_key_values::<String, f32>().map_err(ort_err)?,
        )),
        ValueType::Map {
            key: TensorElementType::String,
            value: TensorElementType::Float64,
        } => Ok(Row::Str(
            m.try_extract_key_values::<String, f64>()
                .map_err(ort_err)?
                .into_iter()
                .map(|(k, v)| (k, v as f32))
                .collect(),
        )),
        other => Err(format!(
            "expected a map of class → probability, got {other}"
        )),
    }
}

impl LoadedModel for OnnxModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    fn instance(self: Arc<Self>) -> Result<Box<dyn Instance>, BackendError> {
        Ok(Box::new(self.new_instance()?))
    }

    /// ONNX Runtime runs a batch's rows together (one matrix product for all): a large request
    /// is cut only to use the instances.
    fn keeps_large_requests(&self) -> bool {
        true
    }

    /// Computes without waiting on anything: on the shared compute pool.
    fn shares_compute_pool(&self) -> bool {
        true
    }
}

impl Instance for OnnxInstance {
    fn run(&mut self, batch: &Batch) -> Result<Vec<Tensor>, BackendError> {
        OnnxInstance::run(self, batch).map_err(Into::into)
    }
}
