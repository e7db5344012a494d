"""The critical path benchmarks/deploy_time.py reports: the longest chain of operations that wait for each other."""

from __future__ import annotations

from benchmarks.deploy_time import critical_path


def operation(name, kind, target, start, end):
    return {"name": name, "kind": kind, "target": target, "start": start, "end": end}


def test_the_chain_follows_what_waits_for_what_not_what_ran_at_the_same_time():
    timeline = [
        operation("enable", "serviceusage.enable", "services/run.googleapis.com", 0, 45),
        operation("sql", "sql.instance.create", "projects/p/instances/pg", 110, 770),
        operation("repo", "artifactregistry.repository.create", "repositories/mlops", 120, 130),
        operation("build-1", "cloudbuild.build", "builds/1", 140, 300),
        operation("build-2", "cloudbuild.build", "builds/2", 141, 301),
        operation("db", "sql.database", "projects/p/instances/pg", 775, 783),
        operation("job", "run.job.create", "projects/1/locations/r/jobs/mlflow-migrate", 785, 790),
        operation("migrate", "run.job.execution", "projects/1/locations/r/jobs/mlflow-migrate/executions/a", 790, 850),
        operation("mlflow", "run.service.rollout", "projects/1/locations/r/services/mlflow", 852, 882),
        operation("grafana", "run.service.rollout", "projects/1/locations/r/services/grafana", 884, 914),  # needs no migration
        operation("serving", "run.service.rollout", "projects/1/locations/r/services/serving", 884, 914),
    ]
    length, chain = critical_path(timeline, propagation=60)
    assert [op["name"] for op in chain] == ["enable", "sql", "db", "migrate", "mlflow", "serving"]
    assert length == (45 + 60) + 660 + 8 + 60 + 30 + 30


def test_an_operation_started_before_another_ended_does_not_wait_for_it():
    timeline = [operation("enable", "serviceusage.enable", "services/x", 0, 10),
                operation("build-1", "cloudbuild.build", "builds/1", 20, 180),
                operation("migrate-job", "run.job.create", "jobs/mlflow-migrate", 100, 105)]
    length, chain = critical_path(timeline, propagation=0)
    assert [op["name"] for op in chain] == ["enable", "build-1"] and length == 170
