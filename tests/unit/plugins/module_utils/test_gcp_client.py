"""GcpClient against a real local HTTP server that answers scripted statuses.

Sleeps go to a recorder, so the retry schedule is observed without waiting.
"""

from __future__ import annotations

import socket

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils import gcp
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpClient


class FakeModule:
    """The parts of GcpModule that GcpClient and _credentials use."""

    def __init__(self, **params):
        self.params = dict(project="p", auth_kind="anonymous", service_account_file=None,
                           service_account_contents=None, access_token=None, scopes=None,
                           api_endpoints=None, timeout=300)
        self.params.update(params)

    def fail_json(self, msg, **kwargs):
        raise AssertionError("unexpected fail_json: %s" % msg)


def make_client(url, timeout=300):
    sleeps = []
    module = FakeModule(api_endpoints={"bigquery": url}, timeout=timeout)
    return GcpClient(module, sleep=sleeps.append), sleeps


def error_body(code, status, message, reason=None):
    error = {"code": code, "status": status, "message": message}
    if reason:
        error["errors"] = [{"reason": reason, "message": message}]
    return {"error": error}


@pytest.fixture
def no_jitter(monkeypatch):
    """The largest delay every time, so the number of retries within a timeout is known."""
    original = gcp.backoff_delays
    monkeypatch.setattr(gcp, "backoff_delays", lambda deadline: original(deadline, rng=lambda: 1.0))


def test_success_returns_json_and_sends_body(server):
    server.answer((200, {"id": "p:ds"}))
    client, sleeps = make_client(server.url)
    result = client.request("POST", "bigquery", "/bigquery/v2/projects/p/datasets", resource="ds",
                            params={"a": "1"}, body={"datasetReference": {"datasetId": "ds"}},
                            headers={"If-Match": "etag1"})
    assert result == {"id": "p:ds"}
    assert len(server.requests) == 1 and sleeps == []
    sent = server.requests[0]
    assert sent["method"] == "POST" and sent["path"] == "/bigquery/v2/projects/p/datasets?a=1"
    assert sent["body"] == {"datasetReference": {"datasetId": "ds"}}
    assert sent["headers"]["if-match"] == "etag1"


def test_empty_success_body_is_an_empty_dict(server):
    server.answer(204)
    client = make_client(server.url)[0]
    assert client.request("DELETE", "bigquery", "/x") == {}


def test_retries_503_then_succeeds(server):
    server.answer((503, error_body(503, "UNAVAILABLE", "backend")), (503, error_body(503, "UNAVAILABLE", "backend")),
                  (200, {"ok": True}))
    client, sleeps = make_client(server.url)
    assert client.request("GET", "bigquery", "/x") == {"ok": True}
    assert len(server.requests) == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= gcp.MAX_BACKOFF for s in sleeps)


@pytest.mark.parametrize("status", sorted(gcp.RETRYABLE_STATUS))
def test_every_retryable_status_is_retried(server, status):
    server.answer(status, (200, {"ok": True}))
    client, sleeps = make_client(server.url)
    assert client.request("GET", "bigquery", "/x") == {"ok": True}
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_429_honours_retry_after(server):
    server.answer((429, error_body(429, "RESOURCE_EXHAUSTED", "slow down"), {"Retry-After": "7"}), (200, {}))
    client, sleeps = make_client(server.url)
    assert client.request("GET", "bigquery", "/x") == {}
    assert len(server.requests) == 2
    assert sleeps == [7.0], "Retry-After is longer than any first backoff delay"


def test_retry_after_is_capped(server):
    server.answer((429, None, {"Retry-After": "3600"}), (200, {}))
    client, sleeps = make_client(server.url)
    client.request("GET", "bigquery", "/x")
    assert sleeps == [gcp.MAX_BACKOFF]


@pytest.mark.parametrize("status", [400, 401, 403, 409, 412])
def test_client_errors_are_not_retried(server, status):
    server.answer((status, error_body(status, "PERMISSION_DENIED", "no access", reason="accessDenied")))
    client, sleeps = make_client(server.url)
    with pytest.raises(GcpApiError) as raised:
        client.request("GET", "bigquery", "/x", resource="projects/p/datasets/ds")
    assert len(server.requests) == 1 and sleeps == []
    error = raised.value
    assert error.status == status
    assert error.reason == "PERMISSION_DENIED/accessDenied"
    assert error.method == "GET"
    assert str(error) == "projects/p/datasets/ds: HTTP %d PERMISSION_DENIED/accessDenied: no access" % status


