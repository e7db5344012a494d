"""Shared fixtures: the collection on sys.path, the emulators, recording proxies and a module runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".build" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "deployml" / "mlops"
PROJECT = "test-project"

if not LINK.exists():  # a fresh checkout: make the collection importable by its FQCN
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to(os.path.relpath(ROOT, LINK.parent))
sys.path.insert(0, str(COLLECTIONS))
sys.path.insert(0, str(ROOT))

from tests.standins import services  # noqa: E402
from tests.standins.recorder import RecordingProxy  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def outputs_dir(tmp_path_factory):
    """site.yml writes its outputs (<env>.env/.json) where MLOPS_OUTPUTS_DIR says: a directory per test process
    (a fixture, not an import-time setting, which xdist's workers would inherit from the controller), so tests
    running site.yml on the same inventory in parallel never rewrite each other's file, nor the checkout's."""
    previous = os.environ.get("MLOPS_OUTPUTS_DIR")
    os.environ["MLOPS_OUTPUTS_DIR"] = str(tmp_path_factory.mktemp("outputs"))
    yield Path(os.environ["MLOPS_OUTPUTS_DIR"])
    if previous is None:
        os.environ.pop("MLOPS_OUTPUTS_DIR")
    else:
        os.environ["MLOPS_OUTPUTS_DIR"] = previous


@pytest.fixture(scope="session")
def emulator_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("emulator-logs")


def _emulator(name, logs):
    process, url = services.start(name, services.free_port(), logs / ("%s.log" % name), project=PROJECT)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)  # reaps it: an unreaped child would look alive to services.stop_process
    except subprocess.TimeoutExpired:
        services.stop_process(process.pid, timeout=0)


@pytest.fixture(scope="session")
def bigquery_emulator(emulator_logs):
    yield from _emulator("bigquery", emulator_logs)


@pytest.fixture(scope="session")
def storage_emulator(emulator_logs):
    yield from _emulator("storage", emulator_logs)


@pytest.fixture
def bigquery(bigquery_emulator):
    """A recording proxy in front of the BigQuery emulator, fresh for each test."""
    proxy = RecordingProxy(bigquery_emulator)
    yield proxy
    proxy.close()


@pytest.fixture
def storage(storage_emulator):
    proxy = RecordingProxy(storage_emulator)
    yield proxy
    proxy.close()


@pytest.fixture
def unique():
    """A short unique suffix so tests never share a resource."""
    return uuid.uuid4().hex[:8]


def run_module(name, args, check=False, diff=True, raw=False):
    """Run a collection module the way Ansible does (a new Python process, JSON in and out).

    With raw=True, returns (result, everything the process printed): to prove a secret never appears.
    """
    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    proc = subprocess.run(
        [sys.executable, "-m", "ansible_collections.deployml.mlops.plugins.modules." + name],
        input=json.dumps({"ANSIBLE_MODULE_ARGS": payload}), capture_output=True, text=True, env=env,
        timeout=300, check=False,
    )
    # The module's JSON result is the last line; it exits 1 on failure.
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, "module %s printed nothing; stderr:\n%s" % (name, proc.stderr)
    result = json.loads(lines[-1])
    result["rc"] = proc.returncode
    return (result, proc.stdout + proc.stderr) if raw else result


@pytest.fixture
def gcp_module():
    return run_module


@pytest.fixture(scope="session")
def fake_gcp_server():
    """The fake GCP control plane (tests/standins/fakegcp) on a free port, for the whole session."""
    from tests.standins.fakegcp import FakeGcp

    fake = FakeGcp().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_gcp(fake_gcp_server):
    """The fake with an empty request log, no faults and default operation settings (resources persist)."""
    fake_gcp_server.clear()
    yield fake_gcp_server
    fake_gcp_server.clear()


@pytest.fixture(scope="module")
def private_fake_gcp():
    """A fake of this test module's own, for tests that switch its realism behaviours (see with_realism)."""
    from tests.standins.fakegcp import FakeGcp

    fake = FakeGcp().start()
    yield fake
    fake.stop()


def with_realism(fake, time_scale=1.0, **switches):
    """The fake emptied (resources, operations, principals) with only the given realism switches on."""
    from tests.standins.fakegcp.realism import SWITCHES

    unknown = set(switches) - set(SWITCHES)
    assert not unknown, "unknown realism switches %s" % unknown
    fake.reset()
    fake.realism.set(time_scale=time_scale, **{switch: switches.get(switch, False) for switch in SWITCHES})
    return fake
