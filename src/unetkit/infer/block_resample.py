"""Block-wise prediction at the model's target spacing, labels on the input's own grid.

The in-memory path (:mod:`unetkit.infer.spacing`) does, for an image at spacing ``s``::

    image (C, *S) -> linear -> (C, *S') at target -> network -> probabilities (K, *S')
    -> linear -> (K, *S) -> argmax -> labels (*S)

Out of core, the same three steps run block by block, and stay seam-free because linear
interpolation is local (:func:`zoom_window` reads each output region's input window, one voxel
beyond it where the interpolation needs it, and gives what :func:`zoom_to` gives over the whole
array):

1. :class:`ResampledImage` shows the image at the target spacing as a lazy image (each read is
   resampled from its source window), and :func:`unetkit.infer.blockwise.predict_blockwise`
   predicts it with probabilities into a store under the output's ``scratch/`` folder;
2. blocks of the input grid read their window of those probabilities, bring it back linearly
   and take the argmax (:func:`unetkit.infer.resampled.labels_of`).

Both steps resume (the first is a block store itself; the second records its blocks), both are
shared among ``torchrun`` processes, and the scratch store is removed once every block is
written.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.infer.block_store import SCRATCH, WRITTEN_BY, BlockStore
from unetkit.infer.blockwise import predict_blockwise
from unetkit.infer.distributed import Context
from unetkit.infer.lazy_image import LazyImage, _zarr
from unetkit.infer.normalization import Normalization
from unetkit.infer.predictor import PredictOptions
from unetkit.infer.resampled import labels_of
from unetkit.model import UNet
from unetkit.train.resample import resampled_shape

#: Bytes one block of the way back (step 2) may plan to use.
BACK_MEMORY = 128 * 2**20


def _axis_window(lo: int, hi: int, n: int, m: int) -> tuple[int, int, float, float]:
    """Output ``[lo, hi)`` of an axis resampled from ``n`` to ``m`` voxels (as
    :func:`zoom_to`): the input window ``[a, b)`` it reads, the scale and the window's
    offset."""
    scale = n / m
    offset = (scale - 1.0) / 2.0
    first, last = lo * scale + offset, (hi - 1) * scale + offset
    a = min(n - 1, max(0, math.floor(first)))
    b = min(n, max(a + 1, math.floor(last) + 2))
    return a, b, scale, offset + lo * scale - a


def zoom_window(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    source: Sequence[int],
    shape: Sequence[int],
    region: Sequence[slice],
) -> np.ndarray:
    """``region`` of an array ``(C, *source)`` resampled linearly to ``(C, *shape)``:
    ``(C, *region)`` float32, reading only the window it needs through ``read``."""
    from scipy.ndimage import affine_transform

    parts = [
        _axis_window(r.start, r.stop, n, m) for r, n, m in zip(region, source, shape, strict=True)
    ]
    raw = np.asarray(read(tuple(slice(a, b) for a, b, _s, _o in parts)), dtype=np.float32)
    out_shape = tuple(r.stop - r.start for r in region)
    scale = np.asarray([p[2] for p in parts])
    offset = np.asarray([p[3] for p in parts])
    return np.stack(
        [
            affine_transform(c, scale, offset=offset, output_shape=out_shape, order=1,
                             mode="nearest")
            for c in raw
        ]
    )  # fmt: skip


@dataclass
class ResampledImage:
    """A lazy image seen at another grid ``spatial`` (linear, corners aligned), float32."""

    source: LazyImage
    target_shape: tuple[int, ...]
    scale: tuple[float, ...] | None

    @property
    def path(self) -> Path:
        """The source's path (for messages)."""
        return self.source.path

    @property
    def shape(self) -> tuple[int, ...]:
        """``(C, *target_shape)``."""
        return (self.source.shape[0], *self.target_shape)

    @property
    def spatial(self) -> tuple[int, ...]:
        """The spatial shape at the target grid."""
        return self.target_shape

    @property
    def dtype(self) -> np.dtype:
        """float32: interpolated values."""
        return np.dtype(np.float32)

    def read(self, region: Sequence[slice]) -> np.ndarray:
        """``(C, *region)`` float32 at the target grid."""
        return zoom_window(self.source.read, self.source.spatial, self.target_shape, region)


