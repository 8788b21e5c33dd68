"""Bad instance truth and refused ``--instances`` requests: one line each, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from builders import PREDICT, _check, _put, _with, _with_model, mask_array, npy, png
from catalogue_kit import ApiCase, CliCase, Steps

from unetkit.errors import UnetkitError


def _ids(path: Path) -> object:
    """Instance ids of the clean dataset's mask: one object (id 1)."""
    return png(path, mask_array().astype(np.uint16))


def _reused_id(path: Path) -> object:
    ids = np.zeros((16, 16), np.uint16)
    ids[1:4, 1:4] = 5
    ids[10:13, 10:13] = 5  # the same id on two separate objects
    return png(path, ids)


def _fractional_ids(path: Path) -> object:
    ids = mask_array().astype(np.float32)
    ids[ids > 0] = 1.5
    path.parent.mkdir(parents=True, exist_ok=True)
    return tifffile.imwrite(path, ids)


def _negative_ids(path: Path) -> object:
    ids = mask_array().astype(np.int64)
    ids[0, 0] = -3
    path.parent.mkdir(parents=True, exist_ok=True)
    return npy(path, ids)


def _too_many_objects() -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.instances import label_dtype

        return label_dtype(2**32)

    return Steps(lambda tmp: None, call)


def _instances_pred(files: dict[str, np.ndarray]) -> Callable[[Path], list[str]]:
    """Instance truth ``truth/<name>`` for one image, predictions ``pred/<name>``."""

    def build(tmp: Path) -> list[str]:
        (tmp / "truth").mkdir()
        (tmp / "pred").mkdir()
        png(tmp / "truth" / "a.png", mask_array())
        for name, arr in files.items():
            png(tmp / "pred" / name, arr)
        return ["evaluate", "--instances", "--pred", "pred", "--truth", "truth"]

    return build


CASES: list[ApiCase | CliCase] = [
    ApiCase(
        "dataset",
        "instance ids that are not integers",
        _check(_with(_put("instances/s0.tif", _fractional_ids), _put("instances/s1.png", _ids))),
        ("ds/instances/s0.tif: mask has non-integer values",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "negative instance ids",
        _check(_with(_put("instances/s0.npy", _negative_ids), _put("instances/s1.png", _ids))),
        ("ds/instances/s0.npy: instance ids must be >= 0",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "an instance id reused by disconnected pieces (split, with a warning)",
        _check(
            _with(_put("instances/s0.png", _reused_id), _put("instances/s1.png", _ids)), "warning"
        ),
        ("ds/instances/s0.png: 1 instance id(s) used by disconnected pieces: id 5 (2 pieces)",),
        kind="warning",
    ),
    ApiCase(
        "dataset",
        "more objects than a 32-bit label image holds",
        _too_many_objects(),
        ("do not fit in a 32-bit label image",),
        raises=UnetkitError,
    ),
    CliCase(
        "cli predict",
        "--instances with a model trained without an instance target",
        _with_model(*PREDICT, "--instances"),
        ("was trained without an instance target", "--instances-fallback components"),
    ),
    CliCase(
        "cli predict",
        "an instance option without --instances",
        _with_model(*PREDICT, "--min-size", "4"),
        ("--min-size: only with --instances",),
    ),
    CliCase(
        "cli predict",
        "--seed-threshold out of range",
        _with_model(*PREDICT, "--instances", "--seed-threshold", "1.5"),
        ("--seed-threshold:", "must be a number in [0, 1)"),
    ),
    CliCase(
        "cli evaluate",
        "evaluate --instances without a prediction for a truth file",
        _instances_pred({"b_instances.png": mask_array()}),
        ("--pred pred: no prediction for 1 truth file(s)",),
    ),
]
