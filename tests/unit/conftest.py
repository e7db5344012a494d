"""Fixtures of the unit tests: a real local HTTP server with scripted answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class ScriptedServer:
    """Answers each request with the next scripted (status, headers, body); records every request."""

    def __init__(self):
        self.script = []
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests.append(dict(method=self.command, path=self.path, headers={k.lower(): v for k, v in self.headers.items()},
                                           body=json.loads(body) if body else None))
                status, headers, payload = owner.script.pop(0) if owner.script else (500, {}, {"unscripted": True})
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if data and "Content-Type" not in headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def answer(self, *responses):
        """Each response: a status, or (status, body) or (status, body, headers)."""
        for response in responses:
            if isinstance(response, int):
                response = (response,)
            status, body, headers = (tuple(response) + (None, None))[:3]
            self.script.append((status, headers or {}, body))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.close()
