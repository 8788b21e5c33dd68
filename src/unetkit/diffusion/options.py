"""The ``diffusion:`` section of a run config (``task=diffusion``): noise schedule, target, EMA.

A leaf module (it imports nothing from unetkit), so :mod:`unetkit.config` can hold it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ScheduleKind = Literal["linear", "cosine"]
Prediction = Literal["eps", "v"]


@dataclass(frozen=True)
class DiffusionConfig:
    """A DDPM denoiser (``task=diffusion``).

    Attributes:
        timesteps: ``T``, the number of noise levels of training (steps ``0..T-1``).
        schedule: ``linear`` (Ho et al. 2020: betas from 1e-4 to 0.02, scaled to ``T``) or
            ``cosine`` (Nichol & Dhariwal 2021: ``alpha_bar`` follows a squared cosine).
        prediction: what the network outputs: ``eps`` (the added noise) or ``v``
            (``sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0``, Salimans & Ho 2022).
        ema_decay: decay of the exponential moving average of the weights (warmed up as
            ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates). The run's
            ``model.safetensors`` holds the EMA weights; the raw ones are in its checkpoint.
        label_dropout: share of training labels replaced by the null label, so one network
            learns the conditional and the unconditional model (classifier-free guidance).
        digits_size: side of the built-in digits (8x8 upsampled bilinearly): 16 or 32.
    """

    timesteps: int = 1000
    schedule: ScheduleKind = "cosine"
    prediction: Prediction = "v"
    ema_decay: float = 0.999
    label_dropout: float = 0.1
    digits_size: int = 16

    def __post_init__(self) -> None:
        if (
            isinstance(self.timesteps, bool)
            or not isinstance(self.timesteps, int)
            or not (2 <= self.timesteps <= 100_000)
        ):
            raise ValueError(f"timesteps: expected an integer 2..100000, got {self.timesteps!r}")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule: {self.schedule!r} is not one of 'linear', 'cosine'")
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"prediction: {self.prediction!r} is not one of 'eps', 'v'")
        if not (math.isfinite(self.ema_decay) and 0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay: expected a number in [0, 1), got {self.ema_decay!r}")
        if not (math.isfinite(self.label_dropout) and 0.0 <= self.label_dropout < 1.0):
            raise ValueError(
                f"label_dropout: expected a share in [0, 1), got {self.label_dropout!r}"
            )
        if self.digits_size not in (16, 32):
            raise ValueError(f"digits_size: expected 16 or 32, got {self.digits_size!r}")
