"""Contract tests of the fake GCP control plane itself, over plain HTTP: it must reject what Google rejects.

Core machinery (routing, validation, error shape, request log, faults, operations, control API), Resource
Manager project IAM policies, IAM service accounts and Service Usage. Secret Manager and Cloud SQL have
their own files (test_fakegcp_secretmanager.py, test_fakegcp_sqladmin.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.standins.services import free_port

PROJECT = "test-project"


def call(fake, method, api, path, body=None, params=None):
    return requests.request(method, "%s/%s%s" % (fake.url, api, path), json=body, params=params, timeout=10)


def error_of(response, code, status=None):
    """Assert Google's error shape and return the error object."""
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["errors"][0]["reason"]
    if status:
        assert error["status"] == status, error
    return error


def sa_path(account_id, project=PROJECT):
    return "/v1/projects/%s/serviceAccounts/%s@%s.iam.gserviceaccount.com" % (project, account_id, project)


def create_sa(fake, account_id, **fields):
    response = call(fake, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT,
                    {"accountId": account_id, "serviceAccount": fields})
    assert response.status_code == 200, response.text
    return response.json()


def poll_lro(fake, api, operation, version="v1", limit=20):
    for attempt in range(1, limit + 1):
        if operation.get("done"):
            return operation, attempt - 1
        response = call(fake, "GET", api, "/%s/%s" % (version, operation["name"]))
        assert response.status_code == 200, response.text
        operation = response.json()
    raise AssertionError("operation never finished: %s" % operation)


# ---- core machinery --------------------------------------------------------------------------------------
class TestRouting:
    def test_endpoints_one_prefix_per_api(self, fake_gcp):
        for api in ("cloudresourcemanager", "iam", "serviceusage"):
            assert fake_gcp.endpoints[api] == "%s/%s" % (fake_gcp.url, api)

    def test_unknown_api_prefix_is_404(self, fake_gcp):
        error_of(call(fake_gcp, "GET", "nosuchapi", "/v1/projects/%s" % PROJECT), 404, "NOT_FOUND")

    def test_unknown_path_is_404(self, fake_gcp):
        error_of(call(fake_gcp, "GET", "iam", "/v1/projects/%s/widgets" % PROJECT), 404, "NOT_FOUND")

    def test_wrong_http_method_is_405(self, fake_gcp):
        error_of(call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s:setIamPolicy" % PROJECT), 405)

    def test_method_of_the_document_not_implemented_is_501(self, fake_gcp):
        error = error_of(call(fake_gcp, "POST", "iam", sa_path("whatever-sa") + ":signBlob", {}), 501)
        assert "iam.projects.serviceAccounts.signBlob" in error["message"]

    def test_same_api_shape_under_two_prefixes_is_routed_by_prefix(self, fake_gcp):
        # /v1/operations/X exists in serviceusage, not in iam.
        error_of(call(fake_gcp, "GET", "iam", "/v1/operations/abc"), 404)
        error_of(call(fake_gcp, "GET", "serviceusage", "/v1/operations/abc"), 404, "NOT_FOUND")


class TestValidation:
    def test_unknown_top_level_field(self, fake_gcp, unique):
        response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT,
                        {"accountId": "sa-%s" % unique, "color": "red"})
        error = error_of(response, 400, "INVALID_ARGUMENT")
        assert error["message"] == 'Invalid JSON payload received. Unknown name "color": Cannot find field.'
        assert error["details"][0]["fieldViolations"][0]["field"] == "color"

    def test_unknown_nested_field_names_its_parent(self, fake_gcp, unique):
        response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT,
                        {"accountId": "sa-%s" % unique, "serviceAccount": {"displayname": "typo"}})
        error = error_of(response, 400, "INVALID_ARGUMENT")
        assert "Unknown name \"displayname\" at 'service_account'" in error["message"]

    def test_wrong_json_type(self, fake_gcp, unique):
        response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT,
                        {"accountId": "sa-%s" % unique, "serviceAccount": {"displayName": ["a"]}})
        assert "service_account.display_name" in error_of(response, 400, "INVALID_ARGUMENT")["message"]
        response = call(fake_gcp, "POST", "cloudresourcemanager", "/v3/projects/%s:getIamPolicy" % PROJECT,
                        {"options": {"requestedPolicyVersion": "three"}})
        error_of(response, 400, "INVALID_ARGUMENT")

    def test_bad_enum_value_names_field_and_value(self, fake_gcp):
        response = call(fake_gcp, "POST", "serviceusage",
                        "/v1/projects/%s/services/storage.googleapis.com:disable" % PROJECT,
                        {"checkIfServiceHasUsage": "SOMETIMES"})
        error = error_of(response, 400, "INVALID_ARGUMENT")
        assert "check_if_service_has_usage" in error["message"] and "SOMETIMES" in error["message"]

    def test_missing_required_field(self, fake_gcp):
        response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT,
                        {"serviceAccount": {"displayName": "no id"}})
        assert "account_id" in error_of(response, 400, "INVALID_ARGUMENT")["message"]

    def test_body_that_is_not_json(self, fake_gcp):
        response = requests.post("%s/iam/v1/projects/%s/serviceAccounts" % (fake_gcp.url, PROJECT), data="{not json",
                                 headers={"Content-Type": "application/json"}, timeout=10)
        error_of(response, 400)

    def test_unknown_query_parameter(self, fake_gcp):
        response = call(fake_gcp, "GET", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, params={"colour": "x"})
        assert "colour" in error_of(response, 400, "INVALID_ARGUMENT")["message"]

    def test_standard_query_parameters_are_accepted(self, fake_gcp):
        response = call(fake_gcp, "GET", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT,
                        params={"alt": "json", "prettyPrint": "false"})
        assert response.status_code == 200, response.text

    def test_malformed_project_id(self, fake_gcp):
        error_of(call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/Bad_Project"), 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "GET", "iam", "/v1/projects/x/serviceAccounts"), 400, "INVALID_ARGUMENT")

    def test_output_only_fields_are_ignored(self, fake_gcp, unique):
        response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, {
            "accountId": "oo-%s" % unique,
            "serviceAccount": {"email": "evil@example.com", "uniqueId": "1", "disabled": True, "displayName": "d"}})
        assert response.status_code == 200, response.text
        account = response.json()
        assert account["email"] == "oo-%s@%s.iam.gserviceaccount.com" % (unique, PROJECT)
        assert account["uniqueId"] != "1"
        assert "disabled" not in account
        assert account["displayName"] == "d"


