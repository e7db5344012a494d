"""Cloud Run Admin API v2: services with revisions, jobs with executions, their IAM policies, and operations.

As Cloud Run:
- names in answers use the project id: projects/P/locations/L/services/S, .../services/S/revisions/S-00001-abc,
  .../jobs/J, .../jobs/J/executions/J-abcde, operations projects/P/locations/L/operations/UUID;
- create, patch, delete, jobs.run and executions.cancel answer a google.longrunning operation whose metadata
  and response are the resource with its @type; it is done after fake.operation_polls polls of
  operations.get (a running execution also progresses on executions.get);
- what Cloud Run fills in is filled in (ingress, launchStage, traffic, template scaling/timeout/concurrency,
  serviceAccount = the compute default account, container limits, cpuIdle, ports, the default TCP startup
  probe, job taskCount/maxRetries/timeout ...); empty strings and lists are dropped and `reconciling` is
  omitted when false, as proto3 JSON does;
- generation bumps on any change of the desired state; a new revision S-<generation>-xyz only when the
  template changes (or forceNewRevision); the etag changes with the generation; PATCH/DELETE with a stale
  etag fails 409 ABORTED; PATCH without updateMask replaces the whole service (jobs: always);
- while an operation runs the resource is `reconciling` with Ready CONDITION_RECONCILING; a revision that
  fails (fail_revisions) leaves latestReadyRevision, observedGeneration and trafficStatuses on the last
  serving revision, sets terminalCondition CONDITION_FAILED with its reason, and the operation ends with
  code 9 FAILED_PRECONDITION "Revision 'X' is not ready and cannot serve traffic. <message>";
- a failed operation (fake.fail_operations) rolls the change back (a failed create leaves no resource);
- with fake.realism.permissions or .propagation on, a revision (or execution) whose runtime account cannot (yet)
  read a secret it uses fails the same way, reason SECRETS_ACCESS_CHECK_FAILED, with Google's "Permission denied
  on secret" text (permissions.secret_denial);
- beyond the schema: ids, images, cpu/memory values and combinations, concurrency, timeouts, scaling, env
  names (unique, not reserved), Secret Manager references (the secret and version must exist in the fake),
  service accounts (a user-managed one must exist in the fake IAM), volumes and mounts, Cloud SQL
  connection names, probes, traffic, labels and annotations (no run.googleapis.com/... keys).

Test controls: fake.apis["run"].fail_revisions(count=1, reason=..., message=...) and
fail_executions(count=1, message=None).
"""

from __future__ import annotations

import hashlib
import random
import re
import string
import uuid

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.discovery import is_output_only, snake
from tests.standins.fakegcp.errors import ApiError, aborted, already_exists, failed_precondition, invalid, not_found
from tests.standins.fakegcp.iam_policy import USER_MANAGED_SA
from tests.standins.fakegcp.operations import render_lro
from tests.standins.fakegcp.permissions import secret_denial
from tests.standins.fakegcp.regions import CLOUD_RUN
from tests.standins.fakegcp.util import apply_mask, deep, label_problems, mask_paths, new_etag, now, paginate

