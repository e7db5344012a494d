#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: artifact_registry_repository
short_description: Manage an Artifact Registry repository for container images
version_added: 0.1.0
description:
  - Create, update or delete an Artifact Registry repository through the Artifact Registry API v1.
  - Only the options you set are compared with the repository; everything else is left as it is. An update
    is a PATCH whose update mask names the changed fields only.
  - The format of a repository cannot change. Asking for another one fails and changes nothing.
  - Creating and deleting a repository are long-running operations; the module waits for them up to
    O(timeout).
options:
  name:
    description:
      - The repository ID, unique in its project and location.
      - 1 to 63 lowercase letters, digits and V(-), starting with a letter and ending with a letter or digit.
    type: str
    required: true
  location:
    description:
      - Where the repository lives, a region such as V(europe-west1) or a multi-region such as V(europe).
      - Images are pushed to and pulled from V(LOCATION-docker.pkg.dev/PROJECT/NAME).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the repository, V(absent) deletes it.
      - Deleting a repository deletes every image it holds.
    type: str
    choices: [present, absent]
    default: present
  format:
    description:
      - The kind of packages the repository holds. Set at creation only.
    type: str
    choices: [docker]
    default: docker
  description:
    description: What the repository is for. V("") clears it.
    type: str
  labels:
    description:
      - Labels of the repository. When set, these are all its labels; labels not listed are removed.
    type: dict
  immutable_tags:
    description:
      - V(true) prevents tags from being moved or deleted once created (new tags can still be added).
    type: bool
  cleanup_policies:
    description:
      - Policies that delete old image versions automatically. When set, this is the whole list; policies not
        listed are removed, and V([]) removes them all.
      - A repository holds at most 10 policies. A version that matches both a V(keep) and a V(delete) policy
        is kept.
    type: list
    elements: dict
    suboptions:
      id:
        description: The policy ID, unique in the repository, under 128 characters.
        type: str
        required: true
      action:
        description: V(delete) removes the versions the policy matches, V(keep) protects them.
        type: str
        required: true
        choices: [delete, keep]
      tag_state:
        description: Match tagged versions, untagged versions or V(any).
        type: str
        choices: [tagged, untagged, any]
      tag_prefixes:
        description: Match versions with a tag starting with one of these prefixes. Needs O(cleanup_policies[].tag_state=tagged).
        type: list
        elements: str
      older_than:
        description:
          - Match versions uploaded longer ago than this duration, as V(30d), V(12h), V(90m), V(3600s), or a
            number of seconds.
        type: raw
      newer_than:
        description:
          - Match versions uploaded more recently than this duration, written like O(cleanup_policies[].older_than).
        type: raw
      package_name_prefixes:
        description: Match versions of images whose name starts with one of these prefixes.
        type: list
        elements: str
      keep_count:
        description:
          - Keep the most recent versions of each image, this many. With O(cleanup_policies[].action=keep) only,
            and not with O(cleanup_policies[].tag_state), O(cleanup_policies[].tag_prefixes),
            O(cleanup_policies[].older_than) or O(cleanup_policies[].newer_than).
          - O(cleanup_policies[].package_name_prefixes) then limits the images it applies to.
        type: int
  cleanup_policy_dry_run:
    description:
      - V(true) evaluates the cleanup policies without deleting anything (to try them out).
    type: bool
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: The repository of the pipeline's images
  deployml.mlops.artifact_registry_repository:
    project: my-project
    name: mlops
    location: europe-west1
    description: MLflow, serving and drift job images
    labels:
      app: mlops
    cleanup_policies:
      - id: keep-recent
        action: keep
        keep_count: 10
      - id: drop-old-builds
        action: delete
        tag_state: tagged
        tag_prefixes: [ctx-]
        older_than: 30d
      - id: drop-untagged
        action: delete
        tag_state: untagged
        older_than: 7d

- name: Delete a repository with all its images
  deployml.mlops.artifact_registry_repository:
    project: my-project
    name: scratch
    location: europe-west1
    state: absent
