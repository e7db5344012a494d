# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""BigQuery v2 REST paths shared by the BigQuery modules."""

from __future__ import annotations

import re

COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
# BigQuery's REST API names types by their legacy names; standard SQL aliases map onto them.
TYPE_ALIASES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN", "STRUCT": "RECORD",
                "DECIMAL": "NUMERIC", "BIGDECIMAL": "BIGNUMERIC"}
TYPES = frozenset(("STRING", "BYTES", "INTEGER", "FLOAT", "NUMERIC", "BIGNUMERIC", "BOOLEAN", "TIMESTAMP",
                   "DATE", "TIME", "DATETIME", "GEOGRAPHY", "JSON", "INTERVAL", "RANGE", "RECORD"))
MODES = ("NULLABLE", "REQUIRED", "REPEATED")


def dataset_path(project, dataset=None):
    path = "/bigquery/v2/projects/%s/datasets" % project
    return path if dataset is None else "%s/%s" % (path, dataset)


def table_path(project, dataset, table=None):
    path = dataset_path(project, dataset) + "/tables"
    return path if table is None else "%s/%s" % (path, table)


def list_tables(client, project, dataset, limit):
    """IDs of up to `limit` tables of a dataset."""
    listing = client.request("GET", "bigquery", table_path(project, dataset),
                             resource="projects/%s/datasets/%s" % (project, dataset),
                             params={"maxResults": limit})
    return [t["tableReference"]["tableId"] for t in listing.get("tables", [])][:limit]


def canonical_type(column_type):
    column_type = (column_type or "").upper()
    return TYPE_ALIASES.get(column_type, column_type)


def schema_errors(fields, path=""):
    """Problems in a user's schema, as messages naming the column."""
    errors, seen = [], set()
    for index, field in enumerate(fields or []):
        name = field.get("name")
        where = "%s%s" % (path, name) if name else "%scolumn #%d" % (path, index + 1)
        if not isinstance(name, str) or not COLUMN_NAME.match(name):
            errors.append("%s: column names use letters, digits and underscores and do not start with a digit"
                          % where)
        elif name.lower() in seen:  # BigQuery column names are case-insensitive
            errors.append("%s: duplicate column name" % where)
        else:
            seen.add(name.lower())
        column_type = canonical_type(field.get("type"))
        if column_type not in TYPES:
            errors.append("%s: unknown type %r (use one of %s)" % (where, field.get("type"), ", ".join(sorted(TYPES))))
        if (field.get("mode") or "NULLABLE").upper() not in MODES:
            errors.append("%s: unknown mode %r (use one of %s)" % (where, field.get("mode"), ", ".join(MODES)))
        unknown = set(field) - {"name", "type", "mode", "description", "fields"}
        if unknown:
            errors.append("%s: unknown keys %s" % (where, ", ".join(sorted(unknown))))
        if column_type == "RECORD":
            if not field.get("fields"):
                errors.append("%s: a RECORD column needs fields" % where)
            errors += schema_errors(field.get("fields"), where + ".")
        elif field.get("fields"):
            errors.append("%s: only RECORD columns have fields" % where)
    return errors
