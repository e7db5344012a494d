"""Long-running operations shared by every API: progress by polls or by time, injected failures, callbacks.

An operation is created by the write that starts it, not done, and names its kind (a key of
durations.DURATIONS: "sql.instance.create", "run.service.rollout" ...). It completes in one of two ways:
- by polls (the default): each operations.get poll counts; on the `fake.operation_polls`-th poll it
  completes. operation_polls=0 completes operations as they start;
- by time (fake.realism.timed_operations): it completes once fake.realism.seconds(duration of its kind) has
  passed since it started, polled or not. Due operations are completed at the start of every request the
  fake handles (fake.operations.advance(), under the fake's lock) and when an operation is read.
On completion its `finish(ok)` callback moves the resource out of its transitional state (or removes a
resource whose create failed) and returns the operation's response. An operation may have stages before
that (a build waits QUEUED, then runs WORKING): each stage lasts the duration of its own kind and its
callback runs when it ends (by time), or on the next poll (by polls), and always before finish.

Each operation records its real start and end on the realism clock, for fake.operations.timeline().
Each API renders operations in its own shape (google.longrunning here, sql#operation in sqladmin.py).
"""

from __future__ import annotations

import itertools
import time
import uuid

from tests.standins.fakegcp.durations import duration
from tests.standins.fakegcp.errors import RPC_CODE
from tests.standins.fakegcp.util import now


class Operation:
    def __init__(self, name, api, finish=None, metadata=None, extra=None, kind=None, target=None, clock=None):
        self.name = name
        self.api = api
        self.finish = finish
        self.metadata = metadata
        self.extra = dict(extra or {})  # API-specific fields (sql#operation: operationType, targetId ...)
        self.kind = kind
        self.target = target
        self.stages = []      # [[google_seconds, callback]] still to pass before the operation's own time
        self.passed = 0       # Google seconds of the stages passed
        self.seconds = duration(kind) if kind else 0  # Google time the operation's own work takes
        self.polls = 0
        self.done = False
        self.failure = None   # (code, message) planned at start by fail_operations()
        self.error = None     # (code, message) once it failed
        self.response = None
        self.insert_time = now()
        self.end_time = None
        self.clock = clock or time.monotonic  # the realism clock
        self.started = self.clock()  # when it started
        self.ended = None     # realism clock when it finished (by time: when it was due)

    def total_seconds(self):
        """Google seconds from start to done: its stages, then its own work."""
        return self.passed + sum(stage[0] for stage in self.stages) + self.seconds

    def pass_stage(self):
        """End the next pending stage (its callback runs); False when none is left."""
        if not self.stages:
            return False
        seconds, callback = self.stages.pop(0)
        self.passed += seconds
        callback()
        return True

    def complete(self, at=None):
        if self.done:
            return
        while self.pass_stage():
            pass
        self.done = True
        self.end_time = now()
        if self.ended is None:
            self.ended = self.clock() if at is None else at
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
        self._advancing = False  # a finish callback that reads operations must not re-enter advance()

    @property
    def timed(self):
        return self.fake.realism.timed_operations

    def clock(self):
        return self.fake.realism.now()

    def reset(self):
        self.by_name.clear()
        self.failures.clear()

    def clear_failures(self):
        self.failures.clear()

    def plan_failures(self, count, code, message):
        self.failures.append([count, code, message])

    def new_id(self):
        return "%s-%04d" % (uuid.uuid4().hex[:16], next(self._ids))

    def start(self, name, api, finish=None, metadata=None, extra=None, can_fail=True, kind=None, target=None,
              stages=()):
        """Register a running operation of `kind` (a key of durations.DURATIONS) on `target` (a resource name,
        for the timeline). stages: [(kind, callback)] passed in order before the operation's own work.
        By polls, it completes now when operation_polls is 0."""
        if kind is None:
            raise ValueError("operation %s of %s: name its kind (a key of fakegcp/durations.py)" % (name, api))
        op = Operation(name, api, finish=finish, metadata=metadata, extra=extra, kind=kind, target=target,
                       clock=self.clock)
        op.stages = [[duration(stage_kind), callback] for stage_kind, callback in stages]
        if can_fail:
            for planned in self.failures:
                if planned[0] > 0:
                    planned[0] -= 1
                    op.failure = (planned[1], planned[2])
                    break
        self.by_name[name] = op
        if not self.timed and self.fake.operation_polls <= 0:
            op.complete()
        return op

    def done_now(self, name, api, response=None, metadata=None, extra=None):
        """An operation that is done when returned (validateOnly, no-op changes); not in the timeline."""
        op = Operation(name, api, metadata=metadata, extra=extra, clock=self.clock)
        op.done, op.response, op.end_time, op.ended = True, response, op.insert_time, op.started
        self.by_name[name] = op
        return op

    def get(self, name):
        return self.by_name.get(name)

    def poll(self, name):
        """One operations.get: by polls, counts the poll, passes a stage and completes the operation on the
        N-th; by time, only lets time do its work. None when unknown."""
        self.advance()
        op = self.by_name.get(name)
        if op is not None and not op.done:
            op.polls += 1
            if not self.timed:
                if op.polls >= self.fake.operation_polls:
                    op.complete()
                else:
                    op.pass_stage()
        return op

    def advance(self):
        """By time: pass the stages and complete the operations whose time has come, earliest first."""
        if not self.timed or self._advancing:
            return
        self._advancing = True
        try:
            clock = self.clock()
            seconds = self.fake.realism.seconds
            for op in sorted(self.running(), key=lambda o: o.started + seconds(o.total_seconds())):
                while not op.done and op.stages and op.started + seconds(op.passed + op.stages[0][0]) <= clock:
                    op.pass_stage()
                due = op.started + seconds(op.total_seconds())
                if not op.done and due <= clock:
                    op.complete(due)
        finally:
            self._advancing = False

    def complete_all(self):
        for op in list(self.by_name.values()):
            op.complete()

    def running(self, predicate=None):
        return [op for op in self.by_name.values() if not op.done and (predicate is None or predicate(op))]

    def timeline(self):
        """Every operation started (done_now ones excepted), in start order: {name, api, kind, target, start,
        end} with start/end in seconds on the realism clock (end None while running)."""
        self.advance()
        rows = [{"name": op.name, "api": op.api, "kind": op.kind, "target": op.target,
                 "start": op.started, "end": op.ended}
                for op in self.by_name.values() if op.kind is not None]
        return sorted(rows, key=lambda row: row["start"])


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
