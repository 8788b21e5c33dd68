"""A built-in synthetic dataset of cell-like objects, for demos, tests and ``unetkit train``.

Each image holds blobs (intervals in 1D, rotated ellipses in 2D, ellipsoids in 3D) of varied
size and brightness, some of them touching, on a noisy background with a smooth gradient and a
low-frequency unevenness. Where two objects touch, the image shows a faint darker seam (as a
membrane would); the class mask is 1 on every object pixel, and the instance ids separate the
objects. A global threshold does not separate objects from background (the background level
varies by more than the contrast of the dimmest objects), but a small U-Net does.

Deterministic: sample ``i`` depends only on ``(seed, i)``, not on ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from unetkit.data.fields import smooth_field
from unetkit.data.sample import Sample

_DEFAULT_SIZE = {1: 256, 2: 128, 3: 48}
# object radius as a share of the smallest image side
_RADIUS_SHARE = {1: (0.015, 0.04), 2: (0.04, 0.09), 3: (0.08, 0.15)}


def _random_rotation(nd: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random orthogonal matrix ``(nd, nd)`` (identity-free for nd == 1)."""
    q, r = np.linalg.qr(rng.normal(size=(nd, nd)))
    return q * np.sign(np.diag(r))


def _touching_boundary(inst: np.ndarray) -> np.ndarray:
    """Pixels ``(*spatial)`` next to a pixel of a *different* object (both non-zero)."""
    out = np.zeros(inst.shape, dtype=bool)
    for axis in range(inst.ndim):
        a = np.moveaxis(inst, axis, 0)
        o = np.moveaxis(out, axis, 0)
        edge = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        o[1:] |= edge
        o[:-1] |= edge
    return out


