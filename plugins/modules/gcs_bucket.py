#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gcs_bucket
short_description: Manage a Cloud Storage bucket
version_added: 0.1.0
description:
  - Create, update or delete a Cloud Storage bucket through the Cloud Storage JSON API v1.
  - Only the options you set are compared with the bucket; everything else is left as it is.
  - The location of a bucket cannot change. Asking for another location fails and changes nothing.
  - New buckets are private by default. Uniform bucket-level access is on and public access prevention is
    enforced unless you opt out with O(uniform_bucket_level_access) and O(public_access_prevention).
  - Updates are conditional on the bucket's metageneration, so a concurrent change made between the read and
    the write is not overwritten; the update then fails and a re-run converges.
options:
  name:
    description:
      - Name of the bucket, unique across all of Cloud Storage.
      - 3 to 63 lowercase letters, digits, V(-), V(_) and V(.), starting and ending with a letter or digit.
        Names with dots may hold up to 222 characters, at most 63 between two dots.
      - It cannot look like an IP address, start with V(goog) or contain V(google).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the bucket, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  location:
    description:
      - Location of the bucket, such as V(US), V(EU), V(europe-west1) or a dual-region. Set at creation only.
      - Case does not matter; Cloud Storage reports locations in capitals.
      - When not set, Cloud Storage uses V(US) at creation and an existing bucket is left where it is.
    type: str
  storage_class:
    description: Default storage class of new objects.
    type: str
    choices: [STANDARD, NEARLINE, COLDLINE, ARCHIVE]
  uniform_bucket_level_access:
    description:
      - Control access with IAM only (no object ACLs).
      - Once on for 90 days, it can no longer be turned off.
    type: bool
    default: true
  public_access_prevention:
    description:
      - V(enforced) refuses any grant to V(allUsers) or V(allAuthenticatedUsers).
      - V(inherited) follows the organization policy.
    type: str
    choices: [enforced, inherited]
    default: enforced
  versioning:
    description: Keep noncurrent versions of objects that are overwritten or deleted.
    type: bool
  lifecycle_rules:
    description:
      - The lifecycle rules of the bucket. When set, this is the whole list; rules not listed are removed, and
        V([]) removes them all.
    type: list
    elements: dict
    suboptions:
      action:
        description: What to do with the objects the condition matches.
        type: dict
        required: true
        suboptions:
          type:
            description: The action.
            type: str
            required: true
            choices: [Delete, SetStorageClass, AbortIncompleteMultipartUpload]
          storage_class:
            description: Target storage class, required with O(lifecycle_rules[].action.type=SetStorageClass) only.
            type: str
            choices: [STANDARD, NEARLINE, COLDLINE, ARCHIVE]
      condition:
        description: When the action applies. At least one condition is required; all those set must hold.
        type: dict
        required: true
        suboptions:
          age:
            description: Age of the object in days.
            type: int
          created_before:
            description: Objects created before this date (V(YYYY-MM-DD), UTC).
            type: str
          num_newer_versions:
            description: Noncurrent versions that have at least this many newer versions.
            type: int
          is_live:
            description: V(true) matches live objects, V(false) noncurrent versions.
            type: bool
          matches_storage_class:
            description: Objects in one of these storage classes.
            type: list
            elements: str
          days_since_noncurrent_time:
            description: Days since the object version became noncurrent.
            type: int
          noncurrent_time_before:
            description: Versions that became noncurrent before this date (V(YYYY-MM-DD), UTC).
            type: str
          days_since_custom_time:
            description: Days since the custom time set on the object.
            type: int
          matches_prefix:
            description: Objects whose name starts with one of these prefixes.
            type: list
            elements: str
          matches_suffix:
            description: Objects whose name ends with one of these suffixes.
            type: list
            elements: str
  labels:
    description:
      - Labels of the bucket. When set, these are all its labels; labels not listed are removed.
    type: dict
  soft_delete_retention_seconds:
    description:
      - How long deleted objects can still be restored, in seconds. V(0) disables soft delete; otherwise from
        V(604800) (7 days) to V(7776000) (90 days).
      - When not set, Cloud Storage keeps deleted objects 7 days on a new bucket.
    type: int
  retention_period_seconds:
    description:
      - Minimum time, in seconds, every object must be kept before it can be deleted or replaced.
      - More than 0 and less than 100 years. A locked retention policy cannot be reduced.
    type: int
  force:
    description:
      - With O(state=absent), also delete every object of the bucket, all versions included. Without it,
        deleting a bucket that holds objects fails and names some of them.
    type: bool
    default: false
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Create the bucket of the model artifacts
  deployml.mlops.gcs_bucket:
    project: my-project
    name: my-project-mlops-artifacts
    location: europe-west1
    versioning: true
    soft_delete_retention_seconds: 604800
    labels:
      app: mlops
    lifecycle_rules:
      - action: {type: Delete}
        condition: {days_since_noncurrent_time: 30, is_live: false}
      - action: {type: SetStorageClass, storage_class: NEARLINE}
        condition: {age: 90, matches_prefix: [runs/]}

