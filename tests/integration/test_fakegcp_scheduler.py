"""Contract tests of the fake's Cloud Scheduler v1, over plain HTTP (and its cron arithmetic directly)."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from tests.integration.test_fakegcp_contract import PROJECT, call, create_sa, error_of
from tests.standins.fakegcp.cloudscheduler import next_run

LOCATION = "europe-west1"
PARENT = "projects/%s/locations/%s" % (PROJECT, LOCATION)
TARGET = "https://run.googleapis.com/v2/projects/%s/locations/%s/jobs/drift:run" % (PROJECT, LOCATION)
BAD_SCHEDULE = "Schedule or time zone is invalid."


def job_path(job_id):
    return "/v1/%s/jobs/%s" % (PARENT, job_id)


def new_job(job_id, **fields):
    return dict({"name": "%s/jobs/%s" % (PARENT, job_id), "schedule": "0 3 * * *",
                 "httpTarget": {"uri": TARGET}}, **fields)


def create(fake, body):
    return call(fake, "POST", "cloudscheduler", "/v1/%s/jobs" % PARENT, body)


def create_ok(fake, body):
    response = create(fake, body)
    assert response.status_code == 200, response.text
    return response.json()


def patch(fake, job_id, body, mask=None):
    return call(fake, "PATCH", "cloudscheduler", job_path(job_id), body, {"updateMask": mask} if mask else None)


class TestLifecycle:
    def test_create_fills_defaults_get_list_delete(self, fake_gcp, unique):
        job_id = "drift-%s" % unique
        job = create_ok(fake_gcp, new_job(job_id, description="nightly drift"))
        assert job["name"] == "%s/jobs/%s" % (PARENT, job_id)
        assert job["state"] == "ENABLED" and job["userUpdateTime"] and job["scheduleTime"]
        assert job["timeZone"] == "Etc/UTC" and job["attemptDeadline"] == "180s"
        assert job["httpTarget"] == {"uri": TARGET, "httpMethod": "POST",
                                     "headers": {"User-Agent": "Google-Cloud-Scheduler"}}
        assert job["retryConfig"] == {"maxRetryDuration": "0s", "minBackoffDuration": "5s",
                                      "maxBackoffDuration": "3600s", "maxDoublings": 5}
        assert call(fake_gcp, "GET", "cloudscheduler", job_path(job_id)).json() == job
        listing = call(fake_gcp, "GET", "cloudscheduler", "/v1/%s/jobs" % PARENT).json()
        assert job in listing["jobs"]
        assert call(fake_gcp, "DELETE", "cloudscheduler", job_path(job_id)).json() == {}
        assert error_of(call(fake_gcp, "GET", "cloudscheduler", job_path(job_id)), 404, "NOT_FOUND")["message"] == \
            "Job not found."

    def test_oauth_token_body_and_headers(self, fake_gcp, unique):
        account = "sched-%s" % unique
        email = create_sa(fake_gcp, account)["email"]
        job = create_ok(fake_gcp, new_job("tok-%s" % unique, httpTarget={
            "uri": TARGET, "httpMethod": "POST", "body": "e30=", "headers": {"X-Trace": "1"},
            "oauthToken": {"serviceAccountEmail": email}}))
        target = job["httpTarget"]
        assert target["oauthToken"] == {"serviceAccountEmail": email,
                                        "scope": "https://www.googleapis.com/auth/cloud-platform"}
        assert target["headers"] == {"X-Trace": "1", "User-Agent": "Google-Cloud-Scheduler",
                                     "Content-Type": "application/octet-stream"}
        assert target["body"] == "e30="

    def test_duplicate_is_409(self, fake_gcp, unique):
        create_ok(fake_gcp, new_job("dup-%s" % unique))
        error_of(create(fake_gcp, new_job("dup-%s" % unique)), 409, "ALREADY_EXISTS")

    def test_missing_job_is_404_everywhere(self, fake_gcp, unique):
        path = job_path("absent-%s" % unique)
        error_of(call(fake_gcp, "GET", "cloudscheduler", path), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "DELETE", "cloudscheduler", path), 404, "NOT_FOUND")
        error_of(patch(fake_gcp, "absent-%s" % unique, {"description": "x"}, "description"), 404, "NOT_FOUND")
        for verb in ("pause", "resume", "run"):
            error_of(call(fake_gcp, "POST", "cloudscheduler", path + ":" + verb, {}), 404, "NOT_FOUND")

    def test_name_must_be_under_the_parent(self, fake_gcp, unique):
        body = new_job("x", name="projects/%s/locations/us-east1/jobs/x-%s" % (PROJECT, unique))
        error_of(create(fake_gcp, body), 400, "INVALID_ARGUMENT")
        error_of(create(fake_gcp, new_job("bad.id-%s" % unique)), 400, "INVALID_ARGUMENT")


class TestPatch:
    def test_update_mask_applies_only_its_fields(self, fake_gcp, unique):
        job_id = "p-%s" % unique
        before = create_ok(fake_gcp, new_job(job_id, description="old"))
        response = patch(fake_gcp, job_id, {"schedule": "*/5 * * * *", "description": "not in mask",
                                            "retryConfig": {"retryCount": 3, "minBackoffDuration": "10s"}},
                         "schedule,retry_config.retry_count")
        assert response.status_code == 200, response.text
        after = response.json()
        assert after["schedule"] == "*/5 * * * *" and after["description"] == "old"
        assert after["retryConfig"]["retryCount"] == 3 and after["retryConfig"]["minBackoffDuration"] == "5s"
        assert after["userUpdateTime"] >= before["userUpdateTime"]
        assert call(fake_gcp, "GET", "cloudscheduler", job_path(job_id)).json() == after

    def test_replacing_the_target_refills_server_defaults(self, fake_gcp, unique):
        job_id = "t-%s" % unique
        create_ok(fake_gcp, new_job(job_id))
        after = patch(fake_gcp, job_id, {"httpTarget": {"uri": TARGET + "?x=1", "httpMethod": "GET"}},
                      "http_target").json()
        assert after["httpTarget"] == {"uri": TARGET + "?x=1", "httpMethod": "GET",
                                       "headers": {"User-Agent": "Google-Cloud-Scheduler"}}

    def test_without_mask_body_fields_apply(self, fake_gcp, unique):
        job_id = "nm-%s" % unique
        create_ok(fake_gcp, new_job(job_id))
        after = patch(fake_gcp, job_id, {"timeZone": "Europe/Paris", "attemptDeadline": "600s"}).json()
        assert after["timeZone"] == "Europe/Paris" and after["attemptDeadline"] == "600s"
        assert after["schedule"] == "0 3 * * *"

    def test_bad_mask_paths_and_values(self, fake_gcp, unique):
        job_id = "bm-%s" % unique
        create_ok(fake_gcp, new_job(job_id))
        error_of(patch(fake_gcp, job_id, {"state": "PAUSED"}, "state"), 400, "INVALID_ARGUMENT")
        error_of(patch(fake_gcp, job_id, {}, "name"), 400, "INVALID_ARGUMENT")
        assert error_of(patch(fake_gcp, job_id, {"schedule": "every day"}, "schedule"), 400)["message"] == BAD_SCHEDULE
        error_of(patch(fake_gcp, job_id, {}, "schedule"), 400, "INVALID_ARGUMENT")  # schedule cleared
        assert call(fake_gcp, "GET", "cloudscheduler", job_path(job_id)).json()["schedule"] == "0 3 * * *"


class TestStates:
    def test_pause_resume_run(self, fake_gcp, unique):
        job_id = "s-%s" % unique
        path = job_path(job_id)
        create_ok(fake_gcp, new_job(job_id))
        paused = call(fake_gcp, "POST", "cloudscheduler", path + ":pause", {}).json()
        assert paused["state"] == "PAUSED"
        error_of(call(fake_gcp, "POST", "cloudscheduler", path + ":pause", {}), 400, "FAILED_PRECONDITION")
        # a paused job keeps its state through a patch
        assert patch(fake_gcp, job_id, {"description": "d"}, "description").json()["state"] == "PAUSED"
        resumed = call(fake_gcp, "POST", "cloudscheduler", path + ":resume", {}).json()
        assert resumed["state"] == "ENABLED"
        error_of(call(fake_gcp, "POST", "cloudscheduler", path + ":resume", {}), 400, "FAILED_PRECONDITION")
        ran = call(fake_gcp, "POST", "cloudscheduler", path + ":run", {}).json()
        assert ran["lastAttemptTime"] and ran["status"] == {} and ran["state"] == "ENABLED"
        writes = [c for c in fake_gcp.writes() if c.api == "cloudscheduler"]
        expected = ["/jobs", ":pause", ":pause", job_id, ":resume", ":resume", ":run"]
        assert len(writes) == len(expected) and all(c.path.endswith(e) for c, e in zip(writes, expected))

    def test_injected_fault(self, fake_gcp, unique):
        fake_gcp.inject(429, path=r"^cloudscheduler/")
        error_of(create(fake_gcp, new_job("f-%s" % unique)), 429, "RESOURCE_EXHAUSTED")
        error_of(call(fake_gcp, "GET", "cloudscheduler", job_path("f-%s" % unique)), 404)  # nothing was created
        create_ok(fake_gcp, new_job("f-%s" % unique))


class TestValidation:
    @pytest.mark.parametrize("schedule", ["0 3 * * *", "*/15 9-17 * * MON-FRI", "0 0 1,15 * *", "30 2 * JAN-MAR SUN",
                                          "0 */2 * * 7", "5-55/10 * * * *", "0 12 * * 1-5"])
    def test_good_schedules(self, fake_gcp, unique, schedule):
        job = create_ok(fake_gcp, new_job("c-%s" % unique, schedule=schedule))
        assert job["schedule"] == schedule and job["scheduleTime"].endswith("Z")

    @pytest.mark.parametrize("schedule", ["0 3 * *", "0 3 * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *",
                                          "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "@daily",
                                          "0 3 * * FUNDAY", "a b c d e"])
    def test_bad_schedules(self, fake_gcp, unique, schedule):
        error = error_of(create(fake_gcp, new_job("c-%s" % unique, schedule=schedule)), 400, "INVALID_ARGUMENT")
        assert error["message"] == BAD_SCHEDULE
        assert error["details"][0]["fieldViolations"][0]["field"] == "job.schedule"

    @pytest.mark.parametrize("zone, ok", [("Europe/Paris", True), ("America/New_York", True), ("utc", True),
                                          ("Etc/UTC", True), ("Mars/Olympus", False), ("CEST+2", False), ("", False)])
    def test_time_zones(self, fake_gcp, unique, zone, ok):
        response = create(fake_gcp, new_job("z-%s" % unique, timeZone=zone))
        if ok:
            assert response.status_code == 200 and response.json()["timeZone"] == zone
        else:
            assert error_of(response, 400, "INVALID_ARGUMENT")["message"] == BAD_SCHEDULE

    def test_missing_schedule_and_target(self, fake_gcp, unique):
        body = new_job("m-%s" % unique)
        del body["schedule"]
        assert "schedule" in error_of(create(fake_gcp, body), 400, "INVALID_ARGUMENT")["message"]
        body = new_job("m-%s" % unique)
        del body["httpTarget"]
        assert "target" in error_of(create(fake_gcp, body), 400, "INVALID_ARGUMENT")["message"]
        body = new_job("m-%s" % unique, pubsubTarget={"topicName": "projects/%s/topics/t" % PROJECT, "data": "eA=="})
        error_of(create(fake_gcp, body), 400, "INVALID_ARGUMENT")  # two targets

    @pytest.mark.parametrize("target, words", [
        ({"uri": "ftp://example.com"}, "http"),
        ({"httpMethod": "POST"}, "uri"),
        ({"uri": TARGET, "httpMethod": "GET", "body": "e30="}, "body"),
        ({"uri": TARGET, "httpMethod": "YELL"}, "YELL"),
        ({"uri": TARGET, "body": "not base64!"}, "Base64"),
        ({"uri": TARGET, "oauthToken": {"serviceAccountEmail": "nobody-here@%s.iam.gserviceaccount.com" % PROJECT}},
         "does not exist"),
        ({"uri": TARGET, "oauthToken": {"serviceAccountEmail": "a@b.c"}, "oidcToken": {"serviceAccountEmail": "a@b.c"}},
         "oidc_token"),
        ({"uri": TARGET, "colour": "red"}, 'Unknown name "colour"'),
    ])
    def test_bad_http_targets(self, fake_gcp, unique, target, words):
        error = error_of(create(fake_gcp, new_job("h-%s" % unique, httpTarget=target)), 400, "INVALID_ARGUMENT")
        assert words in error["message"]

    @pytest.mark.parametrize("fields, words", [
        ({"retryConfig": {"retryCount": 6}}, "retry_count"),
        ({"retryConfig": {"retryCount": -1}}, "retry_count"),
        ({"retryConfig": {"minBackoffDuration": "60s", "maxBackoffDuration": "10s"}}, "min_backoff"),
        ({"attemptDeadline": "10s"}, "attempt_deadline"),
        ({"attemptDeadline": "3600s"}, "attempt_deadline"),
        ({"description": "x" * 501}, "500"),
    ])
    def test_bad_job_fields(self, fake_gcp, unique, fields, words):
        error = error_of(create(fake_gcp, new_job("v-%s" % unique, **fields)), 400, "INVALID_ARGUMENT")
        assert words in error["message"]

    def test_output_only_fields_are_ignored(self, fake_gcp, unique):
        job = create_ok(fake_gcp, new_job("oo-%s" % unique, state="PAUSED", userUpdateTime="2000-01-01T00:00:00Z"))
        assert job["state"] == "ENABLED" and not job["userUpdateTime"].startswith("2000")


class TestNextRun:
    def test_next_run_in_a_time_zone(self):
        paris = zoneinfo.ZoneInfo("Europe/Paris")
        after = datetime.datetime(2026, 1, 9, 23, 30, tzinfo=datetime.timezone.utc)  # Sat 00:30 in Paris
        assert next_run("*/15 9-17 * * MON-FRI", paris, after) == "2026-01-12T08:00:00Z"  # Monday 09:00 CET
        assert next_run("0 3 * * *", datetime.timezone.utc, after) == "2026-01-10T03:00:00Z"
        # day of month OR day of week when both are restricted
        assert next_run("0 0 13 * FRI", datetime.timezone.utc, after) == "2026-01-13T00:00:00Z"
        assert next_run("0 0 31 2 *", datetime.timezone.utc, after) is None
