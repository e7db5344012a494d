"""Fixtures of the application tests: a real PostgreSQL, a real MLflow server started through the image's
entrypoint (artifacts proxied to gs:// on the Cloud Storage emulator), registered scikit-learn models,
the predictions table in the BigQuery emulator, and the serving app.

Reusable outside pytest (the worked example, the benchmarks): the helpers below take plain arguments and
the app directories are put on sys.path on import:

    from tests.apps.conftest import start_postgres, start_mlflow, register_churn_model, create_predictions_table
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_DIRS = [ROOT / "roles" / "mlflow" / "files", ROOT / "roles" / "serving" / "files"]
for app_dir in APP_DIRS:
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.standins import services  # noqa: E402  pylint: disable=wrong-import-position
from tests.standins.postgres import PostgresServer, temporary_directory  # noqa: E402  pylint: disable=wrong-import-position

PROJECT = "test-project"
CONNECTION_NAME = "test-project:us-central1:mlflow"
DB_USER = "mlflow"
DB_NAME = "mlflow"
# Every character a URL gives a meaning to, and a non-ASCII one: the entrypoint must encode them all.
DB_PASSWORD = "p@ss:w/rd%20?#&=+ é"
ARTIFACTS_BUCKET = "mlflow-artifacts-test"
DATASET = "mlops"
FEATURES = ("tenure_months", "monthly_charges", "contract_type")
CONTRACTS = ("month_to_month", "one_year", "two_year")


# -- PostgreSQL ----------------------------------------------------------------------------------------
@dataclass
class Postgres:
    server: PostgresServer
    directory: Path
    user: str = DB_USER
    password: str = DB_PASSWORD
    database: str = DB_NAME

    @property
    def port(self):
        return self.server.port

    @property
    def socket_root(self):
        """What /cloudsql is on Cloud Run: it holds <connection name>/.s.PGSQL.<port>."""
        return self.directory / "cloudsql"


def start_postgres():
    directory = temporary_directory("pg-apps-")
    server = PostgresServer(directory, services.free_port(), [directory / "cloudsql" / CONNECTION_NAME])
    server.init().start()
    server.create_role(DB_USER, DB_PASSWORD)
    server.create_database(DB_NAME, DB_USER)
    return Postgres(server=server, directory=directory)


def stop_postgres(postgres):
    postgres.server.stop()
    shutil.rmtree(postgres.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    instance = start_postgres()
    yield instance
    stop_postgres(instance)


# -- MLflow server ---------------------------------------------------------------------------------------
def mlflow_env(postgres, port, storage_url, database=DB_NAME, **extra):
    """The environment Cloud Run would give the MLflow container, pointed at the local stand-ins."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DB_"))}
    env.update({
        "PYTHONPATH": os.pathsep.join(str(d) for d in APP_DIRS[:1]),
        "DB_USER": postgres.user, "DB_PASSWORD": postgres.password, "DB_NAME": database,
        "CLOUD_SQL_CONNECTION_NAME": CONNECTION_NAME, "CLOUD_SQL_SOCKET_ROOT": str(postgres.socket_root),
        "DB_PORT": str(postgres.port),  # the socket file is .s.PGSQL.<port>; Cloud SQL's is 5432
        "ARTIFACTS_DESTINATION": "gs://%s/mlflow" % ARTIFACTS_BUCKET,
        "SERVICE_URLS": "https://mlflow-abc123-uc.a.run.app",
        "PORT": str(port), "HOST": "127.0.0.1", "WORKERS": "1",
        "STORAGE_EMULATOR_HOST": storage_url, "GOOGLE_CLOUD_PROJECT": PROJECT,
    })
    env.update({key: str(value) for key, value in extra.items()})
    return env


def run_entrypoint(command, env, timeout=300):
    """`python -m mlflow_server.entrypoint <command>` to the end; the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "mlflow_server.entrypoint", command], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class MlflowServer:
    url: str
    port: int
    env: dict
    log: Path
    process: subprocess.Popen = field(repr=False)
    migrate: subprocess.CompletedProcess = field(default=None, repr=False)

    def log_text(self):
        return self.log.read_text(errors="replace")

    def stop(self):
        stop_group(self.process)


def stop_group(process, timeout=20):
    """SIGTERM the process group, reap the leader (else its zombie keeps the group alive), wait for the rest."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    services.stop_process(process.pid, timeout=max(1, timeout // 2))  # children left behind, if any


