"""Per-image evaluation and aggregation into a report (table, JSON, CSV).

Aggregation conventions:

* Per-class values are means **over images** (nnU-Net style), skipping images where the value
  is ``NaN`` (class absent from both prediction and truth, or both HD95 masks empty).
* HD95 ``inf`` (class present in exactly one of prediction and truth) is replaced in the means by
  that image's diagonal (in ``spacing`` units) and counted in ``hd95_penalised`` per class.
* ``mean`` averages the per-class means over the **foreground classes**: every class except 0
  (background) and ``ignore_index``. Pixel error and Rand error are averaged over images.
* The background class 0 is reported in ``per_class`` but never enters ``mean``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.metrics._checks import as_label_map, same_shape
from unetkit.metrics.overlap import (
    confusion_matrix,
    dice_from_confusion,
    iou_from_confusion,
    pixel_error_from_confusion,
)
from unetkit.metrics.rand import PredBackground
from unetkit.metrics.rand import rand_error as _rand_error  # the name rand_error is a flag below
from unetkit.metrics.surface import diagonal, hd95

CLASS_METRICS = ("dice", "iou", "hd95")
IMAGE_METRICS = ("pixel_error", "rand_error")


@dataclass(frozen=True)
class ImageResult:
    """Metrics of one (prediction, truth) pair.

    Attributes:
        name: an identifier for the image (e.g. the file stem), or None.
        classes: the evaluated classes (all ``0..K-1`` except ``ignore_index``).
        confusion: int64 ``(K, K)``, rows = truth.
        dice, iou: ``(K,)``; NaN where the class is absent from both maps.
        hd95: ``(K,)``; NaN where both masks are empty, inf where exactly one is.
        hd95_penalty: the value an ``inf`` HD95 takes in means (the image diagonal).
        pixel_error: ``1 - accuracy`` over non-ignored pixels.
        rand_error: adapted Rand error, or None when not computed.
    """

    name: str | None
    classes: tuple[int, ...]
    confusion: np.ndarray
    dice: np.ndarray
    iou: np.ndarray
    hd95: np.ndarray
    hd95_penalty: float
    pixel_error: float
    rand_error: float | None = None

    def hd95_penalised(self) -> np.ndarray:
        """HD95 ``(K,)`` with ``inf`` replaced by :attr:`hd95_penalty`."""
        return np.where(np.isinf(self.hd95), self.hd95_penalty, self.hd95)


def evaluate_pair(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    num_classes: int,
    ignore_index: int | None = None,
    boundary_class: int | None = None,
    rand_error: bool = False,
    spacing: Sequence[float] | None = None,
    name: str | None = None,
    pred_background: PredBackground = "singletons",
) -> ImageResult:
    """Evaluate one predicted label map against its truth, both int ``(*spatial)``.

    Ignored truth pixels (``ignore_index``) are excluded from every metric: from the confusion
    matrix, from both HD95 masks and from the Rand error's counted pixels.

    Args:
        pred, truth: label maps, 1D/2D/3D, same shape.
        num_classes: ``K``.
        ignore_index: void label in ``truth``, or None.
        boundary_class: the class separating segments, needed for the Rand error.
        rand_error: compute the adapted Rand error (see :mod:`unetkit.metrics.rand`).
        spacing: pixel size per axis for HD95.
        name: identifier carried into the report.
        pred_background: Rand error convention for predicted boundary pixels.
    """
    p = as_label_map(pred, "pred")
    t = as_label_map(truth, "truth")
    same_shape(p, t, "pred", "truth")
    conf = confusion_matrix(p, t, num_classes, ignore_index)
    valid = np.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    classes = tuple(c for c in range(num_classes) if c != ignore_index)
    hd = np.full(num_classes, np.nan)
    for c in classes:
        hd[c] = hd95((p == c) & valid, (t == c) & valid, spacing)
    re: float | None = None
    if rand_error:
        if boundary_class is None:
            raise ValueError("boundary_class is required when rand_error=True")
        if not 0 <= boundary_class < num_classes:
            raise ValueError(f"boundary_class must be in [0, {num_classes}), got {boundary_class}")
        re = _rand_error(
            p,
            t,
            boundary_class=boundary_class,
            ignore_index=ignore_index,
            pred_background=pred_background,
        )
    dice = dice_from_confusion(conf)
    iou = iou_from_confusion(conf)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        dice[ignore_index] = iou[ignore_index] = np.nan
    return ImageResult(
        name=name,
        classes=classes,
        confusion=conf,
        dice=dice,
        iou=iou,
        hd95=hd,
        hd95_penalty=diagonal(t.shape, spacing),
        pixel_error=pixel_error_from_confusion(conf),
        rand_error=re,
    )


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _json_number(v: float | None) -> float | None:
    """NaN (and None) become JSON null; inf never reaches here."""
    if v is None or math.isnan(v):
        return None
    return float(v)


@dataclass(frozen=True)
class Report:
    """Aggregated metrics over images (see the module doc for the conventions).

    Attributes:
        per_image: the image results, in input order.
        classes: evaluated classes; ``foreground``: those entering ``mean``.
        per_class: ``metric -> (K,)`` means over images (NaN where never applicable).
        counts: ``metric -> (K,)`` number of images that entered each per-class mean.
        hd95_penalised: ``(K,)`` number of images whose HD95 was ``inf`` and got the penalty.
        mean: ``metric -> float`` over foreground classes (class metrics) or images.
        class_names: one name per label ``0..K-1`` (a dataset's ``dataset.yaml`` or the
            model's), shown in the table and the JSON; ``None`` shows indices only.
    """

    per_image: list[ImageResult]
    classes: tuple[int, ...]
    foreground: tuple[int, ...]
    per_class: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    hd95_penalised: np.ndarray
    mean: dict[str, float | None] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None

    def name_of(self, c: int) -> str | None:
        """The name of class ``c``, or ``None`` without names."""
        names = self.class_names
        return names[c] if names is not None and 0 <= c < len(names) else None

    def to_json_dict(self) -> dict[str, Any]:
        """``{"mean": {...}, "per_class": {...}, "per_image": [...]}``; NaN becomes null.

        Per image, an HD95 of ``inf`` is written as null with ``hd95_status`` telling why
        (``"ok"``, ``"both_empty"``, ``"pred_empty"`` or ``"truth_empty"``).
        """
        per_class: dict[str, dict[str, Any]] = {}
        for c in self.classes:
            entry: dict[str, Any] = {m: _json_number(self.per_class[m][c]) for m in CLASS_METRICS}
            entry["n_images"] = {m: int(self.counts[m][c]) for m in CLASS_METRICS}
            entry["hd95_penalised"] = int(self.hd95_penalised[c])
            if self.class_names is not None:
                entry["name"] = self.name_of(c)
            per_class[str(c)] = entry
        per_image = []
        for r in self.per_image:
            pc: dict[str, dict[str, Any]] = {}
            for c in r.classes:
                h = float(r.hd95[c])
                pc[str(c)] = {
                    "dice": _json_number(r.dice[c]),
                    "iou": _json_number(r.iou[c]),
                    "hd95": None if math.isinf(h) else _json_number(h),
                    "hd95_status": _hd95_status(r, c),
                }
            per_image.append(
                {
                    "name": r.name,
                    "pixel_error": _json_number(r.pixel_error),
                    "rand_error": _json_number(r.rand_error),
                    "per_class": pc,
                }
            )
        return {
            "mean": {k: _json_number(v) for k, v in self.mean.items()},
            "per_class": per_class,
            "per_image": per_image,
        }

    def format_table(self) -> str:
        """A text table: one row per class, then the foreground mean and image-level metrics."""
        named = [f"{c} {self.name_of(c)}" for c in self.classes if self.name_of(c)]
        width = max([8, *(len(n) for n in named)])
        header = f"{'class':>{width}} {'dice':>8} {'iou':>8} {'hd95':>9} {'n':>4} {'hd95_pen':>8}"
        lines = [header, "-" * len(header)]
        for c in self.classes:
            vals = [self.per_class[m][c] for m in CLASS_METRICS]
            label = f"{c} {self.name_of(c)}" if self.name_of(c) else str(c)
            lines.append(
                f"{label:>{width}} {_fmt(vals[0])} {_fmt(vals[1])} {_fmt(vals[2], 9, 2)} "
                f"{int(self.counts['dice'][c]):>4} {int(self.hd95_penalised[c]):>8}"
            )
        lines.append("-" * len(header))
        m = self.mean
        means = f"{_fmt(m['dice'])} {_fmt(m['iou'])} {_fmt(m['hd95'], 9, 2)}"
        lines.append(f"{'mean fg':>{width}} {means}")
        lines.append(f"pixel_error {_fmt(m['pixel_error']).strip()}")
        lines.append(f"rand_error  {_fmt(m['rand_error']).strip()}")
        lines.append(f"images      {len(self.per_image)}")
        return "\n".join(lines)

    def to_csv(self, path: str | Path) -> None:
        """Write one row per (image, class) with every metric; NaN and inf written as such."""
        fields = ["image", "class", "dice", "iou", "hd95", "pixel_error", "rand_error"]
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(fields)
            for i, r in enumerate(self.per_image):
                name = r.name if r.name is not None else str(i)
                for c in r.classes:
                    w.writerow(
                        [
                            name,
                            c,
                            r.dice[c],
                            r.iou[c],
                            r.hd95[c],
                            r.pixel_error,
                            "" if r.rand_error is None else r.rand_error,
                        ]
                    )


def _hd95_status(r: ImageResult, c: int) -> str:
    h = float(r.hd95[c])
    if math.isnan(h):
        return "both_empty"
    if math.isinf(h):
        return "pred_empty" if r.confusion[:, c].sum() == 0 else "truth_empty"
    return "ok"


def _fmt(v: float | None, width: int = 8, digits: int = 4) -> str:
    if v is None or math.isnan(v):
        return f"{'n/a':>{width}}"
    return f"{v:>{width}.{digits}f}"


def aggregate(results: Sequence[ImageResult]) -> Report:
    """Aggregate image results (same classes) into a :class:`Report` (module doc)."""
    results = list(results)
    if not results:
        raise ValueError("results must hold at least one ImageResult")
    classes = results[0].classes
    k = results[0].confusion.shape[0]
    if any(r.classes != classes or r.confusion.shape[0] != k for r in results):
        raise ValueError("results must all be evaluated with the same classes")
    stacks = {
        "dice": np.stack([r.dice for r in results]),
        "iou": np.stack([r.iou for r in results]),
        "hd95": np.stack([r.hd95_penalised() for r in results]),
    }
    per_class: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for m, s in stacks.items():
        ok = ~np.isnan(s)
        counts[m] = ok.sum(axis=0)
        with np.errstate(invalid="ignore"):
            per_class[m] = np.where(counts[m] > 0, np.where(ok, s, 0).sum(0) / counts[m], np.nan)
    penalised = np.stack([np.isinf(r.hd95) for r in results]).sum(axis=0)
    foreground = tuple(c for c in classes if c != 0)
    mean: dict[str, float | None] = {
        m: _nanmean([float(per_class[m][c]) for c in foreground]) for m in CLASS_METRICS
    }
    mean["pixel_error"] = _nanmean([r.pixel_error for r in results])
    rand = [r.rand_error for r in results if r.rand_error is not None]
    mean["rand_error"] = _nanmean(rand) if rand else None
    return Report(
        per_image=results,
        classes=classes,
        foreground=foreground,
        per_class=per_class,
        counts=counts,
        hd95_penalised=penalised,
        mean=mean,
    )
