"""bigquery_table against the BigQuery emulator, through a recording proxy."""

from __future__ import annotations

import datetime
import json

import pytest
import requests

from tests.conftest import PROJECT

SCHEMA = [
    {"name": "prediction_id", "type": "STRING", "mode": "REQUIRED", "description": "unique id"},
    {"name": "timestamp", "type": "TIMESTAMP", "mode": "REQUIRED"},
    {"name": "model_version", "type": "INT64"},
    {"name": "context", "type": "STRUCT", "fields": [{"name": "region", "type": "STRING"},
                                                     {"name": "scores", "type": "FLOAT64", "mode": "REPEATED"}]},
]
PARTITIONING = {"type": "DAY", "field": "timestamp", "expiration_ms": 86400000}


@pytest.fixture
def table(bigquery, unique, gcp_module):
    """A fresh dataset; run() applies bigquery_table to a table in it, read() gets the table from the emulator."""
    dataset = "tables_" + unique
    base = "%s/bigquery/v2/projects/%s/datasets" % (bigquery.target, PROJECT)
    assert requests.post(base, json={"datasetReference": {"projectId": PROJECT, "datasetId": dataset}},
                         timeout=10).status_code == 200

    class Table:
        id = "predictions"
        url = "%s/%s/tables/predictions" % (base, dataset)

        def run(self, check=False, **options):
            args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints={"bigquery": bigquery.url},
                        dataset_id=dataset, table_id=self.id, timeout=20)
            args.update(options)
            return gcp_module("bigquery_table", args, check=check)

        def read(self):
            response = requests.get(self.url, timeout=10)
            return response.json() if response.status_code == 200 else None

        def full(self, **overrides):
            """The production-like table: schema, partitioning, filter and clustering."""
            return self.run(**dict(dict(schema=SCHEMA, time_partitioning=PARTITIONING, require_partition_filter=True,
                                        clustering=["model_version"], description="predictions"), **overrides))

    return Table()


def names_and_types(fields):
    return [(f["name"], f["type"], f.get("mode", "NULLABLE")) for f in fields]


def test_create_then_unchanged(table, bigquery):
    result = table.full(labels={"app": "mlops"})
    assert result["rc"] == 0 and result["changed"] is True, result
    actual = table.read()
    assert names_and_types(actual["schema"]["fields"])[:2] == [("prediction_id", "STRING", "REQUIRED"),
                                                               ("timestamp", "TIMESTAMP", "REQUIRED")]
    assert actual["schema"]["fields"][3]["fields"][1]["mode"] == "REPEATED"
    assert actual["timePartitioning"] == {"type": "DAY", "field": "timestamp", "expirationMs": "86400000"}
    assert actual["clustering"] == {"fields": ["model_version"]}
    assert actual["requirePartitionFilter"] is True

    bigquery.clear()
    again = table.full(labels={"app": "mlops"})
    assert again["changed"] is False, again
    assert bigquery.writes() == [] and len(bigquery.requests) == 1


def test_check_mode_create_writes_nothing(table, bigquery):
    result = table.full(check=True)
    assert result["changed"] is True and result["diff"]["before"] == {}
    assert [f["type"] for f in result["diff"]["after"]["schema"]["fields"]] == ["STRING", "TIMESTAMP", "INTEGER", "RECORD"]
    assert bigquery.writes() == [] and table.read() is None


def test_add_column_and_relax_mode_in_place(table, bigquery):
    table.full()
    wanted = [dict(SCHEMA[0], mode="NULLABLE")] + SCHEMA[1:] + [{"name": "latency_ms", "type": "FLOAT"}]

    bigquery.clear()
    preview = table.full(check=True, schema=wanted)
    assert preview["changed"] is True and preview["changed_fields"] == ["schema"]
    assert "recreated" not in preview
    assert [f["name"] for f in preview["diff"]["after"]["schema"]["fields"]][-1] == "latency_ms"
    assert bigquery.writes() == []

    bigquery.clear()
    result = table.full(schema=wanted)
    assert result["changed"] is True
    assert [r[0] for r in bigquery.writes()] == ["PATCH"], "in place: no delete, no insert"
    fields = table.read()["schema"]["fields"]
    assert names_and_types(fields)[0] == ("prediction_id", "STRING", "NULLABLE")
    assert names_and_types(fields)[-1] == ("latency_ms", "FLOAT", "NULLABLE")

    assert table.full(schema=wanted)["changed"] is False


