"""playbooks/promote.yml against a real MLflow server (behind a recording proxy): a worse candidate is refused
with the comparison printed and the refusal recorded, a better one takes the alias with the decision recorded on
it, check mode moves nothing, and a re-run finds nothing to do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def promote(proxy, name, *args, inventory="inventories/local", env=None, **settings):
    """ansible-playbook playbooks/promote.yml with MLflow at the proxy; (returncode, output)."""
    settings = dict({"mlops_promotion_tracking_uri": proxy.url, "mlops_model_name": name,
                     "mlops_promotion_metrics": METRICS}, **settings)
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


def test_a_worse_candidate_is_refused_with_the_comparison(mlflow, unique):
    name = "refused-" + unique
    champion = new_version(mlflow.target, name, {"rmse": 1.0, "r2": 0.80})
    candidate = new_version(mlflow.target, name, {"rmse": 1.5, "r2": 0.81})
    champion_at(mlflow.target, name, champion)

    mlflow.clear()
    code, output = promote(mlflow, name, "-e", "model_version=%s" % candidate)
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


def test_a_better_candidate_is_promoted_check_mode_first(mlflow, unique):
    name = "promoted-" + unique
    champion = new_version(mlflow.target, name, {"rmse": 1.0, "r2": 0.80})
    candidate = new_version(mlflow.target, name, {"rmse": 1.01, "r2": 0.79})  # within both tolerances
    champion_at(mlflow.target, name, champion)
    rest(mlflow.target, "POST", "/registered-models/alias", name=name, alias="challenger", version=candidate)

    mlflow.clear()
    code, output = promote(mlflow, name, "-e", "from_alias=challenger", "--check", "--diff")
    assert code == 0, output
    assert "decision: promote version %s to champion" % candidate in output
    assert "would move from version %s to %s (check mode: nothing changed)" % (champion, candidate) in output
    assert writes(mlflow) == [] and model(mlflow.target, name)["aliases"]["champion"] == champion
    assert "promotion.decision" not in version_tags(mlflow.target, name, candidate)

    code, output = promote(mlflow, name, "-e", "from_alias=challenger")
    assert code == 0, output
    assert "%s@champion moved from version %s to %s." % (name, champion, candidate) in output
    assert model(mlflow.target, name)["aliases"] == {"champion": candidate, "challenger": candidate}
    tags = version_tags(mlflow.target, name, candidate)
    assert tags["promotion.decision"] == "promoted" and tags["promotion.from_version"] == champion
    assert tags["promotion.to_version"] == candidate and tags["promotion.decided_by"] == "release-manager"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", tags["promotion.decided_at"]), tags
    assert [r["verdict"] for r in json.loads(tags["promotion.metrics"])] == ["within tolerance", "within tolerance"]

    mlflow.clear()
    code, output = promote(mlflow, name, "-e", "model_version=%s" % candidate)
    assert code == 0 and "Nothing to do: version %s already holds champion." % candidate in output, output
    assert writes(mlflow) == []


def test_the_first_promotion_and_the_usage_errors(mlflow, unique):
    name = "first-" + unique
    version = new_version(mlflow.target, name, {"rmse": 2.0, "r2": 0.5})

    code, output = promote(mlflow, name)
    assert code != 0 and "Name the candidate with exactly one of -e model_version=N" in output, output
    code, output = promote(mlflow, name, "-e", "model_version=9")
    assert code != 0 and "has no version 9" in output, output
    code, output = promote(mlflow, name, "-e", "from_alias=challenger")
    assert code != 0 and "alias challenger of registered model %s points at no version" % name in output, output

    code, output = promote(mlflow, name, "-e", "model_version=latest")  # no champion yet: nothing to compare with
    assert code == 0, output
    assert re.search(r"rmse\s+minimize\s+-\s+2\s+-\s+-\s+no current value", output), output
    assert model(mlflow.target, name)["aliases"] == {"champion": version}
    assert version_tags(mlflow.target, name, version)["promotion.from_version"] == "none"


@pytest.fixture(scope="module")
def auth_mlflow(postgres, storage_emulator, tmp_path_factory):
    server = start_auth_mlflow(postgres, storage_emulator, tmp_path_factory.mktemp("promote-auth"),
                               "mlflow_promote_auth")
    yield server
    server.stop()


def test_on_gcp_the_admin_password_comes_from_secret_manager_and_an_id_token_passes_iam(
        auth_mlflow, metadata, fake_gcp, gcp_module, unique):
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
                               mlops_gcp_api_endpoints=fake_gcp.endpoints, mlflow_admin_password_secret=secret,
                               mlops_promotion_metrics=[{"name": "rmse", "goal": "minimize"}])
        assert code == 0, output
        assert model(auth_mlflow.url, GUARDED, auth=ADMIN)["aliases"]["champion"] == "2"
        assert version_tags(auth_mlflow.url, GUARDED, "2", auth=ADMIN)["promotion.decision"] == "promoted"
        assert ADMIN[1] not in output
        seen = gate.snapshot()
        assert seen and all(s.status == 200 and s.forwarded == "Basic" for s in seen), seen
        assert {t.audience for t in metadata.tokens()} == {gate.url}
        assert fake_gcp.writes() == []  # the secret was only read
    finally:
        gate.close()
