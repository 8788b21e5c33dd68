"""Per-channel equalisation for int8: exact in float, the factors of hand-made ranges, refusals."""

from __future__ import annotations

import pytest
import torch

from unetkit.infer import int8
from unetkit.infer.int8 import channel_ranges, folded_copy
from unetkit.infer.int8_equalize import channel_factors, equalisable_maps, equalise
from unetkit.model import UNet, UNetConfig

pytestmark = pytest.mark.skipif(not int8.int8_available(), reason="no x86 quantized engine")


def _model(**kw: object) -> UNet:
    torch.manual_seed(0)
    kw.setdefault("widths", (8, 16, 32))
    model = UNet(UNetConfig(**kw)).eval()  # type: ignore[arg-type]
    with torch.no_grad():  # batch norms that do something when folded
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-1, 1)
    return model


@pytest.mark.parametrize(
    "kw",
    [{}, {"up": "interp"}, {"padding": "valid"}, {"spatial_dims": 3}, {"norm": "none"}],
    ids=str,
)
def test_equalised_network_computes_the_same_float_function(kw: dict) -> None:
    model = _model(**kw)
    d = model.config.spatial_dims
    size = model.valid_input_sizes(40, 140)[0] if model.config.padding == "valid" else 16
    x = torch.randn(2, 1, *([size] * d), generator=torch.Generator().manual_seed(1))
    plain = folded_copy(model)
    edges = equalisable_maps(plain)
    factors = channel_factors(channel_ranges(model, [x]), 1.0, edges)
    assert factors and set(factors) <= set(edges)
    assert any(max(v) > 2 for v in factors.values())  # something was actually rescaled
    with torch.inference_mode():
        torch.testing.assert_close(equalise(folded_copy(model), factors)(x), plain(x),
                                   rtol=1e-4, atol=1e-4)


def test_the_decoder_concatenations_and_the_maps_inside_blocks_are_equalisable() -> None:
    edges = equalisable_maps(folded_copy(_model()))
    assert {"decoder.fuses.0", "decoder.fuses.1", "encoder.blocks.0.convs.0"} <= set(edges)
    assert "encoder.blocks.1.convs.1" in edges  # a skip: read by the next level and the fusion
    assert edges["decoder.fuses.0"].channels == 16  # 8 up-sampled + 8 skip channels


def test_residual_blocks_are_left_alone() -> None:
    assert equalisable_maps(folded_copy(_model(block="residual"))) == {}


def test_factors_of_hand_made_ranges() -> None:
    edges = {"m": type("E", (), {"channels": 4})()}
    ranges = {"m": torch.tensor([8.0, 2.0, 0.0, 1e-6])}
    full = channel_factors(ranges, 1.0, edges)["m"]  # type: ignore[arg-type]
    # widest stays, 4x narrower is widened 4x, an all-zero channel is left, a tiny one capped
    assert full == pytest.approx([1.0, 4.0, 1.0, 100.0])
    half = channel_factors(ranges, 0.5, edges)["m"]  # type: ignore[arg-type]
    assert half == pytest.approx([1.0, 2.0, 1.0, 10.0])
    assert channel_factors(ranges, 0.0, edges) == {}  # type: ignore[arg-type]


def test_factors_that_do_not_fit_the_model_are_refused_by_name() -> None:
    net = folded_copy(_model())
    with pytest.raises(ValueError, match=r"'decoder\.fuses\.0'.*calibrate"):
        equalise(net, {"decoder.fuses.0": [1.0, 2.0]})
    with pytest.raises(ValueError, match="not positive"):
        equalise(net, {"decoder.fuses.0": [1.0] * 15 + [-1.0]})


def test_rounding_the_input_convolution_does_its_relu_exactly(monkeypatch) -> None:
    from unetkit.infer import int8_run
    from unetkit.infer.int8 import calibrate, quantize_for_inference

    model = _model()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    net = quantize_for_inference(model, calibrate(model, [x]))
    assert net.runner._relu_in_rounding(model.encoder.blocks[0], "encoder.blocks.0.convs.0")
    with torch.inference_mode():
        fused = net(x)
        monkeypatch.setattr(int8_run.Runner, "_relu_in_rounding", lambda *a: False)
        separate = net(x)
    assert torch.equal(fused, separate)
