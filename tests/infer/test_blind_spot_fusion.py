"""Blind-spot fusion: the minimum-mean-square mix of a blind-spot prediction and the pixel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from unetkit.infer.blind_spot_fusion import fuse_blind_spot, fusion_weights


def _scene(noise: float, error: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """clean (64, 64) signal, a prediction with a smooth independent error, a noisy image."""
    rng = np.random.default_rng(seed)
    clean = 10 + 5 * np.sin(np.arange(64) / 6.0)[:, None] * np.cos(np.arange(64) / 9.0)[None]
    err = gaussian_filter(rng.normal(0, 1, clean.shape), 3)
    mu = clean + error * err / err.std()
    noisy = clean + rng.normal(0, noise, clean.shape)
    return clean, mu, noisy


def test_fusion_weights_follow_the_two_error_variances() -> None:
    for noise, error in ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0)):
        _, mu, noisy = _scene(noise, error)
        _, w = fusion_weights(noisy, mu, bins=4)
        want = error**2 / (error**2 + noise**2)
        assert np.all((w >= 0) & (w <= 1))
        assert float(np.mean(w)) == pytest.approx(want, abs=0.12)


def test_fusion_is_closer_to_the_clean_signal_than_either_input() -> None:
    clean, mu, noisy = _scene(1.0, 0.8, seed=1)
    fused = fuse_blind_spot(noisy[None], mu[None])[0]
    mse = {k: float(np.mean((v - clean) ** 2)) for k, v in (("mu", mu), ("y", noisy), ("f", fused))}
    assert mse["f"] < mse["mu"] < mse["y"]


def test_channels_are_fused_independently_and_shapes_must_match() -> None:
    clean, mu, noisy = _scene(1.0, 1.0)
    exact = np.stack([mu, clean])  # channel 1 is already perfect: the noisy value adds nothing
    fused = fuse_blind_spot(np.stack([noisy, noisy]), exact)
    assert fused.shape == (2, 64, 64) and fused.dtype == np.float32
    assert np.allclose(fused[0], fuse_blind_spot(noisy[None], mu[None])[0])
    assert np.mean((fused[1] - clean) ** 2) < 0.05 * np.mean((noisy - clean) ** 2)
    with pytest.raises(ValueError, match="the same shape"):
        fuse_blind_spot(noisy[None], exact)
