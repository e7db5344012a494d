"""Contract tests of the fake's Cloud Run Admin API v2 (services, revisions, jobs, executions, IAM, operations)."""

from __future__ import annotations

import base64
import re

import pytest

from tests.integration.test_fakegcp_contract import PROJECT, call as api_call, create_sa, error_of

REGION = "us-central1"
BASE = "/v2/projects/%s/locations/%s" % (PROJECT, REGION)
IMAGE = "us-docker.pkg.dev/cloudrun/container/hello"
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"


def call(fake, method, path, body=None, params=None):
    return api_call(fake, method, "run", path, body, params)


def ok(response):
    assert response.status_code == 200, response.text
    return response.json()


def finish(fake, operation, limit=20):
    """Poll operations.get until done; returns (operation, number of polls)."""
    for polls in range(limit + 1):
        if operation.get("done"):
            return operation, polls
        operation = ok(call(fake, "GET", "/v2/" + operation["name"]))
    raise AssertionError("operation never finished: %s" % operation)


def spec(image=IMAGE, **template):
    template.setdefault("containers", [{"image": image}])
    return {"template": template}


def container(**fields):
    return dict({"image": IMAGE}, **fields)


def svc_path(name):
    return "%s/services/%s" % (BASE, name)


def job_path(name):
    return "%s/jobs/%s" % (BASE, name)


def start_service(fake, name, body=None):
    return ok(call(fake, "POST", BASE + "/services", body or spec(), {"serviceId": name}))


def create_service(fake, name, body=None):
    operation, _polls = finish(fake, start_service(fake, name, body))
    assert "error" not in operation, operation
    return ok(call(fake, "GET", svc_path(name)))


def patch_service(fake, name, body, params=None):
    return finish(fake, ok(call(fake, "PATCH", svc_path(name), body, params)))[0]


def revisions(fake, name):
    return ok(call(fake, "GET", svc_path(name) + "/revisions")).get("revisions", [])


def short(name):
    return name.rsplit("/", 1)[1]


def create_secret(fake, secret_id, versions=1):
    response = api_call(fake, "POST", "secretmanager", "/v1/projects/%s/secrets" % PROJECT,
                        {"replication": {"automatic": {}}}, {"secretId": secret_id})
    assert response.status_code == 200, response.text
    for _index in range(versions):
        response = api_call(fake, "POST", "secretmanager", "/v1/projects/%s/secrets/%s:addVersion" % (PROJECT, secret_id),
                            {"payload": {"data": base64.b64encode(b"s3cret").decode()}})
        assert response.status_code == 200, response.text


def project_number(fake):
    return api_call(fake, "GET", "cloudresourcemanager", "/v3/projects/%s" % PROJECT).json()["name"].split("/")[1]


