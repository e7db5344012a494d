"""Authentication of the requests to MLflow (MLFLOW_AUTH).

google-id-token: MLflow runs as a Cloud Run service that only IAM-authenticated callers reach (this service's
account holds roles/run.invoker on it). Every request to it carries a Google-signed ID token whose audience
is MLflow's service URL, in `Authorization: Bearer`. The token comes from google-auth's fetch_id_token: on
Cloud Run from the metadata server (or from GOOGLE_APPLICATION_CREDENTIALS elsewhere). It lasts an hour and
is fetched again when less than REFRESH_MARGIN is left.

How the token reaches MLflow's client: the client reads MLFLOW_TRACKING_TOKEN from the environment each time
it builds a request's credentials (mlflow.utils.credentials.get_default_host_creds, for the tracking and
registry stores and for the mlflow-artifacts repository that downloads the model alike) and sends it as
`Authorization: Bearer <token>`. So the manager calls MlflowAuth.apply() before each MLflow call (the alias
lookup, the model download), which puts a token with at least REFRESH_MARGIN left in that variable. This is
chosen over MLflow's request-header-provider plugins: a provider is registered either through a package's
entry points (an install) or by appending to MLflow's private registry object, and MLflow catches a
provider's exceptions and sends the request without the header, so a failure to get a token would surface as
an unexplained 401. The variable is public, documented MLflow configuration, and a failure here is raised
before the call, with its cause. The process serves one MLflow server, so a process-wide variable is enough.

With MLflow's basic-auth on as well (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD set, the serving
user's credentials), MLflow's client puts those in `Authorization: Basic`, and the ID token goes in
`X-Serverless-Authorization: Bearer <token>` instead: Cloud Run accepts the ID token in that header, checks only
it when both are present, and passes `Authorization` on to MLflow. MLflow has no setting for an extra header,
so a request-header provider is added to its registry (mlflow.tracking.request_header.registry, which every
request of the tracking and registry stores and of the mlflow-artifacts repository resolves): it only reads the
token apply() put in place and cannot fail, so a failure to get a token is still raised by apply() before the
call, with its cause. When that registry is not where this MLflow version keeps it, startup fails with a clear
error rather than sending requests Cloud Run would refuse.

The token and the password are never logged, nor put in an exception message.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone

LOG = logging.getLogger("mlops_serving.auth")

TOKEN_VARIABLE = "MLFLOW_TRACKING_TOKEN"
SERVERLESS_HEADER = "X-Serverless-Authorization"
BASIC_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
REFRESH_MARGIN = 300.0  # seconds: a token with less left is replaced before the next MLflow call
FALLBACK_MINIMUM = 60.0  # seconds: when a refresh fails, the current token is used while it has this much left


class MlflowAuthError(Exception):
    """No usable credentials for MLflow; the message says why (never with the token)."""


def token_expiry(token):
    """The `exp` claim (seconds since the epoch) of a JWT, read without verifying it: it only decides when
    to fetch the next one (MLflow's side, Cloud Run, verifies the signature)."""
    from google.auth import jwt

    try:
        return float(jwt.decode(token, verify=False)["exp"])
    except (ValueError, KeyError, TypeError):  # google-auth's MalformedError is a ValueError; its text holds the token
        raise MlflowAuthError("the ID token received is not a JWT with an expiry (exp)") from None


def fetch_google_id_token(audience):
    """(token, expiry) of a new Google-signed ID token for `audience`."""
    import google.auth.exceptions
    import google.auth.transport.requests
    import google.oauth2.id_token

    try:
        token = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except google.auth.exceptions.MalformedError:
        raise MlflowAuthError("cannot get a Google ID token for MLflow (audience %s): the answer is not a JWT"
                              % audience) from None
    except (google.auth.exceptions.GoogleAuthError, ValueError, KeyError) as exc:
        raise MlflowAuthError("cannot get a Google ID token for MLflow (audience %s): %s: %s"
                              % (audience, type(exc).__name__, _reason(exc))) from exc
    return token, token_expiry(token)


def _reason(exc):
    """The message of a google-auth error, without the repr of the HTTP response some carry along."""
    first = exc.args[0] if exc.args else exc
    text = _reason(first) if isinstance(first, Exception) and first is not exc else str(first)
    return " ".join(text.split())


class IdTokenProvider:
    """The current ID token for one audience, fetched again when it has less than `margin` seconds left.

    Thread-safe: one fetch at a time, and callers arriving during a fetch get its token.
    """

    def __init__(self, audience, fetch=fetch_google_id_token, clock=time.time, margin=REFRESH_MARGIN,
                 fallback_minimum=FALLBACK_MINIMUM):
        self.audience = audience
        self.margin = margin
        self.fallback_minimum = fallback_minimum
        self.fetches = 0
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._token = None
        self._expiry = 0.0

    def token(self):
        with self._lock:
            now = self._clock()
            if self._token is not None and self._expiry - now >= self.margin:
                return self._token
            try:
                token, expiry = self._fetch(self.audience)
            except MlflowAuthError as exc:
                left = self._expiry - now
                if self._token is None or left < self.fallback_minimum:
                    raise
                LOG.warning("%s; the current token (valid %d s more) is used meanwhile", exc, left)
                return self._token
            self.fetches += 1
            self._token, self._expiry = token, expiry
            LOG.info("new ID token for MLflow (audience %s), valid until %s", self.audience,
                     datetime.fromtimestamp(expiry, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            return token


class MlflowAuth:
    """Puts a current ID token where MLflow's client takes it on every request: MLFLOW_TRACKING_TOKEN
    (Authorization: Bearer), or with `serverless_header` the X-Serverless-Authorization header (Authorization
    then carries MLflow's basic credentials)."""

    def __init__(self, provider, environ=None, serverless_header=False):
        self.provider = provider
        self.serverless_header = serverless_header
        self.header_token = None  # the token for X-Serverless-Authorization (serverless_header), None: no header
        self._environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._saved = None  # (value before the first apply, or None)

    @property
    def audience(self):
        return self.provider.audience

    def apply(self):
        """Before an MLflow call: MlflowAuthError when no token can be had."""
        with self._lock:  # the token and the variable change together: an older token never overwrites a newer
            token = self.provider.token()
            if self.serverless_header:
                self.header_token = token
                return
            if self._saved is None:
                self._saved = (self._environ.get(TOKEN_VARIABLE),)
            self._environ[TOKEN_VARIABLE] = token

    def headers(self):
        """The extra request headers: X-Serverless-Authorization once apply() got a token (serverless_header)."""
        token = self.header_token
        return {SERVERLESS_HEADER: "Bearer " + token} if token else {}

    def clear(self):
        """Put MLFLOW_TRACKING_TOKEN back as it was before the first apply(); stop sending the header."""
        with self._lock:
            self.header_token = None
            if self._saved is None:
                return
            previous = self._saved[0]
            self._saved = None
            if previous is None:
                self._environ.pop(TOKEN_VARIABLE, None)
            else:
                self._environ[TOKEN_VARIABLE] = previous


class ServerlessHeaderProvider:
    """A request-header provider for MLflow's registry: the header of the MlflowAuth it was given, if any."""

    def __init__(self):
        self.auth = None

    def in_context(self):
        return self.auth is not None

    def request_headers(self):
        auth = self.auth
        return auth.headers() if auth is not None else {}


_HEADER_PROVIDER = ServerlessHeaderProvider()


def install_header_provider(auth):
    """Have every MLflow request carry `auth`'s headers (one MlflowAuth per process: the last one given)."""
    try:
        from mlflow.tracking.request_header import registry
        providers = registry._request_header_provider_registry  # pylint: disable=protected-access
        register = providers.register
    except (ImportError, AttributeError):
        raise MlflowAuthError("this MLflow version has no request-header registry where it used to: the ID token "
                              "cannot be sent in %s" % SERVERLESS_HEADER) from None
    if not any(provider is _HEADER_PROVIDER for provider in providers):
        register(lambda: _HEADER_PROVIDER)  # register() calls what it is given to get the provider
    _HEADER_PROVIDER.auth = auth


def basic_credentials_set(environ=None):
    """Whether MLflow's client will send basic credentials (both of its variables set)."""
    environ = os.environ if environ is None else environ
    return all(environ.get(name) for name in BASIC_VARIABLES)


def from_settings(settings, environ=None):
    """The MlflowAuth MLFLOW_AUTH asks for, or None (none: requests go as they are)."""
    if settings.mlflow_auth == "google-id-token":
        if basic_credentials_set(environ):
            auth = MlflowAuth(IdTokenProvider(settings.mlflow_audience), environ=environ, serverless_header=True)
            install_header_provider(auth)
            LOG.info("requests to MLflow carry the basic credentials of MLflow user %s in Authorization and the "
                     "ID token in %s", (os.environ if environ is None else environ)[BASIC_VARIABLES[0]],
                     SERVERLESS_HEADER)
            return auth
        return MlflowAuth(IdTokenProvider(settings.mlflow_audience), environ=environ)
    return None
