"""A CloudEvents receiver for the prediction log's CloudEvents sink test: each POST is parsed
with the CloudEvents SDK (as a receiver of KServe's inference logger does) and printed as one
JSON line on stdout; the port it listens on (127.0.0.1, chosen by the system) is the first
line. It stops after --seconds (a bound for the test) or when stdin closes."""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.v1.http import from_http

lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            event = from_http(dict(self.headers.items()), body)
        except Exception as e:  # an event the SDK refuses: the test sees it
            line = {"invalid": f"{type(e).__name__}: {e}"}
        else:
            line = {
                "attributes": {k: str(v) for k, v in event.get_attributes().items()},
                "data": event.get_data(),
            }
        with lock:
            print(json.dumps(line), flush=True)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=120)
    a = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait(a.seconds)
    server.shutdown()


if __name__ == "__main__":
    main()
