"""Border weight map against a brute-force computation (all pairwise distances)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from unetkit.train import border_weight_map


def _brute(objects: np.ndarray, w0: float, sigma: float, wc: np.ndarray) -> np.ndarray:
    """w_c + border term on background, d1/d2 from explicit pixel-to-pixel distances."""
    ids = [k for k in np.unique(objects) if k > 0]
    coords = np.argwhere(np.ones(objects.shape, bool))
    dists = np.stack(
        [cdist(coords, np.argwhere(objects == k)).min(axis=1) for k in ids], axis=1
    )  # (n_pixels, n_objects)
    dists.sort(axis=1)
    d1, d2 = dists[:, 0], dists[:, 1]
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)).reshape(objects.shape)
    return wc + np.where(objects > 0, 0.0, border)


def _two_squares() -> np.ndarray:
    m = np.zeros((24, 30), np.int64)
    m[6:16, 4:14] = 1
    m[6:16, 16:26] = 1  # columns 14, 15 form a 2-pixel gap
    return m


def test_two_squares_gap_is_maximal() -> None:
    m = _two_squares()
    w = border_weight_map(m)
    assert w.dtype == np.float32 and w.shape == m.shape
    np.testing.assert_allclose(w, _brute(ndimage.label(m)[0], 10.0, 5.0, 1.0), atol=1e-5)
    # in the gap d1 = 1, d2 = 2: w = 1 + 10 exp(-9 / 50) ~ 9.35, the largest value anywhere
    gap = w[6:16, 14:16]
    assert np.allclose(gap, 1 + 10 * math.exp(-9 / 50), atol=1e-5)
    assert w.max() == pytest.approx(gap.max())
    assert np.all(w[m > 0] == 1.0)  # no border term on objects
    assert w[23, 0] == pytest.approx(1.0, abs=1e-3)  # far from both objects
    # the gap weight approaches w_c + w0 when d1 + d2 << sigma
    assert border_weight_map(m, sigma=100.0)[10, 14] == pytest.approx(11.0, abs=0.01)


def test_balanced_class_weights() -> None:
    m = _two_squares()
    w = border_weight_map(m, class_weights="balanced", w0=0.0)
    n, n_fg = m.size, int(m.sum())
    assert w[0, 0] == pytest.approx(n / (2 * (n - n_fg)))
    assert w[10, 10] == pytest.approx(n / (2 * n_fg))
    # balanced weights give each class the same total weight
    assert w[m > 0].sum() == pytest.approx(w[m == 0].sum(), rel=1e-5)
    w2 = border_weight_map(m, class_weights=(0.5, 2.0))
    assert w2[10, 10] == 2.0 and w2[23, 0] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("shape", [(60,), (20, 22), (9, 10, 11)])
def test_instances_match_brute_force(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    inst = np.zeros(shape, np.int64)
    for k in range(1, 5):
        lo = [rng.integers(0, n - 2) for n in shape]
        sl = tuple(slice(a, a + int(rng.integers(1, 3))) for a in lo)
        inst[sl] = k
    present = np.unique(inst[inst > 0])
    assert present.size >= 2
    w = border_weight_map(inst, from_components=False, w0=7.0, sigma=2.0)
    np.testing.assert_allclose(w, _brute(inst, 7.0, 2.0, 1.0), atol=1e-5)


def test_cutoff_exact_for_distant_objects() -> None:
    # two objects 40 px apart with sigma 3: cropped EDTs must still give the right values
    m = np.zeros((5, 60), np.int64)
    m[2, 5] = 1
    m[2, 45] = 2
    w = border_weight_map(m, from_components=False, sigma=3.0)
    np.testing.assert_allclose(w, _brute(m, 10.0, 3.0, 1.0), atol=1e-5)


def test_touching_instances_and_single_object() -> None:
    inst = np.zeros((8, 8), np.int64)
    inst[2:6, 1:4] = 1
    inst[2:6, 4:7] = 2  # touching: one component, two instances
    assert np.all(border_weight_map(inst) == 1.0)  # one component: no border term
    w = border_weight_map(inst, from_components=False)
    np.testing.assert_allclose(w, _brute(inst, 10.0, 5.0, 1.0), atol=1e-5)
    assert w[1, 3] > 1.0


def test_bad_arguments() -> None:
    m = _two_squares()
    with pytest.raises(ValueError, match="sigma"):
        border_weight_map(m, sigma=0.0)
    with pytest.raises(ValueError, match="w0"):
        border_weight_map(m, w0=-1.0)
    with pytest.raises(ValueError, match="class_weights"):
        border_weight_map(m, class_weights="equal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="instances_or_mask"):
        border_weight_map(m.astype(float))
