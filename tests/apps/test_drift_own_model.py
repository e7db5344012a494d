"""Bring your own model (issue 11), end to end on the BigQuery emulator: the bigquery role creates the tables for a
binary churn classifier (STRING, INTEGER, FLOAT and BOOLEAN features, an INTEGER label whose outcomes arrive weeks
later) and declares the model in the offline_features description; the drift job then needs nothing but project,
dataset, model and window. A feature added later in place (the role run again) can be loaded, queried and
monitored at once. A predictions retention shorter than the label delay fails before any change.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from google.cloud import bigquery

from drift_fixtures import DRIFT_JOB_DIR, PROJECT, ROOT, TIMEOUT, client_for, import_drift_job, insert, query, timestamp

drift_job = import_drift_job()

UTC = datetime.timezone.utc
REFERENCE = (datetime.datetime(2026, 4, 1, tzinfo=UTC), datetime.datetime(2026, 4, 20, tzinfo=UTC))
WINDOW = (datetime.datetime(2026, 5, 1, tzinfo=UTC), datetime.datetime(2026, 5, 2, tzinfo=UTC))
FEATURES = [
    {"name": "contract", "type": "STRING", "description": "Contract kind"},
    {"name": "tenure_months", "type": "INTEGER", "description": "Months as a customer"},
    {"name": "monthly_charges", "type": "FLOAT", "description": "Monthly bill"},
    {"name": "has_partner", "type": "BOOLEAN", "description": "Lives with a partner"},
]
LABEL = {"name": "churned", "type": "INTEGER", "description": "Left within 30 days", "task": "classification",
         "positive_class": 1}
PLAN = {"name": "plan", "type": "STRING", "description": "Price plan, added after the first deploy"}
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/deployml.mlops.gcp:
      project: "{{ mlops_gcp_project }}"
      auth_kind: anonymous
      api_endpoints: {bigquery: "{{ bigquery_url }}"}
      timeout: 60
  roles:
    - deployml.mlops.bigquery
"""


def apply_role(tmp_path, url, dataset, features, **settings):
    """Run the bigquery role against the emulator (as site.yml does) with the given inventory settings."""
    playbook = tmp_path / "bigquery.yml"
    playbook.write_text(PLAYBOOK)
    extra = dict({"mlops_gcp_project": PROJECT, "mlops_gcp_region": "us-central1", "mlops_bigquery_dataset": dataset,
                  "mlops_features": features, "mlops_label": LABEL, "mlops_prediction_retention_days": 90,
                  "mlops_label_delay_days": 30, "bigquery_url": url,
                  "ansible_python_interpreter": sys.executable}, **settings)
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", str(playbook),
                           "-e", "@%s" % (tmp_path / "extra.json")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def deployed(bigquery_emulator, tmp_path_factory):
    """The tables of the churn classifier, made by the bigquery role."""
    dataset = "own_model_%d" % os.getpid()
    proc = apply_role(tmp_path_factory.mktemp("role"), bigquery_emulator, dataset, FEATURES)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return client_for(bigquery_emulator), dataset


