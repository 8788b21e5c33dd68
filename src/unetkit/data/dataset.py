"""Datasets on disk: find image/mask pairs, check them all, load them into memory.

A dataset is a folder with ``images/`` and ``masks/`` (and optionally ``instances/``), files
paired by stem. :func:`check_dataset` reads every pair and collects *all* problems, each naming
the file, so a user fixes everything in one go; :func:`load_dataset` raises one
:class:`unetkit.errors.DataError` summarising them, or returns the samples.

Masks stored as 0/255 (a common export of binary masks) are read as 0/1 with a note.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

from unetkit.data.declaration import (
    DECLARATION_FILE,
    read_declaration,
)
from unetkit.data.labels import MAX_DISTINCT_LABELS, check_mask_values, show_values  # noqa: F401
from unetkit.data.report import DatasetReport, Pair
from unetkit.data.sample import Sample
from unetkit.errors import DataError
from unetkit.io.images import (
    ALLOWED_SUFFIXES,
    read_image,
    read_mask,
    resolve_max_pixels,
    stored_dtype,
)
from unetkit.io.nifti import check_same_geometry, is_nifti_name


def stem_key(stem: str) -> str:
    """How stems are paired: after Unicode NFC normalisation, so that a name copied from a
    system that stores decomposed accents (``e`` + combining acute) pairs with ``é``."""
    return unicodedata.normalize("NFC", stem)


def _list_files(folder: Path, report: DatasetReport | None) -> dict[str, Path]:
    """Stem (NFC) -> path of the readable files in ``folder`` (hidden files skipped)."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_symlink() and not path.exists():
            if report is not None:
                report.problems.append(
                    f"{path}: is a dangling symlink to {os.readlink(path)} (its target does not "
                    f"exist); point it at an existing file, or move it out of {folder}"
                )
            continue
        if not path.is_file():
            continue
        if path.suffix.lower() not in ALLOWED_SUFFIXES:
            if report is not None:
                report.warnings.append(f"{path}: ignored (not {' '.join(ALLOWED_SUFFIXES)})")
            continue
        key = stem_key(path.stem)
        if key in out:
            if report is not None:
                report.problems.append(
                    f"{path}: two files with stem {key!r} ({out[key].name} and "
                    f"{path.name}); rename one, or move one out of {folder}"
                )
            continue
        out[key] = path
    return out


def _scan(root: Path, report: DatasetReport | None) -> list[Pair]:
    """Matched pairs; unmatched files and folder problems go to ``report`` if given."""
    missing = [root / sub for sub in ("images", "masks") if not (root / sub).is_dir()]
    if not root.is_dir() or missing:
        what = (
            f"{root}: not a folder"
            if not root.is_dir()
            else (f"{root}: missing folder(s) {', '.join(p.name + '/' for p in missing)}")
        )
        message = f"{what}; a dataset is a folder with images/ and masks/ (same file stems)"
        if root.is_dir() and (root / "targets").is_dir() and not (root / "masks").is_dir():
            message += " (this one has targets/: a restoration dataset; train it with task=restore)"
        if report is None:
            raise DataError(message)
        report.problems.append(message)
        return []
    images = _list_files(root / "images", report)
    masks = _list_files(root / "masks", report)
    inst_dir = root / "instances"
    instances = _list_files(inst_dir, report) if inst_dir.is_dir() else {}
    if report is not None:
        if not images:
            report.problems.append(f"{root / 'images'}: no images ({' '.join(ALLOWED_SUFFIXES)})")
        if not masks:
            report.problems.append(f"{root / 'masks'}: no masks ({' '.join(ALLOWED_SUFFIXES)})")
        for stem in sorted(set(images) - set(masks)):
            report.problems.append(
                f"{images[stem]}: no mask with stem {stem!r} in {root / 'masks'}; add it, or "
                f"move the image out of {root / 'images'}"
            )
        if images:
            for stem in sorted(set(masks) - set(images)):
                report.problems.append(
                    f"{masks[stem]}: no image with stem {stem!r} in {root / 'images'}; add it, "
                    f"or move the mask out of {root / 'masks'}"
                )
        if instances:
            for stem in sorted(set(images) & set(masks) - set(instances)):
                report.warnings.append(f"{images[stem]}: no instance file in {inst_dir}")
    return [
        Pair(stem, images[stem], masks[stem], instances.get(stem))
        for stem in sorted(set(images) & set(masks))
    ]


