"""The serving app's parts on their own: settings, input validation, output mapping, the prediction log's
batching and error handling (with a stand-in BigQuery client object: no network here)."""

from __future__ import annotations

import json
import logging
import math
import threading

import numpy as np
import pandas as pd
import pytest
from google.api_core import exceptions

from mlops_serving import ConfigError, Settings
from mlops_serving.__main__ import JsonFormatter, main
from mlops_serving.config import ENVIRONMENT, describe
from mlops_serving.model import Column, ModelError, _output, _rows, check_value, columns_of, to_frame, validate_features
from mlops_serving.prediction_log import PredictionLogger, is_request_error

pytestmark = pytest.mark.xdist_group("apps")

BASE_ENV = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "MODEL_NAME": "churn", "BIGQUERY_PROJECT": "p"}


# -- settings ----------------------------------------------------------------------------------------------
def test_settings_defaults():
    settings = Settings.from_env(BASE_ENV)
    assert (settings.model_alias, settings.bigquery_dataset, settings.bigquery_table) == ("champion", "mlops", "predictions")
    assert settings.table_path == "p.mlops.predictions"
    assert settings.model_uri == "models:/churn@champion"
    assert (settings.batch_size, settings.queue_max_size, settings.flush_interval, settings.poll_interval) == (
        500, 10000, 1.0, 30.0)
    assert settings.bigquery_endpoint is None


def test_settings_from_every_variable():
    env = dict(BASE_ENV, MODEL_ALIAS="champion", MODEL_STAGE="production", CHALLENGER_ALIAS="challenger",
               CHALLENGER_MODE="split", CHALLENGER_FRACTION="0.25", MODEL_POLL_INTERVAL="0", BIGQUERY_DATASET="d",
               BIGQUERY_TABLE="t",
               BIGQUERY_API_ENDPOINT="http://127.0.0.1:9050", LOG_BATCH_SIZE="100", LOG_FLUSH_INTERVAL="0.5",
               LOG_QUEUE_MAX_SIZE="2000", LOG_MAX_RETRY_SECONDS="30", LOG_INSERT_TIMEOUT="3",
               LOG_SHUTDOWN_TIMEOUT="5", MAX_INSTANCES="50", MAX_BODY_BYTES="2048", MLFLOW_AUTH="google-id-token",
               MLFLOW_AUTH_AUDIENCE="https://mlflow-abc123-uc.a.run.app", MODEL_ALLOW_PICKLE="true",
               MODEL_TRUSTED_TYPES="a.B,c.D", MODEL_TASK="classification", MODEL_LABEL_TYPE="INTEGER",
               MODEL_POSITIVE_CLASS="1", MODEL_CLASSES="[0, 1]",
               MODEL_FEATURES='[{"name": "plan", "type": "STRING", "categories": ["basic", "premium"]}]')
    settings = Settings.from_env(env)
    assert settings == Settings(tracking_uri="http://mlflow:5000", model_name="churn", bigquery_project="p",
                                model_stage="Production", challenger_alias="challenger", challenger_mode="split",
                                challenger_fraction=0.25, poll_interval=0.0, bigquery_dataset="d", bigquery_table="t",
                                bigquery_endpoint="http://127.0.0.1:9050", batch_size=100, flush_interval=0.5,
                                queue_max_size=2000, max_retry_seconds=30.0, insert_timeout=3.0, shutdown_timeout=5.0,
                                max_instances=50, max_body_bytes=2048, mlflow_auth="google-id-token",
                                mlflow_auth_audience="https://mlflow-abc123-uc.a.run.app", allow_pickle=True,
                                trusted_types=("a.B", "c.D"), task="classification", label_type="INTEGER",
                                positive_class=1, classes=(0, 1),
                                features=[{"name": "plan", "categories": ["basic", "premium"]}])
    assert set(env) == set(ENVIRONMENT)  # every variable is read


