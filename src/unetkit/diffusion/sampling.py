"""Sampling a trained denoiser: DDPM ancestral and DDIM, with classifier-free guidance, seeded.

Both samplers are one loop over a decreasing sequence of steps ``t_S > ... > t_1`` (all ``T``
steps, or ``S`` evenly spaced ones). At each step the network's output gives ``x0`` (clipped
to the data range ``[-1, 1]``) and ``eps``, and

    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - a_prev) / (1 - a) (1 - a / a_prev)),

DDIM's update (Song et al. 2021). ``eta = 0`` is deterministic DDIM; ``eta = 1`` is DDPM's
ancestral sampler (over all ``T`` steps exactly Ho et al.'s posterior with variance
``beta~_t``; over fewer steps its respaced form). All noise comes from one generator seeded by
``seed``, so the same call gives the same images.

Guidance (``labels`` given, scale ``g``): ``out = out(null) + g (out(label) - out(null))``;
``g = 1`` is the plain conditional model, ``g = 0`` the unconditional one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from unetkit.diffusion.schedule import NoiseSchedule

Sampler = Literal["ddpm", "ddim"]


def step_sequence(timesteps: int, steps: int) -> list[int]:
    """Decreasing steps to visit: all of ``T-1 .. 0`` when ``steps >= T``, else ``steps``
    evenly spaced ones from ``T - 1`` down to 0."""
    if steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps}")
    if steps >= timesteps:
        return list(range(timesteps - 1, -1, -1))
    seq = torch.linspace(0, timesteps - 1, steps, dtype=torch.float64).round().long()
    return sorted({int(v) for v in seq}, reverse=True)


def guided_output(
    model: nn.Module, x: Tensor, t: Tensor, labels: Tensor | None, guidance: float, null: int
) -> Tensor:
    """The network's output at ``(x, t)``, guided towards ``labels`` (see the module doc)."""
    if labels is None:
        return model(x, t)
    if guidance == 1.0:
        return model(x, t, labels)
    both = model(
        torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, torch.full_like(labels, null)])
    )  # (2B, C, *S)
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


@torch.no_grad()
def sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    prediction: str,
    sampler: Sampler = "ddim",
    steps: int | None = None,
    labels: Tensor | None = None,
    guidance: float = 1.0,
    null_label: int = 0,
    seed: int = 0,
    eta: float | None = None,
    clip: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """Images ``shape = (B, C, *S)`` in the data range ``[-1, 1]`` (see the module doc).

    Args:
        model: the denoiser, called as ``model(x, t[, labels])``; put in eval mode.
        sampler: ``ddpm`` (ancestral, ``eta = 1``) or ``ddim`` (``eta = 0``); ``eta``
            overrides the sampler's.
        steps: number of network evaluations (``None``: all ``T`` for ``ddpm``, 50 for
            ``ddim``).
        labels: ``(B,)`` classes of a class-conditional model, or ``None``.
        null_label: the model's "no class" index (its ``num_class_labels``).
        progress: called with 1 after each step (a progress bar's ``update``).
    """
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler: {sampler!r} is not one of 'ddpm', 'ddim'")
    T = schedule.timesteps
    steps = steps if steps is not None else (T if sampler == "ddpm" else 50)
    eta = eta if eta is not None else (1.0 if sampler == "ddpm" else 0.0)
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    x = torch.randn(shape, generator=g).to(device)
    abar = schedule.alpha_bar.to(device)
    seq = step_sequence(T, steps)
    for i, step in enumerate(seq):
        t = torch.full((shape[0],), step, dtype=torch.long, device=device)
        out = guided_output(model, x, t, labels, guidance, null_label).float()
        x0, eps = schedule.split(x, t, out, prediction)
        a = abar[step].float()
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        a_prev = abar[seq[i + 1]].float() if i + 1 < len(seq) else torch.ones((), device=device)
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp(min=0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0 and i + 1 < len(seq):
            x = x + sigma * torch.randn(shape, generator=g).to(device)
        if progress is not None:
            progress(1)
    return x
