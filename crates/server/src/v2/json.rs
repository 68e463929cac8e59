//! The v2 JSON wire format, parsed straight into typed buffers (no `serde_json::Value` trees
//! for tensor data) and written without intermediate documents.

use std::fmt;

use ferroserve_core::tensor::number_text;
use ferroserve_core::{
    DataType, InferError, InferRequest, InferResponse, Param, Parameters, RequestedOutput, Tensor,
    TensorData,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::numbers::{self, Scan};

/// Tensor `data` as it came: flattened, in the narrowest type that holds it so far.
#[derive(Debug, Default, PartialEq)]
pub enum Flat {
    #[default]
    Empty,
    /// Integers only so far (exact).
    Int(Vec<i64>),
    /// At least one non-integer (or null, read as NaN, or an integer beyond i64).
    Float(Vec<f64>),
    Bool(Vec<bool>),
    Str(Vec<Vec<u8>>),
}

impl Flat {
    fn kind(&self) -> &'static str {
        match self {
            Flat::Empty => "nothing",
            Flat::Int(_) | Flat::Float(_) => "numbers",
            Flat::Bool(_) => "booleans",
            Flat::Str(_) => "strings",
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Flat::Empty => 0,
            Flat::Int(v) => v.len(),
            Flat::Float(v) => v.len(),
            Flat::Bool(v) => v.len(),
            Flat::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_f64(&mut self, x: f64) -> Result<(), &'static str> {
        match self {
            Flat::Empty => *self = Flat::Float(vec![x]),
            Flat::Float(v) => v.push(x),
            Flat::Int(v) => {
                let mut f: Vec<f64> = v.iter().map(|&i| i as f64).collect();
                f.push(x);
                *self = Flat::Float(f);
            }
            _ => return Err(self.kind()),
        }
        Ok(())
    }

    fn push_i64(&mut self, x: i64) -> Result<(), &'static str> {
        match self {
            Flat::Empty => *self = Flat::Int(vec![x]),
            Flat::Int(v) => v.push(x),
            Flat::Float(v) => v.push(x as f64),
            _ => return Err(self.kind()),
        }
        Ok(())
    }

    fn push_bool(&mut self, x: bool) -> Result<(), &'static str> {
        match self {
            Flat::Empty => *self = Flat::Bool(vec![x]),
            Flat::Bool(v) => v.push(x),
            _ => return Err(self.kind()),
        }
        Ok(())
    }

    fn push_str(&mut self, x: &str) -> Result<(), &'static str> {
        match self {
            Flat::Empty => *self = Flat::Str(vec![x.as_bytes().to_vec()]),
            Flat::Str(v) => v.push(x.as_bytes().to_vec()),
            _ => return Err(self.kind()),
        }
        Ok(())
    }
}

thread_local! {
    /// The most values one input's `data` may hold while this thread reads it the general way
    /// (set by [`read_data`] for the length of one parse, which runs on one thread): a
    /// request over a model's row limit is refused as soon as its data passes it, before the
    /// rest is read into memory.
    static VALUE_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    /// Set when [`VALUE_LIMIT`] stopped a parse.
    static OVER_LIMIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Collects (possibly nested) JSON arrays of scalars into a [`Flat`].
struct Collect<'a>(&'a mut Flat);

impl<'de> DeserializeSeed<'de> for Collect<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn mixed<E: de::Error>(had: &str, got: &str) -> E {
    E::custom(format!("tensor data mixes {had} and {got}"))
}

impl<'de> Visitor<'de> for Collect<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers, booleans or strings (flat or nested)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let limit = VALUE_LIMIT.get();
        while seq.next_element_seed(Collect(self.0))?.is_some() {
            if self.0.len() > limit {
                OVER_LIMIT.set(true);
                return Err(de::Error::custom(format!(
                    "an input's data holds more than {limit} values"
                )));
            }
        }
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.0.push_f64(v).map_err(|k| mixed(k, "numbers"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push_i64(v).map_err(|k| mixed(k, "numbers"))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(i) => self.visit_i64(i),
            Err(_) => self.visit_f64(v as f64),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        // null stands for a missing value (NaN) in float tensors.
        self.0.push_f64(f64::NAN).map_err(|k| mixed(k, "null"))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push_bool(v).map_err(|k| mixed(k, "booleans"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v).map_err(|k| mixed(k, "strings"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        Err(de::Error::custom(
            "tensor data must be an array of values, not an object",
        ))
    }
}

impl<'de> Deserialize<'de> for Flat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut f = Flat::Empty;
        Collect(&mut f).deserialize(d)?;
        Ok(f)
    }
}

/// v2 parameters: an object of strings, numbers and booleans.
#[derive(Debug, Default)]
pub struct JsonParams(pub Parameters);

impl<'de> Deserialize<'de> for JsonParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonParams;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of parameters")
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsonParams, E> {
                Ok(JsonParams::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonParams, A::Error> {
                let mut p = Parameters::default();
                while let Some(k) = map.next_key::<String>()? {
                    let v: serde_json::Value = map.next_value()?;
                    let v = match v {
                        serde_json::Value::Bool(b) => Param::Bool(b),
                        serde_json::Value::Number(n) => match n.as_i64() {
                            Some(i) => Param::Int(i),
                            None => Param::Float(n.as_f64().unwrap_or(f64::NAN)),
                        },
                        serde_json::Value::String(s) => Param::Str(s),
                        other => Param::Str(other.to_string()),
                    };
                    p.insert(k, v);
                }
                Ok(JsonParams(p))
            }
        }
        d.deserialize_any(V)
    }
}