# -- what is served: alias, latest or stage, and the challenger -----------------------------------------------
def test_model_selection_and_what_is_logged_as_model_alias():
    from mlops_serving.config import selector

    assert Settings.from_env(dict(BASE_ENV, MODEL_ALIAS="blue")).model_uri == "models:/churn@blue"
    latest = Settings.from_env(dict(BASE_ENV, MODEL_ALIAS="latest"))
    assert (latest.model_uri, selector(latest.model_alias, latest.model_stage)) == ("models:/churn/latest", "latest")
    staged = Settings.from_env(dict(BASE_ENV, MODEL_STAGE=" staging "))
    assert staged.model_stage == "Staging"  # MLflow's spelling, as MLflow matches stage names
    assert (staged.model_uri, selector(staged.model_alias, staged.model_stage)) == (
        "models:/churn/Staging", "stage:Staging")
    explicit = Settings.from_env(dict(BASE_ENV, MODEL_STAGE="Production", MODEL_ALIAS="champion"))
    assert explicit.model_stage == "Production"
    assert Settings.from_env(dict(BASE_ENV, MODEL_ALIAS="Latest")).model_alias == "latest"  # reserved in any case
    plain = Settings.from_env(BASE_ENV)
    assert (plain.model_stage, plain.challenger_alias, plain.challenger_uri) == (None, None, None)


def test_challenger_settings():
    shadow = Settings.from_env(dict(BASE_ENV, CHALLENGER_ALIAS="challenger"))
    assert (shadow.challenger_alias, shadow.challenger_mode, shadow.challenger_fraction) == (
        "challenger", "shadow", None)
    assert shadow.challenger_uri == "models:/churn@challenger"
    split = Settings.from_env(dict(BASE_ENV, CHALLENGER_ALIAS="LATEST", CHALLENGER_MODE="split",
                                   CHALLENGER_FRACTION="1"))
    assert (split.challenger_uri, split.challenger_fraction) == ("models:/churn/latest", 1.0)
    # A stage-served champion may be challenged by the version the champion alias names.
    staged = Settings.from_env(dict(BASE_ENV, MODEL_STAGE="Production", CHALLENGER_ALIAS="champion"))
    assert staged.challenger_alias == "champion"


