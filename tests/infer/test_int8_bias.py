"""Bias correction of int8 layers (it removes a known mean shift that weight rounding injects,
is stored with the calibration, a layer kept in fp32 ignores its own) and the cost of fp32
layers that the calibration's search weighs (multiply-adds, readers forced into fp32)."""

from __future__ import annotations

import pytest
import torch

from unetkit.infer import int8
from unetkit.infer.calibration_entry import Int8Calibration
from unetkit.infer.int8 import calibrate, layer_names, quantize_for_inference
from unetkit.infer.int8_bias import bias_corrections
from unetkit.infer.int8_cost import fp32_closure, fp32_share, layer_costs
from unetkit.infer.int8_search import Variant, best_value, search
from unetkit.model import UNet, UNetConfig

pytestmark = pytest.mark.skipif(not int8.int8_available(), reason="no x86 quantized engine")

LAYER = "decoder.blocks.0.convs.1"  # the last convolution before the fp32 head
SHARE = 0.4  # every weight but one per row is SHARE of a rounding step: int8 rounds it to 0


def _biased(**kw: object) -> UNet:
    """A U-Net whose :data:`LAYER` loses ``SHARE`` of a step on all but one weight of each
    output channel when rounded to int8: its int8 output is shifted down by a known amount."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(8, 16), norm="none", **kw)).eval()  # type: ignore[arg-type]
    conv = model.decoder.blocks[0].convs[1].conv
    with torch.no_grad():
        step = 1e-3
        conv.weight.fill_(SHARE * step)
        conv.weight[:, 0, 1, 1] = 127 * step  # sets each row's int8 step to `step`
        conv.bias.fill_(0.01)
    return model


def _inputs() -> torch.Tensor:
    return torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))


def _mean_error(model: UNet, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per class, the mean over pixels of int8 minus float logits: ``(K,)``."""
    with torch.inference_mode():
        return (net(x) - model(x)).mean(dim=(0, 2, 3))


def test_bias_correction_removes_a_known_mean_shift_injected_by_weight_rounding() -> None:
    model, x = _biased(), _inputs()
    ranges = calibrate(model, [x])
    corrections = bias_corrections(model, [x], ranges)
    assert set(corrections) == set(layer_names(model))
    # the injected shift: SHARE of a step lost on every weight but one, summed over the
    # layer's float input windows (taken here by a hook on the plain model), averaged
    conv = model.decoder.blocks[0].convs[1].conv
    seen: list[torch.Tensor] = []
    hook = conv.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.inference_mode():
        model(x)
    hook.remove()
    lost = torch.full_like(conv.weight[:1], SHARE * 1e-3)
    lost[:, 0, 1, 1] = 0
    expected = float(torch.nn.functional.conv2d(seen[0], lost, padding=1).mean())
    delta = torch.tensor(corrections[LAYER])
    torch.testing.assert_close(delta, torch.full_like(delta, expected), rtol=1e-3, atol=1e-6)
    before = _mean_error(model, quantize_for_inference(model, ranges), x)
    after = _mean_error(model, quantize_for_inference(model, ranges, bias=corrections), x)
    assert before.abs().max() > 5 * after.abs().max()


def test_a_layer_kept_in_fp32_ignores_its_correction_and_unknown_layers_are_refused() -> None:
    model, x = _biased(), _inputs()
    ranges = calibrate(model, [x])
    huge = {LAYER: [100.0] * 8}
    kept = quantize_for_inference(model, ranges, fp32=[LAYER], bias=huge)
    plain = quantize_for_inference(model, ranges, fp32=[LAYER])
    with torch.inference_mode():
        torch.testing.assert_close(kept(x), plain(x))
        assert not torch.allclose(quantize_for_inference(model, ranges, bias=huge)(x), plain(x))
    with pytest.raises(ValueError, match=r"'decoder\.blocks\.7\.convs\.0'.*calibrate"):
        quantize_for_inference(model, ranges, bias={"decoder.blocks.7.convs.0": [0.0]})
    with pytest.raises(ValueError, match=r"3 values.*8 output channels"):
        quantize_for_inference(model, ranges, bias={LAYER: [0.0] * 3})


