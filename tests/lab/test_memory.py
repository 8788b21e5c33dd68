"""The memory experiment (P10): checkpointing lowers the measured peak memory."""

from __future__ import annotations

import pytest
import torch

from unetkit.lab import LabSettings, memory
from unetkit.model import UNet, UNetConfig


def test_peak_grows_with_input_size() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(4, 8)))
    small = memory.peak_step_bytes(model, torch.randn(1, 1, 32, 32), torch.zeros(1, 32, 32).long())
    large = memory.peak_step_bytes(model, torch.randn(1, 1, 64, 64), torch.zeros(1, 64, 64).long())
    assert small > 32 * 32 * 4 * 4  # at least a few feature maps
    assert 2.5 < large / small < 5.0  # four times the pixels, plus fixed costs


@pytest.fixture(scope="module")
def result() -> memory.ExperimentResult:
    return memory.run(LabSettings(quick=True, seed=0))


def test_checkpointing_lowers_peak_memory(result: memory.ExperimentResult) -> None:
    for size in result.numbers["sizes"]:
        rows = {r["checkpointing"]: r for r in result.numbers["rows"] if r["size"] == size}
        assert rows["encoder"]["peak_bytes"] < 0.9 * rows["off"]["peak_bytes"]
        assert rows["all"]["peak_bytes"] < rows["encoder"]["peak_bytes"]
        assert rows["encoder"]["saved_bytes"] < rows["off"]["saved_bytes"]
