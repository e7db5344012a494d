"""Contract tests of the fake's Cloud SQL Admin v1beta4, over plain HTTP."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from tests.integration.test_fakegcp_contract import PROJECT, call, error_of
from tests.integration.test_fakegcp_secretmanager import add_version, create_secret
from tests.standins.fakegcp.server import masked

BASE = "/sql/v1beta4/projects/%s" % PROJECT
PG_SETTINGS = {"tier": "db-custom-1-3840", "edition": "ENTERPRISE"}


def sql(fake, method, path, body=None, params=None):
    return call(fake, method, "sqladmin", BASE + path, body, params)


def wait(fake, operation, limit=20):
    """Poll a sql#operation until DONE; returns (operation, polls)."""
    for polls in range(limit):
        if operation["status"] == "DONE":
            return operation, polls
        response = sql(fake, "GET", "/operations/%s" % operation["name"])
        assert response.status_code == 200, response.text
        operation = response.json()
    raise AssertionError("operation not done: %s" % operation)


def create(fake, name, version="POSTGRES_16", settings=None, **fields):
    body = dict({"name": name, "databaseVersion": version, "region": "europe-west1",
                 "settings": settings or dict(PG_SETTINGS)}, **fields)
    response = sql(fake, "POST", "/instances", body)
    assert response.status_code == 200, response.text
    operation, _polls = wait(fake, response.json())
    assert "error" not in operation, operation
    return sql(fake, "GET", "/instances/%s" % name).json()


def patch(fake, name, body):
    response = sql(fake, "PATCH", "/instances/%s" % name, body)
    assert response.status_code == 200, response.text
    return wait(fake, response.json())[0]


