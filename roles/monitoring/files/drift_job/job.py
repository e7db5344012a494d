"""Configuration, SQL rendering and execution of the drift job.

The metrics are computed by one BigQuery MERGE statement (sql/drift_metrics.sql): nothing but a summary
of the written rows comes back to this process. Values reach BigQuery as query parameters only; the
identifiers that SQL cannot take as parameters (project, dataset and table names, feature columns, the
number of quantile bins) are checked against strict patterns first, and a bad one is refused before any
request is made.

What the job must know about the model is read from BigQuery, so a run needs only the project, dataset,
model and window. The features are the columns of offline_features other than the fixed ones and the label
(their column types give their kinds). The label, the task, the positive class and the label delay come from
the model config that the bigquery role writes into the description of offline_features, one line
``mlops-model-config: {"label": ..., "task": ..., ...}`` (a table description costs no table, no row and no
extra permission: the job reads the table's schema anyway). Arguments override both.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
from pathlib import Path

from google.cloud import bigquery

SQL_DIR = Path(__file__).resolve().parent / "sql"

METRIC_TYPES = ("psi", "ks", "mean_shift", "null_rate", "mae", "rmse", "accuracy", "precision", "recall", "log_loss",
                "volume")
# The metrics that depend on outcomes: the ones re-computed for earlier windows as late labels arrive.
QUALITY_METRICS = ("mae", "rmse", "accuracy", "precision", "recall", "log_loss")
# Metrics that signal a problem when they fall below their threshold; the others when they reach it.
LOWER_IS_WORSE = ("accuracy", "precision", "recall", "volume")
DEFAULT_THRESHOLDS = {"psi": 0.2, "ks": 0.1}
TASK_TYPES = ("regression", "classification")
KINDS = ("numeric", "categorical")
TABLES = ("offline_features", "predictions", "ground_truth", "drift_metrics")
# Columns of offline_features that are not features (roles/bigquery/vars/main.yml); the label is the other one.
FIXED_COLUMNS = ("entity_id", "event_timestamp", "split", "ingested_at")
# The line of the offline_features description holding the model config (written by the bigquery role).
MODEL_CONFIG_PREFIX = "mlops-model-config:"
# Label types whose task is regression when the config says "auto" (as the serving API decides).
REGRESSION_LABEL_TYPES = ("FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC")
BOOLEAN_TYPES = ("BOOLEAN", "BOOL")
MAX_LABEL_DELAY_DAYS = 3650

# BigQuery column types (REST and GoogleSQL names) and how a feature of that type is compared.
TYPE_KINDS = {
    "INTEGER": "numeric", "INT64": "numeric", "FLOAT": "numeric", "FLOAT64": "numeric",
    "NUMERIC": "numeric", "BIGNUMERIC": "numeric",
    "STRING": "categorical", "BOOLEAN": "categorical", "BOOL": "categorical",
}

# Project IDs: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter and not
# ending with a hyphen. Dataset and table names: letters, digits and underscores. Feature columns: a
# plain column name (it is also put into a JSON path, so nothing but [A-Za-z0-9_]).
PROJECT_PATTERN = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
DATASET_PATTERN = re.compile(r"[A-Za-z0-9_]{1,1024}")
TABLE_PATTERN = re.compile(r"[A-Za-z0-9_]{1,1024}")
COLUMN_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
MAX_BINS = 1000
# Default reference start when none is given: every reference row before the window.
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class ConfigError(ValueError):
    """The job's configuration is invalid; raised before any request to BigQuery."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """A feature column; kind None means: read it from the offline_features schema."""

    name: str
    kind: str | None = None

    @classmethod
    def parse(cls, text):
        """``name`` or ``name:kind`` (kind: numeric, categorical or a BigQuery column type)."""
        name, _sep, kind = text.strip().partition(":")
        kind = kind.strip()
        if kind and kind.upper() in TYPE_KINDS:
            kind = TYPE_KINDS[kind.upper()]
        return cls(name.strip(), kind.lower() or None)


