"""MlflowClient against a local HTTP server with scripted answers: the authentication headers, retries, and
what a refusal says. Sleeps go to a list, so retries cost no time."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.mlflow import (
    MlflowApiError, MlflowClient, alias_errors, auth_headers, origin, tag_errors, version_by_alias)
from ansible_collections.deployml.mlops.plugins.module_utils.resource import ResourceError


class FakeModule:
    def __init__(self, **params):
        self.params = dict(tracking_uri=None, username=None, password=None, google_id_token=False,
                           id_token_audience=None, id_token=None, timeout=120)
        self.params.update(params)

    def fail_json(self, msg, **kwargs):
        raise AssertionError("unexpected fail_json: %s" % msg)


def make_client(url, **params):
    sleeps, audiences = [], []

    def fetch(audience):
        audiences.append(audience)
        return "id-token-for-" + audience

    client = MlflowClient(FakeModule(tracking_uri=url + "/", **params), sleep=sleeps.append, fetch_token=fetch)
    return client, sleeps, audiences


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def test_basic_credentials_and_id_token_go_in_separate_headers():
    assert auth_headers() == {}
    assert auth_headers("admin", "pw") == {"Authorization": basic("admin", "pw")}
    assert auth_headers(id_token="t") == {"Authorization": "Bearer t"}
    # Cloud Run checks X-Serverless-Authorization when present and passes Authorization on to MLflow.
    assert auth_headers("admin", "pw", "t") == {"Authorization": basic("admin", "pw"),
                                                "X-Serverless-Authorization": "Bearer t"}


def test_the_id_token_is_fetched_once_for_the_servers_origin(server):
    server.answer((200, {"registered_model": {"name": "m"}}), (200, {}))
    client, _sleeps, audiences = make_client(server.url + "/prefix", google_id_token=True, username="u", password="p")
    client.get("/registered-models/get", name="m")
    client.request("POST", "/registered-models/set-tag", body={"name": "m", "key": "k", "value": "v"})
    assert audiences == [server.url]  # the service URL, without the path: what Cloud Run expects
    first = server.requests[0]
    assert first["path"] == "/prefix/api/2.0/mlflow/registered-models/get?name=m"
    assert first["headers"]["x-serverless-authorization"] == "Bearer id-token-for-" + server.url
    assert first["headers"]["authorization"] == basic("u", "p")
    assert server.requests[1]["body"] == {"name": "m", "key": "k", "value": "v"}


def test_origin_keeps_scheme_host_and_port():
    assert origin("https://mlflow-abc-ew.a.run.app/some/path?x=1") == "https://mlflow-abc-ew.a.run.app"
    assert origin("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_429_and_5xx_are_retried_then_the_answer_returned(server):
    server.answer(429, (503, b"busy"), (502, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "x"}),
                  (200, {"ok": True}))
    client, sleeps, _audiences = make_client(server.url)
    assert client.request("POST", "/registered-models/alias", body={}) == {"ok": True}
    assert len(server.requests) == 4 and len(sleeps) == 3


def test_a_connection_error_is_retried_until_the_timeout_then_named(server):
    url = server.url
    server.close()
    client, sleeps, _audiences = make_client(url, timeout=3)
    with pytest.raises(MlflowApiError) as caught:
        client.request("GET", "/registered-models/get", resource="registered model m")
    assert caught.value.status is None and caught.value.reason == "ConnectionError"
    assert "gave up retrying after 3s" in str(caught.value) and sleeps and sum(sleeps) <= 3


def test_only_mlflows_does_not_exist_counts_as_missing(server):
    server.answer((404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered Model with name=m not found"}),
                  (404, b"<html><body><h1>Not Found</h1></body></html>"))
    client, _sleeps, _audiences = make_client(server.url)
    assert client.get("/registered-models/get", name="m") is None
    with pytest.raises(MlflowApiError) as caught:  # a wrong tracking_uri, not a missing model
        client.get("/registered-models/get", name="m")
    assert str(caught.value) == "request: HTTP 404 Not Found: Not Found"


def test_a_missing_alias_is_none_though_mlflow_answers_400(server):
    missing = "Registered model alias champion not found."
    server.answer((400, {"error_code": "INVALID_PARAMETER_VALUE", "message": missing}),
                  (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered Model with name=m not found"}),
                  (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid alias name"}))
    client, _sleeps, _audiences = make_client(server.url)
    assert version_by_alias(client, "m", "champion") is None
    assert version_by_alias(client, "m", "champion") is None
    with pytest.raises(MlflowApiError, match="Invalid alias name"):
        version_by_alias(client, "m", "bad alias")


def test_mlflow_errors_keep_their_code_and_are_not_retried(server):
    server.answer((400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad alias"}))
    client, sleeps, _audiences = make_client(server.url)
    with pytest.raises(MlflowApiError) as caught:
        client.request("POST", "/registered-models/alias", resource="registered model m", body={})
    assert str(caught.value) == "registered model m: HTTP 400 INVALID_PARAMETER_VALUE: bad alias"
    assert caught.value.method == "POST" and sleeps == []


@pytest.mark.parametrize("answer, params, expected", [
    ((401, b"You are not authenticated.", {"WWW-Authenticate": 'Basic realm="mlflow"'}), {},
     "MLflow's basic-auth is on: set username and password"),
    ((401, b"You are not authenticated.", {"WWW-Authenticate": 'Basic realm="mlflow"'}),
     dict(username="alice", password="wrong"), "MLflow refused the password of user alice"),
    ((403, b"Permission denied", {}), dict(username="serving", password="p"),
     "MLflow user serving lacks the permission for this call"),
    ((401, b"401 Unauthorized: no bearer token", {}), {},
     "the IAM check in front of MLflow (Cloud Run) wants a Google ID token: set google_id_token: true"),
    ((403, b"<html><title>403 Forbidden</title>Your client does not have permission</html>", {}),
     dict(id_token="t"), "the IAM check in front of MLflow refused the ID token (audience http://127.0.0.1"),
])
def test_refusals_say_which_gate_refused_and_what_to_set(server, answer, params, expected):
    server.answer(answer)
    client, sleeps, _audiences = make_client(server.url, **params)
    with pytest.raises(MlflowApiError) as caught:
        client.request("GET", "/registered-models/get")
    assert expected in caught.value.message and sleeps == []
    assert "wrong" not in caught.value.message and "Bearer t" not in caught.value.message


def test_a_token_that_cannot_be_had_is_a_clear_refusal(server):
    def fetch(audience):
        raise ResourceError("cannot get a Google ID token for %s" % audience)

    client = MlflowClient(FakeModule(tracking_uri=server.url, google_id_token=True), fetch_token=fetch)
    with pytest.raises(ResourceError, match="cannot get a Google ID token"):
        client.get("/registered-models/get", name="m")
    assert server.requests == []  # nothing is sent without the token


@pytest.mark.parametrize("aliases, message", [
    ({"champion": 3, "challenger": "latest", "canary-1": "12"}, None),
    ({"latest": 1}, "reserved by MLflow"),
    ({"V2": 1}, "reserved by MLflow"),
    ({"with space": 1}, "must be 1 to 255 letters"),
    ({"champion": "three"}, "aliases.champion must be a version number or 'latest'"),
    ({"champion": 0}, "must be a version number"),
    ({"champion": True}, "must be a version number"),
])
def test_alias_options_are_checked_before_any_call(aliases, message):
    errors = alias_errors(aliases)
    assert (errors == []) if message is None else any(message in e for e in errors), errors


def test_tag_values_must_be_text_or_numbers():
    assert tag_errors({"a": "x", "b": 3, "c": 1.5}) == []
    assert "quote booleans" in tag_errors({"a": True})[0]
    assert "to_json" in tag_errors({"a": ["x"]})[0]
    assert "1 to 250 characters" in tag_errors({"k" * 251: "v"})[0]
