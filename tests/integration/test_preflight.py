"""project_preflight and playbooks/preflight.yml against the fake with permissions enforced.

The deployer is a principal of the fake (an access token mapped to a user) holding the roles of
playbooks/vars/deployer.yml; each test uses a project of its own (every valid project ID exists in the fake).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import ROOT
from tests.standins.fakegcp import FakeGcp
from tests.standins.inventory import settings

DEPLOYER = yaml.safe_load((ROOT / "playbooks" / "vars" / "deployer.yml").read_text())
ROLES = sorted(DEPLOYER["deployer_roles"])
INVENTORY = settings("dev")
RESERVED = ["entity_id", "event_timestamp", "split", "ingested_at"]


@pytest.fixture(scope="module")
def fake():
    """A fake of its own that checks callers' permissions (nothing else of realism: these tests are about who
    may do what, and stay fast)."""
    server = FakeGcp(realism=False).start()
    server.realism.permissions = True
    yield server
    server.stop()


@pytest.fixture
def project(fake, unique):
    fake.clear()
    return "pre-" + unique


def deployer(fake, unique, roles=ROLES, name="deployer"):
    """Register a caller holding roles on every project; returns (token, member)."""
    token, member = "token-%s-%s" % (name, unique), "user:%s-%s@example.com" % (name, unique)
    fake.add_principal(token, member, roles=roles)
    return token, member


def preflight(gcp_module, fake, project, token, check=False, **options):
    args = dict(project=project, auth_kind="accesstoken", access_token=token, api_endpoints=fake.endpoints,
                timeout=20, region="europe-west1", permissions=DEPLOYER["deployer_permissions"],
                cloudsql_instance={"name": "mlops-pg", "set_by": "mlops_cloudsql_instance"},
                features=INVENTORY["mlops_features"], label=INVENTORY["mlops_label"], reserved_columns=RESERVED,
                cost={"cloudsql": {"tier": "db-custom-1-3840", "availability_type": "ZONAL", "disk_size_gb": 10}})
    args.update(options)
    return gcp_module("project_preflight", args, check=check)


def rows(result, check, status=None):
    return [f for f in result["findings"] if f["check"] == check and status in (None, f["status"])]


def row_about(result, check, text):
    [row] = [f for f in rows(result, check) if text in f["detail"]]
    return row


def playbook(*args, env=None):
    proc = subprocess.run([Path(sys.executable).parent / "ansible-playbook", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False, env=dict(os.environ, **(env or {})))
    recap = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+).*failed=(\d+)", proc.stdout)
    return proc, (dict(zip(("ok", "changed", "failed"), map(int, recap.groups()))) if recap else None)


def test_a_deployer_with_every_role_passes_and_writes_nothing(gcp_module, fake, project, unique):
    token, member = deployer(fake, unique)
    for check_mode in (True, False):
        fake.clear()
        result = preflight(gcp_module, fake, project, token, check=check_mode)
        assert result["rc"] == 0 and result["changed"] is False and result["problems"] == 0, result.get("msg")
        assert result["identity"] == member
        assert {f["status"] for f in result["findings"]} == {"ok"}, result["findings"]
        checks = {"identity", "project", "billing", "region", "permissions", "names", "schema"}
        assert {f["check"] for f in result["findings"]} == checks
        assert fake.writes() == []
        wanted = {p for group in DEPLOYER["deployer_permissions"] for p in group["permissions"]}
        tests = fake.calls(method="POST", path=r":testIamPermissions$")
        assert len(tests) == math.ceil(len(wanted) / 100), "at most 100 permissions a call"
        assert sorted(p for call in tests for p in call.body["permissions"]) == sorted(wanted)
        assert fake.calls(method="GET", path=r"^oauth2/tokeninfo$"), "the caller is found through tokeninfo"
    assert result["estimate"]["total_usd"] > 0 and "Monthly cost estimate" in "\n".join(result["table"])


@pytest.mark.parametrize("role", ROLES)
def test_a_missing_role_fails_naming_its_permissions_and_the_fix(gcp_module, fake, project, unique, role):
    token, member = deployer(fake, unique, roles=[r for r in ROLES if r != role], name="lacks")
    result = preflight(gcp_module, fake, project, token)
    assert result["rc"] == 1 and result["changed"] is False and fake.writes() == []
    assert list(result["missing_permissions"]) == [role], result["msg"]
    granted_by_role = {p for g in DEPLOYER["deployer_permissions"] if g["role"] == role for p in g["permissions"]}
    assert set(result["missing_permissions"][role]) <= granted_by_role
    [row] = rows(result, "permissions", "missing")
    assert all(p in row["detail"] for p in result["missing_permissions"][role]) and role in row["detail"]
    fix = "gcloud projects add-iam-policy-binding %s --member=%s --role=%s" % (project, member, role)
    assert row["fix"] == [fix]
    assert fix in result["msg"] and result["msg"].startswith("Preflight of project %s" % project)


def test_billing_disabled_fails_with_the_link_command(gcp_module, fake, project, unique):
    token, _member = deployer(fake, unique)
    fake.apis["cloudbilling"].set_billing(project, enabled=False)
    result = preflight(gcp_module, fake, project, token)
    assert result["rc"] == 1 and result["problems"] == 1
    [row] = rows(result, "billing", "missing")
    assert "gcloud billing projects link %s --billing-account=ACCOUNT_ID" % project in row["fix"]


@pytest.mark.parametrize("state, detail, fix", [
    ("DELETE_REQUESTED", "is DELETE_REQUESTED, not ACTIVE", "gcloud projects undelete {p}"),
    ("NOT_FOUND", "does not exist, or", "gcloud projects create {p}"),
])
def test_an_inactive_or_missing_project_fails_and_stops_there(gcp_module, fake, project, unique, state, detail, fix):
    token, _member = deployer(fake, unique)
    fake.apis["cloudresourcemanager"].set_project_state(project, state)
    result = preflight(gcp_module, fake, project, token)
    assert result["rc"] == 1 and result["problems"] == 1, result["msg"]
    [row] = rows(result, "project", "missing")
    assert detail in row["detail"] and fix.format(p=project) in row["fix"]
    # Nothing else is asked about a project that cannot be used.
    assert not rows(result, "permissions") and not rows(result, "billing") and not rows(result, "names")


def test_an_api_not_enabled_is_named_with_the_command_that_enables_it(gcp_module, fake, project, unique):
    """A new project has neither Resource Manager nor Cloud Billing enabled: the first blocks the checks (one
    manual step before the first run), the second only the billing check (the run itself never calls it)."""
    token, _member = deployer(fake, unique)
    fake.realism.service_enablement = True
    try:
        result = preflight(gcp_module, fake, project, token)
    finally:
        fake.realism.service_enablement = False
    assert result["rc"] == 1 and result["problems"] == 1, result["msg"]
    [row] = rows(result, "project", "missing")
    number = fake.projects.resolve(project)[1]
    assert "cloudresourcemanager.googleapis.com is not enabled" in row["detail"]
    assert row["fix"] == ["gcloud services enable cloudresourcemanager.googleapis.com --project=%s" % number]
    assert not rows(result, "permissions") and fake.writes() == []

    fake.apis["serviceusage"].enabled(project).add("cloudresourcemanager.googleapis.com")
    fake.realism.service_enablement = True
    try:
        result = preflight(gcp_module, fake, project, token)
    finally:
        fake.realism.service_enablement = False
    assert result["rc"] == 0, result["msg"]
    [billing] = rows(result, "billing")
    assert billing["status"] == "warning" and "cloudbilling.googleapis.com is not enabled" in billing["detail"]
    assert rows(result, "names")[0]["detail"].endswith("free (the Cloud SQL Admin API is not enabled yet)")


@pytest.mark.parametrize("region, lacking", [("europe-west99", "Cloud Run or Cloud SQL"), ("us-central2", "Cloud Run")])
def test_a_region_without_cloud_run_or_cloud_sql_fails(gcp_module, fake, project, unique, region, lacking):
    token, _member = deployer(fake, unique)
    result = preflight(gcp_module, fake, project, token, region=region)
    [row] = rows(result, "region", "missing")
    assert result["rc"] == 1 and "%s is not a region %s offers" % (region, lacking) in row["detail"]
    assert row["fix"][0].startswith("set mlops_gcp_region to one of: ") and "europe-west1" in row["fix"][0]


def test_a_bad_feature_schema_fails_with_one_row_per_problem(gcp_module, fake, project, unique):
    token, _member = deployer(fake, unique)
    features = [{"name": "age", "type": "FLOAT", "description": "Age"},
                {"name": "AGE", "type": "INT64", "description": "Again"},           # duplicate (case-insensitive)
                {"name": "2nd", "type": "STRING", "description": "Bad name"},
                {"name": "seen_at", "type": "TIMESTAMP", "description": "Not comparable"},
                {"name": "blob", "type": "BLOB", "description": "Unknown type"},
                {"name": "split", "type": "STRING", "description": "A fixed column"},
                {"name": "bmi", "type": "FLOAT"}]                                   # no description
    result = preflight(gcp_module, fake, project, token, features=features, label={"name": "y"})
    details = [row["detail"] for row in rows(result, "schema", "missing")]
    assert result["rc"] == 1 and len(details) == 7, details
    for expected in ("AGE: duplicate column name", "2nd: column names use letters", "seen_at: type TIMESTAMP cannot",
                     "blob: unknown type 'BLOB'", "split: offline_features already has a column split",
                     "feature bmi: add a description", "mlops_label must be a column with a name and a type"):
        assert any(expected in d for d in details), (expected, details)
    assert all(row["fix"] for row in rows(result, "schema", "missing"))


def test_taken_names_fail_and_free_ones_pass(gcp_module, fake, project, unique, storage):
    token, _member = deployer(fake, unique)
    endpoints = dict(fake.endpoints, storage=storage.url)
    sql = "%s/sqladmin/sql/v1beta4/projects/%s/instances" % (fake.url, project)
    fake.principals["owner-token"] = "user:owner@example.com"  # the project's owner creates the instance
    created = requests.post(sql, headers={"Authorization": "Bearer owner-token"}, timeout=10, json={
        "name": "mlops-pg", "region": "us-east1", "databaseVersion": "POSTGRES_16",
        "settings": {"tier": "db-custom-1-3840", "edition": "ENTERPRISE"}})
    assert created.status_code == 200, created.text
    fake.complete_operations()
    # A bucket the deployer can read that another project owns (the emulator numbers every project 1234).
    other = requests.post("%s/storage/v1/b" % storage.url, params={"project": "other-project"},
                          json={"name": "other-%s" % unique}, timeout=10)
    assert other.status_code == 200 and other.json()["projectNumber"] != fake.projects.resolve(project)[1]
    buckets = [{"name": "free-%s" % unique, "set_by": "mlops_build_source_bucket"},
               {"name": "other-%s" % unique, "set_by": "mlops_build_source_bucket"},
               {"name": "taken-%s" % unique, "set_by": "mlops_mlflow_artifacts_bucket"}]
    storage.clear()
    fake.clear()
    storage.inject(403, 1, method="GET")  # the first bucket read: another project's bucket
    result = preflight(gcp_module, fake, project, token, api_endpoints=endpoints,
                       buckets=list(reversed(buckets)))
    assert result["rc"] == 1 and result["problems"] == 3, result["msg"]
    other = row_about(result, "names", "gs://other-%s" % unique)
    assert other["status"] == "missing" and "belongs to project number" in other["detail"]
    sql_row = row_about(result, "names", "Cloud SQL instance mlops-pg")
    assert sql_row["status"] == "missing" and "already exists in us-east1, not europe-west1" in sql_row["detail"]
    assert "set mlops_cloudsql_instance to another name" in sql_row["fix"][0]
    taken = row_about(result, "names", "gs://taken-%s" % unique)
    assert taken["status"] == "missing" and "taken by another project" in taken["detail"]
    assert taken["fix"] == ["set mlops_mlflow_artifacts_bucket to a name no other project uses (bucket names are "
                            "global)"]
    assert row_about(result, "names", "gs://free-%s" % unique)["status"] == "ok"
    assert storage.writes() == [] and fake.writes() == []


def test_anonymous_caller_checks_only_what_the_stand_ins_serve(gcp_module, fake, project):
    # Every API on a stand-in: the fake allows an anonymous caller everything, so the run would too.
    result = preflight(gcp_module, fake, project, None, auth_kind="anonymous", access_token=None)
    assert result["rc"] == 0, result["msg"]
    assert rows(result, "identity")[0]["detail"].startswith("anonymous")
    assert {f["status"] for f in result["findings"]} == {"ok"}, result["findings"]
    assert not fake.calls(path=r"^oauth2/")
    # No endpoint override: anonymous requests would go to Google itself, so nothing is sent.
    fake.clear()
    result = preflight(gcp_module, fake, project, None, auth_kind="anonymous", access_token=None, api_endpoints={})
    assert result["rc"] == 0 and fake.requests == []
    skipped = [f for f in result["findings"] if f["status"] == "skipped"]
    assert {f["check"] for f in skipped} == {"project", "billing", "permissions", "names"}
    assert all("anonymous credentials reach emulators and stand-ins only" in f["detail"] for f in skipped)


def test_the_playbook_passes_for_a_full_deployer_and_prints_the_table(fake, project, unique, storage):
    """playbooks/preflight.yml on inventories/dev as a least-privilege deployer: passes, zero writes."""
    token, member = deployer(fake, unique)
    extra = json.dumps({"mlops_gcp_project": project, "mlops_gcp_auth_kind": "accesstoken",
                        "mlops_gcp_api_endpoints": dict(fake.endpoints, storage=storage.url),
                        "mlops_serving_min_instances": 1})
    storage.clear()
    proc, recap = playbook("playbooks/preflight.yml", "-i", "inventories/dev", "-e", extra,
                           env={"GCP_ACCESS_TOKEN": token})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The settings checked (common), the serving and alerting checks (6), the preflight, its table.
    assert recap == {"ok": 9, "changed": 0, "failed": 0}
    assert "Preflight of project %s in europe-west1 as %s: ready to deploy" % (project, member) in proc.stdout
    assert re.search(r"Cloud Run serving\s+\$13\.14\s+1 min instance", proc.stdout), proc.stdout
    assert "list price, us-central1/europe-west1, as of" in proc.stdout
    assert fake.writes() == [] and storage.writes() == []


def test_the_playbook_on_target_local_checks_only_the_schema():
    proc, recap = playbook("playbooks/preflight.yml", "-i", "inventories/local",
                           "-e", json.dumps({"mlops_label": {"name": "age", "type": "FLOAT"}}))
    assert proc.returncode != 0 and recap["failed"] == 1
    assert "age: duplicate column name" in proc.stdout
    assert "edit mlops_features / mlops_label" in proc.stdout


@pytest.mark.parametrize("setting, message", [
    ({"mlops_challenger": {"alias": "challenger", "mode": "split"}}, "serving_challenger (mlops_challenger) must be"),
    ({"mlops_model_stage": "Archived"}, "serving_model_stage (mlops_model_stage) must be null, Production or Staging"),
    ({"mlops_alert_contact_points": [{"name": "oncall", "type": "pager"}]},
     "mlops_alert_contact_points[0] (oncall): type must be"),
])
def test_the_units_settings_fail_the_playbook_before_any_request(fake, project, unique, setting, message):
    token, _member = deployer(fake, unique)
    extra = json.dumps(dict(setting, mlops_gcp_project=project, mlops_gcp_auth_kind="accesstoken",
                            mlops_gcp_api_endpoints=fake.endpoints))
    proc, recap = playbook("playbooks/preflight.yml", "-i", "inventories/dev", "-e", extra,
                           env={"GCP_ACCESS_TOKEN": token})
    assert proc.returncode != 0 and recap["failed"] == 1
    assert message in " ".join(proc.stdout.split()), proc.stdout
    assert fake.requests == []
