#!/usr/bin/env python3
"""The live model registry (issue 11) measured, in one command:

    python3 bench/registry.py [--runs 3] [--duration 5] [--rounds 3] [--cycles 100]
                              [--poll-trials 4] [--spawns 3] [--no-build] [--docs]

Every run starts its own servers (a release build of ferroserve, copied to a temporary folder so
that a rebuild of the shared target/ during the run changes nothing) on 127.0.0.1 with ports from
the OS, and measures:

1. Reloads under load: a copy of the bundled repository, every model loaded (explicit mode,
   `--load-model '*'`); single-row v2 JSON inference on `breast_cancer` at concurrency 16 (wrk,
   bench/server/post.lua, as bench/run.py), in alternating phases of `--duration` seconds: steady
   traffic, and the same traffic while the model is reloaded (`POST
   /v2/repository/models/breast_cancer/load`) every `--reload-every` seconds
   (start to start, back to back when a load takes longer). p99 of each phase, their ratio per
   round (reload ÷ steady, phases in ABBA order), failed or dropped requests (wrk's non-2xx
   answers and socket errors) and the reloads done.
2. Memory across load/unload cycles: explicit mode, nothing loaded at start; each cycle loads the
   model, answers one request with it, unloads it. VmRSS (/proc/PID/status) after the 1st and the
   `--cycles`-th cycle (and checkpoints between), for a tree model (`breast_cancer`) and an ONNX
   Runtime model (`iris_mlp`), each in its own server. The load calls' times are the "load time"
   of item 3.
3. Poll mode (`--repository-poll-secs`): at a random moment of the poll period, a new version
   folder is copied into a staging folder beside the repository (same file system), then at once
   `os.rename`d into `breast_cancer/`; the time from the rename to the first answer carrying the new
   `model_version` (inference polled back to back), for a fresh copy (files and folder written
   just now) and for an aged one (`os.utime` ten seconds back, like a folder prepared earlier),
   against the poll interval + the load time.
4. Time to ready: `ferroserve serve` with no repository argument (the bundled examples/models,
   as the README starts it; only --host 127.0.0.1 and port 0 added), from process spawn to the
   listening line, to each model's `/v2/models/{m}/ready` answering 200 and to
   `/v2/health/ready`, all polled back to back on kept-alive connections by one thread.

Prints a markdown report with the median and the spread (min-max) over runs, writes it to
<out>/registry.md (raw figures: registry.json, server logs: logs/) and, with --docs, into
docs/benchmarks.md between the `registry:begin` and `registry:end` markers.

Only loopback traffic; only the processes this script started are stopped (by PID and their
own process group); every wait is bounded.
"""
import argparse
import glob
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402  (bench/run.py: wrk, Server, process helpers)

ROOT = base.ROOT
EXAMPLES = os.path.join(ROOT, "examples", "models")
TREE_MODEL = "breast_cancer"
ORT_MODEL = "iris_mlp"
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN, END = "<!-- registry:begin -->", "<!-- registry:end -->"
log = base.log


# ------------------------------------------------------------------------------------------
# Helpers


class Client:
    """One kept-alive HTTP/1.1 connection; reconnects after an error. Bounded by `timeout`."""

    def __init__(self, base_url, timeout=30):
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port, self.timeout = host, int(port), timeout
        self.conn = None

    def call(self, method, path, body=None):
        """(status, body bytes); status 0 when the connection failed."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    return 0, b""
        return 0, b""

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def status_of(pid):
    """VmRSS (KiB) and thread count of pid (one process: ferroserve does not fork here)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    return out


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def copy_model(repo, name, versions=("1",)):
    """A copy of examples/models/<name> with the given version folders (copied, not linked)."""
    src, dst = os.path.join(EXAMPLES, name), os.path.join(repo, name)
    os.makedirs(dst)
    shutil.copy2(os.path.join(src, "model.toml"), dst)
    for v in versions:
        shutil.copytree(os.path.join(src, v), os.path.join(dst, v))


