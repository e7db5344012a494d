"""An HTTP proxy in front of an emulator that records every request and can inject faults.

Tests point a module's endpoint at the proxy to prove what happened on the wire: check mode and no-op
runs make no write call, and bursts of 429/503 are survived by the client's retry.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

WRITE_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
# Custom methods that only read although sent with POST (a policy read, a permission test).
READ_ONLY_VERBS = re.compile(r":(getIamPolicy|testIamPermissions)$")


def is_write(method, path):
    """Whether a request may change state: every stand-in counts writes with this one rule."""
    return method in WRITE_METHODS and not READ_ONLY_VERBS.search(path.split("?")[0])


class RecordingProxy:
    def __init__(self, target):
        self.target = target.rstrip("/")
        self.requests = []  # (method, path) in arrival order
        self._faults = []   # [status, remaining count, method or None, forward first]
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def inject(self, status, count, method=None, forward=False):
        """Answer the next `count` requests (of `method`, if given) with `status` in Google's error shape.

        With forward=True the request still reaches the emulator: the answer is lost, not the request.
        """
        with self._lock:
            self._faults.append([status, count, method, forward])

    def clear(self):
        with self._lock:
            self.requests.clear()
            self._faults.clear()

    def writes(self):
        return [r for r in self.requests if is_write(r[0], r[1])]

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def _take_fault(self, method):
        with self._lock:
            for fault in self._faults:
                if fault[1] > 0 and fault[2] in (None, method):
                    fault[1] -= 1
                    return fault[0], fault[3]
        return None, False

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests.append((self.command, self.path.split("?")[0]))
                fault, forward = proxy._take_fault(self.command)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                if forward or not fault:
                    upstream = requests.request(self.command, proxy.target + self.path, data=body,
                                                headers=headers, timeout=60)
                if fault:
                    payload = ('{"error": {"code": %d, "message": "injected fault", "status": "UNAVAILABLE", '
                               '"errors": [{"reason": "backendError"}]}}' % fault).encode()
                    self._answer(fault, {"Content-Type": "application/json"}, payload)
                    return
                self._answer(upstream.status_code, upstream.headers, upstream.content)

            def _answer(self, status, headers, payload):
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, *args):
                pass

        return Handler
