"""Cloud Resource Manager v3: projects.get and the project IAM policy.

Every syntactically valid project id exists (number derived from the id). A project's policy starts with
one owner binding, so a module must keep the bindings it did not write.
"""

from __future__ import annotations

from tests.standins.fakegcp.api import Api, handles

OWNER = [{"role": "roles/owner", "members": ["user:owner@example.com"]}]


class ResourceManager(Api):
    name = "cloudresourcemanager"
    document = "cloudresourcemanager.v3"

    def project_key(self, ref):
        project_id, _number = self.projects.resolve(ref)
        key = "cloudresourcemanager:projects/%s" % project_id
        self.policies.seed(key, OWNER)
        return key

    @handles("cloudresourcemanager.projects.get")
    def get(self, req):
        project_id, number = self.projects.resolve(req["name"].split("/", 1)[1])
        return {"name": "projects/%s" % number, "parent": "organizations/123456789012", "projectId": project_id,
                "state": "ACTIVE", "displayName": project_id, "createTime": "2024-01-01T00:00:00.000Z",
                "updateTime": "2024-01-01T00:00:00.000Z", "etag": "W/\"%s\"" % number[-8:]}

    @handles("cloudresourcemanager.projects.getIamPolicy")
    def get_iam_policy(self, req):
        key = self.project_key(req["resource"].split("/", 1)[1])
        options = (req.body or {}).get("options") or {}
        return self.policies.get(key, options.get("requestedPolicyVersion"))

    @handles("cloudresourcemanager.projects.setIamPolicy")
    def set_iam_policy(self, req):
        key = self.project_key(req["resource"].split("/", 1)[1])
        return self.policies.set(key, req.body)
