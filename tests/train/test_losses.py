"""Losses against independent reference formulas written here."""

from __future__ import annotations

import math

import pytest
import torch

from unetkit.train import deep_supervision_loss, make_loss
from unetkit.train.losses import CrossEntropyLoss

IGN = 255


def _data(
    seed: int = 0, shape: tuple[int, ...] = (2, 3, 5, 4)
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return logits, target


def _ref_ce_pixels(logits: torch.Tensor, target: torch.Tensor) -> list[tuple[float, int]]:
    """(-log softmax at the true class, true class) for every pixel, by explicit loops."""
    out = []
    b, k = logits.shape[:2]
    flat = logits.reshape(b, k, -1)
    t = target.reshape(b, -1)
    for i in range(b):
        for j in range(flat.shape[2]):
            z = [float(v) for v in flat[i, :, j]]
            c = int(t[i, j])
            if c == IGN:
                continue
            lse = math.log(sum(math.exp(v) for v in z))
            out.append((lse - z[c], c))
    return out


def test_ce_matches_manual() -> None:
    logits, target = _data()
    target[0, 0, :] = IGN
    ref = _ref_ce_pixels(logits, target)
    val = make_loss("ce", ignore_index=IGN)(logits, target)
    assert float(val) == pytest.approx(sum(v for v, _ in ref) / len(ref))
    cw = [0.2, 1.0, 3.0]
    val = make_loss("ce", ignore_index=IGN, class_weights=cw)(logits, target)
    assert float(val) == pytest.approx(sum(v * cw[c] for v, c in ref) / len(ref))


def test_ce_matches_torch_without_ignore() -> None:
    logits, target = _data(1, (2, 4, 3, 3, 3))
    ref = torch.nn.functional.cross_entropy(logits, target)
    assert float(make_loss("ce")(logits, target)) == pytest.approx(float(ref))


def test_focal_gamma0_is_ce_and_gamma2_formula() -> None:
    logits, target = _data(2)
    ce = make_loss("ce")(logits, target)
    assert float(make_loss("focal", gamma=0.0)(logits, target)) == pytest.approx(float(ce))
    ref = _ref_ce_pixels(logits, target)
    alpha = [0.5, 0.25, 2.0]
    expected = sum(alpha[c] * (1 - math.exp(-v)) ** 2 * v for v, c in ref) / len(ref)
    val = make_loss("focal", alpha=alpha)(logits, target)
    assert float(val) == pytest.approx(expected)


def test_weighted_ce_uses_pixel_weights() -> None:
    logits, target = _data(3)
    w = torch.rand(target.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    ref = _ref_ce_pixels(logits, target)
    expected = sum(v * float(wi) for (v, _), wi in zip(ref, w.reshape(-1), strict=True)) / len(ref)
    assert float(make_loss("weighted_ce")(logits, target, w)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="weight"):
        make_loss("weighted_ce")(logits, target)


def _ref_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, smooth: float, bg: bool, batch: bool
) -> float:
    p = torch.softmax(logits, 1)
    k = logits.shape[1]
    scores = []
    images = [slice(None)] if batch else [slice(i, i + 1) for i in range(logits.shape[0])]
    for sl in images:
        for c in range(0 if bg else 1, k):
            pc = p[sl, c]
            gc = (target[sl] == c).double()
            scores.append(float((2 * (pc * gc).sum() + smooth) / (pc.sum() + gc.sum() + smooth)))
    return 1 - sum(scores) / len(scores)


@pytest.mark.parametrize(("bg", "batch"), [(True, False), (False, False), (True, True)])
def test_dice_matches_manual(bg: bool, batch: bool) -> None:
    logits, target = _data(4)
    loss = make_loss("dice", smooth=1.0, include_background=bg, batch_dice=batch)
    expected = _ref_dice_loss(logits, target, 1.0, bg, batch)
    assert float(loss(logits, target)) == pytest.approx(expected)


def test_dice_perfect_prediction_near_zero() -> None:
    _, target = _data(5)
    logits = 50.0 * torch.nn.functional.one_hot(target, 3).movedim(-1, 1).double()
    assert float(make_loss("dice")(logits, target)) < 1e-6
    assert float(make_loss("dice_ce")(logits, target)) < 1e-6


def test_dice_ce_is_sum() -> None:
    logits, target = _data(6)
    total = make_loss("dice_ce", dice_weight=0.3, ce_weight=2.0)(logits, target)
    parts = 0.3 * make_loss("dice")(logits, target) + 2.0 * make_loss("ce")(logits, target)
    assert float(total) == pytest.approx(float(parts))


@pytest.mark.parametrize("name", ["ce", "dice", "dice_ce", "focal", "weighted_ce"])
def test_ignored_pixels_affect_neither_value_nor_gradient(name: str) -> None:
    logits, target = _data(7)
    target[1, 2:, :] = IGN
    w = torch.ones(target.shape, dtype=torch.float64)
    loss = make_loss(name, ignore_index=IGN)
    a = logits.clone().requires_grad_(True)
    va = loss(a, target, w)
    va.backward()
    b = logits.clone()
    b[1, :, 2:, :] = torch.randn_like(b[1, :, 2:, :]) * 10  # change logits at ignored pixels
    b.requires_grad_(True)
    vb = loss(b, target, w)
    vb.backward()
    assert va.item() == pytest.approx(vb.item())
    assert a.grad is not None and b.grad is not None
    assert torch.all(a.grad[1, :, 2:, :] == 0)
    torch.testing.assert_close(a.grad, b.grad)
    assert a.grad.abs().sum() > 0


def test_all_ignored_gives_zero_with_graph() -> None:
    logits, target = _data(8)
    target[:] = IGN
    x = logits.clone().requires_grad_(True)
    v = make_loss("ce", ignore_index=IGN)(x, target)
    v.backward()
    assert v.item() == 0.0
    assert x.grad is not None and torch.all(x.grad == 0)


def test_deep_supervision_weights_and_downsampling() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    outs = [torch.randn(2, 3, 8 // 2**i, 8 // 2**i, generator=g) for i in range(3)]
    ce = CrossEntropyLoss()
    val = deep_supervision_loss(ce, outs, target)
    # reference: target at scale 2^i sampled at every 2^i-th pixel; weights 1, 1/2, 1/4 normalised
    ws = [1.0, 0.5, 0.25]
    expected = sum(
        w / sum(ws) * float(ce(o, target[:, :: 2**i, :: 2**i]))
        for i, (w, o) in enumerate(zip(ws, outs, strict=True))
    )
    assert float(val) == pytest.approx(expected, rel=1e-6)
    only_first = deep_supervision_loss(ce, outs, target, weights=[1.0, 0.0, 0.0])
    assert float(only_first) == pytest.approx(float(ce(outs[0], target)), rel=1e-6)
    with pytest.raises(ValueError, match="weights"):
        deep_supervision_loss(ce, outs, target, weights=[1.0])


def test_registry_and_bad_arguments() -> None:
    logits, target = _data(9)
    with pytest.raises(ValueError, match="name"):
        make_loss("nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ce"):
        make_loss("ce", gamma=2.0)
    with pytest.raises(ValueError, match="gamma"):
        make_loss("focal", gamma=-1.0)
    with pytest.raises(ValueError, match="ignore_index"):
        make_loss("ce", ignore_index=1.5)
    with pytest.raises(ValueError, match="target"):
        make_loss("ce")(logits, target[:, :2])
    with pytest.raises(ValueError, match="target"):
        make_loss("ce")(logits, target + 3)
    with pytest.raises(ValueError, match="logits"):
        make_loss("ce")(logits[0, 0], target[0, 0])
