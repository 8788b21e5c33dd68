"""The one precision and memory-format policy: training, validation, inference and benchmarks.

Every consumer asks this module, so they all make the same decision on the same machine:

* **training precision** (:func:`training_precision`): ``fp32`` or ``bf16`` autocast. ``auto``
  chooses bf16 only where it is *measured* faster than fp32 on the device (:func:`bf16_timing`,
  once per process). An explicit ``bf16`` without native bf16 is refused (emulated: slow).
* **inference precision** (:func:`inference_precision`): ``fp32`` or ``bf16`` for the float path
  (``int8``: :func:`unetkit.infer.engine.inference_network`, with the model's calibration).
  ``auto`` follows the instruction set (AMX-BF16 CPUs, CUDA) without timing (reproducible).
* **memory format** (:func:`use_channels_last`, :func:`memory_format`, :func:`as_channels_last`):
  channels_last for 2D and channels_last_3d for 3D, on CPU and CUDA; 1D has no such format.
* :func:`autocast`: the forward's context for a precision; :func:`grad_scaler` for fp16.
* **device** (:func:`resolve_device`): ``auto`` (CUDA when present, else the CPU), ``cpu``,
  ``cuda`` or ``cuda:N`` (under ``torchrun``: the ``LOCAL_RANK`` GPU), for every command.

A leaf module: it imports torch and :mod:`unetkit.hardware` only. A Xeon with AVX-512 BF16 but
no AMX runs bf16 convolutions at half the fp32 rate (``benchmarks/README.md``): ``auto`` = fp32.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit import hardware
from unetkit.hardware import native_bf16

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
FloatPrecision = Literal["fp32", "bf16", "fp16"]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: bf16 must take at most this share of the fp32 time to count as faster (noise margin).
FASTER_BELOW = 0.9

T = TypeVar("T", Tensor, nn.Module)


@dataclass(frozen=True)
class Bf16Timing:
    """The same work timed in fp32 and in bf16 autocast, in alternating rounds.

    Attributes:
        fp32_seconds, bf16_seconds: the best time of each.
        ratio: bf16 time over fp32 time in the round least favourable to bf16 (each round
            times both back to back, so a machine that gets busier does not favour either);
            below 1, bf16 was faster in every round.
    """

    fp32_seconds: float
    bf16_seconds: float
    ratio: float


#: Seconds one call of the work takes in the given precision (the caller's own step).
Measure = Callable[[FloatPrecision], float]


def time_both(measure: Measure, rounds: int = 3) -> Bf16Timing:
    """Call ``measure`` once per precision to warm up, then ``rounds`` times alternately."""
    for precision in ("fp32", "bf16"):
        measure(precision)  # type: ignore[arg-type]  # kernel selection, JIT
    pairs = [(measure("fp32"), measure("bf16")) for _ in range(rounds)]
    return Bf16Timing(
        fp32_seconds=min(f for f, _ in pairs),
        bf16_seconds=min(b for _, b in pairs),
        ratio=max(b / max(f, 1e-12) for f, b in pairs),
    )


def conv_measure(device: torch.device | str = "cpu") -> Measure:
    """A U-Net-like work unit for callers without their own: two 3x3 convolutions (32 -> 32
    channels, 2x32x64x64, channels_last) forward and backward; well under a second on a CPU.
    It can favour bf16 more than a whole training step does, so the trainer times its own.

    Uses its own random generator, so the global RNG (and a seeded run) is untouched.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 64, 64, generator=gen).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    w = (torch.randn(32, 32, 3, 3, generator=gen) * 0.05).to(device)
    w = w.contiguous(memory_format=torch.channels_last).requires_grad_(True)

    def once(precision: FloatPrecision) -> float:
        start = time.perf_counter()
        with autocast(precision, device):
            y = F.conv2d(F.relu(F.conv2d(x, w, padding=1)), w, padding=1)
        y.float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return once


_MEASURED: dict[str, Bf16Timing] = {}


def bf16_timing(
    device: torch.device | str = "cpu", measure: Measure | None = None, key: str = "conv"
) -> Bf16Timing | None:
    """fp32 against bf16 on ``device``, timed once per process and ``key`` and cached.

    ``measure`` times the caller's own work (the trainer passes its training step); the default
    is :func:`conv_measure`. ``None`` where the device has no native bf16: emulated bf16 is
    always slower, so nothing is timed.
    """
    device = torch.device(device)
    if not native_bf16(device):
        return None
    cache_key = f"{device}:{key}"
    if cache_key not in _MEASURED:
        _MEASURED[cache_key] = time_both(measure or conv_measure(device))
        log.debug("bf16 timing %s: %s", cache_key, _MEASURED[cache_key])
    return _MEASURED[cache_key]


