"""The training loop: one code path for one process and for ``torchrun`` (DDP, gloo or NCCL).

:func:`train` takes a resolved :class:`RunConfig` and a run folder and writes (rank 0 only)::

    config.yaml        the fully resolved config (with the planned epochs and steps)
    model.safetensors  the best model by validation Dice, with the metadata prediction needs
    last/              weights, optimiser, scheduler, epoch/step, RNG states (no pickle)
    checkpoints/       the few previous checkpoints (fallback when last/ is damaged)
    metrics.csv        one row per epoch
    progress.png       loss and Dice curves
    overlays/          validation images with truth and prediction

Every random choice is a pure function of ``(seed, epoch, batch, item)`` or ``(seed, step,
rank)``, so ``--resume`` continues exactly: with ``deterministic``, N epochs straight and
N/2 + resume + N/2 give identical weights.

This module is the loop and its signals; the pieces it calls are :mod:`~unetkit.train.step`,
:mod:`~unetkit.train.budget`, :mod:`~unetkit.train.progress`, :mod:`~unetkit.train.resume` and
:mod:`~unetkit.train.epoch_output`; the whole run around it is :func:`unetkit.workflow.fit`.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from unetkit.config import RunConfig
from unetkit.tasks.segment import build_loss
from unetkit.train import checkpoint as ckpt
from unetkit.train.budget import Budget, default_steps_per_epoch, plan_schedule
from unetkit.train.distributed import DistInfo, all_reduce_sum, barrier, broadcast_object
from unetkit.train.epoch_output import EpochWriter, NonFiniteLossError, write_config
from unetkit.train.finetune import load_init_weights, set_encoder_frozen
from unetkit.train.prepare import PreparedData, model_metadata
from unetkit.train.progress import epoch_line, epoch_row, iter_rows, name_list, progress_bar
from unetkit.train.resume import restore, resume_point
from unetkit.train.schedule import make_run_scheduler
from unetkit.train.step import StepRunner
from unetkit.train.validate import ValResult


@dataclass
class TrainResult:
    """How a run ended.

    Attributes:
        run: the run folder.
        epochs: epochs completed; ``steps``: optimiser steps completed.
        best_dice: best validation score (the task's, :mod:`unetkit.tasks`: segment's
            foreground mean Dice, restore's PSNR); ``best_epoch``: when.
        last_dice_per_class: per-class Dice of the last validation.
        stopped: ``finished``, ``time`` (budget spent), ``paused`` (``stop_after``) or
            ``interrupted`` (SIGINT/SIGTERM).
        seconds: wall time of this session.
        signal: the signal that interrupted the run, if any.
        score_name: what ``best_dice`` measures (the task's score: ``dice``, ``psnr``, ...).
    """

    run: Path
    epochs: int
    steps: int
    best_dice: float
    best_epoch: int
    last_dice_per_class: list[float]
    stopped: str
    seconds: float
    signal: int | None = None
    score_name: str = "dice"


class _Signals:
    """SIGINT/SIGTERM set a flag (the loop checkpoints and exits); a second SIGINT aborts."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """One run: the epoch loop, validation and what each epoch writes. Call :meth:`run`;
    build with :func:`train` rather than directly. The optimiser step and the timings are
    :attr:`steps` (:class:`~unetkit.train.step.StepRunner`)."""

    def __init__(
        self,
        config: RunConfig,
        prepared: PreparedData,
        out: Path,
        info: DistInfo,
        *,
        echo: Callable[[str], None] = print,
        quiet: bool = False,
        progress_bar: bool | None = None,
    ) -> None:
        self.config = config
        self.prepared = prepared
        self.out = Path(out)
        self.info = info
        self.quiet = quiet
        self.echo = echo if (info.is_main and not quiet) else (lambda _msg: None)
        tty = sys.stderr.isatty()
        self.progress_bar = (progress_bar if progress_bar is not None else tty) and not quiet
        self.progress_bar = self.progress_bar and info.is_main
        self.val_estimate = 0.0
        self.steps = StepRunner(config, prepared, info)
        patch = config.data.patch_size or ()
        self.metadata = model_metadata(config.data, prepared, tuple(patch))
        self.metadata.update(self.steps.task.metadata())
        self.writer = EpochWriter(self.out, prepared, self.metadata, info)

    @property
    def model(self) -> torch.nn.Module:
        """The network being trained."""
        return self.steps.model

    def _validate(self, keep_predictions: int = 0) -> ValResult:
        return self.steps.task.validate(
            self.steps.model,
            self.prepared.val,
            self.info,
            precision=self.steps.precision,
            channels_last=self.steps.channels_last,
            keep_predictions=keep_predictions,
        )

    def _non_finite(self, epoch: int, index: int, step: int) -> NonFiniteLossError:
        last = self.out / ckpt.LAST
        return NonFiniteLossError(
            f"non-finite loss at epoch {epoch + 1}, step {step + 1} "
            f"(batch of {name_list(self.steps.batches.stems(epoch, index))}; "
            f"lr {self.steps.scheduler.get_last_lr()[0]:.3g}); training stopped and "
            f"nothing from this step was saved. Lower train.lr, use "
            f"train.grad_clip or precision=fp32"
            + (f"; the last good checkpoint is in {last}" if last.is_dir() else "")
        )

    def run(
        self,
        *,
        resume_from: ckpt.Checkpoint | None = None,
        started: float | None = None,
        stop_after: int | None = None,
        adaptive: bool = False,
    ) -> TrainResult:
        """Train to the end of the schedule, the time budget, ``stop_after`` epochs or a signal.

        ``adaptive`` (time-budget runs): after each epoch the planned number of steps is
        revised from the measured time per step, so the schedule ends inside the budget even
        when the machine gets busier or quieter.
        """
        t = self.config.train
        started = time.monotonic() if started is None else started
        steps_per_epoch = t.steps_per_epoch or 1
        planned = t.total_steps or t.epochs * steps_per_epoch
        state = ckpt.TrainState(history=[], total_steps=planned)
        budget = Budget(None if t.max_minutes is None else t.max_minutes * 60.0, started, self.info)
        self.budget = budget
        budget.start_training()  # share 0 from here (the loop starts right after the restore)
        # a budget run's schedule follows the share of the run spent (steps or clock, whichever
        # is further; steps alone when deterministic); otherwise it is a function of the step
        time_share = None if t.deterministic or t.max_minutes is None else budget.share_spent
        self.steps.scheduler, self.clock = make_run_scheduler(
            self.steps.optimizer, t, lambda: state.total_steps, time_share
        )
        if resume_from is not None:
            state = restore(
                resume_from,
                self.steps.model,
                self.steps.optimizer,
                self.steps.scheduler,
                state.total_steps,
            )
        val_seconds = self.val_estimate
        budget.val_seconds = val_seconds
        if self.clock is not None:
            self.clock.resume_from(state.schedule_share)
        stopped = "finished"
        last_val: ValResult | None = None
        with _Signals() as signals:
            while state.step < state.total_steps and not state.finished:
                epoch = state.step // steps_per_epoch
                first_index = state.step - epoch * steps_per_epoch
                epoch_start = time.monotonic()
                loss_sum, loss_n = 0.0, 0
                bar = None
                if self.progress_bar:
                    bar = progress_bar(epoch, t.epochs, first_index, steps_per_epoch)
                reason = None
                session_start, session_step = time.monotonic(), state.step
                last_index = min(steps_per_epoch, state.total_steps - epoch * steps_per_epoch)
                for index in range(first_index, last_index):
                    if t.freeze_encoder_steps:  # fine-tuning: a first phase with a fixed encoder
                        set_encoder_frozen(self.steps.model, state.step < t.freeze_encoder_steps)
                    loss, ok = self.steps.train_step(epoch, index, state.step)
                    if not ok:
                        raise self._non_finite(epoch, index, state.step)
                    state.step += 1
                    loss_sum += loss
                    loss_n += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}")
                    reason = budget.should_stop(signals.received is not None, val_seconds)
                    if reason is None and self.clock is not None and self.clock.share >= 1.0:
                        reason = "time"  # the clock's schedule is at its end
                    if reason:
                        break
                if bar is not None:
                    bar.close()
                complete = state.step % steps_per_epoch == 0 or state.step >= state.total_steps
                if complete:
                    state.epoch = epoch + 1
                totals = torch.tensor([loss_sum, float(loss_n)], dtype=torch.float64)
                all_reduce_sum(self.info, totals)
                train_loss = float(totals[0] / max(totals[1], 1.0))
                v_start = time.monotonic()
                last_val = self._validate(keep_predictions=t.overlays)
                val_seconds = time.monotonic() - v_start
                budget.val_seconds = val_seconds
                row = epoch_row(
                    epoch + 1,
                    state.step,
                    train_loss,
                    last_val,
                    float(self.steps.scheduler.get_last_lr()[0]),
                    time.monotonic() - epoch_start,
                    self._class_names(),
                    partial=not complete,
                )
                state.history = [*(state.history or []), row]
                score = last_val.score  # the task's "best" (segment: mean Dice)
                improved = not math.isnan(score) and score > state.best_dice
                if improved or state.best_epoch == 0:
                    state.best_dice = score if not math.isnan(score) else -1.0
                    state.best_epoch = epoch + 1
                state.elapsed_seconds += time.monotonic() - epoch_start
                if adaptive and reason is None and state.step < state.total_steps:
                    step_seconds = (time.monotonic() - session_start - val_seconds) / max(
                        1, state.step - session_step
                    )
                    plan = budget.replan(state.step, steps_per_epoch, val_seconds, step_seconds)
                    if plan is not None:
                        state.total_steps = plan
                state.finished = state.step >= state.total_steps
                if self.clock is not None:
                    state.schedule_share = self.clock.share
                    if self.clock.share >= 1.0:  # the clock ran the schedule to its end
                        state.finished, state.total_steps = True, state.step
                if reason is None and stop_after is not None and state.epoch >= stop_after:
                    reason = "paused"
                write_now = (
                    reason is not None
                    or state.finished
                    or (complete and state.epoch % t.checkpoint_every == 0)
                )
                w_start = time.monotonic()
                self.writer.write_epoch(
                    self.config,
                    self.steps,
                    state,
                    last_val,
                    improved or state.best_epoch == epoch + 1,
                    checkpoint=write_now,
                )
                budget.write_seconds = time.monotonic() - w_start
                self.echo(epoch_line(row, steps_per_epoch, state.total_steps))
                if reason is not None:
                    stopped = "finished" if state.finished else reason
                    break
        self.writer.close()
        self.steps.batches.close()
        return TrainResult(
            run=self.out,
            epochs=state.epoch,
            steps=state.step,
            best_dice=state.best_dice,
            best_epoch=state.best_epoch,
            last_dice_per_class=[] if last_val is None else [float(v) for v in last_val.dice],
            stopped=stopped,
            seconds=time.monotonic() - started,
            signal=signals.received,
            score_name=self.steps.task.score_name,
        )

    def _class_names(self) -> tuple[str, ...]:
        return self.config.data.class_names or tuple(
            str(k) for k in range(self.prepared.num_classes)
        )


def train(
    config: RunConfig,
    prepared: PreparedData,
    out: str | Path,
    info: DistInfo,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    quiet: bool = False,
    progress_bar: bool | None = None,
    echo: Callable[[str], None] = print,
    started: float | None = None,
) -> tuple[TrainResult, RunConfig]:
    """Plan (when ``train.auto_epochs``), write ``config.yaml`` and run.

    With ``resume`` the newest good checkpoint in ``out`` is loaded first and ``config`` must
    be the run's own (from its ``config.yaml``). ``train.precision=auto`` is resolved here
    (:mod:`unetkit.precision`, by timing this run's step) and ``config.yaml`` records the
    choice, so a resumed run keeps it. Returns the result and the config used. This is the
    training alone; :func:`unetkit.fit` adds the recipe, data preparation and int8
    calibration.
    """
    out = Path(out)
    say = echo if (info.is_main and not quiet) else (lambda _m: None)
    started = time.monotonic() if started is None else started
    resume_from = resume_point(out, info, say) if resume else None
    t = config.train
    if t.steps_per_epoch is None:
        spe = default_steps_per_epoch(config, len(prepared.train), info.world_size)
        config = replace(config, train=replace(t, steps_per_epoch=spe))
    trainer = Trainer(
        config, prepared, out, info, echo=echo, quiet=quiet, progress_bar=progress_bar
    )
    if config.train.init_from and not resume:  # fine-tuning (a resume restores its checkpoint)
        load_init_weights(trainer.steps.model, config.train.init_from)
    threads = config.train.threads
    if threads == 0 and (config.train.deterministic or info.distributed):
        threads = torch.get_num_threads() if info.distributed else 1
    if threads > 0:
        torch.set_num_threads(threads)
    else:
        threads = trainer.steps.choose_threads()
        say(f"threads: {threads} (measured fastest on this machine now)")
    device = trainer.steps.device
    if device.type != "cpu":
        say(f"device: {device} ({torch.cuda.get_device_name(device)})")
    precision = trainer.steps.choose_precision()
    if config.train.precision == "auto":
        say(trainer.steps.precision_note)
    config = replace(config, train=replace(config.train, precision=precision))
    trainer.config = trainer.steps.config = config
    adaptive = config.train.auto_epochs and config.train.max_minutes is not None
    if adaptive and not resume:
        step_s, val_s = trainer.steps.measure()
        trainer.val_estimate = val_s
        epochs, spe = plan_schedule(config, step_s, val_s, time.monotonic() - started)
        epochs, spe = broadcast_object(info, (epochs, spe))  # type: ignore[misc]
        config = replace(config, train=replace(config.train, epochs=epochs, steps_per_epoch=spe))
        trainer.config = trainer.steps.config = config
        say(
            f"measured {step_s:.2f} s per step, {val_s:.1f} s per validation; planned "
            f"{epochs} epochs x {spe} steps in {config.train.max_minutes:g} min"
        )
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_config(out, config)
    barrier(info)
    result = trainer.run(
        resume_from=resume_from, started=started, stop_after=stop_after, adaptive=adaptive
    )
    return result, config


__all__ = [
    "NonFiniteLossError",
    "TrainResult",
    "Trainer",
    "build_loss",
    "default_steps_per_epoch",
    "iter_rows",
    "plan_schedule",
    "train",
    "write_config",
]
