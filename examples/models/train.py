#!/usr/bin/env python3
"""Trains the bundled example repository (`examples/models/`) and writes the ready-made
request bodies (`examples/requests/`).

Every model is trained by its own library with fixed seeds, so running this again writes the same
models, the same `expected.json` and the same request files:

    iris/1/model.onnx            scikit-learn RandomForestClassifier (100 trees), exported by skl2onnx
    wine/1/model.onnx            scikit-learn RandomForestClassifier (50 trees, depth 8), skl2onnx
    breast_cancer/1/model.json   XGBoost binary:logistic (depth 2, 30 rounds), feature names stored
    diabetes/1/model.txt         LightGBM regression (50 trees), feature names stored
    wine_pipeline/1/model.onnx   scikit-learn Pipeline(StandardScaler, LogisticRegression), skl2onnx
                                 (runs on ONNX Runtime: not a tree ensemble)
    iris_mlp/1/model.onnx        scikit-learn Pipeline(StandardScaler, MLPClassifier(16, 8)), skl2onnx
                                 (runs on ONNX Runtime)

`expected.json` holds, for each model, sample rows and the training library's own predictions for
them, plus the predictions for every request file. The sample rows of a classifier cover every
class the model predicts, interleaved (rows[0] is not class 0, and no two neighbouring rows share a
class): for each class its most confident row, the row nearest a decision boundary (the smallest
margin between the two most probable classes that is still at least MIN_MARGIN) and a typical row.
The sample rows of a regressor are the rows with the highest and the lowest prediction and three
ordinary ones (the quartiles of the predictions). Before anything is written, each artifact is
loaded back with the library that reads it (ONNX Runtime, xgboost.Booster, lightgbm.Booster) and
its answers are checked against the training library's.

    pip install -r requirements-dev.txt
    python3 examples/models/train.py              # writes examples/models and examples/requests
    python3 examples/models/train.py --out DIR    # writes DIR/models and DIR/requests instead

Reproducible: the same versions write the same bytes. BLAS runs on one thread, and the only
iterative solvers whose stopping point could depend on floating-point rounding are made to run to
convergence (LogisticRegression with the Newton-Cholesky solver) or are seeded (the MLP).
"""
import argparse
import json
import os

# One BLAS/OpenMP thread, set before numpy loads its BLAS: the answers must not depend on how a
# reduction is split between threads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

from pathlib import Path  # noqa: E402

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import xgboost as xgb
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 0
TOL = 1e-5
# A sample row's two most probable classes are at least this far apart, so no float32 rounding
# (of the inputs, the leaf weights or ONNX Runtime's arithmetic) can change its label.
MIN_MARGIN = 0.05
# ONNX graphs use the classic TreeEnsembleClassifier (ai.onnx.ml opset 3).
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}

# Where the models and the request files go: the repository's own folders unless --out says.
MODELS = Path(__file__).resolve().parent
REQUESTS = MODELS.parent / "requests"

IRIS_LABELS = ["setosa", "versicolor", "virginica"]
BREAST_CANCER_LABELS = ["malignant", "benign"]

# The three rows of the Cortex batch-runner tutorial (its `test.py`).
CORTEX_IRIS_ROWS = [
    {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.5, "petal_width": 0.3},
    {"sepal_length": 7.1, "sepal_width": 3.3, "petal_length": 4.8, "petal_width": 1.5},
    {"sepal_length": 6.4, "sepal_width": 3.4, "petal_length": 6.1, "petal_width": 2.6},
]

# The Flask tutorial's query (`/prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3`).
FLASK_IRIS_ROW = [1.5, 0.7, 1.3, 0.3]


# ---------------------------------------------------------------------------------------------
# Writing files


def _dumps(obj, indent=0):
    """JSON with lists of numbers (and short lists of strings) kept on one line."""
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(x, (dict, list)) for x in obj):
            return json.dumps(obj)
        items = [inner + _dumps(x, indent + 1) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj)


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dumps(obj) + "\n")


def write_text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def toml_str(s):
    return json.dumps(s)  # a TOML basic string is a JSON string for this text


def toml_list(items):
    return "[" + ", ".join(toml_str(s) for s in items) + "]"


def write_model_toml(name, lines):
    write_text(MODELS / name / "model.toml", "\n".join(lines) + "\n")


