# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The converge loop every module shares: read, compare, create/update/delete, report.

A module declares a Resource (how to read, create, update and delete it, and the desired body built
from the options the user set); converge() does the rest the same way everywhere: state
present/absent, comparison on the fields the user set only, check mode without a single write call,
before/after diff, and one clear failure message for any Google API error.
"""

from __future__ import annotations

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError


class Exact(dict):
    """A desired mapping that must match as a whole (extra keys in the actual resource count as a change).

    Plain dicts compare as a subset: keys the user did not set are left to the server. Labels are
    the usual Exact mapping: a label the user removed from the list must be removed from the resource.
    """


class ResourceError(Exception):
    """A refusal the module explains to the user (invalid change, non-empty container, ...)."""


def prune(value):
    """Drop None values recursively: an option the user did not set is not part of the desired state."""
    if isinstance(value, Exact):
        return Exact((k, prune(v)) for k, v in value.items() if v is not None)
    if isinstance(value, dict):
        return {k: prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def int64(value):
    """An integer option as the REST APIs encode int64 fields: a JSON string (None stays None)."""
    return None if value is None else str(value)


def _number(value):
    """A number, or a string that spells one, as int when it is integral (int64 beyond float precision)."""
    if isinstance(value, (int, float)):
        return value
    try:
        return int(value)
    except ValueError:
        return float(value)


def _scalar_equal(desired, actual):
    # True == 1 in Python, but a boolean field holding 1 (or a number field holding True) is a change.
    if isinstance(desired, bool) or isinstance(actual, bool):
        return type(desired) is type(actual) and desired == actual
    if desired == actual:
        return True
    # The REST APIs encode int64 as JSON strings ("3600000"): a number and a string compare by value.
    # Two strings compare as text: label "01" is not label "1".
    if isinstance(desired, (int, float)) != isinstance(actual, (int, float)) and \
            isinstance(desired, (int, float, str)) and isinstance(actual, (int, float, str)):
        try:
            return _number(desired) == _number(actual)
        except ValueError:
            return False
    return False


def differences(desired, actual, path=""):
    """Dotted paths where actual does not hold what desired asks for.

    Only keys present in desired are compared (server defaults and output-only fields never count),
    except for Exact mappings. Lists compare item by item, in order, each item as a subset.
    """
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            # An empty mapping asks for nothing when the field is absent (APIs omit empty maps such as labels).
            return [path] if desired or actual is not None else []
        found = []
        for key, value in desired.items():
            found += differences(value, actual.get(key), "%s.%s" % (path, key) if path else key)
        if isinstance(desired, Exact) and set(actual) - set(desired):
            found.append(path)
        return sorted(set(found))
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return [path] if desired or actual else []
        return [path] if any(differences(d, a) for d, a in zip(desired, actual)) else []
    return [] if _scalar_equal(desired, actual) else [path]


def project(actual, desired):
    """The part of actual that desired talks about: the `before` half of a diff."""
    if isinstance(desired, dict) and isinstance(actual, dict):
        if isinstance(desired, Exact):
            return dict(actual)
        return {k: project(actual[k], v) for k, v in desired.items() if k in actual}
    return actual


def top_level(paths):
    return sorted({p.split(".")[0] for p in paths})


def lookup(value, path):
    """The value at a dotted path ("settings.tier") of nested mappings, None when a part is missing."""
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def with_fields(view, source, fields):
    """A copy of view where each field (a top-level name or a dotted path) holds its value in source."""
    view = dict(view)
    for field in fields:
        parts = field.split(".", 1)
        head = parts[0]
        if len(parts) == 2 and isinstance(source.get(head), dict):
            inner = view.get(head)
            view[head] = with_fields(inner if isinstance(inner, dict) else {}, source[head], parts[1:])
        else:
            view[head] = source.get(head)
    return view


def patch_body(actual, desired, changed_fields):
    """The PATCH body for the changed top-level fields.

    Google APIs merge the maps of a PATCH body into the resource, so an Exact mapping (labels) also
    sends each key it no longer holds as null, which removes it.
    """
    body = {}
    for field in changed_fields:
        value = desired[field]
        if isinstance(value, Exact):
            value = dict({key: None for key in actual.get(field) or {}}, **value)
        body[field] = value
    return body


class Resource:
    """Declaration of one kind of GCP resource. Subclasses fill in the blanks."""

    kind = "resource"            # for messages: "BigQuery dataset"
    result_key = "resource"      # the key the resource is returned under
    immutable = ()               # top-level fields that cannot change in place

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = module.client

    @property
    def name(self):
        """Full resource name, used in every message."""
        raise NotImplementedError

    def validate(self):
        """Check the options before any API call; raise ResourceError with a clear message."""

    def desired(self):
        """The resource body built from the options the user set (None values are pruned)."""
        raise NotImplementedError

    def read(self):
        """The resource as the API returns it, or None when it does not exist."""
        raise NotImplementedError

    def create(self, desired):
        raise NotImplementedError

    def update(self, actual, desired, changed_fields):
        """Apply the changed top-level fields; return the resource as it now is."""
        raise NotImplementedError

    def delete(self, actual):
        raise NotImplementedError

    def check_delete(self, actual):
        """Raise ResourceError when deleting would destroy something the user did not agree to lose."""

    def report(self, result):
        """Add module-specific keys to the result just before the module exits (a connection string, a
        restart notice...). The result already holds changed, the resource under result_key, and for an
        update changed_fields and diff."""

    def normalize(self, actual):
        """Put the actual resource in the desired body's shape (aliases, casing, order) before comparing."""
        return actual

    def changes(self, actual, desired):
        """Top-level fields whose desired value the resource does not hold. Override for a field that
        needs its own comparison (a table schema is matched by column name, not by position)."""
        return top_level(differences(desired, actual))

    def plan_update(self, actual, desired, changed_fields):
        """Decide how to apply a change: return "update", or "recreate", or raise ResourceError.

        By default a change to an immutable field is refused with the field's old and new values.
        """
        blocked = [f for f in changed_fields if f in self.immutable]
        if blocked:
            raise ResourceError(
                "%s %s: %s cannot be changed in place (%s); delete and re-create the resource to change it"
                % (self.kind, self.name, ", ".join(blocked),
                   "; ".join("%s is %r, asked for %r" % (f, lookup(actual, f), lookup(desired, f)) for f in blocked))
            )
        return "update"