def bf16_is_faster(
    device: torch.device | str = "cpu", measure: Measure | None = None, key: str = "conv"
) -> bool:
    """Whether bf16 autocast was measured faster than fp32 (:func:`bf16_timing`) in every round,
    by the margin :data:`FASTER_BELOW`."""
    timing = bf16_timing(device, measure, key)
    return timing is not None and timing.ratio < FASTER_BELOW


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")


def training_precision(
    precision: str = "auto",
    device: torch.device | str = "cpu",
    *,
    measure: Measure | None = None,
    key: str = "conv",
) -> FloatPrecision:
    """``"fp32"`` or ``"bf16"`` (autocast) for training on ``device``.

    ``"auto"`` chooses bf16 only where it is measured faster (:func:`bf16_is_faster`, timing
    ``measure``, e.g. the trainer's own step, cached under ``key``). An explicit ``"bf16"`` on
    a device without native bf16 raises ``ValueError`` (it would be emulated and slow).
    """
    _check(precision)
    device = torch.device(device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision: 'fp16' training needs a CUDA device ({device} given); use 'fp32' or "
            f"'auto'"
        )
    if precision == "auto":
        if hardware.bf16_allowed() and bf16_is_faster(device, measure, key):
            return "bf16"
        if device.type == "cuda" and not native_bf16(device):
            return "fp16"  # tensor cores without bf16 (pre-Ampere): fp16 with a grad scaler
        return "fp32"
    if precision == "bf16" and not native_bf16(device):
        raise ValueError(
            f"precision: 'bf16' needs native bf16 support, which {device} lacks; "
            f"use 'fp32' or 'auto'"
        )
    return precision  # type: ignore[return-value]


