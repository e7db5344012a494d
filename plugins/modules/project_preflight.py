#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: project_preflight
short_description: Check a Google Cloud project, its deployer and an inventory before anything is changed
version_added: 0.1.0
description:
  - Reads, never writes. Finds what would make a deployment fail halfway and reports all of it at once, in
    one table, each problem with the C(gcloud) command (or inventory change) that fixes it. Fails when
    anything is missing; warnings do not fail.
  - V(identity) - who the credentials are; the service account of a key, otherwise the e-mail the OAuth2
    C(tokeninfo) endpoint reports for the session's access token; V(anonymous) for emulators and stand-ins.
  - V(project) - the project exists and is C(ACTIVE) (Resource Manager v3 C(projects.get)).
  - V(billing) - billing is enabled (Cloud Billing v1 C(projects.getBillingInfo)).
  - V(region) - O(region) is one where both Cloud Run and Cloud SQL run (a list kept in the collection,
    dated; see C(plugins/module_utils/preflight.py)).
  - V(permissions) - the caller holds every permission in O(permissions) on the project (Resource Manager v3
    C(projects.testIamPermissions), 100 permissions a call); each missing one is reported with the
    predefined role that grants it.
  - V(names) - the Cloud SQL instance name is free or already this pipeline's (same region, usable state);
    each bucket name is free or already in this project (a bucket of another project answers 403, or names
    another project number). A Cloud SQL name that was deleted in the last week cannot be seen through the
    API; Cloud SQL reports it only when the instance is created (the cloud_sql_instance module then says so).
  - V(schema) - the feature and label columns are valid BigQuery columns of types the drift job compares,
    without duplicates or clashes with the fixed columns of offline_features.
  - V(cost) - a monthly estimate of O(cost) at list prices from a dated price table, printed with the findings.
  - With O(auth_kind=anonymous), an API whose endpoint is not overridden by O(api_endpoints) is not checked
    (anonymous requests reach emulators and stand-ins only).
options:
  checks:
    description:
      - The checks to run. The default runs those whose options are set (V(identity), V(project),
        V(billing) always).
    type: list
    elements: str
    choices: [identity, project, billing, region, permissions, names, schema, cost]
  region:
    description: The region the pipeline runs in (Cloud Run, Cloud SQL, buckets, repository).
    type: str
  permissions:
    description:
      - What the deployer needs on the project, as groups of permissions with the role that grants them.
      - The collection's list is C(deployer_permissions) in C(playbooks/vars/deployer.yml).
    type: list
    elements: dict
    suboptions:
      permissions:
        description: IAM permissions, such as V(run.services.create).
        type: list
        elements: str
        required: true
      role:
        description: The predefined role that grants them, named in the fix.
        type: str
        required: true
      needed_by:
        description: The unit and task that needs them, shown with a missing permission.
        type: str
  cloudsql_instance:
    description: The Cloud SQL instance the run creates or converges.
    type: dict
    suboptions:
      name:
        description: Instance ID.
        type: str
        required: true
      region:
        description: Its region; defaults to O(region).
        type: str
      set_by:
        description: The variable that sets the name, named in the fix.
        type: str
        default: the instance name
  buckets:
    description: The buckets the run creates or converges (names are global across Cloud Storage).
    type: list
    elements: dict
    suboptions:
      name:
        description: Bucket name.
        type: str
        required: true
      set_by:
        description: The variable that sets the name, named in the fix.
        type: str
        default: the bucket name
  features:
    description: The feature columns of offline_features (name, type, description, mode).
    type: list
    elements: raw
  label:
    description: The label column of offline_features (name, type, description).
    type: raw
  reserved_columns:
    description: The fixed columns of offline_features that a feature or the label must not reuse.
    type: list
    elements: str
    default: []
  cost:
    description:
      - The settings to estimate the monthly cost of. Keys (all optional) C(cloudsql) (C(tier), C(edition),
        C(availability_type), C(disk_size_gb), C(backups)), C(cloud_run) (a list of C(name), C(cpu),
        C(memory), C(min_instances)), C(storage_gb) (C(mlflow_artifacts), C(build_sources),
        C(artifact_registry), C(bigquery); assumed sizes when not set), C(secrets) and C(scheduler_jobs)
        (counts).
    type: dict
extends_documentation_fragment:
  - deployml.mlops.gcp
attributes:
  check_mode:
    description: Runs the same in check mode; it never changes anything.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
  idempotent:
    description: Reports C(changed=false) and sends no write request, every time.
    support: full
  action_group:
    description: Use C(group/deployml.mlops.gcp) in C(module_defaults) to set the common options once.
    support: full
    membership:
      - deployml.mlops.gcp
