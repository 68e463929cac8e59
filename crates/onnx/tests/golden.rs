//! Differential tests of the ONNX Runtime backend: every graph in `tests/fixtures` (ZipMap with
//! integer and string classes, one input per column with a string column, FP64 in and out,
//! string in and out, strings through an identity, a graph fixed at one row) and the two ONNX Runtime examples in `examples/models` answer what ONNX
//! Runtime's Python API and scikit-learn answered (`fixtures/golden.json`,
//! `examples/models/expected.json`, written by `make_fixtures.py` and `train.py`). Also:
//! metadata, session options, bad inputs, BYTES that are not text (NUL, invalid UTF-8) through
//! ONNX Runtime, the task read from the outputs, and instances running at once on several
//! threads, each with its own session.
//!
//! Without ONNX Runtime these tests show as ignored, with the reason (`build.rs`), except under
//! `CI=true`, where CI installs it and its absence fails them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferroserve_core::config::OptimizationLevel;
use ferroserve_core::model::Batch;
use ferroserve_core::{DataType, ModelConfig, Tensor, TensorData};
use ferroserve_onnx::{OnnxError, OnnxInstance, OnnxModel};
use ferroserve_testkit::{assert_close, numbers as json_numbers, require, Need, Tol};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn load(file: &Path, cfg: &ModelConfig) -> OnnxModel {
    OnnxModel::load(cfg, file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// One instance of the graph (with the session built at load time), as an instance thread has.
fn instance(file: &Path, cfg: &ModelConfig) -> OnnxInstance {
    Arc::new(load(file, cfg)).new_instance().unwrap()
}

/// A request tensor from `{"name", "datatype", "shape", "data"}`.
fn tensor(v: &Value) -> Tensor {
    let shape: Vec<i64> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap())
        .collect();
    let data = v["data"].as_array().unwrap();
    let data = match DataType::parse(v["datatype"].as_str().unwrap()).unwrap() {
        DataType::Fp32 => {
            TensorData::Fp32(data.iter().map(|x| x.as_f64().unwrap() as f32).collect())
        }
        DataType::Fp64 => TensorData::Fp64(data.iter().map(|x| x.as_f64().unwrap()).collect()),
        DataType::Bytes => TensorData::Bytes(
            data.iter()
                .map(|x| x.as_str().unwrap().as_bytes().to_vec())
                .collect(),
        ),
        other => panic!("no fixture uses {other}"),
    };
    Tensor::new(v["name"].as_str().unwrap(), shape, data)
}

fn batch(inputs: Vec<Tensor>) -> Batch {
    let rows = inputs[0].shape[0] as usize;
    Batch {
        inputs,
        rows,
        outputs: vec![],
    }
}

fn numbers(d: &TensorData) -> Vec<f64> {
    (0..d.len()).map(|i| d.get_f64(i).unwrap()).collect()
}

fn output<'a>(out: &'a [Tensor], name: &str) -> &'a Tensor {
    out.iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no output {name}"))
}