def wait_http(url, process=None, timeout=180, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError("%s: the process exited with %s%s" % (
                url, process.returncode, ("; log:\n" + Path(log).read_text()[-4000:]) if log else ""))
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError("%s did not answer 200 within %ss" % (url, timeout))


def listening_group(port):
    """The process group of the process listening on 127.0.0.1:port (from /proc), or None."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "0100007F:%04X" % port and fields[3] == "0A":  # 127.0.0.1:port, LISTEN
            inodes.add("socket:[%s]" % fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return os.getpgid(int(proc.name))
        except OSError:
            continue
    return None


def serve_mlflow(env, log_path, attempts=3):
    """Start `python -m mlflow_server.entrypoint serve` in its own process group; wait for /health.

    The port is taken just before the start, and the server that answers must be ours: with parallel test
    workers another one's server can take the same free port first (then MLflow cannot bind and exits)."""
    for attempt in range(attempts):
        env["PORT"] = str(services.free_port())
        with open(log_path, "ab") as log:
            process = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-m", "mlflow_server.entrypoint", "serve"], env=env, cwd=ROOT, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        url = "http://127.0.0.1:%s" % env["PORT"]
        try:
            wait_http(url + "/health", process, log=log_path)
            if listening_group(int(env["PORT"])) == process.pid:
                return MlflowServer(url=url, port=int(env["PORT"]), env=env, log=Path(log_path), process=process)
        except RuntimeError:
            if attempt == attempts - 1:
                stop_group(process)
                raise
        stop_group(process)
    raise RuntimeError("MLflow could not get a port of its own in %d attempts; log: %s" % (attempts, log_path))


def create_bucket(storage_url, name):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": storage_url})
    if client.lookup_bucket(name) is None:
        client.create_bucket(name)
    return client


def start_mlflow(postgres, storage_url, log_dir):
    """Migrate the database, then serve: the order of the Cloud Run job and service."""
    create_bucket(storage_url, ARTIFACTS_BUCKET)
    env = mlflow_env(postgres, services.free_port(), storage_url)
    migrated = run_entrypoint("migrate", env)
    if migrated.returncode != 0:
        raise RuntimeError("migrate failed (%s):\n%s" % (migrated.returncode, migrated.stderr[-4000:]))
    server = serve_mlflow(env, Path(log_dir) / "mlflow-server.log")
    server.migrate = migrated
    return server


@pytest.fixture(scope="session")
def mlflow_server(postgres, storage_emulator, tmp_path_factory):
    server = start_mlflow(postgres, storage_emulator, tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


# -- registered models -----------------------------------------------------------------------------------
@pytest.fixture
def metadata():
    """The Cloud Run metadata server's stand-in: Google ID tokens for the instance's account."""
    from tests.standins.gce_metadata import MetadataServer

    server = MetadataServer()
    yield server
    server.close()


def churn_data(rows=300, seed=0):
    """A synthetic churn data set with the inventory's example features (roles/bigquery/defaults)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows).astype("int64")
    charges = rng.uniform(20.0, 120.0, rows).round(2)
    contract = rng.choice(CONTRACTS, rows)
    risk = 1.5 - tenure / 24.0 + (charges - 70.0) / 40.0 + np.where(contract == "month_to_month", 1.0, -1.0)
    churned = (risk + rng.normal(0, 0.5, rows) > 0).astype("int64")
    frame = pd.DataFrame({"tenure_months": tenure, "monthly_charges": charges,
                          "contract_type": pd.Series(contract, dtype=object)})
    return frame, churned


def model_requirements():
    """The model's pip requirements, given rather than inferred (inference runs a ~5 s subprocess)."""
    from importlib.metadata import version

    return ["%s==%s" % (name, version(name)) for name in ("scikit-learn", "skops", "pandas", "numpy")]


@dataclass
class RegisteredModel:
    name: str
    version: str
    run_id: str
    kind: str


def register_churn_model(tracking_uri, name, alias="champion", invert=False, kind="classifier",
                         serialization_format="skops"):
    """Train and register a scikit-learn pipeline; point `alias` at the new version (when alias is set).

    kind "classifier": logistic regression on churned (invert=True learns the opposite labels, so a
    second version predicts differently); "regressor": linear regression of monthly_charges * 12. Saved with skops (the format the serving API loads by
    default) unless `serialization_format` says otherwise.
    """
    import mlflow
    from mlflow import MlflowClient
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, churned = churn_data()
    target = (1 - churned) if invert else churned
    estimator = LogisticRegression(max_iter=500)
    if kind == "regressor":
        target = frame["monthly_charges"].to_numpy() * 12.0
        estimator = LinearRegression()
    pipeline = Pipeline([
        ("encode", ColumnTransformer([("contract", OneHotEncoder(handle_unknown="ignore"), ["contract_type"])],
                                     remainder="passthrough")),
        ("model", estimator)]).fit(frame, target)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment("serving-tests")
    with mlflow.start_run() as run:
        mlflow.log_param("invert", invert)
        info = mlflow.sklearn.log_model(pipeline, name="model", input_example=frame.head(3),
                                        registered_model_name=name, serialization_format=serialization_format,
                                        pip_requirements=model_requirements())
    version = str(info.registered_model_version)
    if alias:
        MlflowClient(tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(name, alias, version)
    return RegisteredModel(name=name, version=version, run_id=run.info.run_id, kind=kind)


@pytest.fixture(scope="session")
def registered_model(mlflow_server):
    """`churn`, version 1, alias champion: a binary classifier."""
    return register_churn_model(mlflow_server.url, "churn")


# -- BigQuery ------------------------------------------------------------------------------------------
def table_spec(table_id):
    """The table's definition in roles/bigquery/vars/main.yml, the contract between the units."""
    document = yaml.safe_load((ROOT / "roles" / "bigquery" / "vars" / "main.yml").read_text())
    return next(t for t in document["bigquery_tables"] if t["table_id"] == table_id)


def bigquery_client(endpoint):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=endpoint))


def create_predictions_table(endpoint, table_id="predictions", dataset=DATASET):
    """The predictions table with the role's schema, partitioning and clustering; returns project.dataset.table."""
    from google.cloud import bigquery

    spec = table_spec("predictions")
    client = bigquery_client(endpoint)
    client.create_dataset(bigquery.Dataset("%s.%s" % (PROJECT, dataset)), exists_ok=True, retry=None, timeout=30)
    table = bigquery.Table("%s.%s.%s" % (PROJECT, dataset, table_id),
                           schema=[bigquery.SchemaField.from_api_repr(column) for column in spec["schema"]])
    table.time_partitioning = bigquery.TimePartitioning(type_=spec["time_partitioning"]["type"],
                                                        field=spec["time_partitioning"]["field"])
    table.clustering_fields = spec["clustering"]
    client.create_table(table, retry=None, timeout=30)
    return "%s.%s.%s" % (PROJECT, dataset, table_id)


def table_rows(endpoint, table_path):
    """Every row of the table as dicts (tabledata.list, straight to the emulator)."""
    client = bigquery_client(endpoint)
    return [dict(row.items()) for row in client.list_rows(table_path, retry=None, timeout=30)]


@pytest.fixture
def predictions_table(bigquery_emulator, unique):
    return create_predictions_table(bigquery_emulator, "predictions_%s" % unique)


# -- the serving app -----------------------------------------------------------------------------------
def serving_settings(tracking_uri, model_name, table_path, bigquery_endpoint, **overrides):
    from mlops_serving import Settings

    project, dataset, table = table_path.split(".")
    values = {"tracking_uri": tracking_uri, "model_name": model_name, "bigquery_project": project,
              "bigquery_dataset": dataset, "bigquery_table": table, "bigquery_endpoint": bigquery_endpoint,
              "poll_interval": 0.5, "flush_interval": 0.2, "batch_size": 50, "queue_max_size": 1000,
              "max_instances": 100, "insert_timeout": 5.0, "shutdown_timeout": 10.0}
    values.update(overrides)
    return Settings(**values)


@contextlib.contextmanager
def running_app(settings, ready_timeout=120):
    """The app with its lifespan running (TestClient), once /ready answers 200."""
    from fastapi.testclient import TestClient
    from mlops_serving import create_app

    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=True) as client:
        deadline = time.monotonic() + ready_timeout
        while client.get("/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the app did not get ready: %s" % client.get("/ready").json())
            time.sleep(0.1)
        yield client


