"""The run folder's policy: refusals, the writability probe and ``--overwrite``'s deletion."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from unetkit.errors import UnetkitError
from unetkit.train.runfolder import (
    check_new_run_folder,
    check_writable,
    discard_old_run,
    holds_run,
)


def _run(folder: Path) -> Path:
    (folder / "last").mkdir(parents=True)
    (folder / "config.yaml").write_text("model: {}\n")
    return folder


def test_absent_or_empty_folders_are_accepted_and_nothing_is_created(tmp_path: Path) -> None:
    check_new_run_folder(tmp_path / "a" / "b", overwrite=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty").mkdir()
    check_new_run_folder(tmp_path / "empty", overwrite=False)
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_run_needs_overwrite_and_other_files_are_never_replaced(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    assert holds_run(run)
    with pytest.raises(UnetkitError, match="already holds a run; use --resume"):
        check_new_run_folder(run, overwrite=False)
    check_new_run_folder(run, overwrite=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    assert not holds_run(other)
    with pytest.raises(UnetkitError, match="holds no unetkit run"):
        check_new_run_folder(other, overwrite=True)


def test_unwritable_parent_fails_with_the_reason(tmp_path: Path, monkeypatch) -> None:
    """Root ignores permission bits, so the denial is injected where the probe writes."""
    import tempfile

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    with pytest.raises(UnetkitError, match=r"--out: .*run: cannot write there \(Permission denied"):
        check_writable(tmp_path / "run", "--out")


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root writes into a chmod-555 folder; the path-under-a-file case and the injected "
    "denial above cover the probe",
)
def test_chmod_555_parent_is_refused_before_training(tmp_path: Path, cli) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        r = cli("train", "--out", str(parent / "run"), "--epochs", "1")
    finally:
        parent.chmod(0o755)
    assert r.returncode == 2 and "cannot write there" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "data:" not in r.stdout


def test_discard_old_run_removes_it_and_leaves_nothing_aside(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    (run / "model.safetensors").write_bytes(b"old")
    assert discard_old_run(run) is not None
    assert list(tmp_path.iterdir()) == []
    assert discard_old_run(tmp_path / "never-there") is None
