//! What every test crate shares: the one comparison of an answer with the library's
//! ([`assert_close`], [`assert_same`], [`assert_shape`]) and [`require`], the run-time half of
//! the ignored-test mechanism whose build-time half is `ferroserve_probe::build`.
//!
//! The comparison checks length (and shape) first, so a lost or extra row fails; treats NaN as
//! a failure unless the expected value is NaN too (a missing value answered by design); and
//! names the worst element with its index, both values and the tolerance, so a failure says
//! where the answers part.

use serde_json::Value;

pub use ferroserve_probe::{in_ci, Need, PYTHON_ML};

/// How far an answer may be from the library's: `|got - want| <= abs + rel * |want|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tol {
    pub abs: f64,
    pub rel: f64,
}

impl Tol {
    /// Exactly equal (NaN matching NaN).
    pub const EXACT: Tol = Tol { abs: 0.0, rel: 0.0 };

    /// An absolute tolerance.
    pub const fn abs(abs: f64) -> Tol {
        Tol { abs, rel: 0.0 }
    }

    /// An absolute plus a relative tolerance.
    pub const fn abs_rel(abs: f64, rel: f64) -> Tol {
        Tol { abs, rel }
    }

    fn allows(&self, got: f64, want: f64) -> bool {
        if want.is_nan() || got.is_nan() {
            return want.is_nan() && got.is_nan();
        }
        if want.is_infinite() || got.is_infinite() {
            return got == want;
        }
        (got - want).abs() <= self.abs + self.rel * want.abs()
    }

    fn excess(&self, got: f64, want: f64) -> f64 {
        if self.allows(got, want) {
            0.0
        } else if got.is_finite() && want.is_finite() {
            (got - want).abs() - (self.abs + self.rel * want.abs())
        } else {
            f64::INFINITY
        }
    }
}

/// The first element (by index) among those furthest outside the tolerance, if any.
pub fn worst(got: &[f64], want: &[f64], tol: Tol) -> Option<usize> {
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = tol.excess(g, w);
        if e > 0.0 && worst.is_none_or(|(_, we)| e > we) {
            worst = Some((i, e));
        }
    }
    worst.map(|(i, _)| i)
}

/// Panics unless `got` has `want`'s length and every element is within `tol` of it (NaN only
/// where `want` is NaN). `what` names the answer in the message.
#[track_caller]
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: Tol) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values answered, {} expected\n  got:  {}\n  want: {}",
        got.len(),
        want.len(),
        preview(got),
        preview(want)
    );
    if let Some(i) = worst(got, want, tol) {
        let bad = got
            .iter()
            .zip(want)
            .filter(|(g, w)| !tol.allows(**g, **w))
            .count();
        panic!(
            "{what}: {bad} of {} values outside abs {} + rel {}; worst at index {i}: got {}, want {}",
            want.len(),
            tol.abs,
            tol.rel,
            got[i],
            want[i]
        );
    }
}

/// Panics unless `got` and `want` are equal element by element, after checking their lengths;
/// names the first difference.
#[track_caller]
pub fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values answered, {} expected\n  got:  {got:?}\n  want: {want:?}",
        got.len(),
        want.len()
    );
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!(
            "{what}: differs first at index {i}: got {:?}, want {:?}\n  got:  {got:?}\n  want: {want:?}",
            got[i], want[i]
        );
    }
}

/// Panics unless the shape answered is the one expected.
#[track_caller]
pub fn assert_shape(what: &str, got: &[i64], want: &[i64]) {
    assert_eq!(
        got, want,
        "{what}: shape {got:?} answered, {want:?} expected"
    );
}

fn preview(v: &[f64]) -> String {
    if v.len() <= 12 {
        format!("{v:?}")
    } else {
        format!("{:?} ... ({} values)", &v[..12], v.len())
    }
}

/// Every number in a JSON value, nested arrays flattened in order; `null` counts as NaN (the
/// server answers NaN as `null`). Panics on anything else, naming it.
#[track_caller]
pub fn numbers(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    flatten(v, &mut out);
    out
}

#[track_caller]
fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap()),
        Value::Null => out.push(f64::NAN),
        Value::Bool(b) => out.push(f64::from(u8::from(*b))),
        other => panic!("expected a number or an array of numbers, got {other}"),
    }
}

