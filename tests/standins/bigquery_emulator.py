"""bqemulator, started with fidelity fixes where it departs from BigQuery in ways our modules meet.

- BigQuery PATCH merges the `labels` map and removes a label sent as null (the documented way to delete
  one); bqemulator replaces the whole map and answers HTTP 500 to a null value. Our modules send the real
  request (every wanted label, plus null for each label to remove), so the nulls are dropped here.
- bqemulator ignores a table's `requirePartitionFilter`; it is kept here and put back in table responses.
- A table insert into a missing dataset gets HTTP 500 from bqemulator (which clients retry); BigQuery
  answers 404 notFound, and so does this wrapper.
- tabledata.insertAll: BigQuery drops a row whose insertId it has seen on that table in the last minute or
  so (best-effort de-duplication, what makes a retried streaming insert safe); bqemulator stores every
  copy. The wrapper drops rows whose insertId was already stored within DEDUP_SECONDS.

Run with bqemulator's own arguments: python -m tests.standins.bigquery_emulator start --rest-port 9050 ...
"""

from __future__ import annotations

import json
import re
import time

import bqemulator.server
from bqemulator.cli import main as bqemulator_main

_emulator_create_app = bqemulator.server.create_app
TABLES = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables(?:/([^/]+))?$")
DATASET = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)$")
INSERT_ALL = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/insertAll$")
DEDUP_SECONDS = 60


async def _read_body(receive):
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _json(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


class Fidelity:
    """ASGI middleware in front of bqemulator's app."""

    def __init__(self, app):
        self.app = app
        self.require_partition_filter = {}  # (project, dataset, table) -> bool
        self.insert_ids = {}  # (project, dataset, table, insertId) -> time stored

    def _new_rows(self, key, rows):
        """Indexes of the rows to store: no insertId, or one not stored within DEDUP_SECONDS."""
        now = time.monotonic()
        if len(self.insert_ids) > 100000:
            self.insert_ids = {k: t for k, t in self.insert_ids.items() if now - t < DEDUP_SECONDS}
        seen = set()
        keep = []
        for index, row in enumerate(rows):
            insert_id = row.get("insertId") if isinstance(row, dict) else None
            if insert_id:
                stored = self.insert_ids.get(key + (insert_id,))
                if insert_id in seen or (stored is not None and now - stored < DEDUP_SECONDS):
                    continue
                seen.add(insert_id)
            keep.append(index)
        return keep

    async def insert_all(self, scope, key, request, send):
        rows = request.get("rows") or []
        keep = self._new_rows(key, rows)
        if not keep and rows:
            return await self.answer(send, 200, {"kind": "bigquery#tableDataInsertAllResponse"})
        body = json.dumps(dict(request, rows=[rows[i] for i in keep])).encode()
        status, headers, answer = await self.call(scope, body)
        document = _json(answer)
        if status < 300 and isinstance(document, dict):
            failed = set()
            for error in document.get("insertErrors") or []:
                failed.add(error.get("index"))
                error["index"] = keep[error["index"]]  # back to the caller's numbering
            now = time.monotonic()
            for position, index in enumerate(keep):
                insert_id = rows[index].get("insertId")
                if insert_id and position not in failed:
                    self.insert_ids[key + (insert_id,)] = now
            answer = json.dumps(document).encode()
        return await self.forward(send, status, headers, answer)

    async def call(self, scope, body):
        """Run one request through the emulator; returns (status, headers, body)."""
        sent = {"body": b""}

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                sent["status"], sent["headers"] = message["status"], message.get("headers", [])
            else:
                sent["body"] += message.get("body", b"")

        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        scope = dict(scope, headers=headers + [(b"content-length", str(len(body)).encode())])
        await self.app(scope, receive, send)
        return sent["status"], sent["headers"], sent["body"]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        tables = TABLES.match(path)
        body = await _read_body(receive)
        resource = _json(body) if body else None

        if method in ("PATCH", "PUT") and isinstance(resource, dict) and isinstance(resource.get("labels"), dict):
            resource["labels"] = {k: v for k, v in resource["labels"].items() if v is not None}
            body = json.dumps(resource).encode()

        if tables and method == "POST" and not tables.group(3):
            dataset_scope = dict(scope, method="GET", path=path.rsplit("/tables", 1)[0], query_string=b"")
            status, _headers, _body = await self.call(dataset_scope, b"")
            if status == 404:
                project, dataset = tables.group(1), tables.group(2)
                message = "Not found: Dataset %s:%s" % (project, dataset)
                return await self.answer(send, 404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND",
                                                               "errors": [{"reason": "notFound", "message": message}]}})

        insert_all = INSERT_ALL.match(path)
        if insert_all and method == "POST" and isinstance(resource, dict):
            return await self.insert_all(scope, insert_all.groups(), resource, send)

        status, headers, answer = await self.call(scope, body)
        if tables and status < 300 and method != "DELETE":
            table = _json(answer)
            if isinstance(table, dict) and table.get("tableReference"):
                ref = table["tableReference"]
                key = (ref["projectId"], ref["datasetId"], ref["tableId"])
                if isinstance(resource, dict) and "requirePartitionFilter" in resource:
                    self.require_partition_filter[key] = resource["requirePartitionFilter"]
                if self.require_partition_filter.get(key) is not None:
                    table["requirePartitionFilter"] = self.require_partition_filter[key]
                answer = json.dumps(table).encode()
        elif status < 300 and method == "DELETE" and (tables or DATASET.match(path)):
            prefix = tuple(g for g in (tables or DATASET.match(path)).groups() if g)
            for key in [k for k in self.require_partition_filter if k[:len(prefix)] == prefix]:
                del self.require_partition_filter[key]
        return await self.forward(send, status, headers, answer)

    @staticmethod
    async def forward(send, status, headers, answer):
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    @staticmethod
    async def answer(send, status, document):
        payload = json.dumps(document).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def create_app(context):
    return Fidelity(_emulator_create_app(context))


bqemulator.server.create_app = create_app

if __name__ == "__main__":
    bqemulator_main()  # pylint: disable=no-value-for-parameter
