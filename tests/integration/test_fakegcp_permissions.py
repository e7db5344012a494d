"""Contract tests of the fake's caller identity and permissions (fake.realism.permissions / .propagation).

Each test runs against its own FakeGcp with only the behaviour under test switched on, on a fast clock.
"""

from __future__ import annotations

import base64
import re
import time

import pytest
import requests
import yaml

from tests.conftest import ROOT, with_realism
from tests.standins.fakegcp import FakeGcp
from tests.standins.fakegcp.durations import DURATIONS
from tests.standins.fakegcp.permissions import METHODS, ROLES, role_grants

PROJECT = "perm-project"
REGION = "us-central1"
SCALE = 0.004  # 120 s of Google time (the grant propagation delay) = 0.48 s here
# The least-privilege deployer: exactly the roles the preflight checks (playbooks/vars/deployer.yml).
DEPLOYER = sorted(yaml.safe_load((ROOT / "playbooks" / "vars" / "deployer.yml").read_text())["deployer_roles"])
DELAY = DURATIONS["iam.grant.propagation"] * SCALE
SECRET_REF = {"secret": "db-password", "version": "latest"}


@pytest.fixture
def fake(private_fake_gcp):
    """The module's fake, emptied, with permissions enforced and two callers: the owner and nobody."""
    server = with_realism(private_fake_gcp, time_scale=SCALE, permissions=True)
    server.add_principal("owner-token", "user:owner@example.com")  # the owner every project starts with
    server.add_principal("nobody-token", "user:nobody@example.com")
    return server


def call(fake, method, api, path, token=None, body=None, params=None):
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    return requests.request(method, "%s/%s%s" % (fake.url, api, path), json=body, params=params, headers=headers,
                            timeout=10)


def ok(response):
    assert response.status_code == 200, response.text
    return response.json()


def denied(response, permission=None):
    """Assert Google's 403 PERMISSION_DENIED shape; returns the error."""
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["status"] == "PERMISSION_DENIED" and error["code"] == 403
    if permission:
        info = [d for d in error.get("details", []) if d["@type"].endswith("google.rpc.ErrorInfo")]
        assert info and info[0]["reason"] == "IAM_PERMISSION_DENIED", error
        assert info[0]["metadata"]["permission"] == permission
        assert info[0]["metadata"]["resource"]
    return error


def create_sa(fake, account_id):
    return ok(call(fake, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, "owner-token",
                   {"accountId": account_id}))["email"]


def create_secret(fake, secret_id):
    ok(call(fake, "POST", "secretmanager", "/v1/projects/%s/secrets" % PROJECT, "owner-token",
            {"replication": {"automatic": {}}}, {"secretId": secret_id}))
    ok(call(fake, "POST", "secretmanager", "/v1/projects/%s/secrets/%s:addVersion" % (PROJECT, secret_id),
            "owner-token", {"payload": {"data": base64.b64encode(b"s3cret").decode()}}))


def grant(fake, api, path, role, member, version="v1", get="GET"):
    """Add a binding through the API's own getIamPolicy/setIamPolicy, as the owner."""
    policy = ok(call(fake, get, api, "/%s/%s:getIamPolicy" % (version, path), "owner-token",
                     {} if get == "POST" else None))
    policy.setdefault("bindings", []).append({"role": role, "members": [member]})
    return ok(call(fake, "POST", api, "/%s/%s:setIamPolicy" % (version, path), "owner-token", {"policy": policy}))


def grant_response(fake, secret, member, role="roles/secretmanager.secretAccessor"):
    policy = ok(call(fake, "GET", "secretmanager", "/v1/%s:getIamPolicy" % secret, "owner-token"))
    policy.setdefault("bindings", []).append({"role": role, "members": [member]})
    return call(fake, "POST", "secretmanager", "/v1/%s:setIamPolicy" % secret, "owner-token", {"policy": policy})


def grant_project(fake, role, member):
    return grant(fake, "cloudresourcemanager", "projects/%s" % PROJECT, role, member, version="v3", get="POST")


