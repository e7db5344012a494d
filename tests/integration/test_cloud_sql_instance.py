"""cloud_sql_instance against the fake Cloud SQL Admin API (v1beta4), asserted on the wire."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import PROJECT

BASE = dict(region="europe-west1", database_version="POSTGRES_16", edition="ENTERPRISE", tier="db-custom-1-3840")
SQL = "/sql/v1beta4/projects/%s" % PROJECT


@pytest.fixture
def instance(fake_gcp, unique, gcp_module):
    """Run cloud_sql_instance on a fresh instance name; read() returns it through the fake's REST API."""

    class Instance:
        name = "pg-" + unique
        path = "%s/instances/pg-%s" % (SQL, unique)
        url = "%s/sqladmin%s" % (fake_gcp.url, path)

        def run(self, check=False, **options):
            args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=fake_gcp.endpoints, name=self.name,
                        timeout=20)
            if options.get("state") != "absent":
                args.update(BASE)
            args.update(options)
            return gcp_module("cloud_sql_instance", args, check=check)

        def read(self):
            response = requests.get(self.url, timeout=10)
            assert response.status_code in (200, 404), response.text
            return response.json() if response.status_code == 200 else None

        def settings(self):
            return self.read()["settings"]

        def patch(self, settings):
            """A change made outside the module (another tool, or Cloud SQL itself), then waited for."""
            response = requests.patch(self.url, json={"settings": settings}, timeout=10)
            assert response.status_code == 200, response.text
            fake_gcp.complete_operations()

        def unprotect_and_delete(self):
            self.run(deletion_protection=False)
            assert self.run(state="absent")["rc"] == 0

    return Instance()


def writes(fake):
    return [(c.method, c.path) for c in fake.writes()]


