# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Cloud SQL Admin API v1beta4: resource paths and its own kind of operation (sql#operation).

Cloud SQL does not use google.longrunning: every write returns a sql#operation whose `status` goes
PENDING -> RUNNING -> DONE, read back with operations.get, and which carries `error.errors[]` on failure.
"""

from __future__ import annotations

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError
from ansible_collections.deployml.mlops.plugins.module_utils.resource import ResourceError

API = "sqladmin"


def project_path(project):
    return "/sql/v1beta4/projects/%s" % project


def instance_path(project, instance):
    return "%s/instances/%s" % (project_path(project), instance)


def operation_failure(operation, resource=None):
    """The GcpApiError a failed sql#operation stands for."""
    errors = (operation.get("error") or {}).get("errors") or [{}]
    reason = errors[0].get("code") or "OPERATION_FAILED"
    messages = "; ".join(e.get("message") or e.get("code") or "unknown error" for e in errors)
    return GcpApiError(None, reason, "%s operation %s failed: %s"
                       % (operation.get("operationType", "Cloud SQL"), operation.get("name"), messages),
                       resource=resource)


def wait_sql_operation(client, project, operation, resource=None, raise_error=True):
    """Poll a sql#operation until DONE; raise its error when it failed (unless told not to), else return it."""
    path = "%s/operations/%s" % (project_path(project), operation["name"])
    if operation.get("status") != "DONE":
        operation = client.wait(
            lambda: client.request("GET", API, path, resource=resource),
            lambda op: op.get("status") == "DONE", resource=resource,
        )
    if operation.get("error") and raise_error:
        raise operation_failure(operation, resource)
    return operation


def wait_pending_operations(client, project, instance, resource=None):
    """Wait for operations still running on an instance (left by an earlier run that timed out).

    A re-run after a timeout must not start a second change on an instance that is still busy:
    Cloud SQL would refuse it with 409 (operation in progress). How an old operation ended does not
    matter: the caller reads the resource afterwards and converges from what is there.
    """
    listing = client.request("GET", API, "%s/operations" % project_path(project),
                             params={"instance": instance}, resource=resource)
    for operation in listing.get("items") or []:
        if operation.get("status") != "DONE":
            wait_sql_operation(client, project, operation, resource, raise_error=False)


def missing_instance(module, what):
    """A database or user whose instance does not exist: an error, except in a check run, where an earlier
    task (deployml.mlops.cloud_sql_instance) would have created the instance."""
    instance, project = module.params["instance"], module.params["project"]
    if not module.check_mode:
        raise ResourceError("Cloud SQL instance %s does not exist in project %s: create it first "
                            "(deployml.mlops.cloud_sql_instance)" % (instance, project))
    module.warn("Cloud SQL instance %s does not exist (yet): the %s would be created once it does" % (instance, what))
