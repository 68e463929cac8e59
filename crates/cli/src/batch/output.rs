//! A v2 infer answer split back into rows, and the rows written: JSON Lines
//! (`{"row": i, "<output>": value or list, ...}`) or CSV (`row`, then one column per output
//! element: `label`, `probabilities_0`, `probabilities_1`, ...), and failed rows as
//! `{"row": i, "error": "...", "input": <the row as read>}`.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use serde::Deserialize;
use serde_json::Value;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    outputs: Vec<OutTensor>,
}

#[derive(Deserialize)]
struct OutTensor {
    name: String,
    #[serde(default)]
    shape: Vec<i64>,
    data: Value,
}

/// One output of a chunk's answer, flat, with its elements per row.
pub struct Output {
    pub name: String,
    /// A list per row (the tensor has more than one dimension), else one value.
    pub list: bool,
    pub per_row: usize,
    data: Vec<Value>,
}

fn flatten(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a) => a.into_iter().for_each(|x| flatten(x, out)),
        x => out.push(x),
    }
}

/// Splits an infer answer for `n` rows into its outputs, in `order` (the outputs asked for,
/// or the metadata's), then any others in the answer's order.
pub fn split(body: &[u8], n: usize, order: &[String]) -> Result<Vec<Output>, String> {
    let a: Answer =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not v2 JSON: {e}"))?;
    let mut outs = Vec::new();
    for t in a.outputs {
        let mut data = Vec::new();
        flatten(t.data, &mut data);
        let dims: Vec<usize> = t.shape.iter().map(|&d| d.max(0) as usize).collect();
        if dims.first() != Some(&n) || dims.iter().product::<usize>() != data.len() {
            return Err(format!(
                "output {} has shape {:?} and {} elements for {n} rows",
                t.name,
                t.shape,
                data.len()
            ));
        }
        outs.push(Output {
            name: t.name,
            list: dims.len() > 1,
            per_row: dims[1..].iter().product(),
            data,
        });
    }
    outs.sort_by_key(|o| {
        order
            .iter()
            .position(|n| *n == o.name)
            .unwrap_or(usize::MAX)
    });
    Ok(outs)
}

/// The CSV header columns for these outputs.
pub fn csv_columns(outs: &[Output]) -> Vec<String> {
    let mut cols = vec!["row".to_string()];
    for o in outs {
        if o.list {
            cols.extend((0..o.per_row).map(|i| format!("{}_{i}", o.name)));
        } else {
            cols.push(o.name.clone());
        }
    }
    cols
}

fn csv_field(s: &str, out: &mut String) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn csv_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::String(s) => csv_field(s, out),
        v => out.push_str(&v.to_string()),
    }
}

/// A file written in order, counting its length (what a checkpoint records).
pub struct Sink {
    file: BufWriter<File>,
    pub len: u64,
}

impl Sink {
    pub fn new(file: File, len: u64) -> Sink {
        Sink {
            file: BufWriter::with_capacity(1 << 16, file),
            len,
        }
    }

    pub fn write(&mut self, s: &str) -> io::Result<()> {
        self.file.write_all(s.as_bytes())?;
        self.len += s.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

/// Row `j` of the chunk (global number `row`) as one line of `format`.
pub fn row_line(format: OutputFormat, row: u64, outs: &[Output], j: usize, line: &mut String) {
    line.clear();
    match format {
        OutputFormat::Jsonl => {
            line.push_str(&format!("{{\"row\":{row}"));
            for o in outs {
                line.push(',');
                line.push_str(&serde_json::to_string(&o.name).unwrap_or_default());
                line.push(':');
                let vals = &o.data[j * o.per_row..(j + 1) * o.per_row];
                let text = if o.list {
                    serde_json::to_string(vals)
                } else {
                    serde_json::to_string(&vals[0])
                };
                line.push_str(&text.unwrap_or_default());
            }
            line.push_str("}\n");
        }
        OutputFormat::Csv => {
            line.push_str(&row.to_string());
            for o in outs {
                for v in &o.data[j * o.per_row..(j + 1) * o.per_row] {
                    line.push(',');
                    csv_value(v, line);
                }
            }
            line.push('\n');
        }
    }
}

/// A failed row's line.
pub fn failed_line(row: u64, error: &str, input: &str) -> String {
    format!(
        "{{\"row\":{row},\"error\":{},\"input\":{input}}}\n",
        serde_json::to_string(error).unwrap_or_default()
    )
}

/// The CSV header line.
pub fn csv_header(cols: &[String]) -> String {
    let mut s = String::new();
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        csv_field(c, &mut s);
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &[u8] = br#"{"model_name":"iris","outputs":[
        {"name":"probabilities","datatype":"FP32","shape":[2,3],"data":[0.1,0.2,0.7,1,0,0]},
        {"name":"label","datatype":"BYTES","shape":[2],"data":["virginica","set,osa"]}]}"#;

    #[test]
    fn answers_split_into_rows() {
        let outs = split(ANSWER, 2, &["label".into(), "probabilities".into()]).unwrap();
        assert_eq!(outs[0].name, "label");
        let mut line = String::new();
        row_line(OutputFormat::Jsonl, 7, &outs, 1, &mut line);
        assert_eq!(
            line,
            "{\"row\":7,\"label\":\"set,osa\",\"probabilities\":[1,0,0]}\n"
        );
        row_line(OutputFormat::Csv, 6, &outs, 0, &mut line);
        assert_eq!(line, "6,virginica,0.1,0.2,0.7\n");
        row_line(OutputFormat::Csv, 7, &outs, 1, &mut line);
        assert_eq!(line, "7,\"set,osa\",1,0,0\n");
        assert_eq!(
            csv_header(&csv_columns(&outs)),
            "row,label,probabilities_0,probabilities_1,probabilities_2\n"
        );
        let e = split(ANSWER, 3, &[]).err().unwrap();
        assert!(e.contains("shape [2, 3]") && e.contains("3 rows"), "{e}");
        assert!(split(b"<html>", 2, &[])
            .err()
            .unwrap()
            .contains("not v2 JSON"));
    }

    #[test]
    fn failed_lines_are_json() {
        let l = failed_line(3, "400 Bad Request: \"x\"", r#"{"a":"x"}"#);
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["row"], 3);
        assert_eq!(v["input"]["a"], "x");
        assert_eq!(v["error"], "400 Bad Request: \"x\"");
    }
}