# ---- services: lifecycle -----------------------------------------------------------------------------------------
class TestServiceLifecycle:
    def test_create_runs_an_operation_done_after_the_configured_polls(self, fake_gcp, unique):
        fake_gcp.operation_polls = 3
        name = "svc-%s" % unique
        operation = start_service(fake_gcp, name)
        assert not operation.get("done")
        assert re.match(r"^projects/%s/locations/%s/operations/[0-9a-f-]{36}$" % (PROJECT, REGION), operation["name"])
        assert operation["metadata"]["@type"] == SERVICE_TYPE
        assert operation["metadata"]["name"] == "projects/%s/locations/%s/services/%s" % (PROJECT, REGION, name)

        pending = ok(call(fake_gcp, "GET", svc_path(name)))
        assert pending["reconciling"] is True
        assert pending["terminalCondition"]["state"] == "CONDITION_RECONCILING"
        assert "latestReadyRevision" not in pending and "observedGeneration" not in pending
        assert pending["latestCreatedRevision"]

        done, polls = finish(fake_gcp, operation)
        assert polls == 2, "the GET of the reconciling service counted as the first of the three polls"
        assert done["response"]["@type"] == SERVICE_TYPE
        assert "error" not in done

    def test_created_service_has_every_output_field(self, fake_gcp, unique):
        name = "out-%s" % unique
        service = create_service(fake_gcp, name)
        full = "projects/%s/locations/%s/services/%s" % (PROJECT, REGION, name)
        assert service["name"] == full
        assert re.match(r"^https://%s-[a-z0-9]{10}-uc\.a\.run\.app$" % name, service["uri"])
        assert service["urls"] == ["https://%s-%s.%s.run.app" % (name, project_number(fake_gcp), REGION), service["uri"]]
        assert service["generation"] == "1" and service["observedGeneration"] == "1"
        assert service["etag"].startswith('"') and service["etag"].endswith('"')
        assert re.match(r"^%s/revisions/%s-00001-[a-z]{3}$" % (full, name), service["latestReadyRevision"])
        assert service["latestCreatedRevision"] == service["latestReadyRevision"]
        assert service["terminalCondition"]["type"] == "Ready"
        assert service["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
        assert "reason" not in service["terminalCondition"] and "revisionReason" not in service["terminalCondition"]
        assert [(c["type"], c["state"]) for c in service["conditions"]] == [
            ("RoutesReady", "CONDITION_SUCCEEDED"), ("ConfigurationsReady", "CONDITION_SUCCEEDED")]
        assert "reconciling" not in service  # false is omitted, as in proto3 JSON
        for field in ("uid", "createTime", "updateTime", "creator", "lastModifier"):
            assert service[field], field
        assert service["trafficStatuses"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]

    def test_server_defaults_are_filled_in(self, fake_gcp, unique):
        service = create_service(fake_gcp, "def-%s" % unique)
        assert service["ingress"] == "INGRESS_TRAFFIC_ALL"
        assert service["launchStage"] == "GA"
        assert service["traffic"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
        template = service["template"]
        assert template["maxInstanceRequestConcurrency"] == 80
        assert template["timeout"] == "300s"
        assert template["scaling"] == {"maxInstanceCount": 100}
        assert template["serviceAccount"] == "%s-compute@developer.gserviceaccount.com" % project_number(fake_gcp)
        (only,) = template["containers"]
        assert only["resources"] == {"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": True}
        assert only["ports"] == [{"name": "http1", "containerPort": 8080}]
        assert only["startupProbe"] == {"timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1,
                                        "tcpSocket": {"port": 8080}}

    def test_user_values_are_kept_and_empty_values_dropped(self, fake_gcp, unique):
        body = spec(containers=[container(args=[], command=["serve"], ports=[{"containerPort": 9000}],
                                          resources={"limits": {"cpu": "2", "memory": "1Gi"}},
                                          startupProbe={"httpGet": {"path": "/ready"}})],
                    maxInstanceRequestConcurrency=10, timeout="60s")
        body["labels"] = {}
        service = create_service(fake_gcp, "usr-%s" % unique, body)
        (only,) = service["template"]["containers"]
        assert "args" not in only and "labels" not in service
        assert only["command"] == ["serve"]
        assert only["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
        assert only["ports"] == [{"containerPort": 9000, "name": "http1"}]
        assert only["startupProbe"] == {"httpGet": {"path": "/ready", "port": 9000}, "timeoutSeconds": 1,
                                        "periodSeconds": 10, "failureThreshold": 3}
        assert service["template"]["maxInstanceRequestConcurrency"] == 10
        assert service["template"]["timeout"] == "60s"

    def test_one_get_is_enough_for_a_no_op_caller(self, fake_gcp, unique):
        """A GET answers everything needed to compare and to PATCH back (etag included): nothing else is read."""
        name = "one-%s" % unique
        create_service(fake_gcp, name)
        fake_gcp.clear()
        service = ok(call(fake_gcp, "GET", svc_path(name)))
        assert len(fake_gcp.requests) == 1 and fake_gcp.writes() == []
        for field in ("etag", "template", "traffic", "uri", "latestReadyRevision", "terminalCondition"):
            assert field in service
        done = patch_service(fake_gcp, name, service)  # the GET result as is: output-only fields are ignored
        assert done["response"]["etag"] == service["etag"]

    def test_list_services(self, fake_gcp, unique):
        names = ["ls-%s-%d" % (unique, index) for index in range(3)]
        for name in names:
            create_service(fake_gcp, name)
        listed = [short(s["name"]) for s in ok(call(fake_gcp, "GET", BASE + "/services"))["services"]]
        assert set(names) <= set(listed)
        page = ok(call(fake_gcp, "GET", BASE + "/services", params={"pageSize": "1"}))
        assert len(page["services"]) == 1 and page["nextPageToken"]
        everywhere = ok(call(fake_gcp, "GET", "/v2/projects/%s/locations/-/services" % PROJECT))
        assert set(names) <= {short(s["name"]) for s in everywhere["services"]}

    def test_delete_runs_an_operation_then_the_service_is_gone(self, fake_gcp, unique):
        name = "del-%s" % unique
        service = create_service(fake_gcp, name)
        operation = ok(call(fake_gcp, "DELETE", svc_path(name)))
        assert not operation.get("done")
        assert call(fake_gcp, "GET", svc_path(name)).status_code == 200  # still there until the operation is done
        done, _polls = finish(fake_gcp, operation)
        assert done["response"]["name"] == service["name"] and done["response"]["deleteTime"]
        error_of(call(fake_gcp, "GET", svc_path(name)), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "GET", svc_path(name) + "/revisions"), 404, "NOT_FOUND")

    def test_validate_only_changes_nothing(self, fake_gcp, unique):
        name = "vo-%s" % unique
        operation = ok(call(fake_gcp, "POST", BASE + "/services", spec(), {"serviceId": name, "validateOnly": "true"}))
        assert operation["done"] is True and operation["response"]["template"]["timeout"] == "300s"
        error_of(call(fake_gcp, "GET", svc_path(name)), 404, "NOT_FOUND")
        service = create_service(fake_gcp, name)
        changed = spec(containers=[container(env=[{"name": "A", "value": "1"}])])
        operation = ok(call(fake_gcp, "PATCH", svc_path(name), changed, {"validateOnly": "true"}))
        assert operation["done"] is True
        assert ok(call(fake_gcp, "GET", svc_path(name)))["etag"] == service["etag"]


# ---- services: updates, revisions, etags ----------------------------------------------------------------------------
class TestServiceUpdates:
    def test_patch_with_the_same_template_changes_nothing(self, fake_gcp, unique):
        name = "same-%s" % unique
        service = create_service(fake_gcp, name)
        patch_service(fake_gcp, name, spec())  # the create body, without the server defaults
        patch_service(fake_gcp, name, {k: v for k, v in service.items() if k != "etag"})
        after = ok(call(fake_gcp, "GET", svc_path(name)))
        assert after["generation"] == "1" and after["etag"] == service["etag"]
        assert after["latestCreatedRevision"] == service["latestCreatedRevision"]
        assert len(revisions(fake_gcp, name)) == 1

    def test_changed_template_makes_a_new_revision(self, fake_gcp, unique):
        fake_gcp.operation_polls = 2
        name = "chg-%s" % unique
        service = create_service(fake_gcp, name)
        body = dict(service, template=dict(service["template"], containers=[
            dict(service["template"]["containers"][0], env=[{"name": "MODE", "value": "fast"}])]))
        operation = ok(call(fake_gcp, "PATCH", svc_path(name), body))
        during = ok(call(fake_gcp, "GET", svc_path(name)))
        assert during["reconciling"] is True and during["generation"] == "2"
        assert during["observedGeneration"] == "1"
        assert during["latestReadyRevision"] == service["latestReadyRevision"]
        assert re.search(r"/revisions/%s-00002-[a-z]{3}$" % name, during["latestCreatedRevision"])
        finish(fake_gcp, operation)
        after = ok(call(fake_gcp, "GET", svc_path(name)))
        assert after["generation"] == "2" and after["observedGeneration"] == "2"
        assert after["etag"] != service["etag"]
        assert after["latestReadyRevision"] == after["latestCreatedRevision"] == during["latestCreatedRevision"]
        assert after["template"]["containers"][0]["env"] == [{"name": "MODE", "value": "fast"}]
        listed = revisions(fake_gcp, name)
        assert [r["name"] for r in listed] == [after["latestCreatedRevision"], service["latestCreatedRevision"]]
        revision = ok(call(fake_gcp, "GET", svc_path(name) + "/revisions/" + short(after["latestReadyRevision"])))
        assert revision["service"] == service["name"]
        assert revision["containers"][0]["env"] == [{"name": "MODE", "value": "fast"}]
        assert revision["conditions"][0] == dict(revision["conditions"][0], type="Ready", state="CONDITION_SUCCEEDED")

    def test_overlapping_rollouts_settle_on_the_newest(self, fake_gcp, unique):
        fake_gcp.operation_polls = 2
        name = "ovl-%s" % unique
        first = start_service(fake_gcp, name)
        second = ok(call(fake_gcp, "PATCH", svc_path(name), spec(containers=[container(args=["v2"])])))
        finish(fake_gcp, first)
        between = ok(call(fake_gcp, "GET", svc_path(name)))
        assert between["reconciling"] is True and "observedGeneration" not in between
        assert re.search(r"-00001-[a-z]{3}$", between["latestReadyRevision"])
        finish(fake_gcp, second)
        after = ok(call(fake_gcp, "GET", svc_path(name)))
        assert after["observedGeneration"] == "2" and "reconciling" not in after
        assert after["latestReadyRevision"] == after["latestCreatedRevision"]
        assert re.search(r"-00002-[a-z]{3}$", after["latestReadyRevision"])

    def test_label_only_change_bumps_generation_without_a_revision(self, fake_gcp, unique):
        name = "lbl-%s" % unique
        service = create_service(fake_gcp, name)
        patch_service(fake_gcp, name, dict(service, labels={"team": "ml"}))
        after = ok(call(fake_gcp, "GET", svc_path(name)))
        assert after["labels"] == {"team": "ml"}
        assert after["generation"] == "2" and after["observedGeneration"] == "2"
        assert after["etag"] != service["etag"]
        assert after["latestCreatedRevision"] == service["latestCreatedRevision"]
        assert len(revisions(fake_gcp, name)) == 1

    def test_force_new_revision(self, fake_gcp, unique):
        name = "frc-%s" % unique
        service = create_service(fake_gcp, name)
        patch_service(fake_gcp, name, service, {"forceNewRevision": "true"})
        after = ok(call(fake_gcp, "GET", svc_path(name)))
        assert after["generation"] == "2" and after["latestCreatedRevision"] != service["latestCreatedRevision"]

    def test_update_mask_touches_only_its_fields(self, fake_gcp, unique):
        name = "msk-%s" % unique
        service = create_service(fake_gcp, name, dict(spec(), description="kept"))
        patch_service(fake_gcp, name, {"labels": {"a": "b"}}, {"updateMask": "labels"})
        after = ok(call(fake_gcp, "GET", svc_path(name)))
        assert after["labels"] == {"a": "b"} and after["description"] == "kept"
        assert after["template"] == service["template"]
        error_of(call(fake_gcp, "PATCH", svc_path(name), {}, {"updateMask": "uri"}), 400, "INVALID_ARGUMENT")

    def test_patch_without_mask_replaces_the_whole_service(self, fake_gcp, unique):
        name = "rpl-%s" % unique
        create_service(fake_gcp, name, dict(spec(), labels={"a": "b"}, description="gone soon"))
        patch_service(fake_gcp, name, spec())
        after = ok(call(fake_gcp, "GET", svc_path(name)))
        assert "labels" not in after and "description" not in after

    def test_stale_etag_is_409_aborted(self, fake_gcp, unique):
        name = "etg-%s" % unique
        first = create_service(fake_gcp, name)
        patch_service(fake_gcp, name, dict(first, labels={"v": "2"}))
        error = error_of(call(fake_gcp, "PATCH", svc_path(name), dict(first, labels={"v": "3"})), 409, "ABORTED")
        assert first["etag"] in error["message"]
        error_of(call(fake_gcp, "DELETE", svc_path(name), params={"etag": first["etag"]}), 409, "ABORTED")
        current = ok(call(fake_gcp, "GET", svc_path(name)))
        assert current["labels"] == {"v": "2"}
        finish(fake_gcp, ok(call(fake_gcp, "DELETE", svc_path(name), params={"etag": current["etag"]})))

    def test_missing_service_is_404(self, fake_gcp, unique):
        name = "nope-%s" % unique
        error = error_of(call(fake_gcp, "GET", svc_path(name)), 404, "NOT_FOUND")
        assert name in error["message"]
        error_of(call(fake_gcp, "PATCH", svc_path(name), spec()), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "DELETE", svc_path(name)), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "GET", svc_path(name) + ":getIamPolicy"), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "GET", svc_path(name) + "/revisions/%s-00001-abc" % name), 404, "NOT_FOUND")

    def test_patch_with_allow_missing_creates(self, fake_gcp, unique):
        name = "alm-%s" % unique
        finish(fake_gcp, ok(call(fake_gcp, "PATCH", svc_path(name), spec(), {"allowMissing": "true"})))
        assert ok(call(fake_gcp, "GET", svc_path(name)))["generation"] == "1"

    def test_missing_revision_of_an_existing_service_is_404(self, fake_gcp, unique):
        name = "rv-%s" % unique
        create_service(fake_gcp, name)
        error_of(call(fake_gcp, "GET", svc_path(name) + "/revisions/%s-00009-zzz" % name), 404, "NOT_FOUND")

    def test_duplicate_create_is_409(self, fake_gcp, unique):
        name = "dup-%s" % unique
        create_service(fake_gcp, name)
        error_of(call(fake_gcp, "POST", BASE + "/services", spec(), {"serviceId": name}), 409, "ALREADY_EXISTS")

    def test_body_name_must_match_the_url(self, fake_gcp, unique):
        name = "nm-%s" % unique
        service = create_service(fake_gcp, name)
        error_of(call(fake_gcp, "PATCH", svc_path(name), dict(service, name=service["name"] + "x")), 400)
        by_number = service["name"].replace(PROJECT, project_number(fake_gcp))
        patch_service(fake_gcp, name, dict(service, name=by_number))

    def test_user_named_revision(self, fake_gcp, unique):
        name = "urv-%s" % unique
        service = create_service(fake_gcp, name, spec(revision="%s-blue" % name))
        assert service["latestReadyRevision"].endswith("/revisions/%s-blue" % name)
        changed = spec(revision="%s-blue" % name, containers=[container(args=["x"])])
        error_of(call(fake_gcp, "PATCH", svc_path(name), changed), 409, "ALREADY_EXISTS")
        error_of(call(fake_gcp, "POST", BASE + "/services", spec(revision="other-rev"), {"serviceId": "o-%s" % unique}),
                 400, "INVALID_ARGUMENT")


