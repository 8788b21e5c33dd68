"""Timing, memory and peak-throughput helpers for the benchmarks (not part of the package)."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.model.summary import conv_flops


def rss_mb() -> float:
    """Current resident set size of this process, MiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process since the last :func:`reset_peak_rss`, MiB
    (Linux ``VmHWM``; elsewhere the process's lifetime peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Start the peak (``VmHWM``) afresh from the current RSS, so building a model (exporting,
    calibrating) does not count in the peak of running it. Linux only; no-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def time_it(fn: Callable[[], object], *, warmup: int, repeats: int) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times, then ``repeats`` times timed.

    Returns the median, min and max wall seconds, the spread ``(max - min) / median`` and the
    median CPU seconds of the process (which counts every thread), so that a run on a busy
    machine can be told from one on a quiet one (CPU time / threads ~ wall time when quiet).
    """
    for _ in range(warmup):
        fn()
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    median = statistics.median(walls)
    return {
        "median_s": median,
        "min_s": min(walls),
        "max_s": max(walls),
        "spread": (max(walls) - min(walls)) / median if median > 0 else 0.0,
        "cpu_s": statistics.median(cpus),
        "walls": walls,
    }


def forward_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Convolution FLOPs of one forward pass at ``shape`` (multiply-add = 2), on the meta device.

    Works for any model built from ``torch.nn`` convolutions (unetkit's and MONAI's alike), so
    every implementation is counted by the same rule.
    """
    import copy

    meta = copy.deepcopy(model).to("meta")
    total = 0

    def hook(module: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += conv_flops(module, inp[0], out)

    handles = [m.register_forward_hook(hook) for m in meta.modules()]  # 0 for non-convs
    try:
        with torch.no_grad():
            meta(torch.empty(shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def conv_peak(dtype: torch.dtype, *, repeats: int = 5) -> dict[str, Any]:
    """Measured throughput of 3x3 conv2d (channels_last) over U-Net-like shapes; best = peak.

    Shapes (batch 2): 64 ch at 256x256, 128 at 128x128, 256 at 64x64, 512 at 32x32, in and out
    channels equal, same padding. GFLOP/s counts a multiply-add as 2.
    """
    results = {}
    for channels, size in ((64, 256), (128, 128), (256, 64), (512, 32)):
        x = torch.randn(2, channels, size, size, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(channels, channels, 3, 3, dtype=dtype)
        w = w.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            t = time_it(lambda x=x, w=w: F.conv2d(x, w, padding=1), warmup=1, repeats=repeats)
        flops = 2 * 2 * channels * channels * 9 * size * size
        results[f"{channels}x{size}"] = flops / t["median_s"] / 1e9
    return {"gflops": max(results.values()), "per_shape": results}


def matmul_peak(dtype: torch.dtype, *, n: int = 2048, repeats: int = 5) -> float:
    """Measured GFLOP/s of an ``n x n`` matrix product in ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    t = time_it(lambda: a @ b, warmup=1, repeats=repeats)
    return 2 * n**3 / t["median_s"] / 1e9


def int8_conv_peak(*, repeats: int = 5) -> float | None:
    """GFLOP/s-equivalent of PyTorch's quantized 3x3 conv2d (x86/oneDNN+fbgemm); None if absent.

    One shape, 128 channels at 128x128, batch 2. A multiply-add of int8 counts as 2 operations,
    so the number compares directly with the float peaks.
    """
    try:
        torch.backends.quantized.engine = "x86"
        from torch.ao.nn.quantized import Conv2d as QConv2d

        channels, size = 128, 128
        x = torch.quantize_per_tensor(torch.randn(2, channels, size, size), 0.05, 128, torch.quint8)
        x = x.contiguous(memory_format=torch.channels_last)
        conv = QConv2d(channels, channels, 3, padding=1)
        weight = torch.quantize_per_channel(
            torch.randn(channels, channels, 3, 3),
            torch.full((channels,), 0.01),
            torch.zeros(channels, dtype=torch.long),
            0,
            torch.qint8,
        )
        conv.set_weight_bias(weight, None)
        t = time_it(lambda: conv(x), warmup=1, repeats=repeats)
        return 2 * 2 * channels * channels * 9 * size * size / t["median_s"] / 1e9
    except (RuntimeError, ImportError, AttributeError):
        return None
