"""Segmentation losses with one call signature: ``loss(logits, target, weight=None)``.

Shapes: ``logits (B, K, *spatial)`` float, ``target (B, *spatial)`` int64 with values in
``[0, K)`` or ``ignore_index``, optional ``weight (B, *spatial)`` float per-pixel weights. Every
loss returns a scalar: per-pixel losses are averaged over the non-ignored pixels (a weighted
pixel counts once in the denominator, so weights scale its contribution), and an all-ignored
batch gives 0 (still connected to the graph). Ignored pixels influence neither value nor
gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossName = Literal["ce", "dice", "dice_ce", "focal", "weighted_ce"]


def _check_inputs(
    logits: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int | None
) -> tuple[Tensor, Tensor]:
    """Validate shapes; return ``(safe_target, valid)`` with ignored pixels mapped to class 0."""
    if logits.ndim < 3:
        raise ValueError(f"logits must be (B, K, *spatial), got shape {tuple(logits.shape)}")
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"target must have shape {expected}, got {tuple(target.shape)}")
    if target.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
        raise ValueError(f"target must be an integer tensor, got {target.dtype}")
    if weight is not None and tuple(weight.shape) != expected:
        raise ValueError(f"weight must have shape {expected}, got {tuple(weight.shape)}")
    target = target.long()
    if ignore_index is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    else:
        valid = target != ignore_index
    k = logits.shape[1]
    if bool(((target < 0) | (target >= k)).logical_and_(valid).any()):
        raise ValueError(f"target has values outside [0, {k}) that are not ignore_index")
    return torch.where(valid, target, torch.zeros_like(target)), valid


def _upcast(logits: Tensor) -> Tensor:
    """Half-precision logits are computed in float32; float32/float64 are kept."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _masked_mean(per_pixel: Tensor, valid: Tensor, weight: Tensor | None) -> Tensor:
    """Mean of ``per_pixel (B, *spatial)`` over valid pixels, optionally weighted per pixel."""
    if weight is not None:
        per_pixel = per_pixel * weight
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    return per_pixel.sum() / valid.sum().clamp(min=1)


def _check_ignore(ignore_index: int | None) -> int | None:
    if ignore_index is not None and (
        not isinstance(ignore_index, int) or isinstance(ignore_index, bool)
    ):
        raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
    return ignore_index