# ---- services: validation -------------------------------------------------------------------------------------------
class TestServiceSchemaValidation:
    def test_unknown_field(self, fake_gcp, unique):
        body = spec(containers=[container(imagePullPolicy="Always")])
        error = error_of(call(fake_gcp, "POST", BASE + "/services", body, {"serviceId": "u-%s" % unique}), 400,
                         "INVALID_ARGUMENT")
        assert 'Unknown name "imagePullPolicy"' in error["message"] and "template.containers[0]" in error["message"]

    def test_bad_enum(self, fake_gcp, unique):
        body = dict(spec(), ingress="PUBLIC")
        error = error_of(call(fake_gcp, "POST", BASE + "/services", body, {"serviceId": "e-%s" % unique}), 400,
                         "INVALID_ARGUMENT")
        assert "ingress" in error["message"] and "PUBLIC" in error["message"]

    def test_wrong_type(self, fake_gcp, unique):
        body = spec(maxInstanceRequestConcurrency="many")
        error = error_of(call(fake_gcp, "POST", BASE + "/services", body, {"serviceId": "t-%s" % unique}), 400)
        assert "max_instance_request_concurrency" in error["message"]
        error_of(call(fake_gcp, "POST", BASE + "/services", {"template": {"containers": {"image": IMAGE}}},
                      {"serviceId": "t2-%s" % unique}), 400, "INVALID_ARGUMENT")

    def test_bad_duration(self, fake_gcp, unique):
        error_of(call(fake_gcp, "POST", BASE + "/services", spec(timeout="5m"), {"serviceId": "d-%s" % unique}), 400)

    def test_required_template_and_service_id(self, fake_gcp, unique):
        error = error_of(call(fake_gcp, "POST", BASE + "/services", {"labels": {"a": "b"}}, {"serviceId": "r-%s" % unique}),
                         400, "INVALID_ARGUMENT")
        assert "template" in error["message"]
        error_of(call(fake_gcp, "POST", BASE + "/services", spec()), 400, "INVALID_ARGUMENT")

    @pytest.mark.parametrize("service_id", ["Upper", "1abc", "ends-", "a" * 50, "under_score"])
    def test_bad_service_id(self, fake_gcp, service_id):
        error_of(call(fake_gcp, "POST", BASE + "/services", spec(), {"serviceId": service_id}), 400, "INVALID_ARGUMENT")

    def test_bad_location_and_unknown_query_parameter(self, fake_gcp, unique):
        error_of(call(fake_gcp, "POST", "/v2/projects/%s/locations/mars/services" % PROJECT, spec(),
                      {"serviceId": "l-%s" % unique}), 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "GET", BASE + "/services", params={"colour": "x"}), 400, "INVALID_ARGUMENT")

    def test_output_only_fields_in_a_request_are_ignored(self, fake_gcp, unique):
        body = dict(spec(), uri="https://evil.example.com", generation="42", reconciling=True)
        service = create_service(fake_gcp, "oo-%s" % unique, body)
        assert service["generation"] == "1" and "evil" not in service["uri"]

    def test_unimplemented_method_is_501(self, fake_gcp):
        error_of(call(fake_gcp, "GET", BASE + "/workerPools"), 501)


