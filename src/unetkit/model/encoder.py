"""The contracting path: ``Encoder.forward(x) -> list of skips``, shallow first (P1, P10)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from unetkit.model.blocks import ConvBlock, Down
from unetkit.model.config import UNetConfig


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


class Encoder(nn.Module):
    """``x: (B, C_in, *S) -> [s_0: (B, w_0, *S_0), ..., s_{D-1}: (B, w_{D-1}, *S_{D-1})]``.

    Level 0 is a block at full resolution; each further level is ``Down`` then a block. The last
    output is the bottleneck. With ``checkpointing`` the blocks' inner activations are
    recomputed in the backward pass; only their outputs (the skips) are kept.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        c = config
        self.checkpointed = c.checkpointing in ("encoder", "all")
        self.downs = nn.ModuleList(
            Down(c.spatial_dims, c.widths[i - 1], c.down) for i in range(1, c.depth)
        )
        self.blocks = nn.ModuleList(
            ConvBlock.from_config(
                c,
                c.in_channels if i == 0 else c.widths[i - 1],
                c.widths[i],
                dropout=c.dropout if i == c.depth - 1 else 0.0,  # the paper's bottleneck dropout
            )
            for i in range(c.depth)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        skips: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = self.downs[i - 1](x)  # (B, w_{i-1}, *S_{i-1}/2)
            x = maybe_checkpoint(block, block, x, enabled=self.checkpointed)  # (B, w_i, *S_i)
            skips.append(x)
        return skips
