"""Cloud Billing v1: projects.getBillingInfo.

Every project is linked to an open billing account (billingEnabled true) unless a test disables billing for it
(set_billing). A project without billing answers with only name and projectId: proto3 JSON omits false and
empty fields, as Google's answer for an unlinked project does.
"""

from __future__ import annotations

from tests.standins.fakegcp.api import Api, handles

ACCOUNT = "billingAccounts/012345-567890-ABCDEF"


class CloudBilling(Api):
    name = "cloudbilling"
    document = "cloudbilling.v1"
    controls = ("set_billing",)

    def reset(self):
        super().reset()
        self.state["disabled"] = []

    def set_billing(self, project, enabled=True):
        """Enable (link to the open account) or disable (unlink) billing for a project."""
        project_id, _number = self.projects.resolve(project)
        disabled = set(self.state.setdefault("disabled", []))
        disabled.discard(project_id) if enabled else disabled.add(project_id)
        self.state["disabled"] = sorted(disabled)

    @handles("cloudbilling.projects.getBillingInfo")
    def get_billing_info(self, req):
        project_id, _number = self.projects.resolve(req["name"].split("/", 1)[1])
        body = {"name": "projects/%s/billingInfo" % project_id, "projectId": project_id}
        if project_id not in self.state.setdefault("disabled", []):
            body.update(billingAccountName=ACCOUNT, billingEnabled=True)
        return body