class TestInstances:
    def test_create_sets_output_fields_and_defaults(self, fake_gcp, unique):
        name = "pg-%s" % unique
        fake_gcp.operation_polls = 2
        response = sql(fake_gcp, "POST", "/instances", {
            "name": name, "databaseVersion": "POSTGRES_16", "region": "europe-west1", "settings": dict(PG_SETTINGS),
            "state": "RUNNABLE", "connectionName": "evil", "ipAddresses": [{"ipAddress": "1.1.1.1"}]})
        operation = response.json()
        assert (operation["kind"], operation["status"], operation["operationType"]) == ("sql#operation", "PENDING",
                                                                                        "CREATE")
        assert operation["targetId"] == name and operation["targetProject"] == PROJECT
        assert operation["targetLink"].endswith("/sql/v1beta4/projects/%s/instances/%s" % (PROJECT, name))
        assert operation["selfLink"].endswith("/operations/%s" % operation["name"])
        pending = sql(fake_gcp, "GET", "/instances/%s" % name).json()
        assert pending["state"] == "PENDING_CREATE" and "ipAddresses" not in pending
        running = sql(fake_gcp, "GET", "/operations/%s" % operation["name"]).json()
        assert running["status"] == "RUNNING" and "endTime" not in running
        done, polls = wait(fake_gcp, running)
        assert polls == 1 and done["endTime"] and done["startTime"]

        instance = sql(fake_gcp, "GET", "/instances/%s" % name).json()
        assert instance["state"] == "RUNNABLE" and instance["kind"] == "sql#instance"
        assert instance["connectionName"] == "%s:europe-west1:%s" % (PROJECT, name)
        assert [a["type"] for a in instance["ipAddresses"]] == ["PRIMARY"]
        assert instance["ipAddresses"][0]["ipAddress"] != "1.1.1.1"
        assert instance["backendType"] == "SECOND_GEN" and instance["gceZone"].startswith("europe-west1-")
        assert instance["databaseInstalledVersion"].startswith("POSTGRES_16_")
        assert instance["serverCaCert"]["kind"] == "sql#sslCert" and instance["etag"] and instance["createTime"]
        settings = instance["settings"]
        assert settings["settingsVersion"] == "1"
        expected = {"dataDiskType": "PD_SSD", "dataDiskSizeGb": "10", "storageAutoResize": True,
                    "availabilityType": "ZONAL", "pricingPlan": "PER_USE", "activationPolicy": "ALWAYS",
                    "edition": "ENTERPRISE", "deletionProtectionEnabled": False}
        assert {k: settings[k] for k in expected} == expected
        assert settings["ipConfiguration"]["ipv4Enabled"] is True
        assert settings["backupConfiguration"]["enabled"] is False

    def test_postgres_starts_with_postgres_database_and_user(self, fake_gcp, unique):
        create(fake_gcp, "pgdef-%s" % unique)
        databases = sql(fake_gcp, "GET", "/instances/pgdef-%s/databases" % unique).json()["items"]
        assert [(d["name"], d["charset"], d["collation"]) for d in databases] == [("postgres", "UTF8", "en_US.UTF8")]
        users = sql(fake_gcp, "GET", "/instances/pgdef-%s/users" % unique).json()["items"]
        assert [u["name"] for u in users] == ["postgres"]

    def test_list_instances(self, fake_gcp, unique):
        create(fake_gcp, "lst-%s" % unique)
        listing = sql(fake_gcp, "GET", "/instances").json()
        assert listing["kind"] == "sql#instancesList"
        assert "lst-%s" % unique in [i["name"] for i in listing["items"]]

    @pytest.mark.parametrize("name", ["1starts-digit", "Upper", "under_score", "ends-", "x" * 99])
    def test_bad_instance_names(self, fake_gcp, name):
        response = sql(fake_gcp, "POST", "/instances", {"name": name, "databaseVersion": "POSTGRES_16",
                                                        "settings": dict(PG_SETTINGS)})
        error_of(response, 400)

    @pytest.mark.parametrize("body", [
        {"databaseVersion": "POSTGRES_16", "settings": PG_SETTINGS},                         # no name
        {"name": "no-tier", "databaseVersion": "POSTGRES_16", "settings": {"edition": "ENTERPRISE"}},
        {"name": "bad-enum", "databaseVersion": "POSTGRES_99", "settings": PG_SETTINGS},
        {"name": "bad-field", "databaseVersion": "POSTGRES_16", "settings": dict(PG_SETTINGS, tierr="x")},
        {"name": "plus-tier", "databaseVersion": "POSTGRES_16", "settings": {"tier": "db-custom-1-3840"}},
        {"name": "ent-tier", "databaseVersion": "POSTGRES_15", "settings": {"tier": "db-perf-optimized-N-2"}},
        {"name": "bad-custom", "databaseVersion": "POSTGRES_15", "settings": {"tier": "db-custom-3-3840"}},
        {"name": "small-disk", "databaseVersion": "POSTGRES_15", "settings": dict(PG_SETTINGS, dataDiskSizeGb="5")},
        {"name": "disk-type", "databaseVersion": "POSTGRES_15", "settings": dict(PG_SETTINGS, dataDiskSizeGb=[1])},
        {"name": "pitr", "databaseVersion": "POSTGRES_15", "settings": dict(
            PG_SETTINGS, backupConfiguration={"enabled": False, "pointInTimeRecoveryEnabled": True})},
        {"name": "no-ip", "databaseVersion": "POSTGRES_15", "settings": dict(
            PG_SETTINGS, ipConfiguration={"ipv4Enabled": False})},
        {"name": "bad-cidr", "databaseVersion": "POSTGRES_15", "settings": dict(
            PG_SETTINGS, ipConfiguration={"authorizedNetworks": [{"value": "300.1.1.1/32"}]})},
        {"name": "ssl-pair", "databaseVersion": "POSTGRES_15", "settings": dict(
            PG_SETTINGS, ipConfiguration={"sslMode": "ENCRYPTED_ONLY", "requireSsl": True})},
        {"name": "window", "databaseVersion": "POSTGRES_15", "settings": dict(
            PG_SETTINGS, maintenanceWindow={"day": 9, "hour": 1})},
    ])
    def test_insert_rejects(self, fake_gcp, body):
        response = sql(fake_gcp, "POST", "/instances", body)
        error_of(response, 400, "INVALID_ARGUMENT")
        if body.get("name"):
            error_of(sql(fake_gcp, "GET", "/instances/%s" % body["name"]), 404)

    def test_name_in_use_is_409(self, fake_gcp, unique):
        create(fake_gcp, "dup-%s" % unique)
        response = sql(fake_gcp, "POST", "/instances", {"name": "dup-%s" % unique, "databaseVersion": "POSTGRES_16",
                                                        "settings": dict(PG_SETTINGS)})
        assert error_of(response, 409)["errors"][0]["reason"] == "instanceAlreadyExists"

    def test_missing_instance_is_404_instance_does_not_exist(self, fake_gcp, unique):
        for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/databases"), ("GET", "/users")):
            response = sql(fake_gcp, method, "/instances/none-%s%s" % (unique, path), {} if method == "PATCH" else None)
            assert error_of(response, 404)["errors"][0]["reason"] == "instanceDoesNotExist"

    def test_patch_merges_settings_and_replaces_lists(self, fake_gcp, unique):
        name = "pt-%s" % unique
        settings = dict(PG_SETTINGS, databaseFlags=[{"name": "max_connections", "value": "100"}],
                        userLabels={"team": "ml"},
                        ipConfiguration={"authorizedNetworks": [{"value": "1.2.3.4/32", "name": "office"}]})
        created = create(fake_gcp, name, settings=settings)
        operation = patch(fake_gcp, name, {"settings": {
            "databaseFlags": [{"name": "log_min_duration_statement", "value": "1000"}],
            "ipConfiguration": {"sslMode": "ENCRYPTED_ONLY"},
            "backupConfiguration": {"enabled": True, "pointInTimeRecoveryEnabled": True}}})
        assert operation["operationType"] == "UPDATE" and "error" not in operation
        instance = sql(fake_gcp, "GET", "/instances/%s" % name).json()
        settings = instance["settings"]
        assert settings["settingsVersion"] == "2" and instance["etag"] != created["etag"]
        assert settings["databaseFlags"] == [{"name": "log_min_duration_statement", "value": "1000"}]
        assert settings["ipConfiguration"]["sslMode"] == "ENCRYPTED_ONLY"
        assert settings["ipConfiguration"]["authorizedNetworks"] == [
            {"value": "1.2.3.4/32", "name": "office", "kind": "sql#aclEntry"}]  # untouched: merged
        assert settings["backupConfiguration"]["pointInTimeRecoveryEnabled"] is True
        assert settings["userLabels"] == {"team": "ml"} and settings["tier"] == "db-custom-1-3840"

    def test_patch_merges_user_labels_and_null_removes_one(self, fake_gcp, unique):
        name = "lb-%s" % unique
        create(fake_gcp, name, settings=dict(PG_SETTINGS, userLabels={"team": "ml", "env": "dev"}))
        patch(fake_gcp, name, {"settings": {"userLabels": {"env": None, "tier": "gold"}}})
        instance = sql(fake_gcp, "GET", "/instances/%s" % name).json()
        assert instance["settings"]["userLabels"] == {"team": "ml", "tier": "gold"}

    def test_put_replaces_settings(self, fake_gcp, unique):
        name = "put-%s" % unique
        create(fake_gcp, name, settings=dict(PG_SETTINGS, userLabels={"a": "b"}, dataDiskSizeGb="20"))
        response = sql(fake_gcp, "PUT", "/instances/%s" % name,
                       {"settings": {"tier": "db-custom-2-7680", "dataDiskSizeGb": "20"}})
        wait(fake_gcp, response.json())
        settings = sql(fake_gcp, "GET", "/instances/%s" % name).json()["settings"]
        assert settings["tier"] == "db-custom-2-7680" and "userLabels" not in settings
        assert settings["settingsVersion"] == "2" and settings["edition"] == "ENTERPRISE"

    def test_patch_is_applied_when_the_operation_completes(self, fake_gcp, unique):
        name = "late-%s" % unique
        create(fake_gcp, name)
        fake_gcp.operation_polls = 2
        operation = sql(fake_gcp, "PATCH", "/instances/%s" % name, {"settings": {"userLabels": {"x": "y"}}}).json()
        during = sql(fake_gcp, "GET", "/instances/%s" % name).json()
        assert during["state"] == "MAINTENANCE" and "userLabels" not in during["settings"]
        wait(fake_gcp, operation)
        after = sql(fake_gcp, "GET", "/instances/%s" % name).json()
        assert after["state"] == "RUNNABLE" and after["settings"]["userLabels"] == {"x": "y"}

    def test_second_write_while_busy_is_409_operation_in_progress(self, fake_gcp, unique):
        name = "busy-%s" % unique
        fake_gcp.operation_polls = 3
        response = sql(fake_gcp, "POST", "/instances", {"name": name, "databaseVersion": "POSTGRES_16",
                                                        "settings": dict(PG_SETTINGS)})
        creating = response.json()
        for method, path, body in (("PATCH", "", {"settings": {"userLabels": {"a": "b"}}}), ("DELETE", "", None),
                                   ("POST", "/databases", {"name": "db"}), ("POST", "/users", {"name": "u"})):
            error = error_of(sql(fake_gcp, method, "/instances/%s%s" % (name, path), body), 409)
            assert error["errors"][0]["reason"] == "operationInProgress"
        listing = sql(fake_gcp, "GET", "/operations", params={"instance": name}).json()
        assert [op["name"] for op in listing["items"]] == [creating["name"]]
        assert listing["items"][0]["status"] != "DONE"
        wait(fake_gcp, creating)
        assert patch(fake_gcp, name, {"settings": {"userLabels": {"a": "b"}}})["status"] == "DONE"

    def test_region_cannot_change_and_disk_cannot_shrink(self, fake_gcp, unique):
        name = "imm-%s" % unique
        create(fake_gcp, name, settings=dict(PG_SETTINGS, dataDiskSizeGb="20"))
        error_of(sql(fake_gcp, "PATCH", "/instances/%s" % name, {"region": "us-east1"}), 400, "INVALID_ARGUMENT")
        error_of(sql(fake_gcp, "PATCH", "/instances/%s" % name, {"settings": {"dataDiskSizeGb": "15"}}), 400)
        assert sql(fake_gcp, "GET", "/instances/%s" % name).json()["settings"]["settingsVersion"] == "1"

    def test_public_ip_only_when_ipv4_enabled(self, fake_gcp, unique):
        name = "priv-%s" % unique
        settings = dict(PG_SETTINGS, ipConfiguration={"ipv4Enabled": False,
                                                      "privateNetwork": "projects/%s/global/networks/vpc" % PROJECT})
        instance = create(fake_gcp, name, settings=settings)
        assert [a["type"] for a in instance["ipAddresses"]] == ["PRIVATE"]

    def test_deletion_protection(self, fake_gcp, unique):
        name = "prot-%s" % unique
        create(fake_gcp, name, settings=dict(PG_SETTINGS, deletionProtectionEnabled=True))
        error = error_of(sql(fake_gcp, "DELETE", "/instances/%s" % name), 400)
        assert "deletion protection is enabled" in error["message"]
        patch(fake_gcp, name, {"settings": {"deletionProtectionEnabled": False}})
        operation, _polls = wait(fake_gcp, sql(fake_gcp, "DELETE", "/instances/%s" % name).json())
        assert operation["operationType"] == "DELETE"
        error_of(sql(fake_gcp, "GET", "/instances/%s" % name), 404)
        # The name of a deleted instance cannot be reused right away.
        response = sql(fake_gcp, "POST", "/instances", {"name": name, "databaseVersion": "POSTGRES_16",
                                                        "settings": dict(PG_SETTINGS)})
        assert error_of(response, 409)["errors"][0]["reason"] == "instanceAlreadyExists"

    def test_failed_create_removes_the_instance(self, fake_gcp, unique):
        name = "fail-%s" % unique
        fake_gcp.fail_operations(1, code="INTERNAL_ERROR", message="no capacity")
        response = sql(fake_gcp, "POST", "/instances", {"name": name, "databaseVersion": "POSTGRES_16",
                                                        "settings": dict(PG_SETTINGS)})
        operation, _polls = wait(fake_gcp, response.json())
        assert operation["status"] == "DONE"
        assert operation["error"] == {"kind": "sql#operationErrors", "errors": [
            {"kind": "sql#operationError", "code": "INTERNAL_ERROR", "message": "no capacity"}]}
        error_of(sql(fake_gcp, "GET", "/instances/%s" % name), 404)

    def test_failed_patch_leaves_settings(self, fake_gcp, unique):
        name = "fpatch-%s" % unique
        create(fake_gcp, name)
        fake_gcp.fail_operations(1)
        operation = patch(fake_gcp, name, {"settings": {"userLabels": {"a": "b"}}})
        assert operation["error"]["errors"][0]["code"] == "INTERNAL_ERROR"
        instance = sql(fake_gcp, "GET", "/instances/%s" % name).json()
        assert instance["state"] == "RUNNABLE" and "userLabels" not in instance["settings"]

    def test_unknown_operation_is_404(self, fake_gcp):
        error = error_of(sql(fake_gcp, "GET", "/operations/00000000-0000-0000-0000-000000000000"), 404)
        assert error["errors"][0]["reason"] == "operationDoesNotExist"

    def test_operations_list_filtered_by_instance(self, fake_gcp, unique):
        create(fake_gcp, "opa-%s" % unique)
        create(fake_gcp, "opb-%s" % unique)
        items = sql(fake_gcp, "GET", "/operations", params={"instance": "opa-%s" % unique}).json()["items"]
        assert {op["targetId"] for op in items} == {"opa-%s" % unique}
        assert [op["operationType"] for op in items] == ["CREATE"]


