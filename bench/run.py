#!/usr/bin/env python3
"""The server benchmark against the usual stacks, in one command:

    python3 bench/run.py [--duration 10] [--repeat 3] [--out bench/out]

1. Builds release: ferroserve and the ceiling (bench/ceiling, a bare axum server that parses the
   same v2 JSON into typed structs and answers a constant), and sets up the Python baselines'
   environment (target/bench-venv, from bench/requirements.txt) on first use.
2. Trains the models once (bench/baselines/train.py, cached in target/bench-models): the bundled
   iris forest pickled for the Python stacks, and two compute-dominated models (a 500-tree forest
   on the native tree engine, an MLP on ONNX Runtime).
3. Starts every server of a round at once on 127.0.0.1 (ports from the OS) and loads them in
   turn with wrk (Debian: apt-get install wrk), one run at a time, every run bounded by -d;
   rounds are repeated and each figure is the median, so a burst of noise from other work on
   the machine hits every server alike:
   - single-row iris at concurrency 1, 16, 64 (req/s, p50, p99): the ceiling; ferroserve as
     bundled, with batching off and with batching on (max_queue_delay 2ms); FastAPI + uvicorn +
     scikit-learn exactly as in the FastAPI tutorial; MLServer with adaptive batching;
   - 1,000-row iris requests at concurrency 4, in rows/s, on the same servers;
   - the compute-dominated models on ferroserve: concurrency 64 and 1, batching off and on.
   Besides wrk's figures, each run records the server's CPU time per request and, for ferroserve,
   rows per batch and compute time per row from its /metrics.
4. Prints a markdown table with absolute numbers, ratios and the issue's targets met or missed,
   and writes it to <out>/run.md (and the raw numbers to <out>/run.json, logs to <out>/logs/).

Only loopback traffic; only the processes this script started are stopped (by PID and their
own process group).
"""
import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BENCH = os.path.join(ROOT, "bench")
TARGET = os.path.join(ROOT, "target")
FERROSERVE = os.path.join(TARGET, "release", "ferroserve")
CEILING = os.path.join(TARGET, "release", "ferroserve-bench-ceiling")
VENV = os.path.join(TARGET, "bench-venv")
VPY = os.path.join(VENV, "bin", "python")
MODELS = os.path.join(TARGET, "bench-models")
LUA = os.path.join(BENCH, "server", "post.lua")
IRIS_DIR = os.path.join(ROOT, "examples", "models", "iris")
IRIS_BODY = os.path.join(ROOT, "examples", "requests", "iris_v2.json")

CONCURRENCIES = (1, 16, 64)
BATCH_ROWS = 1000
BATCH_CONC = 4
# The batching configuration the "batching on" runs use (model.toml).
QUEUE_DELAY_MS = 2
BATCHING_ON = f"""
[batching]
enabled = true
max_batch_size = 64
max_queue_delay = "{QUEUE_DELAY_MS}ms"
preferred_batch_sizes = [32, 64]
max_queue_size = 1024
"""
BATCHING_OFF = """
[batching]
enabled = false
"""
# MLServer's adaptive batching, set like ferroserve's "batching on".
MLSERVER_MAX_BATCH_SIZE = 64
MLSERVER_MAX_BATCH_TIME = QUEUE_DELAY_MS / 1000
# The compute-dominated models (trained by bench/baselines/train.py; one 24-feature row each).
COMPUTE_MODELS = [
    ("f", "forest500", "scikit-learn RandomForestClassifier, 500 trees, max_depth 10, 24 "
                       "features, exported by skl2onnx (native tree engine)"),
    ("m", "mlp", "scikit-learn MLPClassifier, hidden layers (1024, 1024), 24 features, "
                 "exported by skl2onnx (ONNX Runtime)"),
]
# Compute threads for the compute-dominated models, batching on and off alike (one per core).
COMPUTE_INSTANCES = 2
# ONNX Runtime for the mlp model: the one bench/requirements.txt installs (set in main).
ORT_LIB = None

LOGS = None  # set in main


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------
# Set-up


