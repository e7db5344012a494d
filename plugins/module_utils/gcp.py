# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Authentication, endpoints, requests with retry, and Google API errors for every module.

The modules speak the public REST contracts (the discovery documents) through google-auth's
authorized session. One request path means one retry policy and one error message for all APIs.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib
from ansible.module_utils.errors import AnsibleFallbackNotFound

DEFAULT_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]

# API name -> (public endpoint, conventional emulator variable or None).
APIS = {
    "bigquery": ("https://bigquery.googleapis.com", "BIGQUERY_EMULATOR_HOST"),
    "storage": ("https://storage.googleapis.com", "STORAGE_EMULATOR_HOST"),
    "sqladmin": ("https://sqladmin.googleapis.com", None),
    "secretmanager": ("https://secretmanager.googleapis.com", None),
    "iam": ("https://iam.googleapis.com", None),
    "cloudresourcemanager": ("https://cloudresourcemanager.googleapis.com", None),
    "serviceusage": ("https://serviceusage.googleapis.com", None),
    "run": ("https://run.googleapis.com", None),
    "artifactregistry": ("https://artifactregistry.googleapis.com", None),
    "cloudbuild": ("https://cloudbuild.googleapis.com", None),
    "cloudscheduler": ("https://cloudscheduler.googleapis.com", None),
    "cloudbilling": ("https://cloudbilling.googleapis.com", None),
    "oauth2": ("https://oauth2.googleapis.com", None),
}

RETRYABLE_STATUS = frozenset((429, 500, 502, 503, 504))
REQUEST_TIMEOUT = 60  # seconds for one HTTP exchange
MAX_BACKOFF = 16.0


