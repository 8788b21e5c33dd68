"""Evaluate predictions against ground truth: a model on a dataset, or two folders of masks.

Both paths end in :func:`unetkit.metrics.evaluate_pair` per image and
:func:`unetkit.metrics.aggregate` overall. Choices made here:

* **Rand error** is computed for binary boundary tasks (EM membranes): with an explicit
  ``boundary_class``, or, by default (``"auto"``), when the task has two classes and the truth's
  class 1 is *thin*: the median distance of class-1 pixels to the nearest other pixel (their
  half-width, :func:`median_half_width`) is at most :data:`THIN_HALF_WIDTH` pixels. Membranes
  in ISBI 2012 are ~2 px by this measure; nuclei or organs are far wider, so Dice tasks do not
  get a meaningless Rand error. ``None`` turns it off.
* Masks stored as 0/255 are read as 0/1 (as :func:`unetkit.data.load_dataset` does).
* ``num_classes``: given, else the model's, else the largest label in truth and prediction + 1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from unetkit.data.dataset import stem_key
from unetkit.data.labels import show_values
from unetkit.errors import DataError
from unetkit.infer.normalization import Normalization
from unetkit.infer.predictor import (
    Prediction,
    PredictOptions,
    channel_classes,
    default_tile,
    predict_array,
)
from unetkit.infer.tta import model_flips
from unetkit.io.images import ALLOWED_SUFFIXES, read_mask
from unetkit.metrics import Report, aggregate, evaluate_pair
from unetkit.model import UNet

log = logging.getLogger(__name__)

MAX_CLASSES = 4096
"""Most classes evaluated (the confusion counts are K x K); more is a mask that is no class map."""

THIN_HALF_WIDTH = 3.0
BoundarySpec = int | Literal["auto"] | None


@dataclass(frozen=True)
class Evaluation:
    """A :class:`unetkit.metrics.Report` and the settings it was computed with."""

    report: Report
    num_classes: int
    ignore_index: int | None
    boundary_class: int | None
    boundary_reason: str

    def to_json_dict(self) -> dict[str, Any]:
        """The report's ``{"mean", "per_class", "per_image"}`` plus ``"settings"``."""
        data = self.report.to_json_dict()
        data["settings"] = {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "boundary_class": self.boundary_class,
            "rand_error": self.boundary_reason,
            "hd95_units": "pixels",
        }
        return data


def median_half_width(masks: Sequence[np.ndarray], label: int) -> float:
    """Median over all ``label`` pixels of their distance to the nearest other pixel.

    A structure ``w`` pixels wide gives about ``w / 2``; ``inf`` when no pixel has ``label``.
    """
    values = []
    for m in masks:
        region = m == label
        if region.any():
            values.append(ndimage.distance_transform_edt(region)[region])
    if not values:
        return float("inf")
    return float(np.median(np.concatenate(values)))


def resolve_boundary_class(
    spec: BoundarySpec, truths: Sequence[np.ndarray], num_classes: int
) -> tuple[int | None, str]:
    """The boundary class for the Rand error (or None) and a one-line reason."""
    if spec is None:
        return None, "off"
    if spec != "auto":
        if not isinstance(spec, int) or not 0 <= spec < num_classes:
            raise ValueError(f"--boundary-class: expected 0..{num_classes - 1}, got {spec!r}")
        return spec, f"boundary class {spec} (given)"
    if num_classes != 2:
        return None, f"off (auto: {num_classes} classes, not a binary boundary task)"
    width = median_half_width(truths, 1)
    if width <= THIN_HALF_WIDTH:
        return 1, f"boundary class 1 (auto: class 1 is thin, median half-width {width:.2g} px)"
    return None, f"off (auto: class 1 is not thin, median half-width {width:.3g} px)"


def _binary255(mask: np.ndarray, num_classes: int | None) -> np.ndarray:
    if num_classes is not None and num_classes >= 256:
        return mask
    if mask.size and mask.max() == 255 and np.isin(mask, (0, 255)).all():
        return (mask == 255).astype(np.int64)
    return mask


