"""The served model: loading `models:/<name>@<alias>` (or the latest version, or a legacy stage's), following
it, and validating input.

A request takes `ModelManager.current` once and uses that object to the end, so a swap to a new version
(one attribute assignment) never affects a request already running: the old model stays alive for as long
as a request holds it.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .bounds import MAX_ERRORS
from .config import LATEST, selector
from .domains import domains as feature_domains
from .task import Declared, OutputSpec, cast_label, label_text, resolve

LOG = logging.getLogger("mlops_serving.model")


class ModelError(Exception):
    """The model cannot be served (no signature, unsupported signature, load failure)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str       # MLflow DataType name: long, integer, double, float, string, boolean, datetime, binary, ...
    required: bool = True


# -- input validation ----------------------------------------------------------------------------------
INT_RANGES = {"integer": (-2 ** 31, 2 ** 31 - 1), "long": (-2 ** 63, 2 ** 63 - 1)}
TYPE_NAMES = {"long": "integer", "integer": "integer", "double": "number", "float": "number",
              "string": "string", "boolean": "boolean", "datetime": "ISO 8601 date-time string",
              "binary": "base64 string"}
FLOAT_MAX = {"double": sys.float_info.max, "float": 3.4028234663852886e38}  # float32's largest finite value


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_value(column, value):
    """None when `value` (decoded JSON) fits the column, else what is wrong with it."""
    kind = column.type
    if kind in INT_RANGES:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            return "expected an integer"
        low, high = INT_RANGES[kind]
        return None if low <= value <= high else "integer out of range for %s" % kind
    if kind in ("double", "float"):
        if not _is_number(value):
            return "expected a number"
        if isinstance(value, int):  # JSON integers are unbounded: math.isfinite() overflows on huge ones
            return None if abs(value) <= FLOAT_MAX[kind] else "number out of range for %s" % kind
        if not math.isfinite(value):
            return "expected a finite number"
        return None if abs(value) <= FLOAT_MAX[kind] else "number out of range for %s" % kind
    if kind == "string":
        return None if isinstance(value, str) else "expected a string"
    if kind == "boolean":
        return None if isinstance(value, bool) else "expected a boolean"
    if kind == "datetime":
        if not isinstance(value, str):
            return "expected an ISO 8601 date-time string"
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "expected an ISO 8601 date-time string"
        return None
    if kind == "binary":
        if not isinstance(value, str):
            return "expected a base64 string"
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            return "expected a base64 string"
        return None
    if kind.startswith("Array"):
        return None if isinstance(value, list) else "expected an array"
    if kind.startswith(("Object", "Map")):
        return None if isinstance(value, dict) else "expected an object"
    return None  # a type this check does not know: MLflow's own schema enforcement decides


def validate_features(columns, features, location, domains=None):
    """Errors (FastAPI's shape: loc, msg, type) for one instance's feature object; [] when it is valid."""
    return list(feature_errors(columns, features, location, domains))


def feature_errors(columns, features, location, domains=None, unknown=None):
    """The errors of validate_features, one at a time (a caller may stop or just count).

    `domains` ({feature: domains.Domain}) are checked once a value has the right type: an unknown value is an
    error, or, for an open feature, its name is appended to the list `unknown` (for /metrics)."""
    domains = domains or {}
    known = {c.name for c in columns}
    for column in columns:
        where = location + [column.name]
        if column.name not in features:
            if column.required:
                yield {"loc": where, "msg": "missing feature %r (%s)" % (column.name, column.type), "type": "missing"}
            continue
        value = features[column.name]
        if value is None:
            if column.required:
                yield {"loc": where, "msg": "feature %r is required and must not be null" % column.name,
                       "type": "missing"}
            continue
        problem = check_value(column, value)
        if problem:
            yield {"loc": where, "msg": "%s for feature %r (%s), got %s" % (
                problem, column.name, column.type, _describe(value)), "type": "type_error"}
            continue
        domain = domains.get(column.name)
        if domain is not None and not domain.allows(value):
            if not domain.open:
                yield {"loc": where, "msg": domain.message(value), "type": "enum"}
            elif unknown is not None:
                unknown.append(column.name)
    for name in features:
        if name not in known:
            shown = repr(name) if len(name) <= 64 else repr(name[:64]) + "... (truncated)"
            yield {"loc": location + [name], "msg": "unexpected feature %s: the model takes %s" % (
                shown, ", ".join(c.name for c in columns)), "type": "extra_forbidden"}


