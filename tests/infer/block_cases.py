"""Small random models and images shared by the block-wise prediction tests."""

from __future__ import annotations

import numpy as np
import torch

from unetkit.model import UNet, UNetConfig


def small_model(seed: int = 0, **kw: object) -> UNet:
    """A random 3-level U-Net (widths 4, 8, 16) in eval mode; ``kw`` overrides the config."""
    torch.manual_seed(seed)
    return UNet(UNetConfig(**{"widths": (4, 8, 16), **kw})).eval()  # type: ignore[arg-type]


def smooth_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint16 ``shape``: a random walk along the last axis plus noise (labels that vary)."""
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(rng.normal(size=shape), axis=-1)
    return (100 + 10 * smooth + rng.integers(0, 30, size=shape)).astype(np.uint16)
