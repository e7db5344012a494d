"""`make local INVENTORY=...`: the local services take their names and the served model from the inventory."""

from __future__ import annotations

import json
import re

import pytest

from tests.apps.conftest import ROOT
from tests.standins import services

NAMES = ("project", "dataset", "bucket", "model_name", "model_alias")


def test_an_inventory_of_ones_own_names_the_model_and_the_resources(tmp_path):
    inventory = tmp_path / "mine.yml"
    inventory.write_text("all:\n  vars:\n    mlops_target: local\n    mlops_gcp_project: churn-local\n"
                         "    mlops_gcp_region: us-central1\n    mlops_model_name: churn\n    mlops_model_alias: prod\n"
                         "    mlops_bigquery_dataset: churn_{{ mlops_model_alias }}\n")
    mine = services.local_settings(inventory=inventory)
    assert {key: mine[key] for key in NAMES} == {
        "project": "churn-local", "dataset": "churn_prod", "bucket": "churn-local-mlflow-artifacts",
        "model_name": "churn", "model_alias": "prod"}
    # Features and label not set: the collection's defaults, the diabetes example's regression.
    assert mine["label"]["name"] == "disease_progression" and len(mine["features"]) == 10


def test_the_default_is_the_checkouts_local_inventory():
    default = services.local_settings()
    assert {key: default[key] for key in NAMES} == {"project": "local-project", "dataset": "mlops",
                                                    "bucket": "local-project-mlflow-artifacts",
                                                    "model_name": "diabetes-progression", "model_alias": "champion"}
    assert services.serving_declarations(default) == {
        "MODEL_TASK": "regression", "MODEL_LABEL_TYPE": "FLOAT", "MODEL_POSITIVE_CLASS": "", "MODEL_CLASSES": "",
        "MODEL_FEATURES": json.dumps(default["features"])}


def test_the_serving_api_gets_the_label_and_features_the_inventory_declares():
    """make local INVENTORY=examples/churn/inventory serves a classifier: the serving process gets what the serving
    role would give it (task, label type, classes, positive class, the features with their categories)."""
    churn = services.local_settings(inventory=ROOT / "examples" / "churn" / "inventory")
    assert {key: churn[key] for key in NAMES} == {"project": "local-project", "dataset": "churn",
                                                  "bucket": "local-project-mlflow-artifacts", "model_name": "churn",
                                                  "model_alias": "champion"}
    env = services.serving_env(churn)
    assert (env["MODEL_NAME"], env["BIGQUERY_DATASET"]) == ("churn", "churn")
    declared = {key: value for key, value in env.items() if key.startswith("MODEL_")}
    assert {key: declared[key] for key in ("MODEL_TASK", "MODEL_LABEL_TYPE", "MODEL_POSITIVE_CLASS",
                                           "MODEL_CLASSES")} == {
        "MODEL_TASK": "classification", "MODEL_LABEL_TYPE": "INTEGER", "MODEL_POSITIVE_CLASS": "1",
        "MODEL_CLASSES": "[0, 1]"}
    features = {feature["name"]: feature for feature in json.loads(declared["MODEL_FEATURES"])}
    assert features["plan"]["categories"] == ["basic", "standard", "premium"]
    assert features["payment_method"]["unknown"] == "allow"
    # The serving app reads them as the role's would be read.
    from mlops_serving.config import Settings

    settings = Settings.from_env(dict(declared, MLFLOW_TRACKING_URI="http://127.0.0.1:5000", MODEL_NAME="churn",
                                      BIGQUERY_PROJECT="local-project"))
    assert (settings.task, settings.positive_class, settings.classes) == ("classification", 1, (0, 1))
    assert {spec.name: spec.unknown for spec in settings.features}["payment_method"] == "allow"


def test_a_boolean_positive_class_is_written_as_the_role_writes_it():
    declared = services.serving_declarations({"label": {"name": "left", "type": "BOOLEAN", "positive_class": True},
                                              "features": []})
    assert (declared["MODEL_TASK"], declared["MODEL_POSITIVE_CLASS"], declared["MODEL_CLASSES"]) == (
        "classification", "true", "")


def test_an_unreadable_inventory_is_named(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("all: [not, a, mapping\n")
    with pytest.raises(RuntimeError, match="cannot read inventory %s" % re.escape(str(broken))):
        services.local_settings(inventory=broken)


def test_a_serving_api_started_for_another_inventory_is_not_reused(tmp_path):
    """make local INVENTORY=... after make local: the running API serves the other model, so it is restarted."""
    mine = tmp_path / "mine.yml"
    mine.write_text("all:\n  vars:\n    mlops_target: local\n    mlops_gcp_project: local-project\n"
                    "    mlops_gcp_region: us-central1\n    mlops_model_name: churn\n")
    default = services.local_settings()
    state = tmp_path / "state"
    state.mkdir()
    assert services.serves_other_settings(state, default), "nothing recorded: not known to be ours"
    (state / "serving.settings.json").write_text(json.dumps(services.serving_settings(default)))
    assert not services.serves_other_settings(state, default)
    assert services.serves_other_settings(state, services.local_settings(inventory=mine))
