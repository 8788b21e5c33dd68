"""PNG: read with Pillow (always 2D), written losslessly as 8-bit or 16-bit grey, RGB(A).

The header is checked against the pixel limit before any decoding; 16-bit colour PNGs are
refused (Pillow would reduce them to 8 bits).
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from unetkit.errors import DataError
from unetkit.io.limits import MAX_PIXELS_ENV, check_pixels

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PILLOW_LOCK = threading.Lock()

# (array, axis 0 is channels, default number of spatial dims)
Raw = tuple[np.ndarray, bool, int]


@contextlib.contextmanager
def _pillow_limit(limit: int) -> Iterator[None]:
    """Let Pillow decode up to our own limit (ours is checked first, from the header)."""
    from PIL import Image

    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def read_png(path: Path, limit: int, *, as_mask: bool) -> Raw:
    """``(array, has_channels, 2)``: grey ``(H, W)`` or ``(S, H, W)``; constant alpha dropped;
    for masks, palette indices are the labels."""
    from PIL import Image

    with open(path, "rb") as fh:
        header = fh.read(33)
    if len(header) < 33 or header[12:16] != b"IHDR":
        raise DataError(f"{path}: PNG header is truncated or corrupt; re-export the file")
    width, height = struct.unpack(">II", header[16:24])
    bit_depth, colour_type = header[24], header[25]
    check_pixels(path, width * height, limit)
    if bit_depth == 16 and colour_type in (2, 6):
        raise DataError(
            f"{path}: 16-bit colour PNG cannot be read without losing precision; "
            f"save it as a 16-bit TIFF instead"
        )
    try:
        with _pillow_limit(limit), Image.open(path, formats=["PNG"]) as im:
            im.load()
            mode = im.mode
            if mode == "P" and not as_mask:
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            elif mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "I;16B", "F"):
                im = im.convert("RGBA")
                mode = "RGBA"
            arr = np.array(im)
    except Image.DecompressionBombError:
        raise DataError(
            f"{path}: refused by Pillow as a possible decompression bomb; if the file is "
            f"trusted, raise the limit with max_pixels=... or {MAX_PIXELS_ENV}"
        ) from None
    if arr.ndim == 2:
        return arr, False, 2
    arr = np.moveaxis(arr, -1, 0)  # (H, W, S) -> (S, H, W)
    if mode in ("LA", "RGBA"):
        alpha = arr[-1]
        if alpha.size == 0 or np.all(alpha == alpha.flat[0]):
            arr = arr[:-1]
    if arr.shape[0] == 1:
        return arr[0], False, 2
    return arr, True, 2


def png_bytes(arr: np.ndarray, compress_level: int = 1) -> bytes:
    """``(H, W)`` or ``(C, H, W)`` uint8/uint16 -> PNG file bytes.

    ``compress_level`` 1 (zlib's fastest): on label maps it encodes about 4x faster than
    Pillow's default 6 for files about 1.5x larger, and encoding a huge prediction's labels
    would otherwise take as long as predicting them."""
    from PIL import Image

    buf = io.BytesIO()
    if arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    Image.fromarray(np.ascontiguousarray(arr)).save(
        buf, format="PNG", compress_level=compress_level
    )
    return buf.getvalue()
