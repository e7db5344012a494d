"""Cloud Resource Manager v3: projects.get, the project IAM policy and projects.testIamPermissions.

Every syntactically valid project id exists (number derived from the id) and is ACTIVE, unless a test says
otherwise (set_project_state: DELETE_REQUESTED, or NOT_FOUND for a project that does not exist or that the
caller may not see: Google answers both with the same 403). A project's policy starts with one owner binding,
so a module must keep the bindings it did not write.
"""

from __future__ import annotations

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.errors import invalid
from tests.standins.fakegcp.permissions import OWNER_BINDINGS, denied

OWNER = OWNER_BINDINGS
STATES = ("ACTIVE", "DELETE_REQUESTED", "NOT_FOUND")
# A missing project is indistinguishable from a forbidden one (Resource Manager v3 projects.get reference:
# "If the project does not exist or the caller lacks resourcemanager.projects.get, PERMISSION_DENIED").
RESOURCE = "//cloudresourcemanager.googleapis.com/projects/%s"


class ResourceManager(Api):
    name = "cloudresourcemanager"
    document = "cloudresourcemanager.v3"
    controls = ("set_project_state",)

    def reset(self):
        super().reset()
        self.state["project_states"] = {}

    # ---- test controls -------------------------------------------------------------------------------------------
    def set_project_state(self, project, state="ACTIVE"):
        """Mark a project ACTIVE, DELETE_REQUESTED (shut down, in its 30-day grace period) or NOT_FOUND."""
        if state not in STATES:
            raise ValueError("state must be one of %s, got %r" % (", ".join(STATES), state))
        project_id, _number = self.projects.resolve(project)
        self.state["project_states"][project_id] = state

    def project_state(self, project_id):
        return self.state.setdefault("project_states", {}).get(project_id, "ACTIVE")

    def _existing(self, ref, permission):
        """(project_id, number); 403 as Google answers for a project that does not exist."""
        project_id, number = self.projects.resolve(ref)
        if self.project_state(project_id) == "NOT_FOUND":
            raise denied(self.name, permission, RESOURCE % project_id)
        return project_id, number

    def project_key(self, ref):
        project_id, _number = self.projects.resolve(ref)
        key = "cloudresourcemanager:projects/%s" % project_id
        self.fake.permissions.seed_project(key)  # the owner, and the roles of fake.add_principal
        return key

    # ---- handlers ------------------------------------------------------------------------------------------------
    @handles("cloudresourcemanager.projects.get")
    def get(self, req):
        project_id, number = self._existing(req["name"].split("/", 1)[1], "resourcemanager.projects.get")
        body = {"name": "projects/%s" % number, "parent": "organizations/123456789012", "projectId": project_id,
                "state": self.project_state(project_id), "displayName": project_id,
                "createTime": "2024-01-01T00:00:00.000Z", "updateTime": "2024-01-01T00:00:00.000Z",
                "etag": "W/\"%s\"" % number[-8:]}
        if body["state"] == "DELETE_REQUESTED":
            body["deleteTime"] = "2024-06-01T00:00:00.000Z"
        return body

    @handles("cloudresourcemanager.projects.getIamPolicy")
    def get_iam_policy(self, req):
        self._existing(req["resource"].split("/", 1)[1], "resourcemanager.projects.getIamPolicy")
        key = self.project_key(req["resource"].split("/", 1)[1])
        options = (req.body or {}).get("options") or {}
        return self.policies.get(key, options.get("requestedPolicyVersion"))

    @handles("cloudresourcemanager.projects.setIamPolicy")
    def set_iam_policy(self, req):
        self._existing(req["resource"].split("/", 1)[1], "resourcemanager.projects.setIamPolicy")
        key = self.project_key(req["resource"].split("/", 1)[1])
        return self.policies.set(key, req.body)

    @handles("cloudresourcemanager.projects.testIamPermissions")
    def test_iam_permissions(self, req):
        """The permissions asked about that the caller holds on the project (no permission needed to ask).

        Anonymous callers (and tokens no principal is registered for, while permissions are not enforced) hold
        everything, as the fake has always allowed them everything.
        """
        project_id, _number = self._existing(req["resource"].split("/", 1)[1], "resourcemanager.projects.get")
        asked = req.body.get("permissions") or []
        for permission in asked:
            if "*" in permission:
                raise invalid("Permissions with wildcards (such as '*' or 'storage.*') are not allowed: %s."
                              % permission, field="permissions")
        self.project_key(project_id)
        held = self.fake.permissions.test(req.principal, project_id, asked)
        return {"permissions": held} if held else {}
