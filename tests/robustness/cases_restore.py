"""``task=restore``: bad restoration data and options, one clear line each, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from builders import dataset, small_model_file
from catalogue_kit import CliCase

TINY = ["--out", "run", "--epochs", "1", "model.widths=[4,8]", "train.steps_per_epoch=1"]


def _restore_data(
    root: Path, n: int = 2, *, target: Callable[[int], np.ndarray] | None = None
) -> Path:
    """``root/images/s{i}.tif`` (uint16 noise) with ``root/targets/s{i}.tif`` (float32)."""
    import tifffile

    (root / "images").mkdir(parents=True)
    (root / "targets").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        tifffile.imwrite(root / "images" / f"s{i}.tif", rng.integers(0, 3000, (16, 16), np.uint16))
        t = target(i) if target is not None else rng.uniform(0, 3000, (16, 16)).astype(np.float32)
        tifffile.imwrite(root / "targets" / f"s{i}.tif", t)
    return root


def _train(*extra: str, build: Callable[[Path], object]) -> Callable[[Path], list[str]]:
    def args(tmp: Path) -> list[str]:
        build(tmp)
        return ["train", "--data", "ds", *TINY, *extra]

    return args


def _restore_model(tmp: Path, out_channels: int = 1) -> Path:
    from unetkit.model import UNet, UNetConfig
    from unetkit.modelfile import save

    meta = {"task": "restore", "restore": {"mode": "supervised", "target_channels": out_channels}}
    net = UNet(UNetConfig(widths=(4, 8), norm="none", out_channels=out_channels))
    return save(net, tmp / "r.safetensors", metadata=meta)


def _with_model(*args: str, build: Callable[[Path], object]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        build(tmp)
        _restore_model(tmp)
        return list(args)

    return make


def _labels(i: int) -> np.ndarray:
    return (np.arange(256).reshape(16, 16) % 3).astype(np.uint8)


def _two_channels(i: int) -> np.ndarray:
    return np.zeros((2, 16, 16) if i else (16, 16), np.float32)


def _images_only(tmp: Path) -> None:
    _restore_data(tmp / "ds")
    for f in (tmp / "ds" / "targets").iterdir():
        f.unlink()
    (tmp / "ds" / "targets").rmdir()


CASES: list[CliCase] = [
    CliCase(
        "restore",
        "task=restore: a target of another size",
        _train(
            "task=restore",
            build=lambda t: _restore_data(
                t / "ds", target=lambda i: np.zeros((12, 16) if i else (16, 16), np.float32)
            ),
        ),
        ("ds/targets/s1.tif: target size 12x16 differs from image size 16x16",),
    ),
    CliCase(
        "restore",
        "task=restore: integer class masks as targets",
        _train("task=restore", build=lambda t: _restore_data(t / "ds", target=_labels)),
        ("ds/targets/s0.tif: holds only 3 integer values: class labels, not an image",),
    ),
    CliCase(
        "restore",
        "task=restore: targets with different channel counts",
        _train("task=restore", build=lambda t: _restore_data(t / "ds", target=_two_channels)),
        ("targets have different channel counts",),
    ),
    CliCase(
        "restore",
        "task=restore on a segmentation dataset (masks/, no targets/)",
        _train("task=restore", build=lambda t: dataset(t / "ds")),
        ("has masks/ (class labels, for task=segment) but no targets/",),
    ),
    CliCase(
        "restore",
        "restore.mode=supervised with images only",
        _train("task=restore", "restore.mode=supervised", build=_images_only),
        ("restore.mode=supervised: ", "has no targets/"),
    ),
    CliCase(
        "restore",
        "task=segment on a restoration dataset (targets/, no masks/)",
        _train(build=lambda t: _restore_data(t / "ds")),
        ("missing folder(s) masks/", "train it with task=restore"),
    ),
    CliCase(
        "restore",
        "task=restore with deep supervision",
        _train(
            "task=restore",
            "model.widths=[4,8,16]",
            "model.deep_supervision=true",
            build=lambda t: _restore_data(t / "ds"),
        ),
        ("model.deep_supervision: not used by task=restore",),
    ),
    CliCase(
        "restore",
        "predict --overlay with a restoration model",
        _with_model(
            "predict",
            "--model",
            "r.safetensors",
            "--input",
            "ds",
            "--out",
            "out",
            "--overlay",
            build=lambda t: _restore_data(t / "ds"),
        ),
        ("--overlay: a restoration model (r.safetensors) outputs images, not classes",),
    ),
    CliCase(
        "restore",
        "predict --dtype input with a segmentation model",
        lambda t: [
            "predict",
            "--model",
            str(small_model_file(t / "m.safetensors")),
            "--input",
            str(dataset(t / "ds")),
            "--out",
            "out",
            "--dtype",
            "input",
        ],
        ("--dtype input: only for restoration models",),
    ),
    CliCase(
        "restore",
        "evaluate a restoration model on images without targets",
        _with_model("evaluate", "--model", "r.safetensors", "--data", "ds", build=_images_only),
        ("ds: no targets/ to score against",),
    ),
    CliCase(
        "restore",
        "evaluate a restoration model on targets of another channel count",
        _with_model(
            "evaluate",
            "--model",
            "r.safetensors",
            "--data",
            "ds",
            build=lambda t: _restore_data(t / "ds", target=lambda i: np.zeros((2, 16, 16), "f4")),
        ),
        ("different channel count than the model's 1 output channel(s)",),
    ),
]

CASES.append(
    CliCase(
        "restore",
        "restore.blind_spot_replace: an unknown replacement",
        _train("task=restore", "restore.blind_spot_replace=nearest", build=_images_only),
        ("restore.blind_spot_replace: 'nearest' is not one of 'neighbour', 'median', 'mean'",),
    )
)
