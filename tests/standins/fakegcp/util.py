"""Small helpers shared by the API files: time stamps, projects, etags, pages, update masks, labels."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import itertools
import re

from tests.standins.fakegcp.errors import ApiError, invalid

PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
PROJECT_NUMBER = re.compile(r"^[1-9][0-9]{5,19}$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_counter = itertools.count(1)


def now():
    """RFC 3339 UTC with microseconds, as Google writes times."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def project_number(project_id):
    """A stable 12-digit project number for a project id."""
    return str(10 ** 11 + int(hashlib.sha256(project_id.encode()).hexdigest(), 16) % (9 * 10 ** 11))


class Projects:
    """Every syntactically valid project id exists; numbers resolve once their id has been seen."""

    def __init__(self):
        self.by_number = {}

    def resolve(self, ref):
        """(project_id, project_number) for a project id or number; 400 for a malformed id, 403 unknown number."""
        if PROJECT_NUMBER.match(ref or ""):
            if ref not in self.by_number:
                raise ApiError(403, "Permission denied on resource project %s." % ref, status="PERMISSION_DENIED",
                               reason="forbidden")
            return self.by_number[ref], ref
        if not PROJECT_ID.match(ref or ""):
            raise invalid("Invalid project id '%s': a project id is 6 to 30 lowercase letters, digits or hyphens, "
                          "starting with a letter and not ending with a hyphen." % ref, field="project")
        number = project_number(ref)
        self.by_number[number] = ref
        return ref, number


def new_etag(prefix=b"\x07"):
    """An opaque base64 etag that changes on every call (IAM policies and resources)."""
    raw = prefix + next(_counter).to_bytes(7, "big")
    return base64.b64encode(raw).decode()


def paginate(items, page_size, page_token, default_size=100, max_size=1000):
    """(page, next_token or None) over a list, with offset tokens."""
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise invalid("Invalid page token: %s" % page_token, field="pageToken") from None
    size = int(page_size or default_size)
    if size < 0:
        raise invalid("page_size must be non-negative", field="pageSize")
    size = min(size or default_size, max_size)
    page = items[start:start + size]
    return page, (str(start + size) if start + size < len(items) else None)


def mask_paths(mask):
    """The camelCase paths of a FieldMask string."""
    if mask is None:
        return None
    paths = [p.strip() for p in mask.split(",") if p.strip()]
    return [".".join(_camel(part) for part in p.split(".")) for p in paths]


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def apply_mask(target, source, paths):
    """Copy the masked fields from source to target (missing in source = cleared)."""
    for path in paths:
        parts = path.split(".")
        src, dst = source, target
        for part in parts[:-1]:
            src = (src or {}).get(part) or {}
            dst = dst.setdefault(part, {})
        if parts[-1] in (src or {}):
            dst[parts[-1]] = copy.deepcopy(src[parts[-1]])
        else:
            dst.pop(parts[-1], None)


def label_problems(labels, where="labels"):
    for key, value in (labels or {}).items():
        if not LABEL_KEY.match(key):
            return "Invalid %s key %r: keys start with a lowercase letter and hold at most 63 lowercase letters, " \
                   "digits, underscores or dashes." % (where, key)
        if value is not None and not LABEL_VALUE.match(value):  # null removes a label in a PATCH
            return "Invalid %s value %r for key %r: at most 63 lowercase letters, digits, underscores or dashes." \
                % (where, value, key)
    if len(labels or {}) > 64:
        return "At most 64 %s are allowed." % where
    return None


def deep(value):
    return copy.deepcopy(value)
