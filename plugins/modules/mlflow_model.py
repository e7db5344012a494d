#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_model
short_description: Manage an MLflow registered model's description, tags and aliases
version_added: 0.1.0
description:
  - Create, update or delete a registered model in an MLflow model registry through MLflow's REST API 2.0, and
    point its aliases at versions. Moving an alias is how a version is promoted, for example the C(champion) the
    serving API loads as C(models:/NAME@champion).
  - Only the options you set are compared with the model; everything else is left as it is.
  - Every version an alias asks for is checked (it exists and is C(READY)) before any change is made, so a wrong
    version number changes nothing.
  - Versions are not created here; training registers them (C(mlflow.register_model), or C(log_model) with
    C(registered_model_name)).
options:
  name:
    description:
      - The registered model's name. Names cannot hold V(/) or V(:).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the model, V(absent) deletes it.
      - Deleting a model deletes all its versions and aliases. A model that has versions is only deleted with
        O(force=true).
    type: str
    choices: [present, absent]
    default: present
  description:
    description:
      - The model's description. V("") clears it.
    type: str
  tags:
    description:
      - Tags of the model. Values are text; numbers are turned into text.
      - With O(purge_tags=false) only these tags are set and other tags are kept; with O(purge_tags=true) these are
        all its tags.
    type: dict
  purge_tags:
    description:
      - Remove the tags not listed in O(tags) (only when O(tags) is set). Tags MLflow sets itself (keys starting
        with V(mlflow.)) are never removed unless listed.
    type: bool
    default: false
  aliases:
    description:
      - Aliases of the model, each mapped to a version number or V(latest) (the highest version whose status is
        C(READY)). An alias that exists is moved to the version given.
      - Alias names hold letters, digits, V(_) and V(-); V(latest) and V(v) followed by a number are reserved by
        MLflow.
      - With O(purge_aliases=false) other aliases are kept; with O(purge_aliases=true) these are all its aliases.
    type: dict
  purge_aliases:
    description:
      - Remove the aliases not listed in O(aliases) (only when O(aliases) is set). Removing the alias a serving app
        loads makes that app fail to load a model; use with care.
    type: bool
    default: false
  force:
    description:
      - With O(state=absent), delete the model even though it has versions (they are deleted with it).
    type: bool
    default: false
extends_documentation_fragment:
  - deployml.mlops.mlflow
  - deployml.mlops.mlflow.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Describe the model and tag its owner
  deployml.mlops.mlflow_model:
    tracking_uri: http://127.0.0.1:5000
    name: diabetes-progression
    description: Disease progression one year after the baseline measurements
    tags:
      owner: data-science
      domain: health

- name: Promote version 7 (the serving API follows the alias within its poll interval)
  deployml.mlops.mlflow_model:
    tracking_uri: "{{ mlflow_url }}"
    google_id_token: true          # MLflow on Cloud Run requires IAM
    username: admin                # MLflow's basic-auth
    password: "{{ mlflow_admin_password }}"
    name: diabetes-progression
    aliases:
      champion: 7

- name: Make the newest version the challenger, and keep only these two aliases
  deployml.mlops.mlflow_model:
    tracking_uri: "{{ mlflow_url }}"
    id_token: "{{ lookup('ansible.builtin.pipe', 'gcloud auth print-identity-token') }}"
    name: diabetes-progression
    aliases:
      champion: 7
      challenger: latest
    purge_aliases: true

- name: Delete a scratch model with its versions
  deployml.mlops.mlflow_model:
    tracking_uri: http://127.0.0.1:5000
    name: scratch-model
    state: absent
    force: true
"""

RETURN = r"""
registered_model:
  description:
    - The model after the change (in check mode, the model as it is, or the desired fields of a model to create);
      empty when absent.
  returned: always
  type: dict
  contains:
    name:
      description: The model's name.
      type: str
    description:
      description: The model's description (V("") when none).
      type: str
    tags:
      description: Every tag of the model.
      type: dict
    aliases:
      description: Every alias of the model, mapped to its version number.
      type: dict
    creation_timestamp:
      description: When the model was created, in milliseconds since the epoch.
      type: int
    last_updated_timestamp:
      description: When the model last changed, in milliseconds since the epoch.
      type: int
  sample:
    name: diabetes-progression
    description: Disease progression one year after the baseline measurements
    tags: {owner: data-science}
    aliases: {champion: "7", challenger: "8"}
    creation_timestamp: 1769853600000
    last_updated_timestamp: 1769940000000
changed_fields:
  description: Fields of the model that differed and were updated.
  returned: when an existing model changed
  type: list
  elements: str
  sample: [aliases]
