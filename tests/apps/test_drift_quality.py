"""The drift job with your own model (issue 11): classification quality for INTEGER, BOOLEAN and STRING labels,
the model config read from offline_features, the warning for a classifier scored as a regression, and late labels
re-scored idempotently. Against the BigQuery emulator; every expected figure is computed here with numpy from the
generated outcomes, independently of the job's SQL.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from google.cloud import bigquery

from drift_fixtures import (DRIFT_JOB_DIR, PROJECT, TIMEOUT, client_for, import_drift_job, insert, query, schema_field,
                            table_schemas, timestamp)

drift_job = import_drift_job()
import drift_job.__main__ as drift_cli  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)
REFERENCE = (datetime.datetime(2026, 2, 1, tzinfo=UTC), datetime.datetime(2026, 2, 15, tzinfo=UTC))
D1 = (datetime.datetime(2026, 3, 1, tzinfo=UTC), datetime.datetime(2026, 3, 2, tzinfo=UTC))
D2 = (D1[1], D1[1] + DAY)
D40 = (D1[0] + 40 * DAY, D1[0] + 41 * DAY)
FEATURES = [{"name": "monthly_charges", "type": "FLOAT"}, {"name": "segment", "type": "STRING"}]
TIGHT = {"rel": 1e-9, "abs": 1e-12}
EPS = 1e-15
QUALITY = ("accuracy", "precision", "recall", "log_loss")

# Per label type: the classes as the serving API logs prediction_label (negative, positive), and the forms in which
# outcome feeds report them in ground_truth (label_class, label_value) for a negative and a positive outcome.
LABEL_TYPES = {
    "INTEGER": {"classes": ("0", "1"), "outcomes": [
        ({"label_class": "0"}, {"label_class": "1"}),
        ({"label_value": 0.0}, {"label_value": 1.0}),
        ({"label_class": "0.0", "label_value": 0.0}, {"label_class": " 1.0", "label_value": 1.0}),
    ], "declared": {"positive_class": 1}},
    "BOOLEAN": {"classes": ("false", "true"), "outcomes": [
        ({"label_class": "false"}, {"label_class": "true"}),
        ({"label_class": "False"}, {"label_class": "True"}),
        ({"label_value": 0.0}, {"label_value": 1.0}),
    ], "declared": {}},  # no positive class declared: true
    "STRING": {"classes": ("stayed", "churned"), "outcomes": [
        ({"label_class": "stayed"}, {"label_class": "churned"}),
    ], "declared": {"positive_class": "churned", "classes": ["stayed", "churned"]}},
}


def model_config_line(**declared):
    return "%s %s" % (drift_job.job.MODEL_CONFIG_PREFIX, json.dumps(declared, sort_keys=True))


def make_dataset(client, dataset, label, description=None, retention_days=None):
    """The four tables with the bigquery role's schemas for FEATURES and `label`; `description` on offline_features."""
    client.create_dataset(bigquery.Dataset("%s.%s" % (PROJECT, dataset)), retry=None, timeout=TIMEOUT)
    for table_id, (columns, partition_field) in table_schemas(FEATURES, label).items():
        table = bigquery.Table("%s.%s.%s" % (PROJECT, dataset, table_id),
                               schema=[schema_field(column) for column in columns])
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=partition_field,
            expiration_ms=retention_days * 86400000 if retention_days and table_id == "predictions" else None)
        if table_id == "offline_features":
            table.description = description
        client.create_table(table, retry=None, timeout=TIMEOUT)


