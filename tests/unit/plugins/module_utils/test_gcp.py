"""Helpers of module_utils/gcp.py: backoff, Google error parsing, endpoints and label rules."""

from __future__ import annotations

import json
import random

import pytest
import requests

from ansible_collections.deployml.mlops.plugins.module_utils import gcp
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, backoff_delays, endpoint_for, label_errors


# --- backoff_delays ---------------------------------------------------------------------------------

def test_backoff_without_jitter_doubles_up_to_the_cap():
    assert list(backoff_delays(10, rng=lambda: 1.0)) == [0.5, 1.0, 2.0, 4.0]
    delays = list(backoff_delays(100, rng=lambda: 1.0))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0] + [16.0] * 5
    assert max(delays) == gcp.MAX_BACKOFF


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("deadline", [0.1, 1, 5, 60, 300])
def test_backoff_sum_stays_within_the_deadline(seed, deadline):
    delays = list(backoff_delays(deadline, rng=random.Random(seed).random))
    assert sum(delays) <= deadline
    if deadline >= 0.5:  # the first delay is at most 0.5 s
        assert delays


def test_backoff_is_full_jitter_within_each_cap():
    fractions = [0.9, 0.1, 0.5, 0.0, 0.75, 0.3, 0.99, 0.2, 0.6, 0.4]
    values = iter(fractions)
    delays = list(backoff_delays(20, base=1.0, cap=8.0, rng=lambda: next(values)))
    caps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    # 0.9 + 0.2 + 2 + 0 + 6 + 2.4 + 7.92 = 19.42; the next one (0.2 * 8) would pass 20 s.
    assert delays == [f * c for f, c in zip(fractions, caps)]
    assert all(0 <= d <= c for d, c in zip(delays, caps))


def test_backoff_random_delays_stay_under_their_cap():
    rng = random.Random(1234)
    for _attempt in range(50):
        delays = list(backoff_delays(300, rng=rng.random))
        for attempt, delay in enumerate(delays):
            assert 0 <= delay <= min(gcp.MAX_BACKOFF, 0.5 * 2 ** attempt)


def test_backoff_zero_deadline_yields_nothing():
    assert not list(backoff_delays(0, rng=lambda: 1.0))


# --- GcpApiError.from_response ----------------------------------------------------------------------

def make_response(status, body, reason="Some Reason", method="GET"):
    response = requests.Response()
    response.status_code = status
    response.reason = reason
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()  # pylint: disable=protected-access
    response.request = requests.Request(method, "https://bigquery.googleapis.com/x").prepare()
    return response


def test_google_error_shape():
    body = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "Access Denied: Dataset p:ds",
                      "errors": [{"reason": "accessDenied", "message": "Access Denied", "domain": "global"}]}}
    error = GcpApiError.from_response(make_response(403, body, reason="Forbidden", method="PATCH"),
                                      resource="projects/p/datasets/ds")
    assert error.status == 403
    assert error.reason == "PERMISSION_DENIED/accessDenied"
    assert error.message == "Access Denied: Dataset p:ds"
    assert error.method == "PATCH"
    text = str(error)
    assert text == "projects/p/datasets/ds: HTTP 403 PERMISSION_DENIED/accessDenied: Access Denied: Dataset p:ds"
    for part in ("projects/p/datasets/ds", "HTTP 403", "PERMISSION_DENIED", "Access Denied: Dataset p:ds"):
        assert part in text


def test_google_error_with_only_legacy_reason():
    body = {"error": {"code": 409, "message": "Already Exists: Dataset p:ds", "errors": [{"reason": "duplicate"}]}}
    error = GcpApiError.from_response(make_response(409, body, reason="Conflict"))
    assert error.reason == "duplicate"
    assert str(error) == "request: HTTP 409 duplicate: Already Exists: Dataset p:ds"


def test_google_error_status_equal_to_reason_is_not_repeated():
    body = {"error": {"code": 404, "status": "notFound", "message": "gone", "errors": [{"reason": "notFound"}]}}
    assert GcpApiError.from_response(make_response(404, body)).reason == "notFound"


def test_non_json_body_uses_text_and_http_reason():
    html = b"<html><body>502 Bad Gateway from the load balancer</body></html>\n"
    error = GcpApiError.from_response(make_response(502, html, reason="Bad Gateway"), resource="bucket b")
    assert error.status == 502 and error.reason == "Bad Gateway"
    assert error.message == html.decode().strip()
    assert str(error).startswith("bucket b: HTTP 502 Bad Gateway: <html>")


def test_long_non_json_body_is_truncated():
    error = GcpApiError.from_response(make_response(500, b"x" * 5000, reason="Internal Server Error"))
    assert error.message == "x" * 500


def test_empty_body_uses_http_reason():
    error = GcpApiError.from_response(make_response(503, b"", reason="Service Unavailable"))
    assert error.message == "Service Unavailable" and error.reason == "Service Unavailable"
    assert "HTTP 503" in str(error)


