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
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unetkit.config import RunConfig
from unetkit.errors import UnetkitError
from unetkit.io.atomic import atomic_save_bytes
from unetkit.model import UNet
from unetkit.modelfile import load_state_into, save
from unetkit.train import checkpoint as ckpt
from unetkit.train.distributed import (
    DistInfo,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    broadcast_object,
)
from unetkit.train.loader import ShardedBatches, WeightMapConfig
from unetkit.train.losses import deep_supervision_loss, make_loss
from unetkit.train.prepare import PreparedData, class_frequencies, model_metadata
from unetkit.train.report import plot_progress, write_metrics_csv, write_overlay
from unetkit.train.schedule import lr_factor, make_optimizer, make_scheduler
from unetkit.train.validate import ValResult, validate
from unetkit.train.weight_map import border_weight_map

log = logging.getLogger(__name__)


class NonFiniteLossError(UnetkitError):
    """The loss or the gradients became NaN or infinite; nothing from that step was saved."""


@dataclass
class TrainResult:
    """How a run ended.

    Attributes:
        run: the run folder.
        epochs: epochs completed; ``steps``: optimiser steps completed.
        best_dice: best validation Dice (foreground mean); ``best_epoch``: when.
        last_dice_per_class: per-class Dice of the last validation.
        stopped: ``finished``, ``time`` (budget spent), ``paused`` (``stop_after``) or
            ``interrupted`` (SIGINT/SIGTERM).
        seconds: wall time of this session.
        signal: the signal that interrupted the run, if any.
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


class _TrainForward(nn.Module):
    """What DDP wraps: ``x -> logits`` or the deep-supervision list (one forward for both)."""

    def __init__(self, model: UNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.model.config.deep_supervision:
            return self.model.forward_deep_supervision(x)
        return self.model(x)


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


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank, 17]).generate_state(1)[0])


def _memory_format(spatial_dims: int) -> torch.memory_format | None:
    return {2: torch.channels_last, 3: torch.channels_last_3d}.get(spatial_dims)


def build_loss(config: RunConfig, freqs: np.ndarray) -> nn.Module:
    """The configured loss with ``ignore_index`` and class weights."""
    t, d = config.train, config.data
    kwargs: dict[str, Any] = {"ignore_index": d.ignore_index}
    if t.class_weighting == "balanced":
        present = np.where(freqs > 0, freqs, 1.0)
        w = 1.0 / (len(freqs) * present)
        w = np.where(freqs > 0, w / w[freqs > 0].mean(), 0.0)
        if t.loss in ("ce", "dice_ce", "weighted_ce"):
            kwargs["class_weights"] = [float(v) for v in w]
        elif t.loss == "focal":
            kwargs["alpha"] = [float(v) for v in w]
    return make_loss(t.loss, **kwargs)


def _name_list(stems: list[str], limit: int = 8) -> str:
    """``a, b, c`` (unique, in order), at most ``limit`` names then ``and N more``."""
    unique = list(dict.fromkeys(stems))
    shown = ", ".join(unique[:limit])
    return shown + (f" and {len(unique) - limit} more" if len(unique) > limit else "")


def _check_finite_model(model: nn.Module, where: str) -> None:
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise NonFiniteLossError(
                f"{where}: parameter {name} is not finite; not saving a broken model"
            )


class Trainer:
    """One run: call :meth:`run`. Build with :func:`train` rather than directly."""

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
        self.write_seconds = 1.0
        t, m = config.train, config.model
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(t.seed)
        self.model = UNet(m)
        self.memory_format = _memory_format(m.spatial_dims) if t.channels_last else None
        if self.memory_format is not None:
            self.model = self.model.to(memory_format=self.memory_format)
        if t.sync_batchnorm and info.distributed:
            from unetkit.train.syncbn import convert_sync_batchnorm

            convert_sync_batchnorm(self.model)
        self.forward_module: nn.Module = _TrainForward(self.model)
        if info.distributed:
            self.forward_module = nn.parallel.DistributedDataParallel(self.forward_module)
        self.optimizer = make_optimizer(
            self.model.parameters(), t.optimizer, t.lr, t.weight_decay, t.momentum
        )
        self.freqs = class_frequencies(prepared.raw_train, prepared.num_classes)
        self.loss_fn = build_loss(config, self.freqs)
        self.autocast = t.precision == "bf16"
        patch = config.data.patch_size or ()
        self.metadata = model_metadata(config.data, prepared, tuple(patch))
        wm = None
        if t.loss == "weighted_ce":
            wm = WeightMapConfig(w0=t.border_w0, sigma=t.border_sigma)
        self.batches = ShardedBatches(
            prepared.train,
            t.batch_size,
            patch,
            augment=config.data.augment,
            seed=t.seed,
            rank=info.rank,
            world_size=info.world_size,
            foreground_share=config.data.foreground_share,
            weight_map=wm,
            flips=config.data.flips,
        )
        self.val_weights: list[np.ndarray | None] | None = None
        if wm is not None:
            self.val_weights = [
                border_weight_map(
                    s.instances if s.instances is not None else s.mask,
                    w0=wm.w0,
                    sigma=wm.sigma,
                    from_components=s.instances is None,
                )
                for s in prepared.val
            ]

    # -- one optimiser step ------------------------------------------------------------------

    def _loss(self, outputs: Tensor | list[Tensor], y: Tensor, w: Tensor | None) -> Tensor:
        if isinstance(outputs, list):
            outputs = [o.float() for o in outputs]
            return deep_supervision_loss(
                self.loss_fn, outputs, y, self.config.train.deep_supervision_weights, w
            )
        return self.loss_fn(outputs.float(), y, w)

    def train_step(self, epoch: int, index: int, step: int) -> tuple[float, bool]:
        """One optimiser step on batch ``index`` of ``epoch``; returns (loss, finite)."""
        t = self.config.train
        torch.manual_seed(_step_seed(t.seed, step, self.info.rank))
        batch = self.batches.batch(epoch, index)
        x = batch.images
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            outputs = self.forward_module(x)
        loss = self._loss(outputs, batch.masks, batch.weights)
        finite = torch.tensor([0.0 if bool(torch.isfinite(loss)) else 1.0])
        all_reduce_max(self.info, finite)
        if finite.item() > 0:
            return float("nan"), False
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            if not bool(torch.isfinite(norm)):
                return float("nan"), False
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach()), True

    # -- planning ------------------------------------------------------------------------------

    def choose_threads(self) -> int:
        """Pick 1 thread or all cores, whichever trains faster here and now.

        On a CPU shared with other jobs, OpenMP threads that wait for each other can make two
        threads several times slower than one; on a quiet machine all cores win. Measured on
        throwaway copies, so training itself is unaffected.
        """
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        if cores <= 1:
            torch.set_num_threads(1)
            return 1
        timings = {}
        for n in (1, cores):
            torch.set_num_threads(n)
            timings[n], _ = self.measure(steps=1, with_val=False)
        if 0.8 < timings[cores] / timings[1] < 1.25:  # close: measure both once more
            for n in (1, cores):
                torch.set_num_threads(n)
                timings[n] = min(timings[n], self.measure(steps=1, with_val=False)[0])
        best = min(timings, key=timings.__getitem__)
        torch.set_num_threads(best)
        return best

    def measure(self, steps: int = 3, with_val: bool = True) -> tuple[float, float]:
        """Seconds per training step and per validation pass, on throwaway copies."""
        model_copy = copy.deepcopy(self.model)
        saved = (self.model, self.forward_module, self.optimizer)
        rng = torch.get_rng_state()
        try:
            self.model = model_copy
            self.forward_module = _TrainForward(model_copy)
            self.optimizer = make_optimizer(model_copy.parameters(), "adamw", 1e-9, 0.0, 0.0)
            self.scheduler = make_scheduler(self.optimizer, 10, 0, "constant")
            times = []
            for i in range(steps + 1):
                start = time.perf_counter()
                self.train_step(10_000 + i, 0, 0)
                times.append(time.perf_counter() - start)
            step_time = float(np.median(times[1:]))
            if not with_val:
                return step_time, 0.0
            start = time.perf_counter()
            n = max(1, math.ceil(len(self.prepared.val) / self.info.world_size))
            first = [self.prepared.val[0]]
            validate(
                model_copy,
                first,
                self.loss_fn,
                self.prepared.num_classes,
                self.config.data.ignore_index,
                DistInfo(),
                autocast=self.autocast,
                channels_last=self.memory_format is not None,
            )
            val_time = (time.perf_counter() - start) * n
        finally:
            self.model, self.forward_module, self.optimizer = saved
            torch.set_rng_state(rng)
        timing = torch.tensor([step_time, val_time], dtype=torch.float64)
        all_reduce_max(self.info, timing)
        return float(timing[0]), float(timing[1])

    # -- the loop -----------------------------------------------------------------------------

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
        warmup = round(t.warmup_fraction * state.total_steps)
        # the schedule reads the current plan, which time-budget runs revise after each epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(step, state.total_steps, warmup, t.schedule),
        )
        if resume_from is not None:
            load_state_into(self.model, resume_from.model_tensors, str(resume_from.folder))
            self.optimizer.load_state_dict(resume_from.optimizer)
            self.scheduler.load_state_dict(resume_from.scheduler)
            ckpt.set_rng_states(resume_from.rng_tensors, resume_from.rng_meta)
            total = state.total_steps
            state = resume_from.state
            state.total_steps = total
            state.history = [r for r in state.history or [] if r["epoch"] <= state.epoch]
        budget = None if t.max_minutes is None else t.max_minutes * 60.0
        val_seconds = self.val_estimate
        stopped = "finished"
        last_val: ValResult | None = None
        with _Signals() as signals:
            while state.step < state.total_steps:
                epoch = state.step // steps_per_epoch
                first_index = state.step - epoch * steps_per_epoch
                epoch_start = time.monotonic()
                loss_sum, loss_n = 0.0, 0
                bar = self._bar(epoch, first_index, steps_per_epoch)
                reason = None
                session_start, session_step = time.monotonic(), state.step
                last_index = min(steps_per_epoch, state.total_steps - epoch * steps_per_epoch)
                for index in range(first_index, last_index):
                    loss, ok = self.train_step(epoch, index, state.step)
                    if not ok:
                        raise NonFiniteLossError(
                            f"non-finite loss at epoch {epoch + 1}, step {state.step + 1} "
                            f"(batch of {_name_list(self.batches.stems(epoch, index))}; "
                            f"lr {self.scheduler.get_last_lr()[0]:.3g}); training stopped and "
                            f"nothing from this step was saved. Lower train.lr, use "
                            f"train.grad_clip or precision=fp32"
                            + (
                                f"; the last good checkpoint is in {self.out / ckpt.LAST}"
                                if (self.out / ckpt.LAST).is_dir()
                                else ""
                            )
                        )
                    state.step += 1
                    loss_sum += loss
                    loss_n += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}")
                    reason = self._should_stop(signals, budget, started, val_seconds)
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
                last_val = validate(
                    self.model,
                    self.prepared.val,
                    self.loss_fn,
                    self.prepared.num_classes,
                    self.config.data.ignore_index,
                    self.info,
                    weights=self.val_weights,
                    autocast=self.autocast,
                    channels_last=self.memory_format is not None,
                    keep_predictions=t.overlays,
                )
                val_seconds = time.monotonic() - v_start
                row = self._row(
                    epoch + 1,
                    state.step,
                    train_loss,
                    last_val,
                    time.monotonic() - epoch_start,
                    partial=not complete,
                )
                state.history = [*(state.history or []), row]
                improved = not math.isnan(last_val.mean_dice) and (
                    last_val.mean_dice > state.best_dice
                )
                if improved or state.best_epoch == 0:
                    state.best_dice = (
                        last_val.mean_dice if not math.isnan(last_val.mean_dice) else -1.0
                    )
                    state.best_epoch = epoch + 1
                state.elapsed_seconds += time.monotonic() - epoch_start
                if adaptive and reason is None and state.step < state.total_steps:
                    self._replan(
                        state,
                        started,
                        budget,
                        val_seconds,
                        (time.monotonic() - session_start - val_seconds)
                        / max(1, state.step - session_step),
                    )
                state.finished = state.step >= state.total_steps
                if reason is None and stop_after is not None and state.epoch >= stop_after:
                    reason = "paused"
                write_now = (
                    reason is not None
                    or state.finished
                    or (complete and state.epoch % t.checkpoint_every == 0)
                )
                w_start = time.monotonic()
                self._write_epoch(
                    state, last_val, improved or state.best_epoch == epoch + 1, checkpoint=write_now
                )
                self.write_seconds = time.monotonic() - w_start
                self.echo(self._line(row, steps_per_epoch, state.total_steps))
                if reason is not None:
                    stopped = "finished" if state.finished else reason
                    break
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
        )

    def _replan(
        self,
        state: ckpt.TrainState,
        started: float,
        budget: float | None,
        val_seconds: float,
        step_seconds: float,
    ) -> None:
        if budget is None:
            return
        spe = self.config.train.steps_per_epoch or 1
        left = budget - (time.monotonic() - started) - self._reserve(val_seconds)
        per_step = step_seconds + (val_seconds + self.write_seconds) / spe
        plan = torch.tensor([state.step + max(1.0, 0.95 * left / max(per_step, 1e-3))])
        all_reduce_max(self.info, plan)  # every rank keeps the same plan
        state.total_steps = int(plan.item())

    def _reserve(self, val_seconds: float) -> float:
        """Seconds kept free at the end of a budget: a last validation and checkpoint."""
        return 1.2 * (val_seconds + self.write_seconds) + 1.0

    def _should_stop(
        self, signals: _Signals, budget: float | None, started: float, val_seconds: float
    ) -> str | None:
        flags = torch.zeros(2)
        if signals.received is not None:
            flags[0] = 1.0
        if budget is not None and time.monotonic() - started + self._reserve(val_seconds) > budget:
            flags[1] = 1.0
        all_reduce_max(self.info, flags)
        if flags[0] > 0:
            return "interrupted"
        if flags[1] > 0:
            return "time"
        return None

    def _bar(self, epoch: int, first: int, total: int) -> Any:
        if not self.progress_bar:
            return None
        from tqdm import tqdm

        return tqdm(
            total=total,
            initial=first,
            desc=f"epoch {epoch + 1}/{self.config.train.epochs}",
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def _row(
        self,
        epoch: int,
        step: int,
        train_loss: float,
        val: ValResult,
        seconds: float,
        *,
        partial: bool,
    ) -> dict[str, Any]:
        names = self.config.data.class_names or tuple(
            str(k) for k in range(self.prepared.num_classes)
        )
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "val_loss": val.loss,
            "val_dice": val.mean_dice,
            "val_iou": val.mean_iou,
            "lr": float(self.scheduler.get_last_lr()[0]),
            "seconds": seconds,
        }
        for name, d in zip(names, val.dice, strict=True):
            row[f"dice_{name}"] = float(d)
        if partial:
            row["partial"] = 1
        return row

    def _line(self, row: dict[str, Any], steps_per_epoch: int, total_steps: int) -> str:
        return (
            f"epoch {row['epoch']}/{math.ceil(total_steps / steps_per_epoch)} "
            f"step {row['step']}/{total_steps}"
            f"  train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}"
            f"  val_dice {row['val_dice']:.4f}  val_iou {row['val_iou']:.4f}"
            f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
        )

    def _write_epoch(
        self, state: ckpt.TrainState, val: ValResult, best: bool, *, checkpoint: bool
    ) -> None:
        """Rank 0 writes; everyone waits, so no rank runs ahead of a checkpoint."""
        if self.info.is_main:
            _check_finite_model(self.model, f"{self.out} (epoch {state.epoch}, step {state.step})")
            if best:
                save(self.model, self.out / "model.safetensors", metadata=self.metadata)
                self._overlays(val)
            if checkpoint and self.config.train.auto_epochs:
                # config.yaml records the plan as revised so far, so it reproduces the run
                t = self.config.train
                write_config(
                    self.out,
                    replace(
                        self.config,
                        train=replace(
                            t,
                            auto_epochs=False,
                            total_steps=state.total_steps,
                            epochs=math.ceil(state.total_steps / (t.steps_per_epoch or 1)),
                        ),
                    ),
                )
            if checkpoint:
                ckpt.write_checkpoint(
                    self.out / ckpt.LAST,
                    self.model,
                    self.metadata,
                    self.optimizer,
                    self.scheduler,
                    state,
                )
                if state.epoch > 0 and state.step % (self.config.train.steps_per_epoch or 1) == 0:
                    ckpt.keep_ring(self.out, state.epoch, self.config.train.keep_checkpoints)
            write_metrics_csv(self.out / "metrics.csv", state.history or [])
            with contextlib.suppress(Exception):  # a plot must never stop training
                plot_progress(self.out / "progress.png", state.history or [])
        barrier(self.info)

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


def plan_schedule(
    config: RunConfig, step_seconds: float, val_seconds: float, setup_seconds: float
) -> tuple[int, int]:
    """``(epochs, steps_per_epoch)`` that fit ``train.max_minutes``.

    Spends about 88% of what is left after setup on training steps and validations, with
    between 4 and 12 validations (epochs) and at least 10 steps per epoch.
    """
    t = config.train
    assert t.max_minutes is not None
    left = max(0.0, t.max_minutes * 60.0 * 0.88 - setup_seconds)
    epochs = int(np.clip(left * 0.15 / max(val_seconds + 0.5, 1e-3), 4, 12))
    train_seconds = left - epochs * (val_seconds + 0.5)
    steps = max(10 * epochs, int(train_seconds / max(step_seconds, 1e-3)))
    steps_per_epoch = max(10, steps // epochs)
    return epochs, steps_per_epoch


def write_config(out: Path, config: RunConfig) -> None:
    """``config.yaml``: the resolved config, atomically."""
    atomic_save_bytes(Path(out) / "config.yaml", config.to_yaml().encode())


def default_steps_per_epoch(config: RunConfig, num_train: int, world_size: int) -> int:
    """Enough global batches to see every training image about twice, at least 10."""
    global_batch = config.train.batch_size * world_size
    return max(10, math.ceil(2 * num_train / global_batch))


def iter_rows(history: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows of a history (for callers that print a summary)."""
    yield from history


