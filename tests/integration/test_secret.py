"""secret against the fake Secret Manager API (tests/standins/fakegcp), run as a real module process.

The value of a secret must never reach the module's output: the tests search the raw stdout and stderr
of the module process for it.
"""

from __future__ import annotations

import base64
import secrets as random_source

import pytest
import requests

from tests.conftest import PROJECT, run_module
from tests.standins.fakegcp.server import masked


def crc32c(data):
    from ansible_collections.deployml.mlops.plugins.module_utils.secrets import crc32c_pure

    return crc32c_pure(data)


@pytest.fixture
def secret(fake_gcp, unique):
    """Run the secret module on a fresh secret id; read it and its versions through the fake's REST API."""

    class Secret:
        name = "db-password-" + unique
        base = "%s/v1/projects/%s/secrets/db-password-%s" % (fake_gcp.endpoints["secretmanager"], PROJECT, unique)

        def run(self, check=False, diff=True, **options):
            args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=fake_gcp.endpoints,
                        name=self.name, timeout=20)
            args.update(options)
            result, output = run_module("secret", args, check=check, diff=diff, raw=True)
            self.output = output
            return result

        def read(self):
            response = requests.get(self.base, timeout=10)
            return response.json() if response.status_code == 200 else None

        def versions(self):
            response = requests.get(self.base + "/versions", timeout=10)
            assert response.status_code == 200, response.text
            return sorted(response.json().get("versions", []), key=lambda v: int(v["name"].rsplit("/", 1)[1]))

        def access(self, version="latest"):
            response = requests.get("%s/versions/%s:access" % (self.base, version), timeout=10)
            assert response.status_code == 200, response.text
            return base64.b64decode(response.json()["payload"]["data"]).decode("utf-8")

        def add_version(self, value):
            response = requests.post(self.base + ":addVersion", timeout=10, json={"payload": {
                "data": base64.b64encode(value.encode()).decode(), "dataCrc32c": str(crc32c(value.encode()))}})
            assert response.status_code == 200, response.text
            return response.json()

    return Secret()


def states(versions):
    return [v["state"] for v in versions]


def test_value_lifecycle_create_unchanged_update_absent(secret, fake_gcp):
    value = "pw-" + random_source.token_hex(12)
    result = secret.run(value=value, labels={"app": "mlflow"}, annotations={"owner": "ml-team"})
    assert result["rc"] == 0 and result["changed"] is True, result
    assert result["version_created"] is True and result["version"].endswith("/versions/1"), result
    assert value not in secret.output
    actual = secret.read()
    assert actual["labels"] == {"app": "mlflow"} and actual["annotations"] == {"owner": "ml-team"}
    assert actual["replication"] == {"automatic": {}}
    assert secret.access() == value
    assert result["secret"]["name"] == actual["name"]

    # The payload went out base64 with its CRC-32C (the fake's request log masks the data itself).
    added = [c for c in fake_gcp.writes() if c.path.endswith(":addVersion")]
    assert len(added) == 1
    assert added[0].body["payload"]["data"] == masked(base64.b64encode(value.encode()).decode())
    assert added[0].body["payload"]["dataCrc32c"] == str(crc32c(value.encode()))

    fake_gcp.clear()
    again = secret.run(value=value, labels={"app": "mlflow"}, annotations={"owner": "ml-team"})
    assert again["rc"] == 0 and again["changed"] is False, again
    assert again["version_created"] is False and again["version"] == result["version"]
    assert fake_gcp.writes() == []
    assert value not in secret.output

    # A new value adds a version; labels left out of the options stay; a removed annotation goes.
    new_value = "pw-" + random_source.token_hex(12)
    fake_gcp.clear()
    updated = secret.run(value=new_value, annotations={})
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert updated["changed_fields"] == ["annotations"]
    assert updated["version"].endswith("/versions/2") and updated["version_created"] is True
    assert [c.method for c in fake_gcp.writes()] == ["PATCH", "POST"]
    assert fake_gcp.writes()[0].query.get("updateMask") == "annotations"
    assert secret.access() == new_value
    assert secret.read().get("annotations", {}) == {} and secret.read()["labels"] == {"app": "mlflow"}
    assert states(secret.versions()) == ["ENABLED", "ENABLED"], "without disable_previous nothing is disabled"
    assert value not in secret.output and new_value not in secret.output

    # Going back to the first value adds a version (it is compared with the latest enabled one only).
    back = secret.run(value=value)
    assert back["version_created"] is True and back["version"].endswith("/versions/3")

    fake_gcp.clear()
    deleted = secret.run(state="absent")
    assert deleted["rc"] == 0 and deleted["changed"] is True and deleted["secret"] == {}, deleted
    assert [c.method for c in fake_gcp.writes()] == ["DELETE"]
    assert secret.read() is None

    fake_gcp.clear()
    gone = secret.run(state="absent")
    assert gone["changed"] is False and fake_gcp.writes() == [] and len(fake_gcp.requests) == 1


