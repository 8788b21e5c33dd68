"""What keeping int8 layers in fp32 costs: their work, and that of the readers they force into
fp32.

A layer kept in fp32 never has its output rounded, so every layer reading that map runs in fp32
too (:mod:`unetkit.infer.int8_run`); at full resolution that can be a third of the network.
:func:`layer_costs` counts each int8 layer's multiply-adds and the values of the maps it reads
and writes on an input (one float pass along the model's walk), :func:`fp32_closure` finds which
layers actually run in float for a set kept in fp32 (one int8 pass on a small input), and
:func:`fp32_share` is the share of the network's int8 work that set moves to fp32: the mean of
its share of multiply-adds and its share of map values. Both count: every level of a U-Net
does about the same multiply-adds, but a full-resolution layer in fp32 also converts its
largest maps to float and back, and runs fp32 convolutions at the fewest channels, where they
are slowest per multiply-add (measured on Drosophila, width 16 at 1024²: the last decoder
convolution in fp32 cost 27% of the int8 speed, the deepest encoder one 13%, for the same
multiply-adds). This is the cost the calibration's search weighs against the agreement a layer
gains (:mod:`unetkit.infer.int8_search`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from unetkit.infer.int8 import folded_copy, quantize_for_inference
from unetkit.infer.int8_equalize import Factors
from unetkit.infer.int8_run import Runner
from unetkit.model import UNet

__all__ = ["Cost", "fp32_closure", "fp32_share", "layer_costs"]

_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class Cost(NamedTuple):
    """One layer's work on an input: multiply-adds, and values of the maps it reads and writes."""

    macs: int
    values: int


def layer_costs(model: UNet, x: Tensor) -> dict[str, Cost]:
    """The :class:`Cost` of each int8 layer of ``model`` on ``x: (B, C, *S)``, by layer name."""
    costs: dict[str, Cost] = {}

    def count(name: str, layer: nn.Module, h: Tensor) -> None:
        conv = getattr(layer, "conv", layer)  # a block's ConvNormAct: its convolution
        pixels = h.shape[0] * math.prod(h.shape[2:])
        if isinstance(conv, _CONV_T):
            out = pixels * math.prod(conv.stride) * conv.out_channels
        else:
            pixels //= math.prod(conv.stride)
            out = pixels * conv.out_channels
        macs = int(conv.weight.numel() // conv.groups * pixels)
        costs[name] = Cost(macs, int(h.numel() + out))

    runner = Runner(folded_copy(model))
    runner.inputs = count
    with torch.inference_mode():
        runner.run(x.float())
    return costs


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


def fp32_share(costs: Mapping[str, Cost], layers: Iterable[str]) -> float:
    """The share of the int8 layers' work ``costs`` that ``layers`` hold: the mean of their
    share of multiply-adds and of map values (module doc)."""
    names = set(layers)
    share = 0.0
    for field in (0, 1):
        total = sum(c[field] for c in costs.values())
        share += sum(costs[n][field] for n in names if n in costs) / total if total else 0.0
    return share / 2