def _describe(value):
    text = repr(value)
    return "%s %s" % (type(value).__name__, text if len(text) <= 40 else text[:37] + "...")


def to_frame(columns, instances):
    """A pandas DataFrame of validated feature objects, each column in the dtype its signature names."""
    import numpy as np
    import pandas as pd

    data = {}
    for column in columns:
        values = [features.get(column.name) for features in instances]
        has_null = any(v is None for v in values)
        kind = column.type
        if kind in ("long", "integer") and not has_null:
            data[column.name] = np.array(values, dtype=np.int64 if kind == "long" else np.int32)
        elif kind in ("double", "float"):
            floats = [math.nan if v is None else float(v) for v in values]
            data[column.name] = np.array(floats, dtype=np.float64 if kind == "double" else np.float32)
        elif kind == "boolean" and not has_null:
            data[column.name] = np.array(values, dtype=bool)
        elif kind == "datetime":
            data[column.name] = pd.to_datetime([None if v is None else v for v in values], utc=True, format="ISO8601")
        elif kind == "binary":
            data[column.name] = pd.Series([None if v is None else base64.b64decode(v) for v in values], dtype=object)
        else:
            data[column.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data, columns=[c.name for c in columns])


# -- the loaded model ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """One instance's output: the model's value, and what goes to the predictions table."""

    value: object                 # JSON-ready answer: a regressor's value, a classifier's class in the label's type
    numeric: float | None         # `prediction` column: regression value, or P(positive class)
    label: str | None             # `prediction_label` column: the class of a classifier
    probability: float | None = None
    probabilities: dict | None = None  # multi-class classifiers: class (as prediction_label has it) -> probability


@dataclass(frozen=True)
class LoadedModel:  # pylint: disable=too-many-instance-attributes
    name: str
    version: str
    alias: str
    run_id: str | None
    columns: tuple
    signature: dict               # the MLflow signature as JSON objects
    pyfunc: object = field(repr=False)
    loaded_at: str = ""
    output: OutputSpec = OutputSpec()  # the task: how the model's output is answered and logged
    domains: dict = field(default_factory=dict, repr=False)  # feature -> domains.Domain (allowed values)
    # The flavor's own predict when it has one: validate() and to_frame() already enforce the signature, so
    # pyfunc's second schema check (about half of the CPU time of a request) is skipped.
    raw_predict: object = field(default=None, repr=False)

    @property
    def positive_class(self):
        """Binary classifiers: the class `probability` is about."""
        return self.output.positive_class

    def validate(self, features, location):
        return validate_features(self.columns, features, location, self.domains)

    def predict(self, instances):
        """Outputs for validated feature objects, and the model's time in milliseconds."""
        frame = to_frame(self.columns, instances)
        started = time.perf_counter()
        raw = (self.raw_predict or self.pyfunc.predict)(frame)
        probabilities = self.output.proba(frame) if self.output.proba is not None else None
        latency_ms = (time.perf_counter() - started) * 1000.0
        values = _rows(raw, len(instances))
        expected = (len(values), len(self.output.classes))
        if probabilities is not None and getattr(probabilities, "shape", None) != expected:
            raise ModelError("predict_proba returned %s probabilities for %d instances of %d classes" % (
                getattr(probabilities, "shape", "no array of"), *expected))
        outputs = [self._output(value, None if probabilities is None else probabilities[index])
                   for index, value in enumerate(values)]
        return outputs, latency_ms

    def predict_or_blame(self, instances, most=MAX_ERRORS):
        """(outputs, latency_ms, failures): `failures` maps the index of each instance the model raised an error
        on to that error (at most `most` of them), and then `outputs` is None.

        The instances of a batch that fails are told apart by predicting halves of it, then halves of the halves
        that fail: a few predictions for one bad instance in a thousand. ModelError, an output this API cannot
        use whatever the input, is raised."""
        try:
            outputs, latency_ms = self.predict(instances)
            return outputs, latency_ms, {}
        except ModelError:
            raise
        except Exception as exc:  # pylint: disable=broad-exception-caught  # located below
            if len(instances) == 1:
                return None, 0.0, {0: exc}
        outputs, failures, latency_ms = [None] * len(instances), {}, 0.0
        middle = len(instances) // 2
        pending = [(middle, len(instances)), (0, middle)]  # a stack of [start, stop): popped in index order
        while pending and len(failures) < most:
            start, stop = pending.pop()
            try:
                part, latency = self.predict(instances[start:stop])
            except ModelError:
                raise
            except Exception as exc:  # pylint: disable=broad-exception-caught  # the client's input
                if stop - start == 1:
                    failures[start] = exc
                else:
                    middle = (start + stop) // 2
                    pending += [(middle, stop), (start, middle)]
                continue
            outputs[start:stop] = part
            latency_ms += latency
        if failures:
            return None, latency_ms, failures
        return outputs, latency_ms, {}  # the whole batch failed, each part passed: served from the parts

    def _output(self, value, probabilities):
        if self.output.task == "classification":
            return _class_output(value, probabilities, self.output)
        if self.output.task == "regression":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ModelError("the model is declared a regressor (MODEL_TASK) and returned %s, not a number"
                                 % _describe(value))
            return _output(float(value), None)
        return _output(value, None)

    def describe(self):
        """What GET /model answers: the version, its signature, the task and each feature's allowed values."""
        spec = self.output
        features = []
        for column in self.columns:
            feature = {"name": column.name, "type": column.type, "required": column.required}
            if column.name in self.domains:
                feature.update(self.domains[column.name].describe())
            features.append(feature)
        answer = {"name": self.name, "version": self.version, "alias": self.alias, "run_id": self.run_id,
                  "loaded_at": self.loaded_at, "signature": self.signature, "task": spec.task,
                  "label_type": spec.label_type, "features": features}
        if spec.task == "classification":
            answer["classes"] = list(spec.classes)
            answer["positive_class"] = spec.positive_class
        return answer


