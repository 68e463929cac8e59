//! Name and value pairs: the query parameters of a friendly request (its options, and one row
//! of features on GET routes) and the fields of a form body. Values are numbers as text
//! ([`super::parse_number`]).

use std::borrow::Cow;

use ferroserve_core::{ErrorDetail, InferError, Problem};

use super::orients::Orient;
use super::sink::{quoted, Parsed, Sink};
use crate::friendly::table::{Spec, Table};

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
    let mut sink = Sink::new(spec, table);
    let at = sink.begin_row();
    let mut given = vec![false; sink.n()];
    for (k, v) in pairs {
        let Some(i) = sink.lookup(&k) else {
            let d = sink.unknown("a feature name").field(k.as_ref());
            sink.error(d);
            continue;
        };
        if given[i] {
            sink.error(Sink::duplicate("each feature once").field(k.as_ref()));
        }
        given[i] = true;
        sink.put_text(at, i, &v, |d| d.field(k.as_ref()));
    }
    sink.missing(&given, "a number (a query parameter per feature)", None);
    sink.finish(true)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{problems, table};
    use super::*;
    use ferroserve_core::config::RouteMethod;

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

    #[test]
    fn a_feature_named_like_an_option_is_a_feature() {
        let t = Table::for_tests(&["orient", "b"], &[], 10);
        let spec = Spec::predict("m", RouteMethod::Get);
        let (o, pairs) = split_query(Some("orient=1&b=2"), &spec, &t).unwrap();
        assert_eq!(o, Options::default());
        let p = read_pairs(pairs, &spec, &t).unwrap();
        assert!(p.single);
        assert_eq!(p.data, ferroserve_core::TensorData::Fp32(vec![1.0, 2.0]));
        let e = read_pairs(form_urlencoded::parse(b"b=1&b=2&zz=3"), &spec, &t).unwrap_err();
        assert_eq!(
            problems(&e),
            ["duplicate_feature", "unknown_feature", "missing_feature"]
        );
    }
}