def wait_until(predicate, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# ---- the tables ----------------------------------------------------------------------------------------------------
def test_every_method_the_fake_serves_has_its_permission():
    fake = FakeGcp()
    served = {method_id for api in fake.apis.values() for method_id in api.handlers if api.name != "oauth2"}
    assert served - set(METHODS) == set(), "methods without a permission in permissions.METHODS"
    assert set(METHODS) - served == set(), "permissions.METHODS names methods the fake does not serve"


def test_the_deployer_roles_cover_every_permission_the_deploy_needs():
    needed = {p for p, _scope in METHODS.values() if p} - {"resourcemanager.projects.setIamPolicy"}
    deployer = {p for p in needed if any(role_grants(r, p) for r in DEPLOYER)}
    # Everything the fake checks is held by the least-privilege deployer (CONTEXT.md), plus actAs.
    assert needed - deployer == set()
    assert any(role_grants(r, "iam.serviceAccounts.actAs") for r in DEPLOYER)
    assert all(role in ROLES for role in DEPLOYER)


# ---- identity ------------------------------------------------------------------------------------------------------
def test_an_unknown_token_is_unauthenticated(fake):
    response = call(fake, "GET", "secretmanager", "/v1/projects/%s/secrets" % PROJECT, "stolen-token")
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["status"] == "UNAUTHENTICATED"
    assert error["message"].startswith("Request had invalid authentication credentials. Expected OAuth 2 access token")


def test_an_anonymous_caller_is_allowed_everything(fake):
    ok(call(fake, "GET", "secretmanager", "/v1/projects/%s/secrets" % PROJECT))


def test_with_permissions_off_a_caller_without_roles_is_allowed(fake):
    fake.realism.permissions = False
    ok(call(fake, "GET", "secretmanager", "/v1/projects/%s/secrets" % PROJECT, "nobody-token"))
    ok(call(fake, "GET", "secretmanager", "/v1/projects/%s/secrets" % PROJECT, "stolen-token"))


# ---- the denial, API by API ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("api, method, path, permission, message", [
    ("cloudresourcemanager", "GET", "/v3/projects/%s" % PROJECT, "resourcemanager.projects.get",
     "Permission 'resourcemanager.projects.get' denied on resource "
     "'//cloudresourcemanager.googleapis.com/projects/%s' (or it may not exist)." % PROJECT),
    ("secretmanager", "GET", "/v1/projects/%s/secrets/s1" % PROJECT, "secretmanager.secrets.get",
     "Permission 'secretmanager.secrets.get' denied for resource 'projects/%s/secrets/s1' (or it may not exist)."
     % PROJECT),
    ("run", "GET", "/v2/projects/%s/locations/%s/services" % (PROJECT, REGION), "run.services.list",
     "Permission 'run.services.list' denied on resource 'projects/%s/locations/%s' (or it may not exist)."
     % (PROJECT, REGION)),
    ("iam", "GET", "/v1/projects/%s/serviceAccounts" % PROJECT, "iam.serviceAccounts.list",
     "Permission 'iam.serviceAccounts.list' denied on resource (or it may not exist)."),
    ("artifactregistry", "GET", "/v1/projects/%s/locations/%s/repositories" % (PROJECT, REGION),
     "artifactregistry.repositories.list", None),
    ("serviceusage", "GET", "/v1/projects/%s/services/run.googleapis.com" % PROJECT, "serviceusage.services.get", None),
    ("cloudscheduler", "GET", "/v1/projects/%s/locations/%s/jobs" % (PROJECT, REGION), "cloudscheduler.jobs.list",
     'The principal (user or service account) lacks IAM permission "cloudscheduler.jobs.list" for the resource '
     '"projects/%s/locations/%s" (or the resource may not exist).' % (PROJECT, REGION)),
    ("cloudbuild", "GET", "/v1/projects/%s/builds" % PROJECT, "cloudbuild.builds.list",
     "The caller does not have permission"),
    ("cloudbilling", "GET", "/v1/projects/%s/billingInfo" % PROJECT, "resourcemanager.projects.get", None),
])
def test_a_caller_without_the_permission_is_denied_in_the_api_shape(fake, api, method, path, permission, message):
    error = denied(call(fake, method, api, path, "nobody-token"), permission)
    if message:
        assert error["message"] == message


def test_cloud_sql_says_not_authorized(fake):
    response = call(fake, "GET", "sqladmin", "/sql/v1beta4/projects/%s/instances" % PROJECT, "nobody-token")
    error = denied(response)
    assert error["message"] == "The client is not authorized to make this request."
    assert error["errors"][0]["reason"] == "notAuthorized"


