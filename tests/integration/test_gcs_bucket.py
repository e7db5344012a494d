"""gcs_bucket against the Cloud Storage emulator, through a recording proxy."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import PROJECT

SECURE = {"uniformBucketLevelAccess": {"enabled": True}, "publicAccessPrevention": "enforced"}
RULES = [
    {"action": {"type": "Delete"}, "condition": {"days_since_noncurrent_time": 30, "is_live": False}},
    {"action": {"type": "SetStorageClass", "storage_class": "COLDLINE"},
     "condition": {"age": 90, "matches_storage_class": ["STANDARD"], "matches_prefix": ["runs/"]}},
]
RULES_API = [
    {"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 30, "isLive": False}},
    {"action": {"type": "SetStorageClass", "storageClass": "COLDLINE"},
     "condition": {"age": 90, "matchesStorageClass": ["STANDARD"], "matchesPrefix": ["runs/"]}},
]


@pytest.fixture
def bucket(storage, unique, gcp_module):
    """Run gcs_bucket on a fresh bucket name; read() returns the bucket straight from the emulator."""

    class Bucket:
        name = "bkt-" + unique
        url = "%s/storage/v1/b/bkt-%s" % (storage.target, unique)

        def run(self, check=False, **options):
            args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints={"storage": storage.url},
                        name=self.name, timeout=20)
            args.update(options)
            return gcp_module("gcs_bucket", args, check=check)

        def read(self):
            response = requests.get(self.url, timeout=10)
            return response.json() if response.status_code == 200 else None

        def upload(self, object_name):
            response = requests.post("%s/upload/storage/v1/b/%s/o" % (storage.target, self.name), data=b"x",
                                     params={"uploadType": "media", "name": object_name}, timeout=10)
            assert response.status_code == 200, response.text

        def objects(self):
            return requests.get(self.url + "/o", timeout=10).json().get("items", [])

    return Bucket()


def test_create_round_trips_every_setting_then_unchanged(bucket, storage):
    options = dict(location="europe-west1", storage_class="NEARLINE", labels={"app": "mlops"}, versioning=True,
                   lifecycle_rules=RULES, soft_delete_retention_seconds=604800, retention_period_seconds=86400)
    result = bucket.run(**options)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["bucket"]["location"] == "EUROPE-WEST1"
    actual = bucket.read()
    assert actual["location"] == "EUROPE-WEST1" and actual["storageClass"] == "NEARLINE"
    assert actual["labels"] == {"app": "mlops"} and actual["versioning"] == {"enabled": True}
    assert actual["lifecycle"] == {"rule": RULES_API}
    assert actual["iamConfiguration"] == SECURE, "private unless the user opts out"
    assert actual["softDeletePolicy"]["retentionDurationSeconds"] == "604800"
    assert actual["retentionPolicy"]["retentionPeriod"] == "86400"

    storage.clear()
    again = bucket.run(**options)
    assert again["rc"] == 0 and again["changed"] is False, again
    assert storage.writes() == [] and len(storage.requests) == 1


def test_check_mode_create_writes_nothing(bucket, storage):
    result = bucket.run(check=True, location="eu", labels={"app": "mlops"})
    assert result["changed"] is True
    assert result["diff"] == {"before": {}, "after": {
        "name": bucket.name, "location": "EU", "labels": {"app": "mlops"}, "iamConfiguration": SECURE}}
    assert storage.writes() == []
    assert bucket.read() is None


def test_update_in_place_with_diff(bucket, storage):
    bucket.run(storage_class="NEARLINE", labels={"app": "mlops", "team": "ml"}, versioning=True,
               lifecycle_rules=RULES)
    wanted = dict(labels={"app": "mlops"}, versioning=False, lifecycle_rules=RULES[:1])

    storage.clear()
    preview = bucket.run(check=True, **wanted)
    assert preview["changed"] is True and preview["changed_fields"] == ["labels", "lifecycle", "versioning"]
    assert preview["diff"]["before"]["labels"] == {"app": "mlops", "team": "ml"}
    assert preview["diff"]["after"]["labels"] == {"app": "mlops"}
    assert preview["diff"]["before"]["versioning"] == {"enabled": True}
    assert preview["diff"]["after"]["lifecycle"] == {"rule": RULES_API[:1]}
    assert storage.writes() == [] and bucket.read()["versioning"] == {"enabled": True}

    storage.clear()
    result = bucket.run(**wanted)
    assert result["rc"] == 0 and result["changed"] is True, result
    assert [r[0] for r in storage.writes()] == ["PATCH"]
    actual = bucket.read()
    assert actual["labels"] == {"app": "mlops"}, "a label dropped from the options must be removed"
    assert actual["versioning"] == {"enabled": False}
    assert actual["lifecycle"] == {"rule": RULES_API[:1]}
    assert actual["storageClass"] == "NEARLINE", "fields not set in this run stay as they are"

    # The second update must send the new metageneration, or the emulator answers 412 like GCS.
    opt_out = dict(labels={}, lifecycle_rules=[], uniform_bucket_level_access=False,
                   public_access_prevention="inherited", soft_delete_retention_seconds=0)
    result = bucket.run(**opt_out)
    assert result["rc"] == 0, result
    assert result["changed_fields"] == ["iamConfiguration", "labels", "lifecycle", "softDeletePolicy"]
    actual = bucket.read()
    assert actual.get("labels", {}) == {} and actual["lifecycle"].get("rule", []) == []
    assert actual["softDeletePolicy"]["retentionDurationSeconds"] == "0"
    assert actual["iamConfiguration"] == {"uniformBucketLevelAccess": {"enabled": False},
                                          "publicAccessPrevention": "inherited"}

    storage.clear()
    again = bucket.run(versioning=False, **opt_out)
    assert again["changed"] is False, again
    assert storage.writes() == []


def test_location_is_immutable(bucket, storage):
    bucket.run(location="EU")
    storage.clear()
    result = bucket.run(location="us")
    assert result["rc"] == 1 and result["failed"] is True
    assert "location cannot be changed in place" in result["msg"], result["msg"]
    assert "'EU'" in result["msg"] and "'US'" in result["msg"] and bucket.name in result["msg"]
    assert storage.writes() == []
    assert bucket.read()["location"] == "EU"


def test_absent_refuses_bucket_with_objects_unless_forced(bucket, storage):
    bucket.run()
    bucket.upload("obj.txt")
    bucket.upload("runs/1/model file.pkl")  # '/' and ' ' must be escaped in the object's URL

    refused = bucket.run(state="absent")
    assert refused["rc"] == 1, refused
    assert "obj.txt" in refused["msg"] and "force: true" in refused["msg"], refused["msg"]
    assert bucket.read() is not None and len(bucket.objects()) == 2

    storage.clear()
    preview = bucket.run(state="absent", force=True, check=True)
    assert preview["changed"] is True and storage.writes() == []
    assert len(bucket.objects()) == 2

    storage.clear()
    deleted = bucket.run(state="absent", force=True)
    assert deleted["rc"] == 0 and deleted["changed"] is True and deleted["bucket"] == {}, deleted
    assert [r[0] for r in storage.writes()] == ["DELETE"] * 3
    assert bucket.read() is None

    storage.clear()
    again = bucket.run(state="absent")
    assert again["changed"] is False and storage.writes() == [] and len(storage.requests) == 1


@pytest.mark.parametrize("options, expected", [
    ({"name": "ab"}, "bucket name 'ab' is invalid: use 3 to 63 characters"),
    ({"name": "x" * 64}, "use 3 to 63 characters"),
    ({"name": "My-Bucket"}, "bucket name 'My-Bucket' is invalid: use lowercase letters"),
    ({"name": "bucket-"}, "start and end with a letter or digit"),
    ({"name": "192.168.1.1"}, "must not look like an IP address"),
    ({"name": "goog-data"}, "must not start with 'goog'"),
    ({"labels": {"Team": "ml"}}, "label key 'Team'"),
    ({"labels": {"cost": 3}}, "quote numbers"),
    ({"soft_delete_retention_seconds": 3600}, "soft_delete_retention_seconds must be 0 (off) or from 604800"),
    ({"soft_delete_retention_seconds": 8000000}, "to 7776000 (90 days), got 8000000"),
    ({"retention_period_seconds": 0}, "retention_period_seconds must be more than 0"),
    ({"lifecycle_rules": [{"action": {"type": "SetStorageClass"}, "condition": {"age": 1}}]},
     "lifecycle_rules[0]: action.storage_class goes with type SetStorageClass"),
    ({"lifecycle_rules": [{"action": {"type": "Delete"}, "condition": {}}]},
     "lifecycle_rules[0] needs at least one condition"),
    ({"lifecycle_rules": [{"action": {"type": "Delete"}, "condition": {"created_before": "01/02/2026"}}]},
     "condition.created_before must be a date"),
])
def test_bad_input_fails_before_any_call(bucket, storage, options, expected):
    result = bucket.run(**options)
    assert result["rc"] == 1 and expected in result["msg"], result["msg"]
    assert storage.requests == []


def test_retries_transient_errors(bucket, storage):
    storage.inject(503, 2)
    result = bucket.run(labels={"try": "again"})
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(storage.requests) == 4  # two refused reads, the read, the insert
    assert bucket.read()["labels"] == {"try": "again"}


def test_api_error_is_reported_with_status_and_resource(bucket, storage):
    storage.inject(403, 1)
    result = bucket.run()
    assert result["rc"] == 1
    assert result["msg"].startswith("projects/_/buckets/%s: HTTP 403" % bucket.name), result["msg"]
    assert result["status"] == 403
    assert len(storage.requests) == 1, "a 403 is not retried"
