"""Normalisation, patch sampling and reproducible batches of NumPy arrays.

:class:`PatchSampler` derives the randomness of batch ``k`` of epoch ``e`` from
``(seed, e, k)`` alone, so a resumed run can produce exactly the batch it stopped at without
replaying the earlier ones. No torch here: batches are NumPy arrays, ready for
``torch.from_numpy``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from unetkit.data.augment import AugmentConfig, augment
from unetkit.data.sample import Sample


@dataclass(frozen=True)
class DatasetStats:
    """Per-channel intensity statistics of a dataset.

    Attributes:
        mean, std: per channel, computed after clipping when ``lower``/``upper`` are set.
        lower, upper: per-channel clip values (percentiles), or ``None`` for no clipping.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None


def dataset_stats(
    samples: Sequence[Sample],
    *,
    clip_percentiles: tuple[float, float] | None = None,
    max_values: int = 1_000_000,
    seed: int = 0,
) -> DatasetStats:
    """Per-channel mean and std over all images (optionally robust, as nnU-Net does for CT).

    Args:
        samples: images ``(C, *spatial)`` with equal ``C``.
        clip_percentiles: e.g. ``(0.5, 99.5)``: clip each channel to these percentiles before
            computing mean and std; :func:`normalize` then clips the same way.
        max_values: at most this many values per channel are used (a seeded random subset).
        seed: seed of that subset.
    """
    if not samples:
        raise ValueError("samples: expected at least one sample")
    channels = {s.image.shape[0] for s in samples}
    if len(channels) != 1:
        raise ValueError(f"samples: images have different channel counts {sorted(channels)}")
    if clip_percentiles is not None and not 0 <= clip_percentiles[0] < clip_percentiles[1] <= 100:
        raise ValueError(
            f"clip_percentiles: expected 0 <= low < high <= 100, got {clip_percentiles!r}"
        )
    values = np.concatenate([s.image.reshape(s.image.shape[0], -1) for s in samples], axis=1)
    if values.shape[1] > max_values:
        rng = np.random.default_rng(seed)
        values = values[:, rng.choice(values.shape[1], size=max_values, replace=False)]
    lower = upper = None
    if clip_percentiles is not None:
        lo = np.percentile(values, clip_percentiles[0], axis=1)
        hi = np.percentile(values, clip_percentiles[1], axis=1)
        values = np.clip(values, lo[:, None], hi[:, None])
        lower, upper = tuple(float(v) for v in lo), tuple(float(v) for v in hi)
    return DatasetStats(
        mean=tuple(float(v) for v in values.mean(axis=1)),
        std=tuple(float(v) for v in values.std(axis=1)),
        lower=lower,
        upper=upper,
    )


def normalize(
    image: np.ndarray,
    mode: Literal["per_image", "dataset"] = "per_image",
    stats: DatasetStats | None = None,
) -> np.ndarray:
    """Z-score each channel: ``(C, *spatial) -> (C, *spatial)`` ``float32``.

    ``per_image`` uses the image's own mean/std per channel; ``dataset`` uses ``stats`` (and its
    clip values, if any). A constant channel becomes 0 (its std is taken as 1).
    """
    if image.ndim < 2:
        raise ValueError(f"image: expected (C, *spatial), got shape {image.shape}")
    image = image.astype(np.float32, copy=False)
    shape = (-1,) + (1,) * (image.ndim - 1)
    if mode == "per_image":
        axes = tuple(range(1, image.ndim))
        mean = image.mean(axis=axes, keepdims=True)
        std = image.std(axis=axes, keepdims=True)
    elif mode == "dataset":
        if stats is None:
            raise ValueError("stats: mode='dataset' needs stats from dataset_stats(samples)")
        if len(stats.mean) != image.shape[0]:
            raise ValueError(f"stats: has {len(stats.mean)} channels, image has {image.shape[0]}")
        if stats.lower is not None and stats.upper is not None:
            image = np.clip(image, np.reshape(stats.lower, shape), np.reshape(stats.upper, shape))
        mean = np.reshape(np.asarray(stats.mean, np.float32), shape)
        std = np.reshape(np.asarray(stats.std, np.float32), shape)
    else:
        raise ValueError(f"mode: expected 'per_image' or 'dataset', got {mode!r}")
    std = np.where(std > 1e-8, std, 1.0)
    return ((image - mean) / std).astype(np.float32)


