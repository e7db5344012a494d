"""cloud_scheduler_job against the fake Cloud Scheduler API (tests/standins/fakegcp)."""

from __future__ import annotations

import base64

import pytest
import requests

from tests.conftest import PROJECT

LOCATION = "europe-west1"
RUN_URI = "https://run.googleapis.com/v2/projects/%s/locations/%s/jobs/drift:run" % (PROJECT, LOCATION)
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@pytest.fixture
def job(fake_gcp, gcp_module, unique):
    class Job:
        name = "drift-" + unique
        full = "projects/%s/locations/%s/jobs/drift-%s" % (PROJECT, LOCATION, unique)
        url = "%s/v1/%s" % (fake_gcp.endpoints["cloudscheduler"], full)
        account = "sched-%s@%s.iam.gserviceaccount.com" % (unique, PROJECT)
        invoker = "invoker-%s@%s.iam.gserviceaccount.com" % (unique, PROJECT)

        def run(self, check=False, **options):
            args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=fake_gcp.endpoints, timeout=20,
                        name=self.name, location=LOCATION)
            args.update(options)
            return gcp_module("cloud_scheduler_job", args, check=check)

        def read(self):
            response = requests.get(self.url, timeout=10)
            if response.status_code == 404:
                return None
            assert response.status_code == 200, response.text
            return response.json()

    found = Job()
    for email in (found.account, found.invoker):  # the fake, like GCP, wants token accounts to exist
        response = requests.post("%s/v1/projects/%s/serviceAccounts" % (fake_gcp.endpoints["iam"], PROJECT),
                                 json={"accountId": email.split("@")[0], "serviceAccount": {}}, timeout=10)
        assert response.status_code == 200, response.text
    fake_gcp.clear()
    return found


def base(job, **extra):
    options = dict(schedule="0 3 * * *", time_zone="Europe/Paris", uri=RUN_URI,
                   oauth_service_account=job.account.split("@")[0])
    options.update(extra)
    return options


def writes(fake):
    return [(w.method, w.path) for w in fake.writes()]


def test_lifecycle_create_unchanged_update_delete(job, fake_gcp):
    options = base(job, description="nightly drift", attempt_deadline=300, retry_count=3, min_backoff=30,
                   max_backoff=600, max_doublings=2, max_retry_duration=3600)
    created = job.run(**options)
    assert created["rc"] == 0 and created["changed"] is True, created
    assert writes(fake_gcp) == [("POST", "/v1/projects/%s/locations/%s/jobs" % (PROJECT, LOCATION))]
    body = fake_gcp.writes()[0].body
    assert body["name"] == job.full and "state" not in body
    actual = job.read()
    assert actual["schedule"] == "0 3 * * *" and actual["timeZone"] == "Europe/Paris"
    assert actual["description"] == "nightly drift" and actual["attemptDeadline"] == "300s"
    assert actual["httpTarget"]["uri"] == RUN_URI and actual["httpTarget"]["httpMethod"] == "POST"
    assert actual["httpTarget"]["oauthToken"] == {"serviceAccountEmail": job.account, "scope": SCOPE}
    assert "oidcToken" not in actual["httpTarget"]
    assert actual["retryConfig"] == {"retryCount": 3, "minBackoffDuration": "30s", "maxBackoffDuration": "600s",
                                     "maxDoublings": 2, "maxRetryDuration": "3600s"}
    assert actual["state"] == "ENABLED" and created["job"]["name"] == job.full

    fake_gcp.clear()
    again = job.run(**options)
    assert again["rc"] == 0 and again["changed"] is False, again
    assert fake_gcp.writes() == [] and len(fake_gcp.requests) == 1

    # Another schedule and retry count: one PATCH naming those two fields; other retry settings stay.
    fake_gcp.clear()
    updated = job.run(**dict(options, schedule="30 2 * * MON-FRI", retry_count=1))
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert updated["changed_fields"] == ["retryConfig", "schedule"]
    assert writes(fake_gcp) == [("PATCH", "/v1/" + job.full)]
    assert fake_gcp.writes()[0].query["updateMask"] == "schedule,retryConfig"
    actual = job.read()
    assert actual["schedule"] == "30 2 * * MON-FRI"
    assert actual["retryConfig"]["retryCount"] == 1 and actual["retryConfig"]["minBackoffDuration"] == "30s"
    assert actual["retryConfig"]["maxDoublings"] == 2

    # Options left out are left alone (no change when only the required ones are given).
    fake_gcp.clear()
    assert job.run(**base(job, schedule="30 2 * * MON-FRI"))["changed"] is False
    assert fake_gcp.writes() == []

    fake_gcp.clear()
    deleted = job.run(state="absent")
    assert deleted["rc"] == 0 and deleted["changed"] is True and deleted["job"] == {}, deleted
    assert writes(fake_gcp) == [("DELETE", "/v1/" + job.full)]
    assert job.read() is None
    fake_gcp.clear()
    gone = job.run(state="absent")
    assert gone["changed"] is False and fake_gcp.writes() == [] and len(fake_gcp.requests) == 1


