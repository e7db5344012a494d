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

if [ -n "$problems" ]; then
    echo "grafana: refusing to start:${problems}" >&2
    exit 64
fi

if [ -n "${PORT:-}" ] && [ -z "${GF_SERVER_HTTP_PORT:-}" ]; then
    GF_SERVER_HTTP_PORT=$PORT
    export GF_SERVER_HTTP_PORT
fi

[ "$#" -gt 0 ] || set -- /run.sh
exec "$@"