def toml_rows(rows_):
    """`sample_rows = [[...], ...]`: the examples of the OpenAPI document and Swagger UI."""
    return "sample_rows = [" + ", ".join(
        "[" + ", ".join(json.dumps(v) for v in r) + "]" for r in rows_) + "]"


# Route aliases: the URLs, parameter names and answer shapes of the tutorials' hand-written
# services (docs/configuration.md, "Route aliases").
IRIS_ROUTES = """
# The names the Cortex tutorial's clients use, accepted by every route of this model.
[feature_aliases]
sepal_length = "sepal length (cm)"
sepal_width = "sepal width (cm)"
petal_length = "petal length (cm)"
petal_width = "petal width (cm)"

# The Flask tutorial (MODEL_FILE): GET /prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3
[[routes]]
method = "GET"
path = "/prediction"
features = ["slength", "swidth", "plength", "pwidth"]
response_key = "prediction"
unwrap_single = true
summary = "Flask tutorial: the species of one iris, from query parameters"

# The Flasgger tutorial: GET /predict?s_length=..&s_width=..&p_length=..&p_width=.. answers [0]
[[routes]]
method = "GET"
path = "/predict"
features = ["s_length", "s_width", "p_length", "p_width"]
answer = "class_index"
response = "list"
summary = "Flasgger tutorial: the class index of one iris"

# The Flasgger tutorial: POST /predict_file, a headerless CSV in the form field input_file
[[routes]]
path = "/predict_file"
request = "csv"
csv_field = "input_file"
answer = "class_index"
response = "list"
summary = "Flasgger tutorial: the class index of each iris in a CSV file"

# The Cortex iris-classifier: POST one record {"sepal_length": ...} answers "setosa"
[[routes]]
path = "/iris-classifier"
request = "records"
features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
response = "list"
unwrap_single = true
summary = "Cortex iris-classifier: the species of one record (or of each in a list)"

# The Cortex batch runner: POST a JSON list of records starts a batch job and answers at once
# (200, with the job's id and URL; GET /jobs/{id} follows it)
[[routes]]
path = "/iris-classifier-batch"
request = "records"
job = true
summary = "Cortex batch runner: start a batch job on a list of records"
"""

WINE_ROUTES = """
# The FastAPI tutorial: POST /predict {"batches": [[13 floats], ...]} answers {"Prediction": [...]}
[[routes]]
path = "/predict"
request = "rows"
request_key = "batches"
response_key = "Prediction"
summary = "FastAPI tutorial: the class of each wine in a batch"
"""

BREAST_CANCER_ROUTES = """
# Ray Serve's PredictorDeployment with pandas_read_json: POST / with pandas records (any orient
# with ?orient=) or {"array": [...]}, answered [{"predictions": <probability of benign>}]
[[routes]]
path = "/"
answer = "probability"
response = "records"
summary = "Ray Serve tutorial: XGBoost's prediction (probability of benign) per row"
"""


def first_of_each_class(y):
    return [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)]


def margins(proba):
    s = np.sort(np.asarray(proba), axis=1)
    return s[:, -1] - s[:, -2]