class Churn:
    """Seeded rows: reference customers, the window's predictions and their (late) outcomes."""

    def __init__(self, seed=21):
        self.rng = np.random.default_rng(seed)

    def customer(self, plan=False):
        values = {"contract": str(self.rng.choice(["monthly", "yearly"])),
                  "tenure_months": int(self.rng.integers(0, 72)),
                  "monthly_charges": float(self.rng.normal(60, 15)),
                  "has_partner": bool(self.rng.integers(0, 2))}
        if plan:
            values["plan"] = str(self.rng.choice(["basic", "plus", "max"], p=[0.5, 0.3, 0.2]))
        return values

    def reference(self, n, plan=False, prefix="r"):
        step = (REFERENCE[1] - REFERENCE[0]) / (n + 1)
        return [dict(self.customer(plan), entity_id="%s-%d" % (prefix, i),
                     event_timestamp=timestamp(REFERENCE[0] + step * (i + 1)),
                     churned=int(self.rng.integers(0, 2)), split="train") for i in range(n)]

    def predictions(self, n, plan=False, prefix="p", model="churn"):
        step = (WINDOW[1] - WINDOW[0]) / (n + 1)
        rows = []
        for i in range(n):
            probability = float(self.rng.random())
            rows.append({"prediction_id": "%s-%d" % (prefix, i), "entity_id": "c-%s-%d" % (prefix, i),
                         "timestamp": timestamp(WINDOW[0] + step * (i + 1)), "model_name": model,
                         "model_version": "1", "features": json.dumps(self.customer(plan)), "prediction": probability,
                         "prediction_label": "1" if probability >= 0.5 else "0"})
        return rows

    def outcomes(self, predictions):
        """One outcome per prediction, 25 days after the window (within the 30-day label delay)."""
        rows = [{"prediction_id": row["prediction_id"], "timestamp": timestamp(WINDOW[1] + datetime.timedelta(days=25)),
                 "label_value": float(self.rng.integers(0, 2)), "source": "crm"} for row in predictions]
        return rows


def run_cli(args, env):
    full_env = {key: value for key, value in os.environ.items()
                if not key.startswith(("DRIFT_", "BIGQUERY_", "MLOPS_", "MODEL_"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "drift_job"] + args, cwd=DRIFT_JOB_DIR, env=full_env,
                          capture_output=True, text=True, timeout=300, check=False)


def window_rows(client, dataset):
    return query(client, "SELECT * FROM `%s.%s.drift_metrics` WHERE window_start = @start AND window_end = @end"
                 % (PROJECT, dataset), [bigquery.ScalarQueryParameter("start", "TIMESTAMP", WINDOW[0]),
                                        bigquery.ScalarQueryParameter("end", "TIMESTAMP", WINDOW[1])])


def test_the_role_declares_the_model_to_the_drift_job(deployed):
    client, dataset = deployed
    table = client.get_table("%s.%s.offline_features" % (PROJECT, dataset), retry=None, timeout=TIMEOUT)
    assert drift_job.job.model_config(table.description) == {
        "label": "churned", "task": "classification", "positive_class": 1, "classes": None, "label_delay_days": 30}
    assert table.description.startswith("Point-in-time feature rows")
    assert [field.name for field in table.schema] == [
        "entity_id", "event_timestamp", "contract", "tenure_months", "monthly_charges", "has_partner", "churned",
        "split", "ingested_at"]


def test_the_job_needs_only_project_dataset_model_and_window(deployed, bigquery_emulator):
    client, dataset = deployed
    data = Churn()
    predictions = data.predictions(300)
    insert(client, dataset, "offline_features", data.reference(300))
    insert(client, dataset, "predictions", predictions)
    outcomes = data.outcomes(predictions)
    insert(client, dataset, "ground_truth", outcomes)

    proc = run_cli(["--project", PROJECT, "--dataset", dataset, "--model-name", "churn",
                    "--window-start", WINDOW[0].isoformat(), "--window-end", WINDOW[1].isoformat()],
                   {"BIGQUERY_API_ENDPOINT": bigquery_emulator})  # the serving app's and the example's variable
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)
    assert sorted(summary["features"]) == ["contract:categorical", "has_partner:categorical",
                                           "monthly_charges:numeric", "tenure_months:numeric"]
    assert (summary["task_type"], summary["label"], summary["positive_class"], summary["label_delay_days"]) == (
        "classification", "churned", "1", 30)
    written = window_rows(client, dataset)
    # Every metric written is printed, drifted or not.
    printed = {(m["model_version"], m["model_alias"], m["feature"], m["metric_type"]): m["value"]
               for m in summary["metrics"]}
    assert printed == {(r["model_version"], r["model_alias"], r["feature"], r["metric_type"]): r["value"]
                       for r in written}
    assert {m["drift_detected"] for m in summary["metrics"]} >= {False, None}
    actual = np.array([row["label_value"] == 1.0 for row in outcomes])
    predicted = np.array([row["prediction"] >= 0.5 for row in predictions])
    assert printed[(None, None, None, "accuracy")] == pytest.approx(float(np.mean(actual == predicted)), rel=1e-9)
    assert printed[(None, None, None, "recall")] == pytest.approx(
        float(np.sum(actual & predicted) / np.sum(actual)), rel=1e-9)


