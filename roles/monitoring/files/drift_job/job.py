"""Configuration, SQL rendering and execution of the drift job.

The metrics are computed by one BigQuery MERGE statement (sql/drift_metrics.sql): nothing but a summary
of the written rows comes back to this process. Values reach BigQuery as query parameters only; the
identifiers that SQL cannot take as parameters (project, dataset and table names, feature columns, the
number of quantile bins) are checked against strict patterns first, and a bad one is refused before any
request is made.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from pathlib import Path

from google.cloud import bigquery

SQL_DIR = Path(__file__).resolve().parent / "sql"

METRIC_TYPES = ("psi", "ks", "mean_shift", "null_rate", "mae", "rmse", "accuracy", "volume")
# Metrics that signal a problem when they fall below their threshold; the others when they reach it.
LOWER_IS_WORSE = ("accuracy", "volume")
DEFAULT_THRESHOLDS = {"psi": 0.2, "ks": 0.1}
TASK_TYPES = ("regression", "classification")
KINDS = ("numeric", "categorical")
TABLES = ("offline_features", "predictions", "ground_truth", "drift_metrics")

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
    features: tuple = ()
    model_name: str | None = None
    task_type: str = "regression"
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
                problems.append("table name for %s %r must be letters, digits and underscores" % (key, self.tables.get(key)))
        unknown_tables = sorted(set(self.tables) - set(TABLES))
        if unknown_tables:
            problems.append("unknown table keys: %s" % ", ".join(unknown_tables))
        problems.extend(self._feature_problems())
        problems.extend(self._window_problems())
        if self.task_type not in TASK_TYPES:
            problems.append("task type %r must be one of %s" % (self.task_type, ", ".join(TASK_TYPES)))
        if self.model_name is not None and not self.model_name.strip():
            problems.append("model name must not be empty")
        unknown = sorted(set(self.thresholds) - set(METRIC_TYPES))
        if unknown:
            problems.append("thresholds for unknown metrics: %s (known: %s)" % (", ".join(unknown), ", ".join(METRIC_TYPES)))
        for metric, value in self.thresholds.items():
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value)):
                problems.append("threshold for %s must be a number, got %r" % (metric, value))
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or not 2 <= self.bins <= MAX_BINS:
            problems.append("bins must be an integer from 2 to %d, got %r" % (MAX_BINS, self.bins))
        if not isinstance(self.epsilon, (int, float)) or not 0 < self.epsilon < 1:
            problems.append("epsilon must be a number between 0 and 1 (exclusive), got %r" % (self.epsilon,))
        if not isinstance(self.decision_threshold, (int, float)) or not 0 <= self.decision_threshold <= 1:
            problems.append("decision threshold must be between 0 and 1, got %r" % (self.decision_threshold,))
        if problems:
            raise ConfigError("; ".join(problems))

    def _feature_problems(self):
        problems = []
        if not self.features:
            problems.append("no features given")
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
            problems.append("window start %s is not before window end %s" % (self.window_start.isoformat(), self.window_end.isoformat()))
        reference_start, reference_end = self.reference_bounds()
        if reference_start >= reference_end:
            problems.append("reference start %s is not before reference end %s" % (reference_start.isoformat(), reference_end.isoformat()))
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


def build_query(config, kinds):
    """The MERGE statement for `config`; `kinds` maps every feature name to numeric or categorical."""
    config.validate()
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
    values.update(reference_values=joiner.join(reference), current_values=joiner.join(current), bins=int(config.bins))
    return render(load_sql("drift_metrics.sql"), values)


def query_parameters(config):
    """Every value of the query, typed, in the order the SQL documents them."""
    reference_start, reference_end = config.reference_bounds()
    params = [
        bigquery.ScalarQueryParameter("window_start", "TIMESTAMP", config.window_start),
        bigquery.ScalarQueryParameter("window_end", "TIMESTAMP", config.window_end),
        bigquery.ScalarQueryParameter("reference_start", "TIMESTAMP", reference_start),
        bigquery.ScalarQueryParameter("reference_end", "TIMESTAMP", reference_end),
        bigquery.ScalarQueryParameter("reference_split", "STRING", config.reference_split),
        bigquery.ScalarQueryParameter("model_name", "STRING", config.model_name),
        bigquery.ScalarQueryParameter("task_type", "STRING", config.task_type),
        bigquery.ScalarQueryParameter("epsilon", "FLOAT64", float(config.epsilon)),
        bigquery.ScalarQueryParameter("decision_threshold", "FLOAT64", float(config.decision_threshold)),
    ]
    for metric in METRIC_TYPES:
        value = config.thresholds.get(metric)
        params.append(bigquery.ScalarQueryParameter(metric + "_threshold", "FLOAT64", None if value is None else float(value)))
    return params


def feature_kinds(config, client, timeout=None, retry=bigquery.DEFAULT_RETRY):
    """Kind of every feature: as configured, else from its column type in offline_features."""
    kinds = {feature.name: feature.kind for feature in config.features}
    if all(kinds.values()):
        return kinds
    table = client.get_table(config.table_id("offline_features"), timeout=timeout, retry=retry)
    columns = {field.name.lower(): field for field in table.schema}
    problems = []
    for name, kind in kinds.items():
        if kind:
            continue
        field = columns.get(name.lower())
        if field is None:
            problems.append("feature %s is not a column of %s" % (name, config.table_id("offline_features")))
        elif field.mode == "REPEATED" or field.field_type.upper() not in TYPE_KINDS:
            problems.append("feature %s has type %s%s: give its kind (name:numeric or name:categorical)"
                            % (name, field.field_type, " (repeated)" if field.mode == "REPEATED" else ""))
        else:
            kinds[name] = TYPE_KINDS[field.field_type.upper()]
    if problems:
        raise ConfigError("; ".join(problems))
    return kinds


def run(config, client, timeout=None, retry=bigquery.DEFAULT_RETRY):
    """Compute and write the window's metrics; returns a summary (rows written, drift found).

    `client` is a google.cloud.bigquery.Client. `timeout` bounds each API call and the wait for the
    query (None: the client library's defaults); `retry` is the google.api_core retry of each call
    (None: no retries).
    """
    config.validate()
    kinds = feature_kinds(config, client, timeout=timeout, retry=retry)
    sql = build_query(config, kinds)
    job_config = bigquery.QueryJobConfig(query_parameters=query_parameters(config),
                                         labels={"app": "mlops", "component": "drift-job"})
    job = _query(config, client, sql, job_config, timeout, retry)
    rows = window_rows(config, client, timeout=timeout, retry=retry)
    drifted = [row for row in rows if row["drift_detected"]]
    return {
        "window_start": config.window_start.isoformat(),
        "window_end": config.window_end.isoformat(),
        "model_name": config.model_name,
        "job_id": job.job_id,
        "rows_affected": job.num_dml_affected_rows,
        "rows_written": len(rows),
        "drift_detected": [
            {key: row[key] for key in ("model_name", "model_version", "feature", "metric_type", "value", "threshold")}
            for row in drifted
        ],
        "rows": rows,
    }


def window_rows(config, client, timeout=None, retry=bigquery.DEFAULT_RETRY):
    """The rows drift_metrics holds for the config's window (and model, if set), as dicts."""
    sql = render(load_sql("window_rows.sql"), {"drift_metrics": config.table_id("drift_metrics")})
    job_config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("window_start", "TIMESTAMP", config.window_start),
        bigquery.ScalarQueryParameter("window_end", "TIMESTAMP", config.window_end),
        bigquery.ScalarQueryParameter("model_name", "STRING", config.model_name),
    ])
    job = _query(config, client, sql, job_config, timeout, retry)
    return [dict(row.items()) for row in job.result(timeout=timeout, retry=retry)]


def _query(config, client, sql, job_config, timeout, retry):
    """Run one query job to completion."""
    options = {} if retry is bigquery.DEFAULT_RETRY else {"retry": retry, "job_retry": None}
    job = client.query(sql, job_config=job_config, project=config.job_project or config.project,
                       location=config.location, timeout=timeout, **options)
    job.result(timeout=timeout, retry=retry)
    return job
