"""int8 inference: a statically quantised U-Net for x86 CPUs with VNNI (or AMX-INT8).

On a CPU whose fp32 and bf16 convolutions are the limit, 8-bit integer convolutions are the
one way left to run the same network several times faster: VNNI multiplies and adds four
8-bit pairs per lane per instruction. :func:`quantize_for_inference` turns a trained unetkit
U-Net into :class:`Int8UNet`, which runs PyTorch's quantized x86 kernels (fbgemm/oneDNN) with

* weights quantised per output channel (symmetric int8) after batch norm is folded in;
* activations quantised per tensor (uint8) with ranges measured on real inputs
  (:func:`calibrate`), one range per point where the network writes a feature map;
* the first convolution (1 to a few input channels, a tiny share of the work but the most
  sensitive to input rounding) and the 1x1 output head in fp32, so inputs and logits keep full
  precision;
* the decoder's concatenation done on two maps already quantised to the same range, the skip's
  folded batch norm as one quantized per-channel affine, and ``interp`` up-sampling as the 1x1
  convolution first, then the interpolation (they commute; the convolution then runs on a
  quarter of the pixels).

A calibration is a plain mapping ``point name -> (low, high)``, named by the state-dict names of
the modules that write the maps (:mod:`unetkit.infer.int8_run`; calibrations stored in the older
naming, ``encoder.1.conv0``, are translated on reading), and is stored with a trained model
(``metadata["int8"]``), together with how well int8 label maps agreed with fp32 on the
validation images; :func:`unetkit.infer.engine.inference_network` uses int8 by default only
where that agreement is high and the CPU has VNNI. The network is followed along the model's
public walk (:meth:`unetkit.model.UNet.forward_core`); supported: 1D/2D/3D, plain or residual
blocks (any number per level), ReLU, batch norm or none, max/avg/strided down-sampling,
transposed or interpolating up-sampling, every fusion. Anything else raises
:class:`Int8Unsupported` naming the point and option (callers fall back to fp32).
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from unetkit.hardware import cpu_features
from unetkit.infer.fold import fold_batch_norms
from unetkit.infer.int8_equalize import ChannelObserver, Factors, equalisable_maps, equalise
from unetkit.infer.int8_layers import Int8Unsupported, qparams
from unetkit.infer.int8_run import Runner, build, walk_reason
from unetkit.model import UNet

__all__ = [
    "ENGINE",
    "HEADROOM",
    "Int8UNet",
    "Int8Unsupported",
    "calibrate",
    "calibrate_percentiles",
    "channel_ranges",
    "folded_copy",
    "has_vnni",
    "int8_available",
    "layer_names",
    "quantize_for_inference",
    "translate_ranges",
    "unsupported_reason",
]

Ranges = dict[str, tuple[float, float]]

#: The quantized engine used: PyTorch's x86 backend (fbgemm and oneDNN kernels).
ENGINE = "x86"
_VNNI = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512vnni", "avxvnni")
#: How to make a calibration again, for messages.
RECALIBRATE = "run 'unetkit calibrate --model MODEL --data PATH'"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence PyTorch's notice that quantized tensor types will move out of core PyTorch
    (the pinned torch 2.13 has them; the notice is for developers, not for users)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions")
        yield


def int8_available() -> bool:
    """Whether PyTorch was built with the x86 quantized engine."""
    return ENGINE in torch.backends.quantized.supported_engines


def has_vnni() -> bool:
    """Whether this CPU multiplies 8-bit integers natively (VNNI, AVX-VNNI or AMX-INT8).

    Without it, int8 convolutions saturate 16-bit intermediates (handled by quantising
    activations to 7 bits) and are not faster than fp32, so the default path stays fp32.
    """
    return any(f in cpu_features() for f in _VNNI)


def unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot run in int8, or ``None`` if it can."""
    if not int8_available():
        return "this PyTorch build has no x86 quantized engine"
    if not isinstance(model, UNet):
        return f"only unetkit UNet models are quantised, not {type(model).__name__}"
    c = model.config
    act = c.act if isinstance(c.act, str) else c.act.get("type")
    if act != "relu":
        return f"activation {act!r} (the int8 path fuses ReLU only)"
    norm = c.norm if isinstance(c.norm, str) else c.norm.get("type")
    if norm not in ("batch", "none"):
        return f"norm {norm!r} depends on the data and cannot be folded into int8 weights"
    if c.strides is not None and any(f != 2 for row in c.strides for f in row):
        return (
            f"strides {[list(r) for r in c.strides]} (the int8 path up-samples by 2 on every "
            f"axis only; run this anisotropic model in float)"
        )
    if next(model.parameters()).device.type != "cpu":
        return "int8 inference runs on the CPU only"
    return walk_reason(model)


# --- calibration -------------------------------------------------------------------------------