def _class_weight_tensor(
    class_weights: Sequence[float] | Tensor | None, name: str
) -> Tensor | None:
    if class_weights is None:
        return None
    w = torch.as_tensor(class_weights, dtype=torch.float32)
    if w.ndim != 1 or bool((w < 0).any()):
        raise ValueError(f"{name} must be a 1D sequence of non-negative floats")
    return w


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy, optionally class-weighted and pixel-weighted.

    ``logits (B, K, *spatial), target (B, *spatial) -> scalar``:
    ``mean_valid( w(x) * cw[t(x)] * -log softmax(logits)[t(x)] )``.
    """

    def __init__(
        self,
        *,
        ignore_index: int | None = None,
        class_weights: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = _check_ignore(ignore_index)
        self.class_weights = _class_weight_tensor(class_weights, "class_weights")

    def per_pixel(self, logits: Tensor, target: Tensor) -> Tensor:
        """Unreduced loss ``(B, *spatial)`` (ignored pixels hold an arbitrary finite value)."""
        return self.nll(F.log_softmax(_upcast(logits), dim=1), target)

    def nll(self, logp: Tensor, target: Tensor) -> Tensor:
        """:meth:`per_pixel` from log-probabilities ``(B, K, *spatial)``."""
        nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)  # (B, *spatial)
        if self.class_weights is not None:
            if self.class_weights.numel() != logp.shape[1]:
                raise ValueError("class_weights must have one entry per class")
            nll = nll * self.class_weights.to(nll.device)[target]
        return nll

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """``(B, K, *spatial), (B, *spatial)[, (B, *spatial)] -> ()``."""
        safe, valid = _check_inputs(logits, target, weight, self.ignore_index)
        return _masked_mean(self.per_pixel(logits, safe), valid, weight)


class WeightedCrossEntropyLoss(CrossEntropyLoss):
    """Cross-entropy with a per-pixel weight map, e.g. :func:`border_weight_map` (U-Net paper).

    ``forward(logits, target, weight)`` requires ``weight (B, *spatial)``.
    """

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """``(B, K, *spatial), (B, *spatial), (B, *spatial) -> ()``."""
        if weight is None:
            raise ValueError("weight is required for weighted_ce: pass a (B, *spatial) weight map")
        return super().forward(logits, target, weight)


class FocalLoss(nn.Module):
    """Focal loss ``-alpha[t] (1 - p_t)^gamma log p_t`` (Lin et al. 2017), mean over valid pixels.

    ``gamma=0`` and ``alpha=None`` is plain cross-entropy. ``alpha`` is one weight per class.
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: Sequence[float] | Tensor | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        self.alpha = _class_weight_tensor(alpha, "alpha")
        self.ignore_index = _check_ignore(ignore_index)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """``(B, K, *spatial), (B, *spatial)[, (B, *spatial)] -> ()``."""
        safe, valid = _check_inputs(logits, target, weight, self.ignore_index)
        logp_t = F.log_softmax(_upcast(logits), dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
        p_t = logp_t.exp()
        loss = -((1.0 - p_t).clamp(min=0) ** self.gamma) * logp_t
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise ValueError("alpha must have one entry per class")
            loss = loss * self.alpha.to(loss.device)[safe]
        return _masked_mean(loss, valid, weight)


class SoftDiceLoss(nn.Module):
    """Multi-class soft Dice on softmax probabilities: ``1 - mean_c Dice_c``.

    ``Dice_c = (2 sum p_c g_c + smooth) / (sum p_c + sum g_c + smooth)`` with ``g`` the one-hot
    target; sums run over the valid pixels of each image (or of the whole batch with
    ``batch_dice=True``), weighted by ``weight`` when given. The mean runs over classes (and
    images), skipping class 0 when ``include_background=False``.
    """

    def __init__(
        self,
        *,
        smooth: float = 1.0,
        include_background: bool = True,
        batch_dice: bool = False,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        if not smooth >= 0:
            raise ValueError(f"smooth must be >= 0, got {smooth!r}")
        self.smooth = float(smooth)
        self.include_background = bool(include_background)
        self.batch_dice = bool(batch_dice)
        self.ignore_index = _check_ignore(ignore_index)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """``(B, K, *spatial), (B, *spatial)[, (B, *spatial)] -> ()``."""
        safe, valid = _check_inputs(logits, target, weight, self.ignore_index)
        return self.from_log_probs(F.log_softmax(_upcast(logits), dim=1), safe, valid, weight)

    def from_log_probs(
        self, logp: Tensor, safe: Tensor, valid: Tensor, weight: Tensor | None
    ) -> Tensor:
        """The loss from log-probabilities ``(B, K, *spatial)`` and checked targets (what
        :class:`DiceCELoss` shares with its cross-entropy).

        The one-hot target is never built: a class's overlap and target sum are sums over the
        pixels of that class (``scatter_add`` by label), the same numbers in a fraction of the
        time and memory (``benchmarks/README.md``, "steps per minute").
        """
        b, k = logp.shape[:2]
        if not self.include_background and k < 2:
            raise ValueError("include_background=False needs at least 2 classes")
        probs = logp.exp()  # (B, K, *spatial)
        m = valid.to(probs.dtype)  # (B, *spatial): the mask, times the pixel weight
        if weight is not None:
            m = m * weight.to(probs.dtype)
        labels = safe.reshape(b, -1)  # (B, X)
        p_true = probs.gather(1, safe.unsqueeze(1)).reshape(b, -1)  # (B, X)
        # sum_x (p m)(g m) per class: the masked probabilities and one-hot, multiplied
        inter = probs.new_zeros(b, k).scatter_add(1, labels, p_true * (m * m).reshape(b, -1))
        g_sum = probs.new_zeros(b, k).scatter_add(1, labels, m.reshape(b, -1))
        # sum_x p m per class as a matrix product over the pixels (a view of channels-last maps)
        pixels_last = probs.movedim(1, -1).reshape(b, -1, k)  # (B, X, K)
        p_sum = torch.bmm(m.reshape(b, 1, -1), pixels_last).squeeze(1)  # (B, K)
        if self.batch_dice:
            inter, g_sum, p_sum = inter.sum(0), g_sum.sum(0), p_sum.sum(0)
        dice = (2.0 * inter + self.smooth) / (p_sum + g_sum + self.smooth).clamp(min=1e-8)
        if not self.include_background:
            dice = dice[..., 1:]
        return 1.0 - dice.mean()


class DiceCELoss(nn.Module):
    """``dice_weight * SoftDice + ce_weight * CrossEntropy`` (nnU-Net's default pairing)."""

    def __init__(
        self,
        *,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        smooth: float = 1.0,
        include_background: bool = True,
        batch_dice: bool = False,
        class_weights: Sequence[float] | Tensor | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        if dice_weight < 0 or ce_weight < 0:
            raise ValueError("dice_weight and ce_weight must be >= 0")
        self.dice_weight, self.ce_weight = float(dice_weight), float(ce_weight)
        self.dice = SoftDiceLoss(
            smooth=smooth,
            include_background=include_background,
            batch_dice=batch_dice,
            ignore_index=ignore_index,
        )
        self.ce = CrossEntropyLoss(ignore_index=ignore_index, class_weights=class_weights)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """``(B, K, *spatial), (B, *spatial)[, (B, *spatial)] -> ()``; the targets are checked
        and the log-probabilities computed once, for both terms."""
        safe, valid = _check_inputs(logits, target, weight, self.ce.ignore_index)
        logp = F.log_softmax(_upcast(logits), dim=1)
        dice = self.dice.from_log_probs(logp, safe, valid, weight)
        ce = _masked_mean(self.ce.nll(logp, safe), valid, weight)
        return self.dice_weight * dice + self.ce_weight * ce


_LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropyLoss,
    "dice": SoftDiceLoss,
    "dice_ce": DiceCELoss,
    "focal": FocalLoss,
    "weighted_ce": WeightedCrossEntropyLoss,
}


def make_loss(name: LossName, **kwargs: object) -> nn.Module:
    """Build a loss by name (``ce``, ``dice``, ``dice_ce``, ``focal``, ``weighted_ce``).

    Keyword arguments go to the loss class; unknown ones raise ``ValueError``.
    """
    if name not in _LOSSES:
        raise ValueError(f"name must be one of {sorted(_LOSSES)}, got {name!r}")
    try:
        return _LOSSES[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad keyword arguments for loss {name!r}: {exc}") from exc


def _resize_nearest(x: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest-neighbour resize of ``(B, *spatial)`` to ``(B, *size)`` (labels stay labels)."""
    if tuple(x.shape[1:]) == tuple(size):
        return x
    y = F.interpolate(x.unsqueeze(1).double(), size=tuple(size), mode="nearest")
    return y.squeeze(1).to(x.dtype)


def deep_supervision_loss(
    loss_fn: Callable[..., Tensor],
    outputs: Sequence[Tensor],
    target: Tensor,
    weights: Sequence[float] | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Weighted sum of ``loss_fn`` over deep-supervision outputs, full resolution first.

    Args:
        loss_fn: a loss with the signature ``loss(logits, target, weight=None)``.
        outputs: ``[(B, K, *s_0), (B, K, *s_1), ...]``, ``s_0`` the target's size.
        target: ``(B, *s_0)`` int64; downsampled to each ``s_i`` by nearest neighbour, so
            labels (including ``ignore_index``) stay valid.
        weights: one weight per output; default ``1 / 2**i``. Normalised to sum to 1.
        weight: optional per-pixel weight ``(B, *s_0)``, resized like the target.

    Returns:
        scalar ``sum_i w_i * loss_fn(outputs[i], target_i, weight_i)``.
    """
    outputs = list(outputs)
    if not outputs:
        raise ValueError("outputs must hold at least one tensor")
    ws = [0.5**i for i in range(len(outputs))] if weights is None else [float(w) for w in weights]
    if len(ws) != len(outputs) or any(w < 0 for w in ws) or sum(ws) <= 0:
        raise ValueError("weights must be one non-negative number per output, not all zero")
    total = sum(ws)
    loss = outputs[0].new_zeros(())
    for w, out in zip(ws, outputs, strict=True):
        size = tuple(out.shape[2:])
        t = _resize_nearest(target, size)
        pw = None if weight is None else _resize_nearest(weight, size)
        loss = loss + (w / total) * loss_fn(out, t, pw)
    return loss
