//! The Open Inference Protocol's tensor data types.

use std::fmt;

/// Every tensor data type of the v2 protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Bf16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The protocol's name: `"FP32"`, `"INT64"`, `"BYTES"` ...
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Bf16 => "BF16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// What an input named `name` declares: its datatype (an unknown one refused, listing the
    /// known) and how many elements its shape holds (a negative or overflowing shape refused).
    /// Every wire format reads its inputs through this.
    pub fn of_input(
        name: &str,
        datatype: &str,
        shape: &[i64],
    ) -> Result<(DataType, usize), crate::InferError> {
        let dt = DataType::parse(datatype).ok_or_else(|| {
            let known: Vec<&str> = DataType::ALL.iter().map(|d| d.as_str()).collect();
            crate::InferError::invalid(format!(
                "input '{name}': unknown datatype '{datatype}' (expected one of {})",
                known.join(", ")
            ))
        })?;
        let n = crate::Tensor::element_count(shape)
            .map_err(|e| crate::InferError::invalid(format!("input '{name}': {}", e.message)))?;
        Ok((dt, n))
    }

    /// Parses a protocol name (exact, upper case).
    pub fn parse(s: &str) -> Option<DataType> {
        Some(match s {
            "BOOL" => DataType::Bool,
            "UINT8" => DataType::Uint8,
            "UINT16" => DataType::Uint16,
            "UINT32" => DataType::Uint32,
            "UINT64" => DataType::Uint64,
            "INT8" => DataType::Int8,
            "INT16" => DataType::Int16,
            "INT32" => DataType::Int32,
            "INT64" => DataType::Int64,
            "FP16" => DataType::Fp16,
            "BF16" => DataType::Bf16,
            "FP32" => DataType::Fp32,
            "FP64" => DataType::Fp64,
            "BYTES" => DataType::Bytes,
            _ => return None,
        })
    }

    /// Bytes per element in the binary encoding; `None` for `BYTES` (length-prefixed).
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
            DataType::Bytes => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            DataType::Fp16 | DataType::Bf16 | DataType::Fp32 | DataType::Fp64
        )
    }

    /// The smallest and largest value of an integer type (BOOL: 0 and 1); `None` for floating
    /// point types and `BYTES`.
    pub fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            DataType::Bool => (0, 1),
            DataType::Uint8 => (0, u8::MAX as i128),
            DataType::Uint16 => (0, u16::MAX as i128),
            DataType::Uint32 => (0, u32::MAX as i128),
            DataType::Uint64 => (0, u64::MAX as i128),
            DataType::Int8 => (i8::MIN as i128, i8::MAX as i128),
            DataType::Int16 => (i16::MIN as i128, i16::MAX as i128),
            DataType::Int32 => (i32::MIN as i128, i32::MAX as i128),
            DataType::Int64 => (i64::MIN as i128, i64::MAX as i128),
            DataType::Fp16 | DataType::Bf16 | DataType::Fp32 | DataType::Fp64 | DataType::Bytes => {
                return None
            }
        })
    }

    /// The magnitude from which a number rounds to infinity in a floating-point type (half an
    /// ulp above its largest finite value, where round-to-nearest-even goes up); `None` for
    /// `FP64` (whose own numbers are all its values) and for the other types.
    fn overflow_at(self) -> Option<f64> {
        match self {
            // 65504 + 16.
            DataType::Fp16 => Some(65520.0),
            // (2^8 - 1/2) * 2^120 = 2^128 - 2^119.
            DataType::Bf16 => Some(BF16_OVERFLOW),
            // f32::MAX + 2^103 = 2^128 - 2^103.
            DataType::Fp32 => Some(FP32_OVERFLOW),
            _ => None,
        }
    }

    /// Whether `x` is a value of this type, as a request converts it: for a floating-point
    /// type every number but a finite one too large for it, which would become infinity (1e39
    /// for FP32, 70000 for FP16; precision is rounded, as any conversion rounds, and NaN and the
    /// infinities stay what they are); for an integer type a whole number in its range; for
    /// BOOL 0 or 1; never for `BYTES`.
    pub fn holds(self, x: f64) -> bool {
        if let Some(limit) = self.overflow_at() {
            return !(x.is_finite() && x.abs() >= limit);
        }
        match self {
            DataType::Fp64 => true,
            DataType::Int64 => x.fract() == 0.0 && (-TWO_63..TWO_63).contains(&x),
            DataType::Uint64 => x.fract() == 0.0 && (0.0..TWO_64).contains(&x),
            _ => match self.int_range() {
                // The bounds of the narrower integer types are exact in f64.
                Some((lo, hi)) => x.fract() == 0.0 && x >= lo as f64 && x <= hi as f64,
                None => false,
            },
        }
    }

    /// Whether every value of `from` is a value of this type ([`DataType::holds`]), so that a
    /// conversion need not look at the values: the same type, a wider integer type, a float
    /// type at least as large.
    pub fn holds_all(self, from: DataType) -> bool {
        if self == from {
            return true;
        }
        match (from.int_range(), self.int_range()) {
            (Some((lo, hi)), Some((tlo, thi))) => tlo <= lo && hi <= thi,
            (Some((lo, hi)), None) => self.holds(lo as f64) && self.holds(hi as f64),
            (None, Some(_)) => false,
            (None, None) => match from {
                DataType::Fp16 => self.holds(65504.0),
                DataType::Bf16 => self.holds(BF16_MAX),
                DataType::Fp32 => self.holds(f32::MAX as f64),
                DataType::Fp64 => self == DataType::Fp64,
                _ => false,
            },
        }
    }

    /// What the values of this type are, for error messages.
    pub fn range(self) -> &'static str {
        match self {
            DataType::Bool => "0 or 1",
            DataType::Uint8 => "whole numbers from 0 to 255",
            DataType::Uint16 => "whole numbers from 0 to 65535",
            DataType::Uint32 => "whole numbers from 0 to 4294967295",
            DataType::Uint64 => "whole numbers from 0 to 18446744073709551615",
            DataType::Int8 => "whole numbers from -128 to 127",
            DataType::Int16 => "whole numbers from -32768 to 32767",
            DataType::Int32 => "whole numbers from -2147483648 to 2147483647",
            DataType::Int64 => "whole numbers from -9223372036854775808 to 9223372036854775807",
            DataType::Fp16 => "numbers up to ±65504",
            DataType::Bf16 => "numbers up to ±3.3895314e38",
            DataType::Fp32 => "numbers up to ±3.4028235e38",
            DataType::Fp64 => "numbers up to ±1.7976931348623157e308",
            DataType::Bytes => "bytes",
        }
    }
}

