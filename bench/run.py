#!/usr/bin/env python3
"""The server benchmark against the usual stacks, in one command:

    python3 bench/run.py [--duration 10] [--repeat 3] [--out bench/out]

1. Builds release: ferroserve and the ceiling (bench/ceiling, a bare axum server that parses the
   same v2 JSON into typed structs and answers a constant), and sets up the Python baselines'
   environment (target/bench-venv, from bench/requirements.txt) on first use.
2. Trains the models once (bench/baselines/train.py, cached in target/bench-models): the bundled
   iris forest pickled for the Python stacks, and a compute-dominated 500-tree forest.
3. Starts every server of a round at once on 127.0.0.1 (ports from the OS) and loads them in
   turn with wrk (Debian: apt-get install wrk), one run at a time, every run bounded by -d;
   rounds are repeated and each figure is the median, so a burst of noise from other work on
   the machine hits every server alike:
   - single-row iris at concurrency 1, 16, 64 (req/s, p50, p99): the ceiling; ferroserve as
     bundled, with batching off and with batching on (max_queue_delay 2ms); FastAPI + uvicorn +
     scikit-learn exactly as in the FastAPI tutorial; MLServer with adaptive batching;
   - 1,000-row iris requests at concurrency 4, in rows/s, on the same servers;
   - the compute-dominated forest on ferroserve: concurrency 64 and 1, batching off and on.
4. Prints a markdown table with absolute numbers, ratios and the issue's targets met or missed,
   and writes it to <out>/run.md (and the raw numbers to <out>/run.json, logs to <out>/logs/).

Only loopback traffic; only the processes this script started are stopped (by PID and their
own process group).
"""
import argparse
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
# Compute threads for the compute-dominated model, batching on and off alike (one per core).
FOREST_INSTANCES = 2

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
        "forest_1": os.path.join(models, "forest500_v2.json"),
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
            os.symlink(s, os.path.join(dst, entry))
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
                 ready_path, infer_path, bodies, timeout=60):
        self.key, self.label, self.infer_path, self.bodies = key, label, infer_path, bodies
        self.error = None
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
    return Server(key, label, [FERROSERVE, "serve", "--repository", repo, "--host", "127.0.0.1",
                               "--http-port", "0", "--request-log", "off", "--log", "warn"],
                  addr_re=r"listening on (\S+)", ready_path=f"/v2/models/{model}/ready",
                  infer_path=f"/v2/models/{model}/infer", bodies=bodies, timeout=60)


def ceiling(bodies):
    return Server("ceiling", "ceiling (bare axum, parse + constant answer)",
                  [CEILING, "--host", "127.0.0.1", "--port", "0"],
                  addr_re=r"listening on (\S+)", ready_path="/v2/health/ready",
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
        "parallel_workers": 1,  # MLServer's default: inference in one worker process
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
            "errors": bad_status + sock_err}


