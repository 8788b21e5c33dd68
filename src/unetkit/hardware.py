"""What the processor can do fast: native bf16, int8 dot products, core counts.

A leaf module (imports only torch). It says what the processor *can* do; the decisions built on
it (precision, memory format) are made in one place, :mod:`unetkit.precision`.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

import torch


@functools.cache
def cpu_features() -> frozenset[str]:
    """Instruction-set features of this CPU, lower case (``"avx512_bf16"``, ``"amx_bf16"``, ...).

    Asks PyTorch's own CPU probe first and falls back to ``/proc/cpuinfo``; empty where neither
    is available (the callers then choose the safe, fp32 path).
    """
    probe = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if probe is not None:
        try:
            caps: dict[str, Any] = probe()
            return frozenset(k.lower() for k, v in caps.items() if v is True)
        except (RuntimeError, TypeError):  # pragma: no cover - depends on the build
            pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 convolutions run natively (not emulated) on ``device``.

    CPU: AVX-512 BF16 or AMX-BF16 and a oneDNN build. oneDNN also runs bf16 on plain AVX-512 by
    emulation, which is slower than fp32, so that case answers ``False``. CUDA: what
    ``torch.cuda.is_bf16_supported`` says. Other devices: ``False``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    features = cpu_features()
    return "avx512_bf16" in features or "amx_bf16" in features


#: Environment variable: set (to anything but ``0``) to keep every automatic precision choice
#: (inference's ``auto`` float path, training's ``precision: auto``) at fp32, so that the same
#: model and data give the same numbers on machines with and without AMX (the test suite sets it).
NO_BF16_ENV = "UNETKIT_NO_BF16"


def bf16_allowed() -> bool:
    """Whether automatic choices may pick bf16 (:data:`NO_BF16_ENV` not set)."""
    return os.environ.get(NO_BF16_ENV, "") in ("", "0")


def bf16_is_faster(device: torch.device | str = "cpu") -> bool:
    """Whether the instruction set makes bf16 convolutions beat fp32 on ``device`` (what
    inference's ``precision="auto"`` follows; training's ``auto`` times its own step instead).

    Measured, not assumed (``benchmarks/README.md``): on a CPU with AVX-512 BF16 but no AMX (a
    Xeon whose AMX a hypervisor hides), oneDNN's bf16 convolutions and matmuls run at about half
    the fp32 rate, because the bf16 dot-product instruction issues on one port where fp32 FMAs
    issue on two. bf16 pays on CPUs with AMX-BF16 tiles and on CUDA GPUs with bf16 support.
    """
    device = torch.device(device)
    if not bf16_allowed():
        return False
    if device.type == "cuda":
        return native_bf16(device)
    return native_bf16(device) and "amx_bf16" in cpu_features()


def native_int8() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX)."""
    features = cpu_features()
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & features)


def describe() -> dict[str, Any]:
    """A short description of the machine for benchmark records."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    features = cpu_features()
    shown = sorted(
        f
        for f in features
        if f.startswith(("avx512_bf16", "avx512_vnni", "avx_vnni", "amx", "avx512_fp16"))
        or f in ("avx2", "avx512f", "avx512_f")
    )
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "features": shown,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "native_bf16": native_bf16("cpu"),
        "native_int8": native_int8(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
