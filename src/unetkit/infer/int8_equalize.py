"""Per-channel activation ranges for int8, by equalising channels before quantisation.

The quantized kernels round a whole map with one scale. Where a few channels span a far wider
range than the rest (at the decoder's concatenations the up-sampled half and the skip half often
differ by an order of magnitude), the narrow channels keep only a few of the 256 levels. A
positive per-channel factor ``m`` passes exactly through ReLU, max/avg pooling, zero padding,
crops and the skip's folded batch norm, so a map can be multiplied by ``m`` at its producers
(the output channels of the convolutions, up-convolution or skip affine that write it) and
divided by ``m`` at its readers (the input channels of the convolutions that read it): the float
network is unchanged, while the int8 one quantises every channel of the map at a range close to
its own (per-channel activation ranges inside per-tensor kernels).

:func:`equalisable_maps` lists the maps this holds for, following the model's walk: inside plain
blocks, block outputs (skips and decoder outputs) and the fused maps of ``concat`` decoders whose
batch norm folded (the default U-Net). Maps next to anything else (residual sums, strided or
``concat_1x1`` points, a norm that did not fold) are left alone. :func:`channel_factors` turns
measured per-channel ranges into factors ``(R / r_c) ** alpha`` (``R``: the map's widest
channel; ``alpha`` 0 is no equalisation, 1 full, 0.5 the compromise with the readers' per-channel
weight rounding, which grows by ``m``); :func:`equalise` applies them in place to a folded copy.
Factors are stored with the calibration as ``{map name: [m_0, m_1, ...]}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unetkit.infer.fold import FoldedFuse
from unetkit.model import UNet
from unetkit.model.walk import Point

#: ``{map name: per-channel factor}`` as stored in a calibration.
Factors = Mapping[str, Sequence[float]]

#: A channel narrower than this share of its map's widest channel is not widened further.
MIN_SHARE = 1e-2

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class Side:
    """One producer or reader of a map: ``module`` and its channels ``start:stop`` of the map.

    ``role``: ``"out"`` (a convolution's output channels), ``"in"`` (its input channels),
    ``"affine_out"`` (a folded skip norm writing part of the fused map), ``"affine_in"`` (the same
    norm reading the skip).
    """

    module: nn.Module
    role: str
    start: int
    stop: int


@dataclass(frozen=True)
class Edge:
    """A map that can be equalised: who writes which channels of it, who reads them."""

    channels: int
    producers: tuple[Side, ...]
    readers: tuple[Side, ...]


def _channels(conv: nn.Module, role: str) -> int:
    weight = conv.weight  # type: ignore[union-attr]
    transposed = isinstance(conv, _CONV_T)
    return int(weight.shape[0 if (role == "in") == transposed else 1])


def _plain(block: nn.Module) -> bool:
    convs = getattr(block, "convs", None)
    return (
        not getattr(block, "residual", False)
        and convs is not None
        and all(isinstance(getattr(c, "norm", None), nn.Identity) for c in convs)
        and all(isinstance(getattr(c, "act", None), nn.ReLU | nn.Identity) for c in convs)
        and all(isinstance(getattr(c, "conv", None), _CONV) for c in convs)
    )


def equalisable_maps(net: UNet) -> dict[str, Edge]:
    """The maps of the *folded* ``net`` that :func:`equalise` may scale, by calibration point."""
    points = {p.name: p for p in net.points()}
    edges: dict[str, Edge] = {}
    blocks = [p for p in points.values() if p.kind == "block"]
    if any(not _plain(p.module) or p.name.count(".") != 2 for p in blocks):
        return edges  # residual blocks, stages of several blocks: left alone
    for point in blocks:
        convs = point.module.convs
        for j in range(len(convs) - 1):
            a, b = convs[j].conv, convs[j + 1].conv
            n = _channels(a, "out")
            edges[f"{point.name}.convs.{j}"] = Edge(
                n, (Side(a, "out", 0, n),), (Side(b, "in", 0, n),)
            )
    encoder = sorted((p for p in blocks if p.name.startswith("encoder.")), key=lambda p: p.level)
    deepest = encoder[-1].level if encoder else -1
    for point in blocks:
        last = point.module.convs[-1].conv
        n = _channels(last, "out")
        readers = _output_readers(points, point, deepest)
        if readers is not None:
            name = f"{point.name}.convs.{len(point.module.convs) - 1}"
            edges[name] = Edge(n, (Side(last, "out", 0, n),), tuple(readers))
    for point in points.values():
        if point.kind != "fuse" or point.option != "concat":
            continue
        fuse, up = point.module, points.get(f"decoder.ups.{point.level}")
        block = points.get(f"decoder.blocks.{point.level}")
        if not (isinstance(fuse, FoldedFuse) and fuse.affine) or up is None or block is None:
            continue
        up_conv, reader = up.module.conv, block.module.convs[0].conv
        c = _channels(up_conv, "out")
        producers = (Side(up_conv, "out", 0, c), Side(fuse, "affine_out", c, 2 * c))
        edges[point.name] = Edge(2 * c, producers, (Side(reader, "in", 0, 2 * c),))
    return edges


def _output_readers(
    points: Mapping[str, Point], point: Point, deepest: int
) -> list[Side] | None:
    """The readers of a block's output map, or ``None`` where one is not a supported kind."""
    level = point.level
    if point.name.startswith("encoder.") and level < deepest:
        down = points.get(f"encoder.downs.{level}")
        after = points.get(f"encoder.blocks.{level + 1}")
        fuse = points.get(f"decoder.fuses.{level}")
        if down is None or down.option not in ("maxpool", "avgpool") or after is None:
            return None
        first = after.module.convs[0].conv
        readers = [Side(first, "in", 0, _channels(first, "in"))]
        if fuse is not None and fuse.option != "none":
            if not (isinstance(fuse.module, FoldedFuse) and fuse.module.affine):
                return None
            if fuse.option != "concat":
                return None
            n = fuse.module.scale.numel()
            readers.append(Side(fuse.module, "affine_in", 0, n))
        return readers
    up = points.get(f"decoder.ups.{level - 1}") if level > 0 else None
    if point.name.startswith("decoder.") and level == 0:
        head = points.get("head")
        if head is None or not isinstance(head.module, _CONV):
            return None
        return [Side(head.module, "in", 0, _channels(head.module, "in"))]
    if up is None or up.option not in ("transpose", "interp"):
        return None
    conv = up.module.conv
    return [Side(conv, "in", 0, _channels(conv, "in"))]


def channel_factors(
    ranges: Mapping[str, Tensor], alpha: float, edges: Mapping[str, Edge]
) -> dict[str, list[float]]:
    """Factors ``(R / r_c) ** alpha`` per equalisable map from per-channel ranges ``r`` ((C,)
    absolute maxima each; ``R`` the largest). Channels under :data:`MIN_SHARE` of ``R`` count as
    that share, channels that were always zero keep factor 1; an empty map gets no factors."""
    out: dict[str, list[float]] = {}
    for name, edge in edges.items():
        r = ranges.get(name)
        if r is None or r.numel() != edge.channels or alpha <= 0:
            continue
        r = r.double()
        top = float(r.max())
        if top <= 0:
            continue
        m = (top / r.clamp_min(MIN_SHARE * top)) ** alpha
        m[r == 0] = 1.0
        out[name] = [float(v) for v in m]
    return out


@torch.no_grad()
def equalise(net: UNet, factors: Factors) -> UNet:
    """In place on the folded ``net``: multiply each map of ``factors`` by its factors at the
    producers and divide at the readers (the float outputs do not change). Raises
    ``ValueError`` naming a map this network cannot equalise or a factor list of another size."""
    if not factors:
        return net
    edges = equalisable_maps(net)
    for name, values in factors.items():
        edge = edges.get(name)
        if edge is None or len(values) != edge.channels:
            raise ValueError(
                f"int8 calibration: channel factors for {name!r} do not fit this model; "
                "calibrate this model again"
            )
        m = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if not bool(torch.isfinite(m).all()) or bool((m <= 0).any()):
            raise ValueError(f"int8 calibration: channel factors for {name!r} are not positive")
        for side in edge.producers:
            _scale(side, m[side.start : side.stop])
        for side in edge.readers:
            _scale(side, 1.0 / m[side.start : side.stop])
    return net


def _scale(side: Side, m: Tensor) -> None:
    module, role = side.module, side.role
    if role in ("affine_out", "affine_in"):
        module.scale.mul_(m.view(1, -1).to(module.scale.dtype))  # type: ignore[operator]
        if role == "affine_out":
            module.shift.mul_(m.view(1, -1).to(module.shift.dtype))  # type: ignore[operator]
        return
    weight = module.weight  # type: ignore[union-attr]
    axis = 0 if (role == "out") != isinstance(module, _CONV_T) else 1
    view = [1] * weight.ndim
    view[axis] = -1
    weight.mul_(m.view(view).to(weight.dtype))
    if role == "out" and module.bias is not None:  # type: ignore[union-attr]
        module.bias.mul_(m.to(module.bias.dtype))  # type: ignore[union-attr]


class ChannelObserver:
    """Per-channel absolute maxima of the maps named in ``names`` (``observe(name, map)``)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = set(names)
        self.ranges: dict[str, Tensor] = {}

    def __call__(self, name: str, t: Tensor) -> None:
        if name not in self.names:
            return
        dims = [d for d in range(t.ndim) if d != 1]
        r = t.detach().float().abs().amax(dim=dims)  # (C,)
        old = self.ranges.get(name)
        self.ranges[name] = r if old is None else torch.maximum(old, r)


__all__ = [
    "MIN_SHARE",
    "ChannelObserver",
    "Edge",
    "Factors",
    "channel_factors",
    "equalisable_maps",
    "equalise",
]