def find_pairs(root: str | os.PathLike[str]) -> list[Pair]:
    """Image/mask (and instance) files of ``root`` matched by stem, sorted by stem.

    Unmatched files are left out (:func:`check_dataset` reports them).

    Raises:
        DataError: ``root`` is not a folder with ``images/`` and ``masks/``.
    """
    return _scan(Path(root), None)


def _instance_truth(
    inst: np.ndarray, path: Path | None, report: DatasetReport
) -> np.ndarray | None:
    """Checked instance ids (reused ids split into pieces, with a warning), or None."""
    from unetkit.instances.validate import repair_instances

    try:
        lab, warning = repair_instances(inst, str(path))
    except DataError as exc:
        report.problems.append(str(exc))
        return None
    if warning:
        report.warnings.append(warning)
    return lab


def _inspect(
    root: Path,
    num_classes: int | None,
    spatial_dims: int | None,
    max_pixels: int | None,
    keep: bool,
) -> tuple[DatasetReport, list[Sample]]:
    if num_classes is not None and (isinstance(num_classes, bool) or num_classes < 1):
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    if spatial_dims is not None and spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims: expected None, 1, 2 or 3, got {spatial_dims!r}")
    max_pixels = resolve_max_pixels(max_pixels)  # a bad limit is one error, not one per file
    report = DatasetReport(root=root)
    try:
        report.declaration = read_declaration(root)
    except DataError as exc:
        report.problems.append(str(exc))
    declared_k = report.declaration.num_classes if report.declaration is not None else None
    if num_classes is not None and declared_k is not None and num_classes != declared_k:
        report.problems.append(
            f"{root / DECLARATION_FILE}: class_names has {declared_k} names but "
            f"--num-classes is {num_classes}; make them agree"
        )
    elif num_classes is None:
        num_classes = declared_k
    report.pairs = _scan(root, report)
    samples: list[Sample] = []
    counts: Counter[int] = Counter()
    mapped: list[Path] = []
    dims_seen: dict[int, str] = {}
    for pair in report.pairs:
        image = mask = inst = None
        try:
            image = read_image(pair.image, spatial_dims=spatial_dims, max_pixels=max_pixels)
        except DataError as exc:
            report.problems.append(str(exc))
        try:
            mask = read_mask(pair.mask, spatial_dims=spatial_dims, max_pixels=max_pixels)
            stored = stored_dtype(pair.mask)
            if stored.kind == "f":
                report.problems.append(
                    f"{pair.mask}: stores {stored} values ({show_values(np.unique(mask))}); a "
                    f"mask holds integer class labels, so save it as uint8 or uint16"
                )
                mask = None
        except DataError as exc:
            report.problems.append(str(exc))
        if pair.instances is not None:
            try:
                inst = read_mask(pair.instances, spatial_dims=spatial_dims, max_pixels=max_pixels)
            except DataError as exc:
                report.problems.append(str(exc))
        if image is None or mask is None:
            continue
        spatial = tuple(image.shape[1:])
        dims_seen.setdefault(len(spatial), str(pair.image))
        if mask.shape != spatial:
            report.problems.append(
                f"{pair.mask}: mask size {'x'.join(map(str, mask.shape))} differs from image "
                f"size {'x'.join(map(str, spatial))} of {pair.image}"
            )
            continue
        if is_nifti_name(pair.image) and is_nifti_name(pair.mask):
            try:  # same array shape, but the mask may lie elsewhere or be mirrored
                check_same_geometry(pair.image, pair.mask)
            except DataError as exc:
                report.problems.append(str(exc))
                continue
        if inst is not None and inst.shape != spatial:
            report.problems.append(
                f"{pair.instances}: instance size {'x'.join(map(str, inst.shape))} differs "
                f"from image size {'x'.join(map(str, spatial))} of {pair.image}"
            )
            inst = None
        if inst is not None:
            inst = _instance_truth(inst, pair.instances, report)
        report.sizes[pair.stem] = spatial
        report.channels[pair.stem] = int(image.shape[0])
        mask, was255 = check_mask_values(pair.mask, mask, num_classes, report.problems)
        if was255:
            mapped.append(pair.mask)
        labels, n = np.unique(mask, return_counts=True)
        counts.update(dict(zip(labels.tolist(), n.tolist(), strict=True)))
        if keep:
            samples.append(Sample(image, mask, inst, pair.stem))
    if len(dims_seen) > 1:
        report.problems.append(
            "images have different numbers of spatial dims: "
            + ", ".join(f"{d}D (e.g. {p})" for d, p in sorted(dims_seen.items()))
        )
    by_channels: dict[int, list[str]] = {}
    for stem, c in report.channels.items():
        by_channels.setdefault(c, []).append(stem)
    if len(by_channels) > 1:
        minority = min(by_channels, key=lambda c: len(by_channels[c]))
        files = [
            str(next(p.image for p in report.pairs if p.stem == s))
            for s in by_channels[minority][:3]
        ]
        report.problems.append(
            "images have different channel counts: "
            + ", ".join(f"{c} ({len(s)} files)" for c, s in sorted(by_channels.items()))
            + f"; e.g. {', '.join(files)} have {minority}; convert them all to one"
        )
    if mapped:
        report.notes.append(
            f"{len(mapped)} mask(s) store labels as 0/255 (e.g. {mapped[0]}); read as 0/1"
        )
    if declared_k is not None and any("are outside 0.." in p for p in report.problems):
        report.problems.append(
            f"{root / DECLARATION_FILE}: class_names has {declared_k} names (labels "
            f"0..{declared_k - 1}) but masks hold larger labels (above); add the missing names"
        )
    total = sum(counts.values())
    max_label = max(counts) if counts else 0
    report.num_classes = num_classes if num_classes is not None else max(max_label + 1, 1)
    if total:
        report.class_frequencies = {
            k: counts.get(k, 0) / total for k in range(min(report.num_classes, 256))
        }
        if all(k <= 0 for k in counts):
            report.warnings.append("every mask is background (0) only; there is nothing to learn")
        elif num_classes is not None:
            absent = [k for k in range(1, num_classes) if counts.get(k, 0) == 0]
            if absent:
                report.warnings.append(
                    f"no mask contains class(es) {show_values(np.array(absent))}"
                )
    return report, samples