class Model:
    """Seeded rows of one binary classifier "m": reference rows, predictions per window, and their outcomes."""

    def __init__(self, label_type, seed=11):
        self.rng = np.random.default_rng(seed)
        self.label_type = label_type
        self.negative, self.positive = LABEL_TYPES[label_type]["classes"]
        self.predictions = []

    def _features(self):
        return {"monthly_charges": float(self.rng.normal(70, 20)), "segment": str(self.rng.choice(["a", "b", "c"]))}

    def reference_rows(self, n=200):
        rows = []
        step = (REFERENCE[1] - REFERENCE[0]) / (n + 1)
        for i in range(n):
            value = {"INTEGER": int(self.rng.integers(0, 2)), "BOOLEAN": bool(self.rng.integers(0, 2)),
                     "STRING": str(self.rng.choice([self.negative, self.positive]))}[self.label_type]
            rows.append(dict(self._features(), entity_id="r-%d" % i, label=value, split="train",
                             event_timestamp=timestamp(REFERENCE[0] + step * (i + 1))))
        return rows

    def predict(self, window, n, with_labels=True):
        """n predictions spread over the window: version 1 logs only the probability, version 2 also a class,
        decided at its own threshold 0.3 (so the class, not the probability, must be what counts)."""
        rows = []
        step = (window[1] - window[0]) / (n + 1)
        for i in range(n):
            version = "1" if i < n // 2 else "2"
            probability = float(self.rng.random())
            label = None
            if version == "2" and with_labels:
                label = self.positive if probability >= 0.3 else self.negative
            number = len(self.predictions) + i
            row = {"prediction_id": "p-%d" % number, "entity_id": "e-%d" % number,
                   "timestamp": timestamp(window[0] + step * (i + 1)), "model_name": "m", "model_version": version,
                   "features": json.dumps(self._features()), "prediction": probability, "prediction_label": label}
            rows.append(row)
        self.predictions.extend(rows)
        return rows

    def outcomes(self, predictions, observed, share=1.0):
        """Ground truth for a share of `predictions`, observed at `observed`, in every form the label type has;
        returns (rows, truth) with truth {prediction_id: positive?}."""
        forms = LABEL_TYPES[self.label_type]["outcomes"]
        rows, truth = [], {}
        for i, row in enumerate(predictions):
            if self.rng.random() >= share:
                continue
            positive = bool(self.rng.random() < 0.4)
            form = forms[i % len(forms)][int(positive)]
            outcome = dict(form, timestamp=timestamp(observed), source="feed")
            if i % 7 == 3:  # known by entity only
                outcome["entity_id"] = row["entity_id"]
            else:
                outcome["prediction_id"] = row["prediction_id"]
            rows.append(outcome)
            truth[row["prediction_id"]] = positive
        return rows, truth

    def expected(self, predictions, truth, threshold=0.5):
        """{model_version or None: {metric: value}} with numpy, from the labelled predictions."""
        groups = {None: [row for row in predictions if row["prediction_id"] in truth]}
        for version in ("1", "2"):
            groups[version] = [row for row in groups[None] if row["model_version"] == version]
        expected = {}
        for version, rows in groups.items():
            if not rows:
                continue
            y = np.array([truth[row["prediction_id"]] for row in rows], dtype=bool)
            p = np.array([row["prediction"] for row in rows], dtype=float)
            predicted = np.array([row["prediction_label"] == self.positive if row["prediction_label"] is not None
                                  else row["prediction"] >= threshold for row in rows], dtype=bool)
            tp, fp, fn = np.sum(predicted & y), np.sum(predicted & ~y), np.sum(~predicted & y)
            clipped = np.clip(p, EPS, 1 - EPS)
            expected[version] = {
                "accuracy": float(np.mean(predicted == y)),
                "precision": float(tp / (tp + fp)),
                "recall": float(tp / (tp + fn)),
                "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
            }
        return expected


def offline_rows(model, label_name):
    return [dict({key: value for key, value in row.items() if key != "label"}, **{label_name: row["label"]})
            for row in model.reference_rows()]


def config(dataset, window, **overrides):
    values = dict(project=PROJECT, dataset=dataset, window_start=window[0], window_end=window[1], model_name="m",
                  reference_start=REFERENCE[0], reference_end=REFERENCE[1])
    values.update(overrides)
    return drift_job.Config(**values)


def run(client, cfg, now=None):
    return drift_job.run(cfg, client, timeout=120, retry=None, now=now)


def quality_of(rows, window=None):
    """{(model_version, metric_type): value} of the quality rows (of one window, when given)."""
    return {(row["model_version"], row["metric_type"]): row["value"] for row in rows
            if row["metric_type"] in drift_job.job.QUALITY_METRICS
            and (window is None or (row["window_start"], row["window_end"]) == window)}


