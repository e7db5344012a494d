"""Cloud Build v1: builds create, get, list, cancel (regional and global) and operations.get.

As Google:
- create answers a google.longrunning operation whose metadata is {@type BuildOperationMetadata, build};
  regional operations are projects/NUMBER/locations/L/operations/ID, global ones operations/build/PROJECT/ID;
- a build is QUEUED when created, WORKING from the first poll (builds.get or operations.get) and finishes
  on the fake.operation_polls-th poll (with fake.realism.timed_operations: WORKING once its queue time has
  passed, finished after its build time, see durations.py): SUCCESS, with results.images [{name, digest}]
  for every entry of `images` (each pushed into the fake Artifact Registry), or FAILURE with statusDetail
  and failureInfo;
  the operation then has the Build as response, or error {code 2, "Build failed; check build logs for
  details"};
- the build is named projects/NUMBER/locations/L/builds/ID and carries logUrl, logsBucket, timeout
  ("600s" by default), queueTtl, createTime/startTime/finishTime, per-step status and timing;
- bad builds are refused at create (400): substitution keys not matching ^_[A-Z0-9_]+$, a step with both
  script and args/entrypoint, waitFor naming an unknown step, a bad image name, a timeout over 24h, a
  serviceAccount without logsBucket / REGIONAL_USER_OWNED_BUCKET / CLOUD_LOGGING_ONLY or NONE logging, a
  service account that does not exist, and - when storage_url is set - a storage source that cannot be
  read ("could not resolve source: googleapi: Error 404: No such object: BUCKET/OBJECT, notFound").

Test controls (fake.apis["cloudbuild"]):
    fail_builds(count=1, detail=None)   the next `count` builds created end in FAILURE (USER_BUILD_STEP)
    storage_url = "http://127.0.0.1:PORT"   check storage sources against this GCS emulator (None: no check)
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import urlopen

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.errors import failed_precondition, invalid, not_found
from tests.standins.fakegcp.operations import render_lro
from tests.standins.fakegcp.util import deep, now, paginate

TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1."
LOCATION = re.compile(r"^([a-z]+-[a-z]+[0-9]+|global)$")
SUBSTITUTION = re.compile(r"^_[A-Z0-9_]+$")
# REGISTRY/PATH[:TAG][@sha256:DIGEST], as docker parses references.
IMAGE_REF = re.compile(r"^(?P<host>[a-z0-9.-]+(:[0-9]+)?)/(?P<path>[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
                       r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[0-9a-f]{64}))?$")
AR_HOST = re.compile(r"^([a-z0-9-]+)-docker\.pkg\.dev$")
SERVICE_ACCOUNT = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)$")
MAX_TIMEOUT = 24 * 3600
FAILED = "Build failed; check build logs for details"


def seconds(duration):
    return float(duration[:-1])


class CloudBuild(Api):
    name = "cloudbuild"
    document = "cloudbuild.v1"
    controls = ("fail_builds",)

    def __init__(self, fake):
        super().__init__(fake)
        self.storage_url = None
        self.failures = []  # [[remaining, detail]]
        # Global operation names hold slashes (operations/build/PROJECT/ID) under the one-segment flat path.
        method = self.doc.method("cloudbuild.operations.get")
        if method.flat_regex.pattern.endswith("[^/:]+)$"):
            method.flat_regex = re.compile(method.flat_regex.pattern[:-len("[^/:]+)$")] + "[^:]+)$")

    def reset(self):
        super().reset()
        self.state["builds"] = {}  # "project_id/location/id" -> {"build": {...}, "operation": name, ...}

    def clear(self):
        self.failures.clear()

    # ---- test controls -----------------------------------------------------------------------------------
    def fail_builds(self, count=1, detail=None):
        """The next `count` builds created end in FAILURE (failureInfo USER_BUILD_STEP) with this detail
        (default: step 0 exited with status 1)."""
        with self.fake.lock:
            self.failures.append([count, detail])

    # ---- names ---------------------------------------------------------------------------------------------
    def _location(self, location):
        if not LOCATION.match(location):
            raise invalid("Invalid location %r: use a region such as us-central1, or global." % location,
                          field="parent")
        return location

    def _entry(self, project, location, build_id):
        project_id, number = self.projects.resolve(project)
        entry = self.state["builds"].get("%s/%s/%s" % (project_id, location, build_id))
        if entry is None:
            raise not_found("Requested entity was not found: build %s in projects/%s/locations/%s."
                            % (build_id, number, location))
        return entry

    def _regional(self, name):
        parts = name.split("/")
        return self._entry(parts[1], self._location(parts[3]), parts[5])

    # ---- validation ------------------------------------------------------------------------------------------
    def _check(self, build):
        for key in build.get("substitutions") or {}:
            if not SUBSTITUTION.match(key):
                raise invalid('invalid build: invalid .substitutions field: substitution key "%s" does not respect '
                              'format "^_[A-Z0-9_]+$"' % key, field="build.substitutions")
        ids = set()
        for index, step in enumerate(build["steps"]):
            if step.get("script") and (step.get("args") or step.get("entrypoint")):
                raise invalid("invalid build: step %d: script cannot be used with args or entrypoint" % index,
                              field="build.steps[%d].script" % index)
            for ref in step.get("waitFor") or []:
                if ref != "-" and ref not in ids:
                    raise invalid('invalid build: build step %d depends on build step "%s", which does not precede '
                                  "it" % (index, ref), field="build.steps[%d].wait_for" % index)
            if step.get("id"):
                if step["id"] in ids:
                    raise invalid('invalid build: duplicate build step id "%s"' % step["id"],
                                  field="build.steps[%d].id" % index)
                ids.add(step["id"])
        for image in list(build.get("images") or []) + list((build.get("artifacts") or {}).get("images") or []):
            if not IMAGE_REF.match(image):
                raise invalid('invalid build: invalid image name "%s"' % image, field="build.images")
        timeout = build.get("timeout")
        if timeout is not None and not 0 < seconds(timeout) <= MAX_TIMEOUT:
            raise invalid("invalid build: invalid timeout %s: it must be positive and at most 24h" % timeout,
                          field="build.timeout")
        account = build.get("serviceAccount")
        if account:
            match = SERVICE_ACCOUNT.match(account)
            if not match:
                raise invalid("invalid build: service_account must be of the form "
                              "projects/{PROJECT_ID}/serviceAccounts/{ACCOUNT}, got %r" % account,
                              field="build.service_account")
            email = match.group(2)
            if "@" in email and not self.fake.service_account_exists(email):
                raise invalid("invalid build: service account %s does not exist" % email,
                              field="build.service_account")
            options = build.get("options") or {}
            if not build.get("logsBucket") and options.get("logging") not in ("CLOUD_LOGGING_ONLY", "NONE") \
                    and options.get("defaultLogsBucketBehavior") != "REGIONAL_USER_OWNED_BUCKET":
                raise invalid("invalid build: if 'build.service_account' is specified, the build must either (a) "
                              "specify 'build.logs_bucket', (b) use the REGIONAL_USER_OWNED_BUCKET "
                              "build.options.default_logs_bucket_behavior option, or (c) use either "
                              "CLOUD_LOGGING_ONLY / NONE logging options", field="build.service_account")
        source = (build.get("source") or {}).get("storageSource")
        if source is not None:
            if not source.get("bucket"):
                raise invalid("invalid build: source.storage_source.bucket is required",
                              field="build.source.storage_source.bucket")
            resolved = self._resolve_source(source)
            build["sourceProvenance"] = {"resolvedStorageSource": resolved}

    def _resolve_source(self, source):
        """The storage source with its generation, read from the storage emulator when storage_url is set."""
        resolved = {k: source[k] for k in ("bucket", "object", "generation") if k in source}
        if not self.storage_url:
            return resolved
        url = "%s/storage/v1/b/%s/o/%s" % (self.storage_url.rstrip("/"), quote(source["bucket"], safe=""),
                                           quote(source["object"], safe=""))
        if source.get("generation"):
            url += "?generation=%s" % source["generation"]
        try:
            with urlopen(url, timeout=10) as answer:  # nosec: the local storage emulator
                meta = json.loads(answer.read() or b"{}")
        except HTTPError as exc:
            if exc.code != 404:
                raise invalid("could not resolve source: googleapi: Error %d: %s" % (exc.code, exc.reason),
                              field="build.source") from None
            if source.get("generation"):
                detail = "No such object: %s/%s#%s" % (source["bucket"], source["object"], source["generation"])
            else:
                detail = "No such object: %s/%s" % (source["bucket"], source["object"])
            raise invalid("could not resolve source: googleapi: Error 404: %s, notFound" % detail,
                          field="build.source") from None
        except (URLError, OSError) as exc:
            raise invalid("could not resolve source: cannot reach the storage emulator at %s: %s"
                          % (self.storage_url, exc), field="build.source") from None
        if source.get("generation") and str(meta.get("generation")) != str(source["generation"]):
            raise invalid("could not resolve source: googleapi: Error 404: No such object: %s/%s#%s, notFound"
                          % (source["bucket"], source["object"], source["generation"]), field="build.source")
        if meta.get("generation"):
            resolved["generation"] = str(meta["generation"])
        return resolved

    # ---- create ---------------------------------------------------------------------------------------------
    def _create(self, project, location, body):
        project_id, number = self.projects.resolve(project)
        build = deep(body)
        self._check(build)
        build_id = str(uuid.uuid4())
        stamp = now()
        region = "" if location == "global" else ";region=%s" % location
        build.update(
            id=build_id, name="projects/%s/locations/%s/builds/%s" % (number, location, build_id),
            projectId=project_id, status="QUEUED", createTime=stamp,
            logUrl="https://console.cloud.google.com/cloud-build/builds%s/%s?project=%s" % (region, build_id, number))
        build.setdefault("timeout", "600s")
        build.setdefault("queueTtl", "3600s")
        build.setdefault("logsBucket", "gs://%s.cloudbuild-logs.googleusercontent.com" % number)
        options = build.setdefault("options", {})
        options.setdefault("logging", "LEGACY")
        options.setdefault("pool", {})
        for step in build["steps"]:
            step["status"] = "QUEUED"
        failure = None
        for planned in self.failures:
            if planned[0] > 0:
                planned[0] -= 1
                failure = planned[1] or 'Build step failure: build step 0 "%s" failed: step exited with non-zero ' \
                                        'status: 1' % build["steps"][0]["name"]
                break
        key = "%s/%s/%s" % (project_id, location, build_id)
        entry = {"build": build, "failure": failure, "cancelled": False}
        token = base64.urlsafe_b64encode(build_id.encode()).decode().rstrip("=")
        if location == "global":
            op_name = "operations/build/%s/%s" % (project_id, token)
        else:
            op_name = "projects/%s/locations/%s/operations/%s" % (number, location, token)
        entry["operation"] = op_name
        self.state["builds"][key] = entry

        def finish(ok):
            op = self.operations.get(op_name)
            if not ok:  # fake.fail_operations(): the build system itself failed
                self._end(entry, "INTERNAL_ERROR", detail=op.failure[1] or "Internal error encountered.")
                return None
            if entry["cancelled"]:
                self._end(entry, "CANCELLED", detail="Build was cancelled")
                op.error = (1, "Build was cancelled")
                return None
            if entry["failure"]:
                self._end(entry, "FAILURE", detail=entry["failure"], kind="USER_BUILD_STEP", failed_step=0)
                op.error = (2, FAILED)
                return None
            problem = self._push(entry["build"])
            if problem:
                self._end(entry, "FAILURE", detail=problem, kind="PUSH_FAILED")
                op.error = (2, FAILED)
                return None
            self._end(entry, "SUCCESS")
            return dict(deep(entry["build"]), **{"@type": TYPE + "Build"})

        # The build waits QUEUED for a worker (the queue stage), then runs WORKING until it finishes.
        self.operations.start(op_name, self.name, finish=finish, metadata=self._metadata(build),
                              kind="cloudbuild.build", target=build["name"],
                              stages=[("cloudbuild.queue", lambda: self._working(entry))])
        return self._render(entry)

    def _push(self, build):
        """Push the build's images into the fake Artifact Registry; the failure message or None."""
        registry = self.fake.apis.get("artifactregistry")
        images, stamp = [], now()
        for ref in list(build.get("images") or []) + list((build.get("artifacts") or {}).get("images") or []):
            match = IMAGE_REF.match(ref)
            host, path = match.group("host"), match.group("path")
            tag = match.group("tag") or ("latest" if not match.group("digest") else None)
            digest = "sha256:" + hashlib.sha256(("%s|%s" % (build["id"], ref)).encode()).hexdigest()
            host_match = AR_HOST.match(host)
            if host_match and registry is not None:
                parts = path.split("/", 2)
                if len(parts) < 3:
                    return 'failed to push image "%s": an Artifact Registry image is LOCATION-docker.pkg.dev/' \
                           'PROJECT/REPOSITORY/IMAGE' % ref
                repository = "%s/%s/%s" % (host, parts[0], parts[1])
                if registry.find_repository(repository) is None:
                    return 'failed to push image "%s": name unknown: Repository "%s" not found' % (ref, parts[1])
                try:
                    pushed = registry.push_image(repository, parts[2], tag, digest)
                except Exception as exc:  # pylint: disable=broad-except  # an ApiError: the push failed
                    return 'failed to push image "%s": %s' % (ref, exc)
                images.append({"name": ref, "digest": digest, "pushTiming": {"startTime": stamp, "endTime": now()},
                               "artifactRegistryPackage": pushed["name"].split("/dockerImages/")[0] + "/packages/"
                               + pushed["name"].split("/dockerImages/")[1].split("@")[0]})
                continue
            images.append({"name": ref, "digest": digest, "pushTiming": {"startTime": stamp, "endTime": now()}})
        build.setdefault("results", {})
        if images:
            build["results"]["images"] = images
        return None

    def _end(self, entry, status, detail=None, kind=None, failed_step=None):
        build = entry["build"]
        stamp = now()
        build.setdefault("startTime", stamp)
        build["status"] = status
        build["finishTime"] = stamp
        if detail:
            build["statusDetail"] = detail
        if kind:
            build["failureInfo"] = {"type": kind, "detail": detail}
        for index, step in enumerate(build["steps"]):
            if status == "SUCCESS" or kind == "PUSH_FAILED" or (failed_step is not None and index < failed_step):
                step["status"] = "SUCCESS"
            elif failed_step == index:
                step["status"], step["exitCode"] = "FAILURE", 1
            elif status == "CANCELLED":
                step["status"] = "CANCELLED"
            if step["status"] in ("SUCCESS", "FAILURE"):
                step["timing"] = {"startTime": build["startTime"], "endTime": stamp}
        results = build.setdefault("results", {})
        results["buildStepImages"] = [
            "sha256:" + hashlib.sha256(step["name"].encode()).hexdigest() if step["status"] in ("SUCCESS", "FAILURE")
            else "" for step in build["steps"]]
        results["buildStepOutputs"] = ["" for _step in build["steps"]]
        build["timing"] = {"BUILD": {"startTime": build["startTime"], "endTime": stamp}}
        if build.get("results", {}).get("images"):
            build["timing"]["PUSH"] = {"startTime": stamp, "endTime": stamp}
        if (build.get("source") or {}).get("storageSource"):
            build["timing"]["FETCHSOURCE"] = {"startTime": build["startTime"], "endTime": build["startTime"]}
        op = self.operations.get(entry["operation"])
        if op is not None:
            op.metadata = self._metadata(build)

    @staticmethod
    def _metadata(build):
        return {"@type": TYPE + "BuildOperationMetadata", "build": deep(build)}

    def _working(self, entry):
        """A worker picked the build up: it leaves QUEUED (unless it already ended, e.g. cancelled)."""
        build = entry["build"]
        if build["status"] != "QUEUED" or entry["cancelled"]:
            return
        build["status"] = "WORKING"
        build["startTime"] = now()
        for step in build["steps"]:
            step["status"] = "WORKING" if step is build["steps"][0] else "QUEUED"
        op = self.operations.get(entry["operation"])
        if op is not None:
            op.metadata = self._metadata(build)

    def _advance(self, entry):
        """A read of the build or its operation: by polls it counts as a poll (the first one starts a queued
        build WORKING); by time the build moves on by itself."""
        return self.operations.poll(entry["operation"])

    def _render(self, entry):
        op = self.operations.get(entry["operation"])
        return deep(render_lro(op))

    # ---- handlers --------------------------------------------------------------------------------------------
    @handles("cloudbuild.projects.locations.builds.create")
    def create_regional(self, req):
        parts = req["parent"].split("/")
        return self._create(parts[1], self._location(parts[3]), req.body)

    @handles("cloudbuild.projects.builds.create")
    def create_global(self, req):
        if req.get("parent"):
            parts = req["parent"].split("/")
            if len(parts) != 4 or parts[0] != "projects" or parts[2] != "locations":
                raise invalid("Invalid parent %r: expected projects/P/locations/L." % req["parent"], field="parent")
            return self._create(parts[1], self._location(parts[3]), req.body)
        return self._create(req["projectId"], "global", req.body)

    @handles("cloudbuild.projects.locations.builds.get")
    def get_regional(self, req):
        entry = self._regional(req["name"])
        self._advance(entry)
        return deep(entry["build"])

    @handles("cloudbuild.projects.builds.get")
    def get_global(self, req):
        if req.get("name"):
            entry = self._regional(req["name"])
        else:
            entry = self._entry(req["projectId"], "global", req["id"])
        self._advance(entry)
        return deep(entry["build"])

    def _list(self, project, location, req):
        project_id = self.projects.resolve(project)[0]
        prefix = "%s/%s/" % (project_id, location)
        builds = [e["build"] for k, e in self.state["builds"].items() if k.startswith(prefix)]
        builds.sort(key=lambda b: b["createTime"], reverse=True)
        flt = (req.get("filter") or "").strip()
        if flt:
            match = re.match(r'^(status|id|tags|images|build_id)\s*=\s*"([^"]*)"$', flt)
            if not match:
                raise invalid('The fake supports the filters status="S", id="ID", tags="T" and images="IMAGE", not %r.'
                              % flt, field="filter")
            field, value = match.group(1), match.group(2)
            field = "id" if field == "build_id" else field
            builds = [b for b in builds if value == b.get(field)
                      or (isinstance(b.get(field), list) and value in b[field])]
        page, token = paginate(builds, req.get("pageSize"), req.get("pageToken"), default_size=50, max_size=1000)
        body = {"builds": deep(page)} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("cloudbuild.projects.locations.builds.list")
    def list_regional(self, req):
        parts = req["parent"].split("/")
        return self._list(parts[1], self._location(parts[3]), req)

    @handles("cloudbuild.projects.builds.list")
    def list_global(self, req):
        if req.get("parent"):
            parts = req["parent"].split("/")
            return self._list(parts[1], self._location(parts[3]), req)
        return self._list(req["projectId"], "global", req)

    def _cancel(self, entry):
        op = self.operations.get(entry["operation"])
        if op.done:
            raise failed_precondition("Build %s is already finished (status %s): it cannot be cancelled."
                                      % (entry["build"]["id"], entry["build"]["status"]))
        entry["cancelled"] = True
        op.failure = None
        op.complete()
        return deep(entry["build"])

    @handles("cloudbuild.projects.locations.builds.cancel", partial=True)
    def cancel_regional(self, req):
        return self._cancel(self._regional(req["name"]))

    @handles("cloudbuild.projects.builds.cancel", partial=True)
    def cancel_global(self, req):
        if req.body.get("name"):
            return self._cancel(self._regional(req.body["name"]))
        return self._cancel(self._entry(req["projectId"], "global", req["id"]))

    def _operation(self, name):
        entry = next((e for e in self.state["builds"].values() if e["operation"] == name), None)
        if entry is None:
            raise not_found("Operation %s not found." % name)
        self._advance(entry)
        return self._render(entry)

    @handles("cloudbuild.projects.locations.operations.get")
    def get_regional_operation(self, req):
        parts = req["name"].split("/")
        number = self.projects.resolve(parts[1])[1]
        return self._operation("/".join(["projects", number] + parts[2:]))

    @handles("cloudbuild.operations.get")
    def get_global_operation(self, req):
        return self._operation(req["name"])
