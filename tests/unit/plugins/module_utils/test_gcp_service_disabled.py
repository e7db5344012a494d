"""GcpClient and 403 SERVICE_DISABLED: retried while Service Usage says ENABLED, failed at once naming the fix.

A scripted local HTTP server answers for both the API called and Service Usage; sleeps go to a recorder.
"""

from __future__ import annotations

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpClient

SERVICE = "secretmanager.googleapis.com"
NUMBER = "123456789012"


class Module:
    def __init__(self, url, timeout=300, project="my-project"):
        self.params = dict(project=project, auth_kind="anonymous", service_account_file=None,
                           service_account_contents=None, access_token=None, scopes=None, timeout=timeout,
                           api_endpoints={"secretmanager": url, "serviceusage": url})


def client(server, timeout=300, project="my-project"):
    sleeps = []
    return GcpClient(Module(server.url, timeout, project), sleep=sleeps.append), sleeps


def disabled(service=SERVICE):
    message = "Secret Manager API has not been used in project %s before or it is disabled." % NUMBER
    return (403, {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": message,
                            "errors": [{"message": message, "domain": "usageLimits", "reason": "accessNotConfigured"}],
                            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                         "reason": "SERVICE_DISABLED", "domain": "googleapis.com",
                                         "metadata": {"service": service, "consumer": "projects/%s" % NUMBER,
                                                      "serviceTitle": "Secret Manager API"}}]}})


def state(value):
    return (200, {"name": "projects/%s/services/%s" % (NUMBER, SERVICE), "state": value})


def test_an_enabled_service_still_propagating_is_retried_and_asked_about_once(server):
    server.answer(disabled(), state("ENABLED"), disabled(), disabled(), (200, {"secrets": []}))
    api, sleeps = client(server)
    assert api.request("GET", "secretmanager", "/v1/projects/my-project/secrets") == {"secrets": []}
    paths = [r["path"] for r in server.requests]
    assert paths == ["/v1/projects/my-project/secrets", "/v1/projects/%s/services/%s" % (NUMBER, SERVICE)] + \
        ["/v1/projects/my-project/secrets"] * 3
    assert len(sleeps) == 3
    # A later call of the same client does not ask again.
    server.answer(disabled(), (200, {}))
    assert api.request("GET", "secretmanager", "/v1/projects/my-project/secrets/x") == {}
    assert len(server.requests) == 7


def test_a_disabled_service_fails_at_once_with_the_gcloud_fix(server):
    server.answer(disabled(), state("DISABLED"))
    api, sleeps = client(server)
    with pytest.raises(GcpApiError) as raised:
        api.request("GET", "secretmanager", "/v1/projects/my-project/secrets", resource="projects/my-project/secrets")
    error = raised.value
    assert error.status == 403 and error.error_info["reason"] == "SERVICE_DISABLED"
    assert error.message.startswith("Secret Manager API (secretmanager.googleapis.com) is not enabled in project "
                                    "my-project: enable it with `gcloud services enable secretmanager.googleapis.com "
                                    "--project my-project`, or list it in project_services")
    assert "has not been used in project %s" % NUMBER in error.message
    assert len(server.requests) == 2 and sleeps == []


def test_another_project_is_named_by_its_number(server):
    server.answer(disabled(), state("DISABLED"))
    api = client(server)[0]
    with pytest.raises(GcpApiError, match="not enabled in project %s: .* --project %s`" % (NUMBER, NUMBER)):
        api.request("GET", "secretmanager", "/v1/projects/other-project/secrets")


def test_when_service_usage_cannot_be_read_it_fails_at_once(server):
    server.answer(disabled(), (403, {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "denied"}}))
    api, sleeps = client(server)
    with pytest.raises(GcpApiError, match="gcloud services enable secretmanager.googleapis.com"):
        api.request("GET", "secretmanager", "/v1/projects/my-project/secrets")
    assert len(server.requests) == 2 and sleeps == []


def test_service_usage_is_never_asked_about_itself(server):
    server.answer(disabled("serviceusage.googleapis.com"))
    api = client(server)[0]
    with pytest.raises(GcpApiError, match="gcloud services enable serviceusage.googleapis.com"):
        api.request("GET", "serviceusage", "/v1/projects/my-project/services/run.googleapis.com")
    assert len(server.requests) == 1


def test_propagation_that_outlasts_the_timeout_gives_up(server):
    server.answer(disabled(), state("ENABLED"), *[disabled()] * 40)
    api, sleeps = client(server, timeout=3)
    with pytest.raises(GcpApiError) as raised:
        api.request("GET", "secretmanager", "/v1/projects/my-project/secrets")
    assert "gave up retrying after 3s" in raised.value.message and sum(sleeps) <= 3
