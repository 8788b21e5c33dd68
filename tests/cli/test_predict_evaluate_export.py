"""Command line round trip: train (a quick in-test loop) -> predict -> evaluate, and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fitting import fit
from unetkit.data import make_synthetic, normalize
from unetkit.io.images import read_mask, write_image, write_mask
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import save


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small 2D model trained for a few seconds on synthetic cells, and a dataset on disk."""
    root = tmp_path_factory.mktemp("roundtrip")
    samples = make_synthetic(8, size=48, seed=0)
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(8, 16), norm="batch"))
    x = torch.from_numpy(np.stack([normalize(s.image) for s in samples[:6]]))
    y = torch.from_numpy(np.stack([s.mask for s in samples[:6]]))
    fit(model, x, y, steps=40)
    meta = {
        "num_classes": 2,
        "ignore_index": None,
        "spatial_dims": 2,
        "in_channels": 1,
        "patch_size": [48, 48],
        "normalization": {"mode": "per_image", "mean": None, "std": None, "clip": None},
        "class_names": ["background", "cell"],
    }
    (root / "run").mkdir()
    model_path = save(model.eval(), root / "run" / "model.safetensors", metadata=meta)
    data = root / "val"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i, s in enumerate(samples[6:]):  # held out from training
        image = np.round(s.image * 1000)  # integer grey values, as a 16-bit TIFF/NumPy file
        suffix = ".tif" if i == 0 else ".npy"
        write_image(data / "images" / f"{s.stem}{suffix}", image)
        write_mask(data / "masks" / f"{s.stem}.png", s.mask)
    return model_path.parent, data


def test_predict_then_evaluate(cli, trained, tmp_path) -> None:
    run, data = trained
    out = tmp_path / "pred"
    r = cli(
        "predict", "--model", str(run), "--input", str(data), "--out", str(out),
        "--tile", "32", "--save-probabilities", "--overlay",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    stems = sorted(p.stem for p in (data / "images").iterdir())
    assert sorted(p.name for p in out.iterdir() if p.is_file() and p.name[0] != ".") == [
        "synthetic_0006.tif",
        "synthetic_0007.npy",
    ]
    probs = np.load(out / "probabilities" / "synthetic_0006.npy")
    labels = read_mask(out / "synthetic_0006.tif")
    assert probs.shape == (2, 48, 48)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(0))
    assert (out / "overlays" / "synthetic_0006.png").is_file()

    ev = cli(
        "evaluate", "--pred", str(out), "--truth", str(data),
        "--json", str(tmp_path / "e.json"), "--csv", str(tmp_path / "e.csv"),
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    assert "dice" in ev.stdout and "mean fg" in ev.stdout
    result = json.loads((tmp_path / "e.json").read_text())
    assert [im["name"] for im in result["per_image"]] == stems
    assert result["mean"]["dice"] > 0.8  # trained for seconds, on easy synthetic cells
    assert set(result["mean"]) >= {"dice", "iou", "hd95", "pixel_error", "rand_error"}
    assert len((tmp_path / "e.csv").read_text().splitlines()) == 1 + 2 * len(stems)

    # the same numbers when evaluate predicts itself (--model --data)
    ev2 = cli("evaluate", "--model", str(run), "--data", str(data), "--tile", "32",
              "--json", str(tmp_path / "e2.json"))  # fmt: skip
    assert ev2.returncode == 0, ev2.stderr
    again = json.loads((tmp_path / "e2.json").read_text())
    assert again["mean"] == result["mean"]


def test_rerun_skips_finished_outputs_unless_overwrite(cli, trained, tmp_path) -> None:
    run, data = trained
    out = tmp_path / "pred"
    args = ("predict", "--model", str(run), "--input", str(data / "images"), "--out", str(out))
    assert cli(*args).returncode == 0
    target = out / "synthetic_0007.npy"
    before = target.stat().st_mtime_ns
    again = cli(*args)
    assert again.returncode == 0 and "skipped 2" in again.stdout
    assert target.stat().st_mtime_ns == before
    forced = cli(*args, "--overwrite")
    assert forced.returncode == 0 and "predicted 2" in forced.stdout
    assert target.stat().st_mtime_ns != before


def test_predict_errors_are_one_line(cli, trained, tmp_path) -> None:
    run, _ = trained
    rgb = tmp_path / "in" / "colour.png"
    rgb.parent.mkdir()
    write_image(rgb, np.zeros((3, 20, 20)))
    r = cli("predict", "--model", str(run), "--input", str(rgb), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "colour.png" in r.stderr and "channel" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "colour.png").exists()
    missing = cli("predict", "--model", str(tmp_path / "nope"), "--input", str(rgb), "--out",
                  str(tmp_path / "o"))  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.startswith("unetkit: error:")
    bad_tile = cli("predict", "--model", str(run), "--input", str(rgb), "--out",
                   str(tmp_path / "o"), "--tile", "0")  # fmt: skip
    assert bad_tile.returncode == 2 and "--tile" in bad_tile.stderr


def test_evaluate_needs_one_mode(cli, trained) -> None:
    run, data = trained
    r = cli("evaluate", "--model", str(run), "--pred", str(data))
    assert r.returncode == 2 and "either --model" in r.stderr


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_command_checks_and_writes_settings(cli, trained, tmp_path, fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    run, _ = trained
    out = tmp_path / f"model.{fmt}"
    r = cli("export", "--model", str(run), "--format", fmt, "--out", str(out),
            "--input-size", "32")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "max |export - eager|" in r.stdout
    settings = json.loads(out.with_name(out.name + ".json").read_text())
    assert settings["classes"]["class_names"] == ["background", "cell"]
    assert settings["parity"]["max_abs_diff"] < 1e-3
