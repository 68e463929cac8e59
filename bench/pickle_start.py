#!/usr/bin/env python3
"""Seconds to ready of `MODEL_FILE=model.pkl ferroserve serve` (issue 12), in one command:

    python3 bench/pickle_start.py [--runs 3] [--binary target/release/ferroserve] [--docs]

Trains the Flask tutorial's kind of pickle (a scikit-learn DecisionTreeClassifier on iris,
answering species names) into a temporary folder, then starts the server on it `--runs` times
with a fresh data folder (the first start: the pickle is converted and verified by Python) and
`--runs` times on the data folder the first start filled (the cached restart: no Python runs),
and measures from process spawn to `/v2/health/ready` answering 200 (polled back to back on one
kept-alive connection), checking each time that the tutorial's request answers. Prints a markdown
table (median, min-max); with --docs writes it into docs/benchmarks.md between the
`pickle-start:begin` and `pickle-start:end` markers.

Only loopback; only the servers this script started are stopped (by PID); every wait is bounded.
"""
import argparse
import http.client
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUERY = "/prediction?slength=1.5&swidth=0.7&plength=1.3&pwidth=0.3"
ROUTE = """[[routes]]
method = "GET"
path = "/prediction"
features = ["slength", "swidth", "plength", "pwidth"]
response_key = "prediction"
unwrap_single = true
"""


def train(folder):
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier
    d = load_iris()
    names = ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]
    m = DecisionTreeClassifier(random_state=0).fit(d.data, [names[t] for t in d.target])
    path = os.path.join(folder, "model.pkl")
    with open(path, "wb") as f:
        pickle.dump(m, f)
    with open(os.path.join(folder, "model.toml"), "w") as f:
        f.write(ROUTE)
    return path, m.predict([[1.5, 0.7, 1.3, 0.3]])[0]


def start(binary, pickle_path, data_dir, log_path, timeout=120.0):
    """Spawns the server; seconds from spawn to ready, and the port."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FERROSERVE_") or k == "FERROSERVE_PYTHON"}
    env.pop("MODEL_FILE", None)
    env["MODEL_FILE"] = pickle_path
    env["FERROSERVE_DATA_DIR"] = data_dir
    log = open(log_path, "w")
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "serve", "--host", "127.0.0.1", "--http-port", "0",
                          "--grpc-port", "0"], stdout=subprocess.PIPE, stderr=log, env=env,
                         text=True)
    port = None
    while port is None:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"the server ended before listening; see {log_path}")
        m = re.match(r"ferroserve: HTTP listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    while True:
        conn.request("GET", "/v2/health/ready")
        r = conn.getresponse()
        r.read()
        if r.status == 200:
            ready = time.monotonic() - t0
            break
        if time.monotonic() - t0 > timeout:
            p.terminate()
            raise SystemExit(f"not ready after {timeout} s; see {log_path}")
    conn.request("GET", QUERY)
    r = conn.getresponse()
    answer = json.loads(r.read())
    conn.close()
    return p, ready, answer


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


def summary(xs):
    return f"{statistics.median(xs):.3f} s ({min(xs):.3f}-{max(xs):.3f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default=None)
    ap.add_argument("--docs", action="store_true")
    args = ap.parse_args()
    binary = args.binary or next(
        (b for b in (os.path.join(ROOT, "target/release/ferroserve"),
                     os.path.join(ROOT, "target/debug/ferroserve")) if os.path.exists(b)), None)
    if not binary:
        raise SystemExit("no ferroserve binary: cargo build --release -p ferroserve")
    tmp = tempfile.mkdtemp(prefix="ferroserve-pickle-start-")
    try:
        # A copy: a rebuild of target/ during the run changes nothing.
        exe = os.path.join(tmp, "ferroserve")
        shutil.copy2(binary, exe)
        pkl, want = train(tmp)
        first, cached = [], []
        for i in range(args.runs):
            data = os.path.join(tmp, f"data-{i}")
            p, t, answer = start(exe, pkl, data, os.path.join(tmp, f"first-{i}.log"))
            stop(p)
            assert answer == {"prediction": want}, answer
            first.append(t)
            p, t, answer = start(exe, pkl, data, os.path.join(tmp, f"cached-{i}.log"))
            stop(p)
            assert answer == {"prediction": want}, answer
            cached.append(t)
        kind = "release" if "release" in binary else "debug"
        table = (
            f"| start of `MODEL_FILE=model.pkl ferroserve serve` ({kind} build, {args.runs} runs) "
            "| spawn to `/v2/health/ready` 200, median (min-max) |\n"
            "|---|---|\n"
            f"| first start: converted by Python (skl2onnx) and verified on 64 rows | "
            f"{summary(first)} |\n"
            f"| restart with the same file: from the cache, no Python | {summary(cached)} |\n"
        )
        print(table)
        if args.docs:
            path = os.path.join(ROOT, "docs/benchmarks.md")
            text = open(path).read()
            begin, end = "<!-- pickle-start:begin -->\n", "<!-- pickle-start:end -->"
            if begin not in text:
                raise SystemExit("docs/benchmarks.md has no pickle-start markers")
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            open(path, "w").write(head + begin + table + end + tail)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
