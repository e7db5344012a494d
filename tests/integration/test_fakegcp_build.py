"""Contract tests of the fake's Artifact Registry v1 and Cloud Build v1, over plain HTTP."""

from __future__ import annotations

import re

import pytest
import requests

from tests.integration.test_fakegcp_contract import PROJECT, call, create_sa, error_of, poll_lro
from tests.standins.fakegcp.errors import ApiError

LOCATION = "us-central1"
PARENT = "/v1/projects/%s/locations/%s" % (PROJECT, LOCATION)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
DOCKER_STEP = {"name": "gcr.io/cloud-builders/docker", "args": ["build", "-t", "IMAGE", "."]}


def repo_path(repo_id):
    return "%s/repositories/%s" % (PARENT, repo_id)


def start_repository(fake, repo_id, **fields):
    response = call(fake, "POST", "artifactregistry", PARENT + "/repositories", dict({"format": "DOCKER"}, **fields),
                    {"repositoryId": repo_id})
    assert response.status_code == 200, response.text
    return response.json()


def create_repository(fake, repo_id, **fields):
    operation, _polls = poll_lro(fake, "artifactregistry", start_repository(fake, repo_id, **fields))
    assert "error" not in operation, operation
    return operation["response"]


def registry(repo_id):
    return "%s-docker.pkg.dev/%s/%s" % (LOCATION, PROJECT, repo_id)


def start_build(fake, images=(), parent=PARENT, **fields):
    body = dict({"steps": [DOCKER_STEP], "images": list(images)}, **fields)
    response = call(fake, "POST", "cloudbuild", parent + "/builds", body)
    assert response.status_code == 200, response.text
    return response.json()


def get_build(fake, build):
    response = call(fake, "GET", "cloudbuild", "/v1/" + build["name"])
    assert response.status_code == 200, response.text
    return response.json()


def run_build(fake, images=(), **fields):
    operation, _polls = poll_lro(fake, "cloudbuild", start_build(fake, images, **fields))
    return operation


