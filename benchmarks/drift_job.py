"""The drift job in BigQuery SQL vs the pandas path: pull the same rows through the BigQuery API and compute
the same metrics in the client.

Prints figures; asserts nothing about time. Run from the repository root:

    .venv/bin/python -m benchmarks.drift_job [--rows 1000000] [--reference-rows 100000]

The BigQuery emulator gets the mlops tables with the schemas the bigquery role creates (feature and label
columns from inventories/local: the worked example's ten numeric features), `--reference-rows` training rows in offline_features, `--rows`
predictions in a one-day window (two model versions, the features as JSON as the serving API logs them,
the first numeric feature drifted by half a standard deviation, one feature missing in 1 % of the rows)
and ground truth for half of them. Then, for that window:

- SQL: `drift_job.run()`, the drift job's one MERGE statement (PSI on reference quantile bins, exact KS,
  mean shift, null rate, MAE/RMSE per version and overall, volume) and the read-back of the window's rows;
- pandas: the same predictions, reference rows and ground truth pulled with queries and
  `to_dataframe()` (REST pages, as a client without the Storage API gets them), then the same metrics
  with numpy/scipy. Its values are compared with the SQL's, so both paths compute the same thing.

Target: SQL >= 10x faster than the pandas path. On BigQuery proper the SQL runs on the service's
workers and the pull crosses the network; here both run on this machine, the emulator executing the SQL
with DuckDB.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "apps"))

UTC = datetime.timezone.utc
REFERENCE = (datetime.datetime(2026, 1, 1, tzinfo=UTC), datetime.datetime(2026, 2, 1, tzinfo=UTC))
WINDOW = (datetime.datetime(2026, 3, 1, tzinfo=UTC), datetime.datetime(2026, 3, 2, tzinfo=UTC))
MODEL = "bench"
BINS, EPSILON = 10, 1e-4
CATEGORIES = ("a", "b", "c", "d")


def stamp(value):
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- data ---------------------------------------------------------------------------------------------------
class Data:
    """Seeded columns for the inventory's features: reference (offline_features) and window (predictions)."""

    def __init__(self, features, rows, reference_rows, seed=1):
        self.features = features  # [(name, kind)]: kind numeric, integer (numeric, generated whole) or categorical
        self.rows, self.reference_rows = rows, reference_rows
        self.rng = np.random.default_rng(seed)
        numeric = [name for name, kind in features if kind != "categorical"]
        self.drifted = numeric[0] if numeric else None
        self.missing = numeric[-1] if len(numeric) > 1 else None
        self.reference = {name: self._column(i, kind, reference_rows, False) for i, (name, kind) in enumerate(features)}
        self.current = {name: self._column(i, kind, rows, name == self.drifted) for i, (name, kind) in enumerate(features)}
        self.predictions = np.round(self.rng.normal(100.0, 20.0, rows), 3)
        self.outcomes = np.round(self.predictions + self.rng.normal(0.0, 10.0, rows), 3)

    def _column(self, index, kind, count, drift):
        if kind == "categorical":
            return self.rng.choice(CATEGORIES, count, p=(0.4, 0.3, 0.2, 0.1))
        mean, scale = 10.0 * (index + 1), 2.0 * (index + 1)
        values = self.rng.normal(mean + (0.5 * scale if drift else 0.0), scale, count)
        return np.round(values).astype(np.int64) if kind == "integer" else np.round(values, 3)

    def offline_rows(self, label):
        span = (REFERENCE[1] - REFERENCE[0]) // (self.reference_rows + 1)  # floor: the last row stays inside
        for i in range(self.reference_rows):
            row = {"entity_id": "e-%d" % i, "event_timestamp": stamp(REFERENCE[0] + span * (i + 1)), "split": "train",
                   label: float(self.rng.normal(100.0, 20.0))}
            row.update({name: self._plain(self.reference[name][i]) for name, _kind in self.features})
            yield row

    @staticmethod
    def _plain(value):
        return value.item() if isinstance(value, np.generic) else value

    def prediction_rows(self):
        span = (WINDOW[1] - WINDOW[0]) // (self.rows + 1)  # floor: the last row stays inside the window
        for i in range(self.rows):
            features = {name: self._plain(self.current[name][i]) for name, _kind in self.features}
            if self.missing and i % 100 == 0:
                del features[self.missing]
            yield {"prediction_id": "p-%d" % i, "entity_id": "e-%d" % i, "timestamp": stamp(WINDOW[0] + span * (i + 1)),
                   "model_name": MODEL, "model_version": "1" if i < self.rows // 2 else "2", "model_alias": "champion",
                   "features": json.dumps(features, separators=(",", ":")), "prediction": float(self.predictions[i]),
                   "latency_ms": 1.0}

    def truth_rows(self):
        """The outcome of every other prediction, a day after the window."""
        when = stamp(WINDOW[1] + datetime.timedelta(days=1))
        for i in range(0, self.rows, 2):
            yield {"prediction_id": "p-%d" % i, "entity_id": "e-%d" % i, "timestamp": when,
                   "label_value": float(self.outcomes[i]), "source": "bench"}


