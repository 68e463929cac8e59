//! The one place a request's values go, whatever its form: [`Sink`] stores every value into
//! one `rows × features` buffer of the model's input type (NaN until set), counts rows
//! against the model's limit (rows over it are counted, not stored), and records every
//! problem with where it is (up to [`MAX_DETAILS`], all counted); [`Sink::finish`] answers the
//! rows, or one 422 listing the problems. The details every form words alike live here too: a
//! feature given twice, a name that is no feature, features left out, a header or column list
//! mapped onto the features ([`Sink::columns`]), and numbers written as text
//! ([`parse_number`], [`Sink::put_text`]: CSV cells, query parameters and forms).

use ferroserve_core::tensor::number_text;
use ferroserve_core::{DataType, ErrorDetail, InferError, Problem, TensorData};

use crate::friendly::table::{Spec, Table};
use crate::v2::json::{flat_to_tensor_data, Flat};

/// Most problems listed in one error body (all are counted).
pub const MAX_DETAILS: usize = 50;

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

/// A text as an error detail shows what came: JSON-quoted.
pub(super) fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "a string".into())
}

enum Buf {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Where rows go: one buffer of `rows × n` values (NaN until set), and the problems found.
pub struct Sink<'a> {
    spec: &'a Spec,
    table: &'a Table,
    n: usize,
    buf: Buf,
    /// Rows begun, including those over the limit (counted, not stored).
    rows: usize,
    details: Vec<ErrorDetail>,
    total: usize,
}

