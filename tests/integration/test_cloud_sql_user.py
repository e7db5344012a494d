"""cloud_sql_user against the fake Cloud SQL Admin and Secret Manager APIs (tests/standins/fakegcp).

The module runs as a real process. Cloud SQL never returns passwords, so the password a user got is read
from the fake's request log (the body the module sent), and the module's own raw output is searched for it.
"""

from __future__ import annotations

import base64
import json
import secrets as random_source

import pytest
import requests

from tests.conftest import PROJECT, run_module
from tests.integration.test_cloud_sql_database import create_instance
from tests.standins.fakegcp.server import masked


@pytest.fixture(scope="module")
def postgres(fake_gcp_server):
    return create_instance(fake_gcp_server, "POSTGRES_15")


@pytest.fixture(scope="module")
def mysql(fake_gcp_server):
    return create_instance(fake_gcp_server, "MYSQL_8_0")


class Users:
    def __init__(self, fake, instance, name):
        self.fake, self.instance, self.name = fake, instance, name
        self.output = ""

    def run(self, check=False, diff=True, **options):
        args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=self.fake.endpoints,
                    instance=self.instance, name=self.name, timeout=20)
        args.update(options)
        result, self.output = run_module("cloud_sql_user", args, check=check, diff=diff, raw=True)
        return result

    def listing(self):
        response = requests.get("%s/sql/v1beta4/projects/%s/instances/%s/users" % (
            self.fake.endpoints["sqladmin"], PROJECT, self.instance), timeout=10)
        assert response.status_code == 200, response.text
        return response.json().get("items", [])

    def find(self, name=None):
        found = [u for u in self.listing() if u["name"] == (name or self.name)]
        return found[0] if found else None

    def sent_passwords(self):
        """The passwords the module sent (insert or update bodies), as the fake's request log masks them:
        compare with masked(value)."""
        return [c.body.get("password") for c in self.fake.writes()
                if c.api == "sqladmin" and c.method in ("POST", "PUT") and c.path.endswith("/users")]


@pytest.fixture
def user(fake_gcp, postgres, unique):
    return Users(fake_gcp, postgres, "app_" + unique)


@pytest.fixture
def mysql_user(fake_gcp, mysql, unique):
    return Users(fake_gcp, mysql, "app_" + unique)


@pytest.fixture
def password_secret(fake_gcp, unique):
    """A Secret Manager secret holding a random password, created through the fake's REST API."""
    base = "%s/v1/projects/%s/secrets" % (fake_gcp.endpoints["secretmanager"], PROJECT)
    name = "db-pw-" + unique
    created = requests.post(base, params={"secretId": name}, json={"replication": {"automatic": {}}}, timeout=10)
    assert created.status_code == 200, created.text

    class Secret:
        id = name
        full = "projects/%s/secrets/%s" % (PROJECT, name)

        def add(self, value):
            added = requests.post("%s/%s:addVersion" % (base, name), timeout=10,
                                  json={"payload": {"data": base64.b64encode(value.encode()).decode()}})
            assert added.status_code == 200, added.text
            self.value = value
            return added.json()["name"]

    secret = Secret()
    secret.add("pw-" + random_source.token_urlsafe(18))
    fake_gcp.clear()  # the test sees only the module's own calls
    return secret


def test_password_from_secret_lifecycle(user, password_secret, fake_gcp):
    result = user.run(password_secret=password_secret.id)
    assert result["rc"] == 0 and result["changed"] is True and result["password_updated"] is True, result
    assert user.sent_passwords() == [masked(password_secret.value)], "the password set is the secret's value"
    assert fake_gcp.apis["sqladmin"].password(PROJECT, user.instance, user.name) == password_secret.value
    assert password_secret.value not in user.output
    assert "password" not in result["user"] and result["user"]["name"] == user.name
    assert result["diff"] == {"before": {}, "after": {"name": user.name, "type": "BUILT_IN", "password": "(hidden)"}}
    assert user.find() is not None

    fake_gcp.clear()
    again = user.run(password_secret=password_secret.id)
    assert again["rc"] == 0 and again["changed"] is False and again["password_updated"] is False, again
    assert fake_gcp.writes() == []
    assert not [c for c in fake_gcp.requests if c.api == "secretmanager"], "on_create: no reason to read the secret"

    fake_gcp.clear()
    deleted = user.run(state="absent")
    assert deleted["rc"] == 0 and deleted["changed"] is True and deleted["user"] == {}, deleted
    assert [(c.method, c.query.get("name")) for c in fake_gcp.writes()] == [("DELETE", user.name)]
    assert user.find() is None

    fake_gcp.clear()
    gone = user.run(state="absent")
    assert gone["changed"] is False and fake_gcp.writes() == []


