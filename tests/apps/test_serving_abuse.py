"""The serving process under abusive requests (loopback only, a bounded number, within seconds): its peak
memory stays within the role's memory limit, and every prediction it acknowledged reaches BigQuery.

The requests are those of the security review: four concurrent 32 MB bodies of 240k instances (Cloud Run's
request cap), a 2 MB entity_id, 200k unknown keys, an integer of 4000 digits, the key "\\ud800"; plus as many
concurrent bodies of the body limit, in the shape that costs the most memory once decoded, as the role lets
one instance take (serving_concurrency), which is what the role's memory sizing is about."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml
from google.api_core.exceptions import GoogleAPICallError

from tests.apps.conftest import ROOT, instance, stop_group, table_rows, wait_http, wait_until
from tests.standins import services

pytestmark = pytest.mark.xdist_group("apps")

SERVING = ROOT / "roles" / "serving" / "files"
DEFAULTS = yaml.safe_load((ROOT / "roles" / "serving" / "defaults" / "main.yml").read_text())
UNITS = {"Mi": 2 ** 20, "Gi": 2 ** 30, "M": 10 ** 6, "G": 10 ** 9}


def memory_limit_bytes(text):
    number, unit = re.fullmatch(r"([0-9]+)(Mi|Gi|M|G)", text).groups()
    return int(number) * UNITS[unit]


def peak_rss(pid):
    """VmHWM (peak resident set) of the process and of its children, in bytes."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = open("/proc/%d/status" % current, encoding="ascii").read()
        except FileNotFoundError:
            continue
        total += int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) * 1024
        for task in os.listdir("/proc/%d/task" % current):
            try:
                children = open("/proc/%d/task/%s/children" % (current, task), encoding="ascii").read().split()
            except FileNotFoundError:
                continue
            pids.extend(int(child) for child in children)
    return total


def send_raw(port, body, chunked=False, timeout=60):
    """POST /predict over a plain socket: the status, or "reset" when the server closed the connection
    before the client could read an answer (it may refuse a body over the limit without reading it)."""
    head = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else "Content-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        try:
            connection.sendall(head.encode())
            step = 256 * 1024
            for start in range(0, len(body), step):
                piece = body[start:start + step]
                connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                connection.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused early: the answer, if any, is already waiting
        answer = b""
        try:
            while True:
                data = connection.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    match = re.match(rb"HTTP/1.1 (\d{3})", answer)
    return (int(match.group(1)) if match else "reset"), answer.partition(b"\r\n\r\n")[2]


def worst_case_body(limit):
    """A body of `limit` bytes whose decoded form is the largest: empty objects (26x in tracemalloc)."""
    head = json.dumps({"features": instance()})[:-2].encode() + b', "x": ['
    count = (limit - len(head) - 3) // 3
    return head + b",".join([b"{}"] * count) + b"]}}"


