//! Tensors and the v2 request/response shapes, transport-neutral.

use crate::{DataType, InferError};

/// Typed tensor contents, row-major. `Fp16`/`Bf16` hold raw bit patterns.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<u16>),
    Bf16(Vec<u16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Converts an IEEE half-precision bit pattern to `f32`.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Converts `f32` to the nearest IEEE half-precision bit pattern (round to nearest even).
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let frac = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if frac != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = frac | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut v = m >> shift;
        let rem = m & ((1 << shift) - 1);
        if rem > half || (rem == half && v & 1 == 1) {
            v += 1;
        }
        return sign | v as u16;
    }
    let mut v = ((e as u32) << 10) | (frac >> 13);
    let rem = frac & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && v & 1 == 1) {
        v += 1;
    }
    sign | v as u16
}

/// bfloat16 bits to `f32`.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `f32` to bfloat16 bits (round to nearest even).
pub fn f32_to_bf16(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7fc0 | ((x.to_bits() >> 16) as u16 & 0x8000);
    }
    let b = x.to_bits();
    let round = 0x7fff + ((b >> 16) & 1);
    ((b + round) >> 16) as u16
}

macro_rules! each_numeric {
    ($self:expr, $v:ident => $e:expr) => {
        match $self {
            TensorData::Bool($v) => $e,
            TensorData::Uint8($v) => $e,
            TensorData::Uint16($v) => $e,
            TensorData::Uint32($v) => $e,
            TensorData::Uint64($v) => $e,
            TensorData::Int8($v) => $e,
            TensorData::Int16($v) => $e,
            TensorData::Int32($v) => $e,
            TensorData::Int64($v) => $e,
            TensorData::Fp16($v) => $e,
            TensorData::Bf16($v) => $e,
            TensorData::Fp32($v) => $e,
            TensorData::Fp64($v) => $e,
            TensorData::Bytes($v) => $e,
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Bf16(_) => DataType::Bf16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        each_numeric!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of the given type.
    pub fn empty(dt: DataType) -> TensorData {
        match dt {
            DataType::Bool => TensorData::Bool(vec![]),
            DataType::Uint8 => TensorData::Uint8(vec![]),
            DataType::Uint16 => TensorData::Uint16(vec![]),
            DataType::Uint32 => TensorData::Uint32(vec![]),
            DataType::Uint64 => TensorData::Uint64(vec![]),
            DataType::Int8 => TensorData::Int8(vec![]),
            DataType::Int16 => TensorData::Int16(vec![]),
            DataType::Int32 => TensorData::Int32(vec![]),
            DataType::Int64 => TensorData::Int64(vec![]),
            DataType::Fp16 => TensorData::Fp16(vec![]),
            DataType::Bf16 => TensorData::Bf16(vec![]),
            DataType::Fp32 => TensorData::Fp32(vec![]),
            DataType::Fp64 => TensorData::Fp64(vec![]),
            DataType::Bytes => TensorData::Bytes(vec![]),
        }
    }

    /// Element `i` as `f64` (numeric types; `None` for `BYTES`).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        Some(match self {
            TensorData::Bool(v) => v[i] as u8 as f64,
            TensorData::Uint8(v) => v[i] as f64,
            TensorData::Uint16(v) => v[i] as f64,
            TensorData::Uint32(v) => v[i] as f64,
            TensorData::Uint64(v) => v[i] as f64,
            TensorData::Int8(v) => v[i] as f64,
            TensorData::Int16(v) => v[i] as f64,
            TensorData::Int32(v) => v[i] as f64,
            TensorData::Int64(v) => v[i] as f64,
            TensorData::Fp16(v) => f16_to_f32(v[i]) as f64,
            TensorData::Bf16(v) => bf16_to_f32(v[i]) as f64,
            TensorData::Fp32(v) => v[i] as f64,
            TensorData::Fp64(v) => v[i],
            TensorData::Bytes(_) => return None,
        })
    }

    /// The contents converted to `f32` (numeric types). Moves without copying when already
    /// `FP32`.
    pub fn into_f32(self) -> Result<Vec<f32>, InferError> {
        Ok(match self {
            TensorData::Fp32(v) => v,
            TensorData::Fp64(v) => v.into_iter().map(|x| x as f32).collect(),
            TensorData::Bytes(_) => {
                return Err(InferError::invalid(
                    "BYTES data where numbers were expected",
                ))
            }
            other => (0..other.len())
                .map(|i| other.get_f64(i).unwrap_or(f64::NAN) as f32)
                .collect(),
        })
    }

    /// Appends `other` (same type) to `self`.
    pub fn extend(&mut self, other: &TensorData) -> Result<(), InferError> {
        macro_rules! ext {
            ($($var:ident),*) => {
                match (self, other) {
                    $((TensorData::$var(a), TensorData::$var(b)) => a.extend_from_slice(b),)*
                    (a, b) => {
                        return Err(InferError::invalid(format!(
                            "cannot join {} and {} data",
                            a.datatype(),
                            b.datatype()
                        )))
                    }
                }
            };
        }
        ext!(
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64,
            Bytes
        );
        Ok(())
    }

    /// Elements `[start, end)` as a new buffer.
    pub fn slice(&self, start: usize, end: usize) -> TensorData {
        macro_rules! sl {
            ($($var:ident),*) => {
                match self {
                    $(TensorData::$var(v) => TensorData::$var(v[start..end].to_vec()),)*
                }
            };
        }
        sl!(
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64,
            Bytes
        )
    }
}

