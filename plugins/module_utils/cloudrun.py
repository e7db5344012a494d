# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Cloud Run Admin API v2: the container spec shared by services and jobs, and their converge rules.

The options of cloud_run_service and cloud_run_job become the documented v2 resources
(GoogleCloudRunV2Service, GoogleCloudRunV2Job). Comparison uses the shared converge loop of resource.py on
a normalised view of the resource, in which:

- only what the user set is compared (server defaults such as the 512Mi memory limit, the compute default
  service account or the http1 port name never count);
- values Cloud Run may spell differently compare by value ("1" CPU and "1000m", "300s" and "300.0s",
  "projects/P/secrets/S" of the own project and "S");
- fields proto3 JSON leaves out when they hold their zero value (0, false, "") compare equal to that value;
- env vars, volumes and mounts compare in name order, as complete lists (plain env vars and secret env vars,
  and user volumes and the Cloud SQL volume, are each managed only when their option is set).

An update sends the resource as read (output-only fields removed) deep-merged with the desired fields, and
the etag it read: the v2 PATCH replaces the whole resource, and a concurrent change makes it fail instead of
being overwritten. Every write returns a google.longrunning Operation; the module waits for it and then
checks the resource's terminalCondition, and a revision that does not become Ready is reported with the
condition's reason and message.

