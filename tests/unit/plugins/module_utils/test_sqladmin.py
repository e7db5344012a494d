"""Waiting for Cloud SQL's sql#operation (module_utils/sqladmin.py)."""

from __future__ import annotations

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError
from ansible_collections.deployml.mlops.plugins.module_utils.sqladmin import (
    wait_pending_operations, wait_sql_operation,
)
from ansible_collections.deployml.mlops.tests.unit.plugins.module_utils.test_gcp_operations import client_for


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
