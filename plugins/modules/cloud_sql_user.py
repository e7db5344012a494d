#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloud_sql_user
short_description: Manage a user of a Cloud SQL instance
version_added: 0.1.0
description:
  - Create, update the password of, or delete a user of a Cloud SQL instance through the Cloud SQL Admin API
    v1beta4.
  - A built-in user gets its password from a Secret Manager secret (O(password_secret)) or from O(password).
    The password is never part of the result, the diff or any message.
  - Cloud SQL never returns passwords, so the module cannot tell whether a password is already the right one.
    With O(update_password=on_create) (the default) the password is set when the user is created and an
    existing user's password is left alone. With O(update_password=always) the password is set on every run,
    and the task reports a change every time.
  - IAM users (O(type=CLOUD_IAM_USER), O(type=CLOUD_IAM_SERVICE_ACCOUNT)) log in with IAM credentials and have no
    password. The instance needs IAM database authentication (flag C(cloudsql.iam_authentication) on
    PostgreSQL, C(cloudsql_iam_authentication) on MySQL).
  - The module waits for the Cloud SQL operations it starts, and first for any operation still running on the
    instance, so that a re-run after a timeout converges.
options:
  instance:
    description:
      - Name of the Cloud SQL instance (its ID, without the project).
      - The instance must exist. In check mode, a missing instance (to be created by an earlier task) is
        reported as a user to create, with a warning.
    type: str
    required: true
  name:
    description:
      - Name of the user.
      - For O(type=CLOUD_IAM_SERVICE_ACCOUNT), the service account's email. On PostgreSQL the database user is
        named after the email without V(.gserviceaccount.com) (V(sa@my-project.iam)); the module trims it, so
        give the full email (or the trimmed form). On MySQL the full email is sent.
      - For O(type=CLOUD_IAM_USER), the user's email.
    type: str
    required: true
  type:
    description:
      - How the user logs in. V(BUILT_IN) with a password, the others with IAM.
      - The type of an existing user cannot change; asking for another fails and changes nothing.
    type: str
    choices: [BUILT_IN, CLOUD_IAM_USER, CLOUD_IAM_SERVICE_ACCOUNT]
    default: BUILT_IN
  host:
    description:
      - MySQL only. The host the user can connect from; V(%) (any host) when not set.
      - Part of the user's identity on MySQL ("app"@"%" and "app"@"10.0.0.1" are two users).
    type: str
  password:
    description:
      - The password of a V(BUILT_IN) user. Mutually exclusive with O(password_secret).
    type: str
  password_secret:
    description:
      - The Secret Manager secret that holds the password of a V(BUILT_IN) user, as V(SECRET) (in O(project)),
        V(projects/PROJECT/secrets/SECRET) or V(projects/PROJECT/secrets/SECRET/versions/VERSION).
      - Without a version, V(latest) is used (Secret Manager's alias for the newest version, which must be
        enabled); that is what Cloud Run reads too.
      - The value is used exactly as stored (a trailing newline is part of the password). It is read only when
        the password is set (user created, or O(update_password=always)), also in check mode, to check that it
        can be read.
      - Mutually exclusive with O(password).
    type: str
  update_password:
    description:
      - V(on_create) sets the password only when the user is created.
      - V(always) sets it on every run. Cloud SQL does not return passwords, so the module cannot compare them, and
        the task reports a change on every run.
    type: str
    choices: [on_create, always]
    default: on_create
  state:
    description:
      - V(present) creates the user (and sets its password as O(update_password) says), V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - With O(state=absent), allow deleting the instance's default administrative user (V(postgres) on
        PostgreSQL, V(root) on MySQL, V(sqlserver) on SQL Server). Without it, the module refuses, because losing that
        user leaves no built-in user able to manage the others.
    type: bool
    default: false
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: The MLflow database user, with the password generated in Secret Manager
  deployml.mlops.cloud_sql_user:
    project: my-project
    instance: mlops-pg
    name: mlflow
    password_secret: mlflow-db-password

- name: After rotating the secret, push the new password to the database
  deployml.mlops.cloud_sql_user:
    project: my-project
    instance: mlops-pg
    name: mlflow
    password_secret: mlflow-db-password
    update_password: always
  when: rotate | default(false) | bool

- name: Let the serving service account log in with IAM
  deployml.mlops.cloud_sql_user:
    project: my-project
    instance: mlops-pg
    name: serving@my-project.iam.gserviceaccount.com
    type: CLOUD_IAM_SERVICE_ACCOUNT

- name: Remove a user
  deployml.mlops.cloud_sql_user:
    project: my-project
    instance: mlops-pg
    name: old-app
    state: absent
"""

RETURN = r"""
user:
  description:
    - The user as the API lists it after the change (the desired user in check mode), empty when absent.
      Never holds a password.
  returned: always
  type: dict
  sample:
    kind: sql#user
    name: mlflow
    instance: mlops-pg
    project: my-project
    type: BUILT_IN
password_updated:
  description: Whether a password was set (or would be, in check mode).
  returned: when O(state=present)
  type: bool
