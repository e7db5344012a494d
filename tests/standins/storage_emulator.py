"""gcp-storage-emulator, started with one fidelity fix so it answers bucket inserts the way GCS does.

The emulator ignores every setting of a bucket insert (location, labels, versioning, IAM configuration,
lifecycle...) and keeps only the name, while a PATCH stores them. GCS applies them at insert. Our modules
send the real insert body, so this wrapper makes the emulator honour it instead of bending the module
around the emulator. Run: python -m tests.standins.storage_emulator --port 9023
"""

from __future__ import annotations

import argparse
import logging

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


buckets.insert = insert_with_settings

# Imported after the patch: the server builds its route table from buckets.insert at import time.
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
