#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: project_service
short_description: Enable or disable Google Cloud APIs on a project
version_added: 0.1.0
description:
  - Enables (or disables) services such as V(run.googleapis.com) on a project through the Service Usage API v1.
  - The state of the services is read first (C(services:batchGet)); only those not yet in the requested state
    are changed. Services are enabled in batches of at most 20 (C(services:batchEnable)), and the module waits
    for each long-running operation to finish.
  - Enabling a service also enables the services it depends on; Service Usage does that by itself.
  - An API that was just enabled keeps answering C(403 SERVICE_DISABLED) for a few minutes, until the change has
    reached every Google system. After enabling, the module therefore waits (polling with backoff within
    O(timeout)) until each API it enabled answers a cheap read, such as listing one secret, without that error;
    any other answer, even a permission denied, shows the API is on. This is done for the APIs the collection
    calls (Cloud Run, Cloud SQL Admin, Secret Manager, IAM, Resource Manager, Artifact Registry, Cloud Build,
    Cloud Scheduler, BigQuery, Cloud Storage); other services are not waited for. A run that changes nothing
    makes no such read.
  - A run that times out leaves the operation running in Google Cloud; running the task again converges.
options:
  services:
    description:
      - The services, by their DNS name such as V(run.googleapis.com) or V(sqladmin.googleapis.com).
      - Duplicates are ignored.
    type: list
    elements: str
    required: true
  state:
    description:
      - V(present) enables the services, V(absent) disables them.
    type: str
    choices: [present, absent]
    default: present
  disable_dependent_services:
    description:
      - With O(state=absent), also disable the enabled services that depend on a service being disabled.
      - V(false) makes disabling fail when an enabled service depends on it, which disables nothing by surprise.
      - Required with O(state=absent), so that the choice is explicit.
    type: bool
  check_if_service_has_usage:
    description:
      - With O(state=absent), V(true) refuses to disable a service (or a dependent service) that was used in the
        last 30 days. V(false) skips that check. When not set, the API default applies (no check).
    type: bool
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Enable the APIs of the pipeline
  deployml.mlops.project_service:
    project: my-project
    services:
      - run.googleapis.com
      - sqladmin.googleapis.com
      - secretmanager.googleapis.com
      - artifactregistry.googleapis.com

- name: Disable an API no service depends on
  deployml.mlops.project_service:
    project: my-project
    services: [cloudscheduler.googleapis.com]
    state: absent
    disable_dependent_services: false
    check_if_service_has_usage: true
"""

RETURN = r"""
services:
  description: The state of each requested service after the run (as it would be, in check mode).
  returned: success
  type: dict
  sample: {run.googleapis.com: ENABLED, sqladmin.googleapis.com: ENABLED}
enabled:
  description: The services this run enabled (would enable, in check mode).
  returned: always
  type: list
  elements: str
  sample: [run.googleapis.com]
disabled:
  description: The services this run disabled (would disable, in check mode).
  returned: always
  type: list
  elements: str
  sample: []
