"""The playbooks and inventories: site.yml converges at the wire, teardown guards protected environments."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
ENVIRONMENTS = ("local", "dev", "staging", "prod")


def group_vars(env):
    return yaml.safe_load((ROOT / "inventories" / env / "group_vars" / "all.yml").read_text())


def playbook(*args):
    proc = subprocess.run([BIN / "ansible-playbook", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    recap = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+).*failed=(\d+)", proc.stdout)
    return proc, (dict(zip(("ok", "changed", "failed"), map(int, recap.groups()))) if recap else None)


def test_environments_differ_only_in_values():
    keys = {env: sorted(group_vars(env)) for env in ENVIRONMENTS}
    assert all(keys[env] == keys["local"] for env in ENVIRONMENTS), keys
    assert group_vars("prod")["mlops_protected"] is True and group_vars("staging")["mlops_protected"] is True
    assert group_vars("local")["mlops_gcp_auth_kind"] == "anonymous"
    assert all(group_vars(env)["mlops_gcp_api_endpoints"] == {} for env in ("dev", "staging", "prod"))


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_teardown_refuses_protected_environments(env):
    proc, recap = playbook("playbooks/teardown.yml", "-i", "inventories/%s" % env)
    assert proc.returncode != 0
    assert "is protected" in proc.stdout and recap["failed"] == 1 and recap["ok"] == 0


def test_site_converges_and_second_run_writes_nothing(bigquery, storage, unique):
    """inventories/local with the endpoints pointed at this test's proxies and its own names."""
    extra = json.dumps({"mlops_gcp_project": "test-project",
                        "mlops_gcp_api_endpoints": {"bigquery": bigquery.url, "storage": storage.url},
                        "mlops_bigquery_dataset": "site_" + unique,
                        "mlops_mlflow_artifacts_bucket": "site-" + unique})
    args = ("site.yml", "-i", "inventories/local", "-e", extra)

    proc, recap = playbook(*args, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap["changed"] == 3 and bigquery.writes() == [] and storage.writes() == []

    proc, recap = playbook(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap["changed"] == 3
    assert len(bigquery.writes()) == 5 and len(storage.writes()) == 1  # dataset + 4 tables, bucket

    bigquery.clear()
    storage.clear()
    proc, recap = playbook(*args, "--diff")
    assert proc.returncode == 0 and recap["changed"] == 0, proc.stdout
    assert bigquery.writes() == [] and storage.writes() == []
    assert len(bigquery.requests) == 5 and len(storage.requests) == 1, "one read per resource"