# ---- Artifact Registry -----------------------------------------------------------------------------------
class TestRepositories:
    def test_lifecycle_with_operations(self, fake_gcp, unique):
        repo_id = "repo-%s" % unique
        fake_gcp.operation_polls = 3
        operation = start_repository(fake_gcp, repo_id, description="images", labels={"team": "ml"})
        assert re.match(r"^projects/%s/locations/%s/operations/[0-9a-f-]{36}$" % (PROJECT, LOCATION), operation["name"])
        assert not operation.get("done")
        assert operation["metadata"]["@type"].endswith("artifactregistry.v1.OperationMetadata")
        # Not there yet; reading it counts as the first of the three polls (a client may watch the repository).
        error_of(call(fake_gcp, "GET", "artifactregistry", repo_path(repo_id)), 404, "NOT_FOUND")
        operation, polls = poll_lro(fake_gcp, "artifactregistry", operation)
        assert polls == 2
        repo = operation["response"]
        assert repo.pop("@type").endswith("artifactregistry.v1.Repository")
        assert repo["name"] == "projects/%s/locations/%s/repositories/%s" % (PROJECT, LOCATION, repo_id)
        assert repo["registryUri"] == registry(repo_id)
        assert repo["format"] == "DOCKER" and repo["mode"] == "STANDARD_REPOSITORY"
        assert repo["labels"] == {"team": "ml"} and repo["description"] == "images"
        assert repo["vulnerabilityScanningConfig"]["enablementState"] == "SCANNING_DISABLED"
        assert repo["createTime"] == repo["updateTime"] and "sizeBytes" not in repo
        assert call(fake_gcp, "GET", "artifactregistry", repo_path(repo_id)).json() == repo
        listing = call(fake_gcp, "GET", "artifactregistry", PARENT + "/repositories").json()
        assert repo in listing["repositories"]

        operation = call(fake_gcp, "DELETE", "artifactregistry", repo_path(repo_id)).json()
        assert not operation.get("done")
        assert call(fake_gcp, "GET", "artifactregistry", repo_path(repo_id)).status_code == 200  # until done
        operation, polls = poll_lro(fake_gcp, "artifactregistry", operation)
        assert operation["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
        error = error_of(call(fake_gcp, "GET", "artifactregistry", repo_path(repo_id)), 404, "NOT_FOUND")
        assert repo_id in error["message"]
        error_of(call(fake_gcp, "DELETE", "artifactregistry", repo_path(repo_id)), 404, "NOT_FOUND")

    def test_operation_polls_setting(self, fake_gcp, unique):
        fake_gcp.operation_polls = 3
        operation, polls = poll_lro(fake_gcp, "artifactregistry", start_repository(fake_gcp, "slow-%s" % unique))
        assert polls == 3 and operation["done"]

    def test_duplicate_is_409_even_while_creating(self, fake_gcp, unique):
        start_repository(fake_gcp, "dup-%s" % unique)
        response = call(fake_gcp, "POST", "artifactregistry", PARENT + "/repositories", {"format": "DOCKER"},
                        {"repositoryId": "dup-%s" % unique})
        assert error_of(response, 409, "ALREADY_EXISTS")["message"] == "the repository already exists"

    @pytest.mark.parametrize("repo_id", ["Upper", "1starts-with-digit", "ends-", "has_underscore", "x" * 64, ""])
    def test_bad_repository_ids(self, fake_gcp, repo_id):
        response = call(fake_gcp, "POST", "artifactregistry", PARENT + "/repositories", {"format": "DOCKER"},
                        {"repositoryId": repo_id})
        error_of(response, 400, "INVALID_ARGUMENT")

    def test_bad_bodies(self, fake_gcp, unique):
        def create(body, repo_id):
            return call(fake_gcp, "POST", "artifactregistry", PARENT + "/repositories", body, {"repositoryId": repo_id})

        assert "format" in error_of(create({}, "nf-%s" % unique), 400, "INVALID_ARGUMENT")["message"]
        error = error_of(create({"format": "DOCKR"}, "bf-%s" % unique), 400, "INVALID_ARGUMENT")
        assert "DOCKR" in error["message"]
        error = error_of(create({"format": "DOCKER", "colour": "red"}, "uf-%s" % unique), 400, "INVALID_ARGUMENT")
        assert 'Unknown name "colour"' in error["message"]
        error_of(create({"format": "DOCKER", "labels": {"Bad": "x"}}, "bl-%s" % unique), 400, "INVALID_ARGUMENT")
        error_of(create({"format": "PYTHON", "dockerConfig": {"immutableTags": True}}, "dc-%s" % unique), 400)
        error_of(call(fake_gcp, "POST", "artifactregistry", "/v1/projects/%s/locations/Not_A_Region/repositories"
                      % PROJECT, {"format": "DOCKER"}, {"repositoryId": "r-%s" % unique}), 400, "INVALID_ARGUMENT")

    def test_output_only_fields_are_ignored(self, fake_gcp, unique):
        repo = create_repository(fake_gcp, "oo-%s" % unique, registryUri="evil.example.com/x", sizeBytes="99",
                                 createTime="2000-01-01T00:00:00Z")
        assert repo["registryUri"] == registry("oo-%s" % unique)
        assert "sizeBytes" not in repo and not repo["createTime"].startswith("2000")

    def test_failed_create_operation_leaves_nothing(self, fake_gcp, unique):
        fake_gcp.fail_operations(code="INTERNAL", message="backend exploded")
        operation, _polls = poll_lro(fake_gcp, "artifactregistry", start_repository(fake_gcp, "ff-%s" % unique))
        assert operation["error"] == {"code": 13, "message": "backend exploded"}
        error_of(call(fake_gcp, "GET", "artifactregistry", repo_path("ff-%s" % unique)), 404)
        create_repository(fake_gcp, "ff-%s" % unique)  # the name is free again

    def test_unknown_operation_is_404(self, fake_gcp):
        error_of(call(fake_gcp, "GET", "artifactregistry", PARENT + "/operations/nope"), 404, "NOT_FOUND")


class TestPatch:
    def test_labels_via_update_mask(self, fake_gcp, unique):
        repo_id = "p-%s" % unique
        before = create_repository(fake_gcp, repo_id, description="keep me", labels={"a": "1"})
        response = call(fake_gcp, "PATCH", "artifactregistry", repo_path(repo_id),
                        {"labels": {"b": "2"}, "description": "ignored: not in the mask"}, {"updateMask": "labels"})
        assert response.status_code == 200, response.text
        after = response.json()
        assert after["labels"] == {"b": "2"} and after["description"] == "keep me"
        assert after["updateTime"] > before["updateTime"]
        assert call(fake_gcp, "GET", "artifactregistry", repo_path(repo_id)).json() == after
        # removing every label: in the mask, absent from the body
        cleared = call(fake_gcp, "PATCH", "artifactregistry", repo_path(repo_id), {}, {"updateMask": "labels"}).json()
        assert "labels" not in cleared

    def test_without_mask_the_body_fields_are_applied(self, fake_gcp, unique):
        repo_id = "nm-%s" % unique
        create_repository(fake_gcp, repo_id, description="old")
        after = call(fake_gcp, "PATCH", "artifactregistry", repo_path(repo_id),
                     {"description": "new", "dockerConfig": {"immutableTags": True}}).json()
        assert after["description"] == "new" and after["dockerConfig"] == {"immutableTags": True}

    def test_immutable_unknown_and_invalid(self, fake_gcp, unique):
        repo_id = "im-%s" % unique
        create_repository(fake_gcp, repo_id)

        def patch(body, mask):
            return call(fake_gcp, "PATCH", "artifactregistry", repo_path(repo_id), body, {"updateMask": mask})

        assert "format" in error_of(patch({"format": "NPM"}, "format"), 400, "INVALID_ARGUMENT")["message"]
        error_of(patch({}, "create_time"), 400, "INVALID_ARGUMENT")
        error_of(patch({"labels": {"ok": "Not Ok"}}, "labels"), 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "PATCH", "artifactregistry", repo_path("missing-%s" % unique), {"description": "x"},
                      {"updateMask": "description"}), 404, "NOT_FOUND")
        # the same format in a body is not a change
        assert call(fake_gcp, "PATCH", "artifactregistry", repo_path(repo_id), {"format": "DOCKER"}).status_code == 200


