"""``unetkit evaluate`` of a restoration model: PSNR and SSIM per image and overall.

Each image of ``DATA/images`` is restored (:func:`unetkit.infer.restore.restore_array`, in the
input's units) and compared with ``DATA/targets/<stem>``; the same scores of the unrestored
input are shown beside them when it has the target's channels. The data range of both scores is
each target's ``max - min`` unless a fixed one is given; it is stated in every output.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.restoration import load_restore_dataset
from unetkit.errors import DataError
from unetkit.infer.normalization import Normalization
from unetkit.infer.predictor import PredictOptions, default_tile
from unetkit.infer.restore import restore_array
from unetkit.metrics.restoration import RestorationScore, restoration_score
from unetkit.model import UNet

CSV_HEADER = "image,psnr,ssim,input_psnr,input_ssim,data_range"


@dataclass
class RestoreEvaluation:
    """Scores of one evaluation; ``per_image`` rows are ``(stem, restored, input or None)``."""

    per_image: list[tuple[str, RestorationScore, RestorationScore | None]] = field(
        default_factory=list
    )
    data_range: str = "each target's max - min"

    def mean(self) -> dict[str, float]:
        """Mean PSNR and SSIM over images (restored, and input where scored)."""

        def avg(values: list[float]) -> float:
            finite = [v for v in values if not math.isnan(v)]
            return float(np.mean(finite)) if finite else math.nan

        rows = self.per_image
        out = {"psnr": avg([r.psnr for _, r, _ in rows]), "ssim": avg([r.ssim for _, r, _ in rows])}
        inputs = [i for _, _, i in rows if i is not None]
        if inputs:
            out["input_psnr"] = avg([i.psnr for i in inputs])
            out["input_ssim"] = avg([i.ssim for i in inputs])
        return out

    def format_table(self) -> str:
        """A readable table: one line per image, then the means."""
        lines = [f"{'image':<24} {'PSNR dB':>8} {'SSIM':>7}   input: {'PSNR':>6} {'SSIM':>7}"]
        for stem, r, i in self.per_image:
            tail = f"{i.psnr:>13.2f} {i.ssim:>7.4f}" if i is not None else ""
            lines.append(f"{stem[:24]:<24} {r.psnr:>8.2f} {r.ssim:>7.4f}   {tail}")
        m = self.mean()
        tail = f"{m['input_psnr']:>13.2f} {m['input_ssim']:>7.4f}" if "input_psnr" in m else ""
        lines.append(f"{'mean':<24} {m['psnr']:>8.2f} {m['ssim']:>7.4f}   {tail}")
        lines.append(f"data range: {self.data_range}")
        return "\n".join(lines)

    def to_json_dict(self) -> dict[str, Any]:
        """``{mean, per_class (empty), per_image, data_range}``."""
        per_image = []
        for stem, r, i in self.per_image:
            row: dict[str, Any] = {"image": stem, "psnr": r.psnr, "ssim": r.ssim}
            row["data_range"] = r.data_range
            if i is not None:
                row |= {"input_psnr": i.psnr, "input_ssim": i.ssim}
            per_image.append(row)
        return {
            "task": "restore",
            "mean": self.mean(),
            "per_class": {},
            "per_image": per_image,
            "data_range": self.data_range,
        }

    def to_csv_text(self) -> str:
        """One row per image (``CSV_HEADER``)."""
        buf = io.StringIO()
        buf.write(CSV_HEADER + "\n")
        for stem, r, i in self.per_image:
            ins = f"{i.psnr:.6g},{i.ssim:.6g}" if i is not None else ","
            buf.write(f"{stem},{r.psnr:.6g},{r.ssim:.6g},{ins},{r.data_range:.6g}\n")
        return buf.getvalue()


def evaluate_restore_model(
    model: UNet,
    metadata: Mapping[str, Any],
    data: str | Path,
    *,
    options: PredictOptions | None = None,
    data_range: float | None = None,
) -> RestoreEvaluation:
    """Restore ``data/images`` and score against ``data/targets`` (see the module doc).

    Raises:
        DataError: no ``targets/``, or targets that do not fit the model (named).
    """
    samples, with_targets = load_restore_dataset(data, spatial_dims=model.config.spatial_dims)
    if not with_targets:
        raise DataError(
            f"{data}: no targets/ to score against; evaluate needs images/ and targets/ (same "
            f"stems)"
        )
    c_out = model.config.out_channels
    wrong = [s.stem for s in samples if s.target is not None and s.target.shape[0] != c_out]
    if wrong:
        raise DataError(
            f"{data}: target {wrong[0]} has a different channel count than the model's "
            f"{c_out} output channel(s); evaluate with targets of {c_out} channel(s)"
        )
    norm = Normalization.from_metadata(metadata.get("normalization"))
    tile = default_tile(model.config.spatial_dims, metadata)
    result = RestoreEvaluation(
        data_range="each target's max - min" if data_range is None else f"{data_range:g} (fixed)"
    )
    for s in samples:
        if s.target is None:  # not reached: with_targets was checked above
            continue
        try:
            restored = restore_array(
                model, s.image, options=options, normalization=norm, default_tile=tile
            )
        except ValueError as exc:
            raise DataError(f"{data}/images/{s.stem}: {exc}") from None
        score = restoration_score(restored, s.target, data_range)
        base = None
        if s.image.shape == s.target.shape:
            base = restoration_score(s.image, s.target, score.data_range)
        result.per_image.append((s.stem, score, base))
    return result
