"""Grafana provisioning (roles/grafana/files): dashboards, datasource, image and start script.

Every panel query and every query variable is run against the BigQuery emulator on seeded data (the
mlops tables from the bigquery role's schemas; drift_metrics written by the real drift job), after the
expansion the Google BigQuery datasource plugin performs (tests/standins/grafana_queries.py, which the
local dashboard renderer uses too), with the time range TIME_RANGE and $__interval "1h".

Each result is then checked against what the panel needs: a TIMESTAMP column named time plus numeric
value columns (string columns become series labels) for time-series format, the columns that field
overrides and options name, and rows at all. A few panels are also checked for their numbers.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess

import pytest
import yaml

from drift_fixtures import (GRAFANA_DIR, NEXT_WINDOW, PROJECT, REFERENCE, WINDOW, Synthetic, client_for,
                            create_dataset, import_drift_job, query)
from tests.standins import dashboards, grafana_queries
from tests.standins.grafana_queries import (DashboardError, all_panels, expand_macros, interpolate_variables,
                                            panel_instances, query_panels, run_query)

DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "bigquery.yaml"
PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "mlops.yaml"
DOCKERFILE = GRAFANA_DIR / "Dockerfile"
ENTRYPOINT = GRAFANA_DIR / "entrypoint.sh"
PLUGIN = "grafana-bigquery-datasource"
TABLES = ("offline_features", "predictions", "ground_truth", "drift_metrics")
TIME_RANGE = (datetime.datetime(2026, 1, 31, tzinfo=datetime.timezone.utc),
              datetime.datetime(2026, 2, 3, 6, tzinfo=datetime.timezone.utc))
INTERVAL = "1h"
NUMERIC = ("INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC")
FORMAT_TIME_SERIES, FORMAT_TABLE = 0, 1


def load_dashboards():
    return [(path.name, json.loads(path.read_text())) for path in DASHBOARDS]


def datasource_uid():
    return yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]


def expand(sql, variables, time_range=TIME_RANGE):
    return grafana_queries.expand(sql, variables, time_range, INTERVAL)


# ---- seeded data ----

@pytest.fixture(scope="module")
def seeded(bigquery_emulator):
    """The mlops tables with synthetic predictions and the drift job's metrics for two windows."""
    client = client_for(bigquery_emulator)
    dataset = "grafana_%d" % os.getpid()
    create_dataset(client, dataset)
    data = Synthetic(seed=11, n_reference=1500, n_churn=800, n_charges=300, n_next=200)
    data.load(client, dataset)
    drift_job = import_drift_job()
    for window in (WINDOW, NEXT_WINDOW):
        for model, task in (("churn", "classification"), ("charges", "regression")):
            drift_job.run(drift_job.Config(
                project=PROJECT, dataset=dataset, window_start=window[0], window_end=window[1],
                features=tuple(drift_job.Feature(name) for name in ("tenure_months", "monthly_charges", "total_charges", "contract_type")),
                model_name=model, task_type=task, reference_start=REFERENCE[0], reference_end=REFERENCE[1],
            ), client, timeout=120, retry=None)
    return client, dataset, data


def resolve_variables(client, dashboard, dataset, time_range=TIME_RANGE):
    """{name: (value, quoted)} as Grafana sets them: the dataset constant to our dataset, query variables to All."""
    variables, options = grafana_queries.resolve_variables(client, dashboard, dataset, time_range, INTERVAL)
    for name, values in options.items():
        assert values, "variable %s has no options on the seeded data" % name
    return variables, options


def check_result(item, target, rows, columns):
    where = "%s / %s" % (item["title"], target["refId"])
    assert rows, "%s returned no rows on the seeded data" % where
    numeric = [name for name, kind in columns.items() if kind in NUMERIC]
    if target["format"] == FORMAT_TIME_SERIES:
        assert columns.get("time") == "TIMESTAMP", "%s: time series needs a TIMESTAMP column named time, got %s" % (where, columns)
        assert numeric, "%s: time series needs numeric value columns, got %s" % (where, columns)
        others = [name for name, kind in columns.items() if name != "time" and kind not in NUMERIC]
        assert all(columns[name] == "STRING" for name in others), "%s: label columns must be strings: %s" % (where, columns)
        times = [row["time"] for row in rows]
        assert times == sorted(times), "%s: rows are not in time order" % where
    if item["type"] == "state-timeline":
        assert columns.get("time") == "TIMESTAMP" and len(columns) >= 2, "%s: %s" % (where, columns)
    if item["type"] == "barchart":
        assert item["options"]["xField"] in columns, "%s: xField %s not among %s" % (where, item["options"]["xField"], columns)
        assert numeric, where
    if item["type"] in ("timeseries", "barchart"):
        assert any(row[name] is not None for row in rows for name in numeric), "%s: every value is null" % where
    for override in item["fieldConfig"].get("overrides", []):
        matcher = override["matcher"]
        if matcher["id"] == "byName":
            assert matcher["options"] in columns, "%s: override for missing column %s" % (where, matcher["options"])
        elif matcher["id"] == "byRegexp":
            regex = matcher["options"].strip("/")
            assert any(re.search(regex, name) for name in columns), "%s: override %s matches no column" % (where, regex)


