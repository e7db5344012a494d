"""What the serving API serves (an alias, `latest`, a legacy stage) and its challenger (split and shadow), against
a real MLflow server and the BigQuery emulator; the Challenger's failure handling on its own with stand-ins."""

from __future__ import annotations

import warnings
from collections import Counter
from types import SimpleNamespace

import pytest

from tests.apps.conftest import (churn_data, instance, model_requirements, register_churn_model, running_app,
                                 rows_of, serving_settings, wait_until)
from tests.apps.test_serving_api import metric

pytestmark = pytest.mark.xdist_group("apps")


def mlflow_client(url):
    from mlflow import MlflowClient

    return MlflowClient(url, registry_uri=url)


def transition(url, name, version, stage):
    """Move a version to a legacy stage (deprecated by MLflow since 2.9: the warning is expected here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # MLflow archives the stage's other versions only when moving to Production or Staging (else: an error).
        mlflow_client(url).transition_model_version_stage(name, version, stage,
                                                          archive_existing_versions=stage in ("Production", "Staging"))


def register_tenure_only_model(url, name, alias):
    """A classifier of tenure_months alone: its signature refuses the churn instances' other two features."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    frame, churned = churn_data()
    frame = frame[["tenure_months"]]
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    mlflow.set_experiment("serving-tests")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(frame, churned), name="model",
                                        input_example=frame.head(3), registered_model_name=name,
                                        serialization_format="skops", pip_requirements=model_requirements())
    version = str(info.registered_model_version)
    mlflow_client(url).set_registered_model_alias(name, alias, version)
    return version


def ready_version(client):
    return client.get("/ready").json()["model_version"]


# -- what is served ------------------------------------------------------------------------------------
def test_latest_follows_a_new_version_without_restart(
        mlflow_server, predictions_table, bigquery, bigquery_emulator, unique):
    name = "churn-latest-%s" % unique
    first = register_churn_model(mlflow_server.url, name, alias=None)  # no alias at all: latest needs none
    settings = serving_settings(mlflow_server.url, name, predictions_table, bigquery.url, model_alias="latest",
                                poll_interval=0.3)
    with running_app(settings) as client:
        before = client.post("/predict", json={"features": instance(tenure=2, charges=99.0)}).json()
        assert (before["model_version"], before["model_alias"]) == (first.version, "latest")
        second = register_churn_model(mlflow_server.url, name, alias=None, invert=True)
        wait_until(lambda: ready_version(client) == second.version, timeout=60, message="the new latest version")
        after = client.post("/predict", json={"features": instance(tenure=2, charges=99.0)}).json()
        assert (after["model_version"], after["model_alias"]) == (second.version, "latest")
        assert after["prediction"] != before["prediction"]
        assert client.get("/model").json()["alias"] == "latest"
        assert client.app.state.manager.reloads == 1
    rows = rows_of(bigquery_emulator, predictions_table, 2)
    assert sorted((r["model_version"], r["model_alias"], r["served"]) for r in rows) == sorted(
        [(first.version, "latest", True), (second.version, "latest", True)])


def test_a_stage_is_followed_through_transitions(mlflow_server, predictions_table, bigquery, bigquery_emulator,
                                                 unique):
    name = "churn-stage-%s" % unique
    first = register_churn_model(mlflow_server.url, name, alias=None)
    second = register_churn_model(mlflow_server.url, name, alias=None, invert=True)
    transition(mlflow_server.url, name, first.version, "Production")
    transition(mlflow_server.url, name, second.version, "Staging")  # a newer version elsewhere is not served
    settings = serving_settings(mlflow_server.url, name, predictions_table, bigquery.url, model_stage="production",
                                poll_interval=0.3)
    with running_app(settings) as client:
        answer = client.post("/predict", json={"features": instance()}).json()
        assert (answer["model_version"], answer["model_alias"]) == (first.version, "stage:Production")
        assert client.get("/ready").json()["model_alias"] == "stage:Production"
        transition(mlflow_server.url, name, second.version, "Production")
        wait_until(lambda: ready_version(client) == second.version, timeout=60,
                   message="the version moved to Production")
        assert client.post("/predict", json={"features": instance()}).json()["model_version"] == second.version
        assert 'mlops_serving_model_info{model_alias="stage:Production",model_name="%s",model_version="%s"} 1.0' % (
            name, second.version) in client.get("/metrics").text
        # Nothing in the stage: the version served keeps serving, and /ready says why it is not followed.
        transition(mlflow_server.url, name, second.version, "Archived")
        wait_until(lambda: "no version of %s is in stage Production" % name in (
            client.app.state.manager.last_error or ""), timeout=60, message="the empty stage reported")
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["model_version"] == second.version
    rows = rows_of(bigquery_emulator, predictions_table, 2)
    assert {r["model_alias"] for r in rows} == {"stage:Production"}


