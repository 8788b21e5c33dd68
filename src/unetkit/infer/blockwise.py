"""Out-of-core prediction: images larger than memory, read and written block by block.

The image (a :class:`unetkit.infer.lazy_image.LazyImage`: Zarr, OME-Zarr or a TIFF's Zarr
view) is tiled exactly as the in-memory path tiles it (:func:`unetkit.infer.tiling.plan_tiles`
over the **whole** image). The output is cut into **blocks** along that tile grid
(:mod:`unetkit.infer.block_plan`): a block's edge is a whole number of tile steps, so blocks
coincide with the output store's chunks, and a block **owns** the tiles whose output starts in
it, so every tile is computed once. A block reads only the input window of its tiles (mirrored
at the image's own borders, as in memory) and sums their weighted logits over itself and its
**overhang** (the part of its tiles' outputs that reaches into the next blocks)::

    window (C, *) -> tiles -> acc (K, *block + overhang) -> overhang pieces -> scratch files
    own part + pieces carried in from the previous blocks -> labels (/ weight sums: probabilities)

Each overhang piece is saved for the one block it falls into (:mod:`unetkit.infer.block_carry`:
:class:`BlockStore` scratch, one writer per file, removed once that block is written), so the
blocks run in row-major order and memory holds one block, never the image; every pixel
receives the same tiles and global weight sums as in :func:`predict_array`, and the labels
equal the in-memory result (valid-mode models stay seam-free, same-mode blending is unchanged).
Blocks and the tile batch are sized together from a memory budget (:func:`choose_block`).

Per-image normalisation needs the image's mean and std first: one streaming pass over the
blocks (:mod:`unetkit.infer.block_norm`), stored with the output so a resumed run uses the very
same values. Under ``torchrun`` each process takes a contiguous run of block rows along the
first axis; only its first row waits (its sums saved) until the previous process has written
the overhang into it (:mod:`unetkit.infer.distributed`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unetkit.errors import DataError
from unetkit.infer import tta as tta_mod
from unetkit.infer.band import class_argmax
from unetkit.infer.block_carry import carry_in, carry_out, part_name, release, saved_part
from unetkit.infer.block_norm import norm_from_attrs, norm_to_attrs, resolve_normalization
from unetkit.infer.block_plan import BLOCK_MEMORY, Block, block_edges, block_steps, plan_blocks
from unetkit.infer.block_store import DONE, WAITING, WRITTEN_BY, BlockStore
from unetkit.infer.distributed import Context
from unetkit.infer.engine import inference_network, run_network
from unetkit.infer.lazy_image import LazyImage
from unetkit.infer.normalization import Normalization
from unetkit.infer.predictor import PredictOptions
from unetkit.infer.tiling import TilePlan, plan_tiles, reflect_indices
from unetkit.memory import check_predict, predict_estimate
from unetkit.model import UNet, UNetConfig


def _read_window(image: LazyImage, plan: TilePlan, block: Block) -> np.ndarray:
    """Raw input ``(C, *window)`` of every tile of ``block``, mirrored outside the image."""
    region, take = [], []
    for a, starts in zip(plan.axes, block.starts, strict=True):
        lo = min(starts) - a.margin
        hi = max(starts) - a.margin + a.tile_in
        idx = reflect_indices(np.arange(lo, hi), a.size)
        first, last = int(idx.min()), int(idx.max()) + 1
        region.append(slice(first, last))
        take.append(None if lo >= 0 and hi <= a.size else idx - first)
    raw = image.read(region)
    for axis, t in enumerate(take):
        if t is not None:
            raw = np.take(raw, t, axis=axis + 1)
    return raw


def finalise(
    logits: Tensor, probabilities: bool, class_of_channel: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Averaged logits ``(K, *S)`` -> labels ``(*S)`` and optional probabilities ``(K', *S)``
    (``K' = 2`` for a single-channel sigmoid model), as :func:`predict_array` makes them;
    ``class_of_channel`` maps the winning channel to the dataset's class (instance models)."""
    small = torch.uint8 if logits.shape[0] <= 256 else torch.int32  # a byte per voxel
    if class_of_channel is not None and logits.shape[0] > 1:
        labels = np.asarray(class_of_channel)[class_argmax(logits, small).numpy()]
        return labels, torch.softmax(logits, dim=0).numpy() if probabilities else None
    if logits.shape[0] == 1:
        labels = (logits[0] > 0).numpy()
        if not probabilities:
            return labels, None
        p = torch.sigmoid(logits[0]).numpy()
        return labels, np.stack([1.0 - p, p])
    labels = class_argmax(logits, small).numpy()
    return labels, torch.softmax(logits, dim=0).numpy() if probabilities else None


def _tile_slices(
    starts: Sequence[int], first: Sequence[int], plan: TilePlan, inputs: bool
) -> tuple[slice, ...]:
    """Where one tile's input (``inputs``) or output lies in its block's window."""
    return tuple(
        slice(s - f, s - f + (a.tile_in if inputs else a.tile_out))
        for s, f, a in zip(starts, first, plan.axes, strict=True)
    )


