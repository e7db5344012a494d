"""A challenger served in shadow next to the champion, end to end: the tables from the bigquery role, a real MLflow,
the serving API logging both models' predictions for the same requests, outcomes joined by prediction_id, the drift
job scoring each alias, and playbooks/promote.yml refusing the challenger on its live accuracy although its run
looked fine, then promoting a better one and the API serving it without a restart."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from drift_fixtures import DRIFT_JOB_DIR, PROJECT, client_for, insert, query
from tests.apps.conftest import (ROOT, churn_data, register_churn_model, rows_of, running_app, serving_settings,
                                 wait_until)

pytestmark = pytest.mark.xdist_group("apps")
BIN = Path(sys.executable).parent
FEATURES = [{"name": "tenure_months", "type": "INTEGER", "description": "Months subscribed"},
            {"name": "monthly_charges", "type": "FLOAT", "description": "Monthly bill"},
            {"name": "contract_type", "type": "STRING", "description": "Contract length",
             "categories": ["month_to_month", "one_year", "two_year"]}]
LABEL = {"name": "churned", "type": "INTEGER", "description": "1 if the customer left", "task": "classification",
         "classes": [0, 1], "positive_class": 1}
LIVE_ACCURACY = [{"name": "accuracy", "source": "live", "goal": "maximize", "tolerance": 0.02}]


def playbook(path, *args, **settings):
    """ansible-playbook on inventories/local with this test's names; (returncode, output)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run([BIN / "ansible-playbook", path, "-i", "inventories/local", "-e", json.dumps(settings),
                           *args], cwd=ROOT, env=dict(environ, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True,
                          timeout=600, check=False)
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def drift_job(settings, window):
    """The drift job as the Cloud Run job runs it: only project, dataset, model and window."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DRIFT_", "BIGQUERY_"))}
    env.update(PYTHONPATH=str(DRIFT_JOB_DIR), BIGQUERY_API_ENDPOINT=settings["mlops_gcp_api_endpoints"]["bigquery"])
    command = [sys.executable, "-m", "drift_job", "--project", PROJECT, "--dataset", settings["mlops_bigquery_dataset"],
               "--model-name", settings["mlops_model_name"], "--window-start", window[0].isoformat(),
               "--window-end", window[1].isoformat()]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_shadow_challenger_is_scored_on_live_traffic_and_gated_by_it(mlflow_server, bigquery_emulator, unique):
    name, dataset = "churn-shadow-" + unique, "shadow_" + unique
    settings = {"mlops_gcp_project": PROJECT, "mlops_bigquery_dataset": dataset, "mlops_model_name": name,
                "mlops_gcp_api_endpoints": {"bigquery": bigquery_emulator}, "mlops_features": FEATURES,
                "mlops_label": LABEL, "mlops_promotion_tracking_uri": mlflow_server.url}
    code, output = playbook("site.yml", "--tags", "bigquery", **settings)
    assert code == 0, output
    client = client_for(bigquery_emulator)
    frame, churned = churn_data(rows=100, seed=11)
    train_time = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    insert(client, dataset, "offline_features", [
        dict(row, entity_id="c%d" % index, event_timestamp=train_time.isoformat(), churned=int(label), split="train")
        for index, (row, label) in enumerate(zip(frame.to_dict(orient="records"), churned))])

    champion = register_churn_model(mlflow_server.url, name)
    challenger = register_churn_model(mlflow_server.url, name, alias="challenger", invert=True)  # learned it backwards
    start = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
    app = serving_settings(mlflow_server.url, name, "%s.%s.predictions" % (PROJECT, dataset), bigquery_emulator,
                           task="classification", label_type="INTEGER", classes=[0, 1], positive_class=1,
                           challenger_alias="challenger", challenger_mode="shadow", poll_interval=0.3)
    instances = [{"features": features} for features in frame.to_dict(orient="records")]
    with running_app(app) as api:
        # /ready answers for the champion; the challenger loads beside it.
        wait_until(lambda: api.get("/ready").json()["challenger"]["loaded"], timeout=60, message="challenger loaded")
        answer = api.post("/predict", json={"instances": instances}).json()
        assert answer.get("model_version") == champion.version, str(answer)[:2000]
        rows = rows_of(bigquery_emulator, "%s.%s.predictions" % (PROJECT, dataset), 2 * len(instances))
        # Both models predicted every request; the rows share its prediction_id and only the champion's was served.
        by_alias = {alias: {r["prediction_id"]: r for r in rows if r["model_alias"] == alias}
                    for alias in ("champion", "challenger")}
        assert set(by_alias["champion"]) == set(by_alias["challenger"]) == {
            p["prediction_id"] for p in answer["predictions"]}
        assert {r["served"] for r in by_alias["champion"].values()} == {True}
        assert {(r["served"], r["model_version"]) for r in by_alias["challenger"].values()} == {
            (False, challenger.version)}

        truth = dict(zip((p["prediction_id"] for p in answer["predictions"]), churned))
        insert(client, dataset, "ground_truth", [
            {"prediction_id": pid, "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
             "label_value": float(label), "label_class": str(int(label))} for pid, label in truth.items()])
        drift_job(settings, (start, start + datetime.timedelta(hours=1)))
        accuracy = {(r["model_version"], r["model_alias"]): r["value"] for r in query(
            client, "SELECT model_version, model_alias, value FROM `%s.%s.drift_metrics` WHERE metric_type = "
                    "'accuracy' AND model_version IS NOT NULL" % (PROJECT, dataset))}
        for alias, version in (("champion", champion.version), ("challenger", challenger.version)):
            expected = np.mean([int(row["prediction_label"]) == truth[pid] for pid, row in by_alias[alias].items()])
            assert accuracy[(version, alias)] == pytest.approx(expected), (alias, accuracy)
        assert accuracy[(champion.version, "champion")] > 0.8 > accuracy[(challenger.version, "challenger")]
        # The served volume counts each request once.
        [served] = query(client, "SELECT value FROM `%s.%s.drift_metrics` WHERE metric_type = 'volume' AND "
                                 "model_version IS NULL" % (PROJECT, dataset))
        assert served["value"] == len(instances)

        # Its run has no metric to hold against it, but on the same traffic it did worse: refused.
        code, output = playbook("playbooks/promote.yml", "-e", "from_alias=challenger", **dict(
            settings, mlops_promotion_metrics=LIVE_ACCURACY))
        assert code != 0 and "accuracy (live) is worse by" in output, output
        [refusal] = query(client, "SELECT decision, to_version FROM `%s.%s.promotions`" % (PROJECT, dataset))
        assert (refusal["decision"], refusal["to_version"]) == ("refused", challenger.version)

        # A version that never served is judged on what it has, and the API serves it without a restart.
        better = register_churn_model(mlflow_server.url, name, alias=None)
        code, output = playbook("playbooks/promote.yml", "-e", "model_version=%s" % better.version, **dict(
            settings, mlops_promotion_metrics=LIVE_ACCURACY))
        assert code == 0 and "not served live" in output, output
        wait_until(lambda: api.get("/ready").json()["model_version"] == better.version, timeout=60,
                   message="the promoted version served")
        assert api.post("/predict", json={"instances": instances[:1]}).json()["model_version"] == better.version
