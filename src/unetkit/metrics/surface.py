"""Surface distances and the 95th-percentile Hausdorff distance (HD95) of binary masks.

Conventions:

* The **surface** of a mask is its set of boundary pixels: mask pixels with at least one
  face-neighbour (4-neighbour in 2D, 6 in 3D, 2 in 1D) outside the mask. Pixels on the image
  border count as outside, so a mask touching the image edge has a surface there.
* Distances are Euclidean between pixel centres, in pixels, or in physical units with
  ``spacing`` (one value per axis). They come from ``scipy.ndimage.distance_transform_edt``.
* **HD95** is the 95th percentile (NumPy's linear interpolation) of the **union** of the two
  directed surface-distance sets: every pred-surface pixel's distance to the truth surface and
  every truth-surface pixel's distance to the pred surface (the MedPy ``hd95`` convention).
* Empty masks: both empty -> ``NaN`` ("not applicable", not counted in means); exactly one empty
  -> ``inf``. The aggregator (:mod:`unetkit.metrics.evaluate`) counts the ``inf`` cases and
  replaces each by the image diagonal as a penalty in means; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from unetkit.metrics._checks import as_mask, same_shape


def _check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or any(not np.isfinite(s) or s <= 0 for s in sp):
        raise ValueError(f"spacing must be {ndim} positive finite numbers, got {spacing!r}")
    return sp


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask: bool ``(*spatial) -> (*spatial)`` (see module doc)."""
    m = as_mask(mask, "mask")
    structure = ndimage.generate_binary_structure(m.ndim, 1)
    eroded = ndimage.binary_erosion(m, structure=structure, border_value=0)
    return m & ~eroded


def directed_surface_distances(
    from_mask: np.ndarray, to_mask: np.ndarray, spacing: Sequence[float] | None = None
) -> np.ndarray:
    """Distance from every surface pixel of ``from_mask`` to the surface of ``to_mask``.

    Args:
        from_mask, to_mask: binary masks ``(*spatial)`` of equal shape; ``to_mask`` non-empty.
        spacing: pixel size per axis; default 1.

    Returns:
        float64 ``(n,)`` with ``n`` the number of surface pixels of ``from_mask`` (row-major order).
    """
    a = as_mask(from_mask, "from_mask")
    b = as_mask(to_mask, "to_mask")
    same_shape(a, b, "from_mask", "to_mask")
    sp = _check_spacing(spacing, a.ndim)
    sb = surface(b)
    if not sb.any():
        raise ValueError("to_mask must be non-empty")
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=sp)
    return np.asarray(dist_to_b[surface(a)], dtype=np.float64)


def hd95(
    pred_mask: np.ndarray,
    truth_mask: np.ndarray,
    spacing: Sequence[float] | None = None,
    percentile: float = 95.0,
) -> float:
    """95th-percentile symmetric Hausdorff distance between the surfaces of two masks.

    Args:
        pred_mask, truth_mask: binary masks ``(*spatial)``, 1D/2D/3D, same shape.
        spacing: pixel size per axis (default 1: distances in pixels).
        percentile: the percentile in ``[0, 100]``; 100 gives the classical Hausdorff distance.

    Returns:
        The percentile of the union of both directed surface-distance sets; ``NaN`` when both
        masks are empty, ``inf`` when exactly one is empty.
    """
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")
    p = as_mask(pred_mask, "pred_mask")
    t = as_mask(truth_mask, "truth_mask")
    same_shape(p, t, "pred_mask", "truth_mask")
    _check_spacing(spacing, p.ndim)
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return float("nan")
    if p_any != t_any:
        return float("inf")
    d_pt = directed_surface_distances(p, t, spacing)
    d_tp = directed_surface_distances(t, p, spacing)
    return float(np.percentile(np.concatenate([d_pt, d_tp]), percentile))


def diagonal(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Length of the image diagonal, the HD95 penalty for a one-sided empty case."""
    sp = _check_spacing(spacing, len(shape))
    return float(np.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(shape, sp, strict=True))))
