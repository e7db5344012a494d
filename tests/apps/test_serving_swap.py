"""The served version follows the alias without a restart, and requests in flight during a swap succeed."""

from __future__ import annotations

import threading

import pytest

from tests.apps.conftest import instance, model_requirements, register_churn_model, running_app, serving_settings, table_rows, wait_until

pytestmark = pytest.mark.xdist_group("apps")


def test_alias_move_is_served_without_restart_and_in_flight_requests_succeed(
        mlflow_server, predictions_table, bigquery, bigquery_emulator, unique):
    from mlflow import MlflowClient

    name = "churn-swap-%s" % unique
    first = register_churn_model(mlflow_server.url, name)
    second = register_churn_model(mlflow_server.url, name, alias=None, invert=True)  # registered, not yet champion
    settings = serving_settings(mlflow_server.url, name, predictions_table, bigquery.url, poll_interval=0.3)
    features = instance(tenure=2, charges=99.0)
    with running_app(settings) as client:
        before = client.post("/predict", json={"features": features}).json()
        assert before["model_version"] == first.version
        first_model = client.app.state.manager.current

        results, stop = [], threading.Event()

        def hammer():
            while not stop.is_set():
                response = client.post("/predict", json={"instances": [{"features": features}] * 5})
                results.append((response.status_code, response.json().get("model_version")))

        threads = [threading.Thread(target=hammer) for _i in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(results) >= 8, message="requests before the swap")
            MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url).set_registered_model_alias(
                name, "champion", second.version)
            wait_until(lambda: any(v == second.version for _s, v in results[-4:]), timeout=60,
                       message="the new version served")
            seen = len(results)
            wait_until(lambda: len(results) >= seen + 8, message="requests after the swap")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert all(status == 200 for status, _v in results), [r for r in results if r[0] != 200][:5]
        versions = [v for _s, v in results]
        assert versions[0] == first.version and versions[-1] == second.version
        # No flapping back: the requests sent after the swap all report the new version.
        assert set(versions[-4:]) == {second.version}

        after = client.post("/predict", json={"features": features}).json()
        assert after["model_version"] == second.version
        assert after["prediction"] != before["prediction"]  # the inverted model answers the other class
        assert client.get("/model").json()["version"] == second.version
        assert client.get("/ready").json()["model_version"] == second.version
        assert client.app.state.manager.reloads == 1
        # A request that took the old model before the swap still completes with it.
        outputs, _latency = first_model.predict([features])
        assert outputs[0].value == before["prediction"]
        metrics = client.get("/metrics").text
        assert 'mlops_serving_model_info{model_alias="champion",model_name="%s",model_version="%s"} 1.0' % (
            name, second.version) in metrics
        assert "mlops_serving_model_reloads_total 1.0" in metrics
        total = sum(5 for _r in results) + 2
    rows = table_rows(bigquery_emulator, predictions_table)
    assert len(rows) == total
    assert {row["model_version"] for row in rows} == {first.version, second.version}


def test_a_version_that_cannot_be_served_keeps_the_current_one(mlflow_server, predictions_table, bigquery, unique):
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from sklearn.dummy import DummyClassifier

    name = "churn-unservable-%s" % unique
    good = register_churn_model(mlflow_server.url, name)
    with mlflow.start_run():  # no signature, no input example: its input cannot be validated
        info = mlflow.sklearn.log_model(DummyClassifier().fit(np.zeros((4, 1)), [0, 1, 0, 1]), name="model",
                                        registered_model_name=name,
                                        pip_requirements=model_requirements())
    settings = serving_settings(mlflow_server.url, name, predictions_table, bigquery.url, poll_interval=0.3)
    with running_app(settings) as client:
        MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url).set_registered_model_alias(
            name, "champion", str(info.registered_model_version))
        manager = client.app.state.manager
        wait_until(lambda: manager.failures >= 2, timeout=60, message="failed loads of the new version")
        assert "has no signature" in manager.last_error
        response = client.post("/predict", json={"features": instance()})
        assert response.status_code == 200 and response.json()["model_version"] == good.version
        assert client.get("/ready").status_code == 200
        assert client.get("/health").status_code == 200
        text = client.get("/metrics").text
        assert "mlops_serving_model_reloads_total 0.0" in text
        failures = [line for line in text.splitlines() if line.startswith("mlops_serving_model_load_failures_total ")]
        assert failures and float(failures[0].split()[1]) >= 2
