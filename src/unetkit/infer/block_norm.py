"""Per-image normalisation numbers of an image read block by block (out-of-core prediction).

One streaming pass over the blocks: per-slab statistics (count, mean, sum of squared
deviations, float64) are combined in block order with Chan's formula, so every process count
gives the same numbers. Slabs are cut along the first axis to at most :data:`SLAB_VALUES`
values, so the pass holds one block's raw values and one slab's float64 copy, never more.
8- and 16-bit integer images (without clipping) are summed exactly in integers instead.
The numbers are stored with the output so that a resumed run uses the very same ones.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unetkit.infer.block_plan import Block
from unetkit.infer.distributed import Context
from unetkit.infer.lazy_image import LazyImage
from unetkit.infer.normalization import Normalization, ResolvedNormalization, squared_deviations

#: Most values converted to float64 at once by the statistics pass.
SLAB_VALUES = 1 << 21


def _integer_stats(v: np.ndarray) -> tuple[float, float, float]:
    """Count, mean and sum of squared deviations of 8- or 16-bit integers from exact integer
    sums (squares fit 32 bits; about 9x faster than converting the slab to float64)."""
    wide, square = (np.uint64, np.uint32) if v.dtype.kind == "u" else (np.int64, np.int32)
    n = int(v.size)
    total = int(v.sum(dtype=wide))
    squares = int(np.square(v, dtype=square).sum(dtype=wide))
    return n, total / n, (n * squares - total * total) / n


def _slab_stats(raw: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None) -> np.ndarray:
    """``(C, 3)`` float64 count, mean and sum of squared deviations of one slab."""
    out = np.zeros((raw.shape[0], 3))
    exact = lo is None and hi is None and raw.dtype.kind in "ui" and raw.dtype.itemsize <= 2
    for c in range(raw.shape[0]):
        if exact:
            out[c] = _integer_stats(raw[c])
            continue
        v = raw[c].astype(np.float64).reshape(-1)
        if lo is not None and hi is not None:
            np.clip(v, lo[c], hi[c], out=v)
        m = float(v.mean())
        out[c] = (v.size, m, squared_deviations(v, m))
    return out


def _combine(stats: Sequence[np.ndarray]) -> np.ndarray:
    """Chan's parallel combination of ``(C, 3)`` statistics, in the given order."""
    n, mean, m2 = stats[0][:, 0].copy(), stats[0][:, 1].copy(), stats[0][:, 2].copy()
    for s in stats[1:]:
        nb, mb, m2b = s[:, 0], s[:, 1], s[:, 2]
        total = n + nb
        delta = mb - mean
        mean = mean + delta * nb / total
        m2 = m2 + m2b + delta * delta * n * nb / total
        n = total
    return np.stack([n, mean, m2], axis=1)


def resolve_normalization(
    normalization: Normalization, image: LazyImage, blocks: Sequence[Block], ctx: Context
) -> ResolvedNormalization:
    """The image's normalisation numbers, streaming over ``blocks`` (shared among processes)."""
    corner = image.read(tuple(slice(0, 1) for _ in image.spatial))
    base = normalization.resolve(corner)  # clip bounds, dataset numbers
    if normalization.mode != "per_image":
        return base
    mine = [
        (b.index, _block_stats(image.read(b.region), base.lo, base.hi))
        for b in ctx.share(list(blocks))
    ]
    every = sorted(itertools.chain.from_iterable(ctx.gather(mine)), key=lambda item: item[0])
    total = _combine([s for _, s in every])
    mean, std = total[:, 1], np.sqrt(total[:, 2] / total[:, 0])
    return dataclasses.replace(base, mean=mean, std=np.where(std > 1e-8, std, 1.0))


def norm_to_attrs(n: ResolvedNormalization) -> dict[str, Any]:
    """The resolved numbers as JSON-able store attributes."""

    def listed(v: np.ndarray | None) -> list[float] | None:
        return None if v is None else [float(x) for x in v]

    return {"mean": listed(n.mean), "std": listed(n.std), "lo": listed(n.lo), "hi": listed(n.hi)}


def norm_from_attrs(d: Mapping[str, Any]) -> ResolvedNormalization:
    """The numbers :func:`norm_to_attrs` stored."""

    def arr(v: Any) -> np.ndarray | None:
        return None if v is None else np.asarray(v, dtype=np.float64)

    return ResolvedNormalization(
        mean=arr(d["mean"]), std=arr(d["std"]), lo=arr(d.get("lo")), hi=arr(d.get("hi"))
    )


def _block_stats(raw: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None) -> np.ndarray:
    """``(C, 3)`` statistics of one block ``(C, *S)``, slab by slab along its first axis."""
    plane = max(1, int(np.prod(raw.shape[2:])))
    rows = max(1, SLAB_VALUES // plane)
    parts = [_slab_stats(raw[:, i : i + rows], lo, hi) for i in range(0, raw.shape[1], rows)]
    return _combine(parts)
