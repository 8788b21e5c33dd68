"""The parts of a bioimage.io model description (spec 0.5) that follow from a unetkit model.

Plain data only (no ``bioimageio`` import): axes with parameterised sizes, the pre-processing the
model was trained with, and the numpy reference of that pre-processing, so the test tensors in a
package are computed exactly as a bioimage.io consumer (Fiji, napari, ilastik, Icy through
``bioimageio.core``) will compute them.

Axes follow the network's layout ``(batch, channel, *spatial)`` with space axes ``x`` (1D),
``y, x`` (2D) or ``z, y, x`` (3D). Sizes:

* ``same`` padding: ``min = step = downsample_factor``; the output has the input's size.
* ``valid`` padding: ``min`` the smallest valid input size, ``step`` the downsampling factor;
  the output axis refers to the input axis with ``offset = -2 * margin`` (the spec's way to
  document a halo that the model crops itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unetkit.errors import UnetkitError
from unetkit.infer.normalization import Normalization
from unetkit.model import UNet

INPUT_ID = "raw"
OUTPUT_ID = "logits"
EPS = 1e-6  # the spec's zero_mean_unit_variance epsilon: (x - mean) / (std + eps)


def space_axis_ids(spatial_dims: int) -> list[str]:
    """``x`` / ``y, x`` / ``z, y, x``: the spec's ids of the spatial axes, in array order."""
    return ["z", "y", "x"][3 - spatial_dims :]


def size_rule(model: UNet) -> tuple[int, int]:
    """``(min, step)`` of every spatial input axis (see the module doc).

    Raises:
        UnetkitError: valid sizes that do not follow one period (not seen for a U-Net).
    """
    c = model.config
    f = model.downsample_factor
    if c.padding == "same":
        return f, f
    sizes = model.valid_input_sizes(1, 8 * f + 1024)
    low = sizes[0]
    expected = list(range(low, sizes[-1] + 1, f))
    if sizes != expected:
        raise UnetkitError(
            f"bioimage.io export: valid input sizes {sizes[:4]}... are not min + n * {f}; they "
            f"cannot be written as a parameterised size"
        )
    return low, f


def _single(value: Any, channels: int, what: str) -> float:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != 1 and not np.all(arr == arr[0]):
        raise UnetkitError(
            f"bioimage.io export: the model's normalization clips each of its {channels} "
            f"channels at a different {what} ({arr.tolist()}); the spec's clip step takes one "
            f"value for all channels, so this pre-processing cannot be expressed. Export to "
            f"ONNX or TorchScript instead, or retrain with one clip range"
        )
    return float(arr[0])


def preprocessing(metadata: Mapping[str, Any], model: UNet) -> list[dict[str, Any]]:
    """The spec's pre-processing steps equal to the model's normalisation.

    ``clip`` (when set), then ``zero_mean_unit_variance`` over the spatial axes of each image
    (``per_image``) or ``fixed_zero_mean_unit_variance`` with the stored per-channel mean/std
    (``dataset``).

    Raises:
        UnetkitError: the normalisation has no equivalent in the spec (per-channel clip bounds).
    """
    c = model.config
    try:
        norm = Normalization.from_metadata(metadata.get("normalization"))
    except ValueError as exc:
        raise UnetkitError(f"bioimage.io export: the model's {exc}") from None
    steps: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if norm.clip is not None:
        lo = _single(norm.clip[0], c.in_channels, "lower bound")
        hi = _single(norm.clip[1], c.in_channels, "upper bound")
        steps.append({"id": "clip", "kwargs": {"min": lo, "max": hi}})
    if norm.mode == "per_image":
        axes = space_axis_ids(c.spatial_dims)
        steps.append({"id": "zero_mean_unit_variance", "kwargs": {"axes": axes, "eps": EPS}})
    else:
        mean = [float(v) for v in np.broadcast_to(norm.mean, (c.in_channels,))]
        std = [float(v) if v > 1e-8 else 1.0 for v in np.broadcast_to(norm.std, (c.in_channels,))]
        kwargs: dict[str, Any] = (
            {"mean": mean[0], "std": std[0]}
            if c.in_channels == 1
            else {"mean": mean, "std": std, "axis": "channel"}
        )
        steps.append({"id": "fixed_zero_mean_unit_variance", "kwargs": kwargs})
    return steps


def apply_preprocessing(steps: Sequence[Mapping[str, Any]], x: np.ndarray) -> np.ndarray:
    """The steps of :func:`preprocessing` on ``x: (B, C, *S)`` as the spec defines them."""
    out = x.astype(np.float32)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    for step in steps:
        kw = step.get("kwargs", {})
        if step["id"] == "clip":
            out = np.clip(out, kw["min"], kw["max"])
        elif step["id"] == "zero_mean_unit_variance":
            axes = tuple(range(2, x.ndim))
            mean = out.mean(axis=axes, keepdims=True)
            std = out.std(axis=axes, keepdims=True)
            out = (out - mean) / (std + kw["eps"])
        elif step["id"] == "fixed_zero_mean_unit_variance":
            mean = np.reshape(np.asarray(kw["mean"], np.float32), shape)
            std = np.reshape(np.asarray(kw["std"], np.float32), shape)
            out = (out - mean) / std
    return out.astype(np.float32)


def tensor_axes(model: UNet, class_names: Sequence[str] | None) -> tuple[list[Any], list[Any]]:
    """The input and output axes of the description (see the module doc)."""
    c = model.config
    low, step = size_rule(model)
    ids = space_axis_ids(c.spatial_dims)
    offset = 0
    if c.padding == "valid":
        offset = model.output_size((low,) * c.spatial_dims)[0] - low  # -2 * margin
    inputs: list[Any] = [
        {"type": "batch"},
        {"type": "channel", "channel_names": [f"channel{i}" for i in range(c.in_channels)]},
    ]
    inputs += [{"type": "space", "id": a, "size": {"min": low, "step": step}} for a in ids]
    k = c.out_channels
    names = list(class_names) if class_names and len(class_names) == k else None
    if names and not all(str(n).isidentifier() for n in names):
        names = None  # the spec's channel names are identifiers
    outputs: list[Any] = [
        {"type": "batch"},
        {"type": "channel", "channel_names": names or [f"class{i}" for i in range(k)]},
    ]
    for a in ids:
        size = {"tensor_id": INPUT_ID, "axis_id": a, "offset": offset}
        outputs.append({"type": "space", "id": a, "size": size})
    return inputs, outputs