def one_row_body(name, meta):
    """A single-row v2 JSON body for the model: its first sample row (model.toml), or the iris
    request for the iris models; input name and datatype from its metadata."""
    cfg = tomllib.load(open(os.path.join(EXAMPLES, name, "model.toml"), "rb"))
    rows = cfg.get("sample_rows")
    if rows:
        row = rows[0]
    else:
        row = json.load(open(base.IRIS_BODY))["inputs"][0]["data"]
    inp = meta["inputs"][0]
    return json.dumps({"inputs": [{"name": inp["name"], "shape": [1, len(row)],
                                   "datatype": inp["datatype"], "data": row}]}).encode()


def ferroserve(key, repo, extra, ready_path, env):
    return base.Server(key, key, [base.FERROSERVE, "serve", "--repository", repo,
                                  "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
                                  "--request-log", "off", "--log", "info"] + extra,
                       env=env, addr_re=r"HTTP listening on (\S+)", ready_path=ready_path,
                       infer_path="", bodies={}, timeout=60)


def med(xs):
    xs = [x for x in xs if x is not None and x == x]
    return statistics.median(xs) if xs else None


def pct(xs, q):
    xs = sorted(x for x in xs if x is not None and x == x)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


# ------------------------------------------------------------------------------------------
# 1. Reloads under load


class Reloader(threading.Thread):
    """Loads `model` every `every` seconds (start to start) until stopped."""

    def __init__(self, base_url, model, every):
        super().__init__(daemon=True)
        self.client = Client(base_url)
        self.model, self.every = model, every
        self.stop_event = threading.Event()
        self.ok, self.failed, self.times_ms, self.errors = 0, 0, [], []

    def run(self):
        path = f"/v2/repository/models/{self.model}/load"
        while not self.stop_event.is_set():
            t0 = time.perf_counter()
            status, body = self.client.call("POST", path, b"{}")
            dt = time.perf_counter() - t0
            if status == 200:
                self.ok += 1
                self.times_ms.append(dt * 1e3)
            else:
                self.failed += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{status}: {body[:200]!r}")
            self.stop_event.wait(max(0.0, self.every - dt))
        self.client.close()


def measure_reloads(work, env, a, body_file):
    # The whole bundled repository, every model loaded: what is rebuilt on each change (the
    # routes, the OpenAPI document) covers them all, as in a real deployment.
    repo = os.path.join(work, "repo_reload")
    for m in bundled_models():
        copy_model(repo, m)
    srv = ferroserve("reload", repo, ["--model-control-mode", "explicit", "--load-model", "*"],
                     "/v2/health/ready", env)
    try:
        if srv.error:
            raise RuntimeError(f"reload server: {srv.error}")
        url = f"{srv.base}/v2/models/{TREE_MODEL}/infer"
        base.wrk(url, body_file, 16, 2)  # warm-up
        rounds = []
        for r in range(a.rounds):
            order = ("steady", "reload") if r % 2 == 0 else ("reload", "steady")
            rnd = {}
            for phase in order:
                rel = None
                if phase == "reload":
                    rel = Reloader(srv.base, TREE_MODEL, a.reload_every)
                    rel.start()
                res = base.wrk(url, body_file, 16, a.duration)
                if rel:
                    rel.stop_event.set()
                    rel.join(timeout=60)
                    res.update(reloads=rel.ok, reload_failed=rel.failed,
                               load_ms_median=med(rel.times_ms),
                               load_ms_p99=pct(rel.times_ms, 0.99),
                               reload_errors=rel.errors)
                res.pop("raw", None)
                rnd[phase] = res
                log(f"  reload round {r + 1} {phase:6}: {res['rps']:8.0f} req/s  p50 "
                    f"{res['p50_ms']:.3f} ms  p99 {res['p99_ms']:.3f} ms  errors {res['errors']}"
                    + (f"  reloads {res['reloads']} (failed {res['reload_failed']}, median "
                       f"{res['load_ms_median']:.1f} ms)" if rel else ""))
                time.sleep(0.5)
            rnd["ratio"] = base.ratio(rnd["reload"]["p99_ms"], rnd["steady"]["p99_ms"])
            rounds.append(rnd)
        after = status_of(srv.p.pid)
        st, _ = Client(srv.base).call("GET", f"/v2/models/{TREE_MODEL}/ready")
        return {"rounds": rounds, "ready_after": st == 200, "status_after": after}
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------
# 2. RSS across load/unload cycles


