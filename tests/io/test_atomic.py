"""Atomic writes: complete file or old file, never a temporary left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from unetkit.errors import UnetkitError
from unetkit.io import atomic
from unetkit.io.atomic import atomic_save_bytes, atomic_write


def test_writes_bytes_and_text(tmp_path: Path) -> None:
    atomic_save_bytes(tmp_path / "a.bin", b"\x00\x01abc")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01abc"
    with atomic_write(tmp_path / "b.txt", "w") as fh:
        fh.write("héllo\n")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt"]


def test_new_file_gets_normal_permissions(tmp_path: Path) -> None:
    atomic_save_bytes(tmp_path / "a.bin", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~umask


def test_error_inside_keeps_old_content_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as fh:
        fh.write(b"new partial")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_enospc_on_write_becomes_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "full.bin"
    message = r"no space left on device while writing .*full\.bin"
    with pytest.raises(UnetkitError, match=message), atomic_write(target) as fh:
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_enospc_on_fsync_becomes_clear_error(tmp_path: Path, monkeypatch) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(UnetkitError, match="free space and rerun"):
        atomic_save_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_bad_mode_is_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "a", "ab"):
        pass
