"""What a request may cost the serving API: the body-size limit (413), the batch counted before models are
built, and 422 answers that stay small and never become 500s, whatever the input.

The app runs in-process (TestClient) on a stand-in model (the churn signature, a constant predict) and a
stand-in BigQuery client: no network. test_serving_abuse.py sends the same kinds of request to the real
process and measures its memory."""

from __future__ import annotations

import json
import re
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mlops_serving import Settings, create_app
from mlops_serving.bounds import EXCERPT, MAX_ERRORS
from mlops_serving.model import Column, LoadedModel, check_value
from mlops_serving.prediction_log import PredictionLogger

pytestmark = pytest.mark.xdist_group("apps")

COLUMNS = (Column("tenure_months", "long"), Column("monthly_charges", "double"), Column("contract_type", "string"))
LIMIT = 64 * 1024
GOOD = {"tenure_months": 12, "monthly_charges": 70.5, "contract_type": "month_to_month"}
SMALL_ANSWER = 20000  # bytes: 50 errors of bounded size, far from the megabytes the input could make


class StubManager:
    """A model manager that always serves one in-memory model."""

    auth = None
    last_error = None
    reloads = 0
    failures = 0

    def __init__(self):
        self.current = LoadedModel(name="churn", version="1", alias="champion", run_id=None, columns=COLUMNS,
                                   signature={}, pyfunc=None, raw_predict=lambda frame: np.zeros(len(frame)))

    def start(self):
        pass

    def stop(self):
        pass

    def alive(self):
        return True


class RecordingClient:
    def __init__(self):
        self.rows = []
        self.lock = threading.Lock()

    def insert_rows_json(self, table, rows, row_ids, skip_invalid_rows, retry, timeout):  # pylint: disable=unused-argument
        with self.lock:
            self.rows.extend(rows)
        return []


