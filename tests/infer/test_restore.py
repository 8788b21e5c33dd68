"""Prediction with restoration models: units of the input, seamless tiles, files, evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from unetkit.infer import Normalization, PredictOptions
from unetkit.infer.restore import restore_array, restore_files
from unetkit.infer.restore_evaluation import evaluate_restore_model
from unetkit.model import UNet, UNetConfig
from unetkit.model.sizes import receptive_field
from unetkit.modelfile import load_with_metadata, save

META = {"task": "restore", "restore": {"mode": "supervised", "target_channels": 1}}


def _model(seed: int = 0, **kw: object) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(**{"widths": (8, 16, 32), "out_channels": 1, **kw})).eval()  # type: ignore[arg-type]


def _zero(model: UNet, bias: float = 0.0) -> UNet:
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.bias.fill_(bias)  # type: ignore[union-attr]
    return model


def test_output_is_in_the_inputs_units() -> None:
    image = np.random.default_rng(0).normal(500, 40, size=(1, 40, 30)).astype(np.float32)
    # a network that outputs 1.0 (one std above the mean, in normalised units) everywhere
    model = _zero(_model(norm="none"), bias=1.0)
    out = restore_array(model, image, options=PredictOptions(tile="whole"))
    assert out.dtype == np.float32 and out.shape == (1, 40, 30)
    np.testing.assert_allclose(out, image.mean() + image.std(), rtol=1e-4)
    norm = Normalization(mode="dataset", mean=(100.0,), std=(10.0,))
    out = restore_array(model, image, options=PredictOptions(tile="whole"), normalization=norm)
    np.testing.assert_allclose(out, 110.0, rtol=1e-5)


def test_more_output_channels_take_the_channel_mean_of_the_input_numbers() -> None:
    image = np.stack([np.full((16, 16), 10.0), np.full((16, 16), 30.0)]).astype(np.float32)
    model = _zero(_model(in_channels=2, out_channels=3, norm="none"))
    out = restore_array(model, image, options=PredictOptions(tile="whole"))
    assert out.shape == (3, 16, 16)
    np.testing.assert_allclose(out, 20.0, rtol=1e-5)


def test_same_mode_tiles_blend_without_seams() -> None:
    """Stated tolerance: with tiles of ~3x the receptive field (128 for 44) and overlap 0.5,
    the restored image agrees with one whole-image pass to within 1% of the input's standard
    deviation at every pixel further than one receptive field from the image border, 0.05% on
    average (measured over three random models: max 0.41%, mean 0.033%)."""
    model = _model(seed=1)
    rf = receptive_field(model.config)
    image = np.random.default_rng(1).normal(100, 20, size=(1, 203, 181)).astype(np.float32)
    whole = restore_array(model, image, options=PredictOptions(tile="whole"))
    tiled = restore_array(model, image, options=PredictOptions(tile=128, overlap=0.5))
    diff = np.abs(tiled - whole)[:, rf:-rf, rf:-rf] / image.std()
    assert diff.max() <= 0.01 and diff.mean() <= 5e-4
    assert np.abs(tiled - whole).max() > 1e-6  # tiling really changed something


def test_valid_mode_tiles_equal_the_whole_image() -> None:
    model = _model(seed=2, padding="valid", norm="none")
    image = np.random.default_rng(2).normal(size=(1, 101, 77)).astype(np.float32)
    whole = restore_array(model, image, options=PredictOptions(tile="whole"))
    tiled = restore_array(model, image, options=PredictOptions(tile=52))
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def _data(root: Path, n: int = 2) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "targets").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        clean = rng.uniform(100, 200, (24, 24)).astype(np.float32)
        noisy = np.clip(clean + rng.normal(0, 10, clean.shape), 0, None).astype(np.uint16)
        tifffile.imwrite(root / "images" / f"s{i}.tif", noisy)
        tifffile.imwrite(root / "targets" / f"s{i}.tif", clean)
    return root


def test_files_are_float32_or_the_inputs_type_and_reruns_skip(tmp_path: Path) -> None:
    model_path = save(_model(seed=3), tmp_path / "r.safetensors", metadata=META)
    model, meta = load_with_metadata(model_path)
    data = _data(tmp_path / "ds")
    results = restore_files(model, meta, [data], tmp_path / "out")
    assert [r.status for r in results] == ["predicted", "predicted"]
    out = tifffile.imread(tmp_path / "out" / "s0.tif")
    assert out.dtype == np.float32 and out.shape == (24, 24)
    again = restore_files(model, meta, [data], tmp_path / "out")
    assert [r.status for r in again] == ["skipped", "skipped"]
    restore_files(model, meta, [data], tmp_path / "typed", output="input")
    typed = tifffile.imread(tmp_path / "typed" / "s0.tif")
    assert typed.dtype == np.uint16
    np.testing.assert_array_equal(typed, np.clip(np.round(out), 0, 65535).astype(np.uint16))


def test_evaluate_scores_restored_and_unrestored_images(tmp_path: Path) -> None:
    data = _data(tmp_path / "ds", n=3)
    model = _zero(_model(norm="none"))  # outputs each image's mean: worse than the input
    result = evaluate_restore_model(model, META, data, options=PredictOptions(tile="whole"))
    mean = result.mean()
    assert len(result.per_image) == 3 and mean["input_psnr"] > mean["psnr"]
    stem, score, base = result.per_image[0]
    assert base is not None and base.data_range == score.data_range
    target = tifffile.imread(data / "targets" / f"{stem}.tif")
    assert score.data_range == pytest.approx(float(target.max() - target.min()))
    assert "data range: each target's max - min" in result.format_table()
    fixed = evaluate_restore_model(
        model, META, data, options=PredictOptions(tile="whole"), data_range=255.0
    )
    assert fixed.per_image[0][1].data_range == 255.0
    assert fixed.to_json_dict()["data_range"] == "255 (fixed)"


def test_tta_restoration_is_the_mean_of_the_eight_symmetries() -> None:
    from unetkit.infer.tta import transforms

    model = _model(seed=3, norm="none")
    image = np.random.default_rng(3).normal(50, 10, size=(1, 24, 32)).astype(np.float32)
    whole = PredictOptions(tile="whole")
    with_tta = restore_array(model, image, options=PredictOptions(tile="whole", tta=True))
    tfs = transforms(2)
    assert len(tfs) == 8
    manual = np.mean(
        [
            t.inverse(
                torch.from_numpy(
                    restore_array(
                        model, t.forward(torch.from_numpy(image)[None])[0].numpy(), options=whole
                    )
                )[None]
            )[0].numpy()
            for t in tfs
        ],
        axis=0,
    )
    np.testing.assert_allclose(with_tta, manual, rtol=1e-4, atol=1e-3)
    plain = restore_array(model, image, options=whole)
    assert np.abs(with_tta - plain).max() > 1e-3  # the average really differs from one pass
    turned = restore_array(
        model, np.rot90(image, 1, (1, 2)).copy(), options=PredictOptions(tile="whole", tta=True)
    )
    np.testing.assert_allclose(turned, np.rot90(with_tta, 1, (1, 2)), rtol=1e-4, atol=1e-3)
