"""Data for a run: load (or synthesise), check, split, normalise; the model-file metadata."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unetkit.config import DataConfig
from unetkit.data.dataset import check_dataset, load_dataset
from unetkit.data.sample import Sample
from unetkit.data.sampling import DatasetStats, dataset_stats
from unetkit.data.synthetic import make_synthetic
from unetkit.errors import DataError
from unetkit.instances.spec import KEY as INSTANCES_KEY
from unetkit.instances.spec import InstanceSpec
from unetkit.instances.training import (
    border_of,
    boundary_spec,
    to_boundary_samples,
    wants_boundary,
)
from unetkit.train.fingerprint import sample_spacings
from unetkit.train.loader import normalize_samples, split_indices
from unetkit.train.resample import needs_resampling, resample_sample

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Normalised train/validation samples and what was learned about them.

    Attributes:
        train, val: normalised samples (images ``(C, *spatial)``), raw labels.
        raw_train: the training samples before normalisation (for the recipe).
        num_classes, in_channels, spatial_dims: of the data.
        normalization: the ``normalization`` entry of the model-file metadata.
        source: the dataset folder, or ``"synthetic"``.
        notes: messages for the user (e.g. 0/255 masks mapped to 0/1).
        instance_spec: the instance target (``data.instance_target``), or ``None``; with one,
            the masks of ``train``/``val``/``raw_train`` are the boundary target and
            ``num_classes`` is its 3 classes (:mod:`unetkit.instances.training`).
        raw_val: the validation samples before normalisation (for tuning the instance
            post-processing on whole images).
        grids: each loaded image's own spatial shape and voxel spacing (load order, before
            resampling), the spacing ``None`` where unknown
            (:func:`unetkit.train.fingerprint.sample_spacings`).
        target_spacing: the spacing the samples were resampled to (``data.target_spacing``),
            or ``None`` when they were taken as they are.
        resampled: how many images changed grid.
    """

    train: list[Sample]
    val: list[Sample]
    raw_train: list[Sample]
    num_classes: int
    in_channels: int
    spatial_dims: int
    normalization: dict[str, Any]
    source: str
    notes: list[str] = field(default_factory=list)
    instance_spec: InstanceSpec | None = None
    raw_val: list[Sample] = field(default_factory=list)
    grids: list[tuple[tuple[int, ...], tuple[float, ...] | None]] = field(default_factory=list)
    target_spacing: tuple[float, ...] | None = None
    resampled: int = 0