def chunks(iterable, size):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def insert_all(client, table, rows, chunk=10000):
    """insertAll in chunks (two requests in flight); the number of rows."""
    def send(batch):
        errors = client.insert_rows_json(table, batch, row_ids=[None] * len(batch), retry=None, timeout=300)
        if errors:
            raise RuntimeError("insert into %s failed: %s" % (table, errors[:2]))
        return len(batch)

    with ThreadPoolExecutor(2) as pool:
        return sum(pool.map(send, chunks(rows, chunk)))


# -- the pandas path ------------------------------------------------------------------------------------------
def pull(client, sql, params):
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=params)
    return client.query(sql, job_config=config, retry=None, job_retry=None, timeout=600).result(
        timeout=600, retry=None).to_dataframe(create_bqstorage_client=False)


def pandas_pull(client, project, dataset, features, label):
    from google.cloud import bigquery

    table = "%s.%s.%%s" % (project, dataset)
    window = [bigquery.ScalarQueryParameter("start", "TIMESTAMP", WINDOW[0]),
              bigquery.ScalarQueryParameter("end", "TIMESTAMP", WINDOW[1])]
    timings = {}
    started = time.perf_counter()
    predictions = pull(client, "SELECT prediction_id, entity_id, timestamp, model_name, model_version, features, "
                               "prediction FROM `%s` WHERE timestamp >= @start AND timestamp < @end AND model_name = @model"
                       % (table % "predictions"), window + [bigquery.ScalarQueryParameter("model", "STRING", MODEL)])
    timings["predictions"] = time.perf_counter() - started
    started = time.perf_counter()
    columns = ", ".join(name for name, _kind in features) or label
    sql = ("SELECT %s FROM `%s` WHERE event_timestamp >= @rstart AND event_timestamp < @rend AND split = 'train'"
           % (columns, table % "offline_features"))
    reference = pull(client, sql,
                     [bigquery.ScalarQueryParameter("rstart", "TIMESTAMP", REFERENCE[0]),
                      bigquery.ScalarQueryParameter("rend", "TIMESTAMP", REFERENCE[1])])
    timings["reference"] = time.perf_counter() - started
    started = time.perf_counter()
    truth = pull(client, "SELECT prediction_id, entity_id, timestamp, label_value FROM `%s` WHERE timestamp >= @start"
                 % (table % "ground_truth"), window[:1])
    timings["ground_truth"] = time.perf_counter() - started
    return predictions, reference, truth, timings


def psi(ref_counts, cur_counts):
    seen = (ref_counts + cur_counts) > 0
    p_ref = np.where(ref_counts == 0, EPSILON, ref_counts / max(ref_counts.sum(), 1))[seen]
    p_cur = np.where(cur_counts == 0, EPSILON, cur_counts / max(cur_counts.sum(), 1))[seen]
    return float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))


