"""bigquery_dataset against the BigQuery emulator, through a recording proxy."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import PROJECT


@pytest.fixture
def dataset(bigquery, unique, gcp_module):
    """Run bigquery_dataset on a fresh dataset id; read() returns the dataset straight from the emulator."""

    class Dataset:
        id = "ds_" + unique
        url = "%s/bigquery/v2/projects/%s/datasets/ds_%s" % (bigquery.target, PROJECT, unique)

        def run(self, check=False, **options):
            args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints={"bigquery": bigquery.url},
                        dataset_id=self.id, timeout=20)
            args.update(options)
            return gcp_module("bigquery_dataset", args, check=check)

        def read(self):
            response = requests.get(self.url, timeout=10)
            return response.json() if response.status_code == 200 else None

    return Dataset()


def test_create_then_unchanged(dataset, bigquery):
    result = dataset.run(location="eu", description="features", labels={"app": "mlops"})
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["dataset"]["location"] == "EU"
    actual = dataset.read()
    assert actual["description"] == "features" and actual["labels"] == {"app": "mlops"}

    bigquery.clear()
    again = dataset.run(location="EU", description="features", labels={"app": "mlops"})
    assert again["changed"] is False, again
    assert bigquery.writes() == [] and len(bigquery.requests) == 1


def test_check_mode_create_writes_nothing(dataset, bigquery):
    result = dataset.run(check=True, description="features")
    assert result["changed"] is True
    assert result["diff"] == {"before": {}, "after": {
        "datasetReference": {"projectId": PROJECT, "datasetId": dataset.id}, "description": "features"}}
    assert bigquery.writes() == []
    assert dataset.read() is None


def test_update_in_place_with_diff(dataset, bigquery):
    dataset.run(description="old", labels={"app": "mlops", "team": "ml"}, default_table_expiration_ms=7200000)

    preview = dataset.run(check=True, description="new", labels={"app": "mlops"})
    assert preview["changed"] is True and preview["changed_fields"] == ["description", "labels"]
    assert preview["diff"]["before"]["labels"] == {"app": "mlops", "team": "ml"}
    assert preview["diff"]["after"]["labels"] == {"app": "mlops"}
    assert dataset.read()["description"] == "old"

    bigquery.clear()
    result = dataset.run(description="new", labels={"app": "mlops"})
    assert result["changed"] is True
    assert [r[0] for r in bigquery.writes()] == ["PATCH"]
    actual = dataset.read()
    assert actual["description"] == "new"
    assert actual["labels"] == {"app": "mlops"}, "a label dropped from the options must be removed"
    assert actual["defaultTableExpirationMs"] == "7200000", "fields not set in this run stay as they are"


def test_location_is_immutable(dataset, bigquery):
    dataset.run(location="EU")
    bigquery.clear()
    result = dataset.run(location="US")
    assert result["rc"] == 1 and result["failed"] is True
    assert "location cannot be changed in place" in result["msg"] and "'EU'" in result["msg"]
    assert dataset.id in result["msg"]
    assert bigquery.writes() == []
    assert dataset.read()["location"] == "EU"


def test_absent_refuses_dataset_with_tables(dataset, bigquery):
    dataset.run()
    table = {"tableReference": {"projectId": PROJECT, "datasetId": dataset.id, "tableId": "keepme"},
             "schema": {"fields": [{"name": "x", "type": "STRING"}]}}
    assert requests.post(dataset.url + "/tables", json=table, timeout=10).status_code == 200

    refused = dataset.run(state="absent")
    assert refused["rc"] == 1 and "keepme" in refused["msg"] and "delete_contents" in refused["msg"]
    assert dataset.read() is not None

    preview = dataset.run(state="absent", delete_contents=True, check=True)
    assert preview["changed"] is True and dataset.read() is not None

    deleted = dataset.run(state="absent", delete_contents=True)
    assert deleted["changed"] is True and deleted["dataset"] == {}
    assert dataset.read() is None

    bigquery.clear()
    again = dataset.run(state="absent")
    assert again["changed"] is False and bigquery.writes() == []


@pytest.mark.parametrize("options, expected", [
    ({"dataset_id": "bad-name"}, "dataset_id 'bad-name' is invalid"),
    ({"labels": {"Team": "ml"}}, "label key 'Team'"),
    ({"default_table_expiration_ms": 60000}, "at least 3600000"),
    ({"access": [{"role": "READER"}]}, "access[0] needs exactly one of"),
    ({"access": [{"role": "READER", "user_by_email": "a@b.c", "domain": "b.c"}]}, "got user_by_email, domain"),
])
def test_bad_input_fails_before_any_call(dataset, bigquery, options, expected):
    result = dataset.run(**options)
    assert result["rc"] == 1 and expected in result["msg"], result["msg"]
    assert bigquery.requests == []


def test_retries_transient_errors(dataset, bigquery):
    bigquery.inject(503, 2)
    result = dataset.run(description="after retries")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(bigquery.requests) == 4  # two refused reads, the read, the insert
    assert dataset.read()["description"] == "after retries"


def test_create_whose_answer_was_lost_converges(dataset, bigquery):
    """The insert reaches BigQuery but its answer is lost: the retried insert gets 409, the module reads."""
    bigquery.inject(503, 1, method="POST", forward=True)
    result = dataset.run(description="created once")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert [r[0] for r in bigquery.requests] == ["GET", "POST", "POST", "GET"]
    assert result["dataset"]["description"] == "created once"


def test_api_error_is_reported_with_status_and_resource(dataset, bigquery):
    bigquery.inject(403, 1)
    result = dataset.run()
    assert result["rc"] == 1
    assert result["msg"].startswith("projects/%s/datasets/%s: HTTP 403" % (PROJECT, dataset.id)), result["msg"]
    assert result["status"] == 403
    assert len(bigquery.requests) == 1, "a 403 is not retried"


def test_gives_up_after_timeout(dataset, bigquery):
    bigquery.inject(429, 1000)
    result = dataset.run(timeout=2)
    assert result["rc"] == 1 and "HTTP 429" in result["msg"] and "gave up retrying" in result["msg"]
    assert dataset.read() is None


def test_access_entries_are_the_whole_list(dataset, bigquery):
    reader = {"role": "roles/bigquery.dataViewer", "user_by_email": "grafana@p.iam.gserviceaccount.com"}
    owners = {"role": "OWNER", "special_group": "projectOwners"}
    result = dataset.run(access=[reader, owners])
    assert result["rc"] == 0 and result["changed"] is True, result
    assert {"role": "READER", "userByEmail": "grafana@p.iam.gserviceaccount.com"} in dataset.read()["access"]

    bigquery.clear()
    assert dataset.run(access=[owners, reader])["changed"] is False, "order and role aliases are not changes"
    assert bigquery.writes() == []

    revoked = dataset.run(access=[owners])
    assert revoked["changed_fields"] == ["access"]
    assert dataset.read()["access"] == [{"role": "OWNER", "specialGroup": "projectOwners"}]
