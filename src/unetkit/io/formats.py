"""Which format a file is: its suffix against its first bytes (magic), with one clear error."""

from __future__ import annotations

import os
from pathlib import Path

from unetkit.errors import DataError
from unetkit.io.nifti import GZIP_MAGIC, NIFTI_MAGICS, is_nifti_name
from unetkit.io.npy import NPY_MAGIC
from unetkit.io.png import PNG_MAGIC
from unetkit.io.tiff import TIFF_MAGICS

# ".gz" stands for ".nii.gz" only (check_format refuses other .gz files by name)
ALLOWED_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".npy", ".nii", ".gz")
FORMAT_OF_SUFFIX = {
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".npy": "npy",
    ".nii": "nifti",
    ".gz": "nifti",
}
FORMAT_NAMES = {"png": "PNG", "tiff": "TIFF", "npy": "NumPy .npy", "nifti": "NIfTI"}


def sniff(head: bytes) -> str | None:
    """The format named by a file's first bytes, or None if unknown."""
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(TIFF_MAGICS):
        return "tiff"
    if head.startswith(NIFTI_MAGICS):
        return "nifti"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith(b"PK\x03\x04"):
        return "ZIP (.npz?)"
    return None


def check_format(path: Path) -> str:
    """Validate suffix and magic bytes; return ``"png"``, ``"tiff"``, ``"npy"`` or ``"nifti"``."""
    suffix = path.suffix.lower()
    if suffix not in FORMAT_OF_SUFFIX or (suffix == ".gz" and not is_nifti_name(path)):
        raise DataError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; "
            f"allowed: .png .tif .tiff .npy .nii .nii.gz (convert the file to one of these)"
        )
    expected = FORMAT_OF_SUFFIX[suffix]
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(
                f"{path}: is a dangling symlink to {os.readlink(path)} (its target does not "
                f"exist); point it at an existing file"
            ) from None
        raise DataError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror}); check permissions") from None
    if not head:
        raise DataError(f"{path}: file is empty; re-export it, or move it out of the folder")
    found = sniff(head)
    if suffix == ".gz" and found == "gzip":  # .nii.gz: the NIfTI header is inside the gzip
        return expected
    if found != expected:
        if found in FORMAT_NAMES:
            raise DataError(
                f"{path}: extension {suffix!r} but the content is {FORMAT_NAMES[found]}; "
                f"rename the file to match its content"
            )
        if found is not None:
            raise DataError(
                f"{path}: extension {suffix!r} but the content is {found}, which is not "
                f"supported; convert it to PNG, TIFF or .npy"
            )
        raise DataError(
            f"{path}: not a valid {FORMAT_NAMES[expected]} file (unrecognised header); "
            f"the file is corrupt or mislabelled"
        )
    return expected