def check_dataset(
    root: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    max_pixels: int | None = None,
) -> DatasetReport:
    """Read every pair of the dataset at ``root`` and collect all problems.

    Args:
        root: folder with ``images/``, ``masks/`` and optionally ``instances/``.
        num_classes: expected number of classes (labels ``0..num_classes-1``); ``None`` infers
            max label + 1.
        spatial_dims: passed to :func:`unetkit.io.read_image` (``None`` infers per file).
        max_pixels: pixel limit per file (see :func:`unetkit.io.read_image`).

    Returns:
        A :class:`DatasetReport`; it never raises for problems in the data.

    Raises:
        ValueError: a bad argument.
    """
    return _inspect(Path(root), num_classes, spatial_dims, max_pixels, keep=False)[0]


def load_dataset(
    root: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    max_pixels: int | None = None,
) -> list[Sample]:
    """Validate and load a dataset: one :class:`Sample` per pair, sorted by stem.

    Images are ``float32`` ``(C, *spatial)``, masks ``int64`` ``(*spatial)`` (0/255 masks read as
    0/1), instances ``int64`` or ``None``.

    Raises:
        DataError: one line with the number of problems and the first few of them.
    """
    report, samples = _inspect(Path(root), num_classes, spatial_dims, max_pixels, keep=True)
    if report.problems:
        first = " | ".join(report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise DataError(
            f"{root}: {len(report.problems)} problem(s): {first}{more}; run "
            f"`unetkit check-data {root}` for the full list"
        )
    return samples
