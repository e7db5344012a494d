"""module_utils/secrets.py: CRC-32C (with and without google-crc32c), payloads, secret references, access."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils import secrets as secret_utils
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpClient
from ansible_collections.deployml.mlops.tests.unit.plugins.module_utils.test_gcp_client import FakeModule

# The directory holding ansible_collections/, wherever this run imports the collection from (the checkout's
# .build link under pytest, ansible-test's own tree under ansible-test units).
COLLECTIONS = Path(secret_utils.__file__).parents[5]


@pytest.mark.parametrize("data, expected", [
    (b"", 0),
    (b"123456789", 0xE3069283),  # the CRC-32C check value (RFC 3720)
    (b"\x00" * 32, 0x8A9136AA),  # RFC 3720 B.4: 32 bytes of zeros
    (b"\xff" * 32, 0x62A8AB43),  # RFC 3720 B.4: 32 bytes of ones
    (bytes(range(32)), 0x46DD794E),  # RFC 3720 B.4: incrementing bytes
])
def test_pure_crc32c_matches_the_reference_values(data, expected):
    assert secret_utils.crc32c_pure(data) == expected
    assert secret_utils.crc32c(data) == expected


def test_pure_crc32c_agrees_with_google_crc32c():
    google_crc32c = pytest.importorskip("google_crc32c")
    for size in (1, 7, 64, 1000, 65536):
        data = os.urandom(size)
        assert secret_utils.crc32c_pure(data) == google_crc32c.value(data)


def test_module_utils_work_without_google_crc32c():
    """google-auth does not pull google-crc32c in: the import is guarded and the fallback is used."""
    code = (
        "import sys; sys.modules['google_crc32c'] = None\n"
        "from ansible_collections.deployml.mlops.plugins.module_utils import secrets\n"
        "assert secrets._google_crc32c is None\n"
        "print(secrets.crc32c(b'123456789'))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == str(0xE3069283)


def test_payload_is_base64_with_its_crc_as_an_int64_string():
    body = secret_utils.payload("pässword".encode("utf-8"))
    assert base64.b64decode(body["data"]) == "pässword".encode("utf-8")
    assert body["dataCrc32c"] == str(secret_utils.crc32c("pässword".encode("utf-8")))


@pytest.mark.parametrize("reference, expected", [
    ("db-password", ("p", "db-password", "latest")),
    ("projects/other/secrets/db_pw", ("other", "db_pw", "latest")),
    ("projects/other/secrets/db_pw/versions/3", ("other", "db_pw", "3")),
    ("projects/other/secrets/db_pw/versions/latest", ("other", "db_pw", "latest")),
])
def test_secret_references(reference, expected):
    assert secret_utils.parse_secret_ref(reference, "p") == expected


@pytest.mark.parametrize("reference, message", [
    ("a/b", "is not a secret"),
    ("projects/p/secrets/bad name", "secret id 'bad name' is invalid"),
    ("projects/p/secrets/s/versions/0", "secret version '0' is invalid"),
    ("projects/p/secrets/s/versions/newest", "secret version 'newest' is invalid"),
    ("", "secret id '' is invalid"),
])
def test_bad_secret_references(reference, message):
    with pytest.raises(ValueError) as failure:
        secret_utils.parse_secret_ref(reference, "p")
    assert message in str(failure.value)


def _client(server):
    return GcpClient(FakeModule(api_endpoints={"secretmanager": server.url}), sleep=lambda delay: None)


def test_access_decodes_and_checks_the_checksum(server):
    data = b"s3cret\n"
    server.answer((200, {"name": "projects/1/secrets/s/versions/2",
                         "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(secret_utils.crc32c(data))}}))
    assert secret_utils.access(_client(server), "projects/p/secrets/s/versions/latest") == data
    assert server.requests[0]["path"] == "/v1/projects/p/secrets/s/versions/latest:access"


def test_access_refuses_a_damaged_payload(server):
    server.answer((200, {"payload": {"data": base64.b64encode(b"abc").decode(), "dataCrc32c": "12345"}}))
    with pytest.raises(GcpApiError) as failure:
        secret_utils.access(_client(server), "projects/p/secrets/s/versions/1")
    assert failure.value.reason == "DATA_LOSS" and "abc" not in str(failure.value)


def test_enabled_versions_newest_first_across_pages(server):
    server.answer(
        (200, {"versions": [{"name": "projects/1/secrets/s/versions/2", "state": "ENABLED"},
                            {"name": "projects/1/secrets/s/versions/10", "state": "ENABLED"}],
               "nextPageToken": "t"}),
        (200, {"versions": [{"name": "projects/1/secrets/s/versions/9", "state": "DISABLED"},
                            {"name": "projects/1/secrets/s/versions/1", "state": "ENABLED"}]}),
    )
    versions = secret_utils.enabled_versions(_client(server), "projects/p/secrets/s")
    assert [v["name"].rsplit("/", 1)[1] for v in versions] == ["10", "2", "1"]
    assert "filter=state%3AENABLED" in server.requests[0]["path"]
    assert "pageToken=t" in server.requests[1]["path"]


def test_protect_masks_values_but_not_tiny_ones():
    class Module:
        no_log_values = set()

    module = Module()
    secret_utils.protect(module, b"long-enough")
    secret_utils.protect(module, "abc")
    secret_utils.protect(module, b"\xff\xfe\xfd\xfc")
    assert module.no_log_values == {"long-enough"}
