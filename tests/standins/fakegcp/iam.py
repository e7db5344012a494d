"""IAM v1: service accounts (create, get, list, patch, update, delete, disable, enable) and their IAM policy;
project custom roles (projects.roles: create, get, list, patch, delete, undelete).

A service account is addressed as projects/P/serviceAccounts/{EMAIL or UNIQUE_ID} (P may be "-").
Deleting one turns its bindings everywhere into deleted:serviceAccount:EMAIL?uid=UNIQUE_ID, as IAM does.

Propagation (fake.realism.propagation): IAM is eventually consistent. For durations "iam.serviceaccount.member"
after its creation an account is refused as a policy member everywhere, 400 "Service account EMAIL does not
exist." (iam_policy.py asks known_as_member()), and for the shorter "iam.serviceaccount.get" a GET of it
answers 404 as if it did not exist yet.

Custom roles (https://cloud.google.com/iam/docs/reference/rest/v1/projects.roles and "Create and manage custom
roles"): the role ID holds 3 to 64 letters, digits, "_" and "."; the title at most 100 characters and the
description at most 256 bytes; every permission must exist and be supported in project-level custom roles, else
400 "Permission P is not valid." (terraform-google-iam #158). A new role's stage is ALPHA, and the API leaves
stage out of a role that is at ALPHA. A deleted role is kept, shown with "deleted": true and granting nothing, and
can be undeleted for 7 days (scaled by realism.time_scale); then it is purged for 30 more days, during which get
answers 404 and create 400 FAILED_PRECONDITION "You can't create a role_id (X) which has been marked for
deletion." (GoogleCloudPlatform/gke-autoneg-controller #71); 37 days after the delete the ID is free again. A
patch or delete with a stale etag answers 409 ABORTED. Permission checks count a custom role's
includedPermissions (permissions.py), unless the role is deleted or at stage DISABLED.
"""

from __future__ import annotations

import hashlib
import re

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.durations import duration
from tests.standins.fakegcp.errors import ApiError, aborted, already_exists, failed_precondition, invalid, not_found
from tests.standins.fakegcp.permissions import custom_role_permission_problem
from tests.standins.fakegcp.util import deep, mask_paths, new_etag, paginate

ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
MUTABLE = ("displayName", "description")
ROLE_ID = re.compile(r"^[a-zA-Z0-9_.]{3,64}$")
ROLE_FIELDS = ("title", "description", "includedPermissions", "stage")
UNDELETE_DAYS = 7     # a deleted custom role can be undeleted for 7 days
PURGE_DAYS = 7 + 30   # ... and its ID is reserved until it is permanently deleted 30 days later
DAY = 86400