# ---- structure ----

def test_dashboards_are_valid_and_unique():
    assert len(DASHBOARDS) >= 2
    uids, titles = set(), set()
    for name, dashboard in load_dashboards():
        assert dashboard.get("uid") and dashboard["uid"] not in uids, name
        assert dashboard.get("title") and dashboard["title"] not in titles, name
        uids.add(dashboard["uid"])
        titles.add(dashboard["title"])
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"]), name
        assert dashboard.get("id") is None, "%s: provisioned dashboards carry no database id" % name
        assert isinstance(dashboard.get("schemaVersion"), int)
        panels = list(all_panels(dashboard))
        ids = [item["id"] for item in panels]
        assert len(ids) == len(set(ids)), "%s: duplicate panel ids" % name
        for item in panels:
            assert {"x", "y", "w", "h"} <= set(item["gridPos"]), (name, item["title"])
            assert item.get("title"), name
        # No panel declared over another (repeats and the rows they push down are placed by Grafana).
        cells = [(item["gridPos"]["x"] + column, item["gridPos"]["y"] + row) for item in panels
                 for column in range(item["gridPos"]["w"]) for row in range(item["gridPos"]["h"])]
        assert len(cells) == len(set(cells)), "%s: panels overlap" % name


def test_every_panel_queries_the_provisioned_datasource():
    uid = datasource_uid()
    for name, dashboard in load_dashboards():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"] == {"type": PLUGIN, "uid": uid}, (name, variable["name"])
                assert variable["query"]["rawSql"].strip()
        for item in query_panels(dashboard):
            where = (name, item["title"])
            assert item["datasource"] == {"type": PLUGIN, "uid": uid}, where
            assert item.get("targets"), "%s has no query" % (where,)
            refs = [target["refId"] for target in item["targets"]]
            assert len(refs) == len(set(refs)), where
            for target in item["targets"]:
                assert target.get("datasource", item["datasource"]) == {"type": PLUGIN, "uid": uid}, where
                assert target["rawSql"].strip() and target.get("rawQuery") is True, where
                assert target.get("editorMode") == "code", where
                assert target["format"] in (FORMAT_TIME_SERIES, FORMAT_TABLE), where
            if item.get("repeat"):
                assert item["repeat"] in {v["name"] for v in dashboard["templating"]["list"]}, where


def sql_texts(dashboard):
    texts = [v["query"]["rawSql"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return texts + [t["rawSql"] for item in query_panels(dashboard) for t in item["targets"]]


def test_no_hard_coded_project_or_dataset():
    for name, dashboard in load_dashboards():
        for sql in sql_texts(dashboard):
            assert not re.search(r"(test|local)-project|mlops\.", sql), (name, sql)
            ctes = set(re.findall(r"(?:WITH|,)\s*(\w+)\s+AS\s*\(", sql, flags=re.IGNORECASE))
            for source in re.findall(r"\b(?:FROM|JOIN)\s+([^\s(),]+)", sql, flags=re.IGNORECASE):
                if source in ctes or source.upper() == "UNNEST":
                    continue
                match = re.fullmatch(r"`\$\{dataset\}\.(\w+)`", source)
                assert match and match.group(1) in TABLES, "%s reads %s: use `${dataset}.<table>`" % (name, source)


# ---- every query on the emulator ----

@pytest.mark.parametrize("dashboard_file", [path.name for path in DASHBOARDS])
def test_every_query_runs_on_the_seeded_tables(seeded, dashboard_file):
    client, dataset, _data = seeded
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / dashboard_file).read_text())
    variables, options = resolve_variables(client, dashboard, dataset)
    checked = 0
    for item in query_panels(dashboard):
        for instance in panel_instances(item, variables, options):
            interpolate_variables(item["title"], instance, INTERVAL)  # titles may use variables too
            for target in item["targets"]:
                sql = expand(target["rawSql"], instance)
                try:
                    rows, columns = run_query(client, sql)
                except Exception as exc:  # pylint: disable=broad-except
                    raise AssertionError("%s failed: %s\n%s" % (item["title"], exc, sql)) from exc
                check_result(item, target, rows, columns)
                checked += 1
    assert checked >= len(query_panels(dashboard))


