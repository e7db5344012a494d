"""The serving API: FastAPI app factory.

    GET  /health   the process is alive (503 if a background thread died)
    GET  /ready    a model is loaded (503 until then); the challenger's state, when there is one
    POST /predict  one instance or a batch, validated against the model signature
    GET  /model    name, version, alias, run_id, signature, task, classes and features (with their allowed
                   values) of the served model, and the challenger's alias, mode, fraction and version
    GET  /metrics  Prometheus text (not in the OpenAPI document, which describes the served model's features:
                   see openapi.py)

POST /predict takes one instance:
    {"features": {"tenure_months": 3, "monthly_charges": 70.5, "contract_type": "month_to_month"},
     "entity_id": "customer-42"}                                   (entity_id optional)
and answers {"prediction_id": "<uuid>", "prediction": 1, "probability": 0.81,
             "model_name": "churn", "model_version": "3", "model_alias": "champion"}
or a batch (1 to MAX_INSTANCES instances, each shaped like the single form):
    {"instances": [{"features": {...}, "entity_id": "customer-42"}, {"features": {...}}]}
and answers {"model_name": ..., "model_version": ..., "model_alias": ...,
             "predictions": [{"prediction_id": ..., "prediction": ..., "probability": ...}, ...]}
`prediction` is a regressor's value, or a classifier's class in the label's declared type (task.py);
`probability`, for binary classifiers only, is the probability of the positive class, and `probabilities`,
for classifiers of more classes only, maps each class to its probability.

What is served (config.py): the version MODEL_ALIAS points at (model_alias is that alias), the highest READY
version (MODEL_ALIAS=latest, model_alias `latest`), or the newest version in a legacy stage (MODEL_STAGE,
model_alias `stage:<stage>`). With a challenger (CHALLENGER_ALIAS, challenger.py) in split mode, a request
drawn for it is answered and logged with the challenger's version and alias; in shadow mode the champion
answers and the challenger's predictions are logged alongside with served=false and the same prediction_ids.
Every row logged for an answer has served=true. Input is validated against the champion's signature: a
challenger that cannot take it is skipped (counted in /metrics), never the cause of an error.

Errors: 413 for a body over MAX_BODY_BYTES (refused before it is parsed); 422 names the missing, unexpected
or wrongly typed features, a value outside a feature's allowed values (domains.py), an instance the model
raised an error on, and any other input error ({"detail": [{"loc": [...], "msg": ..., "type": ...}]},
FastAPI's shape, at most 50 of them, then "more_errors": <how many more>, quoting no more than 64 characters
of any input: see bounds.py): whatever a client sends, the answer is never a 500. A 422 for a batch names
the instances at fault (["body", "instances", 3, "features", ...]) and nothing of the batch is predicted or
logged. 503 with Retry-After while no model is loaded, or when the prediction log queue is full: then the
prediction is NOT acknowledged (no prediction_id is returned, nothing is logged) and the client should
retry; this is the backpressure that keeps every acknowledged prediction on its way to BigQuery. 500 only
when the model's output cannot be used, whatever the input (a model error: see the log).
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from datetime import datetime, timezone
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from .auth import from_settings as mlflow_auth
from .bounds import (EXCERPT, MAX_ERRORS, MAX_MESSAGE, InputError, check_batch_size, decode, error_response, excerpt,
                     read_body)
from .challenger import LOG_QUEUE_FULL, Challenger
from .metrics import Metrics, MetricsMiddleware
from .model import ModelError, ModelManager, feature_errors
from .openapi import PREDICT_BODY, PREDICT_RESPONSES, Health, ModelDocument, ModelInfo, Ready, unavailable
from .prediction_log import PredictionLogger

LOG = logging.getLogger("mlops_serving")


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: dict[str, Any] = Field(description="feature name -> value, as the model signature names them")
    entity_id: Optional[str] = Field(default=None, max_length=1024,
                                     description="ID of the entity the prediction is about (logged)")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: Optional[list[Instance]] = Field(default=None, min_length=1, description="a batch of instances")
    features: Optional[dict[str, Any]] = Field(default=None, description="one instance's features")
    entity_id: Optional[str] = Field(default=None, max_length=1024, description="with features: its entity")

    @model_validator(mode="after")
    def one_form(self):
        if (self.instances is None) == (self.features is None):
            raise ValueError("send either 'features' (one instance) or 'instances' (a batch), not both or neither")
        if self.instances is not None and self.entity_id is not None:
            raise ValueError("'entity_id' goes inside each instance of a batch")
        return self


def parse_request(raw, max_instances):
    """The PredictRequest in a body of JSON bytes; InputError (422) for anything else.

    The batch is counted before pydantic builds an Instance for each element."""
    value = decode(raw)
    check_batch_size(value, max_instances)
    try:
        return PredictRequest.model_validate(value)
    except ValidationError as exc:  # rendered without the input values pydantic would quote
        errors = [{"loc": ["body"] + list(item["loc"]), "msg": item["msg"], "type": item["type"]}
                  for item in exc.errors(include_url=False, include_input=False, include_context=False)]
        raise InputError(errors) from None


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unavailable(detail, retry_after=1):
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(retry_after)})


def _challenger(settings, manager, challenger_manager, draw):
    """The Challenger of CHALLENGER_ALIAS (None without one): a ModelManager of its own on the champion's MLflow
    client settings, its ID tokens included."""
    if challenger_manager is None and not settings.challenger_alias:
        return None
    challenger_manager = challenger_manager or ModelManager(
        settings.tracking_uri, settings.model_name, settings.challenger_alias, settings.poll_interval,
        auth=getattr(manager, "auth", None), allow_pickle=settings.allow_pickle,
        trusted_types=settings.trusted_types, declared=settings.declared, role="challenger")
    return Challenger(challenger_manager, settings.challenger_mode, settings.challenger_fraction, draw=draw)


def create_app(settings, *, manager=None, prediction_log=None, bigquery_client=None, challenger_manager=None,
               draw=None):
    """The app for `settings`; a manager, challenger manager or prediction log passed in is used instead of one
    built from them. `draw` replaces random.random for split mode's per-request draw (tests)."""
    manager = manager or ModelManager(settings.tracking_uri, settings.model_name, settings.model_alias,
                                      settings.poll_interval, auth=mlflow_auth(settings),
                                      allow_pickle=settings.allow_pickle, trusted_types=settings.trusted_types,
                                      declared=settings.declared, stage=settings.model_stage)
    challenger = _challenger(settings, manager, challenger_manager, draw)
    prediction_log = prediction_log or PredictionLogger.from_settings(settings, client=bigquery_client)
    metrics = Metrics(prediction_log, manager, challenger)
    if challenger is not None:
        challenger.failures = metrics.challenger_failures

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        prediction_log.start()
        manager.start()  # loads the model in the background: /health answers at once, /ready once loaded
        LOG.info("serving %s; logging predictions to %s", settings.model_uri, settings.table_path)
        if challenger is not None:
            challenger.manager.start()
            LOG.info("challenger %s in %s mode%s", challenger.alias, challenger.mode,
                     ", answering %g of the requests" % challenger.fraction if challenger.mode == "split" else "")
        if getattr(manager, "auth", None) is not None:
            LOG.info("requests to MLflow carry Google ID tokens for audience %s", manager.auth.audience)
        try:
            yield
        finally:
            if challenger is not None:
                challenger.manager.stop()
            manager.stop()
            flushed = prediction_log.close(settings.shutdown_timeout)
            stats = prediction_log.stats()
            LOG.info("prediction log closed: %d rows written, %d failed, %d dropped%s", stats["written"],
                     stats["failed"], stats["dropped"], "" if flushed else " (see the dead-letter log)")

    description = "Predictions of %s, each logged to BigQuery (%s)." % (settings.model_uri, settings.table_path)
    if challenger is not None:
        description += " Challenger %s in %s mode%s." % (
            settings.challenger_uri, challenger.mode,
            " (answers %g of the requests)" % challenger.fraction if challenger.mode == "split" else
            " (predicts every request, logged with served=false; the champion answers)")
    app = FastAPI(title="mlops serving API", version="1.0", lifespan=lifespan, description=description)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.settings = settings
    app.state.manager = manager
    app.state.challenger = challenger
    app.state.prediction_log = prediction_log
    app.state.metrics = metrics
    app.openapi = ModelDocument(app, manager, settings.max_instances)

    # The routes build their JSON themselves; the models named in `responses` document it.
    @app.get("/health", response_model=None, responses={
        200: {"model": Health}, 503: {"model": Health, "description": "a background thread died"}})
    def health():
        if not prediction_log.alive() or not manager.alive():
            return JSONResponse({"status": "failing", "prediction_log": prediction_log.alive(),
                                 "model_poller": manager.alive()}, status_code=503)
        return {"status": "ok"}

    @app.get("/ready", response_model=None, responses={200: {"model": Ready}, 503: unavailable("no model loaded yet")})
    def ready():
        current = manager.current
        if current is None:
            return _unavailable({"ready": False, "model": settings.model_uri,
                                 "error": manager.last_error or "loading"}, retry_after=5)
        answer = {"ready": True, "model_name": current.name, "model_version": current.version,
                  "model_alias": current.alias}
        if manager.last_error:  # the alias moved to a version that cannot be served: this one keeps serving
            answer["error"] = manager.last_error
        if challenger is not None:  # ready whatever its state: the champion answers alone meanwhile
            answer["challenger"] = challenger.describe()
        return answer

    @app.get("/model", response_model=None, responses={200: {"model": ModelInfo},
                                                       503: unavailable("no model loaded yet")})
    def model_info():
        current = manager.current
        if current is None:
            return _unavailable("model %s is not loaded yet" % settings.model_uri, retry_after=5)
        answer = current.describe()
        if challenger is not None:
            answer["challenger"] = challenger.describe()
        return answer

    @app.get("/metrics", include_in_schema=False)
    def metrics_text():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # The body is read here, within MAX_BODY_BYTES, rather than by FastAPI (which reads all of it first); the
    # schema is still documented, with the served model's features (openapi.py).
    @app.post("/predict", response_model=None, responses=PREDICT_RESPONSES, openapi_extra=PREDICT_BODY)
    async def predict(request: Request):
        try:
            raw = await read_body(request, settings.max_body_bytes)
        except InputError as exc:
            return exc.response()
        return await run_in_threadpool(serve_predict, raw)

    def serve_predict(raw):
        try:
            body = parse_request(raw, settings.max_instances)
        except InputError as exc:
            return exc.response()
        model = manager.current  # this request's model, whatever a concurrent swap does
        if model is None:
            return _unavailable("model %s is not loaded yet" % settings.model_uri, retry_after=5)
        single = body.features is not None
        instances = [Instance(features=body.features, entity_id=body.entity_id)] if single else body.instances

        def location(index):
            return ["body", "features"] if single else ["body", "instances", index, "features"]

        errors, total, unknown = [], 0, []
        for index, instance in enumerate(instances):
            for item in feature_errors(model.columns, instance.features, location(index), model.domains, unknown):
                total += 1  # the rest are only counted: 100k unknown keys must not become 100k error objects
                if len(errors) < MAX_ERRORS:
                    errors.append(item)
        if errors:
            return error_response(errors, total=total)
        timestamp = _now()
        features = [instance.features for instance in instances]
        # Split mode: a request drawn for the challenger is answered by it, unless it cannot predict it (then
        # the champion answers, as for any request).
        answered = challenger.predict(features) if challenger is not None and challenger.answers() else None
        if answered is not None:
            model, outputs, latency_ms = answered
        else:
            try:
                outputs, latency_ms, failures = model.predict_or_blame(features)
            except ModelError as exc:
                LOG.error("model %s version %s gave an output this API cannot use: %s", model.name, model.version,
                          exc)
                return JSONResponse({"detail": "the model's output cannot be used (%s); see the service log"
                                     % excerpt(str(exc), MAX_MESSAGE)}, status_code=500)
            if failures:
                return _failed_instances(failures, location, model, len(instances), metrics)
        ids = [str(uuid.uuid4()) for _i in instances]
        rows = _rows(ids, instances, model, outputs, latency_ms, timestamp, served=True)
        if not prediction_log.offer(rows):
            LOG.warning("prediction log queue full (%d rows): refusing %d predictions with 503",
                        prediction_log.max_queue, len(rows))
            return _unavailable("the prediction log queue is full (BigQuery is slow or unavailable); the "
                                "prediction was not recorded, retry later")
        # Shadow mode: the challenger predicts the same instances once the answer is logged, on the request's time.
        shadow = challenger.predict(features) if challenger is not None and challenger.mode == "shadow" else None
        if shadow is not None:
            shadow_model, shadow_outputs, shadow_latency = shadow
            # The same prediction_ids: ground truth joined on prediction_id scores both versions.
            shadow_rows = _rows(ids, instances, shadow_model, shadow_outputs, shadow_latency, timestamp, served=False)
            if prediction_log.offer(shadow_rows, optional=True):
                metrics.shadow_predictions.labels(shadow_model.version, shadow_model.alias).inc(len(shadow_rows))
            else:
                challenger.fail(LOG_QUEUE_FULL, "%d shadow rows did not fit in the prediction log queue"
                                % len(shadow_rows))
        metrics.predictions.labels(model.version, model.alias).inc(len(rows))
        metrics.model_latency.observe(latency_ms / 1000.0)
        for feature in unknown:  # open features (unknown: allow) that were served a value outside their domain
            metrics.unknown_categories.labels(feature).inc()
        results = [_result(prediction_id, output) for prediction_id, output in zip(ids, outputs)]
        envelope = {"model_name": model.name, "model_version": model.version, "model_alias": model.alias}
        if single:
            return JSONResponse(dict(results[0], **envelope))
        return JSONResponse(dict(envelope, predictions=results))

    return app


