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
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVING_DIR = ROOT / "roles" / "serving" / "files"
DRIFT_JOB_DIR = ROOT / "roles" / "monitoring" / "files"
UTC = datetime.timezone.utc

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
NUMERIC_TYPES = ("FLOAT", "FLOAT64", "INTEGER", "INT64", "NUMERIC", "BIGNUMERIC")
# Two-sample Kolmogorov-Smirnov critical value factor at the 5 % level: c(0.05) = sqrt(-ln(0.025) / 2).
KS_C_ALPHA = math.sqrt(-math.log(0.025) / 2)


class ExampleError(RuntimeError):
    """A step failed; the message says which and why."""


# -- configuration ------------------------------------------------------------------------------------
def utc_time(text):
    value = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parser(env=None):
    env = os.environ if env is None else env
    options = argparse.ArgumentParser(prog="python -m examples.diabetes_progression",
                                      description="The mlops pipeline end to end on scikit-learn's diabetes data.")
    options.add_argument("--project", default=env.get("MLOPS_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT"),
                         help="project of the mlops dataset (MLOPS_PROJECT, GOOGLE_CLOUD_PROJECT)")
    options.add_argument("--dataset", default=env.get("MLOPS_DATASET", "mlops"), help="dataset (MLOPS_DATASET)")
    options.add_argument("--bigquery-endpoint", default=env.get("BIGQUERY_API_ENDPOINT") or None,
                         help="BigQuery emulator URL; no credentials are used then (BIGQUERY_API_ENDPOINT)")
    options.add_argument("--tracking-uri", default=env.get("MLFLOW_TRACKING_URI"),
                         help="MLflow tracking server (MLFLOW_TRACKING_URI)")
    options.add_argument("--model-name", default=env.get("MODEL_NAME", "diabetes-progression"),
                         help="registered model name (MODEL_NAME)")
    options.add_argument("--alias", default=env.get("MODEL_ALIAS", "champion"), help="alias to set (MODEL_ALIAS)")
    options.add_argument("--experiment", default="diabetes-progression", help="MLflow experiment")
    options.add_argument("--serving-url", default=env.get("SERVING_URL") or None,
                         help="a running serving API (SERVING_URL); default: start one for this run")
    options.add_argument("--serving-token", default=env.get("SERVING_TOKEN") or None,
                         help="bearer token for the serving API (SERVING_TOKEN)")
    options.add_argument("--train-start", type=utc_time, default=utc_time("2025-01-01T00:00:00Z"),
                         help="start of the training window (event timestamps of offline_features)")
    options.add_argument("--train-end", type=utc_time, default=utc_time("2025-04-01T00:00:00Z"),
                         help="end of the training window (exclusive)")
    options.add_argument("--test-size", type=float, default=0.4, help="share of patients held out for serving")
    options.add_argument("--seed", type=int, default=42, help="seed of the train/test split")
    options.add_argument("--alpha", type=float, default=1.0, help="ridge regularisation")
    options.add_argument("--drift-feature", default="bmi", choices=sorted(FEATURES),
                         help="feature drifted on purpose in the served requests")
    options.add_argument("--drift-factor", type=float, default=1.15, help="the drifted feature is multiplied by this")
    options.add_argument("--batch-size", type=int, default=50, help="instances per POST /predict")
    options.add_argument("--psi-threshold", type=float, default=0.2, help="PSI drift threshold (the job's default)")
    options.add_argument("--ks-threshold", type=float, default=None,
                         help="KS drift threshold; default: the 5 %% critical value for the sample sizes")
    options.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the serving API")
    options.add_argument("--summary-json", type=Path, help="also write the summary to this file as JSON")
    return options


@dataclass
class Options:  # pylint: disable=too-many-instance-attributes
    """Parsed arguments, checked."""

    project: str
    dataset: str
    bigquery_endpoint: str | None
    tracking_uri: str
    model_name: str
    alias: str
    experiment: str
    serving_url: str | None
    serving_token: str | None
    train_start: datetime.datetime
    train_end: datetime.datetime
    test_size: float
    seed: int
    alpha: float
    drift_feature: str
    drift_factor: float
    batch_size: int
    psi_threshold: float
    ks_threshold: float | None
    timeout: float
    summary_json: Path | None

    @classmethod
    def from_args(cls, args):
        options = cls(**vars(args))
        problems = []
        if not options.project:
            problems.append("--project (or MLOPS_PROJECT / GOOGLE_CLOUD_PROJECT) is required")
        if not options.tracking_uri:
            problems.append("--tracking-uri (or MLFLOW_TRACKING_URI) is required")
        if options.train_start >= options.train_end:
            problems.append("--train-start must be before --train-end")
        if not 0.05 <= options.test_size <= 0.9:
            problems.append("--test-size must be between 0.05 and 0.9")
        if not 1 <= options.batch_size <= 1000:
            problems.append("--batch-size must be between 1 and 1000")
        if problems:
            raise ExampleError("; ".join(problems))
        return options

    def table(self, name):
        return "%s.%s.%s" % (self.project, self.dataset, name)


