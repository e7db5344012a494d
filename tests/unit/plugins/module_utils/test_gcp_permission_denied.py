"""A 403 PERMISSION_DENIED fails at once, its message naming the permission, the caller and the role to grant.

GcpClient against a local server with scripted answers; the session's credentials are a stand-in so that the
caller's identity is known without a token exchange.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import requests
import yaml

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpClient, permission_in, role_for
from ansible_collections.deployml.mlops.tests.unit.plugins.module_utils.test_gcp_client import FakeModule


class Session:
    """An authorized session whose credentials say who they are (as google-auth's do)."""

    def __init__(self, email=None, token=None):
        self.credentials = types.SimpleNamespace(service_account_email=email, token=token)

    @staticmethod
    def request(method, url, **kwargs):
        return requests.request(method, url, **kwargs)


def denial(message, permission=None, resource="projects/p"):
    error = {"code": 403, "status": "PERMISSION_DENIED", "message": message,
             "errors": [{"reason": "forbidden", "message": message, "domain": "global"}]}
    if permission:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
                             "domain": "iam.googleapis.com",
                             "metadata": {"permission": permission, "resource": resource}}]
    return {"error": error}


def client_for(server, session, **params):
    module = FakeModule(auth_kind=params.pop("auth_kind", "serviceaccount"), project="my-proj",
                        api_endpoints={"run": server.url, "oauth2": server.url}, **params)
    sleeps = []
    return GcpClient(module, session=session, sleep=sleeps.append), sleeps


@pytest.mark.parametrize("message, permission", [
    ("Permission 'run.services.get' denied on resource 'projects/p/locations/l/services/s' (or it may not exist).",
     "run.services.get"),
    ("Permission 'iam.serviceaccounts.actAs' denied on service account a@p.iam.gserviceaccount.com (or it may not "
     "exist).", "iam.serviceaccounts.actAs"),
    ('The principal (user or service account) lacks IAM permission "cloudscheduler.jobs.create" for the resource '
     '"projects/p/locations/l" (or the resource may not exist).', "cloudscheduler.jobs.create"),
    ("The client is not authorized to make this request.", None),
    ("The caller does not have permission", None),
])
def test_the_permission_is_read_from_the_message(message, permission):
    assert permission_in(message) == permission


@pytest.mark.parametrize("permission, role", [
    ("iam.serviceAccounts.actAs", "roles/iam.serviceAccountUser"),
    ("iam.serviceaccounts.actAs", "roles/iam.serviceAccountUser"),
    ("iam.serviceAccounts.create", "roles/iam.serviceAccountAdmin"),
    ("run.jobs.run", "roles/run.admin"),
    ("bigquery.jobs.create", "roles/bigquery.jobUser"),
    ("bigquery.datasets.create", "roles/bigquery.dataOwner"),
    ("compute.instances.create", None),
    (None, None),
])
def test_the_role_that_grants_a_permission(permission, role):
    assert role_for(permission) == role


def test_a_service_account_key_names_its_account_and_is_not_retried(server):
    server.answer((403, denial("Permission 'run.services.create' denied on resource 'projects/p/locations/l' (or it "
                               "may not exist).", "run.services.create")))
    client, sleeps = client_for(server, Session(email="deployer@my-proj.iam.gserviceaccount.com"))
    with pytest.raises(GcpApiError) as caught:
        client.request("POST", "run", "/v2/projects/p/locations/l/services", resource="svc")
    assert len(server.requests) == 1 and sleeps == []
    message = str(caught.value)
    account = "serviceAccount:deployer@my-proj.iam.gserviceaccount.com"
    assert message.startswith("svc: HTTP 403 PERMISSION_DENIED/forbidden: %s lacks the permission run.services.create; "
                              "roles/run.admin grants it: `gcloud projects add-iam-policy-binding my-proj --member=%s "
                              "--role=roles/run.admin`. Google said: Permission " % (account, account)), message


def test_an_access_token_is_named_by_tokeninfo_only_when_denied(server):
    server.answer((403, denial("The client is not authorized to make this request.")),
                  (200, {"email": "dev@example.com", "email_verified": "true", "expires_in": "3599"}))
    client, _sleeps = client_for(server, Session(token="tok-123"), auth_kind="accesstoken")
    with pytest.raises(GcpApiError) as caught:
        client.request("GET", "run", "/v2/projects/p/locations/l/services/s", resource="svc")
    assert "user:dev@example.com lacks a permission (Google did not say which). Google said: The client is not " \
           "authorized to make this request." in str(caught.value)
    assert server.requests[1]["path"] == "/tokeninfo?access_token=tok-123"
    assert "tok-123" not in str(caught.value)


def test_without_an_identity_the_caller_is_an_unknown_principal(server):
    server.answer((403, denial("Permission 'run.services.get' denied", "run.services.get")),
                  (400, {"error": "invalid_token", "error_description": "Invalid Value"}))
    client, _sleeps = client_for(server, Session(token="tok-x"), auth_kind="application")
    with pytest.raises(GcpApiError) as caught:
        client.request("GET", "run", "/v2/x", resource="svc")
    assert "unknown principal lacks the permission run.services.get" in str(caught.value)


def test_service_disabled_is_left_to_the_enablement_path(server):
    body = denial("Cloud Run Admin API has not been used in project 123 before or it is disabled.")
    body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                                 "domain": "googleapis.com", "metadata": {}}]
    server.answer((403, body))
    client, _sleeps = client_for(server, Session(email="deployer@my-proj.iam.gserviceaccount.com"))
    with pytest.raises(GcpApiError) as caught:
        client.request("GET", "run", "/v2/x", resource="svc")
    assert "lacks" not in str(caught.value) and len(server.requests) == 1


def test_the_role_hint_agrees_with_the_deployer_list():
    """The hint names the role playbooks/vars/deployer.yml (the list the preflight checks) gives each permission."""
    deployer = yaml.safe_load((Path(__file__).resolve().parents[4] / "playbooks" / "vars" / "deployer.yml").read_text())
    disagree = ["%s: hint %s, deployer.yml %s" % (permission, role_for(permission), entry["role"])
                for entry in deployer["deployer_permissions"] for permission in entry["permissions"]
                if role_for(permission) != entry["role"]]
    assert not disagree