def _rows(ids, instances, model, outputs, latency_ms, timestamp, served):
    """The predictions table's rows of one request's predictions by `model`; served=False for shadow ones."""
    return [{"prediction_id": prediction_id, "entity_id": instance.entity_id, "timestamp": timestamp,
             "model_name": model.name, "model_version": model.version, "model_alias": model.alias,
             "features": json.dumps(instance.features, separators=(",", ":")),
             "prediction": output.numeric, "prediction_label": output.label, "latency_ms": latency_ms,
             "served": served}
            for prediction_id, instance, output in zip(ids, instances, outputs)]


def _result(prediction_id, output):
    result = {"prediction_id": prediction_id, "prediction": output.value}
    if output.probability is not None:
        result["probability"] = output.probability
    if output.probabilities is not None:
        result["probabilities"] = output.probabilities
    return result


def _failed_instances(failures, location, model, count, metrics):
    """The 422 for instances the model raised an error on: input it cannot take, whatever the signature says."""
    from mlflow.exceptions import MlflowException

    errors = []
    for index, exc in sorted(failures.items()):
        text = exc.message if isinstance(exc, MlflowException) else str(exc)
        # The model's message may quote the input: no more of it than of any other input (bounds.py).
        errors.append({"loc": location(index), "type": "model_input", "msg": "the model cannot predict this "
                       "instance: %s: %s" % (type(exc).__name__, excerpt(text, EXCERPT))})
    metrics.model_input_errors.inc(len(failures))
    first = failures[min(failures)]
    LOG.warning("model %s version %s failed on %d of %d instances (answered 422), first: %s: %s", model.name,
                model.version, len(failures), count, type(first).__name__, excerpt(str(first), MAX_MESSAGE))
    return error_response(errors)
