"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PATHS = frozenset(("/predict", "/health", "/ready", "/model", "/metrics"))
# One namespace (mlops_serving_) and no *_created series: Cloud Run's instances come and go, and a scraper or
# Managed Service for Prometheus gains nothing from a creation timestamp per series.
disable_created_metrics()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StateCollector:
    """Reads the prediction log's and the model manager's counters at scrape time."""

    def __init__(self, prediction_log, manager, challenger=None):
        self.prediction_log = prediction_log
        self.manager = manager
        self.challenger = challenger  # challenger.Challenger, or None

    def describe(self):
        return []

    def collect(self):
        stats = self.prediction_log.stats()
        yield _gauge("mlops_serving_prediction_log_queue_depth", "Prediction rows accepted and not yet written (queued + in flight)",
                     stats["pending"])
        yield _gauge("mlops_serving_prediction_log_queue_capacity", "Most prediction rows the queue holds",
                     self.prediction_log.max_queue)
        for name, key, text in (
                ("mlops_serving_prediction_log_rows_written", "written", "Prediction rows BigQuery accepted"),
                ("mlops_serving_prediction_log_rows_failed", "failed",
                 "Prediction rows BigQuery rejected or that kept failing past the retry limit (dead-lettered)"),
                ("mlops_serving_prediction_log_rows_dropped", "dropped",
                 "Prediction rows still queued at the shutdown deadline (dead-lettered)"),
                ("mlops_serving_prediction_log_rows_rejected", "rejected",
                 "Prediction rows refused because the queue was full (the request got 503, nothing acknowledged)"),
                ("mlops_serving_prediction_log_insert_requests", "insert_requests", "insertAll requests sent"),
                ("mlops_serving_prediction_log_insert_errors", "insert_errors", "insertAll requests that failed"),
                ("mlops_serving_prediction_log_retries", "retries", "insertAll requests retried after a failure")):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], stats[key])
            yield counter
        current = self.manager.current
        info = GaugeMetricFamily("mlops_serving_model_info", "The model version served (value 1)",
                                 labels=["model_name", "model_version", "model_alias"])
        if current is not None:
            info.add_metric([current.name, current.version, current.alias], 1)
        yield info
        yield _gauge("mlops_serving_model_loaded", "1 when a model is loaded and /predict can answer",
                     0 if current is None else 1)
        reloads = CounterMetricFamily("mlops_serving_model_reloads", "Swaps to a new model version after the alias moved")
        reloads.add_metric([], self.manager.reloads)
        yield reloads
        failures = CounterMetricFamily("mlops_serving_model_load_failures", "Failed alias lookups or model loads")
        failures.add_metric([], self.manager.failures)
        yield failures
        if self.challenger is not None:
            yield from self._challenger()

    def _challenger(self):
        """The challenger's state, in series of its own: a dashboard reading mlops_serving_model_info still sees
        one served model."""
        manager = self.challenger.manager
        current = manager.current
        info = GaugeMetricFamily("mlops_serving_challenger_info", "The challenger version loaded (value 1), its mode "
                                 "(split or shadow) and fraction (split)",
                                 labels=["model_name", "model_version", "model_alias", "mode", "fraction"])
        if current is not None:
            info.add_metric([current.name, current.version, current.alias, self.challenger.mode,
                             "" if self.challenger.fraction is None else str(self.challenger.fraction)], 1)
        yield info
        yield _gauge("mlops_serving_challenger_loaded", "1 when a challenger version is loaded, 0 while the champion "
                     "answers alone", 0 if current is None else 1)
        reloads = CounterMetricFamily("mlops_serving_challenger_reloads",
                                      "Swaps to a new challenger version after its alias moved")
        reloads.add_metric([], manager.reloads)
        yield reloads
        failures = CounterMetricFamily("mlops_serving_challenger_load_failures",
                                       "Failed challenger alias lookups or model loads")
        failures.add_metric([], manager.failures)
        yield failures


def _gauge(name, text, value):
    gauge = GaugeMetricFamily(name, text)
    gauge.add_metric([], value)
    return gauge


class Metrics:
    def __init__(self, prediction_log, manager, challenger=None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("mlops_serving_http_requests", "HTTP requests by path, method and status code",
                                ["path", "method", "status"], registry=self.registry)
        self.latency = Histogram("mlops_serving_http_request_duration_seconds", "HTTP request latency by path",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model_latency = Histogram("mlops_serving_model_latency_seconds", "Time the model took per /predict request",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        # By alias too: in split mode the champion and the challenger answer side by side.
        self.predictions = Counter("mlops_serving_predictions", "Predictions acknowledged (instances) by the model "
                                   "version and alias that answered", ["model_version", "model_alias"],
                                   registry=self.registry)
        self.shadow_predictions = Counter(
            "mlops_serving_shadow_predictions", "Challenger predictions made in shadow mode and logged (served=false), "
            "not returned, by model version and alias", ["model_version", "model_alias"], registry=self.registry)
        self.challenger_failures = Counter(
            "mlops_serving_challenger_failures", "Requests the challenger should have predicted and did not (the "
            "champion answered alone), by reason: not_loaded, invalid_input (its signature refuses what the champion "
            "took), model_input (it failed on an instance), model_output, log_queue_full (shadow rows not logged)",
            ["reason"], registry=self.registry)
        # One series per feature declared open (unknown: allow): the inventory bounds the label's values.
        self.unknown_categories = Counter(
            "mlops_serving_unknown_categories", "Values outside a feature's allowed values, served because the feature "
            "is open (unknown: allow), by feature", ["feature"], registry=self.registry)
        self.model_input_errors = Counter(
            "mlops_serving_model_input_errors", "Instances the model raised an error on (answered 422)",
            registry=self.registry)
        self.registry.register(StateCollector(prediction_log, manager, challenger))


class MetricsMiddleware:
    """Pure ASGI middleware: counts every response by status and times it (422s from FastAPI included)."""

    def __init__(self, app, metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        path = path if path in PATHS else "other"
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.requests.labels(path, scope.get("method", ""), str(status["code"])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
