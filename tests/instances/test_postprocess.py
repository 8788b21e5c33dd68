"""Seeds + watershed: touching objects come back apart, in 2D and 3D; dtypes and parameters."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.errors import UnetkitError
from unetkit.instances import (
    InstanceParams,
    boundary_target,
    instances_from_class_map,
    instances_from_probabilities,
    label_dtype,
    label_suffix,
    relabel,
)
from unetkit.metrics import instance_scores


def _discs(shape: tuple[int, ...], centres: list[tuple[int, ...]], radius: float) -> np.ndarray:
    """Instance map of balls; where two overlap the pixel goes to the nearer centre."""
    grid = np.indices(shape)
    d = np.stack(
        [np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, cen, strict=True))) for cen in centres]
    )
    lab = np.argmin(d, axis=0) + 1
    lab[d.min(axis=0) > radius] = 0
    return lab


def _one_hot(target: np.ndarray) -> np.ndarray:
    """(3, *spatial) float32 probabilities that put all mass on the target class."""
    return np.moveaxis(np.eye(3, dtype=np.float32)[target], -1, 0)


@pytest.mark.parametrize(
    ("shape", "centres", "radius"),
    [
        ((40, 60), [(20, 15), (20, 27), (20, 39), (8, 50)], 7.0),  # a touching chain of three
        ((24, 24, 30), [(12, 12, 9), (12, 12, 20)], 6.0),  # two touching balls in 3D
    ],
)
def test_ideal_target_gives_back_every_object(
    shape: tuple[int, ...], centres: list[tuple[int, ...]], radius: float
) -> None:
    truth = _discs(shape, centres, radius)
    probs = _one_hot(boundary_target(truth, width=1))
    out = instances_from_probabilities(probs, InstanceParams(min_size=0))
    assert out.dtype == np.uint16
    s = instance_scores(out, truth)
    assert (s.n_pred, s.dsb) == (len(centres), 1.0)
    # whereas connected components of the class map merge the touching ones
    cc = instances_from_class_map((truth > 0).astype(np.int64))
    assert cc.max() < len(centres)


def test_soft_probabilities_with_noise() -> None:
    rng = np.random.default_rng(0)
    truth = _discs((48, 48), [(24, 14), (24, 27), (24, 40)], 6.5)
    probs = _one_hot(boundary_target(truth, width=1)) * 0.7 + 0.1  # soft, still sums to 1
    probs = probs + rng.normal(0, 0.05, probs.shape).astype(np.float32)
    out = instances_from_probabilities(probs)
    assert instance_scores(out, truth).dsb > 0.8
    assert out.max() == 3


def test_foreground_without_seed_is_still_an_object() -> None:
    probs = np.zeros((3, 10, 10), dtype=np.float32)
    probs[0] = 1.0
    probs[:, 2:6, 2:6] = np.array([0.2, 0.4, 0.4])[:, None, None]  # interior 0.4 < seed 0.5
    out = instances_from_probabilities(probs, InstanceParams(min_size=0))
    assert out.max() == 1 and (out > 0).sum() == 16


def test_small_seeds_are_dropped_small_objects_removed() -> None:
    t = np.zeros((12, 20), dtype=np.uint8)
    t[2:10, 2:14] = 2  # one object, border everywhere...
    t[4:8, 3:7] = 1  # ...with a 16 px interior seed
    t[6, 12] = 1  # and a 1 px noise seed
    t[1, 17:19] = 1  # plus a separate 2 px object
    probs = _one_hot(t)
    loose = instances_from_probabilities(probs, InstanceParams(min_seed_size=0, min_size=0))
    assert loose.max() == 3  # the noise seed split the object
    strict = instances_from_probabilities(probs, InstanceParams(min_seed_size=2, min_size=0))
    assert strict.max() == 2
    cleaned = instances_from_probabilities(probs, InstanceParams(min_seed_size=2, min_size=3))
    assert cleaned.max() == 1 and cleaned[1, 17] == 0


def test_given_foreground_replaces_threshold() -> None:
    probs = np.zeros((3, 6, 6), dtype=np.float32)
    probs[0] = 1.0
    probs[:, 1:4, 1:4] = np.array([0.0, 1.0, 0.0])[:, None, None]
    fg = np.zeros((6, 6), dtype=bool)
    fg[1:5, 1:5] = True  # one more row and column than the probabilities say
    out = instances_from_probabilities(probs, InstanceParams(min_size=0), foreground=fg)
    assert (out > 0).sum() == 16 and out.max() == 1


def test_label_dtype() -> None:
    assert label_dtype(0) == np.uint16
    assert label_dtype(65535) == np.uint16
    assert label_dtype(65536) == np.uint32
    assert label_dtype(2**32 - 1) == np.uint32
    with pytest.raises(UnetkitError, match="4294967296 objects do not fit in a 32-bit"):
        label_dtype(2**32)


def test_relabel_order_size_and_wide_dtype() -> None:
    lab = np.array([0, 9, 9, 0, 4, 0, 7, 7, 7])
    np.testing.assert_array_equal(relabel(lab), [0, 3, 3, 0, 1, 0, 2, 2, 2])  # id order kept
    np.testing.assert_array_equal(relabel(lab, min_size=2), [0, 2, 2, 0, 0, 0, 1, 1, 1])
    huge = np.where(lab == 9, 2**40, lab)  # ids far above the pixel count: the sorting path
    np.testing.assert_array_equal(relabel(huge, min_size=2), [0, 2, 2, 0, 0, 0, 1, 1, 1])
    many = np.zeros(2 * 70_000, dtype=np.int64)
    many[::2] = np.arange(1, 70_001)
    out = relabel(many)
    assert out.dtype == np.uint32 and int(out.max()) == 70_000


def test_params_validation_and_round_trip() -> None:
    p = InstanceParams(seed_threshold=0.6, min_size=3)
    assert InstanceParams.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="seed_threshold"):
        InstanceParams(seed_threshold=1.5)
    with pytest.raises(ValueError, match="min_size"):
        InstanceParams(min_size=-1)
    with pytest.raises(ValueError, match="unknown instance parameter"):
        InstanceParams.from_dict({"seed": 0.5})


def test_bad_probabilities() -> None:
    with pytest.raises(ValueError, match=r"\(3, \*spatial\)"):
        instances_from_probabilities(np.zeros((2, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(3, \*spatial\)"):
        instances_from_probabilities(np.zeros((3, 5, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="foreground"):
        instances_from_probabilities(
            np.zeros((3, 5, 5), dtype=np.float32), foreground=np.ones((4, 4), dtype=bool)
        )


def test_relabel_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="negative"):
        relabel(np.array([0, -2, 1]))
    with pytest.raises(ValueError, match="integer"):
        relabel(np.array([0.0, 1.0]))


def test_label_suffix() -> None:
    assert label_suffix(np.zeros(3, dtype=np.uint16)) == ".png"
    assert label_suffix(np.zeros(3, dtype=np.uint32)) == ".tif"


def test_split_distance_cuts_a_merged_pair_at_its_neck() -> None:
    # two discs of radius 6 whose interiors the network merged (no border predicted)
    yy, xx = np.mgrid[:24, :36]
    a = (yy - 12) ** 2 + (xx - 11) ** 2 <= 36
    b = (yy - 12) ** 2 + (xx - 23) ** 2 <= 36
    interior = (a | b).astype(np.float32)
    probs = np.stack([1 - interior, interior, np.zeros_like(interior)])
    merged = instances_from_probabilities(probs, InstanceParams(min_size=0))
    assert merged.max() == 1
    cut = instances_from_probabilities(probs, InstanceParams(min_size=0, split_distance=4))
    assert cut.max() == 2
    assert cut[12, 8] != cut[12, 26] and cut[12, 8] > 0 and cut[12, 26] > 0
    single = instances_from_probabilities(
        np.stack([1 - a, a, np.zeros_like(interior)]).astype(np.float32),
        InstanceParams(min_size=0, split_distance=4),
    )
    assert single.max() == 1  # a round object is not cut
