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
    /// (set by [`Walk::data`] for the length of one parse, which runs on one thread): a
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

/// Where byte `at` of `body` is, as serde_json says it: 1-based line and column.
fn line_column(body: &[u8], at: usize) -> (usize, usize) {
    let before = &body[..at.min(body.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = at
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
    (line, column + 1)
}

/// Byte offset in `text` of serde_json's 1-based `line` and `column`.
fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(<[u8]>::len)
        .sum();
    start + column.saturating_sub(1)
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

fn invalid_request(what: impl fmt::Display) -> InferError {
    InferError::invalid(format!("invalid inference request: {what}"))
}

/// A walk through the request body: its objects and arrays are walked here, their values read
/// by serde_json where they start (ignoring unknown fields without buffering them, as the
/// protocol's objects are open: clients add their own, the KServe SDK sends `model_name` and
/// `model_version` in the body), and float tensor data by [`numbers::scan`], straight into
/// the declared type's buffer.
struct Walk<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Walk<'a> {
    fn peek(&mut self) -> Option<u8> {
        while self
            .body
            .get(self.at)
            .is_some_and(|&b| numbers::is_space(b))
        {
            self.at += 1;
        }
        self.body.get(self.at).copied()
    }

    /// A syntax error at byte `at`, as serde_json words them.
    fn malformed(&self, at: usize, what: &str) -> InferError {
        let (line, column) = line_column(self.body, at);
        if at >= self.body.len() {
            return InferError::invalid(format!(
                "the JSON body ends early: {what} at line {line} column {column}"
            ));
        }
        InferError::invalid(format!(
            "malformed JSON: {what} at line {line} column {column}"
        ))
    }

    /// serde_json's error for a value read from byte `from`, placed in the whole body.
    fn serde_error(&self, from: usize, e: serde_json::Error) -> InferError {
        let at = from + offset_of(&self.body[from..], e.line(), e.column());
        let (line, column) = line_column(self.body, at);
        let what = match e.classify() {
            serde_json::error::Category::Eof => "the JSON body ends early",
            serde_json::error::Category::Syntax => "malformed JSON",
            serde_json::error::Category::Data => "invalid inference request",
            serde_json::error::Category::Io => "could not read the body",
        };
        let text = e.to_string();
        let message = text.rsplit_once(" at line ").map_or(&*text, |(m, _)| m);
        InferError::invalid(format!("{what}: {message} at line {line} column {column}"))
    }

    /// One value read by serde_json from here (the walk moved past it), or serde_json's error
    /// with where the value started; `None` at the end of the body.
    fn serde_value<T: Deserialize<'a>>(&mut self) -> Option<Result<T, (usize, serde_json::Error)>> {
        self.peek();
        let from = self.at;
        let mut values = serde_json::Deserializer::from_slice(&self.body[from..]).into_iter::<T>();
        Some(match values.next()? {
            Ok(v) => {
                self.at = from + values.byte_offset();
                Ok(v)
            }
            Err(e) => Err((from, e)),
        })
    }

    /// One value read by serde_json from here.
    fn value<T: Deserialize<'a>>(&mut self) -> Result<T, InferError> {
        match self.serde_value() {
            Some(Ok(v)) => Ok(v),
            Some(Err((from, e))) => Err(self.serde_error(from, e)),
            None => Err(self.malformed(self.at, "EOF while parsing a value")),
        }
    }

    /// An object key: borrowed from the body when it has no escapes.
    fn key(&mut self) -> Result<std::borrow::Cow<'a, str>, InferError> {
        if self.peek() != Some(b'"') {
            return Err(self.malformed(self.at, "key must be a string"));
        }
        let rest = &self.body[self.at + 1..];
        if let Some(end) = rest.iter().position(|&b| b == b'"' || b == b'\\') {
            if rest[end] == b'"' {
                if let Ok(k) = std::str::from_utf8(&rest[..end]) {
                    if k.bytes().all(|b| b >= 0x20) {
                        self.at += end + 2;
                        return Ok(k.into());
                    }
                }
            }
        }
        Ok(self.value::<String>()?.into())
    }

    /// Walks an object, calling `field` with each key, the walk standing on its value (which
    /// `field` must read). `what` names the object in errors.
    fn object(
        &mut self,
        what: &str,
        mut field: impl FnMut(&mut Self, &str) -> Result<(), InferError>,
    ) -> Result<(), InferError> {
        match self.peek() {
            Some(b'{') => self.at += 1,
            None => return Err(self.malformed(self.at, "EOF while parsing a value")),
            Some(_) => return Err(invalid_request(format!("{what} must be an object"))),
        }
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            if self.peek() != Some(b':') {
                return Err(self.malformed(self.at, "expected `:`"));
            }
            self.at += 1;
            field(self, &key)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                None => return Err(self.malformed(self.at, "EOF while parsing an object")),
                Some(_) => return Err(self.malformed(self.at, "expected `,` or `}`")),
            }
        }
    }

    /// Walks an array, calling `item` with each element's index, the walk standing on it.
    fn array(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), InferError>,
    ) -> Result<(), InferError> {
        match self.peek() {
            Some(b'[') => self.at += 1,
            None => return Err(self.malformed(self.at, "EOF while parsing a value")),
            Some(_) => return Err(invalid_request(format!("{what} must be an array"))),
        }
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        for i in 0.. {
            item(self, i)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    break;
                }
                None => return Err(self.malformed(self.at, "EOF while parsing a list")),
                Some(_) => return Err(self.malformed(self.at, "expected `,` or `]`")),
            }
        }
        Ok(())
    }

    /// Reads an input's `data` from here as `dt`: float types straight into their buffer, the
    /// rest (and float data holding something else, for the message) through [`Flat`]. At most
    /// `max_values` values are kept; past them the request is refused where reading stopped.
    fn data(
        &mut self,
        name: &str,
        dt: DataType,
        n: usize,
        max_values: usize,
    ) -> Result<TensorData, InferError> {
        self.peek();
        let from = self.at;
        macro_rules! fast {
            ($t:ty, $var:ident) => {
                match numbers::scan::<$t>(self.body, from, n, max_values) {
                    Scan::Values(v, end) => {
                        self.at = end;
                        return Ok(TensorData::$var(v));
                    }
                    Scan::OverLimit(at) => return Err(over_limit(max_values, at)),
                    Scan::OutOfRange(word) => {
                        // Shown as every adapter shows numbers (1e39, not 1e+39 or 1E39);
                        // beyond f64, as written.
                        let shown = word
                            .parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite())
                            .map_or(word, number_text);
                        return Err(range_err(name, dt, shown));
                    }
                    Scan::Malformed(at, what) => return Err(self.malformed(at, what)),
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
        let parsed = self.serde_value::<Flat>();
        VALUE_LIMIT.set(usize::MAX);
        match parsed {
            Some(Ok(flat)) => flat_to_tensor_data(name, dt, flat),
            Some(Err((from, e))) if OVER_LIMIT.replace(false) => Err(over_limit(
                max_values,
                from + offset_of(&self.body[from..], e.line(), e.column()),
            )),
            Some(Err((from, e))) => {
                let e = self.serde_error(from, e);
                let m = &e.message;
                Err(InferError::invalid(format!(
                    "input '{name}': {}",
                    m.strip_prefix("invalid inference request: ").unwrap_or(m)
                )))
            }
            None => Err(self.malformed(from, "EOF while parsing a value")),
        }
    }
}

/// One input as read: its fields, and its data (read at once when its name, shape and
/// datatype came before it, as clients send them; else its place, read once the object ends).
#[derive(Default)]
struct InputFields {
    name: Option<String>,
    shape: Option<Vec<i64>>,
    datatype: Option<String>,
    parameters: Option<Parameters>,
    data: Option<DataField>,
}

enum DataField {
    /// `"data": null`, as if absent.
    Null,
    Read(TensorData),
    At(usize),
}

fn duplicate(field: &str) -> InferError {
    invalid_request(format!("duplicate field `{field}`"))
}

fn set<T>(slot: &mut Option<T>, field: &str, v: T) -> Result<(), InferError> {
    if slot.replace(v).is_some() {
        return Err(duplicate(field));
    }
    Ok(())
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
    let mut w = Walk { body, at: 0 };
    let mut id: Option<Option<String>> = None;
    let mut parameters: Option<JsonParams> = None;
    let mut inputs: Option<Vec<(Tensor, bool)>> = None;
    let mut outputs: Option<Option<Vec<RequestedOutput>>> = None;
    w.object("the request", |w, key| match key {
        "id" => set(&mut id, "id", w.value()?),
        "parameters" => set(&mut parameters, "parameters", w.value()?),
        "outputs" => {
            let list = if w.peek() == Some(b'n') {
                w.value::<()>()?;
                None
            } else {
                let mut list = Vec::new();
                w.array("\"outputs\"", |w, i| {
                    let (mut name, mut params) = (None, None);
                    w.object(&format!("output {i}"), |w, key| match key {
                        "name" => set(&mut name, "name", w.value::<String>()?),
                        "parameters" => set(&mut params, "parameters", w.value::<JsonParams>()?),
                        _ => w.value::<de::IgnoredAny>().map(drop),
                    })?;
                    list.push(RequestedOutput {
                        name: name.ok_or_else(|| {
                            invalid_request(format!("output {i}: missing field `name`"))
                        })?,
                        parameters: params.unwrap_or_default().0,
                    });
                    Ok(())
                })?;
                Some(list)
            };
            set(&mut outputs, "outputs", list)
        }
        "inputs" => {
            let mut list = Vec::new();
            w.array("\"inputs\"", |w, i| {
                list.push(read_input(w, i, max_values)?);
                Ok(())
            })?;
            set(&mut inputs, "inputs", list)
        }
        _ => w.value::<de::IgnoredAny>().map(drop),
    })?;
    if w.peek().is_some() {
        return Err(w.malformed(w.at, "trailing characters"));
    }
    let Some(inputs) = inputs else {
        return Err(invalid_request("missing field `inputs`"));
    };
    let (inputs, has_data) = inputs.into_iter().unzip();
    Ok((
        InferRequest {
            id: id.flatten(),
            inputs,
            outputs: outputs.flatten().unwrap_or_default(),
            parameters: parameters.unwrap_or_default().0,
        },
        has_data,
    ))
}

/// Reads the `i`th input object where the walk stands: the tensor, and whether its data was
/// in the JSON (else the binary extension fills it).
fn read_input(w: &mut Walk, i: usize, max_values: usize) -> Result<(Tensor, bool), InferError> {
    let mut f = InputFields::default();
    w.object(&format!("input {i}"), |w, key| match key {
        "name" => set(&mut f.name, "name", w.value()?),
        "shape" => set(&mut f.shape, "shape", w.value()?),
        "datatype" => set(&mut f.datatype, "datatype", w.value()?),
        "parameters" => set(&mut f.parameters, "parameters", w.value::<JsonParams>()?.0),
        "data" => {
            if f.data.is_some() {
                return Err(duplicate("data"));
            }
            if w.peek() == Some(b'n') {
                w.value::<()>()?;
                f.data = Some(DataField::Null);
                return Ok(());
            }
            let ready = (|| {
                let name = f.name.as_deref()?;
                let (dt, n) =
                    DataType::of_input(name, f.datatype.as_deref()?, f.shape.as_deref()?).ok()?;
                Some((name, dt, n))
            })();
            f.data = Some(match ready {
                Some((name, dt, n)) => DataField::Read(w.data(name, dt, n, max_values)?),
                None => {
                    let at = w.at;
                    w.value::<de::IgnoredAny>()?;
                    DataField::At(at)
                }
            });
            Ok(())
        }
        _ => w.value::<de::IgnoredAny>().map(drop),
    })?;
    let missing = |field: &str| invalid_request(format!("input {i}: missing field `{field}`"));
    let name = f.name.ok_or_else(|| missing("name"))?;
    let shape = f.shape.ok_or_else(|| missing("shape"))?;
    let datatype = f.datatype.ok_or_else(|| missing("datatype"))?;
    let parameters = f.parameters.unwrap_or_default();
    let (dt, n) = DataType::of_input(&name, &datatype, &shape)?;
    let binary = parameters.get("binary_data_size").is_some();
    let data = match (f.data, binary) {
        (Some(DataField::Read(_) | DataField::At(_)), true) => {
            return Err(InferError::invalid(format!(
                "input '{name}' has both \"data\" and binary_data_size"
            )))
        }
        (None | Some(DataField::Null), true) => TensorData::empty(dt),
        (None | Some(DataField::Null), false) => {
            return Err(InferError::invalid(format!(
                "input '{name}' has no \"data\""
            )))
        }
        (Some(DataField::Read(data)), false) => data,
        (Some(DataField::At(at)), false) => {
            let mut again = Walk { body: w.body, at };
            again.data(&name, dt, n, max_values)?
        }
    };
    if !binary && data.len() != n {
        return Err(InferError::invalid(format!(
            "input '{name}': shape {shape:?} needs {n} values but data has {}",
            data.len()
        )));
    }
    Ok((
        Tensor {
            name,
            shape,
            data,
            parameters,
        },
        !binary,
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
            ("FP32", "[1,1e+39]", "1e39"),
            ("FP32", "[1,10E38]", "1e39"),
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
    fn fields_in_any_order_escaped_keys_and_null_data_read_as_usual() {
        let usual =
            br#"{"id":"a","inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2.5]}]}"#;
        let (want, _) = parse_request(usual).unwrap();
        for body in [
            &br#"{"inputs":[{"data":[1,2.5],"shape":[2],"datatype":"FP32","name":"x"}],"id":"a"}"#[..],
            br#" { "inputs" : [ { "data" : [ 1 , 2.5 ] , "name" : "x" , "shape" : [ 2 ] , "datatype" : "FP32" } ] , "id" : "a" } "#,
            br#"{"i\u0064":"a","inputs":[{"na\u006de":"x","shape":[2],"datatype":"FP32","data":[1,2.5]}]}"#,
            b"{\"id\":\"a\",\n\"inputs\":[{\"name\":\"x\",\n\"shape\":[2],\"datatype\":\"FP32\",\"data\":\n[1,\n2.5]}]}",
        ] {
            let (got, _) = parse_request(body).unwrap_or_else(|e| panic!("{}", e.message));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(body));
        }
        // Deferred data is read as its datatype says, integers included.
        let (r, _) = parse_request(
            br#"{"inputs":[{"data":[1,-2],"name":"k","shape":[2],"datatype":"INT32"}]}"#,
        )
        .unwrap();
        assert_eq!(r.inputs[0].data, TensorData::Int32(vec![1, -2]));
        let e = parse_request(
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":null}]}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("has no \"data\""), "{}", e.message);
        let (r, has) = parse_request(br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":null,"parameters":{"binary_data_size":4}}]}"#).unwrap();
        assert_eq!((r.inputs[0].data.len(), has), (0, vec![false]));
    }

    #[test]
    fn syntax_errors_are_placed_in_the_body() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\n\"datatype\":\"FP32\",\"data\":[1,,2]}]}", "malformed JSON: expected value at line 2 column 29"),
            (b"{\"inputs\":[{\"data\":[1,,2],\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\"}]}", "malformed JSON: expected value at line 1 column 23"),
            (b"{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1,2", "the JSON body ends early"),
            (b"{\"inputs\":[]} x", "malformed JSON: trailing characters at line 1 column 15"),
            (b"{\"inputs\":[] \"id\":1}", "malformed JSON: expected `,` or `}` at line 1 column 14"),
            (b"{\"inputs\":[],\"inputs\":[]}", "invalid inference request: duplicate field `inputs`"),
            (b"{\"inputs\":[{\"name\":\"x\",\"name\":\"y\"}]}", "invalid inference request: duplicate field `name`"),
            (b"[1]", "invalid inference request: the request must be an object"),
            (b"{}", "invalid inference request: missing field `inputs`"),
            (b"{\"inputs\":[{}]}", "invalid inference request: input 0: missing field `name`"),
            (b"{\"inputs\":[],\"outputs\":[{}, {\"name\":\"y\"}]}", "invalid inference request: output 0: missing field `name`"),
            (b"{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP64\",\"data\":[1e309]}]}", "input 'x': value 1e309 is out of range for FP64"),
            // An error inside a value read by serde_json, on the value's second line.
            (b"{\"inputs\":[{\"name\":\"x\",\"shape\":[1,\n \"x\"],\"datatype\":\"FP32\",\"data\":[1]}]}", "invalid inference request: invalid type: string \"x\", expected i64 at line 2 column 4"),
            (b"{\"id\":1,\"inputs\":[]}", "invalid inference request: invalid type: integer `1`, expected a string at line 1 column 7"),
            (b"{\"inputs\":[{\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}", "invalid inference request: input 0: missing field `name`"),
            (b"{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"INT8\",\"data\":[1,{}]}]}", "input 'x': tensor data must be an array of values, not an object at line 1 column"),
        ];
        for (body, want) in cases {
            let e = parse_request(body).unwrap_err();
            assert!(
                e.message.starts_with(want),
                "{}: {}",
                String::from_utf8_lossy(body),
                e.message
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Requests written by serde_json from known tensors, fields in any order, with unknown
        /// fields of any kind between them, compact or pretty, read back to the same tensors.
        #[test]
        fn written_requests_read_back(
            tensors in proptest::collection::vec((0usize..5, proptest::collection::vec(proptest::num::f32::ANY, 0..12)), 1..4),
            order in proptest::collection::vec(0usize..120, 6),
            extra in proptest::collection::vec(proptest::option::of(0usize..4), 6),
            pretty in proptest::bool::ANY,
        ) {
            let extras = [
                serde_json::json!(1.5e-7),
                serde_json::json!("a \"quoted\" [string], {with} brackets"),
                serde_json::json!({"deep": [1, {"a": null}, [true, "x"]]}),
                serde_json::json!(-12),
            ];
            let mut want = Vec::new();
            let mut inputs = Vec::new();
            for (k, (kind, xs)) in tensors.iter().enumerate() {
                let name = format!("in{k}");
                let (dt, data, json): (&str, TensorData, serde_json::Value) = match kind {
                    0 => ("FP32", TensorData::Fp32(xs.iter().map(|x| if x.is_finite() { *x } else { f32::NAN }).collect()),
                        serde_json::Value::Array(xs.iter().map(|x| if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null }).collect())),
                    1 => ("FP64", TensorData::Fp64(xs.iter().map(|&x| if x.is_finite() { f64::from(x) * 1.1 } else { f64::NAN }).collect()),
                        serde_json::Value::Array(xs.iter().map(|&x| if x.is_finite() { serde_json::json!(f64::from(x) * 1.1) } else { serde_json::Value::Null }).collect())),
                    2 => ("INT64", TensorData::Int64(xs.iter().map(|x| x.to_bits() as i64 - (1 << 31)).collect()),
                        serde_json::json!(xs.iter().map(|x| x.to_bits() as i64 - (1 << 31)).collect::<Vec<_>>())),
                    3 => ("BOOL", TensorData::Bool(xs.iter().map(|x| x.is_sign_negative()).collect()),
                        serde_json::json!(xs.iter().map(|x| x.is_sign_negative()).collect::<Vec<_>>())),
                    _ => ("BYTES", TensorData::Bytes(xs.iter().map(|x| format!("é{x}\"").into_bytes()).collect()),
                        serde_json::json!(xs.iter().map(|x| format!("é{x}\"")).collect::<Vec<_>>())),
                };
                want.push((name.clone(), data));
                // Nested as [n, 1] half the time.
                let (shape, json) = if k % 2 == 0 {
                    (serde_json::json!([xs.len()]), json)
                } else {
                    let rows = json.as_array().unwrap().iter().map(|v| serde_json::json!([v])).collect::<Vec<_>>();
                    (serde_json::json!([xs.len(), 1]), serde_json::Value::Array(rows))
                };
                let mut fields = vec![
                    ("name", serde_json::json!(name)),
                    ("shape", shape),
                    ("datatype", serde_json::json!(dt)),
                    ("data", json),
                ];
                for (i, e) in extra.iter().enumerate().take(3) {
                    if let Some(e) = e {
                        fields.push((["x_a", "x_b", "x_c"][i], extras[*e].clone()));
                    }
                }
                // A permutation of the fields from `order`.
                for i in (1..fields.len()).rev() {
                    fields.swap(i, order[(i + k) % order.len()] % (i + 1));
                }
                let mut text = String::from("{");
                for (i, (key, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        text += if pretty { ",\n  " } else { "," };
                    }
                    let v = if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) }.unwrap();
                    text += &format!("{:?}{}{v}", key, if pretty { " : " } else { ":" });
                }
                text += "}";
                inputs.push(text);
            }
            let mut body = format!("{{\"inputs\":[{}]", inputs.join(if pretty { ",\n" } else { "," }));
            if let Some(e) = extra[5] {
                body += &format!(",\"model_name\":{}", extras[e]);
            }
            body += "}";
            let (r, has) = parse_request(body.as_bytes()).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{}: {body}", e.message)))?;
            proptest::prop_assert_eq!(has, vec![true; want.len()]);
            for (t, (name, data)) in r.inputs.iter().zip(&want) {
                proptest::prop_assert_eq!(&t.name, name);
                // Compared as bits where NaN is involved.
                let same = match (&t.data, data) {
                    (TensorData::Fp32(a), TensorData::Fp32(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())),
                    (TensorData::Fp64(a), TensorData::Fp64(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())),
                    (a, b) => a == b,
                };
                proptest::prop_assert!(same, "{}: {:?} against {:?}", body, t.data, data);
            }
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
        // serde_json stops just after the value past the limit; the pass stops at its start.
        let sixth = |b: &str| b.find("\"data\":[").unwrap() + 8 + 10;
        let (fast, general) = (at(&e.message), at(&e2.message));
        assert_eq!(fast, sixth(&long), "{}", e.message);
        assert!(
            (sixth(&ints)..sixth(&ints) + 2).contains(&general),
            "{}",
            e2.message
        );
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
