"""The promotion rule: a candidate version may take the alias unless it is worse beyond the tolerance, or lacks a
declared metric."""

from __future__ import annotations

import math

import pytest

from ansible_collections.deployml.mlops.plugins.module_utils.promotion import (
    compare, compare_metric, reasons, rule_errors, table)

RMSE = dict(name="rmse", goal="minimize", tolerance=0.02)
ACCURACY = dict(name="accuracy", goal="maximize", tolerance=0)


def verdict(rule, candidate, current):
    return compare_metric(rule, {rule["name"]: candidate}, {rule["name"]: current})["verdict"]


@pytest.mark.parametrize("candidate, current, expected", [
    (0.90, 1.00, "better"),
    (1.00, 1.00, "equal"),
    (1.02, 1.00, "within tolerance"),   # exactly at the tolerance (0.02 is not exact in binary floating point)
    (1.0201, 1.00, "worse"),
    (5.0, 1.0, "worse"),
])
def test_minimize_with_an_absolute_tolerance(candidate, current, expected):
    assert verdict(RMSE, candidate, current) == expected


@pytest.mark.parametrize("candidate, current, expected", [
    (0.91, 0.90, "better"),
    (0.90, 0.90, "equal"),
    (0.8999, 0.90, "worse"),  # no tolerance: any loss refuses
])
def test_maximize_turns_the_direction_around(candidate, current, expected):
    assert verdict(ACCURACY, candidate, current) == expected


def test_relative_tolerance_scales_with_the_current_value_and_the_larger_allowance_wins():
    rule = dict(name="rmse", goal="minimize", tolerance=0.5, relative_tolerance=0.02)
    row = compare_metric(rule, {"rmse": 51.9}, {"rmse": 50.0})  # 2% of 50 = 1.0 > 0.5
    assert row["allowed"] == pytest.approx(1.0) and row["change"] == pytest.approx(1.9)
    assert row["verdict"] == "worse"
    assert verdict(rule, 50.99, 50.0) == "within tolerance"
    assert compare_metric(rule, {"rmse": 0.4}, {"rmse": 0.1})["allowed"] == 0.5  # the absolute one, near zero


@pytest.mark.parametrize("value", [None, math.nan, math.inf, "1.0", True])
def test_a_candidate_without_a_usable_value_is_refused(value):
    candidate = {} if value is None else {"rmse": value}
    decision, rows = compare(candidate, {"rmse": 1.0}, [RMSE])
    assert decision == "refuse" and rows[0]["verdict"] == "missing" and rows[0]["candidate"] is None
    assert reasons(rows) == ["rmse is not logged (as a finite number) on the candidate's run"]


def test_no_current_value_does_not_block():
    decision, rows = compare({"rmse": 3.0}, None, [RMSE])
    assert decision == "promote" and rows[0]["verdict"] == "no current value"
    decision, rows = compare({"rmse": 3.0, "accuracy": 0.8}, {"accuracy": 0.7}, [RMSE, ACCURACY])
    assert decision == "promote" and [r["verdict"] for r in rows] == ["no current value", "better"]


def test_one_worse_metric_refuses_even_when_others_are_better():
    decision, rows = compare({"rmse": 0.5, "accuracy": 0.80}, {"rmse": 1.0, "accuracy": 0.85}, [RMSE, ACCURACY])
    assert decision == "refuse"
    assert [r["verdict"] for r in rows] == ["better", "worse"]
    assert reasons(rows) == ["accuracy is worse by 0.05 (0.85 -> 0.8; maximize allows 0)"]


def test_the_table_lines_up_and_shows_every_value():
    rows = compare({"rmse": 56.3}, {"rmse": 54.12}, [dict(RMSE, tolerance=0)])[1]
    lines = table(rows, "champion v3", "candidate v5")
    assert lines[0].split() == ["metric", "goal", "champion", "v3", "candidate", "v5", "change", "allowed", "worse",
                                "by", "verdict"]
    assert lines[1].split() == ["rmse", "minimize", "54.12", "56.3", "+2.18", "0", "worse"]
    assert lines[0].index("verdict") == lines[1].index("worse")
    missing = table(compare({}, None, [RMSE])[1], "champion (none)", "candidate v1")[1]
    assert missing.split() == ["rmse", "minimize", "-", "-", "-", "-", "missing"]


@pytest.mark.parametrize("rules, message", [
    ([], "no metric to compare on"),
    ([dict(goal="minimize")], "metric 1 needs a name"),
    ([dict(name="rmse", goal="lower")], "goal must be minimize or maximize"),
    ([dict(name="rmse", goal="minimize", tolerance=-1)], "tolerance must be a number of 0 or more"),
    ([dict(name="rmse", goal="minimize", relative_tolerance="2%")], "relative_tolerance must be a number"),
    ([RMSE, RMSE], "'rmse' is declared twice"),
    (["rmse"], "must be a mapping"),
])
def test_unusable_rules_are_named(rules, message):
    assert any(message in error for error in rule_errors(rules)), rule_errors(rules)
    with pytest.raises(ValueError, match=message):
        compare({"rmse": 1.0}, {"rmse": 1.0}, rules)


LIVE_ACCURACY = dict(name="accuracy", goal="maximize", tolerance=0.01, source="live")


def test_live_metrics_compare_the_live_values_and_a_candidate_that_never_served_is_not_refused():
    rules = [dict(name="test_accuracy", goal="maximize"), LIVE_ACCURACY]
    run_candidate, run_current = {"test_accuracy": 0.80}, {"test_accuracy": 0.78}
    decision, rows = compare(run_candidate, run_current, rules, {"accuracy": 0.70}, {"accuracy": 0.75})
    assert decision == "refuse" and [(r["source"], r["verdict"]) for r in rows] == [("run", "better"), ("live", "worse")]
    assert reasons(rows) == ["accuracy (live) is worse by 0.05 (0.75 -> 0.7; maximize allows 0.01)"]
    assert "accuracy (live)" in table(rows, "champion v1", "candidate v2")[2]

    decision, rows = compare(run_candidate, run_current, rules, None, {"accuracy": 0.75})
    assert decision == "promote" and rows[1]["verdict"] == "not served live"
    # A run metric of the same name is another rule; the live value never stands in for it.
    decision, rows = compare({}, run_current, rules, {"test_accuracy": 0.9, "accuracy": 0.8}, {"accuracy": 0.75})
    assert decision == "refuse" and rows[0]["verdict"] == "missing"


def test_live_rule_errors():
    assert rule_errors([dict(name="rmse", goal="minimize", source="dashboard")]) == [
        "metric 'rmse': source must be run (logged on the MLflow run) or live (drift_metrics), got 'dashboard'"]
    assert rule_errors([dict(name="rmse", goal="minimize"), dict(name="rmse", goal="minimize", source="live")]) == []
    assert rule_errors([LIVE_ACCURACY, LIVE_ACCURACY]) == ["metric 'accuracy' is declared twice"]