def test_abusive_requests_stay_within_the_memory_limit(mlflow_server, registered_model, predictions_table,
                                                       bigquery_emulator, tmp_path):
    limit = int(DEFAULTS["serving_max_body_bytes"])
    concurrency = int(DEFAULTS["serving_concurrency"])
    memory = memory_limit_bytes(DEFAULTS["serving_memory"])
    project, dataset, table = predictions_table.split(".")
    port = services.free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "MODEL_", "LOG_", "MAX_"))}
    env.update({"PYTHONPATH": str(SERVING), "PORT": str(port), "HOST": "127.0.0.1", "HOME": str(tmp_path),
                "MLFLOW_TRACKING_URI": mlflow_server.url, "MODEL_NAME": registered_model.name,
                "BIGQUERY_PROJECT": project, "BIGQUERY_DATASET": dataset, "BIGQUERY_TABLE": table,
                "BIGQUERY_API_ENDPOINT": bigquery_emulator, "MAX_BODY_BYTES": str(limit),
                "LOG_FLUSH_INTERVAL": "0.5"})
    log_path = tmp_path / "serving.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "mlops_serving"], env=env, cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = "http://127.0.0.1:%d" % port
    acknowledged, statuses = [], {}
    stop = threading.Event()

    def normal_traffic():
        session = requests.Session()
        tenure = 0
        while not stop.is_set():
            tenure = (tenure + 1) % 70
            response = session.post(url + "/predict", json={"features": instance(tenure=tenure)}, timeout=60)
            if response.status_code == 200:
                acknowledged.append(response.json()["prediction_id"])
            time.sleep(0.05)

    huge = json.dumps({"instances": [{"features": instance()}] * 240000}).encode()  # about 32 MB
    abusive = {
        "32MB-%d" % n: (huge, n % 2 == 1) for n in range(4)  # two with Content-Length, two chunked
    }
    abusive.update({
        "entity-2MB": (json.dumps({"features": instance(), "entity_id": "x" * 2 * 2 ** 20}).encode(), False),
        "entity-900KB": (json.dumps({"features": instance(), "entity_id": "x" * 900 * 1024}).encode(), False),
        "200k-keys": (json.dumps({"features": dict(instance(), **{"k%d" % n: 0 for n in range(200000)})}).encode(),
                      False),
        "80k-keys": (json.dumps({"features": dict(instance(), **{"k%d" % n: 0 for n in range(80000)})}).encode(),
                     False),
        "4000-digits": (json.dumps({"features": instance()}).replace("70.5", "1" * 4000).encode(), False),
        "surrogate": (b'{"features": {"\\ud800": 1, "tenure_months": 1, "monthly_charges": 1.0, '
                      b'"contract_type": "one_year"}}', False),
    })
    abusive.update({"worst-%d" % n: (worst_case_body(limit), n % 2 == 1) for n in range(concurrency)})
    try:
        wait_http(url + "/ready", process, timeout=120, log=log_path)
        baseline = peak_rss(process.pid)
        traffic = threading.Thread(target=normal_traffic, daemon=True)
        traffic.start()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(abusive)) as pool:
            futures = {name: pool.submit(send_raw, port, body, chunked) for name, (body, chunked) in abusive.items()}
            for name, future in futures.items():
                statuses[name] = future.result(timeout=120)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        stop.set()
        traffic.join(60)
        peak = peak_rss(process.pid)
        print("\nserving process: peak RSS %.0f MiB (%.0f MiB once ready) under %d abusive requests in %.1f s; "
              "memory limit %s" % (peak / 2 ** 20, baseline / 2 ** 20, len(abusive), elapsed, DEFAULTS["serving_memory"]))
        assert process.poll() is None, "the serving process died"
        assert requests.get(url + "/health", timeout=30).status_code == 200

        def all_written():
            try:
                written = {row["prediction_id"] for row in table_rows(bigquery_emulator, predictions_table)}
            except GoogleAPICallError:  # the emulator may fail a read while rows are being inserted: read again
                return False
            return set(acknowledged) <= written

        wait_until(all_written, timeout=60, message="every acknowledged prediction in BigQuery")
    finally:
        stop.set()
        stop_group(process)
    codes = {name: status for name, (status, _body) in statuses.items()}
    for name in ("32MB-0", "32MB-1", "32MB-2", "32MB-3", "entity-2MB", "200k-keys"):
        assert codes[name] in (413, "reset"), (name, codes[name])
    for name in ("entity-900KB", "80k-keys", "4000-digits", "surrogate"):
        assert codes[name] == 422, (name, codes[name], statuses[name][1][:300])
        assert len(statuses[name][1]) < 20000, (name, len(statuses[name][1]))
    assert all(codes["worst-%d" % n] == 422 for n in range(concurrency)), codes  # "x" is not a feature
    assert 413 in codes.values()
    assert acknowledged, "no normal request was served during the abuse"
    assert peak <= memory, "peak RSS %d MiB over the role's memory limit %s" % (peak // 2 ** 20,
                                                                                DEFAULTS["serving_memory"])
