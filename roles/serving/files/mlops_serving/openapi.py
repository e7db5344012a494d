"""The OpenAPI document (GET /openapi.json, shown by /docs) of the model being served.

FastAPI documents the routes and their answers once. What /predict takes depends on the model, which changes
when the alias moves, so the document is completed from the served model: each feature with its type, whether
it is required and its allowed values, and the type of `prediction` (a class of the label or a number). It is
built again only when another version is served.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Optional, Union

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from .model import INT_RANGES
from .task import label_text

MAX_ENUM = 1000  # allowed values listed in the document; GET /model lists them all
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
REF = "#/components/schemas/%s"
JSON_TYPES = {"long": {"type": "integer", "format": "int64"}, "integer": {"type": "integer", "format": "int32"},
              "double": {"type": "number", "format": "double"}, "float": {"type": "number", "format": "float"},
              "string": {"type": "string"}, "boolean": {"type": "boolean"},
              "datetime": {"type": "string", "format": "date-time"},
              "binary": {"type": "string", "contentEncoding": "base64"}}
LABEL_JSON_TYPES = {"INTEGER": "integer", "FLOAT": "number", "STRING": "string", "BOOLEAN": "boolean"}


# -- the answers, for the document (the routes build their JSON themselves) ------------------------------
class ServedBy(BaseModel):
    model_name: str = Field(description="registered model name")
    model_version: str = Field(description="the model version that answered")
    model_alias: str = Field(description="what it was loaded through, as the predictions table logs it: the alias "
                                         "(the champion's, or the challenger's for a request it answered in split "
                                         "mode), `latest` (the highest READY version), or `stage:<stage>` (a legacy "
                                         "registry stage)")


class Prediction(BaseModel):
    prediction_id: str = Field(description="UUID of the prediction in the predictions table: send it with the "
                                           "ground truth")
    prediction: Any = Field(description="a regressor's value, or a classifier's class in the label's type")
    probability: Optional[float] = Field(default=None, description="binary classifiers only: the probability of "
                                                                   "the positive class")
    probabilities: Optional[dict[str, float]] = Field(default=None, description="classifiers of more than two "
                                                                                "classes only: class -> probability")


class PredictionResponse(Prediction, ServedBy):
    """The answer to one instance."""


class BatchPredictionResponse(ServedBy):
    """The answer to a batch: one prediction per instance, in their order."""

    predictions: list[Prediction]


class ErrorItem(BaseModel):
    loc: list[Union[str, int]] = Field(description="where: body, instances, index, features, feature name")
    msg: str = Field(description="what is wrong (quoting at most 64 characters of the input)")
    type: str = Field(description="missing, extra_forbidden, type_error, enum (a value outside the allowed ones), "
                                  "model_input (the model failed on this instance), json_invalid, too_long, ...")


class InputErrors(BaseModel):
    detail: list[ErrorItem] = Field(description="at most 50 errors")
    more_errors: Optional[int] = Field(default=None, description="errors not listed")


class Unavailable(BaseModel):
    detail: Union[str, dict[str, Any]] = Field(description="why: no model is loaded yet, or the prediction log is "
                                                           "full (the prediction was not recorded)")


class ServerError(BaseModel):
    detail: str


class Health(BaseModel):
    status: str = Field(description="ok, or failing when a background thread died")
    prediction_log: Optional[bool] = None
    model_poller: Optional[bool] = None


class ChallengerInfo(BaseModel):
    alias: str = Field(description="the challenger's alias (CHALLENGER_ALIAS), or `latest`")
    mode: str = Field(description="split (answers `fraction` of the requests) or shadow (predicts every request, "
                                  "logged with served=false and the champion's prediction_id, never returned)")
    fraction: Optional[float] = Field(default=None, description="split mode: the share of requests it answers")
    loaded: bool = Field(description="false while no challenger version is loaded: the champion answers alone")
    model_version: Optional[str] = None
    run_id: Optional[str] = None
    loaded_at: Optional[str] = None
    error: Optional[str] = Field(default=None, description="the last failure to load or follow its alias")
    last_failure: Optional[str] = Field(default=None, description="the last request it could not predict, and why "
                                                                  "(counted in mlops_serving_challenger_failures)")


class Ready(BaseModel):
    ready: bool
    model_name: Optional[str] = None
    model_version: Optional[str] = None
    model_alias: Optional[str] = None
    error: Optional[str] = Field(default=None, description="the last failure to follow the alias, such as a "
                                                           "version refused because it contradicts the declared "
                                                           "label (the version named here keeps serving)")
    challenger: Optional[ChallengerInfo] = Field(default=None, description="with CHALLENGER_ALIAS only; its state "
                                                                           "never makes the API unready")


class FeatureInfo(BaseModel):
    name: str
    type: str = Field(description="MLflow type: long, integer, double, float, string, boolean, datetime, binary")
    required: bool
    categories: Optional[list[Any]] = Field(default=None, description="the allowed values")
    categories_from: Optional[str] = Field(default=None, description="model (its encoder) or inventory")
    unknown: Optional[str] = Field(default=None, description="refuse (422), or allow (served and counted)")


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str
    run_id: Optional[str] = None
    loaded_at: str
    signature: dict[str, Any] = Field(description="the MLflow signature: inputs, outputs, params")
    task: str = Field(description="classification, regression, or raw (nothing declared and not a classifier)")
    label_type: Optional[str] = None
    features: list[FeatureInfo]
    classes: Optional[list[Any]] = None
    positive_class: Optional[Any] = None
    challenger: Optional[ChallengerInfo] = Field(default=None, description="with CHALLENGER_ALIAS only")


def unavailable(description):
    return {"model": Unavailable, "description": description, "headers": RETRY_AFTER}


PREDICT_RESPONSES = {
    200: {"model": Union[PredictionResponse, BatchPredictionResponse],
          "description": "a PredictionResponse for one instance, a BatchPredictionResponse for a batch"},
    413: {"model": InputErrors, "description": "the body is larger than MAX_BODY_BYTES"},
    422: {"model": InputErrors, "description": "invalid input: missing, unexpected or wrongly typed features, a "
                                               "value outside a feature's allowed values, an instance the model "
                                               "fails on; nothing is predicted or logged"},
    500: {"model": ServerError, "description": "the model's output cannot be used (see the service log)"},
    503: unavailable("no model is loaded yet, or the prediction log is full: nothing was recorded, retry later"),
}


# -- the model's part ------------------------------------------------------------------------------------
def feature_schema(column, domain):
    """The JSON schema of one feature's value."""
    if column.type.startswith("Array"):
        schema = {"type": "array"}
    elif column.type.startswith(("Object", "Map")):
        schema = {"type": "object"}
    else:
        schema = dict(JSON_TYPES.get(column.type, {}))
    if column.type in INT_RANGES:
        schema["minimum"], schema["maximum"] = INT_RANGES[column.type]
    notes = ["MLflow type %s" % column.type]
    if domain is not None:
        values = list(domain.values)
        if not domain.open and len(values) <= MAX_ENUM:
            schema["enum"] = values
        elif len(values) <= MAX_ENUM:
            schema["examples"] = values
        notes.append("%d allowed values (from the %s)%s" % (
            len(values), "model's encoder" if domain.source == "model" else "inventory",
            "; other values are served and counted (unknown: allow)" if domain.open else
            ("" if len(values) <= MAX_ENUM else "; GET /model lists them")))
    schema["description"] = "; ".join(notes)
    if not column.required:
        return {"anyOf": [schema, {"type": "null"}], "description": schema.pop("description")}
    return schema


