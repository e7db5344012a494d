# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""MLflow's REST API 2.0 (model registry and runs) for the mlflow_* modules.

The modules speak the REST API rather than import MLflow: the controller needs only requests (and
google-auth for an IAM-protected server), and each call is one plain request that the retry below covers.
Authentication is MLflow's basic-auth (username and password) and, for MLflow on Cloud Run behind IAM, a
Google ID token whose audience is the service URL. With both, the ID token goes in X-Serverless-Authorization
(Cloud Run checks only that header then, and passes Authorization on to MLflow) and the basic credentials in
Authorization, as the serving app does (roles/serving/files/mlops_serving/auth.py).

Failures raise MlflowApiError, a GcpApiError, so that the shared converge loop (resource.py) reports them the
same way as a Google API error: one message with the HTTP status, MLflow's error code and the resource.
"""

from __future__ import annotations

import base64
import re
import time
import traceback
from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import (
    MAX_BACKOFF, REQUEST_TIMEOUT, RETRYABLE_STATUS, ApiModule, GcpApiError, backoff_delays)
from ansible_collections.deployml.mlops.plugins.module_utils.resource import ResourceError

API = "/api/2.0/mlflow"
SERVERLESS_HEADER = "X-Serverless-Authorization"
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
SEARCH_PAGE = 1000
MISSING_ALIAS = re.compile(r"^Registered model alias \S+ not found")
# MLflow's own rules (mlflow.utils.validation), checked before any call so that a bad option changes nothing.
ALIAS = re.compile(r"^[\w-]{1,255}$")
RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)
VERSION = re.compile(r"^[1-9][0-9]*$")
MAX_TAG_KEY = 250
MAX_TAG_VALUE = 100000
# Tags MLflow sets itself (mlflow.prompt..., mlflow.source...): never removed by purge_tags.
RESERVED_TAG_PREFIX = "mlflow."

MLFLOW_ARGUMENT_SPEC = dict(
    tracking_uri=dict(type="str", fallback=(env_fallback, ["MLFLOW_TRACKING_URI"])),
    username=dict(type="str", fallback=(env_fallback, ["MLFLOW_TRACKING_USERNAME"])),
    password=dict(type="str", no_log=True, fallback=(env_fallback, ["MLFLOW_TRACKING_PASSWORD"])),
    google_id_token=dict(type="bool", default=False),
    id_token_audience=dict(type="str", no_log=False),  # a URL, not a secret
    id_token=dict(type="str", no_log=True),
    timeout=dict(type="int", default=120),
)


class MlflowApiError(GcpApiError):
    """An MLflow call that failed for good (after retries). reason is MLflow's error_code when it sent one."""

    @classmethod
    def from_response(cls, response, resource=None):
        """Read MLflow's error shape {"error_code", "message"}; anything else (a proxy's page) as text."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("error_code"):
            reason, message = body["error_code"], body.get("message") or ""
        else:
            text = re.sub(r"<[^>]+>", " ", response.text or "")  # an HTML error page: its words only
            reason, message = response.reason, " ".join(text.split())[:300] or response.reason or "no message"
        return cls(response.status_code, reason, message, resource=resource,
                   method=response.request.method if response.request is not None else None)


def origin(url):
    """scheme://host[:port] of a URL: the audience Cloud Run expects in an ID token for its service."""
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme, parts.netloc)


def auth_headers(username=None, password=None, id_token=None):
    """The headers that authenticate a request: basic credentials for MLflow, the ID token for Cloud Run."""
    basic = None
    if username is not None:
        pair = ("%s:%s" % (username, password or "")).encode("utf-8")
        basic = "Basic " + base64.b64encode(pair).decode("ascii")
    if id_token and basic:
        return {"Authorization": basic, SERVERLESS_HEADER: "Bearer " + id_token}
    if id_token:
        return {"Authorization": "Bearer " + id_token}
    return {"Authorization": basic} if basic else {}


def fetch_id_token(audience):
    """A Google-signed ID token for audience, from Application Default Credentials."""
    import google.auth.exceptions
    import google.auth.transport.requests
    import google.oauth2.id_token

    try:
        return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except (google.auth.exceptions.GoogleAuthError, ValueError) as exc:
        # A user's gcloud login cannot mint ID tokens for another audience through google-auth: say what can.
        raise ResourceError(
            "cannot get a Google ID token for %s (%s: %s). google_id_token needs a service account: "
            "GOOGLE_APPLICATION_CREDENTIALS naming its key file (or an impersonated account), or the metadata "
            "server on Google Cloud. As a user, pass a token in id_token instead, for example from "
            "`gcloud auth print-identity-token`" % (audience, type(exc).__name__, " ".join(str(exc).split())[:300])
        ) from None


