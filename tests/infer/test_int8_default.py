"""int8 as a default: what the calibration stores, when prediction chooses int8, the command
line (`calibrate`, `--precision`), and the calibration a training run leaves in its model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fitting import fit
from unetkit.data import make_synthetic, normalize
from unetkit.infer import engine, int8
from unetkit.infer.calibration import (
    AUTO_AGREEMENT,
    CALIBRATION_PATCHES,
    calibration_patches,
    foreground_agreement,
    int8_calibration,
)
from unetkit.infer.int8 import Int8UNet
from unetkit.infer.optimize import OptimizedModel
from unetkit.infer.predictor import PredictOptions, predict_array
from unetkit.io.images import write_image, write_mask
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import load_with_metadata, save

pytestmark = pytest.mark.skipif(not int8.int8_available(), reason="no x86 quantized engine")


@pytest.fixture(scope="module")
def trained() -> tuple[UNet, list[np.ndarray], list[np.ndarray]]:
    """A small model trained on synthetic cells; normalised training and held-out images."""
    samples = make_synthetic(10, size=64, seed=0)
    images = [normalize(s.image) for s in samples]
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(8, 16, 32)))
    x = torch.from_numpy(np.stack(images[:7]))
    y = torch.from_numpy(np.stack([s.mask for s in samples[:7]]))
    return fit(model, x, y, steps=40), images[:7], images[7:]


@pytest.fixture(scope="module")
def entry(trained) -> dict:
    model, train_images, held_out = trained
    return int8_calibration(model, train_images, held_out, patch=(48, 48))


def test_calibration_entry_records_ranges_agreement_and_weights(trained, entry) -> None:
    model = trained[0]
    assert set(entry) >= {"ranges", "percentile", "patches", "agreement", "weights_sha256"}
    assert entry["patches"] == CALIBRATION_PATCHES and entry["agreement"]["images"] == 3
    assert entry["headroom"] == int8.HEADROOM
    assert entry["agreement"]["foreground_dice"] >= AUTO_AGREEMENT
    assert entry["weights_sha256"] == engine_digest(model)
    json.dumps(entry)  # stored as JSON metadata


def engine_digest(model: UNet) -> str:
    from unetkit.modelfile import tensors_digest

    return tensors_digest(model.state_dict())


def test_auto_chooses_int8_only_with_vnni_and_agreement(
    trained, entry, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = trained[0]
    monkeypatch.setattr(int8, "has_vnni", lambda: True)
    assert isinstance(engine.inference_network(model, "auto", entry), Int8UNet)
    assert isinstance(engine.inference_network(model, "auto", None), OptimizedModel)
    poor = {**entry, "agreement": {"foreground_dice": AUTO_AGREEMENT - 0.01, "images": 3}}
    assert isinstance(engine.inference_network(model, "auto", poor), OptimizedModel)
    assert isinstance(engine.inference_network(model, "int8", poor), Int8UNet)  # forced
    monkeypatch.setattr(int8, "has_vnni", lambda: False)
    assert isinstance(engine.inference_network(model, "auto", entry), OptimizedModel)
    assert isinstance(engine.inference_network(model, "fp32", entry), OptimizedModel)


def test_calibration_measures_bf16_and_auto_keeps_fp32_where_bf16_disagrees(
    trained, entry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU where bf16 is the faster float path (AMX), ``auto`` without int8 still runs
    fp32 when the calibration measured bf16 label maps below the agreement int8 must reach."""
    from unetkit import hardware
    from unetkit.infer.calibration import describe

    model = trained[0]
    if hardware.native_bf16("cpu"):  # measured where bf16 is native, not emulated
        assert 0.0 <= entry["bf16_agreement"] <= 1.0
        assert any(line.startswith("bf16: label maps agree") for line in describe(entry))
    else:
        assert "bf16_agreement" not in entry
    monkeypatch.setattr(int8, "has_vnni", lambda: False)  # no int8: the float path decides
    monkeypatch.setattr(hardware, "bf16_is_faster", lambda device=None: True)
    poor = {**entry, "bf16_agreement": AUTO_AGREEMENT - 0.01}
    good = {**entry, "bf16_agreement": AUTO_AGREEMENT}
    assert engine.bf16_disagrees(model, poor) and not engine.bf16_disagrees(model, good)
    assert not engine.bf16_disagrees(model, None)  # not measured: the processor decides
    net = engine.inference_network(model, "auto", poor)
    assert isinstance(net, OptimizedModel) and net.precision == "fp32"
    forced = engine.inference_network(model, "bf16", poor)  # asked for: honoured
    assert isinstance(forced, OptimizedModel) and forced.precision == "bf16"
    changed = copy.deepcopy(model)  # a measurement of other weights says nothing
    with torch.no_grad():
        changed.head.bias.add_(0.1)
    assert not engine.bf16_disagrees(changed, poor)


