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

A calibration is a plain mapping ``point name -> (low, high)`` and is stored with a trained
model (``metadata["int8"]``), together with how well int8 label maps agreed with fp32 on the
validation images; :func:`unetkit.infer.optimize.inference_model` uses int8 by default only
where that agreement is high and the CPU has VNNI. Supported: 1D/2D/3D, plain or residual
blocks, ReLU, batch norm or none, max/avg/strided down-sampling, transposed or interpolating
up-sampling, every fusion. Anything else raises :class:`Int8Unsupported` (callers fall back to
fp32).
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.hardware import cpu_features
from unetkit.infer.optimize import FoldedFuse, fold_batch_norms, memory_format
from unetkit.model import UNet
from unetkit.model.blocks import ConvBlock, Fuse, center_crop, crop_to, pad_to_multiple
from unetkit.model.layers import INTERP_MODE

Ranges = dict[str, tuple[float, float]]

#: The quantized engine used: PyTorch's x86 backend (fbgemm and oneDNN kernels).
ENGINE = "x86"
_VNNI = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512vnni", "avxvnni")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence PyTorch's notice that quantized tensor types will move out of core PyTorch
    (the pinned torch 2.13 has them; the notice is for developers, not for users)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions")
        yield


class Int8Unsupported(ValueError):
    """The model has a part the int8 path does not implement; use fp32 instead."""


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
    if next(model.parameters()).device.type != "cpu":
        return "int8 inference runs on the CPU only"
    return None


# --- calibration -------------------------------------------------------------------------------


class _Observer:
    """Running activation range per point: the max over batches of a high percentile.

    A percentile (``99.999`` by default) instead of the absolute extreme keeps one hot pixel
    from stretching the quantisation step of a whole map.
    """

    def __init__(self, percentile: float) -> None:
        self.q = percentile / 100.0
        self.ranges: Ranges = {}
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, name: str, t: Tensor) -> None:
        flat = t.detach().float().reshape(-1)
        k = max(1, int(flat.numel() * (1.0 - self.q)))  # values above the percentile, plus one
        hi = float(torch.topk(flat, k, sorted=True).values[-1])
        lo = -float(torch.topk(-flat, k, sorted=True).values[-1])
        old = self.ranges.get(name)
        self.ranges[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))


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
    reason = unsupported_reason(model)
    if reason is not None:
        raise Int8Unsupported(f"int8: {reason}")
    runner = _Runner(_folded_copy(model))
    observer = _Observer(percentile)
    with torch.inference_mode():
        for x in batches:
            runner.run(x.float(), observer)
    if not observer.ranges:
        raise ValueError("calibrate: no calibration batches were given")
    return {k: (lo * headroom, hi * headroom) for k, (lo, hi) in observer.ranges.items()}


# --- the quantised network ---------------------------------------------------------------------


def _folded_copy(model: UNet) -> UNet:
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return fold_batch_norms(net)


def _qparams(lo: float, hi: float, *, reduce_range: bool) -> tuple[float, int]:
    """Scale and zero point of uint8 covering ``[lo, hi]`` (always including 0)."""
    top = 127 if reduce_range else 255
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / top, 1e-8)
    zero = min(max(round(-lo / scale), 0), top)
    return scale, int(zero)


def _quantize_weight(weight: Tensor, axis: int) -> Tensor:
    """Symmetric int8 per output channel (``axis``)."""
    dims = [d for d in range(weight.ndim) if d != axis]
    scale = (weight.abs().amax(dim=dims).double() / 127.0).clamp_min(1e-12)
    zero = torch.zeros_like(scale, dtype=torch.long)
    return torch.quantize_per_channel(weight.float(), scale, zero, axis, torch.qint8)


