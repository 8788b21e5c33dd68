"""``unetkit lab touching``: synthetic touching cells, the separation measure, the quick run."""

from __future__ import annotations

import numpy as np

from unetkit.lab import LabSettings, run_experiment
from unetkit.lab.touching import paper_mask, separated_fraction, touching_cells


def _pair() -> np.ndarray:
    inst = np.zeros((12, 20), np.int64)
    inst[2:10, 2:10] = 1
    inst[2:10, 10:18] = 2
    return inst


def test_separated_fraction_hand_cases() -> None:
    inst = _pair()
    pairs = [(1, 2)]
    assert separated_fraction(inst, inst, pairs) == 1.0  # the truth separates its pair
    merged = (inst > 0).astype(np.int64)  # one blob over both cells
    assert separated_fraction(merged, inst, pairs) == 0.0
    lost = np.where(inst == 2, 0, inst)  # cell 2 not found at all
    assert separated_fraction(lost, inst, pairs) == 0.0
    half = inst.copy()
    half[2:10, 10:13] = 1  # object 1 spills over 3 of cell 2's 8 columns: still two owners
    assert separated_fraction(half, inst, pairs) == 1.0
    assert np.isnan(separated_fraction(inst, inst, []))


def test_paper_mask_keeps_a_background_line_between_touching_cells() -> None:
    mask = paper_mask(_pair())
    assert (mask[2:10, 9:11] == 0).all()  # one pixel on each side of the contact
    assert (mask[2:10, 2:9] == 1).all() and (mask[2:10, 11:18] == 1).all()


def test_touching_cells_touch() -> None:
    image, inst, pairs = touching_cells(64, 4, np.random.default_rng(0))
    assert image.shape == inst.shape == (64, 64) and pairs
    for a, b in pairs:
        grown = np.zeros_like(inst, dtype=bool)
        ys, xs = np.nonzero(inst == a)
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)):
            grown[np.clip(ys + dy, 0, 63), np.clip(xs + dx, 0, 63)] = True
        assert (grown & (inst == b)).any()  # the two cells of a pair are neighbours


def test_quick_run_reports_the_three_variants() -> None:
    result = run_experiment("touching", LabSettings(quick=True, seed=0))
    final = result.numbers["final"]
    assert set(final) == {"ce", "weighted", "boundary"}
    assert all(0.0 <= final[v]["separated"] <= 1.0 for v in final)
    assert result.numbers["truth_mask_components_separated"] == 1.0
    assert result.figure is not None and "pairs separated" in result.headline
