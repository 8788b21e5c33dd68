"""Out-of-core prediction: block-wise labels equal the in-memory path (valid and same mode,
2D and 3D, Zarr and TIFF sources), a killed run resumes, bad stores are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.infer.block_cases import small_model, smooth_image
from unetkit.errors import DataError
from unetkit.infer import Normalization, PredictOptions, predict_array
from unetkit.infer.blockwise import plan_blocks, predict_blockwise
from unetkit.infer.lazy_image import open_lazy
from unetkit.infer.tiling import plan_tiles

zarr = pytest.importorskip("zarr")




def _write_zarr(path: Path, array: np.ndarray, chunks: tuple[int, ...]) -> Path:
    z = zarr.open_array(str(path), mode="w", shape=array.shape, chunks=chunks, dtype=array.dtype)
    z[...] = array
    return path


def _labels(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(path), mode="r")["labels/prediction/0"][...])


CASES = [
    # (model kwargs, image shape, tile, block, overlap)
    ({"padding": "valid", "out_channels": 3}, (150, 133), 60, 40, 0.5),
    ({"padding": "same", "out_channels": 3}, (150, 133), 48, 40, 0.5),
    ({"padding": "same", "out_channels": 1}, (97, 120), 32, 30, 0.5),
    ({"padding": "same", "spatial_dims": 3}, (20, 37, 29), 16, 12, 0.5),
    ({"padding": "valid", "spatial_dims": 3}, (21, 30, 26), 36, 8, 0.5),
    ({"padding": "same", "out_channels": 3}, (230, 213), 100, 60, "auto"),  # context overlap
]


@pytest.mark.parametrize(("kw", "shape", "tile", "block", "overlap"), CASES)
def test_blockwise_labels_equal_in_memory(
    tmp_path: Path, kw: dict, shape: tuple[int, ...], tile: int, block: int, overlap: object
) -> None:
    model = small_model(**kw)
    image = smooth_image(shape)
    options = PredictOptions(tile=tile, overlap=overlap, batch_size=3)  # type: ignore[arg-type]
    plan = plan_tiles(model.config, shape, tile, overlap)  # type: ignore[arg-type]
    assert len(plan_blocks(plan, block)) > 1  # the case really crosses block borders
    assert (plan.axes[0].context > 0) == (overlap == "auto")  # and tiles as it says
    src = _write_zarr(tmp_path / "in.zarr", image, tuple(max(1, n // 3) for n in shape))
    with open_lazy(src, model.config.spatial_dims) as lazy:
        predict_blockwise(model, lazy, tmp_path / "out.zarr", options=options, block=block,
                          probabilities=True)
    ref = predict_array(model, image.astype(np.float32), options=options,
                        keep_probabilities=True)
    assert len(np.unique(ref.labels)) > 1  # labels that could differ
    np.testing.assert_array_equal(_labels(tmp_path / "out.zarr"), ref.labels)
    probs = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["probabilities"][...]
    np.testing.assert_allclose(probs, ref.probabilities, atol=1e-5)


def test_tiff_source_and_dataset_normalisation(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    model = small_model(padding="same", in_channels=3)
    rgb = np.stack([smooth_image((90, 110), s) for s in range(3)], axis=-1)  # (H, W, S)
    tifffile.imwrite(tmp_path / "big.tif", rgb, tile=(32, 32))
    norm = Normalization(mode="dataset", mean=(100.0, 90.0, 80.0), std=(20.0, 25.0, 30.0))
    options = PredictOptions(tile=32)
    with open_lazy(tmp_path / "big.tif", 2) as lazy:
        assert lazy.shape == (3, 90, 110)
        predict_blockwise(model, lazy, tmp_path / "out.zarr", options=options,
                          normalization=norm, block=32)
    ref = predict_array(model, np.moveaxis(rgb, -1, 0).astype(np.float32), options=options,
                        normalization=norm)
    np.testing.assert_array_equal(_labels(tmp_path / "out.zarr"), ref.labels)


def test_ome_zarr_source_reads_its_full_resolution_level(tmp_path: Path) -> None:
    model = small_model(padding="same")
    image = smooth_image((70, 64))
    root = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=2)
    root.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "t"}, {"name": "c"}, {"name": "y"}, {"name": "x"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, 0.5, 0.25]}]}],
    }]
    arr = root.create_array("0", shape=(1, 1, 70, 64), chunks=(1, 1, 32, 32), dtype="uint16")
    arr[...] = image[None, None]
    with open_lazy(tmp_path / "img.zarr", 2) as lazy:
        assert lazy.shape == (1, 70, 64) and lazy.scale == (0.5, 0.25)
        predict_blockwise(model, lazy, tmp_path / "out.zarr", options=PredictOptions(tile=32),
                          block=32)
    ref = predict_array(model, image.astype(np.float32), options=PredictOptions(tile=32))
    np.testing.assert_array_equal(_labels(tmp_path / "out.zarr"), ref.labels)
    meta = zarr.open_group(str(tmp_path / "out.zarr/labels/prediction"), mode="r").attrs
    assert meta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        0.5, 0.25]


def test_killed_run_resumes_block_wise(tmp_path: Path) -> None:
    model = small_model(padding="same")
    image = smooth_image((96, 96))
    src = _write_zarr(tmp_path / "in.zarr", image, (32, 32))
    options = PredictOptions(tile=32)
    out = tmp_path / "out.zarr"

    class Killed(Exception):
        pass

    seen: list[int] = []

    def kill_after_two(block: object) -> None:
        seen.append(block.index)  # type: ignore[attr-defined]
        if len(seen) == 2:
            raise Killed

    with open_lazy(src, 2) as lazy, pytest.raises(Killed):
        predict_blockwise(model, lazy, out, options=options, block=32, on_block=kill_after_two)
    redone: list[int] = []
    with open_lazy(src, 2) as lazy:
        n = predict_blockwise(model, lazy, out, options=options, block=32,
                              on_block=lambda b: redone.append(b.index))
    assert n == 9 - 2 and not set(redone) & set(seen)
    ref = predict_array(model, image.astype(np.float32), options=options)
    np.testing.assert_array_equal(_labels(out), ref.labels)
    with open_lazy(src, 2) as lazy:  # finished: nothing left to do
        assert predict_blockwise(model, lazy, out, options=options, block=32) == 0


def test_scratch_holds_only_pieces_of_unwritten_blocks(tmp_path: Path) -> None:
    # 3D, every direction of overhang: after each block, a piece (or a waiting sum) is on disk
    # only while the block it goes into is not written; the labels still equal in memory
    from unetkit.infer.block_store import BlockStore

    model = small_model(padding="same", spatial_dims=3)
    image = smooth_image((30, 40, 36))
    src = _write_zarr(tmp_path / "in.zarr", image, (10, 20, 12))
    options = PredictOptions(tile=16, overlap=0.5, batch_size=3)
    out = tmp_path / "out.zarr"
    pieces_seen = []

    def check(block: object) -> None:
        store = BlockStore.open(out, spatial=image.shape, probabilities=False)
        done = store.finished()
        names = [f.stem for f in (out / "scratch").glob("carry-*.npy")]
        pieces_seen.append(len(names))
        for name in names:
            grid = tuple(int(g) for g in name.split("-")[1].split("_"))
            index = next(b.index for b in blocks if b.grid == grid)
            assert not done[index], f"{name}: its block {index} is written"

    with open_lazy(src, 3) as lazy:
        blocks = plan_blocks(plan_tiles(model.config, image.shape, 16, 0.5), 12)
        predict_blockwise(model, lazy, out, options=options, block=12, on_block=check)
    assert max(pieces_seen) > 0 and len(blocks) >= 8  # pieces were carried, on every axis
    assert not (out / "scratch").exists()
    ref = predict_array(model, image.astype(np.float32), options=options)
    np.testing.assert_array_equal(_labels(out), ref.labels)


def test_integer_statistics_equal_float64(tmp_path: Path) -> None:
    # 8- and 16-bit images are summed exactly in integers: the same numbers as float64
    from unetkit.infer.block_norm import _block_stats

    rng = np.random.default_rng(0)
    for dtype, lo, hi in ((np.uint8, 0, 256), (np.int8, -128, 128), (np.uint16, 0, 65536),
                          (np.int16, -32768, 32768)):
        raw = rng.integers(lo, hi, size=(2, 7, 300, 400)).astype(dtype)  # several slabs
        got = _block_stats(raw, None, None)
        flat = raw.reshape(2, -1).astype(np.float64)
        mean = flat.mean(axis=1)
        m2 = ((flat - mean[:, None]) ** 2).sum(axis=1)
        np.testing.assert_allclose(got, np.stack([np.full(2, flat.shape[1]), mean, m2], 1),
                                   rtol=1e-12)


def test_missing_chunks_are_refused(tmp_path: Path) -> None:
    src = _write_zarr(tmp_path / "in.zarr", smooth_image((64, 64)), (32, 32))
    chunk = next(p for p in sorted(src.rglob("*")) if p.is_file() and p.name == "1")
    chunk.unlink()
    with pytest.raises(DataError, match="chunks are missing"):
        open_lazy(src, 2)


def test_existing_store_of_another_shape_or_settings_is_refused(tmp_path: Path) -> None:
    model = small_model(padding="same")
    out = tmp_path / "out.zarr"
    a = _write_zarr(tmp_path / "a.zarr", smooth_image((64, 64)), (32, 32))
    b = _write_zarr(tmp_path / "b.zarr", smooth_image((64, 80)), (32, 32))
    with open_lazy(a, 2) as lazy:
        predict_blockwise(model, lazy, out, options=PredictOptions(tile=32), block=32)
    before = _labels(out)
    with open_lazy(b, 2) as lazy, pytest.raises(DataError, match="exists with labels of shape"):
        predict_blockwise(model, lazy, out, options=PredictOptions(tile=32), block=32)
    with open_lazy(a, 2) as lazy, pytest.raises(DataError, match="other settings"):
        predict_blockwise(model, lazy, out, options=PredictOptions(tile=32, tta=True), block=32,
                          identity={"tta": True})
    foreign = tmp_path / "foreign.zarr"
    _write_zarr(foreign, np.zeros((64, 64), np.uint8), (32, 32))
    with open_lazy(a, 2) as lazy, pytest.raises(DataError, match="not a store written by"):
        predict_blockwise(model, lazy, foreign, options=PredictOptions(tile=32), block=32)
    np.testing.assert_array_equal(_labels(out), before)


@pytest.mark.parametrize("kw", [{"padding": "same", "out_channels": 3},
                                {"padding": "valid", "out_channels": 3},
                                {"padding": "same", "out_channels": 1}])
def test_batched_small_images_equal_one_by_one(kw: dict) -> None:
    from unetkit.infer.batched import predict_batch

    model = small_model(**kw)
    images = [smooth_image((40, 52), seed).astype(np.float32) for seed in range(5)]
    options = PredictOptions(batch_size=2)
    batch = predict_batch(model, images, options=options, normalization=Normalization(),
                          default_tile=[512, 512], keep_probabilities=True)
    for im, got in zip(images, batch, strict=True):
        ref = predict_array(model, im, options=options, keep_probabilities=True)
        np.testing.assert_array_equal(got.labels, ref.labels)
        np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        predict_batch(model, [images[0], images[0][:, :30]], options=options,
                      normalization=Normalization(), default_tile=[512, 512])