def step(number, text):
    print("[%d/8] %s" % (number, text), flush=True)


# -- BigQuery -----------------------------------------------------------------------------------------
def bigquery_client(project, endpoint=None):
    """Application Default Credentials, or anonymous against an emulator endpoint."""
    from google.cloud import bigquery

    if endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=endpoint))
    return bigquery.Client(project=project)


def run_query(client, sql, **params):
    """Rows of a query as dicts; params are named parameters (datetime -> TIMESTAMP, str, int, float)."""
    from google.cloud import bigquery

    types = {datetime.datetime: "TIMESTAMP", str: "STRING", int: "INT64", float: "FLOAT64"}
    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter(name, types[type(value)], value) for name, value in params.items()])
    return [dict(row.items()) for row in client.query(sql, job_config=config).result(timeout=300)]


def load_json_rows(client, table, rows):
    """Append rows with a load job (NDJSON): batch data, no streaming buffer, all rows or none."""
    from google.cloud import bigquery

    payload = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode()
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                                    write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
    job = client.load_table_from_file(io.BytesIO(payload), table, job_config=config, rewind=True)
    job.result(timeout=300)
    if job.errors:
        raise ExampleError("loading %s failed: %s" % (table, job.errors[:3]))


def bq_time(value):
    """A TIMESTAMP as load jobs and the streaming API take it."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def check_tables(client, options):
    """The four tables exist; offline_features has the example's numeric feature and label columns."""
    from google.api_core.exceptions import NotFound

    schemas = {}
    for name in ("offline_features", "predictions", "ground_truth", "drift_metrics"):
        try:
            schemas[name] = {field.name: field.field_type for field in client.get_table(options.table(name)).schema}
        except NotFound:
            raise ExampleError("table %s does not exist: run `ansible-playbook site.yml -i inventories/<env>` "
                               "first (the bigquery role creates it)" % options.table(name)) from None
    columns = schemas["offline_features"]
    wrong = [name for name in list(FEATURES) + [LABEL] if columns.get(name) not in NUMERIC_TYPES]
    if wrong:
        raise ExampleError(
            "offline_features has no numeric column %s: this example needs mlops_features %s and mlops_label %s "
            "(the collection defaults, or set so in the inventory), then the table re-created"
            % (", ".join(wrong), ", ".join(FEATURES), LABEL))


# -- 2. the data set into offline_features -------------------------------------------------------------
def patients(options):
    """The diabetes data set as offline_features rows (plain dicts), with entity ids and a split."""
    import numpy as np
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    count = len(frame)
    order = np.random.default_rng(options.seed).permutation(count)
    test = set(int(i) for i in order[:int(round(count * options.test_size))])
    span = options.train_end - options.train_start
    rows = []
    for index in range(count):
        source = frame.iloc[index]
        when = options.train_start + span * ((index + 0.5) / count)
        row = {"entity_id": "%s%03d" % (ENTITY_PREFIX, index), "event_timestamp": when.replace(microsecond=0)}
        row.update({column: float(source[origin]) for column, (origin, _description) in FEATURES.items()})
        row[LABEL] = float(source["target"])
        row["split"] = "test" if index in test else "train"
        rows.append(row)
    return rows


def load_features(client, options, rows, now):
    """Load the patients once; True when loaded now, False when the window already holds them."""
    expected = {"train": sum(r["split"] == "train" for r in rows), "test": sum(r["split"] == "test" for r in rows)}
    found = {row["split"]: row["n"] for row in run_query(
        client, "SELECT split, COUNT(*) AS n FROM `%s` WHERE event_timestamp >= @start AND event_timestamp < @end "
                "AND STARTS_WITH(entity_id, @prefix) GROUP BY split" % options.table("offline_features"),
        start=options.train_start, end=options.train_end, prefix=ENTITY_PREFIX)}
    if found == expected:
        return False
    if found:
        raise ExampleError("offline_features already holds other example rows in the training window (%s; this run "
                           "would load %s): pick another --train-start/--train-end" % (found, expected))
    ingested = bq_time(now)
    load_json_rows(client, options.table("offline_features"), [
        dict(row, event_timestamp=bq_time(row["event_timestamp"]), ingested_at=ingested) for row in rows])
    return True


