"""HD95 against a brute-force pairwise computation and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from unetkit.metrics import hd95, surface


def _brute_surface(mask: np.ndarray) -> np.ndarray:
    """Pixels of mask with a face neighbour outside the mask or outside the image."""
    out = np.zeros_like(mask)
    for idx in zip(*np.nonzero(mask), strict=True):
        for ax in range(mask.ndim):
            for step in (-1, 1):
                n = list(idx)
                n[ax] += step
                if not 0 <= n[ax] < mask.shape[ax] or not mask[tuple(n)]:
                    out[idx] = True
    return out


def _brute_hd95(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> float:
    pa = np.argwhere(_brute_surface(a)) * np.asarray(spacing)
    pb = np.argwhere(_brute_surface(b)) * np.asarray(spacing)
    d = cdist(pa, pb)
    return float(np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95))


@pytest.mark.parametrize("shape", [(40,), (12, 15), (6, 7, 8)])
def test_matches_brute_force(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    for _ in range(5):
        a = rng.random(shape) < 0.3
        b = rng.random(shape) < 0.3
        spacing = tuple(rng.uniform(0.5, 2.0, len(shape)))
        np.testing.assert_array_equal(surface(a), _brute_surface(a))
        assert hd95(a, b) == pytest.approx(_brute_hd95(a, b, (1.0,) * len(shape)))
        assert hd95(a, b, spacing) == pytest.approx(_brute_hd95(a, b, spacing))


def test_concentric_discs_radius_difference() -> None:
    yy, xx = np.mgrid[:101, :101] - 50
    r = np.hypot(yy, xx)
    assert hd95(r <= 30, r <= 20) == pytest.approx(10.0, abs=1.0)


def test_shifted_square_and_hausdorff() -> None:
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[5:10, 5:10] = True
    b[5:10, 8:13] = True  # shift by 3 columns
    assert hd95(a, b, percentile=100) == pytest.approx(3.0)
    assert hd95(a, a) == 0.0


def test_1d_hand_case() -> None:
    a = np.array([0, 1, 1, 1, 0, 0, 0, 0], bool)  # surface {1, 3}
    b = np.array([0, 0, 0, 0, 0, 1, 1, 0], bool)  # surface {5, 6}
    # directed: 1->5:4, 3->5:2; 5->3:2, 6->3:3 -> union {4,2,2,3}
    assert hd95(a, b, percentile=100) == 4.0
    assert hd95(a, b, percentile=50) == pytest.approx(2.5)


def test_empty_cases() -> None:
    e = np.zeros((5, 5), bool)
    f = e.copy()
    f[2, 2] = True
    assert np.isnan(hd95(e, e))
    assert hd95(e, f) == np.inf
    assert hd95(f, e) == np.inf


def test_bad_arguments() -> None:
    a = np.ones((3, 3), bool)
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, spacing=(1.0,))
    with pytest.raises(ValueError, match="percentile"):
        hd95(a, a, percentile=120)
    with pytest.raises(ValueError, match="same shape"):
        hd95(a, np.ones((3, 4), bool))
