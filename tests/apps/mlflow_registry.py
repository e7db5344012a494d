"""Helpers of the registry tests (mlflow_model, promote.yml): MLflow's REST API straight, and the collection's
MLflow modules run the way Ansible runs them.

Versions are registered from runs that only hold metrics (no model files): the registry, the aliases and the
run metrics are what these tests are about, and a version needs no artifact to exist.
"""

from __future__ import annotations

import json
import os
import sys
import subprocess
import time

import requests

from tests.apps.conftest import ARTIFACTS_BUCKET, create_bucket, mlflow_env, run_entrypoint, serve_mlflow
from tests.conftest import COLLECTIONS
from tests.standins import services

API = "/api/2.0/mlflow"
EXPERIMENT = "registry-tests"
ADMIN = ("admin", "admin-password-0123456789")
READER = ("serving", "serving-password-0123456789")
GUARDED = "guarded-model"  # the model READER may read


def start_auth_mlflow(postgres, storage_url, directory, database):
    """MLflow with basic-auth as the image runs it, on a database of its own: an admin, and a serving user with
    READ on GUARDED only, which has two versions. Stop it with .stop()."""
    postgres.server.create_database(database, postgres.user)
    create_bucket(storage_url, ARTIFACTS_BUCKET)
    env = mlflow_env(postgres, services.free_port(), storage_url, database=database, BASIC_AUTH="true",
                     AUTH_ADMIN_PASSWORD=ADMIN[1], AUTH_SERVING_USERNAME=READER[0], AUTH_SERVING_PASSWORD=READER[1],
                     AUTH_SERVING_MODELS=GUARDED)
    if os.environ.get("PYTHONPATH"):  # packages the test run brings along, e.g. the auth extra
        env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    migrated = run_entrypoint("migrate", env)
    assert migrated.returncode == 0, migrated.stderr[-4000:]
    server = serve_mlflow(env, directory / "server.log")
    new_version(server.url, GUARDED, {"rmse": 1.0}, auth=ADMIN)
    new_version(server.url, GUARDED, {"rmse": 0.9}, auth=ADMIN)
    return server


def rest(url, method, endpoint, auth=None, **fields):
    """One REST call; fields are the query (GET) or the JSON body. Returns the JSON answer, asserting success."""
    kwargs = {"params": fields} if method == "GET" else {"json": fields}
    answer = requests.request(method, url + API + endpoint, auth=auth, timeout=30, **kwargs)
    assert answer.status_code == 200, (method, endpoint, answer.status_code, answer.text[:500])
    return answer.json()


def experiment_id(url, auth=None):
    answer = requests.get(url + API + "/experiments/get-by-name", params={"experiment_name": EXPERIMENT},
                          auth=auth, timeout=30)
    if answer.status_code == 200:
        return answer.json()["experiment"]["experiment_id"]
    return rest(url, "POST", "/experiments/create", auth=auth, name=EXPERIMENT)["experiment_id"]


def new_version(url, name, metrics=None, auth=None):
    """A run with these metrics, and a new version of model `name` registered from it (the model is created
    when missing). Returns the version number as a string."""
    run = rest(url, "POST", "/runs/create", auth=auth, experiment_id=experiment_id(url, auth),
               start_time=int(time.time() * 1000))["run"]["info"]
    for key, value in (metrics or {}).items():
        rest(url, "POST", "/runs/log-metric", auth=auth, run_id=run["run_id"], key=key, value=value,
             timestamp=int(time.time() * 1000), step=0)
    rest(url, "POST", "/runs/update", auth=auth, run_id=run["run_id"], status="FINISHED")
    if requests.get(url + API + "/registered-models/get", params={"name": name}, auth=auth,
                    timeout=30).status_code == 404:
        rest(url, "POST", "/registered-models/create", auth=auth, name=name)
    version = rest(url, "POST", "/model-versions/create", auth=auth, name=name, run_id=run["run_id"],
                   source=run["artifact_uri"] + "/model")["model_version"]
    return str(version["version"])


def model(url, name, auth=None):
    """The registered model as MLflow returns it, tags and aliases as mappings; None when missing."""
    answer = requests.get(url + API + "/registered-models/get", params={"name": name}, auth=auth, timeout=30)
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    raw = answer.json()["registered_model"]
    return dict(description=raw.get("description", ""),
                tags={t["key"]: t["value"] for t in raw.get("tags") or []},
                aliases={a["alias"]: a["version"] for a in raw.get("aliases") or []})


def version_tags(url, name, version, auth=None):
    raw = rest(url, "GET", "/model-versions/get", auth=auth, name=name, version=version)["model_version"]
    return {t["key"]: t["value"] for t in raw.get("tags") or []}


def run_module(name, args, check=False, diff=True, env=None):
    """Run deployml.mlops.<name> as Ansible does (a new process, JSON in and out); the result with its rc.
    env replaces the process environment's MLFLOW_* variables (none are inherited)."""
    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GCE_METADATA_"))}
    environ.update(env or {}, PYTHONPATH=str(COLLECTIONS))
    environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    proc = subprocess.run([sys.executable, "-m", "ansible_collections.deployml.mlops.plugins.modules." + name],
                          input=json.dumps({"ANSIBLE_MODULE_ARGS": payload}), capture_output=True, text=True,
                          env=environ, timeout=300, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, "module %s printed nothing; stderr:\n%s" % (name, proc.stderr)
    result = json.loads(lines[-1])
    result["rc"] = proc.returncode
    result["output"] = proc.stdout + proc.stderr
    return result
