"""A stateful fake of the Google Cloud REST control plane, driven by the discovery documents.

    from tests.standins.fakegcp import FakeGcp
    fake = FakeGcp().start()      # or: python -m tests.standins.fakegcp --port N

Each API is one file declaring its resources and handlers (see api.py); it is served under
{fake.url}/<api>, where <api> is its key in plugins/module_utils/gcp.py APIS. To add an API, write its
file and list its class in API_CLASSES.
"""

from __future__ import annotations

from tests.standins.fakegcp.artifactregistry import ArtifactRegistry
from tests.standins.fakegcp.cloudbilling import CloudBilling
from tests.standins.fakegcp.cloudbuild import CloudBuild
from tests.standins.fakegcp.cloudscheduler import CloudScheduler
from tests.standins.fakegcp.iam import Iam
from tests.standins.fakegcp.oauth2 import OAuth2
from tests.standins.fakegcp.resourcemanager import ResourceManager
from tests.standins.fakegcp.run import Run
from tests.standins.fakegcp.secretmanager import SecretManager
from tests.standins.fakegcp.serviceusage import ServiceUsage
from tests.standins.fakegcp.sqladmin import SqlAdmin

API_CLASSES = [ResourceManager, Iam, ServiceUsage, SecretManager, SqlAdmin, ArtifactRegistry, CloudBuild, CloudScheduler, Run,
               CloudBilling, OAuth2]

from tests.standins.fakegcp.server import Call, FakeGcp  # noqa: E402  pylint: disable=wrong-import-position

__all__ = ["API_CLASSES", "Call", "FakeGcp"]
