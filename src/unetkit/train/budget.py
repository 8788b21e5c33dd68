"""The time budget: how long a run plans to train, when it stops, and how it re-plans.

A run with ``train.max_minutes`` measures a step and a validation first (:func:`plan_schedule`),
then after each epoch revises its number of steps from the time a step really took
(:meth:`Budget.replan`), and stops cleanly when only a last validation and checkpoint still fit
(:meth:`Budget.should_stop`). Every rank takes the same decision (all-reduced).

:meth:`Budget.share_spent` is the share of the training time used: 0 when the loop starts,
1 at the moment :meth:`Budget.should_stop` says ``"time"``; the learning-rate schedule of a
budget run follows it (:class:`~unetkit.train.schedule.ScheduleClock`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from unetkit.config import RunConfig
from unetkit.train.distributed import DistInfo, all_reduce_max


def plan_schedule(
    config: RunConfig, step_seconds: float, val_seconds: float, setup_seconds: float
) -> tuple[int, int]:
    """``(epochs, steps_per_epoch)`` that fit ``train.max_minutes``.

    Spends about 88% of what is left after setup on training steps and validations, with
    between 4 and 12 validations (epochs) and at least 10 steps per epoch.
    """
    t = config.train
    if t.max_minutes is None:
        raise ValueError("plan_schedule: train.max_minutes is not set; there is no budget to plan")
    left = max(0.0, t.max_minutes * 60.0 * 0.88 - setup_seconds)
    epochs = int(np.clip(left * 0.15 / max(val_seconds + 0.5, 1e-3), 4, 12))
    train_seconds = left - epochs * (val_seconds + 0.5)
    steps = max(10 * epochs, int(train_seconds / max(step_seconds, 1e-3)))
    steps_per_epoch = max(10, steps // epochs)
    return epochs, steps_per_epoch


def default_steps_per_epoch(config: RunConfig, num_train: int, world_size: int) -> int:
    """Enough global batches to see every training image about twice, at least 10."""
    global_batch = config.train.batch_size * world_size
    return max(10, math.ceil(2 * num_train / global_batch))


class Budget:
    """The wall-clock budget of one session (``None`` seconds: no limit).

    ``started``: ``time.monotonic()`` when the command started (imports and data loading
    count). ``write_seconds``: the last checkpoint's duration and ``val_seconds`` the last
    validation's, updated by the loop.
    """

    def __init__(self, seconds: float | None, started: float, info: DistInfo) -> None:
        self.seconds = seconds
        self.started = started
        self.info = info
        self.write_seconds = 1.0
        self.val_seconds = 0.0
        self.training_started = 0.0

    def start_training(self) -> None:
        """Mark now as share 0 of :meth:`share_spent` (the loop is about to start)."""
        self.training_started = time.monotonic() - self.started

    def share_spent(self, seconds_ahead: float = 0.0) -> float:
        """The share of this session's training time used ``seconds_ahead`` seconds from now.

        0 at :meth:`start_training`; 1 where :meth:`should_stop` stops for time (the budget
        less the reserve for a last validation and checkpoint); may exceed 1. Without a
        budget, 0. Under DDP every rank gets the largest share (all-reduced), so all ranks
        step with the same learning rate.
        """
        if self.seconds is None:
            return 0.0
        elapsed = time.monotonic() - self.started + seconds_ahead
        horizon = self.seconds - self.reserve(self.val_seconds)
        share = (elapsed - self.training_started) / max(horizon - self.training_started, 1e-3)
        value = torch.tensor([share], dtype=torch.float64)
        all_reduce_max(self.info, value)
        return float(value.item())

    def reserve(self, val_seconds: float) -> float:
        """Seconds kept free at the end of a budget: a last validation and checkpoint."""
        return 1.2 * (val_seconds + self.write_seconds) + 1.0

    def should_stop(self, signal_received: bool, val_seconds: float) -> str | None:
        """``"interrupted"`` (a signal on any rank), ``"time"`` (budget spent) or ``None``."""
        flags = torch.zeros(2)
        if signal_received:
            flags[0] = 1.0
        elapsed = time.monotonic() - self.started
        if self.seconds is not None and elapsed + self.reserve(val_seconds) > self.seconds:
            flags[1] = 1.0
        all_reduce_max(self.info, flags)
        if flags[0] > 0:
            return "interrupted"
        if flags[1] > 0:
            return "time"
        return None

    def replan(
        self, step: int, steps_per_epoch: int, val_seconds: float, step_seconds: float
    ) -> int | None:
        """The revised total number of steps from ``step`` on, or ``None`` without a budget.

        Fills 95% of what is left (after the reserve) at ``step_seconds`` per step plus each
        epoch's validation and checkpoint; every rank gets the largest plan.
        """
        if self.seconds is None:
            return None
        left = self.seconds - (time.monotonic() - self.started) - self.reserve(val_seconds)
        per_step = step_seconds + (val_seconds + self.write_seconds) / steps_per_epoch
        plan = torch.tensor([step + max(1.0, 0.95 * left / max(per_step, 1e-3))])
        all_reduce_max(self.info, plan)  # every rank keeps the same plan
        return int(plan.item())
