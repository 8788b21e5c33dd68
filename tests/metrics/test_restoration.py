"""PSNR and SSIM against hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unetkit.metrics.restoration import data_range_of, psnr, restoration_score, ssim


def test_psnr_of_a_known_error() -> None:
    target = np.zeros((1, 8, 8), dtype=np.float32)
    target[0, 0, 0] = 10.0  # data range 10
    pred = target + 1.0  # MSE 1 -> 10 log10(100 / 1) = 20 dB
    assert psnr(pred, target) == pytest.approx(20.0)
    assert psnr(pred, target, data_range=100.0) == pytest.approx(40.0)
    assert psnr(target, target) == math.inf


def test_ssim_is_one_for_equal_images_and_drops_with_noise() -> None:
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 1, size=(2, 32, 32))
    assert ssim(target, target) == pytest.approx(1.0)
    noisy = target + rng.normal(0, 0.3, size=target.shape)
    assert ssim(noisy, target) < 0.8


def test_ssim_of_a_constant_offset_follows_the_formula() -> None:
    # constant images a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 L)^2
    a, b, L = 0.5, 0.6, 1.0
    c1 = (0.01 * L) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = ssim(np.full((1, 16, 16), b), np.full((1, 16, 16), a), data_range=L)
    assert got == pytest.approx(expected, rel=1e-6)


def test_data_range_is_stated_and_never_zero() -> None:
    t = np.array([[[2.0, 5.0], [3.0, 4.0]]])
    assert data_range_of(t) == 3.0
    assert data_range_of(np.ones((1, 4, 4))) == 1.0
    score = restoration_score(t + 0.5, t)
    assert score.data_range == 3.0 and score.psnr == pytest.approx(10 * np.log10(9 / 0.25))


def test_small_and_mismatched_inputs() -> None:
    assert math.isnan(ssim(np.ones((1, 2, 2)), np.ones((1, 2, 2))))
    assert ssim(np.arange(5.0)[None], np.arange(5.0)[None]) == pytest.approx(1.0)  # 1D
    with pytest.raises(ValueError, match="differs from target shape"):
        psnr(np.ones((1, 4, 4)), np.ones((1, 4, 5)))
