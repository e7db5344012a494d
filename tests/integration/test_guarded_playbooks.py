"""The playbooks' guards on destructive changes: teardown refuses before any write unless it is confirmed and
nothing is protected, and takes its names from the roles' variables; the bigquery role refuses a shorter
prediction retention unless data loss is allowed for that run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import PROJECT, ROOT

BIN = Path(sys.executable).parent
DAYS = 86400000


def playbook(*args):
    proc = subprocess.run([BIN / "ansible-playbook", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    recap = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+).*failed=(\d+)", proc.stdout)
    return proc, (dict(zip(("ok", "changed", "failed"), map(int, recap.groups()))) if recap else None)


def create_dataset(bigquery, dataset):
    response = requests.post("%s/bigquery/v2/projects/%s/datasets" % (bigquery.target, PROJECT),
                             json={"datasetReference": {"projectId": PROJECT, "datasetId": dataset}}, timeout=10)
    assert response.status_code == 200, response.text


def dataset_exists(bigquery, dataset):
    url = "%s/bigquery/v2/projects/%s/datasets/%s" % (bigquery.target, PROJECT, dataset)
    return requests.get(url, timeout=10).status_code == 200


def create_bucket(storage, bucket):
    response = requests.post("%s/storage/v1/b?project=%s" % (storage.target, PROJECT), json={"name": bucket},
                             timeout=10)
    assert response.status_code == 200, response.text
    response = requests.post("%s/upload/storage/v1/b/%s/o" % (storage.target, bucket), data=b"model",
                             params={"uploadType": "media", "name": "1/model.pkl"}, timeout=10)
    assert response.status_code == 200, response.text


def bucket_exists(storage, bucket):
    return requests.get("%s/storage/v1/b/%s" % (storage.target, bucket), timeout=10).status_code == 200


def gcp_vars(fake_gcp, bigquery, storage, unique, **overrides):
    """inventories/dev (target gcp) pointed at the stand-ins, with this test's own names."""
    units = ("mlflow", "serving", "grafana", "monitoring", "build", "scheduler")
    return json.dumps(dict({
        "mlops_gcp_project": PROJECT, "mlops_gcp_auth_kind": "anonymous",
        "mlops_gcp_api_endpoints": dict(fake_gcp.endpoints, bigquery=bigquery.url, storage=storage.url),
        "mlops_bigquery_dataset": "td_" + unique, "mlops_mlflow_artifacts_bucket": "td-" + unique,
        "mlops_build_source_bucket": "src-" + unique, "mlops_artifact_registry_repository": "repo-" + unique,
        "mlops_cloudsql_instance": "pg-" + unique,
        "mlops_service_accounts": {unit: "%s-%s" % (unit[:4], unique) for unit in units},
    }, **overrides))


def no_writes(*stand_ins):
    return all(s.writes() == [] for s in stand_ins)


def test_teardown_refuses_without_the_project_confirmed(fake_gcp, bigquery, storage, unique):
    """No confirmation, or a protected environment unprotected by one extra var: refused, zero writes."""
    create_dataset(bigquery, "td_" + unique)
    create_bucket(storage, "td-" + unique)
    extra = gcp_vars(fake_gcp, bigquery, storage, unique)

    proc, recap = playbook("playbooks/teardown.yml", "-i", "inventories/dev", "-e", extra)
    assert proc.returncode != 0 and recap["failed"] == 1, proc.stdout
    assert "-e mlops_teardown_confirm=%s" % PROJECT in proc.stdout and "Nothing was deleted" in proc.stdout
    # The review's bypass: prod with -e mlops_protected=false and nothing else.
    proc, recap = playbook("playbooks/teardown.yml", "-i", "inventories/prod", "-e", extra,
                           "-e", "mlops_protected=false")
    assert proc.returncode != 0 and "mlops_teardown_confirm" in proc.stdout, proc.stdout
    # The confirmation alone does not lift the protection either.
    proc, recap = playbook("playbooks/teardown.yml", "-i", "inventories/prod", "-e", extra,
                           "-e", "mlops_teardown_confirm=%s" % PROJECT)
    assert proc.returncode != 0 and "is protected" in proc.stdout, proc.stdout
    assert no_writes(fake_gcp, bigquery, storage), [s.writes() for s in (fake_gcp, bigquery, storage)]
    assert dataset_exists(bigquery, "td_" + unique) and bucket_exists(storage, "td-" + unique)


