"""The inputs of ``predict``: image files named directly or found in folders.

A dataset folder's ``images/`` is used when present; folders are not searched recursively; a
Zarr store counts as one image. Two inputs whose outputs would collide (stems equal after NFC
normalisation and case folding) and dangling symlinks are errors naming the files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from unetkit.errors import DataError
from unetkit.infer.lazy_image import is_zarr
from unetkit.infer.output_folder import name_key
from unetkit.io.images import ALLOWED_SUFFIXES


def _dangling(path: Path) -> DataError:
    return DataError(
        f"{path}: is a dangling symlink to {os.readlink(path)} (its target does not exist); "
        f"point it at an existing file, or move it out of the input folder"
    )


def input_folders(paths: Sequence[str | Path]) -> list[Path]:
    """The folders among ``paths`` (an output folder must lie outside each of them)."""
    return [Path(p) for p in paths if Path(p).is_dir()]


def find_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found in folders (a dataset folder's ``images/``).

    Folders are not searched recursively; files are sorted by name. Two inputs whose stems are
    the same after NFC normalisation and case folding would write the same output, so that is
    an error naming both. A dangling symlink is an error naming the link and its target.
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if is_zarr(p):  # a Zarr store is one image, not a folder of images
            found.append(p)
        elif p.is_dir():
            folder = p / "images" if (p / "images").is_dir() else p
            entries = sorted(f for f in folder.iterdir() if not f.name.startswith("."))
            for f in entries:
                if f.is_symlink() and not f.exists() and f.suffix.lower() in ALLOWED_SUFFIXES:
                    raise _dangling(f)
            files = [
                f
                for f in entries
                if (f.is_file() and f.suffix.lower() in ALLOWED_SUFFIXES) or is_zarr(f)
            ]
            if not files:
                raise DataError(
                    f"{folder}: no {'/'.join(s.lstrip('.') for s in ALLOWED_SUFFIXES)} files "
                    f"to predict"
                )
            found.extend(files)
        elif p.is_symlink() and not p.exists():
            raise _dangling(p)
        elif p.is_file():
            if p.suffix.lower() not in ALLOWED_SUFFIXES:
                raise DataError(
                    f"{p}: unsupported extension {p.suffix!r}; use {' '.join(ALLOWED_SUFFIXES)}"
                )
            found.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    stems: dict[str, Path] = {}
    for f in found:
        key = name_key(f.stem)
        if key in stems and stems[key].resolve() != f.resolve():
            raise DataError(
                f"{f}: has the same stem as {stems[key]} (names are compared ignoring case and "
                f"Unicode normalisation); their outputs would collide. Rename one, or predict "
                f"them into different --out folders"
            )
        stems[key] = f
    unique: dict[Path, Path] = {f.resolve(): f for f in found}
    return list(unique.values())


__all__ = ["find_inputs", "input_folders"]
