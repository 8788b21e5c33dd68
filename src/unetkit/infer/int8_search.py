"""Which layers int8 keeps in fp32, and which activation percentile: the calibration's search.

A network quantised layer by layer loses agreement with fp32 unevenly: most layers cost nothing
measurable, a few (an outlier channel that stretches a map's range, the last maps before the
head) cost most of it. :func:`search` finds them on crops of calibration images:

1. *percentile and equalisation*: all-int8 agreement for each candidate activation percentile
   (ranges of every percentile come from one calibration pass,
   :func:`unetkit.infer.int8.calibrate_percentiles`), without and with each candidate
   per-channel equalisation (:mod:`unetkit.infer.int8_equalize`); the best is kept;
2. *sensitivity*: each layer alone in fp32 (the rest int8), the agreement gained;
3. *selection*: the most sensitive layers go to fp32 one at a time, most sensitive first, until
   the agreement reaches the target (at most :data:`MAX_FP32_FRACTION` of the layers; a model
   that needs more is left to fp32 by ``--precision auto``).

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
        self, ranges: Ranges, fp32: Sequence[str], factors: Factors | None = None
    ) -> tuple[float, float]:
        """``(agreement, fraction of pixels whose label changed)`` for this variant."""
        net = quantize_for_inference(self.model, ranges, fp32=fp32, factors=factors)
        with torch.inference_mode():
            maps = [m for x in self.crops for m in label_maps(net(x.float()))]
        flips = np.mean([np.mean(a != b) for a, b in zip(maps, self.reference, strict=True)])
        return float(self.agreement(maps, self.reference)), float(flips)


def search(
    model: UNet,
    ranges_by_percentile: Mapping[float, Ranges],
    crops: Sequence[Tensor],
    agreement: Agreement,
    *,
    target: float = SEARCH_TARGET,
    max_fraction: float = MAX_FP32_FRACTION,
    equalised: Mapping[float, tuple[Factors, Mapping[float, Ranges]]] | None = None,
) -> SearchResult:
    """Choose the percentile, the equalisation and the fp32 layers of ``model`` (module doc).

    ``ranges_by_percentile``: ``{percentile: ranges}`` (at least one); ``crops``: normalised
    ``(B, C, *S)`` batches the model accepts. ``equalised``: ``{alpha: (factors, {percentile:
    ranges of the equalised maps})}`` for each equalisation strength to try. Raises
    ``ValueError`` without ranges or crops.
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
    chosen_variant = {"alpha": alpha, "factors": factors, "alphas": alphas}
    if base >= target:
        return SearchResult(
            percentile, ranges, (), base, base, percentiles, {}, n, **chosen_variant
        )
    layers = layer_names(model)
    alone = {name: score(ranges, (name,), factors) for name in layers}
    order = sorted(layers, key=lambda k: (-alone[k][0], alone[k][1]))
    sensitivity = {k: alone[k][0] - base for k in order}
    budget = max(1, math.floor(max_fraction * len(layers)))
    best: tuple[tuple[float, float], tuple[str, ...]] = ((base, -base_flips), ())
    chosen: list[str] = []
    for name in order[:budget]:
        chosen.append(name)
        a, flips = score(ranges, chosen, factors)
        if (a, -flips) > best[0]:
            best = ((a, -flips), tuple(chosen))
        if a >= target:
            break
    (mixed, _), fp32 = best
    return SearchResult(
        percentile, ranges, fp32, base, mixed, percentiles, sensitivity, n, **chosen_variant
    )


__all__ = ["MAX_FP32_FRACTION", "SEARCH_TARGET", "SearchResult", "label_maps", "search"]
