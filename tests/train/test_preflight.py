"""Preflight: memory and a first real training step on a throwaway model, writing nothing and
leaving the global RNG as it was; a failing step becomes one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from unetkit.config import load_run_config
from unetkit.errors import UnetkitError
from unetkit.train.preflight import preflight
from unetkit.train.prepare import prepare_data

TINY = [
    "model.widths=[4,8]",
    "data.synthetic_count=4",
    "data.synthetic_size=32",
    "data.patch_size=[32,32]",
    "train.batch_size=2",
]


@pytest.fixture
def tiny() -> tuple:
    config = load_run_config(None, TINY)
    return config, prepare_data(config.data, seed=0)


def test_preflight_writes_nothing_and_keeps_the_rng(tiny, tmp_path: Path, monkeypatch) -> None:
    config, prepared = tiny
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    preflight(config, prepared)
    assert torch.equal(torch.rand(3), expected)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_first_step_is_one_clear_error(tiny, monkeypatch) -> None:
    from unetkit.train import step

    def broken(self, steps: int = 3, with_val: bool = True) -> tuple[float, float]:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory\nsecond line")

    monkeypatch.setattr(step.StepRunner, "measure", broken)
    config, prepared = tiny
    with pytest.raises(UnetkitError) as e:
        preflight(config, prepared)
    text = str(e.value)
    assert text.startswith("the first training step failed before anything was written")
    assert "patch [32, 32], batch 2" in text and "can't allocate memory" in text
    assert "\n" not in text


def test_preflight_refuses_what_memory_cannot_hold(tiny, monkeypatch) -> None:
    monkeypatch.setenv("UNETKIT_MEMORY_AVAILABLE", "100M")
    config, prepared = tiny
    with pytest.raises(UnetkitError, match="memory: a training step with --batch-size 2"):
        preflight(config, prepared)
    assert os.environ["UNETKIT_MEMORY_AVAILABLE"] == "100M"