class TestRequestLog:
    def test_calls_recorded_in_order_with_query_and_body(self, fake_gcp):
        call(fake_gcp, "GET", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, params={"pageSize": "5"})
        call(fake_gcp, "POST", "cloudresourcemanager", "/v3/projects/%s:getIamPolicy" % PROJECT, {})
        first, second = fake_gcp.requests
        assert (first.method, first.api, first.path, first.query, first.body) == (
            "GET", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, {"pageSize": "5"}, None)
        assert (second.method, second.api, second.body) == ("POST", "cloudresourcemanager", {})

    def test_writes_exclude_reads_and_get_iam_policy(self, fake_gcp, unique):
        call(fake_gcp, "POST", "cloudresourcemanager", "/v3/projects/%s:getIamPolicy" % PROJECT, {})
        call(fake_gcp, "GET", "serviceusage", "/v1/projects/%s/services" % PROJECT)
        assert fake_gcp.writes() == []
        create_sa(fake_gcp, "w-%s" % unique)
        call(fake_gcp, "POST", "iam", sa_path("w-%s" % unique) + ":getIamPolicy")
        assert [(c.method, c.path) for c in fake_gcp.writes()] == [("POST", "/v1/projects/%s/serviceAccounts" % PROJECT)]

    def test_rejected_requests_are_logged_too(self, fake_gcp):
        call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, {"bogus": 1})
        assert len(fake_gcp.writes()) == 1

    def test_clear_empties_log(self, fake_gcp):
        call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT)
        assert fake_gcp.requests
        fake_gcp.clear()
        assert fake_gcp.requests == []


