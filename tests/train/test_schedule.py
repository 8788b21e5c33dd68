"""Learning-rate schedule against its formulas."""

from __future__ import annotations

import math

import pytest

from unetkit.train.schedule import lr_factor


def test_warmup_is_linear_then_poly_reaches_zero() -> None:
    assert lr_factor(0, 100, 4, "poly") == pytest.approx(1 / 5)
    assert lr_factor(3, 100, 4, "poly") == pytest.approx(4 / 5)
    assert lr_factor(4, 100, 4, "poly") == pytest.approx(1.0)
    assert lr_factor(52, 100, 4, "poly") == pytest.approx((1 - 48 / 96) ** 0.9)
    assert lr_factor(100, 100, 4, "poly") == 0.0


def test_cosine_and_constant() -> None:
    assert lr_factor(50, 100, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_factor(99, 100, 0, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, 0, "step")


def test_share_factor_warms_up_then_decays_to_zero_at_share_one() -> None:
    from unetkit.train.schedule import share_factor

    assert share_factor(0.0, 0.1, "poly", start=0.2) == pytest.approx(0.2)
    assert share_factor(0.05, 0.1, "poly", start=0.2) == pytest.approx(0.6)
    assert share_factor(0.1, 0.1, "poly") == pytest.approx(1.0)
    assert share_factor(0.55, 0.1, "poly") == pytest.approx(0.5**0.9)
    assert share_factor(0.55, 0.1, "cosine") == pytest.approx(0.5)
    assert share_factor(1.0, 0.1, "poly") == 0.0
    assert share_factor(1.7, 0.1, "cosine") == pytest.approx(0.0)  # clamped
    assert share_factor(1.0, 0.1, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        share_factor(0.5, 0.1, "step")


def test_clock_share_is_the_larger_of_steps_and_time_and_never_goes_back() -> None:
    from unetkit.train.schedule import ScheduleClock

    total = {"n": 100}
    time_share = {"v": 0.0}
    clock = ScheduleClock(lambda: total["n"], lambda ahead: time_share["v"])
    assert clock.advance(0) == 0.0
    assert clock.advance(10) == pytest.approx(0.10)  # steps ahead of the clock
    time_share["v"] = 0.4
    assert clock.advance(11) == pytest.approx(0.40)  # the clock ahead of the steps
    total["n"] = 1000  # a re-plan lengthened the run: the share does not fall
    time_share["v"] = 0.3
    assert clock.advance(12) == pytest.approx(0.40)
    time_share["v"] = 2.0
    assert clock.advance(13) == 1.0
    resumed = ScheduleClock(lambda: 100, lambda ahead: 0.5)
    resumed.resume_from(0.6)  # a resumed session spends the remaining 0.4 in its own budget
    assert resumed.advance(61) == pytest.approx(0.6 + 0.4 * 0.5)
    steps_only = ScheduleClock(lambda: 100, None)
    assert steps_only.advance(25) == pytest.approx(0.25)
