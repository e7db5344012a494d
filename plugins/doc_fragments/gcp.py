# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Options and attributes shared by every GCP module of the collection."""

    DOCUMENTATION = r"""
options:
  project:
    description:
      - The Google Cloud project ID that owns the resource.
      - If not set, the value of the E(GCP_PROJECT), E(GOOGLE_CLOUD_PROJECT) or E(CLOUDSDK_CORE_PROJECT)
        environment variable is used, in that order.
    type: str
  auth_kind:
    description:
      - How to obtain credentials.
      - V(application) uses Application Default Credentials (E(GOOGLE_APPLICATION_CREDENTIALS), the gcloud
        user login, or the metadata server of a Google compute environment).
      - V(serviceaccount) reads a service account key from O(service_account_file) or O(service_account_contents).
      - V(accesstoken) uses the OAuth2 token in O(access_token).
      - V(anonymous) sends no credentials. It is meant for local emulators and stand-ins only, together with
        O(api_endpoints).
      - If not set, the value of the E(GCP_AUTH_KIND) environment variable is used, then V(application).
    type: str
    choices: [application, serviceaccount, accesstoken, anonymous]
  service_account_file:
    description:
      - Path to a service account JSON key file, used when O(auth_kind=serviceaccount).
      - If not set, the value of the E(GCP_SERVICE_ACCOUNT_FILE) environment variable is used.
    type: path
  service_account_contents:
    description:
      - The content of a service account JSON key, used when O(auth_kind=serviceaccount).
      - If not set, the value of the E(GCP_SERVICE_ACCOUNT_CONTENTS) environment variable is used.
    type: jsonarg
  access_token:
    description:
      - An OAuth2 access token, used when O(auth_kind=accesstoken).
      - If not set, the value of the E(GCP_ACCESS_TOKEN) environment variable is used.
    type: str
  scopes:
    description:
      - OAuth2 scopes requested for the credentials.
      - If not set, the value of the E(GCP_SCOPES) environment variable (comma separated) is used, then
        V(https://www.googleapis.com/auth/cloud-platform).
    type: list
    elements: str
  api_endpoints:
    description:
      - Base URLs that replace the public Google endpoints, one per API, for local emulators and stand-ins.
      - Keys are API names such as V(bigquery) or V(storage); values are URLs such as V(http://127.0.0.1:9050).
      - For an API not listed here, the E(DEPLOYML_<API>_ENDPOINT) environment variable is used (for example
        E(DEPLOYML_BIGQUERY_ENDPOINT)), then the emulator variables E(BIGQUERY_EMULATOR_HOST) and
        E(STORAGE_EMULATOR_HOST), then the public endpoint.
    type: dict
  timeout:
    description:
      - Seconds to keep retrying a request that fails with a retryable error (HTTP 429, 5xx, connection
        errors), and to wait for a long-running operation to finish.
      - A run that times out changed nothing it could not finish; running it again converges.
    type: int
    default: 300
notes:
  - Requests that fail with HTTP 429, 5xx or a connection error are retried with jittered exponential backoff
    until O(timeout) runs out.
  - All options above can be set once per play with C(module_defaults) for the action group
    C(group/deployml.mlops.gcp).
requirements:
  - python >= 3.9
  - google-auth >= 2.40
  - requests
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying the resource.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode).
    support: full
  idempotent:
    description: A second run with the same options reports no change and makes no write call.
    support: full
  action_group:
    description: Use C(group/deployml.mlops.gcp) in C(module_defaults) to set the common options once.
    support: full
    membership:
      - deployml.mlops.gcp
"""
