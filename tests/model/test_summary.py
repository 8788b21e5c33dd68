"""Summary numbers against independent counts: FLOPs, receptive field, memory, valid sizes."""

from __future__ import annotations

import pytest
import torch

from unetkit.model import UNet, UNetConfig, preset_config, summarize
from unetkit.model import sizes as sz


def test_classic_unet_costs_about_96_gflop_at_256() -> None:
    # The figure quoted for the width-64 five-level U-Net at 256x256 (multiply-add = 2).
    s = summarize(preset_config("unet2d_classic"), 256)
    assert s.total_flops / 1e9 == pytest.approx(96.2, rel=0.01)


def test_flops_of_a_small_model_match_a_hand_count() -> None:
    c = UNetConfig(spatial_dims=1, widths=(4, 8), in_channels=1, out_channels=2, norm="none")
    n = 32
    expected = 0
    expected += 2 * (1 * 3 * 4) * n + 2 * (4 * 3 * 4) * n  # encoder level 0
    expected += 2 * (4 * 3 * 8) * (n // 2) + 2 * (8 * 3 * 8) * (n // 2)  # level 1 (after pool)
    expected += 2 * (8 * 4 * 2) * (n // 2)  # transposed conv: each input to 4 outputs x 2 taps
    expected += 2 * (8 * 3 * 4) * n + 2 * (4 * 3 * 4) * n  # decoder block on 2x4 channels
    expected += 2 * (4 * 2) * n  # head
    assert summarize(c, n).total_flops == expected


@pytest.mark.parametrize("blocks", [None, (1, 2, 2)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_receptive_field_matches_the_measured_gradient_support(
    padding: str, blocks: tuple[int, ...] | None
) -> None:
    torch.manual_seed(0)
    c = UNetConfig(
        spatial_dims=1,
        widths=(4, 8, 16),
        padding=padding,
        norm="none",
        act="leaky_relu",
        encoder_blocks=blocks,
    )
    model = UNet(c).double()
    n = 100 if padding == "valid" else 160
    x = torch.randn(1, 1, n, dtype=torch.double, requires_grad=True)
    y = model(x)
    widest = 0
    for p in range(y.shape[-1]):
        (g,) = torch.autograd.grad(y[0, 0, p], x, retain_graph=True)
        nz = (g[0, 0] != 0).nonzero()
        if len(nz):
            widest = max(widest, int(nz.max() - nz.min() + 1))
    assert widest == sz.receptive_field(c)


def test_checkpointing_lowers_the_activation_estimate() -> None:
    plain = summarize(preset_config("unet2d_small"), 128)
    enc = summarize(preset_config("unet2d_small", checkpointing="encoder"), 128)
    full = summarize(preset_config("unet2d_small", checkpointing="all"), 128)
    assert full.activation_bytes < enc.activation_bytes < plain.activation_bytes
    assert full.total_flops == plain.total_flops


@pytest.mark.parametrize("blocks", [None, (2, 1, 1)])
def test_valid_sizes_agree_with_running_the_model(blocks: tuple[int, ...] | None) -> None:
    c = UNetConfig(spatial_dims=1, widths=(4, 8, 16), padding="valid", encoder_blocks=blocks)
    model = UNet(c).eval()
    valid = set(sz.valid_input_sizes(c, 1, 80))
    assert valid, "some lengths up to 80 must be valid"
    for n in range(1, 81):
        x = torch.randn(1, 1, n)
        if n in valid:
            with torch.no_grad():
                assert model(x).shape[-1] == sz.output_size(c, n)[0]
        else:
            with pytest.raises(ValueError):
                model(x)
    below, above = sz.nearest_valid_sizes(c, 50)
    assert below in valid and above in valid and below <= 50 <= above


def test_paper_summary_reports_valid_sizes_and_shapes() -> None:
    s = summarize(preset_config("unet2d_ronneberger2015"), 572)
    assert s.output_shape == (1, 2, 388, 388)
    assert s.rows[0].encoder_shape == (1, 64, 568, 568)
    assert s.rows[4].encoder_shape == (1, 1024, 28, 28)
    assert s.valid_sizes["below"] == 572 and s.valid_sizes["above"] == 572
    assert s.conv_layers == 23
    assert "388" in s.format_table()
