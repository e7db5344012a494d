"""`make local INVENTORY=...`: the local services take their names and the served model from the inventory."""

from __future__ import annotations

import re

import pytest

from tests.standins import services


def test_an_inventory_of_ones_own_names_the_model_and_the_resources(tmp_path):
    inventory = tmp_path / "mine.yml"
    inventory.write_text("all:\n  vars:\n    mlops_target: local\n    mlops_gcp_project: churn-local\n"
                         "    mlops_gcp_region: us-central1\n    mlops_model_name: churn\n    mlops_model_alias: prod\n"
                         "    mlops_bigquery_dataset: churn_{{ mlops_model_alias }}\n")
    mine = services.local_settings(inventory=inventory)
    assert mine == {"project": "churn-local", "dataset": "churn_prod", "bucket": "churn-local-mlflow-artifacts",
                    "model_name": "churn", "model_alias": "prod"}


def test_the_default_is_the_checkouts_local_inventory():
    assert services.local_settings() == {"project": "local-project", "dataset": "mlops",
                                         "bucket": "local-project-mlflow-artifacts",
                                         "model_name": "diabetes-progression", "model_alias": "champion"}


def test_an_unreadable_inventory_is_named(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("all: [not, a, mapping\n")
    with pytest.raises(RuntimeError, match="cannot read inventory %s" % re.escape(str(broken))):
        services.local_settings(inventory=broken)