def classifier_sample(proba, n_rows=None):
    """Indices of the sample rows of a classifier, from the library's probabilities: for each
    class the model predicts, its most confident row, the row nearest a decision boundary (the
    smallest margin that is at least MIN_MARGIN) and a typical row (the median margin), ties
    broken by the lower index. Interleaved class by class, starting with class 1, so the first
    row is not class 0 and no two neighbouring rows share a class. Only the first `n_rows` rows
    (the dataset itself) are candidates."""
    proba = np.asarray(proba)
    if n_rows is not None:
        proba = proba[:n_rows]
    pred = np.argmax(proba, axis=1)
    m = margins(proba)
    n_classes = proba.shape[1]
    picks = {}
    for c in range(n_classes):
        cand = [i for i in np.flatnonzero((pred == c) & (m >= MIN_MARGIN))]
        assert len(cand) >= 3, f"class {c}: only {len(cand)} clear rows"
        by_margin = sorted(cand, key=lambda i: (m[i], i))
        confident = sorted(cand, key=lambda i: (-m[i], i))[0]
        boundary = by_margin[0]
        rest = [i for i in by_margin if i not in (confident, boundary)]
        typical = rest[len(rest) // 2]
        picks[c] = [int(confident), int(boundary), int(typical)]
    order = [(c + 1) % n_classes for c in range(n_classes)]
    idx = [picks[c][k] for k in range(3) for c in order]
    assert len(set(idx)) == len(idx)
    return idx


def regressor_sample(value):
    """Indices of the sample rows of a regressor: the highest and the lowest prediction, then
    the rows nearest the median and the two other quartiles of the predictions."""
    value = np.asarray(value)
    order = np.argsort(value, kind="stable")
    n = len(value)
    idx = [int(order[-1]), int(order[0])]
    for q in (0.5, 0.25, 0.75):
        i = int(order[int(round(q * (n - 1)))])
        if i not in idx:
            idx.append(i)
    return idx


def check_covers(what, labels, n_classes):
    """Every class among the labels, and no two neighbouring labels equal."""
    labels = [int(v) for v in labels]
    assert sorted(set(labels)) == list(range(n_classes)), f"{what}: classes {sorted(set(labels))}"
    assert labels[0] != 0, f"{what}: the first row is class 0"
    assert all(a != b for a, b in zip(labels, labels[1:])), f"{what}: {labels}"


def rows(X, idx):
    """Plain Python floats (float64, the dataset's own values)."""
    return [[float(v) for v in X[i]] for i in idx]


def floats(a):
    return [float(v) for v in np.asarray(a).ravel()]


def matrix(a):
    return [[float(v) for v in r] for r in np.asarray(a)]


def v2_body(X, datatype="FP32", request_id=None, outputs=None):
    X = [list(r) for r in X]
    body = {}
    if request_id is not None:
        body["id"] = request_id
    body["inputs"] = [
        {"name": "input", "shape": [len(X), len(X[0])], "datatype": datatype,
         "data": [v for r in X for v in r]}
    ]
    if outputs:
        body["outputs"] = [{"name": o} for o in outputs]
    return body


# ---------------------------------------------------------------------------------------------
# Checks


def check_close(what, got, want, tol=TOL):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    assert diff <= tol, f"{what}: max difference {diff:g} > {tol:g}"
    return diff


def check_no_ties(what, proba):
    """The arg-max must not depend on float32 rounding of the leaf weights."""
    s = np.sort(np.asarray(proba), axis=1)
    gap = float(np.min(s[:, -1] - s[:, -2]))
    assert gap > TOL, f"{what}: two classes within {TOL:g} of each other (gap {gap:g})"


# ---------------------------------------------------------------------------------------------
# Models


def export_forest(clf, n_features, path):
    export_onnx(clf, n_features, path)


def export_onnx(clf, n_features, path):
    """skl2onnx export with `input` FP32 [-1, n] and outputs `label` and `probabilities`."""
    onx = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        target_opset=ONNX_OPSET,
        options={id(clf): {"zipmap": False}},
    )
    # skl2onnx names the graph with a random UUID and lists the default domain twice; a fixed
    # name and one import per domain make the file byte-for-byte reproducible and tidy.
    onx.graph.name = path.parent.parent.name
    seen = {}
    for imp in onx.opset_import:
        seen[imp.domain] = max(seen.get(imp.domain, 0), imp.version)
    del onx.opset_import[:]
    for domain, version in sorted(seen.items()):
        onx.opset_import.add(domain=domain, version=version)
    onnx.checker.check_model(onx, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onx.SerializeToString())


def onnx_predict(path, X):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "input" and inp.type == "tensor(float)", (inp.name, inp.type)
    label, proba = sess.run(None, {"input": np.asarray(X, dtype=np.float32)})
    return np.asarray(label), np.asarray(proba, dtype=np.float64)


