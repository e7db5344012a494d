"""deployml.mlops.mlflow_model (and mlflow_model_version) against a real MLflow server: the one the image's
entrypoint runs, on PostgreSQL, behind a recording proxy that proves what was written.

Then the same against MLflow's basic-auth app, directly and behind a Cloud Run-like IAM check that wants a
Google ID token (from the metadata server's stand-in) in X-Serverless-Authorization.
"""

from __future__ import annotations

import pytest

from tests.apps.mlflow_registry import (
    ADMIN, GUARDED, READER, model, new_version, rest, run_module, start_auth_mlflow, version_tags)
from tests.standins.iam_proxy import BearerProxy
from tests.standins.recorder import RecordingProxy

pytestmark = pytest.mark.xdist_group("apps")

API = "/api/2.0/mlflow"


@pytest.fixture
def mlflow(mlflow_server):
    """A recording proxy in front of the session's MLflow server, fresh for each test."""
    proxy = RecordingProxy(mlflow_server.url)
    yield proxy
    proxy.close()


def writes(proxy):
    return [(method, path.replace(API, "")) for method, path in proxy.writes()]


def mlflow_model(proxy, check=False, **args):
    return run_module("mlflow_model", dict(args, tracking_uri=proxy.url), check=check)


def test_create_then_a_second_run_changes_nothing_and_writes_nothing(mlflow, unique):
    name = "created-" + unique
    args = dict(name=name, description="Churn in the next 30 days", tags={"owner": "ds", "rows": 300})

    first = mlflow_model(mlflow, **args)
    assert first["rc"] == 0 and first["changed"], first["output"]
    assert writes(mlflow) == [("POST", "/registered-models/create")]  # description and tags in the same call
    assert first["registered_model"]["tags"] == {"owner": "ds", "rows": "300"}
    assert model(mlflow.target, name) == dict(description="Churn in the next 30 days",
                                              tags={"owner": "ds", "rows": "300"}, aliases={})

    mlflow.clear()
    second = mlflow_model(mlflow, **args)
    assert second["rc"] == 0 and not second["changed"] and "diff" not in second, second
    assert writes(mlflow) == [] and mlflow.requests  # it did read


def test_check_mode_predicts_the_change_and_its_diff_without_writing(mlflow, unique):
    name = "checked-" + unique
    one, two = new_version(mlflow.target, name, {"rmse": 1.0}), new_version(mlflow.target, name, {"rmse": 0.9})
    rest(mlflow.target, "POST", "/registered-models/alias", name=name, alias="champion", version=one)
    rest(mlflow.target, "POST", "/registered-models/set-tag", name=name, key="owner", value="ds")
    before = model(mlflow.target, name)
    args = dict(name=name, description="new", tags={"owner": "ml-platform"}, aliases={"champion": two})

    mlflow.clear()
    predicted = mlflow_model(mlflow, check=True, **args)
    assert predicted["rc"] == 0 and predicted["changed"], predicted["output"]
    assert writes(mlflow) == [] and model(mlflow.target, name) == before
    assert predicted["changed_fields"] == ["aliases", "description", "tags"]
    assert predicted["diff"] == dict(
        before=dict(name=name, description="", tags={"owner": "ds"}, aliases={"champion": one}),
        after=dict(name=name, description="new", tags={"owner": "ml-platform"}, aliases={"champion": two}))

    done = mlflow_model(mlflow, **args)  # the real run does what check mode said
    assert done["changed"] and done["diff"] == predicted["diff"]
    assert model(mlflow.target, name) == dict(description="new", tags={"owner": "ml-platform"},
                                              aliases={"champion": two})


def test_moving_an_alias_is_one_write_and_latest_is_the_newest_version(mlflow, unique):
    name = "aliased-" + unique
    versions = [new_version(mlflow.target, name, {"rmse": r}) for r in (1.0, 0.9, 0.8)]
    first = mlflow_model(mlflow, name=name, aliases={"champion": 1, "challenger": "latest"})
    assert first["changed"] and first["registered_model"]["aliases"] == {"champion": "1", "challenger": versions[2]}

    mlflow.clear()
    moved = mlflow_model(mlflow, name=name, aliases={"champion": "2"})  # challenger is kept: no purge_aliases
    assert moved["changed"] and moved["changed_fields"] == ["aliases"]
    assert writes(mlflow) == [("POST", "/registered-models/alias")]
    assert model(mlflow.target, name)["aliases"] == {"champion": "2", "challenger": "3"}
    served = rest(mlflow.target, "GET", "/registered-models/alias", name=name, alias="champion")
    assert served["model_version"]["version"] == "2"  # what the serving API resolves models:/name@champion to

    mlflow.clear()
    purged = mlflow_model(mlflow, name=name, aliases={"champion": "2"}, purge_aliases=True)
    assert purged["changed"] and writes(mlflow) == [("DELETE", "/registered-models/alias")]
    assert model(mlflow.target, name)["aliases"] == {"champion": "2"}


