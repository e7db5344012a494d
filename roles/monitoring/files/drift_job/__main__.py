"""Command line of the drift job: ``python -m drift_job [options]``.

Every option can also come from an environment variable, named in ``--help`` (the Cloud Run job sets the DRIFT_*
ones; a flag wins over a variable). The names the collection's other programs read work here too: the outputs
file of site.yml (outputs/<env>.env: MLOPS_PROJECT, MLOPS_DATASET, MODEL_NAME, BIGQUERY_API_ENDPOINT) can be
sourced as it is. With neither --window-start nor --window-end the job covers the last full DRIFT_WINDOW_HOURS
hours before now (UTC, whole hours), which is what a scheduled run wants.

Only the project, dataset, model and window are needed: the features, the label, the task (regression or
classification), the positive class and the label delay are read from offline_features (its columns, and the
model config the bigquery role writes into its description); the options below override them.

It prints one JSON object (the summary: every metric written, for the window and for the earlier windows whose
quality it re-scored, and any warning) on stdout, and each warning on stderr too; exit status 0 on success, 2 for
a bad configuration (nothing was written), 1 when BigQuery failed.
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


def _env(env, names, fallback=None):
    """The first of `names` set (non-empty) in `env`, else `fallback`."""
    for name in names:
        if env.get(name):
            return env[name]
    return fallback


def parser(env):
    options = argparse.ArgumentParser(
        prog="python -m drift_job", description="Drift and quality metrics in BigQuery for one time window.",
        epilog="A flag wins over its environment variable; of several variables, the first one set is used.")

    def option(flag, names, fallback=None, text="", **kwargs):
        """A flag whose default comes from the environment variables `names`, which its help lists."""
        where = " (env: %s)" % ", ".join(names)
        shown = "" if fallback in (None, "") else " [default: %s]" % fallback
        options.add_argument(flag, default=_env(env, names, fallback), help=text + shown + where, **kwargs)

    option("--project", ["DRIFT_PROJECT", "MLOPS_PROJECT", "GOOGLE_CLOUD_PROJECT"], text="project of the mlops dataset")
    option("--job-project", ["DRIFT_JOB_PROJECT"],
           text="project that runs (and pays for) the queries [default: --project]")
    option("--dataset", ["DRIFT_DATASET", "MLOPS_DATASET"], "mlops", text="dataset of the mlops tables")
    option("--location", ["DRIFT_LOCATION"], text="BigQuery location of the dataset [default: the client's]")
    option("--bigquery-endpoint", ["BIGQUERY_API_ENDPOINT", "BIGQUERY_EMULATOR_HOST"],
           text="URL (or host:port) of a BigQuery emulator; no credentials are used then")
    option("--model-name", ["DRIFT_MODEL_NAME", "MODEL_NAME"],
           text="model to compute for [default: every model with predictions in the window; earlier windows are "
                "re-scored only for a named model]")
    option("--features", ["DRIFT_FEATURES"], "",
           text="name[:kind],... (kind: numeric or categorical, else from the column type) [default: every column "
                "of offline_features but entity_id, event_timestamp, split, ingested_at and the label]")
    option("--label", ["DRIFT_LABEL"], text="label column of offline_features [default: the model config's]")
    option("--task-type", ["DRIFT_TASK_TYPE"], choices=TASK_TYPES,
           text="regression (mae, rmse) or classification (accuracy, precision, recall, log_loss) [default: the "
                "model config's, else regression]")
    option("--positive-class", ["DRIFT_POSITIVE_CLASS"],
           text="the class a binary classifier's probability (prediction) is about [default: the model config's, "
                "else true for a BOOLEAN label, 1 for a numeric one]")
    option("--label-delay-days", ["DRIFT_LABEL_DELAY_DAYS"],
           text="days after a window's end that its outcomes may still arrive: the quality of the model's windows "
                "that ended within them is computed again [default: the model config's, else 0]")
    option("--window-start", ["DRIFT_WINDOW_START"], text="start of the window, RFC 3339 (no offset: UTC)")
    option("--window-end", ["DRIFT_WINDOW_END"], text="end of the window (exclusive), RFC 3339")
    option("--window-hours", ["DRIFT_WINDOW_HOURS"], "24",
           text="without --window-start/--window-end: the last full hours before now")
    option("--reference-start", ["DRIFT_REFERENCE_START"],
           text="reference rows of offline_features from [default: all]")
    option("--reference-end", ["DRIFT_REFERENCE_END"], text="reference rows until [default: the window start]")
    option("--reference-split", ["DRIFT_REFERENCE_SPLIT"], "train",
           text='split of the reference rows ("*": every split)')
    for metric in METRIC_TYPES:
        fallback = DEFAULT_THRESHOLDS.get(metric)
        option("--%s-threshold" % metric.replace("_", "-"), ["DRIFT_%s_THRESHOLD" % metric.upper()],
               "none" if fallback is None else str(fallback), dest="%s_threshold" % metric,
               text="threshold of %s (none: no threshold, no flag)" % metric)
    option("--bins", ["DRIFT_BINS"], "10", text="quantile bins of a numeric feature's PSI")
    option("--epsilon", ["DRIFT_EPSILON"], "0.0001", text="share given to an empty PSI bin")
    option("--decision-threshold", ["DRIFT_DECISION_THRESHOLD"], "0.5",
           text="probability at or above which a prediction without a class means the positive class")
    option("--timeout", ["DRIFT_TIMEOUT"], "900", text="seconds for each BigQuery call")
    options.add_argument("--print-sql", action="store_true",
                         help="print the MERGE and its parameters and send nothing (needs --features; a feature "
                              "without a kind is shown as numeric)")
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
    delay = args.label_delay_days
    delay = parse_number(delay, int, "label delay") if delay not in (None, "") else None
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
        task_type=args.task_type or None,
        label=args.label or None,
        positive_class=args.positive_class if args.positive_class not in (None, "") else None,
        label_delay_days=delay,
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


def endpoint_url(value):
    """An emulator address as a URL: BIGQUERY_EMULATOR_HOST is often host:port without a scheme."""
    value = value.strip().rstrip("/")
    return value if "://" in value else "http://" + value


def make_client(config, endpoint=None):
    """A BigQuery client: Application Default Credentials, or none against an emulator at `endpoint`."""
    from google.cloud import bigquery  # pylint: disable=import-outside-toplevel

    project = config.job_project or config.project
    if endpoint:
        from google.api_core.client_options import ClientOptions  # pylint: disable=import-outside-toplevel
        from google.auth.credentials import AnonymousCredentials  # pylint: disable=import-outside-toplevel

        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=endpoint_url(endpoint)))
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

        if not config.features:
            print("drift_job: invalid configuration: --print-sql needs --features (a run reads them from "
                  "offline_features)", file=sys.stderr)
            return 2
        kinds = {feature.name: feature.kind or "numeric" for feature in config.features}
        print(build_query(config, kinds))
        for param in query_parameters(config):
            value = param.value.isoformat() if isinstance(param.value, datetime.datetime) else param.value
            print("-- %s %s = %s" % (param.name, param.type_, "NULL" if value is None else json.dumps(value)))
        return 0
    client = make_client(config, args.bigquery_endpoint)
    try:
        summary = run(config, client, timeout=timeout)
    except ConfigError as exc:  # found by reading offline_features: a missing column, a broken model config
        print("drift_job: invalid configuration: %s" % exc, file=sys.stderr)
        return 2
    except Exception as exc:  # pylint: disable=broad-except
        print("drift_job: BigQuery failed: %s" % exc, file=sys.stderr)
        return 1
    for warning in summary["warnings"]:
        print("drift_job: warning: %s" % warning, file=sys.stderr)
    summary.pop("rows")  # the same rows as "metrics", with computed_at
    print(json.dumps(summary, default=_json_default, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