class TestFaults:
    def test_injected_status_in_google_shape_then_normal(self, fake_gcp):
        fake_gcp.inject(503, count=2)
        for _attempt in range(2):
            error_of(call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT), 503, "UNAVAILABLE")
        assert call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT).status_code == 200

    def test_429_is_resource_exhausted(self, fake_gcp):
        fake_gcp.inject(429)
        error = error_of(call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT), 429)
        assert error["status"] == "RESOURCE_EXHAUSTED"

    def test_fault_without_forward_does_not_reach_the_state(self, fake_gcp, unique):
        fake_gcp.inject(500, method="POST", path=r"^iam/.*/serviceAccounts$")
        response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, {"accountId": "f-%s" % unique})
        error_of(response, 500, "INTERNAL")
        error_of(call(fake_gcp, "GET", "iam", sa_path("f-%s" % unique)), 404, "NOT_FOUND")
        assert len(fake_gcp.requests) == 2  # the faulted call is still logged

    def test_forwarded_fault_loses_the_answer_not_the_request(self, fake_gcp, unique):
        fake_gcp.inject(503, method="POST", forward=True)
        response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, {"accountId": "g-%s" % unique})
        error_of(response, 503)
        assert call(fake_gcp, "GET", "iam", sa_path("g-%s" % unique)).status_code == 200
        retry = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, {"accountId": "g-%s" % unique})
        error_of(retry, 409, "ALREADY_EXISTS")

    def test_method_and_path_filters(self, fake_gcp):
        fake_gcp.inject(500, count=5, method="POST", path=r"^serviceusage/")
        assert call(fake_gcp, "GET", "serviceusage", "/v1/projects/%s/services" % PROJECT).status_code == 200
        assert call(fake_gcp, "POST", "cloudresourcemanager", "/v3/projects/%s:getIamPolicy" % PROJECT,
                    {}).status_code == 200
        error_of(call(fake_gcp, "POST", "serviceusage",
                      "/v1/projects/%s/services/storage.googleapis.com:enable" % PROJECT, {}), 500)

    def test_clear_removes_faults(self, fake_gcp):
        fake_gcp.inject(503, count=10)
        fake_gcp.clear()
        assert call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT).status_code == 200