@dataclasses.dataclass(frozen=True)
class Config:  # pylint: disable=too-many-instance-attributes
    """Everything one run needs. ``validate()`` checks it; ``run()`` calls it first."""

    project: str
    dataset: str
    window_start: datetime.datetime
    window_end: datetime.datetime
    features: tuple = ()                              # (): every feature column of offline_features
    model_name: str | None = None
    task_type: str | None = None                      # None: as the model config declares, else regression
    label: str | None = None                          # None: as declared, else the column before split
    label_type: str | None = None                     # None: the label column's type in offline_features
    positive_class: object = None                     # None: as declared, else from the label's type
    label_delay_days: int | None = None               # None: as declared, else 0 (no re-scoring)
    reference_start: datetime.datetime | None = None  # None: 1970-01-01
    reference_end: datetime.datetime | None = None    # None: the window start
    reference_split: str | None = "train"             # None: every split
    thresholds: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    bins: int = 10
    epsilon: float = 1e-4
    decision_threshold: float = 0.5
    tables: dict = dataclasses.field(default_factory=lambda: {name: name for name in TABLES})
    job_project: str | None = None  # project that runs (and pays for) the query; None: project
    location: str | None = None

    def validate(self):
        """Raise ConfigError listing every problem found."""
        problems = []
        if not _full_match(PROJECT_PATTERN, self.project):
            problems.append("project %r is not a valid project ID" % (self.project,))
        if self.job_project is not None and not _full_match(PROJECT_PATTERN, self.job_project):
            problems.append("job project %r is not a valid project ID" % (self.job_project,))
        if not _full_match(DATASET_PATTERN, self.dataset):
            problems.append("dataset %r must be letters, digits and underscores" % (self.dataset,))
        for key in TABLES:
            if not _full_match(TABLE_PATTERN, self.tables.get(key)):
                problems.append("table name for %s %r must be letters, digits and underscores"
                                % (key, self.tables.get(key)))
        unknown_tables = sorted(set(self.tables) - set(TABLES))
        if unknown_tables:
            problems.append("unknown table keys: %s" % ", ".join(unknown_tables))
        problems.extend(self._feature_problems())
        problems.extend(self._window_problems())
        problems.extend(self._label_problems())
        if self.model_name is not None and not self.model_name.strip():
            problems.append("model name must not be empty")
        unknown = sorted(set(self.thresholds) - set(METRIC_TYPES))
        if unknown:
            problems.append("thresholds for unknown metrics: %s (known: %s)"
                            % (", ".join(unknown), ", ".join(METRIC_TYPES)))
        for metric, value in self.thresholds.items():
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or math.isnan(value)):
                problems.append("threshold for %s must be a number, got %r" % (metric, value))
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or not 2 <= self.bins <= MAX_BINS:
            problems.append("bins must be an integer from 2 to %d, got %r" % (MAX_BINS, self.bins))
        if not isinstance(self.epsilon, (int, float)) or not 0 < self.epsilon < 1:
            problems.append("epsilon must be a number between 0 and 1 (exclusive), got %r" % (self.epsilon,))
        if not isinstance(self.decision_threshold, (int, float)) or not 0 <= self.decision_threshold <= 1:
            problems.append("decision threshold must be between 0 and 1, got %r" % (self.decision_threshold,))
        if problems:
            raise ConfigError("; ".join(problems))

    def _label_problems(self):
        problems = []
        if self.task_type is not None and self.task_type not in TASK_TYPES:
            problems.append("task type %r must be one of %s" % (self.task_type, ", ".join(TASK_TYPES)))
        if self.label is not None and not _full_match(COLUMN_PATTERN, self.label):
            problems.append("label %r is not a plain column name ([A-Za-z_][A-Za-z0-9_]*)" % (self.label,))
        if self.label_type is not None and not _full_match(COLUMN_PATTERN, self.label_type):
            problems.append("label type %r is not a BigQuery type name" % (self.label_type,))
        if self.positive_class is not None and not isinstance(self.positive_class, (str, int, float)):
            problems.append("positive class %r must be a string, a number or a boolean" % (self.positive_class,))
        delay = self.label_delay_days
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int)
                                  or not 0 <= delay <= MAX_LABEL_DELAY_DAYS):
            problems.append("label delay must be a whole number of days from 0 to %d, got %r"
                            % (MAX_LABEL_DELAY_DAYS, delay))
        return problems

    def _feature_problems(self):
        problems = []
        seen = set()
        for feature in self.features:
            if not isinstance(feature, Feature) or not _full_match(COLUMN_PATTERN, feature.name):
                name = feature.name if isinstance(feature, Feature) else feature
                problems.append("feature %r is not a plain column name ([A-Za-z_][A-Za-z0-9_]*)" % (name,))
                continue
            if feature.kind is not None and feature.kind not in KINDS:
                problems.append("feature %s: kind %r must be numeric or categorical" % (feature.name, feature.kind))
            if feature.name.lower() in seen:
                problems.append("feature %s is listed twice" % feature.name)
            seen.add(feature.name.lower())
        return problems

    def _window_problems(self):
        problems = []
        times = {"window start": self.window_start, "window end": self.window_end,
                 "reference start": self.reference_start, "reference end": self.reference_end}
        for label, value in times.items():
            if value is not None and (not isinstance(value, datetime.datetime) or value.tzinfo is None):
                problems.append("%s must be a timezone-aware datetime, got %r" % (label, value))
        if problems:
            return problems
        if self.window_start >= self.window_end:
            problems.append("window start %s is not before window end %s"
                            % (self.window_start.isoformat(), self.window_end.isoformat()))
        reference_start, reference_end = self.reference_bounds()
        if reference_start >= reference_end:
            problems.append("reference start %s is not before reference end %s"
                            % (reference_start.isoformat(), reference_end.isoformat()))
        return problems

    def reference_bounds(self):
        start = self.reference_start if self.reference_start is not None else EPOCH
        end = self.reference_end if self.reference_end is not None else self.window_start
        return start, end

    def table_id(self, key):
        """``project.dataset.table`` of one of TABLES (validated names only)."""
        return "%s.%s.%s" % (self.project, self.dataset, self.tables[key])


