//! Floating-point tensor data read straight from the request body into the declared type's
//! buffer, checked as JSON in the same pass.
//!
//! An input's `data` is a possibly nested array of numbers (or `null`, a missing value: NaN).
//! One pass checks the JSON grammar (brackets, commas, number syntax, as serde_json would) and
//! reads each number straight into a `Vec<f32>` or `Vec<f64>`, rounded once, directly to the
//! declared type (an FP32 value is never rounded to f64 first). Most numbers clients send have
//! few digits and a small exponent: their digits and the power of ten are then both exact in
//! the type, and one division or multiplication rounds correctly (Clinger's quick path); the
//! others go to the standard library's correctly-rounded parser. Data holding anything else
//! (strings, booleans, objects) stops the pass, and the caller reads it the general way, which
//! names the problem.

use std::str::FromStr;

/// Arrays nested deeper than this are refused (serde_json's own limit).
const MAX_DEPTH: usize = 128;

/// How reading `data` as floats ended.
#[derive(Debug, PartialEq)]
pub enum Scan<T> {
    /// Every value, flattened; the data ended just before this byte.
    Values(Vec<T>, usize),
    /// More than the limit: stopped at this byte, the first value past it.
    OverLimit(usize),
    /// A finite number too large for the type (it would become infinity), as written.
    OutOfRange(String),
    /// Something other than a number or `null` at this byte: read it the general way.
    NotNumbers,
    /// Not valid JSON at this byte: what was expected there.
    Malformed(usize, &'static str),
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
/// 10^-k rounded to f64, for k ≤ 10.
const INV_POW10_F64: [f64; 11] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10,
];
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
        let v = if exp10 < 0 {
            // digits × 10^-k in f64 (one rounding of an inexact reciprocal, one of the product:
            // within 4 half-ulps of f64), then rounded to f32. The true value lies more than
            // 2^29 / 5^k ≥ 55 half-ulps of f64 from every point halfway between two f32s (it is
            // digits / 10^k; those points are dyadic with 25 bits), so the f64 result rounds to
            // the f32 the decimal rounds to. A multiplication instead of a division.
            (digits as f64 * *INV_POW10_F64.get(exp10.unsigned_abs() as usize)?) as f32
        } else {
            digits as f32 * *POW10_F32.get(exp10 as usize)?
        };
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

/// A JSON number read in one pass: where it ends, and its digits (if at most 19 are
/// significant, else `None`: the standard parser takes it) with their power of ten.
struct Number {
    end: usize,
    quick: Option<(bool, u64, i32)>,
}

/// Reads the JSON number starting at `bytes[i]` (a `-` or a digit), checking its syntax: an
/// optional `-`, `0` or digits not starting with `0`, an optional fraction of at least one
/// digit, an optional exponent of at least one digit.
fn number(bytes: &[u8], mut i: usize) -> Result<Number, (usize, &'static str)> {
    let negative = bytes[i] == b'-';
    i += usize::from(negative);
    let mut digits: u64 = 0;
    // Digits so far, leading zeros included (past 19 the standard parser takes the number).
    let mut count = 0u32;
    let mut run = |i: &mut usize| {
        let from = *i;
        while let Some(d) = bytes
            .get(*i)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|&d| d <= 9)
        {
            digits = digits.wrapping_mul(10).wrapping_add(u64::from(d));
            *i += 1;
        }
        count += (*i - from) as u32;
        *i - from
    };
    let first = i;
    match run(&mut i) {
        0 => return Err((i, "invalid number")),
        n if n > 1 && bytes[first] == b'0' => return Err((first + 1, "invalid number")),
        _ => {}
    }
    let mut exp10: i32 = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        match run(&mut i) {
            0 => return Err((i, "invalid number")),
            n => exp10 = -(n.min(1 << 20) as i32),
        }
    }
    let mut short = true;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative_exp = bytes.get(i) == Some(&b'-');
        i += usize::from(matches!(bytes.get(i), Some(b'-' | b'+')));
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
        if i == from {
            return Err((i, "invalid number"));
        }
        // More than four exponent digits is never the quick path's.
        short = i - from <= 4;
        exp10 += if negative_exp { -e } else { e };
    }
    let quick = (short && count <= 19).then_some((negative, digits, exp10));
    Ok(Number { end: i, quick })
}

pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// What may come next in the data.
#[derive(Clone, Copy, PartialEq)]
enum Next {
    /// A value (at the start, after a comma).
    Value,
    /// A value or the end of an array (just after its `[`).
    ValueOrClose,
    /// A comma or the end of an array (after a value).
    CommaOrClose,
}

