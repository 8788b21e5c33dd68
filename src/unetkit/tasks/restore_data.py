"""``task=restore`` data: load (or synthesise), split, normalise; reproducible training batches.

Normalisation: each input is z-scored as :func:`unetkit.data.sampling.normalize` does
(``data.normalization``), and its target with the *input's* numbers
(:func:`unetkit.data.restoration.target_stats`), so a prediction mapped back with them is in
the input's units. The per-image numbers of the validation targets are kept to score PSNR and
SSIM in those units.

Batches follow :mod:`unetkit.train.loader`: item ``j`` of global batch ``k`` of epoch ``e`` is
cut from image ``order_e[(k G + j) % n]`` with ``default_rng([seed, e, k, j])``, and rank ``r``
builds items ``r B .. (r+1) B - 1``; the same random crop, flips (``data.augment.p_flip`` per
axis) and 90° rotations (``p_rot90``, last two axes, square patches) go to input and target.
Other augmentations (intensity, elastic, noise) would change the input without its target, so
restoration uses none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from unetkit.config import RunConfig
from unetkit.data.restoration import load_restore_dataset, target_stats
from unetkit.data.sample import Sample
from unetkit.data.sampling import DatasetStats, normalize
from unetkit.data.synthetic_restore import make_synthetic_restore
from unetkit.errors import DataError
from unetkit.train.loader import split_indices
from unetkit.train.prepare import PreparedData, check_one_kind, normalization_of

Stats = tuple[np.ndarray, np.ndarray]


@dataclass
class RestorePrepared(PreparedData):
    """:class:`~unetkit.train.prepare.PreparedData` of a restoration run.

    ``num_classes`` is the number of output channels ``C_t``. Extra attributes:
    ``mode`` (``supervised`` or ``self_supervised``), ``val_stats`` (per validation image, the
    ``(mean, std)`` ``(C_t,)`` that map its normalised target back to raw units), and
    ``scored`` (validation images have targets to score against).
    """

    mode: Literal["supervised", "self_supervised"] = "supervised"
    val_stats: list[Stats] = field(default_factory=list)
    scored: bool = False


def input_stats(
    image: np.ndarray, mode: Literal["per_image", "dataset"], stats: DatasetStats | None
) -> Stats:
    """Per-channel ``(mean, std)`` ``(C,)`` that :func:`normalize` uses on ``image``."""
    if mode == "dataset" and stats is not None:
        mean, std = np.asarray(stats.mean, np.float32), np.asarray(stats.std, np.float32)
    else:
        axes = tuple(range(1, image.ndim))
        mean, std = image.mean(axis=axes), image.std(axis=axes)
    return mean, np.where(std > 1e-8, std, 1.0).astype(np.float32)


def _normalized(
    s: Sample, mode: Literal["per_image", "dataset"], stats: DatasetStats | None
) -> tuple[Sample, Stats]:
    image = normalize(s.image, mode, stats)
    if s.target is None:
        return Sample(image, s.mask, None, s.stem), (np.zeros(0), np.ones(0))
    mean, std = target_stats(*input_stats(s.image, mode, stats), s.target.shape[0])
    shape = (-1,) + (1,) * (s.target.ndim - 1)
    target = ((s.target - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32)
    return Sample(image, s.mask, None, s.stem, target), (mean, std)


def prepare_restore(config: RunConfig) -> RestorePrepared:
    """Load, check, split (``data.split_seed``) and normalise the data of a restoration run."""
    data, options = config.data, config.restore
    if data.path is None:
        samples = make_synthetic_restore(
            data.synthetic_count,
            spatial_dims=data.spatial_dims or 2,
            size=data.synthetic_size,
            seed=data.split_seed,
            noise=options.synthetic_noise,
        )
        source, with_targets = "synthetic", True
    else:
        samples, with_targets = load_restore_dataset(
            data.path,
            use_targets=options.mode != "self_supervised",
            spatial_dims=data.spatial_dims,
        )
        source = str(data.path)
    if options.mode == "supervised" and not with_targets:
        raise DataError(
            f"restore.mode=supervised: {source} has no targets/ (same stems as images/); add "
            f"them, or use restore.mode=self_supervised (or auto) to denoise from images alone"
        )
    mode: Literal["supervised", "self_supervised"] = (
        "supervised" if with_targets and options.mode != "self_supervised" else "self_supervised"
    )
    nd, in_channels = check_one_kind(samples, source, "images")
    out_channels = samples[0].target.shape[0] if mode == "supervised" else in_channels
    tr, va = split_indices(len(samples), data.val_fraction, data.split_seed)
    raw_train = [samples[i] for i in tr]
    stats, normalization = normalization_of(raw_train, data, seed=0)
    train = [_normalized(s, data.normalization, stats)[0] for s in raw_train]
    if mode == "self_supervised":  # the noisy image is its own target (blind-spot masked)
        train = [Sample(s.image, s.mask, None, s.stem) for s in train]
    val_pairs = [_normalized(samples[i], data.normalization, stats) for i in va]
    return RestorePrepared(
        train=train,
        val=[p[0] for p in val_pairs],
        raw_train=raw_train,
        num_classes=int(out_channels),
        in_channels=int(in_channels),
        spatial_dims=nd,
        normalization=normalization,
        source=source,
        notes=[f"restore: {mode.replace('_', '-')} training"],
        mode=mode,
        val_stats=[p[1] for p in val_pairs],
        scored=all(p[0].target is not None for p in val_pairs),
    )


@dataclass(frozen=True)
class RestoreBatch:
    """This rank's share of a global batch: ``images (B, C, *P)`` and ``targets (B, C_t, *P)``
    (self-supervised: the images again), float32, normalised."""

    images: torch.Tensor
    targets: torch.Tensor


def _crop(s: Sample, patch: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random crop of image and target (mirrored first where the image is smaller)."""
    arrays = [s.image] + ([s.target] if s.target is not None else [s.image])
    spatial = s.image.shape[1:]
    if any(n < p for n, p in zip(spatial, patch, strict=True)):
        pads = [
            ((p - n) // 2, p - n - (p - n) // 2) if n < p else (0, 0)
            for n, p in zip(spatial, patch, strict=True)
        ]
        arrays = [np.pad(a, [(0, 0), *pads], mode="reflect") for a in arrays]
        spatial = arrays[0].shape[1:]
    start = [int(rng.integers(0, n - p + 1)) for n, p in zip(spatial, patch, strict=True)]
    box = (slice(None), *(slice(b, b + p) for b, p in zip(start, patch, strict=True)))
    return [a[box] for a in arrays]


class RestoreBatches:
    """Reproducible, rank-sharded restoration batches (see the module doc)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        batch_size: int,
        patch_size: Sequence[int],
        *,
        p_flip: float,
        p_rot90: float,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not samples:
            raise ValueError("samples: expected at least one training image")
        self.samples = list(samples)
        self.batch_size = int(batch_size)
        self.patch = tuple(int(p) for p in patch_size) or tuple(samples[0].image.shape[1:])
        self.p_flip, self.p_rot90 = float(p_flip), float(p_rot90)
        self.seed, self.rank, self.world_size = int(seed), rank, world_size

    @property
    def global_batch_size(self) -> int:
        """Patches per optimiser step over all processes."""
        return self.batch_size * self.world_size

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))

    def _item(self, epoch: int, index: int, j: int, order: np.ndarray) -> list[np.ndarray]:
        s = self.samples[int(order[(index * self.global_batch_size + j) % len(order)])]
        rng = np.random.default_rng([self.seed, epoch, index, j])
        arrays = _crop(s, self.patch, rng)
        for axis in range(1, arrays[0].ndim):
            if rng.random() < self.p_flip:
                arrays = [np.flip(a, axis) for a in arrays]
        nd = arrays[0].ndim - 1
        if nd >= 2 and self.patch[-1] == self.patch[-2] and rng.random() < self.p_rot90:
            k = int(rng.integers(1, 4))
            arrays = [np.rot90(a, k, axes=(-2, -1)) for a in arrays]
        return [np.ascontiguousarray(a) for a in arrays]

    def stems(self, epoch: int, index: int) -> list[str]:
        """Source names of every item of global batch ``index`` of ``epoch``, all ranks."""
        order, n = self._order(epoch), len(self.samples)
        return [
            self.samples[int(order[(index * self.global_batch_size + j) % n])].stem or "?"
            for j in range(self.global_batch_size)
        ]

    def batch(self, epoch: int, index: int) -> RestoreBatch:
        """This rank's part of global batch ``index`` of ``epoch``."""
        order = self._order(epoch)
        first = self.rank * self.batch_size
        items = [self._item(epoch, index, j, order) for j in range(first, first + self.batch_size)]
        return RestoreBatch(
            images=torch.from_numpy(np.stack([i[0] for i in items])),
            targets=torch.from_numpy(np.stack([i[1] for i in items])),
        )