def test_pause_and_resume(job, fake_gcp):
    created = job.run(**base(job, paused=True))
    assert created["rc"] == 0 and created["changed"] is True, created
    assert writes(fake_gcp) == [("POST", "/v1/projects/%s/locations/%s/jobs" % (PROJECT, LOCATION)),
                                ("POST", "/v1/%s:pause" % job.full)]
    assert job.read()["state"] == "PAUSED" and created["job"]["state"] == "PAUSED"

    fake_gcp.clear()
    assert job.run(**base(job, paused=True))["changed"] is False and fake_gcp.writes() == []
    fake_gcp.clear()
    assert job.run(**base(job))["changed"] is False, "paused not set: the job stays as it is"
    assert fake_gcp.writes() == [] and job.read()["state"] == "PAUSED"

    fake_gcp.clear()
    preview = job.run(check=True, **base(job, paused=False))
    assert preview["changed"] is True and preview["changed_fields"] == ["state"]
    assert preview["diff"] == {"before": {**preview["diff"]["before"], "state": "PAUSED"},
                               "after": {**preview["diff"]["before"], "state": "ENABLED"}}
    assert fake_gcp.writes() == [] and job.read()["state"] == "PAUSED"

    resumed = job.run(**base(job, paused=False))
    assert resumed["rc"] == 0 and resumed["changed"] is True and resumed["job"]["state"] == "ENABLED", resumed
    assert writes(fake_gcp) == [("POST", "/v1/%s:resume" % job.full)]
    assert job.read()["state"] == "ENABLED"

    # A schedule change and a pause in one run: PATCH, then :pause.
    fake_gcp.clear()
    both = job.run(**base(job, schedule="0 4 * * *", paused=True))
    assert both["changed_fields"] == ["schedule", "state"]
    assert writes(fake_gcp) == [("PATCH", "/v1/" + job.full), ("POST", "/v1/%s:pause" % job.full)]
    assert job.read()["state"] == "PAUSED" and job.read()["schedule"] == "0 4 * * *"


def test_oauth_then_oidc_then_body_and_headers(job, fake_gcp):
    job.run(**base(job))
    fake_gcp.clear()
    switched = job.run(schedule="0 3 * * *", time_zone="Europe/Paris", uri="https://serving-abc-ew.a.run.app/refresh",
                       oidc_service_account=job.invoker, oidc_audience="https://serving-abc-ew.a.run.app")
    assert switched["rc"] == 0 and switched["changed_fields"] == ["httpTarget"], switched
    assert fake_gcp.writes()[0].query["updateMask"] == "httpTarget"
    target = job.read()["httpTarget"]
    assert target["oidcToken"] == {"serviceAccountEmail": job.invoker, "audience": "https://serving-abc-ew.a.run.app"}
    assert "oauthToken" not in target, "the token is replaced, not added"
    assert switched["diff"]["before"]["httpTarget"]["oauthToken"]["serviceAccountEmail"] == job.account
    assert switched["diff"]["after"]["httpTarget"]["oidcToken"]["serviceAccountEmail"] == job.invoker

    # A body (sent base64) and headers; the headers Cloud Scheduler adds are not a difference.
    options = dict(schedule="0 3 * * *", time_zone="Europe/Paris", uri="https://serving-abc-ew.a.run.app/refresh",
                   oidc_service_account=job.invoker, body='{"full": false}', headers={"X-Source": "scheduler"})
    fake_gcp.clear()
    result = job.run(**options)
    assert result["rc"] == 0 and result["changed"] is True, result
    target = job.read()["httpTarget"]
    assert base64.b64decode(target["body"]) == b'{"full": false}'
    assert target["headers"]["X-Source"] == "scheduler"
    assert target["headers"].get("User-Agent") == "Google-Cloud-Scheduler", "the fake adds it, as GCP"
    assert "audience" not in target["oidcToken"]
    fake_gcp.clear()
    again = job.run(**options)
    assert again["changed"] is False and fake_gcp.writes() == [], again

    # A header removed from the options is removed from the job; no token at all removes the token.
    fake_gcp.clear()
    plain = job.run(schedule="0 3 * * *", time_zone="Europe/Paris", uri="https://serving-abc-ew.a.run.app/refresh",
                    body='{"full": false}')
    assert plain["changed_fields"] == ["httpTarget"], plain
    target = job.read()["httpTarget"]
    assert "X-Source" not in target.get("headers", {}) and "oidcToken" not in target and "oauthToken" not in target


