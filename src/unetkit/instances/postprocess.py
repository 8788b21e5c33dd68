"""From the network's boundary-class probabilities to one label per object: seeds + watershed.

Input: the softmax of the three boundary classes (:mod:`unetkit.instances.targets`),
``(3, *spatial)`` = background, interior, border probabilities, for the **whole** image. Steps:

1. **foreground** = ``p_interior + p_border > foreground_threshold`` (or a given mask, e.g. the
   class map's objects);
2. **seeds** = connected components (face connectivity) of ``p_interior > seed_threshold``
   inside the foreground; with ``split_distance > 0`` a seed is further cut at the necks of its
   distance map (one part per local maximum of the Euclidean distance to the seed's edge, maxima
   at least ``split_distance`` pixels apart: the classical distance-transform watershed), which
   parts touching objects whose border the network did not mark; seeds smaller than
   ``min_seed_size`` pixels are dropped;
3. **watershed** (``skimage.segmentation.watershed``) from the seeds over the elevation
   ``1 - p_interior``, restricted to the foreground: each seed grows outwards through its border
   zone until it meets its neighbour's front, which is where touching objects part;
4. foreground components that no seed reached become objects of their own (a small or faint
   object without a confident interior is still an object);
5. objects smaller than ``min_size`` pixels are removed; ids are renumbered ``1..n`` (seeds in
   raster order of their first pixel, then the unseeded objects), in the smallest of uint16 /
   uint32 that holds ``n``.

Tiling: run this on the **stitched** probabilities of the whole image (the tiled predictor,
:func:`unetkit.infer.predictor.predict_probabilities`, already blends the tiles into one array),
never per tile, so an object cut by a tile border is still one watershed basin and one id.

Memory: a few arrays of the image size (float32 elevation, int32/int64 labels), about
20 bytes per pixel on top of the probabilities. An image larger than memory would need a
blockwise watershed with halos and a merge of the ids that meet across block faces (the
approach of chunked segmentation tools); that is not done here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage

from unetkit.errors import UnetkitError
from unetkit.instances.targets import BORDER, INTERIOR, NUM_BOUNDARY_CLASSES, instances_from_mask
from unetkit.instances.validate import as_instances

_UINT16_MAX = int(np.iinfo(np.uint16).max)
_UINT32_MAX = int(np.iinfo(np.uint32).max)


@dataclass(frozen=True)
class InstanceParams:
    """The few parameters of the post-processing (module doc), stored with a trained model.

    Attributes:
        seed_threshold: interior probability above which a pixel may seed an object.
        foreground_threshold: interior + border probability above which a pixel is an object.
        min_seed_size: seeds with fewer pixels are dropped (noise would split objects).
        min_size: objects with fewer pixels are removed from the output.
        split_distance: 0 (off), or the smallest distance in pixels between two distance-map
            maxima that cut one seed into two (module doc, step 2).
    """

    seed_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_seed_size: int = 4
    min_size: int = 8
    split_distance: int = 0

    def __post_init__(self) -> None:
        for name in ("seed_threshold", "foreground_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v < 1.0:
                raise ValueError(f"InstanceParams.{name} must be a number in [0, 1), got {v!r}")
        for name in ("min_seed_size", "min_size", "split_distance"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise ValueError(f"InstanceParams.{name} must be an int >= 0, got {v!r}")

    def to_dict(self) -> dict[str, float | int]:
        """Plain values by field name, for model metadata or YAML."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InstanceParams:
        """The inverse of :meth:`to_dict`; unknown keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown instance parameter(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**values)


def label_dtype(n_objects: int) -> np.dtype:
    """uint16 when ``n_objects`` ids fit, else uint32.

    Raises:
        UnetkitError: more objects than a 32-bit label image can hold.
    """
    if n_objects < 0:
        raise ValueError(f"n_objects must be >= 0, got {n_objects!r}")
    if n_objects <= _UINT16_MAX:
        return np.dtype(np.uint16)
    if n_objects <= _UINT32_MAX:
        return np.dtype(np.uint32)
    raise UnetkitError(
        f"{n_objects} objects do not fit in a 32-bit label image (at most {_UINT32_MAX}); "
        f"predict the image in parts or raise min_size to drop the smallest objects"
    )


def label_suffix(labels: np.ndarray) -> str:
    """The file type for an instance label image: ``".png"`` for uint8/uint16, else ``".tif"``.

    PNG holds at most 16 bits per pixel; 32-bit ids need TIFF.
    """
    return ".png" if np.asarray(labels).dtype in (np.uint8, np.uint16) else ".tif"


def relabel(labels: np.ndarray, *, min_size: int = 0) -> np.ndarray:
    """Drop objects under ``min_size`` pixels and renumber the rest ``1..n``.

    Args:
        labels: int ``(*spatial)``, 0 = background, ids non-negative.
        min_size: objects with fewer pixels become background.

    Returns:
        ``(*spatial)`` in :func:`label_dtype` of ``n``; the kept ids keep their order.
    """
    lab = as_instances(labels, "labels")
    flat = lab.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= 4 * flat.size + 65536:  # a lookup table, O(N)
        sizes = np.bincount(flat, minlength=1)
        keep = sizes >= max(min_size, 1)
        keep[0] = False
        new = np.cumsum(keep) * keep
        n = int(new.max(initial=0))
        return new.astype(label_dtype(n))[flat].reshape(lab.shape)
    ids, index, sizes = np.unique(flat, return_inverse=True, return_counts=True)
    keep = (ids > 0) & (sizes >= min_size)
    new = np.cumsum(keep) * keep
    n = int(new.max(initial=0))
    return new.astype(label_dtype(n))[index.ravel()].reshape(lab.shape)


def _check_probabilities(probabilities: np.ndarray) -> np.ndarray:
    probs = np.asarray(probabilities)
    if (
        probs.ndim < 2
        or probs.ndim > 4
        or probs.shape[0] != NUM_BOUNDARY_CLASSES
        or not np.issubdtype(probs.dtype, np.floating)
    ):
        raise ValueError(
            "probabilities must be a float array (3, *spatial) of background / interior / "
            f"border probabilities with 1 to 3 spatial dims, got {probs.dtype} {probs.shape}"
        )
    return probs


def watershed_labels(
    probabilities: np.ndarray,
    *,
    seed_threshold: float,
    foreground_threshold: float,
    min_seed_size: int,
    foreground: np.ndarray | None = None,
    split_distance: int = 0,
) -> np.ndarray:
    """Steps 1-4 of the module doc: integer object ids ``(*spatial)``, not yet size-filtered.

    Exposed so that a tuner can run the watershed once and try several ``min_size`` values.
    """
    probs = _check_probabilities(probabilities)
    interior = probs[INTERIOR].astype(np.float32, copy=False)
    if foreground is None:
        fg = (interior + probs[BORDER]) > foreground_threshold
    else:
        fg = np.asarray(foreground, dtype=bool)
        if fg.shape != interior.shape:
            raise ValueError(
                f"foreground must have the spatial shape {interior.shape}, got {fg.shape}"
            )
    cross = ndimage.generate_binary_structure(fg.ndim, 1)
    seeds, n_seeds = ndimage.label((interior > seed_threshold) & fg, structure=cross)
    if n_seeds and split_distance > 0:
        seeds, n_seeds = _split_seeds(seeds, int(split_distance))
    if n_seeds and min_seed_size > 1:
        small = np.bincount(seeds.ravel(), minlength=n_seeds + 1) < min_seed_size
        small[0] = False
        seeds[small[seeds]] = 0
    from skimage.segmentation import watershed  # lazy: keeps import unetkit fast

    labels = watershed(1.0 - interior, markers=seeds, mask=fg, connectivity=1)
    rest, n_rest = ndimage.label(fg & (labels == 0), structure=cross)
    if n_rest:
        top = int(labels.max())
        labels = np.where(rest > 0, rest + top, labels)
    return labels


def instances_from_probabilities(
    probabilities: np.ndarray,
    params: InstanceParams | None = None,
    *,
    foreground: np.ndarray | None = None,
) -> np.ndarray:
    """Instance label image from boundary-class probabilities (module doc).

    Args:
        probabilities: float ``(3, *spatial)``: background, interior, border (softmax), for the
            whole stitched image; 1 to 3 spatial dims.
        params: the post-processing parameters; default :class:`InstanceParams()`.
        foreground: optional bool ``(*spatial)`` that replaces the foreground threshold (e.g.
            ``class_map > 0`` from the model's class output).

    Returns:
        uint16 or uint32 ``(*spatial)``: 0 = background, objects ``1..n``.

    Raises:
        UnetkitError: more objects than uint32 holds.
    """
    p = InstanceParams() if params is None else params
    labels = watershed_labels(
        probabilities,
        seed_threshold=p.seed_threshold,
        foreground_threshold=p.foreground_threshold,
        min_seed_size=p.min_seed_size,
        foreground=foreground,
        split_distance=p.split_distance,
    )
    return relabel(labels, min_size=p.min_size)


def _split_seeds(seeds: np.ndarray, min_distance: int) -> tuple[np.ndarray, int]:
    """Cut each seed at the necks of its distance map (module doc, step 2)."""
    from skimage.feature import peak_local_max  # lazy: keeps import unetkit fast
    from skimage.segmentation import watershed

    dist = ndimage.distance_transform_edt(seeds > 0)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=seeds, exclude_border=False)
    markers = np.zeros(seeds.shape, dtype=np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    parts = watershed(-dist, markers=markers, mask=seeds > 0)
    # a seed without a peak (possible on plateaus) keeps its own id after the parts
    lost = (seeds > 0) & (parts == 0)
    if lost.any():
        rest, _ = ndimage.label(lost)
        parts = np.where(lost, rest + parts.max(), parts)
    return parts, int(parts.max())


def instances_from_class_map(
    class_map: np.ndarray, *, min_size: int = 0, connectivity: int = 1
) -> np.ndarray:
    """Connected components of a class map, per class: the fallback without a boundary target.

    Touching objects of the same class come out as one object (what the boundary target fixes).

    Args:
        class_map: int ``(*spatial)``, 0 = background.
        min_size: components with fewer pixels are removed.
        connectivity: 1 (faces) up to ``ndim``.

    Returns:
        uint16 or uint32 ``(*spatial)`` object ids ``1..n``.
    """
    return relabel(instances_from_mask(class_map, connectivity=connectivity), min_size=min_size)
