#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bigquery_table
short_description: Manage a BigQuery table, its schema, partitioning and clustering
version_added: 0.1.0
description:
  - Create, update or delete a BigQuery table through the BigQuery v2 REST API.
  - Only the options you set are compared with the table; everything else is left as it is.
  - Schema changes BigQuery can make in place are applied in place, keeping the rows. They are adding
    NULLABLE or REPEATED columns, relaxing a REQUIRED column to NULLABLE, and changing column descriptions.
  - Changes BigQuery cannot make in place fail with a message naming each column or setting involved,
    unless O(recreate=true). They are dropping a column, changing its type, tightening its mode, adding a
    REQUIRED column, and changing the partitioning type or column.
  - Changes BigQuery makes in place but that delete rows fail before any write, saying how much history
    would go, unless O(allow_data_loss=true). That is shortening the partition expiration of an existing
    table, or setting one on a table whose partitions were kept forever. BigQuery applies a new partition
    expiration to every existing partition, so the older ones are deleted at once. Check mode fails the
    same way; when allowed, the module warns and returns the figure in RV(data_loss) and the diff header.
options:
  dataset_id:
    description: ID of the dataset that holds the table.
    type: str
    required: true
  table_id:
    description: ID of the table within the dataset.
    type: str
    required: true
    aliases: [name]
  state:
    description: V(present) creates or updates the table, V(absent) deletes it with its rows.
    type: str
    choices: [present, absent]
    default: present
  description:
    description: Free text shown in the console and in the API.
    type: str
  labels:
    description: Labels of the table. When set, these are all its labels; labels not listed are removed.
    type: dict
  schema:
    description:
      - The columns of the table. When set, this is the whole schema. Column order only matters at creation;
        new columns are appended.
    type: list
    elements: dict
    suboptions:
      name:
        description: Column name. Letters, digits and underscores, not starting with a digit.
        type: str
        required: true
      type:
        description:
          - Column type. V(STRING), V(BYTES), V(INTEGER) (V(INT64)), V(FLOAT) (V(FLOAT64)), V(NUMERIC),
            V(BIGNUMERIC), V(BOOLEAN) (V(BOOL)), V(TIMESTAMP), V(DATE), V(TIME), V(DATETIME), V(GEOGRAPHY),
            V(JSON), V(INTERVAL), V(RANGE) or V(RECORD) (V(STRUCT)).
        type: str
        required: true
      mode:
        description: Column mode.
        type: str
        choices: [NULLABLE, REQUIRED, REPEATED]
        default: NULLABLE
      description:
        description: Column description.
        type: str
      fields:
        description: The nested columns of a V(RECORD) column, with the same keys as O(schema).
        type: list
        elements: dict
  time_partitioning:
    description: Time-unit partitioning of the table. The type and column are fixed at creation.
    type: dict
    suboptions:
      type:
        description: Partition granularity.
        type: str
        choices: [HOUR, DAY, MONTH, YEAR]
        default: DAY
      field:
        description:
          - The TIMESTAMP, DATE or DATETIME column to partition by. Without it, the table is partitioned by
            ingestion time.
        type: str
      expiration_ms:
        description:
          - Lifetime of each partition in milliseconds; older partitions are deleted.
          - Shortening it on an existing table deletes history and needs O(allow_data_loss=true).
        type: int
  require_partition_filter:
    description: Reject queries that do not filter on the partitioning column (guards against full scans).
    type: bool
  clustering:
    description: Up to four top-level columns to cluster the table by, in order of importance.
    type: list
    elements: str
  recreate:
    description:
      - Delete and re-create the table when the requested schema or partitioning cannot be applied in place.
      - B(All rows of the table are lost.) The module warns when it does this.
    type: bool
    default: false
  allow_data_loss:
    description:
      - Allow an in-place change that makes BigQuery delete rows of the existing table, that is a shorter
        (or a first) partition expiration. B(Partitions older than the new expiration are deleted.)
      - The module warns with the amount of history that goes.
    type: bool
    default: false
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Predictions table, partitioned by day and clustered by model
  deployml.mlops.bigquery_table:
    project: my-project
    dataset_id: mlops
    table_id: predictions
    description: Every prediction the serving API made
    schema:
      - {name: prediction_id, type: STRING, mode: REQUIRED}
      - {name: timestamp, type: TIMESTAMP, mode: REQUIRED}
      - {name: model_name, type: STRING, mode: REQUIRED}
      - {name: model_version, type: STRING, mode: REQUIRED}
      - {name: features, type: JSON}
      - {name: prediction, type: FLOAT}
    time_partitioning:
      type: DAY
      field: timestamp
      expiration_ms: 7776000000
    require_partition_filter: true
    clustering: [model_name, model_version]