def test_check_mode_and_diff_on_create(job, fake_gcp):
    preview = job.run(check=True, **base(job, retry_count=2, body="{}"))
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert preview["diff"]["before"] == {}
    after = preview["diff"]["after"]
    assert after["name"] == job.full and after["schedule"] == "0 3 * * *" and after["retryConfig"] == {"retryCount": 2}
    assert after["httpTarget"] == {"uri": RUN_URI, "httpMethod": "POST", "body": base64.b64encode(b"{}").decode(),
                                   "oauthToken": {"serviceAccountEmail": job.account, "scope": SCOPE}}
    assert fake_gcp.writes() == [] and job.read() is None


@pytest.mark.parametrize("options, message", [
    ({"schedule": "0 3 * *"}, "must have 5 fields"),
    ({"schedule": "every 5 minutes"}, "must have 5 fields"),
    ({"schedule": "61 3 * * *"}, "'61' is not a valid minute"),
    ({"schedule": "0 3 * * FUNDAY"}, "'FUNDAY' is not a valid day of week"),
    ({"schedule": "0 3 * 13 *"}, "'13' is not a valid month"),
    ({"schedule": "*/0 * * * *"}, "'*/0' is not a valid minute"),
    ({"time_zone": "Mars/Olympus"}, "time_zone 'Mars/Olympus' is not a tz database name"),
    ({"attempt_deadline": 5}, "attempt_deadline must be from 15 to 1800"),
    ({"retry_count": 6}, "retry_count must be from 0 to 5"),
    ({"min_backoff": 600, "max_backoff": 30}, "min_backoff (600) must not be more than max_backoff (30)"),
    ({"http_method": "GET", "body": "x"}, "body goes with http_method POST, PUT or PATCH only"),
    ({"uri": "ftp://example.com"}, "must start with http:// or https://"),
    ({"oidc_audience": "https://x"}, "oidc_audience goes with oidc_service_account only"),
    ({"name": "bad name"}, "name 'bad name' must be 1 to 500"),
    ({"headers": {"X-Count": 3}}, "header 'X-Count' must have a string value"),
])
def test_bad_input_fails_before_any_request(job, fake_gcp, options, message):
    result = job.run(**base(job, **options))
    assert result["rc"] == 1 and message in result["msg"], result
    assert fake_gcp.requests == []


def test_required_options_and_exclusive_tokens(job, fake_gcp):
    missing = job.run(schedule="0 3 * * *")
    assert missing["rc"] == 1 and "state present needs uri" in missing["msg"], missing
    both = job.run(**base(job, oidc_service_account=job.invoker))
    assert both["rc"] == 1 and "mutually exclusive" in both["msg"], both
    assert fake_gcp.requests == []


def test_retryable_errors_are_retried(job, fake_gcp):
    fake_gcp.inject(503, count=2, method="GET", path=r"cloudscheduler/v1/projects/.*/jobs/")
    fake_gcp.inject(429, count=2, method="POST", path=r"cloudscheduler/v1/projects/.*/jobs$")
    result = job.run(**base(job, paused=True))
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(fake_gcp.calls("POST", r"jobs$")) == 3
    assert job.read()["state"] == "PAUSED"

    fake_gcp.clear()
    fake_gcp.inject(503, count=1, method="POST", path=r":resume$")
    resumed = job.run(**base(job, paused=False))
    assert resumed["rc"] == 0 and job.read()["state"] == "ENABLED", resumed


def test_lost_answer_on_create_converges(job, fake_gcp):
    fake_gcp.inject(503, count=1, method="POST", path=r"cloudscheduler/v1/projects/.*/jobs$", forward=True)
    result = job.run(**base(job, paused=True))
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(fake_gcp.calls("POST", r"jobs$")) == 2, "the retry met 409 ALREADY_EXISTS"
    assert job.read()["state"] == "PAUSED", "the pause is applied to the job the first create made"
    fake_gcp.clear()
    again = job.run(**base(job, paused=True))
    assert again["changed"] is False and fake_gcp.writes() == []
