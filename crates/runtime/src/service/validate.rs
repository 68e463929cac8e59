//! Validation of a request against its model's metadata: the inputs' names, shapes, row counts
//! and types, and the outputs asked for ([`to_batch`], which builds the batch the model runs,
//! moving each input's data, never copying it); and the most values a request may hold
//! ([`max_values`]), which the fronts' parsers stop at.

use ferroserve_core::model::Batch;
use ferroserve_core::{InferError, LoadedModel, RequestedOutput, Tensor, TensorData};

use crate::ServedVersion;

/// The most values any one input of `served` can hold in a request within its row limit
/// (unbounded when an input has a variable dimension past the batch one).
pub fn max_values(served: &ServedVersion) -> usize {
    let rows = served.config.max_request_rows();
    served
        .model
        .metadata()
        .inputs
        .iter()
        .map(|i| {
            let (batch, rest) = match i.shape.split_first() {
                Some((&-1, rest)) => (rows, rest),
                _ => (1, &i.shape[..]),
            };
            rest.iter().try_fold(batch, |n, &d| {
                usize::try_from(d)
                    .ok()
                    .and_then(|d| n.checked_mul(d.max(1)))
            })
        })
        .try_fold(0usize, |m, n| n.map(|n| m.max(n)))
        .unwrap_or(usize::MAX)
}

