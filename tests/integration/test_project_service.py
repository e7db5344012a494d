"""project_service against the fake Service Usage API (every test on a project of its own)."""

from __future__ import annotations

import pytest
import requests

from tests.standins.fakegcp.serviceusage import CATALOG, DEFAULT_ENABLED

RUN, SQL, SECRETS, SCHEDULER = ("run.googleapis.com", "sqladmin.googleapis.com", "secretmanager.googleapis.com",
                                "cloudscheduler.googleapis.com")
REGISTRY = "artifactregistry.googleapis.com"


@pytest.fixture
def project_id(unique):
    """Every valid project ID exists in the fake, with only the default services enabled."""
    return "svc-" + unique


@pytest.fixture
def services(fake_gcp, gcp_module, project_id):
    class Services:
        def run(self, check=False, **options):
            args = dict(project=project_id, auth_kind="anonymous", api_endpoints=fake_gcp.endpoints, timeout=20)
            args.update(options)
            return gcp_module("project_service", args, check=check)

        def state(self, service):
            """The state of a service, read straight from the API."""
            response = requests.get("%s/serviceusage/v1/projects/%s/services/%s" % (fake_gcp.url, project_id, service),
                                    timeout=10)
            assert response.status_code == 200, response.text
            return response.json()["state"]

    return Services()


def test_enable_lifecycle(services, fake_gcp, project_id):
    wanted = [RUN, SQL, SECRETS]
    preview = services.run(check=True, services=wanted)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert preview["enabled"] == wanted and preview["disabled"] == []
    assert preview["diff"]["before"] == {s: "DISABLED" for s in wanted}
    assert preview["diff"]["after"] == {s: "ENABLED" for s in wanted}
    assert fake_gcp.writes() == []
    assert [services.state(s) for s in wanted] == ["DISABLED"] * 3

    fake_gcp.clear()
    result = services.run(services=wanted + [RUN])  # a duplicate is ignored
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["enabled"] == wanted and result["services"] == {s: "ENABLED" for s in wanted}
    writes = fake_gcp.writes()
    assert [(w.method, w.path, w.body) for w in writes] == [
        ("POST", "/v1/projects/%s/services:batchEnable" % project_id, {"serviceIds": wanted})]
    assert fake_gcp.calls(method="GET", path=r"serviceusage/v1/operations/"), "it waited for the operation"
    assert [services.state(s) for s in wanted] == ["ENABLED"] * 3
    assert services.state(REGISTRY) == "ENABLED", "Service Usage enables what run depends on"

    fake_gcp.clear()
    again = services.run(services=wanted)
    assert again["rc"] == 0 and again["changed"] is False and again["enabled"] == [], again
    assert fake_gcp.writes() == [] and len(fake_gcp.requests) == 1
    assert fake_gcp.requests[0].path == "/v1/projects/%s/services:batchGet" % project_id
    assert fake_gcp.requests[0].query["names"] == ["projects/%s/services/%s" % (project_id, s) for s in wanted]

    # Only what is missing is enabled; bigquery is on by default in every project.
    fake_gcp.clear()
    more = services.run(services=[RUN, "bigquery.googleapis.com", SCHEDULER])
    assert more["changed"] is True and more["enabled"] == [SCHEDULER], more
    assert more["diff"] == {"before": {SCHEDULER: "DISABLED"}, "after": {SCHEDULER: "ENABLED"},
                            "before_header": "projects/%s/services" % project_id,
                            "after_header": "projects/%s/services" % project_id}
    assert [w.body for w in fake_gcp.writes()] == [{"serviceIds": [SCHEDULER]}]


def test_more_than_20_services_are_enabled_in_batches_of_20(services, fake_gcp):
    wanted = sorted(set(CATALOG) - set(DEFAULT_ENABLED))
    assert len(wanted) > 20, "the fake's catalog must hold more than 20 services that are off by default"
    result = services.run(services=wanted)
    assert result["rc"] == 0 and result["changed"] is True and result["enabled"] == wanted, result
    batches = [w.body["serviceIds"] for w in fake_gcp.writes()]
    assert [len(batch) for batch in batches] == [20, len(wanted) - 20]
    assert sum(batches, []) == wanted
    assert all(services.state(s) == "ENABLED" for s in wanted)


def test_disable_lifecycle(services, fake_gcp, project_id):
    services.run(services=[SECRETS, SCHEDULER])
    fake_gcp.clear()
    preview = services.run(check=True, services=[SECRETS, SCHEDULER, SQL], state="absent",
                           disable_dependent_services=False)
    assert preview["changed"] is True and preview["disabled"] == [SECRETS, SCHEDULER], preview
    assert preview["diff"]["before"] == {SECRETS: "ENABLED", SCHEDULER: "ENABLED"}
    assert fake_gcp.writes() == [] and services.state(SECRETS) == "ENABLED"

    result = services.run(services=[SECRETS, SCHEDULER, SQL], state="absent", disable_dependent_services=False,
                          check_if_service_has_usage=True)
    assert result["rc"] == 0 and result["changed"] is True and result["disabled"] == [SECRETS, SCHEDULER], result
    assert [(w.path, w.body) for w in fake_gcp.writes()] == [
        ("/v1/projects/%s/services/%s:disable" % (project_id, s),
         {"disableDependentServices": False, "checkIfServiceHasUsage": "CHECK"}) for s in (SECRETS, SCHEDULER)]
    assert services.state(SECRETS) == "DISABLED" and services.state(SCHEDULER) == "DISABLED"

    fake_gcp.clear()
    again = services.run(services=[SECRETS, SCHEDULER, SQL], state="absent", disable_dependent_services=False)
    assert again["changed"] is False and again["disabled"] == [] and fake_gcp.writes() == [], again


