"""Serving throughput and latency: the serving API (predictions logged to BigQuery off the request path, in
batches) side by side with a baseline that inserts each prediction into BigQuery inside the request.

Prints figures; asserts nothing about time. Run from the repository root:

    .venv/bin/python -m benchmarks.serving_throughput [--duration 10] [--concurrency 1,8,32]

Everything is real and local: PostgreSQL, the MLflow server (through its image's entrypoint, artifacts on
the Cloud Storage emulator), a registered scikit-learn pipeline (by default the worked example's ridge
regression on the diabetes data, `--model churn` for the tests' classifier), the BigQuery emulator, and
both apps as their own uvicorn processes (one worker each), loaded from this process by asyncio clients on
keep-alive connections, one instance per request (a client asking for one entity). The CPU time each
process spent per acknowledged prediction is printed next to the latencies: on this shared 2-core machine
the processes compete for the same cores, so that is the figure that carries over to a dedicated instance.

The baseline (`baseline_app` below) is the seed's design made fair: the same model object, loading code
and input validation as the serving API (mlops_serving.model), the same request and row shapes, and a
synchronous `insertAll` of the request's row before answering (the client library's default retry, 10 s
per attempt); an insert that fails answers 503, so it never acknowledges a prediction it did not log.

Per concurrency level: requests/s, p50 and p99 latency, answers that were not 200, CPU per prediction.
Then each app is stopped with SIGTERM (the serving API flushes its queue) and the predictions it
acknowledged are compared with the rows its table holds. The outage run repeats the load with BigQuery
unreachable for 10 s in the middle (a proxy in front of the emulator refuses connections), then counts
acknowledged vs stored again. Targets: throughput at concurrency 32 >= 5x the baseline's; no acknowledged
prediction missing after the outage. The emulator answers an insert in a few milliseconds where BigQuery
takes tens (which flatters the baseline's latency) but burns more CPU per insert on this machine than
BigQuery would on the instance (which handicaps the baseline's throughput here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVING_DIR = ROOT / "roles" / "serving" / "files"
CONTRACTS = ("month_to_month", "one_year", "two_year")
MODELS = {"diabetes": "the worked example's scikit-learn pipeline: scaling + ridge regression on 10 features",
          "churn": "the tests' scikit-learn pipeline: one-hot encoding + logistic regression, with probabilities"}


# -- the baseline app ------------------------------------------------------------------------------------
def baseline_app(settings):
    """FastAPI app: validate, predict, insert the row synchronously into BigQuery, answer."""
    import json
    import uuid
    from datetime import datetime, timezone

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from mlops_serving.app import Instance, PredictRequest
    from mlops_serving.model import ModelManager
    from mlops_serving.prediction_log import bigquery_client

    manager = ModelManager(settings.tracking_uri, settings.model_name, settings.model_alias, poll_interval=0)
    client = bigquery_client(settings.bigquery_project, settings.bigquery_endpoint)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        manager.refresh()  # resolve the alias and load the model before serving
        yield

    app = FastAPI(title="baseline: synchronous insert per request", lifespan=lifespan)

    @app.get("/ready")
    def ready():
        return {"ready": manager.current is not None}

    def predict(body: PredictRequest):
        model = manager.current
        single = body.features is not None
        instances = [Instance(features=body.features, entity_id=body.entity_id)] if single else body.instances
        errors = []
        for index, instance in enumerate(instances):
            errors.extend(model.validate(instance.features, ["body", "features"] if single else
                                         ["body", "instances", index, "features"]))
        if errors:
            return JSONResponse({"detail": errors}, status_code=422)
        timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        outputs, latency_ms = model.predict([instance.features for instance in instances])
        ids = [str(uuid.uuid4()) for _i in instances]
        rows = [{"prediction_id": prediction_id, "entity_id": instance.entity_id, "timestamp": timestamp,
                 "model_name": model.name, "model_version": model.version, "model_alias": model.alias,
                 "features": json.dumps(instance.features, separators=(",", ":")), "prediction": output.numeric,
                 "prediction_label": output.label, "latency_ms": latency_ms}
                for prediction_id, instance, output in zip(ids, instances, outputs)]
        try:
            failed = client.insert_rows_json(settings.table_path, rows, row_ids=ids, timeout=settings.insert_timeout)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # not logged: not acknowledged
            return JSONResponse({"detail": "prediction not logged: %s" % type(exc).__name__}, status_code=503)
        if failed:
            return JSONResponse({"detail": "prediction not logged: %s" % failed[:1]}, status_code=503)
        results = [{"prediction_id": prediction_id, "prediction": output.value}
                   for prediction_id, output in zip(ids, outputs)]
        envelope = {"model_name": model.name, "model_version": model.version, "model_alias": model.alias}
        return JSONResponse(dict(results[0], **envelope) if single else dict(envelope, predictions=results))

    predict.__annotations__["body"] = PredictRequest  # a class, not the string `from __future__` leaves
    app.post("/predict")(predict)
    return app


def serve_baseline():
    """`python -m benchmarks.serving_throughput --serve-baseline`: the baseline on $PORT, configured like
    the serving API (its environment variables)."""
    import uvicorn
    from mlops_serving import Settings

    uvicorn.run(baseline_app(Settings.from_env(os.environ)), host="127.0.0.1", port=int(os.environ["PORT"]),
                workers=1, log_level="warning", access_log=False)


# -- processes ----------------------------------------------------------------------------------------------
class App:
    """One app as a uvicorn process on a free port, logging to its own table."""

    def __init__(self, kind, stack, table, bigquery_endpoint, log_dir):
        from tests.standins import services

        self.kind = kind
        self.table = table
        self.port = services.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = Path(log_dir) / ("%s-%s.log" % (kind, table))
        env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "MODEL_", "LOG_"))}
        env.update({"PYTHONPATH": os.pathsep.join([str(SERVING_DIR), str(ROOT)]), "PORT": str(self.port),
                    "HOST": "127.0.0.1", "MLFLOW_TRACKING_URI": stack["mlflow"].url, "MODEL_NAME": stack["model"].name,
                    "BIGQUERY_PROJECT": stack["project"], "BIGQUERY_DATASET": stack["dataset"],
                    "BIGQUERY_TABLE": table, "BIGQUERY_API_ENDPOINT": bigquery_endpoint, "LOG_LEVEL": "INFO",
                    "HOME": str(log_dir)})
        command = [sys.executable, "-m", "mlops_serving"] if kind == "serving" else \
            [sys.executable, "-m", "benchmarks.serving_throughput", "--serve-baseline"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log,  # pylint: disable=consider-using-with
                                            stderr=subprocess.STDOUT, start_new_session=True)
        from tests.apps.conftest import wait_http

        wait_http(self.url + "/ready", self.process, timeout=180, log=self.log)

    def metrics(self):
        """The serving API's prediction log counters (from /metrics)."""
        import httpx

        text = httpx.get(self.url + "/metrics", timeout=10).text
        values = {}
        for name in ("written", "failed", "dropped", "rejected"):
            match = re.search(r"^mlops_serving_prediction_log_rows_%s_total (\S+)$" % name, text, re.M)
            values[name] = int(float(match.group(1))) if match else None
        return values

    def stop(self):
        """SIGTERM (Cloud Run's stop): the serving API flushes its queue before it exits. Returns the
        serving API's closing line (rows written, failed, dropped), None for the baseline."""
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        closing = re.findall(r"prediction log closed: [^\"]*", self.log.read_text(errors="replace"))
        return closing[-1] if closing else None


