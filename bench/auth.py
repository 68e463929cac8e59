#!/usr/bin/env python3
"""What API keys cost on the request path, in one run:

    python3 bench/auth.py [--duration 10] [--repeat 3]

Two release servers on 127.0.0.1 with the bundled models: one without keys, one with
`--api-keys` (a keys file of 20 keys; requests carry the last one, so every key is compared)
and a per-key rate limit far above the load (the bucket is taken on every request). wrk sends
single-row iris v2 requests to each in turn (the keyed server's with `Authorization: Bearer`),
at concurrency 1 and 16, rounds repeated; each figure is the median round. Prints requests/s,
p50 and p99, and keys-on ÷ keys-off. Only loopback traffic; only the servers this script
started are stopped, by PID.
"""
import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LUA = os.path.join(ROOT, "bench", "server", "post.lua")
BIN = os.path.join(ROOT, "target", "release", "ferroserve")
BODY = os.path.join(ROOT, "examples", "requests", "iris_v2.json")
KEY = "bench-key-19"


def start(args):
    p = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
                          "--request-log", "off", "--log", "warn", "--no-jobs", *args],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.match(r"ferroserve: HTTP listening on (\S+)", line)
    if not m:
        p.kill()
        sys.exit(f"no listening line: {line!r}")
    url = f"http://{m.group(1)}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/v2/health/ready", timeout=2).status == 200:
                return p, url
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    sys.exit("not ready")


def wrk(url, conns, duration, headers):
    cmd = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{duration}s", "--timeout", "5s", "-s", LUA]
    for h in headers:
        cmd += ["-H", h]
    r = subprocess.run(cmd + [url + "/v2/models/iris/infer"], env=dict(os.environ, BODY=BODY),
                       capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", r.stdout)
    reqs, dur_us, p50, p99, bad, sock = map(int, m.groups())
    if bad or sock:
        sys.exit(f"{bad} bad answers, {sock} socket errors: {r.stdout}")
    return reqs / (dur_us / 1e6), p50 / 1000, p99 / 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferroserve"], cwd=ROOT, check=True)
    d = tempfile.mkdtemp()
    keys = os.path.join(d, "keys.toml")
    with open(keys, "w") as f:
        for i in range(20):
            k = f"bench-key-{i}"
            f.write(f'[[keys]]\nname = "k{i}"\nsha256 = "{hashlib.sha256(k.encode()).hexdigest()}"\n'
                    f'scopes = ["infer"]\nrate = "1000000/s"\n\n')
    off, off_url = start([])
    on, on_url = start(["--api-keys", keys])
    results = {}
    try:
        for conns in (1, 16):
            for name, url, headers in (("off", off_url, []), ("on", on_url, [f"Authorization: Bearer {KEY}"])):
                wrk(url, conns, 2, headers)  # warm-up
            for _ in range(a.repeat):
                for name, url, headers in (("off", off_url, []), ("on", on_url, [f"Authorization: Bearer {KEY}"])):
                    results.setdefault((name, conns), []).append(wrk(url, conns, a.duration, headers))
    finally:
        for p in (off, on):
            p.terminate()
            p.wait(timeout=15)
    print(f"single-row iris v2 JSON, wrk -t1, {a.duration} s x {a.repeat} rounds, medians")
    print("| concurrency | keys off req/s | keys on req/s | on ÷ off | p50 off / on (ms) | p99 off / on (ms) |")
    print("|---|---|---|---|---|---|")
    for conns in (1, 16):
        med = {n: [statistics.median(x[i] for x in results[(n, conns)]) for i in range(3)] for n in ("off", "on")}
        print(f"| {conns} | {med['off'][0]:,.0f} | {med['on'][0]:,.0f} | {med['on'][0] / med['off'][0]:.3f} | "
              f"{med['off'][1]:.3f} / {med['on'][1]:.3f} | {med['off'][2]:.3f} / {med['on'][2]:.3f} |")


if __name__ == "__main__":
    main()
