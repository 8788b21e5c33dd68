"""The catalogue of bad inputs: each case builds its input in a folder and calls the real code.

Used twice: by the tests of this folder (each case must give one clear line, the right error
class or exit status, no traceback and nothing written) and by ``make_doc.py``, which runs
every case and writes the table of ``docs/robustness.md`` from the messages the code really
produces. A case is data, not a test, so the table and the tests cannot drift apart.

API cases call a library function and expect an exception (or, for ``kind="warning"``, return
the warning text). CLI cases give the arguments of ``python -m unetkit`` and the exit status.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from PIL import Image

from unetkit.errors import DataError, ModelFileError, UnetkitError

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


# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Steps:
    """``build(tmp)`` writes the bad input; ``call(tmp)`` runs the code under test on it."""

    build: Callable[[Path], object]
    call: Callable[[Path], object]


def _nothing(tmp: Path) -> None:
    return None


@dataclass(frozen=True)
class ApiCase:
    """A library call on a bad input.

    ``steps.build(tmp)`` makes the input under ``tmp``; ``steps.call(tmp)`` calls the code under
    test. For ``kind="error"`` it must raise ``raises`` (default: ``UnetkitError``); for
    ``kind="problem"``/``"warning"`` it returns the problem or warning text that the (successful)
    call reported.
    """

    area: str
    name: str
    steps: Steps
    expect: tuple[str, ...]
    raises: type[Exception] | None = None
    kind: Literal["error", "warning", "problem"] = "error"


@dataclass(frozen=True)
class CliCase:
    """``python -m unetkit ARGS`` on a bad input: exit status and the line that explains it.

    ``args(tmp)`` builds the input and returns the arguments (paths relative to ``tmp``, which
    is the working folder). ``stream`` says where the explaining line goes: ``stderr`` (one
    ``unetkit: error:`` line, nothing else) or ``stdout`` (the check-data report).

    A representative few run as a real subprocess (``subprocess=True``); the others call
    ``unetkit.cli.main`` in-process with the same working folder, environment and captured
    output, because each Python start with torch costs seconds on a shared machine.
    """

    area: str
    name: str
    args: Callable[[Path], list[str]]
    expect: tuple[str, ...]
    code: int = 2
    stream: Literal["stderr", "stdout"] = "stderr"
    env: dict[str, str] = field(default_factory=dict)
    subprocess: bool = False  # else ``unetkit.cli.main`` in this process (same code, faster)


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


# A 267-byte TIFF found by atheris: its IFD chain is circular and its first page has no data
# offsets; tifffile's lazy page iterator (behind `series`) looped on it for ever.
CIRCULAR_TIFF = base64.b64decode(
    "SUkqAAgAAAAOAAABBAABAAAACAAAAAEBBAABAAAABgAAAAIBAwABAAAAEAAAAAMBAwABAAAAAQD//////wAcAB0A"
    "HgAfACAAIQAiACMAJAAlACYAJwAoACkAKgArACwALQAuAC8AAAABAAIAAwAEAAUABgAHBAABAAAABgAAAAIBAwAB"
    "AAAAEAAAAAAAAAAAAAAAAQAAAAYBAwABAAAAAQAAABEBBAABAAAAYAEAABUBAwABAAAAAQAAABYBBAABAAAABgAA"
    "ABcBBAABAAAAYAAAABoBBQABAAAAVgIAABsBBQABAAAAXgIAACgBAwABAAAAAQAAAAAAAAABAAAAAQAAAAEAAAAB"
    "AAAA"
)

IMAGE_CASES: list[ApiCase] = [
    ApiCase(
        "images",
        "missing file",
        _read_image("nope.png", lambda p: None),
        ("nope.png", "file not found"),
    ),
    ApiCase(
        "images", "empty file", _read_image("empty.png", _write_bytes(b"")), ("empty.png", "empty")
    ),
    ApiCase(
        "images",
        "a folder instead of a file",
        _read_image("dir.png", lambda p: p.mkdir()),
        ("dir.png", "folder"),
    ),
    ApiCase(
        "images",
        "unsupported format (.jpg)",
        _read_image("photo.jpg", _write_bytes(jpeg_bytes(image_array()))),
        ("photo.jpg", "unsupported file type", ".png .tif .tiff .npy"),
    ),
    ApiCase(
        "images",
        "JPEG content named .png",
        _read_image("fake.png", _write_bytes(jpeg_bytes(image_array()))),
        ("fake.png", "content is JPEG"),
    ),
    ApiCase(
        "images",
        "PNG content named .tif",
        _read_image("fake.tif", _write_bytes(png_bytes(image_array()))),
        ("fake.tif", "content is PNG", "rename"),
    ),
    ApiCase(
        "images",
        "text file named .png",
        _read_image("notes.png", _write_bytes(b"hello, this is not an image\n")),
        ("notes.png", "not a valid PNG"),
    ),
    ApiCase(
        "images",
        "truncated PNG",
        _read_image("cut.png", _write_bytes(truncated(png_bytes(image_array((64, 64)))))),
        ("cut.png", "truncated"),
    ),
    ApiCase(
        "images",
        "PNG with a flipped byte in its pixel data (CRC error)",
        _read_image("flip.png", _write_bytes(flip_byte(png_bytes(image_array((64, 64))), -30))),
        ("flip.png", "corrupt"),
    ),
    ApiCase(
        "images",
        "PNG header cut short",
        _read_image("head.png", _write_bytes(png_bytes(image_array())[:20])),
        ("head.png", "header is truncated"),
    ),
    ApiCase(
        "images",
        "truncated TIFF",
        _read_image("cut.tif", _tiff_truncated),
        ("cut.tif", "corrupt or truncated"),
    ),
    ApiCase(
        "images",
        "TIFF with a circular page chain (found by atheris; hung tifffile)",
        _read_image("cycle.tif", _write_bytes(CIRCULAR_TIFF)),
        ("cycle.tif", "cannot decode TIFF"),
    ),
    ApiCase(
        "images",
        "truncated .npy",
        _read_image(
            "cut.npy",
            lambda p: _write_bytes(truncated(_npy_bytes(np.ones((32, 32), np.float32))))(p),
        ),
        ("cut.npy", "corrupt or truncated"),
    ),
    ApiCase(
        "images",
        "pickled .npy (object array)",
        _read_image(
            "obj.npy", lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        ),
        ("obj.npy", "pickled", "refused"),
    ),
    ApiCase(
        "images",
        "decompression bomb (100 B PNG declaring 100000x100000)",
        _read_image("bomb.png", bomb_png),
        ("bomb.png", "exceeds the limit", "max_pixels="),
    ),
    ApiCase(
        "images",
        "image over a lowered pixel limit (max_pixels=100)",
        _read_image("big.png", lambda p: png(p, image_array((16, 16))), max_pixels=100),
        ("big.png", "256 pixels exceeds the limit of 100", "max_pixels=256"),
    ),
    ApiCase(
        "images",
        "NaN pixel (float TIFF)",
        _read_image("nan.tif", _float_image(np.nan, ".tif")),
        ("nan.tif", "1 pixel value(s) are NaN or infinite"),
    ),
    ApiCase(
        "images",
        "infinite pixel (.npy)",
        _read_image("inf.npy", _float_image(np.inf, ".npy")),
        ("inf.npy", "NaN or infinite"),
    ),
    ApiCase(
        "images",
        "complex-valued .npy",
        _read_image("cplx.npy", lambda p: npy(p, np.ones((4, 4), np.complex64))),
        ("cplx.npy", "pixel type complex64"),
    ),
    ApiCase(
        "images",
        ".npy with no pixels (shape (0, 5))",
        _read_image("zero.npy", lambda p: npy(p, np.ones((0, 5), np.float32))),
        ("zero.npy", "no pixels"),
    ),
    ApiCase(
        "images",
        ".npy with 5 dimensions",
        _read_image("five.npy", lambda p: npy(p, np.ones((1, 2, 2, 2, 2), np.float32))),
        ("five.npy", "has 5 dims"),
    ),
    ApiCase(
        "images",
        "3D volume read as 2D (spatial_dims=2)",
        _read_image("vol.npy", lambda p: npy(p, np.ones((2, 4, 8, 8), np.float32)), spatial_dims=2),
        ("vol.npy", "3D image", "spatial_dims=3"),
    ),
    ApiCase(
        "images",
        "2D PNG read as 3D (spatial_dims=3)",
        _read_image("flat.png", lambda p: png(p, image_array()), spatial_dims=3),
        ("flat.png", "cannot be read as a 3D image"),
    ),
    ApiCase(
        "images",
        "16-bit colour PNG",
        _read_image("rgb16.png", lambda p: _write_rgb16_png(p)),
        ("rgb16.png", "16-bit colour PNG", "TIFF"),
    ),
    ApiCase(
        "images",
        "bad max_pixels argument",
        _read_image("ok.png", lambda p: png(p, image_array()), max_pixels=0),
        ("max_pixels", "positive integer"),
        raises=ValueError,
    ),
    ApiCase(
        "images",
        "bad spatial_dims argument",
        _read_image("ok.png", lambda p: png(p, image_array()), spatial_dims=4),
        ("spatial_dims", "expected None, 1, 2 or 3"),
        raises=ValueError,
    ),
    ApiCase(
        "masks",
        "RGB colour mask",
        _read_mask("rgb.png", lambda p: png(p, _colour_mask())),
        ("rgb.png", "3 different channels", "single-channel"),
    ),
    ApiCase(
        "masks",
        "float mask with fractions",
        _read_mask("soft.npy", lambda p: npy(p, np.full((4, 4), 0.5, np.float32))),
        ("soft.npy", "non-integer values (e.g. 0.5)"),
    ),
    ApiCase(
        "masks",
        "mask with NaN",
        _read_mask("nan.npy", _float_image(np.nan, ".npy")),
        ("nan.npy", "NaN or infinite"),
    ),
]


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


DATASET_CASES: list[ApiCase] = [
    ApiCase(
        "dataset",
        "folder does not exist",
        _check(lambda r: None),
        ("ds: not a folder", "images/ and masks/"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "folder without masks/",
        _check(lambda r: (r / "images").mkdir(parents=True)),
        ("missing folder(s) masks/",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "empty images/ and masks/",
        _check(_empty_dirs),
        ("ds/images: no images",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "image without a mask",
        _check(_with(_rm("masks/s1.png"))),
        ("ds/images/s1.png: no mask with stem 's1'",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "mask without an image",
        _check(_with(_rm("images/s1.png"))),
        ("ds/masks/s1.png: no image with stem 's1'",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "two files with one stem",
        _check(_with(_put("images/s0.tif", lambda p: tifffile.imwrite(p, image_array())))),
        ("two files with stem 's0'",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "image and mask sizes differ",
        _check(_with(_put("masks/s1.png", lambda p: png(p, mask_array((16, 12)))))),
        ("ds/masks/s1.png: mask size 16x12 differs from image size 16x16",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "labels outside the classes (num_classes=2)",
        _check(_with(_put("masks/s1.png", _labels((3, 7)))), num_classes=2),
        ("ds/masks/s1.png: labels 3, 7 are outside 0..1",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "negative labels",
        _check(_with(_rm("masks/s1.png"), _put("masks/s1.npy", _negative_mask))),
        ("ds/masks/s1.npy: negative labels -1",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "RGB colour mask",
        _check(
            _with(_put("masks/s1.png", lambda p: png(p, np.resize(_colour_mask(), (16, 16, 3)))))
        ),
        ("ds/masks/s1.png", "different channels"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "anti-aliased / JPEG-like 0/255 mask",
        _check(
            lambda r: (dataset(r, size=(32, 32)), png(r / "masks" / "s1.png", jpeg_like_mask())),
        ),
        ("ds/masks/s1.png: looks like an anti-aliased or JPEG-compressed",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "an intensity image as mask",
        _check(_with(_put("masks/s1.png", lambda p: png(p, image_array())))),
        ("ds/masks/s1.png", "distinct values", "not a label mask"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "images with differing channel counts",
        _check(_with(_put("images/s1.png", lambda p: png(p, np.stack([image_array()] * 3, -1))))),
        ("different channel counts: 1 (1 files), 3 (1 files)", "ds/images/"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "2D and 3D images mixed",
        _check(
            _with(
                _rm("images/s1.png"),
                _rm("masks/s1.png"),
                _put("images/s1.npy", lambda p: npy(p, np.ones((4, 16, 16), np.float32))),
                _put("masks/s1.npy", lambda p: npy(p, np.zeros((4, 16, 16), np.int64))),
            )
        ),
        ("different numbers of spatial dims: 2D", "3D (e.g."),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "a truncated image among good ones",
        _check(
            _with(_put("images/s1.png", _write_bytes(truncated(png_bytes(image_array((16, 16)))))))
        ),
        ("ds/images/s1.png",),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "decompression bomb in the dataset",
        _check(_bomb_dataset),
        ("ds/images/s0.png", "exceeds the limit"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "NaN pixels in an image",
        _check(_with(_rm("images/s1.png"), _put("images/s1.tif", _float_image_16(np.nan)))),
        ("ds/images/s1.tif", "NaN or infinite"),
        kind="problem",
    ),
    ApiCase(
        "dataset",
        "every mask is background",
        _check(_only_background, "warning"),
        ("every mask is background",),
        kind="warning",
    ),
    ApiCase(
        "dataset",
        "a stray non-image file",
        _check(_with(_put("images/readme.txt", _write_bytes(b"hi"))), "warning"),
        ("ds/images/readme.txt: ignored",),
        kind="warning",
    ),
    ApiCase(
        "dataset",
        "load_dataset of a broken dataset (one line, first problems)",
        _load(_with(_rm("masks/s1.png"))),
        ("ds: 1 problem(s)", "unetkit check-data"),
        raises=DataError,
    ),
    ApiCase(
        "dataset",
        "bad num_classes argument",
        _check(dataset, num_classes=0),
        ("num_classes", "positive integer"),
        raises=ValueError,
    ),
]


# ----------------------------------------------------------------------------- configs


def _unet_config(data: object) -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.configtools import from_dict
        from unetkit.model import UNetConfig

        return from_dict(UNetConfig, data)  # type: ignore[arg-type]

    return Steps(_nothing, call)


def _yaml(text: str | bytes | None, name: str = "config.yaml") -> Steps:
    def build(tmp: Path) -> None:
        path = tmp / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        elif text is not None:
            path.write_text(text)

    def call(tmp: Path) -> object:
        from unetkit.configtools import load_yaml

        return load_yaml(str(tmp / name))

    return Steps(build, call)


def _override(text: str) -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.configtools import apply_overrides

        return apply_overrides({"model": {"depth": 4}}, [text])

    return Steps(_nothing, call)


CONFIG_CASES: list[ApiCase] = [
    ApiCase(
        "config",
        "unknown key (typo)",
        _unet_config({"paddng": "valid"}),
        ("paddng: unknown setting (did you mean 'padding'?)",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "wrong type (string for an integer)",
        _unet_config({"in_channels": "three"}),
        ("in_channels: expected an integer, got 'three'",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "wrong type (a number for a list)",
        _unet_config({"widths": 32}),
        ("widths: expected a list of integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "wrong type inside a list",
        _unet_config({"widths": [8, "x"]}),
        ("widths[1]: expected an integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "choice not allowed",
        _unet_config({"padding": "vaild"}),
        ("padding: 'vaild' is not one of", "did you mean 'valid'?"),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "out of range (dropout 1.5)",
        _unet_config({"dropout": 1.5}),
        ("dropout: expected a probability in [0, 1)",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "out of range (even kernel_size)",
        _unet_config({"kernel_size": 4}),
        ("kernel_size: expected an odd positive integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "out of range (spatial_dims 4)",
        _unet_config({"spatial_dims": 4}),
        ("spatial_dims: expected 1, 2 or 3",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "out of range (in_channels 0)",
        _unet_config({"in_channels": 0}),
        ("in_channels: expected a positive integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "nested value out of range (norm.groups 0)",
        _unet_config({"norm": {"type": "group", "groups": 0}}),
        ("norm.groups: expected a positive integer",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "nested unknown option (norm.foo)",
        _unet_config({"norm": {"type": "batch", "foo": 1}}),
        ("norm.foo",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "not a mapping",
        _unet_config([1, 2]),
        ("expected a mapping of settings",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "YAML syntax error",
        _yaml("model: [1, 2\n"),
        ("config.yaml: not valid YAML",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "YAML top level is a list",
        _yaml("- 1\n- 2\n"),
        ("config.yaml: expected a mapping of settings at the top level",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "YAML file that is not UTF-8 text",
        _yaml(b"model: \xff\xfe\n"),
        ("config.yaml", "UTF-8"),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "YAML file missing",
        _yaml(None, "missing.yaml"),
        ("missing.yaml", "no such file"),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "override without '='",
        _override("model.depth"),
        ("override 'model.depth': expected key=value",),
        raises=ValueError,
    ),
    ApiCase(
        "config",
        "override into a value",
        _override("model.depth.x=1"),
        ("'depth' is a value, not a section",),
        raises=ValueError,
    ),
]


# ----------------------------------------------------------------------------- model files


def _load_model(rel: str, build: Callable[[Path], object]) -> Steps:
    def call(tmp: Path) -> object:
        from unetkit.modelfile import load

        return load(tmp / rel)

    return Steps(lambda tmp: build(tmp / rel), call)


def _pickled(path: Path) -> None:
    import torch

    from unetkit.model import UNet, UNetConfig

    torch.save(UNet(UNetConfig(widths=(4, 8))).state_dict(), path)


def _damaged(edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        small_model_file(path)
        path.write_bytes(edit(path.read_bytes()))

    return build


def _replace_after(data: bytes, anchor: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with the first ``old`` after ``anchor`` replaced by ``new`` (same length)."""
    i = data.index(old, data.index(anchor))
    return data[:i] + new + data[i + len(old) :]


