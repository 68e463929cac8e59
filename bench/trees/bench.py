"""Tree-engine benchmark: ferroserve's `CompiledForest` against the libraries' own predict and
against two forest compilers, lleaves (LightGBM models compiled with LLVM) and tl2cgen (treelite's
C code generator: XGBoost, LightGBM and scikit-learn models).

Called by `bench/trees/run.sh`, which builds the timing binary first. In one run it

1. trains the benchmark models with the real libraries into the output folder (XGBoost and
   LightGBM binary and multiclass boosters, scikit-learn's iris `RandomForestClassifier` exported
   with skl2onnx, and a 50-tree depth-4 XGBoost model for single-row latency);
2. writes the same 10,000 float32 input rows per dataset for every runner;
3. times each library's own predict on one thread (xgboost `inplace_predict` with nthread=1,
   lightgbm `predict(num_threads=1)`, scikit-learn `predict_proba` with n_jobs=1, onnxruntime
   with one intra-op and one inter-op thread, sequential execution);
   and the compiled forests: lleaves `predict(n_jobs=1)` on each LightGBM model, tl2cgen
   `Predictor(nthread=1).predict` on every model (XGBoost and LightGBM through treelite's
   frontends, the iris forest through `treelite.sklearn.import_model` of the same fitted
   scikit-learn object), each compiled once and cached in the output folder;
4. times single rows: the libraries' own predict on a one-row array (a Python call each), the
   compiled forests through `time_native.c`, a C loop calling the compiled function on one row
   at a time (lleaves' `forest_root`, tl2cgen's `predict`), with no Python in between;
5. times ferroserve's engine on the same files and rows (`examples/time_engine.rs`, one thread)
   and checks that its answers agree with every runner's before any time is reported;
6. prints a table of speed ratios (runner time / ferroserve time; above 1 means ferroserve is
   faster), batch and single row, and writes it as markdown (`results.md`) and JSON
   (`results.json`).

lleaves and tl2cgen are optional (`bench/trees/requirements.txt`, which `run.sh` installs):
when one cannot be imported, or a C compiler is missing, the run says so and goes on without it.

Machines are shared and noisy: every number is the median over `--rounds` rounds, each round
the median of `--reps` repetitions, and the rounds alternate library and engine so that a noisy
spell hits both sides.
"""
import argparse
import json
import os
import hashlib
import platform
import shutil
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


def time_single_rows(fn, X, passes, budget_s=0.5):
    """Median over `passes` of the mean time of one single-row call, cycling through up to 1,000
    rows (fewer for a slow call: a pass stops after `budget_s / passes` seconds, 20 rows at
    least)."""
    rows = [X[i : i + 1] for i in range(min(1000, len(X)))]
    fn(rows[0])
    ts = []
    for _ in range(passes):
        t = time.perf_counter_ns()
        end = t + budget_s / passes * 1e9
        n = 0
        for r in rows:
            fn(r)
            n += 1
            if n >= 20 and time.perf_counter_ns() > end:
                break
        ts.append((time.perf_counter_ns() - t) / n)
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
            family="xgboost",
            n_out=params.get("num_class", 1),
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
            family="lightgbm",
            n_out=params.get("num_class", 1),
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
            family="sklearn",
            sk_model=rf,
            n_out=3,
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
            family="onnx",
            n_out=3,
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
# Compiled forests: lleaves and tl2cgen


def optional_tools(out):
    """Which compiled-forest runners can run here: {name: module or None}, with the reason for
    each one that cannot printed (the run goes on without it)."""
    tools = {}
    cc = shutil.which("gcc") or shutil.which("cc")
    harness = None
    if cc is None:
        print("no C compiler (gcc/cc): skipping lleaves and tl2cgen", flush=True)
        return tools, None
    harness = os.path.join(out, "native", "time_native")
    os.makedirs(os.path.dirname(harness), exist_ok=True)
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "time_native.c")
    subprocess.run([cc, "-O2", src, "-o", harness, "-ldl", "-lm"], check=True)
    for name, modules in (("lleaves", ("lleaves",)), ("tl2cgen", ("treelite", "tl2cgen"))):
        try:
            tools[name] = [__import__(m) for m in modules]
        except Exception as e:  # noqa: BLE001 - any import failure means "not here"
            print(
                f"{name} not available ({type(e).__name__}: {e}); skipping its runner "
                "(pip install -r bench/trees/requirements.txt)",
                flush=True,
            )
    return tools, (cc, harness)


def cache_name(out, case, tool, ext):
    """A path in `out/native/` for `case`'s model compiled by `tool`, keyed by the model's bytes,
    so that a retrained model is compiled again."""
    with open(case["model"], "rb") as f:
        h = hashlib.sha1(f.read()).hexdigest()[:12]
    return os.path.join(out, "native", f"{case['name']}.{tool}.{h}{ext}")


