//! A small Universal Binary JSON (UBJSON, draft 12) decoder producing a [`serde_json::Value`],
//! enough for XGBoost's `.ubj` models: every value marker (`Z N T F i U I l L d D H C S [ {`),
//! and the optimised containers with a count (`#`) and a common element type (`$`) that
//! XGBoost uses for its float and integer arrays.
//!
//! The decoder never trusts a length: every count is checked against the bytes that remain
//! before anything is allocated, nesting is bounded, and every failure is an error naming the
//! byte offset, never a panic.

use serde_json::{Map, Number, Value};

/// Deepest container nesting accepted (XGBoost models nest about six levels).
const MAX_DEPTH: usize = 128;

/// Why a UBJSON document could not be decoded, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbjsonError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for UbjsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UBJSON byte {}: {}", self.offset, self.message)
    }
}

/// Decodes one complete UBJSON document (trailing no-op markers are allowed, anything else
/// after the value is an error).
pub fn decode(bytes: &[u8]) -> Result<Value, UbjsonError> {
    let mut r = Reader { bytes, pos: 0 };
    let marker = r.next_marker()?;
    let value = r.value_of(marker, 0)?;
    while r.pos < bytes.len() {
        if bytes[r.pos] != b'N' {
            return r.err(format!(
                "{} trailing bytes after the document",
                bytes.len() - r.pos
            ));
        }
        r.pos += 1;
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, UbjsonError> {
        Err(UbjsonError {
            offset: self.pos,
            message: message.into(),
        })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], UbjsonError> {
        if n > self.remaining() {
            return self.err(format!(
                "truncated: needs {n} bytes, {} left",
                self.remaining()
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], UbjsonError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn byte(&mut self) -> Result<u8, UbjsonError> {
        Ok(self.array::<1>()?[0])
    }

    /// The next marker, skipping no-op (`N`) markers.
    fn next_marker(&mut self) -> Result<u8, UbjsonError> {
        loop {
            let m = self.byte()?;
            if m != b'N' {
                return Ok(m);
            }
        }
    }

    /// Reads an integer whose type marker is `marker`; `None` if the marker is not an integer.
    fn int_of(&mut self, marker: u8) -> Result<Option<i64>, UbjsonError> {
        Ok(Some(match marker {
            b'i' => i8::from_be_bytes(self.array()?) as i64,
            b'U' => u8::from_be_bytes(self.array()?) as i64,
            b'I' => i16::from_be_bytes(self.array()?) as i64,
            b'l' => i32::from_be_bytes(self.array()?) as i64,
            b'L' => i64::from_be_bytes(self.array()?),
            _ => return Ok(None),
        }))
    }

    /// A length or count: an integer value (with its marker), non-negative.
    fn length(&mut self) -> Result<usize, UbjsonError> {
        let start = self.pos;
        let marker = self.next_marker()?;
        match self.int_of(marker)? {
            Some(n) if n >= 0 => usize::try_from(n).or_else(|_| self.err("length too large")),
            Some(n) => {
                self.pos = start;
                self.err(format!("negative length {n}"))
            }
            None => {
                self.pos = start;
                self.err(format!(
                    "expected an integer length, found marker {}",
                    show(marker)
                ))
            }
        }
    }

    fn string_body(&mut self) -> Result<String, UbjsonError> {
        let n = self.length()?;
        let start = self.pos;
        let s = self.take(n)?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => {
                self.pos = start;
                self.err(format!("string is not UTF-8: {e}"))
            }
        }
    }

    /// Reads the body of a value whose marker has been read already.
    fn value_of(&mut self, marker: u8, depth: usize) -> Result<Value, UbjsonError> {
        if let Some(i) = self.int_of(marker)? {
            return Ok(Value::from(i));
        }
        match marker {
            b'Z' => Ok(Value::Null),
            b'T' => Ok(Value::Bool(true)),
            b'F' => Ok(Value::Bool(false)),
            b'd' => float(f32::from_be_bytes(self.array()?) as f64),
            b'D' => float(f64::from_be_bytes(self.array()?)),
            b'H' => {
                let start = self.pos;
                let s = self.string_body()?;
                match s.parse::<f64>() {
                    Ok(x)
                        if s.bytes()
                            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
                    {
                        if let Ok(i) = s.parse::<i64>() {
                            Ok(Value::from(i))
                        } else {
                            float(x)
                        }
                    }
                    _ => {
                        self.pos = start;
                        self.err(format!("bad high-precision number {s:?}"))
                    }
                }
            }
            b'C' => {
                let c = self.byte()?;
                if c.is_ascii() {
                    Ok(Value::String((c as char).to_string()))
                } else {
                    self.pos -= 1;
                    self.err("char value is not ASCII")
                }
            }
            b'S' => Ok(Value::String(self.string_body()?)),
            b'[' => self.container(false, depth + 1),
            b'{' => self.container(true, depth + 1),
            _ => {
                self.pos -= 1;
                self.err(format!("unknown value marker {}", show(marker)))
            }
        }
    }

    /// Reads an array (`is_object` false) or object after its opening marker.
    fn container(&mut self, is_object: bool, depth: usize) -> Result<Value, UbjsonError> {
        if depth > MAX_DEPTH {
            return self.err(format!("containers nested deeper than {MAX_DEPTH}"));
        }
        // Optional `$type` (which requires `#count`) and `#count`.
        let mut elem_type = None;
        let mut count = None;
        if self.bytes.get(self.pos) == Some(&b'$') {
            self.pos += 1;
            let t = self.byte()?;
            match t {
                b'N' | b'$' | b'#' | b']' | b'}' => {
                    self.pos -= 1;
                    return self.err(format!("invalid container element type {}", show(t)));
                }
                _ => elem_type = Some(t),
            }
            if self.bytes.get(self.pos) != Some(&b'#') {
                return self.err("typed container without a count");
            }
        }
        if self.bytes.get(self.pos) == Some(&b'#') {
            self.pos += 1;
            let n = self.length()?;
            // Every element takes at least one byte, except elements of a payload-free type;
            // either way no valid document has more elements than bytes left.
            let min_size = match elem_type {
                Some(b'i' | b'U' | b'C') => 1,
                Some(b'I') => 2,
                Some(b'l' | b'd') => 4,
                Some(b'L' | b'D') => 8,
                _ => 1,
            };
            let fits = match n.checked_mul(min_size + usize::from(is_object)) {
                Some(need) => need <= self.remaining(),
                None => false,
            };
            if !fits {
                return self.err(format!(
                    "container claims {n} elements but only {} bytes remain",
                    self.remaining()
                ));
            }
            count = Some(n);
        }
        let mut items = Vec::with_capacity(count.unwrap_or(0));
        let mut map = Map::new();
        let mut i = 0usize;
        loop {
            match count {
                Some(n) if i == n => break,
                Some(_) => {}
                None => {
                    let m = self.next_marker()?;
                    if m == if is_object { b'}' } else { b']' } {
                        break;
                    }
                    self.pos -= 1;
                }
            }
            let key = if is_object {
                Some(self.string_body()?)
            } else {
                None
            };
            let marker = match elem_type {
                Some(t) => t,
                None => self.next_marker()?,
            };
            let v = self.value_of(marker, depth)?;
            match key {
                Some(k) => {
                    map.insert(k, v);
                }
                None => items.push(v),
            }
            i += 1;
        }
        Ok(if is_object {
            Value::Object(map)
        } else {
            Value::Array(items)
        })
    }
}

/// A float as JSON. NaN and infinities, which JSON numbers cannot hold, become the strings
/// `"NaN"`, `"Infinity"` and `"-Infinity"`, the tokens XGBoost writes for them in JSON text.
fn float(x: f64) -> Result<Value, UbjsonError> {
    Ok(match Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None => Value::String(non_finite_name(x).to_owned()),
    })
}

/// The name XGBoost's JSON writer gives a non-finite float.
pub fn non_finite_name(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn show(marker: u8) -> String {
    if marker.is_ascii_graphic() {
        format!("'{}'", marker as char)
    } else {
        format!("0x{marker:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_scalars_and_containers() {
        let mut doc = vec![b'{'];
        doc.extend_from_slice(b"i\x01aSi\x02hi");
        doc.extend_from_slice(b"i\x01b[$d#i\x02");
        doc.extend_from_slice(&1.5f32.to_be_bytes());
        doc.extend_from_slice(&(-2.0f32).to_be_bytes());
        doc.extend_from_slice(b"i\x01c[#U\x03Ti\xffZ");
        doc.extend_from_slice(b"i\x01n[$d#i\x02");
        doc.extend_from_slice(&f32::NAN.to_be_bytes());
        doc.extend_from_slice(&f32::NEG_INFINITY.to_be_bytes());
        doc.extend_from_slice(b"i\x01d[l\x00\x00\x01\x00NI\x01\x00]");
        doc.extend_from_slice(b"i\x01eHi\x05-2.25");
        doc.extend_from_slice(b"i\x01fCx");
        doc.extend_from_slice(b"i\x01g{$L#i\x01i\x01z\x7f\xff\xff\xff\xff\xff\xff\xff");
        doc.push(b'}');
        let v = decode(&doc).unwrap();
        assert_eq!(
            v,
            json!({"a": "hi", "b": [1.5, -2.0], "c": [true, -1, null], "n": ["NaN", "-Infinity"], "d": [256, 256],
                   "e": -2.25, "f": "x", "g": {"z": i64::MAX}})
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "truncated"),
            (b"{i\x01a", "truncated"),
            (b"[$d#L\x00\x00\x00\x00\xff\xff\xff\xff", "claims"),
            (b"[$Z#l\x7f\xff\xff\xff", "claims"),
            (b"[#i\xfe", "negative length"),
            (b"[$d]", "without a count"),
            (b"Si\x02\xff\xfe", "UTF-8"),
            (b"Q", "unknown value marker"),
            (b"[i\x01]x", "trailing"),
            (b"SSi\x01a", "integer length"),
            (b"Hi\x03abc", "high-precision"),
        ];
        for (bytes, want) in cases {
            let e = decode(bytes).unwrap_err();
            assert!(e.to_string().contains(want), "{bytes:?}: {e}");
        }
        let deep = vec![b'['; 1000];
        assert!(decode(&deep).unwrap_err().message.contains("nested"));
    }
}