def test_column_order_and_type_aliases_are_not_changes(table, bigquery):
    table.full()
    reordered = [SCHEMA[1], SCHEMA[0], dict(SCHEMA[2], type="INTEGER"), dict(SCHEMA[3], type="RECORD")]
    bigquery.clear()
    assert table.full(schema=reordered)["changed"] is False
    assert bigquery.writes() == []


def test_description_labels_clustering_update(table, bigquery):
    table.full(labels={"app": "mlops", "tier": "gold"})
    bigquery.clear()
    result = table.full(description="all predictions", labels={"app": "mlops"}, clustering=["model_version", "prediction_id"])
    assert result["changed_fields"] == ["clustering", "description", "labels"]
    assert result["diff"]["before"]["labels"] == {"app": "mlops", "tier": "gold"}
    assert [r[0] for r in bigquery.writes()] == ["PATCH"]
    actual = table.read()
    assert actual["description"] == "all predictions" and actual["labels"] == {"app": "mlops"}
    assert actual["clustering"]["fields"] == ["model_version", "prediction_id"]


@pytest.mark.parametrize("schema, expected", [
    (SCHEMA[:3], "column context would be dropped"),
    ([SCHEMA[0], SCHEMA[1], dict(SCHEMA[2], type="STRING"), SCHEMA[3]], "column model_version would change type from INTEGER to STRING"),
    ([SCHEMA[0], SCHEMA[1], dict(SCHEMA[2], mode="REQUIRED"), SCHEMA[3]], "column model_version would change mode from NULLABLE to REQUIRED"),
    (SCHEMA + [{"name": "must", "type": "STRING", "mode": "REQUIRED"}], "new column must is REQUIRED"),
    (SCHEMA[:3] + [dict(SCHEMA[3], fields=[{"name": "region", "type": "INT64"}])], "column context.region would change type"),
])
def test_incompatible_schema_change_fails_naming_the_column(table, bigquery, schema, expected):
    table.full()
    bigquery.clear()
    result = table.full(schema=schema)
    assert result["rc"] == 1 and expected in result["msg"], result["msg"]
    assert "recreate: true" in result["msg"]
    assert bigquery.writes() == []
    assert len(table.read()["schema"]["fields"]) == 4


def test_partitioning_change_fails_unless_recreate(table, bigquery):
    table.full()
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    rows = [{"json": {"prediction_id": "p%d" % i, "timestamp": now}} for i in range(3)]
    inserted = requests.post(table.url + "/insertAll", json={"rows": rows}, timeout=10)
    assert inserted.status_code == 200 and not inserted.json().get("insertErrors"), inserted.text
    moved = {"type": "HOUR", "field": "timestamp"}
    refused = table.full(time_partitioning=moved)
    assert refused["rc"] == 1 and "partitioning would change from DAY on timestamp to HOUR on timestamp" in refused["msg"]
    assert "all 3 rows" in refused["msg"] and "-e mlops_bigquery_recreate_tables=predictions" in refused["msg"]

    # Check mode says what would be lost, in the warning, the result and the diff.
    preview = table.full(time_partitioning=moved, recreate=True, check=True)
    assert preview["changed"] is True and preview["recreated"] is True
    assert "ALL 3 ROWS" in json.dumps(preview.get("warnings")), "recreating warns of data loss"
    assert preview["data_loss"].startswith("all 3 rows") and "all 3 rows" in preview["diff"]["after_header"]
    assert table.read()["timePartitioning"]["type"] == "DAY"

    bigquery.clear()
    result = table.full(time_partitioning=moved, recreate=True)
    assert result["rc"] == 0 and result["recreated"] is True
    assert [r[0] for r in bigquery.writes()] == ["DELETE", "POST"]
    assert table.read()["timePartitioning"]["type"] == "HOUR"


def test_expiration_update_in_place(table, bigquery):
    table.full()
    bigquery.clear()
    result = table.full(time_partitioning=dict(PARTITIONING, expiration_ms=172800000))
    assert result["changed_fields"] == ["timePartitioning"]
    assert [r[0] for r in bigquery.writes()] == ["PATCH"]
    assert table.read()["timePartitioning"]["expirationMs"] == "172800000"


DAYS = 86400000