def sh(cmd, **kw):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def file_hash(*paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def setup_venv():
    """target/bench-venv with bench/requirements.txt, reinstalled when that file changes."""
    req = os.path.join(BENCH, "requirements.txt")
    stamp = os.path.join(VENV, ".requirements-" + file_hash(req))
    if os.path.exists(stamp):
        return
    if not os.path.exists(VPY):
        sh([sys.executable, "-m", "venv", VENV])
    sh([VPY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", req])
    open(stamp, "w").close()


def train_models():
    """Trains once per version of bench/baselines/train.py; returns the folder."""
    script = os.path.join(BENCH, "baselines", "train.py")
    out = os.path.join(MODELS, file_hash(script, os.path.join(BENCH, "requirements.txt")))
    if not os.path.exists(os.path.join(out, "done")):
        shutil.rmtree(out, ignore_errors=True)
        sh([VPY, script, out])
        open(os.path.join(out, "done"), "w").close()
    return out


def write_bodies(work, models):
    """Request bodies: single-row and 1,000-row iris in v2 JSON and in the tutorial's shape."""
    with open(IRIS_BODY) as f:
        row = json.load(f)["inputs"][0]["data"]
    expected = json.load(open(os.path.join(ROOT, "examples", "models", "expected.json")))
    # The 1,000 rows cycle through rows spread over the dataset (all three classes).
    sample = expected["iris"]["rows"] + [row] + [[6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]]
    rows = [sample[i % len(sample)] for i in range(BATCH_ROWS)]
    bodies = {
        "v2_1": IRIS_BODY,
        "v2_1000": os.path.join(work, "iris_v2_1000.json"),
        "tutorial_1": os.path.join(work, "iris_batches_1.json"),
        "tutorial_1000": os.path.join(work, "iris_batches_1000.json"),
        "compute_1": os.path.join(models, "compute_v2.json"),
    }
    with open(bodies["v2_1000"], "w") as f:
        json.dump({"inputs": [{"name": "input", "shape": [BATCH_ROWS, 4], "datatype": "FP32",
                               "data": [v for r in rows for v in r]}]}, f)
    with open(bodies["tutorial_1"], "w") as f:
        json.dump({"batches": [row]}, f)
    with open(bodies["tutorial_1000"], "w") as f:
        json.dump({"batches": rows}, f)
    return bodies


def model_repo(work, name, src_dir, extra_toml):
    """A one-model repository: the model's version folders, its model.toml plus extra_toml."""
    repo = os.path.join(work, name)
    model = os.path.basename(src_dir.rstrip("/"))
    dst = os.path.join(repo, model)
    os.makedirs(dst)
    for entry in os.listdir(src_dir):
        s = os.path.join(src_dir, entry)
        if entry.isdigit() and os.path.isdir(s):
            # Copied, not linked: the server does not follow links out of its repository.
            shutil.copytree(s, os.path.join(dst, entry))
    toml = ""
    if os.path.exists(os.path.join(src_dir, "model.toml")):
        toml = open(os.path.join(src_dir, "model.toml")).read()
    with open(os.path.join(dst, "model.toml"), "w") as f:
        f.write(toml + extra_toml)
    return repo


# ------------------------------------------------------------------------------------------
# Servers


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_ok(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def tree_pids(pid):
    """pid and all its descendants (from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    """User + system CPU time of pid and its descendants (threads included)."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def ferroserve_counters(base):
    """Totals from ferroserve's /metrics (one model per server here), or None."""
    names = {
        "ferroserve_requests_total": "requests",
        "ferroserve_inference_rows_total": "rows",
        "ferroserve_batches_total": "batches",
        "ferroserve_compute_duration_seconds_sum": "compute_s",
        "ferroserve_request_duration_seconds_sum": "request_s",
        "ferroserve_queue_duration_seconds_count": "queued",
    }
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    out = dict.fromkeys(names.values(), 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            out[names[name]] += float(line.rsplit(" ", 1)[1])
    return out


def rss_mb(pid):
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024.0


class Server:
    """One server process this script started (in its own process group)."""

    def __init__(self, key, label, cmd, *, cwd=ROOT, env=None, port=None, addr_re=None,
                 ready_path, infer_path, bodies, timeout=60, counters=None):
        self.key, self.label, self.infer_path, self.bodies = key, label, infer_path, bodies
        self.error = None
        self.counters = counters  # base url -> dict of totals, for per-run deltas
        logf = open(os.path.join(LOGS, key + ".log"), "w")
        t0 = time.perf_counter()
        self.p = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True,
                                  stdout=subprocess.PIPE if addr_re else logf,
                                  stderr=logf, text=True)
        deadline = t0 + timeout
        if addr_re:
            line = self._readline(deadline)
            m = re.search(addr_re, line or "")
            if not m:
                self.error = f"no listening line: {line!r}"
                return
            self.base = "http://" + m.group(1)
            threading.Thread(target=self._drain, args=(logf,), daemon=True).start()
        else:
            self.base = f"http://127.0.0.1:{port}"
        while time.perf_counter() < deadline:
            if self.p.poll() is not None:
                self.error = f"exited with {self.p.returncode} (see {logf.name})"
                return
            if http_ok(self.base + ready_path):
                self.startup_s = time.perf_counter() - t0
                return
            time.sleep(0.05)
        self.error = f"not ready after {timeout}s (see {logf.name})"

    def _readline(self, deadline):
        out = []
        t = threading.Thread(target=lambda: out.append(self.p.stdout.readline()), daemon=True)
        t.start()
        t.join(max(0.0, deadline - time.perf_counter()))
        return out[0] if out else None

    def _drain(self, logf):
        for line in self.p.stdout:
            logf.write(line)

    @property
    def url(self):
        return self.base + self.infer_path

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


def ferroserve(key, label, repo, model, bodies):
    env = dict(os.environ)
    if ORT_LIB:
        env["ORT_DYLIB_PATH"] = ORT_LIB
    return Server(key, label, [FERROSERVE, "serve", "--repository", repo, "--host", "127.0.0.1",
                               "--http-port", "0", "--grpc-port", "0", "--request-log", "off",
                               "--log", "warn"],
                  env=env, addr_re=r"HTTP listening on (\S+)", ready_path=f"/v2/models/{model}/ready",
                  infer_path=f"/v2/models/{model}/infer", bodies=bodies, timeout=60,
                  counters=ferroserve_counters)


def ceiling(bodies):
    return Server("ceiling", "ceiling (bare axum, parse + constant answer)",
                  [CEILING, "--host", "127.0.0.1", "--port", "0"],
                  addr_re=r"HTTP listening on (\S+)", ready_path="/v2/health/ready",
                  infer_path="/v2/models/iris/infer", bodies=bodies)


def fastapi(models, bodies):
    port = free_port()
    env = dict(os.environ, IRIS_PICKLE=os.path.join(models, "iris.pkl"))
    return Server("fastapi", "FastAPI + uvicorn + scikit-learn (tutorial)",
                  [VPY, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1", "--no-access-log"],
                  cwd=os.path.join(BENCH, "baselines", "fastapi_app"), env=env, port=port,
                  ready_path="/", infer_path="/predict", bodies=bodies)


def mlserver(work, models, bodies):
    root = os.path.join(work, "mlserver")
    mdir = os.path.join(root, "iris")
    os.makedirs(mdir)
    shutil.copy(os.path.join(models, "iris.pkl"), os.path.join(mdir, "model.pkl"))
    port = free_port()
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_endpoint": None,  # no separate metrics server
        # Inference in the server process: here as fast as its default of one worker process
        # (within noise), with less memory and one process fewer competing for the 2 cores.
        "parallel_workers": 0,
    }
    model_settings = {
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": MLSERVER_MAX_BATCH_SIZE,
        "max_batch_time": MLSERVER_MAX_BATCH_TIME,
        "parameters": {"uri": "./model.pkl", "version": "1"},
    }
    json.dump(settings, open(os.path.join(root, "settings.json"), "w"), indent=1)
    json.dump(model_settings, open(os.path.join(mdir, "model-settings.json"), "w"), indent=1)
    return Server("mlserver", f"MLServer + scikit-learn, adaptive batching "
                              f"({MLSERVER_MAX_BATCH_SIZE} / {QUEUE_DELAY_MS}ms)",
                  [os.path.join(VENV, "bin", "mlserver"), "start", root], cwd=root, port=port,
                  ready_path="/v2/models/iris/ready", infer_path="/v2/models/iris/infer",
                  bodies=bodies, timeout=120)


# ------------------------------------------------------------------------------------------
# Load


def wrk(url, body, conns, duration):
    env = dict(os.environ, BODY=body)
    r = subprocess.run(["wrk", "-t", "1", "-c", str(conns), "-d", f"{duration}s",
                        "--timeout", "5s", "-s", LUA, url],
                       env=env, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", r.stdout)
    if not m:
        return {"rps": float("nan"), "p50_ms": float("nan"), "p99_ms": float("nan"),
                "errors": -1, "raw": r.stdout + r.stderr}
    reqs, dur_us, p50, p99, bad_status, sock_err = map(int, m.groups())
    good = max(0, reqs - bad_status)
    return {"rps": good / (dur_us / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "errors": bad_status + sock_err, "requests": reqs}


def measured_wrk(srv, body, conns, duration):
    """wrk plus what the server spent: its CPU time per request (all its processes and threads)
    and, for ferroserve, rows per batch and compute time per row from its /metrics."""
    c0 = srv.counters(srv.base) if srv.counters else None
    t0 = cpu_seconds(srv.p.pid)
    r = wrk(srv.url, body, conns, duration)
    t1 = cpu_seconds(srv.p.pid)
    if r.get("requests"):
        r["cpu_us_per_req"] = (t1 - t0) * 1e6 / r["requests"]
    c1 = srv.counters(srv.base) if srv.counters else None
    if c0 and c1:
        d = {k: c1[k] - c0[k] for k in c1}
        if d["batches"] > 0 and d["rows"] > 0 and d["requests"] > 0:
            r["rows_per_batch"] = d["rows"] / d["batches"]
            r["compute_us_per_row"] = d["compute_s"] * 1e6 / d["rows"]
            r["server_us_per_req"] = d["request_s"] * 1e6 / d["requests"]
            r["queued_share"] = d["queued"] / d["requests"]
    return r


MEDIAN_KEYS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "rows_per_batch",
               "compute_us_per_row", "server_us_per_req", "queued_share")


def median_run(runs):
    if not runs:
        return None
    out = {"errors": sum(r["errors"] for r in runs), "n": len(runs)}
    for k in MEDIAN_KEYS:
        vals = [r[k] for r in runs if k in r and r[k] == r[k]]
        if vals:
            out[k] = statistics.median(vals)
    return out


def check_answer(srv, body):
    """One request; the server must answer 200 (a wrong setup must not be benchmarked)."""
    req = urllib.request.Request(srv.url, data=open(body, "rb").read(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return None
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}: {e.read()[:300]!r}"
    except OSError as e:
        return str(e)


def load_round(servers, plan, duration, repeat, results):
    """plan: list of (measure, concurrency, body key). Every server runs every step, interleaved,
    `repeat` times (Python servers: `repeat` of their own, see main)."""
    for rep in range(max(s_rep for _, s_rep in servers)):
        for measure, conc, body_key in plan:
            for srv, s_rep in servers:
                if rep >= s_rep or srv.error or body_key not in srv.bodies:
                    continue
                r = measured_wrk(srv, srv.bodies[body_key], conc, duration)
                results.setdefault(srv.key, {}).setdefault(measure, []).append(r)
                log(f"  {srv.key:18} {measure:8} #{rep + 1}: {r['rps']:9.1f} req/s  "
                    f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                    f"cpu {r.get('cpu_us_per_req', float('nan')):7.1f} us/req"
                    + (f"  {r['rows_per_batch']:.2f} rows/batch" if "rows_per_batch" in r else "")
                    + (f"  ERRORS {r['errors']}" if r["errors"] else ""))
                if r["errors"] < 0:
                    log("    wrk output: " + r["raw"][-400:])
                time.sleep(0.5)


# ------------------------------------------------------------------------------------------
# Report


def fmt_rps(x):
    if x is None or x != x:
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ms(x):
    if x is None or x != x:
        return "–"
    if x < 1:
        return f"{x:.3f}"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_num(x, digits=0):
    if x is None or x != x:
        return "–"
    return f"{x:,.{digits}f}"


def fmt_pct(x):
    if x is None or x != x:
        return "–"
    return f"{100 * x:.0f}%"


def ratio(a, b):
    if a is None or b is None or not b or a != a or b != b:
        return None
    return a / b


def fmt_ratio(x):
    if x is None:
        return "–"
    return f"{x:.2f}×" if x < 10 else f"{x:.0f}×"


def report(meta, labels, med, rss, notes):
    L = []
    L.append(f"Run {meta['date']} on {meta['cpus']} cores ({meta['cpu']}), "
             f"ferroserve {meta['commit']}; wrk -t1, {meta['duration']} s per run, "
             f"median of {meta['repeat']} interleaved runs (Python stacks: {meta['py_repeat']}); "
             f"load average {meta['load_before']} before, {meta['load_after']} after.")
    L.append("")
    L.append("### Single-row iris (100-tree forest), one request = one row")
    L.append("")
    L.append("| server | " + " | ".join(f"c={c} req/s | p50 ms | p99 ms" for c in CONCURRENCIES)
             + " |")
    L.append("|---|" + "---:|" * (3 * len(CONCURRENCIES)))
    for key, label in labels.items():
        row = [label]
        for c in CONCURRENCIES:
            r = med.get(key, {}).get(f"c{c}")
            row += [fmt_rps(r and r["rps"]), fmt_ms(r and r["p50_ms"]), fmt_ms(r and r["p99_ms"])]
            if r and r["errors"]:
                row[-3] += f" ({r['errors']} errors)"
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append(f"### {BATCH_ROWS:,}-row iris requests, concurrency {BATCH_CONC}")
    L.append("")
    L.append("| server | rows/s | p50 ms per request | p99 ms | RSS after load |")
    L.append("|---|---:|---:|---:|---:|")
    for key, label in labels.items():
        r = med.get(key, {}).get("batch")
        row = [label, fmt_rps(r and r["rps"] * BATCH_ROWS), fmt_ms(r and r["p50_ms"]),
               fmt_ms(r and r["p99_ms"]),
               f"{rss[key]:.0f} MB" if key in rss else "–"]
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    def rps(key, m):
        r = med.get(key, {}).get(m)
        return r and r["rps"]

    L.append("### Ratios (req/s or rows/s)")
    L.append("")
    L.append("| ratio | " + " | ".join(f"c={c}" for c in CONCURRENCIES)
             + f" | {BATCH_ROWS:,} rows |")
    L.append("|---|" + "---:|" * (len(CONCURRENCIES) + 1))
    pairs = [("fs", "ceiling", "ferroserve ÷ ceiling"),
             ("fs_on", "ceiling", "ferroserve batching on ÷ ceiling"),
             ("fs", "fastapi", "ferroserve ÷ FastAPI + scikit-learn"),
             ("fs", "mlserver", "ferroserve ÷ MLServer adaptive batching"),
             ("fs_on", "fs_off", "ferroserve batching on ÷ off"),
             ("fs", "fs_off", "ferroserve as bundled ÷ batching off")]
    for a, b, name in pairs:
        if a not in labels or b not in labels:
            continue
        cells = [fmt_ratio(ratio(rps(a, f"c{c}"), rps(b, f"c{c}"))) for c in CONCURRENCIES]
        cells.append(fmt_ratio(ratio(rps(a, "batch"), rps(b, "batch"))))
        L.append(f"| {name} | " + " | ".join(cells) + " |")

    def cpu(key, m):
        r = med.get(key, {}).get(m)
        return r and r.get("cpu_us_per_req")

    # On a shared machine the servers get what CPU is left; CPU per request is what each
    # would do alone: ceiling µs ÷ ferroserve µs is ferroserve's share of the ceiling's speed.
    for a_, name in (("fs", "ferroserve ÷ ceiling, by server CPU per request"),
                     ("fs_on", "ferroserve batching on ÷ ceiling, by server CPU per request")):
        if a_ in labels and "ceiling" in labels:
            cells = [fmt_ratio(ratio(cpu("ceiling", m), cpu(a_, m)))
                     for m in [f"c{c}" for c in CONCURRENCIES] + ["batch"]]
            L.append(f"| {name} | " + " | ".join(cells) + " |")
    L.append("")

    # Where the time goes: CPU per request and ferroserve's own accounting.
    L.append("### Where the time goes (iris)")
    L.append("")
    L.append("Server CPU per request: user + system time of the server's processes during the run "
             "÷ requests answered (wrk's own CPU excluded). ferroserve's figures come from its "
             "/metrics: rows per batch, compute time per row (wall time of the batch ÷ its rows), "
             "and the handler's wall time per request, from reading the body to the encoded "
             "answer (ferroserve_request_duration_seconds).")
    L.append("")
    L.append("| server | " + " | ".join(f"CPU µs/req c={c}" for c in CONCURRENCIES)
             + f" | CPU µs/req {BATCH_ROWS:,} rows | c=64 rows/batch | c=64 compute µs/row "
             "| c=64 handler µs/req |")
    L.append("|---|" + "---:|" * (len(CONCURRENCIES) + 4))
    for key, label in labels.items():
        row = [label]
        for m in [f"c{c}" for c in CONCURRENCIES] + ["batch"]:
            r = med.get(key, {}).get(m) or {}
            row.append(fmt_num(r.get("cpu_us_per_req")))
        r = med.get(key, {}).get("c64") or {}
        row += [fmt_num(r.get("rows_per_batch"), 2), fmt_num(r.get("compute_us_per_row"), 1),
                fmt_num(r.get("server_us_per_req"), 1)]
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    for prefix, model, desc in COMPUTE_MODELS:
        if not any(prefix + s_ in med for s_ in ("_off", "_on", "_def")):
            continue
        L.append(f"### Compute-dominated model `{model}`: {desc}, "
                 f"instances = {COMPUTE_INSTANCES}")
        L.append("")
        L.append("| ferroserve | c=64 req/s | p50 ms | p99 ms | rows/batch | queued "
                 "| compute µs/row | CPU µs/req | c=1 req/s | p50 ms | p99 ms | c=1 queued |")
        L.append("|---|" + "---:|" * 11)
        for suffix, label in (("_off", "batching off"),
                              ("_on", f"batching on, max_queue_delay {QUEUE_DELAY_MS}ms"),
                              ("_def", "batching as default (max_queue_delay 0ms)")):
            runs = med.get(prefix + suffix)
            if not runs:
                continue
            r64, r1 = runs.get("c64") or {}, runs.get("c1") or {}
            row = [label, fmt_rps(r64.get("rps")), fmt_ms(r64.get("p50_ms")),
                   fmt_ms(r64.get("p99_ms")), fmt_num(r64.get("rows_per_batch"), 2),
                   fmt_pct(r64.get("queued_share")),
                   fmt_num(r64.get("compute_us_per_row"), 1),
                   fmt_num(r64.get("cpu_us_per_req")),
                   fmt_rps(r1.get("rps")), fmt_ms(r1.get("p50_ms")), fmt_ms(r1.get("p99_ms")),
                   fmt_pct(r1.get("queued_share"))]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        off = med.get(prefix + "_off", {})
        for suffix, name in (("_on", f"batching on ({QUEUE_DELAY_MS}ms) ÷ off"),
                             ("_def", "batching as default (0ms) ÷ off")):
            on = med.get(prefix + suffix)
            if on and off:
                L.append(f"{name}: " + ", ".join(
                    f"{fmt_ratio(ratio(on.get(m, {}).get('rps'), off.get(m, {}).get('rps')))}"
                    f" at c={m[1:]}" for m in ("c64", "c1")) + ".")
                L.append("")

    # Targets (issue 5).
    def target(name, ok, detail):
        mark = "–" if ok is None else ("met" if ok else "**missed**")
        L.append(f"| {name} | {detail} | {mark} |")

    L.append("### Targets")
    L.append("")
    L.append("| target | measured | |")
    L.append("|---|---|---|")
    r_ceil = ratio(rps("fs", "c64"), rps("ceiling", "c64"))
    r_cpu = ratio(cpu("ceiling", "c64"), cpu("fs", "c64"))
    target("single-row iris c=64 ≥ 0.5× ceiling", None if r_ceil is None else r_ceil >= 0.5,
           f"{fmt_ratio(r_ceil)} req/s (by server CPU per request: {fmt_ratio(r_cpu)})")
    r_fa = ratio(rps("fs", "c64"), rps("fastapi", "c64"))
    target("single-row iris c=64 ≥ 100× FastAPI + scikit-learn",
           None if r_fa is None else r_fa >= 100, fmt_ratio(r_fa))
    r_ml = ratio(rps("fs", "c64"), rps("mlserver", "c64"))
    target("single-row iris c=64 ≥ 20× MLServer adaptive batching",
           None if r_ml is None else r_ml >= 20, fmt_ratio(r_ml))
    p99 = med.get("fs", {}).get("c64", {}).get("p99_ms")
    target("single-row iris c=64 p99 < 10 ms", None if p99 is None else p99 < 10,
           f"{fmt_ms(p99)} ms")
    # Compute-dominated: batching ≥ 3× no batching at c=64, and at c=1 batching adds no more
    # than max_queue_delay, within 20%: p50 ≤ 1.2 × (max_queue_delay + p50 without batching).
    for prefix, model, _ in COMPUTE_MODELS:
        f_off = med.get(prefix + "_off")
        if not f_off:
            continue
        p50_off = f_off.get("c1", {}).get("p50_ms")
        for suffix, delay, name in (("_on", QUEUE_DELAY_MS, f"{QUEUE_DELAY_MS}ms"),
                                    ("_def", 0, "0ms, default")):
            f = med.get(prefix + suffix, {})
            r_b = ratio(f.get("c64", {}).get("rps"), f_off.get("c64", {}).get("rps"))
            target(f"`{model}` c=64: batching ({name}) ≥ 3× no batching",
                   None if r_b is None else r_b >= 3, fmt_ratio(r_b))
            p50 = f.get("c1", {}).get("p50_ms")
            bound = None if p50_off is None else 1.2 * (delay + p50_off)
            target(f"`{model}` c=1: p50 with batching ({name}) ≤ 1.2 × (max_queue_delay + p50 "
                   f"without batching)", None if p50 is None or bound is None else p50 <= bound,
                   f"{fmt_ms(p50)} ms vs {fmt_ms(bound)} ms")
    L.append("")
    if notes:
        L.append("Notes from this run:")
        L.append("")
        L.extend(f"- {n}" for n in notes)
        L.append("")
    return "\n".join(L)


# ------------------------------------------------------------------------------------------


def main():
    global LOGS, ORT_LIB, FERROSERVE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--py-repeat", type=int, default=1,
                    help="runs per figure for the Python stacks (their ratios are large)")
    ap.add_argument("--out", default=os.path.join(BENCH, "out"))
    ap.add_argument("--no-build", action="store_true", help="use the binaries as built")
    ap.add_argument("--no-python", action="store_true", help="skip FastAPI and MLServer")
    ap.add_argument("--no-compute", action="store_true",
                    help="skip the compute-dominated models")
    ap.add_argument("--binary", help="measure this ferroserve binary instead of target/release's "
                    "(another commit's build, for a head-to-head run)")
    a = ap.parse_args()
    if a.binary:
        FERROSERVE = os.path.abspath(a.binary)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    os.makedirs(a.out, exist_ok=True)
    LOGS = os.path.join(a.out, "logs")
    os.makedirs(LOGS, exist_ok=True)

    if not a.no_build:
        sh(["cargo", "build", "--release", "-q", "-p", "ferroserve",
            "-p", "ferroserve-bench-ceiling"], cwd=ROOT)
    setup_venv()
    libs = sorted(glob.glob(os.path.join(VENV, "lib", "python*", "site-packages", "onnxruntime",
                                         "capi", "libonnxruntime.so*")))
    ORT_LIB = libs[0] if libs else None
    models = train_models()
    work = tempfile.mkdtemp(prefix="ferroserve-bench-")
    # Run copies of the binaries: target/ is shared, and a rebuild during the run (another
    # checkout's cargo build) must not change what is measured half-way.
    for name in ("FERROSERVE", "CEILING"):
        src = globals()[name]
        if not os.path.exists(src):
            sys.exit(f"{src} is missing: build it (or drop --no-build)")
        dst = os.path.join(work, os.path.basename(src))
        shutil.copy2(src, dst)
        globals()[name] = dst
    started = []
    notes = []
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), "?"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip()
        + (" + uncommitted changes" if subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
            capture_output=True, text=True).stdout.strip() else ""),
        "load_before": open("/proc/loadavg").read().split()[0],
        "duration": a.duration,
        "repeat": a.repeat,
        "py_repeat": a.py_repeat,
    }
    try:
        bodies = write_bodies(work, models)
        v2b = {"single": bodies["v2_1"], "batch": bodies["v2_1000"]}
        tut = {"single": bodies["tutorial_1"], "batch": bodies["tutorial_1000"]}

        # ---- Round 1: single-row and 1,000-row iris on every stack.
        log("starting servers")
        labels = {}
        servers = []

        def add(srv, rep):
            started.append(srv)
            if srv.error:
                notes.append(f"{srv.label}: {srv.error}")
                log(f"  {srv.key}: {srv.error}")
                return
            body = v2b["single"] if srv.key not in ("fastapi",) else tut["single"]
            err = check_answer(srv, body)
            if err:
                srv.error = err
                notes.append(f"{srv.label}: first request failed: {err}")
                log(f"  {srv.key}: first request failed: {err}")
                return
            labels[srv.key] = srv.label
            servers.append((srv, rep))
            log(f"  {srv.key}: ready at {srv.base}")

        add(ceiling(v2b), a.repeat)
        add(ferroserve("fs", "ferroserve, iris as bundled (model.toml unchanged)",
                       model_repo(work, "repo_default", IRIS_DIR, ""), "iris", v2b), a.repeat)
        add(ferroserve("fs_off", "ferroserve, batching off",
                       model_repo(work, "repo_off", IRIS_DIR, BATCHING_OFF), "iris", v2b),
            a.repeat)
        add(ferroserve("fs_on", f"ferroserve, batching on (max_queue_delay {QUEUE_DELAY_MS}ms)",
                       model_repo(work, "repo_on", IRIS_DIR, BATCHING_ON), "iris", v2b),
            a.repeat)
        if not a.no_python:
            add(fastapi(models, tut), a.py_repeat)
            add(mlserver(work, models, v2b), a.py_repeat)

        # Warm-up, then the interleaved rounds.
        for srv, _ in servers:
            wrk(srv.url, srv.bodies["single"], 16, 2)
        plan = [(f"c{c}", c, "single") for c in CONCURRENCIES] + [("batch", BATCH_CONC, "batch")]
        results = {}
        load_round(servers, plan, a.duration, a.repeat, results)
        rss = {srv.key: rss_mb(srv.p.pid) for srv, _ in servers}
        for srv in started:
            srv.stop()
        started.clear()

        # ---- Round 2: the compute-dominated models on ferroserve.
        if not a.no_compute:
            log("compute-dominated models")
            cb = {"single": bodies["compute_1"]}
            inst = f"instances = {COMPUTE_INSTANCES}\n"
            cservers = []
            for prefix, model, _ in COMPUTE_MODELS:
                for suffix, label, extra in (("_off", "batching off", BATCHING_OFF),
                                             ("_on", "batching on", BATCHING_ON),
                                             ("_def", "batching as default", "")):
                    key = prefix + suffix
                    srv = ferroserve(key, f"{model}, {label}",
                                     model_repo(work, "repo_" + key, os.path.join(models, model),
                                                inst + extra), model, cb)
                    started.append(srv)
                    err = srv.error or check_answer(srv, cb["single"])
                    if err:
                        notes.append(f"{model}, {label}: {err}")
                        log(f"  {key}: {err}")
                        continue
                    log(f"  {key}: ready at {srv.base}")
                    cservers.append((srv, a.repeat))
            for srv, _ in cservers:
                wrk(srv.url, srv.bodies["single"], 16, 2)
            load_round(cservers, [("c64", 64, "single"), ("c1", 1, "single")], a.duration,
                       a.repeat, results)
            for srv in started:
                srv.stop()
            started.clear()
    finally:
        for srv in started:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)

    meta["load_after"] = open("/proc/loadavg").read().split()[0]
    med = {k: {m: median_run(v) for m, v in ms.items()} for k, ms in results.items()}
    table = report(meta, labels, med, rss, notes)
    print()
    print(table)
    with open(os.path.join(a.out, "run.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(a.out, "run.json"), "w") as f:
        json.dump({"meta": meta, "labels": labels, "runs": results, "median": med,
                   "rss_mb": rss, "notes": notes}, f, indent=1)
    log(f"wrote {os.path.join(a.out, 'run.md')}")


if __name__ == "__main__":
    main()
