"""The public walk: points named by state-dict names, in forward order; forward_core is the
forward without pad and crop; consumers that substitute a step reproduce the forward."""

from __future__ import annotations

import pytest
import torch

from tests import model_cases
from unetkit.model import UNet, UNetConfig
from unetkit.model.walk import KINDS, Point


@pytest.mark.parametrize("case", model_cases.cases(dims=(2,)))
def test_points_are_named_by_state_dict_module_names(case: model_cases.Case) -> None:
    model = model_cases.make_model(case)
    modules = dict(model.named_modules())
    points = model.points()
    assert len({p.name for p in points}) == len(points), "a point is named twice"
    for p in points:
        assert p.kind in KINDS
        assert modules[p.name] is p.module, p.name
    c = model.config
    kinds = [p.kind for p in points if p.kind != "deep_head"]
    blocks = sum(c.blocks_at(i) for i in range(c.depth)) + (c.depth - 1)
    assert kinds.count("block") == blocks
    assert kinds.count("down") == kinds.count("up") == kinds.count("fuse") == c.depth - 1
    assert kinds[-1] == "head"


def test_points_follow_the_forward_order_with_the_config_options() -> None:
    config = UNetConfig(widths=(4, 8, 16), down="strided", up="interp", fusion="add")
    config = config.replace(block="residual", encoder_blocks=(1, 2, 1))
    names = [(p.name, p.kind, p.option) for p in UNet(config).points()]
    assert names == [
        ("encoder.blocks.0", "block", "residual"),
        ("encoder.downs.0", "down", "strided"),
        ("encoder.blocks.1.0", "block", "residual"),
        ("encoder.blocks.1.1", "block", "residual"),
        ("encoder.downs.1", "down", "strided"),
        ("encoder.blocks.2", "block", "residual"),
        ("decoder.ups.1", "up", "interp"),
        ("decoder.fuses.1", "fuse", "add"),
        ("decoder.blocks.1", "block", "residual"),
        ("decoder.ups.0", "up", "interp"),
        ("decoder.fuses.0", "fuse", "add"),
        ("decoder.blocks.0", "block", "residual"),
        ("head", "head", "conv"),
    ]


@pytest.mark.parametrize("case", model_cases.cases())
def test_a_recording_step_reproduces_the_forward_visiting_every_point(
    case: model_cases.Case,
) -> None:
    model = model_cases.make_model(case).eval()
    x = model_cases.make_input(model)
    visited: list[str] = []

    def step(point: Point, *inputs: torch.Tensor) -> torch.Tensor:
        visited.append(point.name)
        return point.module(*inputs)

    with torch.no_grad():
        padded, original = model.prepare_input(x)
        y = model.forward_core(padded, step)
        reference = model(x)
    if original is not None:
        y = y[(slice(None), slice(None), *(slice(0, s) for s in original))]
    torch.testing.assert_close(y, reference, rtol=0, atol=0)
    assert visited == [p.name for p in model.points() if p.kind != "deep_head"]


def test_forward_core_equals_forward_on_sizes_that_need_no_padding() -> None:
    model = model_cases.make_model(model_cases.Case(2, {"block": "residual"})).eval()
    x = model_cases.make_input(model, size=(16, 24))
    with torch.no_grad():
        torch.testing.assert_close(model.forward_core(x), model(x), rtol=0, atol=0)


def test_encoder_blocks_build_a_stage_of_blocks_with_level_indexed_keys() -> None:
    model = UNet(UNetConfig(widths=(4, 8, 16), encoder_blocks=(1, 3, 2)))
    keys = model.state_dict()
    assert "encoder.blocks.0.convs.0.conv.weight" in keys  # one block: the key of before
    assert "encoder.blocks.1.2.convs.1.conv.weight" in keys  # third block of level 1
    assert "encoder.blocks.1.0.convs.0.conv.weight" in keys
    assert not any(k.startswith("encoder.blocks.1.3.") for k in keys)
    plain = UNet(UNetConfig(widths=(4, 8, 16)))
    same = UNet(UNetConfig(widths=(4, 8, 16), encoder_blocks=(1, 1, 1)))
    assert list(plain.state_dict()) == list(same.state_dict())
