"""Which layers int8 keeps in fp32, and which activation percentile: the calibration's search.

A network quantised layer by layer loses agreement with fp32 unevenly: most layers cost nothing
measurable, a few (an outlier channel that stretches a map's range, the last maps before the
head) cost most of it. :func:`search` finds them on crops of calibration images:

1. *percentile and equalisation*: all-int8 agreement for each candidate activation percentile
   (ranges of every percentile come from one calibration pass,
   :func:`unetkit.infer.int8.calibrate_percentiles`), without and with each candidate
   per-channel equalisation (:mod:`unetkit.infer.int8_equalize`); the best is kept, then the
   bias correction (:mod:`unetkit.infer.int8_bias`) where it raises the agreement;
2. *enough?*: all-int8 stops here when it reaches the target on the crops, or the ``--precision
   auto`` threshold with a margin on the calibration's own held-out images (``check``);
3. *sensitivity*: each layer alone in fp32 (the rest int8), the agreement gained;
4. *selection, cost-aware*: layers go to fp32 one at a time, the most agreement gained per
   work moved to fp32 first (multiply-adds and map values, the layer's own and those of the
   readers it forces into fp32, :mod:`unetkit.infer.int8_cost`), until the crops reach the
   target or the held-out images the threshold with its margin (at most
   :data:`MAX_FP32_FRACTION` of the layers and :data:`MAX_FP32_COST` of the work; a model that
   needs more is left to fp32 by ``--precision auto``).

Agreement is the caller's (foreground Dice of label maps, :mod:`unetkit.infer.calibration`);
crops are ``(B, C, *S)`` normalised batches. Ties are broken by the fraction of pixels whose
label changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from unetkit.infer.int8 import layer_names, quantize_for_inference
from unetkit.infer.int8_bias import Corrections
from unetkit.infer.int8_cost import fp32_closure, fp32_share, layer_costs
from unetkit.infer.int8_equalize import Factors
from unetkit.model import UNet

Ranges = Mapping[str, tuple[float, float]]
#: ``agreement(a, b) -> float``: how well label maps ``a`` agree with reference maps ``b``.
Agreement = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float]

#: Agreement the search aims for on its crops: above the 0.995 that ``--precision auto`` needs
#: on held-out images, so that the choice carries over to images the search did not see.
SEARCH_TARGET = 0.997
#: At most this share of the int8 layers is kept in fp32 (beyond it int8 loses its speed).
MAX_FP32_FRACTION = 0.25
#: At most this share of the int8 work runs in fp32 (the kept layers and their readers).
MAX_FP32_COST = 0.25


@dataclass(frozen=True)
class Variant:
    """One int8 variant of a model: its ranges, fp32 layers, equalisation and bias correction
    (the arguments of :func:`unetkit.infer.int8.quantize_for_inference`)."""

    ranges: Ranges
    fp32: tuple[str, ...]
    factors: Factors
    bias: Corrections


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search` chose and measured (agreements on its crops).

    Attributes:
        percentile: the chosen activation percentile; ``ranges``: its calibrated ranges.
        fp32_layers: the layers kept in fp32, most sensitive first.
        all_int8: agreement with every layer in int8 (at ``percentile``).
        mixed: agreement with ``fp32_layers`` in fp32.
        percentiles: all-int8 agreement per percentile tried.
        sensitivity: per layer tried alone in fp32, the agreement gained over all-int8.
        crops: number of crops measured.
        alpha: the chosen equalisation strength (0: none); ``factors``: its per-channel factors.
        alphas: the best all-int8 agreement per equalisation strength tried.
        bias: the bias correction kept (empty: none); ``without_bias``: all-int8 agreement
            before it.
        checked: agreement on the calibration's held-out images, per fp32 set checked.
        cost: share of the int8 work (:func:`unetkit.infer.int8_cost.fp32_share`) that
            ``fp32_layers`` and their readers run in fp32.
    """

    percentile: float
    ranges: Ranges
    fp32_layers: tuple[str, ...]
    all_int8: float
    mixed: float
    percentiles: Mapping[float, float] = field(default_factory=dict)
    sensitivity: Mapping[str, float] = field(default_factory=dict)
    crops: int = 0
    alpha: float = 0.0
    factors: Factors = field(default_factory=dict)
    alphas: Mapping[float, float] = field(default_factory=dict)
    bias: Corrections = field(default_factory=dict)
    without_bias: float = 0.0
    checked: Mapping[tuple[str, ...], float] = field(default_factory=dict)
    cost: float = 0.0


def label_maps(logits: Tensor) -> list[np.ndarray]:
    """``(B, K, *S)`` logits -> ``B`` label maps ``(*S)`` (``K == 1``: logit > 0)."""
    if logits.shape[1] == 1:
        labels = (logits[:, 0] > 0).to(torch.uint8)
    else:
        labels = logits.argmax(1).to(torch.uint8)
    return list(labels.numpy())


class _Scorer:
    """Agreement of int8 variants of one model against its fp32 label maps on fixed crops."""

    def __init__(self, model: UNet, crops: Sequence[Tensor], agreement: Agreement) -> None:
        self.model, self.crops, self.agreement = model, list(crops), agreement
        with torch.inference_mode():
            self.reference = [m for x in self.crops for m in label_maps(model(x.float()))]

    def __call__(
        self,
        ranges: Ranges,
        fp32: Sequence[str],
        factors: Factors | None = None,
        bias: Corrections | None = None,
    ) -> tuple[float, float]:
        """``(agreement, fraction of pixels whose label changed)`` for this variant."""
        net = quantize_for_inference(self.model, ranges, fp32=fp32, factors=factors, bias=bias)
        with torch.inference_mode():
            maps = [m for x in self.crops for m in label_maps(net(x.float()))]
        flips = np.mean([np.mean(a != b) for a, b in zip(maps, self.reference, strict=True)])
        return float(self.agreement(maps, self.reference)), float(flips)


