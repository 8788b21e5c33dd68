"""One writer per run folder: ``.unetkit-lock`` with the holder's pid, host and start time.

The lock is created with ``O_CREAT | O_EXCL`` (atomic on local file systems), so of two
``unetkit train`` processes aimed at the same folder exactly one gets it; the other is refused
with the holder's pid. A lock whose process is gone (killed with ``SIGKILL``, a crashed machine)
is stale: it is taken over, with a note. A lock from another host cannot be checked and is
respected (its message says how to tell and what to remove if that host is really done).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from unetkit.errors import UnetkitError

LOCK_NAME = ".unetkit-lock"


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock: process id, host name, start time (``time.time()``) and command."""

    pid: int
    host: str
    started: float
    command: str = "train"

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, started {when}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:  # a zombie (killed, not yet reaped by its parent) holds nothing
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_lock(folder: Path) -> LockInfo | None:
    """The lock of ``folder``; ``None`` when there is none. An unreadable lock file (killed
    while writing it) reads as a dead holder (pid 0)."""
    return read_lock_file(Path(folder) / LOCK_NAME)


def read_lock_file(path: Path) -> LockInfo | None:
    """The lock file at ``path`` (see :func:`read_lock`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return LockInfo(0, socket.gethostname(), 0.0)
    try:
        data = json.loads(text)
        return LockInfo(
            int(data["pid"]), str(data["host"]), float(data["started"]), str(data["command"])
        )
    except (ValueError, KeyError, TypeError):  # half-written: its age tells (see is_stale)
        with contextlib.suppress(OSError):
            return LockInfo(0, socket.gethostname(), path.stat().st_mtime)
        return LockInfo(0, socket.gethostname(), 0.0)


def is_stale(info: LockInfo) -> bool:
    """The holder is on this host and its process is gone. A lock file without a pid (its
    writer was killed between creating and writing it) is stale once a few seconds old."""
    if info.pid == 0:
        return time.time() - info.started > 5.0
    return info.host == socket.gethostname() and not _pid_alive(info.pid)


def _refusal(folder: Path, option: str, info: LockInfo) -> UnetkitError:
    if info.host != socket.gethostname():
        return UnetkitError(
            f"{option}: {folder} is in use by another unetkit process ({info.describe()}); "
            f"wait for it to finish, or if that process is gone, delete {folder / LOCK_NAME}"
        )
    return UnetkitError(
        f"{option}: {folder} is in use by another unetkit process ({info.describe()}); "
        f"wait for it to finish or stop it (kill {info.pid}), or choose another {option}"
    )


def check_unlocked(folder: Path, option: str) -> None:
    """Refuse (reading only) when a live process holds ``folder``'s lock."""
    info = read_lock(folder)
    if info is not None and not is_stale(info):
        raise _refusal(Path(folder), option, info)


def acquire(folder: Path, option: str, command: str = "train") -> tuple[Path, LockInfo | None]:
    """Take the lock of ``folder`` (which must exist). Returns the lock path and the stale lock
    it replaced (``None`` when there was none).

    Raises:
        UnetkitError: a live process holds the lock (naming its pid).
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    mine = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "command": command,
    }
    payload = json.dumps(mine).encode()
    replaced: LockInfo | None = None
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = read_lock(folder)
            if info is None:
                continue  # released between our two calls: try again
            if not is_stale(info):
                raise _refusal(folder, option, info) from None
            # stale: rename it away first, so two processes cannot both take it over
            grave = folder / f".unetkit-lock.{os.getpid()}.stale.tmp"
            try:
                os.rename(path, grave)
            except FileNotFoundError:
                continue
            moved = read_lock_file(grave)
            if moved != info:  # another process took it over first: put its lock back
                with contextlib.suppress(OSError):
                    os.link(grave, path)
                with contextlib.suppress(OSError):
                    os.unlink(grave)
                continue
            with contextlib.suppress(OSError):
                os.unlink(grave)
            replaced = info
            continue
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        return path, replaced
    raise UnetkitError(f"{option}: {folder}: could not take its lock; try again")


def release(path: Path) -> None:
    """Remove the lock at ``path`` if this process still holds it."""
    info = read_lock(Path(path).parent)
    if info is not None and info.pid == os.getpid() and info.host == socket.gethostname():
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextlib.contextmanager
def hold(folder: Path, option: str, note: object = None, command: str = "train") -> Iterator[Path]:
    """Hold ``folder``'s lock for the block; ``note(text)`` is told of a stale lock taken over."""
    path, replaced = acquire(folder, option, command)
    if replaced is not None and callable(note):
        note(
            f"note: {folder}: took over the lock of a unetkit process that is gone "
            f"({replaced.describe()})"
        )
    try:
        yield path
    finally:
        release(path)


__all__ = ["LOCK_NAME", "LockInfo", "acquire", "check_unlocked", "hold", "read_lock", "release"]
