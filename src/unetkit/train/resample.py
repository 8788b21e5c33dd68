"""Resampling a volume to a target spacing and back, exact in geometry.

:func:`resample` and :func:`resample_back` change a volume's spacing with its affine updated so
that the volume keeps its place in the world exactly: the new voxel grid spans the same world box
(outer voxel corners aligned, not centres), and going back lands on the original grid and affine.
:func:`zoom_to` is the one interpolation they share (any output shape, the same world box), so
prediction can bring probabilities back onto an input's exact grid. :func:`resample_labels`
resamples a label map per class (linear, then the most likely label), and
:func:`resample_sample` brings a training sample to the target spacing.

A volume is resampled only when its voxel grid would change (:func:`needs_resampling`): a spacing
equal to the target, or close enough that no axis gains or loses a voxel, leaves it untouched,
bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unetkit.data.sample import Sample

#: Label maps with more distinct values than this are resampled by nearest neighbour (instance
#: ids); fewer: per label, linear, then the most likely label.
MAX_LINEAR_LABELS = 16


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]
) -> tuple[int, ...]:
    """Voxels per axis after resampling from ``spacing`` to ``target``: the extent kept."""
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))


def needs_resampling(
    shape: Sequence[int], spacing: Sequence[float] | None, target: Sequence[float] | None
) -> bool:
    """Whether a volume of ``shape`` at ``spacing`` changes grid at ``target``: ``False`` when
    either spacing is unknown or when every axis keeps its number of voxels."""
    if spacing is None or target is None:
        return False
    if len(spacing) != len(shape) or len(target) != len(shape):
        raise ValueError(
            f"spacing {list(spacing)} / target {list(target)}: expected {len(shape)} numbers "
            f"(one per spatial axis of shape {tuple(shape)})"
        )
    return resampled_shape(shape, spacing, target) != tuple(int(n) for n in shape)


def zoom_to(volume: np.ndarray, shape: Sequence[int], *, order: int = 1) -> np.ndarray:
    """``volume (C, *S)`` -> ``(C, *shape)`` spanning the same box (voxel corners aligned).

    Output voxel ``j`` along an axis covers input voxels ``[j f, (j + 1) f)``, ``f = S / shape``;
    ``order``: 0 nearest, 1 linear, 3 cubic. The dtype is kept (labels: use ``order=0``).
    """
    from scipy.ndimage import affine_transform

    shape = tuple(int(n) for n in shape)
    scale = np.asarray([n / m for n, m in zip(volume.shape[1:], shape, strict=True)])
    offset = (scale - 1.0) / 2.0  # output voxel j centre at input (j + 0.5) f - 0.5
    out = np.stack(
        [
            affine_transform(
                c, scale, offset=offset, output_shape=shape, order=order, mode="nearest"
            )
            for c in volume
        ]
    )
    return out.astype(volume.dtype, copy=False)


def _zoom_affine(affine: np.ndarray, scale: Sequence[float]) -> np.ndarray:
    """The affine of a grid whose voxel ``j`` along an axis covers input voxels ``[j*f, (j+1)*f)``
    (``f`` = ``scale``): the same world box, so corners and extent stay exactly in place."""
    d = len(scale)
    out = np.array(affine, dtype=np.float64, copy=True)
    lin = out[:d, :d] * np.asarray(scale)[None, :]
    shift = affine[:d, :d] @ ((np.asarray(scale) - 1.0) / 2.0)
    out[:d, :d] = lin
    out[:d, d] = affine[:d, d] + shift
    return out


def resample(
    volume: np.ndarray,
    spacing: Sequence[float],
    target: Sequence[float],
    affine: np.ndarray | None = None,
    *,
    order: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``volume (C, *S)`` at ``spacing`` -> ``(C, *S')`` at about ``target``, and its affine.

    The new grid spans exactly the same world box as the old one (voxel corners, not centres,
    are aligned), so its spacing is ``spacing * S / S'`` (``target`` up to rounding to whole
    voxels) and :func:`resample_back` lands on the original grid exactly. ``order``: 1 linear
    (images), 0 nearest (labels). ``affine``: ``(d + 1, d + 1)``, default the spacing diagonal.
    """
    base = np.diag([*spacing, 1.0]) if affine is None else np.asarray(affine, np.float64)
    shape = resampled_shape(volume.shape[1:], spacing, target)
    scale = [n / m for n, m in zip(volume.shape[1:], shape, strict=True)]
    return zoom_to(volume, shape, order=order), _zoom_affine(base, scale)


def resample_back(
    volume: np.ndarray, shape: Sequence[int], affine: np.ndarray, *, order: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Undo :func:`resample`: ``(C, *S')`` -> ``(C, *shape)`` on the original grid, and its
    affine (the original one, recovered exactly from ``affine``)."""
    spacing_now = np.sqrt((np.asarray(affine)[:-1, :-1] ** 2).sum(axis=0))
    scale = [m / n for n, m in zip(shape, volume.shape[1:], strict=True)]
    target = [s * f for s, f in zip(spacing_now, scale, strict=True)]
    out, _ = resample(volume, spacing_now, target, None, order=order)
    if tuple(out.shape[1:]) != tuple(shape):  # pragma: no cover - rounding is exact here
        raise ValueError(f"resample_back: got {out.shape[1:]}, expected {tuple(shape)}")
    return out, _zoom_affine(np.asarray(affine, np.float64), scale)


def resample_labels(labels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A label map ``(*S)`` on the grid ``shape`` (the same box, as :func:`zoom_to`).

    Up to :data:`MAX_LINEAR_LABELS` distinct values: each label's indicator is interpolated
    linearly and every voxel takes the label with the largest value (smooth borders, no
    staircase when a coarse axis is refined); more values (instance ids): nearest neighbour.
    """
    values = np.unique(labels)
    if values.size > MAX_LINEAR_LABELS:
        return zoom_to(labels[None], shape, order=0)[0]
    best = np.full(tuple(shape), -1.0, dtype=np.float32)
    out = np.full(tuple(shape), values[0], dtype=labels.dtype)
    for v in values:
        p = zoom_to((labels == v).astype(np.float32)[None], shape, order=1)[0]
        win = p > best
        out[win] = v
        best[win] = p[win]
    return out


def resample_sample(
    sample: Sample,
    spacing: Sequence[float] | None,
    target: Sequence[float] | None,
    *,
    order: int = 1,
) -> Sample:
    """``sample`` at ``target`` spacing: image interpolated (``order`` 1 linear, 3 cubic), mask
    per class (:func:`resample_labels`), instances by nearest neighbour; the sample itself when
    its grid would not change (:func:`needs_resampling`)."""
    if spacing is None or target is None:
        return sample
    if not needs_resampling(sample.spatial_shape, spacing, target):
        return sample
    shape = resampled_shape(sample.spatial_shape, spacing, target)
    return Sample(
        image=zoom_to(sample.image, shape, order=order),
        mask=resample_labels(sample.mask, shape),
        instances=(
            None if sample.instances is None else zoom_to(sample.instances[None], shape, order=0)[0]
        ),
        stem=sample.stem,
        target=None if sample.target is None else zoom_to(sample.target, shape, order=order),
    )
