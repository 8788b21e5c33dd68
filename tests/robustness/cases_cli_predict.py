"""`unetkit predict` and `unetkit calibrate` on bad input: refused, nothing written."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from pathlib import Path

from builders import PREDICT, _with_model
from catalogue_kit import CliCase


def _files(files: dict[str, bytes]) -> Callable[[Path], None]:
    """Write ``files`` (relative path -> content) under the case folder."""

    def build(tmp: Path) -> None:
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    return build


def _manifest(outputs: dict[str, str]) -> bytes:
    data = {"written_by": "unetkit predict", "format": 2, "settings": {}, "outputs": outputs}
    return json.dumps(data).encode()


def _copy_image(src: str, dst: str) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        (tmp / dst).parent.mkdir(parents=True, exist_ok=True)
        (tmp / dst).write_bytes((tmp / src).read_bytes())

    return build


def _dangling(link: str, target: str) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        (tmp / link).symlink_to(target)

    return build


NFD_E = unicodedata.normalize("NFD", "\u00e9")  # e + combining acute: how macOS spells "é"


CASES: list[CliCase] = [
    CliCase(
        "cli predict",
        "--out holds files unetkit did not write",
        _with_model(*PREDICT, then=_files({"out/notes.txt": b"my notes", "out/s0.png": b"mine"})),
        ("--out out: holds 2 file(s) unetkit predict did not write", "Choose another --out"),
    ),
    CliCase(
        "cli predict",
        "--overwrite where an output name is a user's file (not in the manifest)",
        _with_model(
            *PREDICT,
            "--overwrite",
            then=_files({"out/.unetkit-predict.json": _manifest({}), "out/s0.png": b"mine"}),
        ),
        ("out/s0.png: exists and was not written by unetkit predict", "--overwrite or not"),
    ),
    CliCase(
        "cli predict",
        "a user's file differing from an output only in case (S0.PNG vs s0.png)",
        _with_model(
            *PREDICT,
            "--overwrite",
            then=_files(
                {"out/.unetkit-predict.json": _manifest({"s1.png": "x"}), "out/S0.PNG": b"m"}
            ),
        ),
        ("out/S0.PNG: exists and was not written by unetkit predict",),
    ),
    CliCase(
        "cli predict",
        "manifest that is not unetkit's",
        _with_model(*PREDICT, then=_files({"out/.unetkit-predict.json": b"{}"})),
        ("out/.unetkit-predict.json: is not a manifest of unetkit predict",),
    ),
    CliCase(
        "cli predict",
        "--out inside the input folder",
        _with_model("predict", "--model", "m.safetensors", "--input", "ds", "--out", "ds/pred"),
        ("--out ds/pred: is inside the input folder ds", "outside it"),
    ),
    CliCase(
        "cli predict",
        "--out is the dataset's masks/ folder",
        _with_model(
            "predict", "--model", "m.safetensors", "--input", "ds/images", "--out", "ds/masks"
        ),
        ("--out ds/masks: is the masks/ folder of the dataset",),
    ),
    CliCase(
        "cli predict",
        "--out is the folder of an input file",
        _with_model(
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            "ds/images/s0.png",
            "--out",
            "ds/images",
        ),
        ("--out ds/images: is the folder of the input ds/images/s0.png",),
    ),
    CliCase(
        "cli predict",
        "an input inside --out",
        _with_model(
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            "out/in/s0.png",
            "--out",
            "out",
            then=_copy_image("ds/images/s0.png", "out/in/s0.png"),
        ),
        ("--input out/in/s0.png: is inside the output folder --out out",),
    ),
    CliCase(
        "cli predict",
        "two inputs whose stems differ only in case (a.png, A.PNG)",
        _with_model(
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            "in",
            "--out",
            "out",
            then=lambda t: (
                _copy_image("ds/images/s0.png", "in/a.png")(t),
                _copy_image("ds/images/s1.png", "in/A.PNG")(t),
            ),
        ),
        ("in/a.png: has the same stem as in/A.PNG", "ignoring case"),
    ),
    CliCase(
        "cli predict",
        "two inputs whose stems differ only in Unicode normalisation",
        _with_model(
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            "in",
            "--out",
            "out",
            then=lambda t: (
                _copy_image("ds/images/s0.png", "in/caf\u00e9.png")(t),
                _copy_image("ds/images/s1.png", f"in/caf{NFD_E}.png")(t),
            ),
        ),
        ("has the same stem as", "Unicode normalisation"),
    ),
    CliCase(
        "cli predict",
        "a dangling symlink among the inputs",
        _with_model(*PREDICT, then=_dangling("ds/images/s9.png", "/nowhere/s9.png")),
        ("ds/images/s9.png: is a dangling symlink to /nowhere/s9.png",),
    ),
    CliCase(
        "cli predict",
        "--precision int8 for a model without an int8 calibration (nothing written)",
        _with_model(*PREDICT, "--precision", "int8"),
        ("--precision int8: the model has no int8 calibration; run 'unetkit calibrate",),
    ),
    CliCase(
        "cli predict",
        "--precision not a known precision",
        _with_model(*PREDICT, "--precision", "fp16"),
        ("argument --precision: invalid choice: 'fp16'",),
    ),
    CliCase(
        "cli predict",
        "--spacing with a zero",
        _with_model(*PREDICT, "--spacing", "1", "0"),
        ("--spacing: expected positive numbers, got [1.0, 0.0]",),
    ),
    CliCase(
        "cli predict",
        "--spacing with another number of axes than the model",
        _with_model(*PREDICT, "--spacing", "4", "1", "1"),
        ("--spacing: 3 numbers, but the model is 2D", "one per spatial axis"),
    ),
    CliCase(
        "cli calibrate",
        "--percentile out of range",
        _with_model("calibrate", "--model", "m.safetensors", "--data", "ds", "--percentile", "5"),
        ("--percentile: expected a value in [50, 100], got 5.0",),
    ),
    CliCase(
        "cli calibrate",
        "--data does not exist",
        _with_model("calibrate", "--model", "m.safetensors", "--data", "nope"),
        ("nope: no such file or folder",),
    ),
]
