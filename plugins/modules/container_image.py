#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: container_image
short_description: Build a container image from a local directory with Cloud Build, once per content
version_added: 0.1.0
description:
  - Build the Dockerfile of a local directory with Cloud Build and push the image to an Artifact Registry
    repository, then return it by digest so that services deploy exactly that image.
  - Idempotent by content. The image tag is V(ctx-) followed by the first 20 hex digits of a SHA-256 of the
    build context (the relative path, content and executable bit of every file that C(.dockerignore) does
    not exclude), the O(dockerfile) path, the O(build_args) and the O(builder). When the repository already holds
    the image with that tag, nothing is uploaded or built.
  - The base image is part of that hash, as it is named in the Dockerfile (its C(FROM) line, or the default of a
    build argument C(FROM) uses, such as C(ARG BASE_IMAGE=python:3.11.14-slim-bookworm) and
    C(FROM ${BASE_IMAGE})), or by a build argument in O(build_args) (such as V(BASE_IMAGE=python@sha256:...) to
    pin it by digest). Pin it by exact version or digest, since a floating tag such as V(python:3.11) changes under
    the same hash.
  - Otherwise the context is uploaded as a reproducible C(.tgz) to
    V(gs://SOURCE_BUCKET/deployml/IMAGE-TAG.tgz) (skipped when an identical archive is already there), a
    build runs C(docker build) and pushes the tagged image, and the module waits for the build to finish.
  - A build of the same tag still queued or working (a run interrupted while it built, or one going on at the same
    time) is waited for, not started again.
  - A failed build fails the task with the build's status, its status detail and the URL of its logs.
  - C(.dockerignore) patterns follow docker's rules (V(*), V(?), V([...]), V(**), and V(!) to re-include).
    The Dockerfile and C(.dockerignore) are always part of the context.
options:
  source:
    description:
      - The build context, a local directory on the controller holding the Dockerfile.
    type: path
    required: true
  repository:
    description:
      - The ID of the Artifact Registry repository (docker format) that receives the image. It must exist; create
        it with M(deployml.mlops.artifact_registry_repository).
    type: str
    required: true
  location:
    description:
      - The location of the repository, such as V(europe-west1).
      - The build runs in this region, or in the V(global) Cloud Build location when it is a multi-region such
        as V(europe).
    type: str
    required: true
  image:
    description:
      - The image name inside the repository, such as V(mlflow) or V(serving/api). It holds lowercase letters, digits,
        separators V(.), V(_), V(-) inside a name part, and V(/) between parts.
    type: str
    required: true
  dockerfile:
    description:
      - The Dockerfile, relative to O(source).
    type: str
    default: Dockerfile
  build_args:
    description:
      - Build arguments (C(docker build --build-arg NAME=VALUE)). They are part of the content hash.
      - Never put secrets here; they are visible in the build's definition and logs.
    type: dict
  builder:
    description:
      - The image of the build step that runs C(docker build) and pushes the image, by exact version or by digest
        (V(gcr.io/cloud-builders/docker@sha256:...)). Part of the content hash.
    type: str
    default: gcr.io/cloud-builders/docker:24.0.9
  source_bucket:
    description:
      - The Cloud Storage bucket the context is uploaded to. It must exist (create it with
        M(deployml.mlops.gcs_bucket)); the module fails with a clear message otherwise.
      - Defaults to V(PROJECT_cloudbuild), the bucket gcloud uses.
    type: str
  build_service_account:
    description:
      - The service account the build runs as (its email, or its account ID in O(project)). When set, build
        logs go to Cloud Logging only, as Cloud Build requires for a user-chosen account.
      - When not set, Cloud Build uses the project's default build service account.
    type: str
  build_timeout:
    description:
      - Seconds the build may run before Cloud Build stops it, from 60 to 86400. The module waits for it that
        long plus O(timeout) for queueing.
    type: int
    default: 1200
notes:
  - Check mode uploads and builds nothing; it reports a change when the repository does not hold the tag.
    A missing repository or source bucket is then a warning, not a failure, since an earlier task of the play
    may create it.
  - A build interrupted on the module's side (timeout, lost connection) goes on in Cloud Build; a re-run
    finds the image once it is pushed, or builds again.
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Build the MLflow server image (nothing happens when its sources did not change)
  deployml.mlops.container_image:
    project: my-project
    source: "{{ role_path }}/files/mlflow"
    repository: mlops
    location: europe-west1
    image: mlflow
    build_args:
      MLFLOW_VERSION: "3.17.2"
    source_bucket: my-project-builds
    build_service_account: builder
  register: mlflow_image

- name: Deploy it by digest
  deployml.mlops.cloud_run_service:
    project: my-project
    name: mlflow
    location: europe-west1
    image: "{{ mlflow_image.image }}"
"""

RETURN = r"""
image:
  description:
    - The image by digest, V(LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE@sha256:...).
    - V(null) in check mode when the image would be built.
  returned: always
  type: str
  sample: europe-west1-docker.pkg.dev/my-project/mlops/mlflow@sha256:3f1d9b6c0e4a7d2b8c5f9e1a0b3c6d8e2f4a7b9c1d3e5f7a9b0c2d4e6f8a1b3c
tag:
  description: The content tag, V(ctx-) and 20 hex digits of the context's SHA-256.
  returned: always
  type: str
  sample: ctx-3b9f0c1d2e4a5b6c7d8e
digest:
  description: The image digest. V(null) in check mode when the image would be built.
  returned: always
  type: str
  sample: sha256:3f1d9b6c0e4a7d2b8c5f9e1a0b3c6d8e2f4a7b9c1d3e5f7a9b0c2d4e6f8a1b3c
tagged_image:
  description: The image by tag.
  returned: always
  type: str
  sample: europe-west1-docker.pkg.dev/my-project/mlops/mlflow:ctx-3b9f0c1d2e4a5b6c7d8e
context_sha256:
  description: The full SHA-256 of the build context, the Dockerfile path and the build arguments.
  returned: always
  type: str
built:
  description: Whether the image was built (or would be, in check mode).
  returned: always
  type: bool
uploaded:
  description: Whether the context archive was uploaded (V(false) when an identical one was already there).
  returned: when the image was built
  type: bool
build:
  description: The Cloud Build build, with its ID, status and the URL of its logs.
  returned: when the image was built, and when the build failed
  type: dict
  sample:
    id: 9f8e7d6c-1111-2222-3333-444455556666
    status: SUCCESS
    log_url: https://console.cloud.google.com/cloud-build/builds;region=europe-west1/9f8e7d6c-1111-2222-3333-444455556666?project=123456789
"""

import base64
import hashlib
import re
from urllib.parse import quote, unquote

from ansible_collections.deployml.mlops.plugins.module_utils.build import BuildContext, ContextError
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import LOCATION, GcpApiError, GcpModule
from ansible_collections.deployml.mlops.plugins.module_utils.iam import service_account_email
from ansible_collections.deployml.mlops.plugins.module_utils.resource import ResourceError, exit_module

REGISTRY = "artifactregistry"
BUILD = "cloudbuild"
STORAGE = "storage"
REPOSITORY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
IMAGE_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = re.compile(r"^%s(?:/%s)*$" % (IMAGE_PART, IMAGE_PART))
BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
BUILD_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Pinned: the builder's docker decides how the image is built. Cloud Build's docker builder has a tag per supported
# docker version (GoogleCloudPlatform/cloud-builders, docker/cloudbuild.yaml: 19.03.15, 20.10.24, 24.0.9).
BUILDER = "gcr.io/cloud-builders/docker:24.0.9"
# An image with a tag or a digest (no implicit :latest).
IMAGE_REFERENCE = re.compile(r"^[a-z0-9][a-z0-9._-]*(?::[0-9]+)?(?:/[a-z0-9._-]+)*"
                             r"(?::\w[\w.-]{0,127}|@sha256:[0-9a-f]{64})$")
TERMINAL = ("SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED")
QUEUE_ALLOWANCE = 600  # seconds a build may wait in the queue on top of its own timeout


class ContainerImage:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = module.client
        p = self.params
        self.project = p["project"]
        self.bucket = p["source_bucket"] or "%s_cloudbuild" % self.project
        self.repository = "projects/%s/locations/%s/repositories/%s" % (self.project, p["location"], p["repository"])
        self.context = None

    # --- options -------------------------------------------------------------------------------------

    def build_args(self):
        return {str(k): v if isinstance(v, str) else str(v) for k, v in (self.params["build_args"] or {}).items()}

    def validate(self):
        p = self.params
        errors = []
        if not REPOSITORY_ID.match(p["repository"]):
            errors.append("repository %r must be a repository ID: lowercase letters, digits and '-', starting with "
                          "a letter" % p["repository"])
        if not LOCATION.match(p["location"]):
            errors.append("location %r is not a location such as europe-west1 or europe" % p["location"])
        if not IMAGE.match(p["image"]) or len(p["image"]) > 255:
            errors.append("image %r must be lowercase letters and digits, with '.', '_' or '-' inside a part and '/' "
                          "between parts (such as mlflow or serving/api)" % p["image"])
        if not BUCKET.match(self.bucket):
            errors.append("source_bucket %r is not a Cloud Storage bucket name" % self.bucket)
        for key, value in (p["build_args"] or {}).items():
            if not BUILD_ARG.match(str(key)):
                errors.append("build_args: %r is not a valid argument name (letters, digits and '_')" % key)
            if isinstance(value, (bool, dict, list)) or value is None:
                errors.append("build_args: %r must have a string value (quote numbers and booleans)" % key)
        if not IMAGE_REFERENCE.match(p["builder"] or ""):
            errors.append("builder %r must be an image with a tag or a digest, such as %s or "
                          "gcr.io/cloud-builders/docker@sha256:..." % (p["builder"], BUILDER))
        if not 60 <= p["build_timeout"] <= 86400:
            errors.append("build_timeout must be from 60 to 86400 seconds, got %d" % p["build_timeout"])
        if errors:
            raise ResourceError("invalid options for container image %s: %s" % (p["image"], "; ".join(errors)))
        try:
            self.context = BuildContext(p["source"], p["dockerfile"], self.build_args(), builder=p["builder"])
            self.context.digest  # pylint: disable=pointless-statement  # read every file now: errors before any request
        except ContextError as exc:
            raise ResourceError("container image %s: %s" % (p["image"], exc)) from None

    # --- names ---------------------------------------------------------------------------------------

    @property
    def image_path(self):
        p = self.params
        return "%s-docker.pkg.dev/%s/%s/%s" % (p["location"], self.project, p["repository"], p["image"])

    @property
    def object_name(self):
        return "deployml/%s-%s.tgz" % (self.params["image"], self.context.tag())

    @property
    def build_location(self):
        location = self.params["location"]
        return location if "-" in location else "global"  # multi-regions (us, europe, asia) have no build region

    # --- reads ---------------------------------------------------------------------------------------

    def tagged_digest(self, tag):
        """The digest the repository's tag points at, or None when the repository holds no such tag."""
        path = "/v1/%s/packages/%s/tags/%s" % (self.repository, quote(self.params["image"], safe=""), tag)
        found = self.client.get(REGISTRY, path, resource="%s:%s" % (self.image_path, tag))
        if not found or not found.get("version"):
            return None
        return unquote(found["version"].rsplit("/versions/", 1)[-1])

    def check_repository(self):
        repository = self.client.get(REGISTRY, "/v1/" + self.repository, resource=self.repository)
        if repository is None:
            raise ResourceError(
                "Artifact Registry repository %s does not exist: create it first (deployml.mlops."
                "artifact_registry_repository with name %s and location %s)"
                % (self.repository, self.params["repository"], self.params["location"]))
        if repository.get("format") not in (None, "DOCKER"):
            raise ResourceError("Artifact Registry repository %s holds %s packages, not docker images"
                                % (self.repository, repository["format"]))

    def check_bucket(self):
        resource = "gs://%s" % self.bucket
        if self.client.get(STORAGE, "/storage/v1/b/%s" % self.bucket, resource=resource) is None:
            raise ResourceError(
                "the source bucket %s does not exist: the build context is uploaded there before the build. "
                "Create it first (for example with deployml.mlops.gcs_bucket name=%s), or set source_bucket to "
                "an existing bucket" % (resource, self.bucket))

    # --- writes --------------------------------------------------------------------------------------

    def upload(self, archive):
        """Upload the archive unless the same bytes are there; return (generation, uploaded)."""
        resource = "gs://%s/%s" % (self.bucket, self.object_name)
        md5 = base64.b64encode(hashlib.md5(archive).digest()).decode("ascii")
        path = "/storage/v1/b/%s/o/%s" % (self.bucket, quote(self.object_name, safe=""))
        existing = self.client.get(STORAGE, path, resource=resource)
        if existing and existing.get("md5Hash") == md5 and existing.get("generation"):
            return existing["generation"], False
        uploaded = self.client.request(
            "POST", STORAGE, "/upload/storage/v1/b/%s/o" % self.bucket, resource=resource,
            params={"uploadType": "media", "name": self.object_name}, data=archive,
            headers={"Content-Type": "application/gzip"})
        if uploaded.get("md5Hash") and uploaded["md5Hash"] != md5:
            raise ResourceError("the upload of %s was corrupted (MD5 %s, expected %s); run again"
                                % (resource, uploaded["md5Hash"], md5))
        return uploaded.get("generation"), True

    def build_request(self, tagged, generation):
        p = self.params
        args = ["build", "-t", tagged, "-f", self.context.dockerfile]
        for key, value in sorted(self.build_args().items()):
            args += ["--build-arg", "%s=%s" % (key, value)]
        args.append(".")
        storage_source = {"bucket": self.bucket, "object": self.object_name}
        if generation:
            storage_source["generation"] = str(generation)
        body = {
            "source": {"storageSource": storage_source},
            "steps": [{"name": p["builder"], "args": args}],
            "images": [tagged],
            "timeout": "%ds" % p["build_timeout"],
            "tags": ["deployml", self.context.tag()],
        }
        if p["build_service_account"]:
            email = service_account_email(p["build_service_account"], self.project)
            body["serviceAccount"] = "projects/%s/serviceAccounts/%s" % (self.project, email)
            body["options"] = {"logging": "CLOUD_LOGGING_ONLY"}
        return body

    @property
    def build_parent(self):
        return "projects/%s/locations/%s" % (self.project, self.build_location)

    def running_build(self, tag, tagged):
        """A build of this very content tag still queued or working (a run interrupted while it built, or one
        going on now): waited for instead of starting the same build twice."""
        listed = self.client.request("GET", BUILD, "/v1/%s/builds" % self.build_parent, resource=tagged,
                                     params={"filter": 'tags="%s"' % tag})
        for build in listed.get("builds") or []:
            if build.get("status") not in TERMINAL and tagged in (build.get("images") or []):
                return build
        return None

    def start_build(self, body):
        operation = self.client.request("POST", BUILD, "/v1/%s/builds" % self.build_parent,
                                        resource=body["images"][0], body=body)
        build = (operation.get("metadata") or {}).get("build") or {}
        if operation.get("done") and operation.get("response"):
            build = operation["response"]
        if not build.get("id"):
            raise ResourceError("Cloud Build answered without a build ID: %s" % operation)
        return build

    def wait_build(self, build, result):
        """Wait until the build ends; return the final Build."""
        result["build"] = self.summary(build)
        name = build.get("name") or "%s/builds/%s" % (self.build_parent, build["id"])
        client = self.client
        budget = client.timeout
        client.timeout = max(budget, self.params["build_timeout"] + QUEUE_ALLOWANCE)
        try:
            build = client.wait(lambda: client.request("GET", BUILD, "/v1/" + name, resource=name),
                                lambda b: b.get("status") in TERMINAL, resource=name)
        except GcpApiError as exc:
            if exc.reason == "TIMEOUT":
                exc.message = "build %s still running after %ss; it goes on in Cloud Build (logs: %s); run again " \
                              "once it is done" % (build["id"], client.timeout, build.get("logUrl") or "n/a")
            raise
        finally:
            client.timeout = budget
        result["build"] = self.summary(build)
        return build

    @staticmethod
    def summary(build):
        summary = dict(id=build.get("id"), status=build.get("status"), log_url=build.get("logUrl"))
        if build.get("statusDetail"):
            summary["status_detail"] = build["statusDetail"]
        return summary

    def failure(self, build, tagged):
        info = build.get("failureInfo") or {}
        detail = build.get("statusDetail") or info.get("detail") or "no detail given"
        message = "Cloud Build build %s of %s ended with status %s: %s" % (
            build.get("id"), tagged, build.get("status"), detail)
        if info.get("detail") and info["detail"] not in detail:
            message += " (%s: %s)" % (info.get("type", "failure"), info["detail"])
        return message + "; logs: %s" % (build.get("logUrl") or "not available")

    @staticmethod
    def built_digest(build, tagged):
        images = (build.get("results") or {}).get("images") or []
        for item in images:
            if item.get("name") == tagged and item.get("digest"):
                return item["digest"]
        return None

    # --- the run -------------------------------------------------------------------------------------

    def run(self):
        module = self.module
        result = dict(changed=False)
        try:
            self.validate()
            tag = self.context.tag()
            tagged = "%s:%s" % (self.image_path, tag)
            result.update(tag=tag, tagged_image=tagged, context_sha256=self.context.digest)

            digest = self.tagged_digest(tag)
            if digest:
                result.update(image="%s@%s" % (self.image_path, digest), digest=digest, built=False)
                return result

            for check in (self.check_repository, self.check_bucket):
                try:
                    check()
                except ResourceError as exc:
                    if not module.check_mode:
                        raise
                    # In check mode an earlier task of the play may be about to create it: say so, go on.
                    module.warn("%s (in check mode: assuming an earlier task creates it)" % exc)
            result.update(changed=True, built=True, image=None, digest=None,
                          diff=dict(before={}, after=dict(tagged_image=tagged, source=self.params["source"],
                                                          context_sha256=self.context.digest)))
            if module.check_mode:
                return result

            build = self.running_build(tag, tagged)
            if build:
                result["uploaded"] = False
            else:
                generation, result["uploaded"] = self.upload(self.context.archive())
                build = self.start_build(self.build_request(tagged, generation))
            build = self.wait_build(build, result)
            if build.get("status") != "SUCCESS":
                raise ResourceError(self.failure(build, tagged))
            digest = self.built_digest(build, tagged) or self.tagged_digest(tag)
            if not digest:
                raise ResourceError("build %s succeeded but %s is not in the repository; logs: %s"
                                    % (build.get("id"), tagged, build.get("logUrl")))
            result.update(image="%s@%s" % (self.image_path, digest), digest=digest)
            result["diff"]["after"]["image"] = result["image"]
            return result
        except ResourceError as exc:
            module.fail_json(msg=str(exc), **result)
        except GcpApiError as exc:
            module.fail_api(exc, **result)


def main():
    module = GcpModule(
        argument_spec=dict(
            source=dict(type="path", required=True),
            repository=dict(type="str", required=True),
            location=dict(type="str", required=True),
            image=dict(type="str", required=True),
            dockerfile=dict(type="str", default="Dockerfile"),
            build_args=dict(type="dict"),
            builder=dict(type="str", default=BUILDER),
            source_bucket=dict(type="str"),
            build_service_account=dict(type="str"),
            build_timeout=dict(type="int", default=1200),
        ),
    )
    exit_module(module, ContainerImage(module).run())


if __name__ == "__main__":
    main()
