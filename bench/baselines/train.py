"""Trains the models bench/run.py serves, into the folder given as the only argument:

    iris.pkl          the bundled iris model again: scikit-learn RandomForestClassifier (100 trees)
                      on load_iris, trained exactly as examples/models/train.py trains it, pickled
                      for the Python baselines (FastAPI loads it with pickle, MLServer with joblib)
    forest500/1/model.onnx
                      compute-dominated model 1: RandomForestClassifier (500 trees, max_depth 10)
                      on a synthetic 24-feature, 2-class dataset, exported by skl2onnx as
                      examples/models/train.py exports its forests (native tree engine)
    mlp/1/model.onnx  compute-dominated model 2: MLPClassifier, hidden layers (1024, 1024), on the
                      same data, exported by skl2onnx (runs on ONNX Runtime)
    compute_v2.json   one row of that dataset as a v2 request (both models take it)

Run with the benchmark environment's Python (bench/requirements.txt). Checks that iris.pkl answers
what examples/models/expected.json says the bundled iris model answers.
"""
import json
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

ROOT = Path(__file__).resolve().parents[2]
SEED = 0
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}


def export_onnx(clf, n_features, path):
    onx = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        target_opset=ONNX_OPSET,
        options={id(clf): {"zipmap": False}},
    )
    onx.graph.name = path.parent.parent.name
    seen = {}
    for imp in onx.opset_import:
        seen[imp.domain] = max(seen.get(imp.domain, 0), imp.version)
    del onx.opset_import[:]
    for domain, version in sorted(seen.items()):
        onx.opset_import.add(domain=domain, version=version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onx.SerializeToString())


def iris(out):
    ds = load_iris()
    # As examples/models/train.py: same estimator, same seed, same data.
    clf = RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1)
    clf.fit(ds.data, ds.target)
    expected = json.loads((ROOT / "examples" / "models" / "expected.json").read_text())["iris"]
    got = clf.predict_proba(np.array(expected["rows"]))
    diff = float(np.max(np.abs(got - np.array(expected["probabilities"]))))
    if diff > 1e-5:
        sys.exit(f"iris.pkl differs from the bundled iris model (max |diff| {diff:g}): "
                 "is scikit-learn the version that trained examples/models?")
    with open(out / "iris.pkl", "wb") as f:
        pickle.dump(clf, f)


def synthetic():
    X, y = make_classification(n_samples=20000, n_features=24, n_informative=16,
                               n_redundant=4, n_classes=2, random_state=SEED)
    return X.astype(np.float32), y


def forest500(out, X, y):
    clf = RandomForestClassifier(n_estimators=500, max_depth=10, random_state=SEED, n_jobs=2)
    clf.fit(X, y)
    clf.n_jobs = 1
    path = out / "forest500" / "1" / "model.onnx"
    export_onnx(clf, X.shape[1], path)
    nodes = sum(e.tree_.node_count for e in clf.estimators_)
    print(f"forest500: 500 trees, {nodes} nodes, {path.stat().st_size / 1e6:.1f} MB ONNX")


def mlp(out, X, y):
    # A few epochs on part of the data: the benchmark needs the compute, not the accuracy.
    clf = MLPClassifier(hidden_layer_sizes=(1024, 1024), max_iter=3, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X[:5000], y[:5000])
    path = out / "mlp" / "1" / "model.onnx"
    export_onnx(clf, X.shape[1], path)
    print(f"mlp: hidden (1024, 1024), {path.stat().st_size / 1e6:.1f} MB ONNX, "
          f"accuracy {clf.score(X[5000:], y[5000:]):.3f}")


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    iris(out)
    X, y = synthetic()
    forest500(out, X, y)
    mlp(out, X, y)
    body = {"inputs": [{"name": "input", "shape": [1, X.shape[1]], "datatype": "FP32",
                        "data": [float(v) for v in X[0]]}]}
    (out / "compute_v2.json").write_text(json.dumps(body))


if __name__ == "__main__":
    main()
