"""model_quality_info: how the drift job's per-window quality becomes one value per version."""

from __future__ import annotations

import math

import pytest

from ansible_collections.deployml.mlops.plugins.modules.model_quality_info import combine, summarize


def row(window, version, metric, value, volume):
    return dict(window_start=window, model_version=version, metric_type=metric, value=value, volume=volume)


def test_only_windows_every_version_served_count_each_weighing_its_predictions():
    rows = [row("w1", "3", "mae", 2.0, 100), row("w1", "4", "mae", 4.0, 50),
            row("w2", "3", "mae", 1.0, 300), row("w2", "4", "mae", 1.0, 150),
            row("w3", "3", "mae", 50.0, 100)]  # version 4 did not serve in w3
    summary = summarize(rows, ["3", "4"])
    assert summary["windows"] == {"mae": 2}
    assert summary["versions"]["3"]["mae"] == pytest.approx((100 * 2.0 + 300 * 1.0) / 400)
    assert summary["versions"]["4"]["mae"] == pytest.approx((50 * 4.0 + 150 * 1.0) / 200)
    assert summary["predictions"] == {"3": {"mae": 400}, "4": {"mae": 200}}


def test_rmse_is_the_root_of_the_weighted_mean_square_and_two_aliases_in_a_window_combine():
    # Version 4 served as challenger, then as champion in the same window (promoted in it).
    rows = [row("w1", "3", "rmse", 3.0, 100), row("w1", "4", "rmse", 1.0, 30), row("w1", "4", "rmse", 2.0, 10)]
    summary = summarize(rows, ["3", "4"])
    assert summary["versions"]["4"]["rmse"] == pytest.approx(math.sqrt((30 * 1.0 + 10 * 4.0) / 40))
    assert summary["predictions"]["4"]["rmse"] == 40


def test_a_window_without_volume_counts_once_and_nothing_shared_gives_nothing():
    assert combine("accuracy", [(0.5, 1.0), (1.0, 1.0)]) == 0.75
    summary = summarize([row("w1", "3", "accuracy", 0.5, None), row("w1", "4", "accuracy", 1.0, 0)], ["3", "4"])
    assert summary["versions"] == {"3": {"accuracy": 0.5}, "4": {"accuracy": 1.0}}
    assert summarize([row("w1", "3", "accuracy", 0.5, 10)], ["3", "4"]) == dict(versions={}, windows={}, predictions={})
