"""Tests for the int8 path: close to fp32 on every supported layout, label maps that agree with
fp32 on real images, exact transposed-conv rewrite, clear refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from tests import model_cases
from unetkit.infer import int8
from unetkit.infer.int8 import (
    Int8UNet,
    Int8Unsupported,
    calibrate,
    quantize_for_inference,
    unsupported_reason,
)
from unetkit.infer.int8_layers import QuantizedUp, qparams
from unetkit.infer.optimize import memory_format, optimize_for_inference
from unetkit.metrics import dice
from unetkit.model import UNet, UNetConfig

pytestmark = pytest.mark.skipif(not int8.int8_available(), reason="no x86 quantized engine")

CASES = [
    {},
    {"norm_placement": "before_concat"},
    {"fusion": "add"},
    {"fusion": "concat_1x1"},
    {"fusion": "none"},
    {"padding": "valid"},
    {"block": "residual", "up": "interp", "down": "strided"},
    {"down": "avgpool", "norm": "none"},
    {"spatial_dims": 3},
    {"spatial_dims": 3, "up": "interp", "padding": "valid"},
    {"spatial_dims": 1},
    {"spatial_dims": 1, "block": "residual", "up": "interp"},
    {"encoder_blocks": (1, 2, 3), "block": "residual", "down": "strided"},
    {"spatial_dims": 3, "encoder_blocks": (2, 1, 2), "block": "residual"},
]


def _settled_model(**kw: object) -> UNet:
    """A model whose batch norms hold running statistics of real forward passes."""
    torch.manual_seed(0)
    kw.setdefault("widths", (8, 16, 32))
    model = UNet(UNetConfig(**kw))  # type: ignore[arg-type]
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(_input(model))
    return model.eval()


def _input(model: UNet, size: int = 36, batch: int = 2, seed: int = 1) -> torch.Tensor:
    d = model.config.spatial_dims
    if model.config.padding == "valid":
        size = model.valid_input_sizes(40 if d < 3 else 30, 140)[0]
    elif d == 1:
        size = 101  # odd: exercises the same-mode padding and crop
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.config.in_channels, *([size] * d), generator=g)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    "kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "default"
)
def test_int8_logits_are_close_to_fp32_for_every_supported_layout(kw: dict) -> None:
    model = _settled_model(**kw)
    calib = [_input(model, seed=s) for s in (2, 3)]
    q = quantize_for_inference(model, calibrate(model, calib))
    x = _input(model)
    with torch.inference_mode():
        ref = model(x)
        got = q(x)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    # 8-bit activations through a dozen layers of an untrained net: several percent, not more
    assert _relative_error(got, ref) < 0.1
    assert float((got.argmax(1) == ref.argmax(1)).float().mean()) > 0.97


@pytest.mark.parametrize("case", model_cases.cases(dims=(1, 2, 3)))
def test_every_case_runs_in_int8_or_is_refused_with_the_reason(case: model_cases.Case) -> None:
    model = model_cases.make_model(case, settled=True)
    x = model_cases.make_input(model)
    reason = unsupported_reason(model)
    if reason is not None:
        with pytest.raises(Int8Unsupported, match=re.escape(reason)):
            calibrate(model, [x])
        return
    q = quantize_for_inference(model, calibrate(model, [x, model_cases.make_input(model, seed=2)]))
    with torch.inference_mode():
        ref = model(x)
        got = q(x)
    assert got.shape == ref.shape and torch.isfinite(got).all()
    assert _relative_error(got, ref) < 0.2  # tiny untrained nets on a few pixels: loose


def _old_name(name: str) -> str:
    """The first naming of calibration points, written out independently of the code."""
    rules = [
        (r"^(encoder|decoder)\.blocks\.(\d+)\.convs\.(\d+)$", r"\1.\2.conv\3"),
        (r"^(encoder|decoder)\.blocks\.(\d+)\.shortcut$", r"\1.\2.shortcut"),
        (r"^(encoder|decoder)\.blocks\.(\d+)\.out_act$", r"\1.\2.out"),
        (r"^decoder\.ups\.(\d+)$", r"decoder.\1.up"),
        (r"^decoder\.fuses\.(\d+)$", r"decoder.\1.fuse"),
        (r"^decoder\.fuses\.(\d+)\.(skip|reduce)$", r"decoder.\1.\2"),
    ]
    m = re.match(r"^encoder\.downs\.(\d+)$", name)
    if m:  # named by the level it leads into
        return f"encoder.{int(m[1]) + 1}.down"
    for pattern, replacement in rules:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name)
    raise AssertionError(f"no first-naming rule for {name}")


@pytest.mark.parametrize(
    "kw", [{}, {"block": "residual", "down": "strided", "fusion": "concat_1x1"}], ids=str
)
def test_a_calibration_stored_in_the_first_naming_is_read(kw: dict) -> None:
    model = _settled_model(**kw)
    ranges = calibrate(model, [_input(model)])
    old = {_old_name(k): v for k, v in ranges.items()}
    assert "encoder.1.down" in old or kw.get("down") != "strided"
    x = _input(model)
    with torch.inference_mode():
        want = quantize_for_inference(model, ranges)(x)
        got = quantize_for_inference(model, old)(x)
    assert torch.equal(got, want)
    assert int8.translate_ranges({"encoder.2.down": (0, 1)}) == {"encoder.downs.1": (0, 1)}


def test_a_point_of_an_option_int8_does_not_implement_is_refused_by_name() -> None:
    model = _settled_model(down="strided")
    model.encoder.downs[1].down = "blurpool"  # an option written later in model/
    reason = unsupported_reason(model) or ""
    assert "encoder.downs.1" in reason and "'blurpool'" in reason
    with pytest.raises(Int8Unsupported, match=r"encoder\.downs\.1"):
        calibrate(model, [_input(model)])


def test_quantising_leaves_the_float_model_unchanged() -> None:
    model = _settled_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantize_for_inference(model, calibrate(model, [_input(model)]))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_transposed_conv_rewrite_matches_the_float_layer(dims: int) -> None:
    torch.manual_seed(0)
    conv = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dims - 1](12, 6, 2, 2)
    x = torch.rand(2, 12, *([5] * dims))
    if dims > 1:
        x = x.contiguous(memory_format=memory_format(dims))
    with torch.no_grad():
        ref = conv(x)
    lo, hi = float(ref.min()), float(ref.max())
    up = QuantizedUp(conv, qparams(lo, hi, reduce_range=False))
    xq = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)
    got = up(xq).dequantize()
    assert got.shape == ref.shape
    # only rounding: input 1/255 steps, output (hi - lo) / 255 steps
    step = (hi - lo) / 255
    assert float((got - ref).abs().max()) < 2 * step + 0.02


def _real_patches(shared_data, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from unetkit.io.images import read_image, read_mask

    root = shared_data / "isbi2012-em"
    paths = sorted((root / "images").glob("*.png"))[:n]
    images = np.stack([read_image(p)[:, :size, :size] for p in paths]).astype(np.float32)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    images = (images - mean) / images.std(axis=(1, 2, 3), keepdims=True)
    masks = np.stack([read_mask(root / "masks" / p.name)[:size, :size] for p in paths])
    return images, masks


def test_int8_label_maps_agree_with_fp32_on_real_images(shared_data) -> None:
    from tests.infer.test_optimize import _train_small_model

    images, masks = _real_patches(shared_data, 10, 256)
    model = _train_small_model(images[:6], masks[:6], steps=60)
    calib = [torch.from_numpy(images[i : i + 2, :, :128, :128]) for i in (0, 2, 4)]
    q = quantize_for_inference(model, calibrate(model, calib))
    x = torch.from_numpy(images[6:])  # held-out images, never seen in calibration
    with torch.inference_mode():
        ref = optimize_for_inference(model, precision="fp32")(x).argmax(1).numpy()
        got = q(x).argmax(1).numpy()
    scores = [dice(a, b, 2)[1] for a, b in zip(got, ref, strict=True)]
    assert float(np.mean(scores)) >= 0.99


def test_calibration_ranges_cover_relu_maps_from_zero() -> None:
    model = _settled_model()
    ranges = calibrate(model, [_input(model)])
    assert "encoder.blocks.0.convs.0" in ranges and "decoder.ups.0" in ranges
    for name, (lo, hi) in ranges.items():
        assert lo <= hi, name
        if ".convs." in name:  # after a ReLU
            assert lo >= 0.0, name


def test_a_percentile_range_ignores_one_hot_pixel() -> None:
    observer = int8._Observer(99.9)
    t = torch.rand(1, 1, 100, 100)
    t[0, 0, 0, 0] = 1000.0
    observer("x", t)
    assert observer.ranges["x"][1] < 2.0


def test_missing_calibration_point_is_named() -> None:
    model = _settled_model()
    ranges = calibrate(model, [_input(model)])
    del ranges["decoder.blocks.0.convs.1"]
    with pytest.raises(ValueError, match=r"decoder\.blocks\.0\.convs\.1.*calibrate"):
        quantize_for_inference(model, ranges)


def test_reduce_range_uses_seven_bits() -> None:
    assert qparams(0.0, 127.0, reduce_range=True) == (1.0, 0)
    assert qparams(0.0, 255.0, reduce_range=False) == (1.0, 0)
    scale, zero = qparams(-1.0, 1.0, reduce_range=False)
    assert zero == 128 and scale == pytest.approx(2 / 255)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"norm": "instance"}, "norm 'instance'"),
        ({"act": "leaky_relu"}, "activation 'leaky_relu'"),
    ],
)
def test_unsupported_models_are_refused_with_the_reason(kw: dict, words: str) -> None:
    model = _settled_model(**kw)
    assert words in (unsupported_reason(model) or "")
    with pytest.raises(Int8Unsupported, match=words):
        calibrate(model, [_input(model)])


def test_int8_model_reports_itself_and_restores_the_engine() -> None:
    model = _settled_model()
    q = quantize_for_inference(model, calibrate(model, [_input(model)]))
    assert isinstance(q, Int8UNet) and q.precision == "int8" and q.config == model.config
    before = torch.backends.quantized.engine
    with torch.inference_mode():
        q(_input(model))
    assert torch.backends.quantized.engine == before
