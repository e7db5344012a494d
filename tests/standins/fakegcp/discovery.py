"""Discovery documents: routes, parameters and request-body validation, as Google's front end applies them.

The fake serves each API from the discovery document shipped with google-api-python-client. A method is
routed by its flatPath and HTTP method; its path and query parameters are checked against their declared
types, enums and patterns; its request body is checked against the request schema (unknown fields, JSON
types, enum values, "Required." fields) and stripped of output-only fields before a handler sees it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from urllib.parse import unquote

from tests.standins.fakegcp.errors import ApiError

DOCUMENTS = None  # resolved lazily: googleapiclient/discovery_cache/documents

# Query parameters every Google API accepts (they are also declared in each document's "parameters").
STANDARD_QUERY = frozenset(("$.xgafv", "access_token", "alt", "callback", "fields", "key", "oauth_token",
                            "prettyPrint", "quotaUser", "upload_protocol", "uploadType", "userIp"))
OUTPUT_ONLY = re.compile(r"^\s*(\[output[ -]only\]|output[ -]only\b|optional\.\s*output only\b)", re.IGNORECASE)
REQUIRED = re.compile(r"^\s*(required[.:]|\[required\])", re.IGNORECASE)
INT_TEXT = re.compile(r"^-?\d+$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
INT32_RANGE = {"int32": (-2 ** 31, 2 ** 31 - 1), "uint32": (0, 2 ** 32 - 1),
               "int64": (-2 ** 63, 2 ** 63 - 1), "uint64": (0, 2 ** 64 - 1)}


def documents_dir():
    global DOCUMENTS  # pylint: disable=global-statement
    if DOCUMENTS is None:
        import googleapiclient

        DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
    return DOCUMENTS


def snake(name):
    """camelCase -> snake_case, the proto field names Google uses in error paths."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def is_output_only(prop):
    return bool(prop.get("readOnly")) or bool(OUTPUT_ONLY.match(prop.get("description") or ""))


def is_required(prop):
    return bool(REQUIRED.match(prop.get("description") or ""))


def _path_regex(template, flat):
    """A discovery path template as a regex. In a flatPath every {var} is one segment without ':'."""
    out, pos = [], 0
    for match in re.finditer(r"\{(\+?)([^}]+)\}", template):
        out.append(re.escape(template[pos:match.start()]))
        group = re.sub(r"\W", "_", match.group(2))
        if match.group(1):
            out.append("(?P<%s>.+?)" % group)
        else:
            out.append("(?P<%s>[^/:]+)" % group if flat else "(?P<%s>[^/]+?)" % group)
        pos = match.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^/" + "".join(out) + "$")


class Method:
    """One REST method of a discovery document."""

    def __init__(self, doc, method_id, spec):
        self.doc = doc
        self.id = method_id
        self.http_method = spec["httpMethod"]
        self.path = spec["path"]
        self.flat_path = spec.get("flatPath", spec["path"])
        self.parameters = spec.get("parameters", {})
        self.request_ref = (spec.get("request") or {}).get("$ref")
        self.response_ref = (spec.get("response") or {}).get("$ref")
        self.flat_regex = _path_regex(doc.service_path + self.flat_path, flat=True)
        self.path_regex = _path_regex(doc.service_path + self.path, flat=False)
        # Routing preference: literal segments beat variables (".../services:batchGet" before ".../{id}").
        self.specificity = (-len(re.sub(r"\{[^}]+\}", "", self.flat_path)), self.flat_path.count("{"))

    def __repr__(self):
        return "<Method %s %s %s>" % (self.id, self.http_method, self.flat_path)

    def path_params(self, path):
        """The path parameters of a routed path, by the names of the method's `path` template."""
        match = self.path_regex.match(path)
        if not match:  # the flat path matched, so this cannot happen for well-formed documents
            raise ApiError(404, "The requested URL %s was not found on this server." % path)
        params = {}
        for name, value in match.groupdict().items():
            original = next((p for p in self.parameters if re.sub(r"\W", "_", p) == name), name)
            params[original] = unquote(value)
        for name, value in params.items():
            pattern = (self.parameters.get(name) or {}).get("pattern")
            if pattern and not re.match(pattern, value):
                raise ApiError(400, "Invalid resource field value in the request.", status="INVALID_ARGUMENT",
                               reason="badRequest", field=name, description="%r does not match %s" % (value, pattern))
        return params

    def query_params(self, query):
        """Check the query string against the declared parameters; returns {name: value or [values]}."""
        out = {}
        for name, values in query.items():
            spec = self.parameters.get(name)
            if spec is None or spec.get("location") != "query":
                if name in STANDARD_QUERY or name in self.doc.parameters:
                    continue
                raise ApiError(400, 'Invalid JSON payload received. Unknown name "%s": Cannot bind query parameter. '
                               "Field '%s' could not be found in request message." % (name, name),
                               status="INVALID_ARGUMENT", reason="invalid", field=name)
            checked = [_query_value(name, spec, value) for value in values]
            out[name] = checked if spec.get("repeated") else checked[-1]
        for name, spec in self.parameters.items():
            if spec.get("location") == "query" and spec.get("required") and name not in out:
                raise ApiError(400, "Required parameter %s is missing." % name, status="INVALID_ARGUMENT",
                               reason="required", field=name)
        return out


