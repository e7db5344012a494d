"""The fake's realism for API enablement and service account propagation, as Google answers them over REST.

Each test runs on its own FakeGcp with only the behaviour under test switched on, on a scaled clock, and on a
project of its own (every valid project id exists in the fake, with only Google's default services enabled).
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import with_realism
from tests.standins.fakegcp.durations import DURATIONS
from tests.standins.fakegcp.serviceusage import DEFAULT_ENABLED
from tests.standins.fakegcp.util import project_number

SECRETS = "secretmanager.googleapis.com"
SCALE = 0.01  # 1 s of Google time = 10 ms here


@pytest.fixture
def fake(private_fake_gcp):
    return with_realism(private_fake_gcp, time_scale=SCALE)


@pytest.fixture
def project(unique):
    return "real-" + unique


def call(fake, method, path, body=None):
    response = requests.request(method, fake.url + path, json=body, timeout=10)
    return response.status_code, response.json()


def list_secrets(fake, project):
    return call(fake, "GET", "/secretmanager/v1/projects/%s/secrets" % project)


def enable(fake, project, services):
    """Enable through Service Usage and wait for the operation, as a client does."""
    status, op = call(fake, "POST", "/serviceusage/v1/projects/%s/services:batchEnable" % project,
                      {"serviceIds": services})
    assert status == 200, op
    while not op.get("done"):
        status, op = call(fake, "GET", "/serviceusage/v1/" + op["name"])
        assert status == 200, op
    assert "error" not in op, op


def test_a_disabled_api_answers_google_service_disabled_shape(fake, project):
    fake.realism.service_enablement = True
    number = project_number(project)
    status, body = list_secrets(fake, project)
    assert status == 403
    url = "https://console.developers.google.com/apis/api/%s/overview?project=%s" % (SECRETS, number)
    message = ("Secret Manager API has not been used in project %s before or it is disabled. Enable it by visiting "
               "%s then retry. If you enabled this API recently, wait a few minutes for the action to propagate to "
               "our systems and retry." % (number, url))
    assert body == {"error": {
        "code": 403, "message": message, "status": "PERMISSION_DENIED",
        "errors": [{"message": message, "domain": "usageLimits", "reason": "accessNotConfigured",
                    "extendedHelp": "https://console.developers.google.com"}],
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
             "domain": "googleapis.com",
             "metadata": {"service": SECRETS, "consumer": "projects/%s" % number, "activationUrl": url,
                          "serviceTitle": "Secret Manager API", "containerInfo": number}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
            {"@type": "type.googleapis.com/google.rpc.Help",
             "links": [{"description": "Google developers console API activation", "url": url}]},
        ]}}
    # The same by project number, and for a write: nothing is created.
    status, body = call(fake, "POST", "/secretmanager/v1/projects/%s/secrets?secretId=s1" % number,
                        {"replication": {"automatic": {}}})
    assert status == 403 and body["error"]["details"][0]["reason"] == "SERVICE_DISABLED"
    fake.realism.service_enablement = False
    assert list_secrets(fake, project)[0] == 200  # the switch off: today's behaviour


def test_a_new_project_has_google_default_services_only(fake, project):
    fake.realism.service_enablement = True
    status, body = call(fake, "GET", "/serviceusage/v1/projects/%s/services?filter=state:ENABLED&pageSize=200"
                        % project)
    assert status == 200, body  # Service Usage answers whatever the state of its own service
    enabled = {s["config"]["name"] for s in body["services"]}
    assert enabled == set(DEFAULT_ENABLED)
    for service in ("cloudresourcemanager", "iam", "run", "sqladmin", "secretmanager", "artifactregistry",
                    "cloudbuild", "cloudscheduler"):
        assert service + ".googleapis.com" not in enabled
    # Resource Manager is not on by default: a fresh project's first projects.get is refused.
    status, body = call(fake, "GET", "/cloudresourcemanager/v3/projects/%s" % project)
    assert status == 403 and body["error"]["details"][0]["metadata"]["service"] == \
        "cloudresourcemanager.googleapis.com", body


def test_an_enabled_api_is_refused_until_the_enablement_has_propagated(fake, project):
    fake.realism.service_enablement = True
    delay = fake.realism.seconds(DURATIONS["serviceusage.propagation"])
    enable(fake, project, [SECRETS])
    enabled_at = time.monotonic()
    status, body = call(fake, "GET", "/serviceusage/v1/projects/%s/services/%s" % (project, SECRETS))
    assert body["state"] == "ENABLED"
    status, body = list_secrets(fake, project)
    assert status == 403 and body["error"]["details"][0]["reason"] == "SERVICE_DISABLED"
    # Other services of the project are not affected; disabled ones stay refused.
    assert call(fake, "GET", "/iam/v1/projects/%s/serviceAccounts" % project)[0] == 403
    time.sleep(max(0.0, enabled_at + delay - time.monotonic()) + 0.05)
    assert list_secrets(fake, project)[0] == 200
    # Disabling it refuses calls again at once.
    status, op = call(fake, "POST", "/serviceusage/v1/projects/%s/services/%s:disable" % (project, SECRETS), {})
    fake.complete_operations()
    assert list_secrets(fake, project)[0] == 403


def test_enable_now_skips_the_delay_and_is_served_over_http(fake, project, unique):
    fake.realism.service_enablement = True
    fake.apis["serviceusage"].enable_now(project, [SECRETS])
    assert list_secrets(fake, project)[0] == 200
    other = "over-http-" + unique
    response = requests.post(fake.url + "/_fake/serviceusage:enable_now", timeout=10,
                             json={"project": other, "services": ["iam.googleapis.com", "run.googleapis.com"]})
    assert response.status_code == 200, response.text
    assert call(fake, "GET", "/iam/v1/projects/%s/serviceAccounts" % other)[0] == 200
    # run depends on artifactregistry: enabled with it, as Service Usage does.
    assert call(fake, "GET", "/artifactregistry/v1/projects/%s/locations/us-central1/repositories" % other)[0] == 200
    bad = requests.post(fake.url + "/_fake/serviceusage:enable_now", timeout=10,
                        json={"project": other, "services": ["nope.googleapis.com"]})
    assert bad.status_code == 400


def test_iam_wildcard_project_is_checked_in_the_account_project(fake, project):
    fake.realism.service_enablement = True
    status, body = call(fake, "GET", "/iam/v1/projects/-/serviceAccounts/robot-one@%s.iam.gserviceaccount.com"
                        % project)
    assert status == 403 and body["error"]["details"][0]["metadata"]["consumer"] == \
        "projects/%s" % project_number(project)


def create_account(fake, project, account_id):
    status, body = call(fake, "POST", "/iam/v1/projects/%s/serviceAccounts" % project, {"accountId": account_id})
    assert status == 200, body
    return body["email"]


def grant(fake, project, email, where):
    """setIamPolicy adding email as a member: on the project (Resource Manager) or on a secret."""
    policy = {"policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor",
                                       "members": ["serviceAccount:%s" % email]}]}}
    if where == "project":
        return call(fake, "POST", "/cloudresourcemanager/v3/projects/%s:setIamPolicy" % project, policy)
    return call(fake, "POST", "/secretmanager/v1/projects/%s/secrets/db:setIamPolicy" % project, policy)


@pytest.mark.parametrize("where", ["project", "secret"])
def test_a_new_service_account_is_refused_as_a_member_until_it_has_propagated(fake, project, where):
    if where == "secret":
        assert call(fake, "POST", "/secretmanager/v1/projects/%s/secrets?secretId=db" % project,
                    {"replication": {"automatic": {}}})[0] == 200
    fake.realism.propagation = True
    fake.realism.time_scale = 1.0  # Google time: the account stays unseen while the test checks
    email = create_account(fake, project, "runner-one")
    status, body = grant(fake, project, email, where)
    assert status == 400, body
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["message"] == "Service account %s does not exist." % email
    # A GET right after create may not find it either (a shorter delay).
    path = "/iam/v1/projects/%s/serviceAccounts/%s" % (project, email)
    assert call(fake, "GET", path)[0] == 404
    # Once the delays have passed (time_scale shrinks them), it is seen and accepted.
    fake.realism.time_scale = 0.001
    time.sleep(fake.realism.seconds(DURATIONS["iam.serviceaccount.member"]) + 0.02)
    assert call(fake, "GET", path)[0] == 200
    status, body = grant(fake, project, email, where)
    assert status == 200, body


def test_propagation_takes_the_delays_of_the_durations_table(fake, project):
    fake.realism.propagation = True
    get_delay = fake.realism.seconds(DURATIONS["iam.serviceaccount.get"])
    member_delay = fake.realism.seconds(DURATIONS["iam.serviceaccount.member"])
    assert get_delay < member_delay
    email = create_account(fake, project, "runner-two")
    created = time.monotonic()
    path = "/iam/v1/projects/%s/serviceAccounts/%s" % (project, email)
    time.sleep(max(0.0, created + get_delay - time.monotonic()) + 0.02)
    assert call(fake, "GET", path)[0] == 200
    if time.monotonic() - created < member_delay:  # still within the member delay on a busy machine
        assert grant(fake, project, email, "project")[0] == 400
    time.sleep(max(0.0, created + member_delay - time.monotonic()) + 0.02)
    assert grant(fake, project, email, "project")[0] == 200


def test_without_propagation_a_new_account_is_accepted_at_once_and_unknown_ones_never(fake, project):
    email = create_account(fake, project, "runner-three")
    assert grant(fake, project, email, "project")[0] == 200
    status, body = grant(fake, project, "ghost-account@%s.iam.gserviceaccount.com" % project, "project")
    assert status == 400 and "does not exist" in body["error"]["message"]