def _full_match(pattern, value):
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def load_sql(name):
    return (SQL_DIR / name).read_text(encoding="utf-8")


def load_fragments(name="feature_values.sql"):
    """The ``-- name: <key>`` blocks of a SQL file, by key."""
    fragments, key, lines = {}, None, []
    for line in load_sql(name).splitlines():
        match = re.match(r"--\s*name:\s*([a-z_]+)\s*$", line.strip())
        if match:
            if key:
                fragments[key] = "\n".join(lines).strip("\n")
            key, lines = match.group(1), []
        elif key is not None:
            lines.append(line)
    if key:
        fragments[key] = "\n".join(lines).strip("\n")
    return fragments


def render(template, values):
    """Fill {{ name }} placeholders; a placeholder without a value is an error, never left in the SQL."""
    missing = sorted({name for name in PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise ConfigError("SQL template needs values for: %s" % ", ".join(missing))
    rendered = PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)
    if "{{" in rendered or "}}" in rendered:
        raise ConfigError("SQL template has a malformed placeholder")
    return rendered


# ---- classes: the positive class written as quality.sql writes outcomes and predicted classes ----

def _number(value):
    """`value` as a float when it is a number or a number's text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def canonical_class(value, label_type):
    """A class as sql/quality.sql ("class") writes it for a label of `label_type`, or None."""
    if value is None:
        return None
    label_type = (label_type or "").upper()
    if label_type in BOOLEAN_TYPES:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return "false" if value == 0 else "true"
        text = str(value).strip().lower()
        return {"1": "true", "0": "false"}.get(text, text)
    if isinstance(value, bool):  # True of a numeric label is the class 1, of a STRING label the text "true"
        return ("true" if value else "false") if label_type == "STRING" else str(int(value))
    if label_type == "STRING" and isinstance(value, str):
        return value
    number = _number(value)
    if number is not None and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return value.strip() if isinstance(value, str) else str(value)


def default_positive_class(label_type, classes=None):
    """The class a binary classifier's probability is about when none is declared: the second of its two classes
    in order (scikit-learn's classes_[1], what the serving API logs the probability of), true for a BOOLEAN label,
    1 for a numeric one (0/1). None when it cannot be known (a STRING label without its classes, more classes)."""
    if classes:
        if len(classes) != 2:
            return None
        try:
            return sorted(classes)[1]
        except TypeError:
            return None
    label_type = (label_type or "").upper()
    if label_type in BOOLEAN_TYPES:
        return True
    if label_type == "STRING":
        return None
    return 1


# ---- what the tables declare ----

def model_config(description):
    """The model config a table description declares (the bigquery role's mlops-model-config line), or {}."""
    for line in (description or "").splitlines():
        line = line.strip()
        if not line.startswith(MODEL_CONFIG_PREFIX):
            continue
        text = line[len(MODEL_CONFIG_PREFIX):].strip()
        try:
            declared = json.loads(text)
        except ValueError:
            declared = None
        if not isinstance(declared, dict):
            raise ConfigError("the model config in the description of offline_features is not a JSON object: %s"
                              % text[:200])
        return declared
    return {}


def _check_declared(declared):
    """Refuse a model config whose values the job cannot use (a hand-edited description)."""
    problems = []
    task = declared.get("task")
    if task is not None and task not in TASK_TYPES + ("auto",):
        problems.append("task %r must be regression, classification or auto" % (task,))
    delay = declared.get("label_delay_days")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int) or delay < 0):
        problems.append("label_delay_days %r must be a whole number of days" % (delay,))
    label = declared.get("label")
    if label is not None and not _full_match(COLUMN_PATTERN, label):
        problems.append("label %r is not a plain column name" % (label,))
    classes = declared.get("classes")
    if classes is not None and not isinstance(classes, list):
        problems.append("classes %r must be a list" % (classes,))
    if problems:
        raise ConfigError("the model config in the description of offline_features is wrong: " + "; ".join(problems))


def _column_before_split(schema):
    """The label of a table laid out by the bigquery role without a model config: the column before split."""
    names = [field.name for field in schema]
    lowered = [name.lower() for name in names]
    if "split" in lowered:
        position = lowered.index("split")
        if position > 0 and lowered[position - 1] not in FIXED_COLUMNS:
            return names[position - 1]
    return None


def _feature_of(field, table_id, notes):
    """The Feature of a column found in offline_features, or None (noted) when it cannot be compared."""
    if field.mode == "REPEATED" or field.field_type.upper() not in TYPE_KINDS:
        notes.append("column %s of %s (%s%s) is left out: only numeric, STRING and BOOLEAN columns are compared"
                     % (field.name, table_id, field.field_type, ", repeated" if field.mode == "REPEATED" else ""))
        return None
    if not _full_match(COLUMN_PATTERN, field.name):
        notes.append("column %s of %s is left out: not a plain column name" % (field.name, table_id))
        return None
    return Feature(field.name, TYPE_KINDS[field.field_type.upper()])


def _features(config, schema, label, notes):
    """The features: as given (their kinds from the column types when not given), else every feature column."""
    table_id = config.table_id("offline_features")
    columns = {field.name.lower(): field for field in schema}
    if not config.features:
        skip = set(FIXED_COLUMNS) | ({label.lower()} if label else set())
        found = [_feature_of(field, table_id, notes) for field in schema if field.name.lower() not in skip]
        found = tuple(feature for feature in found if feature is not None)
        if not found:
            raise ConfigError("%s has no feature column (numeric, STRING or BOOLEAN) besides %s"
                              % (table_id, ", ".join(FIXED_COLUMNS + ((label,) if label else ()))))
        return found
    features, problems = [], []
    for feature in config.features:
        field = columns.get(feature.name.lower())
        if feature.kind:
            features.append(feature)
        elif field is None:
            problems.append("feature %s is not a column of %s" % (feature.name, table_id))
        elif field.mode == "REPEATED" or field.field_type.upper() not in TYPE_KINDS:
            problems.append("feature %s has type %s%s: give its kind (name:numeric or name:categorical)"
                            % (feature.name, field.field_type, " (repeated)" if field.mode == "REPEATED" else ""))
        else:
            features.append(Feature(feature.name, TYPE_KINDS[field.field_type.upper()]))
    if problems:
        raise ConfigError("; ".join(problems))
    return tuple(features)


def resolve(config, table):
    """`config` completed from offline_features (`table`, a google.cloud.bigquery.Table): features and their
    kinds from the schema, label, task, positive class and label delay from the model config in its description,
    each only where the config leaves it unset. Returns (config, notes): notes say what was assumed."""
    notes = []
    declared = model_config(table.description)
    _check_declared(declared)
    columns = {field.name.lower(): field for field in table.schema}
    table_id = config.table_id("offline_features")

    label = config.label or declared.get("label")
    if label is None:
        label = _column_before_split(table.schema)
        if label:
            notes.append("%s declares no model config (the bigquery role writes it; or give --label): taking %s, "
                         "the column before split, as the label" % (table_id, label))
    field = columns.get(label.lower()) if label else None
    if label and field is None:
        raise ConfigError("label %s is not a column of %s" % (label, table_id))
    label_type = config.label_type or (field.field_type.upper() if field is not None else None)

    task = config.task_type or declared.get("task")
    if task == "auto":
        task = "regression" if label_type is None or label_type.upper() in REGRESSION_LABEL_TYPES else "classification"
    if task is None:
        task = "regression"
        notes.append("no task type declared (mlops_label.task, --task-type): computing regression metrics")

    positive = None
    if task == "classification":
        positive = config.positive_class if config.positive_class is not None else declared.get("positive_class")
        if positive is None:
            positive = default_positive_class(label_type, declared.get("classes"))
            if positive is None:
                notes.append("no positive class declared for the %s label %s (mlops_label.positive_class, "
                             "--positive-class): no precision, recall or log loss" % (label_type or "untyped", label))
    delay = config.label_delay_days
    if delay is None:
        delay = declared.get("label_delay_days") or 0

    resolved = dataclasses.replace(
        config, features=_features(config, table.schema, label, notes), task_type=task, label=label,
        label_type=label_type, positive_class=canonical_class(positive, label_type), label_delay_days=delay)
    resolved.validate()
    return resolved, notes


def retained_from(table, now):
    """Start of the first day whose predictions partition `table` (predictions) still keeps at `now`."""
    partitioning = table.time_partitioning
    expiration = partitioning.expiration_ms if partitioning is not None else None
    if not expiration:
        return EPOCH
    cutoff = now - datetime.timedelta(milliseconds=int(expiration))
    # A day's partition goes when the whole day is older than the expiration.
    day = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if day == cutoff else day + datetime.timedelta(days=1)


# ---- SQL ----

def _quality_fragments():
    fragments = load_fragments("quality.sql")
    return {
        "actual_class": render(fragments["class"], {"text": "label_class", "number": "label_value"}),
        "predicted_class": render(fragments["class"], {"text": "prediction_label",
                                                       "number": "CAST(NULL AS FLOAT64)"}),
        "rescored_window": render(fragments["rescored_window"], {"t": ""}),
        "rescored_target": render(fragments["rescored_window"], {"t": "target."}),
        "quality_metrics": ", ".join("'%s'" % metric for metric in QUALITY_METRICS),
        "lower_is_worse": ", ".join("'%s'" % metric for metric in LOWER_IS_WORSE),
    }


def build_query(config, kinds=None):
    """The MERGE statement for `config`; `kinds` maps feature names to numeric or categorical (default: the
    features' own kinds, as resolve() sets them)."""
    config.validate()
    if not config.features:
        raise ConfigError("no features to compare (a run reads them from offline_features)")
    kinds = kinds or {feature.name: feature.kind for feature in config.features}
    fragments = load_fragments()
    reference, current = [], []
    for feature in config.features:
        kind = kinds[feature.name]
        if kind not in KINDS:
            raise ConfigError("feature %s: kind %r must be numeric or categorical" % (feature.name, kind))
        reference.append(render(fragments["reference_" + kind], {"feature": feature.name}))
        current.append(render(fragments["current_" + kind], {"feature": feature.name}))
    joiner = "\n    UNION ALL\n"
    values = {key: config.table_id(key) for key in TABLES}
    values.update(_quality_fragments())
    values.update(reference_values=joiner.join(reference), current_values=joiner.join(current), bins=int(config.bins))
    return render(load_sql("drift_metrics.sql"), values)


@dataclasses.dataclass(frozen=True)
class Rescore:
    """Which earlier windows a run re-scores: those of its model that ended after `start` (None: none) and started
    at or after `retained_from`; `horizon_start` is where the run reads predictions and outcomes from."""

    start: datetime.datetime | None = None
    retained_from: datetime.datetime = EPOCH
    horizon_start: datetime.datetime | None = None  # None: the window start

    def parameters(self, config):
        horizon = self.horizon_start if self.horizon_start is not None else config.window_start
        return [
            bigquery.ScalarQueryParameter("rescore_from", "TIMESTAMP", self.start),
            bigquery.ScalarQueryParameter("retained_from", "TIMESTAMP", self.retained_from),
            bigquery.ScalarQueryParameter("horizon_start", "TIMESTAMP", min(horizon, config.window_start)),
        ]


def query_parameters(config, rescore=Rescore()):
    """Every value of the MERGE, typed, in the order the SQL documents them."""
    reference_start, reference_end = config.reference_bounds()
    params = [
        bigquery.ScalarQueryParameter("window_start", "TIMESTAMP", config.window_start),
        bigquery.ScalarQueryParameter("window_end", "TIMESTAMP", config.window_end),
        bigquery.ScalarQueryParameter("reference_start", "TIMESTAMP", reference_start),
        bigquery.ScalarQueryParameter("reference_end", "TIMESTAMP", reference_end),
        bigquery.ScalarQueryParameter("reference_split", "STRING", config.reference_split),
        bigquery.ScalarQueryParameter("model_name", "STRING", config.model_name),
        bigquery.ScalarQueryParameter("task_type", "STRING", config.task_type or "regression"),
        bigquery.ScalarQueryParameter("label_type", "STRING", config.label_type),
        bigquery.ScalarQueryParameter("positive_class", "STRING",
                                      canonical_class(config.positive_class, config.label_type)),
        bigquery.ScalarQueryParameter("epsilon", "FLOAT64", float(config.epsilon)),
        bigquery.ScalarQueryParameter("decision_threshold", "FLOAT64", float(config.decision_threshold)),
    ] + rescore.parameters(config)
    for metric in METRIC_TYPES:
        value = config.thresholds.get(metric)
        params.append(bigquery.ScalarQueryParameter(metric + "_threshold", "FLOAT64",
                                                    None if value is None else float(value)))
    return params


# ---- the run ----

def _task_warnings(config, context):
    """Why the metrics may be the wrong ones: a classifier scored as a regression."""
    if config.task_type != "regression":
        return []
    warnings = []
    label_type = (config.label_type or "").upper()
    if label_type in ("STRING",) + BOOLEAN_TYPES:
        warnings.append("the label %s is %s but the task is regression: MAE and RMSE cannot be computed from "
                        "classes; declare task: classification (mlops_label.task, --task-type)"
                        % (config.label, label_type))
    if context and context["label_values"] == 2 and not context["fractional_labels"] and context["predictions"] \
            and not context["outside_unit"] and context["fractional"]:
        warnings.append("this looks like a binary classifier scored as a regression: the outcomes take 2 values and "
                        "every prediction is a probability (between 0 and 1), so MAE and RMSE measure probability "
                        "minus label; declare task: classification (mlops_label.task, --task-type classification)")
    return warnings


def _context(config, client, rescore, check_task, timeout, retry):
    """The one-row answer of sql/context.sql: windows to re-score, and what outcomes and predictions look like."""
    fragments = _quality_fragments()
    values = {key: config.table_id(key) for key in TABLES}
    values.update(actual_class=fragments["actual_class"], rescored_window=fragments["rescored_window"])
    sql = render(load_sql("context.sql"), values)
    job_config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("window_start", "TIMESTAMP", config.window_start),
        bigquery.ScalarQueryParameter("window_end", "TIMESTAMP", config.window_end),
        bigquery.ScalarQueryParameter("model_name", "STRING", config.model_name),
        bigquery.ScalarQueryParameter("label_type", "STRING", config.label_type),
        bigquery.ScalarQueryParameter("rescore_from", "TIMESTAMP", rescore.start),
        bigquery.ScalarQueryParameter("retained_from", "TIMESTAMP", rescore.retained_from),
        bigquery.ScalarQueryParameter("check_task", "BOOL", check_task),
    ], labels={"app": "mlops", "component": "drift-job"})
    job = _query(config, client, sql, job_config, timeout, retry)
    rows = [dict(row.items()) for row in job.result(timeout=timeout, retry=retry)]
    return rows[0] if rows else {}


