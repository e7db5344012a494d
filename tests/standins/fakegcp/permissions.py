"""Who may call what: predefined roles, the permission each faked method checks, and the gate that enforces them.

With fake.realism.permissions on, a caller with a bearer token must hold the permission Google checks for the
method, on the resource or on its project (the only ancestor modelled), else 403 PERMISSION_DENIED in the API's
shape; an unknown token gets 401; an anonymous caller (no token) is allowed everything, as before. With
fake.realism.propagation on, a role binding counts only once it is older than the IAM propagation delay.

Sources:
- roles: Google's IAM roles reference, https://cloud.google.com/iam/docs/roles-permissions/<service> (run,
  secretmanager, iam, resourcemanager, serviceusage, cloudsql, artifactregistry, cloudbuild, cloudscheduler,
  storage, bigquery, logging) and "Basic roles" (https://cloud.google.com/iam/docs/roles-overview#basic). Each
  role keeps only the permissions of the services the pipeline touches; "svc.*" is written as the reference
  writes it. The basic roles are approximations: owner = everything, editor = everything but IAM policy writes
  and secret payloads, viewer = reads.
- permissions per method: each API's "IAM permissions" / "Access control" reference page (e.g.
  https://cloud.google.com/run/docs/reference/iam/permissions, https://cloud.google.com/secret-manager/docs/
  access-control, https://cloud.google.com/sql/docs/mysql/iam-permissions, https://cloud.google.com/
  artifact-registry/docs/access-control#permissions, https://cloud.google.com/build/docs/iam-roles-permissions,
  https://cloud.google.com/scheduler/docs/reference/iam-permissions (cloudscheduler.jobs.*)); cloudbilling's
  getBillingInfo needs resourcemanager.projects.get (its discovery document says so).
- error texts: as Google answers them in public reports: "Permission 'P' denied on resource 'R' (or it may not
  exist)." (Resource Manager, Cloud Run, Artifact Registry, Service Usage); Secret Manager says "denied for
  resource" (googleapis/python-secret-manager #389); IAM says "denied on resource (or it may not exist)." with
  no name; Cloud Scheduler "The principal (user or service account) lacks IAM permission ..." (terraform-provider-
  google #12069); Cloud SQL "The client is not authorized to make this request." (notAuthorized); Cloud Build
  "The caller does not have permission". actAs: Cloud Run "Permission 'iam.serviceaccounts.actAs' denied on
  service account X (or it may not exist)." (GoogleCloudPlatform/cloud-run-release-manager #81); Cloud Build
  "caller does not have permission to act as service account <unique id>" (gcloud builds submit reports);
  Cloud Scheduler the "lacks IAM permission" form (googleapis/nodejs-tasks #249, same front end).
- 401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other
  valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
"""

from __future__ import annotations

import fnmatch
import re

from tests.standins.fakegcp.errors import ApiError

IAM_DOMAIN = "iam.googleapis.com"