def find_panel(dashboard_uid, title_start):
    for _name, dashboard in load_dashboards():
        if dashboard["uid"] == dashboard_uid:
            for item in query_panels(dashboard):
                if item["title"].startswith(title_start):
                    return dashboard, item
    raise AssertionError("no panel %r in %s" % (title_start, dashboard_uid))


def panel_rows(seeded, dashboard_uid, title_start, time_range=TIME_RANGE, ref_id="A", **chosen):
    client, dataset, _data = seeded
    dashboard, item = find_panel(dashboard_uid, title_start)
    variables, _options = resolve_variables(client, dashboard, dataset)
    variables.update({name: (value, True) for name, value in chosen.items()})
    (target,) = [target for target in item["targets"] if target["refId"] == ref_id]
    return run_query(client, expand(target["rawSql"], variables, time_range))[0]


def in_range(row):
    moment = datetime.datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
    return TIME_RANGE[0] <= moment <= TIME_RANGE[1]


def test_variables_offer_the_seeded_models_and_features(seeded):
    client, dataset, _data = seeded
    for _name, dashboard in load_dashboards():
        _variables, options = resolve_variables(client, dashboard, dataset)
        assert options["model"] == ["charges", "churn"]
        if "feature" in options:
            assert options["feature"] == ["contract_type", "monthly_charges", "tenure_months", "total_charges"]


def test_prediction_volume_counts_every_prediction_in_range(seeded):
    _client, _dataset, data = seeded
    rows = panel_rows(seeded, "mlops-serving", "Prediction volume", model=["churn"])
    expected = sum(1 for row in data.predictions if row["model_name"] == "churn" and in_range(row))
    assert sum(row["predictions"] for row in rows) == expected
    assert {row["version"] for row in rows} == {"churn v3 (champion)", "churn v4 (champion)", "churn v9 (champion)"}


def test_model_versions_table(seeded):
    _client, _dataset, data = seeded
    rows = panel_rows(seeded, "mlops-serving", "Model versions")
    expected = {}
    for row in data.predictions:
        if in_range(row):
            key = (row["model_name"], row["model_version"], row["model_alias"])
            expected[key] = expected.get(key, 0) + 1
    assert {(row["model_name"], row["model_version"], row["model_alias"]): row["served_predictions"]
            for row in rows} == expected
    assert {row["shadow_predictions"] for row in rows} == {0}


def test_drift_status_shows_the_latest_window(seeded):
    client, dataset, _data = seeded
    latest = query(client, "SELECT model_name, feature, metric_type, value, drift_detected FROM `%s.%s.drift_metrics` "
                           "WHERE window_end = TIMESTAMP '2026-02-03 00:00:00+00' AND feature IS NOT NULL" % (PROJECT, dataset))
    rows = panel_rows(seeded, "mlops-model-health", "Drift status")
    assert {(r["model_name"], r["feature"], r["metric_type"]): (r["value"], r["drift_detected"]) for r in rows} == \
        {(r["model_name"], r["feature"], r["metric_type"]): (r["value"], r["drift_detected"]) for r in latest}
    assert {row["window_end"] for row in rows} == {NEXT_WINDOW[1]}
    # With the time range ending before the second window, the first window is the latest: drift shows.
    first = panel_rows(seeded, "mlops-model-health", "Drift status", time_range=(TIME_RANGE[0], WINDOW[1]))
    status = {(row["model_name"], row["feature"], row["metric_type"]): row["drift_detected"] for row in first}
    assert status[("churn", "total_charges", "psi")] is True
    assert status[("churn", "monthly_charges", "psi")] is False
    assert status[("charges", "total_charges", "psi")] is False
    assert first[0]["drift_detected"] is True  # drifted rows first


def test_drift_panel_repeats_per_feature_with_thresholds(seeded):
    rows = panel_rows(seeded, "mlops-model-health", "Drift of", feature=["total_charges"], model=["churn"])
    assert {row["series"] for row in rows} == {"churn psi", "churn ks"}
    assert {row["threshold"] for row in rows if row["series"] == "churn psi"} == {0.2}
    assert {row["time"] for row in rows} == {WINDOW[1], NEXT_WINDOW[1]}


