# -*- coding: utf-8 -*-
# Copyright: (c) 2026, deployml.mlops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Whether a candidate model version may replace the current one, judged on declared metrics.

Pure functions (no I/O) so that the rule is unit tested on its own: the mlflow_model_compare module feeds
them the metrics logged on each version's run.

A rule is {name, goal: minimize|maximize, tolerance, relative_tolerance, source: run|live}. The candidate may be
worse than the current version by at most max(tolerance, relative_tolerance * |current value|). The candidate is
refused when it is worse beyond that on any metric, or lacks a run metric (a model that does not report a metric
cannot show it is not worse). A current version without a value for a metric does not block: there is nothing to
compare with (the first promotion, or a metric added since).

A run metric is logged on the version's MLflow run; a live metric is the quality the drift job measured on live
traffic (model_quality_info), which a candidate only has when it served next to the current version, as a
challenger: a candidate without it is "not served live", which does not block either.
"""

from __future__ import annotations

import math

GOALS = ("minimize", "maximize")
# Float noise (0.1 + 0.02 != 0.12) must not turn "exactly at the tolerance" into "worse".
EPSILON = 1e-9

BETTER = "better"
EQUAL = "equal"
WITHIN = "within tolerance"
WORSE = "worse"
MISSING = "missing"
NO_CURRENT = "no current value"
NOT_SERVED = "not served live"
SOURCES = ("run", "live")
REFUSING = (WORSE, MISSING)


def rule_errors(rules):
    """Problems with the metric rules, as messages (an empty list when they are usable)."""
    if not rules:
        return ["no metric to compare on: declare at least one, such as "
                "{name: test_rmse, goal: minimize, tolerance: 0}"]
    errors, seen = [], set()
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            errors.append("metric %d must be a mapping with name and goal, got %r" % (index + 1, rule))
            continue
        name = rule.get("name")
        label = "metric %r" % name if name else "metric %d" % (index + 1)
        source = rule.get("source") or "run"
        if source not in SOURCES:
            errors.append("%s: source must be run (logged on the MLflow run) or live (drift_metrics), got %r"
                          % (label, source))
        if not name or not isinstance(name, str):
            errors.append("%s needs a name (the metric's key in MLflow, or the drift job's metric_type)" % label)
        elif (source, name) in seen:
            errors.append("%s is declared twice" % label)
        seen.add((source, name))
        if rule.get("goal") not in GOALS:
            errors.append("%s: goal must be minimize or maximize, got %r" % (label, rule.get("goal")))
        for option in ("tolerance", "relative_tolerance"):
            value = rule.get(option)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                errors.append("%s: %s must be a number of 0 or more, got %r" % (label, option, value))
    return errors


def _value(metrics, name):
    """The metric's value as a float, or None when absent or not a finite number (NaN says nothing)."""
    value = (metrics or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def compare_metric(rule, candidate, current):
    """One row of the comparison: the values, how much worse the candidate is, what is allowed, the verdict."""
    name, goal, source = rule["name"], rule["goal"], rule.get("source") or "run"
    new, old = _value(candidate, name), _value(current, name)
    row = dict(metric=name, source=source, goal=goal, current=old, candidate=new, change=None, allowed=None)
    if new is None:
        return dict(row, verdict=NOT_SERVED if source == "live" else MISSING)
    if old is None:
        return dict(row, verdict=NO_CURRENT)
    allowed = max(float(rule.get("tolerance") or 0), float(rule.get("relative_tolerance") or 0) * abs(old))
    change = new - old
    worse_by = change if goal == "minimize" else -change
    noise = EPSILON * max(1.0, abs(old), abs(new))
    if abs(change) <= noise:
        verdict = EQUAL
    elif worse_by < 0:
        verdict = BETTER
    elif worse_by <= allowed + noise:
        verdict = WITHIN
    else:
        verdict = WORSE
    # Rounded for people and records: 1.01 - 1.0 is 0.010000000000000009 in binary floating point.
    return dict(row, change=_round(change), allowed=_round(allowed), verdict=verdict)


def _round(value):
    return float("%.12g" % value)


def compare(candidate, current, rules, candidate_live=None, current_live=None):
    """(decision, rows): decision is "promote" or "refuse"; rows as compare_metric makes them, in rule order.

    candidate and current map run metric names to values, candidate_live and current_live live metric names to
    values; current is None (or {}) when no version holds the alias. Raises ValueError when the rules are unusable.
    """
    errors = rule_errors(rules)
    if errors:
        raise ValueError("; ".join(errors))
    rows = [compare_metric(rule, candidate_live, current_live) if rule.get("source") == "live"
            else compare_metric(rule, candidate, current) for rule in rules]
    return ("refuse" if any(row["verdict"] in REFUSING for row in rows) else "promote"), rows


def _number(value, signed=False):
    if value is None:
        return "-"
    return ("%+.6g" if signed else "%.6g") % value


def table(rows, current_label, candidate_label):
    """The comparison as aligned text lines, a header first: what a person reads to see why."""
    lines = [("metric", "goal", current_label, candidate_label, "change", "allowed worse by", "verdict")]
    for row in rows:
        name = "%s (live)" % row["metric"] if row.get("source") == "live" else row["metric"]
        lines.append((name, row["goal"], _number(row["current"]), _number(row["candidate"]),
                      _number(row["change"], signed=True), _number(row["allowed"]), row["verdict"]))
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]


def reasons(rows):
    """Why a candidate is refused, one phrase per refusing metric."""
    found = []
    for row in rows:
        if row["verdict"] == MISSING:
            found.append("%s is not logged (as a finite number) on the candidate's run" % row["metric"])
        elif row["verdict"] == WORSE:
            found.append("%s%s is worse by %s (%s -> %s; %s allows %s)" % (
                row["metric"], " (live)" if row.get("source") == "live" else "", _number(abs(row["change"])),
                _number(row["current"]), _number(row["candidate"]), row["goal"], _number(row["allowed"])))
    return found