// Unknown fields, top-level and per tensor, are skipped without being buffered (serde's
// `IgnoredAny`): clients add their own (the KServe SDK sends `model_name` and `model_version`
// in the body), and the protocol's JSON objects are open.
// `data` is taken as raw text, checked as JSON but with its numbers not yet computed: once
// the datatype is known (JSON objects have no order) it is read straight into that type's
// buffer ([`super::numbers`]).
#[derive(Deserialize)]
struct JsonInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: JsonParams,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: JsonParams,
}

#[derive(Deserialize)]
struct JsonRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: JsonParams,
    #[serde(borrow)]
    inputs: Vec<JsonInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<JsonOutput>>,
}

fn range_err(name: &str, dt: DataType, x: impl fmt::Display) -> InferError {
    ferroserve_core::tensor::out_of_range(name, dt, &x.to_string())
}

/// Floats for a floating-point type, refusing a finite value too large for it (it would become
/// infinity), as integer types refuse values beyond their range.
fn narrow_floats(name: &str, dt: DataType, v: Vec<f64>) -> Result<Vec<f64>, InferError> {
    match v.iter().find(|&&x| !dt.holds(x)) {
        Some(&x) => Err(range_err(name, dt, number_text(x))),
        None => Ok(v),
    }
}

/// Converts parsed JSON data to the declared data type, checking ranges and kinds.
pub fn flat_to_tensor_data(name: &str, dt: DataType, flat: Flat) -> Result<TensorData, InferError> {
    macro_rules! ints {
        ($var:ident, $t:ty) => {{
            match flat {
                Flat::Empty => TensorData::$var(vec![]),
                Flat::Int(v) => TensorData::$var(
                    v.into_iter()
                        .map(|x| <$t>::try_from(x).map_err(|_| range_err(name, dt, x)))
                        .collect::<Result<_, _>>()?,
                ),
                Flat::Float(v) => TensorData::$var(
                    v.into_iter()
                        .map(|x| {
                            if dt.holds(x) {
                                Ok(x as $t)
                            } else if x.fract() == 0.0 {
                                Err(range_err(name, dt, number_text(x)))
                            } else {
                                Err(InferError::invalid(format!(
                                    "input '{name}': {x} is not a valid {dt} value"
                                )))
                            }
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => return Err(kind_err(name, dt, &other)),
            }
        }};
    }
    fn kind_err(name: &str, dt: DataType, f: &Flat) -> InferError {
        InferError::invalid(format!(
            "input '{name}': datatype {dt} expects {}, but data holds {}",
            match dt {
                DataType::Bool => "booleans",
                DataType::Bytes => "strings",
                _ => "numbers",
            },
            f.kind()
        ))
    }
    let floats = |flat: Flat| -> Result<Vec<f64>, InferError> {
        match flat {
            Flat::Empty => Ok(vec![]),
            Flat::Int(v) => Ok(v.into_iter().map(|x| x as f64).collect()),
            Flat::Float(v) => Ok(v),
            other => Err(kind_err(name, dt, &other)),
        }
    };
    Ok(match dt {
        DataType::Bool => match flat {
            Flat::Empty => TensorData::Bool(vec![]),
            Flat::Bool(v) => TensorData::Bool(v),
            other => return Err(kind_err(name, dt, &other)),
        },
        DataType::Bytes => match flat {
            Flat::Empty => TensorData::Bytes(vec![]),
            Flat::Str(v) => TensorData::Bytes(v),
            other => return Err(kind_err(name, dt, &other)),
        },
        DataType::Uint8 => ints!(Uint8, u8),
        DataType::Uint16 => ints!(Uint16, u16),
        DataType::Uint32 => ints!(Uint32, u32),
        DataType::Uint64 => ints!(Uint64, u64),
        DataType::Int8 => ints!(Int8, i8),
        DataType::Int16 => ints!(Int16, i16),
        DataType::Int32 => ints!(Int32, i32),
        DataType::Int64 => ints!(Int64, i64),
        DataType::Fp16 => TensorData::Fp16(
            narrow_floats(name, dt, floats(flat)?)?
                .into_iter()
                .map(|x| ferroserve_core::tensor::f32_to_f16(x as f32))
                .collect(),
        ),
        DataType::Bf16 => TensorData::Bf16(
            narrow_floats(name, dt, floats(flat)?)?
                .into_iter()
                .map(|x| ferroserve_core::tensor::f32_to_bf16(x as f32))
                .collect(),
        ),
        DataType::Fp32 => TensorData::Fp32(
            narrow_floats(name, dt, floats(flat)?)?
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        ),
        DataType::Fp64 => TensorData::Fp64(floats(flat)?),
    })
}

/// Turns the JSON error into a message naming where it happened.
fn json_error(e: serde_json::Error) -> InferError {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "the JSON body ends early",
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Data => "invalid inference request",
        serde_json::error::Category::Io => "could not read the body",
    };
    InferError::invalid(format!("{what}: {e}"))
}

/// The error for data over the value limit, naming the byte of the body where reading stopped.
fn over_limit(max_values: usize, at: usize) -> InferError {
    InferError::new(
        ferroserve_core::ErrorKind::TooLarge,
        format!(
            "an input's data holds more than {max_values} values, more than this model accepts in one request (max_request_rows); stopped at byte {at} of the body"
        ),
    )
}

/// Byte offset in `text` of serde_json's 1-based `line` and `column`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    start + column.saturating_sub(1)
}

/// Reads one input's raw `data` as `dt`: float types straight into their buffer, the rest (and
/// float data holding something else, for the message) through [`Flat`]. At most `max_values`
/// values are kept; past them the request is refused where reading stopped.
fn read_data(
    name: &str,
    dt: DataType,
    raw: &RawValue,
    n: usize,
    max_values: usize,
    body: &[u8],
) -> Result<TensorData, InferError> {
    let text = raw.get();
    // Where the data starts in the body (serde_json borrowed it from there).
    let base = (text.as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
    macro_rules! fast {
        ($t:ty, $var:ident) => {
            match numbers::scan::<$t>(text, n, max_values) {
                Scan::Values(v) => return Ok(TensorData::$var(v)),
                Scan::OverLimit(at) => return Err(over_limit(max_values, base + at)),
                Scan::OutOfRange(word) => return Err(range_err(name, dt, word)),
                Scan::NotNumbers => {}
            }
        };
    }
    match dt {
        DataType::Fp32 => fast!(f32, Fp32),
        DataType::Fp64 => fast!(f64, Fp64),
        _ => {}
    }
    VALUE_LIMIT.set(max_values);
    OVER_LIMIT.set(false);
    let parsed = serde_json::from_str::<Flat>(text);
    VALUE_LIMIT.set(usize::MAX);
    match parsed {
        Ok(flat) => flat_to_tensor_data(name, dt, flat),
        Err(e) if OVER_LIMIT.replace(false) => Err(over_limit(
            max_values,
            base + offset_of(text, e.line(), e.column()),
        )),
        Err(e) => {
            // serde_json places the error in the data's text; name the input and the body's byte.
            let text_of = e.to_string();
            let what = text_of
                .rsplit_once(" at line ")
                .map_or(&*text_of, |(w, _)| w);
            Err(InferError::invalid(format!(
                "input '{name}': {what} (at byte {} of the body)",
                base + offset_of(text, e.line(), e.column())
            )))
        }
    }
}

/// Parses a v2 JSON inference request. Tensors with `binary_data_size` in their parameters
/// are left without data for the binary extension to fill.
pub fn parse_request(body: &[u8]) -> Result<(InferRequest, Vec<bool>), InferError> {
    parse_request_limited(body, usize::MAX)
}

/// [`parse_request`], refusing (413, as soon as it is seen) an input whose `data` holds more
/// than `max_values` values.
pub fn parse_request_limited(
    body: &[u8],
    max_values: usize,
) -> Result<(InferRequest, Vec<bool>), InferError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(InferError::invalid(
            "empty request body: expected a JSON inference request with \"inputs\"",
        ));
    }
    let req = serde_json::from_slice::<JsonRequest>(body).map_err(json_error)?;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    let mut has_data = Vec::with_capacity(req.inputs.len());
    for inp in req.inputs {
        let dt = DataType::parse(&inp.datatype).ok_or_else(|| {
            InferError::invalid(format!(
                "input '{}': unknown datatype '{}' (expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES)",
                inp.name, inp.datatype
            ))
        })?;
        let n = Tensor::element_count(&inp.shape)
            .map_err(|e| InferError::invalid(format!("input '{}': {}", inp.name, e.message)))?;
        let binary = inp.parameters.0.get("binary_data_size").is_some();
        let data = match (inp.data, binary) {
            (Some(_), true) => {
                return Err(InferError::invalid(format!(
                    "input '{}' has both \"data\" and binary_data_size",
                    inp.name
                )))
            }
            (None, true) => TensorData::empty(dt),
            (None, false) => {
                return Err(InferError::invalid(format!(
                    "input '{}' has no \"data\"",
                    inp.name
                )))
            }
            (Some(raw), false) => {
                let data = read_data(&inp.name, dt, raw, n, max_values, body)?;
                if data.len() != n {
                    return Err(InferError::invalid(format!(
                        "input '{}': shape {:?} needs {n} values but data has {}",
                        inp.name,
                        inp.shape,
                        data.len()
                    )));
                }
                data
            }
        };
        has_data.push(!binary);
        inputs.push(Tensor {
            name: inp.name,
            shape: inp.shape,
            data,
            parameters: inp.parameters.0,
        });
    }
    let outputs = req
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| RequestedOutput {
            name: o.name,
            parameters: o.parameters.0,
        })
        .collect();
    Ok((
        InferRequest {
            id: req.id,
            inputs,
            outputs,
            parameters: req.parameters.0,
        },
        has_data,
    ))
}

