"""Settings of the serving API, read from the environment (Cloud Run sets them on the service)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from .domains import feature_specs
from .task import LABEL_TYPES, TASKS, Declared, cast_label

# name -> (Settings field, kind, default or REQUIRED, description)
REQUIRED = object()
ENVIRONMENT = {
    "MLFLOW_TRACKING_URI": ("tracking_uri", "str", REQUIRED, "MLflow tracking server the model is loaded from"),
    "MLFLOW_AUTH": ("mlflow_auth", "str", "none",
                    "how requests to MLflow are authenticated: none, or google-id-token (a Google-signed ID token "
                    "from the metadata server, for MLflow on Cloud Run with IAM authentication)"),
    "MLFLOW_AUTH_AUDIENCE": ("mlflow_auth_audience", "str", None,
                             "audience of the ID token, MLflow's Cloud Run service URL; when unset, the "
                             "scheme://host of MLFLOW_TRACKING_URI"),
    "MODEL_NAME": ("model_name", "str", REQUIRED, "registered model name"),
    "MODEL_ALIAS": ("model_alias", "str", "champion",
                    "alias served: models:/<name>@<alias>; `latest` serves the highest READY version instead, as "
                    "MLflow's models:/<name>/latest does (MLflow reserves that name, so no alias can be called so)"),
    "MODEL_STAGE": ("model_stage", "str", None,
                    "legacy registry stage served instead of the alias: Production or Staging, the newest version "
                    "in that stage (models:/<name>/<stage>). MLflow deprecated stages in favour of aliases in 2.9: "
                    "set it only for a registry still promoting by stage, and not with a MODEL_ALIAS other than "
                    "champion. Predictions are logged with model_alias `stage:<stage>`"),
    "CHALLENGER_ALIAS": ("challenger_alias", "str", None,
                         "alias of a challenger version also loaded and followed (or `latest`); unset: no challenger. "
                         "A challenger that cannot be loaded or fails on a request never changes an answer: the "
                         "champion answers alone and the failure is shown in /ready, /model and /metrics"),
    "CHALLENGER_MODE": ("challenger_mode", "str", "shadow",
                        "split: CHALLENGER_FRACTION of the requests, drawn at random, are answered by the "
                        "challenger (logged with its alias); shadow: the challenger also predicts every request, "
                        "the champion's answer is returned and the challenger's is only logged, with served=false "
                        "and the same prediction_id (each request then costs both models' time)"),
    "CHALLENGER_FRACTION": ("challenger_fraction", "number", None,
                            "split only: the share of requests the challenger answers, more than 0 and at most 1"),
    "MODEL_ALLOW_PICKLE": ("allow_pickle", "bool", False,
                           "true to also load models whose format runs pickled code when loaded (pickle or "
                           "cloudpickle scikit-learn models, custom python_model and other flavours); by default "
                           "only scikit-learn models saved with skops are loaded"),
    "MODEL_TRUSTED_TYPES": ("trusted_types", "list", "",
                            "comma-separated types a skops model may hold besides those skops trusts by default "
                            "(the model's own skops_trusted_types are ignored)"),
    "MODEL_TASK": ("task", "str", "auto",
                   "what the model predicts: regression, classification, or auto (a model with predict_proba and "
                   "classes_ answers as a classifier, any other with its raw output); a model whose output "
                   "contradicts a declared task is refused (the inventory's mlops_label.task)"),
    "MODEL_LABEL_TYPE": ("label_type", "str", None,
                         "BigQuery type of the label (INTEGER, FLOAT, NUMERIC, STRING, BOOLEAN): a classifier's "
                         "classes are answered and logged in it, 1 and not 1.0 for INTEGER (mlops_label.type)"),
    "MODEL_POSITIVE_CLASS": ("positive_class", "str", None,
                             "binary classifiers: the class `probability` is about; by default the model's second "
                             "class, classes_[1] (mlops_label.positive_class)"),
    "MODEL_CLASSES": ("classes", "json", None,
                      "JSON list of the classes a classifier must have: a model with others is refused "
                      "(mlops_label.classes)"),
    "MODEL_FEATURES": ("features", "json", None,
                       "JSON list of the inventory's features (mlops_features): `categories` lists a feature's "
                       "allowed values (else its encoder's categories in the model), `unknown: allow` serves other "
                       "values and counts them in /metrics"),
    "MODEL_POLL_INTERVAL": ("poll_interval", "seconds", 30.0,
                            "how often the alias is checked for a new version (0: never)"),
    "BIGQUERY_PROJECT": ("bigquery_project", "str", REQUIRED, "project of the predictions table"),
    "BIGQUERY_DATASET": ("bigquery_dataset", "str", "mlops", "dataset of the predictions table"),
    "BIGQUERY_TABLE": ("bigquery_table", "str", "predictions", "predictions table"),
    "BIGQUERY_API_ENDPOINT": ("bigquery_endpoint", "str", None,
                              "BigQuery API endpoint override (an emulator; then no credentials are used)"),
    "LOG_BATCH_SIZE": ("batch_size", "int", 500, "rows per insertAll request (at most 10000)"),
    "LOG_FLUSH_INTERVAL": ("flush_interval", "seconds", 1.0,
                           "longest a logged prediction waits for its batch to fill"),
    "LOG_QUEUE_MAX_SIZE": ("queue_max_size", "int", 10000,
                           "rows waiting to be written; when full, /predict answers 503"),
    "LOG_MAX_RETRY_SECONDS": ("max_retry_seconds", "seconds", 600.0,
                              "how long a batch is retried before its rows are counted failed (and logged)"),
    "LOG_INSERT_TIMEOUT": ("insert_timeout", "seconds", 10.0, "timeout of one insertAll request"),
    "LOG_SHUTDOWN_TIMEOUT": ("shutdown_timeout", "seconds", 7.0,
                             "how long shutdown waits for the queue to be written (Cloud Run allows 10 s after SIGTERM)"),
    "MAX_INSTANCES": ("max_instances", "int", 1000, "most instances in one /predict request"),
    "MAX_BODY_BYTES": ("max_body_bytes", "int", 1048576,
                       "largest /predict body in bytes: larger ones get 413 before they are parsed (the role "
                       "sizes memory for concurrency x this)"),
}


MLFLOW_AUTH_METHODS = ("none", "google-id-token")
# Stages a version can be served from. None (registered, never staged) and Archived name no deployment.
SERVED_STAGES = ("Production", "Staging")
LATEST = "latest"  # MODEL_ALIAS/CHALLENGER_ALIAS value: the highest READY version (MLflow reserves the alias name)
DEFAULT_ALIAS = "champion"
CHALLENGER_MODES = ("split", "shadow")
ALIAS_NAME = re.compile(r"^[\w\-]+$")  # what MLflow accepts as an alias name (letters, digits, _ and -)
DEFAULT_PORTS = {"http": 80, "https": 443}


class ConfigError(ValueError):
    """An environment variable is missing or invalid; the message names it."""


def _origin(name, url):
    """scheme://host[:port] of an http(s) URL (the port only when it is not the scheme's default)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port == -1:
        raise ConfigError("%s must be an http(s) URL with a host for MLFLOW_AUTH=google-id-token (or set "
                          "MLFLOW_AUTH_AUDIENCE), got %r" % (name, url))
    host = "[%s]" % parts.hostname if ":" in parts.hostname else parts.hostname
    if port is not None and port != DEFAULT_PORTS[parts.scheme]:
        host = "%s:%d" % (host, port)
    return "%s://%s" % (parts.scheme, host)


