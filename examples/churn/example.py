"""Worked example: bring your own model. A binary churn classifier on STRING, INTEGER, FLOAT and BOOLEAN features.

    make local INVENTORY=examples/churn/inventory      # site.yml creates the tables from the inventory, then:
    set -a && . outputs/churn-local.env && set +a && .venv/bin/python -m examples.churn

What it does, in the order a team would:
 1. checks the mlops tables exist with the columns the inventory declares (mlops_features, mlops_label);
 2. loads the customers of the training window (examples/churn/customers.csv, generated and shipped) into
    offline_features, once: a re-run finds them and loads nothing;
 3. reads them back from BigQuery, trains a scikit-learn pipeline (one-hot encoding of the categories with the
    declared values, scaling of the numbers and flags, logistic regression) and measures it on the test split;
 4. logs it to MLflow with skops and its signature, registers a new version and points the alias at it;
 5. asks the serving API about a customer on a plan the model never saw (`enterprise`): a 422 naming the feature,
    the value and the allowed ones; then sends the customers seen after the training window, when a promotion
    had moved most new contracts to month_to_month (the drift);
 6. checks every acknowledged prediction reached the predictions table;
 7. runs the drift job for the serving window at its end, as its schedule would: contract_type drifts, and no
    outcome is known yet, so there is no accuracy;
 8. the outcomes (did the customer leave?) arrive --outcome-days later: written to ground_truth with that time;
 9. runs the drift job then, for its window that many days later, with the label delay (--label-delay-days): it
    computes the serving window's accuracy, precision, recall and log loss again with the late labels. Prints
    the summary.

Configuration comes only from arguments and the environment, as for examples/diabetes_progression.py (the same
variables: outputs/<env>.env of site.yml sets them). Without --serving-url the serving API is started for the run
with what the serving role passes it from the inventory (the label's task, type, classes and positive class, the
features' categories). The steps every example shares are in examples/pipeline.py.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
from pathlib import Path

from examples import pipeline
from examples.churn import DATA, ENTITY_PREFIX, FEATURES, LABEL
from examples.pipeline import UTC, ExampleError

TARGET = LABEL["name"]
COLUMNS = dict({name: spec["type"] for name, spec in FEATURES.items()}, **{TARGET: LABEL["type"]})
CATEGORICAL = [name for name, spec in FEATURES.items() if spec["type"] in ("STRING", "BOOLEAN")]
UNKNOWN_PLAN = "enterprise"
step = pipeline.stepper(9)


# -- configuration ------------------------------------------------------------------------------------
def parser(env=None):
    env = os.environ if env is None else env
    options = argparse.ArgumentParser(prog="python -m examples.churn",
                                      description="The mlops pipeline end to end with a churn classifier of your own.")
    pipeline.add_common_arguments(options, env, model_name="churn", experiment="churn",
                                  inventory="examples/churn/inventory", batch_size=100)
    options.add_argument("--data", type=Path, default=DATA,
                         help="customers CSV (default: %s)" % DATA.relative_to(pipeline.ROOT))
    options.add_argument("--c", type=float, default=1.0, help="inverse regularisation of the logistic regression")
    options.add_argument("--drift-feature", default="contract_type", choices=sorted(CATEGORICAL),
                         help="the categorical feature whose shares the summary shows")
    options.add_argument("--outcome-days", type=int, default=3,
                         help="days after the predictions that their outcomes arrive in ground_truth")
    options.add_argument("--label-delay-days", type=int, default=7,
                         help="the drift job's label delay: days after a window that it scores the window again")
    return options


class Options(pipeline.Options):
    """Parsed arguments, checked."""

    def problems(self):
        problems = super().problems()
        if not 1 <= self.outcome_days < self.label_delay_days:
            problems.append("--outcome-days must be at least 1 and less than --label-delay-days, or the drift job "
                            "would no longer score the serving window when the outcomes arrive")
        return problems


# -- 2. the data set into offline_features -------------------------------------------------------------
def typed(row):
    """A CSV row with its values in the columns' types."""
    convert = {"STRING": str, "INTEGER": int, "FLOAT": float, "BOOLEAN": lambda text: text == "true"}
    return dict(row, **{name: convert[kind](row[name]) for name, kind in COLUMNS.items()})