def _project_fallback():
    for name in ("GCP_PROJECT", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        if os.environ.get(name):
            return os.environ[name]
    raise AnsibleFallbackNotFound


def _scopes_fallback():
    if os.environ.get("GCP_SCOPES"):
        return [s.strip() for s in os.environ["GCP_SCOPES"].split(",") if s.strip()]
    raise AnsibleFallbackNotFound


COMMON_ARGUMENT_SPEC = dict(
    project=dict(type="str", fallback=(_project_fallback,)),
    auth_kind=dict(
        type="str",
        choices=["application", "serviceaccount", "accesstoken", "anonymous"],
        fallback=(env_fallback, ["GCP_AUTH_KIND"]),
    ),
    service_account_file=dict(type="path", fallback=(env_fallback, ["GCP_SERVICE_ACCOUNT_FILE"])),
    service_account_contents=dict(
        type="jsonarg", no_log=True, fallback=(env_fallback, ["GCP_SERVICE_ACCOUNT_CONTENTS"])
    ),
    access_token=dict(type="str", no_log=True, fallback=(env_fallback, ["GCP_ACCESS_TOKEN"])),
    scopes=dict(type="list", elements="str", fallback=(_scopes_fallback,)),
    api_endpoints=dict(type="dict"),
    timeout=dict(type="int", default=300),
)


class GcpApiError(Exception):
    """A Google API call that failed for good (after retries)."""

    def __init__(self, status, reason, message, resource=None, method=None, error_info=None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.resource = resource
        self.method = method
        # The google.rpc.ErrorInfo detail ({reason, domain, metadata}) when Google sent one, else {}:
        # e.g. reason SERVICE_DISABLED with metadata.service, or IAM_PERMISSION_DENIED with metadata.permission.
        self.error_info = error_info or {}

    def __str__(self):
        where = self.resource or "request"
        code = "HTTP %s" % self.status if self.status else "no HTTP response"
        reason = " %s" % self.reason if self.reason else ""
        return "%s: %s%s: %s" % (where, code, reason, self.message)

    @classmethod
    def from_response(cls, response, resource=None):
        """Read Google's error shape: {"error": {"code", "status", "message", "errors": [{"reason"}]}}."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        error = (body.get("error") if isinstance(body, dict) else None) or {}
        if not isinstance(error, dict):  # OAuth endpoints answer {"error": "invalid_grant", "error_description": ...}
            description = body.get("error_description")
            error = {"message": "%s: %s" % (error, description) if description else str(error)}
        details = error.get("errors") or [{}]
        reason = error.get("status") or details[0].get("reason") or response.reason
        if details[0].get("reason") and details[0]["reason"] != reason:
            reason = "%s/%s" % (reason, details[0]["reason"])
        message = error.get("message") or (response.text or "").strip()[:500] or response.reason or "no message"
        error_info = next((d for d in error.get("details") or [] if isinstance(d, dict)
                           and d.get("@type") == "type.googleapis.com/google.rpc.ErrorInfo"), None)
        return cls(status, reason, message, resource=resource, method=response.request.method if response.request else None,
                   error_info=error_info)


class ApiModule(AnsibleModule):
    """AnsibleModule with a client of one API, built on first use by new_client(), and the failure result of that
    API's errors (status, reason and method besides the message)."""

    _client = None

    def new_client(self):
        raise NotImplementedError

    @property
    def client(self):
        if self._client is None:
            self._client = self.new_client()
        return self._client

    def fail_api(self, error, **kwargs):
        self.fail_json(msg=str(error), status=error.status, reason=error.reason, method=error.method, **kwargs)


class GcpModule(ApiModule):
    """ApiModule of Google's REST APIs, with the common GCP options."""

    def __init__(self, argument_spec, **kwargs):
        spec = dict(COMMON_ARGUMENT_SPEC)
        spec.update(argument_spec)
        kwargs.setdefault("supports_check_mode", True)
        super().__init__(argument_spec=spec, **kwargs)
        if not self.params["project"]:
            self.fail_json(msg="project is required: set the project option or the GCP_PROJECT environment variable")

    def new_client(self):
        return GcpClient(self)


def _credentials(module):
    """Build google-auth credentials for the chosen auth_kind. Imports lazily: they cost ~0.25 s."""
    try:
        import google.auth
        from google.auth.credentials import AnonymousCredentials
        from google.oauth2 import credentials as oauth2_credentials
        from google.oauth2 import service_account
    except ImportError:
        module.fail_json(msg=missing_required_lib("google-auth"), exception=traceback.format_exc())

    params = module.params
    kind = params["auth_kind"] or "application"
    scopes = params["scopes"] or DEFAULT_SCOPES
    if kind == "anonymous":
        return AnonymousCredentials()
    if kind == "accesstoken":
        if not params["access_token"]:
            module.fail_json(msg="auth_kind=accesstoken needs access_token (or GCP_ACCESS_TOKEN)")
        return oauth2_credentials.Credentials(params["access_token"])
    if kind == "serviceaccount":
        try:
            if params["service_account_contents"]:
                info = params["service_account_contents"]
                info = json.loads(info) if isinstance(info, str) else info
                return service_account.Credentials.from_service_account_info(info, scopes=scopes)
            if params["service_account_file"]:
                return service_account.Credentials.from_service_account_file(
                    params["service_account_file"], scopes=scopes
                )
        except (ValueError, OSError, TypeError, AttributeError) as exc:  # never echo the key itself (a JSON list: AttributeError)
            module.fail_json(msg="cannot read the service account key (%s); check that it is a JSON key of "
                             "type service_account" % type(exc).__name__)
        module.fail_json(
            msg="auth_kind=serviceaccount needs service_account_file or service_account_contents "
            "(or GCP_SERVICE_ACCOUNT_FILE / GCP_SERVICE_ACCOUNT_CONTENTS)"
        )
    try:
        credentials, _project = google.auth.default(scopes=scopes)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        module.fail_json(msg="no Application Default Credentials found (%s); run `gcloud auth application-default "
                         "login`, set GOOGLE_APPLICATION_CREDENTIALS, or choose another auth_kind" % exc)
    return credentials


def endpoint_for(api, api_endpoints=None, environ=None):
    """Base URL of an API: option, then DEPLOYML_<API>_ENDPOINT, then the emulator variable, then Google."""
    environ = os.environ if environ is None else environ
    public, emulator_var = APIS[api]
    url = (api_endpoints or {}).get(api) or environ.get("DEPLOYML_%s_ENDPOINT" % api.upper())
    if not url and emulator_var and environ.get(emulator_var):
        url = environ[emulator_var]
        if "://" not in url:
            url = "http://" + url
    return (url or public).rstrip("/")


def backoff_delays(deadline_seconds, base=0.5, cap=MAX_BACKOFF, rng=random.random):
    """Full-jitter exponential backoff: yields sleeps whose sum stays within deadline_seconds."""
    spent, attempt = 0.0, 0
    while True:
        delay = rng() * min(cap, base * (2 ** attempt))
        if spent + delay > deadline_seconds:
            return
        spent += delay
        attempt += 1
        yield delay


class GcpClient:
    """Sends requests to Google REST APIs with retry, and turns failures into GcpApiError."""

    def __init__(self, module, session=None, sleep=time.sleep):
        self.module = module
        self.timeout = module.params["timeout"]
        self._session = session
        self._sleep = sleep
        self._enabled = set()  # services Service Usage said are ENABLED (a SERVICE_DISABLED from them is propagation)

    @property
    def session(self):
        if self._session is None:
            from google.auth.transport.requests import AuthorizedSession

            credentials = _credentials(self.module)
            # Anonymous credentials cannot be refreshed: a 401 (from an emulator) is an answer to report,
            # not a cue to refresh (which would raise InvalidOperation).
            anonymous = (self.module.params["auth_kind"] or "application") == "anonymous"
            self._session = AuthorizedSession(credentials, refresh_status_codes=() if anonymous else (401,))
        return self._session

    def url(self, api, path):
        return endpoint_for(api, self.module.params.get("api_endpoints")) + path

    def request(self, method, api, path, resource=None, params=None, body=None, not_found_ok=False, headers=None,
                data=None):
        """One API call. Returns the decoded JSON body ({} when empty), or None for an allowed 404.

        body is sent as JSON; data (bytes, e.g. a media upload) is sent as it is, with the headers given.
        """
        session = self.session  # first: it fails with a clear message when google-auth is missing
        import requests
        from google.auth import exceptions as auth_exceptions

        url = self.url(api, path)
        delays = backoff_delays(self.timeout)
        while True:
            failure = None
            try:
                response = session.request(
                    method, url, params=params, json=body, data=data, headers=headers, timeout=REQUEST_TIMEOUT
                )
            except (requests.ConnectionError, requests.Timeout, auth_exceptions.TransportError) as exc:
                failure = GcpApiError(None, type(exc).__name__, str(exc), resource=resource, method=method)
                retry_after = None
            except auth_exceptions.GoogleAuthError as exc:  # the token could not be obtained or refreshed
                raise GcpApiError(None, type(exc).__name__, "cannot obtain an access token for auth_kind=%s: %s"
                                  % (self.module.params["auth_kind"] or "application", exc),
                                  resource=resource, method=method) from None
            else:
                if response.status_code < 400:
                    return response.json() if response.content else {}
                if response.status_code == 404 and not_found_ok:
                    return None
                failure = GcpApiError.from_response(response, resource=resource)
                if response.status_code not in RETRYABLE_STATUS and not self._enabling(failure, api, url):
                    self._name_permission(failure)
                    raise failure
                retry_after = response.headers.get("Retry-After")
            delay = next(delays, None)
            if delay is None:
                failure.message += " (gave up retrying after %ss; raise timeout to wait longer)" % self.timeout
                raise failure
            if retry_after and retry_after.isdigit():
                delay = max(delay, min(float(retry_after), MAX_BACKOFF))
            self._sleep(delay)

    def _enabling(self, failure, api, url):
        """Whether a failure is a 403 SERVICE_DISABLED from an API that Service Usage says is ENABLED: an
        enablement still propagating ("wait a few minutes for the action to propagate"), to retry. A service
        that is really disabled gets a message naming the fix instead, and is not retried."""
        info = failure.error_info
        if failure.status != 403 or info.get("reason") != "SERVICE_DISABLED":
            return False
        meta = info.get("metadata") or {}
        service, consumer = meta.get("service"), meta.get("consumer")  # consumer: "projects/NUMBER"
        if not service or not consumer:
            return False
        if service not in self._enabled and api != "serviceusage":  # never ask Service Usage about itself
            try:
                state = self.request("GET", "serviceusage", "/v1/%s/services/%s" % (consumer, service),
                                     resource="%s/services/%s" % (consumer, service)).get("state")
            except GcpApiError:
                state = None  # cannot tell: treat as disabled, the message says how to enable it
            if state == "ENABLED":
                self._enabled.add(service)
        if service in self._enabled:
            return True
        # Name the project as the user does when the call was about the module's project; else by its number.
        project = self.module.params.get("project")
        if not project or not re.search(r"/projects/%s(?:[/:?]|$)" % re.escape(project), url):
            project = consumer.split("/")[-1]
        failure.message = ("%s (%s) is not enabled in project %s: enable it with `gcloud services enable %s "
                           "--project %s`, or list it in project_services for the deployml.mlops project role "
                           "to enable it. Google said: %s" % (meta.get("serviceTitle") or service, service, project,
                                                              service, project, failure.message))
        return False

    def _name_permission(self, failure):
        """A 403 PERMISSION_DENIED (not SERVICE_DISABLED) is not transient: say which permission the caller lacks,
        who the caller is, and the role that grants it, so that the fix is one command."""
        info = failure.error_info
        if failure.status != 403 or info.get("reason") == "SERVICE_DISABLED" or getattr(failure, "named", False):
            return
        if (self.module.params["auth_kind"] or "application") == "anonymous":
            return  # an emulator's answer: there is no IAM principal to name
        failure.named = True
        permission = (info.get("metadata") or {}).get("permission") or permission_in(failure.message)
        member = self.principal()
        lacks = "the permission %s" % permission if permission else "a permission (Google did not say which)"
        hint = ""
        role = role_for(permission)
        if role:
            project = self.module.params.get("project") or "PROJECT"
            hint = "; %s grants it: `gcloud projects add-iam-policy-binding %s --member=%s --role=%s`" % (
                role, project, member if ":" in member else "MEMBER", role)
        failure.message = "%s lacks %s%s. Google said: %s" % (member, lacks, hint, failure.message)

    def principal(self):
        """Who the calls are made as, as an IAM member ("serviceAccount:x@p.iam.gserviceaccount.com",
        "user:a@example.com"), or "unknown principal". Asked of tokeninfo only when a call was denied."""
        if getattr(self, "_principal", None):
            return self._principal
        kind = self.module.params["auth_kind"] or "application"
        credentials = getattr(self.session, "credentials", None)
        email = getattr(credentials, "service_account_email", None)
        if kind != "anonymous" and not (email and "@" in email):
            email = self._tokeninfo_email(getattr(credentials, "token", None))
        if kind == "anonymous" or not email or "@" not in email:
            self._principal = "unknown principal"
        else:
            self._principal = "%s:%s" % ("serviceAccount" if email.endswith(".gserviceaccount.com") else "user", email)
        return self._principal

    def _tokeninfo_email(self, token):
        """The email tokeninfo reports for an access token, or None (no token, no email, no answer)."""
        if not token:
            return None
        import requests

        try:
            response = requests.get(self.url("oauth2", "/tokeninfo"), params={"access_token": token},
                                    timeout=REQUEST_TIMEOUT)
            return response.json().get("email") if response.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def get(self, api, path, resource=None, params=None):
        """Read a resource; None when it does not exist."""
        return self.request("GET", api, path, resource=resource, params=params, not_found_ok=True)

    def wait(self, poll, is_done, resource=None, interval=1.0, max_interval=10.0):
        """Poll a long-running operation until is_done(op) or the timeout; returns the last operation.

        poll() reads the operation once. A timeout leaves the operation running on the server: the
        message says so, and a re-run picks the resource up where it stands.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            operation = poll()
            if is_done(operation):
                return operation
            if time.monotonic() + interval > deadline:
                raise GcpApiError(
                    None, "TIMEOUT",
                    "operation still running after %ss; it goes on in Google Cloud, run again to converge "
                    "or raise timeout" % self.timeout,
                    resource=resource,
                )
            self._sleep(interval)
            interval = min(max_interval, interval * 1.5)


# The predefined role of the least-privilege deployer (playbooks/vars/deployer.yml) that grants a permission, by
# the permission's prefix, most specific first: only a hint in the message of a PERMISSION_DENIED.
ROLE_FOR_PERMISSION = (
    ("iam.serviceAccounts.actAs", "roles/iam.serviceAccountUser"),
    ("iam.serviceAccounts.", "roles/iam.serviceAccountAdmin"),
    ("iam.roles.", "roles/iam.roleAdmin"),
    ("resourcemanager.projects.", "roles/resourcemanager.projectIamAdmin"),
    ("serviceusage.", "roles/serviceusage.serviceUsageAdmin"),
    ("cloudsql.", "roles/cloudsql.admin"),
    ("secretmanager.", "roles/secretmanager.admin"),
    ("run.", "roles/run.admin"),
    ("artifactregistry.", "roles/artifactregistry.admin"),
    ("cloudbuild.builds.", "roles/cloudbuild.builds.editor"),
    ("cloudscheduler.", "roles/cloudscheduler.admin"),
    ("storage.", "roles/storage.admin"),
    ("bigquery.jobs.create", "roles/bigquery.jobUser"),
    ("bigquery.", "roles/bigquery.dataOwner"),
)
PERMISSION_IN_MESSAGE = re.compile(r"""[Pp]ermission[s]? ['"]?([a-z][a-zA-Z0-9]*(?:\.[a-zA-Z0-9]+){2,})""")


def permission_in(message):
    """The IAM permission a denial message names ("Permission 'run.services.get' denied ..."), or None."""
    match = PERMISSION_IN_MESSAGE.search(message or "")
    return match.group(1) if match else None


def role_for(permission):
    for prefix, role in ROLE_FOR_PERMISSION:
        if permission and (permission.lower() == prefix.lower()
                           or prefix.endswith(".") and permission.lower().startswith(prefix.lower())):
            return role
    return None


# google.rpc.Code numbers -> (name, HTTP status), for errors carried inside finished operations.
RPC_CODES = {
    1: ("CANCELLED", 499), 2: ("UNKNOWN", 500), 3: ("INVALID_ARGUMENT", 400), 4: ("DEADLINE_EXCEEDED", 504),
    5: ("NOT_FOUND", 404), 6: ("ALREADY_EXISTS", 409), 7: ("PERMISSION_DENIED", 403),
    8: ("RESOURCE_EXHAUSTED", 429), 9: ("FAILED_PRECONDITION", 400), 10: ("ABORTED", 409),
    11: ("OUT_OF_RANGE", 400), 12: ("UNIMPLEMENTED", 501), 13: ("INTERNAL", 500), 14: ("UNAVAILABLE", 503),
    15: ("DATA_LOSS", 500), 16: ("UNAUTHENTICATED", 401),
}


def wait_operation(client, api, operation, resource=None, version="v1"):
    """Wait for a google.longrunning Operation ({name, done, response|error}); return its response.

    An operation that ends in error raises GcpApiError with the operation's code and message.
    """
    if not operation.get("done"):
        path = "/%s/%s" % (version, operation["name"])
        operation = client.wait(
            lambda: client.request("GET", api, path, resource=resource),
            lambda op: op.get("done"), resource=resource,
        )
    error = operation.get("error")
    if error:
        reason, status = RPC_CODES.get(error.get("code"), ("UNKNOWN", None))
        raise GcpApiError(status, reason, "operation %s failed: %s" % (operation["name"], error.get("message")),
                          resource=resource)
    return operation.get("response") or {}


# Google Cloud locations: REGION such as us-central1 or northamerica-northeast1; LOCATION also a multi-region
# such as us or europe (Artifact Registry, Cloud Storage).
REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
LOCATION = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def label_errors(labels):
    """Problems with a labels mapping under Google's common label rules, as messages."""
    errors = []
    for key, value in (labels or {}).items():
        if not LABEL_KEY.match(str(key)):
            errors.append("label key %r must start with a lowercase letter and hold at most 63 lowercase "
                          "letters, digits, '_' or '-'" % key)
        if not isinstance(value, str) or not LABEL_VALUE.match(value):
            errors.append("label %r has value %r: use at most 63 lowercase letters, digits, '_' or '-' "
                          "(quote numbers and booleans)" % (key, value))
    if len(labels or {}) > 64:
        errors.append("at most 64 labels are allowed, got %d" % len(labels))
    return errors
