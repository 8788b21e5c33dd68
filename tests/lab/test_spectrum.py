"""The spectrum experiment (P4): skips recover more high-frequency content."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.lab import LabSettings, spectrum


def test_band_energy_of_a_pure_tone() -> None:
    x = np.arange(32)
    low = np.tile(np.cos(2 * np.pi * 2 / 32 * x), (32, 1))[None]  # 0.0625 cycles/px
    high = np.tile(np.cos(2 * np.pi * 12 / 32 * x), (32, 1))[None]  # 0.375 cycles/px
    assert spectrum.band_energy(low, 0.25) == pytest.approx(0.0, abs=1e-6)
    assert spectrum.band_energy(high, 0.25) == pytest.approx(spectrum.band_energy(high, -1.0))


def test_skips_recover_more_high_frequencies() -> None:
    result = spectrum.run(LabSettings(quick=True, seed=0))
    res = result.numbers["results"]
    assert res["concat"]["hf_fidelity"] > res["none"]["hf_fidelity"] + 0.1
    assert res["concat"]["hf_power_ratio"] > res["none"]["hf_power_ratio"]
