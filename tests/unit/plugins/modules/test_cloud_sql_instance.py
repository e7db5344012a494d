"""cloud_sql_instance: the pure functions that validate options and build and compare request bodies."""

from __future__ import annotations

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.resource import Exact, differences, prune, with_fields
from ansible_collections.deployml.mlops.plugins.modules import cloud_sql_instance as sql


def params(**overrides):
    """Module parameters as AnsibleModule hands them over (every option present, defaults applied)."""
    base = dict(
        project="test-project", name="mlops-pg", state="present", database_version="POSTGRES_16",
        edition=None, tier="db-custom-1-3840", region="europe-west1", availability_type=None, disk_size_gb=None,
        disk_type=None, disk_autoresize=None, disk_autoresize_limit_gb=None,
        backups=dict(enabled=True, start_time=None, location=None, retained_backups=None),
        point_in_time_recovery=None, transaction_log_retention_days=None, maintenance_window=None,
        database_flags=None, iam_authentication=None,
        ip_configuration=dict(ipv4_enabled=None, authorized_networks=[], allow_public_network=False,
                              ssl_mode="ENCRYPTED_ONLY", private_network=None,
                              enable_private_path_for_google_cloud_services=None),
        deletion_protection=True, labels=None,
    )
    base.update(overrides)
    return base


def ip(**overrides):
    return dict(params()["ip_configuration"], **overrides)


# ---------------------------------------------------------------- the desired body

def test_defaults_are_secure_and_nothing_else_is_sent():
    body = prune(sql.build_instance(params()))
    assert body == {
        "name": "mlops-pg", "region": "europe-west1", "databaseVersion": "POSTGRES_16",
        "settings": {
            "tier": "db-custom-1-3840",
            "backupConfiguration": {"enabled": True},
            "ipConfiguration": {"authorizedNetworks": [], "sslMode": "ENCRYPTED_ONLY", "requireSsl": False},
            "deletionProtectionEnabled": True,
        },
    }


def test_every_option_lands_on_its_documented_field():
    body = prune(sql.build_instance(params(
        edition="ENTERPRISE", availability_type="REGIONAL", disk_size_gb=20, disk_type="PD_SSD",
        disk_autoresize=True, disk_autoresize_limit_gb=100,
        backups=dict(enabled=True, start_time="02:30", location="eu", retained_backups=14),
        point_in_time_recovery=True, transaction_log_retention_days=5,
        maintenance_window=dict(day=7, hour=3, update_track="stable"),
        database_flags=[dict(name="max_connections", value=200), dict(name="log_connections", value=True)],
        iam_authentication=True,
        ip_configuration=ip(ipv4_enabled=False, authorized_networks=[dict(name="office", value="203.0.113.0/24")],
                            private_network="https://www.googleapis.com/compute/v1/projects/net-host/global/networks/vpc",
                            enable_private_path_for_google_cloud_services=True),
        labels={"app": "mlops"},
    )))
    settings = body["settings"]
    assert settings["edition"] == "ENTERPRISE" and settings["availabilityType"] == "REGIONAL"
    assert settings["dataDiskSizeGb"] == "20" and settings["storageAutoResizeLimit"] == "100", "int64 as strings"
    assert settings["dataDiskType"] == "PD_SSD" and settings["storageAutoResize"] is True
    assert settings["backupConfiguration"] == {
        "enabled": True, "startTime": "02:30", "location": "eu",
        "backupRetentionSettings": {"retainedBackups": 14, "retentionUnit": "COUNT"},
        "pointInTimeRecoveryEnabled": True, "transactionLogRetentionDays": 5}
    assert settings["maintenanceWindow"] == {"day": 7, "hour": 3, "updateTrack": "stable"}
    assert settings["databaseFlags"] == [
        {"name": "cloudsql.iam_authentication", "value": "on"},
        {"name": "log_connections", "value": "on"},
        {"name": "max_connections", "value": "200"},
    ], "sorted by name, values as strings, booleans as on/off, the IAM flag folded in"
    assert settings["ipConfiguration"] == {
        "ipv4Enabled": False, "authorizedNetworks": [{"name": "office", "value": "203.0.113.0/24"}],
        "privateNetwork": "projects/net-host/global/networks/vpc",
        "enablePrivatePathForGoogleCloudServices": True, "sslMode": "ENCRYPTED_ONLY", "requireSsl": False}
    assert settings["userLabels"] == {"app": "mlops"} and isinstance(settings["userLabels"], Exact)


