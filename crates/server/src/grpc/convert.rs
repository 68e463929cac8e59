//! gRPC messages to and from the transport-neutral request and response: typed `contents` or
//! `raw_input_contents` in, `raw_output_contents` out whatever the request used, as Triton
//! answers (its examples and tritonclient read outputs from `raw_output_contents` only).

use std::collections::HashMap;

use bytes::Bytes;
use ferroserve_core::{
    raw, DataType, InferError, InferRequest, InferResponse, Param, Parameters, RequestedOutput,
    Tensor, TensorData,
};

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};

/// Parameters from a protobuf map, in key order (maps have none of their own).
pub fn params_from_proto(map: HashMap<String, InferParameter>) -> Parameters {
    let mut entries: Vec<(String, InferParameter)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut p = Parameters::default();
    for (k, v) in entries {
        let v = match v.parameter_choice {
            Some(ParameterChoice::BoolParam(b)) => Param::Bool(b),
            Some(ParameterChoice::Int64Param(i)) => Param::Int(i),
            Some(ParameterChoice::StringParam(s)) => Param::Str(s),
            Some(ParameterChoice::DoubleParam(f)) => Param::Float(f),
            Some(ParameterChoice::Uint64Param(u)) => match i64::try_from(u) {
                Ok(i) => Param::Int(i),
                Err(_) => Param::Str(u.to_string()),
            },
            None => continue,
        };
        p.insert(k, v);
    }
    p
}

/// Parameters as a protobuf map.
pub fn params_to_proto(p: &Parameters) -> HashMap<String, InferParameter> {
    p.0.iter()
        .map(|(k, v)| {
            let choice = match v {
                Param::Bool(b) => ParameterChoice::BoolParam(*b),
                Param::Int(i) => ParameterChoice::Int64Param(*i),
                Param::Float(f) => ParameterChoice::DoubleParam(*f),
                Param::Str(s) => ParameterChoice::StringParam(s.clone()),
            };
            (
                k.clone(),
                InferParameter {
                    parameter_choice: Some(choice),
                },
            )
        })
        .collect()
}

/// The typed field a datatype travels in.
fn field_of(dt: DataType) -> Option<&'static str> {
    Some(match dt {
        DataType::Bool => "bool_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::Fp16 | DataType::Bf16 => return None,
    })
}

fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
    name: &str,
    dt: DataType,
    v: Vec<S>,
) -> Result<Vec<T>, InferError> {
    v.into_iter()
        .map(|x| {
            T::try_from(x)
                .map_err(|_| ferroserve_core::tensor::out_of_range(name, dt, &x.to_string()))
        })
        .collect()
}

/// An input's data from its typed `contents`.
fn typed_input(
    name: &str,
    dt: DataType,
    c: InferTensorContents,
    n: usize,
) -> Result<TensorData, InferError> {
    let filled: Vec<(&str, usize)> = [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|(_, len)| *len > 0)
    .collect();
    let Some(field) = field_of(dt) else {
        return Err(InferError::invalid(format!(
            "input '{name}': {dt} has no typed contents field; send its data in raw_input_contents"
        )));
    };
    if let Some((other, _)) = filled.iter().find(|(f, _)| *f != field) {
        return Err(InferError::invalid(format!(
            "input '{name}': datatype {dt} takes its values in contents.{field}, but contents.{other} holds data"
        )));
    }
    let data = match dt {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::Int8 => TensorData::Int8(narrow(name, dt, c.int_contents)?),
        DataType::Int16 => TensorData::Int16(narrow(name, dt, c.int_contents)?),
        DataType::Int32 => TensorData::Int32(c.int_contents),
        DataType::Int64 => TensorData::Int64(c.int64_contents),
        DataType::Uint8 => TensorData::Uint8(narrow(name, dt, c.uint_contents)?),
        DataType::Uint16 => TensorData::Uint16(narrow(name, dt, c.uint_contents)?),
        DataType::Uint32 => TensorData::Uint32(c.uint_contents),
        DataType::Uint64 => TensorData::Uint64(c.uint64_contents),
        DataType::Fp32 => TensorData::Fp32(c.fp32_contents),
        DataType::Fp64 => TensorData::Fp64(c.fp64_contents),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents),
        DataType::Fp16 | DataType::Bf16 => TensorData::empty(dt),
    };
    if data.len() != n {
        return Err(InferError::invalid(format!(
            "input '{name}': the shape needs {n} values but contents.{field} has {}",
            data.len()
        )));
    }
    Ok(data)
}

