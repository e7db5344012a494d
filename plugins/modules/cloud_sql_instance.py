#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloud_sql_instance
short_description: Manage a Cloud SQL instance
version_added: 0.1.0
description:
  - Create, update or delete a Cloud SQL instance (PostgreSQL, MySQL or SQL Server) through the Cloud SQL
    Admin API v1beta4.
  - Only the options you set are compared with the instance; an update sends only the settings that differ.
  - The region, the database version and the disk type of an instance cannot change in place, and a disk
    cannot shrink. Asking for such a change fails before any write and names the current and requested values.
  - Secure by default. No authorized networks, TLS required (O(ip_configuration.ssl_mode=ENCRYPTED_ONLY)),
    daily backups on, and deletion protection on. Opt out explicitly when you need to.
  - Some changes restart the instance (a short outage). The module then warns and returns
    RV(restart_required=true). They are changes of O(tier), O(edition), O(availability_type),
    O(database_flags) (and O(iam_authentication), which is a flag) and O(ip_configuration.private_network).
    Not every database flag restarts the instance, but the module reports any flag change as a restart.
  - Cloud SQL creates take 5 to 15 minutes and updates that restart the instance several minutes; the default
    O(timeout) of 30 minutes covers them. When the wait times out, the operation goes on in Google Cloud;
    running the module again waits for it (it never starts a second create) and then converges.
  - The password of the default database user is not managed here. Use M(deployml.mlops.cloud_sql_user).
