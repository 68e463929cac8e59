//! Ray Serve's NdArray `{"array": [...], "shape": [...], "dtype": "..."}`: nested lists of
//! numbers, flattened as they are read with the length met at each depth, then checked
//! (regular, not ragged), reshaped by `shape` when given (one dimension may be -1) and taken as
//! one row `[n]` or rows `[rows, n]`.

use std::fmt;

use ferroserve_core::{ErrorDetail, Problem};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::json::{skip_map, Cell, Json};
use super::sink::{quoted, Sink, MAX_DETAILS};

/// An array being read.
#[derive(Default)]
pub(super) struct Ray {
    values: Vec<f64>,
    /// Length seen at each depth (the first time), and whether lengths disagreed.
    dims: Vec<Option<usize>>,
    leaf_depth: Option<usize>,
    ragged: bool,
    /// Non-numbers: (path, what came).
    bad: Vec<(Vec<usize>, String)>,
    has_array: bool,
    shape: Option<Vec<i64>>,
    dtype: Option<String>,
}

/// numpy data type names Ray's `dtype` may carry (the values are converted to the model's
/// input type whatever it says).
const DTYPES: [&str; 24] = [
    "float16", "float32", "float64", "float", "double", "single", "half", "float_", "f2", "f4",
    "f8", "int8", "int16", "int32", "int64", "int", "int_", "uint8", "uint16", "uint32", "uint64",
    "uint", "i4", "i8",
];

fn dtype_ok(d: &str) -> bool {
    let d = d.trim_start_matches(['<', '>', '=', '|']);
    DTYPES.contains(&d)
}

impl Ray {
    /// Reads the value of one key of the array object.
    pub(super) fn read_key<'de, A: MapAccess<'de>>(
        &mut self,
        key: String,
        map: &mut A,
        sink: &mut Sink<'_>,
    ) -> Result<(), A::Error> {
        match key.as_str() {
            "array" => {
                self.has_array = true;
                map.next_value_seed(NdSeed {
                    ray: self,
                    depth: 0,
                    path: &mut Vec::new(),
                })?;
            }
            "shape" => self.shape = Some(map.next_value()?),
            "dtype" => self.dtype = Some(map.next_value()?),
            _ => {
                map.next_value::<IgnoredAny>()?;
                let d = ErrorDetail::new(
                    Problem::BadShape,
                    "only the keys \"array\", \"shape\" and \"dtype\"",
                )
                .field(key);
                sink.error(d);
            }
        }
        Ok(())
    }

    /// Turns the array into rows; true when it was one row on its own (shape `[n]`).
    pub(super) fn finish(self, r: &mut Json<'_>) -> bool {
        if !self.has_array {
            let e = r.top_expected();
            r.shape_error(None, e, "no \"array\"");
            return false;
        }
        if let Some(d) = &self.dtype {
            if !dtype_ok(d) {
                let e = ErrorDetail::new(
                    Problem::BadValue,
                    "a numeric numpy dtype (float32, float64, int64, ...)",
                )
                .field("dtype")
                .got(quoted(d));
                r.sink.error(e);
            }
        }
        let n = r.n();
        let natural: Vec<usize> = match self.leaf_depth {
            Some(d) => self.dims.iter().take(d).map(|x| x.unwrap_or(0)).collect(),
            None => Vec::new(),
        };
        if self.ragged {
            r.shape_error(
                None,
                "a regular (not ragged) nested array",
                "arrays of different lengths",
            );
            return false;
        }
        let len = self.values.len();
        let shape: Vec<usize> = match &self.shape {
            None => natural,
            Some(s) => {
                let unknown = s.iter().filter(|&&d| d == -1).count();
                // Checked: a client may send any dimensions.
                let known = s.iter().filter(|&&d| d != -1).try_fold(1u64, |acc, &d| {
                    u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
                });
                let known = match known {
                    Some(k) if unknown <= 1 && (unknown == 0 || k > 0) => k,
                    _ => {
                        let d = ErrorDetail::new(
                            Problem::BadValue,
                            "dimensions ≥ 0 (one may be -1) whose product holds the values",
                        )
                        .field("shape")
                        .got(format!("{s:?}"));
                        r.sink.error(d);
                        return false;
                    }
                };
                let fill = if unknown == 1 {
                    (len as u64 / known) as usize
                } else {
                    0
                };
                s.iter()
                    .map(|&d| if d == -1 { fill } else { d as usize })
                    .collect()
            }
        };
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .unwrap_or(usize::MAX);
        if count != len || shape.is_empty() {
            let d = ErrorDetail::new(
                Problem::BadShape,
                format!("an array whose shape holds its {len} values"),
            )
            .field("shape")
            .got(format!("{shape:?}"));
            r.sink.error(d);
            return false;
        }
        let (rows, single) = match shape.as_slice() {
            [c] if *c == n => (1, true),
            [rows, c] if *c == n => (*rows, false),
            _ => {
                let d = ErrorDetail::new(
                    Problem::WrongFeatureCount,
                    format!("shape [{n}] or [rows, {n}] ({})", r.sink.names_hint()),
                )
                .field("array")
                .got(format!("{shape:?}"));
                r.sink.error(d);
                return false;
            }
        };
        let sink = &mut r.sink;
        for (path, got) in self.bad {
            let (row, col) = match path.as_slice() {
                [c] => (0, *c),
                [r, c] => (*r, *c),
                _ => (0, 0),
            };
            let d = ErrorDetail::new(Problem::NotANumber, "a number (or null)")
                .row(row)
                .column(col)
                .field(sink.name(col.min(n.saturating_sub(1))))
                .got(got);
            sink.error(d);
        }
        let mut values = self.values.into_iter();
        for row in 0..rows {
            let at = sink.begin_row();
            for c in 0..n {
                let x = values.next().unwrap_or(f64::NAN);
                if let Err(d) = sink.put(at, c, x) {
                    let d = d.row(row).column(c).field(sink.name(c));
                    sink.error(d);
                }
            }
        }
        single
    }
}