def customers(options):
    """Every customer of the CSV: (offline_features rows of the train and test splits, serving customers)."""
    with open(options.data, encoding="utf-8") as source:
        rows = [typed(row) for row in csv.DictReader(source)]
    missing = [name for name in ["customer_id", "split"] + list(COLUMNS) if rows and name not in rows[0]]
    if not rows or missing:
        raise ExampleError("the customers CSV has no rows or no column %s" % ", ".join(missing or ["?"]))
    history = [row for row in rows if row["split"] in ("train", "test")]
    offline = []
    for index, row in enumerate(history):
        features = {name: row[name] for name in COLUMNS}
        offline.append(dict(features, entity_id=row["customer_id"], split=row["split"],
                            event_timestamp=pipeline.event_time(options, index, len(history))))
    return offline, [row for row in rows if row["split"] == "serving"]


# -- 3./4. train, log, register ---------------------------------------------------------------------------
def classifier(c):
    """One-hot encoding of the categories as declared, scaling of the numbers and flags, logistic regression. A
    feature that refuses unknown values gets an encoder that raises on one (the serving API answers 422 before
    the model runs anyway); an open one (unknown: allow) an encoder that encodes it as none of the categories."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    steps = []
    for name, spec in FEATURES.items():
        if spec["type"] == "STRING":
            unknown = "ignore" if spec.get("unknown") == "allow" else "error"
            steps.append((name, OneHotEncoder(categories=[list(spec["categories"])], handle_unknown=unknown), [name]))
    numbers = [name for name, spec in FEATURES.items() if spec["type"] != "STRING"]
    steps.append(("numbers", StandardScaler(), numbers))
    return Pipeline([("encode", ColumnTransformer(steps)), ("model", LogisticRegression(C=c, max_iter=1000))])


def classification_metrics(truth, predicted, probability):
    """accuracy, precision, recall (of the positive class) and log loss, as the drift job computes them."""
    from sklearn.metrics import accuracy_score, log_loss, precision_score, recall_score, roc_auc_score

    positive = LABEL["positive_class"]
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "precision": float(precision_score(truth, predicted, pos_label=positive, zero_division=0)),
            "recall": float(recall_score(truth, predicted, pos_label=positive, zero_division=0)),
            "log_loss": float(log_loss(truth, probability, labels=LABEL["classes"])),
            "roc_auc": float(roc_auc_score(truth, probability))}


def train_and_register(options, frame):
    """Fit on the train split, evaluate on the test split, log and register; the version and its metrics."""
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    features = list(FEATURES)
    model = classifier(options.c).fit(train[features], train[TARGET])
    positive = list(model.classes_).index(LABEL["positive_class"])
    measured = classification_metrics(test[TARGET], model.predict(test[features]),
                                      model.predict_proba(test[features])[:, positive])
    metrics = {"test_" + name: value for name, value in measured.items()}
    params = {"C": options.c, "train_rows": len(train), "test_rows": len(test),
              "train_window": "%s/%s" % (options.train_start.isoformat(), options.train_end.isoformat()),
              "features": ",".join(features)}
    registered = pipeline.log_and_register(options, model, train[features], "logistic-c-%g" % options.c,
                                           params, metrics)
    return dict(registered, **metrics)


# -- 5. the serving API ---------------------------------------------------------------------------------
def declared():
    """What the serving role passes the API from mlops_label and mlops_features (roles/serving/tasks/main.yml)."""
    features = [dict({"name": name}, **spec) for name, spec in FEATURES.items()]
    return {"MODEL_TASK": LABEL["task"], "MODEL_LABEL_TYPE": LABEL["type"],
            "MODEL_POSITIVE_CLASS": str(LABEL["positive_class"]), "MODEL_CLASSES": json.dumps(LABEL["classes"]),
            "MODEL_FEATURES": json.dumps(features)}


def instance(row):
    return {"entity_id": row["customer_id"], "features": {name: row[name] for name in FEATURES}}


def unknown_category(session, url, row):
    """POST one customer on a plan the model never saw: the API must refuse it (422) before the model runs and
    name the feature, the value and the allowed values. Nothing is predicted or logged."""
    body = instance(row)
    body["features"]["plan"] = UNKNOWN_PLAN
    response = pipeline.post_predict(session, url, body)
    try:
        answer = response.json()
    except ValueError:  # not JSON: reported below with the answer's text
        answer = {}
    errors = answer.get("detail") if isinstance(answer, dict) and isinstance(answer.get("detail"), list) else []
    named = [error for error in errors if isinstance(error, dict) and (error.get("loc") or [None])[-1] == "plan"]
    if response.status_code != 422 or not named:
        raise ExampleError("a customer on plan %r was answered %s, not a 422 naming plan: %s"
                           % (UNKNOWN_PLAN, response.status_code, response.text[:500]))
    return {"status": response.status_code, "feature": "plan", "value": UNKNOWN_PLAN, "type": named[0].get("type"),
            "message": named[0].get("msg")}


# -- 7./9. the drift job --------------------------------------------------------------------------------
def drift_arguments(options, ks_threshold):
    """The job's flags: the features' kinds and the label as the inventory declares them (the job also reads them
    from offline_features; given here so the example does not depend on it)."""
    kinds = ",".join("%s:%s" % (name, "categorical" if name in CATEGORICAL else "numeric") for name in FEATURES)
    return ["--features", kinds, "--label", TARGET, "--task-type", LABEL["task"],
            "--positive-class", str(LABEL["positive_class"]), "--psi-threshold", repr(options.psi_threshold),
            "--ks-threshold", repr(ks_threshold)]


def shares(values):
    """Each category's share of `values`, written as the drift job compares them (a flag as true / false)."""
    counts = {}
    for value in values:
        value = str(value).lower() if isinstance(value, bool) else value
        counts[value] = counts.get(value, 0) + 1
    return {value: counts[value] / len(values) for value in sorted(counts)}


