"""The gradient experiment (P5): skips keep gradient at the first block; paths are O(1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetkit.lab import LabSettings, gradients


def test_shortest_conv_path_counts_convolutions() -> None:
    convs = [nn.Conv1d(1, 1, 3, padding=1) for _ in range(3)]
    x = torch.randn(1, 1, 8)
    h1 = convs[0](x)
    out = convs[2](convs[1](h1)) + h1  # a shortcut around two convolutions
    loss = out.sum()
    assert gradients.shortest_conv_path(loss, [convs[0].weight]) == 1
    assert gradients.shortest_conv_path(loss, [convs[1].weight]) == 2
    assert gradients.shortest_conv_path((convs[2](convs[1](h1))).sum(), [convs[0].weight]) == 3


@pytest.fixture(scope="module")
def result() -> gradients.ExperimentResult:
    return gradients.run(LabSettings(quick=True, seed=0))


def _row(result: gradients.ExperimentResult, regime: str, fusion: str, depth: int) -> dict:
    return next(
        r
        for r in result.numbers["rows"]
        if (r["regime"], r["fusion"], r["depth"]) == (regime, fusion, depth)
    )


def test_skips_keep_gradient_at_depth_6_without_norm(result: gradients.ExperimentResult) -> None:
    with_skips = _row(result, "plain", "concat", 6)["init"]["param_ratio"]
    without = _row(result, "plain", "none", 6)["init"]["param_ratio"]
    assert with_skips >= 10 * without
    # and it vanishes with depth only without skips
    assert (
        _row(result, "plain", "none", 6)["init"]["param_ratio"]
        < 0.01 * (_row(result, "plain", "none", 2)["init"]["param_ratio"])
    )


def test_backward_path_is_constant_with_skips_and_grows_without(
    result: gradients.ExperimentResult,
) -> None:
    paths = result.numbers["shortest_path_convs"]
    assert len(set(paths["concat"])) == 1
    assert paths["add"] == paths["concat"]
    assert paths["none"] == sorted(paths["none"])
    assert paths["none"][-1] > paths["none"][0] + 10
