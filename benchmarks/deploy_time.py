"""How long site.yml takes against a fake as slow as Google Cloud, and how close that is to the critical path.

Runs `site.yml -i inventories/dev` against the realistic fake (tests/standins/fakegcp/realism.py: every
operation takes its time from the durations table, APIs and grants propagate, the deployer holds exactly the
roles of playbooks/vars/deployer.yml) with the table scaled by --time-scale, plus the BigQuery and Cloud
Storage emulators. Two cases:

- from scratch: an empty project (but for the two bootstrap APIs the README asks for) to a serving pipeline;
- three images changed: the same pipeline again after three images' sources changed (their base images pinned
  by digest, which is part of each image's content tag), so three builds and the rollouts that follow them.

For each case it prints the wall time, every operation the fake ran (start and end), the sum of their durations
and the critical path: the longest chain of operations where each waits for what it needs (DEPENDS_ON below).
All figures are in seconds of Google Cloud time (real seconds / time scale). The last line is
`wall_over_critical_path: X` for the from-scratch case. Prints figures; asserts nothing about time.

    .venv/bin/python -m benchmarks.deploy_time                    # the table as it is: about 20 minutes
    .venv/bin/python -m benchmarks.deploy_time --time-scale 0.2   # quicker; Ansible's own time then weighs more
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.standins import services  # noqa: E402  pylint: disable=wrong-import-position
from tests.standins.fakegcp import FakeGcp  # noqa: E402  pylint: disable=wrong-import-position
from tests.standins.fakegcp.durations import DURATIONS  # noqa: E402  pylint: disable=wrong-import-position

BIN = Path(sys.executable).parent
PROJECT = "bench-project"
REGION = "europe-west1"
TOKEN = "bench-deployer"
BOOTSTRAP_SERVICES = ["cloudresourcemanager.googleapis.com", "cloudbilling.googleapis.com"]
CHANGED_IMAGES = ("mlflow-server", "serving", "grafana")
# What each operation waits for, by the pipeline's data flow: a row's operation cannot start before every
# operation matching one of its (kind, target pattern) pairs has ended. Targets are matched as regular
# expressions on the operation's resource name; "*" stands for any target.
BUILD = ("cloudbuild.build", "*")
DATABASE = [("sql.database", "*"), ("sql.user", "*")]
DEPENDS_ON = [
    # (kind, target) of the dependent operation -> what it needs
    (("*", "*"), [("serviceusage.enable", "*")]),  # every API call needs the APIs enabled
    (("sql.database", "*"), [("sql.instance.create", "*")]),
    (("sql.user", "*"), [("sql.instance.create", "*")]),
    (("cloudbuild.build", "*"), [("artifactregistry.repository.create", "*")]),
    (("run.job.create", "*"), [BUILD]),
    (("run.job.update", "*"), [BUILD]),
    # The migration job and the database setup job run in the database with their image.
    (("run.job.execution", "/jobs/mlflow-migrate/"), DATABASE + [BUILD, ("run.job.create", "*")]),
    (("run.job.execution", "/jobs/grafana-db-setup/"), DATABASE + [BUILD, ("run.job.create", "*")]),
    # MLflow's server after its migration; the serving API calls MLflow (its URL); Grafana after its setup job.
    (("run.service.rollout", "/services/mlflow$"), [("run.job.execution", "/jobs/mlflow-migrate/"), BUILD]),
    (("run.service.rollout", "/services/serving$"), [("run.service.rollout", "/services/mlflow$"), BUILD]),
    (("run.service.rollout", "/services/grafana$"), [("run.job.execution", "/jobs/grafana-db-setup/"), BUILD]),
]


def matches(operation, kind, target):
    return kind in ("*", operation["kind"]) and (target == "*" or re.search(target, operation["target"] or ""))


def needs(operation, timeline):
    """The operations of the run this one waits for (ended before it started, by DEPENDS_ON)."""
    found = []
    for (kind, target), requirements in DEPENDS_ON:
        if not matches(operation, kind, target):
            continue
        for required_kind, required_target in requirements:
            found += [other for other in timeline if other is not operation and other["end"] is not None
                      and matches(other, required_kind, required_target) and other["end"] <= operation["start"]
                      and not matches(operation, required_kind, required_target)]
    return found


def critical_path(timeline, propagation):
    """Length and chain of the longest path of operations through DEPENDS_ON, in the timeline's seconds.

    An API is usable `propagation` seconds after its enable operation ends (Google's own propagation delay,
    not time the playbook could save), so that wait counts as part of an enable operation."""
    finish, chain = {}, {}
    for operation in sorted(timeline, key=lambda op: op["start"]):
        duration = operation["end"] - operation["start"]
        if operation["kind"] == "serviceusage.enable":
            duration += propagation
        before = max(needs(operation, timeline), key=lambda op: finish[op["name"]], default=None)
        finish[operation["name"]] = duration + (finish[before["name"]] if before else 0.0)
        chain[operation["name"]] = (chain[before["name"]] if before else []) + [operation]
    last = max(timeline, key=lambda op: finish[op["name"]])
    return finish[last["name"]], chain[last["name"]]


def playbook(extra, *args):
    env = dict(os.environ, GCP_ACCESS_TOKEN=TOKEN)
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-i", "inventories/dev", "-e", json.dumps(extra),
                           *args], cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError("site.yml failed:\n%s\n%s" % (proc.stdout[-6000:], proc.stderr[-2000:]))
    return time.monotonic() - started


def report(label, fake, wall, since, scale):
    timeline = [dict(op) for op in fake.operations.timeline() if op["start"] >= since and op["end"] is not None]
    for operation in timeline:
        operation["start"], operation["end"] = ((operation["start"] - since) / scale, (operation["end"] - since) / scale)
    total = sum(op["end"] - op["start"] for op in timeline)
    length, chain = critical_path(timeline, DURATIONS["serviceusage.propagation"])
    print("\n== %s" % label)
    print("%8s %8s  %-28s %s" % ("start", "end", "operation", "target"))
    for operation in timeline:
        print("%8.0f %8.0f  %-28s %s" % (operation["start"], operation["end"], operation["kind"],
                                         re.sub(r"^projects/[^/]+/(locations/[^/]+/)?", "", operation["target"] or "")))
    steps = ["%s %s (%.0f s)" % (op["kind"], (op["target"] or "").rsplit("/", 1)[-1], op["end"] - op["start"])
             for op in chain]
    print("critical path: %s" % " -> ".join(steps))
    wall = wall / scale
    print("wall time: %.0f s   operations: %d, %.0f s in all   critical path: %.0f s   wall/critical path: %.2f"
          "   wall/sum: %.2f" % (wall, len(timeline), total, length, wall / length, wall / total))
    return wall / length


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="real seconds per second of the durations table (default 1: Google Cloud's pace)")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    processes, fake = [], None
    try:
        endpoints = {}
        for api in ("bigquery", "storage"):
            process, endpoints[api] = services.start(api, services.free_port(), logs / (api + ".log"), PROJECT)
            processes.append(process)
        fake = FakeGcp(realism=True, time_scale=args.time_scale).start()
        fake.apis["cloudbuild"].storage_url = endpoints["storage"]
        fake.apis["serviceusage"].enable_now(PROJECT, BOOTSTRAP_SERVICES)
        roles = yaml.safe_load((ROOT / "playbooks" / "vars" / "deployer.yml").read_text())["deployer_roles"]
        fake.add_principal(TOKEN, "user:deployer@example.com", roles=sorted(roles))
        extra = {"mlops_gcp_project": PROJECT, "mlops_gcp_auth_kind": "accesstoken",
                 "mlops_gcp_api_endpoints": dict(fake.endpoints, **endpoints)}

        since = fake.realism.now()
        wall = playbook(extra)
        from_scratch = report("from scratch (time scale %s)" % args.time_scale, fake, wall, since, args.time_scale)

        # A new base image for three images: three new content tags, so three builds and their rollouts.
        extra["mlops_base_images"] = {image: "python@sha256:%064x" % number for number, image in enumerate(CHANGED_IMAGES, 1)}
        extra["mlops_base_images"]["grafana"] = "grafana/grafana@sha256:%064x" % 9
        since = fake.realism.now()
        wall = playbook(extra)
        report("three images changed: %s" % ", ".join(CHANGED_IMAGES), fake, wall, since, args.time_scale)
        print("wall_over_critical_path: %.2f" % from_scratch)
    finally:
        if fake is not None:
            fake.stop()
        for process in processes:
            services.stop_process(process.pid)


if __name__ == "__main__":
    main()
