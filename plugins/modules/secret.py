#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: secret
short_description: Manage a Secret Manager secret and its current value
version_added: 0.1.0
description:
  - Create, update or delete a secret through the Secret Manager API v1, and keep its latest enabled version
    holding the value you give (O(value)) or a random value generated once (O(generate)).
  - Only the options you set are compared with the secret; everything else is left as it is.
  - The replication policy of a secret cannot change. Asking for another one fails and changes nothing.
  - The value is never part of the result, the diff or any message, unless you ask for it with
    O(return_value).
options:
  name:
    description:
      - The secret ID, unique in the project. 1 to 255 letters, digits, V(-) and V(_).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the secret, V(absent) deletes it.
      - Deleting a secret deletes every version of it at once, for good.
    type: str
    choices: [present, absent]
    default: present
  replication:
    description:
      - Where Secret Manager keeps the secret's data. V(automatic) lets Google choose; V(user_managed) keeps it
        in the O(locations) only.
      - Set at creation only. When not set, a new secret uses V(automatic) and an existing secret keeps its own.
    type: str
    choices: [automatic, user_managed]
  locations:
    description:
      - The locations of a V(user_managed) secret, such as V(europe-west1). Required with
        O(replication=user_managed), and only with it. Order does not matter.
    type: list
    elements: str
  labels:
    description:
      - Labels of the secret. When set, these are all its labels; labels not listed are removed.
    type: dict
  annotations:
    description:
      - Annotations of the secret (free-form metadata for tools). When set, these are all its annotations;
        annotations not listed are removed.
      - Keys have 1 to 63 characters, start and end with a letter or digit and hold letters, digits, V(-),
        V(_) and V(.) in between. Keys and values together stay under 16 KiB.
    type: dict
  value:
    description:
      - The value the secret must hold, as UTF-8 text of at most 64 KiB.
      - A new version is added only when the latest enabled version holds something else (the module reads it
        to compare; it never reports it).
      - Mutually exclusive with O(generate).
    type: str
  generate:
    description:
      - Generate a random value (Python's C(secrets) module) when the secret has no enabled version yet.
      - A secret that already has an enabled version is left alone, so running the task again never changes a
        password by accident. Use O(rotate) to replace the value on purpose.
      - Mutually exclusive with O(value).
    type: dict
    suboptions:
      length:
        description: Number of characters, from 8 to 4096.
        type: int
        default: 32
      alphabet:
        description:
          - Characters to draw from. V(alphanumeric) is letters and digits (safe in URLs and connection strings),
            V(hex) lowercase hexadecimal digits, V(ascii_printable) letters, digits and punctuation (no space),
            V(custom) the characters of O(generate.characters).
        type: str
        choices: [alphanumeric, hex, ascii_printable, custom]
        default: alphanumeric
      characters:
        description: The characters to draw from, with O(generate.alphabet=custom) only. At least 2 different ones.
        type: str
  rotate:
    description:
      - With O(generate), add a new generated version on every run, even when an enabled version exists.
      - Meant for a one-off run (for example C(-e rotate=true)); the task reports a change each time.
    type: bool
    default: false
  disable_previous:
    description:
      - Keep only the newest version enabled. Every other enabled version is disabled (never destroyed; it can
        be enabled again with C(gcloud secrets versions enable)).
      - Disabled versions can no longer be read, so anything that still uses one of them (a pinned version
        number) stops working. Versions named by V(latest) keep working.
    type: bool
    default: false
  return_value:
    description:
      - Return the value of the latest enabled version as RV(value). Use C(no_log=true) on the task, since Ansible
        prints the results of tasks.
      - With O(value), Ansible masks the returned value (it is the value of a C(no_log) option); this is
        meant for O(generate) and for reading a secret back.
    type: bool
    default: false
notes:
  - The payload is sent with its CRC-32C checksum, and a value read back is checked against the stored checksum.
    The checksum uses C(google-crc32c) when installed, else a pure Python implementation.
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Generate the MLflow database password once (re-runs keep it)
  deployml.mlops.secret:
    project: my-project
    name: mlflow-db-password
    labels:
      app: mlflow
    generate:
      length: 32

- name: Rotate it on demand, keeping only the new version enabled
  deployml.mlops.secret:
    project: my-project
    name: mlflow-db-password
    generate: {}
    rotate: true
    disable_previous: true
  when: rotate | default(false) | bool

- name: Store an API token kept in the vault
  deployml.mlops.secret:
    project: my-project
    name: grafana-api-token
    replication: user_managed
    locations: [europe-west1, europe-west4]
    value: "{{ vault_grafana_api_token }}"

- name: Read a generated value back (hidden from the output)
  deployml.mlops.secret:
    project: my-project
    name: mlflow-db-password
    generate: {}
    return_value: true
  register: db_password
  no_log: true

- name: Delete a secret with all its versions
  deployml.mlops.secret:
    project: my-project
    name: old-token
    state: absent
"""

RETURN = r"""
secret:
  description: The secret as the API returns it after the change (the desired body in check mode), empty when absent.
  returned: always
  type: dict
  sample:
    name: projects/my-project/secrets/mlflow-db-password
    replication: {automatic: {}}
    labels: {app: mlflow}
    createTime: "2026-01-31T10:00:00.000000Z"
    etag: '"16a9d8c4b1f0e2"'
version:
  description:
    - Resource name of the latest enabled version after the run (never its value).
    - V(null) when the secret has no enabled version, and in check mode when a version would be added.
  returned: when O(state=present)
  type: str
  sample: projects/123456789/secrets/mlflow-db-password/versions/2
version_created:
  description: Whether a version was added (or would be, in check mode).
  returned: when O(state=present)
  type: bool
disabled_versions:
  description: Versions disabled by O(disable_previous) (or that would be, in check mode).
  returned: when O(state=present)
  type: list
  elements: str
  sample: [projects/123456789/secrets/mlflow-db-password/versions/1]
value:
  description:
    - The value of the latest enabled version. V(null) in check mode when a version would be added.
  returned: when O(return_value=true) and O(state=present)
  type: str
changed_fields:
  description: Top-level fields of the secret that differed and were updated.
  returned: when an existing secret changed
  type: list
  elements: str
  sample: [labels]
"""

import re
import secrets
import string

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule, label_errors
from ansible_collections.deployml.mlops.plugins.module_utils.resource import (
    Exact, Resource, ResourceError, differences, exit_module, project, prune, top_level)
from ansible_collections.deployml.mlops.plugins.module_utils.secrets import (
    API, MAX_PAYLOAD, SECRET_ID, access, enabled_versions, payload, protect, secret_path)

ALPHABETS = {
    "alphanumeric": string.ascii_letters + string.digits,
    "hex": string.hexdigits[:16],
    "ascii_printable": string.ascii_letters + string.digits + string.punctuation,
}
ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
ANNOTATIONS_MAX = 16 * 1024
GENERATE_MIN = 8
GENERATE_MAX = 4096
NEW_VERSION = "(new version)"


class Secret(Resource):
    kind = "secret"
    result_key = "secret"
    immutable = ("replication",)

    @property
    def name(self):
        return "projects/%s/secrets/%s" % (self.params["project"], self.params["name"])

    def validate(self):
        p = self.params
        if not SECRET_ID.match(p["name"]):
            raise ResourceError("secret name %r is invalid: use 1 to 255 letters, digits, '-' and '_'" % p["name"])
        errors = label_errors(p["labels"]) + self._annotation_errors()
        if p["replication"] == "user_managed" and not p["locations"]:
            errors.append("replication user_managed needs at least one location in locations")
        if p["locations"] and p["replication"] != "user_managed":
            errors.append("locations go with replication: user_managed only")
        if p["value"] is not None:
            size = len(p["value"].encode("utf-8"))
            if not size:
                errors.append("value must not be empty")
            elif size > MAX_PAYLOAD:
                errors.append("value holds %d bytes; Secret Manager takes at most %d" % (size, MAX_PAYLOAD))
        generate = p["generate"]
        if generate is not None:
            if not GENERATE_MIN <= generate["length"] <= GENERATE_MAX:
                errors.append("generate.length must be from %d to %d, got %d"
                              % (GENERATE_MIN, GENERATE_MAX, generate["length"]))
            custom = generate["alphabet"] == "custom"
            if not custom and generate["characters"] is not None:
                errors.append("generate.characters goes with generate.alphabet: custom only")
            elif custom and len(set(generate["characters"] or "")) < 2:
                errors.append("generate.alphabet custom needs generate.characters with at least 2 different characters")
            elif generate["length"] * max(len(c.encode("utf-8")) for c in self.alphabet()) > MAX_PAYLOAD:
                errors.append("generate.length %d is too long for a 64 KiB payload with these characters"
                              % generate["length"])
        if p["rotate"] and generate is None:
            errors.append("rotate needs generate: it replaces the value with a newly generated one")
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))

    def _annotation_errors(self):
        annotations = self.params["annotations"] or {}
        errors = ["annotation key %r must have 1 to 63 letters, digits, '-', '_' or '.', and start and end with "
                  "a letter or digit" % key for key in annotations if not ANNOTATION_KEY.match(str(key))]
        errors += ["annotation %r must have a string value (quote numbers and booleans)" % key
                   for key, value in annotations.items() if not isinstance(value, str)]
        size = sum(len(str(k).encode("utf-8")) + len(str(v).encode("utf-8")) for k, v in annotations.items())
        if size >= ANNOTATIONS_MAX:
            errors.append("annotations hold %d bytes; keys and values together must stay under 16 KiB" % size)
        return errors

    def alphabet(self):
        generate = self.params["generate"]
        if generate["alphabet"] == "custom":
            return sorted(set(generate["characters"]))
        return ALPHABETS[generate["alphabet"]]

    def generate(self):
        return "".join(map(secrets.choice, [self.alphabet()] * self.params["generate"]["length"]))

    def desired(self):
        p = self.params
        replication = None
        if p["replication"] == "automatic":
            replication = Exact(automatic={})
        elif p["replication"] == "user_managed":
            replication = Exact(userManaged={"replicas": [{"location": loc} for loc in sorted(set(p["locations"]))]})
        return dict(
            replication=replication,
            labels=Exact(p["labels"]) if p["labels"] is not None else None,
            annotations=Exact(p["annotations"]) if p["annotations"] is not None else None,
        )

    def normalize(self, actual):
        """Secret Manager leaves out empty maps; replicas compare in location order."""
        actual = dict(actual)
        actual.setdefault("labels", {})
        actual.setdefault("annotations", {})
        replication = dict(actual.get("replication") or {})
        if "userManaged" in replication:
            managed = dict(replication["userManaged"])
            managed["replicas"] = sorted(managed.get("replicas") or [], key=lambda r: r.get("location", ""))
            replication["userManaged"] = managed
        actual["replication"] = replication
        return actual

    def read(self):
        return self.client.get(API, secret_path(self.name), resource=self.name)

    def create(self, desired):
        body = dict(desired)
        body.setdefault("replication", {"automatic": {}})
        try:
            return self.client.request("POST", API, "/v1/projects/%s/secrets" % self.params["project"],
                                       resource=self.name, params={"secretId": self.params["name"]}, body=body)
        except GcpApiError as exc:
            # A create retried after a lost answer may have gone through the first time: 409, and it is there.
            existing = self.read() if exc.status == 409 else None
            if existing is None:
                raise
            return existing

    def update(self, actual, desired, changed_fields):
        body = {field: desired[field] for field in changed_fields}
        if actual.get("etag"):  # a concurrent change makes the update fail (409) instead of being overwritten
            body["etag"] = actual["etag"]
        return self.client.request("PATCH", API, secret_path(self.name), resource=self.name, body=body,
                                   params={"updateMask": ",".join(changed_fields)})

    def delete(self, actual):
        self.client.request("DELETE", API, secret_path(self.name), resource=self.name)


def _text(value):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def run(secret):
    """Converge the secret itself, then its latest enabled version; exit the module with the result."""
    module, p, client = secret.module, secret.params, secret.client
    result = dict(changed=False)
    try:
        secret.validate()
        raw = secret.read()
        if p["state"] == "absent":
            if raw is not None:
                result.update(changed=True, diff=dict(before=secret.normalize(raw), after={}))
                if not module.check_mode:
                    secret.delete(raw)
            result["secret"] = {}
            return result

        desired = prune(secret.desired())
        before, after = {}, dict(desired)
        if raw is None:
            result.update(changed=True)
            current = desired if module.check_mode else secret.create(desired)
        else:
            actual = secret.normalize(raw)
            changed_fields = top_level(differences(desired, actual))
            before = project(actual, desired)
            after = dict(before, **{f: desired[f] for f in changed_fields})
            current = raw
            if changed_fields:
                secret.plan_update(actual, desired, changed_fields)
                result.update(changed=True, changed_fields=changed_fields)
                if not module.check_mode:
                    current = secret.update(raw, desired, changed_fields)
        result["secret"] = current

        # The version: compare, generate or rotate; the value itself never goes into the result.
        enabled = enabled_versions(client, secret.name) if raw is not None else []
        latest = enabled[0] if enabled else None
        existing = None  # the latest enabled value, when it had to be read
        new_value = None
        if p["value"] is not None:
            new_value = p["value"].encode("utf-8")
            if latest is not None:
                existing = access(client, latest["name"])
                protect(module, existing)
            if existing == new_value:
                new_value = None
        elif p["generate"] is not None and (latest is None or p["rotate"]):
            new_value = secret.generate().encode("utf-8")
            if not p["return_value"]:
                protect(module, new_value)
        to_disable = enabled if new_value is not None else enabled[1:]
        to_disable = to_disable if p["disable_previous"] else []

        version = latest["name"] if latest else None
        if raw is not None:
            before["version"] = version
        after["version"] = NEW_VERSION if new_value is not None else version
        if to_disable:
            before["enabled_versions"] = [v["name"] for v in enabled]
            after["enabled_versions"] = ([NEW_VERSION] if new_value is not None else []) + \
                [v["name"] for v in enabled if v not in to_disable]
        result.update(version_created=new_value is not None, disabled_versions=[v["name"] for v in to_disable])
        if new_value is not None or to_disable:
            result["changed"] = True
        if new_value is not None:
            version = None
            if not module.check_mode:
                added = client.request("POST", API, secret_path(secret.name) + ":addVersion", resource=secret.name,
                                       body={"payload": payload(new_value)})
                version = added["name"]
                after["version"] = version
        if not module.check_mode:
            for old in to_disable:
                body = {"etag": old["etag"]} if old.get("etag") else {}
                client.request("POST", API, "/v1/%s:disable" % old["name"], resource=old["name"], body=body)
        result["version"] = version
        if after.get("enabled_versions") and version:
            after["enabled_versions"] = [version if v == NEW_VERSION else v for v in after["enabled_versions"]]
        if result["changed"]:
            result["diff"] = dict(before=before, after=after)

        if p["return_value"]:
            if new_value is not None:
                value = None if module.check_mode else new_value
            elif existing is not None:
                value = existing
            else:
                value = access(client, latest["name"]) if latest else None
            result["value"] = _text(value) if value is not None else None
            if value is not None and result["value"] is None:
                module.warn("the value of %s is not UTF-8 text; it is not returned" % latest["name"])
        return result
    except ResourceError as exc:
        module.fail_json(msg=str(exc), **result)
    except GcpApiError as exc:
        module.fail_api(exc, **result)


def main():
    module = GcpModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            replication=dict(type="str", choices=["automatic", "user_managed"]),
            locations=dict(type="list", elements="str"),
            labels=dict(type="dict"),
            annotations=dict(type="dict"),
            value=dict(type="str", no_log=True),
            generate=dict(
                type="dict",
                options=dict(
                    length=dict(type="int", default=32),
                    alphabet=dict(type="str", choices=["alphanumeric", "hex", "ascii_printable", "custom"],
                                  default="alphanumeric"),
                    characters=dict(type="str"),
                ),
            ),
            rotate=dict(type="bool", default=False),
            disable_previous=dict(type="bool", default=False),
            return_value=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("value", "generate")],
    )
    exit_module(module, run(Secret(module)))


if __name__ == "__main__":
    main()