def forest_entry(name, clf, X, path, feature_names, class_labels, sample, requests):
    """Checks the ONNX file against scikit-learn on the whole dataset, then records the library's
    predictions for the sample rows and for each request file's rows."""
    label, proba = onnx_predict(path, X)
    skl_proba = clf.predict_proba(X)
    skl_label = clf.predict(X)
    diff = check_close(f"{name}: ONNX Runtime vs scikit-learn probabilities", proba, skl_proba)
    s = np.sort(skl_proba, axis=1)
    clear = (s[:, -1] - s[:, -2]) > TOL
    assert np.array_equal(label[clear], skl_label[clear]), f"{name}: ONNX labels differ"

    def answer(idx):
        p = skl_proba[idx]
        check_no_ties(name, p)
        out = {"label": [int(v) for v in skl_label[idx]]}
        if class_labels:
            out["label_names"] = [class_labels[int(v)] for v in skl_label[idx]]
        out["probabilities"] = matrix(p)
        return out

    entry = {
        "file": str(path.relative_to(MODELS)),
        "library": "scikit-learn predict / predict_proba",
        "kind": "classifier",
        "input": "input",
        "feature_names": list(feature_names),
        "rows": rows(X, sample),
    }
    entry.update(answer(sample))
    check_covers(name, entry["label"], skl_proba.shape[1])
    entry["requests"] = {f: answer(idx) for f, idx in requests.items()}
    print(f"{name}: {path.name} {path.stat().st_size} bytes; ONNX Runtime vs scikit-learn "
          f"max |diff| {diff:.2e} over {len(X)} rows ({int((~clear).sum())} near-tie rows); "
          f"sample labels {entry['label']}, margins "
          f"{[round(float(v), 3) for v in margins(skl_proba[sample])]}")
    return entry


def train_iris():
    ds = load_iris()
    X, y = ds.data, ds.target
    clf = RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1)
    clf.fit(X, y)
    assert list(clf.classes_) == [0, 1, 2]
    path = MODELS / "iris" / "1" / "model.onnx"
    export_forest(clf, 4, path)
    write_model_toml("iris", [
        'description = "Iris species from four flower measurements: scikit-learn '
        'RandomForestClassifier (100 trees) on load_iris, exported to ONNX by skl2onnx."',
        f"feature_names = {toml_list(ds.feature_names)}",
        f"class_labels = {toml_list(IRIS_LABELS)}",
        toml_rows(rows(X, first_of_each_class(y))),
        "",
        IRIS_ROUTES.strip("\n"),
    ])

    # Request rows: the sample rows (every class) for the batch; the dataset's first row for the
    # single-row body (the README's and the benchmarks' single-row request); five rows spread over
    # the dataset for the CSV (the Flasgger tutorial's predict_file, as the README shows it).
    sample = classifier_sample(clf.predict_proba(X))
    csv_idx = [int(i) for i in np.linspace(0, len(X) - 1, 5)]
    write_json(REQUESTS / "iris_v2.json", v2_body(rows(X, [0])))
    write_json(REQUESTS / "iris_v2_batch.json", v2_body(
        rows(X, sample), request_id="iris-batch-1", outputs=["label", "probabilities"]))
    write_text(REQUESTS / "iris.csv", "".join(
        ",".join(repr(v) for v in r) + "\n" for r in rows(X, csv_idx)))
    write_json(REQUESTS / "iris_records.json", CORTEX_IRIS_ROWS)

    cortex = np.array([[r["sepal_length"], r["sepal_width"], r["petal_length"], r["petal_width"]]
                       for r in CORTEX_IRIS_ROWS])
    # The Cortex rows and the Flask tutorial's query row are not dataset rows: append them so one
    # code path answers everything.
    X_all = np.vstack([X, cortex, [FLASK_IRIS_ROW]])
    n = len(X)
    entry = forest_entry("iris", clf, X_all, path, ds.feature_names, IRIS_LABELS, sample, {
        "iris_v2.json": [0],
        "iris_v2_batch.json": sample,
        "iris.csv": csv_idx,
        "iris_records.json": [n, n + 1, n + 2],
        # Not a file: the Flask tutorial's GET /prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3
        "flask_query": [n + 3],
    })
    return entry


def train_wine():
    ds = load_wine()
    X, y = ds.data, ds.target
    clf = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=SEED, n_jobs=1)
    clf.fit(X, y)
    assert list(clf.classes_) == [0, 1, 2]
    path = MODELS / "wine" / "1" / "model.onnx"
    export_forest(clf, 13, path)
    write_model_toml("wine", [
        'description = "Wine cultivar (class 0, 1 or 2) from 13 chemical measurements: '
        'scikit-learn RandomForestClassifier (50 trees, max_depth 8) on load_wine, exported to '
        'ONNX by skl2onnx (the FastAPI wine tutorial\'s model)."',
        f"feature_names = {toml_list(ds.feature_names)}",
        toml_rows(rows(X, first_of_each_class(y))),
        "",
        WINE_ROUTES.strip("\n"),
    ])

    # The v2 body holds the sample rows (every class); the FastAPI tutorial's batch_1.json holds
    # 32 rows spread evenly over the dataset (in dataset order, as the README shows its answer).
    sample = classifier_sample(clf.predict_proba(X))
    batch_idx = [int(i) for i in np.linspace(0, len(X) - 1, 32)]
    write_json(REQUESTS / "wine_v2.json", v2_body(rows(X, sample)))
    write_json(REQUESTS / "wine_batch_1.json", {"batches": rows(X, batch_idx)})
    return forest_entry("wine", clf, X, path, ds.feature_names, None, sample, {
        "wine_v2.json": sample,
        "wine_batch_1.json": batch_idx,
    })


