//! Reading friendly requests straight into one typed row buffer: JSON rows, records in every
//! pandas orient, KServe v1 instances and Ray arrays through serde visitors (no
//! `serde_json::Value` trees), CSV through the `csv` reader, query and form parameters by name.
//!
//! Problems with the data do not stop the reading: each bad row, column or field is recorded
//! (up to [`MAX_DETAILS`]) and the request is answered once, with all of them (422). Only
//! malformed JSON stops at once (400).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use ferroserve_core::config::RequestForm;
use ferroserve_core::tensor::number_text;
use ferroserve_core::{DataType, ErrorDetail, InferError, Problem, TensorData};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::table::{Spec, Table};
use crate::v2::json::{flat_to_tensor_data, Flat};

/// Most problems listed in one error body (all are counted).
pub const MAX_DETAILS: usize = 50;

/// The pandas `orient` of a JSON body (query parameter `orient`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orient {
    Records,
    Split,
    Columns,
    Index,
    Values,
}

impl Orient {
    pub const ALL: [Orient; 5] = [
        Orient::Records,
        Orient::Split,
        Orient::Columns,
        Orient::Index,
        Orient::Values,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Orient::Records => "records",
            Orient::Split => "split",
            Orient::Columns => "columns",
            Orient::Index => "index",
            Orient::Values => "values",
        }
    }

    pub fn parse(s: &str) -> Option<Orient> {
        Orient::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Rows read from a request, ready for the model.
#[derive(Debug)]
pub struct Parsed {
    pub data: TensorData,
    pub rows: usize,
    /// The request was one row on its own (a record object, a flat row, query parameters).
    pub single: bool,
}

/// Why a text is not a value ([`parse_number`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a number: a word, or an infinity (`inf`), which JSON cannot carry either.
    NotANumber,
    /// A number beyond any float (`1e400`), which JSON refuses too.
    OutOfRange,
}

/// Parses a number as CSV cells, query parameters and forms carry it, by the rule JSON
/// follows: a missing value (NaN) is written empty, `NA`, `N/A`, `null`, `None` or `NaN` (as
/// `null` in JSON); infinities are refused, as numbers too large for any float (`1e400`) are.
/// Whether the model's input type holds the number is checked where it is stored.
pub fn parse_number(s: &str) -> Result<f64, Refused> {
    let t = s.trim();
    match t {
        "" | "NA" | "N/A" | "na" | "n/a" | "null" | "NULL" | "None" | "none" => Ok(f64::NAN),
        _ => match t.parse::<f64>() {
            // `NaN`, `nan`, `-nan` ... (any case, as Rust reads them): missing.
            Ok(x) if x.is_nan() => Ok(f64::NAN),
            Ok(x) if x.is_finite() => Ok(x),
            // An infinity: spelled out, or digits beyond the largest float.
            Ok(_) if t.trim_start_matches(['+', '-']).starts_with(['i', 'I']) => {
                Err(Refused::NotANumber)
            }
            Ok(_) => Err(Refused::OutOfRange),
            Err(_) => Err(Refused::NotANumber),
        },
    }
}

/// Whether a CSV cell reads as a number (or a missing one) rather than a column name: what
/// `parse_number` takes, and what it refuses as an infinity or out of range.
fn numeric_cell(s: &str) -> bool {
    parse_number(s).is_ok() || s.trim().parse::<f64>().is_ok()
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "a string".into())
}

enum Buf {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Where rows go: one buffer of `rows × n` values (NaN until set), and the problems found.
pub struct Sink {
    n: usize,
    max_rows: usize,
    /// The model's input type: every value stored must be one it holds.
    dtype: DataType,
    buf: Buf,
    /// Rows begun, including those over the limit (counted, not stored).
    rows: usize,
    details: Vec<ErrorDetail>,
    total: usize,
}

impl Sink {
    pub fn new(table: &Table) -> Sink {
        Sink {
            n: table.n(),
            max_rows: table.max_rows,
            dtype: table.input_dtype,
            buf: match table.input_dtype {
                DataType::Fp32 | DataType::Fp16 | DataType::Bf16 => Buf::F32(Vec::new()),
                _ => Buf::F64(Vec::new()),
            },
            rows: 0,
            details: Vec::new(),
            total: 0,
        }
    }

    pub fn error(&mut self, d: ErrorDetail) {
        self.total += 1;
        if self.details.len() < MAX_DETAILS {
            self.details.push(d);
        }
    }

    /// Starts a row; `None` when the row is over the limit (it is counted, not stored).
    fn begin_row(&mut self) -> Option<usize> {
        let r = self.rows;
        self.rows += 1;
        if r >= self.max_rows {
            return None;
        }
        let n = self.n;
        match &mut self.buf {
            Buf::F32(v) => v.resize(v.len() + n, f32::NAN),
            Buf::F64(v) => v.resize(v.len() + n, f64::NAN),
        }
        Some(r)
    }

    /// Stores `x` (finite, or NaN for a missing value) as feature `col` of stored row `at`; or,
    /// when the model's input type cannot hold it (1e39 for FP32, which would become infinity;
    /// 2.5 or 300 for UINT8), answers the detail to record, for the caller to place.
    fn put(&mut self, at: Option<usize>, col: usize, x: f64) -> Result<(), ErrorDetail> {
        // NaN is a missing value; an integer input refuses it when the rows are converted.
        if !x.is_nan() && !self.dtype.holds(x) {
            return Err(self.out_of_range().got(number_text(x)));
        }
        if let Some(at) = at {
            self.set(at, col, x);
        }
        Ok(())
    }

