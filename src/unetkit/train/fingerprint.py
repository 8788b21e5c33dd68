"""The data's fingerprint, and the geometry-aware choices the recipe makes from it.

A :class:`Fingerprint` holds what the images say about themselves: voxel spacings (from NIfTI
headers, or declared in ``dataset.yaml``), sizes, intensity statistics of the foreground, and
the modality when declared. :func:`plan_geometry` turns it into choices, each with the reason it
prints:

* **target spacing**: the median spacing per axis; on a strongly anisotropic axis (more than 3x
  the finest) the 10th percentile instead, so the few finer volumes are not blurred further.
* **strides and kernels** per level and axis: an axis is pooled only while its spacing is at most
  twice the finest current spacing (a 10x coarser z is not pooled until the in-plane resolution
  has caught up) and while the patch still spans at least 8 voxels along it; its kernel is 1
  while it is that much coarser, so no convolution mixes distant sections early.
* **patch shape**: a voxel budget (from the time budget) spread so that the patch covers about
  the same physical extent on every axis, capped by the median image size, each axis a multiple
  of its total pooling factor.
* **normalisation**: CT: clip to the 0.5 / 99.5 percentiles of the foreground intensities and one
  global z-score (Hounsfield units mean the same in every scan); anything else: per image.

:mod:`unetkit.train.resample` changes a volume's spacing to the target and back, exactly in
geometry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.sample import Sample
from unetkit.errors import DataError
from unetkit.io import nifti
from unetkit.train.resample import resampled_shape

#: Modalities that mean one intensity scale across scans (global z-score after clipping).
GLOBAL_SCALE_MODALITIES = ("ct",)
#: An axis is "coarse" (not pooled, kernel 1) while its spacing exceeds this ratio to the finest.
ANISOTROPY_RATIO = 2.0
#: An axis of the target spacing more than this ratio coarser gets the 10th percentile.
STRONG_ANISOTROPY = 3.0
#: Smallest feature-map extent (voxels) an axis is still pooled from.
MIN_POOLED_EXTENT = 8


def declared_geometry(
    mapping: Mapping[str, Any] | None,
) -> tuple[str | None, tuple[float, ...] | None]:
    """``(modality, spacing)`` declared in a dataset description (``dataset.yaml``'s keys).

    ``modality``: a string such as ``"CT"``, ``"MR"``, ``"EM"`` (lower-cased); ``spacing``: one
    number per spatial axis in the network's axis order (first axis first), e.g. ``[50, 4.6,
    4.6]`` for serial sections. Missing keys give ``None``.

    Raises:
        ValueError: a key with a value of the wrong kind, named.
    """
    if not mapping:
        return None, None
    modality = mapping.get("modality")
    if modality is not None and not isinstance(modality, str):
        raise ValueError(f"modality: expected a name such as CT or MR, got {modality!r}")
    spacing = mapping.get("spacing")
    if spacing is not None:
        if not isinstance(spacing, list | tuple) or not all(
            isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s > 0
            for s in spacing
        ):
            raise ValueError(
                f"spacing: expected one positive number per spatial axis, e.g. [50, 4.6, 4.6], "
                f"got {spacing!r}"
            )
        spacing = tuple(float(s) for s in spacing)
    return (modality.lower() if modality else None), spacing


@dataclass(frozen=True)
class Fingerprint:
    """What a dataset's training images say about themselves.

    Attributes:
        spatial_dims: 1, 2 or 3.
        shapes: spatial shape of every image.
        spacings: voxel spacing of every image (one number per axis), or ``None`` where unknown.
        modality: declared modality, lower-case (``"ct"``, ``"mr"``, ...), or ``None``.
        foreground_percentiles: 0.5 and 99.5 percentiles of the foreground intensities (first
            channel), and their mean and std: ``(p0.5, p99.5, mean, std)``.
    """

    spatial_dims: int
    shapes: tuple[tuple[int, ...], ...]
    spacings: tuple[tuple[float, ...] | None, ...]
    modality: str | None = None
    foreground_percentiles: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)

    @property
    def median_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in np.median(np.array(self.shapes), axis=0))

    @property
    def known_spacings(self) -> list[tuple[float, ...]]:
        return [s for s in self.spacings if s is not None]


def fingerprint(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    spacings: Sequence[tuple[float, ...] | None] | None = None,
    modality: str | None = None,
    max_voxels: int = 2_000_000,
) -> Fingerprint:
    """The :class:`Fingerprint` of training images ``(C, *spatial)`` and masks ``(*spatial)``.

    ``spacings``: per image (``None`` where unknown), e.g. from NIfTI headers or a declaration;
    ``max_voxels``: foreground voxels sampled (evenly) for the intensity statistics.
    """
    if not images:
        raise ValueError("images: the fingerprint needs at least one image")
    d = images[0].ndim - 1
    shapes = tuple(tuple(int(n) for n in im.shape[1:]) for im in images)
    spacing_list = list(spacings) if spacings is not None else [None] * len(images)
    if len(spacing_list) != len(images):
        raise ValueError(
            f"spacings: expected one per image ({len(images)}), got {len(spacing_list)}"
        )
    values = [im[0][m > 0] for im, m in zip(images, masks, strict=True)]
    fg = np.concatenate([v.ravel() for v in values]) if values else np.zeros(0, np.float32)
    if fg.size == 0:  # no foreground: all voxels
        fg = np.concatenate([im[0].ravel() for im in images])
    if fg.size > max_voxels:
        fg = fg[:: math.ceil(fg.size / max_voxels)]
    lo, hi = (float(v) for v in np.percentile(fg, (0.5, 99.5)))
    clipped = np.clip(fg, lo, hi)
    stats = (lo, hi, float(clipped.mean()), float(max(clipped.std(), 1e-8)))
    return Fingerprint(
        spatial_dims=d,
        shapes=shapes,
        spacings=tuple(None if s is None else tuple(float(v) for v in s) for s in spacing_list),
        modality=modality.lower() if modality else None,
        foreground_percentiles=stats,
    )


@dataclass(frozen=True)
class GeometryPlan:
    """The recipe's geometry-aware choices and why (see the module doc).

    Attributes:
        target_spacing: per axis, or ``None`` when no spacing is known.
        strides, kernel_sizes: per level and axis (``UNetConfig`` fields), or ``None`` for the
            isotropic default.
        patch_size: per axis.
        normalization: ``"dataset"`` (global z-score, with ``clip_percentiles``) or ``"per_image"``.
        clip_percentiles: ``(0.5, 99.5)`` for CT, else ``None``.
        reasons: one line per choice.
        batch_size: patches per step where the plan sets it (an anisotropic 3D plan), else
            ``None`` (the recipe's own).
    """

    target_spacing: tuple[float, ...] | None
    strides: tuple[tuple[int, ...], ...] | None
    kernel_sizes: tuple[tuple[int, ...], ...] | None
    patch_size: tuple[int, ...]
    normalization: str
    clip_percentiles: tuple[float, float] | None
    reasons: list[str] = field(default_factory=list)
    batch_size: int | None = None

    def settings(self) -> dict[str, Any]:
        """The choices as the recipe's dotted keys."""
        out: dict[str, Any] = {
            "data.patch_size": self.patch_size,
            "data.normalization": self.normalization,
            "data.clip_percentiles": self.clip_percentiles,
        }
        if self.target_spacing is not None:
            out["data.target_spacing"] = self.target_spacing
        if self.strides is not None:
            out["model.strides"] = self.strides
            out["model.kernel_sizes"] = self.kernel_sizes
        return out


def target_spacing(fp: Fingerprint) -> tuple[tuple[float, ...] | None, str]:
    """The target spacing and the reason; ``None`` when no image has a known spacing."""
    known = np.array(fp.known_spacings, dtype=np.float64)
    if known.size == 0:
        return None, "spacing: unknown (no NIfTI header or declared spacing); voxels taken as cubes"
    target = np.median(known, axis=0)
    finest = target.min()
    why = "median of the training images"
    for axis in range(target.size):
        if target[axis] > STRONG_ANISOTROPY * finest and len(known) > 1:
            target[axis] = np.percentile(known[:, axis], 10)
            why += f"; axis {axis} is over {STRONG_ANISOTROPY:g}x coarser: its 10th percentile"
    spacing = tuple(float(v) for v in target)
    return spacing, f"target spacing {_fmt(spacing)} ({why})"


def plan_pooling(
    spacing: Sequence[float], patch: Sequence[int], depth: int
) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """Per-level strides (``depth - 1``) and kernels (``depth``) for voxels of ``spacing``.

    An axis is pooled while its current spacing is at most :data:`ANISOTROPY_RATIO` times the
    finest current spacing and its feature map still spans :data:`MIN_POOLED_EXTENT` voxels;
    its kernel is 1 while it is coarser than that ratio, else 3.
    """
    current = [float(s) for s in spacing]
    extent = [int(n) for n in patch]
    strides: list[tuple[int, ...]] = []
    kernels: list[tuple[int, ...]] = []
    for level in range(depth):
        finest = min(current)
        coarse = [s > ANISOTROPY_RATIO * finest for s in current]
        kernels.append(tuple(1 if c else 3 for c in coarse))
        if level == depth - 1:
            break
        step = tuple(
            2 if not c and e >= MIN_POOLED_EXTENT else 1
            for c, e in zip(coarse, extent, strict=True)
        )
        strides.append(step)
        current = [s * f for s, f in zip(current, step, strict=True)]
        extent = [e // f for e, f in zip(extent, step, strict=True)]
    return tuple(strides), tuple(kernels)


def plan_geometry(fp: Fingerprint, *, voxels: int, depth: int) -> GeometryPlan:
    """Choose target spacing, strides/kernels, patch shape and normalisation (see module doc).

    ``voxels``: patch voxel budget (from the time budget); ``depth``: levels of the model.
    """
    reasons: list[str] = []
    spacing, why = target_spacing(fp)
    reasons.append(why)
    d = fp.spatial_dims
    median = fp.median_shape if spacing is None else _median_at(fp, spacing)
    phys = spacing or (1.0,) * d
    # physical extent as even as the voxel budget and the image allow
    edge = (voxels * math.prod(phys)) ** (1.0 / d)  # mm of a cube of `voxels` voxels
    patch = [max(1, min(n, round(edge / s))) for n, s in zip(median, phys, strict=True)]
    for _ in range(4):  # axes capped by the image give their share to the others
        free = [a for a in range(d) if patch[a] < median[a]]
        if not free:
            break
        scale = (voxels / math.prod(patch)) ** (1.0 / len(free))
        if scale <= 1.01:
            break
        for a in free:
            patch[a] = max(1, min(median[a], int(patch[a] * scale)))
    strides, kernels = plan_pooling(phys, patch, depth)
    factors = [math.prod(s[a] for s in strides) for a in range(d)]
    # a multiple of each axis's pooling factor, and at least 8 (thinner images are padded)
    patch = [max(f, 8, n // f * f) for n, f in zip(patch, factors, strict=True)]
    anisotropic = any(k != (3,) * d for k in kernels) or any(s != (2,) * d for s in strides)
    if anisotropic:
        reasons.append(
            f"strides {_rows(strides)}, kernels {_rows(kernels)}: an axis is pooled only once "
            f"its spacing is within {ANISOTROPY_RATIO:g}x of the finest (and the patch still "
            f"spans {MIN_POOLED_EXTENT} voxels), convolved in-plane while coarser"
        )
    else:
        reasons.append("strides 2 and kernels 3 on every axis (voxels close to cubes)")
    reasons.append(
        f"patch {list(patch)} voxels = "
        f"{_fmt(tuple(n * s for n, s in zip(patch, phys, strict=True)))}"
        f"{' (spacing units)' if spacing else ' voxels'}: about {voxels} voxels, even in "
        f"physical extent, capped by the median image {list(median)}"
    )
    if fp.modality in GLOBAL_SCALE_MODALITIES:
        lo, hi, mean, std = fp.foreground_percentiles
        normalization, clip = "dataset", (0.5, 99.5)
        reasons.append(
            f"normalisation: {fp.modality.upper()}: clip to the 0.5/99.5 percentiles "
            f"({lo:.4g}..{hi:.4g} on the foreground) and one global z-score (mean {mean:.4g}, "
            f"std {std:.4g}): intensities mean the same in every scan"
        )
    else:
        normalization, clip = "per_image", None
        what = f"modality {fp.modality}" if fp.modality else "no declared modality"
        reasons.append(f"normalisation: per image ({what}: intensity scales may differ)")
    return GeometryPlan(
        target_spacing=spacing,
        strides=strides if anisotropic else None,
        kernel_sizes=kernels if anisotropic else None,
        patch_size=tuple(patch),
        normalization=normalization,
        clip_percentiles=clip,
        reasons=reasons,
    )


def _median_at(fp: Fingerprint, target: Sequence[float]) -> tuple[int, ...]:
    """The median image shape once every image with a known spacing is at ``target``."""
    shapes = [
        sh if sp is None else resampled_shape(sh, sp, target)
        for sh, sp in zip(fp.shapes, fp.spacings, strict=True)
    ]
    return tuple(int(v) for v in np.median(np.array(shapes), axis=0))


def _fmt(values: Sequence[float]) -> str:
    return "x".join(f"{v:.3g}" for v in values)


def _rows(rows: Sequence[Sequence[int]]) -> str:
    return str([list(r) for r in rows])


# ------------------------------------------------------------------------------ from a dataset


def read_declaration(folder: str | Path) -> Mapping[str, Any] | None:
    """``folder/dataset.yaml`` as a mapping, or ``None`` when there is none.

    A bridge: the dataset description's own reader (class names, ignore label) owns this file;
    only its ``modality`` and ``spacing`` keys are used here, through :func:`declared_geometry`.
    """
    path = Path(folder) / "dataset.yaml"
    if not path.is_file():
        return None
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return loaded if isinstance(loaded, Mapping) else None


def sample_spacings(
    source: str | Path, samples: Sequence[Sample]
) -> tuple[str | None, list[tuple[float, ...] | None]]:
    """``(modality, spacing of each sample)`` of a dataset folder: the declared ``spacing`` of
    ``dataset.yaml`` if any, else the NIfTI header of ``source/images/<stem>.nii[.gz]``, else
    ``None`` for that sample. A folder that does not exist (synthetic data) says nothing.

    Raises:
        DataError: a ``dataset.yaml`` whose keys are wrong, or a spacing of another
            dimensionality than the images, naming the file.
    """
    folder = Path(source)
    if not samples or not folder.is_dir():
        return None, [None] * len(samples)
    try:
        modality, declared = declared_geometry(read_declaration(folder))
    except ValueError as exc:
        raise DataError(f"{folder / 'dataset.yaml'}: {exc}") from None
    d = samples[0].spatial_dims
    if declared is not None and len(declared) != d:
        raise DataError(
            f"{folder / 'dataset.yaml'}: spacing {list(declared)} has {len(declared)} numbers, "
            f"but the images are {d}D; give one per spatial axis, first axis first"
        )
    spacings: list[tuple[float, ...] | None] = []
    for s in samples:
        found = declared
        if found is None:
            for suffix in (".nii.gz", ".nii", ".gz"):  # the stem of a.nii.gz is a.nii
                path = folder / "images" / f"{s.stem}{suffix}"
                if nifti.is_nifti_name(path) and path.is_file():
                    found = nifti.spacing(path)
                    break
        spacings.append(found)
    return modality, spacings


def dataset_fingerprint(source: str | Path, samples: Sequence[Sample]) -> Fingerprint | None:
    """The fingerprint of a dataset folder's training ``samples``, or ``None`` when the data
    says nothing about geometry or modality (no NIfTI spacing, no declaration): then the recipe
    keeps its plain choices. Spacings and modality: :func:`sample_spacings`.
    """
    modality, spacings = sample_spacings(source, samples)
    if modality is None and all(sp is None for sp in spacings):
        return None
    return fingerprint(
        [s.image for s in samples], [s.mask for s in samples], spacings=spacings, modality=modality
    )