def _finite(number):
    number = float(number)
    return number if math.isfinite(number) else None


def _class_output(value, probabilities, spec):
    """A classifier's output: its class in the label's type, and the probabilities predict_proba gave."""
    try:
        label = cast_label(value, spec.label_type)
    except ValueError as exc:
        raise ModelError("the model predicted %s, not a class of its label: %s" % (_describe(value), exc)) from None
    if spec.binary:
        probability = _finite(probabilities[spec.positive_index])
        return Output(value=label, numeric=probability, label=label_text(label), probability=probability)
    by_class = {label_text(c): _finite(p) for c, p in zip(spec.classes, probabilities)}
    return Output(value=label, numeric=None, label=label_text(label), probabilities=by_class)


def _rows(raw, count):
    """The model output as one JSON-ready value per instance."""
    import numpy as np
    import pandas as pd

    if isinstance(raw, pd.DataFrame):
        raw = raw.iloc[:, 0] if raw.shape[1] == 1 else raw.to_dict(orient="records")
    if isinstance(raw, pd.Series):
        raw = raw.to_numpy()
    if isinstance(raw, np.ndarray):
        raw = raw.reshape(count) if raw.ndim == 2 and raw.shape[1] == 1 else raw
        raw = raw.tolist()
    values = list(raw)
    if len(values) != count:
        raise ModelError("the model returned %d outputs for %d instances" % (len(values), count))
    return [_plain(v) for v in values]