- name: Add a nullable column (in place, rows kept)
  deployml.mlops.bigquery_table:
    project: my-project
    dataset_id: mlops
    table_id: scores
    schema:
      - {name: id, type: STRING, mode: REQUIRED}
      - {name: score, type: FLOAT}
      - {name: comment, type: STRING}

- name: Drop a table
  deployml.mlops.bigquery_table:
    project: my-project
    dataset_id: mlops
    table_id: scratch
    state: absent
"""

RETURN = r"""
table:
  description: The table as the API returns it after the change (the desired body in check mode), empty when absent.
  returned: always
  type: dict
  sample:
    tableReference: {projectId: my-project, datasetId: mlops, tableId: predictions}
    schema: {fields: [{name: prediction_id, type: STRING, mode: REQUIRED}]}
    timePartitioning: {type: DAY, field: timestamp}
changed_fields:
  description: Top-level fields of the table that differed and were updated.
  returned: when an existing table changed
  type: list
  elements: str
  sample: [schema, description]
recreated:
  description: Whether the table was (or in check mode would be) deleted and re-created.
  returned: when an existing table changed
  type: bool
data_loss:
  description: What an allowed in-place change deletes (or in check mode would delete).
  returned: >-
    when an existing table changed with O(allow_data_loss=true) in a way that deletes rows, or was re-created
    with O(recreate=true)
  type: str
  sample: >-
    partitions older than 30 days would be deleted: about 700 days of history
    (partition expiration 730 -> 30 days)
