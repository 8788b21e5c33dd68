"""``task=diffusion`` data: the built-in digits or an ``images/`` folder, scaled to [-1, 1];
reproducible batches; the run defaults a denoiser needs.

**Digits** (``data.path=digits``, also the default with no data): the 1,797 handwritten digits
that scikit-learn ships (8x8, values 0..16, ten classes; needs the ``diffusion`` extra),
upsampled bilinearly to ``diffusion.digits_size`` (16 or 32) and scaled from [0, 16] to
[-1, 1]. :func:`digits_split` fixes the split once for every use (training, evaluation, the
feature classifier): a permutation from seed 0, 80 % train and 20 % held out. Class
conditional.

**Folders** (``data.path=DIR`` with ``images/``, any size, no masks): 2D images, scaled from
the training set's 0.5th..99.5th percentiles to [-1, 1] (clipped); training cuts random
patches of ``data.patch_size`` (random flips with ``data.augment.p_flip``). Unconditional.
The scale is stored in the model file, so generated images come back in the input's units.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.config import RunConfig
from unetkit.data.sample import Sample
from unetkit.errors import DataError
from unetkit.io.formats import ALLOWED_SUFFIXES
from unetkit.io.images import read_image
from unetkit.train.loader import split_indices
from unetkit.train.prepare import PreparedData

DIGITS = "digits"


def is_builtin(path: str | None) -> bool:
    """Whether ``data.path`` names the built-in digits (or is unset)."""
    return path is None or path == DIGITS


@functools.lru_cache(maxsize=2)
def load_digits(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """All digits as ``(N, 1, size, size)`` float32 in [-1, 1] and ``(N,)`` int64 labels."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise DataError(
            "data.path=digits: the built-in digits come with scikit-learn; install it with "
            "`pip install unetkit[diffusion]`, or give an images/ folder as data.path"
        ) from None
    x, y = sk_digits(return_X_y=True)
    t = torch.from_numpy(x.astype(np.float32)).reshape(-1, 1, 8, 8)
    if size != 8:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    images = (t / 8.0 - 1.0).clamp(-1, 1).numpy()
    return np.ascontiguousarray(images), y.astype(np.int64)


