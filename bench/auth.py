#!/usr/bin/env python3
"""What API keys and TLS cost on the request path, in one run:

    python3 bench/auth.py [--duration 10] [--repeat 3]

Three release servers on 127.0.0.1 with the bundled models: one plain (no keys, no TLS), one
with `--api-keys` (a keys file of 20 keys; requests carry the last one, so every key is
compared) and a per-key rate limit far above the load (the bucket is taken on every request),
and one with `--tls-cert` (an ECDSA P-256 certificate of a CA made here). wrk sends single-row
iris v2 requests to each in turn, at concurrency 1 and 16, over kept-alive connections, and
(TLS against plain) also with a new connection per request (`Connection: close`: a handshake
per request); rounds repeated, each figure the median round. Prints requests/s, the server's
CPU time per request (/proc, user + system: steadier than requests/s on a shared machine), p50
and p99, and each variant ÷ the plain server. Only loopback traffic; only the servers this script
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


def make_cert(d):
    """A CA and a certificate for 127.0.0.1 signed by it, in `d`: (cert, key) paths."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(name("bench CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(ca_key, hashes.SHA256()))
    paths = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    with open(paths[0], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


def start(args, tls=False, binary=None):
    p = subprocess.Popen([binary or BIN, "serve", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
                          "--request-log", "off", "--log", "warn", "--no-jobs", *args],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.match(r"ferroserve: HTTP listening on (\S+)", line)
    if not m:
        p.kill()
        sys.exit(f"no listening line: {line!r}")
    url = f"{'https' if tls else 'http'}://{m.group(1)}"
    import ssl
    ctx = ssl._create_unverified_context() if tls else None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/v2/health/ready", timeout=2, context=ctx).status == 200:
                PIDS[url] = p.pid
                return p, url
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    sys.exit("not ready")


PIDS = {}


def cpu_secs(pid):
    """The process's user + system CPU time so far, in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url, conns, duration, headers):
    pid = PIDS[url]
    cpu0 = cpu_secs(pid)
    cmd = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{duration}s", "--timeout", "5s", "-s", LUA]
    for h in headers:
        cmd += ["-H", h]
    r = subprocess.run(cmd + [url + "/v2/models/iris/infer"], env=dict(os.environ, BODY=BODY),
                       capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", r.stdout)
    reqs, dur_us, p50, p99, bad, sock = map(int, m.groups())
    if bad or sock:
        sys.exit(f"{bad} bad answers, {sock} socket errors: {r.stdout}")
    cpu_us = (cpu_secs(pid) - cpu0) / max(reqs, 1) * 1e6
    return reqs / (dur_us / 1e6), p50 / 1000, p99 / 1000, cpu_us


def instructions(args, headers, n, tls=False):
    """Instructions the server executes (valgrind's callgrind: a count, not a time, so the same
    whatever else the machine does) from start to exit, serving `n` single-row requests over one
    kept-alive connection."""
    import http.client
    import signal
    import ssl
    out = tempfile.mktemp(suffix=".callgrind")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, BIN, "serve",
                          "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
                          "--request-log", "off", "--log", "warn", "--no-jobs", *args],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = p.stdout.readline()
        host, port = re.match(r"ferroserve: HTTP listening on (\S+):(\d+)", line).groups()
        body = open(BODY, "rb").read()
        hdrs = {"Content-Type": "application/json", **dict(h.split(": ", 1) for h in headers)}
        deadline = time.monotonic() + 120
        while True:
            try:
                c = (http.client.HTTPSConnection(host, int(port), timeout=30, context=ssl._create_unverified_context())
                     if tls else http.client.HTTPConnection(host, int(port), timeout=30))
                c.request("GET", "/v2/health/ready")
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    break
                c.close()
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit("the server under valgrind was not ready")
            time.sleep(0.5)
        for _ in range(n):
            c.request("POST", "/v2/models/iris/infer", body, hdrs)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                sys.exit(f"answer {r.status}")
        c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
    total = 0
    with open(out) as f:
        for l in f:
            if l.startswith("summary:") or l.startswith("totals:"):
                total = int(l.split()[1])
    os.unlink(out)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["keys", "tls"], help="only the API-key rows, or only the TLS rows")
    ap.add_argument("--instructions", action="store_true",
                    help="count the instructions per request under valgrind instead (plain, keys, TLS)")
    ap.add_argument("--compare-binary", metavar="PATH",
                    help="also run this (older) binary with the same keys: rows 'keys, this ÷ PATH'")
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
    cert, key = make_cert(d)
    if a.instructions:
        # Per request: the difference between 1,500 and 500 requests, over 1,000, so start-up
        # and shutdown cancel out.
        rows = [("plain", [], [], False), ("API key", ["--api-keys", keys], [f"Authorization: Bearer {KEY}"], False),
                ("TLS", ["--tls-cert", cert, "--tls-key", key], [], True)]
        per = {}
        for name, args, headers, tls in rows:
            lo, hi = instructions(args, headers, 500, tls), instructions(args, headers, 1500, tls)
            per[name] = (hi - lo) / 1000
        print("single-row iris v2 JSON over one kept-alive connection, instructions per request (callgrind)")
        print("| server | instructions / request | ÷ plain |")
        print("|---|---|---|")
        for name, _, _, _ in rows:
            print(f"| {name} | {per[name]:,.0f} | {per[name] / per['plain']:.3f} |")
        return
    plain, plain_url = start([])
    keyed, keyed_url = start(["--api-keys", keys])
    tls, tls_url = start(["--tls-cert", cert, "--tls-key", key], tls=True)
    bearer = [f"Authorization: Bearer {KEY}"]
    close = ["Connection: close"]
    # (variant, concurrency, [(label, url, headers)]): the first of each is the baseline.
    runs = [
        ("API key", 1, [("plain", plain_url, []), ("keys", keyed_url, bearer)]),
        ("API key", 16, [("plain", plain_url, []), ("keys", keyed_url, bearer)]),
        ("TLS, kept-alive", 1, [("plain", plain_url, []), ("tls", tls_url, [])]),
        ("TLS, kept-alive", 16, [("plain", plain_url, []), ("tls", tls_url, [])]),
        ("TLS, a connection per request", 16, [("plain", plain_url, close), ("tls", tls_url, close)]),
    ]
    if a.only:
        runs = [r for r in runs if (r[0] == "API key") == (a.only == "keys")]
    others = []
    if a.compare_binary:
        old, old_url = start(["--api-keys", keys], binary=a.compare_binary)
        others.append(old)
        for conns in (1, 16):
            runs.append(("keys, this ÷ --compare-binary", conns,
                         [("old", old_url, bearer), ("new", keyed_url, bearer)]))
    results = {}
    try:
        for variant, conns, pair in runs:
            for _, url, headers in pair:
                wrk(url, conns, 2, headers)  # warm-up
            for _ in range(a.repeat):
                for label, url, headers in pair:
                    results.setdefault((variant, conns, label), []).append(wrk(url, conns, a.duration, headers))
    finally:
        for p in (plain, keyed, tls, *others):
            p.terminate()
            p.wait(timeout=15)
    print(f"single-row iris v2 JSON, wrk -t1, {a.duration} s x {a.repeat} rounds, medians")
    print("| variant | concurrency | baseline req/s | with req/s | with ÷ baseline | server CPU µs/req base / with | p50 base / with (ms) | p99 base / with (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, conns, pair in runs:
        (b_label, _, _), (w_label, _, _) = pair
        med = {n: [statistics.median(x[i] for x in results[(variant, conns, n)]) for i in range(4)]
               for n in (b_label, w_label)}
        base, with_ = med[b_label], med[w_label]
        print(f"| {variant} | {conns} | {base[0]:,.0f} | {with_[0]:,.0f} | {with_[0] / base[0]:.3f} | "
              f"{base[3]:.1f} / {with_[3]:.1f} | {base[1]:.3f} / {with_[1]:.3f} | {base[2]:.3f} / {with_[2]:.3f} |")


if __name__ == "__main__":
    main()
