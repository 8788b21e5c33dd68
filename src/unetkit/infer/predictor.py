"""Tiled prediction of a NumPy image in bounded memory.

The image is cut into the tiles of :func:`unetkit.infer.tiling.plan_tiles`, tiles are
normalised, batched, run through :func:`unetkit.infer.engine.run_network` (averaged over the
test-time transforms when ``tta`` is on), weighted and added into a **band** accumulator that
spans one row of tiles along the first spatial axis: ``(K, O_0, *N_rest)`` float32. When a row of
tiles is done, the leading part of the band that no later tile touches is finalised (divided by
the summed weights, turned into labels and, on request, probabilities) and the band moves on.
Memory is therefore the input image, the outputs, one band and one batch of tiles; an
8192x8192 grey image with a 2-class model needs well under 2 GB.

Labels come from the averaged logits: ``argmax`` over classes, or ``logit > 0`` for a
single-channel (sigmoid) model, whose probabilities are returned as two classes
``[1 - p, p]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unetkit import precision as policy
from unetkit.errors import UnetkitError
from unetkit.infer import tta as tta_mod
from unetkit.infer.band import Band
from unetkit.infer.engine import PRECISIONS, inference_network, run_network
from unetkit.infer.normalization import Normalization
from unetkit.infer.resampled import checked_spacing, labels_of, model_target_spacing, run_at_spacing
from unetkit.infer.tiling import (
    DEFAULT_TILE,
    Overlap,
    TilePlan,
    TileSpec,
    check_overlap,
    plan_tiles,
)
from unetkit.memory import check_predict
from unetkit.model import UNet


@dataclass(frozen=True)
class Prediction:
    """The result of :func:`predict_full`.

    Attributes:
        labels: ``(*spatial)`` integer class labels (dtype as requested, int64 by default).
        probabilities: ``(num_classes, *spatial)`` float32 class probabilities, or ``None``
            when not requested.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None = None


@dataclass(frozen=True)
class PredictOptions:
    """How to predict; the defaults suit most images.

    Attributes:
        tile: tile input edge(s), ``"auto"`` (the larger of :data:`DEFAULT_TILE` and the
            model's training ``patch_size``) or ``"whole"`` (no tiling).
        overlap: same-mode tiles: ``"auto"`` overlaps them by the model's context and takes
            each pixel from the tile where it has all of it (equal to whole-image inference,
            :mod:`unetkit.infer.tiling`); a fraction in ``[0, 1)`` shares that much of a tile
            with each neighbour, blended with Gaussian weights.
        tta: average over flips (and 90-degree rotations in 2D), see :mod:`unetkit.infer.tta`.
        tta_flips: the symmetries ``tta`` averages over, ``"all"`` or ``"last_axis"`` (the
            left-right mirror only); ``None``: those the model was trained with (its metadata's
            ``flips``, :func:`unetkit.infer.tta.model_flips`), ``"all"`` where nothing says.
        batch_size: tiles per network call.
        precision: ``"auto"`` (int8 where the model's stored calibration agrees with fp32 and
            the CPU has VNNI, else the fastest float path), ``"fp32"``, ``"bf16"`` or
            ``"int8"``; see :func:`unetkit.infer.engine.inference_network`.
    """

    tile: TileSpec = "auto"
    overlap: Overlap = "auto"
    tta: bool = False
    batch_size: int = 4
    precision: str = "auto"
    tta_flips: str | None = None

    def __post_init__(self) -> None:
        if self.tta_flips not in (None, "all", "last_axis"):
            raise ValueError(f"tta_flips: expected 'all' or 'last_axis', got {self.tta_flips!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size!r}")
        check_overlap(self.overlap)


def default_tile(spatial_dims: int, metadata: Mapping[str, Any] | None) -> list[int]:
    """The ``"auto"`` tile: :data:`DEFAULT_TILE`, or the training patch size where larger."""
    base = [DEFAULT_TILE[spatial_dims]] * spatial_dims
    patch = (metadata or {}).get("patch_size")
    if isinstance(patch, Sequence) and len(patch) == spatial_dims:
        return [max(b, int(p)) for b, p in zip(base, patch, strict=True)]
    return base


