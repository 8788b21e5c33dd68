"""Tile planning: mirrored indices, coverage, alignment to the pooling grid, weight sums, the
context overlap of ``overlap="auto"``."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.infer.tiling import (
    MARGIN_WEIGHT,
    context_margin,
    gaussian_weights,
    plan_tiles,
    reflect_indices,
    valid_margin,
)
from unetkit.model import UNetConfig
from unetkit.model import sizes as model_sizes
from unetkit.model.sizes import receptive_field

VALID = UNetConfig(widths=(8, 16, 32), padding="valid", norm="none")
SAME = UNetConfig(widths=(8, 16, 32))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10])
@pytest.mark.parametrize("pad", [0, 1, 5, 23])
def test_reflect_indices_match_numpy_pad(n: int, pad: int) -> None:
    data = np.arange(n) * 10 + 3
    expected = np.pad(data, pad, mode="reflect") if n > 1 else np.full(n + 2 * pad, data[0])
    got = data[reflect_indices(np.arange(-pad, n + pad), n)]
    np.testing.assert_array_equal(got, expected)


def test_valid_margin_is_half_the_shrink_for_every_valid_size() -> None:
    m = valid_margin(VALID)
    for n in model_sizes.valid_input_sizes(VALID, 1, 200):
        assert n - model_sizes.output_size(VALID, (n, n))[0] == 2 * m


@pytest.mark.parametrize("tile", [44, 61, 100, "auto", "whole"])
@pytest.mark.parametrize("n", [1, 9, 77, 101])
def test_valid_plan_covers_image_on_pooling_grid(tile: object, n: int) -> None:
    plan = plan_tiles(VALID, (n, n), tile)  # type: ignore[arg-type]
    f = VALID.downsample_factor
    for a in plan.axes:
        assert model_sizes.axis_is_valid(VALID, a.tile_in)
        assert a.tile_out == model_sizes.output_size(VALID, (a.tile_in,) * 2)[0]
        assert all(s % f == 0 for s in a.starts)
        covered = np.zeros(n, bool)
        for s in a.starts:
            covered[s : s + a.tile_out] = True
        assert covered.all()
        # no tile starts beyond the image
        assert max(a.starts) < n


@pytest.mark.parametrize("n", [5, 64, 97, 300])
def test_same_plan_tiles_fit_and_cover(n: int) -> None:
    plan = plan_tiles(SAME, (n, 50), 64, overlap=0.5)
    a = plan.axes[0]
    assert a.tile_in == min(n, 64)
    covered = np.zeros(n, int)
    for s in a.starts:
        covered[s : s + a.tile_out] += 1
    assert (covered >= 1).all()
    if n > 64:
        assert all(s % SAME.downsample_factor == 0 for s in a.starts)
        steps = np.diff(a.starts)
        assert (steps <= 32).all() and (steps > 0).all()  # overlap 0.5 of a 64 tile


def test_weight_sum_is_sum_over_tiles() -> None:
    plan = plan_tiles(SAME, (150, 90), 48, overlap=0.25)
    w = plan.weights()
    brute = np.zeros((150 + 48, 90 + 48))
    for _, tiles in plan.rows():
        for s0, s1 in tiles:
            brute[s0 : s0 + 48, s1 : s1 + 48] += w
    product = np.multiply.outer(plan.axes[0].weight_sum(), plan.axes[1].weight_sum())
    np.testing.assert_allclose(product, brute[:150, :90], rtol=1e-5)
    assert plan.num_tiles == sum(len(t) for _, t in plan.rows())


def test_gaussian_weights_peak_in_the_middle() -> None:
    w = gaussian_weights(64)
    assert w.max() == pytest.approx(1.0, abs=5e-3)
    assert w[0] < 1e-3 and w[0] > 0
    np.testing.assert_allclose(w, w[::-1])


@pytest.mark.parametrize(
    ("tile", "overlap"), [((3, 4, 5), 0.5), (0, 0.5), ("big", 0.5), (64, 1.0), (64, -0.1)]
)
def test_bad_tile_arguments_are_named(tile: object, overlap: float) -> None:
    with pytest.raises(ValueError, match=r"tile|overlap"):
        plan_tiles(SAME, (100, 100), tile, overlap)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [203, 300, 513])
def test_auto_overlap_tiles_step_by_the_context_and_end_at_the_padded_size(n: int) -> None:
    f, c = SAME.downsample_factor, context_margin(SAME)
    assert c % f == 0 and c >= receptive_field(SAME) / 2
    a = plan_tiles(SAME, (n, 50), 100).axes[0]  # overlap "auto" is the default
    assert a.context == c and a.tile_in == 100
    assert all(s % f == 0 for s in a.starts)
    assert a.starts[-1] + 100 == -(-n // f) * f  # ends where whole-image inference pads to
    assert all(d == 100 - 2 * c for d in np.diff(a.starts)[:-1])
    # the tile centres (less the context, except at the image ends) cover every pixel
    covered = np.zeros(n, int)
    for s in a.starts:
        w = a.tile_weights(s)
        covered[s : s + 100][w[: n - s] == 1.0] += 1
    assert (covered >= 1).all()
    assert a.tile_weights(a.starts[1])[0] == MARGIN_WEIGHT
    np.testing.assert_allclose(a.weight_sum(), covered, atol=1e-5)


def test_auto_overlap_batch_weights_differ_only_at_the_image_border() -> None:
    plan = plan_tiles(SAME, (250, 250), 100)
    first, inner = plan.axes[0].starts[0], plan.axes[0].starts[1]
    w = plan.batch_weights([(first, inner), (inner, inner)])  # (2, 1, 100, 100)
    assert w.shape == (2, 1, 100, 100)
    np.testing.assert_array_equal(w[1, 0], plan.weights())
    assert w[0, 0, 0, 50] == 1.0 and w[1, 0, 0, 50] == MARGIN_WEIGHT
    gaussian = plan_tiles(SAME, (250, 250), 100, overlap=0.5)
    assert gaussian.batch_weights([(0, 0), (48, 48)]).shape == (1, 1, 100, 100)


def test_auto_overlap_is_the_gaussian_window_where_tiles_are_small_for_their_context() -> None:
    """Tiles under four context margins would recompute more than overlap 0.5 does."""
    assert 4 * context_margin(SAME) > 64
    small = plan_tiles(SAME, (250, 250), 64)
    assert small.axes[0].context == 0
    assert small.axes[0].starts == plan_tiles(SAME, (250, 250), 64, 0.5).axes[0].starts
    # a short axis that needs no tiling does not count
    assert plan_tiles(SAME, (250, 60), 100).axes[0].context == context_margin(SAME)


@pytest.mark.parametrize("overlap", ["half", 1.0, True, None])
def test_bad_overlap_is_named(overlap: object) -> None:
    with pytest.raises(ValueError, match="overlap: expected 'auto' or a fraction"):
        plan_tiles(SAME, (100, 100), 64, overlap)  # type: ignore[arg-type]