def test_quality_panel_has_each_models_metric(seeded):
    rows = panel_rows(seeded, "mlops-model-health", "Model quality over time")
    assert {row["series"] for row in rows} == {"churn accuracy", "charges mae", "charges rmse"}
    # Only the first window has ground truth; the second window's predictions have no outcome yet.
    accuracy = [(row["time"], row["value"]) for row in rows if row["series"] == "churn accuracy"]
    assert len(accuracy) == 1 and accuracy[0][0] == WINDOW[1] and 0.3 < accuracy[0][1] < 0.7


def test_classifier_quality_panels_show_precision_recall_and_log_loss(seeded):
    """The quality metrics the drift job writes for a classifier with a positive class, over all versions, with
    the values the job wrote; a regressor has none (the panels say No data, as Predicted classes does)."""
    client, dataset, _data = seeded
    written = {(row["metric_type"], row["window_end"]): row["value"] for row in query(
        client, "SELECT metric_type, window_end, value FROM `%s.%s.drift_metrics` WHERE model_name = 'churn' "
                "AND model_version IS NULL AND metric_type IN ('precision', 'recall', 'log_loss')" % (PROJECT, dataset))}
    assert written  # the drift job scored the churn classifier
    for title, metrics in (("Precision and recall", ("precision", "recall")), ("Log loss", ("log_loss",))):
        rows = panel_rows(seeded, "mlops-model-health", title)
        assert {row["series"] for row in rows} == {"churn %s" % metric for metric in metrics}, title
        assert {(row["series"].split()[-1], row["time"]): row["value"] for row in rows} == \
            {key: value for key, value in written.items() if key[0] in metrics}
        assert {row["time"] for row in rows} == {WINDOW[1]}  # outcomes for the first window only
        assert panel_rows(seeded, "mlops-model-health", title, model=["charges"]) == [], title


# ---- a challenger: shadow and split predictions ----

CHALLENGER = "5"