@dataclass(frozen=True)
class Settings:  # pylint: disable=too-many-instance-attributes
    tracking_uri: str
    model_name: str
    bigquery_project: str
    model_alias: str = DEFAULT_ALIAS
    model_stage: str | None = None
    challenger_alias: str | None = None
    challenger_mode: str = "shadow"
    challenger_fraction: float | None = None
    poll_interval: float = 30.0
    bigquery_dataset: str = "mlops"
    bigquery_table: str = "predictions"
    bigquery_endpoint: str | None = None
    batch_size: int = 500
    flush_interval: float = 1.0
    queue_max_size: int = 10000
    max_retry_seconds: float = 600.0
    insert_timeout: float = 10.0
    shutdown_timeout: float = 7.0
    max_instances: int = 1000
    max_body_bytes: int = 1048576
    mlflow_auth: str = "none"
    mlflow_auth_audience: str | None = None
    allow_pickle: bool = False
    trusted_types: tuple = ()
    task: str = "auto"
    label_type: str | None = None
    positive_class: object = None     # in the label's type once checked
    classes: tuple | None = None      # in the label's type once checked
    features: tuple = ()              # domains.FeatureSpec once checked (a list of objects is read too)

    def __post_init__(self):
        names = {spec[0]: env for env, spec in ENVIRONMENT.items()}
        for field in fields(self):
            value = getattr(self, field.name)
            numeric = isinstance(field.default, (int, float)) and not isinstance(field.default, bool)
            if field.name in ("poll_interval",) and value < 0:
                raise ConfigError("%s must be 0 or more, got %s" % (names[field.name], value))
            if numeric and field.name not in ("poll_interval",) and not value > 0:
                raise ConfigError("%s must be more than 0, got %s" % (names[field.name], value))
        if self.batch_size > 10000:
            raise ConfigError("LOG_BATCH_SIZE must be at most 10000 (BigQuery's insertAll limit), got %d"
                              % self.batch_size)
        if self.batch_size > self.queue_max_size:
            raise ConfigError("LOG_BATCH_SIZE (%d) must not exceed LOG_QUEUE_MAX_SIZE (%d)"
                              % (self.batch_size, self.queue_max_size))
        if self.max_instances > self.queue_max_size:
            raise ConfigError("MAX_INSTANCES (%d) must not exceed LOG_QUEUE_MAX_SIZE (%d)"
                              % (self.max_instances, self.queue_max_size))
        self._check_mlflow_auth()
        self._check_selection()
        self._check_label()

    def _check_selection(self):
        """What is served: the alias, `latest` or a legacy stage, and the challenger (stage set in its canonical
        spelling: MLflow matches stage names case-insensitively)."""
        if self.model_stage:
            stage = {s.lower(): s for s in SERVED_STAGES}.get(str(self.model_stage).strip().lower())
            if stage is None:
                raise ConfigError("MODEL_STAGE must be one of %s (None and Archived hold no deployed version), got %r"
                                  % (", ".join(SERVED_STAGES), self.model_stage))
            if self.model_alias != DEFAULT_ALIAS:
                raise ConfigError("MODEL_STAGE (%s) and MODEL_ALIAS (%s) both say which version to serve: set one "
                                  "(stages are deprecated since MLflow 2.9, aliases replace them)"
                                  % (stage, self.model_alias))
            object.__setattr__(self, "model_stage", stage)
        else:
            object.__setattr__(self, "model_stage", None)
        for name, alias in (("MODEL_ALIAS", self.model_alias), ("CHALLENGER_ALIAS", self.challenger_alias)):
            if (alias or name == "MODEL_ALIAS") and not ALIAS_NAME.match(str(alias)):
                raise ConfigError("%s must be an MLflow alias name (letters, digits, _ and -) or latest, got %r"
                                  % (name, alias))
        # MLflow reserves `latest` whatever its case: Latest cannot be an alias either.
        if self.model_alias.lower() == LATEST:
            object.__setattr__(self, "model_alias", LATEST)
        if self.challenger_alias and self.challenger_alias.lower() == LATEST:
            object.__setattr__(self, "challenger_alias", LATEST)
        if self.challenger_mode not in CHALLENGER_MODES:
            raise ConfigError("CHALLENGER_MODE must be one of %s, got %r"
                              % (", ".join(CHALLENGER_MODES), self.challenger_mode))
        fraction = self.challenger_fraction
        if not self.challenger_alias:
            object.__setattr__(self, "challenger_alias", None)
            if fraction is not None:
                raise ConfigError("CHALLENGER_FRACTION is set but CHALLENGER_ALIAS is empty: set the challenger's "
                                  "alias, or unset CHALLENGER_FRACTION")
            return
        if self.challenger_alias == self.model_alias and not self.model_stage:
            raise ConfigError("CHALLENGER_ALIAS must differ from MODEL_ALIAS (%s): a model cannot challenge itself"
                              % self.model_alias)
        if self.challenger_mode == "split":
            if fraction is None or isinstance(fraction, bool) or not 0 < fraction <= 1:
                raise ConfigError("CHALLENGER_FRACTION must be more than 0 and at most 1 with CHALLENGER_MODE=split "
                                  "(the share of requests the challenger answers), got %s" % (fraction,))
        elif fraction is not None:
            raise ConfigError("CHALLENGER_FRACTION is for CHALLENGER_MODE=split; in shadow mode the challenger "
                              "predicts every request: unset it")

    def _check_label(self):
        """The declared label, each value in the label's type (frozen: the checked values are set in place)."""
        if self.task not in TASKS:
            raise ConfigError("MODEL_TASK must be one of %s, got %r" % (", ".join(TASKS), self.task))
        label_type = None
        if self.label_type:
            label_type = LABEL_TYPES.get(str(self.label_type).upper())
            if label_type is None:
                raise ConfigError("MODEL_LABEL_TYPE must be a BigQuery type of a label (%s), got %r" % (
                    ", ".join(LABEL_TYPES), self.label_type))
        object.__setattr__(self, "label_type", label_type)
        if self.task == "regression" and (self.positive_class is not None or self.classes is not None):
            raise ConfigError("MODEL_POSITIVE_CLASS and MODEL_CLASSES are for classifiers; MODEL_TASK is regression")
        classes = self.classes
        if classes is not None:
            if not isinstance(classes, (list, tuple)) or len(classes) < 2 or not all(
                    isinstance(c, (str, int, float, bool)) for c in classes):
                raise ConfigError("MODEL_CLASSES must be a list of two or more classes, got %r" % (classes,))
            try:
                classes = tuple(cast_label(c, label_type) for c in classes)
            except ValueError as exc:
                raise ConfigError("MODEL_CLASSES: %s (MODEL_LABEL_TYPE)" % exc) from None
        object.__setattr__(self, "classes", classes)
        if self.positive_class is not None:
            try:
                positive = cast_label(self.positive_class, label_type)
            except ValueError as exc:
                raise ConfigError("MODEL_POSITIVE_CLASS: %s (MODEL_LABEL_TYPE)" % exc) from None
            if classes is not None and positive not in classes:
                raise ConfigError("MODEL_POSITIVE_CLASS %r is not one of MODEL_CLASSES %r" % (positive, list(classes)))
            object.__setattr__(self, "positive_class", positive)
        if self.features and not all(hasattr(f, "categories") for f in self.features):
            try:
                raw = list(self.features) if isinstance(self.features, tuple) else self.features
                object.__setattr__(self, "features", feature_specs(raw))
            except ValueError as exc:
                raise ConfigError("MODEL_FEATURES: %s" % exc) from None
        object.__setattr__(self, "features", tuple(self.features or ()))

    @property
    def declared(self):
        """What the inventory declares about the label and the features, for the model manager."""
        return Declared(task=self.task, label_type=self.label_type, positive_class=self.positive_class,
                        classes=self.classes, features=self.features)

    def _check_mlflow_auth(self):
        if self.mlflow_auth not in MLFLOW_AUTH_METHODS:
            raise ConfigError("MLFLOW_AUTH must be one of %s, got %r" % (", ".join(MLFLOW_AUTH_METHODS), self.mlflow_auth))
        if self.mlflow_auth == "none":
            if self.mlflow_auth_audience:
                raise ConfigError("MLFLOW_AUTH_AUDIENCE is set but MLFLOW_AUTH is none: set MLFLOW_AUTH=google-id-token "
                                  "to send ID tokens, or unset MLFLOW_AUTH_AUDIENCE")
            return
        if not self.mlflow_auth_audience:  # a custom audience (Cloud Run allows them) is used as it is given
            _origin("MLFLOW_TRACKING_URI", self.tracking_uri)

    @property
    def mlflow_audience(self):
        """The audience of MLflow's ID tokens: MLFLOW_AUTH_AUDIENCE, else the tracking URI's scheme://host."""
        return self.mlflow_auth_audience or _origin("MLFLOW_TRACKING_URI", self.tracking_uri)

    @property
    def table_path(self):
        """project.dataset.table of the predictions table."""
        return "%s.%s.%s" % (self.bigquery_project, self.bigquery_dataset, self.bigquery_table)

    @property
    def model_uri(self):
        """MLflow's URI of what is served: models:/<name>@<alias>, models:/<name>/latest or models:/<name>/<stage>."""
        return model_uri(self.model_name, self.model_alias, self.model_stage)

    @property
    def challenger_uri(self):
        return model_uri(self.model_name, self.challenger_alias) if self.challenger_alias else None

    @classmethod
    def from_env(cls, env):
        values = {}
        for name, (attribute, kind, default, description) in ENVIRONMENT.items():
            raw = (env.get(name) or "").strip()
            if not raw:
                if default is REQUIRED:
                    raise ConfigError("environment variable %s is required: %s" % (name, description))
                continue
            values[attribute] = _parse(name, kind, raw)
        settings = cls(**values)
        # MLflow's own variables for its basic-auth (the serving user): both or neither. With
        # MLFLOW_AUTH=google-id-token the ID token then goes in X-Serverless-Authorization (see auth.py).
        if bool(env.get("MLFLOW_TRACKING_USERNAME")) != bool(env.get("MLFLOW_TRACKING_PASSWORD")):
            raise ConfigError("set both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (MLflow's basic "
                              "authentication) or neither")
        return settings


