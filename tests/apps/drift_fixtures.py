"""Helpers shared by the drift job and Grafana tests: the mlops tables, created in the BigQuery emulator
from the schemas the bigquery role deploys (roles/bigquery/vars/main.yml, feature and label columns from
inventories/local), and a client for the emulator.

The schemas are read, not copied, so a column renamed in the role breaks these tests as it would break
the apps in production.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import numpy as np
import yaml
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from jinja2.nativetypes import NativeEnvironment

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "test-project"
ROLE_VARS = ROOT / "roles" / "bigquery" / "vars" / "main.yml"
# The drift tests' own model, a churn classifier with numeric and categorical features; the tables are built
# from the bigquery role's schemas with these columns (the inventories hold the worked example's columns).
FEATURES = [
    {"name": "tenure_months", "type": "INTEGER"},
    {"name": "monthly_charges", "type": "FLOAT"},
    {"name": "total_charges", "type": "FLOAT"},
    {"name": "contract_type", "type": "STRING"},
    {"name": "support_tickets_90d", "type": "INTEGER"},
]
LABEL = {"name": "churned", "type": "INTEGER"}
DRIFT_JOB_DIR = ROOT / "roles" / "monitoring" / "files"
GRAFANA_DIR = ROOT / "roles" / "grafana" / "files"
# Calls to the emulator: no retries (a failing call must fail the test now, not after 600 s of retries).
TIMEOUT = 60


def import_drift_job():
    """The drift job package from the role's files (it is deployed from there, not installed)."""
    if str(DRIFT_JOB_DIR) not in sys.path:
        sys.path.insert(0, str(DRIFT_JOB_DIR))
    import drift_job  # pylint: disable=import-outside-toplevel
    return drift_job


def _combine(base, *others):
    merged = dict(base)
    for other in others:
        merged.update(other)
    return merged


def table_schemas(features=None, label=None):
    """{table_id: (list of column dicts, partitioning column)} as the bigquery role creates them locally, for the
    given feature and label declarations (default: this module's)."""
    role_vars = yaml.safe_load(ROLE_VARS.read_text())
    env = NativeEnvironment()
    # The filters the role's templates use, as Ansible defines them.
    env.filters.update(combine=_combine, dict2items=lambda d: [{"key": k, "value": v} for k, v in d.items()],
                       items2dict=lambda items: {i["key"]: i["value"] for i in items})
    context = dict(role_vars, bigquery_features=FEATURES if features is None else features,
                   bigquery_label=LABEL if label is None else label)
    for name in ("bigquery_feature_columns", "bigquery_label_column"):
        context[name] = env.from_string(role_vars[name]).render(context)
    tables = {}
    for table in role_vars["bigquery_tables"]:
        schema = table["schema"]
        if isinstance(schema, str):
            schema = env.from_string(schema).render(context)
        tables[table["table_id"]] = (schema, table["time_partitioning"]["field"])
    return tables


def feature_columns():
    """The feature columns: [(name, BigQuery type)]."""
    return [(column["name"], column["type"]) for column in FEATURES]


def client_for(url):
    return bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=url))


def schema_field(column):
    """A column of the role's schema as a SchemaField, its nested fields included (a RECORD without them is refused)."""
    return bigquery.SchemaField(column["name"], column["type"], mode=column.get("mode", "NULLABLE"),
                                fields=[schema_field(field) for field in column.get("fields", ())])


def create_dataset(client, dataset_id):
    """A fresh dataset holding the mlops tables with the role's schemas and partitioning."""
    client.create_dataset(bigquery.Dataset("%s.%s" % (PROJECT, dataset_id)), retry=None, timeout=TIMEOUT)
    for table_id, (columns, partition_field) in table_schemas().items():
        table = bigquery.Table("%s.%s.%s" % (PROJECT, dataset_id, table_id),
                               schema=[schema_field(column) for column in columns])
        table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field=partition_field)
        client.create_table(table, retry=None, timeout=TIMEOUT)


def insert(client, dataset_id, table_id, rows, chunk=500):
    """Stream rows into a table (in chunks), failing loudly on any row error."""
    for start in range(0, len(rows), chunk):
        errors = client.insert_rows_json("%s.%s.%s" % (PROJECT, dataset_id, table_id), rows[start:start + chunk],
                                         retry=None, timeout=TIMEOUT)
        assert not errors, errors[:3]


def query(client, sql, params=()):
    """Run a query in the emulator and return its rows as dicts."""
    job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=list(params)),
                       retry=None, job_retry=None, timeout=TIMEOUT)
    return [dict(row.items()) for row in job.result(retry=None, timeout=TIMEOUT)]


