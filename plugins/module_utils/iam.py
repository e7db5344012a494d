# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""IAM policies of any resource: validation, pure binding edits, and a read-modify-write loop.

Every Google resource that has an IAM policy exposes it the same way (getIamPolicy / setIamPolicy with an
etag), with small differences: the HTTP method, where the requested policy version goes, whether the policy
is wrapped in {"policy": ...}, and which status a stale etag gets (409 ABORTED, or 412 for Cloud Storage).
RESOURCE_TYPES holds one PolicyType per kind of resource, so supporting another resource is one more entry
(a Cloud Run v2 service: api "run", parse projects/P/locations/L/services/S to /v2/<name>, GET :getIamPolicy
with options.requestedPolicyVersion, POST :setIamPolicy with {"policy": ...}; a BigQuery table: POST
:getIamPolicy with {"options": {"requestedPolicyVersion": 3}} as body).

The edits are pure functions on policy dicts (unit tested); update_policy() runs them in a loop that
always reads the policy at version 3, writes it back with the etag it read, and on a concurrent change
starts again from a fresh read, so another writer's bindings are never overwritten.
"""

from __future__ import annotations

import copy
import random
import re
import time

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import LOCATION, REGION, GcpApiError, backoff_delays

POLICY_VERSION = 3  # the version that can hold conditional bindings; always requested
MAX_ATTEMPTS = 5    # read-modify-write rounds before giving up on a policy that keeps changing
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
# setIamPolicy's answer, 400 INVALID_ARGUMENT, naming a service account IAM does not know (yet).
MISSING_ACCOUNT = re.compile(r"Service account (\S+@\S+?)\.? does not exist")
ABSENT_READS = 3  # reads in a row that must not find an account before it counts as absent (as VISIBLE_READS)

EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA], a Kubernetes service account (Workload Identity).
KSA = re.compile(r"^[a-z0-9.:-]+\.svc\.id\.goog\[[^/\]\s]+/[^/\]\s]+\]$")
PRINCIPAL = re.compile(r"^//iam\.googleapis\.com/\S+$")
ROLE_ID = r"[A-Za-z0-9_.]{3,64}"
ROLES = (
    re.compile(r"^roles/[A-Za-z0-9_.]+$"),
    re.compile(r"^projects/[a-z0-9.:-]+/roles/%s$" % ROLE_ID),
    re.compile(r"^organizations/[0-9]+/roles/%s$" % ROLE_ID),
)
# Member types whose identifier is an email or domain: IAM compares them without regard to case.
CASELESS = ("user", "serviceAccount", "group", "domain")


# --- validation ---------------------------------------------------------------------------------------

def member_error(member):
    """Why a member identifier is not one IAM accepts, or None."""
    if member in PUBLIC_MEMBERS:
        return None
    kind, sep, ident = member.partition(":")
    if not sep or not ident:
        return ("use user:EMAIL, serviceAccount:EMAIL, group:EMAIL, domain:DOMAIN, principal://..., "
                "principalSet://..., allUsers or allAuthenticatedUsers")
    if kind in ("user", "group"):
        return None if EMAIL.match(ident) else "%s: needs an email address" % kind
    if kind == "serviceAccount":
        return None if EMAIL.match(ident) or KSA.match(ident) else "serviceAccount: needs a service account email"
    if kind == "domain":
        return None if DOMAIN.match(ident) else "domain: needs a domain name such as example.com"
    if kind in ("principal", "principalSet"):
        return None if PRINCIPAL.match(ident) else "%s: needs an identifier starting with //iam.googleapis.com/" % kind
    return ("unknown member type %r; use user:, serviceAccount:, group:, domain:, principal:, principalSet:, "
            "allUsers or allAuthenticatedUsers" % kind)


def role_error(role):
    """Why a role name is not one IAM accepts, or None."""
    if any(pattern.match(role) for pattern in ROLES):
        return None
    return "use roles/NAME, projects/PROJECT/roles/ID or organizations/ORG/roles/ID"


def condition_error(condition):
    """Why a condition cannot go into a binding, or None. IAM requires a title and an expression."""
    if condition is None:
        return None
    missing = [key for key in ("title", "expression") if not (condition.get(key) or "").strip()]
    if missing:
        return "a condition needs a non-empty %s" % " and ".join(missing)
    if len(condition["title"]) > 100:
        return "a condition title holds at most 100 characters"
    if len(condition.get("description") or "") > 256:
        return "a condition description holds at most 256 characters"
    return None


def normalize_member(member):
    """The canonical spelling of a member: email and domain identifiers in lowercase, as IAM stores them."""
    kind, sep, ident = member.partition(":")
    if sep and kind in CASELESS:
        return "%s:%s" % (kind, ident.lower())
    return member


def is_public(member):
    return member in PUBLIC_MEMBERS


# --- pure edits of a policy ---------------------------------------------------------------------------

def _condition_key(condition):
    if not condition:
        return None
    return (condition.get("title") or "", condition.get("description") or "", condition.get("expression") or "")


def _matches(binding, role, condition):
    return binding.get("role") == role and _condition_key(binding.get("condition")) == _condition_key(condition)


def _holds(binding, member):
    wanted = normalize_member(member)
    return any(normalize_member(m) == wanted for m in binding.get("members") or [])


def has_member(policy, role, member, condition=None):
    """Whether the policy grants role to member under exactly this condition (None: unconditionally)."""
    return any(_matches(b, role, condition) and _holds(b, member) for b in (policy or {}).get("bindings") or [])


def binding_view(policy, role, condition=None):
    """The binding of role (under condition) as one dict with its members sorted; {} when there is none.

    Google may split one role's members over several bindings with the same condition: they are merged here.
    """
    members = set()
    found = False
    for binding in (policy or {}).get("bindings") or []:
        if _matches(binding, role, condition):
            found = True
            members.update(binding.get("members") or [])
    if not found or not members:
        return {}
    view = {"role": role, "members": sorted(members)}
    if condition:
        view["condition"] = {k: v for k, v in condition.items() if v is not None}
    return view


def _version_for(bindings, current):
    """Version 3 as soon as one binding carries a condition (IAM refuses conditions at a lower version)."""
    if any(b.get("condition") for b in bindings):
        return POLICY_VERSION
    return current or 1


def add_member(policy, role, member, condition=None):
    """A new policy that grants role to member (under condition), or None when the policy already does.

    Only the binding of this role and condition changes; every other binding is kept as it is.
    """
    if has_member(policy, role, member, condition):
        return None
    new = copy.deepcopy(policy or {})
    bindings = new.setdefault("bindings", [])
    for binding in bindings:
        if _matches(binding, role, condition):
            binding["members"] = list(binding.get("members") or []) + [member]
            break
    else:
        binding = {"role": role, "members": [member]}
        if condition:
            binding["condition"] = {k: v for k, v in condition.items() if v is not None}
        bindings.append(binding)
    new["version"] = _version_for(bindings, new.get("version"))
    return new


def remove_member(policy, role, member, condition=None):
    """A new policy without member in the binding of role (under condition), or None when it is not there.

    A binding left without members is removed. Every other binding is kept as it is.
    """
    if not has_member(policy, role, member, condition):
        return None
    new = copy.deepcopy(policy)
    wanted = normalize_member(member)
    kept = []
    for binding in new.get("bindings") or []:
        if _matches(binding, role, condition):
            binding["members"] = [m for m in binding.get("members") or [] if normalize_member(m) != wanted]
            if not binding["members"]:
                continue
        kept.append(binding)
    new["bindings"] = kept
    new["version"] = _version_for(kept, new.get("version"))
    return new


# --- resource types -----------------------------------------------------------------------------------

PROJECT_ID = re.compile(r"^([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]+$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]{4,28})[a-z0-9]$")
# Cloud Run names: a letter first, then lowercase letters, digits and '-', not ending with '-'.
RUN_SERVICE = re.compile(r"^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$")  # fewer than 50 characters
RUN_JOB = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")      # at most 63 characters
DATASET_ID = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
TABLE_ID = re.compile(r"^[\w\- ]{1,1024}$")  # letters, marks and digits of any script, '_', '-' and ' '


class PolicyType:
    """How one kind of resource exposes its IAM policy.

    parse(resource, project) -> (URL path of the resource, full resource name), or raises ValueError.
    get: (HTTP method, path suffix, where the requested version goes: "body", or the name of a query parameter).
    set: (HTTP method, path suffix, True when the body is {"policy": ...} rather than the policy itself).
    conflict: HTTP statuses that mean "the etag is stale".
    """

    def __init__(self, api, label, parse, get, put, conflict=(409,)):
        self.api = api
        self.label = label
        self.parse = parse
        self.get = get
        self.put = put
        self.conflict = conflict


def _project_resource(resource, project):
    project = resource[len("projects/"):] if resource.startswith("projects/") else resource
    if not PROJECT_ID.match(project):
        raise ValueError("project %r: use a project ID such as my-project, or projects/my-project" % project)
    return "/v3/projects/%s" % project, "projects/%s" % project


def _bucket_resource(resource, project):
    name = resource[len("projects/_/buckets/"):] if resource.startswith("projects/_/buckets/") else resource
    if name.startswith("gs://"):
        name = name[len("gs://"):].rstrip("/")
    if not BUCKET.match(name):
        raise ValueError("bucket %r: use the bucket name, such as my-project-artifacts" % name)
    return "/storage/v1/b/%s" % name, "projects/_/buckets/%s" % name


def _split_name(resource, project, collection):
    """(project, id) from projects/P/<collection>/ID or from a bare ID in the module's project."""
    parts = resource.split("/")
    if len(parts) == 4 and parts[0] == "projects" and parts[2] == collection:
        return parts[1], parts[3]
    if "/" in resource:
        raise ValueError("%r: use projects/PROJECT/%s/ID or the ID alone" % (resource, collection))
    return project, resource