def _quantized_conv(conv: nn.Module, relu: bool, qp: tuple[float, int]) -> nn.Module:
    """A quantized copy of ``conv`` (Conv{1,2,3}d, groups 1), ReLU fused when ``relu``."""
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    dims = conv.weight.ndim - 2  # type: ignore[union-attr]
    cls = {
        (1, False): nnq.Conv1d,
        (2, False): nnq.Conv2d,
        (3, False): nnq.Conv3d,
        (1, True): nniq.ConvReLU1d,
        (2, True): nniq.ConvReLU2d,
        (3, True): nniq.ConvReLU3d,
    }[(dims, relu)]
    if conv.groups != 1 or conv.padding_mode != "zeros":  # type: ignore[union-attr]
        raise Int8Unsupported("int8: grouped or non-zero-padded convolutions")
    q = cls(
        conv.in_channels,  # type: ignore[union-attr]
        conv.out_channels,  # type: ignore[union-attr]
        conv.kernel_size,  # type: ignore[union-attr]
        stride=conv.stride,  # type: ignore[union-attr]
        padding=conv.padding,  # type: ignore[union-attr]
        dilation=conv.dilation,  # type: ignore[union-attr]
    )
    bias = conv.bias.detach().float() if conv.bias is not None else None  # type: ignore[union-attr]
    q.set_weight_bias(_quantize_weight(conv.weight.detach(), 0), bias)  # type: ignore[union-attr]
    q.scale, q.zero_point = qp
    return q


class _QuantizedUp(nn.Module):
    """A transposed convolution with kernel = stride = 2 in int8, as a 1x1 convolution to
    ``2**d * C_out`` channels followed by depth-to-space.

    ``(B, C_in, *S) quint8 -> (B, C_out, *2S) quint8`` (channels_last in 2D/3D). Exactly the
    transposed convolution, with per-channel weights (PyTorch's quantized ConvTranspose takes
    per-tensor weights only, and its x86 kernels did not match the float layer when measured).
    """

    def __init__(self, conv: nn.Module, qp: tuple[float, int]) -> None:
        super().__init__()
        weight = conv.weight.detach().float()  # type: ignore[union-attr]  # (C_in, C_out, 2, ..)
        if any(k != 2 for k in weight.shape[2:]) or any(s != 2 for s in conv.stride):  # type: ignore[union-attr]
            raise Int8Unsupported("int8: transposed convolutions other than kernel 2 stride 2")
        c_in, c_out = weight.shape[:2]
        dims = weight.ndim - 2
        self.dims, self.c_out = dims, c_out
        # channel (o, a, b, ...) of the 1x1 conv -> output o at offset (a, b, ...)
        order = (1, *range(2, 2 + dims), 0)
        w1 = weight.permute(order).reshape(c_out * 2**dims, c_in, *([1] * dims))
        conv1 = nn.Conv1d if dims == 1 else nn.Conv2d if dims == 2 else nn.Conv3d
        pointwise = conv1(c_in, c_out * 2**dims, 1)
        with torch.no_grad():
            pointwise.weight.copy_(w1)
            pointwise.bias.copy_(conv.bias.detach().float().repeat_interleave(2**dims))  # type: ignore[union-attr]
        self.pointwise = _quantized_conv(pointwise, False, qp)

    def forward(self, x: Tensor) -> Tensor:
        y = self.pointwise(x)  # (B, C_out * 2**d, *S)
        d, c = self.dims, self.c_out
        b, spatial = y.shape[0], y.shape[2:]
        t = y.int_repr().movedim(1, -1)  # (B, *S, C_out * 2**d), a view of channels-last memory
        t = t.reshape(b, *spatial, c, *([2] * d))
        # (B, S1, a1, S2, a2, ..., C_out): interleave each axis with its offset
        order = [0]
        for i in range(d):
            order += [1 + i, 2 + d + i]
        t = t.permute(*order, 1 + d).reshape(b, *(2 * s for s in spatial), c).movedim(-1, 1)
        return torch._make_per_tensor_quantized_tensor(t, y.q_scale(), y.q_zero_point())


_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)
_BATCH_NORM = {1: "batch_norm1d", 2: "batch_norm2d", 3: "batch_norm3d"}