def table_rows(client, dataset, window):
    return query(client, "SELECT * FROM `%s.%s.drift_metrics` WHERE window_start = @start AND window_end = @end"
                 % (PROJECT, dataset), [bigquery.ScalarQueryParameter("start", "TIMESTAMP", window[0]),
                                        bigquery.ScalarQueryParameter("end", "TIMESTAMP", window[1])])


def assert_unique(rows):
    keys = [(row["window_start"], row["window_end"], row["model_name"], row["model_version"], row["model_alias"],
             row["feature"], row["metric_type"]) for row in rows]
    assert len(keys) == len(set(keys)), "duplicate drift_metrics rows"


# ---- classification figures against numpy ----

@pytest.mark.parametrize("label_type", sorted(LABEL_TYPES))
def test_classification_quality_matches_numpy(bigquery_emulator, label_type):
    client = client_for(bigquery_emulator)
    dataset = "quality_%s_%d" % (label_type.lower(), os.getpid())
    declared = dict(LABEL_TYPES[label_type]["declared"], label="churn", task="classification")
    make_dataset(client, dataset, {"name": "churn", "type": label_type},
                 description="Rows.\n" + model_config_line(**declared))
    model = Model(label_type)
    insert(client, dataset, "offline_features", offline_rows(model, "churn"))
    predictions = model.predict(D1, 400)
    outcomes, truth = model.outcomes(predictions, D1[1] + DAY, share=0.8)
    insert(client, dataset, "predictions", predictions)
    insert(client, dataset, "ground_truth", outcomes)

    summary = run(client, config(dataset, D1))  # nothing but project, dataset, model and window

    assert summary["task_type"] == "classification" and summary["label"] == "churn"
    assert summary["positive_class"] == model.positive
    assert sorted(summary["features"]) == ["monthly_charges:numeric", "segment:categorical"]
    expected = model.expected(predictions, truth)
    written = quality_of(summary["rows"])
    assert set(written) == {(version, metric) for version in (None, "1", "2") for metric in QUALITY}
    for version, metrics in expected.items():
        for metric, value in metrics.items():
            assert written[(version, metric)] == pytest.approx(value, **TIGHT), (label_type, version, metric)
    # The class logged by version 2 (threshold 0.3) counts, not prediction >= 0.5: the figures differ.
    only_probability = model.expected([dict(row, prediction_label=None) for row in predictions], truth)
    assert only_probability["2"]["recall"] != pytest.approx(expected["2"]["recall"])
    assert not [warning for warning in summary["warnings"] if "classifier" in warning]


def test_canonical_classes_agree_with_the_sql_forms():
    canonical = drift_job.job.canonical_class
    assert [canonical(v, "INTEGER") for v in (1, 1.0, "1", " 1.0", True, "yes")] == ["1", "1", "1", "1", "1", "yes"]
    assert [canonical(v, "BOOLEAN") for v in (True, "True", "1", 1, 0.0, "false")] == \
        ["true", "true", "true", "true", "false", "false"]
    assert [canonical(v, "STRING") for v in ("Yes", 1, 1.0, True)] == ["Yes", "1", "1", "true"]
    assert canonical(None, "INTEGER") is None and canonical(2.5, "FLOAT") == "2.5"
    positive = drift_job.job.default_positive_class
    assert positive("BOOLEAN") is True and positive("INTEGER") == 1 and positive("STRING") is None
    assert positive("STRING", ["yes", "no"]) == "yes" and positive("INTEGER", [0, 1, 2]) is None


def test_model_config_is_read_from_the_description():
    read = drift_job.job.model_config
    assert read(None) == {} and read("Some text\nmore text") == {}
    assert read("Rows.\n" + model_config_line(label="churn", task="auto")) == {"label": "churn", "task": "auto"}
    with pytest.raises(drift_job.ConfigError, match="not a JSON object"):
        read("Rows.\n%s {label: churn" % drift_job.job.MODEL_CONFIG_PREFIX)


# ---- a classifier scored as a regression ----

