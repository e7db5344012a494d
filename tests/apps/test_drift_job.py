"""The drift job (roles/monitoring/files/drift_job) against the BigQuery emulator.

The tables are created from the bigquery role's schemas and filled with seeded synthetic data
(drift_fixtures.Synthetic); every expected metric is computed here from the generating arrays with
numpy/scipy, independently of the job's SQL.

About the expected PSI: BigQuery's APPROX_QUANTILES is approximate; the emulator computes it exactly
(DuckDB quantile_disc, the "inverted_cdf" quantile definition), so the reference bin boundaries are
computed here the same way and the comparison is tight. On BigQuery proper the boundaries may move by
a rank or so, which changes PSI by far less than the thresholds.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from drift_fixtures import (DRIFT_JOB_DIR, NEXT_WINDOW, PROJECT, REFERENCE, WINDOW, Synthetic, client_for,
                            create_dataset, import_drift_job, query)
from tests.standins.recorder import RecordingProxy

drift_job = import_drift_job()
import drift_job.__main__ as drift_cli  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

FEATURES = ("tenure_months", "monthly_charges", "total_charges", "contract_type", "support_tickets_90d")
NUMERIC = ("tenure_months", "monthly_charges", "total_charges", "support_tickets_90d")
BINS, EPSILON = 10, 1e-4
TIGHT = {"rel": 1e-6, "abs": 1e-9}


@pytest.fixture(scope="module")
def seeded(bigquery_emulator):
    """One dataset for the module: the four tables, seeded once."""
    client = client_for(bigquery_emulator)
    dataset = "drift_%d" % os.getpid()
    create_dataset(client, dataset)
    data = Synthetic()
    data.load(client, dataset)
    return client, dataset, data


def config(dataset, **overrides):
    values = dict(project=PROJECT, dataset=dataset, window_start=WINDOW[0], window_end=WINDOW[1],
                  features=tuple(drift_job.Feature(name) for name in FEATURES), model_name="churn",
                  task_type="classification", reference_start=REFERENCE[0], reference_end=REFERENCE[1],
                  bins=BINS, epsilon=EPSILON)
    values.update(overrides)
    return drift_job.Config(**values)


def run(client, cfg):
    return drift_job.run(cfg, client, timeout=120, retry=None)


def by_key(rows):
    """{(model_version, feature, metric_type): row}; fails on duplicates."""
    keyed = {}
    for row in rows:
        key = (row["model_version"], row["feature"], row["metric_type"])
        assert key not in keyed, "duplicate row %s" % (key,)
        keyed[key] = row
    return keyed


def count_rows(client, dataset, window=None, model=None):
    sql = "SELECT COUNT(*) AS n FROM `%s.%s.drift_metrics` WHERE TRUE" % (PROJECT, dataset)
    if window:
        sql += " AND window_start = TIMESTAMP '%s'" % window[0].strftime("%Y-%m-%d %H:%M:%S+00")
    if model:
        sql += " AND model_name = '%s'" % model
    return query(client, sql)[0]["n"]


# ---- expected values, computed independently ----

def expected_psi_numeric(reference, current):
    reference = np.asarray(reference, dtype=float)
    current = np.asarray([v for v in current if v is not None], dtype=float)
    edges = np.unique(np.quantile(reference, np.arange(1, BINS) / BINS, method="inverted_cdf"))
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    return _psi(ref_counts, cur_counts)


def expected_psi_categorical(reference, current):
    categories = sorted(set(reference) | set(current))
    ref_counts = np.array([list(reference).count(c) for c in categories])
    cur_counts = np.array([list(current).count(c) for c in categories])
    return _psi(ref_counts, cur_counts)


def _psi(ref_counts, cur_counts):
    seen = (ref_counts + cur_counts) > 0
    p_ref = np.where(ref_counts == 0, EPSILON, ref_counts / ref_counts.sum())[seen]
    p_cur = np.where(cur_counts == 0, EPSILON, cur_counts / cur_counts.sum())[seen]
    return float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))


def current_values(data, feature):
    if feature == "support_tickets_90d":
        return data.churn["support_tickets_90d"]
    return list(data.churn["features"][feature])


def expected_feature_metrics(data):
    expected = {}
    for feature in FEATURES:
        reference = data.reference[feature]
        current = current_values(data, feature)
        if feature in NUMERIC:
            present = np.array([v for v in current if v is not None], dtype=float)
            reference = np.asarray(reference, dtype=float)
            expected[(feature, "psi")] = expected_psi_numeric(reference, current)
            expected[(feature, "ks")] = float(stats.ks_2samp(reference, present).statistic)
            expected[(feature, "mean_shift")] = float((present.mean() - reference.mean()) / reference.std(ddof=1))
        else:
            expected[(feature, "psi")] = expected_psi_categorical(list(reference), list(current))
        expected[(feature, "null_rate")] = sum(v is None for v in current) / len(current)
    return expected


# ---- tests ----

def test_feature_drift_matches_independent_computation(seeded):
    client, dataset, data = seeded
    summary = run(client, config(dataset))
    rows = by_key(summary["rows"])
    expected = expected_feature_metrics(data)

    # The synthetic data does what it says: a clear no-drift and a clear drift case.
    assert expected[("monthly_charges", "psi")] < 0.05 and expected[("monthly_charges", "ks")] < 0.05
    assert expected[("total_charges", "psi")] > 0.5 and expected[("total_charges", "ks")] > 0.3
    assert expected[("support_tickets_90d", "null_rate")] == pytest.approx(0.2)

    for (feature, metric), value in expected.items():
        row = rows[(None, feature, metric)]
        assert row["value"] == pytest.approx(value, **TIGHT), (feature, metric)
    feature_rows = {key for key in rows if key[1] is not None}
    assert feature_rows == {(None, feature, metric) for feature, metric in expected}, "unexpected feature metrics"

    # Thresholds recorded with each row; the flag follows them.
    for feature in NUMERIC:
        assert rows[(None, feature, "psi")]["threshold"] == 0.2
        assert rows[(None, feature, "ks")]["threshold"] == 0.1
        assert rows[(None, feature, "mean_shift")]["threshold"] is None
        assert rows[(None, feature, "mean_shift")]["drift_detected"] is None
    for feature in ("monthly_charges", "tenure_months"):
        assert rows[(None, feature, "psi")]["drift_detected"] is False
        assert rows[(None, feature, "ks")]["drift_detected"] is False
    assert rows[(None, "total_charges", "psi")]["drift_detected"] is True
    assert rows[(None, "total_charges", "ks")]["drift_detected"] is True
    assert rows[(None, "contract_type", "psi")]["drift_detected"] is True
    flagged = {(item["feature"], item["metric_type"]) for item in summary["drift_detected"]}
    assert ("total_charges", "psi") in flagged and ("monthly_charges", "psi") not in flagged


def test_thresholds_are_configurable(seeded):
    client, dataset, data = seeded
    thresholds = {"psi": 50.0, "ks": 0.01, "mean_shift": 1.0, "null_rate": 0.1, "accuracy": 0.99, "volume": 10000,
                  "precision": 0.99, "log_loss": 100.0}
    rows = by_key(run(client, config(dataset, thresholds=thresholds))["rows"])
    expected = expected_feature_metrics(data)
    assert rows[(None, "total_charges", "psi")]["threshold"] == 50.0
    assert rows[(None, "total_charges", "psi")]["drift_detected"] is False  # PSI far below 50
    assert rows[(None, "monthly_charges", "ks")]["drift_detected"] is (expected[("monthly_charges", "ks")] >= 0.01)
    assert rows[(None, "total_charges", "mean_shift")]["drift_detected"] is True  # |1.2 sd| >= 1
    assert rows[(None, "monthly_charges", "mean_shift")]["drift_detected"] is False
    assert rows[(None, "support_tickets_90d", "null_rate")]["drift_detected"] is True  # 0.2 >= 0.1
    assert rows[(None, "tenure_months", "null_rate")]["drift_detected"] is False
    assert rows[(None, None, "accuracy")]["drift_detected"] is True  # below 0.99 is bad
    assert rows[(None, None, "volume")]["drift_detected"] is True  # 2000 < 10000 is bad
    assert rows[(None, None, "precision")]["drift_detected"] is True  # below 0.99 is bad
    assert rows[(None, None, "log_loss")]["drift_detected"] is False  # higher is bad: far below 100
    run(client, config(dataset))  # back to the defaults for the other tests


def test_classification_quality_and_volume(seeded):
    client, dataset, data = seeded
    rows = by_key(run(client, config(dataset))["rows"])
    outcomes = data.churn["outcomes"]
    overall = np.mean([predicted == actual for _version, predicted, actual in outcomes])
    assert rows[(None, None, "accuracy")]["value"] == pytest.approx(overall, **TIGHT)
    # The label (churned, INTEGER) is 0/1: the positive class is 1 without a declaration.
    predicted = np.array([p == "1" for _v, p, _a in outcomes])
    actual = np.array([a == "1" for _v, _p, a in outcomes])
    assert rows[(None, None, "precision")]["value"] == pytest.approx(
        np.sum(predicted & actual) / np.sum(predicted), **TIGHT)
    assert rows[(None, None, "recall")]["value"] == pytest.approx(np.sum(predicted & actual) / np.sum(actual), **TIGHT)
    for version, count in data.churn["versions"].items():
        subset = [predicted == actual for v, predicted, actual in outcomes if v == version]
        assert rows[(version, None, "accuracy")]["value"] == pytest.approx(np.mean(subset), **TIGHT)
        assert rows[(version, None, "volume")]["value"] == count
    assert rows[(None, None, "volume")]["value"] == sum(data.churn["versions"].values())
    # Every prediction went through the champion alias: per-version rows carry it, the rest has none.
    for (version, feature, metric), row in rows.items():
        assert row["model_alias"] == ("champion" if version else None), (version, feature, metric)
    assert not any(metric in ("mae", "rmse") for _v, _f, metric in rows), "regression metrics for a classifier"
    assert "9" not in {version for version, _f, _m in rows}, "predictions outside the window were counted"


def test_regression_quality(seeded):
    client, dataset, data = seeded
    summary = run(client, config(dataset, model_name="charges", task_type="regression"))
    # Its predictions are no probabilities: no warning about a classifier scored as a regression.
    assert not [warning for warning in summary["warnings"] if "classifier" in warning]
    rows = by_key(summary["rows"])
    errors = data.charges["errors"]
    assert len(errors) == 375  # 3 of every 4 predictions have an outcome, a third of them by entity only
    assert rows[("1", None, "mae")]["model_alias"] == "champion"  # logged with served true, not null
    for version in (None, "1"):
        assert rows[(version, None, "mae")]["value"] == pytest.approx(float(np.mean(np.abs(errors))), **TIGHT)
        assert rows[(version, None, "rmse")]["value"] == pytest.approx(float(np.sqrt(np.mean(errors ** 2))), **TIGHT)
        assert rows[(version, None, "volume")]["value"] == 500
    assert not any(metric == "accuracy" for _v, _f, metric in rows)
    # The regressor's inputs were drawn like the reference: no drift flagged.
    assert not [key for key, row in rows.items() if row["drift_detected"]]


def test_rerun_replaces_the_window(seeded):
    client, dataset, data = seeded
    first = run(client, config(dataset))
    run(client, config(dataset, model_name="charges", task_type="regression"))
    churn_rows, charges_rows, total = (count_rows(client, dataset, WINDOW, "churn"),
                                       count_rows(client, dataset, WINDOW, "charges"), count_rows(client, dataset))
    second = run(client, config(dataset))
    assert second["rows_written"] == first["rows_written"] == churn_rows
    assert second["rows_affected"] == 2 * churn_rows  # every old row deleted, every new row inserted
    assert count_rows(client, dataset, WINDOW, "churn") == churn_rows
    assert count_rows(client, dataset, WINDOW, "charges") == charges_rows, "another model's rows were touched"
    assert count_rows(client, dataset) == total
    assert {row["computed_at"] for row in second["rows"]} != {row["computed_at"] for row in first["rows"]}
    assert [(r["model_version"], r["feature"], r["metric_type"]) for r in second["rows"]] == \
        [(r["model_version"], r["feature"], r["metric_type"]) for r in first["rows"]]
    assert [r["value"] for r in second["rows"]] == pytest.approx([r["value"] for r in first["rows"]], **TIGHT)
    assert data.churn["versions"]  # the data the counts come from


def test_other_window_adds_rows_and_all_models(seeded):
    client, dataset, data = seeded
    run(client, config(dataset))
    before_window = count_rows(client, dataset, WINDOW)
    before = count_rows(client, dataset)
    summary = run(client, config(dataset, window_start=NEXT_WINDOW[0], window_end=NEXT_WINDOW[1], model_name=None))
    models = {row["model_name"] for row in summary["rows"]}
    assert models == {"churn", "charges"}
    volumes = {row["model_name"]: row["value"] for row in summary["rows"]
               if row["metric_type"] == "volume" and row["model_version"] is None}
    assert volumes == data.next_window
    added = count_rows(client, dataset, NEXT_WINDOW)
    assert added == summary["rows_written"] > 0
    assert count_rows(client, dataset) == before - count_rows_before(summary) + added
    assert count_rows(client, dataset, WINDOW) == before_window, "the first window's rows changed"
    again = run(client, config(dataset, window_start=NEXT_WINDOW[0], window_end=NEXT_WINDOW[1], model_name=None))
    assert again["rows_written"] == added and count_rows(client, dataset, NEXT_WINDOW) == added


def count_rows_before(summary):
    """Rows the run replaced (zero on the first run for a window): affected = deleted + inserted."""
    return summary["rows_affected"] - summary["rows_written"]


def test_model_without_predictions_gets_zero_volume(seeded):
    client, dataset, _data = seeded
    summary = run(client, config(dataset, model_name="retired"))
    assert [(r["model_version"], r["metric_type"], r["value"]) for r in summary["rows"]] == [(None, "volume", 0.0)]


@pytest.mark.parametrize("overrides, message", [
    ({"features": (drift_job.Feature("tenure_months; DROP TABLE x"),)}, "not a plain column name"),
    ({"features": (drift_job.Feature("features.monthly_charges"),)}, "not a plain column name"),
    ({"features": (drift_job.Feature("monthly_charges`"),)}, "not a plain column name"),
    ({"features": (drift_job.Feature("monthly_charges", "ordinal"),)}, "numeric or categorical"),
    ({"dataset": "mlops` WHERE TRUE --"}, "dataset"),
    ({"project": "Test_Project"}, "project"),
    ({"job_project": "x"}, "job project"),
    ({"tables": {"offline_features": "offline-features", "predictions": "predictions", "ground_truth": "ground_truth",
                 "drift_metrics": "drift_metrics"}}, "table name"),
    ({"bins": 1}, "bins"),
    ({"window_start": WINDOW[1], "window_end": WINDOW[0]}, "not before"),
    ({"window_start": datetime.datetime(2026, 2, 1)}, "timezone-aware"),
    ({"thresholds": {"drift": 0.3}}, "unknown metrics"),
    ({"task_type": "ranking"}, "task type"),
    ({"label": "churned; DROP TABLE x"}, "label"),
    ({"label_delay_days": -1}, "label delay"),
    ({"label_delay_days": 1.5}, "label delay"),
    ({"positive_class": ["1"]}, "positive class"),
])
def test_bad_configuration_is_refused_before_any_request(bigquery, overrides, message):
    client = client_for(bigquery.url)
    with pytest.raises(drift_job.ConfigError, match=message):
        drift_job.run(config(**dict({"dataset": "mlops"}, **overrides)), client, timeout=10, retry=None)
    assert bigquery.requests == []


def test_unknown_feature_column_is_refused_before_any_query(seeded, bigquery):
    _client, dataset, _data = seeded
    client = client_for(bigquery.url)
    with pytest.raises(drift_job.ConfigError, match="not a column"):
        drift_job.run(config(dataset, features=(drift_job.Feature("monthly_charges"), drift_job.Feature("no_such_column"))),
                      client, timeout=10, retry=None)
    assert [method for method, _path in bigquery.requests] == ["GET"]  # the table's schema, no query


def test_sql_uses_parameters_for_every_value(seeded):
    _client, dataset, _data = seeded
    cfg = config(dataset, features=(drift_job.Feature("monthly_charges", "numeric"), drift_job.Feature("contract_type", "categorical")))
    sql = drift_job.build_query(cfg, {"monthly_charges": "numeric", "contract_type": "categorical"})
    code = "\n".join(line.split("--")[0] for line in sql.splitlines())
    assert "{{" not in sql and "}}" not in sql
    assert set(re.findall(r"@(\w+)", code)) == {param.name for param in drift_job.query_parameters(cfg)}
    assert "2026" not in code and "churn" not in code  # window and model only as parameters
    with pytest.raises(drift_job.ConfigError, match="needs values for: table"):
        drift_job.job.render("SELECT * FROM `{{ table }}`", {})


def run_cli(args, env):
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("DRIFT_")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "drift_job"] + args, cwd=DRIFT_JOB_DIR, env=full_env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_command_line(seeded, bigquery_emulator):
    client, dataset, _data = seeded
    env = {
        "BIGQUERY_EMULATOR_HOST": bigquery_emulator, "DRIFT_PROJECT": PROJECT, "DRIFT_DATASET": dataset,
        "DRIFT_FEATURES": "monthly_charges, total_charges:numeric, contract_type", "DRIFT_MODEL_NAME": "churn",
        "DRIFT_TASK_TYPE": "classification", "DRIFT_REFERENCE_START": REFERENCE[0].isoformat(),
        "DRIFT_REFERENCE_END": "2026-01-15T00:00:00Z", "DRIFT_KS_THRESHOLD": "none", "DRIFT_TIMEOUT": "120",
    }
    proc = run_cli(["--window-start", "2026-02-01T00:00:00Z", "--window-end", "2026-02-02T00:00:00"], env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    flagged = {(item["feature"], item["metric_type"]) for item in summary["drift_detected"]}
    assert flagged == {("total_charges", "psi"), ("contract_type", "psi")}  # KS has no threshold now
    assert summary["rows_written"] == count_rows(client, dataset, WINDOW, "churn")
    ks = query(client, "SELECT threshold, drift_detected FROM `%s.%s.drift_metrics` WHERE metric_type = 'ks' "
                       "AND model_name = 'churn' AND window_start = TIMESTAMP '2026-02-01 00:00:00+00'" % (PROJECT, dataset))
    assert ks and all(row["threshold"] is None and row["drift_detected"] is None for row in ks)
    run(client, config(dataset))  # restore the window as the other tests expect it


def test_command_line_refuses_bad_input_without_a_request(bigquery):
    env = {"BIGQUERY_EMULATOR_HOST": bigquery.url, "DRIFT_PROJECT": PROJECT, "DRIFT_DATASET": "mlops",
           "DRIFT_FEATURES": "monthly_charges,total_charges)"}
    proc = run_cli(["--window-start", "2026-02-01T00:00:00Z", "--window-end", "2026-02-02T00:00:00Z"], env)
    assert proc.returncode == 2
    assert "total_charges)" in proc.stderr and "not a plain column name" in proc.stderr
    proc = run_cli(["--window-start", "yesterday", "--window-end", "2026-02-02T00:00:00Z"],
                   dict(env, DRIFT_FEATURES="monthly_charges"))
    assert proc.returncode == 2 and "RFC 3339" in proc.stderr
    proc = run_cli([], dict(env, DRIFT_FEATURES="monthly_charges", DRIFT_PSI_THRESHOLD="high"))
    assert proc.returncode == 2 and "not a number" in proc.stderr
    assert bigquery.requests == []


def test_default_window_is_the_last_full_hours():
    args = drift_cli.parser({"DRIFT_PROJECT": PROJECT, "DRIFT_FEATURES": "a", "DRIFT_WINDOW_HOURS": "6"}).parse_args([])
    now = datetime.datetime(2026, 3, 4, 10, 41, 7, tzinfo=datetime.timezone.utc)
    cfg = drift_cli.config_from(args, now=now)
    assert (cfg.window_start, cfg.window_end) == (datetime.datetime(2026, 3, 4, 4, tzinfo=datetime.timezone.utc),
                                                  datetime.datetime(2026, 3, 4, 10, tzinfo=datetime.timezone.utc))
    assert cfg.thresholds == {"psi": 0.2, "ks": 0.1, "mean_shift": None, "null_rate": None, "mae": None,
                              "rmse": None, "accuracy": None, "precision": None, "recall": None, "log_loss": None,
                              "volume": None}
    assert cfg.task_type is None and cfg.label_delay_days is None  # read from offline_features by the run
    assert cfg.reference_split == "train" and cfg.reference_bounds()[1] == cfg.window_start


def test_recording_proxy_sees_the_job(bigquery_emulator, seeded):
    """The job talks to BigQuery only through the REST API: one schema read, two query jobs (a classifier without a
    label delay needs no look-up before its MERGE)."""
    _client, dataset, _data = seeded
    proxy = RecordingProxy(bigquery_emulator)
    try:
        run(client_for(proxy.url), config(dataset))
        posts = [path for method, path in proxy.requests if method == "POST"]
        assert len(posts) == 2 and all(path.endswith("/jobs") or path.endswith("/queries") for path in posts), posts
    finally:
        proxy.close()


def test_image_is_pinned_and_non_root():
    dockerfile = (DRIFT_JOB_DIR / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:\d+\.\d+\.\d+-slim\S*\s*$", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}\s*$", dockerfile, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert '["python", "-m", "drift_job"]' in dockerfile
    requirements = [line.split("#")[0].strip() for line in (DRIFT_JOB_DIR / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in requirements if line]
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line) for line in requirements), requirements
    pins = dict(line.split("==") for line in requirements)
    from google.cloud import bigquery  # pylint: disable=import-outside-toplevel
    assert pins["google-cloud-bigquery"] == bigquery.__version__  # the image runs the client these tests ran
