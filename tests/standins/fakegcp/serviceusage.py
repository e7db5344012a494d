"""Service Usage v1: services get, list, batchGet, enable, disable, batchEnable, and operations.get.

A small catalog of services with dependencies: enabling a service enables what it depends on; disabling a
service that an enabled service depends on fails FAILED_PRECONDITION unless disableDependentServices is
set (then the dependents go too). Unknown services answer 403 as Google does. Names in answers use the
project number. A request that changes nothing returns the already-done operations/noop.DONE_OPERATION.
"""

from __future__ import annotations

import re

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.errors import ApiError, failed_precondition, invalid
from tests.standins.fakegcp.operations import render_lro
from tests.standins.fakegcp.util import paginate

TYPE = "type.googleapis.com/google.api.serviceusage.v1."
# service -> (title, services it depends on)
CATALOG = {
    "aiplatform.googleapis.com": ("Vertex AI API", ()),
    "artifactregistry.googleapis.com": ("Artifact Registry API", ()),
    "bigquery.googleapis.com": ("BigQuery API", ("bigquerystorage.googleapis.com",)),
    "bigquerystorage.googleapis.com": ("BigQuery Storage API", ()),
    "cloudfunctions.googleapis.com": ("Cloud Functions API", ()),
    "cloudkms.googleapis.com": ("Cloud Key Management Service (KMS) API", ()),
    "containerregistry.googleapis.com": ("Container Registry API", ()),
    "dns.googleapis.com": ("Cloud DNS API", ()),
    "eventarc.googleapis.com": ("Eventarc API", ()),
    "pubsub.googleapis.com": ("Cloud Pub/Sub API", ()),
    "redis.googleapis.com": ("Google Cloud Memorystore for Redis API", ()),
    "vpcaccess.googleapis.com": ("Serverless VPC Access API", ()),
    "workflows.googleapis.com": ("Workflows API", ()),
    "cloudbuild.googleapis.com": ("Cloud Build API", ("artifactregistry.googleapis.com", "logging.googleapis.com",
                                                      "storage.googleapis.com")),
    "cloudresourcemanager.googleapis.com": ("Cloud Resource Manager API", ()),
    "cloudscheduler.googleapis.com": ("Cloud Scheduler API", ()),
    "compute.googleapis.com": ("Compute Engine API", ()),
    "iam.googleapis.com": ("Identity and Access Management (IAM) API", ()),
    "iamcredentials.googleapis.com": ("IAM Service Account Credentials API", ()),
    "logging.googleapis.com": ("Cloud Logging API", ()),
    "monitoring.googleapis.com": ("Cloud Monitoring API", ()),
    "run.googleapis.com": ("Cloud Run Admin API", ("artifactregistry.googleapis.com", "iamcredentials.googleapis.com")),
    "secretmanager.googleapis.com": ("Secret Manager API", ()),
    "servicenetworking.googleapis.com": ("Service Networking API", ("compute.googleapis.com",)),
    "serviceusage.googleapis.com": ("Service Usage API", ()),
    "sqladmin.googleapis.com": ("Cloud SQL Admin API", ()),
    "storage.googleapis.com": ("Cloud Storage API", ()),
}
# What a new project has enabled.
DEFAULT_ENABLED = ("bigquery.googleapis.com", "bigquerystorage.googleapis.com", "logging.googleapis.com",
                   "monitoring.googleapis.com", "serviceusage.googleapis.com", "storage.googleapis.com")
NOOP = "operations/noop.DONE_OPERATION"


def _closure(names, edges):
    """names plus everything reachable through edges (service -> related services)."""
    out, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo.extend(edges(name))
    return out


def dependents(name):
    return tuple(s for s, (_title, deps) in CATALOG.items() if name in deps)