# ---- predefined roles -> permissions ----------------------------------------------------------------------------
# Patterns as the roles reference writes them ("run.*"); "-pattern" removes what an earlier pattern added.
PROJECT_READ = ["resourcemanager.projects.get", "resourcemanager.projects.list"]
ROLES = {
    # Basic roles (approximations, see the module docstring).
    "roles/owner": ["*"],
    "roles/editor": ["*", "-*.setIamPolicy", "-secretmanager.versions.access", "-iam.serviceAccounts.getAccessToken"],
    "roles/viewer": ["*.get", "*.list", "*.getIamPolicy", "-secretmanager.versions.access", "bigquery.tables.getData",
                     "serviceusage.services.get", "serviceusage.services.list"],
    "roles/browser": ["resourcemanager.projects.get", "resourcemanager.projects.list",
                      "resourcemanager.projects.getIamPolicy"],
    # Resource Manager / IAM / Service Usage
    "roles/resourcemanager.projectIamAdmin": ["resourcemanager.projects.get", "resourcemanager.projects.getIamPolicy",
                                              "resourcemanager.projects.setIamPolicy"],
    "roles/iam.serviceAccountAdmin": PROJECT_READ + [
        "iam.serviceAccounts.create", "iam.serviceAccounts.delete", "iam.serviceAccounts.disable",
        "iam.serviceAccounts.enable", "iam.serviceAccounts.get", "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccounts.list", "iam.serviceAccounts.setIamPolicy", "iam.serviceAccounts.undelete",
        "iam.serviceAccounts.update"],
    "roles/iam.serviceAccountUser": PROJECT_READ + ["iam.serviceAccounts.actAs", "iam.serviceAccounts.get",
                                                    "iam.serviceAccounts.list"],
    "roles/iam.serviceAccountTokenCreator": ["iam.serviceAccounts.get", "iam.serviceAccounts.getAccessToken",
                                             "iam.serviceAccounts.getOpenIdToken", "iam.serviceAccounts.signBlob",
                                             "iam.serviceAccounts.signJwt", "iam.serviceAccounts.implicitDelegation"],
    # Role Administrator: the custom roles of the project (and reading its policy, to see their bindings).
    "roles/iam.roleAdmin": PROJECT_READ + ["iam.roles.*", "resourcemanager.projects.getIamPolicy"],
    "roles/serviceusage.serviceUsageAdmin": PROJECT_READ + ["serviceusage.services.*", "serviceusage.operations.*",
                                                            "serviceusage.quotas.*"],
    # Cloud SQL
    "roles/cloudsql.admin": PROJECT_READ + ["cloudsql.*"],
    "roles/cloudsql.client": PROJECT_READ + ["cloudsql.instances.connect", "cloudsql.instances.get"],
    # Secret Manager
    "roles/secretmanager.admin": PROJECT_READ + ["secretmanager.*"],
    "roles/secretmanager.secretAccessor": ["secretmanager.versions.access"],
    # Cloud Run
    "roles/run.admin": PROJECT_READ + ["run.*"],
    "roles/run.viewer": PROJECT_READ + ["run.*.get", "run.*.list", "run.*.getIamPolicy"],
    "roles/run.invoker": ["run.jobs.run", "run.routes.invoke"],
    # Artifact Registry
    "roles/artifactregistry.admin": PROJECT_READ + ["artifactregistry.*"],
    "roles/artifactregistry.reader": [
        "artifactregistry.repositories.get", "artifactregistry.repositories.list",
        "artifactregistry.repositories.downloadArtifacts", "artifactregistry.dockerimages.*",
        "artifactregistry.packages.get", "artifactregistry.packages.list", "artifactregistry.versions.get",
        "artifactregistry.versions.list", "artifactregistry.tags.get", "artifactregistry.tags.list",
        "artifactregistry.files.get", "artifactregistry.files.list", "artifactregistry.locations.*"],
    "roles/artifactregistry.writer": [
        "artifactregistry.repositories.get", "artifactregistry.repositories.list",
        "artifactregistry.repositories.downloadArtifacts", "artifactregistry.repositories.uploadArtifacts",
        "artifactregistry.dockerimages.*", "artifactregistry.packages.get", "artifactregistry.packages.list",
        "artifactregistry.versions.get", "artifactregistry.versions.list", "artifactregistry.tags.*",
        "artifactregistry.files.get", "artifactregistry.files.list", "artifactregistry.locations.*"],
    # Cloud Build / Cloud Scheduler
    "roles/cloudbuild.builds.editor": PROJECT_READ + ["cloudbuild.builds.create", "cloudbuild.builds.get",
                                                      "cloudbuild.builds.list", "cloudbuild.builds.update",
                                                      "cloudbuild.workerpools.use", "serviceusage.services.use"],
    "roles/cloudscheduler.admin": PROJECT_READ + ["cloudscheduler.*", "serviceusage.services.list"],
    # Cloud Storage and BigQuery (served by emulators: checked only by projects.testIamPermissions here)
    "roles/storage.admin": PROJECT_READ + ["storage.*"],
    "roles/storage.objectAdmin": PROJECT_READ + ["storage.objects.*", "storage.multipartUploads.*",
                                                 "storage.managedFolders.*"],
    "roles/storage.objectUser": PROJECT_READ + [
        "storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list",
        "storage.objects.restore", "storage.objects.update", "storage.multipartUploads.*",
        "storage.managedFolders.create", "storage.managedFolders.delete", "storage.managedFolders.get",
        "storage.managedFolders.list"],
    "roles/storage.objectViewer": PROJECT_READ + ["storage.objects.get", "storage.objects.list",
                                                  "storage.managedFolders.get", "storage.managedFolders.list"],
    "roles/storage.legacyBucketReader": ["storage.buckets.get", "storage.objects.list"],
    "roles/bigquery.dataOwner": PROJECT_READ + ["bigquery.datasets.*", "bigquery.tables.*", "bigquery.models.*",
                                                "bigquery.routines.*"],
    "roles/bigquery.dataEditor": PROJECT_READ + [
        "bigquery.datasets.create", "bigquery.datasets.get", "bigquery.datasets.getIamPolicy",
        "bigquery.tables.*", "-bigquery.tables.setIamPolicy", "bigquery.models.*", "bigquery.routines.*"],
    "roles/bigquery.dataViewer": PROJECT_READ + [
        "bigquery.datasets.get", "bigquery.datasets.getIamPolicy", "bigquery.tables.get", "bigquery.tables.getData",
        "bigquery.tables.getIamPolicy", "bigquery.tables.list", "bigquery.tables.export", "bigquery.models.getData",
        "bigquery.models.getMetadata", "bigquery.models.list", "bigquery.routines.get", "bigquery.routines.list"],
    "roles/bigquery.jobUser": PROJECT_READ + ["bigquery.jobs.create"],
    # Monitoring and Logging (nothing the fake serves; listed so that granting them is accepted)
    "roles/monitoring.viewer": PROJECT_READ + [
        "monitoring.timeSeries.list", "monitoring.metricDescriptors.get", "monitoring.metricDescriptors.list",
        "monitoring.monitoredResourceDescriptors.get", "monitoring.monitoredResourceDescriptors.list",
        "monitoring.dashboards.get", "monitoring.dashboards.list", "monitoring.alertPolicies.get",
        "monitoring.alertPolicies.list"],
    "roles/logging.logWriter": ["logging.logEntries.create", "logging.logEntries.route"],
    "roles/logging.viewer": PROJECT_READ + ["logging.logEntries.list", "logging.logs.list", "logging.buckets.get",
                                            "logging.buckets.list", "logging.views.get", "logging.views.list"],
}
CUSTOM_ROLE = re.compile(r"^(projects|organizations)/[^/]+/roles/[A-Za-z0-9_.]+$")
NOT_SUPPORTED = "Role %s is not supported for this resource."


