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


# Query parameter types by Python type; bool before int (a bool is an int in Python).
PARAMETER_TYPES = ((bool, "BOOL"), (int, "INT64"), (float, "FLOAT64"), (str, "STRING"))
# How long one jobs.query / getQueryResults call may hold the connection before answering jobComplete=false.
QUERY_WAIT_MS = 10000


def _parameter_type(value):
    for python_type, bigquery_type in PARAMETER_TYPES:
        if isinstance(value, python_type):
            return bigquery_type
    raise TypeError("no BigQuery query parameter type for %r" % (value,))


def query_parameter(name, value):
    """A named query parameter (jobs.query's QueryParameter) for a scalar or a list of scalars of one type."""
    if isinstance(value, (list, tuple)):
        element = _parameter_type(value[0]) if value else "STRING"
        return {"name": name, "parameterType": {"type": "ARRAY", "arrayType": {"type": element}},
                "parameterValue": {"arrayValues": [{"value": str(v)} for v in value]}}
    return {"name": name, "parameterType": {"type": _parameter_type(value)},
            "parameterValue": {"value": str(value).lower() if isinstance(value, bool) else str(value)}}


def _cell(field, value):
    """A cell of a query result (every scalar comes as a string) in the field's Python type."""
    if value is None:
        return None
    if field.get("mode") == "REPEATED":
        return [_cell(dict(field, mode="NULLABLE"), item["v"]) for item in value]
    kind = canonical_type(field.get("type"))
    if kind == "RECORD":
        return {sub["name"]: _cell(sub, cell["v"]) for sub, cell in zip(field["fields"], value["f"])}
    if kind == "INTEGER":
        return int(value)
    if kind == "FLOAT":
        return float(value)
    if kind == "BOOLEAN":
        return value.lower() == "true"
    return value


def query(client, project, sql, parameters=None, location=None):
    """Rows of a standard SQL query, as dicts. Waits for the job and follows the result pages."""
    resource = "projects/%s/queries" % project
    body = {"query": sql, "useLegacySql": False, "timeoutMs": QUERY_WAIT_MS, "parameterMode": "NAMED",
            "queryParameters": [query_parameter(name, value) for name, value in sorted((parameters or {}).items())]}
    if location:
        body["location"] = location
    page = client.request("POST", "bigquery", "/bigquery/v2/%s" % resource, resource=resource, body=body)
    job = page.get("jobReference") or {}
    results = "/bigquery/v2/projects/%s/queries/%s" % (project, job.get("jobId"))
    params = {"timeoutMs": QUERY_WAIT_MS, "location": job.get("location") or location}
    page = client.wait(lambda: page if page.get("jobComplete") else client.request(
        "GET", "bigquery", results, resource=resource, params=params), lambda p: p.get("jobComplete"),
        resource=resource)
    rows = []
    while True:
        fields = (page.get("schema") or {}).get("fields") or []
        rows += [{f["name"]: _cell(f, cell["v"]) for f, cell in zip(fields, row["f"])} for row in page.get("rows") or []]
        if not page.get("pageToken"):
            return rows
        page = client.request("GET", "bigquery", results, resource=resource,
                              params=dict(params, pageToken=page["pageToken"]))


def insert_rows(client, project, dataset, table, rows, insert_ids):
    """Stream rows into a table (tabledata.insertAll); an insert ID makes a retried row land once."""
    path = table_path(project, dataset, table) + "/insertAll"
    resource = "projects/%s/datasets/%s/tables/%s" % (project, dataset, table)
    answer = client.request("POST", "bigquery", path, resource=resource, body={
        "rows": [{"insertId": insert_id, "json": row} for insert_id, row in zip(insert_ids, rows)]})
    return [("row %d: %s" % (e.get("index", 0), "; ".join(
        "%s%s" % (x.get("location") + ": " if x.get("location") else "", x.get("message") or x.get("reason"))
        for x in e.get("errors") or []))) for e in answer.get("insertErrors") or []]
