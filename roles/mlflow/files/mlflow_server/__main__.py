"""`python -m mlflow_server <command>` is `python -m mlflow_server.entrypoint <command>`."""

import sys

from mlflow_server.entrypoint import main

sys.exit(main())
