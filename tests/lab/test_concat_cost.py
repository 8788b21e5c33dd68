"""The concat-cost experiment (P8): +50% parameters; what the 1x1 reduction saves."""

from __future__ import annotations

import pytest

from unetkit.lab import LabSettings, concat_cost


@pytest.mark.parametrize("width", [8, 32])
def test_concat_block_has_half_again_the_weights(width: int) -> None:
    concat = concat_cost.block_cost("concat", width)
    plain = concat_cost.block_cost("none", width)
    reduced = concat_cost.block_cost("concat_1x1", width)
    assert concat["conv_weights"] == pytest.approx(1.5 * plain["conv_weights"], rel=1e-9)
    # 27 C^2 with concat, 18 C^2 + 2 C^2 with the 1x1 reduction
    assert reduced["conv_weights"] == pytest.approx(20 / 27 * concat["conv_weights"], rel=1e-9)
    assert concat["flops"] == pytest.approx(1.5 * plain["flops"], rel=1e-9)


def test_quick_run_reports_the_claims() -> None:
    result = concat_cost.run(LabSettings(quick=True, seed=0))
    ratio = result.numbers["block_param_ratio_vs_none"]
    assert ratio["concat"] == pytest.approx(1.5, abs=0.02)
    assert 1.0 < ratio["concat_1x1"] < ratio["concat"]
    training = result.numbers["training"]["results"]
    assert set(training) == {"concat", "concat_1x1", "add", "none"}
    for fusion, row in training.items():
        assert 0.5 < row["val_dice"] <= 1.0, fusion  # every variant learned the task