def as_image(model: UNet, image: np.ndarray) -> np.ndarray:
    """Check ``image`` against the model; return it as ``(C, *spatial)`` (a view if possible).

    A single-channel image may omit its channel axis (``(*spatial)``).
    """
    c = model.config
    arr = np.asarray(image)
    if arr.ndim == c.spatial_dims and c.in_channels == 1:
        arr = arr[None]
    if arr.ndim != c.spatial_dims + 1:
        raise ValueError(
            f"image: a {c.spatial_dims}D model with {c.in_channels} input channel(s) expects "
            f"(C, *spatial) with {c.spatial_dims} spatial axes, got shape {arr.shape}"
        )
    if arr.shape[0] != c.in_channels:
        raise ValueError(
            f"image: has {arr.shape[0]} channel(s) on axis 0, the model expects {c.in_channels}"
        )
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"image: expected numeric values, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"image: is empty, shape {arr.shape}")
    return arr


def extract_tile(image: np.ndarray, plan: TilePlan, starts: Sequence[int]) -> np.ndarray:
    """The input window of one tile, ``(C, *tile_in)``, mirrored where it leaves the image."""
    idx = [a.input_indices(s) for a, s in zip(plan.axes, starts, strict=True)]
    if all(isinstance(i, slice) for i in idx):
        return image[(slice(None), *idx)]
    arrays = [np.arange(i.start, i.stop) if isinstance(i, slice) else i for i in idx]
    return image[np.ix_(np.arange(image.shape[0]), *arrays)]


def predict_array(
    model: UNet,
    image: np.ndarray,
    *,
    options: PredictOptions | None = None,
    normalization: Normalization | None = None,
    default_tile: int | Sequence[int] | None = None,
    keep_probabilities: bool = False,
    label_dtype: np.dtype | type = np.int64,
    progress: bool = False,
    int8: Mapping[str, Any] | None = None,
    class_of_channel: Sequence[int] | None = None,
) -> Prediction:
    """Predict one image with tiles, in bounded memory (see the module doc).

    Args:
        model: a :class:`UNet` (put in eval mode for the call, its state restored after).
        image: ``(C, *spatial)`` raw intensities (or ``(*spatial)`` for one channel).
        options: tiling, overlap, TTA and batch size.
        normalization: how raw values are normalised; ``None`` is per-image z-score.
        default_tile: the edge(s) ``tile="auto"`` uses; ``None`` uses :data:`DEFAULT_TILE`.
        keep_probabilities: also return ``(num_classes, *spatial)`` float32 probabilities.
        label_dtype: dtype of the label map (``np.uint8`` saves memory for huge images).
        progress: show a progress bar over tiles (on stderr).
        int8: the model's int8 calibration (``metadata["int8"]``), used per
            ``options.precision``.
        class_of_channel: the class of each output channel, for a model with more output
            channels than classes (an instance target: :func:`channel_classes`); the labels are
            then ``class_of_channel[argmax]``. ``None``: the argmax itself.

    Returns:
        :class:`Prediction` with ``labels (*spatial)`` and optional probabilities.
    """
    opts = options or PredictOptions()
    arr = as_image(model, image)
    spatial = tuple(int(n) for n in arr.shape[1:])
    plan = plan_tiles(model.config, spatial, opts.tile, opts.overlap, default_tile)
    norm = (normalization or Normalization()).resolve(arr)
    k = int(model.config.out_channels)
    labels = np.empty(spatial, dtype=label_dtype)
    probabilities = (
        np.empty((2 if k == 1 else k, *spatial), dtype=np.float32) if keep_probabilities else None
    )
    band = Band(plan, k, labels, probabilities, class_of_channel)
    transforms = tta_mod.transforms(model.config.spatial_dims, opts.tta, opts.tta_flips)
    device = next(iter(model.parameters()), torch.empty(0)).device
    row_starts = plan.axes[0].starts
    # guard: refuse a tile batch that would not fit in memory, before allocating it
    check_predict(
        model.config, plan.tile_in, min(opts.batch_size, plan.num_tiles), device=str(device)
    )

    runner = inference_network(model, opts.precision, int8)

    def network(batch: Tensor) -> Tensor:
        try:
            return run_network(runner, batch, fast=False)
        except torch.OutOfMemoryError:
            raise UnetkitError(
                f"out of memory on {device} running {batch.shape[0]} tile(s) of "
                f"{'x'.join(map(str, plan.tile_in))}; lower --batch-size or --tile (or use "
                f"--device cpu)"
            ) from None

    from tqdm.auto import tqdm

    with tqdm(
        total=plan.num_tiles, disable=not progress, unit="tile", leave=False, desc="tiles"
    ) as bar:
        for r, (_row, tiles) in enumerate(plan.rows()):
            for i in range(0, len(tiles), opts.batch_size):
                chunk = tiles[i : i + opts.batch_size]
                x = np.stack([extract_tile(arr, plan, t) for t in chunk])  # (B, C, *tile_in)
                x = norm.apply(x, channel_axis=1)
                y = tta_mod.averaged(network, torch.from_numpy(x).to(device), transforms)
                y = y.cpu() * torch.from_numpy(plan.batch_weights(chunk))  # (B, K, *tile_out)
                for yi, t in zip(y, chunk, strict=True):
                    band.add(yi, t)
                bar.update(len(chunk))
            nxt = row_starts[r + 1] if r + 1 < len(row_starts) else spatial[0]
            band.finish_rows(nxt)
    return Prediction(labels=labels, probabilities=probabilities)


