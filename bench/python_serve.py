#!/usr/bin/env python3
"""The Ray Serve tutorial's AdderPredictor served by ferroserve's Python backend, against Ray Serve
and a FastAPI wrapper of the same class, in one command (issue 12):

    python3 bench/python_serve.py [--duration 5] [--rounds 2] [--binary PATH] [--docs]

Measures, in the same run:
- what a single-row call costs besides `predict`: `predict` called directly in Python (timeit);
  the runner's own Python per call (decode, predict, encode, in one process, no socket); the
  worker round trip the server records per single-row batch at concurrency 1 (its
  `compute_infer` statistic: socket, worker wake-up, runner, answer); and the whole HTTP
  request at concurrency 1 (wrk), next to a native tree model on the same server (the server
  without Python);
- requests/s and mean latency of `POST /` with `{"array": [40]}` (the tutorial's request,
  answered `[42.0]`, checked before every measurement) at concurrency 1 and 64, with batching:
  ferroserve's batcher (max_batch_size 64, no queue delay: it takes what is queued), Ray Serve's
  `@serve.batch` (max_batch_size 64, batch_wait_timeout_s 0) when `ray[serve]` is installed, and
  FastAPI + uvicorn (one worker, no batching: what users write by hand) when installed.

Each server runs alone while it is measured (started, checked, measured, stopped), `--rounds`
times, in turn; the figures are medians over the rounds. Load comes from wrk on loopback. Prints
markdown tables; with --docs writes them into docs/benchmarks.md between the
`python-serve:begin` and `python-serve:end` markers.

Only loopback; only the processes this script started are stopped (by PID; Ray's own processes
by `ray.shutdown()` in the process that started them); every wait is bounded.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADDER = os.path.join(ROOT, "examples/python_models/adder")
IRIS = os.path.join(ROOT, "examples/models/iris")
BODY = '{"array": [40]}'
WANT = [42.0]
IRIS_BODY = ('{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
             '"data": [5.1, 3.5, 1.4, 0.2]}]}')
ADDER_V2 = ('{"inputs": [{"name": "array", "datatype": "FP64", "shape": [1, 1], '
            '"data": [40]}]}')
BATCH = 64


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_answer(port, proc, timeout, path="/", body=BODY):
    """Waits until POST path answers 200; its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}) before answering")
        try:
            st, out = request(port, "POST", path, body, timeout=2)
            if st == 200:
                return json.loads(out)
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"no answer on port {port} within {timeout} s")


def stop(p, grace=20):
    if p.poll() is None:
        p.terminate()
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


# ---- load -------------------------------------------------------------------------------------

def wrk(port, path, body, conns, duration, lua_dir):
    """(requests/s, mean latency in µs, errors) of wrk POSTing body."""
    script = os.path.join(lua_dir, f"post-{abs(hash(body))}.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write(f"wrk.body = {json.dumps(body)}\n")
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
    threads = 1 if conns == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency",
                          "-s", script, f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", out)
    lat = float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
    errors = 0
    for pat in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?(\d+)"):
        e = re.search(pat, out)
        if e:
            errors += int(e.group(1))
    return rps, lat, errors


# ---- in-process figures ------------------------------------------------------------------------

def predictor():
    sys.path.insert(0, os.path.join(ROOT, "python"))
    sys.path.insert(0, os.path.join(ADDER, "1"))
    from ferroserve import Checkpoint
    import model
    return model.AdderPredictor.from_checkpoint(Checkpoint.from_dict({"increment": 2}))


def in_process():
    """µs per call: predict alone; the runner's decode + predict + encode."""
    import numpy as np
    p = predictor()
    from ferroserve import _runner as r
    x = np.array([[40.0]])
    n = 50000
    direct = min(timeit.repeat(lambda: p.predict(x), number=n, repeat=3)) / n * 1e6
    shapes = r.Shapes({"inputs": [{"name": "array", "datatype": "FP64", "shape": [-1, 1]}],
                       "outputs": [{"name": "output", "datatype": "FP64", "shape": [-1, 1]}]})
    body = bytearray(b"".join(r.encode_tensors([("array", x, False)])))

    def once():
        t = r.decode_tensors(body)
        out = r.encode_tensors(shapes.outputs_of(p.predict(shapes.batch(t, None)), 1))
        return b"".join(out)

    got = r.decode_tensors(bytearray(once()))[0][1]
    assert got.tolist() == [WANT], got
    runner = min(timeit.repeat(once, number=n, repeat=3)) / n * 1e6
    return direct, runner


# ---- the servers -------------------------------------------------------------------------------

def ferroserve(exe, tmp):
    repo = os.path.join(tmp, "repo")
    if not os.path.exists(repo):
        shutil.copytree(ADDER, os.path.join(repo, "adder"))
        with open(os.path.join(repo, "adder/model.toml"), "a") as f:
            f.write(f"\n[batching]\nmax_batch_size = {BATCH}\n")
        shutil.copytree(IRIS, os.path.join(repo, "iris"))
    log = open(os.path.join(tmp, "ferroserve.log"), "a")
    p = subprocess.Popen([exe, "serve", "--repository", repo, "--host", "127.0.0.1",
                          "--http-port", "0", "--grpc-port", "0"], stdout=subprocess.PIPE,
                         stderr=log, text=True,
                         env={k: v for k, v in os.environ.items()
                              if not k.startswith("FERROSERVE_") or k == "FERROSERVE_PYTHON"})
    deadline = time.monotonic() + 60
    port = None
    while port is None and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            raise SystemExit("ferroserve ended before listening; see its log")
        m = re.match(r"ferroserve: HTTP listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
    return p, port


def child(kind, tmp):
    port = free_port()
    log = open(os.path.join(tmp, f"{kind}.log"), "a")
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), f"--serve-{kind}",
                          str(port)], stdin=subprocess.PIPE, stdout=log, stderr=log)
    return p, port