def measure_cycles(work, env, a, model):
    repo = os.path.join(work, f"repo_cycles_{model}")
    copy_model(repo, model)
    srv = ferroserve(f"cycles_{model}", repo, ["--model-control-mode", "explicit"],
                     "/v2/health/live", env)
    checkpoints = sorted(({1, 2, 5, 10, 20, 50, a.cycles} | set(range(100, a.cycles, 100)))
                         & set(range(1, a.cycles + 1)))
    try:
        if srv.error:
            raise RuntimeError(f"cycles server ({model}): {srv.error}")
        c = Client(srv.base)
        time.sleep(0.2)
        start = status_of(srv.p.pid)
        body = None
        points, load_ms, unload_ms, failures = [], [], [], []
        for i in range(1, a.cycles + 1):
            t0 = time.perf_counter()
            st, msg = c.call("POST", f"/v2/repository/models/{model}/load", b"{}")
            load_ms.append((time.perf_counter() - t0) * 1e3)
            if st != 200:
                failures.append(f"cycle {i} load: {st} {msg[:200]!r}")
                break
            if body is None:
                _, m = c.call("GET", f"/v2/models/{model}")
                body = one_row_body(model, json.loads(m))
            st, msg = c.call("POST", f"/v2/models/{model}/infer", body)
            if st != 200:
                failures.append(f"cycle {i} infer: {st} {msg[:200]!r}")
            t0 = time.perf_counter()
            st, msg = c.call("POST", f"/v2/repository/models/{model}/unload", b"{}")
            unload_ms.append((time.perf_counter() - t0) * 1e3)
            if st != 200:
                failures.append(f"cycle {i} unload: {st} {msg[:200]!r}")
                break
            if i in checkpoints:
                # The unloaded version's batcher and instance threads stop just after the
                # answer: read once they have.
                time.sleep(0.3)
                s = status_of(srv.p.pid)
                points.append({"cycle": i, **s})
        c.close()
        return {"model": model, "start": start, "points": points, "load_ms": load_ms,
                "unload_ms": unload_ms, "failures": failures}
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------
# 3. Poll mode: new version folder to first answer


def age_tree(path, seconds):
    t = time.time() - seconds
    for d, dirs, files in os.walk(path, topdown=False):
        for f in files:
            os.utime(os.path.join(d, f), (t, t))
        os.utime(d, (t, t))


def measure_poll(work, env, a):
    repo = os.path.join(work, "repo_poll")
    staging = os.path.join(work, "staging_poll")  # beside the repository: same file system
    os.makedirs(staging)
    copy_model(repo, TREE_MODEL)
    model_dir = os.path.join(repo, TREE_MODEL)
    srv = ferroserve("poll", repo, ["--model-control-mode", "poll",
                                    "--repository-poll-secs", str(a.poll_secs)],
                     f"/v2/models/{TREE_MODEL}/ready", env)
    trials = []
    try:
        if srv.error:
            raise RuntimeError(f"poll server: {srv.error}")
        c = Client(srv.base, timeout=10)
        _, m = c.call("GET", f"/v2/models/{TREE_MODEL}")
        body = one_row_body(TREE_MODEL, json.loads(m))
        version = 1
        kinds = ["aged", "fresh"] * a.poll_trials
        for kind in kinds:
            version += 1
            tmp = os.path.join(staging, str(version))
            # A random moment of the poll period, so the trials sample every phase (a trial
            # ends just after a poll: without it every trial would start at the same phase).
            time.sleep(random.uniform(0, a.poll_secs))
            # A fresh copy: files written now (shutil.copy does not keep the source's times),
            # renamed in at once; an aged one: the same, dated ten seconds back.
            shutil.copytree(os.path.join(EXAMPLES, TREE_MODEL, "1"), tmp,
                            copy_function=shutil.copy)
            if kind == "aged":
                age_tree(tmp, 10)
            dst = os.path.join(model_dir, str(version))
            t0 = time.perf_counter()
            os.rename(tmp, dst)
            # How old the youngest entry the fingerprint sees is (the rename itself changes
            # only the model folder's own time, which the fingerprint leaves out).
            youngest = time.time() - max(
                [os.stat(dst).st_mtime] + [os.stat(os.path.join(dst, f)).st_mtime
                                           for f in os.listdir(dst)])
            seen, requests, errors = None, 0, 0
            deadline = t0 + 4 * a.poll_secs + 10
            while time.perf_counter() < deadline:
                st, out = c.call("POST", f"/v2/models/{TREE_MODEL}/infer", body)
                requests += 1
                if st != 200:
                    errors += 1
                    continue
                if json.loads(out).get("model_version") == str(version):
                    seen = time.perf_counter() - t0
                    break
            trials.append({"kind": kind, "version": version, "seconds": seen,
                           "youngest_entry_age_s": youngest, "requests": requests,
                           "errors": errors})
            log(f"  poll {kind:5} version {version}: "
                + (f"{seen * 1e3:.0f} ms" if seen is not None else "NOT SEEN")
                + f" ({requests} requests, {errors} not 200; youngest entry {youngest:.2f} s "
                  f"old at the rename)")
        c.close()
        return {"trials": trials}
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------
# 4. Time to ready