def _files_by_stem(folder: Path, what: str) -> dict[str, Path]:
    """Stem (NFC, see :func:`unetkit.data.dataset.stem_key`) -> file of ``folder``."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder ({what})")
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or f.suffix.lower() not in ALLOWED_SUFFIXES:
            continue
        if f.is_symlink() and not f.exists():
            raise DataError(
                f"{f}: is a dangling symlink to {os.readlink(f)} (its target does not exist); "
                f"point it at an existing {what} file, or move it out of {folder}"
            )
        if f.is_file():
            key = stem_key(f.stem)
            if key in files:
                raise DataError(
                    f"{f}: two {what} files have the stem {key!r} ({files[key].name} and "
                    f"{f.name}); rename one, or move one out of {folder}"
                )
            files[key] = f
    if not files:
        raise DataError(f"{folder}: no {what} masks (.png/.tif/.tiff/.npy)")
    return files


def _some(stems: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(stems[:n])
    return shown + (f" (and {len(stems) - n} more)" if len(stems) > n else "")


def _check_labels(
    preds: Sequence[np.ndarray], truths: Sequence[np.ndarray], sources: Sequence[tuple[str, str]]
) -> None:
    """Refuse labels that no class map has (e.g. a 0/65535 mask) before counting classes."""
    for arrays, which in ((preds, 0), (truths, 1)):
        for arr, src in zip(arrays, sources, strict=True):
            top = int(arr.max(initial=0))
            if top >= MAX_CLASSES or (top >= 256 and top + 1 > 4 * np.unique(arr).size):
                raise DataError(
                    f"{src[which]}: labels {show_values(np.unique(arr))} are not a class map "
                    f"(a binary mask saved as 0/{top}? save it as 0/1); pass --num-classes K "
                    f"if the classes are 0..K-1"
                )


def _evaluate(
    preds: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    names: Sequence[str],
    num_classes: int | None,
    ignore_index: int | None,
    boundary: BoundarySpec,
    sources: Sequence[tuple[str, str]] | None = None,
) -> Evaluation:
    """``sources``: (prediction, truth) file per image for messages (default: the names)."""
    sources = sources or [(str(n), str(n)) for n in names]
    k = num_classes
    if k is not None and k > MAX_CLASSES:
        raise ValueError(f"--num-classes: at most {MAX_CLASSES} classes are evaluated, got {k}")
    if k is None:
        _check_labels(preds, truths, sources)
        top = max(
            int(max(p.max(initial=0), t.max(initial=0))) for p, t in zip(preds, truths, strict=True)
        )
        if ignore_index is not None and top == ignore_index:
            top = max(
                int(max(p.max(initial=0), t[t != ignore_index].max(initial=0)))
                for p, t in zip(preds, truths, strict=True)
            )
        k = max(2, top + 1)
    boundary_class, reason = resolve_boundary_class(boundary, truths, k)
    results = []
    for p, t, name, src in zip(preds, truths, names, sources, strict=True):
        bad = p[(p < 0) | (p >= k)]
        if bad.size:
            raise DataError(
                f"{src[0]}: predicted labels {show_values(np.unique(bad))} are outside "
                f"0..{k - 1}; pass --num-classes to match the model"
            )
        bad = t[((t < 0) | (t >= k)) & (t != (ignore_index if ignore_index is not None else -1))]
        if bad.size:
            raise DataError(
                f"{src[1]}: truth labels {show_values(np.unique(bad))} are outside 0..{k - 1}; "
                f"pass --num-classes (or --ignore-index for a void label)"
            )
        results.append(
            evaluate_pair(
                p,
                t,
                num_classes=k,
                ignore_index=ignore_index,
                boundary_class=boundary_class,
                rand_error=boundary_class is not None,
                name=name,
            )
        )
    return Evaluation(aggregate(results), k, ignore_index, boundary_class, reason)


def evaluate_folders(
    pred_dir: str | Path,
    truth_dir: str | Path,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    boundary: BoundarySpec = "auto",
) -> Evaluation:
    """Evaluate every truth mask in ``truth_dir`` (or its ``masks/``) against the prediction
    with the same stem in ``pred_dir``; a truth without a prediction is an error."""
    truth_root = Path(truth_dir)
    if (truth_root / "masks").is_dir():
        truth_root = truth_root / "masks"
    truth_files = _files_by_stem(truth_root, "truth")
    pred_files = _files_by_stem(Path(pred_dir), "prediction")
    missing = sorted(set(truth_files) - set(pred_files))
    extra = sorted(set(pred_files) - set(truth_files))
    if missing:
        hint = (
            f"; {len(extra)} prediction(s) match no truth: {_some(extra)} (stems are paired "
            f"after Unicode NFC normalisation, with their case)"
            if extra
            else ""
        )
        raise DataError(
            f"--pred {pred_dir}: no prediction for {len(missing)} of {len(truth_files)} truth "
            f"mask(s) in {truth_root}: {_some(missing)}{hint}"
        )
    if extra:
        log.warning(
            "note: %d prediction(s) in %s match no truth mask and are not evaluated: %s",
            len(extra),
            pred_dir,
            _some(extra),
        )
    preds, truths, names, sources = [], [], [], []
    for stem, tf in truth_files.items():
        t = _binary255(read_mask(tf), num_classes)
        p = _binary255(read_mask(pred_files[stem]), num_classes)
        if p.shape != t.shape:
            raise DataError(
                f"{pred_files[stem]}: shape {p.shape} differs from truth {tf} {t.shape}"
            )
        preds.append(p)
        truths.append(t)
        names.append(stem)
        sources.append((str(pred_files[stem]), str(tf)))
    return _evaluate(preds, truths, names, num_classes, ignore_index, boundary, sources)


def evaluate_model(
    model: UNet,
    metadata: Mapping[str, Any],
    data_dir: str | Path,
    *,
    options: PredictOptions | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    boundary: BoundarySpec = "auto",
    progress: bool = False,
) -> Evaluation:
    """Predict every image of the dataset at ``data_dir`` and evaluate against its masks.

    ``num_classes`` and ``ignore_index`` default to the model's metadata.
    """
    from unetkit.data import load_dataset

    k = num_classes or metadata.get("num_classes") or max(2, model.config.out_channels)
    if options is not None and options.tta_flips is None:  # the model's own symmetries
        options = replace(options, tta_flips=model_flips(metadata))
    ignore = ignore_index if ignore_index is not None else metadata.get("ignore_index")
    samples = load_dataset(data_dir, num_classes=None, spatial_dims=model.config.spatial_dims)
    norm = Normalization.from_metadata(metadata.get("normalization"))
    tile_default = default_tile(model.config.spatial_dims, metadata)
    preds, truths, names = [], [], []
    from tqdm.auto import tqdm

    from unetkit.infer.spacing import model_target_spacing, predict_at_spacing
    from unetkit.train.fingerprint import sample_spacings

    target = model_target_spacing(metadata)  # scored on each mask's own grid
    spacings = sample_spacings(data_dir, samples)[1] if target else [None] * len(samples)

    def plain(_sources: list[Path], images: list[np.ndarray], probs: bool) -> list[Prediction]:
        return [
            predict_array(
                model,
                im,
                options=options,
                normalization=norm,
                default_tile=tile_default,
                keep_probabilities=probs,
                progress=progress,
                int8=metadata.get("int8"),
                class_of_channel=channel_classes(metadata),
            )
            for im in images
        ]

    for s, sp in tqdm(
        list(zip(samples, spacings, strict=True)), disable=not progress, unit="image", desc="images"
    ):
        try:
            (result,) = predict_at_spacing(
                plain,
                [Path(s.stem)],
                [s.image],
                [sp],
                target,
                probabilities=False,
                class_of_channel=channel_classes(metadata),
            )
        except ValueError as exc:
            raise DataError(f"{data_dir}: image {s.stem}: {exc}") from None
        preds.append(result.labels)
        truths.append(s.mask)
        names.append(s.stem)
    return _evaluate(preds, truths, names, int(k), ignore, boundary)