def warnings(result):
    """The warning texts of a result (ansible-core 2.19 returns each as a summary object)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def test_lifecycle_create_unchanged_update_unprotect_delete(instance, fake_gcp):
    options = dict(disk_size_gb=10, disk_autoresize=True, labels={"app": "mlops", "team": "ml"},
                   database_flags=[{"name": "max_connections", "value": 100}], iam_authentication=True,
                   backups={"start_time": "02:00", "retained_backups": 7}, point_in_time_recovery=True,
                   transaction_log_retention_days=7, maintenance_window={"day": 7, "hour": 3, "update_track": "stable"})
    created = instance.run(**options)
    assert created["rc"] == 0 and created["changed"] is True, created
    assert writes(fake_gcp) == [("POST", SQL + "/instances")]
    assert created["connection_name"] == "%s:europe-west1:%s" % (PROJECT, instance.name)
    assert created["instance"]["state"] == "RUNNABLE" and created["restart_required"] is False
    assert created["instance"]["connectionName"] == created["connection_name"]
    assert "ip_addresses" in created and "rootPassword" not in created["instance"]
    settings = instance.settings()
    assert settings["tier"] == "db-custom-1-3840" and settings["edition"] == "ENTERPRISE"
    assert settings["dataDiskSizeGb"] == "10" and settings["storageAutoResize"] is True
    assert settings["userLabels"] == {"app": "mlops", "team": "ml"}
    assert sorted((f["name"], f["value"]) for f in settings["databaseFlags"]) == [
        ("cloudsql.iam_authentication", "on"), ("max_connections", "100")]
    backup = settings["backupConfiguration"]
    assert backup["enabled"] is True and backup["startTime"] == "02:00"
    assert backup["pointInTimeRecoveryEnabled"] is True and backup["transactionLogRetentionDays"] == 7
    assert backup["backupRetentionSettings"]["retainedBackups"] == 7
    assert settings["maintenanceWindow"]["day"] == 7 and settings["maintenanceWindow"]["updateTrack"] == "stable"
    ip = settings["ipConfiguration"]
    assert ip["sslMode"] == "ENCRYPTED_ONLY" and ip.get("requireSsl") is False, "TLS required by default"
    assert not ip.get("authorizedNetworks"), "no authorized network by default"
    assert settings["deletionProtectionEnabled"] is True, "protected by default"

    fake_gcp.clear()
    again = instance.run(**options)
    assert again["rc"] == 0 and again["changed"] is False, again
    assert fake_gcp.writes() == [] and again["restart_required"] is False
    assert again["connection_name"] == created["connection_name"]

    # A tier change restarts the instance: said in the result and in a warning; only the tier is sent.
    fake_gcp.clear()
    bigger = instance.run(**dict(options, tier="db-custom-2-7680"))
    assert bigger["rc"] == 0 and bigger["changed"] is True, bigger
    assert bigger["changed_fields"] == ["settings.tier"] and bigger["restart_required"] is True
    assert any("restart" in w and "settings.tier" in w for w in warnings(bigger)), bigger
    assert writes(fake_gcp) == [("PATCH", instance.path)]
    sent = fake_gcp.writes()[0].body
    assert set(sent) == {"settings"} and sent["settings"]["tier"] == "db-custom-2-7680"
    assert set(sent["settings"]) <= {"tier", "settingsVersion"}, sent
    assert instance.settings()["tier"] == "db-custom-2-7680"

    # Flags, labels and backups: a flag and a label dropped from the options are removed.
    fake_gcp.clear()
    changed = dict(options, tier="db-custom-2-7680", labels={"app": "mlops"},
                   database_flags=[{"name": "log_min_duration_statement", "value": 500}],
                   backups={"start_time": "04:00", "retained_backups": 14})
    result = instance.run(**changed)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["changed_fields"] == ["settings.backupConfiguration", "settings.databaseFlags",
                                        "settings.userLabels"]
    assert result["restart_required"] is True, "a flag change may restart the instance"
    assert writes(fake_gcp) == [("PATCH", instance.path)]
    settings = instance.settings()
    assert settings["userLabels"] == {"app": "mlops"}
    assert sorted((f["name"], f["value"]) for f in settings["databaseFlags"]) == [
        ("cloudsql.iam_authentication", "on"), ("log_min_duration_statement", "500")]
    assert settings["backupConfiguration"]["startTime"] == "04:00"
    assert settings["backupConfiguration"]["backupRetentionSettings"]["retainedBackups"] == 14
    assert settings["backupConfiguration"]["pointInTimeRecoveryEnabled"] is True, "left as it was"
    assert settings["tier"] == "db-custom-2-7680" and settings["maintenanceWindow"]["day"] == 7

    fake_gcp.clear()
    unprotected = instance.run(**dict(changed, deletion_protection=False))
    assert unprotected["rc"] == 0 and unprotected["changed_fields"] == ["settings.deletionProtectionEnabled"]
    assert unprotected["restart_required"] is False and not warnings(unprotected)
    assert instance.settings()["deletionProtectionEnabled"] is False

    fake_gcp.clear()
    deleted = instance.run(state="absent")
    assert deleted["rc"] == 0 and deleted["changed"] is True, deleted
    assert writes(fake_gcp) == [("DELETE", instance.path)]
    assert instance.read() is None and deleted["instance"] == {}

    fake_gcp.clear()
    gone = instance.run(state="absent")
    assert gone["rc"] == 0 and gone["changed"] is False and fake_gcp.writes() == []


def test_check_mode_writes_nothing_and_diff_shows_the_settings(instance, fake_gcp):
    preview = instance.run(check=True, labels={"app": "mlops"})
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert fake_gcp.writes() == [] and instance.read() is None
    assert preview["connection_name"] == "%s:europe-west1:%s" % (PROJECT, instance.name)
    after = preview["diff"]["after"]
    assert preview["diff"]["before"] == {}
    assert after["databaseVersion"] == "POSTGRES_16" and after["region"] == "europe-west1"
    assert after["settings"]["userLabels"] == {"app": "mlops"} and after["settings"]["deletionProtectionEnabled"] is True

    assert instance.run(labels={"app": "mlops", "team": "ml"})["rc"] == 0
    fake_gcp.clear()
    wanted = dict(tier="db-custom-2-7680", labels={"app": "mlops"}, availability_type="REGIONAL")
    preview = instance.run(check=True, **wanted)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert fake_gcp.writes() == []
    assert preview["changed_fields"] == ["settings.availabilityType", "settings.tier", "settings.userLabels"]
    assert preview["restart_required"] is True
    assert any("would restart" in w for w in warnings(preview)), preview
    before, after = preview["diff"]["before"]["settings"], preview["diff"]["after"]["settings"]
    assert before["tier"] == "db-custom-1-3840" and after["tier"] == "db-custom-2-7680"
    assert before["userLabels"] == {"app": "mlops", "team": "ml"} and after["userLabels"] == {"app": "mlops"}
    assert "availabilityType" not in before or before["availabilityType"] != "REGIONAL"
    assert after["availabilityType"] == "REGIONAL"
    assert before["deletionProtectionEnabled"] is True and after["deletionProtectionEnabled"] is True, \
        "fields the user set that do not change appear on both sides"
    assert "settingsVersion" not in after and "state" not in preview["diff"]["after"], "only fields the user set"
    assert instance.settings()["tier"] == "db-custom-1-3840"

    # Check mode on deletion: refused the same way (protection on), and nothing written.
    refused = instance.run(check=True, state="absent")
    assert refused["rc"] == 1 and "deletion_protection: false" in refused["msg"]
    assert fake_gcp.writes() == []
    instance.unprotect_and_delete()


@pytest.mark.parametrize("options, expected", [
    (dict(name="Bad_Name"), "name 'Bad_Name'"),
    (dict(tier="db-custom-3-7680"), "vCPU count"),
    (dict(edition="ENTERPRISE_PLUS"), "ENTERPRISE_PLUS takes a db-perf-optimized-N-*"),
    (dict(ip_configuration={"authorized_networks": [{"value": "0.0.0.0/0"}]}), "allow_public_network: true"),
    # The review's case: two /8s passed the old prefix-length check, with plaintext allowed.
    (dict(ip_configuration={"authorized_networks": [{"value": "8.0.0.0/8"}, {"value": "128.0.0.0/8"}],
                            "ssl_mode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED"}),
     "'8.0.0.0/8' opens the instance to a large part of the internet (16777216 addresses"),
    (dict(ip_configuration={"authorized_networks": [{"value": "8.8.8.0/23"}]}), "wider than /24 are refused"),
    (dict(ip_configuration={"authorized_networks": [{"value": "9.0.%d.0/24" % i} for i in range(17)]}),
     "4352 internet addresses in all, more than 4096"),
    (dict(backups={"start_time": "3am"}), "HH:MM"),
    (dict(maintenance_window={"day": 8, "hour": 1}), "maintenance_window.day"),
    (dict(disk_size_gb=5), "disk_size_gb"),
    (dict(labels={"App": "x"}), "label key 'App'"),
    (dict(database_version=None), "database_version"),
    (dict(database_flags=[{"name": "cloudsql.iam_authentication", "value": "off"}], iam_authentication=True),
     "set one of them"),
])
def test_bad_input_is_rejected_before_any_call(instance, fake_gcp, options, expected):
    result = instance.run(**options)
    assert result["rc"] == 1 and expected in result["msg"], result
    assert fake_gcp.requests == []


def test_changes_the_api_cannot_make_in_place_are_refused_before_any_write(instance, fake_gcp):
    assert instance.run(disk_size_gb=20, disk_type="PD_SSD", disk_autoresize=False)["rc"] == 0
    for options, expected in [
        (dict(region="us-central1"), ["'europe-west1'", "'us-central1'"]),
        (dict(database_version="POSTGRES_17"), ["'POSTGRES_16'", "'POSTGRES_17'", "planned upgrade"]),
        (dict(disk_type="PD_HDD"), ["'PD_SSD'", "'PD_HDD'"]),
        (dict(disk_size_gb=10), ["is 20, asked for 10", "cannot shrink"]),
    ]:
        fake_gcp.clear()
        result = instance.run(**dict(dict(disk_size_gb=20, disk_autoresize=False), **options))
        assert result["rc"] == 1, result
        for text in expected:
            assert text in result["msg"], (text, result["msg"])
        assert fake_gcp.writes() == [], options
    # Refusals come before the other changes: a refused run changes nothing else either.
    fake_gcp.clear()
    mixed = instance.run(region="us-central1", labels={"x": "y"}, disk_size_gb=20, disk_autoresize=False)
    assert mixed["rc"] == 1 and fake_gcp.writes() == []
    assert instance.read()["region"] == "europe-west1" and instance.settings().get("userLabels", {}) == {}
    instance.unprotect_and_delete()


def test_a_disk_grown_by_autoresize_is_left_alone(instance, fake_gcp):
    assert instance.run(disk_size_gb=10, disk_autoresize=True)["rc"] == 0
    instance.patch({"dataDiskSizeGb": "30"})  # Cloud SQL grew the disk
    fake_gcp.clear()
    again = instance.run(disk_size_gb=10, disk_autoresize=True)
    assert again["rc"] == 0 and again["changed"] is False and fake_gcp.writes() == [], again
    grow = instance.run(disk_size_gb=40, disk_autoresize=True)
    assert grow["rc"] == 0 and grow["changed_fields"] == ["settings.dataDiskSizeGb"] and grow["restart_required"] is False
    assert instance.settings()["dataDiskSizeGb"] == "40"
    instance.unprotect_and_delete()


def test_iam_authentication_alone_keeps_the_other_flags(instance, fake_gcp):
    assert instance.run(database_flags=[{"name": "work_mem", "value": "64MB"}])["rc"] == 0
    fake_gcp.clear()
    on = instance.run(iam_authentication=True)
    assert on["rc"] == 0 and on["changed_fields"] == ["settings.databaseFlags"], on
    flags = sorted((f["name"], f["value"]) for f in instance.settings()["databaseFlags"])
    assert flags == [("cloudsql.iam_authentication", "on"), ("work_mem", "64MB")]
    fake_gcp.clear()
    assert instance.run(iam_authentication=True)["changed"] is False and fake_gcp.writes() == []
    off = instance.run(iam_authentication=False)
    assert off["rc"] == 0 and off["changed"] is True
    assert [(f["name"], f["value"]) for f in instance.settings()["databaseFlags"]] == [("work_mem", "64MB")]
    fake_gcp.clear()
    assert instance.run(iam_authentication=False)["changed"] is False and fake_gcp.writes() == []
    instance.unprotect_and_delete()


def test_public_network_guard_counts_internet_addresses(instance, fake_gcp):
    """Private ranges stay allowed; internet networks pass with allow_public_network; plaintext with any
    internet network warns. Check mode: nothing is created."""
    private = instance.run(check=True, ip_configuration={
        "authorized_networks": [{"value": v} for v in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                       "100.64.0.0/10")],
        "ssl_mode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED"})
    assert private["rc"] == 0 and not warnings(private), private
    offices = instance.run(check=True, ip_configuration={
        "authorized_networks": [{"value": "9.0.%d.0/24" % i} for i in range(16)] + [{"value": "9.0.0.7"}]})
    assert offices["rc"] == 0 and not warnings(offices), "sixteen /24s (4096 addresses, overlaps once) pass"
    wide = {"authorized_networks": [{"value": "8.0.0.0/8"}, {"value": "128.0.0.0/8"}],
            "ssl_mode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED", "allow_public_network": True}
    allowed = instance.run(check=True, ip_configuration=wide)
    assert allowed["rc"] == 0, allowed
    assert any("unencrypted" in w and "33554432 internet addresses" in w for w in warnings(allowed)), allowed
    one = instance.run(check=True, ip_configuration={"authorized_networks": [{"value": "8.8.8.0/24"}],
                                                     "ssl_mode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED"})
    assert one["rc"] == 0 and any("256 internet addresses" in w for w in warnings(one)), one
    assert fake_gcp.writes() == [] and instance.read() is None


def test_networks_and_tls_return_to_the_secure_defaults(instance, fake_gcp):
    opened = dict(ip_configuration={"authorized_networks": [{"name": "office", "value": "203.0.113.0/24"}],
                                    "ssl_mode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED"})
    assert instance.run(**opened)["rc"] == 0
    ip = instance.settings()["ipConfiguration"]
    assert [n["value"] for n in ip["authorizedNetworks"]] == ["203.0.113.0/24"]
    assert ip["sslMode"] == "ALLOW_UNENCRYPTED_AND_ENCRYPTED" and ip["requireSsl"] is False
    fake_gcp.clear()
    closed = instance.run()
    assert closed["rc"] == 0 and closed["changed_fields"] == ["settings.ipConfiguration"], closed
    ip = instance.settings()["ipConfiguration"]
    assert not ip.get("authorizedNetworks") and ip["sslMode"] == "ENCRYPTED_ONLY" and ip["requireSsl"] is False
    certs = instance.run(ip_configuration={"ssl_mode": "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"})
    assert certs["rc"] == 0 and instance.settings()["ipConfiguration"]["requireSsl"] is True
    instance.unprotect_and_delete()


def test_protected_instance_is_not_deleted(instance, fake_gcp):
    assert instance.run()["rc"] == 0
    fake_gcp.clear()
    refused = instance.run(state="absent")
    assert refused["rc"] == 1, refused
    assert "deletion protection" in refused["msg"] and "deletion_protection: false" in refused["msg"]
    assert "state: absent" in refused["msg"]
    assert fake_gcp.writes() == [] and instance.read()["state"] == "RUNNABLE"
    instance.unprotect_and_delete()
    assert instance.read() is None


def test_429_and_503_bursts_are_retried(instance, fake_gcp):
    fake_gcp.inject(429, count=2, method="POST", path=r"sqladmin/.*/instances$")
    fake_gcp.inject(503, count=2, method="GET", path=r"sqladmin/.*/operations/")
    created = instance.run()
    assert created["rc"] == 0 and created["changed"] is True, created
    assert len(fake_gcp.calls("POST", r"sqladmin/.*/instances$")) == 3
    assert instance.read()["state"] == "RUNNABLE"
    fake_gcp.clear()
    fake_gcp.inject(503, count=2, method="PATCH")
    updated = instance.run(labels={"a": "b"})
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert len(fake_gcp.calls("PATCH")) == 3 and instance.settings()["userLabels"] == {"a": "b"}
    instance.unprotect_and_delete()


def test_a_create_whose_answer_was_lost_is_not_made_twice(instance, fake_gcp):
    # The insert goes through but its answer is a 503: the retry gets 409 and the module reads what exists.
    fake_gcp.operation_polls = 2
    fake_gcp.inject(503, count=1, method="POST", path=r"sqladmin/.*/instances$", forward=True)
    created = instance.run()
    assert created["rc"] == 0 and created["changed"] is True, created
    assert created["instance"]["state"] == "RUNNABLE", "waited for the create that went through"
    assert len(fake_gcp.calls("POST", r"sqladmin/.*/instances$")) == 2
    fake_gcp.operation_polls = 1
    instance.unprotect_and_delete()


def test_a_failed_operation_is_reported_with_its_error(instance, fake_gcp):
    fake_gcp.fail_operations(count=1, code="INTERNAL_ERROR", message="Insufficient capacity in europe-west1-b")
    failed = instance.run()
    assert failed["rc"] == 1, failed
    assert "Insufficient capacity in europe-west1-b" in failed["msg"] and "INTERNAL_ERROR" in failed["msg"]
    assert "CREATE" in failed["msg"] and instance.name in failed["msg"]
    assert instance.read() is None, "a failed create leaves no instance"
    retried = instance.run()
    assert retried["rc"] == 0 and retried["changed"] is True
    fake_gcp.fail_operations(count=1, code="INVALID_ARGUMENT", message="Flag max_connections out of range")
    update = instance.run(database_flags=[{"name": "max_connections", "value": 1}])
    assert update["rc"] == 1 and "Flag max_connections out of range" in update["msg"], update
    instance.unprotect_and_delete()


def test_a_timed_out_create_is_waited_for_by_the_next_run(instance, fake_gcp):
    fake_gcp.operation_polls = 1000
    timed_out = instance.run(timeout=3)
    assert timed_out["rc"] == 1 and timed_out["changed"] is True, timed_out
    assert "still running" in timed_out["msg"] and "run again" in timed_out["msg"]
    assert instance.read()["state"] == "PENDING_CREATE"
    fake_gcp.operation_polls = 2  # the request log is kept: it proves there is no second insert
    again = instance.run()
    assert again["rc"] == 0 and again["changed"] is False, again
    assert again["instance"]["state"] == "RUNNABLE" and instance.read()["state"] == "RUNNABLE"
    assert len(fake_gcp.calls("POST", r"sqladmin/.*/instances$")) == 1, "no second create"
    fake_gcp.operation_polls = 1
    instance.unprotect_and_delete()


def test_a_timed_out_update_is_waited_for_then_converges(instance, fake_gcp):
    assert instance.run()["rc"] == 0
    fake_gcp.operation_polls = 1000
    timed_out = instance.run(tier="db-custom-2-7680", timeout=3)
    assert timed_out["rc"] == 1 and "still running" in timed_out["msg"], timed_out
    fake_gcp.clear()
    fake_gcp.operation_polls = 2
    again = instance.run(tier="db-custom-2-7680", labels={"after": "timeout"})
    assert again["rc"] == 0, again
    assert again["changed_fields"] == ["settings.userLabels"], "the tier change of the first run went through"
    assert writes(fake_gcp) == [("PATCH", instance.path)], "one write, after the running operation finished"
    assert instance.settings()["tier"] == "db-custom-2-7680"
    fake_gcp.operation_polls = 1
    instance.unprotect_and_delete()


def test_a_name_still_reserved_after_a_deletion_fails_clearly_and_another_name_converges(instance, fake_gcp):
    assert instance.run()["rc"] == 0
    instance.unprotect_and_delete()
    fake_gcp.clear()
    again = instance.run()
    assert again["rc"] == 1, again
    assert "the name %s is still reserved" % instance.name in again["msg"]
    assert "up to a week after the deletion" in again["msg"] and "Nothing was changed" in again["msg"]
    assert "inventory variable mlops_cloudsql_instance" in again["msg"]
    assert "you can't reuse the name of the deleted instance until one week" in again["msg"], "Google's own words"
    assert writes(fake_gcp) == [("POST", SQL + "/instances")], "only the refused create"
    renamed = instance.run(name=instance.name + "-b")
    assert renamed["rc"] == 0 and renamed["changed"] is True, renamed
    instance.run(name=instance.name + "-b", deletion_protection=False)
    assert instance.run(name=instance.name + "-b", state="absent")["rc"] == 0
