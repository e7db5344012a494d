"""Cloud SQL Admin v1beta4: instances, databases, users and sql#operation.

Every write returns a sql#operation (status PENDING -> RUNNING -> DONE, polled with operations.get; with
fake.realism.timed_operations it is RUNNING from its start and DONE once its duration has passed). While
it runs the instance shows a transitional state (PENDING_CREATE, MAINTENANCE, PENDING_DELETE) and any other
write on the instance gets 409 operationInProgress; the change is applied when the operation completes
(a failed create removes the instance). As Cloud SQL:
- output-only fields (state, connectionName, ipAddresses, serverCaCert, etag, settingsVersion, ...) are set
  here, never taken from the request; defaults are filled in (PD_SSD, 10 GB, ZONAL, PER_USE, ALWAYS ...);
- the default edition is ENTERPRISE_PLUS for POSTGRES_16+ and MYSQL_8_4 (ENTERPRISE before), and the tier
  must fit the edition ("Invalid Tier (db-custom-1-3840) for (ENTERPRISE_PLUS) Edition ...");
- PATCH merges `settings` field by field (lists replaced; userLabels merged, null removes a key); PUT (update) replaces settings;
- region must be one Cloud SQL offers (regions.py; else 400 errorUnrecognizedGceZone) and cannot change; a
  deleted instance's name cannot be reused (409 with Google's "one week" message); deletion protection blocks
  delete;
- authorizedNetworks entries come back with kind sql#aclEntry; passwords are write-only;
- a POSTGRES_* instance starts with database "postgres" and user "postgres".
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import re
import uuid

from tests.standins.fakegcp.api import Api, handles
from tests.standins.fakegcp.errors import ApiError, invalid
from tests.standins.fakegcp.regions import CLOUD_SQL
from tests.standins.fakegcp.util import deep, label_problems, now, paginate

INSTANCE_NAME = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
PG_ENCODINGS = frozenset(("UTF8", "SQL_ASCII", "LATIN1", "LATIN2", "LATIN9", "WIN1252", "EUC_JP", "EUC_KR"))
ENTERPRISE_TIER = re.compile(r"^(db-f1-micro|db-g1-small|db-custom-(\d+)-(\d+)|db-n1-(standard|highmem)-\d+)$")
PLUS_TIER = re.compile(r"^db-(perf|memory)-optimized-N-\d+$")
SSL_PAIRS = {"ALLOW_UNENCRYPTED_AND_ENCRYPTED": False, "ENCRYPTED_ONLY": False,
             "TRUSTED_CLIENT_CERTIFICATE_REQUIRED": True}
INSTALLED = {"POSTGRES_14": "POSTGRES_14_13", "POSTGRES_15": "POSTGRES_15_8", "POSTGRES_16": "POSTGRES_16_4",
             "POSTGRES_17": "POSTGRES_17_0", "MYSQL_8_0": "MYSQL_8_0_39", "MYSQL_8_4": "MYSQL_8_4_2"}
# Top-level DatabaseInstance fields a caller may set; everything else is output only here.
WRITABLE = ("name", "region", "databaseVersion", "settings", "rootPassword", "diskEncryptionConfiguration",
            "masterInstanceName", "replicaConfiguration", "failoverReplica", "instanceType", "maintenanceVersion",
            "onPremisesConfiguration", "sqlNetworkArchitecture", "nodeCount")
# Settings whose change restarts the instance ("Edit instances": settings that restart): a longer operation.
RESTART_SETTINGS = ("tier", "edition", "availabilityType", "databaseFlags", "activationPolicy", "dataCacheConfig")
# Operation type -> kind of operation in durations.py (UPDATE: sql.instance.patch or .patch_restart).
KINDS = {"CREATE": "sql.instance.create", "DELETE": "sql.instance.delete", "CREATE_DATABASE": "sql.database",
         "UPDATE_DATABASE": "sql.database", "DELETE_DATABASE": "sql.database", "CREATE_USER": "sql.user",
         "UPDATE_USER": "sql.user", "DELETE_USER": "sql.user"}
BUSY = "Operation failed because another operation was already in progress. Try your request after the current " \
    "operation is complete."


def sql_error(code, message, reason):
    """Cloud SQL answers errors with its own reasons (instanceDoesNotExist, operationInProgress ...)."""
    return ApiError(code, message, reason=reason)


def engine(version):
    return "POSTGRES" if version.startswith("POSTGRES") else "SQLSERVER" if version.startswith("SQLSERVER") else "MYSQL"


def major(version):
    return tuple(int(n) for n in re.findall(r"\d+", version)[:2])


def default_edition(version):
    if version.startswith("POSTGRES_") and major(version)[0] >= 16:
        return "ENTERPRISE_PLUS"
    if version.startswith("MYSQL_8_4"):
        return "ENTERPRISE_PLUS"
    return "ENTERPRISE"


def merge(target, patch):
    """PATCH semantics of Cloud SQL settings: objects merge field by field, lists replace. userLabels merge
    key by key and a key sent as null is removed (as gcloud --remove-user-labels does)."""
    for key, value in patch.items():
        if key == "userLabels" and isinstance(value, dict):
            labels = target.setdefault(key, {})
            for label, text in value.items():
                if text is None:
                    labels.pop(label, None)
                else:
                    labels[label] = text
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class SqlAdmin(Api):
    name = "sqladmin"
    document = "sqladmin.v1beta4"

    def reset(self):
        super().reset()
        self.state["instances"] = {}   # "project/instance" -> {"instance", "databases", "users"}
        self.state["deleted"] = []     # "project/instance" names that cannot be reused yet

    # ---- helpers --------------------------------------------------------------------------------------------
    def link(self, project, *parts):
        return "%s/sql/v1beta4/projects/%s/%s" % (self.public_url, project, "/".join(parts))

    def _project(self, req):
        return self.projects.resolve(req["project"])[0]

    def _entry(self, project, name):
        entry = self.state["instances"].get("%s/%s" % (project, name))
        if entry is None:
            raise sql_error(404, "The Cloud SQL instance does not exist.", "instanceDoesNotExist")
        return entry

    def _running(self, project, name):
        return self.operations.running(lambda op: op.api == self.name and op.extra.get("targetProject") == project
                                       and op.extra.get("targetId") == name)

    def _not_busy(self, project, name):
        if self._running(project, name):
            raise sql_error(409, BUSY, "operationInProgress")

    def password(self, project, instance, user, host=""):
        """The password stored for a user (tests only: the API never returns it)."""
        users = self._entry(project, instance)["users"]
        return users["%s@%s" % (user, host)].get("_password")

    # ---- operations -----------------------------------------------------------------------------------------
    def _start(self, project, instance, operation_type, apply=None, on_fail=None, kind=None):
        """Start a sql#operation on an instance; apply() runs when it succeeds, on_fail() when it fails.
        kind: its kind in durations.py (by default the one of its operation type)."""
        def finish(ok):
            if ok and apply:
                apply()
            if not ok and on_fail:
                on_fail()

        extra = {"operationType": operation_type, "targetId": instance, "targetProject": project,
                 "user": "user@example.com"}
        op = self.operations.start(str(uuid.uuid4()), self.name, finish=finish, extra=extra,
                                   kind=kind or KINDS[operation_type],
                                   target="projects/%s/instances/%s" % (project, instance))
        return self.render(op)

    def render(self, op):
        project, instance = op.extra["targetProject"], op.extra["targetId"]
        body = {"kind": "sql#operation", "name": op.name, "operationType": op.extra["operationType"],
                "targetId": instance, "targetProject": project, "targetLink": self.link(project, "instances", instance),
                "selfLink": self.link(project, "operations", op.name), "user": op.extra["user"],
                "insertTime": op.insert_time}
        if op.done:
            body.update(status="DONE", startTime=op.insert_time, endTime=op.end_time)
            if op.error:
                code, message = op.error
                body["error"] = {"kind": "sql#operationErrors", "errors": [{
                    "kind": "sql#operationError", "code": str(code or "INTERNAL_ERROR"),
                    "message": message or "An internal error occurred."}]}
        elif op.polls or self.operations.timed:  # by time, it runs from its start
            body.update(status="RUNNING", startTime=op.insert_time)
        else:
            body["status"] = "PENDING"
        return body

    @handles("sql.operations.get")
    def get_operation(self, req):
        op = self.operations.poll(req["operation"])
        if op is None or op.api != self.name or op.extra["targetProject"] != self._project(req):
            raise sql_error(404, "The Cloud SQL operation does not exist.", "operationDoesNotExist")
        return self.render(op)

    @handles("sql.operations.list")
    def list_operations(self, req):
        project = self._project(req)
        ops = [op for op in self.operations.by_name.values() if op.api == self.name
               and op.extra["targetProject"] == project and req.get("instance") in (None, op.extra["targetId"])]
        ops.reverse()  # newest first
        page, token = paginate(ops, req.get("maxResults"), req.get("pageToken"), default_size=500, max_size=500)
        body = {"kind": "sql#operationsList", "items": [self.render(op) for op in page]}
        if token:
            body["nextPageToken"] = token
        return body

    # ---- instance validation and defaults ------------------------------------------------------------------
    def _check_settings(self, version, settings, current=None):
        edition = settings.get("edition")
        tier = settings.get("tier") or ""
        match = ENTERPRISE_TIER.match(tier)
        if edition == "ENTERPRISE_PLUS" and not PLUS_TIER.match(tier):
            raise invalid("Invalid request: Invalid Tier (%s) for (ENTERPRISE_PLUS) Edition. Use a predefined Tier "
                          "like db-perf-optimized-N-* instead." % tier, field="settings.tier")
        if edition != "ENTERPRISE_PLUS" and not match:
            raise invalid("Invalid request: Invalid Tier (%s) for (%s) Edition." % (tier, edition), field="settings.tier")
        if match and match.group(2):
            cpus, memory = int(match.group(2)), int(match.group(3))
            if not ((cpus == 1 or cpus % 2 == 0) and cpus <= 96 and memory % 256 == 0
                    and max(3840, 922 * cpus) <= memory <= 6656 * cpus):
                raise invalid("Invalid request: Invalid Tier (%s): use 1 or an even number of vCPUs (up to 96) and "
                              "0.9 to 6.5 GB of memory per vCPU, a multiple of 256 MB and at least 3840 MB." % tier,
                              field="settings.tier")
        size = int(settings.get("dataDiskSizeGb") or 10)
        if size < 10:
            raise invalid("Invalid request: The data disk size must be at least 10 GB.", field="settings.dataDiskSizeGb")
        if current and size < int(current.get("dataDiskSizeGb") or 10):
            raise invalid("Invalid request: The disk size cannot be decreased.", field="settings.dataDiskSizeGb")
        problem = label_problems(settings.get("userLabels"), "user labels")
        if problem:
            raise invalid("Invalid request: %s" % problem, field="settings.userLabels")
        self._check_ip(settings.get("ipConfiguration") or {}, (current or {}).get("ipConfiguration") or {})
        backup = settings.get("backupConfiguration") or {}
        if backup.get("startTime") and not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", backup["startTime"]):
            raise invalid("Invalid request: backup start time must be HH:MM.", field="settings.backupConfiguration")
        if backup.get("pointInTimeRecoveryEnabled") and not backup.get("enabled"):
            raise invalid("Invalid request: Point in time recovery must be disabled when backup is disabled.",
                          field="settings.backupConfiguration")
        if backup.get("binaryLogEnabled") and engine(version) == "POSTGRES":
            raise invalid("Invalid request: Binary log is a MySQL setting; use point in time recovery for PostgreSQL.",
                          field="settings.backupConfiguration.binaryLogEnabled")
        days = backup.get("transactionLogRetentionDays")
        if days is not None and not 1 <= days <= (35 if edition == "ENTERPRISE_PLUS" else 7):
            raise invalid("Invalid request: transactionLogRetentionDays is out of range.",
                          field="settings.backupConfiguration.transactionLogRetentionDays")
        window = settings.get("maintenanceWindow") or {}
        if not 0 <= window.get("hour", 0) <= 23 or not 0 <= window.get("day", 0) <= 7:
            raise invalid("Invalid request: maintenance window day must be 1-7 and hour 0-23.",
                          field="settings.maintenanceWindow")
        for flag in settings.get("databaseFlags") or []:
            if not re.match(r"^[a-z][a-z0-9_.]*$", flag.get("name") or ""):
                raise invalid("Invalid request: Invalid flag name (%s)." % flag.get("name"), field="settings.databaseFlags")
            if flag["name"] == "cloudsql.iam_authentication" and flag.get("value") not in ("on", "off"):
                raise invalid("Invalid request: flag cloudsql.iam_authentication takes on or off.",
                              field="settings.databaseFlags")
        if settings.get("availabilityType") == "REGIONAL" and tier in ("db-f1-micro", "db-g1-small"):
            raise invalid("Invalid request: High availability is not supported for shared-core tiers.",
                          field="settings.availabilityType")

    @staticmethod
    def _check_ip(ip, current):
        for network in ip.get("authorizedNetworks") or []:
            try:
                ipaddress.ip_network(network.get("value") or "", strict=False)
            except ValueError:
                raise invalid("Invalid request: Invalid authorized network (%s)." % network.get("value"),
                              field="settings.ipConfiguration.authorizedNetworks") from None
        if not ip.get("ipv4Enabled", True) and not ip.get("privateNetwork") and not ip.get("pscConfig"):
            raise invalid("Invalid request: At least one of Public IP or Private IP or PSC connectivity must be enabled.",
                          field="settings.ipConfiguration")
        if current.get("privateNetwork") and ip.get("privateNetwork") != current["privateNetwork"]:
            raise invalid("Invalid request: Private IP cannot be disabled or moved to another network once configured.",
                          field="settings.ipConfiguration.privateNetwork")
        if ip.get("privateNetwork") and not re.match(r"^projects/[^/]+/global/networks/[^/]+$", ip["privateNetwork"]):
            raise invalid("Invalid request: privateNetwork must be projects/PROJECT/global/networks/NETWORK.",
                          field="settings.ipConfiguration.privateNetwork")

    @staticmethod
    def _check_ssl(given):
        """sslMode and requireSsl given together must be a valid pair; sslMode wins when given alone."""
        ip = (given or {}).get("ipConfiguration") or {}
        mode, require = ip.get("sslMode"), ip.get("requireSsl")
        if mode and mode != "SSL_MODE_UNSPECIFIED" and require is not None and SSL_PAIRS[mode] != require:
            raise invalid("Invalid request: sslMode %s cannot be combined with requireSsl %s." % (mode, require),
                          field="settings.ipConfiguration.sslMode")

    @staticmethod
    def _ssl_defaults(ip, given):
        given = (given or {}).get("ipConfiguration") or {}
        if given.get("sslMode") in (None, "SSL_MODE_UNSPECIFIED") and "requireSsl" in given:
            if given["requireSsl"]:
                ip["sslMode"] = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
            elif SSL_PAIRS.get(ip.get("sslMode")):
                ip["sslMode"] = "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
        if ip.get("sslMode") in (None, "SSL_MODE_UNSPECIFIED"):
            ip["sslMode"] = "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
        ip["requireSsl"] = SSL_PAIRS[ip["sslMode"]]

    def _settings_defaults(self, version, settings, given=None):
        """Fill in what Cloud SQL fills in; the settings as stored and returned. given: the request's settings."""
        out = deep(settings)
        out.pop("settingsVersion", None)
        out["kind"] = "sql#settings"
        out.setdefault("edition", default_edition(version))
        out.setdefault("activationPolicy", "ALWAYS")
        out.setdefault("availabilityType", "ZONAL")
        out.setdefault("pricingPlan", "PER_USE")
        out.setdefault("replicationType", "SYNCHRONOUS")
        out.setdefault("dataDiskType", "PD_SSD")
        out["dataDiskSizeGb"] = str(out.get("dataDiskSizeGb") or "10")
        out.setdefault("storageAutoResize", True)
        out["storageAutoResizeLimit"] = str(out.get("storageAutoResizeLimit") or "0")
        out.setdefault("connectorEnforcement", "NOT_REQUIRED")
        out.setdefault("deletionProtectionEnabled", False)
        ip = out.setdefault("ipConfiguration", {})
        ip.setdefault("ipv4Enabled", True)
        self._ssl_defaults(ip, settings if given is None else given)
        ip.setdefault("serverCaMode", "GOOGLE_MANAGED_INTERNAL_CA")
        if not ip.get("authorizedNetworks"):
            ip.pop("authorizedNetworks", None)
        for network in ip.get("authorizedNetworks") or []:
            network["kind"] = "sql#aclEntry"
        backup = out.setdefault("backupConfiguration", {})
        backup["kind"] = "sql#backupConfiguration"
        backup.setdefault("enabled", False)
        backup.setdefault("startTime", "04:00")
        backup.setdefault("pointInTimeRecoveryEnabled", False)
        backup.setdefault("transactionLogRetentionDays", 14 if out["edition"] == "ENTERPRISE_PLUS" else 7)
        backup.setdefault("backupRetentionSettings", {"retentionUnit": "COUNT", "retainedBackups": 7})
        backup["backupTier"] = "STANDARD"
        backup["transactionalLogStorageState"] = "CLOUD_STORAGE"
        if engine(version) == "MYSQL":
            backup.setdefault("binaryLogEnabled", False)
        window = out.setdefault("maintenanceWindow", {})
        window["kind"] = "sql#maintenanceWindow"
        window.setdefault("hour", 0)
        window.setdefault("day", 0)
        location = out.setdefault("locationPreference", {})
        location["kind"] = "sql#locationPreference"
        if not out.get("databaseFlags"):
            out.pop("databaseFlags", None)
        if not out.get("userLabels"):
            out.pop("userLabels", None)
        return out

    def _addresses(self, instance):
        digest = hashlib.sha256(("%s/%s" % (instance["project"], instance["name"])).encode()).digest()
        ip = instance["settings"]["ipConfiguration"]
        addresses = []
        if ip.get("ipv4Enabled"):
            addresses.append({"type": "PRIMARY", "ipAddress": "34.%d.%d.%d" % (digest[0], digest[1], digest[2] or 1)})
        if ip.get("privateNetwork"):
            addresses.append({"type": "PRIVATE", "ipAddress": "10.%d.%d.%d" % (digest[3], digest[4], digest[5] or 1)})
        return addresses

    def _refresh(self, instance):
        """Recompute the fields derived from settings (addresses, etag)."""
        instance["ipAddresses"] = self._addresses(instance)
        if not instance["ipAddresses"]:
            instance.pop("ipAddresses")
        instance["etag"] = hashlib.sha256(repr(sorted(instance["settings"].items())).encode()
                                          + instance["settings"]["settingsVersion"].encode()).hexdigest()

    # ---- instances ------------------------------------------------------------------------------------------
    @handles("sql.instances.insert")
    def insert_instance(self, req):
        project, number = self.projects.resolve(req["project"])
        body = {k: v for k, v in req.body.items() if k in WRITABLE}
        name = body.get("name") or ""
        if not name:
            raise invalid("Invalid request: instance name is required.", field="name")
        if not INSTANCE_NAME.match(name) or len(name) > 98:
            raise invalid("Invalid request: Invalid instance name (%s): use lowercase letters, digits and hyphens, "
                          "starting with a letter and not ending with a hyphen." % name, field="name")
        key = "%s/%s" % (project, name)
        if key in self.state["instances"]:
            raise sql_error(409, "The Cloud SQL instance already exists.", "instanceAlreadyExists")
        if key in self.state["deleted"]:
            raise sql_error(409, "The Cloud SQL instance already exists. When you delete an instance, you can't reuse "
                            "the name of the deleted instance until one week from the deletion date.",
                            "instanceAlreadyExists")
        settings = body.get("settings") or {}
        if not settings.get("tier"):
            raise invalid("Invalid request: settings.tier is required.", field="settings.tier")
        version = body.get("databaseVersion") or "MYSQL_8_0"
        region = body.get("region") or "us-central1"
        if region not in CLOUD_SQL:
            # What Cloud SQL answers when it offers no zone in the region (GoogleCloudPlatform/compute-phabricator
            # #3, terraform-google-sql-db #526).
            raise sql_error(400, "Request contains unrecognized GCE zone when creating or updating an instance.",
                            "errorUnrecognizedGceZone")
        self._check_ssl(settings)
        settings = self._settings_defaults(version, settings)
        self._check_settings(version, settings)
        settings["settingsVersion"] = "1"
        zone = settings["locationPreference"].get("zone") or "%s-%s" % (region, "abcf"[int(number) % 4])
        settings["locationPreference"].setdefault("zone", zone)
        instance = {
            "kind": "sql#instance", "state": "PENDING_CREATE", "databaseVersion": version, "settings": settings,
            "project": project, "name": name, "region": region, "gceZone": zone, "backendType": "SECOND_GEN",
            "instanceType": body.get("instanceType") or "CLOUD_SQL_INSTANCE",
            "connectionName": "%s:%s:%s" % (project, region, name),
            "selfLink": self.link(project, "instances", name),
            "databaseInstalledVersion": INSTALLED.get(version, version + "_0"),
            "maintenanceVersion": "%s.R20250101.00_00" % INSTALLED.get(version, version + "_0"),
            "serviceAccountEmailAddress": "p%s-%s@gcp-sa-cloud-sql.iam.gserviceaccount.com"
                                          % (number, hashlib.sha256(key.encode()).hexdigest()[:6]),
            "createTime": now(), "sqlNetworkArchitecture": "NEW_NETWORK_ARCHITECTURE",
            "serverCaCert": self._server_ca(project, name),
        }
        self._refresh(instance)
        instance.pop("ipAddresses", None)  # assigned when the create completes
        entry = {"instance": instance, "databases": {}, "users": {}}
        if engine(version) == "POSTGRES":
            entry["databases"]["postgres"] = self._database(project, name, "postgres", "UTF8", "en_US.UTF8")
            entry["users"]["postgres@"] = self._user(project, name, {"name": "postgres"},
                                                     password=body.get("rootPassword"))
        elif engine(version) == "MYSQL":
            entry["users"]["root@%"] = self._user(project, name, {"name": "root", "host": "%"},
                                                  password=body.get("rootPassword"))
        self.state["instances"][key] = entry

        def created():
            instance["state"] = "RUNNABLE"
            self._refresh(instance)

        def failed():
            self.state["instances"].pop(key, None)

        return self._start(project, name, "CREATE", created, failed)

    def _server_ca(self, project, name):
        digest = hashlib.sha1(("%s/%s" % (project, name)).encode()).hexdigest()  # noqa: S324 - a fingerprint, not security
        return {"kind": "sql#sslCert", "certSerialNumber": "0", "instance": name,
                "cert": "-----BEGIN CERTIFICATE-----\nMIIDfzCCAmegAwIBAgIBADANBgkqhkiG9w0BAQsFADB3MS0wKwYDVQQuEyQ%s\n"
                        "-----END CERTIFICATE-----" % digest[:20],
                "commonName": "C=US,O=Google\\, Inc,CN=Google Cloud SQL Server CA,dnQualifier=%s" % digest[:36],
                "sha1Fingerprint": digest, "createTime": now(), "expirationTime": "2035-01-01T00:00:00Z"}

    @handles("sql.instances.get")
    def get_instance(self, req):
        return deep(self._entry(self._project(req), req["instance"])["instance"])

    @handles("sql.instances.list")
    def list_instances(self, req):
        project = self._project(req)
        items = [deep(e["instance"]) for k, e in sorted(self.state["instances"].items()) if k.split("/")[0] == project]
        page, token = paginate(items, req.get("maxResults"), req.get("pageToken"), default_size=500, max_size=1000)
        body = {"kind": "sql#instancesList"}
        if page:
            body["items"] = page
        if token:
            body["nextPageToken"] = token
        return body

    def _change_instance(self, req, replace):
        project = self._project(req)
        entry = self._entry(project, req["instance"])
        self._not_busy(project, req["instance"])
        instance = entry["instance"]
        body = {k: v for k, v in req.body.items() if k in WRITABLE}
        if body.get("name") not in (None, instance["name"]):
            raise invalid("Invalid request: the instance name in the body (%s) does not match the URL." % body["name"],
                          field="name")
        if body.get("region") not in (None, instance["region"]):
            raise invalid("Invalid request: The region of an instance cannot be changed (%s to %s)."
                          % (instance["region"], body["region"]), field="region")
        version = body.get("databaseVersion") or instance["databaseVersion"]
        if version != instance["databaseVersion"] and (engine(version) != engine(instance["databaseVersion"])
                                                       or major(version) < major(instance["databaseVersion"])):
            raise invalid("Invalid request: databaseVersion can only be upgraded to a later major version of the "
                          "same engine.", field="databaseVersion")
        given = deep(body.get("settings") or {})
        wanted_version = given.pop("settingsVersion", None)
        if wanted_version is not None and str(wanted_version) != instance["settings"]["settingsVersion"]:
            raise ApiError(412, "Precondition check failed: the settings version does not match the instance's "
                           "current settings version (%s)." % instance["settings"]["settingsVersion"],
                           status="FAILED_PRECONDITION", reason="conditionNotMet")
        if replace:
            if not given.get("tier"):
                raise invalid("Invalid request: settings.tier is required.", field="settings.tier")
            given.setdefault("edition", instance["settings"]["edition"])
            settings = given
        else:
            settings = deep(instance["settings"])
            merge(settings, given)
        current = instance["settings"]
        self._check_ssl(given)
        settings = self._settings_defaults(version, settings, given)
        self._check_settings(version, settings, current)
        settings["settingsVersion"] = str(int(current["settingsVersion"]) + 1)
        settings["locationPreference"].setdefault("zone", current["locationPreference"].get("zone"))
        previous_state = instance["state"]
        instance["state"] = "MAINTENANCE"
        restart = version != instance["databaseVersion"] or any(
            settings.get(key) != current.get(key) for key in RESTART_SETTINGS) or \
            settings["ipConfiguration"].get("privateNetwork") != current["ipConfiguration"].get("privateNetwork")

        def applied():
            instance["settings"] = settings
            if version != instance["databaseVersion"]:
                instance["databaseVersion"] = version
                instance["databaseInstalledVersion"] = INSTALLED.get(version, version + "_0")
            instance["state"] = previous_state
            self._refresh(instance)

        def failed():
            instance["state"] = previous_state

        return self._start(project, instance["name"], "UPDATE", applied, failed,
                           kind="sql.instance.patch_restart" if restart else "sql.instance.patch")

    @handles("sql.instances.patch")
    def patch_instance(self, req):
        return self._change_instance(req, replace=False)

    @handles("sql.instances.update")
    def update_instance(self, req):
        return self._change_instance(req, replace=True)

    @handles("sql.instances.delete")
    def delete_instance(self, req):
        project = self._project(req)
        entry = self._entry(project, req["instance"])
        self._not_busy(project, req["instance"])
        instance = entry["instance"]
        if instance["settings"].get("deletionProtectionEnabled"):
            raise invalid("Invalid request: The instance is protected: deletion protection is enabled "
                          "(settings.deletionProtectionEnabled). Disable deletion protection, then delete the instance.",
                          field="settings.deletionProtectionEnabled", reason="invalid")
        previous_state = instance["state"]
        instance["state"] = "PENDING_DELETE"
        key = "%s/%s" % (project, instance["name"])

        def deleted():
            self.state["instances"].pop(key, None)
            self.state["deleted"].append(key)

        def failed():
            instance["state"] = previous_state

        return self._start(project, instance["name"], "DELETE", deleted, failed)

    # ---- databases ------------------------------------------------------------------------------------------
    def _database(self, project, instance, name, charset, collation):
        return {"kind": "sql#database", "name": name, "instance": instance, "project": project,
                "charset": charset, "collation": collation, "etag": uuid.uuid4().hex,
                "selfLink": self.link(project, "instances", instance, "databases", name)}

    def _db_defaults(self, version, body):
        if engine(version) == "POSTGRES":
            charset = body.get("charset") or "UTF8"
            if charset not in PG_ENCODINGS:
                raise invalid("Invalid request: Invalid charset (%s) for PostgreSQL." % charset, field="charset")
            return charset, body.get("collation") or "en_US.UTF8"
        return body.get("charset") or "utf8mb4", body.get("collation") or "utf8mb4_0900_ai_ci"

    @handles("sql.databases.insert")
    def insert_database(self, req):
        project = self._project(req)
        entry = self._entry(project, req["instance"])
        name = req.body.get("name") or ""
        if not DATABASE_NAME.match(name):
            raise invalid("Invalid request: Invalid database name (%s)." % name, field="name")
        if req.body.get("instance") not in (None, req["instance"]):
            raise invalid("Invalid request: the instance in the body does not match the URL.", field="instance")
        self._not_busy(project, req["instance"])
        if name in entry["databases"]:
            raise sql_error(409, "Invalid request: database %s already exists." % name, "databaseAlreadyExists")
        charset, collation = self._db_defaults(entry["instance"]["databaseVersion"], req.body)
        database = self._database(project, req["instance"], name, charset, collation)

        def created():
            entry["databases"][name] = database

        return self._start(project, req["instance"], "CREATE_DATABASE", created)

    def _db(self, req):
        project = self._project(req)
        entry = self._entry(project, req["instance"])
        database = entry["databases"].get(req["database"])
        if database is None:
            raise sql_error(404, "Not Found: database %s does not exist." % req["database"], "notFound")
        return project, entry, database

    @handles("sql.databases.get")
    def get_database(self, req):
        return deep(self._db(req)[2])

    @handles("sql.databases.list")
    def list_databases(self, req):
        project = self._project(req)
        entry = self._entry(project, req["instance"])
        return {"kind": "sql#databasesList", "items": [deep(d) for _n, d in sorted(entry["databases"].items())]}

    def _change_database(self, req, replace):
        project, entry, database = self._db(req)
        self._not_busy(project, req["instance"])
        body = req.body
        if body.get("name") not in (None, database["name"]):
            raise invalid("Invalid request: a database cannot be renamed.", field="name")
        source = {"charset": body.get("charset"), "collation": body.get("collation")}
        if not replace:
            source = {k: v if v is not None else database[k] for k, v in source.items()}
        charset, collation = self._db_defaults(entry["instance"]["databaseVersion"], source)
        if engine(entry["instance"]["databaseVersion"]) == "POSTGRES" and \
                (charset, collation) != (database["charset"], database["collation"]):
            raise invalid("Invalid request: the charset and collation of a PostgreSQL database cannot be changed.",
                          field="charset")
        updated = dict(database, charset=charset, collation=collation, etag=uuid.uuid4().hex)

        def applied():
            entry["databases"][database["name"]] = updated

        return self._start(project, req["instance"], "UPDATE_DATABASE", applied)

    @handles("sql.databases.patch")
    def patch_database(self, req):
        return self._change_database(req, replace=False)

    @handles("sql.databases.update")
    def update_database(self, req):
        return self._change_database(req, replace=True)

    @handles("sql.databases.delete")
    def delete_database(self, req):
        project, entry, database = self._db(req)
        self._not_busy(project, req["instance"])
        if engine(entry["instance"]["databaseVersion"]) == "POSTGRES" and database["name"] == "postgres":
            raise invalid("Invalid request: the system database postgres cannot be deleted.", field="database")

        def deleted():
            entry["databases"].pop(database["name"], None)

        return self._start(project, req["instance"], "DELETE_DATABASE", deleted)

    # ---- users ---------------------------------------------------------------------------------------------
    def _user(self, project, instance, body, password=None):
        user = {"kind": "sql#user", "name": body["name"], "instance": instance, "project": project,
                "etag": uuid.uuid4().hex}
        if body.get("host"):
            user["host"] = body["host"]
        if body.get("type") and body["type"] != "BUILT_IN":
            user["type"] = body["type"]
        for field in ("passwordPolicy", "databaseRoles"):
            if body.get(field):
                user[field] = deep(body[field])
        user["_password"] = password
        return user

    @staticmethod
    def _user_view(user):
        return {k: deep(v) for k, v in user.items() if not k.startswith("_")}

    def _user_host(self, entry, host):
        """Postgres users have no host; MySQL users default to '%'."""
        if engine(entry["instance"]["databaseVersion"]) == "POSTGRES":
            if host:
                raise invalid("Invalid request: PostgreSQL users have no host.", field="host")
            return ""
        return host or "%"

    def _check_user_type(self, entry, body):
        kind = body.get("type") or "BUILT_IN"
        name = body.get("name") or ""
        postgres = engine(entry["instance"]["databaseVersion"]) == "POSTGRES"
        if kind.startswith("CLOUD_IAM"):
            if body.get("password"):
                raise invalid("Invalid request: IAM users authenticate with IAM and take no password.", field="password")
            flags = {f["name"]: f.get("value") for f in entry["instance"]["settings"].get("databaseFlags") or []}
            flag = "cloudsql.iam_authentication" if postgres else "cloudsql_iam_authentication"
            if flags.get(flag) != "on":
                raise invalid("Invalid request: IAM authentication is not enabled for the instance: set the database "
                              "flag %s to on." % flag, field="type")
        if kind == "CLOUD_IAM_SERVICE_ACCOUNT" and postgres:
            if name.endswith(".gserviceaccount.com") or not re.match(r"^[^@]+@[^@]+\.iam$", name):
                raise invalid("Invalid request: for a PostgreSQL IAM service account user, the name is the service "
                              "account email without the .gserviceaccount.com suffix (e.g. sa@project.iam), got %s."
                              % name, field="name")
        elif kind in ("CLOUD_IAM_USER", "CLOUD_IAM_SERVICE_ACCOUNT") and "@" not in name:
            raise invalid("Invalid request: an IAM user is named by its email.", field="name")

    @handles("sql.users.insert")
    def insert_user(self, req):
        project = self._project(req)
        entry = self._entry(project, req["instance"])
        body = req.body
        if not body.get("name"):
            raise invalid("Invalid request: user name is required.", field="name")
        host = self._user_host(entry, body.get("host"))
        self._check_user_type(entry, body)
        self._not_busy(project, req["instance"])
        key = "%s@%s" % (body["name"], host)
        if key in entry["users"]:
            raise sql_error(409, "Invalid request: user %s already exists." % body["name"], "userAlreadyExists")
        user = self._user(project, req["instance"], dict(body, host=host), password=body.get("password"))

        def created():
            entry["users"][key] = user

        return self._start(project, req["instance"], "CREATE_USER", created)

    def _find_user(self, req, name):
        project = self._project(req)
        entry = self._entry(project, req["instance"])
        if not name:
            raise invalid("Invalid request: user name is required.", field="name")
        key = "%s@%s" % (name, self._user_host(entry, req.get("host")))
        user = entry["users"].get(key)
        if user is None:
            raise sql_error(404, "Not Found: user %s does not exist." % name, "notFound")
        return project, entry, key, user

    @handles("sql.users.get")
    def get_user(self, req):
        return self._user_view(self._find_user(req, req["name"])[3])

    @handles("sql.users.list")
    def list_users(self, req):
        project = self._project(req)
        entry = self._entry(project, req["instance"])
        return {"kind": "sql#usersList", "items": [self._user_view(u) for _k, u in sorted(entry["users"].items())]}

    @handles("sql.users.update")
    def update_user(self, req):
        project, _entry, _key, user = self._find_user(req, req.get("name"))
        body = req.body
        if body.get("name") not in (None, user["name"]):
            raise invalid("Invalid request: a user cannot be renamed.", field="name")
        if (body.get("type") or "BUILT_IN") != user.get("type", "BUILT_IN"):
            raise invalid("Invalid request: the type of a user cannot be changed.", field="type")
        if body.get("password") and user.get("type", "BUILT_IN") != "BUILT_IN":
            raise invalid("Invalid request: IAM users take no password.", field="password")
        self._not_busy(project, req["instance"])

        def applied():
            if "password" in body:
                user["_password"] = body["password"]
            for field in ("passwordPolicy", "databaseRoles"):
                if field in body:
                    user[field] = deep(body[field])
            user["etag"] = uuid.uuid4().hex

        return self._start(project, req["instance"], "UPDATE_USER", applied)

    @handles("sql.users.delete")
    def delete_user(self, req):
        project, entry, key, _user = self._find_user(req, req.get("name"))
        self._not_busy(project, req["instance"])

        def deleted():
            entry["users"].pop(key, None)

        return self._start(project, req["instance"], "DELETE_USER", deleted)
