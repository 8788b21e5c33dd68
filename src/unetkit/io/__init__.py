"""Reading and writing images, masks and files safely (atomic writes, format checks)."""

from __future__ import annotations

from unetkit.io.atomic import atomic_save_bytes, atomic_write
from unetkit.io.images import (
    ALLOWED_SUFFIXES,
    DEFAULT_MAX_PIXELS,
    read_image,
    read_mask,
    write_image,
    write_mask,
)

__all__ = [
    "ALLOWED_SUFFIXES",
    "DEFAULT_MAX_PIXELS",
    "atomic_save_bytes",
    "atomic_write",
    "read_image",
    "read_mask",
    "write_image",
    "write_mask",
]
