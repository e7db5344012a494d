"""Service Usage v1: services get, list, batchGet, enable, disable, batchEnable, and operations.get.

A small catalog of services with dependencies: enabling a service enables what it depends on; disabling a
service that an enabled service depends on fails FAILED_PRECONDITION unless disableDependentServices is
set (then the dependents go too). Unknown services answer 403 as Google does. Names in answers use the
project number. A request that changes nothing returns the already-done operations/noop.DONE_OPERATION.

Enablement (fake.realism.service_enablement): a gate refuses a call to any other faked API when its service
is disabled in the project the request names, or was enabled less than durations "serviceusage.propagation"
ago, with Google's 403 SERVICE_DISABLED answer (service_disabled() below). Service Usage itself is always
callable. Simplification: Google bills resource-based APIs to the project of the resource, but "client-based"
ones such as Resource Manager to the caller's quota project (ADC's quota project, or the project of a
service account key); the fake checks the project the request names for every API, which is the same
project in a single-project deployment. Tests skip the wait with enable_now(project, services), also served
over HTTP: POST /_fake/serviceusage:enable_now {"project": "p", "services": ["run.googleapis.com"]}.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.durations import duration
from tests.standins.fakegcp.errors import ApiError, failed_precondition, invalid
from tests.standins.fakegcp.operations import render_lro
from tests.standins.fakegcp.util import paginate

TYPE = "type.googleapis.com/google.api.serviceusage.v1."
# service -> (title, services it depends on)
CATALOG = {
    "aiplatform.googleapis.com": ("Vertex AI API", ()),
    "analyticshub.googleapis.com": ("Analytics Hub API", ()),
    "bigqueryconnection.googleapis.com": ("BigQuery Connection API", ()),
    "bigquerydatapolicy.googleapis.com": ("BigQuery Data Policy API", ()),
    "bigquerydatatransfer.googleapis.com": ("BigQuery Data Transfer API", ()),
    "bigquerymigration.googleapis.com": ("BigQuery Migration API", ()),
    "bigqueryreservation.googleapis.com": ("BigQuery Reservation API", ()),
    "cloudapis.googleapis.com": ("Google Cloud APIs", ()),
    "cloudbilling.googleapis.com": ("Cloud Billing API", ()),
    "cloudtrace.googleapis.com": ("Cloud Trace API", ()),
    "dataform.googleapis.com": ("Dataform API", ()),
    "dataplex.googleapis.com": ("Cloud Dataplex API", ()),
    "datastore.googleapis.com": ("Cloud Datastore API", ()),
    "servicemanagement.googleapis.com": ("Service Management API", ()),
    "sql-component.googleapis.com": ("Cloud SQL", ()),
    "storage-api.googleapis.com": ("Google Cloud Storage JSON API", ()),
    "storage-component.googleapis.com": ("Cloud Storage", ()),
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
# What a new project has enabled: "Services enabled by default" in Google's docs
# (https://cloud.google.com/service-usage/docs/enabled-service#default). Not among them: iam,
# cloudresourcemanager, run, sqladmin, secretmanager, artifactregistry, cloudbuild, cloudscheduler, cloudbilling.
DEFAULT_ENABLED = (
    "analyticshub.googleapis.com", "bigquery.googleapis.com", "bigqueryconnection.googleapis.com",
    "bigquerydatapolicy.googleapis.com", "bigquerydatatransfer.googleapis.com", "bigquerymigration.googleapis.com",
    "bigqueryreservation.googleapis.com", "bigquerystorage.googleapis.com", "cloudapis.googleapis.com",
    "cloudtrace.googleapis.com", "dataform.googleapis.com", "dataplex.googleapis.com", "datastore.googleapis.com",
    "logging.googleapis.com", "monitoring.googleapis.com", "servicemanagement.googleapis.com",
    "serviceusage.googleapis.com", "sql-component.googleapis.com", "storage-api.googleapis.com",
    "storage-component.googleapis.com", "storage.googleapis.com",
)
NOOP = "operations/noop.DONE_OPERATION"
# Faked API (its key in fake.apis) -> the service that must be enabled to call it. Service Usage is not here:
# it answers whatever the state of its own service.
SERVICE_OF_API = {
    "artifactregistry": "artifactregistry.googleapis.com", "cloudbilling": "cloudbilling.googleapis.com",
    "cloudbuild": "cloudbuild.googleapis.com", "cloudresourcemanager": "cloudresourcemanager.googleapis.com",
    "cloudscheduler": "cloudscheduler.googleapis.com", "iam": "iam.googleapis.com", "run": "run.googleapis.com",
    "secretmanager": "secretmanager.googleapis.com", "sqladmin": "sqladmin.googleapis.com",
}
ACTIVATION_URL = "https://console.developers.google.com/apis/api/%s/overview?project=%s"
PROJECT_IN_PATH = re.compile(r"(?:^|/)projects/([^/:]+)")
ACCOUNT_PROJECT = re.compile(r"@([a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com")


class ServiceDisabled(ApiError):
    """Google's answer to a call to an API that is not enabled (or not yet usable) in the consumer project:
    403 PERMISSION_DENIED with ErrorInfo reason SERVICE_DISABLED, a LocalizedMessage and a Help link; the
    legacy errors[] entry says usageLimits/accessNotConfigured (seen in real answers, e.g.
    google-gemini/gemini-cli #1343, hashicorp/terraform-provider-google #8214)."""

    def __init__(self, service, number):
        title = CATALOG[service][0]
        url = ACTIVATION_URL % (service, number)
        message = ("%s has not been used in project %s before or it is disabled. Enable it by visiting %s then "
                   "retry. If you enabled this API recently, wait a few minutes for the action to propagate to "
                   "our systems and retry." % (title, number, url))
        super().__init__(403, message, status="PERMISSION_DENIED", reason="accessNotConfigured", details=[
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
             "domain": "googleapis.com",
             "metadata": {"service": service, "consumer": "projects/%s" % number, "activationUrl": url,
                          "serviceTitle": title, "containerInfo": number}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
            {"@type": "type.googleapis.com/google.rpc.Help",
             "links": [{"description": "Google developers console API activation", "url": url}]},
        ])

    def body(self):
        body = super().body()
        body["error"]["errors"] = [{"message": self.message, "domain": "usageLimits", "reason": "accessNotConfigured",
                                    "extendedHelp": "https://console.developers.google.com"}]
        return body


def _project_named(request):
    """The project a request names in its path (an id or a number), or None. IAM's projects/-/serviceAccounts/EMAIL
    names the project in the account's email."""
    match = PROJECT_IN_PATH.search(request.path)
    if not match:
        return None
    if match.group(1) == "-":
        account = ACCOUNT_PROJECT.search(unquote(request.path))
        return account.group(1) if account else None
    return unquote(match.group(1))


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

    controls = ("enable_now",)

    def __init__(self, fake):
        super().__init__(fake)
        fake.gates.append(self.gate)

    def reset(self):
        super().reset()
        self.state["enabled"] = {}  # project id -> set of enabled service names
        # project id -> {service: realism clock when its enable operation finished}; a service enabled without
        # an entry (by default, or by enable_now) was enabled long ago.
        self.state["enabled_at"] = {}

    def enabled(self, project_id):
        return self.state["enabled"].setdefault(project_id, set(DEFAULT_ENABLED))

    def _mark_enabled(self, project_id, services):
        """Record when services that were off became enabled: they answer SERVICE_DISABLED a while longer."""
        enabled = self.enabled(project_id)
        since = self.state["enabled_at"].setdefault(project_id, {})
        for service in services:
            if service not in enabled:
                since[service] = self.fake.realism.now()
        enabled.update(services)

    def _mark_disabled(self, project_id, services):
        self.enabled(project_id).difference_update(services)
        for service in services:
            self.state["enabled_at"].get(project_id, {}).pop(service, None)

    def usable(self, project_id, service):
        """Whether calls to service in the project are answered: enabled, and the enablement has propagated."""
        if service not in self.enabled(project_id):
            return False
        since = self.state["enabled_at"].get(project_id, {}).get(service)
        realism = self.fake.realism
        return since is None or realism.now() - since >= realism.seconds(duration("serviceusage.propagation"))

    def gate(self, request):
        """Refuse a call to a faked API that is not usable in the project the request names (a request gate)."""
        if not self.fake.realism.service_enablement:
            return
        service = SERVICE_OF_API.get(request.api.name)
        ref = _project_named(request) if service else None
        if ref is None:
            return
        try:
            project_id, number = self.projects.resolve(ref)
        except ApiError:
            return  # a malformed or unknown project: the handler answers it as Google does
        if not self.usable(project_id, service):
            raise ServiceDisabled(service, number)

    def enable_now(self, project, services):
        """Test control: enable services (and what they depend on) in project as if long ago: no delay."""
        if isinstance(services, str) or not all(s in CATALOG for s in services):
            raise ValueError("services must be a list of known service names, got %r" % (services,))
        try:
            project_id, _number = self.projects.resolve(project)
        except ApiError as exc:
            raise ValueError(exc.message) from None
        wanted = _closure(services, lambda s: CATALOG[s][1])
        self.enabled(project_id).update(wanted)
        for service in wanted:
            self.state["enabled_at"].get(project_id, {}).pop(service, None)

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

        kind = "serviceusage.disable" if response_type == "DisableServiceResponse" else "serviceusage.enable"
        return self.start_lro("operations/acf.p2-%s-%s" % (number, self.operations.new_id()), complete, metadata,
                              kind=kind, target=", ".join(metadata["resourceNames"]))

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
        return self._operation(project_id, number, services, lambda: self._mark_enabled(project_id, wanted),
                               response_type)

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
        return self._operation(project_id, number, [service], lambda: self._mark_disabled(project_id, going),
                               "DisableServiceResponse")

    @handles("serviceusage.operations.get")
    def get_operation(self, req):
        return self.poll_lro(req["name"])
