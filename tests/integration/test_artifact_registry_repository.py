"""artifact_registry_repository against the fake Artifact Registry API (tests/standins/fakegcp)."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import PROJECT

LOCATION = "europe-west1"
POLICIES = [
    {"id": "keep-recent", "action": "keep", "keep_count": 10},
    {"id": "drop-old", "action": "delete", "tag_state": "tagged", "tag_prefixes": ["ctx-"], "older_than": "30d"},
    {"id": "drop-untagged", "action": "delete", "tag_state": "untagged", "older_than": 604800},
]
POLICIES_API = {
    "keep-recent": {"id": "keep-recent", "action": "KEEP", "mostRecentVersions": {"keepCount": 10}},
    "drop-old": {"id": "drop-old", "action": "DELETE",
                 "condition": {"tagState": "TAGGED", "tagPrefixes": ["ctx-"], "olderThan": "2592000s"}},
    "drop-untagged": {"id": "drop-untagged", "action": "DELETE",
                      "condition": {"tagState": "UNTAGGED", "olderThan": "604800s"}},
}


@pytest.fixture
def repo(fake_gcp, gcp_module, unique):
    class Repo:
        name = "repo-" + unique
        full = "projects/%s/locations/%s/repositories/repo-%s" % (PROJECT, LOCATION, unique)
        url = "%s/v1/%s" % (fake_gcp.endpoints["artifactregistry"], full)

        def run(self, check=False, **options):
            args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=fake_gcp.endpoints, timeout=20,
                        name=self.name, location=LOCATION)
            args.update(options)
            return gcp_module("artifact_registry_repository", args, check=check)

        def read(self):
            response = requests.get(self.url, timeout=10)
            if response.status_code == 404:
                return None
            assert response.status_code == 200, response.text
            return response.json()

    return Repo()


def writes(fake):
    return [(w.method, w.path) for w in fake.writes()]


def test_lifecycle_create_unchanged_update_delete(repo, fake_gcp):
    options = dict(description="pipeline images", labels={"app": "mlops", "team": "ml"}, immutable_tags=False,
                   cleanup_policies=POLICIES, cleanup_policy_dry_run=True)
    created = repo.run(**options)
    assert created["rc"] == 0 and created["changed"] is True, created
    assert writes(fake_gcp) == [("POST", "/v1/projects/%s/locations/%s/repositories" % (PROJECT, LOCATION))]
    assert fake_gcp.writes()[0].query == {"repositoryId": repo.name}
    assert created["registry"] == "%s-docker.pkg.dev/%s/%s" % (LOCATION, PROJECT, repo.name)
    actual = repo.read()
    assert actual["format"] == "DOCKER" and actual["description"] == "pipeline images"
    assert actual["labels"] == {"app": "mlops", "team": "ml"}
    assert actual["cleanupPolicies"] == POLICIES_API and actual["cleanupPolicyDryRun"] is True
    assert created["repository"]["name"] == repo.full == actual["name"]
    assert created["repository"]["registryUri"] == created["registry"]
    assert "@type" not in created["repository"]

    fake_gcp.clear()
    again = repo.run(**options)
    assert again["rc"] == 0 and again["changed"] is False, again
    assert fake_gcp.writes() == [] and len(fake_gcp.requests) == 1, fake_gcp.requests

    # A label and a policy dropped, one policy changed: one PATCH naming the changed fields only.
    fake_gcp.clear()
    changed_policies = [dict(POLICIES[0], keep_count=5), POLICIES[1]]
    updated = repo.run(description="pipeline images", labels={"app": "mlops"}, cleanup_policies=changed_policies,
                       immutable_tags=True)
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert updated["changed_fields"] == ["cleanupPolicies", "dockerConfig", "labels"]
    assert writes(fake_gcp) == [("PATCH", "/v1/" + repo.full)]
    patch = fake_gcp.writes()[0]
    assert sorted(patch.query["updateMask"].split(",")) == ["cleanupPolicies", "dockerConfig.immutableTags", "labels"]
    assert set(patch.body) == {"cleanupPolicies", "dockerConfig", "labels"}
    actual = repo.read()
    assert actual["labels"] == {"app": "mlops"}
    assert actual["cleanupPolicies"] == {"keep-recent": dict(POLICIES_API["keep-recent"], mostRecentVersions={"keepCount": 5}),
                                         "drop-old": POLICIES_API["drop-old"]}
    assert actual["dockerConfig"] == {"immutableTags": True}
    assert actual["cleanupPolicyDryRun"] is True, "a field not set in this run stays"
    assert actual["description"] == "pipeline images"

    # Clearing: no policies, no labels, dry run off.
    cleared = repo.run(labels={}, cleanup_policies=[], cleanup_policy_dry_run=False, description="")
    assert cleared["rc"] == 0 and cleared["changed_fields"] == ["cleanupPolicies", "cleanupPolicyDryRun", "description",
                                                                "labels"], cleared
    actual = repo.read()
    assert not actual.get("labels") and not actual.get("cleanupPolicies") and not actual.get("cleanupPolicyDryRun")
    assert not actual.get("description")
    fake_gcp.clear()
    assert repo.run(labels={}, cleanup_policies=[], cleanup_policy_dry_run=False, description="")["changed"] is False
    assert fake_gcp.writes() == []

    fake_gcp.clear()
    deleted = repo.run(state="absent")
    assert deleted["rc"] == 0 and deleted["changed"] is True and deleted["repository"] == {}, deleted
    assert writes(fake_gcp) == [("DELETE", "/v1/" + repo.full)]
    assert "registry" not in deleted
    assert repo.read() is None

    fake_gcp.clear()
    gone = repo.run(state="absent")
    assert gone["rc"] == 0 and gone["changed"] is False and fake_gcp.writes() == [] and len(fake_gcp.requests) == 1


def test_create_waits_for_a_slow_operation(repo, fake_gcp):
    fake_gcp.operation_polls = 3
    created = repo.run(labels={"app": "mlops"})
    assert created["rc"] == 0 and created["changed"] is True, created
    polls = fake_gcp.calls("GET", r"artifactregistry/v1/projects/.*/operations/")
    assert len(polls) == 3
    assert created["repository"]["labels"] == {"app": "mlops"} and repo.read()["labels"] == {"app": "mlops"}


def test_check_mode_and_diff_write_nothing(repo, fake_gcp):
    preview = repo.run(check=True, description="images", labels={"app": "mlops"}, cleanup_policies=POLICIES[:1])
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert preview["diff"] == {"before": {}, "after": {
        "format": "DOCKER", "description": "images", "labels": {"app": "mlops"},
        "cleanupPolicies": {"keep-recent": POLICIES_API["keep-recent"]}}}
    assert fake_gcp.writes() == [] and repo.read() is None

    repo.run(description="images", labels={"app": "mlops"}, cleanup_policies=POLICIES[:1])
    fake_gcp.clear()
    preview = repo.run(check=True, description="other", labels={"app": "mlops", "env": "dev"},
                       cleanup_policies=POLICIES[:1])
    assert preview["changed"] is True and preview["changed_fields"] == ["description", "labels"]
    assert preview["diff"]["before"] == {"format": "DOCKER", "description": "images", "labels": {"app": "mlops"},
                                         "cleanupPolicies": {"keep-recent": POLICIES_API["keep-recent"]}}
    assert preview["diff"]["after"]["description"] == "other"
    assert preview["diff"]["after"]["labels"] == {"app": "mlops", "env": "dev"}
    assert fake_gcp.writes() == [] and repo.read()["description"] == "images"

    fake_gcp.clear()
    preview = repo.run(check=True, state="absent")
    assert preview["changed"] is True and fake_gcp.writes() == [] and repo.read() is not None


def test_format_is_immutable(repo, fake_gcp):
    response = requests.post("%s/v1/projects/%s/locations/%s/repositories" % (
        fake_gcp.endpoints["artifactregistry"], PROJECT, LOCATION), params={"repositoryId": repo.name},
        json={"format": "PYTHON"}, timeout=10)
    assert response.status_code == 200, response.text
    fake_gcp.complete_operations()
    assert repo.read()["format"] == "PYTHON"
    fake_gcp.clear()
    result = repo.run(description="x")
    assert result["rc"] == 1, result
    assert "format cannot be changed in place" in result["msg"] and "'PYTHON'" in result["msg"], result["msg"]
    assert repo.full in result["msg"]
    assert fake_gcp.writes() == []


@pytest.mark.parametrize("options, message", [
    ({"name": "Bad_Repo"}, "name 'Bad_Repo' must be 1 to 63 lowercase letters"),
    ({"location": "Europe West"}, "location 'Europe West' is not a location"),
    ({"labels": {"App": "x"}}, "label key 'App'"),
    ({"cleanup_policies": [{"id": "k", "action": "delete", "keep_count": 3}]}, "keep_count goes with action keep only"),
    ({"cleanup_policies": [{"id": "k", "action": "keep", "keep_count": 3, "older_than": "1d"}]},
     "keep_count cannot be combined with older_than"),
    ({"cleanup_policies": [{"id": "d", "action": "delete", "older_than": "a month"}]},
     "older_than must be a positive duration"),
    ({"cleanup_policies": [{"id": "d", "action": "delete", "tag_prefixes": ["v"]}]}, "tag_prefixes needs tag_state tagged"),
    ({"cleanup_policies": [{"id": "d", "action": "delete"}]}, "set at least one of"),
    ({"cleanup_policies": [{"id": "d", "action": "delete", "tag_state": "any"}] * 2}, "'d' is used twice"),
    ({"cleanup_policies": [{"id": "p%d" % i, "action": "delete", "tag_state": "any"} for i in range(11)]},
     "at most 10 cleanup policies"),
])
def test_bad_input_fails_before_any_request(repo, fake_gcp, options, message):
    result = repo.run(**options)
    assert result["rc"] == 1 and message in result["msg"], result
    assert fake_gcp.requests == []


def test_retryable_errors_are_retried(repo, fake_gcp):
    fake_gcp.inject(503, count=2, method="GET", path=r"artifactregistry/v1/projects/.*/repositories/")
    fake_gcp.inject(429, count=2, method="POST", path=r"artifactregistry/v1/projects/.*/repositories$")
    fake_gcp.inject(503, count=1, method="GET", path=r"artifactregistry/v1/projects/.*/operations/")
    result = repo.run(labels={"app": "mlops"})
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(fake_gcp.calls("POST", r"repositories$")) == 3
    assert repo.read()["labels"] == {"app": "mlops"}

    fake_gcp.clear()
    fake_gcp.inject(503, count=2, method="PATCH")
    result = repo.run(labels={"app": "other"})
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(fake_gcp.calls("PATCH")) == 3 and repo.read()["labels"] == {"app": "other"}


def test_lost_answer_on_create_converges(repo, fake_gcp):
    fake_gcp.inject(503, count=1, method="POST", path=r"artifactregistry/v1/projects/.*/repositories$", forward=True)
    # The client never learns the create's operation: it sees the repository appear as it reads it.
    result = repo.run(description="lost")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["repository"]["name"] == repo.full and result["repository"]["description"] == "lost"
    assert len(fake_gcp.calls("POST", r"repositories$")) == 2, "the retry met 409 ALREADY_EXISTS"
    fake_gcp.clear()
    again = repo.run(description="lost")
    assert again["changed"] is False and fake_gcp.writes() == []


def test_failed_operation_is_reported(repo, fake_gcp):
    fake_gcp.fail_operations(count=1, code=13, message="backend exploded")
    result = repo.run()
    assert result["rc"] == 1, result
    assert "backend exploded" in result["msg"] and repo.full in result["msg"], result["msg"]
    assert repo.read() is None