def test_check_mode_writes_nothing(secret, fake_gcp):
    value = "pw-" + random_source.token_hex(12)
    preview = secret.run(check=True, value=value, labels={"app": "mlflow"})
    assert preview["rc"] == 0 and preview["changed"] is True and preview["version_created"] is True, preview
    assert preview["version"] is None
    assert preview["diff"] == {"before": {}, "after": {"labels": {"app": "mlflow"}, "version": "(new version)"}}
    assert fake_gcp.writes() == [] and secret.read() is None
    assert value not in secret.output

    secret.run(value=value)
    fake_gcp.clear()
    new_value = "pw-" + random_source.token_hex(12)
    preview = secret.run(check=True, value=new_value, labels={"app": "other"})
    assert preview["changed"] is True and preview["version_created"] is True
    assert preview["diff"]["before"] == {"labels": {}, "version": secret.versions()[0]["name"]}
    assert preview["diff"]["after"] == {"labels": {"app": "other"}, "version": "(new version)"}
    assert fake_gcp.writes() == []
    assert len(secret.versions()) == 1 and secret.access() == value
    assert value not in secret.output and new_value not in secret.output

    # The same value in check mode: nothing to do.
    fake_gcp.clear()
    same = secret.run(check=True, value=value)
    assert same["changed"] is False and same["version_created"] is False and fake_gcp.writes() == []


def test_value_given_with_no_log_never_appears_in_the_output(secret):
    value = "no-log-" + random_source.token_hex(16)
    result = secret.run(value=value)
    assert result["rc"] == 0, result
    assert value not in secret.output
    assert result["invocation"]["module_args"]["value"] != value
    assert secret.access() == value


def test_generated_value_is_kept_on_reruns_and_rotated_only_when_asked(secret, fake_gcp):
    created = secret.run(generate={"length": 40})
    assert created["rc"] == 0 and created["changed"] is True and created["version_created"] is True, created
    value = secret.access()
    assert len(value) == 40 and value.isalnum()
    assert value not in secret.output, "a generated value must not appear in the output"
    assert "value" not in created

    fake_gcp.clear()
    again = secret.run(generate={"length": 40})
    assert again["changed"] is False and again["version_created"] is False, again
    assert not [c for c in fake_gcp.requests if c.path.endswith(":access")], "generate has no reason to read the value"
    assert fake_gcp.writes() == [] and secret.access() == value and len(secret.versions()) == 1

    fake_gcp.clear()
    preview = secret.run(check=True, generate={"length": 40}, rotate=True, disable_previous=True)
    assert preview["changed"] is True and preview["version_created"] is True
    assert preview["disabled_versions"] == [created["version"]]
    assert fake_gcp.writes() == [] and secret.access() == value

    rotated = secret.run(generate={"length": 40}, rotate=True, disable_previous=True)
    assert rotated["changed"] is True and rotated["version_created"] is True, rotated
    assert rotated["version"].endswith("/versions/2") and rotated["disabled_versions"] == [created["version"]]
    new_value = secret.access()
    assert new_value != value and len(new_value) == 40
    assert states(secret.versions()) == ["DISABLED", "ENABLED"]
    assert value not in secret.output and new_value not in secret.output

    fake_gcp.clear()
    settled = secret.run(generate={"length": 40}, disable_previous=True)
    assert settled["changed"] is False and fake_gcp.writes() == []


