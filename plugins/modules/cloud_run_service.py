#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloud_run_service
short_description: Manage a Cloud Run service
version_added: 0.1.0
description:
  - Create, update or delete a Cloud Run service through the Cloud Run Admin API v2, and wait until its
    latest revision is ready to serve.
  - Only the options you set are compared with the service. Defaults that Cloud Run fills in (memory limit,
    port name, default service account, scaling limits and so on) and fields you did not set never cause a
    change, and a run with nothing to change makes a single read request.
  - An update sends the service as read, with the fields you set changed, together with the etag read, so a
    concurrent change makes the update fail instead of being overwritten. A change of the container or of
    another revision setting creates a new revision; a change of O(labels), O(description) or O(ingress)
    does not.
  - All traffic goes to the latest ready revision.
  - When the new revision does not become ready, the module fails with the reason and message Cloud Run
    gives and names the revision; traffic stays on the previous ready revision. Running the module again
    deploys a new revision (also when nothing else changed), for example once the missing image is pushed.
  - The module manages the first container of the service. Other containers (sidecars) are kept as they are.
  - Public access is not granted here. Grant C(roles/run.invoker) to C(allUsers) explicitly with
    M(deployml.mlops.iam_member) when a service must be public.
options:
  name:
    description:
      - Name of the service, unique per project and region. Lowercase letters, digits and hyphens, starting
        with a letter, not ending with a hyphen, at most 49 characters.
    type: str
    required: true
  port:
    description:
      - The port the container listens on (Cloud Run sends requests there and sets E(PORT)). Cloud Run uses
        V(8080) when not set.
    type: int
  cpu_idle:
    description:
      - V(true) allocates CPU only while a request is being served (billed per request); V(false) keeps it
        allocated for the lifetime of an instance (needed for work after the response).
      - When not set, a new service gets V(true) and an existing service keeps its setting.
    type: bool
  startup_cpu_boost:
    description:
      - Give instances more CPU while they start, to shorten cold starts.
    type: bool
  min_instances:
    description:
      - Instances kept warm even without traffic (billed while idle). V(0) lets the service scale to zero.
    type: int
  max_instances:
    description:
      - Most instances the revision scales out to. Cloud Run uses V(100) when not set.
    type: int
  concurrency:
    description:
      - Most requests an instance serves at the same time, from 1 to 1000. Cloud Run uses V(80) when not set.
    type: int
  request_timeout:
    description:
      - Seconds a request may take before Cloud Run answers 504, from 1 to 3600. Cloud Run uses V(300) when
        not set.
    type: int
  ingress:
    description:
      - Where requests may come from. V(all) is the internet, V(internal) the VPC networks of the project and
        its Shared VPC, V(internal-and-cloud-load-balancing) those and external Application Load Balancers.
      - Who may invoke the service is decided by IAM (C(roles/run.invoker)), not by this option.
    type: str
    choices: [all, internal, internal-and-cloud-load-balancing]
  startup_probe:
    description:
      - How Cloud Run checks that a new instance has started. Exactly one of O(startup_probe.http_get) or
        O(startup_probe.tcp_socket).
      - When set, the probe is replaced as a whole; fields not set get Cloud Run's defaults.
    type: dict
    suboptions: &probe
      http_get:
        description: An HTTP GET on the container that must answer with a 2xx or 3xx status.
        type: dict
        suboptions:
          path:
            description: Path of the request.
            type: str
            default: /
          port:
            description: Port of the request. The container port when not set.
            type: int
      tcp_socket:
        description: A TCP connection to the container (startup probes only).
        type: dict
        suboptions:
          port:
            description: Port to connect to. The container port when not set.
            type: int
      initial_delay_seconds:
        description: Seconds to wait before the first probe (at most 240 for a startup probe, 3600 for a liveness probe).
        type: int
      timeout_seconds:
        description: Seconds a probe may take, from 1 to 3600 and at most the period.
        type: int
      period_seconds:
        description: Seconds between probes (at most 240 for a startup probe, 3600 for a liveness probe).
        type: int
      failure_threshold:
        description: Failed probes in a row after which the instance is considered failed.
        type: int
  liveness_probe:
    description:
      - How Cloud Run checks that a running instance is healthy; a failing instance is restarted. Exactly
        O(liveness_probe.http_get) (Cloud Run liveness probes do not take TCP).
      - When set, the probe is replaced as a whole; fields not set get Cloud Run's defaults.
    type: dict
    suboptions: *probe
  description:
    description: Description of the service, at most 512 characters.
    type: str
notes:
  - Creating a service or a revision usually takes from 10 seconds to a few minutes. When O(timeout) runs out,
    the deployment goes on in Cloud Run; running the module again waits for it and then converges.
  - A revision that fails because its service account cannot read a secret it uses (Permission denied on
    secret) is deployed again with backoff within O(timeout), as a role granted moments before can take a few
    minutes to take effect; any other failed revision fails the task at once.
