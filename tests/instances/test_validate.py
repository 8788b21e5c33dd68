"""Instance truth checks: one line per problem, naming the file; split ids listed per file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unetkit.errors import DataError
from unetkit.instances import as_instances, check_instances, disconnected_ids, separate_pieces
from unetkit.io.images import read_mask


def test_disconnected_ids() -> None:
    lab = np.array(
        [
            [5, 5, 0, 5],
            [0, 0, 0, 5],
            [2, 0, 3, 0],
            [0, 2, 0, 3],
        ]
    )
    # id 5: two pieces; ids 2 and 3: diagonal pairs, one piece with full connectivity
    assert disconnected_ids(lab) == {5: 2}
    assert disconnected_ids(lab, connectivity=1) == {2: 2, 3: 2, 5: 2}
    assert disconnected_ids(np.zeros((3, 3), dtype=np.int64)) == {}


def test_disconnected_ids_3d() -> None:
    lab = np.zeros((3, 3, 3), dtype=np.int64)
    lab[0, 0, 0] = lab[2, 2, 2] = 7
    lab[1, 1, 1] = 8
    assert disconnected_ids(lab) == {7: 2}


def _one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_check_accepts_whole_floats_and_returns_int64() -> None:
    out = check_instances(np.array([[0.0, 1.0], [2.0, 2.0]]), "a.tif")
    assert out.dtype == np.int64 and out.tolist() == [[0, 1], [2, 2]]


def test_check_fractional_ids() -> None:
    with pytest.raises(DataError) as exc:
        check_instances(np.array([[0.0, 1.5]]), "instances/a.tif")
    msg = _one_line(exc)
    assert msg.startswith("instances/a.tif: ") and "integers" in msg and "1.5" in msg


def test_check_nan_negative_and_dtype() -> None:
    with pytest.raises(DataError, match=r"^b\.tif: .*NaN"):
        check_instances(np.array([np.nan, 1.0]), "b.tif")
    with pytest.raises(DataError, match=r"^c\.png: .*>= 0.*-3"):
        check_instances(np.array([0, -3]), "c.png")
    with pytest.raises(DataError, match=r"^d\.npy: .*integers"):
        check_instances(np.array([1 + 2j]), "d.npy")


def test_check_lists_split_ids_per_file() -> None:
    lab = np.zeros((3, 20), dtype=np.int64)
    for k in range(1, 8):  # ids 1..7 each in two pieces
        lab[0, 2 * k] = k
        lab[2, 2 * k] = k
    with pytest.raises(DataError) as exc:
        check_instances(lab, "instances/x.png")
    msg = _one_line(exc)
    assert msg.startswith("instances/x.png: 7 instance id(s) used by disconnected pieces")
    assert "id 1 (2 pieces)" in msg and "id 5 (2 pieces)" in msg and "and 2 more" in msg
    assert "id 6 (" not in msg


def test_as_instances_errors() -> None:
    assert as_instances(np.array([True, False]), "x").dtype == np.int64
    with pytest.raises(ValueError, match="x must hold integer"):
        as_instances(np.zeros(3), "x")
    with pytest.raises(ValueError, match="1D, 2D or 3D"):
        as_instances(np.zeros((2, 2, 2, 2), dtype=int), "x")


def test_real_dsb_file_with_a_split_nucleus(shared_data: Path) -> None:
    # one shipped DSB nucleus mask is in two pieces (54 px + 15 px): the check says which
    folder = shared_data / "dsb2018-nuclei" / "instances"
    path = next(folder.glob("*1715298975c73548.png"))
    with pytest.raises(DataError) as exc:
        check_instances(read_mask(path), str(path))
    assert "id 12 (2 pieces)" in _one_line(exc)
    clean = next(p for p in sorted(folder.glob("*.png")) if p != path)
    assert check_instances(read_mask(clean), str(clean)).max() > 0


def test_separate_pieces() -> None:
    lab = np.array([[5, 5, 0, 5], [1, 1, 0, 5], [0, 0, 0, 0]])
    out = separate_pieces(lab)
    assert disconnected_ids(out) == {}
    assert len(np.unique(out[out > 0])) == 3  # id 5's two pieces apart, id 1 kept apart
    assert out[0, 0] == out[0, 1] != out[1, 0] and out[0, 3] == out[1, 3] != out[0, 0]