# -- 3./4. train, log, register ---------------------------------------------------------------------------
def read_training_data(client, options):
    """The example's rows of the training window, read back from offline_features: a DataFrame."""
    columns = ", ".join(["entity_id", "split"] + list(FEATURES) + [LABEL])
    sql = ("SELECT %s FROM `%s` WHERE event_timestamp >= @start AND event_timestamp < @end "
           "AND STARTS_WITH(entity_id, @prefix) ORDER BY entity_id" % (columns, options.table("offline_features")))
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("start", "TIMESTAMP", options.train_start),
        bigquery.ScalarQueryParameter("end", "TIMESTAMP", options.train_end),
        bigquery.ScalarQueryParameter("prefix", "STRING", ENTITY_PREFIX)])
    frame = client.query(sql, job_config=config).result(timeout=300).to_dataframe(create_bqstorage_client=False)
    for column in list(FEATURES) + [LABEL]:
        frame[column] = frame[column].astype("float64")
    return frame


def model_requirements():
    """The model's pip requirements, pinned to this environment (given, so MLflow does not infer them)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in ("scikit-learn", "skops", "pandas", "numpy"):
        try:
            pins.append("%s==%s" % (name, version(name)))
        except PackageNotFoundError:
            continue
    return pins


def train_and_register(options, frame):
    """Fit on the train split, evaluate on the test split, log and register; the version and its metrics."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error, mean_squared_error
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    features = list(FEATURES)
    pipeline = Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=options.alpha))])
    pipeline.fit(train[features], train[LABEL])
    predicted = pipeline.predict(test[features])
    metrics = {"test_mae": float(mean_absolute_error(test[LABEL], predicted)),
               "test_rmse": float(np.sqrt(mean_squared_error(test[LABEL], predicted)))}
    mlflow.set_tracking_uri(options.tracking_uri)
    mlflow.set_registry_uri(options.tracking_uri)
    mlflow.set_experiment(options.experiment)
    with mlflow.start_run(run_name="ridge-alpha-%g" % options.alpha) as run:
        mlflow.log_params({"alpha": options.alpha, "train_rows": len(train), "test_rows": len(test),
                           "train_window": "%s/%s" % (options.train_start.isoformat(), options.train_end.isoformat()),
                           "features": ",".join(features)})
        mlflow.log_metrics(metrics)
        signature = infer_signature(train[features], pipeline.predict(train[features]))
        # skops: the serving API loads only models whose loading runs no pickled code (see its MODEL_ALLOW_PICKLE).
        info = mlflow.sklearn.log_model(pipeline, name="model", signature=signature, serialization_format="skops",
                                        input_example=train[features].head(3),
                                        registered_model_name=options.model_name,
                                        pip_requirements=model_requirements())
    version = str(info.registered_model_version)
    client = MlflowClient(options.tracking_uri, registry_uri=options.tracking_uri)
    client.set_registered_model_alias(options.model_name, options.alias, version)
    return {"version": version, "run_id": run.info.run_id, **metrics}


