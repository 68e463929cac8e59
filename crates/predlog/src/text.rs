//! Tensors as the JSON text the sinks store, written directly (the writer threads' hot loop:
//! no intermediate `serde_json::Value`), and the row cut the request path makes.

use std::fmt::Write;

use ferroserve_core::{Tensor, TensorData};

pub use ferroserve_runtime::service::first_rows;

/// `[{"name", "datatype", "shape", "data"}]`: numbers as JSON numbers (an FP32 value as the
/// shortest text that reads back as the same f32), NaN and infinities as null, BYTES as text.
pub fn tensors_text(tensors: &[Tensor]) -> String {
    let cap = 64 * tensors.len() + tensors.iter().map(|t| t.data.len() * 8).sum::<usize>();
    let mut s = String::with_capacity(cap);
    s.push('[');
    for (i, t) in tensors.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(r#"{"name":"#);
        push_json_str(&mut s, &t.name);
        s.push_str(r#","datatype":""#);
        s.push_str(t.data.datatype().as_str());
        s.push_str(r#"","shape":["#);
        list(&mut s, t.shape.iter(), |s, &d| int(s, d));
        s.push_str(r#"],"data":["#);
        data(&mut s, &t.data);
        s.push_str("]}");
    }
    s.push(']');
    s
}

fn list<T>(s: &mut String, items: impl Iterator<Item = T>, mut one: impl FnMut(&mut String, T)) {
    for (j, x) in items.enumerate() {
        if j > 0 {
            s.push(',');
        }
        one(s, x);
    }
}

fn int(s: &mut String, x: impl itoa::Integer + Copy) {
    s.push_str(itoa::Buffer::new().format(x));
}

/// The shortest text that reads back as the same value (ryu), with a `.0` on whole numbers (so
/// that readers see a float: `4.0`, not `4`), or null for NaN and the infinities.
fn float<F: ryu::Float>(s: &mut String, x: F, finite: bool) {
    if finite {
        s.push_str(ryu::Buffer::new().format_finite(x));
    } else {
        s.push_str("null");
    }
}

fn data(s: &mut String, d: &TensorData) {
    match d {
        TensorData::Bool(v) => list(s, v.iter(), |s, b| {
            s.push_str(if *b { "true" } else { "false" })
        }),
        TensorData::Uint8(v) => list(s, v.iter(), |s, &x| int(s, x)),
        TensorData::Uint16(v) => list(s, v.iter(), |s, &x| int(s, x)),
        TensorData::Uint32(v) => list(s, v.iter(), |s, &x| int(s, x)),
        TensorData::Uint64(v) => list(s, v.iter(), |s, &x| int(s, x)),
        TensorData::Int8(v) => list(s, v.iter(), |s, &x| int(s, x)),
        TensorData::Int16(v) => list(s, v.iter(), |s, &x| int(s, x)),
        TensorData::Int32(v) => list(s, v.iter(), |s, &x| int(s, x)),
        TensorData::Int64(v) => list(s, v.iter(), |s, &x| int(s, x)),
        TensorData::Fp32(v) => list(s, v.iter(), |s, &x| float(s, x, x.is_finite())),
        TensorData::Fp64(v) => list(s, v.iter(), |s, &x| float(s, x, x.is_finite())),
        TensorData::Fp16(_) | TensorData::Bf16(_) => list(s, 0..d.len(), |s, j| {
            let x = d.get_f64(j).unwrap_or(f64::NAN);
            float(s, x, x.is_finite())
        }),
        TensorData::Bytes(v) => list(s, v.iter(), |s, b| {
            push_json_str(s, &String::from_utf8_lossy(b))
        }),
    }
}

pub(crate) fn push_json_str(s: &mut String, v: &str) {
    s.push('"');
    // Runs of characters that need no escape go in whole.
    let mut start = 0;
    for (i, b) in v.bytes().enumerate() {
        let esc = match b {
            b'"' => r#"\""#,
            b'\\' => r"\\",
            b'\n' => r"\n",
            b'\r' => r"\r",
            b'\t' => r"\t",
            0..=0x1f => "",
            _ => continue,
        };
        s.push_str(&v[start..i]);
        if esc.is_empty() {
            let _ = write!(s, "\\u{:04x}", b);
        } else {
            s.push_str(esc);
        }
        start = i + 1;
    }
    s.push_str(&v[start..]);
    s.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn the_text_is_json_with_the_values_and_rows_cut() {
        let t = vec![
            Tensor::new(
                "x",
                vec![3, 2],
                TensorData::Fp32(vec![0.1, 2.5, f32::NAN, 4.0, 5.0, 6.0]),
            ),
            Tensor::new(
                "s\"q",
                vec![3],
                TensorData::Bytes(vec![b"a\nb".to_vec(), b"\\".to_vec(), vec![0xff, 1]]),
            ),
            Tensor::new("b", vec![3], TensorData::Bool(vec![true, false, true])),
            Tensor::new("i", vec![3], TensorData::Int64(vec![-1, i64::MAX, 0])),
        ];
        let v: Value = serde_json::from_str(&tensors_text(&first_rows(&t, 2))).unwrap();
        assert_eq!(
            v,
            json!([
                {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [0.1, 2.5, null, 4.0]},
                {"name": "s\"q", "datatype": "BYTES", "shape": [2], "data": ["a\nb", "\\"]},
                {"name": "b", "datatype": "BOOL", "shape": [2], "data": [true, false]},
                {"name": "i", "datatype": "INT64", "shape": [2], "data": [-1, i64::MAX]}
            ])
        );
        // Every row when there are fewer than asked; text that is not UTF-8 is replaced.
        let v: Value = serde_json::from_str(&tensors_text(&first_rows(&t, 10))).unwrap();
        assert_eq!(v[1]["data"][2], json!("\u{fffd}\u{1}"));
        assert_eq!(v[0]["shape"], json!([3, 2]));
        assert_eq!(tensors_text(&[]), "[]");
    }
}
