"""Waiting for long-running operations: google.longrunning (module_utils/gcp.py wait_operation)."""

from __future__ import annotations

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpClient, wait_operation
from ansible_collections.deployml.mlops.tests.unit.plugins.module_utils.test_gcp_client import FakeModule


def client_for(server, api, timeout=300):
    sleeps = []
    module = FakeModule(api_endpoints={api: server.url}, timeout=timeout)
    return GcpClient(module, sleep=sleeps.append), sleeps


def test_done_operation_returns_its_response_without_polling(server):
    client = client_for(server, "serviceusage")[0]
    response = wait_operation(client, "serviceusage", {"name": "operations/a", "done": True, "response": {"x": 1}})
    assert response == {"x": 1}
    assert server.requests == []


def test_polls_until_done(server):
    done = {"name": "operations/a", "done": True, "response": {"services": []}}
    server.answer((200, {"name": "operations/a"}), (200, done))
    client, sleeps = client_for(server, "serviceusage")
    assert wait_operation(client, "serviceusage", {"name": "operations/a"}) == {"services": []}
    assert [r["path"] for r in server.requests] == ["/v1/operations/a", "/v1/operations/a"]
    assert len(sleeps) == 1


def test_failed_operation_raises_with_code_and_message(server):
    server.answer((200, {"name": "operations/b", "done": True,
                         "error": {"code": 9, "message": "service x has dependents"}}))
    client = client_for(server, "serviceusage")[0]
    with pytest.raises(GcpApiError) as failure:
        wait_operation(client, "serviceusage", {"name": "operations/b"}, resource="services")
    assert failure.value.reason == "FAILED_PRECONDITION" and failure.value.status == 400
    assert "operations/b failed: service x has dependents" in str(failure.value)


def test_timeout_says_the_operation_goes_on(server):
    server.answer(*[(200, {"name": "operations/c"})] * 50)
    client = client_for(server, "serviceusage", timeout=0)[0]
    with pytest.raises(GcpApiError) as failure:
        wait_operation(client, "serviceusage", {"name": "operations/c"})
    assert failure.value.reason == "TIMEOUT" and "run again to converge" in str(failure.value)
