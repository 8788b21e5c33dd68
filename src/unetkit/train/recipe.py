"""The automatic recipe: a training setup chosen from the data and the time budget.

``unetkit train --data DIR --max-minutes M`` sets nothing else, so every setting the user did
not give explicitly is filled in here from a :class:`DataSummary` (image sizes, channels, class
count and frequencies, spatial layout of the labels) and the budget. The number of steps is
sized later, by the trainer, from a measured step time (:func:`plan_steps`).

Rules (CPU-first; a few minutes of training is the common case):

* patch: the median image side, capped at 128 (2D, budget <= 10 min), 192 (<= 60 min) or 256;
  3D 48/64/96; 1D up to 1024. Rounded to a multiple of the downsampling factor.
* batch: about 128 k pixels per step (2D), at least 2.
* widths: 16 at the first level for budgets up to 10 minutes, 32 beyond; doubling per level;
  levels so the bottleneck sees the patch at 1/8..1/16.
* loss: Dice + cross-entropy (robust to class imbalance); foreground-centred patches raised to
  half when the foreground is rare.
* augmentation: flips and 90° rotations, unless the labels have a preferred orientation
  (class frequencies differ between the top and bottom of the images, as in street scenes): then
  left-right flips only; light affine, elastic and intensity changes, stronger with longer
  budgets.
* normalisation: per image (robust to mixed microscopy modalities).
* polarity: when the objects of a one-object-class dataset are brighter than their
  surroundings in some images and darker in others (at least 10% of the images, and two, each
  way; :func:`polarity_counts`), a polarity inversion is added to the augmentation
  (``p_invert=0.5``), so both kinds teach one network. On the DSB 2018 nuclei (fluorescence and
  brightfield mixed) this is what makes the rare brightfield images usable.
* sampling: with two or more foreground classes of the dataset's own (not an instance
  target's interior and border), class-aware patch centres (a class drawn
  uniformly among those an image holds, ``data.sampling=class_aware``), so rare classes are
  seen often; else foreground-centred (the same draw with one class). When, in addition, the
  most frequent foreground class is over ``IMBALANCE_FOR_WEIGHTS`` times the rarest,
  cross-entropy is weighted by 1 / sqrt(frequency) (``class_weighting=sqrt``; issue #20).
* schedule: AdamW, 5% warm-up then poly decay, gradient clipping.
* precision ``auto``: bf16 autocast where this run's own step is measured faster (AMX CPUs,
  GPUs; 1.7x on an AMX Xeon), else fp32. Measured at 10 minutes in ``benchmarks/README.md``.
* on a CUDA GPU (:func:`gpu_settings`): the patch cap doubles, the first level is 32 wide, and
  the batch grows while a step's estimated memory stays within 40% of the GPU's free memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from unetkit.config import RunConfig
from unetkit.data.augment import AugmentConfig
from unetkit.data.declaration import DatasetDeclaration, read_declaration
from unetkit.data.sample import Sample
from unetkit.errors import DataError
from unetkit.train.fingerprint import Fingerprint, GeometryPlan, plan_geometry
from unetkit.train.prepare import IMBALANCE_FOR_WEIGHTS, foreground_imbalance


@dataclass(frozen=True)
class DataSummary:
    """What the recipe needs to know about a dataset.

    Attributes:
        spatial_dims, in_channels, num_classes: of the images and masks.
        median_shape: median spatial shape of the training images.
        class_frequencies: share of pixels per class ``(K,)``.
        oriented: labels have a preferred vertical orientation (see :func:`summarize_data`).
        num_images: training images.
        mixed_polarity: objects are bright on dark in some images and dark on bright in others
            (:func:`polarity_counts`).
        instance_target: the classes are an instance target's (background / interior /
            border, :mod:`unetkit.instances.targets`), not the dataset's own.
    """

    spatial_dims: int
    in_channels: int
    num_classes: int
    median_shape: tuple[int, ...]
    class_frequencies: tuple[float, ...]
    oriented: bool
    num_images: int
    mixed_polarity: bool = False
    instance_target: bool = False


def _orientation_score(samples: Sequence[Sample], num_classes: int) -> float:
    """Total-variation distance between label frequencies in the top and bottom thirds (2D)."""
    top = np.zeros(num_classes)
    bottom = np.zeros(num_classes)
    for s in samples:
        h = s.mask.shape[-2]
        third = max(1, h // 3)
        top += np.bincount(s.mask[..., :third, :].ravel(), minlength=num_classes)[:num_classes]
        bottom += np.bincount(s.mask[..., -third:, :].ravel(), minlength=num_classes)[:num_classes]
    if top.sum() == 0 or bottom.sum() == 0:
        return 0.0
    return 0.5 * float(np.abs(top / top.sum() - bottom / bottom.sum()).sum())


def polarity_counts(samples: Sequence[Sample], num_classes: int) -> tuple[int, int]:
    """Images whose objects are clearly brighter / darker than the rest: ``(bright, dark)``.

    Objects are the instance ids where a sample has them, else ``mask > 0`` for binary masks;
    data with several object classes has no single polarity and counts ``(0, 0)``. An image
    counts when the difference of the mean intensities (over channels) inside and outside its
    objects exceeds a quarter of its standard deviation.
    """
    bright = dark = 0
    for s in samples:
        if s.instances is not None:
            objects = s.instances > 0
        elif num_classes == 2:
            objects = s.mask == 1
        else:
            continue
        if not objects.any() or objects.all():
            continue
        image = s.image.mean(axis=0)
        std = float(image.std())
        if std == 0.0:
            continue
        contrast = (float(image[objects].mean()) - float(image[~objects].mean())) / std
        bright += contrast > 0.25
        dark += contrast < -0.25
    return bright, dark


def summarize_data(
    samples: Sequence[Sample], num_classes: int, *, instance_target: bool = False
) -> DataSummary:
    """A :class:`DataSummary` of training ``samples`` (labels ``0..num_classes-1``)."""
    shapes = np.array([s.spatial_shape for s in samples])
    counts = np.zeros(num_classes)
    for s in samples:
        counts += np.bincount(s.mask.ravel().clip(0), minlength=num_classes)[:num_classes]
    freq = counts / max(counts.sum(), 1)
    nd = samples[0].spatial_dims
    oriented = nd >= 2 and _orientation_score(samples, num_classes) > 0.25
    bright, dark = polarity_counts(samples, num_classes)
    least = max(2, 0.1 * len(samples))
    return DataSummary(
        spatial_dims=nd,
        in_channels=int(samples[0].image.shape[0]),
        num_classes=num_classes,
        median_shape=tuple(int(v) for v in np.median(shapes, axis=0)),
        class_frequencies=tuple(float(f) for f in freq),
        oriented=oriented,
        num_images=len(samples),
        mixed_polarity=bright >= least and dark >= least,
        instance_target=instance_target,
    )


def _round_down(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


def patch_cap(spatial_dims: int, max_minutes: float | None) -> int:
    """The largest patch side the budget affords (see the module doc)."""
    budget = max_minutes if max_minutes is not None else 30.0
    caps = {1: (1024, 2048, 4096), 2: (128, 192, 256), 3: (48, 64, 96)}[spatial_dims]
    return caps[0] if budget <= 10 else caps[1] if budget <= 60 else caps[2]


#: Patches per step of an anisotropic 3D plan (:func:`geometry_plan`).
ANISOTROPIC_BATCH = 2


def batch_for(patch: Sequence[int]) -> int:
    """Patches per step: about 128 k pixels in 2D (8 k in 1D, 2 x 48^3 in 3D), 2 to 32."""
    pixels = {1: 8 * 1024, 2: 128 * 128 * 8, 3: 48**3 * 2}[len(patch)]
    return max(2, min(32, pixels // math.prod(patch)))


def recipe_settings(
    summary: DataSummary, max_minutes: float | None, device: str = "cpu"
) -> dict[str, Any]:
    """The automatic choices as dotted ``section.field`` keys -> values (``device``: where the
    run trains; on CUDA :func:`gpu_settings` scales them up)."""
    if device != "cpu":
        from unetkit.precision import resolve_device

        resolved = resolve_device(device)
        if resolved.type == "cuda":
            return gpu_settings(summary, max_minutes, resolved)
    nd = summary.spatial_dims
    budget = max_minutes if max_minutes is not None else 30.0
    cap = patch_cap(nd, max_minutes)
    base = 16 if budget <= 10 else 32
    side = min(cap, min(summary.median_shape))
    # levels: bottleneck at 1/8 (small patches) .. 1/16 of the patch
    depth = 4 if side <= 128 or nd == 3 else 5
    if nd == 1:
        depth = 5
    factor = 2 ** (depth - 1)
    side = _round_down(side, factor)
    patch = tuple(
        min(side, _round_down(s, factor)) if s >= factor else side for s in summary.median_shape
    )
    batch = batch_for(patch)
    widths = tuple(min(base * 2**i, 320) for i in range(depth))
    fg = 1.0 - summary.class_frequencies[0] if summary.class_frequencies else 0.5
    several = summary.num_classes > 2  # two foreground classes or more
    long_run = budget > 20
    own_classes = several and not summary.instance_target  # not an instance target's classes
    imbalance = foreground_imbalance(summary.class_frequencies)
    weighted = own_classes and imbalance > IMBALANCE_FOR_WEIGHTS
    augment = AugmentConfig(
        p_flip=0.5,
        p_rot90=0.0 if summary.oriented else 0.5,
        p_affine=0.3 if long_run else 0.2,
        rotate_deg=15.0 if not summary.oriented else 8.0,
        p_elastic=0.3 if long_run else 0.15,
        p_intensity=0.3,
        p_gamma=0.2,
        p_noise=0.15,
        p_invert=0.5 if summary.mixed_polarity else 0.0,
    )
    return {
        "data.flips": "last_axis" if summary.oriented else "all",
        "data.patch_size": patch,
        "data.foreground_share": 0.5 if fg < 0.1 else 0.33,
        "data.sampling": "class_aware" if own_classes else "foreground",
        "train.class_weighting": "sqrt" if weighted else "none",
        "data.normalization": "per_image",
        "data.augment": augment,
        "model.widths": widths,
        "model.norm": "batch",
        "train.batch_size": batch,
        "train.loss": "dice_ce",
        "train.optimizer": "adamw",
        "train.lr": 3e-3,
        "train.schedule": "poly",
        "train.warmup_fraction": 0.05,
        "train.grad_clip": 5.0,
        "train.precision": "auto",
    }


def gpu_settings(
    summary: DataSummary,
    max_minutes: float | None,
    device: Any,
    *,
    free_bytes: int | None = None,
) -> dict[str, Any]:
    """:func:`recipe_settings` for a GPU: the CPU recipe's long-budget choices (loss, schedule,
    stronger augmentation), a patch cap of 512 (2D) / 160 (3D), widths from 32, and the batch
    grown while the estimated training step fits in 40% of ``free_bytes`` (default: the GPU's
    free memory now)."""
    from unetkit.memory import available_bytes, train_step_estimate
    from unetkit.model import UNetConfig

    nd = summary.spatial_dims
    settings = recipe_settings(summary, max(max_minutes or 30.0, 61.0))
    cap = {1: 8192, 2: 512, 3: 160}[nd]
    depth = len(settings["model.widths"])
    factor = 2 ** (depth - 1)
    patch = tuple(
        max(factor, _round_down(min(cap, s), factor)) if s >= factor else p
        for s, p in zip(summary.median_shape, settings["data.patch_size"], strict=True)
    )
    widths = tuple(min(32 * 2**i, 320) for i in range(depth))
    free = free_bytes if free_bytes is not None else available_bytes(str(device))[0]
    model = UNetConfig(
        spatial_dims=nd,
        in_channels=summary.in_channels,
        out_channels=summary.num_classes,
        widths=widths,
    )
    batch = 2
    while batch < 64 and train_step_estimate(model, patch, batch * 2).total <= 0.4 * free:
        batch *= 2
    settings.update({"data.patch_size": patch, "model.widths": widths, "train.batch_size": batch})
    return settings


def geometry_plan(
    summary: DataSummary,
    fp: Fingerprint | None,
    max_minutes: float | None,
    depth: int | None = None,
) -> GeometryPlan | None:
    """The fingerprint's choices (spacing, strides/kernels, patch, normalisation) for the
    recipe's model depth (or ``depth``, the levels of widths the caller gave) and patch
    budget, or ``None`` without a fingerprint."""
    if fp is None:
        return None
    depth = depth or len(recipe_settings(summary, max_minutes)["model.widths"])
    voxels = patch_cap(summary.spatial_dims, max_minutes) ** summary.spatial_dims
    plan = plan_geometry(fp, voxels=voxels, depth=depth)
    if summary.spatial_dims == 3 and plan.strides is not None:
        # mostly in-plane (1 x 3 x 3) convolutions cost per voxel what a 2D model costs per
        # pixel: a step of 2 patches gets the pixels of a 2D step, so it runs at a 2D rate
        step = batch_for((patch_cap(2, max_minutes),) * 2) * patch_cap(2, max_minutes) ** 2
        plan = plan_geometry(fp, voxels=step // ANISOTROPIC_BATCH, depth=depth)
        plan = replace(plan, batch_size=ANISOTROPIC_BATCH)
        plan.reasons.append(
            f"batch {ANISOTROPIC_BATCH} x patch {list(plan.patch_size)}: about the pixels of "
            f"a 2D step ({step}), since the in-plane kernels cost per voxel what 2D costs per "
            f"pixel"
        )
    return plan


def apply_recipe(
    config: RunConfig,
    summary: DataSummary,
    explicit: set[str] | frozenset[str] = frozenset(),
    geometry: GeometryPlan | None = None,
) -> tuple[RunConfig, dict[str, Any]]:
    """Fill every setting not in ``explicit`` (dotted keys) from :func:`recipe_settings`.

    ``in_channels``, ``out_channels`` and ``spatial_dims`` always follow the data. With a
    ``geometry`` plan (the data's fingerprint, :mod:`unetkit.train.fingerprint`), its patch,
    strides, kernels and normalisation replace the plain choices. Returns the new config and
    the settings that were applied.
    """
    settings = recipe_settings(summary, config.train.max_minutes, device=config.train.device)
    if geometry is not None:
        settings.update(geometry.settings())
        settings["train.batch_size"] = geometry.batch_size or batch_for(geometry.patch_size)
    chosen = {
        k: v
        for k, v in settings.items()
        if not any(e == k or e.startswith(k + ".") or k.startswith(e + ".") for e in explicit)
    }
    sections: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "train": {}}
    for key, value in chosen.items():
        section, name = key.split(".", 1)
        sections[section][name] = value
    model = replace(
        config.model,
        **sections["model"],
        spatial_dims=summary.spatial_dims,
        in_channels=summary.in_channels,
        out_channels=summary.num_classes,
    )
    data = replace(config.data, **sections["data"])
    if data.patch_size is not None:
        if len(data.patch_size) == 1:  # one size for every axis
            data = replace(data, patch_size=data.patch_size * summary.spatial_dims)
        elif len(data.patch_size) != summary.spatial_dims:
            raise ValueError(
                f"data.patch_size (--patch-size): {list(data.patch_size)} has "
                f"{len(data.patch_size)} sizes, but the data is {summary.spatial_dims}D; give "
                f"one size or {summary.spatial_dims}"
            )
    train = replace(config.train, **sections["train"])
    return replace(config, model=model, data=data, train=train), chosen


def flip_axes_note(summary: DataSummary) -> str:
    """A short description of the flips the recipe uses, for the run log."""
    return (
        "left-right flips only (labels have an orientation)"
        if summary.oriented
        else ("flips on every axis and 90° rotations")
    )


def apply_declaration(
    config: RunConfig, declaration: DatasetDeclaration | None, explicit: set[str]
) -> RunConfig:
    """``config`` with ``data.class_names`` and ``data.ignore_index`` from ``declaration``,
    except those the user set (``explicit`` dotted keys) or already set in ``config``.

    Names are taken only when ``data.num_classes`` is unset or matches their count; a
    mismatch is an error naming both.
    """
    if declaration is None:
        return config
    data = config.data
    changes: dict[str, Any] = {}
    if (
        declaration.class_names is not None
        and "data.class_names" not in explicit
        and data.class_names is None
    ):
        if data.num_classes is not None and data.num_classes != declaration.num_classes:
            raise DataError(
                f"{declaration.path}: class_names has {declaration.num_classes} names but "
                f"data.num_classes is {data.num_classes}; make them agree"
            )
        changes["class_names"] = declaration.class_names
        if "data.num_classes" not in explicit:
            changes["num_classes"] = declaration.num_classes
    if (
        declaration.ignore_index is not None
        and "data.ignore_index" not in explicit
        and data.ignore_index is None
    ):
        changes["ignore_index"] = declaration.ignore_index
    return replace(config, data=replace(data, **changes)) if changes else config


def with_declaration(config: RunConfig, explicit: set[str]) -> RunConfig:
    """:func:`apply_declaration` with the ``dataset.yaml`` of ``data.path`` (if any)."""
    if config.data.path is None:
        return config
    return apply_declaration(config, read_declaration(config.data.path), explicit)
