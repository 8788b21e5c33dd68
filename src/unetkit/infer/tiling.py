"""Tile geometry: where the tiles of an image go, and which input pixels each one reads.

Two strategies, chosen by the model's padding:

* ``valid`` padding, the paper's **overlap-tile** strategy. A valid-mode U-Net maps an input
  of a valid size ``I`` to a centred output of size ``O = I - 2 m``; the margin ``m`` (the
  context one output pixel needs on each side) is the same for every valid ``I``. A tile whose
  output covers ``[s, s + O)`` reads the input window ``[s - m, s + O + m)``, mirrored (reflect)
  where it leaves the image. Output starts are multiples of the model's downsampling factor
  ``f = 2 ** (depth - 1)`` (per axis, ``downsample_factors``, with ``strides``), so every tile
  sees the pooling grid in the same phase as one pass over the whole (mirror-padded) image: the
  stitched result **equals** whole-image inference up to float rounding. The step is the
  largest multiple of ``f`` not above ``O``; where ``O`` is not a multiple of ``f``
  neighbouring tiles overlap by ``O mod f`` pixels with equal values.
* ``same`` padding, ``overlap="auto"`` (the default): **overlap-tile with the model's
  context**. The tile edge ``T`` is rounded down to a multiple of ``f``; the context margin
  ``c`` is half the model's receptive field rounded up to a multiple of ``f``
  (:func:`context_margin`): only outputs within ``c`` of a tile border see the tile's zero
  padding. Tiles step by ``T - 2c`` from 0 and the last one ends at the image size rounded up
  to ``f`` (where whole-image inference pads the image, reading the same mirrored pixels).
  Each output pixel takes the value of the tile whose centre (the tile less its margins)
  covers it; a tile's margins are weighted :data:`MARGIN_WEIGHT` and so count only at the
  image border, where no other tile covers the pixel and the tile's zero padding is the
  image's own. With starts on the pooling grid the stitched result therefore **equals**
  whole-image inference up to float rounding (and ``MARGIN_WEIGHT`` of a neighbour), while
  the network computes ``T / (T - 2c)`` of the pixels per axis (1.23 for a 4-level model at
  ``T = 512``) where the Gaussian window at overlap 0.5 computes 2. Where a tiled axis is
  shorter than :data:`CONTEXT_TILES` context margins (small tiles, deep models, the default
  3D tile) that would cost more than the window, and ``"auto"`` is the window at overlap 0.5.
* ``same`` padding, ``overlap`` a fraction: a **sliding window**. The step is
  ``T (1 - overlap)`` rounded down to a multiple of ``f``, tiles start at ``0, step, 2 step,
  ...`` and the last one reads mirrored input past the far end (its excess output is
  dropped). Tiles are blended with Gaussian weights (``sigma = T / 8`` per axis, peak 1) so
  that pixels near a tile border, which saw zero padding instead of context, count little.
  The agreement with whole-image inference is close but not exact; see the tests for the
  measured tolerance.

Tiles form a Cartesian grid, so the sum of the tile weights at a pixel is the product of
per-axis sums (:meth:`TilePlan.weight_sums`): no full-size weight image is ever needed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from unetkit.model import UNetConfig
from unetkit.model import sizes as model_sizes
from unetkit.model.sizes import receptive_field

TileSpec = int | Sequence[int] | Literal["auto", "whole"]
#: Same-mode overlap: a fraction of the tile (Gaussian blending) or ``"auto"`` (the context).
Overlap = float | Literal["auto"]

# Default tile (input) edge per spatial_dims when neither the user nor the model says.
DEFAULT_TILE = {1: 16384, 2: 512, 3: 128}
GAUSSIAN_SIGMA_SCALE = 1.0 / 8.0
#: ``overlap="auto"`` overlaps same-mode tiles by their context where every tiled axis is at
#: least this many context margins long (the network then computes at most 2x the pixels per
#: axis, as the Gaussian window at overlap 0.5 does), else it is that window.
CONTEXT_TILES = 4
AUTO_FALLBACK_OVERLAP = 0.5
#: Weight of a tile's context margins with ``overlap="auto"``: they decide only pixels no tile
#: centre covers (the image border); elsewhere they shift a value by this share of the
#: difference between two tiles, far below any label decision.
MARGIN_WEIGHT = 1e-6


@dataclass(frozen=True)
class AxisPlan:
    """Tiling of one spatial axis.

    Attributes:
        size: the image length ``N``.
        tile_in: input window length ``I`` of every tile.
        tile_out: output length ``O`` of every tile (``I`` in same mode, ``I - 2 margin`` valid).
        margin: context read beyond the output on each side (0 in same mode).
        starts: output start of each tile in image coordinates (increasing); a tile's output
            ``[s, s + O)`` may run past ``N`` in valid mode (the excess is dropped).
        weights: ``(O,)`` float32 blending weights of one tile along this axis.
        context: same mode with ``overlap="auto"``: the context margin ``c`` of each tile
            end, weighted :data:`MARGIN_WEIGHT` except at the image's own ends (the first
            tile's near end, the last tile's far end: :meth:`tile_weights`); 0 otherwise.
    """

    size: int
    tile_in: int
    tile_out: int
    margin: int
    starts: tuple[int, ...]
    weights: np.ndarray
    context: int = 0

    def tile_weights(self, start: int) -> np.ndarray:
        """``(O,)`` float32 weights of the tile starting at ``start`` along this axis."""
        if self.context == 0 or start not in (self.starts[0], self.starts[-1]):
            return self.weights
        w = self.weights.copy()
        if start == self.starts[0]:
            w[: self.context] = 1.0
        if start == self.starts[-1]:
            w[self.tile_out - self.context :] = 1.0
        return w

    def input_indices(self, start: int) -> np.ndarray | slice:
        """Image indices read by the tile whose output starts at ``start`` (mirrored outside).

        A slice when the window lies inside the image, else an int64 index array.
        """
        lo = start - self.margin
        hi = lo + self.tile_in
        if lo >= 0 and hi <= self.size:
            return slice(lo, hi)
        return reflect_indices(np.arange(lo, hi), self.size)

    def weight_sum(self) -> np.ndarray:
        """``(N,)`` float64: the sum over tiles of this axis' weights at each position."""
        total = np.zeros(max(self.starts) + self.tile_out, np.float64)
        for s in self.starts:
            total[s : s + self.tile_out] += self.tile_weights(s)
        return total[: self.size]


