"""The host memory allocator: keep freed tensor memory instead of unmapping it.

A training step allocates and frees the same large tensors (activations, their gradients) every
step. glibc's ``malloc`` serves a block above its mmap threshold (128 KiB, raised at run time to
32 MiB at most) with a fresh ``mmap`` and gives it back with ``munmap``, and trims the top of the
heap once more than twice that threshold is free, so the next step touches new pages again: one
page fault, and the kernel zeroing 4 KiB, per page. Measured on this project's 2-core CPU: a
16 MiB tensor allocated and freed repeatedly faulted on all of its 4,096 pages every time, and
a step of the default recipe on DSB 2018 took 14,000 faults (29 ms of system time per step on
one thread) (``benchmarks/README.md``, "steps per minute").

:func:`keep_freed_memory` raises both thresholds to 1 GiB with ``mallopt`` (glibc only; a no-op
elsewhere), so freed blocks stay in the heap and the next step reuses them without a fault.
Elementwise layers gain most (``torch.cat`` of two 64-channel 256x256 maps 3x faster, a U-Net
forward 9-20% faster). Values never change: only where the memory comes from. The cost is that
memory freed after a peak stays with the process (the peak itself is unchanged), which suits a
command-line run. It is process-wide and set by training
(:class:`unetkit.train.step.StepRunner`, so ``unetkit.fit`` too) and by the ``train``,
``predict`` and ``evaluate`` commands (the last two keep less, :data:`PREDICT_KEEP_BYTES`, so
that block-wise prediction stays within its memory goal); importing the library never sets it.

A leaf module (imports only the standard library).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

log = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap and freed memory up to this size stays there.
KEEP_BYTES = 1 << 30
#: What ``predict`` and ``evaluate`` keep. Measured on the block-wise 3D path (192 x 1024², 98
#: blocks, benchmarks/predict_large.py): nothing kept 1.47 Mvox/s and 1348 MiB peak, 128 MiB
#: 2.23 and 1404 MiB, 256 MiB 2.46 and 1446 MiB, 1 GiB 2.33 and 1613 MiB (issue #16's goal is
#: under 1.5 GB, 1431 MiB).
PREDICT_KEEP_BYTES = 128 << 20


@functools.cache
def keep_freed_memory(keep_bytes: int = KEEP_BYTES) -> bool:
    """Make glibc keep up to ``keep_bytes`` of freed memory for reuse (see the module
    docstring); once per value, the last call's value holds.

    Returns whether the setting took effect: ``False`` off Linux, without glibc, or where
    ``mallopt`` refused it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = (
        mallopt(M_MMAP_THRESHOLD, keep_bytes) == 1
        and mallopt(M_TRIM_THRESHOLD, keep_bytes) == 1
        and mallopt(M_TOP_PAD, 1 << 26) == 1  # grow the heap 64 MiB at a time
    )
    log.debug("allocator: keep freed memory up to %d MiB: %s", keep_bytes >> 20, ok)
    return ok


__all__ = ["KEEP_BYTES", "PREDICT_KEEP_BYTES", "keep_freed_memory"]