# -- the challenger ------------------------------------------------------------------------------------
@pytest.fixture
def champion_and_challenger(mlflow_server, unique):
    """A model whose champion and challenger (trained on opposite labels) answer differently."""
    name = "churn-challenge-%s" % unique
    champion = register_churn_model(mlflow_server.url, name)
    challenger = register_churn_model(mlflow_server.url, name, alias="challenger", invert=True)
    return name, champion, challenger


def test_split_answers_a_fraction_from_the_challenger_and_logs_its_alias(
        mlflow_server, champion_and_challenger, predictions_table, bigquery, bigquery_emulator):
    name, champion, challenger = champion_and_challenger
    settings = serving_settings(mlflow_server.url, name, predictions_table, bigquery.url,
                                challenger_alias="challenger", challenger_mode="split", challenger_fraction=0.5)
    features = instance(tenure=2, charges=99.0)
    requests = 80
    with running_app(settings) as client:
        wait_until(lambda: client.get("/ready").json()["challenger"]["loaded"], timeout=60, message="challenger")
        answers = [client.post("/predict", json={"features": features}).json() for _i in range(requests)]
        text = client.get("/metrics").text
        model = client.get("/model").json()
    by_version = Counter((a["model_version"], a["model_alias"]) for a in answers)
    assert set(by_version) == {(champion.version, "champion"), (challenger.version, "challenger")}
    # Binomial(80, 0.5): outside [20, 60] about once in 10^5 runs.
    assert 20 <= by_version[(challenger.version, "challenger")] <= 60, by_version
    predictions = {a["model_version"]: a["prediction"] for a in answers}
    assert predictions[champion.version] != predictions[challenger.version]  # each answer is its own model's
    for alias, version in (("champion", champion.version), ("challenger", challenger.version)):
        assert metric(text, "mlops_serving_predictions_total", model_version=version,
                      model_alias=alias) == by_version[(version, alias)]
    assert metric(text, "mlops_serving_challenger_info", model_name=name, model_version=challenger.version,
                  model_alias="challenger", mode="split", fraction="0.5") == 1
    assert model["challenger"]["mode"] == "split" and model["challenger"]["fraction"] == 0.5
    rows = rows_of(bigquery_emulator, predictions_table, requests)
    assert len(rows) == requests
    assert Counter((r["model_version"], r["model_alias"]) for r in rows) == by_version
    assert all(r["served"] is True for r in rows)
    labels = {r["model_version"]: r["prediction_label"] for r in rows}
    assert labels[champion.version] == str(predictions[champion.version])


def test_shadow_returns_the_champion_and_logs_both_under_one_prediction_id(
        mlflow_server, champion_and_challenger, predictions_table, bigquery, bigquery_emulator):
    name, champion, challenger = champion_and_challenger
    settings = serving_settings(mlflow_server.url, name, predictions_table, bigquery.url,
                                challenger_alias="challenger", challenger_mode="shadow")
    features = instance(tenure=2, charges=99.0)
    with running_app(settings) as client:
        def challenger_loaded():
            ready = client.get("/ready").json()
            return ready if ready["challenger"]["loaded"] else None
        ready = wait_until(challenger_loaded, timeout=60, message="challenger")
        assert ready["challenger"] == {"alias": "challenger", "mode": "shadow", "fraction": None, "loaded": True,
                                       "model_version": challenger.version,
                                       "run_id": challenger.run_id, "loaded_at": ready["challenger"]["loaded_at"]}
        single = client.post("/predict", json={"features": features, "entity_id": "c-1"}).json()
        batch = client.post("/predict", json={"instances": [{"features": features}] * 3}).json()
        text = client.get("/metrics").text
    assert (single["model_version"], single["model_alias"]) == (champion.version, "champion")
    assert (batch["model_version"], batch["model_alias"]) == (champion.version, "champion")
    rows = rows_of(bigquery_emulator, predictions_table, 8)
    assert len(rows) == 8
    ids = [single["prediction_id"]] + [p["prediction_id"] for p in batch["predictions"]]
    for prediction_id in ids:
        pair = {r["served"]: r for r in rows if r["prediction_id"] == prediction_id}
        assert set(pair) == {True, False}, pair
        served, shadow = pair[True], pair[False]
        assert (served["model_version"], served["model_alias"]) == (champion.version, "champion")
        assert (shadow["model_version"], shadow["model_alias"]) == (challenger.version, "challenger")
        assert (shadow["features"], shadow["entity_id"], shadow["timestamp"]) == (
            served["features"], served["entity_id"], served["timestamp"])
        assert served["prediction_label"] == str(single["prediction"])
        assert shadow["prediction_label"] != served["prediction_label"]  # the challenger's own prediction
    assert metric(text, "mlops_serving_predictions_total", model_version=champion.version, model_alias="champion") == 4
    assert metric(text, "mlops_serving_shadow_predictions_total", model_version=challenger.version,
                  model_alias="challenger") == 4