def test_mysql_point_in_time_recovery_is_binary_logging_and_its_iam_flag_differs():
    body = prune(sql.build_instance(params(database_version="MYSQL_8_0", point_in_time_recovery=True,
                                           iam_authentication=True)))
    backup = body["settings"]["backupConfiguration"]
    assert backup == {"enabled": True, "binaryLogEnabled": True}
    assert body["settings"]["databaseFlags"] == [{"name": "cloudsql_iam_authentication", "value": "on"}]


@pytest.mark.parametrize("mode, version, require", [
    ("ENCRYPTED_ONLY", "POSTGRES_16", False),
    ("TRUSTED_CLIENT_CERTIFICATE_REQUIRED", "POSTGRES_16", True),
    ("ALLOW_UNENCRYPTED_AND_ENCRYPTED", "MYSQL_8_0", False),
    ("ENCRYPTED_ONLY", "SQLSERVER_2022_STANDARD", True),
    ("ALLOW_UNENCRYPTED_AND_ENCRYPTED", "SQLSERVER_2022_STANDARD", False),
])
def test_legacy_require_ssl_matches_the_ssl_mode(mode, version, require):
    # The pairs the discovery document lists as the only valid ones.
    assert sql.ssl_fields(mode, version) == {"sslMode": mode, "requireSsl": require}


def test_flags_without_value_and_an_iam_flag_already_listed():
    flags = sql.user_flags(params(database_flags=[dict(name="cloudsql.enable_pgaudit", value=None),
                                                  dict(name="cloudsql.iam_authentication", value="on")],
                                  iam_authentication=True))
    assert flags == [{"name": "cloudsql.enable_pgaudit"}, {"name": "cloudsql.iam_authentication", "value": "on"}]
    assert sql.user_flags(params()) is None, "not set: the instance's flags are left alone"
    assert sql.user_flags(params(database_flags=[])) == [], "an empty list removes every flag"


@pytest.mark.parametrize("flags, enabled, expected", [
    ([], True, [{"name": "cloudsql.iam_authentication", "value": "on"}]),
    ([{"name": "work_mem", "value": "64MB"}], True,
     [{"name": "cloudsql.iam_authentication", "value": "on"}, {"name": "work_mem", "value": "64MB"}]),
    ([{"name": "work_mem", "value": "64MB"}, {"name": "cloudsql.iam_authentication", "value": "on"}], False,
     [{"name": "work_mem", "value": "64MB"}]),
    ([{"name": "work_mem", "value": "64MB"}], False, [{"name": "work_mem", "value": "64MB"}]),
    ([{"name": "cloudsql.iam_authentication", "value": "off"}], False,
     [{"name": "cloudsql.iam_authentication", "value": "off"}]),
    ([{"name": "cloudsql.iam_authentication", "value": "off"}], True,
     [{"name": "cloudsql.iam_authentication", "value": "on"}]),
    (None, False, []),
])
def test_merge_iam_flag_keeps_the_other_flags(flags, enabled, expected):
    assert sql.merge_iam_flag(flags, "cloudsql.iam_authentication", enabled) == expected


@pytest.mark.parametrize("link, path", [
    ("projects/p1/global/networks/default", "projects/p1/global/networks/default"),
    ("/projects/p1/global/networks/default", "projects/p1/global/networks/default"),
    ("https://www.googleapis.com/compute/v1/projects/p1/global/networks/vpc-1",
     "projects/p1/global/networks/vpc-1"),
    ("https://compute.googleapis.com/compute/beta/projects/p1/global/networks/vpc-1",
     "projects/p1/global/networks/vpc-1"),
    ("default", None),
    ("projects/p1/regions/europe-west1/subnetworks/s", None),
    ("", None),
])
def test_network_path(link, path):
    assert sql.network_path(link) == path