@pytest.mark.parametrize("env, message", [
    ({"MODEL_STAGE": "None"}, "MODEL_STAGE must be one of Production, Staging"),
    ({"MODEL_STAGE": "Archived"}, "None and Archived hold no deployed version"),
    ({"MODEL_STAGE": "prod"}, "MODEL_STAGE must be one of"),
    ({"MODEL_STAGE": "Production", "MODEL_ALIAS": "blue"}, r"MODEL_STAGE \(Production\) and MODEL_ALIAS \(blue\)"),
    ({"MODEL_STAGE": "Production", "MODEL_ALIAS": "latest"}, "set one"),
    ({"CHALLENGER_ALIAS": "champion"}, "CHALLENGER_ALIAS must differ from MODEL_ALIAS"),
    ({"CHALLENGER_ALIAS": "c", "CHALLENGER_MODE": "canary"}, "CHALLENGER_MODE must be one of split, shadow"),
    ({"CHALLENGER_ALIAS": "c", "CHALLENGER_MODE": "split"}, "CHALLENGER_FRACTION must be more than 0 and at most 1"),
    ({"CHALLENGER_ALIAS": "c", "CHALLENGER_MODE": "split", "CHALLENGER_FRACTION": "0"}, "more than 0"),
    ({"CHALLENGER_ALIAS": "c", "CHALLENGER_MODE": "split", "CHALLENGER_FRACTION": "1.5"}, "at most 1"),
    ({"CHALLENGER_ALIAS": "c", "CHALLENGER_MODE": "split", "CHALLENGER_FRACTION": "-0.1"}, "more than 0"),
    ({"CHALLENGER_ALIAS": "c", "CHALLENGER_MODE": "split", "CHALLENGER_FRACTION": "nan"}, "finite number"),
    ({"CHALLENGER_ALIAS": "c", "CHALLENGER_MODE": "split", "CHALLENGER_FRACTION": "a tenth"},
     "CHALLENGER_FRACTION must be a number"),
    ({"CHALLENGER_ALIAS": "c", "CHALLENGER_FRACTION": "0.1"}, "CHALLENGER_FRACTION is for CHALLENGER_MODE=split"),
    ({"CHALLENGER_FRACTION": "0.1"}, "CHALLENGER_FRACTION is set but CHALLENGER_ALIAS is empty"),
    ({"MODEL_ALIAS": "stage:Production"}, "MODEL_ALIAS must be an MLflow alias name"),
    ({"CHALLENGER_ALIAS": "chal lenger"}, "CHALLENGER_ALIAS must be an MLflow alias name"),
])
def test_invalid_selection_is_refused_with_the_variable_named(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(dict(BASE_ENV, **env))


def test_challenger_fraction_is_checked_in_settings_built_directly():
    with pytest.raises(ConfigError, match="CHALLENGER_FRACTION must be more than 0"):
        Settings(tracking_uri="http://m", model_name="m", bigquery_project="p", challenger_alias="c",
                 challenger_mode="split", challenger_fraction=True)


@pytest.mark.parametrize("name", ["MLFLOW_TRACKING_URI", "MODEL_NAME", "BIGQUERY_PROJECT"])
def test_missing_required_variable_is_named(name):
    with pytest.raises(ConfigError, match="environment variable %s is required" % name):
        Settings.from_env({k: v for k, v in BASE_ENV.items() if k != name})


@pytest.mark.parametrize("name, value, message", [
    ("LOG_BATCH_SIZE", "many", "LOG_BATCH_SIZE must be an integer"),
    ("LOG_BATCH_SIZE", "0", "LOG_BATCH_SIZE must be more than 0"),
    ("LOG_BATCH_SIZE", "20000", "at most 10000"),
    ("LOG_BATCH_SIZE", "20", None),
    ("LOG_FLUSH_INTERVAL", "soon", "LOG_FLUSH_INTERVAL must be a number of seconds"),
    ("LOG_FLUSH_INTERVAL", "-1", "LOG_FLUSH_INTERVAL must be more than 0"),
    ("LOG_FLUSH_INTERVAL", "inf", "finite"),
    ("MODEL_POLL_INTERVAL", "-5", "MODEL_POLL_INTERVAL must be 0 or more"),
    ("LOG_QUEUE_MAX_SIZE", "100", "must not exceed LOG_QUEUE_MAX_SIZE"),
])
def test_invalid_values_are_named(name, value, message):
    env = dict(BASE_ENV, **{name: value})
    if message is None:
        assert getattr(Settings.from_env(env), ENVIRONMENT[name][0]) == int(value)
        return
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_help_lists_every_variable(capsys):
    assert main(["--help"], env={}) == 0
    err = capsys.readouterr().err
    for name in list(ENVIRONMENT) + ["PORT"]:
        assert name in err
    assert "(required)" in describe() and "(default champion)" in describe()


def test_main_refuses_an_incomplete_environment(capsys):
    assert main([], env={"MODEL_NAME": "churn"}) == 2
    line = json.loads(capsys.readouterr().err)
    assert line["severity"] == "ERROR"
    assert "invalid configuration: environment variable MLFLOW_TRACKING_URI is required" in line["message"]


def test_log_lines_are_json_with_a_severity():
    record = logging.LogRecord("mlops_serving", logging.WARNING, __file__, 1, "queue %d%% full", (90,), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["severity"] == "WARNING" and line["message"] == "queue 90% full" and line["logger"] == "mlops_serving"


# -- input validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, value, problem", [
    ("long", 3, None), ("long", 3.0, None), ("long", -2 ** 63, None),
    ("long", 3.5, "expected an integer"), ("long", True, "expected an integer"), ("long", "3", "expected an integer"),
    ("long", 2 ** 63, "out of range"), ("integer", 2 ** 31, "out of range"), ("integer", -2 ** 31, None),
    ("double", 1, None), ("double", 1.5, None), ("float", -0.25, None),
    ("double", "1.5", "expected a number"), ("double", False, "expected a number"),
    ("double", math.inf, "finite"), ("double", math.nan, "finite"),
    ("string", "a", None), ("string", 1, "expected a string"),
    ("boolean", True, None), ("boolean", 1, "expected a boolean"),
    ("datetime", "2026-01-02T03:04:05Z", None), ("datetime", "yesterday", "ISO 8601"), ("datetime", 5, "ISO 8601"),
    ("binary", "aGVsbG8=", None), ("binary", "not base64!", "base64"),
    ("Array(long)", [1, 2], None), ("Array(long)", 1, "expected an array"),
])
def test_check_value(kind, value, problem):
    found = check_value(Column("x", kind), value)
    assert (found is None) if problem is None else (problem in found)


def test_validate_features_names_everything_wrong():
    columns = (Column("a", "long"), Column("b", "double"), Column("c", "string", required=False))
    assert validate_features(columns, {"a": 1, "b": 2.5}, ["body", "features"]) == []
    assert validate_features(columns, {"a": 1, "b": 2.5, "c": None}, ["body", "features"]) == []
    errors = validate_features(columns, {"a": None, "c": 3, "d": 1}, ["body", "instances", 2, "features"])
    assert [(e["loc"][-1], e["type"]) for e in errors] == [
        ("a", "missing"), ("b", "missing"), ("c", "type_error"), ("d", "extra_forbidden")]
    assert all(e["loc"][:4] == ["body", "instances", 2, "features"] for e in errors)
    assert "the model takes a, b, c" in errors[-1]["msg"]