def _secret_resource(resource, project):
    project, secret = _split_name(resource, project, "secrets")
    if not SECRET_ID.match(secret):
        raise ValueError("secret %r: use at most 255 letters, digits, '-' and '_'" % secret)
    name = "projects/%s/secrets/%s" % (project, secret)
    return "/v1/" + name, name


def service_account_email(account, project):
    """The email of a service account named by its email or by its account ID in project."""
    if "@" in account:
        return account
    # A domain-scoped project example.com:my-project owns accounts ID@my-project.example.com.iam.gserviceaccount.com
    domain, sep, project_id = project.partition(":")
    host = "%s.%s" % (project_id, domain) if sep else project
    return "%s@%s.iam.gserviceaccount.com" % (account, host)


def _service_account_resource(resource, project):
    project, account = _split_name(resource, project, "serviceAccounts")
    if "@" in account:
        if not EMAIL.match(account):
            raise ValueError("service account %r is not an email address" % account)
    elif not ACCOUNT_ID.match(account):
        raise ValueError("service account %r: use its email or its account ID (6-30 lowercase letters, digits "
                         "and '-', starting with a letter)" % account)
    name = "projects/%s/serviceAccounts/%s" % (project, service_account_email(account, project))
    return "/v1/" + name, name


def _check_project(project):
    if not PROJECT_ID.match(project or ""):
        raise ValueError("project %r: use a project ID such as my-project" % project)


