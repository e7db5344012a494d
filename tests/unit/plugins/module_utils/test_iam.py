"""The pure parts of module_utils/iam.py: validation, binding edits, resource names, and the retry loop."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError
from ansible_collections.deployml.mlops.plugins.module_utils.iam import (
    RESOURCE_TYPES,
    PolicyTarget,
    add_member,
    binding_view,
    condition_error,
    has_member,
    member_error,
    normalize_member,
    remove_member,
    role_error,
    service_account_email,
    update_policy,
)

SA = "serviceAccount:mlflow@p.iam.gserviceaccount.com"
UNTIL = {"title": "until-2027", "description": None, "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")'}


def policy(*bindings, etag="BwE=", version=1):
    return {"version": version, "etag": etag, "bindings": [copy.deepcopy(b) for b in bindings]}


VIEWER = {"role": "roles/viewer", "members": ["user:bob@example.com"]}


# --- validation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("member", [
    "user:alice@example.com", SA, "group:ml@example.com", "domain:example.com", "allUsers", "allAuthenticatedUsers",
    "serviceAccount:p.svc.id.goog[ns/ksa]",
    "principal://iam.googleapis.com/locations/global/workforcePools/pool/subject/alice",
    "principalSet://iam.googleapis.com/locations/global/workforcePools/pool/group/ml",
])
def test_valid_members(member):
    assert member_error(member) is None


@pytest.mark.parametrize("member, hint", [
    ("alice@example.com", "user:EMAIL"),
    ("user:alice", "email"),
    ("serviceAccount:mlflow", "service account email"),
    ("domain:localhost", "domain name"),
    ("principal:alice", "//iam.googleapis.com/"),
    ("owner:alice@example.com", "unknown member type 'owner'"),
    ("allusers", "user:EMAIL"),
    ("user:", "user:EMAIL"),
])
def test_invalid_members_say_why(member, hint):
    assert hint in member_error(member)


@pytest.mark.parametrize("role", ["roles/viewer", "roles/secretmanager.secretAccessor", "projects/my-project/roles/mlopsRunner",
                                  "organizations/1234/roles/custom.role"])
def test_valid_roles(role):
    assert role_error(role) is None


@pytest.mark.parametrize("role", ["viewer", "roles/", "roles/a b", "projects/p/roles/x", "organizations/acme/roles/abc",
                                  "folders/1/roles/abc"])
def test_invalid_roles(role):
    assert "roles/NAME" in role_error(role)


def test_condition_needs_title_and_expression():
    assert condition_error(None) is None
    assert condition_error(UNTIL) is None
    assert "title and expression" in condition_error({"title": " ", "expression": ""})
    assert "expression" in condition_error({"title": "t", "expression": None})
    assert "100" in condition_error({"title": "t" * 101, "expression": "true"})


def test_members_normalize_email_case_only():
    assert normalize_member("user:Alice@Example.COM") == "user:alice@example.com"
    assert normalize_member("allUsers") == "allUsers"
    principal = "principal://iam.googleapis.com/locations/global/workforcePools/P/subject/Alice"
    assert normalize_member(principal) == principal


# --- add_member -------------------------------------------------------------------------------------------

def test_add_to_existing_binding_keeps_the_other_members_and_bindings():
    before = policy(VIEWER, {"role": "roles/editor", "members": ["user:carol@example.com"]})
    after = add_member(before, "roles/editor", SA)
    assert after["bindings"] == [VIEWER, {"role": "roles/editor", "members": ["user:carol@example.com", SA]}]
    assert after["etag"] == "BwE=" and after["version"] == 1
    assert before["bindings"][1]["members"] == ["user:carol@example.com"], "the policy read is not modified"


def test_add_creates_binding_when_role_is_new():
    after = add_member(policy(VIEWER), "roles/run.invoker", SA)
    assert after["bindings"][-1] == {"role": "roles/run.invoker", "members": [SA]}
    assert after["bindings"][0] == VIEWER


def test_add_to_a_policy_without_bindings():
    after = add_member({"etag": "ACAB", "version": 1}, "roles/viewer", SA)
    assert after == {"etag": "ACAB", "version": 1, "bindings": [{"role": "roles/viewer", "members": [SA]}]}


def test_add_is_none_when_member_already_bound_whatever_the_case():
    assert add_member(policy(VIEWER), "roles/viewer", "user:Bob@Example.com") is None


def test_conditional_binding_is_its_own_binding_and_sets_version_3():
    before = policy(VIEWER)
    after = add_member(before, "roles/viewer", SA, UNTIL)
    assert after["version"] == 3
    assert after["bindings"][0] == VIEWER, "the unconditional binding of the same role is untouched"
    assert after["bindings"][1] == {"role": "roles/viewer", "members": [SA],
                                    "condition": {"title": "until-2027", "expression": UNTIL["expression"]}}
    assert not has_member(after, "roles/viewer", SA), "granted only under the condition"
    assert has_member(after, "roles/viewer", SA, UNTIL)
    assert add_member(after, "roles/viewer", SA, dict(UNTIL, description="")) is None, "no description == empty one"
    other = add_member(after, "roles/viewer", SA, dict(UNTIL, expression="true"))
    assert len(other["bindings"]) == 3, "another expression is another binding"


def test_policy_holding_conditions_keeps_version_3_on_unconditional_add():
    before = policy({"role": "roles/viewer", "members": [SA], "condition": {"title": "t", "expression": "true"}},
                    version=3)
    assert add_member(before, "roles/editor", SA)["version"] == 3


# --- remove_member ----------------------------------------------------------------------------------------

def test_remove_keeps_the_rest_of_the_binding():
    before = policy({"role": "roles/editor", "members": ["user:carol@example.com", SA]}, VIEWER)
    after = remove_member(before, "roles/editor", SA)
    assert after["bindings"] == [{"role": "roles/editor", "members": ["user:carol@example.com"]}, VIEWER]


def test_removing_the_last_member_removes_the_binding():
    before = policy({"role": "roles/editor", "members": [SA]}, VIEWER)
    assert remove_member(before, "roles/editor", SA)["bindings"] == [VIEWER]


def test_remove_matches_case_insensitively_and_from_split_bindings():
    before = policy({"role": "roles/editor", "members": ["user:Carol@example.com"]},
                    {"role": "roles/editor", "members": ["user:carol@example.com", SA]})
    after = remove_member(before, "roles/editor", "user:carol@example.com")
    assert after["bindings"] == [{"role": "roles/editor", "members": [SA]}]


def test_remove_is_none_when_not_bound_or_bound_under_another_condition():
    conditional = policy({"role": "roles/viewer", "members": [SA], "condition": {"title": "t", "expression": "true"}})
    assert remove_member(conditional, "roles/viewer", SA) is None
    assert remove_member(policy(VIEWER), "roles/editor", "user:bob@example.com") is None
    assert remove_member({}, "roles/editor", SA) is None
    assert remove_member(conditional, "roles/viewer", SA, {"title": "t", "expression": "true"})["bindings"] == []


def test_binding_view_merges_split_bindings_and_shows_condition():
    split = policy({"role": "roles/editor", "members": ["user:b@example.com"]},
                   {"role": "roles/editor", "members": ["user:a@example.com"]}, VIEWER)
    assert binding_view(split, "roles/editor") == {"role": "roles/editor",
                                                   "members": ["user:a@example.com", "user:b@example.com"]}
    assert binding_view(split, "roles/owner") == {}
    with_condition = add_member(policy(), "roles/viewer", SA, UNTIL)
    assert binding_view(with_condition, "roles/viewer", UNTIL)["condition"] == {
        "title": "until-2027", "expression": UNTIL["expression"]}
    assert binding_view(with_condition, "roles/viewer") == {}


# --- resource names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, resource, path, name", [
    ("project", "my-project", "/v3/projects/my-project", "projects/my-project"),
    ("project", "projects/example.com:my-project", "/v3/projects/example.com:my-project",
     "projects/example.com:my-project"),
    ("bucket", "my-bucket", "/storage/v1/b/my-bucket", "projects/_/buckets/my-bucket"),
    ("bucket", "gs://my-bucket/", "/storage/v1/b/my-bucket", "projects/_/buckets/my-bucket"),
    ("secret", "db-password", "/v1/projects/p-one/secrets/db-password", "projects/p-one/secrets/db-password"),
    ("secret", "projects/other/secrets/s", "/v1/projects/other/secrets/s", "projects/other/secrets/s"),
    ("service_account", "mlflow", "/v1/projects/p-one/serviceAccounts/mlflow@p-one.iam.gserviceaccount.com",
     "projects/p-one/serviceAccounts/mlflow@p-one.iam.gserviceaccount.com"),
    ("service_account", "x-1@other.iam.gserviceaccount.com",
     "/v1/projects/p-one/serviceAccounts/x-1@other.iam.gserviceaccount.com",
     "projects/p-one/serviceAccounts/x-1@other.iam.gserviceaccount.com"),
])
def test_resource_names(kind, resource, path, name):
    assert RESOURCE_TYPES[kind].parse(resource, "p-one") == (path, name)


RUN = "projects/proj-one/locations/us-central1"


@pytest.mark.parametrize("kind, resource, path, name", [
    ("cloud_run_service", "us-central1/mlflow", "/v2/%s/services/mlflow" % RUN, RUN + "/services/mlflow"),
    ("cloud_run_service", "projects/other-proj/locations/europe-west4/services/api",
     "/v2/projects/other-proj/locations/europe-west4/services/api",
     "projects/other-proj/locations/europe-west4/services/api"),
    ("cloud_run_service", "northamerica-northeast1/s", "/v2/projects/proj-one/locations/northamerica-northeast1/services/s",
     "projects/proj-one/locations/northamerica-northeast1/services/s"),
    ("cloud_run_service", "us-central1/" + "a" * 49, "/v2/%s/services/%s" % (RUN, "a" * 49), "%s/services/%s" % (RUN, "a" * 49)),
    ("cloud_run_job", "us-central1/drift-check", "/v2/%s/jobs/drift-check" % RUN, RUN + "/jobs/drift-check"),
    ("cloud_run_job", "projects/123456/locations/us-east4/jobs/migrate", "/v2/projects/123456/locations/us-east4/jobs/migrate",
     "projects/123456/locations/us-east4/jobs/migrate"),
    ("cloud_run_job", "us-central1/" + "j" * 63, "/v2/%s/jobs/%s" % (RUN, "j" * 63), "%s/jobs/%s" % (RUN, "j" * 63)),
    ("bigquery_table", "mlops.predictions", "/bigquery/v2/projects/proj-one/datasets/mlops/tables/predictions",
     "projects/proj-one/datasets/mlops/tables/predictions"),
    ("bigquery_table", "other-proj.ml_ops.predictions_2026", "/bigquery/v2/projects/other-proj/datasets/ml_ops/tables/predictions_2026",
     "projects/other-proj/datasets/ml_ops/tables/predictions_2026"),
    ("bigquery_table", "projects/example.com:ml-proj/datasets/d/tables/daily-scores",
     "/bigquery/v2/projects/example.com:ml-proj/datasets/d/tables/daily-scores", "projects/example.com:ml-proj/datasets/d/tables/daily-scores"),
])
def test_cloud_run_and_bigquery_resource_names(kind, resource, path, name):
    assert RESOURCE_TYPES[kind].parse(resource, "proj-one") == (path, name)


@pytest.mark.parametrize("kind, resource, hint", [
    ("cloud_run_service", "mlflow", "LOCATION/NAME"),
    ("cloud_run_service", "us-central1/mlflow/x", "LOCATION/NAME"),
    ("cloud_run_service", RUN + "/jobs/mlflow", "LOCATION/NAME"),
    ("cloud_run_service", "us-central1/Mlflow", "lowercase"),
    ("cloud_run_service", "us-central1/1mlflow", "starting with a letter"),
    ("cloud_run_service", "us-central1/mlflow-", "not ending with '-'"),
    ("cloud_run_service", "us-central1/" + "a" * 50, "1-49 characters"),
    ("cloud_run_service", "us-central1/", "needs"),
    ("cloud_run_service", "US-CENTRAL1/mlflow", "location"),
    ("cloud_run_service", "projects/My_P/locations/us-central1/services/s", "project 'My_P'"),
    ("cloud_run_job", "us-central1/" + "j" * 64, "1-63 characters"),
    ("cloud_run_job", RUN + "/services/drift", "LOCATION/NAME"),
    ("cloud_run_job", "us-central1/drift_check", "lowercase"),
    ("bigquery_table", "predictions", "DATASET.TABLE"),
    ("bigquery_table", "a.b.c.d", "DATASET.TABLE"),
    ("bigquery_table", "mlops/predictions", "DATASET.TABLE"),
    ("bigquery_table", "ml-ops.predictions", "dataset ID 'ml-ops'"),
    ("bigquery_table", "mlops.", "table ID ''"),
    ("bigquery_table", "mlops.pred*", "table ID 'pred*'"),
    ("bigquery_table", "Bad_Project.mlops.predictions", "project 'Bad_Project'"),
    ("bigquery_table", "projects/proj-one/datasets/d/views/v", "DATASET.TABLE"),
])
def test_bad_cloud_run_and_bigquery_names_say_why(kind, resource, hint):
    with pytest.raises(ValueError) as error:
        RESOURCE_TYPES[kind].parse(resource, "proj-one")
    assert hint in str(error.value)


class RecordingClient:
    """Stands in for GcpClient: records what PolicyTarget asks for and answers with a policy."""

    def __init__(self):
        self.calls = []

    def request(self, method, api, path, resource=None, params=None, body=None):
        self.calls.append((method, api, path, resource, params, body))
        return {"version": 1, "etag": "e1"}


@pytest.mark.parametrize("kind, resource, read, write", [
    ("cloud_run_service", "us-central1/api",
     ("GET", "run", "/v2/%s/services/api:getIamPolicy" % RUN, RUN + "/services/api", {"options.requestedPolicyVersion": 3}, None),
     ("POST", "run", "/v2/%s/services/api:setIamPolicy" % RUN)),
    ("cloud_run_job", "us-central1/drift",
     ("GET", "run", "/v2/%s/jobs/drift:getIamPolicy" % RUN, RUN + "/jobs/drift", {"options.requestedPolicyVersion": 3}, None),
     ("POST", "run", "/v2/%s/jobs/drift:setIamPolicy" % RUN)),
    ("bigquery_table", "mlops.predictions",
     ("POST", "bigquery", "/bigquery/v2/projects/proj-one/datasets/mlops/tables/predictions:getIamPolicy",
      "projects/proj-one/datasets/mlops/tables/predictions", None, {"options": {"requestedPolicyVersion": 3}}),
     ("POST", "bigquery", "/bigquery/v2/projects/proj-one/datasets/mlops/tables/predictions:setIamPolicy")),
])
def test_requests_follow_each_api(kind, resource, read, write):
    client = RecordingClient()
    target = PolicyTarget(client, kind, resource, "proj-one")
    target.read()
    new = add_member({"version": 1, "etag": "e1", "auditConfigs": [{"service": "allServices"}]}, "roles/run.invoker", SA)
    target.write(new)
    assert client.calls[0] == read
    assert client.calls[1][:3] == write and client.calls[1][4] is None
    assert client.calls[1][5] == {"policy": {"version": 1, "etag": "e1",
                                             "bindings": [{"role": "roles/run.invoker", "members": [SA]}]}}


def test_a_stale_bigquery_etag_is_a_race_whether_409_or_412():
    assert set(RESOURCE_TYPES["bigquery_table"].conflict) == {409, 412}
    first = policy(VIEWER, etag="e1")
    target = ScriptedTarget([first, policy(VIEWER, etag="e2")], [conflict(412), policy(etag="e3")], kind="bigquery_table",
                            resource="mlops.predictions")
    update = update_policy(target, grant, sleep=lambda s: None)
    assert update.changed and update.attempts == 2 and [p["etag"] for p in target.sent] == ["e1", "e2"]


@pytest.mark.parametrize("kind, resource", [
    ("project", "My_Project"), ("bucket", "Bad Bucket"), ("secret", "a/b"), ("secret", "bad.secret"),
    ("service_account", "ab"), ("service_account", "projects/p/secrets/x"), ("service_account", "a@b"),
])
def test_bad_resource_names(kind, resource):
    with pytest.raises(ValueError):
        RESOURCE_TYPES[kind].parse(resource, "p-one")


def test_service_account_email_of_a_domain_scoped_project():
    assert service_account_email("runner", "example.com:ml") == "runner@ml.example.com.iam.gserviceaccount.com"


# --- update_policy: the read-modify-write loop, against a scripted target ------------------------------

class ScriptedTarget(PolicyTarget):
    """A PolicyTarget whose reads and writes come from a script instead of HTTP."""

    def __init__(self, reads, writes, kind="project", resource="proj-one"):
        super().__init__(client=None, resource_type=kind, resource=resource, project="proj-one")
        self.reads, self.writes, self.sent = list(reads), list(writes), []

    def read(self):
        return copy.deepcopy(self.reads.pop(0))

    def write(self, policy):
        self.sent.append(policy)
        answer = self.writes.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def grant(p):
    return add_member(p, "roles/editor", SA)


def conflict(status=409):
    return GcpApiError(status, "ABORTED", "stale etag", resource="projects/p-one")


def test_conflict_is_retried_from_a_fresh_read_keeping_the_other_writers_binding():
    first = policy(VIEWER, etag="e1")
    raced = policy(VIEWER, {"role": "roles/run.invoker", "members": ["user:other@example.com"]}, etag="e2")
    final = add_member(raced, "roles/editor", SA)
    target = ScriptedTarget([first, raced], [conflict(), dict(final, etag="e3")])
    update = update_policy(target, grant, sleep=lambda s: None)
    assert update.changed and update.attempts == 2
    assert target.sent[0]["etag"] == "e1" and target.sent[1]["etag"] == "e2"
    assert {"role": "roles/run.invoker", "members": ["user:other@example.com"]} in target.sent[1]["bindings"]
    assert update.after["etag"] == "e3"


def test_conflict_while_the_etag_did_not_move_is_not_retried():
    first = policy(VIEWER, etag="e1")
    target = ScriptedTarget([first, first], [conflict(412)], kind="bucket")
    with pytest.raises(GcpApiError) as error:
        update_policy(target, grant, sleep=lambda s: None)
    assert error.value.status == 412 and len(target.sent) == 1


def test_other_errors_are_not_retried():
    target = ScriptedTarget([policy(etag="e1")], [GcpApiError(400, "INVALID_ARGUMENT", "bad")])
    with pytest.raises(GcpApiError) as error:
        update_policy(target, grant, sleep=lambda s: None)
    assert error.value.status == 400 and len(target.sent) == 1


def test_bounded_attempts_on_a_policy_that_keeps_changing():
    reads = [policy(etag="e%d" % i) for i in range(3)]
    target = ScriptedTarget(reads, [conflict(), conflict(), conflict()])
    with pytest.raises(GcpApiError) as error:
        update_policy(target, grant, attempts=3, sleep=lambda s: None)
    assert "gave up after 3" in error.value.message and len(target.sent) == 3


def test_write_whose_answer_was_lost_counts_as_a_change():
    """The first write went through but its answer was lost: the retry finds the member already bound."""
    first = policy(VIEWER, etag="e1")
    target = ScriptedTarget([first, add_member(first, "roles/editor", SA)], [conflict()])
    target.reads[1]["etag"] = "e2"
    update = update_policy(target, grant, sleep=lambda s: None)
    assert update.changed is True and len(target.sent) == 1


def test_no_change_and_check_mode_never_write():
    bound = add_member(policy(etag="e1"), "roles/editor", SA)
    target = ScriptedTarget([bound], [])
    update = update_policy(target, grant)
    assert update.changed is False and target.sent == []
    target = ScriptedTarget([policy(etag="e1")], [])
    update = update_policy(target, grant, check_mode=True)
    assert update.changed is True and target.sent == [] and has_member(update.after, "roles/editor", SA)
