#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bigquery_dataset
short_description: Manage a BigQuery dataset
version_added: 0.1.0
description:
  - Create, update or delete a BigQuery dataset through the BigQuery v2 REST API.
  - Only the options you set are compared with the dataset; everything else is left as it is.
  - The location of a dataset cannot change. Asking for another location fails and changes nothing.
options:
  dataset_id:
    description:
      - ID of the dataset, unique in the project. Letters, digits and underscores, at most 1024 characters.
    type: str
    required: true
    aliases: [name]
  state:
    description:
      - V(present) creates or updates the dataset, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  location:
    description:
      - Geographic location of the dataset, such as V(US), V(EU) or V(europe-west1). Set at creation only.
      - When not set, BigQuery uses V(US) at creation and an existing dataset is left where it is.
    type: str
  description:
    description: Free text shown in the console and in the API.
    type: str
  labels:
    description:
      - Labels of the dataset. When set, these are all its labels; labels not listed are removed.
    type: dict
  default_table_expiration_ms:
    description: Default lifetime of new tables, in milliseconds (at least 3600000).
    type: int
  default_partition_expiration_ms:
    description:
      - Default lifetime of the partitions of new partitioned tables, in milliseconds.
      - Like O(default_table_expiration_ms), it applies only to tables created afterwards; existing tables keep
        their expiration, so changing it deletes nothing.
    type: int
  access:
    description:
      - The access entries of the dataset. When set, this is the whole list; entries not listed are removed.
      - Each entry has a O(access[].role) and exactly one grantee.
    type: list
    elements: dict
    suboptions:
      role:
        description:
          - V(READER), V(WRITER), V(OWNER) or the equivalent V(roles/bigquery.dataViewer),
            V(roles/bigquery.dataEditor), V(roles/bigquery.dataOwner), or another IAM role name.
        type: str
        required: true
      user_by_email:
        description: Email of a user or service account.
        type: str
      group_by_email:
        description: Email of a Google group.
        type: str
      domain:
        description: A Google Workspace domain.
        type: str
      special_group:
        description: One of V(projectOwners), V(projectReaders), V(projectWriters), V(allAuthenticatedUsers).
        type: str
      iam_member:
        description: Any IAM principal, such as V(principal://...).
        type: str
  delete_contents:
    description:
      - With O(state=absent), also delete the tables the dataset still holds. Without it, deleting a dataset
        that has tables fails and lists them.
    type: bool
    default: false
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Create the pipeline's dataset
  deployml.mlops.bigquery_dataset:
    project: my-project
    dataset_id: mlops
    location: EU
    description: Features, predictions, ground truth and drift metrics
    labels:
      app: mlops
    access:
      - role: OWNER
        special_group: projectOwners
      - role: READER
        user_by_email: grafana@my-project.iam.gserviceaccount.com

- name: Delete a scratch dataset and its tables
  deployml.mlops.bigquery_dataset:
    project: my-project
    dataset_id: scratch
    state: absent
    delete_contents: true
"""

RETURN = r"""
dataset:
  description: The dataset as the API returns it after the change (the desired body in check mode), empty when absent.
  returned: always
  type: dict
  sample:
    datasetReference: {projectId: my-project, datasetId: mlops}
    location: EU
    labels: {app: mlops}
changed_fields:
  description: Top-level fields of the dataset that differed and were updated.
  returned: when an existing dataset changed
  type: list
  elements: str
  sample: [description, labels]
"""

import json
import re

from ansible_collections.deployml.mlops.plugins.module_utils.bigquery import dataset_path, list_tables
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpModule, label_errors
from ansible_collections.deployml.mlops.plugins.module_utils.resource import (
    Exact, Resource, ResourceError, converge, int64, patch_body)

DATASET_ID = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
# BigQuery reports the basic dataset roles by their legacy names.
LEGACY_ROLES = {
    "roles/bigquery.dataOwner": "OWNER",
    "roles/bigquery.dataEditor": "WRITER",
    "roles/bigquery.dataViewer": "READER",
}
GRANTEES = dict(
    user_by_email="userByEmail",
    group_by_email="groupByEmail",
    domain="domain",
    special_group="specialGroup",
    iam_member="iamMember",
)


def _sorted_access(entries):
    return sorted(entries, key=lambda e: json.dumps(e, sort_keys=True))


class Dataset(Resource):
    kind = "BigQuery dataset"
    result_key = "dataset"
    immutable = ("location",)

    @property
    def name(self):
        return "projects/%s/datasets/%s" % (self.params["project"], self.params["dataset_id"])

    @property
    def path(self):
        return dataset_path(self.params["project"], self.params["dataset_id"])

    def validate(self):
        p = self.params
        if not DATASET_ID.match(p["dataset_id"]):
            raise ResourceError("dataset_id %r is invalid: use letters, digits and underscores only (at most "
                                "1024 characters)" % p["dataset_id"])
        errors = label_errors(p["labels"])
        if p["default_table_expiration_ms"] is not None and p["default_table_expiration_ms"] < 3600000:
            errors.append("default_table_expiration_ms must be at least 3600000 (one hour)")
        for index, entry in enumerate(p["access"] or []):
            grantees = [k for k in GRANTEES if entry.get(k)]
            if len(grantees) != 1:
                errors.append("access[%d] needs exactly one of %s, got %s"
                              % (index, ", ".join(GRANTEES), ", ".join(grantees) or "none"))
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))

    def desired(self):
        p = self.params
        body = dict(
            datasetReference=dict(projectId=p["project"], datasetId=p["dataset_id"]),
            location=_canonical_location(p["location"]),
            description=p["description"],
            labels=Exact(p["labels"]) if p["labels"] is not None else None,
            defaultTableExpirationMs=int64(p["default_table_expiration_ms"]),
            defaultPartitionExpirationMs=int64(p["default_partition_expiration_ms"]),
        )
        if p["access"] is not None:
            body["access"] = _sorted_access(
                dict({GRANTEES[k]: v for k, v in entry.items() if k in GRANTEES and v},
                     role=LEGACY_ROLES.get(entry["role"], entry["role"]))
                for entry in p["access"]
            )
        return body

    def normalize(self, actual):
        actual = dict(actual)
        if "access" in actual:
            actual["access"] = _sorted_access(actual["access"])
        return actual

    def read(self):
        return self.client.get("bigquery", self.path, resource=self.name)

    def create(self, desired):
        return self.client.request("POST", "bigquery", dataset_path(self.params["project"]),
                                   resource=self.name, body=desired)

    def update(self, actual, desired, changed_fields):
        return self.client.request("PATCH", "bigquery", self.path, resource=self.name,
                                   body=patch_body(actual, desired, changed_fields),
                                   headers={"If-Match": actual["etag"]} if actual.get("etag") else None)

    def check_delete(self, actual):
        if self.params["delete_contents"]:
            return
        tables = list_tables(self.client, self.params["project"], self.params["dataset_id"], limit=20)
        if tables:
            raise ResourceError(
                "%s %s still holds tables (%s%s); delete them first or set delete_contents: true to delete "
                "them with the dataset" % (self.kind, self.name, ", ".join(tables), ", ..." if len(tables) == 20 else "")
            )

    def delete(self, actual):
        self.client.request("DELETE", "bigquery", self.path, resource=self.name,
                            params={"deleteContents": "true"} if self.params["delete_contents"] else None)


def _canonical_location(location):
    """BigQuery spells multi-regions in capitals (US, EU) and regions in lower case (europe-west1)."""
    if location is None:
        return None
    return location.upper() if location.upper() in ("US", "EU") else location.lower()


def main():
    module = GcpModule(
        argument_spec=dict(
            dataset_id=dict(type="str", required=True, aliases=["name"]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            location=dict(type="str"),
            description=dict(type="str"),
            labels=dict(type="dict"),
            default_table_expiration_ms=dict(type="int"),
            default_partition_expiration_ms=dict(type="int"),
            access=dict(
                type="list",
                elements="dict",
                options=dict(
                    role=dict(type="str", required=True),
                    user_by_email=dict(type="str"),
                    group_by_email=dict(type="str"),
                    domain=dict(type="str"),
                    special_group=dict(type="str"),
                    iam_member=dict(type="str"),
                ),
            ),
            delete_contents=dict(type="bool", default=False),
        ),
    )
    converge(Dataset(module))


if __name__ == "__main__":
    main()
