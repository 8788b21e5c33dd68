"""``unetkit evaluate --instances``: instance scores against ``instances/`` truth.

Two forms, as for class maps (:mod:`unetkit.infer.evaluation`):

* :func:`evaluate_instance_model`: predict the instances of every image of a dataset
  (:func:`unetkit.infer.instances.predict_instances`) and score them against its
  ``instances/``;
* :func:`evaluate_instance_folders`: score a folder of instance label images (the
  ``<stem>_instances.*`` files of ``predict --instances``, or ``<stem>.*``) against a folder of
  instance truth (a dataset's ``instances/``, or the dataset folder itself), paired by stem.

Truth is checked per file (:func:`unetkit.instances.validate.repair_instances`): ids that are
not integers or are negative are an error naming the file; an id used by disconnected pieces
is taken as one object per piece, with a warning naming the file. The scores are those of
:func:`unetkit.metrics.instance_report` (DSB 2018, F1/precision/recall at IoU 0.5, PQ, SEG,
merges, splits), per image and overall.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.dataset import stem_key
from unetkit.errors import DataError
from unetkit.infer.instances import Fallback, predict_instances
from unetkit.infer.predictor import PredictOptions
from unetkit.instances.validate import repair_instances
from unetkit.io.images import ALLOWED_SUFFIXES, read_mask
from unetkit.metrics.instance_report import InstanceReport, instance_report
from unetkit.model import UNet

SUFFIX = "_instances"


def _files(folder: Path, *, strip: str = "") -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in ALLOWED_SUFFIXES:
            continue
        stem = p.stem[: -len(strip)] if strip and p.stem.endswith(strip) else p.stem
        key = stem_key(stem)
        if key in out and out[key].stem.endswith(strip) and not p.stem.endswith(strip):
            continue  # <stem>_instances.* wins over <stem>.* (a class map beside it)
        out[key] = p
    return out


def _truth(path: Path, warn: Callable[[str], None]) -> np.ndarray:
    lab, warning = repair_instances(read_mask(path), str(path))
    if warning:
        warn(warning)
    return lab


def evaluate_instance_folders(
    pred_dir: str | os.PathLike[str],
    truth_dir: str | os.PathLike[str],
    *,
    warn: Callable[[str], None] = lambda _m: None,
) -> InstanceReport:
    """Score every truth file that has a prediction (module doc).

    Raises:
        DataError: a missing folder or prediction, no truth files, sizes that differ, or bad
            truth (one line naming the file).
    """
    pred, truth = Path(pred_dir), Path(truth_dir)
    if (truth / "instances").is_dir():
        truth = truth / "instances"
    for name, folder in (("--pred", pred), ("--truth", truth)):
        if not folder.is_dir():
            raise DataError(f"{name} {folder}: not a folder")
    truths = _files(truth)
    preds = _files(pred, strip=SUFFIX)
    if not truths:
        raise DataError(f"--truth {truth}: no instance files ({' '.join(ALLOWED_SUFFIXES)})")
    missing = sorted(set(truths) - set(preds))
    if missing:
        raise DataError(
            f"--pred {pred}: no prediction for {len(missing)} truth file(s), e.g. "
            f"{truths[missing[0]]} (expected {missing[0]}{SUFFIX}.* or {missing[0]}.*)"
        )
    names, ps, ts = [], [], []
    for key in sorted(truths):
        t = _truth(truths[key], warn)
        p = read_mask(preds[key])
        if p.shape != t.shape:
            raise DataError(
                f"{preds[key]}: size {'x'.join(map(str, p.shape))} differs from the truth "
                f"{truths[key]} ({'x'.join(map(str, t.shape))})"
            )
        names.append(key)
        ps.append(p)
        ts.append(t)
    return instance_report(names, ps, ts)


def evaluate_instance_model(
    model: UNet,
    metadata: Mapping[str, Any],
    data_dir: str | os.PathLike[str],
    *,
    options: PredictOptions | None = None,
    fallback: Fallback = "none",
) -> InstanceReport:
    """Predict the instances of every image of the dataset at ``data_dir`` and score them.

    Raises:
        DataError: the dataset has images without instance truth, or is not valid.
        UnetkitError: the model has no instance target and ``fallback`` is ``"none"``.
    """
    from unetkit.data import load_dataset

    samples = load_dataset(data_dir, spatial_dims=model.config.spatial_dims)
    without = [s.stem for s in samples if s.instances is None]
    if without:
        raise DataError(
            f"--data {data_dir}: {len(without)} image(s) have no instance truth in "
            f"instances/ (e.g. {without[0]}); --instances scores against per-object ids"
        )
    opts = options or PredictOptions()
    preds, truths = [], []
    for s in samples:
        pred = predict_instances(
            model,
            s.image,
            fallback=fallback,
            tile=opts.tile,
            overlap=opts.overlap,
            tta=opts.tta,
            batch_size=opts.batch_size,
            metadata=metadata,
            precision=opts.precision,
        )
        preds.append(pred.labels)
        truths.append(s.instances)
    return instance_report([s.stem for s in samples], preds, truths)