@dataclass(frozen=True)
class TilePlan:
    """The tile grid of one image: one :class:`AxisPlan` per spatial axis."""

    mode: Literal["same", "valid"]
    axes: tuple[AxisPlan, ...]

    @property
    def tile_in(self) -> tuple[int, ...]:
        """Input window shape of every tile."""
        return tuple(a.tile_in for a in self.axes)

    @property
    def tile_out(self) -> tuple[int, ...]:
        """Output shape of every tile."""
        return tuple(a.tile_out for a in self.axes)

    @property
    def num_tiles(self) -> int:
        """Number of tiles (one network input each, before test-time augmentation)."""
        return math.prod(len(a.starts) for a in self.axes)

    def rows(self) -> Iterator[tuple[int, list[tuple[int, ...]]]]:
        """Tiles grouped by their start on axis 0: ``(row_start, [start per axis, ...])``."""
        rest = [a.starts for a in self.axes[1:]]
        for s0 in self.axes[0].starts:
            yield s0, [(s0, *r) for r in itertools.product(*rest)]

    def weights(self, starts: Sequence[int] | None = None) -> np.ndarray:
        """``tile_out``-shaped float32 blending weights (outer product of the axes') of the
        tile at ``starts``, or of an interior tile (``None``; every tile but where
        ``overlap="auto"`` meets the image border, :meth:`AxisPlan.tile_weights`)."""
        w = np.ones((), np.float32)
        for i, a in enumerate(self.axes):
            w = np.multiply.outer(w, a.weights if starts is None else a.tile_weights(starts[i]))
        return w.astype(np.float32)

    def batch_weights(self, tiles: Sequence[Sequence[int]]) -> np.ndarray:
        """Weights of a batch of tiles (their ``starts``), to multiply ``(B, K, *tile_out)``
        outputs with: ``(B, 1, *tile_out)``, or ``(1, 1, *tile_out)`` where all tiles weigh
        alike."""
        if all(a.context == 0 for a in self.axes):
            return self.weights()[None, None]
        return np.stack([self.weights(t) for t in tiles])[:, None]


