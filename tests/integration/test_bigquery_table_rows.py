"""bigquery_table_rows and model_quality_info against the BigQuery emulator, through a recording proxy: records are
written once (check mode, diff, a re-run), refused rows write nothing, and live quality is read per version."""

from __future__ import annotations

import datetime

import pytest
import requests

from tests.conftest import PROJECT

SCHEMA = [
    {"name": "decision_id", "type": "STRING", "mode": "REQUIRED"},
    {"name": "decided_at", "type": "TIMESTAMP", "mode": "REQUIRED"},
    {"name": "reasons", "type": "STRING", "mode": "REPEATED"},
    {"name": "metrics", "type": "RECORD", "mode": "REPEATED",
     "fields": [{"name": "metric", "type": "STRING"}, {"name": "value", "type": "FLOAT"}]},
]


@pytest.fixture
def dataset(bigquery, unique):
    name = "rows_" + unique
    base = "%s/bigquery/v2/projects/%s/datasets" % (bigquery.target, PROJECT)
    assert requests.post(base, json={"datasetReference": {"projectId": PROJECT, "datasetId": name}},
                         timeout=10).status_code == 200
    return name


def create_table(bigquery, dataset, table, schema):
    url = "%s/bigquery/v2/projects/%s/datasets/%s/tables" % (bigquery.target, PROJECT, dataset)
    body = {"tableReference": {"projectId": PROJECT, "datasetId": dataset, "tableId": table},
            "schema": {"fields": schema}}
    assert requests.post(url, json=body, timeout=10).status_code == 200


def rows_of(bigquery, dataset, table):
    url = "%s/bigquery/v2/projects/%s/datasets/%s/tables/%s/data" % (bigquery.target, PROJECT, dataset, table)
    return requests.get(url, timeout=10).json().get("rows") or []


def run(gcp_module, bigquery, module, check=False, **options):
    args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints={"bigquery": bigquery.url}, timeout=20)
    return gcp_module(module, dict(args, **options), check=check)


def inserts(bigquery):
    return [path for _method, path in bigquery.writes() if path.endswith("/insertAll")]


def record(decision_id, **values):
    return dict(dict(decision_id=decision_id, decided_at="2026-12-03T10:00:00Z", reasons=["worse"],
                     metrics=[{"metric": "rmse", "value": 1.5}]), **values)


def test_records_are_written_once(gcp_module, bigquery, dataset):
    create_table(bigquery, dataset, "audit", SCHEMA)
    options = dict(dataset_id=dataset, table_id="audit", key="decision_id", rows=[record("a"), record("b")])

    planned = run(gcp_module, bigquery, "bigquery_table_rows", check=True, **options)
    assert planned["rc"] == 0 and planned["changed"] is True and planned["inserted"] == ["a", "b"], planned
    assert planned["diff"] == {"before": {"decision_id": []}, "after": {"decision_id": ["a", "b"]}}
    assert rows_of(bigquery, dataset, "audit") == [] and inserts(bigquery) == []

    written = run(gcp_module, bigquery, "bigquery_table_rows", **options)
    assert written["rc"] == 0 and written["changed"] is True and written["inserted"] == ["a", "b"], written
    assert len(rows_of(bigquery, dataset, "audit")) == 2

    bigquery.clear()
    options["rows"].append(record("c", reasons=[]))
    again = run(gcp_module, bigquery, "bigquery_table_rows", **options)
    assert again["changed"] is True and again["inserted"] == ["c"] and again["present"] == ["a", "b"], again
    assert len(inserts(bigquery)) == 1

    bigquery.clear()
    converged = run(gcp_module, bigquery, "bigquery_table_rows", **options)
    assert converged["changed"] is False and converged["inserted"] == [], converged
    assert inserts(bigquery) == []
    assert len(rows_of(bigquery, dataset, "audit")) == 3


def test_bad_records_are_refused_before_any_request_and_refused_rows_write_nothing(gcp_module, bigquery, dataset):
    create_table(bigquery, dataset, "audit", SCHEMA)
    bad = run(gcp_module, bigquery, "bigquery_table_rows", dataset_id=dataset, table_id="audit", key="decision_id",
              rows=[record("a"), record("a"), {"decided_at": "2026-12-03T10:00:00Z"}])
    assert bad["rc"] != 0 and "decision_id a given more than once" in bad["msg"], bad
    assert "record #3 has no decision_id" in bad["msg"] and bigquery.requests == []

    refused = run(gcp_module, bigquery, "bigquery_table_rows", dataset_id=dataset, table_id="audit",
                  key="decision_id", rows=[record("a"), record("b", nope="no such column")])
    assert refused["rc"] != 0 and "none was written" in refused["msg"], refused
    assert rows_of(bigquery, dataset, "audit") == []

    missing = run(gcp_module, bigquery, "bigquery_table_rows", dataset_id=dataset, table_id="nowhere",
                  key="decision_id", rows=[record("a")])
    assert missing["rc"] != 0 and "nowhere" in missing["msg"] and missing["status"] == 404, missing


def test_live_quality_is_compared_on_the_windows_both_versions_served(gcp_module, bigquery, dataset):
    schema = [{"name": n, "type": t} for n, t in (
        ("window_start", "TIMESTAMP"), ("model_name", "STRING"), ("model_version", "STRING"),
        ("model_alias", "STRING"), ("feature", "STRING"), ("metric_type", "STRING"), ("value", "FLOAT"))]
    create_table(bigquery, dataset, "drift_metrics", schema)
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for hours, version, alias, accuracy, volume in ((1, "3", "champion", 0.70, 100), (1, "4", "challenger", 0.80, 50),
                                                    (2, "3", "champion", 0.90, 300), (2, "4", "challenger", 0.60, 50),
                                                    (3, "3", "champion", 0.10, 100)):
        start = (now - datetime.timedelta(hours=hours)).isoformat()
        common = dict(window_start=start, model_name="churn", model_version=version, model_alias=alias)
        rows += [dict(common, metric_type="accuracy", value=accuracy), dict(common, metric_type="volume", value=volume)]
    rows.append(dict(window_start=now.isoformat(), model_name="churn", model_version="4", feature="plan",
                     metric_type="accuracy", value=0.0))  # a feature's row is not model quality
    url = "%s/bigquery/v2/projects/%s/datasets/%s/tables/drift_metrics/insertAll" % (bigquery.target, PROJECT, dataset)
    assert not requests.post(url, json={"rows": [{"json": row} for row in rows]}, timeout=10).json().get(
        "insertErrors")

    live = run(gcp_module, bigquery, "model_quality_info", dataset_id=dataset, model_name="churn",
               versions=["3", "4"], metrics=["accuracy", "rmse"])
    assert live["rc"] == 0 and live["changed"] is False, live
    assert live["windows"] == {"accuracy": 2}
    assert live["versions"]["3"]["accuracy"] == pytest.approx((100 * 0.70 + 300 * 0.90) / 400)
    assert live["versions"]["4"]["accuracy"] == pytest.approx((50 * 0.80 + 50 * 0.60) / 100)
    assert live["predictions"] == {"3": {"accuracy": 400}, "4": {"accuracy": 100}}
    # A query job is a POST, but only ever a SELECT.
    assert inserts(bigquery) == [] and {path for _method, path in bigquery.writes()} == {
        "/bigquery/v2/projects/%s/queries" % PROJECT}

    alone = run(gcp_module, bigquery, "model_quality_info", dataset_id=dataset, model_name="churn",
                versions=["3", "9"], metrics=["accuracy"])
    assert alone["versions"] == {} and alone["windows"] == {}, alone