A revision (or a job's execution) that fails because its runtime account may not read a secret is deployed
again (a new revision; for a job, a new execution) with backoff within timeout: the run grants
roles/secretmanager.secretAccessor seconds before, and an IAM grant takes effect "typically within 2 minutes"
(IAM docs, "Access change propagation"). Any other failure is reported at once.
"""

from __future__ import annotations

import datetime

import copy
import random
import re
import time
from decimal import Decimal, InvalidOperation

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import (
    MAX_BACKOFF, REGION, GcpApiError, label_errors, wait_operation)
from ansible_collections.deployml.mlops.plugins.module_utils.resource import (
    Exact, LocatedResource, ResourceError, differences, prune)

API = "run"

INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
EXECUTION_ENVIRONMENTS = {"gen1": "EXECUTION_ENVIRONMENT_GEN1", "gen2": "EXECUTION_ENVIRONMENT_GEN2"}
LATEST_TRAFFIC = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
SUCCEEDED = "CONDITION_SUCCEEDED"
FAILED = "CONDITION_FAILED"
# Cloud Run's text when a revision's runtime account cannot read a secret it uses ("...: Permission denied on
# secret: projects/P/secrets/S/versions/V for Revision service account SA. ..."), reason
# SECRETS_ACCESS_CHECK_FAILED.
SECRET_DENIED = "Permission denied on secret"

# Output-only fields of GoogleCloudRunV2Service / GoogleCloudRunV2Job (run.v2 discovery document).
SERVICE_OUTPUT_ONLY = frozenset((
    "conditions", "createTime", "creator", "deleteTime", "expireTime", "generation", "lastModifier",
    "latestCreatedRevision", "latestReadyRevision", "observedGeneration", "reconciling", "satisfiesPzs",
    "terminalCondition", "threatDetectionEnabled", "trafficStatuses", "uid", "updateTime", "uri", "urls",
))
JOB_OUTPUT_ONLY = frozenset((
    "conditions", "createTime", "creator", "deleteTime", "executionCount", "expireTime", "generation",
    "lastModifier", "latestCreatedExecution", "observedGeneration", "reconciling", "satisfiesPzs",
    "terminalCondition", "uid", "updateTime",
))
CONTAINER_OUTPUT_ONLY = frozenset(("buildInfo",))

# Proto3 fields that track presence and default to something else than zero: an absent value is not 0.
PRESENCE_FIELDS = frozenset(("maxRetries",))
PROBES = ("startupProbe", "livenessProbe")
PROBE_ACTIONS = ("httpGet", "tcpSocket", "grpc")
VOLUME_KINDS = ("secret", "gcs", "emptyDir", "cloudSqlInstance", "nfs", "filestore")
CLOUDSQL_VOLUME = "cloudsql"
CLOUDSQL_MOUNT = "/cloudsql"

SERVICE_NAME = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
SERVICE_NAME_MAX = 49   # "fewer than 50 characters"
JOB_NAME_MAX = 63
ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
SECRET_NAME = re.compile(r"^projects/([^/]+)/secrets/([A-Za-z0-9_-]{1,255})$")
SECRET_VERSION = re.compile(r"^(latest|[1-9][0-9]*|[A-Za-z][A-Za-z0-9_-]{0,62})$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
SERVICE_RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
JOB_RESERVED_ENV = ("CLOUD_RUN_JOB", "CLOUD_RUN_EXECUTION", "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_ATTEMPT",
                    "CLOUD_RUN_TASK_COUNT")
CLOUDSQL_INSTANCE = re.compile(r"^([a-z][a-z0-9.:-]*[a-z0-9]):([a-z]+(?:-[a-z]+)+[0-9]+):([a-z]([a-z0-9-]*[a-z0-9])?)$")
IMAGE = re.compile(r"^[^\s]+$")
# Plain env names that look like they hold a secret (a plain value is shown in results, diffs and the console):
# these words anywhere in the name, or KEY/PWD as a word, unless the name ends in a word for a reference to one.
SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|APIKEY|PRIVATEKEY", re.I)
SECRET_PARTS = ("KEY", "PWD", "PASS")
REFERENCE_PARTS = ("FILE", "PATH", "DIR", "NAME", "ID", "URL", "URI", "TYPE", "VERSION")
VOLUME_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

CPU_MILLI = re.compile(r"^([0-9]+)m$")
DECIMAL_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)s$")
UNITS = {None: 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
         "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}
MIB, GIB = 2 ** 20, 2 ** 30
CPU_MIN_MILLI, CPU_MAX_MILLI = 80, 8000
WHOLE_CPUS = (1, 2, 4, 6, 8)
MEMORY_MIN, MEMORY_MAX = 128 * MIB, 32 * GIB
GEN2_MEMORY_MIN = 512 * MIB
# The largest memory each CPU count can have, and the least memory large CPU counts need.
MEMORY_PER_CPU = ((1, 4 * GIB), (2, 8 * GIB), (4, 16 * GIB), (6, 24 * GIB), (8, 32 * GIB))
MEMORY_FOR_CPU = ((4, 2 * GIB), (6, 4 * GIB), (8, 4 * GIB))
CONCURRENCY_MAX = 1000
REQUEST_TIMEOUT_MAX = 3600
TASK_TIMEOUT_MAX = 168 * 3600
TASKS_MAX = 10000
MAX_RETRIES_MAX = 10
DESCRIPTION_MAX = 512
# Probe limits: (initialDelaySeconds max, periodSeconds max) per probe; timeoutSeconds 1..3600.
PROBE_LIMITS = {"startup_probe": (240, 240), "liveness_probe": (3600, 3600)}


# ---------------------------------------------------------------- argument spec

def _probe_options():
    return dict(
        http_get=dict(type="dict", options=dict(
            path=dict(type="str", default="/"),
            port=dict(type="int"),
        )),
        tcp_socket=dict(type="dict", options=dict(port=dict(type="int"))),
        initial_delay_seconds=dict(type="int"),
        timeout_seconds=dict(type="int"),
        period_seconds=dict(type="int"),
        failure_threshold=dict(type="int"),
    )


def argument_spec(job=False):
    """The options of cloud_run_service (job=False) or cloud_run_job (job=True), without the common ones."""
    spec = dict(
        name=dict(type="str", required=True),
        location=dict(type="str", required=True, aliases=["region"]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        image=dict(type="str"),
        command=dict(type="list", elements="str"),
        args=dict(type="list", elements="str"),
        env=dict(type="dict"),
        secret_env=dict(type="dict", no_log=False),
        cpu=dict(type="str"),
        memory=dict(type="str"),
        service_account=dict(type="str"),
        execution_environment=dict(type="str", choices=sorted(EXECUTION_ENVIRONMENTS)),
        cloudsql_instances=dict(type="list", elements="str"),
        volumes=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            mount_path=dict(type="str", required=True),
            secret=dict(type="dict", no_log=False, options=dict(
                secret=dict(type="str", required=True, no_log=False),
                version=dict(type="str"),
                path=dict(type="str"),
            )),
            gcs=dict(type="dict", options=dict(
                bucket=dict(type="str", required=True),
                read_only=dict(type="bool", default=False),
            )),
            in_memory=dict(type="dict", options=dict(size_limit=dict(type="str"))),
        )),
        labels=dict(type="dict"),
    )
    if job:
        spec.update(
            tasks=dict(type="int"),
            parallelism=dict(type="int"),
            max_retries=dict(type="int"),
            task_timeout=dict(type="int"),
            execute=dict(type="str", choices=["never", "always", "on_change"], default="never"),
        )
    else:
        spec.update(
            port=dict(type="int"),
            cpu_idle=dict(type="bool"),
            startup_cpu_boost=dict(type="bool"),
            min_instances=dict(type="int"),
            max_instances=dict(type="int"),
            concurrency=dict(type="int"),
            request_timeout=dict(type="int"),
            ingress=dict(type="str", choices=sorted(INGRESS)),
            startup_probe=dict(type="dict", options=_probe_options()),
            liveness_probe=dict(type="dict", options=_probe_options()),
            description=dict(type="str"),
        )
    return spec


# ---------------------------------------------------------------- values Cloud Run spells several ways

def cpu_millis(value):
    """CPU as thousandths of a vCPU ("1" -> 1000, "0.5" -> 500, "1000m" -> 1000); None when malformed."""
    text = str(value).strip()
    match = CPU_MILLI.match(text)
    if match:
        return int(match.group(1))
    if DECIMAL_NUMBER.match(text):
        millis = Decimal(text) * 1000
        return int(millis) if millis == int(millis) else None
    return None


def memory_bytes(value):
    """A Kubernetes quantity ("512Mi", "2Gi", "1G") in bytes; None when malformed."""
    match = QUANTITY.match(str(value).strip())
    if not match:
        return None
    try:
        amount = Decimal(match.group(1)) * UNITS[match.group(2)]
    except InvalidOperation:
        return None
    return int(amount) if amount == int(amount) else None


def duration_seconds(value):
    """A google.protobuf.Duration in JSON ("300s", "1.5s") as a Decimal; None when malformed."""
    match = DURATION.match(str(value or "").strip())
    return Decimal(match.group(1)) if match else None


def seconds(value):
    return None if value is None else "%ds" % value


def short_name(name):
    """The last segment of a resource name (a revision or execution ID); None stays None."""
    return name.rsplit("/", 1)[-1] if name else None


def secret_ref(value, project):
    """A Secret Manager secret as Cloud Run takes it: its ID in the own project, else projects/P/secrets/ID."""
    match = SECRET_NAME.match(value or "")
    if match and match.group(1) == project:
        return match.group(2)
    return value


def service_account_email(value, project):
    """A service account email, from an email or an account ID of the project."""
    if value is None or "@" in value:
        return value
    return "%s@%s.iam.gserviceaccount.com" % (value, project)


def env_value(value):
    """An env var value as a string; None when it is not a string or an integer (ambiguous: quote it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def secret_like_env(params):
    """The plain env names that look like secrets, sorted (for a warning: secret_env keeps them out of sight)."""
    if params.get("state", "present") == "absent":
        return []
    found = []
    for name in params.get("env") or {}:
        parts = [part.upper() for part in re.split(r"[-._]", str(name)) if part]
        if not parts or parts[-1] in REFERENCE_PARTS:
            continue
        if SECRET_WORDS.search(str(name)) or any(part in SECRET_PARTS for part in parts):
            found.append(str(name))
    return sorted(found)


# ---------------------------------------------------------------- validation (before any request)

def _cpu_memory_errors(params, job):
    errors = []
    millis = size = None
    if params.get("cpu") is not None:
        millis = cpu_millis(params["cpu"])
        if millis is None:
            errors.append("cpu %r is not a CPU count such as 1, 2, 0.5 or 500m" % params["cpu"])
        elif not CPU_MIN_MILLI <= millis <= CPU_MAX_MILLI:
            errors.append("cpu %r is out of range: Cloud Run takes from 0.08 to 8 vCPU" % params["cpu"])
        elif millis >= 1000 and (millis % 1000 or millis // 1000 not in WHOLE_CPUS):
            errors.append("cpu %r: above 1 vCPU, Cloud Run takes 1, 2, 4, 6 or 8" % params["cpu"])
            millis = None
    if params.get("memory") is not None:
        size = memory_bytes(params["memory"])
        if size is None:
            errors.append("memory %r is not a size such as 512Mi or 2Gi (binary units Ki, Mi, Gi; 'MB' and 'GB' "
                          "are not accepted)" % params["memory"])
        elif not MEMORY_MIN <= size <= MEMORY_MAX:
            errors.append("memory %r is out of range: Cloud Run takes from 128Mi to 32Gi" % params["memory"])
            size = None
        elif params.get("execution_environment") == "gen2" and size < GEN2_MEMORY_MIN:
            errors.append("memory %r: the gen2 execution environment needs at least 512Mi" % params["memory"])
    if millis and millis < 1000 and not job:
        if (params.get("concurrency") or 0) > 1:
            errors.append("cpu %s is below 1 vCPU, which takes concurrency 1 only, got %d"
                          % (params["cpu"], params["concurrency"]))
        if params.get("cpu_idle") is False:
            errors.append("cpu %s is below 1 vCPU, which takes cpu_idle: true only (CPU during requests)" % params["cpu"])
    if millis and size and millis >= 1000:
        cpus = millis // 1000
        most = dict(MEMORY_PER_CPU).get(cpus)
        if most and size > most:
            errors.append("memory %s needs more CPU: %s vCPU take at most %dGi"
                          % (params["memory"], params["cpu"], most // GIB))
        least = dict(MEMORY_FOR_CPU).get(cpus)
        if least and size < least:
            errors.append("cpu %s needs at least %dGi of memory, got %s"
                          % (params["cpu"], least // GIB, params["memory"]))
    return errors


def _env_errors(params, job):
    errors = []
    reserved = JOB_RESERVED_ENV if job else SERVICE_RESERVED_ENV
    plain = params.get("env") or {}
    secret = params.get("secret_env") or {}
    for option, names in (("env", plain), ("secret_env", secret)):
        for name in names:
            if not ENV_NAME.match(str(name)):
                errors.append("%s name %r must start with a letter, '_', '-' or '.' and hold only letters, digits, "
                              "'_', '-' and '.'" % (option, name))
            elif name in reserved:
                errors.append("%s name %r is reserved: Cloud Run sets it" % (option, name))
    for name, value in plain.items():
        if env_value(value) is None:
            errors.append("env %r has value %r: values must be strings (quote booleans, floats and empty values)"
                          % (name, value))
    both = sorted(set(plain) & set(secret))
    if both:
        errors.append("env and secret_env both set %s; an env var has one source" % ", ".join(both))
    for name, ref in secret.items():
        if not isinstance(ref, dict):
            errors.append("secret_env %r must be a mapping {secret: ID, version: latest}, got %r" % (name, ref))
            continue
        unknown = sorted(set(ref) - {"secret", "version"})
        if unknown:
            errors.append("secret_env %r: unknown key(s) %s; use secret and version" % (name, ", ".join(unknown)))
        errors += _secret_errors("secret_env %r" % name, ref.get("secret"), ref.get("version"))
    return errors


def _secret_errors(where, secret, version):
    errors = []
    if not isinstance(secret, str) or not (SECRET_ID.match(secret) or SECRET_NAME.match(secret)):
        errors.append("%s: secret %r must be a secret ID (1 to 255 letters, digits, '-' and '_') or "
                      "projects/PROJECT/secrets/ID" % (where, secret))
    if version is not None and (isinstance(version, bool) or not SECRET_VERSION.match(str(version))):
        errors.append("%s: version %r must be 'latest', a version number or an alias" % (where, version))
    return errors


def _volume_errors(params):
    errors = []
    names, paths = set(), set()
    sql = params.get("cloudsql_instances")
    for index, volume in enumerate(params.get("volumes") or []):
        where = "volumes[%d] (%s)" % (index, volume.get("name"))
        name = volume.get("name") or ""
        if not VOLUME_NAME.match(name) or len(name) > 63:
            errors.append("%s: the name must hold at most 63 lowercase letters, digits and '-', and start and "
                          "end with a letter or digit" % where)
        elif name in names:
            errors.append("volumes name %r is used twice" % name)
        elif name == CLOUDSQL_VOLUME and sql is not None:
            errors.append("%s: the name %r is taken by the Cloud SQL volume of cloudsql_instances" % (where, name))
        names.add(name)
        path = volume.get("mount_path") or ""
        if not path.startswith("/") or ":" in path or path == "/":
            errors.append("%s: mount_path %r must be an absolute path below / without ':'" % (where, path))
        elif path.rstrip("/") in paths:
            errors.append("volumes mount_path %r is used twice" % path)
        elif sql is not None and path.rstrip("/") == CLOUDSQL_MOUNT:
            errors.append("%s: mount_path %s is where cloudsql_instances are mounted" % (where, CLOUDSQL_MOUNT))
        paths.add(path.rstrip("/"))
        kinds = [kind for kind in ("secret", "gcs", "in_memory") if volume.get(kind) is not None]
        if len(kinds) != 1:
            errors.append("%s needs exactly one of secret, gcs or in_memory, got %s"
                          % (where, ", ".join(kinds) if kinds else "none"))
            continue
        if volume.get("secret") is not None:
            secret = volume["secret"]
            errors += _secret_errors(where, secret.get("secret"), secret.get("version"))
            item = secret.get("path")
            if item is not None and (not item or item.startswith("/") or ".." in item.split("/")):
                errors.append("%s: secret.path %r must be a relative file path inside the volume" % (where, item))
        if volume.get("gcs") is not None and not volume["gcs"].get("bucket"):
            errors.append("%s: gcs.bucket must not be empty" % where)
        limit = (volume.get("in_memory") or {}).get("size_limit")
        if limit is not None and not memory_bytes(limit):
            errors.append("%s: in_memory.size_limit %r is not a size such as 256Mi or 1Gi" % (where, limit))
    for instance in sql or []:
        if not CLOUDSQL_INSTANCE.match(instance or ""):
            errors.append("cloudsql_instances entry %r must be a connection name PROJECT:REGION:INSTANCE" % instance)
    if sql is not None and len(set(sql)) != len(sql):
        errors.append("cloudsql_instances lists an instance twice")
    return errors


def _probe_errors(params):
    errors = []
    for option, (delay_max, period_max) in PROBE_LIMITS.items():
        probe = params.get(option)
        if probe is None:
            continue
        actions = [a for a in ("http_get", "tcp_socket") if probe.get(a) is not None]
        if len(actions) != 1:
            errors.append("%s needs exactly one of http_get or tcp_socket, got %s"
                          % (option, ", ".join(actions) if actions else "none"))
        if option == "liveness_probe" and probe.get("tcp_socket") is not None:
            errors.append("liveness_probe: Cloud Run liveness probes use http_get (tcp_socket is for startup_probe)")
        for action in actions:
            port = probe[action].get("port")
            if port is not None and not 1 <= port <= 65535:
                errors.append("%s.%s.port must be from 1 to 65535, got %d" % (option, action, port))
        path = (probe.get("http_get") or {}).get("path")
        if path is not None and not path.startswith("/"):
            errors.append("%s.http_get.path %r must start with /" % (option, path))
        bounds = dict(initial_delay_seconds=(0, delay_max), timeout_seconds=(1, 3600),
                      period_seconds=(1, period_max), failure_threshold=(1, None))
        for field, (least, most) in bounds.items():
            value = probe.get(field)
            if value is not None and (value < least or (most is not None and value > most)):
                errors.append("%s.%s must be %s, got %d" % (
                    option, field, "from %d to %d" % (least, most) if most is not None else "at least %d" % least,
                    value))
        timeout, period = probe.get("timeout_seconds"), probe.get("period_seconds")
        if timeout is not None and period is not None and timeout > period:
            errors.append("%s.timeout_seconds (%d) must not exceed period_seconds (%d)" % (option, timeout, period))
    return errors


def _range_error(params, option, least, most=None):
    value = params.get(option)
    if value is None or (value >= least and (most is None or value <= most)):
        return []
    if most is None:
        return ["%s must be at least %d, got %d" % (option, least, value)]
    return ["%s must be from %d to %d, got %d" % (option, least, most, value)]


def option_errors(params, job=False):
    """Everything wrong with the options, as messages (checked before any API call)."""
    errors = []
    name, location = params.get("name") or "", params.get("location") or ""
    longest = JOB_NAME_MAX if job else SERVICE_NAME_MAX
    if not SERVICE_NAME.match(name) or len(name) > longest:
        errors.append("name %r must hold at most %d lowercase letters, digits and hyphens, start with a letter and "
                      "not end with a hyphen" % (name, longest))
    if not REGION.match(location):
        errors.append("location %r must be a Cloud Run region such as europe-west1" % location)
    if params.get("state", "present") == "absent":
        return errors
    image = params.get("image")
    if image is None:
        errors.append("image is required with state: present")
    elif not IMAGE.match(image):
        errors.append("image %r must be an image reference such as "
                      "europe-west1-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG or ...@sha256:DIGEST" % image)
    errors += _cpu_memory_errors(params, job)
    errors += _env_errors(params, job)
    errors += _volume_errors(params)
    account = params.get("service_account")
    if account is not None and not (EMAIL.match(account) or ACCOUNT_ID.match(account)):
        errors.append("service_account %r must be a service account email or account ID (6 to 30 lowercase "
                      "letters, digits and hyphens)" % account)
    errors += label_errors(params.get("labels"))
    if job:
        errors += _range_error(params, "tasks", 1, TASKS_MAX)
        errors += _range_error(params, "parallelism", 0)
        if params.get("parallelism") and params.get("tasks") and params["parallelism"] > params["tasks"]:
            errors.append("parallelism (%d) must not exceed tasks (%d)" % (params["parallelism"], params["tasks"]))
        errors += _range_error(params, "max_retries", 0, MAX_RETRIES_MAX)
        errors += _range_error(params, "task_timeout", 1, TASK_TIMEOUT_MAX)
        return errors
    errors += _range_error(params, "port", 1, 65535)
    errors += _range_error(params, "concurrency", 1, CONCURRENCY_MAX)
    errors += _range_error(params, "request_timeout", 1, REQUEST_TIMEOUT_MAX)
    errors += _range_error(params, "min_instances", 0)
    errors += _range_error(params, "max_instances", 1)
    low, high = params.get("min_instances"), params.get("max_instances")
    if low is not None and high is not None and high >= 1 and low > high:
        errors.append("min_instances (%d) must not exceed max_instances (%d)" % (low, high))
    errors += _probe_errors(params)
    if params.get("description") is not None and len(params["description"]) > DESCRIPTION_MAX:
        errors.append("description holds %d characters; Cloud Run takes at most %d"
                      % (len(params["description"]), DESCRIPTION_MAX))
    return errors


# ---------------------------------------------------------------- options -> v2 REST body

def compact(**fields):
    """The fields that are set, or None when none is (an object the user said nothing about)."""
    held = {k: v for k, v in fields.items() if v is not None}
    return held or None


def env_list(plain, secret, project):
    """EnvVar objects for the plain values and the Secret Manager references, in name order."""
    items = [dict(name=name, value=env_value(value)) for name, value in (plain or {}).items()]
    for name, ref in (secret or {}).items():
        version = ref.get("version")
        items.append(dict(name=name, valueSource=dict(secretKeyRef=dict(
            secret=secret_ref(ref["secret"], project), version="latest" if version is None else str(version)))))
    return sorted(items, key=lambda item: item["name"])


def _volume(volume, project):
    if volume.get("secret") is not None:
        secret = volume["secret"]
        items = []
        if secret.get("path") is not None or secret.get("version") is not None:
            ident = secret_ref(secret["secret"], project).rsplit("/", 1)[-1]
            items = [dict(path=secret.get("path") or ident, version=secret.get("version") or "latest")]
        return dict(name=volume["name"], secret=Exact(secret=secret_ref(secret["secret"], project), items=items))
    if volume.get("gcs") is not None:
        return dict(name=volume["name"], gcs=Exact(bucket=volume["gcs"]["bucket"],
                                                   readOnly=bool(volume["gcs"].get("read_only"))))
    limit = (volume.get("in_memory") or {}).get("size_limit")
    return dict(name=volume["name"], emptyDir=Exact(prune(dict(medium="MEMORY", sizeLimit=limit))))


def cloudsql_volume(instances):
    return dict(name=CLOUDSQL_VOLUME, cloudSqlInstance=Exact(instances=list(instances)))


def build_volumes(params, project):
    """(volumes, volumeMounts) for the options set, in name order; (None, None) when neither option is set."""
    user, sql = params.get("volumes"), params.get("cloudsql_instances")
    if user is None and sql is None:
        return None, None
    volumes = [_volume(v, project) for v in user or []]
    mounts = [dict(name=v["name"], mountPath=v["mount_path"]) for v in user or []]
    if sql:
        volumes.append(cloudsql_volume(sql))
        mounts.append(dict(name=CLOUDSQL_VOLUME, mountPath=CLOUDSQL_MOUNT))
    return sorted(volumes, key=lambda v: v["name"]), sorted(mounts, key=lambda m: m["name"])


def _probe(probe):
    if probe is None:
        return None
    action = {}
    if probe.get("http_get") is not None:
        action["httpGet"] = prune(dict(path=probe["http_get"].get("path"), port=probe["http_get"].get("port")))
    if probe.get("tcp_socket") is not None:
        action["tcpSocket"] = prune(dict(port=probe["tcp_socket"].get("port")))
    return dict(action, initialDelaySeconds=probe.get("initial_delay_seconds"),
                timeoutSeconds=probe.get("timeout_seconds"), periodSeconds=probe.get("period_seconds"),
                failureThreshold=probe.get("failure_threshold"))


def build_container(params, project, job=False):
    """The container (containers[0]) from the options set."""
    p = params
    env = None
    if p.get("env") is not None or p.get("secret_env") is not None:
        env = env_list(p.get("env"), p.get("secret_env"), project)
    mounts = build_volumes(p, project)[1]
    container = dict(
        image=p.get("image"),
        command=p.get("command"),
        args=p.get("args"),
        env=env,
        resources=compact(
            limits=compact(cpu=p.get("cpu"), memory=p.get("memory")),
            cpuIdle=None if job else p.get("cpu_idle"),
            startupCpuBoost=None if job else p.get("startup_cpu_boost"),
        ),
        volumeMounts=mounts,
    )
    if not job:
        container.update(
            ports=None if p.get("port") is None else [dict(containerPort=p["port"])],
            startupProbe=_probe(p.get("startup_probe")),
            livenessProbe=_probe(p.get("liveness_probe")),
        )
    return prune(container)


def _task_fields(params, project, job):
    """The fields a revision template and a task template share."""
    environment = params.get("execution_environment")
    return dict(
        containers=[build_container(params, project, job=job)],
        serviceAccount=service_account_email(params.get("service_account"), project),
        executionEnvironment=EXECUTION_ENVIRONMENTS[environment] if environment else None,
        volumes=build_volumes(params, project)[0],
    )


def build_service(params):
    """The desired GoogleCloudRunV2Service: only the fields the options set, traffic always to the latest."""
    p, project = params, params["project"]
    template = dict(
        _task_fields(p, project, job=False),
        scaling=compact(minInstanceCount=p.get("min_instances"), maxInstanceCount=p.get("max_instances")),
        maxInstanceRequestConcurrency=p.get("concurrency"),
        timeout=seconds(p.get("request_timeout")),
    )
    return prune(dict(
        description=p.get("description"),
        labels=None if p.get("labels") is None else Exact(p["labels"]),
        ingress=INGRESS[p["ingress"]] if p.get("ingress") else None,
        traffic=copy.deepcopy(LATEST_TRAFFIC),
        template=template,
    ))


def build_job(params):
    """The desired GoogleCloudRunV2Job: only the fields the options set."""
    p, project = params, params["project"]
    task = dict(_task_fields(p, project, job=True), maxRetries=p.get("max_retries"), timeout=seconds(p.get("task_timeout")))
    return prune(dict(
        labels=None if p.get("labels") is None else Exact(p["labels"]),
        template=dict(taskCount=p.get("tasks"), parallelism=p.get("parallelism"), template=task),
    ))


def task_template(body, job):
    """The object holding containers and volumes: template (service) or template.template (job)."""
    template = (body or {}).get("template")
    if job:
        template = (template or {}).get("template") if isinstance(template, dict) else None
    return template if isinstance(template, dict) else None


# ---------------------------------------------------------------- the read resource -> comparable view

def _canonical_env(env, project):
    items = []
    for var in env or []:
        ref = ((var.get("valueSource") or {}).get("secretKeyRef"))
        if ref is not None:
            items.append(dict(name=var.get("name"), valueSource=dict(secretKeyRef=dict(
                secret=secret_ref(ref.get("secret"), project), version=ref.get("version") or "latest"))))
        else:
            items.append(dict(name=var.get("name"), value=var.get("value") or ""))
    return sorted(items, key=lambda item: item["name"] or "")


def _canonical_volume(volume, wanted, project):
    """A volume with only the fields the module manages (the kind objects of the desired body are Exact)."""
    wanted = wanted or {}
    if "secret" in volume:
        secret = volume["secret"] or {}
        items = [dict(path=i.get("path"), version=i.get("version") or "latest") for i in secret.get("items") or []]
        return dict(name=volume.get("name"), secret=dict(secret=secret_ref(secret.get("secret"), project), items=items))
    if "gcs" in volume:
        gcs = volume["gcs"] or {}
        return dict(name=volume.get("name"), gcs=dict(bucket=gcs.get("bucket"), readOnly=bool(gcs.get("readOnly"))))
    if "emptyDir" in volume:
        empty = dict(volume["emptyDir"] or {})
        empty.setdefault("medium", "MEMORY")
        want = (wanted.get("emptyDir") or {}).get("sizeLimit")
        if want and empty.get("sizeLimit") and memory_bytes(empty["sizeLimit"]) == memory_bytes(want):
            empty["sizeLimit"] = want
        return dict(name=volume.get("name"), emptyDir=empty)
    if "cloudSqlInstance" in volume:
        return dict(name=volume.get("name"),
                    cloudSqlInstance=dict(instances=list((volume["cloudSqlInstance"] or {}).get("instances") or [])))
    return dict(volume)


def _same_value(actual, wanted, parse):
    """wanted when actual spells the same value (so that it compares equal), else actual."""
    if actual is not None and wanted is not None and parse(actual) is not None and parse(actual) == parse(wanted):
        return wanted
    return actual


def _canonical_container(container, wanted, project):
    container = copy.deepcopy(container)
    wanted = wanted or {}
    for field in CONTAINER_OUTPUT_ONLY:
        container.pop(field, None)
    if "env" in wanted:
        container["env"] = _canonical_env(container.get("env"), project)
    if "volumeMounts" in wanted:
        container["volumeMounts"] = sorted(
            (dict(name=m.get("name"), mountPath=m.get("mountPath")) for m in container.get("volumeMounts") or []),
            key=lambda m: m["name"] or "")
    limits = (container.get("resources") or {}).get("limits")
    want = (wanted.get("resources") or {}).get("limits") or {}
    if isinstance(limits, dict):
        limits["cpu"] = _same_value(limits.get("cpu"), want.get("cpu"), cpu_millis)
        limits["memory"] = _same_value(limits.get("memory"), want.get("memory"), memory_bytes)
        container["resources"]["limits"] = prune(limits)
    return container


def zero_fill(actual, desired):
    """Fill in, in place, the zero values (0, false, "") proto3 JSON leaves out, where desired asks for one."""
    for key, want in desired.items():
        if key in actual:
            have = actual[key]
            if isinstance(want, dict) and isinstance(have, dict) and not isinstance(want, Exact):
                zero_fill(have, want)
            elif isinstance(want, list) and isinstance(have, list):
                for item_want, item_have in zip(want, have):
                    if isinstance(item_want, dict) and isinstance(item_have, dict):
                        zero_fill(item_have, item_want)
        elif key in PRESENCE_FIELDS:
            continue
        elif want is False or want == "" or (type(want) is int and want == 0):  # pylint: disable=unidiomatic-typecheck
            actual[key] = want
        elif isinstance(want, dict) and not isinstance(want, Exact):
            inner = {}
            zero_fill(inner, want)
            if inner:
                actual[key] = inner
    return actual


def shape(actual, desired, key=None):
    """The part of actual that desired talks about (the `before` of a diff), down into the containers.

    Lists other than containers are kept whole: env, volumes and mounts are compared as complete lists. A
    probe keeps its action (httpGet, tcpSocket) so that a change of action shows.
    """
    if isinstance(desired, Exact):
        return actual
    if isinstance(desired, dict) and isinstance(actual, dict):
        view = {k: shape(actual[k], v, k) for k, v in desired.items() if k in actual}
        if key in PROBES:
            view.update((k, actual[k]) for k in PROBE_ACTIONS if k in actual)
        return view
    if key == "containers" and isinstance(desired, list) and isinstance(actual, list):
        return [shape(a, d) for a, d in zip(actual, desired)] + actual[len(desired):]
    return actual


def normalize_resource(actual, desired, project, job=False):
    """The read service or job as a view comparable with the desired body (see the module docstring)."""
    view = copy.deepcopy(actual)
    if desired is None:
        return view
    task, want = task_template(view, job), task_template(desired, job) or {}
    if task is not None:
        containers = task.get("containers") or []
        wanted_containers = want.get("containers") or [{}]
        # The module manages the first container; other ones (sidecars) are left as they are.
        task["containers"] = [_canonical_container(containers[0], wanted_containers[0], project)] if containers else []
        if "volumes" in want:
            by_name = {v.get("name"): v for v in want.get("volumes") or []}
            task["volumes"] = sorted((_canonical_volume(v, by_name.get(v.get("name")), project)
                                      for v in task.get("volumes") or []), key=lambda v: v.get("name") or "")
        task["timeout"] = _same_value(task.get("timeout"), want.get("timeout"), duration_seconds)
        if task["timeout"] is None:
            task.pop("timeout")
    zero_fill(view, desired)
    condition = view.get("terminalCondition")
    view = shape(view, desired)
    if condition is not None:
        view["terminalCondition"] = condition
    return view


def _is_secret_env(var):
    return "valueSource" in var


def complete(desired, actual, params, job=False):
    """Complete, in place, the lists of desired the options manage only in part, from the actual view.

    env holds the plain vars and secret_env the secret ones: the part whose option is not set is kept as
    it is. The same for volumes (user volumes) and cloudsql_instances (the Cloud SQL volume).
    """
    task, have = task_template(desired, job), task_template(actual, job) or {}
    if task is None:
        return desired
    container = task["containers"][0]
    have_container = (have.get("containers") or [{}])[0]
    if "env" in container:
        keep = [var for var in have_container.get("env") or []
                if (_is_secret_env(var) and params.get("secret_env") is None)
                or (not _is_secret_env(var) and params.get("env") is None)]
        names = {var["name"] for var in container["env"]}
        container["env"] = sorted(container["env"] + [v for v in keep if v["name"] not in names],
                                  key=lambda var: var["name"])
    if "volumes" in task:
        keep = [v for v in have.get("volumes") or []
                if (params.get("cloudsql_instances") is None if "cloudSqlInstance" in v else params.get("volumes") is None)]
        names = {v["name"] for v in task["volumes"]}
        keep = [v for v in keep if v.get("name") not in names]
        kept_names = {v.get("name") for v in keep}
        task["volumes"] = sorted(task["volumes"] + keep, key=lambda v: v["name"])
        mounts = container.get("volumeMounts") or []
        mounts += [m for m in have_container.get("volumeMounts") or [] if m.get("name") in kept_names]
        container["volumeMounts"] = sorted(mounts, key=lambda m: m["name"])
    return desired


def probe_changes(desired, actual, job=False):
    """Paths of probes whose action (httpGet, tcpSocket) differs: a subset comparison would not see it."""
    if job:
        return []
    want = (task_template(desired, job) or {}).get("containers") or [{}]
    have = (task_template(actual, job) or {}).get("containers") or [{}]
    found = []
    for probe in PROBES:
        wanted, held = want[0].get(probe), have[0].get(probe) or {}
        if wanted is not None and {a for a in PROBE_ACTIONS if a in wanted} != {a for a in PROBE_ACTIONS if a in held}:
            found.append("template.containers")
    return found


def field_names(paths, job=False):
    """Changed paths at the granularity of the report: a top-level field, or a field of the (task) template."""
    depth = 3 if job else 2
    names = set()
    for path in paths:
        parts = path.split(".")
        if parts[0] == "template":
            names.add(".".join(parts[:depth if job and len(parts) > 1 and parts[1] == "template" else 2]))
        else:
            names.add(parts[0])
    return sorted(names)


# ---------------------------------------------------------------- the update body

def strip_output_only(resource, job=False):
    """A copy of a read service or job without its output-only fields (the update body's base)."""
    body = {k: copy.deepcopy(v) for k, v in resource.items()
            if k not in (JOB_OUTPUT_ONLY if job else SERVICE_OUTPUT_ONLY)}
    task = task_template(body, job)
    for container in (task or {}).get("containers") or []:
        for field in CONTAINER_OUTPUT_ONLY:
            container.pop(field, None)
    return body


def merge(base, desired, key=None):
    """desired deep-merged into base: mappings field by field, Exact mappings and probes replaced, lists
    replaced, except the containers, whose first one is merged (sidecars are kept)."""
    if isinstance(desired, Exact):
        return dict(desired)
    if isinstance(desired, dict):
        if not isinstance(base, dict) or key in PROBES:
            return copy.deepcopy(dict(desired))
        merged = dict(base)
        for name, value in desired.items():
            merged[name] = merge(base.get(name), value, name)
        return merged
    if isinstance(desired, list):
        if key == "containers" and isinstance(base, list) and base and desired:
            return [merge(base[0], desired[0])] + [merge(None, d) for d in desired[1:]] + base[len(desired):]
        return [merge(None, item) for item in desired]
    return desired


def update_body(raw, desired, changed_fields, job=False):
    """The PATCH body: the resource as read without its output-only fields, deep-merged with the desired
    fields, with the etag read (a concurrent change fails with 409 instead of being overwritten)."""
    body = merge(strip_output_only(raw, job), desired)
    for field in (JOB_OUTPUT_ONLY if job else SERVICE_OUTPUT_ONLY):
        body.pop(field, None)
    new_revision = any(f.startswith("template") or f == "terminalCondition" for f in changed_fields)
    if not job and new_revision and isinstance(body.get("template"), dict):
        # A revision name given by someone else cannot be used twice: a new revision gets a new name.
        body["template"].pop("revision", None)
    if raw.get("etag"):
        body["etag"] = raw["etag"]
    return body


# ---------------------------------------------------------------- conditions and failures

def condition_text(condition):
    """reason, revisionReason/executionReason and message of a condition, as one phrase."""
    condition = condition or {}
    reasons = [condition.get(k) for k in ("reason", "revisionReason", "executionReason") if condition.get(k)]
    text = condition.get("message") or "no message"
    return "%s: %s" % (", ".join(reasons), text) if reasons else text


def not_ready_message(kind, name, resource):
    """Why a service or job did not become Ready, from its terminalCondition and revisions."""
    condition = resource.get("terminalCondition") or {}
    if kind == "service":
        created, ready = short_name(resource.get("latestCreatedRevision")), short_name(resource.get("latestReadyRevision"))
        message = "Cloud Run service %s: revision %s is not ready (%s)" % (
            name, created or "(none)", condition_text(condition))
        if ready and ready != created:
            message += "; traffic stays on revision %s" % ready
        elif not ready:
            message += "; the service has no ready revision"
        return message
    return "Cloud Run job %s is not ready (%s)" % (name, condition_text(condition))


def untyped(resource):
    """A resource from an operation's response, without the "@type" of the Any it came in."""
    if isinstance(resource, dict) and "@type" in resource:
        resource = {k: v for k, v in resource.items() if k != "@type"}
    return resource


def secret_denied(message):
    """Whether a failure is a runtime account that cannot (yet) read a secret: worth deploying again."""
    return SECRET_DENIED in (message or "")


def retry_delays(deadline, base=2.0, cap=MAX_BACKOFF, rng=random.random, clock=time.monotonic):
    """Full-jitter exponential backoff delays, as long as sleeping them ends before deadline (a clock() value)."""
    attempt = 0
    while True:
        delay = rng() * min(cap, base * (2 ** attempt))
        if clock() + delay > deadline:
            return
        attempt += 1
        yield delay


def still_denied(error, timeout):
    return ResourceError("%s. The runtime service account still cannot read the secret after retrying for up to %ss: "
                         "grant it roles/secretmanager.secretAccessor on the secret or the project (a grant takes "
                         "effect within minutes; raise timeout if it was just made)" % (error, timeout))


def condition_state(resource):
    return ((resource or {}).get("terminalCondition") or {}).get("state")


def execution_summary(execution):
    """The execution as the module returns it."""
    execution = execution or {}
    return dict(name=execution.get("name"), succeeded_count=execution.get("succeededCount") or 0,
                failed_count=execution.get("failedCount") or 0, log_uri=execution.get("logUri"),
                completion_time=execution.get("completionTime"))


def rfc3339(value):
    """A timestamp as Google's JSON writes it (2026-01-31T10:02:00.123456789Z), as an aware datetime; None if unset."""
    if not value:
        return None
    stamp, _sep, fraction = value.rstrip("Z").partition(".")
    moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return moment + datetime.timedelta(microseconds=int((fraction + "000000")[:6]))


def succeeded_since_update(job):
    """Whether the job's latest execution started after the job's last change and succeeded."""
    latest = job.get("latestCreatedExecution") or {}
    started, updated = rfc3339(latest.get("createTime")), rfc3339(job.get("updateTime"))
    return latest.get("completionStatus") == "EXECUTION_SUCCEEDED" and started is not None and \
        (updated is None or started >= updated)


def execution_error(execution):
    """The message of a failed execution's Completed condition, or None when it did not fail."""
    for condition in (execution or {}).get("conditions") or []:
        if condition.get("type") == "Completed" and condition.get("state") == FAILED:
            return condition_text(condition)
    if (execution or {}).get("failedCount") or (execution or {}).get("cancelledCount"):
        return "%s task(s) failed, %s cancelled" % (
            execution.get("failedCount") or 0, execution.get("cancelledCount") or 0)
    return None


# ---------------------------------------------------------------- the resource

class CloudRunResource(LocatedResource):
    """A Cloud Run v2 service or job (subclasses set the collection)."""

    job = False
    collection = "services"
    version = "v2"
    id_param = "serviceId"

    def __init__(self, module):
        super().__init__(module)
        self.wanted = None
        self.failed = False
        # Redeploys on a secret still out of reach stay within the module's timeout, counted from the start.
        self.deadline = time.monotonic() + (module.params.get("timeout") or 300)

    def validate(self):
        errors = option_errors(self.params, job=self.job)
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))
        for name in secret_like_env(self.params):
            self.module.warn("env %s of %s %s looks like a secret: a plain env value is shown in task results, "
                             "diffs and the Cloud Run console; put it in Secret Manager and use secret_env"
                             % (name, self.kind, self.name))

    def build(self):
        raise NotImplementedError

    def desired(self):
        self.wanted = prune(self.build())
        return self.wanted

    def _get(self):
        return self.client.get(API, self.path, resource=self.name)

    def read(self):
        """The resource; while Cloud Run still reconciles it (a run that timed out), after it settles."""
        current = self._get()
        if current is not None and current.get("reconciling") and self.params["state"] == "present":
            current = self.client.wait(self._get, lambda r: r is None or not r.get("reconciling"), resource=self.name)
        return current

    def normalize(self, actual):
        return normalize_resource(actual, self.wanted, self.params["project"], job=self.job)

    def changes(self, actual, desired):
        complete(desired, actual, self.params, job=self.job)
        paths = differences(desired, actual) + probe_changes(desired, actual, job=self.job)
        return field_names(paths, job=self.job)

    def _finish(self, operation):
        """Wait for a create or update operation; the resource as it ends, or a clear failure."""
        try:
            result = wait_operation(self.client, API, operation, resource=self.name, version="v2")
        except GcpApiError as exc:
            if exc.reason == "TIMEOUT":
                raise
            current = self._get()
            if current is not None and condition_state(current) == FAILED:
                raise ResourceError(not_ready_message(self.kind_word, self.name, current)) from None
            raise
        if not result.get("name") or result.get("reconciling"):
            result = self.read()
        return untyped(result)

    @property
    def kind_word(self):
        return "job" if self.job else "service"

    def create_body(self, desired):
        return desired

    def _deployed(self, operation, desired):
        """_finish, deploying a new revision again while it fails only because its runtime account cannot read
        a secret yet (a grant still propagating), with backoff within timeout."""
        delays = retry_delays(self.deadline)
        while True:
            try:
                return self._finish(operation)
            except ResourceError as exc:
                if self.job or not secret_denied(str(exc)):
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise still_denied(exc, self.params["timeout"]) from None
                self.client._sleep(delay)  # pylint: disable=protected-access  # the client's (test-injectable) sleep
            # The whole service again (no updateMask), as a new revision even though nothing changed.
            body = dict((k, v) for k, v in self.create_body(desired).items() if k not in SERVICE_OUTPUT_ONLY)
            operation = self.client.request("PATCH", API, self.path, resource=self.name,
                                            params={"forceNewRevision": "true"}, body=body)

    def create(self, desired):
        parent = "/v2/projects/%s/locations/%s/%s" % (self.params["project"], self.params["location"], self.collection)
        operation = self.client.request("POST", API, parent, resource=self.name,
                                        params={self.id_param: self.params["name"]}, body=self.create_body(desired))
        return self._deployed(operation, desired)

    def update(self, actual, desired, changed_fields):
        params = {"forceNewRevision": "true"} if self.failed else None
        try:
            operation = self.client.request("PATCH", API, self.path, resource=self.name, params=params,
                                            body=update_body(actual, desired, changed_fields, job=self.job))
        except GcpApiError as exc:
            # A PATCH retried after a lost answer meets its own change: the etag moved on (409). When the
            # resource now holds what was asked, the first attempt went through.
            current = self.read() if exc.status == 409 else None
            if current is None or [f for f in self.changes(self.normalize(current), copy.deepcopy(desired))
                                   if f != "terminalCondition"]:
                raise
            return current
        return self._deployed(operation, desired)

    def delete(self, actual):
        operation = self.client.request("DELETE", API, self.path, resource=self.name, not_found_ok=True)
        if operation is not None:
            wait_operation(self.client, API, operation, resource=self.name, version="v2")

    def check_ready(self, resource):
        """Fail with the terminal condition when the resource did not become Ready."""
        if condition_state(resource) not in (None, SUCCEEDED):
            raise ResourceError(not_ready_message(self.kind_word, self.name, resource))
