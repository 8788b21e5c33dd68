"""The normalization experiment (P9): statistics through depth and at the fusion points."""

from __future__ import annotations

import pytest

from unetkit.lab import LabSettings, normalization


@pytest.fixture(scope="module")
def result() -> normalization.ExperimentResult:
    return normalization.run(LabSettings(quick=True, seed=0))


def test_fan_in_init_holds_second_moment_default_init_shrinks_it(
    result: normalization.ExperimentResult,
) -> None:
    factors = result.numbers["per_level_m2_factor"]
    for default, kaiming in zip(
        factors["default init, images"], factors["kaiming init, images"], strict=True
    ):
        assert default < 0.8
        assert 0.5 < kaiming < 2.5
        assert kaiming > 2 * default


def test_max_pooling_white_noise_raises_second_moment(
    result: normalization.ExperimentResult,
) -> None:
    gain = result.numbers["first_pool_m2_gain"]
    assert gain["kaiming init, white noise"] > 2.0


def test_normalisation_equalises_the_branches(result: normalization.ExperimentResult) -> None:
    ratios = result.numbers["fused_skip_over_up_variance"]
    for name, values in ratios.items():
        if name.startswith(("batch", "instance", "group")):
            assert all(v == pytest.approx(1.0, rel=0.05) for v in values), name
    unnormalised = ratios["none, default init"]
    assert max(max(v, 1 / v) for v in unnormalised) > 1.5
