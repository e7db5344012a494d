# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the preflight checks against, kept in one place: the regions the pipeline can run in, the list prices
of what it deploys, the monthly estimate made from them, and the table the findings are printed as.

Pure functions (no requests), so the figures are unit-tested; plugins/modules/project_preflight.py does the
API calls.
"""

from __future__ import annotations

import re

from ansible_collections.deployml.mlops.plugins.module_utils.bigquery import TYPES, canonical_type, schema_errors

# ---- regions -----------------------------------------------------------------------------------------------
# The pipeline needs Cloud Run (services and jobs) and Cloud SQL in its one region. As documented on
# 2026-12-03: https://cloud.google.com/run/docs/locations (Tier 1 and Tier 2 lists) and
# https://cloud.google.com/sql/docs/postgres/locations with
# https://cloud.google.com/sql/docs/postgres/region-availability-overview. A region Google adds is added here.
REGIONS_AS_OF = "2026-12-03"
CLOUD_RUN_REGIONS = frozenset((
    # Tier 1
    "asia-east1", "asia-northeast1", "asia-northeast2", "europe-north1", "europe-southwest1", "europe-west1",
    "europe-west4", "europe-west8", "europe-west9", "me-west1", "us-central1", "us-east1", "us-east4", "us-east5",
    "us-south1", "us-west1",
    # Tier 2
    "africa-south1", "asia-east2", "asia-northeast3", "asia-southeast1", "asia-southeast2", "asia-south1",
    "asia-south2", "australia-southeast1", "australia-southeast2", "europe-central2", "europe-west10",
    "europe-west12", "europe-west2", "europe-west3", "europe-west6", "me-central1", "me-central2",
    "northamerica-northeast1", "northamerica-northeast2", "southamerica-east1", "southamerica-west1", "us-west2",
    "us-west3", "us-west4",
))
CLOUD_SQL_REGIONS = frozenset((
    "africa-south1",
    "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3", "asia-south1",
    "asia-south2", "asia-southeast1", "asia-southeast2",
    "australia-southeast1", "australia-southeast2",
    "europe-central2", "europe-north1", "europe-north2", "europe-southwest1", "europe-west1", "europe-west2",
    "europe-west3", "europe-west4", "europe-west6", "europe-west8", "europe-west9", "europe-west10",
    "europe-west12",
    "me-central1", "me-central2", "me-west1",
    "northamerica-northeast1", "northamerica-northeast2", "northamerica-south1",
    "southamerica-east1", "southamerica-west1",
    "us-central1", "us-central2", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1", "us-west2",
    "us-west3", "us-west4",
))
PIPELINE_REGIONS = CLOUD_RUN_REGIONS & CLOUD_SQL_REGIONS

# ---- prices ------------------------------------------------------------------------------------------------
# List prices in USD, us-central1 / europe-west1 (Cloud Run Tier 1), before free tiers, committed-use or
# negotiated discounts, taxes and network traffic. Other regions cost up to ~40% more.
PRICES_AS_OF = "2026-12-03"
PRICE_SOURCES = (
    "https://cloud.google.com/sql/pricing",
    "https://cloud.google.com/run/pricing",
    "https://cloud.google.com/storage/pricing",
    "https://cloud.google.com/artifact-registry/pricing",
    "https://cloud.google.com/bigquery/pricing",
    "https://cloud.google.com/secret-manager/pricing",
    "https://cloud.google.com/scheduler/pricing",
)
PRICES = {
    # Cloud SQL Enterprise edition, dedicated core: per vCPU-hour and per GB-hour of memory; a REGIONAL
    # (high availability) instance is billed twice (the standby), storage included.
    "cloudsql_vcpu_hour": 0.0413,
    "cloudsql_memory_gb_hour": 0.0070,
    # Shared-core tiers, per hour.
    "cloudsql_shared_core_hour": {"db-f1-micro": 0.0105, "db-g1-small": 0.0350},
    "cloudsql_ssd_gb_month": 0.17,
    "cloudsql_backup_gb_month": 0.08,
    # Cloud Run, request-based billing (the collection's default, cpu_idle: true): a minimum instance that
    # serves no request is billed at the idle rate the whole month.
    "run_idle_vcpu_second": 0.0000025,
    "run_idle_gib_second": 0.0000025,
    # Cloud Storage Standard, regional bucket, per GB-month.
    "gcs_standard_gb_month": 0.020,
    # Artifact Registry storage, per GB-month (the first 0.5 GB of a billing account is free).
    "artifact_registry_gb_month": 0.10,
    # BigQuery active logical storage, per GB-month (the first 10 GB of a billing account are free).
    "bigquery_storage_gb_month": 0.02,
    # Secret Manager: per active secret version per month; Cloud Scheduler: per job per month.
    "secret_version_month": 0.06,
    "scheduler_job_month": 0.10,
}
HOURS_PER_MONTH = 730
# Data volumes the pipeline's settings do not determine: a small team's first months. Override with the
# preflight's cost.storage_gb.
ASSUMED_STORAGE_GB = {"mlflow_artifacts": 5, "build_sources": 1, "artifact_registry": 5, "bigquery": 10}

CUSTOM_TIER = re.compile(r"^db-custom-(\d+)-(\d+)$")
# Legacy predefined tiers: vCPUs and GB of memory per vCPU.
N1_TIER = re.compile(r"^db-n1-(standard|highmem)-(\d+)$")
N1_MEMORY_PER_VCPU = {"standard": 3.75, "highmem": 6.5}
QUANTITY = re.compile(r"^([0-9]*\.?[0-9]+)\s*([A-Za-z]*)$")
MEMORY_UNITS = {"": 1.0 / 2 ** 30, "k": 1e3 / 2 ** 30, "Ki": 1.0 / 2 ** 20, "M": 1e6 / 2 ** 30, "Mi": 1.0 / 2 ** 10,
                "G": 1e9 / 2 ** 30, "Gi": 1.0, "T": 1e12 / 2 ** 30, "Ti": 2.0 ** 10}


def sql_tier_shape(tier):
    """(vCPUs, memory GB) of a dedicated-core Cloud SQL tier, ('shared', None) for a shared-core one, or None."""
    tier = (tier or "").strip()
    if tier in PRICES["cloudsql_shared_core_hour"]:
        return "shared", None
    match = CUSTOM_TIER.match(tier)
    if match:
        return int(match.group(1)), int(match.group(2)) / 1024.0
    match = N1_TIER.match(tier)
    if match:
        vcpus = int(match.group(2))
        return vcpus, vcpus * N1_MEMORY_PER_VCPU[match.group(1)]
    return None


def cpu_count(value):
    """vCPUs of a Cloud Run cpu setting ("1", "2", "500m", 1.0)."""
    text = str(value).strip()
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


def memory_gib(value):
    """GiB of a Kubernetes-style memory quantity ("512Mi", "1Gi", "2G")."""
    match = QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in MEMORY_UNITS:
        raise ValueError("memory %r is not a quantity such as 512Mi or 2Gi" % (value,))
    return float(match.group(1)) * MEMORY_UNITS[match.group(2)]


def monthly_estimate(cost):
    """The monthly list price of the inventory's settings: {items: [{item, basis, usd}], total_usd, notes}.

    cost: cloudsql {tier, edition, availability_type, disk_size_gb, backups} (None: no instance),
    cloud_run [{name, cpu, memory, min_instances}], storage_gb {mlflow_artifacts, build_sources,
    artifact_registry, bigquery} (missing keys: ASSUMED_STORAGE_GB), secrets (count), scheduler_jobs (count).
    """
    p = PRICES
    items, notes = [], []

    def add(item, basis, usd):
        items.append(dict(item=item, basis=basis, usd=round(usd, 2)))

    sql = cost.get("cloudsql")
    if sql:
        ha = str(sql.get("availability_type") or "ZONAL").upper() == "REGIONAL"
        copies = 2 if ha else 1
        shape = sql_tier_shape(sql.get("tier"))
        edition = str(sql.get("edition") or "ENTERPRISE").upper()
        where = "%s%s" % (sql.get("tier"), ", high availability (x2)" if ha else "")
        if edition != "ENTERPRISE" or shape is None:
            notes.append("Cloud SQL tier %s (%s edition) is not in the price table: not estimated"
                         % (sql.get("tier"), edition))
        elif shape[0] == "shared":
            add("Cloud SQL instance", where, copies * p["cloudsql_shared_core_hour"][sql["tier"]] * HOURS_PER_MONTH)
        else:
            vcpus, memory = shape
            hourly = vcpus * p["cloudsql_vcpu_hour"] + memory * p["cloudsql_memory_gb_hour"]
            add("Cloud SQL instance", "%s: %d vCPU, %.2f GB%s" % (sql["tier"], vcpus, memory, ", x2 standby" if ha else ""),
                copies * hourly * HOURS_PER_MONTH)
        disk = float(sql.get("disk_size_gb") or 10)
        add("Cloud SQL SSD storage", "%g GB%s" % (disk, " x2 (standby)" if ha else ""),
            copies * disk * p["cloudsql_ssd_gb_month"])
        if sql.get("backups"):
            add("Cloud SQL backups", "about %g GB (the disk size)" % disk, disk * p["cloudsql_backup_gb_month"])

    seconds = HOURS_PER_MONTH * 3600
    for service in cost.get("cloud_run") or []:
        count = int(service.get("min_instances") or 0)
        vcpus, gib = cpu_count(service.get("cpu") or 1), memory_gib(service.get("memory") or "512Mi")
        usd = count * seconds * (vcpus * p["run_idle_vcpu_second"] + gib * p["run_idle_gib_second"])
        basis = "%d min instance(s) x %g vCPU, %g GiB, idle rate" % (count, vcpus, gib) if count else \
            "no min instances: billed per request"
        add("Cloud Run %s" % service.get("name"), basis, usd)

    storage = dict(ASSUMED_STORAGE_GB, **(cost.get("storage_gb") or {}))
    buckets_gb = storage["mlflow_artifacts"] + storage["build_sources"]
    add("Cloud Storage buckets", "%g GB assumed (MLflow artifacts, build sources)" % buckets_gb,
        buckets_gb * p["gcs_standard_gb_month"])
    add("Artifact Registry images", "%g GB assumed" % storage["artifact_registry"],
        storage["artifact_registry"] * p["artifact_registry_gb_month"])
    add("BigQuery storage", "%g GB assumed" % storage["bigquery"], storage["bigquery"] * p["bigquery_storage_gb_month"])
    if cost.get("secrets"):
        add("Secret Manager", "%d secret versions" % cost["secrets"], cost["secrets"] * p["secret_version_month"])
    if cost.get("scheduler_jobs"):
        add("Cloud Scheduler", "%d job(s)" % cost["scheduler_jobs"], cost["scheduler_jobs"] * p["scheduler_job_month"])
    notes.append("requests, queries, builds and network traffic are billed by use and not included")
    return dict(items=items, total_usd=round(sum(i["usd"] for i in items), 2), notes=notes,
                as_of=PRICES_AS_OF, sources=list(PRICE_SOURCES),
                basis="list price, us-central1/europe-west1, as of %s, before free tiers"
                % PRICES_AS_OF)


# ---- feature schema ----------------------------------------------------------------------------------------
# The drift job compares numeric features by distribution and STRING/BOOLEAN ones as categories
# (roles/monitoring/files/drift_job/job.py TYPE_KINDS); the label is a number (regression) or a class.
FEATURE_TYPES = ("INTEGER", "FLOAT", "NUMERIC", "BIGNUMERIC", "STRING", "BOOLEAN")


# What a feature or the label declares beyond its column, for the serving API and the drift job (the bigquery role
# leaves these out of the schema).
FEATURE_DECLARATIONS = ("categories", "unknown")
LABEL_DECLARATIONS = ("task", "positive_class", "classes")
TASKS = ("regression", "classification", "auto")


def declaration_errors(kind, column):
    """Problems with a column's declarations: the label's task and classes, a feature's categories."""
    name, errors = column.get("name"), []
    if kind == "feature":
        categories = column.get("categories")
        if categories is not None and (not isinstance(categories, list) or not categories
                                       or len(set(map(str, categories))) != len(categories)):
            errors.append("feature %s: categories must be a non-empty list of distinct values" % name)
        if column.get("unknown", "refuse") not in ("refuse", "allow"):
            errors.append("feature %s: unknown must be refuse or allow, not %r" % (name, column["unknown"]))
        return errors
    task, classes, positive = column.get("task", "auto"), column.get("classes"), column.get("positive_class")
    if task not in TASKS:
        errors.append("label %s: task must be one of %s, not %r" % (name, ", ".join(TASKS), task))
    if classes is not None and (not isinstance(classes, list) or len(classes) < 2
                                or len(set(map(str, classes))) != len(classes)):
        errors.append("label %s: classes must be a list of at least two distinct values" % name)
    if task == "regression" and (classes is not None or positive is not None):
        errors.append("label %s: a regression has no classes or positive_class" % name)
    if positive is not None and isinstance(classes, list) and str(positive) not in map(str, classes):
        errors.append("label %s: positive_class %r is not one of the classes" % (name, positive))
    return errors


