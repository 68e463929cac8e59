//! The binary tensor data extension over HTTP. A request body may be a JSON inference header
//! followed by raw tensor data: the `Inference-Header-Content-Length` header gives the JSON's
//! length, and each input whose data is binary says how many bytes it takes with the
//! `binary_data_size` parameter, in input order. A response carries binary outputs the same way
//! when the request asks for them (`binary_data` on a requested output, or the request parameter
//! `binary_data_output` for every output without its own choice). The raw encoding itself is
//! [`ferroserve_core::raw`].

use axum::http::HeaderMap;
use bytes::Bytes;
use ferroserve_core::{raw, InferError, InferRequest, InferResponse, Param, Tensor};

/// The header giving the length of the JSON part of a body.
pub const HEADER: &str = "inference-header-content-length";
/// Input parameter: bytes of binary data the input takes.
pub const SIZE_PARAM: &str = "binary_data_size";
/// Requested-output parameter: answer this output as binary data.
pub const OUTPUT_PARAM: &str = "binary_data";
/// Request parameter: answer every output without its own `binary_data` as binary data.
pub const DEFAULT_PARAM: &str = "binary_data_output";

/// The `Inference-Header-Content-Length` value, if the header is there.
pub fn header_length(headers: &HeaderMap) -> Result<Option<usize>, InferError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            InferError::invalid(format!(
                "Inference-Header-Content-Length must be a byte count, got {:?}",
                String::from_utf8_lossy(v.as_bytes())
            ))
        })
}

/// Splits a body into its JSON header and the binary data after it.
pub fn split(body: Bytes, header_len: Option<usize>) -> Result<(Bytes, Bytes), InferError> {
    match header_len {
        None => Ok((body, Bytes::new())),
        Some(n) if n > body.len() => Err(InferError::invalid(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes",
            body.len()
        ))),
        Some(n) => {
            let mut json = body;
            let bin = json.split_off(n);
            Ok((json, bin))
        }
    }
}

/// Fills the inputs that have no JSON data (`has_data[i] == false`) from `bin`, in order, each
/// taking its `binary_data_size` bytes. Every byte must be used.
pub fn fill_inputs(inputs: &mut [Tensor], has_data: &[bool], bin: &[u8]) -> Result<(), InferError> {
    let mut at = 0usize;
    for (t, &json) in inputs.iter_mut().zip(has_data) {
        if json {
            continue;
        }
        let size = match t.parameters.get(SIZE_PARAM) {
            Some(Param::Int(n)) if *n >= 0 => *n as usize,
            other => {
                return Err(InferError::invalid(format!(
                    "input '{}': binary_data_size must be a byte count, got {}",
                    t.name,
                    match other {
                        Some(Param::Str(s)) => format!("{s:?}"),
                        Some(Param::Float(f)) => f.to_string(),
                        Some(Param::Bool(b)) => b.to_string(),
                        Some(Param::Int(i)) => i.to_string(),
                        None => "nothing".into(),
                    }
                )))
            }
        };
        let end = at.checked_add(size).filter(|&e| e <= bin.len()).ok_or_else(|| {
            InferError::invalid(format!(
                "input '{}': binary_data_size is {size} but only {} byte(s) of binary data remain after the JSON header",
                t.name,
                bin.len() - at
            ))
        })?;
        let n = Tensor::element_count(&t.shape)
            .map_err(|e| InferError::invalid(format!("input '{}': {}", t.name, e.message)))?;
        t.data = raw::decode(&t.name, t.datatype(), &bin[at..end], n)?;
        at = end;
    }
    if at != bin.len() {
        return Err(InferError::invalid(format!(
            "{} byte(s) of binary data follow the JSON header but the inputs' binary_data_size add up to {at}",
            bin.len()
        )));
    }
    Ok(())
}

fn bool_param(p: &Param, what: &str) -> Result<bool, InferError> {
    p.as_bool()
        .ok_or_else(|| InferError::invalid(format!("{what} must be true or false")))
}

/// Which outputs of a response are answered as binary data, decided from the request before
/// it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputChoice {
    /// `binary_data_output` of the request.
    default: bool,
    /// Outputs with their own `binary_data`.
    explicit: Vec<(String, bool)>,
}

