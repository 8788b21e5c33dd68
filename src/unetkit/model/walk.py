"""The public walk over a U-Net: its computation points, named by their state-dict names.

Whatever needs to follow the network (int8, batch-norm folding, export, a variant with another
kind of block) uses this walk instead of a copy of the forward (STYLE P15):

* :meth:`unetkit.model.UNet.points` lists the points in the order the forward runs them;
* :meth:`unetkit.model.UNet.forward_core` runs the forward without the input padding and output
  crop, calling ``step(point, *inputs)`` at every point (default: the point's own module).

A point's ``kind`` says what it computes and ``option`` which config option built it, so a
consumer implements the kinds and options it knows and refuses the others by name::

    encoder.blocks.0      block  plain      x: (B, C_in, *S) -> (B, w_0, *S)
    encoder.downs.0       down   maxpool    (B, w_0, *S) -> (B, w_0, *S/2)
    encoder.blocks.1.0    block  residual   first block of a level of several (``encoder_blocks``)
    decoder.ups.1         up     transpose  (B, w_2, *S) -> (B, w_1, *2S)
    decoder.fuses.1       fuse   concat     (up, skip) -> (B, 2 w_1, *2S)
    decoder.blocks.1      block  plain
    head                  head   conv       (B, w_0, *S) -> (B, K, *S)

Inputs: one tensor, except ``fuse`` which takes ``(up, skip)``.

A time-conditioned model (``time_conditioning``, :mod:`unetkit.model.conditioning`) starts with
``embed`` points, and its blocks take ``(x, emb)``::

    time_embed            embed  time       t: (B,) -> emb: (B, E)
    class_embed           embed  class      labels: (B,) -> (B, E), added to emb
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

#: Every kind of point the walk yields. A consumer refuses a kind it does not know.
KINDS = ("embed", "block", "down", "up", "fuse", "head", "deep_head")


@dataclass(frozen=True)
class Point:
    """One computation point of a U-Net.

    Attributes:
        name: the module's state-dict name (``encoder.blocks.0``, ``decoder.ups.1``, ``head``).
        kind: one of :data:`KINDS`.
        option: the config option that built it (``block``: ``"plain"``/``"residual"``;
            ``down``: ``"maxpool"``/``"avgpool"``/``"strided"``; ``up``: ``"transpose"``/
            ``"interp"``; ``fuse``: the ``fusion``; ``head``/``deep_head``: ``"conv"``).
        level: the resolution level (0 is full resolution).
        module: the module that computes it (``module(*inputs)`` is the point's output).
    """

    name: str
    kind: str
    option: str
    level: int
    module: nn.Module = field(compare=False, repr=False)


#: ``step(point, *inputs) -> output``: what the walk calls at each point.
Step = Callable[..., Tensor]


def call(point: Point, *inputs: Tensor | None) -> Tensor:
    """The default step: the point's own module, ``point.module(*inputs)``."""
    return point.module(*inputs)


def option_of(module: nn.Module, attribute: str, default: str) -> str:
    """The option a block records under ``attribute`` (the config's field name)."""
    return str(getattr(module, attribute, default))


def block_points(prefix: str, level: int, module: nn.Module) -> list[Point]:
    """The block points of one level: ``prefix`` itself, or ``prefix.j`` for a stage of blocks."""
    if isinstance(module, nn.Sequential):
        return [
            Point(f"{prefix}.{j}", "block", option_of(b, "block", "plain"), level, b)
            for j, b in enumerate(module)
        ]
    return [Point(prefix, "block", option_of(module, "block", "plain"), level, module)]


def unknown_point(consumer: str, point: Point, known: str) -> ValueError:
    """The error a consumer raises for a point it does not implement, naming it."""
    return ValueError(
        f"{consumer}: {point.name} is a {point.kind} with option {point.option!r}, which "
        f"{consumer} does not implement (it handles {known})"
    )