def known_role(role):
    """Predefined roles in the catalog and custom roles (projects/P/roles/x, organizations/O/roles/x)."""
    return role in ROLES or bool(CUSTOM_ROLE.match(role))


def role_grants(role, permission):
    """Whether a predefined role grants a permission (custom roles: Permissions.grants)."""
    granted = False
    for pattern in ROLES.get(role, ()):
        if pattern.startswith("-"):
            if fnmatch.fnmatchcase(permission, pattern[1:]):
                granted = False
        elif fnmatch.fnmatchcase(permission, pattern):
            granted = True
    return granted


# Permissions a project-level custom role cannot hold (they apply to organizations or folders only; Google
# answers "Permission resourcemanager.projects.list is not valid.", terraform-google-iam #158).
NOT_IN_PROJECT_ROLES = ("resourcemanager.projects.list", "resourcemanager.organizations.*", "resourcemanager.folders.*")
BASIC_ROLES = ("roles/owner", "roles/editor", "roles/viewer", "roles/browser")


def custom_role_permission_problem(permission):
    """Why a project custom role cannot include this permission (Google's message), or None. A permission is
    known when a predefined role of the catalog (not a basic one) grants it."""
    unknown = not any(role_grants(r, permission) for r in ROLES if r not in BASIC_ROLES)
    if unknown or "*" in permission or any(fnmatch.fnmatchcase(permission, p) for p in NOT_IN_PROJECT_ROLES):
        return "Permission %s is not valid." % permission
    return None


def roles_granting(permission):
    """The predefined roles that grant a permission, narrowest first (basic roles last)."""
    found = [r for r in ROLES if role_grants(r, permission)]
    basic = ("roles/owner", "roles/editor", "roles/viewer", "roles/browser")
    return sorted((r for r in found if r not in basic), key=lambda r: len(ROLES[r])) + [r for r in basic if r in found]


