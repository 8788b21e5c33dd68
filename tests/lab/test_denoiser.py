"""``unetkit lab denoiser --quick``: both variants trained, scored, and the DDIM curve."""

from __future__ import annotations

import math

import pytest

from unetkit.lab import LabSettings
from unetkit.lab.runner import run_experiment


def test_quick_denoiser_experiment_reports_both_variants_and_the_steps_curve() -> None:
    pytest.importorskip("sklearn")
    result = run_experiment("denoiser", LabSettings(quick=True))
    v = result.numbers["variants"]
    assert set(v) == {"concat", "none"}
    for k in v:
        assert math.isfinite(v[k]["fd"]) and v[k]["fd"] >= 0
        assert 0.0 <= v[k]["hf_energy"] <= 1.0 and 0.0 <= v[k]["accuracy"] <= 1.0
    assert 0.0 < result.numbers["hf_real"] < 1.0
    assert result.numbers["ddim_steps"] == [2, 5] and len(result.numbers["ddim_fd"]) == 2
    assert v["concat"]["fd"] != v["none"]["fd"]
    assert "FD concat" in result.headline
