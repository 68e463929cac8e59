#!/usr/bin/env python3
"""ferroserve's import helper: turns a model file users already have into a servable artifact.

`ferroserve import` writes this file to a temporary place and runs it; it can also be run by
hand. It opens exactly one file, the one named by --model. A pickle or joblib file runs code when
it is loaded: only import files you trust.

    python3 ferroserve_import.py --model MODEL --stage DIR [--rows N] [--seed S]
    python3 ferroserve_import.py --model MODEL --inspect

Accepted:
  - scikit-learn estimators and Pipelines, pickled or joblib-dumped (.pkl .pickle .joblib .sav)
  - pickled XGBoost / LightGBM scikit-learn wrappers (XGBClassifier, LGBMRegressor ...) and
    pickled Booster objects
  - native booster files: XGBoost .json / .ubj / legacy binary, LightGBM text (.txt)
  - ONNX graphs (.onnx)

Writes into --stage (never into the repository; ferroserve moves the files there once it has
checked them):
  artifact          model.json (XGBoost) / model.txt (LightGBM) where the native tree engine
                    applies, else model.onnx (skl2onnx / onnxmltools)
  model.toml        description, feature names, class labels, input shape (as a comment)
  verify.json       sample rows as request tensors, and the original library's answers for them

--inspect converts nothing: it loads the file and answers what it holds (its type and, when the
model records it, its number of features).

The last line of standard output is one JSON object: {"artifact": "model.onnx", "n_features": 4}
(or {"type": ..., "n_features": ...} with --inspect) on success, else {"error": {"code": ...,
"message": ..., "n_features": ...}}. Messages name the model file by its base name only and never
quote its content: ferroserve may answer them to clients. Standard error has the details.

Exit status: 0 written; 2 the file is not a model this helper knows; 3 a Python library is
missing (the message says what to pip install); 4 the model was read but cannot be converted (a
custom transformer, an estimator skl2onnx does not know: ferroserve can serve it through its
Python backend instead); 5 the file cannot be unpickled; 1 anything else.
"""
import argparse
import json
import os
import pickle
import sys
import traceback

MISSING_EXIT = 3
UNKNOWN_EXIT = 2
UNCONVERTIBLE_EXIT = 4
UNREADABLE_EXIT = 5
CODE_NAMES = {1: "failed", UNKNOWN_EXIT: "unknown", MISSING_EXIT: "missing",
              UNCONVERTIBLE_EXIT: "unconvertible", UNREADABLE_EXIT: "unreadable"}
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}
# Tolerances ferroserve checks with: |ferroserve - library| <= abs + rel * |library|.
TOL_TREES = {"abs": 1e-5, "rel": 1e-5}
TOL_ONNX = {"abs": 1e-4, "rel": 1e-4}


class Refusal(Exception):
    def __init__(self, message, code=1, n_features=None, detail=None):
        super().__init__(message)
        self.code = code
        self.n_features = n_features
        # For standard error only (it may quote the file).
        self.detail = detail


def base(path):
    return os.path.basename(path)


def feature_count(obj):
    n = getattr(obj, "n_features_in_", None)
    try:
        return int(n) if n is not None else None
    except (TypeError, ValueError):
        return None


# The pip package of an importable module, where the two names differ.
PIP_NAMES = {"sklearn": "scikit-learn", "skl2onnx": "skl2onnx", "onnxmltools": "onnxmltools",
             "onnxruntime": "onnxruntime", "onnx": "onnx", "xgboost": "xgboost",
             "lightgbm": "lightgbm", "joblib": "joblib", "numpy": "numpy"}


def need(*modules, purpose):
    """Imports modules or stops with the exact pip command."""
    pip_names = PIP_NAMES
    missing = []
    loaded = []
    for m in modules:
        try:
            loaded.append(__import__(m))
        except ImportError:
            missing.append(pip_names.get(m, m))
    if missing:
        raise Refusal(f"{purpose} needs Python packages that are not installed: "
                      f"pip install {' '.join(missing)}", MISSING_EXIT)
    return loaded[0] if len(loaded) == 1 else loaded