#[test]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
fn fixtures_answer_what_onnxruntime_and_sklearn_answer() {
    require(Need::OnnxRuntime, "the ONNX fixture differential test");
    let golden = read_json(&fixtures().join("golden.json"));
    let mut checked = 0;
    for (name, case) in golden.as_object().unwrap() {
        if !case.is_object() {
            continue;
        }
        let mut model = instance(
            &fixtures().join(format!("{name}.onnx")),
            &ModelConfig::default(),
        );
        let inputs: Vec<Tensor> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(tensor)
            .collect();
        let out = model.run(&batch(inputs)).unwrap();
        for (oname, want) in case["outputs"].as_object().unwrap() {
            let got = output(&out, oname);
            let shape: Vec<i64> = serde_json::from_value(want["shape"].clone()).unwrap();
            assert_eq!(got.shape, shape, "{name}/{oname} shape");
            match &got.data {
                TensorData::Bytes(b) => {
                    let got: Vec<String> = b
                        .iter()
                        .map(|s| String::from_utf8(s.clone()).unwrap())
                        .collect();
                    let want: Vec<String> = serde_json::from_value(want["data"].clone()).unwrap();
                    assert_eq!(got, want, "{name}/{oname}");
                }
                d => {
                    assert_close(
                        &format!("{name}/{oname} vs onnxruntime"),
                        &numbers(d),
                        &json_numbers(&want["data"]),
                        Tol::abs(1e-6),
                    );
                }
            }
        }
        if let Some(sk) = case.get("sklearn") {
            for (oname, want) in sk.as_object().unwrap() {
                assert_close(
                    &format!("{name}/{oname} vs scikit-learn"),
                    &numbers(&output(&out, oname).data),
                    &json_numbers(want),
                    Tol::abs(1e-4),
                );
            }
        }
        if let Some(labels) = case.get("class_labels") {
            let want: Vec<String> = serde_json::from_value(labels.clone()).unwrap();
            assert_eq!(
                model_labels(model.model()),
                Some(want),
                "{name} class labels"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 7);
}

fn model_labels(m: &OnnxModel) -> Option<Vec<String>> {
    use ferroserve_core::LoadedModel;
    m.metadata()
        .task
        .class_labels()
        .map(ferroserve_core::ClassLabels::as_strings)
}

#[test]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
fn metadata_comes_from_the_graph() {
    require(Need::OnnxRuntime, "the ONNX metadata test");
    use ferroserve_core::LoadedModel;
    let m = load(&fixtures().join("zipmap_str.onnx"), &ModelConfig::default());
    let meta = m.metadata();
    assert_eq!(meta.platform, "onnxruntime_onnx");
    assert_eq!(meta.inputs.len(), 1);
    assert_eq!(meta.inputs[0].name, "input");
    assert_eq!(meta.inputs[0].datatype, DataType::Fp32);
    assert_eq!(meta.inputs[0].shape, vec![-1, 4]);
    let outs: Vec<(&str, DataType, Vec<i64>)> = meta
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.datatype, o.shape.clone()))
        .collect();
    assert_eq!(
        outs,
        vec![
            ("output_label", DataType::Bytes, vec![-1]),
            ("output_probability", DataType::Fp32, vec![-1, 3]),
        ]
    );
    assert!(meta.description.contains("ZipMap"), "{}", meta.description);

    let cols = load(&fixtures().join("columns.onnx"), &ModelConfig::default());
    let meta = cols.metadata();
    let ins: Vec<(&str, DataType, Vec<i64>)> = meta
        .inputs
        .iter()
        .map(|o| (o.name.as_str(), o.datatype, o.shape.clone()))
        .collect();
    assert_eq!(
        ins,
        vec![
            ("color", DataType::Bytes, vec![-1, 1]),
            ("size", DataType::Fp32, vec![-1, 1]),
            ("weight", DataType::Fp32, vec![-1, 1]),
        ]
    );
    assert_eq!(
        meta.feature_names,
        Some(vec!["color".into(), "size".into(), "weight".into()])
    );

    // model.toml labels override the graph's; a wrong count is refused.
    let cfg = ModelConfig::from_toml(r#"class_labels = ["a", "b", "c"]"#).unwrap();
    let m = load(&fixtures().join("zipmap_int.onnx"), &cfg);
    assert_eq!(
        model_labels(&m),
        Some(vec!["a".into(), "b".into(), "c".into()])
    );
    let cfg = ModelConfig::from_toml(r#"class_labels = ["a", "b"]"#).unwrap();
    let e = OnnxModel::load(&cfg, &fixtures().join("zipmap_int.onnx"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("class_labels"), "{e}");
    let cfg = ModelConfig::from_toml(r#"feature_names = ["a", "b"]"#).unwrap();
    let e = OnnxModel::load(&cfg, &fixtures().join("zipmap_int.onnx"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("feature_names"), "{e}");
}

/// The task comes from the outputs' kinds and shapes, whatever they are called: skl2onnx's
/// `output_label` / `output_probability` (ZipMap) as well as the bundled examples' `label` /
/// `probabilities`; a lone numeric output without classes is a regressor's; strings are neither.
#[test]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
fn the_task_is_read_from_the_outputs() {
    require(Need::OnnxRuntime, "the ONNX task test");
    use ferroserve_core::{ClassLabels, Classifier, LoadedModel, Regressor, Task};
    let task = |file: &Path, cfg: &ModelConfig| load(file, cfg).metadata().task.clone();
    let classifier = |labels: ClassLabels, label: &str, probabilities: &str| {
        Task::Classifier(Classifier {
            labels,
            label_output: Some(label.into()),
            probabilities_output: Some(probabilities.into()),
        })
    };
    let none = ModelConfig::default();
    let iris = ClassLabels::Str(vec![
        "setosa".into(),
        "versicolor".into(),
        "virginica".into(),
    ]);
    assert_eq!(
        task(&fixtures().join("zipmap_str.onnx"), &none),
        classifier(iris.clone(), "output_label", "output_probability")
    );
    assert_eq!(
        task(&fixtures().join("zipmap_int.onnx"), &none),
        classifier(
            ClassLabels::Int(vec![0, 1, 2]),
            "output_label",
            "output_probability"
        )
    );
    assert_eq!(
        task(
            &root().join("examples/models/wine_pipeline/1/model.onnx"),
            &none
        ),
        classifier(ClassLabels::Int(vec![0, 1, 2]), "label", "probabilities")
    );
    // The MLP's classes come from model.toml (the graph holds them as a constant).
    let named =
        ModelConfig::from_toml(r#"class_labels = ["setosa", "versicolor", "virginica"]"#).unwrap();
    assert_eq!(
        task(
            &root().join("examples/models/iris_mlp/1/model.onnx"),
            &named
        ),
        classifier(iris, "label", "probabilities")
    );
    assert_eq!(
        task(&fixtures().join("regressor_f64.onnx"), &none),
        Task::Regressor(Regressor {
            output: "variable".into()
        })
    );
    assert_eq!(
        task(&fixtures().join("identity_bytes.onnx"), &none),
        Task::Other
    );
}

/// The two bundled ONNX Runtime examples answer what scikit-learn and onnxruntime answered.
#[test]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
fn bundled_examples_match_sklearn_and_onnxruntime() {
    require(Need::OnnxRuntime, "the bundled ONNX example test");
    let exp = read_json(&root().join("examples/models/expected.json"));
    for name in ["wine_pipeline", "iris_mlp"] {
        let e = &exp[name];
        for level in [None, Some(OptimizationLevel::Disable)] {
            let cfg = ModelConfig {
                intra_op_threads: Some(2),
                optimization_level: level,
                ..ModelConfig::default()
            };
            let mut m = instance(
                &root()
                    .join("examples/models")
                    .join(e["file"].as_str().unwrap()),
                &cfg,
            );
            let rows = json_numbers(&e["rows"]);
            let n = e["rows"].as_array().unwrap().len();
            let x = Tensor::new(
                "input",
                vec![n as i64, (rows.len() / n) as i64],
                TensorData::Fp32(rows.iter().map(|&v| v as f32).collect()),
            );
            let out = m.run(&batch(vec![x])).unwrap();
            let label = numbers(&output(&out, "label").data);
            assert_eq!(label, json_numbers(&e["label"]), "{name} labels");
            let p = numbers(&output(&out, "probabilities").data);
            let tol = e["tolerance"].as_f64().unwrap();
            assert_close(
                &format!("{name} vs scikit-learn"),
                &p,
                &json_numbers(&e["probabilities"]),
                Tol::abs(tol),
            );
            assert_close(
                &format!("{name} vs onnxruntime"),
                &p,
                &json_numbers(&e["onnxruntime"]["probabilities"]),
                Tol::abs(1e-6),
            );
        }
    }
}

#[test]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
fn bad_inputs_are_the_clients_fault() {
    require(Need::OnnxRuntime, "the ONNX bad-input test");
    let mut m = instance(&fixtures().join("zipmap_int.onnx"), &ModelConfig::default());
    let strings = Tensor::new(
        "input",
        vec![1, 4],
        TensorData::Bytes(vec![b"x".to_vec(); 4]),
    );
    let e = m.run(&batch(vec![strings])).unwrap_err();
    assert!(matches!(e, OnnxError::Input(_)), "{e:?}");
    let narrow = Tensor::new("input", vec![1, 3], TensorData::Fp32(vec![1.0; 3]));
    let e = m.run(&batch(vec![narrow])).unwrap_err();
    assert!(matches!(e, OnnxError::Input(_)), "{e:?}");
    // Other numeric types are converted to the graph's.
    let ints = Tensor::new("input", vec![1, 4], TensorData::Int64(vec![5, 3, 1, 0]));
    let out = m.run(&batch(vec![ints])).unwrap();
    assert_eq!(output(&out, "output_probability").shape, vec![1, 3]);
    // The model keeps serving after errors.
    let ok = Tensor::new(
        "input",
        vec![1, 4],
        TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]),
    );
    assert!(m.run(&batch(vec![ok])).is_ok());
    // Outputs selection.
    let ok = Tensor::new(
        "input",
        vec![1, 4],
        TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]),
    );
    let mut b = batch(vec![ok]);
    b.outputs = vec!["output_label".into()];
    let out = m.run(&b).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "output_label");
}

/// BYTES elements are bytes: NUL, invalid UTF-8 and empty elements reach the graph exactly as
/// sent and come back exactly (`ort` itself would cut at a NUL going in and refuse invalid UTF-8
/// coming out).
#[test]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
fn bytes_that_are_not_text_pass_through_onnx_runtime() {
    require(Need::OnnxRuntime, "the ONNX BYTES test");
    let mut m = instance(
        &fixtures().join("identity_bytes.onnx"),
        &ModelConfig::default(),
    );
    let items: Vec<Vec<u8>> = vec![
        b"he\0llo".to_vec(),
        vec![0xff, 0xfe],
        vec![],
        vec![0],
        b"\0\0".to_vec(),
        "ünï".as_bytes().to_vec(),
        vec![0xc3],
        (0..=255u8).collect(),
    ];
    let n = items.len() as i64;
    let x = Tensor::new("x", vec![n], TensorData::Bytes(items.clone()));
    let out = m.run(&batch(vec![x])).unwrap();
    assert_eq!(out[0].shape, vec![n]);
    assert_eq!(out[0].data, TensorData::Bytes(items));
    // The graph's own operators see the bytes: a trailing NUL makes "wine\0" another word than
    // "wine" (cut at the NUL, it would be found), and invalid UTF-8 is just an unknown word.
    let mut m = instance(&fixtures().join("text_upper.onnx"), &ModelConfig::default());
    let words: Vec<Vec<u8>> = vec![b"wine".to_vec(), b"wine\0".to_vec(), b"\xffwine".to_vec()];
    let x = Tensor::new("text", vec![3], TensorData::Bytes(words));
    let out = m.run(&batch(vec![x])).unwrap();
    assert_eq!(
        out[0].data,
        TensorData::Bytes(vec![b"WINE".to_vec(), b"?".to_vec(), b"?".to_vec()])
    );
}

/// A graph fixed at one row still serves a batch the batcher joined: row by row.
#[test]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
fn a_one_row_graph_runs_a_joined_batch_row_by_row() {
    require(Need::OnnxRuntime, "the ONNX one-row graph test");
    use ferroserve_core::LoadedModel;
    let mut m = instance(
        &fixtures().join("fixed_batch.onnx"),
        &ModelConfig::default(),
    );
    assert_eq!(m.model().metadata().inputs[0].shape, vec![1, 3]);
    let x = Tensor::new(
        "x",
        vec![3, 3],
        TensorData::Fp32(vec![1.0, 2.0, 3.0, 0.0, -1.0, 0.5, 10.0, 20.0, 30.0]),
    );
    let out = m.run(&batch(vec![x])).unwrap();
    assert_eq!(out[0].shape, vec![3, 3]);
    assert_eq!(
        out[0].data,
        TensorData::Fp32(vec![3.0, 5.0, 7.0, 1.0, -1.0, 2.0, 21.0, 41.0, 61.0])
    );
}

#[test]
#[cfg_attr(
    no_onnxruntime,
    ignore = "needs ONNX Runtime: pip install onnxruntime, or set ORT_DYLIB_PATH"
)]
fn concurrent_infer_from_several_threads_is_safe_and_identical() {
    require(Need::OnnxRuntime, "the ONNX concurrency test");
    let m = Arc::new(load(
        &root().join("examples/models/iris_mlp/1/model.onnx"),
        &ModelConfig::default(),
    ));
    let rows: Vec<f32> = (0..64 * 4).map(|i| (i % 17) as f32 * 0.5).collect();
    let make = || {
        batch(vec![Tensor::new(
            "input",
            vec![64, 4],
            TensorData::Fp32(rows.clone()),
        )])
    };
    // The first instance gets the session built at load time; each thread after makes its own
    // (as each instance thread of the server does), and all run at once.
    let want = m.new_instance().unwrap().run(&make()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            let b = make();
            std::thread::spawn(move || {
                let mut own = m.new_instance().unwrap();
                for _ in 0..50 {
                    assert_eq!(own.run(&b).unwrap(), own.run(&b).unwrap());
                }
                own.run(&b).unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), want);
    }
}