impl OutputChoice {
    pub fn from_request(req: &InferRequest) -> Result<OutputChoice, InferError> {
        let default = match req.parameters.get(DEFAULT_PARAM) {
            Some(p) => bool_param(p, "the binary_data_output parameter")?,
            None => false,
        };
        let mut explicit = Vec::new();
        for o in &req.outputs {
            if let Some(p) = o.parameters.get(OUTPUT_PARAM) {
                let b = bool_param(p, &format!("output '{}': binary_data", o.name))?;
                explicit.push((o.name.clone(), b));
            }
        }
        Ok(OutputChoice { default, explicit })
    }

    /// Whether the output named `name` is answered as binary data.
    pub fn is_binary(&self, name: &str) -> bool {
        self.explicit
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.default, |(_, b)| *b)
    }
}

/// The body of a response: JSON alone, or a JSON header (its length returned) followed by the
/// binary outputs' data.
pub fn write_response(mut resp: InferResponse, choice: &OutputChoice) -> (Vec<u8>, Option<usize>) {
    let binary: Vec<bool> = resp
        .outputs
        .iter()
        .map(|t| choice.is_binary(&t.name))
        .collect();
    if !binary.contains(&true) {
        return (super::json::write_response(&resp, &[]), None);
    }
    for (t, _) in resp.outputs.iter_mut().zip(&binary).filter(|(_, b)| **b) {
        let n = raw::encoded_len(&t.data);
        t.parameters.insert(SIZE_PARAM, Param::Int(n as i64));
    }
    let mut body = super::json::write_response(&resp, &binary);
    let header_len = body.len();
    for (t, _) in resp.outputs.iter().zip(&binary).filter(|(_, b)| **b) {
        raw::encode(&t.data, &mut body);
    }
    (body, Some(header_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::{DataType, TensorData};

    fn input(name: &str, dt: DataType, shape: Vec<i64>, size: Option<i64>) -> Tensor {
        let mut t = Tensor::new(name, shape, TensorData::empty(dt));
        if let Some(s) = size {
            t.parameters.insert(SIZE_PARAM, Param::Int(s));
        }
        t
    }

    #[test]
    fn inputs_take_their_bytes_in_order() {
        let mut inputs = vec![
            input("a", DataType::Fp32, vec![2], Some(8)),
            input("j", DataType::Fp32, vec![1], None),
            input("b", DataType::Bytes, vec![1], Some(6)),
        ];
        let mut bin = raw::to_vec(&TensorData::Fp32(vec![1.0, 2.0]));
        bin.extend(raw::to_vec(&TensorData::Bytes(vec![b"hi".to_vec()])));
        fill_inputs(&mut inputs, &[false, true, false], &bin).unwrap();
        assert_eq!(inputs[0].data, TensorData::Fp32(vec![1.0, 2.0]));
        assert_eq!(inputs[2].data, TensorData::Bytes(vec![b"hi".to_vec()]));
    }

    #[test]
    fn framing_errors_say_what_does_not_add_up() {
        let cases: Vec<(Vec<Tensor>, usize, &str)> = vec![
            (
                vec![input("a", DataType::Fp32, vec![2], Some(8))],
                4,
                "only 4 byte(s)",
            ),
            (
                vec![input("a", DataType::Fp32, vec![2], Some(8))],
                12,
                "add up to 8",
            ),
            (
                vec![input("a", DataType::Fp32, vec![3], Some(8))],
                8,
                "need 12 bytes",
            ),
            (
                vec![input("a", DataType::Fp32, vec![2], Some(-1))],
                8,
                "byte count",
            ),
            (
                vec![input("a", DataType::Fp32, vec![2], None)],
                8,
                "byte count",
            ),
        ];
        for (mut inputs, len, want) in cases {
            let e = fill_inputs(&mut inputs, &[false], &vec![0u8; len]).unwrap_err();
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
        let e = split(Bytes::from_static(b"{}"), Some(3)).unwrap_err();
        assert!(e.message.contains("only 2 bytes"), "{}", e.message);
    }

    #[test]
    fn binary_outputs_follow_the_header() {
        let resp = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            outputs: vec![
                Tensor::new("label", vec![1], TensorData::Int64(vec![2])),
                Tensor::new(
                    "probabilities",
                    vec![1, 2],
                    TensorData::Fp32(vec![0.25, 0.75]),
                ),
            ],
            parameters: Default::default(),
        };
        let mut req = InferRequest::default();
        req.parameters.insert(DEFAULT_PARAM, Param::Bool(true));
        req.outputs.push(ferroserve_core::RequestedOutput {
            name: "label".into(),
            parameters: {
                let mut p = ferroserve_core::Parameters::default();
                p.insert(OUTPUT_PARAM, Param::Bool(false));
                p
            },
        });
        let choice = OutputChoice::from_request(&req).unwrap();
        let (body, header) = write_response(resp, &choice);
        let n = header.unwrap();
        let head: serde_json::Value = serde_json::from_slice(&body[..n]).unwrap();
        assert_eq!(head["outputs"][0]["data"], serde_json::json!([2]));
        assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 8);
        assert!(head["outputs"][1].get("data").is_none());
        assert_eq!(&body[n..], raw::to_vec(&TensorData::Fp32(vec![0.25, 0.75])));
    }

    #[test]
    fn the_header_length_is_a_byte_count() {
        let mut h = HeaderMap::new();
        assert_eq!(header_length(&h).unwrap(), None);
        h.insert(HEADER, " 17 ".parse().unwrap());
        assert_eq!(header_length(&h).unwrap(), Some(17));
        h.insert(HEADER, "0".parse().unwrap());
        assert_eq!(header_length(&h).unwrap(), Some(0));
        h.insert(HEADER, "-3".parse().unwrap());
        let e = header_length(&h).unwrap_err();
        assert!(e.message.contains("\"-3\""), "{}", e.message);
    }

    #[test]
    fn split_cuts_at_the_header_length() {
        let (j, b) = split(Bytes::from_static(b"{}abc"), Some(2)).unwrap();
        assert_eq!((&j[..], &b[..]), (&b"{}"[..], &b"abc"[..]));
        let (j, b) = split(Bytes::from_static(b"{}"), Some(2)).unwrap();
        assert_eq!((&j[..], b.len()), (&b"{}"[..], 0));
        let (j, b) = split(Bytes::from_static(b"{}ab"), None).unwrap();
        assert_eq!((&j[..], b.len()), (&b"{}ab"[..], 0));
    }

    #[test]
    fn empty_inputs_and_the_bytes_left_are_counted() {
        // A zero-byte input (no rows) is a valid byte count.
        let mut inputs = vec![
            input("e", DataType::Fp32, vec![0, 2], Some(0)),
            input("a", DataType::Int32, vec![1], Some(4)),
        ];
        let bin = raw::to_vec(&TensorData::Int32(vec![-5]));
        fill_inputs(&mut inputs, &[false, false], &bin).unwrap();
        assert_eq!(inputs[0].data, TensorData::Fp32(vec![]));
        assert_eq!(inputs[1].data, TensorData::Int32(vec![-5]));
        // What is left after the first input is what the message counts.
        let mut inputs = vec![
            input("a", DataType::Fp32, vec![1], Some(4)),
            input("b", DataType::Fp32, vec![2], Some(8)),
        ];
        let e = fill_inputs(&mut inputs, &[false, false], &[0u8; 6]).unwrap_err();
        assert!(
            e.message.contains("'b'") && e.message.contains("only 2 byte(s)"),
            "{}",
            e.message
        );
        let mut inputs = vec![input("a", DataType::Fp32, vec![1], Some(4))];
        let e = fill_inputs(&mut inputs, &[false], &[0u8; 5]).unwrap_err();
        assert!(
            e.message.contains("5 byte(s)") && e.message.contains("add up to 4"),
            "{}",
            e.message
        );
        let mut inputs = vec![input("a", DataType::Fp32, vec![-1], Some(4))];
        let e = fill_inputs(&mut inputs, &[false], &[0u8; 4]).unwrap_err();
        assert!(e.message.contains("negative"), "{}", e.message);
    }

    #[test]
    fn bad_byte_counts_are_named() {
        for (p, want) in [
            (Param::Str("8".into()), "got \"8\""),
            (Param::Float(8.5), "got 8.5"),
            (Param::Bool(true), "got true"),
            (Param::Int(-2), "got -2"),
        ] {
            let mut t = input("a", DataType::Fp32, vec![2], None);
            t.parameters.insert(SIZE_PARAM, p);
            let e = fill_inputs(&mut [t], &[false], &[0u8; 8]).unwrap_err();
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
        let mut inputs = vec![input("a", DataType::Fp32, vec![2], None)];
        let e = fill_inputs(&mut inputs, &[false], &[0u8; 8]).unwrap_err();
        assert!(e.message.contains("got nothing"), "{}", e.message);
    }

    fn requested(name: &str, binary: Option<Param>) -> ferroserve_core::RequestedOutput {
        let mut parameters = ferroserve_core::Parameters::default();
        if let Some(b) = binary {
            parameters.insert(OUTPUT_PARAM, b);
        }
        ferroserve_core::RequestedOutput {
            name: name.into(),
            parameters,
        }
    }

    #[test]
    fn output_choice_default_and_explicit() {
        let c = OutputChoice::from_request(&InferRequest::default()).unwrap();
        assert!(!c.is_binary("p"));
        let mut req = InferRequest::default();
        req.parameters
            .insert(DEFAULT_PARAM, Param::Str("true".into()));
        req.outputs.push(requested("a", Some(Param::Bool(false))));
        req.outputs.push(requested("b", None));
        let c = OutputChoice::from_request(&req).unwrap();
        assert!(!c.is_binary("a"));
        assert!(c.is_binary("b"));
        assert!(c.is_binary("other"));
        let mut req = InferRequest::default();
        req.outputs.push(requested("a", Some(Param::Bool(true))));
        let c = OutputChoice::from_request(&req).unwrap();
        assert!(c.is_binary("a"));
        assert!(!c.is_binary("b"));
        let mut req = InferRequest::default();
        req.parameters.insert(DEFAULT_PARAM, Param::Int(1));
        let e = OutputChoice::from_request(&req).unwrap_err();
        assert!(e.message.contains("binary_data_output"), "{}", e.message);
        let mut req = InferRequest::default();
        req.outputs
            .push(requested("a", Some(Param::Str("yes".into()))));
        let e = OutputChoice::from_request(&req).unwrap_err();
        assert!(e.message.contains("output 'a'"), "{}", e.message);
    }

    #[test]
    fn json_only_answers_have_no_header_length() {
        let resp = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            outputs: vec![Tensor::new("y", vec![1], TensorData::Fp32(vec![0.5]))],
            parameters: Default::default(),
        };
        let want = crate::v2::json::write_response(&resp, &[]);
        let (body, header) = write_response(resp, &OutputChoice::default());
        assert_eq!(header, None);
        assert_eq!(body, want);
    }

    #[test]
    fn several_binary_outputs_follow_in_order() {
        let resp = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            outputs: vec![
                Tensor::new("a", vec![2], TensorData::Int64(vec![1, -1])),
                Tensor::new("j", vec![1], TensorData::Fp32(vec![0.5])),
                Tensor::new("b", vec![1], TensorData::Bytes(vec![b"xy".to_vec()])),
            ],
            parameters: Default::default(),
        };
        let mut req = InferRequest::default();
        req.parameters.insert(DEFAULT_PARAM, Param::Bool(true));
        req.outputs.push(requested("j", Some(Param::Bool(false))));
        let choice = OutputChoice::from_request(&req).unwrap();
        let (body, header) = write_response(resp, &choice);
        let n = header.unwrap();
        let head: serde_json::Value = serde_json::from_slice(&body[..n]).unwrap();
        assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 16);
        assert_eq!(head["outputs"][1]["data"], serde_json::json!([0.5]));
        assert!(head["outputs"][1].get("parameters").is_none());
        assert_eq!(head["outputs"][2]["parameters"]["binary_data_size"], 6);
        let mut want = raw::to_vec(&TensorData::Int64(vec![1, -1]));
        want.extend(raw::to_vec(&TensorData::Bytes(vec![b"xy".to_vec()])));
        assert_eq!(&body[n..], &want[..]);
    }
}
