"""Resampling a volume to a target spacing and back, exact in geometry.

:func:`resample` and :func:`resample_back` change a volume's spacing with its affine updated so
that the volume keeps its place in the world exactly: the new voxel grid spans the same world box
(outer voxel corners aligned, not centres), and going back lands on the original grid and affine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]
) -> tuple[int, ...]:
    """Voxels per axis after resampling from ``spacing`` to ``target``: the extent kept."""
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))


def _zoom_affine(affine: np.ndarray, scale: Sequence[float]) -> np.ndarray:
    """The affine of a grid whose voxel ``j`` along an axis covers input voxels ``[j*f, (j+1)*f)``
    (``f`` = ``scale``): the same world box, so corners and extent stay exactly in place."""
    d = len(scale)
    out = np.array(affine, dtype=np.float64, copy=True)
    lin = out[:d, :d] * np.asarray(scale)[None, :]
    shift = affine[:d, :d] @ ((np.asarray(scale) - 1.0) / 2.0)
    out[:d, :d] = lin
    out[:d, d] = affine[:d, d] + shift
    return out


def resample(
    volume: np.ndarray,
    spacing: Sequence[float],
    target: Sequence[float],
    affine: np.ndarray | None = None,
    *,
    order: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``volume (C, *S)`` at ``spacing`` -> ``(C, *S')`` at about ``target``, and its affine.

    The new grid spans exactly the same world box as the old one (voxel corners, not centres,
    are aligned), so its spacing is ``spacing * S / S'`` (``target`` up to rounding to whole
    voxels) and :func:`resample_back` lands on the original grid exactly. ``order``: 1 linear
    (images), 0 nearest (labels). ``affine``: ``(d + 1, d + 1)``, default the spacing diagonal.
    """
    from scipy.ndimage import affine_transform

    base = np.diag([*spacing, 1.0]) if affine is None else np.asarray(affine, np.float64)
    shape = resampled_shape(volume.shape[1:], spacing, target)
    scale = [n / m for n, m in zip(volume.shape[1:], shape, strict=True)]
    offset = [(f - 1.0) / 2.0 for f in scale]  # output voxel j centre at input (j + 0.5) f - 0.5
    out = np.stack(
        [
            affine_transform(
                c, np.asarray(scale), offset=offset, output_shape=shape, order=order, mode="nearest"
            )
            for c in volume
        ]
    )
    return out.astype(volume.dtype, copy=False), _zoom_affine(base, scale)


def resample_back(
    volume: np.ndarray, shape: Sequence[int], affine: np.ndarray, *, order: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Undo :func:`resample`: ``(C, *S')`` -> ``(C, *shape)`` on the original grid, and its
    affine (the original one, recovered exactly from ``affine``)."""
    spacing_now = np.sqrt((np.asarray(affine)[:-1, :-1] ** 2).sum(axis=0))
    scale = [m / n for n, m in zip(shape, volume.shape[1:], strict=True)]
    target = [s * f for s, f in zip(spacing_now, scale, strict=True)]
    out, _ = resample(volume, spacing_now, target, None, order=order)
    if tuple(out.shape[1:]) != tuple(shape):  # pragma: no cover - rounding is exact here
        raise ValueError(f"resample_back: got {out.shape[1:]}, expected {tuple(shape)}")
    return out, _zoom_affine(np.asarray(affine, np.float64), scale)
