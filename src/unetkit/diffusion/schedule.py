"""DDPM noise schedules and the algebra between ``x0``, ``eps``, ``v`` and ``x_t``.

``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`` with ``a_t = alpha_bar[t]`` (the product of
``1 - beta`` up to ``t``), ``eps ~ N(0, I)``; ``v = sqrt(a_t) eps - sqrt(1 - a_t) x0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def make_betas(kind: str, timesteps: int) -> Tensor:
    """``(T,)`` float64 betas of the ``linear`` or ``cosine`` schedule.

    ``linear``: evenly from ``1e-4 * 1000 / T`` to ``0.02 * 1000 / T`` (Ho et al.'s values at
    ``T = 1000``). ``cosine``: ``alpha_bar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)``,
    ``s = 0.008``, betas clipped at 0.999 (Nichol & Dhariwal).
    """
    if kind == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"schedule: {kind!r} is not one of 'linear', 'cosine'")


def _per_sample(values: Tensor, t: Tensor, ndim: int) -> Tensor:
    """``values[t]`` reshaped to ``(B, 1, ...)`` to broadcast over a ``ndim``-dim batch."""
    return values.to(t.device)[t].float().reshape(-1, *([1] * (ndim - 1)))


@dataclass(frozen=True)
class NoiseSchedule:
    """The ``T`` noise levels of a DDPM: ``betas`` and ``alpha_bar``, both ``(T,)`` float64.

    ``t`` arguments are ``(B,)`` integer steps in ``0..T-1``; tensors ``(B, C, *S)``.
    """

    betas: Tensor
    alpha_bar: Tensor

    @classmethod
    def make(cls, kind: str, timesteps: int) -> NoiseSchedule:
        betas = make_betas(kind, timesteps)
        return cls(betas=betas, alpha_bar=torch.cumprod(1 - betas, 0))

    @property
    def timesteps(self) -> int:
        return int(self.betas.shape[0])

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise``."""
        a = _per_sample(self.alpha_bar, t, x0.ndim)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: Tensor, noise: Tensor, t: Tensor, prediction: str) -> Tensor:
        """What the network learns to output: ``noise`` (``eps``) or ``v``."""
        if prediction == "eps":
            return noise
        a = _per_sample(self.alpha_bar, t, x0.ndim)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def split(
        self, x_t: Tensor, t: Tensor, output: Tensor, prediction: str
    ) -> tuple[Tensor, Tensor]:
        """``(x0, eps)`` implied by the network's ``output`` at ``x_t``.

        ``eps``: ``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)``; ``v``: ``x0 = sqrt(a) x_t -
        sqrt(1 - a) v`` and ``eps = sqrt(1 - a) x_t + sqrt(a) v``.
        """
        a = _per_sample(self.alpha_bar, t, x_t.ndim)
        if prediction == "eps":
            return (x_t - (1 - a).sqrt() * output) / a.sqrt(), output
        return a.sqrt() * x_t - (1 - a).sqrt() * output, (1 - a).sqrt() * x_t + a.sqrt() * output