# ---- the permission each method checks, and where ------------------------------------------------------------------
# scope: where a grant counts besides the project: "project" (only the project policy), "service_account",
# "secret", "run_service", "run_job", "repository"; None: no permission is checked (the method returns what
# the caller may see, or names no project).
METHODS = {
    "cloudresourcemanager.projects.get": ("resourcemanager.projects.get", "project"),
    "cloudresourcemanager.projects.getIamPolicy": ("resourcemanager.projects.getIamPolicy", "project"),
    "cloudresourcemanager.projects.setIamPolicy": ("resourcemanager.projects.setIamPolicy", "project"),
    "cloudresourcemanager.projects.testIamPermissions": (None, None),
    "cloudbilling.projects.getBillingInfo": ("resourcemanager.projects.get", "project"),
    "serviceusage.services.get": ("serviceusage.services.get", "project"),
    "serviceusage.services.list": ("serviceusage.services.list", "project"),
    "serviceusage.services.batchGet": ("serviceusage.services.get", "project"),
    "serviceusage.services.enable": ("serviceusage.services.enable", "project"),
    "serviceusage.services.batchEnable": ("serviceusage.services.enable", "project"),
    "serviceusage.services.disable": ("serviceusage.services.disable", "project"),
    "serviceusage.operations.get": (None, None),  # operations/ID names no project
    "iam.projects.roles.create": ("iam.roles.create", "project"),
    "iam.projects.roles.get": ("iam.roles.get", "project"),
    "iam.projects.roles.list": ("iam.roles.list", "project"),
    "iam.projects.roles.patch": ("iam.roles.update", "project"),
    "iam.projects.roles.delete": ("iam.roles.delete", "project"),
    "iam.projects.roles.undelete": ("iam.roles.undelete", "project"),
    "iam.projects.serviceAccounts.create": ("iam.serviceAccounts.create", "project"),
    "iam.projects.serviceAccounts.list": ("iam.serviceAccounts.list", "project"),
    "iam.projects.serviceAccounts.get": ("iam.serviceAccounts.get", "service_account"),
    "iam.projects.serviceAccounts.patch": ("iam.serviceAccounts.update", "service_account"),
    "iam.projects.serviceAccounts.update": ("iam.serviceAccounts.update", "service_account"),
    "iam.projects.serviceAccounts.delete": ("iam.serviceAccounts.delete", "service_account"),
    "iam.projects.serviceAccounts.disable": ("iam.serviceAccounts.disable", "service_account"),
    "iam.projects.serviceAccounts.enable": ("iam.serviceAccounts.enable", "service_account"),
    "iam.projects.serviceAccounts.getIamPolicy": ("iam.serviceAccounts.getIamPolicy", "service_account"),
    "iam.projects.serviceAccounts.setIamPolicy": ("iam.serviceAccounts.setIamPolicy", "service_account"),
    "secretmanager.projects.secrets.create": ("secretmanager.secrets.create", "project"),
    "secretmanager.projects.secrets.list": ("secretmanager.secrets.list", "project"),
    "secretmanager.projects.secrets.get": ("secretmanager.secrets.get", "secret"),
    "secretmanager.projects.secrets.patch": ("secretmanager.secrets.update", "secret"),
    "secretmanager.projects.secrets.delete": ("secretmanager.secrets.delete", "secret"),
    "secretmanager.projects.secrets.addVersion": ("secretmanager.versions.add", "secret"),
    "secretmanager.projects.secrets.versions.get": ("secretmanager.versions.get", "secret"),
    "secretmanager.projects.secrets.versions.list": ("secretmanager.versions.list", "secret"),
    "secretmanager.projects.secrets.versions.access": ("secretmanager.versions.access", "secret"),
    "secretmanager.projects.secrets.versions.disable": ("secretmanager.versions.disable", "secret"),
    "secretmanager.projects.secrets.versions.enable": ("secretmanager.versions.enable", "secret"),
    "secretmanager.projects.secrets.versions.destroy": ("secretmanager.versions.destroy", "secret"),
    "secretmanager.projects.secrets.getIamPolicy": ("secretmanager.secrets.getIamPolicy", "secret"),
    "secretmanager.projects.secrets.setIamPolicy": ("secretmanager.secrets.setIamPolicy", "secret"),
    # Cloud SQL has no resource-level IAM: everything is checked on the project.
    "sql.operations.get": ("cloudsql.instances.get", "project"),
    "sql.operations.list": ("cloudsql.instances.get", "project"),
    "sql.instances.insert": ("cloudsql.instances.create", "project"),
    "sql.instances.get": ("cloudsql.instances.get", "project"),
    "sql.instances.list": ("cloudsql.instances.list", "project"),
    "sql.instances.patch": ("cloudsql.instances.update", "project"),
    "sql.instances.update": ("cloudsql.instances.update", "project"),
    "sql.instances.delete": ("cloudsql.instances.delete", "project"),
    "sql.databases.insert": ("cloudsql.databases.create", "project"),
    "sql.databases.get": ("cloudsql.databases.get", "project"),
    "sql.databases.list": ("cloudsql.databases.list", "project"),
    "sql.databases.patch": ("cloudsql.databases.update", "project"),
    "sql.databases.update": ("cloudsql.databases.update", "project"),
    "sql.databases.delete": ("cloudsql.databases.delete", "project"),
    "sql.users.insert": ("cloudsql.users.create", "project"),
    "sql.users.get": ("cloudsql.users.get", "project"),
    "sql.users.list": ("cloudsql.users.list", "project"),
    "sql.users.update": ("cloudsql.users.update", "project"),
    "sql.users.delete": ("cloudsql.users.delete", "project"),
    "artifactregistry.projects.locations.repositories.create": ("artifactregistry.repositories.create", "project"),
    "artifactregistry.projects.locations.repositories.list": ("artifactregistry.repositories.list", "project"),
    "artifactregistry.projects.locations.repositories.get": ("artifactregistry.repositories.get", "repository"),
    "artifactregistry.projects.locations.repositories.patch": ("artifactregistry.repositories.update", "repository"),
    "artifactregistry.projects.locations.repositories.delete": ("artifactregistry.repositories.delete", "repository"),
    "artifactregistry.projects.locations.operations.get": ("artifactregistry.repositories.get", "project"),
    "artifactregistry.projects.locations.repositories.getIamPolicy": ("artifactregistry.repositories.getIamPolicy",
                                                                      "repository"),
    "artifactregistry.projects.locations.repositories.setIamPolicy": ("artifactregistry.repositories.setIamPolicy",
                                                                      "repository"),
    "artifactregistry.projects.locations.repositories.dockerImages.list": ("artifactregistry.dockerimages.list",
                                                                           "repository"),
    "artifactregistry.projects.locations.repositories.dockerImages.get": ("artifactregistry.dockerimages.get",
                                                                          "repository"),
    "artifactregistry.projects.locations.repositories.packages.list": ("artifactregistry.packages.list", "repository"),
    "artifactregistry.projects.locations.repositories.packages.get": ("artifactregistry.packages.get", "repository"),
    "artifactregistry.projects.locations.repositories.packages.versions.list": ("artifactregistry.versions.list",
                                                                                "repository"),
    "artifactregistry.projects.locations.repositories.packages.versions.get": ("artifactregistry.versions.get",
                                                                               "repository"),
    "artifactregistry.projects.locations.repositories.packages.tags.list": ("artifactregistry.tags.list", "repository"),
    "artifactregistry.projects.locations.repositories.packages.tags.get": ("artifactregistry.tags.get", "repository"),
    "artifactregistry.projects.locations.repositories.packages.tags.create": ("artifactregistry.tags.create",
                                                                              "repository"),
    "artifactregistry.projects.locations.repositories.packages.tags.patch": ("artifactregistry.tags.update",
                                                                             "repository"),
    "artifactregistry.projects.locations.repositories.packages.tags.delete": ("artifactregistry.tags.delete",
                                                                              "repository"),
    "cloudbuild.projects.builds.create": ("cloudbuild.builds.create", "project"),
    "cloudbuild.projects.locations.builds.create": ("cloudbuild.builds.create", "project"),
    "cloudbuild.projects.builds.get": ("cloudbuild.builds.get", "project"),
    "cloudbuild.projects.locations.builds.get": ("cloudbuild.builds.get", "project"),
    "cloudbuild.projects.builds.list": ("cloudbuild.builds.list", "project"),
    "cloudbuild.projects.locations.builds.list": ("cloudbuild.builds.list", "project"),
    "cloudbuild.projects.builds.cancel": ("cloudbuild.builds.update", "project"),
    "cloudbuild.projects.locations.builds.cancel": ("cloudbuild.builds.update", "project"),
    "cloudbuild.projects.locations.operations.get": ("cloudbuild.builds.get", "project"),
    "cloudbuild.operations.get": (None, None),  # operations/ID names no project
    "cloudscheduler.projects.locations.jobs.create": ("cloudscheduler.jobs.create", "project"),
    "cloudscheduler.projects.locations.jobs.get": ("cloudscheduler.jobs.get", "project"),
    "cloudscheduler.projects.locations.jobs.list": ("cloudscheduler.jobs.list", "project"),
    "cloudscheduler.projects.locations.jobs.patch": ("cloudscheduler.jobs.update", "project"),
    "cloudscheduler.projects.locations.jobs.delete": ("cloudscheduler.jobs.delete", "project"),
    "cloudscheduler.projects.locations.jobs.pause": ("cloudscheduler.jobs.pause", "project"),
    "cloudscheduler.projects.locations.jobs.resume": ("cloudscheduler.jobs.resume", "project"),
    "cloudscheduler.projects.locations.jobs.run": ("cloudscheduler.jobs.run", "project"),
    "run.projects.locations.services.create": ("run.services.create", "project"),
    "run.projects.locations.services.list": ("run.services.list", "project"),
    "run.projects.locations.services.get": ("run.services.get", "run_service"),
    "run.projects.locations.services.patch": ("run.services.update", "run_service"),
    "run.projects.locations.services.delete": ("run.services.delete", "run_service"),
    "run.projects.locations.services.revisions.get": ("run.revisions.get", "run_service"),
    "run.projects.locations.services.revisions.list": ("run.revisions.list", "run_service"),
    "run.projects.locations.services.getIamPolicy": ("run.services.getIamPolicy", "run_service"),
    "run.projects.locations.services.setIamPolicy": ("run.services.setIamPolicy", "run_service"),
    "run.projects.locations.services.testIamPermissions": (None, None),
    "run.projects.locations.jobs.create": ("run.jobs.create", "project"),
    "run.projects.locations.jobs.list": ("run.jobs.list", "project"),
    "run.projects.locations.jobs.get": ("run.jobs.get", "run_job"),
    "run.projects.locations.jobs.patch": ("run.jobs.update", "run_job"),
    "run.projects.locations.jobs.delete": ("run.jobs.delete", "run_job"),
    "run.projects.locations.jobs.run": ("run.jobs.run", "run_job"),
    "run.projects.locations.jobs.executions.get": ("run.executions.get", "run_job"),
    "run.projects.locations.jobs.executions.list": ("run.executions.list", "run_job"),
    "run.projects.locations.jobs.executions.cancel": ("run.executions.cancel", "run_job"),
    "run.projects.locations.jobs.getIamPolicy": ("run.jobs.getIamPolicy", "run_job"),
    "run.projects.locations.jobs.setIamPolicy": ("run.jobs.setIamPolicy", "run_job"),
    "run.projects.locations.jobs.testIamPermissions": (None, None),
    "run.projects.locations.operations.get": ("run.operations.get", "project"),
}
# jobs.run with overrides needs one more permission (Cloud Run IAM permissions reference).
RUN_WITH_OVERRIDES = "run.jobs.runWithOverrides"

