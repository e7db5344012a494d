"""The base of every faked API: a discovery document plus handlers registered by method id.

An API file declares a subclass:

    class SecretManager(Api):
        name = "secretmanager"              # URL prefix, = the key of APIS in plugins/module_utils/gcp.py
        document = "secretmanager.v1"       # discovery document to route and validate with

        @handles("secretmanager.projects.secrets.get")
        def get_secret(self, req):
            return self.secrets[...]          # a dict (200) or Response(status, body)

and is listed in fakegcp/__init__.py. Only methods with a handler are routed; other methods of the
document answer 501.
"""

from __future__ import annotations

import functools

from tests.standins.fakegcp.discovery import Document
from tests.standins.fakegcp.errors import not_found
from tests.standins.fakegcp.operations import render_lro


def handles(method_id, partial=None):
    """Mark a method as the handler of a discovery method id.

    partial=True skips "Required." body fields (default: skipped for PATCH, checked for POST/PUT).
    """
    def mark(func):
        func.handles = (method_id, partial)
        return func
    return mark


@functools.lru_cache(maxsize=None)
def load_document(name):
    return Document(name)


class Response:
    def __init__(self, status, body):
        self.status = status
        self.body = body


class Request:
    """What a handler sees: path + query parameters (checked), the checked body and the raw body."""

    def __init__(self, api, method, http_method, path, params, body, raw_body):
        self.api = api
        self.method = method
        self.http_method = http_method
        self.path = path
        self.params = params
        self.body = body
        self.raw_body = raw_body
        self.token = None      # the bearer token sent, None when anonymous
        self.principal = None  # the member the token maps to in fake.principals (see realism.py)

    def __getitem__(self, name):
        return self.params[name]

    def get(self, name, default=None):
        return self.params.get(name, default)


class Api:
    name = None
    document = None
    host = None  # public host, for selfLinks (defaults to https://<name>.googleapis.com)
    controls = ()  # test controls also served over HTTP: POST /_fake/<name>:<control> with the arguments as JSON

    def __init__(self, fake):
        self.fake = fake
        self.doc = load_document(self.document)
        self.handlers = {}
        for attr in dir(type(self)):
            func = getattr(type(self), attr)
            if callable(func) and hasattr(func, "handles"):
                method_id, partial = func.handles
                self.doc.method(method_id)  # fails loudly on a typo
                self.handlers[method_id] = (getattr(self, attr), partial)
        self.routes = sorted(self.doc.methods.values(), key=lambda m: m.specificity)
        self.public_url = self.host or "https://%s.googleapis.com" % self.name

    @property
    def state(self):
        """This API's stored resources (fake.state[name])."""
        return self.fake.state.setdefault(self.name, {})

    def reset(self):
        """Drop every stored resource (subclasses set up their collections here)."""
        self.fake.state[self.name] = {}

    def clear(self):
        """Forget planned failures (fake.clear(), between tests); stored resources stay."""

    # ---- helpers for handlers -----------------------------------------------------------------------
    @property
    def projects(self):
        return self.fake.projects

    @property
    def operations(self):
        return self.fake.operations

    @property
    def policies(self):
        return self.fake.policies

    # ---- google.longrunning operations (Service Usage, and Cloud Run, Artifact Registry ... next) -----------
    def start_lro(self, name, finish=None, metadata=None, kind=None, target=None):
        """Start a google.longrunning operation named `name` of `kind` (a key of durations.DURATIONS) on
        `target` (a resource name); finish(ok) applies the change and returns the operation's response when
        ok. Returns the operation as the starting call answers it."""
        return render_lro(self.operations.start(name, self.name, finish=finish, metadata=metadata, kind=kind,
                                                target=target))

    def poll_lro(self, name):
        """The operations.get answer for `name` (counts one poll); 404 for an unknown operation."""
        op = self.operations.poll(name)
        if op is None or op.api != self.name:
            raise not_found("Operation %s not found." % name)
        return render_lro(op)
