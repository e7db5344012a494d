"""Start and stop the local stand-ins for Google APIs: the BigQuery and Cloud Storage emulators.

Used by the pytest fixtures (ephemeral ports) and by `make local` / `make test` (fixed ports, pid and log
files in a state directory):

    python -m tests.standins.services start --dir .local    # prints the endpoints
    python -m tests.standins.services summary               # what the pipeline created in them
    python -m tests.standins.services run --dir .local -- molecule test   # start if needed, run, restore
    python -m tests.standins.services stop --dir .local
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORTS = {"bigquery": 9050, "storage": 9023}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_duckdb_spatial():
    """bqemulator loads DuckDB's spatial extension; offline it must come from the PyPI package."""
    import duckdb
    import duckdb_extension_spatial

    version = "v" + duckdb.__version__
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
    source = Path(duckdb_extension_spatial.__file__).parent / "extensions" / version / "spatial.duckdb_extension"
    target = Path.home() / ".duckdb" / "extensions" / version / ("linux_" + arch) / "spatial.duckdb_extension"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def command(name, port, project):
    if name == "bigquery":
        ensure_duckdb_spatial()
        return [sys.executable, "-m", "tests.standins.bigquery_emulator", "start", "--rest-port", str(port), "--grpc-port", str(free_port()),
                "--project", project, "--log-level", "warning"]
    return [sys.executable, "-m", "tests.standins.storage_emulator", "--port", str(port)]


def ready_url(name, url):
    return url + ("/bigquery/v2/projects/ready-check/datasets" if name == "bigquery" else "/storage/v1/b")


def wait_ready(name, url, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError("%s emulator exited with code %s" % (name, process.returncode))
        try:
            if requests.get(ready_url(name, url), timeout=2).status_code < 500:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError("%s emulator not ready at %s after %ss" % (name, url, timeout))


def port_in_use(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(name, port, log_path, project="local-project"):
    """Start one emulator in the background; returns (process, url) once it answers."""
    if port_in_use(port):  # else another server would answer the readiness check in its place
        raise RuntimeError("cannot start the %s emulator: port %d is taken by another process "
                           "(stop it, e.g. `make local-stop`)" % (name, port))
    log = open(log_path, "ab")  # pylint: disable=consider-using-with
    process = subprocess.Popen(command(name, port, project), stdout=log, stderr=subprocess.STDOUT,
                               cwd=ROOT, start_new_session=True)
    url = "http://127.0.0.1:%d" % port
    try:
        wait_ready(name, url, process)
    except RuntimeError:
        stop_process(process.pid)
        raise RuntimeError("%s emulator failed to start; see %s" % (name, log_path)) from None
    return process, url


def stop_process(pid, timeout=10):
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)


def cli_start(state_dir, project):
    """Start the emulators that are not running yet; returns the names of those it started."""
    state_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for name, port in DEFAULT_PORTS.items():
        pid_file = state_dir / ("%s.pid" % name)
        url = "http://127.0.0.1:%d" % port
        if pid_file.exists():
            try:
                wait_ready(name, url, None, timeout=2)
                print("%s emulator already running at %s" % (name, url))
                continue
            except RuntimeError:
                pid_file.unlink()
        process, url = start(name, port, state_dir / ("%s.log" % name), project)
        pid_file.write_text(str(process.pid))
        started.append(name)
        print("%s emulator running at %s (pid %d, log %s)" % (name, url, process.pid, state_dir / ("%s.log" % name)))
    return started


def cli_stop(state_dir, names=tuple(DEFAULT_PORTS)):
    for name in names:
        pid_file = state_dir / ("%s.pid" % name)
        if pid_file.exists():
            stop_process(int(pid_file.read_text()))
            pid_file.unlink()
            print("%s emulator stopped" % name)


def cli_summary(project):
    """Print the datasets, tables and buckets the emulators hold for the project."""
    bigquery = "http://127.0.0.1:%d/bigquery/v2/projects/%s/datasets" % (DEFAULT_PORTS["bigquery"], project)
    for dataset in requests.get(bigquery, timeout=10).json().get("datasets", []):
        dataset_id = dataset["datasetReference"]["datasetId"]
        print("BigQuery dataset %s.%s" % (project, dataset_id))
        tables = requests.get("%s/%s/tables" % (bigquery, dataset_id), timeout=10).json().get("tables", [])
        for listed in tables:
            table = requests.get("%s/%s/tables/%s" % (bigquery, dataset_id, listed["tableReference"]["tableId"]),
                                 timeout=10).json()
            partitioning = table.get("timePartitioning", {})
            print("  table %-18s %2d columns, partitioned by %s on %s, clustered by %s" % (
                table["tableReference"]["tableId"], len(table["schema"]["fields"]), partitioning.get("type", "-"),
                partitioning.get("field", "-"), ", ".join(table.get("clustering", {}).get("fields", [])) or "-"))
    storage = "http://127.0.0.1:%d/storage/v1/b" % DEFAULT_PORTS["storage"]
    for bucket in requests.get(storage, params={"project": project}, timeout=10).json().get("items", []):
        print("Cloud Storage bucket gs://%s (%s, versioning %s, public access prevention %s)" % (
            bucket["name"], bucket.get("location"), "on" if bucket.get("versioning", {}).get("enabled") else "off",
            bucket.get("iamConfiguration", {}).get("publicAccessPrevention", "-")))


def main():
    parser = argparse.ArgumentParser(description="local stand-ins for Google APIs")
    parser.add_argument("action", choices=["start", "stop", "summary", "run"])
    parser.add_argument("--dir", default=".local", type=Path, help="pid and log files")
    parser.add_argument("--project", default="local-project")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)  # with run: the command follows --
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1:]
    try:
        run_action(args)
    except RuntimeError as exc:
        sys.exit(str(exc))


def run_action(args):
    if args.action == "start":
        cli_start(args.dir, args.project)
    elif args.action == "stop":
        cli_stop(args.dir)
    elif args.action == "summary":
        cli_summary(args.project)
    else:
        started = cli_start(args.dir, args.project)
        try:
            code = subprocess.call(args.command)
        finally:
            cli_stop(args.dir, started)
        sys.exit(code)


if __name__ == "__main__":
    main()
