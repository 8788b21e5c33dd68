"""Training targets that let a U-Net separate touching objects, from per-object instance ids.

A class map cannot say where one nucleus ends and the touching next one begins. The boundary
target gives the network three classes to learn instead, per pixel ``(*spatial)``:

* ``BACKGROUND`` (0): no object;
* ``INTERIOR`` (1): an object pixel that is not a border pixel;
* ``BORDER`` (2): an object pixel within ``width`` pixels (Euclidean, ``|offset| <= width``) of
  a pixel of a **different** object (``border="touching"``, the default), or of anything that
  is not its own object, background included (``border="contour"``).

With ``border="touching"`` an isolated object is all interior and the border class marks only
the contact zones, ``2 * width`` pixels wide in all (``width`` on each side); objects less than
``width`` apart across background get a border too. The default width is 2: with a one-pixel
border a slightly blurred prediction joins the two interiors across the contact (DSB 2018
truth, one-hot target blurred by a Gaussian of sigma 1 px, default post-processing: DSB score
0.91 with width 1, 0.99 with width 2; ``benchmarks/instances_ceiling.py --sigma 1 --width N``).
``border="contour"`` rings every object instead (the three-class contour target of the DSB 2018
literature): its interiors are eroded cores, at the price of losing objects thinner than
``2 * width + 1`` pixels from the interior class. The image edge is never a border.

With the paper's border weight map: :func:`unetkit.train.border_weight_map` adds its border
term on background pixels only, and touching instance truth has no background between the
objects. Give it the **interiors** as objects,
``border_weight_map(np.where(target == INTERIOR, instances, 0), from_components=False)``, and
the border pixels become the thin separating line of the paper, the pixels it weighs most.

Post-processing (:mod:`unetkit.instances.postprocess`) grows the interior components back
over interior + border by a watershed, so the border is only needed between objects.

Everything is dimension-agnostic (1D/2D/3D) and vectorised: one max filter and one min filter
with a ball footprint, no loop over objects (timing in :mod:`benchmarks.instances_ceiling`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from unetkit.instances.validate import as_instances

BACKGROUND = 0
INTERIOR = 1
BORDER = 2
NUM_BOUNDARY_CLASSES = 3

BorderMode = Literal["touching", "contour"]


def ball(ndim: int, radius: int) -> np.ndarray:
    """Boolean footprint ``(2r+1,) * ndim`` of the offsets with Euclidean length ``<= radius``."""
    if ndim < 1:
        raise ValueError(f"ndim must be >= 1, got {ndim!r}")
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
        raise ValueError(f"radius must be a non-negative int, got {radius!r}")
    axes = np.ogrid[tuple(slice(-radius, radius + 1) for _ in range(ndim))]
    return sum(a.astype(np.int64) ** 2 for a in axes) <= radius**2


def instances_from_mask(mask: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """Objects of a class mask where a dataset has no ``instances/``: components per class.

    Two touching regions of different classes are two objects; two touching objects of the same
    class are one (which is why real instance truth is better).

    Args:
        mask: int ``(*spatial)`` class labels, 0 = background.
        connectivity: 1 (faces) up to ``ndim`` (full neighbourhood).

    Returns:
        int64 ``(*spatial)``: 0 = background, object ids ``1..n``.
    """
    m = np.asarray(mask)
    if m.ndim < 1 or m.ndim > 3 or not (np.issubdtype(m.dtype, np.integer) or m.dtype == bool):
        raise ValueError(f"mask must be a 1D/2D/3D integer array, got {m.dtype} {m.shape}")
    if not 1 <= int(connectivity) <= m.ndim:
        raise ValueError(f"connectivity must be in [1, {m.ndim}], got {connectivity!r}")
    structure = ndimage.generate_binary_structure(m.ndim, int(connectivity))
    out = np.zeros(m.shape, dtype=np.int64)
    offset = 0
    for cls in np.unique(m[m != 0]):
        comp, n = ndimage.label(m == cls, structure=structure)
        out[comp > 0] = comp[comp > 0] + offset
        offset += n
    return out


def border_pixels(
    instances: np.ndarray, *, width: int = 2, border: BorderMode = "touching"
) -> np.ndarray:
    """Object pixels within ``width`` of another object (or of background, with ``"contour"``).

    Args:
        instances: int ``(*spatial)``; 0 = background, each positive id one object.
        width: border width in pixels, ``>= 1`` (1 = the pixels adjacent to another object).
            Default 2 (module doc).
        border: ``"touching"`` or ``"contour"`` (module doc).

    Returns:
        bool ``(*spatial)``.
    """
    lab = as_instances(instances, "instances")
    if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 1:
        raise ValueError(f"width must be an int >= 1, got {width!r}")
    if border not in ("touching", "contour"):
        raise ValueError(f"border must be 'touching' or 'contour', got {border!r}")
    fg = lab > 0
    if not fg.any():
        return np.zeros(lab.shape, dtype=bool)
    foot = ball(lab.ndim, int(width))
    # a pixel of object k sees a different object within the ball iff the largest id there is
    # above k or the smallest non-zero id is below k (background counted as +inf);
    # mode="nearest" so that the image edge never makes a border
    big = np.iinfo(np.int64).max
    hi = ndimage.maximum_filter(lab, footprint=foot, mode="nearest")
    lo = ndimage.minimum_filter(np.where(fg, lab, big), footprint=foot, mode="nearest")
    out = fg & ((hi > lab) | (lo < lab))
    if border == "contour":
        out |= fg & (ndimage.minimum_filter(lab, footprint=foot, mode="nearest") == 0)
    return out


def boundary_target(
    instances: np.ndarray, *, width: int = 2, border: BorderMode = "touching"
) -> np.ndarray:
    """The three-class boundary target ``(*spatial)``: BACKGROUND / INTERIOR / BORDER.

    Args:
        instances: int ``(*spatial)``, 1D/2D/3D; 0 = background, each positive id one object
            (touching objects allowed). Without instance truth use :func:`instances_from_mask`.
        width: border width in pixels (module doc), ``>= 1``.
        border: ``"touching"`` (default) or ``"contour"``.

    Returns:
        uint8 ``(*spatial)`` with values in ``{0, 1, 2}``.
    """
    lab = as_instances(instances, "instances")
    target = (lab > 0).astype(np.uint8)  # INTERIOR where an object is
    target[border_pixels(lab, width=width, border=border)] = BORDER
    return target


def distance_target(instances: np.ndarray) -> np.ndarray:
    """Normalised distance to each object's edge ``(*spatial)``, in ``[0, 1]``.

    Per object pixel: ``1 + `` the Euclidean distance to the nearest pixel of the object's edge
    layer (the object pixels with a face neighbour outside the object, which get 1), divided by
    the object's largest such value; so every object peaks at exactly 1 at its centre, whatever
    its size, and falls towards its edge and towards each touching neighbour. 0 on background.
    One distance transform for the whole image (no loop over objects); the distance is to the
    edge layer rather than to the nearest outside pixel, which differs by at most one pixel.

    Args:
        instances: int ``(*spatial)``; 0 = background, each positive id one object.

    Returns:
        float32 ``(*spatial)``.
    """
    lab = as_instances(instances, "instances")
    fg = lab > 0
    if not fg.any():
        return np.zeros(lab.shape, dtype=np.float32)
    cross = ndimage.generate_binary_structure(lab.ndim, 1)
    hi = ndimage.maximum_filter(lab, footprint=cross, mode="nearest")
    lo = ndimage.minimum_filter(lab, footprint=cross, mode="nearest")
    core = fg & (hi == lab) & (lo == lab)  # every face neighbour is the same object
    dist = np.where(fg, ndimage.distance_transform_edt(core) + 1.0, 0.0)
    ids, inverse = np.unique(lab[fg], return_inverse=True)
    inverse = inverse.ravel()
    peak = np.zeros(ids.size)
    np.maximum.at(peak, inverse, dist[fg])
    out = np.zeros(lab.shape, dtype=np.float32)
    out[fg] = dist[fg] / peak[inverse]
    return out
