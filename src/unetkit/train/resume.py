"""Continuing a run: which checkpoint to start from, and restoring it into a fresh trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from unetkit.model import UNet
from unetkit.modelfile import load_state_into
from unetkit.train import checkpoint as ckpt
from unetkit.train.distributed import DistInfo, barrier


def resume_point(out: Path, info: DistInfo, echo: Callable[[str], None]) -> ckpt.Checkpoint | None:
    """The checkpoint to continue ``out`` from; ``None`` when the run has none yet.

    Temporaries of writes killed half-way are deleted first (rank 0). A run stopped before its
    first checkpoint starts again from the beginning, and says so; one whose checkpoints are
    all damaged is an error (:func:`checkpoint.load_latest`).
    """
    if info.is_main:
        stale = ckpt.remove_stale_temporaries(out)
        if stale:
            echo(
                f"removed {len(stale)} unfinished temporary file(s) left by an interrupted "
                f"write: {', '.join(p.name for p in stale)}"
            )
    barrier(info)
    if not ckpt.candidates(out):
        if info.is_main:
            echo(f"{out}: no checkpoint yet (stopped before the first one); starting from step 0")
        return None
    return ckpt.load_latest(out)


def restore(
    checkpoint: ckpt.Checkpoint,
    model: UNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    total_steps: int,
) -> ckpt.TrainState:
    """Load weights, optimiser, scheduler and RNG states; the state to continue from.

    ``total_steps`` (the current plan) replaces the checkpoint's; history rows after the
    checkpoint's epoch (an epoch that was not saved) are dropped.
    """
    load_state_into(model, checkpoint.model_tensors, str(checkpoint.folder))
    optimizer.load_state_dict(checkpoint.optimizer)
    scheduler.load_state_dict(checkpoint.scheduler)
    ckpt.set_rng_states(checkpoint.rng_tensors, checkpoint.rng_meta)
    state = checkpoint.state
    state.total_steps = total_steps
    state.history = [r for r in state.history or [] if r["epoch"] <= state.epoch]
    return state
