"""Entrypoint of the MLflow tracking server image: `serve`, `migrate` and `healthcheck`.

    python -m mlflow_server.entrypoint serve        # the Cloud Run service (default command of the image)
    python -m mlflow_server.entrypoint migrate      # `mlflow db upgrade`, as a Cloud Run job before a rollout
    python -m mlflow_server.entrypoint healthcheck  # GET /health on this container (Docker HEALTHCHECK)
    python -m mlflow_server.entrypoint isolate      # only DB_USER may connect to DB_NAME (Grafana's setup job)

`migrate` (and `serve` with MIGRATE_ON_START) first makes DB_USER the owner of DB_NAME and revokes PUBLIC's
CONNECT on it, so the other applications' users on the same instance cannot connect to it.

Everything comes from the environment (see ENVIRONMENT below). The backend store URI is built here from
its parts, with the password URL-encoded; it reaches MLflow through the environment, never the command
line, and is only ever logged with the password masked.

`serve` does not change the database: when its schema is not at the revision this MLflow expects (an
empty database included, which MLflow itself would silently create), it exits with a message telling to
run `migrate` first, unless MIGRATE_ON_START=true asks it to migrate (for a single local instance; on
Cloud Run several instances would race).

BASIC_AUTH=true turns on MLflow's authentication app (`mlflow server --app-name basic-auth`): every request
but /health needs a user's basic credentials, and a user may only do what its permissions allow (by default
nothing: AUTH_DEFAULT_PERMISSION=NO_PERMISSIONS). Its users and permissions live in the same database as the
tracking data (its own tables and Alembic version table, alembic_version_auth, none of which the tracking
schema uses): one database, one user, one backup. `migrate` also migrates that schema, makes the admin's
password and the serving user's the configured ones (created or reset, so the secret is always the truth),
and grants the serving user READ on the served models (and on experiments, whose artifacts hold the model
files): that user can load a model but not move its alias.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import logging
import os
import re
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

LOG = logging.getLogger("mlflow_server")
DRIVER = "postgresql+psycopg2"
MASK = "***"

ENVIRONMENT = {
    "DB_USER": "PostgreSQL user (required)",
    "DB_PASSWORD": "its password; Cloud Run injects it from Secret Manager (or use DB_PASSWORD_FILE)",
    "DB_PASSWORD_FILE": "path of a file holding the password (a secret mounted as a volume)",
    "DB_NAME": "database name (required)",
    "CLOUD_SQL_CONNECTION_NAME": "project:region:instance; connects through the socket /cloudsql/<name>",
    "CLOUD_SQL_SOCKET_ROOT": "directory of the Cloud SQL sockets (default /cloudsql)",
    "DB_HOST": "host name or address of the server, instead of a Cloud SQL socket (local runs)",
    "DB_PORT": "server port (default 5432)",
    "DB_SSLMODE": "libpq sslmode for a TCP connection (e.g. require, verify-full)",
    "DB_CONNECT_TIMEOUT": "seconds to keep retrying the first database connection (default 60)",
    "ARTIFACTS_DESTINATION": "where proxied artifacts are stored, e.g. gs://<bucket>/mlflow (required)",
    "SERVICE_URLS": "comma-separated URLs of this service (e.g. its Cloud Run URLs): allowed Host headers and "
                    "CORS origins",
    "ALLOWED_HOSTS": "comma-separated extra allowed Host headers (fnmatch patterns), besides SERVICE_URLS",
    "CORS_ALLOWED_ORIGINS": "comma-separated extra CORS origins, besides those of SERVICE_URLS",
    "PORT": "port to listen on (Cloud Run sets it; default 8080)",
    "HOST": "address to bind (default 0.0.0.0)",
    "WORKERS": "uvicorn worker processes (default 2)",
    "ENABLE_JOB_EXECUTION": "true to run MLflow's job executor (GenAI scorers and periodic jobs; about seven extra "
                            "processes per instance); default false: a tracking server and model registry",
    "MIGRATE_ON_START": "true to run the schema migration in `serve` before starting (default false)",
    "BASIC_AUTH": "true to require MLflow basic authentication (`mlflow server --app-name basic-auth`; default false)",
    "AUTH_ADMIN_USERNAME": "the MLflow admin user with BASIC_AUTH (default admin)",
    "AUTH_ADMIN_PASSWORD": "its password (at least 12 characters), injected from Secret Manager; required with "
                           "BASIC_AUTH",
    "AUTH_DEFAULT_PERMISSION": "what a user may do on what it was granted nothing on: NO_PERMISSIONS (default) or READ",
    "AUTH_SERVING_USERNAME": "a user `migrate` keeps with READ on AUTH_SERVING_MODELS (e.g. the serving API's)",
    "AUTH_SERVING_PASSWORD": "its password, injected from Secret Manager; required with AUTH_SERVING_USERNAME",
    "AUTH_SERVING_MODELS": "comma-separated registered models the serving user may read (and load)",
    "LOG_LEVEL": "log level of this entrypoint (default INFO)",
}

AUTH_PERMISSIONS = ("NO_PERMISSIONS", "READ")
PASSWORD_MINIMUM = 12  # MLflow's basic-auth refuses shorter passwords


class ConfigError(Exception):
    """The environment is incomplete or invalid; the message names the variable."""


class SchemaError(Exception):
    """The database schema is not the one this MLflow expects."""


def _env(env, name, default=None, required=False):
    value = env.get(name, "")
    value = value.strip() if isinstance(value, str) else value
    if not value:
        if required:
            raise ConfigError("environment variable %s is required: %s" % (name, ENVIRONMENT[name]))
        return default
    return value


def _int(env, name, default, minimum=1):
    value = _env(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError("environment variable %s must be an integer, got %r" % (name, value)) from None
    if number < minimum:
        raise ConfigError("environment variable %s must be at least %d, got %d" % (name, minimum, number))
    return number


def _bool(env, name, default=False):
    value = _env(env, name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError("environment variable %s must be true or false, got %r" % (name, value))


def _list(env, name):
    return [item.strip() for item in (env.get(name) or "").split(",") if item.strip()]


def read_password(env):
    """DB_PASSWORD, or the content of DB_PASSWORD_FILE (one trailing newline is not part of it)."""
    password = env.get("DB_PASSWORD") or ""
    path = (env.get("DB_PASSWORD_FILE") or "").strip()
    if password and path:
        raise ConfigError("set only one of DB_PASSWORD and DB_PASSWORD_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                password = handle.read()
        except OSError as exc:
            raise ConfigError("DB_PASSWORD_FILE %s cannot be read: %s" % (path, exc.strerror)) from None
        password = password[:-1] if password.endswith("\n") else password
        password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise ConfigError("environment variable DB_PASSWORD (or DB_PASSWORD_FILE) is required: the database "
                          "password, injected from Secret Manager")
    return password


CONNECTION_NAME = re.compile(r"^[^:/\s]+(:[^:/\s]+){2,3}$")  # project:region:instance (domain:project:...)


@dataclass(frozen=True)
class Database:
    """Where the backend store is and how to log in; `uri()` is the SQLAlchemy URI for MLflow."""

    user: str
    password: str = field(repr=False)
    name: str
    socket_dir: str | None = None
    host: str | None = None
    port: int | None = None
    sslmode: str | None = None

    def uri(self):
        return self._render(quote(self.password, safe=""))

    def masked_uri(self):
        return self._render(MASK)

    def _render(self, password):
        credentials = "%s:%s@" % (quote(self.user, safe=""), password)
        database = quote(self.name, safe="")
        query = {}
        if self.socket_dir:
            location = ""
            query["host"] = self.socket_dir
            if self.port:
                query["port"] = str(self.port)  # the socket file is .s.PGSQL.<port>
        else:
            host = "[%s]" % self.host if ":" in self.host else self.host
            location = "%s:%d" % (host, self.port or 5432)
        if self.sslmode:
            query["sslmode"] = self.sslmode
        suffix = "?" + urlencode(query, safe="/:") if query else ""
        return "%s://%s%s/%s%s" % (DRIVER, credentials, location, database, suffix)


def database_from_env(env):
    user = _env(env, "DB_USER", required=True)
    name = _env(env, "DB_NAME", required=True)
    connection = _env(env, "CLOUD_SQL_CONNECTION_NAME")
    host = _env(env, "DB_HOST")
    if connection and host:
        raise ConfigError("set only one of CLOUD_SQL_CONNECTION_NAME (Cloud SQL socket) and DB_HOST (TCP)")
    if not connection and not host:
        raise ConfigError("environment variable CLOUD_SQL_CONNECTION_NAME (project:region:instance, on Cloud Run) "
                          "or DB_HOST (a local server) is required")
    socket_dir = None
    if connection:
        if not CONNECTION_NAME.match(connection):
            raise ConfigError("environment variable CLOUD_SQL_CONNECTION_NAME must look like project:region:instance, "
                              "got %r" % connection)
        root = _env(env, "CLOUD_SQL_SOCKET_ROOT", "/cloudsql").rstrip("/")
        socket_dir = "%s/%s" % (root, connection)
    port = _int(env, "DB_PORT", None)
    if port is not None and port > 65535:
        raise ConfigError("environment variable DB_PORT must be a port number, got %d" % port)
    return Database(user=user, password=read_password(env), name=name, socket_dir=socket_dir, host=host,
                    port=port, sslmode=_env(env, "DB_SSLMODE"))


def _hosts_of(urls):
    """The Host headers a client sends for each URL: host, and host:port when the URL names a port."""
    hosts = []
    for url in urls:
        parts = urlsplit(url if "//" in url else "https://" + url)
        if not parts.hostname:
            raise ConfigError("SERVICE_URLS entry %r is not a URL" % url)
        host = "[%s]" % parts.hostname if ":" in parts.hostname else parts.hostname
        hosts.append(host)
        if parts.port:
            hosts.append("%s:%d" % (host, parts.port))
    return hosts


def _origins_of(urls):
    origins = []
    for url in urls:
        parts = urlsplit(url if "//" in url else "https://" + url)
        origins.append("%s://%s" % (parts.scheme, parts.netloc))
    return origins


def _unique(items):
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Server:
    """How `mlflow server` runs: everything but the backend store, which goes by environment."""

    artifacts_destination: str
    allowed_hosts: list
    cors_allowed_origins: list
    port: int = 8080
    host: str = "0.0.0.0"
    workers: int = 2
    migrate_on_start: bool = False
    job_execution: bool = False

    def command(self, python=None, auth=False):
        """The `mlflow server` argv; holds no secret (the backend store URI is passed by environment)."""
        command = [python or sys.executable, "-m", "mlflow", "server",
                   "--host", self.host, "--port", str(self.port), "--workers", str(self.workers),
                   "--serve-artifacts", "--artifacts-destination", self.artifacts_destination,
                   "--allowed-hosts", ",".join(self.allowed_hosts)]
        if self.cors_allowed_origins:
            command += ["--cors-allowed-origins", ",".join(self.cors_allowed_origins)]
        if auth:
            command += ["--app-name", "basic-auth"]
        return command


def server_from_env(env):
    port = _int(env, "PORT", 8080)
    if port > 65535:
        raise ConfigError("environment variable PORT must be a port number, got %d" % port)
    service_urls = _list(env, "SERVICE_URLS")
    extra_hosts = _list(env, "ALLOWED_HOSTS")
    if not service_urls and not extra_hosts:
        raise ConfigError("environment variable SERVICE_URLS (this service's URL, e.g. its Cloud Run URL) or "
                          "ALLOWED_HOSTS is required: MLflow only answers requests whose Host header is allowed")
    if "*" in extra_hosts:
        raise ConfigError("ALLOWED_HOSTS must not contain '*' (it turns off the Host header check); name the "
                          "service's hosts instead")
    # The container's own address (health checks, a sidecar) is always allowed.
    own = ["localhost", "localhost:%d" % port, "127.0.0.1", "127.0.0.1:%d" % port]
    allowed = _unique(_hosts_of(service_urls) + extra_hosts + own)
    origins = _unique(_origins_of(service_urls) + _list(env, "CORS_ALLOWED_ORIGINS"))
    if "*" in origins:
        raise ConfigError("CORS_ALLOWED_ORIGINS must not contain '*'")
    destination = _env(env, "ARTIFACTS_DESTINATION", required=True)
    return Server(artifacts_destination=destination, allowed_hosts=allowed, cors_allowed_origins=origins,
                  port=port, host=_env(env, "HOST", "0.0.0.0"), workers=_int(env, "WORKERS", 2),
                  migrate_on_start=_bool(env, "MIGRATE_ON_START"), job_execution=_bool(env, "ENABLE_JOB_EXECUTION"))


@dataclass(frozen=True)
class Auth:
    """MLflow's basic-auth app: who administers it and who may read the served models."""

    admin_username: str
    admin_password: str = field(repr=False)
    default_permission: str = "NO_PERMISSIONS"
    serving_username: str | None = None
    serving_password: str | None = field(default=None, repr=False)
    serving_models: tuple = ()

    def flask_secret_key(self):
        """The key of the auth app's CSRF protection (its sign-up form), the same in every worker and instance
        without one more secret to keep: derived from the admin password, which it cannot reveal."""
        return hmac.new(self.admin_password.encode(), b"mlflow-flask-server-secret-key", hashlib.sha256).hexdigest()

    def write_config(self, database, directory=None):
        """The basic_auth.ini MLflow reads (MLFLOW_AUTH_CONFIG_PATH), in a private file: it holds the database
        URI with its password. Returns its path."""
        values = {
            "default_permission": self.default_permission,
            "database_uri": database.uri(),
            "admin_username": self.admin_username,
            "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        }
        # MLflow reads the file with configparser's % interpolation: the URL-encoded password's % are doubled.
        parser = configparser.ConfigParser(interpolation=None)
        parser["mlflow"] = {key: value.replace("%", "%%") for key, value in values.items()}
        directory = directory or tempfile.mkdtemp(prefix="mlflow-auth-")  # mode 0700
        path = os.path.join(directory, "basic_auth.ini")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            parser.write(handle)
        return path


def _password(env, name, purpose):
    password = env.get(name) or ""
    if not password:
        raise ConfigError("environment variable %s is required: %s" % (name, purpose))
    if len(password) < PASSWORD_MINIMUM:
        raise ConfigError("environment variable %s must be at least %d characters long (MLflow's rule)"
                          % (name, PASSWORD_MINIMUM))
    return password


def auth_from_env(env):
    """The Auth BASIC_AUTH=true asks for, or None."""
    if not _bool(env, "BASIC_AUTH"):
        for name in ("AUTH_SERVING_USERNAME", "AUTH_SERVING_MODELS"):
            if _env(env, name):
                raise ConfigError("environment variable %s is set but BASIC_AUTH is not true" % name)
        return None
    permission = _env(env, "AUTH_DEFAULT_PERMISSION", "NO_PERMISSIONS").upper()
    if permission not in AUTH_PERMISSIONS:
        raise ConfigError("environment variable AUTH_DEFAULT_PERMISSION must be one of %s, got %r"
                          % (", ".join(AUTH_PERMISSIONS), permission))
    admin = _env(env, "AUTH_ADMIN_USERNAME", "admin")
    serving = _env(env, "AUTH_SERVING_USERNAME")
    models = tuple(_unique(_list(env, "AUTH_SERVING_MODELS")))
    if serving == admin:
        raise ConfigError("AUTH_SERVING_USERNAME must not be the admin user %r" % admin)
    if models and not serving:
        raise ConfigError("environment variable AUTH_SERVING_MODELS is set but AUTH_SERVING_USERNAME is not")
    return Auth(admin_username=admin,
                admin_password=_password(env, "AUTH_ADMIN_PASSWORD", ENVIRONMENT["AUTH_ADMIN_PASSWORD"]),
                default_permission=permission, serving_username=serving,
                serving_password=_password(env, "AUTH_SERVING_PASSWORD", ENVIRONMENT["AUTH_SERVING_PASSWORD"])
                if serving else None,
                serving_models=models)


def scrub(text, database):
    """The text with the password (raw and URL-encoded) replaced by the mask."""
    for secret in (database.password, quote(database.password, safe="")):
        if secret:
            text = text.replace(secret, MASK)
    return text


# -- database -----------------------------------------------------------------------------------------
def _engine(database):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(database.uri(), poolclass=NullPool)


def wait_for_database(database, timeout):
    """Connect once, retrying (the Cloud SQL socket can lag the container's start); returns the engine."""
    import sqlalchemy.exc

    engine = _engine(database)
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            with engine.connect():
                return engine
        except sqlalchemy.exc.OperationalError as exc:
            reason = scrub(str(exc.orig).strip() if exc.orig else str(exc), database)
            if time.monotonic() + delay > deadline:
                raise ConfigError("cannot connect to %s: %s" % (database.masked_uri(), reason)) from None
            LOG.warning("database not reachable yet (%s), retrying in %.1fs", reason.splitlines()[0], delay)
            time.sleep(delay)
            delay = min(delay * 2, 5)


def schema_revisions(engine):
    """(current revision of the database or None when empty, revision this MLflow expects, known?)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))
    heads = script.get_heads()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    known = current is None or current in {r.revision for r in script.walk_revisions()}
    return current, heads[0], known


def check_schema(engine):
    current, head, known = schema_revisions(engine)
    if current == head:
        return
    if not known:
        raise SchemaError("the database schema is at revision %s, which this MLflow does not know (a newer MLflow "
                          "migrated it?): deploy an image with that MLflow version" % current)
    state = "empty (no MLflow tables)" if current is None else "at revision %s" % current
    raise SchemaError("the database schema is %s; this MLflow needs revision %s. Run the migration first: "
                      "`python -m mlflow_server.entrypoint migrate` (the migrate job), or set MIGRATE_ON_START=true "
                      "for a single local instance" % (state, head))


def isolate_database(engine, database):
    """Only the connecting user may connect to its database: that user owns it and PUBLIC has no CONNECT.

    Idempotent. Run by the application's own user in its migration step: `migrate` for MLflow, `isolate` (a
    job with Grafana's credentials) for Grafana. On Cloud SQL, the databases the Admin API creates are owned
    by cloudsqlsuperuser, whose members (every built-in user) may hand them to themselves; a local database
    created with its user as owner needs no ownership change. Other roles granted privileges explicitly keep
    them: only PUBLIC's are revoked.
    """
    import sqlalchemy.exc

    quoted = engine.dialect.identifier_preparer.quote_identifier(database.name)
    statements = ("ALTER DATABASE %s OWNER TO CURRENT_USER" % quoted,  # a no-op when it already is the owner
                  "REVOKE ALL ON DATABASE %s FROM PUBLIC" % quoted,
                  "GRANT CONNECT, TEMPORARY ON DATABASE %s TO CURRENT_USER" % quoted)
    owner_query = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        before = connection.exec_driver_sql(owner_query).scalar()
        try:
            for statement in statements:
                connection.exec_driver_sql(statement)
        except sqlalchemy.exc.DBAPIError as exc:
            reason = scrub(str(exc.orig).strip() if exc.orig else str(exc), database).splitlines()[0]
            user = engine.dialect.identifier_preparer.quote_identifier(database.user)
            raise ConfigError(
                "cannot restrict database %s to its user %s (%s): the user must own it, or be a member of its "
                "owner (on Cloud SQL: cloudsqlsuperuser, which owns the databases the Admin API creates) and have "
                "CREATEDB; or, as a PostgreSQL superuser, run: ALTER DATABASE %s OWNER TO %s; REVOKE ALL ON "
                "DATABASE %s FROM PUBLIC" % (database.name, database.user, reason, quoted, user, quoted)) from None
    LOG.info("database %s: owned by %s%s, PUBLIC may not connect", database.name, database.user,
             "" if before == database.user else " (was %s)" % before)


def migrate(database):
    """`mlflow db upgrade <uri>`, run in this process so the URI is not on a command line."""
    from mlflow.db import commands

    LOG.info("migrating the MLflow schema of %s", database.masked_uri())
    started = time.monotonic()
    commands.main(args=["upgrade", database.uri()], standalone_mode=False, prog_name="mlflow db")
    LOG.info("schema migration done in %.1fs", time.monotonic() - started)


# -- basic-auth -------------------------------------------------------------------------------------------
AUTH_VERSION_TABLE = "alembic_version_auth"


def auth_schema_revisions(engine):
    """(current revision of the auth tables or None, revision this MLflow expects)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from mlflow.server.auth.db.utils import _get_alembic_config

    head = ScriptDirectory.from_config(_get_alembic_config("")).get_current_head()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": AUTH_VERSION_TABLE})
        current = context.get_current_revision()
    return current, head


def check_auth_schema(engine):
    current, head = auth_schema_revisions(engine)
    if current != head:
        state = "missing" if current is None else "at revision %s" % current
        raise SchemaError("the authentication tables are %s; this MLflow needs revision %s. Run the migration "
                          "first: `python -m mlflow_server.entrypoint migrate` (the migrate job)" % (state, head))


def _keep_user(store, username, password, is_admin):
    """Create the user, or make its password and admin flag the configured ones; says what it did."""
    if not store.has_user(username, use_primary=True):
        store.create_user(username, password, is_admin=is_admin)
        return "created"
    done = []
    if not store.authenticate_user(username, password, use_primary=True):
        store.update_user(username, password=password)
        done.append("password reset to the configured one")
    if store.get_user(username).is_admin != is_admin:
        store.update_user(username, is_admin=is_admin)
        done.append("admin flag set to %s" % is_admin)
    return ", ".join(done) or "unchanged"


def migrate_auth(database, auth):
    """The auth tables at head, the admin and serving users with their configured passwords, the grants."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(database.uri())  # creates or upgrades the tables (version table alembic_version_auth)
    try:
        LOG.info("auth: admin user %s %s", auth.admin_username,
                 _keep_user(store, auth.admin_username, auth.admin_password, is_admin=True))
        if auth.serving_username:
            LOG.info("auth: serving user %s %s", auth.serving_username,
                     _keep_user(store, auth.serving_username, auth.serving_password, is_admin=False))
            # Upserts: a grant raised by hand (EDIT, MANAGE) goes back to READ, so this user never moves an alias.
            for model in auth.serving_models:
                store.grant_user_permission(auth.serving_username, "registered_model", model, "READ")
            # A model's files are artifacts of its run or logged model, which MLflow authorises through the
            # experiment they belong to: READ on experiments lets the user download them, and change nothing.
            store.grant_user_permission(auth.serving_username, "experiment", "*", "READ")
            LOG.info("auth: %s may read registered models %s and experiments, and change nothing",
                     auth.serving_username, ", ".join(auth.serving_models) or "(none)")
    finally:
        store.engine.dispose()


# -- commands -----------------------------------------------------------------------------------------
def cmd_migrate(env):
    database = database_from_env(env)
    auth = auth_from_env(env)
    LOG.info("backend store: %s", database.masked_uri())
    engine = wait_for_database(database, _int(env, "DB_CONNECT_TIMEOUT", 60))
    isolate_database(engine, database)
    current, head, known = schema_revisions(engine)
    if current == head:
        LOG.info("the schema is already at revision %s; nothing to migrate", head)
    elif not known:
        raise SchemaError("the database schema is at revision %s, which this MLflow does not know" % current)
    else:
        migrate(database)
        check_schema(engine)
    if auth is not None:
        migrate_auth(database, auth)
        check_auth_schema(engine)
    engine.dispose()
    return 0


def cmd_isolate(env):
    """Only the database setup of `migrate` (ownership, PUBLIC's CONNECT), for another application's database:
    Grafana's setup job runs it with Grafana's credentials, since Grafana's image has no PostgreSQL client."""
    database = database_from_env(env)
    LOG.info("database: %s", database.masked_uri())
    engine = wait_for_database(database, _int(env, "DB_CONNECT_TIMEOUT", 60))
    isolate_database(engine, database)
    engine.dispose()
    return 0


def execute_server(path, argv, env):
    """Replace this process by the server: signals (Cloud Run's SIGTERM) go straight to MLflow."""
    os.execve(path, argv, env)


def cmd_serve(env):
    database = database_from_env(env)
    server = server_from_env(env)
    auth = auth_from_env(env)
    LOG.info("backend store: %s", database.masked_uri())
    engine = wait_for_database(database, _int(env, "DB_CONNECT_TIMEOUT", 60))
    if server.migrate_on_start:
        isolate_database(engine, database)
        current, head, known = schema_revisions(engine)
        if current != head and known:
            migrate(database)
        if auth is not None:
            migrate_auth(database, auth)
    check_schema(engine)
    if auth is not None:
        # MLflow's auth app would create or upgrade its tables in every worker; the migrate job does it once.
        check_auth_schema(engine)
    engine.dispose()
    command = server.command(auth=auth is not None)
    LOG.info("artifacts proxied to %s; allowed hosts %s", server.artifacts_destination, ",".join(server.allowed_hosts))
    if auth is not None:
        LOG.info("basic authentication on: admin %s, default permission %s", auth.admin_username,
                 auth.default_permission)
    LOG.info("starting: %s", " ".join(command))
    child_env = dict(env, MLFLOW_BACKEND_STORE_URI=database.uri(),
                     MLFLOW_SERVER_ENABLE_JOB_EXECUTION="true" if server.job_execution else "false")
    # MLflow needs only the URI (and, with basic-auth, its config file); no password stays in its environment.
    for name in ("DB_PASSWORD", "DB_PASSWORD_FILE", "AUTH_ADMIN_PASSWORD", "AUTH_SERVING_PASSWORD"):
        child_env.pop(name, None)
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_CONFIG_PATH"):
        child_env.pop(name, None)  # only the config written here decides
    if auth is not None:
        child_env["MLFLOW_AUTH_CONFIG_PATH"] = auth.write_config(database)
        child_env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = auth.flask_secret_key()
    sys.stdout.flush()
    sys.stderr.flush()
    execute_server(command[0], command, child_env)
    return 0


def cmd_healthcheck(env, timeout=5.0):
    url = "http://127.0.0.1:%d/health" % _int(env, "PORT", 8080)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec: a fixed local URL
            healthy = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print("unhealthy: %s: %s" % (url, exc), file=sys.stderr)
        return 1
    return 0 if healthy else 1


COMMANDS = {"serve": cmd_serve, "migrate": cmd_migrate, "healthcheck": cmd_healthcheck, "isolate": cmd_isolate}


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else argv
    env = dict(os.environ) if env is None else env
    logging.basicConfig(level=(env.get("LOG_LEVEL") or "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print("usage: python -m mlflow_server.entrypoint {%s}\n\nenvironment:\n%s" % (
            ",".join(COMMANDS), "\n".join("  %-26s %s" % item for item in ENVIRONMENT.items())), file=sys.stderr)
        return 0 if argv in (["help"], ["--help"], ["-h"]) else 2
    try:
        return COMMANDS[argv[0]](env)
    except (ConfigError, SchemaError) as exc:
        LOG.error("%s", exc)
        return 3
    except Exception:  # pylint: disable=broad-exception-caught  # logged without the password, then exit 1
        LOG.error("%s failed:\n%s", argv[0], _scrub_env(traceback.format_exc(), env))
        return 1


def _scrub_env(text, env):
    for name in ("AUTH_ADMIN_PASSWORD", "AUTH_SERVING_PASSWORD"):
        if env.get(name):
            text = text.replace(env[name], MASK)
    try:
        password = read_password(env)
    except ConfigError:
        return text
    return scrub(text, Database(user="", password=password, name="", host="-"))


if __name__ == "__main__":
    sys.exit(main())