# The resource names a scope is read from, and the policy key (iam_policy.PolicyStore) of that resource.
SCOPE_NAME = {
    "service_account": re.compile(r"^projects/([^/]+)/serviceAccounts/([^/:]+)"),
    "secret": re.compile(r"^projects/([^/]+)/secrets/([^/:]+)"),
    "run_service": re.compile(r"^projects/([^/]+)/locations/([^/]+)/services/([^/:]+)"),
    "run_job": re.compile(r"^projects/([^/]+)/locations/([^/]+)/jobs/([^/:]+)"),
    "repository": re.compile(r"^projects/([^/]+)/locations/([^/]+)/repositories/([^/:]+)"),
}
NAME_PARAMS = ("name", "resource", "parent")
UNAUTHENTICATED = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                   "other valid authentication credential. See "
                   "https://developers.google.com/identity/sign-in/web/devconsole-project.")


def project_policy_key(project_id):
    return "cloudresourcemanager:projects/%s" % project_id


class Target:
    """What a permission is checked on: a display name, the project id, and the policy keys that can grant it."""

    def __init__(self, name, project_id, keys):
        self.name = name
        self.project_id = project_id
        self.keys = keys


class Permissions:
    """The permission checks of one FakeGcp: fake.permissions."""

    def __init__(self, fake):
        self.fake = fake

    # ---- effective roles ------------------------------------------------------------------------------------------
    def holds(self, member, permission, keys):
        """Whether member holds permission through a binding in any of these policies (counting propagation)."""
        policies = self.fake.policies
        for key in keys:
            if key.startswith("cloudresourcemanager:"):
                self.seed_project(key)
            for binding in policies.stored(key)["bindings"]:
                if not self.grants(binding["role"], permission):
                    continue
                for who in binding["members"]:
                    if who in (member, "allUsers", "allAuthenticatedUsers") \
                            and policies.effective(key, binding["role"], who):
                        return True
        return False

    def grants(self, role, permission):
        """Whether a role grants a permission: a predefined role by the catalog, a custom role (projects/P/roles/X)
        by its includedPermissions while it is in force (a deleted or DISABLED role's bindings have no effect)."""
        if role in ROLES:
            return role_grants(role, permission)
        iam = self.fake.apis.get("iam")
        custom = iam.custom_role(role) if iam is not None and CUSTOM_ROLE.match(role) else None
        return bool(custom) and permission in custom.get("includedPermissions", ())

    def seed_project(self, key):
        """A project's starting policy: the owner, and the roles fake.add_principal gave its principals."""
        bindings = OWNER_BINDINGS + [{"role": role, "members": [member]}
                                     for member, roles in self.fake.principal_roles.items() for role in sorted(roles)]
        self.fake.policies.seed(key, bindings)

    def holds_on_project(self, member, project_id, permission):
        return self.holds(member, permission, [project_policy_key(project_id)])

    # ---- resources --------------------------------------------------------------------------------------------------
    def _project_of(self, req):
        """The project id a request names, or None (an unknown project number is left to the handler)."""
        ref = None
        for param in NAME_PARAMS:
            value = req.params.get(param)
            if isinstance(value, str):
                match = re.match(r"^(?:v1/)?projects/([^/]+)", value) or re.match(r"^projects/([^/]+)", value)
                if match:
                    ref = match.group(1)
                    break
        if ref is None:
            ref = req.params.get("project") or req.params.get("projectId")
        if not ref or ref == "-":
            return None
        try:
            return self.fake.projects.resolve(ref)[0]
        except ApiError:
            return None

    def target(self, req, scope):
        """The Target of a request for a scope, or None when the request names no project."""
        project_id = self._project_of(req)
        name = next((req.params[p] for p in NAME_PARAMS if isinstance(req.params.get(p), str)), None)
        if scope == "service_account" and name:
            match = SCOPE_NAME[scope].match(name)
            if match:
                account = self.fake.apis["iam"].find_account(match.group(2)) if "iam" in self.fake.apis else None
                email = account["email"] if account else match.group(2)
                if project_id is None and "@" in email:
                    project_id = email.split("@", 1)[1].split(".", 1)[0]
                if project_id is None:
                    return None
                return Target(name, project_id, ["iam:%s" % email, project_policy_key(project_id)])
        if project_id is None:
            return None
        keys = [project_policy_key(project_id)]
        match = SCOPE_NAME[scope].match(name or "") if scope in SCOPE_NAME else None
        if match:
            parts = match.groups()
            if scope == "secret":
                keys.insert(0, "secretmanager:%s/%s" % (project_id, parts[1]))
            elif scope == "run_service":
                keys.insert(0, "run:services/%s/%s/%s" % (project_id, parts[1], parts[2]))
            elif scope == "run_job":
                keys.insert(0, "run:jobs/%s/%s/%s" % (project_id, parts[1], parts[2]))
            elif scope == "repository":
                keys.insert(0, "artifactregistry:projects/%s/locations/%s/repositories/%s" % (project_id, parts[1],
                                                                                              parts[2]))
        shown = name if name and name.startswith("projects/") else "projects/%s" % project_id
        if req.api.name == "sqladmin":
            shown = "projects/%s" % project_id
        elif req.api.name == "cloudresourcemanager":  # Resource Manager names the full resource
            shown = "//cloudresourcemanager.googleapis.com/projects/%s" % project_id
        return Target(shown, project_id, keys)

    # ---- the gate ---------------------------------------------------------------------------------------------------
    def _enforced(self, req):
        return self.fake.realism.permissions and req.api.name != "oauth2" and req.token is not None

    def authenticate(self, req):
        """The first gate: a bearer token no principal is registered for is refused (realism.permissions only)."""
        if self._enforced(req) and req.principal is None:
            raise ApiError(401, UNAUTHENTICATED, status="UNAUTHENTICATED", reason="authError", details=[{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                "domain": "googleapis.com", "metadata": {"service": "%s.googleapis.com" % req.api.name,
                                                         "method": req.method.id}}])

    def gate(self, req):
        """The last gate (after the API-enabled check): refuse a call whose caller lacks the permission."""
        if not self._enforced(req) or req.principal is None:
            return
        permission, scope = METHODS.get(req.method.id, (None, None))
        if permission is None:
            return
        target = self.target(req, scope)
        if target is None:
            return
        if not self.holds(req.principal, permission, target.keys):
            raise denied(req.api.name, permission, target.name)
        if req.method.id == "run.projects.locations.jobs.run" and (req.body or {}).get("overrides") \
                and not self.holds(req.principal, RUN_WITH_OVERRIDES, target.keys):
            raise denied(req.api.name, RUN_WITH_OVERRIDES, target.name)
        account = acts_as(req, target.project_id, self.fake.projects)
        if account:  # actAs counts on the account's own policy or its project's
            keys = ["iam:%s" % account, project_policy_key(account_project(account, target.project_id))]
            if not self.holds(req.principal, "iam.serviceAccounts.actAs", keys):
                raise act_as_denied(req.api.name, account, self.fake)

    # ---- projects.testIamPermissions ------------------------------------------------------------------------------
    def test(self, member, project_id, permissions):
        """The subset of permissions member holds on the project (anonymous: all of them)."""
        if member is None:
            return list(permissions)
        return [p for p in permissions if self.holds_on_project(member, project_id, p)]

    def secret_access(self, member, project_id, secret_id):
        """Whether a runtime service account may read a secret's payload now (Cloud Run revisions)."""
        return self.holds(member, "secretmanager.versions.access",
                          ["secretmanager:%s/%s" % (project_id, secret_id), project_policy_key(project_id)])


