"""The built collection: the tarball installs into an empty collections path, docs render, modules run by FQCN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT, ROOT

BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))


def run_ansible(command, collections):
    """Run an ansible command outside the checkout (no ansible.cfg) with only the installed collection."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=collections, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the tarball and install it into an empty collections path; returns that path."""
    build = tmp_path_factory.mktemp("build")
    path = tmp_path_factory.mktemp("collections")
    proc = run_ansible([BIN / "ansible-galaxy", "collection", "build", ROOT, "--output-path", build], path)
    assert proc.returncode == 0, proc.stderr
    tarballs = list(build.glob("deployml-mlops-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    proc = run_ansible([BIN / "ansible-galaxy", "collection", "install", tarballs[0], "-p", path], path)
    assert proc.returncode == 0, proc.stderr
    return path


def test_tarball_leaves_out_development_files(installed):
    root = installed / "ansible_collections" / "deployml" / "mlops"
    assert (root / "MANIFEST.json").exists() and (root / "meta" / "runtime.yml").exists()
    for unwanted in (".venv", ".build", ".local", ".ci", "Makefile"):
        assert not (root / unwanted).exists(), unwanted


@pytest.mark.parametrize("module", MODULES)
def test_module_docs_render(installed, module):
    proc = run_ansible([BIN / "ansible-doc", "-j", "deployml.mlops." + module], installed)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["deployml.mlops." + module]["doc"]
    assert doc["attributes"]["check_mode"]["support"] == "full"
    # The preflight changes nothing, so it has no diff.
    assert doc["attributes"]["diff_mode"]["support"] == ("none" if module == "project_preflight" else "full")
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