"""

import re

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule
from ansible_collections.deployml.mlops.plugins.module_utils.resource import ResourceError, exit_module
from ansible_collections.deployml.mlops.plugins.module_utils.secrets import access, parse_secret_ref, protect
from ansible_collections.deployml.mlops.plugins.module_utils.sqladmin import (
    API, instance_path, missing_instance, wait_pending_operations, wait_sql_operation)

INSTANCE_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,96}[a-z0-9])?$")
EMAIL = re.compile(r"^[^@\s/]+@[^@\s/]+\.[^@\s/]+$")
SERVICE_ACCOUNT = re.compile(r"^[^@\s/]+@[^@\s/]+\.iam(\.gserviceaccount\.com)?$")
SA_SUFFIX = ".gserviceaccount.com"
DEFAULT_ADMINS = {"POSTGRES": "postgres", "MYSQL": "root", "SQLSERVER": "sqlserver"}
HIDDEN = "(hidden)"


class User:
    kind = "Cloud SQL user"

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = module.client
        self.instance = None
        self.engine = None

    @property
    def project(self):
        return self.params["project"]

    @property
    def name(self):
        return "projects/%s/instances/%s/users/%s" % (self.project, self.params["instance"], self.user_name)

    @property
    def path(self):
        return instance_path(self.project, self.params["instance"]) + "/users"

    @property
    def email(self):
        """The full email of an IAM user (a trimmed service account name gets its suffix back)."""
        name = self.params["name"]
        if self.params["type"] == "CLOUD_IAM_SERVICE_ACCOUNT" and not name.endswith(SA_SUFFIX):
            name += SA_SUFFIX
        return name

    @property
    def user_name(self):
        """The user's name as Cloud SQL knows it on this engine."""
        if self.params["type"] == "CLOUD_IAM_SERVICE_ACCOUNT":
            return self.email[:-len(SA_SUFFIX)] if self.engine != "MYSQL" else self.email
        return self.params["name"]

    @property
    def host(self):
        if self.engine == "MYSQL":
            return self.params["host"] if self.params["host"] is not None else "%"
        return None

    def validate(self):
        p = self.params
        errors = []
        if not INSTANCE_NAME.match(p["instance"]):
            errors.append("instance %r is not a Cloud SQL instance name: use lowercase letters, digits and '-', "
                          "starting with a letter" % p["instance"])
        if not p["name"] or len(p["name"]) > 255 or "/" in p["name"]:
            errors.append("user name %r is invalid: use 1 to 255 characters, without '/'" % p["name"])
        elif p["type"] == "CLOUD_IAM_SERVICE_ACCOUNT" and not SERVICE_ACCOUNT.match(p["name"]):
            errors.append("a CLOUD_IAM_SERVICE_ACCOUNT user is named by the service account's email "
                          "(NAME@PROJECT.iam.gserviceaccount.com), got %r" % p["name"])
        elif p["type"] == "CLOUD_IAM_USER" and not EMAIL.match(p["name"]):
            errors.append("a CLOUD_IAM_USER user is named by the user's email, got %r" % p["name"])
        has_password = p["password"] is not None or p["password_secret"] is not None
        if p["type"] != "BUILT_IN" and has_password:
            errors.append("%s users log in with IAM and have no password: drop password/password_secret" % p["type"])
        if p["password"] is not None and not p["password"]:
            errors.append("password must not be empty")
        if p["update_password"] == "always" and not has_password and p["state"] == "present":
            errors.append("update_password: always needs password or password_secret")
        if p["password_secret"] is not None:
            try:
                parse_secret_ref(p["password_secret"], self.project)
            except ValueError as exc:
                errors.append("password_secret: %s" % exc)
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, p["name"], "; ".join(errors)))

    def read_instance(self):
        """Read the instance (once) and learn its engine; False when it does not exist."""
        found = self.client.get(API, instance_path(self.project, self.params["instance"]),
                                resource="projects/%s/instances/%s" % (self.project, self.params["instance"]))
        if found is None:
            return False
        self.instance = found
        self.engine = (found.get("databaseVersion") or "").split("_")[0] or None
        if self.params["host"] is not None and self.engine != "MYSQL":
            raise ResourceError("%s %s: host applies to MySQL users only; instance %s runs %s"
                                % (self.kind, self.params["name"], self.params["instance"], found.get("databaseVersion")))
        return True

    def matches(self, user):
        if self.engine == "MYSQL":
            if (user.get("host") or "") != self.host:
                return False
            if self.params["type"] != "BUILT_IN" and (user.get("iamEmail") or "").lower() == self.email.lower():
                return True
        return user.get("name") == self.user_name

    def read(self):
        wait_pending_operations(self.client, self.project, self.params["instance"], resource=self.name)
        listing = self.client.request("GET", API, self.path, resource=self.name)
        for user in listing.get("items") or []:
            if self.matches(user):
                user = dict(user)
                user.pop("password", None)  # never returned by Cloud SQL; never returned by this module either
                return user
        return None

    def password(self):
        """The password to set, read from the secret when that is where it lives. Masked in any output."""
        p = self.params
        if p["password"] is not None:
            return p["password"]
        project, secret, version = parse_secret_ref(p["password_secret"], self.project)
        value = access(self.client, "projects/%s/secrets/%s/versions/%s" % (project, secret, version))
        protect(self.module, value)
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ResourceError("the secret %s does not hold UTF-8 text; a password must be text"
                                % p["password_secret"]) from None
        if not text:
            raise ResourceError("the secret %s holds an empty value; a password must not be empty"
                                % p["password_secret"])
        return text

    def view(self):
        """The user as the options describe it (never the password)."""
        view = dict(name=self.user_name, type=self.params["type"])
        if self.host is not None:
            view["host"] = self.host
        return view

    def _wait(self, operation):
        wait_sql_operation(self.client, self.project, operation, resource=self.name)

    def _query(self):
        query = {"name": self.user_name}
        if self.host is not None:
            query["host"] = self.host
        return query

    def create(self, password):
        body = dict(self.view(), project=self.project, instance=self.params["instance"])
        if self.params["type"] == "CLOUD_IAM_SERVICE_ACCOUNT" and self.engine == "MYSQL":
            body["name"] = self.email
        if password is not None:
            body["password"] = password
        try:
            self._wait(self.client.request("POST", API, self.path, resource=self.name, body=body))
        except GcpApiError as exc:
            # An insert retried after a lost answer may have gone through the first time: Cloud SQL then
            # answers 409 (operation in progress, or the user exists); read() waits for the operation.
            existing = self.read() if exc.status == 409 else None
            if existing is None:
                raise
            return existing
        return self.read() or self.view()

    def set_password(self, password):
        body = dict(name=self.user_name, password=password, project=self.project, instance=self.params["instance"])
        if self.host is not None:
            body["host"] = self.host
        self._wait(self.client.request("PUT", API, self.path, resource=self.name, params=self._query(), body=body))

    def delete(self):
        self._wait(self.client.request("DELETE", API, self.path, resource=self.name, params=self._query()))