def _back_edges(spatial: Sequence[int], channels: int, zoom: float) -> tuple[int, ...]:
    """Blocks of the way back: equal edges whose probabilities (both grids) fit
    :data:`BACK_MEMORY`."""
    per_voxel = channels * 4 * (2 + zoom) + 16
    edge = max(1, int((BACK_MEMORY / per_voxel) ** (1.0 / len(spatial))))
    return tuple(min(n, edge) for n in spatial)


def predict_blockwise_at_spacing(
    model: UNet,
    image: LazyImage,
    dest: str | Path,
    *,
    spacing: Sequence[float],
    target: Sequence[float],
    options: PredictOptions | None = None,
    normalization: Normalization | None = None,
    default_tile: int | Sequence[int] | None = None,
    block: int | Sequence[int] | None = None,
    probabilities: bool = False,
    identity: Mapping[str, Any] | None = None,
    int8: Mapping[str, Any] | None = None,
    context: Context | None = None,
    before_write: Callable[[], None] | None = None,
    class_of_channel: Sequence[int] | None = None,
) -> int:
    """Predict ``image`` (at ``spacing``) at the model's ``target`` spacing into the store
    ``dest``, labels (and probabilities) on the image's grid (module doc). Arguments as
    :func:`unetkit.infer.blockwise.predict_blockwise`; returns the number of blocks of the
    way back this process wrote."""
    ctx = context or Context()
    spatial = image.spatial
    at_target = resampled_shape(spatial, spacing, target)
    k = int(model.config.out_channels)
    kp = 2 if k == 1 else k
    zoom = math.prod(m / n for m, n in zip(at_target, spatial, strict=True))
    edges = _back_edges(spatial, kp, zoom)
    ranges = [
        [(lo, min(n, lo + e)) for lo in range(0, n, e)] for n, e in zip(spatial, edges, strict=True)
    ]
    regions = [tuple(slice(a, b) for a, b in r) for r in itertools.product(*ranges)]
    ident = {
        **dict(identity or {}),
        "spacing": [float(v) for v in spacing],
        "target_spacing": [float(v) for v in target],
        "back_block": list(edges),
    }
    path = Path(dest)
    exists = path.exists()
    ctx.barrier()
    if exists:
        store = BlockStore.resume(path, ident, spatial=spatial, probabilities=probabilities)
    else:
        if ctx.is_main:
            if before_write is not None:
                before_write()
            BlockStore.create(
                path,
                spatial=spatial,
                chunks=edges,
                label_dtype=np.dtype(np.uint8 if k <= 256 else np.int32),
                num_blocks=len(regions),
                probability_channels=kp if probabilities else None,
                attrs={"written_by": WRITTEN_BY, "identity": ident, "spatial": list(spatial)},
                scale=image.scale,
            )
        ctx.barrier()
        store = BlockStore.open(path, spatial=spatial, probabilities=probabilities)
    done = store.finished()
    if done.all():
        return 0
    inner = path / SCRATCH / "at_target.zarr"
    view = ResampledImage(image, at_target, tuple(float(v) for v in target))
    predict_blockwise(
        model,
        view,  # type: ignore[arg-type]
        inner,
        options=options,
        normalization=normalization,
        default_tile=default_tile,
        block=block,
        probabilities=True,
        identity=ident,
        int8=int8,
        context=ctx,
        class_of_channel=class_of_channel,
    )
    probs_t = _zarr().open_group(str(inner), mode="r")["probabilities"]
    todo = [i for i in ctx.share(list(range(len(regions)))) if not done[i]]
    for i in todo:
        region = regions[i]
        back = zoom_window(
            lambda r: probs_t[(slice(None), *r)], at_target, spatial, region
        )  # (K', *region) on the input's grid
        store.labels[region] = labels_of(back, class_of_channel, store.labels.dtype)
        if store.probabilities is not None:
            store.probabilities[(slice(None), *region)] = back
        store.mark(i)
    ctx.barrier()
    if ctx.is_main and store.finished().all():
        store.clear_scratch()
    return len(todo)