# -- 5. the serving API ---------------------------------------------------------------------------------
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServing:
    """`python -m mlops_serving` (the serving image's command) on a free port, for the run."""

    def __init__(self, options, log_dir):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = Path(log_dir) / "serving.log"
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("MLFLOW_", "MODEL_", "LOG_", "BIGQUERY_"))}
        env.update({"PYTHONPATH": str(SERVING_DIR), "PORT": str(self.port), "HOST": "127.0.0.1",
                    "MLFLOW_TRACKING_URI": options.tracking_uri, "MODEL_NAME": options.model_name,
                    "MODEL_ALIAS": options.alias, "BIGQUERY_PROJECT": options.project,
                    "BIGQUERY_DATASET": options.dataset, "BIGQUERY_TABLE": "predictions",
                    "LOG_FLUSH_INTERVAL": "0.5"})
        for name in ("MLFLOW_TRACKING_TOKEN",):
            if os.environ.get(name):
                env[name] = os.environ[name]
        if options.bigquery_endpoint:
            env["BIGQUERY_API_ENDPOINT"] = options.bigquery_endpoint
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-m", "mlops_serving"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def check(self):
        if self.process.poll() is not None:
            raise ExampleError("the serving app exited with %s:\n%s" % (self.process.returncode, self.tail()))

    def tail(self, chars=3000):
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout=30):
        """SIGTERM, as Cloud Run stops an instance: the app flushes its prediction log, then exits."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        closed = [line for line in self.log.read_text(errors="replace").splitlines() if "prediction log closed" in line]
        return json.loads(closed[-1])["message"] if closed else None


def serving_headers(url, token):
    """An identity token for a Cloud Run URL: the one given, else fetched from ambient credentials."""
    if token:
        return {"Authorization": "Bearer " + token}
    if url.startswith("https://"):
        try:
            import google.auth.transport.requests
            import google.oauth2.id_token

            fetched = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), url)
            return {"Authorization": "Bearer " + fetched}
        except Exception:  # pylint: disable=broad-exception-caught  # user credentials cannot mint one: go without
            return {}
    return {}


def wait_for_version(session, url, version, timeout, check=None):
    """Wait until the API serves `version` (it follows the alias by polling MLflow)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if check:
            check()
        try:
            answer = session.get(url + "/model", timeout=10)
            last = "%s %s" % (answer.status_code, answer.text[:200])
            if answer.status_code == 200 and answer.json().get("version") == version:
                return
        except Exception as exc:  # pylint: disable=broad-exception-caught  # not up yet: retried until the deadline
            last = str(exc)
        time.sleep(0.5)
    raise ExampleError("the serving API at %s did not serve version %s within %ss (last answer: %s)"
                       % (url, version, timeout, last))


def serving_instances(frame, options):
    """The held-out patients, back for a later visit, with the drift feature changed on purpose."""
    instances, truth = [], {}
    for row in frame[frame["split"] == "test"].to_dict(orient="records"):
        features = {name: float(row[name]) for name in FEATURES}
        features[options.drift_feature] = round(features[options.drift_feature] * options.drift_factor, 4)
        instances.append({"entity_id": row["entity_id"], "features": features})
        truth[row["entity_id"]] = float(row[LABEL])
    return instances, truth


def predict_all(session, url, instances, batch_size):
    """POST /predict in batches; every acknowledged prediction with its id, entity and value."""
    answers = []
    for start in range(0, len(instances), batch_size):
        batch = instances[start:start + batch_size]
        for attempt in range(10):
            response = session.post(url + "/predict", json={"instances": batch}, timeout=60)
            if response.status_code != 503:
                break
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 5) * (attempt + 1))
        if response.status_code != 200:
            raise ExampleError("POST /predict answered %s: %s" % (response.status_code, response.text[:500]))
        body = response.json()
        for sent, prediction in zip(batch, body["predictions"]):
            answers.append({"prediction_id": prediction["prediction_id"], "entity_id": sent["entity_id"],
                            "prediction": float(prediction["prediction"]), "model_version": body["model_version"]})
    return answers


# -- 6.-8. check the log, ground truth, drift ----------------------------------------------------------------
def logged_ids(client, options, window_start, window_end):
    rows = run_query(client, "SELECT prediction_id FROM `%s` WHERE timestamp >= @start AND timestamp < @end "
                             "AND model_name = @model" % options.table("predictions"),
                     start=window_start, end=window_end, model=options.model_name)
    return [row["prediction_id"] for row in rows]


