//! One cell (a CSV field or a JSON value of a JSON Lines row) written as one element of a v2
//! JSON tensor of the input's datatype, or refused with the reason, before anything is sent.
//!
//! Numbers are copied as written when they are JSON numbers already, so the server parses the
//! same text the file holds (no detour through `f64` and back). Missing values (an empty cell,
//! `NA`, `N/A`, `NaN`, `null`, `None`, any case) become `null` for float inputs, what a v2 JSON
//! body uses for NaN; integer, boolean and BYTES inputs have no missing value.

use serde_json::value::RawValue;

/// How an input's datatype is written in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Float,
    Int,
    UInt,
    Bool,
    Bytes,
}

impl Kind {
    /// The kind of a v2 datatype name, or `None` for a name the protocol does not have.
    pub fn of(datatype: &str) -> Option<Kind> {
        Some(match datatype {
            "FP16" | "FP32" | "FP64" | "BF16" => Kind::Float,
            "INT8" | "INT16" | "INT32" | "INT64" => Kind::Int,
            "UINT8" | "UINT16" | "UINT32" | "UINT64" => Kind::UInt,
            "BOOL" => Kind::Bool,
            "BYTES" => Kind::Bytes,
            _ => return None,
        })
    }
}

fn is_missing(s: &str) -> bool {
    ["", "na", "n/a", "nan", "null", "none"]
        .iter()
        .any(|m| s.eq_ignore_ascii_case(m))
}

/// Whether `s` is a number in JSON's grammar (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
pub fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Appends the cell `text` (as read from CSV, or a JSON string's content) to `out` as an
/// element of a `kind` tensor.
pub fn text(kind: Kind, text: &str, out: &mut String) -> Result<(), String> {
    let t = text.trim();
    match kind {
        Kind::Float => {
            if is_missing(t) {
                out.push_str("null");
            } else if is_json_number(t) {
                out.push_str(t);
            } else {
                match t.parse::<f64>() {
                    Ok(x) if x.is_finite() => out.push_str(
                        &serde_json::Number::from_f64(x)
                            .map(|n| n.to_string())
                            .unwrap_or_default(),
                    ),
                    Ok(_) => {
                        return Err(format!(
                            "{text:?} is infinite: a v2 JSON body cannot carry it"
                        ))
                    }
                    Err(_) => return Err(format!("{text:?} is not a number")),
                }
            }
        }
        Kind::Int => match t.parse::<i64>() {
            Ok(x) => out.push_str(&x.to_string()),
            Err(_) if is_missing(t) => return Err("missing value for an integer input".into()),
            Err(_) => return Err(format!("{text:?} is not an integer")),
        },
        Kind::UInt => match t.parse::<u64>() {
            Ok(x) => out.push_str(&x.to_string()),
            Err(_) if is_missing(t) => return Err("missing value for an integer input".into()),
            Err(_) => return Err(format!("{text:?} is not an unsigned integer")),
        },
        Kind::Bool => {
            let v = match t.to_ascii_lowercase().as_str() {
                "true" | "1" => "true",
                "false" | "0" => "false",
                _ => return Err(format!("{text:?} is not a boolean (true, false, 1, 0)")),
            };
            out.push_str(v);
        }
        Kind::Bytes => {
            // Strings are taken as they are, spaces included.
            out.push_str(&serde_json::to_string(text).unwrap_or_default());
        }
    }
    Ok(())
}

/// Appends the JSON value `raw` (an element of a JSON Lines row) to `out` as an element of a
/// `kind` tensor.
pub fn json(kind: Kind, raw: &RawValue, out: &mut String) -> Result<(), String> {
    let r = raw.get().trim();
    match r.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(r).map_err(|e| e.to_string())?;
            text(kind, &s, out)
        }
        Some(b'n') if r == "null" => match kind {
            Kind::Float => {
                out.push_str("null");
                Ok(())
            }
            Kind::Bytes => Err("null for a BYTES input".into()),
            _ => Err("missing value (null) for an integer or boolean input".into()),
        },
        Some(b't' | b'f') if kind == Kind::Bool => {
            out.push_str(r);
            Ok(())
        }
        Some(b'-' | b'0'..=b'9') => text(kind, r, out),
        Some(b't' | b'f') if kind == Kind::Bytes => text(kind, r, out),
        _ => Err(format!("{r} is not a value a {kind:?} input takes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: Kind, s: &str) -> Result<String, String> {
        let mut out = String::new();
        text(kind, s, &mut out).map(|_| out)
    }

    fn j(kind: Kind, s: &str) -> Result<String, String> {
        let raw: Box<RawValue> = serde_json::from_str(s).unwrap();
        let mut out = String::new();
        json(kind, &raw, &mut out).map(|_| out)
    }

    #[test]
    fn json_numbers_are_recognised() {
        for ok in ["0", "-0", "5.1", "1e39", "-2.5E-3", "12", "0.5e+2"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "5.", ".5", "+1", "1e", "NaN", "inf", "1.2.3", "0x10", " 1",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn float_cells() {
        assert_eq!(t(Kind::Float, " 5.1 ").unwrap(), "5.1");
        assert_eq!(
            t(Kind::Float, "1.00000000000000000001").unwrap(),
            "1.00000000000000000001"
        );
        assert_eq!(t(Kind::Float, "+.5").unwrap(), "0.5");
        assert_eq!(t(Kind::Float, "5.").unwrap(), "5.0");
        for missing in ["", "NA", "nan", "NaN", "null", "None", "N/A"] {
            assert_eq!(t(Kind::Float, missing).unwrap(), "null", "{missing}");
        }
        assert!(t(Kind::Float, "abc").unwrap_err().contains("not a number"));
        assert!(t(Kind::Float, "inf").unwrap_err().contains("infinite"));
    }

    #[test]
    fn other_kinds() {
        assert_eq!(t(Kind::Int, "-42").unwrap(), "-42");
        assert!(t(Kind::Int, "4.5").is_err());
        assert!(t(Kind::Int, "").unwrap_err().contains("missing"));
        assert!(t(Kind::UInt, "-1").is_err());
        assert_eq!(t(Kind::Bool, "TRUE").unwrap(), "true");
        assert_eq!(t(Kind::Bool, "0").unwrap(), "false");
        assert_eq!(t(Kind::Bytes, "a \"b\"").unwrap(), r#""a \"b\"""#);
    }

    #[test]
    fn json_values() {
        assert_eq!(j(Kind::Float, "5.10").unwrap(), "5.10");
        assert_eq!(j(Kind::Float, "null").unwrap(), "null");
        assert_eq!(j(Kind::Float, r#""NaN""#).unwrap(), "null");
        assert_eq!(j(Kind::Float, r#""6.5""#).unwrap(), "6.5");
        assert!(j(Kind::Float, "true").is_err());
        assert!(j(Kind::Float, "[1]").is_err());
        assert!(j(Kind::Int, "null").is_err());
        assert_eq!(j(Kind::Int, "7").unwrap(), "7");
        assert_eq!(j(Kind::Bool, "true").unwrap(), "true");
        assert_eq!(j(Kind::Bytes, r#""x""#).unwrap(), r#""x""#);
        assert_eq!(j(Kind::Bytes, "12").unwrap(), r#""12""#);
    }
}
