"""A stand-in for the GCE metadata server, as far as ID tokens go (what google-auth asks for on Cloud Run).

google-auth finds it through GCE_METADATA_HOST (read when google.auth.compute_engine._metadata is first
imported, so set it in the environment of a new process) and GCE_METADATA_IP (the detection ping):

    metadata = MetadataServer(lifetime=3600)
    env.update(metadata.env())
    ...
    metadata.issued  # every token handed out, with its audience and expiry

It answers:
    GET /                                   200 with `Metadata-Flavor: Google` (google-auth's ping)
    GET /computeMetadata/v1/instance/service-accounts/default/?recursive=true
                                            the account's email, aliases and scopes (JSON)
    GET /computeMetadata/v1/instance/service-accounts/default/identity?audience=...&format=full
                                            a JWT whose `aud` is the audience and `exp` is `lifetime` seconds
                                            away (or `failing`'s status), as text/html like the real one.
Requests without `Metadata-Flavor: Google` get 403, an identity request without an audience 400, as on GCE.
The tokens are well-formed JWTs with a random signature: google-auth reads their claims without verifying
them; `verify()` is what the stand-in IAM check in front of MLflow uses instead of Google's signature check.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ACCOUNT_PATH = "/computeMetadata/v1/instance/service-accounts/default/"
IDENTITY_PATH = ACCOUNT_PATH + "identity"
EMAIL = "serving@test-project.iam.gserviceaccount.com"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    audience: str
    issued_at: float
    expiry: float


@dataclass(frozen=True)
class MetadataRequest:
    path: str
    query: dict
    flavor: str | None
    status: int


def _segment(data):
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_jwt(claims):
    """A well-formed JWT with these claims and a random (unverifiable) RS256 signature."""
    header = {"alg": "RS256", "kid": "standin", "typ": "JWT"}
    return "%s.%s.%s" % (_segment(header), _segment(claims), _segment(os.urandom(256)))


class MetadataServer:
    def __init__(self, lifetime=3600.0, email=EMAIL):
        self.lifetime = lifetime    # seconds from issue to `exp` of the next tokens
        self.email = email
        self.failing = None         # (status, body): answer identity requests with it instead of a token
        self.issued = []            # IssuedToken, in order
        self.requests = []          # MetadataRequest, in order
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.host = "127.0.0.1:%d" % self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def env(self):
        """The environment variables that point google-auth at this stand-in."""
        return {"GCE_METADATA_HOST": self.host, "GCE_METADATA_IP": self.host}

    def identity_requests(self):
        with self._lock:
            return [r for r in self.requests if r.path == IDENTITY_PATH]

    def tokens(self):
        with self._lock:
            return list(self.issued)

    def find(self, token):
        with self._lock:
            return next((t for t in self.issued if t.token == token), None)

    def verify(self, token, audience, now=None):
        """None when `token` is one this server issued for `audience` and has not expired, else why not."""
        issued = self.find(token)
        if issued is None:
            return "not a token the metadata server issued"
        if issued.audience != audience:
            return "the token's audience is %s, not %s" % (issued.audience, audience)
        if issued.expiry <= (time.time() if now is None else now):
            return "the token expired"
        return None

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def _issue(self, audience):
        now = time.time()
        expiry = int(now + self.lifetime)
        with self._lock:
            serial = len(self.issued) + 1
            claims = {"iss": "https://accounts.google.com", "aud": audience, "azp": "1000%d" % serial,
                      "sub": "100000000000000000001", "email": self.email, "email_verified": True,
                      "iat": int(now), "exp": expiry, "jti": "standin-%d" % serial}
            token = make_jwt(claims)
            self.issued.append(IssuedToken(token=token, audience=audience, issued_at=now, expiry=expiry))
        return token

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # pylint: disable=invalid-name
                parts = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                flavor = self.headers.get("Metadata-Flavor")
                status, body = self._route(parts.path, query, flavor)
                content_type = "text/html; charset=UTF-8"
                if not isinstance(body, str):
                    body, content_type = json.dumps(body), "application/json"
                with server._lock:
                    server.requests.append(MetadataRequest(path=parts.path, query=query, flavor=flavor, status=status))
                payload = body.encode()
                self.send_response(status)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _route(self, path, query, flavor):
                if path == "/":
                    return 200, ""
                if flavor != "Google":
                    return 403, "Missing Metadata-Flavor:Google header."
                if path in (ACCOUNT_PATH, ACCOUNT_PATH.rstrip("/")) and query.get("recursive") == "true":
                    return 200, {"aliases": ["default"], "email": server.email,
                                 "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
                if path != IDENTITY_PATH:
                    return 404, "Not Found"
                if not query.get("audience"):
                    return 400, "non-empty audience parameter required"
                failing = server.failing
                if failing is not None:
                    return failing
                return 200, server._issue(query["audience"])

            def log_message(self, *args):
                pass

        return Handler
