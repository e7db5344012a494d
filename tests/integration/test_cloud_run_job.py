"""cloud_run_job against the fake Cloud Run Admin API v2, run as a real module process, asserted on the wire."""

from __future__ import annotations

import pytest

from tests.conftest import PROJECT
from tests.integration.cloud_run_resource import LOCATION, RunResource, make_secret

PARENT = "/v2/projects/%s/locations/%s/jobs" % (PROJECT, LOCATION)
IMAGE = "europe-west1-docker.pkg.dev/%s/mlops/migrate:" % PROJECT


@pytest.fixture
def job(fake_gcp, unique, gcp_module):
    return RunResource(fake_gcp, gcp_module, "cloud_run_job", "jobs", "job-" + unique, IMAGE + "1")


def writes(fake):
    return [(c.method, c.path) for c in fake.writes()]


def test_lifecycle_create_unchanged_update_labels_delete(job, fake_gcp):
    options = dict(args=["migrate"], env={"DB": "mlflow"}, cpu="1", memory="1Gi", tasks=2, parallelism=1,
                   max_retries=0, task_timeout=900, labels={"app": "mlflow"})
    created = job.run(**options)
    assert created["rc"] == 0 and created["changed"] is True, created
    assert writes(fake_gcp) == [("POST", PARENT)]
    assert fake_gcp.writes()[0].query == {"jobId": job.name}
    assert "execution" not in created
    actual = job.read()
    assert created["job"]["name"] == actual["name"]
    assert actual["template"]["taskCount"] == 2 and actual["template"]["parallelism"] == 1
    task = actual["template"]["template"]
    assert task.get("maxRetries", 0) == 0 and task["timeout"] == "900s"
    assert task["containers"][0]["args"] == ["migrate"] and task["containers"][0]["image"] == IMAGE + "1"
    assert task["containers"][0]["env"] == [{"name": "DB", "value": "mlflow"}]
    assert task["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert actual["labels"] == {"app": "mlflow"} and job.executions() == []

    fake_gcp.clear()
    again = job.run(**options)
    assert again["rc"] == 0 and again["changed"] is False, again
    assert [(c.method, c.path) for c in fake_gcp.requests] == [("GET", job.path)]

    fake_gcp.clear()
    etag = job.read()["etag"]
    updated = job.run(**dict(options, args=["migrate", "--verbose"], tasks=1, parallelism=None))
    assert updated["rc"] == 0 and updated["changed"] is True, updated
    assert updated["changed_fields"] == ["template.taskCount", "template.template.containers"]
    assert writes(fake_gcp) == [("PATCH", job.path)]
    patch = fake_gcp.writes()[0].body
    assert patch["etag"] == etag and patch["template"]["template"]["timeout"] == "900s", "kept from the read job"
    actual = job.read()
    assert actual["template"]["taskCount"] == 1
    assert actual["template"]["template"]["containers"][0]["args"] == ["migrate", "--verbose"]
    assert updated["diff"]["before"]["template"]["taskCount"] == 2
    assert updated["diff"]["after"]["template"]["taskCount"] == 1

    fake_gcp.clear()
    relabeled = job.run(labels={"app": "mlflow", "step": "migrate"})
    assert relabeled["changed_fields"] == ["labels"] and writes(fake_gcp) == [("PATCH", job.path)]
    assert job.read()["labels"] == {"app": "mlflow", "step": "migrate"}

    fake_gcp.clear()
    deleted = job.run(state="absent")
    assert deleted["rc"] == 0 and deleted["changed"] is True and deleted["job"] == {}, deleted
    assert writes(fake_gcp) == [("DELETE", job.path)] and job.read() is None
    fake_gcp.clear()
    gone = job.run(state="absent")
    assert gone["changed"] is False and fake_gcp.writes() == [] and len(fake_gcp.requests) == 1


def test_execute_runs_the_job_and_returns_the_execution(job, fake_gcp):
    result = job.run(tasks=3, execute="always")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert writes(fake_gcp) == [("POST", PARENT), ("POST", job.path + ":run")]
    execution = result["execution"]
    assert execution["name"].startswith("projects/%s/locations/%s/jobs/%s/executions/%s-"
                                        % (PROJECT, LOCATION, job.name, job.name))
    assert execution["succeeded_count"] == 3 and execution["failed_count"] == 0
    assert execution["log_uri"].startswith("https://console.cloud.google.com/") and execution["completion_time"]
    stored = job.executions()
    assert [e["name"] for e in stored] == [execution["name"]] and stored[0]["succeededCount"] == 3

    # Executing again: the job is unchanged, only a new run is written, and the task reports a change.
    fake_gcp.clear()
    fake_gcp.operation_polls = 3
    again = job.run(tasks=3, execute="always")
    assert again["rc"] == 0 and again["changed"] is True, again
    assert writes(fake_gcp) == [("POST", job.path + ":run")]
    assert "changed_fields" not in again and again["execution"]["name"] != execution["name"]
    assert len(job.executions()) == 2


def test_a_failed_execution_fails_with_its_message(job, fake_gcp):
    assert job.run()["rc"] == 0
    message = "Task %s-abcde-task0 failed: the container exited with status 1" % job.name
    fake_gcp.apis["run"].fail_executions(count=1, message=message)
    failed = job.run(execute="always")
    assert failed["rc"] == 1, failed
    assert message in failed["msg"] and "execution" in failed["msg"] and failed["execution"]["name"] in failed["msg"]
    assert failed["execution"]["failed_count"] >= 1 and failed["execution"]["succeeded_count"] == 0
    assert "logs: https://console.cloud.google.com/" in failed["msg"]
    # The next run succeeds again (nothing planned to fail).
    assert job.run(execute="always")["rc"] == 0


def test_on_change_runs_a_new_or_changed_job_and_retries_a_failed_run(job, fake_gcp):
    """execute=on_change: run once per version of the job, and again after a failure (a database migration)."""
    first = job.run(execute="on_change")
    assert first["rc"] == 0 and first["changed"] is True and first["execution"]["succeeded_count"] == 1, first
    fake_gcp.clear()
    unchanged = job.run(execute="on_change")
    assert unchanged["rc"] == 0 and unchanged["changed"] is False and "execution" not in unchanged, unchanged
    assert fake_gcp.writes() == [] and len(fake_gcp.requests) == 1, "the succeeded run is read from the job itself"

    fake_gcp.apis["run"].fail_executions(count=1, message="migration failed")
    failed = job.run(execute="on_change", args=["--v2"])
    assert failed["rc"] == 1 and "migration failed" in failed["msg"], failed
    fake_gcp.clear()
    preview = job.run(check=True, execute="on_change", args=["--v2"])
    assert preview["changed"] is True and fake_gcp.writes() == [], "the failed run is still to be redone"
    retried = job.run(execute="on_change", args=["--v2"])
    assert retried["rc"] == 0 and retried["changed"] is True and retried["execution"]["failed_count"] == 0, retried
    assert [w[1] for w in writes(fake_gcp)] == [job.path + ":run"], "the unchanged job is only run"
    fake_gcp.clear()
    assert job.run(execute="on_change", args=["--v2"])["changed"] is False and fake_gcp.writes() == []


def test_check_mode_with_execute_writes_and_runs_nothing(job, fake_gcp):
    preview = job.run(check=True, execute="always", tasks=2)
    assert preview["rc"] == 0 and preview["changed"] is True, preview
    assert fake_gcp.writes() == [] and job.read() is None and "execution" not in preview
    assert preview["diff"]["after"]["template"]["taskCount"] == 2

    assert job.run(tasks=2)["rc"] == 0
    fake_gcp.clear()
    preview = job.run(check=True, execute="always", tasks=2)
    assert preview["rc"] == 0 and preview["changed"] is True and fake_gcp.writes() == [], preview
    assert "execution" not in preview and job.executions() == []

    preview = job.run(check=True, tasks=4)
    assert preview["changed_fields"] == ["template.taskCount"] and fake_gcp.writes() == []
    assert job.read()["template"]["taskCount"] == 2

    preview = job.run(check=True, state="absent")
    assert preview["changed"] is True and fake_gcp.writes() == [] and job.read() is not None


@pytest.mark.parametrize("options, expected", [
    (dict(memory="1GB"), "memory '1GB'"),
    (dict(tasks=0), "tasks must be from 1 to 10000"),
    (dict(tasks=2, parallelism=5), "parallelism (5) must not exceed tasks (2)"),
    (dict(max_retries=11), "max_retries must be from 0 to 10"),
    (dict(env={"CLOUD_RUN_TASK_INDEX": "0"}), "reserved"),
    (dict(port=8080), "Unsupported parameters"),
    (dict(image=None, execute="always"), "image is required"),
])
def test_bad_input_fails_before_any_request(job, fake_gcp, options, expected):
    result = job.run(**options)
    assert result["rc"] == 1 and expected in result["msg"], result
    assert fake_gcp.requests == []


def test_faults_on_create_and_run_are_retried(job, fake_gcp):
    fake_gcp.inject(503, count=1, method="POST", path=r"^run/.*/jobs$", forward=True)
    fake_gcp.inject(429, count=2, method="POST", path=r":run$")
    fake_gcp.inject(503, count=1, method="GET", path=r"/operations/")
    result = job.run(execute="always")
    assert result["rc"] == 0 and result["changed"] is True, result
    assert len(fake_gcp.calls("POST", r"jobs$")) == 2, "the lost create answer was retried and met 409"
    assert len(fake_gcp.calls("POST", r":run$")) == 3
    assert result["execution"]["succeeded_count"] == 1 and len(job.executions()) == 1


def test_secret_env_and_cloudsql_for_a_migration_job(job, fake_gcp, unique):
    make_secret(fake_gcp, "pw-" + unique)
    connection = "%s:europe-west1:pg-%s" % (PROJECT, unique)
    options = dict(secret_env={"DB_PASSWORD": {"secret": "pw-" + unique}}, cloudsql_instances=[connection])
    result = job.run(execute="always", **options)
    assert result["rc"] == 0, result
    task = job.read()["template"]["template"]
    assert task["volumes"] == [{"name": "cloudsql", "cloudSqlInstance": {"instances": [connection]}}]
    assert task["containers"][0]["volumeMounts"] == [{"name": "cloudsql", "mountPath": "/cloudsql"}]
    assert task["containers"][0]["env"] == [{"name": "DB_PASSWORD", "valueSource": {
        "secretKeyRef": {"secret": "pw-" + unique, "version": "latest"}}}]
    fake_gcp.clear()
    assert job.run(**options)["changed"] is False and len(fake_gcp.requests) == 1


def test_plain_env_names_that_look_secret_warn(job, fake_gcp):
    created = job.run(env={"DB_PASSWORD": "hunter2", "DRIFT_PROJECT": "p"})
    assert created["rc"] == 0, created
    assert [w["event"]["msg"] for w in created.get("warnings") or []] == [
        "env DB_PASSWORD of Cloud Run job projects/%s/locations/%s/jobs/%s looks like a secret: a plain env value is "
        "shown in task results, diffs and the Cloud Run console; put it in Secret Manager and use secret_env"
        % (PROJECT, LOCATION, job.name)], created
