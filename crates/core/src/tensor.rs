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
        (0x1f, _) => sign | 0x7fc0_0000 | ((frac & 0x1ff) << 13),
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

/// A number as messages write it: its shortest form, in exponent notation when very large or
/// very small (`1e39`, not forty digits).
pub fn number_text(x: f64) -> String {
    let a = x.abs();
    // (NaN and the infinities read the same either way.)
    if a != 0.0 && !(1e-6..1e16).contains(&a) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// The error for a value of input `input` that `dt` cannot hold ([`DataType::holds`]).
pub fn out_of_range(input: &str, dt: DataType, value: &str) -> InferError {
    InferError::invalid(format!(
        "input '{input}': value {value} is out of range for {dt} ({})",
        dt.range()
    ))
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

    /// The first element that `target` cannot hold ([`DataType::holds`]), as its index and its
    /// value written out; `None` when every element converts. (It looks at every element: a
    /// caller skips it when `target` holds every value of this type, [`DataType::holds_all`].)
    /// BYTES on either side is not a number conversion and is answered elsewhere (`None`).
    pub fn first_unheld(&self, target: DataType) -> Option<(usize, String)> {
        if target == DataType::Bytes {
            return None;
        }
        if let (Some(_), Some((lo, hi))) = (self.datatype().int_range(), target.int_range()) {
            // Integers to integers, exactly (an f64 would round 64-bit values).
            macro_rules! exact {
                ($($var:ident),*) => {
                    match self {
                        $(TensorData::$var(v) => v
                            .iter()
                            .position(|&x| !(lo..=hi).contains(&(x as i128)))
                            .map(|i| (i, v[i].to_string())),)*
                        _ => None,
                    }
                };
            }
            return exact!(Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64);
        }
        // (BYTES elements have no f64: none is unheld.)
        (0..self.len()).find_map(|i| {
            let x = self.get_f64(i)?;
            (!target.holds(x)).then(|| (i, number_text(x)))
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

    /// The value of a half-precision bit pattern, from the IEEE 754 definition (an oracle
    /// independent of the bit manipulation above).
    fn half_value(h: u16) -> f64 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let e = ((h >> 10) & 0x1f) as i32;
        let f = (h & 0x3ff) as f64;
        match e {
            0 => sign * f / 1024.0 * 2f64.powi(-14),
            0x1f if f == 0.0 => sign * f64::INFINITY,
            0x1f => f64::NAN,
            _ => sign * (1.0 + f / 1024.0) * 2f64.powi(e - 15),
        }
    }

    #[test]
    fn every_half_decodes_to_its_ieee_value() {
        for h in 0..=u16::MAX {
            let want = half_value(h);
            let got = f16_to_f32(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
                // The sign and the payload's top bits survive.
                assert_eq!(got.is_sign_negative(), h & 0x8000 != 0, "{h:#06x}");
                assert_eq!(
                    (got.to_bits() >> 13) & 0x3ff,
                    (h & 0x3ff) as u32 | 0x200,
                    "{h:#06x}"
                );
            } else {
                assert_eq!(got as f64, want, "{h:#06x}");
                assert_eq!(got.is_sign_negative(), h & 0x8000 != 0, "{h:#06x}");
                // And encodes back to the same bits.
                assert_eq!(f32_to_f16(got), h, "{h:#06x}");
            }
        }
    }

    /// The nearest half to `x` by search over the finite halves in order, ties to the even
    /// pattern; half an ulp or more beyond the largest half is infinity.
    fn nearest_half(finite: &[f64], x: f32) -> u16 {
        let sign = if x.is_sign_negative() { 0x8000u16 } else { 0 };
        let a = (x as f64).abs();
        if a >= 65520.0 {
            return sign | 0x7c00;
        }
        // `finite[h]` is the value of the non-negative half `h`, increasing.
        let lo = finite.partition_point(|&v| v <= a) - 1;
        let hi = (lo + 1).min(finite.len() - 1);
        let (dl, dh) = (a - finite[lo], finite[hi] - a);
        let h = if dl < dh || (dl == dh && lo % 2 == 0) {
            lo
        } else {
            hi
        };
        sign | h as u16
    }

    #[test]
    fn floats_encode_to_the_nearest_half_ties_to_even() {
        let mut xs: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1.0 / 3.0,
            65504.0,
            65519.0,
            65520.0,
            70000.0,
            -1e9,
            // Exactly halfway between 1 and the next half (1 + 2^-10): ties to even (1.0).
            1.0 + 2f32.powi(-11),
            // Halfway between 1 + 2^-10 and 1 + 2^-9: ties to even (1 + 2^-9).
            1.0 + 3.0 * 2f32.powi(-11),
            // Just above a halfway point: rounds up.
            (1.0 + 2f32.powi(-11)).next_up(),
            // Subnormal halves and the values between them.
            2f32.powi(-24),
            2f32.powi(-25),
            2f32.powi(-25).next_up(),
            3.0 * 2f32.powi(-25),
            2f32.powi(-26),
            5.0 * 2f32.powi(-24),
            5.5 * 2f32.powi(-24),
            6.5 * 2f32.powi(-24),
            1023.5 * 2f32.powi(-24),
            // Below the smallest subnormal's half: zero.
            1e-10,
            2f32.powi(-14),
            2f32.powi(-14) * (1.0 - 2f32.powi(-12)),
            f32::MIN_POSITIVE,
        ];
        // A spread of ordinary values, both signs.
        let mut s = 12345u32;
        for _ in 0..300 {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            let x = f32::from_bits((s >> 1) & 0x477f_ffff | 0x3000_0000);
            xs.push(x);
            xs.push(-x);
        }
        let finite: Vec<f64> = (0..0x7c00u16).map(half_value).collect();
        for x in xs {
            assert_eq!(f32_to_f16(x), nearest_half(&finite, x), "{x:e}");
        }
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7c00);
        assert_eq!(f32_to_f16(f32::NEG_INFINITY), 0xfc00);
        let n = f32_to_f16(-f32::NAN);
        assert_eq!(n & 0x7c00, 0x7c00);
        assert_ne!(n & 0x3ff, 0, "NaN stays NaN");
        assert_eq!(n & 0x8000, 0x8000);
    }

    /// The nearest bfloat16 to `x` (finite), ties to even, from the two candidates around it.
    fn nearest_bf16(x: f32) -> u16 {
        let lo = (x.to_bits() >> 16) as u16;
        let hi = lo.wrapping_add(1);
        let v = |h: u16| bf16_to_f32(h) as f64;
        let (dl, dh) = ((x as f64 - v(lo)).abs(), (v(hi) - x as f64).abs());
        if dl < dh || (dl == dh && lo & 1 == 0) {
            lo
        } else {
            hi
        }
    }

    #[test]
    fn bfloat16_is_the_top_half_rounded_to_nearest_even() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
        assert_eq!(bf16_to_f32(0x7f80), f32::INFINITY);
        for bits in [
            0x3f80_0000u32, // 1.0
            0x3f80_8000,    // halfway, even below: stays
            0x3f81_8000,    // halfway, odd below: up
            0x3f80_8001,    // above halfway: up
            0x3f80_7fff,    // below halfway: down
            0xbf81_8000,
            0x0000_8000,
            0x7f7f_ffff, // rounds to infinity
        ] {
            let x = f32::from_bits(bits);
            let want = if bits == 0x7f7f_ffff {
                0x7f80
            } else {
                nearest_bf16(x)
            };
            assert_eq!(f32_to_bf16(x), want, "{bits:#010x}");
        }
        let n = f32_to_bf16(-f32::NAN);
        assert!(bf16_to_f32(n).is_nan());
        assert_eq!(n, 0xffc0);
        assert_eq!(f32_to_bf16(f32::NAN), 0x7fc0);
    }

    #[test]
    fn element_access_and_conversion() {
        let all = [
            TensorData::Bool(vec![false, true]),
            TensorData::Uint8(vec![0, 1]),
            TensorData::Uint16(vec![0, 1]),
            TensorData::Uint32(vec![0, 1]),
            TensorData::Uint64(vec![0, 1]),
            TensorData::Int8(vec![0, 1]),
            TensorData::Int16(vec![0, 1]),
            TensorData::Int32(vec![0, 1]),
            TensorData::Int64(vec![0, 1]),
            TensorData::Fp16(vec![0x0000, 0x3c00]),
            TensorData::Bf16(vec![0x0000, 0x3f80]),
            TensorData::Fp32(vec![0.0, 1.0]),
            TensorData::Fp64(vec![0.0, 1.0]),
        ];
        for d in all {
            assert_eq!(d.len(), 2);
            assert!(!d.is_empty());
            assert_eq!(d.get_f64(1), Some(1.0), "{:?}", d.datatype());
            assert_eq!(d.get_f64(0), Some(0.0), "{:?}", d.datatype());
            assert_eq!(TensorData::empty(d.datatype()).datatype(), d.datatype());
            assert!(TensorData::empty(d.datatype()).is_empty());
            assert_eq!(d.clone().into_f32().unwrap(), vec![0.0, 1.0]);
            assert_eq!(d.slice(1, 2).get_f64(0), Some(1.0));
            let mut joined = d.clone();
            joined.extend(&d).unwrap();
            assert_eq!(joined.len(), 4);
            assert_eq!(joined.slice(2, 4), d);
        }
        assert_eq!(TensorData::Int64(vec![-3]).get_f64(0), Some(-3.0));
        assert_eq!(
            TensorData::Fp64(vec![0.1]).into_f32().unwrap(),
            vec![0.1f32]
        );
        let b = TensorData::Bytes(vec![b"a".to_vec()]);
        assert_eq!(b.get_f64(0), None);
        assert!(b.clone().into_f32().is_err());
        assert_eq!(
            TensorData::empty(DataType::Bytes),
            TensorData::Bytes(vec![])
        );
        let mut f = TensorData::Fp32(vec![1.0]);
        let e = f.extend(&TensorData::Fp64(vec![1.0])).unwrap_err();
        assert!(
            e.message.contains("cannot join FP32 and FP64"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_first_value_a_type_cannot_hold_is_found() {
        let d = TensorData::Fp64(vec![1.0, 3e38, 1e39, -1e39]);
        assert_eq!(d.first_unheld(DataType::Fp32), Some((2, "1e39".into())));
        assert_eq!(d.first_unheld(DataType::Fp64), None);
        assert_eq!(
            TensorData::Fp32(vec![1.0, 65504.0, 65520.0]).first_unheld(DataType::Fp16),
            Some((2, "65520".into()))
        );
        assert_eq!(
            TensorData::Fp32(vec![f32::NAN, f32::INFINITY]).first_unheld(DataType::Fp16),
            None
        );
        assert_eq!(
            TensorData::Fp32(vec![1.0, 2.5]).first_unheld(DataType::Int32),
            Some((1, "2.5".into()))
        );
        // Integers are compared exactly, at 64 bits too.
        assert_eq!(
            TensorData::Uint64(vec![i64::MAX as u64, i64::MAX as u64 + 1])
                .first_unheld(DataType::Int64),
            Some((1, "9223372036854775808".into()))
        );
        assert_eq!(
            TensorData::Int64(vec![-1]).first_unheld(DataType::Uint8),
            Some((0, "-1".into()))
        );
        assert_eq!(
            TensorData::Int64(vec![0, 255]).first_unheld(DataType::Uint8),
            None
        );
        assert_eq!(
            TensorData::Int32(vec![70000]).first_unheld(DataType::Fp16),
            Some((0, "70000".into()))
        );
        assert_eq!(
            TensorData::Bf16(vec![0x7f7f]).first_unheld(DataType::Fp16),
            Some((0, "3.3895313892515355e38".into()))
        );
        assert_eq!(
            TensorData::Bool(vec![true]).first_unheld(DataType::Int8),
            None
        );
        assert_eq!(
            TensorData::Bytes(vec![b"x".to_vec()]).first_unheld(DataType::Fp32),
            None
        );
        assert_eq!(
            TensorData::Fp32(vec![1.0]).first_unheld(DataType::Bytes),
            None
        );
        assert_eq!(
            TensorData::Int64(vec![1]).first_unheld(DataType::Bytes),
            None
        );
        let e = out_of_range("x", DataType::Fp32, &number_text(1e39));
        assert_eq!(
            e.message,
            "input 'x': value 1e39 is out of range for FP32 (numbers up to ±3.4028235e38)"
        );
        assert_eq!(e.kind, crate::ErrorKind::InvalidInput);
    }

    #[test]
    fn numbers_are_written_short() {
        assert_eq!(number_text(1e39), "1e39");
        assert_eq!(number_text(-2.5e-9), "-2.5e-9");
        assert_eq!(number_text(0.5), "0.5");
        assert_eq!(number_text(0.0), "0");
        assert_eq!(number_text(123456.0), "123456");
        assert_eq!(number_text(f64::NAN), "NaN");
        assert_eq!(number_text(f64::INFINITY), "inf");
    }

    #[test]
    fn parameters_read_as_numbers_flags_and_text() {
        assert_eq!(Param::Int(-4).as_i64(), Some(-4));
        assert_eq!(Param::Float(3.0).as_i64(), Some(3));
        assert_eq!(Param::Float(3.5).as_i64(), None);
        assert_eq!(Param::Str("12".into()).as_i64(), Some(12));
        assert_eq!(Param::Str("x".into()).as_i64(), None);
        assert_eq!(Param::Bool(true).as_i64(), None);
        assert_eq!(Param::Bool(false).as_bool(), Some(false));
        assert_eq!(Param::Bool(true).as_bool(), Some(true));
        assert_eq!(Param::Str("true".into()).as_bool(), Some(true));
        assert_eq!(Param::Str("false".into()).as_bool(), Some(false));
        assert_eq!(Param::Str("yes".into()).as_bool(), None);
        assert_eq!(Param::Int(1).as_bool(), None);
        assert_eq!(Param::Str("s".into()).as_str(), Some("s"));
        assert_eq!(Param::Int(1).as_str(), None);
        let mut p = Parameters::default();
        assert!(p.is_empty());
        p.insert("a", Param::Int(1));
        p.insert("b", Param::Int(2));
        p.insert("a", Param::Int(3));
        assert!(!p.is_empty());
        assert_eq!(p.0.len(), 2);
        assert_eq!(p.get("a"), Some(&Param::Int(3)));
        assert_eq!(p.get("b"), Some(&Param::Int(2)));
        assert_eq!(p.get("c"), None);
        let mut o = RequestedOutput::default();
        assert_eq!((o.classification(), o.binary_data()), (None, None));
        o.parameters.insert("classification", Param::Int(2));
        o.parameters.insert("binary_data", Param::Bool(true));
        assert_eq!((o.classification(), o.binary_data()), (Some(2), Some(true)));
    }

    #[test]
    fn element_counts() {
        assert_eq!(Tensor::element_count(&[]).unwrap(), 1);
        assert_eq!(Tensor::element_count(&[2, 3, 4]).unwrap(), 24);
        assert_eq!(Tensor::element_count(&[0, 3]).unwrap(), 0);
        let e = Tensor::element_count(&[2, -1]).unwrap_err();
        assert!(e.message.contains("negative"), "{}", e.message);
        let e = Tensor::element_count(&[i64::MAX, 4]).unwrap_err();
        assert!(e.message.contains("too large"), "{}", e.message);
        let t = Tensor::new("x", vec![1], TensorData::Int8(vec![1]));
        assert_eq!(t.datatype(), DataType::Int8);
    }
}