def test_to_frame_uses_the_signature_types():
    columns = (Column("a", "long"), Column("b", "float"), Column("c", "string"), Column("d", "boolean"),
               Column("e", "datetime"), Column("f", "integer"), Column("g", "double"))
    frame = to_frame(columns, [{"a": 1, "b": 2, "c": "x", "d": True, "e": "2026-01-02T00:00:00Z", "f": 3, "g": None},
                               {"a": 2.0, "b": 0.5, "c": "y", "d": False, "e": "2026-01-03T00:00:00+00:00", "f": 4,
                                "g": 1}])
    assert list(frame.columns) == ["a", "b", "c", "d", "e", "f", "g"]
    assert [str(t) for t in frame.dtypes[:4]] == ["int64", "float32", "object", "bool"]
    assert str(frame.dtypes["f"]) == "int32" and str(frame.dtypes["g"]) == "float64"
    assert math.isnan(frame["g"][0]) and frame["a"].tolist() == [1, 2]
    assert pd.api.types.is_datetime64_any_dtype(frame["e"])


# -- outputs -------------------------------------------------------------------------------------------
def test_outputs_of_a_regressor_and_a_classifier():
    values = _rows(np.array([1.5, 2.25]), 2)
    assert [(_output(v, None).numeric, _output(v, None).label) for v in values] == [(1.5, None), (2.25, None)]
    labels = _rows(pd.Series([0, 1]), 2)
    out = [_output(v, p) for v, p in zip(labels, (0.2, 0.9))]
    assert [(o.value, o.numeric, o.label, o.probability) for o in out] == [(0, 0.2, "0", 0.2), (1, 0.9, "1", 0.9)]
    assert _output("yes", None).label == "yes" and _output("yes", None).numeric is None
    assert _output(math.nan, None).numeric is None


def test_outputs_of_several_columns_stay_in_the_response_only():
    assert _rows(pd.DataFrame({"p": [0.1, 0.2]}), 2) == [0.1, 0.2]
    rows = _rows(pd.DataFrame({"a": [1, 2], "b": [3.5, 4.5]}), 2)
    assert rows == [{"a": 1, "b": 3.5}, {"a": 2, "b": 4.5}]
    assert _output(rows[0], None).numeric is None and _output(rows[0], None).label is None
    assert _rows(np.array([[1.0], [2.0]]), 2) == [1.0, 2.0]
    with pytest.raises(ModelError, match="3 outputs for 2 instances"):
        _rows(np.array([1.0, 2.0, 3.0]), 2)


def test_signatures_that_cannot_be_validated_are_refused():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    with pytest.raises(ModelError, match="no signature"):
        columns_of(None)
    with pytest.raises(ModelError, match="tensors"):
        columns_of(ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, 3))])))
    with pytest.raises(ModelError, match="unnamed column"):
        columns_of(ModelSignature(inputs=Schema([ColSpec("double")])))
    columns = columns_of(ModelSignature(inputs=Schema([ColSpec("long", "a"), ColSpec("string", "b", required=False)])))
    assert columns == (Column("a", "long"), Column("b", "string", required=False))


# -- the prediction log, with a stand-in client ----------------------------------------------------------
class FakeClient:
    """Answers insert_rows_json from a script: an exception to raise, or insertErrors to return."""

    def __init__(self, script=None):
        self.calls = []
        self.script = list(script or [])
        self.lock = threading.Lock()

    def insert_rows_json(self, table, rows, row_ids, skip_invalid_rows, retry, timeout):
        with self.lock:
            self.calls.append({"table": table, "ids": list(row_ids), "rows": list(rows),
                               "skip": skip_invalid_rows, "retry": retry, "timeout": timeout})
            step = self.script.pop(0) if self.script else []
        if callable(step):
            step = step(rows)
        if isinstance(step, Exception):
            raise step
        return step


def rows(count, start=0):
    return [{"prediction_id": "id-%d" % n, "value": n} for n in range(start, start + count)]


