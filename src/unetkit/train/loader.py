"""Training batches sharded across processes, and the seeded train/validation split.

Batch ``k`` of epoch ``e`` is a *global* batch of ``batch_size * world_size`` patches; item ``j``
of it is cut and augmented with ``numpy.random.default_rng([seed, e, k, j])`` from image
``order_e[(k * G + j) % n]``, where ``order_e`` is a permutation drawn from ``(seed, e)``. Rank
``r`` builds only items ``r*B .. (r+1)*B - 1`` (the ``DistributedSampler`` equivalent, with
``set_epoch`` built in). So one process with batch ``G`` and ``G/B`` processes with batch ``B``
see exactly the same patches, and a resumed run rebuilds the batch it stopped at without
replaying the ones before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from unetkit.data.augment import AugmentConfig, augment
from unetkit.data.sample import Sample
from unetkit.data.sampling import DatasetStats, normalize, sample_patch
from unetkit.train.weight_map import border_weight_map


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` into (train, validation), both sorted and non-empty.

    ``n >= 2``; the validation part has ``round(n * val_fraction)`` items, at least 1 and at most
    ``n - 1``.
    """
    if n < 2:
        raise ValueError(f"a train/validation split needs at least 2 images, got {n}")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    order = np.random.default_rng([seed, 7919]).permutation(n)
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def normalize_samples(
    samples: Sequence[Sample],
    mode: Literal["per_image", "dataset"],
    stats: DatasetStats | None,
) -> list[Sample]:
    """Each image z-scored (``per_image``, or with the dataset's ``stats``), labels kept."""
    return [Sample(normalize(s.image, mode, stats), s.mask, s.instances, s.stem) for s in samples]


@dataclass(frozen=True)
class WeightMapConfig:
    """Parameters of the border weight map used by ``weighted_ce``.

    ``objects``: ``instances`` (each sample's ids, else components of its mask) or
    ``interiors`` (the interior class of a boundary-target mask, with the sample's ids: the
    border pixels between touching objects become the thin gap the paper's map weighs most).
    """

    w0: float = 10.0
    sigma: float = 5.0
    class_weights: tuple[float, float] | None = None
    objects: Literal["instances", "interiors"] = "instances"


def sample_weights(sample: Sample, wm: WeightMapConfig) -> np.ndarray:
    """The border weight map ``(*spatial)`` float32 of one sample (or patch) per ``wm``."""
    if wm.objects == "interiors" and sample.instances is not None:
        from unetkit.instances.targets import INTERIOR

        objects = np.where(sample.mask == INTERIOR, sample.instances, 0)
        return border_weight_map(
            objects,
            w0=wm.w0,
            sigma=wm.sigma,
            class_weights=wm.class_weights,
            from_components=False,
        )
    return border_weight_map(
        sample.instances if sample.instances is not None else sample.mask,
        w0=wm.w0,
        sigma=wm.sigma,
        class_weights=wm.class_weights,
        from_components=sample.instances is None,
    )


@dataclass(frozen=True)
class TorchBatch:
    """One process's share of a global batch, as tensors.

    ``images (B, C, *patch)`` float32, ``masks (B, *patch)`` int64, ``weights (B, *patch)``
    float32 or ``None``.
    """

    images: torch.Tensor
    masks: torch.Tensor
    weights: torch.Tensor | None


class ShardedBatches:
    """Reproducible, rank-sharded batches of augmented patches (see the module docstring).

    Args:
        samples: normalised training images ``(C, *spatial)`` with masks (and instances).
        batch_size: patches per process.
        patch_size: one size per spatial axis.
        augment: augmentation config, or ``None``.
        seed: the run's seed.
        rank, world_size: this process and the number of processes.
        foreground_share: share of patches centred on foreground.
        weight_map: compute the border weight map per patch (for ``weighted_ce``), or ``None``.
        flips: ``all`` (as ``augment`` says) or ``last_axis`` (no flips or 90° rotations from
            ``augment``; a left-right mirror with probability ``augment.p_flip``).
        classes: class-aware sampling among these foreground classes (``sample_patch``), or
            ``None`` for any foreground pixel.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        batch_size: int,
        patch_size: Sequence[int],
        *,
        augment: AugmentConfig | None,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        foreground_share: float = 0.33,
        weight_map: WeightMapConfig | None = None,
        flips: str = "all",
        classes: Sequence[int] | None = None,
    ) -> None:
        if not samples:
            raise ValueError("samples: expected at least one training image")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size, got {rank}/{world_size}")
        self.samples = list(samples)
        self.batch_size = int(batch_size)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.hflip_p = 0.0
        if flips == "last_axis" and augment is not None:
            self.hflip_p = augment.p_flip
            augment = replace(augment, p_flip=0.0, p_rot90=0.0)
        elif flips != "all":
            raise ValueError(f"flips: expected 'all' or 'last_axis', got {flips!r}")
        self.augment = augment
        self.seed = int(seed)
        self.rank, self.world_size = rank, world_size
        self.foreground_share = float(foreground_share)
        self.weight_map = weight_map
        self.classes = None if classes is None else tuple(int(c) for c in classes)

    @property
    def global_batch_size(self) -> int:
        """Patches per optimiser step over all processes."""
        return self.batch_size * self.world_size

    def _item(self, epoch: int, index: int, j: int, order: np.ndarray) -> Sample:
        sample = self.samples[int(order[(index * self.global_batch_size + j) % len(order)])]
        rng = np.random.default_rng([self.seed, epoch, index, j])
        patch = sample_patch(
            sample, self.patch_size, rng, self.foreground_share, classes=self.classes
        )
        if self.augment is not None:
            patch = augment(patch, self.augment, rng)
        if self.hflip_p and rng.random() < self.hflip_p:
            patch = Sample(
                np.ascontiguousarray(patch.image[..., ::-1]),
                np.ascontiguousarray(patch.mask[..., ::-1]),
                None
                if patch.instances is None
                else np.ascontiguousarray(patch.instances[..., ::-1]),
                patch.stem,
            )
        return patch

    def stems(self, epoch: int, index: int) -> list[str]:
        """Source names (stems) of every item of global batch ``index`` of ``epoch``, all ranks.

        Pure (no patch is cut), so an error message can name the batch after the fact.
        """
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))
        n = len(order)
        return [
            self.samples[int(order[(index * self.global_batch_size + j) % n])].stem or "?"
            for j in range(self.global_batch_size)
        ]

    def batch(self, epoch: int, index: int) -> TorchBatch:
        """This rank's part of global batch ``index`` of ``epoch``."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))
        first = self.rank * self.batch_size
        items = [self._item(epoch, index, j, order) for j in range(first, first + self.batch_size)]
        weights = None
        if self.weight_map is not None:
            wm = self.weight_map
            weights = torch.from_numpy(np.stack([sample_weights(p, wm) for p in items]))
        return TorchBatch(
            images=torch.from_numpy(np.stack([p.image for p in items])),
            masks=torch.from_numpy(np.stack([p.mask for p in items])),
            weights=weights,
        )
