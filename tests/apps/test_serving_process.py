"""The serving API as the image runs it: `python -m mlops_serving` on $PORT, configured by environment,
stopped by SIGTERM (Cloud Run's shutdown), which flushes the prediction log. And the image definitions."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import requests

from tests.apps.conftest import ROOT, instance, table_rows, wait_http
from tests.standins import services

pytestmark = pytest.mark.xdist_group("apps")

SERVING = ROOT / "roles" / "serving" / "files"
MLFLOW = ROOT / "roles" / "mlflow" / "files"


def test_the_module_serves_on_port_and_flushes_on_sigterm(mlflow_server, registered_model, predictions_table,
                                                          bigquery_emulator, tmp_path):
    project, dataset, table = predictions_table.split(".")
    port = services.free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "MODEL_", "LOG_"))}
    env.update({"PYTHONPATH": str(SERVING), "PORT": str(port), "MLFLOW_TRACKING_URI": mlflow_server.url,
                "MODEL_NAME": registered_model.name, "BIGQUERY_PROJECT": project, "BIGQUERY_DATASET": dataset,
                "BIGQUERY_TABLE": table, "BIGQUERY_API_ENDPOINT": bigquery_emulator,
                "LOG_FLUSH_INTERVAL": "300", "LOG_BATCH_SIZE": "500", "HOME": str(tmp_path)})
    log_path = tmp_path / "serving.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "mlops_serving"], env=env, cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = "http://127.0.0.1:%d" % port
    try:
        wait_http(url + "/ready", process, timeout=120, log=log_path)
        assert requests.get(url + "/health", timeout=10).json() == {"status": "ok"}
        acknowledged = []
        for tenure in (1, 30, 60):
            response = requests.post(url + "/predict", json={"features": instance(tenure=tenure)}, timeout=30)
            assert response.status_code == 200, response.text
            acknowledged.append(response.json()["prediction_id"])
        assert table_rows(bigquery_emulator, predictions_table) == []  # queued: the batch waits to fill
        started = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        # A graceful stop: uvicorn finishes, then re-raises the signal it caught, so the exit status is -SIGTERM.
        assert process.wait(30) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 10  # within Cloud Run's grace period
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert sorted(row["prediction_id"] for row in table_rows(bigquery_emulator, predictions_table)) == sorted(acknowledged)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert "prediction log closed: 3 rows written, 0 failed, 0 dropped" in messages
    assert messages[-1].startswith("Finished server process")
    assert any(m.startswith("serving %s version %s" % (registered_model.name, registered_model.version))
               for m in messages)
    assert all(line["severity"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") for line in lines)


def test_a_bad_environment_stops_the_process_with_a_clear_message():
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "MODEL_", "LOG_"))}
    env.update({"PYTHONPATH": str(SERVING), "MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "MODEL_NAME": "churn",
                "BIGQUERY_PROJECT": "p", "LOG_QUEUE_MAX_SIZE": "lots"})
    result = subprocess.run([sys.executable, "-m", "mlops_serving"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "LOG_QUEUE_MAX_SIZE must be an integer, got 'lots'" in result.stderr


# -- the images ----------------------------------------------------------------------------------------
def pins(path):
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[A-Za-z0-9_,.-]+\])?==([0-9][A-Za-z0-9.]*)", line)  # extras allowed
            assert match, "not pinned exactly: %r in %s" % (line, path)
            found[match.group(1)] = match.group(3)
    return found


@pytest.mark.parametrize("directory", [SERVING, MLFLOW], ids=["serving", "mlflow"])
def test_requirements_are_pinned_to_what_the_tests_ran(directory):
    for name, pinned in pins(directory / "requirements.txt").items():
        assert version(name) == pinned, "%s: image pins %s, tests ran %s" % (name, pinned, version(name))


@pytest.mark.parametrize("directory, package, command", [
    (SERVING, "mlops_serving", '["python", "-m", "mlops_serving"]'),
    (MLFLOW, "mlflow_server", '["python", "-m", "mlflow_server.entrypoint"]'),
], ids=["serving", "mlflow"])
def test_dockerfile_runs_the_package_as_a_non_root_user_on_port(directory, package, command):
    dockerfile = (directory / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in dockerfile.splitlines() if line and not line.startswith((" ", "#"))]
    users = [rest.strip() for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0") and int(users[-1]) >= 1000
    assert "ENTRYPOINT %s" % command in dockerfile
    assert "COPY %s/ %s/" % (package, package) in dockerfile and "COPY requirements.lock ." in dockerfile
    assert "PORT=8080" in dockerfile and "HEALTHCHECK" in dockerfile
    assert (directory / package / "__main__.py").exists()


# The base images by exact version: python X.Y.Z on a named Debian release, Grafana X.Y.Z; never a floating tag
# (python:3.11-slim, :latest) that changes under an unchanged content tag.
EXACT_BASE = {"python": r"python:\d+\.\d+\.\d+-slim-[a-z]+", "grafana": r"grafana/grafana:\d+\.\d+\.\d+"}


@pytest.mark.parametrize("directory, base", [
    (SERVING, "python"), (MLFLOW, "python"), (ROOT / "roles" / "monitoring" / "files", "python"),
    (ROOT / "roles" / "grafana" / "files", "grafana"),
], ids=["serving", "mlflow", "monitoring", "grafana"])
def test_dockerfile_base_is_pinned_and_overridable_by_digest(directory, base):
    dockerfile = (directory / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert froms == ["${BASE_IMAGE}"], "one stage, its base from the BASE_IMAGE build argument: %s" % froms
    default = re.search(r"^ARG BASE_IMAGE=(\S+)\s*$", dockerfile, flags=re.MULTILINE)
    assert default and re.fullmatch(EXACT_BASE[base], default.group(1)), "floating base %s" % default


@pytest.mark.parametrize("directory", [SERVING, MLFLOW, ROOT / "roles" / "monitoring" / "files"],
                         ids=["serving", "mlflow", "monitoring"])
def test_dockerfile_installs_only_the_hashed_lock(directory):
    """pip installs requirements.lock with --require-hashes and --no-deps: nothing resolved or unverified."""
    dockerfile = (directory / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^\n\\&]*)", dockerfile)
    assert installs, "no pip install in %s" % directory
    for options in installs:
        words = options.split()
        assert "--require-hashes" in words and "--no-deps" in words, options
        assert words[-2:] == ["-r", "requirements.lock"], options
    assert "COPY requirements.lock ." in dockerfile and "COPY requirements.txt" not in dockerfile


def test_serving_reads_port_and_mlflow_healthcheck_command():
    main = (SERVING / "mlops_serving" / "__main__.py").read_text()
    assert 'env.get("PORT")' in main
    dockerfile = (MLFLOW / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "mlflow_server.entrypoint", "healthcheck"]' in dockerfile
    assert 'CMD ["serve"]' in dockerfile
    assert Path(MLFLOW / "mlflow_server" / "entrypoint.py").exists()
