#!/usr/bin/env python3
"""What the prediction log costs (issue 13), in one command:

    python3 bench/prediction_log.py [--duration 5] [--rounds 3] [--binary PATH] [--docs]

Single-row v2 requests (the bundled iris model, `examples/requests/iris_v2.json`) at concurrency
64 from wrk on loopback, against the same server binary started with: no prediction log;
outputs to SQLite; inputs and outputs to SQLite; outputs to SQLite in the durable mode (through
the spool); outputs to Redis (a `redis-server` this script
starts on a free port, when it is installed). Each variant runs alone, `--rounds` times in turn;
medians. After each run the script checks that the log holds one record per answered request
(none dropped) and reports the server's peak RSS.

Prints a markdown table; with --docs writes it into docs/benchmarks.md between the
`prediction-log:begin` and `prediction-log:end` markers.

    python3 bench/prediction_log.py --memory 300 [--docs]

instead runs one server for 300 s under the same load with its only sink down (a Redis URL
nothing listens on; inputs and outputs recorded, so every record is dropped after the queue
fills) and samples its resident memory every 10 s: the queue is bounded, so memory must not
grow. With --docs the table goes between `prediction-log-memory:begin` and `:end`.

Only loopback; only the processes this script started are stopped (by PID); every wait is bounded.
"""
import argparse
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = open(os.path.join(ROOT, "examples/requests/iris_v2.json")).read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def start(exe, args, log_path):
    p = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--http-port", "0",
                          "--grpc-port", "0", "--request-log", "off", "--log", "warn"] + args,
                         stdout=subprocess.PIPE, stderr=open(log_path, "a"), text=True,
                         env={k: v for k, v in os.environ.items()
                              if not k.startswith("FERROSERVE_")})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"ferroserve ended before listening; see {log_path}")
        m = re.match(r"ferroserve: HTTP listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    while time.monotonic() < deadline:
        try:
            get(f"http://127.0.0.1:{port}/v2/health/ready")
            return p, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("ferroserve not ready within 60 s")


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=40)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wrk(port, duration, tmp):
    script = os.path.join(tmp, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write(f"wrk.body = {json.dumps(BODY)}\n")
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{duration}s", "-s", script,
                          f"http://127.0.0.1:{port}/v2/models/iris/infer"],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, int(bad.group(1)) if bad else 0