def test_rotate_without_disable_previous_keeps_old_versions_enabled(secret):
    secret.run(generate={})
    rotated = secret.run(generate={}, rotate=True)
    assert rotated["version_created"] is True and rotated["disabled_versions"] == []
    assert states(secret.versions()) == ["ENABLED", "ENABLED"]


@pytest.mark.parametrize("generate, check", [
    ({"alphabet": "hex", "length": 64}, lambda v: len(v) == 64 and set(v) <= set("0123456789abcdef")),
    ({"alphabet": "ascii_printable"}, lambda v: len(v) == 32 and " " not in v and v.isprintable()),
    ({"alphabet": "custom", "characters": "ab", "length": 200}, lambda v: set(v) == {"a", "b"}),
])
def test_generate_alphabets(secret, generate, check):
    result = secret.run(generate=generate)
    assert result["rc"] == 0, result
    assert check(secret.access())


def test_return_value_gives_the_value_back_only_when_asked(secret, fake_gcp):
    created = secret.run(generate={}, return_value=True)
    assert created["rc"] == 0 and created["value"] == secret.access(), created

    fake_gcp.clear()
    again = secret.run(generate={}, return_value=True)
    assert again["changed"] is False and again["value"] == created["value"] and fake_gcp.writes() == []

    without = secret.run(generate={})
    assert "value" not in without and created["value"] not in secret.output

    preview = secret.run(check=True, generate={}, rotate=True, return_value=True)
    assert preview["value"] is None, "no value exists yet for a version that would be added"


def test_disable_previous_converges_an_existing_secret(secret, fake_gcp):
    secret.run(value="first-value")
    secret.add_version("second-value")
    secret.add_version("third-value")
    fake_gcp.clear()
    result = secret.run(value="third-value", disable_previous=True)
    assert result["changed"] is True and result["version_created"] is False, result
    assert result["disabled_versions"] == [v["name"] for v in secret.versions()[1::-1]]
    assert result["diff"]["after"]["enabled_versions"] == [secret.versions()[2]["name"]]
    assert states(secret.versions()) == ["DISABLED", "DISABLED", "ENABLED"]
    assert [c.path.rsplit(":", 1)[1] for c in fake_gcp.writes()] == ["disable", "disable"]
    assert "third-value" not in secret.output

    fake_gcp.clear()
    again = secret.run(value="third-value", disable_previous=True)
    assert again["changed"] is False and fake_gcp.writes() == []


def test_value_compared_with_the_latest_enabled_version(secret):
    secret.run(value="first-value")
    secret.add_version("second-value")
    newest = secret.versions()[-1]["name"]
    assert requests.post("%s/v1/%s:disable" % (secret.base.split("/v1/")[0], newest), json={}, timeout=10).ok
    result = secret.run(value="first-value")
    assert result["changed"] is False and result["version"].endswith("/versions/1"), result


def test_user_managed_replication_is_immutable(secret, fake_gcp):
    created = secret.run(replication="user_managed", locations=["us-east1", "europe-west1"])
    assert created["rc"] == 0, created
    replicas = secret.read()["replication"]["userManaged"]["replicas"]
    assert sorted(r["location"] for r in replicas) == ["europe-west1", "us-east1"]

    fake_gcp.clear()
    same = secret.run(replication="user_managed", locations=["europe-west1", "us-east1", "us-east1"])
    assert same["changed"] is False and fake_gcp.writes() == [], same

    for options in ({"replication": "automatic"},
                    {"replication": "user_managed", "locations": ["us-east1"]}):
        fake_gcp.clear()
        refused = secret.run(**options)
        assert refused["rc"] == 1 and "replication cannot be changed in place" in refused["msg"], refused
        assert secret.name in refused["msg"]
        assert fake_gcp.writes() == []

    unset = secret.run(labels={"a": "b"})
    assert unset["rc"] == 0 and unset["changed_fields"] == ["labels"], "replication left out is not compared"


