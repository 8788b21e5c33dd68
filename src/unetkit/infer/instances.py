"""``predict_instances(model, image)``: one label per object from a model with an instance target.

The tiled predictor (:func:`unetkit.infer.predictor.predict_probabilities`) blends overlapping
tiles into the probabilities of the **whole** image first; the seeds + watershed post-processing
(:func:`unetkit.instances.instances_from_probabilities`) then runs once on that stitched array.
So an object cut by a tile border is never split into two ids: no tile ever labels anything.

A model whose metadata has no ``"instances"`` spec (:mod:`unetkit.instances.spec`) was trained
without an instance target and cannot separate touching objects: that is an error, unless the
caller asks for the fallback, connected components of the model's class map.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from unetkit.errors import UnetkitError
from unetkit.infer.predictor import predict_full
from unetkit.infer.tiling import TileSpec
from unetkit.instances import (
    InstanceParams,
    instances_from_class_map,
    instances_from_probabilities,
)
from unetkit.instances.spec import InstanceSpec
from unetkit.model import UNet
from unetkit.modelfile import load_with_metadata

Fallback = Literal["none", "components"]


@dataclass(frozen=True)
class InstancePrediction:
    """The result of :func:`predict_instances`.

    Attributes:
        labels: uint16/uint32 ``(*spatial)`` instance ids, 0 = background.
        class_map: int64 ``(*spatial)`` the dataset's classes (for the objects' class column).
        params: the post-processing parameters used (None for the components fallback).
    """

    labels: np.ndarray
    class_map: np.ndarray
    params: InstanceParams | None


def predict_instances(
    model: UNet | str | os.PathLike[str],
    image: np.ndarray,
    *,
    params: InstanceParams | None = None,
    fallback: Fallback = "none",
    tile: TileSpec = "auto",
    overlap: float = 0.5,
    tta: bool = False,
    batch_size: int = 4,
    metadata: Mapping[str, Any] | None = None,
    precision: str = "auto",
) -> InstancePrediction:
    """Instance label image of ``image`` ``(C_in, *spatial)`` or ``(*spatial)`` (module doc).

    Args:
        model: a :class:`UNet` (with ``metadata``) or a model file / run folder.
        params: override the post-processing parameters stored in the model.
        fallback: ``"components"`` to accept a model without an instance target and return the
            connected components of its class map (touching objects stay merged).
        tile, overlap, tta, batch_size, precision: as :func:`unetkit.infer.predict`.
        metadata: the model's metadata when ``model`` is a :class:`UNet`.

    Raises:
        UnetkitError: the model has no instance target and ``fallback`` is ``"none"``; more
            objects than a 32-bit label image holds.
    """
    if fallback not in ("none", "components"):
        raise ValueError(f"fallback must be 'none' or 'components', got {fallback!r}")
    if isinstance(model, str | os.PathLike):
        net, meta = load_with_metadata(model)
        source = str(model)
    elif isinstance(model, UNet):
        net, meta = model, dict(metadata or {})
        source = "the model"
    else:
        raise ValueError(f"model: expected a UNet or a model file path, got {type(model)}")
    spec = InstanceSpec.from_metadata(meta, source)
    if spec is None and fallback == "none":  # refuse before any compute
        raise UnetkitError(
            f"{source} was trained without an instance target, so it cannot separate "
            f"touching objects; train on data with instances/ to get one, or ask for the "
            f"connected components of its class map (fallback 'components')"
        )
    result = predict_full(
        net,
        image,
        tile=tile,
        overlap=overlap,
        tta=tta,
        batch_size=batch_size,
        metadata=meta,
        probabilities=spec is not None,
        precision=precision,
    )
    if spec is None:
        class_map = result.labels.astype(np.int64, copy=False)
        return InstancePrediction(instances_from_class_map(class_map), class_map, None)
    probs = result.probabilities
    if probs is None:  # pragma: no cover - requested above
        raise RuntimeError("probabilities were requested but not computed")
    use = spec.params if params is None else params
    labels = instances_from_probabilities(spec.boundary_probabilities(probs), use)
    return InstancePrediction(labels, spec.class_map(probs), use)
