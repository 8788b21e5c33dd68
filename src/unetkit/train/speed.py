"""Training speed options the trainer calls: precision, autocast and memory format.

Each function is small and decides one thing. Defaults come from measurements on the target
hardware (``benchmarks/README.md``), not from assumptions:

* bf16 autocast only where bf16 is faster than fp32 (CPUs with AMX-BF16, CUDA GPUs with bf16).
  On a CPU with AVX-512 BF16 but no AMX, bf16 convolutions run at half the fp32 rate.
* channels_last for 2D and 3D models on CPU (oneDNN's preferred layout).

Typical use in a training step::

    precision = training_precision(cfg.precision, device)
    model = to_channels_last(model, spatial_dims) if use_channels_last("auto", spatial_dims) \
        else model
    with autocast(precision, device):
        loss = loss_fn(model(to_channels_last(x, spatial_dims)), y)
    loss.backward()  # outside autocast; gradients and the optimiser stay fp32
"""

from __future__ import annotations

import contextlib
from typing import Literal, TypeVar

import torch
from torch import Tensor, nn

from unetkit.hardware import bf16_is_faster, native_bf16

_PRECISIONS = ("auto", "fp32", "bf16")
T = TypeVar("T", Tensor, nn.Module)


def training_precision(
    precision: str = "auto", device: torch.device | str = "cpu"
) -> Literal["fp32", "bf16"]:
    """``"fp32"`` or ``"bf16"`` (autocast) for training on ``device``.

    ``"auto"`` chooses bf16 only where :func:`unetkit.hardware.bf16_is_faster` is true; an
    explicit ``"bf16"`` on a device without native bf16 raises ``ValueError`` (it would be
    emulated and slow), naming the option.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(_PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_is_faster(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        raise ValueError(
            f"precision: 'bf16' needs native bf16 support, which {torch.device(device)} lacks; "
            f"use 'fp32' or 'auto'"
        )
    return "bf16" if precision == "bf16" else "fp32"


def autocast(
    precision: str, device: torch.device | str = "cpu"
) -> contextlib.AbstractContextManager[object]:
    """The context for the forward pass and loss: bf16 autocast, or nothing for fp32.

    Weights, gradients and optimiser state stay fp32; convolutions run in bf16 with fp32
    accumulation. Call ``backward()`` outside the context.
    """
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")
    return contextlib.nullcontext()


def use_channels_last(
    enabled: bool | Literal["auto"], spatial_dims: int, device: torch.device | str = "cpu"
) -> bool:
    """Whether to train in channels_last: ``"auto"`` means yes for 2D and 3D on CPU and CUDA."""
    if enabled == "auto":
        return spatial_dims in (2, 3) and torch.device(device).type in ("cpu", "cuda")
    if not isinstance(enabled, bool):
        raise ValueError(f"channels_last: expected True, False or 'auto', got {enabled!r}")
    return enabled and spatial_dims in (2, 3)


def to_channels_last(obj: T, spatial_dims: int) -> T:
    """A model or a batch ``(B, C, *S)`` in channels_last (3D: channels_last_3d) format.

    1D models and batches, which have no such format, come back unchanged. A module is
    converted in place (as ``Module.to`` does) and returned.
    """
    if spatial_dims not in (2, 3):
        return obj
    fmt = torch.channels_last_3d if spatial_dims == 3 else torch.channels_last
    if isinstance(obj, nn.Module):
        return obj.to(memory_format=fmt)
    if obj.ndim != spatial_dims + 2:
        raise ValueError(
            f"to_channels_last: expected a batch (B, C, {spatial_dims} spatial axes), "
            f"got shape {tuple(obj.shape)}"
        )
    return obj.contiguous(memory_format=fmt)