def _located_resource(collection, pattern, limit, version="v2", location_pattern=REGION):
    """Parser of projects/P/locations/L/<collection>/NAME, or LOCATION/NAME in project (Cloud Run v2 services
    and jobs, Artifact Registry v1 repositories)."""
    singular = {"repositories": "repository"}.get(collection, collection[:-1])

    def parse(resource, project):
        parts = resource.split("/")
        if len(parts) == 6 and parts[0] == "projects" and parts[2] == "locations" and parts[4] == collection:
            project, location, name = parts[1], parts[3], parts[5]
        elif len(parts) == 2:
            location, name = parts
        else:
            raise ValueError("%s %r: use LOCATION/NAME (such as us-central1/my-%s) or "
                             "projects/PROJECT/locations/LOCATION/%s/NAME" % (singular, resource, singular, collection))
        _check_project(project)
        if not location_pattern.match(location):
            raise ValueError("%s %r: location %r is not a %s" % (
                singular, resource, location, "region such as us-central1" if location_pattern is REGION
                else "location such as us-central1 or europe"))
        if not pattern.match(name):
            raise ValueError("%s %r: the name %r needs %s: lowercase letters, digits and '-', starting with a letter "
                             "and not ending with '-'" % (singular, resource, name, limit))
        full = "projects/%s/locations/%s/%s/%s" % (project, location, collection, name)
        return "/%s/%s" % (version, full), full
    return parse


def _table_resource(resource, project):
    """projects/P/datasets/D/tables/T, PROJECT.DATASET.TABLE, or DATASET.TABLE in project."""
    parts = resource.split("/")
    if len(parts) == 6 and parts[0] == "projects" and parts[2] == "datasets" and parts[4] == "tables":
        project, dataset, table = parts[1], parts[3], parts[5]
    elif "/" not in resource and resource.count(".") in (1, 2):
        names = resource.split(".")
        if len(names) == 3:
            project = names.pop(0)
        dataset, table = names
    else:
        raise ValueError("table %r: use DATASET.TABLE, PROJECT.DATASET.TABLE or projects/PROJECT/datasets/DATASET/"
                         "tables/TABLE" % resource)
    _check_project(project)
    if not DATASET_ID.match(dataset):
        raise ValueError("table %r: dataset ID %r holds letters, digits and '_' only" % (resource, dataset))
    if not TABLE_ID.match(table):
        raise ValueError("table %r: table ID %r holds letters, digits, '_', '-' and spaces only" % (resource, table))
    full = "projects/%s/datasets/%s/tables/%s" % (project, dataset, table)
    return "/bigquery/v2/" + full, full