def test_a_project_role_grants_and_a_resource_role_grants_on_that_resource_only(fake):
    create_secret(fake, "one")
    create_secret(fake, "two")
    member = "user:reader@example.com"
    fake.add_principal("reader-token", member)
    access = "/v1/projects/%s/secrets/%%s/versions/latest:access" % PROJECT
    denied(call(fake, "GET", "secretmanager", access % "one", "reader-token"), "secretmanager.versions.access")
    grant(fake, "secretmanager", "projects/%s/secrets/one" % PROJECT, "roles/secretmanager.secretAccessor", member)
    ok(call(fake, "GET", "secretmanager", access % "one", "reader-token"))
    denied(call(fake, "GET", "secretmanager", access % "two", "reader-token"), "secretmanager.versions.access")
    grant_project(fake, "roles/secretmanager.secretAccessor", member)
    ok(call(fake, "GET", "secretmanager", access % "two", "reader-token"))
    # Accessor does not read metadata: secrets.get stays denied.
    denied(call(fake, "GET", "secretmanager", "/v1/projects/%s/secrets/two" % PROJECT, "reader-token"),
           "secretmanager.secrets.get")


def test_the_least_privilege_deployer_may_call_what_it_deploys_with(fake):
    fake.add_principal("deployer-token", "user:deployer@example.com", roles=DEPLOYER)
    for api, path in (("secretmanager", "/v1/projects/%s/secrets" % PROJECT),
                      ("run", "/v2/projects/%s/locations/%s/jobs" % (PROJECT, REGION)),
                      ("sqladmin", "/sql/v1beta4/projects/%s/instances" % PROJECT),
                      ("iam", "/v1/projects/%s/serviceAccounts" % PROJECT),
                      ("cloudresourcemanager", "/v3/projects/%s" % PROJECT)):
        ok(call(fake, "GET", api, path, "deployer-token"))


# ---- actAs ---------------------------------------------------------------------------------------------------------
def test_deploying_cloud_run_as_an_account_needs_act_as(fake):
    email = create_sa(fake, "runtime-a")
    member = "user:dev@example.com"
    fake.add_principal("dev-token", member, roles=["roles/run.admin"])
    body = {"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}],
                         "serviceAccount": email}}
    path = "/v2/projects/%s/locations/%s/services" % (PROJECT, REGION)
    error = denied(call(fake, "POST", "run", path, "dev-token", body, {"serviceId": "svc"}),
                   "iam.serviceAccounts.actAs")
    assert error["message"] == ("Permission 'iam.serviceaccounts.actAs' denied on service account %s (or it may not "
                                "exist)." % email)
    # serviceAccountUser on the account itself is enough.
    grant(fake, "iam", "projects/%s/serviceAccounts/%s" % (PROJECT, email), "roles/iam.serviceAccountUser", member,
          get="POST")
    ok(call(fake, "POST", "run", path, "dev-token", body, {"serviceId": "svc"}))


def test_a_job_without_an_account_runs_as_the_compute_default_account(fake):
    fake.add_principal("dev-token", "user:dev@example.com", roles=["roles/run.admin"])
    body = {"template": {"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/job"}]}}}
    error = denied(call(fake, "POST", "run", "/v2/projects/%s/locations/%s/jobs" % (PROJECT, REGION), "dev-token",
                        body, {"jobId": "job"}), "iam.serviceAccounts.actAs")
    assert re.search(r"service account \d+-compute@developer\.gserviceaccount\.com", error["message"])


def test_a_build_with_a_service_account_needs_act_as(fake):
    email = create_sa(fake, "builder-a")
    fake.add_principal("dev-token", "user:dev@example.com", roles=["roles/cloudbuild.builds.editor"])
    body = {"steps": [{"name": "gcr.io/cloud-builders/docker", "args": ["version"]}],
            "serviceAccount": "projects/%s/serviceAccounts/%s" % (PROJECT, email),
            "options": {"logging": "CLOUD_LOGGING_ONLY"}}
    error = denied(call(fake, "POST", "cloudbuild", "/v1/projects/%s/builds" % PROJECT, "dev-token", body),
                   "iam.serviceAccounts.actAs")
    assert error["message"].startswith("caller does not have permission to act as service account")
    grant_project(fake, "roles/iam.serviceAccountUser", "user:dev@example.com")
    ok(call(fake, "POST", "cloudbuild", "/v1/projects/%s/builds" % PROJECT, "dev-token", body))


def test_a_scheduler_job_with_an_oauth_token_needs_act_as(fake):
    email = create_sa(fake, "invoker-a")
    fake.add_principal("dev-token", "user:dev@example.com", roles=["roles/cloudscheduler.admin"])
    parent = "projects/%s/locations/%s" % (PROJECT, REGION)
    body = {"name": "%s/jobs/drift" % parent, "schedule": "0 3 * * *",
            "httpTarget": {"uri": "https://run.googleapis.com/v2/%s/jobs/drift:run" % parent,
                           "oauthToken": {"serviceAccountEmail": email}}}
    error = denied(call(fake, "POST", "cloudscheduler", "/v1/%s/jobs" % parent, "dev-token", body),
                   "iam.serviceAccounts.actAs")
    assert error["message"] == ('The principal (user or service account) lacks IAM permission '
                                '"iam.serviceAccounts.actAs" for the resource "%s" (or the resource may not exist).'
                                % email)