def compiled_cases(cases, tools, native, out):
    """For each benchmark model, one case per compiled-forest runner that handles its family."""
    extra = []
    seen = set()
    for c in cases:
        if c["name"] in seen or c["family"] == "onnx":
            continue
        seen.add(c["name"])
        T = c["T"]
        if "lleaves" in tools and c["family"] == "lightgbm":
            (lleaves,) = tools["lleaves"]
            obj = cache_name(out, c, "lleaves", ".o")
            t0 = time.time()
            m = lleaves.Model(model_file=c["model"])
            m.compile(cache=obj)  # compiles once, then loads the cached object
            exe = obj[: -len(".o")]
            if not os.path.exists(exe):
                src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "time_native.c")
                subprocess.run([native[0], "-O2", "-DLLEAVES", src, obj, "-o", exe, "-lm"], check=True)
            print(f"lleaves: {c['name']} ready in {time.time() - t0:.1f}s", flush=True)
            pred = lambda A, m=m: m.predict(A, n_jobs=1)  # noqa: E731
            extra.append(
                {
                    **c,
                    "desc": c["desc"].split(" (vs ")[0],
                    "lib": "lleaves predict (n_jobs=1)",
                    "lib_key": "lleaves",
                    "predict": pred,
                    "expect": lambda A, pred=pred: np.asarray(pred(A), dtype=np.float64),
                    "native": [exe, "lleaves", "-"],
                    "target": 1.0,
                }
            )
        if "tl2cgen" in tools:
            treelite, tl2cgen = tools["tl2cgen"]
            lib = cache_name(out, c, "tl2cgen", ".so")
            t0 = time.time()
            if not os.path.exists(lib):
                if c["family"] == "xgboost":
                    tm = treelite.frontend.load_xgboost_model(c["model"])
                elif c["family"] == "lightgbm":
                    tm = treelite.frontend.load_lightgbm_model(c["model"])
                else:
                    tm = treelite.sklearn.import_model(c["sk_model"])
                tl2cgen.export_lib(tm, toolchain="gcc", libpath=lib, params={"parallel_comp": 4}, nthread=2)
            p = tl2cgen.Predictor(lib, nthread=1)
            dt = np.float64 if p.threshold_type == "float64" else np.float32
            # The DMatrix is built once, outside the timing, as for xgboost's inplace_predict.
            dmat = tl2cgen.DMatrix(np.ascontiguousarray(T, dtype=dt), dtype=p.threshold_type)
            print(f"tl2cgen: {c['name']} ready in {time.time() - t0:.1f}s", flush=True)
            single = lambda A, p=p, dt=dt: p.predict(  # noqa: E731
                tl2cgen.DMatrix(np.ascontiguousarray(A, dtype=dt), dtype=p.threshold_type)
            )
            batch = lambda A, p=p, dmat=dmat: p.predict(dmat)  # noqa: E731
            n = T.shape[0]
            extra.append(
                {
                    **c,
                    "desc": c["desc"].split(" (vs ")[0],
                    "lib": "tl2cgen Predictor (nthread=1)",
                    "lib_key": "tl2cgen",
                    "predict": batch,
                    "predict_one": single,
                    "expect": lambda A, p=p, single=single, batch=batch, n=n: np.asarray(
                        batch(A) if A.shape[0] == n else single(A), dtype=np.float64
                    ).reshape(A.shape[0], -1),
                    "native": [native[1], "tl2cgen", lib],
                    "target": 1.0,
                }
            )
    return extra


