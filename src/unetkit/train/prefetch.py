"""The next training batch, built in a background thread while the current step computes.

Cutting patches, augmenting them (affine and elastic resampling) and computing the paper's
border weight map take 7% of a CPU training step of the DSB 2018 recipe (batch 8 of 128²:
19 ms of 264 ms on 2 quiet cores), and all of the CPU's time while a GPU computes a step. The
network's forward and backward release the interpreter lock, so one worker thread can build
batch ``(epoch, index + 1)`` meanwhile. On a CPU whose cores all run the step, the thread
competes with it: ``benchmarks/train_speed.py --data`` measured 0.94x the steps per minute on
2 quiet cores (1.10x on the same cores shared with other jobs), so ``train.prefetch=auto``
turns it on only for GPU training.

Every batch source of :mod:`unetkit.tasks` is a pure function of ``(epoch, index)`` (its
random numbers come from ``numpy.random.default_rng([seed, epoch, index, item])``), so building
a batch early, or twice, changes nothing: a prefetched run is bit-identical to one that builds
each batch when it is asked for, and resume stays exact. A request for another batch than the
one guessed (the first step, after an epoch's last step, after a resume) is built on the spot
and the guess is dropped. Errors raised while building a batch reach the caller unchanged.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class PrefetchedBatches:
    """A batch source (``batch(epoch, index)``, ``stems(epoch, index)``) that prepares the
    next batch ahead.

    Args:
        source: the task's batch source; every other attribute is read through to it.
        enabled: ``False`` builds every batch on request (the plain source's behaviour).
    """

    def __init__(self, source: Any, *, enabled: bool = True) -> None:
        self.source = source
        self.enabled = enabled
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[tuple[int, int], Future[Any]] | None = None
        self.hits = 0
        self.misses = 0

    def batch(self, epoch: int, index: int) -> Any:
        """Batch ``index`` of ``epoch``, as ``source.batch`` returns it."""
        if not self.enabled:
            return self.source.batch(epoch, index)
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == (epoch, index):
            self.hits += 1
            result = pending[1].result()
        else:
            if pending is not None:
                pending[1].cancel()
            self.misses += 1
            result = self.source.batch(epoch, index)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unetkit-batch")
        self._pending = ((epoch, index + 1), self._pool.submit(self.source.batch, epoch, index + 1))
        return result

    def stems(self, epoch: int, index: int) -> list[str]:
        """The source names of batch ``index`` of ``epoch`` (from the source)."""
        return self.source.stems(epoch, index)

    def close(self) -> None:
        """Drop the guess and stop the worker thread (a later :meth:`batch` starts a new one)."""
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __getattr__(self, name: str) -> Any:
        if name == "source":  # not yet set (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)