def test_404_with_not_found_ok_is_none(server):
    server.answer((404, error_body(404, "NOT_FOUND", "Not found: Dataset p:ds")))
    client, sleeps = make_client(server.url)
    assert client.request("GET", "bigquery", "/x", not_found_ok=True) is None
    assert len(server.requests) == 1 and sleeps == []


def test_get_allows_404(server):
    server.answer(404)
    client = make_client(server.url)[0]
    assert client.get("bigquery", "/x") is None


def test_404_without_not_found_ok_raises(server):
    server.answer((404, error_body(404, "NOT_FOUND", "Not found: Dataset p:ds")))
    client, sleeps = make_client(server.url)
    with pytest.raises(GcpApiError) as raised:
        client.request("DELETE", "bigquery", "/x", resource="ds")
    assert raised.value.status == 404 and raised.value.method == "DELETE"
    assert len(server.requests) == 1 and sleeps == []


def test_retries_stop_within_the_timeout(server, no_jitter):
    server.answer(*[503] * 10)
    client, sleeps = make_client(server.url, timeout=5)
    with pytest.raises(GcpApiError) as raised:
        client.request("GET", "bigquery", "/x", resource="ds")
    # Delays 0.5, 1, 2 fit in 5 s; the next one (4) would not.
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(server.requests) == 4
    assert raised.value.status == 503
    assert "gave up retrying after 5s" in str(raised.value)


def test_timeout_zero_means_a_single_attempt(server):
    server.answer(503, 200)
    client, sleeps = make_client(server.url, timeout=0)
    with pytest.raises(GcpApiError):
        client.request("GET", "bigquery", "/x")
    assert len(server.requests) == 1 and sleeps == []


def _closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return "http://127.0.0.1:%d" % port


def test_connection_refused_is_retried_then_fails_without_status(no_jitter):
    client, sleeps = make_client(_closed_port_url(), timeout=5)
    with pytest.raises(GcpApiError) as raised:
        client.request("GET", "bigquery", "/x", resource="projects/p/datasets/ds")
    assert sleeps == [0.5, 1.0, 2.0]
    error = raised.value
    assert error.status is None
    assert error.reason == "ConnectionError"
    assert str(error).startswith("projects/p/datasets/ds: no HTTP response ConnectionError: ")
    assert "gave up retrying after 5s" in str(error)


def test_connection_refused_then_server_up(server, monkeypatch):
    """A connection error is retried: the next attempt reaches the server."""
    client, sleeps = make_client(server.url)
    real_session = client.session
    calls = []

    def flaky(method, url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            return real_session.__class__.request(real_session, method, _closed_port_url() + "/x", **kwargs)
        return real_session.__class__.request(real_session, method, url, **kwargs)

    monkeypatch.setattr(real_session, "request", flaky)
    server.answer((200, {"ok": 1}))
    assert client.request("GET", "bigquery", "/x") == {"ok": 1}
    assert len(calls) == 2 and len(sleeps) == 1 and len(server.requests) == 1


def test_wait_polls_until_done():
    sleeps = []
    client = GcpClient(FakeModule(timeout=60), session=object(), sleep=sleeps.append)
    states = iter([{"done": False}, {"done": False}, {"done": True, "n": 3}])
    assert client.wait(lambda: next(states), lambda op: op["done"], interval=1.0, max_interval=1.2) == {"done": True, "n": 3}
    assert sleeps == [1.0, 1.2]


def test_wait_times_out_with_a_clear_message():
    client = GcpClient(FakeModule(timeout=0), session=object(), sleep=lambda s: None)
    with pytest.raises(GcpApiError) as raised:
        client.wait(lambda: {"done": False}, lambda op: op["done"], resource="op/1")
    assert raised.value.status is None and raised.value.reason == "TIMEOUT"
    assert "still running after 0s" in str(raised.value) and str(raised.value).startswith("op/1: ")
