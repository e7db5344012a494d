"""The fake's timed operations (fake.realism.timed_operations) and its region and CPU/memory strictness.

With timed operations an operation finishes once its duration (durations.py, scaled by time_scale) has
passed, whether or not anyone polls it, and the resource it changes moves on with it. Most tests drive the
fake's clock by hand (fake.realism.now), so they are exact and instant; one runs on the real clock.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import with_realism
from tests.integration.test_fakegcp_contract import PROJECT, error_of
from tests.standins.fakegcp import FakeGcp
from tests.standins.fakegcp.durations import DURATIONS

REGION = "us-central1"
RUN = "/v2/projects/%s/locations/%s" % (PROJECT, REGION)
AR = "/v1/projects/%s/locations/%s" % (PROJECT, REGION)
SQL = "/sql/v1beta4/projects/%s" % PROJECT
IMAGE = "us-docker.pkg.dev/cloudrun/container/hello"
PG = {"tier": "db-custom-1-3840", "edition": "ENTERPRISE"}


class Clock:
    """A hand-driven realism clock: tick(gcp_seconds) moves Google time on (time_scale 1)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def tick(self, gcp_seconds):
        self.now += gcp_seconds


@pytest.fixture
def server(private_fake_gcp):
    """The fake emptied, every realism behaviour off."""
    return with_realism(private_fake_gcp)


@pytest.fixture
def timed(private_fake_gcp):
    """The fake with only timed operations on, on a hand-driven clock; returns (fake, clock)."""
    server = with_realism(private_fake_gcp, timed_operations=True)
    clock = Clock()
    server.realism.now = clock
    yield server, clock
    del server.realism.now
    server.realism.set(timed_operations=False)
    server.reset()


def call(fake, method, api, path, body=None, params=None):
    return requests.request(method, "%s/%s%s" % (fake.url, api, path), json=body, params=params, timeout=10)


def ok(response):
    assert response.status_code == 200, response.text
    return response.json()


def lro(fake, api, operation, version="v1"):
    """One operations.get of a google.longrunning operation."""
    return ok(call(fake, "GET", api, "/%s/%s" % (version, operation["name"])))


def create_repository(fake, repo_id):
    return ok(call(fake, "POST", "artifactregistry", AR + "/repositories", {"format": "DOCKER"},
                   {"repositoryId": repo_id}))


def create_instance(fake, name, region="europe-west1"):
    return ok(call(fake, "POST", "sqladmin", SQL + "/instances",
                   {"name": name, "region": region, "databaseVersion": "POSTGRES_16", "settings": dict(PG)}))


def run_spec(cpu="1", memory="512Mi"):
    return {"template": {"containers": [{"image": IMAGE, "resources": {"limits": {"cpu": cpu, "memory": memory}}}]}}


def job_spec():
    return {"template": {"template": {"containers": [{"image": IMAGE}]}}}


