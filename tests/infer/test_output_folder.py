"""The output folder's record: a synced journal during a run, one manifest after it, a killed
run's journal read back, and checks that list each folder once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unetkit.errors import UnetkitError
from unetkit.infer.output_folder import JOURNAL, MANIFEST, OutputFolder

ID = {"model_sha256": "abc", "tile": "auto"}


def _recorded(root: Path) -> dict[str, str]:
    return json.loads((root / MANIFEST).read_text())["outputs"]


def test_records_go_to_the_journal_and_close_folds_them_into_the_manifest(
    tmp_path: Path,
) -> None:
    root = tmp_path / "out"
    folder = OutputFolder.claim(root)
    for i in range(50):
        folder.record([f"im{i:03d}.png", f"probabilities/im{i:03d}.npy"], "d1", ID)
        # each record is one appended line: the manifest is not rewritten per image
        assert not (root / MANIFEST).exists()
        assert len((root / JOURNAL).read_text().splitlines()) == i + 1
    folder.record(["IM000.PNG"], "d2", {**ID, "tile": 256})  # same name up to case: replaced
    folder.close()
    assert not (root / JOURNAL).exists()
    outputs = _recorded(root)
    assert len(outputs) == 100 and outputs["IM000.PNG"] == "d2" and "im000.png" not in outputs
    settings = json.loads((root / MANIFEST).read_text())["settings"]
    assert settings["d1"] == ID and settings["d2"]["tile"] == 256
    again = OutputFolder.claim(root)
    assert again.owner("probabilities/im049.npy") == "d1" and again.owner("im000.png") is None
    folder.close()  # nothing new: the manifest stays as it is
    assert _recorded(root) == outputs


def test_a_killed_runs_journal_is_read_back_and_its_cut_last_line_ignored(
    tmp_path: Path,
) -> None:
    root = tmp_path / "out"
    folder = OutputFolder.claim(root)
    folder.record(["a.png"], "d1", ID)
    folder.close()
    folder.record(["b.png"], "d1", ID)
    folder.record(["c.png"], "d1", ID)
    (root / "a.png").write_bytes(b"x")
    (root / "b.png").write_bytes(b"x")
    # killed while recording a fourth output: half a line, and its file never written
    with (root / JOURNAL).open("a") as fh:
        fh.write('{"settings": {"d1": {}}, "outputs": {"d.pn')
    back = OutputFolder.claim(root)
    assert [back.owner(n) for n in ("a.png", "b.png", "c.png", "d.png")] == [
        "d1", "d1", "d1", None,
    ]  # fmt: skip
    assert back.check(["a.png", "b.png"], "d1", overwrite=False) is True
    back.close()
    assert sorted(_recorded(root)) == ["a.png", "b.png", "c.png"]
    assert not (root / JOURNAL).exists()


def test_a_folder_holding_only_a_journal_is_unetkits_own(tmp_path: Path) -> None:
    """The first run was killed before any manifest was written."""
    root = tmp_path / "out"
    first = OutputFolder.claim(root)
    first.record(["a.png"], "d1", ID)
    (root / "a.png").write_bytes(b"x")
    assert not (root / MANIFEST).exists()
    (root / "user.txt").write_text("mine")
    second = OutputFolder.claim(root)  # no error: the journal says the folder is ours
    assert second.check(["a.png"], "d1", overwrite=False) is True
    with pytest.raises(UnetkitError, match=r"user\.txt: exists and was not written"):
        second.check(["user.txt"], "d1", overwrite=True)


def test_a_damaged_line_inside_the_journal_is_refused_by_name(tmp_path: Path) -> None:
    root = tmp_path / "out"
    folder = OutputFolder.claim(root)
    folder.record(["a.png"], "d1", ID)
    folder.record(["b.png"], "d1", ID)
    lines = (root / JOURNAL).read_text().splitlines()
    (root / JOURNAL).write_text("\n".join(["{not json", lines[1]]) + "\n")
    with pytest.raises(UnetkitError, match=rf"{JOURNAL}: line 1 is damaged"):
        OutputFolder.claim(root)


def test_checks_see_files_written_after_a_record(tmp_path: Path) -> None:
    """A folder's listing is reused between checks and taken again after a record."""
    root = tmp_path / "out"
    folder = OutputFolder.claim(root)
    root.mkdir()
    assert folder.existing("a.png") is None
    (root / "A.png").write_bytes(b"someone's")
    assert folder.existing("a.png") is None  # the listing of this run's checks
    folder.record(["b.png"], "d1", ID)
    assert folder.existing("a.png") == root / "A.png"


def test_only_temporaries_of_recorded_outputs_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "out"
    folder = OutputFolder.claim(root)
    folder.record(["a.png", "sub/b.v1.npy"], "d1", ID)
    (root / "sub").mkdir()
    ours = [root / ".a.png.k1ll3d00.tmp", root / "sub" / ".b.v1.npy.x_9a0b1c.tmp"]
    theirs = [root / ".c.png.k1ll3d00.tmp", root / ".a.png.tmp", root / "sub" / ".b.v1.tmp"]
    for p in [*ours, *theirs]:
        p.write_bytes(b"half")
    folder.remove_own_temporaries()
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs)


def test_a_run_after_a_killed_one_folds_the_cut_journal_before_recording(tmp_path: Path) -> None:
    """Killed mid-line, then killed again after a record: the third run still reads every
    complete record (the cut line never swallows a later one)."""
    root = tmp_path / "out"
    first = OutputFolder.claim(root)
    first.record(["a.png"], "d1", ID)
    with (root / JOURNAL).open("a") as fh:
        fh.write('{"settings": {"d1": {}}, "outputs": {"b.pn')  # killed here
    second = OutputFolder.claim(root)
    second.record(["c.png"], "d1", ID)  # killed after this record, before close
    third = OutputFolder.claim(root)
    assert [third.owner(n) for n in ("a.png", "b.png", "c.png")] == ["d1", None, "d1"]
