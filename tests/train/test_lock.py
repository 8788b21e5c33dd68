"""The run-folder lock: atomic, names the holder, stale locks of dead processes are taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unetkit.errors import UnetkitError
from unetkit.train.lock import LOCK_NAME, acquire, check_unlocked, hold, read_lock, release


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder: Path, pid: int, host: str | None = None) -> None:
    data = {"pid": pid, "host": host or socket.gethostname(), "started": 1.0, "command": "train"}
    (folder / LOCK_NAME).write_text(json.dumps(data))


def test_acquire_writes_who_holds_it_and_release_removes_it(tmp_path: Path) -> None:
    path, replaced = acquire(tmp_path, "--out")
    info = read_lock(tmp_path)
    assert replaced is None and info is not None
    assert info.pid == os.getpid() and info.host == socket.gethostname()
    assert abs(info.started - time.time()) < 60
    release(path)
    assert not path.exists()


def test_a_live_holder_is_refused_by_pid(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path, sleeper.pid)
        for call in (lambda: acquire(tmp_path, "--resume"), lambda: check_unlocked(tmp_path, "x")):
            with pytest.raises(UnetkitError, match=f"pid {sleeper.pid}"):
                call()
        assert read_lock(tmp_path).pid == sleeper.pid  # untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_is_taken_over_with_a_note(tmp_path: Path) -> None:
    dead = _dead_pid()
    _write_lock(tmp_path, dead)
    check_unlocked(tmp_path, "--out")  # stale: not a refusal
    notes: list[str] = []
    with hold(tmp_path, "--resume", note=notes.append):
        assert read_lock(tmp_path).pid == os.getpid()
    assert len(notes) == 1 and f"pid {dead}" in notes[0] and "gone" in notes[0]
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_of_another_host_is_respected(tmp_path: Path) -> None:
    _write_lock(tmp_path, 1, host="some-other-machine")
    with pytest.raises(UnetkitError, match=r"some-other-machine.*delete"):
        acquire(tmp_path, "--resume")


def test_a_half_written_lock_is_live_while_young_and_stale_when_old(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(UnetkitError, match="in use"):
        acquire(tmp_path, "--out")
    old = time.time() - 60
    os.utime(tmp_path / LOCK_NAME, (old, old))
    path, replaced = acquire(tmp_path, "--out")
    assert replaced is not None and replaced.pid == 0
    release(path)


def test_release_leaves_another_process_lock_alone(tmp_path: Path) -> None:
    _write_lock(tmp_path, os.getpid() + 1_000_000)
    release(tmp_path / LOCK_NAME)
    assert (tmp_path / LOCK_NAME).exists()