def pandas_metrics(predictions, reference, truth, features):
    """The drift job's metrics for one model, computed in the client: {(version, feature, metric): value}."""
    import pandas as pd
    from scipy import stats

    metrics = {}
    parsed = [value if isinstance(value, dict) else json.loads(value) for value in predictions["features"]]
    current = pd.DataFrame.from_records(parsed, columns=[name for name, _kind in features])
    count = len(predictions)
    for name, kind in features:
        if kind != "categorical":
            values = pd.to_numeric(current[name], errors="coerce").to_numpy(dtype=float)
            present = values[~np.isnan(values)]
            ref = reference[name].astype(float).to_numpy()
            ref = ref[~np.isnan(ref)]
            edges = np.unique(np.quantile(ref, np.arange(1, BINS) / BINS, method="inverted_cdf"))
            metrics[(None, name, "psi")] = psi(
                np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1),
                np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1))
            metrics[(None, name, "ks")] = float(stats.ks_2samp(ref, present).statistic)
            metrics[(None, name, "mean_shift")] = float((present.mean() - ref.mean()) / ref.std(ddof=1))
            metrics[(None, name, "null_rate")] = float(1 - len(present) / count)
        else:
            cur = current[name].dropna().astype(str)
            ref = reference[name].dropna().astype(str)
            categories = sorted(set(cur.unique()) | set(ref.unique()))
            metrics[(None, name, "psi")] = psi(ref.value_counts().reindex(categories, fill_value=0).to_numpy(),
                                               cur.value_counts().reindex(categories, fill_value=0).to_numpy())
            metrics[(None, name, "null_rate")] = float(current[name].isna().sum() / count)
    latest = truth[truth["prediction_id"].notna()].sort_values("timestamp").drop_duplicates("prediction_id", keep="last")
    joined = predictions.merge(latest[["prediction_id", "label_value"]], on="prediction_id")
    errors = joined["prediction"] - joined["label_value"]
    for version, group in [(None, errors)] + [(v, errors[joined["model_version"] == v])
                                              for v in sorted(joined["model_version"].unique())]:
        metrics[(version, None, "mae")] = float(group.abs().mean())
        metrics[(version, None, "rmse")] = float(math.sqrt((group ** 2).mean()))
    metrics[(None, None, "volume")] = float(count)
    for version, size in predictions.groupby("model_version").size().items():
        metrics[(version, None, "volume")] = float(size)
    return metrics


# -- the benchmark ----------------------------------------------------------------------------------------------
def create_tables(client, project, dataset):
    """The four mlops tables with the bigquery role's schemas and the local settings' feature and label columns
    (what site.yml creates); returns ([(feature, kind)], label column)."""
    import drift_fixtures  # tests/apps: the tables as the bigquery role declares them
    import yaml
    from google.cloud import bigquery

    from tests.standins.inventory import settings

    inventory = settings("local")
    schemas = drift_fixtures.table_schemas(inventory["mlops_features"], inventory["mlops_label"])
    role_vars = yaml.safe_load((ROOT / "roles" / "bigquery" / "vars" / "main.yml").read_text())
    client.create_dataset(bigquery.Dataset("%s.%s" % (project, dataset)), retry=None, timeout=60)
    for spec in role_vars["bigquery_tables"]:
        columns = schemas[spec["table_id"]][0]
        table = bigquery.Table("%s.%s.%s" % (project, dataset, spec["table_id"]), schema=[
            bigquery.SchemaField(column["name"], column["type"], mode=column.get("mode", "NULLABLE")) for column in columns])
        table.time_partitioning = bigquery.TimePartitioning(type_=spec["time_partitioning"]["type"],
                                                            field=spec["time_partitioning"]["field"])
        table.clustering_fields = spec["clustering"]
        client.create_table(table, retry=None, timeout=60)
    kinds = {"INTEGER": "integer", "INT64": "integer", "STRING": "categorical", "BOOLEAN": "categorical"}
    features = [(column["name"], kinds.get(column["type"].upper(), "numeric")) for column in inventory["mlops_features"]]
    return features, inventory["mlops_label"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1000000, help="predictions in the window")
    parser.add_argument("--reference-rows", type=int, default=100000, help="training rows in offline_features")
    args = parser.parse_args()

    from drift_fixtures import PROJECT, client_for, import_drift_job
    from tests.standins import services

    drift_job = import_drift_job()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as log_dir:
        process, url = services.start("bigquery", services.free_port(), Path(log_dir) / "bigquery.log", project=PROJECT)
        try:
            client = client_for(url)
            dataset = "bench_drift"
            features, label = create_tables(client, PROJECT, dataset)
            run(args, client, PROJECT, dataset, features, label, drift_job)
        finally:
            services.stop_process(process.pid)


