"""resource.converge driven through a real GcpModule, with a small in-memory Resource.

The module reads its arguments with ansible-core's patch_module_args and exits the way a module does
(SystemExit after printing its JSON result), so these tests see exactly what Ansible would receive.
"""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule
from ansible_collections.deployml.mlops.plugins.module_utils.resource import Exact, Resource, ResourceError, converge

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    location=dict(type="str"),
    description=dict(type="str"),
    labels=dict(type="dict"),
    size=dict(type="int"),
)


class Store:
    """The 'server': resources by name, and every call the resource made."""

    def __init__(self, **resources):
        self.resources = resources
        self.calls = []
        self.fail = {}  # method name -> GcpApiError to raise

    def record(self, method, *args):
        self.calls.append((method,) + args)
        if method in self.fail:
            raise self.fail[method]

    def writes(self):
        return [c for c in self.calls if c[0] not in ("read",)]


class Thing(Resource):
    kind = "test thing"
    result_key = "thing"
    immutable = ("location",)
    store = None  # set per test

    @property
    def name(self):
        return "projects/%s/things/%s" % (self.params["project"], self.params["name"])

    def validate(self):
        if self.params["size"] is not None and self.params["size"] < 0:
            raise ResourceError("size must not be negative")

    def desired(self):
        p = self.params
        return dict(
            name=p["name"],
            location=p["location"],
            description=p["description"],
            labels=Exact(p["labels"]) if p["labels"] is not None else None,
            sizeBytes=None if p["size"] is None else str(p["size"]),  # int64 as a JSON string
        )

    def read(self):
        self.store.record("read")
        found = self.store.resources.get(self.params["name"])
        return None if found is None else dict(found)

    def normalize(self, actual):
        actual = dict(actual)
        if "location" in actual:
            actual["location"] = actual["location"].upper()
        return actual

    def create(self, desired):
        self.store.record("create", desired)
        created = dict(desired, etag="e1", selfLink="https://example/" + desired["name"])
        self.store.resources[desired["name"]] = created
        return created

    def update(self, actual, desired, changed_fields):
        self.store.record("update", changed_fields)
        updated = dict(actual, **{f: desired[f] for f in changed_fields}, etag="e2")
        self.store.resources[self.params["name"]] = updated
        return updated

    def check_delete(self, actual):
        if actual.get("protected"):
            raise ResourceError("%s %s is protected" % (self.kind, self.name))

    def delete(self, actual):
        self.store.record("delete", actual["name"])
        del self.store.resources[self.params["name"]]


class DescriptionBlindThing(Thing):
    """A resource with its own comparison: the description is never compared."""

    def changes(self, actual, desired):
        return [f for f in super().changes(actual, desired) if f != "description"]


class RecreatedThing(Thing):
    def plan_update(self, actual, desired, changed_fields):
        return "recreate" if "location" in changed_fields else "update"


def run(capsys, store, check=False, diff=True, resource_class=Thing, **args):
    """Run converge like a module run; return (exit code, JSON result)."""
    args.setdefault("project", "p")
    args.setdefault("auth_kind", "anonymous")
    resource_class.store = store
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)):
        module = GcpModule(argument_spec=ARGUMENT_SPEC)
        with pytest.raises(SystemExit) as exited:
            converge(resource_class(module))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return exited.value.code or 0, json.loads(lines[-1])


EXISTING = dict(name="t1", location="eu", description="old", labels={"app": "mlops", "team": "ml"},
                sizeBytes="10", etag="e0", selfLink="https://example/t1")


@pytest.fixture
def existing():
    return Store(t1=dict(EXISTING))


# --- create -----------------------------------------------------------------------------------------

def test_create_when_missing(capsys):
    store = Store()
    rc, result = run(capsys, store, name="t1", description="d", labels={"app": "mlops"}, size=5)
    assert rc == 0 and result["changed"] is True
    desired = {"name": "t1", "description": "d", "labels": {"app": "mlops"}, "sizeBytes": "5"}
    assert store.calls == [("read",), ("create", desired)]
    assert result["diff"] == {"before": {}, "after": desired}
    assert result["thing"]["etag"] == "e1", "the created resource as the API returned it"


