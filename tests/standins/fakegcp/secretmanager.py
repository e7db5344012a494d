"""Secret Manager v1: secrets, versions (add, get, list, access, disable, enable, destroy) and secret IAM policies.

As Google:
- names in answers use the project number: projects/NUMBER/secrets/ID[/versions/N];
- replication is required at create and immutable afterwards; patch needs an update mask;
- etags are quoted strings that change on every modification (a no-op one too); a stale etag on a patch,
  delete or version state change fails 400 FAILED_PRECONDITION;
- versions are numbered from 1; "latest" and the secret's versionAliases can stand for a version number;
- a version's payload can be read (:access) only while it is ENABLED; destroy drops the payload for good.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.errors import already_exists, failed_precondition, invalid, not_found
from tests.standins.fakegcp.util import apply_mask, deep, label_problems, mask_paths, now, paginate

SECRET_ID = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
ALIAS = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")
MUTABLE = ("labels", "annotations", "topics", "rotation", "expireTime", "ttl", "versionAliases", "versionDestroyTtl",
           "customerManagedEncryption")
MAX_PAYLOAD = 64 * 1024


def crc32c(data):
    """CRC-32C (Castagnoli), as Secret Manager checks dataCrc32c."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _bit in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


class SecretManager(Api):
    name = "secretmanager"
    document = "secretmanager.v1"

    def reset(self):
        super().reset()
        self.state["secrets"] = {}  # "project_id/secret_id" -> {"secret": {...}, "versions": [{...}], "payloads": {n: bytes}}

    # ---- lookups ---------------------------------------------------------------------------------------------
    def _etag(self):
        """A new quoted etag (Secret Manager etags include the quotes)."""
        self.state["etag_seq"] = self.state.get("etag_seq", 0) + 1
        return '"%x"' % (0x16000000000000 + self.state["etag_seq"] * 0x1234567)

    def _entry(self, name):
        """(entry, project_id, number, secret_id) for projects/P/secrets/S; 404 when missing."""
        _projects, project, _secrets, secret_id = name.split("/")[:4]
        project_id, number = self.projects.resolve(project)
        entry = self.state["secrets"].get("%s/%s" % (project_id, secret_id))
        if entry is None:
            raise not_found("Secret [projects/%s/secrets/%s] not found or has no versions." % (number, secret_id))
        return entry, project_id, number, secret_id

    def _version(self, name):
        """(entry, version) for projects/P/secrets/S/versions/V (V a number, latest or an alias)."""
        entry, _project_id, number, secret_id = self._entry(name)
        ref = name.split("/")[5]
        versions = entry["versions"]
        if ref == "latest":
            if not versions:
                raise not_found("Secret [projects/%s/secrets/%s] not found or has no versions." % (number, secret_id))
            return entry, versions[-1]
        aliases = entry["secret"].get("versionAliases") or {}
        if ref in aliases:
            ref = aliases[ref]
        if not ref.isdigit():
            raise not_found("Secret Version [projects/%s/secrets/%s/versions/%s] not found." % (number, secret_id, ref))
        version = next((v for v in versions if v["name"].endswith("/versions/%s" % int(ref))), None)
        if version is None:
            raise not_found("Secret Version [projects/%s/secrets/%s/versions/%s] not found." % (number, secret_id, ref))
        return entry, version

    @staticmethod
    def _check_etag(given, current, what):
        if given and given != current:
            raise failed_precondition("The etag provided in the request (%s) does not match the current etag of the "
                                      "%s (%s)." % (given, what, current))

    # ---- validation of secret fields ------------------------------------------------------------------------
    def _check_fields(self, secret, entry=None):
        problem = label_problems(secret.get("labels"))
        if problem:
            raise invalid(problem, field="secret.labels")
        topics = secret.get("topics") or []
        if len(topics) > 10:
            raise invalid("A secret can have at most 10 topics.", field="secret.topics")
        for topic in topics:
            if not TOPIC.match(topic.get("name", "")):
                raise invalid("Invalid topic name %r: expected projects/*/topics/*." % topic.get("name"),
                              field="secret.topics")
        rotation = secret.get("rotation")
        if rotation:
            if not topics:
                raise invalid("A rotation policy needs at least one Pub/Sub topic on the secret.", field="secret.rotation")
            if rotation.get("rotationPeriod") and not rotation.get("nextRotationTime"):
                raise invalid("rotation.next_rotation_time must be set when rotation.rotation_period is set.",
                              field="secret.rotation.next_rotation_time")
        if secret.get("expireTime") and secret.get("ttl"):
            raise invalid("Only one of expire_time and ttl can be set.", field="secret.expiration")
        versions = {v["name"].rsplit("/", 1)[1] for v in (entry or {}).get("versions", [])}
        for alias, number in (secret.get("versionAliases") or {}).items():
            if not ALIAS.match(alias) or alias == "latest" or alias.isdigit():
                raise invalid("Invalid version alias %r." % alias, field="secret.version_aliases")
            if str(number) not in versions:
                raise invalid("Version alias %r points to version %s, which does not exist." % (alias, number),
                              field="secret.version_aliases")

    @staticmethod
    def _apply_ttl(secret):
        ttl = secret.pop("ttl", None)
        if ttl:
            seconds = float(ttl[:-1])
            secret["expireTime"] = (datetime.datetime.now(datetime.timezone.utc)
                                    + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @staticmethod
    def _check_replication(replication):
        if not replication:
            raise invalid("Invalid request: field secret.replication is required.", field="secret.replication")
        kinds = [k for k in ("automatic", "userManaged") if k in replication]
        if len(kinds) != 1:
            raise invalid("Exactly one of replication.automatic and replication.user_managed must be set.",
                          field="secret.replication")
        if "userManaged" in replication:
            locations = [r.get("location") for r in replication["userManaged"].get("replicas") or []]
            if not locations or not all(locations):
                raise invalid("replication.user_managed.replicas needs at least one replica, each with a location.",
                              field="secret.replication.user_managed.replicas")
            if len(set(locations)) != len(locations):
                raise invalid("replication.user_managed.replicas lists a location twice.",
                              field="secret.replication.user_managed.replicas")

    # ---- secrets -------------------------------------------------------------------------------------------
    @handles("secretmanager.projects.secrets.create")
    def create(self, req):
        project_id, number = self.projects.resolve(req["parent"].split("/", 1)[1])
        secret_id = req.get("secretId")
        if not secret_id:
            raise invalid("Invalid request: secret_id is required.", field="secret_id")
        if not SECRET_ID.match(secret_id):
            raise invalid("Invalid secret id %r: use 1 to 255 letters, digits, underscores or hyphens." % secret_id,
                          field="secret_id")
        key = "%s/%s" % (project_id, secret_id)
        if key in self.state["secrets"]:
            raise already_exists("Secret [projects/%s/secrets/%s] already exists." % (number, secret_id))
        secret = deep(req.body)
        secret.pop("etag", None)
        self._check_replication(secret.get("replication"))
        self._check_fields(secret)
        self._apply_ttl(secret)
        secret.pop("tags", None)  # input only
        secret.update(name="projects/%s/secrets/%s" % (number, secret_id), createTime=now(), etag=self._etag())
        self.state["secrets"][key] = {"secret": secret, "versions": [], "payloads": {}}
        return deep(secret)

    @handles("secretmanager.projects.secrets.get")
    def get(self, req):
        return deep(self._entry(req["name"])[0]["secret"])

    @handles("secretmanager.projects.secrets.list")
    def list(self, req):
        project_id = self.projects.resolve(req["parent"].split("/", 1)[1])[0]
        secrets = [e["secret"] for k, e in sorted(self.state["secrets"].items()) if k.split("/")[0] == project_id]
        flt = (req.get("filter") or "").strip()
        if flt:
            match = re.match(r"^labels\.([a-z0-9_-]+)(?::\*|[=:]([a-z0-9_-]*))$", flt) or \
                re.match(r"^name:(\S+)$", flt)
            if not match:
                raise invalid("The fake supports the filters labels.KEY=VALUE, labels.KEY:* and name:TEXT, not %r."
                              % flt, field="filter")
            if flt.startswith("name:"):
                secrets = [s for s in secrets if match.group(1) in s["name"].rsplit("/", 1)[1]]
            else:
                key, value = match.group(1), match.group(2)
                secrets = [s for s in secrets if key in (s.get("labels") or {})
                           and (value is None or s["labels"][key] == value)]
        page, token = paginate(secrets, req.get("pageSize"), req.get("pageToken"), default_size=25000, max_size=25000)
        body = {"secrets": deep(page)} if page else {}
        if token:
            body["nextPageToken"] = token
        body["totalSize"] = len(secrets)
        return body

    @handles("secretmanager.projects.secrets.patch")
    def patch(self, req):
        entry = self._entry(req["name"])[0]
        secret = entry["secret"]
        paths = mask_paths(req.get("updateMask"))
        if not paths:
            raise invalid("Invalid request: update_mask is required.", field="update_mask")
        for path in paths:
            top = path.split(".")[0]
            if top == "replication":
                raise invalid("The replication policy of a secret is immutable.", field="update_mask")
            if top not in MUTABLE:
                raise invalid("Invalid update_mask path %r: it is not a field that can be updated." % path,
                              field="update_mask")
        self._check_etag(req.body.get("etag"), secret["etag"], "secret")
        candidate = deep(secret)
        apply_mask(candidate, req.body, paths)
        if "ttl" in paths or "expireTime" in paths:
            candidate.pop("expireTime" if "ttl" in paths else "ttl", None)
        self._check_fields(candidate, entry)
        self._apply_ttl(candidate)
        candidate["etag"] = self._etag()
        entry["secret"] = candidate
        return deep(candidate)

    @handles("secretmanager.projects.secrets.delete")
    def delete(self, req):
        entry, project_id, _number, secret_id = self._entry(req["name"])
        self._check_etag(req.get("etag"), entry["secret"]["etag"], "secret")
        del self.state["secrets"]["%s/%s" % (project_id, secret_id)]
        self.policies.drop("secretmanager:%s/%s" % (project_id, secret_id))
        return {}

    # ---- versions -----------------------------------------------------------------------------------------
    @handles("secretmanager.projects.secrets.addVersion")
    def add_version(self, req):
        entry, _project_id, _number, _secret_id = self._entry(req["parent"])
        payload = req.body["payload"]
        data = payload.get("data") or ""
        try:
            raw = base64.b64decode(data.replace("-", "+").replace("_", "/") + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raise invalid("Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding failed.",
                          field="payload.data") from None
        if not raw:
            raise invalid("Secret Payload cannot be empty.", field="payload.data")
        if len(raw) > MAX_PAYLOAD:
            raise invalid("Secret payload is larger than 64KiB (%d bytes)." % len(raw), field="payload.data")
        checksum = payload.get("dataCrc32c")
        if checksum is not None and int(checksum) != crc32c(raw):
            raise invalid("Checksum mismatch: the payload's CRC32C is %d, the request said %s. The data may have "
                          "been corrupted in transit." % (crc32c(raw), checksum), field="payload.data_crc32c")
        number = len(entry["versions"]) + 1
        replication = entry["secret"]["replication"]
        status = {"automatic": {}} if "automatic" in replication else {
            "userManaged": {"replicas": [{"location": r["location"]} for r in replication["userManaged"]["replicas"]]}}
        version = {"name": "%s/versions/%d" % (entry["secret"]["name"], number), "createTime": now(),
                   "state": "ENABLED", "replicationStatus": status, "etag": self._etag()}
        if checksum is not None:
            version["clientSpecifiedPayloadChecksum"] = True
        entry["versions"].append(version)
        entry["payloads"][str(number)] = raw
        return deep(version)

    @handles("secretmanager.projects.secrets.versions.get")
    def get_version(self, req):
        return deep(self._version(req["name"])[1])

    @handles("secretmanager.projects.secrets.versions.list")
    def list_versions(self, req):
        entry = self._entry(req["parent"])[0]
        versions = list(reversed(entry["versions"]))  # newest first
        flt = (req.get("filter") or "").strip()
        if flt:
            match = re.match(r"^state\s*[:=]\s*(ENABLED|DISABLED|DESTROYED)$", flt) or \
                re.match(r"^NOT\s+state\s*[:=]\s*(ENABLED|DISABLED|DESTROYED)$", flt)
            if not match:
                raise invalid("The fake supports the filters state:STATE and NOT state:STATE, not %r." % flt,
                              field="filter")
            negate = flt.startswith("NOT")
            versions = [v for v in versions if (v["state"] == match.group(1)) != negate]
        page, token = paginate(versions, req.get("pageSize"), req.get("pageToken"), default_size=25000, max_size=25000)
        body = {"versions": deep(page)} if page else {}
        if token:
            body["nextPageToken"] = token
        body["totalSize"] = len(versions)
        return body

    @handles("secretmanager.projects.secrets.versions.access")
    def access(self, req):
        entry, version = self._version(req["name"])
        if version["state"] != "ENABLED":
            raise failed_precondition("Secret Version [%s] is in %s state." % (version["name"], version["state"]))
        raw = entry["payloads"][version["name"].rsplit("/", 1)[1]]
        payload = {"data": base64.b64encode(raw).decode(), "dataCrc32c": str(crc32c(raw))}
        return {"name": version["name"], "payload": payload}

    def _set_state(self, req, state):
        entry, version = self._version(req["name"])
        self._check_etag((req.body or {}).get("etag"), version["etag"], "secret version")
        if version["state"] == "DESTROYED":
            raise failed_precondition("Secret Version [%s] is in DESTROYED state." % version["name"])
        version["state"] = state
        if state == "DESTROYED":
            version["destroyTime"] = now()
            entry["payloads"].pop(version["name"].rsplit("/", 1)[1], None)
        version["etag"] = self._etag()
        return deep(version)

    @handles("secretmanager.projects.secrets.versions.disable")
    def disable_version(self, req):
        return self._set_state(req, "DISABLED")

    @handles("secretmanager.projects.secrets.versions.enable")
    def enable_version(self, req):
        return self._set_state(req, "ENABLED")

    @handles("secretmanager.projects.secrets.versions.destroy")
    def destroy_version(self, req):
        return self._set_state(req, "DESTROYED")

    # ---- IAM ---------------------------------------------------------------------------------------------
    def _policy_key(self, resource):
        _entry, project_id, _number, secret_id = self._entry(resource)
        return "secretmanager:%s/%s" % (project_id, secret_id)

    @handles("secretmanager.projects.secrets.getIamPolicy")
    def get_iam_policy(self, req):
        return self.policies.get(self._policy_key(req["resource"]), req.get("options.requestedPolicyVersion"))

    @handles("secretmanager.projects.secrets.setIamPolicy")
    def set_iam_policy(self, req):
        return self.policies.set(self._policy_key(req["resource"]), req.body)
