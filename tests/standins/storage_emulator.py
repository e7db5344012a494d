"""gcp-storage-emulator, started with fidelity fixes so it answers bucket inserts and patches the way GCS does.

The emulator ignores every setting of a bucket insert (location, labels, versioning, IAM configuration,
lifecycle...) and keeps only the name, while a PATCH stores them; it gives every bucket project number 1234
where GCS gives the owning project's (here the number the fake control plane gives that project id). GCS applies them at insert. Its bucket
PATCH replaces a map field as a whole and stores null values, and ignores ifMetagenerationMatch; GCS merges
maps (null removes a key, which is how a label is removed) and answers 412 when the precondition fails.
Its bucket IAM policy is stored as sent: the client's etag is kept, a stale etag is accepted and conditions
need no version. GCS gives every policy a new etag, answers 412 to a setIamPolicy whose etag is not the
current one (that is how a concurrent change is detected), refuses conditional bindings in a policy below
version 3 or on a bucket without uniform bucket-level access, and refuses to return a policy holding
conditions when less than version 3 is requested.
Our modules send the real request bodies, so this wrapper makes the emulator honour them instead of bending
the modules around the emulator. Run: python -m tests.standins.storage_emulator --port 9023
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
from http import HTTPStatus

from gcp_storage_emulator.handlers import buckets

from tests.standins.fakegcp.util import project_number

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
        project = (request.query.get("project") or [None])[0]
        if project:  # GCS reports the owning project's number (the fake control plane's number for that id)
            bucket["projectNumber"] = project_number(project)
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


def _error(response, status, reason, message):
    response.status = status
    response.json({"error": {"code": int(status), "message": message,
                             "errors": [{"domain": "global", "reason": reason, "message": message}]}})


def policy_etag(generation):
    """A policy etag the way GCS spells them: base64 of a protobuf varint field 1 (CAE= is generation 1)."""
    data = bytearray(b"\x08")
    while True:
        byte, generation = generation & 0x7F, generation >> 7
        data.append(byte | (0x80 if generation else 0))
        if not generation:
            return base64.b64encode(bytes(data)).decode()


def policy_generation(etag):
    try:
        data = base64.b64decode(etag or "", validate=True)
    except (binascii.Error, ValueError):
        return 1
    if data[:1] != b"\x08":
        return 1
    value = shift = 0
    for byte in data[1:]:
        value |= (byte & 0x7F) << shift
        shift += 7
    return value or 1


def _conditional(policy):
    return any(binding.get("condition") for binding in (policy or {}).get("bindings") or [])


_emulator_get_iam = buckets.get_iam_policy
_emulator_set_iam = buckets.set_iam_policy


def get_iam_policy_versioned(request, response, storage, *args, **kwargs):
    policy = storage.get_bucket_iam_policy(request.params.get("bucket_name") or "")
    requested = (request.query.get("optionsRequestedPolicyVersion") or ["1"])[0]
    if not requested.isdigit():
        return _error(response, HTTPStatus.BAD_REQUEST, "invalid", "Invalid value for optionsRequestedPolicyVersion")
    if _conditional(policy) and int(requested) < 3:
        return _error(response, HTTPStatus.BAD_REQUEST, "invalid",
                      "The bucket's IAM policy contains conditions: request policy version 3")
    return _emulator_get_iam(request, response, storage, *args, **kwargs)


def set_iam_policy_with_etag(request, response, storage, *args, **kwargs):
    name = request.params.get("bucket_name") or ""
    bucket = storage.buckets.get(name)
    body = request.data if isinstance(request.data, dict) else None
    if bucket is not None and body is not None:
        current = storage.get_bucket_iam_policy(name) or {}
        current_etag = current.get("etag") or policy_etag(1)
        if body.get("etag") and body["etag"] != current_etag:
            return _error(response, HTTPStatus.PRECONDITION_FAILED, "conditionNotMet", "Precondition Failed")
        if _conditional(body):
            if (body.get("version") or 1) < 3:
                return _error(response, HTTPStatus.BAD_REQUEST, "invalid",
                              "IAM policies with conditions must be set at version 3")
            uniform = ((bucket.get("iamConfiguration") or {}).get("uniformBucketLevelAccess") or {}).get("enabled")
            if not uniform:
                return _error(response, HTTPStatus.BAD_REQUEST, "invalid",
                              "IAM conditions need uniform bucket-level access on the bucket")
        body["etag"] = policy_etag(policy_generation(current_etag) + 1)  # stored as is by the emulator
    return _emulator_set_iam(request, response, storage, *args, **kwargs)


buckets.insert = insert_with_settings
buckets.patch = patch_with_merge
buckets.get_iam_policy = get_iam_policy_versioned
buckets.set_iam_policy = set_iam_policy_with_etag

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