TYPE = "type.googleapis.com/google.cloud.run.v2."
SERVICE_ID = re.compile(r"^[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?$")
JOB_ID = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
REVISION_ID = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
CPU = re.compile(r"^(?:([0-9]+)m|([0-9]+(?:\.[0-9]+)?))$")
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
UNITS = {None: 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
         "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}
SQL_CONNECTION = re.compile(r"^[a-z0-9.:-]+:[a-z]+-[a-z]+[0-9]+:[a-z][a-z0-9-]*$")
SECRET_NAME = re.compile(r"^(?:projects/([^/]+)/secrets/)?([a-zA-Z0-9_-]{1,255})$")
ENV_NAME = re.compile(r"^[^=]+$")
RESERVED_NAMESPACES = ("run.googleapis.com", "cloud.googleapis.com", "serving.knative.dev", "autoscaling.knative.dev")
RESERVED_ENV = {"service": ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"),
                "job": ("CLOUD_RUN_JOB", "CLOUD_RUN_EXECUTION", "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_ATTEMPT",
                        "CLOUD_RUN_TASK_COUNT")}
LIMIT_KEYS = ("cpu", "memory", "nvidia.com/gpu")
CPU_STEPS = (1000, 2000, 4000, 6000, 8000)
GIB, MIB = 2 ** 30, 2 ** 20
# The memory each CPU setting allows: (millicpu below which the row applies, least, most). Cloud Run docs
# "Configure CPU limits" (vCPU and memory table; below 0.5 vCPU at most 512MiB, below 1 vCPU at most 1GiB) and
# "Configure memory limits" (more than 4/8/16/24 GiB needs at least 2/4/6/8 CPU).
MEMORY_FOR_CPU = ((500, 128 * MIB, 512 * MIB), (1000, 128 * MIB, GIB), (1001, 128 * MIB, 4 * GIB),
                  (2001, 128 * MIB, 8 * GIB), (4001, 2 * GIB, 16 * GIB), (6001, 4 * GIB, 24 * GIB),
                  (8001, 4 * GIB, 32 * GIB))
REGION_CODES = {
    "us-central1": "uc", "us-east1": "ue", "us-east4": "uk", "us-east5": "ul", "us-south1": "vp", "us-west1": "uw",
    "us-west2": "wl", "us-west3": "wm", "us-west4": "wn", "europe-west1": "ew", "europe-west2": "nw",
    "europe-west3": "ey", "europe-west4": "ez", "europe-west6": "oa", "europe-west9": "od", "europe-north1": "lz",
    "europe-central2": "lm", "asia-east1": "de", "asia-east2": "df", "asia-northeast1": "an", "asia-northeast3": "du",
    "asia-south1": "el", "asia-southeast1": "as", "australia-southeast1": "ts", "southamerica-east1": "rj",
    "northamerica-northeast1": "nn",
}
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
BY_REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
SUCCEEDED, FAILED, RECONCILING = "CONDITION_SUCCEEDED", "CONDITION_FAILED", "CONDITION_RECONCILING"
CALLER = "owner@example.com"
NOT_READY = "Revision '%s' is not ready and cannot serve traffic. %s"
DEFAULT_REVISION_REASON = "HEALTH_CHECK_CONTAINER_ERROR"
DEFAULT_REVISION_MESSAGE = ("The user-provided container failed to start and listen on the port defined provided by "
                            "the PORT=8080 environment variable within the allocated timeout.")
DEFAULT_EXECUTION_MESSAGE = "Task %s-task0 failed with message: The container exited with an error (exit code 1)."
MISSING = "Resource '%s' of kind '%s' in region '%s' in project '%s' does not exist."
EXEMPT = ("client", "clientVersion")  # recorded, but not part of the desired state


def typed(kind, body):
    out = {"@type": TYPE + kind}
    out.update(deep(body))
    return out


def prune(value):
    """Drop what proto3 JSON never shows: null, empty strings and lists, empty label/annotation/limit maps."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = prune(item)
            if item is None or item == "" or item == [] or (item == {} and key in ("labels", "annotations", "limits")):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [prune(item) for item in value]
    return value


def seconds(duration):
    return float(duration[:-1])


def millicpu(value):
    match = CPU.match(value or "")
    if not match:
        return None
    return int(match.group(1)) if match.group(1) else float(match.group(2)) * 1000


def quantity(value):
    match = QUANTITY.match(value or "")
    if not match:
        return None
    return float(match.group(1)) * UNITS[match.group(2)]


def size(value):
    """A byte count as Cloud Run writes it in messages: 512Mi, 4Gi."""
    return "%dGi" % (value // GIB) if value % GIB == 0 else "%dMi" % (value // MIB)


def region_code(location):
    return REGION_CODES.get(location) or "".join(part[0] for part in location.split("-"))[:2]


def suffix(length, alphabet=string.ascii_lowercase):
    return "".join(random.choice(alphabet) for _index in range(length))


def condition(kind, state, message=None, reason=None):
    """A Condition; reason = (field, value) with field reason | revisionReason | executionReason (a oneof)."""
    body = {"type": kind, "state": state}
    if message:
        body["message"] = message
    if reason:
        body[reason[0]] = reason[1]
    body["lastTransitionTime"] = now()
    return body


def compute_account(number):
    return "%s-compute@developer.gserviceaccount.com" % number


def without(spec, keys=EXEMPT):
    return {k: v for k, v in spec.items() if k not in keys}


class Run(Api):
    name = "run"
    document = "run.v2"
    controls = ("fail_revisions", "fail_executions")

    def __init__(self, fake):
        self.revision_failures = []   # [[remaining, (field, value), message]]
        self.execution_failures = []  # [[remaining, message]]
        super().__init__(fake)
        schemas = self.doc.schemas
        self.service_fields = self._writable("GoogleCloudRunV2Service")
        self.job_fields = self._writable("GoogleCloudRunV2Job") - {"runExecutionToken", "startExecutionToken"}
        self.revision_fields = set(schemas["GoogleCloudRunV2Revision"]["properties"])
        props = schemas["GoogleCloudRunV2Condition"]["properties"]
        self.reasons = {"reason": props["reason"]["enum"], "revisionReason": props["revisionReason"]["enum"]}

    def _writable(self, schema):
        props = self.doc.schemas[schema]["properties"]
        return {k for k, p in props.items() if not is_output_only(p)} - {"name", "etag"}

    def reset(self):
        super().reset()
        self.state["services"] = {}  # "project/location/id" -> {"service", "revisions": {id: rev}, "failures": {id: ...}}
        self.state["jobs"] = {}      # "project/location/id" -> {"job", "executions": {id: {"execution", "operation"}}}

    def clear(self):
        self.revision_failures = []
        self.execution_failures = []

    # ---- test controls ---------------------------------------------------------------------------------------
    def fail_revisions(self, count=1, reason=DEFAULT_REVISION_REASON, message=DEFAULT_REVISION_MESSAGE):
        """The next `count` revisions created never become ready.

        reason: a Condition reason (CONTAINER_MISSING ...) or revisionReason (HEALTH_CHECK_CONTAINER_ERROR ...)
        enum value of run.v2; CamelCase ("ContainerMissing") is accepted and converted.
        """
        value = reason if reason.upper() == reason else re.sub(r"(?<!^)([A-Z])", r"_\1", reason).upper()
        field = next((f for f, values in self.reasons.items() if value in values), None)
        if field is None:
            raise ValueError("unknown Cloud Run condition reason %r: one of %s" % (
                reason, ", ".join(self.reasons["reason"] + self.reasons["revisionReason"])))
        with self.fake.lock:
            self.revision_failures.append([count, (field, value), message])

    def fail_executions(self, count=1, message=None):
        """The next `count` executions fail (one task exits non-zero); message defaults to a task failure text."""
        with self.fake.lock:
            self.execution_failures.append([count, message])

    @staticmethod
    def _take(planned):
        for item in planned:
            if item[0] > 0:
                item[0] -= 1
                return item[1:]
        return None

    # ---- names ---------------------------------------------------------------------------------------------------
    def _location(self, parent, allow_any=False):
        """(project_id, number, location) of projects/P/locations/L."""
        parts = parent.split("/")
        project_id, number = self.projects.resolve(parts[1])
        location = parts[3]
        if location not in CLOUD_RUN and not (allow_any and location == "-"):
            # Google's answer for a region Cloud Run does not offer (turbot/steampipe-plugin-gcp #696).
            raise ApiError(400, "region: Unsupported region %s" % location, field="region",
                           description="Unsupported region %s" % location)
        return project_id, number, location

    def _op_name(self, project_id, location):
        return "projects/%s/locations/%s/operations/%s" % (project_id, location, uuid.uuid4())

    def _service(self, name):
        """(entry, key) for projects/P/locations/L/services/S[/...]; 404 when missing."""
        parts = name.split("/")
        project_id, _number, location = self._location("/".join(parts[:4]))
        key = "%s/%s/%s" % (project_id, location, parts[5])
        entry = self.state["services"].get(key)
        if entry is None:
            raise not_found(MISSING % (parts[5], "SERVICE", location, project_id))
        return entry, key

    def _job(self, name):
        parts = name.split("/")
        project_id, _number, location = self._location("/".join(parts[:4]))
        key = "%s/%s/%s" % (project_id, location, parts[5])
        entry = self.state["jobs"].get(key)
        if entry is None:
            raise not_found(MISSING % (parts[5], "JOB", location, project_id))
        return entry, key

    def _check_name(self, body, name):
        """A name in the body must be the one of the path (project id or number)."""
        given = body.get("name")
        if not given or given == name:
            return
        ours, theirs = name.split("/"), given.split("/")
        if len(ours) != len(theirs) or ours[2:] != theirs[2:] or \
                self.projects.resolve(ours[1])[0] != self.projects.resolve(theirs[1])[0]:
            raise invalid("The name in the request body (%s) does not match the name in the URL (%s)." % (given, name),
                          field="name")

    def _uri(self, resource_id, project_id, location):
        digest = hashlib.sha256(project_id.encode()).digest()
        alphabet = string.ascii_lowercase + string.digits
        token = "".join(alphabet[byte % 36] for byte in digest[:10])
        return "https://%s-%s-%s.a.run.app" % (resource_id, token, region_code(location))

    @staticmethod
    def _etag():
        return '"%s"' % new_etag(b"\x0b").rstrip("=")

    def _validated(self, project_id, location, kind, body):
        """validateOnly: a done operation with what would be created; nothing changes."""
        op = self.operations.done_now(self._op_name(project_id, location), self.name,
                                      response=typed(kind, body), metadata=typed(kind, body))
        return render_lro(op)

    # ---- defaults --------------------------------------------------------------------------------------------
    @staticmethod
    def _fill_probe(probe, port):
        for field, default in (("timeoutSeconds", 1), ("periodSeconds", 10), ("failureThreshold", 3)):
            if not probe.get(field):
                probe[field] = default
        for action in ("httpGet", "tcpSocket", "grpc"):
            if action in probe and port and not probe[action].get("port"):
                probe[action]["port"] = port

    def _fill_container(self, container, serving, kind):
        resources = container.setdefault("resources", {})
        limits = resources.setdefault("limits", {})
        limits.setdefault("cpu", "1000m")
        limits.setdefault("memory", "512Mi")
        if kind != "service":
            return
        resources.setdefault("cpuIdle", True)
        port = None
        if serving:
            ports = container.get("ports") or [{}]
            for item in ports:
                item.setdefault("name", "http1")
                if not item.get("containerPort"):
                    item["containerPort"] = 8080
            container["ports"] = ports
            port = ports[0]["containerPort"]
            if not container.get("startupProbe"):
                container["startupProbe"] = {"timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1,
                                             "tcpSocket": {"port": port}}
        for probe in ("startupProbe", "livenessProbe"):
            if container.get(probe):
                self._fill_probe(container[probe], port)

    def _fill_service(self, spec, number):
        spec = prune(deep(spec))
        if spec.get("ingress") in (None, "INGRESS_TRAFFIC_UNSPECIFIED"):
            spec["ingress"] = "INGRESS_TRAFFIC_ALL"
        if spec.get("launchStage") in (None, "LAUNCH_STAGE_UNSPECIFIED"):
            spec["launchStage"] = "GA"
        if not spec.get("traffic"):
            spec["traffic"] = [{"type": LATEST, "percent": 100}]
        if "template" not in spec:
            return spec
        template = spec["template"]
        scaling = template.setdefault("scaling", {})
        if not scaling.get("maxInstanceCount"):
            scaling["maxInstanceCount"] = 100
        template.setdefault("timeout", "300s")
        template.setdefault("serviceAccount", compute_account(number))
        containers = template.get("containers") or []
        if not template.get("maxInstanceRequestConcurrency"):
            # run.v2: 80 when the requested CPU is at least 1, else 1.
            total = self._total_cpu(containers)
            template["maxInstanceRequestConcurrency"] = 1 if total is not None and total < 1000 else 80
        for container in containers:
            self._fill_container(container, len(containers) == 1 or bool(container.get("ports")), "service")
        return spec

    @staticmethod
    def _total_cpu(containers):
        """Millicpu requested by the containers (1 CPU each when unset), or None when a value is malformed."""
        values = [millicpu(((c.get("resources") or {}).get("limits") or {}).get("cpu") or "1") for c in containers]
        return None if None in values else sum(values)

    def _fill_job(self, spec, number):
        spec = prune(deep(spec))
        if spec.get("launchStage") in (None, "LAUNCH_STAGE_UNSPECIFIED"):
            spec["launchStage"] = "GA"
        if "template" not in spec:
            return spec
        if not spec["template"].get("taskCount"):
            spec["template"]["taskCount"] = 1
        task = spec["template"].get("template")
        if task is None:
            return spec
        task.setdefault("maxRetries", 3)
        task.setdefault("timeout", "600s")
        task.setdefault("serviceAccount", compute_account(number))
        for container in task.get("containers") or []:
            self._fill_container(container, False, "job")
        return spec

    # ---- validation --------------------------------------------------------------------------------------------
    @staticmethod
    def _check_meta(obj, where):
        problem = label_problems(obj.get("labels"), "labels")
        if problem:
            raise invalid(problem, field=where + ".labels")
        for key in list(obj.get("labels") or {}) + list(obj.get("annotations") or {}):
            if any(key == ns or key.startswith(ns + "/") for ns in RESERVED_NAMESPACES):
                raise invalid("Cloud Run API v2 does not support labels or annotations with the run.googleapis.com, "
                              "cloud.googleapis.com, serving.knative.dev or autoscaling.knative.dev namespaces: %r."
                              % key, field=where + (".labels" if key in (obj.get("labels") or {}) else ".annotations"))
        if len(obj.get("description") or "") > 512:
            raise invalid("description is longer than 512 characters.", field=where + ".description")

    def _check_account(self, account, where):
        if "@" not in account:
            raise invalid("Invalid service account '%s': expected an email address." % account, field=where)
        if USER_MANAGED_SA.match(account) and not self.fake.service_account_exists(account):
            raise invalid("Service account %s does not exist." % account, field=where)

    def _check_secret(self, ref, version, project_id, where):
        """The secret (and version) must exist in the fake Secret Manager."""
        match = SECRET_NAME.match(ref or "")
        if not match:
            raise invalid("%s: invalid secret name '%s': use SECRET or projects/PROJECT/secrets/SECRET." % (where, ref),
                          field=where)
        owner, number = self.projects.resolve(match.group(1) or project_id)
        version = version or "latest"
        full = "projects/%s/secrets/%s/versions/%s" % (number, match.group(2), version)
        manager = self.fake.apis.get("secretmanager")
        if manager is None:
            return
        entry = manager.state.get("secrets", {}).get("%s/%s" % (owner, match.group(2)))
        versions = [v for v in (entry or {}).get("versions", []) if v["state"] != "DESTROYED"]
        numbers = {v["name"].rsplit("/", 1)[1] for v in versions}
        aliases = {k: str(v) for k, v in ((entry or {}).get("secret", {}).get("versionAliases") or {}).items()}
        if version == "latest":
            found = bool(versions)
        else:
            found = aliases.get(version, version) in numbers
        if not found:
            raise invalid("%s: Secret %s was not found" % (where, full), field=where)

    def _check_probe(self, probe, where, liveness):
        actions = [a for a in ("httpGet", "tcpSocket", "grpc") if a in probe]
        if len(actions) != 1:
            raise invalid("%s: exactly one of http_get, tcp_socket or grpc must be set." % where, field=where)
        if liveness and actions[0] == "tcpSocket":
            raise invalid("%s: liveness probes support http_get and grpc only." % where, field=where)
        period, timeout = probe["periodSeconds"], probe["timeoutSeconds"]
        period_limit = 3600 if liveness else 240
        if not 1 <= period <= period_limit:
            raise invalid("%s.period_seconds must be between 1 and %d, got %d." % (where, period_limit, period),
                          field=where)
        if not 1 <= timeout <= min(period, 240):
            raise invalid("%s.timeout_seconds must be between 1 and period_seconds (%d), got %d." % (where, period,
                                                                                                     timeout), field=where)
        delay_limit = 3600 if liveness else 240
        if not 0 <= probe.get("initialDelaySeconds", 0) <= delay_limit:
            raise invalid("%s.initial_delay_seconds must be between 0 and %d." % (where, delay_limit), field=where)
        if probe["failureThreshold"] < 1:
            raise invalid("%s.failure_threshold must be at least 1." % where, field=where)
        port = probe[actions[0]].get("port")
        if port is not None and not 1 <= port <= 65535:
            raise invalid("%s: port must be between 1 and 65535, got %d." % (where, port), field=where)
        if actions[0] == "httpGet" and probe["httpGet"].get("path", "/")[:1] != "/":
            raise invalid("%s.http_get.path must start with '/'." % where, field=where)

    def _check_volumes(self, volumes, where, project_id):
        names = set()
        for index, volume in enumerate(volumes):
            vw = "%s.volumes[%d]" % (where, index)
            if not volume.get("name"):
                raise invalid("Invalid request: field %s.name is required." % vw, field=vw + ".name")
            if volume["name"] in names:
                raise invalid("%s: volume name '%s' is used twice." % (vw, volume["name"]), field=vw + ".name")
            names.add(volume["name"])
            kinds = [k for k in ("secret", "cloudSqlInstance", "emptyDir", "gcs", "nfs", "filestore") if k in volume]
            if len(kinds) != 1:
                raise invalid("%s: exactly one volume type (secret, cloud_sql_instance, empty_dir, gcs, nfs, filestore) "
                              "must be set." % vw, field=vw)
            if "secret" in volume:
                items = volume["secret"].get("items") or [{}]
                for item in items:
                    self._check_secret(volume["secret"].get("secret"), item.get("version"), project_id,
                                       vw + ".secret.secret")
            if "cloudSqlInstance" in volume:
                for instance in volume["cloudSqlInstance"].get("instances") or []:
                    if not SQL_CONNECTION.match(instance):
                        raise invalid("%s: invalid Cloud SQL instance connection name '%s': expected "
                                      "PROJECT:REGION:INSTANCE." % (vw, instance), field=vw + ".cloud_sql_instance")
            if "gcs" in volume and not volume["gcs"].get("bucket"):
                raise invalid("%s.gcs.bucket is required." % vw, field=vw + ".gcs.bucket")
            size = (volume.get("emptyDir") or {}).get("sizeLimit")
            if size and quantity(size) is None:
                raise invalid("%s.empty_dir.size_limit: invalid quantity '%s'." % (vw, size), field=vw)
        return names

    def _check_resources(self, container, cw, template, kind):
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        for key in limits:
            if key not in LIMIT_KEYS:
                raise invalid("%s.resources.limits: unsupported key '%s' (only cpu, memory and nvidia.com/gpu)."
                              % (cw, key), field=cw + ".resources.limits")
        cpu = millicpu(limits.get("cpu"))
        if cpu is None or cpu < 80 or (cpu > 1000 and cpu not in CPU_STEPS):
            raise invalid("%s.resources.limits.cpu: Invalid value specified for cpu: '%s'. Use 0.08 to 1 CPU (e.g. "
                          "'500m', '1') or 1, 2, 4, 6 or 8." % (cw, limits.get("cpu")), field=cw + ".resources.limits")
        memory = quantity(limits.get("memory"))
        if memory is None:
            raise invalid("%s.resources.limits.memory: Invalid value specified for memory: '%s'. Use a quantity such "
                          "as 512Mi or 2Gi." % (cw, limits.get("memory")), field=cw + ".resources.limits")
        if not 128 * 2 ** 20 <= memory <= 32 * 2 ** 30:
            raise invalid("%s.resources.limits.memory: '%s' is out of range: memory must be between 128Mi and 32Gi."
                          % (cw, limits["memory"]), field=cw + ".resources.limits")
        least, most = next((low, high) for below, low, high in MEMORY_FOR_CPU if cpu < below)
        if not least <= memory <= most:
            # As Cloud Run words it (gcloud run deploy: "For 1.0 CPU, memory must be between 128Mi and 4Gi
            # inclusive.", googleapis/repo-automation-bots #3875).
            raise invalid("%s.resources.limits.memory: Invalid value specified for memory. For %s CPU, memory must "
                          "be between %s and %s inclusive." % (cw, cpu / 1000.0, size(least), size(most)),
                          field=cw + ".resources.limits")
        if template.get("executionEnvironment") == "EXECUTION_ENVIRONMENT_GEN2" and memory < 512 * 2 ** 20:
            raise invalid("%s.resources.limits.memory: the second generation execution environment requires at least "
                          "512Mi of memory." % cw, field=cw + ".resources.limits")
        if kind == "service" and cpu < 1000:
            if template.get("maxInstanceRequestConcurrency", 80) > 1:
                raise invalid("Total cpu < 1 is not supported with concurrency > 1.", field=cw + ".resources.limits")
            if resources.get("cpuIdle") is False:
                raise invalid("Total cpu < 1 is not supported with CPU always allocated (cpu_idle false).",
                              field=cw + ".resources")

    def _check_env(self, container, cw, project_id, kind):
        seen = set()
        for index, env in enumerate(container.get("env") or []):
            ew = "%s.env[%d]" % (cw, index)
            name = env.get("name")
            if not name or not ENV_NAME.match(name):
                raise invalid("%s.name: invalid environment variable name %r." % (ew, name), field=ew + ".name")
            if name in seen:
                raise invalid("%s: environment variable '%s' is set twice in the same container." % (ew, name),
                              field=ew + ".name")
            seen.add(name)
            if name in RESERVED_ENV[kind]:
                raise invalid("The following reserved env names were provided: %s. These values are automatically "
                              "set by the system." % name, field=ew + ".name")
            if "value" in env and "valueSource" in env:
                raise invalid("%s: only one of value and value_source can be set." % ew, field=ew)
            if "valueSource" in env:
                ref = env["valueSource"].get("secretKeyRef")
                if not ref:
                    raise invalid("%s.value_source.secret_key_ref is required." % ew, field=ew + ".value_source")
                self._check_secret(ref.get("secret"), ref.get("version"), project_id,
                                   ew + ".value_source.secret_key_ref.secret")

    def _check_containers(self, template, where, project_id, kind):
        containers = template.get("containers") or []
        if not containers:
            raise invalid("%s.containers: at least one container is required." % where, field=where + ".containers")
        if len(containers) > 10:
            raise invalid("%s.containers: at most 10 containers are allowed." % where, field=where + ".containers")
        volumes = self._check_volumes(template.get("volumes") or [], where, project_id)
        serving = [c for c in containers if c.get("ports")]
        if kind == "service" and len(containers) > 1 and len(serving) != 1:
            raise invalid("%s.containers: exactly one container (the ingress container) must specify a port." % where,
                          field=where + ".containers")
        names = set()
        for index, container in enumerate(containers):
            cw = "%s.containers[%d]" % (where, index)
            if not container.get("image"):
                raise invalid("Invalid request: field %s.image is required." % cw, field=cw + ".image")
            name = container.get("name")
            if len(containers) > 1 and not name:
                raise invalid("%s.name is required when there are several containers." % cw, field=cw + ".name")
            if name and name in names:
                raise invalid("%s.name: container name '%s' is used twice." % (cw, name), field=cw + ".name")
            names.add(name)
            ports = container.get("ports") or []
            if len(ports) > 1:
                raise invalid("%s.ports: only a single port can be specified." % cw, field=cw + ".ports")
            for port in ports:
                if not 0 < port.get("containerPort", 8080) < 65536:
                    raise invalid("%s.ports[0].container_port must be between 1 and 65535." % cw, field=cw + ".ports")
                if port.get("name", "http1") not in ("http1", "h2c"):
                    raise invalid("%s.ports[0].name must be http1 or h2c, got '%s'." % (cw, port["name"]),
                                  field=cw + ".ports")
            self._check_resources(container, cw, template, kind)
            self._check_env(container, cw, project_id, kind)
            paths = set()
            for mount_index, mount in enumerate(container.get("volumeMounts") or []):
                mw = "%s.volume_mounts[%d]" % (cw, mount_index)
                if mount.get("name") not in volumes:
                    raise invalid("%s.name: volume '%s' is not defined in the template's volumes." % (mw, mount.get("name")),
                                  field=mw + ".name")
                path = mount.get("mountPath") or ""
                if not path.startswith("/") or ":" in path:
                    raise invalid("%s.mount_path must be an absolute path without ':', got '%s'." % (mw, path),
                                  field=mw + ".mount_path")
                if path in paths:
                    raise invalid("%s.mount_path '%s' is used twice." % (mw, path), field=mw + ".mount_path")
                paths.add(path)
            for probe, liveness in (("startupProbe", False), ("livenessProbe", True), ("readinessProbe", False)):
                if container.get(probe):
                    self._check_probe(container[probe], "%s.%s" % (cw, snake(probe)), liveness)

    def _check_timeout(self, template, where, limit):
        timeout = template.get("timeout")
        if timeout and not 1 <= seconds(timeout) <= limit:
            raise invalid("%s.timeout must be between 1s and %ds, got %s." % (where, limit, timeout),
                          field=where + ".timeout")

    def _check_service(self, spec, project_id, service_id, entry):
        self._check_meta(spec, "service")
        template = spec.get("template")
        if not template:
            raise invalid("Invalid request: field template is required.", field="service.template")
        where = "service.template"
        self._check_meta(template, where)
        revision = template.get("revision")
        if revision and (not REVISION_ID.match(revision) or not revision.startswith(service_id + "-")):
            raise invalid("%s.revision: revision name '%s' must start with '%s-' and hold lowercase letters, digits "
                          "and hyphens." % (where, revision, service_id), field=where + ".revision")
        concurrency = template["maxInstanceRequestConcurrency"]
        if not 1 <= concurrency <= 1000:
            raise invalid("%s.max_instance_request_concurrency must be between 1 and 1000, got %d." % (where, concurrency),
                          field=where + ".max_instance_request_concurrency")
        self._check_timeout(template, where, 3600)
        scaling = template.get("scaling") or {}
        low, high = scaling.get("minInstanceCount", 0), scaling.get("maxInstanceCount", 100)
        if low < 0 or high < 0:
            raise invalid("%s.scaling: instance counts cannot be negative." % where, field=where + ".scaling")
        if low > high:
            raise invalid("%s.scaling: min_instance_count (%d) cannot be greater than max_instance_count (%d)."
                          % (where, low, high), field=where + ".scaling")
        self._check_account(template["serviceAccount"], where + ".service_account")
        self._check_containers(template, where, project_id, "service")
        revisions = set((entry or {}).get("revisions", {}))
        total = 0
        for index, target in enumerate(spec["traffic"]):
            tw = "service.traffic[%d]" % index
            kind = target.get("type") or (BY_REVISION if target.get("revision") else None)
            if kind == LATEST and target.get("revision"):
                raise invalid("%s: a LATEST traffic target cannot name a revision." % tw, field=tw)
            if kind == BY_REVISION and target.get("revision") not in revisions:
                raise invalid("%s: revision '%s' does not exist." % (tw, target.get("revision")), field=tw)
            if kind is None:
                raise invalid("%s: type or revision must be set." % tw, field=tw)
            percent = target.get("percent", 0)
            if not 0 <= percent <= 100:
                raise invalid("%s.percent must be between 0 and 100." % tw, field=tw)
            total += percent
        if total != 100:
            raise invalid("Traffic percentages must add up to 100, got %d." % total, field="service.traffic")

    def _check_job(self, spec, project_id):
        self._check_meta(spec, "job")
        execution = spec.get("template")
        if not execution or not execution.get("template"):
            raise invalid("Invalid request: field template.template is required.", field="job.template.template")
        self._check_meta(execution, "job.template")
        self._check_counts(execution, "job.template")
        task = execution["template"]
        where = "job.template.template"
        if not 0 <= task["maxRetries"] <= 10:
            raise invalid("%s.max_retries must be between 0 and 10, got %d." % (where, task["maxRetries"]),
                          field=where + ".max_retries")
        self._check_timeout(task, where, 7 * 24 * 3600)
        self._check_account(task["serviceAccount"], where + ".service_account")
        self._check_containers(task, where, project_id, "job")

    @staticmethod
    def _check_counts(execution, where):
        if not 1 <= execution["taskCount"] <= 10000:
            raise invalid("%s.task_count must be between 1 and 10000, got %d." % (where, execution["taskCount"]),
                          field=where + ".task_count")
        if execution.get("parallelism", 0) < 0:
            raise invalid("%s.parallelism cannot be negative." % where, field=where + ".parallelism")

    # ---- services ------------------------------------------------------------------------------------------------
    @handles("run.projects.locations.services.create")
    def create_service(self, req):
        project_id, number, location = self._location(req["parent"])
        service_id = req.get("serviceId")
        if not service_id:
            raise invalid("Invalid request: service_id is required.", field="service_id")
        return self._create_service(project_id, number, location, service_id, req.body, req.get("validateOnly"))

    def _create_service(self, project_id, number, location, service_id, body, validate_only):
        if not SERVICE_ID.match(service_id):
            raise invalid("Invalid service id '%s': it must be at most 49 lowercase letters, digits or hyphens, start "
                          "with a letter and not end with a hyphen." % service_id, field="service_id")
        key = "%s/%s/%s" % (project_id, location, service_id)
        if key in self.state["services"]:
            raise already_exists("Resource '%s' already exists." % service_id)
        spec = self._fill_service({k: v for k, v in body.items() if k in self.service_fields}, number)
        self._check_service(spec, project_id, service_id, None)
        name = "projects/%s/locations/%s/services/%s" % (project_id, location, service_id)
        stamp = now()
        service = {"name": name, "uid": str(uuid.uuid4()), "generation": "1", "createTime": stamp, "updateTime": stamp,
                   "creator": CALLER, "lastModifier": CALLER}
        service.update(spec)
        service["etag"] = self._etag()
        if validate_only:
            return self._validated(project_id, location, "Service", service)
        entry = {"service": service, "revisions": {}, "failures": {}}
        self.state["services"][key] = entry
        return self._roll_out(entry, key, None, True)

    def _roll_out(self, entry, key, previous, new_revision):
        """Start the operation that brings the service to its (already stored) desired state."""
        service = entry["service"]
        project_id, location, service_id = key.split("/")
        revision = self._new_revision(entry, service_id) if new_revision else None
        service["reconciling"] = True
        service["terminalCondition"] = condition("Ready", RECONCILING)
        service["conditions"] = [condition("RoutesReady", RECONCILING), condition("ConfigurationsReady", RECONCILING)]
        op_name = self._op_name(project_id, location)
        entry["rollout"] = op_name  # the newest rollout decides the service's state

        def finish(ok):
            return self._service_done(key, revision, previous, op_name, ok)

        return self.start_lro(op_name, finish, typed("Service", service),
                              kind="run.service.rollout" if revision else "run.service.update", target=service["name"])

    def _new_revision(self, entry, service_id):
        service = entry["service"]
        template = service["template"]
        short = template.get("revision") or "%s-%05d-%s" % (service_id, int(service["generation"]), suffix(3))
        stamp = now()
        revision = {"name": "%s/revisions/%s" % (service["name"], short), "uid": str(uuid.uuid4()), "generation": "1"}
        for field in ("labels", "annotations"):
            if template.get(field):
                revision[field] = deep(template[field])
        revision.update(createTime=stamp, updateTime=stamp, launchStage=service["launchStage"], service=service["name"])
        for field, value in template.items():
            if field in self.revision_fields and field not in ("labels", "annotations", "name"):
                revision[field] = deep(value)
        project_id = service["name"].split("/")[1]
        revision.update(
            reconciling=True, observedGeneration="1",
            conditions=[condition("Ready", RECONCILING), condition("ContainerHealthy", RECONCILING),
                        condition("ResourcesAvailable", RECONCILING)],
            logUri="https://console.cloud.google.com/logs/viewer?project=%s&resource=cloud_run_revision/"
                   "service_name/%s/revision_name/%s" % (project_id, service_id, short),
            etag=self._etag())
        entry["revisions"][short] = revision
        planned = self._take(self.revision_failures)
        if planned:
            entry["failures"][short] = planned
        service["latestCreatedRevision"] = revision["name"]
        return short

    def _service_done(self, key, revision, previous, op_name, ok):
        entry = self.state["services"].get(key)
        if entry is None:
            return None
        newest = entry.get("rollout") == op_name
        if not ok:  # the operation failed: the change never happened
            if not newest:
                return None
            if previous is None:
                del self.state["services"][key]
                self.policies.drop("run:services/%s" % key)
            else:
                self.state["services"][key] = previous
            return None
        service = entry["service"]
        project_id, location, service_id = key.split("/")
        if "uri" not in service:
            number = self.projects.resolve(project_id)[1]
            service["uri"] = self._uri(service_id, project_id, location)
            service["urls"] = ["https://%s-%s.%s.run.app" % (service_id, number, location), service["uri"]]
        if revision:
            rev = entry["revisions"][revision]
            rev.pop("reconciling", None)
            denial = None if revision in entry["failures"] else secret_denial(self.fake, rev, project_id)
            if denial:  # the runtime account cannot (yet) read a secret the revision uses (permissions.py)
                entry["failures"][revision] = [("reason", "SECRETS_ACCESS_CHECK_FAILED"), denial]
            failure = entry["failures"].get(revision)
            if failure:
                reason, message = failure
                rev["conditions"] = [condition("Ready", FAILED, NOT_READY % (revision, message), reason),
                                     condition("ContainerHealthy", FAILED, message, reason),
                                     condition("ResourcesAvailable", SUCCEEDED)]
            else:
                rev["conditions"] = [condition(kind, SUCCEEDED) for kind in
                                     ("Ready", "ContainerHealthy", "ResourcesAvailable")]
                service["latestReadyRevision"] = rev["name"]
        if not newest:  # a newer rollout is running: it will settle the service
            return typed("Service", service)
        entry.pop("rollout", None)
        service.pop("reconciling", None)
        latest = service["latestCreatedRevision"].rsplit("/", 1)[1]
        failure = entry["failures"].get(latest)
        op = self.operations.get(op_name)
        if failure:
            reason, message = failure
            text = NOT_READY % (latest, message)
            service["terminalCondition"] = condition("Ready", FAILED, text, reason)
            service["conditions"] = [condition("RoutesReady", FAILED, text, reason),
                                     condition("ConfigurationsReady", FAILED, text, reason)]
            op.error = (9, text)
        else:
            service["observedGeneration"] = service["generation"]
            service["terminalCondition"] = condition("Ready", SUCCEEDED)
            service["conditions"] = [condition("RoutesReady", SUCCEEDED), condition("ConfigurationsReady", SUCCEEDED)]
        statuses = self._traffic_statuses(service)
        if statuses:
            service["trafficStatuses"] = statuses
        else:
            service.pop("trafficStatuses", None)
        op.metadata = typed("Service", service)
        return None if failure else typed("Service", service)

    @staticmethod
    def _traffic_statuses(service):
        ready = service.get("latestReadyRevision")
        if not ready:
            return []
        ready_id = ready.rsplit("/", 1)[1]
        statuses = []
        for target in service["traffic"]:
            status = deep(target)
            if target.get("type") == LATEST and service["latestCreatedRevision"] != ready:
                status = {"type": BY_REVISION, "revision": ready_id, "percent": target.get("percent", 0)}
            if target.get("tag"):
                status["uri"] = service.get("uri", "").replace("https://", "https://%s---" % target["tag"], 1)
            statuses.append(status)
        return statuses

    def _progress(self, entry, resource):
        """A reconciling resource moves on as it is read: on Google Cloud time does it, and a client that lost
        the operation's name (a timed-out wait, a lost answer) watches the resource's `reconciling` field."""
        if resource.get("reconciling") and entry.get("rollout"):
            self.operations.poll(entry["rollout"])

    @handles("run.projects.locations.services.get")
    def get_service(self, req):
        entry = self._service(req["name"])[0]
        self._progress(entry, entry["service"])
        return deep(self._service(req["name"])[0]["service"])

    @handles("run.projects.locations.services.list")
    def list_services(self, req):
        project_id, _number, location = self._location(req["parent"], allow_any=True)
        items = [e["service"] for k, e in sorted(self.state["services"].items())
                 if k.split("/")[0] == project_id and location in ("-", k.split("/")[1])]
        page, token = paginate(items, req.get("pageSize"), req.get("pageToken"))
        body = {"services": deep(page)} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("run.projects.locations.services.patch")
    def patch_service(self, req):
        name = req["name"]
        parts = name.split("/")
        project_id, number, location = self._location("/".join(parts[:4]))
        service_id = parts[5]
        self._check_name(req.body, name)
        key = "%s/%s/%s" % (project_id, location, service_id)
        entry = self.state["services"].get(key)
        if entry is None:
            if not req.get("allowMissing"):
                raise not_found(MISSING % (service_id, "SERVICE", location, project_id))
            return self._create_service(project_id, number, location, service_id, req.body, req.get("validateOnly"))
        service = entry["service"]
        if req.body.get("etag") and req.body["etag"] != service["etag"]:
            raise aborted("The etag provided in the request (%s) does not match the current etag of the service (%s): "
                          "the service was modified concurrently." % (req.body["etag"], service["etag"]))
        current = {k: v for k, v in service.items() if k in self.service_fields}
        paths = mask_paths(req.get("updateMask"))
        if paths:
            for path in paths:
                if path.split(".")[0] not in self.service_fields:
                    raise invalid("Invalid update_mask path '%s': not a field of a Service that can be updated." % path,
                                  field="update_mask")
            wanted = deep(current)
            apply_mask(wanted, req.body, paths)
        else:
            wanted = {k: v for k, v in req.body.items() if k in self.service_fields}
        wanted = self._fill_service(wanted, number)
        self._check_service(wanted, project_id, service_id, entry)
        force = bool(req.get("forceNewRevision"))
        new_revision = force or wanted["template"] != current["template"]
        revision = wanted["template"].get("revision")
        if new_revision and revision in entry["revisions"]:
            raise already_exists("Revision named '%s' with different configuration already exists." % revision)
        changed = force or without(wanted) != without(current)
        preview = {k: v for k, v in service.items() if k not in self.service_fields}
        preview.update(wanted)
        if req.get("validateOnly"):
            return self._validated(project_id, location, "Service", preview)
        if not changed:  # nothing to do: same generation, same etag, no revision
            return self.start_lro(self._op_name(project_id, location),
                                  lambda ok: typed("Service", entry["service"]) if ok else None,
                                  typed("Service", service), kind="run.service.update", target=service["name"])
        previous = deep(entry)
        for field in self.service_fields:
            service.pop(field, None)
        service.update(wanted)
        service.update(generation=str(int(service["generation"]) + 1), updateTime=now(), lastModifier=CALLER,
                       etag=self._etag())
        return self._roll_out(entry, key, previous, new_revision)

    @handles("run.projects.locations.services.delete")
    def delete_service(self, req):
        entry, key = self._service(req["name"])
        service = entry["service"]
        if req.get("etag") and req["etag"] != service["etag"]:
            raise aborted("The etag provided in the request (%s) does not match the current etag of the service (%s)."
                          % (req["etag"], service["etag"]))
        project_id, location, _service_id = key.split("/")
        if req.get("validateOnly"):
            return self._validated(project_id, location, "Service", service)

        def finish(ok):
            if not ok or self.state["services"].get(key) is not entry:
                return None
            del self.state["services"][key]
            self.policies.drop("run:services/%s" % key)
            gone = deep(entry["service"])
            gone["deleteTime"] = now()
            return typed("Service", gone)

        return self.start_lro(self._op_name(project_id, location), finish, typed("Service", service),
                              kind="run.service.delete", target=service["name"])

    # ---- revisions -----------------------------------------------------------------------------------------------
    @handles("run.projects.locations.services.revisions.get")
    def get_revision(self, req):
        entry, key = self._service(req["name"])
        revision_id = req["name"].rsplit("/", 1)[1]
        revision = entry["revisions"].get(revision_id)
        if revision is None:
            project_id, location, _service_id = key.split("/")
            raise not_found(MISSING % (revision_id, "REVISION", location, project_id))
        return deep(revision)

    @handles("run.projects.locations.services.revisions.list")
    def list_revisions(self, req):
        entry = self._service(req["parent"])[0]
        items = list(reversed(list(entry["revisions"].values())))  # newest first
        page, token = paginate(items, req.get("pageSize"), req.get("pageToken"))
        body = {"revisions": deep(page)} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    # ---- IAM -----------------------------------------------------------------------------------------------------
    @handles("run.projects.locations.services.getIamPolicy")
    def get_service_policy(self, req):
        key = self._service(req["resource"])[1]
        return self.policies.get("run:services/%s" % key, req.get("options.requestedPolicyVersion"))

    @handles("run.projects.locations.services.setIamPolicy")
    def set_service_policy(self, req):
        key = self._service(req["resource"])[1]
        return self.policies.set("run:services/%s" % key, req.body)

    @handles("run.projects.locations.services.testIamPermissions")
    def test_service_permissions(self, req):
        self._service(req["resource"])
        return self._permissions(req)

    @handles("run.projects.locations.jobs.getIamPolicy")
    def get_job_policy(self, req):
        key = self._job(req["resource"])[1]
        return self.policies.get("run:jobs/%s" % key, req.get("options.requestedPolicyVersion"))

    @handles("run.projects.locations.jobs.setIamPolicy")
    def set_job_policy(self, req):
        key = self._job(req["resource"])[1]
        return self.policies.set("run:jobs/%s" % key, req.body)

    @handles("run.projects.locations.jobs.testIamPermissions")
    def test_job_permissions(self, req):
        self._job(req["resource"])
        return self._permissions(req)

    @staticmethod
    def _permissions(req):
        """The caller owns the project: it holds every run.* permission asked about."""
        granted = [p for p in req.body.get("permissions") or [] if p.startswith("run.")]
        return {"permissions": granted} if granted else {}

    # ---- operations ----------------------------------------------------------------------------------------------
    @handles("run.projects.locations.operations.get")
    def get_operation(self, req):
        return self.poll_lro(req["name"])

    # ---- jobs ----------------------------------------------------------------------------------------------------
    @handles("run.projects.locations.jobs.create")
    def create_job(self, req):
        project_id, number, location = self._location(req["parent"])
        job_id = req.get("jobId")
        if not job_id:
            raise invalid("Invalid request: job_id is required.", field="job_id")
        return self._create_job(project_id, number, location, job_id, req.body, req.get("validateOnly"))

    def _create_job(self, project_id, number, location, job_id, body, validate_only):
        if not JOB_ID.match(job_id):
            raise invalid("Invalid job id '%s': it must be at most 63 lowercase letters, digits or hyphens, start "
                          "with a letter and not end with a hyphen." % job_id, field="job_id")
        key = "%s/%s/%s" % (project_id, location, job_id)
        if key in self.state["jobs"]:
            raise already_exists("Resource '%s' already exists." % job_id)
        spec = self._fill_job({k: v for k, v in body.items() if k in self.job_fields}, number)
        self._check_job(spec, project_id)
        stamp = now()
        job = {"name": "projects/%s/locations/%s/jobs/%s" % (project_id, location, job_id), "uid": str(uuid.uuid4()),
               "generation": "1", "createTime": stamp, "updateTime": stamp, "creator": CALLER, "lastModifier": CALLER}
        job.update(spec)
        job["etag"] = self._etag()
        if validate_only:
            return self._validated(project_id, location, "Job", job)
        entry = {"job": job, "executions": {}}
        self.state["jobs"][key] = entry
        return self._reconcile_job(entry, key, None)

    def _reconcile_job(self, entry, key, previous):
        job = entry["job"]
        project_id, location, _job_id = key.split("/")
        job["reconciling"] = True
        job["terminalCondition"] = condition("Ready", RECONCILING)
        op_name = self._op_name(project_id, location)
        entry["rollout"] = op_name

        def finish(ok):
            if self.state["jobs"].get(key) is not entry or entry.get("rollout") != op_name:
                return typed("Job", job) if ok else None
            entry.pop("rollout", None)
            if not ok:
                if previous is None:
                    del self.state["jobs"][key]
                    self.policies.drop("run:jobs/%s" % key)
                else:
                    self.state["jobs"][key] = previous
                return None
            job.pop("reconciling", None)
            job["observedGeneration"] = job["generation"]
            job["terminalCondition"] = condition("Ready", SUCCEEDED)
            return typed("Job", job)

        return self.start_lro(op_name, finish, typed("Job", job),
                              kind="run.job.create" if previous is None else "run.job.update", target=job["name"])

    @handles("run.projects.locations.jobs.get")
    def get_job(self, req):
        entry = self._job(req["name"])[0]
        self._progress(entry, entry["job"])
        return deep(self._job(req["name"])[0]["job"])

    @handles("run.projects.locations.jobs.list")
    def list_jobs(self, req):
        project_id, _number, location = self._location(req["parent"], allow_any=True)
        items = [e["job"] for k, e in sorted(self.state["jobs"].items())
                 if k.split("/")[0] == project_id and location in ("-", k.split("/")[1])]
        page, token = paginate(items, req.get("pageSize"), req.get("pageToken"))
        body = {"jobs": deep(page)} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("run.projects.locations.jobs.patch")
    def patch_job(self, req):
        name = req["name"]
        parts = name.split("/")
        project_id, number, location = self._location("/".join(parts[:4]))
        job_id = parts[5]
        self._check_name(req.body, name)
        key = "%s/%s/%s" % (project_id, location, job_id)
        entry = self.state["jobs"].get(key)
        if entry is None:
            if not req.get("allowMissing"):
                raise not_found(MISSING % (job_id, "JOB", location, project_id))
            return self._create_job(project_id, number, location, job_id, req.body, req.get("validateOnly"))
        job = entry["job"]
        if req.body.get("etag") and req.body["etag"] != job["etag"]:
            raise aborted("The etag provided in the request (%s) does not match the current etag of the job (%s): the "
                          "job was modified concurrently." % (req.body["etag"], job["etag"]))
        current = {k: v for k, v in job.items() if k in self.job_fields}
        wanted = self._fill_job({k: v for k, v in req.body.items() if k in self.job_fields}, number)
        self._check_job(wanted, project_id)
        preview = {k: v for k, v in job.items() if k not in self.job_fields}
        preview.update(wanted)
        if req.get("validateOnly"):
            return self._validated(project_id, location, "Job", preview)
        if without(wanted) == without(current):
            return self.start_lro(self._op_name(project_id, location),
                                  lambda ok: typed("Job", entry["job"]) if ok else None, typed("Job", job),
                                  kind="run.job.update", target=job["name"])
        previous = deep(entry)
        for field in self.job_fields:
            job.pop(field, None)
        job.update(wanted)
        job.update(generation=str(int(job["generation"]) + 1), updateTime=now(), lastModifier=CALLER, etag=self._etag())
        return self._reconcile_job(entry, key, previous)

    @handles("run.projects.locations.jobs.delete")
    def delete_job(self, req):
        entry, key = self._job(req["name"])
        job = entry["job"]
        if req.get("etag") and req["etag"] != job["etag"]:
            raise aborted("The etag provided in the request (%s) does not match the current etag of the job (%s)."
                          % (req["etag"], job["etag"]))
        project_id, location, _job_id = key.split("/")
        if req.get("validateOnly"):
            return self._validated(project_id, location, "Job", job)

        def finish(ok):
            if not ok or self.state["jobs"].get(key) is not entry:
                return None
            del self.state["jobs"][key]
            self.policies.drop("run:jobs/%s" % key)
            gone = deep(entry["job"])
            gone["deleteTime"] = now()
            return typed("Job", gone)

        return self.start_lro(self._op_name(project_id, location), finish, typed("Job", job),
                              kind="run.job.delete", target=job["name"])

    # ---- executions ----------------------------------------------------------------------------------------------
    @handles("run.projects.locations.jobs.run")
    def run_job(self, req):
        entry, key = self._job(req["name"])
        job = entry["job"]
        body = req.body or {}
        if body.get("etag") and body["etag"] != job["etag"]:
            raise aborted("The etag provided in the request (%s) does not match the current etag of the job (%s)."
                          % (body["etag"], job["etag"]))
        project_id, location, job_id = key.split("/")
        template = deep(job["template"])
        self._override(template, body.get("overrides") or {})
        short = "%s-%s" % (job_id, suffix(5, string.ascii_lowercase + string.digits))
        stamp = now()
        task_count = template["taskCount"]
        execution = {"name": "%s/executions/%s" % (job["name"], short), "uid": str(uuid.uuid4()), "generation": "1"}
        for field in ("labels", "annotations"):
            if template.get(field):
                execution[field] = deep(template[field])
        execution.update(createTime=stamp, startTime=stamp, launchStage=job["launchStage"], job=job_id)
        if template.get("parallelism"):
            execution["parallelism"] = template["parallelism"]
        execution.update(
            taskCount=task_count, template=template["template"], reconciling=True,
            conditions=[condition("ResourcesAvailable", SUCCEEDED), condition("Started", SUCCEEDED),
                        condition("Completed", RECONCILING)],
            observedGeneration="1", runningCount=task_count,
            logUri="https://console.cloud.google.com/logs/viewer?project=%s&advancedFilter=resource.type%%3D%%22"
                   "cloud_run_job%%22%%0Aresource.labels.job_name%%3D%%22%s%%22%%0Aresource.labels.location%%3D%%22"
                   "%s%%22%%0Alabels.%%22run.googleapis.com/execution_name%%22%%3D%%22%s%%22"
                   % (project_id, job_id, location, short),
            etag=self._etag())
        if body.get("validateOnly"):
            return self._validated(project_id, location, "Execution", execution)
        op_name = self._op_name(project_id, location)
        record = {"execution": execution, "operation": op_name, "failure": self._take(self.execution_failures)}
        entry["executions"][short] = record
        job["executionCount"] = job.get("executionCount", 0) + 1
        job["latestCreatedExecution"] = {"name": execution["name"], "createTime": stamp,
                                         "completionStatus": "EXECUTION_RUNNING"}

        def finish(ok):
            return self._execution_done(entry, record, op_name, ok)

        return self.start_lro(op_name, finish, typed("Execution", execution), kind="run.job.execution",
                              target=execution["name"])

    @staticmethod
    def _override(template, overrides):
        if "taskCount" in overrides:
            template["taskCount"] = overrides["taskCount"]
            Run._check_counts(template, "overrides")
        if overrides.get("timeout"):
            template["template"]["timeout"] = overrides["timeout"]
        containers = template["template"]["containers"]
        for index, override in enumerate(overrides.get("containerOverrides") or []):
            where = "overrides.container_overrides[%d]" % index
            if override.get("name"):
                target = next((c for c in containers if c.get("name") == override["name"]), None)
            else:
                target = containers[0] if len(containers) == 1 else None
            if target is None:
                raise invalid("%s: no container named '%s' in the job." % (where, override.get("name", "")), field=where)
            if override.get("clearArgs"):
                if override.get("args"):
                    raise invalid("%s: clear_args and args cannot both be set." % where, field=where)
                target.pop("args", None)
            elif override.get("args"):
                target["args"] = list(override["args"])
            if override.get("env"):
                merged = {e["name"]: e for e in target.get("env") or []}
                merged.update({e["name"]: e for e in override["env"]})
                target["env"] = list(merged.values())

    def _execution_done(self, entry, record, op_name, ok):
        execution = record["execution"]
        op = self.operations.get(op_name)
        execution.pop("reconciling", None)
        tasks = execution.pop("runningCount", execution["taskCount"])
        stamp = now()
        execution["completionTime"] = stamp
        failure = record["failure"]
        reason = ("executionReason", "NON_ZERO_EXIT_CODE")
        if not ok:  # fake.fail_operations: the operation carries its planned error
            failure = [op.failure[1]]
        elif not failure:
            denial = secret_denial(self.fake, execution["template"], execution["name"].split("/")[1])
            if denial:  # the runtime account cannot (yet) read a secret the tasks use (permissions.py)
                failure, reason = [denial], ("reason", "SECRETS_ACCESS_CHECK_FAILED")
        if failure:
            message = failure[0] or DEFAULT_EXECUTION_MESSAGE % execution["name"].rsplit("/", 1)[1]
            failed = 1
            execution["failedCount"] = failed
            if tasks > failed:
                execution["succeededCount"] = tasks - failed
            if execution["template"].get("maxRetries"):
                execution["retriedCount"] = failed
            execution["conditions"][2] = condition("Completed", FAILED, message, reason)
            status = "EXECUTION_FAILED"
            if ok:
                op.error = (9, "Execution %s has failed to complete, %d/%d tasks failed. %s" % (
                    execution["name"].rsplit("/", 1)[1], failed, tasks, message))
        else:
            execution["succeededCount"] = tasks
            execution["conditions"][2] = condition("Completed", SUCCEEDED, "Execution completed successfully.")
            status = "EXECUTION_SUCCEEDED"
        execution["etag"] = self._etag()
        latest = entry["job"].get("latestCreatedExecution") or {}
        if latest.get("name") == execution["name"]:
            latest.update(completionTime=stamp, completionStatus=status)
        op.metadata = typed("Execution", execution)
        return None if failure else typed("Execution", execution)

    def _execution(self, name):
        entry, key = self._job(name)
        short = name.split("/")[7]
        record = entry["executions"].get(short)
        if record is None:
            project_id, location, _job_id = key.split("/")
            raise not_found(MISSING % (short, "EXECUTION", location, project_id))
        return entry, record

    @handles("run.projects.locations.jobs.executions.get")
    def get_execution(self, req):
        record = self._execution(req["name"])[1]
        self.operations.poll(record["operation"])  # a running execution progresses as it is watched
        return deep(record["execution"])

    @handles("run.projects.locations.jobs.executions.list")
    def list_executions(self, req):
        entry = self._job(req["parent"])[0]
        items = [r["execution"] for r in reversed(list(entry["executions"].values()))]  # newest first
        page, token = paginate(items, req.get("pageSize"), req.get("pageToken"))
        body = {"executions": deep(page)} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("run.projects.locations.jobs.executions.cancel")
    def cancel_execution(self, req):
        entry, record = self._execution(req["name"])
        execution = record["execution"]
        body = req.body or {}
        if body.get("etag") and body["etag"] != execution["etag"]:
            raise aborted("The etag provided in the request (%s) does not match the current etag of the execution (%s)."
                          % (body["etag"], execution["etag"]))
        if "completionTime" in execution:
            raise failed_precondition("Execution %s has already completed." % execution["name"].rsplit("/", 1)[1])
        project_id, location = execution["name"].split("/")[1], execution["name"].split("/")[3]
        if body.get("validateOnly"):
            return self._validated(project_id, location, "Execution", execution)
        stamp = now()
        execution.pop("reconciling", None)
        execution["cancelledCount"] = execution.pop("runningCount", execution["taskCount"])
        execution["completionTime"] = stamp
        execution["conditions"][2] = condition("Completed", FAILED, "The execution was cancelled.",
                                               ("executionReason", "CANCELLED"))
        execution["etag"] = self._etag()
        latest = entry["job"].get("latestCreatedExecution") or {}
        if latest.get("name") == execution["name"]:
            latest.update(completionTime=stamp, completionStatus="EXECUTION_CANCELLED")
        run_op = self.operations.get(record["operation"])
        if run_op is not None and not run_op.done:
            run_op.done, run_op.end_time, run_op.ended = True, stamp, run_op.clock()
            run_op.error = (1, "Execution %s was cancelled." % execution["name"].rsplit("/", 1)[1])
            run_op.metadata = typed("Execution", execution)
        return self.start_lro(self._op_name(project_id, location),
                              lambda ok: typed("Execution", execution) if ok else None, typed("Execution", execution),
                              kind="run.execution.cancel", target=execution["name"])
