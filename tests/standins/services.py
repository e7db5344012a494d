"""Start and stop the local stand-ins and services: the BigQuery and Cloud Storage emulators, and for the
local run of the pipeline PostgreSQL, the MLflow server and the serving API.

Used by the pytest fixtures (emulators on ephemeral ports, start()/stop_process()) and by `make local` /
`make test` (fixed ports, pid and log files in a state directory):

    python -m tests.standins.services start --dir .local    # the emulators; prints the endpoints
    python -m tests.standins.services start --dir .local --services postgres,mlflow   # or all
    python -m tests.standins.services summary               # URLs, what the pipeline created, the dashboard pages
    python -m tests.standins.services run --dir .local -- molecule test   # start the emulators if needed, run, restore
    python -m tests.standins.services stop --dir .local     # every service it started, in reverse order

Services and their fixed ports: bigquery 9050, storage 9023 (in memory: their content goes with them),
postgres 5433 (MLflow's backend store; data in <dir>/postgres, kept across restarts: a link to
/var/tmp/deployml-mlops-<hash>/postgres when PostgreSQL's user cannot reach the checkout, see postgres_dir),
mlflow 5000 (started through the image's entrypoint, `migrate` then `serve`, artifacts proxied to the bucket site.yml creates on
the storage emulator), serving 8080 (`python -m mlops_serving`, the model of the worked example). A service
already running is reused; one whose pid file is stale is started again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.standins.inventory import settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORTS = {"bigquery": 9050, "storage": 9023}
EMULATORS = tuple(DEFAULT_PORTS)
LOCAL_PORTS = dict(DEFAULT_PORTS, postgres=5433, mlflow=5000, serving=8080)
SERVICES = ("bigquery", "storage", "postgres", "mlflow", "serving")  # start order; stopped in reverse
MLFLOW_DIR = ROOT / "roles" / "mlflow" / "files"
SERVING_DIR = ROOT / "roles" / "serving" / "files"
LOCAL_INVENTORY = ROOT / "inventories" / "local"
MLFLOW_DB = {"user": "mlflow", "database": "mlflow"}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_duckdb_spatial():
    """bqemulator loads DuckDB's spatial extension; offline it must come from the PyPI package."""
    import duckdb
    import duckdb_extension_spatial

    version = "v" + duckdb.__version__
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
    source = Path(duckdb_extension_spatial.__file__).parent / "extensions" / version / "spatial.duckdb_extension"
    target = Path.home() / ".duckdb" / "extensions" / version / ("linux_" + arch) / "spatial.duckdb_extension"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def command(name, port, project):
    if name == "bigquery":
        ensure_duckdb_spatial()
        return [sys.executable, "-m", "tests.standins.bigquery_emulator", "start", "--rest-port", str(port), "--grpc-port", str(free_port()),
                "--project", project, "--log-level", "warning"]
    return [sys.executable, "-m", "tests.standins.storage_emulator", "--port", str(port)]


def ready_url(name, url):
    return url + ("/bigquery/v2/projects/ready-check/datasets" if name == "bigquery" else "/storage/v1/b")