def best_value(gains: Mapping[str, float], costs: Mapping[str, float]) -> str:
    """The layer of ``costs`` with the most agreement gained per share of work moved to fp32
    (``gains``: gained alone in fp32; ``costs``: the share it adds, readers included); of equal
    value, the cheaper."""
    return max(costs, key=lambda k: (gains[k] / max(costs[k], 1e-6), -costs[k]))


def search(
    model: UNet,
    ranges_by_percentile: Mapping[float, Ranges],
    crops: Sequence[Tensor],
    agreement: Agreement,
    *,
    target: float = SEARCH_TARGET,
    max_fraction: float = MAX_FP32_FRACTION,
    max_cost: float = MAX_FP32_COST,
    equalised: Mapping[float, tuple[Factors, Mapping[float, Ranges]]] | None = None,
    bias: Callable[[Factors, Ranges], Corrections] | None = None,
    check: Callable[[Variant], float] | None = None,
    check_target: float = 1.0,
) -> SearchResult:
    """Choose the percentile, the equalisation, the bias correction and the fp32 layers of
    ``model`` (module doc).

    ``ranges_by_percentile``: ``{percentile: ranges}`` (at least one); ``crops``: normalised
    ``(B, C, *S)`` batches the model accepts. ``equalised``: ``{alpha: (factors, {percentile:
    ranges of the equalised maps})}`` for each equalisation strength to try. ``bias(factors,
    ranges)``: the bias correction of a variant (:mod:`unetkit.infer.int8_bias`), kept where it
    raises the crops' agreement. ``check(variant)``: agreement on the calibration's held-out
    images; the search stops once it reaches ``check_target``. Raises ``ValueError`` without
    ranges or crops.
    """
    if not ranges_by_percentile:
        raise ValueError("int8 search: no calibrated ranges")
    if not crops:
        raise ValueError("int8 search: no crops to measure agreement on")
    model = model.eval()
    score = _Scorer(model, crops, agreement)
    n = sum(int(x.shape[0]) for x in crops)
    candidates: dict[tuple[float, float], tuple[Ranges, Factors]] = {
        (0.0, p): (r, {}) for p, r in ranges_by_percentile.items()
    }
    for alpha, (factors, by_percentile) in (equalised or {}).items():
        candidates.update({(float(alpha), p): (r, factors) for p, r in by_percentile.items()})
    tried = {key: score(r, (), f) for key, (r, f) in candidates.items()}
    alpha, percentile = max(tried, key=lambda k: (tried[k][0], -tried[k][1], -k[0]))
    ranges, factors = candidates[(alpha, percentile)]
    base, base_flips = tried[(alpha, percentile)]
    percentiles = {p: a for (al, p), (a, _) in tried.items() if al == alpha}
    alphas = {al: max(a for (b, _), (a, _) in tried.items() if b == al) for al, _ in tried}
    corrections: Corrections = {}
    without = base
    if bias is not None:
        found = bias(factors, ranges)
        a, flips = score(ranges, (), factors, found)
        if (a, -flips) > (base, -base_flips):
            corrections, base, base_flips = found, a, flips
    variant = Variant(ranges, (), factors, corrections)
    chosen = {"alpha": alpha, "factors": factors, "alphas": alphas, "bias": corrections,
              "without_bias": without}
    checked = {(): check(variant)} if check is not None else {}
    if base >= target or checked.get((), 0.0) >= check_target:
        return SearchResult(
            percentile, ranges, (), base, base, percentiles, {}, n, **chosen, checked=checked
        )
    layers = layer_names(model)
    alone = {name: score(ranges, (name,), factors, corrections) for name in layers}
    sensitivity = {k: alone[k][0] - base for k in layers}
    probe = crops[0][:1]
    costs = layer_costs(model, probe)

    def closure(kept: Sequence[str]) -> frozenset[str]:
        return fp32_closure(model, ranges, kept, probe, factors=factors)

    budget = max(1, math.floor(max_fraction * len(layers)))
    best: tuple[tuple[float, float], tuple[str, ...]] = ((base, -base_flips), ())
    kept: list[str] = []
    running: frozenset[str] = frozenset()
    helpful = [k for k in layers if sensitivity[k] > 0]
    while helpful and len(kept) < budget:
        # the most agreement gained per work moved to fp32 (the layer and its readers)
        extra = {k: fp32_share(costs, closure([*kept, k]) - running) for k in helpful}
        name = best_value(sensitivity, extra)
        helpful.remove(name)
        if fp32_share(costs, running) + extra[name] > max_cost:
            continue
        kept.append(name)
        running = closure(kept)
        helpful = [k for k in helpful if k not in running]
        a, flips = score(ranges, kept, factors, corrections)
        if (a, -flips) > best[0]:
            best = ((a, -flips), tuple(kept))
        if check is not None and a > base:
            checked[tuple(kept)] = check(Variant(ranges, tuple(kept), factors, corrections))
        if a >= target or checked.get(tuple(kept), 0.0) >= check_target:
            best = ((a, -flips), tuple(kept))
            break
    (mixed, _), fp32 = best
    return SearchResult(
        percentile, ranges, fp32, base, mixed, percentiles, sensitivity, n, **chosen,
        checked=checked, cost=fp32_share(costs, closure(fp32)),
    )


__all__ = [
    "MAX_FP32_COST",
    "MAX_FP32_FRACTION",
    "SEARCH_TARGET",
    "SearchResult",
    "Variant",
    "best_value",
    "label_maps",
    "search",
]
