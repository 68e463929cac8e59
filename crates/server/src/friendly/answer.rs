//! Writing friendly answers straight from the model's output tensors (no intermediate JSON
//! documents): class names or indices, probabilities, values, in the route's layout; or CSV.

use ferroserve_core::config::{Answer, Layout};
use ferroserve_core::{InferResponse, Tensor, TensorData};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use super::table::{Table, LABEL, PROBABILITIES, VALUE};

/// The outputs a friendly answer is made of.
pub struct Outputs<'a> {
    label: Option<&'a Tensor>,
    probs: Option<&'a Tensor>,
    value: Option<&'a Tensor>,
    /// Classes (width of the probabilities).
    k: usize,
    /// Regression targets (width of the value).
    t: usize,
    rows: usize,
    /// Class names to answer by the first maximum of the probabilities (see
    /// [`Table::names_from_probabilities`]).
    names: Option<&'a [String]>,
}

impl<'a> Outputs<'a> {
    pub fn new(resp: &'a InferResponse, rows: usize, table: &'a Table) -> Outputs<'a> {
        let find = |n: &str| resp.outputs.iter().find(|t| t.name == n);
        let width = |t: Option<&Tensor>| {
            t.and_then(|t| t.shape.get(1).copied())
                .map(|w| w.max(1) as usize)
                .unwrap_or(1)
        };
        let probs = find(PROBABILITIES);
        let value = find(VALUE);
        Outputs {
            label: find(LABEL),
            probs,
            value,
            k: width(probs),
            t: width(value),
            rows,
            names: table
                .classes
                .as_deref()
                .filter(|_| table.names_from_probabilities),
        }
    }
}

/// One number (or string) of a tensor, serialized in its own type.
fn element<S: Serializer>(d: &TensorData, i: usize, s: S) -> Result<S::Ok, S::Error> {
    match d {
        TensorData::Fp32(v) => s.serialize_f32(v[i]),
        TensorData::Fp64(v) => s.serialize_f64(v[i]),
        TensorData::Int64(v) => s.serialize_i64(v[i]),
        TensorData::Int32(v) => s.serialize_i32(v[i]),
        TensorData::Bytes(v) => s.serialize_str(&String::from_utf8_lossy(&v[i])),
        other => s.serialize_f64(other.get_f64(i).unwrap_or(f64::NAN)),
    }
}

struct Elem<'a>(&'a TensorData, usize);

impl Serialize for Elem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        element(self.0, self.1, s)
    }
}

/// `width` consecutive elements from `start`, as a list.
struct Span<'a>(&'a TensorData, usize, usize);

impl Serialize for Span<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.2))?;
        for i in self.1..self.1 + self.2 {
            q.serialize_element(&Elem(self.0, i))?;
        }
        q.end()
    }
}

/// Index of the first maximum of a row of probabilities.
fn argmax(d: &TensorData, start: usize, k: usize) -> usize {
    let mut best = 0;
    let mut best_v = f64::NEG_INFINITY;
    for j in 0..k {
        let v = d.get_f64(start + j).unwrap_or(f64::NAN);
        if v > best_v {
            best = j;
            best_v = v;
        }
    }
    best
}

/// The answer for one row.
struct One<'a> {
    o: &'a Outputs<'a>,
    answer: Answer,
    row: usize,
}

impl Serialize for One<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (o, r) = (self.o, self.row);
        match (self.answer, o.label, o.probs, o.value) {
            (Answer::Label, _, Some(p), _) if o.names.is_some() => {
                let names = o.names.unwrap_or_default();
                let i = argmax(&p.data, r * o.k, o.k);
                s.serialize_str(names.get(i).map_or("", String::as_str))
            }
            (Answer::Label, Some(l), _, _) => element(&l.data, r, s),
            (_, _, _, Some(v)) if o.t == 1 => element(&v.data, r, s),
            (_, _, _, Some(v)) => Span(&v.data, r * o.t, o.t).serialize(s),
            (Answer::ClassIndex, _, Some(p), _) => {
                s.serialize_u64(argmax(&p.data, r * o.k, o.k) as u64)
            }
            (Answer::Probabilities, _, Some(p), _) => Span(&p.data, r * o.k, o.k).serialize(s),
            (Answer::Probability, _, Some(p), _) => element(&p.data, r * o.k + o.k - 1, s),
            (
                Answer::Label | Answer::ClassIndex | Answer::Probabilities | Answer::Probability,
                _,
                _,
                None,
            ) => s.serialize_none(),
        }
    }
}

/// The answers for every row, as a list.
struct Column<'a> {
    o: &'a Outputs<'a>,
    answer: Answer,
}

impl Serialize for Column<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.o.rows))?;
        for row in 0..self.o.rows {
            q.serialize_element(&One {
                o: self.o,
                answer: self.answer,
                row,
            })?;
        }
        q.end()
    }
}

