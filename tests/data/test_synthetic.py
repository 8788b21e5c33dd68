"""The synthetic dataset: shapes, determinism, touching objects, consistent instance ids."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.synthetic import make_synthetic


def _touching_pairs(inst: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for axis in range(inst.ndim):
        a = np.moveaxis(inst, axis, 0)
        left, right = a[1:], a[:-1]
        sel = (left != right) & (left > 0) & (right > 0)
        found = zip(left[sel].tolist(), right[sel].tolist(), strict=True)
        pairs |= {tuple(sorted(p)) for p in found}
    return pairs


@pytest.mark.parametrize(("dims", "size"), [(1, 128), (2, 64), (3, 24)])
def test_shapes_dtypes_and_consistency(dims: int, size: int) -> None:
    samples = make_synthetic(3, spatial_dims=dims, size=size, seed=5)
    for s in samples:
        assert s.image.shape == (1,) + (size,) * dims and s.image.dtype == np.float32
        assert s.mask.shape == (size,) * dims and s.mask.dtype == np.int64
        assert set(np.unique(s.mask)) <= {0, 1}
        assert np.array_equal(s.mask, (s.instances > 0).astype(np.int64))
        ids = np.unique(s.instances[s.instances > 0])
        assert ids.tolist() == list(range(1, ids.size + 1))  # ids 1..k, no gaps
        assert np.isfinite(s.image).all()


def test_deterministic_by_seed_and_independent_of_n() -> None:
    a = make_synthetic(3, seed=7, size=48)
    b = make_synthetic(5, seed=7, size=48)
    c = make_synthetic(3, seed=8, size=48)
    for x, y in zip(a, b[:3], strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.instances, y.instances)
    assert not np.array_equal(a[0].image, c[0].image)


def test_has_touching_objects_with_a_darker_seam() -> None:
    samples = make_synthetic(10, seed=0)
    touching = [_touching_pairs(s.instances) for s in samples]
    assert sum(bool(t) for t in touching) >= 8
    # pixels on a boundary between two objects are darker than object interiors
    s = samples[int(np.argmax([len(t) for t in touching]))]
    inst = s.instances
    seam = np.zeros(inst.shape, bool)
    for axis in range(2):
        a, o = np.moveaxis(inst, axis, 0), np.moveaxis(seam, axis, 0)
        edge = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        o[1:] |= edge
        o[:-1] |= edge
    assert s.image[0][seam].mean() < s.image[0][(inst > 0) & ~seam].mean()


def test_objects_contrasted_but_not_globally_thresholdable() -> None:
    samples = make_synthetic(10, seed=1)
    fg = np.concatenate([s.image[0][s.mask == 1] for s in samples])
    bg = np.concatenate([s.image[0][s.mask == 0] for s in samples])
    assert fg.mean() - bg.mean() > 0.25
    best = max(
        np.mean(
            [
                2
                * ((s.image[0] > t) & (s.mask == 1)).sum()
                / ((s.image[0] > t).sum() + s.mask.sum())
                for s in samples
            ]
        )
        for t in np.linspace(0, 1, 41)
    )
    assert best < 0.9  # a global threshold is not enough
    shares = [s.mask.mean() for s in samples]
    assert 0.1 < np.mean(shares) < 0.5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="spatial_dims"):
        make_synthetic(1, spatial_dims=4)
    with pytest.raises(ValueError, match="size"):
        make_synthetic(1, size=(32, 32, 32))
    with pytest.raises(ValueError, match="n"):
        make_synthetic(-1)
