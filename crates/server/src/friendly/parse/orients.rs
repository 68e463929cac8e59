//! Top-level JSON objects keyed by name, as pandas writes a frame: one record
//! `{"feature": value}`; orient=columns `{"feature": {"row label": value}}`; orient=index
//! `{"row label": {"feature": value}}`; orient=split `{"columns": [...], "index": [...],
//! "data": [[...]]}`. Without `?orient=` the keys and values tell which it is ([`EntrySeed`]).
//! orient=records and orient=values are lists ([`super::lists`]).

use std::collections::HashMap;
use std::fmt;

use ferroserve_core::{ErrorDetail, Problem};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::json::{skip_map, skip_seq, Cell, Json, NameSeed, Shape};
use super::lists::{read_record, Allow, ListSeed};
use super::sink::{quoted, Sink};
use crate::labels::label_enum;

label_enum! {
    /// The pandas `orient` of a JSON body (query parameter `orient`).
    pub enum Orient {
        Records => "records",
        Split => "split",
        Columns => "columns",
        Index => "index",
        Values => "values",
    }
}

/// One record at the top of the body: its stored row (once begun) and the features given.
#[derive(Default)]
pub(super) struct OneRecord {
    at: Option<Option<usize>>,
    pub(super) given: Vec<bool>,
}

/// orient=columns: row label → (row number, stored row), and which cells were given.
#[derive(Default)]
pub(super) struct Columns {
    rows: HashMap<String, (usize, Option<usize>)>,
    /// `row * n + feature`.
    given: Vec<bool>,
}

impl Columns {
    /// Records every cell no column gave.
    pub(super) fn finish(self, r: &mut Json<'_>) {
        let n = r.n();
        let rows = r.sink.stored();
        for row in 0..rows {
            let marks = &self.given[row * n..((row + 1) * n).min(self.given.len())];
            if marks.len() == n {
                r.missing_in_row(row, marks);
            }
        }
    }
}

/// orient=split: the column names, once read, and whether the data came.
#[derive(Default)]
pub(super) struct Split {
    columns: Option<Vec<String>>,
    has_data: bool,
}

impl Split {
    /// Reads the value of one key of a split object.
    pub(super) fn read_key<'de, A: MapAccess<'de>>(
        r: &mut Json<'_>,
        key: String,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key.as_str() {
            "columns" => {
                let columns = map.next_value()?;
                if let Shape::Split(s) = &mut r.shape {
                    s.columns = Some(columns);
                }
            }
            "index" | "name" => {
                map.next_value::<IgnoredAny>()?;
            }
            "data" => {
                if let Shape::Split(s) = &mut r.shape {
                    s.has_data = true;
                }
                let allow = Allow {
                    rows: true,
                    records: false,
                    flat: false,
                };
                map.next_value_seed(ListSeed {
                    r,
                    allow,
                    named: false,
                })?;
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
                let d = ErrorDetail::new(
                    Problem::BadShape,
                    "only the keys \"columns\", \"index\" and \"data\" (orient=split)",
                )
                .field(key);
                r.sink.error(d);
            }
        }
        Ok(())
    }

    /// Maps the split columns to features and reorders the rows.
    pub(super) fn finish(self, r: &mut Json<'_>) {
        let Some(columns) = self.columns else {
            let e = r.top_expected();
            r.shape_error(None, e, "no \"columns\"");
            return;
        };
        if !self.has_data {
            let e = r.top_expected();
            r.shape_error(None, e, "no \"data\"");
            return;
        }
        let map = r.sink.columns(&columns, "a feature name");
        // Every feature once, in some order.
        if map.len() == r.n() && map.iter().all(Option::is_some) {
            let perm: Vec<usize> = map.into_iter().flatten().collect();
            if perm.iter().enumerate().any(|(j, &i)| i != j) {
                r.sink.permute(&perm);
            }
        }
    }
}