class _Observer:
    """Running activation range per point: the max over batches of a high percentile.

    A percentile (``99.999`` by default) instead of the absolute extreme keeps one hot pixel
    from stretching the quantisation step of a whole map. Several percentiles are gathered in
    one pass (``ranges_at(p)``), for the calibration's percentile search.
    """

    def __init__(self, percentiles: float | Iterable[float]) -> None:
        if isinstance(percentiles, int | float):
            percentiles = (percentiles,)
        self.percentiles = tuple(float(p) for p in percentiles)
        self.by_percentile: dict[float, Ranges] = {p: {} for p in self.percentiles}

    def __call__(self, name: str, t: Tensor) -> None:
        flat = t.detach().float().reshape(-1)
        # values above each percentile, plus one
        ks = [max(1, int(flat.numel() * (1.0 - p / 100.0))) for p in self.percentiles]
        top = torch.topk(flat, max(ks), sorted=True).values
        bottom = -torch.topk(-flat, max(ks), sorted=True).values
        for p, k in zip(self.percentiles, ks, strict=True):
            lo, hi = float(bottom[k - 1]), float(top[k - 1])
            old = self.by_percentile[p].get(name)
            new = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            self.by_percentile[p][name] = new

    def ranges_at(self, percentile: float) -> Ranges:
        return self.by_percentile[float(percentile)]

    @property
    def ranges(self) -> Ranges:
        """The ranges at the first percentile."""
        return self.by_percentile[self.percentiles[0]]


#: Calibrated ranges are widened by this factor. Measured on held-out images of four real
#: datasets: images unlike the calibration patches (another microscope, in DSB 2018) drive
#: deep maps up to twice past the calibrated range, and clipping there flipped whole nuclei
#: (agreement with fp32 down to 0.57 on such images); 1.25 kept the worst held-out image of
#: DSB 2018 at 0.984 while costing at most 0.003 of mean agreement elsewhere.
HEADROOM = 1.25


def calibrate(
    model: UNet,
    batches: Iterable[Tensor],
    *,
    percentile: float = 99.999,
    headroom: float = HEADROOM,
) -> Ranges:
    """Activation ranges of ``model`` (eval mode, batch norm folded) on ``batches``.

    ``batches``: normalised inputs ``(B, C, *S)`` as the model sees them at prediction time
    (patches of real images; one or more from each of a few dozen images).
    Returns ``{point name: (low, high)}`` for :func:`quantize_for_inference`: per point, the
    ``percentile`` of each batch, the widest over batches, times ``headroom``.
    """
    return calibrate_percentiles(model, batches, (percentile,), headroom=headroom)[percentile]


def calibrate_percentiles(
    model: UNet,
    batches: Iterable[Tensor],
    percentiles: Iterable[float],
    *,
    headroom: float = HEADROOM,
    factors: Factors | None = None,
) -> dict[float, Ranges]:
    """:func:`calibrate` for several ``percentiles`` in one pass: ``{percentile: ranges}``.

    ``factors``: per-channel equalisation (:mod:`unetkit.infer.int8_equalize`) applied first;
    the ranges are then those of the equalised maps."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise Int8Unsupported(f"int8: {reason}")
    runner = Runner(folded_copy(model, factors))
    observer = _Observer(percentiles)
    with torch.inference_mode():
        for x in batches:
            runner.run(x.float(), observer)
    out: dict[float, Ranges] = {}
    for p in observer.percentiles:
        ranges = observer.ranges_at(p)
        if not ranges:
            raise ValueError("calibrate: no calibration batches were given")
        out[p] = {k: (lo * headroom, hi * headroom) for k, (lo, hi) in ranges.items()}
    return out


def channel_ranges(model: UNet, batches: Iterable[Tensor]) -> dict[str, Tensor]:
    """Per-channel absolute maxima ``(C,)`` of every map :func:`equalisable_maps` lists, on
    ``batches`` (as :func:`calibrate`), for :func:`unetkit.infer.int8_equalize.channel_factors`."""
    net = folded_copy(model)
    observer = ChannelObserver(equalisable_maps(net))
    runner = Runner(net)
    with torch.inference_mode():
        for x in batches:
            runner.run(x.float(), observer)
    return observer.ranges


def layer_names(model: UNet) -> list[str]:
    """The layers of ``model`` that run in int8 (convolutions after the input one,
    up-samplings, strided down-samplings, 1x1 reductions), in walk order: the names
    :func:`quantize_for_inference`'s ``fp32`` takes."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise Int8Unsupported(f"int8: {reason}")
    runner = Runner(folded_copy(model))
    with _quiet():
        build(runner, lambda *names: (1.0, 0))
    return list(runner.layers)


# --- stored calibrations in the first naming ---------------------------------------------------

_OLD_NAME = re.compile(
    r"^(encoder|decoder)\.(\d+)\.(conv(\d+)|shortcut|out|down|up|skip|fuse|reduce)$"
)


def _new_name(part: str, level: int, point: str, conv: str | None) -> str:
    if conv is not None:
        return f"{part}.blocks.{level}.convs.{conv}"
    if point in ("shortcut", "out"):
        return f"{part}.blocks.{level}.{'out_act' if point == 'out' else point}"
    if point == "down":  # named by the level it led into; the module is one index lower
        return f"encoder.downs.{level - 1}"
    if point == "up":
        return f"decoder.ups.{level}"
    return f"decoder.fuses.{level}" + ("" if point == "fuse" else f".{point}")