const TWO_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_64: f64 = 18_446_744_073_709_551_616.0;
/// 2^128 - 2^103: halfway between `f32::MAX` and 2^128.
const FP32_OVERFLOW: f64 = f32::MAX as f64 + (1u128 << 103) as f64;
/// The largest finite bfloat16, (2^8 - 1) * 2^120.
const BF16_MAX: f64 = (255u128 << 120) as f64;
/// 2^128 - 2^119: halfway between the largest finite bfloat16 and 2^128.
const BF16_OVERFLOW: f64 = BF16_MAX + (1u128 << 119) as f64;

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()), Some(d));
        }
        assert_eq!(DataType::parse("fp32"), None);
    }

    #[test]
    fn floats_hold_what_does_not_round_to_infinity() {
        use crate::tensor::{f32_to_bf16, f32_to_f16};
        // The boundaries: the largest finite value holds, half an ulp above it does not.
        let cases = [
            (DataType::Fp32, f32::MAX as f64, FP32_OVERFLOW),
            (DataType::Fp16, 65504.0, 65520.0),
            (DataType::Bf16, BF16_MAX, BF16_OVERFLOW),
        ];
        for (dt, max, over) in cases {
            for sign in [1.0, -1.0] {
                assert!(dt.holds(sign * max), "{dt} {max}");
                assert!(dt.holds(sign * over.next_down()), "{dt} {over}");
                assert!(!dt.holds(sign * over), "{dt} {over}");
                assert!(!dt.holds(sign * 1e300), "{dt}");
            }
            for x in [
                0.0,
                -0.0,
                1.0,
                1e-300,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ] {
                assert!(dt.holds(x), "{dt} {x}");
            }
        }
        // The boundary is where the conversions themselves overflow.
        assert_eq!(FP32_OVERFLOW, 2f64.powi(128) - 2f64.powi(103));
        assert!((FP32_OVERFLOW.next_down() as f32).is_finite());
        assert!((FP32_OVERFLOW as f32).is_infinite());
        assert_eq!(f32_to_f16(65519.996), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(BF16_MAX, f32::from_bits(0x7f7f_0000) as f64);
        assert_eq!(f32_to_bf16((BF16_OVERFLOW as f32).next_down()), 0x7f7f);
        assert_eq!(f32_to_bf16(BF16_OVERFLOW as f32), 0x7f80);
        assert!(DataType::Fp32.holds(1e38) && !DataType::Fp32.holds(1e39));
        assert!(DataType::Fp64.holds(f64::MAX) && DataType::Fp64.holds(f64::NAN));
        assert!(!DataType::Bytes.holds(0.0));
    }

    #[test]
    fn integers_hold_whole_numbers_in_range() {
        for dt in DataType::ALL {
            let Some((lo, hi)) = dt.int_range() else {
                continue;
            };
            assert!(dt.holds(lo as f64), "{dt}");
            assert!(!dt.holds(0.5) && !dt.holds(f64::NAN) && !dt.holds(f64::INFINITY));
            // (The largest 64-bit values round up to 2^63 and 2^64 as f64: below.)
            if dt != DataType::Int64 && dt != DataType::Uint64 {
                assert!(dt.holds(hi as f64), "{dt}");
                assert!(
                    !dt.holds(lo as f64 - 1.0) && !dt.holds(hi as f64 + 1.0),
                    "{dt}"
                );
            }
        }
        // 2^63 and 2^64 are the f64 just past the 64-bit ranges (i64::MAX as f64 rounds to 2^63).
        assert!(!DataType::Int64.holds(9_223_372_036_854_775_808.0));
        assert!(DataType::Int64.holds(9_223_372_036_854_774_784.0));
        assert!(DataType::Int64.holds(-9_223_372_036_854_775_808.0));
        assert!(!DataType::Uint64.holds(18_446_744_073_709_551_616.0));
        assert!(DataType::Uint64.holds(18_446_744_073_709_549_568.0));
        assert!(!DataType::Uint64.holds(-1.0));
        assert!(DataType::Bool.holds(1.0) && !DataType::Bool.holds(2.0));
    }

    #[test]
    fn wider_types_hold_all_of_narrower_ones() {
        use DataType::*;
        let yes = [
            (Fp32, Fp16),
            (Fp64, Fp32),
            (Bf16, Fp16),
            (Fp32, Int64),
            (Fp16, Int16),
            (Fp16, Uint8),
            (Int64, Int32),
            (Int16, Uint8),
            (Uint64, Uint32),
            (Int8, Bool),
            (Fp16, Bool),
            (Fp32, Fp32),
        ];
        for (to, from) in yes {
            assert!(to.holds_all(from), "{to} from {from}");
        }
        let no = [
            (Fp32, Fp64),
            (Fp16, Fp32),
            (Bf16, Fp32),
            (Fp16, Bf16),
            (Fp16, Uint16),
            (Int32, Fp32),
            (Int32, Int64),
            (Uint64, Int8),
            (Int64, Uint64),
            (Bool, Uint8),
            (Fp32, Bytes),
            (Int8, Bytes),
        ];
        for (to, from) in no {
            assert!(!to.holds_all(from), "{to} from {from}");
        }
    }
}
