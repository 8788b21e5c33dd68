"""Overlap metrics from a confusion matrix: per-class Dice and IoU, and pixel error.

Conventions (shared by :mod:`unetkit.metrics.evaluate`):

* ``confusion[t, p]`` counts non-ignored pixels of true class ``t`` predicted as ``p``.
* A class absent from both prediction and truth has Dice and IoU ``NaN`` ("not applicable"): it
  is not counted in any mean. A class present in only one of them has Dice and IoU ``0`` and is
  counted.
* Pixel error is ``1 - accuracy`` over non-ignored pixels; ``NaN`` when every pixel is ignored.
"""

from __future__ import annotations

import numpy as np

from unetkit.metrics._checks import as_label_map, same_shape


def confusion_matrix(
    pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Count pixels per (true class, predicted class).

    Args:
        pred: predicted label map, int ``(*spatial)`` with values in ``[0, num_classes)``.
        truth: true label map, int ``(*spatial)``, in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: number of classes ``K``.
        ignore_index: truth label marking void pixels, excluded from the counts.

    Returns:
        int64 ``(K, K)``; row = true class, column = predicted class.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if ignore_index is not None and not isinstance(ignore_index, int | np.integer):
        raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
    p = as_label_map(pred, "pred")
    t = as_label_map(truth, "truth")
    same_shape(p, t, "pred", "truth")
    keep = np.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    p, t = p[keep], t[keep]
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"pred has labels outside [0, {num_classes}) on non-ignored pixels")
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(
            f"truth has labels outside [0, {num_classes}) that are not ignore_index={ignore_index}"
        )
    flat = t * num_classes + p
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _check_confusion(confusion: np.ndarray) -> np.ndarray:
    c = np.asarray(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion must be a square (K, K) matrix, got shape {c.shape}")
    return c.astype(np.float64)


def dice_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class Dice ``2 TP / (2 TP + FP + FN)``: ``(K, K) -> (K,)``, NaN for absent classes."""
    c = _check_confusion(confusion)
    tp = np.diag(c)
    denom = c.sum(axis=0) + c.sum(axis=1)  # = 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), np.nan)


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU ``TP / (TP + FP + FN)``: ``(K, K) -> (K,)``, NaN for absent classes."""
    c = _check_confusion(confusion)
    tp = np.diag(c)
    denom = c.sum(axis=0) + c.sum(axis=1) - tp
    return np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), np.nan)


def pixel_error_from_confusion(confusion: np.ndarray) -> float:
    """``1 - accuracy`` over the counted pixels: ``(K, K) -> float``; NaN if nothing counted."""
    c = _check_confusion(confusion)
    total = c.sum()
    if total == 0:
        return float("nan")
    return float(1.0 - np.trace(c) / total)


def dice(
    pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Per-class Dice of two label maps ``(*spatial)`` -> ``(K,)`` (NaN: class absent in both)."""
    return dice_from_confusion(confusion_matrix(pred, truth, num_classes, ignore_index))


def iou(
    pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Per-class IoU of two label maps ``(*spatial)`` -> ``(K,)`` (NaN: class absent in both)."""
    return iou_from_confusion(confusion_matrix(pred, truth, num_classes, ignore_index))


def pixel_error(
    pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int | None = None
) -> float:
    """Fraction of non-ignored pixels whose predicted label differs from the truth."""
    return pixel_error_from_confusion(confusion_matrix(pred, truth, num_classes, ignore_index))