    /// The detail for a number the model's input type cannot hold (without `got`).
    fn out_of_range(&self) -> ErrorDetail {
        ErrorDetail::new(
            Problem::OutOfRange,
            format!(
                "a number within the range of {}, the model's input type ({})",
                self.dtype,
                self.dtype.range()
            ),
        )
    }

    fn set(&mut self, row: usize, col: usize, x: f64) {
        let i = row * self.n + col;
        match &mut self.buf {
            Buf::F32(v) => v[i] = x as f32,
            Buf::F64(v) => v[i] = x,
        }
    }

    fn stored(&self) -> usize {
        self.rows.min(self.max_rows)
    }

    /// Reorders the values of every stored row: new[perm[j]] = old[j].
    fn permute(&mut self, perm: &[usize]) {
        let n = self.n;
        fn go<T: Copy>(v: &mut [T], n: usize, perm: &[usize]) {
            let mut tmp = Vec::with_capacity(n);
            for row in v.chunks_mut(n) {
                tmp.clear();
                tmp.extend_from_slice(row);
                for (j, &p) in perm.iter().enumerate() {
                    row[p] = tmp[j];
                }
            }
        }
        match &mut self.buf {
            Buf::F32(v) => go(v, n, perm),
            Buf::F64(v) => go(v, n, perm),
        }
    }

    /// The rows, or every problem found.
    pub fn finish(mut self, single: bool, table: &Table) -> Result<Parsed, InferError> {
        if self.rows > self.max_rows {
            self.total += 1;
            self.details.insert(
                0,
                ErrorDetail::new(
                    Problem::TooManyRows,
                    format!(
                        "at most {} rows per request (max_request_rows of model '{}')",
                        self.max_rows, table.model
                    ),
                )
                .got(format!("{} rows", self.rows)),
            );
            self.details.truncate(MAX_DETAILS);
        } else if self.rows == 0 && self.total == 0 {
            self.error(ErrorDetail::new(Problem::NoRows, "at least one row").got("none"));
        }
        if self.total > 0 {
            return Err(InferError::unprocessable(self.details, self.total));
        }
        let data = match (self.buf, table.input_dtype) {
            (Buf::F32(v), DataType::Fp32) => TensorData::Fp32(v),
            (Buf::F64(v), DataType::Fp64) => TensorData::Fp64(v),
            (Buf::F32(v), dt) => convert(
                &table.input_name,
                dt,
                v.into_iter().map(f64::from).collect(),
            )?,
            (Buf::F64(v), dt) => convert(&table.input_name, dt, v)?,
        };
        Ok(Parsed {
            data,
            rows: self.rows,
            single,
        })
    }
}

fn convert(name: &str, dt: DataType, v: Vec<f64>) -> Result<TensorData, InferError> {
    flat_to_tensor_data(name, dt, Flat::Float(v)).map_err(|e| {
        InferError::unprocessable(
            vec![
                ErrorDetail::new(Problem::NotANumber, format!("{dt} values for this model"))
                    .got(e.message),
            ],
            1,
        )
    })
}

/// One JSON value where a number belongs.
enum Cell {
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
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Cell::Bad("an array".into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Cell::Bad("an object".into()))
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cell, D::Error> {
        d.deserialize_any(CellVisitor)
    }
}

/// Which shapes a list may hold here.
#[derive(Clone, Copy)]
struct Allow {
    rows: bool,
    records: bool,
    flat: bool,
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

/// What the top-level JSON turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unknown,
    /// A list of rows or records.
    Rows,
    /// One flat row `[1, 2, 3]`.
    Flat,
    /// One record object `{"a": 1}`.
    Record,
    Columns,
    Index,
    Split,
    Instances,
    Array,
}

/// A key of a JSON object.
enum Key {
    Feature(usize),
    Other(String),
}

struct KeySeed<'a> {
    spec: &'a Spec,
    table: &'a Table,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a feature name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match self.spec.lookup(self.table, v) {
            Some(i) => Key::Feature(i),
            None => Key::Other(v.to_string()),
        })
    }
}

/// A plain string key (no feature lookup).
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        String::deserialize(d)
    }
}

#[derive(Default)]
struct Split {
    columns: Option<Vec<String>>,
    has_data: bool,
}

#[derive(Default)]
struct Ray {
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

/// The state of one JSON read.
struct Reader<'a> {
    sink: Sink,
    spec: &'a Spec,
    table: &'a Table,
    form: RequestForm,
    orient: Option<Orient>,
    mode: Mode,
    /// Per-row "given" marks for records (reused), and per-cell marks for columns orient.
    seen: Vec<bool>,
    /// orient=columns: row label → (row number, stored row).
    index_rows: HashMap<String, (usize, Option<usize>)>,
    split: Split,
    ray: Ray,
    /// The `request_key` was found.
    key_found: bool,
}

impl<'a> Reader<'a> {
    fn n(&self) -> usize {
        self.sink.n
    }

    fn name(&self, i: usize) -> String {
        self.spec.name(self.table, i).to_string()
    }

    fn shape_error(&mut self, row: Option<usize>, expected: impl Into<String>, got: &str) {
        let mut d = ErrorDetail::new(Problem::BadShape, expected).got(got);
        d.row = row;
        self.sink.error(d);
    }

    fn expected_row(&self) -> String {
        format!("{} values ({})", self.n(), self.spec.names_hint(self.table))
    }

    /// Checks a finished positional row's length.
    fn row_length(&mut self, row: usize, len: usize) {
        if len != self.n() {
            let d = ErrorDetail::new(Problem::WrongFeatureCount, self.expected_row())
                .row(row)
                .got(format!("{len} values"));
            self.sink.error(d);
        }
    }