/// Checks inputs and requested outputs against the model's metadata and builds the batch.
pub fn to_batch(
    model: &dyn LoadedModel,
    mut given: Vec<Tensor>,
    requested: &[RequestedOutput],
    max_rows: usize,
) -> Result<Batch, InferError> {
    let meta = model.metadata();
    if given.len() != meta.inputs.len() {
        let names: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(InferError::invalid(format!(
            "expected {} input(s) ({}), got {}",
            meta.inputs.len(),
            names.join(", "),
            given.len()
        )));
    }
    let mut inputs = Vec::with_capacity(given.len());
    let mut rows = None;
    for want in &meta.inputs {
        // With a single input any name is accepted; with several, names must match.
        let at = if meta.inputs.len() == 1 {
            0
        } else {
            given
                .iter()
                .position(|t| t.name == want.name)
                .ok_or_else(|| {
                    let expected: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
                    let got: Vec<&str> = given.iter().map(|t| t.name.as_str()).collect();
                    InferError::invalid(format!(
                        "missing input '{}': got {}; this model's inputs are: {}",
                        want.name,
                        got.join(", "),
                        expected.join(", ")
                    ))
                })?
        };
        let t = &mut given[at];
        let mut shape = t.shape.clone();
        // A single row may be sent without its batch dimension.
        if shape.len() + 1 == want.shape.len() && want.shape[0] == -1 {
            shape.insert(0, 1);
        }
        if shape.len() != want.shape.len() {
            if t.shape.is_empty() {
                return Err(InferError::invalid(format!(
                    "input '{}': shape [] is a scalar (0-d), but the model expects shape {:?}, whose first dimension is the batch (rows)",
                    t.name, want.shape
                )));
            }
            return Err(InferError::invalid(format!(
                "input '{}': shape {:?} does not match the model's {:?}",
                t.name, t.shape, want.shape
            )));
        }
        for (d, (&got, &exp)) in shape.iter().zip(&want.shape).enumerate() {
            if exp >= 0 && got != exp {
                return Err(InferError::invalid(format!(
                    "input '{}': dimension {d} is {got}, the model expects {exp} (shape {:?})",
                    t.name, want.shape
                )));
            }
        }
        // Rows are the first dimension: a model whose input has none (0-d) cannot be batched,
        // as Triton refuses a batching model without its batch dimension.
        let Some(&n) = shape.first() else {
            return Err(InferError::invalid(format!(
                "input '{}': shape [] is a scalar (0-d), as this model declares input '{}'; ferroserve runs models along a first, batch dimension, which this input lacks (export the model with a batch dimension, shape [-1], to serve it)",
                t.name, want.name
            )));
        };
        let n = n as usize;
        if n > max_rows {
            return Err(InferError::new(
                ferroserve_core::ErrorKind::TooLarge,
                format!("input '{}' has {n} rows; this model accepts at most {max_rows} per request (max_request_rows)", t.name),
            ));
        }
        match rows {
            None => rows = Some(n),
            Some(r) if r != n => {
                return Err(InferError::invalid(format!(
                    "inputs disagree on the number of rows ({r} and {n})"
                )))
            }
            _ => {}
        }
        if t.data.datatype() == ferroserve_core::DataType::Bytes
            && want.datatype != ferroserve_core::DataType::Bytes
        {
            return Err(InferError::invalid(format!(
                "input '{}': BYTES data for a {} input",
                t.name, want.datatype
            )));
        }
        // Numbers are converted to the model's input type; one it cannot hold (1e39 as FP64
        // for an FP32 input, 300 for UINT8) is refused, not turned into infinity or wrapped.
        let unheld = if want.datatype.holds_all(t.data.datatype()) {
            None
        } else {
            t.data.first_unheld(want.datatype)
        };
        if let Some((i, value)) = unheld {
            return Err(InferError::invalid(format!(
                "input '{}': value {value} (element {i}) is out of range for {}, the model's input type ({})",
                t.name,
                want.datatype,
                want.datatype.range()
            )));
        }
        inputs.push(Tensor {
            name: want.name.clone(),
            shape,
            data: std::mem::replace(&mut t.data, TensorData::empty(want.datatype)),
            parameters: Default::default(),
        });
    }
    let mut outputs = Vec::with_capacity(requested.len());
    for o in requested {
        if !meta.outputs.iter().any(|m| m.name == o.name) {
            let names: Vec<&str> = meta.outputs.iter().map(|m| m.name.as_str()).collect();
            return Err(InferError::invalid(format!(
                "unknown output '{}'; this model's outputs are: {}",
                o.name,
                names.join(", ")
            )));
        }
        outputs.push(o.name.clone());
    }
    Ok(Batch {
        inputs,
        rows: rows.unwrap_or(0),
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::{BackendError, DataType, ModelMetadata, TensorMeta};
    use std::sync::Arc;

    /// A model with the given inputs (name, type, shape) that answers nothing.
    struct Declared(ModelMetadata);

    impl Declared {
        fn new(inputs: &[(&str, DataType, &[i64])]) -> Declared {
            Declared(ModelMetadata {
                inputs: inputs
                    .iter()
                    .map(|(name, datatype, shape)| TensorMeta {
                        name: name.to_string(),
                        datatype: *datatype,
                        shape: shape.to_vec(),
                    })
                    .collect(),
                ..Default::default()
            })
        }
    }

    impl LoadedModel for Declared {
        fn metadata(&self) -> &ModelMetadata {
            &self.0
        }
        fn instance(self: Arc<Self>) -> Result<Box<dyn ferroserve_core::Instance>, BackendError> {
            struct Nothing;
            impl ferroserve_core::Instance for Nothing {
                fn run(&mut self, _: &Batch) -> Result<Vec<Tensor>, BackendError> {
                    Ok(Vec::new())
                }
            }
            Ok(Box::new(Nothing))
        }
    }

    fn one(name: &str, shape: Vec<i64>, data: TensorData) -> Vec<Tensor> {
        vec![Tensor::new(name, shape, data)]
    }

    #[test]
    fn values_the_models_input_type_cannot_hold_are_refused() {
        let m = Declared::new(&[("x", DataType::Fp32, &[-1, 2])]);
        let e = to_batch(
            &m,
            one(
                "x",
                vec![2, 2],
                TensorData::Fp64(vec![1.0, 2.0, 3.0, -1e39]),
            ),
            &[],
            100,
        )
        .unwrap_err();
        assert_eq!(e.kind, ferroserve_core::ErrorKind::InvalidInput);
        assert_eq!(
            e.message,
            "input 'x': value -1e39 (element 3) is out of range for FP32, the model's input type (numbers up to ±3.4028235e38)"
        );
        // What FP32 holds is converted as before (by the backend), infinities and NaN included.
        let b = to_batch(
            &m,
            one(
                "x",
                vec![2, 2],
                TensorData::Fp64(vec![3e38, f64::NAN, f64::INFINITY, 1e-60]),
            ),
            &[],
            100,
        )
        .unwrap();
        assert_eq!(b.rows, 2);
        let m = Declared::new(&[("k", DataType::Uint8, &[-1])]);
        let e = to_batch(
            &m,
            one("k", vec![2], TensorData::Int64(vec![7, 300])),
            &[],
            100,
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("input 'k': value 300 (element 1) is out of range for UINT8"),
            "{}",
            e.message
        );
        assert!(to_batch(
            &m,
            one("k", vec![2], TensorData::Int64(vec![7, 255])),
            &[],
            100
        )
        .is_ok());
    }

    #[test]
    fn zero_dimensional_inputs_are_refused_with_the_reason() {
        // A model whose input is 0-d: no batch dimension to run along.
        let m = Declared::new(&[("s", DataType::Fp32, &[])]);
        let e = to_batch(&m, one("s", vec![], TensorData::Fp32(vec![1.0])), &[], 100).unwrap_err();
        assert_eq!(e.kind, ferroserve_core::ErrorKind::InvalidInput);
        assert!(
            e.message.starts_with(
                "input 's': shape [] is a scalar (0-d), as this model declares input 's'; ferroserve runs models along a first, batch dimension"
            ),
            "{}",
            e.message
        );
        // A scalar for a model with a batch dimension and features.
        let m = Declared::new(&[("x", DataType::Fp32, &[-1, 4])]);
        let e = to_batch(&m, one("x", vec![], TensorData::Fp32(vec![1.0])), &[], 100).unwrap_err();
        assert_eq!(
            e.message,
            "input 'x': shape [] is a scalar (0-d), but the model expects shape [-1, 4], whose first dimension is the batch (rows)"
        );
        // A scalar for a one-dimensional input is one row of one value, as [n] is one row of
        // an [-1, n] input.
        let m = Declared::new(&[("k", DataType::Int64, &[-1])]);
        let b = to_batch(&m, one("k", vec![], TensorData::Int64(vec![7])), &[], 100).unwrap();
        assert_eq!((b.rows, b.inputs[0].shape.as_slice()), (1, &[1][..]));
    }
}
