//! JSON lists: rows `[[...], ...]` by position, records `[{"feature": value}, ...]` by name
//! (pandas orient=records, and the records of orient=index), and one flat row `[...]`; at the
//! top of the body, under KServe v1's `"instances"`, under a route's `request_key`, or as the
//! `"data"` of pandas orient=split. What a list may hold depends on the route and the orient
//! ([`Allow`]); a list mixing rows and records is refused element by element.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::json::{skip_map, skip_seq, Cell, Json, Shape};
use super::sink::{quoted, Sink};

/// Which shapes a list may hold here.
#[derive(Clone, Copy)]
pub(super) struct Allow {
    pub(super) rows: bool,
    pub(super) records: bool,
    pub(super) flat: bool,
}

impl Allow {
    fn expected(self) -> &'static str {
        match (self.rows, self.records, self.flat) {
            (true, true, _) => "rows [[...], ...] or records [{...}, ...]",
            (true, false, true) => "rows [[...], ...] or one row [...]",
            (true, false, false) => "rows [[...], ...]",
            (false, true, _) => "records [{\"feature\": value, ...}, ...]",
            (false, false, _) => "a different JSON shape",
        }
    }
}

/// A list of rows, records, or the values of one flat row.
pub(super) struct ListSeed<'r, 'a> {
    pub(super) r: &'r mut Json<'a>,
    pub(super) allow: Allow,
    /// Whether a bad value names its feature (not under orient=split, whose columns may be in
    /// another order).
    pub(super) named: bool,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// What a list turned out to hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Unknown,
    Rows,
    Records,
    Flat,
}

impl<'de> Visitor<'de> for ListSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.allow.expected())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut kind = ListKind::Unknown;
        let mut flat_row: Option<Option<usize>> = None;
        let mut i = 0;
        while seq
            .next_element_seed(ItemSeed {
                r: &mut *self.r,
                allow: self.allow,
                named: self.named,
                i,
                kind: &mut kind,
                flat_row: &mut flat_row,
            })?
            .is_some()
        {
            i += 1;
        }
        if kind == ListKind::Flat {
            self.r.row_length(0, i);
            self.r.shape = Shape::Flat;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        skip_map(&mut map)?;
        let e = self.allow.expected();
        self.r.shape_error(None, e, "an object");
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        let e = self.allow.expected();
        self.r.shape_error(None, e, "a number");
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        let e = self.allow.expected();
        self.r.shape_error(None, e, "a string");
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        let e = self.allow.expected();
        self.r.shape_error(None, e, "a boolean");
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        let e = self.allow.expected();
        self.r.shape_error(None, e, "null");
        Ok(())
    }
}

/// One element of a list: a row, a record, or one value of a flat row.
struct ItemSeed<'r, 'a, 'k> {
    r: &'r mut Json<'a>,
    allow: Allow,
    named: bool,
    i: usize,
    kind: &'k mut ListKind,
    flat_row: &'k mut Option<Option<usize>>,
}

impl ItemSeed<'_, '_, '_> {
    /// Decides (or checks) what the list holds; false when this element does not fit.
    fn fits(&mut self, want: ListKind, got: &str) -> bool {
        let allowed = match want {
            ListKind::Rows => self.allow.rows,
            ListKind::Records => self.allow.records,
            ListKind::Flat => self.allow.flat,
            ListKind::Unknown => false,
        };
        if *self.kind == ListKind::Unknown {
            if !allowed {
                let e = self.allow.expected();
                self.r.shape_error(Some(self.i), e, got);
                return false;
            }
            *self.kind = want;
            return true;
        }
        if *self.kind == want {
            return true;
        }
        match *self.kind {
            ListKind::Flat => {
                // A nested value inside one flat row: not a number.
                let row = 0;
                let col = self.i;
                self.r
                    .cell(row, None, col, Cell::Bad(got.into()), self.named);
            }
            ListKind::Rows | ListKind::Records | ListKind::Unknown => {
                let like = if *self.kind == ListKind::Rows {
                    "an array of values, like row 0"
                } else {
                    "an object of features, like row 0"
                };
                self.r.shape_error(Some(self.i), like, got);
            }
        }
        false
    }

    fn scalar(mut self, c: Cell, got: &str) {
        if !self.fits(ListKind::Flat, got) {
            return;
        }
        let at = *self.flat_row.get_or_insert_with(|| self.r.sink.begin_row());
        if self.i < self.r.n() {
            self.r.cell(0, at, self.i, c, self.named);
        }
    }
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row, a record or a number")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if !self.fits(ListKind::Rows, "an array") {
            skip_seq(&mut seq)?;
            return Ok(());
        }
        read_row(self.r, &mut seq, self.i, self.named)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        if !self.fits(ListKind::Records, "an object") {
            skip_map(&mut map)?;
            return Ok(());
        }
        let at = self.r.sink.begin_row();
        read_record(self.r, &mut map, self.i, at)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Cell::Num(v), "a number");
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Cell::Num(f64::NAN), "null");
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let q = quoted(v);
        self.scalar(Cell::Bad(q), "a string");
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Cell::Bad(v.to_string()), "a boolean");
        Ok(())
    }
}