def test_shorter_partition_expiration_is_refused_saying_how_much_history_goes(table, bigquery):
    """730 -> 30 days makes BigQuery delete about 700 days of partitions at once: refused before any write,
    in check mode too, unless allow_data_loss; then a warning, the figure in the result and the diff."""
    table.full(time_partitioning=dict(PARTITIONING, expiration_ms=730 * DAYS))
    figure = "partitions older than 30 days would be deleted: about 700 days of history " \
             "(partition expiration 730 -> 30 days)"
    shorter = dict(PARTITIONING, expiration_ms=30 * DAYS)
    bigquery.clear()
    for check in (True, False):
        refused = table.full(time_partitioning=shorter, check=check)
        assert refused["rc"] == 1 and figure in refused["msg"] and "allow_data_loss" in refused["msg"], refused
    assert bigquery.writes() == [], "refused before any write"
    assert table.read()["timePartitioning"]["expirationMs"] == str(730 * DAYS)

    preview = table.full(time_partitioning=shorter, allow_data_loss=True, check=True)
    assert preview["rc"] == 0 and preview["changed"] is True and preview["data_loss"] == figure, preview
    assert figure in preview["diff"]["after_header"] and figure in json.dumps(preview["warnings"])
    assert preview["diff"]["after"]["timePartitioning"]["expirationMs"] == str(30 * DAYS)
    assert bigquery.writes() == []

    result = table.full(time_partitioning=shorter, allow_data_loss=True)
    assert result["rc"] == 0 and result["data_loss"] == figure and figure in json.dumps(result["warnings"])
    assert [r[0] for r in bigquery.writes()] == ["PATCH"]
    assert table.read()["timePartitioning"]["expirationMs"] == str(30 * DAYS)

    bigquery.clear()
    longer = table.full(time_partitioning=dict(PARTITIONING, expiration_ms=90 * DAYS))
    assert longer["rc"] == 0 and "data_loss" not in longer and not longer.get("warnings"), "lengthening is safe"
    assert [r[0] for r in bigquery.writes()] == ["PATCH"]


def test_first_partition_expiration_on_a_table_kept_forever_is_refused(table, bigquery):
    """No expiration kept every partition: setting one deletes all those older than it."""
    forever = {"type": "DAY", "field": "timestamp"}
    table.full(time_partitioning=forever)
    bigquery.clear()
    refused = table.full(time_partitioning=dict(forever, expiration_ms=30 * DAYS))
    assert refused["rc"] == 1 and "partitions older than 30 days would be deleted" in refused["msg"], refused
    assert "kept forever -> 30 days" in refused["msg"] and bigquery.writes() == []
    assert "expirationMs" not in table.read()["timePartitioning"]


def test_absent(table, bigquery):
    table.full()
    preview = table.run(state="absent", check=True)
    assert preview["changed"] is True and table.read() is not None
    result = table.run(state="absent")
    assert result["changed"] is True and table.read() is None
    bigquery.clear()
    again = table.run(state="absent")
    assert again["changed"] is False and bigquery.writes() == []


def test_missing_dataset_is_reported(bigquery, gcp_module):
    result = gcp_module("bigquery_table", dict(project=PROJECT, auth_kind="anonymous", timeout=20,
                                               api_endpoints={"bigquery": bigquery.url},
                                               dataset_id="no_such_dataset", table_id="t", schema=SCHEMA[:1]))
    assert result["rc"] == 1 and "HTTP 404" in result["msg"] and "no_such_dataset" in result["msg"]


@pytest.mark.parametrize("options, expected", [
    ({"schema": [{"name": "x", "type": "VARCHAR"}]}, "x: unknown type 'VARCHAR'"),
    ({"schema": [{"name": "x", "type": "STRING"}, {"name": "X", "type": "STRING"}]}, "X: duplicate column name"),
    ({"schema": [{"name": "1x", "type": "STRING"}]}, "1x: column names use letters"),
    ({"schema": [{"name": "r", "type": "RECORD"}]}, "r: a RECORD column needs fields"),
    ({"schema": [{"name": "r", "type": "RECORD", "fields": [{"name": "a", "type": "NOPE"}]}]}, "r.a: unknown type 'NOPE'"),
    ({"schema": SCHEMA, "time_partitioning": {"field": "missing"}}, "time_partitioning.field 'missing' is not a column"),
    ({"schema": SCHEMA, "time_partitioning": {"field": "prediction_id"}}, "must be a TIMESTAMP, DATE or DATETIME column"),
    ({"schema": SCHEMA, "clustering": ["nope"]}, "clustering column 'nope' is not a top-level column"),
    ({"schema": SCHEMA, "clustering": ["a", "b", "c", "d", "e"]}, "at most 4 columns"),
    ({"schema": SCHEMA, "require_partition_filter": True}, "require_partition_filter needs time_partitioning"),
    ({"labels": {"a": 1}}, "label 'a' has value 1"),
])
def test_bad_input_fails_before_any_call(table, bigquery, options, expected):
    bigquery.clear()
    result = table.run(**options)
    assert result["rc"] == 1 and expected in result["msg"], result["msg"]
    assert bigquery.requests == []