class _Runner:
    """Runs a folded unetkit U-Net point by point, in float (observing) or in int8.

    One walk over the network serves both: calibration records the float map at every point,
    and the int8 network quantises at exactly those points, so the names always match.
    """

    def __init__(self, net: UNet) -> None:
        self.net = net
        c = net.config
        self.dims = c.spatial_dims
        self.quantized: dict[str, nn.Module] = {}
        self.qparams: dict[str, tuple[float, int]] = {}
        self.unit: dict[str, tuple[Tensor, Tensor]] = {}  # (ones, zeros) per affine skip
        self.int8 = False
        self.channels_last = c.spatial_dims in (2, 3)

    # float mode: ``observe(name, t)`` is called at each point; int8 mode: modules replace it.
    def run(self, x: Tensor, observe: Callable[[str, Tensor], None] | None = None) -> Tensor:
        """``x: (B, C, *S) float -> (B, K, *S') float32 logits``."""
        net = self.net
        net._check_input(x)
        original: tuple[int, ...] | None = None
        if net.config.padding == "same":
            x, original = pad_to_multiple(x, net.downsample_factor)
        else:
            net.output_size(tuple(x.shape[2:]))
        if self.channels_last:
            x = x.contiguous(memory_format=memory_format(self.dims))
        skips: list[Tensor] = []
        h = x
        for i, block in enumerate(net.encoder.blocks):
            if i > 0:
                h = self._down(f"encoder.{i}.down", net.encoder.downs[i - 1], h, observe)
            h = self._block(f"encoder.{i}", block, h, observe, first=i == 0)
            skips.append(h)
        dec = net.decoder
        for i in reversed(range(len(dec.ups))):
            h = self._level(i, h, skips[i], observe)
        feats = h.dequantize() if self.int8 else h
        y = net.head(feats)  # (B, K, *P) float32, the 1x1 head in fp32
        y = y if original is None else crop_to(y, original)
        return y.contiguous()

    def _point(self, name: str, t: Tensor, observe: Callable[[str, Tensor], None] | None) -> Tensor:
        if observe is not None:
            observe(name, t)
        return t

    def _quantize(self, name: str, t: Tensor) -> Tensor:
        scale, zero = self.qparams[name]
        return torch.quantize_per_tensor(t.float(), scale, zero, torch.quint8)

    def _conv(self, name: str, layer: nn.Module, h: Tensor, observe: Any) -> Tensor:
        if self.int8:
            return self.quantized[name](h)
        return self._point(name, layer(h), observe)

    def _block(
        self, name: str, block: ConvBlock, x: Tensor, observe: Any, first: bool = False
    ) -> Tensor:
        h = x
        for j, layer in enumerate(block.convs):
            point = f"{name}.conv{j}"
            if first and j == 0:  # the input convolution stays fp32
                h = layer(h.dequantize() if h.is_quantized else h)
                h = self._quantize(point, h) if self.int8 else self._point(point, h, observe)
            else:
                h = self._conv(point, layer, h, observe)
        if not block.residual:
            return h
        short = block.shortcut
        if first:  # the shortcut reads the float input: run it in fp32, then quantise
            point = f"{name}.shortcut"
            short_out = short(x)
            if self.int8:
                short_out = self._quantize(point, short_out)
            else:
                self._point(point, short_out, observe)
        elif not isinstance(short, nn.Identity):
            short_out = self._conv(f"{name}.shortcut", short, x, observe)
        else:
            short_out = x
        short_out = center_crop(short_out, h.shape[2:])
        if self.int8:
            scale, zero = self.qparams[f"{name}.out"]
            return torch.ops.quantized.add_relu(h, short_out, scale, zero)
        return self._point(f"{name}.out", block.out_act(h + short_out), observe)

    def _down(self, name: str, down: nn.Module, h: Tensor, observe: Any) -> Tensor:
        op = down.op
        if isinstance(op, _POOLS):  # quantized pooling keeps the input's range
            return op(h)
        return self._conv(name, op, h, observe)  # strided convolution, no activation

    def _level(self, i: int, h: Tensor, skip: Tensor, observe: Any) -> Tensor:
        dec = self.net.decoder
        up, fuse, block = dec.ups[i], dec.fuses[i], dec.blocks[i]
        name = f"decoder.{i}"
        u = self._up(name, up, h, observe)
        if isinstance(fuse, Fuse) and fuse.fusion == "none":
            y = u
        else:
            y = self._fuse(name, fuse, u, skip, observe)
        return self._block(name, block, y, observe)

    def _up(self, name: str, up: nn.Module, h: Tensor, observe: Any) -> Tensor:
        if up.kind == "interp":  # 1x1 conv first, then interpolate: the two commute
            mode = INTERP_MODE[self.dims]
            if self.int8:
                low = self.quantized[f"{name}.up"](h)
                if self.dims == 2:
                    return F.interpolate(low, scale_factor=2.0, mode=mode, align_corners=False)
                y = F.interpolate(low.dequantize(), scale_factor=2.0, mode=mode)
                return self._quantize(f"{name}.up", y)
            y = F.interpolate(up.conv(h), scale_factor=2.0, mode=mode, align_corners=False)
            return self._point(f"{name}.up", y, observe)
        if self.int8:
            return self.quantized[f"{name}.up"](h)
        return self._point(f"{name}.up", up.conv(h), observe)

    def _fuse(self, name: str, fuse: nn.Module, u: Tensor, skip: Tensor, observe: Any) -> Tensor:
        if isinstance(fuse, Fuse) and fuse.use_norm:
            raise Int8Unsupported("int8: a decoder norm that could not be folded")
        affine = isinstance(fuse, FoldedFuse) and fuse.affine
        fusion = fuse.fusion
        skip = center_crop(skip, u.shape[2:])
        reduce = getattr(fuse, "reduce", None)
        if not self.int8:
            if affine:
                view = (1, -1) + (1,) * self.dims
                skip = torch.addcmul(fuse.shift.view(view), skip, fuse.scale.view(view))
            self._point(f"{name}.skip", skip, observe)
            y = u + skip if fusion == "add" else torch.cat([u, skip], dim=1)
            self._point(f"{name}.fuse", y, observe)
            if reduce is not None:
                y = self._point(f"{name}.reduce", reduce(y), observe)
            return y
        scale, zero = self.qparams[f"{name}.fuse"]
        if affine:  # the folded batch norm of the skip half, as a quantized per-channel affine
            op = getattr(torch.ops.quantized, _BATCH_NORM[self.dims])
            ones, zeros = self.unit[name]
            skip = op(skip, fuse.scale.view(-1), fuse.shift.view(-1), zeros, ones, 0.0, scale, zero)
        if fusion == "add":
            y = torch.ops.quantized.add(u, skip, scale, zero)
        else:
            y = torch.ops.quantized.cat([u, skip], 1, scale, zero)
        if reduce is not None:
            y = self.quantized[f"{name}.reduce"](y)
        return y