# ---------------------------------------------------------------------------------------------
# Reading the file


def sniff(path):
    with open(path, "rb") as f:
        head = f.read(64)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".pkl", ".pickle", ".joblib", ".sav"):
        return "pickle"
    if ext == ".onnx":
        return "onnx"
    if ext == ".ubj":
        return "xgboost"
    if ext == ".json":
        return "xgboost"
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n") or b"version=v" in head:
        return "lightgbm"
    if ext in (".txt", ".lgb"):
        return "lightgbm"
    if head[:1] == b"\x80":  # pickle protocol 2+
        return "pickle"
    if ext in (".model", ".bin", ".xgb"):
        return "xgboost"
    raise Refusal(f"{base(path)}: not a file this importer knows (expected a pickle/joblib file, "
                  f"an XGBoost .json/.ubj, a LightGBM .txt or an ONNX .onnx)", UNKNOWN_EXIT)


def load_pickle(path):
    need("numpy", purpose="reading a pickle")
    try:
        try:
            import joblib
        except ImportError:
            with open(path, "rb") as f:
                return pickle.load(f)
        return joblib.load(path)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        raise Refusal(f"{base(path)} was pickled with a module that is not installed ({e.name}): "
                      f"pip install {PIP_NAMES.get(top, top)}", MISSING_EXIT)
    except Exception as e:  # not a pickle, truncated, or a class its code no longer has
        # The exception's text may quote the file's bytes: only its type goes in the message.
        raise Refusal(f"{base(path)} cannot be unpickled ({type(e).__name__}): it is not a "
                      "pickle or joblib file, it is damaged, or it needs code that is not "
                      "importable here", UNREADABLE_EXIT, detail=f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------------------------------------
# Sample rows


def rows_from_ranges(lo, hi, n, rng):
    import numpy as np
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    span = np.where(hi > lo, hi - lo, 1.0)
    X = lo + rng.uniform(-0.1, 1.1, size=(n, len(lo))) * span
    return X.astype(np.float32).astype(np.float64)


def ranges_from_thresholds(pairs, n_features):
    """Per-feature (low, high) from (feature, threshold) pairs of tree splits."""
    import numpy as np
    lo = np.full(n_features, np.inf)
    hi = np.full(n_features, -np.inf)
    for f, t in pairs:
        if 0 <= f < n_features and np.isfinite(t):
            lo[f] = min(lo[f], t)
            hi[f] = max(hi[f], t)
    unset = ~np.isfinite(lo)
    lo[unset], hi[unset] = -1.0, 1.0
    return lo, hi


def sklearn_ranges(est, n_features):
    """Feature ranges from a fitted estimator: scaler statistics or tree thresholds."""
    import numpy as np
    steps = [s for _, s in est.steps] if hasattr(est, "steps") else [est]
    first = steps[0]
    if hasattr(first, "mean_") and hasattr(first, "scale_") and first.mean_ is not None:
        return first.mean_ - 2 * first.scale_, first.mean_ + 2 * first.scale_
    if hasattr(first, "data_min_"):
        return first.data_min_, first.data_max_
    last = steps[-1]
    trees = []
    if hasattr(last, "tree_"):
        trees = [last.tree_]
    elif hasattr(last, "estimators_"):
        for e in np.ravel(last.estimators_):
            if hasattr(e, "tree_"):
                trees.append(e.tree_)
    pairs = []
    for t in trees:
        pairs.extend((int(f), float(th)) for f, th in zip(t.feature, t.threshold) if f >= 0)
    return ranges_from_thresholds(pairs, n_features)


# ---------------------------------------------------------------------------------------------
# Writers


def toml_str(s):
    return json.dumps(str(s))


def toml_list(items):
    return "[" + ", ".join(toml_str(s) for s in items) + "]"


def write_toml(stage, description, feature_names, class_labels, input_shape):
    lines = [f"# Written by `ferroserve import`. Input: {input_shape}.",
             f"description = {toml_str(description)}"]
    if feature_names is not None:
        lines.append(f"feature_names = {toml_list(feature_names)}")
    if class_labels is not None:
        lines.append(f"class_labels = {toml_list(class_labels)}")
    with open(os.path.join(stage, "model.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")


def default_labels(classes):
    """Class labels worth writing: anything but 0..n-1 integers (which the models answer)."""
    if classes is None:
        return None
    cl = list(classes)
    if all(isinstance(c, (int,)) or getattr(c, "dtype", None) is not None and c.dtype.kind in "iu"
           for c in cl) and [int(c) for c in cl] == list(range(len(cl))):
        return None
    return [str(c) for c in cl]


def tensor(name, X, datatype="FP32"):
    import numpy as np
    X = np.asarray(X)
    if datatype == "BYTES":
        data = [str(v) for v in X.ravel()]
    else:
        data = [float(v) for v in X.ravel()]
    return {"name": name, "datatype": datatype, "shape": list(X.shape), "data": data}


def checks_for(kind, proba=None, labels=None, value=None, prob_output="probabilities",
               label_output="label", value_output="value"):
    import numpy as np
    checks = []
    if kind == "classifier":
        p = np.asarray(proba, dtype=np.float64)
        s = np.sort(p, axis=1)
        clear = (s[:, -1] - s[:, -2]) > 1e-3 if p.shape[1] > 1 else np.ones(len(p), bool)
        checks.append({"output": prob_output, "kind": "values",
                       "want": [float(v) for v in p.ravel()]})
        checks.append({"output": label_output, "kind": "labels",
                       "want": [str(v) for v in np.asarray(labels).ravel()],
                       "mask": [bool(c) for c in clear]})
    else:
        checks.append({"output": value_output, "kind": "values",
                       "want": [float(v) for v in np.asarray(value, dtype=np.float64).ravel()]})
    return checks


def write_verify(stage, inputs, checks, tol, library):
    with open(os.path.join(stage, "verify.json"), "w") as f:
        json.dump({"library": library, "inputs": inputs, "checks": checks, "tolerance": tol}, f)


# ---------------------------------------------------------------------------------------------
# XGBoost and LightGBM


def xgb_objective_kind(booster):
    cfg = json.loads(booster.save_config())
    name = cfg["learner"]["objective"]["name"]
    if name.startswith("binary:"):
        return "binary", 2
    if name.startswith("multi:"):
        n = int(cfg["learner"]["learner_model_param"]["num_class"])
        return ("multi" if name == "multi:softprob" else "multi_softmax"), n
    return "regression", None


def import_xgboost_booster(booster, stage, args, rng, classes=None, what="XGBoost booster"):
    import numpy as np
    xgb = need("xgboost", purpose="an XGBoost model")
    path = os.path.join(stage, "model.json")
    booster.save_model(path)
    n = booster.num_features()
    df = booster.trees_to_dataframe()
    fmap = {name: i for i, name in enumerate(booster.feature_names or [])}
    pairs = []
    for feat, split in zip(df["Feature"], df["Split"]):
        if feat == "Leaf":
            continue
        f = fmap.get(feat)
        if f is None and isinstance(feat, str) and feat.startswith("f") and feat[1:].isdigit():
            f = int(feat[1:])
        if f is not None:
            pairs.append((f, float(split)))
    lo, hi = ranges_from_thresholds(pairs, n)
    X = rows_from_ranges(lo, hi, args.rows, rng)
    kind, n_classes = xgb_objective_kind(booster)
    dm = xgb.DMatrix(X, feature_names=booster.feature_names)
    pred = booster.predict(dm)
    if kind == "multi_softmax":
        raise Refusal("multi:softmax boosters answer class indices only; retrain with "
                      "multi:softprob (the same model with probabilities)", UNCONVERTIBLE_EXIT,
                      n_features=n)
    if kind == "binary":
        proba = np.column_stack([1 - pred, pred])
    elif kind == "multi":
        proba = np.asarray(pred).reshape(len(X), n_classes)
    labels_list = default_labels(classes)
    if kind == "regression":
        checks = checks_for("regressor", value=pred)
        desc_kind = f"regression ({json.loads(booster.save_config())['learner']['objective']['name']})"
    else:
        idx = np.argmax(proba, axis=1)
        labels = [labels_list[i] for i in idx] if labels_list else idx
        checks = checks_for("classifier", proba=proba, labels=labels)
        desc_kind = f"{n_classes} classes"
    write_toml(stage, f"{what}, {booster.num_boosted_rounds()} rounds, {n} features, {desc_kind}; "
               f"imported from {os.path.basename(args.model)}",
               booster.feature_names, labels_list, f"FP32 [-1, {n}]")
    write_verify(stage, [tensor("input", X)], checks, TOL_TREES, f"xgboost {xgb.__version__}")
    return "model.json"


def import_lightgbm_booster(booster, stage, args, rng, classes=None, what="LightGBM booster"):
    import numpy as np
    lgb = need("lightgbm", purpose="a LightGBM model")
    path = os.path.join(stage, "model.txt")
    booster.save_model(path)
    n = booster.num_feature()
    dump = booster.dump_model()
    pairs = []

    def walk(node):
        if "split_feature" in node:
            t = node.get("threshold")
            if isinstance(t, (int, float)):
                pairs.append((int(node["split_feature"]), float(t)))
            walk(node["left_child"])
            walk(node["right_child"])

    for t in dump["tree_info"]:
        walk(t["tree_structure"])
    lo, hi = ranges_from_thresholds(pairs, n)
    X = rows_from_ranges(lo, hi, args.rows, rng)
    pred = np.asarray(booster.predict(X))
    objective = str(dump.get("objective", "")).split(" ")[0]
    labels_list = default_labels(classes)
    if objective in ("binary", "cross_entropy"):
        proba = np.column_stack([1 - pred, pred])
        n_classes = 2
    elif objective.startswith("multiclass"):
        proba = pred.reshape(len(X), -1)
        n_classes = proba.shape[1]
    else:
        proba = None
    if proba is None:
        checks = checks_for("regressor", value=pred)
        desc_kind = f"regression ({objective})"
    else:
        idx = np.argmax(proba, axis=1)
        labels = [labels_list[i] for i in idx] if labels_list else idx
        checks = checks_for("classifier", proba=proba, labels=labels)
        desc_kind = f"{n_classes} classes"
    names = booster.feature_name()
    if names and all(nm == f"Column_{i}" for i, nm in enumerate(names)):
        names = None
    write_toml(stage, f"{what}, {booster.num_trees()} trees, {n} features, {desc_kind}; "
               f"imported from {os.path.basename(args.model)}", names, labels_list,
               f"FP32 [-1, {n}]")
    write_verify(stage, [tensor("input", X)], checks, TOL_TREES, f"lightgbm {lgb.__version__}")
    return "model.txt"


# ---------------------------------------------------------------------------------------------
# scikit-learn through ONNX


def register_boosting_converters(est):
    """Lets skl2onnx convert pipelines that hold XGBoost or LightGBM estimators."""
    names = {type(s).__module__.split(".")[0] for _, s in getattr(est, "steps", [])}
    if not names & {"xgboost", "lightgbm"}:
        return
    skl2onnx = need("skl2onnx", "onnxmltools", purpose="a pipeline holding a boosted model")[0]
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes, calculate_linear_regressor_output_shapes)
    if "xgboost" in names:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor
        update_registered_converter(XGBClassifier, "XGBoostXGBClassifier",
                                    calculate_linear_classifier_output_shapes, convert_xgboost,
                                    options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
        update_registered_converter(XGBRegressor, "XGBoostXGBRegressor",
                                    calculate_linear_regressor_output_shapes, convert_xgboost)
    if "lightgbm" in names:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
        from lightgbm import LGBMClassifier, LGBMRegressor
        update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier",
                                    calculate_linear_classifier_output_shapes, convert_lightgbm,
                                    options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
        update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor",
                                    calculate_linear_regressor_output_shapes, convert_lightgbm)
    return skl2onnx


def column_inputs(est):
    """One input per column for a pipeline that starts with a ColumnTransformer fitted on a
    DataFrame: string columns (those an encoder with text categories reads) and float ones."""
    import numpy as np
    first = est.steps[0][1] if hasattr(est, "steps") else est
    names = getattr(est, "feature_names_in_", None)
    if names is None or type(first).__name__ != "ColumnTransformer":
        return None
    text = set()
    for _, trans, cols in first.transformers_:
        cats = getattr(trans, "categories_", None)
        if cats is None and hasattr(trans, "steps"):
            cats = next((getattr(s, "categories_", None) for _, s in trans.steps
                         if hasattr(s, "categories_")), None)
        if cats is not None:
            for c, cat in zip(cols if not isinstance(cols, str) else [cols], cats):
                if np.asarray(cat).dtype.kind in "OUS":
                    text.add(c)
    return [(str(n), "BYTES" if n in text else "FP32") for n in names]


def import_sklearn(est, stage, args, rng):
    import numpy as np
    need("sklearn", "skl2onnx", "onnx", purpose="a scikit-learn model (converted to ONNX)")
    register_boosting_converters(est)
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    sk = need("sklearn", purpose="a scikit-learn model")
    is_classifier = hasattr(est, "predict_proba") and hasattr(est, "classes_")
    cols = column_inputs(est)
    if cols:
        initial = [(n, StringTensorType([None, 1]) if dt == "BYTES" else FloatTensorType([None, 1]))
                   for n, dt in cols]
        n_features = len(cols)
    else:
        n_features = getattr(est, "n_features_in_", None)
        if n_features is None:
            raise Refusal(f"{type(est).__name__} does not record its number of features "
                          "(n_features_in_); is it fitted?", UNCONVERTIBLE_EXIT)
        initial = [("input", FloatTensorType([None, int(n_features)]))]
    options = {id(est): {"zipmap": False}} if is_classifier else None
    try:
        onx = convert_sklearn(est, initial_types=initial, target_opset=ONNX_OPSET, options=options)
    except Exception as e:  # skl2onnx names the estimator it cannot convert
        first = (str(e).strip().splitlines() or [""])[0]
        raise Refusal(f"skl2onnx cannot convert this {type(est).__name__}: {first}",
                      UNCONVERTIBLE_EXIT, n_features=n_features, detail=str(e))
    onx.graph.name = "imported"
    path = os.path.join(stage, "model.onnx")
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())

    # Sample rows: the columns' own values where they are text, else numbers in range.
    if cols:
        import pandas as pd
        first = est.steps[0][1] if hasattr(est, "steps") else est
        cats = {}
        for _, trans, cs in first.transformers_:
            enc = trans if hasattr(trans, "categories_") else next(
                (s for _, s in getattr(trans, "steps", []) if hasattr(s, "categories_")), None)
            if enc is not None:
                for c, cat in zip(cs if not isinstance(cs, str) else [cs], enc.categories_):
                    cats[c] = list(cat)
        data = {}
        for n, dt in cols:
            if dt == "BYTES":
                data[n] = rng.choice([str(c) for c in cats.get(n, ["a"])], size=args.rows)
            else:
                data[n] = rng.normal(0, 3, size=args.rows).astype(np.float32).astype(np.float64)
        X = pd.DataFrame(data)
        inputs = [tensor(n, X[n].to_numpy().reshape(-1, 1), dt) for n, dt in cols]
        feature_names = [n for n, _ in cols]
        shape_note = ", ".join(f"{n} {dt} [-1, 1]" for n, dt in cols)
    else:
        lo, hi = sklearn_ranges(est, int(n_features))
        X = rows_from_ranges(lo, hi, args.rows, rng)
        names = getattr(est, "feature_names_in_", None)
        if names is not None:
            import pandas as pd
            X = pd.DataFrame(X, columns=list(names))
        inputs = [tensor("input", np.asarray(X, dtype=np.float64))]
        feature_names = [str(n) for n in names] if names is not None else None
        shape_note = f"FP32 [-1, {n_features}]"
    if is_classifier:
        proba = est.predict_proba(X)
        labels = est.predict(X)
        checks = checks_for("classifier", proba=proba, labels=labels)
        labels_list = default_labels(est.classes_)
        kind = f"classifier, {len(est.classes_)} classes"
    else:
        value = est.predict(X)
        checks = checks_for("regressor", value=value, value_output="variable")
        labels_list = None
        kind = "regressor"
    steps = " -> ".join(type(s).__name__ for _, s in est.steps) if hasattr(est, "steps") \
        else type(est).__name__
    write_toml(stage, f"scikit-learn {steps} ({kind}), converted to ONNX by skl2onnx; imported "
               f"from {os.path.basename(args.model)}", feature_names, labels_list, shape_note)
    write_verify(stage, inputs, checks, TOL_ONNX, f"scikit-learn {sk.__version__}")
    return "model.onnx"