def _query_value(name, spec, value):
    kind = spec.get("type")
    if spec.get("enum") and value not in spec["enum"]:
        raise ApiError(400, "Invalid value at '%s' (TYPE_ENUM), \"%s\"" % (snake(name), value),
                       status="INVALID_ARGUMENT", reason="invalid", field=name)
    if kind == "integer" or spec.get("format") in ("int64", "uint64"):
        if not INT_TEXT.match(value):
            raise ApiError(400, "Invalid value at '%s' (TYPE_INT%s), \"%s\"" % (
                snake(name), "64" if "64" in spec.get("format", "") else "32", value),
                status="INVALID_ARGUMENT", reason="invalid", field=name)
        return int(value)
    if kind == "boolean":
        if value not in ("true", "false", "1", "0"):
            raise ApiError(400, "Invalid value at '%s' (TYPE_BOOL), \"%s\"" % (snake(name), value),
                           status="INVALID_ARGUMENT", reason="invalid", field=name)
        return value in ("true", "1")
    return value


class Document:
    """A loaded discovery document: methods by id, schemas, and body validation."""

    def __init__(self, name):
        path = documents_dir() / ("%s.json" % name)
        data = json.loads(path.read_text(encoding="utf-8"))
        self.name = name
        self.service_path = data.get("servicePath") or ""
        self.schemas = data["schemas"]
        self.parameters = data.get("parameters", {})
        self.methods = {}
        self._collect(data)

    def _collect(self, node):
        for spec in (node.get("methods") or {}).values():
            self.methods[spec["id"]] = Method(self, spec["id"], spec)
        for child in (node.get("resources") or {}).values():
            self._collect(child)

    def method(self, method_id):
        try:
            return self.methods[method_id]
        except KeyError:
            raise KeyError("%s has no method %s" % (self.name, method_id)) from None

    # ---- request bodies -------------------------------------------------------------------------------
    def check_body(self, ref, body, required=True):
        """Validate a request body against schema `ref`; return a copy without output-only fields.

        required=False skips "Required." fields (partial updates such as PATCH with an update mask).
        """
        if not isinstance(body, dict):
            raise _bad_value("", "TYPE_MESSAGE", body)
        return self._check_object(self.schemas[ref], body, "", required)

    def _check_object(self, schema, value, where, required):
        props = schema.get("properties", {})
        out = {}
        for key, item in value.items():
            name = key if key in props else camel(key)
            if name not in props:
                at = " at '%s'" % where if where else ""
                raise ApiError(400, 'Invalid JSON payload received. Unknown name "%s"%s: Cannot find field.' % (key, at),
                               status="INVALID_ARGUMENT", reason="invalid", field=_join(where, key),
                               description='Invalid JSON payload received. Unknown name "%s"%s: Cannot find field.'
                               % (key, at))
            prop = props[name]
            if item is None:
                continue
            checked = self._check_value(prop, item, _join(where, snake(name)), required)
            if not is_output_only(prop):
                out[name] = checked
        if required:
            for name, prop in props.items():
                if is_required(prop) and not is_output_only(prop) and (name not in out or out[name] in ("", [])):
                    field = _join(where, snake(name))
                    raise ApiError(400, "Invalid request: field %s is required." % field, status="INVALID_ARGUMENT",
                                   reason="required", field=field, description="Field is required.")
        return out

    def _check_value(self, prop, value, where, required):
        if "$ref" in prop:
            schema = self.schemas[prop["$ref"]]
            if not isinstance(value, dict):
                raise _bad_value(where, "TYPE_MESSAGE", value)
            return self._check_object(schema, value, where, required)
        kind = prop.get("type")
        if kind == "array":
            if not isinstance(value, list):
                raise _bad_value(where, "TYPE_ARRAY", value)
            return [self._check_value(prop["items"], item, "%s[%d]" % (where, index), required)
                    for index, item in enumerate(value)]
        if kind == "object":
            if not isinstance(value, dict):
                raise _bad_value(where, "TYPE_MESSAGE", value)
            if "additionalProperties" in prop:
                # A null map value is kept: some APIs (Cloud SQL userLabels) remove that key on PATCH.
                return {key: None if item is None else
                        self._check_value(prop["additionalProperties"], item, "%s[%s]" % (where, key), required)
                        for key, item in value.items()}
            if "properties" in prop:
                return self._check_object(prop, value, where, required)
            return value
        if kind == "any":
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise _bad_value(where, "TYPE_BOOL", value)
            return value
        if kind == "integer":
            return _check_int(value, where, prop.get("format", "int32"))
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise _bad_value(where, "TYPE_DOUBLE", value)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    raise _bad_value(where, "TYPE_DOUBLE", value) from None
            return value
        if kind == "string":
            return self._check_string(prop, value, where)
        return value

    @staticmethod
    def _check_string(prop, value, where):
        fmt = prop.get("format")
        if fmt in ("int64", "uint64"):
            return str(_check_int(value, where, fmt))
        if not isinstance(value, str):
            raise _bad_value(where, "TYPE_STRING", value)
        if prop.get("enum"):
            if value not in prop["enum"]:
                raise ApiError(400, "Invalid value at '%s' (TYPE_ENUM), \"%s\"" % (where, value),
                               status="INVALID_ARGUMENT", reason="invalid", field=where,
                               description="Invalid value at '%s' (TYPE_ENUM), \"%s\"" % (where, value))
        elif fmt == "byte":
            try:
                base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "Invalid value at '%s' (TYPE_BYTES), Base64 decoding failed for \"%s\""
                               % (where, value), status="INVALID_ARGUMENT", reason="invalid", field=where) from None
        elif fmt == "google-datetime" and not DATETIME.match(value):
            raise ApiError(400, "Invalid value at '%s' (type.googleapis.com/google.protobuf.Timestamp), "
                           "Field '%s', Invalid time format: \"%s\"" % (where, where, value),
                           status="INVALID_ARGUMENT", reason="invalid", field=where)
        elif fmt == "google-duration" and not DURATION.match(value):
            raise ApiError(400, "Invalid value at '%s' (type.googleapis.com/google.protobuf.Duration), "
                           "Field '%s', Illegal duration format; duration must end with 's'" % (where, where),
                           status="INVALID_ARGUMENT", reason="invalid", field=where)
        return value


def _join(where, name):
    return "%s.%s" % (where, name) if where else name


def _bad_value(where, type_name, value):
    text = json.dumps(value) if not isinstance(value, str) else '"%s"' % value
    message = "Invalid value at '%s' (%s), %s" % (where, type_name, text) if where else \
        "Invalid JSON payload received. Expected an object, got %s." % text
    return ApiError(400, message, status="INVALID_ARGUMENT", reason="invalid", field=where or None,
                    description=message)


def _check_int(value, where, fmt):
    type_name = "TYPE_%s" % fmt.upper()
    if isinstance(value, bool):
        raise _bad_value(where, type_name, value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and INT_TEXT.match(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int):
        raise _bad_value(where, type_name, value)
    low, high = INT32_RANGE.get(fmt, INT32_RANGE["int64"])
    if not low <= value <= high:
        raise _bad_value(where, type_name, value)
    return value