def test_a_feature_added_in_place_is_loaded_queried_and_monitored(deployed, bigquery_emulator, tmp_path):
    client, dataset = deployed
    table_id = "%s.%s.offline_features" % (PROJECT, dataset)
    # The inventory gains a feature: the role adds the column in place (the table keeps its rows).
    proc = apply_role(tmp_path, bigquery_emulator, dataset, FEATURES + [PLAN])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "Create the tables" in proc.stdout and "changed: [localhost] => (item=offline_features)" in proc.stdout
    assert [f.name for f in client.get_table(table_id, retry=None, timeout=TIMEOUT).schema][-1] == "plan"

    data = Churn(seed=22)
    before = query(client, "SELECT COUNT(*) AS n FROM `%s`" % table_id)[0]["n"]
    # A load job and a streaming insert both keep the new column's values.
    loaded = data.reference(200, plan=True, prefix="load")
    job = client.load_table_from_file(
        io.BytesIO("\n".join(json.dumps(row) for row in loaded).encode()), table_id,
        job_config=bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON), timeout=TIMEOUT)
    job.result(retry=None, timeout=TIMEOUT)
    streamed = data.reference(200, plan=True, prefix="stream")
    insert(client, dataset, "offline_features", streamed)
    plans = query(client, "SELECT entity_id, plan FROM `%s` WHERE plan IS NOT NULL" % table_id)
    assert {row["entity_id"]: row["plan"] for row in plans} == {
        row["entity_id"]: row["plan"] for row in loaded + streamed}
    assert query(client, "SELECT COUNT(*) AS n FROM `%s` WHERE plan IS NULL" % table_id)[0]["n"] == before

    # The drift job takes the new column as a feature, with no argument saying so.
    predictions = data.predictions(300, plan=True, prefix="q", model="churn_v2")
    for i, row in enumerate(predictions[:30]):  # 10 % without the new feature
        features = json.loads(row["features"])
        del features["plan"]
        predictions[i] = dict(row, features=json.dumps(features))
    insert(client, dataset, "predictions", predictions)
    config = drift_job.Config(project=PROJECT, dataset=dataset, model_name="churn_v2", window_start=WINDOW[0],
                              window_end=WINDOW[1])
    summary = drift_job.run(config, client_for(bigquery_emulator), timeout=120, retry=None)
    assert "plan:categorical" in summary["features"]
    rows = {(r["feature"], r["metric_type"]): r["value"] for r in summary["rows"] if r["model_version"] is None}
    assert rows[("plan", "null_rate")] == pytest.approx(0.1)
    reference = [row["plan"] for row in loaded + streamed]
    current = [json.loads(row["features"]).get("plan") for row in predictions]
    current = [value for value in current if value is not None]
    categories = sorted(set(reference) | set(current))
    p_ref = np.array([reference.count(c) for c in categories]) / len(reference)
    p_cur = np.array([current.count(c) for c in categories]) / len(current)
    assert rows[("plan", "psi")] == pytest.approx(float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref))), rel=1e-9)


def test_a_retention_shorter_than_the_label_delay_fails_before_any_change(bigquery_emulator, tmp_path):
    client = client_for(bigquery_emulator)
    dataset = "short_retention_%d" % os.getpid()
    proc = apply_role(tmp_path, bigquery_emulator, dataset, FEATURES, mlops_prediction_retention_days=20,
                      mlops_label_delay_days=30)
    assert proc.returncode != 0
    output = " ".join((proc.stdout + proc.stderr).split())
    assert ("Predictions are kept 20 days (mlops_prediction_retention_days) but their outcomes may arrive up to "
            "30 days") in output, output[-3000:]
    assert dataset not in [d.dataset_id for d in client.list_datasets(retry=None, timeout=TIMEOUT)], "nothing created"