# ---------------------------------------------------------------------------------------------
# ONNX as it is


def import_onnx(stage, args, rng):
    import shutil
    import numpy as np
    ort = need("onnxruntime", purpose="checking an ONNX graph")
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    shutil.copyfile(args.model, os.path.join(stage, "model.onnx"))
    feeds, inputs = {}, []
    for i in sess.get_inputs():
        shape = [args.rows if not isinstance(d, int) or d < 0 else d for d in i.shape]
        if i.type == "tensor(string)":
            a = np.array(["a"] * int(np.prod(shape)), dtype=object).reshape(shape)
            inputs.append(tensor(i.name, a, "BYTES"))
        elif i.type in ("tensor(float)", "tensor(double)"):
            a = rng.normal(0, 2, size=shape)
            a = a.astype(np.float32 if i.type == "tensor(float)" else np.float64)
            inputs.append(tensor(i.name, a, "FP32" if i.type == "tensor(float)" else "FP64"))
        elif i.type in ("tensor(int64)", "tensor(int32)"):
            a = rng.integers(0, 3, size=shape).astype(np.int64 if i.type.endswith("64)") else np.int32)
            inputs[len(inputs):] = [{**tensor(i.name, a), "datatype": "INT64" if i.type.endswith("64)") else "INT32"}]
        else:
            raise Refusal(f"input '{i.name}' is {i.type}; the importer cannot make sample rows for it")
        feeds[i.name] = a
    outs = sess.run(None, feeds)
    checks = []
    for o, v in zip(sess.get_outputs(), outs):
        if isinstance(v, list):  # ZipMap: ferroserve answers [rows, classes] in key order
            keys = sorted(v[0].keys()) if v else []
            v = np.array([[m[k] for k in keys] for m in v])
        v = np.asarray(v)
        if v.dtype.kind in "OUS":
            checks.append({"output": o.name, "kind": "labels", "want": [str(x) for x in v.ravel()]})
        else:
            checks.append({"output": o.name, "kind": "values",
                           "want": [float(x) for x in v.astype(np.float64).ravel()]})
    write_toml(stage, f"ONNX graph imported from {os.path.basename(args.model)}", None, None,
               ", ".join(f"{i.name} {i.type} {i.shape}" for i in sess.get_inputs()))
    write_verify(stage, inputs, checks, {"abs": 1e-5, "rel": 1e-5}, f"onnxruntime {ort.__version__}")
    return "model.onnx"


