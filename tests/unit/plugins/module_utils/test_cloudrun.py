"""Cloud Run v2 (module_utils/cloudrun.py): options -> body, validation, normalisation, update body, messages."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils import cloudrun
from ansible_collections.deployml.mlops.plugins.module_utils.resource import Exact, differences, project, prune
from ansible_collections.deployml.mlops.plugins.modules.cloud_run_job import Job
from ansible_collections.deployml.mlops.plugins.modules.cloud_run_service import Service

PROJECT = "test-project"
NAME = "projects/test-project/locations/europe-west1/services/mlflow"
IMAGE = "europe-west1-docker.pkg.dev/test-project/mlops/mlflow@sha256:" + "a" * 64


def params(job=False, **overrides):
    """Module parameters as AnsibleModule hands them over (every option present, defaults applied)."""
    base = {name: None for name in cloudrun.argument_spec(job=job)}
    base.update(project=PROJECT, name="mlflow", location="europe-west1", state="present", image=IMAGE)
    if job:
        base["execute"] = "never"
    base.update(overrides)
    return base


def probe(**overrides):
    base = dict(http_get=None, tcp_socket=None, initial_delay_seconds=None, timeout_seconds=None,
                period_seconds=None, failure_threshold=None)
    base.update(overrides)
    return base


def volume(name, mount_path, **kind):
    base = dict(name=name, mount_path=mount_path, secret=None, gcs=None, in_memory=None)
    base.update(kind)
    return base


class Stub:
    """What a Resource needs from its module (no client: these tests make no request)."""

    def __init__(self, p, check_mode=False):
        self.params = p
        self.client = None
        self.check_mode = check_mode


def compare(resource_class, p, actual):
    """The changed fields converge would find, and the normalised view and desired body it would use."""
    resource = resource_class(Stub(p))
    desired = prune(resource.desired())
    view = resource.normalize(actual)
    return resource.changes(view, desired), view, desired


def server_service(**template_overrides):
    """A service as Cloud Run returns it, with every default and output field it fills in."""
    service = {
        "name": NAME, "uid": "2b4f1c7e-0000-4000-8000-000000000001", "generation": "2",
        "labels": {"app": "mlflow"}, "createTime": "2026-01-31T10:00:00.000000Z",
        "updateTime": "2026-01-31T10:05:00.000000Z", "creator": "ci@test-project.iam.gserviceaccount.com",
        "lastModifier": "ci@test-project.iam.gserviceaccount.com", "ingress": "INGRESS_TRAFFIC_ALL",
        "launchStage": "GA",
        "template": {
            "scaling": {"maxInstanceCount": 100},
            "timeout": "300s",
            "serviceAccount": "123456789012-compute@developer.gserviceaccount.com",
            "maxInstanceRequestConcurrency": 80,
            "containers": [{
                "image": IMAGE,
                "args": ["serve"],
                "env": [
                    {"name": "MLFLOW_HOST", "value": "0.0.0.0"},
                    {"name": "DB_PASSWORD", "valueSource": {"secretKeyRef": {
                        "secret": "projects/test-project/secrets/mlflow-db", "version": "latest"}}},
                    {"name": "EMPTY"},
                ],
                "resources": {"limits": {"cpu": "1000m", "memory": "2Gi"}, "cpuIdle": True},
                "ports": [{"name": "http1", "containerPort": 5000}],
                "volumeMounts": [{"name": "cloudsql", "mountPath": "/cloudsql"}],
                "startupProbe": {"timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1,
                                 "tcpSocket": {"port": 5000}},
            }],
            "volumes": [{"name": "cloudsql",
                         "cloudSqlInstance": {"instances": ["test-project:europe-west1:mlops-pg"]}}],
        },
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
        "observedGeneration": "2",
        "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED",
                              "lastTransitionTime": "2026-01-31T10:05:30.000000Z"},
        "conditions": [{"type": "RoutesReady", "state": "CONDITION_SUCCEEDED"},
                       {"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED"}],
        "latestReadyRevision": NAME + "/revisions/mlflow-00002-x7k",
        "latestCreatedRevision": NAME + "/revisions/mlflow-00002-x7k",
        "trafficStatuses": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
        "uri": "https://mlflow-abcdefghij-ew.a.run.app",
        "urls": ["https://mlflow-123456789012.europe-west1.run.app"],
        "etag": '"CNXo6r0GEMDn9v4C/cHJvamVjdHMvdGVzdC1wcm9qZWN0"',
    }
    service["template"].update(template_overrides)
    return service


MLFLOW = dict(args=["serve"], port=5000, cpu="1", memory="2Gi", labels={"app": "mlflow"},
              env={"MLFLOW_HOST": "0.0.0.0", "EMPTY": ""},
              secret_env={"DB_PASSWORD": {"secret": "mlflow-db"}},
              cloudsql_instances=["test-project:europe-west1:mlops-pg"])


def mlflow(**overrides):
    """The parameters of the MLflow service the server_service() answer describes, with some overridden."""
    options = dict(MLFLOW)
    options.update(overrides)
    return params(**options)


# ---------------------------------------------------------------- options -> body

def test_minimal_service_sends_the_image_and_traffic_to_latest_only():
    assert cloudrun.build_service(params()) == {
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
        "template": {"containers": [{"image": IMAGE}]},
    }


def test_every_service_option_lands_on_its_documented_field():
    body = cloudrun.build_service(params(
        command=["python"], args=["-m", "app"], env={"B": "2", "A": 1},
        secret_env={"TOKEN": {"secret": "projects/test-project/secrets/api-token", "version": 3},
                    "OTHER": {"secret": "projects/shared-proj/secrets/key"}},
        port=8000, cpu="2", memory="1Gi", cpu_idle=False, startup_cpu_boost=True, min_instances=0,
        max_instances=5, concurrency=40, request_timeout=60, service_account="serving",
        ingress="internal-and-cloud-load-balancing", execution_environment="gen2",
        cloudsql_instances=["test-project:europe-west1:pg"],
        volumes=[volume("models", "/models", gcs=dict(bucket="models-bucket", read_only=True)),
                 volume("conf", "/etc/conf", secret=dict(secret="app-conf", version=None, path="app.yaml")),
                 volume("scratch", "/scratch", in_memory=dict(size_limit="256Mi"))],
        startup_probe=probe(tcp_socket=dict(port=None), period_seconds=5, failure_threshold=24),
        liveness_probe=probe(http_get=dict(path="/health", port=None), initial_delay_seconds=0),
        labels={"app": "serving"}, description="Serving API",
    ))
    template = body["template"]
    container = template["containers"][0]
    assert body["description"] == "Serving API" and body["labels"] == {"app": "serving"}
    assert isinstance(body["labels"], Exact)
    assert body["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert container["command"] == ["python"] and container["args"] == ["-m", "app"]
    assert container["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "OTHER", "valueSource": {"secretKeyRef": {"secret": "projects/shared-proj/secrets/key",
                                                           "version": "latest"}}},
        {"name": "TOKEN", "valueSource": {"secretKeyRef": {"secret": "api-token", "version": "3"}}},
    ], "own-project secrets by ID, versions as strings, in name order"
    assert container["ports"] == [{"containerPort": 8000}]
    assert container["resources"] == {"limits": {"cpu": "2", "memory": "1Gi"}, "cpuIdle": False,
                                      "startupCpuBoost": True}
    assert container["startupProbe"] == {"tcpSocket": {}, "periodSeconds": 5, "failureThreshold": 24}
    assert container["livenessProbe"] == {"httpGet": {"path": "/health"}, "initialDelaySeconds": 0}
    assert container["volumeMounts"] == [
        {"name": "cloudsql", "mountPath": "/cloudsql"}, {"name": "conf", "mountPath": "/etc/conf"},
        {"name": "models", "mountPath": "/models"}, {"name": "scratch", "mountPath": "/scratch"}]
    assert template["volumes"] == [
        {"name": "cloudsql", "cloudSqlInstance": {"instances": ["test-project:europe-west1:pg"]}},
        {"name": "conf", "secret": {"secret": "app-conf", "items": [{"path": "app.yaml", "version": "latest"}]}},
        {"name": "models", "gcs": {"bucket": "models-bucket", "readOnly": True}},
        {"name": "scratch", "emptyDir": {"medium": "MEMORY", "sizeLimit": "256Mi"}},
    ]
    assert template["scaling"] == {"minInstanceCount": 0, "maxInstanceCount": 5}
    assert template["maxInstanceRequestConcurrency"] == 40 and template["timeout"] == "60s"
    assert template["serviceAccount"] == "serving@test-project.iam.gserviceaccount.com"
    assert template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"


def test_a_secret_volume_without_path_or_version_exposes_the_secret_under_its_name():
    body = cloudrun.build_service(params(volumes=[
        volume("conf", "/conf", secret=dict(secret="app-conf", version=None, path=None))]))
    assert body["template"]["volumes"] == [{"name": "conf", "secret": {"secret": "app-conf", "items": []}}]
    pinned = cloudrun.build_service(params(volumes=[
        volume("conf", "/conf", secret=dict(secret="app-conf", version="2", path=None))]))
    assert pinned["template"]["volumes"][0]["secret"]["items"] == [{"path": "app-conf", "version": "2"}]


def test_an_empty_cloudsql_list_removes_the_connections_and_sends_empty_lists():
    body = cloudrun.build_service(params(cloudsql_instances=[]))
    assert body["template"]["volumes"] == [] and body["template"]["containers"][0]["volumeMounts"] == []


def test_job_body_puts_the_container_in_the_task_template():
    body = cloudrun.build_job(params(job=True, tasks=4, parallelism=2, max_retries=0, task_timeout=900,
                                     args=["migrate"], service_account="migrate@other.iam.gserviceaccount.com",
                                     labels={"app": "mlflow"}, cpu="1", memory="512Mi"))
    assert body == {
        "labels": {"app": "mlflow"},
        "template": {"taskCount": 4, "parallelism": 2, "template": {
            "containers": [{"image": IMAGE, "args": ["migrate"],
                            "resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}],
            "serviceAccount": "migrate@other.iam.gserviceaccount.com",
            "maxRetries": 0, "timeout": "900s",
        }},
    }


def test_a_new_service_with_resources_keeps_cpu_only_during_requests_unless_asked():
    service = Service(Stub(params(cpu="1")))
    body = service.create_body(prune(service.desired()))
    assert body["template"]["containers"][0]["resources"] == {"limits": {"cpu": "1"}, "cpuIdle": True}
    service = Service(Stub(params(cpu="1", cpu_idle=False)))
    assert service.create_body(prune(service.desired()))["template"]["containers"][0]["resources"]["cpuIdle"] is False
    service = Service(Stub(params()))
    assert "resources" not in service.create_body(prune(service.desired()))["template"]["containers"][0]


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("overrides, expected", [
    (dict(memory="512MB"), "memory '512MB' is not a size such as 512Mi"),
    (dict(memory="64Mi"), "from 128Mi to 32Gi"),
    (dict(memory="256Mi", execution_environment="gen2"), "gen2 execution environment needs at least 512Mi"),
    (dict(cpu="3"), "Cloud Run takes 1, 2, 4, 6 or 8"),
    (dict(cpu="two"), "cpu 'two' is not a CPU count"),
    (dict(cpu="0.01"), "from 0.08 to 8 vCPU"),
    (dict(cpu="1", memory="8Gi"), "1 vCPU take at most 4Gi"),
    (dict(cpu="4", memory="1Gi"), "cpu 4 needs at least 2Gi"),
    (dict(cpu="0.5", concurrency=10), "takes concurrency 1 only, got 10"),
    (dict(cpu="500m", cpu_idle=False), "takes cpu_idle: true only"),
    (dict(concurrency=0), "concurrency must be from 1 to 1000, got 0"),
    (dict(concurrency=1001), "concurrency must be from 1 to 1000"),
    (dict(request_timeout=3601), "request_timeout must be from 1 to 3600"),
    (dict(port=70000), "port must be from 1 to 65535"),
    (dict(min_instances=5, max_instances=2), "min_instances (5) must not exceed max_instances (2)"),
    (dict(max_instances=0), "max_instances must be at least 1"),
    (dict(env={"PORT": "8080"}), "env name 'PORT' is reserved"),
    (dict(env={"1BAD": "x"}), "env name '1BAD' must start with a letter"),
    (dict(env={"DEBUG": True}), "env 'DEBUG' has value True: values must be strings"),
    (dict(env={"A": "1"}, secret_env={"A": {"secret": "s"}}), "env and secret_env both set A"),
    (dict(secret_env={"A": "s"}), "secret_env 'A' must be a mapping"),
    (dict(secret_env={"A": {"secret": "bad/name"}}), "secret 'bad/name' must be a secret ID"),
    (dict(secret_env={"A": {"secret": "s", "version": "-1"}}), "version '-1' must be 'latest'"),
    (dict(secret_env={"A": {"secret": "s", "verison": "1"}}), "unknown key(s) verison"),
    (dict(volumes=[volume("v", "/v")]), "volumes[0] (v) needs exactly one of secret, gcs or in_memory, got none"),
    (dict(volumes=[volume("v", "/v", gcs=dict(bucket="b", read_only=False),
                          in_memory=dict(size_limit=None))]), "got gcs, in_memory"),
    (dict(volumes=[volume("v", "relative", in_memory=dict(size_limit=None))]), "mount_path 'relative'"),
    (dict(volumes=[volume("v", "/a", in_memory=dict(size_limit=None)),
                   volume("v", "/b", in_memory=dict(size_limit=None))]), "volumes name 'v' is used twice"),
    (dict(volumes=[volume("v", "/v", in_memory=dict(size_limit="lots"))]), "in_memory.size_limit 'lots'"),
    (dict(volumes=[volume("cloudsql", "/x", in_memory=dict(size_limit=None))], cloudsql_instances=[]),
     "taken by the Cloud SQL volume"),
    (dict(volumes=[volume("s", "/s", secret=dict(secret="x", version=None, path="../etc"))]), "relative file path"),
    (dict(cloudsql_instances=["mlops-pg"]), "connection name PROJECT:REGION:INSTANCE"),
    (dict(startup_probe=probe()), "startup_probe needs exactly one of http_get or tcp_socket, got none"),
    (dict(startup_probe=probe(http_get=dict(path="/", port=None), tcp_socket=dict(port=None))),
     "got http_get, tcp_socket"),
    (dict(liveness_probe=probe(tcp_socket=dict(port=None))), "liveness probes use http_get"),
    (dict(startup_probe=probe(http_get=dict(path="health", port=None))), "must start with /"),
    (dict(startup_probe=probe(tcp_socket=dict(port=None), period_seconds=300)),
     "startup_probe.period_seconds must be from 1 to 240"),
    (dict(liveness_probe=probe(http_get=dict(path="/", port=None), timeout_seconds=20, period_seconds=10)),
     "timeout_seconds (20) must not exceed period_seconds (10)"),
    (dict(service_account="Not An Account"), "service_account 'Not An Account'"),
    (dict(labels={"App": "x"}), "label key 'App'"),
    (dict(image=None), "image is required with state: present"),
    (dict(image="has space"), "image 'has space'"),
    (dict(name="Bad_Name"), "name 'Bad_Name'"),
    (dict(name="a" * 50), "at most 49"),
    (dict(location="europe"), "location 'europe'"),
    (dict(description="x" * 513), "at most 512"),
])
def test_service_options_are_checked_with_a_clear_message(overrides, expected):
    errors = cloudrun.option_errors(params(**overrides))
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("overrides, expected", [
    (dict(tasks=0), "tasks must be from 1 to 10000"),
    (dict(tasks=2, parallelism=3), "parallelism (3) must not exceed tasks (2)"),
    (dict(max_retries=11), "max_retries must be from 0 to 10"),
    (dict(task_timeout=0), "task_timeout must be from 1"),
    (dict(env={"CLOUD_RUN_TASK_INDEX": "1"}), "reserved"),
    (dict(name="a" * 64), "at most 63"),
])
def test_job_options_are_checked_with_a_clear_message(overrides, expected):
    errors = cloudrun.option_errors(params(job=True, **overrides), job=True)
    assert any(expected in e for e in errors), errors


def test_valid_options_have_no_error_and_absent_needs_no_image():
    assert cloudrun.option_errors(mlflow(execution_environment="gen2", cpu="0.5", memory="512Mi", concurrency=1,
                                         service_account="ml@x.iam.gserviceaccount.com", min_instances=0,
                                         max_instances=1)) == []
    assert cloudrun.option_errors(params(state="absent", image=None)) == []
    assert cloudrun.option_errors(params(job=True, name="a" * 63, tasks=3, parallelism=0, max_retries=0), job=True) == []


def test_validation_messages_are_raised_together_before_any_request():
    service = Service(Stub(params(memory="512MB", concurrency=0)))
    with pytest.raises(cloudrun.ResourceError) as raised:
        service.validate()
    assert "512MB" in str(raised.value) and "concurrency" in str(raised.value)
    assert NAME in str(raised.value)


@pytest.mark.parametrize("text, millis", [("1", 1000), ("2", 2000), ("0.5", 500), ("500m", 500), ("1000m", 1000),
                                          ("1.0", 1000), ("x", None), ("1.2345", None), ("", None)])
def test_cpu_quantities(text, millis):
    assert cloudrun.cpu_millis(text) == millis


@pytest.mark.parametrize("text, size", [("512Mi", 512 * 2 ** 20), ("1Gi", 2 ** 30), ("0.5Gi", 2 ** 29),
                                        ("1G", 10 ** 9), ("1024", 1024), ("512MB", None), ("Mi", None)])
def test_memory_quantities(text, size):
    assert cloudrun.memory_bytes(text) == size


# ---------------------------------------------------------------- normalisation: no spurious change

def test_a_service_read_back_with_server_defaults_has_no_change():
    changed, view, desired = compare(Service, mlflow(), server_service())
    assert changed == [], (view, desired)
    # The before half of a diff shows only what the options talk about.
    before = project(view, desired)
    assert set(before["template"]["containers"][0]) == {"image", "args", "env", "ports", "resources", "volumeMounts"}
    assert before["template"]["containers"][0]["ports"] == [{"name": "http1", "containerPort": 5000}]
    assert "serviceAccount" not in before["template"] and "uri" not in before


def test_only_the_image_changes():
    changed, view, desired = compare(Service, mlflow(image=IMAGE[:-1] + "b"), server_service())
    assert changed == ["template.containers"]
    assert view["template"]["containers"][0]["image"] == IMAGE


@pytest.mark.parametrize("overrides, template, expected", [
    (dict(cpu="1000m"), {}, []),
    (dict(memory="2048Mi"), {}, []),
    (dict(request_timeout=300), {}, []),
    (dict(request_timeout=300), {"timeout": "300.000s"}, []),
    (dict(request_timeout=60), {}, ["template.timeout"]),
    (dict(concurrency=80, max_instances=100), {}, []),
    (dict(min_instances=0), {}, []),
    (dict(min_instances=1), {}, ["template.scaling"]),
    (dict(service_account="123456789012-compute@developer.gserviceaccount.com"), {}, []),
    (dict(service_account="mlflow"), {}, ["template.serviceAccount"]),
    (dict(cpu_idle=True), {}, []),
    (dict(cpu_idle=False), {}, ["template.containers"]),
    (dict(startup_cpu_boost=False), {}, []),
    (dict(port=8080), {}, ["template.containers"]),
    (dict(startup_probe=probe(tcp_socket=dict(port=5000))), {}, []),
    (dict(startup_probe=probe(tcp_socket=dict(port=None), period_seconds=240)), {}, []),
    (dict(startup_probe=probe(http_get=dict(path="/health", port=None))), {}, ["template.containers"]),
    (dict(ingress="all"), {}, []),
    (dict(ingress="internal"), {}, ["ingress"]),
    (dict(execution_environment="gen2"), {}, ["template.executionEnvironment"]),
    (dict(labels={"app": "mlflow", "team": "ml"}), {}, ["labels"]),
    (dict(labels={}), {}, ["labels"]),
    (dict(description=""), {}, []),
])
def test_compare_by_value_on_the_fields_set(overrides, template, expected):
    changed = compare(Service, mlflow(**overrides), server_service(**template))[0]
    assert changed == expected


def test_the_secret_of_the_own_project_compares_equal_in_both_spellings():
    p = mlflow(secret_env={"DB_PASSWORD": {"secret": "projects/test-project/secrets/mlflow-db",
                                           "version": "latest"}})
    assert compare(Service, p, server_service())[0] == []
    p = mlflow(secret_env={"DB_PASSWORD": {"secret": "mlflow-db", "version": "2"}})
    assert compare(Service, p, server_service())[0] == ["template.containers"]


def test_env_and_secret_env_manage_their_own_part_only():
    actual = server_service()
    # Only env set: the secret var read is kept (no change), and an added plain var is a change.
    p = params(image=IMAGE, env={"MLFLOW_HOST": "0.0.0.0", "EMPTY": ""})
    changed, view, desired = compare(Service, p, actual)
    assert changed == [] and [v["name"] for v in desired["template"]["containers"][0]["env"]] == [
        "DB_PASSWORD", "EMPTY", "MLFLOW_HOST"]
    p = params(image=IMAGE, env={"MLFLOW_HOST": "0.0.0.0"})
    changed, view, desired = compare(Service, p, actual)
    assert changed == ["template.containers"]
    assert [v["name"] for v in desired["template"]["containers"][0]["env"]] == ["DB_PASSWORD", "MLFLOW_HOST"]
    # Only secret_env set, as {}: the secret var goes, the plain ones stay.
    changed, view, desired = compare(Service, params(image=IMAGE, secret_env={}), actual)
    assert changed == ["template.containers"]
    assert [v["name"] for v in desired["template"]["containers"][0]["env"]] == ["EMPTY", "MLFLOW_HOST"]


def test_volumes_and_cloudsql_instances_manage_their_own_part_only():
    actual = server_service()
    p = params(image=IMAGE, volumes=[volume("scratch", "/scratch", in_memory=dict(size_limit="64Mi"))])
    changed, view, desired = compare(Service, p, actual)
    assert changed == ["template.containers", "template.volumes"]
    assert [v["name"] for v in desired["template"]["volumes"]] == ["cloudsql", "scratch"]
    assert desired["template"]["containers"][0]["volumeMounts"] == [
        {"name": "cloudsql", "mountPath": "/cloudsql"}, {"name": "scratch", "mountPath": "/scratch"}]
    changed, view, desired = compare(Service, params(image=IMAGE, cloudsql_instances=[]), actual)
    assert changed == ["template.containers", "template.volumes"]
    assert desired["template"]["volumes"] == [] and desired["template"]["containers"][0]["volumeMounts"] == []
    changed = compare(Service, params(image=IMAGE, volumes=[]), actual)[0]
    assert changed == []
    # Both set: both parts are replaced.
    mounted = server_service(volumes=actual["template"]["volumes"] + [{"name": "old", "emptyDir": {"medium": "MEMORY"}}])
    mounted["template"]["containers"][0]["volumeMounts"].append({"name": "old", "mountPath": "/old"})
    changed, view, desired = compare(Service, params(image=IMAGE, volumes=[], cloudsql_instances=[]), mounted)
    assert changed == ["template.containers", "template.volumes"]
    assert desired["template"]["volumes"] == [] and desired["template"]["containers"][0]["volumeMounts"] == []


def test_volume_settings_compare_as_a_whole():
    mounted = server_service(volumes=[
        {"name": "conf", "secret": {"secret": "projects/test-project/secrets/app-conf", "defaultMode": 292}},
        {"name": "models", "gcs": {"bucket": "models-bucket"}},
        {"name": "scratch", "emptyDir": {"medium": "MEMORY", "sizeLimit": "0.25Gi"}}])
    mounted["template"]["containers"][0]["volumeMounts"] = [
        {"name": "scratch", "mountPath": "/scratch"}, {"name": "models", "mountPath": "/models"},
        {"name": "conf", "mountPath": "/conf", "subPath": ""}]
    wanted = [volume("conf", "/conf", secret=dict(secret="app-conf", version=None, path=None)),
              volume("models", "/models", gcs=dict(bucket="models-bucket", read_only=False)),
              volume("scratch", "/scratch", in_memory=dict(size_limit="256Mi"))]
    assert compare(Service, params(image=IMAGE, volumes=wanted), mounted)[0] == []
    wanted[1]["gcs"]["read_only"] = True
    assert compare(Service, params(image=IMAGE, volumes=wanted), mounted)[0] == ["template.volumes"]
    wanted[1]["gcs"]["read_only"] = False
    wanted[2]["in_memory"]["size_limit"] = None
    assert compare(Service, params(image=IMAGE, volumes=wanted), mounted)[0] == ["template.volumes"], \
        "a size limit dropped from the options is removed"


def test_a_failed_latest_revision_is_a_change_that_redeploys():
    failed = server_service()
    failed["terminalCondition"] = {"type": "Ready", "state": "CONDITION_FAILED", "reason": "CONTAINER_MISSING",
                                   "message": "Image not found"}
    service = Service(Stub(mlflow()))
    desired = prune(service.desired())
    view = service.normalize(failed)
    assert service.changes(view, desired) == ["terminalCondition"] and service.failed is True
    assert project(view, desired)["terminalCondition"] == {"state": "CONDITION_FAILED"}
    body = cloudrun.update_body(failed, desired, ["terminalCondition"])
    assert "terminalCondition" not in body


def test_job_read_back_with_defaults_has_no_change():
    job = {
        "name": "projects/test-project/locations/europe-west1/jobs/migrate", "generation": "1",
        "uid": "u", "etag": '"e1"', "launchStage": "GA", "createTime": "t", "updateTime": "t",
        "executionCount": 2,
        "latestCreatedExecution": {"name": "migrate-abcde", "completionStatus": "EXECUTION_SUCCEEDED"},
        "template": {"taskCount": 1, "parallelism": 0, "template": {
            "maxRetries": 3, "timeout": "600s",
            "serviceAccount": "123456789012-compute@developer.gserviceaccount.com",
            "containers": [{"image": IMAGE, "args": ["migrate"],
                            "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}}}],
        }},
        "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
    }
    p = params(job=True, args=["migrate"], tasks=1, task_timeout=600, max_retries=3, cpu="1", parallelism=0)
    assert compare(Job, p, job)[0] == []
    assert compare(Job, params(job=True, max_retries=0), job)[0] == ["template.template.maxRetries"]
    del job["template"]["template"]["maxRetries"]
    assert compare(Job, params(job=True, max_retries=0), job)[0] == ["template.template.maxRetries"], \
        "maxRetries tracks presence: absent is Cloud Run's default 3, not 0"
    assert compare(Job, params(job=True, tasks=2), job)[0] == ["template.taskCount"]


# ---------------------------------------------------------------- the update body

def test_update_body_is_the_read_service_without_output_fields_merged_with_the_desired_fields():
    raw = server_service(revision="mlflow-custom")
    sidecar = {"name": "otel", "image": "otel/collector"}
    raw["template"]["containers"][0]["buildInfo"] = {"functionTarget": "x"}
    raw["template"]["containers"].append(sidecar)
    raw["labels"] = {"app": "mlflow", "old": "x"}
    p = mlflow(image=IMAGE[:-1] + "b", labels={"app": "mlflow"},
               liveness_probe=probe(http_get=dict(path="/health", port=None)))
    service = Service(Stub(p))
    desired = prune(service.desired())
    changed = service.changes(service.normalize(raw), desired)
    body = cloudrun.update_body(raw, desired, changed)
    assert not set(body) & cloudrun.SERVICE_OUTPUT_ONLY
    assert body["etag"] == raw["etag"] and body["name"] == NAME and body["launchStage"] == "GA"
    assert body["labels"] == {"app": "mlflow"}, "labels replaced as a whole"
    template = body["template"]
    assert "revision" not in template, "a new template must not reuse a revision name"
    assert template["serviceAccount"] == raw["template"]["serviceAccount"], "fields not set are kept"
    assert template["scaling"] == {"maxInstanceCount": 100} and template["timeout"] == "300s"
    container = template["containers"][0]
    assert container["image"] == IMAGE[:-1] + "b" and "buildInfo" not in container
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "2Gi"}, "cpuIdle": True}
    assert container["ports"] == [{"containerPort": 5000}]
    assert container["startupProbe"] == raw["template"]["containers"][0]["startupProbe"]
    assert container["livenessProbe"] == {"httpGet": {"path": "/health"}}
    assert [v["name"] for v in container["env"]] == ["DB_PASSWORD", "EMPTY", "MLFLOW_HOST"]
    assert template["containers"][1] == sidecar, "other containers are kept"
    assert raw["template"]["containers"][0]["image"] == IMAGE, "the read resource is not modified"


def test_update_body_keeps_the_revision_name_when_the_template_does_not_change():
    raw = server_service(revision="mlflow-custom")
    service = Service(Stub(mlflow(labels={"app": "other"})))
    desired = prune(service.desired())
    changed = service.changes(service.normalize(raw), desired)
    body = cloudrun.update_body(raw, desired, changed)
    assert body["template"]["revision"] == "mlflow-custom" and body["labels"] == {"app": "other"}


def test_a_probe_is_replaced_as_a_whole():
    base = {"tcpSocket": {"port": 8080}, "periodSeconds": 240}
    merged = cloudrun.merge({"startupProbe": base}, {"startupProbe": {"httpGet": {"path": "/"}}})
    assert merged == {"startupProbe": {"httpGet": {"path": "/"}}}


# ---------------------------------------------------------------- messages and results

def test_not_ready_message_names_the_revision_reason_and_message():
    failed = server_service()
    failed["latestCreatedRevision"] = NAME + "/revisions/mlflow-00003-bad"
    failed["terminalCondition"] = {"type": "Ready", "state": "CONDITION_FAILED", "reason": "CONTAINER_MISSING",
                                   "revisionReason": "HEALTH_CHECK_CONTAINER_ERROR",
                                   "message": "Image 'x' not found."}
    message = cloudrun.not_ready_message("service", NAME, failed)
    assert message == ("Cloud Run service %s: revision mlflow-00003-bad is not ready (CONTAINER_MISSING, "
                       "HEALTH_CHECK_CONTAINER_ERROR: Image 'x' not found.); traffic stays on revision "
                       "mlflow-00002-x7k" % NAME)
    del failed["latestReadyRevision"]
    assert cloudrun.not_ready_message("service", NAME, failed).endswith("the service has no ready revision")


def test_execution_error_and_summary():
    failed = {"name": "projects/p/locations/l/jobs/j/executions/j-abc", "failedCount": 1, "succeededCount": 0,
              "logUri": "https://console.cloud.google.com/logs", "completionTime": "2026-01-31T10:00:00Z",
              "conditions": [{"type": "Completed", "state": "CONDITION_FAILED", "executionReason": "NON_ZERO_EXIT_CODE",
                              "message": "Task j-abc-task0 failed: the container exited with status 1"}]}
    assert cloudrun.execution_error(failed) == ("NON_ZERO_EXIT_CODE: Task j-abc-task0 failed: the container exited "
                                                "with status 1")
    assert cloudrun.execution_summary(failed) == {
        "name": failed["name"], "succeeded_count": 0, "failed_count": 1, "log_uri": failed["logUri"],
        "completion_time": failed["completionTime"]}
    done = dict(failed, failedCount=0, succeededCount=1,
                conditions=[{"type": "Completed", "state": "CONDITION_SUCCEEDED"}])
    assert cloudrun.execution_error(done) is None


def test_field_names_granularity():
    assert cloudrun.field_names(["labels", "template.containers", "template.scaling.minInstanceCount"]) == [
        "labels", "template.containers", "template.scaling"]
    assert cloudrun.field_names(["template.taskCount", "template.template.containers",
                                 "template.template.timeout"], job=True) == [
        "template.taskCount", "template.template.containers", "template.template.timeout"]


def test_zero_fill_only_where_desired_asks_for_zero():
    actual = {"template": {"scaling": {"maxInstanceCount": 100}}}
    desired = {"template": {"scaling": {"minInstanceCount": 0}, "maxRetries": 0}, "cpuIdle": False,
               "labels": Exact()}
    filled = cloudrun.zero_fill(copy.deepcopy(actual), desired)
    assert filled == {"template": {"scaling": {"maxInstanceCount": 100, "minInstanceCount": 0}}, "cpuIdle": False}
    assert differences(desired, filled) == ["template.maxRetries"]


@pytest.mark.parametrize("created, updated, status, expected", [
    ("2026-01-31T10:02:00.123456789Z", "2026-01-31T10:02:00Z", "EXECUTION_SUCCEEDED", True),
    ("2026-01-31T10:02:00Z", "2026-01-31T10:02:00.5Z", "EXECUTION_SUCCEEDED", False),   # run before the change
    ("2026-01-31T11:00:00Z", "2026-01-31T10:02:00Z", "EXECUTION_FAILED", False),
    ("2026-01-31T11:00:00Z", "2026-01-31T10:02:00Z", "EXECUTION_RUNNING", False),
    (None, "2026-01-31T10:02:00Z", None, False),                                         # never run
])
def test_succeeded_since_update(created, updated, status, expected):
    latest = {"createTime": created, "completionStatus": status} if created else None
    assert cloudrun.succeeded_since_update({"updateTime": updated, "latestCreatedExecution": latest}) is expected
