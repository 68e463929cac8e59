//! The classification extension: a requested output with the parameter `classification: k`
//! is answered, instead of its values, as the top `k` entries of each row as `BYTES` strings
//! `"score:index"`, or `"score:index:label"` when the model has class labels for that output.
//! Transport-neutral: HTTP (JSON and binary) and gRPC answer the same tensor.

use ferroserve_core::{
    DataType, InferError, ModelMetadata, Param, RequestedOutput, Tensor, TensorData,
};

/// The parameter name.
pub const PARAM: &str = "classification";

/// Reads and checks the `classification` parameter of every requested output against the
/// model: `(output name, k)` for each output that asks for it. Decided before any compute.
pub fn requested(
    outputs: &[RequestedOutput],
    meta: &ModelMetadata,
) -> Result<Vec<(String, usize)>, InferError> {
    let mut out = Vec::new();
    for o in outputs {
        let Some(p) = o.parameters.get(PARAM) else {
            continue;
        };
        let k = match p {
            Param::Int(k) => Some(*k),
            Param::Float(_) | Param::Str(_) | Param::Bool(_) => p.as_i64(),
        };
        let k = match k {
            Some(k) if k >= 1 => k as usize,
            _ => {
                return Err(InferError::invalid(format!(
                    "output '{}': classification must be a whole number of classes of at least 1, got {}",
                    o.name,
                    param_text(p)
                )))
            }
        };
        if let Some(m) = meta.outputs.iter().find(|m| m.name == o.name) {
            if m.datatype == DataType::Bytes {
                return Err(InferError::invalid(format!(
                    "output '{}' is BYTES; classification needs a numeric output",
                    o.name
                )));
            }
        }
        out.push((o.name.clone(), k));
    }
    Ok(out)
}

fn param_text(p: &Param) -> String {
    match p {
        Param::Bool(b) => b.to_string(),
        Param::Int(i) => i.to_string(),
        Param::Float(f) => f.to_string(),
        Param::Str(s) => format!("{s:?}"),
    }
}

/// Element `i` as text (shortest form that reads back to the same value) and as a sort key.
fn score(data: &TensorData, i: usize) -> (String, f64) {
    let text = match data {
        TensorData::Bool(v) => (v[i] as u8).to_string(),
        TensorData::Uint8(v) => v[i].to_string(),
        TensorData::Uint16(v) => v[i].to_string(),
        TensorData::Uint32(v) => v[i].to_string(),
        TensorData::Uint64(v) => v[i].to_string(),
        TensorData::Int8(v) => v[i].to_string(),
        TensorData::Int16(v) => v[i].to_string(),
        TensorData::Int32(v) => v[i].to_string(),
        TensorData::Int64(v) => v[i].to_string(),
        TensorData::Fp16(v) => ferroserve_core::tensor::f16_to_f32(v[i]).to_string(),
        TensorData::Bf16(v) => ferroserve_core::tensor::bf16_to_f32(v[i]).to_string(),
        TensorData::Fp32(v) => v[i].to_string(),
        TensorData::Fp64(v) => v[i].to_string(),
        TensorData::Bytes(_) => String::new(),
    };
    (text, data.get_f64(i).unwrap_or(f64::NAN))
}

