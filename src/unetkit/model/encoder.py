"""The contracting path: ``Encoder.forward(x) -> list of skips``, shallow first (P1, P10)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from unetkit.model.blocks import ConvBlock, ConvStage, Down
from unetkit.model.config import UNetConfig
from unetkit.model.walk import Point, Step, block_points, call, option_of


@contextlib.contextmanager
def frozen_norm_stats(module: nn.Module) -> Iterator[None]:
    """Within the context, batch norms in ``module`` do not update their running statistics.

    Used while a checkpointed block is recomputed in the backward pass, so the statistics are
    updated exactly once per step, as without checkpointing.
    """
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            tracked = m.num_batches_tracked
            saved.append((m, m.momentum, None if tracked is None else tracked.clone()))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def maybe_checkpoint(
    fn: Callable[..., Tensor], module: nn.Module, *args: Tensor, enabled: bool
) -> Tensor:
    """``fn(*args)``; when ``enabled`` and grad is on, recomputed in the backward pass.

    ``fn`` is a function of ``module``'s parameters (often ``module`` itself). Only the inputs
    are kept for the backward pass; batch-norm statistics are updated once, not twice.
    """
    if not (enabled and torch.is_grad_enabled()):
        return fn(*args)

    def contexts() -> tuple[contextlib.AbstractContextManager[None], ...]:
        return contextlib.nullcontext(), frozen_norm_stats(module)

    return checkpoint(fn, *args, use_reentrant=False, context_fn=contexts)


def level_stride(config: UNetConfig, i: int) -> int | tuple[int, ...]:
    """The down-sampling factor into level ``i + 1``: 2 (isotropic) or one per axis."""
    return 2 if config.strides is None else config.stride_at(i)


class Encoder(nn.Module):
    """``x: (B, C_in, *S) -> [s_0: (B, w_0, *S_0), ..., s_{D-1}: (B, w_{D-1}, *S_{D-1})]``.

    Level 0 is a block at full resolution; each further level is ``Down`` then a block (or a
    :class:`ConvStage` of ``encoder_blocks[i]`` blocks). The last output is the bottleneck.
    With ``checkpointing`` each level's inner activations are recomputed in the backward pass;
    only its output (the skip) is kept.
    """

    prefix = "encoder"

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        c = config
        self.checkpointed = c.checkpointing in ("encoder", "all")
        self.downs = nn.ModuleList(
            Down(c.spatial_dims, c.widths[i - 1], c.down, level_stride(c, i - 1))
            for i in range(1, c.depth)
        )

        def level(i: int) -> nn.Module:
            in_channels = c.in_channels if i == 0 else c.widths[i - 1]
            dropout = c.dropout if i == c.depth - 1 else 0.0  # the paper's bottleneck dropout
            n = c.blocks_at(i)
            attn = i in c.attention_levels
            if n == 1:
                return ConvBlock.from_config(
                    c, in_channels, c.widths[i], dropout=dropout, level=i, attention=attn
                )
            return ConvStage.from_config(
                c, in_channels, c.widths[i], n, dropout=dropout, level=i, attention=attn
            )

        self.blocks = nn.ModuleList(level(i) for i in range(c.depth))

    def down_point(self, i: int) -> Point:
        """The down-sampling into level ``i + 1``: ``encoder.downs.{i}``."""
        down = self.downs[i]
        return Point(f"{self.prefix}.downs.{i}", "down", option_of(down, "down", "?"), i + 1, down)

    def level_points(self, i: int) -> list[Point]:
        """The points of level ``i`` in order: its down-sampling (``i > 0``), then its blocks."""
        points = [self.down_point(i - 1)] if i > 0 else []
        return points + block_points(f"{self.prefix}.blocks.{i}", i, self.blocks[i])

    def _blocks(self, i: int, step: Step, x: Tensor, emb: Tensor | None = None) -> Tensor:
        cond = () if emb is None else (emb,)  # a conditioned block also takes the embedding
        if step is call:  # the level's own module (a stage runs its blocks in the same order)
            return self.blocks[i](x, *cond)
        for point in block_points(f"{self.prefix}.blocks.{i}", i, self.blocks[i]):
            x = step(point, x, *cond)
        return x

    def forward(self, x: Tensor, step: Step = call, emb: Tensor | None = None) -> list[Tensor]:
        """The skips, shallow first; ``step(point, x)`` computes each point (see ``walk``).

        ``emb: (B, embed_dim)``, the time (and class) embedding of a conditioned model, reaches
        every block as ``step(point, x, emb)``.
        """
        skips: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = step(self.down_point(i - 1), x)  # (B, w_{i-1}, *S_{i-1}/stride)
            level = functools.partial(self._blocks, i, step, emb=emb)
            x = maybe_checkpoint(level, block, x, enabled=self.checkpointed)  # (B, w_i, *S_i)
            skips.append(x)
        return skips
