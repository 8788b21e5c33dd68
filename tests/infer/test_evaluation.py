"""Evaluation orchestration: pairing files, 0/255 masks, the automatic Rand error rule."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.errors import DataError
from unetkit.infer.evaluation import evaluate_folders, median_half_width, resolve_boundary_class
from unetkit.io.images import write_mask


def _membranes(n: int = 64, width: int = 3) -> np.ndarray:
    m = np.zeros((n, n), np.int64)
    for c in range(8, n, 16):
        m[:, c : c + width] = 1
        m[c : c + width, :] = 1
    return m


def test_median_half_width_of_a_stripe() -> None:
    stripe = np.zeros((40, 40), np.int64)
    stripe[:, 10:15] = 1  # 5 wide: distances 1, 2, 3, 2, 1 -> median 2
    assert median_half_width([stripe], 1) == 2.0
    assert median_half_width([np.zeros((4, 4), np.int64)], 1) == float("inf")


def test_auto_boundary_class_only_for_thin_binary_foreground() -> None:
    assert resolve_boundary_class("auto", [_membranes()], 2)[0] == 1
    blobs = np.zeros((64, 64), np.int64)
    blobs[10:40, 10:40] = 1
    assert resolve_boundary_class("auto", [blobs], 2)[0] is None
    assert resolve_boundary_class("auto", [_membranes()], 3)[0] is None
    assert resolve_boundary_class(None, [_membranes()], 2)[0] is None
    assert resolve_boundary_class(0, [blobs], 2)[0] == 0
    with pytest.raises(ValueError, match="boundary-class"):
        resolve_boundary_class(5, [blobs], 2)


def test_folders_pair_by_stem_and_read_255_masks(tmp_path) -> None:
    truth = _membranes()
    pred = truth.copy()
    pred[:, 30] = 1  # an extra membrane splits segments: Rand error > 0, Dice < 1
    (tmp_path / "t" / "masks").mkdir(parents=True)
    (tmp_path / "p").mkdir()
    write_mask(tmp_path / "t" / "masks" / "a.png", truth * 255)
    write_mask(tmp_path / "p" / "a.png", pred)
    ev = evaluate_folders(tmp_path / "p", tmp_path / "t")
    assert ev.num_classes == 2 and ev.boundary_class == 1
    r = ev.report.per_image[0]
    tp = np.sum((pred == 1) & (truth == 1))
    expected_dice = 2 * tp / (np.sum(pred == 1) + np.sum(truth == 1))
    assert r.dice[1] == pytest.approx(expected_dice)
    assert r.rand_error is not None and 0 < r.rand_error < 1
    data = ev.to_json_dict()
    assert set(data) >= {"mean", "per_class", "per_image", "settings"}


def test_missing_prediction_is_named(tmp_path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "p").mkdir()
    write_mask(tmp_path / "t" / "a.png", _membranes())
    write_mask(tmp_path / "t" / "b.png", _membranes())
    write_mask(tmp_path / "p" / "a.png", _membranes())
    with pytest.raises(DataError, match=r"no prediction for 1 of 2 truth mask.*: b"):
        evaluate_folders(tmp_path / "p", tmp_path / "t")


def test_ignore_index_pixels_do_not_count(tmp_path) -> None:
    truth = np.zeros((20, 20), np.int64)
    truth[5:15, 5:15] = 1
    truth[:, :3] = 3  # void
    pred = truth.copy()
    pred[:, :3] = 1  # wrong only where void
    pred[pred == 3] = 0
    (tmp_path / "t").mkdir()
    (tmp_path / "p").mkdir()
    write_mask(tmp_path / "t" / "a.png", truth)
    write_mask(tmp_path / "p" / "a.png", pred)
    ev = evaluate_folders(tmp_path / "p", tmp_path / "t", num_classes=4, ignore_index=3)
    assert ev.report.per_image[0].pixel_error == 0.0
    assert ev.report.per_image[0].dice[1] == pytest.approx(1.0)
