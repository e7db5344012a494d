"""The playbooks and inventories: site.yml converges at the wire, teardown guards protected environments."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import ROOT
from tests.standins.inventory import DEFAULTS, ENVIRONMENTS, group_vars, settings

BIN = Path(sys.executable).parent


def playbook(*args):
    proc = subprocess.run([BIN / "ansible-playbook", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    recap = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+).*failed=(\d+)", proc.stdout)
    return proc, (dict(zip(("ok", "changed", "failed"), map(int, recap.groups()))) if recap else None)


def assert_least_privilege_for_data(fake_gcp, bigquery, project_policy, unique):
    """The serving and drift accounts hold custom roles with only what insertAll and the MERGE need, on their
    one table each; Cloud SQL clients are limited to the instance by an IAM condition."""
    account = "serviceAccount:%s-" + unique + "@test-project.iam.gserviceaccount.com"
    roles = {}
    for role_id in ("mlops_prediction_writer", "mlops_drift_metrics_writer"):
        role = requests.get("%s/v1/projects/test-project/roles/%s" % (fake_gcp.endpoints["iam"], role_id), timeout=10)
        assert role.status_code == 200, role.text
        roles[role_id] = sorted(role.json()["includedPermissions"])
    assert roles == {"mlops_prediction_writer": ["bigquery.tables.get", "bigquery.tables.updateData"],
                     "mlops_drift_metrics_writer": ["bigquery.tables.get", "bigquery.tables.getData",
                                                    "bigquery.tables.updateData"]}
    tables = "%s/bigquery/v2/projects/test-project/datasets/gcp_%s/tables" % (bigquery.url, unique)
    for table, role_id, unit in (("predictions", "mlops_prediction_writer", "serv"),
                                 ("drift_metrics", "mlops_drift_metrics_writer", "moni")):
        policy = requests.post("%s/%s:getIamPolicy" % (tables, table), json={}, timeout=10).json()
        held = {b["role"] for b in policy.get("bindings", []) if account % unit in b["members"]}
        assert held == {"projects/test-project/roles/%s" % role_id}, (table, policy)
    granted = {(b["role"], m, (b.get("condition") or {}).get("expression")) for b in project_policy["bindings"]
               for m in b["members"]}
    assert not [g for g in granted if g[0] == "roles/bigquery.dataEditor"], granted
    instance = ('resource.type == "sqladmin.googleapis.com/Instance" && '
                'resource.name == "projects/test-project/instances/pg-%s"' % unique)
    clients = {(m, expression) for role, m, expression in granted if role == "roles/cloudsql.client"}
    assert clients == {(account % "mlfl", instance), (account % "graf", instance)}, clients


def test_inventories_hold_only_their_differences():
    """Defaults live once, in roles/common; an inventory that repeats one would drift from it unnoticed."""
    defaults = yaml.safe_load(DEFAULTS.read_text())
    for env in ENVIRONMENTS:
        repeated = {key: value for key, value in group_vars(env).items() if defaults.get(key) == value}
        assert repeated == {}, (env, repeated)
        assert set(group_vars(env)) >= {"mlops_env", "mlops_protected", "mlops_gcp_project", "mlops_gcp_region"}
    assert settings("prod")["mlops_protected"] is True and settings("staging")["mlops_protected"] is True
    assert settings("local")["mlops_gcp_auth_kind"] == "anonymous" and settings("local")["mlops_target"] == "local"
    assert all(settings(env)["mlops_gcp_api_endpoints"] == {} for env in ("dev", "staging", "prod"))
    # The secure defaults hold wherever an environment does not lower them on purpose.
    assert settings("prod")["mlops_cloudsql_deletion_protection"] and settings("staging")["mlops_cloudsql_backups"]


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_teardown_refuses_protected_environments(env):
    proc, recap = playbook("playbooks/teardown.yml", "-i", "inventories/%s" % env)
    assert proc.returncode != 0
    assert "is protected" in proc.stdout and recap["failed"] == 1 and recap["changed"] == 0


def test_site_converges_and_second_run_writes_nothing(bigquery, storage, unique, tmp_path):
    """inventories/local with the endpoints pointed at this test's proxies and its own names; the outputs for
    scripts are written (not in check mode), once."""
    outputs = tmp_path / "outputs"
    extra = json.dumps({"mlops_gcp_project": "test-project",
                        "mlops_gcp_api_endpoints": {"bigquery": bigquery.url, "storage": storage.url},
                        "mlops_bigquery_dataset": "site_" + unique,
                        "mlops_mlflow_artifacts_bucket": "site-" + unique, "mlops_outputs_dir": str(outputs)})
    args = ("site.yml", "-i", "inventories/local", "-e", extra)

    proc, recap = playbook(*args, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap["changed"] == 3 + 3 and bigquery.writes() == [] and storage.writes() == []  # tables, outputs
    assert not outputs.exists(), "a check run writes no outputs"

    proc, recap = playbook(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap["changed"] == 3 + 3
    assert len(bigquery.writes()) == 6 and len(storage.writes()) == 1  # dataset + 5 tables, bucket
    assert "Serving API: http://127.0.0.1:8080 serving models:/diabetes-progression@champion" in proc.stdout
    written = json.loads((outputs / "local.json").read_text())
    assert written["MLOPS_DATASET"] == "site_" + unique and written["BIGQUERY_API_ENDPOINT"] == bigquery.url
    shell = subprocess.run(["bash", "-c", "set -a; . %s; echo \"$MLOPS_PROJECT $MLFLOW_TRACKING_URI\"" % (outputs / "local.env")],
                           capture_output=True, text=True, check=True)
    assert shell.stdout.split() == ["test-project", "http://127.0.0.1:5000"]
    assert {(outputs / name).stat().st_mode & 0o777 for name in ("local.env", "local.json")} == {0o600}

    bigquery.clear()
    storage.clear()
    proc, recap = playbook(*args, "--diff")
    assert proc.returncode == 0 and recap["changed"] == 0, proc.stdout
    assert bigquery.writes() == [] and storage.writes() == []
    assert len(bigquery.requests) == 6 and len(storage.requests) == 1, "one read per resource"


def test_a_schema_change_that_loses_rows_is_asked_for_per_table(bigquery, storage, unique, tmp_path):
    """Retyping a feature column cannot be done in place: site.yml fails naming the rows; the table is re-created
    only when listed for that run, and on a protected environment only with the project ID confirmed."""
    base = {"mlops_gcp_project": "test-project", "mlops_outputs_dir": str(tmp_path),
            "mlops_gcp_api_endpoints": {"bigquery": bigquery.url, "storage": storage.url},
            "mlops_bigquery_dataset": "schema_" + unique, "mlops_mlflow_artifacts_bucket": "schema-" + unique}
    features = settings("local")["mlops_features"]

    def site(*args, **extra):
        return playbook("site.yml", "-i", "inventories/local", "--skip-tags", "preflight",
                        "-e", json.dumps(dict(base, **extra)), *args)

    assert site()[0].returncode == 0
    retyped = [dict(f, type="STRING") if f["name"] == "bmi" else f for f in features]
    proc, recap = site(mlops_features=retyped)
    assert proc.returncode != 0 and recap["failed"] == 1
    assert "column bmi would change type from FLOAT to STRING" in proc.stdout
    assert "-e mlops_bigquery_recreate_tables=offline_features" in proc.stdout and "all 0 rows" in proc.stdout

    bigquery.clear()
    proc, recap = site("--check", mlops_features=retyped, mlops_bigquery_recreate_tables=["offline_features"])
    assert proc.returncode == 0 and "ALL 0 ROWS (0 BYTES) OF THE TABLE WOULD BE LOST" in proc.stderr, proc.stderr
    assert bigquery.writes() == []

    protected = dict(mlops_features=retyped, mlops_bigquery_recreate_tables=["offline_features"], mlops_protected=True)
    proc, recap = site(**protected)
    assert proc.returncode != 0 and "-e mlops_bigquery_recreate_confirm=test-project" in proc.stdout
    assert bigquery.writes() == []
    proc, recap = site(mlops_bigquery_recreate_confirm="test-project", **protected)
    assert proc.returncode == 0, proc.stdout
    assert [method for method, path in bigquery.writes() if "offline_features" in path] == ["DELETE"]
    assert site(mlops_features=retyped)[1]["changed"] == 0


def test_site_on_gcp_converges_against_the_stand_ins(bigquery, storage, fake_gcp, unique, tmp_path):
    """inventories/dev (target gcp) with every API pointed at the stand-ins: APIs, service accounts and
    their grants, Cloud SQL, the generated passwords, BigQuery and the buckets, the images built by Cloud
    Build, the migration job run once, MLflow, serving and Grafana on Cloud Run, the scheduled drift job;
    then a no-op run with zero writes, and teardown."""
    units = ("mlflow", "serving", "grafana", "monitoring", "build", "scheduler")
    extra = json.dumps({
        "mlops_gcp_project": "test-project", "mlops_gcp_auth_kind": "anonymous",
        "mlops_gcp_api_endpoints": dict(fake_gcp.endpoints, bigquery=bigquery.url, storage=storage.url),
        "mlops_bigquery_dataset": "gcp_" + unique, "mlops_mlflow_artifacts_bucket": "gcp-" + unique,
        "mlops_build_source_bucket": "src-" + unique, "mlops_artifact_registry_repository": "repo-" + unique,
        "mlops_cloudsql_instance": "pg-" + unique, "mlflow_database_password_secret": "mlflow-db-" + unique,
        "grafana_database_password_secret": "grafana-db-" + unique,
        "grafana_admin_password_secret": "grafana-admin-" + unique,
        "mlops_service_accounts": {unit: "%s-%s" % (unit[:4], unique) for unit in units},
        "mlops_outputs_dir": str(tmp_path),
    })
    args = ("site.yml", "-i", "inventories/dev", "-e", extra)
    stand_ins = (bigquery, storage, fake_gcp)
    fake_gcp.apis["cloudbuild"].storage_url = storage.url  # builds check that their uploaded source exists
    run = "%s/v2/projects/test-project/locations/europe-west1" % fake_gcp.endpoints["run"]
    try:
        proc, recap = playbook(*args, "--check")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert recap["changed"] >= 10, proc.stdout
        assert [s.writes() for s in stand_ins] == [[], [], []], "a check run writes nothing"

        proc, recap = playbook(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        user = fake_gcp.calls(method="POST", path=r"sqladmin/.*/instances/pg-%s/users$" % unique)
        secret = fake_gcp.calls(method="POST", path=r"secretmanager/.*/secrets/mlflow-db-%s:addVersion" % unique)
        assert len(user) == 2 and len(secret) == 1, "one generated password each, given to the database users"
        policy = requests.post("%s/v3/projects/test-project:getIamPolicy" % fake_gcp.endpoints["cloudresourcemanager"],
                               json={"options": {"requestedPolicyVersion": 3}}, timeout=10).json()
        assert_least_privilege_for_data(fake_gcp, bigquery, policy, unique)

        assert len(fake_gcp.calls(method="POST", path=r"cloudbuild/.*/builds$")) == 4, "four images built"
        assert len(fake_gcp.calls(method="POST", path=r"run/.*/jobs/mlflow-migrate:run$")) == 1, "migrated once"
        # Grafana's database is restricted to Grafana's user by a job running as Grafana's account and user.
        assert len(fake_gcp.calls(method="POST", path=r"run/.*/jobs/grafana-db-setup:run$")) == 1
        setup = requests.get("%s/jobs/grafana-db-setup" % run, timeout=10).json()["template"]["template"]
        setup_env = {e["name"]: e.get("value") for e in setup["containers"][0]["env"]}
        assert setup["containers"][0]["args"] == ["isolate"] and setup_env["DB_USER"] == "grafana", setup
        assert setup["serviceAccount"] == "graf-%s@test-project.iam.gserviceaccount.com" % unique
        services = {name: requests.get("%s/services/%s" % (run, name), timeout=10).json()
                    for name in ("mlflow", "serving", "grafana")}
        for name, service in services.items():
            assert service["terminalCondition"]["state"] == "CONDITION_SUCCEEDED", service
            image = service["template"]["containers"][0]["image"]
            assert "/repo-%s/" % unique in image and "@sha256:" in image, (name, image)
        serving_env = {e["name"]: e.get("value") for e in services["serving"]["template"]["containers"][0]["env"]}
        assert serving_env["MLFLOW_TRACKING_URI"] == services["mlflow"]["uri"]
        assert serving_env["MODEL_ALLOW_PICKLE"] == "false"  # only skops models load by default
        invokers = requests.get("%s/services/mlflow:getIamPolicy" % run, timeout=10).json()
        assert {"role": "roles/run.invoker",
                "members": ["serviceAccount:serv-%s@test-project.iam.gserviceaccount.com" % unique]} \
            in invokers["bindings"], "only the serving API may call MLflow"
        drift = requests.get("%s/jobs/drift" % run, timeout=10).json()["template"]["template"]["containers"][0]
        drift_env = {e["name"]: e.get("value") for e in drift["env"]}
        # The job reads the features, the label and the task from the tables, not from its environment.
        assert "DRIFT_FEATURES" not in drift_env and "DRIFT_TASK_TYPE" not in drift_env, drift_env
        assert drift_env["DRIFT_DATASET"] == "gcp_" + unique
        schedule = requests.get("%s/v1/projects/test-project/locations/europe-west1/jobs/drift"
                                % fake_gcp.endpoints["cloudscheduler"], timeout=10).json()
        assert schedule["httpTarget"]["uri"].endswith("/jobs/drift:run")
        # The outputs name every URL (read back from Cloud Run) and no secret.
        outputs = json.loads((tmp_path / "dev.json").read_text())
        assert outputs["MLOPS_MLFLOW_URL"] == services["mlflow"]["uri"] == outputs["MLFLOW_TRACKING_URI"]
        assert outputs["MLOPS_SERVING_URL"] == services["serving"]["uri"]
        assert outputs["MLOPS_GRAFANA_URL"] == services["grafana"]["uri"]
        assert not [key for key in outputs if "PASSWORD" in key or "TOKEN" in key], outputs
        assert "gcloud run services proxy mlflow --region europe-west1" in proc.stdout

        for stand_in in stand_ins:
            stand_in.clear()
        proc, recap = playbook(*args, "--diff")
        assert proc.returncode == 0 and recap["changed"] == 0, proc.stdout
        assert not any(s.writes() for s in stand_ins)

        # One unit: the serving API and what it needs; MLflow's URL is read from Cloud Run, not redeployed.
        proc, recap = playbook(*args, "--tags", "serving")
        assert proc.returncode == 0 and recap["changed"] == 0, proc.stdout
        ran = set(re.findall(r"TASK \[([^\]]+)\]", proc.stdout))
        assert {"Enable the APIs", "Build the images", "Read MLflow's URL", "Deploy the serving API"} <= ran, ran
        assert not ran & {"Deploy MLflow", "Wait for the Cloud SQL instance", "Deploy the drift job",
                          "Finish deploying Grafana"}, ran
        assert not any(s.writes() for s in stand_ins)

        proc, recap = playbook("playbooks/teardown.yml", "-i", "inventories/dev", "-e", extra,
                               "-e", "mlops_teardown_confirm=test-project")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        instance = requests.get("%s/sql/v1beta4/projects/test-project/instances/pg-%s"
                                % (fake_gcp.endpoints["sqladmin"], unique), timeout=10)
        assert instance.status_code == 404
        assert requests.get("%s/services/serving" % run, timeout=10).status_code == 404
    finally:
        fake_gcp.apis["cloudbuild"].storage_url = None
