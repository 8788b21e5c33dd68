"""The expanding path: ``Decoder.forward(skips) -> Tensor``, built from channel counts (P2, P3)."""

from __future__ import annotations

import functools

from torch import Tensor, nn

from unetkit.model.blocks import ConvBlock, Fuse, Up
from unetkit.model.config import UNetConfig
from unetkit.model.encoder import level_stride, maybe_checkpoint
from unetkit.model.walk import Point, Step, block_points, call, option_of


class Decoder(nn.Module):
    """``[s_0, ..., s_{D-1}] -> (B, w_0, *S_out)``; knows only channel counts, not the encoder.

    Level ``i`` (from ``D-2`` up to 0): ``up_i`` maps ``w_{i+1} -> w_i`` channels at twice the
    resolution (``strides[i]`` times with ``strides``), ``fuse_i`` joins it with the skip ``s_i``
    (centre-cropped in valid mode), and ``block_i`` maps the fused channels to ``w_i``. Modules
    are indexed by level.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        c = config
        self.checkpointed = c.checkpointing == "all"
        levels = range(c.depth - 1)
        self.ups = nn.ModuleList(
            Up(c.spatial_dims, c.widths[i + 1], c.widths[i], c.up, level_stride(c, i))
            for i in levels
        )
        self.fuses = nn.ModuleList(
            Fuse(
                c.spatial_dims,
                c.widths[i],
                fusion=c.fusion,
                norm=c.norm,
                norm_placement=c.norm_placement,
            )
            for i in levels
        )
        self.blocks = nn.ModuleList(
            ConvBlock.from_config(
                c,
                self.fuses[i].out_channels,
                c.widths[i],
                level=i,
                attention=i in c.attention_levels,
            )
            for i in levels
        )

    prefix = "decoder"

    def level_points(self, i: int) -> list[Point]:
        """The points of decoder level ``i`` in order: up, fuse, block."""
        up, fuse = self.ups[i], self.fuses[i]
        return [
            Point(f"{self.prefix}.ups.{i}", "up", option_of(up, "up", "?"), i, up),
            Point(f"{self.prefix}.fuses.{i}", "fuse", option_of(fuse, "fusion", "?"), i, fuse),
            *block_points(f"{self.prefix}.blocks.{i}", i, self.blocks[i]),
        ]

    def _level(
        self, i: int, step: Step, x: Tensor, skip: Tensor, emb: Tensor | None = None
    ) -> Tensor:
        up, fuse, *blocks = self.level_points(i)
        cond = () if emb is None else (emb,)  # a conditioned block also takes the embedding
        x = step(up, x)  # (B, w_i, *2S)
        x = step(fuse, x, skip)  # (B, 2 w_i or w_i, *2S)
        for block in blocks:
            x = step(block, x, *cond)  # (B, w_i, *2S')
        return x

    def forward_levels(
        self, skips: list[Tensor], step: Step = call, emb: Tensor | None = None
    ) -> list[Tensor]:
        """Decoder outputs of every level, shallow first.

        ``[s_0, ..., s_{D-1}] -> [(B, w_0, ...), ..., (B, w_{D-2}, ...)]``; ``step(point,
        *inputs)`` computes each point (see :mod:`unetkit.model.walk`); ``emb`` is the time
        embedding of a conditioned model, passed to every block.
        """
        x = skips[-1]
        outputs: list[Tensor] = []
        for i in reversed(range(len(self.ups))):
            level = functools.partial(self._level, i, step, emb=emb)
            x = maybe_checkpoint(level, self, x, skips[i], enabled=self.checkpointed)
            outputs.append(x)
        return outputs[::-1]

    def forward(self, skips: list[Tensor], step: Step = call, emb: Tensor | None = None) -> Tensor:
        if not self.ups:
            return skips[-1]
        return self.forward_levels(skips, step, emb)[0]