def inference_precision(
    precision: str = "auto", device: torch.device | str = "cpu"
) -> FloatPrecision:
    """``"fp32"`` or ``"bf16"`` for the float inference path on ``device``.

    ``"auto"`` chooses bf16 where the instruction set makes it faster
    (:func:`unetkit.hardware.bf16_is_faster`: AMX-BF16 CPUs, CUDA), without timing anything, so
    that predictions of the same model on the same machine are always the same. An explicit
    ``"bf16"`` is honoured everywhere (emulated where not native; a warning is logged).
    """
    _check(precision)
    if precision == "fp16":
        raise ValueError("precision: 'fp16' is for training on CUDA; predict with 'bf16' or 'fp32'")
    if precision == "auto":
        return "bf16" if hardware.bf16_is_faster(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        log.warning("precision='bf16': %s has no native bf16; this will be slow", device)
    return "bf16" if precision == "bf16" else "fp32"


def describe_choice(
    requested: str, chosen: str, device: torch.device | str = "cpu", key: str = "conv"
) -> str:
    """One line saying which precision a run uses and why, e.g. for ``train.precision=auto``:
    ``precision: fp32 (auto: bf16 measured 1.9x slower than fp32 on cpu)``."""
    if requested != "auto":
        return f"precision: {chosen}"
    timing = _MEASURED.get(f"{torch.device(device)}:{key}")
    if timing is None:
        return f"precision: {chosen} (auto: no native bf16 on {torch.device(device)})"
    if timing.ratio < 1.0:
        speed = f"{1.0 / timing.ratio:.1f}x faster"
    else:
        speed = f"{timing.ratio:.1f}x slower"
    return f"precision: {chosen} (auto: bf16 measured {speed} than fp32 on {torch.device(device)})"


def autocast(
    precision: str, device: torch.device | str = "cpu"
) -> contextlib.AbstractContextManager[object]:
    """The context for the forward pass and loss: bf16 autocast, or nothing for fp32.

    Weights, gradients and optimiser state stay fp32; convolutions run in bf16 with fp32
    accumulation. Call ``backward()`` outside the context.
    """
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(torch.device(device).type, dtype=torch.float16)
    if precision != "fp32":
        raise ValueError(f"precision: expected 'fp32', 'bf16' or 'fp16', got {precision!r}")
    return contextlib.nullcontext()


def grad_scaler(precision: str, device: torch.device | str = "cpu") -> torch.amp.GradScaler:
    """The gradient scaler for ``precision``: active for fp16 on CUDA, a pass-through otherwise
    (``scale(loss)`` returns ``loss``, ``step(opt)`` calls ``opt.step()``)."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type == "cuda")


DEVICES = "auto, cpu, cuda or cuda:N"


def resolve_device(
    spec: str | torch.device | None = "auto", *, local_rank: int | None = None
) -> torch.device:
    """The device a command runs on, from ``--device``.

    ``auto`` (or ``None``): CUDA when a GPU is present, else the CPU. ``cuda`` means the current
    GPU, or under ``torchrun`` (``local_rank`` given) GPU ``local_rank``; ``cuda:N`` GPU ``N``.
    A GPU asked for on a machine without one, or an index out of range, raises ``ValueError``
    with the fix (``--device cpu``).
    """
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text != "cuda" and not text.startswith("cuda:"):
        raise ValueError(f"--device: expected {DEVICES}, got {spec!r}")
    index: int | None = None
    if text.startswith("cuda:"):
        if not text[5:].isdigit():
            raise ValueError(f"--device: expected {DEVICES}, got {spec!r}")
        index = int(text[5:])
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {spec}: no CUDA GPU is visible to PyTorch here (torch.cuda.is_available() "
            f"is False); use --device cpu (or auto)"
        )
    count = torch.cuda.device_count()
    if index is None:
        index = local_rank if local_rank is not None else torch.cuda.current_device()
    if not 0 <= index < count:
        raise ValueError(
            f"--device {spec}: GPU {index} does not exist ({count} visible: cuda:0..cuda:"
            f"{count - 1}); choose one of them"
        )
    return torch.device("cuda", index)


M = TypeVar("M", bound=nn.Module)


def on_device(module: M, device: str | torch.device | None, *, copy: bool = False) -> M:
    """``module`` on ``device`` (``None``: ``auto`` for a fresh module, else where it is).

    With ``copy`` the caller's module is never moved: a module on another device runs as a
    copy. Without it the module is moved in place (as ``Module.to`` does).
    """
    if device is None and copy:
        return module
    target = resolve_device(device)
    current = next(iter(module.parameters()), torch.empty(0)).device
    if target == current:
        return module
    if copy:
        import copy as _copy

        module = _copy.deepcopy(module)
    return module.to(target)


@contextlib.contextmanager
def exact_fp32(device: torch.device | str) -> Iterator[None]:
    """fp32 that is fp32 on a GPU: TF32 tensor-core rounding (PyTorch's default for cuDNN
    convolutions on Ampere and newer) is off inside, so fp32 predictions on a GPU match the
    CPU's labels. Training keeps TF32 (its speed is the point there). Nothing on the CPU."""
    if torch.device(device).type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work on ``device`` (for timings); nothing on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_format(spatial_dims: int) -> torch.memory_format:
    """``torch.channels_last`` for 2D, ``torch.channels_last_3d`` for 3D."""
    return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last


def as_channels_last(x: Tensor, spatial_dims: int) -> Tensor:
    """``x: (B, C, *S)`` in channels-last strides, one channel included (``contiguous`` keeps it
    channels-first, and so was the first convolution's output: 4.7x slower, measured)."""
    fmt = memory_format(spatial_dims)
    if x.shape[1] != 1 or (x.stride(1) == 1 and x.is_contiguous(memory_format=fmt)):
        return x.contiguous(memory_format=fmt)
    return torch.empty_like(x, memory_format=fmt).copy_(x)


def use_channels_last(
    enabled: bool | Literal["auto"],
    spatial_dims: int,
    device: torch.device | str = "cpu",
    *,
    strict: bool = False,
) -> bool:
    """Whether to run in channels_last: ``"auto"`` means yes for 2D and 3D on CPU and CUDA.

    ``True`` for a 1D model is ignored (``False``), or with ``strict`` a ``ValueError``.
    """
    if enabled == "auto":
        return spatial_dims in (2, 3) and torch.device(device).type in ("cpu", "cuda")
    if not isinstance(enabled, bool):
        raise ValueError(f"channels_last: expected True, False or 'auto', got {enabled!r}")
    if strict and enabled and spatial_dims not in (2, 3):
        raise ValueError(
            f"channels_last: only 2D and 3D models have a channels_last format "
            f"(spatial_dims={spatial_dims})"
        )
    return enabled and spatial_dims in (2, 3)


def to_channels_last(obj: T, spatial_dims: int) -> T:
    """A model or a batch ``(B, C, *S)`` in channels_last (3D: channels_last_3d) format.

    1D models and batches, which have no such format, come back unchanged. A module is
    converted in place (as ``Module.to`` does) and returned.
    """
    if spatial_dims not in (2, 3):
        return obj
    fmt = memory_format(spatial_dims)
    if isinstance(obj, nn.Module):
        return obj.to(memory_format=fmt)
    if obj.ndim != spatial_dims + 2:
        raise ValueError(
            f"to_channels_last: expected a batch (B, C, {spatial_dims} spatial axes), "
            f"got shape {tuple(obj.shape)}"
        )
    return obj.contiguous(memory_format=fmt)

__all__ = [
    "DEVICES",
    "PRECISIONS",
    "Bf16Timing",
    "Measure",
    "as_channels_last",
    "autocast",
    "bf16_is_faster",
    "bf16_timing",
    "conv_measure",
    "describe_choice",
    "exact_fp32",
    "grad_scaler",
    "inference_precision",
    "memory_format",
    "on_device",
    "resolve_device",
    "synchronize",
    "time_both",
    "to_channels_last",
    "training_precision",
    "use_channels_last",
]
