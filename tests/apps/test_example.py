"""The worked example (examples/diabetes_progression.py) against the stand-ins: a real MLflow server on a real
PostgreSQL (artifacts on the Cloud Storage emulator), the BigQuery emulator holding the mlops tables as the
bigquery role creates them from inventories/local, and the serving app as a real process.

The mlops tables are created by site.yml on inventories/local (its names and endpoints pointed at this
test's), as `make local` creates them. The example runs as a user runs it (its own process, configured by
arguments and environment). What it claims in its summary is checked against what the tables and MLflow
hold, and the expected values are recomputed here from scikit-learn's data set and the registered model,
not taken from the example.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from drift_fixtures import PROJECT, client_for, query
from tests.apps.conftest import ROOT, stop_group, wait_http
from tests.standins import services
from tests.standins.inventory import ENVIRONMENTS, settings

sys.path.insert(0, str(ROOT))
from examples import diabetes_progression as example  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.xdist_group("apps")

DRIFT_FACTOR = 1.15


def diabetes():
    """entity_id -> (features by offline_features column, target), straight from scikit-learn."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    return {"patient-%03d" % index: ({column: float(row[origin]) for column, (origin, _d) in example.FEATURES.items()},
                                     float(row["target"]))
            for index, row in frame.iterrows()}


def site(bigquery_endpoint, storage_endpoint, dataset, bucket):
    """ansible-playbook site.yml -i inventories/local, pointed at the emulators, with this test's names."""
    extra = json.dumps({"mlops_gcp_project": PROJECT, "mlops_bigquery_dataset": dataset,
                        "mlops_mlflow_artifacts_bucket": bucket,
                        "mlops_gcp_api_endpoints": {"bigquery": bigquery_endpoint, "storage": storage_endpoint}})
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "site.yml", "-i", "inventories/local",
                           "-e", extra], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def run_example(tracking_uri, bigquery_endpoint, dataset, model_name, summary_path, *extra):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLFLOW_", "MODEL_", "BIGQUERY_", "SERVING_", "MLOPS_"))}
    env.update({"MLFLOW_TRACKING_URI": tracking_uri, "BIGQUERY_API_ENDPOINT": bigquery_endpoint,
                "MLOPS_PROJECT": PROJECT, "MLOPS_DATASET": dataset})
    command = [sys.executable, "-m", "examples.diabetes_progression", "--model-name", model_name,
               "--summary-json", str(summary_path), "--drift-factor", str(DRIFT_FACTOR)] + list(extra)
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    print(proc.stdout)  # shown by pytest when the test fails
    assert proc.returncode == 0, "example failed:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-4000:])
    return proc.stdout, json.loads(summary_path.read_text())


def table(dataset, name):
    return "`%s.%s.%s`" % (PROJECT, dataset, name)


def window_predictions(client, dataset, summary):
    return query(client, "SELECT * FROM %s WHERE timestamp >= TIMESTAMP '%s' AND timestamp < TIMESTAMP '%s'" % (
        table(dataset, "predictions"), summary["window_start"], summary["window_end"]))


def drift_by_key(client, dataset, summary):
    rows = query(client, "SELECT * FROM %s WHERE window_start = TIMESTAMP '%s' AND window_end = TIMESTAMP '%s'" % (
        table(dataset, "drift_metrics"), summary["window_start"], summary["window_end"]))
    keyed = {}
    for row in rows:
        key = (row["model_version"], row["feature"], row["metric_type"])
        assert key not in keyed, "duplicate drift_metrics row %s" % (key,)
        keyed[key] = row
    return keyed


def test_the_inventories_declare_the_example_columns():
    """site.yml builds offline_features from mlops_features / mlops_label: they must be the example's."""
    for env in ENVIRONMENTS:
        variables = settings(env)
        assert [column["name"] for column in variables["mlops_features"]] == list(example.FEATURES), env
        assert variables["mlops_label"]["name"] == example.LABEL, env
        assert {column["type"] for column in variables["mlops_features"]} == {"FLOAT"}, env


