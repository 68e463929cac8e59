"""Tree-engine benchmark: ferroserve's `CompiledForest` against the libraries' own predict.

Called by `bench/trees/run.sh`, which builds the timing binary first. In one run it

1. trains the benchmark models with the real libraries into the output folder (XGBoost and
   LightGBM binary and multiclass boosters, scikit-learn's iris `RandomForestClassifier` exported
   with skl2onnx, and a 50-tree depth-4 XGBoost model for single-row latency);
2. writes the same 10,000 float32 input rows per dataset for every runner;
3. times each library's own predict on one thread (xgboost `inplace_predict` with nthread=1,
   lightgbm `predict(num_threads=1)`, scikit-learn `predict_proba` with n_jobs=1, onnxruntime
   with one intra-op and one inter-op thread, sequential execution);
4. times ferroserve's engine on the same files and rows (`examples/time_engine.rs`, one thread)
   and checks that its answers agree with each library's before any time is reported;
5. prints a table of speed ratios (library time / ferroserve time; above 1 means ferroserve is
   faster) and writes it as markdown (`results.md`) and JSON (`results.json`).

Machines are shared and noisy: every number is the median over `--rounds` rounds, each round
the median of `--reps` repetitions, and the rounds alternate library and engine so that a noisy
spell hits both sides.
"""
import argparse
import json
import os
import platform
import subprocess
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")

N_ROWS = 10_000
SEED = 20240611
# Boosted models are trained once (seeded) and reused from the output folder unless --retrain.
RETRAIN = False


def median(v):
    return float(np.median(np.asarray(v, dtype=np.float64)))


def time_reps(fn, reps):
    """Median wall time of `fn()` in nanoseconds over `reps` calls (after one warm-up call)."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter_ns()
        fn()
        ts.append(time.perf_counter_ns() - t)
    return median(ts)


def time_single_rows(fn, X, passes):
    """Median over `passes` of the mean time of one single-row call, cycling through 1,000 rows."""
    rows = [X[i : i + 1] for i in range(min(1000, len(X)))]
    fn(rows[0])
    ts = []
    for _ in range(passes):
        t = time.perf_counter_ns()
        for r in rows:
            fn(r)
        ts.append((time.perf_counter_ns() - t) / len(rows))
    return median(ts)


# ---------------------------------------------------------------------------------------------
# Data and models


def tabular(n_classes, seed):
    """A realistic-looking tabular problem: 32 features, some redundant, 2% missing values."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=30_000 + N_ROWS,
        n_features=32,
        n_informative=16,
        n_redundant=8,
        n_classes=n_classes,
        n_clusters_per_class=3,
        class_sep=0.8,
        flip_y=0.03,
        random_state=seed,
    )
    rng = np.random.default_rng(seed)
    X = X.astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan
    return X[:-N_ROWS], y[:-N_ROWS], np.ascontiguousarray(X[-N_ROWS:])


def iris_rows(seed):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(X), N_ROWS)
    Xt = X[idx] + rng.normal(0.0, 0.15, (N_ROWS, X.shape[1]))
    return X.astype(np.float32), y, np.ascontiguousarray(Xt.astype(np.float32))


