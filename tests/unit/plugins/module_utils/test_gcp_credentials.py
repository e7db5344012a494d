"""Credentials per auth_kind, through a real GcpModule: clear failures that never echo a key."""

from __future__ import annotations

import contextlib
import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule

SECRET = "SECRET-KEY-MATERIAL-4f2a9c"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("GCP_AUTH_KIND", "GCP_SERVICE_ACCOUNT_FILE", "GCP_SERVICE_ACCOUNT_CONTENTS", "GCP_ACCESS_TOKEN",
                 "GCP_SCOPES", "GOOGLE_APPLICATION_CREDENTIALS", "DEPLOYML_BIGQUERY_ENDPOINT", "BIGQUERY_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)


@contextlib.contextmanager
def module_with(**args):
    """A GcpModule with these arguments; it exits (exit_json/fail_json) only within the context."""
    with patch_module_args(dict(dict(project="p", name="x"), **args)):
        yield GcpModule(argument_spec=dict(name=dict(type="str")))


def session_failure(capsys, **args):
    """Build the session; return (exit code, full stdout, JSON result) of the failing module."""
    with module_with(**args) as module:
        with pytest.raises(SystemExit) as exited:
            module.client.session  # pylint: disable=pointless-statement
    out = capsys.readouterr().out
    return exited.value.code, out, json.loads(out.strip().splitlines()[-1])


def test_accesstoken_without_token_fails_clearly(capsys):
    rc, _out, result = session_failure(capsys, auth_kind="accesstoken")
    assert rc == 1 and result["failed"] is True
    assert result["msg"] == "auth_kind=accesstoken needs access_token (or GCP_ACCESS_TOKEN)"


def test_accesstoken_is_sent_as_bearer(server):
    server.answer((200, {"ok": True}))
    with module_with(auth_kind="accesstoken", access_token="ya29.token", api_endpoints={"bigquery": server.url}) as module:
        assert module.client.request("GET", "bigquery", "/x") == {"ok": True}
        assert server.requests[0]["headers"]["authorization"] == "Bearer ya29.token"


def test_accesstoken_from_environment(server, monkeypatch):
    monkeypatch.setenv("GCP_AUTH_KIND", "accesstoken")
    monkeypatch.setenv("GCP_ACCESS_TOKEN", "env-token")
    server.answer((200, {}))
    with module_with(api_endpoints={"bigquery": server.url}) as module:
        module.client.request("GET", "bigquery", "/x")
        assert server.requests[0]["headers"]["authorization"] == "Bearer env-token"


def test_rejected_accesstoken_is_a_clear_api_error(server):
    """A 401 with a token that cannot be refreshed: GcpApiError, not a google-auth traceback."""
    server.answer((401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "expired"}}))
    with module_with(auth_kind="accesstoken", access_token="ya29.old", api_endpoints={"bigquery": server.url}) as module:
        with pytest.raises(GcpApiError) as raised:
            module.client.request("GET", "bigquery", "/x", resource="projects/p/datasets/ds")
        assert raised.value.reason == "RefreshError"
        assert str(raised.value).startswith("projects/p/datasets/ds: no HTTP response RefreshError: "
                                            "cannot obtain an access token for auth_kind=accesstoken")
        assert len(server.requests) == 1


def test_anonymous_sends_no_credentials_and_reports_401(server):
    server.answer((401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "login required"}}))
    with module_with(auth_kind="anonymous", api_endpoints={"bigquery": server.url}) as module:
        with pytest.raises(GcpApiError) as raised:
            module.client.request("GET", "bigquery", "/x")
        assert raised.value.status == 401 and raised.value.reason == "UNAUTHENTICATED"
        assert "authorization" not in server.requests[0]["headers"]
        assert len(server.requests) == 1


def test_serviceaccount_without_key_fails_clearly(capsys):
    rc, _out, result = session_failure(capsys, auth_kind="serviceaccount")
    assert rc == 1
    assert "auth_kind=serviceaccount needs service_account_file or service_account_contents" in result["msg"]


@pytest.mark.parametrize("content", [
    "not json at all: %s" % SECRET,
    json.dumps({"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token", "private_key_id": "k1",
                "private_key": "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n" % SECRET}),
    json.dumps({"type": "service_account", "private_key": SECRET}),
    json.dumps([SECRET]),
], ids=["not-json", "bad-private-key", "missing-fields", "json-list"])
def test_serviceaccount_bad_key_file_is_not_echoed(capsys, tmp_path, content):
    key = tmp_path / "key.json"
    key.write_text(content)
    rc, out, result = session_failure(capsys, auth_kind="serviceaccount", service_account_file=str(key))
    assert rc == 1
    assert result["msg"].startswith("cannot read the service account key (")
    assert "JSON key of type service_account" in result["msg"]
    assert SECRET not in out


def test_serviceaccount_missing_file(capsys, tmp_path):
    rc, _out, result = session_failure(capsys, auth_kind="serviceaccount",
                                       service_account_file=str(tmp_path / "missing.json"))
    assert rc == 1 and "cannot read the service account key (FileNotFoundError)" in result["msg"]


def test_serviceaccount_bad_contents_are_not_echoed(capsys):
    bad = {"type": "service_account", "private_key": SECRET}
    rc, out, result = session_failure(capsys, auth_kind="serviceaccount", service_account_contents=bad)
    assert rc == 1 and result["msg"].startswith("cannot read the service account key (")
    assert SECRET not in out


def test_serviceaccount_valid_key_builds_scoped_credentials(tmp_path):
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
                               "token_uri": "https://oauth2.googleapis.com/token", "private_key_id": "k1",
                               "private_key": pem, "project_id": "p"}))
    with module_with(auth_kind="serviceaccount", service_account_file=str(key),
                     scopes=["https://www.googleapis.com/auth/bigquery"]) as module:
        credentials = module.client.session.credentials
        assert credentials.service_account_email == "sa@p.iam.gserviceaccount.com"
        assert credentials.scopes == ["https://www.googleapis.com/auth/bigquery"]