def load_samples(data: DataConfig, seed: int = 0) -> tuple[list[Sample], str, list[str]]:
    """All samples of the configured dataset (checked first), or the synthetic dataset."""
    if data.path is None:
        samples = make_synthetic(
            data.synthetic_count,
            spatial_dims=data.spatial_dims or 2,
            size=data.synthetic_size,
            seed=seed,
        )
        return samples, "synthetic", []
    report = check_dataset(data.path, num_classes=data.num_classes, spatial_dims=data.spatial_dims)
    if not report.ok:
        first = " | ".join(report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise DataError(
            f"{data.path}: {len(report.problems)} problem(s): {first}{more}; run "
            f"`unetkit check-data {data.path}` for the full list"
        )
    samples = load_dataset(data.path, num_classes=data.num_classes, spatial_dims=data.spatial_dims)
    return samples, str(data.path), list(report.notes) + list(report.warnings)


def infer_num_classes(samples: list[Sample], data: DataConfig) -> int:
    """``data.num_classes``, else the largest label + 1 (ignoring ``ignore_index``), >= 2."""
    if data.num_classes is not None:
        return data.num_classes
    top = 0
    for s in samples:
        m = s.mask if data.ignore_index is None else s.mask[s.mask != data.ignore_index]
        if m.size:
            top = max(top, int(m.max()))
    if data.ignore_index is not None and data.ignore_index >= 0:
        top = max(top, data.ignore_index)
    return max(2, top + 1)


def prepare_data(data: DataConfig, seed: int = 0) -> PreparedData:
    """Load, check, split (seeded by ``data.split_seed``) and normalise the data of a run."""
    samples, source, notes = load_samples(data, seed=data.split_seed)
    nd, in_channels = check_one_kind(samples, source, "image/mask pairs")
    spacings = sample_spacings(source, samples)[1] if data.path is not None else []
    grids = [(s.spatial_shape, sp) for s, sp in zip(samples, spacings, strict=False)]
    samples, resampled = to_target_spacing(samples, spacings, data.target_spacing, source)
    num_classes = infer_num_classes(samples, data)
    spec = None
    if wants_boundary(
        data.instance_target, samples, num_classes, source, folder=data.path is not None
    ):
        border = border_of(data.instance_target)
        samples = to_boundary_samples(samples, ignore_index=data.ignore_index, border=border)
        spec = boundary_spec(border=border)
        num_classes = len(spec.class_of_channel)
    tr, va = split_indices(len(samples), data.val_fraction, data.split_seed)
    raw_train = [samples[i] for i in tr]
    raw_val = [samples[i] for i in va]
    stats, normalization = normalization_of(raw_train, data, seed)
    return PreparedData(
        train=normalize_samples(raw_train, data.normalization, stats),
        val=normalize_samples(raw_val, data.normalization, stats),
        raw_train=raw_train,
        num_classes=num_classes,
        in_channels=in_channels,
        spatial_dims=nd,
        normalization=normalization,
        source=source,
        notes=notes,
        instance_spec=spec,
        raw_val=raw_val,
        grids=grids,
        target_spacing=data.target_spacing,
        resampled=resampled,
    )


def to_target_spacing(
    samples: list[Sample],
    spacings: Sequence[tuple[float, ...] | None],
    target: Sequence[float] | None,
    source: str,
) -> tuple[list[Sample], int]:
    """``samples`` at the ``target`` spacing (:func:`unetkit.train.resample.resample_sample`)
    and how many changed grid; unknown spacings and a ``None`` target change nothing.

    Raises:
        DataError: ``target`` has another number of axes than the images.
    """
    if target is None or not spacings:
        return samples, 0
    d = samples[0].spatial_dims
    if len(target) != d:
        raise DataError(
            f"data.target_spacing: {list(target)} has {len(target)} numbers, but the images of "
            f"{source} are {d}D; give one per spatial axis, first axis first"
        )
    out = [resample_sample(s, sp, target) for s, sp in zip(samples, spacings, strict=True)]
    return out, sum(a is not b for a, b in zip(out, samples, strict=True))


def needs_new_spacing(prepared: PreparedData, target: Sequence[float] | None) -> bool:
    """Whether ``prepared`` must be read again for ``target``: the recipe chose a spacing the
    samples are not at, and some image changes grid at it."""
    if target is None or getattr(prepared, "target_spacing", None) == tuple(target):
        return False
    return any(needs_resampling(sh, sp, target) for sh, sp in getattr(prepared, "grids", []))


def spacing_line(prepared: PreparedData) -> str:
    """The run log's line on resampling: how many images changed grid, to what spacing."""
    target = "x".join(f"{v:.3g}" for v in prepared.target_spacing or ())
    return (
        f"spacing: resampled {prepared.resampled} of {len(prepared.grids)} images to the target "
        f"spacing {target} (images linear, masks per class); predict resamples inputs of known "
        f"spacing the same way and brings the labels back to their own grid"
    )


def check_one_kind(samples: Sequence[Sample], source: str, what: str) -> tuple[int, int]:
    """``(spatial_dims, channels)`` of a run's samples: at least 2 (one to train on, one to
    validate) of one dimensionality and channel count, else a :class:`DataError`."""
    if len(samples) < 2:
        raise DataError(
            f"{source}: needs at least 2 {what} (one to train on, one to validate), "
            f"found {len(samples)}"
        )
    dims = {s.spatial_dims for s in samples}
    channels = {s.image.shape[0] for s in samples}
    if len(dims) != 1 or len(channels) != 1:
        raise DataError(
            f"{source}: images mix spatial dims {sorted(dims)} or channel counts "
            f"{sorted(channels)}; a run needs one kind"
        )
    return dims.pop(), channels.pop()


def normalization_of(
    raw_train: Sequence[Sample], data: DataConfig, seed: int
) -> tuple[DatasetStats | None, dict[str, Any]]:
    """The statistics ``data.normalization`` needs (``None`` per image) and the model file's
    ``normalization`` entry."""
    if data.normalization != "dataset":
        return None, {"mode": "per_image", "mean": None, "std": None, "clip": None}
    stats = dataset_stats(raw_train, clip_percentiles=data.clip_percentiles, seed=seed)
    return stats, {
        "mode": "dataset",
        "mean": list(stats.mean),
        "std": list(stats.std),
        "clip": None if stats.lower is None else [list(stats.lower), list(stats.upper or ())],
    }


def model_metadata(
    data: DataConfig, prepared: PreparedData, patch_size: tuple[int, ...]
) -> dict[str, Any]:
    """The ``extra`` metadata of a trained model file (the project's convention).

    ``target_spacing``: the voxel spacing the model was trained at; ``predict`` resamples an
    input of known spacing to it and brings the probabilities back to the input's grid.

    A run with an instance target stores its :class:`InstanceSpec` under ``"instances"``, and
    ``num_classes`` is then the dataset's (the classes of the plain class map).
    """
    spec = prepared.instance_spec
    extra = {} if spec is None else {INSTANCES_KEY: spec.to_dict()}
    return {
        **extra,
        "num_classes": (
            prepared.num_classes if spec is None else max(spec.class_of_channel) + 1
        ),
        "ignore_index": data.ignore_index,
        "spatial_dims": prepared.spatial_dims,
        "in_channels": prepared.in_channels,
        "patch_size": list(patch_size),
        "normalization": prepared.normalization,
        "class_names": list(data.class_names) if data.class_names else None,
        "target_spacing": list(data.target_spacing) if data.target_spacing else None,
        "flips": data.flips,  # the symmetries test-time augmentation may average over
    }


def class_frequencies(samples: list[Sample], num_classes: int) -> np.ndarray:
    """Share of pixels per class ``(K,)`` over ``samples``."""
    counts = np.zeros(num_classes)
    for s in samples:
        counts += np.bincount(s.mask.ravel().clip(0), minlength=num_classes)[:num_classes]
    return counts / max(counts.sum(), 1.0)


#: Most over least frequent foreground class beyond which the recipe weights cross-entropy
#: (:mod:`unetkit.train.recipe`; CamVid 88: classes at Dice 0 without weights; Drosophila 27:
#: the weights cost more than they gain).
IMBALANCE_FOR_WEIGHTS = 50.0


def foreground_imbalance(frequencies: Sequence[float]) -> float:
    """Most over least frequent foreground class (classes >= 1 that occur); 1 below two."""
    present = [f for f in frequencies[1:] if f > 0]
    return max(present) / min(present) if len(present) >= 2 else 1.0