@pytest.fixture(scope="module")
def client():
    settings = Settings(tracking_uri="http://127.0.0.1:9", model_name="churn", bigquery_project="p",
                        max_body_bytes=LIMIT, max_instances=100, queue_max_size=100000, flush_interval=0.05)
    log = PredictionLogger(settings.table_path, RecordingClient(), batch_size=500, flush_interval=0.05,
                           max_queue=100000)
    app = create_app(settings, manager=StubManager(), prediction_log=log)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def post(client, body, **headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/predict", content=data, headers=dict({"content-type": "application/json"}, **headers))


def small_422(response):
    """The errors of a 422 that stayed small and quotes at most EXCERPT characters of any input."""
    assert response.status_code == 422, response.text[:2000]
    assert len(response.content) < SMALL_ANSWER, len(response.content)
    assert re.search(r"(.)\1{%d}" % EXCERPT, response.text) is None, "echoes a long run of the input"
    document = response.json()
    assert set(document) <= {"detail", "more_errors"}
    assert 1 <= len(document["detail"]) <= MAX_ERRORS
    for item in document["detail"]:
        assert set(item) == {"loc", "msg", "type"}, item
    return document


# -- the body-size limit -------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_413_before_parsing(client):
    body = b'{"features": ' + b" " * LIMIT + json.dumps(GOOD).encode() + b"}"
    response = post(client, body)
    assert response.status_code == 413, response.text[:500]
    error, = response.json()["detail"]
    assert error["type"] == "body_too_large" and "larger than %d bytes" % LIMIT in error["msg"]


def test_a_chunked_body_over_the_limit_is_413(client):
    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"features": '
        for _i in range(LIMIT // 4096 + 2):
            yield b" " * 4096
        yield json.dumps(GOOD).encode() + b"}"

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:500]


def test_a_body_of_exactly_the_limit_is_served(client):
    body = json.dumps({"features": GOOD}).encode()
    body = body[:-1] + b" " * (LIMIT - len(body)) + b"}"
    assert len(body) == LIMIT
    response = post(client, body)
    assert response.status_code == 200, response.text[:500]
    assert response.json()["prediction"] == 0.0


# -- the batch is counted before instances are built ----------------------------------------------------
def test_a_huge_batch_is_one_error_not_one_per_instance(client):
    body = b'{"instances": [' + b",".join([b"{}"] * 20000) + b"]}"  # 20,000 instances with no features
    document = small_422(post(client, body))
    assert document["detail"] == [{"loc": ["body", "instances"], "type": "too_long",
                                   "msg": "at most 100 instances per request, got 20000"}]


# -- 422 answers are small -----------------------------------------------------------------------------
def test_a_long_entity_id_is_not_echoed(client):
    document = small_422(post(client, {"features": GOOD, "entity_id": "x" * 30000}))
    error, = document["detail"]
    assert error["loc"] == ["body", "entity_id"] and error["type"] == "string_too_long"


def test_a_long_unknown_key_is_cut_to_an_excerpt(client):
    key = "k" * 30000
    document = small_422(post(client, {"features": dict(GOOD, **{key: 1})}))
    error, = document["detail"]
    shown = error["loc"][-1]
    assert shown.startswith("k" * EXCERPT) and shown.endswith("... (truncated, 30000 characters)")
    assert error["type"] == "extra_forbidden" and "truncated" in error["msg"]


def test_many_unknown_keys_list_50_errors_and_count_the_rest(client):
    features = dict(GOOD, **{"u%d" % n: 0 for n in range(5000)})
    document = small_422(post(client, {"features": features}))
    assert len(document["detail"]) == MAX_ERRORS and document["more_errors"] == 5000 - MAX_ERRORS
    assert all(e["type"] == "extra_forbidden" for e in document["detail"])


def test_many_malformed_instances_list_50_errors(client):
    document = small_422(post(client, {"instances": [{"entity_id": n} for n in range(100)]}))
    assert len(document["detail"]) == MAX_ERRORS and document["more_errors"] == 200 - MAX_ERRORS  # 2 errors each


# -- every input error is a 422, never a 500 -----------------------------------------------------------
def features_text(value):
    """A body whose monthly_charges is `value`, as raw JSON text."""
    return ('{"features": {"tenure_months": 1, "monthly_charges": %s, "contract_type": "one_year"}}' % value).encode()


NESTED = "[" * 60 + "1" + "]" * 60


@pytest.mark.parametrize("body, location, text", [
    (features_text("1" * 4000), ["body", "features", "monthly_charges"], "number out of range for double"),
    (features_text("-" + "9" * 400), ["body", "features", "monthly_charges"], "number out of range for double"),
    (features_text("1" * 5000), ["body"], "invalid JSON"),
    (features_text("NaN"), ["body"], "NaN is not a JSON number"),
    (features_text("Infinity"), ["body"], "Infinity is not a JSON number"),
    (features_text("-Infinity"), ["body"], "-Infinity is not a JSON number"),
    (features_text("1e999"), ["body", "features", "monthly_charges"], "expected a finite number"),
    (b'{"features": {"\\ud800": 1, "tenure_months": 1, "monthly_charges": 1.0, "contract_type": "a"}}',
     ["body", "features", "\\ud800"], "lone surrogate"),
    (b'{"features": {"tenure_months": 1, "monthly_charges": 1.0, "contract_type": "\\udfff"}}',
     ["body", "features", "contract_type"], "lone surrogate"),
    (b'{"features": {"tenure_months": 1, "monthly_charges": 1.0, "contract_type": "a"}, "entity_id": "x\\ud800"}',
     ["body", "entity_id"], "lone surrogate"),
    (b'{"features": {"tenure_months": 1, "monthly_charges": 1.0, "contract_type": "a\xed\xa0\x80"}}',
     ["body", "features", "contract_type"], "lone surrogate"),  # json decodes bytes with surrogatepass
    (b'{"features": {"tenure_months": 1, "monthly_charges": 1.0, "contract_type": "a"}, "entity_id": "\xff"}',
     ["body"], "not UTF-8"),
    (features_text(NESTED), None, "nested more than 32 levels"),
    (features_text("[" * 30000 + "]" * 30000), ["body"], "nested too deeply"),
    (b"", ["body", 0], "invalid JSON"),
    (b'{"features": ', ["body", 13], "invalid JSON"),
    (b"[1, 2]", ["body"], "valid dictionary"),
    (b'"features"', ["body"], "valid dictionary"),
    (b"null", ["body"], "valid dictionary"),
    (b'{"features": "tenure_months=1"}', ["body", "features"], "valid dictionary"),
    (b'{"instances": {"features": {}}}', ["body", "instances"], "valid list"),
    (b'{"instances": [1]}', ["body", "instances", 0], "valid dictionary"),
    (b'{"features": {"tenure_months": 1, "monthly_charges": 1.0, "contract_type": "a"}, "entity_id": 7}',
     ["body", "entity_id"], "valid string"),
    (features_text('"70.5"'), ["body", "features", "monthly_charges"], "expected a number"),
    (features_text("true"), ["body", "features", "monthly_charges"], "expected a number"),
    (features_text('{"a": [1, 2]}'), ["body", "features", "monthly_charges"], "expected a number"),
], ids=["4000-digits", "400-digits-negative", "5000-digits", "NaN", "Infinity", "-Infinity", "1e999",
        "surrogate-key", "surrogate-value", "surrogate-entity", "utf8-encoded-surrogate", "invalid-utf8",
        "nested-60", "nested-30000", "empty", "truncated", "array", "string", "null", "features-string",
        "instances-object", "instance-number", "entity-number", "number-as-string", "boolean", "object"])
def test_input_errors_are_422_never_500(client, body, location, text):
    document = small_422(post(client, body))
    error = document["detail"][0]
    assert text in error["msg"], error
    if location is not None:
        assert error["loc"] == location, error
    else:
        assert error["loc"][:3] == ["body", "features", "monthly_charges"] and len(error["loc"]) <= 40


def test_the_app_still_serves_after_the_bad_requests(client):
    response = post(client, {"instances": [{"features": GOOD, "entity_id": "e-%d" % n} for n in range(100)]})
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["predictions"]) == 100


@pytest.mark.parametrize("kind, value, problem", [
    ("double", 10 ** 4000, "number out of range for double"),
    ("double", -(10 ** 309), "number out of range for double"),
    ("double", 10 ** 308, None),
    ("float", 1e39, "number out of range for float"),
    ("float", 10 ** 39, "number out of range for float"),
    ("float", 3.0e38, None),
    ("long", 10 ** 4000, "integer out of range for long"),
], ids=["double-4000-digits", "double-310-digits", "double-309-digits", "float-1e39", "float-40-digits", "float-3e38",
        "long-4000-digits"])
def test_check_value_bounds_numbers_without_overflowing(kind, value, problem):
    assert check_value(Column("x", kind), value) == problem
