"""One ``spatial_dims`` integer to layer classes, by plain dictionaries; norm/act resolvers.

This is the only place that knows ``Conv1d``/``Conv2d``/``Conv3d`` apart; everything else in the
model takes ``spatial_dims`` and asks here.
"""

from __future__ import annotations

import math

from torch import nn

from unetkit.model.config import LayerSpec, spec_kwargs, spec_name

CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_T: dict[int, type[nn.Module]] = {
    1: nn.ConvTranspose1d,
    2: nn.ConvTranspose2d,
    3: nn.ConvTranspose3d,
}
MAXPOOL: dict[int, type[nn.Module]] = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVGPOOL: dict[int, type[nn.Module]] = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
DROPOUT: dict[int, type[nn.Module]] = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
BATCHNORM: dict[int, type[nn.Module]] = {
    1: nn.BatchNorm1d,
    2: nn.BatchNorm2d,
    3: nn.BatchNorm3d,
}
INSTANCENORM: dict[int, type[nn.Module]] = {
    1: nn.InstanceNorm1d,
    2: nn.InstanceNorm2d,
    3: nn.InstanceNorm3d,
}
INTERP_MODE: dict[int, str] = {1: "linear", 2: "bilinear", 3: "trilinear"}


def conv(
    spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, **kwargs: object
) -> nn.Module:
    """A ``Conv{d}d``; ``x: (B, in_channels, *S) -> (B, out_channels, *S')``."""
    return CONV[spatial_dims](in_channels, out_channels, kernel_size, **kwargs)


def norm(spec: LayerSpec, spatial_dims: int, channels: int) -> nn.Module:
    """The normalisation layer for ``spec`` over ``channels``; ``nn.Identity`` for ``"none"``.

    Group norm uses ``groups`` (default 8) reduced to the largest divisor of ``channels``.
    Instance norm is affine, as in nnU-Net.
    """
    name, kwargs = spec_name(spec), spec_kwargs(spec)
    if name == "none":
        return nn.Identity()
    if name == "batch":
        return BATCHNORM[spatial_dims](channels, **kwargs)
    if name == "instance":
        kwargs.setdefault("affine", True)
        return INSTANCENORM[spatial_dims](channels, **kwargs)
    if name == "group":
        groups = int(kwargs.pop("groups", 8))
        groups = math.gcd(groups, channels) or 1
        return nn.GroupNorm(groups, channels, **kwargs)
    raise ValueError(f"norm: unknown type {name!r}")


def act(spec: LayerSpec, *, inplace: bool = False) -> nn.Module:
    """The activation module for ``spec`` (``relu``, ``leaky_relu``, ``gelu``, ``silu``).

    ``inplace``: overwrite the input (ReLU, leaky ReLU, SiLU; GELU has no in-place form) unless
    the spec says otherwise. Only for an input that nothing else reads: the blocks use it where
    the input is a fresh map (a norm's output), which saves a map's allocation and write.
    """
    name, kwargs = spec_name(spec), spec_kwargs(spec)
    if name in ("relu", "leaky_relu", "silu"):
        kwargs.setdefault("inplace", inplace)
    if name == "relu":
        return nn.ReLU(**kwargs)
    if name == "leaky_relu":
        kwargs.setdefault("negative_slope", 0.01)
        return nn.LeakyReLU(**kwargs)
    if name == "gelu":
        return nn.GELU(**kwargs)
    if name == "silu":
        return nn.SiLU(**kwargs)
    raise ValueError(f"act: unknown type {name!r}")


def act_gain(spec: LayerSpec) -> float:
    """He gain for the activation that follows a convolution (sqrt(2) for ReLU).

    GELU and SiLU use ReLU's gain, their usual approximation.
    """
    name = spec_name(spec)
    if name == "leaky_relu":
        slope = float(spec_kwargs(spec).get("negative_slope", 0.01))
        return math.sqrt(2.0 / (1.0 + slope**2))
    return math.sqrt(2.0)
