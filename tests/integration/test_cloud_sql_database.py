"""cloud_sql_database against the fake Cloud SQL Admin API (tests/standins/fakegcp), run as a real module process.

The instances the databases live in are created through the fake's REST API directly, so these tests do not
depend on the cloud_sql_instance module.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import quote

import pytest
import requests

from tests.conftest import PROJECT


def create_instance(fake, database_version):
    """Create a Cloud SQL instance through the REST API and wait for its operation; return its name."""
    name = "%s-%s" % (database_version.split("_")[0].lower(), uuid.uuid4().hex[:8])
    base = "%s/sql/v1beta4/projects/%s" % (fake.endpoints["sqladmin"], PROJECT)
    iam_flag = "cloudsql_iam_authentication" if database_version.startswith("MYSQL") else "cloudsql.iam_authentication"
    response = requests.post(base + "/instances", timeout=10, json={
        "name": name, "region": "europe-west1", "databaseVersion": database_version,
        "settings": {"tier": "db-custom-1-3840", "edition": "ENTERPRISE",
                     "databaseFlags": [{"name": iam_flag, "value": "on"}]},
    })
    assert response.status_code == 200, response.text
    operation = response.json()
    deadline = time.monotonic() + 30
    while operation.get("status") != "DONE":
        assert time.monotonic() < deadline, "the instance create operation never finished"
        time.sleep(0.05)
        operation = requests.get("%s/operations/%s" % (base, operation["name"]), timeout=10).json()
    assert not operation.get("error"), operation
    return name


@pytest.fixture(scope="module")
def postgres(fake_gcp_server):
    return create_instance(fake_gcp_server, "POSTGRES_15")


@pytest.fixture(scope="module")
def mysql(fake_gcp_server):
    return create_instance(fake_gcp_server, "MYSQL_8_0")


class Databases:
    def __init__(self, fake, gcp_module, instance, name):
        self.fake, self.gcp_module, self.instance, self.name = fake, gcp_module, instance, name

    def url(self, name=None):
        return "%s/sql/v1beta4/projects/%s/instances/%s/databases/%s" % (
            self.fake.endpoints["sqladmin"], PROJECT, self.instance, quote(name or self.name, safe=""))

    def run(self, check=False, diff=True, **options):
        args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=self.fake.endpoints,
                    instance=self.instance, name=self.name, timeout=20)
        args.update(options)
        return self.gcp_module("cloud_sql_database", args, check=check, diff=diff)

    def read(self):
        response = requests.get(self.url(), timeout=10)
        return response.json() if response.status_code == 200 else None


@pytest.fixture
def database(fake_gcp, gcp_module, postgres, unique):
    return Databases(fake_gcp, gcp_module, postgres, "db_" + unique)


@pytest.fixture
def mysql_database(fake_gcp, gcp_module, mysql, unique):
    return Databases(fake_gcp, gcp_module, mysql, "db_" + unique)


def test_lifecycle_create_unchanged_absent(database, fake_gcp):
    result = database.run(charset="UTF8", collation="en_US.UTF8")
    assert result["rc"] == 0 and result["changed"] is True, result
    actual = database.read()
    assert actual["charset"] == "UTF8" and actual["collation"] == "en_US.UTF8"
    assert result["database"]["name"] == database.name and result["database"]["instance"] == database.instance
    assert [(c.method, c.path.rsplit("/", 1)[1]) for c in fake_gcp.writes()] == [("POST", "databases")]

    fake_gcp.clear()
    again = database.run(charset="UTF8", collation="en_US.UTF8")
    assert again["rc"] == 0 and again["changed"] is False, again
    assert fake_gcp.writes() == []

    fake_gcp.clear()
    same_case_insensitive = database.run(charset="utf8", collation="en_us.utf8")
    assert same_case_insensitive["changed"] is False and fake_gcp.writes() == [], same_case_insensitive

    fake_gcp.clear()
    deleted = database.run(state="absent")
    assert deleted["rc"] == 0 and deleted["changed"] is True and deleted["database"] == {}, deleted
    assert [c.method for c in fake_gcp.writes()] == ["DELETE"]
    assert database.read() is None

    fake_gcp.clear()
    gone = database.run(state="absent")
    assert gone["changed"] is False and fake_gcp.writes() == []


def test_defaults_come_from_the_server(database):
    result = database.run()
    assert result["rc"] == 0 and result["changed"] is True, result
    actual = database.read()
    assert actual["charset"] and actual["collation"], actual
    assert database.run(charset=actual["charset"])["changed"] is False


def test_check_mode_writes_nothing_and_shows_the_diff(database, fake_gcp):
    preview = database.run(check=True, charset="UTF8")
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert preview["diff"] == {"before": {}, "after": {"name": database.name, "charset": "UTF8"}}
    assert fake_gcp.writes() == [] and database.read() is None

    database.run(charset="UTF8")
    fake_gcp.clear()
    absent = database.run(check=True, state="absent")
    assert absent["changed"] is True and absent["diff"]["after"] == {} and fake_gcp.writes() == []
    assert database.read() is not None


def test_postgres_charset_and_collation_cannot_change(database, fake_gcp):
    database.run(charset="UTF8", collation="en_US.UTF8")
    for check in (True, False):
        fake_gcp.clear()
        refused = database.run(check=check, collation="C")
        assert refused["rc"] == 1 and "cannot be changed on PostgreSQL" in refused["msg"], refused
        assert "collation is 'en_US.UTF8', asked for 'C'" in refused["msg"] and database.name in refused["msg"]
        assert fake_gcp.writes() == []
    assert database.read()["collation"] == "en_US.UTF8"


def test_mysql_charset_and_collation_change_in_place(mysql_database, fake_gcp):
    db = mysql_database
    created = db.run(charset="utf8mb4", collation="utf8mb4_0900_ai_ci")
    assert created["rc"] == 0, created

    fake_gcp.clear()
    preview = db.run(check=True, collation="utf8mb4_unicode_ci")
    assert preview["changed"] is True and preview["changed_fields"] == ["collation"]
    assert preview["diff"] == {"before": {"name": db.name, "collation": "utf8mb4_0900_ai_ci"},
                               "after": {"name": db.name, "collation": "utf8mb4_unicode_ci"}}
    assert fake_gcp.writes() == []

    updated = db.run(collation="utf8mb4_unicode_ci")
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert [c.method for c in fake_gcp.writes()] == ["PATCH"]
    assert db.read()["collation"] == "utf8mb4_unicode_ci" and db.read()["charset"] == "utf8mb4"
    assert updated["database"]["collation"] == "utf8mb4_unicode_ci"

    fake_gcp.clear()
    assert db.run(collation="utf8mb4_unicode_ci")["changed"] is False and fake_gcp.writes() == []


def test_missing_instance_fails_clearly_but_check_mode_predicts(fake_gcp, gcp_module, unique):
    db = Databases(fake_gcp, gcp_module, "missing-" + unique, "mlflow")
    failed = db.run()
    assert failed["rc"] == 1 and "Cloud SQL instance missing-%s does not exist" % unique in failed["msg"], failed
    assert fake_gcp.writes() == []

    preview = db.run(check=True)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert "instance missing-%s does not exist (yet)" % unique in json.dumps(preview.get("warnings")), preview

    absent = db.run(state="absent")
    assert absent["rc"] == 0 and absent["changed"] is False, absent
    assert fake_gcp.writes() == []


@pytest.mark.parametrize("options, expected", [
    ({"instance": "Bad_Instance"}, "instance 'Bad_Instance' is not a Cloud SQL instance name"),
    ({"instance": "1abc"}, "is not a Cloud SQL instance name"),
    ({"name": "a/b"}, "database name 'a/b' is invalid"),
    ({"name": "x" * 64}, "use 1 to 63 characters"),
    ({"charset": " "}, "charset must not be empty"),
    ({"state": "gone"}, "value of state must be one of"),
])
def test_bad_input_fails_before_any_call(database, fake_gcp, options, expected):
    result = database.run(**options)
    assert result["rc"] == 1 and expected in result["msg"], result["msg"]
    assert fake_gcp.requests == []


def test_transient_errors_are_retried(database, fake_gcp):
    fake_gcp.inject(503, count=2)
    fake_gcp.inject(429, count=2, method="POST", path=r"sqladmin/.*/databases$")
    result = database.run(charset="UTF8")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len([c for c in fake_gcp.requests if c.method == "POST"]) == 3
    assert database.read()["charset"] == "UTF8"


def test_failed_operation_is_reported(database, fake_gcp):
    fake_gcp.fail_operations(count=1, code="INTERNAL_ERROR", message="the database could not be created")
    result = database.run()
    assert result["rc"] == 1, result
    assert result["reason"] == "INTERNAL_ERROR"
    assert "failed: the database could not be created" in result["msg"] and database.name in result["msg"]
    assert database.read() is None

    fake_gcp.clear()
    retried = database.run()
    assert retried["rc"] == 0 and retried["changed"] is True and database.read() is not None


def test_timed_out_wait_then_rerun_converges(database, fake_gcp):
    fake_gcp.operation_polls = 1000
    timed_out = database.run(charset="UTF8", timeout=2)
    assert timed_out["rc"] == 1 and timed_out["reason"] == "TIMEOUT", timed_out
    assert "run again to converge" in timed_out["msg"]

    fake_gcp.clear()  # back to operation_polls 1: the running create finishes on the re-run's next poll
    rerun = database.run(charset="UTF8")
    assert rerun["rc"] == 0 and rerun["changed"] is False, rerun
    assert fake_gcp.writes() == [], "the re-run waits for the create it left running, and creates nothing"
    assert database.read()["charset"] == "UTF8"


def test_lost_create_answer_is_recovered(database, fake_gcp):
    fake_gcp.inject(503, count=1, method="POST", path=r"sqladmin/.*/databases$", forward=True)
    result = database.run(charset="UTF8")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len([c for c in fake_gcp.writes() if c.method == "POST"]) == 2, "the insert was sent again"
    assert database.read()["charset"] == "UTF8" and result["database"]["name"] == database.name
