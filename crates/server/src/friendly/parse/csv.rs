//! CSV bodies (a `text/csv` body or a multipart file), read by the `csv` crate: one row per
//! line, values in feature order, or in any order under a header row naming the features (a
//! first line that is not all numbers is a header). Cells are numbers as text
//! ([`super::parse_number`]).

use std::borrow::Cow;

use ferroserve_core::{ErrorDetail, InferError, Problem};

use super::sink::{parse_number, Parsed, Sink};
use crate::friendly::table::{Spec, Table};

/// Whether a CSV cell reads as a number (or a missing one) rather than a column name: what
/// `parse_number` takes, and what it refuses as an infinity or out of range.
fn numeric_cell(s: &str) -> bool {
    parse_number(s).is_ok() || s.trim().parse::<f64>().is_ok()
}

/// Reads CSV: one row per line, values in feature order, or in any order under a header row
/// naming the features (a first line that is not all numbers is a header).
pub fn read_csv(body: &[u8], spec: &Spec, table: &Table) -> Result<Parsed, InferError> {
    let mut sink = Sink::new(spec, table);
    let n = sink.n();
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(body);
    let mut rec = ::csv::ByteRecord::new();
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
                let names: Vec<Cow<str>> = rec.iter().map(String::from_utf8_lossy).collect();
                columns = Some(sink.columns(names, "a header naming features"));
                continue;
            }
        }
        let at = sink.begin_row();
        let width = columns.as_ref().map_or(n, Vec::len);
        if rec.len() != width {
            let problem = if rec.len() > width {
                Problem::TooManyColumns
            } else {
                Problem::WrongFeatureCount
            };
            sink.error(
                ErrorDetail::new(problem, format!("{width} columns ({})", sink.names_hint()))
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
            let name = sink.name(col);
            sink.put_text(at, col, &text, |d| d.row(row).column(j).field(name));
        }
        row += 1;
    }
    sink.finish(false)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{placed, problems, table, values};
    use super::*;
    use ferroserve_core::config::RouteMethod;

    #[test]
    fn a_header_names_the_columns_in_any_order() {
        let t = table();
        let spec = Spec::predict("m", RouteMethod::Post);
        let p = read_csv(b"d,alias_a,b c\n3,1,2\n6,4,5\n", &spec, &t).unwrap();
        assert_eq!(values(&p), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(!p.single);
        // Columns that map to nothing are named, and their cells skipped.
        let e = read_csv(b"a,zz,a,d\n1,2,3,4\n", &spec, &t).unwrap_err();
        assert_eq!(
            placed(&e),
            [
                ("unknown_feature", None, Some(1), Some("zz"), ""),
                ("duplicate_feature", None, Some(2), Some("a"), ""),
                ("missing_feature", None, None, Some("b c"), ""),
            ]
        );
        let e = read_csv(b"1,2\n1,2,3,4\n", &spec, &t).unwrap_err();
        assert_eq!(problems(&e), ["wrong_feature_count", "too_many_columns"]);
        assert_eq!(e.details[1].row, Some(1));
    }
}