# ---------------------------------------------------------------- the actual instance, compared

def actual(**settings):
    base = {"tier": "db-custom-1-3840", "settingsVersion": "7", "kind": "sql#settings",
            "backupConfiguration": {"enabled": True, "kind": "sql#backupConfiguration", "startTime": "04:00"},
            "ipConfiguration": {"ipv4Enabled": True, "sslMode": "ENCRYPTED_ONLY", "requireSsl": False},
            "deletionProtectionEnabled": True, "dataDiskSizeGb": "10", "dataDiskType": "PD_SSD",
            "storageAutoResize": True}
    base.update(settings)
    return {"name": "mlops-pg", "region": "europe-west1", "databaseVersion": "POSTGRES_16", "state": "RUNNABLE",
            "connectionName": "test-project:europe-west1:mlops-pg", "settings": base}


def compare(desired_params, instance):
    desired = prune(sql.build_instance(desired_params))
    return sql.field_names(differences(desired, sql.normalize_instance(instance)))


def test_an_instance_as_the_api_returns_it_matches_the_options_that_built_it():
    # The API leaves out empty lists and maps and returns flags and networks in its own order.
    assert compare(params(), actual()) == []
    instance = actual(databaseFlags=[{"name": "work_mem", "value": "64MB"}, {"name": "max_connections", "value": "200"}],
                      userLabels={"app": "mlops"},
                      ipConfiguration={"sslMode": "ENCRYPTED_ONLY", "requireSsl": False, "authorizedNetworks": [
                          {"value": "198.51.100.7/32", "kind": "sql#aclEntry"},
                          {"value": "203.0.113.0/24", "name": "office", "kind": "sql#aclEntry"}]})
    wanted = params(database_flags=[dict(name="max_connections", value=200), dict(name="work_mem", value="64MB")],
                    labels={"app": "mlops"},
                    ip_configuration=ip(authorized_networks=[dict(name="office", value="203.0.113.0/24"),
                                                             dict(value="198.51.100.7/32")]))
    assert compare(wanted, instance) == []


def test_changes_are_named_at_the_level_of_a_settings_field():
    instance = actual(userLabels={"app": "mlops", "team": "ml"},
                      databaseFlags=[{"name": "max_connections", "value": "100"}],
                      ipConfiguration={"sslMode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED", "requireSsl": False,
                                       "authorizedNetworks": [{"value": "203.0.113.0/24"}]})
    wanted = params(tier="db-custom-2-7680", labels={"app": "mlops"},
                    database_flags=[dict(name="max_connections", value=200)],
                    backups=dict(enabled=True, start_time="02:00", location=None, retained_backups=7))
    assert compare(wanted, instance) == ["settings.backupConfiguration", "settings.databaseFlags",
                                         "settings.ipConfiguration", "settings.tier", "settings.userLabels"]


def test_a_removed_flag_label_or_network_is_a_change():
    instance = actual(databaseFlags=[{"name": "work_mem", "value": "64MB"}], userLabels={"team": "ml"},
                      ipConfiguration={"sslMode": "ENCRYPTED_ONLY", "requireSsl": False,
                                       "authorizedNetworks": [{"value": "203.0.113.0/24"}]})
    assert compare(params(database_flags=[], labels={}), instance) == [
        "settings.databaseFlags", "settings.ipConfiguration", "settings.userLabels"]


def test_refusals_name_old_and_new_values():
    instance = sql.normalize_instance(actual())
    desired = prune(sql.build_instance(params(region="us-central1", database_version="POSTGRES_17",
                                              disk_type="PD_HDD", disk_size_gb=5)))
    desired["settings"]["dataDiskSizeGb"] = "5"  # below the validated minimum, to test the shrink refusal alone
    fields = sql.field_names(differences(desired, instance))
    problems = sql.refusals(instance, desired, fields)
    assert len(problems) == 4, problems
    region, version, disk_type, disk_size = problems
    assert "'europe-west1'" in region and "'us-central1'" in region
    assert "'POSTGRES_16'" in version and "'POSTGRES_17'" in version and "planned upgrade" in version
    assert "'PD_SSD'" in disk_type and "'PD_HDD'" in disk_type
    assert "is 10, asked for 5" in disk_size and "cannot shrink" in disk_size


