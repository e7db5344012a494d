"""The serving API loads only models whose loading runs no pickled code, unless MODEL_ALLOW_PICKLE=true.

Whoever can move the alias in MLflow chooses the model; a pickle (or a custom python_model) runs its code
when loaded. By default the app loads scikit-learn models saved with skops, with its own trusted types
(MODEL_TRUSTED_TYPES), and /ready names the flavour, the format and the opt-in for anything else.
"""

from __future__ import annotations

import contextlib
import operator
import time

import pytest

from tests.apps.conftest import (churn_data, instance, model_requirements, register_churn_model, serving_settings,
                                 wait_until)

pytestmark = pytest.mark.xdist_group("apps")


@contextlib.contextmanager
def started_app(settings):
    """The app with its lifespan running, without waiting for a model."""
    from fastapi.testclient import TestClient
    from mlops_serving import create_app

    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        yield client


def refusal(client):
    """/ready's answer once the first load has failed (or succeeded)."""
    manager = client.app.state.manager
    wait_until(lambda: manager.failures >= 1 or manager.current is not None, timeout=60, message="a load attempt")
    return client.get("/ready")


def ready(client, timeout=60):
    deadline = time.monotonic() + timeout
    while (response := client.get("/ready")).status_code != 200:
        assert time.monotonic() < deadline, response.json()
        time.sleep(0.1)
    return response.json()


def settings(mlflow_server, name, predictions_table, bigquery, **overrides):
    return serving_settings(mlflow_server.url, name, predictions_table, bigquery.url, poll_interval=0.3, **overrides)


