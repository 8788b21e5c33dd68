"""Out-of-core prediction: images larger than memory, read and written block by block.

The image (a :class:`unetkit.infer.lazy_image.LazyImage`: Zarr, OME-Zarr or a TIFF's Zarr
view) is tiled exactly as the in-memory path tiles it (:func:`unetkit.infer.tiling.plan_tiles`
over the **whole** image). The output is cut into **blocks** along that tile grid: a block's
edge is a whole number of tile steps, so blocks coincide with the output store's chunks. A
block is predicted from every tile of the global grid whose output touches it, reading only the
input window those tiles need (mirrored at the image's own borders, as in memory), and the
summed tile logits are divided by the global weight sums. Each output pixel therefore receives
the same tiles, weights and sums, in the same order, as in :func:`predict_array`: the labels
equal the in-memory result (valid-mode models stay seam-free, same-mode blending is unchanged),
while memory holds one block's input window and accumulator, never the image.

Per-image normalisation needs the image's mean and std first: one streaming pass over the
blocks (per-block statistics combined in block order, so every process count gives the same
numbers), stored with the output so a resumed run uses the very same values.

Under ``torchrun`` the processes share the blocks (:mod:`unetkit.infer.distributed`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unetkit.errors import DataError
from unetkit.infer import tta as tta_mod
from unetkit.infer.band import class_argmax
from unetkit.infer.block_store import WRITTEN_BY, BlockStore
from unetkit.infer.distributed import Context
from unetkit.infer.engine import inference_network, run_network
from unetkit.infer.lazy_image import LazyImage
from unetkit.infer.normalization import Normalization, ResolvedNormalization
from unetkit.infer.predictor import PredictOptions
from unetkit.infer.tiling import TilePlan, plan_tiles, reflect_indices
from unetkit.memory import check_predict
from unetkit.model import UNet

#: Default block edge (output pixels) per ``spatial_dims``; rounded to whole tile steps.
DEFAULT_BLOCK = {1: 1 << 20, 2: 4096, 3: 256}


@dataclass(frozen=True)
class Block:
    """One block of the output.

    Attributes:
        index: position in the row-major block order.
        out: ``[lo, hi)`` output range per spatial axis (the part this block writes).
        starts: per axis, the global tile starts whose output touches ``out``.
    """

    index: int
    out: tuple[tuple[int, int], ...]
    starts: tuple[tuple[int, ...], ...]

    @property
    def region(self) -> tuple[slice, ...]:
        """``out`` as slices."""
        return tuple(slice(lo, hi) for lo, hi in self.out)


def _axis_blocks(starts: Sequence[int], size: int, tile_out: int, edge: int) -> list[tuple]:
    if len(starts) == 1:
        return [((0, size), tuple(starts))]
    step = starts[1] - starts[0]
    per = max(1, edge // step)
    bounds = [starts[i] for i in range(0, len(starts), per)] + [size]
    out = []
    for lo, hi in itertools.pairwise(bounds):
        out.append(((lo, hi), tuple(s for s in starts if s < hi and s + tile_out > lo)))
    return out


def block_edges(plan: TilePlan, block: int | Sequence[int]) -> tuple[int, ...]:
    """The block (and chunk) edge per axis: whole tile steps, or the axis if one tile."""
    edges = [int(block)] * len(plan.axes) if isinstance(block, int) else [int(b) for b in block]
    out = []
    for a, e in zip(plan.axes, edges, strict=True):
        if len(a.starts) == 1:
            out.append(a.size)
        else:
            step = a.starts[1] - a.starts[0]
            out.append(min(max(1, e // step) * step, a.size))
    return tuple(out)


def plan_blocks(plan: TilePlan, block: int | Sequence[int]) -> list[Block]:
    """Cut the output of ``plan`` into blocks of about ``block`` pixels per axis (row-major)."""
    edges = [int(block)] * len(plan.axes) if isinstance(block, int) else [int(b) for b in block]
    if len(edges) != len(plan.axes) or any(e < 1 for e in edges):
        raise ValueError(f"block: expected positive sizes, one or one per axis, got {block!r}")
    per_axis = [
        _axis_blocks(a.starts, a.size, a.tile_out, e)
        for a, e in zip(plan.axes, edges, strict=True)
    ]
    blocks = []
    for i, combo in enumerate(itertools.product(*per_axis)):
        blocks.append(Block(i, tuple(c[0] for c in combo), tuple(c[1] for c in combo)))
    return blocks


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
    if class_of_channel is not None and logits.shape[0] > 1:
        labels = np.asarray(class_of_channel)[class_argmax(logits).numpy()]
        return labels, torch.softmax(logits, dim=0).numpy() if probabilities else None
    if logits.shape[0] == 1:
        labels = (logits[0] > 0).numpy()
        if not probabilities:
            return labels, None
        p = torch.sigmoid(logits[0]).numpy()
        return labels, np.stack([1.0 - p, p])
    labels = class_argmax(logits).numpy()
    return labels, torch.softmax(logits, dim=0).numpy() if probabilities else None


def _tile_slices(
    starts: Sequence[int], first: Sequence[int], plan: TilePlan, inputs: bool
) -> tuple[slice, ...]:
    """Where one tile's input (``inputs``) or output lies in its block's window."""
    return tuple(
        slice(s - f, s - f + (a.tile_in if inputs else a.tile_out))
        for s, f, a in zip(starts, first, plan.axes, strict=True)
    )


def predict_block(
    network: Callable[[Tensor], Tensor],
    plan: TilePlan,
    block: Block,
    window: np.ndarray,
    *,
    out_channels: int,
    batch_size: int,
    transforms: list[Any],
    sums: Sequence[Tensor],
) -> Tensor:
    """Averaged logits ``(K, *block_out)`` of ``block`` from its normalised input ``window``.

    ``window``: ``(C, *window)`` float32 from :func:`_read_window` after normalisation;
    ``sums``: per axis, the ``(N,)`` float32 sums of the tile weights over the whole image.
    """
    first = [min(s) for s in block.starts]
    ext = [max(s) - f + a.tile_out for s, f, a in zip(block.starts, first, plan.axes, strict=True)]
    acc = torch.zeros((out_channels, *ext), dtype=torch.float32)
    tiles = list(itertools.product(*block.starts))
    for i in range(0, len(tiles), batch_size):
        chunk = tiles[i : i + batch_size]
        x = np.stack([window[(slice(None), *_tile_slices(t, first, plan, True))] for t in chunk])
        # x: (B, C, *tile_in)
        y = tta_mod.averaged(network, torch.from_numpy(x), transforms).cpu()
        y = y * torch.from_numpy(plan.batch_weights(chunk))  # (B, K, *tile_out)
        for yi, t in zip(y, chunk, strict=True):
            acc[(slice(None), *_tile_slices(t, first, plan, False))] += yi
    keep = tuple(slice(lo - f, hi - f) for (lo, hi), f in zip(block.out, first, strict=True))
    weight = torch.ones((), dtype=torch.float32)
    w0 = sums[0][block.out[0][0] : block.out[0][1]]
    for w, (lo, hi) in zip(sums[1:], block.out[1:], strict=True):
        weight = weight[..., None] * w[lo:hi]
    weight = w0.reshape(-1, *([1] * (len(plan.axes) - 1))) * weight
    return acc[(slice(None), *keep)] / weight


def _block_stats(raw: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None) -> np.ndarray:
    """``(C, 3)`` float64 count, mean and sum of squared deviations of one block."""
    out = np.zeros((raw.shape[0], 3))
    for c in range(raw.shape[0]):
        v = raw[c].astype(np.float64).reshape(-1)
        if lo is not None and hi is not None:
            np.clip(v, lo[c], hi[c], out=v)
        m = float(v.mean())
        out[c] = (v.size, m, float(np.dot(v - m, v - m)))
    return out


def _combine(stats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Chan's parallel combination of per-block ``(C, 3)`` statistics -> mean, std."""
    n, mean, m2 = stats[0][:, 0].copy(), stats[0][:, 1].copy(), stats[0][:, 2].copy()
    for s in stats[1:]:
        nb, mb, m2b = s[:, 0], s[:, 1], s[:, 2]
        total = n + nb
        delta = mb - mean
        mean = mean + delta * nb / total
        m2 = m2 + m2b + delta * delta * n * nb / total
        n = total
    return mean, np.sqrt(m2 / n)


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
    mean, std = _combine([s for _, s in every])
    return dataclasses.replace(base, mean=mean, std=np.where(std > 1e-8, std, 1.0))


