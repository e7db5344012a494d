"""Run the serving API: `python -m mlops_serving` (the image's command), on 0.0.0.0:$PORT.

Configuration is by environment variables (`python -m mlops_serving --help` lists them). One process per
container: Cloud Run scales by instances, and the counters in /metrics are per process.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from .config import ConfigError, Settings, describe

SHUTDOWN_GRACE = 2.0  # seconds for requests in progress at SIGTERM; the prediction log flush follows


class JsonFormatter(logging.Formatter):
    """One JSON object per line: Cloud Logging reads `severity` and `message` from it."""

    def format(self, record):
        entry = {"severity": record.levelname, "logger": record.name, "message": record.getMessage(),
                 "time": self.formatTime(record)}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level):
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    if argv:
        print("usage: python -m mlops_serving  (configured by environment)\n\n" + describe() +
              "\n  %-22s %s" % ("PORT", "port to listen on (default 8080)") +
              "\n  %-22s %s" % ("LOG_LEVEL", "log level (default INFO)"), file=sys.stderr)
        return 0 if argv[0] in ("-h", "--help") else 2
    try:
        settings = Settings.from_env(env)
        port = int(env.get("PORT") or 8080)
    except (ConfigError, ValueError) as exc:
        print(json.dumps({"severity": "ERROR", "logger": "mlops_serving", "message": "invalid configuration: %s" % exc}),
              file=sys.stderr)
        return 2
    configure_logging((env.get("LOG_LEVEL") or "INFO").upper())
    import uvicorn

    from .app import create_app

    uvicorn.run(create_app(settings), host=env.get("HOST") or "0.0.0.0", port=port, workers=1, log_config=None,
                access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
