"""IAM v1: service accounts (create, get, list, patch, update, delete, disable, enable) and their IAM policy.

A service account is addressed as projects/P/serviceAccounts/{EMAIL or UNIQUE_ID} (P may be "-").
Deleting one turns its bindings everywhere into deleted:serviceAccount:EMAIL?uid=UNIQUE_ID, as IAM does.

Propagation (fake.realism.propagation): IAM is eventually consistent. For durations "iam.serviceaccount.member"
after its creation an account is refused as a policy member everywhere, 400 "Service account EMAIL does not
exist." (iam_policy.py asks known_as_member()), and for the shorter "iam.serviceaccount.get" a GET of it
answers 404 as if it did not exist yet.
"""

from __future__ import annotations

import hashlib
import re

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.durations import duration
from tests.standins.fakegcp.errors import already_exists, invalid, not_found
from tests.standins.fakegcp.util import deep, mask_paths, new_etag, paginate

ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
MUTABLE = ("displayName", "description")


class Iam(Api):
    name = "iam"
    document = "iam.v1"

    def reset(self):
        super().reset()
        self.state["serviceAccounts"] = {}
        self.state["created_at"] = {}  # email -> realism clock at creation (for propagation)

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
