"""Weight initialisation from each convolution's true fan-in (P9)."""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str) -> None:
    """Initialise the convolutions of ``model`` in place.

    ``"kaiming"``: weights ~ N(0, gain^2 / fan_in) with the fan-in and gain recorded on each
    convolution when it was built (``unetkit_fan_in``, ``unetkit_gain``): the fan-in counts the
    2C channels a convolution after a concat sees, and a stride-2 2x2 transposed convolution's
    fan-in is its input channels (each output sees one input position); the gain is sqrt(2) for
    a convolution followed by ReLU and 1 for a linear one. Biases start at zero and norms at
    identity. ``"default"`` keeps PyTorch's own initialisation.
    """
    if scheme == "default":
        return
    if scheme != "kaiming":
        raise ValueError(f"init: expected 'kaiming' or 'default', got {scheme!r}")
    for module in model.modules():
        fan_in = getattr(module, "unetkit_fan_in", None)
        if fan_in is None:
            continue
        std = float(module.unetkit_gain) / math.sqrt(fan_in)
        nn.init.normal_(module.weight, 0.0, std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
