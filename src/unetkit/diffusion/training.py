"""The DDPM training objective: noise a clean batch at random levels; the loss of the denoiser."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.diffusion.schedule import NoiseSchedule


@dataclass(frozen=True)
class NoisedBatch:
    """Network input and target of one step.

    Attributes:
        x_t: ``(B, C, *S)`` the noised images; ``t``: ``(B,)`` int64 steps in ``0..T-1``.
        target: ``(B, C, *S)`` what the network should output (``eps`` or ``v``).
        labels: ``(B,)`` int64 classes after label dropout (the null label where dropped), or
            ``None`` for an unconditional model.
    """

    x_t: Tensor
    t: Tensor
    target: Tensor
    labels: Tensor | None


def noised_batch(
    schedule: NoiseSchedule,
    x0: Tensor,
    labels: Tensor | None,
    *,
    prediction: str,
    label_dropout: float = 0.0,
    null_label: int = 0,
    generator: torch.Generator | None = None,
) -> NoisedBatch:
    """Uniform steps ``t``, Gaussian noise, ``x_t`` and the target for clean ``x0 (B, C, *S)``.

    Labels are replaced by ``null_label`` with probability ``label_dropout`` (classifier-free
    guidance). Draws from ``generator`` (default: torch's global generator).
    """
    b = x0.shape[0]
    t = torch.randint(schedule.timesteps, (b,), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    x_t = schedule.q_sample(x0, t, noise)
    target = schedule.target(x0, noise, t, prediction)
    if labels is not None and label_dropout > 0:
        drop = torch.rand(b, generator=generator) < label_dropout
        labels = torch.where(drop, torch.full_like(labels, null_label), labels)
    return NoisedBatch(x_t, t, target, labels)


def diffusion_loss(model: nn.Module, batch: NoisedBatch) -> Tensor:
    """Mean squared error between ``model(x_t, t[, labels])`` and the target."""
    extra = () if batch.labels is None else (batch.labels,)
    out = model(batch.x_t, batch.t, *extra)
    return F.mse_loss(out.float(), batch.target)