/// Reads one positional row (`row` is its number in the request).
fn read_row<'de, A: SeqAccess<'de>>(
    r: &mut Json<'_>,
    seq: &mut A,
    row: usize,
    named: bool,
) -> Result<(), A::Error> {
    let at = r.sink.begin_row();
    let n = r.n();
    let mut col = 0;
    while let Some(c) = seq.next_element::<Cell>()? {
        if col < n {
            r.cell(row, at, col, c, named);
        }
        col += 1;
    }
    r.row_length(row, col);
    Ok(())
}

/// A key of a record: a feature, or a name that is none.
enum Key {
    Feature(usize),
    Other(String),
}

struct KeySeed<'s, 'a>(&'s Sink<'a>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a feature name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match self.0.lookup(v) {
            Some(i) => Key::Feature(i),
            None => Key::Other(v.to_string()),
        })
    }
}

/// Reads one record `{"feature": value, ...}` (`row` is its number in the request, `at` its
/// stored row).
pub(super) fn read_record<'de, A: MapAccess<'de>>(
    r: &mut Json<'_>,
    map: &mut A,
    row: usize,
    at: Option<usize>,
) -> Result<(), A::Error> {
    let n = r.n();
    let mut marks = std::mem::take(&mut r.marks);
    marks.clear();
    marks.resize(n, false);
    while let Some(k) = map.next_key_seed(KeySeed(&r.sink))? {
        match k {
            Key::Feature(i) => {
                let c: Cell = map.next_value()?;
                if marks[i] {
                    let d = Sink::duplicate("each feature once")
                        .row(row)
                        .field(r.sink.name(i));
                    r.sink.error(d);
                }
                marks[i] = true;
                r.cell(row, at, i, c, true);
            }
            Key::Other(name) => {
                map.next_value::<IgnoredAny>()?;
                r.unknown(Some(row), &name);
            }
        }
    }
    r.missing_in_row(row, &marks);
    r.marks = marks;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{json, placed, problems};
    use serde_json::json;

    #[test]
    fn a_list_holds_rows_or_records_never_both() {
        let e = json(
            &json!([[1, 2, 3], {"a": 1, "b c": 2, "d": 3}, [1, 2]]),
            None,
        )
        .unwrap_err();
        assert_eq!(problems(&e), ["bad_shape", "wrong_feature_count"]);
        assert_eq!(e.details[0].row, Some(1));
        assert_eq!(e.details[0].expected, "an array of values, like row 0");
        let e = json(
            &json!([{"a": 1, "b c": 2, "d": 3, "a": 4}, {"alias_a": 1, "zz": 0}]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            placed(&e),
            [
                ("unknown_feature", Some(1), None, Some("zz"), ""),
                ("missing_feature", Some(1), None, Some("b c"), ""),
                ("missing_feature", Some(1), None, Some("d"), ""),
            ]
        );
        // A nested value inside one flat row is a value that is not a number.
        let e = json(&json!([1, [2], 3]), None).unwrap_err();
        assert_eq!(
            placed(&e),
            [("not_a_number", Some(0), Some(1), Some("b c"), "an array")]
        );
    }
}
