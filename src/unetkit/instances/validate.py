"""Checks of instance label maps: array arguments (``ValueError``) and instance truth files.

Instance truth (``instances/<stem>.*``) holds one non-negative integer id per pixel, 0 for
background, one id per object. :func:`check_instances` turns what is wrong with a file into one
:class:`~unetkit.errors.DataError` line that names the file: ids that are not integers,
negative ids, and an id used by several disconnected pieces (each such id with its number of
pieces), which would otherwise train and score as one object that is really several.
"""

from __future__ import annotations

import numpy as np

from unetkit.errors import DataError
from unetkit.metrics._checks import as_label_map

_LIST_AT_MOST = 5


def as_instances(x: object, name: str) -> np.ndarray:
    """Return ``x`` as an int64 instance map ``(*spatial)`` (1 to 3 dims), or raise ValueError.

    Accepts integer or boolean arrays with non-negative values; 0 is background.
    """
    out = as_label_map(x, name, what="instance map", values="ids")
    if out.size and out.min() < 0:
        raise ValueError(f"{name} must not hold negative ids, found {int(out.min())}")
    return out


def disconnected_ids(instances: np.ndarray, *, connectivity: int | None = None) -> dict[int, int]:
    """Ids used by more than one connected piece, with their number of pieces.

    Args:
        instances: int ``(*spatial)``; 0 = background.
        connectivity: 1 (faces) up to ``ndim``; default ``ndim`` (pieces that touch at a corner
            are one piece, so a thin diagonal object is not reported).

    Returns:
        ``{id: pieces}`` for every id with ``pieces >= 2``, in increasing id order.
    """
    lab = as_instances(instances, "instances")
    conn = lab.ndim if connectivity is None else int(connectivity)
    if not 1 <= conn <= lab.ndim:
        raise ValueError(f"connectivity must be in [1, {lab.ndim}], got {connectivity!r}")
    # connected regions of equal value: one region per piece of each id
    from skimage.measure import label as label_regions  # lazy: keeps import unetkit fast
    regions = label_regions(lab, background=0, connectivity=conn)
    flat = regions.ravel()
    _, first = np.unique(flat, return_index=True)  # one pixel of each region (0 first)
    owner = lab.ravel()[first]
    owner = owner[owner > 0]
    ids, pieces = np.unique(owner, return_counts=True)
    split = pieces > 1
    return dict(zip(ids[split].tolist(), pieces[split].tolist(), strict=True))


def separate_pieces(instances: np.ndarray, *, connectivity: int | None = None) -> np.ndarray:
    """Give every connected piece of every id its own id (a repair for split ids).

    Args:
        instances: int ``(*spatial)``; 0 = background.
        connectivity: as :func:`disconnected_ids` (default ``ndim``).

    Returns:
        int64 ``(*spatial)``: ids ``1..n``, one per piece; objects that were one piece keep
        their extent (touching objects with different ids stay apart).
    """
    lab = as_instances(instances, "instances")
    conn = lab.ndim if connectivity is None else int(connectivity)
    if not 1 <= conn <= lab.ndim:
        raise ValueError(f"connectivity must be in [1, {lab.ndim}], got {connectivity!r}")
    from skimage.measure import label as label_regions  # lazy: keeps import unetkit fast
    return label_regions(lab, background=0, connectivity=conn).astype(np.int64, copy=False)


def _integer_ids(instances: np.ndarray, source: str) -> np.ndarray:
    """The dtype, value and sign checks of :func:`check_instances`; int64 ``(*spatial)``."""
    arr = np.asarray(instances)
    if arr.ndim < 1 or arr.ndim > 3:
        raise DataError(
            f"{source}: instance ids must form a 1D, 2D or 3D single-channel map, got shape "
            f"{arr.shape}; save one id image per sample"
        )
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DataError(
                f"{source}: instance map contains NaN or infinite values; it must hold one "
                f"integer id per object (0 = background)"
            )
        frac = arr != np.round(arr)
        if frac.any():
            raise DataError(
                f"{source}: instance ids must be integers, found {float(arr[frac][0])!r}; save "
                f"the ids losslessly as an integer image (e.g. 16-bit PNG or TIFF)"
            )
        if arr.size and np.abs(arr).max() >= 2.0**53:
            raise DataError(f"{source}: instance ids are too large to be exact integers")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "biu":
        raise DataError(
            f"{source}: instance ids must be integers, got dtype {arr.dtype}; save one "
            f"integer id per object (0 = background)"
        )
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise DataError(f"{source}: instance ids are too large for int64")
    lab = arr.astype(np.int64, copy=False)
    if lab.size and lab.min() < 0:
        raise DataError(
            f"{source}: instance ids must be >= 0 (0 = background), found {int(lab.min())}"
        )
    return lab


def _split_listing(split: dict[int, int]) -> str:
    shown = [f"id {k} ({n} pieces)" for k, n in list(split.items())[:_LIST_AT_MOST]]
    more = len(split) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def check_instances(
    instances: np.ndarray, source: str, *, connectivity: int | None = None
) -> np.ndarray:
    """Validate instance truth read from ``source``; return it as int64 ``(*spatial)``.

    Raises:
        DataError: one line naming ``source``: a dtype that is not numeric, NaN or fractional
            ids, negative ids, or ids used by disconnected pieces (``disconnected_ids``).
    """
    lab = _integer_ids(instances, source)
    split = disconnected_ids(lab, connectivity=connectivity)
    if split:
        raise DataError(
            f"{source}: {len(split)} instance id(s) used by disconnected pieces: "
            f"{_split_listing(split)}; give each object its own id (one connected piece per id)"
        )
    return lab


def repair_instances(
    instances: np.ndarray, source: str, *, connectivity: int | None = None
) -> tuple[np.ndarray, str | None]:
    """Instance truth for training and scoring: checked, with reused ids split into pieces.

    Like :func:`check_instances`, but an id used by disconnected pieces is not an error: every
    piece becomes an object of its own (:func:`separate_pieces`) and the second value is a
    one-line warning naming ``source`` and the ids (``None`` when nothing was repaired).

    Raises:
        DataError: ids that are not integers or are negative (one line naming ``source``).
    """
    lab = _integer_ids(instances, source)
    split = disconnected_ids(lab, connectivity=connectivity)
    if not split:
        return lab, None
    warning = (
        f"{source}: {len(split)} instance id(s) used by disconnected pieces: "
        f"{_split_listing(split)}; each piece is taken as an object of its own (give each "
        f"object its own id to silence this)"
    )
    return separate_pieces(lab, connectivity=connectivity), warning