def translate_ranges(ranges: Mapping[str, Any]) -> dict[str, Any]:
    """``ranges`` with names of the first naming (``encoder.1.conv0``, ``encoder.1.down``,
    ``decoder.0.fuse``) rewritten to state-dict names (``encoder.blocks.1.convs.0``,
    ``encoder.downs.0``, ``decoder.fuses.0``); names already in that form are kept."""
    out: dict[str, Any] = {}
    for name, value in ranges.items():
        m = _OLD_NAME.match(str(name))
        out[_new_name(m[1], int(m[2]), m[3], m[4]) if m else str(name)] = value
    return out


# --- the quantised network ---------------------------------------------------------------------


def folded_copy(model: UNet, factors: Factors | None = None) -> UNet:
    """An eval-mode copy of ``model`` with its batch norms folded and ``factors`` (a
    calibration's per-channel equalisation) applied; ``model`` is not changed."""
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    fold_batch_norms(net)
    return equalise(net, factors or {})


class Int8UNet(nn.Module):
    """A U-Net quantised to int8: ``x: (B, C, *S) float32 -> (B, K, *S') float32 logits``.

    Built by :func:`quantize_for_inference`; inference only (no autograd). ``config`` is the
    float model's config, ``precision`` is ``"int8"``, ``reduce_range`` whether activations use
    7 bits (CPUs without VNNI).
    """

    precision = "int8"

    def __init__(self, runner: Runner, reduce_range: bool) -> None:
        super().__init__()
        self.runner = runner
        self.config = runner.net.config
        self.reduce_range = reduce_range
        layers = {k.replace(".", "_"): v for k, v in runner.quantized.items()}
        self.quantized = nn.ModuleDict(layers)

    def forward(self, x: Tensor) -> Tensor:
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = ENGINE
        try:
            with torch.autocast(x.device.type, enabled=False), _quiet():
                return self.runner.run(x.float())
        finally:
            torch.backends.quantized.engine = previous

    def extra_repr(self) -> str:
        return (
            f"precision=int8, reduce_range={self.reduce_range}, layers={len(self.quantized)}, "
            f"fp32_layers={len(self.runner.fp32)}"
        )

    @property
    def fp32_layers(self) -> tuple[str, ...]:
        """The layers that run in fp32, in walk order."""
        return tuple(n for n in self.runner.layers if n in self.runner.fp32)


def quantize_for_inference(
    model: UNet,
    ranges: Mapping[str, Any],
    *,
    reduce_range: bool | None = None,
    fp32: Iterable[str] = (),
    factors: Factors | None = None,
    bias: Mapping[str, Any] | None = None,
) -> Int8UNet:
    """An int8 copy of ``model`` using the activation ``ranges`` of :func:`calibrate`.

    ``fp32``: layers (names of :func:`layer_names`) kept in fp32, chosen by the calibration's
    sensitivity search (:mod:`unetkit.infer.int8_search`); their output maps are never
    rounded to 8 bits (the layers reading them run in fp32 too). ``model`` itself is not
    changed. ``ranges`` may use the first naming of points (translated,
    :func:`translate_ranges`). ``reduce_range``: quantise activations to 7 bits (``None``: yes
    where the CPU has no VNNI, whose 8-bit products would otherwise saturate). Raises
    :class:`Int8Unsupported` for a model the int8 path does not cover, and ``ValueError``
    naming the point when ``ranges`` lacks a point of this model (calibrated on another model).
    ``factors``: the calibration's per-channel equalisation (:mod:`unetkit.infer.int8_equalize`,
    exact in float), with which ``ranges`` were measured. ``bias``: the calibration's bias
    correction per int8 layer (:mod:`unetkit.infer.int8_bias`).
    """
    reason = unsupported_reason(model)
    if reason is not None:
        raise Int8Unsupported(f"int8: {reason}")
    if reduce_range is None:
        reduce_range = not has_vnni()
    ranges = translate_ranges(ranges)

    def qp(*names: str) -> tuple[float, int]:
        lo = min(_range(ranges, n)[0] for n in names)
        hi = max(_range(ranges, n)[1] for n in names)
        return qparams(lo, hi, reduce_range=reduce_range)

    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = ENGINE
    try:
        with _quiet():
            runner = Runner(folded_copy(model, factors), frozenset(fp32), bias)
            return Int8UNet(build(runner, qp), reduce_range)
    finally:
        torch.backends.quantized.engine = previous


def _range(ranges: Mapping[str, Any], name: str) -> tuple[float, float]:
    try:
        lo, hi = ranges[name]
        lo, hi = float(lo), float(hi)
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"int8 calibration: no valid range for {name!r}; calibrate this model again "
            f"({RECALIBRATE})"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(
            f"int8 calibration: range of {name!r} is not finite; calibrate this model again "
            f"({RECALIBRATE})"
        )
    return lo, hi
