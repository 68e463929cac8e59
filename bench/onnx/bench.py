#!/usr/bin/env python3
"""ferroserve's ONNX Runtime backend against onnxruntime's own Python API, same models, same run.

For each model: single-row latency (median and p99 of many `run` calls on one row) and the time of
one 10,000-row batch (median of several), with one intra-op thread on both sides (ferroserve's
default `intra_op_threads = 1`; `SessionOptions.intra_op_num_threads = 1` in Python). ferroserve
is timed in-process through `OnnxModel::run` (crates/onnx/examples/time_onnx.rs), which includes
turning the request tensor into an ONNX Runtime value and the outputs back; Python is timed on
`InferenceSession.run` with a ready numpy array. Same ONNX Runtime release on both sides:
ferroserve loads the wheel's libonnxruntime.so, whose Python binding has the same build inside.
The two sides take turns, `--rounds` times each, and each figure is the median over the rounds
(the machine is shared; turns keep a burst of other work from landing on one side only). Prints
a Markdown table with ratios (Python time / ferroserve time: above 1 means ferroserve is faster).

    pip install onnxruntime numpy
    python3 bench/onnx/bench.py [--calls 20000] [--repeats 20] [--rounds 3]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
MODELS = [
    ("wine_pipeline", ROOT / "examples/models/wine_pipeline/1/model.onnx", 13,
     "StandardScaler + LogisticRegression"),
    ("iris_mlp", ROOT / "examples/models/iris_mlp/1/model.onnx", 4,
     "StandardScaler + MLPClassifier(16, 8)"),
]


def rows(n, nf):
    # The same values time_onnx.rs feeds.
    i = np.arange(n * nf, dtype=np.int64)
    return ((i * 7919 % 1000).astype(np.float32) / 100.0 - 5.0).reshape(n, nf)


def time_python(path, nf, calls, repeats):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    one = {"input": rows(1, nf)}
    for _ in range(1000):
        sess.run(None, one)
    lat = []
    for _ in range(calls):
        t = time.perf_counter()
        sess.run(None, one)
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    big = {"input": rows(10_000, nf)}
    sess.run(None, big)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, big)
        times.append(time.perf_counter() - t)
    b = statistics.median(times)
    return {"single_median_us": lat[len(lat) // 2], "single_p99_us": lat[int((len(lat) - 1) * 0.99)],
            "batch10k_ms": b * 1e3, "rows_per_s": 10_000 / b}


def time_ferroserve(path, nf, calls, repeats):
    out = subprocess.run(
        ["cargo", "run", "-q", "--release", "-p", "ferroserve-onnx", "--example", "time_onnx", "--",
         str(path), str(nf), str(calls), str(repeats)],
        cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "ferroserve-onnx", "--example",
                    "time_onnx"], cwd=ROOT, check=True)
    print(f"onnxruntime {ort.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, intra-op threads 1, {args.calls} single-row calls, "
          f"median of {args.repeats} 10,000-row batches; median of {args.rounds} alternating rounds\n")
    print("| model | graph | single row: ferroserve median / p99 | onnxruntime (Python) median / p99 "
          "| ratio (median) | 10,000 rows: ferroserve | onnxruntime (Python) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, path, nf, what in MODELS:
        fs, ps = [], []
        for _ in range(args.rounds):
            fs.append(time_ferroserve(path, nf, args.calls, args.repeats))
            ps.append(time_python(path, nf, args.calls, args.repeats))
        f = {k: statistics.median(r[k] for r in fs) for k in fs[0]}
        p = {k: statistics.median(r[k] for r in ps) for k in ps[0]}
        print(f"| {name} | {what} | {f['single_median_us']:.1f} / {f['single_p99_us']:.1f} µs "
              f"| {p['single_median_us']:.1f} / {p['single_p99_us']:.1f} µs "
              f"| {p['single_median_us'] / f['single_median_us']:.2f} "
              f"| {f['batch10k_ms']:.2f} ms ({f['rows_per_s'] / 1e6:.2f} M rows/s) "
              f"| {p['batch10k_ms']:.2f} ms ({p['rows_per_s'] / 1e6:.2f} M rows/s) "
              f"| {p['batch10k_ms'] / f['batch10k_ms']:.2f} |")


if __name__ == "__main__":
    main()
