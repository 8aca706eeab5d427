"""`benchmark`'s aggregation: mean ± std over training classes, from the runs' own metrics (by hand)."""

from __future__ import annotations

import math

import pytest

from pointad_pipe.pipeline.jobs.benchmark import aggregate, mean_std


def test_aggregate_by_hand() -> None:
    runs = {
        "a": {"per_class": {"x": {"i_auroc": 0.6}, "y": {"i_auroc": 0.8}}, "mean": {"i_auroc": 0.7}},
        "b": {"per_class": {"x": {"i_auroc": 0.9}, "z": {"i_auroc": float("nan")}}, "mean": {"i_auroc": 0.9}},
        "c": {"per_class": {"y": {"i_auroc": 0.4}}, "mean": {"i_auroc": 0.4}},
    }
    table = aggregate(runs)
    x_mean, x_std, x_n = table["per_class"]["x"]["i_auroc"]
    assert (x_mean, x_n) == (pytest.approx(0.75), 2) and x_std == pytest.approx(math.sqrt(2 * 0.15 ** 2))
    assert table["per_class"]["y"]["i_auroc"][:2] == [pytest.approx(0.6), pytest.approx(math.sqrt(0.08))]
    assert table["per_class"]["z"]["i_auroc"][2] == 0  # NaN only: no value
    m = table["mean"]["i_auroc"]
    assert m[0] == pytest.approx(2.0 / 3) and m[1] == pytest.approx(((0.7 - 2 / 3) ** 2 + (0.9 - 2 / 3) ** 2
                                                                     + (0.4 - 2 / 3) ** 2) ** 0.5 / 2 ** 0.5)
    assert mean_std([0.5]) == (0.5, 0.0, 1)