"""

import re

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule, wait_operation

API = "serviceusage"
PROJECT_ID = re.compile(r"^([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]+$")
SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
BATCH_ENABLE = 20  # services:batchEnable takes at most 20 services
BATCH_GET = 30     # services:batchGet reads at most 30
PROBE_REGION = "us-central1"  # any region: a regional list proves the API answers, whatever it lists
# Service -> (API key in gcp.APIS, path of a cheap read in project %(p)s, query): one call that is refused with
# SERVICE_DISABLED while the service is not usable, and answers otherwise (even 403/404 show it is on).
PROBES = {
    "run.googleapis.com": ("run", "/v2/projects/%(p)s/locations/%(r)s/services", {"pageSize": 1}),
    "sqladmin.googleapis.com": ("sqladmin", "/sql/v1beta4/projects/%(p)s/instances", {"maxResults": 1}),
    "secretmanager.googleapis.com": ("secretmanager", "/v1/projects/%(p)s/secrets", {"pageSize": 1}),
    "iam.googleapis.com": ("iam", "/v1/projects/%(p)s/serviceAccounts", {"pageSize": 1}),
    "cloudresourcemanager.googleapis.com": ("cloudresourcemanager", "/v3/projects/%(p)s", None),
    "artifactregistry.googleapis.com": ("artifactregistry", "/v1/projects/%(p)s/locations/%(r)s/repositories",
                                        {"pageSize": 1}),
    "cloudbuild.googleapis.com": ("cloudbuild", "/v1/projects/%(p)s/builds", {"pageSize": 1}),
    "cloudscheduler.googleapis.com": ("cloudscheduler", "/v1/projects/%(p)s/locations/%(r)s/jobs", {"pageSize": 1}),
    "bigquery.googleapis.com": ("bigquery", "/bigquery/v2/projects/%(p)s/datasets", {"maxResults": 1}),
    "storage.googleapis.com": ("storage", "/storage/v1/b", {"project": "%(p)s", "maxResults": 1}),
}


def _chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


class ProjectServices:
    def __init__(self, module):
        self.module = module
        self.client = module.client
        self.parent = "projects/%s" % module.params["project"]

    def label(self, services):
        return "%s/services (%s)" % (self.parent, ", ".join(services))

    def read(self, services):
        """{service: ENABLED | DISABLED} for the services asked about."""
        states = {}
        for chunk in _chunks(services, BATCH_GET):
            names = ["%s/services/%s" % (self.parent, s) for s in chunk]
            answer = self.client.request("GET", API, "/v1/%s/services:batchGet" % self.parent,
                                         resource=self.label(chunk), params={"names": names})
            for service in answer.get("services") or []:
                # The answer names the project by its number: match on the service part only.
                states[service["name"].rsplit("/services/", 1)[-1]] = service.get("state")
        return {s: states.get(s) or "DISABLED" for s in services}

    def enable(self, services, done):
        for chunk in _chunks(services, BATCH_ENABLE):
            operation = self.client.request("POST", API, "/v1/%s/services:batchEnable" % self.parent,
                                            resource=self.label(chunk), body={"serviceIds": chunk})
            wait_operation(self.client, API, operation, resource=self.label(chunk))
            done.extend(chunk)
        for service in services:
            self.wait_usable(service)

    def wait_usable(self, service):
        """Return once an enabled service answers a cheap read without SERVICE_DISABLED.

        The request path (gcp.py) retries a SERVICE_DISABLED with backoff within timeout while Service Usage
        says the service is ENABLED, so one request is the whole wait; any other failure is an answer of the
        API, which proves it is on."""
        if service not in PROBES:
            return
        api, path, query = PROBES[service]
        where = {"p": self.module.params["project"], "r": PROBE_REGION}
        query = {k: v % where if isinstance(v, str) else v for k, v in (query or {}).items()}
        try:
            self.client.request("GET", api, path % where, params=query or None,
                                resource="%s (waiting until it answers after being enabled)" % service)
        except GcpApiError as exc:
            if exc.error_info.get("reason") == "SERVICE_DISABLED":
                raise

    def disable(self, services, done):
        p = self.module.params
        body = {"disableDependentServices": p["disable_dependent_services"]}
        if p["check_if_service_has_usage"] is not None:
            body["checkIfServiceHasUsage"] = "CHECK" if p["check_if_service_has_usage"] else "SKIP"
        for service in services:
            name = "%s/services/%s" % (self.parent, service)
            operation = self.client.request("POST", API, "/v1/%s:disable" % name, resource=name, body=body)
            wait_operation(self.client, API, operation, resource=name)
            done.append(service)


def main():
    module = GcpModule(
        argument_spec=dict(
            services=dict(type="list", elements="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            disable_dependent_services=dict(type="bool"),
            check_if_service_has_usage=dict(type="bool"),
        ),
        required_if=[("state", "absent", ("disable_dependent_services",))],
    )
    p = module.params
    services = list(dict.fromkeys(p["services"]))
    errors = []
    if not PROJECT_ID.match(p["project"]):
        errors.append("project %r is not a project ID (6 to 30 lowercase letters, digits and '-') or number"
                      % p["project"])
    bad = [s for s in services if not SERVICE_NAME.match(s)]
    if bad:
        errors.append("invalid service name(s) %s: use the service's DNS name, such as run.googleapis.com"
                      % ", ".join(repr(s) for s in bad))
    if errors:
        module.fail_json(msg="; ".join(errors))
    if p["state"] == "present" and (p["disable_dependent_services"] is not None
                                    or p["check_if_service_has_usage"] is not None):
        module.warn("disable_dependent_services and check_if_service_has_usage apply to state=absent only")

    api = ProjectServices(module)
    result = dict(changed=False, enabled=[], disabled=[])
    try:
        before = api.read(services) if services else {}
        wanted = "ENABLED" if p["state"] == "present" else "DISABLED"
        todo = [s for s in services if before[s] != wanted]
        after = dict(before, **{s: wanted for s in todo})
        if todo:
            if module._diff:
                result["diff"] = dict(before={s: before[s] for s in todo}, after={s: after[s] for s in todo},
                                      before_header="%s/services" % api.parent, after_header="%s/services" % api.parent)
            if module.check_mode:
                result["enabled" if wanted == "ENABLED" else "disabled"] = todo
            elif wanted == "ENABLED":
                api.enable(todo, result["enabled"])
            else:
                api.disable(todo, result["disabled"])
            result["changed"] = True
        result["services"] = after
    except GcpApiError as exc:
        # A batch that finished before the failure did change the project.
        result["changed"] = bool(result["enabled"] or result["disabled"])
        module.fail_api(exc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