# The owner every project starts with (resourcemanager.py seeds the same).
OWNER_BINDINGS = [{"role": "roles/owner", "members": ["user:owner@example.com"]}]


def account_project(email, default):
    match = re.match(r"^[^@]+@([a-z][a-z0-9-]+)\.iam\.gserviceaccount\.com$", email)
    return match.group(1) if match else default


def acts_as(req, project_id, projects):
    """The service account a create/update makes a resource run as (caller needs actAs on it), or None."""
    method, body = req.method.id, req.body or {}
    if method in ("run.projects.locations.services.create", "run.projects.locations.services.patch"):
        return (body.get("template") or {}).get("serviceAccount") or default_compute_account(project_id, projects)
    if method in ("run.projects.locations.jobs.create", "run.projects.locations.jobs.patch"):
        template = ((body.get("template") or {}).get("template") or {})
        return template.get("serviceAccount") or default_compute_account(project_id, projects)
    if method in ("cloudbuild.projects.builds.create", "cloudbuild.projects.locations.builds.create"):
        account = body.get("serviceAccount") or ""
        return account.rsplit("/", 1)[-1] or None
    if method in ("cloudscheduler.projects.locations.jobs.create", "cloudscheduler.projects.locations.jobs.patch"):
        target = body.get("httpTarget") or {}
        token = target.get("oauthToken") or target.get("oidcToken") or {}
        return token.get("serviceAccountEmail") or None
    return None