def reflect_indices(idx: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions into ``[0, n)`` by mirroring at the borders (no edge repeat).

    The same values as ``numpy.pad(..., mode="reflect")``, for pads of any length.
    """
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    r = np.mod(idx, period)
    return np.where(r < n, r, period - r)


def gaussian_weights(length: int) -> np.ndarray:
    """``(length,)`` float32 Gaussian centred on the tile, ``sigma = length / 8``, peak 1."""
    if length == 1:
        return np.ones(1, np.float32)
    x = np.arange(length, dtype=np.float64) - (length - 1) / 2.0
    sigma = max(length * GAUSSIAN_SIGMA_SCALE, 1e-3)
    return np.exp(-0.5 * (x / sigma) ** 2).astype(np.float32)


def valid_margin(config: UNetConfig, axis: int = 0) -> int:
    """Context ``m`` a valid-mode model reads on each side of its output along ``axis``,
    ``(I - O) / 2`` (the same on every axis unless the model is anisotropic)."""
    low = [_valid_sizes(config, 1, a)[0] for a in range(config.spatial_dims)]
    return (low[axis] - model_sizes.output_size(config, low)[axis]) // 2


def _valid_sizes(config: UNetConfig, at_least: int, axis: int = 0) -> list[int]:
    """Valid input sizes along ``axis`` from ``at_least`` upward (a few downsampling periods)."""
    step = config.downsample_factors[axis]
    found = model_sizes.valid_input_sizes(config, at_least, at_least + 4 * step + 512, axis)
    if not found:  # pragma: no cover - the size arithmetic always has a periodic solution
        raise ValueError(f"model: no valid input size found at or above {at_least}")
    return found


def _valid_input_for_output(config: UNetConfig, out_at_least: int, margin: int, axis: int) -> int:
    """Smallest valid input size along ``axis`` whose output is at least ``out_at_least``."""
    n = max(out_at_least + 2 * margin, 1)
    return _valid_sizes(config, n, axis)[0]


def _tile_request(tile: TileSpec, defaults: Sequence[int]) -> list[int | None]:
    """Requested tile edge per axis; ``None`` means the whole axis."""
    d = len(defaults)
    if tile == "whole":
        return [None] * d
    if tile == "auto":
        return list(defaults)
    if isinstance(tile, str):
        raise ValueError(f"tile: expected 'auto', 'whole' or positive sizes, got {tile!r}")
    values = [int(tile)] * d if isinstance(tile, int | np.integer) else [int(t) for t in tile]
    if len(values) == 1:
        values *= d
    if len(values) != d or any(v < 1 for v in values):
        raise ValueError(
            f"tile: expected one positive size or {d} (one per spatial axis), got {tile!r}"
        )
    return list(values)


def plan_tiles(
    config: UNetConfig,
    spatial: Sequence[int],
    tile: TileSpec = "auto",
    overlap: Overlap = "auto",
    default_tile: int | Sequence[int] | None = None,
) -> TilePlan:
    """Plan the tiles of an image of spatial shape ``spatial`` for a model with ``config``.

    Args:
        config: the model's config (``padding`` picks the strategy, see the module doc).
        spatial: the image's spatial shape ``(N_0, ..., N_{d-1})``.
        tile: input edge per axis (a valid-mode size is rounded down to a valid input size,
            or up to the smallest one), ``"auto"`` for ``default_tile``, or ``"whole"`` for one
            tile over the whole image (whole-image inference).
        overlap: same mode: ``"auto"`` (overlap by the model's context, seam-free) or the
            fraction of a tile shared with its neighbour, in ``[0, 1)`` (Gaussian blending);
            valid mode needs no overlap and ignores it.
        default_tile: edge(s) used by ``"auto"``; ``None`` uses :data:`DEFAULT_TILE`.

    Returns:
        A :class:`TilePlan`; tiles never exceed what the image needs (a short axis gets a
        shorter tile).
    """
    d = config.spatial_dims
    spatial = tuple(int(n) for n in spatial)
    if len(spatial) != d or any(n < 1 for n in spatial):
        raise ValueError(f"image: expected {d} positive spatial sizes, got {spatial}")
    check_overlap(overlap)
    if default_tile is None:
        defaults: list[int] = [DEFAULT_TILE[d]] * d
    elif isinstance(default_tile, int):
        defaults = [int(default_tile)] * d
    else:
        defaults = [int(t) for t in default_tile]
    if len(defaults) == 1:
        defaults *= d
    if len(defaults) != d or any(t < 1 for t in defaults):
        raise ValueError(f"default_tile: expected {d} positive sizes, got {default_tile!r}")
    requests = _tile_request(tile, defaults)
    if config.padding == "valid":
        axes = tuple(
            _plan_valid_axis(config, n, r, a)
            for a, (n, r) in enumerate(zip(spatial, requests, strict=True))
        )
        return TilePlan("valid", axes)
    factors = config.downsample_factors
    if overlap == "auto":
        contexts = [context_margin(config, a) for a in range(d)]
        if all(
            r is None or r >= n or r // f * f >= CONTEXT_TILES * c
            for n, r, f, c in zip(spatial, requests, factors, contexts, strict=True)
        ):
            return TilePlan(
                "same",
                tuple(
                    _plan_context_axis(n, r, f, c)
                    for n, r, f, c in zip(spatial, requests, factors, contexts, strict=True)
                ),
            )
        overlap = AUTO_FALLBACK_OVERLAP  # tiles too small for their context (module doc)
    axes = tuple(
        _plan_same_axis(n, r, float(overlap), f)
        for n, r, f in zip(spatial, requests, factors, strict=True)
    )
    return TilePlan("same", axes)


def check_overlap(overlap: object) -> Overlap:
    """``overlap`` if it is ``"auto"`` or a fraction in ``[0, 1)``, else ``ValueError``."""
    if overlap == "auto":
        return "auto"
    if isinstance(overlap, bool) or not isinstance(overlap, int | float):
        raise ValueError(f"overlap: expected 'auto' or a fraction in [0, 1), got {overlap!r}")
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(f"overlap: expected 'auto' or a fraction in [0, 1), got {overlap!r}")
    return float(overlap)


def context_margin(config: UNetConfig, axis: int = 0) -> int:
    """Outputs within this many pixels of a same-mode tile's border see its zero padding:
    half the receptive field along ``axis``, rounded up to the downsampling factor."""
    f = config.downsample_factors[axis]
    half = math.ceil(receptive_field(config, axis) / 2)
    return -(-half // f) * f


def _whole_axis(n: int) -> AxisPlan:
    ones = np.ones(n, np.float32)
    return AxisPlan(size=n, tile_in=n, tile_out=n, margin=0, starts=(0,), weights=ones)


def _plan_context_axis(n: int, request: int | None, factor: int, context: int) -> AxisPlan:
    """Same mode, ``overlap="auto"``: tiles overlap by twice the context (module doc)."""
    if request is None or request >= n:
        return _whole_axis(n)
    t = max(2 * context + factor, (request // factor) * factor)
    if t >= n:
        return _whole_axis(n)
    padded = -(-n // factor) * factor  # whole-image inference pads the axis to this
    step = t - 2 * context
    starts = [0]
    while starts[-1] + t < padded:
        starts.append(min(starts[-1] + step, padded - t))
    weights = np.ones(t, np.float32)
    weights[:context] = weights[t - context :] = MARGIN_WEIGHT
    return AxisPlan(
        size=n,
        tile_in=t,
        tile_out=t,
        margin=0,
        starts=tuple(starts),
        weights=weights,
        context=context,
    )


def _plan_same_axis(n: int, request: int | None, overlap: float, factor: int) -> AxisPlan:
    if request is None or request >= n:
        return _whole_axis(n)
    t = max(factor, (request // factor) * factor)
    if t >= n:
        return _whole_axis(n)
    step = max(factor, int(t * (1.0 - overlap)) // factor * factor)
    count = 1 + math.ceil((n - t) / step)
    starts = tuple(i * step for i in range(count))
    return AxisPlan(
        size=n, tile_in=t, tile_out=t, margin=0, starts=starts, weights=gaussian_weights(t)
    )


def _plan_valid_axis(config: UNetConfig, n: int, request: int | None, axis: int) -> AxisPlan:
    f = config.downsample_factors[axis]
    m = valid_margin(config, axis)
    smallest_useful = _valid_input_for_output(config, f, m, axis)  # step needs an output >= f
    whole = _valid_input_for_output(config, n, m, axis)  # one tile covering the axis
    if request is None:
        tile_in = max(whole, smallest_useful)
    else:
        below = model_sizes.nearest_valid_sizes(config, request, axis)[0]
        tile_in = max(below or smallest_useful, smallest_useful)
        tile_in = min(tile_in, max(whole, smallest_useful))
    tile_out = tile_in - 2 * m
    step = (tile_out // f) * f
    count = 1 + math.ceil(max(0, n - tile_out) / step)
    starts = tuple(i * step for i in range(count))
    return AxisPlan(
        size=n,
        tile_in=tile_in,
        tile_out=tile_out,
        margin=m,
        starts=starts,
        weights=np.ones(tile_out, np.float32),
    )
