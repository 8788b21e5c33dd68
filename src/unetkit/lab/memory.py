"""P10, the memory cost of skips: peak memory and time of a training step, with checkpointing.

What is measured, per input size and ``checkpointing`` mode (``off``, ``encoder``, ``all``):

* **peak step memory**: PyTorch's profiler records every CPU tensor allocation and free made
  during one forward + backward pass (``profile_memory=True``); the running sum of those events,
  in time order, peaks at the most tensor memory the step held at once on top of what existed
  before it (parameters, the input batch). This is real allocator traffic, not an estimate.
  ``tracemalloc`` would see none of it (PyTorch allocates outside Python's allocator) and the
  process RSS is blurred by the C allocator keeping freed pages, so neither is used.
* **saved for backward**: the bytes of the tensors autograd keeps for the backward pass, summed
  in a saved-tensor hook and deduplicated by storage. Tensors saved inside a checkpointed region
  are not kept (checkpointing's own hook replaces ours there), so this shows exactly what
  checkpointing removes; the block inputs a checkpoint holds for recomputation are not counted.
* **time per step**: median wall time of forward, backward and an Adam step.
* **estimate**: the activation memory ``unetkit info`` predicts (``summarize``).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from unetkit.lab.common import ExperimentResult, LabSettings, new_figure, seed_everything
from unetkit.model import UNet, UNetConfig, summarize

NAME = "memory"
PRINCIPLES = ("P10",)
MODES = ("off", "encoder", "all")
MIB = 2**20


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence the profiler's native start/stop log lines (file descriptor 2) for a moment."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_step_bytes(model: UNet, x: Tensor, y: Tensor) -> int:
    """Peak bytes of CPU tensors allocated during one forward + backward pass of ``model``."""
    from torch.profiler import ProfilerActivity, profile

    model.zero_grad(set_to_none=True)
    with (
        _quiet_native_stderr(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        del loss
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    model.zero_grad(set_to_none=True)
    return peak


def saved_for_backward_bytes(model: UNet, x: Tensor, y: Tensor) -> int:
    """Bytes of the tensors autograd saves for backward (outside checkpoints), by storage."""
    storages: dict[tuple[int, torch.device], int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        storages[(s.data_ptr(), t.device)] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    del loss
    return sum(storages.values())


def step_seconds(model: UNet, x: Tensor, y: Tensor, repeats: int) -> float:
    """Median wall time of a full training step (forward, backward, Adam)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if i:  # the first step warms up allocator and kernels
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(settings: LabSettings) -> ExperimentResult:
    """Measure peak memory and step time for each size and checkpointing mode."""
    widths = (16, 32, 64, 128)
    if settings.quick:
        sizes, batch, repeats = (64, 128), 2, 2
    else:
        sizes, batch, repeats = (64, 128, 192, 256), 4, 3
    rows: list[dict[str, Any]] = []
    for size in sizes:
        gen = torch.Generator().manual_seed(settings.seed)
        x = torch.randn(batch, 1, size, size, generator=gen)
        y = torch.randint(0, 2, (batch, size, size), generator=gen)
        for mode in MODES:
            seed_everything(settings.seed)
            config = UNetConfig(widths=widths, checkpointing=mode)  # type: ignore[arg-type]
            model = UNet(config).train()
            rows.append(
                {
                    "size": size,
                    "checkpointing": mode,
                    "peak_bytes": peak_step_bytes(model, x, y),
                    "saved_bytes": saved_for_backward_bytes(model, x, y),
                    "estimate_bytes": summarize(config, size, batch=batch).activation_bytes,
                    "step_seconds": step_seconds(model, x, y, repeats),
                }
            )

    def get(size: int, mode: str, key: str) -> float:
        return next(r[key] for r in rows if r["size"] == size and r["checkpointing"] == mode)

    big = sizes[-1]
    saving = {m: 1 - get(big, m, "peak_bytes") / get(big, "off", "peak_bytes") for m in MODES}
    slower = {m: get(big, m, "step_seconds") / get(big, "off", "step_seconds") - 1 for m in MODES}
    headline = (
        f"At {big}x{big} (batch {batch}) checkpointing the encoder lowers the peak memory of a "
        f"training step from {get(big, 'off', 'peak_bytes') / MIB:.0f} MiB to "
        f"{get(big, 'encoder', 'peak_bytes') / MIB:.0f} MiB ({saving['encoder']:.0%} less) for "
        f"{slower['encoder']:+.0%} time; checkpointing all blocks: "
        f"{get(big, 'all', 'peak_bytes') / MIB:.0f} MiB ({saving['all']:.0%} less), "
        f"{slower['all']:+.0%} time."
    )
    numbers = {
        "widths": list(widths),
        "batch": batch,
        "sizes": list(sizes),
        "threads": torch.get_num_threads(),
        "rows": rows,
        "peak_saving_at_largest": saving,
        "time_overhead_at_largest": slower,
        "what_is_measured": {
            "peak_bytes": "profiler allocation events of one forward+backward, running-sum peak",
            "saved_bytes": "tensors saved for backward outside checkpoints, by storage",
            "estimate_bytes": "activation memory predicted by summarize() (unetkit info)",
            "step_seconds": "median wall time of forward+backward+Adam step",
        },
    }
    markdown = (
        f"**memory (P10).** A 2D U-Net with widths {list(widths)}, batch {batch}, input sizes "
        f"{', '.join(str(s) for s in sizes)}; peak memory of one forward + backward measured from "
        f"PyTorch's profiler allocation events, and time per training step on "
        f"{torch.get_num_threads()} thread(s). {headline} Autograd's saved tensors at that size "
        f"fall from {get(big, 'off', 'saved_bytes') / MIB:.0f} to "
        f"{get(big, 'encoder', 'saved_bytes') / MIB:.0f} MiB (encoder) and "
        f"{get(big, 'all', 'saved_bytes') / MIB:.0f} MiB (all). Memory grows linearly with the "
        f"number of pixels in every mode; checkpointing changes the slope, and the skips "
        f"themselves stay in memory, as the design source says. `unetkit info` estimated "
        f"{get(big, 'off', 'estimate_bytes') / MIB:.0f} MiB of activations without "
        f"checkpointing. Times on a shared machine are indicative only."
    )
    fig, axes = new_figure(2)
    pixels = [s * s for s in sizes]
    for i, mode in enumerate(MODES):
        axes[0].plot(
            pixels,
            [get(s, mode, "peak_bytes") / MIB for s in sizes],
            f"C{i}-o",
            label=f"peak, {mode}",
        )
        axes[0].plot(
            pixels,
            [get(s, mode, "saved_bytes") / MIB for s in sizes],
            f"C{i}:x",
            label=f"saved, {mode}",
        )
        axes[1].plot(
            pixels, [get(s, mode, "step_seconds") * 1e3 for s in sizes], f"C{i}-o", label=mode
        )
    axes[0].set_xlabel("input pixels per image")
    axes[0].set_ylabel("MiB")
    axes[0].set_title(f"Checkpointing the encoder saves {saving['encoder']:.0%} of peak memory")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("input pixels per image")
    axes[1].set_ylabel("ms per training step")
    axes[1].set_title(f"...for {slower['encoder']:+.0%} time per step (largest size)")
    axes[1].legend(title="checkpointing")
    return ExperimentResult(NAME, PRINCIPLES, headline, numbers, markdown, fig)
