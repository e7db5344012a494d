"""Long-running operations shared by every API: progress by polls, injected failures, completion callbacks.

An operation is created by the write that starts it, not done. Each operations.get poll counts; on the
`operation_polls`-th poll it completes: its `finish(ok)` callback moves the resource out of its transitional
state (or removes a resource whose create failed) and returns the operation's response. operation_polls=0
completes operations as they start. Each API renders operations in its own shape (google.longrunning here,
sql#operation in sqladmin.py).
"""

from __future__ import annotations

import itertools
import uuid

from tests.standins.fakegcp.errors import RPC_CODE
from tests.standins.fakegcp.util import now


class Operation:
    def __init__(self, name, api, finish=None, metadata=None, extra=None):
        self.name = name
        self.api = api
        self.finish = finish
        self.metadata = metadata
        self.extra = dict(extra or {})  # API-specific fields (sql#operation: operationType, targetId ...)
        self.polls = 0
        self.done = False
        self.failure = None   # (code, message) planned at start by fail_operations()
        self.error = None     # (code, message) once it failed
        self.response = None
        self.insert_time = now()
        self.end_time = None

    def complete(self):
        if self.done:
            return
        self.done = True
        self.end_time = now()
        if self.failure:
            self.error = self.failure
            if self.finish:
                self.finish(False)
        elif self.finish:
            self.response = self.finish(True)


class Operations:
    """All operations of one fake, by name."""

    def __init__(self, fake):
        self.fake = fake
        self.by_name = {}
        self.failures = []  # [[remaining, code, message]]
        self._ids = itertools.count(1)

    def reset(self):
        self.by_name.clear()
        self.failures.clear()

    def clear_failures(self):
        self.failures.clear()

    def plan_failures(self, count, code, message):
        self.failures.append([count, code, message])

    def new_id(self):
        return "%s-%04d" % (uuid.uuid4().hex[:16], next(self._ids))

    def start(self, name, api, finish=None, metadata=None, extra=None, can_fail=True):
        """Register a running operation. It completes now when operation_polls is 0."""
        op = Operation(name, api, finish=finish, metadata=metadata, extra=extra)
        if can_fail:
            for planned in self.failures:
                if planned[0] > 0:
                    planned[0] -= 1
                    op.failure = (planned[1], planned[2])
                    break
        self.by_name[name] = op
        if self.fake.operation_polls <= 0:
            op.complete()
        return op

    def done_now(self, name, api, response=None, metadata=None, extra=None):
        """An operation that is done when returned (no-op changes)."""
        op = Operation(name, api, metadata=metadata, extra=extra)
        op.done, op.response, op.end_time = True, response, op.insert_time
        self.by_name[name] = op
        return op

    def get(self, name):
        return self.by_name.get(name)

    def poll(self, name):
        """One operations.get: counts the poll and completes the operation on the N-th. None when unknown."""
        op = self.by_name.get(name)
        if op is not None and not op.done:
            op.polls += 1
            if op.polls >= self.fake.operation_polls:
                op.complete()
        return op

    def complete_all(self):
        for op in list(self.by_name.values()):
            op.complete()

    def running(self, predicate=None):
        return [op for op in self.by_name.values() if not op.done and (predicate is None or predicate(op))]


def lro_error(code, message):
    """google.rpc.Status of a failed google.longrunning operation (code given as a number or a name)."""
    if isinstance(code, str):
        code = RPC_CODE.get(code, 13) if not code.isdigit() else int(code)
    return {"code": code if code is not None else 13, "message": message or "Internal error encountered."}


def render_lro(op):
    """A google.longrunning.Operation ({name, metadata, done, response | error}); `done` omitted while false."""
    body = {"name": op.name}
    if op.metadata is not None:
        body["metadata"] = op.metadata
    if op.done:
        body["done"] = True
        if op.error:
            body["error"] = lro_error(*op.error)
        else:
            body["response"] = op.response if op.response is not None else {}
    return body
