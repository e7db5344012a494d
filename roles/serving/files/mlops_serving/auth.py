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

The token is never logged, nor put in an exception message.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone

LOG = logging.getLogger("mlops_serving.auth")

TOKEN_VARIABLE = "MLFLOW_TRACKING_TOKEN"
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
    """Puts a current ID token in MLFLOW_TRACKING_TOKEN, where MLflow's client reads it on every request."""

    def __init__(self, provider, environ=None):
        self.provider = provider
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
            if self._saved is None:
                self._saved = (self._environ.get(TOKEN_VARIABLE),)
            self._environ[TOKEN_VARIABLE] = token

    def clear(self):
        """Put MLFLOW_TRACKING_TOKEN back as it was before the first apply()."""
        with self._lock:
            if self._saved is None:
                return
            previous = self._saved[0]
            self._saved = None
            if previous is None:
                self._environ.pop(TOKEN_VARIABLE, None)
            else:
                self._environ[TOKEN_VARIABLE] = previous


def from_settings(settings):
    """The MlflowAuth MLFLOW_AUTH asks for, or None (none: requests go as they are)."""
    if settings.mlflow_auth == "google-id-token":
        return MlflowAuth(IdTokenProvider(settings.mlflow_audience))
    return None