# -- the run ------------------------------------------------------------------------------------------
def run(options):  # pylint: disable=too-many-locals,too-many-statements
    """Every step; returns the summary (a JSON-ready dict)."""
    import requests

    client = pipeline.bigquery_client(options.project, options.bigquery_endpoint)
    step(1, "checking the mlops tables in %s.%s" % (options.project, options.dataset))
    pipeline.check_tables(client, options, COLUMNS,
                          "this example needs the mlops_features and mlops_label of examples/churn/inventory (run "
                          "site.yml on it)")

    step(2, "loading the customers into offline_features (training window %s to %s)"
         % (options.train_start.isoformat(), options.train_end.isoformat()))
    rows, serving_rows = customers(options)
    loaded = pipeline.load_features(client, options, rows, datetime.datetime.now(UTC), ENTITY_PREFIX)
    print("      %s" % ("loaded %d rows" % len(rows) if loaded else "already there: nothing loaded"))

    step(3, "training on the train split read back from BigQuery")
    frame = pipeline.read_training_data(client, options, COLUMNS, ENTITY_PREFIX)
    step(4, "logging and registering the model in MLflow at %s" % options.tracking_uri)
    model = train_and_register(options, frame)
    print("      %s version %s (run %s), alias %s; test accuracy %.3f, ROC AUC %.3f" % (
        options.model_name, model["version"], model["run_id"], options.alias, model["test_accuracy"],
        model["test_roc_auc"]))

    truth = {row["customer_id"]: row[TARGET] for row in serving_rows}
    session = requests.Session()
    with pipeline.serving_api(options, session, model["version"], declared()) as (url, closed):
        step(5, "calling the serving API %s %s" % ("at" if options.serving_url else "started for this run at", url))
        refused = unknown_category(session, url, serving_rows[0])
        print("      plan %r: %d (%s)" % (UNKNOWN_PLAN, refused["status"], refused["message"]))
        window_start = datetime.datetime.now(UTC).replace(microsecond=0)
        answers = pipeline.predict_all(session, url, [instance(row) for row in serving_rows], options.batch_size)
        window_end = datetime.datetime.now(UTC).replace(microsecond=0) + datetime.timedelta(seconds=1)
        print("      %d predictions acknowledged by version %s" % (
            len(answers), ", ".join(sorted({a["model_version"] for a in answers}))))
    step(6, "checking the predictions table")
    acknowledged = {answer["prediction_id"] for answer in answers}
    found = pipeline.wait_logged(client, options, (window_start, window_end), acknowledged, options.timeout)
    missing = sorted(acknowledged - found)
    print("      %d acknowledged, %d in BigQuery, %d missing%s" % (
        len(acknowledged), len(found & acknowledged), len(missing), "; serving: " + closed() if closed() else ""))

    train_rows = int((frame["split"] == "train").sum())
    ks_threshold = options.ks_threshold
    if ks_threshold is None:
        ks_threshold = pipeline.ks_critical(train_rows, len(answers))
    step(7, "running the drift job for the serving window %s to %s"
         % (window_start.isoformat(), window_end.isoformat()))
    at_end = pipeline.run_drift_job(options, window_start, window_end, drift_arguments(options, ks_threshold))

    later = datetime.timedelta(days=options.outcome_days)
    observed = window_end + later
    step(8, "%d days later: writing the customers' outcomes to ground_truth (observed %s)"
         % (options.outcome_days, observed.isoformat()))
    pipeline.load_json_rows(client, options.table("ground_truth"), [
        {"prediction_id": answer["prediction_id"], "entity_id": answer["entity_id"],
         "timestamp": pipeline.bq_time(observed), "label_value": float(truth[answer["entity_id"]]),
         "label_class": str(truth[answer["entity_id"]]), "source": "examples/churn"} for answer in answers])

    rescore_window = (window_start + later, window_end + later)
    step(9, "running the drift job for %s to %s with a label delay of %d days" % (
        rescore_window[0].isoformat(), rescore_window[1].isoformat(), options.label_delay_days))
    rescored = pipeline.run_drift_job(options, *rescore_window, drift_arguments(options, ks_threshold) + [
        "--label-delay-days", str(options.label_delay_days)])
    metrics = pipeline.drift_rows(client, options, window_start, window_end)
    return summarize(options, {"model": model, "loaded": loaded, "frame": frame, "answers": answers, "truth": truth,
                               "found": found, "missing": missing, "window": (window_start, window_end),
                               "refused": refused, "at_end": at_end, "rescored": rescored,
                               "rescore_window": rescore_window, "observed": observed, "metrics": metrics,
                               "ks_threshold": ks_threshold, "serving_rows": serving_rows})


