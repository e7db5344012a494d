"""service_account against the fake IAM API."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import PROJECT


@pytest.fixture
def account(fake_gcp, gcp_module, unique):
    class Account:
        account_id = "sa-" + unique
        email = "sa-%s@%s.iam.gserviceaccount.com" % (unique, PROJECT)
        name = "projects/%s/serviceAccounts/%s" % (PROJECT, email)
        path = "/v1/" + name

        def run(self, check=False, **options):
            args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=fake_gcp.endpoints, timeout=20,
                        account_id=self.account_id)
            args.update(options)
            return gcp_module("service_account", args, check=check)

        def read(self):
            """The account straight from the API, or None."""
            response = requests.get("%s/iam/v1/%s" % (fake_gcp.url, self.name), timeout=10)
            if response.status_code == 404:
                return None
            assert response.status_code == 200, response.text
            return response.json()

    return Account()


def writes(fake):
    return [(w.method, w.path, w.body) for w in fake.writes()]


def test_lifecycle(account, fake_gcp):
    options = dict(display_name="MLflow server", description="Runs MLflow on Cloud Run")
    preview = account.run(check=True, **options)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert preview["diff"] == {"before": {}, "after": {"displayName": "MLflow server",
                                                       "description": "Runs MLflow on Cloud Run"}}
    assert fake_gcp.writes() == [] and account.read() is None

    fake_gcp.clear()
    created = account.run(**options)
    assert created["rc"] == 0 and created["changed"] is True, created
    assert writes(fake_gcp) == [("POST", "/v1/projects/%s/serviceAccounts" % PROJECT, {
        "accountId": account.account_id,
        "serviceAccount": {"displayName": "MLflow server", "description": "Runs MLflow on Cloud Run"}})]
    returned = created["service_account"]
    assert returned["email"] == account.email and returned["name"] == account.name and returned["uniqueId"]
    actual = account.read()
    assert actual["displayName"] == "MLflow server" and actual["description"] == "Runs MLflow on Cloud Run"
    assert not actual.get("disabled")

    fake_gcp.clear()
    again = account.run(**options)
    assert again["rc"] == 0 and again["changed"] is False, again
    assert fake_gcp.writes() == [] and len(fake_gcp.requests) == 1
    assert again["service_account"]["uniqueId"] == returned["uniqueId"]

    # Update one field: a PATCH naming only that field in its mask.
    fake_gcp.clear()
    preview = account.run(check=True, display_name="MLflow tracking server")
    assert preview["changed"] is True and preview["changed_fields"] == ["displayName"], preview
    assert preview["diff"] == {"before": {"displayName": "MLflow server"},
                               "after": {"displayName": "MLflow tracking server"}}
    assert fake_gcp.writes() == []
    updated = account.run(display_name="MLflow tracking server")
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert writes(fake_gcp) == [("PATCH", account.path, {"serviceAccount": {"displayName": "MLflow tracking server"},
                                                         "updateMask": "displayName"})]
    assert updated["service_account"]["description"] == "Runs MLflow on Cloud Run", "the whole account is returned"
    assert account.read()["displayName"] == "MLflow tracking server"

    # Clear the description; leave the display name alone by not setting it.
    fake_gcp.clear()
    cleared = account.run(description="")
    assert cleared["changed_fields"] == ["description"], cleared
    assert writes(fake_gcp)[0][2] == {"serviceAccount": {"description": ""}, "updateMask": "description"}
    assert not account.read().get("description") and account.read()["displayName"] == "MLflow tracking server"

    # Disable, then enable.
    fake_gcp.clear()
    disabled = account.run(disabled=True)
    assert disabled["changed"] is True and disabled["diff"] == {"before": {"disabled": False}, "after": {"disabled": True}}
    assert writes(fake_gcp) == [("POST", account.path + ":disable", {})]
    assert account.read()["disabled"] is True and disabled["service_account"]["disabled"] is True
    fake_gcp.clear()
    assert account.run(disabled=True)["changed"] is False and fake_gcp.writes() == []
    enabled = account.run(disabled=False)
    assert enabled["changed"] is True and writes(fake_gcp) == [("POST", account.path + ":enable", {})]
    assert not account.read().get("disabled")

    # Delete.
    fake_gcp.clear()
    preview = account.run(check=True, state="absent")
    assert preview["changed"] is True and fake_gcp.writes() == [] and account.read() is not None
    deleted = account.run(state="absent")
    assert deleted["rc"] == 0 and deleted["changed"] is True and deleted["service_account"] == {}, deleted
    assert writes(fake_gcp) == [("DELETE", account.path, None)]
    assert account.read() is None
    fake_gcp.clear()
    gone = account.run(state="absent")
    assert gone["changed"] is False and fake_gcp.writes() == [], gone


def test_create_disabled(account, fake_gcp):
    result = account.run(disabled=True, display_name="Batch")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert [w[:2] for w in writes(fake_gcp)] == [("POST", "/v1/projects/%s/serviceAccounts" % PROJECT),
                                                 ("POST", account.path + ":disable")]
    assert result["service_account"]["disabled"] is True and account.read()["disabled"] is True
    fake_gcp.clear()
    assert account.run(disabled=True, display_name="Batch")["changed"] is False
    assert fake_gcp.writes() == []


@pytest.mark.parametrize("options, message", [
    (dict(account_id="short"), "account_id 'short' must be 6 to 30"),
    (dict(account_id="a" * 31), "must be 6 to 30"),
    (dict(account_id="Mlflow-server"), "lowercase letters"),
    (dict(account_id="mlflow-server-"), "not end with '-'"),
    (dict(account_id="1mlflow"), "start with a letter"),
    (dict(display_name="x" * 101), "display_name holds at most 100 bytes"),
    (dict(description="é" * 129), "description holds at most 256 bytes (UTF-8), got 258"),
])
def test_bad_input_is_rejected_before_any_call(account, fake_gcp, options, message):
    result = account.run(**options)
    assert result["rc"] == 1 and result["failed"] is True, result
    assert message in result["msg"], result["msg"]
    assert fake_gcp.requests == []


def test_retries_429_and_503_bursts(account, fake_gcp):
    fake_gcp.inject(503, count=2, method="GET", path=r"iam/v1/projects/.*/serviceAccounts/")
    fake_gcp.inject(429, count=2, method="POST", path=r"iam/v1/projects/[^/]+/serviceAccounts$")
    result = account.run(display_name="Retried")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(fake_gcp.calls(method="POST")) == 3
    assert account.read()["displayName"] == "Retried"


def test_lost_create_answer_converges(account, fake_gcp):
    """The create goes through but its answer is lost: the retry gets 409 and the module reads the account."""
    fake_gcp.inject(503, count=1, method="POST", path=r"serviceAccounts$", forward=True)
    result = account.run(display_name="Once")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["service_account"]["email"] == account.email
    assert len(fake_gcp.calls(method="POST", path=r"serviceAccounts$")) == 2
    fake_gcp.clear()
    assert account.run(display_name="Once")["changed"] is False and fake_gcp.writes() == []


def test_api_error_is_reported_with_the_account(account, fake_gcp):
    account.run()
    fake_gcp.clear()
    fake_gcp.inject(403, count=1, method="PATCH")
    result = account.run(display_name="Forbidden")
    assert result["rc"] == 1 and result["status"] == 403, result
    assert account.name in result["msg"] and "PATCH" == result["method"], result
    assert len(fake_gcp.calls(method="PATCH")) == 1, "a 403 is not retried"
