"""The serving role sizes memory and concurrency together: its check (the task in roles/serving/tasks/main.yml,
run by ansible-playbook as it is written there) refuses a memory limit that concurrent requests of the largest
body could exhaust, and the deploy passes the body limit to the service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.apps.conftest import ROOT

pytestmark = pytest.mark.xdist_group("apps")

TASKS = yaml.safe_load((ROOT / "roles" / "serving" / "tasks" / "main.yml").read_text())
CHECK = "Check that the serving instance's memory holds its concurrent requests"
DEFAULTS = ROOT / "roles" / "serving" / "defaults" / "main.yml"


def task(name):
    return next(t for t in TASKS if t["name"] == name)


def run_check(tmp_path, **overrides):
    play = [{"hosts": "localhost", "gather_facts": False, "vars_files": [str(DEFAULTS)], "tasks": [task(CHECK)]}]
    path = tmp_path / "check.yml"
    path.write_text(yaml.safe_dump(play))
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path)]
    if overrides:
        command += ["-e", json.dumps(overrides)]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("overrides, fits", [
    ({}, True),                                                                   # 300 + 16 x 30 = 780 <= 819
    ({"serving_concurrency": 80}, False),                                          # the old default: 2700 MiB
    ({"serving_concurrency": 80, "serving_memory": "4Gi"}, True),                  # 2700 <= 3277
    ({"serving_concurrency": 80, "serving_max_body_bytes": 262144}, False),        # 900 > 819
    ({"serving_concurrency": 60, "serving_max_body_bytes": 262144}, True),         # 750 <= 819
    ({"serving_memory": "1G"}, False),                                             # 953 MiB: 780 > 763
    ({"serving_memory": "2048Mi", "serving_memory_baseline_mib": 1200}, False),    # a big model: 1680 > 1638
    ({"serving_memory": "lots"}, False),
], ids=["defaults", "concurrency-80", "80-with-4Gi", "80-with-256KiB", "60-with-256KiB", "1G", "big-model",
        "bad-unit"])
def test_memory_must_hold_concurrency_times_the_largest_body(tmp_path, overrides, fits):
    result = run_check(tmp_path, **overrides)
    assert (result.returncode == 0) == fits, result.stdout[-3000:] + result.stderr[-2000:]
    if not fits:
        assert "is too small for serving_concurrency" in result.stdout, result.stdout[-3000:]


def test_the_failure_says_what_to_change(tmp_path):
    result = run_check(tmp_path, serving_concurrency=80)
    assert "300 MiB + 80 x 1048576 bytes x 30 needs 2700.0 MiB" in result.stdout, result.stdout[-3000:]
    assert "Raise serving_memory, or lower serving_concurrency or serving_max_body_bytes" in result.stdout


def test_the_deploy_passes_the_body_limit_and_checks_first():
    names = [t["name"] for t in TASKS]
    deploy = task("Deploy the serving API")
    assert names.index(CHECK) < names.index("Deploy the serving API")
    assert deploy["deployml.mlops.cloud_run_service"]["env"]["MAX_BODY_BYTES"] == "{{ serving_max_body_bytes }}"