def train_breast_cancer():
    ds = load_breast_cancer()
    names = [str(n) for n in ds.feature_names]
    df = pd.DataFrame(ds.data, columns=names)
    y = ds.target
    # As in the Ray Serve tutorial: a 70/30 split, depth-2 trees, binary:logistic.
    train_df, test_df, y_train, y_test = train_test_split(
        df, y, test_size=0.3, random_state=SEED)
    dtrain = xgb.DMatrix(train_df, label=y_train, feature_names=names)
    dvalid = xgb.DMatrix(test_df, label=y_test, feature_names=names)
    params = {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "error"],
        "tree_method": "approx",
        "max_depth": 2,
        "eta": 0.3,
        "seed": SEED,
        "nthread": 1,
    }
    booster = xgb.train(params, dtrain, num_boost_round=30,
                        evals=[(dvalid, "valid")], verbose_eval=False)
    assert booster.feature_names == names
    path = MODELS / "breast_cancer" / "1" / "model.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(path))
    write_model_toml("breast_cancer", [
        'description = "Breast tumour diagnosis from 30 cell-nucleus measurements: XGBoost '
        'binary:logistic (30 rounds of depth-2 trees) on load_breast_cancer (the Ray Serve '
        'tutorial\'s model); the probability is that of class 1, benign."',
        f"class_labels = {toml_list(BREAST_CANCER_LABELS)}",
        toml_rows(rows(ds.data, first_of_each_class(ds.target))),
        "",
        BREAST_CANCER_ROUTES.strip("\n"),
    ])

    # The Ray tutorial posts the first row of its test set as a pandas record.
    record_pos = int(np.flatnonzero(df.index == test_df.index[0])[0])
    write_json(REQUESTS / "breast_cancer_records.json",
               [dict(zip(names, rows(ds.data, [record_pos])[0]))])

    # The saved file, read back by XGBoost, is the oracle's source.
    loaded = xgb.Booster(model_file=str(path))
    assert loaded.feature_names == names, loaded.feature_names
    X = ds.data
    p1 = loaded.predict(xgb.DMatrix(pd.DataFrame(X, columns=names)))
    p1_mem = booster.predict(xgb.DMatrix(pd.DataFrame(X, columns=names)))
    diff = check_close("breast_cancer: saved vs in-memory booster", p1, p1_mem, tol=0.0)
    # Without feature names (a plain float32 matrix, as the server sees it): same answers.
    check_close("breast_cancer: unnamed float32 input", loaded.predict(
        xgb.DMatrix(X.astype(np.float32)), validate_features=False), p1, tol=0.0)
    proba = np.column_stack([1.0 - p1, p1])
    sample = classifier_sample(proba)
    write_json(REQUESTS / "breast_cancer_v2.json", v2_body(rows(ds.data, sample)))

    def answer(idx):
        p = proba[idx]
        lab = (p1[idx] > 0.5).astype(int)
        assert np.all(np.abs(p1[idx] - 0.5) > TOL), "breast_cancer: a row sits on 0.5"
        return {"label": [int(v) for v in lab],
                "label_names": [BREAST_CANCER_LABELS[int(v)] for v in lab],
                "probabilities": matrix(p)}

    entry = {
        "file": str(path.relative_to(MODELS)),
        "library": "xgboost Booster.predict (probability of class 1; probabilities = [1-p, p])",
        "kind": "classifier",
        "input": "input",
        "feature_names": names,
        "rows": rows(X, sample),
    }
    entry.update(answer(sample))
    check_covers("breast_cancer", entry["label"], 2)
    entry["requests"] = {
        "breast_cancer_v2.json": answer(sample),
        "breast_cancer_records.json": answer([record_pos]),
    }
    acc = float(np.mean((booster.predict(dvalid) > 0.5) == y_test))
    print(f"breast_cancer: {path.name} {path.stat().st_size} bytes; test accuracy {acc:.3f}; "
          f"saved vs in-memory max |diff| {diff:.1e}; sample labels {entry['label']}, "
          f"p(benign) {[round(float(v), 3) for v in p1[sample]]}")
    return entry