class LocatedResource(Resource):
    """A resource named projects/PROJECT/locations/LOCATION/<collection>/NAME, from the options project,
    location and name (Cloud Run, Artifact Registry, Cloud Scheduler ...)."""

    collection = None  # "services", "repositories" ...
    version = "v1"     # the API version in the path

    @property
    def parent(self):
        return "projects/%s/locations/%s" % (self.params["project"], self.params["location"])

    @property
    def name(self):
        return "%s/%s/%s" % (self.parent, self.collection, self.params["name"])

    @property
    def path(self):
        return "/%s/%s" % (self.version, self.name)


def exit_module(module, result):
    """Exit with the result; the diff only when the task asked for one (--diff)."""
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


def _create(resource, desired):
    try:
        return resource.create(desired)
    except GcpApiError as exc:
        # A create retried after a lost answer (5xx, dropped connection) may have gone through the first
        # time: then the retry gets 409 and the resource is there to read.
        existing = resource.read() if exc.status == 409 else None
        if existing is None:
            raise
        return existing


def converge(resource):
    """Bring one resource to the requested state and exit the module with the result."""
    module = resource.module
    state = module.params.get("state", "present")
    result = dict(changed=False)
    try:
        resource.validate()
        desired = prune(resource.desired()) if state == "present" else None
        raw = resource.read()
        actual = resource.normalize(raw) if raw is not None else None

        if state == "absent":
            if actual is not None:
                resource.check_delete(raw)
                result.update(changed=True, diff=dict(before=actual, after={}))
                if not module.check_mode:
                    resource.delete(raw)
            result[resource.result_key] = {}
            resource.report(result)
            exit_module(module, result)

        if actual is None:
            result.update(changed=True, diff=dict(before={}, after=desired))
            after = desired if module.check_mode else _create(resource, desired)
        else:
            changed_fields = resource.changes(actual, desired)
            after = raw
            if changed_fields:
                plan = resource.plan_update(actual, desired, changed_fields)
                before_view = project(actual, desired)
                # A changed field is a top-level name or a dotted path into a nested object ("settings.tier").
                after_view = with_fields(before_view, desired, changed_fields)
                result.update(changed=True, changed_fields=changed_fields,
                              diff=dict(before=before_view, after=after_view))
                if plan == "recreate":
                    result["recreated"] = True
                if not module.check_mode:
                    if plan == "recreate":
                        resource.delete(raw)
                        after = _create(resource, desired)
                    else:
                        after = resource.update(raw, desired, changed_fields)
        result[resource.result_key] = after
        resource.report(result)
        exit_module(module, result)
    except ResourceError as exc:
        module.fail_json(msg=str(exc), **result)
    except GcpApiError as exc:
        module.fail_api(exc, **result)