def serve_ray(port):
    import numpy as np
    import ray
    from ray import serve

    @serve.deployment(max_ongoing_requests=256)
    class Adder:
        def __init__(self):
            # Built in the replica's own process (a module by reference would not import).
            self.p = predictor()

        @serve.batch(max_batch_size=BATCH, batch_wait_timeout_s=0.0)
        async def predict(self, arrays):
            rows = [len(a) for a in arrays]
            out = self.p.predict(
                np.array([v for a in arrays for v in a], dtype=float).reshape(-1, 1))
            answers, at = [], 0
            for n in rows:
                answers.append(out[at:at + n, 0].tolist())
                at += n
            return answers

        async def __call__(self, request):
            return await self.predict((await request.json())["array"])

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Adder.bind(), route_prefix="/")
    try:
        sys.stdin.read()  # until the parent closes it
    finally:
        serve.shutdown()
        ray.shutdown()


def serve_fastapi(port):
    import numpy as np
    import uvicorn
    from fastapi import FastAPI, Request
    p = predictor()
    app = FastAPI()

    @app.post("/")
    async def predict(request: Request):
        body = await request.json()
        return p.predict(np.array(body["array"], dtype=float).reshape(-1, 1))[:, 0].tolist()

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def stop_child(p):
    try:
        p.stdin.close()
    except OSError:
        pass
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop(p)


def stats(port, model):
    """(batches, rows, compute_infer ns) so far."""
    st, out = request(port, "GET", f"/v2/models/{model}/stats")
    m = json.loads(out)["model_stats"][0]
    return m["execution_count"], m["inference_count"], m["inference_stats"]["compute_infer"]["ns"]


