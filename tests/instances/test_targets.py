"""The boundary and distance targets on hand-drawn objects, 1D/2D/3D."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.instances import (
    BACKGROUND,
    BORDER,
    INTERIOR,
    border_pixels,
    boundary_target,
    distance_target,
    instances_from_mask,
)
from unetkit.instances.targets import ball


def _touching_pair() -> np.ndarray:
    """6 x 10: object 1 in columns 1-4, object 2 in columns 5-8 (touching), rows 1-4."""
    lab = np.zeros((6, 10), dtype=np.int64)
    lab[1:5, 1:5] = 1
    lab[1:5, 5:9] = 2
    return lab


def test_touching_border_width_1() -> None:
    t = boundary_target(_touching_pair(), width=1)
    b, i, o = BACKGROUND, INTERIOR, BORDER
    row = [b, i, i, i, o, o, i, i, i, b]  # only the two contact columns 4 and 5
    expected = np.array([[b] * 10, row, row, row, row, [b] * 10])
    np.testing.assert_array_equal(t, expected)
    assert t.dtype == np.uint8


def test_touching_border_width_2() -> None:
    t = boundary_target(_touching_pair(), width=2)
    # columns 3..6 are within 2 px of the other object; column 2 is 3 px from column 5
    assert (t[1:5, 3:7] == BORDER).all()
    assert (t[1:5, [1, 2, 7, 8]] == INTERIOR).all()


def test_isolated_object_is_all_interior_and_image_edge_is_no_border() -> None:
    lab = np.zeros((5, 5), dtype=np.int64)
    lab[:3, :3] = 4  # touches the image edge
    t = boundary_target(lab, width=2)
    assert (t[:3, :3] == INTERIOR).all()
    assert (t[lab == 0] == BACKGROUND).all()


def test_contour_rings_every_object() -> None:
    lab = np.zeros((7, 7), dtype=np.int64)
    lab[1:6, 1:6] = 1
    t = boundary_target(lab, width=1, border="contour")
    ring = np.zeros((7, 7), dtype=bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False
    np.testing.assert_array_equal(t == BORDER, ring)
    assert (t[2:5, 2:5] == INTERIOR).all()


def test_3d_contact_face() -> None:
    lab = np.zeros((4, 4, 6), dtype=np.int64)
    lab[:, :, :3] = 1
    lab[:, :, 3:] = 2
    t = boundary_target(lab, width=1)
    assert (t[..., 2:4] == BORDER).all()
    assert (t[..., [0, 1, 4, 5]] == INTERIOR).all()


def test_1d() -> None:
    lab = np.array([0, 1, 1, 1, 2, 2, 2, 0, 3, 3])
    np.testing.assert_array_equal(boundary_target(lab, width=1), [0, 1, 1, 2, 2, 1, 1, 0, 1, 1])
    # the default width 2: two pixels on each side of the contact, and across the one-pixel gap
    # between objects 2 and 3 (pixels 6 and 8 are 2 apart) each side gets a border too
    np.testing.assert_array_equal(boundary_target(lab), [0, 1, 2, 2, 2, 2, 2, 0, 2, 1])


def test_three_objects_meeting() -> None:
    # ids above and below the pixel's own id are both seen (max and min filters)
    lab = np.array([[3, 3, 1, 1], [3, 3, 1, 1], [2, 2, 2, 2]])
    # corners (0, 0) and (0, 3) see only their own object within 1 px; everything else touches
    expected = np.ones((3, 4), dtype=bool)
    expected[0, [0, 3]] = False
    np.testing.assert_array_equal(border_pixels(lab, width=1), expected)


def test_ball_footprint() -> None:
    assert ball(2, 1).sum() == 5  # the cross
    assert ball(2, 2).sum() == 13
    assert ball(3, 1).sum() == 7


def test_instances_from_mask_per_class() -> None:
    mask = np.array([[1, 1, 2, 2, 0, 1], [1, 1, 2, 2, 0, 1]])
    inst = instances_from_mask(mask)
    # class 1 left block, class 2 block, class 1 right column: three objects
    assert len(np.unique(inst[inst > 0])) == 3
    assert inst[0, 0] != inst[0, 2] and inst[0, 0] != inst[0, 5]
    same_class = np.array([[1, 1, 1, 1]])
    assert instances_from_mask(same_class).max() == 1  # touching objects of one class merge


def test_distance_target_square() -> None:
    lab = np.zeros((7, 7), dtype=np.int64)
    lab[1:6, 1:6] = 1
    d = distance_target(lab)
    # edge layer 1, next ring 2, centre 3 -> divided by the peak 3
    assert d[3, 3] == pytest.approx(1.0)
    assert d[2, 3] == pytest.approx(2 / 3)
    assert d[1, 3] == pytest.approx(1 / 3)
    assert d[0, 0] == 0.0 and d.dtype == np.float32


def test_distance_target_touching_objects_each_peak_at_one() -> None:
    lab = _touching_pair()
    d = distance_target(lab)
    for k in (1, 2):
        assert d[lab == k].max() == pytest.approx(1.0)
    # each 4x4 object: its whole perimeter (the contact column too) is edge layer (1), the
    # inner 2x2 is 1 px from it (2) -> 1/2 on the edge, 1 inside, for both objects alike
    assert d[2, 4] == pytest.approx(0.5) and d[2, 5] == pytest.approx(0.5)
    assert d[2, 3] == pytest.approx(1.0) and d[2, 6] == pytest.approx(1.0)
    assert np.all(d[lab == 0] == 0)


def test_empty_and_bad_input() -> None:
    z = np.zeros((4, 4), dtype=np.int64)
    assert (boundary_target(z) == 0).all()
    assert (distance_target(z) == 0).all()
    with pytest.raises(ValueError, match="width"):
        boundary_target(_touching_pair(), width=0)
    with pytest.raises(ValueError, match="border"):
        boundary_target(_touching_pair(), border="ring")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer"):
        boundary_target(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="negative"):
        boundary_target(np.array([[-1, 0]]))


def test_weight_map_on_interiors_weighs_the_contact() -> None:
    # touching truth has no background between objects, so the weight map's border term
    # (background only) misses the contact; on the interiors it lands on the border pixels
    from unetkit.train import border_weight_map

    lab = np.zeros((12, 20), dtype=np.int64)
    lab[2:10, 2:10] = 1
    lab[2:10, 10:18] = 2
    target = boundary_target(lab)
    plain = border_weight_map(lab, from_components=False)
    assert plain[5, 9] == plain[5, 5] == 1.0  # contact and interior weigh the same
    interiors = np.where(target == INTERIOR, lab, 0)
    w = border_weight_map(interiors, from_components=False)
    assert (w[target == BORDER] > 5.0).all()  # w0 = 10, sigma 5: the 4-px gap weighs ~ 1 + 7
    assert (w[target == INTERIOR] == 1.0).all()
