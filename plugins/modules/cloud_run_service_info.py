#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloud_run_service_info
short_description: Read Cloud Run services
version_added: 0.1.0
description:
  - Reads Cloud Run services of one region through the Cloud Run Admin API v2 (C(services.get), or
    C(services.list) when O(names) is not set) and returns their URL, serving revision and readiness.
  - Reads only, so it runs the same in check mode; a service that does not exist is listed in RV(missing)
    rather than failing, so a plan against a new project still has an answer.
options:
  location:
    description: Region of the services, such as V(europe-west1).
    type: str
    required: true
    aliases: [region]
  names:
    description: Names of the services to read. When not set, every service of the region is returned.
    type: list
    elements: str
extends_documentation_fragment:
  - deployml.mlops.gcp
attributes:
  check_mode:
    description: Reads only; runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
  idempotent:
    description: Reports C(changed=false) and sends no write request, every time.
    support: full
  action_group:
    description: Use C(group/deployml.mlops.gcp) in C(module_defaults) to set the common options once.
    support: full
    membership:
      - deployml.mlops.gcp
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Where do MLflow and the serving API answer?
  deployml.mlops.cloud_run_service_info:
    project: my-project
    location: europe-west1
    names: [mlflow, serving]
  register: services

- name: Show MLflow's URL
  ansible.builtin.debug:
    msg: "{{ (services.services | selectattr('name', 'equalto', 'mlflow') | first).url }}"
"""

RETURN = r"""
services:
  description: The services found, in the order of O(names) (by name when listing).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The service's short name.
      type: str
      sample: mlflow
    url:
      description: The URL the service serves on.
      type: str
      sample: https://mlflow-abcdefghij-ew.a.run.app
    revision:
      description: The revision serving the traffic (the latest ready one), V(null) before any is ready.
      type: str
      sample: mlflow-00002-xyz
    ready:
      description: Whether the service's latest revision is ready (its terminal condition succeeded).
      type: bool
    ingress:
      description: Who may reach it on the network, as Cloud Run names it.
      type: str
      sample: INGRESS_TRAFFIC_ALL
    service:
      description: The service as the API returns it.
      type: dict
missing:
  description: Names in O(names) that have no service in the region.
  returned: always
  type: list
  elements: str
  sample: [grafana]
"""

from ansible_collections.deployml.mlops.plugins.module_utils.cloudrun import (
    API, SUCCEEDED, condition_state, short_name)
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule


def summary(service):
    return {
        "name": short_name(service.get("name")),
        "url": service.get("uri"),
        "revision": short_name(service.get("latestReadyRevision")),
        "ready": condition_state(service) == SUCCEEDED,
        "ingress": service.get("ingress"),
        "service": service,
    }


def listed(client, parent):
    """Every service of the region, following pageToken."""
    services, token = [], None
    while True:
        page = client.get(API, "/v2/%s/services" % parent, resource=parent,
                          params={"pageToken": token} if token else None) or {}
        services.extend(page.get("services") or [])
        token = page.get("nextPageToken")
        if not token:
            return sorted(services, key=lambda s: s.get("name", ""))


def main():
    module = GcpModule(argument_spec=dict(
        location=dict(type="str", required=True, aliases=["region"]),
        names=dict(type="list", elements="str"),
    ))
    parent = "projects/%s/locations/%s" % (module.params["project"], module.params["location"])
    found, missing = [], []
    try:
        if module.params["names"] is None:
            found = listed(module.client, parent)
        for name in module.params["names"] or []:
            resource = "%s/services/%s" % (parent, name)
            service = module.client.get(API, "/v2/" + resource, resource=resource)
            if service is None:
                missing.append(name)
            else:
                found.append(service)
    except GcpApiError as exc:
        module.fail_api(exc)
    module.exit_json(changed=False, services=[summary(s) for s in found], missing=missing)


if __name__ == "__main__":
    main()