def summarize(options, state):
    """The summary from what the run saw (`state`) and the serving window's drift_metrics rows."""
    features, overall = pipeline.split_metrics(state["metrics"], FEATURES)
    answers, truth = state["answers"], state["truth"]
    recomputed = classification_metrics([truth[a["entity_id"]] for a in answers], [a["prediction"] for a in answers],
                                        [a["probability"] for a in answers])
    reference = state["frame"][state["frame"]["split"] == "train"]
    summary = pipeline.summary_head(options, state["model"], state["loaded"], state["frame"], answers,
                                    state["found"], state["missing"], state["window"])
    summary["predictions"].update({
        "predicted_positive": sum(a["prediction"] == LABEL["positive_class"] for a in answers),
        "mean_probability": sum(a["probability"] for a in answers) / len(answers)})
    summary.update({
        "test": {name[len("test_"):]: value for name, value in state["model"].items() if name.startswith("test_")},
        "unknown_category": state["refused"],
        "ground_truth": {"rows": len(answers), "observed_at": state["observed"].isoformat(),
                         "outcome_days": options.outcome_days,
                         "positive": sum(truth[a["entity_id"]] == LABEL["positive_class"] for a in answers)},
        # What the run at the window's end could score: no outcome had arrived yet.
        "quality_at_window_end": {row["metric_type"]: row["value"] for row in state["at_end"].get("metrics", [])
                                  if row["feature"] is None and row["model_version"] is None
                                  and row["metric_type"] != "volume"},
        "rescore": {"window_start": state["rescore_window"][0].isoformat(),
                    "window_end": state["rescore_window"][1].isoformat(),
                    "label_delay_days": options.label_delay_days,
                    "windows": state["rescored"].get("rescored", {}).get("windows")},
        "quality": {name: overall.get(name) for name in ("accuracy", "precision", "recall", "log_loss", "volume")},
        "quality_recomputed": {name: recomputed[name] for name in ("accuracy", "precision", "recall", "log_loss")},
        "drift_feature": options.drift_feature,
        "drift_feature_shares": {
            "reference": shares(reference[options.drift_feature].tolist()),
            "serving": shares([row[options.drift_feature] for row in state["serving_rows"]])},
        "thresholds": {"psi": options.psi_threshold, "ks": state["ks_threshold"]},
        "features": features,
        "drifted_features": pipeline.drifted(features),
        "drift_job": {"job_id": state["at_end"].get("job_id"), "rows_written": state["at_end"].get("rows_written"),
                      "rescore_job_id": state["rescored"].get("job_id")},
    })
    return summary


