# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Options shared by cloud_run_service and cloud_run_job: the resource and its container."""

    DOCUMENTATION = r"""
options:
  location:
    description:
      - Region of the service or job, such as V(europe-west1).
    type: str
    required: true
    aliases: [region]
  state:
    description:
      - V(present) creates or updates the service or job, V(absent) deletes it with all its revisions (a service)
        or executions (a job).
    type: str
    choices: [present, absent]
    default: present
  image:
    description:
      - The container image, such as V(europe-west1-docker.pkg.dev/PROJECT/REPO/IMAGE@sha256:DIGEST).
        Deploying by digest makes every new image a new revision of a service, and a change of a job.
      - Required with O(state=present).
    type: str
  command:
    description:
      - The entrypoint, instead of the image's C(ENTRYPOINT). Not run in a shell.
    type: list
    elements: str
  args:
    description:
      - Arguments to the entrypoint, instead of the image's C(CMD).
    type: list
    elements: str
  env:
    description:
      - Plain environment variables, name to value. When set, these are all the plain variables; others are
        removed. Variables from O(secret_env) are not affected.
      - Values are strings; quote booleans and floats. Names that Cloud Run sets are reserved, such as V(PORT)
        and V(K_SERVICE) for a service and V(CLOUD_RUN_TASK_INDEX) for a job.
      - Do not put secrets here; use O(secret_env). A name that looks like a secret's (holding PASSWORD, SECRET,
        TOKEN, CREDENTIAL, or KEY as a word, and not ending in a word such as FILE, PATH, NAME or ID) gives a
        warning, since plain values are shown in task results and diffs.
    type: dict
  secret_env:
    description:
      - Environment variables read from Secret Manager when an instance of the service or a task of the job
        starts, name to C({secret, version}). C(secret) is a secret ID of the project or
        V(projects/PROJECT/secrets/ID); C(version) is V(latest) (the default), a version number or an alias.
      - When set, these are all the secret variables; others are removed. Plain variables from O(env) are
        not affected.
      - The service account of the service or job needs C(roles/secretmanager.secretAccessor) on each secret.
      - This holds references to secrets, never their values.
    type: dict
  cpu:
    description:
      - CPU limit of an instance of the service or a task of the job, such as V(1), V(2), V(4), V(6), V(8), or
        a fraction below one such as V(0.5) or V(500m).
    type: str
  memory:
    description:
      - Memory limit of an instance of the service or a task of the job, with binary units, such as V(512Mi) or
        V(2Gi), from V(128Mi) to V(32Gi) (V(512Mi) at least with O(execution_environment=gen2)). More than 4Gi
        needs more than one CPU.
    type: str
  service_account:
    description:
      - The identity of the service or of the job's tasks, as an email or an account ID of the project
        (V(mlflow) becomes V(mlflow@PROJECT.iam.gserviceaccount.com)). The account must exist.
      - Cloud Run uses the Compute Engine default service account when not set; give each service or job its own
        account with only the roles it needs.
    type: str
  execution_environment:
    description:
      - V(gen1) or V(gen2) sandbox. When not set Cloud Run chooses from the features used (a Cloud Storage
        volume, for example, runs on V(gen2)); jobs always run on V(gen2).
    type: str
    choices: [gen1, gen2]
  cloudsql_instances:
    description:
      - Cloud SQL instances to connect to, as connection names V(PROJECT:REGION:INSTANCE). Their sockets appear
        under C(/cloudsql/PROJECT:REGION:INSTANCE) (a volume named C(cloudsql)).
      - When set, these are all the instances; V([]) removes the connections. Other volumes are not affected.
      - The service account needs C(roles/cloudsql.client).
    type: list
    elements: str
  volumes:
    description:
      - Volumes mounted into the container, each with exactly one of O(volumes[].secret), O(volumes[].gcs) or
        O(volumes[].in_memory).
      - When set, these are all the volumes apart from the Cloud SQL one (O(cloudsql_instances)); others are
        removed. V([]) removes them all.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the volume, lowercase letters, digits and hyphens.
        type: str
        required: true
      mount_path:
        description: Absolute path where the volume appears in the container.
        type: str
        required: true
      secret:
        description:
          - A Secret Manager secret as a file (read-only). Without O(volumes[].secret.path) and
            O(volumes[].secret.version), the file is named after the secret and holds its latest version.
          - This holds a reference to a secret, never its value.
        type: dict
        suboptions:
          secret:
            description: Secret ID of the project, or V(projects/PROJECT/secrets/ID).
            type: str
            required: true
          version:
            description: V(latest) (the default), a version number or an alias.
            type: str
          path:
            description: File name of the secret, relative to O(volumes[].mount_path). Defaults to the secret ID.
            type: str
      gcs:
        description: A Cloud Storage bucket (Cloud Storage FUSE).
        type: dict
        suboptions:
          bucket:
            description: Name of the bucket.
            type: str
            required: true
          read_only:
            description: Mount the bucket read-only.
            type: bool
            default: false
      in_memory:
        description: An in-memory volume (counts against the memory limit), emptied when the instance or task stops.
        type: dict
        suboptions:
          size_limit:
            description: Most memory the volume may take, such as V(256Mi). No limit when not set.
            type: str
  labels:
    description:
      - Labels of the service or job. When set, these are all its labels; labels not listed are removed.
      - Changing the labels of a service does not create a revision.
    type: dict
"""