class TestCleanupPolicies:
    GOOD = {
        "delete-old": {"action": "DELETE", "condition": {"tagState": "ANY", "olderThan": "2592000s"}},
        "keep-release": {"id": "keep-release", "action": "KEEP",
                         "condition": {"tagState": "TAGGED", "tagPrefixes": ["v", "release-"]}},
        "keep-5": {"action": "KEEP", "mostRecentVersions": {"keepCount": 5, "packageNamePrefixes": ["app"]}},
    }

    def test_valid_policies_round_trip_with_ids(self, fake_gcp, unique):
        repo = create_repository(fake_gcp, "cp-%s" % unique, cleanupPolicies=self.GOOD, cleanupPolicyDryRun=True)
        assert repo["cleanupPolicyDryRun"] is True
        assert set(repo["cleanupPolicies"]) == set(self.GOOD)
        assert all(repo["cleanupPolicies"][k]["id"] == k for k in self.GOOD)
        assert repo["cleanupPolicies"]["keep-5"]["mostRecentVersions"]["keepCount"] == 5

    @pytest.mark.parametrize("policy, words", [
        ({"condition": {"tagState": "ANY"}}, "action"),
        ({"id": "other", "action": "DELETE", "condition": {"tagState": "ANY"}}, "map key"),
        ({"action": "DELETE"}, "exactly one"),
        ({"action": "KEEP", "condition": {"tagState": "ANY"}, "mostRecentVersions": {"keepCount": 1}}, "exactly one"),
        ({"action": "DELETE", "mostRecentVersions": {"keepCount": 3}}, "KEEP"),
        ({"action": "DELETE", "condition": {"tagState": "UNTAGGED", "tagPrefixes": ["v"]}}, "UNTAGGED"),
        ({"action": "DELETE", "condition": {"olderThan": "-5s"}}, "positive"),
        ({"action": "DELETE", "condition": {"olderThan": "30d"}}, "Duration"),
        ({"action": "REMOVE", "condition": {"tagState": "ANY"}}, "REMOVE"),
        ({"action": "DELETE", "condition": {"tagState": "SOMETIMES"}}, "SOMETIMES"),
    ])
    def test_invalid_policy(self, fake_gcp, unique, policy, words):
        response = call(fake_gcp, "POST", "artifactregistry", PARENT + "/repositories",
                        {"format": "DOCKER", "cleanupPolicies": {"p1": policy}}, {"repositoryId": "bad-%s" % unique})
        assert words in error_of(response, 400, "INVALID_ARGUMENT")["message"]

    def test_at_most_ten(self, fake_gcp, unique):
        policies = {"p%d" % i: {"action": "DELETE", "condition": {"tagState": "UNTAGGED"}} for i in range(11)}
        response = call(fake_gcp, "POST", "artifactregistry", PARENT + "/repositories",
                        {"format": "DOCKER", "cleanupPolicies": policies}, {"repositoryId": "ten-%s" % unique})
        assert "at most 10" in error_of(response, 400, "INVALID_ARGUMENT")["message"]

    def test_patch_replaces_the_map(self, fake_gcp, unique):
        repo_id = "cpp-%s" % unique
        create_repository(fake_gcp, repo_id, cleanupPolicies=self.GOOD)
        new = {"only": {"action": "DELETE", "condition": {"tagState": "UNTAGGED"}}}
        after = call(fake_gcp, "PATCH", "artifactregistry", repo_path(repo_id), {"cleanupPolicies": new},
                     {"updateMask": "cleanup_policies"}).json()
        assert list(after["cleanupPolicies"]) == ["only"]
        error_of(call(fake_gcp, "PATCH", "artifactregistry", repo_path(repo_id),
                      {"cleanupPolicies": {"x": {"action": "DELETE"}}}, {"updateMask": "cleanup_policies"}), 400)