def run_native(case, reps, single_reps, scores_out=None):
    cmd = case["native"] + [case["rows"], str(case["T"].shape[1]), str(case["n_out"])]
    cmd += ["--reps", str(reps), "--single-reps", str(single_reps)]
    if scores_out:
        cmd += ["--out", scores_out]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def check_native(case, out):
    """The native harness must answer what the runner's own predict answers."""
    path = os.path.join(out, case["name"] + "." + case["lib_key"] + ".native.f64")
    run_native(case, 1, 0, path)
    got = np.fromfile(path, dtype="<f8")
    want = case["expect"](case["T"]).reshape(-1)
    if got.shape != want.shape or not np.max(np.abs(got - want)) <= 1e-12:
        raise SystemExit(f"{case['name']} vs {case['lib_key']}: time_native's outputs differ from predict's")


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
    ap.add_argument("--runners", default=None, help="comma-separated runner keys to time (default: all)")
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
    tools, native = optional_tools(args.out)
    from importlib.metadata import version

    for name in tools:
        for pkg in {"lleaves": ("lleaves", "llvmlite"), "tl2cgen": ("treelite", "tl2cgen")}[name]:
            versions[pkg] = version(pkg)
    cases += compiled_cases(cases, tools, native, args.out)
    if args.runners:
        keep = set(args.runners.split(","))
        cases = [c for c in cases if c["lib_key"] in keep]
    # The cases of one model side by side.
    order = {n: i for i, n in enumerate(dict.fromkeys(c["name"] for c in cases))}
    cases.sort(key=lambda c: order[c["name"]])

    results = []
    for case in cases:
        diff = check_agreement(args.engine, case, args.out)
        if "native" in case:
            check_native(case, args.out)
        lib_rounds, our_rounds, our_single, lib_single = [], [], [], []
        for _ in range(args.rounds):
            lib_rounds.append(time_reps(lambda: case["predict"](case["T"]), args.reps))
            if "native" in case:
                lib_single.append(run_native(case, 0, 3)["single_row_ns"])
            else:
                lib_single.append(time_single_rows(case.get("predict_one", case["predict"]), case["T"], 3))
            e = run_engine(args.engine, case, args.reps, 3)
            our_rounds.append(e["batch_ns"])
            our_single.append(e["single_row_ns"])
        r = dict(
            name=case["name"],
            desc=case["desc"],
            lib=case["lib"],
            lib_key=case["lib_key"],
            rows=int(case["T"].shape[0]),
            max_abs_diff=diff,
            lib_batch_ms=median(lib_rounds) / 1e6,
            ours_batch_ms=median(our_rounds) / 1e6,
            lib_single_row_ns=median(lib_single),
            ours_single_row_ns=median(our_single),
            lib_single_call="native call (time_native.c)" if "native" in case else "Python call",
            target=case["target"],
        )
        r["ours_ns_per_row"] = r["ours_batch_ms"] * 1e6 / r["rows"]
        r["speedup"] = r["lib_batch_ms"] / r["ours_batch_ms"]
        r["single_speedup"] = r["lib_single_row_ns"] / r["ours_single_row_ns"]
        results.append(r)
        print(
            f"{r['name']:<18} {r['lib_key']:<12} lib {r['lib_batch_ms']:9.3f} ms  ours {r['ours_batch_ms']:8.3f} ms"
            f"  ({r['ours_ns_per_row']:.1f} ns/row)  x{r['speedup']:.2f}"
            f"  single row: lib {r['lib_single_row_ns']:.0f} ns, ours {r['ours_single_row_ns']:.0f} ns"
            f"  x{r['single_speedup']:.2f}",
            flush=True,
        )

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
        "| model | runner | runner ms / batch | ferroserve ms / batch | ferroserve ns / row | batch speed-up "
        "| runner single row | ferroserve single row | single-row speed-up | target | met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def t_us(ns):
        return f"{ns / 1e3:.2f} µs" if ns < 1e5 else f"{ns / 1e3:.0f} µs"

    for r in results:
        t = r["target"]
        met = "—"
        if t:
            met = "yes" if r["speedup"] >= t and (t > 1 or r["single_speedup"] >= t) else "NO"
        lines.append(
            f"| {r['name']}: {r['desc']} | {r['lib']} | {r['lib_batch_ms']:.2f} | {r['ours_batch_ms']:.3f} | "
            f"{r['ours_ns_per_row']:.1f} | **{r['speedup']:.2f}x** | {t_us(r['lib_single_row_ns'])} "
            f"({'native' if r['lib_single_call'].startswith('native') else 'Python'}) | "
            f"{t_us(r['ours_single_row_ns'])} | **{r['single_speedup']:.2f}x** | "
            + (f"≥ {t:g}x | {met} |" if t else "— | — |")
        )
    # Against the fastest runner of each model.
    lines += [
        "",
        "Against the fastest runner of each model (the goal: at least 1.0x, batch and single row):",
        "",
        "| model | fastest batch runner | its ms / batch | ferroserve | ratio | fastest single-row runner | its single row | ferroserve | ratio |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["name"] for r in results):
        rs = [r for r in results if r["name"] == name]
        b = min(rs, key=lambda r: r["lib_batch_ms"])
        s1 = min(rs, key=lambda r: r["lib_single_row_ns"])
        ours_b = median([r["ours_batch_ms"] for r in rs])
        ours_s = median([r["ours_single_row_ns"] for r in rs])
        lines.append(
            f"| {name} | {b['lib_key']} | {b['lib_batch_ms']:.2f} | {ours_b:.3f} | **{b['lib_batch_ms'] / ours_b:.2f}x** | "
            f"{s1['lib_key']} | {t_us(s1['lib_single_row_ns'])} | {t_us(ours_s)} | **{s1['lib_single_row_ns'] / ours_s:.2f}x** |"
        )
    lines += [
        "",
        "Single row: ferroserve `CompiledForest::predict` on one row (probabilities and label "
        "included), cycling through the rows; the libraries' own predict on a one-row array (a "
        "Python call each); lleaves and tl2cgen through `time_native.c`, a C loop calling the "
        "compiled function on one row at a time.",
        "",
        "Every case first checks that ferroserve's scores equal the runner's (largest absolute "
        "difference: " + ", ".join(f"{r['name']}/{r['lib_key']} {r['max_abs_diff']:.1g}" for r in results) + ").",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
