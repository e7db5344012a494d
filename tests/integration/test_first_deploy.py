"""The first real deploy: site.yml on inventories/dev against a fake as slow and strict as Google Cloud.

The fake runs with every realism behaviour on (tests/standins/fakegcp/realism.py): operations finish by
(scaled) time from the durations table, APIs start disabled and answer SERVICE_DISABLED for a while after they
are enabled, new service accounts and role grants propagate with a delay, and the deployer is a principal that
holds exactly the roles of playbooks/vars/deployer.yml, needing every permission Google checks (actAs on the
runtime accounts included). The run must converge the first time, change nothing the second time (zero
writes), tear down, and a second deploy right after the teardown must say clearly that the Cloud SQL name is
still reserved.

Figures (wall time of each run, requests per resource on the no-op run) are printed: `pytest -s` shows them.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
PROJECT = "test-project"
# 1 s of Google Cloud time is 20 ms here: a 10-minute Cloud SQL create takes 12 s.
TIME_SCALE = 0.02
DEPLOYER = "user:deployer@example.com"
# The one bootstrap step a new project needs before the first run (README, "On Google Cloud"): the preflight
# reads the project, its permissions and its billing through APIs a new project does not have enabled.
BOOTSTRAP_SERVICES = ["cloudresourcemanager.googleapis.com", "cloudbilling.googleapis.com"]


def deployer_roles():
    return sorted(yaml.safe_load((ROOT / "playbooks" / "vars" / "deployer.yml").read_text())["deployer_roles"])


def playbook(*args, token):
    env = dict(os.environ, GCP_ACCESS_TOKEN=token)
    started = time.monotonic()
    proc = subprocess.run([BIN / "ansible-playbook", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200, check=False, env=env)
    recap = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+).*failed=(\d+)", proc.stdout)
    counts = dict(zip(("ok", "changed", "failed"), map(int, recap.groups()))) if recap else None
    return proc, counts, time.monotonic() - started


@pytest.fixture
def realistic_gcp(storage):
    from tests.standins.fakegcp import FakeGcp

    fake = FakeGcp(realism=True, time_scale=TIME_SCALE).start()
    fake.apis["cloudbuild"].storage_url = storage.url  # builds check that their uploaded source exists
    fake.apis["serviceusage"].enable_now(PROJECT, BOOTSTRAP_SERVICES)
    yield fake
    fake.stop()


def resource_of(call):
    """The resource a request is about: its path without the API version, operation ids and method suffix."""
    path = re.sub(r"^/(v[0-9][a-z0-9]*|sql/v1beta4)/", "/", call.path.split("?")[0])
    return call.api + re.sub(r":[A-Za-z]+$", "", path)


def extra_vars(fake, bigquery, storage, unique):
    units = ("mlflow", "serving", "grafana", "monitoring", "build", "scheduler")
    return json.dumps({
        "mlops_gcp_project": PROJECT, "mlops_gcp_auth_kind": "accesstoken",
        "mlops_gcp_api_endpoints": dict(fake.endpoints, bigquery=bigquery.url, storage=storage.url),
        "mlops_bigquery_dataset": "first_" + unique, "mlops_mlflow_artifacts_bucket": "first-" + unique,
        "mlops_build_source_bucket": "src-" + unique, "mlops_artifact_registry_repository": "repo-" + unique,
        "mlops_cloudsql_instance": "pg-" + unique,
        "mlops_service_accounts": {unit: "%s-%s" % (unit[:4], unique) for unit in units},
    })


def test_first_deploy_converges_as_a_least_privilege_deployer(realistic_gcp, bigquery, storage, unique, monkeypatch):
    from tests.standins.fakegcp.durations import DURATIONS

    # Builds long enough at this time scale (20 s) that four started one after another would not overlap, even
    # with Ansible's own time (not scaled) between their starts on a loaded machine.
    monkeypatch.setitem(DURATIONS, "cloudbuild.build", 1000)
    fake = realistic_gcp
    extra = extra_vars(fake, bigquery, storage, unique)
    args = ("site.yml", "-i", "inventories/dev", "-e", extra)
    roles = deployer_roles()
    stand_ins = (bigquery, storage, fake)

    # One role short: the preflight says which, before any change.
    fake.add_principal("short-" + unique, "user:short@example.com", roles=[r for r in roles if r != "roles/run.admin"])
    proc, recap, _seconds = playbook(*args, token="short-" + unique)
    assert proc.returncode != 0 and recap["changed"] == 0, proc.stdout
    assert "roles/run.admin" in proc.stdout and "run.services.create" in proc.stdout, proc.stdout
    assert "Stand up the MLOps pipeline" not in proc.stdout, "it failed in the preflight, not halfway"
    assert not any(s.writes() for s in stand_ins)

    fake.add_principal("deployer-" + unique, DEPLOYER, roles=roles)
    token = "deployer-" + unique
    proc, recap, first = playbook(*args, token=token)
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr
    assert recap["failed"] == 0 and recap["changed"] >= 30, recap
    run = "%s/v2/projects/%s/locations/europe-west1" % (fake.endpoints["run"], PROJECT)
    services = {name: requests.get("%s/services/%s" % (run, name), timeout=10).json()
                for name in ("mlflow", "serving", "grafana")}
    assert all(s["terminalCondition"]["state"] == "CONDITION_SUCCEEDED" for s in services.values()), services
    timeline = fake.operations.timeline()
    operations_sum = sum(op["end"] - op["start"] for op in timeline if op["end"] is not None)
    # The long operations overlap (site.yml): the Cloud SQL instance is created from before the builds start
    # (at this time scale it may be done before they end: Ansible's own time is not scaled), and the four
    # builds run at the same time. benchmarks/deploy_time.py measures the overlap at Google Cloud's pace.
    (instance,) = [op for op in timeline if op["kind"] == "sql.instance.create"]
    builds = [op for op in timeline if op["kind"] == "cloudbuild.build"]
    assert len(builds) == 4 and instance["start"] < min(build["start"] for build in builds), timeline
    assert max(b["start"] for b in builds) < min(b["end"] for b in builds), "the builds ran one after another: %s" % builds

    for stand_in in stand_ins:
        stand_in.clear()
    proc, recap, noop = playbook(*args, "--diff", token=token)
    assert proc.returncode == 0 and recap["changed"] == 0, proc.stdout[-20000:]
    assert not any(s.writes() for s in stand_ins), [s.writes() for s in stand_ins]
    per_resource = collections.Counter(resource_of(c) for c in fake.requests)
    # Reads only, and a bounded number: the project's policy once per grant task, the instance once per
    # Cloud SQL task; no operation is polled when nothing changes.
    assert not fake.calls(path=r"/operations/"), fake.calls(path=r"/operations/")
    assert max(per_resource.values()) <= 8, per_resource.most_common(5)

    proc, recap, teardown = playbook("playbooks/teardown.yml", "-i", "inventories/dev", "-e", extra,
                                     "-e", "mlops_teardown_confirm=" + PROJECT, token=token)
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr
    assert requests.get("%s/services/serving" % run, timeout=10).status_code == 404

    proc, recap, again = playbook(*args, token=token)
    assert proc.returncode != 0
    assert "pg-%s" % unique in proc.stdout and "mlops_cloudsql_instance" in proc.stdout, proc.stdout[-5000:]

    print("\nfirst deploy against the realistic fake (time scale %s): %.1f s wall; %d operations, %.1f s of "
          "operations in all; no-op re-run %.1f s, %d requests, at most %d per resource; teardown %.1f s; "
          "redeploy after teardown fails in %.1f s" % (
              TIME_SCALE, first, len(timeline), operations_sum, noop, sum(per_resource.values()),
              max(per_resource.values()), teardown, again))
    for resource, count in sorted(per_resource.items()):
        print("  %3d  %s" % (count, resource))


def test_a_deploy_interrupted_while_the_long_operations_run_converges(
        realistic_gcp, bigquery, storage, unique, monkeypatch):
    """Ctrl-C (here SIGKILL of the whole controller) while the instance is created and the images build: the
    background modules go on, and the next run converges without a second instance or a second build."""
    from tests.standins.fakegcp.durations import DURATIONS

    # An instance that takes long enough, at this time scale, to still be in creation while the images build.
    monkeypatch.setitem(DURATIONS, "sql.instance.create", 3000)
    fake = realistic_gcp
    fake.add_principal("deployer-" + unique, DEPLOYER, roles=deployer_roles())
    args = ("site.yml", "-i", "inventories/dev", "-e", extra_vars(fake, bigquery, storage, unique))
    env = dict(os.environ, GCP_ACCESS_TOKEN="deployer-" + unique)
    controller = subprocess.Popen([BIN / "ansible-playbook", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not any(op["kind"] == "cloudbuild.build" and op["end"] is None for op in fake.operations.timeline()):
            assert controller.poll() is None and time.monotonic() < deadline, "no build started"
            time.sleep(0.2)
    finally:
        os.killpg(controller.pid, 9)
        controller.wait()
    running = [op["kind"] for op in fake.operations.timeline() if op["end"] is None]
    assert "sql.instance.create" in running and "cloudbuild.build" in running, running

    proc, recap, _seconds = playbook(*args, token="deployer-" + unique)
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr
    started = collections.Counter(op["kind"] for op in fake.operations.timeline())
    assert started["sql.instance.create"] == 1 and started["cloudbuild.build"] == 4, started
    proc, recap, _seconds = playbook(*args, token="deployer-" + unique)
    assert proc.returncode == 0 and recap["changed"] == 0, proc.stdout[-20000:]
