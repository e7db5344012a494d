"""Prediction logging: batches off the request path, BigQuery outages and recovery, backpressure, rejected
rows, shutdown. The invariant checked throughout: every acknowledged prediction ends in BigQuery exactly
once, or is counted (failed/dropped) and logged on the dead-letter logger; nothing is lost silently."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest

from tests.apps.conftest import (PROJECT, bigquery_client, create_predictions_table, instance, running_app, table_rows,
                                 wait_until)

pytestmark = pytest.mark.xdist_group("apps")


def predict_many(client, requests_count, batch=1):
    """Send requests; the prediction ids of the acknowledged ones."""
    acknowledged = []
    for number in range(requests_count):
        features = instance(tenure=number % 70, charges=20.0 + number)
        if batch == 1:
            response = client.post("/predict", json={"features": features, "entity_id": "e%d" % number})
            assert response.status_code == 200, response.text
            acknowledged.append(response.json()["prediction_id"])
        else:
            response = client.post("/predict", json={"instances": [{"features": features}] * batch})
            assert response.status_code == 200, response.text
            acknowledged.extend(p["prediction_id"] for p in response.json()["predictions"])
    return acknowledged


def assert_exactly_once(emulator, table, acknowledged):
    counts = Counter(row["prediction_id"] for row in table_rows(emulator, table))
    assert set(counts) == set(acknowledged), "missing %d, unexpected %d" % (
        len(set(acknowledged) - set(counts)), len(set(counts) - set(acknowledged)))
    assert [pid for pid, count in counts.items() if count != 1] == []


def written(client):
    return client.app.state.prediction_log.stats()["written"]


def test_predictions_are_written_in_batches(settings_for, bigquery, bigquery_emulator, predictions_table):
    with running_app(settings_for(batch_size=25, flush_interval=0.5)) as client:
        bigquery.clear()
        acknowledged = predict_many(client, 10, batch=10)  # 100 rows
        wait_until(lambda: written(client) == 100, message="100 rows written")
        inserts = [r for r in bigquery.requests if r[1].endswith("/insertAll")]
        assert 4 <= len(inserts) <= 10  # batches of up to 25 rows, not one request per prediction
    assert_exactly_once(bigquery_emulator, predictions_table, acknowledged)


def test_bigquery_503_outage_then_recovery(settings_for, bigquery, bigquery_emulator, predictions_table):
    with running_app(settings_for(batch_size=10, flush_interval=0.1)) as client:
        bigquery.inject(503, 4, method="POST")  # the next four insertAll requests fail, unanswered by BigQuery
        acknowledged = predict_many(client, 15) + predict_many(client, 5, batch=3)
        wait_until(lambda: written(client) == len(acknowledged), timeout=60, message="every row written")
        stats = client.app.state.prediction_log.stats()
        assert stats["insert_errors"] == 4 and stats["retries"] == 4
        assert (stats["failed"], stats["dropped"], stats["rejected"], stats["pending"]) == (0, 0, 0, 0)
        text = client.get("/metrics").text
        assert "mlops_serving_prediction_log_retries_total 4.0" in text
        assert "mlops_serving_prediction_log_rows_written_total %d.0" % len(acknowledged) in text
        assert "mlops_serving_prediction_log_queue_depth 0.0" in text
    assert_exactly_once(bigquery_emulator, predictions_table, acknowledged)


def test_bigquery_unreachable_then_back(settings_for, bigquery_gate, bigquery_emulator, predictions_table):
    with running_app(settings_for(bigquery_endpoint=bigquery_gate.url, batch_size=5, flush_interval=0.1)) as client:
        bigquery_gate.down()  # connections refused
        acknowledged = predict_many(client, 12)
        wait_until(lambda: client.app.state.prediction_log.stats()["retries"] >= 2, message="retries")
        stats = client.app.state.prediction_log.stats()
        assert stats["written"] == 0 and stats["pending"] == 12
        assert "mlops_serving_prediction_log_queue_depth 12.0" in client.get("/metrics").text
        bigquery_gate.up()
        wait_until(lambda: written(client) == 12, timeout=60, message="every row written after the outage")
        assert client.app.state.prediction_log.stats()["failed"] == 0
    assert_exactly_once(bigquery_emulator, predictions_table, acknowledged)


def test_a_lost_answer_is_retried_with_the_same_insert_ids(settings_for, bigquery_gate, bigquery_emulator,
                                                           predictions_table):
    with running_app(settings_for(bigquery_endpoint=bigquery_gate.url, batch_size=4, flush_interval=5)) as client:
        bigquery_gate.lose_answers(1)  # BigQuery stores the rows, the client sees 503 and sends them again
        acknowledged = predict_many(client, 1, batch=4)
        wait_until(lambda: written(client) == 4, timeout=30, message="the batch written")
    first, second = bigquery_gate.insert_ids()[:2]
    # insertId = prediction_id on every attempt: BigQuery (and the emulator's wrapper) drops the second copy.
    assert first == second == acknowledged
    assert_exactly_once(bigquery_emulator, predictions_table, acknowledged)


def test_full_queue_answers_503_and_acknowledges_nothing(settings_for, bigquery, bigquery_emulator, predictions_table):
    settings = settings_for(queue_max_size=10, batch_size=5, max_instances=5, flush_interval=0.05)
    with running_app(settings) as client:
        bigquery.inject(503, 10 ** 6, method="POST")  # BigQuery down for as long as the test says
        acknowledged, refused = [], None
        for _attempt in range(10):
            response = client.post("/predict", json={"instances": [{"features": instance()}] * 5})
            if response.status_code == 503:
                refused = response
                break
            acknowledged.extend(p["prediction_id"] for p in response.json()["predictions"])
        assert refused is not None, "the queue never filled"
        assert refused.headers["Retry-After"] == "1"
        assert "queue is full" in refused.json()["detail"] and "prediction_id" not in refused.text
        stats = client.app.state.prediction_log.stats()
        assert stats["rejected"] == 5 and stats["pending"] == len(acknowledged)
        text = client.get("/metrics").text
        assert "mlops_serving_prediction_log_rows_rejected_total 5.0" in text
        assert 'mlops_serving_http_requests_total{method="POST",path="/predict",status="503"} 1.0' in text
        bigquery.clear()  # BigQuery is back
        wait_until(lambda: written(client) == len(acknowledged), timeout=60, message="the queue drained")
        after = client.post("/predict", json={"features": instance()})
        assert after.status_code == 200
        acknowledged.append(after.json()["prediction_id"])
        wait_until(lambda: written(client) == len(acknowledged), message="the last row")
    assert_exactly_once(bigquery_emulator, predictions_table, acknowledged)


def test_rows_bigquery_rejects_are_counted_and_dead_lettered(settings_for, bigquery_emulator, unique, caplog):
    from google.cloud import bigquery as bq

    table_path = "%s.mlops.wrong_%s" % (PROJECT, unique)  # model_name is an INTEGER here: every row is invalid
    schema = [bq.SchemaField("prediction_id", "STRING"), bq.SchemaField("model_name", "INTEGER")]
    bigquery_client(bigquery_emulator).create_table(bq.Table(table_path, schema=schema), retry=None, timeout=30)
    with caplog.at_level(logging.ERROR, logger="mlops_serving"):
        with running_app(settings_for(table_path=table_path, batch_size=3, flush_interval=0.1)) as client:
            acknowledged = predict_many(client, 3)
            wait_until(lambda: client.app.state.prediction_log.stats()["failed"] == 3, message="3 rows failed")
            stats = client.app.state.prediction_log.stats()
            assert (stats["written"], stats["pending"]) == (0, 0)
            assert "mlops_serving_prediction_log_rows_failed_total 3.0" in client.get("/metrics").text
    dead = [r.getMessage() for r in caplog.records if r.name == "mlops_serving.dead_letter"]
    assert len(dead) == 3
    for prediction_id in acknowledged:
        assert any(prediction_id in line and line.startswith("failed {") for line in dead)
    assert caplog.text.count("1 prediction rows failed: rejected by BigQuery: invalid: Cannot convert") == 3


def test_a_batch_failing_past_the_retry_limit_is_dead_lettered(settings_for, bigquery, bigquery_emulator,
                                                               predictions_table, caplog):
    with caplog.at_level(logging.ERROR, logger="mlops_serving"):
        with running_app(settings_for(max_retry_seconds=1.0, batch_size=10, flush_interval=0.1)) as client:
            bigquery.inject(503, 10 ** 6, method="POST")
            lost = predict_many(client, 4)
            wait_until(lambda: client.app.state.prediction_log.stats()["failed"] == 4, timeout=30,
                       message="the rows given up")
            bigquery.clear()
            kept = predict_many(client, 2)
            wait_until(lambda: written(client) == 2, message="later rows written")
    dead = [r.getMessage() for r in caplog.records if r.name == "mlops_serving.dead_letter"]
    assert sorted(line.split('"prediction_id":"')[1][:36] for line in dead) == sorted(lost)
    assert "still failing after" in caplog.text
    assert_exactly_once(bigquery_emulator, predictions_table, kept)


def test_shutdown_flushes_the_queue(settings_for, bigquery_emulator, predictions_table):
    with running_app(settings_for(batch_size=500, flush_interval=300)) as client:
        acknowledged = predict_many(client, 7) + predict_many(client, 2, batch=5)
        time.sleep(0.3)
        assert table_rows(bigquery_emulator, predictions_table) == []  # waiting for a batch to fill
        assert client.app.state.prediction_log.stats()["queued"] == 17
    assert client.app.state.prediction_log.stats()["written"] == 17
    assert_exactly_once(bigquery_emulator, predictions_table, acknowledged)


def test_shutdown_deadline_reports_what_could_not_be_written(settings_for, bigquery, caplog):
    with caplog.at_level(logging.INFO, logger="mlops_serving"):
        with running_app(settings_for(shutdown_timeout=1.0, insert_timeout=2.0, batch_size=4,
                                      flush_interval=0.05)) as client:
            bigquery.inject(503, 10 ** 6, method="POST")
            acknowledged = predict_many(client, 6)
            wait_until(lambda: client.app.state.prediction_log.stats()["retries"] >= 1, message="a retry")
            started = time.monotonic()
        elapsed = time.monotonic() - started
    stats = client.app.state.prediction_log.stats()
    assert (stats["written"], stats["failed"], stats["dropped"], stats["pending"]) == (0, 0, 6, 0)
    assert elapsed < 6.0
    dead = [r.getMessage() for r in caplog.records if r.name == "mlops_serving.dead_letter"]
    assert sorted(line.split('"prediction_id":"')[1][:36] for line in dead) == sorted(acknowledged)
    assert all(line.startswith("dropped {") for line in dead)
    assert "prediction log closed: 0 rows written, 0 failed, 6 dropped (see the dead-letter log)" in caplog.text


def test_insert_batches_go_to_the_configured_table(settings_for, bigquery, bigquery_emulator, unique):
    other = create_predictions_table(bigquery_emulator, "other_%s" % unique)
    with running_app(settings_for(table_path=other)) as client:
        acknowledged = predict_many(client, 2)
        wait_until(lambda: written(client) == 2, message="2 rows")
    assert any(path.endswith("/datasets/mlops/tables/other_%s/insertAll" % unique) for _m, path in bigquery.requests)
    assert_exactly_once(bigquery_emulator, other, acknowledged)