# ---- roles ---------------------------------------------------------------------------------------------------------
def test_an_unknown_predefined_role_is_not_supported(fake):
    response = call(fake, "POST", "cloudresourcemanager", "/v3/projects/%s:setIamPolicy" % PROJECT, "owner-token",
                    {"policy": {"bindings": [{"role": "roles/storage.viewer", "members": ["user:a@example.com"]}]}})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "Role roles/storage.viewer is not supported for this resource."


def test_a_custom_role_is_accepted(fake):
    grant_project(fake, "projects/%s/roles/mlopsRunner" % PROJECT, "user:a@example.com")


def test_a_grant_counts_only_after_it_propagates(fake):
    fake.realism.propagation = True
    member = "user:late@example.com"
    fake.add_principal("late-token", member)
    path = "/v1/projects/%s/secrets" % PROJECT
    grant_project(fake, "roles/secretmanager.admin", member)
    granted = time.monotonic()
    denied(call(fake, "GET", "secretmanager", path, "late-token"), "secretmanager.secrets.list")
    assert wait_until(lambda: call(fake, "GET", "secretmanager", path, "late-token").status_code == 200, DELAY * 4)
    assert time.monotonic() - granted >= DELAY * 0.9


def test_add_principal_roles_are_effective_at_once(fake):
    fake.realism.propagation = True
    fake.add_principal("quick-token", "user:quick@example.com", roles=["roles/secretmanager.admin"])
    ok(call(fake, "GET", "secretmanager", "/v1/projects/%s/secrets" % PROJECT, "quick-token"))


# ---- Resource Manager, Cloud Billing, tokeninfo ----------------------------------------------------------------------
def test_test_iam_permissions_answers_the_subset_held(fake):
    fake.add_principal("deployer-token", "user:deployer@example.com", roles=DEPLOYER)
    asked = ["run.services.create", "iam.serviceAccounts.actAs", "storage.buckets.create",
             "bigquery.datasets.create", "resourcemanager.projects.setIamPolicy", "compute.instances.create"]
    path = "/v3/projects/%s:testIamPermissions" % PROJECT
    held = ok(call(fake, "POST", "cloudresourcemanager", path, "deployer-token", {"permissions": asked}))
    assert held == {"permissions": asked[:5]}
    assert ok(call(fake, "POST", "cloudresourcemanager", path, "nobody-token", {"permissions": asked})) == {}
    assert ok(call(fake, "POST", "cloudresourcemanager", path, None, {"permissions": asked})) == {"permissions": asked}
    response = call(fake, "POST", "cloudresourcemanager", path, "deployer-token", {"permissions": ["run.*"]})
    assert response.status_code == 400, response.text


def test_project_state_and_a_missing_project(fake):
    path = "/v3/projects/%s" % PROJECT
    assert ok(call(fake, "GET", "cloudresourcemanager", path, "owner-token"))["state"] == "ACTIVE"
    ok(requests.post(fake.url + "/_fake/cloudresourcemanager:set_project_state",
                     json={"project": PROJECT, "state": "DELETE_REQUESTED"}, timeout=10))
    assert ok(call(fake, "GET", "cloudresourcemanager", path, "owner-token"))["state"] == "DELETE_REQUESTED"
    fake.apis["cloudresourcemanager"].set_project_state(PROJECT, "NOT_FOUND")
    denied(call(fake, "GET", "cloudresourcemanager", path, "owner-token"), "resourcemanager.projects.get")


def test_billing_is_enabled_unless_a_test_disables_it(fake):
    path = "/v1/projects/%s/billingInfo" % PROJECT
    info = ok(call(fake, "GET", "cloudbilling", path, "owner-token"))
    assert info == {"name": "projects/%s/billingInfo" % PROJECT, "projectId": PROJECT, "billingEnabled": True,
                    "billingAccountName": "billingAccounts/012345-567890-ABCDEF"}
    ok(requests.post(fake.url + "/_fake/cloudbilling:set_billing", json={"project": PROJECT, "enabled": False},
                     timeout=10))
    assert ok(call(fake, "GET", "cloudbilling", path, "owner-token")) == {
        "name": "projects/%s/billingInfo" % PROJECT, "projectId": PROJECT}


