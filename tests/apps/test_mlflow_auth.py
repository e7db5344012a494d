"""Who may change production: MLflow's basic-auth app (BASIC_AUTH=true) as the image's entrypoint runs it, on a
real PostgreSQL (the auth tables in MLflow's own database) with artifacts in the Cloud Storage emulator.

Anonymous requests are refused (401); the serving user `migrate` keeps can read the served model and load it,
but cannot move its alias (403); the admin can; a training identity can once it is granted EDIT on the model
the way the README says. Unit tests cover the configuration.
"""

from __future__ import annotations

import configparser
import os
import stat
from pathlib import Path

import pytest
import requests

from mlflow_server import entrypoint
from tests.apps.conftest import (ARTIFACTS_BUCKET, DB_PASSWORD, create_bucket, mlflow_env, register_churn_model,
                                 run_entrypoint, serve_mlflow)
from tests.standins import services

pytestmark = pytest.mark.xdist_group("apps")

ADMIN_PASSWORD = "admin-p@ss%20:w/rd-0123456789"
SERVING_PASSWORD = "serving-p@ss%41-0123456789"
TRAINER_PASSWORD = "trainer-password-0123456789"
MODEL = "churn-guarded"
API = "/api/2.0/mlflow"
AUTH_ENV = {"BASIC_AUTH": "true", "AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "AUTH_SERVING_USERNAME": "serving",
            "AUTH_SERVING_PASSWORD": SERVING_PASSWORD, "AUTH_SERVING_MODELS": MODEL}
UNIT_ENV = {"DB_USER": "mlflow", "DB_PASSWORD": DB_PASSWORD, "DB_NAME": "mlflow", "DB_HOST": "10.1.2.3",
            "ARTIFACTS_DESTINATION": "gs://bucket/mlflow", "SERVICE_URLS": "https://mlflow-abc-ew.a.run.app"}


# -- unit: configuration ----------------------------------------------------------------------------------
def test_basic_auth_is_off_unless_asked():
    assert entrypoint.auth_from_env(UNIT_ENV) is None
    assert "--app-name" not in entrypoint.server_from_env(UNIT_ENV).command(python="python")


def test_basic_auth_settings_and_command():
    auth = entrypoint.auth_from_env(dict(UNIT_ENV, **AUTH_ENV))
    assert (auth.admin_username, auth.default_permission, auth.serving_username, auth.serving_models) == (
        "admin", "NO_PERMISSIONS", "serving", (MODEL,))
    assert ADMIN_PASSWORD not in repr(auth) and SERVING_PASSWORD not in repr(auth)
    command = entrypoint.server_from_env(UNIT_ENV).command(python="python", auth=True)
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = dict(UNIT_ENV, **dict(AUTH_ENV, AUTH_DEFAULT_PERMISSION="read", AUTH_SERVING_MODELS="a, b,a"))
    assert entrypoint.auth_from_env(env).default_permission == "READ"
    assert entrypoint.auth_from_env(env).serving_models == ("a", "b")


@pytest.mark.parametrize("change, message", [
    ({"AUTH_ADMIN_PASSWORD": None}, "AUTH_ADMIN_PASSWORD is required"),
    ({"AUTH_ADMIN_PASSWORD": "short"}, "AUTH_ADMIN_PASSWORD must be at least 12 characters"),
    ({"AUTH_SERVING_PASSWORD": None}, "AUTH_SERVING_PASSWORD is required"),
    ({"AUTH_DEFAULT_PERMISSION": "MANAGE"}, "AUTH_DEFAULT_PERMISSION must be one of NO_PERMISSIONS, READ"),
    ({"AUTH_SERVING_USERNAME": "admin"}, "must not be the admin user"),
    ({"AUTH_SERVING_USERNAME": None, "AUTH_SERVING_PASSWORD": None}, "AUTH_SERVING_MODELS is set but"),
    ({"BASIC_AUTH": "false"}, "AUTH_SERVING_USERNAME is set but BASIC_AUTH is not true"),
])
def test_bad_basic_auth_settings_are_named(change, message):
    env = dict(UNIT_ENV, **AUTH_ENV)
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    with pytest.raises(entrypoint.ConfigError, match=message):
        entrypoint.auth_from_env(env)