class TestDatabases:
    def test_lifecycle(self, fake_gcp, unique):
        name = "dbs-%s" % unique
        create(fake_gcp, name)
        operation, _polls = wait(fake_gcp, sql(fake_gcp, "POST", "/instances/%s/databases" % name,
                                               {"name": "mlflow"}).json())
        assert operation["operationType"] == "CREATE_DATABASE"
        database = sql(fake_gcp, "GET", "/instances/%s/databases/mlflow" % name).json()
        assert (database["kind"], database["charset"], database["collation"]) == ("sql#database", "UTF8", "en_US.UTF8")
        assert database["selfLink"].endswith("/instances/%s/databases/mlflow" % name)
        error_of(sql(fake_gcp, "POST", "/instances/%s/databases" % name, {"name": "mlflow"}), 409)
        error_of(sql(fake_gcp, "PATCH", "/instances/%s/databases/mlflow" % name, {"charset": "LATIN1"}), 400)
        wait(fake_gcp, sql(fake_gcp, "DELETE", "/instances/%s/databases/mlflow" % name).json())
        error_of(sql(fake_gcp, "GET", "/instances/%s/databases/mlflow" % name), 404)

    def test_bad_database_input(self, fake_gcp, unique):
        name = "dbbad-%s" % unique
        create(fake_gcp, name)
        error_of(sql(fake_gcp, "POST", "/instances/%s/databases" % name, {"name": "bad name"}), 400)
        error_of(sql(fake_gcp, "POST", "/instances/%s/databases" % name, {"name": "x", "charset": "KLINGON"}), 400)
        error_of(sql(fake_gcp, "POST", "/instances/%s/databases" % name, {"name": "x", "colour": "red"}), 400)
        error_of(sql(fake_gcp, "DELETE", "/instances/%s/databases/postgres" % name), 400)


