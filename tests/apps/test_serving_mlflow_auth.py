"""MLFLOW_AUTH=google-id-token: the serving API calling an MLflow that sits behind Cloud Run's IAM check.

The app runs as the image runs it (`python -m mlops_serving`, configured by environment) against the real
MLflow server, through a reverse proxy that refuses every request without `Authorization: Bearer <a token
the metadata server issued for the proxy's URL, not expired>` (tests/standins/iam_proxy.py); the tokens
come from a stand-in for the GCE metadata server (tests/standins/gce_metadata.py), which google-auth finds
through GCE_METADATA_HOST / GCE_METADATA_IP. The token refresh logic is also tested alone, with a fake clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mlops_serving import ConfigError, Settings
from mlops_serving.auth import REFRESH_MARGIN, TOKEN_VARIABLE, IdTokenProvider, MlflowAuth, MlflowAuthError, token_expiry
from mlops_serving.model import refusal_hint
from tests.apps.conftest import ROOT, instance, wait_http, wait_until
from tests.standins import services
from tests.standins.gce_metadata import make_jwt
from tests.standins.iam_proxy import BearerProxy

pytestmark = pytest.mark.xdist_group("apps")

SERVING = ROOT / "roles" / "serving" / "files"
BASE_ENV = {"MLFLOW_TRACKING_URI": "https://mlflow-abc123-uc.a.run.app", "MODEL_NAME": "churn",
            "BIGQUERY_PROJECT": "p"}


# -- settings --------------------------------------------------------------------------------------------
def test_mlflow_auth_defaults_to_none():
    settings = Settings.from_env(BASE_ENV)
    assert settings.mlflow_auth == "none" and settings.mlflow_auth_audience is None


@pytest.mark.parametrize("uri, audience", [
    ("https://mlflow-abc123-uc.a.run.app", "https://mlflow-abc123-uc.a.run.app"),
    ("https://mlflow-abc123-uc.a.run.app/", "https://mlflow-abc123-uc.a.run.app"),
    ("https://mlflow-abc123-uc.a.run.app:443/some/prefix?x=1", "https://mlflow-abc123-uc.a.run.app"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("http://user:secret@mlflow.internal:80/", "http://mlflow.internal"),
    ("https://[::1]:8443/mlflow", "https://[::1]:8443"),
])
def test_the_audience_defaults_to_the_tracking_uris_origin(uri, audience):
    settings = Settings.from_env(dict(BASE_ENV, MLFLOW_TRACKING_URI=uri, MLFLOW_AUTH="google-id-token"))
    assert settings.mlflow_audience == audience


def test_an_explicit_audience_is_used_as_given():
    settings = Settings.from_env(dict(BASE_ENV, MLFLOW_AUTH="google-id-token", MLFLOW_AUTH_AUDIENCE="mlflow-custom"))
    assert (settings.mlflow_auth, settings.mlflow_audience) == ("google-id-token", "mlflow-custom")


@pytest.mark.parametrize("extra, message", [
    ({"MLFLOW_AUTH": "iam"}, "MLFLOW_AUTH must be one of none, google-id-token, got 'iam'"),
    ({"MLFLOW_AUTH": "Google-ID-Token"}, "MLFLOW_AUTH must be one of none, google-id-token, got 'Google-ID-Token'"),
    ({"MLFLOW_AUTH_AUDIENCE": "https://mlflow-abc123-uc.a.run.app"}, "MLFLOW_AUTH_AUDIENCE is set but MLFLOW_AUTH is none"),
    ({"MLFLOW_AUTH": "google-id-token", "MLFLOW_TRACKING_URI": "databricks"},
     "MLFLOW_TRACKING_URI must be an http(s) URL with a host for MLFLOW_AUTH=google-id-token"),
    ({"MLFLOW_AUTH": "google-id-token", "MLFLOW_TRACKING_URI": "http://mlflow:port"}, "got 'http://mlflow:port'"),
    ({"MLFLOW_AUTH": "google-id-token", "MLFLOW_TRACKING_USERNAME": "u"},
     "set both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    ({"MLFLOW_TRACKING_PASSWORD": "p"}, "set both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
])
def test_bad_mlflow_auth_settings_are_named(extra, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(dict(BASE_ENV, **extra))
    assert message in str(raised.value)


# -- the token provider, with a fake clock --------------------------------------------------------------
class FakeClock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


class FakeFetch:
    """Hands out tok-1, tok-2... valid `lifetime` seconds from the clock's now; or raises when failing."""

    def __init__(self, clock, lifetime=3600.0):
        self.clock = clock
        self.lifetime = lifetime
        self.audiences = []
        self.failing = False

    def __call__(self, audience):
        self.audiences.append(audience)
        if self.failing:
            raise MlflowAuthError("cannot get a Google ID token for MLflow (audience %s): metadata server down" % audience)
        return "tok-%d" % len(self.audiences), self.clock() + self.lifetime


