"""The expanding path: ``Decoder.forward(skips) -> Tensor``, built from channel counts (P2, P3)."""

from __future__ import annotations

import functools

from torch import Tensor, nn

from unetkit.model.blocks import ConvBlock, Fuse, Up
from unetkit.model.config import UNetConfig
from unetkit.model.encoder import maybe_checkpoint


class Decoder(nn.Module):
    """``[s_0, ..., s_{D-1}] -> (B, w_0, *S_out)``; knows only channel counts, not the encoder.

    Level ``i`` (from ``D-2`` up to 0): ``up_i`` maps ``w_{i+1} -> w_i`` channels at twice the
    resolution, ``fuse_i`` joins it with the skip ``s_i`` (centre-cropped in valid mode), and
    ``block_i`` maps the fused channels to ``w_i``. Modules are indexed by level.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        c = config
        self.checkpointed = c.checkpointing == "all"
        levels = range(c.depth - 1)
        self.ups = nn.ModuleList(
            Up(c.spatial_dims, c.widths[i + 1], c.widths[i], c.up) for i in levels
        )
        self.fuses = nn.ModuleList(
            Fuse(
                c.spatial_dims,
                c.widths[i],
                fusion=c.fusion,
                norm=c.norm,
                placement=c.norm_placement,
            )
            for i in levels
        )
        self.blocks = nn.ModuleList(
            ConvBlock.from_config(c, self.fuses[i].out_channels, c.widths[i]) for i in levels
        )

    def _level(self, i: int, x: Tensor, skip: Tensor) -> Tensor:
        x = self.ups[i](x)  # (B, w_i, *2S)
        x = self.fuses[i](x, skip)  # (B, 2 w_i or w_i, *2S)
        return self.blocks[i](x)  # (B, w_i, *2S')

    def forward_levels(self, skips: list[Tensor]) -> list[Tensor]:
        """Decoder outputs of every level, shallow first.

        ``[s_0, ..., s_{D-1}] -> [(B, w_0, ...), ..., (B, w_{D-2}, ...)]``.
        """
        x = skips[-1]
        outputs: list[Tensor] = []
        for i in reversed(range(len(self.ups))):
            level = functools.partial(self._level, i)
            x = maybe_checkpoint(level, self, x, skips[i], enabled=self.checkpointed)
            outputs.append(x)
        return outputs[::-1]

    def forward(self, skips: list[Tensor]) -> Tensor:
        if not self.ups:
            return skips[-1]
        return self.forward_levels(skips)[0]
