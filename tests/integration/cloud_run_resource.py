"""A Cloud Run service or job under test: run its module against the fake, read it back through the REST API."""

from __future__ import annotations

import base64

import requests

from tests.conftest import PROJECT

LOCATION = "europe-west1"


class RunResource:
    """One service or job with a fresh name. run() adds the common arguments and, unless deleting, an image."""

    def __init__(self, fake, gcp_module, module, collection, name, image):
        self.module, self.gcp_module, self.fake = module, gcp_module, fake
        self.name, self.image = name, image
        self.path = "/v2/projects/%s/locations/%s/%s/%s" % (PROJECT, LOCATION, collection, name)
        self.url = "%s/run%s" % (fake.url, self.path)

    def run(self, check=False, diff=True, **options):
        args = dict(project=PROJECT, auth_kind="anonymous", api_endpoints=self.fake.endpoints, name=self.name,
                    location=LOCATION, timeout=20)
        if options.get("state") != "absent":
            args["image"] = self.image
        args.update(options)
        return self.gcp_module(self.module, args, check=check, diff=diff)

    def read(self):
        response = requests.get(self.url, timeout=10)
        assert response.status_code in (200, 404), response.text
        return response.json() if response.status_code == 200 else None

    def container(self):
        return self.read()["template"]["containers"][0]

    def executions(self):
        response = requests.get(self.url + "/executions", timeout=10)
        assert response.status_code == 200, response.text
        return response.json().get("executions", [])


def make_secret(fake, secret_id, value="s3cret-value"):
    """A secret with one version, through the fake Secret Manager REST API."""
    base = "%s/secretmanager/v1/projects/%s/secrets" % (fake.url, PROJECT)
    created = requests.post(base, params={"secretId": secret_id}, json={"replication": {"automatic": {}}}, timeout=10)
    assert created.status_code == 200, created.text
    added = requests.post("%s/%s:addVersion" % (base, secret_id), timeout=10,
                          json={"payload": {"data": base64.b64encode(value.encode()).decode()}})
    assert added.status_code == 200, added.text


def make_account(fake, account_id):
    response = requests.post("%s/iam/v1/projects/%s/serviceAccounts" % (fake.url, PROJECT), timeout=10,
                             json={"accountId": account_id, "serviceAccount": {"displayName": account_id}})
    assert response.status_code == 200, response.text
    return response.json()["email"]
