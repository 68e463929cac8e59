//! From a model's v2 metadata (`GET /v2/models/{m}`) and the input file's columns to a
//! [`Mapper`]: which cells of a row become which elements of which input tensor.
//!
//! One input of shape `[-1, F]` (or `[F]`, or `[-1]` with F = 1) takes each row's F values in
//! column order ("wide"); several inputs of shape `[-1]` or `[-1, 1]` take one column each,
//! matched by name ("columns"). Anything else is refused before a request is sent.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::encode::{self, Kind};
use super::input::RawRow;

/// The parts of the v2 model metadata the runner reads.
#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub inputs: Vec<TensorMeta>,
    #[serde(default)]
    pub outputs: Vec<TensorMeta>,
}

#[derive(Debug, Deserialize)]
pub struct TensorMeta {
    pub name: String,
    pub datatype: String,
    #[serde(default)]
    pub shape: Vec<i64>,
}

/// One input tensor as it is sent.
#[derive(Debug)]
pub struct Input {
    pub name: String,
    pub datatype: String,
    pub kind: Kind,
    /// Elements per row (F), once known.
    pub per_row: usize,
    /// Whether the shape sent is `[n, F]` (else `[n]`).
    pub rank2: bool,
}

/// The input file's columns, from a CSV header or the first JSON Lines row.
#[derive(Debug, Clone)]
pub enum Columns {
    Named(Vec<String>),
    Positional(usize),
}

/// Turns rows into tensor elements.
#[derive(Debug)]
pub struct Mapper {
    pub inputs: Vec<Input>,
    wide: bool,
    /// In value order: the column names of a wide input, or the inputs' names.
    names: Option<Vec<String>>,
    /// CSV: the field index of each value, in value order.
    csv_index: Vec<usize>,
    /// CSV: the header, to show a failed row as an object.
    pub header: Vec<String>,
}

fn shown(t: &TensorMeta) -> String {
    format!("{} {} {:?}", t.name, t.datatype, t.shape)
}

