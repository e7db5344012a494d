"""Worked example: the whole pipeline on scikit-learn's diabetes data set (it ships inside scikit-learn).

    .venv/bin/python -m examples.diabetes_progression --project local-project \
        --bigquery-endpoint http://127.0.0.1:9050 --tracking-uri http://127.0.0.1:5000

What it does, in the order a team would:
 1. checks the mlops tables exist with the example's feature columns (the bigquery role creates them
    from mlops_features / mlops_label, whose collection defaults are these columns);
 2. loads the 442 patients into offline_features (entity patient-NNN, event timestamps spread over the
    training window, split train/test at random), once: a re-run finds them and loads nothing;
 3. reads the training rows back from BigQuery, trains a scikit-learn pipeline (scaling + ridge
    regression) and measures it on the test split;
 4. logs it to MLflow with its signature, registers a new version of the model and points the
    `champion` alias at it;
 5. sends the test patients to the serving API (POST /predict, in batches) as if they came back for a
    later visit, with one feature deliberately drifted (bmi read 15 % high by default);
 6. checks every acknowledged prediction reached the predictions table;
 7. writes the patients' real outcome to ground_truth;
 8. runs the drift job (python -m drift_job, the program of the Cloud Run job) for the serving window,
    reads drift_metrics back and prints a summary.

Configuration comes only from arguments and the environment, so the same code runs against Google Cloud:
with --bigquery-endpoint (BIGQUERY_API_ENDPOINT) the BigQuery calls go to that emulator without
credentials; without it they go to BigQuery with Application Default Credentials. --serving-url
(SERVING_URL) points at a running serving API (a Cloud Run URL takes an identity token: --serving-token /
SERVING_TOKEN, else one is fetched for the URL from the ambient service-account credentials); without it
the example starts the serving app itself (`python -m mlops_serving`, roles/serving/files) for the
duration of the run. An MLflow server behind Cloud Run IAM takes MLFLOW_TRACKING_TOKEN.
The steps every example shares are in examples/pipeline.py.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys

from examples import pipeline
# SERVING_DIR and ExampleError are this module's for the tests and benchmarks that import it.
from examples.pipeline import SERVING_DIR, UTC, ExampleError  # noqa: F401  pylint: disable=unused-import

# offline_features column -> (column of sklearn's load_diabetes(scaled=False), description). The same
# columns are mlops_features, the collection default (roles/common/defaults/main.yml).
FEATURES = {
    "age": ("age", "age in years"),
    "sex": ("sex", "sex (1 or 2)"),
    "bmi": ("bmi", "body mass index"),
    "bp": ("bp", "average blood pressure"),
    "tc": ("s1", "total serum cholesterol"),
    "ldl": ("s2", "low-density lipoproteins"),
    "hdl": ("s3", "high-density lipoproteins"),
    "tch": ("s4", "total cholesterol / HDL"),
    "ltg": ("s5", "log of serum triglycerides"),
    "glu": ("s6", "blood sugar level"),
}
LABEL = "disease_progression"
ENTITY_PREFIX = "patient-"
COLUMNS = dict({name: "FLOAT" for name in FEATURES}, **{LABEL: "FLOAT"})
step = pipeline.stepper(8)


# -- configuration ------------------------------------------------------------------------------------
def parser(env=None):
    env = os.environ if env is None else env
    options = argparse.ArgumentParser(prog="python -m examples.diabetes_progression",
                                      description="The mlops pipeline end to end on scikit-learn's diabetes data.")
    pipeline.add_common_arguments(options, env, model_name="diabetes-progression", experiment="diabetes-progression",
                                  inventory="inventories/local")
    options.add_argument("--test-size", type=float, default=0.4, help="share of patients held out for serving")
    options.add_argument("--seed", type=int, default=42, help="seed of the train/test split")
    options.add_argument("--alpha", type=float, default=1.0, help="ridge regularisation")
    options.add_argument("--drift-feature", default="bmi", choices=sorted(FEATURES),
                         help="feature drifted on purpose in the served requests")
    options.add_argument("--drift-factor", type=float, default=1.15, help="the drifted feature is multiplied by this")
    return options


class Options(pipeline.Options):
    """Parsed arguments, checked."""

    def problems(self):
        problems = super().problems()
        if not 0.05 <= self.test_size <= 0.9:
            problems.append("--test-size must be between 0.05 and 0.9")
        return problems


# -- 2. the data set into offline_features -------------------------------------------------------------
def patients(options):
    """The diabetes data set as offline_features rows (plain dicts), with entity ids and a split."""
    import numpy as np
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    count = len(frame)
    order = np.random.default_rng(options.seed).permutation(count)
    test = set(int(i) for i in order[:int(round(count * options.test_size))])
    rows = []
    for index in range(count):
        source = frame.iloc[index]
        row = {"entity_id": "%s%03d" % (ENTITY_PREFIX, index),
               "event_timestamp": pipeline.event_time(options, index, count)}
        row.update({column: float(source[origin]) for column, (origin, _description) in FEATURES.items()})
        row[LABEL] = float(source["target"])
        row["split"] = "test" if index in test else "train"
        rows.append(row)
    return rows


# -- 3./4. train, log, register ---------------------------------------------------------------------------
def train_and_register(options, frame):
    """Fit on the train split, evaluate on the test split, log and register; the version and its metrics."""
    import numpy as np
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error, mean_squared_error
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    features = list(FEATURES)
    model = Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=options.alpha))])
    model.fit(train[features], train[LABEL])
    predicted = model.predict(test[features])
    metrics = {"test_mae": float(mean_absolute_error(test[LABEL], predicted)),
               "test_rmse": float(np.sqrt(mean_squared_error(test[LABEL], predicted)))}
    params = {"alpha": options.alpha, "train_rows": len(train), "test_rows": len(test),
              "train_window": "%s/%s" % (options.train_start.isoformat(), options.train_end.isoformat()),
              "features": ",".join(features)}
    registered = pipeline.log_and_register(options, model, train[features], "ridge-alpha-%g" % options.alpha,
                                           params, metrics)
    return dict(registered, **metrics)


# -- 5. the serving API ---------------------------------------------------------------------------------
def serving_instances(frame, options):
    """The held-out patients, back for a later visit, with the drift feature changed on purpose."""
    instances, truth = [], {}
    for row in frame[frame["split"] == "test"].to_dict(orient="records"):
        features = {name: float(row[name]) for name in FEATURES}
        features[options.drift_feature] = round(features[options.drift_feature] * options.drift_factor, 4)
        instances.append({"entity_id": row["entity_id"], "features": features})
        truth[row["entity_id"]] = float(row[LABEL])
    return instances, truth


def quality(errors):
    return {"mae": sum(abs(e) for e in errors) / len(errors),
            "rmse": math.sqrt(sum(e * e for e in errors) / len(errors))}


# -- the run ------------------------------------------------------------------------------------------
def run(options):  # pylint: disable=too-many-locals
    """Every step; returns the summary (a JSON-ready dict)."""
    import requests

    client = pipeline.bigquery_client(options.project, options.bigquery_endpoint)
    step(1, "checking the mlops tables in %s.%s" % (options.project, options.dataset))
    pipeline.check_tables(client, options, {name: "numeric" for name in list(FEATURES) + [LABEL]},
                          "this example needs mlops_features %s and mlops_label %s (the collection defaults, or set "
                          "so in the inventory)" % (", ".join(FEATURES), LABEL))

    step(2, "loading the diabetes patients into offline_features (training window %s to %s)"
         % (options.train_start.isoformat(), options.train_end.isoformat()))
    rows = patients(options)
    loaded = pipeline.load_features(client, options, rows, datetime.datetime.now(UTC), ENTITY_PREFIX)
    print("      %s" % ("loaded %d rows" % len(rows) if loaded else "already there: nothing loaded"))

    step(3, "training on the train split read back from BigQuery")
    frame = pipeline.read_training_data(client, options, COLUMNS, ENTITY_PREFIX)
    step(4, "logging and registering the model in MLflow at %s" % options.tracking_uri)
    model = train_and_register(options, frame)
    print("      %s version %s (run %s), alias %s; test MAE %.1f, RMSE %.1f" % (
        options.model_name, model["version"], model["run_id"], options.alias, model["test_mae"], model["test_rmse"]))

    instances, truth = serving_instances(frame, options)
    session = requests.Session()
    with pipeline.serving_api(options, session, model["version"]) as (url, closed):
        step(5, "calling the serving API %s %s" % ("at" if options.serving_url else "started for this run at", url))
        window_start = datetime.datetime.now(UTC).replace(microsecond=0)
        answers = pipeline.predict_all(session, url, instances, options.batch_size)
        window_end = datetime.datetime.now(UTC).replace(microsecond=0) + datetime.timedelta(seconds=1)
        print("      %d predictions acknowledged by version %s, %s drifted x%g"
              % (len(answers), ", ".join(sorted({a["model_version"] for a in answers})), options.drift_feature,
                 options.drift_factor))
    step(6, "checking the predictions table")
    acknowledged = {answer["prediction_id"] for answer in answers}
    found = pipeline.wait_logged(client, options, (window_start, window_end), acknowledged, options.timeout)
    missing = sorted(acknowledged - found)
    print("      %d acknowledged, %d in BigQuery, %d missing%s" % (
        len(acknowledged), len(found & acknowledged), len(missing), "; serving: " + closed() if closed() else ""))

    step(7, "writing the patients' outcomes to ground_truth")
    observed = datetime.datetime.now(UTC)
    pipeline.load_json_rows(client, options.table("ground_truth"), [
        {"prediction_id": answer["prediction_id"], "entity_id": answer["entity_id"],
         "timestamp": pipeline.bq_time(observed), "label_value": truth[answer["entity_id"]],
         "source": "examples/diabetes_progression"} for answer in answers])

    train_rows = int((frame["split"] == "train").sum())
    ks_threshold = options.ks_threshold
    if ks_threshold is None:
        ks_threshold = pipeline.ks_critical(train_rows, len(answers))
    step(8, "running the drift job for %s to %s" % (window_start.isoformat(), window_end.isoformat()))
    job = pipeline.run_drift_job(options, window_start, window_end, [
        "--features", ",".join("%s:numeric" % name for name in FEATURES), "--task-type", "regression",
        "--psi-threshold", repr(options.psi_threshold), "--ks-threshold", repr(ks_threshold)])
    metrics = pipeline.drift_rows(client, options, window_start, window_end)
    return summarize(options, model, loaded, frame, answers, truth, found, missing, (window_start, window_end),
                     job, metrics, ks_threshold)


def summarize(options, model, loaded, frame, answers, truth, found, missing, window, job, metrics, ks_threshold):
    # pylint: disable=too-many-arguments,too-many-positional-arguments
    features, overall = pipeline.split_metrics(metrics, FEATURES)
    recomputed = quality([answer["prediction"] - truth[answer["entity_id"]] for answer in answers])
    summary = pipeline.summary_head(options, model, loaded, frame, answers, found, missing, window)
    summary.update({
        "test_mae": model["test_mae"], "test_rmse": model["test_rmse"],
        "ground_truth_rows": len(answers),
        "quality": {"mae": overall.get("mae"), "rmse": overall.get("rmse"), "volume": overall.get("volume"),
                    "mae_recomputed": recomputed["mae"], "rmse_recomputed": recomputed["rmse"]},
        "drift_feature": options.drift_feature, "drift_factor": options.drift_factor,
        "thresholds": {"psi": options.psi_threshold, "ks": ks_threshold},
        "features": features,
        "drifted_features": pipeline.drifted(features),
        "drift_job": {"job_id": job.get("job_id"), "rows_written": job.get("rows_written")},
    })
    return summary


def print_summary(summary):
    quality_ = summary["quality"]
    pipeline.print_head(summary)
    print("quality          MAE %.2f, RMSE %.2f from the drift job (recomputed here: %.2f, %.2f); test split at "
          "training: MAE %.2f, RMSE %.2f" % (quality_["mae"] or float("nan"), quality_["rmse"] or float("nan"),
                                             quality_["mae_recomputed"], quality_["rmse_recomputed"],
                                             summary["test_mae"], summary["test_rmse"]))
    print("drift            PSI threshold %.3g, KS threshold %.3g; %s x%g on purpose" % (
        summary["thresholds"]["psi"], summary["thresholds"]["ks"], summary["drift_feature"], summary["drift_factor"]))
    pipeline.print_features(summary["features"])


def main(argv=None):
    return pipeline.main(argv, parser, Options, run, print_summary)


if __name__ == "__main__":
    sys.exit(main())