class TestImages:
    def test_push_image_then_docker_images_packages_versions_tags(self, fake_gcp, unique):
        repo_id = "img-%s" % unique
        create_repository(fake_gcp, repo_id)
        ar = fake_gcp.apis["artifactregistry"]
        image = ar.push_image(registry(repo_id), "team/app", "v1")
        digest = image["uri"].rsplit("@", 1)[1]
        assert DIGEST.match(digest)
        base = repo_path(repo_id)
        assert image["name"] == base[4:] + "/dockerImages/team%2Fapp@" + digest
        assert image["uri"] == "%s/team/app@%s" % (registry(repo_id), digest) and image["tags"] == ["v1"]
        listing = call(fake_gcp, "GET", "artifactregistry", base + "/dockerImages").json()
        assert listing["dockerImages"] == [image]
        assert call(fake_gcp, "GET", "artifactregistry", "/v1/" + image["name"]).json() == image
        tag = call(fake_gcp, "GET", "artifactregistry", base + "/packages/team%2Fapp/tags/v1").json()
        assert tag == {"name": base[4:] + "/packages/team%2Fapp/tags/v1",
                       "version": base[4:] + "/packages/team%2Fapp/versions/" + digest}
        package = call(fake_gcp, "GET", "artifactregistry", base + "/packages/team%2Fapp").json()
        assert package["name"] == base[4:] + "/packages/team%2Fapp"
        version = call(fake_gcp, "GET", "artifactregistry", "/v1/" + tag["version"], params={"view": "FULL"}).json()
        assert version["relatedTags"] == [tag]
        tags = call(fake_gcp, "GET", "artifactregistry", base + "/packages/team%2Fapp/tags",
                    params={"filter": 'version="%s"' % tag["version"]}).json()
        assert tags["tags"] == [tag]
        repo = call(fake_gcp, "GET", "artifactregistry", base).json()
        assert int(repo["sizeBytes"]) == int(image["imageSizeBytes"]) > 0

    def test_mutable_tags_move(self, fake_gcp, unique):
        repo_id = "mt-%s" % unique
        create_repository(fake_gcp, repo_id)
        ar = fake_gcp.apis["artifactregistry"]
        first = ar.push_image(repo_path(repo_id)[4:], "app", "latest", digest="sha256:" + "a" * 64)
        second = ar.push_image(repo_path(repo_id)[4:], "app", "latest", digest="sha256:" + "b" * 64)
        assert second["tags"] == ["latest"]
        old = call(fake_gcp, "GET", "artifactregistry", "/v1/" + first["name"]).json()
        assert "tags" not in old  # the tag moved away
        path = repo_path(repo_id) + "/packages/app/tags/latest"
        assert call(fake_gcp, "DELETE", "artifactregistry", path).json() == {}
        error_of(call(fake_gcp, "GET", "artifactregistry", path), 404, "NOT_FOUND")

    def test_immutable_tags(self, fake_gcp, unique):
        repo_id = "it-%s" % unique
        create_repository(fake_gcp, repo_id, dockerConfig={"immutableTags": True})
        ar = fake_gcp.apis["artifactregistry"]
        ar.push_image(registry(repo_id), "app", "v1", digest="sha256:" + "1" * 64)
        ar.push_image(registry(repo_id), "app", "v1", digest="sha256:" + "1" * 64)  # same image again: fine
        with pytest.raises(ApiError) as caught:
            ar.push_image(registry(repo_id), "app", "v1", digest="sha256:" + "2" * 64)
        assert caught.value.status == "FAILED_PRECONDITION" and "immutable" in caught.value.message
        path = repo_path(repo_id) + "/packages/app/tags/v1"
        assert call(fake_gcp, "GET", "artifactregistry", path).json()["version"].endswith("1" * 64)
        error_of(call(fake_gcp, "DELETE", "artifactregistry", path), 400, "FAILED_PRECONDITION")
        ar.push_image(registry(repo_id), "app", "v2", digest="sha256:" + "2" * 64)  # a new tag: allowed

    def test_not_found_shapes(self, fake_gcp, unique):
        repo_id = "nf-%s" % unique
        create_repository(fake_gcp, repo_id)
        base = repo_path(repo_id)
        error_of(call(fake_gcp, "GET", "artifactregistry", base + "/packages/app/tags/v1"), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "GET", "artifactregistry", base + "/dockerImages/app@sha256:" + "0" * 64), 404)
        error_of(call(fake_gcp, "GET", "artifactregistry", repo_path("nope-%s" % unique) + "/dockerImages"), 404)
        assert call(fake_gcp, "GET", "artifactregistry", base + "/dockerImages").json() == {}
        with pytest.raises(ApiError) as caught:
            fake_gcp.apis["artifactregistry"].push_image(registry("nope-%s" % unique), "app", "v1")
        assert caught.value.code == 404

    def test_push_checks_names(self, fake_gcp, unique):
        repo_id = "pn-%s" % unique
        create_repository(fake_gcp, repo_id)
        ar = fake_gcp.apis["artifactregistry"]
        for image, tag, digest in (("App", "v1", None), ("app", "bad tag", None), ("app", "v1", "sha256:zz")):
            with pytest.raises(ApiError):
                ar.push_image(registry(repo_id), image, tag, digest=digest)


