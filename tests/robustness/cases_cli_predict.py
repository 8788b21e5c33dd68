"""`unetkit predict` and `unetkit calibrate` on bad input: refused, nothing written."""

from __future__ import annotations

from builders import PREDICT, _with_model
from catalogue_kit import CliCase

CASES: list[CliCase] = [
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
