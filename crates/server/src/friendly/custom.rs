//! Answers of models whose outputs are the answer as they are (`Task::Custom`: Python
//! predictors): every output the model returned, by name, each row in its own type (a row of a
//! `[n, k]` output is a list of k; a BYTES output holding JSON texts answers that JSON).
//!
//! One output: `list` answers its rows (`unwrap_single`: the one row), `object` answers
//! `{"<response_key>": rows}`, `records` one `{"<response_key>": row}` per row. Several outputs
//! (a DataFrame's columns): `list` and `records` answer one object per row keyed by output name
//! (pandas records), `object` one list per output.

use ferroserve_core::config::Layout;
use ferroserve_core::tensor::Param;
use ferroserve_core::{Tensor, TensorData};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

/// The parameter that marks a BYTES output holding one JSON text per row.
const CONTENT_TYPE: &str = "content_type";
const JSON: &str = "json";

/// What to answer.
pub struct CustomAnswer<'a> {
    pub outputs: &'a [Tensor],
    pub rows: usize,
    pub layout: Layout,
    pub key: &'a str,
    pub unwrap: bool,
}

impl CustomAnswer<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 16 * self.rows);
        // Writing to memory cannot fail, and every value here serializes.
        let _ = serde_json::to_writer(&mut out, self);
        out
    }
}

/// Row `r` of one output.
struct Row<'a> {
    t: &'a Tensor,
    r: usize,
}

/// Elements `[start, start + shape.product())` of a tensor, nested by `shape`.
struct Nested<'a> {
    t: &'a Tensor,
    start: usize,
    shape: &'a [i64],
}

fn is_json(t: &Tensor) -> bool {
    t.parameters.get(CONTENT_TYPE).and_then(Param::as_str) == Some(JSON)
}

fn element<S: Serializer>(t: &Tensor, i: usize, s: S) -> Result<S::Ok, S::Error> {
    match &t.data {
        TensorData::Bool(v) => s.serialize_bool(v[i]),
        TensorData::Uint8(v) => s.serialize_u8(v[i]),
        TensorData::Uint16(v) => s.serialize_u16(v[i]),
        TensorData::Uint32(v) => s.serialize_u32(v[i]),
        TensorData::Uint64(v) => s.serialize_u64(v[i]),
        TensorData::Int8(v) => s.serialize_i8(v[i]),
        TensorData::Int16(v) => s.serialize_i16(v[i]),
        TensorData::Int32(v) => s.serialize_i32(v[i]),
        TensorData::Int64(v) => s.serialize_i64(v[i]),
        TensorData::Fp32(v) => s.serialize_f32(v[i]),
        TensorData::Fp64(v) => s.serialize_f64(v[i]),
        TensorData::Bytes(v) if is_json(t) => {
            match serde_json::from_slice::<serde_json::Value>(&v[i]) {
                Ok(j) => j.serialize(s),
                Err(_) => s.serialize_str(&String::from_utf8_lossy(&v[i])),
            }
        }
        TensorData::Bytes(v) => s.serialize_str(&String::from_utf8_lossy(&v[i])),
        other => s.serialize_f64(other.get_f64(i).unwrap_or(f64::NAN)),
    }
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some((&d, rest)) = self.shape.split_first() else {
            return element(self.t, self.start, s);
        };
        let inner: usize = rest.iter().map(|&x| x.max(0) as usize).product();
        let mut q = s.serialize_seq(Some(d.max(0) as usize))?;
        for i in 0..d.max(0) as usize {
            q.serialize_element(&Nested {
                t: self.t,
                start: self.start + i * inner,
                shape: rest,
            })?;
        }
        q.end()
    }
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rest = self.t.shape.get(1..).unwrap_or(&[]);
        let inner: usize = rest.iter().map(|&x| x.max(0) as usize).product();
        Nested {
            t: self.t,
            start: self.r * inner,
            shape: rest,
        }
        .serialize(s)
    }
}

/// Every row of one output.
struct Rows<'a> {
    t: &'a Tensor,
    rows: usize,
}

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.rows))?;
        for r in 0..self.rows {
            q.serialize_element(&Row { t: self.t, r })?;
        }
        q.end()
    }
}

/// Row `r` of every output, keyed by name.
struct Record<'a> {
    outputs: &'a [Tensor],
    r: usize,
}

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.outputs.len()))?;
        for t in self.outputs {
            m.serialize_entry(&t.name, &Row { t, r: self.r })?;
        }
        m.end()
    }
}

/// `{"<key>": row}`.
struct Keyed<'a, T: Serialize>(&'a str, T);

impl<T: Serialize> Serialize for Keyed<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, &self.1)?;
        m.end()
    }
}

