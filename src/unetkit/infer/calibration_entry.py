"""The int8 calibration entry a model file carries, as a frozen dataclass (a leaf module).

Read by the inference engine (which decides whether int8 runs) and written by the calibration
(:mod:`unetkit.infer.calibration`); neither needs the other's code, so both import this. In a
model file's metadata it is the plain mapping :meth:`Int8Calibration.to_metadata` returns::

    {"ranges": {point: [low, high]}, "percentile": 99.999, "headroom": 1.25, "patches": 32,
     "weights_sha256": "...", "agreement": {"foreground_dice": 0.998, "images": 6},
     "fp32_layers": ["decoder.blocks.0.convs.1"], "all_int8_agreement": 0.991,
     "search": {"target": 0.997, "crops": 16, "all_int8": 0.990, "mixed": 0.998,
                "percentiles": {"99.999": 0.990}, "sensitivity": {layer: gain}},
     "equalise": {"alpha": 0.5, "factors": {point: [m_0, m_1, ...]}},
     "bias_correction": {layer: [d_0, d_1, ...]}, "bf16_agreement": 0.993}

``fp32_layers``, ``all_int8_agreement`` and ``search`` come from the sensitivity search
(:mod:`unetkit.infer.int8_search`); entries written before it lack them (no fp32 layers).
``equalise`` is the per-channel equalisation the search chose (:mod:`unetkit.infer.int8_equalize`;
absent: none, as in older entries). ``bias_correction`` is added to the int8 layers' biases
(:mod:`unetkit.infer.int8_bias`; absent: none). ``bf16_agreement`` is the same agreement for the
bf16 float path, which ``auto`` takes only where it is at least :data:`AUTO_AGREEMENT` (absent:
not measured, as in older entries).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Mean foreground Dice between int8 and fp32 label maps needed for int8 to be the default.
AUTO_AGREEMENT = 0.995


@dataclass(frozen=True)
class Int8Calibration:
    """Activation ranges of a model and how well int8 agreed with fp32 on held-out images.

    Attributes:
        ranges: calibration point name -> ``(low, high)`` activation range.
        percentile, headroom: how the ranges were taken (percentile of values, widening).
        patches: number of calibration patches.
        weights_sha256: digest of the calibrated weights
            (:func:`unetkit.modelfile.weights_digest`); ``None`` in older entries.
        agreement: mean foreground Dice of int8 against fp32 label maps, or ``None`` when no
            held-out image was available; ``agreement_images``: on how many images.
        fp32_layers: layers kept in fp32 (the rest runs in int8), most sensitive first.
        all_int8_agreement: the agreement on the same images with every layer in int8
            (measured when ``fp32_layers`` is not empty).
        search: what the sensitivity search measured on its crops (see the module doc).
        alpha: strength of the per-channel equalisation (0: none); ``factors``: its per-channel
            factors by map, with which ``ranges`` were measured.
        bias: per int8 layer, the values added to its quantised bias (bias correction).
        bf16_agreement: the agreement of bf16 label maps with fp32 on the same held-out
            images, or ``None`` (not measured).
    """

    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    percentile: float | None = None
    headroom: float | None = None
    patches: int = 0
    weights_sha256: str | None = None
    agreement: float | None = None
    agreement_images: int = 0
    fp32_layers: tuple[str, ...] = ()
    all_int8_agreement: float | None = None
    search: Mapping[str, Any] = field(default_factory=dict)
    alpha: float = 0.0
    factors: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    bias: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    bf16_agreement: float | None = None

    @classmethod
    def from_metadata(cls, entry: Any) -> Int8Calibration | None:
        """The entry of a model file's ``metadata["int8"]``; ``None`` when there is none or its
        ranges are not ``{name: [low, high]}``."""
        if not isinstance(entry, Mapping) or not isinstance(entry.get("ranges"), Mapping):
            return None
        try:
            ranges = {str(k): (float(v[0]), float(v[1])) for k, v in entry["ranges"].items()}
        except (TypeError, ValueError, IndexError, KeyError):
            return None
        images = entry.get("agreement", {})
        layers = entry.get("fp32_layers", [])
        if not isinstance(layers, list | tuple) or not all(isinstance(x, str) for x in layers):
            return None
        before = entry.get("all_int8_agreement")
        bf16 = entry.get("bf16_agreement")
        search = entry.get("search", {})
        equalise = entry.get("equalise", {})
        try:
            factors = {
                str(k): tuple(float(m) for m in v)
                for k, v in (equalise.get("factors") or {}).items()
            }
            alpha = float(equalise.get("alpha", 0.0))
            bias = {
                str(k): tuple(float(d) for d in v)
                for k, v in (entry.get("bias_correction") or {}).items()
            }
        except (AttributeError, TypeError, ValueError):
            return None
        return cls(
            ranges=ranges,
            percentile=entry.get("percentile"),
            headroom=entry.get("headroom"),
            patches=int(entry.get("patches", 0) or 0),
            weights_sha256=entry.get("weights_sha256"),
            agreement=agreement_of(entry),
            agreement_images=int(images.get("images", 0)) if isinstance(images, Mapping) else 0,
            fp32_layers=tuple(layers),
            all_int8_agreement=float(before) if isinstance(before, int | float) else None,
            search=dict(search) if isinstance(search, Mapping) else {},
            alpha=alpha,
            factors=factors,
            bias=bias,
            bf16_agreement=float(bf16) if isinstance(bf16, int | float) else None,
        )

    def to_metadata(self) -> dict[str, Any]:
        """The plain mapping stored in a model file (see the module doc)."""
        out: dict[str, Any] = {
            "ranges": {k: [lo, hi] for k, (lo, hi) in sorted(self.ranges.items())},
            "percentile": self.percentile,
            "headroom": self.headroom,
            "patches": self.patches,
            "weights_sha256": self.weights_sha256,
        }
        if self.agreement is not None:
            out["agreement"] = {
                "foreground_dice": self.agreement,
                "images": self.agreement_images,
            }
        if self.fp32_layers:
            out["fp32_layers"] = list(self.fp32_layers)
        if self.all_int8_agreement is not None:
            out["all_int8_agreement"] = self.all_int8_agreement
        if self.search:
            out["search"] = dict(self.search)
        if self.factors:
            out["equalise"] = {
                "alpha": self.alpha,
                "factors": {k: list(v) for k, v in sorted(self.factors.items())},
            }
        if self.bias:
            out["bias_correction"] = {k: list(v) for k, v in sorted(self.bias.items())}
        if self.bf16_agreement is not None:
            out["bf16_agreement"] = self.bf16_agreement
        return out

    @property
    def agrees(self) -> bool:
        """Whether the measured agreement is enough for int8 to be the default."""
        return self.agreement is not None and self.agreement >= AUTO_AGREEMENT


def agreement_of(entry: Mapping[str, Any] | None) -> float | None:
    """The measured int8/fp32 agreement of a metadata entry, or ``None``."""
    if not isinstance(entry, Mapping):
        return None
    value = entry.get("agreement", {})
    dice = value.get("foreground_dice") if isinstance(value, Mapping) else None
    return float(dice) if isinstance(dice, int | float) else None