/// The top `k` classes of each row of `t` (rows along the first dimension, classes the rest),
/// highest score first, ties in index order, NaN last. `labels` are used when there is one per
/// class. The answer has shape `[rows, min(k, classes)]`.
pub fn classify(t: &Tensor, k: usize, labels: Option<&[String]>) -> Result<Tensor, InferError> {
    if t.datatype() == DataType::Bytes {
        return Err(InferError::invalid(format!(
            "output '{}' is BYTES; classification needs a numeric output",
            t.name
        )));
    }
    let (rows, classes) = match t.shape.split_first() {
        Some((&r, rest)) => (
            usize::try_from(r).map_err(|_| InferError::internal("negative output dimension"))?,
            Tensor::element_count(rest)?,
        ),
        None => (1, 1),
    };
    if rows.checked_mul(classes) != Some(t.data.len()) {
        return Err(InferError::internal(format!(
            "output '{}' has {} values for shape {:?}",
            t.name,
            t.data.len(),
            t.shape
        )));
    }
    let labels = labels.filter(|l| l.len() == classes);
    let k = k.min(classes);
    let mut out = Vec::with_capacity(rows * k);
    let mut order: Vec<(usize, f64)> = Vec::with_capacity(classes);
    for r in 0..rows {
        order.clear();
        order.extend((0..classes).map(|c| {
            let v = t.data.get_f64(r * classes + c).unwrap_or(f64::NAN);
            (c, if v.is_nan() { f64::NEG_INFINITY } else { v })
        }));
        // Highest first; the sort is stable, so equal scores keep index order.
        order.sort_by(|a, b| b.1.total_cmp(&a.1));
        for &(c, _) in order.iter().take(k) {
            let (text, _) = score(&t.data, r * classes + c);
            let s = match labels {
                Some(l) => format!("{text}:{c}:{}", l[c]),
                None => format!("{text}:{c}"),
            };
            out.push(s.into_bytes());
        }
    }
    Ok(Tensor::new(
        t.name.clone(),
        vec![rows as i64, k as i64],
        TensorData::Bytes(out),
    ))
}

/// Replaces every output asked for with `classification` by its top-k answer.
pub fn apply(
    outputs: &mut [Tensor],
    wanted: &[(String, usize)],
    meta: &ModelMetadata,
) -> Result<(), InferError> {
    if wanted.is_empty() {
        return Ok(());
    }
    // The classifier's labels, as text (made only for a request that asks for classification).
    let labels = meta.task.class_labels().map(|l| l.as_strings());
    for t in outputs.iter_mut() {
        if let Some((_, k)) = wanted.iter().find(|(n, _)| *n == t.name) {
            *t = classify(t, *k, labels.as_deref())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::Parameters;

    fn probs() -> Tensor {
        Tensor::new(
            "probabilities",
            vec![2, 3],
            TensorData::Fp32(vec![0.1, 0.7, 0.2, 0.5, 0.25, 0.25]),
        )
    }

    fn strings(t: &Tensor) -> Vec<String> {
        match &t.data {
            TensorData::Bytes(v) => v
                .iter()
                .map(|b| String::from_utf8(b.clone()).unwrap())
                .collect(),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn top_k_with_and_without_labels() {
        let labels = vec!["a".to_string(), "b".into(), "c".into()];
        let t = classify(&probs(), 2, Some(&labels)).unwrap();
        assert_eq!(t.shape, vec![2, 2]);
        assert_eq!(strings(&t), ["0.7:1:b", "0.2:2:c", "0.5:0:a", "0.25:1:b"]);
        let t = classify(&probs(), 1, None).unwrap();
        assert_eq!(strings(&t), ["0.7:1", "0.5:0"]);
        // Labels that do not fit the classes are left out; k is capped at the classes.
        let t = classify(&probs(), 9, Some(&labels[..2])).unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(strings(&t)[..3], ["0.7:1", "0.2:2", "0.1:0"]);
    }

    #[test]
    fn nan_sorts_last_and_integers_print_plainly() {
        let t = Tensor::new("v", vec![1, 3], TensorData::Fp64(vec![f64::NAN, -1.0, 2.0]));
        assert_eq!(
            strings(&classify(&t, 3, None).unwrap()),
            ["2:2", "-1:1", "NaN:0"]
        );
        let t = Tensor::new("label", vec![2], TensorData::Int64(vec![3, 4]));
        let c = classify(&t, 1, None).unwrap();
        assert_eq!(c.shape, vec![2, 1]);
        assert_eq!(strings(&c), ["3:0", "4:0"]);
    }

    #[test]
    fn bad_parameters_are_refused_before_compute() {
        let meta = ModelMetadata::default();
        for (p, ok) in [
            (Param::Int(2), true),
            (Param::Str("3".into()), true),
            (Param::Int(0), false),
            (Param::Float(1.5), false),
            (Param::Bool(true), false),
            (Param::Str("x".into()), false),
        ] {
            let mut parameters = Parameters::default();
            parameters.insert(PARAM, p.clone());
            let o = RequestedOutput {
                name: "probabilities".into(),
                parameters,
            };
            assert_eq!(requested(&[o], &meta).is_ok(), ok, "{p:?}");
        }
    }
}
