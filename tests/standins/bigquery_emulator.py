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
- tables.getIamPolicy / tables.setIamPolicy: bqemulator does not serve them (405). BigQuery keeps an IAM policy
  per table; the wrapper keeps one in memory with the rules of the fake GCP's policies (fakegcp/iam_policy.py:
  versions, conditions only at version 3, a new etag on every set), 404 for a missing table or dataset, 400
  for a malformed request, and 412 "IAM setPolicy failed for Table ...: There were concurrent policy changes"
  for a stale etag (the status BigQuery gives it; Google IAM APIs give 409 ABORTED). A table's policy goes
  with the table (and with its dataset).
- tables.patch / tables.update that add columns: BigQuery adds them in place, keeping the rows, and they can be
  queried and loaded at once. bqemulator only changes its catalog (what tables.get shows), not the DuckDB table
  holding the rows, so a query naming the new column fails (DuckDB "Binder Error"), a load drops its values and a
  streaming insert fails. The wrapper adds each new top-level column to the DuckDB table (ALTER TABLE ADD COLUMN,
  NULL in the existing rows, as in BigQuery). New fields inside an existing RECORD are not handled.
- tabledata.insertAll of a row naming a column the table lacks (without ignoreUnknownValues) or leaving out a
  REQUIRED one: BigQuery answers 200 with insertErrors, "invalid" for that row and "stopped" for every other one,
  and stores none of them (unless skipInvalidRows); bqemulator drops unknown names and stores the rest. The wrapper
  checks the rows against the table's schema, nested records included, and answers as BigQuery does.