def test_diff_of_a_label_change_and_no_diff_without_diff_mode(secret):
    secret.run(labels={"app": "mlflow", "team": "ml"})
    result = secret.run(labels={"app": "mlflow"})
    assert result["diff"]["before"] == {"labels": {"app": "mlflow", "team": "ml"}, "version": None}
    assert result["diff"]["after"] == {"labels": {"app": "mlflow"}, "version": None}
    assert secret.read()["labels"] == {"app": "mlflow"}
    quiet = secret.run(diff=False, labels={"app": "x"})
    assert quiet["changed"] is True and "diff" not in quiet


@pytest.mark.parametrize("options, expected", [
    ({"name": "bad name"}, "secret name 'bad name' is invalid"),
    ({"name": "x" * 256}, "use 1 to 255 letters"),
    ({"labels": {"App": "x"}}, "label key 'App'"),
    ({"annotations": {"-bad": "x"}}, "annotation key '-bad'"),
    ({"annotations": {"n": 1}}, "annotation 'n' must have a string value"),
    ({"replication": "user_managed"}, "replication user_managed needs at least one location"),
    ({"locations": ["us-east1"]}, "locations go with replication: user_managed only"),
    ({"value": ""}, "value must not be empty"),
    ({"value": "x" * 65537}, "value holds 65537 bytes"),
    ({"generate": {"length": 4}}, "generate.length must be from 8 to 4096, got 4"),
    ({"generate": {"alphabet": "custom"}}, "generate.alphabet custom needs generate.characters"),
    ({"generate": {"alphabet": "custom", "characters": "aaaa"}}, "at least 2 different characters"),
    ({"generate": {"characters": "abc"}}, "generate.characters goes with generate.alphabet: custom only"),
    ({"rotate": True}, "rotate needs generate"),
    ({"value": "some-value", "generate": {}}, "mutually exclusive"),
])
def test_bad_input_fails_before_any_call(secret, fake_gcp, options, expected):
    result = secret.run(**options)
    assert result["rc"] == 1 and expected in result["msg"], result["msg"]
    assert fake_gcp.requests == []


def test_transient_errors_are_retried(secret, fake_gcp):
    fake_gcp.inject(503, count=2)
    fake_gcp.inject(429, count=1, method="POST", path=r"secretmanager/.*:addVersion")
    result = secret.run(value="retried-value", labels={"try": "again"})
    assert result["rc"] == 0 and result["changed"] is True, result
    assert secret.access() == "retried-value" and secret.read()["labels"] == {"try": "again"}
    assert len([c for c in fake_gcp.requests if c.path.endswith(":addVersion")]) == 2
    assert len(secret.versions()) == 1


def test_lost_create_answer_is_recovered(secret, fake_gcp):
    fake_gcp.inject(503, count=1, method="POST", path=r"secretmanager/v1/projects/[^/]+/secrets$", forward=True)
    result = secret.run(labels={"a": "b"})
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len([c for c in fake_gcp.writes() if c.path.endswith("/secrets")]) == 2, "the create was sent again"
    assert secret.read()["labels"] == {"a": "b"} and result["secret"]["labels"] == {"a": "b"}


def test_api_error_is_reported_clearly(secret, fake_gcp):
    fake_gcp.inject(403, count=1)
    result = secret.run(value="some-value")
    assert result["rc"] == 1 and result["status"] == 403, result
    assert result["msg"].startswith("projects/%s/secrets/%s: HTTP 403" % (PROJECT, secret.name)), result["msg"]
    assert "some-value" not in secret.output
