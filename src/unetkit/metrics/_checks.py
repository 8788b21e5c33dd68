"""Argument checks shared by the metric modules."""

from __future__ import annotations

import numpy as np


def as_label_map(
    x: object, name: str, *, what: str = "label map", values: str = "labels"
) -> np.ndarray:
    """Return ``x`` as an int64 label map ``(*spatial)`` with 1 to 3 dims, or raise ValueError.

    ``what`` and ``values`` name the map and its values in messages (an instance map's ids).
    """
    arr = np.asarray(x)
    if arr.ndim < 1 or arr.ndim > 3:
        raise ValueError(f"{name} must be a 1D, 2D or 3D {what}, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer {values}, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds {values} too large for int64")
    return arr.astype(np.int64, copy=False)


def as_mask(x: object, name: str) -> np.ndarray:
    """Return ``x`` as a boolean mask ``(*spatial)`` with 1 to 3 dims, or raise ValueError."""
    arr = np.asarray(x)
    if arr.ndim < 1 or arr.ndim > 3:
        raise ValueError(f"{name} must be a 1D, 2D or 3D mask, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"{name} must be boolean or numeric, got dtype {arr.dtype}")
        arr = arr != 0
    return arr


def same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ValueError unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}"
        )
