"""Modules against a fake whose operations take (scaled) Google Cloud time: they wait and converge.

The fake has only fake.realism.timed_operations on: an operation finishes once its duration from
tests/standins/fakegcp/durations.py, times the time scale, has passed, however often it is polled. The modules
run as processes (gcp_module) and must wait by polling with backoff within their timeout, and say that an
operation goes on in Google Cloud when the timeout runs out first.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import PROJECT, with_realism
from tests.standins.fakegcp.durations import DURATIONS

REGION = "europe-west1"
SQL = dict(region=REGION, database_version="POSTGRES_16", edition="ENTERPRISE", tier="db-custom-1-3840")
IMAGE = "europe-west1-docker.pkg.dev/%s/mlops/app:1" % PROJECT


@pytest.fixture
def timed(private_fake_gcp):
    """The fake with only timed operations on, emptied; a test sets the time scale it needs."""
    return with_realism(private_fake_gcp, timed_operations=True)


def module_args(fake, **options):
    return dict(dict(project=PROJECT, auth_kind="anonymous", api_endpoints=fake.endpoints), **options)


def writes(fake):
    return [(c.method, c.path) for c in fake.writes()]


def seconds_of(fake, kind):
    return fake.realism.seconds(DURATIONS[kind])


def test_cloud_sql_instance_waits_for_a_create_by_time_and_converges(timed, gcp_module, unique):
    timed.realism.time_scale = 0.002  # a create: 660 s of Google time, 1.3 s here
    args = module_args(timed, name="pg-" + unique, timeout=60, **SQL)
    began = time.monotonic()
    created = gcp_module("cloud_sql_instance", args)
    assert created["rc"] == 0 and created["changed"] is True, created
    assert time.monotonic() - began >= seconds_of(timed, "sql.instance.create")
    assert created["instance"]["state"] == "RUNNABLE"
    assert len(timed.calls("GET", r"sqladmin/.*/operations/")) >= 2, "polled while it ran"
    assert [row["kind"] for row in timed.operations.timeline()] == ["sql.instance.create"]
    timed.clear()
    again = gcp_module("cloud_sql_instance", args)
    assert again["rc"] == 0 and again["changed"] is False and timed.writes() == []
    assert gcp_module("cloud_sql_instance", dict(args, deletion_protection=False))["rc"] == 0
    assert gcp_module("cloud_sql_instance", dict(args, state="absent"))["rc"] == 0


def test_a_timeout_leaves_the_create_going_and_a_rerun_converges(timed, gcp_module, unique):
    timed.realism.time_scale = 0.003  # a create: 2 s here, longer than a 1 s timeout
    args = module_args(timed, name="pg-" + unique, **SQL)
    first = gcp_module("cloud_sql_instance", dict(args, timeout=1))
    assert first["rc"] == 1, first
    assert "goes on in Google Cloud, run again to converge" in first["msg"] and first["status"] is None
    second = gcp_module("cloud_sql_instance", dict(args, timeout=60))
    assert second["rc"] == 0 and second["instance"]["state"] == "RUNNABLE", second
    assert len(timed.calls("POST", r"sqladmin/.*/instances$")) == 1, "the re-run waited for the first create"


def test_cloud_run_service_waits_for_its_rollout(timed, gcp_module, unique):
    timed.realism.time_scale = 0.05  # a rollout: 30 s of Google time, 1.5 s here
    args = module_args(timed, name="svc-" + unique, location=REGION, image=IMAGE, timeout=30)
    began = time.monotonic()
    created = gcp_module("cloud_run_service", args)
    assert created["rc"] == 0 and created["changed"] is True, created
    assert time.monotonic() - began >= seconds_of(timed, "run.service.rollout")
    service = requests.get("%s/run/v2/projects/%s/locations/%s/services/svc-%s" % (timed.url, PROJECT, REGION, unique),
                           timeout=10).json()
    assert service["terminalCondition"]["state"] == "CONDITION_SUCCEEDED" and "reconciling" not in service
    timed.clear()
    again = gcp_module("cloud_run_service", args)
    assert again["rc"] == 0 and again["changed"] is False and timed.writes() == []


def test_cloud_run_job_waits_for_its_execution(timed, gcp_module, unique):
    timed.realism.time_scale = 0.03  # an execution: 60 s of Google time, 1.8 s here
    args = module_args(timed, name="job-" + unique, location=REGION, image=IMAGE, execute="on_change", timeout=30)
    began = time.monotonic()
    done = gcp_module("cloud_run_job", args)
    assert done["rc"] == 0 and done["changed"] is True, done
    assert time.monotonic() - began >= seconds_of(timed, "run.job.execution")
    assert done["execution"]["succeeded_count"] == 1
    assert [row["kind"] for row in timed.operations.timeline()] == ["run.job.create", "run.job.execution"]


def test_a_job_execution_longer_than_the_timeout_is_reported_as_going_on(timed, gcp_module, unique):
    timed.realism.time_scale = 0.1  # an execution: 6 s here, the module waits 1 s
    args = module_args(timed, name="job-" + unique, location=REGION, image=IMAGE, timeout=10)
    assert gcp_module("cloud_run_job", args)["rc"] == 0
    result = gcp_module("cloud_run_job", dict(args, execute="always", timeout=1))
    assert result["rc"] == 1 and "goes on in Cloud Run" in result["msg"], result