def test_a_disk_grown_by_autoresize_is_not_a_change_but_growing_it_is():
    grown = sql.normalize_instance(actual(dataDiskSizeGb="40"))
    desired = prune(sql.build_instance(params(disk_size_gb=20)))
    assert sql.grown_by_autoresize(grown, desired)
    fixed = sql.normalize_instance(actual(dataDiskSizeGb="40", storageAutoResize=False))
    assert not sql.grown_by_autoresize(fixed, desired)
    assert sql.refusals(fixed, desired, ["settings.dataDiskSizeGb"]), "shrinking a fixed-size disk is refused"
    bigger = prune(sql.build_instance(params(disk_size_gb=50)))
    assert not sql.grown_by_autoresize(grown, bigger)
    assert sql.refusals(grown, bigger, ["settings.dataDiskSizeGb"]) == [], "growing is allowed"


def test_restart_fields():
    instance = sql.normalize_instance(actual())
    desired = prune(sql.build_instance(params(
        tier="db-custom-2-7680", labels={"a": "b"},
        ip_configuration=ip(private_network="projects/p/global/networks/vpc"))))
    changed = sql.field_names(differences(desired, instance))
    assert sql.restart_fields(instance, desired, changed) == ["settings.tier", "settings.ipConfiguration.privateNetwork"]
    quiet = prune(sql.build_instance(params(labels={"a": "b"}, disk_size_gb=20)))
    assert sql.restart_fields(instance, quiet, sql.field_names(differences(quiet, instance))) == []


def test_update_body_sends_only_changed_sub_objects_with_the_settings_version():
    raw = actual(userLabels={"app": "mlops", "team": "ml"})
    desired = prune(sql.build_instance(params(tier="db-custom-2-7680", labels={"app": "mlops", "env": "dev"},
                                              maintenance_window=dict(day=1, hour=2, update_track=None))))
    body = sql.update_body(raw, desired, ["settings.maintenanceWindow", "settings.tier", "settings.userLabels"])
    assert body == {"settings": {
        "tier": "db-custom-2-7680",
        "maintenanceWindow": {"day": 1, "hour": 2},
        "userLabels": {"app": "mlops", "env": "dev", "team": None},  # PATCH merges maps: null removes a label
        "settingsVersion": "7",
    }}


def test_addresses():
    found = sql.addresses({"ipAddresses": [{"type": "PRIMARY", "ipAddress": "203.0.113.10"},
                                           {"type": "PRIVATE", "ipAddress": "10.0.0.3"}]})
    assert found == {"ip_addresses": [{"type": "PRIMARY", "ipAddress": "203.0.113.10"},
                                      {"type": "PRIVATE", "ipAddress": "10.0.0.3"}],
                     "public_ip_address": "203.0.113.10", "private_ip_address": "10.0.0.3"}
    assert sql.addresses({}) == {"ip_addresses": [], "public_ip_address": None, "private_ip_address": None}


def test_engine_after_view_sets_dotted_fields_only():
    # resource.with_fields: the `after` half of a diff for changed fields such as settings.tier.
    before = {"settings": {"tier": "a", "userLabels": {"x": "1"}}, "region": "r"}
    desired = {"settings": {"tier": "b", "userLabels": {"y": "2"}}, "region": "r"}
    after = with_fields(before, desired, ["settings.tier"])
    assert after == {"settings": {"tier": "b", "userLabels": {"x": "1"}}, "region": "r"}
    assert before["settings"]["tier"] == "a", "the before view is not modified"
    assert with_fields({}, {"labels": {"a": "b"}}, ["labels"]) == {"labels": {"a": "b"}}