def installed(module):
    return subprocess.run([sys.executable, "-c", f"import {module}"],
                          capture_output=True).returncode == 0


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--binary", default=None)
    ap.add_argument("--docs", action="store_true")
    ap.add_argument("--serve-ray", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve-fastapi", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_ray:
        return serve_ray(args.serve_ray)
    if args.serve_fastapi:
        return serve_fastapi(args.serve_fastapi)
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk: apt-get install -y wrk")
    binary = args.binary or os.path.join(ROOT, "target/release/ferroserve")
    if not os.path.exists(binary):
        raise SystemExit("no ferroserve binary: cargo build --release -p ferroserve")
    d = max(1, int(args.duration))
    tmp = tempfile.mkdtemp(prefix="ferroserve-python-serve-")
    results = {}  # name -> {"c1": [(rps, lat)], "c64": [...]}
    extra = {"roundtrip": [], "native_c1": [], "v2_c1": [], "c64_rows": [], "c64_batch": []}
    names = ["ferroserve"]
    versions = {}
    if installed("ray.serve"):
        names.append("Ray Serve")
        import importlib.metadata as md
        versions["Ray Serve"] = md.version("ray")
    if installed("fastapi") and installed("uvicorn"):
        names.append("FastAPI")
        import importlib.metadata as md
        versions["FastAPI"] = f"{md.version('fastapi')}, uvicorn {md.version('uvicorn')}"
    try:
        exe = os.path.join(tmp, "ferroserve")
        shutil.copy2(binary, exe)  # a rebuild of target/ during the run changes nothing
        direct, runner = in_process()
        for rnd in range(args.rounds):
            for name in names:
                if name == "ferroserve":
                    p, port = ferroserve(exe, tmp)
                    timeout = 120
                else:
                    p, port = child("ray" if name == "Ray Serve" else "fastapi", tmp)
                    timeout = 180
                try:
                    got = wait_answer(port, p, timeout)
                    assert got == WANT, f"{name} answered {got}"
                    wrk(port, "/", BODY, 8, 1, tmp)  # warm up
                    r = results.setdefault(name, {"c1": [], "c64": [], "err": 0})
                    if name == "ferroserve":
                        b0, _, ns0 = stats(port, "adder")
                    rps, lat, err = wrk(port, "/", BODY, 1, d, tmp)
                    r["c1"].append((rps, lat))
                    r["err"] += err
                    if name == "ferroserve":
                        b1, _, ns1 = stats(port, "adder")
                        extra["roundtrip"].append((ns1 - ns0) / max(1, b1 - b0) / 1000)
                        wait_answer(port, p, 10, "/v2/models/iris/infer", IRIS_BODY)
                        extra["native_c1"].append(
                            wrk(port, "/v2/models/iris/infer", IRIS_BODY, 1, d, tmp)[1])
                        extra["v2_c1"].append(
                            wrk(port, "/v2/models/adder/infer", ADDER_V2, 1, d, tmp)[1])
                    if name == "ferroserve":
                        b0, n0, ns0 = stats(port, "adder")
                    rps, lat, err = wrk(port, "/", BODY, 64, d, tmp)
                    r["c64"].append((rps, lat))
                    if name == "ferroserve":
                        b1, n1, ns1 = stats(port, "adder")
                        extra["c64_rows"].append((n1 - n0) / max(1, b1 - b0))
                        extra["c64_batch"].append((ns1 - ns0) / max(1, b1 - b0) / 1000)
                    r["err"] += err
                    assert wait_answer(port, p, 10) == WANT
                finally:
                    if name == "ferroserve":
                        stop(p)
                    else:
                        stop_child(p)
                print(f"round {rnd + 1}: {name} done", file=sys.stderr)
        tables = report(args, names, versions, results, extra, direct, runner)
        print(tables)
        if args.docs:
            path = os.path.join(ROOT, "docs/benchmarks.md")
            text = open(path).read()
            begin, end = "<!-- python-serve:begin -->\n", "<!-- python-serve:end -->"
            if begin not in text:
                raise SystemExit("docs/benchmarks.md has no python-serve markers")
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            open(path, "w").write(head + begin + tables + end + tail)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(args, names, versions, results, extra, direct, runner):
    roundtrip = med(extra["roundtrip"])
    c1 = med([lat for _, lat in results["ferroserve"]["c1"]])
    native = med(extra["native_c1"])
    v2 = med(extra["v2_c1"])
    lines = [
        f"Single-row call of the tutorial's `AdderPredictor` (medians of {args.rounds} rounds, "
        f"{args.duration:g} s each):\n",
        "| what | µs per call |",
        "|---|---|",
        f"| `predict` called directly in Python (timeit) | {direct:.1f} |",
        f"| the runner's own Python: decode, `predict`, encode (one process, no socket) | "
        f"{runner:.1f} |",
        f"| worker round trip per single-row batch at c=1 (the server's `compute_infer`) | "
        f"{roundtrip:.1f} |",
        f"| whole HTTP request at c=1, `POST /` (wrk mean latency) | {c1:.1f} |",
        f"| whole HTTP request at c=1, `POST /v2/models/adder/infer` | {v2:.1f} |",
        f"| the same server's native tree model (iris), `POST /v2/models/iris/infer` at c=1 | "
        f"{native:.1f} |",
        f"| at c=64: worker round trip per batch of {med(extra['c64_rows']):.1f} rows (mean), "
        f"per row | {med(extra['c64_batch']):.1f}, {med(extra['c64_batch']) / med(extra['c64_rows']):.1f} |",
        "",
        f"Server + channel overhead per single-row call (HTTP request at c=1 minus `predict`): "
        f"{c1 - direct:.0f} µs; of it, the channel (worker round trip minus `predict`): "
        f"{roundtrip - direct:.0f} µs, and what the Python backend adds to the server's own "
        f"path (v2 request minus the native model's): {v2 - native:.0f} µs.",
        "",
        f"`POST /` with `{BODY}` (batching: max_batch_size {BATCH}):\n",
        "| server | c=1 req/s | c=1 mean latency | c=64 req/s | c=64 mean latency | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        r = results[name]
        label = name + (f" ({versions[name]})" if name in versions else "")
        c1r = med([x for x, _ in r["c1"]])
        c1l = med([y for _, y in r["c1"]])
        c64r = med([x for x, _ in r["c64"]])
        c64l = med([y for _, y in r["c64"]])
        lines.append(f"| {label} | {c1r:,.0f} | {c1l / 1000:.2f} ms | {c64r:,.0f} | "
                     f"{c64l / 1000:.2f} ms | {r['err']} |")
    base = results["ferroserve"]
    for name in names[1:]:
        r = results[name]
        lines.append("")
        lines.append(
            f"ferroserve / {name}: {med([x for x, _ in base['c1']]) / med([x for x, _ in r['c1']]):.1f}× "
            f"at c=1, {med([x for x, _ in base['c64']]) / med([x for x, _ in r['c64']]):.1f}× at c=64.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