/// The value of one key of a top-level object that is not a special key: the value of a
/// feature (one record), a column (orient=columns) or a row (orient=index).
pub(super) struct EntrySeed<'r, 'a> {
    pub(super) r: &'r mut Json<'a>,
    pub(super) key: String,
    pub(super) feature: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl EntrySeed<'_, '_> {
    /// A scalar: the value of a feature in a single record.
    fn scalar(self, c: Cell) {
        let r = self.r;
        if matches!(r.orient, Some(Orient::Columns | Orient::Index)) {
            let e = r.top_expected();
            r.shape_error(None, e, "an object of values");
            return;
        }
        let Some(i) = self.feature else {
            r.unknown(None, &self.key);
            return;
        };
        if !r.enter(Shape::Record(OneRecord::default()), "one record") {
            return;
        }
        let n = r.n();
        let Json {
            shape: Shape::Record(one),
            sink,
            ..
        } = &mut *r
        else {
            return;
        };
        let at = *one.at.get_or_insert_with(|| {
            one.given = vec![false; n];
            sink.begin_row()
        });
        let again = std::mem::replace(&mut one.given[i], true);
        if again {
            let d = Sink::duplicate("each feature once")
                .row(0)
                .field(sink.name(i));
            sink.error(d);
        }
        r.cell(0, at, i, c, true);
    }

    /// orient=columns: `{"row label": value, ...}` for feature `i`.
    fn column<'de, A: MapAccess<'de>>(
        r: &mut Json<'_>,
        i: usize,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let n = r.n();
        while let Some(label) = map.next_key_seed(NameSeed)? {
            let c: Cell = map.next_value()?;
            let Json {
                shape: Shape::Columns(cols),
                sink,
                ..
            } = &mut *r
            else {
                continue;
            };
            // Rows are numbered by the order their labels first appear.
            let (row, at) = match cols.rows.get(&label) {
                Some(&v) => v,
                None => {
                    let row = cols.rows.len();
                    let at = sink.begin_row();
                    cols.rows.insert(label.clone(), (row, at));
                    cols.given.resize((row + 1) * n, false);
                    (row, at)
                }
            };
            let mark = row * n + i;
            if mark < cols.given.len() {
                if cols.given[mark] {
                    let d = Sink::duplicate("each row label once per column")
                        .row(row)
                        .field(sink.name(i))
                        .got(quoted(&label));
                    sink.error(d);
                }
                cols.given[mark] = true;
            }
            r.cell(row, at, i, c, true);
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let r = self.r;
        let as_column = match (r.orient, self.feature) {
            (Some(Orient::Columns), _) => true,
            (Some(Orient::Index), _) => false,
            (_, Some(_)) => true,
            (_, None) => false,
        };
        if as_column {
            if !r.enter(
                Shape::Columns(Columns::default()),
                "a column {\"row label\": value}",
            ) {
                return skip_map(&mut map);
            }
            let Some(i) = self.feature else {
                skip_map(&mut map)?;
                r.unknown(None, &self.key);
                return Ok(());
            };
            EntrySeed::column(r, i, &mut map)
        } else {
            if !r.enter(Shape::Index, "a row {\"feature\": value}") {
                return skip_map(&mut map);
            }
            let row = r.sink.rows();
            let at = r.sink.begin_row();
            read_record(r, &mut map, row, at)
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        skip_seq(&mut seq)?;
        let r = self.r;
        match self.feature {
            Some(i) => {
                let d = ErrorDetail::new(Problem::NotANumber, "a number (or null)")
                    .row(0)
                    .field(r.sink.name(i))
                    .got("an array");
                r.sink.error(d);
            }
            None => {
                let e = r.top_expected();
                r.shape_error(None, e, &format!("an array under \"{}\"", self.key));
            }
        }
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Cell::Num(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Cell::Num(v as f64));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Cell::Num(v as f64));
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Cell::Num(f64::NAN));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Cell::Bad(quoted(v)));
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Cell::Bad(v.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{json, placed, problems, values};
    use super::Orient;
    use serde_json::json;

    #[test]
    fn orients_are_named_and_read_back() {
        for o in Orient::ALL {
            assert_eq!(Orient::parse(o.as_str()), Some(o));
        }
        assert_eq!(Orient::parse("table"), None);
    }

    #[test]
    fn split_columns_in_any_order_reorder_the_rows() {
        let p = json(
            &json!({"columns": ["d", "a", "b c"], "index": ["x"], "data": [[3, 1, 2]]}),
            None,
        )
        .unwrap();
        assert_eq!(values(&p), [1.0, 2.0, 3.0]);
        let e = json(&json!({"data": [[1, 2, 3]]}), Some(Orient::Split)).unwrap_err();
        assert_eq!(e.details[0].got.as_deref(), Some("no \"columns\""));
    }

    #[test]
    fn columns_and_index_name_every_cell_left_out() {
        let e = json(
            &json!({"a": {"x": 1, "y": 2}, "b c": {"x": 1}, "d": {"y": 1, "x": 2}}),
            Some(Orient::Columns),
        )
        .unwrap_err();
        assert_eq!(
            placed(&e),
            [("missing_feature", Some(1), None, Some("b c"), "")]
        );
        let e = json(
            &json!({"x": {"a": 1, "b c": 2}, "y": 3}),
            Some(Orient::Index),
        )
        .unwrap_err();
        assert_eq!(problems(&e), ["missing_feature", "bad_shape"]);
    }
}