def register_python_model(tracking_uri, name, marker):
    """A custom python_model standing in for a hostile one: loading it runs its code (writes `marker`)."""
    import mlflow
    import mlflow.pyfunc
    from mlflow import MlflowClient

    class WritesAFileWhenLoaded(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            with open(context.model_config["marker"], "w", encoding="utf-8") as handle:
                handle.write("code ran at load time")

        def predict(self, context, model_input, params=None):
            return [0] * len(model_input)

    frame, _churned = churn_data()
    model = WritesAFileWhenLoaded()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment("serving-tests")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=model, input_example=frame.head(3),
                                       model_config={"marker": str(marker)},
                                       registered_model_name=name, pip_requirements=model_requirements())
    MlflowClient(tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(
        name, "champion", str(info.registered_model_version))


def register_neg_model(tracking_uri, name):
    """A skops model holding `_operator.neg`, which skops does not trust by default; the model's MLmodel
    lists it in skops_trusted_types (MLflow itself would then load it)."""
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame, _churned = churn_data()
    features = frame[["tenure_months", "monthly_charges"]].astype("float64")
    pipeline = Pipeline([("negate", FunctionTransformer(operator.neg)), ("model", LinearRegression())])
    pipeline.fit(features, features["monthly_charges"] * 12.0)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment("serving-tests")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(pipeline, name="model", input_example=features.head(3),
                                        serialization_format="skops", skops_trusted_types=["_operator.neg"],
                                        registered_model_name=name, pip_requirements=model_requirements())
    MlflowClient(tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(
        name, "champion", str(info.registered_model_version))


def test_a_pickle_model_is_refused_on_ready_naming_the_flavour_format_and_opt_in(
        mlflow_server, predictions_table, bigquery, unique):
    name = "churn-pickle-%s" % unique
    register_churn_model(mlflow_server.url, name, serialization_format="pickle")
    with started_app(settings(mlflow_server, name, predictions_table, bigquery)) as client:
        response = refusal(client)
        assert response.status_code == 503, response.json()
        error = response.json()["detail"]["error"]
        assert "flavour sklearn, serialization_format pickle" in error, error
        assert "MODEL_ALLOW_PICKLE=true" in error and "serialization_format=\"skops\"" in error, error
        assert client.app.state.manager.current is None
        assert client.post("/predict", json={"features": instance()}).status_code == 503


def test_a_cloudpickle_model_is_refused_too(mlflow_server, predictions_table, bigquery, unique):
    name = "churn-cloudpickle-%s" % unique
    register_churn_model(mlflow_server.url, name, serialization_format="cloudpickle")
    with started_app(settings(mlflow_server, name, predictions_table, bigquery)) as client:
        response = refusal(client)
        assert response.status_code == 503
        assert "serialization_format cloudpickle" in response.json()["detail"]["error"]


def test_a_python_model_is_refused_and_its_code_never_runs(mlflow_server, predictions_table, bigquery, unique,
                                                           tmp_path):
    name = "custom-pyfunc-%s" % unique
    marker = tmp_path / "loaded"
    register_python_model(mlflow_server.url, name, marker)
    marker.unlink(missing_ok=True)  # log_model ran the model on its input example, here in the test
    with started_app(settings(mlflow_server, name, predictions_table, bigquery)) as client:
        response = refusal(client)
        assert response.status_code == 503
        error = response.json()["detail"]["error"]
        assert "python_model" in error and "MODEL_ALLOW_PICKLE=true" in error, error
    assert not marker.exists()


def test_the_opt_in_loads_a_pickle_model(mlflow_server, predictions_table, bigquery, unique):
    name = "churn-pickle-allowed-%s" % unique
    model = register_churn_model(mlflow_server.url, name, serialization_format="pickle")
    with started_app(settings(mlflow_server, name, predictions_table, bigquery, allow_pickle=True)) as client:
        assert ready(client)["model_version"] == model.version
        response = client.post("/predict", json={"features": instance()})
        assert response.status_code == 200 and response.json()["prediction"] in (0, 1)


def test_a_skops_model_is_loaded_by_skops_with_the_services_trusted_types(
        mlflow_server, predictions_table, bigquery, unique):
    from mlops_serving.model import SkopsModel

    name = "churn-skops-%s" % unique
    model = register_churn_model(mlflow_server.url, name)
    with started_app(settings(mlflow_server, name, predictions_table, bigquery)) as client:
        assert ready(client)["model_version"] == model.version
        current = client.app.state.manager.current
        assert current.pyfunc.metadata.flavors["sklearn"]["serialization_format"] == "skops"
        assert isinstance(current.pyfunc._model_impl, SkopsModel)  # pylint: disable=protected-access
        response = client.post("/predict", json={"features": instance()})
        assert response.status_code == 200 and 0.0 <= response.json()["probability"] <= 1.0


def test_skops_types_trusted_only_by_the_models_own_mlmodel_are_refused_until_configured(
        mlflow_server, predictions_table, bigquery, unique):
    name = "neg-skops-%s" % unique
    register_neg_model(mlflow_server.url, name)
    features = {"tenure_months": 3.0, "monthly_charges": 50.0}
    with started_app(settings(mlflow_server, name, predictions_table, bigquery)) as client:
        response = refusal(client)
        assert response.status_code == 503
        error = response.json()["detail"]["error"]
        assert "_operator.neg" in error and "MODEL_TRUSTED_TYPES" in error and "serialization_format skops" in error
    trusted = settings(mlflow_server, name, predictions_table, bigquery, trusted_types=("_operator.neg",))
    with started_app(trusted) as client:
        ready(client)
        response = client.post("/predict", json={"features": features})
        assert response.status_code == 200, response.json()
        assert response.json()["prediction"] == pytest.approx(600.0, rel=1e-6)


def test_the_settings_read_the_opt_in_and_the_trusted_types():
    from mlops_serving import Settings
    from mlops_serving.config import ConfigError

    base = {"MLFLOW_TRACKING_URI": "http://mlflow", "MODEL_NAME": "churn", "BIGQUERY_PROJECT": "p"}
    default = Settings.from_env(base)
    assert default.allow_pickle is False and default.trusted_types == ()
    configured = Settings.from_env(dict(base, MODEL_ALLOW_PICKLE="true", MODEL_TRUSTED_TYPES=" a.B, c.D ,"))
    assert configured.allow_pickle is True and configured.trusted_types == ("a.B", "c.D")
    with pytest.raises(ConfigError, match="MODEL_ALLOW_PICKLE must be true or false"):
        Settings.from_env(dict(base, MODEL_ALLOW_PICKLE="maybe"))
