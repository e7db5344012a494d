"""The built collection: the tarball installs into an empty collections path, docs render, modules run by FQCN."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT, ROOT

BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))
# The README's minimal inventory: everything else has a default in roles/common.
MINIMAL_INVENTORY = """\
all:
  vars:
    mlops_gcp_project: test-project
    mlops_gcp_region: europe-west1
"""


def run_ansible(command, collections):
    """Run an ansible command outside the checkout (no ansible.cfg) with only the installed collection."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=collections, check=False)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The collection built as `ansible-galaxy collection build` builds it for Galaxy."""
    build = tmp_path_factory.mktemp("build")
    proc = run_ansible([BIN / "ansible-galaxy", "collection", "build", ROOT, "--output-path", build], build)
    assert proc.returncode == 0, proc.stderr
    tarballs = list(build.glob("deployml-mlops-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    return tarballs[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory, tarball):
    """The tarball installed into an empty collections path; returns that path."""
    path = tmp_path_factory.mktemp("collections")
    proc = run_ansible([BIN / "ansible-galaxy", "collection", "install", tarball, "-p", path], path)
    assert proc.returncode == 0, proc.stderr
    return path


def test_tarball_ships_what_users_need_and_no_development_files(tarball):
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    shipped = {"MANIFEST.json", "FILES.json", "README.md", "COPYING", "meta/runtime.yml", "playbooks/site.yml",
               "roles/common/defaults/main.yml", "inventories/prod/group_vars/all.yml", "requirements.txt",
               "plugins/modules/cloud_run_service.py", "roles/serving/files/mlops_serving/app.py"}
    assert shipped <= names, sorted(shipped - names)
    assert any(name.startswith("tests/unit/") and name.endswith(".py") for name in names)
    unwanted = (".venv", ".build", ".local", ".ci", ".git", "Makefile", "ansible.cfg", "pytest.ini", "benchmarks",
                "extensions", "outputs", "tests/standins", "tests/integration", "tests/apps", "tests/output",
                "requirements-test.lock")
    found = sorted(name for name in names if name.split("/")[0] in unwanted or name.startswith(unwanted))
    assert found == [], found[:20]
    assert not [name for name in names if "__pycache__" in name]


def test_site_plans_from_the_tarball_with_a_minimal_inventory(installed, bigquery, storage, fake_gcp, tmp_path):
    """What a new user does: an inventory with their project and region only, `deployml.mlops.site --check`
    from an empty directory; it plans the whole pipeline (here against the stand-ins) and writes nothing."""
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "inventory.yml").write_text(MINIMAL_INVENTORY)
    endpoints = dict(fake_gcp.endpoints, bigquery=bigquery.url, storage=storage.url)
    stand_ins = json.dumps({"mlops_gcp_auth_kind": "anonymous", "mlops_gcp_api_endpoints": endpoints})
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(installed), PWD=str(workdir))
    proc = subprocess.run([BIN / "ansible-playbook", "deployml.mlops.site", "-i", "inventory.yml", "--check",
                           "-e", stand_ins], capture_output=True, text=True, env=env, cwd=workdir, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr
    recap = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+).*failed=(\d+)", proc.stdout)
    assert int(recap.group(2)) >= 10 and recap.group(3) == "0", proc.stdout[-3000:]
    for step in ("Enable the APIs", "Build the images", "Deploy MLflow", "Deploy the serving API",
                 "Finish deploying Grafana", "Show where everything is"):
        assert "TASK [%s]" % step in proc.stdout, step
    assert [s.writes() for s in (bigquery, storage, fake_gcp)] == [[], [], []], "a check run writes nothing"
    assert sorted(p.name for p in workdir.iterdir()) == ["inventory.yml"], "nor any outputs"


@pytest.mark.parametrize("module", MODULES)
def test_module_docs_render(installed, module):
    proc = run_ansible([BIN / "ansible-doc", "-j", "deployml.mlops." + module], installed)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["deployml.mlops." + module]["doc"]
    assert doc["attributes"]["check_mode"]["support"] == "full"
    # Read-only modules (the preflight, the *_info ones, the comparison of model versions) change nothing, so they
    # have no diff.
    read_only = module in ("project_preflight", "mlflow_model_compare") or module.endswith("_info")
    assert doc["attributes"]["diff_mode"]["support"] == ("none" if read_only else "full")
    if module.startswith("mlflow_"):  # MLflow's REST API, not a Google one: its own connection options
        assert "tracking_uri" in doc["options"] and doc["options"]["password"]["type"] == "str"
    else:
        assert "project" in doc["options"] and doc["options"]["access_token"]["type"] == "str"


def test_module_runs_by_fqcn_with_group_defaults(installed, bigquery, unique, tmp_path):
    """module_defaults for group/deployml.mlops.gcp reach every module of the installed collection."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False, "connection": "local",
        "module_defaults": {"group/deployml.mlops.gcp": {
            "project": PROJECT, "auth_kind": "anonymous", "api_endpoints": {"bigquery": bigquery.url}}},
        "tasks": [{"name": "Dataset", "deployml.mlops.bigquery_dataset": {"dataset_id": "fqcn_" + unique}}],
    }]))
    proc = run_ansible([BIN / "ansible-playbook", "-i", "localhost,", str(playbook),
                        "-e", "ansible_python_interpreter=" + sys.executable], installed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed=1" in proc.stdout
    assert ("POST", "/bigquery/v2/projects/%s/datasets" % PROJECT) in bigquery.writes()


def test_requires_ansible_is_the_version_the_tests_run():
    """The claim in meta/runtime.yml is the locked ansible-core's: a lower one would be untested."""
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    locked = re.search(r"^ansible-core==(\d+\.\d+)\.", (ROOT / "requirements-test.lock").read_text(), re.M)
    assert runtime["requires_ansible"] == ">=%s.0" % locked.group(1)
    for meta in (ROOT / "roles").glob("*/meta/main.yml"):
        assert yaml.safe_load(meta.read_text())["galaxy_info"]["min_ansible_version"] == locked.group(1), meta