def _convs_to_quantize(net: UNet) -> Iterable[tuple[str, nn.Module, bool]]:
    """``(point name, float conv, fused ReLU)`` for every convolution run in int8."""
    for prefix, blocks in (("encoder", net.encoder.blocks), ("decoder", net.decoder.blocks)):
        for i, block in enumerate(blocks):
            for j, layer in enumerate(block.convs):
                if prefix == "encoder" and i == 0 and j == 0:
                    continue  # the fp32 input convolution
                yield f"{prefix}.{i}.conv{j}", layer.conv, not isinstance(layer.act, nn.Identity)
            first = prefix == "encoder" and i == 0  # its shortcut runs in fp32
            if block.residual and not first and not isinstance(block.shortcut, nn.Identity):
                yield f"{prefix}.{i}.shortcut", block.shortcut, False
    for i, down in enumerate(net.encoder.downs):
        if not isinstance(down.op, _POOLS):
            yield f"encoder.{i + 1}.down", down.op, False
    for i, fuse in enumerate(net.decoder.fuses):
        reduce = getattr(fuse, "reduce", None)
        if reduce is not None:
            yield f"decoder.{i}.reduce", reduce, False


class Int8UNet(nn.Module):
    """A U-Net quantised to int8: ``x: (B, C, *S) float32 -> (B, K, *S') float32 logits``.

    Built by :func:`quantize_for_inference`; inference only (no autograd). ``config`` is the
    float model's config, ``precision`` is ``"int8"``, ``reduce_range`` whether activations use
    7 bits (CPUs without VNNI).
    """

    precision = "int8"

    def __init__(self, runner: _Runner, reduce_range: bool) -> None:
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
        return f"precision=int8, reduce_range={self.reduce_range}, layers={len(self.quantized)}"