    /// A value for feature `col` of `row` (stored row `at`).
    fn cell(&mut self, row: usize, at: Option<usize>, col: usize, c: Cell, named: bool) {
        match c {
            Cell::Num(x) => {
                if let Err(d) = self.sink.put(at, col, x) {
                    let mut d = d.row(row).column(col);
                    if named && col < self.n() {
                        d.field = Some(self.name(col));
                    }
                    self.sink.error(d);
                }
            }
            Cell::Bad(got) => {
                let mut d = ErrorDetail::new(Problem::NotANumber, "a number (or null)")
                    .row(row)
                    .column(col)
                    .got(got);
                if named && col < self.n() {
                    d.field = Some(self.name(col));
                }
                self.sink.error(d);
            }
        }
    }

    fn missing_in_row(&mut self, row: usize, marks: &[bool]) {
        for (i, given) in marks.iter().enumerate() {
            if !given {
                let d =
                    ErrorDetail::new(Problem::MissingFeature, "a value (null for a missing one)")
                        .row(row)
                        .field(self.name(i));
                self.sink.error(d);
            }
        }
    }

    fn unknown(&mut self, row: Option<usize>, name: &str) {
        let mut d = ErrorDetail::new(
            Problem::UnknownFeature,
            format!("a feature name: {}", self.spec.names_hint(self.table)),
        )
        .field(name);
        d.row = row;
        self.sink.error(d);
    }

    fn allow_list(&self) -> Allow {
        match (self.form, self.orient) {
            (RequestForm::Rows, _) => Allow {
                rows: true,
                records: false,
                flat: self.spec.request_key.is_none(),
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
                flat: self.spec.request_key.is_none(),
            },
        }
    }