def test_regression_by_default_warns_about_a_binary_classifier(bigquery_emulator):
    client = client_for(bigquery_emulator)
    dataset = "undeclared_%d" % os.getpid()
    make_dataset(client, dataset, {"name": "churn", "type": "INTEGER"})  # no model config
    model = Model("INTEGER", seed=3)
    insert(client, dataset, "offline_features", offline_rows(model, "churn"))
    predictions = model.predict(D1, 200, with_labels=False)
    outcomes, truth = model.outcomes(predictions, D1[1] + DAY)
    insert(client, dataset, "predictions", predictions)
    insert(client, dataset, "ground_truth", outcomes)

    summary = run(client, config(dataset, D1))
    assert summary["task_type"] == "regression" and summary["label"] == "churn"  # the column before split
    assert "churn:numeric" not in summary["features"], "the label is no feature"
    assert {metric for _version, metric in quality_of(summary["rows"])} == {"mae", "rmse"}
    # MAE and RMSE count the outcomes given as a number (label_value); those given only as a class have none.
    valued = {row.get("prediction_id") or "p-" + row["entity_id"][2:] for row in outcomes if "label_value" in row}
    errors = np.array([row["prediction"] - truth[row["prediction_id"]] for row in predictions
                       if row["prediction_id"] in valued])
    assert 0 < len(errors) < len(truth)
    assert quality_of(summary["rows"])[(None, "mae")] == pytest.approx(float(np.mean(np.abs(errors))), **TIGHT)
    warnings = " ".join(summary["warnings"])
    assert "no task type declared" in warnings and "column before split" in warnings
    assert "binary classifier scored as a regression" in warnings

    # Declared regression: still warned. Declared classification: no warning, classification metrics.
    assert "binary classifier" in " ".join(run(client, config(dataset, D1, task_type="regression"))["warnings"])
    summary = run(client, config(dataset, D1, task_type="classification"))
    assert not [warning for warning in summary["warnings"] if "regression" in warning]
    assert {m for _v, m in quality_of(summary["rows"])} == set(QUALITY)
    assert quality_of(summary["rows"])[(None, "accuracy")] == pytest.approx(
        model.expected(predictions, truth)[None]["accuracy"], **TIGHT)

    # The command line prints the warning on stderr, and every metric it wrote on stdout.
    proc = run_cli(["--window-start", D1[0].isoformat(), "--window-end", D1[1].isoformat(),
                    "--reference-start", REFERENCE[0].isoformat(), "--reference-end", REFERENCE[1].isoformat()],
                   {"BIGQUERY_API_ENDPOINT": bigquery_emulator, "MLOPS_PROJECT": PROJECT, "MLOPS_DATASET": dataset,
                    "MODEL_NAME": "m"})
    assert proc.returncode == 0, proc.stderr
    assert "drift_job: warning: this looks like a binary classifier" in proc.stderr
    printed = json.loads(proc.stdout)
    written = table_rows(client, dataset, D1)
    assert len(printed["metrics"]) == len(written) == printed["rows_written"]
    assert any(row["drift_detected"] is False for row in printed["metrics"]), "rows that did not drift are printed"


# ---- late labels ----