"""

from ansible_collections.deployml.mlops.plugins.module_utils.mlflow import (
    ALREADY_EXISTS, MlflowApiError, MlflowModule, alias_errors, get_model, list_versions, resolve_version,
    sync_tags, tag_errors, tag_values, without_reserved)
from ansible_collections.deployml.mlops.plugins.module_utils.resource import Exact, Resource, ResourceError, converge

UNREAD = object()


class RegisteredModel(Resource):
    kind = "registered model"
    result_key = "registered_model"

    def __init__(self, module):
        super().__init__(module)
        self._actual = UNREAD

    @property
    def name(self):
        return self.params["name"]

    @property
    def resource(self):
        return "registered model %s" % self.name

    def validate(self):
        p = self.params
        errors = tag_errors(p["tags"]) + alias_errors(p["aliases"])
        if not p["name"].strip() or "/" in p["name"] or ":" in p["name"]:
            errors.append("name must not be empty nor hold '/' or ':'")
        if p["force"] and p["state"] != "absent":
            errors.append("force goes with state: absent only")
        if errors:
            raise ResourceError("invalid options for %s: %s" % (self.resource, "; ".join(errors)))

    def read(self):
        # desired() reads the model first (to resolve aliases); the converge loop's read is the same answer.
        if self._actual is UNREAD:
            self._actual = get_model(self.client, self.name)
        return self._actual

    def desired(self):
        p = self.params
        tags = tag_values(p["tags"])
        aliases = None
        if p["aliases"] is not None:
            exists = self.read() is not None
            aliases = {alias: resolve_version(self.client, self.name, version, "aliases.%s" % alias, exists)
                       for alias, version in sorted(p["aliases"].items())}
        return dict(
            name=self.name,
            description=p["description"],
            tags=Exact(tags) if tags is not None and p["purge_tags"] else tags,
            aliases=Exact(aliases) if aliases is not None and p["purge_aliases"] else aliases,
        )

    def normalize(self, actual):
        # MLflow's own tags are never purged, so they take no part in an exact comparison either.
        return dict(actual, tags=without_reserved(actual["tags"], keep=self.params["tags"] or {}))

    def create(self, desired):
        body = dict(name=self.name)
        if desired.get("description") is not None:
            body["description"] = desired["description"]
        if desired.get("tags"):
            body["tags"] = [dict(key=k, value=v) for k, v in sorted(desired["tags"].items())]
        try:
            self.client.request("POST", "/registered-models/create", resource=self.resource, body=body)
        except MlflowApiError as exc:
            # A create retried after a lost answer finds the model it made the first time.
            if exc.reason != ALREADY_EXISTS or get_model(self.client, self.name) is None:
                raise
        return get_model(self.client, self.name)

    def update(self, actual, desired, changed_fields):
        ident = dict(name=self.name)
        if "description" in changed_fields:
            self.client.request("PATCH", "/registered-models/update", resource=self.resource,
                                body=dict(ident, description=desired["description"]))
        if "tags" in changed_fields:
            sync_tags(self.client, "/registered-models", ident, actual["tags"], desired["tags"],
                      isinstance(desired["tags"], Exact), self.resource)
        if "aliases" in changed_fields:
            for alias, version in sorted(desired["aliases"].items()):
                if actual["aliases"].get(alias) != version:
                    self.client.request("POST", "/registered-models/alias", resource=self.resource,
                                        body=dict(ident, alias=alias, version=version))
            if isinstance(desired["aliases"], Exact):
                for alias in sorted(set(actual["aliases"]) - set(desired["aliases"])):
                    self.client.request("DELETE", "/registered-models/alias", resource=self.resource,
                                        body=dict(ident, alias=alias), not_found_ok=True)
        return get_model(self.client, self.name)

    def check_delete(self, actual):
        versions = list_versions(self.client, self.name)
        if versions and not self.params["force"]:
            aliases = ", ".join("%s -> %s" % item for item in sorted(actual["aliases"].items()))
            numbers = ", ".join(v["version"] for v in versions)
            raise ResourceError(
                "%s has %d version(s) (%s)%s: deleting it deletes them too. Nothing was deleted; set force: true "
                "to delete it anyway"
                % (self.resource, len(versions), numbers, " and aliases %s" % aliases if aliases else ""))

    def delete(self, actual):
        self.client.request("DELETE", "/registered-models/delete", resource=self.resource, body=dict(name=self.name),
                            not_found_ok=True)


def main():
    module = MlflowModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            description=dict(type="str"),
            tags=dict(type="dict"),
            purge_tags=dict(type="bool", default=False),
            aliases=dict(type="dict"),
            purge_aliases=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
        ),
    )
    converge(RegisteredModel(module))


if __name__ == "__main__":
    main()
