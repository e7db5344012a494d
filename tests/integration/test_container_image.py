"""container_image against the fake Artifact Registry and Cloud Build APIs and the Cloud Storage emulator.

The build context goes to the storage emulator through a recording proxy (`storage`), the builds and the
registry are the fake's; the fake Cloud Build checks the uploaded object exists in the emulator, as Cloud
Build does when it fetches the source.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from urllib.parse import quote

import pytest
import requests

from tests.conftest import PROJECT

LOCATION = "europe-west1"
DOCKERFILE = "FROM python:3.11-slim\nARG VERSION\nCOPY app /app\nCMD [\"python\", \"/app/main.py\"]\n"


def write(root, files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


@pytest.fixture
def builds_source(fake_gcp, storage_emulator):
    """Let the fake Cloud Build check storage sources against the emulator, as GCP fetches them."""
    api = fake_gcp.apis["cloudbuild"]
    api.storage_url = storage_emulator
    yield
    api.storage_url = None


@pytest.fixture
def image(fake_gcp, storage, builds_source, gcp_module, unique, tmp_path):
    class Image:
        repository = "images-" + unique
        bucket = "builds-" + unique
        name = "app"
        source = tmp_path / "ctx"
        repo_name = "projects/%s/locations/%s/repositories/images-%s" % (PROJECT, LOCATION, unique)
        registry = "%s-docker.pkg.dev/%s/images-%s" % (LOCATION, PROJECT, unique)

        def run(self, check=False, **options):
            args = dict(project=PROJECT, auth_kind="anonymous", timeout=20,
                        api_endpoints=dict(fake_gcp.endpoints, storage=storage.url),
                        source=str(self.source), repository=self.repository, location=LOCATION, image=self.name,
                        source_bucket=self.bucket)
            args.update(options)
            return gcp_module("container_image", args, check=check)

        def create_repository(self, name=None):
            response = requests.post(
                "%s/v1/projects/%s/locations/%s/repositories" % (fake_gcp.endpoints["artifactregistry"], PROJECT,
                                                                 LOCATION),
                params={"repositoryId": name or self.repository}, json={"format": "DOCKER"}, timeout=10)
            assert response.status_code == 200, response.text
            fake_gcp.complete_operations()

        def create_bucket(self):
            response = requests.post("%s/storage/v1/b" % storage.target, params={"project": PROJECT},
                                     json={"name": self.bucket}, timeout=10)
            assert response.status_code == 200, response.text

        def tag(self, tag, name=None):
            """The registry's tag (through the fake's REST API), or None."""
            response = requests.get("%s/v1/%s/packages/%s/tags/%s" % (
                fake_gcp.endpoints["artifactregistry"], self.repo_name, quote(name or self.name, safe=""), tag),
                timeout=10)
            if response.status_code == 404:
                return None
            assert response.status_code == 200, response.text
            return response.json()

        def object(self, name):
            response = requests.get("%s/storage/v1/b/%s/o/%s" % (storage.target, self.bucket, quote(name, safe="")),
                                    timeout=10)
            return response.json() if response.status_code == 200 else None

        def download(self, name):
            response = requests.get("%s/storage/v1/b/%s/o/%s" % (storage.target, self.bucket, quote(name, safe="")),
                                    params={"alt": "media"}, timeout=10)
            assert response.status_code == 200, response.text
            return response.content

    found = Image()
    write(found.source, {"Dockerfile": DOCKERFILE, "app/main.py": "print('hi')\n", ".dockerignore": "*.log\n"})
    return found


@pytest.fixture
def ready(image, fake_gcp, storage):
    """The image fixture with its repository and source bucket in place, and empty request logs."""
    image.create_repository()
    image.create_bucket()
    fake_gcp.clear()
    storage.clear()
    return image


def digest_of(tag):
    return tag["version"].rsplit("/versions/", 1)[1]


def test_first_run_builds_second_run_does_nothing(ready, fake_gcp, storage):
    result = ready.run(build_args={"VERSION": "1.2"})
    assert result["rc"] == 0 and result["changed"] is True and result["built"] is True, result
    tag = result["tag"]
    assert tag.startswith("ctx-") and len(tag) == 24
    assert result["tagged_image"] == "%s/app:%s" % (ready.registry, tag)
    held = ready.tag(tag)
    assert held is not None, "the build pushed the tag"
    assert result["digest"] == digest_of(held) and result["digest"].startswith("sha256:")
    assert result["image"] == "%s/app@%s" % (ready.registry, result["digest"])
    assert result["uploaded"] is True
    assert result["build"]["status"] == "SUCCESS" and result["build"]["id"]
    assert result["build"]["log_url"].startswith("https://console.cloud.google.com/cloud-build/builds;region=")

    # One upload, one build; the build got the uploaded object, the docker step the tag and build args.
    assert [w[0] for w in storage.writes()] == ["POST"]
    assert storage.writes()[0][1] == "/upload/storage/v1/b/%s/o" % ready.bucket
    object_name = "deployml/app-%s.tgz" % tag
    stored = ready.object(object_name)
    assert stored is not None
    created = fake_gcp.writes()
    assert [(w.method, w.path) for w in created] == [
        ("POST", "/v1/projects/%s/locations/%s/builds" % (PROJECT, LOCATION))]
    body = created[0].body
    assert body["source"]["storageSource"] == {"bucket": ready.bucket, "object": object_name,
                                               "generation": stored["generation"]}
    assert body["images"] == [result["tagged_image"]]
    assert body["steps"][0]["args"] == ["build", "-t", result["tagged_image"], "-f", "Dockerfile",
                                        "--build-arg", "VERSION=1.2", "."]
    assert body["timeout"] == "1200s" and "serviceAccount" not in body

    # The uploaded archive is the context minus what .dockerignore excludes.
    write(ready.source, {"debug.log": "noise"})
    with tarfile.open(fileobj=io.BytesIO(ready.download(object_name)), mode="r:gz") as tar:
        names = sorted(tar.getnames())
    assert names == [".dockerignore", "Dockerfile", "app", "app/main.py"]

    # Same sources (an ignored file added): nothing uploaded, nothing built, on either side.
    fake_gcp.clear()
    storage.clear()
    again = ready.run(build_args={"VERSION": "1.2"})
    assert again["rc"] == 0 and again["changed"] is False and again["built"] is False, again
    assert again["tag"] == tag and again["image"] == result["image"] and again["digest"] == result["digest"]
    assert "build" not in again
    assert fake_gcp.writes() == [] and storage.writes() == []
    assert len(fake_gcp.requests) == 1 and storage.requests == [], "one tag lookup only"

    # Check mode on an image that exists: no change.
    fake_gcp.clear()
    preview = ready.run(check=True, build_args={"VERSION": "1.2"})
    assert preview["changed"] is False and preview["image"] == result["image"]


def test_changed_sources_or_build_args_give_a_new_tag_and_a_build(ready, fake_gcp, storage):
    first = ready.run()
    assert first["rc"] == 0 and first["built"] is True, first

    write(ready.source, {"app/main.py": "print('hello')\n"})
    fake_gcp.clear()
    storage.clear()
    second = ready.run()
    assert second["rc"] == 0 and second["changed"] is True and second["built"] is True, second
    assert second["tag"] != first["tag"] and second["digest"] != first["digest"]
    assert len(storage.writes()) == 1 and len(fake_gcp.writes()) == 1
    assert ready.tag(first["tag"]) is not None and digest_of(ready.tag(second["tag"])) == second["digest"]

    fake_gcp.clear()
    third = ready.run(build_args={"VERSION": "2"})
    assert third["built"] is True and third["tag"] not in (first["tag"], second["tag"])
    assert len(fake_gcp.writes()) == 1


def test_check_mode_writes_nothing(ready, fake_gcp, storage):
    preview = ready.run(check=True)
    assert preview["rc"] == 0 and preview["changed"] is True and preview["built"] is True, preview
    assert preview["image"] is None and preview["digest"] is None
    assert preview["tagged_image"].endswith(":" + preview["tag"])
    assert preview["diff"]["before"] == {} and preview["diff"]["after"]["tagged_image"] == preview["tagged_image"]
    assert fake_gcp.writes() == [] and storage.writes() == []
    assert ready.tag(preview["tag"]) is None

    result = ready.run()
    assert result["tag"] == preview["tag"], "check mode predicts the tag the run produces"


def test_failed_build_reports_status_detail_and_logs(ready, fake_gcp, storage):
    detail = "Step #0: RUN pip install -r requirements.txt: exit status 1"
    fake_gcp.apis["cloudbuild"].fail_builds(count=1, detail=detail)
    failed = ready.run()
    assert failed["rc"] == 1 and failed["failed"] is True, failed
    assert "FAILURE" in failed["msg"] and detail in failed["msg"], failed["msg"]
    assert failed["build"]["log_url"] and failed["build"]["log_url"] in failed["msg"]
    assert failed["build"]["status"] == "FAILURE" and failed["build"]["status_detail"] == detail
    assert ready.tag(failed["tag"]) is None

    # The next run builds again; the identical archive is already in the bucket and is not uploaded again.
    fake_gcp.clear()
    storage.clear()
    result = ready.run()
    assert result["rc"] == 0 and result["built"] is True and result["uploaded"] is False, result
    assert storage.writes() == [] and len(fake_gcp.writes()) == 1
    assert result["tag"] == failed["tag"] and digest_of(ready.tag(result["tag"])) == result["digest"]


def test_missing_source_bucket_fails_clearly(image, fake_gcp, storage):
    image.create_repository()
    fake_gcp.clear()
    result = image.run()
    assert result["rc"] == 1, result
    assert "gs://%s does not exist" % image.bucket in result["msg"], result["msg"]
    assert "deployml.mlops.gcs_bucket" in result["msg"]
    assert fake_gcp.writes() == [] and storage.writes() == []

    # In check mode an earlier task may be about to create it: a warning, and the build is predicted.
    preview = image.run(check=True)
    assert preview["rc"] == 0 and preview["changed"] is True and preview["built"] is True, preview
    assert "gs://%s does not exist" % image.bucket in str(preview["warnings"]), preview
    assert fake_gcp.writes() == [] and storage.writes() == []


def test_missing_repository_fails_clearly(image, fake_gcp, storage):
    image.create_bucket()
    storage.clear()
    result = image.run()
    assert result["rc"] == 1, result
    assert "repository %s does not exist" % image.repo_name in result["msg"], result["msg"]
    assert "artifact_registry_repository" in result["msg"]
    assert fake_gcp.writes() == [] and storage.writes() == []

    preview = image.run(check=True)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert "repository %s does not exist" % image.repo_name in str(preview["warnings"]), preview
    assert fake_gcp.writes() == [] and storage.writes() == []


def test_nested_image_name_and_other_dockerfile(ready, fake_gcp):
    write(ready.source, {"docker/api.Dockerfile": DOCKERFILE})
    result = ready.run(image="serving/api", dockerfile="docker/api.Dockerfile")
    assert result["rc"] == 0 and result["built"] is True, result
    assert result["image"].startswith("%s/serving/api@sha256:" % ready.registry)
    assert digest_of(ready.tag(result["tag"], name="serving/api")) == result["digest"]
    assert fake_gcp.writes()[0].body["steps"][0]["args"][3:5] == ["-f", "docker/api.Dockerfile"]
    lookups = fake_gcp.calls("GET", r"/packages/")
    assert lookups and "/packages/serving%2Fapi/tags/" in lookups[0].path

    fake_gcp.clear()
    again = ready.run(image="serving/api", dockerfile="docker/api.Dockerfile")
    assert again["changed"] is False and fake_gcp.writes() == []


def test_build_service_account_uses_cloud_logging(ready, fake_gcp, unique):
    account = "builder-" + unique
    response = requests.post("%s/v1/projects/%s/serviceAccounts" % (fake_gcp.endpoints["iam"], PROJECT),
                             json={"accountId": account, "serviceAccount": {}}, timeout=10)
    assert response.status_code == 200, response.text
    fake_gcp.clear()
    result = ready.run(build_service_account=account)
    assert result["rc"] == 0 and result["built"] is True, result
    body = fake_gcp.writes()[0].body
    assert body["serviceAccount"] == "projects/%s/serviceAccounts/%s@%s.iam.gserviceaccount.com" % (
        PROJECT, account, PROJECT)
    assert body["options"] == {"logging": "CLOUD_LOGGING_ONLY"}

    # An account that does not exist: Cloud Build refuses the build, the message says why.
    write(ready.source, {"app/extra.py": ""})
    missing = ready.run(build_service_account="nobody-" + unique)
    assert missing["rc"] == 1 and "does not exist" in missing["msg"] and missing["status"] == 400, missing


def test_retryable_errors_are_retried(ready, fake_gcp, storage):
    fake_gcp.inject(503, count=2, method="GET", path=r"artifactregistry/.*/tags/")
    fake_gcp.inject(429, count=2, method="POST", path=r"cloudbuild/v1/projects/.*/builds$")
    fake_gcp.inject(503, count=1, method="GET", path=r"cloudbuild/v1/projects/.*/builds/")
    storage.inject(503, count=2, method="POST")
    result = ready.run()
    assert result["rc"] == 0 and result["built"] is True, result
    assert len(fake_gcp.calls("POST", r"builds$")) == 3
    assert len(storage.writes()) == 3
    assert digest_of(ready.tag(result["tag"])) == result["digest"]


def test_lost_answer_on_build_create_converges(ready, fake_gcp):
    fake_gcp.inject(503, count=1, method="POST", path=r"cloudbuild/v1/projects/.*/builds$", forward=True)
    result = ready.run()
    assert result["rc"] == 0 and result["built"] is True, result
    # The retry started a second build of the same context; the tag ends on the image the module returns.
    assert len(fake_gcp.calls("POST", r"builds$")) == 2
    assert digest_of(ready.tag(result["tag"])) == result["digest"]
    fake_gcp.clear()
    again = ready.run()
    assert again["changed"] is False and again["digest"] == result["digest"] and fake_gcp.writes() == []


@pytest.mark.parametrize("options, message", [
    ({"image": "App"}, "image 'App' must be lowercase"),
    ({"repository": "Images"}, "repository 'Images' must be a repository ID"),
    ({"dockerfile": "missing.Dockerfile"}, "no Dockerfile at"),
    ({"dockerfile": "../Dockerfile"}, "must be inside the build context"),
    ({"build_args": {"BAD-NAME": "x"}}, "'BAD-NAME' is not a valid argument name"),
    ({"build_args": {"FLAG": True}}, "'FLAG' must have a string value"),
    ({"build_timeout": 10}, "build_timeout must be from 60 to 86400"),
    ({"source_bucket": "Bad Bucket"}, "source_bucket 'Bad Bucket' is not a Cloud Storage bucket name"),
    ({"source": "/nonexistent/ctx"}, "is not a directory"),
    ({"builder": "gcr.io/cloud-builders/docker"}, "must be an image with a tag or a digest"),
])
def test_bad_input_fails_before_any_request(image, fake_gcp, storage, options, message):
    result = image.run(**options)
    assert result["rc"] == 1 and message in result["msg"], result
    assert fake_gcp.requests == [] and storage.requests == []


def test_unreadable_file_fails_before_any_request(image, fake_gcp, storage):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    secret = image.source / "app" / "locked.py"
    secret.write_text("x")
    os.chmod(secret, 0)
    result = image.run()
    assert result["rc"] == 1 and "cannot read" in result["msg"], result
    assert fake_gcp.requests == [] and storage.requests == []


def test_the_builder_is_pinned_and_part_of_the_content_hash(ready, fake_gcp):
    """The build step runs a pinned builder (not the floating gcr.io/cloud-builders/docker), and another builder
    (a new version, or the same pinned by digest) is another tag: the image is built again with it."""
    first = ready.run()
    assert first["rc"] == 0 and first["built"] is True, first
    step = fake_gcp.calls("POST", r"builds$")[0].body["steps"][0]
    assert re.fullmatch(r"gcr\.io/cloud-builders/docker:\d+\.\d+\.\d+", step["name"]), step["name"]

    by_digest = "gcr.io/cloud-builders/docker@sha256:" + "b" * 64
    fake_gcp.clear()
    second = ready.run(builder=by_digest)
    assert second["rc"] == 0 and second["built"] is True and second["tag"] != first["tag"], second
    assert fake_gcp.calls("POST", r"builds$")[0].body["steps"][0]["name"] == by_digest
    fake_gcp.clear()
    assert ready.run(builder=by_digest)["changed"] is False and fake_gcp.writes() == []


def test_a_build_of_the_same_tag_still_running_is_waited_for_not_repeated(ready, fake_gcp, storage):
    """A run interrupted while its build ran (the build goes on in Cloud Build): the next run waits for that build."""
    planned = ready.run(check=True)
    requests.post("%s/upload/storage/v1/b/%s/o" % (storage.target, ready.bucket),
                  params={"uploadType": "media", "name": "earlier.tgz"}, data=b"context",
                  headers={"Content-Type": "application/gzip"}, timeout=10).raise_for_status()
    fake_gcp.operation_polls = 3  # the earlier build is still queued/working when the module looks
    started = requests.post(
        "%s/v1/projects/%s/locations/%s/builds" % (fake_gcp.endpoints["cloudbuild"], PROJECT, LOCATION),
        json={"source": {"storageSource": {"bucket": ready.bucket, "object": "earlier.tgz"}},
              "steps": [{"name": "gcr.io/cloud-builders/docker:24.0.9", "args": ["build", "."]}],
              "images": [planned["tagged_image"]], "tags": ["deployml", planned["tag"]]}, timeout=10).json()
    earlier = started["metadata"]["build"]["id"]
    fake_gcp.clear()
    storage.clear()

    result = ready.run()
    assert result["rc"] == 0 and result["changed"] is True and result["build"]["id"] == earlier, result
    assert result["uploaded"] is False and not storage.writes()
    assert not fake_gcp.calls("POST", r"builds$"), "a second build of the same tag was started"
    assert digest_of(ready.tag(result["tag"])) == result["digest"]