def build(out):
    """Trains every model; returns the benchmark cases."""
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.ensemble import RandomForestClassifier

    cases = []

    Xb, yb, Tb = tabular(2, SEED)
    Xm, ym, Tm = tabular(5, SEED + 1)
    bin_rows = os.path.join(out, "tabular_binary.f32")
    multi_rows = os.path.join(out, "tabular_multi5.f32")
    Tb.tofile(bin_rows)
    Tm.tofile(multi_rows)

    def xgb_case(name, X, y, T, rows, params, rounds, note, latency=False):
        path = os.path.join(out, name + ".json")
        if RETRAIN or not os.path.exists(path):
            booster = xgb.train(
                {**params, "tree_method": "hist", "nthread": 2, "seed": SEED},
                xgb.DMatrix(X, label=y),
                num_boost_round=rounds,
            )
            booster.save_model(path)
        booster = xgb.Booster(model_file=path)
        booster.set_param({"nthread": 1})
        pred = lambda A: booster.inplace_predict(A)  # noqa: E731
        n_trees = len(booster.get_dump())
        return dict(
            name=name,
            model=path,
            rows=rows,
            T=T,
            desc=f"{n_trees} trees, depth {params['max_depth']}, {T.shape[1]} features, {note}",
            lib="xgboost inplace_predict (nthread=1)",
            lib_key="xgboost",
            predict=pred,
            expect=lambda A: np.asarray(pred(A), dtype=np.float64),
            ours=(lambda s: s[:, 1]) if params["objective"] == "binary:logistic" else None,
            tol=1e-5,
            target=None if latency else 1.5,
            latency=latency,
        )

    cases.append(
        xgb_case(
            "xgb_binary",
            Xb,
            yb,
            Tb,
            bin_rows,
            dict(objective="binary:logistic", max_depth=6, eta=0.1),
            300,
            "binary:logistic",
        )
    )
    cases.append(
        xgb_case(
            "xgb_multiclass",
            Xm,
            ym,
            Tm,
            multi_rows,
            dict(objective="multi:softprob", num_class=5, max_depth=6, eta=0.1),
            60,
            "multi:softprob, 5 classes",
        )
    )

    def lgb_case(name, X, y, T, rows, params, rounds, note):
        path = os.path.join(out, name + ".txt")
        if RETRAIN or not os.path.exists(path):
            booster = lgb.train(
                {**params, "num_threads": 2, "verbose": -1, "seed": SEED},
                lgb.Dataset(X, label=y),
                num_boost_round=rounds,
            )
            booster.save_model(path)
        booster = lgb.Booster(model_file=path)
        pred = lambda A: booster.predict(A, num_threads=1)  # noqa: E731
        return dict(
            name=name,
            model=path,
            rows=rows,
            T=T,
            desc=f"{booster.num_trees()} trees, {params['num_leaves']} leaves, {T.shape[1]} features, {note}",
            lib="lightgbm predict (num_threads=1)",
            lib_key="lightgbm",
            predict=pred,
            expect=lambda A: np.asarray(pred(A), dtype=np.float64),
            ours=(lambda s: s[:, 1]) if params["objective"] == "binary" else None,
            tol=1e-6,
            target=1.5,
            latency=False,
        )

    cases.append(
        lgb_case(
            "lgb_binary",
            Xb,
            yb,
            Tb,
            bin_rows,
            dict(objective="binary", num_leaves=63, learning_rate=0.1),
            300,
            "binary",
        )
    )
    cases.append(
        lgb_case(
            "lgb_multiclass",
            Xm,
            ym,
            Tm,
            multi_rows,
            dict(objective="multiclass", num_class=5, num_leaves=63, learning_rate=0.1),
            60,
            "multiclass, 5 classes",
        )
    )

    # scikit-learn iris forest, exported with skl2onnx: timed against scikit-learn and ONNX Runtime.
    import onnxruntime as ort
    from skl2onnx import to_onnx

    Xi, yi, Ti = iris_rows(SEED)
    iris_in = os.path.join(out, "iris.f32")
    Ti.tofile(iris_in)
    rf = RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1).fit(Xi, yi)
    onnx_path = os.path.join(out, "skl_iris_rf.onnx")
    onx = to_onnx(rf, Xi[:1], options={id(rf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    with open(onnx_path, "wb") as f:
        f.write(onx.SerializeToString())
    depth = max(e.tree_.max_depth for e in rf.estimators_)
    desc = f"100 trees, depth up to {depth}, 4 features, 3 classes"
    cases.append(
        dict(
            name="skl_iris_rf",
            model=onnx_path,
            rows=iris_in,
            T=Ti,
            desc=desc + " (vs scikit-learn)",
            lib="scikit-learn predict_proba (n_jobs=1)",
            lib_key="sklearn",
            predict=rf.predict_proba,
            expect=lambda A: rf.predict_proba(A),
            ours=None,
            tol=1e-5,
            target=None,
            latency=False,
        )
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    ort_pred = lambda A: sess.run(None, {in_name: A})  # noqa: E731
    cases.append(
        dict(
            name="skl_iris_rf",
            model=onnx_path,
            rows=iris_in,
            T=Ti,
            desc=desc + " (vs ONNX Runtime)",
            lib="onnxruntime (1 intra-op, 1 inter-op thread, sequential)",
            lib_key="onnxruntime",
            predict=ort_pred,
            expect=lambda A: np.asarray(ort_pred(A)[1], dtype=np.float64),
            ours=None,
            tol=1e-5,
            target=3.0,
            latency=False,
        )
    )

    # Single-row latency model: 50 trees of depth 4.
    cases.append(
        xgb_case(
            "xgb_latency_50x4",
            Xb,
            yb,
            Tb,
            bin_rows,
            dict(objective="binary:logistic", max_depth=4, eta=0.3),
            50,
            "binary:logistic (single-row latency)",
            latency=True,
        )
    )
    return cases


# ---------------------------------------------------------------------------------------------
# Timing


def run_engine(engine, case, reps, single_reps, scores_out=None):
    cmd = [engine, case["model"], case["rows"], "--reps", str(reps), "--single-reps", str(single_reps)]
    if scores_out:
        cmd += ["--out", scores_out]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def check_agreement(engine, case, out):
    """Runs the engine once and compares its scores with the library's; raises on disagreement."""
    scores_path = os.path.join(out, case["name"] + "." + case["lib_key"] + ".scores.f64")
    run_engine(engine, case, 1, 0, scores_path)
    T = case["T"]
    ours = np.fromfile(scores_path, dtype="<f8").reshape(T.shape[0], -1)
    if case["ours"] is not None:
        ours = case["ours"](ours)
    theirs = case["expect"](T).reshape(ours.shape)
    diff = float(np.max(np.abs(ours - theirs)))
    if not diff <= case["tol"]:
        bad = int(np.sum(np.abs(ours - theirs) > case["tol"]))
        raise SystemExit(
            f"{case['name']} vs {case['lib_key']}: answers differ (max |diff| {diff:.3g}, "
            f"{bad} values beyond {case['tol']}); not timing a wrong answer"
        )
    return diff


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", required=True, help="path of the time_engine binary")
    ap.add_argument("--out", required=True, help="output folder (models, inputs, results)")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 7)))
    ap.add_argument("--only", default=None, help="run only cases whose name contains this")
    ap.add_argument("--retrain", action="store_true", help="train the boosted models again")
    args = ap.parse_args()
    global RETRAIN
    RETRAIN = args.retrain
    os.makedirs(args.out, exist_ok=True)

    import lightgbm
    import onnxruntime
    import sklearn
    import xgboost

    versions = dict(
        xgboost=xgboost.__version__,
        lightgbm=lightgbm.__version__,
        sklearn=sklearn.__version__,
        onnxruntime=onnxruntime.__version__,
        numpy=np.__version__,
    )
    t0 = time.time()
    cases = build(args.out)
    if args.only:
        cases = [c for c in cases if args.only in c["name"]]
    print(f"trained {len(cases)} cases in {time.time() - t0:.1f}s into {args.out}", flush=True)

    results = []
    for case in cases:
        diff = check_agreement(args.engine, case, args.out)
        lib_rounds, our_rounds, our_single, lib_single = [], [], [], []
        for _ in range(args.rounds):
            lib_rounds.append(time_reps(lambda: case["predict"](case["T"]), args.reps))
            e = run_engine(args.engine, case, args.reps, args.reps if case["latency"] else 0)
            our_rounds.append(e["batch_ns"])
            if case["latency"]:
                our_single.append(e["single_row_ns"])
                lib_single.append(time_single_rows(case["predict"], case["T"], 3))
        r = dict(
            name=case["name"],
            desc=case["desc"],
            lib=case["lib"],
            lib_key=case["lib_key"],
            rows=int(case["T"].shape[0]),
            max_abs_diff=diff,
            lib_batch_ms=median(lib_rounds) / 1e6,
            ours_batch_ms=median(our_rounds) / 1e6,
            target=case["target"],
        )
        r["ours_ns_per_row"] = r["ours_batch_ms"] * 1e6 / r["rows"]
        r["speedup"] = r["lib_batch_ms"] / r["ours_batch_ms"]
        if case["latency"]:
            r["ours_single_row_ns"] = median(our_single)
            r["lib_single_row_ns"] = median(lib_single)
        results.append(r)
        line = (
            f"{r['name']:<18} {r['lib_key']:<12} lib {r['lib_batch_ms']:9.3f} ms  ours {r['ours_batch_ms']:8.3f} ms"
            f"  ({r['ours_ns_per_row']:.1f} ns/row)  x{r['speedup']:.2f}"
        )
        if case["latency"]:
            line += f"  single row: ours {r['ours_single_row_ns']:.0f} ns, lib {r['lib_single_row_ns'] / 1e3:.1f} us"
        print(line, flush=True)

    md = markdown(results, versions, args)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(dict(versions=versions, results=results), f, indent=1)
    print()
    print(md)


def markdown(results, versions, args):
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f". {N_ROWS:,}-row float32 batch, one thread on every side; median of {args.rounds} rounds x {args.reps} repetitions.",
        "",
        "| model | library call | library ms / batch | ferroserve ms / batch | ferroserve ns / row | speed-up | target | met |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        t = r["target"]
        lines.append(
            f"| {r['name']}: {r['desc']} | {r['lib']} | {r['lib_batch_ms']:.2f} | {r['ours_batch_ms']:.3f} | "
            f"{r['ours_ns_per_row']:.1f} | **{r['speedup']:.1f}x** | "
            + (f"≥ {t:g}x | {'yes' if r['speedup'] >= t else 'NO'} |" if t else "— | — |")
        )
    for r in results:
        if "ours_single_row_ns" in r:
            ok = r["ours_single_row_ns"] < 1000
            lines += [
                "",
                f"Single-row in-process latency, {r['name']} ({r['desc']}): ferroserve "
                f"`CompiledForest::predict` on one row **{r['ours_single_row_ns']:.0f} ns** "
                f"(target < 1 µs: {'met' if ok else 'NOT met'}); {r['lib']} on one row "
                f"{r['lib_single_row_ns'] / 1e3:.1f} µs ({r['lib_single_row_ns'] / r['ours_single_row_ns']:.0f}x).",
            ]
    lines += [
        "",
        "Every case first checks that ferroserve's scores equal the library's (largest absolute "
        "difference: " + ", ".join(f"{r['name']}/{r['lib_key']} {r['max_abs_diff']:.1g}" for r in results) + ").",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
