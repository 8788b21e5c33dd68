"""Instance scores of a set of images as a table, JSON and CSV (the forms `evaluate` writes).

:func:`instance_report` scores each (prediction, truth) pair with
:func:`unetkit.metrics.instances.instance_scores` and aggregates them with
:func:`~unetkit.metrics.instances.aggregate_instance_scores` (DSB averaged over images, counts
summed; see that module). ``NaN`` (SEG of an image without truth objects) becomes JSON null and
``n/a`` in the table.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unetkit.metrics.instances import (
    InstanceScores,
    aggregate_instance_scores,
    instance_scores,
)

# the columns of the table and the CSV, in order (ap@t columns follow in the CSV and JSON)
COLUMNS: tuple[str, ...] = (
    "dsb",
    "f1",
    "precision",
    "recall",
    "pq",
    "sq",
    "rq",
    "seg",
    "n_truth",
    "n_pred",
    "tp",
    "fp",
    "fn",
    "merges",
    "splits",
)


def _json_value(v: float | int) -> float | int | None:
    if isinstance(v, int):
        return v
    return None if math.isnan(v) else float(v)


@dataclass(frozen=True)
class InstanceReport:
    """Per-image instance scores and their aggregate.

    Attributes:
        names: image names, in input order.
        per_image: the scores of each image.
        overall: :func:`aggregate_instance_scores` of ``per_image``.
    """

    names: tuple[str, ...]
    per_image: tuple[InstanceScores, ...]
    overall: InstanceScores

    def to_json_dict(self) -> dict[str, Any]:
        """``{"overall": {...}, "per_image": [{"name": ..., ...}]}``; NaN becomes null."""
        return {
            "overall": {k: _json_value(v) for k, v in self.overall.as_dict().items()},
            "per_image": [
                {"name": n, **{k: _json_value(v) for k, v in s.as_dict().items()}}
                for n, s in zip(self.names, self.per_image, strict=True)
            ],
        }

    def format_table(self) -> str:
        """A text table: one row per image, then the overall row."""
        width = max([len("overall"), *(len(n) for n in self.names)])
        head = f"{'image':<{width}} " + " ".join(f"{c:>9}" for c in COLUMNS)
        rows = [head, "-" * len(head)]
        for name, s in (*zip(self.names, self.per_image, strict=True), ("overall", self.overall)):
            if name == "overall":
                rows.append("-" * len(head))
            d = s.as_dict()
            cells = [
                f"{d[c]:>9d}"
                if isinstance(d[c], int)
                else (f"{'n/a':>9}" if math.isnan(d[c]) else f"{d[c]:>9.4f}")
                for c in COLUMNS
            ]
            rows.append(f"{name:<{width}} " + " ".join(cells))
        rows.append(
            f"{len(self.per_image)} images; dsb = mean over images of the mean over IoU "
            f"0.50:0.05:0.95 of TP/(TP+FP+FN); others at IoU 0.5 from summed counts"
        )
        return "\n".join(rows)

    def csv_text(self) -> str:
        """CSV: one row per image and a last row ``overall``; NaN written as empty."""
        keys = list(self.overall.as_dict())
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", *keys])
        for name, s in (*zip(self.names, self.per_image, strict=True), ("overall", self.overall)):
            d = s.as_dict()
            w.writerow([name, *("" if _json_value(d[k]) is None else d[k] for k in keys)])
        return buf.getvalue()


def instance_report(
    names: Sequence[str], preds: Sequence[np.ndarray], truths: Sequence[np.ndarray]
) -> InstanceReport:
    """Score each ``(pred, truth)`` pair of instance maps ``(*spatial)`` and aggregate.

    Raises:
        ValueError: the three sequences differ in length or are empty, or a pair is invalid
            (see :func:`~unetkit.metrics.instances.instance_scores`).
    """
    if not (len(names) == len(preds) == len(truths)) or not names:
        raise ValueError(
            f"need the same non-zero number of names, predictions and truths, got "
            f"{len(names)}, {len(preds)} and {len(truths)}"
        )
    per_image = tuple(instance_scores(p, t) for p, t in zip(preds, truths, strict=True))
    return InstanceReport(tuple(names), per_image, aggregate_instance_scores(per_image))
