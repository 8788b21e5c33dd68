"""The int8 building blocks: quantisation parameters, quantized convolutions, the transposed
convolution as a 1x1 convolution plus depth-to-space.

``(B, C, *S) quint8 -> (B, C', *S') quint8`` for every module here; see :mod:`unetkit.infer.int8`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Int8Unsupported(ValueError):
    """The model has a part the int8 path does not implement; use fp32 instead."""


def qparams(lo: float, hi: float, *, reduce_range: bool) -> tuple[float, int]:
    """Scale and zero point of uint8 covering ``[lo, hi]`` (always including 0)."""
    top = 127 if reduce_range else 255
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / top, 1e-8)
    zero = min(max(round(-lo / scale), 0), top)
    return scale, int(zero)


def quantize_weight(weight: Tensor, axis: int) -> Tensor:
    """Symmetric int8 per output channel (``axis``)."""
    dims = [d for d in range(weight.ndim) if d != axis]
    scale = (weight.abs().amax(dim=dims).double() / 127.0).clamp_min(1e-12)
    zero = torch.zeros_like(scale, dtype=torch.long)
    return torch.quantize_per_channel(weight.float(), scale, zero, axis, torch.qint8)


def quantized_conv(conv: nn.Module, relu: bool, qp: tuple[float, int]) -> nn.Module:
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
    q.set_weight_bias(quantize_weight(conv.weight.detach(), 0), bias)  # type: ignore[union-attr]
    q.scale, q.zero_point = qp
    return q


def pointwise_weight(conv: nn.Module) -> Tensor:
    """The transposed convolution ``conv`` (kernel = stride = 2) as the weight of a 1x1
    convolution to ``2**d * C_out`` channels, offset first (see :class:`QuantizedUp`)."""
    weight = conv.weight.detach().float()  # type: ignore[union-attr]  # (C_in, C_out, 2, ..)
    dims = weight.ndim - 2
    order = (*range(2, 2 + dims), 1, 0)
    return weight.permute(order).reshape(weight.shape[1] * 2**dims, weight.shape[0],
                                         *([1] * dims))


def shift_bias(q: nn.Module, delta: Sequence[float]) -> None:
    """Add ``delta`` (one value per output channel) to the bias of the quantized convolution
    ``q`` (of a :class:`QuantizedUp`: of its 1x1 convolution, channels in its order)."""
    q = getattr(q, "pointwise", q)
    weight, bias = q.weight(), q.bias()  # type: ignore[operator]
    d = torch.as_tensor(delta, dtype=torch.float32).reshape(-1)
    if d.numel() != weight.shape[0]:
        raise ValueError(
            f"int8 calibration: a bias correction of {d.numel()} values for a layer with "
            f"{weight.shape[0]} output channels; calibrate this model again"
        )
    q.set_weight_bias(weight, d if bias is None else bias.float() + d)  # type: ignore[operator]


class QuantizedUp(nn.Module):
    """A transposed convolution with kernel = stride = 2 in int8, as a 1x1 convolution to
    ``2**d * C_out`` channels followed by depth-to-space.

    ``(B, C_in, *S) quint8 -> (B, C_out, *2S) quint8`` (channels_last in 2D/3D). Exactly the
    transposed convolution, with per-channel weights (PyTorch's quantized ConvTranspose takes
    per-tensor weights only, and its x86 kernels did not match the float layer when measured).
    The 1x1 convolution's channels are ordered offset first, output channel last (channel
    ``(a, b, ..) * C_out + o``), so that depth-to-space copies runs of ``2 C_out`` bytes
    (3.5x faster than byte by byte at 16 channels; :meth:`forward`).
    """

    def __init__(self, conv: nn.Module, qp: tuple[float, int]) -> None:
        super().__init__()
        weight = conv.weight.detach().float()  # type: ignore[union-attr]  # (C_in, C_out, 2, ..)
        if any(k != 2 for k in weight.shape[2:]) or any(s != 2 for s in conv.stride):  # type: ignore[union-attr]
            raise Int8Unsupported("int8: transposed convolutions other than kernel 2 stride 2")
        c_in, c_out = weight.shape[:2]
        dims = weight.ndim - 2
        self.dims, self.c_out = dims, c_out
        w1 = pointwise_weight(conv)  # channel (a, b, ..., o) -> output o at offset (a, b, ...)
        conv1 = nn.Conv1d if dims == 1 else nn.Conv2d if dims == 2 else nn.Conv3d
        pointwise = conv1(c_in, c_out * 2**dims, 1)
        with torch.no_grad():
            pointwise.weight.copy_(w1)
            pointwise.bias.copy_(conv.bias.detach().float().repeat(2**dims))  # type: ignore[union-attr]
        self.pointwise = quantized_conv(pointwise, False, qp)

    def forward(self, x: Tensor) -> Tensor:
        y = self.pointwise(x)  # (B, 2**d * C_out, *S)
        d, c = self.dims, self.c_out
        b, spatial = y.shape[0], tuple(y.shape[2:])
        # (B, *S, a1, .., ad, C_out): a view of channels-last memory (a copy in 1D)
        src = y.int_repr().movedim(1, -1).reshape(b, *spatial, *([2] * d), c)
        out = torch.empty((b, *(2 * s for s in spatial), c), dtype=torch.uint8)
        # out viewed as (B, S1, a1, S2, a2, .., C_out): each axis interleaved with its offset
        view = out.view(b, *(n for s in spatial for n in (s, 2)), c)
        order = [0]
        for i in range(d):
            order += [1 + i, 1 + d + i]
        view.copy_(src.permute(*order, 1 + 2 * d))
        q = torch._make_per_tensor_quantized_tensor(out, y.q_scale(), y.q_zero_point())
        return q.movedim(-1, 1)  # (B, C_out, *2S)