def test_oauth_style_error():
    body = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    error = GcpApiError.from_response(make_response(400, body, reason="Bad Request"), resource="token")
    assert error.status == 400 and error.reason == "Bad Request"
    assert error.message == "invalid_grant: Token has been expired or revoked."
    assert str(error) == "token: HTTP 400 Bad Request: invalid_grant: Token has been expired or revoked."


def test_oauth_style_error_without_description():
    error = GcpApiError.from_response(make_response(401, {"error": "invalid_client"}, reason="Unauthorized"))
    assert error.message == "invalid_client"


@pytest.mark.parametrize("body", [[{"error": {"message": "batch"}}], "just a string", 42, {"other": 1}])
def test_json_that_is_not_the_error_shape(body):
    error = GcpApiError.from_response(make_response(500, body, reason="Internal Server Error"))
    assert error.status == 500 and error.reason == "Internal Server Error"
    assert error.message == json.dumps(body)


def test_str_without_status():
    error = GcpApiError(None, "ConnectionError", "refused", resource="projects/p/datasets/ds")
    assert str(error) == "projects/p/datasets/ds: no HTTP response ConnectionError: refused"
    assert str(GcpApiError(None, None, "boom")) == "request: no HTTP response: boom"


# --- endpoint_for -----------------------------------------------------------------------------------

def test_public_endpoint_by_default():
    assert endpoint_for("bigquery", None, environ={}) == "https://bigquery.googleapis.com"
    assert endpoint_for("storage", {}, environ={}) == "https://storage.googleapis.com"


def test_option_wins_over_everything():
    environ = {"DEPLOYML_BIGQUERY_ENDPOINT": "http://env:1", "BIGQUERY_EMULATOR_HOST": "emu:2"}
    assert endpoint_for("bigquery", {"bigquery": "http://opt:3/"}, environ=environ) == "http://opt:3"


def test_deployml_variable_wins_over_emulator_variable():
    environ = {"DEPLOYML_STORAGE_ENDPOINT": "http://env:1/", "STORAGE_EMULATOR_HOST": "emu:2"}
    assert endpoint_for("storage", {"bigquery": "http://other"}, environ=environ) == "http://env:1"


def test_emulator_variable_gets_a_scheme():
    assert endpoint_for("bigquery", None, environ={"BIGQUERY_EMULATOR_HOST": "127.0.0.1:9050"}) == "http://127.0.0.1:9050"
    assert endpoint_for("storage", None, environ={"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023"}) == "http://127.0.0.1:9023"
    assert endpoint_for("storage", None, environ={"STORAGE_EMULATOR_HOST": "https://gcs.local/"}) == "https://gcs.local"


def test_variables_of_another_api_are_ignored():
    environ = {"STORAGE_EMULATOR_HOST": "emu:2", "DEPLOYML_STORAGE_ENDPOINT": "http://env:1"}
    assert endpoint_for("bigquery", {"storage": "http://opt"}, environ=environ) == "https://bigquery.googleapis.com"


def test_empty_values_fall_through():
    environ = {"DEPLOYML_BIGQUERY_ENDPOINT": "", "BIGQUERY_EMULATOR_HOST": ""}
    assert endpoint_for("bigquery", {"bigquery": ""}, environ=environ) == "https://bigquery.googleapis.com"


def test_process_environment_is_the_default(monkeypatch):
    monkeypatch.delenv("DEPLOYML_BIGQUERY_ENDPOINT", raising=False)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "localhost:9999")
    assert endpoint_for("bigquery") == "http://localhost:9999"


# --- label_errors -----------------------------------------------------------------------------------

def test_valid_labels():
    assert label_errors({"app": "mlops", "team-1": "ml_ops", "empty": "", "k" * 63: "v" * 63}) == []
    assert label_errors(None) == []
    assert label_errors({}) == []


@pytest.mark.parametrize("key", ["App", "1app", "_app", "", "k" * 64, "a.b", "a b"])
def test_invalid_label_keys(key):
    errors = label_errors({key: "v"})
    assert len(errors) == 1 and "label key %r" % key in errors[0]


@pytest.mark.parametrize("value", ["Mlops", "v" * 64, "a.b", "x/y"])
def test_invalid_label_values(value):
    errors = label_errors({"app": value})
    assert len(errors) == 1 and "label 'app' has value %r" % value in errors[0]


@pytest.mark.parametrize("value", [1, True, None, 1.5])
def test_unquoted_label_values_ask_for_quotes(value):
    errors = label_errors({"version": value})
    assert len(errors) == 1 and "quote numbers and booleans" in errors[0]


def test_too_many_labels():
    errors = label_errors({"k%d" % n: "v" for n in range(65)})
    assert errors == ["at most 64 labels are allowed, got 65"]
    assert label_errors({"k%d" % n: "v" for n in range(64)}) == []


def test_every_problem_is_reported():
    assert len(label_errors({"Bad": "ok", "ok": "Bad", "worse": 3})) == 3