@pytest.mark.parametrize("kw", [{"up": "interp"}, {"block": "residual", "down": "strided"}])
def test_corrections_cover_every_int8_layer_of_other_options(kw: dict) -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(8, 16, 32), **kw)).eval()  # type: ignore[arg-type]
    x = torch.randn(2, 1, 24, 24, generator=torch.Generator().manual_seed(2))
    ranges = calibrate(model, [x])
    corrections = bias_corrections(model, [x], ranges)
    assert set(corrections) == set(layer_names(model))
    net = quantize_for_inference(model, ranges, bias=corrections)
    with torch.inference_mode():
        assert net(x).shape == model(x).shape


def test_the_correction_round_trips_through_the_stored_entry() -> None:
    entry = Int8Calibration(ranges={"a": (0.0, 1.0)}, bias={LAYER: (0.5, -0.25)})
    back = Int8Calibration.from_metadata(entry.to_metadata())
    assert back is not None and back.bias == {LAYER: (0.5, -0.25)}
    assert Int8Calibration.from_metadata({"ranges": {}, "bias_correction": {"x": "no"}}) is None


def test_the_cost_aware_search_prefers_the_cheaper_of_two_equally_helpful_layers() -> None:
    gains = {"deep": 0.002, "shallow": 0.002, "strong": 0.01}
    assert best_value(gains, {"deep": 0.05, "shallow": 0.3}) == "deep"
    assert best_value(gains, {"deep": 0.05, "shallow": 0.05 + 1e-9}) == "deep"
    # more than proportionally more helpful wins though dearer
    assert best_value(gains, {"deep": 0.05, "strong": 0.2}) == "strong"


def test_a_layer_in_fp32_costs_its_readers_too() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(8, 16, 32))).eval()
    x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    ranges = calibrate(model, [x])
    costs = layer_costs(model, x)
    assert set(costs) == set(layer_names(model))
    # a 3x3 convolution 8 -> 8 channels at full resolution: 8 * 8 * 9 per pixel, and it reads
    # and writes 8 channels of 32 x 32; the next level's first reads 8 and writes 16 at 16 x 16
    assert costs["encoder.blocks.0.convs.1"] == (8 * 8 * 9 * 32 * 32, 2 * 8 * 32 * 32)
    assert costs["encoder.blocks.1.convs.0"] == (16 * 8 * 9 * 16 * 16, (8 + 16) * 16 * 16)
    up = costs["decoder.ups.0"]  # transposed 2x2: 16 -> 8 channels, 16 x 16 -> 32 x 32
    assert up == (16 * 8 * 4 * 16 * 16, 16 * 16 * 16 + 8 * 32 * 32)
    skip = fp32_closure(model, ranges, ["encoder.blocks.0.convs.1"], x)
    # the skip's readers: the next level (through pooling) and the level-0 decoder block
    assert {"encoder.blocks.1.convs.0", "decoder.blocks.0.convs.0"} <= skip
    deep = fp32_closure(model, ranges, ["decoder.blocks.0.convs.1"], x)
    assert deep == {"decoder.blocks.0.convs.1"}  # the head reads it in fp32 anyway
    assert fp32_share(costs, skip) > fp32_share(costs, deep)
    assert fp32_share(costs, layer_names(model)) == pytest.approx(1.0)
    # same multiply-adds, eight times the map values: the full-resolution layer costs more
    toy = {"full": (100, 80), "deep": (100, 10)}
    assert fp32_share(toy, ["full"]) == pytest.approx((0.5 + 80 / 90) / 2)
    assert fp32_share(toy, ["full"]) > fp32_share(toy, ["deep"])


def test_the_search_stops_all_int8_once_the_held_out_images_agree_with_margin() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(8, 16))).eval()
    crops = [torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))]
    ranges = {99.99: calibrate(model, crops)}

    def poor(a: object, b: object) -> float:  # the crops never reach the search target
        return 0.99

    checked: list[tuple[str, ...]] = []

    def held_out(variant: Variant) -> float:
        checked.append(variant.fp32)
        return 0.999

    result = search(model, ranges, crops, poor, check=held_out, check_target=0.996)
    assert result.fp32_layers == () and result.sensitivity == {} and checked == [()]
    assert result.checked == {(): 0.999}
    # without the held-out check the same crops send layers to fp32
    assert search(model, ranges, crops, poor).sensitivity != {}