def _resume_point(out: Path, info: DistInfo, echo: Callable[[str], None]) -> ckpt.Checkpoint | None:
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
    be the run's own (from its ``config.yaml``). Returns the result and the config used.
    """
    out = Path(out)
    started = time.monotonic() if started is None else started
    resume_from = (
        _resume_point(out, info, echo if not quiet else lambda _m: None) if resume else None
    )
    if resume_from is not None and resume_from.state.finished and not resume:
        resume_from = None
    t = config.train
    if t.steps_per_epoch is None:
        config = replace(
            config,
            train=replace(
                t,
                steps_per_epoch=default_steps_per_epoch(
                    config, len(prepared.train), info.world_size
                ),
            ),
        )
    trainer = Trainer(
        config, prepared, out, info, echo=echo, quiet=quiet, progress_bar=progress_bar
    )
    threads = config.train.threads
    if threads == 0 and (config.train.deterministic or info.distributed):
        threads = torch.get_num_threads() if info.distributed else 1
    if threads > 0:
        torch.set_num_threads(threads)
    else:
        threads = trainer.choose_threads()
        if info.is_main and not quiet:
            echo(f"threads: {threads} (measured fastest on this machine now)")
    adaptive = config.train.auto_epochs and config.train.max_minutes is not None
    if adaptive and not resume:
        step_s, val_s = trainer.measure()
        trainer.val_estimate = val_s
        setup = time.monotonic() - started
        epochs, spe = plan_schedule(config, step_s, val_s, setup)
        plan = broadcast_object(info, (epochs, spe))
        epochs, spe = plan  # type: ignore[misc]
        config = replace(
            config,
            train=replace(config.train, epochs=epochs, steps_per_epoch=spe),
        )
        trainer.config = config
        if info.is_main and not quiet:
            echo(
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
    if (
        info.is_main
        and config.train.int8_calibration
        and result.signal is None
        and result.stopped != "paused"
    ):
        add_int8_calibration(
            out / "model.safetensors", prepared, echo=echo if not quiet else lambda _m: None
        )
    barrier(info)
    return result, config


def add_int8_calibration(
    path: Path, prepared: PreparedData, *, echo: Callable[[str], None] = print
) -> None:
    """Calibrate the saved best model for int8 and store the result in its metadata.

    Ranges come from training patches, the agreement from the validation images. A model the
    int8 path does not cover is left as it is, with a note.
    """
    from unetkit.infer.calibration import agreement_of, default_precision_note, int8_calibration
    from unetkit.infer.int8 import Int8Unsupported
    from unetkit.modelfile import load_with_metadata

    if not path.is_file():
        return
    model, metadata = load_with_metadata(path)
    patch = metadata.get("patch_size") or [128] * model.config.spatial_dims
    try:
        entry = int8_calibration(
            model,
            [s.image for s in prepared.train],
            [s.image for s in prepared.val],
            patch=patch,
        )
    except Int8Unsupported as exc:
        echo(f"int8: not calibrated ({str(exc).removeprefix('int8: ')}); prediction uses fp32")
        return
    save(model, path, metadata={**metadata, "int8": entry})
    agreement = agreement_of(entry)
    if agreement is None:
        echo("int8: calibrated; no validation images to measure agreement, prediction uses fp32")
        return
    echo(
        f"int8: calibrated on {entry['patches']} training patches; label maps agree with fp32 at "
        f"foreground Dice {agreement:.4f} on {entry['agreement']['images']} validation images; "
        f"{default_precision_note(entry)}"
    )