def quantize_for_inference(
    model: UNet, ranges: Mapping[str, Any], *, reduce_range: bool | None = None
) -> Int8UNet:
    """An int8 copy of ``model`` using the activation ``ranges`` of :func:`calibrate`.

    ``model`` itself is not changed. ``reduce_range``: quantise activations to 7 bits
    (``None``: yes where the CPU has no VNNI, whose 8-bit products would otherwise saturate).
    Raises :class:`Int8Unsupported` for a model the int8 path does not cover, and
    ``ValueError`` when ``ranges`` lacks a point of this model (calibrated on another model).
    """
    reason = unsupported_reason(model)
    if reason is not None:
        raise Int8Unsupported(f"int8: {reason}")
    if reduce_range is None:
        reduce_range = not has_vnni()
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = ENGINE
    try:
        with _quiet():
            return _build(model, ranges, reduce_range)
    finally:
        torch.backends.quantized.engine = previous


def _range(ranges: Mapping[str, Any], name: str) -> tuple[float, float]:
    try:
        lo, hi = ranges[name]
        lo, hi = float(lo), float(hi)
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"int8 calibration: no valid range for {name!r}; calibrate this model again"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"int8 calibration: range of {name!r} is not finite")
    return lo, hi


def _drop_float_weights(conv: nn.Module) -> None:
    """Free the float copy of a layer that now runs quantised (calling it would fail loudly)."""
    conv.weight = None  # type: ignore[assignment]
    conv.bias = None  # type: ignore[assignment]


def _build(model: UNet, ranges: Mapping[str, Any], reduce_range: bool) -> Int8UNet:
    runner = _Runner(_folded_copy(model))
    net = runner.net

    def qp(*names: str) -> tuple[float, int]:
        lo = min(_range(ranges, n)[0] for n in names)
        hi = max(_range(ranges, n)[1] for n in names)
        return _qparams(lo, hi, reduce_range=reduce_range)

    for name, conv, relu in _convs_to_quantize(net):
        runner.qparams[name] = qp(name)
        runner.quantized[name] = _quantized_conv(conv, relu, runner.qparams[name])
        _drop_float_weights(conv)
    runner.qparams["encoder.0.conv0"] = qp("encoder.0.conv0")
    for i, block in enumerate(net.encoder.blocks):
        if block.residual:
            runner.qparams[f"encoder.{i}.out"] = qp(f"encoder.{i}.out")
            if i == 0:
                runner.qparams["encoder.0.shortcut"] = qp("encoder.0.shortcut")
    for i, (up, fuse, block) in enumerate(
        zip(net.decoder.ups, net.decoder.fuses, net.decoder.blocks, strict=True)
    ):
        name = f"decoder.{i}"
        joined = fuse.fusion != "none"
        # up-sampled map and skip are quantised straight to the fused map's range: the
        # concatenation then copies bytes, with no requantisation
        out = qp(f"{name}.up", f"{name}.skip", f"{name}.fuse") if joined else qp(f"{name}.up")
        runner.qparams[f"{name}.up"] = out
        runner.qparams[f"{name}.fuse"] = out
        if up.kind == "interp":
            runner.quantized[f"{name}.up"] = _quantized_conv(up.conv, False, out)
        else:
            runner.quantized[f"{name}.up"] = _QuantizedUp(up.conv, out)
        _drop_float_weights(up.conv)
        if isinstance(fuse, FoldedFuse) and fuse.affine:
            channels = fuse.scale.numel()
            runner.unit[name] = (torch.ones(channels), torch.zeros(channels))
        if block.residual:
            runner.qparams[f"{name}.out"] = qp(f"{name}.out")
    runner.int8 = True
    # the float convolutions now run quantised: drop them, keep the input conv and the head
    return Int8UNet(runner, reduce_range)