extends_documentation_fragment:
  - deployml.mlops.cloud_run
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: MLflow tracking server, reading its database password from Secret Manager
  deployml.mlops.cloud_run_service:
    project: my-project
    name: mlflow
    location: europe-west1
    image: europe-west1-docker.pkg.dev/my-project/mlops/mlflow@sha256:4b1f...
    args: [serve]
    port: 5000
    cpu: "1"
    memory: 2Gi
    max_instances: 3
    service_account: mlflow
    env:
      MLFLOW_ARTIFACTS_DESTINATION: gs://my-project-mlflow-artifacts
    secret_env:
      DB_PASSWORD: {secret: mlflow-db-password}
    cloudsql_instances: [my-project:europe-west1:mlops-pg]
    startup_probe:
      http_get: {path: /health}
      period_seconds: 5
      failure_threshold: 24
    liveness_probe:
      http_get: {path: /health}
    labels:
      app: mlflow
  register: mlflow

- name: Show where it serves
  ansible.builtin.debug:
    msg: "{{ mlflow.url }} serves revision {{ mlflow.revision }}"

- name: Serving API, reachable only from the VPC and internal load balancers
  deployml.mlops.cloud_run_service:
    project: my-project
    name: serving
    region: europe-west1
    image: europe-west1-docker.pkg.dev/my-project/mlops/serving:ctx-0123456789abcdef0123
    ingress: internal-and-cloud-load-balancing
    min_instances: 1
    concurrency: 40
    request_timeout: 30
    execution_environment: gen2
    volumes:
      - name: models
        mount_path: /models
        gcs: {bucket: my-project-models, read_only: true}
      - name: scratch
        mount_path: /scratch
        in_memory: {size_limit: 256Mi}

- name: Delete a service
  deployml.mlops.cloud_run_service:
    project: my-project
    name: old-api
    location: europe-west1
    state: absent
"""

RETURN = r"""
service:
  description:
    - The service as the API returns it after the change (the desired body in check mode when it does not
      exist yet), empty when absent.
  returned: always
  type: dict
  sample:
    name: projects/my-project/locations/europe-west1/services/mlflow
    uri: https://mlflow-abcdefghij-ew.a.run.app
    generation: "2"
    latestReadyRevision: projects/my-project/locations/europe-west1/services/mlflow/revisions/mlflow-00002-xyz
    terminalCondition: {type: Ready, state: CONDITION_SUCCEEDED}
    template:
      containers: [{image: "europe-west1-docker.pkg.dev/my-project/mlops/mlflow@sha256:4b1f...",
                    resources: {limits: {cpu: "1", memory: 2Gi}}}]
url:
  description: The URL the service serves on. V(null) in check mode for a service that does not exist yet.
  returned: when O(state=present)
  type: str
  sample: https://mlflow-abcdefghij-ew.a.run.app
revision:
  description: Name of the revision that serves the traffic (the latest ready one).
  returned: when O(state=present)
  type: str
  sample: mlflow-00002-xyz
changed_fields:
  description:
    - Fields of the service that differed and were updated, as paths such as V(template.containers) or
      V(labels).
    - V(terminalCondition) when the latest revision had failed and a new one is deployed.
  returned: when an existing service changed
  type: list
  elements: str
  sample: [labels, template.containers]
"""

import copy

from ansible_collections.deployml.mlops.plugins.module_utils.cloudrun import (
    FAILED, SUCCEEDED, CloudRunResource, argument_spec, build_service, condition_state, short_name)
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpModule
from ansible_collections.deployml.mlops.plugins.module_utils.resource import converge


class Service(CloudRunResource):
    kind = "Cloud Run service"
    result_key = "service"

    def build(self):
        return build_service(self.params)

    def changes(self, actual, desired):
        fields = super().changes(actual, desired)
        # A latest revision that failed: deploy a new one (forceNewRevision), even when nothing else changed.
        self.failed = condition_state(actual) == FAILED
        if self.failed:
            desired["terminalCondition"] = {"state": SUCCEEDED}
            fields = sorted(set(fields) | {"terminalCondition"})
        return fields

    def create_body(self, desired):
        body = copy.deepcopy(desired)
        resources = body["template"]["containers"][0].get("resources")
        if resources is not None and "cpuIdle" not in resources:
            # With resources set, Cloud Run keeps CPU allocated unless cpuIdle is true: keep its default.
            resources["cpuIdle"] = True
        return body

    def report(self, result):
        if self.params["state"] == "absent":
            return
        service = result.get(self.result_key) or {}
        if result["changed"] and not self.module.check_mode:
            self.check_ready(service)
        result["url"] = service.get("uri")
        result["revision"] = short_name(service.get("latestReadyRevision"))


def main():
    module = GcpModule(argument_spec=argument_spec(job=False))
    converge(Service(module))


if __name__ == "__main__":
    main()
