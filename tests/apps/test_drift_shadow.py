"""Champion and challenger on the same live traffic (issue 15): the drift job against the BigQuery emulator with the
rows the serving API logs in shadow mode (two rows per request under one prediction_id: the champion's answer,
served, and the challenger's shadow prediction, not served) and in split mode (one row per request, either alias).

Quality and volume come per (model_version, model_alias); everything over all versions and feature drift count the
served rows only. Every expected figure is computed here with numpy from the generated rows, independently of the
job's SQL.
"""

from __future__ import annotations

import datetime
import json
import os

import numpy as np
import pytest
from google.cloud import bigquery

from drift_fixtures import (PROJECT, REFERENCE, client_for, create_dataset, import_drift_job, insert, query,
                            timestamp)

drift_job = import_drift_job()

UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)
WINDOW = (datetime.datetime(2026, 6, 1, tzinfo=UTC), datetime.datetime(2026, 6, 2, tzinfo=UTC))
NEXT_WINDOW = (WINDOW[1], WINDOW[1] + DAY)
# The challenger's shadow row is logged a little after the champion's answer, as a second model call would be.
SHADOW_LAG = datetime.timedelta(milliseconds=20)
CHAMPION, CHALLENGER = ("3", "champion"), ("4", "challenger")
QUALITY = ("accuracy", "precision", "recall", "log_loss")
FEATURE_METRICS = ("psi", "ks", "mean_shift", "null_rate")
TIGHT = {"rel": 1e-9, "abs": 1e-12}
EPS = 1e-15


