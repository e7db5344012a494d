#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloud_scheduler_job
short_description: Manage a Cloud Scheduler job that calls an HTTP endpoint on a schedule
version_added: 0.1.0
description:
  - Create, update, pause, resume or delete a Cloud Scheduler job with an HTTP target through the Cloud
    Scheduler API v1, for example one that runs a Cloud Run job through its C(:run) endpoint.
  - Only the options you set are compared with the job. The HTTP target (URI, method, headers, body and
    token) is compared as a whole, since it is what the job does.
  - An update is a PATCH whose update mask names the changed fields only; O(paused) uses the C(:pause) and
    C(:resume) methods.
  - Every option is checked before any request (cron syntax, time zone, durations, retry limits).
options:
  name:
    description:
      - The job ID, unique in its project and location. Letters, digits, V(-) and V(_), at most 500 characters.
    type: str
    required: true
  location:
    description:
      - The region of the job, such as V(europe-west1).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the job, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  schedule:
    description:
      - When the job runs, in unix-cron format (5 fields, minute hour day-of-month month day-of-week), such as
        V(0 3 * * *) for every day at 03:00. Month and day names (V(JAN), V(MON)) are accepted.
      - Required with O(state=present).
    type: str
  time_zone:
    description:
      - The time zone O(schedule) is read in, a name from the tz database such as V(Europe/Paris).
    type: str
    default: Etc/UTC
  description:
    description: What the job is for, at most 500 characters. V("") clears it.
    type: str
  uri:
    description:
      - The URL the job calls, starting with V(http://) or V(https://). Required with O(state=present).
    type: str
  http_method:
    description: The HTTP method of the call.
    type: str
    choices: [POST, GET, HEAD, PUT, DELETE, PATCH, OPTIONS]
    default: POST
  body:
    description:
      - The body of the call, as text (sent base64 encoded to the API). With O(http_method) V(POST), V(PUT) or
        V(PATCH) only.
    type: str
  headers:
    description:
      - HTTP headers of the call. When set, these are all its headers.
      - Cloud Scheduler adds C(User-Agent) and, with a body, a default C(Content-Type); they are not counted as a
        difference unless you set them.
    type: dict
  oauth_service_account:
    description:
      - Call with an OAuth access token of this service account (its email, or its account ID in O(project)).
        Use it for Google APIs (V(*.googleapis.com)), such as the Cloud Run Admin API C(:run) method.
      - Mutually exclusive with O(oidc_service_account).
    type: str
  oauth_scope:
    description: The scope of the OAuth token, with O(oauth_service_account) only.
    type: str
    default: https://www.googleapis.com/auth/cloud-platform
  oidc_service_account:
    description:
      - Call with an OIDC identity token of this service account (its email, or its account ID in O(project)).
        Use it for endpoints that check an identity token, such as a Cloud Run service URL.
      - Mutually exclusive with O(oauth_service_account).
    type: str
  oidc_audience:
    description:
      - The audience of the OIDC token, with O(oidc_service_account) only. When not set, Cloud Scheduler uses
        O(uri).
    type: str
  attempt_deadline:
    description:
      - Seconds Cloud Scheduler waits for an answer before the attempt fails, from 15 to 1800.
    type: int
  retry_count:
    description: How many times a failed run is retried, from 0 to 5.
    type: int
  max_retry_duration:
    description: Seconds after the first attempt during which retries may happen; V(0) means no limit.
    type: int
  min_backoff:
    description: Minimum seconds to wait before a retry.
    type: int
  max_backoff:
    description: Maximum seconds to wait before a retry, at least O(min_backoff).
    type: int
  max_doublings:
    description: How many times the wait between retries doubles before it grows linearly, from 0 to 16.
    type: int
  paused:
    description:
      - V(true) pauses the job (it stops running until resumed), V(false) resumes it.
      - When not set, an existing job stays as it is and a new one runs.
    type: bool
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Run the drift job every night at 03:00 Paris time
  deployml.mlops.cloud_scheduler_job:
    project: my-project
    name: drift-nightly
    location: europe-west1
    schedule: "0 3 * * *"
    time_zone: Europe/Paris
    description: Runs the Cloud Run job drift
    uri: https://run.googleapis.com/v2/projects/my-project/locations/europe-west1/jobs/drift:run
    http_method: POST
    oauth_service_account: scheduler
    attempt_deadline: 300
    retry_count: 3
    min_backoff: 30
    max_backoff: 600

- name: Call a private Cloud Run service with an identity token
  deployml.mlops.cloud_scheduler_job:
    project: my-project
    name: refresh-cache
    location: europe-west1
    schedule: "*/15 8-18 * * MON-FRI"
    uri: https://serving-abc123-ew.a.run.app/refresh
    body: '{"full": false}'
    headers:
      Content-Type: application/json
    oidc_service_account: scheduler@my-project.iam.gserviceaccount.com

- name: Pause it during maintenance
  deployml.mlops.cloud_scheduler_job:
    project: my-project
    name: refresh-cache
    location: europe-west1
    schedule: "*/15 8-18 * * MON-FRI"
    uri: https://serving-abc123-ew.a.run.app/refresh
    paused: true

- name: Delete a job
  deployml.mlops.cloud_scheduler_job:
    project: my-project
    name: refresh-cache
    location: europe-west1
    state: absent
"""

RETURN = r"""
job:
  description: The job as the API returns it after the change (the desired body in check mode), empty when absent.
  returned: always
  type: dict
  sample:
    name: projects/my-project/locations/europe-west1/jobs/drift-nightly
    schedule: 0 3 * * *
    timeZone: Europe/Paris
    httpTarget:
      uri: https://run.googleapis.com/v2/projects/my-project/locations/europe-west1/jobs/drift:run
      httpMethod: POST
      oauthToken:
        serviceAccountEmail: scheduler@my-project.iam.gserviceaccount.com
        scope: https://www.googleapis.com/auth/cloud-platform
    retryConfig: {retryCount: 3, minBackoffDuration: 30s, maxBackoffDuration: 600s, maxDoublings: 5}
    attemptDeadline: 300s
    state: ENABLED
    userUpdateTime: "2026-01-31T10:00:00Z"
    scheduleTime: "2026-02-01T02:00:00Z"
changed_fields:
  description: Top-level fields of the job that differed and were updated (V(state) for a pause or resume).
  returned: when an existing job changed
  type: list
  elements: str
  sample: [httpTarget, schedule]
"""

import base64
import re

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import LOCATION, GcpApiError, GcpModule
from ansible_collections.deployml.mlops.plugins.module_utils.iam import service_account_email
from ansible_collections.deployml.mlops.plugins.module_utils.resource import Exact, LocatedResource, ResourceError, converge

API = "cloudscheduler"
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
BODY_METHODS = ("POST", "PUT", "PATCH")
DEFAULT_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
MAX_URI = 2083
DESCRIPTION_MAX = 500
# Headers Cloud Scheduler adds by itself: not a difference unless the user asked for them.
SERVER_HEADERS = {"user-agent": "Google-Cloud-Scheduler", "content-type": "application/octet-stream"}
# Cron fields: (name, lowest, highest, names).
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
CRON_FIELDS = [("minute", 0, 59, None), ("hour", 0, 23, None), ("day of month", 1, 31, None),
               ("month", 1, 12, {n: i + 1 for i, n in enumerate(MONTHS)}),
               ("day of week", 0, 7, {n: i for i, n in enumerate(DAYS)})]
CRON_ITEM = re.compile(r"^(\*|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]+))?$")
UPDATABLE = ("description", "schedule", "timeZone", "httpTarget", "retryConfig", "attemptDeadline")


def _cron_value(text, low, high, names):
    if text.isdigit():
        value = int(text)
    elif names and text.upper() in names:
        value = names[text.upper()]
    else:
        return None
    return value if low <= value <= high else None


def cron_errors(schedule):
    """Problems of a unix-cron schedule (5 fields), as messages."""
    fields = schedule.split()
    if len(fields) != 5:
        return ["schedule %r must have 5 fields (minute hour day-of-month month day-of-week), got %d"
                % (schedule, len(fields))]
    errors = []
    for text, (name, low, high, names) in zip(fields, CRON_FIELDS):
        for item in text.split(","):
            match = CRON_ITEM.match(item)
            ok = match is not None
            if ok and match.group(2) is not None:
                start = _cron_value(match.group(2), low, high, names)
                end = _cron_value(match.group(3), low, high, names) if match.group(3) is not None else start
                ok = start is not None and end is not None and start <= end
            if ok and match.group(4) is not None:
                ok = int(match.group(4)) >= 1
            if not ok:
                errors.append("schedule %r: %r is not a valid %s (%d-%d%s)"
                              % (schedule, item, name, low, high, ", or names" if names else ""))
    return errors


def time_zone_error(name):
    try:
        import zoneinfo
    except ImportError:  # Python < 3.9: let the API judge
        return None
    try:
        known = zoneinfo.available_timezones()
    except Exception:  # pylint: disable=broad-except  # no tz database on this controller: let the API judge
        return None
    if not known or name in known or name.lower() in {zone.lower() for zone in known}:
        return None
    return "time_zone %r is not a tz database name such as Etc/UTC or Europe/Paris" % name


def seconds(value):
    return None if value is None else "%ds" % value


class Job(LocatedResource):
    kind = "Cloud Scheduler job"
    result_key = "job"
    collection = "jobs"

    def validate(self):
        p = self.params
        errors = []
        if not JOB_ID.match(p["name"]):
            errors.append("name %r must be 1 to 500 letters, digits, '-' and '_'" % p["name"])
        if not LOCATION.match(p["location"]):
            errors.append("location %r is not a region such as europe-west1" % p["location"])
        if p["state"] == "present":
            missing = [o for o in ("schedule", "uri") if not p[o]]
            if missing:
                errors.append("state present needs %s" % " and ".join(missing))
        if p["schedule"]:
            errors += cron_errors(p["schedule"])
        problem = time_zone_error(p["time_zone"])
        if problem:
            errors.append(problem)
        if p["uri"] and (not re.match(r"^https?://[^/\s]+", p["uri"]) or len(p["uri"]) > MAX_URI):
            errors.append("uri %r must start with http:// or https:// and a host, at most %d characters"
                          % (p["uri"], MAX_URI))
        if p["body"] is not None and p["http_method"] not in BODY_METHODS:
            errors.append("body goes with http_method POST, PUT or PATCH only, not %s" % p["http_method"])
        if p["description"] is not None and len(p["description"]) > DESCRIPTION_MAX:
            errors.append("description holds at most %d characters, got %d" % (DESCRIPTION_MAX, len(p["description"])))
        for key, value in (p["headers"] or {}).items():
            if not isinstance(value, str):
                errors.append("header %r must have a string value (quote numbers and booleans)" % key)
        if p["oauth_scope"] != DEFAULT_SCOPE and not p["oauth_service_account"]:
            errors.append("oauth_scope goes with oauth_service_account only")
        if p["oidc_audience"] is not None and not p["oidc_service_account"]:
            errors.append("oidc_audience goes with oidc_service_account only")
        errors += self._duration_errors()
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))

    def _duration_errors(self):
        p = self.params
        errors = []
        for option, low, high in (("attempt_deadline", 15, 1800), ("retry_count", 0, 5), ("max_doublings", 0, 16),
                                  ("max_retry_duration", 0, None), ("min_backoff", 0, None), ("max_backoff", 0, None)):
            value = p[option]
            if value is not None and (value < low or (high is not None and value > high)):
                span = "from %d to %d" % (low, high) if high is not None else "at least %d" % low
                errors.append("%s must be %s, got %d" % (option, span, value))
        if p["min_backoff"] is not None and p["max_backoff"] is not None and p["min_backoff"] > p["max_backoff"]:
            errors.append("min_backoff (%d) must not be more than max_backoff (%d)" % (p["min_backoff"], p["max_backoff"]))
        return errors

    def http_target(self):
        p = self.params
        target = Exact(uri=p["uri"], httpMethod=p["http_method"])
        if p["headers"]:
            target["headers"] = Exact(p["headers"])
        if p["body"] is not None:
            target["body"] = base64.b64encode(p["body"].encode("utf-8")).decode("ascii")
        if p["oauth_service_account"]:
            target["oauthToken"] = dict(serviceAccountEmail=service_account_email(p["oauth_service_account"], p["project"]),
                                        scope=p["oauth_scope"])
        elif p["oidc_service_account"]:
            target["oidcToken"] = dict(serviceAccountEmail=service_account_email(p["oidc_service_account"], p["project"]),
                                       audience=p["oidc_audience"])
        return target

    def desired(self):
        p = self.params
        retry = dict(retryCount=p["retry_count"], maxRetryDuration=seconds(p["max_retry_duration"]),
                     minBackoffDuration=seconds(p["min_backoff"]), maxBackoffDuration=seconds(p["max_backoff"]),
                     maxDoublings=p["max_doublings"])
        return dict(
            name=self.name,
            description=p["description"],
            schedule=" ".join(p["schedule"].split()),
            timeZone=p["time_zone"],
            httpTarget=self.http_target(),
            retryConfig=retry if any(v is not None for v in retry.values()) else None,
            attemptDeadline=seconds(p["attempt_deadline"]),
            state=None if p["paused"] is None else ("PAUSED" if p["paused"] else "ENABLED"),
        )

    def normalize(self, actual):
        """Spell out what the API leaves out, and drop the headers Cloud Scheduler adds by itself."""
        actual = dict(actual)
        actual.setdefault("description", "")
        target = dict(actual.get("httpTarget") or {})
        asked = {k.lower() for k in self.params["headers"] or {}}
        headers = {k: v for k, v in (target.get("headers") or {}).items()
                   if k.lower() in asked or SERVER_HEADERS.get(k.lower()) != v}
        target.pop("headers", None)
        if headers:
            target["headers"] = headers
        target.setdefault("httpMethod", "POST")
        actual["httpTarget"] = target
        if "retryConfig" in actual:  # zero values are left out, as proto3 JSON does
            actual["retryConfig"] = dict(dict(retryCount=0, maxDoublings=0, maxRetryDuration="0s"),
                                         **actual["retryConfig"])
        return actual

    def read(self):
        return self.client.get(API, self.path, resource=self.name)

    def _set_paused(self, paused):
        return self.client.request("POST", API, "%s:%s" % (self.path, "pause" if paused else "resume"),
                                   resource=self.name, body={})

    def create(self, desired):
        body = {k: v for k, v in desired.items() if k != "state"}
        try:
            job = self.client.request("POST", API, "/v1/%s/jobs" % self.parent, resource=self.name, body=body)
        except GcpApiError as exc:
            # A create retried after a lost answer may have gone through the first time: 409, and it is there.
            job = self.read() if exc.status == 409 else None
            if job is None:
                raise
        if desired.get("state") == "PAUSED" and job.get("state") != "PAUSED":
            job = self._set_paused(True)
        return job

    def update(self, actual, desired, changed_fields):
        job = actual
        patched = [f for f in UPDATABLE if f in changed_fields]
        if patched:
            body = {f: desired[f] for f in patched}
            if "retryConfig" in body:  # the whole message is replaced: keep the settings the user did not set
                body["retryConfig"] = dict(actual.get("retryConfig") or {}, **desired["retryConfig"])
            job = self.client.request("PATCH", API, self.path, resource=self.name, body=body,
                                      params={"updateMask": ",".join(patched)})
        if "state" in changed_fields:
            job = self._set_paused(desired["state"] == "PAUSED")
        return job

    def delete(self, actual):
        self.client.request("DELETE", API, self.path, resource=self.name, not_found_ok=True)


def main():
    module = GcpModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            location=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            schedule=dict(type="str"),
            time_zone=dict(type="str", default="Etc/UTC"),
            description=dict(type="str"),
            uri=dict(type="str"),
            http_method=dict(type="str", choices=["POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"],
                             default="POST"),
            body=dict(type="str"),
            headers=dict(type="dict"),
            oauth_service_account=dict(type="str"),
            oauth_scope=dict(type="str", default=DEFAULT_SCOPE),
            oidc_service_account=dict(type="str"),
            oidc_audience=dict(type="str"),
            attempt_deadline=dict(type="int"),
            retry_count=dict(type="int"),
            max_retry_duration=dict(type="int"),
            min_backoff=dict(type="int"),
            max_backoff=dict(type="int"),
            max_doublings=dict(type="int"),
            paused=dict(type="bool"),
        ),
        mutually_exclusive=[("oauth_service_account", "oidc_service_account")],
    )
    converge(Job(module))


if __name__ == "__main__":
    main()