def test_update_password_always_pushes_the_rotated_secret(user, password_secret, fake_gcp):
    full = password_secret.full
    user.run(password_secret=full)
    old = password_secret.value
    password_secret.add("rotated-" + random_source.token_urlsafe(18))

    fake_gcp.clear()
    kept = user.run(password_secret=full)
    assert kept["changed"] is False and fake_gcp.writes() == [], "on_create leaves an existing password alone"

    fake_gcp.clear()
    preview = user.run(check=True, password_secret=full, update_password="always")
    assert preview["changed"] is True and preview["password_updated"] is True and fake_gcp.writes() == []
    assert "(hidden)" in json.dumps(preview["diff"]) and password_secret.value not in user.output

    fake_gcp.clear()
    pushed = user.run(password_secret=full, update_password="always")
    assert pushed["rc"] == 0 and pushed["changed"] is True, pushed
    assert user.sent_passwords() == [masked(password_secret.value)]
    assert fake_gcp.apis["sqladmin"].password(PROJECT, user.instance, user.name) == password_secret.value
    put = fake_gcp.writes()[0]
    assert put.method == "PUT" and put.query.get("name") == user.name
    assert password_secret.value not in user.output and old not in user.output

    fake_gcp.clear()
    again = user.run(password_secret=full, update_password="always")
    assert again["changed"] is True, "Cloud SQL never returns passwords: always reports a change"


def test_pinned_secret_version(user, password_secret):
    first_version, first = password_secret.add("first-" + random_source.token_hex(8)), password_secret.value
    password_secret.add("second-" + random_source.token_hex(8))
    result = user.run(password_secret="%s/versions/%s" % (password_secret.full, first_version.rsplit("/", 1)[1]))
    assert result["rc"] == 0, result
    assert user.sent_passwords() == [masked(first)]


def test_password_given_directly_is_never_in_the_output(user, fake_gcp):
    password = "direct-" + random_source.token_hex(12)
    result = user.run(password=password)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert user.sent_passwords() == [masked(password)]
    assert password not in user.output


def test_missing_secret_fails_clearly_without_writing(user, fake_gcp, unique):
    result = user.run(password_secret="nothing-here-" + unique)
    assert result["rc"] == 1 and result["status"] == 404, result
    assert "nothing-here-%s" % unique in result["msg"]
    assert fake_gcp.writes() == [] and user.find() is None


def test_check_mode_create_writes_nothing(user, password_secret, fake_gcp):
    preview = user.run(check=True, password_secret=password_secret.id)
    assert preview["rc"] == 0 and preview["changed"] is True and preview["password_updated"] is True, preview
    assert fake_gcp.writes() == [] and user.find() is None
    assert password_secret.value not in user.output


def test_check_mode_with_a_secret_still_to_be_created_predicts_the_user(user, fake_gcp, unique):
    """A check run of a playbook whose earlier task would generate the password."""
    preview = user.run(check=True, password_secret="later-" + unique)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert "does not exist" in json.dumps(preview["warnings"]) or "not found" in json.dumps(preview["warnings"])
    assert fake_gcp.writes() == []


def test_iam_service_account_on_postgres_is_trimmed(fake_gcp, postgres, unique):
    email = "sa-%s@%s.iam.gserviceaccount.com" % (unique, PROJECT)
    sa = Users(fake_gcp, postgres, email)
    result = sa.run(type="CLOUD_IAM_SERVICE_ACCOUNT")
    assert result["rc"] == 0 and result["changed"] is True, result
    trimmed = email[:-len(".gserviceaccount.com")]
    created = sa.find(trimmed)
    assert created is not None and created["type"] == "CLOUD_IAM_SERVICE_ACCOUNT", sa.listing()
    assert "password" not in fake_gcp.writes()[0].body

    fake_gcp.clear()
    assert sa.run(type="CLOUD_IAM_SERVICE_ACCOUNT")["changed"] is False and fake_gcp.writes() == []
    sa.name = trimmed  # the trimmed form names the same user
    assert sa.run(type="CLOUD_IAM_SERVICE_ACCOUNT")["changed"] is False and fake_gcp.writes() == []

    refused = sa.run(type="BUILT_IN", password="x" * 12)
    assert refused["rc"] == 1 and "type cannot be changed" in refused["msg"], refused
    assert fake_gcp.writes() == []


def test_iam_user(fake_gcp, postgres, unique):
    person = Users(fake_gcp, postgres, "ada-%s@example.com" % unique)
    assert person.run(type="CLOUD_IAM_USER")["changed"] is True
    assert person.find()["type"] == "CLOUD_IAM_USER"
    fake_gcp.clear()
    assert person.run(type="CLOUD_IAM_USER")["changed"] is False and fake_gcp.writes() == []


def test_mysql_user_host(mysql_user, fake_gcp):
    result = mysql_user.run(password="mysql-" + random_source.token_hex(8))
    assert result["rc"] == 0 and result["changed"] is True, result
    assert mysql_user.find()["host"] == "%", "MySQL users default to any host"

    other = mysql_user.run(password="other-" + random_source.token_hex(8), host="10.0.0.1")
    assert other["changed"] is True, "the same name from another host is another user"
    assert sorted(u["host"] for u in mysql_user.listing() if u["name"] == mysql_user.name) == ["%", "10.0.0.1"]

    fake_gcp.clear()
    deleted = mysql_user.run(state="absent", host="10.0.0.1")
    assert deleted["changed"] is True
    assert fake_gcp.writes()[0].query == {"name": mysql_user.name, "host": "10.0.0.1"}
    assert [u["host"] for u in mysql_user.listing() if u["name"] == mysql_user.name] == ["%"]


