#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_model_compare
short_description: Decide whether a model version may take an alias, by comparing run metrics
version_added: 0.1.0
description:
  - Read a candidate version of an MLflow registered model and the version an alias points at now (the current
    C(champion)), read the metrics logged on each version's run, and compare them on the metrics you declare.
  - The candidate may be worse than the current version on a metric by at most the larger of O(metrics[].tolerance)
    and O(metrics[].relative_tolerance) times the current value. It is refused when it is worse beyond that on any
    metric, or when its run lacks one of the metrics. A current version without a value for a metric (or no
    current version at all) does not block the candidate.
  - Changes nothing. Move the alias with M(deployml.mlops.mlflow_model) when RV(decision) is V(promote).
options:
  name:
    description: The registered model's name.
    type: str
    required: true
  alias:
    description: The alias the candidate would take.
    type: str
    default: champion
  candidate_version:
    description:
      - The candidate's version number, or V(latest) for the highest C(READY) version.
      - One of O(candidate_version) and O(candidate_alias) is required.
    type: str
  candidate_alias:
    description:
      - An alias pointing at the candidate, such as V(challenger).
    type: str
  metrics:
    description: The metrics to compare on, as logged on the versions' runs.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The metric's key in MLflow, such as V(test_rmse).
        type: str
        required: true
      goal:
        description: Whether a lower (V(minimize)) or higher (V(maximize)) value is better.
        type: str
        choices: [minimize, maximize]
        required: true
      tolerance:
        description: How much worse the candidate may be, in the metric's own unit.
        type: float
        default: 0
      relative_tolerance:
        description: How much worse the candidate may be, as a fraction of the current value (V(0.02) is 2%).
        type: float
        default: 0
      source:
        description:
          - Where the values come from. V(run) is the metric logged on the version's run. V(live) is the quality
            measured on live traffic, from O(live_quality), named as the drift job names it (V(rmse), V(accuracy)).
          - A candidate without a live value (it never served next to the current version) is not refused for it.
        type: str
        choices: [run, live]
        default: run
  live_quality:
    description:
      - Version number to live metric name to value, as M(deployml.mlops.model_quality_info) returns it in
        RV(deployml.mlops.model_quality_info#module:versions), for the metrics with O(metrics[].source=live).
    type: dict
    default: {}
extends_documentation_fragment:
  - deployml.mlops.mlflow
attributes:
  check_mode:
    description: Reads only; runs the same in check mode.
    support: full
  diff_mode:
    description: Changes nothing, so there is no diff.
    support: none
  idempotent:
    description: Reads only.
    support: full
author:
  - deployml.mlops contributors (@deployml)
"""

EXAMPLES = r"""
- name: Compare version 8 with the champion
  deployml.mlops.mlflow_model_compare:
    tracking_uri: http://127.0.0.1:5000
    name: diabetes-progression
    candidate_version: "8"
    metrics:
      - name: test_rmse
        goal: minimize
        relative_tolerance: 0.02
      - name: test_mae
        goal: minimize
  register: comparison

- name: Show why
  ansible.builtin.debug:
    msg: "{{ comparison.table }}"

- name: Promote it when it is not worse
  deployml.mlops.mlflow_model:
    tracking_uri: http://127.0.0.1:5000
    name: diabetes-progression
    aliases:
      champion: "{{ comparison.candidate.version }}"
  when: comparison.decision == 'promote'
"""

RETURN = r"""
decision:
  description:
    - V(promote) when the candidate may take the alias, V(refuse) when it is worse beyond a tolerance or lacks a
      metric, V(unchanged) when the alias already points at it.
  returned: success
  type: str
  sample: refuse
reasons:
  description: Why the candidate is refused, one phrase per metric (empty unless RV(decision=refuse)).
  returned: success
  type: list
  elements: str
  sample: ["test_rmse is worse by 2.18 (54.12 -> 56.3; minimize allows 0)"]
candidate:
  description: The candidate version, with the metrics of its run (all of them, not only those compared).
  returned: success
  type: dict
  contains:
    version:
      description: The version number.
      type: str
    run_id:
      description: The run the version was registered from.
      type: str
    metrics:
      description: The latest value of each metric logged on the run.
      type: dict
    tags:
      description: The version's tags (a promotion records itself in C(promotion.*) tags).
      type: dict
  sample: {version: "8", run_id: 0c2b4d6e8f0a4b1c9d3e5f7a9b1c3d5e, metrics: {test_rmse: 56.3, test_mae: 44.0}}
current:
  description: The version the alias points at now, with its run's metrics; empty when the alias points nowhere.
  returned: success
  type: dict
  sample: {version: "7", run_id: 9f8e7d6c5b4a49382716a5b4c3d2e1f0, metrics: {test_rmse: 54.12, test_mae: 43.1}}
comparison:
  description: One row per declared metric, in the order declared.
  returned: success
  type: list
  elements: dict
  contains:
    metric:
      description: The metric's name.
      type: str
    source:
      description: V(run) or V(live).
      type: str
    goal:
      description: V(minimize) or V(maximize).
      type: str
    current:
      description: The current version's value (V(null) when none).
      type: float
    candidate:
      description: The candidate's value (V(null) when not logged).
      type: float
    change:
      description: Candidate minus current (V(null) when either is missing).
      type: float
    allowed:
      description: How much worse the candidate may be on this metric (V(null) when there is nothing to compare).
      type: float
    verdict:
      description: >-
        V(better), V(equal), V(within tolerance), V(worse), V(missing), V(no current value) or V(not served live).
      type: str
table:
  description: RV(comparison) as aligned text lines with a header, for people.
  returned: success
  type: list
  elements: str
  sample:
    - "metric     goal      champion v7  candidate v8  change  allowed worse by  verdict"
    - "test_rmse  minimize  54.12        56.3          +2.18   0                 worse"
"""

from ansible_collections.deployml.mlops.plugins.module_utils.gcp import GcpApiError
from ansible_collections.deployml.mlops.plugins.module_utils.mlflow import (
    MlflowModule, get_model, get_version, resolve_version, run_metrics, version_by_alias)
from ansible_collections.deployml.mlops.plugins.module_utils.promotion import compare, reasons, rule_errors, table
from ansible_collections.deployml.mlops.plugins.module_utils.resource import ResourceError


def with_metrics(client, version):
    """{version, run_id, metrics} of a model version; its run must exist to tell its metrics."""
    if not version.get("run_id"):
        raise ResourceError("version %s of registered model %s was not registered from a run, so it has no metrics "
                            "to compare" % (version["version"], version["name"]))
    return dict(version=version["version"], run_id=version["run_id"], metrics=run_metrics(client, version["run_id"]),
                tags=version.get("tags") or {})


def candidate_of(client, params):
    name = params["name"]
    if params["candidate_alias"]:
        version = version_by_alias(client, name, params["candidate_alias"])
        if version is None:
            raise ResourceError("alias %s of registered model %s points at no version%s" % (
                params["candidate_alias"], name, "" if get_model(client, name) else " (the model does not exist)"))
        if version["status"] != "READY":
            raise ResourceError("version %s of registered model %s (alias %s) is %s, not READY" % (
                version["version"], name, params["candidate_alias"], version["status"]))
        return version
    exists = get_model(client, name) is not None
    number = resolve_version(client, name, params["candidate_version"], "candidate_version", exists)
    return get_version(client, name, number)


def run(module):
    p, client = module.params, module.client
    errors = rule_errors(p["metrics"])
    if errors:
        module.fail_json(msg="invalid metrics: %s" % "; ".join(errors))
    candidate = with_metrics(client, candidate_of(client, p))
    holder = version_by_alias(client, p["name"], p["alias"])
    current = with_metrics(client, holder) if holder is not None else {}
    live = p["live_quality"] or {}
    decision, rows = compare(candidate["metrics"], current.get("metrics"), p["metrics"],
                             live.get(candidate["version"]), live.get(current.get("version")))
    if current and current["version"] == candidate["version"]:
        decision = "unchanged"
    current_label = "%s v%s" % (p["alias"], current["version"]) if current else "%s (none)" % p["alias"]
    return dict(changed=False, decision=decision, reasons=reasons(rows) if decision == "refuse" else [],
                candidate=candidate, current=current, comparison=rows,
                table=table(rows, current_label, "candidate v%s" % candidate["version"]))


def main():
    module = MlflowModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            alias=dict(type="str", default="champion"),
            candidate_version=dict(type="str"),
            candidate_alias=dict(type="str"),
            metrics=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                goal=dict(type="str", choices=["minimize", "maximize"], required=True),
                tolerance=dict(type="float", default=0),
                relative_tolerance=dict(type="float", default=0),
                source=dict(type="str", choices=["run", "live"], default="run"),
            )),
            live_quality=dict(type="dict", default={}),
        ),
        mutually_exclusive=[("candidate_version", "candidate_alias")],
        required_one_of=[("candidate_version", "candidate_alias")],
    )
    try:
        module.exit_json(**run(module))
    except ResourceError as exc:
        module.fail_json(msg=str(exc))
    except GcpApiError as exc:
        module.fail_api(exc)


if __name__ == "__main__":
    main()