    fn top_expected(&self) -> String {
        let key = |k: &str| format!("a JSON object {{\"{k}\": [...]}}");
        match (self.form, self.orient) {
            (_, _) if self.spec.request_key.is_some() => {
                key(self.spec.request_key.as_deref().unwrap_or_default())
            }
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

    fn set_mode(&mut self, m: Mode, got: &str) -> bool {
        if self.mode == Mode::Unknown || self.mode == m {
            self.mode = m;
            true
        } else {
            let e = self.top_expected();
            self.shape_error(None, e, got);
            false
        }
    }
}

/// A list of rows, records, or the values of one flat row.
struct ListSeed<'r, 'a> {
    r: &'r mut Reader<'a>,
    allow: Allow,
    named: bool,
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
            self.r.mode = Mode::Flat;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
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
    r: &'r mut Reader<'a>,
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
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        read_row(self.r, &mut seq, self.i, self.named)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        if !self.fits(ListKind::Records, "an object") {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
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
    r: &mut Reader<'_>,
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

/// Reads one record `{"feature": value, ...}` (`row` is its number in the request).
fn read_record<'de, A: MapAccess<'de>>(
    r: &mut Reader<'_>,
    map: &mut A,
    row: usize,
    at: Option<usize>,
) -> Result<(), A::Error> {
    let n = r.n();
    let mut marks = std::mem::take(&mut r.seen);
    marks.clear();
    marks.resize(n, false);
    while let Some(k) = map.next_key_seed(KeySeed {
        spec: r.spec,
        table: r.table,
    })? {
        match k {
            Key::Feature(i) => {
                let c: Cell = map.next_value()?;
                if marks[i] {
                    let d = ErrorDetail::new(Problem::DuplicateFeature, "each feature once")
                        .row(row)
                        .field(r.name(i));
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
    r.seen = marks;
    Ok(())
}

/// The top-level JSON value.
struct Top<'r, 'a> {
    r: &'r mut Reader<'a>,
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

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let r = self.r;
        let list_ok = r.spec.request_key.is_none()
            && matches!(
                r.form,
                RequestForm::Auto | RequestForm::Rows | RequestForm::Records
            )
            && !matches!(
                r.orient,
                Some(Orient::Split | Orient::Columns | Orient::Index)
            );
        if !list_ok {
            let mut seq = seq;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            let e = r.top_expected();
            r.shape_error(None, e, "an array");
            return Ok(());
        }
        r.mode = Mode::Rows;
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
        if let Some(k) = r.spec.request_key.clone() {
            while let Some(key) = map.next_key_seed(NameSeed)? {
                if key == k {
                    r.key_found = true;
                    r.mode = Mode::Rows;
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
                r.mode = Mode::Record;
                let at = r.sink.begin_row();
                return read_record(r, &mut map, 0, at);
            }
            (RequestForm::Rows | RequestForm::Csv | RequestForm::Query, _)
            | (_, Some(Orient::Records | Orient::Values)) => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                let e = r.top_expected();
                r.shape_error(None, e, "an object");
                return Ok(());
            }
            _ => {}
        }
        let mut first_row_at: Option<Option<usize>> = None;
        while let Some(key) = map.next_key_seed(NameSeed)? {
            let feature = r.spec.lookup(r.table, &key);
            let special = match (r.form, r.orient, feature) {
                (RequestForm::Instances, _, _) => Some(Mode::Instances),
                (RequestForm::Array, _, _) => Some(Mode::Array),
                (_, Some(Orient::Split), _) => Some(Mode::Split),
                (_, Some(Orient::Columns | Orient::Index), _) => None,
                // Answered before the loop.
                (_, Some(Orient::Records | Orient::Values), _) => None,
                (_, _, Some(_)) => None,
                (_, None, None) => match key.as_str() {
                    "instances" => Some(Mode::Instances),
                    "array" | "shape" | "dtype" => Some(Mode::Array),
                    "columns" | "data" | "index" => Some(Mode::Split),
                    _ => None,
                },
            };
            match special {
                Some(Mode::Instances) => {
                    if key != "instances" || !r.set_mode(Mode::Instances, "\"instances\"") {
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
                Some(Mode::Array) => {
                    if !r.set_mode(Mode::Array, "\"array\"") {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    match key.as_str() {
                        "array" => {
                            r.ray.has_array = true;
                            map.next_value_seed(NdSeed {
                                ray: &mut r.ray,
                                depth: 0,
                                path: &mut Vec::new(),
                            })?;
                        }
                        "shape" => r.ray.shape = Some(map.next_value()?),
                        "dtype" => r.ray.dtype = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            let d = ErrorDetail::new(
                                Problem::BadShape,
                                "only the keys \"array\", \"shape\" and \"dtype\"",
                            )
                            .field(key);
                            r.sink.error(d);
                        }
                    }
                }
                Some(Mode::Split) => {
                    if !r.set_mode(Mode::Split, "a pandas split object") {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    match key.as_str() {
                        "columns" => r.split.columns = Some(map.next_value()?),
                        "index" | "name" => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        "data" => {
                            r.split.has_data = true;
                            let allow = Allow {
                                rows: true,
                                records: false,
                                flat: false,
                            };
                            map.next_value_seed(ListSeed {
                                r: &mut *r,
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
                }
                Some(_) | None => {
                    map.next_value_seed(EntrySeed {
                        r: &mut *r,
                        key,
                        feature,
                        first_row_at: &mut first_row_at,
                    })?;
                }
            }
        }
        if r.mode == Mode::Record {
            let marks = std::mem::take(&mut r.seen);
            r.missing_in_row(0, &marks);
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

/// The value of one key of a top-level object that is not a special key: the value of a
/// feature (one record), a column (orient=columns) or a row (orient=index).
struct EntrySeed<'r, 'a, 'k> {
    r: &'r mut Reader<'a>,
    key: String,
    feature: Option<usize>,
    first_row_at: &'k mut Option<Option<usize>>,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl EntrySeed<'_, '_, '_> {
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
        if !r.set_mode(Mode::Record, "one record") {
            return;
        }
        let n = r.n();
        let at = *self.first_row_at.get_or_insert_with(|| {
            r.seen.clear();
            r.seen.resize(n, false);
            r.sink.begin_row()
        });
        if r.seen[i] {
            let d = ErrorDetail::new(Problem::DuplicateFeature, "each feature once")
                .row(0)
                .field(r.name(i));
            r.sink.error(d);
        }
        r.seen[i] = true;
        r.cell(0, at, i, c, true);
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_, '_, '_> {
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
            if !r.set_mode(Mode::Columns, "a column {\"row label\": value}") {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(());
            }
            let Some(i) = self.feature else {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                r.unknown(None, &self.key);
                return Ok(());
            };
            let n = r.n();
            while let Some(label) = map.next_key_seed(NameSeed)? {
                let c: Cell = map.next_value()?;
                // Rows are numbered by the order their labels first appear.
                let (row, at) = match r.index_rows.get(&label) {
                    Some(&v) => v,
                    None => {
                        let row = r.index_rows.len();
                        let at = r.sink.begin_row();
                        r.index_rows.insert(label.clone(), (row, at));
                        r.seen.resize((row + 1) * n, false);
                        (row, at)
                    }
                };
                let mark = row * n + i;
                if mark < r.seen.len() {
                    if r.seen[mark] {
                        let d = ErrorDetail::new(
                            Problem::DuplicateFeature,
                            "each row label once per column",
                        )
                        .row(row)
                        .field(r.name(i))
                        .got(quoted(&label));
                        r.sink.error(d);
                    }
                    r.seen[mark] = true;
                }
                r.cell(row, at, i, c, true);
            }
        } else {
            if !r.set_mode(Mode::Index, "a row {\"feature\": value}") {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(());
            }
            let row = r.sink.rows;
            let at = r.sink.begin_row();
            read_record(r, &mut map, row, at)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        let r = self.r;
        match self.feature {
            Some(i) => {
                let d = ErrorDetail::new(Problem::NotANumber, "a number (or null)")
                    .row(0)
                    .field(r.name(i))
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
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
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

impl Reader<'_> {
    /// Turns the collected Ray array into rows.
    fn finish_array(&mut self) {
        let ray = std::mem::take(&mut self.ray);
        if !ray.has_array {
            let e = self.top_expected();
            self.shape_error(None, e, "no \"array\"");
            return;
        }
        if let Some(d) = &ray.dtype {
            if !dtype_ok(d) {
                let e = ErrorDetail::new(
                    Problem::BadValue,
                    "a numeric numpy dtype (float32, float64, int64, ...)",
                )
                .field("dtype")
                .got(quoted(d));
                self.sink.error(e);
            }
        }
        let n = self.n();
        let natural: Vec<usize> = match ray.leaf_depth {
            Some(d) => ray.dims.iter().take(d).map(|x| x.unwrap_or(0)).collect(),
            None => Vec::new(),
        };
        if ray.ragged {
            self.shape_error(
                None,
                "a regular (not ragged) nested array",
                "arrays of different lengths",
            );
            return;
        }
        let len = ray.values.len();
        let shape: Vec<usize> = match &ray.shape {
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
                        self.sink.error(d);
                        return;
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
            self.sink.error(d);
            return;
        }
        let (rows, single) = match shape.as_slice() {
            [c] if *c == n => (1, true),
            [r, c] if *c == n => (*r, false),
            _ => {
                let d = ErrorDetail::new(
                    Problem::WrongFeatureCount,
                    format!(
                        "shape [{n}] or [rows, {n}] ({})",
                        self.spec.names_hint(self.table)
                    ),
                )
                .field("array")
                .got(format!("{shape:?}"));
                self.sink.error(d);
                return;
            }
        };
        for (path, got) in ray.bad {
            let (row, col) = match path.as_slice() {
                [c] => (0, *c),
                [r, c] => (*r, *c),
                _ => (0, 0),
            };
            let d = ErrorDetail::new(Problem::NotANumber, "a number (or null)")
                .row(row)
                .column(col)
                .field(self.name(col.min(n.saturating_sub(1))))
                .got(got);
            self.sink.error(d);
        }
        let mut values = ray.values.into_iter();
        for r in 0..rows {
            let at = self.sink.begin_row();
            for c in 0..n {
                let x = values.next().unwrap_or(f64::NAN);
                if let Err(d) = self.sink.put(at, c, x) {
                    let d = d.row(r).column(c).field(self.name(c));
                    self.sink.error(d);
                }
            }
        }
        if single {
            self.mode = Mode::Flat;
        }
    }

    /// Maps the split columns to features and reorders the rows.
    fn finish_split(&mut self) {
        let Some(columns) = self.split.columns.take() else {
            let e = self.top_expected();
            self.shape_error(None, e, "no \"columns\"");
            return;
        };
        if !self.split.has_data {
            let e = self.top_expected();
            self.shape_error(None, e, "no \"data\"");
            return;
        }
        let n = self.n();
        let mut perm = Vec::with_capacity(columns.len());
        let mut given = vec![false; n];
        let mut ok = true;
        for (j, c) in columns.iter().enumerate() {
            match self.spec.lookup(self.table, c) {
                Some(i) if given[i] => {
                    let d = ErrorDetail::new(Problem::DuplicateFeature, "each feature once")
                        .column(j)
                        .field(c.clone());
                    self.sink.error(d);
                    ok = false;
                }
                Some(i) => {
                    given[i] = true;
                    perm.push(i);
                }
                None => {
                    let d = ErrorDetail::new(
                        Problem::UnknownFeature,
                        format!("a feature name: {}", self.spec.names_hint(self.table)),
                    )
                    .column(j)
                    .field(c.clone());
                    self.sink.error(d);
                    ok = false;
                }
            }
        }
        for (i, g) in given.iter().enumerate() {
            if !g {
                let d = ErrorDetail::new(Problem::MissingFeature, "a column for every feature")
                    .field(self.name(i));
                self.sink.error(d);
                ok = false;
            }
        }
        if ok && perm.iter().enumerate().any(|(j, &i)| i != j) {
            self.sink.permute(&perm);
        }
    }

    fn finish_columns(&mut self) {
        let n = self.n();
        let rows = self.sink.stored();
        let seen = std::mem::take(&mut self.seen);
        for r in 0..rows {
            let marks = &seen[r * n..((r + 1) * n).min(seen.len())];
            if marks.len() == n {
                self.missing_in_row(r, marks);
            }
        }
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
            Reader::expected_for(spec, orient)
        )));
    }
    let mut r = Reader {
        sink: Sink::new(table),
        spec,
        table,
        form: spec.form,
        orient,
        mode: Mode::Unknown,
        seen: Vec::new(),
        index_rows: HashMap::new(),
        split: Split::default(),
        ray: Ray::default(),
        key_found: false,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    Top { r: &mut r }.deserialize(&mut de).map_err(json_error)?;
    de.end().map_err(json_error)?;
    let mut single = false;
    match r.mode {
        Mode::Array => r.finish_array(),
        Mode::Split => r.finish_split(),
        Mode::Columns => r.finish_columns(),
        Mode::Record => single = true,
        Mode::Rows => {
            if spec.request_key.is_some() && !r.key_found {
                let e = r.top_expected();
                r.shape_error(None, e, "an object without it");
            }
        }
        Mode::Unknown => {
            if spec.request_key.is_some() && !r.key_found {
                let e = r.top_expected();
                r.shape_error(None, e, "an object without it");
            } else if r.sink.total == 0 {
                let e = r.top_expected();
                r.shape_error(None, e, "an empty object");
            }
        }
        Mode::Flat | Mode::Index | Mode::Instances => {}
    }
    if r.mode == Mode::Flat {
        single = true;
    }
    r.sink.finish(single, table)
}

impl Reader<'_> {
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

/// Options a friendly request may carry in its query string besides feature values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `probabilities=true`: add class probabilities to the answer.
    pub probabilities: bool,
    /// `orient=...`: the pandas orient of the JSON body.
    pub orient: Option<Orient>,
}

/// Query parameter names with a meaning of their own (unless a feature has the same name).
pub const OPTION_NAMES: [&str; 2] = ["probabilities", "orient"];

/// (name, value) pairs of a query string or form.
pub type Pairs<'q> = Vec<(Cow<'q, str>, Cow<'q, str>)>;

/// Splits a query string into options and (name, value) pairs for features.
pub fn split_query<'q>(
    query: Option<&'q str>,
    spec: &Spec,
    table: &Table,
) -> Result<(Options, Pairs<'q>), InferError> {
    let mut opts = Options::default();
    let mut pairs = Vec::new();
    let mut bad = Vec::new();
    let Some(q) = query else {
        return Ok((opts, pairs));
    };
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        let is_option = OPTION_NAMES.contains(&k.as_ref()) && spec.lookup(table, &k).is_none();
        if !is_option {
            pairs.push((k, v));
            continue;
        }
        match k.as_ref() {
            "probabilities" => match v.as_ref() {
                "true" | "1" | "yes" | "" => opts.probabilities = true,
                "false" | "0" | "no" => opts.probabilities = false,
                other => bad.push(
                    ErrorDetail::new(Problem::BadValue, "true or false")
                        .field("probabilities")
                        .got(quoted(other)),
                ),
            },
            _ => match Orient::parse(&v) {
                Some(o) => opts.orient = Some(o),
                None => bad.push(
                    ErrorDetail::new(
                        Problem::BadValue,
                        "one of records, split, columns, index, values",
                    )
                    .field("orient")
                    .got(quoted(&v)),
                ),
            },
        }
    }
    if bad.is_empty() {
        Ok((opts, pairs))
    } else {
        let n = bad.len();
        Err(InferError::unprocessable(bad, n))
    }
}

/// Reads one row from (name, value) pairs: query parameters or a form body.
pub fn read_pairs<'q>(
    pairs: impl IntoIterator<Item = (Cow<'q, str>, Cow<'q, str>)>,
    spec: &Spec,
    table: &Table,
) -> Result<Parsed, InferError> {
    let mut sink = Sink::new(table);
    let n = table.n();
    let at = sink.begin_row();
    let mut given = vec![false; n];
    for (k, v) in pairs {
        match spec.lookup(table, &k) {
            Some(i) => {
                if given[i] {
                    sink.error(
                        ErrorDetail::new(Problem::DuplicateFeature, "each feature once")
                            .field(k.as_ref()),
                    );
                }
                given[i] = true;
                match parse_number(&v) {
                    Ok(x) => {
                        if let Err(d) = sink.put(at, i, x) {
                            sink.error(d.field(k.as_ref()));
                        }
                    }
                    Err(Refused::NotANumber) => sink.error(
                        ErrorDetail::new(
                            Problem::NotANumber,
                            "a finite number (empty, NA or NaN for a missing one)",
                        )
                        .field(k.as_ref())
                        .got(quoted(&v)),
                    ),
                    Err(Refused::OutOfRange) => {
                        let d = sink.out_of_range().field(k.as_ref()).got(quoted(&v));
                        sink.error(d);
                    }
                }
            }
            None => sink.error(
                ErrorDetail::new(
                    Problem::UnknownFeature,
                    format!("a feature name: {}", spec.names_hint(table)),
                )
                .field(k.as_ref()),
            ),
        }
    }
    for (i, g) in given.iter().enumerate() {
        if !g {
            sink.error(
                ErrorDetail::new(
                    Problem::MissingFeature,
                    "a number (a query parameter per feature)",
                )
                .field(spec.name(table, i)),
            );
        }
    }
    sink.finish(true, table)
}

/// Reads CSV: one row per line, values in feature order, or in any order under a header row
/// naming the features (a first line that is not all numbers is a header).
pub fn read_csv(body: &[u8], spec: &Spec, table: &Table) -> Result<Parsed, InferError> {
    let mut sink = Sink::new(table);
    let n = table.n();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let mut rec = csv::ByteRecord::new();
    // Column j of the file → feature (None: a column that maps to nothing).
    let mut columns: Option<Vec<Option<usize>>> = None;
    let mut first = true;
    let mut row = 0;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                sink.error(
                    ErrorDetail::new(Problem::BadShape, "well-formed CSV")
                        .row(row)
                        .got(e.to_string()),
                );
                break;
            }
        }
        if first {
            first = false;
            let header = rec
                .iter()
                .any(|f| !numeric_cell(&String::from_utf8_lossy(f)));
            if header {
                let mut given = vec![false; n];
                let mut map = Vec::with_capacity(rec.len());
                for (j, f) in rec.iter().enumerate() {
                    let name = String::from_utf8_lossy(f);
                    match spec.lookup(table, &name) {
                        Some(i) if given[i] => {
                            sink.error(
                                ErrorDetail::new(Problem::DuplicateFeature, "each feature once")
                                    .column(j)
                                    .field(name.as_ref()),
                            );
                            map.push(None);
                        }
                        Some(i) => {
                            given[i] = true;
                            map.push(Some(i));
                        }
                        None => {
                            sink.error(
                                ErrorDetail::new(
                                    Problem::UnknownFeature,
                                    format!("a header naming features: {}", spec.names_hint(table)),
                                )
                                .column(j)
                                .field(name.as_ref()),
                            );
                            map.push(None);
                        }
                    }
                }
                for (i, g) in given.iter().enumerate() {
                    if !g {
                        sink.error(
                            ErrorDetail::new(Problem::MissingFeature, "a column for every feature")
                                .field(spec.name(table, i)),
                        );
                    }
                }
                columns = Some(map);
                continue;
            }
        }
        let at = sink.begin_row();
        let width = columns.as_ref().map_or(n, Vec::len);
        if rec.len() > width {
            sink.error(
                ErrorDetail::new(
                    Problem::TooManyColumns,
                    format!("{width} columns ({})", spec.names_hint(table)),
                )
                .row(row)
                .got(format!("{} columns", rec.len())),
            );
        } else if rec.len() < width {
            sink.error(
                ErrorDetail::new(
                    Problem::WrongFeatureCount,
                    format!("{width} columns ({})", spec.names_hint(table)),
                )
                .row(row)
                .got(format!("{} columns", rec.len())),
            );
        }
        for (j, f) in rec.iter().enumerate().take(width) {
            let col = match &columns {
                Some(map) => match map[j] {
                    Some(c) => c,
                    None => continue,
                },
                None => j,
            };
            let text = String::from_utf8_lossy(f);
            let place = |d: ErrorDetail| d.row(row).column(j).field(spec.name(table, col));
            match parse_number(&text) {
                Ok(x) => {
                    if let Err(d) = sink.put(at, col, x) {
                        sink.error(place(d));
                    }
                }
                Err(Refused::NotANumber) => sink.error(place(
                    ErrorDetail::new(
                        Problem::NotANumber,
                        "a finite number (empty, NA or NaN for a missing one)",
                    )
                    .got(quoted(&text)),
                )),
                Err(Refused::OutOfRange) => {
                    let d = place(sink.out_of_range().got(quoted(&text)));
                    sink.error(d);
                }
            }
        }
        row += 1;
    }
    sink.finish(false, table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::config::RouteMethod;
    use proptest::prelude::*;
    use serde_json::json;

    const NAMES: [&str; 3] = ["a", "b c", "d"];

    fn table() -> Table {
        Table::for_tests(&NAMES, &[("alias_a", 0)], 100)
    }

    fn values(p: &Parsed) -> Vec<f32> {
        match &p.data {
            TensorData::Fp32(v) => v.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn json(body: &serde_json::Value, orient: Option<Orient>) -> Result<Parsed, InferError> {
        let t = table();
        let spec = Spec::predict("m", RouteMethod::Post);
        read_json(&serde_json::to_vec(body).unwrap(), &spec, &t, orient)
    }

    fn problems(e: &InferError) -> Vec<&'static str> {
        e.details.iter().map(|d| d.problem.as_str()).collect()
    }

    proptest! {
        /// Rows, records (keys in any order), split (columns in any order), columns, index,
        /// instances, arrays and CSV with or without a header all read to the same buffer.
        #[test]
        fn every_form_reads_the_same_rows(
            rows in prop::collection::vec(prop::collection::vec(-1e6f64..1e6, 3), 1..6),
            perm in Just([0usize, 1, 2]).prop_shuffle(),
        ) {
            let t = table();
            let spec = Spec::predict("m", RouteMethod::Post);
            let want: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
            let rec = |r: &Vec<f64>| {
                let mut m = serde_json::Map::new();
                for &i in &perm {
                    m.insert(NAMES[i].to_string(), json!(r[i]));
                }
                serde_json::Value::Object(m)
            };
            let pnames: Vec<&str> = perm.iter().map(|&i| NAMES[i]).collect();
            let prows: Vec<Vec<f64>> = rows.iter().map(|r| perm.iter().map(|&i| r[i]).collect()).collect();
            let mut cols = serde_json::Map::new();
            for &i in &perm {
                let c: serde_json::Map<String, serde_json::Value> =
                    rows.iter().enumerate().map(|(k, r)| (format!("x{k}"), json!(r[i]))).collect();
                cols.insert(NAMES[i].to_string(), serde_json::Value::Object(c));
            }
            let index: serde_json::Map<String, serde_json::Value> =
                rows.iter().enumerate().map(|(k, r)| (format!("x{k}"), rec(r))).collect();
            let bodies = vec![
                (json!(rows), None),
                (json!(rows.iter().map(rec).collect::<Vec<_>>()), None),
                (json!(rows.iter().map(rec).collect::<Vec<_>>()), Some(Orient::Records)),
                (json!({"columns": pnames, "data": prows}), Some(Orient::Split)),
                (json!({"data": prows, "columns": pnames}), None),
                (serde_json::Value::Object(cols), None),
                (serde_json::Value::Object(index.clone()), Some(Orient::Index)),
                (serde_json::Value::Object(index), None),
                (json!({"instances": rows}), None),
                (json!({"array": rows}), None),
                (json!({"array": rows.concat(), "shape": [-1, 3]}), None),
            ];
            for (body, orient) in bodies {
                let p = read_json(&serde_json::to_vec(&body).unwrap(), &spec, &t, orient)
                    .unwrap_or_else(|e| panic!("{body}: {e:?}"));
                prop_assert_eq!(p.rows, rows.len());
                prop_assert_eq!(values(&p), want.clone(), "{}", body);
            }
            let csv_plain: String = rows.iter().map(|r| format!("{},{},{}\n", r[0], r[1], r[2])).collect();
            let csv_header = format!("{}\n{}", pnames.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
                prows.iter().map(|r| format!("{},{},{}\n", r[0], r[1], r[2])).collect::<String>());
            for body in [csv_plain, csv_header] {
                let p = read_csv(body.as_bytes(), &spec, &t).unwrap();
                prop_assert_eq!(values(&p), want.clone());
            }
        }

        /// Whatever bytes come, reading answers rows or an error, never a panic.
        #[test]
        fn any_bytes_read_without_panicking(body in prop::collection::vec(any::<u8>(), 0..64)) {
            let t = table();
            let spec = Spec::predict("m", RouteMethod::Post);
            let _ = read_json(&body, &spec, &t, None);
            let _ = read_csv(&body, &spec, &t);
        }
    }

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
    fn nulls_and_missing_cells_are_nan() {
        let p = json(&json!([[null, 2, 3]]), None).unwrap();
        assert!(values(&p)[0].is_nan());
        let t = table();
        let spec = Spec::predict("m", RouteMethod::Post);
        let p = read_csv(b"a,b c,d\n,NA,3\n", &spec, &t).unwrap();
        let v = values(&p);
        assert!(v[0].is_nan() && v[1].is_nan() && v[2] == 3.0);
        let p = read_pairs(form_urlencoded::parse(b"alias_a=1&b+c=nan&d=2"), &spec, &t).unwrap();
        assert!(values(&p)[1].is_nan());
    }

    /// (problem, row, column, field, got) of one detail.
    type Placed<'a> = (
        &'a str,
        Option<usize>,
        Option<usize>,
        Option<&'a str>,
        &'a str,
    );

    fn placed(e: &InferError) -> Vec<Placed<'_>> {
        e.details
            .iter()
            .map(|d| {
                (
                    d.problem.as_str(),
                    d.row,
                    d.column,
                    d.field.as_deref(),
                    d.got.as_deref().unwrap_or(""),
                )
            })
            .collect()
    }

    #[test]
    fn text_numbers_follow_the_json_rule() {
        // Missing (NaN), as null is in JSON.
        for t in [
            "", " ", "NA", "N/A", "null", "None", "NaN", "nan", "-nan", "NAN",
        ] {
            assert!(parse_number(t).unwrap().is_nan(), "{t:?}");
        }
        for (t, x) in [("1", 1.0), (" -2.5 ", -2.5), ("1e39", 1e39), ("+3", 3.0)] {
            assert_eq!(parse_number(t), Ok(x), "{t:?}");
        }
        // Infinities are refused, as JSON cannot carry them; so are numbers beyond any float.
        for t in ["inf", "-inf", "+Infinity", "INF", "infinity"] {
            assert_eq!(parse_number(t), Err(Refused::NotANumber), "{t:?}");
        }
        for t in ["1e400", "-1e309", "123e999"] {
            assert_eq!(parse_number(t), Err(Refused::OutOfRange), "{t:?}");
        }
        for t in ["x", "1,5", "0x10", "1 2", "true"] {
            assert_eq!(parse_number(t), Err(Refused::NotANumber), "{t:?}");
        }
    }

    #[test]
    fn csv_query_and_json_refuse_the_same_values() {
        let t = table();
        let spec = Spec::predict("m", RouteMethod::Post);
        let e = read_csv(b"a,b c,d\n1,inf,1e400\n1e39,NaN,\n", &spec, &t).unwrap_err();
        let fp32 = "a number within the range of FP32, the model's input type (numbers up to ±3.4028235e38)";
        assert_eq!(
            placed(&e),
            [
                ("not_a_number", Some(0), Some(1), Some("b c"), "\"inf\""),
                ("out_of_range", Some(0), Some(2), Some("d"), "\"1e400\""),
                ("out_of_range", Some(1), Some(0), Some("a"), "1e39"),
            ]
        );
        assert_eq!(e.details[2].expected, fp32);
        // A first line with an infinity is data, not a header.
        let e = read_csv(b"inf,1,2\n", &spec, &t).unwrap_err();
        assert_eq!(problems(&e), ["not_a_number"]);
        let e = read_pairs(
            form_urlencoded::parse(b"a=-inf&b+c=1e400&d=-1e39"),
            &spec,
            &t,
        )
        .unwrap_err();
        assert_eq!(
            placed(&e),
            [
                ("not_a_number", None, None, Some("a"), "\"-inf\""),
                ("out_of_range", None, None, Some("b c"), "\"1e400\""),
                ("out_of_range", None, None, Some("d"), "-1e39"),
            ]
        );
        let e = json(&json!([[1, 2, 3], [1e39, 2, -3.5e38]]), None).unwrap_err();
        assert_eq!(
            placed(&e),
            [
                ("out_of_range", Some(1), Some(0), Some("a"), "1e39"),
                ("out_of_range", Some(1), Some(2), Some("d"), "-3.5e38"),
            ]
        );
        let e = json(&json!({"a": 1, "b c": 1e39, "d": 3}), None).unwrap_err();
        assert_eq!(
            placed(&e),
            [("out_of_range", Some(0), Some(1), Some("b c"), "1e39")]
        );
        let e = json(&json!({"array": [[1, 2, 3], [4, 5, 1e300]]}), None).unwrap_err();
        assert_eq!(
            placed(&e),
            [("out_of_range", Some(1), Some(2), Some("d"), "1e300")]
        );
        // JSON itself refuses 1e400 (malformed: no float holds it).
        let e = read_json(b"[[1, 2, 1e400]]", &spec, &t, None).unwrap_err();
        assert_eq!(e.kind, ferroserve_core::ErrorKind::InvalidInput);
        assert!(e.message.contains("number out of range"), "{}", e.message);
        // The largest FP32, and anything for an FP64 model, are values.
        let p = json(&json!([[3.4028235e38, -3.4028235e38, 1e-60]]), None).unwrap();
        assert_eq!(values(&p)[0], f32::MAX);
        let mut wide = table();
        wide.input_dtype = DataType::Fp64;
        let p = read_csv(b"1e39,1e300,-1e308\n", &spec, &wide).unwrap();
        assert_eq!(p.data, TensorData::Fp64(vec![1e39, 1e300, -1e308]));
        // An integer input: whole numbers in range, placed like the rest.
        let mut ints = table();
        ints.input_dtype = DataType::Uint8;
        let e = read_csv(b"1,2.5,300\n", &spec, &ints).unwrap_err();
        assert_eq!(
            placed(&e),
            [
                ("out_of_range", Some(0), Some(1), Some("b c"), "2.5"),
                ("out_of_range", Some(0), Some(2), Some("d"), "300"),
            ]
        );
        let p = read_csv(b"1,2,255\n", &spec, &ints).unwrap();
        assert_eq!(p.data, TensorData::Uint8(vec![1, 2, 255]));
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

    #[test]
    fn rows_over_the_limit_are_counted_not_stored() {
        let t = Table::for_tests(&NAMES, &[], 2);
        let spec = Spec::predict("m", RouteMethod::Post);
        let e = read_json(b"[[1,2,3],[1,2,3],[1,2,3],[1,2,3]]", &spec, &t, None).unwrap_err();
        assert_eq!(problems(&e), ["too_many_rows"]);
        assert_eq!(e.details[0].got.as_deref(), Some("4 rows"));
    }

    #[test]
    fn options_come_out_of_the_query() {
        let t = table();
        let spec = Spec::predict("m", RouteMethod::Post);
        let (o, pairs) =
            split_query(Some("orient=split&probabilities=true&a=1"), &spec, &t).unwrap();
        assert_eq!(o.orient, Some(Orient::Split));
        assert!(o.probabilities);
        assert_eq!(pairs.len(), 1);
        let e = split_query(Some("orient=table&probabilities=maybe"), &spec, &t).unwrap_err();
        assert_eq!(problems(&e), ["bad_value", "bad_value"]);
    }
}
