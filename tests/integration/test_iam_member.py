"""iam_member against the fake GCP control plane (project, secret, service account, Cloud Run service and
job), the Cloud Storage emulator (bucket) and the BigQuery emulator (table).

A concurrent policy change is made real at the HTTP boundary: RacingProxy sits between the module and the
API and, just before forwarding the module's write, lets another writer change the policy first. The module
then holds a stale etag; it must retry from a fresh read and keep the other writer's binding.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.conftest import PROJECT

INVOKER = "roles/run.invoker"
ACCESSOR = "roles/secretmanager.secretAccessor"
UNTIL = {"title": "until-2027", "description": "expires with the pilot",
         "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")'}


class RacingProxy:
    """Forwards every request to upstream; the first request matching `trigger` waits until race() has run."""

    def __init__(self, upstream):
        self.upstream = upstream.rstrip("/")
        self.trigger = None
        self.race = None
        self.raced = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    race = None
                    if proxy.trigger and re.search(proxy.trigger, "%s %s" % (self.command, self.path)):
                        race, proxy.trigger = proxy.race, None
                if race:
                    race()  # the other writer goes first
                    proxy.raced += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers,
                                          timeout=30)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def before_next(self, trigger, race):
        with self._lock:
            self.trigger, self.race = trigger, race

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def check(response):
    assert response.status_code == 200, response.text
    return response.json()


class FakePolicies:
    """Reads and writes IAM policies on the fake directly over REST, as another client would."""

    def __init__(self, fake):
        self.fake = fake

    def get(self, kind, name):
        if kind == "project":
            return check(requests.post("%s/cloudresourcemanager/v3/%s:getIamPolicy" % (self.fake.url, name),
                                       json={"options": {"requestedPolicyVersion": 3}}, timeout=10))
        api, method = {"secret": ("secretmanager", "GET"), "service_account": ("iam", "POST")}[kind]
        return check(requests.request(method, "%s/%s/v1/%s:getIamPolicy" % (self.fake.url, api, name),
                                      params={"options.requestedPolicyVersion": 3}, timeout=10))

    def set(self, kind, name, policy):
        api, version = {"project": ("cloudresourcemanager", "v3"), "secret": ("secretmanager", "v1"),
                        "service_account": ("iam", "v1")}[kind]
        return check(requests.post("%s/%s/%s/%s:setIamPolicy" % (self.fake.url, api, version, name),
                                   json={"policy": policy}, timeout=10))

    def grant(self, kind, name, role, member):
        """A read-modify-write by someone else, with the etag it read."""
        policy = self.get(kind, name)
        bindings = policy.setdefault("bindings", [])
        bindings.append({"role": role, "members": [member]})
        return self.set(kind, name, policy)


def binding(policy, role, condition=None):
    """Members of role (under condition) in a policy read from the API."""
    members = set()
    for item in policy.get("bindings") or []:
        if item["role"] == role and (item.get("condition") or None) == condition:
            members.update(item["members"])
    return members


@pytest.fixture
def policies(fake_gcp):
    return FakePolicies(fake_gcp)


@pytest.fixture
def iam(request, gcp_module):
    """Run iam_member against the fake, or against the given endpoints (the bucket tests need no fake)."""
    def run(check=False, endpoints=None, **options):
        endpoints = endpoints or request.getfixturevalue("fake_gcp").endpoints
        args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=endpoints, timeout=20)
        args.update(options)
        return gcp_module("iam_member", args, check=check)
    return run


@pytest.fixture
def project_id(unique):
    """A project of its own: every valid project ID exists in the fake, with an owner binding."""
    return "proj-" + unique


@pytest.fixture
def secret(fake_gcp, unique):
    check(requests.post("%s/secretmanager/v1/projects/%s/secrets" % (fake_gcp.url, PROJECT),
                        params={"secretId": "db-" + unique}, json={"replication": {"automatic": {}}}, timeout=10))
    return "projects/%s/secrets/db-%s" % (PROJECT, unique)


def make_account(fake, account_id):
    created = check(requests.post("%s/iam/v1/projects/%s/serviceAccounts" % (fake.url, PROJECT),
                                  json={"accountId": account_id, "serviceAccount": {"displayName": account_id}},
                                  timeout=10))
    return created["email"]


@pytest.fixture
def account(fake_gcp, unique):
    """A service account that exists (IAM refuses bindings naming a service account that does not)."""
    return make_account(fake_gcp, "sa-" + unique)


# --- project ----------------------------------------------------------------------------------------------

def test_project_grant_lifecycle(iam, fake_gcp, policies, project_id, account):
    member = "serviceAccount:" + account
    name = "projects/" + project_id
    start = policies.get("project", name)
    owner_before = binding(start, "roles/owner")
    assert owner_before, "the fake gives every project an owner"
    fake_gcp.clear()

    preview = iam(check=True, project=project_id, resource_type="project", role=INVOKER, member=member)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert preview["diff"]["before"] == {} and preview["diff"]["after"] == {"role": INVOKER, "members": [member]}
    assert fake_gcp.writes() == [] and binding(policies.get("project", name), INVOKER) == set()

    fake_gcp.clear()
    result = iam(project=project_id, resource_type="project", role=INVOKER, member=member)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["resource"] == name and result["binding"] == {"role": INVOKER, "members": [member]}
    reads = fake_gcp.calls(path=r":getIamPolicy$")
    assert [c.body for c in reads] == [{"options": {"requestedPolicyVersion": 3}}]
    assert [(c.method, c.path) for c in fake_gcp.writes()] == [("POST", "/v3/%s:setIamPolicy" % name)]
    sent = fake_gcp.writes()[0].body["policy"]
    assert sent["etag"] == start["etag"], "the write carries the etag it read"
    policy = policies.get("project", name)
    assert binding(policy, INVOKER) == {member}
    assert binding(policy, "roles/owner") == owner_before, "other bindings are untouched"
    assert result["etag"] == policy["etag"]

    fake_gcp.clear()
    again = iam(project=project_id, resource_type="project", role=INVOKER, member=member)
    assert again["changed"] is False and fake_gcp.writes() == [], again
    assert again["diff"]["before"] == again["diff"]["after"]

    # A second member joins the binding; revoking the first one keeps the second.
    other = "user:carol@example.com"
    iam(project=project_id, resource_type="project", role=INVOKER, member=other)
    fake_gcp.clear()
    revoked = iam(project=project_id, resource_type="project", role=INVOKER, member=member, state="absent")
    assert revoked["changed"] is True, revoked
    assert revoked["diff"]["before"]["members"] == sorted([member, other])
    assert revoked["diff"]["after"] == {"role": INVOKER, "members": [other]}
    assert binding(policies.get("project", name), INVOKER) == {other}

    # Removing the last member removes the binding.
    iam(project=project_id, resource_type="project", role=INVOKER, member=other, state="absent")
    policy = policies.get("project", name)
    assert all(b["role"] != INVOKER for b in policy.get("bindings") or [])
    assert binding(policy, "roles/owner") == owner_before

    fake_gcp.clear()
    gone = iam(project=project_id, resource_type="project", role=INVOKER, member=other, state="absent")
    assert gone["changed"] is False and gone["binding"] == {} and fake_gcp.writes() == []


def test_project_defaults_to_the_project_option_and_member_case_does_not_matter(iam, fake_gcp, policies, project_id):
    result = iam(project=project_id, resource_type="project", role="roles/viewer", member="user:Dave@Example.com")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert binding(policies.get("project", "projects/" + project_id), "roles/viewer") == {"user:dave@example.com"}
    fake_gcp.clear()
    again = iam(project=project_id, resource_type="project", role="roles/viewer", member="user:DAVE@example.com")
    assert again["changed"] is False and fake_gcp.writes() == [], again


def test_conditional_grant_is_its_own_binding_at_version_3(iam, fake_gcp, policies, project_id):
    name = "projects/" + project_id
    member = "user:erin@example.com"
    iam(project=project_id, resource_type="project", role="roles/viewer", member=member)

    fake_gcp.clear()
    preview = iam(check=True, project=project_id, resource_type="project", role="roles/viewer", member=member,
                  condition=UNTIL)
    assert preview["changed"] is True and fake_gcp.writes() == []
    assert preview["diff"]["after"] == {"role": "roles/viewer", "members": [member], "condition": UNTIL}

    result = iam(project=project_id, resource_type="project", role="roles/viewer", member=member, condition=UNTIL)
    assert result["rc"] == 0 and result["changed"] is True, result
    sent = fake_gcp.writes()[-1].body["policy"]
    assert sent["version"] == 3
    policy = policies.get("project", name)
    assert policy["version"] == 3
    assert binding(policy, "roles/viewer", UNTIL) == {member}
    assert binding(policy, "roles/viewer") == {member}, "the unconditional grant stays"

    fake_gcp.clear()
    again = iam(project=project_id, resource_type="project", role="roles/viewer", member=member, condition=UNTIL)
    assert again["changed"] is False and fake_gcp.writes() == [], again

    # Revoking the unconditional grant leaves the conditional one (and the policy at version 3).
    iam(project=project_id, resource_type="project", role="roles/viewer", member=member, state="absent")
    policy = policies.get("project", name)
    assert binding(policy, "roles/viewer") == set() and binding(policy, "roles/viewer", UNTIL) == {member}
    assert fake_gcp.writes()[-1].body["policy"]["version"] == 3


def test_concurrent_change_is_retried_without_losing_the_other_binding(iam, fake_gcp, policies, project_id):
    name = "projects/" + project_id
    proxy = RacingProxy(fake_gcp.url)
    try:
        proxy.before_next(r"^POST /cloudresourcemanager/v3/projects/[^/]+:setIamPolicy",
                          lambda: policies.grant("project", name, "roles/logging.viewer", "user:other@example.com"))
        fake_gcp.clear()
        result = iam(project=project_id, resource_type="project", role=INVOKER, member="user:me@example.com",
                     endpoints={"cloudresourcemanager": proxy.url + "/cloudresourcemanager"})
    finally:
        proxy.close()
    assert proxy.raced == 1
    assert result["rc"] == 0 and result["changed"] is True, result
    sets = fake_gcp.calls(method="POST", path=r":setIamPolicy$")
    assert len(sets) == 3, "the other writer's write, the module's stale one, and the module's retry"
    assert sets[1].body["policy"]["etag"] == sets[0].body["policy"]["etag"], "both read the same policy"
    assert sets[2].body["policy"]["etag"] != sets[1].body["policy"]["etag"], "the retry carries a fresh etag"
    assert {"role": "roles/logging.viewer", "members": ["user:other@example.com"]} in sets[2].body["policy"]["bindings"]
    assert len(fake_gcp.calls(path=r":getIamPolicy$")) >= 3, "the retry starts from a fresh read"
    policy = policies.get("project", name)
    assert binding(policy, "roles/logging.viewer") == {"user:other@example.com"}, "the other writer's grant survives"
    assert binding(policy, INVOKER) == {"user:me@example.com"}
    assert binding(policy, "roles/owner"), "and the owner too"


def test_retries_429_and_503_bursts(iam, fake_gcp, policies, project_id):
    fake_gcp.inject(503, count=2, path=r"cloudresourcemanager/.*:getIamPolicy")
    fake_gcp.inject(429, count=2, path=r"cloudresourcemanager/.*:setIamPolicy")
    result = iam(project=project_id, resource_type="project", role=INVOKER, member="user:frank@example.com")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(fake_gcp.calls(path=r":getIamPolicy$")) == 3
    assert len(fake_gcp.calls(path=r":setIamPolicy$")) == 3
    assert binding(policies.get("project", "projects/" + project_id), INVOKER) == {"user:frank@example.com"}


def test_lost_answer_of_the_write_still_converges(iam, fake_gcp, policies, project_id):
    """The write goes through but its answer is lost (503): the retry meets a stale etag, re-reads, is done."""
    fake_gcp.inject(503, count=1, path=r":setIamPolicy", forward=True)
    result = iam(project=project_id, resource_type="project", role=INVOKER, member="user:gina@example.com")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert binding(policies.get("project", "projects/" + project_id), INVOKER) == {"user:gina@example.com"}
    fake_gcp.clear()
    assert iam(project=project_id, resource_type="project", role=INVOKER,
               member="user:gina@example.com")["changed"] is False
    assert fake_gcp.writes() == []


@pytest.mark.parametrize("options, message", [
    (dict(member="alice@example.com"), "member 'alice@example.com' is invalid"),
    (dict(member="user:alice"), "needs an email address"),
    (dict(role="viewer"), "role 'viewer' is invalid"),
    (dict(member="allUsers"), "allow_public: true"),
    (dict(member="allAuthenticatedUsers"), "makes the resource public"),
    (dict(condition={"title": " ", "expression": "true"}), "condition is invalid"),
    (dict(resource_type="secret"), "resource_type is secret but all of the following are missing: resource"),
    (dict(resource_type="secret", resource="bad/name"), "use projects/PROJECT/secrets/ID"),
    (dict(resource_type="service_account", resource="ab"), "account ID"),
    (dict(resource_type="project", resource="Not_A_Project"), "project 'Not_A_Project'"),
    (dict(condition={"title": "t"}), "missing required arguments: expression"),
    (dict(resource_type="cloud_run_service"), "resource_type is cloud_run_service but all of the following"),
    (dict(resource_type="cloud_run_service", resource="mlflow"), "use LOCATION/NAME"),
    (dict(resource_type="cloud_run_service", resource="us-central1/MLflow"), "the name 'MLflow' needs 1-49"),
    (dict(resource_type="cloud_run_service", resource="us-central1/" + "s" * 50), "needs 1-49 characters"),
    (dict(resource_type="cloud_run_service", resource="us central1/mlflow"), "location 'us central1'"),
    (dict(resource_type="cloud_run_service", resource="projects/p-one/locations/us-central1/jobs/x"), "use LOCATION/NAME"),
    (dict(resource_type="cloud_run_job", resource="us-central1/drift-"), "not ending with '-'"),
    (dict(resource_type="cloud_run_job", resource="projects/Bad_P/locations/us-central1/jobs/drift"), "project 'Bad_P'"),
    (dict(resource_type="bigquery_table"), "resource_type is bigquery_table but all of the following"),
    (dict(resource_type="bigquery_table", resource="predictions"), "use DATASET.TABLE"),
    (dict(resource_type="bigquery_table", resource="ml-ops.predictions"), "dataset ID 'ml-ops'"),
    (dict(resource_type="bigquery_table", resource="mlops.pred/ictions"), "use DATASET.TABLE"),
    (dict(resource_type="bigquery_table", resource="projects/proj-one/datasets/d/tables/t*"), "table ID 't*'"),
])
def test_bad_input_is_rejected_before_any_call(iam, fake_gcp, options, message):
    args = dict(resource_type="project", role=INVOKER, member="user:alice@example.com")
    args.update(options)
    result = iam(**args)
    assert result["rc"] == 1 and result["failed"] is True, result
    assert message in result["msg"], result["msg"]
    assert fake_gcp.requests == []


def test_api_refusal_is_reported_with_status(iam, fake_gcp, project_id):
    """IAM refuses a binding naming a service account that does not exist: the module says so, no retry."""
    missing = "serviceAccount:nobody-%s@%s.iam.gserviceaccount.com" % (project_id[-8:], PROJECT)
    result = iam(project=project_id, resource_type="project", role=INVOKER, member=missing)
    assert result["rc"] == 1 and result["status"] == 400, result
    assert "does not exist" in result["msg"] and "projects/" + project_id in result["msg"], result["msg"]
    assert len(fake_gcp.calls(path=r":setIamPolicy$")) == 1


# --- secret and service account ---------------------------------------------------------------------------

def test_secret_grant_and_revoke(iam, fake_gcp, policies, secret, account):
    member = "serviceAccount:" + account
    short = secret.rsplit("/", 1)[1]
    fake_gcp.clear()
    preview = iam(check=True, resource_type="secret", resource=short, role=ACCESSOR, member=member)
    assert preview["changed"] is True and fake_gcp.writes() == [], preview
    assert [(c.method, c.path, c.query) for c in fake_gcp.requests] == [
        ("GET", "/v1/%s:getIamPolicy" % secret, {"options.requestedPolicyVersion": "3"})]

    result = iam(resource_type="secret", resource=short, role=ACCESSOR, member=member)
    assert result["rc"] == 0 and result["changed"] is True and result["resource"] == secret, result
    assert binding(policies.get("secret", secret), ACCESSOR) == {member}

    fake_gcp.clear()
    again = iam(resource_type="secret", resource=secret, role=ACCESSOR, member=member)
    assert again["changed"] is False and fake_gcp.writes() == [], again

    iam(resource_type="secret", resource=secret, role=ACCESSOR, member=member, state="absent")
    assert policies.get("secret", secret).get("bindings", []) == []


def test_public_grant_only_when_allowed(iam, fake_gcp, policies, secret):
    result = iam(resource_type="secret", resource=secret, role=ACCESSOR, member="allUsers", allow_public=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert binding(policies.get("secret", secret), ACCESSOR) == {"allUsers"}
    fake_gcp.clear()
    revoked = iam(resource_type="secret", resource=secret, role=ACCESSOR, member="allUsers", state="absent")
    assert revoked["rc"] == 0 and revoked["changed"] is True, "revoking needs no opt-in"
    assert binding(policies.get("secret", secret), ACCESSOR) == set()


def test_service_account_policy_by_account_id(iam, fake_gcp, policies, unique, account):
    target = make_account(fake_gcp, "job-" + unique)
    name = "projects/%s/serviceAccounts/%s" % (PROJECT, target)
    member = "serviceAccount:" + account
    fake_gcp.clear()
    result = iam(resource_type="service_account", resource="job-" + unique, role="roles/iam.serviceAccountUser",
                 member=member)
    assert result["rc"] == 0 and result["changed"] is True and result["resource"] == name, result
    reads = fake_gcp.calls(path=r":getIamPolicy$")
    assert [(c.method, c.query, c.body) for c in reads] == [("POST", {"options.requestedPolicyVersion": "3"}, None)]
    assert binding(policies.get("service_account", name), "roles/iam.serviceAccountUser") == {member}
    fake_gcp.clear()
    again = iam(resource_type="service_account", resource=target, role="roles/iam.serviceAccountUser", member=member)
    assert again["changed"] is False and fake_gcp.writes() == [], again


def test_missing_resource_is_reported(iam, fake_gcp, unique):
    result = iam(resource_type="secret", resource="missing-" + unique, role=ACCESSOR, member="user:a@example.com")
    assert result["rc"] == 1 and result["status"] == 404, result
    assert "projects/%s/secrets/missing-%s" % (PROJECT, unique) in result["msg"]
    assert fake_gcp.writes() == []


def test_check_mode_on_a_resource_still_to_be_created_predicts_the_grant(iam, fake_gcp, unique):
    """A check run of a playbook whose earlier task would create the secret."""
    result = iam(check=True, resource_type="secret", resource="later-" + unique, role=ACCESSOR,
                 member="user:a@example.com")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert "does not exist (yet)" in json.dumps(result["warnings"])
    assert fake_gcp.writes() == []


# --- bucket (Cloud Storage emulator) ----------------------------------------------------------------------

@pytest.fixture
def bucket(storage, unique):
    name = "iam-" + unique
    response = requests.post("%s/storage/v1/b" % storage.target, params={"project": PROJECT}, timeout=10,
                             json={"name": name, "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}}})
    assert response.status_code == 200, response.text
    return name


def bucket_policy(storage, name):
    return check(requests.get("%s/storage/v1/b/%s/iam" % (storage.target, name),
                              params={"optionsRequestedPolicyVersion": 3}, timeout=10))


def test_bucket_grant_lifecycle_with_condition(iam, storage, bucket):
    endpoints = {"storage": storage.url}
    member = "group:ml@example.com"
    storage.clear()
    preview = iam(check=True, endpoints=endpoints, resource_type="bucket", resource=bucket,
                  role="roles/storage.objectViewer", member=member)
    assert preview["changed"] is True and storage.writes() == [], preview
    assert preview["resource"] == "projects/_/buckets/" + bucket

    result = iam(endpoints=endpoints, resource_type="bucket", resource=bucket, role="roles/storage.objectViewer",
                 member=member)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert storage.writes() == [("PUT", "/storage/v1/b/%s/iam" % bucket)]
    assert binding(bucket_policy(storage, bucket), "roles/storage.objectViewer") == {member}

    storage.clear()
    again = iam(endpoints=endpoints, resource_type="bucket", resource=bucket, role="roles/storage.objectViewer",
                member=member)
    assert again["changed"] is False and storage.writes() == [], again

    conditional = iam(endpoints=endpoints, resource_type="bucket", resource="gs://" + bucket,
                      role="roles/storage.objectViewer", member=member, condition=UNTIL)
    assert conditional["rc"] == 0 and conditional["changed"] is True, conditional
    policy = bucket_policy(storage, bucket)
    assert policy["version"] == 3 and binding(policy, "roles/storage.objectViewer", UNTIL) == {member}
    assert binding(policy, "roles/storage.objectViewer") == {member}

    iam(endpoints=endpoints, resource_type="bucket", resource=bucket, role="roles/storage.objectViewer",
        member=member, state="absent")
    iam(endpoints=endpoints, resource_type="bucket", resource=bucket, role="roles/storage.objectViewer",
        member=member, condition=UNTIL, state="absent")
    assert bucket_policy(storage, bucket).get("bindings", []) == []


def test_bucket_stale_etag_412_is_retried_keeping_the_other_binding(iam, storage, bucket):
    def other_writer():
        policy = bucket_policy(storage, bucket)
        policy.setdefault("bindings", []).append({"role": "roles/storage.legacyBucketReader",
                                                  "members": ["user:other@example.com"]})
        check(requests.put("%s/storage/v1/b/%s/iam" % (storage.target, bucket), json=policy, timeout=10))

    proxy = RacingProxy(storage.url)
    try:
        proxy.before_next(r"^PUT /storage/v1/b/[^/]+/iam", other_writer)
        storage.clear()
        result = iam(endpoints={"storage": proxy.url}, resource_type="bucket", resource=bucket,
                     role="roles/storage.objectAdmin", member="user:me@example.com")
    finally:
        proxy.close()
    assert proxy.raced == 1
    assert result["rc"] == 0 and result["changed"] is True, result
    assert [w[0] for w in storage.writes()] == ["PUT", "PUT"], "the stale write (412) and the retry"
    policy = bucket_policy(storage, bucket)
    assert binding(policy, "roles/storage.legacyBucketReader") == {"user:other@example.com"}
    assert binding(policy, "roles/storage.objectAdmin") == {"user:me@example.com"}


# --- Cloud Run service and job (fake Cloud Run v2) ----------------------------------------------------------

RUN_KINDS = {"cloud_run_service": ("services", "serviceId"), "cloud_run_job": ("jobs", "jobId")}
IMAGE = "us-docker.pkg.dev/cloudrun/container/hello"


def make_run(fake, kind, name, location="us-central1"):
    """Create a Cloud Run service or job on the fake; its full name."""
    collection, id_param = RUN_KINDS[kind]
    containers = {"containers": [{"image": IMAGE}]}
    body = {"template": containers} if kind == "cloud_run_service" else {"template": {"template": containers}}
    check(requests.post("%s/run/v2/projects/%s/locations/%s/%s" % (fake.url, PROJECT, location, collection),
                        params={id_param: name}, json=body, timeout=10))
    return "projects/%s/locations/%s/%s/%s" % (PROJECT, location, collection, name)


def run_policy(fake, name):
    return check(requests.get("%s/run/v2/%s:getIamPolicy" % (fake.url, name),
                              params={"options.requestedPolicyVersion": 3}, timeout=10))


def run_grant(fake, name, role, member):
    """A read-modify-write by someone else, with the etag it read."""
    policy = run_policy(fake, name)
    policy.setdefault("bindings", []).append({"role": role, "members": [member]})
    return check(requests.post("%s/run/v2/%s:setIamPolicy" % (fake.url, name), json={"policy": policy}, timeout=10))


@pytest.mark.parametrize("kind", sorted(RUN_KINDS))
def test_cloud_run_grant_lifecycle(iam, fake_gcp, kind, unique, account):
    name = make_run(fake_gcp, kind, "mlops-" + unique)
    short = "us-central1/mlops-" + unique
    member = "serviceAccount:" + account
    fake_gcp.clear()

    preview = iam(check=True, resource_type=kind, resource=short, role=INVOKER, member=member)
    assert preview["rc"] == 0 and preview["changed"] is True and preview["resource"] == name, preview
    assert preview["diff"]["after"] == {"role": INVOKER, "members": [member]} and preview["diff"]["before"] == {}
    assert [(c.method, c.api, c.path, c.query) for c in fake_gcp.requests] == [
        ("GET", "run", "/v2/%s:getIamPolicy" % name, {"options.requestedPolicyVersion": "3"})]
    assert binding(run_policy(fake_gcp, name), INVOKER) == set()

    fake_gcp.clear()
    result = iam(resource_type=kind, resource=short, role=INVOKER, member=member)
    assert result["rc"] == 0 and result["changed"] is True and result["resource"] == name, result
    assert result["binding"] == {"role": INVOKER, "members": [member]}
    writes = fake_gcp.writes()
    assert [(c.method, c.api, c.path) for c in writes] == [("POST", "run", "/v2/%s:setIamPolicy" % name)]
    assert writes[0].body["policy"]["bindings"] == [{"role": INVOKER, "members": [member]}]
    policy = run_policy(fake_gcp, name)
    assert binding(policy, INVOKER) == {member} and result["etag"] == policy["etag"]

    fake_gcp.clear()
    again = iam(resource_type=kind, resource=name, role=INVOKER, member=member)
    assert again["rc"] == 0 and again["changed"] is False and fake_gcp.writes() == [], again
    assert len(fake_gcp.requests) == 1 and again["diff"]["before"] == again["diff"]["after"]

    fake_gcp.clear()
    preview_revoke = iam(check=True, resource_type=kind, resource=short, role=INVOKER, member=member, state="absent")
    assert preview_revoke["changed"] is True and preview_revoke["binding"] == {} and fake_gcp.writes() == []
    revoked = iam(resource_type=kind, resource=short, role=INVOKER, member=member, state="absent")
    assert revoked["rc"] == 0 and revoked["changed"] is True and revoked["binding"] == {}, revoked
    assert binding(run_policy(fake_gcp, name), INVOKER) == set()
    fake_gcp.clear()
    gone = iam(resource_type=kind, resource=short, role=INVOKER, member=member, state="absent")
    assert gone["changed"] is False and fake_gcp.writes() == [], gone


def test_public_cloud_run_service_is_an_explicit_grant(iam, fake_gcp, unique):
    name = make_run(fake_gcp, "cloud_run_service", "api-" + unique)
    refused = iam(resource_type="cloud_run_service", resource=name, role=INVOKER, member="allUsers")
    assert refused["rc"] == 1 and "allow_public: true" in refused["msg"], refused
    assert binding(run_policy(fake_gcp, name), INVOKER) == set()
    result = iam(resource_type="cloud_run_service", resource=name, role=INVOKER, member="allUsers", allow_public=True)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert binding(run_policy(fake_gcp, name), INVOKER) == {"allUsers"}


@pytest.mark.parametrize("kind", sorted(RUN_KINDS))
def test_cloud_run_stale_etag_is_retried_keeping_the_other_binding(iam, fake_gcp, kind, unique):
    name = make_run(fake_gcp, kind, "race-" + unique)
    proxy = RacingProxy(fake_gcp.url)
    try:
        proxy.before_next(r"^POST /run/v2/projects/.*:setIamPolicy",
                          lambda: run_grant(fake_gcp, name, "roles/run.viewer", "user:other@example.com"))
        fake_gcp.clear()
        result = iam(resource_type=kind, resource=name, role=INVOKER, member="user:me@example.com",
                     endpoints={"run": proxy.url + "/run"})
    finally:
        proxy.close()
    assert proxy.raced == 1
    assert result["rc"] == 0 and result["changed"] is True, result
    sets = fake_gcp.calls(method="POST", path=r"^run/.*:setIamPolicy$")
    assert len(sets) == 3, "the other writer's write, the module's stale one (409), and the module's retry"
    assert sets[1].body["policy"]["etag"] == sets[0].body["policy"]["etag"], "both read the same policy"
    assert sets[2].body["policy"]["etag"] != sets[1].body["policy"]["etag"], "the retry carries a fresh etag"
    policy = run_policy(fake_gcp, name)
    assert binding(policy, "roles/run.viewer") == {"user:other@example.com"}, "the other writer's grant survives"
    assert binding(policy, INVOKER) == {"user:me@example.com"}


@pytest.mark.parametrize("kind", sorted(RUN_KINDS))
def test_missing_cloud_run_resource(iam, fake_gcp, kind, unique):
    collection = RUN_KINDS[kind][0]
    name = "projects/%s/locations/us-central1/%s/later-%s" % (PROJECT, collection, unique)
    result = iam(resource_type=kind, resource="us-central1/later-" + unique, role=INVOKER, member="user:a@example.com")
    assert result["rc"] == 1 and result["status"] == 404 and name in result["msg"], result
    assert fake_gcp.writes() == []

    fake_gcp.clear()
    preview = iam(check=True, resource_type=kind, resource="us-central1/later-" + unique, role=INVOKER,
                  member="user:a@example.com")
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert "does not exist (yet)" in json.dumps(preview["warnings"]) and fake_gcp.writes() == []


# --- BigQuery table (BigQuery emulator) -------------------------------------------------------------------

VIEWER = "roles/bigquery.dataViewer"


@pytest.fixture
def table(bigquery, unique):
    """A table in a dataset of its own: (DATASET.TABLE, full name)."""
    dataset = "iam_" + unique
    base = "%s/bigquery/v2/projects/%s/datasets" % (bigquery.target, PROJECT)
    check(requests.post(base, json={"datasetReference": {"projectId": PROJECT, "datasetId": dataset}}, timeout=10))
    check(requests.post("%s/%s/tables" % (base, dataset), timeout=10, json={
        "tableReference": {"projectId": PROJECT, "datasetId": dataset, "tableId": "predictions"},
        "schema": {"fields": [{"name": "id", "type": "STRING"}]}}))
    return dataset + ".predictions", "projects/%s/datasets/%s/tables/predictions" % (PROJECT, dataset)


def table_policy(bigquery, name):
    return check(requests.post("%s/bigquery/v2/%s:getIamPolicy" % (bigquery.target, name),
                               json={"options": {"requestedPolicyVersion": 3}}, timeout=10))


def policy_writes(proxy):
    """The recorded calls that change something: getIamPolicy is a POST that only reads."""
    return [r for r in proxy.writes() if not r[1].endswith(":getIamPolicy")]


def test_bigquery_table_grant_lifecycle(iam, bigquery, table):
    short, name = table
    endpoints = {"bigquery": bigquery.url}
    member = "serviceAccount:serving@%s.iam.gserviceaccount.com" % PROJECT
    bigquery.clear()
    preview = iam(check=True, endpoints=endpoints, resource_type="bigquery_table", resource=short, role=VIEWER,
                  member=member)
    assert preview["rc"] == 0 and preview["changed"] is True and preview["resource"] == name, preview
    assert bigquery.requests == [("POST", "/bigquery/v2/%s:getIamPolicy" % name)]
    assert preview["diff"]["after"] == {"role": VIEWER, "members": [member]}

    result = iam(endpoints=endpoints, resource_type="bigquery_table", resource=short, role=VIEWER, member=member)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert policy_writes(bigquery) == [("POST", "/bigquery/v2/%s:setIamPolicy" % name)]
    policy = table_policy(bigquery, name)
    assert binding(policy, VIEWER) == {member} and result["etag"] == policy["etag"]

    bigquery.clear()
    again = iam(endpoints=endpoints, resource_type="bigquery_table", resource=name, role=VIEWER, member=member)
    assert again["rc"] == 0 and again["changed"] is False and policy_writes(bigquery) == [], again
    assert len(bigquery.requests) == 1

    conditional = iam(endpoints=endpoints, resource_type="bigquery_table", resource="%s.%s" % (PROJECT, short),
                      role=VIEWER, member=member, condition=UNTIL)
    assert conditional["rc"] == 0 and conditional["changed"] is True, conditional
    policy = table_policy(bigquery, name)
    assert policy["version"] == 3 and binding(policy, VIEWER, UNTIL) == {member} and binding(policy, VIEWER) == {member}

    bigquery.clear()
    preview_revoke = iam(check=True, endpoints=endpoints, resource_type="bigquery_table", resource=short, role=VIEWER,
                         member=member, state="absent")
    assert preview_revoke["changed"] is True and policy_writes(bigquery) == [], preview_revoke
    revoked = iam(endpoints=endpoints, resource_type="bigquery_table", resource=short, role=VIEWER, member=member,
                  state="absent")
    assert revoked["rc"] == 0 and revoked["changed"] is True and revoked["binding"] == {}, revoked
    policy = table_policy(bigquery, name)
    assert binding(policy, VIEWER) == set() and binding(policy, VIEWER, UNTIL) == {member}, "the conditional one stays"


def test_bigquery_table_stale_etag_is_retried_keeping_the_other_binding(iam, bigquery, table):
    short, name = table

    def other_writer():
        policy = table_policy(bigquery, name)
        policy.setdefault("bindings", []).append({"role": "roles/bigquery.dataEditor",
                                                  "members": ["user:other@example.com"]})
        check(requests.post("%s/bigquery/v2/%s:setIamPolicy" % (bigquery.target, name), json={"policy": policy},
                            timeout=10))

    proxy = RacingProxy(bigquery.url)
    try:
        proxy.before_next(r"^POST /bigquery/v2/projects/.*:setIamPolicy", other_writer)
        bigquery.clear()
        result = iam(endpoints={"bigquery": proxy.url}, resource_type="bigquery_table", resource=short, role=VIEWER,
                     member="user:me@example.com")
    finally:
        proxy.close()
    assert proxy.raced == 1
    assert result["rc"] == 0 and result["changed"] is True, result
    assert policy_writes(bigquery) == [("POST", "/bigquery/v2/%s:setIamPolicy" % name)] * 2, \
        "the stale write (412) and the retry"
    assert len([r for r in bigquery.requests if r[1].endswith(":getIamPolicy")]) == 2, "the retry re-reads"
    policy = table_policy(bigquery, name)
    assert binding(policy, "roles/bigquery.dataEditor") == {"user:other@example.com"}
    assert binding(policy, VIEWER) == {"user:me@example.com"}


def test_missing_bigquery_table(iam, bigquery, table):
    short, name = table
    dataset = short.split(".")[0]
    endpoints = {"bigquery": bigquery.url}
    bigquery.clear()
    result = iam(endpoints=endpoints, resource_type="bigquery_table", resource=dataset + ".later", role=VIEWER,
                 member="user:a@example.com")
    assert result["rc"] == 1 and result["status"] == 404, result
    assert name.replace("predictions", "later") in result["msg"] and policy_writes(bigquery) == []

    preview = iam(check=True, endpoints=endpoints, resource_type="bigquery_table", resource=dataset + ".later",
                  role=VIEWER, member="user:a@example.com")
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert "BigQuery table %s does not exist (yet)" % name.replace("predictions", "later") in json.dumps(preview["warnings"])
    assert policy_writes(bigquery) == []


# --- Artifact Registry repository (fake Artifact Registry v1) ------------------------------------------------

def test_artifact_registry_repository_grant_lifecycle(iam, fake_gcp, unique, account):
    repository = "projects/%s/locations/europe/repositories/images-%s" % (PROJECT, unique)
    check(requests.post("%s/artifactregistry/v1/projects/%s/locations/europe/repositories" % (fake_gcp.url, PROJECT),
                        params={"repositoryId": "images-" + unique}, json={"format": "DOCKER"}, timeout=10))
    fake_gcp.complete_operations()
    writer, member = "roles/artifactregistry.writer", "serviceAccount:" + account
    args = dict(resource_type="artifact_registry_repository", resource="europe/images-" + unique, role=writer,
                member=member)
    fake_gcp.clear()

    result = iam(**args)
    assert result["rc"] == 0 and result["changed"] is True and result["resource"] == repository, result
    assert [(c.method, c.path) for c in fake_gcp.writes()] == [("POST", "/v1/%s:setIamPolicy" % repository)]
    policy = check(requests.get("%s/artifactregistry/v1/%s:getIamPolicy" % (fake_gcp.url, repository), timeout=10))
    assert binding(policy, writer) == {member}

    fake_gcp.clear()
    again = iam(**dict(args, resource=repository))
    assert again["changed"] is False and fake_gcp.writes() == [] and len(fake_gcp.requests) == 1, again

    revoked = iam(**dict(args, state="absent"))
    assert revoked["changed"] is True and revoked["binding"] == {}, revoked
    missing = iam(**dict(args, resource="europe/nothing-" + unique))
    assert missing["rc"] == 1 and missing["status"] == 404, missing


def test_artifact_registry_repository_names_are_checked_before_any_request(iam, fake_gcp):
    for resource, message in (("images", "use LOCATION/NAME"), ("europe/Images", "lowercase letters"),
                              ("Europe/images", "location 'Europe'")):
        result = iam(resource_type="artifact_registry_repository", resource=resource,
                     role="roles/artifactregistry.reader", member="user:me@example.com")
        assert result["rc"] == 1 and message in result["msg"], result
    assert fake_gcp.requests == []


@pytest.mark.parametrize("role", ["roles/owner", "roles/editor", "roles/viewer"])
def test_granting_a_basic_role_warns(iam, policies, project_id, account, role):
    """Basic roles carry permissions on every service: the grant is made, and the run says so."""
    member = "serviceAccount:" + account
    result = iam(resource_type="project", resource=project_id, role=role, member=member)
    assert result["rc"] == 0 and result["changed"] is True, result
    warnings = json.dumps(result.get("warnings") or [])
    assert "%s is a basic role" % role in warnings and member in warnings, result
    assert binding(policies.get("project", "projects/" + project_id), role) >= {member}
    # Revoking it is what the warning asks for: no warning then.
    revoked = iam(resource_type="project", resource=project_id, role=role, member=member, state="absent")
    assert revoked["rc"] == 0 and revoked["changed"] is True and not revoked.get("warnings"), revoked


def test_granting_a_predefined_role_does_not_warn(iam, project_id, account):
    result = iam(resource_type="project", resource=project_id, role=INVOKER, member="serviceAccount:" + account)
    assert result["rc"] == 0 and result["changed"] is True and not result.get("warnings"), result
