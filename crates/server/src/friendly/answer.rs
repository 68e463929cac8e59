//! Writing friendly answers straight from the model's output tensors (no intermediate JSON
//! documents): class names or indices, probabilities, values, in the route's layout; or CSV.

use ferroserve_core::config::{Answer, Layout};
use ferroserve_core::{InferResponse, Tensor, TensorData};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use super::table::Table;

/// The key of the class probabilities in an answer (`?probabilities=true`).
pub const PROBABILITIES: &str = "probabilities";

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
        let find = |n: &Option<String>| {
            n.as_ref()
                .and_then(|n| resp.outputs.iter().find(|t| &t.name == n))
        };
        let width = |t: Option<&Tensor>| {
            t.and_then(|t| t.shape.get(1).copied())
                .map(|w| w.max(1) as usize)
                .unwrap_or(1)
        };
        let probs = find(&table.probabilities_output);
        let value = find(&table.value_output);
        Outputs {
            label: find(&table.label_output),
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

    /// One JSON line per row, `{"row": N, "<key>": answer[, "probabilities": [...]]}`, rows
    /// numbered from `first_row` (a batch job's results).
    pub fn write_lines(&self, first_row: u64, out: &mut Vec<u8>) {
        for row in 0..self.out.rows {
            let start = out.len();
            // Writing to memory cannot fail, and every value here serializes.
            let _ = serde_json::to_writer(&mut *out, &Record { a: self, row });
            // `{...}` becomes `{"row":N,...}`.
            let head = format!("{{\"row\":{},", first_row + row as u64);
            out.splice(start..start + 1, head.bytes());
            out.push(b'\n');
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::Parameters;

    fn resp(outputs: Vec<Tensor>) -> InferResponse {
        InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            outputs,
            parameters: Parameters::default(),
        }
    }

    /// A three-class classifier answering two rows: labels 2 and 0.
    fn classifier() -> InferResponse {
        resp(vec![
            Tensor::new("label", vec![2], TensorData::Int64(vec![2, 0])),
            Tensor::new(
                "probabilities",
                vec![2, 3],
                TensorData::Fp32(vec![0.25, 0.25, 0.5, 0.5, 0.25, 0.25]),
            ),
        ])
    }

    fn table(classes: Option<&[&str]>, names_from_probabilities: bool) -> Table {
        let mut t = Table::for_tests(&["a", "b"], &[], 100);
        t.classes = classes.map(|c| c.iter().map(|s| s.to_string()).collect());
        t.names_from_probabilities = names_from_probabilities;
        t
    }

    fn json(
        r: &InferResponse,
        rows: usize,
        t: &Table,
        answer: Answer,
        layout: Layout,
        unwrap: bool,
        probabilities: bool,
    ) -> String {
        let a = Answerer {
            out: Outputs::new(r, rows, t),
            answer,
            layout,
            key: "predictions",
            unwrap,
            probabilities,
        };
        String::from_utf8(a.to_json()).unwrap()
    }

    fn csv(
        r: &InferResponse,
        rows: usize,
        t: &Table,
        answer: Answer,
        probabilities: bool,
    ) -> String {
        let a = Answerer {
            out: Outputs::new(r, rows, t),
            answer,
            layout: Layout::Object,
            key: "predictions",
            unwrap: false,
            probabilities,
        };
        String::from_utf8(a.to_csv(t)).unwrap()
    }

    #[test]
    fn outputs_take_widths_from_the_second_dimension() {
        let r = classifier();
        let t = table(None, false);
        let o = Outputs::new(&r, 2, &t);
        assert_eq!((o.k, o.t, o.rows), (3, 1, 2));
        assert!(o.label.is_some() && o.probs.is_some() && o.value.is_none());
        assert!(o.names.is_none());
        let r = resp(vec![Tensor::new(
            "value",
            vec![1, 4],
            TensorData::Fp64(vec![1.0, 2.0, 3.0, 4.0]),
        )]);
        let o = Outputs::new(&r, 1, &t);
        assert_eq!((o.k, o.t), (1, 4));
        // Names are used only when the table says they do not match the labels.
        let named = table(Some(&["x", "y", "z"]), true);
        let r = classifier();
        assert_eq!(
            Outputs::new(&r, 2, &named).names.map(<[String]>::len),
            Some(3)
        );
        let unnamed = table(Some(&["x", "y", "z"]), false);
        assert!(Outputs::new(&r, 2, &unnamed).names.is_none());
    }

    #[test]
    fn every_answer_of_a_classifier_in_a_column() {
        let r = classifier();
        let t = table(None, false);
        let col = |answer| json(&r, 2, &t, answer, Layout::Object, false, false);
        assert_eq!(col(Answer::Label), r#"{"predictions":[2,0]}"#);
        assert_eq!(col(Answer::ClassIndex), r#"{"predictions":[2,0]}"#);
        assert_eq!(
            col(Answer::Probabilities),
            r#"{"predictions":[[0.25,0.25,0.5],[0.5,0.25,0.25]]}"#
        );
        // The probability of the last class.
        assert_eq!(col(Answer::Probability), r#"{"predictions":[0.5,0.25]}"#);
    }

    #[test]
    fn class_index_is_the_first_maximum() {
        let r = resp(vec![Tensor::new(
            "probabilities",
            vec![3, 3],
            TensorData::Fp64(vec![
                0.2, 0.4, 0.4, // tie: the first
                0.1, 0.1, 0.8, // last
                0.7, 0.2, 0.1, // first
            ]),
        )]);
        let t = table(None, false);
        let got = json(&r, 3, &t, Answer::ClassIndex, Layout::List, false, false);
        assert_eq!(got, "[1,2,0]");
        let got = csv(&r, 3, &t, Answer::ClassIndex, false);
        assert_eq!(got, "prediction\n1\n2\n0\n");
        // Negative scores: the maximum still wins over the first column.
        let r = resp(vec![Tensor::new(
            "probabilities",
            vec![1, 2],
            TensorData::Fp32(vec![-3.0, -1.0]),
        )]);
        assert_eq!(
            json(&r, 1, &t, Answer::ClassIndex, Layout::List, false, false),
            "[1]"
        );
    }

    #[test]
    fn class_names_come_from_the_probabilities_when_labels_are_numbers() {
        let r = classifier();
        let t = table(Some(&["setosa", "versicolor", "virginica"]), true);
        assert_eq!(
            json(&r, 2, &t, Answer::Label, Layout::List, false, false),
            r#"["virginica","setosa"]"#
        );
        assert_eq!(
            csv(&r, 2, &t, Answer::Label, false),
            "prediction\nvirginica\nsetosa\n"
        );
        // Without that flag, the label output answers as it is.
        let t = table(Some(&["setosa", "versicolor", "virginica"]), false);
        assert_eq!(
            json(&r, 2, &t, Answer::Label, Layout::List, false, false),
            "[2,0]"
        );
    }

    #[test]
    fn text_labels_answer_as_strings() {
        let r = resp(vec![Tensor::new(
            "label",
            vec![2],
            TensorData::Bytes(vec![b"cat".to_vec(), b"dog".to_vec()]),
        )]);
        let t = table(None, false);
        assert_eq!(
            json(&r, 2, &t, Answer::Label, Layout::List, false, false),
            r#"["cat","dog"]"#
        );
        assert_eq!(
            csv(&r, 2, &t, Answer::Label, false),
            "prediction\ncat\ndog\n"
        );
    }

    #[test]
    fn elements_keep_their_type() {
        let t = table(None, false);
        let one = |d: TensorData| {
            let r = resp(vec![Tensor::new("value", vec![2], d)]);
            json(&r, 2, &t, Answer::Label, Layout::List, false, false)
        };
        assert_eq!(one(TensorData::Fp32(vec![1.5, -2.0])), "[1.5,-2.0]");
        assert_eq!(one(TensorData::Fp64(vec![0.125, 3.0])), "[0.125,3.0]");
        assert_eq!(one(TensorData::Int64(vec![-7, 9])), "[-7,9]");
        assert_eq!(one(TensorData::Int32(vec![4, -5])), "[4,-5]");
        assert_eq!(one(TensorData::Uint8(vec![1, 255])), "[1.0,255.0]");
        // NaN has no JSON number: it answers null.
        assert_eq!(one(TensorData::Fp64(vec![f64::NAN, 1.0])), "[null,1.0]");
    }

    #[test]
    fn regressors_answer_values_one_or_several_per_row() {
        let t = table(None, false);
        let r = resp(vec![Tensor::new(
            "value",
            vec![2, 1],
            TensorData::Fp32(vec![1.5, 2.5]),
        )]);
        for answer in [Answer::Label, Answer::ClassIndex, Answer::Probabilities] {
            assert_eq!(
                json(&r, 2, &t, answer, Layout::Object, false, false),
                r#"{"predictions":[1.5,2.5]}"#
            );
        }
        assert_eq!(
            csv(&r, 2, &t, Answer::Label, false),
            "prediction\n1.5\n2.5\n"
        );
        let r = resp(vec![Tensor::new(
            "value",
            vec![2, 2],
            TensorData::Fp64(vec![1.0, 2.0, 3.0, 4.0]),
        )]);
        assert_eq!(
            json(&r, 2, &t, Answer::Label, Layout::List, false, false),
            "[[1.0,2.0],[3.0,4.0]]"
        );
        assert_eq!(
            csv(&r, 2, &t, Answer::Label, false),
            "prediction_0,prediction_1\n1,2\n3,4\n"
        );
    }

    #[test]
    fn missing_outputs_answer_null_or_empty() {
        let t = table(None, false);
        let r = resp(vec![]);
        for answer in [
            Answer::Label,
            Answer::ClassIndex,
            Answer::Probabilities,
            Answer::Probability,
        ] {
            assert_eq!(
                json(&r, 1, &t, answer, Layout::List, false, false),
                "[null]"
            );
            assert_eq!(csv(&r, 1, &t, answer, false), "prediction\n\"\"\n");
        }
    }

    #[test]
    fn layouts_and_single_rows() {
        let r = classifier();
        let t = table(None, false);
        let j = |layout, unwrap, probs| json(&r, 2, &t, Answer::Label, layout, unwrap, probs);
        assert_eq!(j(Layout::List, false, false), "[2,0]");
        assert_eq!(j(Layout::List, true, false), "2");
        assert_eq!(j(Layout::Object, true, false), r#"{"predictions":2}"#);
        assert_eq!(
            j(Layout::Records, false, false),
            r#"[{"predictions":2},{"predictions":0}]"#
        );
        assert_eq!(j(Layout::Records, true, false), r#"{"predictions":2}"#);
        assert_eq!(
            j(Layout::Object, false, true),
            r#"{"predictions":[2,0],"probabilities":[[0.25,0.25,0.5],[0.5,0.25,0.25]]}"#
        );
        assert_eq!(
            j(Layout::Object, true, true),
            r#"{"predictions":2,"probabilities":[0.25,0.25,0.5]}"#
        );
        assert_eq!(
            j(Layout::Records, false, true),
            r#"[{"predictions":2,"probabilities":[0.25,0.25,0.5]},{"predictions":0,"probabilities":[0.5,0.25,0.25]}]"#
        );
        // A list has no room for the probabilities.
        assert_eq!(j(Layout::List, false, true), "[2,0]");
    }

    #[test]
    fn probabilities_are_added_only_once_and_only_when_there() {
        let r = classifier();
        let t = table(None, false);
        let a = Answerer {
            out: Outputs::new(&r, 2, &t),
            answer: Answer::Probabilities,
            layout: Layout::Object,
            key: PROBABILITIES,
            unwrap: false,
            probabilities: true,
        };
        assert!(!a.with_probabilities());
        assert_eq!(
            String::from_utf8(a.to_json()).unwrap(),
            r#"{"probabilities":[[0.25,0.25,0.5],[0.5,0.25,0.25]]}"#
        );
        let r = resp(vec![Tensor::new(
            "value",
            vec![1],
            TensorData::Fp32(vec![1.0]),
        )]);
        assert_eq!(
            json(&r, 1, &t, Answer::Label, Layout::Object, false, true),
            r#"{"predictions":[1.0]}"#
        );
    }

    #[test]
    fn job_lines_number_rows_from_the_first_and_append() {
        let r = classifier();
        let t = table(Some(&["a", "b", "c"]), false);
        let a = Answerer {
            out: Outputs::new(&r, 2, &t),
            answer: Answer::Label,
            layout: Layout::Records,
            key: "prediction",
            unwrap: false,
            probabilities: true,
        };
        let mut out = b"kept\n".to_vec();
        a.write_lines(5, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "kept\n\
             {\"row\":5,\"prediction\":2,\"probabilities\":[0.25,0.25,0.5]}\n\
             {\"row\":6,\"prediction\":0,\"probabilities\":[0.5,0.25,0.25]}\n"
        );
    }

    #[test]
    fn csv_answers_with_probability_columns() {
        let r = classifier();
        let t = table(None, false);
        assert_eq!(
            csv(&r, 2, &t, Answer::Label, true),
            "prediction,probability_0,probability_1,probability_2\n2,0.25,0.25,0.5\n0,0.5,0.25,0.25\n"
        );
        let t = table(Some(&["a", "b", "c"]), false);
        assert_eq!(
            csv(&r, 2, &t, Answer::Label, true),
            "prediction,probability_a,probability_b,probability_c\n2,0.25,0.25,0.5\n0,0.5,0.25,0.25\n"
        );
        assert_eq!(
            csv(&r, 2, &t, Answer::Probability, false),
            "prediction\n0.5\n0.25\n"
        );
        assert_eq!(
            csv(&r, 2, &t, Answer::Probabilities, false),
            "prediction\n0.25 0.25 0.5\n0.5 0.25 0.25\n"
        );
        // Other types print as numbers.
        let r = resp(vec![Tensor::new(
            "value",
            vec![2],
            TensorData::Fp64(vec![0.5, -1.0]),
        )]);
        assert_eq!(
            csv(&r, 2, &t, Answer::Label, false),
            "prediction\n0.5\n-1\n"
        );
    }
}
