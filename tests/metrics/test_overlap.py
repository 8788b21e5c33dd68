"""Overlap metrics against hand-derived values and a direct per-pixel count."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.metrics import (
    confusion_matrix,
    dice,
    dice_from_confusion,
    iou,
    pixel_error,
)


def test_confusion_matches_direct_count() -> None:
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, size=(7, 9))
    truth = rng.integers(0, 4, size=(7, 9))
    truth[0, :] = 255
    conf = confusion_matrix(pred, truth, 4, ignore_index=255)
    expected = np.zeros((4, 4), dtype=np.int64)
    for p, t in zip(pred.ravel(), truth.ravel(), strict=True):
        if t != 255:
            expected[t, p] += 1
    np.testing.assert_array_equal(conf, expected)


def test_dice_of_half_overlapping_squares() -> None:
    # two 4x4 squares shifted by 2 columns: overlap 8 px, each 16 px
    truth = np.zeros((8, 10), dtype=np.int64)
    pred = np.zeros_like(truth)
    truth[2:6, 2:6] = 1
    pred[2:6, 4:8] = 1
    d = dice(pred, truth, 2)
    assert d[1] == pytest.approx(2 * 8 / (16 + 16))
    assert iou(pred, truth, 2)[1] == pytest.approx(8 / 24)
    # background: 80 - 24 = 56 px agree; 64 in each map
    assert d[0] == pytest.approx(2 * 56 / (64 + 64))
    assert pixel_error(pred, truth, 2) == pytest.approx(16 / 80)


def test_absent_class_nan_and_one_sided_zero() -> None:
    truth = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 2])
    d = dice(pred, truth, 4)
    assert np.isnan(d[3])  # absent from both
    assert d[2] == 0.0  # predicted only
    assert d[1] == pytest.approx(2 / 3)


def test_ignore_index_excluded() -> None:
    truth = np.array([[1, 1, 9], [0, 0, 9]])
    pred = np.array([[1, 1, 0], [0, 0, 1]])
    assert pixel_error(pred, truth, 2, ignore_index=9) == 0.0
    np.testing.assert_allclose(dice(pred, truth, 2, ignore_index=9), [1.0, 1.0])


def test_single_class_perfect() -> None:
    assert iou(np.zeros(3, np.int64), np.zeros(3, np.int64), 1)[0] == 1.0


def test_dice_iou_relation_random() -> None:
    rng = np.random.default_rng(1)
    conf = confusion_matrix(rng.integers(0, 3, 200), rng.integers(0, 3, 200), 3)
    d = dice_from_confusion(conf)
    # identity: Dice = 2 J / (1 + J)
    jj = np.diag(conf) / (conf.sum(0) + conf.sum(1) - np.diag(conf))
    np.testing.assert_allclose(d, 2 * jj / (1 + jj))


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2, "ignore_index": 1.5}, "ignore_index"),
    ],
)
def test_bad_arguments(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        confusion_matrix(np.zeros(3, int), np.zeros(3, int), **kwargs)


def test_out_of_range_labels_and_shapes() -> None:
    with pytest.raises(ValueError, match="pred"):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(np.zeros(3, int), np.zeros(4, int), 2)
