//! Floating-point tensor data read straight into the declared type's buffer.
//!
//! The request's JSON has already been checked by serde_json (which hands over an input's
//! `data` as raw text without computing its numbers), so the text here is valid JSON: a
//! possibly nested array whose scalars are numbers, `null`, booleans, strings or objects. One
//! pass reads the numbers (and `null`, a missing value: NaN) into a `Vec<f32>` or `Vec<f64>`,
//! each decimal rounded once, directly to the declared type (an FP32 value is never rounded to
//! f64 first). Most numbers clients send have few digits and a small exponent: their digits
//! and the power of ten are then both exact in the type, and one division or multiplication
//! rounds correctly (Clinger's fast path); the others go to the standard library's
//! correctly-rounded parser. Anything but numbers and `null` stops the pass, and the caller
//! reads the data the general way, which names the problem.

use std::str::FromStr;

/// How reading `data` as floats ended.
#[derive(Debug, PartialEq)]
pub enum Scan<T> {
    /// Every value, flattened.
    Values(Vec<T>),
    /// More than the limit: stopped at this byte of the text, the first value past it.
    OverLimit(usize),
    /// A finite number too large for the type (it would become infinity), as written.
    OutOfRange(String),
    /// Something other than a number or `null`: read it the general way.
    NotNumbers,
}

/// A float type the pass can fill.
pub trait Float: FromStr + Copy {
    const NAN: Self;
    fn is_infinite(self) -> bool;
    /// `digits × 10^exp10` (negated if `negative`) when that rounds correctly with one
    /// operation: the digits and the power of ten both exact in the type.
    fn exact(negative: bool, digits: u64, exp10: i32) -> Option<Self>;
}

/// Powers of ten exact in f32 (5^10 < 2^24).
const POW10_F32: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];
/// Powers of ten exact in f64 (5^22 < 2^53).
const POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl Float for f32 {
    const NAN: Self = f32::NAN;
    fn is_infinite(self) -> bool {
        f32::is_infinite(self)
    }
    fn exact(negative: bool, digits: u64, exp10: i32) -> Option<f32> {
        if digits > 1 << 24 {
            return None;
        }
        let m = digits as f32;
        let p = *POW10_F32.get(exp10.unsigned_abs() as usize)?;
        let v = if exp10 < 0 { m / p } else { m * p };
        Some(if negative { -v } else { v })
    }
}

impl Float for f64 {
    const NAN: Self = f64::NAN;
    fn is_infinite(self) -> bool {
        f64::is_infinite(self)
    }
    fn exact(negative: bool, digits: u64, exp10: i32) -> Option<f64> {
        if digits > 1 << 53 {
            return None;
        }
        let m = digits as f64;
        let p = *POW10_F64.get(exp10.unsigned_abs() as usize)?;
        let v = if exp10 < 0 { m / p } else { m * p };
        Some(if negative { -v } else { v })
    }
}

/// Reads the JSON number starting at `bytes[i]` (valid JSON: an optional `-`, digits, an
/// optional fraction and exponent) in one pass: its end, and its digits (if at most 19 are
/// significant, else `None`) with their power of ten.
fn number(bytes: &[u8], mut i: usize) -> (usize, Option<(bool, u64, i32)>) {
    let negative = bytes[i] == b'-';
    i += usize::from(negative);
    let mut digits: u64 = 0;
    // Significant digits so far (leading zeros, as in 0.0012, are not).
    let mut count = 0u32;
    let mut run = |i: &mut usize| {
        let from = *i;
        while let Some(d) = bytes
            .get(*i)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|&d| d <= 9)
        {
            digits = digits.wrapping_mul(10).wrapping_add(u64::from(d));
            count += u32::from(digits != 0);
            *i += 1;
        }
        *i - from
    };
    run(&mut i);
    let mut exp10: i32 = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        exp10 = -(run(&mut i).min(1 << 20) as i32);
    }
    let mut exact = true;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        let sign = match bytes.get(i) {
            Some(b'-') => -1,
            Some(b'+') => 1,
            _ => 0,
        };
        i += usize::from(sign != 0);
        let from = i;
        let mut e: i32 = 0;
        while let Some(d) = bytes
            .get(i)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|&d| d <= 9)
        {
            e = e.saturating_mul(10).saturating_add(i32::from(d));
            i += 1;
        }
        // More than four exponent digits is never the quick path's (nor leading zeros' worth).
        exact = i - from <= 4;
        exp10 += if sign < 0 { -e } else { e };
    }
    let quick = (exact && count <= 19).then_some((negative, digits, exp10));
    (i, quick)
}