# -- load -------------------------------------------------------------------------------------------------
def churn_body(number):
    return {"features": {"tenure_months": number % 72, "monthly_charges": 20.0 + (number * 7.3) % 100,
                         "contract_type": CONTRACTS[number % 3]}, "entity_id": "bench-%d" % number}


def diabetes_bodies():
    """One request body per patient of the worked example's data set."""
    from examples import diabetes_progression as example
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    return [{"features": {column: float(row[origin]) for column, (origin, _d) in example.FEATURES.items()},
             "entity_id": "patient-%03d" % index} for index, row in frame.iterrows()]


def register_model(kind, tracking_uri, project):
    """The worked example's ridge regression (diabetes), or the tests' churn classifier; its request bodies."""
    from tests.apps import conftest

    if kind == "churn":
        return conftest.register_churn_model(tracking_uri, "bench-churn"), churn_body
    import pandas as pd
    from examples import diabetes_progression as example

    options = example.Options.from_args(example.parser({}).parse_args(
        ["--project", project, "--tracking-uri", tracking_uri, "--model-name", "bench-diabetes",
         "--experiment", "bench-serving"]))
    registered = example.train_and_register(options, pd.DataFrame(example.patients(options)))
    bodies = diabetes_bodies()
    model = conftest.RegisteredModel(name=options.model_name, version=registered["version"],
                                     run_id=registered["run_id"], kind="regressor")
    return model, lambda number: bodies[number % len(bodies)]


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection (httpx costs the load generator more CPU than the
    apps spend on a request, on the same cores as the apps)."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path, payload):
        """(status, headers, body) of one POST; reconnects when the server closed the connection."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        request = b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
            path.encode(), self.host.encode(), self.port, len(payload))
        self.writer.write(request + payload)
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict((key.strip().lower(), value.strip()) for key, sep, value in
                       (line.partition(":") for line in head[1:]) if sep)
        body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(head[0].split()[1]), headers, body

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def load(url, body, concurrency, duration, events=None):
    """`concurrency` clients posting one instance at a time for `duration` seconds.

    Returns (latencies of 200 answers in seconds, acknowledged prediction ids, count of other answers or
    errors, elapsed seconds). `events` maps seconds since the start to callables run then (the outage).
    """
    host, port = url.split("//")[1].split(":")
    latencies, acknowledged, failures = [], [], [0, None]  # count, first failure
    counter = iter(range(10 ** 9))
    started = time.perf_counter()
    deadline = started + duration

    async def worker():
        connection = Connection(host, int(port))
        while time.perf_counter() < deadline:
            payload = json.dumps(body(next(counter))).encode()
            sent = time.perf_counter()
            try:
                status, headers, answer = await asyncio.wait_for(connection.post("/predict", payload), 120)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                connection.close()
                failures[0] += 1
                failures[1] = failures[1] or repr(exc)
                continue
            if status == 200:
                latencies.append(time.perf_counter() - sent)
                acknowledged.append(json.loads(answer)["prediction_id"])
            else:
                failures[0] += 1
                failures[1] = failures[1] or "%d %s" % (status, answer[:300].decode(errors="replace"))
                if status == 503:
                    await asyncio.sleep(float(headers.get("retry-after") or 0))
        connection.close()

    async def scheduler():
        for at, action in sorted((events or {}).items()):
            await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
            await asyncio.get_running_loop().run_in_executor(None, action)

    await asyncio.gather(scheduler(), *(worker() for _i in range(concurrency)))
    elapsed = time.perf_counter() - started
    if failures[1]:
        print("  (%s, %d clients: %d answers not 200, the first: %s)" % (url, concurrency, failures[0], failures[1]))
    return latencies, acknowledged, failures[0], elapsed


def cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc), or NaN."""
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, share):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def stored_ids(endpoint, project, dataset, table):
    from tests.apps.conftest import bigquery_client

    client = bigquery_client(endpoint)
    rows = client.query("SELECT prediction_id FROM `%s.%s.%s`" % (project, dataset, table)).result(timeout=300)
    return [row["prediction_id"] for row in rows]