def run(user):
    module, p = user.module, user.params
    result = dict(changed=False)
    try:
        user.validate()
        if not user.read_instance():
            if p["state"] == "absent":
                result["user"] = {}
                return result
            missing_instance(module, "user")
            actual = None
        else:
            actual = user.read()

        if p["state"] == "absent":
            if actual is not None:
                admin = DEFAULT_ADMINS.get(user.engine)
                if actual.get("name") == admin and not p["force"]:
                    raise ResourceError("%s %s is the instance's default administrative user; deleting it leaves no "
                                        "built-in user able to manage the others. Set force: true to delete it "
                                        "anyway" % (user.kind, user.name))
                result.update(changed=True, diff=dict(before=actual, after={}))
                if not module.check_mode:
                    user.delete()
            result["user"] = {}
            return result

        has_password = p["password"] is not None or p["password_secret"] is not None
        if actual is None:
            if p["type"] == "BUILT_IN" and not has_password:
                raise ResourceError("%s %s does not exist: creating a BUILT_IN user needs password or "
                                    "password_secret" % (user.kind, p["name"]))
            password = None
            if has_password:
                try:
                    password = user.password()
                except GcpApiError as exc:
                    # In a check run the secret may be one an earlier task would have created.
                    if not (module.check_mode and exc.status == 404):
                        raise
                    module.warn("%s (yet): the user would get its password once it exists" % exc)
            after = user.view()
            if has_password:
                after["password"] = HIDDEN
            result.update(changed=True, password_updated=has_password, diff=dict(before={}, after=after))
            result["user"] = user.view() if module.check_mode else user.create(password)
            return result

        actual_type = actual.get("type") or "BUILT_IN"
        if actual_type != p["type"]:
            raise ResourceError("%s %s: type cannot be changed in place (type is %r, asked for %r); delete the user "
                                "and create it again" % (user.kind, user.name, actual_type, p["type"]))
        result.update(user=actual, password_updated=False)
        if p["update_password"] == "always" and has_password:
            password = user.password()
            before = user.view()
            before["password"] = HIDDEN
            result.update(changed=True, password_updated=True,
                          diff=dict(before=before, after=dict(before, password="(set again, hidden)")))
            if not module.check_mode:
                user.set_password(password)
        return result
    except ResourceError as exc:
        module.fail_json(msg=str(exc), **result)
    except GcpApiError as exc:
        module.fail_api(exc, **result)


def main():
    module = GcpModule(
        argument_spec=dict(
            instance=dict(type="str", required=True),
            name=dict(type="str", required=True),
            type=dict(type="str", choices=["BUILT_IN", "CLOUD_IAM_USER", "CLOUD_IAM_SERVICE_ACCOUNT"],
                      default="BUILT_IN"),
            host=dict(type="str"),
            password=dict(type="str", no_log=True),
            password_secret=dict(type="str", no_log=False),
            update_password=dict(type="str", choices=["on_create", "always"], default="on_create", no_log=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            force=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("password", "password_secret")],
    )
    exit_module(module, run(User(module)))


if __name__ == "__main__":
    main()
