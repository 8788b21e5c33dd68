"""Anisotropic U-Nets: per-level, per-axis ``strides`` and ``kernel_sizes`` in ``UNetConfig``.

The default (``None``) is today's model; explicit isotropic values build the same network; an
anisotropic model pools an axis only where its stride says so, and the valid-size arithmetic,
tiling, export and int8 follow it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.infer import predict_full
from unetkit.infer.int8 import unsupported_reason
from unetkit.infer.tiling import plan_tiles, valid_margin
from unetkit.model import UNet, UNetConfig, sizes
from unetkit.model.summary import summarize

STRIDES = ((1, 2, 2), (2, 2, 2))
KERNELS = ((1, 3, 3), (3, 3, 3), (3, 3, 3))


def _model(seed: int = 0, **kw: object) -> UNet:
    torch.manual_seed(seed)
    base = {"spatial_dims": 3, "widths": (4, 8, 16), "strides": STRIDES, "kernel_sizes": KERNELS}
    return UNet(UNetConfig(**{**base, **kw})).eval()  # type: ignore[arg-type]


def test_explicit_isotropic_values_build_the_default_network() -> None:
    torch.manual_seed(0)
    default = UNet(UNetConfig(spatial_dims=2, widths=(4, 8, 16))).eval()
    torch.manual_seed(0)
    explicit = UNet(
        UNetConfig(
            spatial_dims=2, widths=(4, 8, 16), strides=((2, 2), (2, 2)), kernel_sizes=(3, 3, 3)
        )
    ).eval()
    assert list(default.state_dict()) == list(explicit.state_dict())
    x = torch.randn(1, 1, 13, 22)
    with torch.no_grad():
        torch.testing.assert_close(default(x), explicit(x), rtol=0, atol=0)


def test_an_integer_entry_means_every_axis_and_factors_multiply() -> None:
    c = UNetConfig(
        spatial_dims=3, widths=(4, 8, 16), strides=((1, 2, 2), 2), kernel_sizes=(1, 3, 3)
    )
    assert c.strides == ((1, 2, 2), (2, 2, 2))
    assert c.kernel_sizes == ((1, 1, 1), (3, 3, 3), (3, 3, 3))
    assert c.downsample_factors == (2, 4, 4)
    assert c.downsample_factor == 4  # a multiple of it works on every axis
    assert UNetConfig(spatial_dims=2).downsample_factors == (8, 8)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("strides", ((1, 2, 2),), "strides: expected 2 entries"),
        ("strides", ((1, 2), (2, 2)), "strides: expected 2 entries .* each 3 positive"),
        ("strides", ((0, 2, 2), (2, 2, 2)), "strides"),
        ("kernel_sizes", ((1, 3, 3), (3, 3, 3)), "kernel_sizes: expected 3 entries"),
        ("kernel_sizes", ((2, 3, 3), (3, 3, 3), (3, 3, 3)), "odd positive integers"),
        ("kernel_sizes", "3", "kernel_sizes"),
    ],
)
def test_bad_anisotropy_is_named(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        UNetConfig(spatial_dims=3, widths=(4, 8, 16), **{field: value})  # type: ignore[arg-type]


def test_the_coarse_axis_is_not_pooled_until_its_stride_says_so() -> None:
    model = _model()
    skips = model.encoder(torch.randn(1, 1, 8, 32, 32))
    assert [tuple(s.shape[2:]) for s in skips] == [(8, 32, 32), (8, 16, 16), (4, 8, 8)]
    assert model.encoder.blocks[0].convs[0].conv.kernel_size == (1, 3, 3)
    assert model.decoder.blocks[0].convs[0].conv.kernel_size == (1, 3, 3)
    assert model.decoder.ups[0].conv.stride == (1, 2, 2)
    # odd sizes: padded per axis (2 along the coarse axis, 4 in-plane) and cropped back
    with torch.no_grad():
        assert model(torch.randn(2, 1, 5, 13, 10)).shape == (2, 2, 5, 13, 10)
        ds = _model(deep_supervision=True, widths=(4, 8, 16))
        outs = ds.forward_deep_supervision(torch.randn(1, 1, 5, 13, 10))
    assert [tuple(o.shape[2:]) for o in outs] == [(5, 13, 10), (5, 7, 5)]


def test_a_depth_wise_point_stays_in_its_section_at_the_first_level() -> None:
    """With a 1-wide kernel and stride 1 along z, level 0 never mixes sections: changing one
    section changes level-0 features of that section only."""
    model = _model(norm="none")
    x = torch.randn(1, 1, 4, 16, 16)
    y = x.clone()
    y[0, 0, 2] += 1.0
    with torch.no_grad():
        a, b = model.encoder.blocks[0](x), model.encoder.blocks[0](y)
    changed = (a - b).abs().amax(dim=(0, 1, 3, 4))
    assert changed[2] > 0 and changed[[0, 1, 3]].max() == 0


def test_valid_sizes_are_per_axis_and_match_the_forward_pass() -> None:
    model = _model(padding="valid", norm="none")
    c = model.config
    z = sizes.valid_input_sizes(c, 1, 60, axis=0)
    xy = sizes.valid_input_sizes(c, 1, 60, axis=1)
    assert z[:3] == [18, 20, 22] and xy[:3] == [44, 48, 52]
    assert sizes.axis_is_valid(c, 19, axis=0) is False
    shape = (z[1], xy[0], xy[2])
    with torch.no_grad():
        out = model(torch.randn(1, 1, *shape)).shape[2:]
    assert tuple(out) == sizes.output_size(c, shape) == (4, 4, 12)
    with pytest.raises(ValueError, match=r"axis 1 .* nearest valid sizes are 44 or 48"):
        sizes.output_size(c, (18, 45, 44))
    assert [sizes.receptive_field(c, a) for a in range(3)] == [18, 44, 44]
    assert [valid_margin(c, a) for a in range(3)] == [8, 20, 20]


def test_valid_overlap_tiles_of_an_anisotropic_model_equal_one_pass() -> None:
    model = _model(padding="valid", norm="none")
    image = np.random.default_rng(3).normal(size=(1, 11, 50, 45)).astype(np.float32)
    plan = plan_tiles(model.config, image.shape[1:], (20, 48, 48))
    assert plan.num_tiles > 1
    got = predict_full(model, image, tile=(20, 48, 48)).probabilities
    whole = predict_full(model, image, tile="whole").probabilities
    assert got is not None and whole is not None
    np.testing.assert_allclose(got, whole, atol=2e-5)


def test_same_mode_tiles_start_on_each_axis_pooling_grid() -> None:
    plan = plan_tiles(_model().config, (30, 70, 70), (7, 30, 30), overlap=0.5)
    z, y, _ = plan.axes
    assert z.tile_in == 6 and all(s % 2 == 0 for s in z.starts)  # factor 2 along z
    assert y.tile_in == 28 and all(s % 4 == 0 for s in y.starts)


def test_summary_reports_each_axis() -> None:
    s = summarize(_model(padding="valid").config, (20, 48, 48))
    assert s.receptive_fields == (18, 44, 44)
    text = s.format_table()
    assert "strides=[[1, 2, 2], [2, 2, 2]]" in text and "18x44x44 px" in text
    assert "valid sizes, axis 0" in text and "[18, 20, 22, 24] (step 2)" in text


def test_int8_refuses_strides_other_than_two_by_name() -> None:
    reason = unsupported_reason(_model(norm="batch", kernel_sizes=None))
    assert reason is not None and "strides [[1, 2, 2], [2, 2, 2]]" in reason


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_anisotropic_model_exports_to_onnx_matching_eager(tmp_path, padding: str) -> None:
    pytest.importorskip("onnxruntime")
    from unetkit.export import export_model

    model = _model(padding=padding)
    report = export_model(model, tmp_path / "m.onnx", "onnx", {}, input_size=(8, 48, 48))
    assert report.max_abs_diff < 1e-4
    tiling = report.settings["tiling"]
    if padding == "same":
        assert tiling["step_multiple"] == [2, 4, 4]
    else:
        assert tiling["margin"] == [8, 20, 20]
