"""The spike experiment (P4): skips localise a spike more sharply under the same budget."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.lab import LabSettings, spike


def test_fwhm_of_known_peaks() -> None:
    assert spike.fwhm(np.array([0, 0, 1.0, 0, 0])) == pytest.approx(1.0)
    assert spike.fwhm(np.array([0, 0.5, 1.0, 0.5, 0])) == pytest.approx(2.0)
    assert spike.fwhm(np.array([0, 0.25, 0.75, 1.0, 0.75, 0.25, 0])) == pytest.approx(3.0)


@pytest.fixture(scope="module")
def result() -> spike.ExperimentResult:
    return spike.run(LabSettings(quick=True, seed=0))


def test_spike_is_sharper_with_skips(result: spike.ExperimentResult) -> None:
    final = result.numbers["final"]
    with_skips, without = final["concat"], final["none"]
    assert with_skips["fwhm"] < 1.1
    assert without["fwhm"] > with_skips["fwhm"] + 0.15
    assert with_skips["peak_ratio"] > without["peak_ratio"] + 0.1
    assert with_skips["position_error"] <= without["position_error"]