def test_purge_tags_removes_unlisted_tags_but_never_mlflows_own(mlflow, unique):
    name = "tagged-" + unique
    assert mlflow_model(mlflow, name=name, tags={"a": "1", "b": "2"})["changed"]
    rest(mlflow.target, "POST", "/registered-models/set-tag", name=name, key="mlflow.owner_hint", value="x")

    mlflow.clear()
    kept = mlflow_model(mlflow, name=name, tags={"a": "1"})
    assert not kept["changed"] and writes(mlflow) == []  # without purge_tags, b stays

    purged = mlflow_model(mlflow, name=name, tags={"a": "1"}, purge_tags=True)
    assert purged["changed"] and purged["diff"] == dict(before=dict(name=name, tags={"a": "1", "b": "2"}),
                                                        after=dict(name=name, tags={"a": "1"}))
    assert writes(mlflow) == [("DELETE", "/registered-models/delete-tag")]
    assert model(mlflow.target, name)["tags"] == {"a": "1", "mlflow.owner_hint": "x"}


def test_an_alias_to_a_missing_version_fails_before_any_write(mlflow, unique):
    name = "missing-" + unique
    new_version(mlflow.target, name, {"rmse": 1.0})
    new_version(mlflow.target, name, {"rmse": 0.9})
    before = model(mlflow.target, name)

    mlflow.clear()
    failed = mlflow_model(mlflow, name=name, description="changed", aliases={"champion": 2, "challenger": 9})
    assert failed["rc"] == 1 and not failed["changed"]
    assert failed["msg"] == ("registered model %s has no version 9 (aliases.challenger asks for it; its versions: "
                             "1, 2): register that version first, or fix aliases.challenger" % name)
    assert writes(mlflow) == [] and model(mlflow.target, name) == before

    nothing = mlflow_model(mlflow, name="never-" + unique, aliases={"champion": 1})
    assert nothing["rc"] == 1 and "does not exist, so it has no version 1 for aliases.champion" in nothing["msg"]
    assert writes(mlflow) == [] and model(mlflow.target, "never-" + unique) is None  # not even created

    invalid = mlflow_model(mlflow, name=name, aliases={"latest": 1})
    assert invalid["rc"] == 1 and "reserved by MLflow" in invalid["msg"] and writes(mlflow) == []


def test_absent_refuses_a_model_with_versions_unless_forced(mlflow, unique):
    name = "deleted-" + unique
    new_version(mlflow.target, name)
    rest(mlflow.target, "POST", "/registered-models/alias", name=name, alias="champion", version="1")

    mlflow.clear()
    refused = mlflow_model(mlflow, name=name, state="absent")
    assert refused["rc"] == 1 and writes(mlflow) == []
    assert "has 1 version(s) (1) and aliases champion -> 1" in refused["msg"] and "force: true" in refused["msg"]

    assert mlflow_model(mlflow, name=name, state="absent", force=True, check=True)["changed"]
    assert writes(mlflow) == [] and model(mlflow.target, name) is not None
    assert mlflow_model(mlflow, name=name, state="absent", force=True)["changed"]
    assert model(mlflow.target, name) is None
    again = mlflow_model(mlflow, name=name, state="absent", force=True)
    assert again["rc"] == 0 and not again["changed"]


def test_lost_answers_and_throttling_are_retried(mlflow, unique):
    """The create's answer is lost twice (the model was made the first time): the retry finds it."""
    name = "retried-" + unique
    mlflow.inject(503, 2, method="POST", forward=True)
    mlflow.inject(429, 1, method="GET")
    created = mlflow_model(mlflow, name=name, description="d", timeout=60)
    assert created["rc"] == 0 and created["changed"], created["output"]
    assert created["registered_model"]["description"] == "d"
    assert [m for m, _path in mlflow.requests].count("POST") == 3


