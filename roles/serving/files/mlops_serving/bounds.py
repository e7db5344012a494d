"""What one request may cost: the body's size, its shape, and the size of the errors sent back.

Memory is what kills a serving instance (Cloud Run stops it, and the predictions queued for BigQuery, already
acknowledged, go with it), so a request is refused as early and as cheaply as it can be:

1. the body is read in chunks and refused with 413 as soon as it passes MAX_BODY_BYTES (at once when its
   Content-Length says so): nothing over the limit is ever held or parsed;
2. the JSON is decoded (NaN and Infinity refused, depth bounded by the decoder's recursion limit);
3. the batch is counted before any per-instance object is built;
4. every string and key is checked to be encodable (a lone surrogate such as "\\ud800" is valid JSON but
   not Unicode), and nesting deeper than MAX_DEPTH is refused.

Every client error is a 422 (or 413) in FastAPI's shape, {"detail": [{"loc", "msg", "type"}]}, with at most
MAX_ERRORS errors (then "more_errors" counts the rest) and no more than EXCERPT characters of any input
value or key, so an answer is never much larger than a normal one, whatever the request.
"""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse

MAX_ERRORS = 50       # errors listed in one 422
EXCERPT = 64          # characters of an input value or key shown in an error
MAX_MESSAGE = 300     # characters of one error message (a model with many columns names them all)
MAX_DEPTH = 32        # nesting of the JSON body (the API's own structure is 4 levels)


class InputError(Exception):
    """The request cannot be served as it is: a 413 or a 422 with `errors` (FastAPI's shape)."""

    def __init__(self, errors, status=422, total=None):
        super().__init__(errors[0]["msg"] if errors else "invalid request")
        self.errors = errors
        self.status = status
        self.total = len(errors) if total is None else total

    def response(self):
        return error_response(self.errors, self.status, self.total)


def error(location, message, kind):
    return {"loc": list(location), "msg": message, "type": kind}


def excerpt(value, limit=EXCERPT):
    """`value` as text of at most `limit` characters, marked when cut; lone surrogates shown as \\udXXX."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = "%s... (truncated, %d characters)" % (text[:limit], len(text))
    # A lone surrogate cannot be encoded as UTF-8: the answer would fail to render (a 500) if it kept one.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_error(item):
    location = [part if isinstance(part, int) else excerpt(str(part)) for part in item.get("loc", ())]
    return error(location, excerpt(str(item.get("msg", "")), MAX_MESSAGE), str(item.get("type", "value_error")))


def error_response(errors, status=422, total=None):
    """The JSON answer for `errors`: the first MAX_ERRORS, each cut to size, and a count of the others."""
    total = len(errors) if total is None else total
    content = {"detail": [_safe_error(item) for item in errors[:MAX_ERRORS]]}
    if total > len(content["detail"]):
        content["more_errors"] = total - len(content["detail"])
    return JSONResponse(content, status_code=status)


def too_large(limit):
    return InputError([error(["body"], "the request body is larger than %d bytes; send fewer instances per "
                                       "request" % limit, "body_too_large")], status=413)


async def read_body(request, limit):
    """The request body, read in chunks; InputError (413) as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)  # refused before reading any of it
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:  # chunked, or a Content-Length that lied
            raise too_large(limit)
        body += chunk
    return bytes(body)


def _refuse_constant(name):
    raise ValueError("%s is not a JSON number: send finite numbers only" % name)


def decode(raw):
    """The decoded JSON body; InputError (422) when it is not JSON this API can take."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise InputError([error(["body"], "the JSON body is nested too deeply", "json_invalid")]) from None
    except UnicodeDecodeError:
        raise InputError([error(["body"], "the body is not UTF-8 text", "json_invalid")]) from None
    except json.JSONDecodeError as exc:  # its msg is the decoder's own text: it quotes none of the input
        raise InputError([error(["body", exc.pos], "invalid JSON: %s" % exc.msg, "json_invalid")]) from None
    except ValueError as exc:  # an integer of more than 4300 digits, or NaN/Infinity
        raise InputError([error(["body"], "invalid JSON: %s" % exc, "json_invalid")]) from None
    check_text_and_depth(value)
    return value


def _encodable(text):
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _items(node):
    return iter(node.items()) if isinstance(node, dict) else enumerate(node)


def _surrogate(location, what):
    return InputError([error(location, "the %s holds a lone surrogate (such as \\ud800): not valid Unicode" % what,
                             "string_unicode")])


def check_text_and_depth(value):
    """InputError when a string or key holds a lone surrogate or the nesting passes MAX_DEPTH.

    Walked with a stack of iterators (one per open container, so at most MAX_DEPTH): no per-node copies."""
    if isinstance(value, str) and not _encodable(value):
        raise _surrogate(["body"], "string")
    if not isinstance(value, (dict, list)):
        return
    path = []                  # keys from the body down to the container on top of the stack
    stack = [_items(value)]
    while stack:
        for key, item in stack[-1]:
            if isinstance(key, str) and not _encodable(key):
                raise _surrogate(["body"] + path + [key], "key")
            if isinstance(item, str):
                if not _encodable(item):
                    raise _surrogate(["body"] + path + [key], "string")
            elif isinstance(item, (dict, list)):
                if len(stack) >= MAX_DEPTH:
                    raise InputError([error(["body"] + path + [key], "the JSON body is nested more than %d levels "
                                            "deep" % MAX_DEPTH, "json_invalid")])
                path.append(key)
                stack.append(_items(item))
                break
        else:
            stack.pop()
            if path:
                path.pop()


def check_batch_size(value, max_instances):
    """InputError when the body is a batch of more than `max_instances`: counted before any model is built."""
    instances = value.get("instances") if isinstance(value, dict) else None
    if isinstance(instances, list) and len(instances) > max_instances:
        raise InputError([error(["body", "instances"], "at most %d instances per request, got %d" % (
            max_instances, len(instances)), "too_long")])