def test_host_on_postgres_is_refused_before_writing(user, fake_gcp):
    result = user.run(password="x" * 12, host="%")
    assert result["rc"] == 1 and "host applies to MySQL users only" in result["msg"], result
    assert fake_gcp.writes() == []


def test_default_admin_user_is_not_deleted_without_force(fake_gcp, postgres):
    admin = Users(fake_gcp, postgres, "postgres")
    if admin.find() is None:  # the instance's built-in admin; make sure it is there
        assert admin.run(password="admin-" + random_source.token_hex(8))["rc"] == 0
    fake_gcp.clear()
    refused = admin.run(state="absent")
    assert refused["rc"] == 1 and "default administrative user" in refused["msg"] and "force: true" in refused["msg"]
    assert fake_gcp.writes() == [] and admin.find() is not None

    preview = admin.run(state="absent", force=True, check=True)
    assert preview["changed"] is True and fake_gcp.writes() == []


def test_missing_instance(fake_gcp, unique):
    ghost = Users(fake_gcp, "missing-" + unique, "app")
    failed = ghost.run(password="x" * 12)
    assert failed["rc"] == 1 and "does not exist" in failed["msg"], failed
    preview = ghost.run(check=True, password="x" * 12)
    assert preview["rc"] == 0 and preview["changed"] is True
    assert ghost.run(state="absent")["changed"] is False
    assert fake_gcp.writes() == []


@pytest.mark.parametrize("options, expected", [
    ({"instance": "Bad_Instance", "password": "x" * 12}, "is not a Cloud SQL instance name"),
    ({"name": "a/b", "password": "x" * 12}, "user name 'a/b' is invalid"),
    ({"type": "CLOUD_IAM_SERVICE_ACCOUNT", "name": "sa@example.com"}, "named by the service account's email"),
    ({"type": "CLOUD_IAM_USER", "name": "not-an-email"}, "named by the user's email"),
    ({"type": "CLOUD_IAM_USER", "name": "a@example.com", "password": "x" * 12}, "have no password"),
    ({"password": ""}, "password must not be empty"),
    ({"update_password": "always"}, "update_password: always needs password or password_secret"),
    ({"password_secret": "a/b"}, "password_secret: 'a/b' is not a secret"),
    ({"password_secret": "projects/p/secrets/s/versions/x"}, "secret version 'x' is invalid"),
    ({"password": "x" * 12, "password_secret": "s"}, "mutually exclusive"),
])
def test_bad_input_fails_before_any_call(user, fake_gcp, options, expected):
    result = user.run(**options)
    assert result["rc"] == 1 and expected in result["msg"], result["msg"]
    assert fake_gcp.requests == []


def test_built_in_user_needs_a_password_to_be_created(user, fake_gcp):
    result = user.run()
    assert result["rc"] == 1 and "needs password or password_secret" in result["msg"], result
    assert fake_gcp.writes() == []


def test_transient_errors_are_retried(user, password_secret, fake_gcp):
    fake_gcp.inject(503, count=2)
    fake_gcp.inject(429, count=1, method="GET", path=r"secretmanager/.*:access")
    fake_gcp.inject(503, count=1, method="POST", path=r"sqladmin/.*/users$")
    result = user.run(password_secret=password_secret.id)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert user.find() is not None and user.sent_passwords()[-1] == masked(password_secret.value)


def test_failed_operation_is_reported(user, fake_gcp):
    fake_gcp.fail_operations(count=1, code="INTERNAL_ERROR", message="user could not be created")
    password = "failing-" + random_source.token_hex(8)
    result = user.run(password=password)
    assert result["rc"] == 1 and result["reason"] == "INTERNAL_ERROR", result
    assert "failed: user could not be created" in result["msg"]
    assert password not in user.output


def test_timed_out_wait_then_rerun_converges(user, fake_gcp):
    fake_gcp.operation_polls = 1000
    password = "slow-" + random_source.token_hex(8)
    timed_out = user.run(password=password, timeout=2)
    assert timed_out["rc"] == 1 and timed_out["reason"] == "TIMEOUT", timed_out

    fake_gcp.clear()  # operation_polls back to 1: the running insert finishes on the re-run's next poll
    rerun = user.run(password=password)
    assert rerun["rc"] == 0 and rerun["changed"] is False, rerun
    assert fake_gcp.writes() == [] and user.find() is not None


def test_lost_insert_answer_is_recovered(user, fake_gcp):
    password = "lost-" + random_source.token_hex(8)
    fake_gcp.inject(503, count=1, method="POST", path=r"sqladmin/.*/users$", forward=True)
    result = user.run(password=password)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert user.sent_passwords() == [masked(password)] * 2, "the insert was sent again"
    assert user.find() is not None and result["user"]["name"] == user.name
    assert fake_gcp.apis["sqladmin"].password(PROJECT, user.instance, user.name) == password
