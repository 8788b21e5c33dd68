"""Prediction shared by the processes of a ``torchrun`` launch.

``torchrun`` (``python -m torch.distributed.run``) starts ``WORLD_SIZE`` processes and gives each
its ``RANK``. :func:`context` reads them and, where there are several processes, joins the
process group (``gloo``: CPU tensors, any machine). Prediction then splits its work by rank:
files ``i`` with ``i % world == rank``, and the blocks of a huge image the same way
(:mod:`unetkit.infer.blockwise`); every process writes disjoint files or disjoint Zarr chunks,
so the result equals a single-process run. A single process (no ``torchrun``) is rank 0 of 1
and needs no process group.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Context:
    """This process's place in the launch: ``rank`` in ``[0, world)``."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes what is shared (a manifest, a store's metadata)."""
        return self.rank == 0

    def share(self, items: list[Any]) -> list[Any]:
        """This process's share of ``items`` (every ``world``-th, from ``rank``)."""
        return items[self.rank :: self.world]

    def barrier(self) -> None:
        """Wait until every process reaches this point (nothing to wait for alone)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order, on every process."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out


def context() -> Context:
    """The launch this process belongs to; joins the ``gloo`` process group when needed."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Context()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
        # leave the group before the interpreter exits: a gloo group still alive at exit can
        # abort the process ("terminate called without an active exception", seen under load)
        atexit.register(_leave_group)
    return Context(rank=dist.get_rank(), world=dist.get_world_size())


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
