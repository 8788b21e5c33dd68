"""Validation on whole images: loss, confusion matrix, per-class Dice and IoU, all-reduced."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from unetkit.data.sample import Sample
from unetkit.metrics import confusion_matrix, dice_from_confusion, iou_from_confusion
from unetkit.precision import FloatPrecision, autocast, to_channels_last
from unetkit.train.distributed import DistInfo, all_reduce_sum


@dataclass(frozen=True)
class ValResult:
    """Validation of one epoch over all processes.

    Attributes:
        loss: mean loss per image.
        dice, iou: per class ``(K,)``, NaN where a class is absent from truth and prediction
            (and for ``ignore_index``).
        mean_dice: mean Dice over the foreground classes (``1..K-1`` that are not ignored and
            not NaN); for two classes, the Dice of class 1.
        mean_iou: the same for IoU.
        predictions: rank 0's predicted label maps ``(*spatial)`` of the first images, for
            overlays.
        extra: more ``metrics.csv`` columns of other tasks (``{"val_psnr": ...}``).
        best_score: what "best" means when it is not ``mean_dice`` (restore: PSNR), or
            ``None``; read it as :attr:`score`.
    """

    loss: float
    dice: np.ndarray
    iou: np.ndarray
    mean_dice: float
    mean_iou: float
    predictions: list[np.ndarray]
    extra: dict[str, float] = field(default_factory=dict)
    best_score: float | None = None

    @property
    def score(self) -> float:
        """The number the trainer keeps the best model by (higher is better)."""
        return self.mean_dice if self.best_score is None else self.best_score


def foreground_mean(values: np.ndarray, ignore_index: int | None) -> float:
    """Mean of ``values[1:]`` without NaNs and the ignored class (NaN when nothing is left)."""
    keep = [v for k, v in enumerate(values) if k > 0 and k != ignore_index and not np.isnan(v)]
    return float(np.mean(keep)) if keep else float("nan")


@torch.no_grad()
def validate(
    model: nn.Module,
    samples: Sequence[Sample],
    loss_fn: Callable[[Tensor, Tensor, Tensor | None], Tensor],
    num_classes: int,
    ignore_index: int | None,
    info: DistInfo,
    *,
    weights: Sequence[np.ndarray | None] | None = None,
    precision: FloatPrecision = "fp32",
    channels_last: bool = False,
    keep_predictions: int = 0,
) -> ValResult:
    """Predict every validation image whole (this rank takes images ``rank::world_size``).

    ``samples``: normalised images ``(C, *spatial)`` with masks. ``weights``: per-image pixel
    weights for the loss (``weighted_ce``), or ``None``. Confusion matrices and losses are summed
    over processes, so every rank returns the same numbers. ``precision`` and ``channels_last``
    are the ones the training step runs with (decided by :mod:`unetkit.precision`).
    """
    was_training = model.training
    model.eval()
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    loss_sum = 0.0
    predictions: list[np.ndarray] = []
    for i in range(info.rank, len(samples), info.world_size):
        s = samples[i]
        x = torch.from_numpy(s.image).unsqueeze(0)  # (1, C, *spatial)
        if channels_last:
            x = to_channels_last(x, x.ndim - 2)
        with autocast(precision, x.device):
            logits = model(x)
        logits = logits.float()  # (1, K, *spatial)
        target = torch.from_numpy(s.mask).unsqueeze(0)
        w = None
        if weights is not None and weights[i] is not None:
            w = torch.from_numpy(weights[i]).unsqueeze(0)
        loss_sum += float(loss_fn(logits, target, w))
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            logits[:, ignore_index] = -torch.inf  # never predict the void label
        pred = logits.argmax(1)[0].numpy()
        confusion += confusion_matrix(pred, s.mask, num_classes, ignore_index)
        if i < keep_predictions:
            predictions.append(pred)
    totals = torch.from_numpy(np.concatenate([confusion.ravel(), [0]]).astype(np.float64))
    totals[-1] = loss_sum
    all_reduce_sum(info, totals)
    confusion = totals[:-1].numpy().reshape(num_classes, num_classes)
    loss = float(totals[-1]) / max(1, len(samples))
    dice = dice_from_confusion(confusion)
    iou = iou_from_confusion(confusion)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        dice[ignore_index] = np.nan
        iou[ignore_index] = np.nan
    model.train(was_training)
    return ValResult(
        loss=loss,
        dice=dice,
        iou=iou,
        mean_dice=foreground_mean(dice, ignore_index),
        mean_iou=foreground_mean(iou, ignore_index),
        predictions=predictions,
    )
