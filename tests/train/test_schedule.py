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