# ---------------------------------------------------------------------------------------------


def inspect(args):
    """--inspect: what the file holds, converting nothing."""
    kind = sniff(args.model)
    if kind != "pickle":
        return {"type": kind, "n_features": None}
    obj = load_pickle(args.model)
    if not hasattr(obj, "predict"):
        raise Refusal(f"{base(args.model)} holds a {type(obj).__module__}.{type(obj).__name__}, "
                      "not a model with predict()", UNKNOWN_EXIT)
    return {"type": f"{type(obj).__module__}.{type(obj).__name__}",
            "n_features": feature_count(obj)}


def convert(args):
    """Writes the artifact, model.toml and verify.json into --stage; the answer's fields."""
    np = need("numpy", purpose="importing a model")
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.stage, exist_ok=True)
    kind = sniff(args.model)
    if kind == "onnx":
        return {"artifact": import_onnx(args.stage, args, rng), "n_features": None}
    if kind == "xgboost":
        xgb = need("xgboost", purpose="an XGBoost model file")
        booster = xgb.Booster(model_file=args.model)
        return {"artifact": import_xgboost_booster(booster, args.stage, args, rng),
                "n_features": int(booster.num_features())}
    if kind == "lightgbm":
        lgb = need("lightgbm", purpose="a LightGBM model file")
        booster = lgb.Booster(model_file=args.model)
        return {"artifact": import_lightgbm_booster(booster, args.stage, args, rng),
                "n_features": int(booster.num_feature())}
    obj = load_pickle(args.model)
    n_features = feature_count(obj)
    mod = type(obj).__module__.split(".")[0]
    name = type(obj).__name__
    try:
        if mod == "xgboost" and name == "Booster":
            n_features = int(obj.num_features())
            artifact = import_xgboost_booster(obj, args.stage, args, rng)
        elif mod == "xgboost" and hasattr(obj, "get_booster"):
            artifact = import_xgboost_booster(obj.get_booster(), args.stage, args, rng,
                                              classes=getattr(obj, "classes_", None),
                                              what=f"XGBoost {name}")
        elif mod == "lightgbm" and name == "Booster":
            n_features = int(obj.num_feature())
            artifact = import_lightgbm_booster(obj, args.stage, args, rng)
        elif mod == "lightgbm" and hasattr(obj, "booster_"):
            artifact = import_lightgbm_booster(obj.booster_, args.stage, args, rng,
                                               classes=getattr(obj, "classes_", None),
                                               what=f"LightGBM {name}")
        elif hasattr(obj, "predict"):
            artifact = import_sklearn(obj, args.stage, args, rng)
        else:
            raise Refusal(f"{base(args.model)} holds a {type(obj).__module__}.{name}, not a "
                          "model with predict()", UNKNOWN_EXIT)
    except Refusal as e:
        if e.n_features is None:
            e.n_features = n_features
        raise
    return {"artifact": artifact, "n_features": n_features}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--stage")
    ap.add_argument("--inspect", action="store_true")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.inspect and not args.stage:
        ap.error("--stage is required (unless --inspect)")
    try:
        answer = inspect(args) if args.inspect else convert(args)
        print(json.dumps(answer))
        return 0
    except Refusal as e:
        if e.detail:
            print(e.detail, file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        print(json.dumps({"error": {"code": CODE_NAMES.get(e.code, "failed"), "message": str(e),
                                    "n_features": e.n_features}}))
        return e.code
    except Exception as e:  # an unexpected failure: show where (standard error only)
        traceback.print_exc()
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        print(json.dumps({"error": {"code": "failed", "message": "the import helper failed "
                                    f"({type(e).__name__}); the server log has the details",
                                    "n_features": None}}))
        return 1


if __name__ == "__main__":
    sys.exit(main())