impl Serialize for CustomAnswer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rows = self.rows;
        match (self.outputs, self.layout, self.unwrap) {
            ([one], Layout::List, true) => Row { t: one, r: 0 }.serialize(s),
            ([one], Layout::List, false) => Rows { t: one, rows }.serialize(s),
            ([one], Layout::Object, true) => Keyed(self.key, Row { t: one, r: 0 }).serialize(s),
            ([one], Layout::Object, false) => Keyed(self.key, Rows { t: one, rows }).serialize(s),
            ([one], Layout::Records, true) => Keyed(self.key, Row { t: one, r: 0 }).serialize(s),
            ([one], Layout::Records, false) => {
                let mut q = s.serialize_seq(Some(rows))?;
                for r in 0..rows {
                    q.serialize_element(&Keyed(self.key, Row { t: one, r }))?;
                }
                q.end()
            }
            (all, Layout::Object, unwrap) => {
                let mut m = s.serialize_map(Some(all.len()))?;
                for t in all {
                    if unwrap {
                        m.serialize_entry(&t.name, &Row { t, r: 0 })?;
                    } else {
                        m.serialize_entry(&t.name, &Rows { t, rows })?;
                    }
                }
                m.end()
            }
            (all, Layout::List | Layout::Records, true) => {
                Record { outputs: all, r: 0 }.serialize(s)
            }
            (all, Layout::List | Layout::Records, false) => {
                let mut q = s.serialize_seq(Some(rows))?;
                for r in 0..rows {
                    q.serialize_element(&Record { outputs: all, r })?;
                }
                q.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_text(t: &str) -> Tensor {
        let mut j = Tensor::new(
            "output",
            vec![1],
            TensorData::Bytes(vec![t.as_bytes().to_vec()]),
        );
        j.parameters.insert(CONTENT_TYPE, Param::Str(JSON.into()));
        j
    }

    fn answer(outputs: &[Tensor], rows: usize, layout: Layout, unwrap: bool) -> String {
        String::from_utf8(
            CustomAnswer {
                outputs,
                rows,
                layout,
                key: "predictions",
                unwrap,
            }
            .to_json(),
        )
        .unwrap()
    }

    #[test]
    fn one_output_answers_its_rows() {
        let adder = [Tensor::new(
            "output",
            vec![2, 1],
            TensorData::Fp64(vec![42.0, 43.5]),
        )];
        assert_eq!(
            answer(&adder[..], 2, Layout::List, false),
            "[[42.0],[43.5]]"
        );
        let one = [Tensor::new(
            "output",
            vec![1, 1],
            TensorData::Fp64(vec![42.0]),
        )];
        assert_eq!(answer(&one, 1, Layout::List, true), "[42.0]");
        assert_eq!(
            answer(&one, 1, Layout::Object, false),
            r#"{"predictions":[[42.0]]}"#
        );
        assert_eq!(
            answer(&one, 1, Layout::Records, false),
            r#"[{"predictions":[42.0]}]"#
        );
        let nan = [Tensor::new("v", vec![1], TensorData::Fp64(vec![f64::NAN]))];
        assert_eq!(answer(&nan, 1, Layout::List, false), "[null]");
    }

    #[test]
    fn json_rows_answer_as_json() {
        let j = [json_text("[[0.0], 3, [[0.0], [3.0], [5.0]]]")];
        assert_eq!(
            answer(&j, 1, Layout::List, true),
            "[[0.0],3,[[0.0],[3.0],[5.0]]]"
        );
    }

    #[test]
    fn several_outputs_answer_records() {
        let df = [
            Tensor::new("base", vec![2], TensorData::Int64(vec![1, 3])),
            Tensor::new("multiplier", vec![2], TensorData::Int64(vec![2, 4])),
            Tensor::new("prediction", vec![2], TensorData::Int64(vec![4, 14])),
        ];
        assert_eq!(
            answer(&df, 2, Layout::Records, false),
            r#"[{"base":1,"multiplier":2,"prediction":4},{"base":3,"multiplier":4,"prediction":14}]"#
        );
        assert_eq!(
            answer(&df, 2, Layout::Object, false),
            r#"{"base":[1,3],"multiplier":[2,4],"prediction":[4,14]}"#
        );
        assert_eq!(
            answer(&df[..2], 2, Layout::List, true),
            r#"{"base":1,"multiplier":2}"#
        );
        let flags = [Tensor::new(
            "ok",
            vec![1, 2],
            TensorData::Bool(vec![true, false]),
        )];
        assert_eq!(answer(&flags, 1, Layout::List, true), "[true,false]");
    }
}
