"""Adapted Rand error against scikit-image and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import adapted_rand_error as sk_are

from unetkit.metrics import adapted_rand_error, foreground_segments, rand_error


def _singletons(seg: np.ndarray) -> np.ndarray:
    """Give every 0 pixel its own fresh id, so skimage treats it as a singleton segment."""
    out = seg.copy()
    zeros = out == 0
    out[zeros] = out.max() + 1 + np.arange(int(zeros.sum()))
    return out


def _membranes(rng: np.random.Generator, shape: tuple[int, ...], p: float) -> np.ndarray:
    """Random label map: 1 = membrane with probability p, else 0 = interior."""
    return (rng.random(shape) < p).astype(np.int64)


def test_identical_is_zero() -> None:
    rng = np.random.default_rng(0)
    lm = _membranes(rng, (32, 32), 0.4)
    assert rand_error(lm, lm, boundary_class=1) == 0.0


@pytest.mark.parametrize("shape", [(300,), (40, 50), (10, 12, 14)])
def test_agrees_with_skimage_random(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        truth = _membranes(rng, shape, 0.45)
        pred = _membranes(rng, shape, 0.45)
        t_seg, _ = ndimage.label(truth == 0)
        p_seg, _ = ndimage.label(pred == 0)
        ref_segment = sk_are(t_seg, p_seg)[0]
        ref_single = sk_are(t_seg, _singletons(p_seg))[0]
        ours_segment = rand_error(pred, truth, boundary_class=1, pred_background="segment")
        ours_single = rand_error(pred, truth, boundary_class=1)
        assert ours_segment == pytest.approx(ref_segment, abs=1e-12)
        assert ours_single == pytest.approx(ref_single, abs=1e-12)


def test_segment_maps_agree_with_skimage() -> None:
    rng = np.random.default_rng(5)
    t = rng.integers(0, 6, size=(30, 30))
    p = rng.integers(0, 9, size=(30, 30))
    ours = adapted_rand_error(p, t, pred_background="segment")
    assert ours == pytest.approx(sk_are(t, p)[0], abs=1e-12)


def test_hand_split_and_merge() -> None:
    # truth: one segment of 4 px; prediction splits it 2+2
    t = np.array([1, 1, 1, 1])
    p = np.array([1, 1, 2, 2])
    # ordered pairs: truth 4*3=12, pred 2*1+2*1=4, joint 4 -> F = 2*4/(12+4)
    assert adapted_rand_error(p, t) == pytest.approx(1 - 8 / 16)
    # merge: truth 2+2, prediction one segment: symmetric, same error
    assert adapted_rand_error(t, p) == pytest.approx(1 - 8 / 16)


def test_boundary_class_and_ignore() -> None:
    # ISBI: class 1 = membrane separates cells (class 0)
    truth = np.array([[0, 0, 1, 0, 0]])
    merged = np.array([[0, 0, 0, 0, 0]])  # membrane missed: two cells merged
    assert rand_error(truth, truth, boundary_class=1) == 0.0
    # truth segments {a,a},{b,b}: pairs 2+2=4; pred one segment over 4 counted px: 12; joint 4
    assert rand_error(merged, truth, boundary_class=1) == pytest.approx(1 - 8 / 16)
    # ignoring the right cell leaves a single truth cell, which the prediction covers
    truth_ign = np.array([[0, 0, 1, 7, 7]])
    assert rand_error(merged, truth_ign, boundary_class=1, ignore_index=7) == 0.0


def test_predicted_membrane_inside_cell_is_singleton() -> None:
    truth = np.array([0, 0, 0, 0])
    pred = np.array([0, 1, 0, 0])  # a spurious membrane pixel splits the cell 1+2
    # truth pairs 12; pred segments {0},{2,3} (+singleton 1): pairs 2; joint 2
    assert rand_error(pred, truth, boundary_class=1) == pytest.approx(1 - 4 / 14)


def test_foreground_segments_connectivity() -> None:
    lm = np.array([[0, 1], [1, 0]])
    assert foreground_segments(lm, 1).max() == 2
    assert foreground_segments(lm, 1, connectivity=2).max() == 1
    with pytest.raises(ValueError, match="connectivity"):
        foreground_segments(lm, 1, connectivity=3)


def test_bad_arguments() -> None:
    a = np.zeros((3, 3), np.int64)
    with pytest.raises(ValueError, match="pred_background"):
        adapted_rand_error(a, a, pred_background="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="boundary_class"):
        rand_error(a, a, boundary_class=None)  # type: ignore[arg-type]


def test_large_image_runs_on_sparse_table() -> None:
    rng = np.random.default_rng(3)
    truth = _membranes(rng, (1024, 1024), 0.5)
    pred = truth.copy()
    pred[rng.random(pred.shape) < 0.01] ^= 1
    err = rand_error(pred, truth, boundary_class=1)
    t_seg, _ = ndimage.label(truth == 0)
    p_seg, _ = ndimage.label(pred == 0)
    assert err == pytest.approx(sk_are(t_seg, _singletons(p_seg))[0], abs=1e-9)
