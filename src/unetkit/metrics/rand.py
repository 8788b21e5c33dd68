"""The ISBI 2012 / SNEMI3D / CREMI adapted Rand error on segments of the foreground.

The adapted Rand error is ``1 - F``, with ``F`` the maximal F-score of the Rand index restricted
to the truth's foreground: over all pairs of counted pixels, precision is the fraction of pairs
merged in the prediction that are merged in the truth, recall the fraction of pairs merged in the
truth that are merged in the prediction, and ``F = 2 P R / (P + R)``. Pairs are unordered pairs of
distinct pixels, computed from a sparse contingency table ``n[i, j]`` (``scipy.sparse``):
``sum_ij n_ij (n_ij - 1)`` over ``sum_i a_i (a_i - 1)`` and ``sum_j b_j (b_j - 1)``.

For semantic label maps (:func:`rand_error`) the segments are the connected components of the
foreground, where foreground means "not the boundary class": for ISBI 2012 EM data the boundary
class is the membrane (class 1) and the foreground is the cell interior (class 0).

* Truth pixels that are boundary or ``ignore_index`` are not counted at all (foreground
  restriction).
* Predicted boundary pixels that fall on the truth foreground are, by default, **singletons**
  (each its own segment: they merge nothing, but their truth pairs are missed, lowering recall),
  as in the ISBI/CREMI scripts. With ``pred_background="segment"`` they form one segment together
  instead, the convention of ``skimage.metrics.adapted_rand_error`` (which treats predicted label
  0 as an ordinary label).
* Segments are taken with face connectivity by default (``connectivity=1``: 4-neighbours in 2D,
  6 in 3D); the prediction's components are formed on the whole prediction, before ignored
  pixels are dropped.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage, sparse

from unetkit.metrics._checks import as_label_map, same_shape

PredBackground = Literal["singletons", "segment"]


def _pairs(counts: np.ndarray) -> float:
    c = counts.astype(np.float64)
    return float(np.sum(c * (c - 1.0)))


def adapted_rand_error(
    pred_segments: np.ndarray,
    truth_segments: np.ndarray,
    *,
    pred_background: PredBackground = "singletons",
) -> float:
    """Adapted Rand error of two segmentations given as segment-id maps.

    Args:
        pred_segments: int ``(*spatial)``; ids ``> 0`` are segments, ``0`` is predicted boundary.
        truth_segments: int ``(*spatial)``; ids ``> 0`` are segments, ``0`` is not counted.
        pred_background: how predicted ``0`` pixels count (see the module doc).

    Returns:
        ``1 - F`` in ``[0, 1]``; ``0.0`` when neither segmentation has any pair of counted
        pixels in one segment (nothing to merge or split), ``NaN`` when no truth pixel is
        counted.
    """
    if pred_background not in ("singletons", "segment"):
        raise ValueError(
            f"pred_background must be 'singletons' or 'segment', got {pred_background!r}"
        )
    p = as_label_map(pred_segments, "pred_segments").ravel()
    t = as_label_map(truth_segments, "truth_segments").ravel()
    if p.shape != t.shape:
        raise ValueError("pred_segments and truth_segments must have the same shape")
    if (p < 0).any() or (t < 0).any():
        raise ValueError("segment ids must be non-negative")
    keep = t > 0
    p, t = p[keep], t[keep]
    if t.size == 0:
        return float("nan")
    _, t_idx = np.unique(t, return_inverse=True)
    a = np.bincount(t_idx)  # truth segment sizes (every counted pixel)
    if pred_background == "singletons":
        # a predicted boundary pixel is its own segment: it adds no pairs to the prediction or
        # to the joint table, but its truth pairs still count in ``a``
        fg = p > 0
        p, t_idx = p[fg], t_idx[fg]
    if p.size:
        _, p_idx = np.unique(p, return_inverse=True)
        table = sparse.coo_array(
            (np.ones(p.size, dtype=np.int64), (t_idx, p_idx)),
            shape=(a.size, int(p_idx.max()) + 1),
        ).tocsr()  # duplicates are summed: table[i, j] = pixels in truth i and pred j
        both = table.data
        b = np.asarray(table.sum(axis=0)).ravel()  # pred segment sizes
    else:
        both = b = np.zeros(0, dtype=np.int64)
    sum_ab = _pairs(both)
    sum_a = _pairs(a)
    sum_b = _pairs(b)
    if sum_a + sum_b == 0:
        return 0.0
    return float(1.0 - 2.0 * sum_ab / (sum_a + sum_b))


def foreground_segments(
    label_map: np.ndarray,
    boundary_class: int,
    *,
    ignore_index: int | None = None,
    connectivity: int = 1,
) -> np.ndarray:
    """Connected components of the non-boundary, non-ignored pixels of a label map.

    Args:
        label_map: int ``(*spatial)``.
        boundary_class: the class that separates segments (EM membranes: 1 for ISBI 2012).
        ignore_index: label excluded from the foreground, or None.
        connectivity: 1 (faces) up to ``ndim`` (full neighbourhood).

    Returns:
        int64 ``(*spatial)``: 0 on boundary/ignored pixels, segment ids ``1..n`` elsewhere.
    """
    lm = as_label_map(label_map, "label_map")
    if not 1 <= int(connectivity) <= lm.ndim:
        raise ValueError(f"connectivity must be in [1, {lm.ndim}], got {connectivity!r}")
    fg = lm != boundary_class
    if ignore_index is not None:
        fg &= lm != ignore_index
    structure = ndimage.generate_binary_structure(lm.ndim, int(connectivity))
    segments, _ = ndimage.label(fg, structure=structure)
    return segments.astype(np.int64, copy=False)


def rand_error(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    boundary_class: int,
    ignore_index: int | None = None,
    connectivity: int = 1,
    pred_background: PredBackground = "singletons",
) -> float:
    """ISBI 2012 adapted Rand error of two semantic label maps ``(*spatial)`` (module doc).

    The segments are the connected components of each map's foreground (every class except
    ``boundary_class``); truth pixels equal to ``ignore_index`` are not counted.
    """
    if not isinstance(boundary_class, int | np.integer) or isinstance(boundary_class, bool):
        raise ValueError(f"boundary_class must be an int, got {boundary_class!r}")
    p = as_label_map(pred, "pred")
    t = as_label_map(truth, "truth")
    same_shape(p, t, "pred", "truth")
    p_seg = foreground_segments(p, boundary_class, connectivity=connectivity)
    t_seg = foreground_segments(
        t, boundary_class, ignore_index=ignore_index, connectivity=connectivity
    )
    return adapted_rand_error(p_seg, t_seg, pred_background=pred_background)
