"""cloud_run_service against the fake Cloud Run Admin API v2, run as a real module process, asserted on the wire."""

from __future__ import annotations

import pytest

from tests.conftest import PROJECT
from tests.integration.cloud_run_resource import LOCATION, RunResource, make_account, make_secret

PARENT = "/v2/projects/%s/locations/%s/services" % (PROJECT, LOCATION)
IMAGE = "europe-west1-docker.pkg.dev/%s/mlops/app:" % PROJECT


@pytest.fixture
def service(fake_gcp, unique, gcp_module):
    return RunResource(fake_gcp, gcp_module, "cloud_run_service", "services", "svc-" + unique, IMAGE + "1")


def writes(fake):
    return [(c.method, c.path) for c in fake.writes()]


def short(name):
    return name.rsplit("/", 1)[1] if name else None


def test_lifecycle_create_unchanged_new_revision_labels_delete(service, fake_gcp):
    options = dict(args=["serve"], port=5000, cpu="1", memory="1Gi", max_instances=3, concurrency=40,
                   request_timeout=60, ingress="all", env={"MODE": "prod", "WORKERS": 2},
                   labels={"app": "mlflow"}, description="MLflow")
    created = service.run(**options)
    assert created["rc"] == 0 and created["changed"] is True, created
    assert writes(fake_gcp) == [("POST", PARENT)]
    post = fake_gcp.writes()[0]
    assert post.query == {"serviceId": service.name}
    assert post.body["template"]["containers"][0]["resources"]["cpuIdle"] is True, "CPU only during requests"
    actual = service.read()
    first = short(actual["latestReadyRevision"])
    assert created["url"] == actual["uri"] and created["url"].startswith("https://")
    assert created["revision"] == first and first.startswith(service.name + "-00001-")
    assert created["service"]["name"] == actual["name"] and "@type" not in created["service"]
    assert actual["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
    container = actual["template"]["containers"][0]
    assert container["image"] == IMAGE + "1" and container["args"] == ["serve"]
    assert container["ports"][0]["containerPort"] == 5000
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert sorted((e["name"], e["value"]) for e in container["env"]) == [("MODE", "prod"), ("WORKERS", "2")]
    assert actual["template"]["scaling"]["maxInstanceCount"] == 3
    assert actual["template"]["maxInstanceRequestConcurrency"] == 40 and actual["template"]["timeout"] == "60s"
    assert actual["labels"] == {"app": "mlflow"} and actual["description"] == "MLflow"
    assert actual["traffic"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]

    # A run with nothing to change: exactly one read, no write.
    fake_gcp.clear()
    again = service.run(**options)
    assert again["rc"] == 0 and again["changed"] is False, again
    assert [(c.method, c.path) for c in fake_gcp.requests] == [("GET", service.path)]
    assert again["url"] == created["url"] and again["revision"] == first
    assert "diff" not in again and "changed_fields" not in again

    # A new image: a new revision, sent as the read service with the etag read.
    fake_gcp.clear()
    etag = service.read()["etag"]
    updated = service.run(**dict(options, image=IMAGE + "2"))
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert updated["changed_fields"] == ["template.containers"]
    assert writes(fake_gcp) == [("PATCH", service.path)]
    patch = fake_gcp.writes()[0]
    assert patch.body["etag"] == etag and "updateMask" not in patch.query
    assert patch.body["template"]["containers"][0]["image"] == IMAGE + "2"
    assert not {"uri", "generation", "terminalCondition", "latestReadyRevision"} & set(patch.body)
    actual = service.read()
    second = short(actual["latestReadyRevision"])
    assert second.startswith(service.name + "-00002-") and updated["revision"] == second
    assert actual["template"]["containers"][0]["image"] == IMAGE + "2"
    assert actual["template"]["scaling"]["maxInstanceCount"] == 3, "fields not in the change are kept"
    assert actual["etag"] != etag

    # A label change: no new revision.
    fake_gcp.clear()
    relabeled = service.run(**dict(options, image=IMAGE + "2", labels={"app": "mlflow", "team": "ml"}))
    assert relabeled["rc"] == 0 and relabeled["changed"] is True, relabeled
    assert relabeled["changed_fields"] == ["labels"] and writes(fake_gcp) == [("PATCH", service.path)]
    actual = service.read()
    assert actual["labels"] == {"app": "mlflow", "team": "ml"}
    assert short(actual["latestCreatedRevision"]) == second and relabeled["revision"] == second

    # Labels left out of the options stay; a label dropped from the options goes.
    fake_gcp.clear()
    assert service.run(image=IMAGE + "2")["changed"] is False and fake_gcp.writes() == []
    assert service.run(image=IMAGE + "2", labels={"team": "ml"})["changed_fields"] == ["labels"]
    assert service.read()["labels"] == {"team": "ml"}

    fake_gcp.clear()
    deleted = service.run(state="absent")
    assert deleted["rc"] == 0 and deleted["changed"] is True and deleted["service"] == {}, deleted
    assert writes(fake_gcp) == [("DELETE", service.path)]
    assert service.read() is None

    fake_gcp.clear()
    gone = service.run(state="absent")
    assert gone["rc"] == 0 and gone["changed"] is False and fake_gcp.writes() == []
    assert len(fake_gcp.requests) == 1


def test_check_mode_writes_nothing_and_diff_shows_the_changed_fields(service, fake_gcp):
    preview = service.run(check=True, cpu="2", memory="2Gi", labels={"app": "x"})
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert fake_gcp.writes() == [] and service.read() is None
    assert preview["url"] is None and preview["revision"] is None
    assert preview["diff"]["before"] == {}
    after = preview["diff"]["after"]
    assert after["labels"] == {"app": "x"}
    assert after["template"]["containers"][0] == {"image": IMAGE + "1",
                                                  "resources": {"limits": {"cpu": "2", "memory": "2Gi"}}}

    assert service.run(cpu="2", memory="2Gi", labels={"app": "x"})["rc"] == 0
    fake_gcp.clear()
    preview = service.run(check=True, image=IMAGE + "2", cpu="2", memory="2Gi", labels={"app": "y"},
                          min_instances=1)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert fake_gcp.writes() == []
    assert preview["changed_fields"] == ["labels", "template.containers", "template.scaling"]
    before, after = preview["diff"]["before"], preview["diff"]["after"]
    assert before["labels"] == {"app": "x"} and after["labels"] == {"app": "y"}
    assert before["template"]["containers"][0]["image"] == IMAGE + "1"
    assert after["template"]["containers"][0]["image"] == IMAGE + "2"
    assert before["template"]["containers"][0]["resources"] == {"limits": {"cpu": "2", "memory": "2Gi"}}, \
        "only the fields the options set, not cpuIdle or the ports Cloud Run filled in"
    assert before["template"].get("scaling", {}).get("minInstanceCount", 0) == 0
    assert after["template"]["scaling"] == {"minInstanceCount": 1}
    assert "uri" not in before and "etag" not in before
    assert service.read()["template"]["containers"][0]["image"] == IMAGE + "1"

    fake_gcp.clear()
    removal = service.run(check=True, state="absent")
    assert removal["rc"] == 0 and removal["changed"] is True and fake_gcp.writes() == []
    assert removal["diff"]["after"] == {} and removal["diff"]["before"]["name"].endswith(service.name)
    assert service.read() is not None
    service.run(state="absent")


def test_without_diff_the_result_has_no_diff(service, fake_gcp):
    created = service.run(diff=False)
    assert created["rc"] == 0 and "diff" not in created
    assert service.run(diff=False, image=IMAGE + "2")["changed_fields"] == ["template.containers"]
    assert service.run(state="absent")["changed"] is True


@pytest.mark.parametrize("options, expected", [
    (dict(memory="512MB"), "memory '512MB' is not a size such as 512Mi"),
    (dict(concurrency=0), "concurrency must be from 1 to 1000, got 0"),
    (dict(ingress="public"), "value of ingress must be one of"),
    (dict(cpu="3"), "1, 2, 4, 6 or 8"),
    (dict(image=None), "image is required"),
    (dict(env={"PORT": "8080"}), "reserved"),
    (dict(volumes=[{"name": "v", "mount_path": "/v", "gcs": {"bucket": "b"}, "in_memory": {}}]),
     "exactly one of secret, gcs or in_memory"),
    (dict(startup_probe={"initial_delay_seconds": 5}), "startup_probe needs exactly one of http_get or tcp_socket"),
    (dict(cloudsql_instances=["just-a-name"]), "PROJECT:REGION:INSTANCE"),
    (dict(secret_env={"TOKEN": {"secret": "a/b"}}), "secret 'a/b'"),
    (dict(name="Bad_Name"), "name 'Bad_Name'"),
    (dict(labels={"App": "x"}), "label key 'App'"),
])
def test_bad_input_fails_before_any_request(service, fake_gcp, options, expected):
    result = service.run(**options)
    assert result["rc"] == 1 and expected in result["msg"], result
    assert fake_gcp.requests == []


def test_throttling_and_unavailable_bursts_are_retried(service, fake_gcp):
    fake_gcp.inject(429, count=2, method="GET", path=r"^run/.*/services/")
    fake_gcp.inject(503, count=2, method="POST", path=r"^run/.*/services$")
    fake_gcp.inject(503, count=1, method="GET", path=r"^run/.*/operations/")
    created = service.run(labels={"app": "x"})
    assert created["rc"] == 0 and created["changed"] is True, created
    assert len(fake_gcp.calls("GET", r"/services/")) == 3 and len(fake_gcp.calls("POST")) == 3
    assert service.read()["labels"] == {"app": "x"}

    fake_gcp.clear()
    fake_gcp.inject(503, count=2, method="PATCH")
    updated = service.run(labels={"app": "y"})
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert len(fake_gcp.calls("PATCH")) == 3 and service.read()["labels"] == {"app": "y"}


def test_a_lost_answer_on_create_converges(service, fake_gcp):
    # The first POST creates the service but its answer is lost; the retry meets 409 ALREADY_EXISTS.
    fake_gcp.inject(503, count=1, method="POST", path=r"^run/.*/services$", forward=True)
    created = service.run(labels={"app": "x"})
    assert created["rc"] == 0 and created["changed"] is True, created
    assert len(fake_gcp.calls("POST")) == 2
    assert created["url"] and created["revision"].startswith(service.name + "-00001-")
    fake_gcp.clear()
    again = service.run(labels={"app": "x"})
    assert again["changed"] is False and fake_gcp.writes() == [] and len(fake_gcp.requests) == 1


def test_a_lost_answer_on_update_converges(service, fake_gcp):
    assert service.run()["rc"] == 0
    # The PATCH went through but its answer is lost; the retry's etag is stale (409), and the service holds
    # what was asked.
    fake_gcp.inject(503, count=1, method="PATCH", forward=True)
    updated = service.run(image=IMAGE + "2")
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert len(fake_gcp.calls("PATCH")) == 2
    assert service.container()["image"] == IMAGE + "2"
    assert updated["revision"].startswith(service.name + "-00002-")


def test_a_revision_that_never_becomes_ready_fails_with_its_reason(service, fake_gcp):
    first = service.run()
    assert first["rc"] == 0, first
    fake_gcp.apis["run"].fail_revisions(count=1, reason="ContainerMissing",
                                        message="Image '%s' not found." % (IMAGE + "missing"))
    failed = service.run(image=IMAGE + "missing")
    assert failed["rc"] == 1, failed
    actual = service.read()
    bad = short(actual["latestCreatedRevision"])
    assert bad.startswith(service.name + "-00002-")
    message = failed["msg"]
    assert "revision %s is not ready" % bad in message
    assert "CONTAINER_MISSING" in message and "Image '%smissing' not found." % IMAGE in message
    assert "traffic stays on revision %s" % first["revision"] in message
    assert short(actual["latestReadyRevision"]) == first["revision"]

    # Check mode sees the failed revision as a change and writes nothing.
    fake_gcp.clear()
    preview = service.run(check=True, image=IMAGE + "missing")
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert preview["changed_fields"] == ["terminalCondition"] and fake_gcp.writes() == []
    assert preview["diff"]["before"]["terminalCondition"] == {"state": "CONDITION_FAILED"}
    assert preview["diff"]["after"]["terminalCondition"] == {"state": "CONDITION_SUCCEEDED"}

    # Once the cause is fixed (the image pushed), the same options deploy a new revision.
    fake_gcp.clear()
    fixed = service.run(image=IMAGE + "missing")
    assert fixed["rc"] == 0 and fixed["changed"] is True, fixed
    assert fixed["changed_fields"] == ["terminalCondition"]
    patch = fake_gcp.writes()[0]
    assert patch.method == "PATCH" and patch.query.get("forceNewRevision") == "true"
    assert fixed["revision"].startswith(service.name + "-00003-")
    assert service.read()["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"


def test_a_new_service_whose_revision_fails_reports_that_it_has_none_ready(service, fake_gcp):
    fake_gcp.apis["run"].fail_revisions(count=1, reason="HEALTH_CHECK_CONTAINER_ERROR",
                                        message="The user-provided container failed to start and listen on PORT=8080.")
    failed = service.run()
    assert failed["rc"] == 1, failed
    assert "HEALTH_CHECK_CONTAINER_ERROR" in failed["msg"] and "failed to start and listen" in failed["msg"]
    assert "no ready revision" in failed["msg"]
    assert service.run()["rc"] == 0


def test_slow_operations_are_waited_for(service, fake_gcp):
    fake_gcp.operation_polls = 3
    created = service.run(labels={"app": "x"})
    assert created["rc"] == 0 and created["changed"] is True, created
    assert len(fake_gcp.calls("GET", r"/operations/")) == 3
    assert created["revision"] and service.read()["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"


def test_a_timed_out_wait_is_picked_up_by_the_next_run(service, fake_gcp):
    fake_gcp.operation_polls = 1000
    slow = service.run(timeout=2, labels={"app": "x"})
    assert slow["rc"] == 1 and "still running" in slow["msg"] and "run again" in slow["msg"], slow
    assert service.read()["reconciling"] is True
    fake_gcp.operation_polls = 1
    fake_gcp.clear()
    again = service.run(labels={"app": "x"})
    assert again["rc"] == 0 and again["changed"] is False, again
    assert fake_gcp.writes() == [], "the create already asked for this; nothing is sent twice"
    assert again["revision"].startswith(service.name + "-00001-") and again["url"]
    assert not service.read().get("reconciling")


def test_secret_env_from_secret_manager(service, fake_gcp, unique):
    secret_id = "db-password-" + unique
    make_secret(fake_gcp, secret_id)
    options = dict(env={"DB_USER": "mlflow"},
                   secret_env={"DB_PASSWORD": {"secret": secret_id},
                               "DB_PASSWORD_V1": {"secret": "projects/%s/secrets/%s" % (PROJECT, secret_id),
                                                  "version": "1"}})
    created = service.run(**options)
    assert created["rc"] == 0, created
    env = {e["name"]: e for e in service.container()["env"]}
    assert env["DB_PASSWORD"]["valueSource"] == {"secretKeyRef": {"secret": secret_id, "version": "latest"}}
    assert env["DB_PASSWORD_V1"]["valueSource"] == {"secretKeyRef": {"secret": secret_id, "version": "1"}}
    assert env["DB_USER"]["value"] == "mlflow"
    assert "s3cret-value" not in str(created)

    fake_gcp.clear()
    assert service.run(**options)["changed"] is False and len(fake_gcp.requests) == 1

    # env alone leaves the secret vars alone; secret_env: {} removes them and keeps the plain ones.
    assert service.run(env={"DB_USER": "mlflow"})["changed"] is False
    removed = service.run(secret_env={})
    assert removed["changed_fields"] == ["template.containers"]
    assert [e["name"] for e in service.container()["env"]] == ["DB_USER"]

    missing = service.run(secret_env={"TOKEN": {"secret": "no-such-secret-" + unique}})
    assert missing["rc"] == 1 and "no-such-secret-" + unique in missing["msg"] and missing["status"] == 400, missing


def test_service_account_cloudsql_volumes_and_probes(service, fake_gcp, unique):
    email = make_account(fake_gcp, "run-" + unique)
    make_secret(fake_gcp, "conf-" + unique, "key: value")
    connection = "%s:europe-west1:pg-%s" % (PROJECT, unique)
    options = dict(
        service_account="run-" + unique, execution_environment="gen2", memory="1Gi",
        cloudsql_instances=[connection],
        volumes=[{"name": "conf", "mount_path": "/etc/app", "secret": {"secret": "conf-" + unique, "path": "app.yaml"}},
                 {"name": "models", "mount_path": "/models", "gcs": {"bucket": "models-" + unique, "read_only": True}},
                 {"name": "scratch", "mount_path": "/scratch", "in_memory": {"size_limit": "256Mi"}}],
        startup_probe={"http_get": {"path": "/ready"}, "period_seconds": 5, "failure_threshold": 12},
        liveness_probe={"http_get": {"path": "/health", "port": 8080}, "initial_delay_seconds": 0},
    )
    created = service.run(**options)
    assert created["rc"] == 0, created
    template = service.read()["template"]
    container = template["containers"][0]
    assert template["serviceAccount"] == email and template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"
    volumes = {v["name"]: v for v in template["volumes"]}
    assert volumes["cloudsql"]["cloudSqlInstance"] == {"instances": [connection]}
    assert volumes["conf"]["secret"]["secret"] == "conf-" + unique
    assert volumes["conf"]["secret"]["items"] == [{"path": "app.yaml", "version": "latest"}]
    assert volumes["models"]["gcs"] == {"bucket": "models-" + unique, "readOnly": True}
    assert volumes["scratch"]["emptyDir"]["sizeLimit"] == "256Mi"
    assert sorted((m["name"], m["mountPath"]) for m in container["volumeMounts"]) == [
        ("cloudsql", "/cloudsql"), ("conf", "/etc/app"), ("models", "/models"), ("scratch", "/scratch")]
    assert container["startupProbe"]["httpGet"]["path"] == "/ready" and "tcpSocket" not in container["startupProbe"]
    assert container["startupProbe"]["periodSeconds"] == 5 and container["startupProbe"]["failureThreshold"] == 12
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8080}

    fake_gcp.clear()
    again = service.run(**options)
    assert again["rc"] == 0 and again["changed"] is False, again
    assert len(fake_gcp.requests) == 1

    # The bucket goes read-write and the startup probe back to TCP: both are changes of the revision.
    changed = dict(options, startup_probe={"tcp_socket": {}},
                   volumes=[dict(options["volumes"][2]), dict(options["volumes"][1], gcs={"bucket": "models-" + unique})])
    updated = service.run(**changed)
    assert updated["rc"] == 0 and updated["changed_fields"] == ["template.containers", "template.volumes"], updated
    template = service.read()["template"]
    assert sorted(v["name"] for v in template["volumes"]) == ["cloudsql", "models", "scratch"], \
        "the Cloud SQL volume is kept when only volumes change"
    assert {v["name"]: v for v in template["volumes"]}["models"]["gcs"].get("readOnly", False) is False
    probe = template["containers"][0]["startupProbe"]
    assert "tcpSocket" in probe and "httpGet" not in probe
    assert service.run(**changed)["changed"] is False

    # cloudsql_instances: [] removes the connection and its mount, and nothing else.
    disconnected = service.run(**dict(changed, cloudsql_instances=[]))
    assert disconnected["rc"] == 0 and disconnected["changed"] is True, disconnected
    template = service.read()["template"]
    assert sorted(v["name"] for v in template["volumes"]) == ["models", "scratch"]
    assert sorted(m["name"] for m in template["containers"][0]["volumeMounts"]) == ["models", "scratch"]


def test_plain_env_names_that_look_secret_warn(service, fake_gcp):
    """A plain value is shown in results and diffs: a secret-like name is deployed, with a warning naming it."""
    options = dict(env={"DB_PASSWORD": "hunter2", "API_KEY": "k", "GITHUB_TOKEN": "t", "APP_SECRET": "s",
                        "SERVICE_CREDENTIALS": "c", "DB_USER": "mlflow", "KEYRING_BACKEND": "file",
                        "TOKEN_FILE": "/var/run/token", "SECRET_NAME": "db-password", "MODEL_NAME": "m"})
    created = service.run(**options)
    assert created["rc"] == 0, created
    # ansible-core 2.19 returns each warning as a summary with its message in event.msg.
    warned = [w["event"]["msg"] for w in created.get("warnings") or [] if "looks like a secret" in w["event"]["msg"]]
    named = sorted(w.split()[1] for w in warned)
    assert named == ["API_KEY", "APP_SECRET", "DB_PASSWORD", "GITHUB_TOKEN", "SERVICE_CREDENTIALS"], created
    assert all("secret_env" in w for w in warned)
    # Plain names, and names of references to a secret (a file, a secret's name), do not warn.
    clean = service.run(env={"DB_USER": "mlflow", "TOKEN_FILE": "/var/run/token", "SECRET_NAME": "db-password"})
    assert clean["rc"] == 0 and not clean.get("warnings"), clean