options:
  name:
    description:
      - ID of the instance, without the project.
      - Lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen. The
        project ID, a colon and the name together may hold at most 98 characters.
      - The name of a deleted instance stays reserved for up to a week. Creating an instance with such a name
        fails at once, changes nothing, and says to choose another name (or to wait).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the instance, V(absent) deletes it.
      - Deleting an instance with deletion protection fails. Set O(deletion_protection=false) with
        O(state=present) first, then O(state=absent).
    type: str
    choices: [present, absent]
    default: present
  database_version:
    description:
      - Database engine and version, such as V(POSTGRES_16), V(MYSQL_8_0) or V(SQLSERVER_2022_STANDARD).
      - Required with O(state=present). Set at creation only. A major version upgrade needs planning
        (test it on a clone, take a backup) and is not done by this module. Asking for another version fails.
    type: str
  edition:
    description:
      - Cloud SQL edition. V(ENTERPRISE_PLUS) takes the C(db-perf-optimized-N-*) tiers, V(ENTERPRISE) the
        other tiers (C(db-custom-CPU-RAM), shared-core tiers).
      - When not set, Cloud SQL chooses at creation (V(ENTERPRISE_PLUS) for PostgreSQL 16 and later). Set it
        together with O(tier).
      - A change restarts the instance.
    type: str
    choices: [ENTERPRISE, ENTERPRISE_PLUS]
  tier:
    description:
      - Machine type, such as V(db-custom-1-3840) (1 vCPU, 3840 MB) or V(db-perf-optimized-N-2).
      - For C(db-custom-CPU-RAM), the vCPU count is 1 or an even number up to 96 and the memory, in MB, a
        multiple of 256, at least 3840 and from 0.9 to 6.5 GB per vCPU.
      - Required with O(state=present). A change restarts the instance.
    type: str
  region:
    description:
      - Region of the instance, such as V(europe-west1). Required with O(state=present).
      - Set at creation only. Asking for another region fails.
    type: str
  availability_type:
    description:
      - V(REGIONAL) keeps a standby in another zone (high availability), V(ZONAL) does not.
      - A change restarts the instance.
    type: str
    choices: [ZONAL, REGIONAL]
  disk_size_gb:
    description:
      - Size of the data disk in GB, from 10 to 65536.
      - A disk can grow but never shrink. With automatic storage increase on, a disk that has grown beyond
        this size is left as it is; otherwise a smaller size fails.
    type: int
  disk_type:
    description: Type of the data disk. Set at creation only.
    type: str
    choices: [PD_SSD, PD_HDD]
  disk_autoresize:
    description: Increase the disk size automatically when the disk is nearly full.
    type: bool
  disk_autoresize_limit_gb:
    description:
      - Largest size in GB the automatic storage increase may reach. V(0) means no limit.
    type: int
  backups:
    description:
      - Daily automated backups.
      - When not set, backups are enabled (and their schedule left to Cloud SQL).
    type: dict
    suboptions:
      enabled:
        description: Take a daily backup.
        type: bool
        default: true
      start_time:
        description: Start of the daily backup window, V(HH:MM) in UTC, such as V(03:00).
        type: str
      location:
        description: Region or multi-region where backups are stored, such as V(eu). Cloud SQL chooses when not set.
        type: str
      retained_backups:
        description: Number of automated backups to keep, from 1 to 365.
        type: int
  point_in_time_recovery:
    description:
      - Keep transaction logs to restore the instance to any point in time. Needs backups enabled.
      - On MySQL, this is binary logging.
    type: bool
  transaction_log_retention_days:
    description:
      - Days of transaction logs kept for point-in-time recovery, from 1 to 7 (up to 35 with
        O(edition=ENTERPRISE_PLUS)).
    type: int
  maintenance_window:
    description: When Cloud SQL may restart the instance for maintenance (UTC).
    type: dict
    suboptions:
      day:
        description: Day of the week, V(1) (Monday) to V(7) (Sunday).
        type: int
        required: true
      hour:
        description: Hour of the day, V(0) to V(23).
        type: int
        required: true
      update_track:
        description: How early the instance gets maintenance updates.
        type: str
        choices: [canary, stable, week5]
  database_flags:
    description:
      - The database flags of the instance. When set, these are all its flags; flags not listed are removed
        (reset to their default). V([]) removes them all.
      - Flag values are strings; V(true) and V(false) are sent as V(on) and V(off).
      - Changing flags may restart the instance.
    type: list
    elements: dict
    suboptions:
      name:
        description: Flag name, such as V(max_connections).
        type: str
        required: true
      value:
        description: Flag value. Leave out for a flag that takes no value.
        type: raw
  iam_authentication:
    description:
      - Let IAM principals log in to the database (the C(cloudsql.iam_authentication) flag on PostgreSQL,
        C(cloudsql_iam_authentication) on MySQL). Not available on SQL Server.
      - Without O(database_flags), only this flag is changed and the other flags stay as they are. With
        O(database_flags), it is added to (or checked against) that list.
    type: bool
  ip_configuration:
    description:
      - How clients reach the instance.
      - When not set, the defaults below apply, so an existing instance loses any authorized network and
        gets TLS required.
    type: dict
    suboptions:
      ipv4_enabled:
        description:
          - Give the instance a public IPv4 address. Without authorized networks, it is reachable only
            through the Cloud SQL connectors and Auth Proxy (IAM-authorized, encrypted), as Cloud Run uses it.
          - Cloud SQL enables it at creation when not set.
        type: bool
      authorized_networks:
        description:
          - IPv4 networks (CIDR) allowed to connect to the public address directly. These are all of them;
            networks not listed are removed.
          - Internet (globally routable) networks wider than V(/24), such as V(0.0.0.0/0) or V(8.0.0.0/8), and
            more than 4096 internet addresses in all (sixteen V(/24)), are refused unless
            O(ip_configuration.allow_public_network=true). Private and other non-routable ranges (RFC 1918,
            shared address space, loopback, link-local, documentation ranges) do not count.
          - With O(ip_configuration.ssl_mode=ALLOW_UNENCRYPTED_AND_ENCRYPTED), any internet network makes the
            module warn, as clients could send passwords and data over the internet unencrypted.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: A label for the entry.
            type: str
          value:
            description: The network, such as V(203.0.113.0/24), or one address.
            type: str
            required: true
      allow_public_network:
        description:
          - Allow authorized networks that open the instance to a large part of the internet (see
            O(ip_configuration.authorized_networks)).
        type: bool
        default: false
      ssl_mode:
        description:
          - V(ENCRYPTED_ONLY) accepts only TLS connections. V(TRUSTED_CLIENT_CERTIFICATE_REQUIRED) also
            requires a valid client certificate. V(ALLOW_UNENCRYPTED_AND_ENCRYPTED) accepts unencrypted
            connections as well.
          - The legacy C(requireSsl) field is set to match.
        type: str
        choices: [ALLOW_UNENCRYPTED_AND_ENCRYPTED, ENCRYPTED_ONLY, TRUSTED_CLIENT_CERTIFICATE_REQUIRED]
        default: ENCRYPTED_ONLY
      private_network:
        description:
          - VPC network that reaches the instance on a private IP, as V(projects/PROJECT/global/networks/NAME)
            or its full self link. The network needs private services access.
          - It can change but never be removed. A change restarts the instance.
        type: str
      enable_private_path_for_google_cloud_services:
        description: Let Google services such as BigQuery reach the instance over its private IP.
        type: bool
  deletion_protection:
    description:
      - Refuse to delete the instance (in this module and in every other client).
      - On by default, so that a teardown never drops a database by accident. Set it to V(false) before
        O(state=absent).
    type: bool
    default: true
  labels:
    description:
      - Labels of the instance. When set, these are all its labels; labels not listed are removed.
    type: dict
  timeout:
    description:
      - Seconds to wait for the instance's operations (and to retry requests that fail with HTTP 429, 5xx or
        a connection error).
      - Longer than for other modules because Cloud SQL is slow. A create usually takes 5 to 15 minutes and
        sometimes more, a change that restarts the instance several minutes, a delete a few minutes.
      - When it runs out the operation goes on in Google Cloud; running the module again waits for it and
        then converges.
    type: int
    default: 1800
extends_documentation_fragment:
  - deployml.mlops.gcp
  - deployml.mlops.gcp.attributes
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: PostgreSQL for the MLflow backend store, reached through the Cloud SQL connector only
  deployml.mlops.cloud_sql_instance:
    project: my-project
    name: mlops-pg
    region: europe-west1
    database_version: POSTGRES_16
    edition: ENTERPRISE
    tier: db-custom-1-3840
    availability_type: REGIONAL
    disk_size_gb: 20
    disk_autoresize: true
    backups:
      start_time: "02:00"
      retained_backups: 14
    point_in_time_recovery: true
    transaction_log_retention_days: 7
    maintenance_window: {day: 7, hour: 3, update_track: stable}
    iam_authentication: true
    database_flags:
      - {name: max_connections, value: 200}
    labels:
      app: mlops
  register: sql

