"""The preflight's lists agree with what they describe: the inventories' feature schemas, the stand-ins' region
lists, and the deployer's roles with the permissions each grants (by the fake's table of predefined roles).

They need the stand-ins (tests/standins), which the Galaxy tarball leaves out, so they are here rather than in
tests/unit, which ships and which `ansible-test units` runs from the tarball.
"""

from __future__ import annotations

import yaml

from ansible_collections.deployml.mlops.plugins.module_utils import preflight
from ansible_collections.deployml.mlops.plugins.module_utils.preflight import feature_schema_errors
from tests.conftest import ROOT
from tests.standins.fakegcp import regions as fake_regions
from tests.standins.inventory import settings


def test_every_inventory_schema_is_valid():
    reserved = ["entity_id", "event_timestamp", "split", "ingested_at"]
    for env in ("local", "dev", "staging", "prod"):
        group = settings(env)
        assert feature_schema_errors(group["mlops_features"], group["mlops_label"], reserved) == [], env


def test_region_lists_agree_with_the_fakes():
    """Both follow Google's location pages; a region added to one is added to the other."""
    assert preflight.CLOUD_RUN_REGIONS == fake_regions.CLOUD_RUN
    assert preflight.CLOUD_SQL_REGIONS == fake_regions.CLOUD_SQL
    assert "europe-west1" in preflight.PIPELINE_REGIONS and "us-central2" not in preflight.PIPELINE_REGIONS


AGREED_ROLES = {  # the least-privilege deployer agreed for issue 10
    "roles/serviceusage.serviceUsageAdmin", "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountUser",
    "roles/resourcemanager.projectIamAdmin", "roles/cloudsql.admin", "roles/secretmanager.admin", "roles/run.admin",
    "roles/artifactregistry.admin", "roles/cloudbuild.builds.editor", "roles/storage.admin",
    "roles/bigquery.dataOwner", "roles/cloudscheduler.admin",
    "roles/iam.roleAdmin"}  # issue 12: the custom roles granted on single tables (least privilege for data)


def test_the_deployer_list_names_each_role_once_and_each_role_grants_its_permissions():
    """playbooks/vars/deployer.yml: every role in the README table is needed by some task, and (by the fake's
    table of predefined roles) grants the permissions listed under it."""
    from tests.standins.fakegcp.permissions import role_grants

    deployer = yaml.safe_load((ROOT / "playbooks" / "vars" / "deployer.yml").read_text())
    assert set(deployer["deployer_roles"]) == {g["role"] for g in deployer["deployer_permissions"]} == AGREED_ROLES
    for group in deployer["deployer_permissions"]:
        assert group["needed_by"] and group["permissions"], group
        assert [p for p in group["permissions"] if not role_grants(group["role"], p)] == [], group