def _compact(row, with_window=False):
    # model_alias tells champion from challenger when both predicted (shadow mode) under one or two versions.
    keys = ("model_name", "model_version", "model_alias", "feature", "metric_type", "value", "threshold",
            "drift_detected")
    if with_window:
        keys = ("window_start", "window_end") + keys
    return {key: row[key] for key in keys}


def run(config, client, timeout=None, retry=bigquery.DEFAULT_RETRY, now=None):
    """Compute and write the window's metrics, and re-score the quality of the model's earlier windows still
    inside the label delay; returns a summary (every metric written, drift found, warnings).

    `client` is a google.cloud.bigquery.Client. `timeout` bounds each API call and the wait for the
    query (None: the client library's defaults); `retry` is the google.api_core retry of each call
    (None: no retries). `now` (default: the current time) decides which predictions the table still keeps.
    """
    config.validate()
    table = client.get_table(config.table_id("offline_features"), timeout=timeout, retry=retry)
    config, warnings = resolve(config, table)

    rescore = Rescore()
    if config.label_delay_days and config.model_name is None:
        warnings.append("late labels are re-scored for one model at a time: give --model-name to re-score earlier "
                        "windows (this run scores its own window only)")
    elif config.label_delay_days:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        predictions = client.get_table(config.table_id("predictions"), timeout=timeout, retry=retry)
        rescore = Rescore(start=config.window_end - datetime.timedelta(days=config.label_delay_days),
                          retained_from=retained_from(predictions, now))
    check_task = config.task_type == "regression"
    context = {}
    if rescore.start is not None or check_task:
        context = _context(config, client, rescore, check_task, timeout, retry)
        if context.get("horizon_start") is not None:
            rescore = dataclasses.replace(rescore, horizon_start=context["horizon_start"])
    warnings.extend(_task_warnings(config, context if check_task else None))

    sql = build_query(config)
    job_config = bigquery.QueryJobConfig(query_parameters=query_parameters(config, rescore),
                                         labels={"app": "mlops", "component": "drift-job"})
    job = _query(config, client, sql, job_config, timeout, retry)
    written = window_rows(config, client, rescore, timeout=timeout, retry=retry)
    current, rescored = [], []
    for row in written:
        this_window = (row["window_start"], row["window_end"]) == (config.window_start, config.window_end)
        (current if this_window else rescored).append(row)
    drifted = [_compact(row, with_window=True) for row in current + rescored if row["drift_detected"]]
    return {
        "window_start": config.window_start.isoformat(),
        "window_end": config.window_end.isoformat(),
        "model_name": config.model_name,
        "task_type": config.task_type,
        "label": config.label,
        "label_type": config.label_type,
        "positive_class": config.positive_class,
        "label_delay_days": config.label_delay_days,
        "features": ["%s:%s" % (feature.name, feature.kind) for feature in config.features],
        "job_id": job.job_id,
        "rows_affected": job.num_dml_affected_rows,
        "rows_written": len(current),
        "metrics": [_compact(row) for row in current],
        "rescored": {
            "from": rescore.start.isoformat() if rescore.start else None,
            "windows": context.get("rescored_windows", 0) if rescore.start else 0,
            "rows_written": len(rescored),
            "metrics": [_compact(row, with_window=True) for row in rescored],
        },
        "drift_detected": drifted,
        "warnings": warnings,
        "rows": current,
    }


