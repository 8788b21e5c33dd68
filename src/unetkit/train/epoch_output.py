"""What a run writes after each epoch (rank 0): best model, checkpoint, metrics, plots.

Every write goes through a temporary file or folder and a rename (:mod:`unetkit.io.atomic`,
:mod:`unetkit.train.checkpoint`), and a model with a non-finite weight is never written.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import torch

from unetkit.config import RunConfig
from unetkit.errors import UnetkitError
from unetkit.io.atomic import atomic_save_bytes
from unetkit.modelfile import save
from unetkit.train import checkpoint as ckpt
from unetkit.train.distributed import DistInfo, barrier
from unetkit.train.prepare import PreparedData
from unetkit.train.report import plot_progress, write_metrics_csv, write_overlay
from unetkit.train.validate import ValResult


class NonFiniteLossError(UnetkitError):
    """The loss or the gradients became NaN or infinite; nothing from that step was saved."""


class _Trained(Protocol):
    """What the writer reads from the step runner."""

    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def write_config(out: Path, config: RunConfig) -> None:
    """``config.yaml``: the resolved config, atomically."""
    atomic_save_bytes(Path(out) / "config.yaml", config.to_yaml().encode())


def check_finite_model(model: torch.nn.Module, where: str) -> None:
    """Raise :class:`NonFiniteLossError` naming the first non-finite parameter or buffer."""
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise NonFiniteLossError(
                f"{where}: parameter {name} is not finite; not saving a broken model"
            )


class EpochWriter:
    """Writes a run folder's per-epoch files; rank 0 writes, every rank waits for it."""

    def __init__(
        self, out: Path, prepared: PreparedData, metadata: dict[str, Any], info: DistInfo
    ) -> None:
        self.out = Path(out)
        self.prepared = prepared
        self.metadata = metadata
        self.info = info
        self.tracker: Any = None  # train.tracking sinks (unetkit.train.tracking), opened lazily

    def write_epoch(
        self,
        config: RunConfig,
        trained: _Trained,
        state: ckpt.TrainState,
        val: ValResult,
        best: bool,
        *,
        checkpoint: bool,
    ) -> None:
        """Rank 0 writes; everyone waits, so no rank runs ahead of a checkpoint."""
        if self.info.is_main:
            where = f"{self.out} (epoch {state.epoch}, step {state.step})"
            check_finite_model(trained.model, where)
            if best:
                # diffusion saves the EMA of the weights
                saved = getattr(getattr(trained, "task", None), "saved_model", None)
                model = trained.model if saved is None else saved(trained.model, trained.optimizer)
                save(model, self.out / "model.safetensors", metadata=self.metadata)
                self._overlays(val)
            t = config.train
            if checkpoint and t.auto_epochs:
                # config.yaml records the plan as revised so far, so it reproduces the run
                epochs = math.ceil(state.total_steps / (t.steps_per_epoch or 1))
                planned = replace(
                    t, auto_epochs=False, total_steps=state.total_steps, epochs=epochs
                )
                write_config(self.out, replace(config, train=planned))
            if checkpoint:
                ckpt.write_checkpoint(
                    self.out / ckpt.LAST,
                    trained.model,
                    self.metadata,
                    trained.optimizer,
                    trained.scheduler,
                    state,
                )
                if state.epoch > 0 and state.step % (t.steps_per_epoch or 1) == 0:
                    ckpt.keep_ring(self.out, state.epoch, t.keep_checkpoints)
            write_metrics_csv(self.out / "metrics.csv", state.history or [])
            if t.tracking and state.history:  # the same records, also to TensorBoard / MLflow
                self._track(config, state.history[-1], state.step, best)
            with contextlib.suppress(Exception):  # a plot must never stop training
                plot_progress(self.out / "progress.png", state.history or [])
        barrier(self.info)

    def _track(self, config: RunConfig, row: dict[str, Any], step: int, best: bool) -> None:
        from unetkit.train.tracking import Tracker

        if self.tracker is None:
            self.tracker = Tracker(config, self.out)
        images = sorted((self.out / "overlays").glob("*.png")) if best else []
        self.tracker.log_epoch(row, step, images)

    def close(self) -> None:
        """Finish the tracking sinks (the files are complete after every epoch)."""
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None

    def _overlays(self, val: ValResult) -> None:
        folder = self.out / "overlays"
        folder.mkdir(exist_ok=True)
        for i, pred in enumerate(val.predictions):
            s = self.prepared.val[i]
            with contextlib.suppress(Exception):
                write_overlay(
                    folder / f"{s.stem or i}.png",
                    s.image,
                    s.mask,
                    pred,
                    self.prepared.num_classes,
                )