def wait_logged(client, options, window, acknowledged, timeout):
    """The acknowledged ids found in BigQuery, waiting for the API's batches to be written."""
    deadline = time.monotonic() + timeout
    while True:
        found = set(logged_ids(client, options, *window))
        if acknowledged <= found or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def run_drift_job(options, window_start, window_end, ks_threshold):
    """`python -m drift_job` (the Cloud Run job's program) for the window; its JSON summary."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DRIFT_", "BIGQUERY_"))}
    env["PYTHONPATH"] = str(DRIFT_JOB_DIR)
    if options.bigquery_endpoint:
        env["BIGQUERY_EMULATOR_HOST"] = options.bigquery_endpoint
    command = [sys.executable, "-m", "drift_job", "--project", options.project, "--dataset", options.dataset,
               "--features", ",".join("%s:numeric" % name for name in FEATURES), "--model-name", options.model_name,
               "--task-type", "regression", "--window-start", window_start.isoformat(),
               "--window-end", window_end.isoformat(), "--reference-start", options.train_start.isoformat(),
               "--reference-end", options.train_end.isoformat(), "--reference-split", "train",
               "--psi-threshold", repr(options.psi_threshold), "--ks-threshold", repr(ks_threshold),
               "--timeout", "600"]
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise ExampleError("the drift job failed (exit %d): %s" % (proc.returncode, proc.stderr.strip()[-2000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def drift_rows(client, options, window_start, window_end):
    return run_query(client, "SELECT model_version, feature, metric_type, value, threshold, drift_detected FROM `%s` "
                             "WHERE window_start = @start AND window_end = @end AND model_name = @model"
                     % options.table("drift_metrics"), start=window_start, end=window_end, model=options.model_name)


def quality(errors):
    return {"mae": sum(abs(e) for e in errors) / len(errors), "rmse": math.sqrt(sum(e * e for e in errors) / len(errors))}


# -- the run ------------------------------------------------------------------------------------------
def run(options):  # pylint: disable=too-many-locals,too-many-statements
    """Every step; returns the summary (a JSON-ready dict)."""
    import requests

    client = bigquery_client(options.project, options.bigquery_endpoint)
    step(1, "checking the mlops tables in %s.%s" % (options.project, options.dataset))
    check_tables(client, options)

    step(2, "loading the diabetes patients into offline_features (training window %s to %s)"
         % (options.train_start.isoformat(), options.train_end.isoformat()))
    rows = patients(options)
    loaded = load_features(client, options, rows, datetime.datetime.now(UTC))
    print("      %s" % ("loaded %d rows" % len(rows) if loaded else "already there: nothing loaded"))

    step(3, "training on the train split read back from BigQuery")
    frame = read_training_data(client, options)
    step(4, "logging and registering the model in MLflow at %s" % options.tracking_uri)
    model = train_and_register(options, frame)
    print("      %s version %s (run %s), alias %s; test MAE %.1f, RMSE %.1f" % (
        options.model_name, model["version"], model["run_id"], options.alias, model["test_mae"], model["test_rmse"]))

    instances, truth = serving_instances(frame, options)
    session = requests.Session()
    serving, closed = None, None
    with tempfile.TemporaryDirectory(prefix="example-") as log_dir:
        try:
            if options.serving_url:
                url = options.serving_url.rstrip("/")
                session.headers.update(serving_headers(url, options.serving_token))
                step(5, "calling the serving API at %s" % url)
                wait_for_version(session, url, model["version"], options.timeout)
            else:
                serving = LocalServing(options, log_dir)
                url = serving.url
                step(5, "calling the serving API started for this run at %s" % url)
                wait_for_version(session, url, model["version"], options.timeout, check=serving.check)
            window_start = datetime.datetime.now(UTC).replace(microsecond=0)
            answers = predict_all(session, url, instances, options.batch_size)
            window_end = datetime.datetime.now(UTC).replace(microsecond=0) + datetime.timedelta(seconds=1)
            print("      %d predictions acknowledged by version %s, %s drifted x%g"
                  % (len(answers), ", ".join(sorted({a["model_version"] for a in answers})), options.drift_feature,
                     options.drift_factor))
        finally:
            if serving:
                closed = serving.stop()  # flushes the prediction log
    step(6, "checking the predictions table")
    acknowledged = {answer["prediction_id"] for answer in answers}
    found = wait_logged(client, options, (window_start, window_end), acknowledged, options.timeout)
    missing = sorted(acknowledged - found)
    print("      %d acknowledged, %d in BigQuery, %d missing%s" % (
        len(acknowledged), len(found & acknowledged), len(missing), "; serving: " + closed if closed else ""))

    step(7, "writing the patients' outcomes to ground_truth")
    observed = datetime.datetime.now(UTC)
    load_json_rows(client, options.table("ground_truth"), [
        {"prediction_id": answer["prediction_id"], "entity_id": answer["entity_id"], "timestamp": bq_time(observed),
         "label_value": truth[answer["entity_id"]], "source": "examples/diabetes_progression"} for answer in answers])

    train_rows = int((frame["split"] == "train").sum())
    ks_threshold = options.ks_threshold
    if ks_threshold is None:
        ks_threshold = round(KS_C_ALPHA * math.sqrt((train_rows + len(answers)) / (train_rows * len(answers))), 4)
    step(8, "running the drift job for %s to %s" % (window_start.isoformat(), window_end.isoformat()))
    job = run_drift_job(options, window_start, window_end, ks_threshold)
    metrics = drift_rows(client, options, window_start, window_end)
    return summarize(options, model, loaded, frame, answers, truth, found, missing, (window_start, window_end),
                     job, metrics, ks_threshold)


def summarize(options, model, loaded, frame, answers, truth, found, missing, window, job, metrics, ks_threshold):
    # pylint: disable=too-many-arguments,too-many-positional-arguments,too-many-locals
    features = {name: {} for name in FEATURES}
    overall = {}
    for row in metrics:
        if row["feature"]:
            features[row["feature"]][row["metric_type"]] = row["value"]
            if row["threshold"] is not None:
                features[row["feature"]][row["metric_type"] + "_drift"] = bool(row["drift_detected"])
        elif row["model_version"] is None:
            overall[row["metric_type"]] = row["value"]
    recomputed = quality([answer["prediction"] - truth[answer["entity_id"]] for answer in answers])
    return {
        "model_name": options.model_name, "model_version": model["version"], "alias": options.alias,
        "run_id": model["run_id"], "test_mae": model["test_mae"], "test_rmse": model["test_rmse"],
        "offline_features": {"loaded_now": loaded, "train_rows": int((frame["split"] == "train").sum()),
                             "test_rows": int((frame["split"] == "test").sum())},
        "window_start": window[0].isoformat(), "window_end": window[1].isoformat(),
        "predictions": {"acknowledged": len(answers), "in_bigquery": len(found & {a["prediction_id"] for a in answers}),
                        "missing": len(missing), "served_versions": sorted({a["model_version"] for a in answers})},
        "ground_truth_rows": len(answers),
        "quality": {"mae": overall.get("mae"), "rmse": overall.get("rmse"), "volume": overall.get("volume"),
                    "mae_recomputed": recomputed["mae"], "rmse_recomputed": recomputed["rmse"]},
        "drift_feature": options.drift_feature, "drift_factor": options.drift_factor,
        "thresholds": {"psi": options.psi_threshold, "ks": ks_threshold},
        "features": features,
        "drifted_features": sorted(name for name, values in features.items()
                                   if values.get("psi_drift") or values.get("ks_drift")),
        "drift_job": {"job_id": job.get("job_id"), "rows_written": job.get("rows_written")},
    }


def print_summary(summary):
    predictions, quality_ = summary["predictions"], summary["quality"]
    print("\n=== summary ===")
    print("model            %s version %s (alias %s, run %s)" % (
        summary["model_name"], summary["model_version"], summary["alias"], summary["run_id"]))
    print("offline_features %d train + %d test rows (%s)" % (
        summary["offline_features"]["train_rows"], summary["offline_features"]["test_rows"],
        "loaded by this run" if summary["offline_features"]["loaded_now"] else "loaded by an earlier run"))
    print("window           %s to %s" % (summary["window_start"], summary["window_end"]))
    print("predictions      %d acknowledged, %d in BigQuery, %d missing" % (
        predictions["acknowledged"], predictions["in_bigquery"], predictions["missing"]))
    print("quality          MAE %.2f, RMSE %.2f from the drift job (recomputed here: %.2f, %.2f); test split at "
          "training: MAE %.2f, RMSE %.2f" % (quality_["mae"] or float("nan"), quality_["rmse"] or float("nan"),
                                             quality_["mae_recomputed"], quality_["rmse_recomputed"],
                                             summary["test_mae"], summary["test_rmse"]))
    print("drift            PSI threshold %.3g, KS threshold %.3g; %s x%g on purpose" % (
        summary["thresholds"]["psi"], summary["thresholds"]["ks"], summary["drift_feature"], summary["drift_factor"]))
    print("  %-6s %8s %8s %11s  %s" % ("feature", "psi", "ks", "mean_shift", "drift"))
    for name, values in summary["features"].items():
        flags = [metric for metric in ("psi", "ks") if values.get(metric + "_drift")]
        print("  %-6s %8.3f %8.3f %11.3f  %s" % (name, values.get("psi", float("nan")), values.get("ks", float("nan")),
                                                 values.get("mean_shift", float("nan")),
                                                 "DRIFT (%s)" % ", ".join(flags) if flags else "-"))


def main(argv=None):
    try:
        options = Options.from_args(parser().parse_args(argv))
        summary = run(options)
    except ExampleError as exc:
        print("example failed: %s" % exc, file=sys.stderr)
        return 1
    print_summary(summary)
    if options.summary_json:
        options.summary_json.write_text(json.dumps(summary, indent=2, sort_keys=True))
    return 0 if summary["predictions"]["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