def test_the_token_is_cached_until_less_than_the_margin_is_left():
    clock = FakeClock()
    fetch = FakeFetch(clock)
    provider = IdTokenProvider("https://mlflow.run.app", fetch=fetch, clock=clock)
    assert provider.margin == REFRESH_MARGIN == 300.0
    assert provider.token() == "tok-1"
    clock.now += 3600 - 301  # 301 s left: still good
    assert provider.token() == "tok-1" and provider.fetches == 1
    clock.now += 2           # 299 s left: replaced before it is used again
    assert provider.token() == "tok-2" and provider.fetches == 2
    clock.now += 3300        # exactly the margin left: still good
    assert provider.token() == "tok-2"
    clock.now += 1
    assert provider.token() == "tok-3"
    assert fetch.audiences == ["https://mlflow.run.app"] * 3


def test_a_token_that_comes_already_close_to_expiry_is_fetched_again_each_time():
    clock = FakeClock()
    provider = IdTokenProvider("aud", fetch=FakeFetch(clock, lifetime=120.0), clock=clock)
    assert [provider.token() for _i in range(3)] == ["tok-1", "tok-2", "tok-3"]


def test_a_failed_refresh_uses_the_current_token_while_it_has_a_minute_left(caplog):
    clock = FakeClock()
    fetch = FakeFetch(clock)
    provider = IdTokenProvider("aud", fetch=fetch, clock=clock)
    assert provider.token() == "tok-1"
    fetch.failing = True
    clock.now += 3600 - 200  # due for refresh; the refresh fails
    with caplog.at_level(logging.WARNING, logger="mlops_serving.auth"):
        assert provider.token() == "tok-1"
    assert "metadata server down; the current token (valid 200 s more) is used meanwhile" in caplog.text
    assert "tok-1" not in caplog.text
    clock.now += 150         # 50 s left: no longer worth sending
    with pytest.raises(MlflowAuthError, match="metadata server down"):
        provider.token()
    fetch.failing = False
    assert provider.token() == "tok-4"  # fetches 2 and 3 failed


def test_without_any_token_a_failure_is_raised():
    clock = FakeClock()
    fetch = FakeFetch(clock)
    fetch.failing = True
    with pytest.raises(MlflowAuthError, match=r"cannot get a Google ID token for MLflow \(audience aud\)"):
        IdTokenProvider("aud", fetch=fetch, clock=clock).token()


def test_concurrent_callers_share_one_fetch():
    clock = FakeClock()
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow_fetch(audience):
        calls.append(audience)
        started.set()
        release.wait(10)
        return "tok-shared", clock() + 3600

    provider = IdTokenProvider("aud", fetch=slow_fetch, clock=clock)
    results = []
    threads = [threading.Thread(target=lambda: results.append(provider.token())) for _i in range(8)]
    for thread in threads:
        thread.start()
    assert started.wait(10)
    time.sleep(0.2)  # the other callers are now waiting on the fetch in progress
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == ["tok-shared"] * 8 and len(calls) == 1


def test_token_expiry_reads_exp_and_never_echoes_the_token():
    assert token_expiry(make_jwt({"aud": "a", "exp": 1_900_000_000})) == 1_900_000_000.0
    for bad in ("secret-opaque-token", make_jwt({"aud": "a"}), "a.b.c"):
        with pytest.raises(MlflowAuthError) as raised:
            token_expiry(bad)
        assert str(raised.value) == "the ID token received is not a JWT with an expiry (exp)"
        assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_mlflow_auth_sets_the_tracking_token_and_restores_it():
    clock = FakeClock()
    fetch = FakeFetch(clock, lifetime=100.0)  # every apply() fetches
    environ = {"OTHER": "x"}
    auth = MlflowAuth(IdTokenProvider("aud", fetch=fetch, clock=clock), environ=environ)
    assert auth.audience == "aud"
    auth.apply()
    assert environ[TOKEN_VARIABLE] == "tok-1"
    auth.apply()
    assert environ[TOKEN_VARIABLE] == "tok-2"
    auth.clear()
    assert environ == {"OTHER": "x"}
    environ[TOKEN_VARIABLE] = "from-the-environment"
    auth.apply()
    assert environ[TOKEN_VARIABLE] == "tok-3"
    auth.clear()
    assert environ[TOKEN_VARIABLE] == "from-the-environment"