"""

import re

from ansible_collections.deployml.mlops.plugins.module_utils.bigquery import (
    MODES, canonical_type, schema_errors, table_path)
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpModule, label_errors
from ansible_collections.deployml.mlops.plugins.module_utils.resource import (
    Exact, Resource, ResourceError, converge, int64, patch_body)

TABLE_ID = re.compile(r"^[\w\- ]{1,1024}$")
DAY_MS = 86400000
PARTITION_COLUMN_TYPES = ("TIMESTAMP", "DATE", "DATETIME")
NOT_CLUSTERABLE = ("RECORD", "JSON", "FLOAT", "BYTES", "INTERVAL", "RANGE")


def canonical_fields(fields):
    """Columns as the API reports them: legacy type names, explicit mode, nested fields in order."""
    result = []
    for field in fields or []:
        column = dict(field, type=canonical_type(field.get("type")), mode=(field.get("mode") or "NULLABLE").upper())
        if column.get("fields") is not None:
            column["fields"] = canonical_fields(column["fields"])
        if column.get("description") is None:
            column.pop("description", None)
        result.append(column)
    return result


def plan_schema(wanted, actual, path=""):
    """Match the wanted columns with the actual ones by name.

    Returns the schema to send in a PATCH (actual columns in their order with the in-place changes, new
    columns appended) and the changes BigQuery cannot make in place, as messages naming the column.
    """
    wanted_by_name = {f["name"].lower(): f for f in wanted}
    actual_names = {f["name"].lower() for f in actual}
    merged, blocked = [], []
    for column in actual:
        name = path + column["name"]
        want = wanted_by_name.get(column["name"].lower())
        if want is None:
            blocked.append("column %s would be dropped" % name)
            merged.append(column)
            continue
        updated = dict(column)
        if want["type"] != column["type"]:
            blocked.append("column %s would change type from %s to %s" % (name, column["type"], want["type"]))
        if want["mode"] != column["mode"]:
            if (column["mode"], want["mode"]) == ("REQUIRED", "NULLABLE"):
                updated["mode"] = "NULLABLE"  # relaxing is allowed in place
            else:
                blocked.append("column %s would change mode from %s to %s" % (name, column["mode"], want["mode"]))
        if "description" in want:
            updated["description"] = want["description"]
        if want["type"] == column["type"] == "RECORD":
            updated["fields"], nested = plan_schema(want.get("fields", []), column.get("fields", []), name + ".")
            blocked += nested
        merged.append(updated)
    for column in wanted:
        if column["name"].lower() not in actual_names:
            if column["mode"] == "REQUIRED":
                blocked.append("new column %s%s is REQUIRED: only NULLABLE or REPEATED columns can be added to a "
                               "table with rows" % (path, column["name"]))
            merged.append(column)
    return merged, blocked


def days(ms):
    """A duration in milliseconds as days, for messages: "730 days", "1 day", "0.5 days"."""
    count = round(ms / DAY_MS, 2)
    return "%g day%s" % (count, "" if count == 1 else "s")


def expiration_loss(current, wanted):
    """What changing the partition expiration from current to wanted (milliseconds, None: kept forever)
    deletes, as a message; None when nothing is deleted.

    BigQuery applies a table's partition expiration to the partitions it already holds, so the partitions
    older than a shorter expiration are deleted as soon as it is set.
    """
    if wanted is None or (current is not None and int(wanted) >= int(current)):
        return None
    wanted = int(wanted)
    if current is None:
        return ("partitions older than %s would be deleted: all the history before that, kept until now "
                "(partition expiration none, kept forever -> %s)" % (days(wanted), days(wanted)))
    current = int(current)
    return ("partitions older than %s would be deleted: about %s of history (partition expiration %s -> %s)"
            % (days(wanted), days(current - wanted), days(current).rsplit(" ", 1)[0], days(wanted)))


class Table(Resource):
    kind = "BigQuery table"
    result_key = "table"

    def __init__(self, module):
        super().__init__(module)
        self.blocked = []
        self.data_loss = None

    @property
    def name(self):
        p = self.params
        return "projects/%s/datasets/%s/tables/%s" % (p["project"], p["dataset_id"], p["table_id"])

    @property
    def path(self):
        return table_path(self.params["project"], self.params["dataset_id"], self.params["table_id"])

    def validate(self):
        p = self.params
        errors = []
        if not TABLE_ID.match(p["table_id"]):
            errors.append("table_id %r is invalid: use letters, digits, underscores, dashes or spaces" % p["table_id"])
        errors += label_errors(p["labels"])
        errors += schema_errors(p["schema"])
        columns = {f["name"].lower(): canonical_fields([f])[0] for f in p["schema"] or [] if f.get("name")}
        partitioning = p["time_partitioning"]
        if partitioning and partitioning.get("field"):
            column = columns.get(partitioning["field"].lower())
            if p["schema"] is not None and column is None:
                errors.append("time_partitioning.field %r is not a column of the schema" % partitioning["field"])
            elif column and (column["type"] not in PARTITION_COLUMN_TYPES or column["mode"] == "REPEATED"):
                errors.append("time_partitioning.field %r must be a TIMESTAMP, DATE or DATETIME column, not %s %s"
                              % (partitioning["field"], column["mode"], column["type"]))
        if partitioning and partitioning.get("expiration_ms") is not None and partitioning["expiration_ms"] <= 0:
            errors.append("time_partitioning.expiration_ms must be a positive number of milliseconds")
        if p["require_partition_filter"] and not partitioning:
            errors.append("require_partition_filter needs time_partitioning")
        clustering = p["clustering"] or []
        if len(clustering) > 4:
            errors.append("clustering takes at most 4 columns, got %d" % len(clustering))
        for name in clustering if p["schema"] is not None else ():
            column = columns.get(name.lower())
            if column is None:
                errors.append("clustering column %r is not a top-level column of the schema" % name)
            elif column["type"] in NOT_CLUSTERABLE or column["mode"] == "REPEATED":
                errors.append("clustering column %r cannot be used: it is %s %s" % (name, column["mode"], column["type"]))
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))

    def desired(self):
        p = self.params
        partitioning = p["time_partitioning"]
        return dict(
            tableReference=dict(projectId=p["project"], datasetId=p["dataset_id"], tableId=p["table_id"]),
            description=p["description"],
            labels=Exact(p["labels"]) if p["labels"] is not None else None,
            schema=dict(fields=canonical_fields(p["schema"])) if p["schema"] is not None else None,
            timePartitioning=dict(
                type=partitioning["type"],
                field=partitioning.get("field"),
                expirationMs=int64(partitioning.get("expiration_ms")),
            ) if partitioning else None,
            requirePartitionFilter=p["require_partition_filter"],
            clustering=dict(fields=p["clustering"]) if p["clustering"] is not None else None,
        )

    def normalize(self, actual):
        actual = dict(actual)
        actual["schema"] = dict(fields=canonical_fields(actual.get("schema", {}).get("fields")))
        return actual

    def changes(self, actual, desired):
        others = {k: v for k, v in desired.items() if k != "schema"}
        changed = super().changes(actual, others)
        self.blocked = []
        partitioning, current = desired.get("timePartitioning"), actual.get("timePartitioning")
        if partitioning and "timePartitioning" in changed:
            if not current:
                self.blocked.append("partitioning cannot be added to an existing table")
            elif (current.get("type"), current.get("field")) != (partitioning["type"], partitioning.get("field")):
                self.blocked.append("partitioning would change from %s on %s to %s on %s" % (
                    current.get("type"), current.get("field") or "ingestion time",
                    partitioning["type"], partitioning.get("field") or "ingestion time"))
            else:
                self.data_loss = expiration_loss(current.get("expirationMs"), partitioning.get("expirationMs"))
        if "schema" in desired:
            merged, blocked = plan_schema(desired["schema"]["fields"], actual["schema"]["fields"])
            self.blocked += blocked
            if blocked or merged != actual["schema"]["fields"]:
                changed = sorted(changed + ["schema"])
                if not blocked:  # in place: what gets sent (and shown in the diff) is the merged schema
                    desired["schema"] = dict(fields=merged)
        return changed

    def plan_update(self, actual, desired, changed_fields):
        if not self.blocked:
            if self.data_loss and not self.params["allow_data_loss"]:
                raise ResourceError(
                    "%s %s: %s. Nothing was changed. Set allow_data_loss: true if that history may go "
                    "(bigquery_allow_data_loss / mlops_bigquery_allow_data_loss in the bigquery role), or keep "
                    "the current expiration" % (self.kind, self.name, self.data_loss))
            if self.data_loss:
                self.module.warn("%s %s: %s" % (self.kind, self.name, self.data_loss))
            return "update"
        # What re-creating costs, from the table as read (numRows leaves out rows still in the streaming buffer):
        # said in the error, the warning, the result and the diff.
        self.data_loss = "all %s rows (%s bytes) of the table would be lost" % (
            actual.get("numRows", "its"), actual.get("numBytes", "?"))
        if not self.params["recreate"]:
            raise ResourceError(
                "%s %s cannot be changed in place: %s. Nothing was changed. Set recreate: true to delete and re-create "
                "the table (%s; the bigquery role: -e mlops_bigquery_recreate_tables=%s), or migrate the data yourself"
                % (self.kind, self.name, "; ".join(self.blocked), self.data_loss, self.params["table_id"]))
        self.module.warn("%s %s is replaced by a new empty table, %s, because %s"
                         % (self.kind, self.name, self.data_loss.upper(), "; ".join(self.blocked)))
        return "recreate"

    def read(self):
        return self.client.get("bigquery", self.path, resource=self.name)

    def report(self, result):
        if self.data_loss and result.get("changed"):
            result["data_loss"] = self.data_loss
            if "diff" in result:  # shown above the diff by --diff
                result["diff"]["after_header"] = "%s (%s)" % (self.name, self.data_loss)

    def create(self, desired):
        path = table_path(self.params["project"], self.params["dataset_id"])
        return self.client.request("POST", "bigquery", path, resource=self.name, body=desired)

    def update(self, actual, desired, changed_fields):
        return self.client.request("PATCH", "bigquery", self.path, resource=self.name,
                                   body=patch_body(actual, desired, changed_fields),
                                   headers={"If-Match": actual["etag"]} if actual.get("etag") else None)

    def delete(self, actual):
        self.client.request("DELETE", "bigquery", self.path, resource=self.name)


def main():
    module = GcpModule(
        argument_spec=dict(
            dataset_id=dict(type="str", required=True),
            table_id=dict(type="str", required=True, aliases=["name"]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            description=dict(type="str"),
            labels=dict(type="dict"),
            # Nested columns are checked by schema_errors(): argument_spec cannot recurse.
            schema=dict(
                type="list",
                elements="dict",
                options=dict(
                    name=dict(type="str", required=True),
                    type=dict(type="str", required=True),
                    mode=dict(type="str", choices=list(MODES), default="NULLABLE"),
                    description=dict(type="str"),
                    fields=dict(type="list", elements="dict"),
                ),
            ),
            time_partitioning=dict(
                type="dict",
                options=dict(
                    type=dict(type="str", choices=["HOUR", "DAY", "MONTH", "YEAR"], default="DAY"),
                    field=dict(type="str"),
                    expiration_ms=dict(type="int"),
                ),
            ),
            require_partition_filter=dict(type="bool"),
            clustering=dict(type="list", elements="str"),
            recreate=dict(type="bool", default=False),
            allow_data_loss=dict(type="bool", default=False),
        ),
    )
    converge(Table(module))


if __name__ == "__main__":
    main()