def feature_schema_errors(features, label, reserved_columns=()):
    """Problems with the inventory's feature and label columns of offline_features, as messages."""
    errors = []
    if not isinstance(features, list) or not features:
        errors.append("mlops_features must be a non-empty list of columns ({name, type, description})")
        features = []
    errors += ["feature #%d is not a mapping with name, type and description" % (i + 1)
               for i, f in enumerate(features) if not isinstance(f, dict)]
    columns = [("feature", f) for f in features if isinstance(f, dict)]
    if not isinstance(label, dict) or not label.get("name") or not label.get("type"):
        errors.append("mlops_label must be a column with a name and a type")
    else:
        columns.append(("label", label))
    # Names, BigQuery types, modes, duplicates (case-insensitive) and unknown keys, as bigquery_table checks them;
    # then what the columns declare beyond that.
    declared = {"feature": FEATURE_DECLARATIONS, "label": LABEL_DECLARATIONS}
    errors += schema_errors([{k: v for k, v in column.items() if k not in declared[kind]} for kind, column in columns])
    for kind, column in columns:
        errors += declaration_errors(kind, column)
    reserved = {name.lower(): name for name in reserved_columns}
    for kind, column in columns:
        name, column_type = column.get("name"), canonical_type(column.get("type"))
        if isinstance(name, str) and name.lower() in reserved:
            errors.append("%s %s: offline_features already has a column %s" % (kind, name, reserved[name.lower()]))
        if column_type in TYPES and column_type not in FEATURE_TYPES:
            errors.append("%s %s: type %s cannot be compared by the drift job (use one of %s)"
                          % (kind, name, column_type, ", ".join(FEATURE_TYPES)))
        if str(column.get("mode") or "NULLABLE").upper() == "REPEATED":
            errors.append("%s %s: a REPEATED column cannot be a %s" % (kind, name, kind))
        if kind == "feature" and not column.get("description"):
            errors.append("feature %s: add a description (BigQuery and Grafana show it)" % name)
    return errors


