#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: iam_member
short_description: Grant or revoke one IAM role to one member on a GCP resource
version_added: 0.1.0
description:
  - Adds one member to, or removes it from, the binding of one role (with an optional condition) in the IAM
    policy of a resource. Every other binding, and every other member of the same binding, is left as it is.
  - The policy is read at version 3 and written back with the etag that was read. When someone else changes
    the policy in between, the API refuses the write and the change is applied again to a fresh read (up to
    5 times), so a concurrent change is never overwritten.
  - IAM refuses a service account created a moment ago as a member ("Service account X does not exist.") for a
    minute or two. That refusal is retried, from a fresh read each time, with backoff within O(timeout); an
    account that IAM does not find at all fails at once, naming it.
  - Removing the last member of a binding removes the binding.
  - Granting a role to V(allUsers) or V(allAuthenticatedUsers) makes the resource public; it is refused unless
    O(allow_public=true).
  - Granting a basic (primitive) role, V(roles/owner), V(roles/editor) or V(roles/viewer), is made with a warning,
    since they hold permissions on every service where a predefined or custom role grants only what is used.
  - In check mode, a resource that does not exist yet (one an earlier task would create) is reported as a
    grant to make, with a warning; outside check mode it is an error.
options:
  resource_type:
    description:
      - The kind of resource whose IAM policy is changed.
      - V(project) uses the Resource Manager API v3, V(bucket) the Cloud Storage JSON API, V(secret) the Secret
        Manager API v1 and V(service_account) the IAM API v1 (who may act as the service account).
      - V(cloud_run_service) and V(cloud_run_job) use the Cloud Run Admin API v2, for example
        V(roles/run.invoker) on a service lets a principal call it, and on a job lets it run the job (such as
        the service account Cloud Scheduler uses).
      - V(bigquery_table) uses the BigQuery API v2 (a table-level grant, such as V(roles/bigquery.dataViewer) on
        one table rather than on the whole dataset).
      - V(artifact_registry_repository) uses the Artifact Registry API v1 (such as
        V(roles/artifactregistry.writer) for the account image builds run as, on one repository).
    type: str
    required: true
    choices: [project, bucket, secret, service_account, cloud_run_service, cloud_run_job, bigquery_table,
              artifact_registry_repository]
  resource:
    description:
      - The resource whose policy is changed.
      - For V(project), a project ID or V(projects/PROJECT); defaults to O(project).
      - For V(bucket), the bucket name (or V(projects/_/buckets/NAME)).
      - For V(secret), the secret ID in O(project), or V(projects/PROJECT/secrets/ID).
      - For V(service_account), its email, its account ID in O(project), or
        V(projects/PROJECT/serviceAccounts/EMAIL).
      - For V(cloud_run_service), V(LOCATION/NAME) in O(project) (such as V(us-central1/mlflow)), or
        V(projects/PROJECT/locations/LOCATION/services/NAME).
      - For V(cloud_run_job), V(LOCATION/NAME) in O(project), or V(projects/PROJECT/locations/LOCATION/jobs/NAME).
      - For V(bigquery_table), V(DATASET.TABLE) in O(project), V(PROJECT.DATASET.TABLE), or
        V(projects/PROJECT/datasets/DATASET/tables/TABLE).
      - For V(artifact_registry_repository), V(LOCATION/NAME) in O(project), or
        V(projects/PROJECT/locations/LOCATION/repositories/NAME).
      - Required unless O(resource_type=project).
    type: str
  role:
    description:
      - The role, such as V(roles/secretmanager.secretAccessor), or a custom role
        V(projects/PROJECT/roles/ID) or V(organizations/ORG/roles/ID).
    type: str
    required: true
  member:
    description:
      - The principal, one of V(user:EMAIL), V(serviceAccount:EMAIL), V(group:EMAIL), V(domain:DOMAIN),
        V(principal://...), V(principalSet://...), V(allUsers) or V(allAuthenticatedUsers).
      - Email addresses and domains compare without regard to case.
    type: str
    required: true
  condition:
    description:
      - Grant the role only when this IAM condition holds. A binding with a condition is a different binding
        from the same role without one (or with another condition).
      - Setting a condition writes the policy at version 3.
    type: dict
    suboptions:
      title:
        description: Title of the condition, at most 100 characters.
        type: str
        required: true
      expression:
        description: The condition in Common Expression Language, such as V(request.time < timestamp("2027-01-01T00:00:00Z")).
        type: str
        required: true
      description:
        description: What the condition is for, at most 256 characters.
        type: str
  state:
    description:
      - V(present) grants the role to the member, V(absent) revokes it.
    type: str
    choices: [present, absent]
    default: present
  allow_public:
    description:
      - Allow granting a role to V(allUsers) or V(allAuthenticatedUsers), which opens the resource to anyone.
      - Revoking a public grant does not need it.
    type: bool
    default: false
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Let the MLflow service account read the database password
  deployml.mlops.iam_member:
    project: my-project
    resource_type: secret
    resource: mlflow-db-password
    role: roles/secretmanager.secretAccessor
    member: serviceAccount:mlflow@my-project.iam.gserviceaccount.com

- name: Let it write artifacts to the bucket
  deployml.mlops.iam_member:
    project: my-project
    resource_type: bucket
    resource: my-project-mlops-artifacts
    role: roles/storage.objectAdmin
    member: serviceAccount:mlflow@my-project.iam.gserviceaccount.com

- name: Connect to Cloud SQL from the project, until the end of the year
  deployml.mlops.iam_member:
    project: my-project
    resource_type: project
    role: roles/cloudsql.client
    member: serviceAccount:mlflow@my-project.iam.gserviceaccount.com
    condition:
      title: until-2027
      expression: request.time < timestamp("2027-01-01T00:00:00Z")

- name: Let Cloud Scheduler's service account run the drift job
  deployml.mlops.iam_member:
    project: my-project
    resource_type: cloud_run_job
    resource: us-central1/drift-check
    role: roles/run.invoker
    member: serviceAccount:scheduler@my-project.iam.gserviceaccount.com

- name: Make the serving API public (an explicit choice, never a side effect of deploying it)
  deployml.mlops.iam_member:
    project: my-project
    resource_type: cloud_run_service
    resource: us-central1/serving
    role: roles/run.invoker
    member: allUsers
    allow_public: true

- name: Let the serving API write to the predictions table, and no other table of the dataset
  deployml.mlops.iam_member:
    project: my-project
    resource_type: bigquery_table
    resource: mlops.predictions
    role: roles/bigquery.dataEditor
    member: serviceAccount:serving@my-project.iam.gserviceaccount.com

- name: Revoke a grant
  deployml.mlops.iam_member:
    project: my-project
    resource_type: service_account
    resource: mlflow
    role: roles/iam.serviceAccountUser
    member: user:alice@example.com
    state: absent
"""

RETURN = r"""
resource:
  description: The full name of the resource whose policy was read.
  returned: always
  type: str
  sample: projects/my-project/secrets/mlflow-db-password
binding:
  description:
    - The binding of O(role) (with O(condition)) after the change, all its members sorted; empty when none is
      left. In check mode, the binding as it would be.
  returned: success
  type: dict
  sample:
    role: roles/secretmanager.secretAccessor
    members: [serviceAccount:mlflow@my-project.iam.gserviceaccount.com]
etag:
  description: The etag of the policy after the change (as read, when nothing changed or in check mode).
  returned: success
  type: str
  sample: BwYUv5VzR6Q=
"""

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule
from ansible_collections.deployml.mlops.plugins.module_utils.iam import (
    PolicyTarget, add_member, binding_view, condition_error, is_public, member_error, normalize_member,
    remove_member, role_error, update_policy)

# Google's basic roles: every permission of every service (owner, editor) or read access to all (viewer).
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
RESOURCE_TYPE_CHOICES = ["project", "bucket", "secret", "service_account", "cloud_run_service", "cloud_run_job",
                         "bigquery_table", "artifact_registry_repository"]


def _problems(params):
    errors = []
    problem = member_error(params["member"])
    if problem:
        errors.append("member %r is invalid: %s" % (params["member"], problem))
    problem = role_error(params["role"])
    if problem:
        errors.append("role %r is invalid: %s" % (params["role"], problem))
    problem = condition_error(params["condition"])
    if problem:
        errors.append("condition is invalid: %s" % problem)
    if params["state"] == "present" and is_public(params["member"]) and not params["allow_public"]:
        errors.append("granting %s to %s makes the resource public; set allow_public: true if that is intended"
                      % (params["role"], params["member"]))
    return errors


def main():
    module = GcpModule(
        argument_spec=dict(
            resource_type=dict(type="str", required=True, choices=RESOURCE_TYPE_CHOICES),
            resource=dict(type="str"),
            role=dict(type="str", required=True),
            member=dict(type="str", required=True),
            condition=dict(type="dict", options=dict(
                title=dict(type="str", required=True),
                expression=dict(type="str", required=True),
                description=dict(type="str"),
            )),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            allow_public=dict(type="bool", default=False),
        ),
        required_if=[("resource_type", kind, ("resource",)) for kind in RESOURCE_TYPE_CHOICES if kind != "project"],
    )
    p = module.params
    errors = _problems(p)
    target = None
    try:
        target = PolicyTarget(module.client, p["resource_type"], p["resource"] or p["project"], p["project"])
    except ValueError as exc:
        errors.append(str(exc))
    if errors:
        module.fail_json(msg="; ".join(errors))

    role, condition = p["role"], p["condition"]
    member = normalize_member(p["member"])
    if p["state"] == "present" and role in PRIMITIVE_ROLES:
        module.warn("%s is a basic role, with broad permissions on every service; grant %s a predefined or custom "
                    "role with only the permissions it needs" % (role, member))
    if p["state"] == "present":
        def edit(policy):
            return add_member(policy, role, member, condition)
    else:
        def edit(policy):
            return remove_member(policy, role, member, condition)

    result = dict(changed=False, resource=target.name)
    try:
        update = update_policy(target, edit, check_mode=module.check_mode)
    except GcpApiError as exc:
        if exc.status == 404 and module.check_mode and p["state"] == "present":
            # In a check run the resource may be one an earlier task would have created.
            module.warn("%s %s does not exist (yet): the grant would be made once it does"
                        % (target.type.label, target.name))
            result["changed"] = True
            module.exit_json(**result)
        module.fail_api(exc, **result)
    after = binding_view(update.after, role, condition)
    result.update(changed=update.changed, binding=after, etag=update.after.get("etag"))
    if module._diff:
        result["diff"] = dict(before=binding_view(update.before, role, condition), after=after,
                              before_header="%s %s" % (target.type.label, target.name),
                              after_header="%s %s" % (target.type.label, target.name))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