def _plain(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _output(value, probability):
    if isinstance(value, float):
        return Output(value=value if math.isfinite(value) else None, numeric=value if math.isfinite(value) else None,
                      label=None)
    if isinstance(value, (bool, int, str)):
        return Output(value=value, numeric=probability, label=label_text(value), probability=probability)
    return Output(value=value, numeric=None, label=None)  # several outputs per instance: kept in the response only


def signature_json(signature):
    """An MLflow signature as JSON objects (its to_dict() holds each schema as a JSON string)."""
    import json

    return {key: json.loads(value) if isinstance(value, str) else value
            for key, value in signature.to_dict().items()}


def columns_of(signature):
    """The named input columns of an MLflow signature; ModelError when the model cannot be validated."""
    from mlflow.types.schema import DataType

    if signature is None or signature.inputs is None:
        raise ModelError("the model has no signature: log it with one (mlflow.<flavor>.log_model(..., "
                         "signature=... or input_example=...)) so its input can be validated")
    inputs = signature.inputs
    if inputs.is_tensor_spec():
        raise ModelError("the model's signature takes tensors; this API serves models whose signature has named "
                         "columns")
    columns = []
    for spec in inputs.inputs:
        if not spec.name:
            raise ModelError("the model's signature has an unnamed column; name every input column")
        kind = spec.type.name if isinstance(spec.type, DataType) else str(spec.type)
        columns.append(Column(name=spec.name, type=kind, required=getattr(spec, "required", True)))
    return tuple(columns)


def _raw_model(pyfunc):
    """The flavor's own model object (a scikit-learn estimator...), or None for a custom pyfunc."""
    try:
        return pyfunc.get_raw_model()
    except (NotImplementedError, AttributeError):
        return None


def _raw_predict(pyfunc):
    """The raw model's predict for scikit-learn models, which take the typed frame as it is; else None."""
    raw = _raw_model(pyfunc)
    flavors = getattr(pyfunc.metadata, "flavors", None) or {}
    if raw is None or "sklearn" not in flavors:
        return None
    return getattr(raw, "predict", None)


# -- what may be loaded --------------------------------------------------------------------------------
# Loading a pickle (or cloudpickle) file runs whatever code it names: whoever can move the alias in MLflow
# would choose the code this service runs. By default only scikit-learn models saved with skops are loaded,
# and skops is given this service's own list of trusted types, never the list in the model's MLmodel file
# (the model's author writes that list, so it protects nothing). Everything else needs MODEL_ALLOW_PICKLE.
SAFE_LOADER = "mlflow.sklearn"
PICKLE_OPT_IN = ("set MODEL_ALLOW_PICKLE=true (the serving role's serving_allow_pickle: true) to load such models, "
                 "only if everyone who can move the alias is trusted to run code in this service")


class ModelRefused(ModelError):
    """The model's format would run code from its artifact when loaded, and this service does not allow it."""


class SkopsModel:
    """The pyfunc implementation of a scikit-learn model this module loaded with skops itself."""

    def __init__(self, sklearn_model):
        self.sklearn_model = sklearn_model

    def get_raw_model(self):
        return self.sklearn_model

    def predict(self, data, params=None):  # pylint: disable=unused-argument  # pyfunc's interface
        return self.sklearn_model.predict(data)


def _inside(directory, relative):
    """directory/relative, refusing a path that leaves the model's directory."""
    root = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(root, str(relative)))
    if os.path.commonpath([root, path]) != root:
        raise ModelRefused("the model's MLmodel file points outside the model directory: %r" % relative)
    return path


def _skops_model(directory, meta, trusted_types):
    """The scikit-learn estimator of a skops-saved model, loaded with this service's trusted types only."""
    import mlflow.pyfunc
    import skops.io

    conf = meta.flavors["python_function"]
    path = _inside(directory, conf.get("model_path") or "model.skops")
    untrusted = skops.io.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - set(trusted_types))
    if refused:
        raise ModelRefused(
            "refusing flavour sklearn, serialization_format skops: the model holds types skops does not trust by "
            "default and MODEL_TRUSTED_TYPES does not list: %s. Add them to MODEL_TRUSTED_TYPES (the serving "
            "role's serving_model_trusted_types) only if loading them is safe; the skops_trusted_types in the "
            "model's own MLmodel file are not used" % ", ".join(refused))
    estimator = skops.io.load(path, trusted=list(untrusted))
    return mlflow.pyfunc.PyFuncModel(model_meta=meta, model_impl=SkopsModel(estimator))


def load_model_safely(directory, allow_pickle=False, trusted_types=()):
    """The pyfunc model in a downloaded model directory, after checking from its MLmodel file that loading
    it runs no pickled code (ModelRefused otherwise, naming the flavour, the format and the opt-in)."""
    import mlflow.pyfunc
    from mlflow.models import Model

    meta = Model.load(_inside(directory, "MLmodel"))  # YAML, read with safe_load: no code runs
    flavors = meta.flavors or {}
    pyfunc_conf = flavors.get("python_function")
    if not isinstance(pyfunc_conf, dict):
        raise ModelError("the model has no python_function flavour: flavours %s" % ", ".join(sorted(flavors)))
    loader = pyfunc_conf.get("loader_module")
    sklearn_conf = flavors.get("sklearn")
    if loader == SAFE_LOADER and isinstance(sklearn_conf, dict):
        serialization = sklearn_conf.get("serialization_format") or "pickle"  # MLflow's default before skops
        if serialization == "skops":
            return _skops_model(directory, meta, trusted_types)
        what = "flavour sklearn, serialization_format %s" % serialization
        fix = "log it with mlflow.sklearn.log_model(..., serialization_format=\"skops\")"
    else:
        kind = "python_model" if "python_model" in pyfunc_conf else "loader_module %s" % loader
        what = "flavour %s (%s)" % (", ".join(sorted(flavors)), kind)
        fix = "serve a scikit-learn model logged with mlflow.sklearn.log_model(..., serialization_format=\"skops\")"
    if not allow_pickle:
        raise ModelRefused("refusing %s: loading it can run code from the model's files (pickle), and this "
                           "service loads only scikit-learn models saved with skops by default. Either %s, or %s"
                           % (what, fix, PICKLE_OPT_IN))
    LOG.warning("loading %s: MODEL_ALLOW_PICKLE=true lets this model run code from its files", what)
    return mlflow.pyfunc.load_model(directory)