# ---- the table ----------------------------------------------------------------------------------------------
STATUS_ORDER = {"missing": 0, "error": 0, "warning": 1, "ok": 2, "skipped": 3}


def _wrap(text, width):
    """Lines of at most width characters, broken at spaces (a longer word stays whole)."""
    lines, line = [], ""
    for word in str(text).split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = "%s %s" % (line, word) if line else word
    return lines + [line] if line else lines or [""]


def render(title, findings, estimate=None, width=110):
    """The findings (and the cost estimate) as one text table: one row per finding, its fix on the lines below."""
    rows = sorted(findings, key=lambda f: STATUS_ORDER.get(f["status"], 9))
    check_width = max([len("CHECK")] + [len(f["check"]) for f in rows])
    status_width = len("MISSING")
    detail_width = max(40, width - check_width - status_width - 4)
    lines = [title, "%-*s  %-*s  %s" % (check_width, "CHECK", status_width, "STATUS", "DETAIL / FIX"),
             "-" * width]
    for finding in rows:
        detail = _wrap(finding["detail"], detail_width)
        lines.append("%-*s  %-*s  %s" % (check_width, finding["check"], status_width, finding["status"].upper(),
                                         detail[0]))
        indent = " " * (check_width + status_width + 4)
        lines += [indent + more for more in detail[1:]]
        for fix in finding.get("fix") or []:
            # A command stays on one line (to be copied whole); advice is wrapped like the detail.
            fix_lines = [fix] if fix.startswith("gcloud ") else _wrap(fix, detail_width - 5)
            lines.append(indent + "fix: " + fix_lines[0])
            lines += [indent + "     " + more for more in fix_lines[1:]]
    if estimate:
        lines += ["", "Monthly cost estimate: %s" % estimate["basis"]]
        item_width = max(len(i["item"]) for i in estimate["items"]) if estimate["items"] else 10
        for item in estimate["items"]:
            lines.append("  %-*s  %10s  %s" % (item_width, item["item"], "$%.2f" % item["usd"], item["basis"]))
        lines.append("  %-*s  %10s" % (item_width, "Total", "$%.2f" % estimate["total_usd"]))
        lines += ["  (%s)" % note for note in estimate["notes"]]
        lines.append("  Prices: " + estimate["sources"][0])
        lines += ["          " + source for source in estimate["sources"][1:]]
    return lines
