"""Optimisers and learning-rate schedules: linear warm-up, then poly, cosine or constant."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate for optimiser step ``step`` (0-based).

    Warm-up rises linearly from ``1/(warmup+1)`` to 1 over ``warmup_steps``; then ``poly`` decays
    as ``(1 - t)**0.9``, ``cosine`` as ``(1 + cos(pi t)) / 2`` and ``constant`` stays at 1, where
    ``t`` goes from 0 to 1 over the remaining steps.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    if schedule == "poly":
        return (1.0 - t) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "constant":
        return 1.0
    raise ValueError(f"schedule: expected 'poly', 'cosine' or 'constant', got {schedule!r}")


def make_optimizer(
    params: Iterable[nn.Parameter], name: str, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum (the U-Net paper used SGD with momentum 0.99)."""
    params = list(params)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
        )
    raise ValueError(f"optimizer: expected 'adamw' or 'sgd', got {name!r}")


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, schedule: str
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepping once per optimiser step with :func:`lr_factor`."""
    lr_factor(0, total_steps, warmup_steps, schedule)  # validates the name
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, schedule)
    )