def print_summary(summary):
    quality, again, test = summary["quality"], summary["quality_recomputed"], summary["test"]
    pipeline.print_head(summary)
    predictions = summary["predictions"]
    print("answers          %d predicted to churn, mean probability of churn %.3f" % (
        predictions["predicted_positive"], predictions["mean_probability"]))
    refused = summary["unknown_category"]
    print("unknown category %s %r: %d (%s)" % (refused["feature"], refused["value"], refused["status"],
                                               refused["message"]))
    print("outcomes         %d in ground_truth (%d churned), observed %d days after the predictions" % (
        summary["ground_truth"]["rows"], summary["ground_truth"]["positive"], summary["ground_truth"]["outcome_days"]))
    print("quality          at the window's end: %s; %d days later (label delay %d days, %s window(s) re-scored):" % (
        "no outcome known yet" if not summary["quality_at_window_end"] else summary["quality_at_window_end"],
        summary["ground_truth"]["outcome_days"], summary["rescore"]["label_delay_days"], summary["rescore"]["windows"]))

    def figure(value):
        return "%.3f" % value if value is not None and not math.isnan(value) else "-"

    for name in ("accuracy", "precision", "recall", "log_loss"):
        print("  %-9s %s from the drift job (recomputed here: %s; test split at training: %s)" % (
            name, figure(quality[name]), figure(again[name]), figure(test[name])))
    print("drift            PSI threshold %.3g, KS threshold %.3g; %s shares %s in training, %s served" % (
        summary["thresholds"]["psi"], summary["thresholds"]["ks"], summary["drift_feature"],
        ", ".join("%s %.2f" % item for item in summary["drift_feature_shares"]["reference"].items()),
        ", ".join("%s %.2f" % item for item in summary["drift_feature_shares"]["serving"].items())))
    pipeline.print_features(summary["features"], width=15)


def main(argv=None):
    return pipeline.main(argv, parser, Options, run, print_summary)