def wait_ready(name, url, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError("%s emulator exited with code %s" % (name, process.returncode))
        try:
            if requests.get(ready_url(name, url), timeout=2).status_code < 500:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError("%s emulator not ready at %s after %ss" % (name, url, timeout))


def port_in_use(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(name, port, log_path, project="local-project"):
    """Start one emulator in the background; returns (process, url) once it answers."""
    if port_in_use(port):  # else another server would answer the readiness check in its place
        raise RuntimeError("cannot start the %s emulator: port %d is taken by another process "
                           "(stop it, e.g. `make local-stop`)" % (name, port))
    log = open(log_path, "ab")  # pylint: disable=consider-using-with
    process = subprocess.Popen(command(name, port, project), stdout=log, stderr=subprocess.STDOUT,
                               cwd=ROOT, start_new_session=True)
    url = "http://127.0.0.1:%d" % port
    try:
        wait_ready(name, url, process)
    except RuntimeError:
        stop_process(process.pid)
        raise RuntimeError("%s emulator failed to start; see %s" % (name, log_path)) from None
    return process, url


def stop_process(pid, timeout=10):
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)


# -- the local run of the pipeline (make local) ------------------------------------------------------------
def inventory_settings(inventory):
    """The settings site.yml sees with this inventory: the collection defaults under what the inventory sets for
    localhost (ansible-inventory reads any inventory format; the checkout's own is read directly)."""
    inventory = Path(inventory or LOCAL_INVENTORY).resolve()
    if inventory == LOCAL_INVENTORY:
        return settings("local")
    command = [Path(sys.executable).parent / "ansible-inventory", "-i", str(inventory), "--host", "localhost"]
    # A source ansible-inventory cannot parse is only a warning to it: here it is an error to report.
    env = dict(os.environ, ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true")
    listed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if listed.returncode != 0:
        raise RuntimeError("cannot read inventory %s: %s" % (inventory, listed.stderr.strip()))
    return dict(settings("local"), **{key: value for key, value in json.loads(listed.stdout).items()
                                      if key.startswith("mlops_")})


def local_settings(project=None, inventory=None):
    """Project, dataset, artifacts bucket and served model of the inventory (the names site.yml creates)."""
    import jinja2

    values = inventory_settings(inventory)
    if project:
        values["mlops_gcp_project"] = project

    def render(value):
        return jinja2.Environment().from_string(str(value)).render(values)

    return {"project": values["mlops_gcp_project"], "dataset": render(values["mlops_bigquery_dataset"]),
            "bucket": render(values["mlops_mlflow_artifacts_bucket"]), "model_name": render(values["mlops_model_name"]),
            "model_alias": render(values["mlops_model_alias"]),
            # What the serving API must know to serve the inventory's own model (see serving_declarations).
            "label": values.get("mlops_label") or {}, "features": values.get("mlops_features") or [],
            # A legacy stage served instead of the alias, and the challenger (null: none), as the serving role has them.
            "model_stage": render(values["mlops_model_stage"]) if values.get("mlops_model_stage") else "",
            "challenger": values.get("mlops_challenger") or None}


def serving_selection(settings):
    """MODEL_STAGE and the CHALLENGER_* variables the serving role gives the API (roles/serving/tasks/main.yml);
    empty when unset. The API checks them (config.py), as validate.yml does for the role."""
    challenger = settings.get("challenger") or {}
    fraction = challenger.get("fraction")
    return {"MODEL_STAGE": settings.get("model_stage") or "",
            "CHALLENGER_ALIAS": str(challenger.get("alias") or ""),
            "CHALLENGER_MODE": str(challenger.get("mode") or "shadow") if challenger else "",
            "CHALLENGER_FRACTION": "" if fraction is None else str(fraction)}


REGRESSION_LABEL_TYPES = ("FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC")


def serving_declarations(settings):
    """The variables the serving role gives the API from mlops_label and mlops_features (roles/serving/tasks/main.yml,
    serving_label_task in its defaults): without them a classifier of the inventory would be served without its
    declared classes and positive class, and its categories only from the model's encoders."""
    label, features = settings.get("label") or {}, settings.get("features") or []
    label_type = str(label.get("type") or "")
    task = label.get("task") or (("regression" if label_type.upper() in REGRESSION_LABEL_TYPES else "classification")
                                 if label_type else "auto")
    positive = label.get("positive_class")
    return {"MODEL_TASK": task, "MODEL_LABEL_TYPE": label_type,
            "MODEL_POSITIVE_CLASS": "" if positive is None else str(positive).lower() if isinstance(positive, bool)
            else str(positive),
            "MODEL_CLASSES": "" if label.get("classes") is None else json.dumps(label["classes"]),
            "MODEL_FEATURES": json.dumps(features)}


def url_of(name):
    return "http://127.0.0.1:%d" % LOCAL_PORTS[name]


def http_ok(url, timeout=2):
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def wait_http(url, process, log_path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("%s exited with code %s; see %s:\n%s" % (
                url, process.returncode, log_path, Path(log_path).read_text(errors="replace")[-3000:]))
        if http_ok(url):
            return True
        time.sleep(0.3)
    return False


def clean_env(*prefixes):
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


def spawn(command, env, log_path):
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=log,  # pylint: disable=consider-using-with
                                stderr=subprocess.STDOUT, start_new_session=True)


def postgres_dir(state_dir):
    """Where PostgreSQL keeps its cluster: <dir>/postgres, unless its service user cannot reach that.

    As root, PostgreSQL runs as the `postgres` user, which cannot enter a checkout under /root (mode 0700). The
    cluster then lives in /var/tmp/deployml-mlops-<hash of the state directory>/postgres, and <dir>/postgres is
    a symlink to it, so `ls -l .local/postgres` says where; the directories above the checkout are left alone."""
    from tests.standins.postgres import SERVICE_USER

    link = state_dir / "postgres"
    if link.is_symlink() or os.geteuid() != 0:
        return link.resolve()
    reachable = subprocess.run(["runuser", "-u", SERVICE_USER, "--", "test", "-x", str(state_dir.resolve())],
                               check=False, capture_output=True).returncode == 0
    if reachable:
        return link.resolve()
    if link.is_dir():
        link.rmdir()  # left empty by an earlier attempt that could not initialise it; a cluster is never removed
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    target = Path("/var/tmp") / ("deployml-mlops-" + digest) / "postgres"
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return target


def postgres_server(state_dir):
    from tests.standins.postgres import PostgresServer

    return PostgresServer(postgres_dir(state_dir), LOCAL_PORTS["postgres"])


def start_postgres(state_dir):
    """PostgreSQL with MLflow's role and database; the password generated once into <dir>/mlflow-db.password."""
    import secrets

    server = postgres_server(state_dir)
    password_file = state_dir / "mlflow-db.password"
    if server.running():
        print("postgres already running on 127.0.0.1:%d" % server.port)
        started = False
    else:
        if port_in_use(server.port):
            raise RuntimeError("cannot start PostgreSQL: port %d is taken by another process" % server.port)
        server.init().start()
        started = True
        print("postgres running on 127.0.0.1:%d (data %s, log %s)" % (server.port, server.data, server.log))
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(24))
        os.chmod(password_file, 0o600)
    server.create_role(MLFLOW_DB["user"], password_file.read_text().strip())
    server.create_database(MLFLOW_DB["database"], MLFLOW_DB["user"])
    return started


def mlflow_env(state_dir, settings):
    """What Cloud Run gives the MLflow container, pointed at the local PostgreSQL and storage emulator."""
    env = clean_env("MLFLOW_", "DB_", "CLOUD_SQL_")
    env.update({"PYTHONPATH": str(MLFLOW_DIR), "DB_USER": MLFLOW_DB["user"], "DB_NAME": MLFLOW_DB["database"],
                "DB_PASSWORD_FILE": str((state_dir / "mlflow-db.password").resolve()), "DB_HOST": "127.0.0.1",
                "DB_PORT": str(LOCAL_PORTS["postgres"]),
                "ARTIFACTS_DESTINATION": "gs://%s/mlflow" % settings["bucket"],
                "STORAGE_EMULATOR_HOST": url_of("storage"), "GOOGLE_CLOUD_PROJECT": settings["project"],
                "SERVICE_URLS": url_of("mlflow"), "PORT": str(LOCAL_PORTS["mlflow"]), "HOST": "127.0.0.1",
                "WORKERS": "1"})
    return env


def start_mlflow(state_dir, settings):
    """`migrate` (the job run before a rollout), then `serve`, through the image's entrypoint."""
    env = mlflow_env(state_dir, settings)
    migrate = subprocess.run([sys.executable, "-m", "mlflow_server", "migrate"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=600, check=False)
    if migrate.returncode != 0:
        raise RuntimeError("MLflow schema migration failed (exit %d):\n%s" % (migrate.returncode, migrate.stderr[-3000:]))
    log_path = state_dir / "mlflow.log"
    process = spawn([sys.executable, "-m", "mlflow_server", "serve"], env, log_path)
    if not wait_http(url_of("mlflow") + "/health", process, log_path, 180):
        stop_process(process.pid)
        raise RuntimeError("MLflow did not answer /health within 180s; see %s" % log_path)
    print("mlflow running at %s (pid %d, log %s, artifacts gs://%s/mlflow)" % (
        url_of("mlflow"), process.pid, log_path, settings["bucket"]))
    return process


def serving_env(settings):
    """What the serving role gives the Cloud Run service, pointed at the local MLflow and BigQuery emulator."""
    env = clean_env("MLFLOW_", "MODEL_", "LOG_", "BIGQUERY_", "CHALLENGER_")
    env.update({"PYTHONPATH": str(SERVING_DIR), "PORT": str(LOCAL_PORTS["serving"]), "HOST": "127.0.0.1",
                "MLFLOW_TRACKING_URI": url_of("mlflow"), "MODEL_NAME": settings["model_name"],
                "MODEL_ALIAS": settings["model_alias"], "MODEL_POLL_INTERVAL": "10",
                "BIGQUERY_PROJECT": settings["project"], "BIGQUERY_DATASET": settings["dataset"],
                "BIGQUERY_API_ENDPOINT": url_of("bigquery")})
    env.update(serving_declarations(settings))
    env.update(serving_selection(settings))
    return env


def serving_settings(settings):
    """What makes a running serving API the one an inventory wants (its env minus this process's own)."""
    return {key: value for key, value in serving_env(settings).items()
            if key.startswith(("MODEL_", "BIGQUERY_", "CHALLENGER_"))}


def serves_other_settings(state_dir, settings):
    """Whether the serving API running was started for another inventory (or by an older version of this file)."""
    recorded = state_dir / "serving.settings.json"
    return not recorded.exists() or json.loads(recorded.read_text()) != serving_settings(settings)


def start_serving(state_dir, settings):
    """The serving API on the inventory's model; it follows the alias (a new version is served within 10 s)."""
    log_path = state_dir / "serving.log"
    process = spawn([sys.executable, "-m", "mlops_serving"], serving_env(settings), log_path)
    (state_dir / "serving.settings.json").write_text(json.dumps(serving_settings(settings), sort_keys=True))
    if not wait_http(url_of("serving") + "/health", process, log_path, 120):
        stop_process(process.pid)
        raise RuntimeError("the serving API did not answer /health within 120s; see %s" % log_path)
    ready = wait_http(url_of("serving") + "/ready", process, log_path, 120)
    print("serving running at %s (pid %d, log %s): %s" % (
        url_of("serving"), process.pid, log_path,
        "model %(model_name)s@%(model_alias)s loaded" % settings if ready else
        "waiting for model %(model_name)s@%(model_alias)s (register it, e.g. make example)" % settings))
    return process


# What the command line of each service's process holds: a pid file naming anything else is stale (the
# process ended and its pid was reused) and that process is left alone.
MARKERS = {"bigquery": "tests.standins.bigquery_emulator", "storage": "tests.standins.storage_emulator",
           "mlflow": "mlflow", "serving": "mlops_serving"}


def our_process(name, pid):
    cmdline = Path("/proc/%d/cmdline" % pid)
    if not Path("/proc/self/cmdline").exists():
        return True  # no procfs: trust the pid file
    try:
        return MARKERS[name] in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def stop_service(name, pid_file, timeout=20):
    pid = int(pid_file.read_text())
    if our_process(name, pid):
        stop_process(pid, timeout=timeout)
    pid_file.unlink()


def health_url(name):
    if name in EMULATORS:
        return ready_url(name, url_of(name))
    return url_of(name) + "/health"


def parse_services(text):
    names = list(SERVICES) if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise RuntimeError("unknown service %s (known: %s, or all)" % (", ".join(unknown), ", ".join(SERVICES)))
    return [n for n in SERVICES if n in names]


def cli_start(state_dir, project, names=EMULATORS, model_name=None, inventory=None):
    """Start the named services that are not running yet, in order; returns the names of those it started."""
    state_dir.mkdir(parents=True, exist_ok=True)
    settings = local_settings(project, inventory)
    settings["model_name"] = model_name or settings["model_name"]
    started = []
    for name in [n for n in SERVICES if n in names]:
        if name == "postgres":
            if start_postgres(state_dir):
                started.append(name)
            continue
        pid_file = state_dir / ("%s.pid" % name)
        url = url_of(name)
        if pid_file.exists():
            other = name == "serving" and serves_other_settings(state_dir, settings)
            if http_ok(health_url(name)) and not other:
                print("%s already running at %s" % (name, url))
                continue
            if other:
                print("serving runs another inventory's model: restarting it for %(model_name)s@%(model_alias)s"
                      % settings)
            stop_service(name, pid_file)  # hung, stale, or serving another inventory: start it again
        if port_in_use(LOCAL_PORTS[name]):
            raise RuntimeError("cannot start %s: port %d is taken by another process (stop it, e.g. `make local-stop`)"
                               % (name, LOCAL_PORTS[name]))
        if name in EMULATORS:
            process, url = start(name, LOCAL_PORTS[name], state_dir / ("%s.log" % name), settings["project"])
            print("%s emulator running at %s (pid %d, log %s)" % (name, url, process.pid, state_dir / ("%s.log" % name)))
        elif name == "mlflow":
            process = start_mlflow(state_dir, settings)
        else:
            process = start_serving(state_dir, settings)
        pid_file.write_text(str(process.pid))
        started.append(name)
    return started


def cli_stop(state_dir, names=SERVICES):
    for name in reversed([n for n in SERVICES if n in names]):
        if name == "postgres":
            server = postgres_server(state_dir)
            if server.data.exists() and server.running():
                server.stop()
                print("postgres stopped (data kept in %s)" % server.data)
            continue
        pid_file = state_dir / ("%s.pid" % name)
        if pid_file.exists():
            stop_service(name, pid_file)  # serving flushes its prediction log first (up to ~10 s)
            print("%s stopped" % name)


# -- summary ------------------------------------------------------------------------------------------
def bigquery_count(settings, table, where):
    """COUNT(*) of a table through jobs.query, or None when it cannot be read."""
    sql = "SELECT COUNT(*) FROM `%s.%s.%s` WHERE %s" % (settings["project"], settings["dataset"], table, where)
    try:
        answer = requests.post("%s/bigquery/v2/projects/%s/queries" % (url_of("bigquery"), settings["project"]),
                               json={"query": sql, "useLegacySql": False}, timeout=30)
        return int(answer.json()["rows"][0]["f"][0]["v"]) if answer.status_code == 200 else None
    except (requests.RequestException, KeyError, IndexError, ValueError):
        return None


def summary_bigquery(settings):
    project = settings["project"]
    bigquery = "%s/bigquery/v2/projects/%s/datasets" % (url_of("bigquery"), project)
    for dataset in requests.get(bigquery, timeout=10).json().get("datasets", []):
        dataset_id = dataset["datasetReference"]["datasetId"]
        print("BigQuery dataset %s.%s (emulator %s)" % (project, dataset_id, url_of("bigquery")))
        tables = requests.get("%s/%s/tables" % (bigquery, dataset_id), timeout=10).json().get("tables", [])
        for listed in tables:
            table_id = listed["tableReference"]["tableId"]
            table = requests.get("%s/%s/tables/%s" % (bigquery, dataset_id, table_id), timeout=10).json()
            partitioning = table.get("timePartitioning", {})
            # predictions requires a filter on its partition column, like any query of it should have
            where = "%s >= TIMESTAMP '1970-01-01'" % partitioning["field"] if partitioning.get("field") else "TRUE"
            rows = bigquery_count(dict(settings, dataset=dataset_id), table_id, where)
            print("  table %-18s %2d columns, partitioned by %s on %s, clustered by %s: %s rows" % (
                table_id, len(table["schema"]["fields"]), partitioning.get("type", "-"), partitioning.get("field", "-"),
                ", ".join(table.get("clustering", {}).get("fields", [])) or "-", "?" if rows is None else rows))


def summary_storage(settings):
    storage = "%s/storage/v1/b" % url_of("storage")
    for bucket in requests.get(storage, params={"project": settings["project"]}, timeout=10).json().get("items", []):
        objects = requests.get("%s/%s/o" % (storage, bucket["name"]), timeout=10).json().get("items", [])
        print("Cloud Storage bucket gs://%s (emulator %s; %s, versioning %s, public access prevention %s): %d objects"
              % (bucket["name"], url_of("storage"), bucket.get("location"),
                 "on" if bucket.get("versioning", {}).get("enabled") else "off",
                 bucket.get("iamConfiguration", {}).get("publicAccessPrevention", "-"), len(objects)))


def summary_mlflow(settings):
    api = url_of("mlflow") + "/api/2.0/mlflow"
    models = requests.get(api + "/registered-models/search", params={"max_results": 100}, timeout=10).json()
    print("MLflow %s (UI and API; backend store PostgreSQL 127.0.0.1:%d, artifacts gs://%s/mlflow)" % (
        url_of("mlflow"), LOCAL_PORTS["postgres"], settings["bucket"]))
    for model in models.get("registered_models", []):
        versions = requests.get(api + "/model-versions/search", params={"filter": "name='%s'" % model["name"]},
                                timeout=10).json().get("model_versions", [])
        aliases = ", ".join("%s -> version %s" % (a["alias"], a["version"]) for a in model.get("aliases", [])) or "no alias"
        print("  model %s: %d versions, %s" % (model["name"], len(versions), aliases))


def summary_serving(settings):
    ready = requests.get(url_of("serving") + "/ready", timeout=10)
    state = ready.json()
    if ready.status_code == 200:
        print("Serving API %s: %s version %s (alias %s); POST /predict, GET /model, /metrics, /docs" % (
            url_of("serving"), state["model_name"], state["model_version"], state["model_alias"]))
    else:
        print("Serving API %s: not ready (%s)" % (url_of("serving"), state.get("detail", state)))
    print("  logs predictions to %s.%s.predictions" % (settings["project"], settings["dataset"]))


def cli_summary(project, state_dir=Path(".local"), inventory=None):
    """Print the services' URLs and what the pipeline created in them; a service that is down is said so."""
    settings = local_settings(project, inventory)
    for name, show in (("bigquery", summary_bigquery), ("storage", summary_storage), ("mlflow", summary_mlflow),
                       ("serving", summary_serving)):
        try:
            show(settings)
        except (requests.RequestException, ValueError) as exc:
            print("%s at %s: not running (%s)" % (name, url_of(name), type(exc).__name__))
    if (state_dir / "postgres").exists():
        running = postgres_server(state_dir).running()
        print("PostgreSQL 127.0.0.1:%d (MLflow's backend store): %s" % (
            LOCAL_PORTS["postgres"], "running" if running else "stopped"))
    print(summary_dashboards(state_dir))


def summary_dashboards(state_dir):
    """The last line of the summary: where the pages `make dashboards` draws are (Grafana's dashboards locally)."""
    pages = sorted((state_dir / "dashboards").glob("*.html"))
    if not pages:
        return "Dashboards: none drawn yet (make dashboards draws them into %s)" % (state_dir / "dashboards")
    return "Dashboards (open in a browser; make dashboards draws them again): %s" % " ".join(
        str(page.resolve()) for page in pages)


def main():
    parser = argparse.ArgumentParser(description="local stand-ins for Google APIs and the local pipeline services")
    parser.add_argument("action", choices=["start", "stop", "summary", "run"])
    parser.add_argument("--dir", default=".local", type=Path, help="pid and log files")
    parser.add_argument("--inventory", default=None, type=Path,
                        help="the inventory site.yml runs on (default inventories/local): names and model")
    parser.add_argument("--project", default=None, help="default: mlops_gcp_project of the inventory")
    parser.add_argument("--services", default=None,
                        help="comma-separated services (%s) or all; start and run default to the emulators, stop "
                             "to all" % ", ".join(SERVICES))
    parser.add_argument("--model-name", default=None, help="model the serving API serves (default: mlops_model_name)")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)  # with run: the command follows --
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1:]
    try:
        run_action(args)
    except RuntimeError as exc:
        sys.exit(str(exc))


def run_action(args):
    default = SERVICES if args.action == "stop" else EMULATORS
    names = parse_services(args.services) if args.services else list(default)
    if args.action == "start":
        cli_start(args.dir, args.project, names, args.model_name, args.inventory)
    elif args.action == "stop":
        cli_stop(args.dir, names)
    elif args.action == "summary":
        cli_summary(args.project, args.dir, args.inventory)
    else:
        started = cli_start(args.dir, args.project, names, args.model_name, args.inventory)
        try:
            code = subprocess.call(args.command)
        finally:
            cli_stop(args.dir, started)
        sys.exit(code)


if __name__ == "__main__":
    main()
