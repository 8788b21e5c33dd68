"""A built-in synthetic restoration set: noisy images and their clean targets, in photon-like
counts, so ``unetkit train task=restore`` runs with no data.

The clean image is the cell-like scene of :mod:`unetkit.data.synthetic` (blobs with seams on an
uneven background, no noise) plus a fine texture, scaled to about ``0..PEAK`` counts; the input
is that image with Poisson (shot) noise and Gaussian (read) noise of ``noise * PEAK``, the
Poisson–Gaussian model of microscope detectors. Deterministic: sample ``i`` depends only on
``(seed, i)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from unetkit.data.restoration import zero_mask
from unetkit.data.sample import Sample
from unetkit.data.synthetic import _DEFAULT_SIZE, _make_one

PEAK = 100.0


def make_synthetic_restore(
    n: int,
    *,
    spatial_dims: int = 2,
    size: int | Sequence[int] | None = None,
    seed: int = 0,
    noise: float = 0.1,
) -> list[Sample]:
    """``n`` noisy/clean pairs: ``image`` and ``target`` ``float32`` ``(1, *spatial)``.

    Args:
        n: number of samples (>= 0).
        spatial_dims: 1, 2 or 3.
        size: side length, or one per spatial dim (default as :func:`make_synthetic`; >= 8).
        seed: sample ``i`` uses ``default_rng([seed, i, 31])``.
        noise: standard deviation of the Gaussian read noise as a share of :data:`PEAK`
            (Poisson noise comes on top).

    Raises:
        ValueError: an argument out of range (named).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative integer, got {n!r}")
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims: expected 1, 2 or 3, got {spatial_dims!r}")
    size = _DEFAULT_SIZE[spatial_dims] if size is None else size
    shape = (int(size),) * spatial_dims if isinstance(size, int) else tuple(int(s) for s in size)
    if len(shape) != spatial_dims or min(shape) < 8:
        raise ValueError(f"size: expected {spatial_dims} sides of at least 8, got {size!r}")
    if not 0.0 <= noise <= 10.0:
        raise ValueError(f"noise: expected 0..10, got {noise!r}")
    samples = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 31])
        scene, _ = _make_one(shape, rng, 0.0, 0.4)
        texture = ndimage.gaussian_filter(rng.normal(size=shape), 1.0)
        texture *= 0.05 / (float(texture.std()) + 1e-6)
        clean = np.clip(PEAK * (scene[0] + texture) / 1.2, 0.0, None).astype(np.float32)
        noisy = rng.poisson(clean).astype(np.float64) + rng.normal(0.0, noise * PEAK, shape)
        samples.append(
            Sample(
                image=noisy.astype(np.float32)[None],
                mask=zero_mask(shape),
                stem=f"synthetic_{i:04d}",
                target=clean[None],
            )
        )
    return samples
