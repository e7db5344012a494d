#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloud_run_job
short_description: Manage a Cloud Run job and run it
version_added: 0.1.0
description:
  - Create, update or delete a Cloud Run job through the Cloud Run Admin API v2, and with O(execute) run it
    and wait for the execution to finish, for example to migrate a database schema before a service rolls
    out, or to run a batch computation.
  - Only the options you set are compared with the job. Defaults that Cloud Run fills in and fields you did
    not set never cause a change.
  - An update sends the job as read, with the fields you set changed, together with the etag read, so a
    concurrent change makes the update fail instead of being overwritten.
  - When the job is run (O(execute)), a failed execution fails the task with the execution's error message
    and its logs URL. An execution that fails because the job's service account cannot read a secret yet
    (a role granted moments before) is run again with backoff within O(timeout).
options:
  name:
    description:
      - Name of the job, unique per project and region. Lowercase letters, digits and hyphens, starting with
        a letter, not ending with a hyphen, at most 63 characters.
    type: str
    required: true
  tasks:
    description:
      - Number of tasks an execution runs (each gets E(CLOUD_RUN_TASK_INDEX)), from 1 to 10000. Cloud Run
        uses V(1) when not set.
    type: int
  parallelism:
    description:
      - Most tasks running at the same time, at most O(tasks). V(0) lets Cloud Run run as many as it can.
    type: int
  max_retries:
    description:
      - Retries of a failed task before the task counts as failed, from 0 to 10. Cloud Run uses V(3) when not set.
    type: int
  task_timeout:
    description:
      - Seconds a task attempt may run before it is stopped and counts as failed, up to 168 hours. Cloud Run
        uses V(600) when not set.
    type: int
  execute:
    description:
      - Whether to run the job once it is converged. A run waits for the execution to finish and fails the task
        with the execution's error when it fails. In check mode the job is never run.
      - V(never) only defines the job (a schedule or a person runs it).
      - V(always) runs it every time; the task then always reports a change.
      - V(on_change) runs it when this task created or changed the job, or when the job's latest execution
        since its last change did not succeed (it failed, was cancelled, or there is none). So a job that must
        run once per version, such as a database migration, runs again after a failure, and not after a success.
      - The wait is bounded by O(timeout); when it runs out the execution goes on in Cloud Run, and running
        the task again starts another execution.
    type: str
    choices: [never, always, on_change]
    default: never
extends_documentation_fragment:
  - deployml.mlops.cloud_run
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Migrate the MLflow database schema before the server rolls out
  deployml.mlops.cloud_run_job:
    project: my-project
    name: mlflow-migrate
    location: europe-west1
    image: europe-west1-docker.pkg.dev/my-project/mlops/mlflow@sha256:4b1f...
    args: [migrate]
    service_account: mlflow
    secret_env:
      DB_PASSWORD: {secret: mlflow-db-password}
    cloudsql_instances: [my-project:europe-west1:mlops-pg]
    max_retries: 0
    task_timeout: 900
    execute: on_change
    timeout: 1200
  register: migration

- name: Show where its logs are
  ansible.builtin.debug:
    msg: "{{ migration.execution.log_uri }}"

- name: Drift job, run on a schedule by Cloud Scheduler
  deployml.mlops.cloud_run_job:
    project: my-project
    name: drift
    region: europe-west1
    image: europe-west1-docker.pkg.dev/my-project/mlops/drift:ctx-0123456789abcdef0123
    cpu: "1"
    memory: 1Gi
    tasks: 1
    env:
      MLOPS_DATASET: mlops
    labels:
      app: drift

- name: Delete a job
  deployml.mlops.cloud_run_job:
    project: my-project
    name: old-job
    location: europe-west1
    state: absent
"""

RETURN = r"""
job:
  description:
    - The job as the API returns it after the change (the desired body in check mode when it does not exist
      yet), empty when absent.
  returned: always
  type: dict
  sample:
    name: projects/my-project/locations/europe-west1/jobs/mlflow-migrate
    generation: "1"
    terminalCondition: {type: Ready, state: CONDITION_SUCCEEDED}
    template:
      taskCount: 1
      template:
        maxRetries: 0
        timeout: 900s
        containers: [{image: "europe-west1-docker.pkg.dev/my-project/mlops/mlflow@sha256:4b1f...", args: [migrate]}]