/// Converts a `ModelInferRequest` (its model name and version already used to find the model)
/// into an [`InferRequest`].
pub fn request_from_proto(m: ModelInferRequest) -> Result<InferRequest, InferError> {
    let raw_in = !m.raw_input_contents.is_empty();
    if raw_in {
        // Triton's wording, which its examples check.
        if let Some(both) = m.inputs.iter().find(|i| {
            i.contents
                .as_ref()
                .is_some_and(|c| *c != InferTensorContents::default())
        }) {
            return Err(InferError::invalid(format!(
                "contents field must not be specified when using raw_input_contents for '{}' for model '{}'",
                both.name, m.model_name
            )));
        }
    }
    if raw_in && m.raw_input_contents.len() != m.inputs.len() {
        return Err(InferError::invalid(format!(
            "raw_input_contents has {} entries for {} input(s); send one per input, in order",
            m.raw_input_contents.len(),
            m.inputs.len()
        )));
    }
    let mut raws = m.raw_input_contents.into_iter();
    let mut inputs = Vec::with_capacity(m.inputs.len());
    for inp in m.inputs {
        let InferInputTensor {
            name,
            datatype,
            shape,
            parameters,
            contents,
        } = inp;
        let (dt, n) = DataType::of_input(&name, &datatype, &shape)?;
        let data = match (raws.next(), contents) {
            (Some(bytes), None) => raw::decode(&name, dt, &bytes, n)?,
            // Typed contents beside raw data were refused above.
            (Some(bytes), Some(_)) => raw::decode(&name, dt, &bytes, n)?,
            (None, c) => typed_input(&name, dt, c.unwrap_or_default(), n)?,
        };
        inputs.push(Tensor {
            name,
            shape,
            data,
            parameters: params_from_proto(parameters),
        });
    }
    let outputs = m
        .outputs
        .into_iter()
        .map(|o| RequestedOutput {
            name: o.name,
            parameters: params_from_proto(o.parameters),
        })
        .collect();
    Ok(InferRequest {
        id: (!m.id.is_empty()).then_some(m.id),
        inputs,
        outputs,
        parameters: params_from_proto(m.parameters),
    })
}

