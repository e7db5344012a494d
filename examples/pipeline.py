"""The steps every worked example takes through the pipeline, whatever its model: the examples
(diabetes_progression.py, churn/) differ in their data, their model and their summary, not in how they talk to
BigQuery, MLflow, the serving API and the drift job.

 - arguments and environment shared by the examples (Options, add_common_arguments);
 - BigQuery: the client (an emulator endpoint without credentials, else Application Default Credentials),
   queries, load jobs, the check that the mlops tables hold the example's columns, rows loaded once into
   offline_features and read back as a DataFrame in the columns' types;
 - MLflow: the model logged with skops (the only format the serving API loads by default) and registered, then
   given the alias by playbooks/promote.yml, which compares it with the version holding the alias first;
 - the serving API: started for the run (`python -m mlops_serving`) or a running one, waited on until it serves
   the version just registered, called in batches;
 - the predictions table checked for every acknowledged prediction, outcomes written to ground_truth;
 - the drift job (`python -m drift_job`, the Cloud Run job's program) and the drift_metrics rows it wrote;
 - the parts of the summary every example prints.
"""

from __future__ import annotations

import argparse
import contextlib
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVING_DIR = ROOT / "roles" / "serving" / "files"
DRIFT_JOB_DIR = ROOT / "roles" / "monitoring" / "files"
UTC = datetime.timezone.utc
# BigQuery column types (REST and GoogleSQL names) by the kind of value an example gives them.
TYPES = {
    "FLOAT": ("FLOAT", "FLOAT64"),
    "INTEGER": ("INTEGER", "INT64"),
    "BOOLEAN": ("BOOLEAN", "BOOL"),
    "STRING": ("STRING",),
}
NUMERIC_TYPES = ("FLOAT", "FLOAT64", "INTEGER", "INT64", "NUMERIC", "BIGNUMERIC")
# Two-sample Kolmogorov-Smirnov critical value factor at the 5 % level: c(0.05) = sqrt(-ln(0.025) / 2).
KS_C_ALPHA = math.sqrt(-math.log(0.025) / 2)


class ExampleError(RuntimeError):
    """A step failed; the message says which and why."""


# -- configuration ------------------------------------------------------------------------------------
def utc_time(text):
    value = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_common_arguments(options, env, model_name, experiment, inventory, batch_size=50):
    """The arguments of every example: where the pipeline is, which model, the training window, thresholds."""
    options.add_argument("--inventory", type=Path, default=Path(env.get("MLOPS_INVENTORY") or ROOT / inventory),
                         help="the inventory playbooks/promote.yml runs with, for its promotion metrics (MLOPS_INVENTORY)")
    options.add_argument("--project", default=env.get("MLOPS_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT"),
                         help="project of the mlops dataset (MLOPS_PROJECT, GOOGLE_CLOUD_PROJECT)")
    options.add_argument("--dataset", default=env.get("MLOPS_DATASET", "mlops"), help="dataset (MLOPS_DATASET)")
    options.add_argument("--bigquery-endpoint", default=env.get("BIGQUERY_API_ENDPOINT") or None,
                         help="BigQuery emulator URL; no credentials are used then (BIGQUERY_API_ENDPOINT)")
    options.add_argument("--tracking-uri", default=env.get("MLFLOW_TRACKING_URI"),
                         help="MLflow tracking server (MLFLOW_TRACKING_URI)")
    options.add_argument("--model-name", default=env.get("MODEL_NAME", model_name),
                         help="registered model name (MODEL_NAME)")
    options.add_argument("--alias", default=env.get("MODEL_ALIAS", "champion"),
                         help="alias to promote the new version to (MODEL_ALIAS)")
    options.add_argument("--experiment", default=experiment, help="MLflow experiment")
    options.add_argument("--serving-url", default=env.get("SERVING_URL") or None,
                         help="a running serving API (SERVING_URL); default: start one for this run")
    options.add_argument("--serving-token", default=env.get("SERVING_TOKEN") or None,
                         help="bearer token for the serving API (SERVING_TOKEN)")
    options.add_argument("--train-start", type=utc_time, default=utc_time("2025-01-01T00:00:00Z"),
                         help="start of the training window (event timestamps of offline_features)")
    options.add_argument("--train-end", type=utc_time, default=utc_time("2025-04-01T00:00:00Z"),
                         help="end of the training window (exclusive)")
    options.add_argument("--batch-size", type=int, default=batch_size, help="instances per POST /predict")
    options.add_argument("--psi-threshold", type=float, default=0.2, help="PSI drift threshold (the job's default)")
    options.add_argument("--ks-threshold", type=float, default=None,
                         help="KS drift threshold; default: the 5 %% critical value for the sample sizes")
    options.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the serving API")
    options.add_argument("--summary-json", type=Path, help="also write the summary to this file as JSON")
    return options


