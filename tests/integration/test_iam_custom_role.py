"""iam_custom_role against the fake IAM API (projects.roles), and custom roles in the fake's permission checks."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import PROJECT, with_realism

WRITER = ["bigquery.tables.updateData", "bigquery.tables.get"]
DAY = 86400


@pytest.fixture
def fake(private_fake_gcp):
    """This module's own fake, emptied, with no realism; tests switch on what they test."""
    return with_realism(private_fake_gcp)


class Role:
    def __init__(self, fake, gcp_module, role_id):
        self.fake, self.gcp_module, self.role_id = fake, gcp_module, role_id
        self.name = "projects/%s/roles/%s" % (PROJECT, role_id)
        self.url = "%s/iam/v1/%s" % (fake.url, self.name)

    def run(self, check=False, **options):
        args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=self.fake.endpoints, timeout=20,
                    role_id=self.role_id)
        args.update(options)
        return self.gcp_module("iam_custom_role", args, check=check)

    def read(self):
        response = requests.get(self.url, timeout=10)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def role(fake, gcp_module, unique):
    return Role(fake, gcp_module, "writer_" + unique)


def writes(fake):
    return [(w.method, w.path, w.body) for w in fake.writes()]


def test_lifecycle(role, fake):
    options = dict(title="Prediction writer", description="insertAll only", permissions=WRITER)
    preview = role.run(check=True, **options)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert preview["diff"]["before"] == {} and preview["diff"]["after"]["includedPermissions"] == sorted(WRITER)
    assert fake.writes() == [] and role.read() is None

    created = role.run(**options)
    assert created["rc"] == 0 and created["changed"] is True, created
    assert writes(fake) == [("POST", "/v1/projects/%s/roles" % PROJECT, {
        "roleId": role.role_id, "role": {"title": "Prediction writer", "description": "insertAll only",
                                         "includedPermissions": sorted(WRITER)}})]
    actual = role.read()
    assert actual["includedPermissions"] == sorted(WRITER) and "stage" not in actual  # ALPHA is left out
    assert created["custom_role"]["name"] == role.name

    # The same permissions in another order, and a role at ALPHA asked for ALPHA: no change, no write.
    fake.clear()
    again = role.run(**dict(options, permissions=list(reversed(WRITER)) + WRITER[:1], stage="ALPHA"))
    assert again["rc"] == 0 and again["changed"] is False, again
    assert fake.writes() == []

    fake.clear()
    narrowed = role.run(permissions=["bigquery.tables.updateData"], stage="GA", check=True)
    assert narrowed["changed"] is True and narrowed["changed_fields"] == ["includedPermissions", "stage"]
    assert narrowed["diff"]["before"]["includedPermissions"] == sorted(WRITER)
    assert narrowed["diff"]["after"]["includedPermissions"] == ["bigquery.tables.updateData"]
    assert fake.writes() == []
    narrowed = role.run(permissions=["bigquery.tables.updateData"], stage="GA")
    assert narrowed["rc"] == 0 and narrowed["changed"] is True, narrowed
    [patch] = fake.writes()
    assert patch.method == "PATCH" and patch.query == {"updateMask": "includedPermissions,stage"}, patch
    assert patch.body == {"includedPermissions": ["bigquery.tables.updateData"], "stage": "GA",
                          "etag": actual["etag"]}, "the etag read guards against a concurrent change"
    assert role.read()["includedPermissions"] == ["bigquery.tables.updateData"]

    fake.clear()
    cleared = role.run(description="")
    assert cleared["changed"] is True and "description" not in role.read()

    fake.clear()
    gone = role.run(state="absent")
    assert gone["rc"] == 0 and gone["changed"] is True and gone["custom_role"] == {}, gone
    assert [w.method for w in fake.writes()] == ["DELETE"]
    assert "undeleted for 7 days" in str(gone.get("warnings")), gone
    assert role.read()["deleted"] is True, "kept 7 days, marked deleted"
    fake.clear()
    again = role.run(state="absent")
    assert again["changed"] is False and fake.writes() == [], again