class MlflowModule(ApiModule):
    """ApiModule with the options that reach an MLflow server, and a lazily built client."""

    def __init__(self, argument_spec, **kwargs):
        spec = dict(MLFLOW_ARGUMENT_SPEC)
        spec.update(argument_spec)
        kwargs.setdefault("supports_check_mode", True)
        kwargs["mutually_exclusive"] = list(kwargs.get("mutually_exclusive") or []) + [("google_id_token", "id_token")]
        kwargs["required_together"] = list(kwargs.get("required_together") or []) + [("username", "password")]
        super().__init__(argument_spec=spec, **kwargs)
        uri = self.params["tracking_uri"]
        if not uri:
            self.fail_json(msg="tracking_uri is required: set the tracking_uri option or the MLFLOW_TRACKING_URI "
                           "environment variable to the MLflow server's URL")
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.fail_json(msg="tracking_uri must be the http(s) URL of an MLflow tracking server, got %r" % uri)
        if self.params["timeout"] < 0:
            self.fail_json(msg="timeout must be 0 or more seconds, got %d" % self.params["timeout"])

    def new_client(self):
        return MlflowClient(self)


class MlflowClient:
    """Sends requests to MLflow's REST API with retry, and turns failures into MlflowApiError."""

    def __init__(self, module, session=None, sleep=time.sleep, fetch_token=fetch_id_token):
        self.module = module
        self.params = module.params
        self.base = self.params["tracking_uri"].rstrip("/")
        self.timeout = self.params["timeout"]
        self._session = session
        self._sleep = sleep
        self._fetch_token = fetch_token
        self._headers = None

    @property
    def session(self):
        if self._session is None:
            try:
                import requests
            except ImportError:
                self.module.fail_json(msg=missing_required_lib("requests"), exception=traceback.format_exc())
            self._session = requests.Session()
        return self._session

    @property
    def audience(self):
        return self.params["id_token_audience"] or origin(self.base)

    def headers(self):
        """The authentication headers, built once: an ID token lasts an hour, far longer than a module runs."""
        if self._headers is None:
            token = self.params["id_token"]
            if self.params["google_id_token"]:
                token = self._fetch_token(self.audience)
            self._headers = auth_headers(self.params["username"], self.params["password"], token)
        return self._headers

    def request(self, method, endpoint, resource=None, params=None, body=None, not_found_ok=False):
        """One call of the REST API (endpoint such as "/registered-models/get"). Returns the decoded JSON
        body ({} when empty), or None for a missing resource when not_found_ok."""
        session = self.session
        headers = self.headers()
        import requests

        url = self.base + API + endpoint
        delays = backoff_delays(self.timeout)
        while True:
            retry_after = None
            try:
                response = session.request(method, url, params=params, json=body, headers=headers,
                                           timeout=REQUEST_TIMEOUT)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure = MlflowApiError(None, type(exc).__name__, str(exc), resource=resource, method=method)
            else:
                if response.status_code < 400:
                    return response.json() if response.content else {}
                failure = MlflowApiError.from_response(response, resource=resource)
                # Only MLflow's own "does not exist" means missing: a 404 page from a wrong URL is an error.
                if not_found_ok and failure.reason == NOT_FOUND:
                    return None
                if response.status_code not in RETRYABLE_STATUS:
                    self._explain(failure, response)
                    raise failure
                retry_after = response.headers.get("Retry-After")
            delay = next(delays, None)
            if delay is None:
                failure.message += " (gave up retrying after %ss; raise timeout to wait longer)" % self.timeout
                raise failure
            if retry_after and retry_after.isdigit():
                delay = max(delay, min(float(retry_after), MAX_BACKOFF))
            self._sleep(delay)

    def get(self, endpoint, resource=None, **params):
        return self.request("GET", endpoint, resource=resource, params=params, not_found_ok=True)

    def _explain(self, failure, response):
        """Say which of the two gates refused a 401/403 and what to set: MLflow's basic-auth answers in text
        (401 with WWW-Authenticate: Basic), the IAM check in front of Cloud Run with its own page."""
        p = self.params
        if failure.status not in (401, 403):
            return
        basic = response.headers.get("WWW-Authenticate", "").lower().startswith("basic")
        page = "<html" in (response.text or "").lower()
        mlflow = basic or failure.status == 403 and not page  # MLflow's basic-auth answers 403 in plain text
        if failure.status == 401 and basic:
            hint = ("MLflow's basic-auth is on: set username and password (or MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD)" if p["username"] is None else
                    "MLflow refused the password of user %s" % p["username"])
        elif mlflow:
            hint = ("MLflow user %s lacks the permission for this call: changing a model or moving its alias needs "
                    "EDIT (or MANAGE) on the model, which MLflow's admin grants" % (p["username"] or "(anonymous)"))
        elif p["google_id_token"] or p["id_token"]:
            hint = ("the IAM check in front of MLflow refused the ID token (audience %s): the caller needs "
                    "roles/run.invoker on the MLflow service, and the audience must be the service's URL"
                    % self.audience)
        else:
            hint = ("the IAM check in front of MLflow (Cloud Run) wants a Google ID token: set google_id_token: true "
                    "(a service account), or pass one in id_token (`gcloud auth print-identity-token`)")
        failure.message = "%s. %s said: %s" % (hint, "MLflow" if mlflow else "The server", failure.message)