def train_diabetes():
    ds = load_diabetes()
    names = list(ds.feature_names)
    df = pd.DataFrame(ds.data, columns=names)
    reg = lgb.LGBMRegressor(
        objective="regression", n_estimators=50, random_state=SEED, n_jobs=1,
        deterministic=True, force_row_wise=True, verbose=-1)
    reg.fit(df, ds.target)
    path = MODELS / "diabetes" / "1" / "model.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    reg.booster_.save_model(str(path))
    write_model_toml("diabetes", [
        'description = "Diabetes progression one year after baseline, from 10 standardised '
        'measurements: LightGBM regression (50 trees) on load_diabetes."',
        'output_datatype = "FP64"',
        toml_rows(rows(ds.data, [0, 1, 2])),
    ])

    loaded = lgb.Booster(model_file=str(path))
    assert loaded.feature_name() == names, loaded.feature_name()
    X = ds.data
    value = loaded.predict(X)
    diff = check_close("diabetes: saved vs in-memory model", value, reg.predict(df), tol=1e-9)
    # Requests carry FP32 data: rounding the inputs to float32 must not change any answer.
    check_close("diabetes: float32-rounded inputs",
                loaded.predict(X.astype(np.float32).astype(np.float64)), value, tol=1e-9)

    # The highest and the lowest prediction first, then ordinary rows.
    sample = regressor_sample(value)
    write_json(REQUESTS / "diabetes_v2.json", v2_body(rows(X, sample)))
    entry = {
        "file": str(path.relative_to(MODELS)),
        "library": "lightgbm Booster.predict",
        "kind": "regressor",
        "input": "input",
        "feature_names": names,
        "rows": rows(X, sample),
        "value": floats(value[sample]),
        "value_range": [float(value.min()), float(value.max())],
        "requests": {"diabetes_v2.json": {"value": floats(value[sample])}},
    }
    print(f"diabetes: {path.name} {path.stat().st_size} bytes; saved vs in-memory max |diff| "
          f"{diff:.1e}; sample values {[round(float(v), 2) for v in value[sample]]}")
    return entry


def onnx_entry(name, clf, X, path, feature_names, class_labels, sample, requests, tol):
    """Like `forest_entry`, for a graph that runs on ONNX Runtime (float32 arithmetic): the ONNX
    answers must stay within `tol` of scikit-learn's over the whole dataset, and the recorded
    answers are scikit-learn's; `onnxruntime` keeps ONNX Runtime's own for the sample rows."""
    label, proba = onnx_predict(path, X)
    skl_proba = clf.predict_proba(X)
    skl_label = clf.predict(X)
    diff = check_close(f"{name}: ONNX Runtime vs scikit-learn probabilities", proba, skl_proba,
                       tol=tol)
    s = np.sort(skl_proba, axis=1)
    clear = (s[:, -1] - s[:, -2]) > tol
    assert np.array_equal(label[clear], skl_label[clear]), f"{name}: ONNX labels differ"

    def answer(idx):
        p = skl_proba[idx]
        s = np.sort(p, axis=1)
        assert float(np.min(s[:, -1] - s[:, -2])) > tol, f"{name}: a near tie in the sample"
        out = {"label": [int(v) for v in skl_label[idx]]}
        if class_labels:
            out["label_names"] = [class_labels[int(v)] for v in skl_label[idx]]
        out["probabilities"] = matrix(p)
        return out

    entry = {
        "file": str(path.relative_to(MODELS)),
        "library": "scikit-learn predict / predict_proba",
        "kind": "classifier",
        "backend": "onnx",
        "tolerance": tol,
        "input": "input",
        "feature_names": list(feature_names),
        "rows": rows(X, sample),
    }
    entry.update(answer(sample))
    check_covers(name, entry["label"], skl_proba.shape[1])
    assert entry["label"] == [int(v) for v in label[sample]], f"{name}: ONNX sample labels differ"
    entry["onnxruntime"] = {
        "label": [int(v) for v in label[sample]],
        "probabilities": matrix(proba[sample]),
    }
    entry["requests"] = {f: answer(idx) for f, idx in requests.items()}
    print(f"{name}: {path.name} {path.stat().st_size} bytes; ONNX Runtime vs scikit-learn "
          f"max |diff| {diff:.2e} over {len(X)} rows; sample labels {entry['label']}, margins "
          f"{[round(float(v), 3) for v in margins(skl_proba[sample])]}")
    return entry


