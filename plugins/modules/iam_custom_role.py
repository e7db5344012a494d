#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: iam_custom_role
short_description: Manage a project-level IAM custom role
version_added: 0.1.0
description:
  - Create, update, delete or undelete a custom role of a project (C(projects/PROJECT/roles/ROLE_ID)) through
    the IAM API v1, so that a principal can be granted exactly the permissions it needs (with
    M(deployml.mlops.iam_member), O(deployml.mlops.iam_member#module:role=projects/PROJECT/roles/ROLE_ID)).
  - Only the options you set are compared with the role. A change is sent as one PATCH naming the changed
    fields in its update mask, with the etag read, so that a concurrent change of the role is refused rather
    than overwritten.
  - A deleted custom role is kept for 7 days, grants nothing, and can be undeleted; asking for it with
    O(state=present) in that time undeletes it (and then updates it). Past those 7 days it cannot be undeleted
    and Google keeps its ID reserved until it is permanently deleted, 37 days after the delete; creating it
    again in that window fails, and the module says so.
options:
  role_id:
    description:
      - The role ID, the last part of the role name C(projects/PROJECT/roles/ROLE_ID).
      - 3 to 64 letters, digits, V(_) and V(.).
    type: str
    required: true
    aliases: [name]
  title:
    description: A human readable title, at most 100 characters.
    type: str
  description:
    description: What the role is for, at most 256 bytes (UTF-8). V("") clears it.
    type: str
  permissions:
    description:
      - The permissions the role grants, such as V(bigquery.tables.updateData). The role holds exactly these
        (compared as a set); V([]) removes them all.
      - Each must be supported in custom roles (see Google's custom roles support levels). Wildcards are not
        permissions, and permissions that apply only to organizations and folders (such as
        V(resourcemanager.projects.list)) cannot be in a project-level role.
    type: list
    elements: str
    aliases: [included_permissions]
  stage:
    description:
      - The launch stage. A new role is at V(ALPHA) when not set. The bindings of a role at V(DISABLED) have no
        effect.
    type: str
    choices: [ALPHA, BETA, GA, DEPRECATED, DISABLED, EAP]
  state:
    description:
      - V(present) creates or updates the role (and undeletes it when it was deleted less than 7 days ago),
        V(absent) deletes it. A deleted role's ID cannot be given to a new role for 37 days.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: A role that may only stream rows into a table
  deployml.mlops.iam_custom_role:
    project: my-project
    role_id: mlops_prediction_writer
    title: MLOps prediction writer
    description: Insert rows into the predictions table (tabledata.insertAll)
    permissions: [bigquery.tables.get, bigquery.tables.updateData]
    stage: GA

- name: Grant it on that table only
  deployml.mlops.iam_member:
    project: my-project
    resource_type: bigquery_table
    resource: projects/my-project/datasets/mlops/tables/predictions
    role: projects/my-project/roles/mlops_prediction_writer
    member: serviceAccount:serving@my-project.iam.gserviceaccount.com

- name: Delete a role (it can be undeleted for 7 days by asking for it again)
  deployml.mlops.iam_custom_role:
    project: my-project
    role_id: scratch_role
    state: absent
"""

RETURN = r"""
custom_role:
  description: The role as the API returns it after the change (the desired fields in check mode), empty when absent.
  returned: always
  type: dict
  sample:
    name: projects/my-project/roles/mlops_prediction_writer
    title: MLOps prediction writer
    description: Insert rows into the predictions table (tabledata.insertAll)
    includedPermissions: [bigquery.tables.get, bigquery.tables.updateData]
    stage: GA
    etag: BwYxbP0AAAE=
changed_fields:
  description: Fields of the role that differed and were updated (V(deleted) when it was undeleted).
  returned: when an existing role changed
  type: list
  elements: str
  sample: [includedPermissions]
"""

import re

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule
from ansible_collections.deployml.mlops.plugins.module_utils.resource import Resource, ResourceError, converge

API = "iam"
ROLE_ID = re.compile(r"^[a-zA-Z0-9_.]{3,64}$")
PERMISSION = re.compile(r"^[a-z][a-zA-Z0-9]*(\.[a-zA-Z0-9]+){2,}$")  # service.resource.verb
# Permissions that apply to organizations and folders only: Google refuses them in a project-level role.
NOT_IN_PROJECT_ROLES = re.compile(r"^resourcemanager\.(projects\.list|organizations\.|folders\.)")
ROLE_FIELDS = ("title", "description", "includedPermissions", "stage")  # what a PATCH may change
MAX_PERMISSIONS = 3000


class CustomRole(Resource):
    kind = "custom role"
    result_key = "custom_role"

    @property
    def name(self):
        return "projects/%s/roles/%s" % (self.params["project"], self.params["role_id"])

    @property
    def path(self):
        return "/v1/" + self.name

    def validate(self):
        p = self.params
        errors = []
        if not ROLE_ID.match(p["role_id"]):
            errors.append("role_id %r must be 3 to 64 letters, digits, '_' and '.'" % p["role_id"])
        if p["title"] is not None and len(p["title"]) > 100:
            errors.append("title holds at most 100 characters, got %d" % len(p["title"]))
        if p["description"] is not None and len(p["description"].encode("utf-8")) > 256:
            errors.append("description holds at most 256 bytes (UTF-8), got %d" % len(p["description"].encode("utf-8")))
        permissions = p["permissions"] or []
        malformed = [x for x in permissions if not PERMISSION.match(x)]
        if malformed:
            errors.append("permissions must be permission names such as bigquery.tables.updateData (no wildcards): "
                          "%s" % ", ".join(repr(x) for x in malformed))
        organization_only = [x for x in permissions if NOT_IN_PROJECT_ROLES.match(x)]
        if organization_only:
            errors.append("permissions %s apply to organizations and folders only and cannot be in a project-level "
                          "custom role" % ", ".join(organization_only))
        count = len(set(permissions))
        if count > MAX_PERMISSIONS:
            errors.append("a custom role holds at most %d permissions, got %d" % (MAX_PERMISSIONS, count))
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))

    def desired(self):
        p = self.params
        permissions = None if p["permissions"] is None else sorted(set(p["permissions"]))
        # deleted=False: a role deleted less than 7 days ago is still there to read, and is undeleted.
        return dict(title=p["title"], description=p["description"], includedPermissions=permissions,
                    stage=p["stage"], deleted=False)

    def read(self):
        role = self.client.get(API, self.path, resource=self.name)
        if role is not None and role.get("deleted") and self.params["state"] == "absent":
            return None  # already deleted: nothing to do
        return role

    def normalize(self, actual):
        """The API leaves out empty fields, stage ALPHA and deleted while false; permissions compare as a set."""
        actual = dict(actual)
        actual.setdefault("title", "")
        actual.setdefault("description", "")
        actual.setdefault("stage", "ALPHA")
        actual.setdefault("deleted", False)
        actual["includedPermissions"] = sorted(set(actual.get("includedPermissions") or []))
        return actual

    def create(self, desired):
        role = {k: desired[k] for k in ROLE_FIELDS if k in desired}
        try:
            return self.client.request("POST", API, "/v1/projects/%s/roles" % self.params["project"],
                                       resource=self.name, body={"roleId": self.params["role_id"], "role": role})
        except GcpApiError as exc:
            # A role deleted more than 7 days ago is no longer readable nor undeletable, but its ID stays reserved
            # until the role is permanently deleted (gke-autoneg-controller #71: 400 failedPrecondition).
            if exc.status in (400, 409) and "deletion" in (exc.message or "").lower():
                raise ResourceError(
                    "%s %s cannot be created: a role with this ID was deleted more than 7 days ago, so it can no "
                    "longer be undeleted, and Google keeps the ID reserved until the role is permanently deleted "
                    "(37 days after the delete). Choose another role_id, or wait. (%s)"
                    % (self.kind, self.name, exc.message)) from None
            raise

    def update(self, actual, desired, changed_fields):
        etag = actual.get("etag")
        role = actual
        if "deleted" in changed_fields:
            role = self.client.request("POST", API, self.path + ":undelete", resource=self.name, body={"etag": etag})
            etag = role.get("etag", etag)
        patched = [f for f in ROLE_FIELDS if f in changed_fields]
        if patched:
            body = dict({f: desired[f] for f in patched}, etag=etag)
            role = self.client.request("PATCH", API, self.path, resource=self.name, body=body,
                                       params={"updateMask": ",".join(patched)})
        return role

    def delete(self, actual):
        self.client.request("DELETE", API, self.path, resource=self.name, params={"etag": actual.get("etag")},
                            not_found_ok=True)

    def report(self, result):
        if self.params["state"] == "absent" and result.get("changed"):
            self.module.warn("%s is deleted: it grants nothing now, can be undeleted for 7 days (run this task with "
                             "state=present), and its ID cannot be given to a new role for 37 days" % self.name)


def main():
    module = GcpModule(
        argument_spec=dict(
            role_id=dict(type="str", required=True, aliases=["name"]),
            title=dict(type="str"),
            description=dict(type="str"),
            permissions=dict(type="list", elements="str", aliases=["included_permissions"]),
            stage=dict(type="str", choices=["ALPHA", "BETA", "GA", "DEPRECATED", "DISABLED", "EAP"]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
    )
    converge(CustomRole(module))


if __name__ == "__main__":
    main()