# -- reading the registry ------------------------------------------------------------------------------------
def tag_dict(tags):
    """MLflow's [{key, value}] as a mapping."""
    return {tag["key"]: tag.get("value", "") for tag in tags or []}


def model_view(raw):
    """A registered model as the modules return it: tags and aliases as mappings (alias -> version)."""
    return dict(
        name=raw["name"],
        description=raw.get("description") or "",
        tags=tag_dict(raw.get("tags")),
        aliases={a["alias"]: str(a["version"]) for a in raw.get("aliases") or []},
        creation_timestamp=raw.get("creation_timestamp"),
        last_updated_timestamp=raw.get("last_updated_timestamp"),
    )


def version_view(raw):
    """A model version as the modules return it."""
    return dict(
        name=raw["name"],
        version=str(raw["version"]),
        run_id=raw.get("run_id") or None,
        status=raw.get("status"),
        source=raw.get("source"),
        description=raw.get("description") or "",
        tags=tag_dict(raw.get("tags")),
        aliases=list(raw.get("aliases") or []),
        creation_timestamp=raw.get("creation_timestamp"),
    )


def get_model(client, name):
    """The registered model's view, or None when there is none of that name."""
    answer = client.get("/registered-models/get", resource="registered model %s" % name, name=name)
    return model_view(answer["registered_model"]) if answer is not None else None


def get_version(client, name, version):
    answer = client.get("/model-versions/get", resource="version %s of registered model %s" % (version, name),
                        name=name, version=str(version))
    return version_view(answer["model_version"]) if answer is not None else None


def version_by_alias(client, name, alias):
    """The version alias points at, or None when the alias (or the model) does not exist."""
    try:
        answer = client.get("/registered-models/alias", resource="alias %s of registered model %s" % (alias, name),
                            name=name, alias=alias)
    except MlflowApiError as exc:
        # MLflow answers a missing alias of an existing model with 400 INVALID_PARAMETER_VALUE, not 404.
        if exc.reason == "INVALID_PARAMETER_VALUE" and MISSING_ALIAS.search(exc.message):
            return None
        raise
    return version_view(answer["model_version"]) if answer is not None else None


def list_versions(client, name):
    """Every version of the model (model-versions/search, page by page), in version order."""
    quote = '"' if "'" in name else "'"
    params = {"filter": "name=%s%s%s" % (quote, name, quote), "max_results": SEARCH_PAGE}
    found = []
    while True:
        answer = client.request("GET", "/model-versions/search", resource="registered model %s" % name,
                                params=params)
        found += [version_view(v) for v in answer.get("model_versions") or []]
        if not answer.get("next_page_token"):
            return sorted(found, key=lambda v: int(v["version"]))
        params = dict(params, page_token=answer["next_page_token"])


