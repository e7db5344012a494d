"""Each application's database is reachable only by its own user, set up by the application's migration step.

MLflow and Grafana share one PostgreSQL instance. Out of the box PUBLIC has CONNECT on every database, so each
application's user could connect to the other's. MLflow's `migrate` and Grafana's setup job (`isolate`, run
with Grafana's credentials) make the application's user the owner and revoke PUBLIC's privileges. Two shapes
of the databases are tested: Cloud SQL's (the Admin API creates the databases owned by cloudsqlsuperuser and
the built-in users are members of it, with CREATEDB and CREATEROLE) and the local target's (each database
created with its user as owner).
"""

from __future__ import annotations

import dataclasses

import psycopg2
import pytest

from tests.apps.conftest import mlflow_env, run_entrypoint
from tests.standins.postgres import _quote_ident, _quote_literal

pytestmark = pytest.mark.xdist_group("apps")

CLOUD_SQL_ROLE = "cloudsqlsuperuser"


@dataclasses.dataclass
class App:
    user: str
    password: str
    database: str


def connect(postgres, app, database):
    return psycopg2.connect(host="127.0.0.1", port=postgres.port, user=app.user, password=app.password,
                            dbname=database, connect_timeout=10)


def can_connect(postgres, app, database):
    try:
        connect(postgres, app, database).close()
        return True
    except psycopg2.OperationalError as exc:
        assert "permission denied for database" in str(exc), exc
        return False


def app_env(postgres, app, **extra):
    """The environment of the application's migration job, connecting as its own user."""
    owner = dataclasses.replace(postgres, user=app.user, password=app.password, database=app.database)
    return mlflow_env(owner, 8080, "http://127.0.0.1:9", database=app.database, **extra)


@pytest.fixture(params=["cloudsql", "local"])
def apps(request, postgres, unique):
    """Users and databases of MLflow and Grafana on the shared instance, shaped like `request.param`'s."""
    server = postgres.server
    created = [App("mlflow_%s" % unique, "mlflow-pw-%s" % unique, "mlflow_%s" % unique),
               App("grafana_%s" % unique, "grafana-pw-%s" % unique, "grafana_%s" % unique)]
    if request.param == "cloudsql":
        if not server.query("SELECT 1 FROM pg_roles WHERE rolname = %s" % _quote_literal(CLOUD_SQL_ROLE)):
            server.execute("CREATE ROLE %s NOLOGIN CREATEDB CREATEROLE" % CLOUD_SQL_ROLE)
    for app in created:
        if request.param == "cloudsql":
            server.execute("CREATE ROLE %s LOGIN CREATEDB CREATEROLE PASSWORD %s IN ROLE %s" % (
                _quote_ident(app.user), _quote_literal(app.password), CLOUD_SQL_ROLE))
            server.create_database(app.database, CLOUD_SQL_ROLE)
        else:
            server.create_role(app.user, app.password)
            server.create_database(app.database, app.user)
    yield created
    for app in created:
        server.drop_database(app.database)
    for app in created:
        server.execute("DROP ROLE IF EXISTS %s" % _quote_ident(app.user))


def owner_and_acl(postgres, database):
    return postgres.server.query("SELECT pg_get_userbyid(datdba), datacl::text FROM pg_database WHERE datname = %s"
                                 % _quote_literal(database))[0]


def test_each_applications_database_is_reachable_only_by_its_own_user(postgres, apps):
    mlflow, grafana = apps
    # Today's state: each user can reach the other's database (PUBLIC has CONNECT).
    assert can_connect(postgres, grafana, mlflow.database) and can_connect(postgres, mlflow, grafana.database)

    migrated = run_entrypoint("migrate", app_env(postgres, mlflow))
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    isolated = run_entrypoint("isolate", app_env(postgres, grafana))
    assert isolated.returncode == 0, isolated.stderr[-3000:]
    assert "PUBLIC may not connect" in migrated.stderr and "PUBLIC may not connect" in isolated.stderr

    assert not can_connect(postgres, grafana, mlflow.database)
    assert not can_connect(postgres, mlflow, grafana.database)
    for app in apps:
        owner, acl = owner_and_acl(postgres, app.database)
        assert owner == app.user
        assert not any(entry.startswith("=") for entry in acl.strip("{}").split(",")), acl  # nothing for PUBLIC
        assert app.password not in migrated.stderr + isolated.stderr

    # Each application still works: MLflow's schema is there and its user reads it; Grafana's user creates
    # its tables in the public schema, as Grafana's own migrations do when it starts.
    with connect(postgres, mlflow, mlflow.database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT version_num FROM alembic_version")
        assert cursor.fetchone()[0]
        cursor.execute("INSERT INTO experiments (name, lifecycle_stage) VALUES ('isolation-check', 'active')")
    with connect(postgres, grafana, grafana.database) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE migration_log (id serial PRIMARY KEY, migration_id text)")
        cursor.execute("INSERT INTO migration_log (migration_id) VALUES ('create migration_log table')")

    # Idempotent: the next deployment's migration steps change nothing and succeed.
    again = run_entrypoint("migrate", app_env(postgres, mlflow))
    assert again.returncode == 0 and "nothing to migrate" in again.stderr, again.stderr[-3000:]
    assert run_entrypoint("isolate", app_env(postgres, grafana)).returncode == 0
    assert not can_connect(postgres, grafana, mlflow.database)


def test_a_user_that_cannot_take_its_database_is_told_how_to_fix_it(postgres, apps):
    mlflow, grafana = apps
    # Grafana's user pointed at MLflow's database: it neither owns it nor (after MLflow's migration) may connect;
    # before that, in the local shape it may connect but not take the database.
    result = run_entrypoint("isolate", app_env(postgres, dataclasses.replace(grafana, database=mlflow.database),
                                               DB_CONNECT_TIMEOUT="1"))
    owner, _acl = owner_and_acl(postgres, mlflow.database)
    if owner == mlflow.user:  # local shape: grafana is no member of the owner
        assert result.returncode == 3, result.stderr[-3000:]
        assert "cannot restrict database %s to its user %s" % (mlflow.database, grafana.user) in result.stderr
        assert "ALTER DATABASE" in result.stderr and grafana.password not in result.stderr
    else:
        # Cloud SQL shape: every built-in user is a member of cloudsqlsuperuser, the owner of the databases the
        # Admin API creates, so whichever application migrates first takes its own database.
        assert result.returncode == 0, result.stderr[-3000:]
