//! Differential tests: every `*.golden.json` in `tests/fixtures` (or in the folder named by
//! `FERROSERVE_GOLDEN_DIR`, as the live sweep does) names a model file trained by its library and
//! the library's own predictions on generated inputs. Both predictors must agree with them:
//! identical labels, scores within the file's stated tolerance.

use std::path::{Path, PathBuf};

use ferroserve_testkit::{worst, Tol};
use ferroserve_trees::{load_path, CompiledForest, Predictions, Walk};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    match std::env::var_os("FERROSERVE_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    }
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .expect("matrix")
        .iter()
        .map(|r| match r {
            Value::Array(cells) => cells
                .iter()
                .map(|c| c.as_f64().unwrap_or(f64::NAN))
                .collect(),
            c => vec![c.as_f64().unwrap_or(f64::NAN)],
        })
        .collect()
}

/// Compares one predictor's answers with the golden expectations; returns the problems found.
fn check(name: &str, which: &str, p: &Predictions, exp: &Value, tol: f64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut cmp_matrix = |key: &str, got: &dyn Fn(usize) -> Vec<f64>| {
        if let Some(m) = exp.get(key) {
            let m = matrix(m);
            assert_eq!(m.len(), p.n_rows, "{name}: {key} row count");
            let mut have = Vec::new();
            for (r, want) in m.iter().enumerate() {
                let row = got(r);
                if row.len() != want.len() {
                    problems.push(format!(
                        "{name} [{which}] {key} row {r}: {} columns, expected {}",
                        row.len(),
                        want.len()
                    ));
                    return;
                }
                have.extend(row);
            }
            let want: Vec<f64> = m.concat();
            if let Some(i) = worst(&have, &want, Tol::abs(tol)) {
                let cols = m[0].len().max(1);
                problems.push(format!(
                    "{name} [{which}] {key}: worst difference at row {} col {} (got {}, expected {}), tolerance {tol}",
                    i / cols,
                    i % cols,
                    have[i],
                    want[i]
                ));
            }
        }
    };
    cmp_matrix("raw", &|r| p.raw_row(r).to_vec());
    cmp_matrix("probabilities", &|r| p.scores_row(r).to_vec());
    cmp_matrix("values", &|r| p.scores_row(r).to_vec());
    if let Some(labels) = exp.get("labels") {
        let want: Vec<u32> = labels
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        match &p.labels {
            None => problems.push(format!("{name} [{which}]: no labels, expected some")),
            Some(have) => {
                let bad: Vec<usize> = (0..want.len()).filter(|&i| have[i] != want[i]).collect();
                if !bad.is_empty() {
                    problems.push(format!(
                        "{name} [{which}] labels differ on {} rows, first row {}: got {} expected {}",
                        bad.len(),
                        bad[0],
                        have[bad[0]],
                        want[bad[0]]
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_fixture_matches_its_library() {
    let dir = golden_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".golden.json"))
        .filter(|p| match std::env::var("FERROSERVE_GOLDEN_ONLY") {
            // A comma-separated list of name prefixes, to check one family while working on it.
            Ok(prefixes) => {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                prefixes.split(',').any(|pre| name.starts_with(pre))
            }
            Err(_) => true,
        })
        .collect();
    files.sort();
    let minimum: usize = std::env::var("FERROSERVE_GOLDEN_MIN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    assert!(
        files.len() >= minimum,
        "found {} golden files in {}, expected at least {minimum}",
        files.len(),
        dir.display()
    );
    let mut problems = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let doc: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let model = dir.join(doc["model"].as_str().unwrap());
        let forest = match load_path(&model) {
            Ok(forest) => forest,
            Err(e) => {
                problems.push(format!("{name}: load failed: {e}"));
                continue;
            }
        };
        let nf = doc["n_features"].as_u64().unwrap() as usize;
        assert_eq!(forest.n_features, nf, "{name}: feature count");
        let rows: Vec<f32> = matrix(&doc["inputs"])
            .into_iter()
            .flatten()
            .map(|v| v as f32)
            .collect();
        let tol = doc["tolerance"].as_f64().unwrap();
        let exp = &doc["expected"];
        if let Some(cl) = exp.get("class_labels") {
            let have = match &forest.class_labels {
                Some(ferroserve_trees::ir::ClassLabels::Int(v)) => {
                    v.iter().map(|x| Value::from(*x)).collect::<Vec<_>>()
                }
                Some(ferroserve_trees::ir::ClassLabels::Str(v)) => {
                    v.iter().map(|x| Value::from(x.clone())).collect()
                }
                None => Vec::new(),
            };
            let want: Vec<Value> = cl
                .as_array()
                .unwrap()
                .iter()
                .map(|v| match v.as_f64() {
                    Some(f) if v.is_number() && f.fract() == 0.0 => Value::from(f as i64),
                    _ => v.clone(),
                })
                .collect();
            if !have.is_empty() && have != want {
                problems.push(format!("{name}: class labels {have:?}, expected {want:?}"));
            }
        }
        let reference = ferroserve_trees::predict_reference(&forest, &rows);
        problems.extend(check(&name, "reference", &reference, exp, tol));
        let chosen = CompiledForest::new(forest.clone());
        let fast = chosen.predict(&rows);
        problems.extend(check(&name, "fast", &fast, exp, tol));
        // Every walk, whichever the forest would get, answers the reference's bits.
        for walk in Walk::ALL {
            let got = CompiledForest::new(forest.clone())
                .with_walk(walk)
                .predict(&rows);
            let same = got.raw.len() == reference.raw.len()
                && got
                    .raw
                    .iter()
                    .zip(&reference.raw)
                    .all(|(g, w)| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()));
            if !same || got.labels != reference.labels {
                problems.push(format!("{name}: walk {walk:?} differs from the reference"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} fixtures disagree:\n{}",
        problems.len(),
        files.len(),
        problems.join("\n")
    );
    eprintln!(
        "{} golden fixtures checked in {}",
        files.len(),
        dir.display()
    );
}
