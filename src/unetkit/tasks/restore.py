"""``task=restore``: image-to-image regression with the same ``UNet`` (a linear head of
``C_t`` channels, no softmax), supervised or self-supervised.

* **supervised** (``images/`` + ``targets/``): input the degraded patch, target the restored
  one, loss ``restore.loss`` (L1 or L2) over every pixel.
* **self-supervised** (``images/`` alone; Noise2Void's blind-spot masking): in each patch a
  share ``restore.blind_spot_fraction`` of the pixels is replaced by a random neighbour within
  ``restore.blind_spot_radius`` (never itself; or by the median or mean of that
  neighbourhood, ``restore.blind_spot_replace``), and ``restore.blind_spot_loss`` compares the
  output with the *original* noisy values at those pixels only. Pixel noise that is
  independent between pixels cannot be predicted from the neighbours, so the network learns the
  clean signal. The masks are drawn from torch's generator right after the step's seed, so a
  resumed run draws the same masks.

Validation predicts whole images. With targets (always in supervised mode; in self-supervised
mode when the data has them) it scores PSNR and SSIM in the input's units, each image with
its target's ``max - min`` as the data range, and the best model has the highest mean PSNR;
without targets the best model has the lowest blind-spot loss (masks seeded per image).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unetkit.config import RunConfig
from unetkit.data.sample import Sample
from unetkit.metrics.restoration import restoration_score
from unetkit.precision import FloatPrecision, autocast, to_channels_last
from unetkit.tasks.base import TaskBatch
from unetkit.tasks.options import BlindSpotReplace
from unetkit.tasks.restore_data import RestoreBatch, RestoreBatches, RestorePrepared
from unetkit.train.distributed import DistInfo, all_reduce_sum
from unetkit.train.validate import ValResult


def blind_spot(
    x: Tensor,
    fraction: float,
    radius: int,
    generator: torch.Generator | None = None,
    replace: BlindSpotReplace = "neighbour",
) -> tuple[Tensor, Tensor]:
    """Noise2Void masking: ``x (B, C, *S) -> (masked copy (B, C, *S), mask (B, 1, *S))``.

    ``max(1, round(fraction * prod(S)))`` positions per image (drawn with replacement) get,
    in every channel, the value of a neighbour at a random non-zero offset in
    ``[-radius, radius]^d`` (``replace="neighbour"``, Noise2Void), or the median or mean of all
    ``(2r+1)^d - 1`` neighbours without the pixel itself (``"median"``, as N2V2; ``"mean"``).
    Neighbours are mirrored at the borders (and flipped where mirroring would land on the
    pixel itself). ``mask`` is 1.0 at the replaced pixels.
    """
    b, c, *spatial = x.shape
    n = math.prod(spatial)
    k = max(1, round(fraction * n))
    offsets = torch.tensor(
        [o for o in itertools.product(range(-radius, radius + 1), repeat=len(spatial)) if any(o)]
    )  # (M, d)
    pos = torch.randint(n, (b, k), generator=generator)  # (B, k) flat positions
    if replace == "neighbour":
        off = offsets[torch.randint(len(offsets), (b, k), generator=generator)][:, :, None]
    else:
        off = offsets.expand(b, k, *offsets.shape)  # (B, k, M, d): every neighbour
    size = torch.tensor(spatial)
    coords = torch.stack(torch.unravel_index(pos, tuple(spatial)), dim=-1)[:, :, None]

    def mirrored(o: Tensor) -> Tensor:
        q = (coords + o).abs()
        return torch.where(q > size - 1, 2 * (size - 1) - q, q).clamp(min=0)

    nb = mirrored(off)  # (B, k, m, d) with m = 1 or M
    same = (nb == coords).all(-1, keepdim=True)
    nb = torch.where(same, mirrored(-off), nb)
    m = nb.shape[2]
    flat_nb = torch.zeros(b, k, m, dtype=torch.long)
    for axis, extent in enumerate(spatial):
        flat_nb = flat_nb * extent + nb[..., axis]
    flat = x.reshape(b, c, n)
    values = torch.gather(flat, 2, flat_nb.reshape(b, 1, k * m).expand(b, c, k * m))
    values = values.reshape(b, c, k, m)  # (B, C, k, m)
    # (B, C, k): the median, or the mean (of the one neighbour, or of all)
    values = values.median(dim=-1).values if replace == "median" else values.mean(dim=-1)
    masked = flat.clone()
    masked.scatter_(2, pos[:, None, :].expand(b, c, k), values)
    mask = torch.zeros(b, 1, n, dtype=x.dtype)
    mask.scatter_(2, pos[:, None, :], 1.0)
    return masked.reshape(x.shape), mask.reshape(b, 1, *spatial)


def regression_loss(
    output: Tensor, target: Tensor, kind: str, mask: Tensor | None = None
) -> Tensor:
    """Mean ``|o - t|`` (``l1``) or ``(o - t)^2`` (``l2``) over all values, or over the
    pixels where ``mask (B, 1, *S)`` is 1 (every channel)."""
    err = (output - target).abs() if kind == "l1" else (output - target) ** 2
    if mask is None:
        return err.mean()
    return (err * mask).sum() / (mask.sum() * err.shape[1]).clamp(min=1.0)


class RestoreObjective:
    """Image restoration (see the module doc); an :class:`~unetkit.tasks.Objective`."""

    name = "restore"

    def __init__(self, config: RunConfig, prepared: RestorePrepared, info: DistInfo) -> None:
        if not isinstance(prepared, RestorePrepared):
            raise ValueError("task=restore: the data was not prepared for restoration")
        if config.model.deep_supervision:
            raise ValueError(
                "model.deep_supervision: not used by task=restore (a restored image has no "
                "coarse version to supervise); set model.deep_supervision=false"
            )
        if config.model.out_channels != prepared.num_classes:
            raise ValueError(
                f"model.out_channels: {config.model.out_channels}, but the targets have "
                f"{prepared.num_classes} channel(s); leave it unset or set it to "
                f"{prepared.num_classes}"
            )
        self.config = config
        self.options = config.restore
        self.prepared = prepared
        self.self_supervised = prepared.mode == "self_supervised"
        self.score_name = "psnr" if prepared.scored else "neg_loss"
        augment = config.data.augment
        self.batches = RestoreBatches(
            prepared.train,
            config.train.batch_size,
            config.data.patch_size or (),
            p_flip=augment.p_flip,
            p_rot90=augment.p_rot90 if config.data.flips == "all" else 0.0,
            seed=config.train.seed,
            rank=info.rank,
            world_size=info.world_size,
        )

    def _masked(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        o = self.options
        return blind_spot(
            x, o.blind_spot_fraction, o.blind_spot_radius, generator, o.blind_spot_replace
        )

    def inputs(self, batch: RestoreBatch) -> TaskBatch:
        """Supervised: (image, target). Self-supervised: (blind-spot image, image, mask)."""
        if not self.self_supervised:
            return TaskBatch(batch.images, batch.targets)
        masked, mask = self._masked(batch.images)
        return TaskBatch(masked, batch.images, mask)

    def _loss(self, output: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
        kind = self.options.blind_spot_loss if mask is not None else self.options.loss
        return regression_loss(output.float(), target, kind, mask)

    def loss(self, outputs: Tensor | list[Tensor], batch: TaskBatch) -> Tensor:
        """L1/L2 over the patch, or at the blind-spot pixels only."""
        if isinstance(outputs, list):  # refused in __init__; kept total for type checkers
            outputs = outputs[0]
        return self._loss(outputs, batch.target, batch.weights)

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
        """Loss, PSNR and SSIM (with targets) over whole images, summed over processes."""
        was_training = model.training
        model.eval()
        sums = torch.zeros(4, dtype=torch.float64)  # loss, psnr, ssim, scored images
        stats = self.prepared.val_stats if samples is self.prepared.val else None
        for i in range(info.rank, len(samples), info.world_size):
            s = samples[i]
            image = torch.from_numpy(s.image).unsqueeze(0)  # (1, C, *S)
            x, mask = image, None
            if self.self_supervised:  # the blind-spot loss against the noisy image itself
                x, mask = self._masked(image, torch.Generator().manual_seed(i))
            target = image if mask is not None else torch.from_numpy(s.target).unsqueeze(0)

            def forward(x: Tensor) -> Tensor:
                if channels_last:
                    x = to_channels_last(x, x.ndim - 2)
                with autocast(precision, x.device):
                    return model(x).float()  # (1, C_t, *S)

            out = forward(x)
            sums[0] += float(self._loss(out, target, mask))
            if s.target is not None and stats is not None and len(stats[i][0]):
                if mask is not None:  # scores see what prediction sees: the unmasked image
                    out = forward(image)
                shape = (-1,) + (1,) * (s.target.ndim - 1)
                mean, std = (v.reshape(shape) for v in stats[i])
                score = restoration_score(out[0].numpy() * std + mean, s.target * std + mean)
                sums[1] += score.psnr if math.isfinite(score.psnr) else 100.0
                sums[2] += score.ssim
                sums[3] += 1
        all_reduce_sum(info, sums)
        model.train(was_training)
        loss = float(sums[0]) / max(1, len(samples))
        extra: dict[str, float] = {}
        best = -loss
        if sums[3] > 0:
            extra = {"val_psnr": float(sums[1] / sums[3]), "val_ssim": float(sums[2] / sums[3])}
            best = extra["val_psnr"]
        return ValResult(
            loss=loss,
            dice=np.array([]),
            iou=np.array([]),
            mean_dice=math.nan,
            mean_iou=math.nan,
            predictions=[],
            extra=extra,
            best_score=best,
        )

    def metadata(self) -> dict[str, Any]:
        """``task`` and how outputs map back to the input's units (see the module doc)."""
        return {
            "task": "restore",
            "restore": {
                "mode": self.prepared.mode,
                "target_channels": self.prepared.num_classes,
                "units": "input",
            },
        }
