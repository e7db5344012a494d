"""cloud_sql_instance: option validation (everything is checked before any API call)."""

from __future__ import annotations

import pytest

from ansible_collections.deployml.mlops.plugins.modules import cloud_sql_instance as sql

from ansible_collections.deployml.mlops.tests.unit.plugins.modules.test_cloud_sql_instance import ip, params


def errors(**overrides):
    return sql.option_errors(params(**overrides))


def test_good_options_pass():
    assert errors() == []
    assert errors(edition="ENTERPRISE_PLUS", tier="db-perf-optimized-N-8", transaction_log_retention_days=35,
                  point_in_time_recovery=True, disk_size_gb=100, disk_autoresize=True, disk_autoresize_limit_gb=500,
                  backups=dict(enabled=True, start_time="23:59", location="eu", retained_backups=365),
                  maintenance_window=dict(day=7, hour=23, update_track="week5"),
                  database_flags=[dict(name="max_connections", value=100)], iam_authentication=True,
                  ip_configuration=ip(authorized_networks=[dict(value="203.0.113.0/24"), dict(value="198.51.100.7")],
                                      private_network="projects/p/global/networks/vpc"),
                  labels={"app": "mlops"}) == []
    assert errors(database_version="SQLSERVER_2022_STANDARD", tier="db-custom-2-7680") == []
    assert errors(name="Bad_Name", state="absent", tier="nonsense") != [], "the name is checked when deleting too"
    assert errors(state="absent", tier="nonsense", region="nowhere") == [], "other options do not matter then"


@pytest.mark.parametrize("name", ["1abc", "ab_c", "Abc", "abc-", "a" * 90])
def test_bad_names(name):
    found = errors(name=name)
    assert len(found) == 1 and repr(name) in found[0], found


@pytest.mark.parametrize("overrides, expected", [
    (dict(database_version="postgres16"), "database_version 'postgres16'"),
    (dict(region=None), "region is required with state: present"),
    (dict(region="Europe West"), "region 'Europe West'"),
    (dict(tier="custom-1-3840"), "tier 'custom-1-3840' is not a Cloud SQL machine type"),
    (dict(edition="ENTERPRISE_PLUS", tier="db-custom-1-3840"), "ENTERPRISE_PLUS takes a db-perf-optimized-N-*"),
    (dict(edition="ENTERPRISE", tier="db-perf-optimized-N-2"), "belongs to edition ENTERPRISE_PLUS"),
    (dict(tier="db-custom-3-7680"), "vCPU count must be 1 or an even number"),
    (dict(tier="db-custom-1-3000"), "3840 to 6656 MB for 1 vCPU"),
    (dict(tier="db-custom-2-7700"), "multiple of 256 MB"),
    (dict(tier="db-custom-2-15360"), "3840 to 13312 MB for 2 vCPU"),
    (dict(tier="db-custom-16-13056"), "14848 to 106496 MB for 16 vCPU"),
    (dict(disk_size_gb=9), "disk_size_gb must be from 10 to 65536, got 9"),
    (dict(disk_autoresize_limit_gb=-1), "disk_autoresize_limit_gb must be 0"),
    (dict(disk_size_gb=100, disk_autoresize_limit_gb=50), "must not be below disk_size_gb"),
    (dict(disk_autoresize=False, disk_autoresize_limit_gb=50), "applies only with disk_autoresize"),
    (dict(backups=dict(enabled=True, start_time="3:00", location=None, retained_backups=None)), "HH:MM"),
    (dict(backups=dict(enabled=True, start_time="24:00", location=None, retained_backups=None)), "got '24:00'"),
    (dict(backups=dict(enabled=True, start_time=None, location=None, retained_backups=0)), "from 1 to 365"),
    (dict(backups=dict(enabled=False, start_time=None, location=None, retained_backups=None),
          point_in_time_recovery=True), "point_in_time_recovery needs backups.enabled"),
    (dict(transaction_log_retention_days=8, edition="ENTERPRISE"), "from 1 to 7 with edition ENTERPRISE"),
    (dict(transaction_log_retention_days=0), "from 1 to 35"),
    (dict(maintenance_window=dict(day=0, hour=3, update_track=None)), "day must be from 1 (Monday) to 7"),
    (dict(maintenance_window=dict(day=1, hour=24, update_track=None)), "hour must be from 0 to 23"),
    (dict(database_flags=[dict(name="a", value="1"), dict(name="a", value="2")]), "lists 'a' twice"),
    (dict(database_flags=[dict(name=" ", value="1")]), "needs a name"),
    (dict(database_flags=[dict(name="a", value=[1])]), "string, number or boolean"),
    (dict(database_flags=[dict(name="cloudsql.iam_authentication", value="off")], iam_authentication=True),
     "set one of them"),
    (dict(database_version="SQLSERVER_2022_STANDARD", tier="db-custom-2-7680", iam_authentication=True),
     "iam_authentication is not available"),
    (dict(ip_configuration=ip(authorized_networks=[dict(value="0.0.0.0/0")])), "allow_public_network: true"),
    (dict(ip_configuration=ip(authorized_networks=[dict(value="0.0.0.0/1")])), "large part of the internet"),
    (dict(ip_configuration=ip(authorized_networks=[dict(value="10.0.0.1/24")])), "not an IPv4 network"),
    (dict(ip_configuration=ip(authorized_networks=[dict(value="2001:db8::/32")])), "IPv4 networks only"),
    (dict(ip_configuration=ip(authorized_networks=[dict(value="a.b.c.d")])), "not an IPv4 network"),
    (dict(ip_configuration=ip(authorized_networks=[dict(value="1.2.3.4"), dict(value="1.2.3.4")])), "twice"),
    (dict(ip_configuration=ip(private_network="default")), "projects/PROJECT/global/networks/NAME"),
    (dict(ip_configuration=ip(private_network="")), "cannot be removed"),
    (dict(labels={"App": "x"}), "label key 'App'"),
])
def test_each_bad_option_is_named(overrides, expected):
    found = errors(**overrides)
    assert len(found) == 1 and expected in found[0], found


def test_the_whole_internet_is_allowed_only_on_request():
    wide = ip(authorized_networks=[dict(value="0.0.0.0/0")], allow_public_network=True)
    assert errors(ip_configuration=wide) == []


def test_all_errors_are_reported_at_once():
    found = errors(region="x", disk_size_gb=1, labels={"A": "b"})
    assert len(found) == 3, found
