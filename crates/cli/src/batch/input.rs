//! Reading the input file row by row (never whole): CSV with a header row, or JSON Lines
//! whose lines are arrays of values or objects keyed by column name. Blank JSON Lines lines
//! are not rows. A row that cannot be read (bad JSON, bad UTF-8) is a [`RawRow::Bad`] that
//! ends in the failed file; only an I/O error stops the run.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::plan::Columns;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Csv,
    Jsonl,
}

impl InputFormat {
    /// By extension: `.csv`; `.jsonl`, `.ndjson`.
    pub fn of(path: &Path) -> Option<InputFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(InputFormat::Csv),
            "jsonl" | "ndjson" => Some(InputFormat::Jsonl),
            _ => None,
        }
    }
}

/// One row as read.
pub enum RawRow {
    Csv(csv::StringRecord),
    /// The values, and the line.
    Array(Vec<Box<RawValue>>, String),
    /// The fields in the order written, and the line.
    Object(Vec<(String, Box<RawValue>)>, String),
    /// A row that could not be read: what it is as JSON, and why.
    Bad {
        input: String,
        error: String,
    },
    /// A row of another shard, not parsed.
    Skipped,
}

impl RawRow {
    /// The row as read, as JSON (the failed file's `input`): a CSV row is an object keyed by
    /// the header, a JSON row is its line.
    pub fn input_json(&self, header: &[String]) -> String {
        match self {
            RawRow::Csv(rec) => {
                let mut s = String::from("{");
                for (i, cell) in rec.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let key = header.get(i).cloned().unwrap_or_else(|| format!("_{i}"));
                    s.push_str(&serde_json::to_string(&key).unwrap_or_default());
                    s.push(':');
                    s.push_str(&serde_json::to_string(cell).unwrap_or_default());
                }
                s.push('}');
                s
            }
            RawRow::Array(_, line) | RawRow::Object(_, line) => line.trim().to_string(),
            RawRow::Bad { input, .. } => input.clone(),
            RawRow::Skipped => "null".into(),
        }
    }
}

/// An array or an object, keeping each value's text and the keys' order.
enum JsonRow {
    Array(Vec<Box<RawValue>>),
    Object(Vec<(String, Box<RawValue>)>),
}

impl<'de> serde::Deserialize<'de> for JsonRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonRow;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of values or an object keyed by column name")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<JsonRow, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(JsonRow::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<JsonRow, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = a.next_entry()? {
                    v.push(kv);
                }
                Ok(JsonRow::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

pub struct Reader {
    inner: Inner,
    /// A row read to learn the columns, given back first.
    peeked: Option<RawRow>,
    pub columns: Option<Columns>,
}

enum Inner {
    Csv(csv::Reader<BufReader<File>>, csv::StringRecord),
    Jsonl(BufReader<File>, Vec<u8>),
}

impl Reader {
    /// Opens the file and learns its columns (the CSV header, or the first JSON Lines row;
    /// `None` for a file with no rows).
    pub fn open(path: &Path, format: InputFormat) -> io::Result<Reader> {
        let file = File::open(path)?;
        let buf = BufReader::with_capacity(1 << 16, file);
        let mut r = match format {
            InputFormat::Csv => {
                let mut csv = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(buf);
                let header: Vec<String> = csv
                    .headers()
                    .map_err(io::Error::other)?
                    .iter()
                    .map(|h| h.trim().to_string())
                    .collect();
                let columns = (!header.is_empty()).then_some(Columns::Named(header));
                Reader {
                    inner: Inner::Csv(csv, csv::StringRecord::new()),
                    peeked: None,
                    columns,
                }
            }
            InputFormat::Jsonl => Reader {
                inner: Inner::Jsonl(buf, Vec::new()),
                peeked: None,
                columns: None,
            },
        };
        if format == InputFormat::Jsonl {
            let first = r.read(false)?;
            r.columns = match &first {
                Some(RawRow::Array(v, _)) => Some(Columns::Positional(v.len())),
                Some(RawRow::Object(f, _)) => {
                    Some(Columns::Named(f.iter().map(|(k, _)| k.clone()).collect()))
                }
                _ => None,
            };
            r.peeked = first;
        }
        Ok(r)
    }

    /// The next row (`skip`: not parsed, for rows of another shard or already done), or
    /// `None` at the end.
    pub fn read(&mut self, skip: bool) -> io::Result<Option<RawRow>> {
        if let Some(p) = self.peeked.take() {
            return Ok(Some(p));
        }
        match &mut self.inner {
            Inner::Csv(csv, rec) => match csv.read_record(rec) {
                Ok(false) => Ok(None),
                Ok(true) if skip => Ok(Some(RawRow::Skipped)),
                Ok(true) => Ok(Some(RawRow::Csv(rec.clone()))),
                Err(e) => match e.kind() {
                    csv::ErrorKind::Io(_) => Err(io::Error::other(e)),
                    _ => Ok(Some(RawRow::Bad {
                        input: "null".into(),
                        error: format!("unreadable CSV row: {e}"),
                    })),
                },
            },
            Inner::Jsonl(buf, line) => loop {
                line.clear();
                if buf.read_until(b'\n', line)? == 0 {
                    return Ok(None);
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if skip {
                    return Ok(Some(RawRow::Skipped));
                }
                let text = match std::str::from_utf8(line) {
                    Ok(t) => t.to_string(),
                    Err(e) => {
                        return Ok(Some(RawRow::Bad {
                            input: serde_json::to_string(&String::from_utf8_lossy(line))
                                .unwrap_or_default(),
                            error: format!("the line is not UTF-8: {e}"),
                        }))
                    }
                };
                return Ok(Some(match serde_json::from_str::<JsonRow>(&text) {
                    Ok(JsonRow::Array(v)) => RawRow::Array(v, text),
                    Ok(JsonRow::Object(f)) => RawRow::Object(f, text),
                    Err(e) => RawRow::Bad {
                        input: serde_json::to_string(text.trim()).unwrap_or_default(),
                        error: format!("the line is not a JSON array or object: {e}"),
                    },
                }));
            },
        }
    }
}

/// Counts the file's rows cheaply (lines, less the CSV header; blank lines left out): what
/// the progress shows as the total. A CSV field holding a line break makes it an estimate.
pub fn count_rows(path: &Path, format: InputFormat) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut nonblank_in_line, mut last) = (0u64, false, b'\n');
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                if nonblank_in_line {
                    lines += 1;
                }
                nonblank_in_line = false;
            } else if !b.is_ascii_whitespace() {
                nonblank_in_line = true;
            }
            last = b;
        }
    }
    if last != b'\n' && nonblank_in_line {
        lines += 1;
    }
    Ok(match format {
        InputFormat::Csv => lines.saturating_sub(1),
        InputFormat::Jsonl => lines,
    })
}
