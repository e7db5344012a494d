"""How long Google Cloud takes, in seconds of Google time, per kind of long-running operation.

With fake.realism.timed_operations on, an operation of kind K finishes fake.realism.seconds(DURATIONS[K])
real seconds after it started, whether or not anyone polls it. Each figure is a typical duration seen on
real projects (not a worst case: a module's timeout must cover more than these), with where it comes from;
"estimate" marks a figure no public source pins down.

Every operation the fake starts names its kind (fake.operations.start(..., kind=...)); an unknown kind is a
bug in the fake and fails loudly.
"""

from __future__ import annotations

DURATIONS = {
    # ---- Cloud SQL Admin (sql#operation) -----------------------------------------------------------------
    # "Creation complete after 11m11s" (steampipe-plugin-gcp PR #161 test log); "5 to 15 minutes" is what
    # the module documents; 15-20 min "is normal for this resource" (terraform-provider-google #14770);
    # db-f1-micro ~25 min (terraform-google-sql-db PR #425).
    "sql.instance.create": 660,
    # A settings change that restarts the instance (tier, edition, flags, HA): "a few minutes" of downtime
    # (Cloud SQL docs, "Edit instances": changes that restart the instance). Estimate within that.
    "sql.instance.patch_restart": 180,
    # A change applied online (labels, backups, maintenance window, authorized networks). Estimate.
    "sql.instance.patch": 20,
    # "Still destroying... (2m0s elapsed)" and on (terraform-provider-google #2309).
    "sql.instance.delete": 150,
    # google_sql_user "Creation complete after 8s" (steampipe-plugin-gcp PR #161); a CREATE_USER
    # sql#operation from insertTime to endTime in under 1 s (terraform-provider-google #9723).
    "sql.user": 5,
    # Databases are created inside the running server like users. Estimate.
    "sql.database": 8,
    # ---- Cloud Build -------------------------------------------------------------------------------------
    # Time a build waits in QUEUED before a worker picks it up (default pool, no contention). Estimate;
    # queueTtl defaults to 3600 s (Cloud Build docs, build config schema "queueTtl").
    "cloudbuild.queue": 10,
    # WORKING -> SUCCESS of a docker build + push of a small Python image (fetch source, pull base image,
    # pip install, push). Estimate; Cloud Build's default build timeout is 600 s (docs, "timeout").
    "cloudbuild.build": 150,
    # ---- Cloud Run Admin v2 ------------------------------------------------------------------------------
    # A service create or an update that rolls out a revision: image pull, container start, startup probe,
    # traffic switch; "a revision: tens of seconds" (issue 10), "from 10 seconds to a few minutes"
    # (cloud_run_service module docs). Estimate within that.
    "run.service.rollout": 30,
    # An update that changes no template (traffic, IAM-less metadata) or nothing at all. Estimate.
    "run.service.update": 5,
    "run.service.delete": 10,  # estimate
    # Jobs store a template and start nothing until run. Estimate.
    "run.job.create": 5,
    "run.job.update": 5,
    "run.job.delete": 5,
    # One execution: cold start of the task container plus the task itself (the mlflow schema migration,
    # the drift job's BigQuery queries). Estimate.
    "run.job.execution": 60,
    "run.execution.cancel": 5,  # estimate
    # ---- Artifact Registry -------------------------------------------------------------------------------
    "artifactregistry.repository.create": 10,  # estimate
    "artifactregistry.repository.delete": 10,  # estimate
    # ---- Service Usage -----------------------------------------------------------------------------------
    # google_project_service "Still creating... [50s elapsed]" while enabling run, sqladmin, iam ...
    # (google/exposure-notifications-verification-server #498); enabling APIs took "5-15 minutes"
    # sequentially, "2-5 minutes" in parallel for a dozen APIs (jarokaz/mlops-labs PR #1).
    "serviceusage.enable": 45,
    "serviceusage.disable": 30,  # estimate
    # ---- Propagation delays (not operations: how long a change takes to be seen everywhere) ---------------
    # An API whose enable operation is done still answers 403 SERVICE_DISABLED for a while: Google's own
    # message says "If you enabled this API recently, wait a few minutes for the action to propagate to our
    # systems" (hashicorp/terraform-provider-google #11023, #8214). Estimate within "a few minutes".
    "serviceusage.propagation": 60,
    # A new service account is refused in setIamPolicy, 400 "Service account X does not exist.", for up to a
    # minute or two (issue 10; IAM docs: reads are eventually consistent, retry with backoff).
    "iam.serviceaccount.member": 60,
    # A GET of a new service account may 404 (or 403) right after create: magic-modules #6053 (re-poll on
    # 404), #10813 (a 10 s sleep), #8815/#11811 (403 too), #14447 (wait for 3 consecutive successful GETs).
    "iam.serviceaccount.get": 10,
    # A role granted in setIamPolicy counts in permission checks only after a while: "typically within 2
    # minutes ... in some cases 7 minutes or more" (IAM docs, "Access change propagation"). The typical figure.
    "iam.grant.propagation": 120,
}


def duration(kind):
    """Seconds of Google time an operation of this kind takes; KeyError names the unknown kind."""
    try:
        return DURATIONS[kind]
    except KeyError:
        raise KeyError("no duration for operation kind %r in fakegcp/durations.py (known: %s)"
                       % (kind, ", ".join(sorted(DURATIONS)))) from None
