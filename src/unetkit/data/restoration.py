"""Restoration data (``task=restore``): ``images/`` with optional ``targets/``, and the
normalisation that maps targets and predictions to and from network units.

A restoration dataset is a folder with ``images/`` (the degraded inputs) and, for supervised
training, ``targets/`` (the restored images: same stems, same spatial size, any fixed channel
count; float TIFF/NPY or 8/16-bit PNG/TIFF). Without ``targets/`` the images alone train a
self-supervised denoiser. Every file is read and every problem collected before anything is
refused, each naming its file.

Units: a target is normalised with the statistics of *its input* (:func:`target_stats`), so the
network's output, mapped back with the same numbers, is in the input's own intensity units.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetkit.data.dataset import _list_files
from unetkit.data.sample import Sample
from unetkit.errors import DataError
from unetkit.io.images import ALLOWED_SUFFIXES, read_image, resolve_max_pixels, stored_dtype

#: an integer target with at most this many values, on an image with many more, is a label mask
LABEL_LIKE_VALUES = 8


def zero_mask(spatial: tuple[int, ...]) -> np.ndarray:
    """A read-only all-zero ``int64`` label view ``(*spatial)`` that costs no memory."""
    return np.broadcast_to(np.zeros((), dtype=np.int64), spatial)


def target_stats(
    mean: np.ndarray, std: np.ndarray, target_channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel ``(mean, std)`` ``(C_t,)`` that normalise a target, from its input's
    ``(C_in,)`` numbers: the same per channel when ``C_t == C_in``, else their channel means."""
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if target_channels == mean.size:
        return mean, std
    return np.full(target_channels, mean.mean()), np.full(target_channels, std.mean())


def _shape(a: tuple[int, ...]) -> str:
    return "x".join(map(str, a))


def _label_like(target: np.ndarray, image: np.ndarray) -> int | None:
    """Number of distinct values when ``target`` looks like class labels, else ``None``."""
    values = np.unique(target)
    if values.size > LABEL_LIKE_VALUES or not np.array_equal(values, np.round(values)):
        return None
    if np.unique(image[:, :: max(1, image.shape[1] // 64)]).size <= 4 * LABEL_LIKE_VALUES:
        return None  # the image is as coarse as its target: not a label mask
    return int(values.size)


def load_restore_dataset(
    root: str | os.PathLike[str],
    *,
    use_targets: bool = True,
    spatial_dims: int | None = None,
    max_pixels: int | None = None,
) -> tuple[list[Sample], bool]:
    """All samples of a restoration dataset and whether they carry targets.

    Args:
        root: folder with ``images/`` and optionally ``targets/``.
        use_targets: ``False`` refuses nothing about a missing ``targets/`` (self-supervised)
            and still reads targets when present (for validation scores).
        spatial_dims, max_pixels: as :func:`unetkit.io.read_image`.

    Returns:
        (samples sorted by stem: ``image (C, *S)``, ``target (C_t, *S)`` or ``None``, an
        all-zero mask), ``True`` when every sample has a target.

    Raises:
        DataError: one line with the number of problems and the first few (each naming a file).
    """
    root = Path(root)
    if not (root / "images").is_dir():
        hint = " (it has masks/: a segmentation dataset)" if (root / "masks").is_dir() else ""
        raise DataError(
            f"{root}: no images/ folder{hint}; a restoration dataset is images/ with targets/ "
            f"(same stems) for supervised training, or images/ alone for self-supervised "
            f"denoising"
        )
    problems: list[str] = []
    images = _list_files(root / "images", None)
    has_targets = (root / "targets").is_dir()
    if not has_targets and (root / "masks").is_dir() and use_targets:
        raise DataError(
            f"{root}: has masks/ (class labels, for task=segment) but no targets/; task=restore "
            f"learns intensities: put target images in targets/ (same stems as images/), or "
            f"set restore.mode=self_supervised to denoise from images/ alone"
        )
    targets = _list_files(root / "targets", None) if has_targets else {}
    if not images:
        problems.append(f"{root / 'images'}: no images ({' '.join(ALLOWED_SUFFIXES)})")
    if has_targets:
        for stem in sorted(set(images) - set(targets)):
            problems.append(
                f"{images[stem]}: no target with stem {stem!r} in {root / 'targets'}; add it, "
                f"or move the image out of {root / 'images'}"
            )
        for stem in sorted(set(targets) - set(images)):
            problems.append(
                f"{targets[stem]}: no image with stem {stem!r} in {root / 'images'}; add it, or "
                f"move the target out of {root / 'targets'}"
            )
    max_pixels = resolve_max_pixels(max_pixels)
    samples: list[Sample] = []
    target_channels: dict[int, str] = {}
    for stem in sorted(images):
        try:
            image = read_image(images[stem], spatial_dims=spatial_dims, max_pixels=max_pixels)
        except DataError as exc:
            problems.append(str(exc))
            continue
        spatial = tuple(int(n) for n in image.shape[1:])
        target = None
        if stem in targets:
            path = targets[stem]
            try:
                target = read_image(path, spatial_dims=len(spatial), max_pixels=max_pixels)
            except DataError as exc:
                problems.append(str(exc))
                continue
            if tuple(target.shape[1:]) != spatial:
                problems.append(
                    f"{path}: target size {_shape(target.shape[1:])} differs from image size "
                    f"{_shape(spatial)} of {images[stem]}; targets must be on the image's grid "
                    f"(resample the input to the target's size first)"
                )
                continue
            if stored_dtype(path).kind in "biu":
                n = _label_like(target, image)
                if n is not None:
                    problems.append(
                        f"{path}: holds only {n} integer values: class labels, not an image; "
                        f"task=restore needs target intensities (float TIFF/NPY or 8/16-bit "
                        f"PNG/TIFF); for label masks use task=segment with masks/"
                    )
                    continue
            target_channels.setdefault(int(target.shape[0]), str(path))
        samples.append(Sample(image, zero_mask(spatial), None, stem, target))
    if len(target_channels) > 1:
        problems.append(
            "targets have different channel counts: "
            + ", ".join(f"{c} (e.g. {p})" for c, p in sorted(target_channels.items()))
            + "; a run needs one"
        )
    if problems:
        first = " | ".join(problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(f"{root}: {len(problems)} problem(s): {first}{more}")
    with_targets = bool(samples) and all(s.target is not None for s in samples)
    return samples, with_targets
