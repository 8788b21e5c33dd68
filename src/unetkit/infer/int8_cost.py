"""What keeping int8 layers in fp32 costs: their multiply-adds, and those of the readers they
force into fp32.

A layer kept in fp32 never has its output rounded, so every layer reading that map runs in fp32
too (:mod:`unetkit.infer.int8_run`); at full resolution that can be a third of the network.
:func:`layer_macs` counts each int8 layer's multiply-adds on an input (one float pass along the
model's walk), :func:`fp32_closure` finds which layers actually run in float for a set kept in
fp32 (one int8 pass on a small input), and :func:`fp32_share` is the share of the network's
int8 multiply-adds that set moves to fp32: the cost the calibration's search weighs against the
agreement a layer gains (:mod:`unetkit.infer.int8_search`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from unetkit.infer.int8 import folded_copy, quantize_for_inference
from unetkit.infer.int8_equalize import Factors
from unetkit.infer.int8_run import Runner
from unetkit.model import UNet

__all__ = ["fp32_closure", "fp32_share", "layer_macs"]

_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def layer_macs(model: UNet, x: Tensor) -> dict[str, int]:
    """Multiply-adds of each int8 layer of ``model`` on ``x: (B, C, *S)``, by layer name."""
    macs: dict[str, int] = {}

    def count(name: str, layer: nn.Module, h: Tensor) -> None:
        conv = getattr(layer, "conv", layer)  # a block's ConvNormAct: its convolution
        pixels = h.shape[0] * math.prod(h.shape[2:])
        if not isinstance(conv, _CONV_T):
            pixels //= math.prod(conv.stride)
        macs[name] = int(conv.weight.numel() // conv.groups * pixels)

    runner = Runner(folded_copy(model))
    runner.inputs = count
    with torch.inference_mode():
        runner.run(x.float())
    return macs


def fp32_closure(
    model: UNet,
    ranges: Mapping[str, Any],
    fp32: Iterable[str],
    x: Tensor,
    *,
    factors: Factors | None = None,
) -> frozenset[str]:
    """The layers that run in fp32 when ``fp32`` are kept there: ``fp32`` and every layer
    reading a map they keep, found by running the int8 network once on ``x`` (a small input)."""
    fp32 = frozenset(fp32)
    if not fp32:
        return fp32
    net = quantize_for_inference(model, ranges, fp32=fp32, factors=factors)
    net.runner.ran_fp32.clear()
    with torch.inference_mode():
        net(x.float())
    return frozenset(net.runner.ran_fp32) | fp32


def fp32_share(macs: Mapping[str, int], layers: Iterable[str]) -> float:
    """The share of the int8 layers' multiply-adds ``macs`` that ``layers`` hold."""
    total = sum(macs.values())
    return sum(macs.get(n, 0) for n in set(layers)) / total if total else 0.0
