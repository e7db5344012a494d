"""The table IAM policies the BigQuery emulator wrapper adds (tests/standins/bigquery_emulator.py), over REST."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import PROJECT

VIEWER = "roles/bigquery.dataViewer"
UNTIL = {"title": "until-2027", "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")'}


class Tables:
    """A dataset of its own with helpers to create tables and read/write their policies."""

    def __init__(self, url, dataset):
        self.base = "%s/bigquery/v2/projects/%s/datasets" % (url, PROJECT)
        self.dataset = dataset
        response = requests.post(self.base, json={"datasetReference": {"projectId": PROJECT, "datasetId": dataset}},
                                 timeout=10)
        assert response.status_code == 200, response.text

    def url(self, table, dataset=None):
        return "%s/%s/tables/%s" % (self.base, dataset or self.dataset, table)

    def create(self, table):
        response = requests.post("%s/%s/tables" % (self.base, self.dataset), timeout=10, json={
            "tableReference": {"projectId": PROJECT, "datasetId": self.dataset, "tableId": table},
            "schema": {"fields": [{"name": "id", "type": "STRING"}]}})
        assert response.status_code == 200, response.text

    def get(self, table, version=3, dataset=None):
        return requests.post(self.url(table, dataset) + ":getIamPolicy", timeout=10,
                             json={"options": {"requestedPolicyVersion": version}})

    def set(self, table, policy, dataset=None, **extra):
        return requests.post(self.url(table, dataset) + ":setIamPolicy", json=dict(extra, policy=policy), timeout=10)


@pytest.fixture
def tables(bigquery_emulator, unique):
    return Tables(bigquery_emulator, "iam_" + unique)


def ok(response):
    assert response.status_code == 200, response.text
    return response.json()


def test_a_new_table_has_an_empty_policy_and_every_set_gets_a_new_etag(tables):
    tables.create("t1")
    empty = ok(tables.get("t1"))
    assert empty.get("bindings", []) == [] and empty["version"] == 1 and empty["etag"]
    assert ok(tables.get("t1"))["etag"] == empty["etag"], "reading does not change the etag"

    binding = {"role": VIEWER, "members": ["user:alice@example.com"]}
    written = ok(tables.set("t1", {"etag": empty["etag"], "bindings": [binding]}))
    assert written["bindings"] == [binding] and written["etag"] != empty["etag"]
    read = ok(tables.get("t1"))
    assert read["bindings"] == [binding] and read["etag"] == written["etag"]

    # Another table of the dataset has its own policy.
    tables.create("t2")
    assert ok(tables.get("t2")).get("bindings", []) == []


def test_a_stale_etag_is_refused_with_412_and_changes_nothing(tables):
    tables.create("t1")
    first = ok(tables.get("t1"))
    current = ok(tables.set("t1", {"etag": first["etag"], "bindings": [{"role": VIEWER, "members": ["user:a@example.com"]}]}))
    stale = tables.set("t1", {"etag": first["etag"], "bindings": [{"role": VIEWER, "members": ["user:b@example.com"]}]})
    assert stale.status_code == 412, stale.text
    error = stale.json()["error"]
    assert error["status"] == "FAILED_PRECONDITION"
    assert "IAM setPolicy failed for Table %s:%s.t1: There were concurrent policy changes" % (PROJECT, tables.dataset) \
        in error["message"]
    assert ok(tables.get("t1")) == current

    # Without an etag, setIamPolicy overwrites (as Google IAM does).
    blind = ok(tables.set("t1", {"bindings": [{"role": VIEWER, "members": ["user:c@example.com"]}]}))
    assert blind["bindings"][0]["members"] == ["user:c@example.com"] and blind["etag"] != current["etag"]


def test_conditions_need_version_3(tables):
    tables.create("t1")
    conditional = {"role": VIEWER, "members": ["user:a@example.com"], "condition": UNTIL}
    refused = tables.set("t1", {"version": 1, "bindings": [conditional]})
    assert refused.status_code == 400 and "version 3" in refused.json()["error"]["message"], refused.text
    written = ok(tables.set("t1", {"version": 3, "bindings": [conditional]}))
    assert written["version"] == 3 and written["bindings"] == [conditional]
    assert ok(tables.get("t1"))["bindings"] == [conditional]
    # Read at version 1, a conditional binding is not shown as an unconditional grant.
    old = ok(tables.get("t1", version=1))
    assert old["version"] == 1 and old["bindings"][0]["role"].startswith(VIEWER + "_withcond_")
    assert "condition" not in old["bindings"][0]


def test_missing_table_or_dataset_is_404(tables, unique):
    missing = tables.get("nope")
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["message"] == "Not found: Table %s:%s.nope" % (PROJECT, tables.dataset)
    assert tables.set("nope", {"bindings": []}).status_code == 404
    no_dataset = tables.get("t1", dataset="absent_" + unique)
    assert no_dataset.status_code == 404
    assert no_dataset.json()["error"]["message"] == "Not found: Dataset %s:absent_%s" % (PROJECT, unique)


@pytest.mark.parametrize("body, field", [
    ({"policy": {"bindings": []}, "extra": 1}, '"extra"'),
    ({"policy": {"bindings": [], "owner": "x"}}, '"owner"'),
    ({"policy": {"bindings": [{"role": VIEWER, "members": ["user:a@example.com"], "why": "x"}]}}, '"why"'),
    ({"policy": {"bindings": [{"role": VIEWER, "members": "user:a@example.com"}]}}, "Expected a list"),
    ({"policy": {"bindings": [{"role": "viewer", "members": ["user:a@example.com"]}]}}, "not a valid role"),
    ({"policy": {"bindings": [{"role": VIEWER, "members": ["alice@example.com"]}]}}, "<type>:<value>"),
    ({}, "policy is required"),
])
def test_malformed_set_requests_are_400(tables, body, field):
    tables.create("t1")
    response = requests.post(tables.url("t1") + ":setIamPolicy", json=body, timeout=10)
    assert response.status_code == 400 and field in response.json()["error"]["message"], response.text
    assert ok(tables.get("t1")).get("bindings", []) == []


def test_malformed_get_requests(tables):
    tables.create("t1")
    unknown = requests.post(tables.url("t1") + ":getIamPolicy", json={"options": {"version": 3}}, timeout=10)
    assert unknown.status_code == 400 and 'Unknown name "version"' in unknown.json()["error"]["message"], unknown.text
    assert tables.get("t1", version=2).status_code == 400
    assert requests.get(tables.url("t1") + ":getIamPolicy", timeout=10).status_code == 405
    assert ok(requests.post(tables.url("t1") + ":getIamPolicy", timeout=10))["etag"], "the body is optional"


def test_the_policy_goes_with_the_table_and_with_the_dataset(tables):
    tables.create("t1")
    tables.create("t2")
    for table in ("t1", "t2"):
        ok(tables.set(table, {"bindings": [{"role": VIEWER, "members": ["user:a@example.com"]}]}))
    assert requests.delete(tables.url("t1"), timeout=10).status_code == 204
    assert tables.get("t1").status_code == 404
    tables.create("t1")
    assert ok(tables.get("t1")).get("bindings", []) == [], "a table created again starts with no grants"
    assert ok(tables.get("t2"))["bindings"], "the other table keeps its policy"

    response = requests.delete("%s/%s" % (tables.base, tables.dataset), params={"deleteContents": "true"}, timeout=10)
    assert response.status_code == 204, response.text
    Tables(tables.base.split("/bigquery/")[0], tables.dataset)  # the same dataset, created again
    tables.create("t2")
    assert ok(tables.get("t2")).get("bindings", []) == []