class TestUsers:
    def test_builtin_user_password_is_write_only(self, fake_gcp, unique):
        name = "usr-%s" % unique
        create(fake_gcp, name)
        wait(fake_gcp, sql(fake_gcp, "POST", "/instances/%s/users" % name, {"name": "mlflow", "password": "s3cret"}).json())
        user = sql(fake_gcp, "GET", "/instances/%s/users/mlflow" % name).json()
        assert user["name"] == "mlflow" and user["kind"] == "sql#user"
        assert "password" not in user and "s3cret" not in str(sql(fake_gcp, "GET", "/instances/%s/users" % name).json())
        assert fake_gcp.apis["sqladmin"].password(PROJECT, name, "mlflow") == "s3cret"
        operation, _polls = wait(fake_gcp, sql(fake_gcp, "PUT", "/instances/%s/users" % name, {"password": "n3w"},
                                               {"name": "mlflow"}).json())
        assert operation["operationType"] == "UPDATE_USER"
        assert fake_gcp.apis["sqladmin"].password(PROJECT, name, "mlflow") == "n3w"
        error_of(sql(fake_gcp, "POST", "/instances/%s/users" % name, {"name": "mlflow"}), 409)
        wait(fake_gcp, sql(fake_gcp, "DELETE", "/instances/%s/users" % name, params={"name": "mlflow"}).json())
        error_of(sql(fake_gcp, "GET", "/instances/%s/users/mlflow" % name), 404)
        error_of(sql(fake_gcp, "PUT", "/instances/%s/users" % name, {"password": "x"}, {"name": "mlflow"}), 404)

    def test_iam_service_account_user(self, fake_gcp, unique):
        name = "iamu-%s" % unique
        create(fake_gcp, name)
        email = "runner@%s.iam.gserviceaccount.com" % PROJECT
        body = {"name": email, "type": "CLOUD_IAM_SERVICE_ACCOUNT"}
        error_of(sql(fake_gcp, "POST", "/instances/%s/users" % name, dict(body, name="runner@%s.iam" % PROJECT)), 400)
        patch(fake_gcp, name, {"settings": {"databaseFlags": [{"name": "cloudsql.iam_authentication", "value": "on"}]}})
        error_of(sql(fake_gcp, "POST", "/instances/%s/users" % name, body), 400)  # full email refused on Postgres
        response = sql(fake_gcp, "POST", "/instances/%s/users" % name, dict(body, name="runner@%s.iam" % PROJECT))
        wait(fake_gcp, response.json())
        users = sql(fake_gcp, "GET", "/instances/%s/users" % name).json()["items"]
        assert {"name": "runner@%s.iam" % PROJECT, "type": "CLOUD_IAM_SERVICE_ACCOUNT"}.items() <= \
            next(u for u in users if u["name"] != "postgres").items()

    def test_bad_user_input(self, fake_gcp, unique):
        name = "ubad-%s" % unique
        create(fake_gcp, name)
        error_of(sql(fake_gcp, "POST", "/instances/%s/users" % name, {"password": "x"}), 400)          # no name
        error_of(sql(fake_gcp, "POST", "/instances/%s/users" % name, {"name": "u", "type": "ROBOT"}), 400)
        error_of(sql(fake_gcp, "POST", "/instances/%s/users" % name, {"name": "u", "host": "%"}), 400)  # Postgres
        error_of(sql(fake_gcp, "PUT", "/instances/%s/users" % name, {"password": "x"}), 400)           # no ?name=

    def test_mysql_users_have_hosts(self, fake_gcp, unique):
        name = "my-%s" % unique
        create(fake_gcp, name, version="MYSQL_8_0")
        wait(fake_gcp, sql(fake_gcp, "POST", "/instances/%s/users" % name, {"name": "app", "password": "p"}).json())
        users = sql(fake_gcp, "GET", "/instances/%s/users" % name).json()["items"]
        assert sorted((u["name"], u["host"]) for u in users) == [("app", "%"), ("root", "%")]
        assert sql(fake_gcp, "GET", "/instances/%s/databases" % name).json()["items"] == []


