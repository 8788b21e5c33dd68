"""Named presets: ``create_model(name, **overrides)`` and ``list_models()``."""

from __future__ import annotations

import dataclasses
from typing import Any

from unetkit.model.config import UNetConfig
from unetkit.model.unet import UNet

PRESETS: dict[str, UNetConfig] = {
    # Ronneberger, Fischer & Brox 2015: valid 3x3 convs, 2x2 max-pool, 2x2 up-conv halving the
    # channels, crop and concat, 64 -> 1024, no normalisation. 572x572 -> 388x388, 23 convs.
    "unet2d_ronneberger2015": UNetConfig(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        widths=(64, 128, 256, 512, 1024),
        padding="valid",
        down="maxpool",
        up="transpose",
        fusion="concat",
        norm="none",
        act="relu",
        dropout=0.0,
    ),
    # The widely used modern variant: same padding, batch norm, five levels from width 64.
    "unet2d_classic": UNetConfig(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        widths=(64, 128, 256, 512, 1024),
    ),
    # A residual encoder in the spirit of nnU-Net's ResEnc presets (Isensee et al., "nnU-Net
    # Revisited", MICCAI 2024): residual blocks, strided-convolution down-sampling, more blocks
    # where the maps are small (1, 3, 4, 6, 6), one block per decoder level.
    "unet2d_resenc": UNetConfig(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        widths=(32, 64, 128, 256, 512),
        down="strided",
        block="residual",
        encoder_blocks=(1, 3, 4, 6, 6),
    ),
    "unet3d_resenc": UNetConfig(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        widths=(32, 64, 128, 256, 320),
        down="strided",
        block="residual",
        encoder_blocks=(1, 3, 4, 6, 6),
        norm="instance",
    ),
    # Small models for laptops and tests.
    "unet1d_small": UNetConfig(spatial_dims=1, widths=(16, 32, 64, 128)),
    "unet2d_small": UNetConfig(spatial_dims=2, widths=(16, 32, 64, 128)),
    "unet2d_medium": UNetConfig(spatial_dims=2, widths=(32, 64, 128, 256, 320)),
    "unet3d_small": UNetConfig(spatial_dims=3, widths=(8, 16, 32, 64), norm="instance"),
}


def list_models() -> list[str]:
    """Names of the presets, sorted."""
    return sorted(PRESETS)


def preset_config(name: str, **overrides: Any) -> UNetConfig:
    """The config of preset ``name`` with ``overrides`` applied (``None`` values dropped)."""
    if name not in PRESETS:
        raise ValueError(f"preset: unknown name {name!r}; known: {', '.join(list_models())}")
    fields = {f.name for f in dataclasses.fields(UNetConfig)}
    for key in overrides:
        if key not in fields:
            raise ValueError(f"{key}: unknown UNetConfig field; known: {', '.join(sorted(fields))}")
    return PRESETS[name].replace(**overrides)


def create_model(name: str, **overrides: Any) -> UNet:
    """Build preset ``name`` with ``overrides`` (e.g. ``in_channels=3``); ``None`` is dropped."""
    return UNet(preset_config(name, **overrides))