def test_teardown_checks_deletion_protection_before_deleting_anything(fake_gcp, bigquery, storage, unique,
                                                                      gcp_module):
    """A protected Cloud SQL instance stops the teardown before the dataset, the bucket or anything else is
    deleted; once lifted, teardown deletes what the roles' variables name (not the inventory defaults)."""
    instance = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=fake_gcp.endpoints, name="pg-" + unique,
                    region="europe-west1", database_version="POSTGRES_16", edition="ENTERPRISE",
                    tier="db-custom-1-3840", timeout=20)
    assert gcp_module("cloud_sql_instance", dict(instance, deletion_protection=True))["rc"] == 0
    create_dataset(bigquery, "data_" + unique)
    create_bucket(storage, "art-" + unique)
    # Role variables set apart from the inventory's: teardown must follow the roles' names.
    roles = {"bigquery_dataset": "data_" + unique, "mlflow_artifacts_bucket": "art-" + unique,
             "serving_service_name": "api-" + unique, "monitoring_job_name": "drift-" + unique,
             "grafana_admin_password_secret": "gadmin-" + unique,
             "project_service_accounts": {"serving": "sa-" + unique}}
    extra = gcp_vars(fake_gcp, bigquery, storage, unique, mlops_teardown_confirm=PROJECT, **roles)
    for stand_in in (fake_gcp, bigquery, storage):
        stand_in.clear()

    proc, recap = playbook("playbooks/teardown.yml", "-i", "inventories/dev", "-e", extra)
    assert proc.returncode != 0 and recap["failed"] == 1, proc.stdout
    assert "deletion protection on" in proc.stdout and "Nothing was deleted" in proc.stdout, proc.stdout
    assert no_writes(fake_gcp, bigquery, storage), [s.writes() for s in (fake_gcp, bigquery, storage)]
    assert dataset_exists(bigquery, "data_" + unique) and bucket_exists(storage, "art-" + unique)

    assert gcp_module("cloud_sql_instance", dict(instance, deletion_protection=False))["rc"] == 0
    fake_gcp.clear()
    proc, recap = playbook("playbooks/teardown.yml", "-i", "inventories/dev", "-e", extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not dataset_exists(bigquery, "data_" + unique) and not bucket_exists(storage, "art-" + unique)
    assert fake_gcp.calls(method="DELETE", path=r"sqladmin/.*/instances/pg-%s$" % unique)
    for name in (r"run/.*/services/api-%s$", r"run/.*/jobs/drift-%s$", r"cloudscheduler/.*/jobs/drift-%s$",
                 r"secretmanager/.*/secrets/gadmin-%s$", r"iam/.*/serviceAccounts/sa-%s@"):
        assert fake_gcp.calls(method="GET", path=name % unique), name
    assert not fake_gcp.calls(path=r"/services/serving$|/jobs/drift$|/secrets/grafana-admin-password$|/serv-"), \
        "no name hard-coded in the playbook"


def test_shorter_prediction_retention_is_refused_by_the_role(bigquery, storage, unique):
    """site.yml on inventories/local: 730 -> 30 days of retention fails with the figure and writes nothing
    (check mode, as the module's tests show, fails the same way); -e mlops_bigquery_allow_data_loss=true
    applies it, warning with the same figure."""
    extra = {"mlops_gcp_project": PROJECT,
             "mlops_gcp_api_endpoints": {"bigquery": bigquery.url, "storage": storage.url},
             "mlops_bigquery_dataset": "ret_" + unique, "mlops_mlflow_artifacts_bucket": "ret-" + unique}
    args = ("site.yml", "-i", "inventories/local")
    proc, recap = playbook(*args, "-e", json.dumps(dict(extra, mlops_prediction_retention_days=730)))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    figure = "partitions older than 30 days would be deleted: about 700 days of history " \
             "(partition expiration 730 -> 30 days)"
    shorter = json.dumps(dict(extra, mlops_prediction_retention_days=30))
    bigquery.clear()
    proc, recap = playbook(*args, "-e", shorter)
    assert proc.returncode != 0 and figure in proc.stdout, proc.stdout
    assert bigquery.writes() == []

    allowed = json.dumps(dict(extra, mlops_prediction_retention_days=30, mlops_bigquery_allow_data_loss=True))
    proc, recap = playbook(*args, "-e", allowed)
    assert proc.returncode == 0 and figure in proc.stdout + proc.stderr, proc.stdout
    table = requests.get("%s/bigquery/v2/projects/%s/datasets/ret_%s/tables/predictions"
                         % (bigquery.target, PROJECT, unique), timeout=10).json()
    assert table["timePartitioning"]["expirationMs"] == str(30 * DAYS)