def default_compute_account(project_id, projects):
    """Cloud Run's runtime account when the template names none: the Compute Engine default account."""
    return "%s-compute@developer.gserviceaccount.com" % projects.resolve(project_id)[1]


def error_info(domain, permission, resource):
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED", "domain": domain,
            "metadata": {"permission": permission, "resource": resource}}


def denied(api, permission, resource):
    """403 for a missing permission, worded as the API words it."""
    if api == "sqladmin":
        return ApiError(403, "The client is not authorized to make this request.", status="PERMISSION_DENIED",
                        reason="notAuthorized")
    if api == "cloudbuild":
        return ApiError(403, "The caller does not have permission", status="PERMISSION_DENIED", reason="forbidden",
                        details=[error_info(IAM_DOMAIN, permission, resource)])
    if api == "cloudscheduler":
        message = ('The principal (user or service account) lacks IAM permission "%s" for the resource "%s" '
                   "(or the resource may not exist)." % (permission, resource))
    elif api == "iam":
        message = "Permission '%s' denied on resource (or it may not exist)." % permission
    elif api == "secretmanager":
        message = "Permission '%s' denied for resource '%s' (or it may not exist)." % (permission, resource)
    else:
        message = "Permission '%s' denied on resource '%s' (or it may not exist)." % (permission, resource)
    domain = {"cloudresourcemanager": "cloudresourcemanager.googleapis.com",
              "secretmanager": "secretmanager.googleapis.com"}.get(api, IAM_DOMAIN)
    return ApiError(403, message, status="PERMISSION_DENIED", reason="forbidden",
                    details=[error_info(domain, permission, resource)])


