"""The overhangs carried between blocks of out-of-core prediction (:mod:`unetkit.infer.blockwise`).

A block sums the weighted logits of the tiles it owns over itself and its **overhang** (where
those tiles' outputs reach into the next blocks along each axis). Each part of the overhang is
saved, as one scratch file of the output store, for the one block it falls into; that block adds
the pieces of its predecessors to its own sum before it is finalised::

    acc (K, *block + overhang) -> own part (K, *block) + one piece per direction in {0, 1}^d
    piece for grid g from direction t: scratch "carry-<g>-<t>", added into g's own part

A piece is removed once the block it went into is written (flag set), so the scratch folder
holds only the pieces still waiting for their block (the front of the sweep), never the
image's; a killed run finds every piece an unwritten block still needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from unetkit.errors import DataError
from unetkit.infer.block_plan import Block
from unetkit.infer.block_store import BlockStore


def directions(d: int) -> list[tuple[int, ...]]:
    """Non-zero ``{0, 1}^d`` in a fixed order: where a block's overhang goes."""
    return [t for t in itertools.product((0, 1), repeat=d) if any(t)]


def piece_name(grid: Sequence[int], direction: Sequence[int]) -> str:
    """Scratch name of the overhang carried into the block at ``grid`` from ``direction``."""
    return "carry-" + "_".join(map(str, grid)) + "-" + "".join(map(str, direction))


def part_name(block: Block) -> str:
    """Scratch name of the saved own sum of a block waiting for another process's overhang."""
    return f"part-{block.index}"


def carry_out(store: BlockStore, block: Block, acc: Tensor) -> Tensor:
    """Save every overhang piece of ``acc`` ``(K, *ext)`` for the neighbour it falls into; the
    block's own part ``(K, *out)`` is returned (a view of ``acc``)."""
    core = [hi - lo for lo, hi in block.out]
    over = [r - hi for r, (_lo, hi) in zip(block.reach, block.out, strict=True)]
    for direction in directions(len(core)):
        if any(t and o <= 0 for t, o in zip(direction, over, strict=True)):
            continue
        sel = tuple(
            slice(c, None) if t else slice(0, c) for t, c in zip(direction, core, strict=True)
        )
        dst = [g + t for g, t in zip(block.grid, direction, strict=True)]
        store.save(piece_name(dst, direction), acc[(slice(None), *sel)].numpy())
    return acc[(slice(None), *(slice(0, c) for c in core))]


def carry_in(
    store: BlockStore,
    block: Block,
    part: Tensor,
    grid: Mapping[tuple[int, ...], Block],
    first: bool,
) -> Tensor:
    """Add to ``part`` (the block's own sum) the overhangs of its predecessors that change the
    first grid axis (``first``) or those that do not (in place; returned)."""
    for direction in directions(len(block.grid)):
        if bool(direction[0]) != first:
            continue
        src = tuple(g - t for g, t in zip(block.grid, direction, strict=True))
        pred = grid.get(src)
        if pred is None or any(
            t and r <= lo for t, r, (lo, _) in zip(direction, pred.reach, block.out, strict=True)
        ):
            continue  # no predecessor there, or its tiles do not reach this block
        piece = store.load(piece_name(block.grid, direction))
        if piece is None:
            raise DataError(
                f"{store.path}: the overhang of block {pred.index} is missing from its scratch "
                f"folder; use --overwrite to predict this image again"
            )
        part[(slice(None), *(slice(0, n) for n in piece.shape[1:]))] += torch.from_numpy(piece)
    return part


def saved_part(store: BlockStore, block: Block) -> Tensor:
    """The saved own sum of a block that waited for another process's overhang."""
    saved = store.load(part_name(block))
    if saved is None:
        raise DataError(
            f"{store.path}: the sum of block {block.index} is missing from its scratch folder; "
            f"use --overwrite to predict this image again"
        )
    return torch.from_numpy(saved)


def release(store: BlockStore, block: Block) -> None:
    """Remove the scratch files that went into ``block`` (call once it is written)."""
    names = [piece_name(block.grid, t) for t in directions(len(block.grid))]
    store.remove([*names, part_name(block)])