def digits_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices of the digits: a permutation from seed 0, 80 % / 20 %."""
    order = np.random.default_rng(0).permutation(n)
    cut = round(0.8 * n)
    return np.sort(order[:cut]), np.sort(order[cut:])


@dataclass
class DiffusionPrepared(PreparedData):
    """:class:`~unetkit.train.prepare.PreparedData` of a diffusion run.

    ``num_classes`` is the number of image channels (the network's output). Extra:
    ``labels`` (stem -> class, empty when unconditional), ``num_labels`` (0 when
    unconditional), ``label_names``, ``scale`` (raw units ``(low, high)`` that map to
    ``[-1, 1]``) and ``builtin`` (the digits).
    """

    labels: dict[str, int] = field(default_factory=dict)
    num_labels: int = 0
    label_names: list[str] = field(default_factory=list)
    scale: tuple[float, float] = (-1.0, 1.0)
    builtin: bool = False


def _sample(image: np.ndarray, stem: str) -> Sample:
    mask = np.broadcast_to(np.zeros((), np.int64), image.shape[1:])
    return Sample(np.ascontiguousarray(image, np.float32), mask, None, stem)


def _prepared(train: list[Sample], val: list[Sample], **kw: Any) -> DiffusionPrepared:
    c = train[0].image.shape[0]
    return DiffusionPrepared(
        train=train,
        val=val,
        raw_train=train,
        num_classes=c,
        in_channels=c,
        spatial_dims=train[0].image.ndim - 1,
        **kw,
    )


def prepare_diffusion(config: RunConfig) -> DiffusionPrepared:
    """The run's images (digits or a folder), scaled and split; see the module doc."""
    path = config.data.path
    if is_builtin(path):
        size = config.diffusion.digits_size
        images, labels = load_digits(size)
        tr, va = digits_split(len(images))
        stems = [f"digit-{i:04d}" for i in range(len(images))]
        return _prepared(
            [_sample(images[i], stems[i]) for i in tr],
            [_sample(images[i], stems[i]) for i in va],
            normalization={"mode": "range", "low": 0.0, "high": 16.0},
            source="digits (scikit-learn)",
            notes=[f"diffusion: built-in digits at {size}x{size}, class-conditional"],
            labels={stems[i]: int(labels[i]) for i in range(len(images))},
            num_labels=10,
            label_names=[str(k) for k in range(10)],
            scale=(0.0, 16.0),
            builtin=True,
        )
    folder = Path(path) / "images"
    files = (
        sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in ALLOWED_SUFFIXES)
        if folder.is_dir()
        else []
    )
    if len(files) < 2:
        raise DataError(
            f"data.path={path}: task=diffusion needs an images/ folder with at least 2 images "
            f"({' '.join(ALLOWED_SUFFIXES)}); found {len(files)}. Use data.path=digits for the "
            f"built-in digits"
        )
    raw = [read_image(f, spatial_dims=2) for f in files]
    if len({a.shape[0] for a in raw}) != 1:
        raise DataError(f"{folder}: images mix channel counts; a diffusion run needs one kind")
    tr, va = split_indices(len(raw), config.data.val_fraction, config.data.split_seed)
    values = np.concatenate([raw[i].ravel()[:: max(1, raw[i].size // 100_000)] for i in tr])
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if not high > low:
        raise DataError(f"{folder}: the training images are constant ({low}); nothing to learn")

    def scaled(a: np.ndarray) -> np.ndarray:
        return np.clip((a - low) / (high - low) * 2 - 1, -1, 1).astype(np.float32)

    return _prepared(
        [_sample(scaled(raw[i]), files[i].stem) for i in tr],
        [_sample(scaled(raw[i]), files[i].stem) for i in va],
        normalization={"mode": "range", "low": low, "high": high},
        source=str(path),
        notes=["diffusion: images/ only (masks are not used), unconditional"],
        scale=(low, high),
    )


@dataclass(frozen=True)
class DiffusionBatch:
    """This rank's share of a global batch: ``images (B, C, *P)`` in [-1, 1], ``labels (B,)``
    (all 0 when unconditional)."""

    images: torch.Tensor
    labels: torch.Tensor


class DiffusionBatches:
    """Reproducible, rank-sharded batches: item ``j`` of global batch ``k`` of epoch ``e`` is
    image ``order_e[(k G + j) % n]``, cropped and flipped with ``default_rng([seed, e, k, j])``."""

    def __init__(
        self,
        prepared: DiffusionPrepared,
        batch_size: int,
        patch: Sequence[int],
        *,
        p_flip: float,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.samples = prepared.train
        self.labels = [prepared.labels.get(s.stem, 0) for s in self.samples]
        self.batch_size, self.patch = int(batch_size), tuple(int(p) for p in patch)
        self.p_flip, self.seed = float(p_flip), int(seed)
        self.rank, self.world_size = rank, world_size

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def _index(self, epoch: int, index: int, j: int) -> int:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))
        return int(order[(index * self.global_batch_size + j) % len(order)])

    def _item(self, epoch: int, index: int, j: int) -> tuple[np.ndarray, int]:
        k = self._index(epoch, index, j)
        image = self.samples[k].image
        rng = np.random.default_rng([self.seed, epoch, index, j])
        spatial = image.shape[1:]
        if any(n < p for n, p in zip(spatial, self.patch, strict=True)):
            pads = [(0, max(0, p - n)) for n, p in zip(spatial, self.patch, strict=True)]
            image = np.pad(image, [(0, 0), *pads], mode="reflect")
            spatial = image.shape[1:]
        start = [int(rng.integers(0, n - p + 1)) for n, p in zip(spatial, self.patch, strict=True)]
        image = image[
            (slice(None), *(slice(b, b + p) for b, p in zip(start, self.patch, strict=True)))
        ]
        for axis in range(1, image.ndim):
            if rng.random() < self.p_flip:
                image = np.flip(image, axis)
        return np.ascontiguousarray(image), self.labels[k]

    def stems(self, epoch: int, index: int) -> list[str]:
        return [
            self.samples[self._index(epoch, index, j)].stem for j in range(self.global_batch_size)
        ]

    def batch(self, epoch: int, index: int) -> DiffusionBatch:
        first = self.rank * self.batch_size
        items = [self._item(epoch, index, j) for j in range(first, first + self.batch_size)]
        return DiffusionBatch(
            images=torch.from_numpy(np.stack([i[0] for i in items])),
            labels=torch.tensor([i[1] for i in items], dtype=torch.long),
        )


def apply_diffusion_recipe(
    config: RunConfig, prepared: DiffusionPrepared, explicit: set[str]
) -> tuple[RunConfig, list[str]]:
    """Settings a denoiser needs, for what the caller left open (dotted keys in ``explicit``).

    Always: ``model.time_conditioning=true``, ``in_channels = out_channels`` = the image
    channels, 2D. Defaults: ``num_class_labels`` = the data's classes (digits: 10), group norm,
    SiLU, widths (32, 64, 128) with attention at level 2, patch = the digits' size (folders:
    64), batch 64, AdamW at 1e-3, constant schedule after 2 % warm-up, gradient clip 1, no
    flips for digits.
    """

    def open_(key: str) -> bool:
        return not any(e == key or e.startswith(key + ".") for e in explicit)

    m, d, t = config.model, config.data, config.train
    model: dict[str, Any] = {
        "spatial_dims": 2,
        "in_channels": prepared.in_channels,
        "out_channels": prepared.in_channels,
        "time_conditioning": True,
    }
    defaults_m = {
        "num_class_labels": prepared.num_labels,
        "norm": "group",
        "act": "silu",
        "widths": (32, 64, 128),
        "attention_levels": (2,),
        "deep_supervision": False,
    }
    side = prepared.train[0].image.shape[-1] if prepared.builtin else 64
    defaults_d = {"patch_size": (side, side)}
    defaults_t = {
        "batch_size": 64,
        "lr": 1e-3,
        "schedule": "constant",
        "warmup_fraction": 0.02,
        "grad_clip": 1.0,
        "int8_calibration": False,
    }
    chosen: list[str] = []
    changes: dict[str, dict[str, Any]] = {"model": model, "data": {}, "train": {}}
    for section, defaults in (("model", defaults_m), ("data", defaults_d), ("train", defaults_t)):
        for k, v in defaults.items():
            if open_(f"{section}.{k}"):
                changes[section][k] = v
                chosen.append(f"{section}.{k}")
    augment = d.augment
    if prepared.builtin and open_("data.augment"):
        augment = replace(augment, p_flip=0.0)  # digits have a handedness
    if model.get("num_class_labels", m.num_class_labels) not in (0, prepared.num_labels):
        raise ValueError(
            f"model.num_class_labels: {model.get('num_class_labels', m.num_class_labels)}, but "
            f"the data has {prepared.num_labels} classes; use {prepared.num_labels} or 0"
        )
    config = replace(
        config,
        model=replace(m, **model),
        data=replace(d, **changes["data"], augment=augment),
        train=replace(t, **changes["train"]),
    )
    return config, chosen
