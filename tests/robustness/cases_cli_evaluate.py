"""`unetkit evaluate --pred DIR --truth DIR` on bad folders: each message names the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from builders import mask_array, png
from catalogue_kit import CliCase


def _folders(
    truth: dict[str, np.ndarray], pred: dict[str, np.ndarray], *args: str
) -> Callable[[Path], list[str]]:
    """Masks ``truth/<name>`` and ``pred/<name>``, then ``evaluate --pred pred --truth truth``."""

    def build(tmp: Path) -> list[str]:
        for folder, masks in (("truth", truth), ("pred", pred)):
            (tmp / folder).mkdir()
            for name, arr in masks.items():
                png(tmp / folder / name, arr)
        return ["evaluate", "--pred", "pred", "--truth", "truth", *args]

    return build


def _m16(value: int) -> np.ndarray:
    m = mask_array().astype(np.uint16)
    m[m == 1] = value
    return m


M = mask_array()

CASES: list[CliCase] = [
    CliCase(
        "cli evaluate",
        "truths without predictions, predictions without truths",
        _folders({"a.png": M, "b.png": M, "c.png": M}, {"a.png": M, "B.png": M, "x.png": M}),
        (
            "--pred pred: no prediction for 2 of 3 truth mask(s) in truth: b, c",
            "2 prediction(s) match no truth: B, x",
        ),
    ),
    CliCase(
        "cli evaluate",
        "0/65535 truth mask (no --num-classes)",
        _folders({"a.png": _m16(65535)}, {"a.png": M}),
        ("truth/a.png: labels 0, 65535 are not a class map",),
    ),
    CliCase(
        "cli evaluate",
        "truth labels above --num-classes",
        _folders({"a.png": _m16(5)}, {"a.png": M}, "--num-classes", "2"),
        ("truth/a.png: truth labels 5 are outside 0..1",),
    ),
    CliCase(
        "cli evaluate",
        "predicted labels above --num-classes",
        _folders({"a.png": M}, {"a.png": _m16(7)}, "--num-classes", "2"),
        ("pred/a.png: predicted labels 7 are outside 0..1",),
    ),
    CliCase(
        "cli evaluate",
        "--num-classes too large to evaluate",
        _folders({"a.png": M}, {"a.png": M}, "--num-classes", "65536"),
        ("--num-classes: expected an integer in 1..4096, got 65536",),
    ),
    CliCase(
        "cli evaluate",
        "--json names an image of the user's",
        _folders({"a.png": M}, {"a.png": M}, "--json", "truth/a.png"),
        ("--json truth/a.png: exists and is not a report of unetkit evaluate",),
    ),
    CliCase(
        "cli evaluate",
        "--csv names a folder",
        _folders({"a.png": M}, {"a.png": M}, "--csv", "pred"),
        ("--csv pred: is a folder; name the report file",),
    ),
]
