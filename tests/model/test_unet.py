"""The shared model tester: every preset and option across 1D/2D/3D and odd sizes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from tests import model_cases
from unetkit.model import UNet, UNetConfig, count_parameters, create_model

BASE = model_cases.BASE
_id = model_cases.option_id


@pytest.mark.parametrize("case", model_cases.cases(padding="same"))
def test_same_mode_shape_and_gradients(case: model_cases.Case) -> None:
    model = model_cases.make_model(case)
    x = model_cases.make_input(model)
    y = model(x)
    assert y.shape == (2, 3, *model_cases.ODD[case.spatial_dims])
    assert torch.isfinite(y).all()
    (y.square().mean()).backward()
    for name, p in model.named_parameters():
        if name.startswith("deep_heads"):
            continue  # used by forward_deep_supervision only
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"up": "interp", "down": "strided"},
        {"block": "residual", "fusion": "add"},
        {"encoder_blocks": (1, 2, 1), "block": "residual"},
    ],
    ids=_id,
)
def test_valid_mode_output_size_matches_arithmetic(spatial_dims: int, options: dict) -> None:
    config = UNetConfig(spatial_dims=spatial_dims, padding="valid", **BASE, **options)
    model = UNet(config).eval()
    sizes = model.valid_input_sizes(20, 60)
    assert sizes, "some sizes in 20..60 must be valid for a depth-3 model"
    n = sizes[0]
    shape = (n,) * spatial_dims
    with torch.no_grad():
        y = model(torch.randn(1, 2, *shape))
    assert tuple(y.shape[2:]) == model.output_size(shape)
    # Every size the model calls invalid really fails the arithmetic, with a clear message.
    bad = next(m for m in range(n + 1, n + 30) if m not in sizes)
    with pytest.raises(ValueError, match="nearest valid sizes"):
        model(torch.randn(1, 2, *((bad,) * spatial_dims)))


@pytest.mark.parametrize("name", model_cases.PRESETS)
def test_every_preset_runs_forward_and_backward(name: str) -> None:
    if name in model_cases.LARGE_PRESETS:
        pytest.skip("large: covered by the arithmetic and summary tests")
    model = model_cases.make_model(name)
    c = model.config
    x = model_cases.make_input(model)
    y = model(x)
    assert y.shape[:2] == (2, c.out_channels)
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_paper_preset_572_to_388_with_23_convs_and_known_parameters() -> None:
    model = create_model("unet2d_ronneberger2015")
    assert model.output_size(572) == (388, 388)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert len(convs) == 23
    # Parameters recomputed from the paper's description, independently of the code:
    # per level two 3x3 convs; 2x2 up-convs halving channels; a 1x1 head to 2 classes.
    w = [64, 128, 256, 512, 1024]
    expected = 0
    cin = 1
    for c in w:
        expected += (cin * 9 + 1) * c + (c * 9 + 1) * c
        cin = c
    for i in range(3, -1, -1):
        expected += (w[i + 1] * 4 + 1) * w[i]  # up-conv 2x2
        expected += (2 * w[i] * 9 + 1) * w[i] + (w[i] * 9 + 1) * w[i]
    expected += (64 + 1) * 2
    assert count_parameters(model) == expected == 31_030_658


def test_state_dict_keys_are_stable_unique_and_level_indexed() -> None:
    a = create_model("unet2d_small").state_dict()
    b = create_model("unet2d_small").state_dict()
    assert list(a) == list(b)
    prefixes = {k.split(".")[0] + "." + k.split(".")[1] for k in a if k.count(".") > 1}
    assert prefixes == {
        "encoder.blocks",
        "encoder.downs",
        "decoder.ups",
        "decoder.fuses",
        "decoder.blocks",
    } - {"encoder.downs"}  # max-pool has no parameters
    assert "encoder.blocks.0.convs.0.conv.weight" in a
    assert "decoder.blocks.0.convs.1.norm.running_mean" in a
    model = create_model("unet2d_small", checkpointing=True, deep_supervision=True)
    params = list(model.parameters())
    assert len({p.data_ptr() for p in params}) == len(params), "a parameter is registered twice"
    assert len(dict(model.named_parameters())) == len(params)


def _decoder_block_params(fusion: str, c: int) -> int:
    model = UNet(UNetConfig(widths=(c, 2 * c), fusion=fusion, norm="none"))
    n = count_parameters(model.decoder.blocks[0])
    if fusion == "concat_1x1":
        n += count_parameters(model.decoder.fuses[0])
    return n


@pytest.mark.parametrize("c", [32, 64, 128])
def test_concat_costs_fifty_percent_more_and_1x1_recovers_most(c: int) -> None:
    add = _decoder_block_params("add", c)
    none = _decoder_block_params("none", c)
    concat = _decoder_block_params("concat", c)
    reduced = _decoder_block_params("concat_1x1", c)
    assert add == none
    assert concat / add == pytest.approx(1.5, abs=0.01)
    saving = (concat - reduced) / (concat - add)
    assert saving > 0.7, "the 1x1 reduction should recover most of the extra parameters"


@pytest.mark.parametrize("mode", ["encoder", "all"])
@pytest.mark.parametrize("options", [{}, {"block": "residual", "dropout": 0.3}], ids=_id)
def test_checkpointing_gives_identical_outputs_gradients_and_statistics(
    mode: str, options: dict
) -> None:
    config = UNetConfig(widths=(4, 8, 16, 32), in_channels=1, **options)
    torch.manual_seed(1)
    plain = UNet(config)
    ckpt = UNet(config.replace(checkpointing=mode))
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 24, 20)
    outs, grads = [], []
    for model in (plain, ckpt):
        torch.manual_seed(7)  # same dropout mask
        y = model(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-6)
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6)
    # Batch-norm running statistics are updated once, not again during recomputation.
    for (name, a), b in zip(plain.state_dict().items(), ckpt.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def _smooth_images(n: int, size: int) -> torch.Tensor:
    """Natural-image-like inputs (1/f-ish): real EM crops when present, else smoothed noise."""
    from scipy import ndimage

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(n, size, size, generator=g).numpy()
    smooth = torch.from_numpy(ndimage.gaussian_filter(noise, sigma=(0, 1.5, 1.5)).astype("float32"))
    return (smooth / smooth.std())[:, None]


def _level_moments(model: UNet, x: torch.Tensor) -> list[float]:
    moments: list[float] = []
    blocks = list(model.encoder.blocks) + list(model.decoder.blocks)[::-1]
    hooks = [
        b.register_forward_hook(lambda m, i, o: moments.append(o.square().mean().item()))
        for b in blocks
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return moments


def test_fan_in_init_keeps_second_moment_within_factor_two_per_level() -> None:
    torch.manual_seed(0)
    x = _smooth_images(4, 128)
    for down, up in itertools.product(["maxpool", "avgpool", "strided"], ["transpose"]):
        config = UNetConfig(widths=(32, 64, 128, 256, 512), norm="none", down=down, up=up)
        moments = _level_moments(UNet(config), x)
        ratios = [b / a for a, b in itertools.pairwise(moments)]
        assert all(0.5 <= r <= 2.0 for r in ratios), (down, up, moments)
    # PyTorch's default init, by contrast, loses most of the signal at the first levels.
    default = _level_moments(
        UNet(UNetConfig(widths=(32, 64, 128, 256, 512), norm="none", init="default")), x
    )
    assert min(b / a for a, b in itertools.pairwise(default)) < 0.2


def test_kaiming_uses_true_fan_in_after_concat_and_for_transposed_convs() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(64, 128), norm="none"))
    first_dec = model.decoder.blocks[0].convs[0].conv  # sees 2 x 64 channels
    assert first_dec.weight.shape[1] == 128
    assert first_dec.weight.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.05)
    up = model.decoder.ups[0].conv  # (in=128, out=64, 2, 2): each output sees 128 inputs
    assert up.weight.std().item() == pytest.approx(math.sqrt(1 / 128), rel=0.05)


def test_deep_supervision_is_a_named_method_and_forward_returns_one_tensor() -> None:
    model = UNet(UNetConfig(widths=(4, 8, 16, 32), deep_supervision=True)).eval()
    x = torch.randn(1, 1, 21, 30)
    with torch.no_grad():
        y = model(x)
        outs = model.forward_deep_supervision(x)
    assert isinstance(y, torch.Tensor)
    assert [tuple(o.shape[2:]) for o in outs] == [(21, 30), (11, 15), (6, 8)]
    torch.testing.assert_close(outs[0], y)
    with pytest.raises(ValueError, match="deep_supervision"):
        UNet(UNetConfig(widths=(4, 8, 16))).forward_deep_supervision(x)


def test_odd_sizes_keep_alignment_no_one_pixel_shift() -> None:
    """Same mode pads only at the far end, so an odd-sized signal is processed on the same
    pooling grid as a longer one: outputs agree exactly away from the far border. A centred
    pad (a one-pixel shift of the grid) would break this equality."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(spatial_dims=1, widths=(4, 8, 16), act="leaky_relu")).eval()
    long = torch.randn(1, 1, 301)
    short = long[..., :201]  # odd length, not a multiple of 4
    with torch.no_grad():
        y_long, y_short = model(long), model(short)
    margin = 60  # beyond the receptive field (44) of the far border
    torch.testing.assert_close(y_short[..., : 201 - margin], y_long[..., : 201 - margin])
    # The same comparison with the signal shifted by one pixel does not agree.
    with torch.no_grad():
        y_shift = model(long[..., 1:202])
    assert not torch.allclose(
        y_shift[..., : 200 - margin], y_long[..., 1 : 201 - margin], atol=1e-4
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("spatial_dims", 4),
        ("widths", ()),
        ("widths", (8, 0)),
        ("kernel_size", 4),
        ("padding", "full"),
        ("down", "stride"),
        ("up", "deconv"),
        ("fusion", "cat"),
        ("norm", "layer"),
        ("norm", {"type": "group", "groups": 0}),
        ("act", "tanh"),
        ("norm_placement", "middle"),
        ("block", "dense"),
        ("dropout", 1.5),
        ("init", "xavier"),
        ("in_channels", 0),
        ("checkpointing", "some"),
        ("encoder_blocks", (1, 2)),
        ("encoder_blocks", (1, 0, 2, 2)),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field.split(".")[0]):
        UNetConfig(**{field: value})