def limits(**values):
    return spec(containers=[container(resources={"limits": values})])


def env(*entries):
    return spec(containers=[container(env=list(entries))])


SECRET_ENV = {"name": "A", "valueSource": {"secretKeyRef": {"secret": "no-such-secret", "version": "latest"}}}
MEMORY_MOUNT = {"name": "v", "emptyDir": {"medium": "MEMORY"}}
# case -> (body, a part of the error message)
BAD_TEMPLATES = {
    "no image": (spec(containers=[{"name": "x"}]), "image is required"),
    "no containers": ({"template": {"timeout": "10s"}}, "at least one container"),
    "memory 512MB": (limits(memory="512MB"), "'512MB'"),
    "memory 64Mi": (limits(memory="64Mi"), "between 128Mi and 32Gi"),
    "cpu 3": (limits(cpu="3"), "value specified for cpu: '3'"),
    "cpu abc": (limits(cpu="abc"), "for cpu: 'abc'"),
    "8Gi with 1 cpu": (limits(cpu="1", memory="8Gi"), "For 1.0 CPU, memory must be between 128Mi and 4Gi inclusive"),
    "512Mi with 4 cpu": (limits(cpu="4", memory="512Mi"), "For 4.0 CPU, memory must be between 2Gi and 16Gi"),
    "2Gi with 0.4 cpu": (spec(containers=[container(resources={"limits": {"cpu": "400m", "memory": "2Gi"}})],
                              maxInstanceRequestConcurrency=1), "For 0.4 CPU, memory must be between 128Mi and 512Mi"),
    "limit key": (limits(disk="1Gi"), "unsupported key 'disk'"),
    "cpu < 1 with concurrency 80": (spec(containers=[container(resources={"limits": {"cpu": "500m"}})],
                                         maxInstanceRequestConcurrency=80),
                                    "Total cpu < 1 is not supported with concurrency > 1"),
    "concurrency 1001": (spec(maxInstanceRequestConcurrency=1001), "between 1 and 1000, got 1001"),
    "concurrency -1": (spec(maxInstanceRequestConcurrency=-1), "got -1"),
    "timeout 3601s": (spec(timeout="3601s"), "3601s"),
    "min > max": (spec(scaling={"minInstanceCount": 5, "maxInstanceCount": 2}), "min_instance_count (5)"),
    "env twice": (env({"name": "A", "value": "1"}, {"name": "A", "value": "2"}), "'A' is set twice"),
    "env PORT": (env({"name": "PORT", "value": "1"}), "reserved env names were provided: PORT"),
    "env without name": (env({"value": "1"}), "env[0].name is required"),
    "env value and source": (env(dict(SECRET_ENV, value="1")), "only one of value and value_source"),
    "secret missing": (env(SECRET_ENV), "secrets/no-such-secret/versions/latest was not found"),
    "two ports": (spec(containers=[container(ports=[{"containerPort": 80}, {"containerPort": 81}])]), "single port"),
    "port name": (spec(containers=[container(ports=[{"name": "http3", "containerPort": 80}])]), "http1 or h2c"),
    "mount of no volume": (spec(containers=[container(volumeMounts=[{"name": "v", "mountPath": "/data"}])]),
                           "volume 'v' is not defined"),
    "relative mount": (spec(volumes=[MEMORY_MOUNT], containers=[container(volumeMounts=[
        {"name": "v", "mountPath": "data"}])]), "absolute path"),
    "two volume kinds": (spec(volumes=[{"name": "v", "emptyDir": {}, "gcs": {"bucket": "b"}}]), "exactly one volume type"),
    "no volume kind": (spec(volumes=[{"name": "v"}]), "exactly one volume type"),
    "cloudsql name": (spec(volumes=[{"name": "cloudsql", "cloudSqlInstance": {"instances": ["just-an-instance"]}}]),
                      "'just-an-instance'"),
    "probe two actions": (spec(containers=[container(startupProbe={"httpGet": {}, "tcpSocket": {}})]),
                          "exactly one of http_get, tcp_socket or grpc"),
    "liveness tcp": (spec(containers=[container(livenessProbe={"tcpSocket": {"port": 8080}})]),
                     "liveness_probe: liveness probes support http_get and grpc only"),
    "probe timeout > period": (spec(containers=[container(startupProbe={"httpGet": {}, "periodSeconds": 5,
                                                                        "timeoutSeconds": 6})]),
                               "timeout_seconds must be between 1 and period_seconds (5)"),
    "sidecars without a single ingress": (spec(containers=[container(name="a"), container(name="b")]),
                                          "exactly one container (the ingress container)"),
    "reserved annotation": (dict(spec(), annotations={"run.googleapis.com/ingress": "all"}), "'run.googleapis.com/ingress'"),
    "bad label": (dict(spec(), labels={"Team": "x"}), "'Team'"),
    "traffic not 100": (dict(spec(), traffic=[{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 50}]),
                        "add up to 100, got 50"),
    "traffic unknown revision": (dict(spec(), traffic=[{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
                                                        "revision": "x-00001-abc", "percent": 100}]),
                                 "revision 'x-00001-abc' does not exist"),
    "service account not email": (spec(serviceAccount="runner"), "'runner': expected an email"),
    "service account missing": (spec(serviceAccount="ghost-runner@%s.iam.gserviceaccount.com" % PROJECT),
                                "ghost-runner@%s.iam.gserviceaccount.com does not exist" % PROJECT),
}


