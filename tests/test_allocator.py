"""The training allocator setting: freed memory is reused without page faults."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from unetkit import allocator

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt: Linux only")


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_a_freed_large_tensor_is_reused_without_page_faults() -> None:
    if not allocator.keep_freed_memory():
        pytest.skip("not glibc: mallopt is unavailable")
    n = 16 << 20  # 64 MiB of float32: above glibc's largest default mmap threshold (32 MiB)
    for _ in range(2):  # the heap grows to its steady size (two allocations, measured)
        torch.empty(n).fill_(1.0)
    before = _faults()
    for _ in range(3):
        torch.empty(n).fill_(1.0)
    # glibc's defaults map and unmap such a block every time: 16,384 faults per allocation
    assert _faults() - before < 1_000


def test_other_platforms_leave_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory.__wrapped__() is False
