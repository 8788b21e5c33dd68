"""``task=diffusion``: the same ``UNet``, time-conditioned, learns to denoise (DDPM).

Each step draws, from torch's generator right after the step's seed (so a resumed run draws
the same), a noise level ``t`` per image, the noise and the label dropout
(:func:`unetkit.diffusion.training.noised_batch`); the network sees ``x_t`` with
``t`` (and the class) and the loss is the mean squared error to ``eps`` or ``v``
(``diffusion.prediction``).

After every optimiser step the exponential moving average of the weights is updated in the
optimiser's state (:mod:`unetkit.train.ema`), so checkpoints carry it and resumes continue
it exactly. Validation scores the EMA weights: the same loss on the held-out images, each with
its own seeded ``t`` and noise, so the number is repeatable; the best model (the highest
``-loss``) is saved with the EMA weights (``model.safetensors``), the raw weights stay in the
checkpoint (``last/``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.config import RunConfig
from unetkit.data.sample import Sample
from unetkit.diffusion.schedule import NoiseSchedule
from unetkit.diffusion.training import noised_batch
from unetkit.precision import FloatPrecision, autocast
from unetkit.tasks.base import TaskBatch
from unetkit.tasks.diffusion_data import DiffusionBatch, DiffusionBatches, DiffusionPrepared
from unetkit.train.distributed import DistInfo, all_reduce_sum
from unetkit.train.ema import ema_copy, update_ema
from unetkit.train.validate import ValResult


class DiffusionObjective:
    """DDPM training of a time-conditioned U-Net (see the module doc); an ``Objective``."""

    name = "diffusion"
    score_name = "neg_loss"

    def __init__(self, config: RunConfig, prepared: DiffusionPrepared, info: DistInfo) -> None:
        m = config.model
        if not m.time_conditioning:
            raise ValueError(
                "model.time_conditioning: task=diffusion needs a time-conditioned U-Net; set "
                "model.time_conditioning=true (or leave it unset)"
            )
        if m.out_channels != prepared.in_channels or m.in_channels != prepared.in_channels:
            raise ValueError(
                f"model.in_channels/out_channels: a denoiser outputs what it reads; both must "
                f"be the images' {prepared.in_channels} channel(s)"
            )
        if m.num_class_labels not in (0, prepared.num_labels):
            raise ValueError(
                f"model.num_class_labels: {m.num_class_labels}, but the data has "
                f"{prepared.num_labels} classes; use {prepared.num_labels} or 0"
            )
        self.config, self.prepared, self.options = config, prepared, config.diffusion
        self.schedule = NoiseSchedule.make(self.options.schedule, self.options.timesteps)
        self.conditional = m.num_class_labels > 0
        self.null = m.num_class_labels
        self.optimizer: torch.optim.Optimizer | None = None
        patch = config.data.patch_size or prepared.train[0].image.shape[1:]
        self.batches = DiffusionBatches(
            prepared,
            config.train.batch_size,
            patch,
            p_flip=config.data.augment.p_flip,
            seed=config.train.seed,
            rank=info.rank,
            world_size=info.world_size,
        )

    def inputs(self, batch: DiffusionBatch) -> TaskBatch:
        """``x_t`` with ``t`` (and labels, some dropped) as conditioning; target eps or v."""
        nb = noised_batch(
            self.schedule,
            batch.images,
            batch.labels if self.conditional else None,
            prediction=self.options.prediction,
            label_dropout=self.options.label_dropout,
            null_label=self.null,
        )
        cond = {"t": nb.t}
        if nb.labels is not None:
            cond["labels"] = nb.labels
        return TaskBatch(nb.x_t, nb.target, None, cond)

    def loss(self, outputs: Tensor | list[Tensor], batch: TaskBatch) -> Tensor:
        """Mean squared error to the target (eps or v)."""
        out = outputs[0] if isinstance(outputs, list) else outputs
        return F.mse_loss(out.float(), batch.target)

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Update the EMA of the weights (kept in ``optimizer``'s state)."""
        self.optimizer = optimizer
        update_ema(model, optimizer, self.options.ema_decay)

    def saved_model(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> nn.Module:
        """What ``model.safetensors`` holds: the EMA weights."""
        return ema_copy(model, optimizer)

    @torch.no_grad()
    def validate(
        self,
        model: nn.Module,
        samples: Sequence[Sample],
        info: DistInfo,
        *,
        precision: FloatPrecision = "fp32",
        channels_last: bool = False,
        keep_predictions: int = 0,
    ) -> ValResult:
        """The loss of the EMA weights on ``samples``, each with its own seeded noise."""
        net = ema_copy(model, self.optimizer) if self.optimizer is not None else model
        was_training = model.training
        net.eval()
        sums = torch.zeros(2, dtype=torch.float64)
        mine = list(range(info.rank, len(samples), info.world_size))
        for start in range(0, len(mine), 64):
            idx = mine[start : start + 64]
            x0 = torch.from_numpy(np.stack([samples[i].image for i in idx]))
            g = torch.Generator().manual_seed(idx[0])
            labels = None
            if self.conditional:
                labels = torch.tensor([self.prepared.labels.get(samples[i].stem, 0) for i in idx])
            nb = noised_batch(
                self.schedule, x0, labels, prediction=self.options.prediction, generator=g
            )
            cond: dict[str, Tensor] = {"t": nb.t}
            if nb.labels is not None:
                cond["labels"] = nb.labels
            with autocast(precision, x0.device):
                out = net(nb.x_t, **cond)
            err = (out.float() - nb.target) ** 2
            sums[0] += float(err.flatten(1).mean(1).sum())
            sums[1] += len(idx)
        all_reduce_sum(info, sums)
        model.train(was_training)
        loss = float(sums[0] / max(1.0, float(sums[1])))
        return ValResult(
            loss=loss,
            dice=np.array([]),
            iou=np.array([]),
            mean_dice=math.nan,
            mean_iou=math.nan,
            predictions=[],
            extra={},
            best_score=-loss,
        )

    def metadata(self) -> dict[str, Any]:
        """``task`` and what sampling needs: schedule, target, classes, the intensity scale."""
        o, p = self.options, self.prepared
        return {
            "task": "diffusion",
            "diffusion": {
                "timesteps": o.timesteps,
                "schedule": o.schedule,
                "prediction": o.prediction,
                "ema_decay": o.ema_decay,
                "weights": "ema",
                "num_labels": self.config.model.num_class_labels,
                "label_names": p.label_names if self.conditional else [],
                "scale": list(p.scale),
                "builtin": "digits" if p.builtin else None,
                "digits_size": o.digits_size,
                "image_size": list(self.config.data.patch_size or ()),
            },
        }