# ---- Cloud Build -----------------------------------------------------------------------------------------
class TestBuilds:
    def test_status_progresses_by_polls_and_pushes_the_image(self, fake_gcp, unique):
        repo_id = "b-%s" % unique
        create_repository(fake_gcp, repo_id)
        image = "%s/app:ctx-%s" % (registry(repo_id), unique)
        fake_gcp.operation_polls = 3
        operation = start_build(fake_gcp, [image])
        build = operation["metadata"]["build"]
        assert operation["metadata"]["@type"] == "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
        assert not operation.get("done") and build["status"] == "QUEUED"
        number = build["name"].split("/")[1]
        assert operation["name"].startswith("projects/%s/locations/%s/operations/" % (number, LOCATION))
        assert build["name"] == "projects/%s/locations/%s/builds/%s" % (number, LOCATION, build["id"])
        assert build["logUrl"] == "https://console.cloud.google.com/cloud-build/builds;region=%s/%s?project=%s" % (
            LOCATION, build["id"], number)
        assert build["timeout"] == "600s" and build["projectId"] == PROJECT and build["createTime"]
        path = "%s/builds/%s" % (PARENT, build["id"])
        statuses = [call(fake_gcp, "GET", "cloudbuild", path).json()["status"]]          # builds.get polls too
        statuses.append(call(fake_gcp, "GET", "cloudbuild", "/v1/" + operation["name"]).json()["metadata"]["build"]
                        ["status"])
        done = call(fake_gcp, "GET", "cloudbuild", "/v1/" + operation["name"]).json()
        statuses.append(done["response"]["status"])
        assert statuses == ["WORKING", "WORKING", "SUCCESS"]
        result = done["response"]
        assert result["@type"] == "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
        assert result["startTime"] and result["finishTime"] >= result["startTime"]
        assert [i["name"] for i in result["results"]["images"]] == [image]
        digest = result["results"]["images"][0]["digest"]
        assert DIGEST.match(digest)
        assert result["results"]["images"][0]["artifactRegistryPackage"] == repo_path(repo_id)[4:] + "/packages/app"
        assert result["steps"][0]["status"] == "SUCCESS"
        # the image is in the registry, under its tag, with that digest
        tag = call(fake_gcp, "GET", "artifactregistry", repo_path(repo_id) + "/packages/app/tags/ctx-%s" % unique)
        assert tag.status_code == 200 and tag.json()["version"].endswith("/versions/" + digest)
        images = call(fake_gcp, "GET", "artifactregistry", repo_path(repo_id) + "/dockerImages").json()["dockerImages"]
        assert [i["uri"] for i in images] == ["%s/app@%s" % (registry(repo_id), digest)]
        got = call(fake_gcp, "GET", "artifactregistry", "/v1/" + images[0]["name"]).json()
        assert got["tags"] == ["ctx-%s" % unique]
        # a finished build stays as it is; list shows it
        assert call(fake_gcp, "GET", "cloudbuild", path).json() == {k: v for k, v in result.items() if k != "@type"}
        listing = call(fake_gcp, "GET", "cloudbuild", PARENT + "/builds",
                       params={"filter": 'status="SUCCESS"'}).json()["builds"]
        assert build["id"] in [b["id"] for b in listing]

    def test_image_pushed_only_on_success(self, fake_gcp, unique):
        repo_id = "q-%s" % unique
        create_repository(fake_gcp, repo_id)
        start_build(fake_gcp, ["%s/app:v1" % registry(repo_id)])  # queued, never polled
        error_of(call(fake_gcp, "GET", "artifactregistry", repo_path(repo_id) + "/packages/app/tags/v1"), 404)

    def test_missing_repository_fails_the_build(self, fake_gcp, unique):
        operation = run_build(fake_gcp, ["%s/app:v1" % registry("absent-%s" % unique)])
        assert operation["error"] == {"code": 2, "message": "Build failed; check build logs for details"}
        build = operation["metadata"]["build"]
        assert build["status"] == "FAILURE"
        assert 'Repository "absent-%s" not found' % unique in build["statusDetail"]
        assert build["failureInfo"] == {"type": "PUSH_FAILED", "detail": build["statusDetail"]}
        assert get_build(fake_gcp, build)["status"] == "FAILURE"

    def test_fail_builds_and_clear(self, fake_gcp, unique):
        repo_id = "fb-%s" % unique
        create_repository(fake_gcp, repo_id)
        image = "%s/app:v1" % registry(repo_id)
        builds = fake_gcp.apis["cloudbuild"]
        builds.fail_builds(detail="Step #0: COPY failed: no such file; exit 1")
        operation = run_build(fake_gcp, [image])
        build = operation["metadata"]["build"]
        assert build["status"] == "FAILURE" and operation["error"]["code"] == 2
        assert build["statusDetail"] == "Step #0: COPY failed: no such file; exit 1"
        assert build["failureInfo"] == {"type": "USER_BUILD_STEP", "detail": build["statusDetail"]}
        assert build["steps"][0]["status"] == "FAILURE" and build["steps"][0]["exitCode"] == 1
        assert "results" not in build or "images" not in build["results"]
        error_of(call(fake_gcp, "GET", "artifactregistry", repo_path(repo_id) + "/packages/app/tags/v1"), 404)
        builds.fail_builds(count=2)
        default = run_build(fake_gcp, [image])["metadata"]["build"]
        assert default["statusDetail"].startswith('Build step failure: build step 0 "gcr.io/cloud-builders/docker"')
        fake_gcp.clear()  # forgets the second planned failure
        assert run_build(fake_gcp, [image])["response"]["status"] == "SUCCESS"

    def test_fail_operations_is_an_internal_error(self, fake_gcp):
        fake_gcp.fail_operations(code="UNAVAILABLE", message="workers are gone")
        operation = run_build(fake_gcp)
        assert operation["error"] == {"code": 14, "message": "workers are gone"}
        assert operation["metadata"]["build"]["status"] == "INTERNAL_ERROR"

    def test_global_builds(self, fake_gcp):
        operation = start_build(fake_gcp, parent="/v1/projects/%s" % PROJECT)
        build = operation["metadata"]["build"]
        assert re.match(r"^operations/build/%s/[A-Za-z0-9_-]+$" % PROJECT, operation["name"])
        assert build["name"].endswith("/locations/global/builds/" + build["id"])
        assert build["logUrl"].startswith("https://console.cloud.google.com/cloud-build/builds/%s?project=" % build["id"])
        assert call(fake_gcp, "GET", "cloudbuild", "/v1/projects/%s/builds/%s" % (PROJECT, build["id"])).json()[
            "status"] == "SUCCESS"
        assert call(fake_gcp, "GET", "cloudbuild", "/v1/" + operation["name"]).json()["done"] is True
        # a global build is not a regional one
        error_of(call(fake_gcp, "GET", "cloudbuild", "%s/builds/%s" % (PARENT, build["id"])), 404, "NOT_FOUND")

    def test_cancel(self, fake_gcp):
        operation = start_build(fake_gcp)
        path = "/v1/%s:cancel" % operation["metadata"]["build"]["name"]
        cancelled = call(fake_gcp, "POST", "cloudbuild", path, {}).json()
        assert cancelled["status"] == "CANCELLED"
        done = call(fake_gcp, "GET", "cloudbuild", "/v1/" + operation["name"]).json()
        assert done["error"]["code"] == 1
        error_of(call(fake_gcp, "POST", "cloudbuild", path, {}), 400, "FAILED_PRECONDITION")

    @pytest.mark.parametrize("fields, words", [
        ({"steps": []}, "steps"),
        ({"steps": [{"args": ["x"]}]}, "steps[0].name"),
        ({"substitutions": {"lower": "x"}}, "^_[A-Z0-9_]+$"),
        ({"images": ["Not A Reference"]}, "invalid image name"),
        ({"timeout": "90000s"}, "timeout"),
        ({"timeout": "ten minutes"}, "Duration"),
        ({"steps": [{"name": "ubuntu", "script": "echo", "args": ["x"]}]}, "script"),
        ({"steps": [{"name": "ubuntu", "waitFor": ["later"]}, {"name": "ubuntu", "id": "later"}]}, "later"),
        ({"options": {"logging": "LOUDLY"}}, "LOUDLY"),
        ({"sauce": "x"}, 'Unknown name "sauce"'),
        ({"source": {"storageSource": {"object": "src.tgz"}}}, "bucket"),
    ])
    def test_invalid_builds(self, fake_gcp, fields, words):
        body = dict({"steps": [DOCKER_STEP]}, **fields)
        response = call(fake_gcp, "POST", "cloudbuild", PARENT + "/builds", body)
        assert words in error_of(response, 400, "INVALID_ARGUMENT")["message"]

    def test_service_account_rules(self, fake_gcp, unique):
        account = "builder-%s" % unique
        email = "%s@%s.iam.gserviceaccount.com" % (account, PROJECT)
        sa_name = "projects/%s/serviceAccounts/%s" % (PROJECT, email)
        error = error_of(call(fake_gcp, "POST", "cloudbuild", PARENT + "/builds", {
            "steps": [DOCKER_STEP], "serviceAccount": sa_name, "options": {"logging": "CLOUD_LOGGING_ONLY"}}), 400)
        assert "does not exist" in error["message"]
        create_sa(fake_gcp, account)
        error = error_of(call(fake_gcp, "POST", "cloudbuild", PARENT + "/builds", {
            "steps": [DOCKER_STEP], "serviceAccount": sa_name}), 400, "INVALID_ARGUMENT")
        assert "CLOUD_LOGGING_ONLY" in error["message"]
        build = run_build(fake_gcp, serviceAccount=sa_name, options={"logging": "CLOUD_LOGGING_ONLY"})["response"]
        assert build["serviceAccount"] == sa_name and build["options"]["logging"] == "CLOUD_LOGGING_ONLY"

    def test_output_only_fields_are_ignored(self, fake_gcp):
        build = start_build(fake_gcp, status="SUCCESS", id="mine", logUrl="x")["metadata"]["build"]
        assert build["status"] == "QUEUED" and build["id"] != "mine" and build["logUrl"] != "x"

    def test_unknown_build_and_operation(self, fake_gcp):
        error_of(call(fake_gcp, "GET", "cloudbuild", PARENT + "/builds/nope"), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "GET", "cloudbuild", PARENT + "/operations/nope"), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "GET", "cloudbuild", "/v1/operations/build/%s/nope" % PROJECT), 404, "NOT_FOUND")