def accumulate(
    network: Callable[[Tensor], Tensor],
    plan: TilePlan,
    block: Block,
    window: np.ndarray,
    *,
    out_channels: int,
    batch_size: int,
    transforms: list[Any],
) -> Tensor:
    """Summed weighted logits ``(K, *ext)`` of the tiles ``block`` owns, over the block and
    its overhang (``ext = reach - lo`` per axis), in row-major tile order.

    ``window``: ``(C, *window)`` float32 from :func:`_read_window` after normalisation.
    """
    first = [min(s) for s in block.starts]
    ext = [r - lo for r, (lo, _hi) in zip(block.reach, block.out, strict=True)]
    room = [max(s) - f + a.tile_out for s, f, a in zip(block.starts, first, plan.axes, strict=True)]
    acc = torch.zeros((out_channels, *room), dtype=torch.float32)
    tiles = list(itertools.product(*block.starts))
    for i in range(0, len(tiles), batch_size):
        chunk = tiles[i : i + batch_size]
        x = np.stack([window[(slice(None), *_tile_slices(t, first, plan, True))] for t in chunk])
        # x: (B, C, *tile_in)
        y = tta_mod.averaged(network, torch.from_numpy(x), transforms).cpu()
        y = y * torch.from_numpy(plan.batch_weights(chunk))  # (B, K, *tile_out)
        for yi, t in zip(y, chunk, strict=True):
            acc[(slice(None), *_tile_slices(t, first, plan, False))] += yi
    return acc[(slice(None), *(slice(0, e) for e in ext))]


def _weights(sums: Sequence[Tensor], block: Block) -> Tensor:
    """``(*out)`` float32: the summed tile weights over the block (outer product of axes)."""
    weight = torch.ones((), dtype=torch.float32)
    for w, (lo, hi) in zip(sums, block.out, strict=True):
        weight = weight[..., None] * w[lo:hi]
    return weight


def _rows_of(blocks: Sequence[Block], ctx: Context) -> list[Block]:
    """This process's blocks: a contiguous run of rows along the first grid axis, so that a
    block's overhang comes from this process except on its first row."""
    rows = sorted({b.grid[0] for b in blocks})
    lo = len(rows) * ctx.rank // ctx.world
    hi = len(rows) * (ctx.rank + 1) // ctx.world
    mine = set(rows[lo:hi])
    return [b for b in blocks if b.grid[0] in mine]


def choose_block(
    plan: TilePlan,
    config: UNetConfig,
    dtype: np.dtype,
    probabilities: bool,
    batch: int,
    block: int | Sequence[int] | None = None,
    memory: int = BLOCK_MEMORY,
) -> tuple[tuple[int, ...], int]:
    """Block edges per axis and the tile batch, planned within ``memory`` bytes together.

    The batch is lowered (not below 1) until the network's estimate
    (:func:`unetkit.memory.predict_estimate`) is at most 3/4 of ``memory`` (the batch comes
    first: on CPU threads, 4 tiles of 96³ per call ran 1.5x faster than one; the block's size
    does not change the speed, every tile being computed once); the blocks are ``block``
    rounded to whole tile steps, or when ``None`` the largest whose
    :func:`unetkit.infer.block_plan.block_bytes` fit in what the batch leaves.
    """
    batch = max(1, min(int(batch), plan.num_tiles))
    while batch > 1 and predict_estimate(config, plan.tile_in, batch).total > memory * 3 // 4:
        batch -= 1
    if block is not None:
        return block_edges(plan, block), batch
    edges = block_steps(
        plan,
        max(0, memory - predict_estimate(config, plan.tile_in, batch).total),
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        itemsize=np.dtype(dtype).itemsize,
        probabilities=probabilities,
    )
    return edges, batch