def test_disable_dependent_services_is_explicit(services, fake_gcp):
    services.run(services=[RUN])
    assert services.state(REGISTRY) == "ENABLED"

    fake_gcp.clear()
    refused = services.run(services=[REGISTRY], state="absent", disable_dependent_services=False)
    assert refused["rc"] == 1 and refused["changed"] is False, refused
    assert refused["status"] == 400 and RUN in refused["msg"] and REGISTRY in refused["msg"], refused["msg"]
    assert services.state(REGISTRY) == "ENABLED" and services.state(RUN) == "ENABLED"

    result = services.run(services=[REGISTRY], state="absent", disable_dependent_services=True)
    assert result["rc"] == 0 and result["changed"] is True and result["disabled"] == [REGISTRY], result
    assert fake_gcp.writes()[-1].body == {"disableDependentServices": True}
    assert services.state(REGISTRY) == "DISABLED" and services.state(RUN) == "DISABLED"


@pytest.mark.parametrize("options, message", [
    (dict(services=["run"]), "invalid service name(s) 'run'"),
    (dict(services=[RUN, "Run.googleapis.com", "sql admin.googleapis.com"]),
     "'Run.googleapis.com', 'sql admin.googleapis.com'"),
    (dict(services=[RUN], state="absent"), "state is absent but all of the following are missing: "
                                           "disable_dependent_services"),
    (dict(services=[RUN], project="Bad_Project"), "project 'Bad_Project'"),
])
def test_bad_input_is_rejected_before_any_call(services, fake_gcp, options, message):
    result = services.run(**options)
    assert result["rc"] == 1 and result["failed"] is True, result
    assert message in result["msg"], result["msg"]
    assert fake_gcp.requests == []


def test_unknown_service_is_reported(services, fake_gcp, project_id):
    result = services.run(services=[RUN, "nosuchapi.googleapis.com"])
    assert result["rc"] == 1 and result["status"] == 403, result
    assert "nosuchapi.googleapis.com" in result["msg"] and "projects/%s" % project_id in result["msg"]
    assert fake_gcp.writes() == []


def test_retries_429_and_503_bursts(services, fake_gcp):
    fake_gcp.inject(503, count=2, path=r"serviceusage/.*:batchGet")
    fake_gcp.inject(429, count=2, path=r"serviceusage/.*:batchEnable")
    fake_gcp.inject(503, count=1, path=r"serviceusage/v1/operations/")
    result = services.run(services=[SQL])
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(fake_gcp.calls(path=r":batchGet")) == 3
    assert len(fake_gcp.calls(path=r":batchEnable")) == 3
    assert services.state(SQL) == "ENABLED"


def test_failed_operation_is_reported(services, fake_gcp, project_id):
    fake_gcp.fail_operations(count=1, code="FAILED_PRECONDITION", message="Billing must be enabled for activation")
    result = services.run(services=[SQL, SECRETS])
    assert result["rc"] == 1 and result["failed"] is True, result
    assert "Billing must be enabled for activation" in result["msg"], result["msg"]
    assert "projects/%s/services (%s, %s)" % (project_id, SQL, SECRETS) in result["msg"]
    assert result["reason"] == "FAILED_PRECONDITION" and result["enabled"] == [] and result["changed"] is False
    assert services.state(SQL) == "DISABLED"

    fake_gcp.clear()
    retried = services.run(services=[SQL, SECRETS])
    assert retried["rc"] == 0 and retried["changed"] is True, retried
    assert services.state(SQL) == "ENABLED"


def test_timed_out_wait_then_rerun_converges(services, fake_gcp):
    fake_gcp.operation_polls = 1000
    timed_out = services.run(services=[SCHEDULER], timeout=3)
    assert timed_out["rc"] == 1, timed_out
    assert "still running" in timed_out["msg"] and "run again" in timed_out["msg"], timed_out["msg"]
    assert services.state(SCHEDULER) == "DISABLED"

    fake_gcp.operation_polls = 1
    rerun = services.run(services=[SCHEDULER])
    assert rerun["rc"] == 0 and rerun["changed"] is True, rerun
    assert services.state(SCHEDULER) == "ENABLED"
    fake_gcp.clear()
    assert services.run(services=[SCHEDULER])["changed"] is False
    assert fake_gcp.writes() == []