def model_uri(name, alias, stage=None):
    if stage:
        return "models:/%s/%s" % (name, stage)
    if alias == LATEST:
        return "models:/%s/latest" % name
    return "models:/%s@%s" % (name, alias)


def selector(alias, stage=None):
    """What predictions are logged with in model_alias: the alias, `latest`, or `stage:<stage>` (no alias can
    contain a colon, so a stage is never mistaken for one)."""
    return "stage:%s" % stage if stage else alias


def _parse(name, kind, raw):
    if kind == "str":
        return raw
    if kind == "list":
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if kind == "json":
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ConfigError("environment variable %s must be JSON: %s" % (name, exc)) from None
    if kind == "bool":
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ConfigError("environment variable %s must be true or false, got %r" % (name, raw))
    try:
        value = int(raw) if kind == "int" else float(raw)
    except ValueError:
        raise ConfigError("environment variable %s must be %s, got %r" % (
            name, {"int": "an integer", "number": "a number"}.get(kind, "a number of seconds"), raw)) from None
    if kind in ("seconds", "number") and not math.isfinite(value):
        raise ConfigError("environment variable %s must be a finite number%s, got %r" % (
            name, " of seconds" if kind == "seconds" else "", raw))
    return value


def describe():
    """The environment variables, for --help and the README."""
    lines = []
    for name, (_attribute, _kind, default, description) in ENVIRONMENT.items():
        shown = "required" if default is REQUIRED else "default %s" % ("none" if default is None else default)
        lines.append("  %-22s %s (%s)" % (name, description, shown))
    return "\n".join(lines)