def test_tokeninfo_names_the_caller(fake):
    info = ok(call(fake, "GET", "oauth2", "/tokeninfo", params={"access_token": "nobody-token"}))
    assert info["email"] == "nobody@example.com" and info["email_verified"] == "true"
    assert set(info) >= {"azp", "aud", "scope", "exp", "expires_in", "access_type"}
    assert int(info["expires_in"]) > 0
    response = call(fake, "GET", "oauth2", "/tokeninfo", params={"access_token": "stolen-token"})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_token", "error_description": "Invalid Value"}


def test_tokeninfo_of_a_service_account(fake):
    email = create_sa(fake, "robot-a")
    requests.post(fake.url + "/_fake/principals", json={"token": "robot-token", "member": "serviceAccount:" + email},
                  timeout=10).raise_for_status()
    info = ok(call(fake, "GET", "oauth2", "/tokeninfo", params={"access_token": "robot-token"}))
    assert info["email"] == email and info["azp"].isdigit()


# ---- Cloud Run: a revision's runtime account and its secrets ---------------------------------------------------------
def finish(fake, operation, limit=50):
    for _poll in range(limit):
        if operation.get("done"):
            return operation
        operation = ok(call(fake, "GET", "run", "/v2/" + operation["name"], "owner-token"))
    raise AssertionError("operation never finished: %s" % operation)


def test_a_revision_fails_until_its_secret_grant_propagates(fake):
    fake.realism.propagation = True
    email = create_sa(fake, "runtime-b")
    create_secret(fake, "db-password")
    # A new account is accepted as a member only after a while (iam.py): retry the grant until it is.
    assert wait_until(lambda: grant_response(fake, "projects/%s/secrets/db-password" % PROJECT,
                                             "serviceAccount:" + email).status_code == 200, 60 * SCALE * 4)
    body = {"template": {"serviceAccount": email, "containers": [{
        "image": "us-docker.pkg.dev/cloudrun/container/hello",
        "env": [{"name": "DB_PASSWORD", "valueSource": {"secretKeyRef": SECRET_REF}}]}]}}
    path = "/v2/projects/%s/locations/%s/services" % (PROJECT, REGION)
    operation = finish(fake, ok(call(fake, "POST", "run", path, "owner-token", body, {"serviceId": "api"})))
    message = operation["error"]["message"]
    number = ok(call(fake, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT))["name"].split("/")[1]
    assert re.match(r"^Revision 'api-00001-[a-z]{3}' is not ready and cannot serve traffic\. "
                    r"spec\.template\.spec\.containers\[0\]\.env\[0\]\.value_from\.secret_key_ref\.name: Permission "
                    r"denied on secret: projects/%s/secrets/db-password/versions/latest for Revision service account "
                    r"%s\. The service account used must be granted the 'Secret Manager Secret Accessor' role "
                    r"\(roles/secretmanager\.secretAccessor\) at the secret, project or higher level\.$"
                    % (number, re.escape(email)), message), message
    service = ok(call(fake, "GET", "run", path + "/api", "owner-token"))
    assert service["terminalCondition"]["state"] == "CONDITION_FAILED"
    assert service["terminalCondition"]["reason"] == "SECRETS_ACCESS_CHECK_FAILED"
    time.sleep(DELAY)
    operation = finish(fake, ok(call(fake, "PATCH", "run", path + "/api", "owner-token", body,
                                     {"forceNewRevision": "true"})))
    assert "error" not in operation, operation
    service = ok(call(fake, "GET", "run", path + "/api", "owner-token"))
    assert service["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"


def test_a_job_execution_fails_when_its_account_cannot_read_a_secret(fake):
    email = create_sa(fake, "runtime-c")
    create_secret(fake, "token")
    body = {"template": {"template": {"serviceAccount": email, "containers": [{
        "image": "us-docker.pkg.dev/cloudrun/container/job",
        "env": [{"name": "TOKEN", "valueSource": {"secretKeyRef": {"secret": "token", "version": "1"}}}]}]}}}
    path = "/v2/projects/%s/locations/%s/jobs" % (PROJECT, REGION)
    finish(fake, ok(call(fake, "POST", "run", path, "owner-token", body, {"jobId": "drift"})))
    operation = finish(fake, ok(call(fake, "POST", "run", path + "/drift:run", "owner-token", {})))
    assert "Permission denied on secret: " in operation["error"]["message"]
    grant_project(fake, "roles/secretmanager.secretAccessor", "serviceAccount:" + email)
    operation = finish(fake, ok(call(fake, "POST", "run", path + "/drift:run", "owner-token", {})))
    assert "error" not in operation, operation
