"""``--resume`` conflicts and data relocation, on configs and real folders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from unetkit.config import RunConfig
from unetkit.errors import UnetkitError
from unetkit.train.resume_check import (
    check_data_relocation,
    check_resume_options,
    data_fingerprint,
    resume_conflicts,
)


def _with(config: RunConfig, **train: object) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train))


def test_equal_values_and_mutable_settings_are_not_conflicts() -> None:
    stored = _with(RunConfig(), batch_size=4, max_minutes=5.0)
    requested = _with(RunConfig(), batch_size=4, max_minutes=30.0, threads=1)
    keys = {"train.batch_size", "train.max_minutes", "train.threads"}
    assert resume_conflicts(stored, requested, keys) == []


def test_every_differing_option_is_listed_and_no_deletion_is_suggested() -> None:
    stored = _with(RunConfig(), batch_size=4, loss="dice_ce")
    requested = dataclasses.replace(
        _with(RunConfig(), batch_size=8, loss="ce"),
        model=dataclasses.replace(RunConfig().model, widths=(8, 16)),
    )
    keys = {"train.batch_size", "train.loss", "model.widths"}
    with pytest.raises(UnetkitError) as e:
        check_resume_options(Path("run"), stored, requested, keys)
    text = str(e.value)
    for part in (
        "3 option(s)",
        "--batch-size 8 (run: 4)",
        "--loss ce (run: dice_ce)",
        "model.widths=[8,16]",
        "--max-minutes",
    ):
        assert part in text, (part, text)
    assert "--overwrite" not in text and "rm " not in text


def _data(root: Path, n: int = 2) -> Path:
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            (root / sub / f"s{i}.png").write_bytes(b"x" * (i + 1))
    return root


def test_relocated_data_is_accepted_when_it_holds_the_same_files(tmp_path: Path) -> None:
    old = _data(tmp_path / "old")
    fp = data_fingerprint(old)
    moved = tmp_path / "moved"
    old.rename(moved)
    with pytest.raises(UnetkitError, match=r"does not exist .*--data DIR"):
        check_data_relocation(Path("run"), str(old), None, fp)
    assert check_data_relocation(Path("run"), str(old), str(moved), fp) == str(moved.resolve())
    other = _data(tmp_path / "other", n=3)
    with pytest.raises(UnetkitError, match="does not hold the same files"):
        check_data_relocation(Path("run"), str(old), str(other), fp)
    with pytest.raises(UnetkitError, match="synthetic"):
        check_data_relocation(Path("run"), None, str(moved), None)
