# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""BigQuery v2 REST paths shared by the BigQuery modules."""

from __future__ import annotations


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
