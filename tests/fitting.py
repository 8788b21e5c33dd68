"""A few full-batch Adam steps of cross-entropy: the quick training several tests need."""

from __future__ import annotations

import torch

from unetkit.model import UNet


def fit(model: UNet, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 1e-2) -> UNet:
    """Train ``model`` on ``x: (N, C, *S)`` and labels ``y: (N, *S)``; returns it in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()