def test_model_version_tags_and_latest(mlflow, unique):
    name = "version-tags-" + unique
    new_version(mlflow.target, name)
    latest = new_version(mlflow.target, name)
    args = dict(tracking_uri=mlflow.url, name=name, version="latest", tags={"review": "approved"})

    done = run_module("mlflow_model_version", args)
    assert done["changed"] and done["model_version"]["version"] == latest, done["output"]
    assert version_tags(mlflow.target, name, latest) == {"review": "approved"}
    mlflow.clear()
    assert not run_module("mlflow_model_version", args)["changed"] and writes(mlflow) == []

    missing = run_module("mlflow_model_version", dict(args, version="7"))
    assert missing["rc"] == 1 and "has no version 7" in missing["msg"] and writes(mlflow) == []


# -- MLflow's basic-auth, and the IAM check in front of it ---------------------------------------------------
@pytest.fixture(scope="module")
def auth_mlflow(postgres, storage_emulator, tmp_path_factory):
    server = start_auth_mlflow(postgres, storage_emulator, tmp_path_factory.mktemp("mlflow-model-auth"),
                               "mlflow_model_auth")
    yield server
    server.stop()


def test_basic_auth_credentials_from_options_or_mlflows_variables(auth_mlflow):
    args = dict(tracking_uri=auth_mlflow.url, name=GUARDED, aliases={"champion": 1})

    anonymous = run_module("mlflow_model", args)
    assert anonymous["rc"] == 1 and anonymous["status"] == 401
    assert "MLflow's basic-auth is on: set username and password" in anonymous["msg"]

    wrong = run_module("mlflow_model", dict(args, username="admin", password="not-the-password"))
    assert wrong["rc"] == 1 and "MLflow refused the password of user admin" in wrong["msg"]
    assert "not-the-password" not in wrong["output"]

    done = run_module("mlflow_model", args, env={"MLFLOW_TRACKING_USERNAME": ADMIN[0],
                                                 "MLFLOW_TRACKING_PASSWORD": ADMIN[1]})
    assert done["rc"] == 0 and done["registered_model"]["aliases"]["champion"] == "1", done["output"]
    assert ADMIN[1] not in done["output"]

    # The serving user may read the model (the no-op is allowed) but not move its alias.
    reader = dict(args, username=READER[0], password=READER[1])
    read = run_module("mlflow_model", reader)
    assert read["rc"] == 0 and read["changed"] is False, read["output"]
    denied = run_module("mlflow_model", dict(reader, aliases={"champion": 2}))
    assert denied["rc"] == 1 and denied["status"] == 403
    assert "MLflow user serving lacks the permission for this call" in denied["msg"]
    assert model(auth_mlflow.url, GUARDED, auth=ADMIN)["aliases"] == {"champion": "1"}


def test_behind_cloud_runs_iam_check_the_id_token_goes_in_x_serverless_authorization(auth_mlflow, metadata):
    gate = BearerProxy(auth_mlflow.url, verify=metadata.verify)
    try:
        args = dict(tracking_uri=gate.url, name=GUARDED, aliases={"champion": 2}, username=ADMIN[0],
                    password=ADMIN[1])
        refused = run_module("mlflow_model", args)
        assert refused["rc"] == 1 and refused["status"] == 401
        assert "wants a Google ID token: set google_id_token: true" in refused["msg"]

        moved = run_module("mlflow_model", dict(args, google_id_token=True), env=metadata.env())
        assert moved["rc"] == 0 and moved["changed"], moved["output"]
        assert [t.audience for t in metadata.tokens()] == [gate.url]  # one token, for the service URL
        passed = [s for s in gate.snapshot() if s.status == 200]
        assert passed and all(s.forwarded == "Basic" for s in passed)  # MLflow got the basic credentials
        assert model(auth_mlflow.url, GUARDED, auth=ADMIN)["aliases"] == {"champion": "2"}

        token = metadata.tokens()[0].token
        given = run_module("mlflow_model", dict(args, id_token=token, aliases={"champion": 1}))
        assert given["rc"] == 0 and given["changed"] and token not in given["output"]
    finally:
        gate.close()