/// One object per row: `{"<key>": answer, "probabilities": [...]}`.
struct Record<'a> {
    a: &'a Answerer<'a>,
    row: usize,
}

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.a;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(
            a.key,
            &One {
                o: &a.out,
                answer: a.answer,
                row: self.row,
            },
        )?;
        if a.with_probabilities() {
            m.serialize_entry(
                PROBABILITIES,
                &One {
                    o: &a.out,
                    answer: Answer::Probabilities,
                    row: self.row,
                },
            )?;
        }
        m.end()
    }
}

/// A whole friendly answer.
pub struct Answerer<'a> {
    pub out: Outputs<'a>,
    pub answer: Answer,
    pub layout: Layout,
    pub key: &'a str,
    /// Answer the single row without the surrounding list.
    pub unwrap: bool,
    pub probabilities: bool,
}

impl Answerer<'_> {
    fn with_probabilities(&self) -> bool {
        self.probabilities && self.out.probs.is_some() && self.key != PROBABILITIES
    }
}

impl Serialize for Answerer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let one = |row| One {
            o: &self.out,
            answer: self.answer,
            row,
        };
        let col = |answer| Column {
            o: &self.out,
            answer,
        };
        match (self.layout, self.unwrap) {
            (Layout::Object, unwrap) => {
                let mut m = s.serialize_map(None)?;
                if unwrap {
                    m.serialize_entry(self.key, &one(0))?;
                } else {
                    m.serialize_entry(self.key, &col(self.answer))?;
                }
                if self.with_probabilities() {
                    if unwrap {
                        m.serialize_entry(
                            PROBABILITIES,
                            &One {
                                o: &self.out,
                                answer: Answer::Probabilities,
                                row: 0,
                            },
                        )?;
                    } else {
                        m.serialize_entry(PROBABILITIES, &col(Answer::Probabilities))?;
                    }
                }
                m.end()
            }
            (Layout::List, true) => one(0).serialize(s),
            (Layout::List, false) => col(self.answer).serialize(s),
            (Layout::Records, true) => Record { a: self, row: 0 }.serialize(s),
            (Layout::Records, false) => {
                let mut q = s.serialize_seq(Some(self.out.rows))?;
                for row in 0..self.out.rows {
                    q.serialize_element(&Record { a: self, row })?;
                }
                q.end()
            }
        }
    }
}

impl Answerer<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 16 * self.out.rows);
        // Writing to memory cannot fail, and every value here serializes.
        let _ = serde_json::to_writer(&mut out, self);
        out
    }

    /// The answer as CSV: a `prediction` column (one per target for several-target
    /// regressors), then, when asked for, one probability column per class.
    pub fn to_csv(&self, table: &Table) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = Vec::new();
        let o = &self.out;
        if o.value.is_some() && o.t > 1 {
            header.extend((0..o.t).map(|j| format!("prediction_{j}")));
        } else {
            header.push("prediction".into());
        }
        let probs = self.with_probabilities();
        if probs {
            match &table.classes {
                Some(c) => header.extend(c.iter().map(|c| format!("probability_{c}"))),
                None => header.extend((0..o.k).map(|j| format!("probability_{j}"))),
            }
        }
        let _ = w.write_record(&header);
        let text = |d: &TensorData, i: usize| match d {
            TensorData::Bytes(v) => String::from_utf8_lossy(&v[i]).into_owned(),
            TensorData::Fp32(v) => v[i].to_string(),
            TensorData::Int64(v) => v[i].to_string(),
            other => other.get_f64(i).unwrap_or(f64::NAN).to_string(),
        };
        for r in 0..o.rows {
            let mut rec: Vec<String> = Vec::with_capacity(header.len());
            match (self.answer, o.label, o.probs, o.value) {
                (Answer::Label, _, Some(p), _) if o.names.is_some() => {
                    let names = o.names.unwrap_or_default();
                    let i = argmax(&p.data, r * o.k, o.k);
                    rec.push(names.get(i).cloned().unwrap_or_default())
                }
                (Answer::Label, Some(l), _, _) => rec.push(text(&l.data, r)),
                (_, _, _, Some(v)) => rec.extend((0..o.t).map(|j| text(&v.data, r * o.t + j))),
                (Answer::ClassIndex, _, Some(p), _) => {
                    rec.push(argmax(&p.data, r * o.k, o.k).to_string())
                }
                (Answer::Probability, _, Some(p), _) => rec.push(text(&p.data, r * o.k + o.k - 1)),
                (Answer::Probabilities, _, Some(p), _) => rec.push(
                    (0..o.k)
                        .map(|j| text(&p.data, r * o.k + j))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                (_, _, _, None) => rec.push(String::new()),
            }
            if let (true, Some(p)) = (probs, o.probs) {
                rec.extend((0..o.k).map(|j| text(&p.data, r * o.k + j)));
            }
            let _ = w.write_record(&rec);
        }
        w.into_inner().unwrap_or_default()
    }
}