def test_refusals_are_explained():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, PERMISSION_DENIED, UNAUTHENTICATED

    auth = MlflowAuth(IdTokenProvider("https://mlflow.run.app"), environ={})
    unauthenticated = MlflowException("failed with error code 401", error_code=UNAUTHENTICATED)
    denied = MlflowException("failed with error code 403", error_code=PERMISSION_DENIED)
    assert "set MLFLOW_AUTH=google-id-token" in refusal_hint(unauthenticated, None)
    assert "HTTP 403" in refusal_hint(denied, None) and "roles/run.invoker" in refusal_hint(denied, None)
    assert "its audience, https://mlflow.run.app, must be" in refusal_hint(unauthenticated, auth)
    assert "roles/run.invoker" in refusal_hint(denied, auth)
    response = requests.Response()
    response.status_code = 403
    assert "roles/run.invoker" in refusal_hint(requests.HTTPError("403", response=response), auth)
    assert refusal_hint(MlflowException("boom", error_code=INTERNAL_ERROR), None) == ""
    assert refusal_hint(ValueError("no status"), auth) == ""


# -- the app as the image runs it, behind the IAM proxy -------------------------------------------------------
@dataclass
class ServingProcess:
    url: str
    log: Path
    process: subprocess.Popen

    def lines(self):
        return [json.loads(line) for line in self.log.read_text(errors="replace").splitlines() if line.startswith("{")]

    def messages(self, severity=None):
        return [line["message"] for line in self.lines() if severity in (None, line["severity"])]

    def load_failures(self):
        return [m for m in self.messages("WARNING") if m.startswith("cannot load ")]

    def get(self, path):
        return requests.get(self.url + path, timeout=30)


@contextlib.contextmanager
def serving_process(tmp_path, tracking_uri, model_name, table_path, bigquery_endpoint, **extra):
    """`python -m mlops_serving` with a clean environment (no MLFLOW_*, GCE_*, GOOGLE_* from the test's)."""
    project, dataset, table = table_path.split(".")
    port = services.free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLFLOW_", "MODEL_", "LOG_", "GCE_", "GOOGLE_"))}
    env.update({"PYTHONPATH": str(SERVING), "PORT": str(port), "HOST": "127.0.0.1", "MLFLOW_TRACKING_URI": tracking_uri,
                "MODEL_NAME": model_name, "MODEL_POLL_INTERVAL": "0.5", "BIGQUERY_PROJECT": project,
                "BIGQUERY_DATASET": dataset, "BIGQUERY_TABLE": table, "BIGQUERY_API_ENDPOINT": bigquery_endpoint,
                "LOG_FLUSH_INTERVAL": "0.2", "HOME": str(tmp_path)})
    env.update({key: str(value) for key, value in extra.items()})
    log_path = tmp_path / ("serving-%d.log" % port)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "mlops_serving"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    app = ServingProcess(url="http://127.0.0.1:%d" % port, log=log_path, process=process)
    try:
        wait_http(app.url + "/health", process, timeout=120, log=log_path)
        yield app
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def iam_proxy(mlflow_server, metadata):
    proxy = BearerProxy(mlflow_server.url, verify=metadata.verify)
    yield proxy
    proxy.close()


