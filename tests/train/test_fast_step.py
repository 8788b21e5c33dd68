"""What makes a training step faster keeps its numbers: in-place activations give the same
loss and gradients as out-of-place ones, and Dice + cross-entropy without a one-hot target the
one-hot formula's loss and gradients."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unetkit.model import UNet, UNetConfig

IN_PLACE = (nn.ReLU, nn.LeakyReLU, nn.SiLU)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 24, 24, generator=gen).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 3, (2, 24, 24), generator=gen)


def _loss_and_grads(model: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x, y = _batch()
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"block": "residual", "act": "leaky_relu"},
        {"act": "silu", "norm": "group", "fusion": "add"},
        {"norm": "none", "checkpointing": "all"},
    ],
    ids=["plain-relu-batch", "residual-leaky", "silu-group-add", "no-norm-checkpointed"],
)
def test_in_place_activations_give_the_same_loss_and_gradients(options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=(4, 8, 16), out_channels=3, **options))
    model = model.to(memory_format=torch.channels_last).train()
    acts = [m for m in model.modules() if isinstance(m, IN_PLACE)]
    assert acts and all(m.inplace for m in acts)
    reference = copy.deepcopy(model)
    for m in reference.modules():
        if isinstance(m, IN_PLACE):
            m.inplace = False
    loss, grads = _loss_and_grads(model)
    ref_loss, ref_grads = _loss_and_grads(reference)
    assert torch.equal(loss, ref_loss)
    assert len(grads) == len(ref_grads) == len(list(model.parameters()))
    for g, r in zip(grads, ref_grads, strict=True):
        assert torch.equal(g, r)


def test_an_explicit_inplace_false_is_kept() -> None:
    model = UNet(UNetConfig(widths=(4, 8), act={"type": "relu", "inplace": False}))
    acts = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert acts and not any(m.inplace for m in acts)


def _one_hot_dice_ce(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, ignore: int, batch: bool
) -> torch.Tensor:
    """The documented formula with an explicit one-hot target (the former implementation)."""
    valid = target != ignore
    safe = torch.where(valid, target, torch.zeros_like(target))
    probs = F.softmax(logits, dim=1)
    onehot = F.one_hot(safe, logits.shape[1]).movedim(-1, 1).float()
    m = (valid.float() * weight).unsqueeze(1)
    p, g = probs * m, onehot * m
    dims = (0, 2, 3) if batch else (2, 3)
    dice = (2 * (p * g).sum(dims) + 1.0) / (p.sum(dims) + g.sum(dims) + 1.0)
    nll = -F.log_softmax(logits, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    ce = (nll * weight * valid).sum() / valid.sum()
    return (1.0 - dice.mean()) + ce


@pytest.mark.parametrize("batch_dice", [False, True])
def test_dice_ce_without_a_one_hot_matches_the_one_hot_formula(batch_dice: bool) -> None:
    from unetkit.train.losses import DiceCELoss

    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 12, 10, generator=gen).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 5, (3, 12, 10), generator=gen)
    target[0, :4] = 255  # ignored
    weight = torch.rand(3, 12, 10, generator=gen) + 0.5
    grads = []
    losses = []
    for fn in (
        lambda x: DiceCELoss(ignore_index=255, batch_dice=batch_dice)(x, target, weight),
        lambda x: _one_hot_dice_ce(x, target, weight, 255, batch_dice),
    ):
        x = logits.clone().requires_grad_()
        loss = fn(x)
        loss.backward()
        losses.append(loss.detach())
        grads.append(x.grad)
    assert torch.allclose(losses[0], losses[1], rtol=1e-6, atol=1e-7)
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-8)
    assert grads[0][0, :, :4].abs().max() == 0  # ignored pixels get no gradient