def when(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Traffic:
    """Seeded requests to the churn model (the drift fixtures' schema: an INTEGER label, positive class 1).

    A window is cut in three: requests logged before shadow mode existed (champion, served NULL); shadow mode
    (champion served, challenger shadow, same prediction_id), during which total_charges and contract_type shift, so
    that counting shadow rows would change the feature drift; split mode (every other request answered by the
    challenger). The champion's probability follows the outcome closely, the challenger's loosely, so their quality
    differs. Each entity makes two consecutive requests. Outcomes: by prediction_id (some with an older,
    contradicting one), by entity only, or none.
    """

    def __init__(self, seed=15):
        self.rng = np.random.default_rng(seed)

    def features(self, shifted):
        rng = self.rng
        return {
            "tenure_months": int(rng.integers(0, 72)),
            "monthly_charges": float(rng.normal(70.0, 20.0)),
            "total_charges": float(rng.normal(3500.0 if shifted else 2000.0, 500.0)),
            "contract_type": str(rng.choice(["month_to_month", "one_year", "two_year"],
                                            p=[0.1, 0.2, 0.7] if shifted else [0.5, 0.3, 0.2])),
            "support_tickets_90d": int(rng.poisson(1.5)),
        }

    def reference(self, n=600):
        step = (REFERENCE[1] - REFERENCE[0]) / (n + 1)
        return [dict(self.features(False), entity_id="ref-%d" % i, event_timestamp=timestamp(REFERENCE[0] + step * i),
                     churned=int(self.rng.integers(0, 2)), split="train") for i in range(n)]

    def probability(self, outcome, noise):
        # Never exactly 0 or 1: log loss clips those (see drift_metrics.sql), which is not what this test is about.
        return float(np.clip(0.25 + 0.5 * outcome + self.rng.normal(0.0, noise), 0.01, 0.99))

    def window(self, window, n, model="churn", prefix="r", shadow=True):
        """(predictions, outcomes) of n requests; shadow=False logs only what was served (the same requests, rows
        and outcomes otherwise)."""
        predictions, outcomes = [], []
        step = (window[1] - window[0]) / (n + 1)
        observed = window[1] + DAY
        for i in range(n):
            phase = 3 * i // n  # 0: before shadow mode, 1: shadow mode, 2: split mode
            at = window[0] + step * (i + 1)
            prediction_id, outcome = "%s-%d" % (prefix, i), int(self.rng.random() < 0.4)
            base = {"prediction_id": prediction_id, "entity_id": "%s-e%d" % (prefix, i // 2), "model_name": model,
                    "features": json.dumps(self.features(shifted=phase == 1))}
            champion = self.probability(outcome, 0.15)
            challenger = self.probability(outcome, 0.45)
            if phase == 0:
                rows = [(CHAMPION, champion, None, at)]
            elif phase == 1:
                rows = [(CHAMPION, champion, True, at), (CHALLENGER, challenger, False, at + SHADOW_LAG)]
            else:
                rows = [(CHAMPION, champion, True, at) if i % 2 else (CHALLENGER, challenger, True, at)]
            for (version, alias), probability, served, logged in rows:
                if served is False and not shadow:
                    continue
                predictions.append(dict(base, model_version=version, model_alias=alias, served=served,
                                        timestamp=timestamp(logged), prediction=probability,
                                        prediction_label="1" if probability >= 0.5 else "0"))
            kind = i % 5
            if kind in (0, 1, 2):
                if kind == 0:  # superseded by the later outcome below
                    outcomes.append({"prediction_id": prediction_id, "label_value": float(1 - outcome),
                                     "timestamp": timestamp(observed - datetime.timedelta(hours=1)), "source": "first"})
                outcomes.append({"prediction_id": prediction_id, "label_value": float(outcome),
                                 "label_class": str(outcome), "timestamp": timestamp(observed), "source": "feed"})
            elif kind == 3:  # the entity's latest request is this one (i odd) or the next, which has no outcome
                outcomes.append({"entity_id": base["entity_id"], "label_value": float(outcome),
                                 "timestamp": timestamp(observed), "source": "crm"})
        return predictions, outcomes


def labelled(predictions, outcomes):
    """[(prediction row, outcome 0/1)] as the job should join them: the latest outcome of a prediction_id, or an
    entity's outcome given to its latest served request before it, to every row of that prediction_id."""
    by_id = {}
    for row in sorted((row for row in outcomes if "prediction_id" in row), key=lambda row: when(row["timestamp"])):
        by_id[row["prediction_id"]] = int(row["label_value"])  # a later outcome replaces an earlier one
    pairs = [(row, by_id[row["prediction_id"]]) for row in predictions if row["prediction_id"] in by_id]
    for outcome in (row for row in outcomes if "prediction_id" not in row):
        served = [row for row in predictions if row["entity_id"] == outcome["entity_id"]
                  and row["served"] is not False and when(row["timestamp"]) <= when(outcome["timestamp"])]
        request = max(served, key=lambda row: (when(row["timestamp"]), row["prediction_id"]))["prediction_id"]
        pairs += [(row, int(outcome["label_value"])) for row in predictions if row["prediction_id"] == request]
    return pairs


def expected_quality(predictions, outcomes):
    """{(model_version, model_alias): {metric: value}}; (None, None) over the served rows."""
    pairs = labelled(predictions, outcomes)
    groups = {(None, None): [pair for pair in pairs if pair[0]["served"] is not False]}
    for pair in pairs:
        groups.setdefault((pair[0]["model_version"], pair[0]["model_alias"]), []).append(pair)
    expected = {}
    for key, group in groups.items():
        y = np.array([outcome for _row, outcome in group], dtype=bool)
        p = np.clip(np.array([row["prediction"] for row, _outcome in group]), EPS, 1 - EPS)
        predicted = np.array([row["prediction_label"] == "1" for row, _outcome in group])
        tp, fp, fn = np.sum(predicted & y), np.sum(predicted & ~y), np.sum(~predicted & y)
        expected[key] = {"accuracy": float(np.mean(predicted == y)), "precision": float(tp / (tp + fp)),
                         "recall": float(tp / (tp + fn)),
                         "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))}
    return expected


def config(dataset, window=WINDOW, **overrides):
    values = dict(project=PROJECT, dataset=dataset, window_start=window[0], window_end=window[1], model_name="churn",
                  task_type="classification", reference_start=REFERENCE[0], reference_end=REFERENCE[1])
    values.update(overrides)
    return drift_job.Config(**values)


def run(client, cfg, now=None):
    return drift_job.run(cfg, client, timeout=120, retry=None, now=now)


def keyed(rows):
    """{(model_version, model_alias, feature, metric_type): value}; fails on a duplicate."""
    values = {}
    for row in rows:
        key = (row["model_version"], row["model_alias"], row["feature"], row["metric_type"])
        assert key not in values, "duplicate row %s" % (key,)
        values[key] = row["value"]
    return values


def table_rows(client, dataset, window, model="churn"):
    return query(client, "SELECT * FROM `%s.%s.drift_metrics` WHERE window_start = @start AND window_end = @end "
                 "AND model_name = @model" % (PROJECT, dataset),
                 [bigquery.ScalarQueryParameter("start", "TIMESTAMP", window[0]),
                  bigquery.ScalarQueryParameter("end", "TIMESTAMP", window[1]),
                  bigquery.ScalarQueryParameter("model", "STRING", model)])


@pytest.fixture(scope="module")
def shadow(bigquery_emulator):
    """Model churn with shadow rows, and model plain with the same requests logged without them."""
    client = client_for(bigquery_emulator)
    dataset = "shadow_%d" % os.getpid()
    create_dataset(client, dataset)
    traffic = Traffic()
    insert(client, dataset, "offline_features", traffic.reference())
    predictions, outcomes = traffic.window(WINDOW, 900)
    plain = [dict(row, model_name="plain", prediction_id="plain-" + row["prediction_id"],
                  entity_id="plain-" + row["entity_id"]) for row in predictions if row["served"] is not False]
    insert(client, dataset, "predictions", predictions + plain)
    insert(client, dataset, "ground_truth", outcomes)
    return client, dataset, predictions, outcomes


def test_champion_and_challenger_are_scored_on_the_same_requests(shadow):
    client, dataset, predictions, outcomes = shadow
    summary = run(client, config(dataset))
    values = keyed(summary["rows"])

    expected = expected_quality(predictions, outcomes)
    assert set(expected) == {(None, None), CHAMPION, CHALLENGER}
    assert {(version, alias, metric) for version, alias, feature, metric in values if metric in QUALITY} == {
        key + (metric,) for key in expected for metric in QUALITY}
    for (version, alias), metrics in expected.items():
        for metric, value in metrics.items():
            assert values[(version, alias, None, metric)] == pytest.approx(value, **TIGHT), (version, alias, metric)
    # The fixture does what it says: the challenger is clearly worse, and over all versions is not the champion alone.
    assert expected[CHALLENGER]["accuracy"] < expected[CHAMPION]["accuracy"] - 0.1
    assert expected[(None, None)]["log_loss"] != pytest.approx(expected[CHAMPION]["log_loss"])

    # Volume per (version, alias) counts every row it predicted, shadow included; over all versions, requests answered.
    assert values[CHAMPION + (None, "volume")] == len([r for r in predictions if r["model_alias"] == "champion"])
    assert values[CHALLENGER + (None, "volume")] == len([r for r in predictions if r["model_alias"] == "challenger"])
    assert values[(None, None, None, "volume")] == len({r["prediction_id"] for r in predictions}) == 900
    assert len(predictions) > 900, "the window holds shadow rows"
    # Every row over all versions and every feature row has no alias: only CHAMPION, CHALLENGER and (None, None).
    assert {(version, alias) for version, alias, _feature, _metric in values} == {(None, None), CHAMPION, CHALLENGER}
    # The summary printed by the command line tells the aliases apart.
    printed = {(m["model_version"], m["model_alias"]) for m in summary["metrics"] if m["metric_type"] == "accuracy"}
    assert printed == {(None, None), CHAMPION, CHALLENGER}


def test_shadow_rows_leave_feature_drift_unchanged(shadow):
    client, dataset, predictions, _outcomes = shadow
    with_shadow = keyed(run(client, config(dataset))["rows"])
    served_only = keyed(run(client, config(dataset, model_name="plain"))["rows"])
    features = {key: value for key, value in with_shadow.items() if key[2] is not None}
    assert {metric for _v, _a, _f, metric in features} == set(FEATURE_METRICS)
    assert features == pytest.approx({key: value for key, value in served_only.items() if key[2] is not None},
                                     **TIGHT)
    # It could have differed: the shadowed requests drifted, so counting their rows twice moves the mean shift.
    reference = query(client, "SELECT total_charges FROM `%s.%s.offline_features`" % (PROJECT, dataset))
    reference = np.array([row["total_charges"] for row in reference])

    def mean_shift(rows):
        values = np.array([json.loads(row["features"])["total_charges"] for row in rows])
        return (values.mean() - reference.mean()) / reference.std(ddof=1)
    served = [row for row in predictions if row["served"] is not False]
    assert features[(None, None, "total_charges", "mean_shift")] == pytest.approx(mean_shift(served), **TIGHT)
    assert abs(mean_shift(predictions) - mean_shift(served)) > 0.2


def test_rerun_replaces_every_alias_row(shadow):
    client, dataset, _predictions, _outcomes = shadow
    first = run(client, config(dataset))
    stored = table_rows(client, dataset, WINDOW)
    second = run(client, config(dataset))
    again = table_rows(client, dataset, WINDOW)
    assert len(again) == len(stored) == second["rows_written"] == first["rows_written"]
    keyed(again)  # no (version, alias, feature, metric) twice
    assert second["rows_affected"] == 2 * len(stored)  # every old row deleted, every new row inserted
    assert keyed(again) == pytest.approx(keyed(stored), **TIGHT)
    assert {row["computed_at"] for row in again} != {row["computed_at"] for row in stored}


def test_late_labels_rescore_champion_and_challenger(bigquery_emulator):
    client = client_for(bigquery_emulator)
    dataset = "shadow_late_%d" % os.getpid()
    create_dataset(client, dataset)
    traffic = Traffic(seed=16)
    insert(client, dataset, "offline_features", traffic.reference())
    day1, outcomes = traffic.window(WINDOW, 300, prefix="d1")
    day2, _later = traffic.window(NEXT_WINDOW, 300, prefix="d2")
    insert(client, dataset, "predictions", day1 + day2)

    # Day 1 scored at its end: no outcome yet, no quality row.
    first = run(client, config(dataset), now=WINDOW[1])
    assert not [row for row in first["rows"] if row["metric_type"] in QUALITY]
    insert(client, dataset, "ground_truth", outcomes)

    # The run for day 2 fills day 1's quality in, for both aliases and over all versions, and a second run for day 2
    # replaces those rows rather than adding to them.
    for _attempt in range(2):
        summary = run(client, config(dataset, NEXT_WINDOW, label_delay_days=30), now=NEXT_WINDOW[1])
        assert summary["rescored"]["windows"] == 1
        values = keyed(table_rows(client, dataset, WINDOW))
        for (version, alias), metrics in expected_quality(day1, outcomes).items():
            for metric, value in metrics.items():
                assert values[(version, alias, None, metric)] == pytest.approx(value, **TIGHT), (version, alias, metric)
        rescored = {(m["model_version"], m["model_alias"], m["metric_type"]) for m in summary["rescored"]["metrics"]}
        assert rescored == {key + (metric,) for key in ((None, None), CHAMPION, CHALLENGER) for metric in QUALITY}
