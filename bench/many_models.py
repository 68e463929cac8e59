#!/usr/bin/env python3
"""Many models in one process: N copies of the bundled iris forest in one repository.

Measures, for one ferroserve binary (target/release/ferroserve unless --binary):
  - start to ready: from the process start to /v2/health/ready answering 200 (every model
    loaded), and to the listening line;
  - the process's resident memory (VmRSS) and thread count (/proc/PID/status) once ready, and
    after a request to every model;
  - single-row v2 JSON latency to one model and to every model in turn (sequential requests on
    one keep-alive connection), against a server with the one model alone, in the same run.

  python3 bench/many_models.py --models 1000 [--binary PATH] [--requests 2000]

Only loopback; the repository is written to a temporary folder and removed.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
IRIS = os.path.join(ROOT, "examples", "models", "iris")
ROW = [5.1, 3.5, 1.4, 0.2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_repo(folder, n):
    """N copies of iris: its model.toml without route aliases (one owner per route), its ONNX file."""
    toml = open(os.path.join(IRIS, "model.toml")).read().split("\n[[routes]]")[0]
    onnx = os.path.join(IRIS, "1", "model.onnx")
    for i in range(n):
        d = os.path.join(folder, f"iris{i:04d}")
        os.makedirs(os.path.join(d, "1"))
        with open(os.path.join(d, "model.toml"), "w") as f:
            f.write(toml)
        shutil.copyfile(onnx, os.path.join(d, "1", "model.onnx"))


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    return {"rss_mb": round(out["VmRSS"] / 1024, 1), "threads": out["Threads"]}


class Server:
    def __init__(self, binary, repo):
        self.port = free_port()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary, "serve", "--repository", repo, "--host", "127.0.0.1",
             "--http-port", str(self.port), "--grpc-port", "0", "--request-log", "off",
             "--log", "warn", "--no-jobs"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        self.listening = time.perf_counter() - self.started
        if "listening" not in line:
            raise SystemExit(f"ferroserve did not start: {line!r}")
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        else:
            raise SystemExit("not ready in 120 s")
        self.ready = time.perf_counter() - self.started
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def infer(self, model):
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW}]})
        t = time.perf_counter()
        self.conn.request("POST", f"/v2/models/{model}/infer", body, {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"{model}: {r.status}")
        return time.perf_counter() - t

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def quantiles(xs):
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))] * 1e3
    return {"p50_ms": round(q(0.5), 3), "p99_ms": round(q(0.99), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "ferroserve"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ferroserve-many-")
    try:
        many = os.path.join(tmp, "many")
        one = os.path.join(tmp, "one")
        make_repo(many, args.models)
        make_repo(one, 1)
        results = {}
        for label, repo, n in (("one model", one, 1), (f"{args.models} models", many, args.models)):
            s = Server(args.binary, repo)
            try:
                r = {"listening_s": round(s.listening, 3), "ready_s": round(s.ready, 3), **status(s.proc.pid)}
                for _ in range(200):
                    s.infer("iris0000")
                r["same model"] = quantiles([s.infer("iris0000") for _ in range(args.requests)])
                rnd = random.Random(7)
                r["any model"] = quantiles([s.infer(f"iris{rnd.randrange(n):04d}") for _ in range(args.requests)])
                for i in range(n):
                    s.infer(f"iris{i:04d}")
                r["after every model answered"] = status(s.proc.pid)
                results[label] = r
            finally:
                s.stop()
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