/// A Ray `array`: nested lists of numbers, flattened, with the length at each depth.
struct NdSeed<'r, 'p> {
    ray: &'r mut Ray,
    depth: usize,
    path: &'p mut Vec<usize>,
}

impl<'de> DeserializeSeed<'de> for NdSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl NdSeed<'_, '_> {
    fn leaf(self, c: Cell) {
        match self.ray.leaf_depth {
            None => self.ray.leaf_depth = Some(self.depth),
            Some(d) if d != self.depth => self.ray.ragged = true,
            Some(_) => {}
        }
        match c {
            Cell::Num(x) => self.ray.values.push(x),
            Cell::Bad(got) => {
                self.ray.values.push(f64::NAN);
                if self.ray.bad.len() < MAX_DETAILS {
                    self.ray.bad.push((self.path.clone(), got));
                }
            }
        }
    }
}

impl<'de> Visitor<'de> for NdSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("nested arrays of numbers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut len = 0;
        loop {
            self.path.push(len);
            let more = seq.next_element_seed(NdSeed {
                ray: &mut *self.ray,
                depth: self.depth + 1,
                path: &mut *self.path,
            })?;
            self.path.pop();
            if more.is_none() {
                break;
            }
            len += 1;
        }
        if self.ray.dims.len() <= self.depth {
            self.ray.dims.resize(self.depth + 1, None);
        }
        match self.ray.dims[self.depth] {
            None => self.ray.dims[self.depth] = Some(len),
            Some(l) if l != len => self.ray.ragged = true,
            Some(_) => {}
        }
        if len == 0 {
            // An empty list is a leaf level of its own.
            match self.ray.leaf_depth {
                None => self.ray.leaf_depth = Some(self.depth + 1),
                Some(d) if d != self.depth + 1 => self.ray.ragged = true,
                Some(_) => {}
            }
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        skip_map(&mut map)?;
        self.leaf(Cell::Bad("an object".into()));
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.leaf(Cell::Num(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(Cell::Num(v as f64));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.leaf(Cell::Num(v as f64));
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf(Cell::Num(f64::NAN));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.leaf(Cell::Bad(quoted(v)));
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.leaf(Cell::Bad(v.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{json, problems};
    use super::dtype_ok;
    use serde_json::json;

    #[test]
    fn any_shape_is_answered_without_panicking() {
        for shape in [
            json!([1339906351231789u64, 2286, 69661626362832208u64, 180]),
            json!([-506461, -82, -7378796]),
            json!([-1, 0]),
            json!([-1, -1]),
            json!([i64::MAX, i64::MAX]),
            json!([0]),
            json!([]),
        ] {
            let e = json(&json!({"array": [1, 2, 3], "shape": shape}), None).unwrap_err();
            assert!(!e.details.is_empty(), "{shape}");
        }
    }

    #[test]
    fn dtypes_are_numpy_numeric_names() {
        for d in ["float32", "<f8", "|i4", "=int64", "uint8"] {
            assert!(dtype_ok(d), "{d}");
        }
        for d in ["str", "object", "<U5", "bool", ""] {
            assert!(!dtype_ok(d), "{d}");
        }
        let e = json(&json!({"array": [1, 2, 3], "dtype": "object"}), None).unwrap_err();
        assert_eq!(problems(&e), ["bad_value"]);
    }
}
