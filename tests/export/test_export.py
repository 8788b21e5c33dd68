"""Exports run like eager PyTorch (ONNX through onnxruntime), at sizes other than the traced one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests import model_cases
from unetkit.errors import UnetkitError
from unetkit.export import core as export_core
from unetkit.export import export_model
from unetkit.model import UNet, UNetConfig

META = {
    "num_classes": 2,
    "normalization": {"mode": "dataset", "mean": [0.5], "std": [0.25], "clip": None},
    "patch_size": [64, 64],
}


def _model(**kw: object) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(**{"widths": (8, 16, 32), **kw})).eval()  # type: ignore[arg-type]


def _eager(model: UNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_onnx_same_mode_has_dynamic_batch_and_spatial_axes(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = _model(up="interp", fusion="concat_1x1")
    report = export_model(model, tmp_path / "m.onnx", "onnx", META, input_size=32)
    assert report.max_abs_diff < 1e-4
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(3, 1, 40, 76)).astype(np.float32)  # untraced
    got = session.run(None, {"image": x})[0]
    np.testing.assert_allclose(got, _eager(model, x), atol=1e-4)
    settings = json.loads((tmp_path / "m.onnx.json").read_text())
    assert settings["input"]["dynamic_spatial"] is True
    assert settings["input"]["spatial_multiple"] == model.downsample_factor
    assert settings["normalization"]["mean"] == [0.5]
    assert settings["tiling"]["padding"] == "same"


def test_onnx_valid_mode_fixed_size_and_tiling_settings(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = _model(padding="valid", norm="none")
    report = export_model(model, tmp_path / "v.onnx", "onnx", META, input_size=64)
    settings = report.settings
    size = settings["input"]["fixed_spatial_size"]
    assert model.output_size(tuple(size)) == tuple(settings["output"]["spatial_size"])
    assert size[0] <= 64  # the nearest valid size at or below the request
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(2, 1, *size)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"image": x})[0], _eager(model, x), atol=1e-4)
    assert settings["tiling"]["margin"] * 2 == size[0] - settings["output"]["spatial_size"][0]


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_torchscript_matches_eager_at_other_sizes(tmp_path, spatial_dims: int) -> None:
    model = _model(spatial_dims=spatial_dims, widths=(4, 8), norm="instance")
    report = export_model(model, tmp_path / "m.pt", "torchscript", {}, input_size=16)
    loaded = torch.jit.load(str(report.path))
    shape = (2, 1, *([12, 20, 8][:spatial_dims]))
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-4, rtol=1e-4)


def test_export_that_differs_writes_nothing(tmp_path, monkeypatch) -> None:
    model = _model()
    monkeypatch.setattr(
        export_core, "_run_exported", lambda _f, _p, x, *_: np.zeros((x.shape[0], 2, *x.shape[2:]))
    )
    out = tmp_path / "bad.pt"
    with pytest.raises(UnetkitError, match="differs from eager"):
        export_model(model, out, "torchscript", {}, input_size=16)
    assert not out.exists() and not (tmp_path / "bad.pt.json").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary left behind


def test_export_restores_training_mode(tmp_path) -> None:
    model = _model().train()
    export_model(model, tmp_path / "m.pt", "torchscript", {}, input_size=16)
    assert model.training


#: The table's models take two channels.
META2 = {**META, "normalization": {"mode": "dataset", "mean": [0.5] * 2, "std": [0.25] * 2}}


@pytest.mark.parametrize("case", model_cases.cases(dims=(2,)))
def test_every_case_exports_to_torchscript_matching_eager(tmp_path, case) -> None:
    model = model_cases.make_model(case, settled=True)
    report = export_model(model, tmp_path / "m.pt", "torchscript", META2, input_size=24)
    # export_model runs the file against eager PyTorch at two shapes and raises on a mismatch
    assert report.path.is_file() and len(report.checked_shapes) == 2


@pytest.mark.parametrize("case", model_cases.cases(dims=(1, 3))[::4])
def test_cases_in_1d_and_3d_export_to_onnx_matching_eager(tmp_path, case) -> None:
    pytest.importorskip("onnxruntime")
    model = model_cases.make_model(case, settled=True)
    size = 40 if case.spatial_dims == 1 else 16
    report = export_model(model, tmp_path / "m.onnx", "onnx", META2, input_size=size)
    assert report.path.is_file() and len(report.checked_shapes) == 2