RESOURCE_TYPES = {
    # Resource Manager v3: POST :getIamPolicy with {"options": {"requestedPolicyVersion": 3}}.
    "project": PolicyType("cloudresourcemanager", "project", _project_resource,
                          get=("POST", ":getIamPolicy", "body"), put=("POST", ":setIamPolicy", True)),
    # Cloud Storage JSON API: GET/PUT b/BUCKET/iam, the policy itself as body; a stale etag gets 412.
    "bucket": PolicyType("storage", "Cloud Storage bucket", _bucket_resource,
                         get=("GET", "/iam", "optionsRequestedPolicyVersion"), put=("PUT", "/iam", False),
                         conflict=(412,)),
    # Secret Manager v1: GET :getIamPolicy?options.requestedPolicyVersion=3.
    "secret": PolicyType("secretmanager", "secret", _secret_resource,
                         get=("GET", ":getIamPolicy", "options.requestedPolicyVersion"),
                         put=("POST", ":setIamPolicy", True)),
    # IAM v1: POST :getIamPolicy without a body, the version as a query parameter.
    "service_account": PolicyType("iam", "service account", _service_account_resource,
                                  get=("POST", ":getIamPolicy", "options.requestedPolicyVersion"),
                                  put=("POST", ":setIamPolicy", True)),
    # Cloud Run Admin API v2: GET :getIamPolicy?options.requestedPolicyVersion=3 (services and jobs alike).
    "cloud_run_service": PolicyType("run", "Cloud Run service", _located_resource("services", RUN_SERVICE, "1-49 characters"),
                                    get=("GET", ":getIamPolicy", "options.requestedPolicyVersion"),
                                    put=("POST", ":setIamPolicy", True)),
    "cloud_run_job": PolicyType("run", "Cloud Run job", _located_resource("jobs", RUN_JOB, "1-63 characters"),
                                get=("GET", ":getIamPolicy", "options.requestedPolicyVersion"),
                                put=("POST", ":setIamPolicy", True)),
    # Artifact Registry v1: the same shape (who may push to or pull from one repository).
    "artifact_registry_repository": PolicyType(
        "artifactregistry", "Artifact Registry repository",
        _located_resource("repositories", RUN_JOB, "1-63 characters", version="v1", location_pattern=LOCATION),
        get=("GET", ":getIamPolicy", "options.requestedPolicyVersion"), put=("POST", ":setIamPolicy", True)),
    # BigQuery v2: POST :getIamPolicy with {"options": {"requestedPolicyVersion": 3}}. BigQuery does not document
    # the status of a stale etag; a table's "IAM setPolicy failed ... concurrent policy changes" has been seen
    # as 412, and Google IAM's own is 409 ABORTED: both count as a race (update_policy re-reads to tell).
    "bigquery_table": PolicyType("bigquery", "BigQuery table", _table_resource,
                                 get=("POST", ":getIamPolicy", "body"), put=("POST", ":setIamPolicy", True),
                                 conflict=(409, 412)),
}


class PolicyTarget:
    """The IAM policy of one resource, read and written through its API."""

    def __init__(self, client, resource_type, resource, project):
        self.client = client
        self.type = RESOURCE_TYPES[resource_type]
        self.path, self.name = self.type.parse(resource, project)

    def read(self):
        method, suffix, version_in = self.type.get
        body = params = None
        if version_in == "body":
            body = {"options": {"requestedPolicyVersion": POLICY_VERSION}}
        else:
            params = {version_in: POLICY_VERSION}
        return self.client.request(method, self.type.api, self.path + suffix, resource=self.name,
                                   params=params, body=body)

    def write(self, policy):
        method, suffix, wrapped = self.type.put
        # Only what the edit is about: bindings, the etag that guards them, and the version they need.
        # auditConfigs stay out, so the default update mask (bindings, etag) leaves them as they are.
        sent = {key: policy[key] for key in ("version", "etag", "bindings") if key in policy}
        sent.setdefault("bindings", [])
        return self.client.request(method, self.type.api, self.path + suffix, resource=self.name,
                                   body={"policy": sent} if wrapped else sent)