/// Every string in a JSON value, nested arrays flattened in order. Panics on anything else.
#[track_caller]
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::String(s) => vec![s.clone()],
        other => panic!("expected a string or an array of strings, got {other}"),
    }
}

/// How many leaves (numbers, strings, nulls) a JSON value holds, nested arrays flattened.
pub fn numbers_or_strings_len(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(numbers_or_strings_len).sum(),
        _ => 1,
    }
}

/// The run-time half of an ignored test: a test carrying
/// `#[cfg_attr(<cfg>, ignore = "...")]` runs only where the build found `need` (or under
/// `CI=true`), so here a missing need is a failure, naming what is missing for `what`.
#[track_caller]
pub fn require(need: Need<'_>, what: &str) {
    if let Err(reason) = need.find() {
        if in_ci() {
            panic!("CI=true, so {what} may not be skipped, but: {reason}");
        }
        panic!(
            "{what}: {reason} (it was there when this test was built; build again to ignore it)"
        );
    }
}

/// Copies the folder `from` (files and sub-folders) to `to`, creating it: a model folder
/// copied into a test's own repository.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::catch_unwind;

    fn fails(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = catch_unwind(f).expect_err("should have failed");
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    #[test]
    fn equal_and_within_tolerance_pass() {
        assert_close("x", &[1.0, 2.0], &[1.0, 2.0], Tol::EXACT);
        assert_close("x", &[1.0, 2.000_001], &[1.0, 2.0], Tol::abs(1e-5));
        assert_close("x", &[100.1], &[100.0], Tol::abs_rel(0.0, 1e-2));
        assert_close("x", &[f64::NAN, 1.0], &[f64::NAN, 1.0], Tol::EXACT);
        assert_close("x", &[f64::INFINITY], &[f64::INFINITY], Tol::abs(1.0));
    }

    #[test]
    fn a_lost_row_fails_on_length() {
        let msg = fails(|| assert_close("rows", &[1.0], &[1.0, 2.0], Tol::abs(1.0)));
        assert!(msg.contains("1 values answered, 2 expected"), "{msg}");
        let msg = fails(|| assert_same("labels", &["a"], &["a", "b"]));
        assert!(msg.contains("1 values answered, 2 expected"), "{msg}");
    }

    #[test]
    fn nan_fails_unless_expected() {
        let msg = fails(|| assert_close("p", &[0.5, f64::NAN], &[0.5, 0.25], Tol::abs(1e-3)));
        assert!(msg.contains("index 1") && msg.contains("NaN"), "{msg}");
        let msg = fails(|| assert_close("p", &[0.5], &[f64::NAN], Tol::abs(1e3)));
        assert!(msg.contains("index 0"), "{msg}");
        let msg = fails(|| assert_close("p", &[f64::INFINITY], &[1e300], Tol::abs(1e3)));
        assert!(msg.contains("index 0"), "{msg}");
    }

    #[test]
    fn the_worst_element_is_named() {
        let got = [1.0, 2.5, 3.1, 4.0];
        let want = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(worst(&got, &want, Tol::abs(0.05)), Some(1));
        assert_eq!(worst(&got, &want, Tol::abs(0.6)), None);
        let msg = fails(move || assert_close("p", &got, &want, Tol::abs(0.05)));
        assert!(
            msg.contains("2 of 4") && msg.contains("index 1: got 2.5, want 2"),
            "{msg}"
        );
        let msg = fails(|| assert_same("labels", &["a", "b", "c"], &["a", "x", "c"]));
        assert!(msg.contains("index 1"), "{msg}");
    }

    #[test]
    fn json_numbers_flatten_and_null_is_nan() {
        let v: Value = serde_json::json!([[1, 2.5], [null, 4]]);
        let n = numbers(&v);
        assert_eq!(n.len(), 4);
        assert_eq!(n[1], 2.5);
        assert!(n[2].is_nan());
        assert_eq!(
            strings(&serde_json::json!([["a"], ["b"]])),
            vec!["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn shapes_must_match() {
        assert_shape("s", &[2, 3], &[2, 3]);
        let msg = fails(|| assert_shape("s", &[3], &[3, 1]));
        assert!(msg.contains("[3]") && msg.contains("[3, 1]"), "{msg}");
    }
}