class Options(argparse.Namespace):
    """Parsed arguments, checked; an example adds its own checks in problems()."""

    @classmethod
    def from_args(cls, args):
        options = cls(**vars(args))
        problems = options.problems()
        if problems:
            raise ExampleError("; ".join(problems))
        return options

    def problems(self):
        problems = []
        if not self.project:
            problems.append("--project (or MLOPS_PROJECT / GOOGLE_CLOUD_PROJECT) is required")
        if not self.tracking_uri:
            problems.append("--tracking-uri (or MLFLOW_TRACKING_URI) is required")
        if self.train_start >= self.train_end:
            problems.append("--train-start must be before --train-end")
        if not 1 <= self.batch_size <= 1000:
            problems.append("--batch-size must be between 1 and 1000")
        return problems

    def table(self, name):
        return "%s.%s.%s" % (self.project, self.dataset, name)


def stepper(total):
    """A function printing `[n/total] text`: the progress lines of an example."""
    def step(number, text):
        print("[%d/%d] %s" % (number, total, text), flush=True)
    return step


def main(argv, parser, options_class, run, print_summary):
    """Parse, run, print; exit 1 when a step failed or an acknowledged prediction is missing."""
    try:
        options = options_class.from_args(parser().parse_args(argv))
        summary = run(options)
    except ExampleError as exc:
        print("example failed: %s" % exc, file=sys.stderr)
        return 1
    print_summary(summary)
    if options.summary_json:
        options.summary_json.write_text(json.dumps(summary, indent=2, sort_keys=True))
    return 0 if summary["predictions"]["missing"] == 0 else 1


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


def query_config(params):
    """Named parameters of a query: datetime -> TIMESTAMP, str, int, float."""
    from google.cloud import bigquery

    types = {datetime.datetime: "TIMESTAMP", str: "STRING", int: "INT64", float: "FLOAT64"}
    return bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter(name, types[type(value)], value) for name, value in params.items()])


def run_query(client, sql, **params):
    """Rows of a query as dicts."""
    return [dict(row.items()) for row in client.query(sql, job_config=query_config(params)).result(timeout=300)]


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


def check_tables(client, options, columns, hint):
    """The four tables exist; offline_features has `columns` ({name: STRING, INTEGER, FLOAT, BOOLEAN or numeric}).
    `hint` says which mlops_features / mlops_label the example needs."""
    from google.api_core.exceptions import NotFound

    schemas = {}
    for name in ("offline_features", "predictions", "ground_truth", "drift_metrics"):
        try:
            schemas[name] = {field.name: field.field_type for field in client.get_table(options.table(name)).schema}
        except NotFound:
            raise ExampleError("table %s does not exist: run `ansible-playbook site.yml -i inventories/<env>` "
                               "first (the bigquery role creates it)" % options.table(name)) from None
    found = schemas["offline_features"]
    wrong = ["%s (%s)" % (name, kind) for name, kind in columns.items()
             if found.get(name) not in (NUMERIC_TYPES if kind == "numeric" else TYPES[kind])]
    if wrong:
        raise ExampleError("offline_features has no column %s: %s, then the table re-created"
                           % (", ".join(wrong), hint))