- name: Use the connection name (PROJECT:REGION:INSTANCE) for the Cloud Run socket
  ansible.builtin.debug:
    msg: "/cloudsql/{{ sql.connection_name }}"

- name: Lift the protection, then delete a scratch instance
  deployml.mlops.cloud_sql_instance:
    project: my-project
    name: scratch-pg
    region: europe-west1
    database_version: POSTGRES_16
    tier: db-custom-1-3840
    deletion_protection: false

- name: Delete it
  deployml.mlops.cloud_sql_instance:
    project: my-project
    name: scratch-pg
    state: absent
"""

RETURN = r"""
instance:
  description:
    - The instance as the API returns it after the change (the desired body in check mode), empty when absent.
    - It holds no password.
  returned: always
  type: dict
  sample:
    name: mlops-pg
    region: europe-west1
    databaseVersion: POSTGRES_16
    state: RUNNABLE
    connectionName: my-project:europe-west1:mlops-pg
    settings:
      tier: db-custom-1-3840
      edition: ENTERPRISE
      ipConfiguration: {ipv4Enabled: true, sslMode: ENCRYPTED_ONLY, requireSsl: false}
      deletionProtectionEnabled: true
      userLabels: {app: mlops}
connection_name:
  description: The connection name, V(PROJECT:REGION:INSTANCE), used by the Cloud SQL connectors and the Cloud Run socket.
  returned: when O(state=present)
  type: str
  sample: my-project:europe-west1:mlops-pg
ip_addresses:
  description: The addresses of the instance (C(type) V(PRIMARY) is public, V(PRIVATE) private, V(OUTGOING) outgoing).
  returned: when O(state=present)
  type: list
  elements: dict
  sample: [{type: PRIMARY, ipAddress: 203.0.113.10}]
public_ip_address:
  description: The public (V(PRIMARY)) address, or null.
  returned: when O(state=present)
  type: str
  sample: 203.0.113.10
private_ip_address:
  description: The private address, or null.
  returned: when O(state=present)
  type: str
  sample: 10.20.0.3
restart_required:
  description: Whether the change restarts (in check mode, would restart) the instance.
  returned: when O(state=present)
  type: bool
  sample: false
changed_fields:
  description: Fields of the instance that differed and were updated, as paths such as V(settings.tier).
  returned: when an existing instance changed
  type: list
  elements: str
  sample: [settings.tier, settings.userLabels]
"""

import ipaddress
import re

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import REGION, GcpApiError, GcpModule, label_errors
from ansible_collections.deployml.mlops.plugins.module_utils.resource import (
    Exact, Resource, ResourceError, converge, differences, int64, lookup)
from ansible_collections.deployml.mlops.plugins.module_utils.sqladmin import (
    API, instance_path, project_path, wait_pending_operations, wait_sql_operation)

INSTANCE_NAME = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
NAME_LIMIT = 98  # "PROJECT:INSTANCE" at most
DATABASE_VERSION = re.compile(r"^(POSTGRES|MYSQL|SQLSERVER)_[0-9A-Z_]+$")
TIER = re.compile(r"^db-[a-zA-Z0-9-]+$")
CUSTOM_TIER = re.compile(r"^db-custom-(\d+)-(\d+)$")
PERF_OPTIMIZED_TIER = re.compile(r"^db-perf-optimized-N-\d+$")
HOUR_MINUTE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
NETWORK = re.compile(r"^(?:https://(?:www|compute)\.googleapis\.com/compute/(?:v1|beta|alpha)/|/)?"
                     r"(projects/[a-z0-9.:-]+/global/networks/[a-z]([a-z0-9-]*[a-z0-9])?)$")
DISK_MIN_GB = 10
DISK_MAX_GB = 65536
# Authorized networks: an internet network wider than a /24, or more internet addresses than this in all
# (sixteen /24 networks: a few offices), needs allow_public_network.
WIDEST_PUBLIC_PREFIX = 24
PUBLIC_ADDRESS_LIMIT = 4096
# IPv4 ranges that are not reachable from the internet (IANA IPv4 Special-Purpose Address Registry,
# RFC 6890), so authorizing them opens nothing to the internet. Disjoint, so their overlaps with a
# network add up. Written out because the guard counts internet addresses, which ipaddress's is_global (one
# yes or no for a whole network) cannot tell for a network that is part private, part public.
NOT_PUBLIC = tuple(ipaddress.ip_network(block) for block in (
    "0.0.0.0/8",        # this network
    "10.0.0.0/8",       # RFC 1918
    "100.64.0.0/10",    # shared address space (carrier-grade NAT)
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local
    "172.16.0.0/12",    # RFC 1918
    "192.0.0.0/24",     # IETF protocol assignments
    "192.0.2.0/24",     # documentation (TEST-NET-1)
    "192.168.0.0/16",   # RFC 1918
    "198.18.0.0/15",    # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",   # documentation (TEST-NET-3)
    "224.0.0.0/4",      # multicast: never the source of a connection
    "240.0.0.0/4",      # reserved, and the broadcast address
))
BUSY_STATES = ("PENDING_CREATE", "MAINTENANCE", "PENDING_DELETE", "ONLINE_MAINTENANCE")
# Settings whose change restarts the instance (ipConfiguration only when privateNetwork changes).
RESTART_SETTINGS = ("settings.tier", "settings.edition", "settings.availabilityType", "settings.databaseFlags")


def engine(database_version):
    """POSTGRES, MYSQL or SQLSERVER (None when the version is not set)."""
    return database_version.split("_", 1)[0] if database_version else None


def iam_flag_name(database_version):
    """The database flag behind IAM database authentication, None where it does not exist."""
    return {"POSTGRES": "cloudsql.iam_authentication", "MYSQL": "cloudsql_iam_authentication"}.get(
        engine(database_version))


def flag_value(value):
    """A flag value as the API holds it: a string, booleans as on/off, None for a flag without value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def network_path(link):
    """projects/P/global/networks/N from a network path or self link; None when it is neither."""
    match = NETWORK.match(link or "")
    return match.group(1) if match else None


