"""The HTTP server: one URL prefix per API, routing by discovery document, request log, faults, control API.

    fake = FakeGcp().start()           # a thread on a free port
    fake.endpoints["secretmanager"]    # http://127.0.0.1:PORT/secretmanager
    fake.inject(503, count=2)          # the next two requests fail
    fake.writes()                      # the state-changing calls received
    fake.stop()

Everything that touches state runs under one lock, so concurrent requests are serialized.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.standins.fakegcp.api import Request, Response
from tests.standins.fakegcp.errors import ApiError, fault
from tests.standins.fakegcp.iam_policy import PolicyStore
from tests.standins.fakegcp.operations import Operations
from tests.standins.fakegcp.permissions import Permissions
from tests.standins.fakegcp.realism import Realism
from tests.standins.fakegcp.util import Projects
from tests.standins.recorder import is_write

# POST /_fake/<api>:<control>, e.g. /_fake/run:fail_revisions {"count": 1, "message": "..."}
API_CONTROL = re.compile(r"^/_fake/([a-z]+):([a-z_]+)$")

Call = collections.namedtuple("Call", "method api path query body")
DEFAULT_OPERATION_POLLS = 1
# Request body fields that hold a secret: kept out of the request log (fake.requests, GET /_fake/requests),
# which tests print on failure. Any key holding "password" (Cloud SQL users' password, an instance's
# rootPassword) and Secret Manager's payload.data.
SECRET_KEY = re.compile(r"password", re.I)


def masked(value):
    """What the request log holds instead of a secret: a fingerprint, so a test can still tell which value was sent."""
    return "(masked sha256:%s)" % hashlib.sha256(str(value).encode("utf-8")).hexdigest()[:16]


def redact(body, parent=None):
    """A copy of a parsed request body with its secret fields masked."""
    if isinstance(body, dict):
        return {key: masked(value) if isinstance(value, str) and (SECRET_KEY.search(key) or (
            parent == "payload" and key == "data")) else redact(value, key) for key, value in body.items()}
    if isinstance(body, list):
        return [redact(item, parent) for item in body]
    return body


class Fault:
    def __init__(self, status, count, method, path, forward):
        self.status = status
        self.remaining = count
        self.method = method.upper() if method else None
        self.path = re.compile(path) if path else None
        self.forward = forward

    def matches(self, method, target):
        return self.remaining > 0 and self.method in (None, method) and (self.path is None or self.path.search(target))


class FakeGcp:
    """A stateful fake of the Google Cloud REST control plane (see fake-interface in the project notes)."""

    def __init__(self, apis=None, realism=False, time_scale=1.0):
        from tests.standins.fakegcp import API_CLASSES

        self.lock = threading.RLock()
        self.realism = Realism(realism, time_scale)
        self.gates = []  # gate(request) before every handler; raise ApiError to refuse (see realism.py)
        self.principals = {}  # bearer token -> member ("user:a@example.com"); see realism.py
        self.principal_roles = {}  # member -> roles fake.add_principal grants on every project (permissions.py)
        self.state = {}
        self.requests = []
        self.faults = []
        self.operation_polls = DEFAULT_OPERATION_POLLS
        self.projects = Projects()
        self.operations = Operations(self)
        self.policies = PolicyStore(self)
        self.apis = {}
        for cls in apis or API_CLASSES:
            api = cls(self)
            self.apis[api.name] = api
        # Caller identity first (401), the permission check last, after the APIs' own gates (permissions.py).
        self.permissions = Permissions(self)
        self.gates.insert(0, self.permissions.authenticate)
        self.gates.append(self.permissions.gate)
        self.reset()
        self._server = None
        self._thread = None
        self.url = None

    # ---- lifecycle ---------------------------------------------------------------------------------------
    def bind(self, port=0, host="127.0.0.1"):
        """Create the HTTP server (port 0: a free one) and set .url; returns the server, not yet serving."""
        self._server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self.url = "http://%s:%d" % (host, self._server.server_address[1])
        return self._server

    def start(self, port=0, host="127.0.0.1"):
        """Serve from a daemon thread; returns self."""
        self.bind(port, host)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakegcp", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def endpoints(self):
        return {name: "%s/%s" % (self.url, name) for name in self.apis}

    # ---- test controls -------------------------------------------------------------------------------------
    def clear(self):
        """Empty the request log, remove faults and planned failures, operation polls back to the default."""
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self.operations.clear_failures()
            self.operation_polls = DEFAULT_OPERATION_POLLS
            for api in self.apis.values():
                api.clear()

    def reset(self):
        """clear() and drop every stored resource and operation, and the registered principals."""
        with self.lock:
            self.clear()
            self.state.clear()
            self.principals.clear()
            self.principal_roles.clear()
            self.operations.reset()
            for api in self.apis.values():
                api.reset()

    def inject(self, status, count=1, method=None, path=None, forward=False):
        """Answer the next `count` matching requests with `status` in Google's error shape.

        method filters on the HTTP method; path is a regex searched in "<api><path>"; forward=True
        processes the request and replaces its answer by the error (a lost answer).
        """
        with self.lock:
            self.faults.append(Fault(status, count, method, path, forward))

    def fail_operations(self, count=1, code=None, message=None):
        """The next `count` operations started end in error with this code and message."""
        with self.lock:
            self.operations.plan_failures(count, code, message)

    def complete_operations(self):
        """Finish every running operation now (as if each had been polled enough)."""
        with self.lock:
            self.operations.complete_all()

    def writes(self):
        """The calls that change state: POST/PUT/PATCH/DELETE except :getIamPolicy and :testIamPermissions."""
        with self.lock:
            return [c for c in self.requests if is_write(c.method, c.path)]

    def calls(self, method=None, path=None):
        """Logged calls filtered by HTTP method and a regex searched in "<api><path>"."""
        with self.lock:
            return [c for c in self.requests if (method is None or c.method == method)
                    and (path is None or re.search(path, c.api + c.path))]

    def add_principal(self, token, member, roles=()):
        """Register a bearer token for member and grant it roles on every project's policy, effective at once
        (no propagation wait: test setup). Roles are granted on a project when it is first checked or read."""
        with self.lock:
            self.principals[token] = member
            for role in roles:
                self.principal_roles.setdefault(member, set()).add(role)
            for key in list(self.policies.data):
                if key.startswith("cloudresourcemanager:projects/"):
                    for role in roles:
                        self.policies.grant_now(key, role, member)

    def service_account_exists(self, email):
        iam = self.apis.get("iam")
        return iam is None or iam.find_account(email) is not None

    # ---- request handling ----------------------------------------------------------------------------------
    def handle(self, http_method, raw_path, raw_body, headers=None):
        """(status, body dict) for one HTTP request."""
        parts = urlsplit(raw_path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        if path.startswith("/_fake/") or path == "/_fake":
            return self._control(http_method, path, query, raw_body)
        match = re.match(r"^/([^/]+)(/.*)?$", path)
        api = self.apis.get(match.group(1)) if match else None
        api_path = (match.group(2) or "/") if match else path
        try:
            body = json.loads(raw_body) if raw_body and raw_body.strip() else None
            body_error = None
        except ValueError as exc:
            body, body_error = raw_body.decode("utf-8", "replace"), exc
        with self.lock:
            self.operations.advance()  # operations finish by time, whether or not anyone polls them
            self.requests.append(Call(http_method, api.name if api else "", api_path,
                                      {k: v[-1] if len(v) == 1 else list(v) for k, v in query.items()}, redact(body)))
            forwarded = None
            for item in self.faults:
                if item.matches(http_method, (api.name if api else "") + api_path):
                    item.remaining -= 1
                    if not item.forward:
                        return item.status, fault(item.status).body()
                    forwarded = item.status
                    break
            try:
                if api is None:
                    raise ApiError(404, "The requested URL %s was not found on this server." % path, reason="notFound")
                if body_error is not None:
                    raise ApiError(400, "Invalid JSON payload received. %s" % body_error, reason="parseError")
                status, answer = self._dispatch(api, http_method, api_path, query, body, raw_body, headers or {})
            except ApiError as exc:
                status, answer = exc.code, exc.body()
            except Exception as exc:  # pylint: disable=broad-except  # a bug in the fake: say so loudly
                traceback.print_exc()
                status, answer = 500, ApiError(500, "fakegcp internal error: %r" % exc).body()
            if forwarded is not None:
                return forwarded, fault(forwarded).body()
            return status, answer

    def _dispatch(self, api, http_method, path, query, body, raw_body, headers):
        candidates = [m for m in api.routes if m.flat_regex.match(path)]
        if not candidates:
            raise ApiError(404, "The requested URL /%s%s was not found on this server." % (api.name, path),
                           reason="notFound")
        method = next((m for m in candidates if m.http_method == http_method), None)
        if method is None:
            raise ApiError(405, "Method %s is not allowed on %s (allowed: %s)." % (
                http_method, path, ", ".join(sorted({m.http_method for m in candidates}))),
                status="METHOD_NOT_ALLOWED", reason="methodNotAllowed")
        if method.id not in api.handlers:
            raise ApiError(501, "Method %s is not implemented by the fake." % method.id, status="UNIMPLEMENTED")
        handler, partial = api.handlers[method.id]
        params = method.path_params(path)
        params.update(method.query_params(query))
        checked = None
        if method.request_ref:
            if partial is None:
                partial = http_method == "PATCH"
            checked = api.doc.check_body(method.request_ref, body if body is not None else {}, required=not partial)
        request = Request(api, method, http_method, path, params, checked, body)
        request.token = _bearer(headers)
        request.principal = self.principals.get(request.token) if request.token else None
        for gate in self.gates:
            gate(request)
        result = handler(request)
        if isinstance(result, Response):
            return result.status, result.body
        return 200, result if result is not None else {}

    # ---- control API over HTTP -------------------------------------------------------------------------
    def _control(self, http_method, path, query, raw_body):
        try:
            body = json.loads(raw_body) if raw_body else {}
        except ValueError:
            return 400, {"error": "control body is not JSON"}
        route = (http_method, path.rstrip("/"))
        if route == ("GET", "/_fake/requests"):
            with self.lock:
                return 200, {"requests": [c._asdict() for c in self.requests],
                             "writes": [c._asdict() for c in self.writes()]}
        if route == ("DELETE", "/_fake/requests"):
            with self.lock:
                self.requests.clear()
            return 200, {}
        if route == ("POST", "/_fake/faults"):
            self.inject(int(body["status"]), int(body.get("count", 1)), body.get("method"), body.get("path"),
                        bool(body.get("forward")))
            return 200, {}
        if route == ("POST", "/_fake/operations"):
            with self.lock:
                self.operation_polls = int(body.get("polls", DEFAULT_OPERATION_POLLS))
            return 200, {"polls": self.operation_polls}
        if route == ("POST", "/_fake/operations:fail"):
            self.fail_operations(int(body.get("count", 1)), body.get("code"), body.get("message"))
            return 200, {}
        if route == ("POST", "/_fake/operations:complete"):
            self.complete_operations()
            return 200, {}
        if route == ("GET", "/_fake/operations:timeline"):
            with self.lock:
                return 200, {"operations": self.operations.timeline()}
        if route == ("POST", "/_fake/realism"):
            try:
                with self.lock:
                    self.realism.set(**body)
            except (TypeError, ValueError) as exc:
                return 400, {"error": str(exc)}
            return 200, self.realism.as_dict()
        if route == ("POST", "/_fake/principals"):
            with self.lock:
                self.add_principal(body["token"], body["member"], body.get("roles") or ())
            return 200, {}
        if route == ("POST", "/_fake/clear"):
            self.clear()
            return 200, {}
        if route == ("POST", "/_fake/reset"):
            self.reset()
            return 200, {}
        api_control = API_CONTROL.match(route[1]) if http_method == "POST" else None
        if api_control and api_control.group(2) in getattr(self.apis.get(api_control.group(1)), "controls", ()):
            try:
                with self.lock:
                    getattr(self.apis[api_control.group(1)], api_control.group(2))(**body)
            except (TypeError, ValueError) as exc:
                return 400, {"error": str(exc)}
            return 200, {}
        if route == ("GET", "/_fake/state"):
            with self.lock:
                self.operations.advance()
                return 200, json.loads(json.dumps(self.state, default=str))
        return 404, {"error": "unknown control route %s %s" % route}


def _bearer(headers):
    """The bearer token of an Authorization header, or None (an anonymous caller)."""
    value = headers.get("Authorization") or headers.get("authorization") or ""
    return value[7:].strip() or None if value[:7].lower() == "bearer " else None


def _handler_class(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, body = fake.handle(self.command, self.path, raw, self.headers)
            data = json.dumps(body, indent=2).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            pass

    return Handler
