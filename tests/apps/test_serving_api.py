"""The serving API against a real MLflow server (a registered scikit-learn model) and the BigQuery emulator."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.apps.conftest import (churn_data, instance, register_churn_model, running_app, serving_settings, table_rows,
                                 wait_until)

pytestmark = pytest.mark.xdist_group("apps")


def reference_model(tracking_uri, name, version):
    import mlflow

    return mlflow.pyfunc.load_model("models:/%s/%s" % (name, version))


def reference_predictions(tracking_uri, model, features):
    import pandas as pd

    frame = pd.DataFrame(features)[["tenure_months", "monthly_charges", "contract_type"]]
    frame["tenure_months"] = frame["tenure_months"].astype("int64")
    frame["monthly_charges"] = frame["monthly_charges"].astype("float64")
    pyfunc = reference_model(tracking_uri, model.name, model.version)
    raw = pyfunc.get_raw_model()
    proba = raw.predict_proba(frame)[:, 1] if hasattr(raw, "predict_proba") else None
    return list(pyfunc.predict(frame)), proba


def metric(text, name, **labels):
    """The value of one sample of the Prometheus text exposition, or None."""
    wanted = ",".join('%s="%s"' % item for item in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = ",".join(sorted(part for part in (match.group(2) or "").split(",") if part))
        if found == wanted:
            return float(match.group(3))
    return None


# -- health, readiness, model --------------------------------------------------------------------------
def test_health_ready_and_model_before_a_model_is_loaded(mlflow_server, predictions_table, bigquery):
    settings = serving_settings(mlflow_server.url, "no-such-model", predictions_table, bigquery.url)
    from fastapi.testclient import TestClient
    from mlops_serving import create_app

    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        wait_until(lambda: client.app.state.manager.failures > 0, message="a failed load")
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
        assert ready.json()["detail"]["ready"] is False
        assert "no-such-model" in ready.json()["detail"]["error"]
        assert client.get("/model").status_code == 503
        refused = client.post("/predict", json={"features": instance()})
        assert refused.status_code == 503 and "not loaded yet" in refused.json()["detail"]
        text = client.get("/metrics").text
        assert metric(text, "mlops_serving_model_loaded") == 0
        assert metric(text, "mlops_serving_model_load_failures_total") >= 1


def test_ready_and_model_info(serving, registered_model):
    ready = serving.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "model_name": registered_model.name,
                            "model_version": registered_model.version, "model_alias": "champion"}
    info = serving.get("/model").json()
    assert (info["name"], info["version"], info["alias"], info["run_id"]) == (
        registered_model.name, registered_model.version, "champion", registered_model.run_id)
    inputs = info["signature"]["inputs"]  # JSON objects, not a JSON string inside JSON
    assert [(c["name"], c["type"]) for c in inputs] == [
        ("tenure_months", "long"), ("monthly_charges", "double"), ("contract_type", "string")]
    assert datetime.fromisoformat(info["loaded_at"]) > datetime.now(timezone.utc) - timedelta(minutes=5)


# -- predict -------------------------------------------------------------------------------------------
def test_predict_one_instance(serving, registered_model, mlflow_server):
    features = instance(tenure=2, charges=99.0, contract="month_to_month")
    response = serving.post("/predict", json={"features": features, "entity_id": "customer-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert uuid.UUID(body["prediction_id"]).version == 4
    assert (body["model_name"], body["model_version"], body["model_alias"]) == (
        registered_model.name, registered_model.version, "champion")
    expected, proba = reference_predictions(mlflow_server.url, registered_model, [features])
    assert body["prediction"] == expected[0]
    assert body["probability"] == pytest.approx(proba[0])


def test_predict_a_batch_keeps_the_order(serving, registered_model, mlflow_server):
    frame, _labels = churn_data(rows=20, seed=7)
    batch = frame.to_dict(orient="records")
    response = serving.post("/predict", json={"instances": [{"features": f, "entity_id": "e%d" % i}
                                                            for i, f in enumerate(batch)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == registered_model.version and body["model_name"] == registered_model.name
    ids = [p["prediction_id"] for p in body["predictions"]]
    assert len(set(ids)) == 20
    expected, proba = reference_predictions(mlflow_server.url, registered_model, batch)
    assert [p["prediction"] for p in body["predictions"]] == expected
    assert [p["probability"] for p in body["predictions"]] == pytest.approx(list(proba))
    assert len(set(expected)) == 2  # the batch holds both classes: the order check can fail


def test_integral_numbers_are_accepted_for_integer_and_number_features(serving):
    response = serving.post("/predict", json={"features": instance(tenure=12.0, charges=70)})
    assert response.status_code == 200, response.text


def test_predictions_are_logged_with_the_table_schema(serving, registered_model, predictions_table, bigquery_emulator):
    before = datetime.now(timezone.utc)
    sent = [instance(tenure=1, charges=110.25), instance(tenure=60, charges=25.5, contract="two_year")]
    body = serving.post("/predict", json={"instances": [{"features": sent[0], "entity_id": "customer-7"},
                                                        {"features": sent[1]}]}).json()
    rows = wait_until(lambda: len(table_rows(bigquery_emulator, predictions_table)) == 2 and
                      table_rows(bigquery_emulator, predictions_table), message="two rows in BigQuery")
    by_id = {row["prediction_id"]: row for row in rows}
    assert set(by_id) == {p["prediction_id"] for p in body["predictions"]}
    for index, prediction in enumerate(body["predictions"]):
        row = by_id[prediction["prediction_id"]]
        assert set(row) == {"prediction_id", "entity_id", "timestamp", "model_name", "model_version", "model_alias",
                            "features", "prediction", "prediction_label", "latency_ms", "served"}
        assert row["entity_id"] == ("customer-7" if index == 0 else None)
        assert before - timedelta(seconds=1) <= row["timestamp"] <= datetime.now(timezone.utc)
        assert (row["model_name"], row["model_version"], row["model_alias"]) == (
            registered_model.name, registered_model.version, "champion")
        assert row["features"] == sent[index]  # a JSON column: the client decodes it
        assert row["prediction_label"] == str(prediction["prediction"])
        assert row["prediction"] == pytest.approx(prediction["probability"])
        assert row["latency_ms"] > 0
        assert row["served"] is True  # the answer returned (a challenger's shadow row has false)


def test_a_regressor_logs_its_value_and_no_label(mlflow_server, predictions_table, bigquery, bigquery_emulator):
    model = register_churn_model(mlflow_server.url, "charges-regressor", kind="regressor")
    settings = serving_settings(mlflow_server.url, model.name, predictions_table, bigquery.url)
    with running_app(settings) as client:
        body = client.post("/predict", json={"features": instance(charges=50.0)}).json()
    assert "probability" not in body
    assert body["prediction"] == pytest.approx(600.0, rel=1e-6)
    row, = table_rows(bigquery_emulator, predictions_table)
    assert row["prediction"] == pytest.approx(600.0, rel=1e-6) and row["prediction_label"] is None


# -- validation ----------------------------------------------------------------------------------------
def _errors(response):
    assert response.status_code == 422, response.text
    return {tuple(e["loc"]): e for e in response.json()["detail"]}


def test_missing_extra_and_mistyped_features_are_named(serving):
    features = {"tenure_months": "twelve", "monthly_charges": True, "colour": "red"}
    errors = _errors(serving.post("/predict", json={"features": features}))
    assert set(errors) == {("body", "features", "tenure_months"), ("body", "features", "monthly_charges"),
                           ("body", "features", "contract_type"), ("body", "features", "colour")}
    assert errors[("body", "features", "tenure_months")]["type"] == "type_error"
    assert "expected an integer for feature 'tenure_months' (long), got str 'twelve'" in \
        errors[("body", "features", "tenure_months")]["msg"]
    assert "expected a number for feature 'monthly_charges'" in errors[("body", "features", "monthly_charges")]["msg"]
    assert errors[("body", "features", "contract_type")]["type"] == "missing"
    assert errors[("body", "features", "colour")]["type"] == "extra_forbidden"


def test_batch_errors_name_the_instance(serving):
    good = instance()
    bad = dict(instance(), tenure_months=12.5, contract_type=None)
    errors = _errors(serving.post("/predict", json={"instances": [{"features": good}, {"features": bad}]}))
    assert set(errors) == {("body", "instances", 1, "features", "tenure_months"),
                           ("body", "instances", 1, "features", "contract_type")}
    assert "must not be null" in errors[("body", "instances", 1, "features", "contract_type")]["msg"]


@pytest.mark.parametrize("body, location", [
    ({}, ("body",)),
    ({"features": instance(), "instances": [{"features": instance()}]}, ("body",)),
    ({"instances": [{"features": instance()}], "entity_id": "x"}, ("body",)),
    ({"instances": []}, ("body", "instances")),
    ({"instances": [{"entity_id": "x"}]}, ("body", "instances", 0, "features")),
    ({"features": instance(), "extra": 1}, ("body", "extra")),
    ({"features": [1, 2, 3]}, ("body", "features")),
])
def test_malformed_requests_are_422_with_the_location(serving, body, location):
    errors = _errors(serving.post("/predict", json=body))
    assert location in errors, errors


def test_too_many_instances(serving):
    errors = _errors(serving.post("/predict", json={"instances": [{"features": instance()}] * 101}))
    assert "at most 100 instances" in errors[("body", "instances")]["msg"]


def test_rejected_requests_are_not_logged(serving, predictions_table, bigquery_emulator):
    serving.post("/predict", json={"features": {"tenure_months": 1}})
    serving.post("/predict", json={"features": instance()})
    wait_until(lambda: len(table_rows(bigquery_emulator, predictions_table)) == 1, message="one row")
    assert serving.app.state.prediction_log.stats()["offered"] == 1


# -- metrics -------------------------------------------------------------------------------------------
def test_metrics_count_requests_latency_and_logging(serving, registered_model, predictions_table, bigquery_emulator):
    for _i in range(3):
        assert serving.post("/predict", json={"features": instance()}).status_code == 200
    assert serving.post("/predict", json={"instances": [{"features": instance()}] * 4}).status_code == 200
    assert serving.post("/predict", json={"features": {}}).status_code == 422
    wait_until(lambda: len(table_rows(bigquery_emulator, predictions_table)) == 7, message="7 rows")
    response = serving.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "mlops_serving_http_requests_total", path="/predict", method="POST", status="200") == 4
    assert metric(text, "mlops_serving_http_requests_total", path="/predict", method="POST", status="422") == 1
    assert metric(text, "mlops_serving_http_request_duration_seconds_count", path="/predict") == 5
    assert metric(text, "mlops_serving_http_request_duration_seconds_bucket", path="/predict", le="+Inf") == 5
    assert metric(text, "mlops_serving_model_latency_seconds_count") == 4
    assert metric(text, "mlops_serving_predictions_total", model_version=registered_model.version,
                  model_alias="champion") == 7
    assert metric(text, "mlops_serving_prediction_log_rows_written_total") == 7
    assert metric(text, "mlops_serving_prediction_log_rows_failed_total") == 0
    assert metric(text, "mlops_serving_prediction_log_rows_dropped_total") == 0
    assert metric(text, "mlops_serving_prediction_log_rows_rejected_total") == 0
    assert metric(text, "mlops_serving_prediction_log_queue_depth") == 0
    assert metric(text, "mlops_serving_prediction_log_queue_capacity") == 1000
    # One namespace, and no per-series creation timestamps.
    series = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert series and all(name.startswith("mlops_serving_") for name in series), series
    assert not [name for name in series if name.endswith("_created")], series
    assert metric(text, "mlops_serving_model_info", model_name=registered_model.name,
                  model_version=registered_model.version, model_alias="champion") == 1
