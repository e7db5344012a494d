"""Drift job: drift and model-quality metrics computed inside BigQuery for one time window (and the quality of the
model's earlier windows again while their outcomes may still arrive).

Run as ``python -m drift_job --window-start ... --window-end ...`` (see ``drift_job.__main__``) or from
Python with :func:`drift_job.job.run`.
"""

from __future__ import annotations

from drift_job.job import METRIC_TYPES, Config, ConfigError, Feature, build_query, query_parameters, run

__all__ = ["METRIC_TYPES", "Config", "ConfigError", "Feature", "build_query", "query_parameters", "run"]
__version__ = "0.1.0"