class TestSsl:
    def test_ssl_mode_wins_and_require_ssl_follows(self, fake_gcp, unique):
        name = "ssl-%s" % unique
        create(fake_gcp, name)
        patch(fake_gcp, name, {"settings": {"ipConfiguration": {"sslMode": "ENCRYPTED_ONLY"}}})
        ip = sql(fake_gcp, "GET", "/instances/%s" % name).json()["settings"]["ipConfiguration"]
        assert (ip["sslMode"], ip["requireSsl"]) == ("ENCRYPTED_ONLY", False)
        patch(fake_gcp, name, {"settings": {"ipConfiguration": {"requireSsl": True}}})
        ip = sql(fake_gcp, "GET", "/instances/%s" % name).json()["settings"]["ipConfiguration"]
        assert (ip["sslMode"], ip["requireSsl"]) == ("TRUSTED_CLIENT_CERTIFICATE_REQUIRED", True)
        error_of(sql(fake_gcp, "PATCH", "/instances/%s" % name, {"settings": {"ipConfiguration": {
            "sslMode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED", "requireSsl": True}}}), 400, "INVALID_ARGUMENT")


def test_the_request_log_keeps_no_password_or_secret_payload(fake_gcp, unique):
    """Tests print the request log on failure: a user's password (and a secret's payload) must not be in it."""
    name = "log-%s" % unique
    password, root, payload = "pw-" + unique, "root-" + unique, "payload-" + unique
    create(fake_gcp, name, rootPassword=root)
    wait(fake_gcp, sql(fake_gcp, "POST", "/instances/%s/users" % name, {"name": "mlflow", "password": password}).json())
    wait(fake_gcp, sql(fake_gcp, "PUT", "/instances/%s/users" % name, {"password": password + "2"},
                       {"name": "mlflow"}).json())
    create_secret(fake_gcp, "log-" + unique)
    add_version(fake_gcp, "log-" + unique, payload)
    # The fake still applies the real values; only the log is masked.
    assert fake_gcp.apis["sqladmin"].password(PROJECT, name, "mlflow") == password + "2"

    logged = requests.get(fake_gcp.url + "/_fake/requests", timeout=10).json()
    for text in (repr(fake_gcp.requests), json.dumps(logged)):
        for secret in (password, root, payload, base64.b64encode(payload.encode()).decode()):
            assert secret not in text
    inserted = [c for c in fake_gcp.writes() if c.path.endswith("/instances/%s/users" % name) and c.method == "POST"]
    assert inserted[0].body == {"name": "mlflow", "password": masked(password)}, "a fingerprint, not the value"