Run with bqemulator's own arguments: python -m tests.standins.bigquery_emulator start --rest-port 9050 ...
"""

from __future__ import annotations

import json
import re
import time

import bqemulator.server
from bqemulator.cli import main as bqemulator_main
from bqemulator.storage.sql_identifiers import quoted_table_ref, schema_name
from bqemulator.storage.type_map import bq_schema_to_duckdb_columns

from tests.standins.fakegcp.errors import ApiError
from tests.standins.fakegcp.iam_policy import PolicyStore

_emulator_create_app = bqemulator.server.create_app
TABLES = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables(?:/([^/]+))?$")
DATASET = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)$")
INSERT_ALL = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/insertAll$")
TABLE_IAM = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/:]+):(getIamPolicy|setIamPolicy)$")
IAM_FIELDS = {"getIamPolicy": {"options"}, "setIamPolicy": {"policy", "updateMask"}, "options": {"requestedPolicyVersion"},
              "policy": {"version", "etag", "bindings", "auditConfigs"}, "binding": {"role", "members", "condition"},
              "condition": {"title", "description", "expression", "location"}}
CONCURRENT = ("IAM setPolicy failed for Table %s:%s.%s: There were concurrent policy changes. Please retry the whole "
              "read-modify-write with exponential backoff.")
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


def _error(code, message, reason, status):
    return {"error": {"code": code, "message": message, "status": status,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}


def _invalid(message):
    return _error(400, message, "invalid", "INVALID_ARGUMENT")


def _unknown_field(document, kind, where):
    """The first field of document that a BigQuery IAM message of this kind does not have, as an error, or None."""
    if not isinstance(document, dict):
        return _invalid("Invalid JSON payload received. Expected an object at '%s'." % where)
    unknown = sorted(set(document) - IAM_FIELDS[kind])
    if unknown:
        return _invalid('Invalid JSON payload received. Unknown name "%s" at \'%s\': Cannot find field.' % (unknown[0], where))
    return None


def _policy_request_error(request, verb):
    """Why a getIamPolicy/setIamPolicy request body is malformed, as an error, or None."""
    problem = _unknown_field(request, verb, "")
    if problem or verb == "getIamPolicy":
        return problem or _unknown_field(request.get("options") or {}, "options", "options")
    policy = request.get("policy")
    if policy is None:
        return None  # PolicyStore says that the policy is required
    problem = _unknown_field(policy, "policy", "policy")
    if problem:
        return problem
    bindings = policy.get("bindings") or []
    if not isinstance(bindings, list):
        return _invalid("Invalid JSON payload received. Expected a list at 'policy.bindings'.")
    for index, binding in enumerate(bindings):
        where = "policy.bindings[%d]" % index
        problem = _unknown_field(binding, "binding", where)
        if not problem and binding.get("condition") is not None:
            problem = _unknown_field(binding["condition"], "condition", where + ".condition")
        if not problem and not isinstance(binding.get("members") or [], list):
            problem = _invalid("Invalid JSON payload received. Expected a list at '%s.members'." % where)
        if problem:
            return problem
    return None


def _row_problems(row, fields, prefix, ignore_unknown):
    """(location, message) for each column of a streamed row that the schema has not, or each REQUIRED one missing."""
    if not isinstance(row, dict):
        return [(prefix.rstrip("."), "Row is not a JSON object.")]
    by_name = {field["name"].lower(): field for field in fields}
    problems = []
    for name, value in row.items():
        field = by_name.get(name.lower())
        if field is None:
            if not ignore_unknown:
                problems.append((prefix + name, "no such field: %s." % (prefix + name)))
        elif field.get("type") in ("RECORD", "STRUCT") and value is not None:
            values = value if field.get("mode") == "REPEATED" and isinstance(value, list) else [value]
            for item in values:
                problems += _row_problems(item, field.get("fields") or [], prefix + name + ".", ignore_unknown)
    present = {name.lower() for name, value in row.items() if value is not None}
    for field in fields:
        if field.get("mode") == "REQUIRED" and field["name"].lower() not in present:
            problems.append((prefix + field["name"], "Missing required field: %s." % (prefix + field["name"])))
    return problems


class _PolicyHolder:
    """What PolicyStore needs of the fake GCP: a state dict. Members are not looked up in an IAM registry."""

    service_account_exists = None

    def __init__(self):
        self.state = {}


class Fidelity:
    """ASGI middleware in front of bqemulator's app."""

    def __init__(self, app, context=None):
        self.app = app
        self.context = context  # bqemulator's AppContext: its DuckDB engine holds the tables' rows
        self.require_partition_filter = {}  # (project, dataset, table) -> bool
        self.insert_ids = {}  # (project, dataset, table, insertId) -> time stored
        self.policies = PolicyStore(_PolicyHolder())  # keys "bigquery:projects/P/datasets/D/tables/T"

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

    async def row_errors(self, scope, request):
        """insertErrors for rows that do not fit the table's schema (BigQuery's shape), or None."""
        path = scope["path"].rsplit("/insertAll", 1)[0]
        status, _headers, answer = await self.call(dict(scope, method="GET", path=path, raw_path=path.encode(),
                                                        query_string=b""), b"")
        table = _json(answer) if status == 200 else None
        if not isinstance(table, dict):
            return None  # bqemulator answers for a missing table itself
        fields = (table.get("schema") or {}).get("fields") or []
        rows = request.get("rows") or []
        problems = {index: _row_problems(row.get("json") if isinstance(row, dict) else None, fields, "",
                                         request.get("ignoreUnknownValues", False))
                    for index, row in enumerate(rows)}
        if not any(problems.values()):
            return None
        errors = []
        for index, found in problems.items():
            if found:
                errors.append({"index": index, "errors": [
                    {"reason": "invalid", "location": location, "debugInfo": "", "message": message}
                    for location, message in found]})
            elif not request.get("skipInvalidRows"):
                errors.append({"index": index, "errors": [
                    {"reason": "stopped", "location": "", "debugInfo": "", "message": ""}]})
        return errors

    async def insert_all(self, scope, key, request, send):
        errors = await self.row_errors(scope, request)
        if errors and not request.get("skipInvalidRows"):
            return await self.answer(send, 200, {"kind": "bigquery#tableDataInsertAllResponse",
                                                 "insertErrors": errors})
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

    async def table_iam(self, scope, send, ids, method, body):
        """tables.getIamPolicy / tables.setIamPolicy on the policy kept here for each existing table."""
        project, dataset, table, verb = ids
        if method != "POST":
            return await self.answer(send, 405, _error(405, "Method %s is not allowed on :%s" % (method, verb),
                                                       "methodNotAllowed", "METHOD_NOT_ALLOWED"))
        request = _json(body) if body else {}
        problem = _policy_request_error(request, verb)
        if problem:
            return await self.answer(send, 400, problem)
        dataset_path = "/bigquery/v2/projects/%s/datasets/%s" % (project, dataset)
        status = await self.status_of(scope, dataset_path + "/tables/" + table)
        if status == 404:
            missing = "Table %s:%s.%s" % (project, dataset, table)
            if await self.status_of(scope, dataset_path) == 404:
                missing = "Dataset %s:%s" % (project, dataset)
            return await self.answer(send, 404, _error(404, "Not found: " + missing, "notFound", "NOT_FOUND"))
        if status != 200:
            return await self.answer(send, status, _error(status, "Cannot read table %s:%s.%s" % (project, dataset, table),
                                                          "backendError", "INTERNAL"))
        key = "bigquery:projects/%s/datasets/%s/tables/%s" % (project, dataset, table)
        try:
            if verb == "getIamPolicy":
                requested = (request.get("options") or {}).get("requestedPolicyVersion")
                if isinstance(requested, str) and requested.isdigit():
                    requested = int(requested)  # proto3 JSON takes integers as strings too
                if requested is not None and not isinstance(requested, int):
                    return await self.answer(send, 400, _invalid(
                        "Invalid value at 'options.requested_policy_version' (TYPE_INT32), %s" % json.dumps(requested)))
                policy = self.policies.get(key, requested)
            else:
                policy = self.policies.set(key, request)
        except ApiError as exc:
            if exc.status == "ABORTED":
                return await self.answer(send, 412, _error(412, CONCURRENT % (project, dataset, table),
                                                           "failedPrecondition", "FAILED_PRECONDITION"))
            return await self.answer(send, exc.code, _error(exc.code, exc.message, "invalid", exc.status))
        return await self.answer(send, 200, policy)

    async def add_columns(self, table):
        """Give the DuckDB table of `table` (a REST table bqemulator just patched) the top-level columns it lacks."""
        ref = table["tableReference"]
        if self.context is None or table.get("type", "TABLE") != "TABLE":
            return
        project, dataset, table_id = ref["projectId"], ref["datasetId"], ref["tableId"]
        engine = self.context.engine
        async with engine.write_lock():
            stored = engine.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [schema_name(project, dataset), table_id]).fetchall()
            if not stored:
                return  # nothing in storage to keep in step (no such DuckDB table)
            # BigQuery column names are case-insensitive, like DuckDB's identifiers.
            present = {row[0].lower() for row in stored}
            added = [field for field in (table.get("schema") or {}).get("fields") or []
                     if field["name"].lower() not in present]
            target = quoted_table_ref(project, dataset, table_id)
            for name, duckdb_type in bq_schema_to_duckdb_columns(added):
                engine.execute('ALTER TABLE %s ADD COLUMN "%s" %s' % (target, name.replace('"', '""'), duckdb_type))

    async def status_of(self, scope, path):
        """The status bqemulator answers to a GET of path."""
        status, _headers, _body = await self.call(dict(scope, method="GET", path=path, raw_path=path.encode(),
                                                       query_string=b""), b"")
        return status

    def drop_policies(self, prefix):
        """Forget the policies of a deleted table (prefix P, D, T) or of every table of a deleted dataset (P, D)."""
        name = "bigquery:projects/%s/datasets/%s/tables/" % prefix[:2]
        for key in list(self.policies.data):
            if (key == name + prefix[2]) if len(prefix) == 3 else key.startswith(name):
                self.policies.drop(key)

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
        table_iam = TABLE_IAM.match(path)
        if table_iam:
            return await self.table_iam(scope, send, table_iam.groups(), method, body)
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
                if method in ("PATCH", "PUT") and tables.group(3):
                    await self.add_columns(table)
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
            self.drop_policies(prefix)
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
    return Fidelity(_emulator_create_app(context), context)


bqemulator.server.create_app = create_app

if __name__ == "__main__":
    bqemulator_main()  # pylint: disable=no-value-for-parameter
