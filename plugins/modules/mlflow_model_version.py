#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_model_version
short_description: Manage the description and tags of a version of an MLflow registered model
version_added: 0.1.0
description:
  - Set the description and tags of an existing model version through MLflow's REST API 2.0, for example to record
    a review or a promotion decision on the version itself.
  - Versions are registered by training, not by this module; a version that does not exist is an error.
  - Only the options you set are compared with the version; everything else is left as it is.
options:
  name:
    description: The registered model's name.
    type: str
    required: true
  version:
    description:
      - The version number, or V(latest) for the highest version whose status is C(READY).
    type: str
    required: true
  description:
    description: The version's description. V("") clears it.
    type: str
  tags:
    description:
      - Tags of the version. Values are text; numbers are turned into text.
      - With O(purge_tags=false) only these tags are set and other tags are kept; with O(purge_tags=true) these are
        all its tags.
    type: dict
  purge_tags:
    description:
      - Remove the tags not listed in O(tags) (only when O(tags) is set). Tags MLflow sets itself (keys starting
        with V(mlflow.)) are never removed unless listed.
    type: bool
    default: false
extends_documentation_fragment:
  - deployml.mlops.mlflow
  - deployml.mlops.mlflow.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Record a review on version 7
  deployml.mlops.mlflow_model_version:
    tracking_uri: http://127.0.0.1:5000
    name: diabetes-progression
    version: "7"
    tags:
      reviewed_by: alice
      review: approved
"""

RETURN = r"""
model_version:
  description: The version after the change (in check mode, as it is).
  returned: always
  type: dict
  contains:
    name:
      description: The registered model's name.
      type: str
    version:
      description: The version number.
      type: str
    run_id:
      description: The MLflow run the version was registered from, V(null) when none.
      type: str
    status:
      description: The version's registration status (V(READY) once registered).
      type: str
    source:
      description: Where the version's files are.
      type: str
    description:
      description: The version's description (V("") when none).
      type: str
    tags:
      description: Every tag of the version.
      type: dict
    aliases:
      description: The aliases that point at this version.
      type: list
      elements: str
    creation_timestamp:
      description: When the version was registered, in milliseconds since the epoch.
      type: int
  sample:
    name: diabetes-progression
    version: "7"
    run_id: 0c2b4d6e8f0a4b1c9d3e5f7a9b1c3d5e
    status: READY
    source: mlflow-artifacts:/1/0c2b4d6e8f0a4b1c9d3e5f7a9b1c3d5e/artifacts/model
    description: ""
    tags: {review: approved, reviewed_by: alice}
    aliases: [champion]
    creation_timestamp: 1769853600000
changed_fields:
  description: Fields of the version that differed and were updated.
  returned: when the version changed
  type: list
  elements: str
  sample: [tags]
"""

from ansible_collections.deployml.mlops.plugins.module_utils.mlflow import (
    MlflowModule, get_model, get_version, resolve_version, sync_tags, tag_errors, tag_values, without_reserved)
from ansible_collections.deployml.mlops.plugins.module_utils.resource import Exact, Resource, ResourceError, converge


class ModelVersion(Resource):
    kind = "model version"
    result_key = "model_version"

    def __init__(self, module):
        super().__init__(module)
        self.number = None  # the version number, once `latest` is resolved
        self._actual = None

    @property
    def name(self):
        return "version %s of registered model %s" % (self.number or self.params["version"], self.params["name"])

    def validate(self):
        errors = tag_errors(self.params["tags"])
        if errors:
            raise ResourceError("invalid options for %s: %s" % (self.name, "; ".join(errors)))
        # The version must exist: this module never creates one (training registers versions).
        model = self.params["name"]
        self.number = resolve_version(self.client, model, self.params["version"], "version",
                                      get_model(self.client, model) is not None)
        self._actual = get_version(self.client, model, self.number)

    def read(self):
        return self._actual

    def desired(self):
        tags = tag_values(self.params["tags"])
        return dict(description=self.params["description"],
                    tags=Exact(tags) if tags is not None and self.params["purge_tags"] else tags)

    def normalize(self, actual):
        return dict(actual, tags=without_reserved(actual["tags"], keep=self.params["tags"] or {}))

    def create(self, desired):
        raise ResourceError("%s does not exist" % self.name)  # resolve_version() made sure it does

    def update(self, actual, desired, changed_fields):
        ident = dict(name=self.params["name"], version=self.number)
        if "description" in changed_fields:
            self.client.request("PATCH", "/model-versions/update", resource=self.name,
                                body=dict(ident, description=desired["description"]))
        if "tags" in changed_fields:
            sync_tags(self.client, "/model-versions", ident, actual["tags"], desired["tags"],
                      isinstance(desired["tags"], Exact), self.name)
        return get_version(self.client, self.params["name"], self.number)


def main():
    module = MlflowModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str", required=True),
            description=dict(type="str"),
            tags=dict(type="dict"),
            purge_tags=dict(type="bool", default=False),
        ),
    )
    converge(ModelVersion(module))


if __name__ == "__main__":
    main()