def test_a_missing_or_unserviceable_challenger_leaves_the_champion_serving(
        mlflow_server, champion_and_challenger, predictions_table, bigquery, bigquery_emulator):
    name, champion, _challenger = champion_and_challenger
    settings = serving_settings(mlflow_server.url, name, predictions_table, bigquery.url, poll_interval=0.3,
                                challenger_alias="nobody", challenger_mode="split", challenger_fraction=1.0)
    with running_app(settings) as client:  # ready with the champion alone
        wait_until(lambda: client.app.state.challenger.manager.failures > 0, message="a failed challenger lookup")
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["challenger"]["loaded"] is False and "nobody" in ready.json()["challenger"]["error"]
        answer = client.post("/predict", json={"features": instance()})
        assert answer.status_code == 200 and answer.json()["model_alias"] == "champion"
        text = client.get("/metrics").text
        assert metric(text, "mlops_serving_challenger_failures_total", reason="not_loaded") == 1
        assert metric(text, "mlops_serving_challenger_loaded") == 0
        assert client.get("/health").json() == {"status": "ok"}

        # The alias now names a version whose signature refuses the champion's input: every request drawn for it
        # is answered by the champion, and counted.
        version = register_tenure_only_model(mlflow_server.url, name, "nobody")
        wait_until(lambda: client.get("/model").json()["challenger"]["model_version"] == version, timeout=60,
                   message="the challenger loaded")
        answers = [client.post("/predict", json={"features": instance()}) for _i in range(3)]
        assert all(a.status_code == 200 and a.json()["model_alias"] == "champion" for a in answers)
        # The champion's own client errors stay the champion's: the challenger does not see them.
        assert client.post("/predict", json={"features": {"tenure_months": 3}}).status_code == 422
        text = client.get("/metrics").text
        assert metric(text, "mlops_serving_challenger_failures_total", reason="invalid_input") == 3
        assert "unexpected feature" in client.get("/ready").json()["challenger"]["last_failure"]
    rows = rows_of(bigquery_emulator, predictions_table, 4)
    assert {(r["model_version"], r["model_alias"], r["served"]) for r in rows} == {(champion.version, "champion", True)}


def test_a_shadow_challenger_refusing_the_input_logs_only_the_champion(
        mlflow_server, champion_and_challenger, predictions_table, bigquery, bigquery_emulator):
    name, champion, _challenger = champion_and_challenger
    register_tenure_only_model(mlflow_server.url, name, "narrow")
    settings = serving_settings(mlflow_server.url, name, predictions_table, bigquery.url, challenger_alias="narrow")
    with running_app(settings) as client:
        wait_until(lambda: client.get("/ready").json()["challenger"]["loaded"], timeout=60, message="challenger")
        answer = client.post("/predict", json={"instances": [{"features": instance()}] * 2})
        assert answer.status_code == 200 and answer.json()["model_version"] == champion.version
        text = client.get("/metrics").text
    assert metric(text, "mlops_serving_challenger_failures_total", reason="invalid_input") == 1
    rows = rows_of(bigquery_emulator, predictions_table, 2)
    assert len(rows) == 2 and all(r["served"] is True and r["model_alias"] == "champion" for r in rows)