def test_late_labels_fill_earlier_windows_in_without_duplicates(bigquery_emulator):
    client = client_for(bigquery_emulator)
    dataset = "late_%d" % os.getpid()
    declared = {"label": "churn", "task": "classification", "positive_class": 1, "label_delay_days": 30}
    make_dataset(client, dataset, {"name": "churn", "type": "INTEGER"}, description=model_config_line(**declared))
    model = Model("INTEGER", seed=5)
    insert(client, dataset, "offline_features", offline_rows(model, "churn"))
    day1, day2, day40 = model.predict(D1, 200), model.predict(D2, 200), model.predict(D40, 50)
    insert(client, dataset, "predictions", day1 + day2 + day40)

    # Day 1 scored at its end: no outcome yet, so no quality row.
    first = run(client, config(dataset, D1), now=D1[1] + datetime.timedelta(hours=1))
    assert quality_of(first["rows"]) == {} and first["rescored"]["windows"] == 0
    feature_rows = {(r["feature"], r["metric_type"]): r["computed_at"] for r in table_rows(client, dataset, D1)}

    # Outcomes of half of day 1 arrive 3 days later; the run for day 2 fills day 1 in.
    early, truth = model.outcomes(day1[:100], D1[1] + 3 * DAY)
    insert(client, dataset, "ground_truth", early)
    second = run(client, config(dataset, D2), now=D2[1] + datetime.timedelta(hours=1))
    assert second["rescored"]["windows"] == 1 and second["rescored"]["from"] == (D2[1] - 30 * DAY).isoformat()
    expected = model.expected(day1, truth)
    rescored = quality_of(second["rescored"]["metrics"], D1)
    assert rescored[(None, "accuracy")] == pytest.approx(expected[None]["accuracy"], **TIGHT)
    assert rescored == quality_of(table_rows(client, dataset, D1))
    assert all(row["window_start"] == D1[0] for row in second["rescored"]["metrics"])
    assert not quality_of(second["rows"]), "day 2 has no outcome yet"
    after = table_rows(client, dataset, D1)
    assert {(r["feature"], r["metric_type"]): r["computed_at"] for r in after if r["feature"]} == \
        {key: value for key, value in feature_rows.items() if key[0]}, "feature drift of day 1 untouched"

    # The rest of day 1 and all of day 2 arrive 20 days later; running day 2 again replaces day 1's quality rows.
    late, more = model.outcomes(day1[100:] + day2, D1[1] + 20 * DAY)
    insert(client, dataset, "ground_truth", late)
    truth.update(more)
    before = table_rows(client, dataset, D1)
    third = run(client, config(dataset, D2), now=D2[1] + 20 * DAY)
    for window, rows in ((D1, day1), (D2, day2)):
        written = table_rows(client, dataset, window)
        assert_unique(written)
        for version, metrics in model.expected(rows, truth).items():
            for metric, value in metrics.items():
                assert quality_of(written)[(version, metric)] == pytest.approx(value, **TIGHT), (window, metric)
    # Version 2's outcomes came only now: its 4 quality rows are new, the others were replaced.
    count = len(table_rows(client, dataset, D1))
    assert count == len(before) + len(QUALITY), "day 1's quality rows replaced, not added"
    assert third["rescored"]["rows_written"] == len(quality_of(table_rows(client, dataset, D1)))
    again = run(client, config(dataset, D2), now=D2[1] + 20 * DAY)
    assert len(table_rows(client, dataset, D1)) == count and again["rescored"] == dict(
        third["rescored"], metrics=again["rescored"]["metrics"])

    # More than the delay after day 1 and day 2 ended, a run leaves them as they are.
    final = {w: table_rows(client, dataset, w) for w in (D1, D2)}
    contradicting, _truth = model.outcomes(day1, D40[0], share=1.0)
    insert(client, dataset, "ground_truth", contradicting)
    last = run(client, config(dataset, D40), now=D40[1] + datetime.timedelta(hours=1))
    assert last["rescored"]["windows"] == 0
    for window, rows in final.items():
        assert sorted(map(repr, table_rows(client, dataset, window))) == sorted(map(repr, rows))

    # A run for every model scores its own window only, and says why.
    summary = run(client, config(dataset, D2, model_name=None), now=D2[1] + 20 * DAY)
    assert summary["rescored"]["windows"] == 0 and "give --model-name" in " ".join(summary["warnings"])