impl Mapper {
    pub fn new(meta: &Metadata, cols: &Columns) -> Result<Mapper, String> {
        let model = &meta.name;
        if meta.inputs.is_empty() {
            return Err(format!(
                "the metadata of model {model} lists no inputs: cannot tell how to send rows"
            ));
        }
        let mut inputs = Vec::new();
        for t in &meta.inputs {
            let kind = Kind::of(&t.datatype).ok_or_else(|| {
                format!(
                    "input {}: datatype {:?} is not a v2 datatype",
                    t.name, t.datatype
                )
            })?;
            inputs.push(Input {
                name: t.name.clone(),
                datatype: t.datatype.clone(),
                kind,
                per_row: 1,
                rank2: false,
            });
        }
        let header = match cols {
            Columns::Named(n) => n.clone(),
            Columns::Positional(_) => Vec::new(),
        };
        let ncols = match cols {
            Columns::Named(n) => n.len(),
            Columns::Positional(n) => *n,
        };
        if meta.inputs.len() == 1 {
            let t = &meta.inputs[0];
            let (f, rank2) = match t.shape.as_slice() {
                [-1, f] if *f == -1 || *f > 0 => (*f, true),
                [f] if *f > 0 => (*f, true),
                [-1] => (1, false),
                _ => {
                    return Err(format!(
                        "model {model}: input {} has a shape this runner cannot fill from rows (it takes [-1, F], [F] or [-1])",
                        shown(t)
                    ))
                }
            };
            let f = if f == -1 { ncols as i64 } else { f };
            if ncols as i64 != f {
                let what = match cols {
                    Columns::Named(n) => format!("{} columns ({})", n.len(), n.join(", ")),
                    Columns::Positional(n) => format!("{n} values in its first row"),
                };
                return Err(format!(
                    "the input has {what}, but model {model}'s input {} takes {f} values per row",
                    shown(t)
                ));
            }
            inputs[0].per_row = f as usize;
            inputs[0].rank2 = rank2;
            let names = match cols {
                Columns::Named(n) => Some(n.clone()),
                Columns::Positional(_) => None,
            };
            return Ok(Mapper {
                inputs,
                wide: true,
                names,
                csv_index: (0..f as usize).collect(),
                header,
            });
        }
        for (t, i) in meta.inputs.iter().zip(&mut inputs) {
            match t.shape.as_slice() {
                [-1] => {}
                [-1, 1] => i.rank2 = true,
                _ => {
                    return Err(format!(
                        "model {model} has {} inputs; with several inputs each must be of shape [-1] or [-1, 1] (one column each), but {} is not",
                        meta.inputs.len(),
                        shown(t)
                    ))
                }
            }
        }
        let input_names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
        let csv_index = match cols {
            Columns::Named(n) => {
                let missing: Vec<&str> = input_names
                    .iter()
                    .filter(|i| !n.contains(i))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "model {model} has inputs {}, matched to columns by name, but the input has no column {} (its columns: {})",
                        input_names.join(", "),
                        missing.join(", "),
                        n.join(", ")
                    ));
                }
                input_names
                    .iter()
                    .map(|i| n.iter().position(|c| c == i).unwrap_or_default())
                    .collect()
            }
            Columns::Positional(n) => {
                if *n != inputs.len() {
                    return Err(format!(
                        "model {model} has {} inputs ({}), but the first row has {n} values",
                        inputs.len(),
                        input_names.join(", ")
                    ));
                }
                (0..*n).collect()
            }
        };
        Ok(Mapper {
            inputs,
            wide: false,
            names: Some(input_names),
            csv_index,
            header,
        })
    }

    /// The mapper of a file with no rows: takes nothing.
    pub fn empty() -> Mapper {
        Mapper {
            inputs: Vec::new(),
            wide: false,
            names: None,
            csv_index: Vec::new(),
            header: Vec::new(),
        }
    }

    /// Columns of the input that no input takes.
    pub fn ignored(&self) -> Vec<&str> {
        match (&self.names, self.wide) {
            (Some(n), false) => self
                .header
                .iter()
                .filter(|c| !n.contains(c))
                .map(String::as_str)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Appends one row's elements to `bufs` (one buffer per input, elements separated by
    /// commas), or says why the row cannot be sent (then `bufs` are as they were).
    pub fn encode(&self, row: &RawRow, bufs: &mut [String]) -> Result<(), String> {
        let marks: Vec<usize> = bufs.iter().map(String::len).collect();
        let r = self.encode_inner(row, bufs);
        if r.is_err() {
            for (b, m) in bufs.iter_mut().zip(marks) {
                b.truncate(m);
            }
        }
        r
    }

    fn target(&self, value: usize) -> usize {
        if self.wide {
            0
        } else {
            value
        }
    }

    fn sep(buf: &mut String) {
        if !buf.is_empty() {
            buf.push(',');
        }
    }

    fn encode_inner(&self, row: &RawRow, bufs: &mut [String]) -> Result<(), String> {
        let nvalues = if self.wide {
            self.inputs[0].per_row
        } else {
            self.inputs.len()
        };
        let label = |v: usize| match &self.names {
            Some(n) => format!("column {}", n[v]),
            None => format!("value {v}"),
        };
        match row {
            RawRow::Csv(rec) => {
                if rec.len() != self.header.len() {
                    return Err(format!(
                        "the row has {} fields, the header {}",
                        rec.len(),
                        self.header.len()
                    ));
                }
                for v in 0..nvalues {
                    let t = self.target(v);
                    let cell = rec.get(self.csv_index[v]).unwrap_or_default();
                    Self::sep(&mut bufs[t]);
                    encode::text(self.inputs[t].kind, cell, &mut bufs[t])
                        .map_err(|e| format!("{}: {e}", label(v)))?;
                }
            }
            RawRow::Array(vals, _) => {
                if vals.len() != nvalues {
                    return Err(format!(
                        "the row has {} values, the model takes {nvalues}",
                        vals.len()
                    ));
                }
                for (v, raw) in vals.iter().enumerate() {
                    let t = self.target(v);
                    Self::sep(&mut bufs[t]);
                    encode::json(self.inputs[t].kind, raw, &mut bufs[t])
                        .map_err(|e| format!("{}: {e}", label(v)))?;
                }
            }
            RawRow::Object(fields, _) => {
                let Some(names) = &self.names else {
                    return Err(
                        "an object row in a file whose first row is an array: no column names to match"
                            .into(),
                    );
                };
                for (v, name) in names.iter().enumerate() {
                    let raw: &RawValue = match fields.get(v) {
                        Some((k, r)) if k == name => r,
                        _ => fields
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, r)| &**r)
                            .ok_or_else(|| format!("the row has no key {name:?}"))?,
                    };
                    let t = self.target(v);
                    Self::sep(&mut bufs[t]);
                    encode::json(self.inputs[t].kind, raw, &mut bufs[t])
                        .map_err(|e| format!("{}: {e}", label(v)))?;
                }
            }
            RawRow::Bad { error, .. } => return Err(error.clone()),
            RawRow::Skipped => return Err("a skipped row is not sent".into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(inputs: &[(&str, &str, &[i64])]) -> Metadata {
        Metadata {
            name: "m".into(),
            inputs: inputs
                .iter()
                .map(|(n, d, s)| TensorMeta {
                    name: n.to_string(),
                    datatype: d.to_string(),
                    shape: s.to_vec(),
                })
                .collect(),
            outputs: vec![],
        }
    }

    fn named(n: &[&str]) -> Columns {
        Columns::Named(n.iter().map(|s| s.to_string()).collect())
    }

    fn csv(fields: &[&str]) -> RawRow {
        RawRow::Csv(csv::StringRecord::from(fields.to_vec()))
    }

    #[test]
    fn one_wide_input_takes_the_columns_in_order() {
        let m = Mapper::new(
            &meta(&[("input", "FP32", &[-1, 3])]),
            &named(&["a", "b", "c"]),
        )
        .unwrap();
        let mut bufs = vec![String::new()];
        m.encode(&csv(&["1", "", "2.5"]), &mut bufs).unwrap();
        m.encode(&csv(&["4", "5", "6"]), &mut bufs).unwrap();
        let e = m.encode(&csv(&["4", "x", "6"]), &mut bufs).unwrap_err();
        assert!(e.contains("column b") && e.contains("not a number"), "{e}");
        assert_eq!(bufs[0], "1,null,2.5,4,5,6");
        let e = Mapper::new(
            &meta(&[("input", "FP32", &[-1, 4])]),
            &named(&["a", "b", "c"]),
        )
        .unwrap_err();
        assert!(
            e.contains("3 columns (a, b, c)") && e.contains("takes 4 values"),
            "{e}"
        );
    }

    #[test]
    fn several_inputs_are_matched_by_name() {
        let md = meta(&[("y", "INT64", &[-1]), ("x", "BYTES", &[-1, 1])]);
        let m = Mapper::new(&md, &named(&["x", "extra", "y"])).unwrap();
        assert_eq!(m.ignored(), vec!["extra"]);
        let mut bufs = vec![String::new(), String::new()];
        m.encode(&csv(&["hi", "zz", "3"]), &mut bufs).unwrap();
        assert_eq!(bufs, vec!["3".to_string(), "\"hi\"".to_string()]);
        let e = Mapper::new(&md, &named(&["x"])).unwrap_err();
        assert!(e.contains("no column y"), "{e}");
        let obj: Vec<(String, Box<RawValue>)> = vec![
            ("x".into(), serde_json::from_str("\"a\"").unwrap()),
            ("y".into(), serde_json::from_str("9").unwrap()),
        ];
        m.encode(&RawRow::Object(obj, String::new()), &mut bufs)
            .unwrap();
        assert_eq!(bufs, vec!["3,9".to_string(), "\"hi\",\"a\"".to_string()]);
        let e = Mapper::new(
            &meta(&[("a", "FP32", &[-1, 2]), ("b", "FP32", &[-1])]),
            &named(&["a", "b"]),
        )
        .unwrap_err();
        assert!(e.contains("[-1, 2]"), "{e}");
    }
}