def train_wine_pipeline():
    """The FastAPI wine tutorial's kind of model: scaling plus a linear classifier."""
    ds = load_wine()
    X, y = ds.data, ds.target
    # Newton-Cholesky runs to the optimum (a strictly convex problem), so the coefficients do not
    # depend on the path: L-BFGS stops at its tolerance at an iterate that the BLAS kernel (chosen
    # by the CPU) decides, up to 4e-4 away in probability.
    clf = make_pipeline(StandardScaler(), LogisticRegression(
        solver="newton-cholesky", tol=1e-10, max_iter=1000, random_state=SEED))
    clf.fit(X, y)
    path = MODELS / "wine_pipeline" / "1" / "model.onnx"
    export_onnx(clf, 13, path)
    write_model_toml("wine_pipeline", [
        'description = "Wine cultivar (class 0, 1 or 2) from 13 chemical measurements: '
        'scikit-learn Pipeline(StandardScaler, LogisticRegression) on load_wine, exported to '
        'ONNX by skl2onnx; runs on ONNX Runtime."',
        f"feature_names = {toml_list(ds.feature_names)}",
    ])
    sample = classifier_sample(clf.predict_proba(X))
    write_json(REQUESTS / "wine_pipeline_v2.json", v2_body(rows(X, sample)))
    return onnx_entry("wine_pipeline", clf, X, path, ds.feature_names, None, sample, {
        "wine_pipeline_v2.json": sample,
    }, tol=1e-4)


def train_iris_mlp():
    """A small neural network: two hidden layers on standardised measurements."""
    ds = load_iris()
    X, y = ds.data, ds.target
    clf = make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=(16, 8), max_iter=2000, random_state=SEED))
    clf.fit(X, y)
    path = MODELS / "iris_mlp" / "1" / "model.onnx"
    export_onnx(clf, 4, path)
    write_model_toml("iris_mlp", [
        'description = "Iris species from four flower measurements: scikit-learn '
        'Pipeline(StandardScaler, MLPClassifier(16, 8)) on load_iris, exported to ONNX by '
        'skl2onnx; runs on ONNX Runtime."',
        f"feature_names = {toml_list(ds.feature_names)}",
        f"class_labels = {toml_list(IRIS_LABELS)}",
    ])
    sample = classifier_sample(clf.predict_proba(X))
    return onnx_entry("iris_mlp", clf, X, path, ds.feature_names, IRIS_LABELS, sample, {},
                      tol=1e-4)


def main():
    global MODELS, REQUESTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write DIR/models and DIR/requests instead of "
                    "examples/models and examples/requests")
    a = ap.parse_args()
    if a.out is not None:
        MODELS, REQUESTS = a.out / "models", a.out / "requests"
    np.random.seed(SEED)
    expected = {
        "about": "Sample rows and the training library's own predictions for them, plus the "
                 "predictions for each file in examples/requests/ (in row order). A classifier's "
                 "rows cover every class it predicts, interleaved (the first row is not class 0, "
                 "no two neighbouring rows share a class), with rows near a decision boundary "
                 "(margin at least 0.05); a regressor's rows are its highest and lowest "
                 "prediction and the quartiles (value_range: the lowest and highest prediction "
                 "over the dataset). Written by examples/models/train.py; compare with tolerance.",
        "tolerance": TOL,
        "iris": train_iris(),
        "wine": train_wine(),
        "breast_cancer": train_breast_cancer(),
        "diabetes": train_diabetes(),
        "wine_pipeline": train_wine_pipeline(),
        "iris_mlp": train_iris_mlp(),
    }
    write_json(MODELS / "expected.json", expected)
    for p in sorted(REQUESTS.iterdir()):
        print(f"requests/{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