class AccountWait:
    """Waits while setIamPolicy refuses a service account member with 400 "Service account X does not exist.".

    IAM accepts a new account as a member only some time after creating it (reads are eventually consistent),
    so that refusal is retried with backoff within the client's timeout. An account that IAM's own GET does not
    find either, ABSENT_READS times in a row, does not exist: that fails at once, naming it. (A GET that is
    refused, e.g. for a Google-managed account of another project, tells nothing: the wait goes on.)
    """

    def __init__(self, client, email, sleep=time.sleep):
        self.client = client
        self.email = email
        self.sleep = sleep
        self.delays = backoff_delays(client.timeout)
        self.checked = False

    def _exists(self):
        """True, False (not found ABSENT_READS times in a row), or None (IAM would not say)."""
        path = "/v1/projects/-/serviceAccounts/%s" % self.email
        for attempt in range(ABSENT_READS):
            try:
                if self.client.get("iam", path, resource="serviceAccount:%s" % self.email) is not None:
                    return True
            except GcpApiError as exc:
                if exc.status != 403:
                    raise
                return None
            if attempt + 1 < ABSENT_READS:
                self.sleep(0.5 * (attempt + 1))
        return False

    def pause(self, failure):
        """Sleep before the next read-modify-write, or raise when the account does not exist or time is up."""
        if not self.checked:
            self.checked = True
            if self._exists() is False:
                raise GcpApiError(failure.status, failure.reason,
                                  "service account %s does not exist: create it first (deployml.mlops."
                                  "service_account), or check the member (%s)" % (self.email, failure.message),
                                  resource=failure.resource, method=failure.method)
        delay = next(self.delays, None)
        if delay is None:
            raise GcpApiError(failure.status, failure.reason,
                              "IAM still refuses service account %s as a member after %ss: %s A new account is "
                              "accepted after a minute or two; run again, or raise timeout"
                              % (self.email, self.client.timeout, failure.message),
                              resource=failure.resource, method=failure.method)
        self.sleep(delay)


class PolicyUpdate:
    """What update_policy() did: the policy first read, the policy now, and whether it changed."""

    def __init__(self, before, after, changed, attempts):
        self.before = before
        self.after = after
        self.changed = changed
        self.attempts = attempts


def update_policy(target, edit, check_mode=False, attempts=MAX_ATTEMPTS, sleep=time.sleep, rng=random.random):
    """Read-modify-write the policy of target with edit(policy) -> new policy, or None for no change.

    The write carries the etag that was read. When another writer changed the policy in between (the API
    answers 409 ABORTED, or 412 for Cloud Storage), the edit is applied again to a fresh read, up to
    `attempts` times. A conflict status while the etag has not moved is not a race: it is raised as is.
    A service account member IAM does not accept yet is waited for (AccountWait), without counting attempts.
    `changed` tells whether the policy first read differed from the final one in what edit() is about,
    which stays right when a write went through but its answer was lost.
    """
    first = sent_etag = waiting = None
    conflicts = []
    attempt = rounds = 0
    while attempt < attempts:
        rounds += 1
        policy = target.read()
        if first is None:
            first = policy
        elif conflicts and policy.get("etag") == sent_etag:
            raise conflicts[-1]
        new = edit(policy)
        if new is None:
            return PolicyUpdate(first, policy, edit(first) is not None, rounds)
        if check_mode:
            return PolicyUpdate(first, new, True, rounds)
        sent_etag = policy.get("etag")
        try:
            return PolicyUpdate(first, target.write(new), True, rounds)
        except GcpApiError as exc:
            missing = MISSING_ACCOUNT.search(exc.message or "") if exc.status == 400 else None
            if missing:
                waiting = waiting or AccountWait(target.client, missing.group(1), sleep)
                waiting.pause(exc)
                sent_etag = None  # that write was refused, not raced: an unchanged etag next is no conflict
                continue
            if exc.status not in target.type.conflict:
                raise
            conflicts.append(exc)
        sleep(rng() * 0.25 * (2 ** attempt))
        attempt += 1
    failure = conflicts[-1]
    raise GcpApiError(failure.status, failure.reason,
                      "the IAM policy kept changing concurrently; gave up after %d read-modify-write attempts (%s)"
                      % (attempts, failure.message), resource=target.name, method=failure.method)
