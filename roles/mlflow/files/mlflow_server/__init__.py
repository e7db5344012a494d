"""The MLflow tracking server image: configuration from the environment, `serve`, `migrate`, `healthcheck`."""
