#!/usr/bin/env python3
"""Trains fresh models of every kind `ferroserve import` accepts, into the folder given as the
first argument, with the training library's answers for a few rows (expected.json). Used by
tests/import_roundtrip.rs; nothing here is kept."""
import json
import pickle
import shutil
import sys
from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

out = Path(sys.argv[1])
repo_root = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
expected = {}


def tensor(name, X, datatype="FP32"):
    X = np.asarray(X)
    data = [str(v) for v in X.ravel()] if datatype == "BYTES" else [float(v) for v in X.ravel()]
    return {"name": name, "datatype": datatype, "shape": list(X.shape), "data": data}


def record(name, file, inputs, output, want):
    expected[name] = {"file": file, "inputs": inputs, "output": output,
                      "want": [float(v) for v in np.asarray(want, dtype=np.float64).ravel()]}


wine = load_wine(as_frame=True)
iris = load_iris()
diab = load_diabetes()
Xw, Xi, Xd = wine.data.iloc[:4], iris.data[[0, 60, 120]], diab.data[:3]

# scikit-learn Pipeline, pickled, fitted on a DataFrame (feature names).
p = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(wine.data, wine.target)
pickle.dump(p, open(out / "wine_pipe.pkl", "wb"))
record("wine_pipe", "wine_pipe.pkl", [tensor("input", Xw.to_numpy())], "probabilities",
       p.predict_proba(Xw))

# scikit-learn forest, joblib: becomes an ONNX tree ensemble served natively.
rf = RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0).fit(iris.data, iris.target)
joblib.dump(rf, out / "iris_rf.joblib")
record("iris_rf", "iris_rf.joblib", [tensor("input", Xi)], "probabilities", rf.predict_proba(Xi))

# scikit-learn MLP regressor.
mlp = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(8,), max_iter=500,
                                                   random_state=0)).fit(diab.data, diab.target)
joblib.dump(mlp, out / "diab_mlp.joblib")
record("diab_mlp", "diab_mlp.joblib", [tensor("input", Xd)], "variable", mlp.predict(Xd))

# A ColumnTransformer pipeline on a DataFrame with a text column: one input per column.
rng = np.random.default_rng(0)
df = pd.DataFrame({"color": rng.choice(["red", "green", "blue"], 120),
                   "size": rng.normal(10, 3, 120), "weight": rng.normal(50, 10, 120)})
y = ((df["color"] == "red") ^ (df["size"] > 10)).astype(int)
ct = Pipeline([("prep", ColumnTransformer([("oh", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                                           ("sc", StandardScaler(), ["size", "weight"])])),
               ("clf", LogisticRegression(max_iter=1000))]).fit(df, y)
pickle.dump(ct, open(out / "columns.pkl", "wb"))
rows = df.iloc[:3].copy()
rows["size"] = rows["size"].astype(np.float32).astype(np.float64)
rows["weight"] = rows["weight"].astype(np.float32).astype(np.float64)
record("columns", "columns.pkl", [
    tensor("color", rows[["color"]].to_numpy(), "BYTES"),
    tensor("size", rows[["size"]].to_numpy()),
    tensor("weight", rows[["weight"]].to_numpy()),
], "probabilities", ct.predict_proba(rows))

# XGBoost and LightGBM scikit-learn wrappers, pickled.
xc = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(iris.data, iris.target)
pickle.dump(xc, open(out / "xgb_clf.pkl", "wb"))
record("xgb_clf", "xgb_clf.pkl", [tensor("input", Xi)], "probabilities",
       xc.predict_proba(Xi.astype(np.float32)))
lr = lgb.LGBMRegressor(n_estimators=15, verbose=-1).fit(diab.data, diab.target)
joblib.dump(lr, out / "lgb_reg.joblib")
record("lgb_reg", "lgb_reg.joblib", [tensor("input", Xd)], "value",
       lr.predict(Xd.astype(np.float32).astype(np.float64)))

# A scikit-learn Pipeline ending in an XGBoost step (converted with onnxmltools' converter).
px = make_pipeline(StandardScaler(), xgb.XGBClassifier(n_estimators=8, max_depth=3)).fit(
    iris.data, iris.target)
pickle.dump(px, open(out / "pipe_xgb.pkl", "wb"))
record("pipe_xgb", "pipe_xgb.pkl", [tensor("input", Xi)], "probabilities",
       px.predict_proba(Xi.astype(np.float32).astype(np.float64)))

# Native booster files.
xb = xgb.XGBRegressor(n_estimators=10).fit(diab.data, diab.target).get_booster()
xb.save_model(str(out / "xgb_native.json"))
record("xgb_native", "xgb_native.json", [tensor("input", Xd)], "value",
       xb.predict(xgb.DMatrix(Xd.astype(np.float32))))
lb = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(iris.data, iris.target).booster_
lb.save_model(str(out / "lgb_native.txt"))
record("lgb_native", "lgb_native.txt", [tensor("input", Xi)], "probabilities",
       lb.predict(Xi.astype(np.float32).astype(np.float64)))

# An ONNX graph as it is.
shutil.copyfile(repo_root / "examples/models/wine_pipeline/1/model.onnx", out / "onnx_wine.onnx")
import onnxruntime as ort
sess = ort.InferenceSession(str(out / "onnx_wine.onnx"), providers=["CPUExecutionProvider"])
_, proba = sess.run(None, {"input": Xw.to_numpy().astype(np.float32)})
record("onnx_wine", "onnx_wine.onnx", [tensor("input", Xw.to_numpy())], "probabilities", proba)

(out / "expected.json").write_text(json.dumps(expected))