def test_windows_whose_predictions_expired_are_not_rescored(bigquery_emulator):
    client = client_for(bigquery_emulator)
    dataset = "retention_%d" % os.getpid()
    declared = {"label": "churn", "task": "classification", "label_delay_days": 30}
    make_dataset(client, dataset, {"name": "churn", "type": "INTEGER"}, description=model_config_line(**declared),
                 retention_days=10)
    model = Model("INTEGER", seed=9)
    insert(client, dataset, "offline_features", offline_rows(model, "churn"))
    day1, day2 = model.predict(D1, 100), model.predict(D2, 100)
    insert(client, dataset, "predictions", day1 + day2)
    run(client, config(dataset, D1), now=D1[1])
    outcomes, _truth = model.outcomes(day1, D1[1] + 5 * DAY)
    insert(client, dataset, "ground_truth", outcomes)

    # 12 days after day 1, its partition (kept 10 days) is gone: re-scoring it would count only what is left.
    summary = run(client, config(dataset, D2), now=D1[0] + 12 * DAY)
    assert summary["rescored"]["windows"] == 0 and quality_of(table_rows(client, dataset, D1)) == {}
    # Within the retention it is re-scored.
    summary = run(client, config(dataset, D2), now=D1[0] + 9 * DAY)
    assert summary["rescored"]["windows"] == 1 and quality_of(table_rows(client, dataset, D1))


def test_retained_from_is_the_first_whole_day_kept():
    class Table:  # pylint: disable=too-few-public-methods
        time_partitioning = bigquery.TimePartitioning(expiration_ms=10 * 86400000)

    now = datetime.datetime(2026, 3, 13, 5, tzinfo=UTC)
    assert drift_job.job.retained_from(Table(), now) == datetime.datetime(2026, 3, 4, tzinfo=UTC)
    assert drift_job.job.retained_from(Table(), now.replace(hour=0)) == datetime.datetime(2026, 3, 3, tzinfo=UTC)
    Table.time_partitioning = bigquery.TimePartitioning()
    assert drift_job.job.retained_from(Table(), now) == drift_job.job.EPOCH


# ---- the command line ----

def run_cli(args, env):
    full_env = {key: value for key, value in os.environ.items()
                if not key.startswith(("DRIFT_", "BIGQUERY_", "MLOPS_", "MODEL_"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "drift_job"] + args, cwd=DRIFT_JOB_DIR, env=full_env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_help_names_the_environment_variable_of_every_option():
    options = drift_cli.parser({})
    for action in options._actions:  # pylint: disable=protected-access
        if action.option_strings and action.dest not in ("help", "print_sql"):
            assert "(env: " in (action.help or ""), action.option_strings
    text = options.format_help()
    for name in ("BIGQUERY_API_ENDPOINT", "BIGQUERY_EMULATOR_HOST", "DRIFT_LABEL_DELAY_DAYS", "DRIFT_POSITIVE_CLASS",
                 "DRIFT_LOG_LOSS_THRESHOLD", "MLOPS_PROJECT", "MLOPS_DATASET", "MODEL_NAME"):
        assert name in text.replace("\n", " ").replace("  ", " "), name


def test_environment_names_of_the_other_programs_are_read():
    args = drift_cli.parser({"BIGQUERY_API_ENDPOINT": "http://127.0.0.1:1", "BIGQUERY_EMULATOR_HOST": "127.0.0.1:2",
                             "MLOPS_PROJECT": "my-project", "MLOPS_DATASET": "d", "MODEL_NAME": "m"}).parse_args([])
    assert (args.bigquery_endpoint, args.project, args.dataset, args.model_name) == (
        "http://127.0.0.1:1", "my-project", "d", "m")
    args = drift_cli.parser({"BIGQUERY_EMULATOR_HOST": "127.0.0.1:2", "DRIFT_PROJECT": "drift-project",
                             "MLOPS_PROJECT": "my-project"}).parse_args([])
    assert args.bigquery_endpoint == "127.0.0.1:2" and args.project == "drift-project"
    assert drift_cli.endpoint_url("127.0.0.1:2") == "http://127.0.0.1:2"
    assert drift_cli.endpoint_url("http://127.0.0.1:2/") == "http://127.0.0.1:2"
    args = drift_cli.parser({"DRIFT_PROJECT": PROJECT, "DRIFT_LABEL_DELAY_DAYS": "7", "DRIFT_POSITIVE_CLASS": "yes"})
    cfg = drift_cli.config_from(args.parse_args(["--window-start", "2026-03-01T00:00:00Z",
                                                 "--window-end", "2026-03-02T00:00:00Z"]))
    assert (cfg.label_delay_days, cfg.positive_class, cfg.task_type, cfg.features) == (7, "yes", None, ())
