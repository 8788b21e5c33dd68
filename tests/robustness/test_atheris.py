"""Coverage-guided fuzzing with atheris for a bounded number of runs (skipped without atheris)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HARNESS = Path(__file__).with_name("atheris_fuzz.py")
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("target", ["image", "config"])
def test_atheris_finds_no_crash(target: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            target,
            "-atheris_runs=1500",
            "-max_len=4096",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    tail = proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert "Done 1500 runs" in proc.stderr or "Done 1500 in" in proc.stderr, tail