@pytest.fixture(scope="module")
def shadowed(bigquery_emulator):
    """The mlops tables with a challenger next to churn's champion: in the first window's second half (version 4)
    every request is predicted by the champion (served true) and by challenger version 5 in shadow (served false,
    the same prediction_id, another output and class); in the next window every 10th request is answered by the
    challenger (split: served true, alias challenger). The drift job scores churn in both windows."""
    client = client_for(bigquery_emulator)
    dataset = "grafana_shadow_%d" % os.getpid()
    create_dataset(client, dataset)
    data = Synthetic(seed=13, n_reference=600, n_churn=400, n_charges=40, n_next=100)
    shadow = []
    for row in data.predictions:
        moment = datetime.datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
        if row["model_name"] != "churn" or row["model_version"] != "4":
            continue
        if WINDOW[0] <= moment < WINDOW[1]:
            row["served"] = True
            flipped = {"0": "1", "1": "0"}[row["prediction_label"]]
            shadow.append(dict(row, model_version=CHALLENGER, model_alias="challenger", served=False,
                               prediction=1.0 - row["prediction"], prediction_label=flipped,
                               latency_ms=row["latency_ms"] * 3))
    split = [row for row in data.predictions if row["model_name"] == "churn" and row["model_version"] == "4"
             and NEXT_WINDOW[0] <= datetime.datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")) < NEXT_WINDOW[1]]
    for row in split[::10]:
        row.update(model_version=CHALLENGER, model_alias="challenger", served=True, prediction_label="0")
    assert shadow and split
    data.predictions.extend(shadow)
    data.load(client, dataset)
    drift_job = import_drift_job()
    for window in (WINDOW, NEXT_WINDOW):
        drift_job.run(drift_job.Config(
            project=PROJECT, dataset=dataset, window_start=window[0], window_end=window[1],
            features=tuple(drift_job.Feature(name) for name in ("tenure_months", "monthly_charges", "contract_type")),
            model_name="churn", task_type="classification", reference_start=REFERENCE[0], reference_end=REFERENCE[1],
        ), client, timeout=120, retry=None)
    return client, dataset, data


def served_rows(data, model="churn"):
    """The answers returned to callers (served true or null) of `model` in the time range."""
    return [row for row in data.predictions
            if row["model_name"] == model and row["served"] is not False and in_range(row)]


def hour_of(row):
    moment = datetime.datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
    return moment.replace(minute=0, second=0, microsecond=0)


def count(rows, key):
    counts = {}
    for row in rows:
        counts[key(row)] = counts.get(key(row), 0) + 1
    return counts


@pytest.mark.parametrize("dashboard_file", [path.name for path in DASHBOARDS])
def test_every_query_runs_with_a_challenger(shadowed, dashboard_file):
    test_every_query_runs_on_the_seeded_tables(shadowed, dashboard_file)


def test_shadow_predictions_count_once_in_the_prediction_volume(shadowed):
    _client, _dataset, data = shadowed
    assert any(row["served"] is False for row in data.predictions)
    rows = panel_rows(shadowed, "mlops-serving", "Prediction volume", model=["churn"])
    requests = {row["prediction_id"] for row in data.predictions if row["model_name"] == "churn" and in_range(row)}
    assert sum(row["predictions"] for row in rows) == len(requests) == len(served_rows(data))
    expected = count(served_rows(data),
                     lambda row: (hour_of(row), "churn v%s (%s)" % (row["model_version"], row["model_alias"])))
    assert {(row["time"], row["version"]): row["predictions"] for row in rows} == expected
    # split mode: the challenger's answers are traffic of their own
    assert any(version == "churn v5 (challenger)" for _time, version in expected)


def test_the_version_timeline_shows_the_champion_while_a_challenger_shadows(shadowed):
    _client, _dataset, data = shadowed
    rows = panel_rows(shadowed, "mlops-serving", "Model version timeline", model=["churn"])
    per_hour = {}
    for (hour, version), predictions in count(served_rows(data), lambda row: (hour_of(row), row["model_version"])).items():
        per_hour.setdefault(hour, []).append((predictions, version))
    expected = {hour: max(counts)[1] for hour, counts in per_hour.items()}
    assert {row["time"]: row["serving_version"] for row in rows} == expected
    shadowed_hours = {hour_of(row) for row in data.predictions if row["served"] is False}
    assert shadowed_hours and {expected[hour] for hour in shadowed_hours} == {"4"}  # not the challenger's 5


def test_predicted_classes_and_outputs_count_the_answers_returned(shadowed):
    _client, _dataset, data = shadowed
    rows = panel_rows(shadowed, "mlops-serving", "Predicted classes", model=["churn"])
    expected = count([row for row in served_rows(data) if row["prediction_label"] is not None],
                     lambda row: (hour_of(row), row["prediction_label"]))
    assert {(row["time"], row["class"]): row["predictions"] for row in rows} == expected
    histogram = panel_rows(shadowed, "mlops-serving", "Prediction histogram", model=["churn"])
    assert sum(row["predictions"] for row in histogram) == len(served_rows(data))
    latency = panel_rows(shadowed, "mlops-serving", "Latency", model=["churn"])
    assert {row["alias"] for row in latency} == {"champion", "challenger", "challenger (shadow)"}


def test_model_versions_table_counts_served_and_shadow_predictions(shadowed):
    _client, _dataset, data = shadowed
    rows = panel_rows(shadowed, "mlops-serving", "Model versions", model=["churn"])
    expected = {}
    for row in data.predictions:
        if row["model_name"] == "churn" and in_range(row):
            counts = expected.setdefault((row["model_version"], row["model_alias"]), [0, 0])
            counts[row["served"] is False] += 1
    assert {(row["model_version"], row["model_alias"]): [row["served_predictions"], row["shadow_predictions"]]
            for row in rows} == expected
    assert expected[(CHALLENGER, "challenger")][0] > 0 and expected[(CHALLENGER, "challenger")][1] > 0


def test_predictions_per_window_totals_served_volume_and_lists_versions_by_alias(shadowed):
    _client, _dataset, data = shadowed
    totals = panel_rows(shadowed, "mlops-model-health", "Predictions per window", model=["churn"])
    expected = {window[1]: sum(1 for row in data.predictions if row["model_name"] == "churn" and row["served"] is not False
                               and window[0] <= datetime.datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")) < window[1])
                for window in (WINDOW, NEXT_WINDOW)}
    assert {row["time"]: row["predictions"] for row in totals} == expected
    assert {row["series"] for row in totals} == {"churn all versions (served)"}
    versions = panel_rows(shadowed, "mlops-model-health", "Predictions per window", ref_id="B", model=["churn"])
    by_version = {(row["time"], row["series"]): row["predictions"] for row in versions}
    shadow = sum(1 for row in data.predictions if row["served"] is False)
    assert by_version[(WINDOW[1], "churn v5 (challenger)")] == shadow
    assert by_version[(WINDOW[1], "churn v4 (champion)")] == shadow  # the same requests
    quality = panel_rows(shadowed, "mlops-model-health", "Model quality by version", model=["churn"])
    series = {row["series"] for row in quality}
    assert {"churn v4 (champion) accuracy", "churn v5 (challenger) accuracy", "churn v5 (challenger) log_loss"} <= series


def test_the_local_renderer_draws_every_panel_from_the_seeded_tables(seeded, bigquery_emulator, tmp_path):
    """`make dashboards` (tests/standins/dashboards.py) draws every panel, and every copy of a repeated one, with
    the numbers the queries give; the drifted feature stands above its threshold in the first window."""
    client, dataset, data = seeded
    time_range = [moment.isoformat() for moment in TIME_RANGE]
    pages = dashboards.render(tmp_path, PROJECT, dataset, bigquery_emulator, *time_range)
    assert [page.path.name for page in pages] == [path.stem + ".html" for path in DASHBOARDS]
    for page, (_name, dashboard) in zip(pages, load_dashboards()):
        assert page.path.is_file() and not page.error
        variables, options = resolve_variables(client, dashboard, dataset)
        expected = [interpolate_variables(item["title"], instance, INTERVAL, quote=False)
                    for item in query_panels(dashboard) for instance in panel_instances(item, variables, options)]
        assert sorted(panel.title for panel in page.panels) == sorted(expected)
        for panel in page.panels:
            assert panel.status == "ok" and panel.points > 0, (page.title, panel.title, panel.status, panel.message)
    serving, health = ({panel.title: panel for panel in page.panels} for page in pages[::-1])
    assert [page.uid for page in pages[::-1]] == ["mlops-serving", "mlops-model-health"]
    volume = sum(sum(trace.y) for trace in serving["Prediction volume"].figure.data)
    assert volume == sum(1 for row in data.predictions if in_range(row))
    drift = health["Drift of total_charges against its threshold"].figure.data
    drawn = {trace.name.split(" · ")[0]: trace for trace in drift}  # the name, then the legend's numbers
    assert drawn["value churn psi"].x[0].startswith(WINDOW[1].strftime("%Y-%m-%d %H:%M:%S"))
    assert drawn["value churn psi"].y[0] > drawn["threshold churn psi"].y[0] == 0.2


def test_a_broken_query_would_fail():
    """The checks catch a wrong column and an unknown macro (the test can fail)."""
    item = {"title": "x", "type": "timeseries", "fieldConfig": {"overrides": []}, "options": {}}
    with pytest.raises(AssertionError, match="TIMESTAMP column named time"):
        check_result(item, {"refId": "A", "format": 0}, [{"ts": 1, "v": 1.0}], {"ts": "TIMESTAMP", "v": "FLOAT"})
    with pytest.raises(DashboardError, match="not one the BigQuery plugin expands"):
        expand_macros("SELECT $__unixEpochFilter(ts)", TIME_RANGE)
    with pytest.raises(DashboardError, match="unknown variable"):
        interpolate_variables("SELECT * FROM `${project}.x`", {}, INTERVAL)
    assert expand("WHERE $__timeFilter(ts) GROUP BY $__timeGroup(ts, $__interval)", {}) == (
        "WHERE ts >= '2026-01-31T00:00:00Z' AND ts <= '2026-02-03T06:00:00Z' "
        "GROUP BY TIMESTAMP_MILLIS(DIV(UNIX_MILLIS(ts), 3600000) * 3600000)")
    assert interpolate_variables("IN (${m}) AND d = '$d'", {"m": (["a", "o'k"], True), "d": ("x", False)},
                                 INTERVAL) == "IN ('a','o''k') AND d = 'x'"


# ---- provisioning files and image ----

def env_reference(value):
    return isinstance(value, str) and re.fullmatch(r"\$\{?[A-Z][A-Z0-9_]*\}?", value) is not None


def dockerfile_env():
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_the_dataset_is_a_hidden_constant_no_viewer_can_set():
    """${dataset} is pasted into the SQL as is: a textbox (or a URL parameter) would let a viewer rewrite queries."""
    for name, dashboard in load_dashboards():
        variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
        dataset = variables["dataset"]
        assert dataset["type"] == "constant" and dataset["hide"] == 2 and dataset.get("skipUrlSync") is True, name
        assert re.fullmatch(r"[A-Za-z0-9_]{1,1024}", dataset["query"]), name
        # Every other variable takes its values from a query on the tables, never from free text.
        free = [key for key, variable in variables.items() if variable["type"] in ("textbox", "custom", "adhoc")]
        assert not free, "%s: variables viewers can type into: %s" % (name, free)


def test_every_query_has_a_bytes_billed_cap():
    """BigQuery's maximumBytesBilled on every dashboard query: a runaway query fails instead of billing."""
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    cap = source["jsonData"].get("maxBillableBytes")  # the plugin's key (its BigQuerySettings.MaxBillableBytes)
    assert isinstance(cap, int) and not isinstance(cap, bool), "maxBillableBytes must be an integer: %r" % cap
    assert 0 < cap <= 100 * 2 ** 30, cap


def test_datasource_provisioning():
    document = yaml.safe_load(DATASOURCES.read_text())
    assert document["apiVersion"] == 1
    (source,) = document["datasources"]
    assert source["type"] == PLUGIN and source["uid"] == "mlops-bigquery" and source["editable"] is False
    data = source["jsonData"]
    assert env_reference(data["defaultProject"]) and env_reference(data["authenticationType"])
    variable = data["authenticationType"].strip("${}")
    assert dockerfile_env()[variable] == "gce"  # metadata-server credentials unless the deployment says jwt
    for key, value in {**data, **source.get("secureJsonData", {})}.items():
        if key in ("privateKey", "clientEmail", "privateKeyPath"):
            assert env_reference(value), "%s must come from the environment, not the file" % key
    assert "BEGIN PRIVATE KEY" not in DATASOURCES.read_text()


def test_dashboard_provider_reads_the_dashboards_the_start_script_writes():
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False and provider["disableDeletion"] is True
    assert provider["options"]["path"] == "${MLOPS_DASHBOARDS_DIR}"
    copies = dict(re.findall(r"^COPY\s+(\S+)\s+(\S+)\s*$", DOCKERFILE.read_text(), flags=re.MULTILINE))
    env = dockerfile_env()
    assert copies["dashboards/"].rstrip("/") == env["MLOPS_DASHBOARDS_SOURCE"]
    assert env["MLOPS_DASHBOARDS_DIR"].startswith("/var/lib/grafana/")  # the grafana user's own directory
    assert copies["provisioning/"].rstrip("/") == "/etc/grafana/provisioning"


def test_each_dashboard_holds_the_dataset_default_once():
    """The start script replaces `"query": "mlops"` by the deployment's dataset: it must be the constant, once."""
    for path in DASHBOARDS:
        assert path.read_text().count('"query": "mlops"') == 1, path.name
        (constant,) = [v for v in json.loads(path.read_text())["templating"]["list"] if v["name"] == "dataset"]
        assert constant["query"] == "mlops"


def test_start_script_writes_the_dashboards_with_the_deployments_dataset(safe_env, tmp_path):
    written = tmp_path / "dashboards"
    env = dict(safe_env, MLOPS_DASHBOARDS_SOURCE=str(GRAFANA_DIR / "dashboards"), MLOPS_DASHBOARDS_DIR=str(written),
               MLOPS_BIGQUERY_DATASET="churn_mlops_2")
    proc = start(env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in written.iterdir()) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        original, rendered = json.loads(path.read_text()), json.loads((written / path.name).read_text())
        (constant,) = [v for v in rendered["templating"]["list"] if v["name"] == "dataset"]
        assert constant["query"] == "churn_mlops_2"
        constant["query"] = "mlops"
        assert rendered == original  # nothing else changed
    del env["MLOPS_BIGQUERY_DATASET"]
    proc = start(env, tmp_path)
    assert proc.returncode == 0 and '"query": "mlops"' in (written / DASHBOARDS[0].name).read_text()


@pytest.mark.parametrize("dataset", ["mlops`; DROP TABLE x; --", "a.b", "a\nb", "x" * 1025, "mlops/../x"])
def test_start_script_refuses_a_dataset_name_bigquery_would_not_accept(safe_env, tmp_path, dataset):
    written = tmp_path / "dashboards"
    proc = start(dict(safe_env, MLOPS_DASHBOARDS_SOURCE=str(GRAFANA_DIR / "dashboards"),
                      MLOPS_DASHBOARDS_DIR=str(written), MLOPS_BIGQUERY_DATASET=dataset), tmp_path)
    assert proc.returncode == 64 and "MLOPS_BIGQUERY_DATASET" in proc.stderr
    assert not written.exists()


def test_image_is_pinned_locked_down_and_non_root():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=grafana/grafana:\d+\.\d+\.\d+\s*$", text, flags=re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}\s*$", text, flags=re.MULTILINE)
    version = re.search(r"BIGQUERY_PLUGIN_VERSION=(\S+)", text).group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert re.search(r"plugins install %s \"\$\{BIGQUERY_PLUGIN_VERSION\}\"" % PLUGIN, text)
    assert "GF_INSTALL_PLUGINS" not in text  # nothing downloaded at start
    env = dockerfile_env()
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_DATABASE_TYPE"] == "postgres"
    assert not any(key.startswith("GF_SECURITY_ADMIN_PASSWORD") or key.startswith("GF_DATABASE_PASSWORD") for key in env)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0", "0:0")
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/mlops-grafana-entrypoint"\]', text, flags=re.MULTILINE)
    assert "COPY entrypoint.sh /usr/local/bin/mlops-grafana-entrypoint" in text


def start(env, tmp_path, command=("sh", "-c", "echo started port=${GF_SERVER_HTTP_PORT:-}")):
    full = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    full.update(env)
    return subprocess.run(["sh", str(ENTRYPOINT)] + list(command), env=full, capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.fixture
def safe_env(tmp_path):
    password = tmp_path / "admin-password"
    password.write_text("a-long-generated-secret\n")
    database_password = tmp_path / "db-password"
    database_password.write_text("another-secret")
    return {
        "GF_SECURITY_ADMIN_PASSWORD__FILE": str(password), "GF_DATABASE_TYPE": "postgres",
        "GF_DATABASE_HOST": "/cloudsql/p:r:i", "GF_DATABASE_NAME": "grafana", "GF_DATABASE_USER": "grafana",
        "GF_DATABASE_PASSWORD__FILE": str(database_password), "GF_BIGQUERY_PROJECT": "my-project",
        "GF_BIGQUERY_AUTHENTICATION_TYPE": "gce",
    }


def test_start_script_starts_a_safe_configuration(safe_env, tmp_path):
    proc = start(dict(safe_env, PORT="8080"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "started port=8080"
    proc = start(dict(safe_env, PORT="8080", GF_SERVER_HTTP_PORT="3000"), tmp_path)
    assert proc.stdout.strip() == "started port=3000"


@pytest.mark.parametrize("change, complaint", [
    ({"GF_SECURITY_ADMIN_PASSWORD__FILE": None}, "admin password"),
    ({"GF_SECURITY_ADMIN_PASSWORD__FILE": None, "GF_SECURITY_ADMIN_PASSWORD": "admin"}, "must not be the default"),
    ({"GF_SECURITY_ADMIN_PASSWORD__FILE": "/nonexistent/file"}, "admin password"),
    ({"GF_DATABASE_TYPE": None}, "GF_DATABASE_TYPE must be postgres"),
    ({"GF_DATABASE_TYPE": "sqlite3"}, "GF_DATABASE_TYPE must be postgres"),
    ({"GF_DATABASE_HOST": None}, "GF_DATABASE_HOST is not set"),
    ({"GF_DATABASE_PASSWORD__FILE": None}, "GF_DATABASE_PASSWORD"),
    ({"GF_BIGQUERY_PROJECT": None}, "GF_BIGQUERY_PROJECT"),
    ({"GF_BIGQUERY_AUTHENTICATION_TYPE": "jwt"}, "jwt needs"),
    ({"GF_BIGQUERY_AUTHENTICATION_TYPE": "anonymous"}, "must be gce or jwt"),
])
def test_start_script_refuses_an_unsafe_configuration(safe_env, tmp_path, change, complaint):
    env = dict(safe_env)
    for key, value in change.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    proc = start(env, tmp_path)
    assert proc.returncode == 64 and "started" not in proc.stdout
    assert complaint in proc.stderr
    assert "a-long-generated-secret" not in proc.stderr + proc.stdout


def test_start_script_never_prints_secrets(tmp_path):
    proc = start({"GF_SECURITY_ADMIN_PASSWORD": "admin", "GF_DATABASE_PASSWORD": "hunter2-db", "GF_DATABASE_TYPE": "mysql"}, tmp_path)
    assert proc.returncode == 64
    assert "hunter2-db" not in proc.stderr and "GF_BIGQUERY_PROJECT" in proc.stderr


def test_start_script_sqlite_only_when_asked(safe_env, tmp_path):
    env = {key: value for key, value in safe_env.items() if not key.startswith("GF_DATABASE")}
    assert start(env, tmp_path).returncode == 64
    assert start(dict(env, MLOPS_GRAFANA_ALLOW_SQLITE="true"), tmp_path).returncode == 0
