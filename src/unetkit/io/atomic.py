"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one.

The data goes to a temporary file in the destination folder, is flushed and ``fsync``-ed, then
``os.replace`` puts it in place and the folder itself is ``fsync``-ed so the rename survives a
crash. On any error the temporary file is removed and the error re-raised; running out of disk
space becomes a one-line :class:`unetkit.errors.UnetkitError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from unetkit.errors import UnetkitError

_MODES = ("wb", "w")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _final_mode(path: Path) -> int:
    """Permission bits for the new file: the old file's, else 0o666 minus the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success it atomically replaces ``path``.

    Args:
        path: destination file; its folder must exist.
        mode: ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).

    Yields:
        A writable file object. Do not close it yourself.

    Raises:
        ValueError: ``mode`` is not ``"wb"`` or ``"w"``.
        UnetkitError: the disk is full (``ENOSPC``); nothing is left behind and ``path`` keeps
            its old content.
        Exception: any other error, re-raised after the temporary file is removed.
    """
    if mode not in _MODES:
        raise ValueError(f"mode: expected 'wb' or 'w', got {mode!r}")
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        if mode == "wb":
            fh: IO[Any] = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _final_mode(target))
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise UnetkitError(
                f"no space left on device while writing {target}; free space and rerun"
            ) from exc
        raise
    _fsync_dir(folder)


def atomic_save_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