def test_a_role_deleted_less_than_7_days_ago_is_undeleted(role, fake):
    assert role.run(permissions=WRITER, title="Writer")["changed"] is True
    assert role.run(state="absent")["changed"] is True

    fake.clear()
    preview = role.run(permissions=WRITER, title="Writer", check=True)
    assert preview["changed"] is True and preview["changed_fields"] == ["deleted"], preview
    assert preview["diff"] == {"before": {"title": "Writer", "includedPermissions": sorted(WRITER), "deleted": True},
                               "after": {"title": "Writer", "includedPermissions": sorted(WRITER), "deleted": False}}
    assert fake.writes() == []

    back = role.run(permissions=["bigquery.tables.updateData"], title="Writer")
    assert back["rc"] == 0 and back["changed"] is True, back
    assert [(w.method, w.path) for w in fake.writes()] == [
        ("POST", "/v1/%s:undelete" % role.name), ("PATCH", "/v1/%s" % role.name)]
    actual = role.read()
    assert "deleted" not in actual and actual["includedPermissions"] == ["bigquery.tables.updateData"]


def test_an_id_deleted_more_than_7_days_ago_is_refused_with_a_clear_message(role, fake):
    with_realism(fake, time_scale=1e-6)  # 7 days = 0.6 s, 37 days = 3.2 s
    assert role.run(permissions=WRITER)["changed"] is True
    assert role.run(state="absent")["changed"] is True
    time.sleep(8 * DAY * 1e-6)
    assert role.read() is None, "past 7 days the role cannot be read nor undeleted"

    fake.clear()
    refused = role.run(permissions=WRITER)
    assert refused["rc"] == 1, refused
    assert "deleted more than 7 days ago" in refused["msg"] and "reserved" in refused["msg"], refused["msg"]
    assert "You can't create a role_id (%s) which has been marked for deletion." % role.role_id in refused["msg"]
    assert [w.method for w in fake.writes()] == ["POST"]

    time.sleep(30 * DAY * 1e-6)  # 37 days after the delete the ID is free again
    assert role.run(permissions=WRITER)["changed"] is True
    assert "deleted" not in role.read()


@pytest.mark.parametrize("options, message", [
    (dict(role_id="ab"), "role_id 'ab' must be 3 to 64 letters, digits, '_' and '.'"),
    (dict(role_id="my-role"), "role_id 'my-role' must be 3 to 64"),
    (dict(role_id="r" * 65), "must be 3 to 64"),
    (dict(permissions=["bigquery.tables.*"]), "no wildcards): 'bigquery.tables.*'"),
    (dict(permissions=["updateData"]), "'updateData'"),
    (dict(permissions=["resourcemanager.projects.list"]), "apply to organizations and folders only"),
    (dict(title="t" * 101), "title holds at most 100 characters, got 101"),
    (dict(description="é" * 129), "description holds at most 256 bytes (UTF-8), got 258"),
])
def test_bad_input_is_refused_before_any_api_call(role, fake, options, message):
    result = role.run(**dict(dict(permissions=WRITER), **options))
    assert result["rc"] == 1 and message in result["msg"], result
    assert fake.requests == []


def test_a_permission_google_does_not_know_is_refused_by_the_api(role, fake):
    result = role.run(permissions=["bigquery.tables.updateData", "bigquery.frobs.create"])
    assert result["rc"] == 1 and result["status"] == 400, result
    assert "Permission bigquery.frobs.create is not valid." in result["msg"]
    assert role.read() is None