def test_auth_config_file_is_private_and_reads_back_as_mlflow_reads_it(tmp_path, monkeypatch):
    database = entrypoint.database_from_env(UNIT_ENV)
    auth = entrypoint.auth_from_env(dict(UNIT_ENV, **AUTH_ENV))
    path = Path(auth.write_config(database, directory=str(tmp_path)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parser = configparser.ConfigParser()  # as mlflow.server.auth.config reads it: with % interpolation
    parser.read(path)
    assert parser["mlflow"]["database_uri"] == database.uri()
    assert parser["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert parser["mlflow"]["admin_username"] == "admin"
    assert ADMIN_PASSWORD not in path.read_text() and SERVING_PASSWORD not in path.read_text()


# -- integration: a server with basic-auth ----------------------------------------------------------------
@pytest.fixture(scope="module")
def auth_server(postgres, storage_emulator, tmp_path_factory):
    postgres.server.create_database("mlflow_guarded", postgres.user)
    create_bucket(storage_emulator, ARTIFACTS_BUCKET)
    env = mlflow_env(postgres, services.free_port(), storage_emulator, database="mlflow_guarded", **AUTH_ENV)
    if os.environ.get("PYTHONPATH"):  # packages the test run brings along, e.g. the auth extra
        env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    migrated = run_entrypoint("migrate", env)
    assert migrated.returncode == 0, migrated.stderr[-4000:]
    server = serve_mlflow(env, tmp_path_factory.mktemp("mlflow-auth") / "server.log")
    server.migrate = migrated
    yield server
    server.stop()


def call(server, method, path, auth=None, **kwargs):
    return requests.request(method, server.url + path, auth=auth, timeout=30, **kwargs)


ADMIN = ("admin", ADMIN_PASSWORD)
SERVING = ("serving", SERVING_PASSWORD)


@pytest.fixture(scope="module")
def guarded_model(auth_server):
    """MODEL with two versions registered by the admin, champion on version 1."""
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update({"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1]})
    try:
        first = register_churn_model(auth_server.url, MODEL)
        second = register_churn_model(auth_server.url, MODEL, alias=None, invert=True)
        register_churn_model(auth_server.url, MODEL + "-other")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return first, second


def set_alias(server, version, auth):
    return call(server, "POST", API + "/registered-models/alias", auth=auth,
                json={"name": MODEL, "alias": "champion", "version": version})


def champion(server, auth=ADMIN):
    answer = call(server, "GET", API + "/registered-models/alias", auth=auth,
                  params={"name": MODEL, "alias": "champion"})
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]["version"]


def test_anonymous_requests_are_refused(auth_server, guarded_model):
    assert call(auth_server, "GET", "/health").status_code == 200  # probes need no credentials
    for method, path, body in [
            ("GET", API + "/experiments/search?max_results=5", None),
            ("POST", API + "/experiments/create", {"name": "anonymous"}),
            ("POST", API + "/registered-models/alias", {"name": MODEL, "alias": "champion", "version": "2"}),
            ("GET", API + "/registered-models/alias?name=%s&alias=champion" % MODEL, None)]:
        answer = call(auth_server, method, path, json=body)
        assert answer.status_code == 401, (path, answer.status_code, answer.text[:200])
    wrong = call(auth_server, "POST", API + "/registered-models/alias", auth=("admin", "not-the-password-123"),
                 json={"name": MODEL, "alias": "champion", "version": "2"})
    assert wrong.status_code == 401
    assert champion(auth_server) == guarded_model[0].version


def test_the_serving_user_reads_and_loads_the_model_but_cannot_move_its_alias(auth_server, guarded_model, monkeypatch):
    import mlflow
    import pandas as pd

    from tests.apps.conftest import churn_data

    first, second = guarded_model
    assert champion(auth_server, auth=SERVING) == first.version
    refused = set_alias(auth_server, second.version, SERVING)
    assert refused.status_code == 403, refused.text
    for method, path, body in [
            ("DELETE", API + "/registered-models/alias", {"name": MODEL, "alias": "champion"}),
            ("POST", API + "/model-versions/create", {"name": MODEL, "source": "mlflow-artifacts:/x"}),
            ("POST", API + "/registered-models/update", {"name": MODEL, "description": "mine now"}),
            ("GET", API + "/registered-models/get?name=%s-other" % MODEL, None)]:  # not a served model
        answer = call(auth_server, method, path, auth=SERVING, json=body)
        assert answer.status_code == 403, (path, answer.status_code, answer.text[:200])
    assert champion(auth_server) == first.version

    # The client the serving API uses, with the serving user's credentials: the model loads and predicts.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", SERVING[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SERVING[1])
    mlflow.set_tracking_uri(auth_server.url)
    mlflow.set_registry_uri(auth_server.url)
    model = mlflow.pyfunc.load_model("models:/%s@champion" % MODEL)
    frame, _unused = churn_data(rows=5)
    assert len(model.predict(pd.DataFrame(frame))) == 5


def test_the_admin_moves_the_alias(auth_server, guarded_model):
    first, second = guarded_model
    assert set_alias(auth_server, second.version, ADMIN).status_code == 200
    assert champion(auth_server, auth=SERVING) == second.version
    assert set_alias(auth_server, first.version, ADMIN).status_code == 200


def test_a_training_identity_gets_edit_on_the_model_as_the_readme_says(auth_server, guarded_model):
    first, second = guarded_model
    created = call(auth_server, "POST", API + "/users/create", auth=ADMIN,
                   json={"username": "trainer", "password": TRAINER_PASSWORD})
    assert created.status_code == 200, created.text
    trainer = ("trainer", TRAINER_PASSWORD)
    assert set_alias(auth_server, second.version, trainer).status_code == 403  # nothing by default
    # Only the admin (or a user with MANAGE on the model) may grant.
    grant = {"username": "trainer", "resource_type": "registered_model", "resource_id": MODEL, "permission": "EDIT"}
    assert call(auth_server, "POST", "/api/3.0/mlflow/users/permissions/grant", auth=SERVING,
                json=grant).status_code == 403
    granted = call(auth_server, "POST", "/api/3.0/mlflow/users/permissions/grant", auth=ADMIN, json=grant)
    assert granted.status_code == 200, granted.text
    assert set_alias(auth_server, second.version, trainer).status_code == 200
    assert champion(auth_server) == second.version
    assert set_alias(auth_server, first.version, trainer).status_code == 200
    # EDIT on this model is not EDIT on another.
    other = call(auth_server, "POST", API + "/registered-models/alias", auth=trainer,
                 json={"name": MODEL + "-other", "alias": "champion", "version": "1"})
    assert other.status_code == 403


def test_migrate_again_puts_back_the_configured_passwords_and_grants(auth_server, guarded_model):
    # By hand: the serving user gets EDIT on the model and a new password.
    grant = {"username": "serving", "resource_type": "registered_model", "resource_id": MODEL, "permission": "EDIT"}
    assert call(auth_server, "POST", "/api/3.0/mlflow/users/permissions/grant", auth=ADMIN,
                json=grant).status_code in (200, 400)
    assert call(auth_server, "PATCH", API + "/users/update-password", auth=ADMIN,
                json={"username": "serving", "password": "changed-by-hand-0123"}).status_code == 200
    again = run_entrypoint("migrate", auth_server.env)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "auth: admin user admin unchanged" in again.stderr
    assert "auth: serving user serving password reset to the configured one" in again.stderr
    assert call(auth_server, "GET", API + "/registered-models/alias", auth=("serving", "changed-by-hand-0123"),
                params={"name": MODEL, "alias": "champion"}).status_code == 401
    assert set_alias(auth_server, guarded_model[1].version, SERVING).status_code == 403
    third = run_entrypoint("migrate", auth_server.env)
    assert "auth: serving user serving unchanged" in third.stderr


def test_serve_refuses_a_database_whose_auth_tables_are_not_migrated(auth_server, postgres):
    postgres.server.create_database("mlflow_guarded_empty", postgres.user)
    env = dict(auth_server.env, DB_NAME="mlflow_guarded_empty", PORT=str(services.free_port()))
    without_auth = {key: value for key, value in env.items() if key not in AUTH_ENV}
    assert run_entrypoint("migrate", without_auth).returncode == 0  # tracking tables only
    result = run_entrypoint("serve", env)
    assert result.returncode == 3
    assert "the authentication tables are missing" in result.stderr and "migrate" in result.stderr


def test_no_password_in_the_logs_command_lines_or_environment(auth_server):
    texts = [auth_server.log_text(), auth_server.migrate.stderr, auth_server.migrate.stdout]
    secrets = (ADMIN_PASSWORD, SERVING_PASSWORD, DB_PASSWORD, "p%40ss")
    assert not any(secret in text for text in texts for secret in secrets)
    assert "basic authentication on: admin admin, default permission NO_PERMISSIONS" in auth_server.log_text()
    found = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != auth_server.process.pid:
                continue
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
        found += 1
        assert "basic-auth" in cmdline or "uvicorn" in cmdline or "mlflow" in cmdline
        assert ADMIN_PASSWORD not in cmdline + environ and SERVING_PASSWORD not in cmdline + environ
        assert "AUTH_ADMIN_PASSWORD=" not in environ
    assert found


# -- the serving API as the basic-auth server's client, behind Cloud Run's IAM check ----------------------
def test_the_serving_client_puts_the_id_token_in_x_serverless_authorization_when_basic_credentials_are_set():
    from mlflow.tracking.request_header.registry import resolve_request_headers

    from mlops_serving.auth import TOKEN_VARIABLE, IdTokenProvider, MlflowAuth, install_header_provider

    environ = {"MLFLOW_TRACKING_USERNAME": "serving", "MLFLOW_TRACKING_PASSWORD": SERVING_PASSWORD}
    auth = MlflowAuth(IdTokenProvider("aud", fetch=lambda audience: ("tok-1", 4_000_000_000.0)), environ=environ,
                      serverless_header=True)
    install_header_provider(auth)
    try:
        assert "X-Serverless-Authorization" not in resolve_request_headers()  # nothing before the first apply
        auth.apply()
        assert resolve_request_headers()["X-Serverless-Authorization"] == "Bearer tok-1"
        assert TOKEN_VARIABLE not in environ  # Authorization stays MLflow's basic credentials
        auth.clear()
        assert "X-Serverless-Authorization" not in resolve_request_headers()
    finally:
        install_header_provider(None)


@pytest.fixture
def cloud_run_proxy(auth_server, metadata):
    from tests.standins.iam_proxy import BearerProxy

    proxy = BearerProxy(auth_server.url, verify=metadata.verify)
    yield proxy
    proxy.close()


def test_the_serving_app_loads_the_model_with_basic_credentials_behind_cloud_runs_iam_check(
        auth_server, guarded_model, cloud_run_proxy, metadata, predictions_table, bigquery_emulator, tmp_path):
    from tests.apps.conftest import instance
    from tests.apps.test_serving_mlflow_auth import serving_process

    with serving_process(tmp_path, cloud_run_proxy.url, MODEL, predictions_table, bigquery_emulator,
                         MLFLOW_AUTH="google-id-token", MLFLOW_TRACKING_USERNAME=SERVING[0],
                         MLFLOW_TRACKING_PASSWORD=SERVING[1], **metadata.env()) as app:
        from tests.apps.conftest import wait_http

        wait_http(app.url + "/ready", app.process, timeout=120, log=app.log)
        assert app.get("/ready").json()["model_version"] == champion(auth_server)
        response = requests.post(app.url + "/predict", json={"features": instance()}, timeout=30)
        assert response.status_code == 200, response.text
    seen = cloud_run_proxy.snapshot()
    assert seen and all(s.status == 200 for s in seen), [s for s in seen if s.status != 200][:3]
    # Every request: a verified ID token (X-Serverless-Authorization) and MLflow's basic credentials passed on.
    assert all(s.token is not None and s.forwarded == "Basic" for s in seen), seen[:3]
    assert any("/mlflow-artifacts/artifacts" in s.path for s in seen)  # the model download too
    assert {r.query["audience"] for r in metadata.identity_requests()} == {cloud_run_proxy.url}
    text = app.log.read_text()
    assert SERVING_PASSWORD not in text and all(t.token not in text for t in metadata.tokens())
    assert ("requests to MLflow carry the basic credentials of MLflow user serving in Authorization and the ID "
            "token in X-Serverless-Authorization") in app.messages()


def test_a_wrong_serving_password_leaves_the_app_not_ready_with_a_clear_hint(
        auth_server, guarded_model, cloud_run_proxy, metadata, predictions_table, bigquery_emulator, tmp_path):
    from tests.apps.conftest import wait_until
    from tests.apps.test_serving_mlflow_auth import serving_process

    with serving_process(tmp_path, cloud_run_proxy.url, MODEL, predictions_table, bigquery_emulator,
                         MLFLOW_AUTH="google-id-token", MLFLOW_TRACKING_USERNAME="serving",
                         MLFLOW_TRACKING_PASSWORD="not-the-serving-password", **metadata.env()) as app:
        wait_until(app.load_failures, timeout=60, message="the refusal in the log")
        ready = app.get("/ready")
        assert ready.status_code == 503
        assert "MLflow or Cloud Run refused the request with HTTP 401" in ready.json()["detail"]["error"]
    seen = cloud_run_proxy.snapshot()
    # Cloud Run let the requests through (valid ID token); MLflow refused the credentials.
    assert seen and all(s.token is not None and s.forwarded == "Basic" and s.status == 401 for s in seen)
    assert "not-the-serving-password" not in app.log.read_text()