"""

RETURN = r"""
repository:
  description: The repository as the API returns it after the change (the desired body in check mode), empty when absent.
  returned: always
  type: dict
  sample:
    name: projects/my-project/locations/europe-west1/repositories/mlops
    format: DOCKER
    description: MLflow, serving and drift job images
    labels: {app: mlops}
    cleanupPolicies:
      keep-recent: {id: keep-recent, action: KEEP, mostRecentVersions: {keepCount: 10}}
    createTime: "2026-01-31T10:00:00.000000Z"
    updateTime: "2026-01-31T10:00:00.000000Z"
    registryUri: europe-west1-docker.pkg.dev/my-project/mlops
registry:
  description: Where images of the repository are pushed and pulled, V(LOCATION-docker.pkg.dev/PROJECT/NAME).
  returned: when O(state=present)
  type: str
  sample: europe-west1-docker.pkg.dev/my-project/mlops
changed_fields:
  description: Top-level fields of the repository that differed and were updated.
  returned: when an existing repository changed
  type: list
  elements: str
  sample: [cleanupPolicies, labels]
"""

import re

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import LOCATION, GcpApiError, GcpModule, label_errors, wait_operation
from ansible_collections.deployml.mlops.plugins.module_utils.resource import Exact, LocatedResource, ResourceError, converge

API = "artifactregistry"
REPOSITORY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POLICIES = 10
POLICY_ID_MAX = 128
FORMATS = {"docker": "DOCKER"}
# Fields an update may change, and the update mask path of each.
MASKS = {"description": "description", "labels": "labels", "dockerConfig": "dockerConfig.immutableTags",
         "cleanupPolicies": "cleanupPolicies", "cleanupPolicyDryRun": "cleanupPolicyDryRun"}


def duration(value):
    """A duration option ("30d", "12h", "3600s", 3600) as a google-duration string ("2592000s"); None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "%ds" % value if value > 0 else None
    match = DURATION.match(str(value))
    if not match or int(match.group(1)) <= 0:
        return None
    return "%ds" % (int(match.group(1)) * UNITS[match.group(2)])


def registry_host(location):
    return "%s-docker.pkg.dev" % location


def _policy_errors(policies):
    errors = []
    if len(policies) > MAX_POLICIES:
        errors.append("a repository holds at most %d cleanup policies, got %d" % (MAX_POLICIES, len(policies)))
    seen = set()
    for index, policy in enumerate(policies):
        where = "cleanup_policies[%d]" % index
        pid = policy["id"]
        if not pid or len(pid) >= POLICY_ID_MAX:
            errors.append("%s: id must have 1 to %d characters" % (where, POLICY_ID_MAX - 1))
        if pid in seen:
            errors.append("%s: id %r is used twice; policy ids must be unique" % (where, pid))
        seen.add(pid)
        conditions = [k for k in ("tag_state", "tag_prefixes", "older_than", "newer_than") if policy[k] is not None]
        if policy["keep_count"] is not None:
            if policy["action"] != "keep":
                errors.append("%s: keep_count goes with action keep only" % where)
            if conditions:
                errors.append("%s: keep_count cannot be combined with %s" % (where, ", ".join(conditions)))
            if policy["keep_count"] < 1:
                errors.append("%s: keep_count must be at least 1, got %d" % (where, policy["keep_count"]))
        elif not conditions and not policy["package_name_prefixes"]:
            errors.append("%s: set at least one of tag_state, tag_prefixes, older_than, newer_than, "
                          "package_name_prefixes or keep_count" % where)
        if policy["tag_prefixes"] is not None and policy["tag_state"] != "tagged":
            errors.append("%s: tag_prefixes needs tag_state tagged" % where)
        for key in ("older_than", "newer_than"):
            if policy[key] is not None and duration(policy[key]) is None:
                errors.append("%s: %s must be a positive duration such as 30d, 12h, 90m, 3600s or a number of "
                              "seconds, got %r" % (where, key, policy[key]))
    return errors


def policy_body(policy):
    """One cleanup_policies item as the API's CleanupPolicy."""
    body = Exact(id=policy["id"], action=policy["action"].upper())
    if policy["keep_count"] is not None:
        recent = Exact(keepCount=policy["keep_count"])
        if policy["package_name_prefixes"] is not None:
            recent["packageNamePrefixes"] = policy["package_name_prefixes"]
        body["mostRecentVersions"] = recent
        return body
    condition = Exact()
    if policy["tag_state"] is not None:
        condition["tagState"] = policy["tag_state"].upper()
    for option, field in (("tag_prefixes", "tagPrefixes"), ("package_name_prefixes", "packageNamePrefixes")):
        if policy[option] is not None:
            condition[field] = policy[option]
    for option, field in (("older_than", "olderThan"), ("newer_than", "newerThan")):
        if policy[option] is not None:
            condition[field] = duration(policy[option])
    body["condition"] = condition
    return body


