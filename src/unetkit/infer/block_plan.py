"""Where the blocks of out-of-core prediction go, and how large they may be.

The output of a tile plan (:func:`unetkit.infer.tiling.plan_tiles`) is cut into **blocks**
along its tile grid: a block's edge is a whole number ``per`` of tile steps, and a block
**owns** the tiles whose output starts inside it, so every tile is computed exactly once. A
tile's output reaches past its block's far edge by at most ``tile_out - step`` pixels per axis
(the ``overhang``); that part is carried to the next block (:mod:`unetkit.infer.blockwise`).
``per`` is at least ``ceil(tile_out / step) - 1`` so that an overhang never skips a block.

Block edges are chosen from a **memory budget** (:func:`block_steps`): the bytes one block
needs (:func:`block_bytes`: its input window, the float32 accumulator, the finalised logits,
labels and probabilities, and the carried pieces) grow with the block, never with the image, so
the peak of a run does not depend on the image's size.

    block (per steps per axis) -> window (C, *(ext + 2 margin)) -> acc (K, *ext)
    ext = (per - 1) step + tile_out   (the block plus its overhang)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from unetkit.infer.tiling import AxisPlan, TilePlan

#: Bytes the tile batch and one block may plan to use together, by default.
BLOCK_MEMORY = 640 * 2**20


@dataclass(frozen=True)
class Block:
    """One block of the output.

    Attributes:
        index: position in the row-major block order.
        grid: position in the block grid, one index per spatial axis.
        out: ``[lo, hi)`` output range per spatial axis (the part this block writes).
        starts: per axis, the tile starts this block owns (``lo <= start < hi``).
        reach: per axis, where the output of the owned tiles ends (``<= hi`` + overhang,
            clipped to the image).
    """

    index: int
    grid: tuple[int, ...]
    out: tuple[tuple[int, int], ...]
    starts: tuple[tuple[int, ...], ...]
    reach: tuple[int, ...]

    @property
    def region(self) -> tuple[slice, ...]:
        """``out`` as slices."""
        return tuple(slice(lo, hi) for lo, hi in self.out)


def _step(a: AxisPlan) -> int:
    return a.starts[1] - a.starts[0] if len(a.starts) > 1 else a.size


def min_steps(a: AxisPlan) -> int:
    """The fewest tile steps a block may span along ``a`` (its overhang skips no block)."""
    if len(a.starts) == 1:
        return 1
    return max(1, math.ceil(a.tile_out / _step(a)) - 1)


def _per(a: AxisPlan, edge: int) -> int:
    """Tile steps per block along ``a`` for an edge of ``edge`` pixels (the whole axis when
    the edge covers it, so that :func:`block_edges` planned again gives the same blocks)."""
    if edge >= a.size:
        return max(1, len(a.starts))
    return max(min_steps(a), edge // _step(a))


def block_edges(plan: TilePlan, block: int | Sequence[int]) -> tuple[int, ...]:
    """The block (and chunk) edge per axis: whole tile steps, or the axis if one tile."""
    edges = _edges(plan, block)
    return tuple(
        a.size if len(a.starts) == 1 else min(_per(a, e) * _step(a), a.size)
        for a, e in zip(plan.axes, edges, strict=True)
    )


def _edges(plan: TilePlan, block: int | Sequence[int]) -> list[int]:
    edges = [int(block)] * len(plan.axes) if isinstance(block, int) else [int(b) for b in block]
    if len(edges) != len(plan.axes) or any(e < 1 for e in edges):
        raise ValueError(f"block: expected positive sizes, one or one per axis, got {block!r}")
    return edges


def _axis_blocks(a: AxisPlan, edge: int) -> list[tuple[tuple[int, int], tuple[int, ...], int]]:
    if len(a.starts) == 1:
        return [((0, a.size), a.starts, min(a.size, a.starts[0] + a.tile_out))]
    per = _per(a, edge)
    groups = [a.starts[i : i + per] for i in range(0, len(a.starts), per)]
    if len(groups) > 1 and len(groups[-1]) == 1 and a.starts[-1] - a.starts[-2] < _step(a):
        # overlap="auto" ends the last tile at the image's end, closer than a step: a block of
        # its own would be thinner than the overhang that crosses it, so it joins the previous
        groups[-2:] = [groups[-2] + groups[-1]]
    out = []
    for own in groups:
        i = a.starts.index(own[0])
        per = len(own)
        hi = a.starts[i + per] if i + per < len(a.starts) else a.size
        out.append(((own[0], hi), own, min(a.size, own[-1] + a.tile_out)))
    return out


def plan_blocks(plan: TilePlan, block: int | Sequence[int]) -> list[Block]:
    """Cut the output of ``plan`` into blocks of about ``block`` pixels per axis (row-major)."""
    per_axis = [_axis_blocks(a, e) for a, e in zip(plan.axes, _edges(plan, block), strict=True)]
    blocks = []
    grids = itertools.product(*(range(len(p)) for p in per_axis))
    for i, grid in enumerate(grids):
        parts = [p[g] for p, g in zip(per_axis, grid, strict=True)]
        blocks.append(
            Block(
                i,
                tuple(grid),
                tuple(p[0] for p in parts),
                tuple(p[1] for p in parts),
                tuple(p[2] for p in parts),
            )
        )
    return blocks


def block_bytes(
    plan: TilePlan,
    per: Sequence[int],
    *,
    in_channels: int,
    out_channels: int,
    itemsize: int = 4,
    probabilities: bool = False,
) -> int:
    """Bytes the largest block of ``per`` tile steps per axis needs at once (planned).

    Counts the raw window (``itemsize`` per value, twice: read and mirrored), its float32
    copy, the float32 accumulator over the block and its overhang, and for the block itself
    the averaged logits, the winning channel (int64), the labels and the probabilities (on
    request), plus the overhang read from and written for the neighbours.
    """
    core, ext, window = 1, 1, 1
    for a, p in zip(plan.axes, per, strict=True):
        step = _step(a)
        c = min(a.size, p * step)
        e = min(a.size, (p - 1) * step + a.tile_out) if len(a.starts) > 1 else c
        core, ext, window = core * c, ext * e, window * (e + a.tile_in - a.tile_out)
    k = out_channels
    k_prob = (2 if k == 1 else k) if probabilities else 0
    reading = in_channels * window * (2 * itemsize + 4)
    accumulating = k * ext * 4
    finishing = core * (k * 4 + 8 + 4 + k_prob * 4) + k * (ext - core) * 4 * 2
    return accumulating + max(reading, finishing)


def block_steps(
    plan: TilePlan,
    budget: int,
    *,
    in_channels: int,
    out_channels: int,
    itemsize: int = 4,
    probabilities: bool = False,
) -> tuple[int, ...]:
    """The largest block edge (in output pixels per axis, equal steps on every tiled axis)
    whose :func:`block_bytes` stays within ``budget``; never below :func:`min_steps`."""
    floor = [min_steps(a) for a in plan.axes]
    most = [max(1, len(a.starts)) for a in plan.axes]

    def size(n: int) -> list[int]:
        return [min(m, max(f, n)) for f, m in zip(floor, most, strict=True)]

    def fits(n: int) -> bool:
        return (
            block_bytes(
                plan,
                size(n),
                in_channels=in_channels,
                out_channels=out_channels,
                itemsize=itemsize,
                probabilities=probabilities,
            )
            <= budget
        )

    n = max(floor)
    while n < max(most) and fits(n + 1):
        n += 1
    return block_edges(plan, [p * _step(a) for a, p in zip(plan.axes, size(n), strict=True)])