class TestFaults:
    def test_injected_fault_then_normal(self, fake_gcp):
        fake_gcp.inject(503, method="POST", path=r"^cloudbuild/.*/builds$")
        error_of(call(fake_gcp, "POST", "cloudbuild", PARENT + "/builds", {"steps": [DOCKER_STEP]}), 503, "UNAVAILABLE")
        assert start_build(fake_gcp)["metadata"]["build"]["status"] == "QUEUED"

    def test_lost_answer_still_creates_the_build(self, fake_gcp, unique):
        fake_gcp.inject(500, method="POST", path=r"^cloudbuild/", forward=True)
        error_of(call(fake_gcp, "POST", "cloudbuild", PARENT + "/builds", {"steps": [DOCKER_STEP], "tags": [unique]}),
                 500)
        listing = call(fake_gcp, "GET", "cloudbuild", PARENT + "/builds", params={"filter": 'tags="%s"' % unique})
        assert len(listing.json()["builds"]) == 1

    def test_request_log_writes(self, fake_gcp, unique):
        repo_id = "log-%s" % unique
        create_repository(fake_gcp, repo_id)
        run_build(fake_gcp)
        writes = [(c.method, c.api) for c in fake_gcp.writes()]
        assert writes == [("POST", "artifactregistry"), ("POST", "cloudbuild")]