notes:
  - C(projects.testIamPermissions) checks permissions granted on the project (and inherited from its
    folder and organization); a permission granted only on one resource (one service account, one bucket)
    is reported as missing.
  - The prices are list prices in USD for us-central1 and europe-west1, dated in the table; other regions,
    discounts, free tiers, usage and network traffic change the bill.
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Check the project and the deployer's permissions before deploying
  deployml.mlops.project_preflight:
    project: my-project
    region: europe-west1
    permissions:
      - role: roles/run.admin
        needed_by: "the services"
        permissions: [run.services.get, run.services.create, run.services.update]
    buckets:
      - {name: my-project-mlflow-artifacts, set_by: mlops_mlflow_artifacts_bucket}
    cost:
      cloudsql: {tier: db-custom-1-3840, availability_type: ZONAL, disk_size_gb: 10}
      cloud_run:
        - {name: serving, cpu: "1", memory: 1Gi, min_instances: 1}
  register: preflight

- name: Only validate the feature schema (no request)
  deployml.mlops.project_preflight:
    project: local-project
    auth_kind: anonymous
    checks: [schema]
    features:
      - {name: age, type: FLOAT, description: Age in years}
    label: {name: churned, type: INTEGER}
"""

RETURN = r"""
findings:
  description: One entry per check result, problems first.
  returned: always
  type: list
  elements: dict
  sample:
    - check: billing
      status: missing
      detail: billing is not enabled on project my-project
      fix: ["gcloud billing accounts list", "gcloud billing projects link my-project --billing-account=ACCOUNT_ID"]
problems:
  description: How many findings have status missing or error (the module fails when there is one).
  returned: always
  type: int
  sample: 0
table:
  description: The findings and the cost estimate as lines of text (what the failure message shows).
  returned: always
  type: list
  elements: str
identity:
  description: The caller, as an IAM member (V(anonymous) without credentials; null when unknown).
  returned: when the identity check ran
  type: str
  sample: user:alice@example.com
project_number:
  description: The project's number.
  returned: when the project could be read
  type: str
  sample: "123456789012"
missing_permissions:
  description: Role -> the permissions of O(permissions) the caller lacks that the role grants.
  returned: when the permissions check ran
  type: dict
  sample: {roles/run.admin: [run.services.create]}
estimate:
  description: The monthly cost estimate (items with item, basis, usd; total_usd; as_of; sources; notes).
  returned: when the cost check ran
  type: dict
