"""A model trained at a target spacing, on an anisotropic input, everywhere predict goes: the
Python API, ``--instances``, restoration models and the block-wise Zarr path (resampled block
by block, seam-free). Outputs land on the input's own grid and match the in-memory file path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import unetkit
from unetkit.infer.block_resample import zoom_window
from unetkit.infer.files import predict_files
from unetkit.infer.instance_files import predict_instance_files
from unetkit.infer.instances import predict_instances
from unetkit.infer.predictor import PredictOptions, predict_array, predict_full
from unetkit.infer.resampled import run_at_spacing
from unetkit.infer.restore import restore_array, restore_files
from unetkit.instances.postprocess import instances_from_probabilities
from unetkit.instances.spec import InstanceSpec
from unetkit.io.images import read_mask
from unetkit.model import UNet, UNetConfig
from unetkit.train.resample import zoom_to

tifffile = pytest.importorskip("tifffile")

SPACING = (3.0, 1.0, 1.0)  # the first axis is 3x coarser than the model's target
TARGET = [1.0, 1.0, 1.0]


def _model(out_channels: int = 2, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    cfg = UNetConfig(spatial_dims=3, widths=(4, 8), norm="none", out_channels=out_channels)
    return UNet(cfg).eval()


def _volume(tmp_path: Path) -> tuple[Path, np.ndarray]:
    src = tmp_path / "in" / "v.tif"
    src.parent.mkdir(exist_ok=True)
    volume = np.random.default_rng(4).integers(0, 255, (5, 16, 12), dtype=np.uint8)
    tifffile.imwrite(src, volume)
    return src, volume


def test_api_spacing_matches_the_file_path_on_the_inputs_grid(tmp_path: Path) -> None:
    model = _model()
    src, volume = _volume(tmp_path)
    meta = {"target_spacing": TARGET}
    predict_files(model, meta, [src], tmp_path / "out", save_probabilities=True, spacing=SPACING)
    got = predict_full(model, volume.astype(np.float32), metadata=meta, spacing=SPACING)
    assert got.labels.shape == volume.shape
    np.testing.assert_array_equal(got.labels, read_mask(tmp_path / "out" / "v.tif"))
    files = np.load(tmp_path / "out" / "probabilities" / "v.npy")
    np.testing.assert_allclose(got.probabilities, files, atol=1e-6)
    labels = unetkit.predict(model, volume.astype(np.float32), metadata=meta, spacing=SPACING)
    np.testing.assert_array_equal(labels, got.labels)
    plain = predict_full(model, volume.astype(np.float32), metadata=meta)  # spacing unknown
    assert not np.allclose(plain.probabilities, got.probabilities)  # it saw 15 slices, not 5
    with pytest.raises(ValueError, match="spacing: expected 3 positive numbers"):
        predict_full(model, volume.astype(np.float32), metadata=meta, spacing=(1.0, 0.0, 1.0))


def test_instances_come_from_probabilities_brought_back_to_the_inputs_grid(
    tmp_path: Path,
) -> None:
    model = _model(out_channels=3, seed=1)
    src, volume = _volume(tmp_path)
    spec = InstanceSpec()
    meta = {"instances": spec.to_dict(), "target_spacing": TARGET}
    image = volume[None].astype(np.float32)
    got = predict_instances(model, image, metadata=meta, spacing=SPACING, tta=False)
    assert got.labels.shape == volume.shape and got.class_map.shape == volume.shape
    assert got.labels.max() > 1  # several objects, and not those of the unresampled volume
    plain = predict_instances(model, image, metadata=meta, tta=False)
    assert not np.array_equal(plain.labels, got.labels)
    options = PredictOptions(tta=False)

    def probs(x: np.ndarray) -> np.ndarray:
        return predict_array(model, x, options=options, keep_probabilities=True).probabilities

    back = run_at_spacing(probs, image, SPACING, TARGET)  # (3, 5, 16, 12)
    assert back is not None and back.shape == (3, *volume.shape)
    expected = instances_from_probabilities(spec.boundary_probabilities(back), spec.params)
    np.testing.assert_array_equal(got.labels, expected)
    (r,) = predict_instance_files(model, meta, [src], tmp_path / "out", options=options,
                                  spacing=SPACING)  # fmt: skip
    np.testing.assert_array_equal(read_mask(r.outputs.labels), got.labels)


def test_restoration_comes_back_on_the_inputs_grid(tmp_path: Path) -> None:
    model = _model(out_channels=1, seed=2)
    src, volume = _volume(tmp_path)
    meta = {"task": "restore", "restore": {"mode": "supervised", "target_channels": 1},
            "target_spacing": TARGET}  # fmt: skip
    (r,) = restore_files(model, meta, [src], tmp_path / "out", spacing=SPACING)
    restored = tifffile.imread(r.outputs.labels)
    assert restored.shape == volume.shape
    image = volume[None].astype(np.float32)
    expected = run_at_spacing(lambda x: restore_array(model, x), image, SPACING, TARGET)
    np.testing.assert_allclose(restored, expected[0], rtol=1e-5, atol=1e-4)
    plain = restore_array(model, image)[0]
    assert not np.allclose(restored, plain, rtol=1e-3)


def test_zoom_window_equals_zoom_to_over_any_region() -> None:
    rng = np.random.default_rng(6)
    volume = rng.normal(size=(2, 7, 19, 11)).astype(np.float32)
    for shape in [(20, 19, 11), (3, 40, 6), (7, 19, 11)]:
        whole = zoom_to(volume, shape, order=1)
        for _ in range(5):
            region = []
            for m in shape:
                lo = int(rng.integers(0, m))
                region.append(slice(lo, int(rng.integers(lo + 1, m + 1))))
            got = zoom_window(lambda r: volume[(slice(None), *r)], volume.shape[1:], shape, region)
            np.testing.assert_allclose(got, whole[(slice(None), *region)], atol=1e-6)


def test_blockwise_zarr_at_the_target_spacing_equals_the_in_memory_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zarr = pytest.importorskip("zarr")
    from unetkit.infer import block_resample

    monkeypatch.setattr(block_resample, "BACK_MEMORY", 40_000)  # many blocks on the way back
    model = _model(out_channels=3, seed=3)
    volume = np.random.default_rng(5).integers(0, 255, (6, 20, 18), dtype=np.uint8)
    root = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=2)
    root.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "z"}, {"name": "y"}, {"name": "x"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": list(SPACING)}]}],
    }]  # fmt: skip
    arr = root.create_array("0", shape=volume.shape, chunks=(3, 10, 9), dtype="uint8")
    arr[...] = volume
    tifffile.imwrite(tmp_path / "img.tif", volume)
    meta = {"target_spacing": TARGET}
    options = PredictOptions(tile=[8, 16, 16], overlap=0.5)
    predict_files(model, meta, [tmp_path / "img.zarr"], tmp_path / "big", options=options,
                  save_probabilities=True, block=8)  # the scale of the OME-Zarr  # fmt: skip
    predict_files(model, meta, [tmp_path / "img.tif"], tmp_path / "mem", options=options,
                  save_probabilities=True, spacing=SPACING)  # fmt: skip
    out = zarr.open_group(str(tmp_path / "big" / "img.zarr"), mode="r")
    labels = np.asarray(out["labels/prediction/0"][...])
    assert labels.shape == volume.shape
    ref = read_mask(tmp_path / "mem" / "img.tif")
    assert len(np.unique(ref)) > 1
    np.testing.assert_array_equal(labels, ref)
    probs = np.load(tmp_path / "mem" / "probabilities" / "img.npy")
    np.testing.assert_allclose(np.asarray(out["probabilities"][...]), probs, atol=1e-5)
    assert not (tmp_path / "big" / "img.zarr" / "scratch").exists()
    again = predict_files(model, meta, [tmp_path / "img.zarr"], tmp_path / "big",
                          options=options, save_probabilities=True, block=8)  # fmt: skip
    assert again[0].status == "skipped"