def act_as_denied(api, account, fake):
    """403 for a missing iam.serviceAccounts.actAs on the account a resource would run as."""
    resource = "projects/-/serviceAccounts/%s" % account
    if api == "cloudbuild":
        found = fake.apis["iam"].find_account(account) if "iam" in fake.apis else None
        named = "projects/%s/serviceAccounts/%s" % (account_project(account, "-"), found["uniqueId"]) if found else None
        message = "caller does not have permission to act as service account %s" % (named or resource)
    elif api == "cloudscheduler":
        message = ('The principal (user or service account) lacks IAM permission "iam.serviceAccounts.actAs" for the '
                   'resource "%s" (or the resource may not exist).' % account)
    else:
        message = "Permission 'iam.serviceaccounts.actAs' denied on service account %s (or it may not exist)." % account
    return ApiError(403, message, status="PERMISSION_DENIED", reason="forbidden",
                    details=[error_info(IAM_DOMAIN, "iam.serviceAccounts.actAs", resource)])


# ---- Cloud Run: a revision's runtime account must be able to read the secrets it uses --------------------------------
# Google's text (getsentry/eng-pipes #893, sourcegraph #59045): the revision fails with reason
# SECRETS_ACCESS_CHECK_FAILED and "Revision 'X' is not ready and cannot serve traffic. <this>".
SECRET_DENIED = ("%s: Permission denied on secret: %s for Revision service account %s. The service account used "
                 "must be granted the 'Secret Manager Secret Accessor' role (roles/secretmanager.secretAccessor) at "
                 "the secret, project or higher level.")
SECRET_REF = re.compile(r"^(?:projects/([^/]+)/secrets/)?([^/]+)$")


def secret_uses(template):
    """(field path as Cloud Run reports it, secret reference, version) for each secret a revision template uses."""
    for ci, container in enumerate(template.get("containers") or []):
        for ei, env in enumerate(container.get("env") or []):
            ref = (env.get("valueSource") or {}).get("secretKeyRef")
            if ref:
                yield ("spec.template.spec.containers[%d].env[%d].value_from.secret_key_ref.name" % (ci, ei),
                       ref.get("secret"), ref.get("version") or "latest")
    for vi, volume in enumerate(template.get("volumes") or []):
        secret = volume.get("secret")
        if secret:
            for item in secret.get("items") or [{}]:
                yield ("spec.template.spec.volumes[%d].secret.secret_name" % vi, secret.get("secret"),
                       item.get("version") or "latest")


def secret_denial(fake, template, project_id):
    """The message a revision (or execution) of this template fails with because its runtime account cannot
    (yet) read a secret, or None. Checked only with fake.realism.permissions or .propagation on."""
    if not (fake.realism.permissions or fake.realism.propagation):
        return None
    account = template.get("serviceAccount")
    if not account:
        return None
    for where, ref, version in secret_uses(template):
        match = SECRET_REF.match(ref or "")
        if not match:
            continue
        owner, number = fake.projects.resolve(match.group(1) or project_id)
        if not fake.permissions.secret_access("serviceAccount:%s" % account, owner, match.group(2)):
            shown = "projects/%s/secrets/%s/versions/%s" % (match.group(1) or number, match.group(2), version)
            return SECRET_DENIED % (where, shown, account)
    return None
