# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Options and attributes of the modules that call an MLflow tracking server."""

    DOCUMENTATION = r"""
options:
  tracking_uri:
    description:
      - The URL of the MLflow tracking server, such as V(https://mlflow-abc123-ew.a.run.app) or
        V(http://127.0.0.1:5000). The module calls its REST API under C(/api/2.0/mlflow).
      - If not set, the value of the E(MLFLOW_TRACKING_URI) environment variable is used. One of the two is required.
    type: str
  username:
    description:
      - The MLflow user, when the server runs MLflow's basic-auth app. Goes with O(password).
      - If not set, the value of the E(MLFLOW_TRACKING_USERNAME) environment variable is used.
    type: str
  password:
    description:
      - The password of O(username).
      - If not set, the value of the E(MLFLOW_TRACKING_PASSWORD) environment variable is used.
    type: str
  google_id_token:
    description:
      - Send a Google-signed ID token for O(id_token_audience), for an MLflow on Cloud Run that requires IAM
        authentication. The caller needs C(roles/run.invoker) on the service.
      - The token comes from Application Default Credentials through google-auth's C(fetch_id_token), from a service
        account key named by E(GOOGLE_APPLICATION_CREDENTIALS), an impersonated account, or the metadata server on
        Google Cloud. A user's C(gcloud) login cannot make one this way; pass O(id_token) instead.
      - Without O(username), the token goes in the C(Authorization) header as a bearer token. With O(username), the
        basic credentials go in C(Authorization) and the token in C(X-Serverless-Authorization), which Cloud Run
        checks instead and does not pass on.
      - Mutually exclusive with O(id_token).
    type: bool
    default: false
  id_token_audience:
    description:
      - The audience of the ID token that O(google_id_token) fetches. Cloud Run expects the service's URL.
      - If not set, the scheme and host of O(tracking_uri).
    type: str
  id_token:
    description:
      - A Google ID token to send as O(google_id_token) would, for example the output of
        C(gcloud auth print-identity-token) for a user who may invoke the MLflow service. Tokens last an hour.
      - Mutually exclusive with O(google_id_token).
    type: str
  timeout:
    description:
      - Seconds to keep retrying a request that fails with HTTP 429, a 5xx status or a connection error.
    type: int
    default: 120
notes:
  - Requests that fail with HTTP 429, 5xx or a connection error are retried with jittered exponential backoff until
    O(timeout) runs out. A refused request (401, 403) is not retried; the message says whether MLflow's basic-auth
    or the IAM check in front of it refused, and what to set.
  - These modules are not part of the C(group/deployml.mlops.gcp) action group; set their common options with
    C(module_defaults) for each module, or with the E(MLFLOW_TRACKING_*) environment variables.
requirements:
  - python >= 3.9
  - requests
  - google-auth >= 2.40 (with O(google_id_token) only)
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying the model.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode).
    support: full
  idempotent:
    description: A second run with the same options reports no change and makes no write call.
    support: full
"""
