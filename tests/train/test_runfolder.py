"""The run folder's policy: the marker decides what is a run, ``--overwrite`` deletes only what
the marker lists, user files are never touched, and the writability probe."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from unetkit.errors import UnetkitError
from unetkit.train.runfolder import (
    LOCK,
    MARKER,
    adopt_legacy_run,
    check_new_run_folder,
    check_writable,
    discard_old_run,
    holds_run,
    inspect,
    new_marker,
    read_marker,
    write_marker,
)


def _legacy(folder: Path) -> Path:
    """What an older unetkit (or another tool) leaves: run-like names, no marker."""
    (folder / "last").mkdir(parents=True)
    (folder / "config.yaml").write_text("model: {}\n")
    return folder


def _run(folder: Path, checkpoint: bool = True) -> Path:
    folder.mkdir(parents=True)
    write_marker(folder, new_marker())
    (folder / "config.yaml").write_text("model: {}\n")
    if checkpoint:
        (folder / "last").mkdir()
        (folder / "last" / "model.safetensors").write_bytes(b"w")
    return folder


def test_absent_or_empty_folders_are_accepted_and_nothing_is_created(tmp_path: Path) -> None:
    check_new_run_folder(tmp_path / "a" / "b", overwrite=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty").mkdir()
    check_new_run_folder(tmp_path / "empty", overwrite=False)
    assert list((tmp_path / "empty").iterdir()) == []


def test_only_the_marker_makes_a_run(tmp_path: Path) -> None:
    legacy = _legacy(tmp_path / "legacy")
    assert not holds_run(legacy) and inspect(legacy).legacy
    run = _run(tmp_path / "run")
    assert holds_run(run) and read_marker(run)["tool"] == "unetkit"
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / MARKER).write_text('{"format": "something-else", "entries": ["x"]}')
    assert not holds_run(tmp_path / "fake")
    assert inspect(tmp_path / "fake").foreign == (MARKER,)


def test_a_checkpointed_run_needs_overwrite_and_user_files_block_it(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    with pytest.raises(UnetkitError, match="already holds a run; continue it with --resume"):
        check_new_run_folder(run, overwrite=False)
    check_new_run_folder(run, overwrite=True)
    (run / "thesis.tex").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(UnetkitError, match=r"files unetkit did not write \(thesis.tex\)") as e:
            check_new_run_folder(run, overwrite=overwrite)
        assert "--overwrite" not in str(e.value) and "rm " not in str(e.value)


def test_foreign_and_legacy_folders_are_refused_without_suggesting_deletion(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    legacy = _legacy(tmp_path / "legacy")
    for folder, fragment in ((other, "is not a unetkit run"), (legacy, "--resume")):
        for overwrite in (False, True):
            with pytest.raises(UnetkitError, match=fragment) as e:
                check_new_run_folder(folder, overwrite=overwrite)
            assert "--overwrite" not in str(e.value) and "rm " not in str(e.value)


def test_an_attempt_without_checkpoint_may_be_replaced_without_overwrite(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", checkpoint=False)
    (run / LOCK).write_text("{}")  # a stale lock is ours too
    state = check_new_run_folder(run, overwrite=False)
    assert not state.checkpointed and set(state.own) == {MARKER, LOCK, "config.yaml"}


def test_discard_removes_only_listed_entries_and_leaves_nothing_aside(tmp_path: Path) -> None:
    run = _run(tmp_path / "run")
    (run / "metrics.csv").write_text("epoch\n")
    (run / ".last.abc.tmp").mkdir()
    removed = discard_old_run(run)
    assert set(removed) == {"config.yaml", "last", "metrics.csv", ".last.abc.tmp"}
    assert sorted(p.name for p in run.iterdir()) == [MARKER]
    assert discard_old_run(tmp_path / "never-there") == []
    (run / "mine.txt").write_text("user")
    with pytest.raises(UnetkitError, match="nothing was deleted"):
        discard_old_run(run)
    assert (run / "mine.txt").read_text() == "user"


def test_a_legacy_run_adopted_on_resume_keeps_user_files_foreign(tmp_path: Path) -> None:
    legacy = _legacy(tmp_path / "legacy")
    (legacy / "notes.txt").write_text("mine")
    marker = adopt_legacy_run(legacy)
    assert marker["adopted"] == ["config.yaml", "last"]
    assert inspect(legacy).foreign == ("notes.txt",)


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