def test_a_calibration_of_other_weights_is_not_used(
    trained, entry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(int8, "has_vnni", lambda: True)
    changed = copy.deepcopy(trained[0])
    with torch.no_grad():
        changed.head.bias.add_(0.1)
    assert isinstance(engine.inference_network(changed, "auto", entry), OptimizedModel)
    with pytest.raises(ValueError, match="other weights"):
        engine.inference_network(changed, "int8", entry)


def test_forced_int8_without_calibration_says_how_to_get_one(trained) -> None:
    with pytest.raises(ValueError, match="unetkit calibrate"):
        engine.inference_network(trained[0], "int8", None)
    with pytest.raises(ValueError, match="precision: expected one of"):
        engine.inference_network(trained[0], "int4", None)
    with pytest.raises(ValueError, match="precision"):
        PredictOptions(precision="fp16")


def test_int8_prediction_of_a_held_out_image_agrees_with_fp32(trained, entry) -> None:
    model, _, held_out = trained
    image = np.concatenate([held_out[0], held_out[1]], axis=-1)  # 64x128: tiled, odd shape
    image = image[:, :63, :]
    fp32 = predict_array(model, image, options=PredictOptions(precision="fp32", tile=48))
    q = predict_array(model, image, options=PredictOptions(precision="int8", tile=48), int8=entry)
    assert q.labels.shape == fp32.labels.shape == (63, 128)
    assert foreground_agreement([q.labels], [fp32.labels], 2) >= 0.98


def test_agreement_counts_empty_foreground_as_agreement_and_misses_as_zero() -> None:
    empty = np.zeros((4, 4), np.int64)
    full = np.ones((4, 4), np.int64)
    assert foreground_agreement([empty], [empty], 2) == 1.0
    assert foreground_agreement([empty], [full], 2) == 0.0
    assert foreground_agreement([full, empty], [full, full], 2) == 0.5


def test_calibration_patches_take_every_image_before_repeating_any() -> None:
    model = UNet(UNetConfig(widths=(4, 8))).eval()
    images = [np.full((1, 40, 40), float(i), np.float32) for i in range(5)]
    patches = calibration_patches(model, images, (16, 16), n=12)
    values = [float(p[0, 0, 0]) for batch in patches for p in batch]
    assert len(values) == 12 and set(values[:5]) == {0.0, 1.0, 2.0, 3.0, 4.0}


def test_calibrated_ranges_carry_the_headroom() -> None:
    model = UNet(UNetConfig(widths=(4, 8))).eval()
    x = [torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))]
    plain = int8.calibrate(model, x, headroom=1.0)
    wide = int8.calibrate(model, x, headroom=1.5)
    for name, (lo, hi) in plain.items():
        assert wide[name] == pytest.approx((1.5 * lo, 1.5 * hi))


def test_calibration_patches_fit_a_valid_padding_model() -> None:
    model = UNet(UNetConfig(widths=(4, 8, 16), padding="valid")).eval()
    images = [np.random.default_rng(0).normal(size=(1, 100, 90)).astype(np.float32)]
    patches = calibration_patches(model, images, (64, 64), n=3)
    for p in patches:
        for s in p.shape[2:]:
            assert s in model.valid_input_sizes(1, 64)
    assert sum(p.shape[0] for p in patches) == 3


# --- command line -------------------------------------------------------------------------------


@pytest.fixture
def model_and_data(trained, tmp_path: Path) -> tuple[Path, Path]:
    model = trained[0]
    meta = {
        "num_classes": 2,
        "patch_size": [48, 48],
        "normalization": {"mode": "per_image", "mean": None, "std": None, "clip": None},
    }
    path = save(model, tmp_path / "model.safetensors", metadata=meta)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for s in make_synthetic(5, size=64, seed=3):
        write_image(data / "images" / f"{s.stem}.tif", np.round(s.image * 1000))
        write_mask(data / "masks" / f"{s.stem}.png", s.mask)
    return path, data


def test_calibrate_command_stores_the_entry(cli, model_and_data) -> None:
    path, data = model_and_data
    r = cli("calibrate", "--model", str(path), "--data", str(data))
    assert r.returncode == 0, r.stderr
    assert "agree with fp32 at foreground Dice" in r.stdout
    model, meta = load_with_metadata(path)
    assert meta["int8"]["agreement"]["images"] == 1  # 5 images: 4 calibrate, 1 checks
    assert meta["int8"]["weights_sha256"] == engine_digest(model)
    assert meta["num_classes"] == 2  # the rest of the metadata is kept


def test_forced_int8_on_an_uncalibrated_model_is_one_line_and_writes_nothing(
    cli, model_and_data, tmp_path: Path
) -> None:
    path, data = model_and_data
    out = tmp_path / "pred"
    r = cli(
        "predict", "--model", str(path), "--input", str(data), "--output", str(out),
        "--precision", "int8",
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "--precision int8" in r.stderr
    assert "unetkit calibrate" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_predict_refuses_to_mix_precisions_in_one_folder(
    cli, model_and_data, tmp_path: Path
) -> None:
    path, data = model_and_data
    out = tmp_path / "pred"
    base = ["predict", "--model", str(path), "--input", str(data), "--output", str(out)]
    assert cli(*base, "--precision", "fp32").returncode == 0
    r = cli(*base, "--precision", "bf16")
    assert r.returncode == 2 and "other settings" in r.stderr


def test_training_leaves_a_calibrated_model(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = cli(
        "train", "--out", str(out), "--epochs", "2",
        "model.widths=[4,8]", "data.synthetic_count=6", "data.synthetic_size=32",
        "data.patch_size=[32,32]", "train.steps_per_epoch=3", "train.batch_size=2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "int8: calibrated on" in r.stdout
    model, meta = load_with_metadata(out / "model.safetensors")
    entry = meta["int8"]
    assert entry["weights_sha256"] == engine_digest(model)
    assert 0.0 <= entry["agreement"]["foreground_dice"] <= 1.0
    assert entry["agreement"]["images"] >= 1
    assert all(lo <= hi for lo, hi in entry["ranges"].values())


def test_training_without_calibration_when_switched_off(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = cli(
        "train", "--out", str(out), "--epochs", "1", "train.int8_calibration=false",
        "model.widths=[4,8]", "data.synthetic_count=4", "data.synthetic_size=32",
        "data.patch_size=[32,32]", "train.steps_per_epoch=2", "train.batch_size=2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "int8" not in load_with_metadata(out / "model.safetensors")[1]
