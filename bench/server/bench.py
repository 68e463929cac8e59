"""Server benchmark: start-up time to ready, idle memory, and single-row throughput and latency
measured with a real load generator (wrk), all on loopback, every run bounded in time.

    python3 bench/server/bench.py [--duration 10] [--out bench/out/server.md]

Builds the release binary first (cargo build --release -p ferroserve). Needs wrk (Debian package).
Prints a markdown table; machines here are shared and noisy, so each figure is a median.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "ferroserve")
LUA = os.path.join(os.path.dirname(__file__), "post.lua")


def start(args, port=0):
    """Starts the server; returns (process, base url, seconds from spawn to ready)."""
    t0 = time.perf_counter()
    p = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--http-port", str(port),
                          "--grpc-port", "0", "--request-log", "off", "--log", "warn"] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, text=True)
    line = p.stdout.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        p.kill()
        sys.exit(f"server did not start: {line!r}")
    base = "http://" + m.group(1)
    deadline = t0 + 30
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(base + "/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return p, base, time.perf_counter() - t0
        except Exception:
            time.sleep(0.001)
    p.kill()
    sys.exit("server never became ready")


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def wrk(url, body, conns, duration, threads=1):
    env = dict(os.environ, BODY=body)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s",
                          "--timeout", "5s", "-s", LUA, url],
                         env=env, capture_output=True, text=True, timeout=duration + 30).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not m:
        sys.exit("wrk failed:\n" + out)
    reqs, dur_us, p50, p99, bad_status, sock_err = map(int, m.groups())
    return {"rps": reqs / (dur_us / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "errors": bad_status + sock_err}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "server.md"))
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferroserve"], cwd=ROOT, check=True)

    # Start-up to ready and idle memory, with the bundled repository.
    startups, rss = [], []
    for _ in range(a.starts):
        p, base, secs = start([])
        time.sleep(0.2)
        rss.append(rss_mb(p.pid))
        startups.append(secs)
        stop(p)

    # Single-row v2 JSON, iris (100-tree forest), at several concurrencies.
    body = os.path.join(ROOT, "examples", "requests", "iris_v2.json")
    p, base, _ = start([])
    url = base + "/v2/models/iris/infer"
    wrk(url, body, 8, 2)  # warm-up
    runs = {c: wrk(url, body, c, a.duration) for c in (1, 16, 64)}
    stop(p)

    lines = [
        "| measure | value |",
        "|---|---|",
        f"| start-up to ready, bundled repository (median of {a.starts}) | {statistics.median(startups) * 1e3:.1f} ms |",
        f"| idle RSS after start-up (median) | {statistics.median(rss):.1f} MB |",
    ]
    for c, r in runs.items():
        lines.append(f"| single-row v2 JSON iris, concurrency {c}: req/s, p50, p99 | "
                     f"{r['rps']:.0f} req/s, {r['p50_ms']:.2f} ms, {r['p99_ms']:.2f} ms"
                     f"{'' if r['errors'] == 0 else ', ' + str(r['errors']) + ' errors'} |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(table + "\n")
    json.dump({"startup_s": startups, "rss_mb": rss, "runs": runs},
              open(os.path.splitext(a.out)[0] + ".json", "w"), indent=1)


if __name__ == "__main__":
    main()
