"""playbooks/promote.yml against a real MLflow server (behind a recording proxy): a worse candidate is refused
with the comparison printed and the refusal recorded, a better one takes the alias with the decision recorded on
it, check mode moves nothing, and a re-run finds nothing to do."""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.apps.conftest import bigquery_client, table_spec
from tests.apps.mlflow_registry import (
    ADMIN, API, GUARDED, model, new_version, rest, start_auth_mlflow, version_tags)
from tests.conftest import PROJECT, ROOT
from tests.standins.iam_proxy import BearerProxy
from tests.standins.recorder import RecordingProxy

pytestmark = pytest.mark.xdist_group("apps")

BIN = Path(sys.executable).parent
METRICS = [{"name": "rmse", "goal": "minimize", "tolerance": 0.02},
           {"name": "r2", "goal": "maximize", "relative_tolerance": 0.05}]


@pytest.fixture
def mlflow(mlflow_server):
    proxy = RecordingProxy(mlflow_server.url)
    yield proxy
    proxy.close()


class Dataset:
    """A dataset of the BigQuery emulator of the test's own, with the role's promotions and drift_metrics tables."""

    def __init__(self, endpoint, dataset_id):
        self.endpoint, self.dataset_id = endpoint, dataset_id
        self.client = bigquery_client(endpoint)

    def create(self, *tables):
        from google.cloud import bigquery as bq

        self.client.create_dataset(bq.Dataset("%s.%s" % (PROJECT, self.dataset_id)), exists_ok=True, retry=None)
        for table_id in tables:
            spec = table_spec(table_id)
            table = bq.Table("%s.%s.%s" % (PROJECT, self.dataset_id, table_id),
                             schema=[bq.SchemaField.from_api_repr(column) for column in spec["schema"]])
            self.client.create_table(table, retry=None, timeout=30)

    def rows(self, table_id):
        return [dict(row) for row in self.client.query(
            "SELECT * FROM `%s.%s.%s`" % (PROJECT, self.dataset_id, table_id)).result()]

    @property
    def settings(self):
        return {"mlops_gcp_api_endpoints": {"bigquery": self.endpoint}, "mlops_bigquery_dataset": self.dataset_id,
                "mlops_gcp_project": PROJECT}


@pytest.fixture
def dataset(bigquery_emulator, unique):
    created = Dataset(bigquery_emulator, "promote_" + unique)
    created.create("promotions", "drift_metrics")
    return created


