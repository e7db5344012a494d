#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloud_sql_database
short_description: Manage a database of a Cloud SQL instance
version_added: 0.1.0
description:
  - Create, update or delete a database in a Cloud SQL instance through the Cloud SQL Admin API v1beta4.
  - Only the options you set are compared with the database; everything else is left as it is.
  - The module waits for the Cloud SQL operations it starts, and first for any operation still running on the
    instance (left by an earlier run that timed out, for example), so that a re-run converges.
  - On PostgreSQL, the character set and collation of a database are fixed when it is created. Asking for
    others fails and changes nothing. On MySQL they are changed in place.
options:
  instance:
    description:
      - Name of the Cloud SQL instance (its ID, without the project).
      - The instance must exist. In check mode, a missing instance (to be created by an earlier task) is
        reported as a database to create, with a warning.
    type: str
    required: true
  name:
    description:
      - Name of the database, 1 to 63 characters, without V(/).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the database, V(absent) deletes it with all its data.
    type: str
    choices: [present, absent]
    default: present
  charset:
    description:
      - Character set of the database, such as V(UTF8) on PostgreSQL or V(utf8mb4) on MySQL.
      - When not set, Cloud SQL uses the instance's default at creation, and an existing database keeps its own.
      - Compared without regard to case.
    type: str
  collation:
    description:
      - Collation of the database, such as V(en_US.UTF8) on PostgreSQL or V(utf8mb4_0900_ai_ci) on MySQL.
      - When not set, Cloud SQL uses the default of the character set at creation, and an existing database
        keeps its own. Compared without regard to case.
    type: str
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: The MLflow metadata database
  deployml.mlops.cloud_sql_database:
    project: my-project
    instance: mlops-pg
    name: mlflow
    charset: UTF8
    collation: en_US.UTF8

- name: Delete a database and all its data
  deployml.mlops.cloud_sql_database:
    project: my-project
    instance: mlops-pg
    name: scratch
    state: absent
"""

RETURN = r"""
database:
  description: The database as the API returns it after the change (the desired body in check mode), empty when absent.
  returned: always
  type: dict
  sample:
    kind: sql#database
    name: mlflow
    instance: mlops-pg
    project: my-project
    charset: UTF8
    collation: en_US.UTF8
changed_fields:
  description: Top-level fields of the database that differed and were updated.
  returned: when an existing database changed
  type: list
  elements: str
  sample: [collation]
"""

import re
from urllib.parse import quote

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpModule
from ansible_collections.deployml.mlops.plugins.module_utils.resource import Resource, ResourceError, converge
from ansible_collections.deployml.mlops.plugins.module_utils.sqladmin import (
    API, instance_path, missing_instance, wait_pending_operations, wait_sql_operation)

INSTANCE_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,96}[a-z0-9])?$")
DATABASE_NAME = re.compile(r"^[^/\x00-\x1f]{1,63}$")
FIXED_AT_CREATION = ("charset", "collation")


class Database(Resource):
    kind = "Cloud SQL database"
    result_key = "database"

    def __init__(self, module):
        super().__init__(module)
        self._instance = None

    @property
    def name(self):
        return "projects/%s/instances/%s/databases/%s" % (
            self.params["project"], self.params["instance"], self.params["name"])

    @property
    def instance_path(self):
        return instance_path(self.params["project"], self.params["instance"])

    @property
    def path(self):
        return "%s/databases/%s" % (self.instance_path, quote(self.params["name"], safe=""))

    def validate(self):
        p = self.params
        errors = []
        if not INSTANCE_NAME.match(p["instance"]):
            errors.append("instance %r is not a Cloud SQL instance name: use lowercase letters, digits and '-', "
                          "starting with a letter" % p["instance"])
        if not DATABASE_NAME.match(p["name"]):
            errors.append("database name %r is invalid: use 1 to 63 characters, without '/'" % p["name"])
        for field in FIXED_AT_CREATION:
            if p[field] is not None and not p[field].strip():
                errors.append("%s must not be empty" % field)
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))

    def instance(self):
        """The instance the database lives in, read once; {} when it does not exist."""
        if self._instance is None:
            self._instance = self.client.get(API, self.instance_path, resource=self.name) or {}
        return self._instance

    def desired(self):
        p = self.params
        return dict(name=p["name"], charset=p["charset"], collation=p["collation"])

    def normalize(self, actual):
        """Character sets and collations compare without regard to case (UTF8 and utf8)."""
        actual = dict(actual)
        for field in FIXED_AT_CREATION:
            wanted = self.params[field]
            if wanted is not None and str(actual.get(field, "")).lower() == wanted.lower():
                actual[field] = wanted
        return actual

    def read(self):
        if not self.instance():
            if self.params["state"] == "absent":  # no instance, no database
                return None
            missing_instance(self.module, "database")
            return None
        wait_pending_operations(self.client, self.params["project"], self.params["instance"], resource=self.name)
        return self.client.get(API, self.path, resource=self.name)

    def _wait(self, operation):
        wait_sql_operation(self.client, self.params["project"], operation, resource=self.name)

    def create(self, desired):
        body = dict(desired, project=self.params["project"], instance=self.params["instance"])
        self._wait(self.client.request("POST", API, self.instance_path + "/databases", resource=self.name, body=body))
        return self.client.request("GET", API, self.path, resource=self.name)

    def plan_update(self, actual, desired, changed_fields):
        engine = self.instance().get("databaseVersion", "")
        if engine.startswith("POSTGRES"):
            raise ResourceError(
                "%s %s: %s cannot be changed on PostgreSQL once the database exists (%s); create a new database "
                "with the wanted settings and move the data (pg_dump, pg_restore)"
                % (self.kind, self.name, ", ".join(changed_fields),
                   "; ".join("%s is %r, asked for %r" % (f, actual.get(f), desired.get(f)) for f in changed_fields)))
        return "update"

    def update(self, actual, desired, changed_fields):
        body = dict({field: desired[field] for field in changed_fields}, name=self.params["name"])
        self._wait(self.client.request("PATCH", API, self.path, resource=self.name, body=body))
        return self.client.request("GET", API, self.path, resource=self.name)

    def delete(self, actual):
        self._wait(self.client.request("DELETE", API, self.path, resource=self.name))


def main():
    module = GcpModule(
        argument_spec=dict(
            instance=dict(type="str", required=True),
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            charset=dict(type="str"),
            collation=dict(type="str"),
        ),
    )
    converge(Database(module))


if __name__ == "__main__":
    main()
