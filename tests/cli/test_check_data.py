"""``unetkit check-data`` through a real subprocess: exit codes, report, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).parents[2]
DATA = REPO / ".." / "shared" / "data"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "unetkit", "check-data", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _dataset(root: Path, bad: bool) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "images" / f"a{i}.png")
        mask = np.zeros((8, 8), np.uint8)
        mask[2:5, 2:5] = 1
        Image.fromarray(mask).save(root / "masks" / f"a{i}.png")
    if bad:
        Image.fromarray(np.zeros((8, 9), np.uint8)).save(root / "masks" / "a1.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / "lonely.png")
    return root


def test_clean_dataset_exits_0(tmp_path: Path) -> None:
    result = _run(str(_dataset(tmp_path / "d", bad=False)))
    assert result.returncode == 0, result.stderr
    assert "2 pairs" in result.stdout and result.stdout.strip().endswith("OK")


def test_problems_exit_2_and_each_is_named(tmp_path: Path) -> None:
    result = _run(str(_dataset(tmp_path / "d", bad=True)), "--num-classes", "2")
    assert result.returncode == 2
    assert "masks/a1.png" in result.stdout and "images/lonely.png" in result.stdout
    assert "NOT OK: 2 problem(s)" in result.stdout
    assert "Traceback" not in result.stderr


def test_json_output(tmp_path: Path) -> None:
    result = _run(str(_dataset(tmp_path / "d", bad=True)), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 2 and report["ok"] is False and len(report["problems"]) == 2


def test_missing_folder_exits_2(tmp_path: Path) -> None:
    result = _run(str(tmp_path / "nope"))
    assert result.returncode == 2 and "not a folder" in result.stdout


@pytest.mark.skipif(not (DATA / "isbi2012-em").is_dir(), reason="shared data absent")
def test_real_isbi_dataset() -> None:
    result = _run(str(DATA / "isbi2012-em"), "--num-classes", "2", "--json")
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["pairs"] == 24 and report["num_classes"] == 2