def event_time(options, index, count):
    """The event timestamp of row `index` of `count`: spread evenly over the training window."""
    span = options.train_end - options.train_start
    return (options.train_start + span * ((index + 0.5) / count)).replace(microsecond=0)


def load_features(client, options, rows, now, prefix):
    """Load the example's rows (entity ids starting with `prefix`) once: True when loaded now, False when the
    training window already holds them."""
    expected = {}
    for row in rows:
        expected[row["split"]] = expected.get(row["split"], 0) + 1
    found = {row["split"]: row["n"] for row in run_query(
        client, "SELECT split, COUNT(*) AS n FROM `%s` WHERE event_timestamp >= @start AND event_timestamp < @end "
                "AND STARTS_WITH(entity_id, @prefix) GROUP BY split" % options.table("offline_features"),
        start=options.train_start, end=options.train_end, prefix=prefix)}
    if found == expected:
        return False
    if found:
        raise ExampleError("offline_features already holds other example rows in the training window (%s; this run "
                           "would load %s): pick another --train-start/--train-end" % (found, expected))
    ingested = bq_time(now)
    load_json_rows(client, options.table("offline_features"), [
        dict(row, event_timestamp=bq_time(row["event_timestamp"]), ingested_at=ingested) for row in rows])
    return True


def read_training_data(client, options, columns, prefix):
    """The example's rows of the training window, read back from offline_features: a DataFrame with
    entity_id, split and `columns` ({name: BigQuery type}) in plain numpy types. to_dataframe() gives an
    INTEGER column pandas' nullable Int64 and a BOOLEAN one `boolean`: a model trained on them would learn the
    classes 0.0 and 1.0 and MLflow would infer other types than the features the serving API receives."""
    sql = ("SELECT %s FROM `%s` WHERE event_timestamp >= @start AND event_timestamp < @end "
           "AND STARTS_WITH(entity_id, @prefix) ORDER BY entity_id"
           % (", ".join(["entity_id", "split"] + list(columns)), options.table("offline_features")))
    config = query_config({"start": options.train_start, "end": options.train_end, "prefix": prefix})
    frame = client.query(sql, job_config=config).result(timeout=300).to_dataframe(create_bqstorage_client=False)
    plain = {"FLOAT": "float64", "INTEGER": "int64", "BOOLEAN": "bool", "STRING": "object"}
    for column, kind in columns.items():
        if frame[column].isna().any():
            raise ExampleError("offline_features has rows without %s in the training window" % column)
        frame[column] = frame[column].astype(plain[kind])
    return frame


# -- MLflow -----------------------------------------------------------------------------------------------
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