def _render_objects(
    shape: tuple[int, ...], rng: np.random.Generator, touching_share: float, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Instance ids and per-pixel normalised distance to the owning object's centre."""
    nd = len(shape)
    lo, hi = (s * min(shape) for s in _RADIUS_SHARE[nd])
    ball = math.pi ** (nd / 2) / math.gamma(nd / 2 + 1)
    mean_volume = ball * ((lo + hi) / 2) ** nd
    count = max(1, round(fill * math.prod(shape) / mean_volume * rng.uniform(0.7, 1.3)))
    inst = np.zeros(shape, dtype=np.int64)
    best = np.full(shape, np.inf, dtype=np.float32)
    centres: list[np.ndarray] = []
    sizes: list[float] = []
    upper = np.array(shape, dtype=np.float64) - 1
    for _ in range(count):
        r = float(rng.uniform(lo, hi))
        centre = None
        for _try in range(30):
            if centres and rng.random() < touching_share:
                j = int(rng.integers(len(centres)))
                direction = rng.normal(size=nd)
                direction /= np.linalg.norm(direction) + 1e-12
                cand = centres[j] + direction * (sizes[j] + r) * 0.85
            else:
                cand = rng.uniform(0, upper)
            if np.any(cand < 0) or np.any(cand > upper):
                continue
            # touching neighbours may overlap a little, no object may swallow another
            far = [np.linalg.norm(cand - c) > 0.8 * (sizes[k] + r) for k, c in enumerate(centres)]
            if all(far):
                centre = cand
                break
        if centre is None:
            continue
        radii = r * rng.uniform(0.75, 1.3, size=nd)
        rot = _random_rotation(nd, rng)
        reach = float(radii.max()) + 1
        box = tuple(
            slice(max(0, int(c - reach)), min(s, int(c + reach) + 2))
            for c, s in zip(centre, shape, strict=True)
        )
        axes = [
            np.arange(b.start, b.stop, dtype=np.float32) - c
            for b, c in zip(box, centre, strict=True)
        ]
        grids = np.meshgrid(*axes, indexing="ij")
        offsets = np.stack(grids, axis=-1)  # (*box, nd)
        local = offsets @ rot  # coordinates in the object's own axes
        dist = np.sqrt(((local / radii) ** 2).sum(-1))  # 1.0 on the object's outline
        mine = (dist < 1.0) & (dist < best[box])
        inst[box][mine] = len(centres) + 1
        best[box][mine] = dist[mine]
        centres.append(centre)
        sizes.append(r)
    # renumber 1..k in case an object lost all its pixels to a neighbour
    ids = np.unique(inst[inst > 0])
    lut = np.zeros(len(centres) + 2, dtype=np.int64)
    lut[ids] = np.arange(1, ids.size + 1)
    return lut[inst], best


def _make_one(
    shape: tuple[int, ...], rng: np.random.Generator, noise: float, touching_share: float
) -> tuple[np.ndarray, np.ndarray]:
    nd = len(shape)
    inst, dist = _render_objects(shape, rng, touching_share, fill=0.3)
    # background: 0.1 + gradient up to ~0.3 + low-frequency unevenness
    axes = np.meshgrid(*[np.linspace(0, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    direction = rng.normal(size=nd)
    direction /= np.linalg.norm(direction) + 1e-12
    ramp = sum(d * a for d, a in zip(direction, axes, strict=True))
    ramp = (ramp - ramp.min()) / (float(ramp.max() - ramp.min()) + 1e-6)
    background = 0.1 + rng.uniform(0.25, 0.5) * ramp + smooth_field(shape, rng, 4, 0.08)
    # objects: per-object brightness, brighter towards the centre, darker seams where they touch
    n_obj = int(inst.max())
    brightness = np.concatenate([[0.0], rng.uniform(0.25, 0.8, size=n_obj)]).astype(np.float32)
    profile = np.where(inst > 0, 1.0 - 0.35 * np.minimum(dist, 1.0) ** 2, 0.0)
    objects = brightness[inst] * profile
    objects[_touching_boundary(inst)] *= 0.4
    image = background + objects
    image = ndimage.gaussian_filter(image, sigma=0.8, mode="nearest")
    image = image + rng.normal(0.0, noise, size=shape)
    return image.astype(np.float32)[None], inst


def make_synthetic(
    n: int,
    *,
    spatial_dims: int = 2,
    size: int | Sequence[int] | None = None,
    seed: int = 0,
    noise: float = 0.05,
    touching_share: float = 0.4,
) -> list[Sample]:
    """``n`` synthetic samples of cell-like objects.

    Args:
        n: number of samples (>= 0).
        spatial_dims: 1, 2 or 3.
        size: side length, or one length per spatial dim; default 256 (1D), 128 (2D),
            48 (3D). Every side must be >= 8.
        seed: the dataset seed; sample ``i`` uses ``default_rng([seed, i])``.
        noise: standard deviation of the Gaussian pixel noise (objects have contrast 0.3..0.8).
        touching_share: probability that a new object is placed against an existing one.

    Returns:
        ``Sample`` list: ``image`` ``float32`` ``(1, *spatial)``, ``mask`` ``int64`` ``(*spatial)``
        in {0, 1}, ``instances`` ``int64`` ``(*spatial)`` with ids 1..k (0 = background) and
        ``mask == (instances > 0)``; stems ``synthetic_0000``, ...

    Raises:
        ValueError: an argument out of range (named).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative integer, got {n!r}")
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims: expected 1, 2 or 3, got {spatial_dims!r}")
    if size is None:
        size = _DEFAULT_SIZE[spatial_dims]
    shape = (int(size),) * spatial_dims if isinstance(size, int) else tuple(int(s) for s in size)
    if len(shape) != spatial_dims or min(shape) < 8:
        raise ValueError(f"size: expected {spatial_dims} sides of at least 8, got {size!r}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise: expected 0..1, got {noise!r}")
    if not 0.0 <= touching_share <= 1.0:
        raise ValueError(f"touching_share: expected 0..1, got {touching_share!r}")
    samples = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        image, inst = _make_one(shape, rng, noise, touching_share)
        mask = (inst > 0).astype(np.int64)
        samples.append(Sample(image=image, mask=mask, instances=inst, stem=f"synthetic_{i:04d}"))
    return samples
