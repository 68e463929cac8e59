"""Fixtures for the tritonclient suite: the real ferroserve binary, started on 127.0.0.1 with
ports 0 (HTTP and gRPC both free ports, read back from its stdout) and stopped by its PID with
SIGTERM at the end; the stop must be clean (exit status 0).

The binary is FERROSERVE_BIN if set, else the workspace's debug build (built with cargo first;
a no-op when it is up to date, as in CI right after `cargo test`).
"""
import json
import os
import queue
import signal
import subprocess
import threading

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _binary():
    if os.environ.get("FERROSERVE_BIN"):
        return os.environ["FERROSERVE_BIN"]
    subprocess.run(["cargo", "build", "-q", "-p", "ferroserve"], cwd=ROOT, check=True)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return os.path.join(json.loads(meta)["target_directory"], "debug", "ferroserve")


class Server:
    """A running ferroserve: `http` and `grpc` are host:port strings for tritonclient."""

    def __init__(self, args=(), headers=None, ssl_context=None):
        # `headers`: what the server wants on every request but health (an API key);
        # `ssl_context`: how to reach it when it speaks TLS (its CA, a client certificate).
        self.headers = dict(headers or {})
        self.ssl_context = ssl_context
        # Nothing from the developer's shell that changes the answers (every flag has a
        # FERROSERVE_* variable); FERROSERVE_PYTHON only names the interpreter.
        env = {k: v for k, v in os.environ.items()
               if k != "MODEL_FILE" and (not k.startswith("FERROSERVE_") or k == "FERROSERVE_PYTHON")}
        self.proc = subprocess.Popen(
            [_binary(), "serve", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
             "--request-log", "off", "--log", "warn", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        self.stderr = []
        threading.Thread(target=lambda: [self.stderr.append(l) for l in self.proc.stderr],
                         daemon=True).start()
        addrs = {}
        while len(addrs) < 2:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                self.proc.kill()
                raise RuntimeError("ferroserve did not start:\n" + "".join(self.stderr))
            for proto in ("HTTP", "gRPC"):
                prefix = f"ferroserve: {proto} listening on "
                if line.startswith(prefix):
                    addrs[proto] = line[len(prefix):].strip()
        self.http, self.grpc = addrs["HTTP"], addrs["gRPC"]
        self.wait_loaded()

    def wait_loaded(self, timeout=30):
        """Waits until no model of the repository index is LOADING (the server binds its ports
        first and loads its models in the background), as a client would."""
        import time
        import urllib.request
        deadline = time.monotonic() + timeout
        while True:
            try:
                scheme = "https" if self.ssl_context else "http"
                req = urllib.request.Request(f"{scheme}://{self.http}/v2/repository/index",
                                             data=b"{}", method="POST", headers=self.headers)
                with urllib.request.urlopen(req, timeout=5, context=self.ssl_context) as r:
                    if all(m.get("state") != "LOADING" for m in json.load(r)):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"models still loading after {timeout} s:\n" + "".join(self.stderr))
            time.sleep(0.01)

    def stop(self):
        """SIGTERM by PID; returns the exit status (waits at most 15 s)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    status = s.stop()
    assert status == 0, f"ferroserve exited with {status}:\n" + "".join(s.stderr)


@pytest.fixture(scope="session")
def expected():
    with open(os.path.join(ROOT, "examples", "models", "expected.json")) as f:
        return json.load(f)