def report_rows(label, acknowledged, stored, extra=""):
    acknowledged_set, stored_set = set(acknowledged), set(stored)
    missing = len(acknowledged_set - stored_set)
    print("  %-9s acknowledged %7d   rows in BigQuery %7d   missing %d   duplicates %d%s" % (
        label, len(acknowledged_set), len(stored), missing, len(stored) - len(stored_set), extra))
    return missing


# -- the benchmark ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def stack_up(log_dir, model_kind):
    """Emulators, PostgreSQL, MLflow and a registered model; torn down at the end."""
    from tests.apps import conftest
    from tests.standins import services

    processes = []
    postgres = mlflow = None
    try:
        for name in ("bigquery", "storage"):
            process, url = services.start(name, services.free_port(), Path(log_dir) / ("%s.log" % name),
                                          project=conftest.PROJECT)
            processes.append((name, process, url))
        urls = {name: url for name, _process, url in processes}
        postgres = conftest.start_postgres()
        started = time.perf_counter()
        mlflow = conftest.start_mlflow(postgres, urls["storage"], log_dir)
        print("MLflow up in %.1fs (migrate + serve)" % (time.perf_counter() - started))
        model, body = register_model(model_kind, mlflow.url, conftest.PROJECT)
        print("registered %s version %s (%s)" % (model.name, model.version, MODELS[model_kind]))
        yield {"bigquery": urls["bigquery"], "bigquery_pid": processes[0][1].pid, "mlflow": mlflow, "model": model,
               "body": body, "project": conftest.PROJECT, "dataset": conftest.DATASET}
    finally:
        if mlflow:
            mlflow.stop()
        if postgres:
            conftest.stop_postgres(postgres)
        for _name, process, _url in processes:
            services.stop_process(process.pid)


def run_levels(stack, kind, levels, duration, log_dir):
    from tests.apps.conftest import create_predictions_table

    table = "predictions_%s" % kind
    create_predictions_table(stack["bigquery"], table)
    app = App(kind, stack, table, stack["bigquery"], log_dir)
    results, acknowledged = {}, []
    try:
        acknowledged.extend(asyncio.run(load(app.url, stack["body"], 4, 2.0))[1])  # warm-up: not timed, but logged and counted
        for level in levels:
            pids = {"app": app.process.pid, "bigquery": stack["bigquery_pid"], "client": os.getpid()}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            latencies, ids, failures, elapsed = asyncio.run(load(app.url, stack["body"], level, duration))
            used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            acknowledged.extend(ids)
            results[level] = {"rps": len(latencies) / elapsed, "p50": percentile(latencies, 0.5) * 1000,
                              "p99": percentile(latencies, 0.99) * 1000, "failures": failures, "count": len(latencies),
                              "cpu": {name: seconds * 1000 / max(len(latencies), 1) for name, seconds in used.items()}}
        counters = app.metrics() if kind == "serving" else None
    finally:
        closing = app.stop()
    if counters:
        counters["closing"] = closing
    return results, acknowledged, table, counters