def run_metrics(client, run_id):
    """The latest value of each metric logged on the run."""
    answer = client.request("GET", "/runs/get", resource="run %s" % run_id, params={"run_id": run_id})
    return {m["key"]: m.get("value") for m in (answer.get("run") or {}).get("data", {}).get("metrics") or []}


def _version_list(versions):
    return ", ".join(v["version"] for v in versions) or "none"


def resolve_version(client, name, spec, what, model_exists=True):
    """The version number spec names (a number, or `latest`: the highest READY version) as a string, checked
    to exist and be READY. Raises ResourceError naming `what` asked for it and what to do."""
    spec = str(spec)
    if not model_exists:
        raise ResourceError(
            "registered model %s does not exist, so it has no version %s for %s: register a version first "
            "(mlflow.register_model, or log_model with registered_model_name=%r)" % (name, spec, what, name))
    if spec == "latest":
        ready = [v for v in list_versions(client, name) if v["status"] == "READY"]
        if not ready:
            raise ResourceError("registered model %s has no READY version, so %s (latest) points nowhere: register "
                                "a version first" % (name, what))
        return ready[-1]["version"]
    if not VERSION.match(spec):
        raise ResourceError("%s must be a version number or 'latest', got %r" % (what, spec))
    version = get_version(client, name, spec)
    if version is None:
        known = _version_list(list_versions(client, name))
        raise ResourceError("registered model %s has no version %s (%s asks for it; its versions: %s): register "
                            "that version first, or fix %s" % (name, spec, what, known, what))
    if version["status"] != "READY":
        raise ResourceError("version %s of registered model %s is %s, not READY: %s cannot point at it%s" % (
            spec, name, version["status"], what,
            " until its registration ends; run again then" if version["status"] == "PENDING_REGISTRATION" else ""))
    return spec


# -- checking options ------------------------------------------------------------------------------------------
def tag_errors(tags, option="tags"):
    """Problems with a tags mapping (MLflow's limits; values must be text, numbers are turned into text)."""
    errors = []
    for key, value in (tags or {}).items():
        if not str(key) or len(str(key)) > MAX_TAG_KEY:
            errors.append("%s key %r must have 1 to %d characters" % (option, key, MAX_TAG_KEY))
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            errors.append("%s %r has value %r: use text (quote booleans; a list or mapping can go in as JSON text "
                          "with | to_json)" % (option, key, value))
        elif len(str(value)) > MAX_TAG_VALUE:
            errors.append("%s %r holds %d characters; MLflow keeps at most %d"
                          % (option, key, len(str(value)), MAX_TAG_VALUE))
    return errors


def tag_values(tags):
    """The tags as MLflow stores them: text (a number as Python writes it)."""
    return None if tags is None else {str(k): str(v) for k, v in tags.items()}


def alias_errors(aliases):
    errors = []
    for alias, version in (aliases or {}).items():
        if not ALIAS.match(str(alias)):
            errors.append("alias %r must be 1 to 255 letters, digits, '_' and '-'" % alias)
        elif RESERVED_ALIAS.match(str(alias)):
            errors.append("alias %r is reserved by MLflow (latest, and v followed by a number, name versions)" % alias)
        number = isinstance(version, int) and not isinstance(version, bool) and version > 0
        text = isinstance(version, str) and (VERSION.match(version) or version == "latest")
        if not (number or text):
            errors.append("aliases.%s must be a version number or 'latest', got %r" % (alias, version))
    return errors


def without_reserved(tags, keep=()):
    """The tags without MLflow's own (mlflow.*), except those in keep: what purge_tags compares and removes."""
    return {k: v for k, v in tags.items() if not k.startswith(RESERVED_TAG_PREFIX) or k in keep}


def sync_tags(client, endpoint_prefix, ident, actual, desired, purge, resource):
    """Set the tags whose value differs, and with purge delete those not in desired (MLflow's own excepted).
    ident: the request fields naming the object ({name} or {name, version})."""
    for key, value in sorted(desired.items()):
        if actual.get(key) != value:
            client.request("POST", endpoint_prefix + "/set-tag", resource=resource,
                           body=dict(ident, key=key, value=value))
    if purge:
        for key in sorted(without_reserved(actual, keep=desired)):
            if key not in desired:
                # A delete retried after a lost answer finds the tag gone: that is the wanted state.
                client.request("DELETE", endpoint_prefix + "/delete-tag", resource=resource, body=dict(ident, key=key),
                               not_found_ok=True)