impl<'a> Sink<'a> {
    /// An empty sink for a request to `spec`'s route on `table`'s model.
    pub fn new(spec: &'a Spec, table: &'a Table) -> Sink<'a> {
        Sink {
            spec,
            table,
            n: table.n(),
            buf: match table.input_dtype {
                DataType::Fp32 | DataType::Fp16 | DataType::Bf16 => Buf::F32(Vec::new()),
                _ => Buf::F64(Vec::new()),
            },
            rows: 0,
            details: Vec::new(),
            total: 0,
        }
    }

    /// Features per row.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The route the request came to.
    pub fn spec(&self) -> &'a Spec {
        self.spec
    }

    /// The position of a feature named in the request (the route's names, the model's, its
    /// aliases).
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.spec.lookup(self.table, name)
    }

    /// The name the route shows for feature `i`.
    pub fn name(&self, i: usize) -> &'a str {
        self.spec.name(self.table, i)
    }

    /// The route's feature names, for error messages.
    pub fn names_hint(&self) -> String {
        self.spec.names_hint(self.table)
    }

    /// Records a problem (listed while there are fewer than [`MAX_DETAILS`]).
    pub fn error(&mut self, d: ErrorDetail) {
        self.total += 1;
        if self.details.len() < MAX_DETAILS {
            self.details.push(d);
        }
    }

    /// Whether any problem was recorded.
    pub fn has_problems(&self) -> bool {
        self.total > 0
    }

    /// Starts a row; `None` when the row is over the limit (it is counted, not stored).
    pub fn begin_row(&mut self) -> Option<usize> {
        let r = self.rows;
        self.rows += 1;
        if r >= self.table.max_rows {
            return None;
        }
        let n = self.n;
        match &mut self.buf {
            Buf::F32(v) => v.resize(v.len() + n, f32::NAN),
            Buf::F64(v) => v.resize(v.len() + n, f64::NAN),
        }
        Some(r)
    }

    /// Rows begun so far (over the limit included).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows stored (begun, up to the limit).
    pub fn stored(&self) -> usize {
        self.rows.min(self.table.max_rows)
    }

    /// Stores `x` (finite, or NaN for a missing value) as feature `col` of stored row `at`; or,
    /// when the model's input type cannot hold it (1e39 for FP32, which would become infinity;
    /// 2.5 or 300 for UINT8), answers the detail to record, for the caller to place.
    pub fn put(&mut self, at: Option<usize>, col: usize, x: f64) -> Result<(), ErrorDetail> {
        // NaN is a missing value; an integer input refuses it when the rows are converted.
        if !x.is_nan() && !self.table.input_dtype.holds(x) {
            return Err(self.out_of_range().got(number_text(x)));
        }
        if let Some(at) = at {
            self.set(at, col, x);
        }
        Ok(())
    }

    /// Stores a number written as text ([`parse_number`]) as feature `col` of stored row
    /// `at`, or records why it is not one, placed by `place` (row, column, field).
    pub fn put_text(
        &mut self,
        at: Option<usize>,
        col: usize,
        text: &str,
        place: impl Fn(ErrorDetail) -> ErrorDetail,
    ) {
        match parse_number(text) {
            Ok(x) => {
                if let Err(d) = self.put(at, col, x) {
                    self.error(place(d));
                }
            }
            Err(Refused::NotANumber) => self.error(place(
                ErrorDetail::new(
                    Problem::NotANumber,
                    "a finite number (empty, NA or NaN for a missing one)",
                )
                .got(quoted(text)),
            )),
            Err(Refused::OutOfRange) => {
                let d = place(self.out_of_range().got(quoted(text)));
                self.error(d);
            }
        }
    }

    /// The detail for a number the model's input type cannot hold (without `got`).
    pub fn out_of_range(&self) -> ErrorDetail {
        let dtype = self.table.input_dtype;
        ErrorDetail::new(
            Problem::OutOfRange,
            format!(
                "a number within the range of {dtype}, the model's input type ({})",
                dtype.range()
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

    /// Reorders the values of every stored row: new[perm[j]] = old[j].
    pub fn permute(&mut self, perm: &[usize]) {
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

    /// A feature given twice (to be placed).
    pub fn duplicate(expected: &str) -> ErrorDetail {
        ErrorDetail::new(Problem::DuplicateFeature, expected)
    }

    /// A name that is no feature (to be placed): `expected` says what was, followed by the
    /// route's names.
    pub fn unknown(&self, expected: &str) -> ErrorDetail {
        ErrorDetail::new(
            Problem::UnknownFeature,
            format!("{expected}: {}", self.names_hint()),
        )
    }

    /// Records every feature `given` does not mark, in feature order (in `row`, if one).
    pub fn missing(&mut self, given: &[bool], expected: &str, row: Option<usize>) {
        for (i, g) in given.iter().enumerate() {
            if !g {
                let mut d = ErrorDetail::new(Problem::MissingFeature, expected).field(self.name(i));
                d.row = row;
                self.error(d);
            }
        }
    }

    /// Maps a list of column names (a CSV header, pandas split `columns`) onto the features:
    /// for each column its feature, or `None` for a name given twice or that is no feature
    /// (`unknown` says what was expected); every feature left out is recorded too.
    pub fn columns<S: AsRef<str>>(
        &mut self,
        names: impl IntoIterator<Item = S>,
        unknown: &str,
    ) -> Vec<Option<usize>> {
        let mut given = vec![false; self.n];
        let mut map = Vec::new();
        for (j, name) in names.into_iter().enumerate() {
            let name = name.as_ref();
            match self.lookup(name) {
                Some(i) if given[i] => {
                    self.error(Sink::duplicate("each feature once").column(j).field(name));
                    map.push(None);
                }
                Some(i) => {
                    given[i] = true;
                    map.push(Some(i));
                }
                None => {
                    let d = self.unknown(unknown).column(j).field(name);
                    self.error(d);
                    map.push(None);
                }
            }
        }
        self.missing(&given, "a column for every feature", None);
        map
    }

    /// The rows, or every problem found.
    pub fn finish(mut self, single: bool) -> Result<Parsed, InferError> {
        let max_rows = self.table.max_rows;
        if self.rows > max_rows {
            self.total += 1;
            self.details.insert(
                0,
                ErrorDetail::new(
                    Problem::TooManyRows,
                    format!(
                        "at most {max_rows} rows per request (max_request_rows of model '{}')",
                        self.table.model
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
        let table = self.table;
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

#[cfg(test)]
mod tests {
    use super::super::read_json;
    use super::super::test_support::{problems, NAMES};
    use super::*;
    use ferroserve_core::config::RouteMethod;

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
    fn rows_over_the_limit_are_counted_not_stored() {
        let t = Table::for_tests(&NAMES, &[], 2);
        let spec = Spec::predict("m", RouteMethod::Post);
        let e = read_json(b"[[1,2,3],[1,2,3],[1,2,3],[1,2,3]]", &spec, &t, None).unwrap_err();
        assert_eq!(problems(&e), ["too_many_rows"]);
        assert_eq!(e.details[0].got.as_deref(), Some("4 rows"));
    }
}
