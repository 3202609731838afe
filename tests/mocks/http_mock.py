#!/usr/bin/python3
"""http_mock.py -- a local HTTP/1.1 server for testing weir's HTTP client.

Standard library only; shares no code with the engine.  Binds 127.0.0.1,
writes the port it got to --port-file once listening (atomically: a temp
file renamed into place, so a reader never sees a partial number), serves
many connections at once (one thread per connection, keep-alive) and exits
on SIGTERM, or when its parent dies with --exit-with-parent.

Endpoints (any method unless noted):
  /echo                     JSON of method, path, query, headers, body
  /status/{code}            that status; ?retry_after=S adds Retry-After
  /delay?ms=N[&group=G]     answers after N ms (counted in /inflight)
  /barrier?group=G&n=N      answers once N requests of G are in flight at
                            the same time (504 after ?timeout_ms=, 60 s);
                            a client hanging up first counts as abandoned
  /inflight?group=G         {"current","max","total","abandoned"} for G
  /bytes?n=N[&chunked=1]    N bytes of a-z repeated (chunked: no length)
  /gzip                     a gzip-encoded JSON document
  /redirect?to=P&n=K        a chain of K redirects (?code=, 302) ending at P
  /drop                     closes the connection without a response
  /headers?name=value       each pair as a response header (repeats kept)
  /json                     a fixed JSON document
  /count                    requests served so far on this TCP connection
  /slowbody?ms=N            headers and part of the body, then stalls N ms
  /closed_port              {"port": P}: a loopback port nothing listens on
                            (bound, then closed: for "connection refused")
"""

import argparse
import gzip
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

JSON_DOC = {
    "name": "weir",
    "version": 1,
    "ratio": 0.5,
    "tags": ["a", "b"],
    "empty": [],
    "nested": {"ok": True, "nothing": None},
    "unicode": "caf\u00e9 \u2713",
}

ALPHABET = b"abcdefghijklmnopqrstuvwxyz"