# -- the Challenger on its own -------------------------------------------------------------------------------
class StandInModel:
    """A LoadedModel's interface with one numeric column; predict_or_blame does what `behaviour` says."""

    def __init__(self, behaviour):
        from mlops_serving.model import Column

        self.columns = (Column("x", "double"),)
        self.domains = {}
        self.version = "7"
        self.run_id = "run"
        self.loaded_at = "now"
        self.behaviour = behaviour

    def predict_or_blame(self, instances, most=50):  # pylint: disable=unused-argument
        if isinstance(self.behaviour, Exception):
            raise self.behaviour
        if self.behaviour == "blame":
            return None, 0.0, {0: ValueError("bad x")}
        return ["out"] * len(instances), 1.0, {}


def stand_in_challenger(behaviour, mode="shadow", fraction=None, draw=None):
    from prometheus_client import CollectorRegistry
    from prometheus_client import Counter as PrometheusCounter

    from mlops_serving.challenger import Challenger

    manager = SimpleNamespace(current=None if behaviour is None else StandInModel(behaviour), alias="challenger",
                              last_error=None)
    failures = PrometheusCounter("failures", "test", ["reason"], registry=CollectorRegistry())
    return Challenger(manager, mode, fraction, failures=failures, draw=draw)


def failures_of(challenger):
    return {s.labels["reason"]: s.value for m in challenger.failures.collect() for s in m.samples
            if s.name.endswith("_total")}


@pytest.mark.parametrize("behaviour, reason", [
    (None, "not_loaded"),
    ("blame", "model_input"),
    (RuntimeError("the model crashed"), "model_output"),
    (MemoryError(), "model_output"),
])
def test_challenger_failures_are_counted_never_raised(behaviour, reason):
    challenger = stand_in_challenger(behaviour)
    assert challenger.predict([{"x": 1.0}]) is None
    assert failures_of(challenger) == {reason: 1.0}
    assert challenger.describe()["loaded"] is (behaviour is not None)


def test_challenger_refuses_what_its_signature_does_not_take_and_predicts_the_rest():
    challenger = stand_in_challenger("ok")
    assert challenger.predict([{"x": 1.0}, {"x": "one"}]) is None
    assert failures_of(challenger) == {"invalid_input": 1.0}
    assert "instance 1: expected a number" in challenger.describe()["last_failure"]
    model, outputs, latency = challenger.predict([{"x": 1.0}, {"x": 2}])
    assert (model.version, outputs, latency) == ("7", ["out", "out"], 1.0)


def test_split_draw_decides_per_request():
    draws = iter([0.05, 0.5, 0.0999])
    challenger = stand_in_challenger("ok", mode="split", fraction=0.1, draw=lambda: next(draws))
    assert [challenger.answers() for _i in range(3)] == [True, False, True]
    assert not stand_in_challenger("ok", mode="shadow").answers()


# -- make local: the inventory's selection reaches the local serving process -----------------------------------
def test_local_serving_gets_the_inventorys_stage_and_challenger(tmp_path):
    from mlops_serving.config import Settings
    from tests.standins import services

    default = services.serving_env(services.local_settings())
    assert {k: default[k] for k in ("MODEL_STAGE", "CHALLENGER_ALIAS", "CHALLENGER_MODE", "CHALLENGER_FRACTION")} == {
        "MODEL_STAGE": "", "CHALLENGER_ALIAS": "", "CHALLENGER_MODE": "", "CHALLENGER_FRACTION": ""}
    inventory = tmp_path / "mine.yml"
    inventory.write_text("all:\n  vars:\n    mlops_target: local\n    mlops_model_stage: Staging\n"
                         "    mlops_challenger: {alias: challenger, mode: split, fraction: 0.25}\n")
    settings = services.local_settings(inventory=inventory)
    env = services.serving_env(settings)
    assert (env["MODEL_STAGE"], env["CHALLENGER_ALIAS"], env["CHALLENGER_MODE"], env["CHALLENGER_FRACTION"]) == (
        "Staging", "challenger", "split", "0.25")
    assert services.serving_settings(settings)["CHALLENGER_FRACTION"] == "0.25"  # a change restarts the API
    read = Settings.from_env(env)
    assert (read.model_uri, read.challenger_uri, read.challenger_fraction) == (
        "models:/diabetes-progression/Staging", "models:/diabetes-progression@challenger", 0.25)