/// Reads the numbers of `text` (valid JSON, see the module notes) into a buffer sized for
/// `expected` values, keeping at most `limit`.
pub fn scan<T: Float>(text: &str, expected: usize, limit: usize) -> Scan<T> {
    let bytes = text.as_bytes();
    // Room for what the shape says, but never more than the text could hold (a value takes at
    // least two bytes with its comma) nor than the limit: a shape cannot make us allocate.
    let cap = expected.min(limit).min(bytes.len() / 2 + 1);
    let mut out: Vec<T> = Vec::with_capacity(cap);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'[' | b']' | b',' | b' ' | b'\n' | b'\r' | b'\t' => {
                i += 1;
                continue;
            }
            b'n' => {
                // `null`: the text is valid JSON, so these are its four letters.
                if out.len() == limit {
                    return Scan::OverLimit(i);
                }
                out.push(T::NAN);
                i += 4;
            }
            b'-' | b'0'..=b'9' => {
                if out.len() == limit {
                    return Scan::OverLimit(i);
                }
                let start = i;
                let (end, parts) = number(bytes, i);
                i = end;
                let quick = parts.and_then(|(neg, m, e)| T::exact(neg, m, e));
                // JSON numbers are ASCII: the word is whole characters.
                let word = || &text[start..end];
                match quick.map_or_else(|| word().parse::<T>(), Ok) {
                    // JSON has no literal for infinity: an infinite result is a finite number
                    // beyond the type's range.
                    Ok(x) if x.is_infinite() => return Scan::OutOfRange(word().to_string()),
                    Ok(x) => out.push(x),
                    // Not reachable for checked JSON; the general reader will say what it is.
                    Err(_) => return Scan::NotNumbers,
                }
            }
            _ => return Scan::NotNumbers,
        }
    }
    Scan::Values(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(text: &str) -> Scan<f32> {
        scan::<f32>(text, 8, usize::MAX)
    }

    #[test]
    fn numbers_and_null_flatten_in_order() {
        let got = match f32s("[[1, -2.5e0 ,\n\t3E2],[null,0.1,-0]]") {
            Scan::Values(v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(got.len(), 6);
        assert_eq!(&got[..3], &[1.0, -2.5, 300.0]);
        assert!(got[3].is_nan());
        assert_eq!(got[4], 0.1f32);
        assert!(got[5] == 0.0 && got[5].is_sign_negative());
        assert_eq!(scan::<f64>("[]", 0, 10), Scan::Values(vec![]));
        assert_eq!(scan::<f64>("[0.1]", 1, 10), Scan::Values(vec![0.1f64]));
    }

    #[test]
    fn each_decimal_is_rounded_once_to_the_declared_type() {
        // 1 + 2^-24 + 2^-60: rounding to f64 first lands on the f32 halfway point 1 + 2^-24,
        // which then rounds to even (1.0); rounded once it is above halfway: 1 + 2^-23.
        let text = "[1.000000059604644776258]";
        assert_eq!(f32s(text), Scan::Values(vec![1.0 + f32::EPSILON]));
        let twice = text[1..text.len() - 1].parse::<f64>().unwrap() as f32;
        assert_eq!(twice, 1.0, "the example must show double rounding");
    }

    #[test]
    fn the_quick_path_agrees_with_the_correctly_rounded_parser() {
        // Words on both sides of each limit of the quick path: digits around 2^24 and 2^53,
        // exponents around 10 and 22, leading and trailing zeros, 19 and 20 digits.
        let words = [
            "0",
            "-0",
            "1",
            "17.99",
            "0.07871",
            "-0.0012",
            "1e10",
            "1e11",
            "3e-10",
            "3e-11",
            "16777216",
            "16777217",
            "16777219",
            "1677721.7",
            "9007199254740993",
            "9007199254740992",
            "1e22",
            "1e23",
            "123456789e-22",
            "4.5e15",
            "0.1000000",
            "1234567890123456789",
            "12345678901234567891",
            "1E+2",
            "2e-0",
            "1e-0007",
            "7.038e-45",
            "3.4028235e38",
            "0.3",
            "2.2250738585072014e-308",
            "5e-324",
            "1.7976931348623157e308",
            "100.5e-1",
        ];
        fn want<T: Float + std::fmt::Debug>(w: &str) -> Scan<T> {
            match w.parse::<T>() {
                Ok(x) if x.is_infinite() => Scan::OutOfRange(w.to_string()),
                Ok(x) => Scan::Values(vec![x]),
                Err(_) => panic!("{w}"),
            }
        }
        for w in words {
            let text = format!("[{w}]");
            assert_eq!(f32s(&text), want::<f32>(w), "{w}");
            assert_eq!(scan::<f64>(&text, 1, 9), want::<f64>(w), "{w}");
        }
        // And on generated words: every digit count, point position and small exponent.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = 1 + (next() % 20) as usize;
            let mut w: String = (0..len)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            if next() % 2 == 0 {
                w.insert(1 + (next() as usize % len), '.');
                if w.ends_with('.') {
                    w.push('5');
                }
            }
            if next() % 3 == 0 {
                w += &format!("e{}", (next() % 60) as i32 - 30);
            }
            let w = format!("-{w}");
            let text = format!("[{w}]");
            // Compared bit for bit (the derived equality would take -0 for 0).
            let bits = |s: Scan<f32>| match s {
                Scan::Values(v) => Ok(v[0].to_bits()),
                other => Err(format!("{other:?}")),
            };
            assert_eq!(bits(f32s(&text)), bits(want::<f32>(&w)), "{w}");
            let bits = |s: Scan<f64>| match s {
                Scan::Values(v) => Ok(v[0].to_bits()),
                other => Err(format!("{other:?}")),
            };
            assert_eq!(bits(scan::<f64>(&text, 1, 9)), bits(want::<f64>(&w)), "{w}");
        }
    }

    #[test]
    fn what_is_not_a_number_is_left_to_the_general_reader() {
        for text in ["[1,\"a\"]", "[true]", "[false,1]", "[{\"a\":1}]"] {
            assert_eq!(f32s(text), Scan::NotNumbers, "{text}");
        }
    }

    #[test]
    fn too_large_for_the_type_is_named_as_written() {
        assert_eq!(f32s("[1,1e39]"), Scan::OutOfRange("1e39".into()));
        assert_eq!(
            f32s("[-3.4028236e38]"),
            Scan::OutOfRange("-3.4028236e38".into())
        );
        assert_eq!(
            f32s("[3.4028235e38,1e-50]"),
            Scan::Values(vec![f32::MAX, 0.0])
        );
        assert_eq!(scan::<f64>("[1e39]", 1, 9), Scan::Values(vec![1e39]));
        assert_eq!(
            scan::<f64>("[1e309]", 1, 9),
            Scan::OutOfRange("1e309".into())
        );
    }

    #[test]
    fn the_limit_stops_at_the_first_value_past_it() {
        assert_eq!(
            scan::<f32>("[1,2,3]", 3, 3),
            Scan::Values(vec![1.0, 2.0, 3.0])
        );
        assert_eq!(scan::<f32>("[1,2,3]", 3, 2), Scan::OverLimit(5));
        assert_eq!(scan::<f32>("[1, null]", 2, 1), Scan::OverLimit(4));
        assert_eq!(scan::<f32>("[7]", 1, 0), Scan::OverLimit(1));
    }

    #[test]
    fn the_buffer_is_sized_by_the_text_not_by_the_shape_alone() {
        match scan::<f32>("[1,2]", usize::MAX, usize::MAX) {
            Scan::Values(v) => assert!(v.capacity() <= 8, "{}", v.capacity()),
            other => panic!("{other:?}"),
        }
        match scan::<f32>("[1,2,3,4]", 4, usize::MAX) {
            Scan::Values(v) => assert_eq!(v.capacity(), 4),
            other => panic!("{other:?}"),
        }
    }
}