"""

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import APIS, GcpApiError, GcpModule, endpoint_for
from ansible_collections.deployml.mlops.plugins.module_utils.preflight import (
    CLOUD_RUN_REGIONS, CLOUD_SQL_REGIONS, PIPELINE_REGIONS, REGIONS_AS_OF, feature_schema_errors, monthly_estimate,
    render)
from ansible_collections.deployml.mlops.plugins.module_utils.sqladmin import instance_path

CHECKS = ("identity", "project", "billing", "region", "permissions", "names", "schema", "cost")
TEST_BATCH = 100  # projects.testIamPermissions takes at most 100 permissions a call
PROBLEM = ("missing", "error")
# Cloud SQL instance states the run can converge from (a creation in progress is waited for).
USABLE_SQL_STATES = ("RUNNABLE", "PENDING_CREATE", "MAINTENANCE")


class Preflight:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.project = module.params["project"]
        self.anonymous = (module.params["auth_kind"] or "application") == "anonymous"
        self.findings = []
        self.result = {}
        self.member = None
        self.project_ok = True
        self.project_number = None
        self.granted = None  # the permissions the caller holds, once checked

    # ---- helpers --------------------------------------------------------------------------------------
    def add(self, check, status, detail, fix=()):
        self.findings.append(dict(check=check, status=status, detail=detail, fix=list(fix)))

    @property
    def client(self):
        return self.module.client

    def member_or_placeholder(self):
        return self.member if self.member and self.member != "anonymous" else "user:YOU@example.com"

    def reachable(self, check, api):
        """False (and a skipped row) when anonymous credentials would be sent to Google itself."""
        if self.anonymous and endpoint_for(api, self.params["api_endpoints"]) == APIS[api][0]:
            self.add(check, "skipped", "not checked: anonymous credentials reach emulators and stand-ins only, and "
                     "api_endpoints sets no endpoint for %s" % api)
            return False
        return True

    def api_problem(self, check, error, what):
        """A row for an API error: SERVICE_DISABLED names the API to enable, anything else is reported as is."""
        info = error.error_info or {}
        if info.get("reason") == "SERVICE_DISABLED":
            metadata = info.get("metadata") or {}
            service = metadata.get("service") or "the API"
            consumer = (metadata.get("consumer") or "projects/%s" % self.project).split("/", 1)[-1]
            self.add(check, "missing", "%s: %s is not enabled in project %s" % (what, service, consumer),
                     ["gcloud services enable %s --project=%s" % (service, consumer)])
        else:
            self.add(check, "error", "%s: %s" % (what, error))

    # ---- checks -----------------------------------------------------------------------------------------
    def identity(self):
        if self.anonymous:
            self.member = "anonymous"
            self.add("identity", "ok", "anonymous (no credentials): for emulators and stand-ins only")
            return
        try:
            credentials = self.client.session.credentials
            email = getattr(credentials, "service_account_email", None)
            if not email or email == "default":  # a user, or a metadata-server account not yet resolved
                email = self.tokeninfo_email(credentials)
        except GcpApiError as exc:
            self.add("identity", "warning", "could not tell who the credentials are (%s); the fixes below name "
                     "YOU@example.com" % exc)
            return
        if not email:
            self.add("identity", "warning", "the access token carries no e-mail (no userinfo.email scope); the "
                     "fixes below name YOU@example.com")
            return
        self.member = ("serviceAccount:" if email.endswith(".gserviceaccount.com") else "user:") + email
        self.result["identity"] = self.member
        self.add("identity", "ok", "%s (auth_kind %s)" % (self.member, self.params["auth_kind"] or "application"))

    def tokeninfo_email(self, credentials):
        """The e-mail Google's OAuth2 tokeninfo endpoint reports for the session's access token."""
        from google.auth import exceptions as auth_exceptions
        from google.auth.transport.requests import Request

        if not credentials.valid:
            try:
                credentials.refresh(Request())
            except auth_exceptions.GoogleAuthError as exc:
                raise GcpApiError(None, type(exc).__name__, "cannot obtain an access token: %s" % exc) from None
        info = self.client.request("GET", "oauth2", "/tokeninfo", resource="oauth2 tokeninfo",
                                   params={"access_token": credentials.token})
        return info.get("email")

    def project_state(self):
        if not self.reachable("project", "cloudresourcemanager"):
            return
        who = self.member_or_placeholder()
        try:
            project = self.client.get("cloudresourcemanager", "/v3/projects/%s" % self.project,
                                      resource="projects/%s" % self.project)
        except GcpApiError as exc:
            if exc.status != 403 or (exc.error_info or {}).get("reason") == "SERVICE_DISABLED":
                self.project_ok = False
                return self.api_problem("project", exc, "cannot read project %s" % self.project)
            project = None
        if project is None:  # Google answers 403 for a project that does not exist, to hide which ones do
            self.project_ok = False
            return self.add("project", "missing", "project %s does not exist, or %s may not see it "
                            "(resourcemanager.projects.get)" % (self.project, who),
                            ["gcloud projects create %s" % self.project,
                             "gcloud projects add-iam-policy-binding %s --member=%s "
                             "--role=roles/resourcemanager.projectIamAdmin" % (self.project, who)])
        self.project_number = (project.get("name") or "").rsplit("/", 1)[-1] or None
        self.result["project_number"] = self.project_number
        state = project.get("state")
        if state != "ACTIVE":
            self.project_ok = False
            fix = ["gcloud projects undelete %s" % self.project] if state == "DELETE_REQUESTED" else []
            return self.add("project", "missing", "project %s is %s, not ACTIVE" % (self.project, state), fix)
        self.add("project", "ok", "%s (number %s) is ACTIVE" % (self.project, self.project_number))

    def billing(self):
        if not self.project_ok or not self.reachable("billing", "cloudbilling"):
            return
        try:
            info = self.client.request("GET", "cloudbilling", "/v1/projects/%s/billingInfo" % self.project,
                                       resource="projects/%s/billingInfo" % self.project)
        except GcpApiError as exc:
            # The run itself does not call Cloud Billing: not being able to read it is a warning.
            if (exc.error_info or {}).get("reason") == "SERVICE_DISABLED":
                service = (exc.error_info.get("metadata") or {}).get("service") or "cloudbilling.googleapis.com"
                return self.add("billing", "warning", "not checked: %s is not enabled (only the preflight uses it)"
                                % service, ["gcloud services enable %s --project=%s" % (service, self.project)])
            return self.add("billing", "warning", "not checked: %s" % exc)
        if not info.get("billingEnabled"):
            return self.add("billing", "missing", "billing is not enabled on project %s: Cloud SQL, Cloud Run and "
                            "Cloud Build refuse to start without it" % self.project,
                            ["gcloud billing accounts list",
                             "gcloud billing projects link %s --billing-account=ACCOUNT_ID" % self.project])
        self.add("billing", "ok", "enabled (%s)" % (info.get("billingAccountName") or "billing account"))

    def region(self):
        region = self.params["region"]
        lacking = [product for product, regions in (("Cloud Run", CLOUD_RUN_REGIONS), ("Cloud SQL", CLOUD_SQL_REGIONS))
                   if region not in regions]
        if lacking:
            return self.add("region", "missing", "%s is not a region %s offers (as documented on %s)"
                            % (region, " or ".join(lacking), REGIONS_AS_OF),
                            ["set mlops_gcp_region to one of: %s" % ", ".join(sorted(PIPELINE_REGIONS))])
        self.add("region", "ok", "%s offers Cloud Run and Cloud SQL" % region)

    def permissions(self):
        groups = self.params["permissions"] or []
        wanted = list(dict.fromkeys(p for group in groups for p in group["permissions"]))
        if not wanted or not self.project_ok or not self.reachable("permissions", "cloudresourcemanager"):
            return
        granted = set()
        try:
            for start in range(0, len(wanted), TEST_BATCH):
                answer = self.client.request(
                    "POST", "cloudresourcemanager", "/v3/projects/%s:testIamPermissions" % self.project,
                    resource="projects/%s" % self.project, body={"permissions": wanted[start:start + TEST_BATCH]})
                granted.update(answer.get("permissions") or [])
        except GcpApiError as exc:
            return self.api_problem("permissions", exc, "cannot test the deployer's permissions")
        self.granted = granted
        missing = {}
        for group in groups:
            lacking = [p for p in group["permissions"] if p not in granted]
            if lacking:
                entry = missing.setdefault(group["role"], dict(permissions=[], needed_by=[]))
                entry["permissions"] += [p for p in lacking if p not in entry["permissions"]]
                if group.get("needed_by") and group["needed_by"] not in entry["needed_by"]:
                    entry["needed_by"].append(group["needed_by"])
        self.result["missing_permissions"] = {role: entry["permissions"] for role, entry in missing.items()}
        who = self.member_or_placeholder()
        for role, entry in missing.items():
            self.add("permissions", "missing", "%s lacks %s, granted by %s; needed by %s"
                     % (who, ", ".join(entry["permissions"]), role, "; ".join(entry["needed_by"]) or "the run"),
                     ["gcloud projects add-iam-policy-binding %s --member=%s --role=%s" % (self.project, who, role)])
        if not missing:
            self.add("permissions", "ok", "%s holds all %d permissions the run needs (%d roles)"
                     % (self.member or "the caller", len(wanted), len({g["role"] for g in groups})))

    def names(self):
        if not self.project_ok:
            return
        instance = self.params["cloudsql_instance"]
        if instance and self.reachable("names", "sqladmin"):
            self.sql_name(instance)
        if self.params["buckets"] and self.reachable("names", "storage"):
            for bucket in self.params["buckets"]:
                self.bucket_name(bucket)

    def sql_name(self, instance):
        name, region = instance["name"], instance.get("region") or self.params["region"]
        set_by = instance.get("set_by") or "the instance name"
        label = "Cloud SQL instance %s" % name
        try:
            found = self.client.get("sqladmin", instance_path(self.project, name), resource=label)
        except GcpApiError as exc:
            if (exc.error_info or {}).get("reason") == "SERVICE_DISABLED":
                # Never enabled: nothing can exist under it yet; the run enables it.
                return self.add("names", "ok", "%s: free (the Cloud SQL Admin API is not enabled yet)" % label)
            return self.add("names", "warning", "%s: not checked (%s)" % (label, exc))
        another = "set %s to another name (names of deleted instances stay taken for about a week)" % set_by
        if found is None:
            return self.add("names", "ok", "%s: free in this project (a name deleted in the last week cannot be "
                            "seen here: Cloud SQL reports it when the instance is created)" % label)
        state = found.get("state")
        if region and found.get("region") and found["region"] != region:
            return self.add("names", "missing", "%s already exists in %s, not %s: an instance's region is fixed"
                            % (label, found["region"], region), [another])
        if state not in USABLE_SQL_STATES:
            fix = [another]
            if state == "SUSPENDED":
                fix.insert(0, "enable billing on the project, or see "
                           "https://cloud.google.com/sql/docs/postgres/instance-info#suspended")
            return self.add("names", "missing", "%s exists but is %s" % (label, state), fix)
        self.add("names", "ok", "%s exists (%s) in %s: the run converges it" % (label, state, found.get("region")))

    def bucket_name(self, bucket):
        name, set_by = bucket["name"], bucket.get("set_by") or "the bucket name"
        label = "bucket gs://%s" % name
        another = "set %s to a name no other project uses (bucket names are global)" % set_by
        try:
            found = self.client.get("storage", "/storage/v1/b/%s" % name, resource=label)
        except GcpApiError as exc:
            if exc.status == 403 and self.granted is not None and "storage.buckets.get" in self.granted:
                # The caller may read every bucket of this project: this one belongs to another project.
                return self.add("names", "missing", "%s is taken by another project (403 on a name the deployer "
                                "could read in %s)" % (label, self.project), [another])
            return self.add("names", "warning", "%s: not checked (%s)" % (label, exc))
        if found is None:
            return self.add("names", "ok", "%s: free" % label)
        owner = str(found.get("projectNumber") or "")
        if self.anonymous:  # an emulator: it does not model which project owns a bucket
            return self.add("names", "ok", "%s exists (its project is not checked: anonymous, a stand-in)" % label)
        if owner and self.project_number and owner != self.project_number:
            return self.add("names", "missing", "%s belongs to project number %s, not %s"
                            % (label, owner, self.project), [another])
        self.add("names", "ok", "%s exists in this project: the run converges it" % label)

    def schema(self):
        errors = feature_schema_errors(self.params["features"], self.params["label"], self.params["reserved_columns"])
        for error in errors:
            self.add("schema", "missing", error, ["edit mlops_features / mlops_label in the inventory's group_vars"])
        if not errors:
            self.add("schema", "ok", "%d features and the label %s are valid columns"
                     % (len(self.params["features"] or []), (self.params["label"] or {}).get("name")))

    def cost(self):
        try:
            self.result["estimate"] = monthly_estimate(self.params["cost"])
        except (TypeError, ValueError) as exc:
            self.add("cost", "warning", "no estimate: %s" % exc)


def main():
    module = GcpModule(
        argument_spec=dict(
            checks=dict(type="list", elements="str", choices=list(CHECKS)),
            region=dict(type="str"),
            permissions=dict(type="list", elements="dict", options=dict(
                permissions=dict(type="list", elements="str", required=True),
                role=dict(type="str", required=True),
                needed_by=dict(type="str"),
            )),
            cloudsql_instance=dict(type="dict", options=dict(
                name=dict(type="str", required=True),
                region=dict(type="str"),
                set_by=dict(type="str", default="the instance name"),
            )),
            buckets=dict(type="list", elements="dict", options=dict(
                name=dict(type="str", required=True),
                set_by=dict(type="str", default="the bucket name"),
            )),
            features=dict(type="list", elements="raw"),
            label=dict(type="raw"),
            reserved_columns=dict(type="list", elements="str", default=[]),
            cost=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    given = dict(region=p["region"], permissions=p["permissions"], names=p["cloudsql_instance"] or p["buckets"],
                 schema=p["features"] is not None or p["label"] is not None, cost=p["cost"])
    checks = p["checks"] or [c for c in CHECKS if c in ("identity", "project", "billing") or given.get(c)]
    if "region" in checks and not p["region"]:
        module.fail_json(msg="the region check needs the region option")

    preflight = Preflight(module)
    steps = dict(identity=preflight.identity, project=preflight.project_state, billing=preflight.billing,
                 region=preflight.region, permissions=preflight.permissions, names=preflight.names,
                 schema=preflight.schema, cost=preflight.cost)
    for check in CHECKS:  # in this order: names need the project number and the permissions
        if check in checks:
            steps[check]()

    findings = preflight.findings
    problems = [f for f in findings if f["status"] in PROBLEM]
    title = "Preflight of project %s%s%s: %s (nothing was changed)" % (
        p["project"], " in %s" % p["region"] if "region" in checks else "",
        " as %s" % (preflight.member or "an unknown caller") if "identity" in checks else "",
        "%d problem(s) to fix before deploying" % len(problems) if problems else "ready to deploy")
    result = dict(preflight.result, changed=False, findings=findings, problems=len(problems),
                  table=render(title, findings, preflight.result.get("estimate")))
    if problems:
        module.fail_json(msg="\n".join(result["table"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