def _foreign_safetensors(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(path))


def _bad_stored_config(path: Path) -> None:
    from unetkit.modelfile import read_tensors, write_tensors

    small_model_file(path)
    tensors, meta = read_tensors(path)
    config = json.loads(meta["config"])
    config["widths"] = [4, "eight"]
    meta["config"] = json.dumps(config)
    write_tensors(path, tensors, meta)


def _mismatched_weights(path: Path) -> None:
    """A file whose stored config says widths (4, 8) but whose tensors are of (4, 16)."""
    from unetkit.modelfile import read_tensors, write_tensors

    small_model_file(path, widths=(4, 16))
    tensors, _ = read_tensors(path)
    other = path.with_name("other.safetensors")
    small_model_file(other)
    _, meta = read_tensors(other)
    other.unlink()
    write_tensors(path, tensors, meta)


def _into(build_config: dict[str, object]) -> Steps:
    """Load the weights of a saved model into a model of another architecture."""

    def call(tmp: Path) -> object:
        from unetkit.model import UNet, UNetConfig
        from unetkit.modelfile import load_state_into, read_tensors

        path = tmp / "m.safetensors"
        tensors, _ = read_tensors(path)
        model = UNet(UNetConfig(**{"widths": (4, 8), "norm": "none", **build_config}))
        return load_state_into(model, tensors, str(path))

    return Steps(lambda tmp: small_model_file(tmp / "m.safetensors"), call)