class Groups:
    """In-flight accounting per group name, shared by every thread."""

    def __init__(self):
        self.cond = threading.Condition()
        self.stats = {}

    def _get(self, group):
        return self.stats.setdefault(
            group, {"current": 0, "max": 0, "total": 0, "abandoned": 0})

    def enter(self, group):
        with self.cond:
            s = self._get(group)
            s["current"] += 1
            s["total"] += 1
            s["max"] = max(s["max"], s["current"])
            self.cond.notify_all()

    def leave(self, group):
        with self.cond:
            self._get(group)["current"] -= 1
            self.cond.notify_all()

    def wait_for(self, group, n, timeout, gone):
        """"ok" once n requests of group are (or were) in flight together,
        "timeout" after timeout seconds, "gone" when gone() says the client
        hung up (checked every 50 ms; counted as abandoned)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self._get(group)["max"] < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                if gone():
                    self._get(group)["abandoned"] += 1
                    return "gone"
                self.cond.wait(min(left, 0.05))
            return "ok"

    def snapshot(self, group):
        with self.cond:
            return dict(self._get(group))


GROUPS = Groups()


def qint(query, name, default):
    try:
        return int(query.get(name, [default])[0])
    except (TypeError, ValueError):
        return default


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "weir-http-mock/1"

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without NODELAY,
        # Nagle holds the body until the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.requests_on_connection = 0

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("mock: " + (fmt % args) + "\n")

    # -- plumbing ---------------------------------------------------------

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, body=b"", ctype="application/json", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not no_body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, value, headers=()):
        self.send(status, json.dumps(value).encode(), headers=headers)

    def dispatch(self):
        self.requests_on_connection += 1
        url = urlsplit(self.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        self.raw_query = url.query
        self.body = self.read_body()
        path = url.path
        route = path.split("/")[1] if path.startswith("/") else ""
        handler = getattr(self, "ep_" + route, None)
        if handler is None:
            self.send_json(404, {"error": "no such endpoint", "path": path})
            return
        handler(path)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = dispatch
    do_HEAD = do_OPTIONS = dispatch

    def client_gone(self):
        """True when the client closed its end (EOF or reset pending)."""
        try:
            ready, _, _ = select.select([self.connection], [], [], 0)
            if not ready:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- endpoints --------------------------------------------------------

    def ep_echo(self, path):
        headers = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = headers[key] + ", " + value if key in headers else value
        query = {k: (v[0] if len(v) == 1 else v) for k, v in self.query.items()}
        self.send_json(200, {
            "method": self.command,
            "path": urlsplit(self.path).path,
            "raw_query": self.raw_query,
            "query": query,
            "headers": headers,
            "body": self.body.decode("utf-8", errors="replace"),
            "body_length": len(self.body),
        })

    def ep_status(self, path):
        parts = path.split("/")
        try:
            code = int(parts[2])
        except (IndexError, ValueError):
            self.send_json(400, {"error": "usage: /status/{code}"})
            return
        headers = []
        if "retry_after" in self.query:
            headers.append(("Retry-After", self.query["retry_after"][0]))
        self.send_json(code, {"status": code}, headers=headers)

    def ep_delay(self, path):
        ms = qint(self.query, "ms", 0)
        group = self.query.get("group", ["default"])[0]
        GROUPS.enter(group)
        try:
            time.sleep(ms / 1000.0)
        finally:
            GROUPS.leave(group)
        self.send_json(200, {"delayed_ms": ms})

    def ep_barrier(self, path):
        group = self.query.get("group", ["default"])[0]
        n = qint(self.query, "n", 1)
        timeout = qint(self.query, "timeout_ms", 60000) / 1000.0
        GROUPS.enter(group)
        try:
            outcome = GROUPS.wait_for(group, n, timeout, self.client_gone)
        finally:
            GROUPS.leave(group)
        if outcome == "gone":
            self.close_connection = True
            return
        self.send_json(200 if outcome == "ok" else 504,
                       {"group": group, "n": n, "reached": outcome == "ok"})

    def ep_inflight(self, path):
        group = self.query.get("group", ["default"])[0]
        self.send_json(200, GROUPS.snapshot(group))

    def ep_bytes(self, path):
        n = max(0, qint(self.query, "n", 0))
        chunked = self.query.get("chunked", ["0"])[0] == "1"
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(n))
        self.end_headers()
        if self.command == "HEAD":
            return
        block = ALPHABET * (65536 // len(ALPHABET))
        sent = 0
        try:
            while sent < n:
                piece = block[: min(len(block), n - sent)]
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.wfile.write(piece)
                sent += len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def ep_gzip(self, path):
        body = gzip.compress(json.dumps({"gzipped": True, "doc": JSON_DOC}).encode())
        self.send(200, body, headers=[("Content-Encoding", "gzip")])

    def ep_redirect(self, path):
        target = self.query.get("to", ["/echo"])[0]
        n = qint(self.query, "n", 1)
        code = qint(self.query, "code", 302)
        if n > 1:
            location = "/redirect?" + urlencode({"to": target, "n": n - 1, "code": code})
        else:
            location = target
        self.send_json(code, {"redirect": location}, headers=[("Location", location)])

    def ep_drop(self, path):
        self.close_connection = True
        self.wfile.flush()
        # No response at all: the client sees the connection close.

    def ep_headers(self, path):
        headers = []
        for name, values in self.query.items():
            for value in values:
                headers.append((name, value))
        self.send_json(200, {"sent": [[n, v] for n, v in headers]}, headers=headers)

    def ep_json(self, path):
        self.send_json(200, JSON_DOC)

    def ep_count(self, path):
        self.send_json(200, {
            "count": self.requests_on_connection,
            "client_port": self.client_address[1],
        })

    def ep_slowbody(self, path):
        ms = qint(self.query, "ms", 10000)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            self.wfile.write(b"partial ")
            self.wfile.flush()
            time.sleep(ms / 1000.0)
            self.wfile.write(b"x" * (1000 - len(b"partial ")))
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def ep_closed_port(self, path):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.send_json(200, {"port": port})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Many clients connect at once (1,000 concurrent requests): a small
    # listen backlog would drop SYNs and stall them for a retransmit.
    request_queue_size = 4096
    verbose = False

    def handle_error(self, request, client_address):
        # Clients hanging up mid-response (timeouts, cancelled requests,
        # max_body aborts) are what the tests provoke: not worth a trace.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) and not self.verbose:
            return
        super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def watch_parent(parent):
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when the parent process goes away")
    args = ap.parse_args()

    server = Server(("127.0.0.1", args.port), Handler)
    server.verbose = args.verbose
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    if args.exit_with_parent:
        threading.Thread(target=watch_parent, args=(os.getppid(),),
                         daemon=True).start()
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    else:
        print(port, flush=True)
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
