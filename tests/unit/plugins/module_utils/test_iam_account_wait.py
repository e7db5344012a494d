"""update_policy() while IAM refuses a new service account member: "Service account X does not exist." (400)."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError
from ansible_collections.deployml.mlops.plugins.module_utils.iam import PolicyTarget, add_member, update_policy

EMAIL = "trainer@proj-one.iam.gserviceaccount.com"
MEMBER = "serviceAccount:" + EMAIL


class Client:
    """What AccountWait uses of GcpClient: timeout, and get() of the account (None: 404)."""

    def __init__(self, found=True, timeout=30):
        self.timeout = timeout
        self.found = found
        self.gets = []

    def get(self, api, path, resource=None):
        self.gets.append((api, path))
        if isinstance(self.found, Exception):
            raise self.found
        return {"email": EMAIL} if self.found else None


class Target(PolicyTarget):
    """Reads and writes from a script; a write answer that is an exception is raised."""

    def __init__(self, client, reads, writes):
        super().__init__(client=client, resource_type="project", resource="proj-one", project="proj-one")
        self.reads, self.writes, self.sent = list(reads), list(writes), []

    def read(self):
        return copy.deepcopy(self.reads.pop(0))

    def write(self, policy):
        self.sent.append(policy)
        answer = self.writes.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def policy(etag, *members):
    return {"version": 1, "etag": etag, "bindings": [{"role": "roles/editor", "members": list(members)}]
            if members else []}


def grant(p):
    return add_member(p, "roles/editor", MEMBER)


def missing():
    return GcpApiError(400, "INVALID_ARGUMENT/badRequest", "Service account %s does not exist." % EMAIL,
                       resource="projects/proj-one", method="POST")


def conflict():
    return GcpApiError(409, "ABORTED", "stale etag", resource="projects/proj-one", method="POST")


def test_a_refused_new_account_is_retried_from_fresh_reads_without_using_up_attempts():
    client = Client(found=True)
    done = policy("e9", MEMBER)
    target = Target(client, [policy("e1")] * 6, [missing()] * 5 + [done])
    sleeps = []
    update = update_policy(target, grant, attempts=2, sleep=sleeps.append)
    assert update.changed and update.after == done and update.attempts == 6
    assert len(target.sent) == 6 and all(MEMBER in p["bindings"][0]["members"] for p in target.sent)
    assert client.gets == [("iam", "/v1/projects/-/serviceAccounts/" + EMAIL)], "existence is checked once"
    assert len(sleeps) == 5 and sum(sleeps) <= client.timeout


def test_a_refusal_after_a_race_is_not_taken_for_another_race():
    client = Client(found=True)
    done = policy("e3", MEMBER)
    # A race (the etag moved from e1 to e2), then a refusal that leaves the etag at e2, then success.
    target = Target(client, [policy("e1"), policy("e2"), policy("e2")], [conflict(), missing(), done])
    update = update_policy(target, grant, sleep=lambda s: None)
    assert update.after == done and [p["etag"] for p in target.sent] == ["e1", "e2", "e2"]


def test_an_account_iam_does_not_find_fails_at_once_naming_it():
    client = Client(found=False)
    target = Target(client, [policy("e1")], [missing()])
    sleeps = []
    with pytest.raises(GcpApiError) as raised:
        update_policy(target, grant, sleep=sleeps.append)
    assert raised.value.status == 400
    assert str(raised.value).startswith("projects/proj-one: HTTP 400 INVALID_ARGUMENT/badRequest: service account %s "
                                        "does not exist: create it first" % EMAIL)
    assert len(client.gets) == 3 and len(target.sent) == 1 and sum(sleeps) < 2


def test_when_iam_will_not_say_the_wait_goes_on_until_the_timeout():
    client = Client(found=GcpApiError(403, "PERMISSION_DENIED", "denied"), timeout=5)
    target = Target(client, [policy("e1")] * 100, [missing()] * 100)
    sleeps = []
    with pytest.raises(GcpApiError) as raised:
        update_policy(target, grant, sleep=sleeps.append)
    assert "IAM still refuses service account %s as a member after 5s" % EMAIL in raised.value.message
    assert 0 < sum(sleeps) <= 5 and len(client.gets) == 1


def test_other_bad_requests_are_not_retried():
    target = Target(Client(), [policy("e1")], [GcpApiError(400, "INVALID_ARGUMENT", "Role roles/nope is not valid.")])
    with pytest.raises(GcpApiError, match="roles/nope"):
        update_policy(target, grant, sleep=lambda s: None)
    assert len(target.sent) == 1