# -- loading and following the alias -------------------------------------------------------------------
READY = "READY"         # ModelVersionStatus of a version whose files can be downloaded
SEARCH_PAGE = 100       # versions per search_model_versions page when looking for the latest READY one


def _http_status(exc):
    """The HTTP status of a failed MLflow call (MLflow's exception or requests' HTTPError), else None."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.get_http_status_code()
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def refusal_hint(exc, auth):
    """What to check when MLflow (or Cloud Run in front of it) refused the request; "" otherwise."""
    status = _http_status(exc)
    if status not in (401, 403):
        return ""
    if auth is None:
        return (" (MLflow refused the request with HTTP %d: if it runs on Cloud Run with IAM authentication, set "
                "MLFLOW_AUTH=google-id-token and grant this service's account roles/run.invoker on it)" % status)
    if getattr(auth, "serverless_header", False):  # an ID token for Cloud Run and basic credentials for MLflow
        return (" (MLflow or Cloud Run refused the request with HTTP %d: MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD must be an MLflow user with READ on the model (MLflow's migrate job keeps "
                "one: AUTH_SERVING_USERNAME), this service's account needs roles/run.invoker on the MLflow service, "
                "and the ID token's audience, %s, must be its URL)" % (status, auth.audience))
    if status == 401:
        return (" (MLflow refused the ID token with HTTP 401: its audience, %s, must be MLflow's Cloud Run URL "
                "or one of its custom audiences; see MLFLOW_AUTH_AUDIENCE)" % auth.audience)
    return (" (MLflow refused the request with HTTP 403: grant this service's account roles/run.invoker on the "
            "MLflow service)")


class ModelManager:  # pylint: disable=too-many-instance-attributes
    """Holds the served model; a background thread follows the alias (or `latest`, or a stage) and swaps in new
    versions.

    `stage` (Production or Staging) serves the newest version in that legacy stage instead of the alias; the
    loaded model's `alias` is then `stage:<stage>`, what predictions are logged with."""

    def __init__(self, tracking_uri, name, alias="champion", poll_interval=30.0, cache_dir=None, auth=None,
                 allow_pickle=False, trusted_types=(), declared=None, stage=None, role="model"):
        self.tracking_uri = tracking_uri
        self.declared = declared or Declared()  # the label and features the inventory declares
        self.auth = auth              # auth.MlflowAuth, applied before each MLflow call; None: none
        self.allow_pickle = allow_pickle      # MODEL_ALLOW_PICKLE: load formats that run pickled code
        self.trusted_types = tuple(trusted_types)  # MODEL_TRUSTED_TYPES: skops types trusted besides its own
        self.name = name
        self.stage = stage
        self.alias = selector(alias, stage)  # what the served version is reported and logged as
        self._alias = alias
        self.role = role              # "model", or "challenger": named in the poller's thread and log lines
        self._prefix = "" if role == "model" else "%s: " % role  # the champion's lines stay as they always were
        self.poll_interval = poll_interval
        self.cache_dir = cache_dir
        self.current = None           # LoadedModel; read once per request
        self.last_error = None
        self.reloads = 0              # successful swaps after the first load
        self.failures = 0             # failed alias lookups or loads
        self._stop = threading.Event()
        self._thread = None
        self._crashed = False
        self._dirs = {}

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def authorize(self):
        """Before each MLflow call: a current ID token for MLflow's client (MLFLOW_AUTH=google-id-token)."""
        if self.auth is not None:
            self.auth.apply()

    def resolve(self):
        """The model version the alias (or `latest`, or the stage) points at now."""
        self.authorize()
        client = self.client()
        if self.stage:
            # The REST call models:/<name>/<stage> resolves through (get-latest-versions): one version per stage.
            found = client.get_latest_versions(self.name, [self.stage])
            if not found:
                raise ModelError("no version of %s is in stage %s" % (self.name, self.stage))
            return max(found, key=lambda v: int(v.version))
        if self._alias == LATEST:
            return self._latest_ready(client)
        return client.get_model_version_by_alias(self.name, self._alias)

    def _latest_ready(self, client):
        """The highest version whose registration finished (READY): a version still being registered has no
        files to download yet, and is picked up by the next poll once it has."""
        token = None
        while True:
            page = client.search_model_versions("name = '%s'" % self.name,
                                                max_results=SEARCH_PAGE, order_by=["version_number DESC"],
                                                page_token=token)
            for version in page:
                if (version.status or READY) == READY:
                    return version
            token = page.token
            if not token:
                raise ModelError("%s has no version ready to serve" % self.name)

    def load(self, version):
        """Download and load one model version (not yet served)."""
        import mlflow.artifacts

        self.authorize()
        target = tempfile.mkdtemp(prefix="model-%s-" % version.version, dir=self.cache_dir)
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri="models:/%s/%s" % (self.name, version.version), dst_path=target,
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            pyfunc = load_model_safely(local, self.allow_pickle, self.trusted_types)
            signature = pyfunc.metadata.signature
            columns = columns_of(signature)
            # A model that contradicts the declared label is refused here, before it can answer anything.
            what = "version %s of %s" % (version.version, self.name)
            output = resolve(_raw_model(pyfunc), self.declared, what)
            domains = feature_domains(_raw_model(pyfunc), columns, self.declared.features, what)
        except Exception:
            shutil.rmtree(target, ignore_errors=True)
            raise
        loaded = LoadedModel(name=self.name, version=str(version.version), alias=self.alias, run_id=version.run_id,
                             columns=columns, signature=signature_json(signature), pyfunc=pyfunc,
                             loaded_at=datetime.now(timezone.utc).isoformat(), output=output, domains=domains,
                             raw_predict=_raw_predict(pyfunc))
        self._dirs[loaded.version] = target
        return loaded

    def refresh(self):
        """Swap to the version the alias points at if it moved; True when a new version is now served."""
        version = self.resolve()
        current = self.current
        if current is not None and current.version == str(version.version):
            return False
        loaded = self.load(version)
        self.current = loaded  # the swap: requests that already hold the old model finish with it
        if current is not None:
            self.reloads += 1
            followed = ("stage %s" % self.stage if self.stage else "the latest version" if self._alias == LATEST
                        else "alias %s" % self.alias)
            LOG.info("%s%s of %s moved: now serving version %s (was %s)", self._prefix, followed, self.name,
                     loaded.version, current.version)
            self._forget(current.version)
        else:
            LOG.info("%sserving %s version %s (alias %s, run %s)", self._prefix, self.name, loaded.version,
                     self.alias, loaded.run_id)
        LOG.info("version %s answers as %s%s; allowed values checked for %s", loaded.version, loaded.output.task,
                 " of classes %s" % list(loaded.output.classes) if loaded.output.classes else "",
                 ", ".join(sorted(loaded.domains)) or "no feature")
        return True

    def _forget(self, version):
        # The model is in memory; its downloaded files are no longer needed.
        target = self._dirs.pop(version, None)
        if target:
            shutil.rmtree(target, ignore_errors=True)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="%s-poller" % self.role, daemon=True)
        self._thread.start()

    def alive(self):
        """False only when the poller thread died of an unexpected error."""
        return not self._crashed

    def stop(self, timeout=5.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for version in list(self._dirs):
            self._forget(version)
        if self.auth is not None:
            self.auth.clear()

    def _run(self):
        try:
            self._poll()
        except BaseException:
            self._crashed = True
            LOG.exception("the %s poller stopped", self.role)
            raise

    def _poll(self):
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.refresh()
                self.last_error = None
                delay = 1.0
            except Exception as exc:  # pylint: disable=broad-exception-caught  # keep serving the current model
                self.failures += 1
                self.last_error = "%s: %s%s" % (type(exc).__name__, exc, refusal_hint(exc, self.auth))
                LOG.warning("%scannot load %s@%s: %s", self._prefix, self.name, self.alias, self.last_error)
                if self.current is None:  # not serving yet: retry soon, with backoff
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
                    continue
            if self.current is not None and not self.poll_interval:
                return
            self._stop.wait(self.poll_interval)