def test_the_deployer_needs_the_role_administrator_role(role, fake):
    fake.realism.permissions = True
    fake.add_principal("sa-admin-token", "user:sa-admin@example.com", roles=["roles/iam.serviceAccountAdmin"])
    fake.add_principal("role-admin-token", "user:role-admin@example.com", roles=["roles/iam.roleAdmin"])
    denied = role.run(permissions=WRITER, auth_kind="accesstoken", access_token="sa-admin-token")
    assert denied["rc"] == 1 and denied["status"] == 403, denied
    assert "lacks the permission iam.roles.get" in denied["msg"] and "--role=roles/iam.roleAdmin" in denied["msg"]
    created = role.run(permissions=WRITER, auth_kind="accesstoken", access_token="role-admin-token")
    assert created["rc"] == 0 and created["changed"] is True, created


# ---- the fake: a custom role grants its includedPermissions ---------------------------------------------------------
def call(fake, method, path, token, body=None):
    return requests.request(method, "%s/%s" % (fake.url, path), json=body, timeout=10,
                            headers={"Authorization": "Bearer %s" % token})


def test_the_fakes_permission_checks_honour_custom_roles(role, fake):
    fake.realism.permissions = True
    fake.add_principal("owner-token", "user:owner@example.com")
    fake.add_principal("lister-token", "user:lister@example.com")
    listing = "iam/v1/projects/%s/serviceAccounts" % PROJECT
    assert call(fake, "GET", listing, "lister-token").status_code == 403
    created = call(fake, "POST", "iam/v1/projects/%s/roles" % PROJECT, "owner-token", {
        "roleId": role.role_id, "role": {"title": "Lister", "includedPermissions": ["iam.serviceAccounts.list"]}})
    assert created.status_code == 200, created.text
    policy_url = "cloudresourcemanager/v3/projects/%s" % PROJECT
    policy = call(fake, "POST", policy_url + ":getIamPolicy", "owner-token", {}).json()
    policy["bindings"].append({"role": role.name, "members": ["user:lister@example.com"]})
    assert call(fake, "POST", policy_url + ":setIamPolicy", "owner-token", {"policy": policy}).status_code == 200

    assert call(fake, "GET", listing, "lister-token").status_code == 200, "the custom role's permission counts"
    assert call(fake, "GET", "iam/v1/projects/%s/roles/%s" % (PROJECT, role.role_id), "lister-token").status_code \
        == 403, "only the permissions it includes"
    tested = call(fake, "POST", policy_url + ":testIamPermissions", "lister-token",
                  {"permissions": ["iam.serviceAccounts.list", "iam.serviceAccounts.create"]}).json()
    assert tested.get("permissions") == ["iam.serviceAccounts.list"], tested

    # A DISABLED role, and a deleted one, grant nothing (their bindings stay but have no effect).
    disabled = call(fake, "PATCH", "iam/v1/%s?updateMask=stage" % role.name, "owner-token", {"stage": "DISABLED"})
    assert disabled.status_code == 200, disabled.text
    assert call(fake, "GET", listing, "lister-token").status_code == 403
    call(fake, "PATCH", "iam/v1/%s?updateMask=stage" % role.name, "owner-token", {"stage": "GA"})
    assert call(fake, "GET", listing, "lister-token").status_code == 200
    assert call(fake, "DELETE", "iam/v1/%s" % role.name, "owner-token").json()["deleted"] is True
    assert call(fake, "GET", listing, "lister-token").status_code == 403
    assert call(fake, "POST", "iam/v1/%s:undelete" % role.name, "owner-token", {}).status_code == 200
    assert call(fake, "GET", listing, "lister-token").status_code == 200


def test_the_fake_refuses_a_stale_etag_and_an_existing_id(role, fake):
    assert role.run(permissions=WRITER)["changed"] is True
    stale = requests.patch("%s?updateMask=title" % role.url, json={"title": "x", "etag": "AAAAAAAAAAA="}, timeout=10)
    assert stale.status_code == 409 and stale.json()["error"]["status"] == "ABORTED", stale.text
    again = requests.post("%s/iam/v1/projects/%s/roles" % (fake.url, PROJECT),
                          json={"roleId": role.role_id, "role": {"includedPermissions": WRITER}}, timeout=10)
    assert again.status_code == 409 and again.json()["error"]["status"] == "ALREADY_EXISTS", again.text