/// Serializes tensor contents as a flat JSON array (`BYTES` as UTF-8 strings, lossy).
pub struct DataJson<'a>(pub &'a TensorData);

impl Serialize for DataJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        macro_rules! seq {
            ($v:expr, $f:expr) => {{
                let mut q = s.serialize_seq(Some($v.len()))?;
                for x in $v.iter() {
                    q.serialize_element(&$f(x))?;
                }
                q.end()
            }};
        }
        match self.0 {
            TensorData::Bool(v) => seq!(v, |x: &bool| *x),
            TensorData::Uint8(v) => seq!(v, |x: &u8| *x),
            TensorData::Uint16(v) => seq!(v, |x: &u16| *x),
            TensorData::Uint32(v) => seq!(v, |x: &u32| *x),
            TensorData::Uint64(v) => seq!(v, |x: &u64| *x),
            TensorData::Int8(v) => seq!(v, |x: &i8| *x),
            TensorData::Int16(v) => seq!(v, |x: &i16| *x),
            TensorData::Int32(v) => seq!(v, |x: &i32| *x),
            TensorData::Int64(v) => seq!(v, |x: &i64| *x),
            TensorData::Fp16(v) => seq!(v, |x: &u16| ferroserve_core::tensor::f16_to_f32(*x)),
            TensorData::Bf16(v) => seq!(v, |x: &u16| ferroserve_core::tensor::bf16_to_f32(*x)),
            TensorData::Fp32(v) => seq!(v, |x: &f32| *x),
            TensorData::Fp64(v) => seq!(v, |x: &f64| *x),
            TensorData::Bytes(v) => seq!(v, |x: &Vec<u8>| String::from_utf8_lossy(x).into_owned()),
        }
    }
}