def test_the_model_loads_through_the_iam_proxy_with_fresh_id_tokens(
        iam_proxy, metadata, registered_model, predictions_table, bigquery_emulator, tmp_path):
    # Each token is due for refresh 6 s after it is issued: the app's real 5-minute margin is exercised.
    metadata.lifetime = REFRESH_MARGIN + 6
    metadata.failing = (404, "service account default not found")  # no token at first
    with serving_process(tmp_path, iam_proxy.url, registered_model.name, predictions_table, bigquery_emulator,
                         MLFLOW_AUTH="google-id-token", **metadata.env()) as app:
        # 1. No token to be had: a clear log line, not ready, and nothing was sent to MLflow.
        wait_until(app.load_failures, timeout=60, message="a warning about the token")
        warning = app.load_failures()[0]
        assert warning.startswith("cannot load %s@champion: MlflowAuthError: cannot get a Google ID token for MLflow "
                                  "(audience %s): " % (registered_model.name, iam_proxy.url)), warning
        assert "404" in warning and "service account default not found" in warning
        ready = app.get("/ready")
        assert ready.status_code == 503 and ready.json()["detail"]["error"].startswith("MlflowAuthError: cannot get")
        assert app.get("/health").status_code == 200
        assert iam_proxy.snapshot() == []

        # 2. The metadata server answers: the model loads through the proxy, every request with a valid token.
        metadata.failing = None
        wait_http(app.url + "/ready", app.process, timeout=120, log=app.log)
        assert app.get("/ready").json()["model_version"] == registered_model.version
        response = requests.post(app.url + "/predict", json={"features": instance()}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == registered_model.version

        # 3. A token close to expiry is replaced before the next MLflow call.
        wait_until(lambda: len(metadata.tokens()) >= 2, timeout=60, message="a second token")
        second = metadata.tokens()[1]
        wait_until(lambda: any(s.token == second.token for s in iam_proxy.snapshot()), timeout=30,
                   message="a request with the second token")

        # 4. The metadata server fails again: the current token (still 5 minutes long) carries on, the model
        # keeps serving and the log says so.
        metadata.failing = (404, "service account default not found")
        wait_until(lambda: any("is used meanwhile" in m for m in app.messages("WARNING")), timeout=60,
                   message="the failed refresh in the log")
        failed_at = time.time()
        wait_until(lambda: any(s.at > failed_at for s in iam_proxy.snapshot()), timeout=30,
                   message="a request after the failed refresh")
        assert app.get("/ready").status_code == 200
        assert requests.post(app.url + "/predict", json={"features": instance()}, timeout=30).status_code == 200

    seen = iam_proxy.snapshot()
    tokens = metadata.tokens()
    assert seen and all(s.status == 200 for s in seen), [s for s in seen if s.status != 200][:3]
    assert any("/mlflow-artifacts/artifacts" in s.path for s in seen)  # the model download went through it too
    assert any(s.path.endswith("/registered-models/alias") for s in seen)
    for request in seen:  # never a token with less than the margin left (a few seconds for a long download)
        issued = metadata.find(request.token)
        assert issued.expiry - request.at > REFRESH_MARGIN - 5, (request, issued)
    assert sum(s.token == tokens[0].token for s in seen) >= 3  # cached, not fetched for every request
    assert len(tokens) < len(seen) / 2
    identity = metadata.identity_requests()
    assert identity and all(r.flavor == "Google" for r in identity)
    assert {(r.query["audience"], r.query["format"]) for r in identity} == {(iam_proxy.url, "full")}
    assert {t.audience for t in tokens} == {iam_proxy.url}

    text = app.log.read_text()
    assert all(t.token not in text and t.token.split(".")[2] not in text for t in tokens)  # never logged
    messages = app.messages()
    assert "requests to MLflow carry Google ID tokens for audience %s" % iam_proxy.url in messages
    assert sum(m.startswith("new ID token for MLflow (audience %s)" % iam_proxy.url) for m in messages) == len(tokens)
    assert any(m.startswith("serving %s version %s" % (registered_model.name, registered_model.version))
               for m in messages)


@pytest.mark.parametrize("auth, hint", [
    ({}, "MLflow refused the request with HTTP 401: if it runs on Cloud Run with IAM authentication, set "
         "MLFLOW_AUTH=google-id-token"),
    ({"MLFLOW_AUTH": "google-id-token", "MLFLOW_AUTH_AUDIENCE": "https://mlflow-other-uc.a.run.app"},
     "MLflow refused the ID token with HTTP 401: its audience, https://mlflow-other-uc.a.run.app, must be"),
], ids=["without-auth", "wrong-audience"])
def test_a_refused_request_leaves_the_app_not_ready_with_a_clear_log(
        auth, hint, iam_proxy, metadata, registered_model, predictions_table, bigquery_emulator, tmp_path):
    with serving_process(tmp_path, iam_proxy.url, registered_model.name, predictions_table, bigquery_emulator,
                         **dict(auth, **metadata.env())) as app:
        wait_until(app.load_failures, timeout=60, message="the refusal in the log")
        warning = app.load_failures()[0]
        assert warning.startswith("cannot load %s@champion: MlflowException: " % registered_model.name), warning
        assert "failed with error code 401" in warning and hint in warning
        ready = app.get("/ready")
        assert ready.status_code == 503 and hint in ready.json()["detail"]["error"]
        assert app.get("/health").status_code == 200
        assert requests.post(app.url + "/predict", json={"features": instance()}, timeout=30).status_code == 503
    seen = iam_proxy.snapshot()
    assert seen and all(s.status == 401 for s in seen)
    if auth:
        assert {r.query["audience"] for r in metadata.identity_requests()} == {"https://mlflow-other-uc.a.run.app"}
        assert all(s.token is not None for s in seen)
    else:
        assert all(s.token is None for s in seen)
        assert metadata.identity_requests() == []
