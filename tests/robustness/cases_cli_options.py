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


def _instance_model_and_dot(tmp: Path) -> None:
    import numpy as np

    from unetkit.io.images import write_image
    from unetkit.model import UNet, UNetConfig
    from unetkit.modelfile import save

    save(UNet(UNetConfig(widths=(4, 8), norm="instance")).eval(), tmp / "mi.safetensors")
    write_image(tmp / "one.png", np.zeros((1, 1, 1), np.uint8))


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
        ("mine: folder exists, is not empty and was not written by `unetkit synth`",),
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
    CliCase(
        "cli options",
        "info --input-size 1 for an instance-norm model",
        _args("info", "--input-size", "1", "norm=instance"),
        ("the input is too small for this model: its deepest level is 1x1 pixel(s)",),
    ),
    CliCase(
        "cli options",
        "predict a 1x1 image with an instance-norm model",
        _args(
            "predict",
            "--model",
            "mi.safetensors",
            "--input",
            "one.png",
            "--out",
            "out",
            build=_instance_model_and_dot,
        ),
        ("one.png: the input is too small for this model: its deepest level is 1x1",),
    ),
]
