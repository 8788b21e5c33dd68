"""Process-group plumbing for ``torchrun``: rank and world size from the environment.

``torchrun --nproc-per-node N -m unetkit train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env` starts the process
group from them (NCCL on GPUs, gloo on CPU). Without them everything here is a no-op for one
process, so the trainer has a single code path.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files, logs and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name}: expected an integer, got {value!r}"
        ) from None


def restart_count() -> int:
    """How many times torchrun restarted the workers (``TORCHELASTIC_RESTART_COUNT``)."""
    return _env_int("TORCHELASTIC_RESTART_COUNT", 0)


def init_from_env(device: torch.device | None = None, timeout_minutes: float = 30.0) -> DistInfo:
    """Initialise the default process group from torchrun's environment, if present.

    Returns ``DistInfo()`` (one process) when ``WORLD_SIZE`` is unset or 1. Uses NCCL when
    ``device`` is CUDA, gloo otherwise; a group that is already initialised is reused.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo()
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)  # NCCL collectives and object broadcasts use this GPU
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes)
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local, backend=backend)


def shutdown(info: DistInfo) -> None:
    """Destroy the process group started by :func:`init_from_env` (no-op for one process)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for one process)."""
    if info.distributed:
        dist.barrier()


def _all_reduce(info: DistInfo, tensor: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
    if not info.distributed:
        return tensor
    if info.backend == "nccl" and tensor.device.type != "cuda":
        # NCCL reduces GPU tensors only: through this process's GPU and back, in place
        on_gpu = tensor.to(torch.device("cuda", info.local_rank))
        dist.all_reduce(on_gpu, op=op)
        tensor.copy_(on_gpu.cpu())
        return tensor
    dist.all_reduce(tensor, op=op)
    return tensor


def all_reduce_sum(info: DistInfo, tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes, in place, and return it (unchanged for one process)."""
    return _all_reduce(info, tensor, dist.ReduceOp.SUM)


def all_reduce_max(info: DistInfo, tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over processes, in place."""
    return _all_reduce(info, tensor, dist.ReduceOp.MAX)


def broadcast_object(info: DistInfo, obj: object) -> object:
    """Rank 0's ``obj`` on every process (pickled in memory between our own processes only)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
