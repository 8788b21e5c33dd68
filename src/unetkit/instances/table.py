"""Per-object table of an instance label image: id, class, size, centroid, bounding box, intensity.

Columns (2D; 3D adds ``z`` and says ``volume`` instead of ``area``):

``id, class, area, centroid_y, centroid_x, bbox_start_y, bbox_start_x, bbox_stop_y,
bbox_stop_x, mean_intensity`` (one ``mean_intensity_<c>`` column per channel when the image has
several).

Coordinates are in pixels of the image, centroids are the mean pixel coordinates, the box is
``start <= coordinate < stop`` (Python slice convention), ``class`` is the class that most of
the object's pixels have in the class map (ties: the smaller class), or 1 without a class map.
Sizes, centroids and boxes come from ``skimage.measure.regionprops_table``; class and intensity
from per-object sums (``np.bincount``), so the cost is a few passes over the image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetkit.errors import UnetkitError
from unetkit.instances.validate import as_instances

_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}


def majority_class(labels: np.ndarray, class_map: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """For each id in ``ids`` ``(n,)``, the most frequent class under it ``(n,)`` int64.

    Args:
        labels: int ``(*spatial)`` object ids.
        class_map: int ``(*spatial)`` class labels, same shape.
        ids: the object ids to report, each present in ``labels``.
    """
    lab = labels.ravel()
    cls = np.asarray(class_map).ravel().astype(np.int64)
    fg = lab > 0
    pairs, counts = np.unique(np.stack([lab[fg], cls[fg]]), axis=1, return_counts=True)
    # sort by id, then count descending, then class ascending; the first row per id wins
    order = np.lexsort((pairs[1], -counts, pairs[0]))
    pairs = pairs[:, order]
    first = np.ones(pairs.shape[1], dtype=bool)
    first[1:] = pairs[0, 1:] != pairs[0, :-1]
    best_ids, best_cls = pairs[0, first], pairs[1, first]
    return best_cls[np.searchsorted(best_ids, ids)]


def object_table(
    labels: np.ndarray,
    *,
    image: np.ndarray | None = None,
    class_map: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One row per object of ``labels`` (module doc), as columns of equal length.

    Args:
        labels: int ``(*spatial)`` instance ids, 2D or 3D, 0 = background.
        image: optional ``(*spatial)`` or ``(C, *spatial)`` intensities for the mean columns.
        class_map: optional int ``(*spatial)`` class labels for the ``class`` column.

    Returns:
        ``{column: (n_objects,) array}``, rows in increasing id order.
    """
    lab = as_instances(labels, "labels")
    if lab.ndim not in _AXES:
        raise ValueError(f"labels must be 2D or 3D for an object table, got shape {lab.shape}")
    axes = _AXES[lab.ndim]
    from skimage.measure import regionprops_table  # lazy: keeps import unetkit fast
    props = regionprops_table(lab, properties=("label", "area", "centroid", "bbox"))
    ids = np.asarray(props["label"], dtype=np.int64)
    table: dict[str, np.ndarray] = {"id": ids}
    if class_map is not None:
        cm = np.asarray(class_map)
        if cm.shape != lab.shape:
            raise ValueError(f"class_map must have the shape {lab.shape}, got {cm.shape}")
        table["class"] = majority_class(lab, cm, ids)
    else:
        table["class"] = np.ones(ids.size, dtype=np.int64)
    area = np.asarray(props["area"], dtype=np.int64)
    table["area" if lab.ndim == 2 else "volume"] = area
    for i, ax in enumerate(axes):
        table[f"centroid_{ax}"] = np.asarray(props[f"centroid-{i}"], dtype=np.float64)
    for i, ax in enumerate(axes):
        table[f"bbox_start_{ax}"] = np.asarray(props[f"bbox-{i}"], dtype=np.int64)
    for i, ax in enumerate(axes):
        table[f"bbox_stop_{ax}"] = np.asarray(props[f"bbox-{i + lab.ndim}"], dtype=np.int64)
    if image is not None:
        img = np.asarray(image, dtype=np.float64)
        if img.shape == lab.shape:
            img = img[None]
        if img.shape[1:] != lab.shape:
            raise ValueError(
                f"image must have the shape {lab.shape} or (C, *{lab.shape}), got {img.shape}"
            )
        index = np.searchsorted(ids, lab.ravel())  # only read where lab > 0
        fg = lab.ravel() > 0
        for c in range(img.shape[0]):
            sums = np.bincount(index[fg], weights=img[c].ravel()[fg], minlength=ids.size)
            name = "mean_intensity" if img.shape[0] == 1 else f"mean_intensity_{c}"
            table[name] = sums / np.maximum(area, 1)
    return table


def object_table_csv(table: dict[str, np.ndarray]) -> str:
    """CSV text of :func:`object_table`: a header, then one line per object."""
    names = list(table)
    lines = [",".join(names)]
    columns = [np.asarray(table[n]) for n in names]
    for row in zip(*columns, strict=True):
        cells = [
            f"{float(v):.6g}" if isinstance(v, np.floating | float) else str(int(v)) for v in row
        ]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def write_object_table(path: str | os.PathLike[str], table: dict[str, np.ndarray]) -> None:
    """Write :func:`object_table_csv` to a new file ``path``; never replaces an existing file.

    The text goes to a temporary file beside ``path`` first and is moved into place whole.

    Raises:
        UnetkitError: ``path`` exists already.
    """
    target = Path(path)
    if target.exists():
        raise UnetkitError(
            f"{target}: exists already; choose another output name or remove the file yourself"
        )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(object_table_csv(table), encoding="utf-8")
        os.link(tmp, target)  # fails if someone created ``path`` meanwhile
    except FileExistsError:
        raise UnetkitError(
            f"{target}: exists already; choose another output name or remove the file yourself"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