def run(args, client, project, dataset, features, label, drift_job):  # pylint: disable=too-many-arguments,too-many-positional-arguments,too-many-locals
    data = Data(features, args.rows, args.reference_rows)
    table = "%s.%s.%%s" % (project, dataset)
    started = time.perf_counter()
    insert_all(client, table % "offline_features", data.offline_rows(label["name"]))
    loaded = insert_all(client, table % "predictions", data.prediction_rows())
    truths = insert_all(client, table % "ground_truth", data.truth_rows())
    print("loaded %d reference rows, %d predictions, %d ground truth rows into the emulator in %.0fs (features: %s)"
          % (args.reference_rows, loaded, truths, time.perf_counter() - started,
             ", ".join("%s:%s" % item for item in features)))

    config = drift_job.Config(project=project, dataset=dataset, window_start=WINDOW[0], window_end=WINDOW[1],
                              features=tuple(drift_job.Feature(name, "categorical" if kind == "categorical" else "numeric")
                                             for name, kind in features),
                              model_name=MODEL, task_type="regression", reference_start=REFERENCE[0],
                              reference_end=REFERENCE[1], bins=BINS, epsilon=EPSILON)
    started = time.perf_counter()
    summary = drift_job.run(config, client, timeout=1800, retry=None)
    sql_seconds = time.perf_counter() - started
    sql = {(row["model_version"], row["feature"], row["metric_type"]): row["value"] for row in summary["rows"]}

    started = time.perf_counter()
    predictions, reference, truth, pulls = pandas_pull(client, project, dataset, features, label["name"])
    pull_seconds = time.perf_counter() - started
    started = time.perf_counter()
    local = pandas_metrics(predictions, reference, truth, features)
    compute_seconds = time.perf_counter() - started

    common = sorted(set(sql) & set(local), key=str)
    differences = [abs(sql[key] - local[key]) / max(abs(local[key]), 1e-12) for key in common]
    worst = max(zip(differences, common)) if common else (float("nan"), None)
    pandas_seconds = pull_seconds + compute_seconds
    print("\n%d predictions (window %s to %s), %d reference rows, %d ground truth rows, %d features"
          % (len(predictions), WINDOW[0].date(), WINDOW[1].date(), len(reference), len(truth), len(features)))
    print("drift job (BigQuery SQL, one MERGE + read-back): %8.1f s   %d metric rows written" % (sql_seconds, len(sql)))
    print("pandas path:                                     %8.1f s   = pull %.1f s (predictions %.1f, reference %.1f, "
          "ground truth %.1f) + compute %.1f s" % (
              pandas_seconds, pull_seconds, pulls["predictions"], pulls["reference"], pulls["ground_truth"],
              compute_seconds))
    print("ratio pandas / SQL: %.1fx   (target >= 10x)" % (pandas_seconds / sql_seconds))
    print("same results: %d metrics compared, largest relative difference %.2g (%s)" % (len(common), worst[0], worst[1]))
    if data.drifted:
        print("drifted feature %s: PSI %.3f, KS %.3f (SQL)   %.3f, %.3f (pandas)" % (
            data.drifted, sql[(None, data.drifted, "psi")], sql[(None, data.drifted, "ks")],
            local[(None, data.drifted, "psi")], local[(None, data.drifted, "ks")]))


if __name__ == "__main__":
    main()
