"""Several small images of one size in one network call.

An image no larger than one tile is a single tile; predicting such images one by one runs the
network on batches of one, and per-call overheads dominate for small images (256² and below).
:func:`predict_batch` stacks the normalised single tiles of images of equal shape and runs them
``batch_size`` at a time. Each image keeps its own normalisation, and its tile is extracted
(mirrored where needed) exactly as :func:`unetkit.infer.predictor.predict_array` extracts it, and
a single tile's weights are all ones, so the labels equal the image-by-image result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unetkit.errors import DataError
from unetkit.infer import tta as tta_mod
from unetkit.infer.blockwise import finalise
from unetkit.infer.engine import inference_network, run_network
from unetkit.infer.normalization import Normalization
from unetkit.infer.predictor import (
    Prediction,
    PredictOptions,
    as_image,
    channel_classes,
    default_tile,
    extract_tile,
    predict_array,
    resolve_model,
)
from unetkit.infer.tiling import Overlap, TileSpec, plan_tiles
from unetkit.memory import check_predict
from unetkit.model import UNet


def single_tile(
    model: UNet, spatial: Sequence[int], options: PredictOptions, default_tile: Sequence[int]
) -> bool:
    """Whether an image of shape ``spatial`` is predicted as one tile."""
    plan = plan_tiles(model.config, spatial, options.tile, options.overlap, default_tile)
    return plan.num_tiles == 1


def predict_batch(
    model: UNet,
    images: Sequence[np.ndarray],
    *,
    options: PredictOptions,
    normalization: Normalization,
    default_tile: Sequence[int],
    keep_probabilities: bool = False,
    label_dtype: np.dtype | type = np.int64,
    int8: Mapping[str, Any] | None = None,
    class_of_channel: Sequence[int] | None = None,
) -> list[Prediction]:
    """Predict images of one shape, each a single tile: ``[(C, *S)] -> [Prediction]``.

    Raises:
        ValueError: shapes differ, or an image needs more than one tile (use
            :func:`predict_array`).
    """
    arrays = [as_image(model, im) for im in images]
    spatial = tuple(int(n) for n in arrays[0].shape[1:])
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError("images: predict_batch needs images of one shape")
    plan = plan_tiles(model.config, spatial, options.tile, options.overlap, default_tile)
    if plan.num_tiles != 1:
        raise ValueError(f"images: {spatial} needs {plan.num_tiles} tiles; use predict_array")
    origin = (0,) * len(spatial)
    device = next(iter(model.parameters()), torch.empty(0)).device
    check_predict(
        model.config, plan.tile_in, min(options.batch_size, len(arrays)), device=str(device)
    )
    runner = inference_network(model, options.precision, int8)
    transforms = tta_mod.transforms(model.config.spatial_dims, options.tta, options.tta_flips)

    def network(batch: Tensor) -> Tensor:
        return run_network(runner, batch, fast=False)

    keep = (slice(None), *(slice(0, n) for n in spatial))
    results: list[Prediction] = []
    for i in range(0, len(arrays), options.batch_size):
        chunk = arrays[i : i + options.batch_size]
        x = np.stack(
            [normalization.resolve(a).apply(extract_tile(a, plan, origin)) for a in chunk]
        )  # (B, C, *tile_in)
        y = tta_mod.averaged(network, torch.from_numpy(x).to(device), transforms).cpu()
        for yi in y:  # (K, *tile_out)
            labels, probs = finalise(yi[keep], keep_probabilities, class_of_channel)
            results.append(Prediction(labels.astype(label_dtype, copy=False), probs))
    return results


def predict_group(
    model: UNet,
    sources: Sequence[Path],
    images: Sequence[np.ndarray],
    *,
    options: PredictOptions,
    normalization: Normalization,
    tile_default: Sequence[int],
    probabilities: bool,
    label_dtype: type = np.int64,
    progress: bool = False,
    int8: Mapping[str, Any] | None = None,
    class_of_channel: Sequence[int] | None = None,
) -> list[Prediction]:
    """Predict decoded inputs; single-tile images of one shape share network calls
    (:func:`unetkit.infer.batched.predict_batch`), the others go one by one."""
    kw: dict[str, Any] = dict(
        options=options,
        normalization=normalization,
        default_tile=tile_default,
        keep_probabilities=probabilities,
        label_dtype=label_dtype,
        int8=int8,
        class_of_channel=class_of_channel,
    )
    out: dict[int, Prediction] = {}
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        try:
            if single_tile(model, im.shape[1:], options, tile_default):
                by_shape.setdefault(tuple(im.shape), []).append(i)
            else:
                out[i] = predict_array(model, im, progress=progress, **kw)
        except ValueError as exc:
            raise DataError(f"{sources[i]}: {exc}") from None
    for idx in by_shape.values():
        try:
            batch = predict_batch(model, [images[i] for i in idx], **kw)
        except ValueError as exc:
            raise DataError(f"{sources[idx[0]]}: {exc}") from None
        out.update(zip(idx, batch, strict=True))
    return [out[i] for i in range(len(images))]


def predict_images(
    model: UNet | str | os.PathLike[str],
    images: Sequence[np.ndarray],
    *,
    tile: TileSpec = "auto",
    overlap: Overlap = "auto",
    tta: bool = False,
    batch_size: int = 4,
    metadata: Mapping[str, Any] | None = None,
    precision: str = "auto",
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """Label maps of many images, ``[(C, *spatial)] -> [int64 (*spatial)]``, in input order.

    The same labels as :func:`unetkit.predict` image by image, faster for many small images:
    those of one shape that fit one tile share network calls of ``batch_size`` (the command
    line's path; per-call costs dominate a 256² image at batch 1). Larger images are tiled one
    by one. Arguments as :func:`unetkit.predict`; a model with a ``target_spacing`` needs each
    image's spacing, so predict those with :func:`unetkit.predict` and ``spacing``.

    Raises:
        DataError: an image that cannot be predicted, named by its index (``images[3]: ...``).
    """
    net, meta, options = resolve_model(
        model, metadata, device, tile=tile, overlap=overlap, tta=tta, batch_size=batch_size,
        precision=precision,
    )  # fmt: skip
    arrays = []
    for i, im in enumerate(images):
        try:
            arrays.append(as_image(net, im))
        except ValueError as exc:
            raise DataError(f"images[{i}]: {exc}") from None
    got = predict_group(
        net,
        [Path(f"images[{i}]") for i in range(len(arrays))],
        arrays,
        options=options,
        normalization=Normalization.from_metadata(meta.get("normalization")),
        tile_default=default_tile(net.config.spatial_dims, meta),
        probabilities=False,
        int8=meta.get("int8"),
        class_of_channel=channel_classes(meta),
    )
    return [p.labels for p in got]