def outage_run(stack, kind, concurrency, duration, outage, log_dir):
    """Load for `duration` s with BigQuery unreachable from duration/3 for `outage` seconds."""
    from tests.apps.conftest import BigQueryGate, create_predictions_table

    table = "predictions_outage_%s" % kind
    create_predictions_table(stack["bigquery"], table)
    gate = BigQueryGate(stack["bigquery"])
    app = App(kind, stack, table, gate.url, log_dir)
    start = duration / 3.0
    try:
        latencies, ids, failures, elapsed = asyncio.run(load(app.url, stack["body"], concurrency, duration, {
            start: gate.down, start + outage: gate.up}))
        counters = app.metrics() if kind == "serving" else None
    finally:
        closing = app.stop()
        gate.close()
    if counters:
        counters["closing"] = closing
    result = {"rps": len(latencies) / elapsed, "p50": percentile(latencies, 0.5) * 1000,
              "p99": percentile(latencies, 0.99) * 1000, "failures": failures, "count": len(latencies)}
    return result, ids, table, counters


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per concurrency level")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--outage-concurrency", type=int, default=8)
    parser.add_argument("--outage-duration", type=float, default=30.0, help="seconds of load in the outage run")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds BigQuery is unreachable")
    parser.add_argument("--model", choices=sorted(MODELS), default="diabetes", help="model served")
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline()
        return
    levels = [int(level) for level in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as log_dir:
        os.chmod(log_dir, 0o755)
        with stack_up(log_dir, args.model) as stack:
            benchmark(stack, args, levels, log_dir)


def benchmark(stack, args, levels, log_dir):
    results, missing = {}, {}
    print("\n== load: %s s per level, one instance per request ==" % args.duration)
    for kind in ("serving", "baseline"):
        results[kind], acknowledged, table, counters = run_levels(stack, kind, levels, args.duration, log_dir)
        stored = stored_ids(stack["bigquery"], stack["project"], stack["dataset"], table)
        results[kind]["acknowledged"], results[kind]["stored"], results[kind]["counters"] = acknowledged, stored, counters
    print("%-11s %8s %10s %10s %10s %9s   %s" % ("app", "clients", "req/s", "p50 ms", "p99 ms", "not 200",
                                                 "CPU ms per prediction: app + BigQuery emulator (+ load generator)"))
    for level in levels:
        for kind in ("serving", "baseline"):
            row = results[kind][level]
            print("%-11s %8d %10.1f %10.1f %10.1f %9d   %5.2f + %5.2f (+ %4.2f)" % (
                kind, level, row["rps"], row["p50"], row["p99"], row["failures"], row["cpu"]["app"],
                row["cpu"]["bigquery"], row["cpu"]["client"]))
    for level in levels:
        ratio = results["serving"][level]["rps"] / max(results["baseline"][level]["rps"], 1e-9)
        print("throughput ratio at concurrency %d: %.1fx%s" % (
            level, ratio, "   (target >= 5x)" if level == 32 else ""))
    print("acknowledged vs stored, every level and the warm-up (after SIGTERM):")
    for kind in ("serving", "baseline"):
        data = results[kind]
        counters = data["counters"]
        extra = "" if not counters else "\n            %(closing)s; %(rejected)s refused with 503" % counters
        missing[kind] = report_rows(kind, data["acknowledged"], data["stored"], extra)

    print("\n== outage: %d clients for %.0f s, BigQuery unreachable from %.0f s to %.0f s ==" % (
        args.outage_concurrency, args.outage_duration, args.outage_duration / 3, args.outage_duration / 3 + args.outage))
    print("%-11s %10s %10s %10s %9s" % ("app", "req/s", "p50 ms", "p99 ms", "not 200"))
    outcome = {}
    for kind in ("serving", "baseline"):
        result, ids, table, counters = outage_run(stack, kind, args.outage_concurrency, args.outage_duration,
                                                  args.outage, log_dir)
        stored = stored_ids(stack["bigquery"], stack["project"], stack["dataset"], table)
        outcome[kind] = (ids, stored, counters)
        print("%-11s %10.1f %10.1f %10.1f %9d" % (kind, result["rps"], result["p50"], result["p99"], result["failures"]))
    for kind in ("serving", "baseline"):
        ids, stored, counters = outcome[kind]
        extra = "" if not counters else "\n            %(closing)s; %(rejected)s refused with 503" % counters
        missing["outage " + kind] = report_rows(kind, ids, stored, extra)
    print("\nmissing acknowledged predictions after the outage (serving API): %d   (target 0)"
          % missing["outage serving"])


if __name__ == "__main__":
    main()