def test_example_end_to_end(mlflow_server, bigquery_emulator, storage_emulator, unique, tmp_path):
    # pylint: disable=too-many-locals,too-many-statements
    import mlflow
    import mlflow.pyfunc
    import pandas as pd
    from mlflow import MlflowClient

    client = client_for(bigquery_emulator)
    dataset = "example_%s" % unique
    site(bigquery_emulator, storage_emulator, dataset, "example-%s" % unique)
    model_name = "diabetes-%s" % unique
    patients = diabetes()

    stdout, summary = run_example(mlflow_server.url, bigquery_emulator, dataset, model_name, tmp_path / "first.json")

    # offline_features: every patient once, with its label and a train/test split.
    offline = query(client, "SELECT * FROM %s" % table(dataset, "offline_features"))
    assert sorted(row["entity_id"] for row in offline) == sorted(patients)
    for row in offline:
        features, target = patients[row["entity_id"]]
        assert {name: row[name] for name in example.FEATURES} == features
        assert row[example.LABEL] == target
    test_ids = {row["entity_id"] for row in offline if row["split"] == "test"}
    assert len(test_ids) == round(len(patients) * 0.4) == summary["offline_features"]["test_rows"]
    assert summary["offline_features"] == {"loaded_now": True, "train_rows": len(patients) - len(test_ids),
                                           "test_rows": len(test_ids)}

    # MLflow: version 1 with the alias and a column signature of the ten features.
    mlflow_client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    version = mlflow_client.get_model_version_by_alias(model_name, "champion")
    assert summary["model_version"] == version.version == "1"
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    model = mlflow.pyfunc.load_model("models:/%s@champion" % model_name)
    assert model.metadata.signature.inputs.input_names() == list(example.FEATURES)
    assert mlflow_client.get_run(version.run_id).data.metrics["test_mae"] == pytest.approx(summary["test_mae"])

    # predictions: one row per held-out patient, as acknowledged, with the drifted feature as sent and the
    # value the registered model gives for those features.
    rows = window_predictions(client, dataset, summary)
    assert summary["predictions"] == {"acknowledged": len(test_ids), "in_bigquery": len(test_ids), "missing": 0,
                                      "served_versions": ["1"]}
    assert sorted(row["entity_id"] for row in rows) == sorted(test_ids)
    assert len({row["prediction_id"] for row in rows}) == len(rows)
    assert {(row["model_name"], row["model_version"], row["model_alias"]) for row in rows} == {(model_name, "1", "champion")}
    sent = [json.loads(row["features"]) if isinstance(row["features"], str) else row["features"] for row in rows]
    for row, features in zip(rows, sent):
        expected = dict(patients[row["entity_id"]][0])
        expected["bmi"] = round(expected["bmi"] * DRIFT_FACTOR, 4)
        assert features == pytest.approx(expected)
    again = model.predict(pd.DataFrame(sent, columns=list(example.FEATURES)))
    assert [row["prediction"] for row in rows] == pytest.approx(list(again), rel=1e-9)

    # ground_truth: the real outcome of every prediction.
    truth = {row["prediction_id"]: row for row in query(client, "SELECT * FROM %s" % table(dataset, "ground_truth"))}
    assert sorted(truth) == sorted(row["prediction_id"] for row in rows)
    assert all(truth[row["prediction_id"]]["label_value"] == patients[row["entity_id"]][1] for row in rows)

    # drift_metrics: quality recomputed here from the two tables; bmi flagged on PSI and KS and the most drifted.
    errors = np.array([row["prediction"] - truth[row["prediction_id"]]["label_value"] for row in rows])
    metrics = drift_by_key(client, dataset, summary)
    assert metrics[(None, None, "mae")]["value"] == pytest.approx(float(np.mean(np.abs(errors))), rel=1e-9)
    assert metrics[(None, None, "rmse")]["value"] == pytest.approx(float(np.sqrt(np.mean(errors ** 2))), rel=1e-9)
    assert metrics[(None, None, "volume")]["value"] == len(test_ids)
    assert summary["quality"]["mae"] == pytest.approx(summary["quality"]["mae_recomputed"], rel=1e-9)
    assert summary["quality"]["mae"] > summary["test_mae"]  # the drifted bmi costs accuracy
    for metric in ("psi", "ks"):
        values = {name: metrics[(None, name, metric)]["value"] for name in example.FEATURES}
        assert max(values, key=values.get) == "bmi"
        assert metrics[(None, "bmi", metric)]["drift_detected"] is True
        assert metrics[(None, "bmi", metric)]["threshold"] == summary["thresholds"][metric]
        assert summary["features"]["bmi"][metric] == pytest.approx(values["bmi"])
    assert summary["features"]["bmi"]["psi_drift"] is True
    assert "bmi" in summary["drifted_features"]
    assert summary["drifted_features"] == sorted(
        name for name in example.FEATURES
        if metrics[(None, name, "psi")]["drift_detected"] or metrics[(None, name, "ks")]["drift_detected"])

    assert "=== summary ===" in stdout
    assert "%d acknowledged, %d in BigQuery, 0 missing" % (len(test_ids), len(test_ids)) in stdout
    assert "DRIFT (psi, ks)" in [line.split(None, 4)[-1] for line in stdout.splitlines() if line.strip().startswith("bmi ")]

    # A second run, against a serving API that is already running (it follows the alias): the features are
    # not loaded twice, version 2 is registered, served once the API has swapped to it, and logged.
    port = services.free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "MODEL_", "LOG_", "BIGQUERY_"))}
    env.update({"PYTHONPATH": str(example.SERVING_DIR), "PORT": str(port), "HOST": "127.0.0.1",
                "MLFLOW_TRACKING_URI": mlflow_server.url, "MODEL_NAME": model_name, "MODEL_POLL_INTERVAL": "1",
                "BIGQUERY_PROJECT": PROJECT, "BIGQUERY_DATASET": dataset, "BIGQUERY_API_ENDPOINT": bigquery_emulator,
                "LOG_FLUSH_INTERVAL": "0.5", "HOME": str(tmp_path)})
    log_path = tmp_path / "serving.log"
    with open(log_path, "wb") as log:
        serving = subprocess.Popen([sys.executable, "-m", "mlops_serving"], env=env, cwd=tmp_path, stdout=log,  # pylint: disable=consider-using-with
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http("http://127.0.0.1:%d/ready" % port, serving, timeout=120, log=log_path)
        stdout, second = run_example(mlflow_server.url, bigquery_emulator, dataset, model_name, tmp_path / "second.json",
                                     "--serving-url", "http://127.0.0.1:%d" % port)
    finally:
        stop_group(serving)
    assert second["offline_features"]["loaded_now"] is False
    assert "already there: nothing loaded" in stdout
    assert query(client, "SELECT COUNT(*) AS n FROM %s" % table(dataset, "offline_features"))[0]["n"] == len(patients)
    assert second["model_version"] == "2"
    assert mlflow_client.get_model_version_by_alias(model_name, "champion").version == "2"
    # Both versions took the alias through playbooks/promote.yml, which recorded its decisions.
    decisions = query(client, "SELECT from_version, to_version, decision FROM %s WHERE model_name = '%s' "
                      "ORDER BY to_version" % (table(dataset, "promotions"), model_name))
    assert [(d["from_version"], d["to_version"], d["decision"]) for d in decisions] == [
        (None, "1", "promoted"), ("1", "2", "promoted")]
    assert "promoted version 2 to champion with playbooks/promote.yml" in stdout
    assert second["predictions"] == {"acknowledged": len(test_ids), "in_bigquery": len(test_ids), "missing": 0,
                                     "served_versions": ["2"]}
    assert {row["model_version"] for row in window_predictions(client, dataset, second)} == {"2"}
    assert query(client, "SELECT COUNT(*) AS n FROM %s" % table(dataset, "predictions"))[0]["n"] == 2 * len(test_ids)
    assert drift_by_key(client, dataset, second)[(None, "bmi", "psi")]["drift_detected"] is True
    assert len(drift_by_key(client, dataset, summary)) == len(metrics)  # the first window's rows are untouched
