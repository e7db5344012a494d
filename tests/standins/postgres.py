"""A throwaway PostgreSQL server (the real one, Debian's postgresql package) in a directory, on a given port.

It listens on 127.0.0.1 and on unix sockets, like Cloud SQL behind the Cloud Run connector
(`/cloudsql/<connection name>/.s.PGSQL.<port>`): extra socket directories can be given for that. The
superuser connects without a password over the unix socket of the data directory only; every other role
authenticates with its password (scram-sha-256) on TCP and on the other sockets, so a wrong or badly
encoded password fails as it would against Cloud SQL.

As root the server runs as the `postgres` user (PostgreSQL refuses to run as root), in a directory that
user owns. Used by tests/apps/conftest.py and by hand (or `make local`):

    python -m tests.standins.postgres start --dir .local/postgres --port 5433 --user mlflow --database mlflow \
        --password-file .local/postgres/mlflow.password
    python -m tests.standins.postgres stop --dir .local/postgres
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVICE_USER = "postgres"
SUPERUSER = "postgres"


class PostgresError(RuntimeError):
    """A PostgreSQL command failed; the message carries its output."""


def find_bin_dir():
    """Directory of initdb/pg_ctl: $PG_BIN, the newest /usr/lib/postgresql/<v>/bin, or PATH."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL server binaries not found (install Debian's postgresql package or set PG_BIN)")


def _quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def _quote_literal(value):
    return "'%s'" % value.replace("'", "''")


class PostgresServer:
    """One PostgreSQL cluster: its data directory, port and socket directories."""

    def __init__(self, directory, port, socket_dirs=()):
        self.directory = Path(directory).resolve()
        self.port = int(port)
        self.data = self.directory / "data"
        self.socket_dir = self.directory / "socket"  # the superuser's trusted socket
        self.socket_dirs = [Path(d).resolve() for d in socket_dirs]
        self.log = self.directory / "postgres.log"
        self.bin = find_bin_dir()
        self.as_service_user = os.geteuid() == 0

    # -- process helpers --------------------------------------------------------------------------
    def _run(self, *args, **kwargs):
        command = [str(self.bin / args[0])] + [str(a) for a in args[1:]]
        if self.as_service_user:
            command = ["runuser", "-u", SERVICE_USER, "--"] + command
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, **kwargs)
        if result.returncode:
            raise PostgresError("%s failed (exit %d): %s" % (args[0], result.returncode,
                                                             (result.stderr or result.stdout).strip()))
        return result

    def _own(self, path):
        if self.as_service_user:
            entry = pwd.getpwnam(SERVICE_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _mkdir(self, path, mode=0o700):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
        self._own(path)

    # -- lifecycle -----------------------------------------------------------------------------------
    def init(self):
        """initdb (once) and an authentication file: trust only for the superuser on its own socket."""
        self._mkdir(self.directory, 0o755)
        if self.as_service_user and subprocess.run(["runuser", "-u", SERVICE_USER, "--", "test", "-w", str(self.directory)],
                                                   check=False).returncode:
            raise PostgresError("the %s user cannot write to %s: every parent directory must be searchable by it "
                                "(chmod o+x), e.g. use a directory under /tmp" % (SERVICE_USER, self.directory))
        self._mkdir(self.socket_dir, 0o755)
        for extra in self.socket_dirs:
            self._mkdir(extra, 0o755)
        if not (self.data / "PG_VERSION").exists():
            self._mkdir(self.data)
            self._run("initdb", "-D", self.data, "-U", SUPERUSER, "-E", "UTF8", "--auth=trust", "--no-sync",
                      "--no-instructions")  # pg_hba.conf is replaced below
        hba = ["# written by tests/standins/postgres.py",
               "local all %s trust" % SUPERUSER,  # only reachable through the socket of the data dir, below
               "local all all scram-sha-256",
               "host all all 127.0.0.1/32 scram-sha-256"]
        hba_path = self.data / "pg_hba.conf"
        hba_path.write_text("\n".join(hba) + "\n")
        self._own(hba_path)
        return self

    def start(self, timeout=60):
        if not (self.data / "PG_VERSION").exists():
            self.init()
        sockets = ",".join(str(d) for d in [self.socket_dir] + self.socket_dirs)
        options = "-p %d -k '%s' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" % (
            self.port, sockets)
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", str(timeout), "start")
        return self

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
            except PostgresError as exc:
                if "Is server running?" not in str(exc):
                    raise

    def running(self):
        try:
            self._run("pg_ctl", "-D", self.data, "status")
            return True
        except PostgresError:
            return False

    # -- administration ------------------------------------------------------------------------------
    def admin_connect(self, database="postgres"):
        import psycopg2

        connection = psycopg2.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=database)
        connection.autocommit = True
        return connection

    def execute(self, sql, database="postgres"):
        connection = self.admin_connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def create_role(self, name, password):
        """Create the login role, or reset its password when it exists."""
        exists = self.query("SELECT 1 FROM pg_roles WHERE rolname = %s" % _quote_literal(name))
        verb = "ALTER" if exists else "CREATE"
        self.execute("%s ROLE %s LOGIN PASSWORD %s" % (verb, _quote_ident(name), _quote_literal(password)))

    def create_database(self, name, owner):
        if not self.query("SELECT 1 FROM pg_database WHERE datname = %s" % _quote_literal(name)):
            self.execute("CREATE DATABASE %s OWNER %s" % (_quote_ident(name), _quote_ident(owner)))

    def drop_database(self, name):
        self.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % _quote_ident(name))

    def query(self, sql, database="postgres"):
        connection = self.admin_connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            connection.close()


def temporary_directory(prefix="pg-"):
    """A directory the server user can reach (pytest's tmp dirs are private to root: mode 0700)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.geteuid() == 0 else None))


def wait_for_port(port, timeout=30):
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("PostgreSQL not listening on port %d after %ss" % (port, timeout))


def main(argv=None):
    parser = argparse.ArgumentParser(description="a throwaway PostgreSQL server")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=Path(".local/postgres"))
    parser.add_argument("--port", type=int, default=5433)
    parser.add_argument("--socket-dir", action="append", default=[], help="extra unix socket directory")
    parser.add_argument("--user", help="login role to create")
    parser.add_argument("--password-file", type=Path, help="password of --user (created with a random one if missing)")
    parser.add_argument("--database", help="database to create, owned by --user")
    args = parser.parse_args(argv)
    server = PostgresServer(args.dir, args.port, args.socket_dir)
    if args.action == "stop":
        server.stop()
        print("PostgreSQL in %s stopped" % server.directory)
        return
    if args.action == "status":
        sys.exit(0 if server.running() else 1)
    if not server.running():
        try:
            server.init().start()
        except PostgresError as exc:
            sys.exit(str(exc))
    if args.user:
        if not args.password_file:
            parser.error("--user needs --password-file")
        if not args.password_file.exists():
            import secrets

            args.password_file.parent.mkdir(parents=True, exist_ok=True)
            args.password_file.write_text(secrets.token_urlsafe(24))
            os.chmod(args.password_file, 0o600)
        server.create_role(args.user, args.password_file.read_text().strip())
        if args.database:
            server.create_database(args.database, args.user)
    print("PostgreSQL running on 127.0.0.1:%d (data %s, log %s)" % (server.port, server.data, server.log))


if __name__ == "__main__":
    main()
