//! Reading friendly requests straight into one typed row buffer, one file per request form,
//! all over one [`Sink`] (the model's rows, the row limit, the problems found, the wording of
//! the problems every form shares; `sink.rs`):
//!
//! - JSON through serde visitors, no `serde_json::Value` trees (`json.rs`, which tells the
//!   forms apart): lists of rows and records, one row (`lists.rs`); one record and the pandas
//!   orients keyed by name (`orients.rs`); KServe v1 instances; Ray arrays (`ray.rs`);
//! - CSV through the `csv` reader (`csv.rs`);
//! - query parameters and form fields by name (`pairs.rs`).
//!
//! Problems with the data do not stop the reading: each bad row, column or field is recorded
//! (up to [`MAX_DETAILS`]) and the request is answered once, with all of them (422). Only
//! malformed JSON stops at once (400).

mod csv;
mod json;
mod lists;
mod orients;
mod pairs;
mod ray;
mod sink;

pub use self::csv::read_csv;
pub use json::read_json;
pub use orients::Orient;
pub use pairs::{read_pairs, split_query, Options, Pairs, OPTION_NAMES};
pub use sink::{parse_number, Parsed, Refused, Sink, MAX_DETAILS};

/// What the tests of every form share: a three-feature table and ways to look at answers.
#[cfg(test)]
mod test_support {
    use ferroserve_core::config::RouteMethod;
    use ferroserve_core::{InferError, TensorData};

    use super::{read_json, Orient, Parsed};
    use crate::friendly::table::{Spec, Table};

    pub(super) const NAMES: [&str; 3] = ["a", "b c", "d"];

    /// FP32 input, features `a`, `b c`, `d` (`alias_a` for `a`), at most 100 rows.
    pub(super) fn table() -> Table {
        Table::for_tests(&NAMES, &[("alias_a", 0)], 100)
    }

    pub(super) fn values(p: &Parsed) -> Vec<f32> {
        match &p.data {
            TensorData::Fp32(v) => v.clone(),
            other => panic!("{other:?}"),
        }
    }

    /// A JSON body to `/models/m/predict` on [`table`].
    pub(super) fn json(
        body: &serde_json::Value,
        orient: Option<Orient>,
    ) -> Result<Parsed, InferError> {
        let t = table();
        let spec = Spec::predict("m", RouteMethod::Post);
        read_json(&serde_json::to_vec(body).unwrap(), &spec, &t, orient)
    }

    pub(super) fn problems(e: &InferError) -> Vec<&'static str> {
        e.details.iter().map(|d| d.problem.as_str()).collect()
    }

    /// (problem, row, column, field, got) of one detail.
    pub(super) type Placed<'a> = (
        &'a str,
        Option<usize>,
        Option<usize>,
        Option<&'a str>,
        &'a str,
    );

    pub(super) fn placed(e: &InferError) -> Vec<Placed<'_>> {
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
}

#[cfg(test)]
mod tests {
    use super::test_support::{json, placed, problems, table, values, NAMES};
    use super::*;
    use crate::friendly::table::Spec;
    use ferroserve_core::config::RouteMethod;
    use ferroserve_core::{DataType, TensorData};
    use proptest::prelude::*;
    use serde_json::json;

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
}
