"""Builders of bad inputs shared by the catalogue's areas: files, datasets, models, CLI runs."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from catalogue_kit import Steps
from PIL import Image

# ----------------------------------------------------------------------------- file makers


def png(path: Path, arr: np.ndarray) -> Path:
    """Write ``arr`` (``(H, W)`` or ``(H, W, 3)``, uint8/uint16) as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def npy(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr, allow_pickle=False)
    return path


def image_array(size: tuple[int, int] = (16, 16), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def mask_array(size: tuple[int, int] = (16, 16)) -> np.ndarray:
    m = np.zeros(size, np.uint8)
    m[2:8, 3:9] = 1
    return m


def dataset(root: Path, n: int = 2, size: tuple[int, int] = (16, 16)) -> Path:
    """A clean dataset ``root/images/s{i}.png`` + ``root/masks/s{i}.png``."""
    for i in range(n):
        png(root / "images" / f"s{i}.png", image_array(size, seed=i))
        png(root / "masks" / f"s{i}.png", mask_array(size))
    return root


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A ~100-byte PNG that declares ``width x height`` grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def jpeg_like_mask(size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """A 0/255 mask saved as JPEG and read back: ringing values near the edges."""
    m = np.zeros(size, np.uint8)
    m[8:20, 6:22] = 255
    return np.array(Image.open(io.BytesIO(jpeg_bytes(m))))


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[: int(len(data) * keep)]


def flip_byte(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0xFF
    return bytes(out)


def small_model_file(path: Path, **config: object) -> Path:
    """A tiny saved U-Net (``widths=(4, 8)``) with config overrides."""
    from unetkit.model import UNet, UNetConfig
    from unetkit.modelfile import save

    path.parent.mkdir(parents=True, exist_ok=True)
    return save(UNet(UNetConfig(**{"widths": (4, 8), "norm": "none", **config})), path)


def _read_image(rel: str, build: Callable[[Path], object], **kw: object) -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.io.images import read_image

        return read_image(tmp / rel, **kw)

    return Steps(lambda tmp: build(tmp / rel), call)


def _read_mask(rel: str, build: Callable[[Path], object], **kw: object) -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.io.images import read_mask

        return read_mask(tmp / rel, **kw)

    return Steps(lambda tmp: build(tmp / rel), call)


def _write_bytes(data: bytes) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return build


def _float_image(value: float, suffix: str) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        arr = np.ones((8, 8), np.float32)
        arr[3, 4] = value
        if suffix == ".npy":
            npy(path, arr)
        else:
            tifffile.imwrite(path, arr)

    return build


def _tiff_truncated(path: Path) -> None:
    buf = io.BytesIO()
    tifffile.imwrite(buf, image_array((64, 64)))
    _write_bytes(truncated(buf.getvalue(), 0.5))(path)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _write_rgb16_png(path: Path) -> None:
    ihdr = struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x12\x34" * 6 for _ in range(2))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )
    path.write_bytes(data)


def _colour_mask() -> np.ndarray:
    m = np.zeros((8, 8, 3), np.uint8)
    m[2:5, 2:5] = (255, 0, 0)
    m[5:7, 5:7] = (0, 255, 0)
    return m


# ----------------------------------------------------------------------------- datasets


def _check(
    build: Callable[[Path], object],
    what: Literal["problem", "warning", "note"] = "problem",
    **kw: object,
) -> Steps:
    """check_dataset on ``tmp/ds``; returns the first problem (or warning/note) it reports."""

    def call(tmp: Path) -> object:
        from unetkit.data.dataset import check_dataset

        report = check_dataset(tmp / "ds", **kw)
        items = {"problem": report.problems, "warning": report.warnings, "note": report.notes}[what]
        if what == "problem" and report.ok:
            raise AssertionError("check_dataset found no problem")
        return items[0] if items else ""

    return Steps(lambda tmp: build(tmp / "ds"), call)


def _load(build: Callable[[Path], object], **kw: object) -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.data.dataset import load_dataset

        return load_dataset(tmp / "ds", **kw)

    return Steps(lambda tmp: build(tmp / "ds"), call)


def _with(*edits: Callable[[Path], object]) -> Callable[[Path], None]:
    """A clean dataset with ``edits`` applied to its root."""

    def build(root: Path) -> None:
        dataset(root)
        for edit in edits:
            edit(root)

    return build


def _rm(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


def _put(rel: str, make: Callable[[Path], object]) -> Callable[[Path], None]:
    return lambda root: make(root / rel)


def _empty_dirs(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()


def _labels(values: tuple[int, ...]) -> Callable[[Path], object]:
    def make(path: Path) -> object:
        m = mask_array()
        for i, v in enumerate(values):
            m[10 + i, 10:12] = v
        return png(path, m)

    return make


def _negative_mask(path: Path) -> object:
    m = mask_array().astype(np.int64)
    m[0, 0] = -1
    return npy(path, m)


def _only_background(root: Path) -> None:
    for i in range(2):
        png(root / "images" / f"s{i}.png", image_array(seed=i))
        png(root / "masks" / f"s{i}.png", np.zeros((16, 16), np.uint8))


def _float_image_16(value: float) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        arr = np.ones((16, 16), np.float32)
        arr[3, 4] = value
        tifffile.imwrite(path, arr)

    return build


def _bomb_dataset(root: Path) -> None:
    dataset(root, n=1)
    bomb_png(root / "images" / "s0.png")


# ----------------------------------------------------------------------------- command line


def _cli_dataset(
    *edits: Callable[[Path], object], n: int = 2, size: tuple[int, int] = (16, 16)
) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        dataset(tmp / "ds", n=n, size=size)
        for edit in edits:
            edit(tmp / "ds")
        return tmp / "ds"

    return build


def _check_data(build: Callable[[Path], object], *extra: str) -> Callable[[Path], list[str]]:
    def args(tmp: Path) -> list[str]:
        build(tmp)
        return ["check-data", "ds", *extra]

    return args


def _info(
    *extra: str, build: Callable[[Path], object] | None = None
) -> Callable[[Path], list[str]]:
    def args(tmp: Path) -> list[str]:
        if build is not None:
            build(tmp)
        return ["info", *extra]

    return args


TRAIN_TINY = [
    "--epochs",
    "1",
    "model.widths=[4,8]",
    "data.synthetic_count=4",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "train.steps_per_epoch=1",
]


def _old_run(folder: Path) -> None:
    """What a previous run leaves: its marker, config.yaml, last/, model.safetensors."""
    from unetkit.train.runfolder import new_marker, write_marker

    (folder / "last").mkdir(parents=True)
    write_marker(folder, new_marker())
    (folder / "config.yaml").write_text("model: {}\n")
    (folder / "model.safetensors").write_bytes(b"weights of the old run")


def _train(
    *extra: str, build: Callable[[Path], object] | None = None
) -> Callable[[Path], list[str]]:
    def args(tmp: Path) -> list[str]:
        if build is not None:
            build(tmp)
        return ["train", *extra]

    return args


PREDICT = ("predict", "--model", "m.safetensors", "--input", "ds", "--out", "out")


def _with_model(
    *args: str, then: Callable[[Path], object] | None = None
) -> Callable[[Path], list[str]]:
    """A tiny saved model ``m.safetensors`` and a dataset ``ds``, ``then(tmp)``, then ``args``."""

    def build(tmp: Path) -> list[str]:
        from unetkit.model import UNet, UNetConfig
        from unetkit.modelfile import save

        save(UNet(UNetConfig(widths=(4, 8))).eval(), tmp / "m.safetensors")
        _cli_dataset()(tmp)
        if then is not None:
            then(tmp)
        return list(args)

    return build
