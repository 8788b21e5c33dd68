"""`unetkit export` refused before anything is written: it replaces only its own exports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from builders import _with_model
from catalogue_kit import CliCase

EXPORT = ("export", "--model", "m.safetensors", "--format", "torchscript")


def _write(rel: str, data: bytes) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)

    return build


CASES: list[CliCase] = [
    CliCase(
        "cli export",
        "--out is the input model, with --overwrite",
        _with_model(*EXPORT, "--out", "m.safetensors", "--overwrite"),
        ("--out m.safetensors: exists and is not an export written by unetkit", "--overwrite or"),
    ),
    CliCase(
        "cli export",
        "--out is a run's file",
        _with_model(*EXPORT, "--out", "run/config.yaml", then=_write("run/config.yaml", b"x")),
        ("--out run/config.yaml: exists and is not an export written by unetkit",),
    ),
    CliCase(
        "cli export",
        "the settings file beside --out is the user's",
        _with_model(*EXPORT, "--out", "m.pt", then=_write("m.pt.json", b'{"mine": 1}')),
        ("--out m.pt: the settings file m.pt.json that would be written beside it exists",),
    ),
    CliCase(
        "cli export",
        "--out is a dangling symlink",
        _with_model(
            *EXPORT, "--out", "m.pt", then=lambda t: (t / "m.pt").symlink_to("/nowhere/m.pt")
        ),
        ("--out m.pt: is a dangling symlink to /nowhere/m.pt",),
    ),
]


def _per_channel_clip_model(tmp: Path) -> list[str]:
    from unetkit.model import UNet, UNetConfig
    from unetkit.modelfile import save

    meta = {"normalization": {"mode": "per_image", "clip": [[0, 5], [200, 250]]}}
    save(UNet(UNetConfig(widths=(4, 8), in_channels=2)).eval(), tmp / "c.safetensors", meta)
    return ["export", "--model", "c.safetensors", "--format", "bioimageio", "--out", "c.zip"]


CASES.append(
    CliCase(
        "cli export",
        "bioimageio: pre-processing the spec cannot express (per-channel clip bounds)",
        _per_channel_clip_model,
        ("bioimage.io export: the model's normalization clips each of its 2 channels",),
    )
)
