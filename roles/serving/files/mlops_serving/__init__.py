"""The serving API of the mlops pipeline: a FastAPI app serving models:/<name>@<alias> from MLflow.

    from mlops_serving import Settings, create_app
    app = create_app(Settings.from_env(os.environ))
"""

from .app import create_app
from .config import ConfigError, Settings

__all__ = ["ConfigError", "Settings", "create_app"]
