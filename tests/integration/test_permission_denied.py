"""Modules against a fake that enforces permissions: a missing permission fails at once, naming the permission,
the caller and the role that grants it; a Cloud Run revision denied a secret whose grant is still propagating is
deployed again until it converges."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import PROJECT, with_realism
from tests.integration.cloud_run_resource import RunResource, make_account, make_secret
from tests.standins.fakegcp.durations import DURATIONS

SCALE = 0.01  # a 120 s grant propagation = 1.2 s here
IMAGE = "europe-docker.pkg.dev/%s/images/app:1" % PROJECT


@pytest.fixture
def fake(private_fake_gcp):
    return with_realism(private_fake_gcp, time_scale=SCALE)


def as_caller(resource, token):
    """Run the module with an access token (auth_kind accesstoken) instead of anonymously."""
    def run(**options):
        return resource.run(auth_kind="accesstoken", access_token=token, **options)
    return run


def grant_on_secret(fake, secret_id, member, role="roles/secretmanager.secretAccessor"):
    base = "%s/secretmanager/v1/projects/%s/secrets/%s" % (fake.url, PROJECT, secret_id)
    policy = requests.get(base + ":getIamPolicy", timeout=10).json()
    policy.setdefault("bindings", []).append({"role": role, "members": [member]})
    return requests.post(base + ":setIamPolicy", json={"policy": policy}, timeout=10)


def test_a_missing_permission_fails_at_once_naming_it_the_caller_and_the_role(fake, gcp_module):
    fake.realism.permissions = True
    fake.add_principal("viewer-token", "user:viewer@example.com", roles=["roles/run.viewer"])
    service = RunResource(fake, gcp_module, "cloud_run_service", "services", "denied-svc", IMAGE)
    result = as_caller(service, "viewer-token")()
    assert result["rc"] == 1 and result["status"] == 403, result
    assert "user:viewer@example.com lacks the permission run.services.create" in result["msg"], result["msg"]
    assert "roles/run.admin grants it: `gcloud projects add-iam-policy-binding %s --member=user:viewer@example.com " \
           "--role=roles/run.admin`" % PROJECT in result["msg"], result["msg"]
    assert "Google said: Permission 'run.services.create' denied on resource" in result["msg"]
    # No retry: one create, then one tokeninfo to learn who the caller is.
    assert len(fake.calls("POST", r"^run/v2/.*/services$")) == 1
    assert len(fake.calls("GET", r"^oauth2/tokeninfo")) == 1


def test_deploying_as_an_account_without_act_as_names_service_account_user(fake, gcp_module):
    fake.realism.permissions = True
    account = make_account(fake, "runtime-x")
    fake.add_principal("runner-token", "user:runner@example.com", roles=["roles/run.admin"])
    service = RunResource(fake, gcp_module, "cloud_run_service", "services", "actas-svc", IMAGE)
    result = as_caller(service, "runner-token")(service_account=account)
    assert result["rc"] == 1 and result["status"] == 403, result
    assert "user:runner@example.com lacks the permission iam.serviceAccounts.actAs" in result["msg"], result["msg"]
    assert "--role=roles/iam.serviceAccountUser" in result["msg"]
    assert len(fake.calls("POST", r"^run/v2/.*/services$")) == 1


def test_a_caller_tokeninfo_does_not_know_is_an_unknown_principal(fake, gcp_module):
    fake.realism.permissions = True
    fake.add_principal("viewer-token", "user:viewer@example.com", roles=["roles/run.viewer"])
    # A group member is a principal tokeninfo gives no email for.
    fake.add_principal("group-token", "group:team@example.com", roles=["roles/run.viewer"])
    service = RunResource(fake, gcp_module, "cloud_run_service", "services", "group-svc", IMAGE)
    result = as_caller(service, "group-token")()
    assert result["rc"] == 1 and result["status"] == 403, result
    assert "unknown principal lacks the permission run.services.create" in result["msg"], result["msg"]


def test_a_service_whose_secret_grant_is_still_propagating_converges(fake, gcp_module, unique):
    fake.realism.propagation = True
    account = make_account(fake, "runtime-s")
    secret_id = "db-password-" + unique
    make_secret(fake, secret_id)
    # IAM accepts a new account as a member after a while (propagation): retry until the grant is made.
    deadline = time.monotonic() + DURATIONS["iam.serviceaccount.member"] * SCALE * 5
    while grant_on_secret(fake, secret_id, "serviceAccount:" + account).status_code != 200:
        assert time.monotonic() < deadline, "the new account was never accepted as a member"
        time.sleep(0.05)
    granted = time.monotonic()
    service = RunResource(fake, gcp_module, "cloud_run_service", "services", "api-" + unique, IMAGE)
    result = service.run(service_account=account, secret_env={"DB_PASSWORD": {"secret": secret_id}}, timeout=60)
    assert result["rc"] == 0, result
    assert time.monotonic() - granted >= DURATIONS["iam.grant.propagation"] * SCALE * 0.9
    revisions = requests.get(service.url + "/revisions", timeout=10).json()["revisions"]
    assert len(revisions) >= 2, "the first revision failed on the secret and was deployed again"
    denied = [r for r in revisions if any(c.get("reason") == "SECRETS_ACCESS_CHECK_FAILED"
                                          for c in r.get("conditions", []))]
    assert denied, revisions
    assert service.read()["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
    # Every redeploy is a PATCH with forceNewRevision, and none was sent once the revision was ready.
    patches = fake.calls("PATCH", r"^run/v2/.*/services/api-")
    assert patches and all(c.query.get("forceNewRevision") == "true" for c in patches)
    assert len(patches) == len(revisions) - 1


def test_a_secret_the_account_may_never_read_fails_within_timeout(fake, gcp_module, unique):
    fake.realism.propagation = True
    account = make_account(fake, "runtime-n")
    secret_id = "api-key-" + unique
    make_secret(fake, secret_id)
    service = RunResource(fake, gcp_module, "cloud_run_service", "services", "never-" + unique, IMAGE)
    started = time.monotonic()
    result = service.run(service_account=account, secret_env={"KEY": {"secret": secret_id}}, timeout=3)
    assert result["rc"] == 1, result
    assert "Permission denied on secret" in result["msg"] and "roles/secretmanager.secretAccessor" in result["msg"]
    assert "still cannot read the secret after retrying for up to 3s" in result["msg"], result["msg"]
    assert time.monotonic() - started < 15


def test_a_job_execution_whose_secret_grant_is_still_propagating_succeeds(fake, gcp_module, unique):
    fake.realism.propagation = True
    account = make_account(fake, "runtime-j")
    secret_id = "token-" + unique
    make_secret(fake, secret_id)
    deadline = time.monotonic() + DURATIONS["iam.serviceaccount.member"] * SCALE * 5
    while grant_on_secret(fake, secret_id, "serviceAccount:" + account).status_code != 200:
        assert time.monotonic() < deadline, "the new account was never accepted as a member"
        time.sleep(0.05)
    job = RunResource(fake, gcp_module, "cloud_run_job", "jobs", "migrate-" + unique, IMAGE)
    result = job.run(service_account=account, secret_env={"TOKEN": {"secret": secret_id}}, execute="always",
                     timeout=60)
    assert result["rc"] == 0, result
    executions = job.executions()
    assert len(executions) >= 2, executions
    assert result["execution"]["name"] == executions[0]["name"]