# ---- operations finish by time -------------------------------------------------------------------------
class TestByTime:
    def test_polls_before_the_duration_see_it_running_and_none_are_needed_after(self, timed):
        fake, clock = timed
        operation = create_repository(fake, "repo")
        assert not operation.get("done")
        for _poll in range(5):  # by polls it would have been done at the first
            assert not lro(fake, "artifactregistry", operation).get("done")
        error_of(call(fake, "GET", "artifactregistry", AR + "/repositories/repo"), 404)
        clock.tick(DURATIONS["artifactregistry.repository.create"] - 1)
        assert not lro(fake, "artifactregistry", operation).get("done")
        clock.tick(1)
        # Nobody polls the operation: the repository is there all the same.
        assert ok(call(fake, "GET", "artifactregistry", AR + "/repositories/repo"))["format"] == "DOCKER"
        done = lro(fake, "artifactregistry", operation)
        assert done["done"] is True and done["response"]["name"].endswith("/repositories/repo")

    def test_poll_count_does_not_matter(self, timed):
        fake, clock = timed
        fake.operation_polls = 0  # by polls: done as it starts; by time: not before its duration
        assert not create_repository(fake, "repo0").get("done")
        clock.tick(DURATIONS["artifactregistry.repository.create"])
        fake.operation_polls = 50
        assert ok(call(fake, "GET", "artifactregistry", AR + "/repositories/repo0"))

    def test_cloud_sql_instance_state_moves_on_by_time(self, timed):
        fake, clock = timed
        operation = create_instance(fake, "pg-timed")
        assert operation["status"] in ("PENDING", "RUNNING")
        polled = ok(call(fake, "GET", "sqladmin", "%s/operations/%s" % (SQL, operation["name"])))
        assert polled["status"] == "RUNNING"
        clock.tick(DURATIONS["sql.instance.create"] / 2)
        assert ok(call(fake, "GET", "sqladmin", SQL + "/instances/pg-timed"))["state"] == "PENDING_CREATE"
        # A second change while the create runs is refused, as Cloud SQL does.
        error_of(call(fake, "POST", "sqladmin", SQL + "/instances/pg-timed/databases", {"name": "db"}), 409)
        clock.tick(DURATIONS["sql.instance.create"] / 2)
        assert ok(call(fake, "GET", "sqladmin", SQL + "/instances/pg-timed"))["state"] == "RUNNABLE"
        done = ok(call(fake, "GET", "sqladmin", "%s/operations/%s" % (SQL, operation["name"])))
        assert done["status"] == "DONE" and "error" not in done

    def test_a_patch_that_restarts_takes_longer_than_one_that_does_not(self, timed):
        fake, clock = timed
        create_instance(fake, "pg-patch")
        clock.tick(DURATIONS["sql.instance.create"])
        path = SQL + "/instances/pg-patch"
        ok(call(fake, "PATCH", "sqladmin", path, {"settings": {"userLabels": {"a": "b"}}}))
        clock.tick(DURATIONS["sql.instance.patch"])
        assert ok(call(fake, "GET", "sqladmin", path))["state"] == "RUNNABLE"
        ok(call(fake, "PATCH", "sqladmin", path, {"settings": {"tier": "db-custom-2-7680"}}))
        clock.tick(DURATIONS["sql.instance.patch"])
        assert ok(call(fake, "GET", "sqladmin", path))["state"] == "MAINTENANCE"
        clock.tick(DURATIONS["sql.instance.patch_restart"] - DURATIONS["sql.instance.patch"])
        instance = ok(call(fake, "GET", "sqladmin", path))
        assert instance["state"] == "RUNNABLE" and instance["settings"]["tier"] == "db-custom-2-7680"

    def test_a_build_is_queued_then_working_then_done(self, timed):
        fake, clock = timed
        operation = ok(call(fake, "POST", "cloudbuild", AR + "/builds",
                            {"steps": [{"name": "gcr.io/cloud-builders/docker", "args": ["version"]}]}))
        name = operation["metadata"]["build"]["name"]

        def status():
            return ok(call(fake, "GET", "cloudbuild", "/v1/" + name))["status"]

        assert status() == "QUEUED" and status() == "QUEUED", "polls do not move it on"
        clock.tick(DURATIONS["cloudbuild.queue"])
        assert status() == "WORKING"
        clock.tick(DURATIONS["cloudbuild.build"] - 1)
        assert status() == "WORKING"
        clock.tick(1)
        assert status() == "SUCCESS"
        assert lro(fake, "cloudbuild", operation)["done"] is True

    def test_a_cloud_run_service_reconciles_then_is_ready(self, timed):
        fake, clock = timed
        operation = ok(call(fake, "POST", "run", RUN + "/services", run_spec(), {"serviceId": "svc"}))
        service = ok(call(fake, "GET", "run", RUN + "/services/svc"))
        assert service["reconciling"] is True and service["terminalCondition"]["state"] == "CONDITION_RECONCILING"
        clock.tick(DURATIONS["run.service.rollout"])
        service = ok(call(fake, "GET", "run", RUN + "/services/svc"))
        assert "reconciling" not in service and service["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
        assert lro(fake, "run", operation, "v2")["done"] is True

    def test_a_job_execution_runs_for_its_duration(self, timed):
        fake, clock = timed
        ok(call(fake, "POST", "run", RUN + "/jobs", job_spec(), {"jobId": "job"}))
        clock.tick(DURATIONS["run.job.create"])
        operation = ok(call(fake, "POST", "run", RUN + "/jobs/job:run", {}))
        execution = "/v2/" + operation["metadata"]["name"]
        assert ok(call(fake, "GET", "run", execution))["runningCount"] == 1
        clock.tick(DURATIONS["run.job.execution"] - 1)
        assert ok(call(fake, "GET", "run", execution)).get("reconciling") is True
        clock.tick(1)
        finished = ok(call(fake, "GET", "run", execution))
        assert finished["succeededCount"] == 1 and "completionTime" in finished

    def test_planned_failures_happen_when_the_operation_ends(self, timed):
        fake, clock = timed
        fake.fail_operations(1, code="INTERNAL_ERROR", message="no capacity")
        operation = create_instance(fake, "pg-fail")
        clock.tick(DURATIONS["sql.instance.create"])
        done = ok(call(fake, "GET", "sqladmin", "%s/operations/%s" % (SQL, operation["name"])))
        assert done["error"]["errors"][0]["message"] == "no capacity"
        error_of(call(fake, "GET", "sqladmin", SQL + "/instances/pg-fail"), 404)
        fake.apis["run"].fail_revisions(1)
        operation = ok(call(fake, "POST", "run", RUN + "/services", run_spec(), {"serviceId": "bad"}))
        assert not lro(fake, "run", operation, "v2").get("done")
        clock.tick(DURATIONS["run.service.rollout"])
        assert lro(fake, "run", operation, "v2")["error"]["code"] == 9
        fake.apis["cloudbuild"].fail_builds(1)
        operation = ok(call(fake, "POST", "cloudbuild", AR + "/builds",
                            {"steps": [{"name": "gcr.io/cloud-builders/docker", "args": ["version"]}]}))
        clock.tick(DURATIONS["cloudbuild.queue"] + DURATIONS["cloudbuild.build"])
        assert lro(fake, "cloudbuild", operation)["error"]["code"] == 2
        ok(call(fake, "POST", "run", RUN + "/jobs", job_spec(), {"jobId": "job-fail"}))
        clock.tick(DURATIONS["run.job.create"])
        fake.apis["run"].fail_executions(1)
        operation = ok(call(fake, "POST", "run", RUN + "/jobs/job-fail:run", {}))
        clock.tick(DURATIONS["run.job.execution"])
        assert "has failed to complete" in lro(fake, "run", operation, "v2")["error"]["message"]

    def test_the_timeline_records_each_operation(self, timed):
        fake, clock = timed
        start = clock.now
        create_repository(fake, "repo-t")
        create_instance(fake, "pg-t")
        assert [row["end"] for row in fake.operations.timeline()] == [None, None], "running"
        clock.tick(DURATIONS["sql.instance.create"])
        rows = fake.operations.timeline()
        assert [(r["api"], r["kind"], r["target"]) for r in rows] == [
            ("artifactregistry", "artifactregistry.repository.create",
             "projects/%s/locations/%s/repositories/repo-t" % (PROJECT, REGION)),
            ("sqladmin", "sql.instance.create", "projects/%s/instances/pg-t" % PROJECT)]
        # The end is when the operation was due, not when someone looked.
        assert [(r["start"], r["end"]) for r in rows] == [
            (start, start + DURATIONS["artifactregistry.repository.create"]),
            (start, start + DURATIONS["sql.instance.create"])]
        served = ok(requests.get(fake.url + "/_fake/operations:timeline", timeout=10))["operations"]
        assert [r["name"] for r in served] == [r["name"] for r in rows]


def test_on_the_real_clock_an_operation_nobody_polls_finishes():
    fake = FakeGcp(time_scale=0.01).start()  # a repository create: 10 s of Google time, 0.1 s here
    try:
        fake.realism.timed_operations = True
        began = time.monotonic()
        operation = create_repository(fake, "repo-real")
        assert not operation.get("done")
        time.sleep(fake.realism.seconds(DURATIONS["artifactregistry.repository.create"]) + 0.05)
        assert ok(call(fake, "GET", "artifactregistry", AR + "/repositories/repo-real"))
        row = fake.operations.timeline()[0]
        assert began <= row["start"] and row["end"] - row["start"] == pytest.approx(0.1)
    finally:
        fake.stop()


def test_switched_off_operations_finish_by_polls_as_before(server):
    server.operation_polls = 3
    try:
        operation = create_repository(server, "repo-polls")
        assert [lro(server, "artifactregistry", operation).get("done") for _poll in range(3)] == [None, None, True]
    finally:
        server.clear()


# ---- strictness ------------------------------------------------------------------------------------------
class TestRegions:
    def test_cloud_run_refuses_a_region_it_does_not_offer(self, server):
        # us-central2 exists (Cloud SQL offers it) but Cloud Run does not.
        for path in ("/v2/projects/%s/locations/us-central2/services" % PROJECT,
                     "/v2/projects/%s/locations/moon-base1/jobs" % PROJECT):
            error = error_of(call(server, "GET", "run", path), 400, "INVALID_ARGUMENT")
            assert error["message"] == "region: Unsupported region %s" % path.split("/")[5]
            assert error["details"][0]["fieldViolations"][0]["field"] == "region"
        assert ok(call(server, "GET", "run", "/v2/projects/%s/locations/-/services" % PROJECT)) == {}

    def test_cloud_sql_refuses_a_region_it_does_not_offer(self, server):
        response = call(server, "POST", "sqladmin", SQL + "/instances",
                        {"name": "pg-nowhere", "region": "europe-west7", "databaseVersion": "POSTGRES_16",
                         "settings": dict(PG)})
        error = error_of(response, 400)
        assert error["errors"][0]["reason"] == "errorUnrecognizedGceZone"
        assert error["message"] == "Request contains unrecognized GCE zone when creating or updating an instance."
        error_of(call(server, "GET", "sqladmin", SQL + "/instances/pg-nowhere"), 404)


class TestCpuMemory:
    @pytest.mark.parametrize("cpu, memory, allowed", [
        ("4", "512Mi", "2Gi and 16Gi"), ("8", "2Gi", "4Gi and 32Gi"), ("6", "2Gi", "4Gi and 24Gi"),
        ("1", "6Gi", "128Mi and 4Gi"), ("2", "12Gi", "128Mi and 8Gi"), ("4", "20Gi", "2Gi and 16Gi"),
    ])
    def test_an_impossible_pair_is_refused_for_services_and_jobs(self, server, cpu, memory, allowed):
        message = "memory must be between %s inclusive" % allowed
        service = call(server, "POST", "run", RUN + "/services", run_spec(cpu, memory), {"serviceId": "cpu-mem"})
        assert message in error_of(service, 400, "INVALID_ARGUMENT")["message"]
        job = {"template": {"template": {"containers": [
            {"image": IMAGE, "resources": {"limits": {"cpu": cpu, "memory": memory}}}]}}}
        assert message in error_of(call(server, "POST", "run", RUN + "/jobs", job, {"jobId": "cpu-mem"}), 400)["message"]

    @pytest.mark.parametrize("cpu, memory", [("4", "2Gi"), ("8", "4Gi"), ("2", "8Gi"), ("1", "4Gi"), ("6", "24Gi")])
    def test_a_possible_pair_is_accepted(self, server, unique, cpu, memory):
        ok(call(server, "POST", "run", RUN + "/services", run_spec(cpu, memory), {"serviceId": "ok-" + unique}))
