#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_quality_info
short_description: Read the live quality of model versions from the drift job's metrics
version_added: 0.1.0
description:
  - Reads the quality the drift job measured on live traffic (the C(drift_metrics) table) for two or more versions
    of a model, such as the champion and a challenger served next to it, and sums it up per version.
  - Only windows in which every version has a value for a metric count for that metric, so the versions are
    compared on the same traffic. A window's value weighs as many predictions as the version made in it
    (its C(volume) metric); RMSE is combined as the root of the weighted mean square.
  - A version that served no compared window has no value; callers treat it as not measured live.
options:
  dataset_id:
    description: The pipeline's dataset.
    type: str
    required: true
  table_id:
    description: The drift job's table.
    type: str
    default: drift_metrics
  model_name:
    description: The registered model.
    type: str
    required: true
  versions:
    description: The versions to compare.
    type: list
    elements: str
    required: true
  metrics:
    description: The quality metrics to read, as the drift job names them (C(metric_type)), such as V(rmse).
    type: list
    elements: str
    required: true
  hours:
    description: How far back to read, from now.
    type: int
    default: 168
  location:
    description: The dataset's location, such as V(EU); when not set, BigQuery finds it.
    type: str
extends_documentation_fragment:
  - deployml.mlops.gcp
attributes:
  check_mode:
    description: Reads only; runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
  idempotent:
    description: Reads only.
    support: full
  action_group:
    description: Use C(group/deployml.mlops.gcp) in C(module_defaults) to set the common options once.
    support: full
    membership:
      - deployml.mlops.gcp
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: How did the challenger do next to the champion this week?
  deployml.mlops.model_quality_info:
    project: my-project
    dataset_id: mlops
    model_name: churn
    versions: ["3", "4"]
    metrics: [accuracy, log_loss]
  register: live

- name: Show it
  ansible.builtin.debug:
    msg: "{{ live.versions['4'].accuracy | default('not served') }}"
"""

RETURN = r"""
versions:
  description: Version to metric to its live value; a version or metric without a shared window is left out.
  returned: always
  type: dict
  sample: {"3": {"accuracy": 0.74}, "4": {"accuracy": 0.78}}
windows:
  description: Metric to the number of windows every version had a value in.
  returned: always
  type: dict
  sample: {"accuracy": 24}
predictions:
  description: Version to metric to the predictions its value is over.
  returned: always
  type: dict
  sample: {"3": {"accuracy": 5210}, "4": {"accuracy": 5188}}
"""

import math
from collections import defaultdict

from ansible_collections.deployml.mlops.plugins.module_utils.bigquery import query
from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError, GcpModule

# Per window, version and alias: the metric's value, and the predictions it weighs (volume). A version that served
# under two aliases in one window (promoted in it) has a row for each.
SQL = """
SELECT m.window_start, m.model_version, m.metric_type, m.value, v.value AS volume
FROM `{table}` AS m
LEFT JOIN `{table}` AS v
  ON v.model_name = m.model_name AND v.window_start = m.window_start AND v.model_version = m.model_version
  AND IFNULL(v.model_alias, '') = IFNULL(m.model_alias, '') AND v.metric_type = 'volume' AND v.feature IS NULL
WHERE m.model_name = @model_name AND m.model_version IN UNNEST(@versions) AND m.metric_type IN UNNEST(@metrics)
  AND m.feature IS NULL AND m.window_start >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL @hours HOUR)
"""


def combine(metric, values):
    """One value from (value, weight) pairs: the weighted mean, or for RMSE the root of the weighted mean square."""
    total = sum(weight for _value, weight in values)
    if metric == "rmse":
        return math.sqrt(sum(weight * value * value for value, weight in values) / total)
    return sum(weight * value for value, weight in values) / total


def summarize(rows, versions):
    """versions, windows and predictions (see RETURN) from the rows of SQL."""
    cells = defaultdict(list)  # (metric, window, version) -> [(value, weight)]
    for row in rows:
        weight = row["volume"] if row["volume"] and row["volume"] > 0 else 1.0  # a window without volume counts once
        cells[(row["metric_type"], row["window_start"], row["model_version"])].append((row["value"], weight))
    per_window = defaultdict(dict)  # (metric, window) -> version -> (value, weight)
    for (metric, window, version), values in cells.items():
        per_window[(metric, window)][version] = (combine(metric, values), sum(w for _v, w in values))
    shared = defaultdict(lambda: defaultdict(list))  # metric -> version -> [(value, weight)]
    windows = defaultdict(int)
    for (metric, _window), by_version in per_window.items():
        if set(versions) <= set(by_version):
            windows[metric] += 1
            for version in versions:
                shared[metric][version].append(by_version[version])
    values, predictions = defaultdict(dict), defaultdict(dict)
    for metric, by_version in shared.items():
        for version, pairs in by_version.items():
            values[version][metric] = combine(metric, pairs)
            predictions[version][metric] = int(sum(weight for _value, weight in pairs))
    return dict(versions=dict(values), windows=dict(windows), predictions=dict(predictions))


def main():
    module = GcpModule(argument_spec=dict(
        dataset_id=dict(type="str", required=True),
        table_id=dict(type="str", default="drift_metrics"),
        model_name=dict(type="str", required=True),
        versions=dict(type="list", elements="str", required=True),
        metrics=dict(type="list", elements="str", required=True),
        hours=dict(type="int", default=168),
        location=dict(type="str"),
    ))
    p = module.params
    versions = sorted(set(p["versions"]))
    if not versions or not p["metrics"] or p["hours"] < 1:
        module.fail_json(msg="give at least one version and one metric, and hours of 1 or more")
    table = "%s.%s.%s" % (p["project"], p["dataset_id"], p["table_id"])
    try:
        rows = query(module.client, p["project"], SQL.format(table=table), dict(
            model_name=p["model_name"], versions=versions, metrics=p["metrics"], hours=p["hours"]), p["location"])
    except GcpApiError as exc:
        module.fail_api(exc)
    module.exit_json(changed=False, **summarize(rows, versions))


if __name__ == "__main__":
    main()