def log_and_register(options, model, inputs, run_name, params, metrics):
    """Log the fitted `model` (its signature from `inputs`, the training features), register a new version,
    promote it to the alias; the version and the run id."""
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(options.tracking_uri)
    mlflow.set_registry_uri(options.tracking_uri)
    mlflow.set_experiment(options.experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        signature = infer_signature(inputs, model.predict(inputs))
        # skops: the serving API loads only models whose loading runs no pickled code (see its MODEL_ALLOW_PICKLE).
        info = mlflow.sklearn.log_model(model, name="model", signature=signature, serialization_format="skops",
                                        input_example=inputs.head(3), registered_model_name=options.model_name,
                                        pip_requirements=model_requirements())
    version = str(info.registered_model_version)
    promote(options, version)
    return {"version": version, "run_id": run.info.run_id}


def promote(options, version):
    """Move the alias to `version` as a release would: with playbooks/promote.yml, which compares it with the version
    holding the alias on the inventory's mlops_promotion_metrics, refuses it when worse, and records the decision in
    MLflow and in the promotions table. The inventory's names and endpoints are replaced by the example's."""
    settings = {"mlops_promotion_tracking_uri": options.tracking_uri, "mlops_model_name": options.model_name,
                "mlops_model_alias": options.alias, "mlops_gcp_project": options.project,
                "mlops_bigquery_dataset": options.dataset}
    if options.bigquery_endpoint:
        settings["mlops_gcp_api_endpoints"] = {"bigquery": options.bigquery_endpoint}
    installed = Path(sys.executable).parent / "ansible-playbook"
    command = [str(installed) if installed.exists() else "ansible-playbook", str(ROOT / "playbooks" / "promote.yml"),
               "-i", str(options.inventory), "-e", json.dumps(settings), "-e", "model_version=%s" % version]
    # From the checkout: its ansible.cfg finds the collection.
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    if proc.returncode != 0:
        raise ExampleError("playbooks/promote.yml did not promote version %s to %s:\n%s" % (
            version, options.alias, (proc.stdout + proc.stderr)[-3000:]))
    print("      promoted version %s to %s with playbooks/promote.yml" % (version, options.alias), flush=True)


# -- the serving API ---------------------------------------------------------------------------------
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServing:
    """`python -m mlops_serving` (the serving image's command) on a free port, for the run. `declared` is what
    the serving role passes from the inventory's mlops_label / mlops_features (MODEL_TASK, MODEL_FEATURES, ...)."""

    def __init__(self, options, log_dir, declared=None):
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
        env.update(declared or {})
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


def post_predict(session, url, body):
    """One POST /predict, retried while the API answers 503 (its prediction log is full: backpressure)."""
    for attempt in range(10):
        response = session.post(url + "/predict", json=body, timeout=60)
        if response.status_code != 503:
            return response
        time.sleep(min(float(response.headers.get("Retry-After") or 1), 5) * (attempt + 1))
    return response


def predict_all(session, url, instances, batch_size):
    """POST /predict in batches; every acknowledged prediction with its id, entity, answer and model version
    (a classifier's answer also has `probability`)."""
    answers = []
    for start in range(0, len(instances), batch_size):
        batch = instances[start:start + batch_size]
        response = post_predict(session, url, {"instances": batch})
        if response.status_code != 200:
            raise ExampleError("POST /predict answered %s: %s" % (response.status_code, response.text[:500]))
        body = response.json()
        for sent, prediction in zip(batch, body["predictions"]):
            answer = {"prediction_id": prediction["prediction_id"], "entity_id": sent["entity_id"],
                      "prediction": prediction["prediction"], "model_version": body["model_version"]}
            if "probability" in prediction:
                answer["probability"] = prediction["probability"]
            answers.append(answer)
    return answers


@contextlib.contextmanager
def serving_api(options, session, version, declared=None):
    """The serving API's URL, once it serves `version`: the one at --serving-url, else one started for the
    block (stopped with SIGTERM at its end, which flushes its prediction log). Yields (url, closed): closed()
    is the app's last word on its prediction log once stopped (None for a running API)."""
    serving = None
    state = {}
    with tempfile.TemporaryDirectory(prefix="example-") as log_dir:
        try:
            if options.serving_url:
                url = options.serving_url.rstrip("/")
                session.headers.update(serving_headers(url, options.serving_token))
                wait_for_version(session, url, version, options.timeout)
            else:
                serving = LocalServing(options, log_dir, declared)
                url = serving.url
                wait_for_version(session, url, version, options.timeout, check=serving.check)
            yield url, lambda: state.get("closed")
        finally:
            if serving:
                state["closed"] = serving.stop()


# -- predictions, ground truth, drift ------------------------------------------------------------------
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


def ks_critical(reference_rows, window_rows):
    """The two-sample KS statistic's 5 % critical value for these sample sizes."""
    return round(KS_C_ALPHA * math.sqrt((reference_rows + window_rows) / (reference_rows * window_rows)), 4)


def run_drift_job(options, window_start, window_end, arguments):
    """`python -m drift_job` (the Cloud Run job's program) for the window, with the example's `arguments`
    (features, task, thresholds); its JSON summary."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DRIFT_", "BIGQUERY_"))}
    env["PYTHONPATH"] = str(DRIFT_JOB_DIR)
    if options.bigquery_endpoint:
        env["BIGQUERY_EMULATOR_HOST"] = options.bigquery_endpoint
    command = [sys.executable, "-m", "drift_job", "--project", options.project, "--dataset", options.dataset,
               "--model-name", options.model_name, "--window-start", window_start.isoformat(),
               "--window-end", window_end.isoformat(), "--reference-start", options.train_start.isoformat(),
               "--reference-end", options.train_end.isoformat(), "--reference-split", "train",
               "--timeout", "600"] + list(arguments)
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise ExampleError("the drift job failed (exit %d): %s" % (proc.returncode, proc.stderr.strip()[-2000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def drift_rows(client, options, window_start, window_end):
    return run_query(client, "SELECT model_version, feature, metric_type, value, threshold, drift_detected FROM `%s` "
                             "WHERE window_start = @start AND window_end = @end AND model_name = @model"
                     % options.table("drift_metrics"), start=window_start, end=window_end, model=options.model_name)


def split_metrics(metrics, features):
    """drift_metrics rows of one window as ({feature: {metric: value, metric_drift: flag}}, {metric: value} of
    the model's rows over all its versions)."""
    by_feature = {name: {} for name in features}
    overall = {}
    for row in metrics:
        if row["feature"]:
            by_feature.setdefault(row["feature"], {})[row["metric_type"]] = row["value"]
            if row["threshold"] is not None:
                by_feature[row["feature"]][row["metric_type"] + "_drift"] = bool(row["drift_detected"])
        elif row["model_version"] is None:
            overall[row["metric_type"]] = row["value"]
    return by_feature, overall


def drifted(features):
    return sorted(name for name, values in features.items() if values.get("psi_drift") or values.get("ks_drift"))


# -- the summary ---------------------------------------------------------------------------------------
def summary_head(options, model, loaded, frame, answers, found, missing, window):
    """What every example's summary holds first: the model, the rows, the window and the predictions."""
    acknowledged = {answer["prediction_id"] for answer in answers}
    return {
        "model_name": options.model_name, "model_version": model["version"], "alias": options.alias,
        "run_id": model["run_id"],
        "offline_features": {"loaded_now": loaded, "train_rows": int((frame["split"] == "train").sum()),
                             "test_rows": int((frame["split"] == "test").sum())},
        "window_start": window[0].isoformat(), "window_end": window[1].isoformat(),
        "predictions": {"acknowledged": len(answers), "in_bigquery": len(found & acknowledged),
                        "missing": len(missing), "served_versions": sorted({a["model_version"] for a in answers})},
    }


def print_head(summary):
    predictions = summary["predictions"]
    print("\n=== summary ===")
    print("model            %s version %s (alias %s, run %s)" % (
        summary["model_name"], summary["model_version"], summary["alias"], summary["run_id"]))
    print("offline_features %d train + %d test rows (%s)" % (
        summary["offline_features"]["train_rows"], summary["offline_features"]["test_rows"],
        "loaded by this run" if summary["offline_features"]["loaded_now"] else "loaded by an earlier run"))
    print("window           %s to %s" % (summary["window_start"], summary["window_end"]))
    print("predictions      %d acknowledged, %d in BigQuery, %d missing" % (
        predictions["acknowledged"], predictions["in_bigquery"], predictions["missing"]))


def print_features(features, width=6):
    """One line per feature: PSI, KS and mean shift (numeric features only) and the drift flags."""
    print("  %-*s %8s %8s %11s  %s" % (width, "feature", "psi", "ks", "mean_shift", "drift"))
    for name, values in features.items():
        flags = [metric for metric in ("psi", "ks") if values.get(metric + "_drift")]
        print("  %-*s %8.3f %8.3f %11.3f  %s" % (width, name, values.get("psi", float("nan")),
                                                 values.get("ks", float("nan")), values.get("mean_shift", float("nan")),
                                                 "DRIFT (%s)" % ", ".join(flags) if flags else "-"))
