"""Shared test fixtures: paths to the real sample data beside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unetkit.hardware import NO_BF16_ENV

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# Automatic precision stays fp32 on every machine (on a CPU with AMX, ``auto`` would otherwise
# pick bf16 and every float comparison would carry its rounding); the tests of the choice
# itself take the variable away (``allow_bf16``). Subprocesses (the command line) inherit it.
os.environ[NO_BF16_ENV] = "1"


@pytest.fixture
def allow_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let automatic choices pick bf16 again, as they do outside the test suite."""
    monkeypatch.delenv(NO_BF16_ENV, raising=False)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m unetkit ARGS`` in a subprocess, as a user would."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "unetkit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def cli():
    """The :func:`run_cli` function: ``cli("info", "--json")`` runs the command line."""
    return run_cli
