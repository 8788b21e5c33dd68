"""Optimisers and learning-rate schedules: linear warm-up, then poly, cosine or constant.

Without a time budget the schedule is a function of the optimiser step (:func:`lr_factor`).
With one it follows the clock: a function of the *share of the run spent*
(:func:`share_factor`), which :class:`ScheduleClock` measures as the larger of the share of
the planned steps done and the share of the time budget used, never going back. A run then
ends fully annealed whatever the load, and its learning rate never rises after warm-up.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable

import torch
from torch import nn

from unetkit.config import TrainConfig


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate for optimiser step ``step`` (0-based).

    Warm-up rises linearly from ``1/(warmup+1)`` to 1 over ``warmup_steps``; then ``poly`` decays
    as ``(1 - t)**0.9``, ``cosine`` as ``(1 + cos(pi t)) / 2`` and ``constant`` stays at 1, where
    ``t`` goes from 0 to 1 over the remaining steps.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = max(1, total_steps - warmup_steps)
    return _decay(min(1.0, (step - warmup_steps) / span), schedule)


def _decay(t: float, schedule: str) -> float:
    """The decay after warm-up at ``t`` in ``[0, 1]``."""
    if schedule == "poly":
        return (1.0 - t) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "constant":
        return 1.0
    raise ValueError(f"schedule: expected 'poly', 'cosine' or 'constant', got {schedule!r}")


def share_factor(share: float, warmup_share: float, schedule: str, start: float = 0.0) -> float:
    """Multiplier of the peak learning rate when ``share`` (0..1) of the run is spent.

    Warm-up rises linearly from ``start`` (at share 0) to 1 (at ``warmup_share``); then the
    decay of :func:`lr_factor` with ``t = (share - warmup_share) / (1 - warmup_share)``, so
    ``poly`` and ``cosine`` reach 0 at share 1. Non-increasing in ``share`` after warm-up.
    """
    share = min(1.0, max(0.0, share))
    if share < warmup_share:
        return start + (1.0 - start) * share / warmup_share
    return _decay((share - warmup_share) / max(1e-12, 1.0 - warmup_share), schedule)


class ScheduleClock:
    """The share of a run spent, for a schedule that follows the clock.

    :meth:`advance` is called once per optimiser step (by the scheduler, after the step) and
    returns the share at which the *next* step ends::

        share = max(previous share, step / total_steps(), start + (1 - start) * time_share)

    where ``time_share(seconds_ahead)`` is this session's share of its time budget once
    ``seconds_ahead`` more seconds have passed (the median of the last five step intervals,
    so the last step of a run already takes the final learning rate), and ``start`` is the
    share a resumed run had reached. ``time_share=None`` (no budget, or deterministic runs,
    whose schedule must not depend on timing) uses the steps alone. The share is clamped to
    ``[0, 1]`` and never decreases; the trainer stores it in every checkpoint, so a resumed run
    continues from exactly that share.
    """

    def __init__(
        self,
        total_steps: Callable[[], int],
        time_share: Callable[[float], float] | None,
        start: float = 0.0,
    ) -> None:
        self.total_steps = total_steps
        self.time_share = time_share
        self.share = min(1.0, max(0.0, start))
        self.start = self.share
        self._last: float | None = None
        self._intervals: deque[float] = deque(maxlen=5)

    def resume_from(self, share: float) -> None:
        """Continue from a stored ``share`` (a resumed run)."""
        self.share = self.start = min(1.0, max(0.0, share))
        self._last = None
        self._intervals.clear()

    def advance(self, step: int) -> float:
        """The share after ``step`` optimiser steps (see the class docstring)."""
        now = time.monotonic()
        if self._last is not None:
            self._intervals.append(now - self._last)
        self._last = now
        share = step / max(1, self.total_steps())
        if self.time_share is not None:
            ahead = sorted(self._intervals)[len(self._intervals) // 2] if self._intervals else 0.0
            share = max(share, self.start + (1.0 - self.start) * self.time_share(ahead))
        self.share = min(1.0, max(self.share, share))
        return self.share


def make_optimizer(
    params: Iterable[nn.Parameter], name: str, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum (the U-Net paper used SGD with momentum 0.99).

    Not fused: PyTorch's fused CPU AdamW is 1.7 ms faster per step (within a step's noise), but
    a run resumed after SIGKILL then no longer ended bit for bit equal to the uninterrupted run
    (``tests/robustness/test_train_faults.py``), and exact resume comes first.
    """
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


def make_clock_scheduler(
    optimizer: torch.optim.Optimizer,
    clock: ScheduleClock,
    warmup_share: float,
    schedule: str,
    start: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepping once per optimiser step with :func:`share_factor` of the share
    that ``clock`` measures (see :class:`ScheduleClock`)."""
    share_factor(1.0, warmup_share, schedule)  # validates the name
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: share_factor(clock.advance(step), warmup_share, schedule, start)
    )


def make_run_scheduler(
    optimizer: torch.optim.Optimizer,
    train: TrainConfig,
    total_steps: Callable[[], int],
    time_share: Callable[[float], float] | None,
) -> tuple[torch.optim.lr_scheduler.LambdaLR, ScheduleClock | None]:
    """The scheduler of a run, and its clock when the run has a time budget.

    Without ``train.max_minutes``: :func:`lr_factor` of the step and the current plan
    ``total_steps()`` (no clock). With it: :func:`make_clock_scheduler` on a
    :class:`ScheduleClock` of the steps and ``time_share`` (``None``: steps alone). The
    warm-up starts at ``1 / (W + 1)`` of the peak, ``W`` the warm-up steps of the first plan.
    """
    warmup = round(train.warmup_fraction * total_steps())
    if train.max_minutes is None:
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total_steps(), warmup, train.schedule)
        ), None
    clock = ScheduleClock(total_steps, time_share)
    start = 1.0 / (warmup + 1)
    return make_clock_scheduler(
        optimizer, clock, train.warmup_fraction, train.schedule, start
    ), clock
