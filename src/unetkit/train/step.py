"""One optimiser step, and the short timings that size a run (threads, precision, schedule).

:class:`StepRunner` owns what a step touches: the model (in the memory format and precision that
:mod:`unetkit.precision` chose), the DDP-wrapped forward, the optimiser and the task
(:mod:`unetkit.tasks`: batches, network input and target, loss, validation). The loop
(:mod:`unetkit.train.trainer`) calls :meth:`StepRunner.train_step`; the planner calls
:meth:`StepRunner.measure`.
"""

from __future__ import annotations

import copy
import math
import os
import time

import numpy as np
import torch
from torch import Tensor, nn

from unetkit import precision as policy
from unetkit.allocator import keep_freed_memory
from unetkit.config import RunConfig
from unetkit.model import UNet
from unetkit.tasks import Objective, make_objective
from unetkit.train.distributed import DistInfo, all_reduce_max, broadcast_object
from unetkit.train.prefetch import PrefetchedBatches
from unetkit.train.prepare import PreparedData
from unetkit.train.schedule import make_optimizer, make_scheduler


class TrainForward(nn.Module):
    """What DDP wraps: ``x -> logits`` or the deep-supervision list (one forward for both).

    ``x: (B, C_in, *S) -> (B, K, *S)`` or a list of such maps, deepest last.
    """

    def __init__(self, model: UNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, **conditioning: Tensor) -> Tensor | list[Tensor]:
        if conditioning:  # a conditioned task (diffusion): the model takes the extra inputs
            return self.model(x, **conditioning)  # type: ignore[call-arg]
        if self.model.config.deep_supervision:
            return self.model.forward_deep_supervision(x)
        return self.model(x)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of global step ``step`` on ``rank`` (augmentation noise, dropout)."""
    return int(np.random.SeedSequence([seed, step, rank, 17]).generate_state(1)[0])


class StepRunner:
    """The model, optimiser, loss and batches of one run, and its optimiser step.

    Precision and memory format come from :mod:`unetkit.precision`: with
    ``train.precision=auto``, :meth:`choose_precision` times this run's own step in fp32 and in
    bf16 (on throwaway copies) and keeps bf16 only if it was clearly faster in every round;
    :attr:`precision_note` says which was chosen and why.
    """

    def __init__(self, config: RunConfig, prepared: PreparedData, info: DistInfo) -> None:
        self.config = config
        self.prepared = prepared
        self.info = info
        t, m = config.train, config.model
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        keep_freed_memory()  # every step reuses the last one's memory, without page faults
        torch.manual_seed(t.seed)
        self.device = policy.resolve_device(
            t.device, local_rank=info.local_rank if info.distributed else None
        )
        self.model = UNet(m).to(self.device)  # initialised on the CPU: the same weights anywhere
        self.channels_last = policy.use_channels_last(t.channels_last, m.spatial_dims, self.device)
        if self.channels_last:
            self.model = policy.to_channels_last(self.model, m.spatial_dims)
        if t.sync_batchnorm and info.distributed:
            from unetkit.train.syncbn import convert_sync_batchnorm

            convert_sync_batchnorm(self.model)
        self.forward_module: nn.Module = TrainForward(self.model)
        if info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_module = nn.parallel.DistributedDataParallel(
                self.forward_module, device_ids=ids
            )
        self.optimizer = make_optimizer(
            self.model.parameters(), t.optimizer, t.lr, t.weight_decay, t.momentum
        )
        self.scheduler: torch.optim.lr_scheduler.LRScheduler = make_scheduler(
            self.optimizer, 10, 0, "constant"
        )
        # what the task decides: batches, network input and target, loss, validation
        self.task: Objective = make_objective(config, prepared, info)
        # the next batch built in a background thread (exact: batches are pure functions)
        prefetch = t.prefetch == "on" or (t.prefetch == "auto" and self.device.type == "cuda")
        self.batches = PrefetchedBatches(self.task.batches, enabled=prefetch)
        # fp32 until choose_precision() (called once the thread count is settled)
        self.precision: policy.FloatPrecision = "fp32"
        self.precision_note = "precision: fp32"
        self.scaler = policy.grad_scaler("fp32", self.device)

    # -- precision ------------------------------------------------------------------------------

    def _timing_key(self) -> str:
        t = self.config.train
        return f"train:{self.config.model!r}:{t.batch_size}:{self.config.data.patch_size}"

    def choose_precision(self) -> policy.FloatPrecision:
        """Set :attr:`precision` from ``train.precision`` by the policy (``auto``: this step
        timed in both) and :attr:`precision_note`; under DDP every rank takes rank 0's choice.
        """
        requested = self.config.train.precision
        chosen = policy.training_precision(
            requested, self.device, measure=self._time_step_in, key=self._timing_key()
        )
        self.precision = broadcast_object(self.info, chosen)  # type: ignore[assignment]
        self.scaler = policy.grad_scaler(self.precision, self.device)
        self.precision_note = policy.describe_choice(
            requested, self.precision, self.device, key=self._timing_key()
        )
        return self.precision

    def _time_step_in(self, precision: policy.FloatPrecision) -> float:
        """Seconds of one training step of a throwaway copy in ``precision``."""
        saved = self.precision
        try:
            self.precision = precision
            return self.measure(steps=1, with_val=False)[0]
        finally:
            self.precision = saved

    # -- one optimiser step --------------------------------------------------------------------

    def train_step(self, epoch: int, index: int, step: int) -> tuple[float, bool]:
        """One optimiser step on batch ``index`` of ``epoch``; returns (loss, finite).

        The batch ``(B, C, *patch)`` runs in :attr:`precision` and the chosen memory format;
        the loss, gradients and optimiser stay fp32.
        """
        t = self.config.train
        torch.manual_seed(step_seed(t.seed, step, self.info.rank))
        batch = self.task.inputs(self.batches.batch(epoch, index)).to(self.device)
        x = batch.inputs
        if self.channels_last:
            x = policy.to_channels_last(x, self.config.model.spatial_dims)
        with policy.autocast(self.precision, self.device):
            outputs = self.forward_module(x, **batch.conditioning)
        loss = self.task.loss(outputs, batch)
        finite = torch.tensor([0.0 if bool(torch.isfinite(loss)) else 1.0])
        all_reduce_max(self.info, finite)
        if finite.item() > 0:
            return float("nan"), False
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # fp16: scaled; otherwise loss.backward()
        if t.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            if not bool(torch.isfinite(norm)) and not self.scaler.is_enabled():
                return float("nan"), False
        self.scaler.step(self.optimizer)  # fp16: skipped when the scaled gradients overflowed
        self.scaler.update()
        after_step = getattr(self.task, "after_step", None)  # diffusion: the EMA of the weights
        if after_step is not None:
            after_step(self.model, self.optimizer)
        self.scheduler.step()
        return float(loss.detach()), True

    # -- timings -------------------------------------------------------------------------------

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
        """Seconds per training step and per validation pass, on throwaway copies.

        With ``with_val`` every rank gets the slowest rank's numbers; without, its own step time
        and ``0.0``.
        """
        model_copy = copy.deepcopy(self.model)
        saved = (self.model, self.forward_module, self.optimizer, self.scheduler)
        rng = torch.get_rng_state()
        try:
            self.model = model_copy
            self.forward_module = TrainForward(model_copy)
            self.optimizer = make_optimizer(model_copy.parameters(), "adamw", 1e-9, 0.0, 0.0)
            scaler = self.scaler
            self.scaler = policy.grad_scaler(self.precision, self.device)
            self.scheduler = make_scheduler(self.optimizer, 10, 0, "constant")
            times = []
            for i in range(steps + 1):
                start = time.perf_counter()
                self.train_step(10_000 + i, 0, 0)
                policy.synchronize(self.device)
                times.append(time.perf_counter() - start)
            step_time = float(np.median(times[1:]))
            val_time = 0.0
            if with_val:
                start = time.perf_counter()
                n = max(1, math.ceil(len(self.prepared.val) / self.info.world_size))
                self.task.validate(
                    model_copy,
                    [self.prepared.val[0]],
                    DistInfo(),
                    precision=self.precision,
                    channels_last=self.channels_last,
                )
                val_time = (time.perf_counter() - start) * n
        finally:
            self.model, self.forward_module, self.optimizer, self.scheduler = saved
            self.scaler = scaler
            torch.set_rng_state(rng)
        if not with_val:
            return step_time, 0.0
        timing = torch.tensor([step_time, val_time], dtype=torch.float64)
        all_reduce_max(self.info, timing)
        return float(timing[0]), float(timing[1])
