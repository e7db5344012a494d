"""Prediction logging to BigQuery, off the request path.

Requests `offer()` their rows to a bounded in-memory queue and return; one background thread writes them
in batches with `tabledata.insertAll` (google-cloud-bigquery's insert_rows_json), each row with its
prediction_id as insertId, so a batch sent again after a lost answer is deduplicated by BigQuery. A shadow
row (served=false: a challenger's prediction of the same request) shares its prediction_id with the answer's
row, so its insertId is `<prediction_id>/shadow`: the same id would make BigQuery drop one of the two.

What happens to a row, and where it is counted (stats() and /metrics):
- written: BigQuery accepted it.
- retried: a failed request (connection error, 5xx, 429, or any answer but a 400) is sent again with
  exponential backoff and jitter, up to `max_retry_seconds` for that batch; a 400 or 413 for a batch of
  several rows splits it in two.
- failed: BigQuery rejected the row itself (insertErrors), or its batch still failed after
  `max_retry_seconds`; the row is logged in full on the `mlops_serving.dead_letter` logger (ERROR, one JSON
  line per row) so it can be replayed.
- dropped: still queued when shutdown's deadline passed; logged on the dead-letter logger the same way.
- rejected: `offer()` returns False when the rows do not fit in the queue; nothing is queued and the
  caller must not acknowledge the prediction (the API answers 503).
Every row offered is in exactly one of: queued, in flight, written, failed, dropped.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque

LOG = logging.getLogger("mlops_serving.prediction_log")
DEAD_LETTER = logging.getLogger("mlops_serving.dead_letter")
TRANSIENT_REASONS = ("backendError", "rateLimitExceeded", "internalError")


def bigquery_client(project, endpoint=None):
    """A BigQuery client: Application Default Credentials, or anonymous against an endpoint override."""
    from google.cloud import bigquery

    if endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=endpoint))
    return bigquery.Client(project=project)


def _status(exc):
    return getattr(exc, "code", None) if isinstance(getattr(exc, "code", None), int) else None


def is_request_error(exc):
    """True when BigQuery rejected the request itself (400/413): sending it again cannot succeed."""
    return _status(exc) in (400, 413) and not any(
        (e or {}).get("reason") in TRANSIENT_REASONS for e in (getattr(exc, "errors", None) or []))


class PredictionLogger:  # pylint: disable=too-many-instance-attributes
    """A bounded queue of prediction rows and the thread that writes them to one BigQuery table."""

    def __init__(self, table, client=None, *, batch_size=500, flush_interval=1.0, max_queue=10000,
                 max_retry_seconds=600.0, insert_timeout=10.0, backoff_initial=0.25, backoff_max=10.0,
                 id_field="prediction_id"):
        self.table = table
        self.client = client
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.max_retry_seconds = max_retry_seconds
        self.insert_timeout = insert_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.id_field = id_field
        self._queue = deque()
        self._in_flight = []
        self._cond = threading.Condition()
        self._closing = False
        self._abandon = threading.Event()
        self._thread = None
        self._crashed = False
        self._counts = {"offered": 0, "written": 0, "failed": 0, "dropped": 0, "rejected": 0,
                        "insert_requests": 0, "insert_errors": 0, "retries": 0, "batches": 0}

    @classmethod
    def from_settings(cls, settings, client=None):
        client = client or bigquery_client(settings.bigquery_project, settings.bigquery_endpoint)
        return cls(settings.table_path, client, batch_size=settings.batch_size,
                   flush_interval=settings.flush_interval, max_queue=settings.queue_max_size,
                   max_retry_seconds=settings.max_retry_seconds, insert_timeout=settings.insert_timeout)

    def _insert_id(self, row):
        """The row's insertId: its id, told apart for a shadow row (see the module's docstring)."""
        return row[self.id_field] if row.get("served") is not False else "%s/shadow" % row[self.id_field]

    # -- request side --------------------------------------------------------------------------------
    def offer(self, rows, optional=False):
        """Queue every row or none: False (and the rows counted rejected) when they do not fit.

        `optional` rows (a challenger's shadow predictions, after the answer's own rows) are not counted rejected
        when they do not fit: no client was refused, the caller counts them itself."""
        with self._cond:
            if self._closing or len(self._queue) + len(rows) > self.max_queue:
                if not optional:
                    self._counts["rejected"] += len(rows)
                return False
            self._queue.extend(rows)
            self._counts["offered"] += len(rows)
            if len(self._queue) >= self.batch_size:
                self._cond.notify()
            elif len(self._queue) == len(rows):
                self._cond.notify()  # the first rows of a batch start its flush timer
        return True

    def stats(self):
        with self._cond:
            stats = dict(self._counts)
            stats["queued"] = len(self._queue)
            stats["in_flight"] = len(self._in_flight)
        stats["pending"] = stats["queued"] + stats["in_flight"]
        return stats

    def alive(self):
        """False only when the writer thread died of an unexpected error."""
        return not self._crashed

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout=8.0):
        """Stop taking rows, write what is queued within `timeout` seconds; True when nothing was dropped."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
            if self._thread.is_alive():
                self._abandon.set()  # stop retrying; an insert already sent may still answer
                self._thread.join(max(0.0, min(self.insert_timeout, deadline - time.monotonic() + 1.0)))
        with self._cond:
            left = list(self._in_flight) + list(self._queue)
            self._in_flight = []
            self._queue.clear()
        if left:
            self._dead_letter(left, "dropped", "shutdown deadline of %.1fs passed before the rows were written"
                              % timeout)
        return not left

    # -- writer ---------------------------------------------------------------------------------------
    def _run(self):
        try:
            while not self._abandon.is_set():
                batch = self._next_batch()
                if batch is None:
                    return
                self._write(batch)
        except BaseException:
            self._crashed = True
            LOG.exception("the prediction log writer stopped")
            raise

    def _next_batch(self):
        """Wait for a full batch, the flush interval, or shutdown; None when closed and empty."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            flush_at = time.monotonic() + self.flush_interval
            while len(self._queue) < self.batch_size and not self._closing:
                remaining = flush_at - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(len(self._queue), self.batch_size)
            batch = [self._queue.popleft() for _i in range(count)]
            self._in_flight = list(batch)
            self._counts["batches"] += 1
            return batch

    def _write(self, batch):
        """Insert one batch until every row is written or failed (or shutdown gives up on it)."""
        started = time.monotonic()
        delay = self.backoff_initial
        pending = [batch]  # a 400 for several rows splits them; each part is retried on its own
        while pending:
            rows = pending.pop(0)
            if self._abandon.is_set():
                return
            try:
                errors = self._insert(rows)
            except Exception as exc:  # pylint: disable=broad-exception-caught  # classified below
                self._count("insert_errors", 1)
                if is_request_error(exc):
                    if len(rows) > 1:
                        half = len(rows) // 2
                        pending[:0] = [rows[:half], rows[half:]]
                        continue
                    self._fail(rows, "rejected by BigQuery: %s" % exc)
                    continue
                if time.monotonic() - started > self.max_retry_seconds:
                    self._fail(rows, "still failing after %.0fs: %s" % (time.monotonic() - started, exc))
                    continue
                wait = random.uniform(delay / 2, delay)  # nosec: jitter, not security
                LOG.warning("insert of %d prediction rows failed (%s: %s); retrying in %.2fs", len(rows),
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", wait)
                self._count("retries", 1)
                pending.insert(0, rows)
                self._sleep(wait)
                delay = min(delay * 2, self.backoff_max)
                continue
            self._settle(rows, errors, pending)

    def _insert(self, rows):
        self._count("insert_requests", 1)
        return self.client.insert_rows_json(self.table, rows, row_ids=[self._insert_id(row) for row in rows],
                                            skip_invalid_rows=True, retry=None, timeout=self.insert_timeout)

    def _settle(self, rows, errors, pending):
        """Count an answered insert: rows with errors failed, 'stopped' rows go again, the rest are written."""
        rejected, stopped = {}, {}
        for entry in errors or []:
            index = entry.get("index")
            if not isinstance(index, int) or not 0 <= index < len(rows):
                continue
            details = entry.get("errors") or [{}]
            if all(e.get("reason") == "stopped" for e in details):
                stopped[index] = rows[index]  # not inserted because another row was invalid
            else:
                rejected[index] = "; ".join("%s: %s" % (e.get("reason"), e.get("message")) for e in details)
        written = [row for index, row in enumerate(rows) if index not in rejected and index not in stopped]
        self._resolve(written)
        self._count("written", len(written))
        for index, reason in rejected.items():
            self._fail([rows[index]], "rejected by BigQuery: %s" % reason)
        if stopped:
            pending.append(list(stopped.values()))

    def _resolve(self, rows):
        """The rows are settled (written or failed): no longer in flight."""
        if rows:
            ids = {id(row) for row in rows}
            with self._cond:
                self._in_flight = [row for row in self._in_flight if id(row) not in ids]

    def _sleep(self, seconds):
        self._abandon.wait(seconds)

    def _count(self, name, amount):
        with self._cond:
            self._counts[name] += amount

    def _fail(self, rows, reason):
        self._resolve(rows)
        self._dead_letter(rows, "failed", reason)

    def _dead_letter(self, rows, outcome, reason):
        self._count(outcome, len(rows))
        LOG.error("%d prediction rows %s: %s (each row logged on %s)", len(rows), outcome, reason, DEAD_LETTER.name)
        for row in rows:
            DEAD_LETTER.error("%s %s", outcome, json.dumps(row, separators=(",", ":"), default=str))