class TestControlApi:
    def test_requests_faults_operations_over_http(self, fake_gcp):
        call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT)
        log = requests.get(fake_gcp.url + "/_fake/requests", timeout=10).json()
        assert [r["path"] for r in log["requests"]] == ["/v3/projects/%s" % PROJECT]
        assert log["writes"] == []
        assert requests.delete(fake_gcp.url + "/_fake/requests", timeout=10).status_code == 200
        assert fake_gcp.requests == []

        requests.post(fake_gcp.url + "/_fake/faults", json={"status": 429, "count": 1, "method": "GET"}, timeout=10)
        error_of(call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT), 429)
        assert call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT).status_code == 200

        requests.post(fake_gcp.url + "/_fake/operations", json={"polls": 4}, timeout=10)
        assert fake_gcp.operation_polls == 4
        requests.post(fake_gcp.url + "/_fake/operations:fail", json={"count": 1, "code": "INTERNAL_ERROR"}, timeout=10)
        assert fake_gcp.operations.failures == [[1, "INTERNAL_ERROR", None]]
        assert len(fake_gcp.requests) == 2  # control calls are not logged

    def test_api_controls_over_http(self, fake_gcp, unique):
        """POST /_fake/<api>:<control> runs a control the API declares: here, a revision that never gets Ready."""
        control = fake_gcp.url + "/_fake/run:fail_revisions"
        assert requests.post(control, json={"count": 1, "message": "no port"}, timeout=10).status_code == 200
        assert requests.post(control, json={"colour": "red"}, timeout=10).status_code == 400
        assert requests.post(fake_gcp.url + "/_fake/run:reset", json={}, timeout=10).status_code == 404
        started = call(fake_gcp, "POST", "run", "/v2/projects/%s/locations/us-central1/services" % PROJECT,
                       {"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}},
                       params={"serviceId": "svc-" + unique})
        assert started.status_code == 200, started.text
        fake_gcp.complete_operations()
        operation = call(fake_gcp, "GET", "run", "/v2/" + started.json()["name"]).json()
        assert operation["error"]["code"] == 9 and "no port" in operation["error"]["message"], operation

    def test_unknown_control_route(self, fake_gcp):
        assert requests.get(fake_gcp.url + "/_fake/nothing", timeout=10).status_code == 404


# ---- Resource Manager --------------------------------------------------------------------------------------
def project_policy(fake, version=None):
    body = {"options": {"requestedPolicyVersion": version}} if version else {}
    response = call(fake, "POST", "cloudresourcemanager", "/v3/projects/%s:getIamPolicy" % PROJECT, body)
    assert response.status_code == 200, response.text
    return response.json()


def set_project_policy(fake, policy, project=PROJECT):
    return call(fake, "POST", "cloudresourcemanager", "/v3/projects/%s:setIamPolicy" % project, {"policy": policy})


class TestResourceManager:
    def test_any_valid_project_exists_with_a_stable_number(self, fake_gcp):
        first = call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/some-other-project").json()
        assert first["projectId"] == "some-other-project" and first["state"] == "ACTIVE"
        number = first["name"].split("/")[1]
        assert number.isdigit()
        by_number = call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % number).json()
        assert by_number["projectId"] == "some-other-project"

    def test_policy_starts_with_an_owner(self, fake_gcp):
        policy = call(fake_gcp, "POST", "cloudresourcemanager", "/v3/projects/fresh-project-1:getIamPolicy", {}).json()
        assert {"role": "roles/owner", "members": ["user:owner@example.com"]} in policy["bindings"]
        assert policy["version"] == 1 and policy["etag"]

    def test_set_with_current_etag_then_stale_etag_is_aborted(self, fake_gcp, unique):
        policy = project_policy(fake_gcp)
        member = "user:dev-%s@example.com" % unique
        policy["bindings"].append({"role": "roles/viewer", "members": [member]})
        response = set_project_policy(fake_gcp, policy)
        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["etag"] != policy["etag"]
        assert member in next(b for b in updated["bindings"] if b["role"] == "roles/viewer")["members"]

        stale = dict(policy, bindings=[])
        error = error_of(set_project_policy(fake_gcp, stale), 409, "ABORTED")
        assert "concurrent policy changes" in error["message"]
        assert member in str(project_policy(fake_gcp)["bindings"])  # nothing lost

    def test_empty_policy_clears_bindings_but_missing_policy_is_rejected(self, fake_gcp, unique):
        project = "empty-pol-%s" % unique
        response = call(fake_gcp, "POST", "cloudresourcemanager", "/v3/projects/%s:setIamPolicy" % project, {"policy": {}})
        assert response.status_code == 200, response.text
        assert "bindings" not in response.json()
        error_of(call(fake_gcp, "POST", "cloudresourcemanager", "/v3/projects/%s:setIamPolicy" % project, {}), 400,
                 "INVALID_ARGUMENT")

    def test_set_without_etag_overwrites(self, fake_gcp):
        policy = project_policy(fake_gcp, 3)
        policy.pop("etag")
        response = set_project_policy(fake_gcp, policy)
        assert response.status_code == 200, response.text

    def test_etag_changes_on_every_set(self, fake_gcp):
        policy = project_policy(fake_gcp, 3)
        first = set_project_policy(fake_gcp, policy).json()["etag"]
        second = set_project_policy(fake_gcp, dict(policy, etag=first)).json()["etag"]
        assert len({policy["etag"], first, second}) == 3

    def test_bad_members_and_roles_are_rejected(self, fake_gcp):
        for member in ("alice@example.com", "user:not-an-email", "robot:r2d2@example.com", "domain:"):
            response = set_project_policy(fake_gcp, {"bindings": [{"role": "roles/viewer", "members": [member]}]})
            error_of(response, 400, "INVALID_ARGUMENT")
        for role in ("viewer", "role/viewer", "projects/p/viewer"):
            response = set_project_policy(fake_gcp, {"bindings": [{"role": role, "members": ["user:a@example.com"]}]})
            error_of(response, 400, "INVALID_ARGUMENT")

    def test_accepted_member_kinds(self, fake_gcp):
        policy = project_policy(fake_gcp, 3)
        members = ["allUsers", "allAuthenticatedUsers", "group:g@example.com", "domain:example.com",
                   "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s",
                   "deleted:user:gone@example.com?uid=123"]
        policy["bindings"].append({"role": "projects/%s/roles/custom" % PROJECT, "members": members})
        response = set_project_policy(fake_gcp, policy)
        assert response.status_code == 200, response.text
        assert sorted(members) in [b["members"] for b in response.json()["bindings"]]

    def test_unknown_user_managed_service_account_member(self, fake_gcp, unique):
        member = "serviceAccount:nobody-%s@%s.iam.gserviceaccount.com" % (unique, PROJECT)
        response = set_project_policy(fake_gcp, {"bindings": [{"role": "roles/viewer", "members": [member]}]})
        assert "does not exist" in error_of(response, 400, "INVALID_ARGUMENT")["message"]

    def test_conditions_need_version_3(self, fake_gcp, unique):
        condition = {"title": "t-%s" % unique, "expression": "request.time < timestamp('2030-01-01T00:00:00Z')"}
        policy = project_policy(fake_gcp, 3)
        policy["bindings"].append({"role": "roles/viewer", "members": ["user:c-%s@example.com" % unique],
                                   "condition": condition})
        error_of(set_project_policy(fake_gcp, dict(policy, version=1)), 400, "INVALID_ARGUMENT")
        response = set_project_policy(fake_gcp, dict(policy, version=3))
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 3
        # Read at version 1: the conditional binding is shown under a _withcond_ role, without its condition.
        flat = project_policy(fake_gcp)
        assert flat["version"] == 1
        assert any(b["role"].startswith("roles/viewer_withcond_") for b in flat["bindings"])
        assert not any("condition" in b for b in flat["bindings"])
        # Remove the condition again so other tests start from a version-1 policy.
        full = project_policy(fake_gcp, 3)
        full["bindings"] = [b for b in full["bindings"] if "condition" not in b]
        assert set_project_policy(fake_gcp, dict(full, version=3)).status_code == 200

    def test_condition_needs_title_and_expression(self, fake_gcp):
        binding = {"role": "roles/viewer", "members": ["user:a@example.com"], "condition": {"expression": "true"}}
        error_of(set_project_policy(fake_gcp, {"version": 3, "bindings": [binding]}), 400, "INVALID_ARGUMENT")

    def test_bindings_are_merged_and_sorted(self, fake_gcp, unique):
        policy = project_policy(fake_gcp, 3)
        policy["bindings"] += [{"role": "roles/browser", "members": ["user:b-%s@example.com" % unique]},
                               {"role": "roles/browser", "members": ["user:a-%s@example.com" % unique]},
                               {"role": "roles/editor", "members": []}]
        result = set_project_policy(fake_gcp, policy).json()
        browser = [b for b in result["bindings"] if b["role"] == "roles/browser"]
        assert len(browser) == 1 and browser[0]["members"] == sorted(browser[0]["members"])
        assert not any(b["role"] == "roles/editor" and not b["members"] for b in result["bindings"])


