"""Seeded augmentations that move an image and its labels together, in 1D, 2D and 3D.

``augment(sample, config, rng)`` applies, each with its probability:

1. a flip along every spatial axis (independently);
2. a 90° rotation in the plane of the last two axes (2D/3D; by 180° only if that plane is not
   square, so the shape never changes);
3. an affine transform (rotation in every plane of the spatial axes, isotropic scaling) and/or
   an **elastic deformation as in the U-Net paper** (Ronneberger et al. 2015): random
   displacements on a coarse grid of ``elastic_grid`` control points per axis with
   ``elastic_sigma`` pixels standard deviation, interpolated with cubic splines to a dense
   field. Both are applied in one resampling: linear interpolation for the image, nearest for
   the mask and instances (so labels stay a subset of the input labels), mirrored borders;
4. intensity changes on the image only: brightness/contrast, gamma, Gaussian noise, and a
   polarity inversion (each channel mirrored about its mean, so bright objects on a dark
   ground become dark on bright): off by default, chosen by the recipe for data whose objects
   are brighter than their surroundings in some images and darker in others (fluorescence and
   brightfield microscopy mixed, as in the DSB 2018 nuclei), so the network learns one
   polarity-free notion of an object instead of two from half the data each.

The spatial shape never changes. One code path serves every dimensionality.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unetkit.data.fields import upsample
from unetkit.data.sample import Sample

_FIELD_STEP = 4  # the dense displacement field is computed on a grid 4x coarser, then zoomed


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (``p_*``, 0..1) and strengths of each augmentation.

    Attributes:
        p_flip: probability of a flip, drawn separately for each spatial axis.
        p_rot90: probability of a 90° (or 180°) rotation in the last two axes.
        p_affine: probability of a rotation + scaling.
        rotate_deg: largest rotation angle, degrees, in each plane of the spatial axes.
        scale: range of the isotropic scale factor (>1 zooms in).
        p_elastic: probability of an elastic deformation.
        elastic_sigma: standard deviation of the control-point displacements, pixels.
        elastic_grid: control points per axis (>= 2); 3 as in the U-Net paper.
        p_intensity: probability of a brightness/contrast change.
        brightness: largest shift, in units of the image's standard deviation.
        contrast: range of the contrast factor around the mean.
        p_gamma: probability of a gamma change (on each channel's min..max range).
        gamma: range of the gamma exponent.
        p_noise: probability of additive Gaussian noise.
        noise_std: noise standard deviation, in units of the image's standard deviation.
        p_invert: probability of a polarity inversion (``2 * mean - image`` per channel).
    """

    p_flip: float = 0.5
    p_rot90: float = 0.5
    p_affine: float = 0.3
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    p_elastic: float = 0.3
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    p_intensity: float = 0.3
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.25)
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    p_noise: float = 0.2
    noise_std: float = 0.05
    p_invert: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "p_flip",
            "p_rot90",
            "p_affine",
            "p_elastic",
            "p_intensity",
            "p_gamma",
            "p_noise",
            "p_invert",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a probability 0..1, got {value!r}")
        for name in ("rotate_deg", "elastic_sigma", "brightness", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)!r}")
        if self.elastic_grid < 2:
            raise ValueError(f"elastic_grid: expected >= 2, got {self.elastic_grid!r}")
        for name in ("scale", "contrast", "gamma"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name}: expected 0 < low <= high, got {(lo, hi)!r}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """A config that changes nothing (every probability 0)."""
        return cls(
            p_flip=0.0,
            p_rot90=0.0,
            p_affine=0.0,
            p_elastic=0.0,
            p_intensity=0.0,
            p_gamma=0.0,
            p_noise=0.0,
        )


def _labels(sample: Sample) -> list[np.ndarray]:
    return [sample.mask] + ([sample.instances] if sample.instances is not None else [])


def _rebuild(sample: Sample, image: np.ndarray, labels: list[np.ndarray]) -> Sample:
    return Sample(
        image=np.ascontiguousarray(image, dtype=np.float32),
        mask=np.ascontiguousarray(labels[0], dtype=np.int64),
        instances=np.ascontiguousarray(labels[1], dtype=np.int64) if len(labels) > 1 else None,
        stem=sample.stem,
    )


def flip_rot90(sample: Sample, config: AugmentConfig, rng: np.random.Generator) -> Sample:
    """Random flips along each spatial axis and a 90° rotation in the last two axes.

    ``(C, *spatial)`` / ``(*spatial)`` -> same shapes.
    """
    image, labels = sample.image, _labels(sample)
    nd = sample.spatial_dims
    for axis in range(nd):
        if rng.random() < config.p_flip:
            image = np.flip(image, axis=axis + 1)
            labels = [np.flip(lab, axis=axis) for lab in labels]
    if nd >= 2 and rng.random() < config.p_rot90:
        square = image.shape[-1] == image.shape[-2]
        k = int(rng.integers(1, 4)) if square else 2
        image = np.rot90(image, k, axes=(-2, -1))
        labels = [np.rot90(lab, k, axes=(-2, -1)) for lab in labels]
    return _rebuild(sample, image, labels)