/// Reads the JSON value starting at `bytes[start]` (an input's `data`) as numbers, into a
/// buffer sized for `expected` values, keeping at most `limit`.
pub fn scan<T: Float>(bytes: &[u8], start: usize, expected: usize, limit: usize) -> Scan<T> {
    // Room for what the shape says, but never more than the body could hold (a value takes at
    // least two bytes with its comma) nor than the limit: a shape cannot make us allocate.
    let cap = expected
        .min(limit)
        .min(bytes.len().saturating_sub(start) / 2 + 1);
    let mut out: Vec<T> = Vec::with_capacity(cap);
    let mut depth = 0usize;
    let mut next = Next::Value;
    let mut i = start;
    loop {
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        let Some(&b) = bytes.get(i) else {
            return Scan::Malformed(i, "EOF while parsing a list");
        };
        if next == Next::CommaOrClose {
            match b {
                b',' => next = Next::Value,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Scan::Values(out, i + 1);
                    }
                }
                _ => return Scan::Malformed(i, "expected `,` or `]`"),
            }
            i += 1;
            continue;
        }
        match b {
            b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Scan::Malformed(i, "recursion limit exceeded");
                }
                next = Next::ValueOrClose;
                i += 1;
                continue;
            }
            b']' if next == Next::ValueOrClose => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Scan::Values(out, i);
                }
                next = Next::CommaOrClose;
                continue;
            }
            b'n' => {
                if !bytes[i..].starts_with(b"null") {
                    return Scan::Malformed(i, "expected value");
                }
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
                let n = match number(bytes, i) {
                    Ok(n) => n,
                    Err((at, what)) => return Scan::Malformed(at, what),
                };
                i = n.end;
                // The quick path's values are far inside the type's range (below 2^24 × 10^10
                // for f32): nothing to check, and nothing waits on the division.
                if let Some(x) = n.quick.and_then(|(neg, m, e)| T::exact(neg, m, e)) {
                    out.push(x);
                } else {
                    // The word is ASCII (checked above).
                    let word = std::str::from_utf8(&bytes[start..i]).unwrap_or_default();
                    match word.parse::<T>() {
                        // JSON has no literal for infinity: an infinite result is a finite
                        // number beyond the type's range.
                        Ok(x) if x.is_infinite() => return Scan::OutOfRange(word.to_string()),
                        Ok(x) => out.push(x),
                        Err(_) => return Scan::Malformed(start, "invalid number"),
                    }
                }
            }
            b'"' | b't' | b'f' | b'{' => return Scan::NotNumbers,
            _ => return Scan::Malformed(i, "expected value"),
        }
        if depth == 0 {
            return Scan::Values(out, i);
        }
        next = Next::CommaOrClose;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(text: &str) -> Scan<f32> {
        scan::<f32>(text.as_bytes(), 0, 8, usize::MAX)
    }

    fn values<T: std::fmt::Debug>(s: Scan<T>) -> Vec<T>
    where
        Scan<T>: std::fmt::Debug,
    {
        match s {
            Scan::Values(v, _) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers_and_null_flatten_in_order() {
        let got = values(f32s("[[1, -2.5e0 ,\n\t3E2],[null,0.1,-0]]"));
        assert_eq!(got.len(), 6);
        assert_eq!(&got[..3], &[1.0, -2.5, 300.0]);
        assert!(got[3].is_nan());
        assert_eq!(got[4], 0.1f32);
        assert!(got[5] == 0.0 && got[5].is_sign_negative());
        assert_eq!(scan::<f64>(b"[]", 0, 0, 10), Scan::Values(vec![], 2));
        assert_eq!(scan::<f64>(b"[[],[]]", 0, 0, 10), Scan::Values(vec![], 7));
        assert_eq!(
            scan::<f64>(b"[0.1]", 0, 1, 10),
            Scan::Values(vec![0.1f64], 5)
        );
        // A bare number is one value, as the general reader takes it.
        assert_eq!(scan::<f64>(b"5}", 0, 1, 10), Scan::Values(vec![5.0], 1));
    }

    #[test]
    fn the_pass_ends_where_the_data_ends() {
        let body = br#"{"data": [[1,2],[3]] , "datatype":"FP32"}"#;
        let at = 9;
        match scan::<f32>(body, at, 3, 9) {
            Scan::Values(v, end) => {
                assert_eq!(v, vec![1.0, 2.0, 3.0]);
                assert_eq!(&body[end..end + 2], b" ,");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_data_is_refused_where_it_goes_wrong() {
        for (text, at, what) in [
            ("[1,]", 3, "expected value"),
            ("[,1]", 1, "expected value"),
            ("[1 2]", 3, "expected `,` or `]`"),
            ("[1,2", 4, "EOF while parsing a list"),
            ("[01]", 2, "invalid number"),
            ("[-]", 2, "invalid number"),
            ("[1.]", 3, "invalid number"),
            ("[1e]", 3, "invalid number"),
            ("[1e+]", 4, "invalid number"),
            ("[.5]", 1, "expected value"),
            ("[nul]", 1, "expected value"),
            ("[1x]", 2, "expected `,` or `]`"),
            ("[1]]", 3, ""),
            ("]", 0, "expected value"),
            ("", 0, "EOF while parsing a list"),
        ] {
            match f32s(text) {
                Scan::Malformed(i, w) => assert_eq!((i, w), (at, what), "{text}"),
                // The extra `]` is the caller's to refuse: the data ended before it.
                Scan::Values(_, end) if what.is_empty() => assert_eq!(end, at, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let deep = "[".repeat(129) + &"]".repeat(129);
        assert_eq!(
            f32s(&deep),
            Scan::Malformed(128, "recursion limit exceeded")
        );
        let ok = "[".repeat(128) + "1" + &"]".repeat(128);
        assert_eq!(values(f32s(&ok)), vec![1.0]);
    }

    #[test]
    fn each_decimal_is_rounded_once_to_the_declared_type() {
        // 1 + 2^-24 + 2^-60 (truncated): rounding to f64 first lands on the f32 halfway point
        // 1 + 2^-24, which then rounds to even (1.0); rounded once it is above halfway.
        let text = "[1.000000059604644776258]";
        assert_eq!(values(f32s(text)), vec![1.0 + f32::EPSILON]);
        let twice = text[1..text.len() - 1].parse::<f64>().unwrap() as f32;
        assert_eq!(twice, 1.0, "the example must show double rounding");
    }

    /// What the standard library's correctly-rounded parser makes of `w`, as the pass reports
    /// it (bits, so that -0 and 0 differ).
    fn want<T: Float + Into<f64>>(w: &str) -> Result<u64, String> {
        match w.parse::<T>() {
            Ok(x) if x.is_infinite() => Err(format!("{:?}", Scan::<f32>::OutOfRange(w.into()))),
            Ok(x) => Ok(x.into().to_bits()),
            Err(_) => panic!("{w}"),
        }
    }

    /// What the pass makes of `w`, read near the end of the body (digits one by one) and with
    /// room after it (eight bytes at a time): both must agree.
    fn got<T: Float + Into<f64>>(w: &str) -> Result<u64, String> {
        let read = |text: String| match scan::<T>(text.as_bytes(), 0, 1, 9) {
            Scan::Values(v, _) => Ok(v[0].into().to_bits()),
            Scan::OutOfRange(x) => Err(format!("{:?}", Scan::<f32>::OutOfRange(x))),
            _ => panic!("{w}: neither values nor out of range"),
        };
        let tight = read(format!("[{w}]"));
        assert_eq!(tight, read(format!("[{w}]          ")), "{w}");
        assert_eq!(tight, read(format!("[[{w}],[1]]")), "{w}");
        tight
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
            "1e00001",
            "7.038e-45",
            "3.4028235e38",
            "3.4028236e38",
            "0.3",
            "2.2250738585072014e-308",
            "5e-324",
            "1.7976931348623157e308",
            "1e309",
            "100.5e-1",
            "0.000000000000000000001234",
        ];
        for w in words {
            assert_eq!(got::<f32>(w), want::<f32>(w), "{w}");
            assert_eq!(got::<f64>(w), want::<f64>(w), "{w}");
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
                .map(|k| char::from(b'0' + (next() % 10) as u8 + u8::from(k == 0 && len > 1)))
                .map(|c| if c > '9' { '9' } else { c })
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
            let w = if next() % 2 == 0 { format!("-{w}") } else { w };
            assert_eq!(got::<f32>(&w), want::<f32>(&w), "{w}");
            assert_eq!(got::<f64>(&w), want::<f64>(&w), "{w}");
        }
    }

    #[test]
    fn the_reciprocal_multiplication_rounds_as_the_decimal_does() {
        // Every digit count up to 2^24 against every negative power the quick path takes, on
        // 200,000 generated pairs and on the edges (2^24, runs of 9s, halfway-looking values).
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut pairs: Vec<(u64, u32)> = (0..200_000)
            .map(|_| (next() % ((1 << 24) + 1), 1 + (next() % 10) as u32))
            .collect();
        for k in 1..=10 {
            for m in [
                1, 5, 9_999_999, 16_777_215, 16_777_216, 8_388_609, 12_345_678, 9_765_625,
            ] {
                pairs.push((m, k));
            }
        }
        for (m, k) in pairs {
            let w = format!("{m}e-{k}");
            let want: f32 = w.parse().unwrap();
            let got = f32::exact(false, m, -(k as i32)).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{w}");
        }
    }

    #[test]
    fn what_is_not_a_number_is_left_to_the_general_reader() {
        for text in ["[1,\"a\"]", "[true]", "[false,1]", "[{\"a\":1}]", "\"x\""] {
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
        assert_eq!(values(f32s("[3.4028235e38,1e-50]")), vec![f32::MAX, 0.0]);
        assert_eq!(values(scan::<f64>(b"[1e39]", 0, 1, 9)), vec![1e39]);
        assert_eq!(
            scan::<f64>(b"[1e309]", 0, 1, 9),
            Scan::OutOfRange("1e309".into())
        );
    }

    #[test]
    fn the_limit_stops_at_the_first_value_past_it() {
        assert_eq!(
            values(scan::<f32>(b"[1,2,3]", 0, 3, 3)),
            vec![1.0, 2.0, 3.0]
        );
        assert_eq!(scan::<f32>(b"[1,2,3]", 0, 3, 2), Scan::OverLimit(5));
        assert_eq!(scan::<f32>(b"[1, null]", 0, 2, 1), Scan::OverLimit(4));
        assert_eq!(scan::<f32>(b"[7]", 0, 1, 0), Scan::OverLimit(1));
    }

    #[test]
    fn the_buffer_is_sized_by_the_body_not_by_the_shape_alone() {
        // Half the body's bytes past the start, plus one: what the values could at most be.
        let v = values(scan::<f32>(b"[1,2]", 0, usize::MAX, usize::MAX));
        assert_eq!(v.capacity(), 3);
        let v = values(scan::<f32>(
            b"[1,2,3,4,5,6,7,8,9]",
            0,
            usize::MAX,
            usize::MAX,
        ));
        assert_eq!(v.capacity(), 10);
        let v = values(scan::<f32>(
            b"xxxx[1,2,3,4,5,6,7,8,9]",
            4,
            usize::MAX,
            usize::MAX,
        ));
        assert_eq!(v.capacity(), 10);
        let v = values(scan::<f32>(b"[1,2,3,4]", 0, 4, usize::MAX));
        assert_eq!(v.capacity(), 4);
        let v = values(scan::<f32>(b"[1,2,3,4]", 0, 9, 4));
        assert_eq!(v.capacity(), 4);
    }

    #[test]
    fn a_number_gives_its_digits_and_power_of_ten_when_they_are_short() {
        let quick = |w: &str| number(w.as_bytes(), 0).unwrap().quick;
        assert_eq!(quick("17.99"), Some((false, 1799, -2)));
        assert_eq!(quick("-0.0012"), Some((true, 12, -4)));
        assert_eq!(quick("5e3"), Some((false, 5, 3)));
        assert_eq!(quick("2.5E-3"), Some((false, 25, -4)));
        assert_eq!(quick("1e+0012"), Some((false, 1, 12)));
        // Nineteen digits, leading zeros counted, are short; twenty are not.
        assert_eq!(
            quick("1234567890.123456789"),
            Some((false, 1_234_567_890_123_456_789, -9))
        );
        assert_eq!(quick("1234567890.1234567891"), None);
        assert_eq!(quick("0.000000000000000001"), Some((false, 1, -18)));
        assert_eq!(quick("0.0000000000000000001"), None);
        // Four exponent digits are short; five are not.
        assert_eq!(quick("1e1234"), Some((false, 1, 1234)));
        assert_eq!(quick("1e01234"), None);
        assert_eq!(number(b"12.5e-3,", 0).unwrap().end, 7);
    }

    #[test]
    fn the_quick_path_takes_what_is_exact_in_the_type() {
        // f64: digits up to 2^53 and powers of ten up to 22, either way.
        assert_eq!(
            f64::exact(false, 1 << 53, -22),
            Some((1u64 << 53) as f64 / 1e22)
        );
        assert_eq!(
            f64::exact(true, 1 << 53, 22),
            Some(-((1u64 << 53) as f64) * 1e22)
        );
        assert_eq!(f64::exact(false, (1 << 53) + 1, 0), None);
        assert_eq!(f64::exact(false, 7, 23), None);
        assert_eq!(f64::exact(false, 7, -23), None);
        assert_eq!(f64::exact(false, 1799, -2), Some(17.99));
        // f32: digits up to 2^24, negative powers to 10 (through f64), positive to 10.
        assert_eq!(f32::exact(false, 1 << 24, 10), Some(16_777_216e10));
        assert_eq!(f32::exact(false, (1 << 24) + 1, 0), None);
        assert_eq!(f32::exact(false, 7, 11), None);
        assert_eq!(f32::exact(false, 7, -11), None);
        assert_eq!(f32::exact(true, 1799, -2), Some(-17.99));
    }
}