def ssl_fields(ssl_mode, database_version):
    """sslMode and the legacy requireSsl that goes with it (the API refuses a contradicting pair)."""
    if engine(database_version) == "SQLSERVER":
        require = ssl_mode != "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
    else:
        require = ssl_mode == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    return dict(sslMode=ssl_mode, requireSsl=require)


def _tier_errors(tier, edition, database_version):
    errors = []
    if not TIER.match(tier):
        return ["tier %r is not a Cloud SQL machine type such as db-custom-1-3840 or db-perf-optimized-N-2" % tier]
    perf = bool(PERF_OPTIMIZED_TIER.match(tier))
    if edition == "ENTERPRISE_PLUS" and not perf:
        errors.append("edition ENTERPRISE_PLUS takes a db-perf-optimized-N-* tier, not %r" % tier)
    if edition == "ENTERPRISE" and tier.startswith("db-perf-optimized-"):
        errors.append("tier %r belongs to edition ENTERPRISE_PLUS, not ENTERPRISE" % tier)
    custom = CUSTOM_TIER.match(tier)
    if custom and engine(database_version) in ("POSTGRES", "MYSQL"):
        cpus, memory = int(custom.group(1)), int(custom.group(2))
        if cpus != 1 and (cpus % 2 or not 2 <= cpus <= 96):
            errors.append("tier %r: the vCPU count must be 1 or an even number from 2 to 96" % tier)
        elif memory % 256 or memory < 3840 or not 921.6 * cpus <= memory <= 6656 * cpus:
            errors.append("tier %r: the memory must be a multiple of 256 MB, at least 3840 MB, and from 0.9 to "
                          "6.5 GB per vCPU (%d to %d MB for %d vCPU)"
                          % (tier, max(3840, -(-9216 * cpus // 2560) * 256), 6656 * cpus, cpus))
    return errors


def public_addresses(network):
    """How many addresses of an IPv4 network are reachable from the internet."""
    hidden = 0
    for block in NOT_PUBLIC:
        if network.subnet_of(block):
            return 0
        if block.subnet_of(network):
            hidden += block.num_addresses
    return network.num_addresses - hidden


def authorized_networks(ip):
    """The valid IPv4 networks of ip_configuration.authorized_networks (the others are reported as errors)."""
    networks = []
    for entry in ip.get("authorized_networks") or []:
        try:
            network = ipaddress.ip_network(entry["value"], strict=True)
        except ValueError:
            continue
        if network.version == 4:
            networks.append(network)
    return networks


def public_address_count(ip):
    """Internet addresses the authorized networks open the instance to, overlaps counted once."""
    return sum(public_addresses(n) for n in ipaddress.collapse_addresses(authorized_networks(ip)))


def _network_errors(ip):
    errors = []
    seen = set()
    allowed = ip.get("allow_public_network")
    wide = False  # a network already refused for its width: the total would say it again
    for index, entry in enumerate(ip.get("authorized_networks") or []):
        value = entry["value"]
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            errors.append("ip_configuration.authorized_networks[%d]: %r is not an IPv4 network in CIDR notation (%s)"
                          % (index, value, exc))
            continue
        if network.version != 4:
            errors.append("ip_configuration.authorized_networks[%d]: %r: Cloud SQL authorizes IPv4 networks only"
                          % (index, value))
        elif network.prefixlen < WIDEST_PUBLIC_PREFIX and public_addresses(network) and not allowed:
            wide = True
            errors.append("ip_configuration.authorized_networks[%d]: %r opens the instance to a large part of the "
                          "internet (%d addresses; internet networks wider than /%d are refused); connect through "
                          "the Cloud SQL connectors instead, or set ip_configuration.allow_public_network: true to "
                          "allow it" % (index, value, public_addresses(network), WIDEST_PUBLIC_PREFIX))
        if value in seen:
            errors.append("ip_configuration.authorized_networks lists %r twice" % value)
        seen.add(value)
    total = public_address_count(ip)
    if total > PUBLIC_ADDRESS_LIMIT and not allowed and not wide:
        errors.append("ip_configuration.authorized_networks open the instance to %d internet addresses in all, more "
                      "than %d; connect through the Cloud SQL connectors instead, or set "
                      "ip_configuration.allow_public_network: true to allow it" % (total, PUBLIC_ADDRESS_LIMIT))
    private = ip.get("private_network")
    if private is not None and network_path(private) is None:
        errors.append("ip_configuration.private_network %r must be projects/PROJECT/global/networks/NAME or its "
                      "self link (a private network cannot be removed once set)" % private)
    return errors


def _flag_errors(params):
    errors = []
    names = set()
    for index, flag in enumerate(params.get("database_flags") or []):
        name = (flag.get("name") or "").strip()
        if not name:
            errors.append("database_flags[%d] needs a name" % index)
        elif name in names:
            errors.append("database_flags lists %r twice" % name)
        names.add(name)
        if isinstance(flag.get("value"), (dict, list)):
            errors.append("database_flags[%d] (%s): the value must be a string, number or boolean" % (index, name))
    iam = params.get("iam_authentication")
    if iam is not None:
        flag = iam_flag_name(params.get("database_version"))
        if flag is None and params.get("database_version"):
            errors.append("iam_authentication is not available for %s" % params["database_version"])
        listed = next((f for f in params.get("database_flags") or [] if f.get("name") == flag), None)
        if flag and listed is not None and flag_value(listed.get("value")) != ("on" if iam else "off"):
            errors.append("database_flags sets %s to %r but iam_authentication is %s; set one of them"
                          % (flag, listed.get("value"), iam))
    return errors


def _backup_errors(params):
    errors = []
    backups = params.get("backups") or {}
    start = backups.get("start_time")
    if start is not None and not HOUR_MINUTE.match(start):
        errors.append("backups.start_time must be HH:MM in UTC (00:00 to 23:59), got %r" % start)
    kept = backups.get("retained_backups")
    if kept is not None and not 1 <= kept <= 365:
        errors.append("backups.retained_backups must be from 1 to 365, got %d" % kept)
    if backups.get("location") is not None and not backups["location"].strip():
        errors.append("backups.location must not be empty")
    if params.get("point_in_time_recovery") and backups.get("enabled") is False:
        errors.append("point_in_time_recovery needs backups.enabled: true")
    days = params.get("transaction_log_retention_days")
    if days is not None:
        most = 7 if params.get("edition") == "ENTERPRISE" else 35
        if not 1 <= days <= most:
            errors.append("transaction_log_retention_days must be from 1 to %d%s, got %d"
                          % (most, " with edition ENTERPRISE" if most == 7 else "", days))
    return errors


def option_errors(params):
    """Everything wrong with the options, as messages (checked before any API call)."""
    errors = []
    name, project = params["name"], params.get("project") or ""
    if not INSTANCE_NAME.match(name):
        errors.append("name %r must hold lowercase letters, digits and hyphens, start with a letter and not end "
                      "with a hyphen" % name)
    elif len(project) + 1 + len(name) > NAME_LIMIT:
        errors.append("name %r is too long: %s:%s must hold at most %d characters" % (name, project, name, NAME_LIMIT))
    if params.get("state", "present") == "absent":
        return errors
    # required_if counts an option given as null as set: check the values.
    errors += ["%s is required with state: present" % option for option in ("database_version", "region", "tier")
               if params.get(option) is None]
    version = params.get("database_version")
    if version is not None and not DATABASE_VERSION.match(version):
        errors.append("database_version %r must be an engine and version such as POSTGRES_16, MYSQL_8_0 or "
                      "SQLSERVER_2022_STANDARD" % version)
    if params.get("region") is not None and not REGION.match(params["region"]):
        errors.append("region %r must be a Google Cloud region such as europe-west1" % params["region"])
    if params.get("tier") is not None:
        errors += _tier_errors(params["tier"], params.get("edition"), version)
    size = params.get("disk_size_gb")
    if size is not None and not DISK_MIN_GB <= size <= DISK_MAX_GB:
        errors.append("disk_size_gb must be from %d to %d, got %d" % (DISK_MIN_GB, DISK_MAX_GB, size))
    limit = params.get("disk_autoresize_limit_gb")
    if limit is not None:
        if limit < 0:
            errors.append("disk_autoresize_limit_gb must be 0 (no limit) or more, got %d" % limit)
        elif limit and size is not None and limit < size:
            errors.append("disk_autoresize_limit_gb (%d) must not be below disk_size_gb (%d)" % (limit, size))
        if params.get("disk_autoresize") is False and limit:
            errors.append("disk_autoresize_limit_gb applies only with disk_autoresize: true")
    errors += _backup_errors(params)
    window = params.get("maintenance_window")
    if window:
        if not 1 <= window["day"] <= 7:
            errors.append("maintenance_window.day must be from 1 (Monday) to 7 (Sunday), got %d" % window["day"])
        if not 0 <= window["hour"] <= 23:
            errors.append("maintenance_window.hour must be from 0 to 23, got %d" % window["hour"])
    errors += _flag_errors(params)
    errors += _network_errors(params.get("ip_configuration") or {})
    errors += label_errors(params.get("labels"))
    return errors


def _sorted_flags(flags):
    return sorted(flags, key=lambda flag: flag.get("name") or "")


def user_flags(params):
    """The database flags the options ask for (iam_authentication folded in), sorted; None when not set."""
    if params.get("database_flags") is None:
        return None
    flags = {f["name"].strip(): flag_value(f.get("value")) for f in params["database_flags"]}
    name = iam_flag_name(params.get("database_version"))
    if name and params.get("iam_authentication") is not None:
        flags[name] = "on" if params["iam_authentication"] else "off"
    return _sorted_flags([dict(name=k, value=v) if v is not None else dict(name=k) for k, v in flags.items()])


def merge_iam_flag(flags, name, enabled):
    """The instance's flags with IAM authentication turned on or off, the other flags kept.

    Off is the default, so turning it off removes the flag (an explicit "off" is left as it is).
    """
    flags = list(flags or [])
    others = [f for f in flags if f.get("name") != name]
    current = next((f for f in flags if f.get("name") == name), None)
    if enabled:
        return _sorted_flags(others + [dict(name=name, value="on")])
    if current is None or current.get("value") == "off":
        return _sorted_flags(flags)
    return _sorted_flags(others)


def _holding(**fields):
    """The fields that are set, or None when none is (so that the sub-object stays out of the body)."""
    fields = {k: v for k, v in fields.items() if v is not None}
    return fields or None


def build_instance(params):
    """The DatabaseInstance body the options ask for (fields not set are None)."""
    version = params.get("database_version")
    backups = params.get("backups") or {}
    kept = backups.get("retained_backups")
    pitr = params.get("point_in_time_recovery")
    window = params.get("maintenance_window")
    ip = params.get("ip_configuration") or {}
    networks = ip.get("authorized_networks")
    flags = user_flags(params)
    if flags is None and params.get("iam_authentication") and iam_flag_name(version):
        flags = [dict(name=iam_flag_name(version), value="on")]  # merged with the instance's flags on update
    settings = dict(
        tier=params.get("tier"),
        edition=params.get("edition"),
        availabilityType=params.get("availability_type"),
        dataDiskSizeGb=int64(params.get("disk_size_gb")),
        dataDiskType=params.get("disk_type"),
        storageAutoResize=params.get("disk_autoresize"),
        storageAutoResizeLimit=int64(params.get("disk_autoresize_limit_gb")),
        backupConfiguration=_holding(
            enabled=backups.get("enabled"),
            startTime=backups.get("start_time"),
            location=backups.get("location"),
            backupRetentionSettings=None if kept is None else dict(retainedBackups=kept, retentionUnit="COUNT"),
            # MySQL keeps its point-in-time recovery logs as binary logs.
            binaryLogEnabled=pitr if engine(version) == "MYSQL" else None,
            pointInTimeRecoveryEnabled=pitr if engine(version) != "MYSQL" else None,
            transactionLogRetentionDays=params.get("transaction_log_retention_days"),
        ),
        maintenanceWindow=None if not window else _holding(
            day=window["day"], hour=window["hour"], updateTrack=window.get("update_track")),
        databaseFlags=flags,
        ipConfiguration=_holding(
            ipv4Enabled=ip.get("ipv4_enabled"),
            authorizedNetworks=None if networks is None else sorted(
                (_holding(name=n.get("name"), value=n["value"]) for n in networks), key=lambda n: n["value"]),
            privateNetwork=network_path(ip.get("private_network")),
            enablePrivatePathForGoogleCloudServices=ip.get("enable_private_path_for_google_cloud_services"),
            **(ssl_fields(ip["ssl_mode"], version) if ip.get("ssl_mode") else {})
        ),
        deletionProtectionEnabled=params.get("deletion_protection"),
        userLabels=None if params.get("labels") is None else Exact(params["labels"]),
    )
    return dict(name=params["name"], region=params.get("region"), databaseVersion=version, settings=settings)


def normalize_instance(instance):
    """The instance in the shape of the desired body: the lists the API leaves out when empty, sorted lists."""
    instance = dict(instance)
    settings = dict(instance.get("settings") or {})
    settings["databaseFlags"] = _sorted_flags(settings.get("databaseFlags") or [])
    settings.setdefault("userLabels", {})
    ip = dict(settings.get("ipConfiguration") or {})
    ip["authorizedNetworks"] = sorted(ip.get("authorizedNetworks") or [], key=lambda n: n.get("value") or "")
    if ip.get("privateNetwork"):
        ip["privateNetwork"] = network_path(ip["privateNetwork"]) or ip["privateNetwork"]
    settings["ipConfiguration"] = ip
    instance["settings"] = settings
    return instance


def field_names(paths):
    """Changed paths at the granularity of an update: a top-level field, or settings.<field>."""
    names = set()
    for path in paths:
        parts = path.split(".")
        names.add(".".join(parts[:2]) if parts[0] == "settings" and len(parts) > 1 else parts[0])
    return sorted(names)


def _autoresize(actual, desired):
    wanted = lookup(desired, "settings.storageAutoResize")
    return wanted if wanted is not None else lookup(actual, "settings.storageAutoResize") is not False


def grown_by_autoresize(actual, desired):
    """True when the disk is larger than asked for and automatic storage increase is on (nothing to do)."""
    want, have = lookup(desired, "settings.dataDiskSizeGb"), lookup(actual, "settings.dataDiskSizeGb")
    return want is not None and have is not None and int(have) > int(want) and _autoresize(actual, desired)


def refusals(actual, desired, changed_fields):
    """Why the changes cannot be made in place (old and new values named); empty when they can."""
    problems = []
    if "region" in changed_fields:
        problems.append("region is %r, asked for %r: an instance cannot move; create an instance in the new region "
                        "and migrate the data" % (actual.get("region"), desired.get("region")))
    if "databaseVersion" in changed_fields:
        have, want = actual.get("databaseVersion"), desired.get("databaseVersion")
        problems.append("database_version is %r, asked for %r: a major version upgrade needs a planned upgrade "
                        "(test it on a clone, take a backup, then run `gcloud sql instances patch %s "
                        "--database-version=%s`) and is not done by this module; set database_version to the "
                        "version the instance runs" % (have, want, actual.get("name"), want))
    if "settings.dataDiskType" in changed_fields:
        problems.append("disk_type is %r, asked for %r: the disk type is set at creation only"
                        % (lookup(actual, "settings.dataDiskType"), lookup(desired, "settings.dataDiskType")))
    if "settings.dataDiskSizeGb" in changed_fields:
        have, want = lookup(actual, "settings.dataDiskSizeGb"), lookup(desired, "settings.dataDiskSizeGb")
        if have is not None and int(want) < int(have):
            problems.append("disk_size_gb is %s, asked for %s: a disk cannot shrink" % (have, want))
    return problems


def restart_fields(actual, desired, changed_fields):
    """The changed fields that restart the instance."""
    fields = [f for f in changed_fields if f in RESTART_SETTINGS]
    private = lookup(desired, "settings.ipConfiguration.privateNetwork")
    if private is not None and private != lookup(actual, "settings.ipConfiguration.privateNetwork"):
        fields.append("settings.ipConfiguration.privateNetwork")
    return fields


def update_body(raw, desired, changed_fields):
    """The PATCH body: each changed sub-object of settings as desired, the settings version it applies to.

    PATCH merges settings field by field and replaces lists (flags, authorized networks: sent whole); a
    label is removed by sending it as null.
    """
    body, settings = {}, {}
    raw_settings = raw.get("settings") or {}
    for field in changed_fields:
        parts = field.split(".", 1)
        if len(parts) == 1:
            body[field] = desired[field]
            continue
        value = desired["settings"][parts[1]]
        if isinstance(value, Exact):
            value = dict({key: None for key in raw_settings.get(parts[1]) or {}}, **value)
        settings[parts[1]] = value
    if settings:
        if raw_settings.get("settingsVersion"):
            settings["settingsVersion"] = raw_settings["settingsVersion"]
        body["settings"] = settings
    return body


def addresses(instance):
    found = [dict(type=a.get("type"), ipAddress=a.get("ipAddress")) for a in instance.get("ipAddresses") or []]

    def first(kind):
        return next((a["ipAddress"] for a in found if a["type"] == kind), None)

    return dict(ip_addresses=found, public_ip_address=first("PRIMARY"), private_ip_address=first("PRIVATE"))


class Instance(Resource):
    kind = "Cloud SQL instance"
    result_key = "instance"

    def __init__(self, module):
        super().__init__(module)
        self.restart = []
        self.merge_iam = self.params["database_flags"] is None and self.params["iam_authentication"] is not None

    @property
    def name(self):
        return "projects/%s/instances/%s" % (self.params["project"], self.params["name"])

    @property
    def path(self):
        return instance_path(self.params["project"], self.params["name"])

    def validate(self):
        errors = option_errors(self.params)
        if errors:
            raise ResourceError("invalid options for %s %s: %s" % (self.kind, self.name, "; ".join(errors)))
        ip = self.params.get("ip_configuration") or {}
        exposed = public_address_count(ip)
        if exposed and ip.get("ssl_mode") == "ALLOW_UNENCRYPTED_AND_ENCRYPTED":
            self.module.warn("%s %s accepts unencrypted connections and its authorized networks include %d internet "
                             "addresses: passwords and data could cross the internet in clear. Set "
                             "ip_configuration.ssl_mode: ENCRYPTED_ONLY" % (self.kind, self.name, exposed))

    def desired(self):
        return build_instance(self.params)

    def _get(self):
        return self.client.get(API, self.path, resource=self.name)

    def read(self):
        """The instance; when an operation is still running on it (a run that timed out), after that operation."""
        instance = self._get()
        if instance is not None and instance.get("state") in BUSY_STATES:
            wait_pending_operations(self.client, self.params["project"], self.params["name"], resource=self.name)
            instance = self._get()
        if instance is not None and instance.get("state") == "PENDING_DELETE" and self.params["state"] == "absent":
            return None
        return instance

    def normalize(self, actual):
        return normalize_instance(actual)

    def changes(self, actual, desired):
        state = actual.get("state")
        if state in ("FAILED", "PENDING_DELETE"):
            raise ResourceError("%s %s is in state %s and cannot be updated; %s" % (
                self.kind, self.name, state, "delete it (state: absent) and create it again" if state == "FAILED"
                else "it is being deleted; its name stays reserved for up to a week"))
        if self.merge_iam:
            flag = iam_flag_name(desired.get("databaseVersion"))
            settings = desired["settings"]
            merged = merge_iam_flag(lookup(actual, "settings.databaseFlags"), flag, self.params["iam_authentication"])
            if merged == lookup(actual, "settings.databaseFlags"):
                settings.pop("databaseFlags", None)
            else:
                settings["databaseFlags"] = merged
        fields = field_names(differences(desired, actual))
        if "settings.dataDiskSizeGb" in fields and grown_by_autoresize(actual, desired):
            fields.remove("settings.dataDiskSizeGb")
        return fields

    def plan_update(self, actual, desired, changed_fields):
        problems = refusals(actual, desired, changed_fields)
        if problems:
            raise ResourceError("%s %s cannot be changed in place, nothing was changed: %s"
                                % (self.kind, self.name, "; ".join(problems)))
        self.restart = restart_fields(actual, desired, changed_fields)
        if self.restart:
            self.module.warn("%s %s %s restart: changing %s restarts the instance (a short outage)" % (
                self.kind, self.name, "would" if self.module.check_mode else "will", ", ".join(self.restart)))
        return "update"

    def _wait(self, operation):
        return wait_sql_operation(self.client, self.params["project"], operation, resource=self.name)

    def create(self, desired):
        try:
            operation = self.client.request("POST", API, "%s/instances" % project_path(self.params["project"]),
                                            resource=self.name, body=desired)
        except GcpApiError as exc:
            # 409 for a name no instance has: Cloud SQL keeps the name of a deleted instance for up to a week.
            # Not transient on the scale of a run, so fail now with the way out. (A 409 for an instance that
            # exists is a create retried after a lost answer: the caller reads it.)
            if exc.status == 409 and self._get() is None:
                raise ResourceError(
                    "%s %s was not created: the name %s is still reserved, as Cloud SQL keeps the name of a deleted "
                    "instance for up to a week after the deletion (Cloud SQL answered: %s). Nothing was changed. "
                    "Choose another name (with the deployml.mlops roles: the inventory variable "
                    "mlops_cloudsql_instance) and run again, or wait until the week has passed"
                    % (self.kind, self.name, self.params["name"], exc.message)) from None
            raise
        self._wait(operation)
        return self._get()

    def update(self, actual, desired, changed_fields):
        wait_pending_operations(self.client, self.params["project"], self.params["name"], resource=self.name)
        operation = self.client.request("PATCH", API, self.path, resource=self.name,
                                        body=update_body(actual, desired, changed_fields))
        self._wait(operation)
        return self._get()

    def check_delete(self, actual):
        if lookup(actual, "settings.deletionProtectionEnabled"):
            raise ResourceError(
                "%s %s has deletion protection on, so it was not deleted. To delete it, first run this module with "
                "state: present and deletion_protection: false (or `gcloud sql instances patch %s "
                "--no-deletion-protection`), then with state: absent" % (self.kind, self.name, self.params["name"]))

    def delete(self, actual):
        wait_pending_operations(self.client, self.params["project"], self.params["name"], resource=self.name)
        operation = self.client.request("DELETE", API, self.path, resource=self.name, not_found_ok=True)
        if operation is not None:
            self._wait(operation)

    def report(self, result):
        if self.params["state"] == "absent":
            return
        instance = result.get(self.result_key) or {}
        p = self.params
        result["connection_name"] = instance.get("connectionName") or "%s:%s:%s" % (
            p["project"], instance.get("region") or p["region"], p["name"])
        result.update(addresses(instance))
        result["restart_required"] = bool(self.restart) and result.get("changed", False)


def main():
    module = GcpModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            database_version=dict(type="str"),
            edition=dict(type="str", choices=["ENTERPRISE", "ENTERPRISE_PLUS"]),
            tier=dict(type="str"),
            region=dict(type="str"),
            availability_type=dict(type="str", choices=["ZONAL", "REGIONAL"]),
            disk_size_gb=dict(type="int"),
            disk_type=dict(type="str", choices=["PD_SSD", "PD_HDD"]),
            disk_autoresize=dict(type="bool"),
            disk_autoresize_limit_gb=dict(type="int"),
            backups=dict(
                type="dict",
                apply_defaults=True,
                options=dict(
                    enabled=dict(type="bool", default=True),
                    start_time=dict(type="str"),
                    location=dict(type="str"),
                    retained_backups=dict(type="int"),
                ),
            ),
            point_in_time_recovery=dict(type="bool"),
            transaction_log_retention_days=dict(type="int"),
            maintenance_window=dict(
                type="dict",
                options=dict(
                    day=dict(type="int", required=True),
                    hour=dict(type="int", required=True),
                    update_track=dict(type="str", choices=["canary", "stable", "week5"]),
                ),
            ),
            database_flags=dict(
                type="list",
                elements="dict",
                options=dict(
                    name=dict(type="str", required=True),
                    value=dict(type="raw"),
                ),
            ),
            iam_authentication=dict(type="bool"),
            ip_configuration=dict(
                type="dict",
                apply_defaults=True,
                options=dict(
                    ipv4_enabled=dict(type="bool"),
                    authorized_networks=dict(
                        type="list",
                        elements="dict",
                        default=[],
                        options=dict(
                            name=dict(type="str"),
                            value=dict(type="str", required=True),
                        ),
                    ),
                    allow_public_network=dict(type="bool", default=False),
                    ssl_mode=dict(type="str", default="ENCRYPTED_ONLY",
                                  choices=["ALLOW_UNENCRYPTED_AND_ENCRYPTED", "ENCRYPTED_ONLY",
                                           "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"]),
                    private_network=dict(type="str"),
                    enable_private_path_for_google_cloud_services=dict(type="bool"),
                ),
            ),
            deletion_protection=dict(type="bool", default=True),
            labels=dict(type="dict"),
            timeout=dict(type="int", default=1800),
        ),
        required_if=[("state", "present", ("database_version", "region", "tier"))],
    )
    converge(Instance(module))


if __name__ == "__main__":
    main()
