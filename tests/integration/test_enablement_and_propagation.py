"""The modules against Google's delays after enabling an API and after creating a service account.

Each test runs the modules as processes against a FakeGcp of this file with only the behaviour under test on
(fake.realism.service_enablement or .propagation), on a scaled clock, in a project of its own.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import with_realism
from tests.standins.fakegcp.durations import DURATIONS

SECRETS, IAM = "secretmanager.googleapis.com", "iam.googleapis.com"
VISIBLE_READS = 3  # service_account's consecutive successful reads after create


@pytest.fixture
def fake(private_fake_gcp):
    return with_realism(private_fake_gcp, time_scale=0.03)


@pytest.fixture
def project(unique):
    return "mods-" + unique


@pytest.fixture
def run(fake, gcp_module, project):
    def run(module, check=False, **options):
        args = dict(project=project, auth_kind="anonymous", api_endpoints=fake.endpoints, timeout=30)
        args.update(options)
        return gcp_module(module, args, check=check)
    return run


def status(fake, path):
    return requests.get(fake.url + path, timeout=10).status_code


def enable(fake, project, services):
    response = requests.post("%s/serviceusage/v1/projects/%s/services:batchEnable" % (fake.url, project),
                             json={"serviceIds": services}, timeout=10)
    assert response.status_code == 200, response.text
    fake.complete_operations()


def test_project_service_returns_only_once_the_enabled_apis_answer(fake, run, project):
    fake.realism.service_enablement = True
    delay = fake.realism.seconds(DURATIONS["serviceusage.propagation"])

    preview = run("project_service", check=True, services=[SECRETS, IAM])
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert [c.path for c in fake.requests] == ["/v1/projects/%s/services:batchGet" % project], "no probe in check mode"

    fake.clear()
    started = time.monotonic()
    result = run("project_service", services=[SECRETS, IAM])
    assert result["rc"] == 0 and result["changed"] is True and result["enabled"] == [SECRETS, IAM], result
    assert time.monotonic() - started >= delay, "it returned before the enablement had propagated"
    # Right after the module returns, the next task's calls are answered.
    assert status(fake, "/secretmanager/v1/projects/%s/secrets" % project) == 200
    assert status(fake, "/iam/v1/projects/%s/serviceAccounts" % project) == 200
    probes = fake.calls(method="GET", path=r"^secretmanager/v1/projects/%s/secrets$" % project)
    assert len(probes) >= 2, "the cheap read was refused while propagating, then retried"
    assert len(fake.calls(method="GET", path=r"^serviceusage/v1/projects/\d+/services/%s$" % SECRETS)) == 1, \
        "Service Usage is asked once whether the service is enabled"

    fake.clear()
    again = run("project_service", services=[SECRETS, IAM])
    assert again["rc"] == 0 and again["changed"] is False, again
    assert fake.writes() == [] and len(fake.requests) == 1, "a no-op run makes no write and no probe"


def test_a_call_to_a_just_enabled_api_succeeds_after_retries(fake, run, project):
    fake.realism.service_enablement = True
    enable(fake, project, [SECRETS])
    result = run("secret", name="db-password", value="s3cret-value")
    assert result["rc"] == 0 and result["changed"] is True, result
    reads = fake.calls(method="GET", path=r"^secretmanager/v1/projects/%s/secrets/db-password$" % project)
    assert len(reads) >= 2, "the first read got SERVICE_DISABLED and was retried"
    assert len(fake.calls(method="GET", path=r"^serviceusage/")) == 1


def test_a_call_to_a_disabled_api_fails_at_once_naming_the_fix(fake, run, project):
    fake.realism.service_enablement = True
    started = time.monotonic()
    result = run("secret", name="db-password", value="s3cret-value")
    assert result["rc"] == 1 and result["status"] == 403, result
    assert "Secret Manager API (secretmanager.googleapis.com) is not enabled in project %s" % project in result["msg"]
    assert "gcloud services enable secretmanager.googleapis.com --project %s" % project in result["msg"]
    assert "project_services" in result["msg"]
    # One refused call and one question to Service Usage: no retry storm.
    assert [(c.api, c.method) for c in fake.requests] == [("secretmanager", "GET"), ("serviceusage", "GET")]
    assert time.monotonic() - started < 10


def test_service_account_returns_once_the_account_is_visible(fake, run, project):
    fake.realism.propagation = True
    fake.realism.time_scale = 0.05  # a GET may miss the account for 0.5 s
    account = "trainer@%s.iam.gserviceaccount.com" % project

    created = run("service_account", account_id="trainer", display_name="Trainer")
    assert created["rc"] == 0 and created["changed"] is True, created
    assert created["service_account"]["email"] == account
    create = next(i for i, c in enumerate(fake.requests) if c.method == "POST")
    reads_after = [c for c in fake.requests[create + 1:] if c.method == "GET"]
    assert len(reads_after) >= VISIBLE_READS, "it returned before the account was visible"
    assert status(fake, "/iam/v1/projects/%s/serviceAccounts/%s" % (project, account)) == 200


def test_iam_member_grants_to_an_account_still_propagating(fake, run, project):
    fake.realism.propagation = True
    # A policy refuses a new account for 60 s of Google time: 6 s here, far more than starting the module
    # takes even on a busy machine, so its first grant is surely refused.
    fake.realism.time_scale = 0.1
    account = "trainer@%s.iam.gserviceaccount.com" % project
    response = requests.post("%s/iam/v1/projects/%s/serviceAccounts" % (fake.url, project),
                             json={"accountId": "trainer"}, timeout=10)
    assert response.status_code == 200, response.text
    created_at = time.monotonic()

    fake.clear()
    granted = run("iam_member", resource_type="project", role="roles/cloudsql.client",
                  member="serviceAccount:" + account)
    assert granted["rc"] == 0 and granted["changed"] is True, granted
    assert granted["binding"]["members"] == ["serviceAccount:" + account]
    assert time.monotonic() - created_at >= fake.realism.seconds(DURATIONS["iam.serviceaccount.member"])
    sets = fake.calls(method="POST", path=r":setIamPolicy$")
    assert len(sets) >= 2, "the first grant was refused (\"does not exist\") and retried from a fresh read"
    assert len(fake.calls(method="POST", path=r":getIamPolicy$")) == len(sets)

    fake.clear()
    again = run("iam_member", resource_type="project", role="roles/cloudsql.client", member="serviceAccount:" + account)
    assert again["rc"] == 0 and again["changed"] is False and fake.writes() == [], again


def test_iam_member_fails_at_once_for_an_account_that_does_not_exist(fake, run, project):
    fake.realism.propagation = True
    ghost = "ghost-runner@%s.iam.gserviceaccount.com" % project
    started = time.monotonic()
    result = run("iam_member", resource_type="project", role="roles/cloudsql.client", member="serviceAccount:" + ghost,
                 timeout=120)
    assert result["rc"] == 1 and result["status"] == 400, result
    assert "service account %s does not exist: create it first" % ghost in result["msg"]
    assert len(fake.calls(method="POST", path=r":setIamPolicy$")) == 1
    assert len(fake.calls(method="GET", path=r"^iam/")) == 3, "absent in three reads in a row"
    assert time.monotonic() - started < 10, "no wait for the whole timeout"