class Repository(LocatedResource):
    kind = "Artifact Registry repository"
    result_key = "repository"
    immutable = ("format",)
    collection = "repositories"

    def validate(self):
        p = self.params
        errors = []
        if not REPOSITORY_ID.match(p["name"]):
            errors.append("name %r must be 1 to 63 lowercase letters, digits and '-', start with a letter and end "
                          "with a letter or digit" % p["name"])
        if not LOCATION.match(p["location"]):
            errors.append("location %r is not a location such as europe-west1 or europe" % p["location"])
        errors += label_errors(p["labels"])
        errors += _policy_errors(p["cleanup_policies"] or [])
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))

    def desired(self):
        p = self.params
        policies = p["cleanup_policies"]
        return dict(
            format=FORMATS[p["format"]],
            description=p["description"],
            labels=Exact(p["labels"]) if p["labels"] is not None else None,
            dockerConfig=None if p["immutable_tags"] is None else dict(immutableTags=p["immutable_tags"]),
            cleanupPolicies=None if policies is None else Exact((policy["id"], policy_body(policy)) for policy in policies),
            cleanupPolicyDryRun=p["cleanup_policy_dry_run"],
        )

    def normalize(self, actual):
        """The API leaves out empty maps, empty strings and false booleans: spell them out."""
        actual = dict(actual)
        actual.setdefault("description", "")
        actual.setdefault("labels", {})
        actual.setdefault("cleanupPolicies", {})
        actual.setdefault("cleanupPolicyDryRun", False)
        if actual.get("format") == "DOCKER":
            actual["dockerConfig"] = dict({"immutableTags": False}, **(actual.get("dockerConfig") or {}))
        return actual

    def read(self):
        return self.client.get(API, self.path, resource=self.name)

    def _done(self, operation):
        response = wait_operation(self.client, API, operation, resource=self.name)
        response = {k: v for k, v in response.items() if k != "@type"}
        return response if response.get("name") else (self.read() or {})

    def create(self, desired):
        try:
            operation = self.client.request("POST", API, "/v1/%s/repositories" % self.parent, resource=self.name,
                                            params={"repositoryId": self.params["name"]}, body=desired)
        except GcpApiError as exc:
            if exc.status != 409:
                raise
            # A create retried after a lost answer: the first one went through and may still be running.
            return self.client.wait(self.read, lambda repository: repository is not None, resource=self.name)
        return self._done(operation)

    def update(self, actual, desired, changed_fields):
        return self.client.request("PATCH", API, self.path, resource=self.name,
                                   params={"updateMask": ",".join(MASKS[f] for f in changed_fields)},
                                   body={f: desired[f] for f in changed_fields})

    def delete(self, actual):
        operation = self.client.request("DELETE", API, self.path, resource=self.name, not_found_ok=True)
        if operation:
            wait_operation(self.client, API, operation, resource=self.name)

    def report(self, result):
        if self.params["state"] == "present":
            result["registry"] = "%s/%s/%s" % (registry_host(self.params["location"]), self.params["project"],
                                               self.params["name"])


def main():
    module = GcpModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            location=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            format=dict(type="str", choices=list(FORMATS), default="docker"),
            description=dict(type="str"),
            labels=dict(type="dict"),
            immutable_tags=dict(type="bool"),
            cleanup_policies=dict(
                type="list",
                elements="dict",
                options=dict(
                    id=dict(type="str", required=True),
                    action=dict(type="str", required=True, choices=["delete", "keep"]),
                    tag_state=dict(type="str", choices=["tagged", "untagged", "any"]),
                    tag_prefixes=dict(type="list", elements="str"),
                    older_than=dict(type="raw"),
                    newer_than=dict(type="raw"),
                    package_name_prefixes=dict(type="list", elements="str"),
                    keep_count=dict(type="int"),
                ),
            ),
            cleanup_policy_dry_run=dict(type="bool"),
        ),
    )
    converge(Repository(module))


if __name__ == "__main__":
    main()
