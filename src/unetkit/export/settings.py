"""The JSON written beside an export: what the exported network expects and how to tile.

A user of the ONNX/TorchScript file (without unetkit) needs: the input layout and allowed
sizes, the intensity normalisation, how logits become labels, and the tiling that reproduces
``unetkit predict``. Keys::

    {"format", "file", "unetkit_version", "model_config",
     "input": {"name", "layout", "dtype", "channels", "spatial_dims", "dynamic_batch",
               "dynamic_spatial", "spatial_multiple" | "fixed_spatial_size"},
     "output": {"name", "layout", "num_classes", "activation", "labels", "spatial_size"},
     "normalization": {"mode", "mean", "std", "clip", "formula"},
     "tiling": {"padding", "tile_input", "tile_output", "margin", "step_multiple",
                "overlap", "blending", "outside_image"},
     "classes": {"class_names", "ignore_index"}}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from unetkit.infer.normalization import Normalization
from unetkit.infer.predictor import default_tile
from unetkit.infer.tiling import GAUSSIAN_SIGMA_SCALE, plan_tiles, valid_margin
from unetkit.model import UNet


def input_size_for_export(
    model: UNet, metadata: Mapping[str, Any], requested: int | Sequence[int] | None
) -> tuple[int, ...]:
    """Spatial size traced into the export: the inference tile, made a size the model takes.

    Same mode: rounded down to a multiple of ``downsample_factor`` (at least one multiple).
    Valid mode: the nearest valid input size at or below (at least the smallest useful one).
    """
    c = model.config
    d = c.spatial_dims
    if requested is None:
        sizes = default_tile(d, metadata)
    elif isinstance(requested, int):
        sizes = [requested] * d
    else:
        sizes = [int(s) for s in requested]
        if len(sizes) == 1:
            sizes *= d
    if len(sizes) != d or any(s < 1 for s in sizes):
        raise ValueError(f"input size: expected 1 or {d} positive sizes, got {requested!r}")
    if c.padding == "same":
        factors = c.downsample_factors
        return tuple(max(f, s // f * f) for s, f in zip(sizes, factors, strict=True))
    plan = plan_tiles(c, [10 * s for s in sizes], list(sizes))
    return plan.tile_in


def inference_settings(
    model: UNet,
    metadata: Mapping[str, Any],
    fmt: str,
    filename: str,
    size: Sequence[int],
) -> dict[str, Any]:
    """The settings JSON for an export traced at spatial ``size`` (see the module doc)."""
    from unetkit.version import __version__

    c = model.config
    # one number for isotropic models (as before), one per spatial axis with ``strides``
    f: int | list[int] = (
        list(c.downsample_factors) if c.strides is not None else c.downsample_factor
    )
    norm = Normalization.from_metadata(metadata.get("normalization"))
    valid = c.padding == "valid"
    out_size = list(model.output_size(tuple(size)))
    k = c.out_channels
    input_spec: dict[str, Any] = {
        "name": "image",
        "layout": "(batch, channels, *spatial)",
        "dtype": "float32",
        "channels": c.in_channels,
        "spatial_dims": c.spatial_dims,
        "dynamic_batch": True,
        "dynamic_spatial": not valid,
    }
    if valid:
        input_spec["fixed_spatial_size"] = list(size)
    else:
        input_spec["spatial_multiple"] = f
        input_spec["note"] = (
            f"every spatial size must be a multiple of {f}; pad other sizes at their far end "
            f"(reflect) and crop the output back"
        )
    return {
        "format": fmt,
        "file": filename,
        "unetkit_version": __version__,
        "model_config": dataclasses.asdict(c),
        "input": input_spec,
        "output": {
            "name": "logits",
            "layout": "(batch, classes, *spatial)",
            "num_classes": 2 if k == 1 else k,
            "activation": "sigmoid" if k == 1 else "softmax over axis 1",
            "labels": "logits > 0" if k == 1 else "argmax over axis 1",
            "spatial_size": out_size if valid else "same as input",
        },
        "normalization": {
            **norm.to_dict(),
            "formula": "clip to [clip[0], clip[1]] if set, then (x - mean) / std per channel; "
            "per_image mode uses the image's own mean and std (std <= 1e-8 taken as 1)",
        },
        "tiling": {
            "padding": c.padding,
            "tile_input": list(size),
            "tile_output": out_size,
            "margin": (
                [valid_margin(c, a) for a in range(c.spatial_dims)]
                if valid and c.anisotropic
                else valid_margin(c)
                if valid
                else 0
            ),
            "step_multiple": f,
            "overlap": 0.0 if valid else 0.5,
            "blending": (
                "none: overlap-tile, output tiles abut (starts at multiples of step_multiple)"
                if valid
                else f"gaussian per axis, sigma = {GAUSSIAN_SIGMA_SCALE:g} * tile, peak 1; "
                "tile starts at multiples of step_multiple"
            ),
            "outside_image": "mirror (reflect, edge not repeated)",
        },
        "classes": {
            "class_names": metadata.get("class_names"),
            "ignore_index": metadata.get("ignore_index"),
        },
    }
