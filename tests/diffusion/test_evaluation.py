"""The evaluation's measures on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.diffusion.evaluation import frechet_distance, high_frequency_energy, nearest_distance
from unetkit.diffusion.generate import grid, to_uint8


def test_frechet_distance_of_gaussians_has_the_closed_form() -> None:
    g = np.random.default_rng(0)
    a = g.normal(0, 1, (5000, 2))
    b = g.normal(0, 1, (5000, 2)) * np.array([2.0, 1.0]) + np.array([3.0, 0.0])
    # |m1 - m2|^2 + sum(var1 + var2 - 2 sqrt(var1 var2)) for diagonal covariances
    want = 9.0 + (1 + 4 - 2 * 2) + (1 + 1 - 2 * 1)
    assert frechet_distance(a, b) == pytest.approx(want, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_nearest_distance_is_the_rms_distance_to_the_closest_reference() -> None:
    ref = np.stack([np.zeros((2, 2)), np.ones((2, 2))])
    samples = np.stack([np.full((2, 2), 0.25), np.full((2, 2), 3.0)])
    np.testing.assert_allclose(nearest_distance(samples, ref), [0.25, 2.0])


def test_high_frequency_energy_of_flat_and_checkerboard_images() -> None:
    flat = np.full((1, 1, 8, 8), 0.3)
    checker = (np.indices((8, 8)).sum(0) % 2 * 2 - 1.0)[None, None]
    smooth = np.sin(np.arange(8) * 2 * np.pi / 8)[None, None, None, :].repeat(8, 2)
    assert high_frequency_energy(flat) == 0.0
    assert high_frequency_energy(checker) == pytest.approx(1.0)
    assert high_frequency_energy(smooth) == pytest.approx(0.0, abs=1e-12)


def test_grid_and_uint8() -> None:
    imgs = np.arange(5)[:, None, None, None] * np.ones((5, 1, 2, 3)) / 2 - 1
    g = grid(imgs, columns=3)
    assert g.shape == (1, 2 * 3 - 1, 3 * 4 - 1)
    assert g[0, 3, 4] == imgs[4, 0, 0, 0] and g[0, 2, 0] == 0
    np.testing.assert_array_equal(to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])), [0, 128, 255, 255])
