"""Odd option values on every command: the message names the option, never a library argument
(``--num-classes``, not ``num_classes``), and ``synth`` never writes into a user's folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from builders import _cli_dataset, _with_model
from catalogue_kit import CliCase


def _args(*args: str, build: Callable[[Path], object] | None = None) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        if build is not None:
            build(tmp)
        return list(args)

    return make


def _notes(tmp: Path) -> None:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("the user's")


CASES: list[CliCase] = [
    CliCase(
        "cli options",
        "check-data --max-pixels -1",
        _args("check-data", "ds", "--max-pixels", "-1", build=_cli_dataset()),
        ("--max-pixels: expected a positive integer, got -1",),
    ),
    CliCase(
        "cli options",
        "synth --size 1",
        _args("synth", "out", "--size", "1"),
        ("--size: expected 2 sides of at least 8, got 1",),
    ),
    CliCase(
        "cli options",
        "synth into a folder of the user's, with --overwrite",
        _args("synth", "mine", "--overwrite", build=_notes),
        ("mine: folder holds files that unetkit synth did not write",),
    ),
    CliCase(
        "cli options",
        "train --seed -1",
        _args("train", "--out", "run", "--seed", "-1"),
        ("argument --seed: expected a non-negative integer, got -1",),
    ),
    CliCase(
        "cli options",
        "info --input-size with more sizes than axes",
        _args("info", "--input-size", "64", "64", "64", "64"),
        ("--input-size (64, 64, 64, 64): expected 2 spatial size(s) for a 2D model",),
    ),
    CliCase(
        "cli options",
        "export --input-size with more sizes than axes",
        _with_model(
            "export",
            "--model",
            "m.safetensors",
            "--format",
            "torchscript",
            "--out",
            "m.pt",
            "--input-size",
            "16",
            "16",
            "16",
        ),
        ("--input-size: expected 1 or 2 positive sizes, got [16, 16, 16]",),
    ),
    CliCase(
        "cli options",
        "predict --tile with more sizes than axes",
        _with_model(
            "predict",
            "--model",
            "m.safetensors",
            "--input",
            "ds",
            "--out",
            "out",
            "--tile",
            "8",
            "8",
            "8",
        ),
        ("--tile: expected one size or 2 (one per spatial axis of this 2D model), got 8 8 8",),
    ),
]