def features_schema(model):
    if model is None:
        return {"type": "object", "additionalProperties": True,
                "description": "no model is loaded yet: the features are the inputs of its signature (GET /model)"}
    return {"type": "object", "title": "Features",
            "description": "the inputs of %s version %s, by name" % (model.name, model.version),
            "properties": {c.name: feature_schema(c, model.domains.get(c.name)) for c in model.columns},
            "required": [c.name for c in model.columns if c.required], "additionalProperties": False}


def prediction_schema(model):
    """The schema of `prediction` for the served model."""
    spec = None if model is None else model.output
    if spec is None or spec.task == "raw":
        return {"description": "the model's output"}
    if spec.task == "regression":
        return {"type": ["number", "null"], "description": "the predicted value (null if it is not finite)"}
    schema = {"description": "the predicted class"}
    if spec.label_type in LABEL_JSON_TYPES:
        schema["type"] = LABEL_JSON_TYPES[spec.label_type]
    if len(spec.classes) <= MAX_ENUM:
        schema["enum"] = list(spec.classes)
    return schema


def request_schemas(model, max_instances):
    return {
        "Features": features_schema(model),
        "Instance": {"type": "object", "title": "Instance", "additionalProperties": False, "required": ["features"],
                     "properties": {"features": {"$ref": REF % "Features"},
                                    "entity_id": {"type": "string", "maxLength": 1024,
                                                  "description": "ID of the entity the prediction is about (logged)"}}},
        "PredictBatch": {"type": "object", "title": "PredictBatch", "additionalProperties": False,
                         "required": ["instances"],
                         "properties": {"instances": {"type": "array", "items": {"$ref": REF % "Instance"},
                                                      "minItems": 1, "maxItems": max_instances}}},
        "PredictRequest": {"oneOf": [{"$ref": REF % "Instance"}, {"$ref": REF % "PredictBatch"}],
                           "description": "one instance, or a batch of them"},
    }


PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": REF % "PredictRequest"}}}}}


class ModelDocument:
    """app.openapi: FastAPI's document of the routes, completed from the model served now."""

    def __init__(self, app, manager, max_instances):
        self.app = app
        self.manager = manager
        self.max_instances = max_instances
        self._base = None
        self._cached = (object(), None)  # (the model it was built for, the document)
        self._lock = threading.Lock()

    def __call__(self):
        model = self.manager.current
        with self._lock:
            if self._cached[0] is model:
                return self._cached[1]
            if self._base is None:
                self._base = get_openapi(title=self.app.title, version=self.app.version,
                                         description=self.app.description, routes=self.app.routes)
            document = copy.deepcopy(self._base)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(request_schemas(model, self.max_instances))
            value = prediction_schema(model)
            for schema in schemas.values():
                properties = schema.get("properties", {})
                if "prediction" in properties and "prediction_id" in properties:
                    properties["prediction"] = dict(value)
                if "probabilities" in properties and model is not None and model.output.classes \
                        and len(model.output.classes) <= MAX_ENUM:
                    properties["probabilities"]["propertyNames"] = {
                        "enum": [label_text(c) for c in model.output.classes]}
            self._cached = (model, document)
            return document