/// Serializes parameters as a JSON object.
pub struct ParamsJson<'a>(pub &'a Parameters);

impl Serialize for ParamsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0 .0.len()))?;
        for (k, v) in &self.0 .0 {
            match v {
                Param::Bool(b) => m.serialize_entry(k, b)?,
                Param::Int(i) => m.serialize_entry(k, i)?,
                Param::Float(f) => m.serialize_entry(k, f)?,
                Param::Str(x) => m.serialize_entry(k, x)?,
            }
        }
        m.end()
    }
}

#[derive(Serialize)]
struct OutJson<'a> {
    name: &'a str,
    datatype: &'a str,
    shape: &'a [i64],
    #[serde(
        skip_serializing_if = "Parameters::is_empty",
        serialize_with = "ser_params"
    )]
    parameters: &'a Parameters,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataJson<'a>>,
}

fn ser_params<S: Serializer>(p: &&Parameters, s: S) -> Result<S::Ok, S::Error> {
    ParamsJson(p).serialize(s)
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(
        skip_serializing_if = "Parameters::is_empty",
        serialize_with = "ser_params"
    )]
    parameters: &'a Parameters,
    outputs: Vec<OutJson<'a>>,
}

/// Writes a v2 JSON response. Outputs whose index is in `binary` are written without `data`
/// (their bytes follow the JSON in the binary extension).
pub fn write_response(resp: &InferResponse, binary: &[bool]) -> Vec<u8> {
    let doc = ResponseJson {
        model_name: &resp.model_name,
        model_version: &resp.model_version,
        id: resp.id.as_deref(),
        parameters: &resp.parameters,
        outputs: resp
            .outputs
            .iter()
            .enumerate()
            .map(|(i, t)| OutJson {
                name: &t.name,
                datatype: t.datatype().as_str(),
                shape: &t.shape,
                parameters: &t.parameters,
                data: if binary.get(i).copied().unwrap_or(false) {
                    None
                } else {
                    Some(DataJson(&t.data))
                },
            })
            .collect(),
    };
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, &doc).expect("serializing to memory cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_flat_data_parse_the_same() {
        let a =
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3.5,4]]}]}"#;
        let b = br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3.5,4]}]}"#;
        let (ra, _) = parse_request(a).unwrap();
        let (rb, _) = parse_request(b).unwrap();
        assert_eq!(ra, rb);
        assert_eq!(
            ra.inputs[0].data,
            TensorData::Fp32(vec![1.0, 2.0, 3.5, 4.0])
        );
    }

    #[test]
    fn every_numeric_type_converts_with_range_checks() {
        let body = |dt: &str, data: &str| {
            format!(r#"{{"inputs":[{{"name":"x","shape":[2],"datatype":"{dt}","data":{data}}}]}}"#)
        };
        for dt in DataType::ALL {
            let data = match dt {
                DataType::Bool => "[true,false]",
                DataType::Bytes => "[\"a\",\"b\"]",
                _ => "[1,2]",
            };
            let (r, _) = parse_request(body(dt.as_str(), data).as_bytes()).unwrap();
            assert_eq!(r.inputs[0].data.datatype(), dt);
        }
        let e = parse_request(body("UINT8", "[1,300]").as_bytes()).unwrap_err();
        assert!(e.message.contains("out of range"), "{}", e.message);
        let e = parse_request(body("INT32", "[1,2.5]").as_bytes()).unwrap_err();
        assert!(e.message.contains("not a valid INT32"), "{}", e.message);
        let e = parse_request(body("FP32", "[1,\"a\"]").as_bytes()).unwrap_err();
        assert!(e.message.contains("mixes"), "{}", e.message);
        let e = parse_request(body("BOOL", "[1,2]").as_bytes()).unwrap_err();
        assert!(e.message.contains("expects booleans"), "{}", e.message);
    }

    #[test]
    fn floats_too_large_for_their_type_are_refused_as_integers_are() {
        let body = |dt: &str, data: &str| {
            format!(r#"{{"inputs":[{{"name":"x","shape":[2],"datatype":"{dt}","data":{data}}}]}}"#)
        };
        for (dt, data, value) in [
            ("FP32", "[1,1e39]", "1e39"),
            ("FP32", "[-1e39,1]", "-1e39"),
            ("FP32", "[1,3.4028236e38]", "3.4028236e38"),
            ("FP16", "[1,70000]", "70000"),
            ("FP16", "[65520.0,1]", "65520"),
            ("BF16", "[1e39,1]", "1e39"),
            ("INT64", "[9223372036854775808.0,1]", "9.223372036854776e18"),
            (
                "UINT64",
                "[0.0,18446744073709551616]",
                "1.8446744073709552e19",
            ),
        ] {
            let e = parse_request(body(dt, data).as_bytes()).unwrap_err();
            assert_eq!(e.kind, ferroserve_core::ErrorKind::InvalidInput);
            let want = format!("input 'x': value {value} is out of range for {dt} (");
            assert!(e.message.starts_with(&want), "{dt} {data}: {}", e.message);
        }
        // The largest finite values, and everything a wider type holds, pass.
        for (dt, data) in [
            ("FP32", "[3.4028235e38,-3.4028235e38]"),
            ("FP16", "[65504,-65504]"),
            ("BF16", "[3.3895314e38,0]"),
            ("FP64", "[1e39,1e300]"),
            ("FP32", "[null,1e-50]"),
        ] {
            let (r, _) = parse_request(body(dt, data).as_bytes())
                .unwrap_or_else(|e| panic!("{dt} {data}: {}", e.message));
            assert_eq!(r.inputs[0].data.len(), 2);
            assert!(
                r.inputs[0].data.get_f64(1).unwrap().is_finite(),
                "{dt} {data}"
            );
        }
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"{", "ends early"),
            (b"{\"inputs\": 3}", "invalid inference request"),
            (b"{\"inputs\":[{\"name\":\"x\",\"shape\":[3],\"datatype\":\"FP32\",\"data\":[1,2]}]}", "needs 3 values"),
            (b"{\"inputs\":[{\"name\":\"x\",\"shape\":[-1],\"datatype\":\"FP32\",\"data\":[1]}]}", "negative"),
            (b"{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP33\",\"data\":[1]}]}", "unknown datatype"),
            (b"{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\"}]}", "no \"data\""),
        ];
        for (body, want) in cases {
            let e = parse_request(body).unwrap_err();
            assert!(
                e.message.contains(want),
                "{:?}: {}",
                String::from_utf8_lossy(body),
                e.message
            );
        }
    }

    #[test]
    fn unknown_fields_are_ignored_at_every_level() {
        let plain = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"y"}]}"#;
        let extra = br#"{"model_name":"m","model_version":"1","bogus":{"deep":[1,{"a":null}]},
            "inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"extra":"z"}],
            "outputs":[{"name":"y","binary_data":false,"more":[]}]}"#;
        let (a, _) = parse_request(plain).unwrap();
        let (b, _) = parse_request(extra).unwrap();
        assert_eq!(a, b);
        // Known fields are still checked.
        let e = parse_request(br#"{"model_name":"m","inputs":3}"#).unwrap_err();
        assert!(
            e.message.contains("invalid inference request"),
            "{}",
            e.message
        );
    }

    #[test]
    fn data_over_the_value_limit_is_refused_as_soon_as_it_passes() {
        let body = br#"{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]}]}"#;
        assert!(parse_request_limited(body, 6).is_ok());
        let e = parse_request_limited(body, 5).unwrap_err();
        assert_eq!(
            e.kind,
            ferroserve_core::ErrorKind::TooLarge,
            "{}",
            e.message
        );
        assert!(e.message.contains("max_request_rows"), "{}", e.message);
        // Stopped at the sixth of 1000 values, not at the end of the body.
        let long = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1000],"datatype":"FP32","data":[{}]}}]}}"#,
            vec!["1"; 1000].join(",")
        );
        let e = parse_request_limited(long.as_bytes(), 5).unwrap_err();
        let at = |m: &str| -> usize {
            let tail = m.rsplit("stopped at byte ").next().unwrap();
            tail.split(' ').next().unwrap().parse().unwrap()
        };
        assert!(at(&e.message) < 80 && long.len() > 2000, "{}", e.message);
        assert_eq!(&long[at(&e.message)..at(&e.message) + 2], "1,");
        // The same for data read the general way (integers), to the same byte.
        let ints = long.replace("FP32", "INT32");
        let e2 = parse_request_limited(ints.as_bytes(), 5).unwrap_err();
        assert_eq!(e2.kind, ferroserve_core::ErrorKind::TooLarge);
        assert!(at(&e2.message) < 80, "{}", e2.message);
        // The limit is this parse's only.
        assert!(parse_request(body).is_ok());
    }

    #[test]
    fn null_is_nan_and_big_integers_survive() {
        let (r, _) = parse_request(
            br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP64","data":[null,1]}]}"#,
        )
        .unwrap();
        match &r.inputs[0].data {
            TensorData::Fp64(v) => assert!(v[0].is_nan() && v[1] == 1.0),
            d => panic!("{d:?}"),
        }
        let (r, _) = parse_request(br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[9007199254740993]}]}"#).unwrap();
        assert_eq!(r.inputs[0].data, TensorData::Int64(vec![9007199254740993]));
    }

    fn response(outputs: Vec<Tensor>) -> InferResponse {
        InferResponse {
            model_name: "iris".into(),
            model_version: "3".into(),
            id: None,
            outputs,
            parameters: Parameters::default(),
        }
    }

    fn text(resp: &InferResponse, binary: &[bool]) -> String {
        String::from_utf8(write_response(resp, binary)).unwrap()
    }

    #[test]
    fn every_datatype_is_written_in_its_own_form() {
        let cases: Vec<(TensorData, &str)> = vec![
            (TensorData::Bool(vec![true, false]), "[true,false]"),
            (TensorData::Uint8(vec![0, 255]), "[0,255]"),
            (TensorData::Uint16(vec![65535]), "[65535]"),
            (TensorData::Uint32(vec![4294967295]), "[4294967295]"),
            (TensorData::Uint64(vec![u64::MAX]), "[18446744073709551615]"),
            (TensorData::Int8(vec![-128, 127]), "[-128,127]"),
            (TensorData::Int16(vec![-300]), "[-300]"),
            (TensorData::Int32(vec![-70000]), "[-70000]"),
            (TensorData::Int64(vec![i64::MIN]), "[-9223372036854775808]"),
            // 1.0 and -2.0 as half and bfloat16 bit patterns.
            (TensorData::Fp16(vec![0x3c00, 0xc000]), "[1.0,-2.0]"),
            (TensorData::Bf16(vec![0x3f80, 0xc000]), "[1.0,-2.0]"),
            (TensorData::Fp32(vec![0.25, -1.5]), "[0.25,-1.5]"),
            (TensorData::Fp64(vec![0.1, 2.0]), "[0.1,2.0]"),
            (
                TensorData::Bytes(vec![b"setosa".to_vec(), vec![0xff]]),
                "[\"setosa\",\"\u{fffd}\"]",
            ),
        ];
        for (data, want) in cases {
            let got = serde_json::to_string(&DataJson(&data)).unwrap();
            assert_eq!(got, want, "{:?}", data.datatype());
            let r = response(vec![Tensor::new(
                "y",
                vec![data.len() as i64],
                data.clone(),
            )]);
            let doc: serde_json::Value = serde_json::from_slice(&write_response(&r, &[])).unwrap();
            assert_eq!(doc["outputs"][0]["datatype"], data.datatype().as_str());
        }
    }

    #[test]
    fn a_response_is_the_v2_document() {
        let mut r = response(vec![
            Tensor::new("label", vec![2], TensorData::Int64(vec![1, 0])),
            Tensor::new(
                "probabilities",
                vec![2, 2],
                TensorData::Fp32(vec![0.25, 0.75, 1.0, 0.0]),
            ),
        ]);
        assert_eq!(
            text(&r, &[]),
            concat!(
                r#"{"model_name":"iris","model_version":"3","outputs":["#,
                r#"{"name":"label","datatype":"INT64","shape":[2],"data":[1,0]},"#,
                r#"{"name":"probabilities","datatype":"FP32","shape":[2,2],"data":[0.25,0.75,1.0,0.0]}]}"#
            )
        );
        r.id = Some("req-7".into());
        r.parameters.insert("sequence_id", Param::Int(-4));
        r.parameters.insert("flag", Param::Bool(true));
        r.parameters.insert("scale", Param::Float(0.5));
        r.parameters.insert("note", Param::Str("hi".into()));
        r.outputs[1]
            .parameters
            .insert("binary_data_size", Param::Int(16));
        assert_eq!(
            text(&r, &[false, true]),
            concat!(
                r#"{"model_name":"iris","model_version":"3","id":"req-7","#,
                r#""parameters":{"sequence_id":-4,"flag":true,"scale":0.5,"note":"hi"},"outputs":["#,
                r#"{"name":"label","datatype":"INT64","shape":[2],"data":[1,0]},"#,
                r#"{"name":"probabilities","datatype":"FP32","shape":[2,2],"parameters":{"binary_data_size":16}}]}"#
            )
        );
        // Flags beyond the outputs, or missing, mean JSON data.
        let doc: serde_json::Value = serde_json::from_slice(&write_response(&r, &[true])).unwrap();
        assert!(doc["outputs"][0].get("data").is_none());
        assert_eq!(
            doc["outputs"][1]["data"],
            serde_json::json!([0.25, 0.75, 1.0, 0.0])
        );
    }

    #[test]
    fn mixed_data_names_both_kinds() {
        let body = |dt: &str, data: &str| {
            format!(r#"{{"inputs":[{{"name":"x","shape":[2],"datatype":"{dt}","data":{data}}}]}}"#)
        };
        for (dt, data, want) in [
            (
                "FP32",
                r#"[1,"a"]"#,
                "tensor data mixes numbers and strings",
            ),
            (
                "FP32",
                r#"[1.5,true]"#,
                "tensor data mixes numbers and booleans",
            ),
            (
                "BOOL",
                r#"[true,1]"#,
                "tensor data mixes booleans and numbers",
            ),
            (
                "BYTES",
                r#"["a",null]"#,
                "tensor data mixes strings and null",
            ),
            (
                "BYTES",
                r#"["a",2]"#,
                "tensor data mixes strings and numbers",
            ),
            (
                "BOOL",
                "[1,2]",
                "datatype BOOL expects booleans, but data holds numbers",
            ),
            (
                "BYTES",
                "[true,false]",
                "datatype BYTES expects strings, but data holds booleans",
            ),
            (
                "INT32",
                r#"["a","b"]"#,
                "datatype INT32 expects numbers, but data holds strings",
            ),
            (
                "FP64",
                "[true,true]",
                "datatype FP64 expects numbers, but data holds booleans",
            ),
        ] {
            let e = parse_request(body(dt, data).as_bytes()).unwrap_err();
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
        // Floats after floats, integers after floats, floats after integers.
        let (r, _) = parse_request(body("FP64", "[0.5,1.5]").as_bytes()).unwrap();
        assert_eq!(r.inputs[0].data, TensorData::Fp64(vec![0.5, 1.5]));
        let (r, _) = parse_request(body("FP64", "[0.5,2]").as_bytes()).unwrap();
        assert_eq!(r.inputs[0].data, TensorData::Fp64(vec![0.5, 2.0]));
        let (r, _) = parse_request(body("FP64", "[2,0.5]").as_bytes()).unwrap();
        assert_eq!(r.inputs[0].data, TensorData::Fp64(vec![2.0, 0.5]));
        let e = flat_to_tensor_data("x", DataType::Bool, Flat::Empty).unwrap();
        assert_eq!(e, TensorData::Bool(vec![]));
        assert_eq!(Flat::Empty.kind(), "nothing");
    }

    #[test]
    fn flat_lengths() {
        assert!(Flat::Empty.is_empty());
        assert_eq!(Flat::Empty.len(), 0);
        for f in [
            Flat::Int(vec![1, 2]),
            Flat::Float(vec![1.0, 2.0]),
            Flat::Bool(vec![true, false]),
            Flat::Str(vec![b"a".to_vec(), vec![]]),
        ] {
            assert!(!f.is_empty());
            assert_eq!(f.len(), 2, "{f:?}");
        }
    }

    #[test]
    fn parameters_of_request_inputs_and_outputs_are_read() {
        let (r, has_data) = parse_request(
            br#"{"id":"r1","parameters":{"i":-3,"b":true,"s":"x","f":0.5,"big":18446744073709551615,"l":[1],"n":null},
                "inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{"p":2}},
                          {"name":"y","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}],
                "outputs":[{"name":"o","parameters":{"binary_data":true}},{"name":"q"}]}"#,
        )
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("r1"));
        assert_eq!(
            r.parameters.0,
            vec![
                ("i".to_string(), Param::Int(-3)),
                ("b".to_string(), Param::Bool(true)),
                ("s".to_string(), Param::Str("x".into())),
                ("f".to_string(), Param::Float(0.5)),
                ("big".to_string(), Param::Float(18446744073709551615.0)),
                ("l".to_string(), Param::Str("[1]".into())),
                ("n".to_string(), Param::Str("null".into())),
            ]
        );
        assert_eq!(r.inputs[0].parameters.get("p"), Some(&Param::Int(2)));
        assert_eq!(r.inputs[1].data, TensorData::Fp32(vec![]));
        assert_eq!(has_data, vec![true, false]);
        assert_eq!(r.outputs.len(), 2);
        assert_eq!(r.outputs[0].name, "o");
        assert_eq!(r.outputs[0].binary_data(), Some(true));
        assert!(r.outputs[1].parameters.is_empty());
        // null parameters are none.
        let (r, _) = parse_request(br#"{"parameters":null,"inputs":[]}"#).unwrap();
        assert!(r.parameters.is_empty());
        let e = parse_request(
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}}]}"#,
        )
        .unwrap_err();
        assert!(
            e.message.contains("both \"data\" and binary_data_size"),
            "{}",
            e.message
        );
    }

    #[test]
    fn objects_are_not_tensor_data_nor_numbers_parameters() {
        for data in ["{}", r#"{"a":1}"#] {
            let body = format!(
                r#"{{"inputs":[{{"name":"x","shape":[0],"datatype":"FP32","data":{data}}}]}}"#
            );
            let e = parse_request(body.as_bytes()).unwrap_err();
            assert!(e.message.contains("not an object"), "{data}: {}", e.message);
        }
        let e = parse_request(br#"{"parameters":5,"inputs":[]}"#).unwrap_err();
        assert!(
            e.message.contains("expected an object of parameters"),
            "{}",
            e.message
        );
    }
}