def window_rows(config, client, rescore=Rescore(), timeout=None, retry=bigquery.DEFAULT_RETRY):
    """The rows a run wrote, as dicts: every row of the config's window (and model, if set), and the quality rows
    of the windows it re-scored."""
    fragments = _quality_fragments()
    sql = render(load_sql("window_rows.sql"), {"drift_metrics": config.table_id("drift_metrics"),
                                               "rescored_window": fragments["rescored_window"],
                                               "quality_metrics": fragments["quality_metrics"]})
    job_config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("window_start", "TIMESTAMP", config.window_start),
        bigquery.ScalarQueryParameter("window_end", "TIMESTAMP", config.window_end),
        bigquery.ScalarQueryParameter("model_name", "STRING", config.model_name),
    ] + rescore.parameters(config))
    job = _query(config, client, sql, job_config, timeout, retry)
    return [dict(row.items()) for row in job.result(timeout=timeout, retry=retry)]


def _query(config, client, sql, job_config, timeout, retry):
    """Run one query job to completion."""
    options = {} if retry is bigquery.DEFAULT_RETRY else {"retry": retry, "job_retry": None}
    job = client.query(sql, job_config=job_config, project=config.job_project or config.project,
                       location=config.location, timeout=timeout, **options)
    job.result(timeout=timeout, retry=retry)
    return job
