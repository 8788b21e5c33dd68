"""The alignment experiment (P6, P7): valid sizes; no one-pixel shift in same mode."""

from __future__ import annotations

import pytest
import torch

from unetkit.lab import LabSettings, alignment


def test_probe_reconstructs_the_cell_of_a_point() -> None:
    model = alignment.probe_model(3)  # cells of 4 pixels
    x = torch.zeros(1, 1, 16)
    x[0, 0, 6] = 1.0
    y = model(x)[0, 0]
    assert torch.equal(y, torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 8))


@pytest.fixture(scope="module")
def result() -> alignment.ExperimentResult:
    return alignment.run(LabSettings(quick=True, seed=0))


def test_alignment_check_passes(result: alignment.ExperimentResult) -> None:
    numbers = result.numbers
    assert numbers["valid_table_verified"]
    assert numbers["ronneberger2015_572_to"] == [388, 388]
    assert numbers["unetkit_max_abs_shift"] == 0.0
    for case in numbers["same_mode"]:
        assert abs(case["naive_mean_shift"]) >= 0.9, case["length"]


def test_anisotropic_valid_sizes_are_per_axis_and_match_a_forward_pass() -> None:
    table = alignment.anisotropic_table()
    assert table["verified_by_forward_pass"]
    coarse, in_plane, _ = table["valid_inputs_per_axis"]
    # axis 0: 1-wide kernels and no pooling at level 0, then a 2-pool: steps of 2
    assert coarse == [18, 20, 22, 24]
    # in-plane: two 2-pools, 3x3 kernels everywhere: the isotropic depth-3 sizes
    assert in_plane == [44, 48, 52, 56]
    assert table["outputs_per_axis"][0] == [2, 4, 6, 8]
    assert table["outputs_per_axis"][1] == [4, 8, 12, 16]