def bundled_models():
    return sorted(d for d in os.listdir(EXAMPLES)
                  if os.path.isfile(os.path.join(EXAMPLES, d, "model.toml")))


def measure_startup(work, env, spawns):
    models = bundled_models()
    out = []
    for k in range(spawns):
        logf = open(os.path.join(base.LOGS, f"startup_{k}.log"), "w")
        t0 = time.perf_counter()
        p = subprocess.Popen([base.FERROSERVE, "serve", "--host", "127.0.0.1", "--http-port", "0",
                              "--grpc-port", "0"], cwd=ROOT, env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=logf, text=True)
        try:
            got = []
            reader = threading.Thread(
                target=lambda: got.append((p.stdout.readline(), time.perf_counter())),
                daemon=True)
            reader.start()
            reader.join(60)
            line, t_line = got[0] if got else ("", time.perf_counter())
            t_listen = t_line - t0
            m = re.search(r"HTTP listening on (\S+)", line)
            if not m:
                out.append({"error": f"no listening line: {line!r}"})
                continue
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            url = "http://" + m.group(1)
            paths = {mm: f"/v2/models/{mm}/ready" for mm in models}
            paths["(health)"] = "/v2/health/ready"
            clients = {k_: Client(url, timeout=5) for k_ in paths}
            first = {}
            polls = 0
            deadline = t0 + 60
            while len(first) < len(paths) and time.perf_counter() < deadline:
                for key, path in paths.items():
                    if key in first:
                        continue
                    st, _ = clients[key].call("GET", path)
                    polls += 1
                    if st == 200:
                        first[key] = time.perf_counter() - t0
                # Once the server is ready, every start-time load has ended: a model still
                # not ready failed (its reason is in the index).
                if "(health)" in first and len(first) < len(paths):
                    for key, path in paths.items():
                        if key not in first:
                            ok = clients[key].call("GET", path)[0] == 200
                            first[key] = time.perf_counter() - t0 if ok else None
            c = Client(url)
            platform, reason = {}, {}
            for mm in models:
                st, body = c.call("GET", f"/v2/models/{mm}")
                if st == 200:
                    platform[mm] = json.loads(body).get("platform")
            st, idx = c.call("POST", "/v2/repository/index", b"{}")
            for e in json.loads(idx) if st == 200 else []:
                if e.get("reason"):
                    reason[e["name"]] = e["reason"]
            for cl in list(clients.values()) + [c]:
                cl.close()
            out.append({"listen_s": t_listen, "ready_s": first, "platform": platform,
                        "reasons": reason, "polls": polls,
                        "wall_s": time.perf_counter() - t0})
            log(f"  startup #{k + 1}: listening {t_listen * 1e3:.1f} ms; "
                + ", ".join(f"{mm} {v * 1e3:.1f}" if v is not None else f"{mm} never"
                            for mm, v in first.items()) + f" ms ({polls} polls)")
        finally:
            if p.poll() is None:
                os.killpg(p.pid, 15)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
                    p.wait()
            logf.close()
    return out


# ------------------------------------------------------------------------------------------
# Report