def run_log(client, offered, **options):
    options = dict({"batch_size": 10, "flush_interval": 0.05, "backoff_initial": 0.01, "backoff_max": 0.02}, **options)
    log = PredictionLogger("p.d.t", client, **options).start()
    for chunk in offered:
        assert log.offer(chunk)
    assert log.close(5.0)
    return log


def test_batches_carry_insert_ids_and_no_client_retry():
    client = FakeClient()
    log = run_log(client, [rows(25)])
    assert [len(c["ids"]) for c in client.calls] in ([10, 10, 5], [10, 10, 1, 4])
    assert [i for c in client.calls for i in c["ids"]] == ["id-%d" % n for n in range(25)]
    assert all(c["table"] == "p.d.t" and c["skip"] is True and c["retry"] is None for c in client.calls)
    assert log.stats()["written"] == 25


def test_transient_errors_are_retried_until_written():
    client = FakeClient([exceptions.ServiceUnavailable("down"), exceptions.TooManyRequests("slow"),
                         exceptions.Forbidden("rateLimitExceeded", errors=[{"reason": "rateLimitExceeded"}]),
                         ConnectionError("refused")])
    log = run_log(client, [rows(3)])
    assert len(client.calls) == 5 and all(c["ids"] == ["id-0", "id-1", "id-2"] for c in client.calls)
    assert (log.stats()["written"], log.stats()["retries"], log.stats()["failed"]) == (3, 4, 0)


def test_stopped_rows_are_sent_again_and_invalid_ones_fail(caplog):
    answer = [{"index": 0, "errors": [{"reason": "invalid", "message": "no such field"}]},
              {"index": 1, "errors": [{"reason": "stopped", "message": ""}]}]
    client = FakeClient([answer])
    with caplog.at_level(logging.ERROR):
        log = run_log(client, [rows(3)])
    assert [c["ids"] for c in client.calls] == [["id-0", "id-1", "id-2"], ["id-1"]]
    assert (log.stats()["written"], log.stats()["failed"]) == (2, 1)
    assert '"prediction_id":"id-0"' in caplog.text and "invalid: no such field" in caplog.text


def test_a_request_bigquery_refuses_is_split_until_the_bad_row_is_alone(caplog):
    def refuse_bad(batch):
        return exceptions.BadRequest("too large or bad") if any(r["value"] == 5 for r in batch) else []

    client = FakeClient([refuse_bad] * 20)
    with caplog.at_level(logging.ERROR):
        log = run_log(client, [rows(8)])
    assert (log.stats()["written"], log.stats()["failed"]) == (7, 1)
    assert any(c["ids"] == ["id-5"] for c in client.calls)
    assert '"prediction_id":"id-5"' in caplog.text


def test_request_errors_are_told_from_transient_ones():
    assert is_request_error(exceptions.BadRequest("bad"))
    assert is_request_error(exceptions.RequestRangeNotSatisfiable("x")) is False
    assert not is_request_error(exceptions.BadRequest("bad", errors=[{"reason": "backendError"}]))
    assert not is_request_error(exceptions.ServiceUnavailable("x"))
    assert not is_request_error(ConnectionError("x"))


def test_offer_is_all_or_nothing_when_the_queue_is_full():
    log = PredictionLogger("p.d.t", FakeClient(), batch_size=2, max_queue=5)  # not started: nothing drains
    assert log.offer(rows(3))
    assert not log.offer(rows(3, 3))
    assert log.offer(rows(2, 3))
    stats = log.stats()
    assert (stats["queued"], stats["offered"], stats["rejected"]) == (5, 5, 3)


def test_nothing_is_taken_after_close():
    log = PredictionLogger("p.d.t", FakeClient()).start()
    assert log.close(1.0)
    assert not log.offer(rows(1))
    assert log.stats()["rejected"] == 1


def test_shadow_rows_get_insert_ids_of_their_own_and_are_never_counted_rejected():
    answer, shadow = rows(2), [dict(row, served=False) for row in rows(2)]  # the same prediction_ids
    client = FakeClient([[]])
    log = run_log(client, [[dict(row, served=True) for row in answer] + shadow])
    assert client.calls[0]["ids"] == ["id-0", "id-1", "id-0/shadow", "id-1/shadow"]
    assert log.stats()["written"] == 4
    full = PredictionLogger("p.d.t", FakeClient(), batch_size=2, max_queue=3)
    assert full.offer(rows(2)) and not full.offer(shadow, optional=True)
    assert (full.stats()["queued"], full.stats()["rejected"]) == (2, 0)
