#!/bin/sh
# Start Grafana only with a safe configuration, then hand over to the image's own start script.
#
# Refuses to start (exit 64, naming what is missing, never printing a value) when:
# - no admin password is set, or it is "admin": set GF_SECURITY_ADMIN_PASSWORD__FILE to a file mounted
#   from Secret Manager (or GF_SECURITY_ADMIN_PASSWORD from a secret env var);
# - the state database is not PostgreSQL: GF_DATABASE_TYPE=postgres, GF_DATABASE_HOST (on Cloud Run the
#   Cloud SQL socket, /cloudsql/PROJECT:REGION:INSTANCE), GF_DATABASE_NAME, GF_DATABASE_USER and
#   GF_DATABASE_PASSWORD__FILE or GF_DATABASE_PASSWORD. MLOPS_GRAFANA_ALLOW_SQLITE=true lifts this for a
#   throwaway local instance;
# - the BigQuery datasource has no default project (GF_BIGQUERY_PROJECT), or uses jwt authentication
#   without GF_BIGQUERY_CLIENT_EMAIL and a readable GF_BIGQUERY_PRIVATE_KEY_PATH.
# - MLOPS_BIGQUERY_DATASET is not a BigQuery dataset name (letters, digits, underscores; at most 1024).
# The dashboards are copied from MLOPS_DASHBOARDS_SOURCE to MLOPS_DASHBOARDS_DIR (where the dashboard provider
# reads them) with their hidden `dataset` constant set to MLOPS_BIGQUERY_DATASET (default mlops): the constant is
# pasted into the panels' SQL, so it comes from the deployment, never from a viewer, and is checked here first.
# The alert rules and contact points (MLOPS_ALERT_RULES, MLOPS_ALERT_NOTIFICATIONS: provisioning YAML or JSON the deployment
# rendered from the inventory, holding ${VAR} references instead of secrets) are written to MLOPS_ALERTING_DIR, where
# Grafana's alerting provisioning reads them; an unset variable writes no file.
# Cloud Run's PORT becomes Grafana's HTTP port unless GF_SERVER_HTTP_PORT is set.
# The command to run is the arguments (the image's CMD: /run.sh).
set -eu

problems=""
missing() { problems="${problems}
  - $1"; }

secret_set() {  # $1: variable name; true when $1 or ${1}__FILE (a readable, non-empty file) is set
    eval "value=\${$1:-}"
    eval "file=\${$1__FILE:-}"
    if [ -n "$file" ]; then
        [ -r "$file" ] && [ -s "$file" ]
        return
    fi
    [ -n "$value" ]
}

secret_is() {  # $1: variable name, $2: a value the secret must not have
    eval "value=\${$1:-}"
    eval "file=\${$1__FILE:-}"
    if [ -n "$file" ] && [ -r "$file" ]; then
        value=$(cat "$file")
    fi
    [ "$value" = "$2" ]
}

if ! secret_set GF_SECURITY_ADMIN_PASSWORD; then
    missing "admin password: set GF_SECURITY_ADMIN_PASSWORD__FILE (a mounted secret) or GF_SECURITY_ADMIN_PASSWORD"
elif secret_is GF_SECURITY_ADMIN_PASSWORD admin; then
    missing "admin password must not be the default 'admin'"
fi

if [ "${MLOPS_GRAFANA_ALLOW_SQLITE:-false}" != "true" ]; then
    if [ "${GF_DATABASE_TYPE:-}" != "postgres" ]; then
        missing "state database: GF_DATABASE_TYPE must be postgres (got '${GF_DATABASE_TYPE:-sqlite3}')"
    else
        for name in GF_DATABASE_HOST GF_DATABASE_NAME GF_DATABASE_USER; do
            eval "value=\${$name:-}"
            [ -n "$value" ] || missing "state database: $name is not set"
        done
        secret_set GF_DATABASE_PASSWORD || missing "state database: set GF_DATABASE_PASSWORD__FILE or GF_DATABASE_PASSWORD"
    fi
fi

[ -n "${GF_BIGQUERY_PROJECT:-}" ] || missing "BigQuery datasource: GF_BIGQUERY_PROJECT (default project) is not set"
case "${GF_BIGQUERY_AUTHENTICATION_TYPE:-}" in
    gce) ;;
    jwt)
        [ -n "${GF_BIGQUERY_CLIENT_EMAIL:-}" ] || missing "BigQuery datasource: jwt needs GF_BIGQUERY_CLIENT_EMAIL"
        if [ -z "${GF_BIGQUERY_PRIVATE_KEY_PATH:-}" ] || [ ! -r "${GF_BIGQUERY_PRIVATE_KEY_PATH}" ]; then
            missing "BigQuery datasource: jwt needs a readable key file at GF_BIGQUERY_PRIVATE_KEY_PATH"
        fi
        ;;
    *) missing "BigQuery datasource: GF_BIGQUERY_AUTHENTICATION_TYPE must be gce or jwt" ;;
esac

dataset=${MLOPS_BIGQUERY_DATASET:-mlops}
case "$dataset" in
    "" | *[!A-Za-z0-9_]*) dataset_valid=false ;;
    *) dataset_valid=true ;;
esac
if [ "$dataset_valid" != true ] || [ "${#dataset}" -gt 1024 ]; then
    missing "BigQuery dataset: MLOPS_BIGQUERY_DATASET must be letters, digits and underscores (1 to 1024)"
fi

if [ -n "$problems" ]; then
    echo "grafana: refusing to start:${problems}" >&2
    exit 64
fi

if [ -n "${PORT:-}" ] && [ -z "${GF_SERVER_HTTP_PORT:-}" ]; then
    GF_SERVER_HTTP_PORT=$PORT
    export GF_SERVER_HTTP_PORT
fi

# Each dashboard file holds the constant's default exactly once ("query": "mlops"; tests check it), and a
# dataset name cannot contain a character sed or JSON would treat specially (checked above).
if [ -n "${MLOPS_DASHBOARDS_SOURCE:-}" ] && [ -n "${MLOPS_DASHBOARDS_DIR:-}" ]; then
    mkdir -p "$MLOPS_DASHBOARDS_DIR"
    for dashboard in "$MLOPS_DASHBOARDS_SOURCE"/*.json; do
        [ -e "$dashboard" ] || continue
        sed "s/\"query\": \"mlops\"/\"query\": \"$dataset\"/" "$dashboard" > "$MLOPS_DASHBOARDS_DIR/${dashboard##*/}"
    done
fi

if [ -n "${MLOPS_ALERTING_DIR:-}" ]; then
    mkdir -p "$MLOPS_ALERTING_DIR"
    if [ -n "${MLOPS_ALERT_RULES:-}" ]; then
        printf '%s\n' "$MLOPS_ALERT_RULES" > "$MLOPS_ALERTING_DIR/mlops-rules.yaml"
    fi
    if [ -n "${MLOPS_ALERT_NOTIFICATIONS:-}" ]; then
        printf '%s\n' "$MLOPS_ALERT_NOTIFICATIONS" > "$MLOPS_ALERTING_DIR/mlops-notifications.yaml"
    fi
fi

[ "$#" -gt 0 ] || set -- /run.sh
exec "$@"
