#!/usr/bin/env python3
"""Batch jobs (issue 14), in one command, every figure from the same run:

    python3 bench/jobs.py [--rows 1000000] [--duration 10] [--rounds 3] [--binary PATH] [--docs]

1. Job throughput: a CSV of `--rows` iris rows uploaded to `POST /jobs` (chunks of 10,000
   rows), timed from the upload's first byte to `succeeded`; against the model's in-process
   batch speed (the rows the server's instances computed per second of compute time, from its
   v2 statistics for that job) and the online friendly route (`POST /models/iris/predict`,
   CSV, the same rows in requests of 50,000).
2. Online latency while a job runs: single-row v2 requests at concurrency 16 from wrk, p50 and
   p99, alone and while a job (sized to outlast the run) is running; the ratio of the p99s.
3. `ferroserve batch` against the Cortex tutorial's thread-pool runner (`ThreadPoolExecutor`
   of 5 workers, `requests.post` per item, as the seed writes it): one row per request as the
   seed sends them, and 100 rows per request as its comment suggests, on the same file of
   10,000 rows to the v2 route; `ferroserve batch` with its defaults on that file and on the
   `--rows` file.

Medians of `--rounds`. Prints a markdown table; with --docs writes it into docs/benchmarks.md
between the `jobs:begin` and `jobs:end` markers. Needs wrk, curl and Python's requests.

Only loopback; only the processes this script started are stopped (by PID); every wait is
bounded.
"""
import argparse
import concurrent.futures
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prediction_log import ROOT, BODY, get, start, stop, write_docs  # noqa: E402

HEADER = "sepal_length,sepal_width,petal_length,petal_width\n"


def write_csv(path, n, seed=7):
    rnd = random.Random(seed)
    with open(path, "w") as f:
        f.write(HEADER)
        for _ in range(n):
            f.write(",".join(f"{rnd.uniform(0, 8):.2f}" for _ in range(4)) + "\n")


def post_json(url, body, timeout=30):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def job_status(port, jid):
    return json.loads(get(f"http://127.0.0.1:{port}/jobs/{jid}"))


def submit(port, path, chunk_rows=10000):
    out = subprocess.run(["curl", "-sS", "--max-time", "600", "-X", "POST",
                          f"http://127.0.0.1:{port}/jobs", "-F", "model=iris",
                          "-F", f"chunk_rows={chunk_rows}", "-F", f"file=@{path}"],
                         capture_output=True, text=True, timeout=660, check=True).stdout
    return json.loads(out)["id"]


def wait_state(port, jid, want, limit_s):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        st = job_status(port, jid)
        if st["state"] in want:
            return st
        time.sleep(0.02)
    raise SystemExit(f"job {jid} not {want} within {limit_s} s")


def compute_stats(port):
    """(rows computed, compute ns) of the iris model, from its v2 statistics."""
    v = json.loads(get(f"http://127.0.0.1:{port}/v2/models/iris/stats"))
    rows = sum(m["inference_count"] for m in v["model_stats"])
    ns = sum(m["inference_stats"]["compute_infer"]["ns"] for m in v["model_stats"])
    return rows, ns


def job_round(port, path, rows):
    r0, ns0 = compute_stats(port)
    t = time.monotonic()
    jid = submit(port, path)
    st = wait_state(port, jid, ("succeeded", "failed", "cancelled"), 600)
    wall = time.monotonic() - t
    assert st["state"] == "succeeded" and st["rows_done"] == rows, st
    r1, ns1 = compute_stats(port)
    lines = get(f"http://127.0.0.1:{port}/jobs/{jid}/results", timeout=120).count("\n")
    assert lines == rows, (lines, rows)
    return rows / wall, (r1 - r0) / ((ns1 - ns0) / 1e9)


def online_round(port, path):
    with open(path) as f:
        f.readline()
        lines = f.read().splitlines()
    t = time.monotonic()
    for i in range(0, len(lines), 50000):
        body = (HEADER + "\n".join(lines[i:i + 50000]) + "\n").encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/models/iris/predict", data=body,
                                     headers={"Content-Type": "text/csv"})
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
    return len(lines) / (time.monotonic() - t)


def wrk_latency(port, duration, tmp):
    script = os.path.join(tmp, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write(f"wrk.body = {json.dumps(BODY)}\n")
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
        f.write("done = function(s, l, r)\n"
                "  io.write(string.format('RESULT %d %d %d %d\\n', s.requests, "
                "l:percentile(50), l:percentile(99), s.errors.status))\nend\n")
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{duration}s", "-s", script,
                          f"http://127.0.0.1:{port}/v2/models/iris/infer"],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+)", out)
    n, p50, p99, bad = (int(x) for x in m.groups())
    assert bad == 0, out
    return n / duration, p50, p99


def latency_round(port, duration, tmp, job_path):
    alone = wrk_latency(port, duration, tmp)
    jid = submit(port, job_path, chunk_rows=1000)
    wait_state(port, jid, ("running",), 120)
    before = job_status(port, jid)["rows_done"]
    t = time.monotonic()
    during = wrk_latency(port, duration, tmp)
    st = job_status(port, jid)
    job_rps = (st["rows_done"] - before) / (time.monotonic() - t)
    still = st["state"] == "running"
    post_json(f"http://127.0.0.1:{port}/jobs/{jid}/cancel", {})
    return alone, during, job_rps, still


