"""The int8 network as a step of the model's walk (:mod:`unetkit.model.walk`).

:class:`Runner` follows :meth:`unetkit.model.UNet.forward_core` point by point on a folded copy
of the model, in float (calling ``observe(name, map)`` at every point where a feature map is
written, for calibration) or in int8 (quantized modules at exactly those points, so the names
always match). Range names are the state-dict names of the modules that write the maps:

    encoder.blocks.0.convs.1      a convolution (with its ReLU) of a block
    encoder.blocks.1.shortcut     the 1x1 shortcut of a residual block
    encoder.blocks.1.out_act      the output of a residual block (after the sum and ReLU)
    encoder.downs.0               a strided down-sampling convolution
    decoder.ups.1                 an up-sampling
    decoder.fuses.1               the fused map (``decoder.fuses.1.skip``: its skip branch)
    decoder.fuses.1.reduce        the 1x1 reduction of ``concat_1x1``

Each point kind and option has one handler here; a point of another kind or option is refused
by name (:func:`walk_reason`).

Mixed precision: a layer named in ``Runner.fp32`` (names of ``Runner.layers``) runs in fp32 and
its output map is never rounded to 8 bits: the map stays float, marked *kept* (:func:`_mark`),
and every layer that reads a kept map (through pooling, a fusion or a residual sum, which then
run in float and keep the mark) runs in fp32 too. Other float maps (the input convolution's,
the outputs of layers that read a kept map) carry the uint8 parameters of their point and are
quantised where an int8 layer reads them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.infer.fold import FoldedFuse
from unetkit.infer.int8_layers import Int8Unsupported, QuantizedUp, quantized_conv, shift_bias
from unetkit.model import UNet
from unetkit.model.blocks import Fuse, center_crop, crop_to
from unetkit.model.layers import INTERP_MODE
from unetkit.model.walk import Point
from unetkit.precision import as_channels_last

Observe = Callable[[str, Tensor], None] | None
QParams = Callable[..., tuple[float, int]]

_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)
_BATCH_NORM = {1: "batch_norm1d", 2: "batch_norm2d", 3: "batch_norm3d"}

#: The point kinds and options the int8 path implements.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "block": ("plain", "residual"),
    "down": ("maxpool", "avgpool", "strided"),
    "up": ("transpose", "interp"),
    "fuse": ("concat", "concat_1x1", "add", "none"),
    "head": ("conv",),
    "deep_head": ("conv",),  # not run by the forward; ignored
}


def walk_reason(net: UNet) -> str | None:
    """The first point of ``net`` int8 does not implement, named, or ``None``."""
    for point in net.points():
        options = SUPPORTED.get(point.kind)
        if options is None or point.option not in options:
            known = ", ".join(f"{k} {'/'.join(v)}" for k, v in SUPPORTED.items())
            return (
                f"{point.name} is a {point.kind} with option {point.option!r}, which the int8 "
                f"path does not implement (it handles {known})"
            )
    return None


_QP = "_unetkit_qparams"  # attribute of a float map in int8 mode: its (scale, zero point)
_KEEP = "_unetkit_kept"  # attribute of a float map that no int8 layer may round


def _mark(t: Tensor, qp: tuple[float, int] | None, keep: bool = False) -> Tensor:
    """Mark the float map ``t`` with the uint8 parameters an int8 reader quantises it with,
    or as kept in float (its readers run in fp32)."""
    if qp is not None:
        setattr(t, _QP, qp)
    if keep:
        setattr(t, _KEEP, True)
    return t


def _kept(t: Tensor) -> bool:
    return bool(getattr(t, _KEEP, False))


def _dq(t: Tensor) -> Tensor:
    return t.dequantize() if t.is_quantized else t


def _requantize(t: Tensor, qp: tuple[float, int] | None = None) -> Tensor:
    """``t`` as quint8: unchanged when quantised, else with ``qp`` or the parameters it carries."""
    if t.is_quantized:
        return t
    scale, zero = qp if qp is not None else getattr(t, _QP)
    return torch.quantize_per_tensor(t.float(), scale, zero, torch.quint8)


class Runner:
    """Runs a folded unetkit U-Net along its walk, in float (observing) or in int8.

    ``run(x)``: ``x: (B, C, *S) float -> (B, K, *S') float32 logits``. ``fp32``: the layers
    (names of :func:`layer_names`) that run in float in int8 mode. ``bias``: per int8 layer, a
    correction added to its quantised copy's bias (:mod:`unetkit.infer.int8_bias`).
    """

    def __init__(
        self,
        net: UNet,
        fp32: frozenset[str] = frozenset(),
        bias: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.net = net
        self.fp32 = fp32
        self.bias = dict(bias or {})
        self.dims = net.config.spatial_dims
        self.quantized: dict[str, nn.Module] = {}
        self.layers: list[str] = []  # the layers that can run in int8, filled by build()
        self.qparams: dict[str, tuple[float, int]] = {}
        self.unit: dict[str, tuple[Tensor, Tensor]] = {}  # (ones, zeros) per affine skip
        self.int8 = False
        #: in float mode, called as ``inputs(layer name, float module, input map)`` before each
        #: layer that can run in int8 (for bias correction, :mod:`unetkit.infer.int8_bias`)
        self.inputs: Callable[[str, nn.Module, Tensor], None] | None = None
        self.ran_fp32: set[str] = set()  # in int8 mode, the layers that ran in float
        self.channels_last = self.dims in (2, 3)
        self.first = next(p.name for p in net.points() if p.kind == "block")
        self.steps: dict[str, Callable[..., Tensor]] = {
            "block": self._block,
            "down": self._down,
            "up": self._up,
            "fuse": self._fuse,
            "head": self._head,
        }

    def run(self, x: Tensor, observe: Observe = None) -> Tensor:
        """``x: (B, C, *S) float -> (B, K, *S') float32``; ``observe(name, map)`` per point."""
        x, original = self.net.prepare_input(x)  # (B, C, *P)
        if self.channels_last:
            x = as_channels_last(x, self.dims)
        y = self.net.forward_core(x, functools.partial(self._step, observe))  # (B, K, *P')
        y = y if original is None else crop_to(y, original)
        return y.contiguous()

    def _step(self, observe: Observe, point: Point, *inputs: Tensor) -> Tensor:
        return self.steps[point.kind](point, observe, *inputs)

    def _point(self, name: str, t: Tensor, observe: Observe) -> Tensor:
        if observe is not None:
            observe(name, t)
        return t

    def _float(self, name: str, t: Tensor, keep: bool = False) -> Tensor:
        """A map that stays float in int8 mode, marked with its point's uint8 parameters."""
        return _mark(t, self.qparams[name], keep)

    def _in_fp32(self, name: str, h: Tensor) -> bool:
        """Whether layer ``name`` runs in fp32 on ``h``: it is an fp32 layer or reads a kept map."""
        return name in self.fp32 or _kept(h)

    def _conv(self, name: str, layer: nn.Module, h: Tensor, observe: Observe) -> Tensor:
        if self.int8:
            if self._in_fp32(name, h):
                self.ran_fp32.add(name)
                return self._float(name, layer(_dq(h)), name in self.fp32)
            return self.quantized[name](_requantize(h))
        self._input(name, layer, h)
        return self._point(name, layer(h), observe)

    def _input(self, name: str, layer: nn.Module, h: Tensor) -> None:
        if self.inputs is not None:
            self.inputs(name, layer, h)

    def _relu_in_rounding(self, block: nn.Module, conv: str) -> bool:
        """Whether the fp32 input convolution ``conv`` (the first of ``block``) may be rounded
        to uint8 at once, its ReLU done by the rounding: its range starts at 0 (zero point 0,
        so rounding clamps negatives to 0 exactly as ReLU does) and the next convolution of the
        plain block reads it in int8."""
        layer = block.convs[0]
        return (
            isinstance(layer.act, nn.ReLU)
            and not block.residual
            and len(block.convs) > 1
            and f"{conv[: -len('.0')]}.1" not in self.fp32
            and self.qparams[conv][1] == 0
        )

    def _head(self, point: Point, observe: Observe, h: Tensor) -> Tensor:
        """The 1x1 head in fp32: ``(B, C, *P) -> (B, K, *P)`` float32. In int8 mode on a
        channels-last map it is one matrix product over the pixels (PyTorch's convolution
        takes a slow path for so few channels and copies the map to channels-first first)."""
        conv = point.module
        if not (self.int8 and self.channels_last) or any(k != 1 for k in conv.kernel_size):
            return conv(_dq(h))
        w = conv.weight.reshape(conv.out_channels, -1).t()  # (C, K)
        y = torch.empty((h.shape[0], *h.shape[2:], w.shape[1]))  # (B, *P, K)
        for i in range(h.shape[0]):  # image by image: one image's float map at a time
            x = _dq(h[i : i + 1]).movedim(1, -1).reshape(-1, w.shape[0])  # (prod(P), C)
            out = y[i].view(-1, w.shape[1])
            torch.mm(x, w, out=out) if conv.bias is None else torch.addmm(conv.bias, x, w, out=out)
        return y.movedim(-1, 1)  # (B, K, *P)

    def _block(self, point: Point, observe: Observe, x: Tensor) -> Tensor:
        block, name = point.module, point.name
        first = name == self.first
        h = x
        for j, layer in enumerate(block.convs):
            conv = f"{name}.convs.{j}"
            if first and j == 0:  # the input convolution stays fp32
                if self.int8 and self._relu_in_rounding(block, conv):
                    scale, _ = self.qparams[conv]  # ReLU: the rounding's clamp at zero point 0
                    h = torch.quantize_per_tensor(layer.norm(layer.conv(_dq(h))), scale, 0,
                                                  torch.quint8)
                    continue
                h = layer(_dq(h))
                h = self._float(conv, h) if self.int8 else self._point(conv, h, observe)
            else:
                h = self._conv(conv, layer, h, observe)
        if not block.residual:
            return h
        short = block.shortcut
        if first:  # the shortcut reads the float input: run it in fp32, then quantise
            short_out = short(x)
            if self.int8:
                short_out = self._float(f"{name}.shortcut", short_out)
            else:
                self._point(f"{name}.shortcut", short_out, observe)
        elif not isinstance(short, nn.Identity):
            short_out = self._conv(f"{name}.shortcut", short, x, observe)
        else:
            short_out = x
        carried, keep = getattr(short_out, _QP, None), _kept(short_out) or _kept(h)
        short_out = center_crop(short_out, h.shape[2:])
        if self.int8 and h.is_quantized and not keep:
            scale, zero = self.qparams[f"{name}.out_act"]
            short_out = _requantize(short_out, carried)
            return torch.ops.quantized.add_relu(h, short_out, scale, zero)
        if self.int8:  # a branch ran in fp32: add in float
            y = block.out_act(_dq(h) + _dq(short_out))
            return self._float(f"{name}.out_act", y, keep)
        return self._point(f"{name}.out_act", block.out_act(h + short_out), observe)

    def _down(self, point: Point, observe: Observe, h: Tensor) -> Tensor:
        op = point.module.op
        if point.option != "strided":  # quantized pooling keeps the input's range
            y = op(h)
            return y if y.is_quantized else _mark(y, getattr(h, _QP, None), _kept(h))
        return self._conv(point.name, op, h, observe)  # strided convolution, no activation

    def _up(self, point: Point, observe: Observe, h: Tensor) -> Tensor:
        name, up = point.name, point.module
        if self.int8 and not self._in_fp32(name, h):
            low = self.quantized[name](_requantize(h))
            if point.option != "interp":
                return low
            mode = INTERP_MODE[self.dims]  # 1x1 conv first, then interpolate: they commute
            if self.dims == 2:
                return F.interpolate(low, scale_factor=2.0, mode=mode, align_corners=False)
            y = F.interpolate(low.dequantize(), scale_factor=2.0, mode=mode)
            return _requantize(y, self.qparams[name])
        if not self.int8:
            self._input(name, up.conv, h)
        else:
            self.ran_fp32.add(name)
        y = up.conv(_dq(h))
        if point.option == "interp":
            mode = INTERP_MODE[self.dims]
            y = F.interpolate(y, scale_factor=2.0, mode=mode, align_corners=False)
        if self.int8:
            return self._float(name, y, name in self.fp32)
        return self._point(name, y, observe)

    def _fuse(self, point: Point, observe: Observe, u: Tensor, skip: Tensor) -> Tensor:
        name, fuse, fusion = point.name, point.module, point.option
        if fusion == "none":
            return u
        if isinstance(fuse, Fuse) and fuse.use_norm:
            raise_unsupported(point, "a decoder norm that could not be folded")
        affine = isinstance(fuse, FoldedFuse) and fuse.affine
        keep = _kept(u) or _kept(skip)
        skip = center_crop(skip, u.shape[2:])
        reduce = getattr(fuse, "reduce", None)
        if not self.int8 or keep or not (u.is_quantized or skip.is_quantized):
            u, skip = _dq(u), _dq(skip)
            if affine:
                view = (1, -1) + (1,) * self.dims
                skip = torch.addcmul(fuse.shift.view(view), skip, fuse.scale.view(view))
            self._point(f"{name}.skip", skip, observe)
            y = u + skip if fusion == "add" else torch.cat([u, skip], dim=1)
            self._point(name, y, observe)
            if self.int8:  # a kept branch or both float (fp32 layers): fuse in float
                y = self._float(name, y, keep)
                return y if reduce is None else self._conv(f"{name}.reduce", reduce, y, None)
            if reduce is not None:
                self._input(f"{name}.reduce", reduce, y)
                y = self._point(f"{name}.reduce", reduce(y), observe)
            return y
        scale, zero = self.qparams[name]
        if affine and skip.is_quantized:  # the skip's folded batch norm, a quantized affine
            op = getattr(torch.ops.quantized, _BATCH_NORM[self.dims])
            ones, zeros = self.unit[name]
            skip = op(skip, fuse.scale.view(-1), fuse.shift.view(-1), zeros, ones, 0.0, scale, zero)
        elif affine:
            view = (1, -1) + (1,) * self.dims
            skip = torch.addcmul(fuse.shift.view(view), skip, fuse.scale.view(view))
        u, skip = _requantize(u, (scale, zero)), _requantize(skip, (scale, zero))
        if fusion == "add":
            y = torch.ops.quantized.add(u, skip, scale, zero)
        else:
            y = torch.ops.quantized.cat([u, skip], 1, scale, zero)
        if reduce is not None:
            y = self._conv(f"{name}.reduce", reduce, y, None)
        return y


def raise_unsupported(point: Point, what: str) -> None:
    """Refuse ``point`` by name."""
    raise Int8Unsupported(f"int8: {point.name} ({point.kind} {point.option!r}): {what}")


def _drop_float_weights(conv: nn.Module) -> None:
    """Free the float copy of a layer that now runs quantised (calling it would fail loudly)."""
    conv.weight = None  # type: ignore[assignment]
    conv.bias = None  # type: ignore[assignment]


def _add_conv(runner: Runner, name: str, conv: nn.Module, relu: bool, qp: QParams) -> None:
    runner.qparams[name] = qp(name)
    runner.layers.append(name)
    runner.quantized[name] = quantized_conv(conv, relu, runner.qparams[name])
    if name in runner.bias:
        shift_bias(runner.quantized[name], runner.bias[name])
    if not runner.fp32:  # with fp32 layers, any layer may read a kept map in float
        _drop_float_weights(conv)


def build(runner: Runner, qp: QParams) -> Runner:
    """Quantise ``runner``'s network point by point; ``qp(*names)`` gives the uint8 parameters
    covering the calibrated ranges of ``names``. With ``runner.fp32`` layers, every layer keeps
    its float weights too (it may read a kept map). Returns ``runner``, now in int8 mode;
    ``runner.layers`` lists every layer that could run in int8, in walk order. Raises
    ``ValueError`` naming an ``fp32`` entry that is no layer of this network."""
    up_of: dict[int, Point] = {}
    runner.layers = []
    for point in runner.net.points():
        name, module = point.name, point.module
        if point.kind == "block":
            first = name == runner.first
            for j, layer in enumerate(module.convs):
                relu = not isinstance(layer.act, nn.Identity)
                if first and j == 0:  # the fp32 input convolution, quantised after it
                    runner.qparams[f"{name}.convs.0"] = qp(f"{name}.convs.0")
                else:
                    _add_conv(runner, f"{name}.convs.{j}", layer.conv, relu, qp)
            if module.residual:
                runner.qparams[f"{name}.out_act"] = qp(f"{name}.out_act")
                if first:  # its shortcut runs in fp32
                    runner.qparams[f"{name}.shortcut"] = qp(f"{name}.shortcut")
                elif not isinstance(module.shortcut, nn.Identity):
                    _add_conv(runner, f"{name}.shortcut", module.shortcut, False, qp)
        elif point.kind == "down" and point.option == "strided":
            _add_conv(runner, name, module.op, False, qp)
        elif point.kind == "up":
            up_of[point.level] = point
        elif point.kind == "fuse":
            up = up_of[point.level]
            # up-sampled map and skip are quantised straight to the fused map's range: the
            # concatenation then copies bytes, with no requantisation
            joined = point.option != "none"
            out = qp(up.name, f"{name}.skip", name) if joined else qp(up.name)
            runner.qparams[up.name] = runner.qparams[name] = out
            up_conv = up.module.conv
            runner.layers.append(up.name)
            if up.option == "interp":
                runner.quantized[up.name] = quantized_conv(up_conv, False, out)
            else:
                runner.quantized[up.name] = QuantizedUp(up_conv, out)
            if up.name in runner.bias:
                shift_bias(runner.quantized[up.name], runner.bias[up.name])
            if not runner.fp32:
                _drop_float_weights(up_conv)
            if isinstance(module, FoldedFuse) and module.affine:
                channels = module.scale.numel()
                runner.unit[name] = (torch.ones(channels), torch.zeros(channels))
            reduce = getattr(module, "reduce", None)
            if reduce is not None:
                _add_conv(runner, f"{name}.reduce", reduce, False, qp)
    unknown = sorted((runner.fp32 | set(runner.bias)) - set(runner.layers))
    if unknown:
        raise ValueError(
            f"int8 calibration: layer {unknown[0]!r} is not a layer of this model; "
            "calibrate this model again"
        )
    runner.int8 = True
    return runner