def predict_blockwise(
    model: UNet,
    image: LazyImage,
    dest: str | Path,
    *,
    options: PredictOptions | None = None,
    normalization: Normalization | None = None,
    default_tile: int | Sequence[int] | None = None,
    block: int | Sequence[int] | None = None,
    memory: int = BLOCK_MEMORY,
    probabilities: bool = False,
    identity: Mapping[str, Any] | None = None,
    int8: Mapping[str, Any] | None = None,
    context: Context | None = None,
    on_block: Callable[[Block], None] | None = None,
    before_write: Callable[[], None] | None = None,
    class_of_channel: Sequence[int] | None = None,
) -> int:
    """Predict ``image`` into the Zarr store ``dest`` block by block (see the module doc).

    Args:
        model: the network; ``image``: the lazily read input ``(C, *spatial)``.
        dest: the output store; created, or resumed when an earlier run with the same
            ``identity`` left it unfinished (:class:`unetkit.infer.block_store.BlockStore`).
        options, normalization, default_tile, int8: as :func:`predict_array`.
        block: block edge(s) in output pixels, rounded to whole tile steps; ``None`` sizes
            blocks from ``memory`` (:func:`choose_block`).
        memory: bytes the tile batch and one block may plan to use together; the batch
            size of ``options`` is lowered to fit (:func:`choose_block`).
        probabilities: also write ``(K', *spatial)`` float32 probabilities.
        identity: what made the store (model digest, options); a store made otherwise is
            refused rather than mixed.
        context: this process's share (:func:`unetkit.infer.distributed.context`); alone if None.
        on_block: called after each block this process wrote.
        before_write: called (by the main process) once everything is checked, just before
            the store is created (the output folder records its name there).

    Returns:
        The number of blocks this process predicted (0 when the store was finished).

    Raises:
        DataError: the store exists with other settings or another shape, or the image's
            channels do not fit the model.
    """
    ctx = context or Context()
    opts = options or PredictOptions()
    cfg = model.config
    if image.shape[0] != cfg.in_channels:
        raise DataError(
            f"{image.path}: has {image.shape[0]} channel(s), the model expects {cfg.in_channels}"
        )
    spatial = image.spatial
    plan = plan_tiles(cfg, spatial, opts.tile, opts.overlap, default_tile)
    k = int(cfg.out_channels)
    edge, batch = choose_block(
        plan, cfg, image.dtype, probabilities, opts.batch_size, block, memory
    )
    blocks = plan_blocks(plan, edge)
    ident = dict(identity or {})
    ident.update(tile_in=list(plan.tile_in), block=list(block_edges(plan, edge)))
    path = Path(dest)
    exists = path.exists()
    ctx.barrier()  # every process has looked before the first one creates it
    if exists:
        store = BlockStore.resume(path, ident, spatial=spatial, probabilities=probabilities)
        resolved = norm_from_attrs(store.attrs["normalization"])
    else:
        resolved = resolve_normalization(normalization or Normalization(), image, blocks, ctx)
        if ctx.is_main:
            if before_write is not None:
                before_write()
            attrs = {
                "written_by": WRITTEN_BY,
                "identity": ident,
                "spatial": list(spatial),
                "normalization": norm_to_attrs(resolved),
            }
            BlockStore.create(
                path,
                spatial=spatial,
                chunks=block_edges(plan, edge),
                label_dtype=np.dtype(np.uint8 if k <= 256 else np.int32),
                num_blocks=len(blocks),
                probability_channels=(2 if k == 1 else k) if probabilities else None,
                attrs=attrs,
                scale=image.scale,
            )
        ctx.barrier()
        store = BlockStore.open(path, spatial=spatial, probabilities=probabilities)
    states = store.states()
    mine = [b for b in _rows_of(blocks, ctx) if states[b.index] != DONE]
    device = next(iter(model.parameters()), torch.empty(0)).device
    check_predict(cfg, plan.tile_in, batch, device=str(device))
    runner = inference_network(model, opts.precision, int8)
    transforms = tta_mod.transforms(cfg.spatial_dims, opts.tta, opts.tta_flips)

    def network(batch: Tensor) -> Tensor:
        return run_network(runner, batch.to(device), fast=False).cpu()

    sums = [torch.from_numpy(a.weight_sum()).float() for a in plan.axes]
    grid = {b.grid: b for b in blocks}
    first_row = min((b.grid[0] for b in mine), default=0)

    def finish(b: Block, part: Tensor) -> None:
        logits = carry_in(store, b, part, grid, first=True)
        if store.probabilities is not None:  # labels need no division (as in the in-memory
            logits /= _weights(sums, b)  # band: every class shares the weight)
        labels, probs = finalise(logits, store.probabilities is not None, class_of_channel)
        store.labels[b.region] = labels.astype(store.labels.dtype, copy=False)
        if probs is not None:
            store.probabilities[(slice(None), *b.region)] = probs
        store.mark(b.index)
        release(store, b)
        if on_block is not None:
            on_block(b)

    waiting = []
    for b in mine:
        if states[b.index] == WAITING:
            part = saved_part(store, b)
        else:
            window = resolved.apply(_read_window(image, plan, b))
            acc = accumulate(
                network,
                plan,
                b,
                window,
                out_channels=k,
                batch_size=batch,
                transforms=transforms,
            )
            del window
            part = carry_in(store, b, carry_out(store, b, acc).clone(), grid, first=False)
            del acc
        if ctx.world > 1 and b.grid[0] == first_row > 0:  # its overhang comes from another process
            if states[b.index] != WAITING:
                store.save(part_name(b), part.numpy())
                store.mark(b.index, WAITING)
            waiting.append(b)
            continue
        finish(b, part)
    ctx.barrier()  # every overhang is written
    for b in waiting:
        finish(b, saved_part(store, b))
    ctx.barrier()
    if ctx.is_main and store.finished().all():
        store.clear_scratch()
    return len(mine)