# ---- IAM service accounts ----------------------------------------------------------------------------------
class TestServiceAccounts:
    def test_lifecycle(self, fake_gcp, unique):
        account_id = "life-%s" % unique
        created = create_sa(fake_gcp, account_id, displayName="Life", description="first")
        email = "%s@%s.iam.gserviceaccount.com" % (account_id, PROJECT)
        assert created["name"] == "projects/%s/serviceAccounts/%s" % (PROJECT, email)
        assert created["projectId"] == PROJECT and created["uniqueId"].isdigit()
        assert call(fake_gcp, "GET", "iam", "/v1/projects/-/serviceAccounts/%s" % email).json()["email"] == email
        by_id = call(fake_gcp, "GET", "iam", "/v1/projects/%s/serviceAccounts/%s" % (PROJECT, created["uniqueId"]))
        assert by_id.json()["email"] == email

        listing = call(fake_gcp, "GET", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, params={"pageSize": 100})
        assert email in [a["email"] for a in listing.json()["accounts"]]

        patched = call(fake_gcp, "PATCH", "iam", sa_path(account_id),
                       {"serviceAccount": {"description": "second", "displayName": "ignored"},
                        "updateMask": "description"}).json()
        assert (patched["description"], patched["displayName"]) == ("second", "Life")

        assert call(fake_gcp, "POST", "iam", sa_path(account_id) + ":disable", {}).json() == {}
        assert call(fake_gcp, "GET", "iam", sa_path(account_id)).json()["disabled"] is True
        call(fake_gcp, "POST", "iam", sa_path(account_id) + ":enable", {})
        assert "disabled" not in call(fake_gcp, "GET", "iam", sa_path(account_id)).json()

        assert call(fake_gcp, "DELETE", "iam", sa_path(account_id)).json() == {}
        error = error_of(call(fake_gcp, "GET", "iam", sa_path(account_id)), 404, "NOT_FOUND")
        assert error["message"] == "Unknown service account"

    def test_invalid_account_ids(self, fake_gcp):
        for account_id in ("short", "Upper-case-id", "1starts-with-digit", "ends-with-dash-", "x" * 31, "under_score"):
            response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, {"accountId": account_id})
            error_of(response, 400, "INVALID_ARGUMENT")

    def test_duplicate_is_409(self, fake_gcp, unique):
        create_sa(fake_gcp, "dup-%s" % unique)
        response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT, {"accountId": "dup-%s" % unique})
        assert "already exists" in error_of(response, 409, "ALREADY_EXISTS")["message"]

    def test_patch_needs_an_update_mask_of_mutable_fields(self, fake_gcp, unique):
        create_sa(fake_gcp, "mask-%s" % unique)
        error_of(call(fake_gcp, "PATCH", "iam", sa_path("mask-%s" % unique), {"serviceAccount": {"description": "x"}}),
                 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "PATCH", "iam", sa_path("mask-%s" % unique),
                      {"serviceAccount": {"email": "x@example.com"}, "updateMask": "email"}), 400, "INVALID_ARGUMENT")

    def test_display_name_limit(self, fake_gcp, unique):
        response = call(fake_gcp, "POST", "iam", "/v1/projects/%s/serviceAccounts" % PROJECT,
                        {"accountId": "long-%s" % unique, "serviceAccount": {"displayName": "x" * 101}})
        error_of(response, 400, "INVALID_ARGUMENT")

    def test_unknown_account_operations_are_404(self, fake_gcp, unique):
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", ":disable"), ("POST", ":getIamPolicy")):
            error_of(call(fake_gcp, method, "iam", sa_path("ghost-%s" % unique) + suffix, {} if method == "POST" else None),
                     404, "NOT_FOUND")

    def test_policy_on_an_account_and_deleted_member(self, fake_gcp, unique):
        owner = create_sa(fake_gcp, "pol-%s" % unique)
        user = create_sa(fake_gcp, "usr-%s" % unique)
        path = sa_path("pol-%s" % unique)
        policy = call(fake_gcp, "POST", "iam", path + ":getIamPolicy").json()
        assert policy == {"version": 1, "etag": "ACAB"}
        binding = {"role": "roles/iam.serviceAccountUser", "members": ["serviceAccount:" + user["email"]]}
        response = call(fake_gcp, "POST", "iam", path + ":setIamPolicy",
                        {"policy": {"bindings": [binding], "etag": policy["etag"]}})
        assert response.status_code == 200, response.text
        error_of(call(fake_gcp, "POST", "iam", path + ":setIamPolicy",
                      {"policy": {"bindings": [], "etag": policy["etag"]}}), 409, "ABORTED")
        # Deleting the member account leaves a deleted: principal in the binding, as IAM does.
        call(fake_gcp, "DELETE", "iam", sa_path("usr-%s" % unique))
        members = call(fake_gcp, "POST", "iam", path + ":getIamPolicy").json()["bindings"][0]["members"]
        assert members == ["deleted:serviceAccount:%s?uid=%s" % (user["email"], user["uniqueId"])]
        assert owner["email"].startswith("pol-")

    def test_requested_policy_version_query(self, fake_gcp, unique):
        create_sa(fake_gcp, "ver-%s" % unique)
        response = call(fake_gcp, "POST", "iam", sa_path("ver-%s" % unique) + ":getIamPolicy",
                        params={"options.requestedPolicyVersion": "3"})
        assert response.status_code == 200, response.text
        error_of(call(fake_gcp, "POST", "iam", sa_path("ver-%s" % unique) + ":getIamPolicy",
                      params={"options.requestedPolicyVersion": "2"}), 400, "INVALID_ARGUMENT")


