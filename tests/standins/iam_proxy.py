"""A reverse proxy that lets a request through only with an accepted `Authorization: Bearer <token>`:
the IAM check Cloud Run makes in front of a service that requires authentication.

    proxy = BearerProxy(mlflow_url, verify=metadata.verify)   # verify(token, audience) -> None or why not
    proxy.url        # what clients call; also the audience the tokens must have (Cloud Run: the service URL)
    proxy.snapshot() # Seen(method, path, token, status, at) of every request, in arrival order

A request without a bearer token, or with one `verify` refuses, gets 401 and does not reach the target.

Like Cloud Run, the token may instead come in `X-Serverless-Authorization: Bearer <token>`: when that header is
present only it is checked, and `Authorization` goes through to the service untouched (so the service can use
it for its own authentication, e.g. MLflow's basic-auth). Sources: Cloud Run's service-to-service
authentication page (either header carries the ID token) and GoogleCloudPlatform/cloud-run-proxy pull 25 (with
both headers present, Cloud Run checks X-Serverless-Authorization). `Seen.forwarded` is the scheme of the
Authorization header passed on in that case ("Basic"), else None.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP_BY_HOP = ("connection", "content-length", "content-encoding", "transfer-encoding", "keep-alive")


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    token: str | None
    status: int
    at: float
    forwarded: str | None = None


class BearerProxy:
    def __init__(self, target, verify, audience=None):
        self.target = target.rstrip("/")
        self.verify = verify
        self.seen = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]
        self.audience = audience or self.url
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def snapshot(self):
        with self._lock:
            return list(self.seen)

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                at = time.time()
                serverless = self.headers.get("X-Serverless-Authorization")
                header = (serverless if serverless is not None else self.headers.get("Authorization")) or ""
                token = header[len("Bearer "):] if header.startswith("Bearer ") else None
                refused = "no bearer token" if not token else proxy.verify(token, proxy.audience)
                if refused:
                    self._record(token, 401, at)
                    self._answer(401, {"Content-Type": "text/plain"}, ("401 Unauthorized: %s\n" % refused).encode())
                    return
                skip = ("host", "content-length", "x-serverless-authorization")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                forwarded = None
                if serverless is not None and self.headers.get("Authorization"):
                    forwarded = self.headers.get("Authorization").split(" ", 1)[0]
                upstream = requests.request(self.command, proxy.target + self.path, data=body, headers=headers,
                                            timeout=120)
                self._record(token, upstream.status_code, at, forwarded)
                self._answer(upstream.status_code, upstream.headers, upstream.content)

            def _record(self, token, status, at, forwarded=None):
                with proxy._lock:
                    proxy.seen.append(Seen(method=self.command, path=self.path.split("?")[0], token=token,
                                           status=status, at=at, forwarded=forwarded))

            def _answer(self, status, headers, payload):
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _relay

            def log_message(self, *args):
                pass

        return Handler