def _norm_to_attrs(n: ResolvedNormalization) -> dict[str, Any]:
    def listed(v: np.ndarray | None) -> list[float] | None:
        return None if v is None else [float(x) for x in v]

    return {"mean": listed(n.mean), "std": listed(n.std), "lo": listed(n.lo), "hi": listed(n.hi)}


def _norm_from_attrs(d: Mapping[str, Any]) -> ResolvedNormalization:
    def arr(v: Any) -> np.ndarray | None:
        return None if v is None else np.asarray(v, dtype=np.float64)

    return ResolvedNormalization(
        mean=arr(d["mean"]), std=arr(d["std"]), lo=arr(d.get("lo")), hi=arr(d.get("hi"))
    )


def predict_blockwise(
    model: UNet,
    image: LazyImage,
    dest: str | Path,
    *,
    options: PredictOptions | None = None,
    normalization: Normalization | None = None,
    default_tile: int | Sequence[int] | None = None,
    block: int | Sequence[int] | None = None,
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
        block: block edge(s) in output pixels, rounded to whole tile steps; ``None`` uses
            :data:`DEFAULT_BLOCK`.
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
    edge = block if block is not None else DEFAULT_BLOCK[cfg.spatial_dims]
    blocks = plan_blocks(plan, edge)
    k = int(cfg.out_channels)
    ident = dict(identity or {})
    ident.update(tile_in=list(plan.tile_in), block=list(block_edges(plan, edge)))
    path = Path(dest)
    exists = path.exists()
    ctx.barrier()  # every process has looked before the first one creates it
    if exists:
        store = BlockStore.open(path, spatial=spatial, probabilities=probabilities)
        if store.attrs.get("identity") != ident:
            raise DataError(
                f"{path}: was predicted with another model or other settings; use --overwrite "
                f"to replace it, or choose another output"
            )
        resolved = _norm_from_attrs(store.attrs["normalization"])
    else:
        resolved = resolve_normalization(normalization or Normalization(), image, blocks, ctx)
        if ctx.is_main:
            if before_write is not None:
                before_write()
            attrs = {
                "written_by": WRITTEN_BY,
                "identity": ident,
                "spatial": list(spatial),
                "normalization": _norm_to_attrs(resolved),
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
    done = store.finished()
    todo = [b for b in ctx.share(blocks) if not done[b.index]]
    device = next(iter(model.parameters()), torch.empty(0)).device
    check_predict(cfg, plan.tile_in, min(opts.batch_size, plan.num_tiles), device=str(device))
    runner = inference_network(model, opts.precision, int8)
    transforms = tta_mod.transforms(cfg.spatial_dims, opts.tta)

    def network(batch: Tensor) -> Tensor:
        return run_network(runner, batch.to(device), fast=False).cpu()

    sums = [torch.from_numpy(a.weight_sum()).float() for a in plan.axes]
    for b in todo:
        window = resolved.apply(_read_window(image, plan, b))
        logits = predict_block(
            network,
            plan,
            b,
            window,
            out_channels=k,
            batch_size=opts.batch_size,
            transforms=transforms,
            sums=sums,
        )
        labels, probs = finalise(logits, store.probabilities is not None, class_of_channel)
        store.labels[b.region] = labels.astype(store.labels.dtype, copy=False)
        if probs is not None:
            store.probabilities[(slice(None), *b.region)] = probs
        store.mark(b.index)
        if on_block is not None:
            on_block(b)
    ctx.barrier()
    return len(todo)