def seed_runner(url, items, workers=5):
    """The Cortex tutorial's runner: a ThreadPoolExecutor mapping `make_request` over the
    items, each one `requests.post`, retried until 200."""
    import requests

    def make_request(batch):
        for _ in range(60):
            r = requests.post(url, data=json.dumps(batch))
            if r.status_code == 200:
                return r.text
            time.sleep(0.1)
        raise RuntimeError("max attempts exceeded")

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(make_request, items))


def v2_body(rows):
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [len(rows), 4],
                        "data": [x for r in rows for x in r]}]}


def seed_round(port, path, per_request):
    with open(path) as f:
        f.readline()
        rows = [[float(x) for x in line.split(",")] for line in f.read().splitlines()]
    items = [v2_body(rows[i:i + per_request]) for i in range(0, len(rows), per_request)]
    t = time.monotonic()
    answers = seed_runner(f"http://127.0.0.1:{port}/v2/models/iris/infer", items)
    assert len(answers) == len(items)
    return len(rows) / (time.monotonic() - t)


def batch_round(exe, port, path, rows, tmp):
    out = os.path.join(tmp, "answers.jsonl")
    t = time.monotonic()
    subprocess.run([exe, "batch", "--url", f"http://127.0.0.1:{port}", "--model", "iris",
                    path, "-o", out, "--restart", "--no-progress"],
                   check=True, capture_output=True, timeout=900)
    took = time.monotonic() - t
    with open(out) as f:
        n = sum(1 for _ in f)
    assert n == rows, (n, rows)
    return rows / took


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/ferroserve"))
    ap.add_argument("--docs", action="store_true")
    a = ap.parse_args()
    for tool in ("wrk", "curl"):
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool}")
    tmp = tempfile.mkdtemp(prefix="fs-bench-jobs-")
    big, small, huge = (os.path.join(tmp, n) for n in ("big.csv", "small.csv", "huge.csv"))
    write_csv(big, a.rows)
    write_csv(small, 10_000, seed=8)
    log = os.path.join(tmp, "server.log")
    p, port = start(a.binary, ["--data-dir", os.path.join(tmp, "data")], log)
    try:
        res = {k: [] for k in ("job", "compute", "online", "alone", "during", "job_during",
                               "seed1", "seed100", "batch_small", "batch_big")}
        stills = []
        for r in range(a.rounds):
            job, compute = job_round(port, big, a.rows)
            res["job"].append(job)
            res["compute"].append(compute)
            res["online"].append(online_round(port, big))
            if r == 0:
                # A job that outlasts the latency run by far, at chunks of 1000 rows.
                write_csv(huge, int(job * a.duration * 1.5) + 100_000, seed=9)
            alone, during, job_rps, still = latency_round(port, a.duration, tmp, huge)
            res["alone"].append(alone)
            res["during"].append(during)
            res["job_during"].append(job_rps)
            stills.append(still)
            res["seed1"].append(seed_round(port, small, 1))
            res["seed100"].append(seed_round(port, small, 100))
            res["batch_small"].append(batch_round(a.binary, port, small, 10_000, tmp))
            res["batch_big"].append(batch_round(a.binary, port, big, a.rows, tmp))
            print(f"round {r + 1}: " + ", ".join(f"{k}={v[-1]}" for k, v in res.items()),
                  file=sys.stderr)
    finally:
        stop(p)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(k):
        return statistics.median(res[k])

    def med_lat(k, i):
        return statistics.median(x[i] for x in res[k])

    p99_ratio = med_lat("during", 2) / med_lat("alone", 2)
    lines = [
        f"Same server, same run, medians of {a.rounds} rounds "
        f"(`python3 bench/jobs.py --rows {a.rows} --duration {a.duration} --rounds {a.rounds}`).",
        "",
        "| Measure | Figure | Against |",
        "|---|---|---|",
        f"| job of {a.rows:,} CSV rows, upload to `succeeded` | {med('job'):,.0f} rows/s | "
        f"in-process batch compute {med('compute'):,.0f} rows/s "
        f"(**{med('job') / med('compute'):.2f}x**); online CSV route in 50,000-row requests "
        f"{med('online'):,.0f} rows/s (**{med('job') / med('online'):.2f}x**) |",
        f"| online single-row v2, c=16, alone | p50 {med_lat('alone', 1) / 1000:.2f} ms, "
        f"p99 {med_lat('alone', 2) / 1000:.2f} ms, {med_lat('alone', 0):,.0f} req/s | |",
        f"| online single-row v2, c=16, a job running | p50 {med_lat('during', 1) / 1000:.2f} ms, "
        f"p99 {med_lat('during', 2) / 1000:.2f} ms, {med_lat('during', 0):,.0f} req/s | "
        f"p99 **{p99_ratio:.2f}x** alone (goal: at most 1.5x); the job meanwhile "
        f"{med('job_during'):,.0f} rows/s{'' if all(stills) else ' (finished early in a round)'} |",
        f"| `ferroserve batch`, 10,000 rows | {med('batch_small'):,.0f} rows/s | "
        f"seed runner one row per request {med('seed1'):,.0f} rows/s "
        f"(**{med('batch_small') / med('seed1'):.0f}x**); 100 rows per request "
        f"{med('seed100'):,.0f} rows/s (**{med('batch_small') / med('seed100'):.1f}x**) |",
        f"| `ferroserve batch`, {a.rows:,} rows | {med('batch_big'):,.0f} rows/s | "
        f"the server-side job {med('job'):,.0f} rows/s |",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    if a.docs:
        write_docs(table, "jobs")


if __name__ == "__main__":
    main()
