"""Contract tests of the fake's Secret Manager v1, over plain HTTP."""

from __future__ import annotations

import base64

import google_crc32c
import pytest

from tests.integration.test_fakegcp_contract import PROJECT, call, create_sa, error_of

AUTOMATIC = {"automatic": {}}


def b64(text):
    return base64.b64encode(text.encode()).decode()


def secret_path(secret_id, project=PROJECT):
    return "/v1/projects/%s/secrets/%s" % (project, secret_id)


def create_secret(fake, secret_id, **fields):
    body = dict({"replication": AUTOMATIC}, **fields)
    response = call(fake, "POST", "secretmanager", "/v1/projects/%s/secrets" % PROJECT, body, {"secretId": secret_id})
    assert response.status_code == 200, response.text
    return response.json()


def add_version(fake, secret_id, text, **payload):
    response = call(fake, "POST", "secretmanager", secret_path(secret_id) + ":addVersion",
                    {"payload": dict({"data": b64(text)}, **payload)})
    assert response.status_code == 200, response.text
    return response.json()


def project_number(fake):
    return call(fake, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT).json()["name"].split("/")[1]


class TestSecrets:
    def test_create_get_list_delete(self, fake_gcp, unique):
        secret_id = "s-%s" % unique
        created = create_secret(fake_gcp, secret_id, labels={"app": "mlflow"})
        assert created["name"] == "projects/%s/secrets/%s" % (project_number(fake_gcp), secret_id)
        assert created["replication"] == AUTOMATIC and created["labels"] == {"app": "mlflow"}
        assert created["createTime"] and created["etag"].startswith('"') and created["etag"].endswith('"')
        assert call(fake_gcp, "GET", "secretmanager", secret_path(secret_id)).json() == created
        listing = call(fake_gcp, "GET", "secretmanager", "/v1/projects/%s/secrets" % PROJECT,
                       params={"filter": "labels.app=mlflow"}).json()
        assert created["name"] in [s["name"] for s in listing["secrets"]]
        assert call(fake_gcp, "DELETE", "secretmanager", secret_path(secret_id)).json() == {}
        error = error_of(call(fake_gcp, "GET", "secretmanager", secret_path(secret_id)), 404, "NOT_FOUND")
        assert "not found" in error["message"]

    def test_duplicate_is_409(self, fake_gcp, unique):
        create_secret(fake_gcp, "d-%s" % unique)
        response = call(fake_gcp, "POST", "secretmanager", "/v1/projects/%s/secrets" % PROJECT, {"replication": AUTOMATIC},
                        {"secretId": "d-%s" % unique})
        error_of(response, 409, "ALREADY_EXISTS")

    @pytest.mark.parametrize("body, params", [
        ({"replication": AUTOMATIC}, {}),                                          # no secretId
        ({"replication": AUTOMATIC}, {"secretId": "bad id!"}),                     # malformed secretId
        ({}, {"secretId": "no-replication"}),                                      # replication required
        ({"replication": {"automatic": {}, "userManaged": {"replicas": [{"location": "x"}]}}}, {"secretId": "two"}),
        ({"replication": {"userManaged": {"replicas": []}}}, {"secretId": "empty-replicas"}),
        ({"replication": AUTOMATIC, "labels": {"Bad": "x"}}, {"secretId": "bad-label"}),
        ({"replication": AUTOMATIC, "labels": "x"}, {"secretId": "labels-type"}),
        ({"replication": {"automatik": {}}}, {"secretId": "unknown-field"}),
        ({"replication": AUTOMATIC, "rotation": {"rotationPeriod": "3600s"}}, {"secretId": "rotation-no-topic"}),
        ({"replication": AUTOMATIC, "ttl": "1 day"}, {"secretId": "bad-duration"}),
    ])
    def test_create_rejects(self, fake_gcp, body, params):
        response = call(fake_gcp, "POST", "secretmanager", "/v1/projects/%s/secrets" % PROJECT, body, params)
        error_of(response, 400, "INVALID_ARGUMENT")

    def test_output_only_fields_ignored(self, fake_gcp, unique):
        created = create_secret(fake_gcp, "oo-%s" % unique, name="projects/x/secrets/evil",
                                createTime="2000-01-01T00:00:00Z")
        assert created["name"].endswith("/secrets/oo-%s" % unique)
        assert not created["createTime"].startswith("2000")
        # An output-only field the handler never sets is dropped by the discovery-driven validation.
        other = create_secret(fake_gcp, "oo2-%s" % unique, policyMember={"iamPolicyNamePrincipal": "principal://x"})
        assert "policyMember" not in other

    def test_user_managed_replication(self, fake_gcp, unique):
        replication = {"userManaged": {"replicas": [{"location": "europe-west1"}, {"location": "europe-west4"}]}}
        create_secret(fake_gcp, "um-%s" % unique, replication=replication)
        version = add_version(fake_gcp, "um-%s" % unique, "v")
        assert version["replicationStatus"] == {"userManaged": {"replicas": [{"location": "europe-west1"},
                                                                             {"location": "europe-west4"}]}}


