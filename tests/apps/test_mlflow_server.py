"""The MLflow server image's entrypoint: configuration from the environment (unit), then migrate and serve
against a real PostgreSQL with artifacts proxied to the Cloud Storage emulator (integration)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
import requests
from sqlalchemy.engine import make_url

from mlflow_server import entrypoint
from tests.apps.conftest import (ARTIFACTS_BUCKET, CONNECTION_NAME, DB_PASSWORD, model_requirements, run_entrypoint,
                                 serve_mlflow)
from tests.standins import services

pytestmark = pytest.mark.xdist_group("apps")

SOCKET_ENV = {"DB_USER": "mlflow", "DB_PASSWORD": DB_PASSWORD, "DB_NAME": "mlflow",
              "CLOUD_SQL_CONNECTION_NAME": "my-project:europe-west1:mlops-db",
              "ARTIFACTS_DESTINATION": "gs://artifacts-bucket/mlflow",
              "SERVICE_URLS": "https://mlflow-abc123-ew.a.run.app,https://mlflow-123456789.europe-west1.run.app"}
HOST_ENV = dict({k: v for k, v in SOCKET_ENV.items() if k != "CLOUD_SQL_CONNECTION_NAME"}, DB_HOST="10.1.2.3")


# -- unit: the backend store URI -----------------------------------------------------------------------
def test_socket_uri_reaches_cloud_sql_through_its_unix_socket():
    database = entrypoint.database_from_env(SOCKET_ENV)
    url = make_url(database.uri())
    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.password, url.database) == ("mlflow", DB_PASSWORD, "mlflow")
    assert url.host is None and url.port is None
    assert url.query == {"host": "/cloudsql/my-project:europe-west1:mlops-db"}
    assert database.uri().startswith("postgresql+psycopg2://mlflow:")
    assert database.uri().endswith("@/mlflow?host=/cloudsql/my-project:europe-west1:mlops-db")


def test_socket_root_and_port_can_be_overridden():
    env = dict(SOCKET_ENV, CLOUD_SQL_SOCKET_ROOT="/tmp/sockets/", DB_PORT="6543")
    url = make_url(entrypoint.database_from_env(env).uri())
    assert url.query == {"host": "/tmp/sockets/my-project:europe-west1:mlops-db", "port": "6543"}


def test_host_uri_for_a_local_server():
    url = make_url(entrypoint.database_from_env(dict(HOST_ENV, DB_SSLMODE="require")).uri())
    assert (url.host, url.port, url.database, url.password) == ("10.1.2.3", 5432, "mlflow", DB_PASSWORD)
    assert url.query == {"sslmode": "require"}
    url = make_url(entrypoint.database_from_env(dict(HOST_ENV, DB_HOST="::1", DB_PORT="5433")).uri())
    assert (url.host, url.port) == ("::1", 5433)


def test_password_is_url_encoded():
    uri = entrypoint.database_from_env(SOCKET_ENV).uri()
    secret = uri.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
    assert secret == "p%40ss%3Aw%2Frd%2520%3F%23%26%3D%2B%20%C3%A9"
    for character in "@:/?#&=+ é":
        assert character not in secret


def test_user_and_database_are_encoded_too():
    url = make_url(entrypoint.database_from_env(dict(SOCKET_ENV, DB_USER="ml@flow", DB_NAME="db/x")).uri())
    assert (url.username, url.database) == ("ml@flow", "db/x")


def test_masked_uri_hides_only_the_password():
    database = entrypoint.database_from_env(SOCKET_ENV)
    assert database.masked_uri() == "postgresql+psycopg2://mlflow:***@/mlflow?host=/cloudsql/my-project:europe-west1:mlops-db"
    assert DB_PASSWORD not in repr(database)


def test_password_from_a_mounted_secret_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text(DB_PASSWORD + "\n")
    env = dict({k: v for k, v in SOCKET_ENV.items() if k != "DB_PASSWORD"}, DB_PASSWORD_FILE=str(secret))
    assert make_url(entrypoint.database_from_env(env).uri()).password == DB_PASSWORD


@pytest.mark.parametrize("missing, named", [
    ("DB_USER", "DB_USER"), ("DB_NAME", "DB_NAME"), ("DB_PASSWORD", "DB_PASSWORD"),
    ("CLOUD_SQL_CONNECTION_NAME", "CLOUD_SQL_CONNECTION_NAME"),
])
def test_missing_database_variable_is_named(missing, named):
    env = {k: v for k, v in SOCKET_ENV.items() if k != missing}
    with pytest.raises(entrypoint.ConfigError, match=named):
        entrypoint.database_from_env(env)


@pytest.mark.parametrize("env, message", [
    (dict(SOCKET_ENV, DB_HOST="10.0.0.1"), "only one of CLOUD_SQL_CONNECTION_NAME"),
    (dict(SOCKET_ENV, CLOUD_SQL_CONNECTION_NAME="just-an-instance"), "project:region:instance"),
    (dict(SOCKET_ENV, DB_PORT="five"), "DB_PORT must be an integer"),
    (dict(SOCKET_ENV, DB_PORT="70000"), "DB_PORT must be a port number"),
    (dict(SOCKET_ENV, DB_PASSWORD_FILE="/nonexistent/secret"), "only one of DB_PASSWORD and DB_PASSWORD_FILE"),
    (dict({k: v for k, v in SOCKET_ENV.items() if k != "DB_PASSWORD"}, DB_PASSWORD_FILE="/nonexistent/secret"),
     "DB_PASSWORD_FILE /nonexistent/secret cannot be read"),
])
def test_invalid_database_settings_are_refused(env, message):
    with pytest.raises(entrypoint.ConfigError, match=message):
        entrypoint.database_from_env(env)


# -- unit: the server command ----------------------------------------------------------------------------
def test_server_command_proxies_artifacts_and_allows_only_the_service_hosts():
    server = entrypoint.server_from_env(dict(SOCKET_ENV, PORT="9000", WORKERS="3"))
    command = server.command(python="python")
    assert command[:4] == ["python", "-m", "mlflow", "server"]
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == "gs://artifacts-bucket/mlflow"
    assert command[command.index("--port") + 1] == "9000"
    assert command[command.index("--workers") + 1] == "3"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--allowed-hosts") + 1].split(",") == [
        "mlflow-abc123-ew.a.run.app", "mlflow-123456789.europe-west1.run.app",
        "localhost", "localhost:9000", "127.0.0.1", "127.0.0.1:9000"]
    assert command[command.index("--cors-allowed-origins") + 1].split(",") == [
        "https://mlflow-abc123-ew.a.run.app", "https://mlflow-123456789.europe-west1.run.app"]
    for unwanted in ("--disable-security-middleware", "--dev", "--backend-store-uri"):
        assert unwanted not in command
    assert not any(DB_PASSWORD in part for part in command)


def test_extra_allowed_hosts_and_ports_in_service_urls():
    env = dict(SOCKET_ENV, SERVICE_URLS="http://mlflow.internal:5000", ALLOWED_HOSTS="10.0.0.*, mlflow.example.com")
    server = entrypoint.server_from_env(env)
    assert server.allowed_hosts[:4] == ["mlflow.internal", "mlflow.internal:5000", "10.0.0.*", "mlflow.example.com"]
    assert server.cors_allowed_origins == ["http://mlflow.internal:5000"]
    assert (server.workers, server.port, server.migrate_on_start, server.job_execution) == (2, 8080, False, False)


@pytest.mark.parametrize("env, message", [
    ({k: v for k, v in SOCKET_ENV.items() if k != "SERVICE_URLS"}, "SERVICE_URLS"),
    ({k: v for k, v in SOCKET_ENV.items() if k != "ARTIFACTS_DESTINATION"}, "ARTIFACTS_DESTINATION"),
    (dict(SOCKET_ENV, ALLOWED_HOSTS="*"), "must not contain"),
    (dict(SOCKET_ENV, WORKERS="many"), "WORKERS must be an integer"),
    (dict(SOCKET_ENV, WORKERS="0"), "WORKERS must be at least 1"),
    (dict(SOCKET_ENV, PORT="123456"), "PORT must be a port number"),
    (dict(SOCKET_ENV, MIGRATE_ON_START="perhaps"), "MIGRATE_ON_START must be true or false"),
])
def test_invalid_server_settings_are_refused(env, message):
    with pytest.raises(entrypoint.ConfigError, match=message):
        entrypoint.server_from_env(env)


def test_missing_variable_exits_with_a_message_naming_it(caplog):
    assert entrypoint.main(["serve"], env={k: v for k, v in SOCKET_ENV.items() if k != "DB_NAME"}) == 3
    assert "environment variable DB_NAME is required" in caplog.text


def test_unknown_command_prints_usage(capsys):
    assert entrypoint.main(["upgrade"], env={}) == 2
    err = capsys.readouterr().err
    assert "serve,migrate,healthcheck" in err and "DB_PASSWORD_FILE" in err


def test_unreachable_database_is_reported_with_the_password_masked(caplog):
    port = services.free_port()  # nothing listens there
    env = dict(HOST_ENV, DB_HOST="127.0.0.1", DB_PORT=str(port), DB_CONNECT_TIMEOUT="1")
    with caplog.at_level(logging.INFO, logger="mlflow_server"):
        assert entrypoint.main(["migrate"], env=env) == 3
    text = caplog.text
    assert "backend store: postgresql+psycopg2://mlflow:***@127.0.0.1:%d/mlflow" % port in text
    assert "cannot connect to postgresql+psycopg2://mlflow:***@127.0.0.1" in text
    assert DB_PASSWORD not in text and "p%40ss" not in text


def test_healthcheck_fails_when_nothing_listens():
    assert entrypoint.cmd_healthcheck({"PORT": str(services.free_port())}, timeout=1) == 1


# -- integration: migrate and serve on PostgreSQL -------------------------------------------------------
def _head():
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def test_migrate_created_the_schema_at_the_expected_revision(mlflow_server, postgres):
    assert mlflow_server.migrate.returncode == 0
    assert postgres.server.query("SELECT version_num FROM alembic_version", database="mlflow") == [(_head(),)]
    tables = {row[0] for row in postgres.server.query(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database="mlflow")}
    assert {"experiments", "runs", "registered_models", "model_versions", "registered_model_aliases"} <= tables
    log = mlflow_server.migrate.stderr
    assert "migrating the MLflow schema of postgresql+psycopg2://mlflow:***@/mlflow?host=%s/%s&port=%d" % (
        postgres.socket_root, CONNECTION_NAME, postgres.port) in log
    assert DB_PASSWORD not in log and "p%40ss" not in log


def test_migrate_again_changes_nothing(mlflow_server):
    second = run_entrypoint("migrate", mlflow_server.env)
    assert second.returncode == 0, second.stderr
    assert "already at revision %s; nothing to migrate" % _head() in second.stderr


def test_serve_refuses_an_unmigrated_database_and_leaves_it_untouched(mlflow_server, postgres):
    postgres.server.create_database("mlflow_empty", postgres.user)
    result = run_entrypoint("serve", dict(mlflow_server.env, DB_NAME="mlflow_empty"))
    assert result.returncode == 3
    assert "the database schema is empty (no MLflow tables); this MLflow needs revision %s" % _head() in result.stderr
    assert "python -m mlflow_server.entrypoint migrate" in result.stderr
    assert postgres.server.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                                 database="mlflow_empty") == [(0,)]


def test_serve_with_migrate_on_start_migrates_then_serves(mlflow_server, postgres, tmp_path):
    postgres.server.create_database("mlflow_on_start", postgres.user)
    env = dict(mlflow_server.env, DB_NAME="mlflow_on_start", MIGRATE_ON_START="true", PORT=str(services.free_port()))
    server = serve_mlflow(env, tmp_path / "on-start.log")
    try:
        assert postgres.server.query("SELECT version_num FROM alembic_version",
                                     database="mlflow_on_start") == [(_head(),)]
        found = requests.get(server.url + "/api/2.0/mlflow/experiments/search?max_results=5", timeout=10)
        assert found.status_code == 200 and [e["name"] for e in found.json()["experiments"]] == ["Default"]
    finally:
        server.stop()
    assert "migrating the MLflow schema of postgresql+psycopg2://mlflow:***@/mlflow_on_start" in server.log_text()


def test_tcp_connection_with_the_encoded_password(mlflow_server, postgres):
    postgres.server.create_database("mlflow_tcp", postgres.user)
    env = dict(mlflow_server.env, DB_NAME="mlflow_tcp", DB_HOST="127.0.0.1")
    del env["CLOUD_SQL_CONNECTION_NAME"]
    result = run_entrypoint("migrate", env)
    assert result.returncode == 0, result.stderr
    assert "postgresql+psycopg2://mlflow:***@127.0.0.1:%d/mlflow_tcp" % postgres.port in result.stderr
    assert postgres.server.query("SELECT version_num FROM alembic_version", database="mlflow_tcp") == [(_head(),)]


def test_wrong_password_fails_clearly_without_printing_it(mlflow_server):
    wrong = "not-the-password-%s" % os.getpid()
    env = dict(mlflow_server.env, DB_PASSWORD=wrong, DB_CONNECT_TIMEOUT="1")
    result = run_entrypoint("migrate", env)
    assert result.returncode == 3
    assert "cannot connect to postgresql+psycopg2://mlflow:***@/mlflow" in result.stderr
    assert "password authentication failed" in result.stderr
    assert wrong not in result.stderr + result.stdout


def test_health_endpoint_and_healthcheck_command(mlflow_server):
    response = requests.get(mlflow_server.url + "/health", timeout=10)
    assert response.status_code == 200 and response.text == "OK"
    # Health stays reachable whatever the Host header (probes use the instance's address).
    assert requests.get(mlflow_server.url + "/health", headers={"Host": "10.20.30.40:8080"}, timeout=10).status_code == 200
    assert run_entrypoint("healthcheck", mlflow_server.env, timeout=30).returncode == 0


def test_allowed_hosts_reject_a_foreign_host_header(mlflow_server):
    search = mlflow_server.url + "/api/2.0/mlflow/experiments/search?max_results=1"
    refused = requests.get(search, headers={"Host": "attacker.example.com"}, timeout=10)
    assert refused.status_code == 403
    assert "Invalid Host header" in refused.text
    assert requests.get(search, headers={"Host": "192.168.1.20:%d" % mlflow_server.port}, timeout=10).status_code == 403
    assert requests.get(search, headers={"Host": "mlflow-abc123-uc.a.run.app"}, timeout=10).status_code == 200
    assert requests.get(search, timeout=10).status_code == 200  # 127.0.0.1:<port>


def test_cors_allows_only_the_service_origin(mlflow_server):
    create = mlflow_server.url + "/api/2.0/mlflow/experiments/create"
    refused = requests.post(create, json={"name": "cors-refused"}, timeout=10,
                            headers={"Origin": "https://attacker.example.com"})
    assert refused.status_code == 403
    allowed = requests.post(create, json={"name": "cors-allowed-%d" % os.getpid()}, timeout=10,
                            headers={"Origin": "https://mlflow-abc123-uc.a.run.app"})
    assert allowed.status_code == 200, allowed.text


def test_run_model_and_alias_through_the_server_with_artifacts_in_gcs(mlflow_server, storage_emulator):
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from sklearn.linear_model import LinearRegression

    from tests.apps.conftest import create_bucket

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    mlflow.set_experiment("server-test")
    frame = pd.DataFrame({"x": np.arange(10.0), "y": np.arange(10.0) ** 2})
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("rmse", 1.25)
        info = mlflow.sklearn.log_model(LinearRegression().fit(frame[["x"]], frame["y"]), name="model",
                                        input_example=frame[["x"]].head(2), registered_model_name="server-test-model",
                                        pip_requirements=model_requirements())
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    client.set_registered_model_alias("server-test-model", "champion", info.registered_model_version)
    version = client.get_model_version_by_alias("server-test-model", "champion")
    assert version.version == str(info.registered_model_version) and version.run_id == run.info.run_id
    stored = client.get_run(run.info.run_id)
    assert stored.data.params == {"alpha": "0.5"} and stored.data.metrics == {"rmse": 1.25}
    # The artifacts went through the server (mlflow-artifacts:) to the bucket: clients need no GCS access.
    assert stored.info.artifact_uri.startswith("mlflow-artifacts:/")
    blobs = [b.name for b in create_bucket(storage_emulator, ARTIFACTS_BUCKET).list_blobs(ARTIFACTS_BUCKET)]
    assert any(name.startswith("mlflow/") and name.endswith("/MLmodel") for name in blobs), blobs
    loaded = mlflow.pyfunc.load_model("models:/server-test-model@champion")
    assert list(loaded.predict(pd.DataFrame({"x": [2.0]}))) == pytest.approx([float(LinearRegression().fit(
        frame[["x"]], frame["y"]).predict(pd.DataFrame({"x": [2.0]}))[0])])


def test_server_log_and_command_line_never_show_the_password(mlflow_server, postgres):
    log = mlflow_server.log_text()
    assert "backend store: postgresql+psycopg2://mlflow:***@/mlflow?host=%s/%s&port=%d" % (
        postgres.socket_root, CONNECTION_NAME, postgres.port) in log
    assert DB_PASSWORD not in log and "p%40ss" not in log
    group = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == mlflow_server.process.pid:
                    group.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                continue
    assert group, "the server's processes were not found"
    assert not any("p%40ss" in line or DB_PASSWORD in line for line in group)
    assert any("mlflow.server.fastapi_app:app" in line for line in group)
    # Job execution is off by default: no huey consumers next to the server.
    assert not any("huey" in line for line in group), group


def _group_environments(pgid):
    environments = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == pgid:
                    raw = (proc / "environ").read_bytes().split(b"\0")
                    environments.append(dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item))
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                continue
    return environments


def test_mlflow_gets_the_uri_by_environment_and_not_the_raw_password(mlflow_server):
    environments = _group_environments(mlflow_server.process.pid)
    assert environments
    for environment in environments:
        assert "DB_PASSWORD" not in environment
        assert make_url(environment["MLFLOW_BACKEND_STORE_URI"]).password == DB_PASSWORD
        assert environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_environment_documented_for_every_variable_read():
    source = Path(entrypoint.__file__).read_text()
    read = set(re.findall(r'_(?:env|int|bool|list)\(env, "([A-Z_]+)"', source))
    read |= {"DB_PASSWORD", "DB_PASSWORD_FILE", "LOG_LEVEL"}
    assert read <= set(entrypoint.ENVIRONMENT), read - set(entrypoint.ENVIRONMENT)
