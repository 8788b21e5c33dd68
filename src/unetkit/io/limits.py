"""The pixel limit: a guard against decompression bombs, checked from a file's header.

The limit in force is ``max_pixels`` (argument), else the ``UNETKIT_MAX_PIXELS`` environment
variable, else :data:`DEFAULT_MAX_PIXELS`. Pixels are counted per file over the spatial axes
(voxels in 3D); channels are not counted.
"""

from __future__ import annotations

import os
from pathlib import Path

from unetkit.errors import DataError

DEFAULT_MAX_PIXELS: int = 2**30
MAX_PIXELS_ENV = "UNETKIT_MAX_PIXELS"


def resolve_max_pixels(max_pixels: int | None) -> int:
    """The pixel limit in force: ``max_pixels``, else ``UNETKIT_MAX_PIXELS``, else the default.

    Raises:
        ValueError: ``max_pixels`` is not a positive integer.
        DataError: ``UNETKIT_MAX_PIXELS`` is set but not a positive integer.
    """
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise ValueError(f"max_pixels: expected a positive integer, got {max_pixels!r}")
        return max_pixels
    env = os.environ.get(MAX_PIXELS_ENV)
    if env:
        try:
            value = int(float(env))
        except ValueError:
            value = 0
        if value < 1:
            raise DataError(f"{MAX_PIXELS_ENV}={env!r} is not a positive integer; fix or unset it")
        return value
    return DEFAULT_MAX_PIXELS


def check_pixels(path: Path, pixels: int, limit: int) -> None:
    """Raise :class:`DataError` naming ``path`` when ``pixels`` exceeds ``limit``."""
    if pixels > limit:
        raise DataError(
            f"{path}: {pixels} pixels exceeds the limit of {limit} (a guard against "
            f"decompression bombs); if the file is trusted, raise the limit: max_pixels={pixels} "
            f"(--max-pixels {pixels}) or {MAX_PIXELS_ENV}={pixels}"
        )
