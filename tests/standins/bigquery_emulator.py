"""bqemulator, started with one fidelity fix so label updates behave as in BigQuery.

BigQuery PATCH merges the `labels` map and removes a label sent as null (the documented way to delete
one). bqemulator replaces the whole map and answers HTTP 500 to a null value. Our modules send the real
request (every wanted label, plus null for each label to remove), so dropping the nulls before the
emulator sees them gives BigQuery's result. Run with bqemulator's own arguments:
python -m tests.standins.bigquery_emulator start --rest-port 9050 ...
"""

from __future__ import annotations

import json

import bqemulator.server
from bqemulator.cli import main as bqemulator_main

_emulator_create_app = bqemulator.server.create_app


class DropNullLabels:
    """ASGI middleware: remove null-valued labels from PATCH/PUT bodies."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("PATCH", "PUT"):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            resource = json.loads(body)
        except ValueError:
            resource = None
        if isinstance(resource, dict) and isinstance(resource.get("labels"), dict):
            resource["labels"] = {k: v for k, v in resource["labels"].items() if v is not None}
            body = json.dumps(resource).encode()
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            scope = dict(scope, headers=headers + [(b"content-length", str(len(body)).encode())])
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def create_app(context):
    return DropNullLabels(_emulator_create_app(context))


bqemulator.server.create_app = create_app

if __name__ == "__main__":
    bqemulator_main()  # pylint: disable=no-value-for-parameter