def _rotation_matrix(nd: int, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Product of rotations by U(-max_deg, max_deg) in every plane (i, j) of ``nd`` axes."""
    rot = np.eye(nd)
    for i, j in itertools.combinations(range(nd), 2):
        theta = math.radians(rng.uniform(-max_deg, max_deg))
        plane = np.eye(nd)
        plane[i, i] = plane[j, j] = math.cos(theta)
        plane[i, j], plane[j, i] = -math.sin(theta), math.sin(theta)
        rot = rot @ plane
    return rot


def elastic_field(
    shape: tuple[int, ...], sigma: float, grid: int, rng: np.random.Generator
) -> np.ndarray:
    """Dense displacement field ``(nd, *shape)`` in pixels, as in the U-Net paper.

    ``grid`` control points per axis get ``N(0, sigma)`` displacements, interpolated with cubic
    splines (computed on a 4x coarser grid, then linearly zoomed: the field is smooth, so this
    loses nothing visible and is ~10x faster). ``sigma == 0`` gives exactly zero.
    """
    nd = len(shape)
    coarse_shape = tuple(max(2, math.ceil(s / _FIELD_STEP)) for s in shape)
    field = np.empty((nd, *shape), dtype=np.float32)
    for axis in range(nd):
        control = rng.normal(0.0, sigma, size=(grid,) * nd) if sigma > 0 else np.zeros((grid,) * nd)
        low = upsample(control, coarse_shape, order=3)
        zoom = [s / c for s, c in zip(shape, coarse_shape, strict=True)]
        field[axis] = ndimage.zoom(low, zoom, order=1, mode="nearest", grid_mode=False)
    return field


def spatial_transform(sample: Sample, config: AugmentConfig, rng: np.random.Generator) -> Sample:
    """Random affine and/or elastic deformation, one resampling for both.

    Image: linear interpolation; mask and instances: nearest. Borders are mirrored.
    ``(C, *spatial)`` / ``(*spatial)`` -> same shapes.
    """
    nd = sample.spatial_dims
    shape = sample.spatial_shape
    do_affine = rng.random() < config.p_affine
    do_elastic = rng.random() < config.p_elastic
    if not (do_affine or do_elastic):
        return sample
    matrix = np.eye(nd)
    if do_affine:
        scale = rng.uniform(*config.scale)
        matrix = _rotation_matrix(nd, config.rotate_deg, rng) / scale
    centre = (np.array(shape, dtype=np.float64) - 1) / 2
    offset = centre - matrix @ centre
    if not do_elastic:
        image = np.stack(
            [
                ndimage.affine_transform(c, matrix, offset, order=1, mode="mirror")
                for c in sample.image
            ]
        )
        labels = [
            ndimage.affine_transform(lab, matrix, offset, order=0, mode="mirror")
            for lab in _labels(sample)
        ]
        return _rebuild(sample, image, labels)
    grid = np.stack(
        np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    )  # (nd, *spatial)
    coords = np.tensordot(matrix.astype(np.float32), grid, axes=1)
    coords += offset.astype(np.float32).reshape((nd,) + (1,) * nd)
    coords += elastic_field(shape, config.elastic_sigma, config.elastic_grid, rng)
    image = np.stack(
        [ndimage.map_coordinates(c, coords, order=1, mode="mirror") for c in sample.image]
    )
    labels = [
        ndimage.map_coordinates(lab, coords, order=0, mode="mirror") for lab in _labels(sample)
    ]
    return _rebuild(sample, image, labels)


def intensity(sample: Sample, config: AugmentConfig, rng: np.random.Generator) -> Sample:
    """Brightness/contrast, gamma, Gaussian noise and polarity inversion on the image; labels
    untouched. With ``p_invert == 0`` no random number is drawn for the inversion, so runs
    without it are bit-identical to runs made before it existed."""
    image = sample.image
    changed = False
    axes = tuple(range(1, image.ndim))
    if rng.random() < config.p_intensity:
        mean = image.mean(axis=axes, keepdims=True)
        std = image.std(axis=axes, keepdims=True)
        factor = rng.uniform(*config.contrast)
        shift = rng.uniform(-config.brightness, config.brightness)
        image = (image - mean) * factor + mean + shift * std
        changed = True
    if rng.random() < config.p_gamma:
        lo = image.min(axis=axes, keepdims=True)
        span = np.maximum(image.max(axis=axes, keepdims=True) - lo, 1e-8)
        image = lo + span * ((image - lo) / span) ** rng.uniform(*config.gamma)
        changed = True
    if rng.random() < config.p_noise:
        std = float(image.std()) or 1.0
        image = image + rng.normal(0.0, config.noise_std * std, size=image.shape)
        changed = True
    if config.p_invert > 0 and rng.random() < config.p_invert:
        image = 2.0 * image.mean(axis=axes, keepdims=True) - image
        changed = True
    if not changed:
        return sample
    return Sample(
        image=image.astype(np.float32),
        mask=sample.mask,
        instances=sample.instances,
        stem=sample.stem,
    )


def augment(sample: Sample, config: AugmentConfig, rng: np.random.Generator) -> Sample:
    """Apply :func:`flip_rot90`, :func:`spatial_transform` and :func:`intensity` in turn.

    Args:
        sample: image ``(C, *spatial)``, mask and optional instances ``(*spatial)``.
        config: probabilities and strengths.
        rng: the only source of randomness; the same generator state gives the same result.

    Returns:
        A new :class:`Sample` with the same shapes and dtypes.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng: expected a numpy.random.Generator")
    sample = flip_rot90(sample, config, rng)
    sample = spatial_transform(sample, config, rng)
    return intensity(sample, config, rng)