execution:
  description: The execution run by O(execute), also when it failed.
  returned: when the job was run, not in check mode
  type: dict
  contains:
    name:
      description: Full name of the execution.
      type: str
      sample: projects/my-project/locations/europe-west1/jobs/mlflow-migrate/executions/mlflow-migrate-x7k2p
    succeeded_count:
      description: Tasks that succeeded.
      type: int
      sample: 1
    failed_count:
      description: Tasks that failed.
      type: int
      sample: 0
    log_uri:
      description: Where the logs of the execution are in the Cloud Console.
      type: str
    completion_time:
      description: When the execution finished.
      type: str
      sample: "2026-01-31T10:02:00Z"
changed_fields:
  description: Fields of the job that differed and were updated, as paths such as V(template.template.containers).
  returned: when an existing job changed
  type: list
  elements: str
  sample: [labels, template.template.containers]
"""

from ansible_collections.deployml.mlops.plugins.module_utils.cloudrun import (
    API, CloudRunResource, argument_spec, build_job, execution_error, execution_summary, retry_delays, secret_denied,
    still_denied, succeeded_since_update, untyped)
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule, wait_operation
from ansible_collections.deployml.mlops.plugins.module_utils.resource import ResourceError, converge


class Job(CloudRunResource):
    kind = "Cloud Run job"
    result_key = "job"
    job = True
    collection = "jobs"
    id_param = "jobId"

    def __init__(self, module):
        super().__init__(module)
        self.execution = None

    def build(self):
        return build_job(self.params)

    def execute(self):
        """Run the job and wait for the execution; the execution, or a failure with its error message.

        An execution that fails only because the job's account cannot read a secret yet (a grant still
        propagating) is run again, with backoff within timeout."""
        delays = retry_delays(self.deadline)
        while True:
            try:
                return self._execute_once()
            except ResourceError as exc:
                if not secret_denied(str(exc)):
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise still_denied(exc, self.params["timeout"]) from None
                self.client._sleep(delay)  # pylint: disable=protected-access  # the client's (test-injectable) sleep

    def _execute_once(self):
        operation = self.client.request("POST", API, self.path + ":run", resource=self.name, body={})
        self.execution = operation.get("metadata") or None
        name = (self.execution or {}).get("name")
        try:
            execution = wait_operation(self.client, API, operation, resource=name or self.name, version="v2")
        except GcpApiError as exc:
            if name:
                self.execution = self.client.get(API, "/v2/" + name, resource=name) or self.execution
            if exc.reason == "TIMEOUT":
                raise ResourceError(
                    "Cloud Run job %s: execution %s still runs after %ss; it goes on in Cloud Run (logs: %s). Running "
                    "the task again starts another execution; raise timeout to wait for it to finish"
                    % (self.name, name, self.params["timeout"], (self.execution or {}).get("logUri"))) from None
            raise ResourceError("Cloud Run job %s: execution %s failed: %s%s" % (
                self.name, name, execution_error(self.execution) or exc.message, self._logs())) from None
        if not execution.get("name") and name:
            execution = self.client.get(API, "/v2/" + name, resource=name) or execution
        execution = self.execution = untyped(execution)
        error = execution_error(execution)
        if error:
            raise ResourceError("Cloud Run job %s: execution %s failed: %s%s"
                                % (self.name, execution.get("name"), error, self._logs()))
        return execution

    def _logs(self):
        uri = (self.execution or {}).get("logUri")
        return " (logs: %s)" % uri if uri else ""

    def report(self, result):
        if self.params["state"] == "absent":
            return
        if result["changed"] and not self.module.check_mode:
            self.check_ready(result.get(self.result_key) or {})
        mode = self.params["execute"]
        if mode == "never":
            return
        if mode == "on_change" and not result["changed"] and succeeded_since_update(result.get(self.result_key) or {}):
            return
        result["changed"] = True
        if self.module.check_mode:
            return
        try:
            self.execute()
        finally:
            if self.execution is not None:
                result["execution"] = execution_summary(self.execution)


def main():
    module = GcpModule(argument_spec=argument_spec(job=True))
    converge(Job(module))


if __name__ == "__main__":
    main()