- name: Delete a scratch bucket and everything in it
  deployml.mlops.gcs_bucket:
    project: my-project
    name: my-project-scratch
    state: absent
    force: true
"""

RETURN = r"""
bucket:
  description: The bucket as the API returns it after the change (the desired body in check mode), empty when absent.
  returned: always
  type: dict
  sample:
    name: my-project-mlops-artifacts
    location: EUROPE-WEST1
    storageClass: STANDARD
    iamConfiguration:
      uniformBucketLevelAccess: {enabled: true}
      publicAccessPrevention: enforced
    versioning: {enabled: true}
    labels: {app: mlops}
    metageneration: "1"
changed_fields:
  description: Top-level fields of the bucket that differed and were updated.
  returned: when an existing bucket changed
  type: list
  elements: str
  sample: [labels, versioning]
"""

import re
from itertools import islice
from urllib.parse import quote

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpModule, label_errors
from ansible_collections.deployml.mlops.plugins.module_utils.resource import (
    Exact, Resource, ResourceError, converge, int64, patch_body)

STORAGE_CLASSES = ["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"]
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SOFT_DELETE_MIN = 7 * 86400
SOFT_DELETE_MAX = 90 * 86400
RETENTION_LIMIT = 3155760000  # 100 years of 365.25 days: the API wants less
OBJECTS_NAMED = 10  # objects named when refusing to delete a bucket that holds some


def _camel(key):
    return re.sub(r"_([a-z])", lambda match: match.group(1).upper(), key)


def _holding(key, value):
    """{key: value}, or None when the option is not set (so that the whole field stays out of the body)."""
    return None if value is None else {key: value}


def _name_error(name):
    if not BUCKET_NAME.match(name):
        return "use lowercase letters, digits, '-', '_' and '.', and start and end with a letter or digit"
    if len(name) < 3 or len(name) > 222 or any(len(part) > 63 for part in name.split(".")):
        return "use 3 to 63 characters (up to 222 with dots, at most 63 between two dots)"
    if IP_ADDRESS.match(name):
        return "it must not look like an IP address"
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        return "it must not start with 'goog' or contain 'google'"
    return None


def _lifecycle_errors(rules):
    errors = []
    for index, rule in enumerate(rules or []):
        action, condition = rule["action"], rule["condition"]
        if (action["type"] == "SetStorageClass") != (action["storage_class"] is not None):
            errors.append("lifecycle_rules[%d]: action.storage_class goes with type SetStorageClass, and only "
                          "with it" % index)
        if all(value is None for value in condition.values()):
            errors.append("lifecycle_rules[%d] needs at least one condition" % index)
        for key in ("created_before", "noncurrent_time_before"):
            if condition[key] is not None and not DATE.match(condition[key]):
                errors.append("lifecycle_rules[%d]: condition.%s must be a date like 2026-01-31, got %r"
                              % (index, key, condition[key]))
    return errors


class Bucket(Resource):
    kind = "Cloud Storage bucket"
    result_key = "bucket"
    immutable = ("location",)

    @property
    def name(self):
        return "projects/_/buckets/%s" % self.params["name"]

    @property
    def path(self):
        return "/storage/v1/b/%s" % self.params["name"]

    def validate(self):
        p = self.params
        problem = _name_error(p["name"])
        if problem:  # the other checks would only repeat the bad name
            raise ResourceError("bucket name %r is invalid: %s" % (p["name"], problem))
        errors = label_errors(p["labels"]) + _lifecycle_errors(p["lifecycle_rules"])
        soft_delete = p["soft_delete_retention_seconds"]
        if soft_delete not in (None, 0) and not SOFT_DELETE_MIN <= soft_delete <= SOFT_DELETE_MAX:
            errors.append("soft_delete_retention_seconds must be 0 (off) or from %d (7 days) to %d (90 days), "
                          "got %d" % (SOFT_DELETE_MIN, SOFT_DELETE_MAX, soft_delete))
        retention = p["retention_period_seconds"]
        if retention is not None and not 0 < retention < RETENTION_LIMIT:
            errors.append("retention_period_seconds must be more than 0 and less than %d (100 years), got %d"
                          % (RETENTION_LIMIT, retention))
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))

    def desired(self):
        p = self.params
        rules = p["lifecycle_rules"]
        return dict(
            name=p["name"],
            location=p["location"].upper() if p["location"] else None,
            storageClass=p["storage_class"],
            iamConfiguration=dict(
                uniformBucketLevelAccess=dict(enabled=p["uniform_bucket_level_access"]),
                publicAccessPrevention=p["public_access_prevention"],
            ),
            versioning=_holding("enabled", p["versioning"]),
            lifecycle=_holding("rule", None if rules is None else [
                {part: {_camel(k): v for k, v in rule[part].items()} for part in ("action", "condition")}
                for rule in rules
            ]),
            labels=Exact(p["labels"]) if p["labels"] is not None else None,
            softDeletePolicy=_holding("retentionDurationSeconds", int64(p["soft_delete_retention_seconds"])),
            retentionPolicy=_holding("retentionPeriod", int64(p["retention_period_seconds"])),
        )

    def normalize(self, actual):
        """GCS leaves out versioning, lifecycle and labels while they are off or empty: spell that out."""
        actual = dict(actual)
        actual.setdefault("versioning", {"enabled": False})
        actual["lifecycle"] = dict({"rule": []}, **(actual.get("lifecycle") or {}))
        actual.setdefault("labels", {})
        iam = dict(actual.get("iamConfiguration") or {})
        if iam.get("publicAccessPrevention") == "unspecified":  # the former name of "inherited"
            iam["publicAccessPrevention"] = "inherited"
        actual["iamConfiguration"] = iam
        return actual

    def read(self):
        return self.client.get("storage", self.path, resource=self.name)

    def create(self, desired):
        return self.client.request("POST", "storage", "/storage/v1/b", resource=self.name, body=desired,
                                   params={"project": self.params["project"]})

    def update(self, actual, desired, changed_fields):
        return self.client.request("PATCH", "storage", self.path, resource=self.name,
                                   body=patch_body(actual, desired, changed_fields),
                                   params={"ifMetagenerationMatch": actual["metageneration"]})

    def object_versions(self, page_size):
        """Every object of the bucket, noncurrent versions included, read page by page."""
        token = None
        while True:
            page = self.client.request("GET", "storage", self.path + "/o", resource=self.name,
                                       params={"versions": "true", "maxResults": page_size, "pageToken": token})
            yield from page.get("items", [])
            token = page.get("nextPageToken")
            if not token:
                return

    def check_delete(self, actual):
        if self.params["force"]:
            return
        # One more than named, to know whether to add "...".
        found = list(islice(self.object_versions(OBJECTS_NAMED + 1), OBJECTS_NAMED + 1))
        if found:
            names = list(dict.fromkeys(item["name"] for item in found[:OBJECTS_NAMED]))
            raise ResourceError(
                "%s %s still holds objects (%s%s); delete them first or set force: true to delete them with "
                "the bucket" % (self.kind, self.name, ", ".join(names), ", ..." if len(found) > OBJECTS_NAMED else "")
            )

    def delete(self, actual):
        if self.params["force"]:
            for item in self.object_versions(1000):
                # 404: someone else deleted it meanwhile, which is what we want.
                self.client.request("DELETE", "storage", "%s/o/%s" % (self.path, quote(item["name"], safe="")),
                                    resource="%s/objects/%s" % (self.name, item["name"]),
                                    params={"generation": item["generation"]}, not_found_ok=True)
        self.client.request("DELETE", "storage", self.path, resource=self.name)


def main():
    module = GcpModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            location=dict(type="str"),
            storage_class=dict(type="str", choices=STORAGE_CLASSES),
            uniform_bucket_level_access=dict(type="bool", default=True),
            public_access_prevention=dict(type="str", choices=["enforced", "inherited"], default="enforced"),
            versioning=dict(type="bool"),
            lifecycle_rules=dict(
                type="list",
                elements="dict",
                options=dict(
                    action=dict(
                        type="dict",
                        required=True,
                        options=dict(
                            type=dict(type="str", required=True,
                                      choices=["Delete", "SetStorageClass", "AbortIncompleteMultipartUpload"]),
                            storage_class=dict(type="str", choices=STORAGE_CLASSES),
                        ),
                    ),
                    condition=dict(
                        type="dict",
                        required=True,
                        options=dict(
                            age=dict(type="int"),
                            created_before=dict(type="str"),
                            num_newer_versions=dict(type="int"),
                            is_live=dict(type="bool"),
                            matches_storage_class=dict(type="list", elements="str"),
                            days_since_noncurrent_time=dict(type="int"),
                            noncurrent_time_before=dict(type="str"),
                            days_since_custom_time=dict(type="int"),
                            matches_prefix=dict(type="list", elements="str"),
                            matches_suffix=dict(type="list", elements="str"),
                        ),
                    ),
                ),
            ),
            labels=dict(type="dict"),
            soft_delete_retention_seconds=dict(type="int"),
            retention_period_seconds=dict(type="int"),
            force=dict(type="bool", default=False),
        ),
    )
    converge(Bucket(module))


if __name__ == "__main__":
    main()
