#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bigquery_table_rows
short_description: Make sure records are in a BigQuery table, once each
version_added: 0.1.0
description:
  - Appends records, such as audit entries, to a BigQuery table, each identified by the value of its O(key) column.
  - Reads which keys the table holds already (C(jobs.query)) and streams the others in (C(tabledata.insertAll)),
    with the key as the insert ID, so a retried request or a re-run adds each record once.
  - Never updates or deletes a row. A record whose key is in the table already is left as it is, even when its other
    values differ.
options:
  dataset_id:
    description: The dataset of the table.
    type: str
    required: true
  table_id:
    description: The table.
    type: str
    required: true
  key:
    description: The column that identifies a record (a STRING column); every record must have a value in it.
    type: str
    required: true
  rows:
    description: The records, as column name to value (nested records and lists for RECORD and REPEATED columns).
    type: list
    elements: dict
    required: true
  location:
    description: The dataset's location, such as V(EU); when not set, BigQuery finds it.
    type: str
extends_documentation_fragment:
  - deployml.mlops.gcp
attributes:
  check_mode:
    description: Reads which records are missing and reports them without writing.
    support: full
  diff_mode:
    description: Shows the keys of the records present before and after.
    support: full
  idempotent:
    description: A record whose key is in the table is not written again.
    support: full
  action_group:
    description: Use C(group/deployml.mlops.gcp) in C(module_defaults) to set the common options once.
    support: full
    membership:
      - deployml.mlops.gcp
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Record a promotion
  deployml.mlops.bigquery_table_rows:
    project: my-project
    dataset_id: mlops
    table_id: promotions
    key: decision_id
    rows:
      - decision_id: 5b0f0a2e-7f4c-4c1e-9a53-2c9f6d3f1a10
        decided_at: "2026-12-03T10:00:00Z"
        model_name: churn
        alias: champion
        decision: promoted
        to_version: "4"
"""

RETURN = r"""
inserted:
  description: Keys of the records written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [5b0f0a2e-7f4c-4c1e-9a53-2c9f6d3f1a10]
present:
  description: Keys of the given records that the table held already.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.deployml.mlops.plugins.module_utils.bigquery import COLUMN_NAME, insert_rows, query
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule

# tabledata.insertAll takes up to 50,000 rows a request; an audit trail's records come a few at a time.
MAX_ROWS = 10000


def input_errors(params):
    rows, key = params["rows"], params["key"]
    if not COLUMN_NAME.match(key):
        return ["key %r is not a column name" % key]
    if len(rows) > MAX_ROWS:
        return ["%d rows given; at most %d a run" % (len(rows), MAX_ROWS)]
    keys = [row.get(key) for row in rows]
    errors = ["record #%d has no %s" % (index + 1, key) for index, value in enumerate(keys) if value in (None, "")]
    duplicates = sorted({str(value) for value in keys if value not in (None, "") and keys.count(value) > 1})
    if duplicates:
        errors.append("%s %s given more than once" % (key, ", ".join(duplicates)))
    return errors


def main():
    module = GcpModule(argument_spec=dict(
        dataset_id=dict(type="str", required=True),
        table_id=dict(type="str", required=True),
        key=dict(type="str", required=True, no_log=False),
        rows=dict(type="list", elements="dict", required=True),
        location=dict(type="str"),
    ))
    p = module.params
    errors = input_errors(p)
    if errors:
        module.fail_json(msg="invalid rows for %s.%s: %s" % (p["dataset_id"], p["table_id"], "; ".join(errors)))
    keys = [str(row[p["key"]]) for row in p["rows"]]
    try:
        sql = "SELECT DISTINCT %s AS k FROM `%s.%s.%s` WHERE %s IN UNNEST(@keys)" % (
            p["key"], p["project"], p["dataset_id"], p["table_id"], p["key"])
        present = {row["k"] for row in query(module.client, p["project"], sql, {"keys": keys}, p["location"])}
        missing = [row for key, row in zip(keys, p["rows"]) if key not in present]
        inserted = [str(row[p["key"]]) for row in missing]
        if missing and not module.check_mode:
            errors = insert_rows(module.client, p["project"], p["dataset_id"], p["table_id"], missing, inserted)
            if errors:
                # insertAll writes all rows of a request or none: nothing was written, a re-run tries them again.
                module.fail_json(msg="BigQuery refused the rows for %s.%s, none was written: %s" % (
                    p["dataset_id"], p["table_id"], "; ".join(errors)), inserted=[], present=sorted(present))
    except GcpApiError as exc:
        module.fail_api(exc)
    before = sorted(k for k in keys if k in present)
    module.exit_json(changed=bool(missing), inserted=inserted, present=before,
                     diff=dict(before={p["key"]: before}, after={p["key"]: sorted(before + inserted)}))


if __name__ == "__main__":
    main()
