"""Time and class conditioning in the same blocks (FiLM), and self-attention levels.

The properties: with conditioning off nothing changes (golden tests); a freshly built
conditioned model computes exactly the plain model with the same weights (FiLM and attention
start as the identity); once trained, ``t`` and the class change the output; the walk lists
every layer; bad calls and configs raise naming the argument.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests import model_cases
from unetkit.model import UNet, UNetConfig, summarize

COND: dict[str, Any] = {"time_conditioning": True, "norm": "group", "act": "silu"}


def conditioned(dims: int = 2, **extra: Any) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(spatial_dims=dims, **{**model_cases.BASE, **COND, **extra}))


def perturb(model: UNet, names: tuple[str, ...] = ("film", "attention.proj")) -> None:
    """Give the zero-initialised conditioning layers random weights (as training would)."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(n in name for n in names):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_a_fresh_conditioned_model_computes_the_plain_model_with_the_same_weights(
    dims: int,
) -> None:
    model = conditioned(dims, num_class_labels=3, attention_levels=(1, 2)).eval()
    plain = UNet(
        model.config.replace(time_conditioning=False, num_class_labels=0, attention_levels=())
    ).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    assert any(".film." in k for k in unexpected) and "time_embed.mlp.0.weight" in unexpected
    x = model_cases.make_input(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.tensor([3.0, 700.0])), plain(x), rtol=0, atol=0)


def test_the_noise_level_and_the_class_change_the_output_once_film_has_weights() -> None:
    model = conditioned(num_class_labels=4).eval()
    perturb(model)
    x = model_cases.make_input(model)
    with torch.no_grad():
        y0 = model(x, 0, torch.tensor([1, 2]))
        y1 = model(x, 500, torch.tensor([1, 2]))
        y2 = model(x, 0, torch.tensor([3, 2]))
        y_null = model(x, 0)  # no labels: the null class
        y_null2 = model(x, 0, torch.tensor([4, 4]))
    assert y0.shape == (2, 3, *x.shape[2:])
    assert not torch.allclose(y0, y1)
    assert not torch.allclose(y0[0], y2[0]) and torch.allclose(y0[1], y2[1])
    torch.testing.assert_close(y_null, y_null2, rtol=0, atol=0)


def test_attention_levels_add_attention_to_those_levels_only_and_it_acts() -> None:
    model = conditioned(attention_levels=(2,)).eval()
    keys = {k.rsplit(".attention.", 1)[0] for k in model.state_dict() if ".attention." in k}
    assert keys == {"encoder.blocks.2"}  # the bottleneck level has no decoder block
    model = conditioned(attention_levels=(1,), encoder_blocks=(1, 2, 1)).eval()
    keys = {k.rsplit(".attention.", 1)[0] for k in model.state_dict() if ".attention." in k}
    assert keys == {"encoder.blocks.1.1", "decoder.blocks.1"}
    x = model_cases.make_input(model)
    with torch.no_grad():
        before = model(x, 10)
        perturb(model, ("attention.proj",))
        after = model(x, 10)
    assert not torch.allclose(before, after)


def test_every_parameter_gets_a_gradient_once_trained_a_step() -> None:
    model = conditioned(num_class_labels=2, attention_levels=(1,))
    perturb(model)
    x = model_cases.make_input(model)
    model(x, torch.tensor([1, 9]), torch.tensor([0, 1])).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_walk_lists_the_embeddings_and_forward_core_runs_every_point() -> None:
    model = conditioned(num_class_labels=2, attention_levels=(1,)).eval()
    points = model.points()
    assert [p.name for p in points[:2]] == ["time_embed", "class_embed"]
    assert {p.kind for p in points[:2]} == {"embed"}
    covered = {p.name for p in points}
    for name, _ in model.named_parameters():
        assert any(name.startswith(c + ".") for c in covered), name
    seen: list[str] = []

    def step(point: Any, *inputs: torch.Tensor) -> torch.Tensor:
        seen.append(point.name)
        return point.module(*inputs)

    x = model_cases.make_input(model, size=(16, 16))
    with torch.no_grad():
        y = model.forward_core(x, step, t=torch.tensor([1.0, 2.0]), labels=torch.tensor([0, 1]))
        torch.testing.assert_close(y, model(x, torch.tensor([1.0, 2.0]), torch.tensor([0, 1])))
    assert seen == [p.name for p in points if p.kind != "deep_head"]


def test_int8_refuses_a_conditioned_model_by_name() -> None:
    from unetkit.infer.int8_run import walk_reason

    reason = walk_reason(conditioned())
    assert reason is not None and reason.startswith("time_embed is a embed")


def test_summary_of_a_conditioned_model() -> None:
    s = summarize(conditioned(num_class_labels=2, attention_levels=(2,)).config, 16)
    assert s.rows[0].encoder_shape[1] == 4


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, x: m(x), "time-conditioned"),
        (lambda m, x: m(x, torch.zeros(3)), r"t: expected a number or shape \(2,\)"),
        (lambda m, x: m(x, 1, torch.tensor([0, 5])), r"labels: expected class indices in 0\.\.2"),
        (lambda m, x: m(x, 1, torch.tensor([0.0, 1.0])), "labels: expected integer"),
    ],
)
def test_bad_calls_of_a_conditioned_model_raise_naming_the_argument(call: Any, match: str) -> None:
    model = conditioned(num_class_labels=3)
    with pytest.raises(ValueError, match=match):
        call(model, model_cases.make_input(model))


def test_a_plain_model_refuses_t_and_labels() -> None:
    model = model_cases.make_model(model_cases.Case(2))
    with pytest.raises(ValueError, match="not time-conditioned"):
        model(model_cases.make_input(model), 3)
    cond = conditioned()
    with pytest.raises(ValueError, match="no class conditioning"):
        cond(model_cases.make_input(cond), 3, torch.tensor([0, 0]))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_class_labels": 3}, "num_class_labels: class conditioning"),
        ({"attention_levels": (3,)}, r"attention_levels: expected resolution levels in 0\.\.2"),
        ({"time_conditioning": "yes"}, "time_conditioning: expected true or false"),
        ({"time_embed_dim": -1}, "time_embed_dim: expected an integer >= 0"),
    ],
)
def test_bad_conditioning_configs_raise_naming_the_field(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        UNetConfig(**{**model_cases.BASE, **options})


def test_old_configs_load_with_conditioning_off() -> None:
    c = UNetConfig(**model_cases.BASE, attention_levels=[1])  # YAML gives lists
    assert c.attention_levels == (1,)
    assert UNetConfig().time_conditioning is False and UNetConfig().embed_dim == 128