@pytest.fixture
def settings_for(mlflow_server, registered_model, predictions_table, bigquery):
    """Settings of an app on the churn model and this test's table, logging through the recording proxy."""

    def make(table_path=None, bigquery_endpoint=None, **overrides):
        return serving_settings(mlflow_server.url, registered_model.name, table_path or predictions_table,
                                bigquery_endpoint or bigquery.url, **overrides)

    return make


@pytest.fixture
def serving(settings_for):
    with running_app(settings_for()) as client:
        yield client


def wait_until(predicate, timeout=30.0, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("%s not met within %ss" % (message, timeout))


def rows_of(emulator, table, count):
    """The table's rows once it holds `count` of them."""
    def enough():
        rows = table_rows(emulator, table)
        return rows if len(rows) >= count else None
    return wait_until(enough, message="%d rows" % count)


def instance(tenure=12, charges=70.5, contract="month_to_month", **extra):
    features = {"tenure_months": tenure, "monthly_charges": charges, "contract_type": contract}
    features.update(extra)
    return features


class BigQueryGate:
    """An HTTP proxy in front of the BigQuery emulator, on a fixed port, that the tests can take down
    (connections refused) and bring back up, or make lose answers (the request reaches BigQuery, the client
    gets 503). It keeps the body of every insertAll request it sees."""

    def __init__(self, target):
        self.target = target.rstrip("/")
        self.inserts = []  # (path, body) of each insertAll request, in arrival order
        self.port = services.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self._lose = 0
        self._lock = threading.Lock()
        self._server = None
        self.up()

    def up(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    close = down

    def lose_answers(self, count):
        with self._lock:
            self._lose = count

    def insert_ids(self):
        return [[row["insertId"] for row in body["rows"]] for _path, body in self.inserts]

    def _handler_class(self):
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                insert = self.path.split("?")[0].endswith("/insertAll")
                lose = False
                with gate._lock:
                    if insert:
                        gate.inserts.append((self.path, json.loads(body)))
                        if gate._lose > 0:
                            gate._lose -= 1
                            lose = True
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream = requests.request(self.command, gate.target + self.path, data=body, headers=headers,
                                            timeout=60)
                status, payload = upstream.status_code, upstream.content
                if lose:
                    status, payload = 503, b'{"error": {"code": 503, "message": "answer lost", "status": "UNAVAILABLE"}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def bigquery_gate(bigquery_emulator):
    gate = BigQueryGate(bigquery_emulator)
    yield gate
    gate.close()