def timestamp(value):
    """RFC 3339 text of a datetime, as the streaming API takes TIMESTAMP values."""
    return value.isoformat().replace("+00:00", "Z")


UTC = datetime.timezone.utc
REFERENCE = (datetime.datetime(2026, 1, 1, tzinfo=UTC), datetime.datetime(2026, 1, 15, tzinfo=UTC))
WINDOW = (datetime.datetime(2026, 2, 1, tzinfo=UTC), datetime.datetime(2026, 2, 2, tzinfo=UTC))
NEXT_WINDOW = (datetime.datetime(2026, 2, 2, tzinfo=UTC), datetime.datetime(2026, 2, 3, tzinfo=UTC))
CONTRACTS = ["month_to_month", "one_year", "two_year"]


class Synthetic:
    """Seeded rows for the mlops tables, plus the plain arrays the expected metrics are computed from.

    Reference (offline_features, split train, REFERENCE window): tenure_months uniform 0-71, monthly_charges
    N(70, 20), total_charges N(2000, 500), contract_type 50/30/20 %, support_tickets_90d Poisson(1.5).
    Decoys the job must leave out: test-split rows and train rows before the reference window, both with
    shifted values.
    Window (predictions of model "churn", a classifier, versions 3 then 4): tenure_months and
    monthly_charges drawn like the reference (no drift), total_charges N(2600, 500) (drift),
    contract_type 30 % month_to_month / 60 % one_year / 10 % an unseen "three_year" (drift, with an empty
    bin on each side), support_tickets_90d missing, null or not a number in 20 % of the rows.
    Every prediction is the champion's; churn's are logged with served NULL (as before shadow mode existed),
    charges' with served true.
    Model "charges" (a regressor) gets predictions from the reference distributions. Predictions just
    outside the window (start - 1 s, and end, which is exclusive) carry extreme values.
    Ground truth: by prediction_id (an older, contradicting outcome is superseded by the latest), by
    entity_id only (matched to the entity's latest prediction before the outcome), or none.
    """

    def __init__(self, seed=7, n_reference=3000, n_churn=2000, n_charges=500, n_next=300):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.offline_features, self.predictions, self.ground_truth = [], [], []
        self.reference = self._reference(n_reference)
        self._decoys()
        self.churn = self._churn(n_churn)
        self.charges = self._charges(n_charges)
        self.next_window = self._next_window(n_next)
        self._outside_window()

    def _features(self, n, total_mean=2000.0, contracts=(0.5, 0.3, 0.2), categories=tuple(CONTRACTS)):
        rng = self.rng
        return {
            "tenure_months": rng.integers(0, 72, n),
            "monthly_charges": rng.normal(70.0, 20.0, n),
            "total_charges": rng.normal(total_mean, 500.0, n),
            "contract_type": rng.choice(list(categories), n, p=list(contracts)),
            "support_tickets_90d": rng.poisson(1.5, n),
        }

    @staticmethod
    def _times(start, end, n):
        step = (end - start) / (n + 1)
        return [start + step * (i + 1) for i in range(n)]

    def _offline_rows(self, features, times, split):
        for i, when in enumerate(times):
            self.offline_features.append({
                "entity_id": "cust-%d" % len(self.offline_features), "event_timestamp": timestamp(when),
                "tenure_months": int(features["tenure_months"][i]), "monthly_charges": float(features["monthly_charges"][i]),
                "total_charges": float(features["total_charges"][i]), "contract_type": str(features["contract_type"][i]),
                "support_tickets_90d": int(features["support_tickets_90d"][i]), "churned": int(self.rng.integers(0, 2)),
                "split": split, "ingested_at": timestamp(REFERENCE[1]),
            })

    def _reference(self, n):
        features = self._features(n)
        self._offline_rows(features, self._times(REFERENCE[0], REFERENCE[1], n), "train")
        return features

    def _decoys(self):
        shifted = self._features(300, total_mean=9000.0, contracts=(0.0, 0.0, 1.0))
        shifted["monthly_charges"] = shifted["monthly_charges"] + 500.0
        self._offline_rows(shifted, self._times(REFERENCE[0], REFERENCE[1], 300), "test")
        self._offline_rows(shifted, self._times(REFERENCE[0] - datetime.timedelta(days=20), REFERENCE[0], 300), "train")

    def _prediction(self, model, version, when, features, prediction, label=None, served=None):
        prediction_id = "%s-%d" % (model, len(self.predictions))
        self.predictions.append({
            "prediction_id": prediction_id, "entity_id": "ent-" + prediction_id, "timestamp": timestamp(when),
            "model_name": model, "model_version": version, "model_alias": "champion",
            "features": json.dumps(features), "prediction": prediction, "prediction_label": label,
            "latency_ms": float(self.rng.gamma(2.0, 4.0)), "served": served,
        })
        return self.predictions[-1]

    @staticmethod
    def _feature_object(features, i):
        return {
            "tenure_months": int(features["tenure_months"][i]), "monthly_charges": float(features["monthly_charges"][i]),
            "total_charges": float(features["total_charges"][i]), "contract_type": str(features["contract_type"][i]),
            "support_tickets_90d": int(features["support_tickets_90d"][i]),
        }

    def _churn(self, n):
        features = self._features(n, total_mean=2600.0, contracts=(0.3, 0.6, 0.1),
                                  categories=("month_to_month", "one_year", "three_year"))
        tickets = [float(v) for v in features["support_tickets_90d"]]
        times = self._times(WINDOW[0], WINDOW[1], n)
        outcomes = []  # (version, predicted class, actual class) of every prediction with ground truth
        after = WINDOW[1] + datetime.timedelta(days=2)
        for i, when in enumerate(times):
            body = self._feature_object(features, i)
            if i % 20 == 0:
                del body["support_tickets_90d"]
                tickets[i] = None
            elif i % 20 == 1:
                body["support_tickets_90d"] = None
                tickets[i] = None
            elif i % 20 in (2, 3):
                body["support_tickets_90d"] = "n/a"
                tickets[i] = None
            version = "3" if i < n // 2 else "4"
            probability = float(self.rng.random())
            label = None if version == "3" else ("1" if probability >= 0.5 else "0")
            row = self._prediction("churn", version, when, body, probability, label)
            actual = int(self.rng.integers(0, 2))
            predicted = "1" if probability >= 0.5 else "0"
            kind = i % 5
            if kind in (0, 1, 2):  # by prediction id, with an older wrong outcome for some
                if kind == 0:
                    self.ground_truth.append({"prediction_id": row["prediction_id"], "entity_id": row["entity_id"],
                                              "timestamp": timestamp(after - datetime.timedelta(hours=1)),
                                              "label_value": float(1 - actual), "source": "first-feed"})
                self.ground_truth.append({"prediction_id": row["prediction_id"], "entity_id": row["entity_id"],
                                          "timestamp": timestamp(after), "label_value": float(actual),
                                          "label_class": str(actual), "source": "feed"})
                outcomes.append((version, predicted, str(actual)))
            elif kind == 3:  # by entity only
                self.ground_truth.append({"entity_id": row["entity_id"], "timestamp": timestamp(after),
                                          "label_value": float(actual), "source": "crm"})
                outcomes.append((version, predicted, str(actual)))
        return {"features": features, "support_tickets_90d": tickets, "outcomes": outcomes,
                "versions": {"3": n // 2, "4": n - n // 2}}

    def _charges(self, n):
        features = self._features(n)
        times = self._times(WINDOW[0], WINDOW[1], n)
        errors = []
        for i, when in enumerate(times):
            prediction = float(self.rng.normal(100.0, 30.0))
            row = self._prediction("charges", "1", when, self._feature_object(features, i), prediction, served=True)
            if i % 4 == 3:
                continue
            actual = prediction + float(self.rng.normal(0.0, 5.0))
            if i % 4 == 2:  # an outcome known by entity only, reported an hour after the prediction
                self.ground_truth.append({"entity_id": row["entity_id"], "label_value": actual, "source": "billing",
                                          "timestamp": timestamp(when + datetime.timedelta(hours=1))})
            else:
                self.ground_truth.append({"prediction_id": row["prediction_id"], "label_value": actual, "source": "billing",
                                          "timestamp": timestamp(when + datetime.timedelta(hours=1))})
            errors.append(prediction - actual)
        return {"features": features, "errors": np.array(errors)}

    def _next_window(self, n):
        counts = {}
        for model in ("churn", "charges"):
            features = self._features(n)
            for i, when in enumerate(self._times(NEXT_WINDOW[0], NEXT_WINDOW[1], n)):
                self._prediction(model, "4" if model == "churn" else "1", when, self._feature_object(features, i), 0.5, "1")
            counts[model] = n
        return counts

    def _outside_window(self):
        extreme = {"tenure_months": 999, "monthly_charges": 1e6, "total_charges": -1e6, "contract_type": "alien",
                   "support_tickets_90d": 999}
        for when in (WINDOW[0] - datetime.timedelta(seconds=1), NEXT_WINDOW[1]):
            for model in ("churn", "charges"):
                for _i in range(25):
                    self._prediction(model, "9", when, extreme, 1.0, "1")

    def load(self, client, dataset_id):
        insert(client, dataset_id, "offline_features", self.offline_features)
        insert(client, dataset_id, "predictions", self.predictions)
        insert(client, dataset_id, "ground_truth", self.ground_truth)