def median_run(runs):
    if not runs:
        return None
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "n": len(runs),
    }


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
                r = wrk(srv.url, srv.bodies[body_key], conc, duration)
                results.setdefault(srv.key, {}).setdefault(measure, []).append(r)
                log(f"  {srv.key:18} {measure:8} #{rep + 1}: {r['rps']:9.1f} req/s  "
                    f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms"
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
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


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
             f"median of {meta['repeat']} interleaved runs (Python stacks: {meta['py_repeat']}).")
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
    L.append("")

    if "f_off" in med or "f_on" in med:
        L.append(f"### Compute-dominated model: {meta['forest']}, "
                 f"instances = {FOREST_INSTANCES}")
        L.append("")
        L.append("| ferroserve | c=64 req/s | p50 ms | p99 ms | c=1 req/s | p50 ms | p99 ms |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for key, label in (("f_off", "batching off"),
                           ("f_on", f"batching on, max_queue_delay {QUEUE_DELAY_MS}ms"),
                           ("f_def", "batching as default (max_queue_delay 0ms)")):
            if key not in med:
                continue
            row = [label]
            for m in ("c64", "c1"):
                r = med[key].get(m)
                row += [fmt_rps(r and r["rps"]), fmt_ms(r and r["p50_ms"]),
                        fmt_ms(r and r["p99_ms"])]
            L.append("| " + " | ".join(row) + " |")
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
    target("single-row iris c=64 ≥ 0.5× ceiling", r_ceil is not None and r_ceil >= 0.5,
           fmt_ratio(r_ceil))
    r_fa = ratio(rps("fs", "c64"), rps("fastapi", "c64"))
    target("single-row iris c=64 ≥ 100× FastAPI + scikit-learn",
           None if r_fa is None else r_fa >= 100, fmt_ratio(r_fa))
    r_ml = ratio(rps("fs", "c64"), rps("mlserver", "c64"))
    target("single-row iris c=64 ≥ 20× MLServer adaptive batching",
           None if r_ml is None else r_ml >= 20, fmt_ratio(r_ml))
    p99 = med.get("fs", {}).get("c64", {}).get("p99_ms")
    target("single-row iris c=64 p99 < 10 ms", None if p99 is None else p99 < 10,
           f"{fmt_ms(p99)} ms")
    f_on, f_off = med.get("f_on", {}), med.get("f_off", {})
    r_b = ratio(f_on.get("c64", {}).get("rps"), f_off.get("c64", {}).get("rps"))
    target("compute-dominated c=64: batching ≥ 3× no batching",
           None if r_b is None else r_b >= 3, fmt_ratio(r_b))
    p50 = f_on.get("c1", {}).get("p50_ms")
    bound = QUEUE_DELAY_MS * 1.2
    target(f"compute-dominated c=1 p50 with batching ≤ max_queue_delay + 20% "
           f"({bound:.1f} ms)", None if p50 is None else p50 <= bound, f"{fmt_ms(p50)} ms")
    L.append("")
    if notes:
        L.append("Notes from this run:")
        L.append("")
        L.extend(f"- {n}" for n in notes)
        L.append("")
    return "\n".join(L)


# ------------------------------------------------------------------------------------------


def main():
    global LOGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--py-repeat", type=int, default=1,
                    help="runs per figure for the Python stacks (their ratios are large)")
    ap.add_argument("--out", default=os.path.join(BENCH, "out"))
    ap.add_argument("--no-build", action="store_true", help="use the binaries as built")
    ap.add_argument("--no-python", action="store_true", help="skip FastAPI and MLServer")
    ap.add_argument("--no-forest", action="store_true", help="skip the compute-dominated model")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    os.makedirs(a.out, exist_ok=True)
    LOGS = os.path.join(a.out, "logs")
    os.makedirs(LOGS, exist_ok=True)

    if not a.no_build:
        sh(["cargo", "build", "--release", "-q", "-p", "ferroserve",
            "-p", "ferroserve-bench-ceiling"], cwd=ROOT)
    setup_venv()
    models = train_models()
    work = tempfile.mkdtemp(prefix="ferroserve-bench-")
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
        "duration": a.duration,
        "repeat": a.repeat,
        "py_repeat": a.py_repeat,
        "forest": "scikit-learn RandomForestClassifier, 500 trees, max_depth 10, 24 features, "
                  "exported by skl2onnx",
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

        # ---- Round 2: the compute-dominated model on ferroserve.
        if not a.no_forest:
            log("compute-dominated model")
            forest = os.path.join(models, "forest500")
            fb = {"single": bodies["forest_1"]}
            inst = f"instances = {FOREST_INSTANCES}\n"
            fservers = []
            for key, label, extra in (("f_off", "forest500, batching off", BATCHING_OFF),
                                      ("f_on", "forest500, batching on", BATCHING_ON),
                                      ("f_def", "forest500, batching as default", "")):
                srv = ferroserve(key, label, model_repo(work, "repo_" + key, forest, inst + extra),
                                 "forest500", fb)
                started.append(srv)
                err = srv.error or check_answer(srv, fb["single"])
                if err:
                    notes.append(f"{label}: {err}")
                    log(f"  {key}: {err}")
                    continue
                fservers.append((srv, a.repeat))
            for srv, _ in fservers:
                wrk(srv.url, srv.bodies["single"], 16, 2)
            load_round(fservers, [("c64", 64, "single"), ("c1", 1, "single")], a.duration,
                       a.repeat, results)
            for srv in started:
                srv.stop()
            started.clear()
    finally:
        for srv in started:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)

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
