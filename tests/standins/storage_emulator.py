"""gcp-storage-emulator, started with fidelity fixes so it answers bucket inserts and patches the way GCS does.

The emulator ignores every setting of a bucket insert (location, labels, versioning, IAM configuration,
lifecycle...) and keeps only the name, while a PATCH stores them. GCS applies them at insert. Its bucket
PATCH replaces a map field as a whole and stores null values, and ignores ifMetagenerationMatch; GCS merges
maps (null removes a key, which is how a label is removed) and answers 412 when the precondition fails.
Our modules send the real request bodies, so this wrapper makes the emulator honour them instead of bending
the modules around the emulator. Run: python -m tests.standins.storage_emulator --port 9023
"""

from __future__ import annotations

import argparse
import logging
from http import HTTPStatus

from gcp_storage_emulator.handlers import buckets

_emulator_insert = buckets.insert


def insert_with_settings(request, response, storage, *args, **kwargs):
    _emulator_insert(request, response, storage, *args, **kwargs)
    name = (request.data or {}).get("name")
    bucket = storage.buckets.get(name) if name else None
    if bucket is not None and bucket.get("metageneration") == "1" and response.status in (None, 200):
        settings = {k: v for k, v in request.data.items() if k != "name"}
        if settings.get("location"):
            settings["location"] = settings["location"].upper()  # GCS reports locations in capitals
        bucket = buckets._patch_bucket(bucket, settings)
        bucket["metageneration"] = "1"
        storage.create_bucket(name, bucket)
        response.json(bucket)


def merge_patch(current, patch):
    """How Google APIs apply a PATCH body to a field: maps merge, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(current) if isinstance(current, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


_emulator_patch = buckets.patch


def patch_with_merge(request, response, storage, *args, **kwargs):
    bucket = storage.buckets.get(request.params.get("bucket_name") or "")
    if bucket is not None:
        expected = request.query.get("ifMetagenerationMatch")
        if expected and expected[0] != bucket.get("metageneration"):
            response.status = HTTPStatus.PRECONDITION_FAILED
            response.json({"error": {"code": 412, "message": "Precondition Failed",
                                     "errors": [{"domain": "global", "reason": "conditionNotMet",
                                                 "message": "Precondition Failed"}]}})
            return
        data = request.data or {}  # merged in place: the emulator's own handler then stores the result
        for key, value in data.items():
            if isinstance(value, dict):
                data[key] = merge_patch(bucket.get(key), value)
    _emulator_patch(request, response, storage, *args, **kwargs)


buckets.insert = insert_with_settings
buckets.patch = patch_with_merge

# Imported after the patches: the server builds its route table from the handlers at import time.
from gcp_storage_emulator.server import create_server  # noqa: E402  pylint: disable=wrong-import-position


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9023)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    create_server(args.host, args.port, in_memory=True).run()


if __name__ == "__main__":
    main()