def answered(port):
    text = get(f"http://127.0.0.1:{port}/metrics")
    n = 0
    for line in text.splitlines():
        m = re.match(r'ferroserve_requests_total\{model="iris",version="1",outcome="success"\} (\d+)', line)
        if m:
            n += int(m.group(1))
    return n


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_docs(table, marker):
    path = os.path.join(ROOT, "docs/benchmarks.md")
    text = open(path).read()
    begin, end = f"<!-- {marker}:begin -->\n", f"<!-- {marker}:end -->"
    if begin not in text:
        raise SystemExit(f"docs/benchmarks.md has no {marker} markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    open(path, "w").write(head + begin + table + end + tail)


def memory_run(exe, tmp, seconds, docs):
    repo = os.path.join(ROOT, "examples/models")
    down = free_port()
    p, port = start(exe, ["--repository", repo, "--data-dir", os.path.join(tmp, "data-mem"),
                          "--prediction-log", f"redis://127.0.0.1:{down}",
                          "--prediction-log-record", "all"], os.path.join(tmp, "server.log"))
    samples = []
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            rps, bad = wrk(port, 10, tmp)
            samples.append((time.monotonic() - t0, rss_mb(p.pid), rps, bad))
            print(f"{samples[-1][0]:5.0f} s: RSS {samples[-1][1]:.1f} MB, {rps:,.0f} req/s",
                  file=sys.stderr)
        metrics = get(f"http://127.0.0.1:{port}/metrics")
        dropped = sum(int(float(v)) for v in re.findall(
            r'ferroserve_prediction_log_records_total\{sink="[^"]+",target="[^"]*",result="dropped"\} (\S+)', metrics))
        n = answered(port)
    finally:
        stop(p)
    first, last = samples[0][1], samples[-1][1]
    peak = max(r[1] for r in samples)
    table = (f"One server, {seconds:.0f} s of single-row v2 requests at concurrency 64 (wrk), its only "
             f"sink down (Redis URL with nothing listening), inputs and outputs recorded:\n\n"
             "| answered | dropped (counted) | RSS after 10 s | peak RSS | RSS at the end | growth after the first 10 s |\n"
             "|---:|---:|---:|---:|---:|---:|\n"
             f"| {n:,} | {dropped:,} | {first:.1f} MB | {peak:.1f} MB | {last:.1f} MB | {last - first:+.1f} MB |\n\n"
             "RSS every 10 s: " + ", ".join(f"{r[1]:.0f}" for r in samples) + " MB.\n")
    print(table)
    if docs:
        write_docs(table, "prediction-log-memory")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/ferroserve"))
    ap.add_argument("--docs", action="store_true")
    ap.add_argument("--memory", type=float, default=0,
                    help="seconds of the memory run with the sink down (instead of the table)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk: apt-get install -y wrk")
    if not os.path.exists(args.binary):
        raise SystemExit("no ferroserve binary: cargo build --release -p ferroserve")
    tmp = tempfile.mkdtemp(prefix="ferroserve-predlog-bench-")
    redis = None
    try:
        exe = os.path.join(tmp, "ferroserve")
        shutil.copy2(args.binary, exe)
        if args.memory > 0:
            return memory_run(exe, tmp, args.memory, args.docs)
        repo = os.path.join(ROOT, "examples/models")
        variants = [("no prediction log", []),
                    ("outputs to SQLite", ["--prediction-log", "sqlite"]),
                    ("inputs and outputs to SQLite", ["--prediction-log", "sqlite",
                                                      "--prediction-log-record", "all"]),
                    ("outputs to SQLite, durable", ["--prediction-log", "sqlite",
                                                    "--prediction-log-mode", "durable"])]
        if shutil.which("redis-server"):
            rport = free_port()
            redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            variants.append(("outputs to Redis", ["--prediction-log", f"redis://127.0.0.1:{rport}"]))
        d = max(1, int(args.duration))
        results = {name: [] for name, _ in variants}
        for rnd in range(args.rounds):
            for i, (name, extra) in enumerate(variants):
                data = os.path.join(tmp, f"data-{rnd}-{i}")
                p, port = start(exe, ["--repository", repo, "--data-dir", data] + extra,
                                os.path.join(tmp, "server.log"))
                try:
                    rps, bad = wrk(port, d, tmp)
                    n = answered(port)
                    metrics = get(f"http://127.0.0.1:{port}/metrics")
                    dropped = sum(int(float(v)) for v in re.findall(
                        r'ferroserve_prediction_log_records_total\{sink="[^"]+",target="[^"]*",result="dropped"\} (\S+)', metrics))
                    rss = peak_rss_mb(p.pid)
                finally:
                    stop(p)
                recorded = None
                if "SQLite" in name:
                    db = sqlite3.connect(os.path.join(data, "predictions.sqlite"))
                    recorded = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
                    db.close()
                results[name].append((rps, bad, n, recorded, dropped, rss))
                print(f"round {rnd + 1}: {name}: {rps:,.0f} req/s, answered {n}, recorded "
                      f"{recorded}, dropped {dropped}, peak RSS {rss:.0f} MB", file=sys.stderr)
        base = statistics.median(r[0] for r in results[variants[0][0]])
        lines = [f"Single-row v2 requests to iris at concurrency 64 (wrk, {d} s per run, "
                 f"median of {args.rounds} rounds):\n",
                 "| prediction log | req/s | ÷ no log | records ÷ answers (SQLite, after shutdown) | dropped | peak RSS |",
                 "|---|---:|---:|---|---:|---:|"]
        for name, _ in variants:
            rs = results[name]
            rps = statistics.median(r[0] for r in rs)
            rec = ", ".join(f"{r[3]}/{r[2]}" for r in rs) if rs[0][3] is not None else "–"
            lines.append(f"| {name} | {rps:,.0f} | {rps / base:.2f}× | {rec} | "
                         f"{sum(r[4] for r in rs)} | {max(r[5] for r in rs):.0f} MB |")
        table = "\n".join(lines) + "\n"
        print(table)
        if args.docs:
            write_docs(table, "prediction-log")
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