def _patch_shape(patch_size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    size = (patch_size,) * spatial_dims if isinstance(patch_size, int) else tuple(patch_size)
    if len(size) == 1:  # one size for every axis
        size = size * spatial_dims
    if len(size) != spatial_dims or any(int(p) < 1 for p in size):
        raise ValueError(f"patch_size: expected {spatial_dims} positive sizes, got {patch_size!r}")
    return tuple(int(p) for p in size)


def sample_patch(
    sample: Sample,
    patch_size: int | Sequence[int],
    rng: np.random.Generator,
    foreground_share: float = 0.33,
    *,
    pad_mode: Literal["reflect", "constant"] = "reflect",
    classes: Sequence[int] | None = None,
) -> Sample:
    """A random patch ``(C, *patch_size)`` of ``sample``, never failing on small images.

    With probability ``foreground_share`` the patch is centred (as far as the borders allow) on
    a random pixel with label > 0; otherwise its position is uniform. With ``classes``
    (class-aware sampling) that pixel is found in two draws instead: a class uniformly among
    those of ``classes`` the image holds, then a pixel of it, so a class covering 0.1% of the
    pixels is centred as often as one covering 50% (an image holding none of ``classes``
    falls back to any pixel with label > 0). An image smaller than the patch is padded first
    (``reflect``: mirrored image and labels; ``constant``: zeros and background), centred.
    """
    if not 0.0 <= foreground_share <= 1.0:
        raise ValueError(f"foreground_share: expected 0..1, got {foreground_share!r}")
    if pad_mode not in ("reflect", "constant"):
        raise ValueError(f"pad_mode: expected 'reflect' or 'constant', got {pad_mode!r}")
    patch = _patch_shape(patch_size, sample.spatial_dims)
    image, mask, inst = sample.image, sample.mask, sample.instances
    if any(s < p for s, p in zip(image.shape[1:], patch, strict=True)):
        pads = [
            ((p - s) // 2, p - s - (p - s) // 2) if s < p else (0, 0)
            for s, p in zip(image.shape[1:], patch, strict=True)
        ]
        image = np.pad(image, [(0, 0), *pads], mode=pad_mode)
        mask = np.pad(mask, pads, mode=pad_mode)
        inst = np.pad(inst, pads, mode=pad_mode) if inst is not None else None
    shape = mask.shape
    want_fg = rng.random() < foreground_share
    fg = np.empty(0, dtype=np.int64)
    if want_fg and classes is not None:
        fg = _pixels_of_a_class(mask, classes, rng)
    if want_fg and not fg.size:
        fg = np.flatnonzero(mask > 0)
    if fg.size:
        centre = np.unravel_index(int(fg[rng.integers(fg.size)]), shape)
        start = [
            min(max(int(c) - p // 2, 0), s - p)
            for c, p, s in zip(centre, patch, shape, strict=True)
        ]
    else:
        start = [int(rng.integers(0, s - p + 1)) for p, s in zip(patch, shape, strict=True)]
    box = tuple(slice(b, b + p) for b, p in zip(start, patch, strict=True))
    return Sample(
        image=np.ascontiguousarray(image[(slice(None), *box)]),
        mask=np.ascontiguousarray(mask[box]),
        instances=np.ascontiguousarray(inst[box]) if inst is not None else None,
        stem=sample.stem,
    )


def _pixels_of_a_class(
    mask: np.ndarray, classes: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """Flat indices of the pixels of one class drawn uniformly among ``classes`` present in
    ``mask`` (empty when none is)."""
    wanted = np.asarray(sorted({int(c) for c in classes if c >= 0}), dtype=np.int64)
    if not wanted.size:
        return np.empty(0, dtype=np.int64)
    flat = mask.reshape(-1)
    counts = np.bincount(flat[flat >= 0], minlength=int(wanted.max()) + 1)
    present = wanted[counts[wanted] > 0]
    if not present.size:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(flat == present[rng.integers(present.size)])


@dataclass(frozen=True)
class Batch:
    """A batch of patches.

    Attributes:
        images: ``float32`` ``(B, C, *patch)``.
        masks: ``int64`` ``(B, *patch)``.
        instances: ``int64`` ``(B, *patch)`` if every sample has instances, else ``None``.
        stems: the source sample of each item.
    """

    images: np.ndarray
    masks: np.ndarray
    instances: np.ndarray | None
    stems: tuple[str, ...]


class PatchSampler:
    """Reproducible batches of augmented patches from in-memory samples.

    Batch ``index`` of ``epoch`` depends only on ``(seed, epoch, index)``: the sample order of an
    epoch is a permutation drawn from ``(seed, epoch)``, and item ``j`` of the batch is cropped
    and augmented with ``default_rng([seed, epoch, index, j])``.

    Args:
        samples: images ``(C, *spatial)`` with the same ``C`` and number of spatial dims.
        batch_size: patches per batch.
        patch_size: one size per spatial dim (or one int for all).
        augment: augmentation config, or ``None`` for none.
        seed: the run's seed.
        foreground_share: share of patches centred on a foreground pixel.
        batches_per_epoch: default ``ceil(len(samples) / batch_size)``.
        normalization: ``per_image``, ``dataset`` (needs ``stats``) or ``none``; applied once to
            whole images before cropping.
        stats: from :func:`dataset_stats`, for ``normalization="dataset"``.
        pad_mode: how images smaller than the patch are padded.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        batch_size: int,
        patch_size: int | Sequence[int],
        *,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        foreground_share: float = 0.33,
        batches_per_epoch: int | None = None,
        normalization: Literal["per_image", "dataset", "none"] = "per_image",
        stats: DatasetStats | None = None,
        pad_mode: Literal["reflect", "constant"] = "reflect",
    ) -> None:
        if not samples:
            raise ValueError("samples: expected at least one sample")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size!r}")
        dims = {s.spatial_dims for s in samples}
        channels = {s.image.shape[0] for s in samples}
        if len(dims) != 1 or len(channels) != 1:
            raise ValueError(
                f"samples: mixed spatial dims {sorted(dims)} or channel counts {sorted(channels)}"
            )
        if not 0.0 <= foreground_share <= 1.0:
            raise ValueError(f"foreground_share: expected 0..1, got {foreground_share!r}")
        if normalization not in ("per_image", "dataset", "none"):
            raise ValueError(
                f"normalization: expected 'per_image', 'dataset' or 'none', got {normalization!r}"
            )
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch: expected >= 1, got {batches_per_epoch!r}")
        self.patch_size = _patch_shape(patch_size, dims.pop())
        self.batch_size = int(batch_size)
        self.augment = augment
        self.seed = int(seed)
        self.foreground_share = float(foreground_share)
        self.pad_mode = pad_mode
        self.batches_per_epoch = batches_per_epoch or math.ceil(len(samples) / batch_size)
        if normalization == "none":
            self.samples = list(samples)
        else:
            self.samples = [
                Sample(normalize(s.image, normalization, stats), s.mask, s.instances, s.stem)
                for s in samples
            ]

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch ``index`` (0-based) of ``epoch``, without producing any other batch."""
        if epoch < 0 or not 0 <= index < self.batches_per_epoch:
            raise ValueError(
                f"index: expected epoch >= 0 and 0 <= index < "
                f"{self.batches_per_epoch}, got ({epoch}, {index})"
            )
        order = self._order(epoch)
        items = []
        for j in range(self.batch_size):
            sample = self.samples[int(order[(index * self.batch_size + j) % len(order)])]
            rng = np.random.default_rng([self.seed, epoch, index, j])
            patch = sample_patch(
                sample, self.patch_size, rng, self.foreground_share, pad_mode=self.pad_mode
            )
            if self.augment is not None:
                patch = augment(patch, self.augment, rng)
            items.append(patch)
        with_instances = all(p.instances is not None for p in items)
        return Batch(
            images=np.stack([p.image for p in items]),
            masks=np.stack([p.mask for p in items]),
            instances=np.stack([p.instances for p in items]) if with_instances else None,
            stems=tuple(p.stem for p in items),
        )

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from ``start`` (to resume mid-epoch)."""
        for index in range(start, self.batches_per_epoch):
            yield self.batch(epoch, index)