def channel_classes(metadata: Mapping[str, Any] | None) -> tuple[int, ...] | None:
    """The dataset class of each output channel stored with a model trained on an instance
    target (``metadata["instances"]["class_of_channel"]``), else ``None`` (argmax = class)."""
    spec = (metadata or {}).get("instances")
    if not isinstance(spec, Mapping) or spec.get("class_of_channel") is None:
        return None
    return tuple(int(c) for c in spec["class_of_channel"])


def resolve_model(
    model: UNet | str | os.PathLike[str],
    metadata: Mapping[str, Any] | None,
    device: str | torch.device | None = None,
    **options: Any,
) -> tuple[UNet, Mapping[str, Any], PredictOptions]:
    """The network (on ``device``: :func:`unetkit.precision.on_device`), its metadata, and the
    :class:`PredictOptions` of ``options`` with TTA over the model's own symmetries."""
    if isinstance(model, str | os.PathLike):
        from unetkit.modelfile import load_with_metadata

        loaded, extra = load_with_metadata(Path(model))
        net, meta = policy.on_device(loaded, device), metadata if metadata is not None else extra
    elif isinstance(model, UNet):
        net, meta = policy.on_device(model, device, copy=True), metadata or {}
    else:
        raise ValueError(f"model: expected a UNet or a model file path, got {type(model).__name__}")
    return net, meta, PredictOptions(**options, tta_flips=tta_mod.model_flips(meta))