def _header_length_bomb(path: Path) -> None:
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")


MODELFILE_CASES: list[ApiCase] = [
    ApiCase(
        "modelfile",
        "pickled .pt state dict",
        _load_model("weights.pt", _pickled),
        ("weights.pt: is a pickled PyTorch file", "arbitrary code", "import_state_dict"),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "missing file",
        _load_model("none.safetensors", lambda p: None),
        ("none.safetensors: no such model file",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "run folder without a model",
        _load_model("run", lambda p: p.mkdir()),
        ("run: folder has no model.safetensors",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "truncated file",
        _load_model("cut.safetensors", _damaged(truncated)),
        ("cut.safetensors: not a readable safetensors file",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "flipped byte in the weights",
        _load_model("flip.safetensors", _damaged(lambda b: flip_byte(b, -9))),
        ("flip.safetensors: checksum mismatch",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "stored config altered (dropout 0.0 -> 0.5)",
        _load_model(
            "cfg.safetensors", _damaged(lambda b: _replace_after(b, b"dropout", b"0.0", b"0.5"))
        ),
        ("cfg.safetensors: checksum mismatch in its metadata",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "flipped byte in the header",
        _load_model("head.safetensors", _damaged(lambda b: flip_byte(b, 20))),
        ("head.safetensors",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "header declaring 2**62 bytes",
        _load_model("huge.safetensors", _header_length_bomb),
        ("huge.safetensors: not a readable safetensors file",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "random bytes",
        _load_model("noise.safetensors", _write_bytes(bytes(range(256)) * 4)),
        ("noise.safetensors: not a readable safetensors file",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "safetensors from another tool",
        _load_model("foreign.safetensors", _foreign_safetensors),
        ("foreign.safetensors: is a safetensors file but not a unetkit model",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "stored config not valid",
        _load_model("cfg.safetensors", _bad_stored_config),
        ("cfg.safetensors: its stored model config is not valid", "widths[1]"),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "weights that do not fit the stored config",
        _load_model("mixed.safetensors", _mismatched_weights),
        ("mixed.safetensors: weights do not fit this architecture", "shape(s) differ", "file (16,"),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "weights of another class count (3 vs 2)",
        _into({"out_channels": 3}),
        ("head.weight: file (2, 4, 1, 1) vs model (3, 4, 1, 1)",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "weights of another architecture (3 levels vs 2)",
        _into({"widths": (4, 8, 16)}),
        ("missing",),
        raises=ModelFileError,
    ),
    ApiCase(
        "modelfile",
        "weights for 3 input channels vs 1",
        _into({"in_channels": 3}),
        ("file (4, 1, 3, 3) vs model (4, 3, 3, 3)",),
        raises=ModelFileError,
    ),
]


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


PREDICT = ("predict", "--model", "m.safetensors", "--input", "ds", "--output", "out")


def _with_model(*args: str) -> Callable[[Path], list[str]]:
    """A tiny saved model ``m.safetensors`` and a dataset ``ds``, then ``args``."""

    def build(tmp: Path) -> list[str]:
        from unetkit.model import UNet, UNetConfig
        from unetkit.modelfile import save

        save(UNet(UNetConfig(widths=(4, 8))).eval(), tmp / "m.safetensors")
        _cli_dataset()(tmp)
        return list(args)

    return build


CLI_CASES: list[CliCase] = [
    CliCase(
        "cli check-data",
        "folder does not exist",
        _check_data(lambda t: None),
        ("ds: not a folder",),
        stream="stdout",
        subprocess=True,
    ),
    CliCase(
        "cli check-data",
        "empty images/ and masks/",
        _check_data(lambda t: _empty_dirs(t / "ds")),
        ("ds/images: no images",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "image without a mask",
        _check_data(_cli_dataset(_rm("masks/s1.png"))),
        ("ds/images/s1.png: no mask with stem 's1'",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "mask without an image",
        _check_data(_cli_dataset(_rm("images/s1.png"))),
        ("ds/masks/s1.png: no image with stem 's1'",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "image and mask sizes differ",
        _check_data(_cli_dataset(_put("masks/s1.png", lambda p: png(p, mask_array((16, 12)))))),
        ("ds/masks/s1.png: mask size 16x12 differs",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "labels outside the classes",
        _check_data(_cli_dataset(_put("masks/s1.png", _labels((3, 7)))), "--num-classes", "2"),
        ("ds/masks/s1.png: labels 3, 7 are outside 0..1",),
        stream="stdout",
        subprocess=True,
    ),
    CliCase(
        "cli check-data",
        "RGB colour mask",
        _check_data(
            _cli_dataset(
                _put("masks/s1.png", lambda p: png(p, np.resize(_colour_mask(), (16, 16, 3))))
            )
        ),
        ("ds/masks/s1.png: mask has 3 different channels",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "JPEG-like 0/255 mask",
        _check_data(
            _cli_dataset(_put("masks/s1.png", lambda p: png(p, jpeg_like_mask())), size=(32, 32))
        ),
        ("ds/masks/s1.png: looks like an anti-aliased or JPEG-compressed",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "differing channel counts",
        _check_data(
            _cli_dataset(_put("images/s1.png", lambda p: png(p, np.stack([image_array()] * 3, -1))))
        ),
        ("images have different channel counts",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "truncated image",
        _check_data(
            _cli_dataset(_put("images/s1.png", _write_bytes(truncated(png_bytes(image_array())))))
        ),
        ("ds/images/s1.png",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "truncated TIFF (no stray log lines)",
        _check_data(_cli_dataset(_rm("images/s1.png"), _put("images/s1.tif", _tiff_truncated))),
        ("ds/images/s1.tif: cannot decode TIFF",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "content does not match extension",
        _check_data(_cli_dataset(_put("images/s1.png", _write_bytes(jpeg_bytes(image_array()))))),
        ("ds/images/s1.png: extension '.png' but the content is JPEG",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "decompression bomb",
        _check_data(_cli_dataset(_put("images/s1.png", bomb_png))),
        ("ds/images/s1.png: 10000000000 pixels exceeds the limit",),
        stream="stdout",
        subprocess=True,
    ),
    CliCase(
        "cli check-data",
        "image over --max-pixels",
        _check_data(_cli_dataset(), "--max-pixels", "100"),
        ("256 pixels exceeds the limit of 100",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "bad UNETKIT_MAX_PIXELS",
        _check_data(_cli_dataset()),
        ("UNETKIT_MAX_PIXELS='lots' is not a positive integer",),
        env={"UNETKIT_MAX_PIXELS": "lots"},
        subprocess=True,
    ),
    CliCase(
        "cli check-data",
        "NaN pixels",
        _check_data(
            _cli_dataset(_rm("images/s1.png"), _put("images/s1.tif", _float_image_16(np.inf)))
        ),
        ("ds/images/s1.tif: 1 pixel value(s) are NaN or infinite",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "float64 values too large for float32 (no stray warnings)",
        _check_data(
            _cli_dataset(
                _rm("images/s1.png"),
                _put("images/s1.npy", lambda p: npy(p, np.full((16, 16), 1e300))),
            )
        ),
        ("ds/images/s1.npy: 256 pixel value(s) are NaN or infinite (or too large",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "3D volume with --spatial-dims 2",
        _check_data(
            _cli_dataset(
                _rm("images/s1.png"),
                _put("images/s1.npy", lambda p: npy(p, np.ones((2, 4, 16, 16), np.float32))),
            ),
            "--spatial-dims",
            "2",
        ),
        ("ds/images/s1.npy: holds a 3D image with 2 channels",),
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "every mask is background (warning, exit 0)",
        _check_data(lambda t: _only_background(t / "ds")),
        ("every mask is background",),
        code=0,
        stream="stdout",
    ),
    CliCase(
        "cli check-data",
        "--num-classes 0",
        _check_data(_cli_dataset(), "--num-classes", "0"),
        ("num_classes: expected a positive integer",),
    ),
    CliCase(
        "cli info",
        "unknown override key",
        _info("paddng=valid"),
        ("paddng: unknown setting (did you mean 'padding'?)",),
        subprocess=True,
    ),
    CliCase(
        "cli info",
        "wrong type",
        _info("in_channels=three"),
        ("in_channels: expected an integer, got 'three'",),
    ),
    CliCase(
        "cli info",
        "out of range",
        _info("dropout=2"),
        ("dropout: expected a probability in [0, 1)",),
    ),
    CliCase(
        "cli info",
        "override without '='",
        _info("padding"),
        ("override 'padding': expected key=value",),
    ),
    CliCase(
        "cli info",
        "pickled model",
        _info("--model", "w.pth", build=lambda t: _pickled(t / "w.pth")),
        ("w.pth: is a pickled PyTorch file",),
        subprocess=True,
    ),
    CliCase(
        "cli info",
        "corrupt model file",
        _info(
            "--model",
            "m.safetensors",
            build=lambda t: _damaged(lambda b: flip_byte(b, -9))(t / "m.safetensors"),
        ),
        ("m.safetensors: checksum mismatch",),
    ),
    CliCase(
        "cli info",
        "missing model file",
        _info("--model", "none.safetensors"),
        ("none.safetensors: no such model file",),
    ),
    CliCase(
        "cli info",
        "bad --input-size",
        _info("--input-size", "0"),
        ("--input-size: sizes must be positive",),
    ),
    CliCase(
        "cli train",
        "output folder holds another run",
        _train("--out", "run", *TRAIN_TINY, build=lambda t: _old_run(t / "run")),
        ("--out: run already holds a run; continue it with --resume run", "--overwrite"),
        subprocess=True,
    ),
    CliCase(
        "cli train",
        "--overwrite on a non-empty folder that is not a run",
        _train(
            "--out",
            "run",
            "--overwrite",
            *TRAIN_TINY,
            build=lambda t: (t / "run").mkdir() or (t / "run" / "thesis.tex").write_text("x"),
        ),
        ("--out: run is not empty and is not a unetkit run (thesis.tex)",),
    ),
    CliCase(
        "cli train",
        "--overwrite with a broken dataset: the old run is kept",
        _train(
            "--out",
            "run",
            "--overwrite",
            "--data",
            "ds",
            "--epochs",
            "1",
            build=lambda t: (_old_run(t / "run"), _cli_dataset(_rm("masks/s1.png"))(t)),
        ),
        ("s1",),
    ),
    CliCase(
        "cli train",
        "--overwrite with a bad config value: the old run is kept",
        _train(
            "--out",
            "run",
            "--overwrite",
            *TRAIN_TINY,
            "train.lr=-1",
            build=lambda t: _old_run(t / "run"),
        ),
        ("lr",),
    ),
    CliCase(
        "cli train",
        "--out under a regular file (unwritable, also as root)",
        _train(
            "--out",
            "notes.txt/run",
            *TRAIN_TINY,
            build=lambda t: (t / "notes.txt").write_text("x"),
        ),
        ("--out: notes.txt/run: cannot create the folder, notes.txt is a file",),
    ),
    CliCase(
        "cli train",
        "--out is a file",
        _train(
            "--out", "notes.txt", *TRAIN_TINY, build=lambda t: (t / "notes.txt").write_text("x")
        ),
        ("--out: notes.txt is a file",),
    ),
    CliCase(
        "cli train",
        "--resume and --overwrite together",
        _train("--resume", "run", "--overwrite", build=lambda t: _old_run(t / "run")),
        ("--resume and --overwrite: choose one",),
    ),
    CliCase(
        "cli train",
        "--resume of a folder that is not a run",
        _train("--resume", "ds", build=_cli_dataset()),
        ("--resume: ds: no config.yaml",),
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

API_CASES: list[ApiCase] = IMAGE_CASES + DATASET_CASES + CONFIG_CASES + MODELFILE_CASES


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Outcome:
    """What a case produced: ``error`` (class name) or ``problem``/``warning``, and the text."""

    result: str
    message: str


def run_api(case: ApiCase, tmp: Path) -> Outcome:
    """Run an API case in folder ``tmp``; an unexpected success is reported as ``result="ok"``."""
    case.steps.build(tmp)
    try:
        value = case.steps.call(tmp)
    except Exception as exc:  # the tests judge the class; the doc shows it
        return Outcome(type(exc).__name__, str(exc))
    if case.kind == "error":
        return Outcome("ok", repr(value)[:200])
    return Outcome(case.kind, str(value))


def cli_env(extra: dict[str, str]) -> dict[str, str]:
    import os

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {k: v for k, v in os.environ.items() if k != "UNETKIT_MAX_PIXELS"}
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@dataclass(frozen=True)
class CliOutcome:
    code: int
    stdout: str
    stderr: str
    line: str  # the line that explains the outcome ("" if none contains the first fragment)


# ----------------------------------------------------------------------------- checking


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_line(text: str) -> bool:
    return "\n" not in text.strip() and "Traceback" not in text


def check_api_case(case: ApiCase, tmp: Path) -> Outcome:
    """Run ``case``; assert the contract of its kind; return what it produced."""
    case.steps.build(tmp)
    before = snapshot(tmp)
    try:
        value = case.steps.call(tmp)
    except Exception as exc:
        assert case.kind == "error", f"{case.name}: raised {exc!r}, expected a report"
        assert isinstance(exc, case.raises or UnetkitError), f"{case.name}: {exc!r}"
        outcome = Outcome(type(exc).__name__, str(exc))
    else:
        assert case.kind != "error", f"{case.name}: no error, returned {value!r:.200}"
        outcome = Outcome(case.kind, str(value))
    assert one_line(outcome.message), outcome.message
    for fragment in case.expect:
        assert fragment in outcome.message, (fragment, outcome.message)
    assert snapshot(tmp) == before, "the call wrote or changed files"
    return outcome


def run_in_process(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``unetkit.cli.main(args)`` with ``cwd``, ``env`` added and stdout/stderr captured."""
    import contextlib
    import os

    from unetkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_env = Path.cwd(), dict(os.environ)
    os.environ.pop("UNETKIT_MAX_PIXELS", None)
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def check_cli_case(case: CliCase, tmp: Path) -> CliOutcome:
    """Run ``case`` through a subprocess; assert exit status, one clear line, nothing written."""
    args = case.args(tmp)
    before = snapshot(tmp)
    if case.subprocess:
        proc = subprocess.run(
            [sys.executable, "-m", "unetkit", *args],
            cwd=tmp,
            env=cli_env(case.env),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    else:
        proc = run_in_process(args, tmp, case.env)
    both = proc.stdout + proc.stderr
    assert proc.returncode == case.code, (proc.returncode, both)
    assert "Traceback" not in both, both
    if case.stream == "stderr":
        assert proc.stderr.startswith("unetkit: error: ") and one_line(proc.stderr), proc.stderr
        line = proc.stderr.strip().removeprefix("unetkit: error: ")
    else:
        assert proc.stderr == "", proc.stderr
        hits = [
            ln.strip().removeprefix("- ") for ln in proc.stdout.splitlines() if case.expect[0] in ln
        ]
        assert hits, proc.stdout
        line = hits[0]
        assert proc.stdout.rstrip().endswith("OK" if case.code == 0 else "problem(s)")
    for fragment in case.expect:
        assert fragment in line, (fragment, line)
    assert snapshot(tmp) == before, "the command wrote or changed files"
    return CliOutcome(proc.returncode, proc.stdout, proc.stderr, line)


# ----------------------------------------------------------------------------- the document

DOC = Path(__file__).resolve().parents[2] / "docs" / "robustness.md"


def doc_row(name: str, result: str, message: str, tmp: Path | None = None) -> str:
    """The Markdown table row for a case, paths shown relative to its folder."""
    if tmp is not None:
        message = message.replace(f"{tmp}/", "").replace(str(tmp), ".")
    cell = message.replace("|", "\\|")
    return f"| {name} | {result} | {cell} |"
