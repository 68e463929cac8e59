//! JSON bodies: one serde pass ([`read_json`], no `serde_json::Value` trees) that decides from
//! what it meets which form the body takes and hands each part to that form's reader: lists of
//! rows or records and one flat row ([`super::lists`]); one record and the pandas orients
//! keyed by name ([`super::orients`]); KServe v1 `{"instances": [...]}` and a route's
//! `request_key` (a list under one key); Ray arrays ([`super::ray`]). What the body turned out
//! to be, with that form's state, is its [`Shape`]; a body mixing two forms is refused. Every
//! value goes into the one [`Sink`]. Malformed JSON stops the reading at once (400).

use std::fmt;

use ferroserve_core::config::RequestForm;
use ferroserve_core::{ErrorDetail, InferError, Problem};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::lists::{Allow, ListSeed};
use super::orients::{Columns, EntrySeed, OneRecord, Orient, Split};
use super::ray::Ray;
use super::sink::{quoted, Parsed, Sink};
use crate::friendly::table::{Spec, Table};

/// One JSON value where a number belongs.
pub(super) enum Cell {
    Num(f64),
    /// Not a number: what came instead.
    Bad(String),
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or null")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
        Ok(Cell::Num(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
        Ok(Cell::Num(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
        Ok(Cell::Num(v as f64))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Num(f64::NAN))
    }
    fn visit_none<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Num(f64::NAN))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell, E> {
        Ok(Cell::Bad(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
        Ok(Cell::Bad(quoted(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
        skip_seq(&mut seq)?;
        Ok(Cell::Bad("an array".into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
        skip_map(&mut map)?;
        Ok(Cell::Bad("an object".into()))
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cell, D::Error> {
        d.deserialize_any(CellVisitor)
    }
}

/// A plain string key (no feature lookup).
pub(super) struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        String::deserialize(d)
    }
}

/// Reads the rest of a list without looking at it.
pub(super) fn skip_seq<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Reads the rest of an object without looking at it.
pub(super) fn skip_map<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// What the top-level JSON turned out to be, with the state of that form's reading.
pub(super) enum Shape {
    Unknown,
    /// A list of rows or records (at the top, or under a key).
    Rows,
    /// One flat row `[1, 2, 3]`.
    Flat,
    /// One record object `{"a": 1}`.
    Record(OneRecord),
    Columns(Columns),
    Index,
    Split(Split),
    Instances,
    Array(Ray),
}

/// The keys of a top-level object that name a form rather than a feature.
#[derive(Clone, Copy)]
enum Special {
    Instances,
    Array,
    Split,
}

/// The state of one JSON read: the sink, what the route and request ask for, what the body
/// has turned out to be.
pub(super) struct Json<'a> {
    pub(super) sink: Sink<'a>,
    pub(super) form: RequestForm,
    pub(super) orient: Option<Orient>,
    pub(super) shape: Shape,
    /// Which features the record being read gave (reused from record to record).
    pub(super) marks: Vec<bool>,
    /// The `request_key` was found.
    key_found: bool,
}

impl Json<'_> {
    pub(super) fn n(&self) -> usize {
        self.sink.n()
    }

    pub(super) fn shape_error(
        &mut self,
        row: Option<usize>,
        expected: impl Into<String>,
        got: &str,
    ) {
        let mut d = ErrorDetail::new(Problem::BadShape, expected).got(got);
        d.row = row;
        self.sink.error(d);
    }

    fn expected_row(&self) -> String {
        format!("{} values ({})", self.n(), self.sink.names_hint())
    }

    /// Checks a finished positional row's length.
    pub(super) fn row_length(&mut self, row: usize, len: usize) {
        if len != self.n() {
            let d = ErrorDetail::new(Problem::WrongFeatureCount, self.expected_row())
                .row(row)
                .got(format!("{len} values"));
            self.sink.error(d);
        }
    }

    /// A value for feature `col` of `row` (stored row `at`).
    pub(super) fn cell(&mut self, row: usize, at: Option<usize>, col: usize, c: Cell, named: bool) {
        let mut d = match c {
            Cell::Num(x) => match self.sink.put(at, col, x) {
                Ok(()) => return,
                Err(d) => d.row(row).column(col),
            },
            Cell::Bad(got) => ErrorDetail::new(Problem::NotANumber, "a number (or null)")
                .row(row)
                .column(col)
                .got(got),
        };
        if named && col < self.n() {
            d.field = Some(self.sink.name(col).to_string());
        }
        self.sink.error(d);
    }

    /// Records every feature of `row` its marks leave out.
    pub(super) fn missing_in_row(&mut self, row: usize, marks: &[bool]) {
        self.sink
            .missing(marks, "a value (null for a missing one)", Some(row));
    }

    /// A key that is no feature (in `row`, if one).
    pub(super) fn unknown(&mut self, row: Option<usize>, name: &str) {
        let mut d = self.sink.unknown("a feature name").field(name);
        d.row = row;
        self.sink.error(d);
    }

    fn allow_list(&self) -> Allow {
        let keyless = self.sink.spec().request_key.is_none();
        match (self.form, self.orient) {
            (RequestForm::Rows, _) => Allow {
                rows: true,
                records: false,
                flat: keyless,
            },
            (RequestForm::Records, _) => Allow {
                rows: false,
                records: true,
                flat: false,
            },
            (_, Some(Orient::Records)) => Allow {
                rows: false,
                records: true,
                flat: false,
            },
            (_, Some(Orient::Values)) => Allow {
                rows: true,
                records: false,
                flat: false,
            },
            (RequestForm::Instances, _) => Allow {
                rows: true,
                records: true,
                flat: false,
            },
            _ => Allow {
                rows: true,
                records: true,
                flat: keyless,
            },
        }
    }

    /// What the whole body should have been, for a shape error.
    pub(super) fn top_expected(&self) -> String {
        let key = |k: &str| format!("a JSON object {{\"{k}\": [...]}}");
        let request_key = &self.sink.spec().request_key;
        match (self.form, self.orient) {
            (_, _) if request_key.is_some() => key(request_key.as_deref().unwrap_or_default()),
            (RequestForm::Rows, _) => "rows [[...], ...]".into(),
            (RequestForm::Records, _) => {
                "records [{...}, ...] or one record {\"feature\": value, ...}".into()
            }
            (RequestForm::Instances, _) => key("instances"),
            (RequestForm::Array, _) => {
                "{\"array\": [...], \"shape\": [...], \"dtype\": \"...\"}".into()
            }
            (_, Some(Orient::Records)) => "orient=records: [{\"feature\": value, ...}, ...]".into(),
            (_, Some(Orient::Values)) => "orient=values: [[...], ...]".into(),
            (_, Some(Orient::Split)) => {
                "orient=split: {\"columns\": [...], \"index\": [...], \"data\": [[...], ...]}"
                    .into()
            }
            (_, Some(Orient::Columns)) => {
                "orient=columns: {\"feature\": {\"row label\": value, ...}, ...}".into()
            }
            (_, Some(Orient::Index)) => {
                "orient=index: {\"row label\": {\"feature\": value, ...}, ...}".into()
            }
            _ => "rows, records, {\"instances\": ...}, {\"array\": ...} or a pandas orient".into(),
        }
    }

    /// Takes `fresh`'s shape if the body has none yet; false (and a shape error naming what
    /// came, `got`) when it has another.
    pub(super) fn enter(&mut self, fresh: Shape, got: &str) -> bool {
        if matches!(self.shape, Shape::Unknown) {
            self.shape = fresh;
            return true;
        }
        if std::mem::discriminant(&self.shape) == std::mem::discriminant(&fresh) {
            return true;
        }
        let e = self.top_expected();
        self.shape_error(None, e, got);
        false
    }

    /// What an empty body should have been.
    fn expected_for(spec: &Spec, orient: Option<Orient>) -> String {
        match (spec.form, orient, &spec.request_key) {
            (_, _, Some(k)) => format!("{{\"{k}\": [...]}}"),
            (RequestForm::Instances, _, _) => "{\"instances\": [...]}".into(),
            (RequestForm::Array, _, _) => "{\"array\": [...]}".into(),
            (_, Some(o), _) => format!("orient={}", o.as_str()),
            _ => "rows, records, instances or an array".into(),
        }
    }
}

/// The top-level JSON value.
struct Top<'r, 'a> {
    r: &'r mut Json<'a>,
}

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Top<'_, '_> {
    fn wrong(self, got: &str) {
        let e = self.r.top_expected();
        self.r.shape_error(None, e, got);
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array or object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let r = self.r;
        let list_ok = r.sink.spec().request_key.is_none()
            && matches!(
                r.form,
                RequestForm::Auto | RequestForm::Rows | RequestForm::Records
            )
            && !matches!(
                r.orient,
                Some(Orient::Split | Orient::Columns | Orient::Index)
            );
        if !list_ok {
            skip_seq(&mut seq)?;
            let e = r.top_expected();
            r.shape_error(None, e, "an array");
            return Ok(());
        }
        r.shape = Shape::Rows;
        let allow = r.allow_list();
        ListSeed {
            r,
            allow,
            named: true,
        }
        .visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let r = self.r;
        // A route that reads rows or records under one key.
        if let Some(k) = r.sink.spec().request_key.as_deref() {
            while let Some(key) = map.next_key_seed(NameSeed)? {
                if key == k {
                    r.key_found = true;
                    r.shape = Shape::Rows;
                    let allow = r.allow_list();
                    map.next_value_seed(ListSeed {
                        r: &mut *r,
                        allow,
                        named: true,
                    })?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                    let d = ErrorDetail::new(Problem::BadShape, format!("only the key \"{k}\""))
                        .field(key);
                    r.sink.error(d);
                }
            }
            return Ok(());
        }
        match (r.form, r.orient) {
            (RequestForm::Records, _) => {
                r.shape = Shape::Record(OneRecord::default());
                let at = r.sink.begin_row();
                return super::lists::read_record(r, &mut map, 0, at);
            }
            (RequestForm::Rows | RequestForm::Csv | RequestForm::Query, _)
            | (_, Some(Orient::Records | Orient::Values)) => {
                skip_map(&mut map)?;
                let e = r.top_expected();
                r.shape_error(None, e, "an object");
                return Ok(());
            }
            _ => {}
        }
        while let Some(key) = map.next_key_seed(NameSeed)? {
            let feature = r.sink.lookup(&key);
            let special = match (r.form, r.orient, feature) {
                (RequestForm::Instances, _, _) => Some(Special::Instances),
                (RequestForm::Array, _, _) => Some(Special::Array),
                (_, Some(Orient::Split), _) => Some(Special::Split),
                (_, Some(Orient::Columns | Orient::Index), _) => None,
                // Answered before the loop.
                (_, Some(Orient::Records | Orient::Values), _) => None,
                (_, _, Some(_)) => None,
                (_, None, None) => match key.as_str() {
                    "instances" => Some(Special::Instances),
                    "array" | "shape" | "dtype" => Some(Special::Array),
                    "columns" | "data" | "index" => Some(Special::Split),
                    _ => None,
                },
            };
            match special {
                Some(Special::Instances) => {
                    if key != "instances" || !r.enter(Shape::Instances, "\"instances\"") {
                        map.next_value::<IgnoredAny>()?;
                        if key != "instances" {
                            let d =
                                ErrorDetail::new(Problem::BadShape, "only the key \"instances\"")
                                    .field(key);
                            r.sink.error(d);
                        }
                        continue;
                    }
                    let allow = Allow {
                        rows: true,
                        records: true,
                        flat: false,
                    };
                    map.next_value_seed(ListSeed {
                        r: &mut *r,
                        allow,
                        named: true,
                    })?;
                }
                Some(Special::Array) => {
                    if !r.enter(Shape::Array(Ray::default()), "\"array\"") {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    let Json {
                        shape: Shape::Array(ray),
                        sink,
                        ..
                    } = &mut *r
                    else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    ray.read_key(key, &mut map, sink)?;
                }
                Some(Special::Split) => {
                    if !r.enter(Shape::Split(Split::default()), "a pandas split object") {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    Split::read_key(r, key, &mut map)?;
                }
                None => {
                    map.next_value_seed(EntrySeed {
                        r: &mut *r,
                        key,
                        feature,
                    })?;
                }
            }
        }
        if let Json {
            shape: Shape::Record(one),
            sink,
            ..
        } = r
        {
            sink.missing(&one.given, "a value (null for a missing one)", Some(0));
        }
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.wrong("a number");
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.wrong("a number");
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.wrong("a number");
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.wrong("a string");
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.wrong("a boolean");
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.wrong("null");
        Ok(())
    }
}

fn json_error(e: serde_json::Error) -> InferError {
    match e.classify() {
        serde_json::error::Category::Data => InferError::unprocessable(
            vec![
                ErrorDetail::new(Problem::BadShape, "a different JSON structure")
                    .got(e.to_string()),
            ],
            1,
        ),
        serde_json::error::Category::Eof => {
            InferError::invalid(format!("the JSON body ends early: {e}"))
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
            InferError::invalid(format!("malformed JSON: {e}"))
        }
    }
}

/// Reads a JSON body.
pub fn read_json(
    body: &[u8],
    spec: &Spec,
    table: &Table,
    orient: Option<Orient>,
) -> Result<Parsed, InferError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(InferError::invalid(format!(
            "empty request body: expected JSON ({})",
            Json::expected_for(spec, orient)
        )));
    }
    let mut r = Json {
        sink: Sink::new(spec, table),
        form: spec.form,
        orient,
        shape: Shape::Unknown,
        marks: Vec::new(),
        key_found: false,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    Top { r: &mut r }.deserialize(&mut de).map_err(json_error)?;
    de.end().map_err(json_error)?;
    let single = match std::mem::replace(&mut r.shape, Shape::Unknown) {
        Shape::Array(ray) => ray.finish(&mut r),
        Shape::Split(split) => {
            split.finish(&mut r);
            false
        }
        Shape::Columns(columns) => {
            columns.finish(&mut r);
            false
        }
        Shape::Record(_) | Shape::Flat => true,
        Shape::Rows => {
            if spec.request_key.is_some() && !r.key_found {
                let e = r.top_expected();
                r.shape_error(None, e, "an object without it");
            }
            false
        }
        Shape::Unknown => {
            if spec.request_key.is_some() && !r.key_found {
                let e = r.top_expected();
                r.shape_error(None, e, "an object without it");
            } else if !r.sink.has_problems() {
                let e = r.top_expected();
                r.shape_error(None, e, "an empty object");
            }
            false
        }
        Shape::Index | Shape::Instances => false,
    };
    r.sink.finish(single)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{json, problems, table};
    use super::*;
    use ferroserve_core::config::RouteMethod;
    use serde_json::json;

    #[test]
    fn single_rows_are_marked_single() {
        assert!(json(&json!([1, 2, 3]), None).unwrap().single);
        assert!(
            json(&json!({"a": 1, "b c": 2, "d": 3}), None)
                .unwrap()
                .single
        );
        assert!(json(&json!({"array": [1, 2, 3]}), None).unwrap().single);
        assert!(!json(&json!([[1, 2, 3]]), None).unwrap().single);
        assert!(
            !json(&json!([{"a": 1, "b c": 2, "d": 3}]), None)
                .unwrap()
                .single
        );
    }

    #[test]
    fn problems_are_all_listed_with_where_they_are() {
        let e = json(&json!([[1, 2], [1, "x", 3], {"a": 1}]), None).unwrap_err();
        assert_eq!(e.kind, ferroserve_core::ErrorKind::Unprocessable);
        assert_eq!(
            problems(&e),
            ["wrong_feature_count", "not_a_number", "bad_shape"]
        );
        assert_eq!(e.details[1].row, Some(1));
        assert_eq!(e.details[1].column, Some(1));
        assert_eq!(e.details[1].field.as_deref(), Some("b c"));
        let e = json(&json!({"a": 1, "a ": 2}), None).unwrap_err();
        assert_eq!(
            problems(&e),
            ["unknown_feature", "missing_feature", "missing_feature"]
        );
        let e = json(
            &json!({"columns": ["a", "a", "zz"], "data": [[1, 2, 3]]}),
            None,
        )
        .unwrap_err();
        assert_eq!(
            problems(&e),
            [
                "duplicate_feature",
                "unknown_feature",
                "missing_feature",
                "missing_feature"
            ]
        );
        let e = json(&json!({"array": [[1, 2, 3], [1, 2]]}), None).unwrap_err();
        assert_eq!(problems(&e), ["bad_shape"]);
        let e = json(&json!({"array": [1, 2, 3, 4]}), None).unwrap_err();
        assert_eq!(problems(&e), ["wrong_feature_count"]);
        let e = json(&json!([[1, 2, 3]]), Some(Orient::Split)).unwrap_err();
        assert_eq!(problems(&e), ["bad_shape"]);
        let e = json(&json!({}), None).unwrap_err();
        assert_eq!(problems(&e), ["bad_shape"]);
        let e = json(&json!([]), None).unwrap_err();
        assert_eq!(problems(&e), ["no_rows"]);
        // Malformed JSON is a 400, not a list.
        let t = table();
        let spec = Spec::predict("m", RouteMethod::Post);
        let e = read_json(b"[[1, 2", &spec, &t, None).unwrap_err();
        assert_eq!(e.kind, ferroserve_core::ErrorKind::InvalidInput);
    }
}