def predict_full(
    model: UNet | str | os.PathLike[str],
    image: np.ndarray,
    *,
    tile: TileSpec = "auto",
    overlap: Overlap = "auto",
    tta: bool = False,
    batch_size: int = 4,
    metadata: Mapping[str, Any] | None = None,
    probabilities: bool = True,
    progress: bool = False,
    precision: str = "auto",
    device: str | torch.device | None = None,
    spacing: Sequence[float] | None = None,
) -> Prediction:
    """Labels and probabilities of one image; see :func:`predict` for the arguments."""
    net, meta, options = resolve_model(
        model, metadata, device, tile=tile, overlap=overlap, tta=tta, batch_size=batch_size,
        precision=precision,
    )  # fmt: skip
    classes = channel_classes(meta)

    def run(x: np.ndarray, keep: bool) -> Prediction:
        return predict_array(
            net,
            x,
            int8=meta.get("int8"),
            options=options,
            normalization=Normalization.from_metadata(meta.get("normalization")),
            default_tile=default_tile(net.config.spatial_dims, meta),
            keep_probabilities=keep,
            progress=progress,
            class_of_channel=classes,
        )

    sp = checked_spacing(spacing, net.config.spatial_dims)
    target = model_target_spacing(meta)
    if sp is None or target is None:
        return run(image, probabilities)
    x = as_image(net, image)
    label_dtype: list[Any] = []

    def probs_at_target(small: np.ndarray) -> np.ndarray:
        got = run(small, True)
        label_dtype.append(got.labels.dtype)
        return got.probabilities  # type: ignore[return-value]

    back = run_at_spacing(probs_at_target, x, sp, target)  # (K, *S) on the input's grid
    if back is None:
        return run(image, probabilities)
    labels = labels_of(back, classes, label_dtype[0])
    return Prediction(labels=labels, probabilities=back if probabilities else None)


def predict(
    model: UNet | str | os.PathLike[str],
    image: np.ndarray,
    *,
    tile: TileSpec = "auto",
    overlap: Overlap = "auto",
    tta: bool = False,
    batch_size: int = 4,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
    precision: str = "auto",
    device: str | torch.device | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Label map of one image: ``(C, *spatial)`` or ``(*spatial)`` -> int64 ``(*spatial)``.

    Args:
        model: a :class:`UNet`, or the path of a model file or run folder (its metadata is
            then used for normalisation and the default tile).
        image: raw intensities, any size (smaller than a tile, odd sizes, huge images).
        tile: tile input edge(s), ``"auto"`` or ``"whole"`` (one pass, no tiling).
        overlap: same-mode tiles: ``"auto"`` (overlap by the model's context, equal to
            whole-image inference) or a fraction blended with Gaussian weights (valid mode
            tiles are seam-free without it).
        tta: test-time augmentation by flips (and 90-degree rotations in 2D).
        batch_size: tiles per network call.
        metadata: a trained model's metadata (``load_with_metadata``); its ``normalization``
            is applied. ``None`` with a UNet object means per-image z-score normalisation.
        progress: show a progress bar over tiles.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"`` (see
            :class:`PredictOptions`); int8 needs the calibration in the model's metadata.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. ``None``: a model file runs
            on ``auto`` (a GPU when present), a :class:`UNet` where its weights are.
        spacing: the image's voxel spacing, one number per spatial axis; a model trained at a
            ``target_spacing`` then predicts it resampled there, and the labels (and
            probabilities) come back on the image's own grid (:mod:`unetkit.infer.resampled`).

    Use :func:`predict_probabilities` for class probabilities, or :func:`predict_full` for both.
    """
    return predict_full(
        model,
        image,
        tile=tile,
        overlap=overlap,
        tta=tta,
        batch_size=batch_size,
        metadata=metadata,
        probabilities=False,
        progress=progress,
        precision=precision,
        device=device,
        spacing=spacing,
    ).labels


def predict_probabilities(
    model: UNet | str | os.PathLike[str],
    image: np.ndarray,
    *,
    tile: TileSpec = "auto",
    overlap: Overlap = "auto",
    tta: bool = False,
    batch_size: int = 4,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
    precision: str = "auto",
    device: str | torch.device | None = None,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Class probabilities ``(num_classes, *spatial)`` float32; arguments as :func:`predict`."""
    result = predict_full(
        model,
        image,
        tile=tile,
        overlap=overlap,
        tta=tta,
        batch_size=batch_size,
        metadata=metadata,
        probabilities=True,
        progress=progress,
        precision=precision,
        device=device,
        spacing=spacing,
    )
    if result.probabilities is None:  # pragma: no cover - requested above
        raise RuntimeError("probabilities were requested but not computed")
    return result.probabilities
