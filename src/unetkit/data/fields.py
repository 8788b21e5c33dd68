"""Smooth random fields: a coarse grid of random values upsampled with cubic splines.

Used for uneven backgrounds (:mod:`unetkit.data.synthetic`) and for the elastic displacement
fields of :mod:`unetkit.data.augment`. One code path for 1D, 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def upsample(coarse: np.ndarray, shape: Sequence[int], order: int = 3) -> np.ndarray:
    """Resize ``coarse`` ``(*grid)`` to ``(*shape)`` with spline interpolation of ``order``.

    The coarse values sit on a grid spanning the whole output (corners to corners), so a
    constant grid gives a constant field and the output shape is exactly ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    if coarse.ndim != len(shape):
        raise ValueError(f"shape: expected {coarse.ndim} sizes, got {shape}")
    coords = np.meshgrid(
        *[
            np.linspace(0.0, g - 1.0, s, dtype=np.float32) if s > 1 else np.zeros(1, np.float32)
            for g, s in zip(coarse.shape, shape, strict=True)
        ],
        indexing="ij",
        sparse=False,
    )
    if all(g == 1 for g in coarse.shape):
        return np.full(shape, coarse.flat[0], dtype=np.float32)
    return ndimage.map_coordinates(
        coarse.astype(np.float32), coords, order=min(order, min(coarse.shape) - 1), mode="nearest"
    ).astype(np.float32)


def smooth_field(
    shape: Sequence[int], rng: np.random.Generator, grid: int = 4, scale: float = 1.0
) -> np.ndarray:
    """A smooth random field ``(*shape)``: ``grid`` control points per axis, ``N(0, scale)``."""
    coarse = rng.normal(0.0, scale, size=(grid,) * len(shape))
    return upsample(coarse, shape, order=3)
