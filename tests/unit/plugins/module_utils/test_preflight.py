"""The preflight's pure parts: the monthly cost estimate, tier and quantity parsing, the feature schema rules
and the table. Its lists are checked against the stand-ins and inventories in
tests/integration/test_preflight_lists.py."""

from __future__ import annotations

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils import preflight
from ansible_collections.deployml.mlops.plugins.module_utils.preflight import (
    feature_schema_errors, memory_gib, monthly_estimate, render, sql_tier_shape)

DEV = {"cloudsql": {"tier": "db-custom-1-3840", "edition": "ENTERPRISE", "availability_type": "ZONAL",
                    "disk_size_gb": 10, "backups": False},
       "cloud_run": [{"name": "mlflow", "cpu": "1", "memory": "2Gi", "min_instances": 0},
                     {"name": "serving", "cpu": "1", "memory": "1Gi", "min_instances": 0},
                     {"name": "grafana", "cpu": "1", "memory": "1Gi", "min_instances": 0}],
       "secrets": 3, "scheduler_jobs": 1}


def items(estimate):
    return {i["item"]: i["usd"] for i in estimate["items"]}


def test_the_dev_inventory_costs_about_52_dollars_a_month():
    estimate = monthly_estimate(DEV)
    assert items(estimate) == {
        # (1 vCPU x 0.0413 + 3.75 GB x 0.007) x 730 h
        "Cloud SQL instance": 49.31, "Cloud SQL SSD storage": 1.70,
        "Cloud Run mlflow": 0.0, "Cloud Run serving": 0.0, "Cloud Run grafana": 0.0,
        "Cloud Storage buckets": 0.12, "Artifact Registry images": 0.50,
        "BigQuery storage": 0.20, "Secret Manager": 0.18, "Cloud Scheduler": 0.10}
    assert estimate["total_usd"] == 52.11
    assert estimate["basis"].startswith("list price, us-central1/europe-west1, as of %s" % preflight.PRICES_AS_OF)
    assert "https://cloud.google.com/sql/pricing" in estimate["sources"]


def test_high_availability_doubles_the_instance_and_its_disk_and_backups_add_one_disk():
    estimate = items(monthly_estimate(dict(DEV, cloudsql=dict(DEV["cloudsql"], availability_type="REGIONAL",
                                                              backups=True, disk_size_gb=20))))
    assert estimate["Cloud SQL instance"] == 98.62
    assert estimate["Cloud SQL SSD storage"] == 6.80       # 20 GB x 0.17 x 2
    assert estimate["Cloud SQL backups"] == 1.60            # 20 GB x 0.08


def test_min_instances_are_billed_all_month_at_the_idle_rate():
    run = [{"name": "serving", "cpu": "1", "memory": "1Gi", "min_instances": 1},
           {"name": "mlflow", "cpu": "2", "memory": "512Mi", "min_instances": 2}]
    estimate = items(monthly_estimate({"cloud_run": run}))
    assert estimate["Cloud Run serving"] == 13.14            # 730 h x 3600 s x (1 x 0.0000025 + 1 x 0.0000025)
    assert estimate["Cloud Run mlflow"] == 32.85             # 2 x 2,628,000 s x (2 x 0.0000025 + 0.5 x 0.0000025)


def test_shared_core_legacy_and_unknown_tiers():
    assert sql_tier_shape("db-f1-micro") == ("shared", None)
    assert sql_tier_shape("db-custom-4-15360") == (4, 15.0)
    assert sql_tier_shape("db-n1-standard-2") == (2, 7.5)
    assert sql_tier_shape("db-perf-optimized-N-2") is None
    assert items(monthly_estimate({"cloudsql": {"tier": "db-g1-small"}}))["Cloud SQL instance"] == 25.55
    unknown = monthly_estimate({"cloudsql": {"tier": "db-perf-optimized-N-2", "edition": "ENTERPRISE_PLUS"}})
    assert "Cloud SQL instance" not in items(unknown) and "not estimated" in unknown["notes"][0]


@pytest.mark.parametrize("value, gib", [("512Mi", 0.5), ("1Gi", 1.0), ("2G", 2e9 / 2 ** 30), (" 4Gi", 4.0)])
def test_memory_quantities(value, gib):
    assert memory_gib(value) == pytest.approx(gib)


def test_storage_assumptions_can_be_replaced():
    estimate = items(monthly_estimate({"storage_gb": {"artifact_registry": 20, "bigquery": 100}}))
    assert estimate["Artifact Registry images"] == 2.0 and estimate["BigQuery storage"] == 2.0


def test_schema_rules():
    assert feature_schema_errors([], None) == ["mlops_features must be a non-empty list of columns ({name, type, "
                                               "description})", "mlops_label must be a column with a name and a type"]
    errors = feature_schema_errors([{"name": "tags", "type": "STRING", "mode": "REPEATED", "description": "x"},
                                    {"name": "n", "type": "int64", "description": "aliases are fine"}],
                                   {"name": "y", "type": "JSON"})
    assert errors == ["feature tags: a REPEATED column cannot be a feature",
                      "label y: type JSON cannot be compared by the drift job (use one of INTEGER, FLOAT, NUMERIC, "
                      "BIGNUMERIC, STRING, BOOLEAN)"]


def test_declarations_beyond_the_column_are_checked_not_refused():
    plan = {"name": "plan", "type": "STRING", "description": "x", "categories": ["basic", "pro"], "unknown": "allow"}
    churned = {"name": "churned", "type": "INTEGER", "task": "classification", "classes": [0, 1], "positive_class": 1}
    assert feature_schema_errors([plan], churned) == []
    errors = feature_schema_errors([dict(plan, categories=["a", "a"], unknown="maybe")],
                                   dict(churned, task="ranking", positive_class=2, mode="REQUIRED", colour="red"))
    assert errors == ["churned: unknown keys colour", "feature plan: categories must be a non-empty list of "
                      "distinct values", "feature plan: unknown must be refuse or allow, not 'maybe'",
                      "label churned: task must be one of regression, classification, auto, not 'ranking'",
                      "label churned: positive_class 2 is not one of the classes"]
    assert feature_schema_errors([plan], dict(churned, task="regression", positive_class=None)) == [
        "label churned: a regression has no classes or positive_class"]


def test_the_table_puts_problems_first_and_keeps_commands_whole():
    command = "gcloud projects add-iam-policy-binding p --member=user:a@example.com --role=roles/run.admin " * 2
    lines = render("Title", [dict(check="identity", status="ok", detail="user:a@example.com", fix=[]),
                             dict(check="permissions", status="missing", detail="lacks " + "x.y.z " * 40,
                                  fix=[command.strip()])], monthly_estimate(DEV), width=100)
    assert lines[0] == "Title" and lines[3].startswith("permissions  MISSING  lacks x.y.z")
    assert any(line.strip() == "fix: " + command.strip() for line in lines)
    assert all(len(line) <= 100 for line in lines if "fix: gcloud" not in line and "http" not in line)
    assert any(line.startswith("  Total") and "$52.11" in line for line in lines)
