# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Secret Manager v1: secret names, payload checksums, and reading a version's value.

Shared by the secret module (which compares a value with the latest enabled version) and
cloud_sql_user (which sets a database password from a secret). A value read here must never reach
a result, a message or a log: callers pass it to protect() and keep it out of what they return.
"""

from __future__ import annotations

import base64
import re

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError

API = "secretmanager"
SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
VERSION_ID = re.compile(r"^([1-9][0-9]*|latest)$")
SECRET_REF = re.compile(r"^projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/]+)(/versions/(?P<version>[^/]+))?$")
MAX_PAYLOAD = 65536  # bytes; Secret Manager refuses larger payloads
PROTECT_MIN_LENGTH = 4  # shorter strings are not masked: hiding every "a" would garble every message

try:  # google-crc32c is optional: google-auth does not pull it in; the pure Python CRC below is the fallback
    import google_crc32c as _google_crc32c
except ImportError:  # pragma: no cover - depends on the controller
    _google_crc32c = None


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _bit in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c_pure(data):
    """CRC-32C (Castagnoli) of bytes, in pure Python; payloads are at most 64 KiB, so speed does not matter."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c(data):
    """CRC-32C of bytes: google-crc32c when installed, else the pure Python implementation."""
    if _google_crc32c is not None:
        return _google_crc32c.value(data)
    return crc32c_pure(data)


def payload(data):
    """A SecretPayload for bytes: base64 data and its CRC-32C (int64 fields are JSON strings)."""
    return {"data": base64.b64encode(data).decode("ascii"), "dataCrc32c": str(crc32c(data))}


def _b64decode(text):
    text = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(text)
    return base64.b64decode(text)


def secret_path(name):
    return "/v1/%s" % name


def version_number(version):
    """The number of a version from its name (projects/P/secrets/S/versions/N)."""
    try:
        return int(version["name"].rsplit("/", 1)[1])
    except (KeyError, ValueError, IndexError):
        return 0


def parse_secret_ref(reference, default_project):
    """(project, secret id, version) of S, projects/P/secrets/S or projects/P/secrets/S/versions/V.

    Raises ValueError with a message naming what is wrong (never the secret's value: there is none here).
    """
    reference = (reference or "").strip()
    match = SECRET_REF.match(reference)
    if match:
        project, secret, version = match.group("project"), match.group("secret"), match.group("version") or "latest"
    elif "/" not in reference:
        project, secret, version = default_project, reference, "latest"
    else:
        raise ValueError("%r is not a secret: use SECRET, projects/PROJECT/secrets/SECRET or "
                         "projects/PROJECT/secrets/SECRET/versions/VERSION" % reference)
    if not SECRET_ID.match(secret):
        raise ValueError("secret id %r is invalid: use 1 to 255 letters, digits, '-' and '_'" % secret)
    if not VERSION_ID.match(version):
        raise ValueError("secret version %r is invalid: use a version number or 'latest'" % version)
    return project, secret, version


def enabled_versions(client, secret_name):
    """The ENABLED versions of a secret, newest (highest number) first."""
    found, token = [], None
    while True:
        page = client.request("GET", API, secret_path(secret_name) + "/versions", resource=secret_name,
                              params={"filter": "state:ENABLED", "pageSize": 100, "pageToken": token})
        found += [v for v in page.get("versions") or [] if v.get("state") == "ENABLED"]
        token = page.get("nextPageToken")
        if not token:
            return sorted(found, key=version_number, reverse=True)


def access(client, version_name):
    """The value (bytes) of a secret version, checked against its CRC-32C when the API gives one."""
    answer = client.request("GET", API, "/v1/%s:access" % version_name, resource=version_name)
    data = (answer.get("payload") or {}).get("data") or ""
    try:
        value = _b64decode(data)
    except (ValueError, TypeError):
        raise GcpApiError(None, "DATA_LOSS", "the payload of the secret version is not valid base64",
                          resource=version_name) from None
    expected = (answer.get("payload") or {}).get("dataCrc32c")
    if expected is not None and int(expected) != crc32c(value):
        raise GcpApiError(None, "DATA_LOSS", "the payload of the secret version does not match its CRC-32C "
                          "checksum; it was damaged on the way, run again", resource=version_name)
    return value


def protect(module, value):
    """Have Ansible mask a secret value wherever it could still appear (messages, tracebacks, results)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return
    if value and len(value) >= PROTECT_MIN_LENGTH:
        module.no_log_values.add(value)
