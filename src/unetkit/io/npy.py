"""NumPy ``.npy``: the header is read first (shape, dtype), pickled arrays are refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from unetkit.errors import DataError
from unetkit.io.limits import check_pixels

NPY_MAGIC = b"\x93NUMPY"

# (array, axis 0 is channels, default number of spatial dims)
Raw = tuple[np.ndarray, bool, int]


def read_npy(path: Path, limit: int) -> Raw:
    """``(array, has_channels, default spatial dims)``: by ``ndim`` (4 is ``(C, D, H, W)``)."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        except ValueError:
            raise DataError(f"{path}: .npy header is corrupt; re-save the array") from None
        if dtype.hasobject:
            raise DataError(
                f"{path}: .npy holds Python objects (pickled data), which is refused for "
                f"safety; save a plain numeric array"
            )
        if not 1 <= len(shape) <= 4:
            raise DataError(
                f"{path}: array of shape {tuple(shape)} has {len(shape)} dims; expected (L,), "
                f"(H, W), (D, H, W) or (C, D, H, W) (or (C, L), (C, H, W) with spatial_dims)"
            )
        check_pixels(path, int(np.prod(shape)), limit)
        fh.seek(0)
        arr = np.load(fh, allow_pickle=False)
    arr = np.asarray(arr)
    if arr.ndim == 4:
        return arr, True, 3
    return arr, False, arr.ndim


def npy_bytes(arr: np.ndarray) -> bytes:
    """``arr`` -> ``.npy`` file bytes (no pickling)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()