class TestPatch:
    def test_patch_labels_with_mask_changes_etag(self, fake_gcp, unique):
        secret = create_secret(fake_gcp, "p-%s" % unique, labels={"a": "1"})
        response = call(fake_gcp, "PATCH", "secretmanager", secret_path("p-%s" % unique),
                        {"labels": {"b": "2"}, "etag": secret["etag"]}, {"updateMask": "labels"})
        assert response.status_code == 200, response.text
        patched = response.json()
        assert patched["labels"] == {"b": "2"} and patched["etag"] != secret["etag"]

    def test_patch_without_mask_is_rejected(self, fake_gcp, unique):
        create_secret(fake_gcp, "nm-%s" % unique)
        response = call(fake_gcp, "PATCH", "secretmanager", secret_path("nm-%s" % unique), {"labels": {"b": "2"}})
        error_of(response, 400, "INVALID_ARGUMENT")

    def test_replication_is_immutable(self, fake_gcp, unique):
        create_secret(fake_gcp, "im-%s" % unique)
        response = call(fake_gcp, "PATCH", "secretmanager", secret_path("im-%s" % unique),
                        {"replication": {"userManaged": {"replicas": [{"location": "us-east1"}]}}},
                        {"updateMask": "replication"})
        assert "immutable" in error_of(response, 400, "INVALID_ARGUMENT")["message"]

    def test_stale_etag_is_failed_precondition(self, fake_gcp, unique):
        secret = create_secret(fake_gcp, "st-%s" % unique)
        call(fake_gcp, "PATCH", "secretmanager", secret_path("st-%s" % unique), {"labels": {"x": "1"}},
             {"updateMask": "labels"})
        response = call(fake_gcp, "PATCH", "secretmanager", secret_path("st-%s" % unique),
                        {"labels": {"y": "2"}, "etag": secret["etag"]}, {"updateMask": "labels"})
        error_of(response, 400, "FAILED_PRECONDITION")
        assert call(fake_gcp, "GET", "secretmanager", secret_path("st-%s" % unique)).json()["labels"] == {"x": "1"}
        error_of(call(fake_gcp, "DELETE", "secretmanager", secret_path("st-%s" % unique),
                      params={"etag": secret["etag"]}), 400, "FAILED_PRECONDITION")

    def test_mask_clears_absent_field(self, fake_gcp, unique):
        create_secret(fake_gcp, "cl-%s" % unique, labels={"a": "1"})
        patched = call(fake_gcp, "PATCH", "secretmanager", secret_path("cl-%s" % unique), {},
                       {"updateMask": "labels"}).json()
        assert "labels" not in patched

    def test_version_aliases_must_point_to_versions(self, fake_gcp, unique):
        create_secret(fake_gcp, "al-%s" % unique)
        error_of(call(fake_gcp, "PATCH", "secretmanager", secret_path("al-%s" % unique),
                      {"versionAliases": {"prod": "1"}}, {"updateMask": "version_aliases"}), 400, "INVALID_ARGUMENT")
        add_version(fake_gcp, "al-%s" % unique, "one")
        response = call(fake_gcp, "PATCH", "secretmanager", secret_path("al-%s" % unique),
                        {"versionAliases": {"prod": "1"}}, {"updateMask": "version_aliases"})
        assert response.json()["versionAliases"] == {"prod": "1"}
        version = call(fake_gcp, "GET", "secretmanager", secret_path("al-%s" % unique) + "/versions/prod").json()
        assert version["name"].endswith("/versions/1")


