"""The churn example (examples/churn, issue 11: bring your own model) against the stand-ins: a real MLflow on a
real PostgreSQL, the BigQuery emulator holding the tables site.yml creates from examples/churn/inventory, the
serving app and the drift job as real processes.

The example runs as a user runs it (its own process, configured by arguments and environment). What its summary
claims is recomputed here from the tables with numpy, not taken from the example: the classifier's accuracy,
precision, recall and log loss from the logged predictions and the outcomes, and the categorical drift (PSI of
contract_type, and of the BOOLEAN has_support) from offline_features and the logged features. The serving API is
then started as `make local INVENTORY=examples/churn/inventory` starts it (tests/standins/services.py): it takes
the inventory's declarations, refuses an unknown plan and serves an unknown payment method.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from drift_fixtures import PROJECT, client_for, query
from tests.apps.conftest import ROOT, stop_group, wait_http
from tests.standins import dashboards, services

sys.path.insert(0, str(ROOT))
from examples import churn, pipeline  # noqa: E402  pylint: disable=wrong-import-position
from examples.churn import example, generate  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.xdist_group("apps")

INVENTORY = ROOT / "examples" / "churn" / "inventory"
EPSILON = 1e-4  # the drift job's share of an empty PSI bin
OUTCOME_DAYS, LABEL_DELAY_DAYS = 3, 7


def site(bigquery_endpoint, storage_endpoint, names, outputs):
    """ansible-playbook site.yml -i examples/churn/inventory, pointed at the emulators, with this test's names
    (dataset, bucket, model) and its outputs directory; the outputs/churn-local.env it writes, as a dict."""
    extra = json.dumps(dict(names, mlops_gcp_project=PROJECT, mlops_outputs_dir=str(outputs),
                            mlops_gcp_api_endpoints={"bigquery": bigquery_endpoint, "storage": storage_endpoint}))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "site.yml", "-i", str(INVENTORY),
                           "-e", extra], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    values = {}
    for line in (outputs / "churn-local.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _sep, value = line.partition("=")
            values[key] = (shlex.split(value) or [""])[0]
    return values


def run_example(outputs_env, tracking_uri, summary_path):
    """The example as the Makefile runs it for the inventory: the variables of outputs/churn-local.env exported (the
    tracking URI is this test's MLflow, not the fixed local port), then python -m examples.churn."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLFLOW_", "MODEL_", "BIGQUERY_", "SERVING_", "MLOPS_"))}
    env.update(outputs_env)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    command = [sys.executable, "-m", "examples.churn", "--summary-json", str(summary_path),
               "--outcome-days", str(OUTCOME_DAYS), "--label-delay-days", str(LABEL_DELAY_DAYS)]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    print(proc.stdout)  # shown by pytest when the test fails
    assert proc.returncode == 0, "example failed:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-4000:])
    return proc.stdout, json.loads(summary_path.read_text())


def drift_job(bigquery_endpoint, dataset, model_name, window, *extra):
    """The drift job as the example calls it, for `window`; its JSON summary."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DRIFT_", "BIGQUERY_"))}
    env.update({"PYTHONPATH": str(pipeline.DRIFT_JOB_DIR), "BIGQUERY_EMULATOR_HOST": bigquery_endpoint})
    kinds = ",".join("%s:%s" % (name, "categorical" if name in example.CATEGORICAL else "numeric")
                     for name in churn.FEATURES)
    command = [sys.executable, "-m", "drift_job", "--project", PROJECT, "--dataset", dataset, "--model-name",
               model_name, "--window-start", window[0].isoformat(), "--window-end", window[1].isoformat(),
               "--reference-end", "2025-04-01T00:00:00+00:00", "--features", kinds, "--label", "churned",
               "--task-type", "classification", "--positive-class", "1"] + list(extra)
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(dataset, name):
    return "`%s.%s.%s`" % (PROJECT, dataset, name)


def features_of(row):
    return json.loads(row["features"]) if isinstance(row["features"], str) else row["features"]


def window_predictions(client, dataset, start, end):
    return query(client, "SELECT * FROM %s WHERE timestamp >= TIMESTAMP '%s' AND timestamp < TIMESTAMP '%s'" % (
        table(dataset, "predictions"), start, end))


def window_metrics(client, dataset, start, end):
    """drift_metrics rows of a window by (model_version, feature, metric_type)."""
    rows = query(client, "SELECT * FROM %s WHERE window_start = TIMESTAMP '%s' AND window_end = TIMESTAMP '%s'" % (
        table(dataset, "drift_metrics"), start, end))
    keyed = {}
    for row in rows:
        key = (row["model_version"], row["feature"], row["metric_type"])
        assert key not in keyed, "duplicate drift_metrics row %s" % (key,)
        keyed[key] = row
    return keyed


def psi(reference, current):
    """Population stability index of two samples of categories, as the drift job defines it: every category seen
    on either side is a bin, an empty bin counts as EPSILON."""
    bins = sorted(set(reference) | set(current))
    ref = np.array([reference.count(value) / len(reference) for value in bins])
    cur = np.array([current.count(value) / len(current) for value in bins])
    ref, cur = np.where(ref == 0, EPSILON, ref), np.where(cur == 0, EPSILON, cur)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def classification(rows, truth):
    """accuracy, precision, recall and log loss of logged predictions (prediction_label, prediction = probability of
    churn) against their latest outcome, in numpy."""
    predicted = np.array([int(row["prediction_label"]) for row in rows])
    actual = np.array([int(truth[row["prediction_id"]]) for row in rows])
    probability = np.clip(np.array([row["prediction"] for row in rows]), 1e-15, 1 - 1e-15)
    true_positive = int(np.sum((predicted == 1) & (actual == 1)))
    return {"accuracy": float(np.mean(predicted == actual)),
            "precision": true_positive / int(np.sum(predicted == 1)),
            "recall": true_positive / int(np.sum(actual == 1)),
            "log_loss": float(np.mean(-np.where(actual == 1, np.log(probability), np.log(1 - probability))))}


def csv_customers():
    with churn.DATA.open(encoding="utf-8") as source:
        return {row["customer_id"]: example.typed(row) for row in csv.DictReader(source)}


# -- without services ---------------------------------------------------------------------------------------
def test_the_inventory_declares_the_examples_columns():
    """site.yml builds offline_features and the serving API's checks from the inventory: they must be the data's."""
    settings = services.local_settings(inventory=INVENTORY)
    declared = {feature["name"]: {key: value for key, value in feature.items() if key not in ("name", "description")}
                for feature in settings["features"]}
    assert declared == churn.FEATURES
    assert {key: value for key, value in settings["label"].items() if key != "description"} == churn.LABEL
    assert {spec["type"] for spec in churn.FEATURES.values()} == {"STRING", "INTEGER", "FLOAT", "BOOLEAN"}
    assert (settings["dataset"], settings["model_name"]) == ("churn", "churn")


def test_the_shipped_data_set_is_what_the_generator_writes(tmp_path):
    written = tmp_path / "customers.csv"
    generate.main(["--output", str(written)])
    assert written.read_bytes() == churn.DATA.read_bytes()
    assert churn.DATA.stat().st_size < 500_000
    customers = csv_customers()
    splits = [row["split"] for row in customers.values()]
    assert (splits.count("train"), splits.count("test"), splits.count("serving")) == (1680, 720, 800)
    # The serving customers are the drifted window: month_to_month's share moved, the others' features did not.
    share = {split: np.mean([row["contract_type"] == "month_to_month" for row in customers.values()
                             if row["split"] == split]) for split in ("train", "serving")}
    assert share["train"] < 0.5 < 0.7 < share["serving"]


def test_the_outcomes_must_arrive_within_the_label_delay(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "examples.churn", "--project", "p", "--tracking-uri", "http://x",
                           "--outcome-days", "7", "--label-delay-days", "7"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "--outcome-days must be at least 1 and less than --label-delay-days" in proc.stderr


# -- end to end --------------------------------------------------------------------------------------------
def test_churn_example_end_to_end(mlflow_server, bigquery_emulator, storage_emulator, unique, tmp_path):
    # pylint: disable=too-many-locals,too-many-statements
    import mlflow
    import mlflow.pyfunc
    import pandas as pd
    from mlflow import MlflowClient

    client = client_for(bigquery_emulator)
    dataset, model_name = "churn_%s" % unique, "churn-%s" % unique
    outputs = site(bigquery_emulator, storage_emulator, {
        "mlops_bigquery_dataset": dataset, "mlops_mlflow_artifacts_bucket": "churn-%s" % unique,
        "mlops_model_name": model_name}, tmp_path / "outputs")
    assert {key: outputs[key] for key in ("MLOPS_PROJECT", "MLOPS_DATASET", "BIGQUERY_API_ENDPOINT", "MODEL_NAME",
                                          "MODEL_ALIAS")} == {
        "MLOPS_PROJECT": PROJECT, "MLOPS_DATASET": dataset, "BIGQUERY_API_ENDPOINT": bigquery_emulator,
        "MODEL_NAME": model_name, "MODEL_ALIAS": "champion"}
    customers = csv_customers()
    history = {key: row for key, row in customers.items() if row["split"] != "serving"}
    serving = {key: row for key, row in customers.items() if row["split"] == "serving"}

    stdout, summary = run_example(outputs, mlflow_server.url, tmp_path / "churn.json")
    start, end = summary["window_start"], summary["window_end"]

    # offline_features: every customer of the training window once, in the columns' types.
    offline = query(client, "SELECT * FROM %s" % table(dataset, "offline_features"))
    assert sorted(row["entity_id"] for row in offline) == sorted(history)
    for row in offline:
        source = history[row["entity_id"]]
        assert {name: row[name] for name in example.COLUMNS} == {name: source[name] for name in example.COLUMNS}
        assert row["split"] == source["split"]
    assert summary["offline_features"] == {"loaded_now": True, "train_rows": 1680, "test_rows": 720}

    # MLflow: version 1 under the alias, a column signature of the features in their types.
    mlflow_client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    version = mlflow_client.get_model_version_by_alias(model_name, "champion")
    assert summary["model_version"] == version.version == "1"
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    model = mlflow.pyfunc.load_model("models:/%s@champion" % model_name)
    inputs = model.metadata.signature.inputs
    assert inputs.input_names() == list(churn.FEATURES)
    types = ["string", "string", "string", "long", "double", "long", "boolean"]
    assert [column.type.name for column in inputs.inputs] == types
    estimator = mlflow.sklearn.load_model("models:/%s@champion" % model_name)
    assert list(estimator.classes_) == [0, 1]

    # predictions: one per serving customer, the class as the label's text, the probability of churn as recomputed
    # from the registered model with the features as logged.
    rows = window_predictions(client, dataset, start, end)
    assert summary["predictions"]["acknowledged"] == summary["predictions"]["in_bigquery"] == len(serving) == len(rows)
    assert summary["predictions"]["missing"] == 0
    assert sorted(row["entity_id"] for row in rows) == sorted(serving)
    sent = [features_of(row) for row in rows]
    assert all(features == {name: serving[row["entity_id"]][name] for name in churn.FEATURES}
               for row, features in zip(rows, sent))
    frame = pd.DataFrame(sent, columns=list(churn.FEATURES))
    assert [row["prediction"] for row in rows] == pytest.approx(list(estimator.predict_proba(frame)[:, 1]), abs=1e-9)
    assert [row["prediction_label"] for row in rows] == [str(c) for c in estimator.predict(frame)]
    assert summary["predictions"]["mean_probability"] == pytest.approx(float(np.mean([r["prediction"] for r in rows])))
    assert summary["predictions"]["predicted_positive"] == sum(row["prediction_label"] == "1" for row in rows)
    assert "mean probability of churn %.3f" % summary["predictions"]["mean_probability"] in stdout

    # The unknown plan was refused before anything was predicted or logged.
    refused = summary["unknown_category"]
    assert (refused["status"], refused["feature"], refused["value"]) == (422, "plan", "enterprise")
    assert refused["type"] == "enum"
    assert "'enterprise'" in refused["message"] and "'plan'" in refused["message"]
    assert all("'%s'" % plan in refused["message"] for plan in churn.PLANS)
    assert not [row for row in rows if features_of(row)["plan"] == "enterprise"]

    # ground_truth: each outcome observed OUTCOME_DAYS after its prediction.
    truth_rows = query(client, "SELECT * FROM %s" % table(dataset, "ground_truth"))
    truth = {row["prediction_id"]: row["label_value"] for row in truth_rows}
    assert sorted(truth) == sorted(row["prediction_id"] for row in rows)
    assert all(truth[row["prediction_id"]] == serving[row["entity_id"]]["churned"] for row in rows)
    made = {row["prediction_id"]: row["timestamp"] for row in rows}
    late = [row["timestamp"] - made[row["prediction_id"]] for row in truth_rows]
    assert datetime.timedelta(days=OUTCOME_DAYS) <= min(late)
    assert max(late) < datetime.timedelta(days=OUTCOME_DAYS, minutes=10)

    # Quality of the serving window, recomputed here from the two tables, is what the drift job wrote and the
    # summary shows.
    expected = classification(rows, truth)
    metrics = window_metrics(client, dataset, start, end)
    for name, value in expected.items():
        assert metrics[(None, None, name)]["value"] == pytest.approx(value, rel=1e-9), name
        assert metrics[("1", None, name)]["value"] == pytest.approx(value, rel=1e-9), name
        assert summary["quality"][name] == pytest.approx(value, rel=1e-9), name
        assert summary["quality_recomputed"][name] == pytest.approx(value, rel=1e-6), name
    assert metrics[(None, None, "volume")]["value"] == len(serving)
    assert 0.6 < expected["accuracy"] < summary["test"]["accuracy"] + 0.05
    assert "accuracy  %.3f from the drift job" % expected["accuracy"] in stdout

    # Categorical drift, recomputed from the tables: contract_type's shares moved, and it is flagged and the most
    # drifted feature; has_support (BOOLEAN, compared as true / false) did not move.
    reference = query(client, "SELECT contract_type, has_support FROM %s WHERE split = 'train' AND event_timestamp < "
                              "TIMESTAMP '2025-04-01'" % table(dataset, "offline_features"))
    for feature in ("contract_type", "has_support"):
        expected_psi = psi([str(row[feature]).lower() if isinstance(row[feature], bool) else row[feature]
                            for row in reference],
                           [str(f[feature]).lower() if isinstance(f[feature], bool) else f[feature] for f in sent])
        assert metrics[(None, feature, "psi")]["value"] == pytest.approx(expected_psi, rel=1e-9), feature
        assert summary["features"][feature]["psi"] == pytest.approx(expected_psi, rel=1e-9), feature
    assert metrics[(None, "contract_type", "psi")]["value"] > summary["thresholds"]["psi"]
    assert metrics[(None, "contract_type", "psi")]["drift_detected"] is True
    assert (None, "contract_type", "ks") not in metrics  # no order between categories
    psis = {name: metrics[(None, name, "psi")]["value"] for name in churn.FEATURES}
    assert max(psis, key=psis.get) == "contract_type"
    assert summary["drifted_features"] == ["contract_type"]
    assert summary["drift_feature_shares"]["serving"]["month_to_month"] > 0.7
    assert [line.split()[-1] for line in stdout.splitlines() if line.strip().startswith("contract_type ")] == ["(psi)"]

    # Late labels: at the window's end no outcome was known (the first run wrote drift and volume only); the run
    # OUTCOME_DAYS later with the label delay scored the serving window.
    assert summary["quality_at_window_end"] == {}
    assert summary["rescore"]["windows"] == 1
    assert metrics[(None, None, "accuracy")]["computed_at"] > metrics[(None, "contract_type", "psi")]["computed_at"]

    # A correction arrives later still (latest outcome per prediction wins): a run whose label delay has passed
    # for the serving window leaves its figures alone, a run within it scores them again.
    corrected = rows[0]
    flipped = 1.0 - truth[corrected["prediction_id"]]
    observed = datetime.datetime.fromisoformat(end) + datetime.timedelta(days=OUTCOME_DAYS + 1)
    pipeline.load_json_rows(client, "%s.%s.ground_truth" % (PROJECT, dataset), [
        {"prediction_id": corrected["prediction_id"], "entity_id": corrected["entity_id"],
         "timestamp": pipeline.bq_time(observed), "label_value": flipped, "label_class": str(int(flipped)),
         "source": "test"}])
    later = tuple(datetime.datetime.fromisoformat(t) + datetime.timedelta(days=OUTCOME_DAYS + 1) for t in (start, end))
    untouched = drift_job(bigquery_emulator, dataset, model_name, later, "--label-delay-days", "0")
    assert untouched["rescored"]["windows"] == 0
    assert window_metrics(client, dataset, start, end)[(None, None, "accuracy")]["value"] == pytest.approx(
        expected["accuracy"], rel=1e-9)
    rescored = drift_job(bigquery_emulator, dataset, model_name, later, "--label-delay-days", str(LABEL_DELAY_DAYS))
    assert (start, end, "accuracy") in {(datetime.datetime.fromisoformat(m["window_start"]).isoformat(),
                                         datetime.datetime.fromisoformat(m["window_end"]).isoformat(), m["metric_type"])
                                        for m in rescored["rescored"]["metrics"]}
    truth[corrected["prediction_id"]] = flipped
    now = window_metrics(client, dataset, start, end)
    for name, value in classification(rows, truth).items():
        assert now[(None, None, name)]["value"] == pytest.approx(value, rel=1e-9), name
    assert now[(None, None, "accuracy")]["value"] != pytest.approx(expected["accuracy"], rel=1e-9)
    assert now[(None, "contract_type", "psi")] == metrics[(None, "contract_type", "psi")]  # drift is not re-scored

    # The serving API as `make local INVENTORY=examples/churn/inventory` starts it (the inventory's declarations):
    # the unknown plan is a 422 naming it; a payment method the model never saw is served (unknown: allow), counted.
    settings = dict(services.local_settings(inventory=INVENTORY), project=PROJECT, dataset=dataset,
                    model_name=model_name)
    port = services.free_port()
    env = dict(services.serving_env(settings), PORT=str(port), MLFLOW_TRACKING_URI=mlflow_server.url,
               BIGQUERY_API_ENDPOINT=bigquery_emulator, MODEL_POLL_INTERVAL="1", LOG_FLUSH_INTERVAL="0.5",
               HOME=str(tmp_path))
    log_path = tmp_path / "serving.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "mlops_serving"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        url = "http://127.0.0.1:%d" % port
        wait_http(url + "/ready", process, timeout=120, log=log_path)
        described = requests.get(url + "/model", timeout=10).json()
        assert (described["task"], described["classes"], described["positive_class"]) == ("classification", [0, 1], 1)
        customer = {name: serving[rows[0]["entity_id"]][name] for name in churn.FEATURES}
        answer = requests.post(url + "/predict", json={"features": dict(customer, plan="enterprise")}, timeout=30)
        assert answer.status_code == 422
        [error] = answer.json()["detail"]
        assert error["loc"][-1] == "plan" and error["type"] == "enum" and "'enterprise'" in error["msg"]
        answer = requests.post(url + "/predict", json={"features": dict(customer, payment_method="crypto")}, timeout=30)
        assert answer.status_code == 200 and answer.json()["prediction"] in (0, 1)
        assert 0.0 <= answer.json()["probability"] <= 1.0
        counted = [line for line in requests.get(url + "/metrics", timeout=10).text.splitlines()
                   if line.startswith('mlops_serving_unknown_categories_total{feature="payment_method"}')]
        assert [float(line.split()[-1]) for line in counted] == [1.0]
    finally:
        stop_group(process)
    assert math.isfinite(summary["test"]["roc_auc"]) and summary["test"]["roc_auc"] > 0.75

    # make local then draws Grafana's dashboards from the inventory's dataset: a classifier's tables draw too.
    pages = dashboards.render(tmp_path / "dashboards", PROJECT, dataset, bigquery_emulator)
    assert pages and not [page.error for page in pages if page.error]
    undrawn = [(panel.title, panel.status, panel.message) for page in pages for panel in page.panels
               if panel.status not in ("ok", "row")]
    assert not undrawn, undrawn  # the predicted classes and the accuracy over time included