def test_check_mode_create_makes_no_write_call(capsys):
    store = Store()
    rc, result = run(capsys, store, check=True, name="t1", description="d")
    assert rc == 0 and result["changed"] is True
    assert store.calls == [("read",)]
    assert store.resources == {}
    assert result["thing"] == {"name": "t1", "description": "d"}
    assert result["diff"] == {"before": {}, "after": {"name": "t1", "description": "d"}}


# --- no change --------------------------------------------------------------------------------------

def test_unchanged_makes_no_write_call(capsys, existing):
    rc, result = run(capsys, existing, name="t1", location="EU", description="old",
                     labels={"app": "mlops", "team": "ml"}, size=10)
    assert rc == 0 and result["changed"] is False
    assert existing.writes() == []
    assert "diff" not in result and "changed_fields" not in result
    assert result["thing"] == EXISTING, "the raw resource is returned, not the normalized one"


def test_options_not_set_are_left_alone(capsys, existing):
    rc, result = run(capsys, existing, name="t1")
    assert rc == 0 and result["changed"] is False and existing.writes() == []


# --- update -----------------------------------------------------------------------------------------

def test_update_changed_fields_with_diff(capsys, existing):
    rc, result = run(capsys, existing, name="t1", description="new", labels={"app": "mlops"}, size=10)
    assert rc == 0 and result["changed"] is True
    assert result["changed_fields"] == ["description", "labels"]
    assert existing.writes() == [("update", ["description", "labels"])]
    assert result["diff"] == {
        "before": {"name": "t1", "description": "old", "labels": {"app": "mlops", "team": "ml"}, "sizeBytes": "10"},
        "after": {"name": "t1", "description": "new", "labels": {"app": "mlops"}, "sizeBytes": "10"},
    }
    assert result["thing"]["etag"] == "e2" and result["thing"]["description"] == "new"


def test_check_mode_update_makes_no_write_call(capsys, existing):
    rc, result = run(capsys, existing, check=True, name="t1", description="new")
    assert rc == 0 and result["changed"] is True and result["changed_fields"] == ["description"]
    assert existing.writes() == []
    assert existing.resources["t1"] == EXISTING
    assert result["diff"] == {"before": {"name": "t1", "description": "old"},
                              "after": {"name": "t1", "description": "new"}}


def test_no_diff_when_diff_mode_is_off(capsys, existing):
    rc, result = run(capsys, existing, diff=False, name="t1", description="new")
    assert rc == 0 and result["changed"] is True
    assert "diff" not in result


def test_immutable_field_is_refused_without_writing(capsys, existing):
    rc, result = run(capsys, existing, name="t1", location="us", description="new")
    assert rc == 1 and result["failed"] is True
    assert existing.writes() == []
    msg = result["msg"]
    assert "test thing projects/p/things/t1" in msg
    assert "location cannot be changed in place" in msg
    assert "location is 'EU', asked for 'us'" in msg
    assert existing.resources["t1"] == EXISTING


def test_immutable_field_is_refused_in_check_mode_too(capsys, existing):
    rc, result = run(capsys, existing, check=True, name="t1", location="us")
    assert rc == 1 and "cannot be changed in place" in result["msg"]


def test_recreate_plan_deletes_then_creates(capsys, existing):
    rc, result = run(capsys, existing, resource_class=RecreatedThing, name="t1", location="US")
    assert rc == 0 and result["changed"] is True and result["recreated"] is True
    assert result["changed_fields"] == ["location"]
    assert existing.writes() == [("delete", "t1"), ("create", {"name": "t1", "location": "US"})]
    assert result["diff"] == {"before": {"name": "t1", "location": "EU"}, "after": {"name": "t1", "location": "US"}}
    assert result["thing"]["etag"] == "e1"


def test_recreate_plan_in_check_mode_makes_no_call(capsys, existing):
    rc, result = run(capsys, existing, check=True, resource_class=RecreatedThing, name="t1", location="US")
    assert rc == 0 and result["changed"] is True and result["recreated"] is True
    assert existing.writes() == []


