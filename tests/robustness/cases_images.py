"""Bad image and mask files: `read_image`, `read_mask`."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import cases_nifti
import numpy as np
from builders import (
    _colour_mask,
    _float_image,
    _npy_bytes,
    _read_image,
    _read_mask,
    _tiff_truncated,
    _write_bytes,
    _write_rgb16_png,
    bomb_png,
    flip_byte,
    image_array,
    jpeg_bytes,
    npy,
    png,
    png_bytes,
    truncated,
)
from catalogue_kit import ApiCase


# A 267-byte TIFF found by atheris: its IFD chain is circular and its first page has no data
# offsets; tifffile's lazy page iterator (behind `series`) looped on it for ever.
def _pages(*sizes: tuple[int, int]) -> Callable[[Path], None]:
    """A multi-page TIFF, one page per size (as a microscope or a pyramid writer leaves it)."""

    def build(path: Path) -> None:
        import tifffile

        path.parent.mkdir(parents=True, exist_ok=True)
        with tifffile.TiffWriter(path) as tif:
            for size in sizes:
                tif.write(image_array(size))

    return build


def _dangling_link(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path.parent / "moved-away.png")


CIRCULAR_TIFF = base64.b64decode(
    "SUkqAAgAAAAOAAABBAABAAAACAAAAAEBBAABAAAABgAAAAIBAwABAAAAEAAAAAMBAwABAAAAAQD//////wAcAB0A"
    "HgAfACAAIQAiACMAJAAlACYAJwAoACkAKgArACwALQAuAC8AAAABAAIAAwAEAAUABgAHBAABAAAABgAAAAIBAwAB"
    "AAAAEAAAAAAAAAAAAAAAAQAAAAYBAwABAAAAAQAAABEBBAABAAAAYAEAABUBAwABAAAAAQAAABYBBAABAAAABgAA"
    "ABcBBAABAAAAYAAAABoBBQABAAAAVgIAABsBBQABAAAAXgIAACgBAwABAAAAAQAAAAAAAAABAAAAAQAAAAEAAAAB"
    "AAAA"
)

CASES: list[ApiCase] = [
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
        "multi-page TIFF with pages of different sizes",
        _read_image("pages.tif", _pages((16, 16), (8, 12), (16, 16))),
        ("pages.tif: multi-page TIFF whose pages differ: sizes 16x16, 8x12, 16x16",),
    ),
    ApiCase(
        "masks",
        "multi-page TIFF mask with pages of different sizes",
        _read_mask("pages.tif", _pages((16, 16), (4, 4))),
        ("pages.tif: multi-page TIFF whose pages differ: sizes 16x16, 4x4",),
    ),
    ApiCase(
        "images",
        "dangling symlink",
        _read_image("link.png", _dangling_link),
        ("link.png: is a dangling symlink to", "moved-away.png"),
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

# NIfTI: geometry that cannot be used (cases_nifti.py holds the builders)
CASES += cases_nifti.IMAGE_CASES