def spread(xs, fmt):
    xs = [x for x in xs if x is not None and x == x]
    if not xs:
        return "–"
    if len(xs) == 1:
        return fmt(xs[0])
    return f"{fmt(statistics.median(xs))} ({fmt(min(xs))}–{fmt(max(xs))})"


def ms(x):
    return base.fmt_ms(x)


def summarise(runs, meta, a):
    L = []
    L.append(f"`{meta['command']}` — commit `{meta['commit']}`, {meta['date']}, "
             f"{meta['cpus']} cores ({meta['cpu']}), shared; load average "
             f"{', '.join(r['load_before'] + '→' + r['load_after'] for r in runs)} "
             f"(before→after each run). Figures: median over the {len(runs)} runs, "
             f"(min–max) across them.")
    L.append("")

    # 1.
    L.append(f"#### 1. Reloads under load: `{TREE_MODEL}`, v2 JSON single row, concurrency 16, "
             f"the bundled repository's 6 models loaded")
    L.append("")
    L.append(f"wrk -t1 -c16, {a.duration} s phases, {a.rounds} rounds per run (ABBA order); "
             f"reload phase: `POST /v2/repository/models/{TREE_MODEL}/load` every "
             f"{a.reload_every * 1e3:.0f} ms (start to start).")
    L.append("")
    L.append("| run | steady p99 ms | reload p99 ms | p99 ratio (median of rounds) | steady p50 ms "
             "| reload p50 ms | steady req/s | reload req/s | failed or dropped (reload / steady) "
             "| reloads done (failed) | load call ms, median (p99) |")
    L.append("|---|" + "---:|" * 10)
    agg = {"ratio": [], "sp99": [], "rp99": [], "errs": 0, "serrs": 0, "reloads": 0, "rfail": 0}
    for i, r in enumerate(runs, 1):
        rr = r["reloads"]["rounds"]
        s = [x["steady"] for x in rr]
        t = [x["reload"] for x in rr]
        ratio = med([x["ratio"] for x in rr])
        errs = sum(x["errors"] for x in t)
        serrs = sum(x["errors"] for x in s)
        nrel = sum(x["reloads"] for x in t)
        nfail = sum(x["reload_failed"] for x in t)
        agg["ratio"].append(ratio)
        agg["sp99"].append(med([x["p99_ms"] for x in s]))
        agg["rp99"].append(med([x["p99_ms"] for x in t]))
        agg["errs"] += errs
        agg["serrs"] += serrs
        agg["reloads"] += nrel
        agg["rfail"] += nfail
        L.append(f"| {i} | {ms(med([x['p99_ms'] for x in s]))} | "
                 f"{ms(med([x['p99_ms'] for x in t]))} | {base.fmt_ratio(ratio)} "
                 f"({', '.join(base.fmt_ratio(x['ratio']) for x in rr)}) | "
                 f"{ms(med([x['p50_ms'] for x in s]))} | {ms(med([x['p50_ms'] for x in t]))} | "
                 f"{base.fmt_rps(med([x['rps'] for x in s]))} | "
                 f"{base.fmt_rps(med([x['rps'] for x in t]))} | {errs} / {serrs} | "
                 f"{nrel} ({nfail}) | {ms(med([x['load_ms_median'] for x in t]))} "
                 f"({ms(max(x['load_ms_p99'] or 0 for x in t))}) |")
    L.append("")

    # 2.
    L.append("#### 2. RSS across load/unload cycles (explicit mode; each cycle: load, one "
             "request, unload)")
    L.append("")
    L.append("| model | run | RSS at start | after cycle 1 | " + " | ".join(
        f"after {c}" for c in cycle_points(runs)[1:]) + " | growth 1→last | per cycle "
        "| per cycle, 2nd half | threads after 1 / last | load call ms, median (max) |")
    L.append("|---|---|" + "---:|" * (len(cycle_points(runs)) + 6))
    agg_cyc = {}
    for i, r in enumerate(runs, 1):
        for key in ("cycles_tree", "cycles_ort"):
            c = r.get(key)
            if not c or not c["points"]:
                if c and c["failures"]:
                    L.append(f"| {c['model']} | {i} | " + "; ".join(c["failures"][:2]) + " |")
                continue
            pts = c["points"]
            first, last = pts[0], pts[-1]
            growth = (last["rss_kb"] - first["rss_kb"]) / first["rss_kb"]
            per = (last["rss_kb"] - first["rss_kb"]) / max(1, last["cycle"] - first["cycle"])
            mid = next(p for p in pts if p["cycle"] >= last["cycle"] / 2)
            per2 = (last["rss_kb"] - mid["rss_kb"]) / max(1, last["cycle"] - mid["cycle"])
            agg_cyc.setdefault(c["model"], []).append((growth, per, med(c["load_ms"]), per2))
            L.append(f"| {c['model']} | {i} | {c['start']['rss_kb'] / 1024:.1f} MB | "
                     + " | ".join(f"{p['rss_kb'] / 1024:.1f} MB" for p in pts)
                     + f" | {growth * 100:+.1f}% | {per:+.1f} KB | {per2:+.1f} KB "
                       f"({mid['cycle']}→{last['cycle']}) | {first['threads']} / "
                       f"{last['threads']} | {ms(med(c['load_ms']))} ({ms(max(c['load_ms']))}) |"
                     + (" failures: " + "; ".join(c["failures"][:2]) if c["failures"] else ""))
    L.append("")

    # 3.
    L.append(f"#### 3. Poll mode: new version folder (renamed in) to its first answer, "
             f"`--repository-poll-secs {a.poll_secs:g}`")
    L.append("")
    L.append("Bound = poll interval + the model's load time (median load call of item 2 in the "
             "same run).")
    L.append("")
    L.append("| run | load time ms | bound ms | aged copy: ms per trial | aged median / max "
             "| fresh copy: ms per trial | fresh median / max |")
    L.append("|---|---:|---:|---|---:|---|---:|")
    agg_poll = {"aged": [], "fresh": [], "bound": []}
    for i, r in enumerate(runs, 1):
        load = med((r.get("cycles_tree") or {}).get("load_ms") or [])
        bound = a.poll_secs * 1e3 + (load or 0)
        agg_poll["bound"].append(bound)
        row = [str(i), ms(load), f"{bound:.0f}"]
        for kind in ("aged", "fresh"):
            xs = [t["seconds"] * 1e3 if t["seconds"] is not None else None
                  for t in r["poll"]["trials"] if t["kind"] == kind]
            agg_poll[kind].extend(x for x in xs if x is not None)
            row.append(", ".join(f"{x:.0f}" if x is not None else "never" for x in xs))
            good = [x for x in xs if x is not None]
            row.append(f"{med(good):.0f} / {max(good):.0f}" if good else "–")
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    # 4.
    L.append("#### 4. Time to ready: `ferroserve serve` (bundled examples/models), from spawn")
    L.append("")
    keys = []
    for r in runs:
        for s in r["startup"]:
            for k in s.get("ready_s", {}):
                if k not in keys:
                    keys.append(k)
    plat = {}
    for r in runs:
        for s in r["startup"]:
            plat.update(s.get("platform", {}))
    keys.sort(key=lambda k: (k == "(health)", plat.get(k) == "onnxruntime_onnx", k))
    L.append("| | " + " | ".join(
        ("`/v2/health/ready`" if k == "(health)" else f"{k} ({plat.get(k, '?')})") for k in keys)
        + " | listening line |")
    L.append("|---|" + "---:|" * (len(keys) + 1))
    allspawns = [s for r in runs for s in r["startup"] if "ready_s" in s]
    for i, r in enumerate(runs, 1):
        sp = [s for s in r["startup"] if "ready_s" in s]
        cells = []
        for k in keys:
            cells.append(", ".join(ms(s["ready_s"][k] * 1e3) if s["ready_s"].get(k) is not None
                                   else "never" for s in sp))
        cells.append(", ".join(ms(s["listen_s"] * 1e3) for s in sp))
        L.append(f"| run {i}, ms per spawn | " + " | ".join(cells) + " |")
    cells = [spread([s["ready_s"].get(k) and s["ready_s"][k] * 1e3 for s in allspawns], ms)
             for k in keys]
    cells.append(spread([s["listen_s"] * 1e3 for s in allspawns], ms))
    L.append(f"| **all {len(allspawns)} spawns, median (min–max) ms** | " + " | ".join(cells)
             + " |")
    cells = [spread([(s["ready_s"][k] - s["listen_s"]) * 1e3 if s["ready_s"].get(k) is not None
                     else None for s in allspawns], ms) for k in keys]
    L.append("| from the listening line, ms | " + " | ".join(cells) + " | – |")
    L.append("")
    reasons = {k: v for r in runs for s in r["startup"] for k, v in s.get("reasons", {}).items()}
    if reasons:
        L.append("Not ready: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))
        L.append("")

    # Targets.
    def fmt_list(xs, f):
        return spread(xs, f)

    L.append("#### Targets")
    L.append("")
    L.append("| target | measured | |")
    L.append("|---|---|---|")

    def target(name, ok, detail):
        L.append(f"| {name} | {detail} | {'–' if ok is None else ('met' if ok else '**missed**')} |")

    r_ = med(agg["ratio"])
    target("p99 at c=16 while reloading ≤ 2 × p99 without", None if r_ is None else r_ <= 2,
           f"{fmt_list(agg['ratio'], base.fmt_ratio)} (p99 {ms(med(agg['rp99']))} vs "
           f"{ms(med(agg['sp99']))} ms)")
    target("no failed or dropped request during reloads", agg["errs"] == 0,
           f"{agg['errs']} in {agg['reloads']} reloads ({agg['rfail']} load calls failed; "
           f"{agg['serrs']} in the steady phases)")
    for model, xs in agg_cyc.items():
        g = [x[0] for x in xs]
        target(f"RSS after cycle {a.cycles} within 5% of after cycle 1 (`{model}`)",
               all(abs(x) <= 0.05 for x in g),
               f"{fmt_list([x * 100 for x in g], lambda v: f'{v:+.1f}%')}, "
               f"{fmt_list([x[1] for x in xs], lambda v: f'{v:+.1f} KB')} per cycle "
               f"({fmt_list([x[3] for x in xs], lambda v: f'{v:+.1f} KB')} over the 2nd half)")
    for kind in ("aged", "fresh"):
        xs = agg_poll[kind]
        bound = min(agg_poll["bound"]) if agg_poll["bound"] else None
        target(f"poll: new version served ≤ poll interval + load time ({kind} copy)",
               None if not xs or bound is None else max(xs) <= bound,
               f"median {med(xs):.0f} ms, max {max(xs):.0f} ms vs {bound:.0f} ms"
               if xs else "–")
    trees = [k for k in keys if k != "(health)" and plat.get(k) != "onnxruntime_onnx"]
    tt = [s["ready_s"].get(k) for s in allspawns for k in trees]
    tt_ms = [x * 1e3 for x in tt if x is not None]
    target("tree models ready < 50 ms from spawn", bool(tt_ms) and max(tt_ms) < 50
           and len(tt_ms) == len(tt),
           f"slowest tree model per spawn: "
           + fmt_list([max((s['ready_s'].get(k) or 1e9) for k in trees) * 1e3
                       for s in allspawns], ms) + " ms")
    L.append("")
    return "\n".join(L)


def cycle_points(runs):
    for r in runs:
        for key in ("cycles_tree", "cycles_ort"):
            if r.get(key) and r[key]["points"]:
                return [p["cycle"] for p in r[key]["points"]]
    return [1]


def write_docs(text):
    doc = open(DOC).read()
    if BEGIN not in doc or END not in doc:
        sys.exit(f"{DOC} has no {BEGIN} ... {END} block to write into")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(DOC, "w") as f:
        f.write(head + BEGIN + "\n" + text.rstrip() + "\n" + END + tail)
    log(f"wrote the results into {DOC}")


# ------------------------------------------------------------------------------------------


def ort_library():
    if os.environ.get("ORT_DYLIB_PATH"):
        return os.environ["ORT_DYLIB_PATH"]
    libs = sorted(glob.glob(os.path.join(base.VENV, "lib", "python*", "site-packages",
                                         "onnxruntime", "capi", "libonnxruntime.so*")))
    if libs:
        return libs[0]
    try:
        r = subprocess.run([sys.executable, "-c", "import onnxruntime, os; print(os.path."
                            "dirname(onnxruntime.__file__))"], capture_output=True, text=True,
                           timeout=60)
        libs = sorted(glob.glob(os.path.join(r.stdout.strip(), "capi", "libonnxruntime.so*")))
        return libs[0] if libs else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="whole runs (fresh servers each)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk phase (item 1)")
    ap.add_argument("--rounds", type=int, default=3, help="steady/reload phase pairs per run")
    ap.add_argument("--reload-every", type=float, default=0.1, help="seconds between loads")
    ap.add_argument("--cycles", type=int, default=100, help="load/unload cycles (item 2)")
    ap.add_argument("--poll-secs", type=float, default=1.0, help="poll interval (item 3)")
    ap.add_argument("--poll-trials", type=int, default=4, help="trials per kind of copy")
    ap.add_argument("--spawns", type=int, default=3, help="server starts per run (item 4)")
    ap.add_argument("--out", default=os.path.join(base.BENCH, "out", "registry"))
    ap.add_argument("--no-build", action="store_true", help="use target/release as built")
    ap.add_argument("--binary", help="measure this ferroserve binary instead (implies --no-build)")
    ap.add_argument("--docs", action="store_true", help="write the report into "
                    "docs/benchmarks.md (between the registry:begin/end markers)")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    os.makedirs(a.out, exist_ok=True)
    base.LOGS = os.path.join(a.out, "logs")
    os.makedirs(base.LOGS, exist_ok=True)
    if a.binary:
        base.FERROSERVE = os.path.abspath(a.binary)
    elif not a.no_build:
        base.sh(["cargo", "build", "--release", "-q", "-p", "ferroserve"], cwd=ROOT)
    if not os.path.exists(base.FERROSERVE):
        sys.exit(f"{base.FERROSERVE} is missing: build it (or drop --no-build)")
    env = dict(os.environ)
    ort = ort_library()
    if ort:
        env["ORT_DYLIB_PATH"] = ort
    log(f"ONNX Runtime: {ort or 'not found (the ONNX Runtime models will not load)'}")
    work = tempfile.mkdtemp(prefix="ferroserve-registry-")
    binary = os.path.join(work, "ferroserve")
    shutil.copy2(base.FERROSERVE, binary)
    base.FERROSERVE = binary
    git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip()
    meta = {
        "command": "python3 bench/registry.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), "?"),
        "commit": git("rev-parse", "--short", "HEAD")
        + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no")
           else ""),
        "ort": ort,
    }
    if a.binary:
        meta["commit"] += f"; binary measured: {a.binary}"
    runs = []
    try:
        # The reload phases' request: one row of breast_cancer's sample rows.
        body_file = os.path.join(work, "breast_cancer_1.json")
        cfg = tomllib.load(open(os.path.join(EXAMPLES, TREE_MODEL, "model.toml"), "rb"))
        with open(body_file, "w") as f:
            json.dump({"inputs": [{"name": "input", "shape": [1, len(cfg["sample_rows"][0])],
                                   "datatype": "FP32", "data": cfg["sample_rows"][0]}]}, f)
        for i in range(a.runs):
            r = {"load_before": loadavg()}
            log(f"run {i + 1}/{a.runs} (load average {r['load_before']})")
            rwork = os.path.join(work, f"run{i}")
            os.makedirs(rwork)
            log(" 4. time to ready")
            r["startup"] = measure_startup(rwork, env, a.spawns)
            log(" 1. reloads under load")
            r["reloads"] = measure_reloads(rwork, env, a, body_file)
            log(f" 2. load/unload cycles: {TREE_MODEL}")
            r["cycles_tree"] = measure_cycles(rwork, env, a, TREE_MODEL)
            log(f" 2. load/unload cycles: {ORT_MODEL}")
            r["cycles_ort"] = measure_cycles(rwork, env, a, ORT_MODEL)
            log(" 3. poll mode")
            r["poll"] = measure_poll(rwork, env, a)
            r["load_after"] = loadavg()
            runs.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = summarise(runs, meta, a)
    print()
    print(text)
    with open(os.path.join(a.out, "registry.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out, "registry.json"), "w") as f:
        json.dump({"meta": meta, "args": vars(a), "runs": runs}, f, indent=1)
    log(f"wrote {os.path.join(a.out, 'registry.md')}")
    if a.docs:
        write_docs(text)


if __name__ == "__main__":
    main()