/// A parameter value (v2 parameters are strings, numbers or booleans).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Param {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Param::Int(i) => Some(*i),
            Param::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            Param::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Param::Bool(b) => Some(*b),
            Param::Str(s) if s == "true" => Some(true),
            Param::Str(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Param::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Ordered parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters(pub Vec<(String, Param)>);

impl Parameters {
    pub fn get(&self, key: &str) -> Option<&Param> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Param) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
    pub parameters: Parameters,
}

impl Tensor {
    pub fn new(name: impl Into<String>, shape: Vec<i64>, data: TensorData) -> Self {
        Tensor {
            name: name.into(),
            shape,
            data,
            parameters: Parameters::default(),
        }
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// Product of the shape, or an error for negative dimensions or overflow.
    pub fn element_count(shape: &[i64]) -> Result<usize, InferError> {
        shape.iter().try_fold(1usize, |acc, &d| {
            if d < 0 {
                Err(InferError::invalid(format!(
                    "shape {shape:?} has a negative dimension"
                )))
            } else {
                acc.checked_mul(d as usize)
                    .ok_or_else(|| InferError::invalid(format!("shape {shape:?} is too large")))
            }
        })
    }
}

/// An output the client asked for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestedOutput {
    pub name: String,
    pub parameters: Parameters,
}

impl RequestedOutput {
    /// `classification: k` (top-k classes as `"score:index:label"`).
    pub fn classification(&self) -> Option<i64> {
        self.parameters
            .get("classification")
            .and_then(Param::as_i64)
    }

    pub fn binary_data(&self) -> Option<bool> {
        self.parameters.get("binary_data").and_then(Param::as_bool)
    }
}

/// An inference request, as parsed from any front.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Empty means every output.
    pub outputs: Vec<RequestedOutput>,
    pub parameters: Parameters,
}

/// An inference response.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<Tensor>,
    pub parameters: Parameters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_round_trips() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            -2.5,
            65504.0,
            6.103_515_6e-5,
            5.960_464_5e-8,
            3.0e-5_f32.max(2f32.powi(-15)),
            f32::INFINITY,
        ] {
            let h = f32_to_f16(x);
            assert_eq!(f16_to_f32(h), x, "{x}");
        }
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert_eq!(f16_to_f32(f32_to_f16(1e6)), f32::INFINITY);
        for x in [0.0f32, 1.0, -3.0, 0.5] {
            assert_eq!(bf16_to_f32(f32_to_bf16(x)), x);
        }
    }
}