/// Converts a response: every output's data in `raw_output_contents` (one entry per output, in
/// order), `contents` left empty, as Triton answers.
pub fn response_to_proto(resp: InferResponse) -> ModelInferResponse {
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    let mut raw_output_contents = Vec::with_capacity(resp.outputs.len());
    for t in resp.outputs {
        raw_output_contents.push(Bytes::from(raw::to_vec(&t.data)));
        let datatype = t.datatype().as_str().to_string();
        outputs.push(InferOutputTensor {
            name: t.name,
            datatype,
            shape: t.shape,
            parameters: params_to_proto(&t.parameters),
            contents: None,
        });
    }
    ModelInferResponse {
        model_name: resp.model_name,
        model_version: resp.model_version,
        id: resp.id.unwrap_or_default(),
        parameters: params_to_proto(&resp.parameters),
        outputs,
        raw_output_contents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(dt: &str, shape: Vec<i64>, contents: InferTensorContents) -> InferInputTensor {
        InferInputTensor {
            name: "x".into(),
            datatype: dt.into(),
            shape,
            parameters: HashMap::new(),
            contents: Some(contents),
        }
    }

    #[test]
    fn typed_and_raw_inputs_give_the_same_request() {
        let typed = ModelInferRequest {
            inputs: vec![input(
                "FP32",
                vec![1, 2],
                InferTensorContents {
                    fp32_contents: vec![1.5, 2.5],
                    ..Default::default()
                },
            )],
            ..Default::default()
        };
        let mut raw_req = typed.clone();
        raw_req.inputs[0].contents = None;
        raw_req.raw_input_contents =
            vec![Bytes::from(raw::to_vec(&TensorData::Fp32(vec![1.5, 2.5])))];
        let a = request_from_proto(typed).unwrap();
        let b = request_from_proto(raw_req).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn typed_contents_are_checked() {
        let cases = [
            (
                input(
                    "FP32",
                    vec![2],
                    InferTensorContents {
                        fp64_contents: vec![1.0, 2.0],
                        ..Default::default()
                    },
                ),
                "contents.fp64_contents holds data",
            ),
            (
                input(
                    "INT8",
                    vec![1],
                    InferTensorContents {
                        int_contents: vec![300],
                        ..Default::default()
                    },
                ),
                "out of range",
            ),
            (
                input(
                    "FP32",
                    vec![3],
                    InferTensorContents {
                        fp32_contents: vec![1.0],
                        ..Default::default()
                    },
                ),
                "needs 3 values",
            ),
            (
                input("FP16", vec![1], Default::default()),
                "raw_input_contents",
            ),
            (
                input("FP99", vec![1], Default::default()),
                "unknown datatype",
            ),
        ];
        for (inp, want) in cases {
            let m = ModelInferRequest {
                inputs: vec![inp],
                ..Default::default()
            };
            let e = request_from_proto(m).unwrap_err();
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
        let m = ModelInferRequest {
            inputs: vec![input("FP32", vec![1], Default::default())],
            raw_input_contents: vec![Bytes::new(), Bytes::new()],
            ..Default::default()
        };
        assert!(request_from_proto(m)
            .unwrap_err()
            .message
            .contains("2 entries"));
    }

    #[test]
    fn typed_contents_beside_raw_data_are_refused_in_tritons_words() {
        let mut m = ModelInferRequest {
            model_name: "simple".into(),
            inputs: vec![input(
                "INT32",
                vec![1, 8],
                InferTensorContents {
                    int_contents: vec![1; 8],
                    ..Default::default()
                },
            )],
            raw_input_contents: vec![Bytes::from(vec![0u8; 32])],
            ..Default::default()
        };
        m.inputs[0].name = "INPUT0".into();
        let e = request_from_proto(m).unwrap_err();
        assert_eq!(
            e.message,
            "contents field must not be specified when using raw_input_contents for 'INPUT0' for model 'simple'"
        );
    }

    #[test]
    fn responses_always_go_out_raw() {
        let resp = || InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: Some("7".into()),
            outputs: vec![
                Tensor::new("label", vec![1], TensorData::Bytes(vec![b"a".to_vec()])),
                Tensor::new("p", vec![1, 2], TensorData::Fp32(vec![0.5, 0.5])),
            ],
            parameters: Default::default(),
        };
        let r = response_to_proto(resp());
        assert_eq!(r.id, "7");
        assert_eq!(r.raw_output_contents.len(), 2);
        assert_eq!(&r.raw_output_contents[0][..], &[1, 0, 0, 0, b'a']);
        assert_eq!(
            &r.raw_output_contents[1][..],
            raw::to_vec(&TensorData::Fp32(vec![0.5, 0.5]))
        );
        assert!(r.outputs.iter().all(|o| o.contents.is_none()));
    }

    fn param(c: ParameterChoice) -> InferParameter {
        InferParameter {
            parameter_choice: Some(c),
        }
    }

    #[test]
    fn parameters_come_in_key_order_with_their_types() {
        let map = HashMap::from([
            ("d".to_string(), param(ParameterChoice::DoubleParam(0.5))),
            ("b".to_string(), param(ParameterChoice::BoolParam(true))),
            (
                "s".to_string(),
                param(ParameterChoice::StringParam("x".into())),
            ),
            ("i".to_string(), param(ParameterChoice::Int64Param(-3))),
            ("u".to_string(), param(ParameterChoice::Uint64Param(7))),
            (
                "big".to_string(),
                param(ParameterChoice::Uint64Param(u64::MAX)),
            ),
            ("none".to_string(), InferParameter::default()),
        ]);
        let p = params_from_proto(map);
        assert_eq!(
            p.0,
            vec![
                ("b".to_string(), Param::Bool(true)),
                ("big".to_string(), Param::Str(u64::MAX.to_string())),
                ("d".to_string(), Param::Float(0.5)),
                ("i".to_string(), Param::Int(-3)),
                ("s".to_string(), Param::Str("x".into())),
                ("u".to_string(), Param::Int(7)),
            ]
        );
        let back = params_to_proto(&p);
        assert_eq!(back.len(), 6);
        assert_eq!(back["b"], param(ParameterChoice::BoolParam(true)));
        assert_eq!(back["d"], param(ParameterChoice::DoubleParam(0.5)));
        assert_eq!(back["i"], param(ParameterChoice::Int64Param(-3)));
        assert_eq!(back["s"], param(ParameterChoice::StringParam("x".into())));
        assert!(params_to_proto(&Parameters::default()).is_empty());
    }

    /// Each datatype with typed contents holding two values, and the data it gives.
    fn typed_cases() -> Vec<(DataType, InferTensorContents, TensorData)> {
        let c = InferTensorContents::default;
        vec![
            (
                DataType::Bool,
                InferTensorContents {
                    bool_contents: vec![true, false],
                    ..c()
                },
                TensorData::Bool(vec![true, false]),
            ),
            (
                DataType::Int8,
                InferTensorContents {
                    int_contents: vec![-128, 127],
                    ..c()
                },
                TensorData::Int8(vec![-128, 127]),
            ),
            (
                DataType::Int16,
                InferTensorContents {
                    int_contents: vec![-300, 300],
                    ..c()
                },
                TensorData::Int16(vec![-300, 300]),
            ),
            (
                DataType::Int32,
                InferTensorContents {
                    int_contents: vec![i32::MIN, 5],
                    ..c()
                },
                TensorData::Int32(vec![i32::MIN, 5]),
            ),
            (
                DataType::Int64,
                InferTensorContents {
                    int64_contents: vec![i64::MAX, -1],
                    ..c()
                },
                TensorData::Int64(vec![i64::MAX, -1]),
            ),
            (
                DataType::Uint8,
                InferTensorContents {
                    uint_contents: vec![0, 255],
                    ..c()
                },
                TensorData::Uint8(vec![0, 255]),
            ),
            (
                DataType::Uint16,
                InferTensorContents {
                    uint_contents: vec![65535, 1],
                    ..c()
                },
                TensorData::Uint16(vec![65535, 1]),
            ),
            (
                DataType::Uint32,
                InferTensorContents {
                    uint_contents: vec![u32::MAX, 2],
                    ..c()
                },
                TensorData::Uint32(vec![u32::MAX, 2]),
            ),
            (
                DataType::Uint64,
                InferTensorContents {
                    uint64_contents: vec![u64::MAX, 3],
                    ..c()
                },
                TensorData::Uint64(vec![u64::MAX, 3]),
            ),
            (
                DataType::Fp32,
                InferTensorContents {
                    fp32_contents: vec![0.5, -1.5],
                    ..c()
                },
                TensorData::Fp32(vec![0.5, -1.5]),
            ),
            (
                DataType::Fp64,
                InferTensorContents {
                    fp64_contents: vec![0.1, 2.0],
                    ..c()
                },
                TensorData::Fp64(vec![0.1, 2.0]),
            ),
            (
                DataType::Bytes,
                InferTensorContents {
                    bytes_contents: vec![b"a".to_vec(), vec![]],
                    ..c()
                },
                TensorData::Bytes(vec![b"a".to_vec(), vec![]]),
            ),
        ]
    }

    #[test]
    fn every_typed_field_reads_and_writes_its_datatype() {
        for (dt, contents, data) in typed_cases() {
            let m = ModelInferRequest {
                inputs: vec![input(dt.as_str(), vec![2], contents.clone())],
                ..Default::default()
            };
            let req = request_from_proto(m).unwrap();
            assert_eq!(req.inputs[0].data, data, "{dt}");
            assert_eq!(req.inputs[0].shape, vec![2]);
            // Answers carry the same values as raw bytes (as Triton answers).
            let r = response_to_proto(InferResponse {
                model_name: "m".into(),
                model_version: "1".into(),
                id: None,
                outputs: vec![Tensor::new("y", vec![2], data.clone())],
                parameters: Default::default(),
            });
            assert_eq!(r.outputs[0].datatype, dt.as_str(), "{dt}");
            assert_eq!(
                raw::decode("y", dt, &r.raw_output_contents[0], 2).unwrap(),
                data,
                "{dt} answered raw"
            );
            // The same values in the wrong field are refused.
            let wrong = if dt == DataType::Bool {
                InferTensorContents {
                    fp32_contents: vec![1.0, 2.0],
                    ..Default::default()
                }
            } else {
                InferTensorContents {
                    bool_contents: vec![true, false],
                    ..Default::default()
                }
            };
            let m = ModelInferRequest {
                inputs: vec![input(dt.as_str(), vec![2], wrong)],
                ..Default::default()
            };
            let e = request_from_proto(m).unwrap_err();
            assert!(e.message.contains("holds data"), "{dt}: {}", e.message);
            // And raw data decodes to the same.
            let m = ModelInferRequest {
                inputs: vec![InferInputTensor {
                    contents: None,
                    ..input(dt.as_str(), vec![2], Default::default())
                }],
                raw_input_contents: vec![Bytes::from(raw::to_vec(&data))],
                ..Default::default()
            };
            let req = request_from_proto(m).unwrap();
            assert_eq!(req.inputs[0].data, data, "{dt} raw");
        }
    }

    #[test]
    fn narrow_types_refuse_values_out_of_range() {
        for (dt, contents) in [
            (
                "INT8",
                InferTensorContents {
                    int_contents: vec![-129],
                    ..Default::default()
                },
            ),
            (
                "INT16",
                InferTensorContents {
                    int_contents: vec![40000],
                    ..Default::default()
                },
            ),
            (
                "UINT8",
                InferTensorContents {
                    uint_contents: vec![256],
                    ..Default::default()
                },
            ),
            (
                "UINT16",
                InferTensorContents {
                    uint_contents: vec![70000],
                    ..Default::default()
                },
            ),
        ] {
            let m = ModelInferRequest {
                inputs: vec![input(dt, vec![1], contents)],
                ..Default::default()
            };
            let e = request_from_proto(m).unwrap_err();
            assert!(
                e.message.contains("out of range") && e.message.contains(dt),
                "{dt}: {}",
                e.message
            );
        }
    }

    #[test]
    fn requests_keep_names_ids_outputs_and_parameters() {
        let mut inp = input(
            "INT64",
            vec![1, 2],
            InferTensorContents {
                int64_contents: vec![4, 5],
                ..Default::default()
            },
        );
        inp.parameters
            .insert("p".into(), param(ParameterChoice::Int64Param(1)));
        let m = ModelInferRequest {
            id: "abc".into(),
            parameters: HashMap::from([(
                "sequence_id".to_string(),
                param(ParameterChoice::Int64Param(9)),
            )]),
            inputs: vec![inp],
            outputs: vec![
                super::super::proto::model_infer_request::InferRequestedOutputTensor {
                    name: "label".into(),
                    parameters: HashMap::from([(
                        "classification".to_string(),
                        param(ParameterChoice::Int64Param(2)),
                    )]),
                },
            ],
            ..Default::default()
        };
        let req = request_from_proto(m).unwrap();
        assert_eq!(req.id.as_deref(), Some("abc"));
        assert_eq!(req.parameters.get("sequence_id"), Some(&Param::Int(9)));
        assert_eq!(req.inputs[0].name, "x");
        assert_eq!(req.inputs[0].parameters.get("p"), Some(&Param::Int(1)));
        assert_eq!(req.outputs.len(), 1);
        assert_eq!(req.outputs[0].name, "label");
        assert_eq!(req.outputs[0].classification(), Some(2));
        let m = ModelInferRequest {
            inputs: vec![input("FP32", vec![0], Default::default())],
            ..Default::default()
        };
        let req = request_from_proto(m).unwrap();
        assert_eq!(req.id, None);
        assert_eq!(req.inputs[0].data, TensorData::Fp32(vec![]));
        assert!(req.outputs.is_empty());
    }

    #[test]
    fn raw_and_typed_data_cannot_be_mixed_in_one_input() {
        let m = ModelInferRequest {
            inputs: vec![input(
                "FP32",
                vec![1],
                InferTensorContents {
                    fp32_contents: vec![1.0],
                    ..Default::default()
                },
            )],
            raw_input_contents: vec![Bytes::from(raw::to_vec(&TensorData::Fp32(vec![1.0])))],
            ..Default::default()
        };
        let e = request_from_proto(m).unwrap_err();
        assert!(
            e.message.starts_with(
                "contents field must not be specified when using raw_input_contents for 'x'"
            ),
            "{}",
            e.message
        );
        // Empty contents beside raw data are what some clients send: the raw data counts.
        let m = ModelInferRequest {
            inputs: vec![input("FP32", vec![1], Default::default())],
            raw_input_contents: vec![Bytes::from(raw::to_vec(&TensorData::Fp32(vec![2.0])))],
            ..Default::default()
        };
        let req = request_from_proto(m).unwrap();
        assert_eq!(req.inputs[0].data, TensorData::Fp32(vec![2.0]));
        let m = ModelInferRequest {
            inputs: vec![input("FP32", vec![-2], Default::default())],
            ..Default::default()
        };
        let e = request_from_proto(m).unwrap_err();
        assert!(e.message.contains("negative"), "{}", e.message);
    }

    #[test]
    fn responses_keep_names_shapes_parameters_and_order() {
        let mut p = Tensor::new("p", vec![1, 2], TensorData::Fp64(vec![0.25, 0.75]));
        p.parameters.insert("binary_data_size", Param::Int(16));
        let mut resp = InferResponse {
            model_name: "m".into(),
            model_version: "2".into(),
            id: None,
            outputs: vec![Tensor::new("label", vec![1], TensorData::Int64(vec![1])), p],
            parameters: Default::default(),
        };
        resp.parameters.insert("flag", Param::Bool(true));
        let r = response_to_proto(resp.clone());
        assert_eq!(
            (r.model_name.as_str(), r.model_version.as_str()),
            ("m", "2")
        );
        assert_eq!(r.id, "");
        assert_eq!(
            r.parameters["flag"],
            param(ParameterChoice::BoolParam(true))
        );
        let names: Vec<&str> = r.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["label", "p"]);
        assert_eq!(r.outputs[0].datatype, "INT64");
        assert_eq!(r.outputs[1].datatype, "FP64");
        assert_eq!(r.outputs[1].shape, vec![1, 2]);
        assert_eq!(
            r.outputs[1].parameters["binary_data_size"],
            param(ParameterChoice::Int64Param(16))
        );
        // Every output raw, in order, contents empty.
        assert!(r.outputs.iter().all(|o| o.contents.is_none()));
        assert_eq!(r.raw_output_contents.len(), 2);
        assert_eq!(
            &r.raw_output_contents[0][..],
            &raw::to_vec(&TensorData::Int64(vec![1]))[..]
        );
        assert_eq!(
            &r.raw_output_contents[1][..],
            &raw::to_vec(&TensorData::Fp64(vec![0.25, 0.75]))[..]
        );
        resp.outputs
            .push(Tensor::new("h", vec![1], TensorData::Fp16(vec![0x3c00])));
        let r = response_to_proto(resp);
        assert_eq!(r.raw_output_contents.len(), 3);
        assert_eq!(&r.raw_output_contents[2][..], &[0x00, 0x3c]);
    }
}
