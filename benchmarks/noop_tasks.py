"""How long a no-op run of each module takes, and a whole no-op `site.yml` run, against the emulators.

Prints figures; asserts nothing about time. Run from the repository root:

    .venv/bin/python -m benchmarks.noop_tasks [--runs 10]

A no-op run is the steady state of `ansible-playbook site.yml`: every module reads its resource once,
finds nothing to change and writes nothing. Per module, the time is one module process (Python start,
imports, argument parsing, auth session, one GET); per playbook, Ansible's own per-task work adds to it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.standins import services  # noqa: E402  pylint: disable=wrong-import-position

BIN = Path(sys.executable).parent
PROJECT = "bench-project"


def timed(command, env=None):
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError("%s failed:\n%s%s" % (command[0], proc.stdout[-2000:], proc.stderr[-2000:]))
    return elapsed, proc.stdout


def module_run(name, args):
    payload = json.dumps({"ANSIBLE_MODULE_ARGS": args})
    env = dict(os.environ, PYTHONPATH=str(ROOT / ".build" / "collections"))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ansible_collections.deployml.mlops.plugins.modules." + name],
                          input=payload, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("changed") or result.get("failed"):
        raise RuntimeError("%s was not a no-op: %s" % (name, result.get("msg") or result.get("changed_fields")))
    return elapsed


def summary(label, seconds):
    ms = sorted(s * 1000 for s in seconds)
    print("%-34s median %6.0f ms   min %6.0f ms   max %6.0f ms   (n=%d)"
          % (label, statistics.median(ms), ms[0], ms[-1], len(ms)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    processes = []
    try:
        endpoints = {}
        for api in ("bigquery", "storage"):
            process, endpoints[api] = services.start(api, services.free_port(), logs / (api + ".log"), PROJECT)
            processes.append(process)
        extra = json.dumps({"mlops_gcp_project": PROJECT, "mlops_gcp_api_endpoints": endpoints})
        playbook = [str(BIN / "ansible-playbook"), "site.yml", "-i", "inventories/local", "-e", extra]
        first = timed(playbook)[0]
        print("first site.yml run (creates everything): %.1f s" % first)

        common = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=endpoints)
        cases = {
            "bigquery_dataset": dict(common, dataset_id="mlops"),
            "bigquery_table": dict(common, dataset_id="mlops", table_id="drift_metrics"),
            "gcs_bucket": dict(common, name=PROJECT + "-mlflow-artifacts"),
        }
        for name, module_args in cases.items():
            summary(name + " no-op (process)", [module_run(name, module_args) for run in range(args.runs)])

        runs = []
        for run in range(max(3, args.runs // 3)):
            elapsed, out = timed(playbook)
            if "changed=0" not in out:
                raise RuntimeError("site.yml run %d changed something:\n%s" % (run, out[-1000:]))
            runs.append(elapsed)
        summary("site.yml no-op (whole playbook)", runs)
        tasks = 6  # module executions: dataset, 4 tables, bucket
        print("site.yml no-op per module task: %.0f ms (median playbook time / %d module executions)"
              % (statistics.median(runs) * 1000 / tasks, tasks))
    finally:
        for process in processes:
            services.stop_process(process.pid)


if __name__ == "__main__":
    main()