def test_resource_changes_override_decides_what_changed(capsys, existing):
    rc, result = run(capsys, existing, resource_class=DescriptionBlindThing, name="t1", description="new")
    assert rc == 0 and result["changed"] is False and existing.writes() == []
    rc, result = run(capsys, existing, resource_class=DescriptionBlindThing, name="t1", description="new", size=11)
    assert result["changed_fields"] == ["sizeBytes"]
    assert existing.writes() == [("update", ["sizeBytes"])]


def test_validate_failure_comes_before_any_api_call(capsys):
    store = Store()
    rc, result = run(capsys, store, name="t1", size=-1)
    assert rc == 1 and result["msg"] == "size must not be negative"
    assert store.calls == []


# --- absent -----------------------------------------------------------------------------------------

def test_absent_deletes(capsys, existing):
    rc, result = run(capsys, existing, name="t1", state="absent")
    assert rc == 0 and result["changed"] is True
    assert existing.writes() == [("delete", "t1")]
    assert existing.resources == {}
    assert result["thing"] == {}
    assert result["diff"]["after"] == {}
    assert result["diff"]["before"]["location"] == "EU", "the before half is the normalized resource"


def test_absent_in_check_mode_makes_no_call(capsys, existing):
    rc, result = run(capsys, existing, check=True, name="t1", state="absent")
    assert rc == 0 and result["changed"] is True
    assert existing.writes() == [] and "t1" in existing.resources


def test_absent_when_missing_is_unchanged(capsys):
    store = Store()
    rc, result = run(capsys, store, name="t1", state="absent")
    assert rc == 0 and result["changed"] is False
    assert store.calls == [("read",)]
    assert result["thing"] == {} and "diff" not in result


def test_absent_refused_by_check_delete(capsys, existing):
    existing.resources["t1"]["protected"] = True
    rc, result = run(capsys, existing, name="t1", state="absent")
    assert rc == 1 and result["msg"] == "test thing projects/p/things/t1 is protected"
    assert existing.writes() == []


# --- API errors -------------------------------------------------------------------------------------

def test_api_error_on_read_fails_with_status(capsys, existing):
    existing.fail["read"] = GcpApiError(403, "PERMISSION_DENIED", "caller lacks bigquery.datasets.get",
                                        resource="projects/p/things/t1", method="GET")
    rc, result = run(capsys, existing, name="t1", description="new")
    assert rc == 1 and result["failed"] is True
    assert result["status"] == 403 and result["reason"] == "PERMISSION_DENIED"
    assert result["msg"] == "projects/p/things/t1: HTTP 403 PERMISSION_DENIED: caller lacks bigquery.datasets.get"
    assert existing.writes() == []


def test_api_error_on_update_keeps_what_was_attempted(capsys, existing):
    existing.fail["update"] = GcpApiError(412, "FAILED_PRECONDITION", "etag mismatch", resource="projects/p/things/t1")
    rc, result = run(capsys, existing, name="t1", description="new")
    assert rc == 1 and result["status"] == 412
    assert "etag mismatch" in result["msg"]
    assert result["changed_fields"] == ["description"]


def test_api_error_without_status(capsys):
    store = Store()
    store.fail["read"] = GcpApiError(None, "ConnectionError", "connection refused", resource="projects/p/things/t1")
    rc, result = run(capsys, store, name="t1")
    assert rc == 1 and result["status"] is None
    assert result["msg"] == "projects/p/things/t1: no HTTP response ConnectionError: connection refused"


# --- GcpModule --------------------------------------------------------------------------------------

def test_module_without_project_fails_clearly(capsys, monkeypatch):
    for name in ("GCP_PROJECT", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    with patch_module_args(dict(name="t1")):
        with pytest.raises(SystemExit) as exited:
            GcpModule(argument_spec=ARGUMENT_SPEC)
    assert exited.value.code == 1
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "project is required" in result["msg"]


def test_module_project_from_environment(monkeypatch):
    monkeypatch.delenv("GCP_PROJECT", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    with patch_module_args(dict(name="t1")):
        module = GcpModule(argument_spec=ARGUMENT_SPEC)
    assert module.params["project"] == "from-env"
    assert module.check_mode is False