class TestVersions:
    def test_add_access_latest_and_list(self, fake_gcp, unique):
        secret_id = "v-%s" % unique
        create_secret(fake_gcp, secret_id)
        error_of(call(fake_gcp, "GET", "secretmanager", secret_path(secret_id) + "/versions/latest"), 404, "NOT_FOUND")
        first = add_version(fake_gcp, secret_id, "one")
        second = add_version(fake_gcp, secret_id, "two", dataCrc32c=str(google_crc32c.value(b"two")))
        assert first["name"].endswith("/versions/1") and first["state"] == "ENABLED"
        assert second["clientSpecifiedPayloadChecksum"] is True and "clientSpecifiedPayloadChecksum" not in first
        latest = call(fake_gcp, "GET", "secretmanager", secret_path(secret_id) + "/versions/latest").json()
        assert latest["name"] == second["name"]
        access = call(fake_gcp, "GET", "secretmanager", secret_path(secret_id) + "/versions/1:access").json()
        assert base64.b64decode(access["payload"]["data"]) == b"one"
        assert access["payload"]["dataCrc32c"] == str(google_crc32c.value(b"one"))
        listing = call(fake_gcp, "GET", "secretmanager", secret_path(secret_id) + "/versions").json()
        assert [v["name"] for v in listing["versions"]] == [second["name"], first["name"]]  # newest first
        assert not [c for c in fake_gcp.writes() if c.path.endswith(":access")]

    def test_checksum_mismatch_and_bad_payloads(self, fake_gcp, unique):
        secret_id = "ck-%s" % unique
        create_secret(fake_gcp, secret_id)
        path = secret_path(secret_id) + ":addVersion"
        error_of(call(fake_gcp, "POST", "secretmanager", path, {"payload": {"data": b64("x"), "dataCrc32c": "1"}}),
                 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "POST", "secretmanager", path, {"payload": {"data": "***"}}), 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "POST", "secretmanager", path, {"payload": {"data": ""}}), 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "POST", "secretmanager", path, {}), 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "POST", "secretmanager", path,
                      {"payload": {"data": base64.b64encode(b"x" * (64 * 1024 + 1)).decode()}}), 400)
        assert call(fake_gcp, "GET", "secretmanager", secret_path(secret_id) + "/versions").json() == {"totalSize": 0}

    def test_disable_enable_destroy(self, fake_gcp, unique):
        secret_id = "st8-%s" % unique
        create_secret(fake_gcp, secret_id)
        version = add_version(fake_gcp, secret_id, "pw")
        base = secret_path(secret_id) + "/versions/1"
        disabled = call(fake_gcp, "POST", "secretmanager", base + ":disable", {}).json()
        assert disabled["state"] == "DISABLED" and disabled["etag"] != version["etag"]
        assert "DISABLED" in error_of(call(fake_gcp, "GET", "secretmanager", base + ":access"), 400,
                                      "FAILED_PRECONDITION")["message"]
        # A stale etag on a state change is refused.
        error_of(call(fake_gcp, "POST", "secretmanager", base + ":enable", {"etag": version["etag"]}), 400,
                 "FAILED_PRECONDITION")
        assert call(fake_gcp, "POST", "secretmanager", base + ":enable", {"etag": disabled["etag"]}).json()["state"] == "ENABLED"
        filtered = call(fake_gcp, "GET", "secretmanager", secret_path(secret_id) + "/versions",
                        params={"filter": "state:ENABLED"}).json()
        assert filtered["totalSize"] == 1
        destroyed = call(fake_gcp, "POST", "secretmanager", base + ":destroy", {}).json()
        assert destroyed["state"] == "DESTROYED" and destroyed["destroyTime"]
        error_of(call(fake_gcp, "POST", "secretmanager", base + ":enable", {}), 400, "FAILED_PRECONDITION")
        error_of(call(fake_gcp, "GET", "secretmanager", base + ":access"), 400, "FAILED_PRECONDITION")
        assert call(fake_gcp, "GET", "secretmanager", secret_path(secret_id) + "/versions",
                    params={"filter": "state:ENABLED"}).json() == {"totalSize": 0}

    def test_unknown_version_and_secret(self, fake_gcp, unique):
        create_secret(fake_gcp, "uv-%s" % unique)
        error_of(call(fake_gcp, "GET", "secretmanager", secret_path("uv-%s" % unique) + "/versions/7"), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "POST", "secretmanager", secret_path("nope-%s" % unique) + ":addVersion",
                      {"payload": {"data": b64("x")}}), 404, "NOT_FOUND")


class TestSecretIam:
    def test_get_is_a_get_and_set_checks_etag(self, fake_gcp, unique):
        secret_id = "iam-%s" % unique
        create_secret(fake_gcp, secret_id)
        account = create_sa(fake_gcp, "acc-%s" % unique)
        policy = call(fake_gcp, "GET", "secretmanager", secret_path(secret_id) + ":getIamPolicy",
                      params={"options.requestedPolicyVersion": 3}).json()
        assert policy == {"version": 1, "etag": "ACAB"}
        binding = {"role": "roles/secretmanager.secretAccessor", "members": ["serviceAccount:" + account["email"]]}
        response = call(fake_gcp, "POST", "secretmanager", secret_path(secret_id) + ":setIamPolicy",
                        {"policy": {"bindings": [binding], "etag": policy["etag"]}})
        assert response.status_code == 200, response.text
        assert response.json()["bindings"] == [binding]
        error_of(call(fake_gcp, "POST", "secretmanager", secret_path(secret_id) + ":setIamPolicy",
                      {"policy": {"bindings": [], "etag": policy["etag"]}}), 409, "ABORTED")
        assert len(fake_gcp.writes()) == 4  # secret, account, two setIamPolicy; getIamPolicy is no write
        error_of(call(fake_gcp, "GET", "secretmanager", secret_path("none-%s" % unique) + ":getIamPolicy"), 404)

    def test_policy_is_removed_with_the_secret(self, fake_gcp, unique):
        secret_id = "gone-%s" % unique
        create_secret(fake_gcp, secret_id)
        call(fake_gcp, "POST", "secretmanager", secret_path(secret_id) + ":setIamPolicy",
             {"policy": {"bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"]}]}})
        call(fake_gcp, "DELETE", "secretmanager", secret_path(secret_id))
        create_secret(fake_gcp, secret_id)
        policy = call(fake_gcp, "GET", "secretmanager", secret_path(secret_id) + ":getIamPolicy").json()
        assert "bindings" not in policy
