"""The tuner picks the post-processing that scores best on validation images."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.instances import InstanceParams, TuneGrid, boundary_target, tune_instance_params


def _pair_truth() -> np.ndarray:
    lab = np.zeros((16, 30), dtype=np.int64)
    lab[3:13, 3:14] = 1
    lab[3:13, 14:25] = 2  # touching
    return lab


def _probs(target: np.ndarray, interior: float, border: float) -> np.ndarray:
    """Timid network: interior pixels say ``interior``, border pixels say ``border``."""
    p = np.zeros((3, *target.shape), dtype=np.float32)
    p[0] = 1.0
    for cls, (pi, pb) in {1: (interior, 1 - interior), 2: (1 - border, border)}.items():
        sel = target == cls
        p[0][sel] = 0.0
        p[1][sel] = pi
        p[2][sel] = pb
    return p


def test_picks_the_seed_threshold_that_separates() -> None:
    truth = _pair_truth()
    # interiors only 0.4 sure: with the default seed threshold 0.5 there are no seeds and the
    # touching pair comes out as one object (DSB 0); a seed threshold of 0.3 separates them
    probs = _probs(boundary_target(truth), interior=0.4, border=0.9)
    res = tune_instance_params([probs, probs], [truth, truth])
    assert res.params.seed_threshold == 0.3
    assert res.score == pytest.approx(1.0)
    default_score = dict(res.scores)[InstanceParams()]
    assert default_score == 0.0
    assert len(res.scores) == len(TuneGrid().settings()) == 54
    assert res.seconds > 0


def test_flat_landscape_keeps_the_defaults() -> None:
    truth = _pair_truth()
    probs = _probs(boundary_target(truth), interior=1.0, border=1.0)  # ideal
    res = tune_instance_params([probs], [truth])
    assert res.params == InstanceParams() and res.score == 1.0


def test_small_grid_and_errors() -> None:
    truth = _pair_truth()
    probs = _probs(boundary_target(truth), interior=1.0, border=1.0)
    grid = TuneGrid(
        seed_threshold=(0.5,), foreground_threshold=(0.5,), min_seed_size=(0,), min_size=(0, 500)
    )
    res = tune_instance_params([probs], [truth], grid)
    assert res.params.min_size == 0  # min_size 500 removes both objects
    assert dict(res.scores)[InstanceParams(0.5, 0.5, 0, 500)] == 0.0
    with pytest.raises(ValueError, match="same non-zero number"):
        tune_instance_params([probs], [])
    with pytest.raises(ValueError, match="do not match"):
        tune_instance_params([probs], [truth[:, :10]])
    with pytest.raises(ValueError, match="at least one"):
        TuneGrid(min_size=())
    with pytest.raises(ValueError, match="seed_threshold"):
        TuneGrid(seed_threshold=(2.0,))
