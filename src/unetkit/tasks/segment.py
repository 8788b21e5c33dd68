"""``task=segment``: a class per pixel (today's behaviour, unchanged bit for bit).

Network input: the normalised patch; target: the label map; loss: ``train.loss`` (with class
weights, ``ignore_index``, border weights for ``weighted_ce``, deep supervision); validation:
confusion matrix, per-class Dice and IoU; the best model has the highest mean foreground Dice.
With ``train.ema_decay`` the validated and saved weights are the exponential moving average of
the trained ones (kept in the optimiser's state, so checkpoints and resumes carry it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unetkit.config import RunConfig
from unetkit.data.sample import Sample
from unetkit.precision import FloatPrecision
from unetkit.tasks.base import TaskBatch
from unetkit.train.distributed import DistInfo
from unetkit.train.ema import ema_copy, update_ema
from unetkit.train.loader import ShardedBatches, TorchBatch, WeightMapConfig, sample_weights
from unetkit.train.losses import deep_supervision_loss, make_loss
from unetkit.train.prepare import PreparedData, class_frequencies
from unetkit.train.validate import ValResult, validate


def build_loss(config: RunConfig, freqs: np.ndarray) -> nn.Module:
    """The configured loss with ``ignore_index`` and class weights (``freqs``: ``(K,)`` shares)."""
    t, d = config.train, config.data
    kwargs: dict[str, Any] = {"ignore_index": d.ignore_index}
    if t.class_weighting != "none":
        present = np.where(freqs > 0, freqs, 1.0)
        w = 1.0 / (present if t.class_weighting == "balanced" else np.sqrt(present))
        w = np.where(freqs > 0, w / w[freqs > 0].mean(), 0.0)
        if t.loss in ("ce", "dice_ce", "weighted_ce"):
            kwargs["class_weights"] = [float(v) for v in w]
        elif t.loss == "focal":
            kwargs["alpha"] = [float(v) for v in w]
    return make_loss(t.loss, **kwargs)


def sampled_classes(config: RunConfig, freqs: np.ndarray) -> tuple[int, ...] | None:
    """The classes that class-aware sampling draws among (``data.sampling``): every
    foreground class present in the training set (not 0, not ``ignore_index``); ``None`` for
    plain foreground sampling."""
    if config.data.sampling != "class_aware":
        return None
    ignore = config.data.ignore_index
    return tuple(k for k in range(1, len(freqs)) if freqs[k] > 0 and k != ignore)


class SegmentObjective:
    """Dense classification (see the module doc); an :class:`~unetkit.tasks.Objective`."""

    name = "segment"
    score_name = "dice"

    def __init__(self, config: RunConfig, prepared: PreparedData, info: DistInfo) -> None:
        self.config = config
        self.prepared = prepared
        t = config.train
        self.freqs = class_frequencies(prepared.raw_train, prepared.num_classes)
        self.loss_fn = build_loss(config, self.freqs)
        patch = config.data.patch_size or ()
        wm = None
        if t.loss == "weighted_ce":
            wm = WeightMapConfig(w0=t.border_w0, sigma=t.border_sigma)
        if prepared.instance_spec is not None and t.border_w0 > 0:  # boundary target
            wm = WeightMapConfig(w0=t.border_w0, sigma=t.border_sigma, objects="interiors")
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
            classes=sampled_classes(config, self.freqs),
        )
        self.optimizer: torch.optim.Optimizer | None = None  # holds the EMA, when kept
        self.val_weights: list[np.ndarray | None] | None = None
        if wm is not None:
            self.val_weights = [sample_weights(s, wm) for s in prepared.val]

    def inputs(self, batch: TorchBatch) -> TaskBatch:
        """The patch as input; its labels (and border weights) as target."""
        return TaskBatch(batch.images, batch.masks, batch.weights)

    def loss(self, outputs: Tensor | list[Tensor], batch: TaskBatch) -> Tensor:
        """``train.loss`` of the logits ``(B, K, *S)`` (or the deep-supervision list)."""
        if isinstance(outputs, list):
            outputs = [o.float() for o in outputs]
            return deep_supervision_loss(
                self.loss_fn,
                outputs,
                batch.target,
                self.config.train.deep_supervision_weights,
                batch.weights,
            )
        return self.loss_fn(outputs.float(), batch.target, batch.weights)

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Update the moving average of the weights (``train.ema_decay`` > 0)."""
        if self.config.train.ema_decay > 0:
            self.optimizer = optimizer
            update_ema(model, optimizer, self.config.train.ema_decay)

    def saved_model(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> nn.Module:
        """What ``model.safetensors`` holds: the averaged weights where kept, else ``model``."""
        if self.config.train.ema_decay > 0:
            return ema_copy(model, optimizer)
        return model

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
        """Dice and IoU per class over whole images; the score is the mean foreground Dice."""
        weights = self.val_weights if samples is self.prepared.val else None
        if self.optimizer is not None:  # the averaged weights are what is kept
            model = ema_copy(model, self.optimizer)
        return validate(
            model,
            samples,
            self.loss_fn,
            self.prepared.num_classes,
            self.config.data.ignore_index,
            info,
            weights=weights,
            precision=precision,
            channels_last=channels_last,
            keep_predictions=keep_predictions,
        )

    def metadata(self) -> dict[str, Any]:
        """Nothing: segmentation model files stay as they were."""
        return {}