class Iam(Api):
    name = "iam"
    document = "iam.v1"

    def reset(self):
        super().reset()
        self.state["serviceAccounts"] = {}
        self.state["created_at"] = {}  # email -> realism clock at creation (for propagation)
        self.state["roles"] = {}  # projects/P/roles/X -> custom role (with "deleted")
        self.state["role_deleted_at"] = {}  # projects/P/roles/X -> realism clock at its delete

    @property
    def accounts(self):
        return self.state["serviceAccounts"]

    def find_account(self, ref):
        """The stored account for an email or unique id, or None."""
        if ref in self.accounts:
            return self.accounts[ref]
        return next((a for a in self.accounts.values() if a["uniqueId"] == ref), None)

    def _propagating(self, email, kind):
        """Whether an account created less than the delay `kind` (durations.py) ago is still unseen."""
        realism = self.fake.realism
        created = self.state["created_at"].get(email)
        return bool(realism.propagation and created is not None
                    and realism.now() - created < realism.seconds(duration(kind)))

    def known_as_member(self, email):
        """Whether IAM accepts the account as a member in a policy: it exists and its creation has propagated."""
        account = self.find_account(email)
        return account is not None and not self._propagating(account["email"], "iam.serviceaccount.member")

    def _account(self, name):
        """The account named projects/P/serviceAccounts/REF; 404 as IAM says it."""
        match = re.match(r"^projects/([^/]+)/serviceAccounts/([^/]+)$", name)
        if not match:
            raise invalid("Invalid service account name %s." % name, field="name")
        project, ref = match.groups()
        if project != "-":
            self.projects.resolve(project)
        account = self.find_account(ref)
        if account is None or (project != "-" and account["projectId"] != self.projects.resolve(project)[0]):
            raise not_found("Unknown service account")
        return account

    @staticmethod
    def _view(account):
        body = deep(account)
        if not body.get("disabled"):
            body.pop("disabled", None)
        return body

    @staticmethod
    def _check_text(account):
        if len(account.get("displayName", "").encode()) > 100:
            raise invalid("displayName is longer than 100 bytes.", field="service_account.display_name")
        if len(account.get("description", "").encode()) > 256:
            raise invalid("description is longer than 256 bytes.", field="service_account.description")

    @handles("iam.projects.serviceAccounts.create")
    def create(self, req):
        project_id = self.projects.resolve(req["name"].split("/", 1)[1])[0]
        account_id = req.body["accountId"]
        if not (6 <= len(account_id) <= 30 and ACCOUNT_ID.match(account_id)):
            raise invalid("Invalid account_id %s: it must be 6 to 30 characters and match the regular expression "
                          "[a-z]([-a-z0-9]*[a-z0-9])." % account_id, field="account_id")
        email = "%s@%s.iam.gserviceaccount.com" % (account_id, project_id)
        if email in self.accounts:
            raise already_exists("Service account %s already exists within project projects/%s."
                                 % (account_id, project_id))
        given = req.body.get("serviceAccount") or {}
        self._check_text(given)
        unique_id = str(10 ** 20 + int(hashlib.sha256(email.encode()).hexdigest(), 16) % (9 * 10 ** 20))
        account = {"name": "projects/%s/serviceAccounts/%s" % (project_id, email), "projectId": project_id,
                   "uniqueId": unique_id, "email": email, "etag": new_etag(b"\x00"), "oauth2ClientId": unique_id,
                   "disabled": False}
        for field in MUTABLE:
            if given.get(field):
                account[field] = given[field]
        self.accounts[email] = account
        self.state["created_at"][email] = self.fake.realism.now()
        return self._view(account)

    @handles("iam.projects.serviceAccounts.get")
    def get(self, req):
        account = self._account(req["name"])
        if self._propagating(account["email"], "iam.serviceaccount.get"):
            raise not_found("Unknown service account")  # eventual consistency: not seen by every reader yet
        return self._view(account)

    @handles("iam.projects.serviceAccounts.list")
    def list(self, req):
        project_id = self.projects.resolve(req["name"].split("/", 1)[1])[0]
        accounts = sorted((a for a in self.accounts.values() if a["projectId"] == project_id), key=lambda a: a["email"])
        page, token = paginate(accounts, req.get("pageSize"), req.get("pageToken"), default_size=20, max_size=100)
        body = {"accounts": [self._view(a) for a in page]} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("iam.projects.serviceAccounts.patch")
    def patch(self, req):
        account = self._account(req["name"])
        paths = mask_paths(req.body.get("updateMask"))
        if not paths:
            raise invalid("Invalid request: field update_mask is required.", field="update_mask")
        for path in paths:
            if path not in MUTABLE:
                raise invalid("Invalid update_mask path %s: only display_name and description can be updated." % path,
                              field="update_mask")
        given = req.body.get("serviceAccount") or {}
        self._check_text(given)
        for path in paths:
            if given.get(path):
                account[path] = given[path]
            else:
                account.pop(path, None)
        account["etag"] = new_etag(b"\x00")
        return self._view(account)

    @handles("iam.projects.serviceAccounts.update")
    def update(self, req):
        account = self._account(req["name"])
        self._check_text(req.body)
        for field in MUTABLE:
            if req.body.get(field):
                account[field] = req.body[field]
            else:
                account.pop(field, None)
        account["etag"] = new_etag(b"\x00")
        return self._view(account)

    @handles("iam.projects.serviceAccounts.delete")
    def delete(self, req):
        account = self._account(req["name"])
        del self.accounts[account["email"]]
        self.state["created_at"].pop(account["email"], None)
        self.policies.drop("iam:%s" % account["email"])
        self.policies.replace_member("serviceAccount:%s" % account["email"],
                                     "deleted:serviceAccount:%s?uid=%s" % (account["email"], account["uniqueId"]))
        return {}

    @handles("iam.projects.serviceAccounts.disable")
    def disable(self, req):
        self._account(req["name"])["disabled"] = True
        return {}

    @handles("iam.projects.serviceAccounts.enable")
    def enable(self, req):
        self._account(req["name"])["disabled"] = False
        return {}

    @handles("iam.projects.serviceAccounts.getIamPolicy")
    def get_iam_policy(self, req):
        account = self._account(req["resource"])
        return self.policies.get("iam:%s" % account["email"], req.get("options.requestedPolicyVersion"))

    @handles("iam.projects.serviceAccounts.setIamPolicy")
    def set_iam_policy(self, req):
        account = self._account(req["resource"])
        return self.policies.set("iam:%s" % account["email"], req.body)

    # ---- custom roles -------------------------------------------------------------------------------------------
    def _deleted_for(self, name):
        """Seconds of (unscaled) Google time since the role was deleted, None when it is not deleted."""
        deleted_at = self.state["role_deleted_at"].get(name)
        if deleted_at is None:
            return None
        return (self.fake.realism.now() - deleted_at) / max(self.fake.realism.time_scale, 1e-9)

    def _stored_role(self, name):
        """The stored role, purged first when its 37 days are over; None when there is none."""
        age = self._deleted_for(name)
        if age is not None and age >= PURGE_DAYS * DAY:
            self.state["roles"].pop(name, None)
            self.state["role_deleted_at"].pop(name, None)
        return self.state["roles"].get(name)

    def custom_role(self, name):
        """The custom role a binding names, if it exists and is in force (not deleted, not DISABLED), else None."""
        role = self._stored_role(name)
        if role is None or role.get("deleted") or role.get("stage") == "DISABLED":
            return None
        return role

    def _role(self, name):
        """The role named projects/P/roles/X (deleted ones too within their 7 days); 404 otherwise."""
        match = re.match(r"^projects/([^/]+)/roles/([^/]+)$", name)
        if not match:
            raise invalid("Invalid role name %s." % name, field="name")
        project_id = self.projects.resolve(match.group(1))[0]
        name = "projects/%s/roles/%s" % (project_id, match.group(2))
        role = self._stored_role(name)
        age = self._deleted_for(name)
        if role is None or (age is not None and age >= UNDELETE_DAYS * DAY):
            raise not_found("The role named %s was not found." % name)
        return role

    @staticmethod
    def _role_view(role, view="FULL"):
        body = deep(role)
        if body.get("stage") == "ALPHA":
            body.pop("stage")  # the API leaves out the ALPHA stage
        if not body.get("deleted"):
            body.pop("deleted", None)
        if view != "FULL":
            body.pop("includedPermissions", None)
        return body

    @staticmethod
    def _check_role(role):
        if len(role.get("title") or "") > 100:
            raise invalid("The title is longer than 100 characters.", field="role.title")
        if len((role.get("description") or "").encode()) > 256:
            raise invalid("The description is longer than 256 bytes.", field="role.description")
        permissions = role.get("includedPermissions") or []
        if len(permissions) > 3000:
            raise invalid("A custom role holds at most 3000 permissions.", field="role.included_permissions")
        for permission in permissions:
            problem = custom_role_permission_problem(permission)
            if problem:
                raise invalid(problem, field="role.included_permissions")

    def _check_etag(self, role, etag):
        if etag and etag != role["etag"]:
            raise aborted("There were concurrent policy changes. Please retry the whole read-modify-write with "
                          "exponential backoff.")

    @handles("iam.projects.roles.create")
    def create_role(self, req):
        project_id = self.projects.resolve(req["parent"].split("/", 1)[1])[0]
        role_id = req.body.get("roleId") or ""
        if not ROLE_ID.match(role_id):
            raise invalid("The role_id (%s) is invalid: it must be 3 to 64 characters among letters, digits, "
                          "underscores (_) and periods (.)." % role_id, field="role_id")
        name = "projects/%s/roles/%s" % (project_id, role_id)
        existing = self._stored_role(name)
        if existing is not None and existing.get("deleted"):
            raise failed_precondition("You can't create a role_id (%s) which has been marked for deletion." % role_id)
        if existing is not None:
            raise already_exists("A role named %s in projects/%s already exists." % (role_id, project_id))
        given = req.body.get("role") or {}
        self._check_role(given)
        role = {"name": name, "title": given.get("title") or "", "description": given.get("description") or "",
                "includedPermissions": sorted(set(given.get("includedPermissions") or [])),
                "stage": given.get("stage") or "ALPHA", "etag": new_etag(b"\x01")}
        if not role["description"]:
            role.pop("description")
        self.state["roles"][name] = role
        return self._role_view(role)

    @handles("iam.projects.roles.get")
    def get_role(self, req):
        return self._role_view(self._role(req["name"]))

    @handles("iam.projects.roles.list")
    def list_roles(self, req):
        project_id = self.projects.resolve(req["parent"].split("/", 1)[1])[0]
        prefix = "projects/%s/roles/" % project_id
        roles = []
        for name in sorted(self.state["roles"]):
            try:
                role = self._role(name) if name.startswith(prefix) else None
            except ApiError:
                role = None
            if role is not None and (req.get("showDeleted") or not role.get("deleted")):
                roles.append(self._role_view(role, req.get("view") or "BASIC"))
        page, token = paginate(roles, req.get("pageSize"), req.get("pageToken"), default_size=300, max_size=1000)
        body = {"roles": page} if page else {}
        if token:
            body["nextPageToken"] = token
        return body

    @handles("iam.projects.roles.patch")
    def patch_role(self, req):
        role = self._role(req["name"])
        if role.get("deleted"):
            raise failed_precondition("You can't update a deleted role: undelete it first.")
        self._check_etag(role, req.body.get("etag"))
        paths = mask_paths(req.get("updateMask")) or list(ROLE_FIELDS)
        for path in paths:
            if path not in ROLE_FIELDS:
                raise invalid("Invalid update_mask path %s." % path, field="update_mask")
        changed = dict(role)
        for path in paths:
            value = req.body.get(path)
            changed[path] = sorted(set(value or [])) if path == "includedPermissions" else value
        changed["stage"] = changed.get("stage") or "ALPHA"
        self._check_role(changed)
        changed = {k: v for k, v in changed.items() if v not in (None, "") or k == "title"}
        changed["etag"] = new_etag(b"\x01")
        self.state["roles"][role["name"]] = changed
        return self._role_view(changed)

    @handles("iam.projects.roles.delete")
    def delete_role(self, req):
        role = self._role(req["name"])
        self._check_etag(role, req.get("etag"))
        if not role.get("deleted"):
            role["deleted"] = True
            role["etag"] = new_etag(b"\x01")
            self.state["role_deleted_at"][role["name"]] = self.fake.realism.now()
        return self._role_view(role)

    @handles("iam.projects.roles.undelete")
    def undelete_role(self, req):
        role = self._role(req["name"])
        self._check_etag(role, req.body.get("etag"))
        if role.get("deleted"):
            role.pop("deleted")
            role["etag"] = new_etag(b"\x01")
            self.state["role_deleted_at"].pop(role["name"], None)
        return self._role_view(role)