def promote(proxy, name, *args, inventory="inventories/local", env=None, dataset=None, **settings):
    """ansible-playbook playbooks/promote.yml with MLflow at the proxy and BigQuery's promotions table in the
    dataset; (returncode, output)."""
    settings = dict({"mlops_promotion_tracking_uri": proxy.url, "mlops_model_name": name,
                     "mlops_promotion_metrics": METRICS}, **dict(dataset.settings if dataset else {}, **settings))
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GCE_METADATA_"))}
    environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    environ.update(env or {}, USER="release-manager", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([BIN / "ansible-playbook", "playbooks/promote.yml", "-i", inventory,
                           "-e", json.dumps(settings), *args], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=300, check=False)
    # The YAML callback wraps long lines: phrases are matched with their whitespace collapsed.
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def writes(proxy):
    return [(method, path.replace(API, "")) for method, path in proxy.writes()]


def champion_at(url, name, version):
    rest(url, "POST", "/registered-models/alias", name=name, alias="champion", version=version)


def test_a_worse_candidate_is_refused_with_the_comparison(mlflow, dataset, unique):
    name = "refused-" + unique
    champion = new_version(mlflow.target, name, {"rmse": 1.0, "r2": 0.80})
    candidate = new_version(mlflow.target, name, {"rmse": 1.5, "r2": 0.81})
    champion_at(mlflow.target, name, champion)

    mlflow.clear()
    code, output = promote(mlflow, name, "-e", "model_version=%s" % candidate, dataset=dataset)
    assert code != 0, output
    assert re.search(r"rmse\s+minimize\s+1\s+1\.5\s+\+0\.5\s+0\.02\s+worse", output), output
    assert re.search(r"r2\s+maximize\s+0\.8\s+0\.81\s+\+0\.01\s+0\.04\s+better", output), output
    assert re.search(r"metric\s+goal\s+champion v%s\s+candidate v%s" % (champion, candidate), output), output
    assert "rmse is worse by 0.5 (1 -> 1.5; minimize allows 0.02)" in output
    assert "champion did not move" in output
    assert model(mlflow.target, name)["aliases"] == {"champion": champion}
    # The refusal is recorded on the candidate, and that is the only write.
    assert writes(mlflow) and set(writes(mlflow)) == {("POST", "/model-versions/set-tag")}
    tags = version_tags(mlflow.target, name, candidate)
    assert {k: tags[k] for k in ("promotion.decision", "promotion.alias", "promotion.decided_by",
                                 "promotion.from_version", "promotion.to_version")} == {
        "promotion.decision": "refused", "promotion.alias": "champion", "promotion.decided_by": "release-manager",
        "promotion.from_version": champion, "promotion.to_version": candidate}
    rows = json.loads(tags["promotion.metrics"])
    assert [(r["metric"], r["verdict"]) for r in rows] == [("rmse", "worse"), ("r2", "better")]
    # ... and in BigQuery, with the same decision ID.
    [record] = dataset.rows("promotions")
    assert record["decision_id"] == tags["promotion.decision_id"]
    assert {k: record[k] for k in ("decision", "model_name", "alias", "from_version", "to_version", "decided_by",
                                   "environment")} == {
        "decision": "refused", "model_name": name, "alias": "champion", "from_version": champion,
        "to_version": candidate, "decided_by": "release-manager", "environment": "local"}
    assert record["reasons"] == ["rmse is worse by 0.5 (1 -> 1.5; minimize allows 0.02)"]
    assert [(m["metric"], m["source"], m["current"], m["candidate"], m["verdict"]) for m in record["metrics"]] == [
        ("rmse", "run", 1.0, 1.5, "worse"), ("r2", "run", 0.8, 0.81, "better")]


def test_a_better_candidate_is_promoted_check_mode_first(mlflow, dataset, unique):
    name = "promoted-" + unique
    champion = new_version(mlflow.target, name, {"rmse": 1.0, "r2": 0.80})
    candidate = new_version(mlflow.target, name, {"rmse": 1.01, "r2": 0.79})  # within both tolerances
    champion_at(mlflow.target, name, champion)
    rest(mlflow.target, "POST", "/registered-models/alias", name=name, alias="challenger", version=candidate)

    mlflow.clear()
    code, output = promote(mlflow, name, "-e", "from_alias=challenger", "--check", "--diff", dataset=dataset)
    assert code == 0, output
    assert dataset.rows("promotions") == []
    assert "decision: promote version %s to champion" % candidate in output
    assert "would move from version %s to %s (check mode: nothing changed)" % (champion, candidate) in output
    assert writes(mlflow) == [] and model(mlflow.target, name)["aliases"]["champion"] == champion
    assert "promotion.decision" not in version_tags(mlflow.target, name, candidate)

    code, output = promote(mlflow, name, "-e", "from_alias=challenger", dataset=dataset)
    assert code == 0, output
    assert "%s@champion moved from version %s to %s." % (name, champion, candidate) in output
    assert model(mlflow.target, name)["aliases"] == {"champion": candidate, "challenger": candidate}
    tags = version_tags(mlflow.target, name, candidate)
    assert tags["promotion.decision"] == "promoted" and tags["promotion.from_version"] == champion
    assert tags["promotion.to_version"] == candidate and tags["promotion.decided_by"] == "release-manager"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", tags["promotion.decided_at"]), tags
    assert [r["verdict"] for r in json.loads(tags["promotion.metrics"])] == ["within tolerance", "within tolerance"]
    [record] = dataset.rows("promotions")
    assert (record["decision"], record["from_version"], record["to_version"]) == ("promoted", champion, candidate)
    assert record["decision_id"] == tags["promotion.decision_id"] and record["reasons"] == []

    mlflow.clear()
    code, output = promote(mlflow, name, "-e", "model_version=%s" % candidate, dataset=dataset)
    assert code == 0 and "Nothing to do: version %s already holds champion." % candidate in output, output
    assert writes(mlflow) == [] and len(dataset.rows("promotions")) == 1


def test_the_first_promotion_and_the_usage_errors(mlflow, dataset, unique):
    name = "first-" + unique
    version = new_version(mlflow.target, name, {"rmse": 2.0, "r2": 0.5})

    code, output = promote(mlflow, name)
    assert code != 0 and "Name the candidate with exactly one of -e model_version=N" in output, output
    code, output = promote(mlflow, name, "-e", "model_version=v2")
    assert code != 0 and "model_version is v2" in output and "Nothing was changed" in output, output
    code, output = promote(mlflow, name, "-e", "model_version=9")
    assert code != 0 and "has no version 9" in output, output
    code, output = promote(mlflow, name, "-e", "from_alias=challenger")
    assert code != 0 and "alias challenger of registered model %s points at no version" % name in output, output

    # No champion yet: nothing to compare with.
    code, output = promote(mlflow, name, "-e", "model_version=latest", dataset=dataset)
    assert code == 0, output
    assert re.search(r"rmse\s+minimize\s+-\s+2\s+-\s+-\s+no current value", output), output
    assert model(mlflow.target, name)["aliases"] == {"champion": version}
    assert version_tags(mlflow.target, name, version)["promotion.from_version"] == "none"
    assert [(r["from_version"], r["to_version"]) for r in dataset.rows("promotions")] == [(None, version)]


def test_a_promotion_whose_record_failed_is_recorded_by_the_re_run(mlflow, bigquery_emulator, unique):
    """The alias moved but the promotions table was missing: the run fails saying so, and a re-run once the table is
    there writes the decision kept in the version's tags, once."""
    name = "unrecorded-" + unique
    champion = new_version(mlflow.target, name, {"rmse": 1.0, "r2": 0.80})
    candidate = new_version(mlflow.target, name, {"rmse": 0.9, "r2": 0.85})
    champion_at(mlflow.target, name, champion)
    missing = Dataset(bigquery_emulator, "promote_" + unique)
    missing.create()  # the dataset without its tables

    code, output = promote(mlflow, name, "-e", "model_version=%s" % candidate, dataset=missing)
    assert code != 0 and "promotions" in output, output
    assert model(mlflow.target, name)["aliases"] == {"champion": candidate}
    decision_id = version_tags(mlflow.target, name, candidate)["promotion.decision_id"]

    missing.create("promotions")
    for _run in range(2):
        code, output = promote(mlflow, name, "-e", "model_version=%s" % candidate, dataset=missing)
        assert code == 0 and "Nothing to do" in output, output
        [record] = missing.rows("promotions")
        assert (record["decision_id"], record["decision"], record["from_version"], record["to_version"]) == (
            decision_id, "promoted", champion, candidate)
        assert [m["metric"] for m in record["metrics"]] == ["rmse", "r2"]


def quality_rows(name, windows):
    """drift_metrics rows of rmse and volume: windows is [(hours ago, version, alias, rmse, predictions)]."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
    rows = []
    for hours_ago, version, alias, rmse, predictions in windows:
        start = now - datetime.timedelta(hours=hours_ago)
        common = dict(window_start=start.isoformat(), window_end=(start + datetime.timedelta(hours=1)).isoformat(),
                      computed_at=now.isoformat(), model_name=name, model_version=version, model_alias=alias)
        rows += [dict(common, metric_type="rmse", value=rmse), dict(common, metric_type="volume", value=predictions)]
    return rows


def test_live_quality_from_serving_as_challenger_can_refuse_a_candidate(mlflow, dataset, unique):
    """The candidate's run looks better, but as a challenger on the same traffic it did worse: refused on the live
    metric. Only windows both versions served count, each weighing its predictions (RMSE as a root mean square)."""
    name = "live-" + unique
    champion = new_version(mlflow.target, name, {"rmse": 1.0, "r2": 0.80})
    candidate = new_version(mlflow.target, name, {"rmse": 0.9, "r2": 0.85})
    champion_at(mlflow.target, name, champion)
    rest(mlflow.target, "POST", "/registered-models/alias", name=name, alias="challenger", version=candidate)
    errors = dataset.client.insert_rows_json("%s.%s.drift_metrics" % (PROJECT, dataset.dataset_id), quality_rows(name, [
        (2, champion, "champion", 1.0, 100), (2, candidate, "challenger", 1.4, 300),
        (3, champion, "champion", 1.2, 100), (3, candidate, "challenger", 1.3, 100),
        (4, champion, "champion", 10.0, 100),  # the challenger did not serve then: not compared
        (400, champion, "champion", 0.1, 100), (400, candidate, "challenger", 0.1, 100),  # before the period read
    ]))
    assert errors == []
    metrics = METRICS + [{"name": "rmse", "source": "live", "goal": "minimize", "relative_tolerance": 0.1}]

    code, output = promote(mlflow, name, "-e", "from_alias=challenger", dataset=dataset,
                           mlops_promotion_metrics=metrics)
    assert code != 0, output
    current, new = math.sqrt((100 * 1.0 + 100 * 1.44) / 200), math.sqrt((300 * 1.96 + 100 * 1.69) / 400)
    assert re.search(r"rmse \(live\)\s+minimize\s+%.6g\s+%.6g\s+\+%.6g\s+%.6g\s+worse" % (
        current, new, new - current, current * 0.1), output), output
    assert model(mlflow.target, name)["aliases"]["champion"] == champion
    [record] = dataset.rows("promotions")
    live = [m for m in record["metrics"] if m["source"] == "live"]
    assert record["decision"] == "refused" and live[0]["candidate"] == pytest.approx(new)

    # A candidate that never served as a challenger is judged on its run alone.
    other = new_version(mlflow.target, name, {"rmse": 0.95, "r2": 0.85})
    code, output = promote(mlflow, name, "-e", "model_version=%s" % other, dataset=dataset,
                           mlops_promotion_metrics=metrics)
    assert code == 0 and re.search(r"rmse \(live\)\s+minimize\s+-\s+-\s+-\s+-\s+not served live", output), output
    assert model(mlflow.target, name)["aliases"]["champion"] == other


@pytest.fixture(scope="module")
def auth_mlflow(postgres, storage_emulator, tmp_path_factory):
    server = start_auth_mlflow(postgres, storage_emulator, tmp_path_factory.mktemp("promote-auth"),
                               "mlflow_promote_auth")
    yield server
    server.stop()


def test_on_gcp_the_admin_password_comes_from_secret_manager_and_an_id_token_passes_iam(
        auth_mlflow, metadata, fake_gcp, gcp_module, dataset, unique):
    """Target gcp (inventories/dev on the fake control plane): MLflow's basic-auth is on by default, so the admin's
    password is read from Secret Manager; the ID token for the service goes in X-Serverless-Authorization."""
    secret = "mlflow-admin-" + unique
    stored = gcp_module("secret", dict(project=PROJECT, auth_kind="anonymous", api_endpoints=fake_gcp.endpoints,
                                       name=secret, value=ADMIN[1]))
    assert stored["rc"] == 0, stored
    rest(auth_mlflow.url, "POST", "/registered-models/alias", auth=ADMIN, name=GUARDED, alias="champion", version="1")
    gate = BearerProxy(auth_mlflow.url, verify=metadata.verify)
    try:
        fake_gcp.clear()
        code, output = promote(gate, GUARDED, "-e", "model_version=2", inventory="inventories/dev", env=metadata.env(),
                               mlops_gcp_project=PROJECT, mlops_gcp_auth_kind="anonymous",
                               mlops_gcp_api_endpoints=dict(fake_gcp.endpoints, bigquery=dataset.endpoint),
                               mlops_bigquery_dataset=dataset.dataset_id, mlflow_admin_password_secret=secret,
                               mlops_promotion_metrics=[{"name": "rmse", "goal": "minimize"}])
        assert code == 0, output
        assert model(auth_mlflow.url, GUARDED, auth=ADMIN)["aliases"]["champion"] == "2"
        assert version_tags(auth_mlflow.url, GUARDED, "2", auth=ADMIN)["promotion.decision"] == "promoted"
        assert [r["to_version"] for r in dataset.rows("promotions")] == ["2"]
        assert ADMIN[1] not in output
        seen = gate.snapshot()
        assert seen and all(s.status == 200 and s.forwarded == "Basic" for s in seen), seen
        assert {t.audience for t in metadata.tokens()} == {gate.url}
        assert fake_gcp.writes() == []  # the secret was only read
    finally:
        gate.close()


def test_a_pipeline_serving_latest_or_a_stage_has_no_alias_to_gate(mlflow, unique):
    for settings, phrase in (({"mlops_model_alias": "latest"}, "serves the latest version"),
                             ({"mlops_model_stage": "Production"}, "serves the MLflow stage Production")):
        code, output = promote(mlflow, "gated-" + unique, "-e", "model_version=1", **settings)
        assert code != 0 and phrase in output and "Nothing was changed" in output, output
    assert writes(mlflow) == []
