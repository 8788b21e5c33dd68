"""`unetkit generate` (and diffusion data) refused in one line before anything is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from builders import small_model_file
from catalogue_kit import CliCase


def _denoiser(path: Path, classes: int) -> None:
    from unetkit.model import UNet, UNetConfig
    from unetkit.modelfile import save

    config = UNetConfig(
        widths=(4, 8), in_channels=1, out_channels=1, norm="group", act="silu",
        time_conditioning=True, num_class_labels=classes,
    )  # fmt: skip
    info = {"timesteps": 10, "schedule": "cosine", "prediction": "v", "num_labels": classes,
            "scale": [0.0, 1.0], "image_size": [8, 8]}  # fmt: skip
    save(UNet(config), path, metadata={"task": "diffusion", "diffusion": info})


def _gen(classes: int | None, *extra: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        if classes is None:
            small_model_file(tmp / "m.safetensors")
        else:
            _denoiser(tmp / "m.safetensors", classes)
        return ["generate", "--model", "m.safetensors", "--out", "out", "--quiet", *extra]

    return build


def _one_image(tmp: Path) -> list[str]:
    (tmp / "d" / "images").mkdir(parents=True)
    np.save(tmp / "d" / "images" / "a.npy", np.zeros((8, 8), np.float32))
    return ["train", "task=diffusion", "--data", "d", "--out", "run"]


CASES: list[CliCase] = [
    CliCase(
        "cli generate",
        "a segmentation model",
        _gen(None),
        ("--model m.safetensors: is a segment model, not a diffusion model",),
    ),
    CliCase(
        "cli generate",
        "--class out of range",
        _gen(3, "--class", "5"),
        ("--class 5: out of range; the model knows classes 0..2",),
    ),
    CliCase(
        "cli generate",
        "--class with an unconditional model",
        _gen(0, "--class", "1"),
        ("--class 1: the model is unconditional",),
    ),
    CliCase(
        "cli generate",
        "a guidance scale with an unconditional model",
        _gen(0, "--guidance", "3"),
        ("--guidance 3.0: the model is unconditional",),
    ),
    CliCase("cli generate", "--n 0", _gen(0, "--n", "0"), ("--n 0: expected a positive integer",)),
    CliCase(
        "cli generate",
        "diffusion data with one image",
        _one_image,
        ("task=diffusion needs an images/ folder with at least 2 images",),
    ),
]
