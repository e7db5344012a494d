"""Command line of the drift job: ``python -m drift_job [options]``.

Every option can also come from an environment variable (the Cloud Run job sets those; a flag wins over
the variable). With neither --window-start nor --window-end the job covers the last full
DRIFT_WINDOW_HOURS hours before now (UTC, whole hours), which is what a scheduled run wants.

    DRIFT_PROJECT (or GOOGLE_CLOUD_PROJECT)  project of the mlops dataset
    DRIFT_JOB_PROJECT      project that runs the query (default: DRIFT_PROJECT)
    DRIFT_DATASET          dataset of the mlops tables (default: mlops)
    DRIFT_LOCATION         BigQuery location of the dataset (default: the client's)
    DRIFT_FEATURES         comma-separated feature columns, each name or name:kind (numeric, categorical);
                           without a kind it is read from the column type in offline_features
    DRIFT_MODEL_NAME       model to compute for (default: every model with predictions in the window)
    DRIFT_TASK_TYPE        regression (mae, rmse) or classification (accuracy); default regression
    DRIFT_WINDOW_START, DRIFT_WINDOW_END   the window, RFC 3339 (a time without offset is UTC)
    DRIFT_WINDOW_HOURS     length of the default window (default 24)
    DRIFT_REFERENCE_START, DRIFT_REFERENCE_END   reference rows of offline_features (default: before the window)
    DRIFT_REFERENCE_SPLIT  split of the reference rows (default train; "*" for every split)
    DRIFT_<METRIC>_THRESHOLD   PSI, KS, MEAN_SHIFT, NULL_RATE, MAE, RMSE, ACCURACY, VOLUME; "none" for no
                           threshold. Defaults: PSI 0.2, KS 0.1, no others.
    DRIFT_BINS (10), DRIFT_EPSILON (0.0001), DRIFT_DECISION_THRESHOLD (0.5), DRIFT_TIMEOUT (seconds, 900)
    BIGQUERY_EMULATOR_HOST  base URL of a BigQuery emulator: the job then uses no credentials

It prints one JSON object (the summary) on stdout; exit status 0 on success, 2 for a bad configuration
(nothing was sent to BigQuery), 1 when BigQuery failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

from drift_job.job import DEFAULT_THRESHOLDS, METRIC_TYPES, TASK_TYPES, Config, ConfigError, Feature, run

NO_VALUE = ("", "none", "null")


def parse_time(text):
    """RFC 3339 / ISO 8601 time; without an offset it is taken as UTC."""
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError("%r is not an RFC 3339 time (for example 2026-01-31T00:00:00Z)" % (text,)) from None
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def parse_threshold(text):
    if text is None or text.strip().lower() in NO_VALUE:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError("threshold %r is not a number (or none)" % (text,)) from None


def parse_number(text, kind, label):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise ConfigError("%s %r is not a valid %s" % (label, text, kind.__name__)) from None


def parser(env):
    default = env.get
    options = argparse.ArgumentParser(prog="python -m drift_job", description="Drift and quality metrics in BigQuery for one time window.")
    options.add_argument("--project", default=default("DRIFT_PROJECT") or default("GOOGLE_CLOUD_PROJECT"))
    options.add_argument("--job-project", default=default("DRIFT_JOB_PROJECT"))
    options.add_argument("--dataset", default=default("DRIFT_DATASET", "mlops"))
    options.add_argument("--location", default=default("DRIFT_LOCATION"))
    options.add_argument("--features", default=default("DRIFT_FEATURES", ""), help="name[:kind],... (kind: numeric or categorical)")
    options.add_argument("--model-name", default=default("DRIFT_MODEL_NAME"))
    options.add_argument("--task-type", default=default("DRIFT_TASK_TYPE", "regression"), help=" or ".join(TASK_TYPES))
    options.add_argument("--window-start", default=default("DRIFT_WINDOW_START"))
    options.add_argument("--window-end", default=default("DRIFT_WINDOW_END"))
    options.add_argument("--window-hours", default=default("DRIFT_WINDOW_HOURS", "24"))
    options.add_argument("--reference-start", default=default("DRIFT_REFERENCE_START"))
    options.add_argument("--reference-end", default=default("DRIFT_REFERENCE_END"))
    options.add_argument("--reference-split", default=default("DRIFT_REFERENCE_SPLIT", "train"))
    for metric in METRIC_TYPES:
        variable = "DRIFT_%s_THRESHOLD" % metric.upper()
        fallback = DEFAULT_THRESHOLDS.get(metric)
        options.add_argument("--%s-threshold" % metric.replace("_", "-"), dest="%s_threshold" % metric,
                             default=default(variable, "none" if fallback is None else str(fallback)))
    options.add_argument("--bins", default=default("DRIFT_BINS", "10"))
    options.add_argument("--epsilon", default=default("DRIFT_EPSILON", "0.0001"))
    options.add_argument("--decision-threshold", default=default("DRIFT_DECISION_THRESHOLD", "0.5"))
    options.add_argument("--timeout", default=default("DRIFT_TIMEOUT", "900"), help="seconds for each BigQuery call")
    options.add_argument("--print-sql", action="store_true",
                         help="print the query and its parameters and send nothing (a feature without a kind is shown as numeric)")
    return options


def config_from(args, now=None):
    """Build (and validate) the Config from parsed arguments."""
    window_start = parse_time(args.window_start) if args.window_start else None
    window_end = parse_time(args.window_end) if args.window_end else None
    if window_start is None and window_end is None:
        hours = parse_number(args.window_hours, int, "window hours")
        now = now or datetime.datetime.now(datetime.timezone.utc)
        window_end = now.replace(minute=0, second=0, microsecond=0)
        window_start = window_end - datetime.timedelta(hours=hours)
    elif window_start is None or window_end is None:
        raise ConfigError("give both --window-start and --window-end, or neither (the last DRIFT_WINDOW_HOURS hours)")
    split = args.reference_split
    config = Config(
        project=args.project,
        job_project=args.job_project or None,
        dataset=args.dataset,
        location=args.location or None,
        window_start=window_start,
        window_end=window_end,
        features=tuple(Feature.parse(item) for item in args.features.split(",") if item.strip()),
        model_name=args.model_name or None,
        task_type=args.task_type,
        reference_start=parse_time(args.reference_start) if args.reference_start else None,
        reference_end=parse_time(args.reference_end) if args.reference_end else None,
        reference_split=None if split is None or split.strip() in ("", "*") else split.strip(),
        thresholds={metric: parse_threshold(getattr(args, "%s_threshold" % metric)) for metric in METRIC_TYPES},
        bins=parse_number(args.bins, int, "bins"),
        epsilon=parse_number(args.epsilon, float, "epsilon"),
        decision_threshold=parse_number(args.decision_threshold, float, "decision threshold"),
    )
    config.validate()
    return config


def make_client(config, env):
    """A BigQuery client: Application Default Credentials, or none against BIGQUERY_EMULATOR_HOST."""
    from google.cloud import bigquery  # pylint: disable=import-outside-toplevel

    project = config.job_project or config.project
    if env.get("BIGQUERY_EMULATOR_HOST"):
        from google.api_core.client_options import ClientOptions  # pylint: disable=import-outside-toplevel
        from google.auth.credentials import AnonymousCredentials  # pylint: disable=import-outside-toplevel

        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=env["BIGQUERY_EMULATOR_HOST"]))
    return bigquery.Client(project=project, location=config.location)


def _json_default(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return str(value)


def main(argv=None, env=None):
    env = os.environ if env is None else env
    args = parser(env).parse_args(argv)
    try:
        config = config_from(args)
        timeout = parse_number(args.timeout, float, "timeout")
    except ConfigError as exc:
        print("drift_job: invalid configuration: %s" % exc, file=sys.stderr)
        return 2
    if args.print_sql:
        from drift_job.job import build_query, query_parameters  # pylint: disable=import-outside-toplevel

        kinds = {feature.name: feature.kind or "numeric" for feature in config.features}
        print(build_query(config, kinds))
        for param in query_parameters(config):
            value = param.value.isoformat() if isinstance(param.value, datetime.datetime) else param.value
            print("-- %s %s = %s" % (param.name, param.type_, "NULL" if value is None else json.dumps(value)))
        return 0
    client = make_client(config, env)
    try:
        summary = run(config, client, timeout=timeout)
    except ConfigError as exc:  # a feature missing from the table, found by reading its schema
        print("drift_job: invalid configuration: %s" % exc, file=sys.stderr)
        return 2
    except Exception as exc:  # pylint: disable=broad-except
        print("drift_job: BigQuery failed: %s" % exc, file=sys.stderr)
        return 1
    summary.pop("rows")
    print(json.dumps(summary, default=_json_default, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
