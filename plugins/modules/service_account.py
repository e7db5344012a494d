#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: service_account
short_description: Manage an IAM service account
version_added: 0.1.0
description:
  - Create, update, disable, enable or delete a service account through the IAM API v1.
  - Only the options you set are compared with the account; display name and description are changed with
    a PATCH that names them in its update mask, and O(disabled) with the C(:disable) and C(:enable) methods.
  - A new account is not seen at once by every part of IAM (reads are eventually consistent), so the module
    returns from a create only once three reads in a row have found the account (polling with backoff within
    O(timeout)), and a next task can use it. Granting a role to a new account may still be refused for a
    while; M(deployml.mlops.iam_member) retries that.
  - The account is deleted only with O(state=absent). A deleted account can be undeleted for 30 days (not by
    this module); a new account with the same ID is a different principal, and grants to the old one do not
    apply to it.
options:
  account_id:
    description:
      - The account ID, the part of the email before V(@). The email is
        V(ACCOUNT_ID@PROJECT.iam.gserviceaccount.com).
      - 6 to 30 lowercase letters, digits and V(-), starting with a letter and not ending with V(-).
    type: str
    required: true
    aliases: [name]
  display_name:
    description: A human readable name, at most 100 bytes (UTF-8). V("") clears it.
    type: str
  description:
    description: What the account is for, at most 256 bytes (UTF-8). V("") clears it.
    type: str
  disabled:
    description:
      - V(true) disables the account (it can no longer authenticate), V(false) enables it.
      - When not set, an existing account stays as it is and a new one is enabled.
    type: bool
  state:
    description:
      - V(present) creates or updates the account, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: The identity of the MLflow server
  deployml.mlops.service_account:
    project: my-project
    account_id: mlflow
    display_name: MLflow tracking server
    description: Runs the MLflow server on Cloud Run

- name: Stop an account from authenticating, without deleting it
  deployml.mlops.service_account:
    project: my-project
    account_id: legacy-batch
    disabled: true

- name: Delete an account
  deployml.mlops.service_account:
    project: my-project
    account_id: scratch-runner
    state: absent
"""

RETURN = r"""
service_account:
  description: The account as the API returns it after the change (the desired fields in check mode), empty when absent.
  returned: always
  type: dict
  sample:
    name: projects/my-project/serviceAccounts/mlflow@my-project.iam.gserviceaccount.com
    email: mlflow@my-project.iam.gserviceaccount.com
    uniqueId: "109876543210987654321"
    projectId: my-project
    displayName: MLflow tracking server
    description: Runs the MLflow server on Cloud Run
    disabled: false
changed_fields:
  description: Fields of the account that differed and were updated.
  returned: when an existing account changed
  type: list
  elements: str
  sample: [displayName]
"""

import re

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule
from ansible_collections.deployml.mlops.plugins.module_utils.iam import service_account_email
from ansible_collections.deployml.mlops.plugins.module_utils.resource import Resource, ResourceError, converge

API = "iam"
ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
EDITABLE = ("displayName", "description")  # the fields a PATCH may change
# Consecutive successful reads after which a new account counts as visible: IAM reads are eventually
# consistent, and one successful read right after create can be followed by a 404 (magic-modules PR #14447).
VISIBLE_READS = 3


class ServiceAccount(Resource):
    kind = "service account"
    result_key = "service_account"

    @property
    def email(self):
        return service_account_email(self.params["account_id"], self.params["project"])

    @property
    def name(self):
        return "projects/%s/serviceAccounts/%s" % (self.params["project"], self.email)

    @property
    def path(self):
        return "/v1/" + self.name

    def validate(self):
        p = self.params
        errors = []
        account = p["account_id"]
        if not ACCOUNT_ID.match(account) or not 6 <= len(account) <= 30:
            errors.append("account_id %r must be 6 to 30 lowercase letters, digits and '-', start with a letter "
                          "and not end with '-'" % account)
        for option, limit in (("display_name", 100), ("description", 256)):
            if p[option] is not None and len(p[option].encode("utf-8")) > limit:
                errors.append("%s holds at most %d bytes (UTF-8), got %d" % (option, limit, len(p[option].encode("utf-8"))))
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, account, "; ".join(errors)))

    def desired(self):
        p = self.params
        return dict(displayName=p["display_name"], description=p["description"], disabled=p["disabled"])

    def normalize(self, actual):
        """The API leaves out empty fields and `disabled` while false: spell them out."""
        actual = dict(actual)
        actual.setdefault("displayName", "")
        actual.setdefault("description", "")
        actual.setdefault("disabled", False)
        return actual

    def read(self):
        return self.client.get(API, self.path, resource=self.name)

    def wait_visible(self):
        """Poll the new account with backoff within timeout until VISIBLE_READS reads in a row find it; return
        the last one. IAM answers 404, or 403, for an account it does not see yet (magic-modules #6053, #11811)."""
        seen = {"count": 0}

        def poll():
            try:
                account = self.client.get(API, self.path, resource=self.name)
            except GcpApiError as exc:
                if exc.status != 403:
                    raise
                account = None
            seen["count"] = seen["count"] + 1 if account else 0
            return account

        try:
            return self.client.wait(poll, lambda _account: seen["count"] >= VISIBLE_READS, resource=self.name,
                                    interval=0.5, max_interval=5.0)
        except GcpApiError as exc:
            if exc.reason != "TIMEOUT":
                raise
            raise GcpApiError(None, "TIMEOUT", "the service account was created but IAM did not show it in %d reads "
                              "in a row within %ss (IAM is eventually consistent); run again, or raise timeout"
                              % (VISIBLE_READS, self.client.timeout), resource=self.name) from None

    def _set_disabled(self, disabled):
        self.client.request("POST", API, "%s:%s" % (self.path, "disable" if disabled else "enable"),
                            resource=self.name, body={})

    def create(self, desired):
        account = {k: desired[k] for k in EDITABLE if k in desired}
        created = self.client.request("POST", API, "/v1/projects/%s/serviceAccounts" % self.params["project"],
                                      resource=self.name,
                                      body={"accountId": self.params["account_id"], "serviceAccount": account})
        created = self.wait_visible() or created
        if desired.get("disabled"):
            self._set_disabled(True)
            created = dict(created, disabled=True)
        return created

    def update(self, actual, desired, changed_fields):
        patched = [f for f in EDITABLE if f in changed_fields]
        if patched:
            self.client.request("PATCH", API, self.path, resource=self.name,
                                body={"serviceAccount": {f: desired[f] for f in patched}, "updateMask": ",".join(patched)})
        if "disabled" in changed_fields:
            self._set_disabled(desired["disabled"])
        # A PATCH answers with the patched fields only: read the whole account back.
        return self.read() or {}

    def delete(self, actual):
        self.client.request("DELETE", API, self.path, resource=self.name, not_found_ok=True)


def main():
    module = GcpModule(
        argument_spec=dict(
            account_id=dict(type="str", required=True, aliases=["name"]),
            display_name=dict(type="str"),
            description=dict(type="str"),
            disabled=dict(type="bool"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
    )
    converge(ServiceAccount(module))


if __name__ == "__main__":
    main()
