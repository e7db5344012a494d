"""Waiting for long-running operations: google.longrunning (wait_operation) and Cloud SQL's sql#operation."""

from __future__ import annotations

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpClient, wait_operation
from ansible_collections.deployml.mlops.plugins.module_utils.sqladmin import (
    wait_pending_operations, wait_sql_operation,
)
from tests.unit.test_gcp_client import FakeModule


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


def test_sql_operation_polled_until_done(server):
    server.answer((200, {"name": "op1", "status": "RUNNING"}), (200, {"name": "op1", "status": "DONE"}))
    client = client_for(server, "sqladmin")[0]
    done = wait_sql_operation(client, "p", {"name": "op1", "status": "PENDING"})
    assert done["status"] == "DONE"
    assert server.requests[0]["path"] == "/sql/v1beta4/projects/p/operations/op1"


def test_failed_sql_operation_names_every_error(server):
    failed = {"name": "op2", "status": "DONE", "operationType": "CREATE",
              "error": {"errors": [{"code": "INTERNAL_ERROR", "message": "disk quota"},
                                   {"code": "OTHER", "message": "second"}]}}
    client = client_for(server, "sqladmin")[0]
    with pytest.raises(GcpApiError) as failure:
        wait_sql_operation(client, "p", failed, resource="instance i")
    assert failure.value.reason == "INTERNAL_ERROR"
    assert str(failure.value) == ("instance i: no HTTP response INTERNAL_ERROR: CREATE operation op2 failed: "
                                  "disk quota; second")


def test_pending_operations_are_waited_for_and_old_failures_ignored(server):
    server.answer(
        (200, {"items": [{"name": "old", "status": "DONE", "error": {"errors": [{"code": "X"}]}},
                         {"name": "busy", "status": "RUNNING"}]}),
        (200, {"name": "busy", "status": "DONE", "error": {"errors": [{"code": "Y", "message": "failed"}]}}),
    )
    client = client_for(server, "sqladmin")[0]
    wait_pending_operations(client, "p", "i")
    assert [r["path"] for r in server.requests] == ["/sql/v1beta4/projects/p/operations?instance=i",
                                                    "/sql/v1beta4/projects/p/operations/busy"]
