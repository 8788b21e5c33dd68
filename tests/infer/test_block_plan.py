"""Block planning of out-of-core prediction: every tile computed once, planned memory within
the budget whatever the image size, and the overhang carried between blocks (also across
processes) giving the in-memory labels."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.infer.block_cases import small_model, smooth_image
from unetkit.infer import Normalization, PredictOptions, predict_array
from unetkit.infer.block_plan import block_bytes, block_edges, min_steps, plan_blocks
from unetkit.infer.blockwise import choose_block, predict_blockwise
from unetkit.infer.distributed import Context
from unetkit.infer.lazy_image import open_lazy
from unetkit.infer.tiling import plan_tiles
from unetkit.memory import predict_estimate
from unetkit.model import UNetConfig, create_model

zarr = pytest.importorskip("zarr")




def _zarr(path: Path, array: np.ndarray) -> Path:
    chunks = tuple(max(1, n // 3) for n in array.shape)
    z = zarr.open_array(str(path), mode="w", shape=array.shape, chunks=chunks, dtype=array.dtype)
    z[...] = array
    return path


def _labels(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(path), mode="r")["labels/prediction/0"][...])


def _steps(plan, edges):  # type: ignore[no-untyped-def]
    return [
        1 if len(a.starts) == 1 else e // (a.starts[1] - a.starts[0])
        for a, e in zip(plan.axes, edges, strict=True)
    ]


@pytest.mark.parametrize(
    ("preset", "tile", "shapes"),
    [
        ("unet3d_small", 96, [(192, 512, 512), (192, 1024, 1024), (512, 2048, 2048),
                              (2048, 8192, 8192)]),
        ("unet2d_small", 512, [(4096, 4096), (32768, 32768), (262144, 262144)]),
    ],
)  # fmt: skip
def test_planned_memory_stays_within_budget_whatever_the_size(
    preset: str, tile: int, shapes: list[tuple[int, ...]]
) -> None:
    cfg = create_model(preset, widths=(4, 8)).config
    budget = 640 * 2**20
    seen = set()
    for shape in shapes:
        plan = plan_tiles(cfg, shape, tile, 0.25)
        edges, batch = choose_block(plan, cfg, np.dtype(np.uint8), True, 4, memory=budget)
        network = predict_estimate(cfg, plan.tile_in, batch).total
        planned = block_bytes(
            plan,
            _steps(plan, edges),
            in_channels=1,
            out_channels=cfg.out_channels,
            itemsize=1,
            probabilities=True,
        )
        assert network <= budget * 3 // 4 or batch == 1
        assert network + planned <= budget
        seen.add(edges)
        blocks = plan_blocks(plan, edges)
        # every tile belongs to exactly one block: no tile is computed twice
        assert sum(math.prod(len(s) for s in b.starts) for b in blocks) == plan.num_tiles
    assert len(seen) == 1  # the block does not grow with the image


@pytest.mark.parametrize("overlap", [0.25, 0.5, 0.75])
def test_blocks_partition_the_output_and_overhang_reaches_only_the_next_block(
    overlap: float,
) -> None:
    cfg = small_model(spatial_dims=3).config
    plan = plan_tiles(cfg, (40, 70, 53), 16, overlap)
    blocks = plan_blocks(plan, 8)
    cover = np.zeros((40, 70, 53), np.int32)
    for b in blocks:
        cover[b.region] += 1
        for a, (lo, hi), r, axis in zip(plan.axes, b.out, b.reach, range(3), strict=True):
            assert len(b.starts[axis]) >= min(min_steps(a), len(a.starts)) or hi == a.size
            later = [o for o in blocks if o.grid[axis] == b.grid[axis] + 1]
            if r > hi:  # the overhang lies inside the next block along this axis
                assert later and all(r <= o.out[axis][1] for o in later)
            assert lo == b.starts[axis][0]
    assert (cover == 1).all()


@pytest.mark.parametrize(
    ("kw", "shape", "tile", "overlap", "memory"),
    [
        ({"padding": "same", "spatial_dims": 3, "out_channels": 3}, (26, 41, 33), 16, 0.75, 1),
        ({"padding": "same", "spatial_dims": 3}, (26, 41, 33), 16, 0.25, 200 * 2**20),
        ({"padding": "valid", "spatial_dims": 3}, (21, 30, 26), 36, 0.5, 1),
        ({"padding": "same", "out_channels": 4}, (150, 133), 32, 0.5, 1),
    ],
)
def test_blocks_sized_from_memory_equal_in_memory(
    tmp_path: Path, kw: dict, shape: tuple[int, ...], tile: int, overlap: float, memory: int
) -> None:
    model = small_model(**kw)
    image = smooth_image(shape)
    options = PredictOptions(tile=tile, overlap=overlap, batch_size=3)
    src = _zarr(tmp_path / "in.zarr", image)
    with open_lazy(src, model.config.spatial_dims) as lazy:
        done = predict_blockwise(
            model, lazy, tmp_path / "out.zarr", options=options, memory=memory, probabilities=True
        )
    assert done > 1 if memory == 1 else done == 1  # the smallest blocks the plan allows, or one
    ref = predict_array(model, image.astype(np.float32), options=options, keep_probabilities=True)
    assert len(np.unique(ref.labels)) > 1
    np.testing.assert_array_equal(_labels(tmp_path / "out.zarr"), ref.labels)
    probs = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["probabilities"][...]
    np.testing.assert_allclose(probs, ref.probabilities, atol=1e-5)
    assert not (tmp_path / "out.zarr" / "scratch").exists()  # carried overhangs removed


@dataclass(frozen=True)
class _Sequential(Context):
    """Two ranks run one after the other in this process (the barrier holds nothing up)."""

    def barrier(self) -> None:
        return None


def test_ranks_sharing_block_rows_equal_one_process(tmp_path: Path) -> None:
    model = small_model(padding="same", spatial_dims=3, out_channels=3)
    image = smooth_image((40, 30, 28))
    src = _zarr(tmp_path / "in.zarr", image)
    options = PredictOptions(tile=16, overlap=0.5)
    norm = Normalization(mode="dataset", mean=(100.0,), std=(40.0,))
    with open_lazy(src, 3) as lazy:
        predict_blockwise(
            model, lazy, tmp_path / "one.zarr", options=options, normalization=norm, block=8
        )
        got = [
            predict_blockwise(
                model,
                lazy,
                tmp_path / "two.zarr",
                options=options,
                normalization=norm,
                block=8,
                context=_Sequential(rank, 2),
            )
            for rank in (0, 1)
        ]
    assert got[0] > 0 and got[1] > 0
    np.testing.assert_array_equal(_labels(tmp_path / "two.zarr"), _labels(tmp_path / "one.zarr"))
    ref = predict_array(model, image.astype(np.float32), options=options, normalization=norm)
    np.testing.assert_array_equal(_labels(tmp_path / "one.zarr"), ref.labels)


def test_block_edges_planned_again_give_the_same_blocks() -> None:
    cfg = small_model(spatial_dims=3).config
    for shape, tile, block in [
        ((40, 200, 200), 32, 48),
        ((26, 41, 33), 16, 1),
        ((9, 70, 5), 8, 64),
    ]:
        plan = plan_tiles(cfg, shape, tile, 0.25)
        edges = block_edges(plan, block)
        assert block_edges(plan, edges) == edges
        assert [b.out for b in plan_blocks(plan, edges)] == [
            b.out for b in plan_blocks(plan, block)
        ]
        for a, e in zip(plan.axes, edges, strict=True):
            assert e <= a.size


@pytest.mark.parametrize("overlap", ["auto", 0.5, 0.25])
@pytest.mark.parametrize("size", [97, 150, 213, 230, 401])
@pytest.mark.parametrize("block", [1, 40, 60, 130])
def test_every_overhang_lands_in_the_next_block(overlap: object, size: int, block: int) -> None:
    """Blocks own every tile once, and the overhang of a block's tiles never skips the next
    block, also where ``overlap="auto"`` ends the last tile at the image's end off the grid."""
    config = UNetConfig(spatial_dims=1, widths=(4, 8, 16), padding="same")
    plan = plan_tiles(config, (size,), 100, overlap)  # type: ignore[arg-type]
    blocks = plan_blocks(plan, block)
    owned = [s for b in blocks for s in b.starts[0]]
    assert owned == list(plan.axes[0].starts)
    assert blocks[0].out[0][0] == 0 and blocks[-1].out[0][1] == size
    for b, nxt in itertools.pairwise(blocks):
        assert b.out[0][1] == nxt.out[0][0]
        assert b.reach[0] <= nxt.out[0][1]