class TestServiceExtraValidation:
    @pytest.mark.parametrize("case", sorted(BAD_TEMPLATES))
    def test_rejected_before_anything_changes(self, fake_gcp, unique, case):
        name = "bad-%s" % unique
        body, reason = BAD_TEMPLATES[case]
        response = call(fake_gcp, "POST", BASE + "/services", body, {"serviceId": name})
        assert reason in error_of(response, 400, "INVALID_ARGUMENT")["message"]
        error_of(call(fake_gcp, "GET", svc_path(name)), 404)

    def test_patch_is_validated_too(self, fake_gcp, unique):
        name = "pv-%s" % unique
        service = create_service(fake_gcp, name)
        bad = dict(service, template=dict(service["template"], containers=[{"ports": [{"containerPort": 8080}]}]))
        error = error_of(call(fake_gcp, "PATCH", svc_path(name), bad), 400, "INVALID_ARGUMENT")
        assert "image" in error["message"]
        error_of(call(fake_gcp, "PATCH", svc_path(name), {"labels": {}}), 400, "INVALID_ARGUMENT")  # no template
        assert ok(call(fake_gcp, "GET", svc_path(name)))["etag"] == service["etag"]

    def test_existing_secret_account_and_cloudsql_are_accepted(self, fake_gcp, unique):
        create_secret(fake_gcp, "db-pass-%s" % unique, versions=2)
        account = create_sa(fake_gcp, "runner-%s" % unique)["email"]
        number = project_number(fake_gcp)
        body = spec(serviceAccount=account, volumes=[
            {"name": "cloudsql", "cloudSqlInstance": {"instances": ["%s:%s:db" % (PROJECT, REGION)]}},
            {"name": "creds", "secret": {"secret": "db-pass-%s" % unique, "items": [{"version": "2", "path": "p"}]}},
            {"name": "scratch", "emptyDir": {"medium": "MEMORY", "sizeLimit": "256Mi"}}],
            containers=[container(env=[
                {"name": "PASS", "valueSource": {"secretKeyRef": {"secret": "db-pass-%s" % unique, "version": "1"}}},
                {"name": "PASS2", "valueSource": {"secretKeyRef": {
                    "secret": "projects/%s/secrets/db-pass-%s" % (number, unique), "version": "latest"}}}],
                volumeMounts=[{"name": "cloudsql", "mountPath": "/cloudsql"}, {"name": "creds", "mountPath": "/creds"},
                              {"name": "scratch", "mountPath": "/tmp/scratch"}])])
        service = create_service(fake_gcp, "ok-%s" % unique, body)
        assert service["template"]["serviceAccount"] == account
        assert service["template"]["volumes"][0]["cloudSqlInstance"]["instances"] == ["%s:%s:db" % (PROJECT, REGION)]

    def test_missing_secret_version_is_rejected(self, fake_gcp, unique):
        create_secret(fake_gcp, "one-version-%s" % unique, versions=1)
        body = spec(containers=[container(env=[{"name": "A", "valueSource": {
            "secretKeyRef": {"secret": "one-version-%s" % unique, "version": "7"}}}])])
        error = error_of(call(fake_gcp, "POST", BASE + "/services", body, {"serviceId": "sv-%s" % unique}), 400)
        assert "projects/%s/secrets/one-version-%s/versions/7 was not found" % (project_number(fake_gcp), unique) \
            in error["message"]

    def test_cpu_below_one_with_concurrency_one_is_accepted(self, fake_gcp, unique):
        body = spec(maxInstanceRequestConcurrency=1,
                    containers=[container(resources={"limits": {"cpu": "500m", "memory": "256Mi"}})])
        service = create_service(fake_gcp, "half-%s" % unique, body)
        assert service["template"]["containers"][0]["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}


# ---- services: failing revisions and operations ---------------------------------------------------------------------
class TestFailingRevisions:
    def test_first_revision_never_ready(self, fake_gcp, unique):
        name = "fail-%s" % unique
        fake_gcp.apis["run"].fail_revisions(message="Image 'x' not found.", reason="ContainerMissing")
        done, _polls = finish(fake_gcp, start_service(fake_gcp, name))
        assert done["error"]["code"] == 9
        assert re.match(r"^Revision '%s-00001-[a-z]{3}' is not ready and cannot serve traffic\. Image 'x' not found\.$"
                        % name, done["error"]["message"])
        service = ok(call(fake_gcp, "GET", svc_path(name)))
        condition = service["terminalCondition"]
        assert (condition["type"], condition["state"], condition["reason"]) == ("Ready", "CONDITION_FAILED",
                                                                                "CONTAINER_MISSING")
        assert condition["message"] == done["error"]["message"]
        assert "latestReadyRevision" not in service and "observedGeneration" not in service
        assert "trafficStatuses" not in service and "reconciling" not in service
        revision = ok(call(fake_gcp, "GET", svc_path(name) + "/revisions/" + short(service["latestCreatedRevision"])))
        assert revision["conditions"][0]["state"] == "CONDITION_FAILED"

    def test_failed_update_keeps_traffic_on_the_last_ready_revision(self, fake_gcp, unique):
        name = "keep-%s" % unique
        service = create_service(fake_gcp, name)
        fake_gcp.apis["run"].fail_revisions()
        done = patch_service(fake_gcp, name, spec(containers=[container(args=["--crash"])]))
        assert done["error"]["code"] == 9 and "is not ready and cannot serve traffic" in done["error"]["message"]
        after = ok(call(fake_gcp, "GET", svc_path(name)))
        condition = after["terminalCondition"]
        assert condition["state"] == "CONDITION_FAILED"
        assert condition["revisionReason"] == "HEALTH_CHECK_CONTAINER_ERROR" and "reason" not in condition
        assert "failed to start and listen on the port" in condition["message"]
        assert after["generation"] == "2" and after["observedGeneration"] == "1"
        assert after["latestReadyRevision"] == service["latestReadyRevision"]
        assert after["latestCreatedRevision"] != service["latestCreatedRevision"]
        assert after["trafficStatuses"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
                                             "revision": short(service["latestReadyRevision"]), "percent": 100}]
        # a fixed template recovers
        done = patch_service(fake_gcp, name, spec(containers=[container(args=["--ok"])]))
        assert "error" not in done
        fixed = ok(call(fake_gcp, "GET", svc_path(name)))
        assert fixed["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
        assert fixed["latestReadyRevision"] == fixed["latestCreatedRevision"] and fixed["observedGeneration"] == "3"

    def test_unknown_reason_is_refused(self, fake_gcp):
        with pytest.raises(ValueError):
            fake_gcp.apis["run"].fail_revisions(reason="Gremlins")

    def test_clear_forgets_planned_failures(self, fake_gcp, unique):
        fake_gcp.apis["run"].fail_revisions(count=5)
        fake_gcp.apis["run"].fail_executions(count=5)
        fake_gcp.clear()
        service = create_service(fake_gcp, "clr-%s" % unique)
        assert service["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
        create_job(fake_gcp, "clrj-%s" % unique)
        done, _polls = finish(fake_gcp, ok(call(fake_gcp, "POST", job_path("clrj-%s" % unique) + ":run", {})))
        assert "error" not in done

    def test_failed_create_operation_leaves_nothing(self, fake_gcp, unique):
        name = "opf-%s" % unique
        fake_gcp.fail_operations(code="INTERNAL", message="boom")
        done, _polls = finish(fake_gcp, start_service(fake_gcp, name))
        assert done["error"] == {"code": 13, "message": "boom"}
        error_of(call(fake_gcp, "GET", svc_path(name)), 404)

    def test_failed_update_operation_is_rolled_back(self, fake_gcp, unique):
        name = "opu-%s" % unique
        service = create_service(fake_gcp, name)
        fake_gcp.fail_operations(code=10, message="conflict")
        done = patch_service(fake_gcp, name, dict(service, labels={"x": "y"}))
        assert done["error"]["code"] == 10
        assert ok(call(fake_gcp, "GET", svc_path(name))) == service


# ---- IAM ----------------------------------------------------------------------------------------------------------
class TestIamPolicies:
    def test_service_policy_get_set_with_etags(self, fake_gcp, unique):
        name = "iam-%s" % unique
        create_service(fake_gcp, name)
        empty = ok(call(fake_gcp, "GET", svc_path(name) + ":getIamPolicy"))
        assert empty == {"version": 1, "etag": "ACAB"}
        policy = {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}], "etag": empty["etag"]}
        first = ok(call(fake_gcp, "POST", svc_path(name) + ":setIamPolicy", {"policy": policy}))
        assert first["bindings"] == policy["bindings"] and first["etag"] != "ACAB"
        error_of(call(fake_gcp, "POST", svc_path(name) + ":setIamPolicy", {"policy": policy}), 409, "ABORTED")
        read = ok(call(fake_gcp, "GET", svc_path(name) + ":getIamPolicy", params={"options.requestedPolicyVersion": "3"}))
        assert read == first
        error_of(call(fake_gcp, "POST", svc_path(name) + ":setIamPolicy",
                      {"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["everyone"]}]}}), 400)
        granted = ok(call(fake_gcp, "POST", svc_path(name) + ":testIamPermissions",
                          {"permissions": ["run.routes.invoke", "storage.buckets.get"]}))
        assert granted == {"permissions": ["run.routes.invoke"]}

    def test_policy_is_dropped_with_the_service(self, fake_gcp, unique):
        name = "iamd-%s" % unique
        create_service(fake_gcp, name)
        ok(call(fake_gcp, "POST", svc_path(name) + ":setIamPolicy",
                {"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}}))
        finish(fake_gcp, ok(call(fake_gcp, "DELETE", svc_path(name))))
        create_service(fake_gcp, name)
        assert "bindings" not in ok(call(fake_gcp, "GET", svc_path(name) + ":getIamPolicy"))

    def test_job_policy(self, fake_gcp, unique):
        name = "jiam-%s" % unique
        create_job(fake_gcp, name)
        account = create_sa(fake_gcp, "sched-%s" % unique)["email"]
        policy = {"bindings": [{"role": "roles/run.invoker", "members": ["serviceAccount:" + account]}]}
        first = ok(call(fake_gcp, "POST", job_path(name) + ":setIamPolicy", {"policy": policy}))
        assert ok(call(fake_gcp, "GET", job_path(name) + ":getIamPolicy")) == first
        stale = dict(policy, etag="BwXXXXXXXXX=")
        error_of(call(fake_gcp, "POST", job_path(name) + ":setIamPolicy", {"policy": stale}), 409, "ABORTED")

    def test_iam_reads_are_not_writes(self, fake_gcp, unique):
        name = "iamr-%s" % unique
        create_service(fake_gcp, name)
        fake_gcp.clear()
        call(fake_gcp, "GET", svc_path(name) + ":getIamPolicy")
        call(fake_gcp, "POST", svc_path(name) + ":testIamPermissions", {"permissions": ["run.services.get"]})
        assert fake_gcp.writes() == [] and len(fake_gcp.requests) == 2


# ---- jobs and executions -----------------------------------------------------------------------------------------------
def job_spec(image=IMAGE, **task):
    task.setdefault("containers", [{"image": image}])
    return {"template": {"template": task}}


def create_job(fake, name, body=None):
    operation = ok(call(fake, "POST", BASE + "/jobs", body or job_spec(), {"jobId": name}))
    done, _polls = finish(fake, operation)
    assert "error" not in done, done
    return ok(call(fake, "GET", job_path(name)))


def run_job(fake, name, body=None):
    return ok(call(fake, "POST", job_path(name) + ":run", body or {}))


class TestJobs:
    def test_create_fills_defaults_and_outputs(self, fake_gcp, unique):
        fake_gcp.operation_polls = 2
        name = "job-%s" % unique
        operation = ok(call(fake_gcp, "POST", BASE + "/jobs", job_spec(), {"jobId": name}))
        assert not operation.get("done") and operation["metadata"]["@type"].endswith(".Job")
        assert ok(call(fake_gcp, "GET", job_path(name)))["reconciling"] is True
        done, polls = finish(fake_gcp, operation)
        assert polls == 1, "the GET of the reconciling job counted as the first of the two polls"
        assert done["response"]["name"] == "projects/%s/locations/%s/jobs/%s" % (PROJECT, REGION, name)
        job = ok(call(fake_gcp, "GET", job_path(name)))
        assert job["generation"] == "1" and job["observedGeneration"] == "1" and job["etag"]
        assert job["terminalCondition"]["state"] == "CONDITION_SUCCEEDED" and "reconciling" not in job
        assert job["launchStage"] == "GA" and job["template"]["taskCount"] == 1
        task = job["template"]["template"]
        assert task["maxRetries"] == 3 and task["timeout"] == "600s"
        assert task["serviceAccount"] == "%s-compute@developer.gserviceaccount.com" % project_number(fake_gcp)
        assert task["containers"][0]["resources"] == {"limits": {"cpu": "1000m", "memory": "512Mi"}}
        assert "executionCount" not in job and "latestCreatedExecution" not in job

    def test_zero_retries_is_kept(self, fake_gcp, unique):
        job = create_job(fake_gcp, "zr-%s" % unique, job_spec(maxRetries=0))
        assert job["template"]["template"]["maxRetries"] == 0

    def test_patch_same_and_changed(self, fake_gcp, unique):
        name = "jp-%s" % unique
        job = create_job(fake_gcp, name)
        finish(fake_gcp, ok(call(fake_gcp, "PATCH", job_path(name), job)))
        same = ok(call(fake_gcp, "GET", job_path(name)))
        assert same["generation"] == "1" and same["etag"] == job["etag"]
        changed = dict(job, template=dict(job["template"], taskCount=4, parallelism=2))
        finish(fake_gcp, ok(call(fake_gcp, "PATCH", job_path(name), changed)))
        after = ok(call(fake_gcp, "GET", job_path(name)))
        assert after["generation"] == "2" and after["observedGeneration"] == "2" and after["etag"] != job["etag"]
        assert after["template"]["taskCount"] == 4 and after["template"]["parallelism"] == 2
        error_of(call(fake_gcp, "PATCH", job_path(name), dict(job, labels={"a": "b"})), 409, "ABORTED")

    def test_missing_duplicate_and_invalid(self, fake_gcp, unique):
        name = "jm-%s" % unique
        error_of(call(fake_gcp, "GET", job_path(name)), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "PATCH", job_path(name), job_spec()), 404, "NOT_FOUND")
        error_of(call(fake_gcp, "POST", job_path(name) + ":run", {}), 404, "NOT_FOUND")
        create_job(fake_gcp, name)
        error_of(call(fake_gcp, "POST", BASE + "/jobs", job_spec(), {"jobId": name}), 409, "ALREADY_EXISTS")
        for bad in (job_spec(maxRetries=11), job_spec(timeout="700000s"), {"template": {"taskCount": 2}},
                    job_spec(containers=[{"image": IMAGE, "env": [{"name": "CLOUD_RUN_JOB", "value": "x"}]}]),
                    dict(job_spec(), template=dict(job_spec()["template"], taskCount=-1)),
                    job_spec(containers=[{"image": IMAGE, "resources": {"limits": {"memory": "1GB"}}}])):
            error_of(call(fake_gcp, "POST", BASE + "/jobs", bad, {"jobId": "x" + name}), 400, "INVALID_ARGUMENT")
        error_of(call(fake_gcp, "POST", BASE + "/jobs", dict(job_spec(), color="red"), {"jobId": "x" + name}), 400)
        error_of(call(fake_gcp, "GET", job_path("x" + name)), 404)

    def test_delete(self, fake_gcp, unique):
        name = "jd-%s" % unique
        job = create_job(fake_gcp, name)
        error_of(call(fake_gcp, "DELETE", job_path(name), params={"etag": '"stale"'}), 409, "ABORTED")
        done, _polls = finish(fake_gcp, ok(call(fake_gcp, "DELETE", job_path(name), params={"etag": job["etag"]})))
        assert done["response"]["name"] == job["name"]
        error_of(call(fake_gcp, "GET", job_path(name)), 404, "NOT_FOUND")

    def test_list_jobs(self, fake_gcp, unique):
        create_job(fake_gcp, "jl-%s" % unique)
        assert "jl-%s" % unique in {short(j["name"]) for j in ok(call(fake_gcp, "GET", BASE + "/jobs"))["jobs"]}


class TestExecutions:
    def test_run_completes_with_the_execution(self, fake_gcp, unique):
        fake_gcp.operation_polls = 2
        name = "ex-%s" % unique
        create_job(fake_gcp, name, dict(job_spec(), template=dict(job_spec()["template"], taskCount=2)))
        operation = run_job(fake_gcp, name)
        assert not operation.get("done")
        running = operation["metadata"]
        assert running["@type"] == EXECUTION_TYPE
        assert re.match(r"^projects/%s/locations/%s/jobs/%s/executions/%s-[a-z0-9]{5}$" % (PROJECT, REGION, name, name),
                        running["name"])
        assert running["job"] == name and running["taskCount"] == 2 and running["runningCount"] == 2
        assert running["reconciling"] is True and "completionTime" not in running
        done, _polls = finish(fake_gcp, operation)
        assert done["response"]["@type"] == EXECUTION_TYPE
        execution = ok(call(fake_gcp, "GET", "/v2/" + running["name"]))
        assert execution["succeededCount"] == 2 and "failedCount" not in execution and "runningCount" not in execution
        assert execution["completionTime"] and execution["logUri"].startswith("https://console.cloud.google.com/")
        assert "reconciling" not in execution
        completed = next(c for c in execution["conditions"] if c["type"] == "Completed")
        assert completed["state"] == "CONDITION_SUCCEEDED"
        job = ok(call(fake_gcp, "GET", job_path(name)))
        assert job["executionCount"] == 1
        assert job["latestCreatedExecution"]["name"] == running["name"]
        assert job["latestCreatedExecution"]["completionStatus"] == "EXECUTION_SUCCEEDED"

    def test_watching_the_execution_progresses_it(self, fake_gcp, unique):
        fake_gcp.operation_polls = 2
        name = "exw-%s" % unique
        create_job(fake_gcp, name)
        operation = run_job(fake_gcp, name)
        path = "/v2/" + operation["metadata"]["name"]
        assert "completionTime" not in ok(call(fake_gcp, "GET", path))
        assert ok(call(fake_gcp, "GET", path))["succeededCount"] == 1
        assert ok(call(fake_gcp, "GET", "/v2/" + operation["name"]))["done"] is True

    def test_overrides(self, fake_gcp, unique):
        name = "exo-%s" % unique
        create_job(fake_gcp, name, job_spec(containers=[{"image": IMAGE, "args": ["a"]}]))
        overrides = {"taskCount": 3, "timeout": "30s", "containerOverrides": [{"args": ["upgrade", "head"]}]}
        done, _polls = finish(fake_gcp, run_job(fake_gcp, name, {"overrides": overrides}))
        execution = done["response"]
        assert execution["taskCount"] == 3 and execution["succeededCount"] == 3
        assert execution["template"]["containers"][0]["args"] == ["upgrade", "head"]
        assert execution["template"]["timeout"] == "30s"
        assert ok(call(fake_gcp, "GET", job_path(name)))["template"]["template"]["containers"][0]["args"] == ["a"]
        error_of(call(fake_gcp, "POST", job_path(name) + ":run", {"overrides": {"containerOverrides": [
            {"name": "nope", "args": ["x"]}]}}), 400, "INVALID_ARGUMENT")

    def test_list_and_get(self, fake_gcp, unique):
        name = "exl-%s" % unique
        create_job(fake_gcp, name)
        first = finish(fake_gcp, run_job(fake_gcp, name))[0]["response"]["name"]
        second = finish(fake_gcp, run_job(fake_gcp, name))[0]["response"]["name"]
        listed = ok(call(fake_gcp, "GET", job_path(name) + "/executions"))["executions"]
        assert [e["name"] for e in listed] == [second, first]
        error_of(call(fake_gcp, "GET", job_path(name) + "/executions/%s-zzzzz" % name), 404, "NOT_FOUND")

    def test_failing_execution(self, fake_gcp, unique):
        name = "exf-%s" % unique
        create_job(fake_gcp, name)
        message = "Task 0 failed: the container exited with status 1"
        fake_gcp.apis["run"].fail_executions(message=message)
        done, _polls = finish(fake_gcp, run_job(fake_gcp, name))
        assert done["error"]["code"] == 9 and message in done["error"]["message"]
        execution = ok(call(fake_gcp, "GET", "/v2/" + done["metadata"]["name"]))
        assert execution["failedCount"] == 1 and "succeededCount" not in execution
        completed = next(c for c in execution["conditions"] if c["type"] == "Completed")
        assert (completed["state"], completed["message"]) == ("CONDITION_FAILED", message)
        assert ok(call(fake_gcp, "GET", job_path(name)))["latestCreatedExecution"]["completionStatus"] == \
            "EXECUTION_FAILED"
        again, _polls = finish(fake_gcp, run_job(fake_gcp, name))  # count=1: the next one succeeds
        assert "error" not in again

    def test_cancel(self, fake_gcp, unique):
        fake_gcp.operation_polls = 5
        name = "exc-%s" % unique
        create_job(fake_gcp, name)
        operation = run_job(fake_gcp, name)
        cancel = ok(call(fake_gcp, "POST", "/v2/%s:cancel" % operation["metadata"]["name"], {}))
        finish(fake_gcp, cancel)
        run_op = ok(call(fake_gcp, "GET", "/v2/" + operation["name"]))
        assert run_op["done"] is True and run_op["error"]["code"] == 1
        execution = ok(call(fake_gcp, "GET", "/v2/" + operation["metadata"]["name"]))
        assert execution["cancelledCount"] == 1
        error_of(call(fake_gcp, "POST", "/v2/%s:cancel" % operation["metadata"]["name"], {}), 400, "FAILED_PRECONDITION")


# ---- faults, request log --------------------------------------------------------------------------------------------
class TestFaultsAndLog:
    def test_fault_on_create_changes_nothing(self, fake_gcp, unique):
        name = "flt-%s" % unique
        fake_gcp.inject(503, method="POST", path=r"^run/.*/services$")
        error_of(call(fake_gcp, "POST", BASE + "/services", spec(), {"serviceId": name}), 503, "UNAVAILABLE")
        error_of(call(fake_gcp, "GET", svc_path(name)), 404)

    def test_forwarded_fault_loses_only_the_answer(self, fake_gcp, unique):
        name = "fwd-%s" % unique
        fake_gcp.inject(500, method="POST", path=r"^run/.*/services$", forward=True)
        error_of(call(fake_gcp, "POST", BASE + "/services", spec(), {"serviceId": name}), 500)
        fake_gcp.complete_operations()
        assert ok(call(fake_gcp, "GET", svc_path(name)))["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
        error_of(call(fake_gcp, "POST", BASE + "/services", spec(), {"serviceId": name}), 409, "ALREADY_EXISTS")

    def test_faults_on_operations_and_executions(self, fake_gcp, unique):
        name = "fop-%s" % unique
        operation = start_service(fake_gcp, name)
        fake_gcp.inject(429, path=r"^run/v2/.*/operations/")
        error_of(call(fake_gcp, "GET", "/v2/" + operation["name"]), 429, "RESOURCE_EXHAUSTED")
        assert finish(fake_gcp, operation)[0]["done"] is True
        create_job(fake_gcp, name)
        fake_gcp.inject(503, count=2, method="POST", path=r":run$")
        error_of(call(fake_gcp, "POST", job_path(name) + ":run", {}), 503)
        error_of(call(fake_gcp, "POST", job_path(name) + ":run", {}), 503)
        assert "executionCount" not in ok(call(fake_gcp, "GET", job_path(name)))

    def test_writes_are_logged(self, fake_gcp, unique):
        name = "log-%s" % unique
        create_service(fake_gcp, name)
        finish(fake_gcp, ok(call(fake_gcp, "DELETE", svc_path(name))))
        assert [(c.method, c.api, c.path) for c in fake_gcp.writes()] == [
            ("POST", "run", BASE + "/services"), ("DELETE", "run", svc_path(name))]
        assert fake_gcp.requests[0].query == {"serviceId": name}


def test_concurrency_defaults_to_one_below_one_cpu(fake_gcp, unique):
    """run.v2: concurrency defaults to 80 with at least 1 CPU and to 1 below it."""
    small = create_service(fake_gcp, "small-" + unique, limits(cpu="500m", memory="256Mi"))
    assert small["template"]["maxInstanceRequestConcurrency"] == 1
    assert create_service(fake_gcp, "whole-" + unique)["template"]["maxInstanceRequestConcurrency"] == 80


def test_a_reconciling_service_moves_on_as_it_is_read(fake_gcp, unique):
    """A client that lost the operation's name watches `reconciling` on the service itself."""
    fake_gcp.operation_polls = 3
    start_service(fake_gcp, "watched-" + unique)
    states = [ok(call(fake_gcp, "GET", svc_path("watched-" + unique))).get("reconciling", False) for read in range(3)]
    assert states == [True, True, False]
