"""Mixed int8/fp32: layers kept in fp32 by the calibration's sensitivity search, how they run,
how the choice is stored and explained, and that entries written before it still work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fitting import fit
from unetkit.data import make_synthetic, normalize
from unetkit.infer import engine, int8
from unetkit.infer.calibration import (
    AUTO_AGREEMENT,
    describe,
    int8_calibration,
)
from unetkit.infer.calibration_entry import Int8Calibration
from unetkit.infer.int8 import Int8UNet, calibrate, layer_names, quantize_for_inference
from unetkit.infer.int8_search import search
from unetkit.model import UNet, UNetConfig
from unetkit.modelfile import load_with_metadata, save

pytestmark = pytest.mark.skipif(not int8.int8_available(), reason="no x86 quantized engine")

SENSITIVE = "encoder.blocks.1.convs.0"
OUTLIER = 300.0


def _settled(**kw: object) -> UNet:
    torch.manual_seed(0)
    kw.setdefault("widths", (8, 16, 32))
    model = UNet(UNetConfig(**kw))  # type: ignore[arg-type]
    model.train()
    d = model.config.spatial_dims
    size = model.valid_input_sizes(40, 140)[0] if model.config.padding == "valid" else 20
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, model.config.in_channels, *([size] * d)))
    return model.eval()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"fusion": "add"},
        {"fusion": "concat_1x1", "up": "interp"},
        {"block": "residual", "down": "strided"},
        {"spatial_dims": 3, "block": "residual", "up": "interp"},
        {"spatial_dims": 1, "padding": "valid"},
    ],
    ids=str,
)
def test_with_every_layer_in_fp32_the_int8_network_computes_the_float_network(kw: dict) -> None:
    model = _settled(**kw)
    d = model.config.spatial_dims
    size = model.valid_input_sizes(40, 140)[0] if model.config.padding == "valid" else 20
    x = torch.randn(2, 1, *([size] * d), generator=torch.Generator().manual_seed(1))
    ranges = calibrate(model, [x])
    names = layer_names(model)
    q = quantize_for_inference(model, ranges, fp32=names)
    assert q.fp32_layers == tuple(names)
    with torch.inference_mode():
        ref, got = model(x), q(x)
        all_int8 = quantize_for_inference(model, ranges)(x)
    # every map float: only float rounding (the folded batch norm) is left
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(all_int8, ref, rtol=1e-4, atol=1e-4)


def test_an_fp32_layer_that_is_not_in_the_model_is_refused_by_name() -> None:
    model = _settled()
    ranges = calibrate(model, [torch.randn(1, 1, 32, 32)])
    with pytest.raises(ValueError, match=r"'decoder\.blocks\.9\.convs\.0'.*calibrate"):
        quantize_for_inference(model, ranges, fp32=["decoder.blocks.9.convs.0"])


def _with_outlier_channel(model: UNet) -> UNet:
    """``model`` with one channel of :data:`SENSITIVE`'s output made ``OUTLIER`` times larger
    and the next convolution's weights on it as much smaller: the same function in float, but
    one map whose per-tensor 8-bit range is stretched by that channel."""
    block = model.encoder.blocks[1]
    with torch.no_grad():
        norm = block.convs[0].norm
        norm.weight[0] *= OUTLIER
        norm.bias[0] *= OUTLIER
        block.convs[1].conv.weight[:, 0] /= OUTLIER
    return model


@pytest.fixture(scope="module")
def sensitive() -> tuple[UNet, list[np.ndarray], list[np.ndarray]]:
    """A small model trained on synthetic cells, then given one sensitive layer."""
    samples = make_synthetic(12, size=64, seed=0)
    images = [normalize(s.image) for s in samples]
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(8, 16, 32)))
    x = torch.from_numpy(np.stack(images[:8]))
    y = torch.from_numpy(np.stack([s.mask for s in samples[:8]]))
    model = fit(model, x, y, steps=40)
    with torch.inference_mode():
        before = model(x)
        _with_outlier_channel(model)
        torch.testing.assert_close(model(x), before, rtol=1e-3, atol=1e-3)
    return model, images[:8], images[8:]


@pytest.fixture(scope="module")
def entry(sensitive) -> dict:
    """The calibration without per-channel equalisation: the layer search alone."""
    model, train_images, held_out = sensitive
    return int8_calibration(model, train_images, held_out, patch=(48, 48), alphas=())


@pytest.fixture(scope="module")
def equalised_entry(sensitive) -> dict:
    """The default calibration, which also tries per-channel equalisation."""
    model, train_images, held_out = sensitive
    return int8_calibration(model, train_images, held_out, patch=(48, 48))


def test_equalisation_makes_the_outlier_channel_harmless_with_every_layer_int8(
    entry, equalised_entry
) -> None:
    assert entry["all_int8_agreement"] < AUTO_AGREEMENT  # per-tensor ranges: ruined
    got = equalised_entry
    assert got["equalise"]["alpha"] > 0 and SENSITIVE in got["equalise"]["factors"]
    factors = got["equalise"]["factors"][SENSITIVE]
    assert factors.index(min(factors)) == 0  # the outlier channel is the one left as it is
    assert "fp32_layers" not in got  # nothing kept in fp32
    assert got["agreement"]["foreground_dice"] >= AUTO_AGREEMENT  # held-out images
    alphas = got["search"]["alphas"]
    assert max(alphas.values()) > alphas["0.0"]


def test_the_equalised_choice_round_trips_and_runs_as_calibrated(
    sensitive, equalised_entry, tmp_path
) -> None:
    model = sensitive[0]
    path = tmp_path / "model.safetensors"
    save(model, path, metadata={"int8": equalised_entry})
    loaded, meta = load_with_metadata(path)
    calibration = Int8Calibration.from_metadata(meta["int8"])
    assert calibration is not None and calibration.to_metadata() == equalised_entry
    net = engine.inference_network(loaded, "auto" if int8.has_vnni() else "int8", meta["int8"])
    assert isinstance(net, Int8UNet)
    factors = equalised_entry["equalise"]["factors"]
    x = torch.from_numpy(np.stack(sensitive[2]))
    ranges, bias = equalised_entry["ranges"], calibration.bias
    want = quantize_for_inference(model, ranges, factors=factors, bias=bias)
    plain = quantize_for_inference(model, ranges, bias=bias)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), want(x))
        assert not torch.allclose(net(x), plain(x))
    assert any("equalised" in line for line in describe(equalised_entry))


def test_the_search_keeps_the_sensitive_layer_in_fp32_and_reaches_the_agreement(entry) -> None:
    assert SENSITIVE in entry["fp32_layers"]
    assert entry["fp32_layers"][0] == SENSITIVE  # the most sensitive first
    assert entry["all_int8_agreement"] < AUTO_AGREEMENT  # all-int8 is ruined by the outlier
    assert entry["agreement"]["foreground_dice"] >= AUTO_AGREEMENT  # held-out images
    gains = entry["search"]["sensitivity"]
    assert gains[SENSITIVE] == max(gains.values()) and gains[SENSITIVE] > 0.05
    assert entry["search"]["mixed"] > entry["search"]["all_int8"]


def test_a_model_that_agrees_all_int8_keeps_every_layer_in_int8() -> None:
    model = _settled()
    crops = [torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))]
    ranges = {99.999: calibrate(model, crops)}

    def perfect(a: object, b: object) -> float:
        return 1.0

    result = search(model, ranges, crops, perfect)
    assert result.fp32_layers == () and result.sensitivity == {} and result.mixed == 1.0


def test_the_stored_choice_round_trips_through_the_model_file(sensitive, entry, tmp_path) -> None:
    model = sensitive[0]
    path = tmp_path / "model.safetensors"
    save(model, path, metadata={"int8": entry})
    loaded, meta = load_with_metadata(path)
    calibration = Int8Calibration.from_metadata(meta["int8"])
    assert calibration is not None
    assert calibration.fp32_layers == tuple(entry["fp32_layers"])
    assert calibration.all_int8_agreement == entry["all_int8_agreement"]
    assert calibration.to_metadata() == entry
    net = engine.inference_network(loaded, "int8", meta["int8"])
    assert isinstance(net, Int8UNet) and set(net.fp32_layers) == set(entry["fp32_layers"])
    x = torch.from_numpy(np.stack(sensitive[2]))
    fp32, bias = entry["fp32_layers"], calibration.bias
    want = quantize_for_inference(model, entry["ranges"], fp32=fp32, bias=bias)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), want(x))


def test_an_entry_written_before_the_search_still_runs_all_int8(sensitive, entry) -> None:
    model = sensitive[0]
    old = {k: v for k, v in entry.items() if k not in ("fp32_layers", "all_int8_agreement")}
    old.pop("search")
    calibration = Int8Calibration.from_metadata(old)
    assert calibration is not None and calibration.fp32_layers == ()
    net = engine.inference_network(model, "int8", old)
    assert isinstance(net, Int8UNet) and net.fp32_layers == ()
    assert describe(old)[0].startswith("int8: calibrated")


def test_a_malformed_fp32_layer_list_is_no_calibration(entry) -> None:
    assert Int8Calibration.from_metadata({**entry, "fp32_layers": "head"}) is None
    assert Int8Calibration.from_metadata({**entry, "fp32_layers": [1, 2]}) is None


def test_info_explains_which_layers_stay_fp32_and_the_agreement(
    sensitive, entry, tmp_path, cli
) -> None:
    path = tmp_path / "model.safetensors"
    save(sensitive[0], path, metadata={"int8": entry})
    result = cli("info", "--model", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert SENSITIVE in out and "kept in fp32" in out
    assert f"{entry['agreement']['foreground_dice']:.4f}" in out
    assert f"all layers int8: {entry['all_int8_agreement']:.4f}" in out