# ---- Service Usage -----------------------------------------------------------------------------------------
def service(fake, name, project=PROJECT):
    response = call(fake, "GET", "serviceusage", "/v1/projects/%s/services/%s" % (project, name))
    assert response.status_code == 200, response.text
    return response.json()


class TestServiceUsage:
    def test_get_names_the_project_by_number(self, fake_gcp):
        svc = service(fake_gcp, "storage.googleapis.com")
        number = call(fake_gcp, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT).json()["name"].split("/")[1]
        assert svc["name"] == "projects/%s/services/storage.googleapis.com" % number
        assert svc["state"] == "ENABLED" and svc["config"]["name"] == "storage.googleapis.com"

    def test_enable_operation_finishes_after_n_polls(self, fake_gcp, unique):
        project = "su-poll-%s" % unique
        fake_gcp.operation_polls = 3
        response = call(fake_gcp, "POST", "serviceusage", "/v1/projects/%s/services/secretmanager.googleapis.com:enable"
                        % project, {})
        operation = response.json()
        assert response.status_code == 200 and "done" not in operation
        assert operation["name"].startswith("operations/")
        assert service(fake_gcp, "secretmanager.googleapis.com", project)["state"] == "DISABLED"
        finished, polls = poll_lro(fake_gcp, "serviceusage", operation)
        assert polls == 3
        assert finished["response"]["service"]["state"] == "ENABLED"
        assert service(fake_gcp, "secretmanager.googleapis.com", project)["state"] == "ENABLED"

    def test_enable_already_enabled_is_a_done_noop(self, fake_gcp):
        response = call(fake_gcp, "POST", "serviceusage", "/v1/projects/%s/services/storage.googleapis.com:enable"
                        % PROJECT, {})
        assert response.json()["done"] is True
        assert response.json()["name"] == "operations/noop.DONE_OPERATION"

    def test_batch_enable_pulls_in_dependencies(self, fake_gcp, unique):
        project = "su-batch-%s" % unique
        response = call(fake_gcp, "POST", "serviceusage", "/v1/projects/%s/services:batchEnable" % project,
                        {"serviceIds": ["run.googleapis.com", "sqladmin.googleapis.com"]})
        finished, polls = poll_lro(fake_gcp, "serviceusage", response.json())
        assert polls == 1
        assert [s["config"]["name"] for s in finished["response"]["services"]] == [
            "run.googleapis.com", "sqladmin.googleapis.com"]
        for name in ("run.googleapis.com", "artifactregistry.googleapis.com", "iamcredentials.googleapis.com"):
            assert service(fake_gcp, name, project)["state"] == "ENABLED"

    def test_batch_enable_limits(self, fake_gcp):
        error_of(call(fake_gcp, "POST", "serviceusage", "/v1/projects/%s/services:batchEnable" % PROJECT,
                      {"serviceIds": []}), 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "POST", "serviceusage", "/v1/projects/%s/services:batchEnable" % PROJECT,
                      {"serviceIds": ["storage.googleapis.com"] * 21}), 400, "INVALID_ARGUMENT")

    def test_unknown_service_is_permission_denied(self, fake_gcp):
        error = error_of(call(fake_gcp, "POST", "serviceusage", "/v1/projects/%s/services:batchEnable" % PROJECT,
                              {"serviceIds": ["nosuch.googleapis.com"]}), 403, "PERMISSION_DENIED")
        assert "nosuch.googleapis.com" in error["message"]
        error_of(call(fake_gcp, "GET", "serviceusage", "/v1/projects/%s/services/nosuch.googleapis.com" % PROJECT), 403)

    def test_disable_with_enabled_dependents(self, fake_gcp, unique):
        project = "su-dis-%s" % unique
        fake_gcp.operation_polls = 0  # operations are done when returned
        operation = call(fake_gcp, "POST", "serviceusage", "/v1/projects/%s/services/run.googleapis.com:enable"
                         % project, {}).json()
        assert operation["done"] is True
        path = "/v1/projects/%s/services/artifactregistry.googleapis.com:disable" % project
        error = error_of(call(fake_gcp, "POST", "serviceusage", path, {}), 400, "FAILED_PRECONDITION")
        assert "run.googleapis.com" in error["message"]
        assert service(fake_gcp, "run.googleapis.com", project)["state"] == "ENABLED"
        done = call(fake_gcp, "POST", "serviceusage", path, {"disableDependentServices": True}).json()
        assert done["response"]["service"]["state"] == "DISABLED"
        assert service(fake_gcp, "run.googleapis.com", project)["state"] == "DISABLED"
        assert service(fake_gcp, "iamcredentials.googleapis.com", project)["state"] == "ENABLED"

    def test_failed_operation_leaves_service_disabled(self, fake_gcp, unique):
        project = "su-fail-%s" % unique
        fake_gcp.fail_operations(1, code="RESOURCE_EXHAUSTED", message="quota")
        operation = call(fake_gcp, "POST", "serviceusage", "/v1/projects/%s/services/compute.googleapis.com:enable"
                         % project, {}).json()
        finished, _polls = poll_lro(fake_gcp, "serviceusage", operation)
        assert finished["error"] == {"code": 8, "message": "quota"}
        assert "response" not in finished
        assert service(fake_gcp, "compute.googleapis.com", project)["state"] == "DISABLED"
        # Only one failure was planned: the next operation succeeds.
        operation = call(fake_gcp, "POST", "serviceusage", "/v1/projects/%s/services/compute.googleapis.com:enable"
                         % project, {}).json()
        assert "error" not in poll_lro(fake_gcp, "serviceusage", operation)[0]

    def test_list_filter_and_batch_get(self, fake_gcp, unique):
        project = "su-list-%s" % unique
        enabled = call(fake_gcp, "GET", "serviceusage", "/v1/projects/%s/services" % project,
                       params={"filter": "state:ENABLED"}).json()["services"]
        assert "storage.googleapis.com" in [s["config"]["name"] for s in enabled]
        assert {s["state"] for s in enabled} == {"ENABLED"}
        page = call(fake_gcp, "GET", "serviceusage", "/v1/projects/%s/services" % project, params={"pageSize": 5}).json()
        assert len(page["services"]) == 5 and page["nextPageToken"]
        names = ["projects/%s/services/%s" % (project, s) for s in ("sqladmin.googleapis.com", "storage.googleapis.com")]
        got = call(fake_gcp, "GET", "serviceusage", "/v1/projects/%s/services:batchGet" % project,
                   params={"names": names}).json()["services"]
        assert [s["state"] for s in got] == ["DISABLED", "ENABLED"]

    def test_unknown_operation_is_404(self, fake_gcp):
        error_of(call(fake_gcp, "GET", "serviceusage", "/v1/operations/acf.p2-nothing"), 404, "NOT_FOUND")

    def test_operation_polls_lowered_later_finishes_a_slow_operation(self, fake_gcp, unique):
        fake_gcp.operation_polls = 1000
        operation = call(fake_gcp, "POST", "serviceusage", "/v1/projects/su-slow-%s/services/iam.googleapis.com:enable"
                         % unique, {}).json()
        again = call(fake_gcp, "GET", "serviceusage", "/v1/" + operation["name"]).json()
        assert "done" not in again
        fake_gcp.operation_polls = 1
        assert call(fake_gcp, "GET", "serviceusage", "/v1/" + operation["name"]).json()["done"] is True


def test_standalone_server_prints_its_url_and_serves(tmp_path):
    """python -m tests.standins.fakegcp --port N: prints the URL, serves the control API and the APIs."""
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "tests.standins.fakegcp", "--port", str(port)], cwd=root,
                               stdout=subprocess.PIPE, stderr=(tmp_path / "stderr").open("w"), text=True)
    try:
        url = process.stdout.readline().strip()
        assert url == "http://127.0.0.1:%d" % port
        requests.post(url + "/_fake/operations", json={"polls": 0}, timeout=10)
        operation = requests.post(url + "/serviceusage/v1/projects/%s/services/run.googleapis.com:enable" % PROJECT,
                                  json={}, timeout=10).json()
        assert operation["done"] is True
        log = requests.get(url + "/_fake/requests", timeout=10).json()
        assert [(r["method"], r["api"]) for r in log["writes"]] == [("POST", "serviceusage")]
        assert requests.post(url + "/_fake/reset", timeout=10).status_code == 200
        state = requests.get(url + "/serviceusage/v1/projects/%s/services/run.googleapis.com" % PROJECT, timeout=10)
        assert state.json()["state"] == "DISABLED"  # reset drops the stored state too
    finally:
        process.terminate()
        process.wait(timeout=10)