class ServiceUsage(Api):
    name = "serviceusage"
    document = "serviceusage.v1"

    def reset(self):
        super().reset()
        self.state["enabled"] = {}  # project id -> set of enabled service names

    def enabled(self, project_id):
        return self.state["enabled"].setdefault(project_id, set(DEFAULT_ENABLED))

    def _parent(self, parent):
        kind, ref = parent.split("/", 1)
        if kind != "projects":
            raise invalid("The fake serves services of projects only, not %s." % parent, field="parent")
        return self.projects.resolve(ref)

    @staticmethod
    def _known(names):
        unknown = [n for n in names if n not in CATALOG]
        if unknown:
            raise ApiError(403, "Not found or permission denied for service(s): %s." % ", ".join(unknown),
                           status="PERMISSION_DENIED", reason="forbidden", details=[{
                               "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                               "reason": "SERVICE_CONFIG_NOT_FOUND_OR_PERMISSION_DENIED",
                               "domain": "serviceusage.googleapis.com",
                               "metadata": {"services": ",".join(unknown)}}])

    def _split(self, name):
        match = re.match(r"^([^/]+/[^/]+)/services/([^/]+)$", name)
        project_id, number = self._parent(match.group(1))
        self._known([match.group(2)])
        return project_id, number, match.group(2)

    def view(self, project_id, number, service):
        title = CATALOG[service][0]
        return {"name": "projects/%s/services/%s" % (number, service), "parent": "projects/%s" % number,
                "config": {"name": service, "title": title, "documentation": {}, "quota": {}, "authentication": {},
                           "usage": {"requirements": ["serviceusage.googleapis.com/tos/cloud"]}, "monitoring": {}},
                "state": "ENABLED" if service in self.enabled(project_id) else "DISABLED"}

    def _operation(self, project_id, number, services, finish, response_type):
        """Start an operation, or return the done no-op one when nothing would change."""
        metadata = {"@type": TYPE + "OperationMetadata",
                    "resourceNames": ["projects/%s/services/%s" % (number, s) for s in services]}
        if finish is None:
            op = self.operations.done_now(NOOP, self.name, metadata=metadata,
                                          response=self._response(project_id, number, services, response_type))
            return render_lro(op)

        def complete(ok):
            if ok:
                finish()
                return self._response(project_id, number, services, response_type)
            return None

        return self.start_lro("operations/acf.p2-%s-%s" % (number, self.operations.new_id()), complete, metadata)

    def _response(self, project_id, number, services, response_type):
        body = {"@type": TYPE + response_type}
        views = [self.view(project_id, number, s) for s in services]
        if response_type == "BatchEnableServicesResponse":
            body["services"] = views
        else:
            body["service"] = views[0]
        return body

    def _enable(self, project_id, number, services, response_type):
        wanted = _closure(services, lambda s: CATALOG[s][1])
        enabled = self.enabled(project_id)
        if wanted <= enabled:
            return self._operation(project_id, number, services, None, response_type)
        return self._operation(project_id, number, services, lambda: enabled.update(wanted), response_type)

    @handles("serviceusage.services.get")
    def get(self, req):
        project_id, number, service = self._split(req["name"])
        return self.view(project_id, number, service)

    @handles("serviceusage.services.list")
    def list(self, req):
        project_id, number = self._parent(req["parent"])
        wanted = None
        if req.get("filter"):
            match = re.match(r"^state:(ENABLED|DISABLED)$", req["filter"].strip())
            if not match:
                raise invalid("Invalid filter %r: the fake supports state:ENABLED and state:DISABLED." % req["filter"],
                              field="filter")
            wanted = match.group(1)
        views = [self.view(project_id, number, s) for s in sorted(CATALOG)]
        views = [v for v in views if wanted in (None, v["state"])]
        page, token = paginate(views, req.get("pageSize"), req.get("pageToken"), default_size=50, max_size=200)
        body = {"services": page} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("serviceusage.services.batchGet")
    def batch_get(self, req):
        project_id, number = self._parent(req["parent"])
        names = req.get("names") or []
        names = [names] if isinstance(names, str) else names
        if not names or len(names) > 30:
            raise invalid("batchGet takes 1 to 30 names, got %d." % len(names), field="names")
        services = []
        for name in names:
            match = re.match(r"^([^/]+/[^/]+)/services/([^/]+)$", name)
            if not match or self._parent(match.group(1))[0] != project_id:
                raise invalid("Invalid service name %s: expected %s/services/SERVICE." % (name, req["parent"]),
                              field="names")
            services.append(match.group(2))
        self._known(services)
        return {"services": [self.view(project_id, number, s) for s in services]}

    @handles("serviceusage.services.enable")
    def enable(self, req):
        project_id, number, service = self._split(req["name"])
        return self._enable(project_id, number, [service], "EnableServiceResponse")

    @handles("serviceusage.services.batchEnable")
    def batch_enable(self, req):
        project_id, number = self._parent(req["parent"])
        services = req.body.get("serviceIds") or []
        if not services:
            raise invalid("Invalid request: service_ids must name at least one service.", field="service_ids")
        if len(services) > 20:
            raise invalid("Invalid request: at most 20 services can be enabled in one batch, got %d." % len(services),
                          field="service_ids")
        self._known(services)
        return self._enable(project_id, number, services, "BatchEnableServicesResponse")

    @handles("serviceusage.services.disable")
    def disable(self, req):
        project_id, number, service = self._split(req["name"])
        enabled = self.enabled(project_id)
        if service not in enabled:
            return self._operation(project_id, number, [service], None, "DisableServiceResponse")
        going = _closure([service], dependents) & enabled
        active = sorted(going - {service})
        if active and not req.body.get("disableDependentServices"):
            raise failed_precondition(
                "The service %s is depended on by the following active service(s): %s; Please specify "
                "disable_dependent_services=true if you want to proceed with disabling all services."
                % (service, ",".join(active)))
        return self._operation(project_id, number, [service], lambda: enabled.difference_update(going),
                               "DisableServiceResponse")

    @handles("serviceusage.operations.get")
    def get_operation(self, req):
        return self.poll_lro(req["name"])