class TestStorageSource:
    BUCKET = "test-project_cloudbuild"

    @pytest.fixture
    def storage_checked(self, fake_gcp, storage_emulator):
        builds = fake_gcp.apis["cloudbuild"]
        builds.storage_url = storage_emulator
        response = requests.post("%s/storage/v1/b" % storage_emulator, params={"project": PROJECT},
                                 json={"name": self.BUCKET}, timeout=10)
        assert response.status_code in (200, 409), response.text
        yield storage_emulator
        builds.storage_url = None

    def test_existing_object_builds_missing_object_is_400(self, fake_gcp, storage_checked, unique):
        name = "deployml/app-%s.tgz" % unique
        upload = requests.post("%s/upload/storage/v1/b/%s/o" % (storage_checked, self.BUCKET),
                               params={"uploadType": "media", "name": name}, data=b"\x1f\x8b fake tarball",
                               headers={"Content-Type": "application/gzip"}, timeout=10)
        assert upload.status_code == 200, upload.text
        generation = upload.json()["generation"]
        source = {"storageSource": {"bucket": self.BUCKET, "object": name}}
        build = run_build(fake_gcp, source=source)["response"]
        assert build["status"] == "SUCCESS"
        assert build["sourceProvenance"]["resolvedStorageSource"] == {"bucket": self.BUCKET, "object": name,
                                                                      "generation": str(generation)}
        missing = {"storageSource": {"bucket": self.BUCKET, "object": "deployml/absent-%s.tgz" % unique}}
        error = error_of(call(fake_gcp, "POST", "cloudbuild", PARENT + "/builds",
                              {"steps": [DOCKER_STEP], "source": missing}), 400, "INVALID_ARGUMENT")
        assert error["message"] == ("could not resolve source: googleapi: Error 404: No such object: %s/deployml/"
                                    "absent-%s.tgz, notFound" % (self.BUCKET, unique))
        wrong_bucket = {"storageSource": {"bucket": "no-bucket-%s" % unique, "object": name}}
        error_of(call(fake_gcp, "POST", "cloudbuild", PARENT + "/builds", {"steps": [DOCKER_STEP], "source": wrong_bucket}),
                 400, "INVALID_ARGUMENT")

    def test_without_storage_url_the_source_is_not_checked(self, fake_gcp, unique):
        assert fake_gcp.apis["cloudbuild"].storage_url is None
        source = {"storageSource": {"bucket": self.BUCKET, "object": "never-uploaded-%s.tgz" % unique}}
        assert run_build(fake_gcp, source=source)["response"]["status"] == "SUCCESS"
