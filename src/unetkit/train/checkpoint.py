"""Training checkpoints: everything needed to continue a run, in safetensors and JSON, no pickle.

A checkpoint is a folder::

    model.safetensors   the weights and config (loadable by ``unetkit.load``), with a checksum
    state.safetensors   optimiser tensors and the torch RNG state, with a checksum; its
                        metadata holds JSON: epoch, step, scheduler, optimiser hyper-parameters,
                        NumPy and Python RNG states, the metric history and the model's checksum

Folders are written under a temporary name and renamed into place, so a reader sees an old
complete checkpoint or a new complete one. The run folder keeps ``last/`` and the
``keep`` most recent earlier ones under ``checkpoints/epoch-NNNN/``; :func:`load_latest` falls back
from a damaged ``last/`` to the newest checkpoint that verifies.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.errors import ModelFileError, UnetkitError
from unetkit.model import UNet
from unetkit.modelfile import read_tensors, save, tensors_digest, write_tensors

log = logging.getLogger(__name__)

LAST = "last"
CHECKPOINTS = "checkpoints"
STATE_FILE = "state.safetensors"
MODEL_FILE = "model.safetensors"


@dataclass
class TrainState:
    """Where a run stands: the JSON-able part of a checkpoint.

    Attributes:
        epoch: epochs completed.
        step: optimiser steps completed (over the whole run).
        best_dice: best validation Dice so far (``-1`` before the first validation).
        best_epoch: the epoch that reached it.
        history: one dict per completed epoch (the rows of ``metrics.csv``).
        elapsed_seconds: training time spent before this checkpoint (for ``--max-minutes``).
        finished: the planned schedule ran to its end.
        total_steps: the planned number of steps (time-budget runs revise it as they go).
        schedule_share: the share of the run spent after the last step, as the learning-rate
            schedule of a time-budget run saw it (:class:`~unetkit.train.schedule.ScheduleClock`);
            a resumed run continues from it.
    """

    epoch: int = 0
    step: int = 0
    best_dice: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] | None = None
    elapsed_seconds: float = 0.0
    finished: bool = False
    total_steps: int = 0
    schedule_share: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "history": list(self.history or []),
            "elapsed_seconds": self.elapsed_seconds,
            "finished": self.finished,
            "total_steps": self.total_steps,
            "schedule_share": self.schedule_share,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        """Inverse of :meth:`to_json`."""
        return cls(
            epoch=int(data["epoch"]),
            step=int(data["step"]),
            best_dice=float(data["best_dice"]),
            best_epoch=int(data["best_epoch"]),
            history=list(data.get("history", [])),
            elapsed_seconds=float(data.get("elapsed_seconds", 0.0)),
            finished=bool(data.get("finished", False)),
            total_steps=int(data.get("total_steps", 0)),
            schedule_share=float(data.get("schedule_share", 0.0)),
        )


def _split_optimizer(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimiser state as tensors (``optim/{param}/{key}``) plus JSON for everything else."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim/"):
            continue
        _, pid, key = name.split("/", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def _scheduler_json(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    return {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}


def rng_states() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The torch (CPU and, where initialised, every CUDA GPU's), NumPy (global) and Python RNG
    states as tensors and JSON."""
    np_state = np.random.get_state()
    tensors = {
        "rng/torch": torch.get_rng_state(),
        "rng/numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng/cuda"] = torch.stack(torch.cuda.get_rng_state_all())  # (GPUs, state)
    py_state = random.getstate()
    meta = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, meta


def set_rng_states(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` captured."""
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"].to(torch.uint8))
    cuda = tensors.get("rng/cuda")
    if cuda is not None and torch.cuda.is_available():
        # the same GPUs continue exactly; on fewer or other GPUs the states that fit are restored
        states = list(cuda.to(torch.uint8))[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    if "rng/numpy_keys" in tensors and "numpy" in meta:
        name, pos, has_gauss, cached = meta["numpy"]
        keys = tensors["rng/numpy_keys"].numpy().astype(np.uint32)
        np.random.set_state((name, keys, int(pos), int(has_gauss), float(cached)))
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))


def write_checkpoint(
    folder: Path,
    model: UNet,
    metadata: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
) -> None:
    """Write a complete checkpoint to ``folder`` (replaced atomically as a whole)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    full = (
        f"{folder}: cannot write the checkpoint: no space left on device; the previous "
        f"checkpoint is kept. Free space, then continue with: unetkit train --resume "
        f"{folder.parent}"
    )
    with _staged_folder(folder, f".{folder.name}.", full) as tmp:
        save(model, tmp / MODEL_FILE, metadata=metadata)
        opt_tensors, opt_meta = _split_optimizer(optimizer)
        rng_tensors, rng_meta = rng_states()
        payload = {
            "state": state.to_json(),
            "optimizer": opt_meta,
            "scheduler": _scheduler_json(scheduler),
            "rng": rng_meta,
            "model_sha256": tensors_digest(model.state_dict()),
        }
        write_tensors(
            tmp / STATE_FILE,
            {**opt_tensors, **rng_tensors},
            {"format": "unetkit-train-state", "json": json.dumps(payload)},
        )


@contextlib.contextmanager
def _staged_folder(dest: Path, prefix: str, disk_full_message: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest`` that replaces ``dest`` when the block succeeds.

    On any error the temporary folder is removed and ``dest`` is left as it was; a full disk
    becomes a :class:`UnetkitError` with ``disk_full_message`` (the original error as cause).
    """
    tmp = _make_tmp_dir(dest.parent, prefix)
    try:
        yield tmp
        _replace_dir(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(exc):
            raise UnetkitError(disk_full_message) from exc
        raise


def _disk_full(exc: BaseException) -> bool:
    """``exc`` (or the error it was raised from) is ``ENOSPC``/``EDQUOT``."""
    for e in (exc, exc.__cause__):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
    return False


def _make_tmp_dir(parent: Path, prefix: str) -> Path:
    """A fresh temporary folder in ``parent`` with the usual permissions (not mkdtemp's 0700)."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=".tmp"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    return tmp


def _replace_dir(src: Path, dst: Path) -> None:
    """Put folder ``src`` at ``dst``; an old ``dst`` is moved aside first, then deleted.

    A kill between the two renames leaves the old folder at ``.NAME.old`` (which
    :func:`candidates` reads); any ``.NAME.old`` is deleted once the new ``dst`` is in place, so
    a stale one never outlives the next successful write.
    """
    old = dst.with_name(f".{dst.name}.old")
    if dst.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    with contextlib.suppress(OSError):
        fd = os.open(dst.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class Checkpoint:
    """A verified checkpoint read back from disk."""

    folder: Path
    model_tensors: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    state: TrainState
    rng_tensors: dict[str, torch.Tensor]
    rng_meta: dict[str, Any]


def read_checkpoint(folder: Path) -> Checkpoint:
    """Read and verify one checkpoint folder; :class:`ModelFileError` naming what is wrong."""
    folder = Path(folder)
    model_tensors, _ = read_tensors(folder / MODEL_FILE)
    tensors, meta = read_tensors(folder / STATE_FILE)
    if meta.get("format") != "unetkit-train-state" or "json" not in meta:
        raise ModelFileError(f"{folder / STATE_FILE}: not a unetkit training state")
    try:
        payload = json.loads(meta["json"])
    except json.JSONDecodeError:
        raise ModelFileError(f"{folder / STATE_FILE}: its JSON metadata is damaged") from None
    if payload.get("model_sha256") != tensors_digest(model_tensors):
        raise ModelFileError(f"{folder}: model and training state do not belong together")
    return Checkpoint(
        folder=folder,
        model_tensors=model_tensors,
        optimizer=_join_optimizer(tensors, payload["optimizer"]),
        scheduler={
            **payload["scheduler"],
            "lr_lambdas": [None] * len(payload["scheduler"].get("base_lrs", [])),
        },
        state=TrainState.from_json(payload["state"]),
        rng_tensors={k: v for k, v in tensors.items() if k.startswith("rng/")},
        rng_meta=payload["rng"],
    )


def candidates(run: Path) -> list[Path]:
    """Checkpoint folders of a run, most recent first: ``last/``, its moved-aside copy, then
    ``checkpoints/epoch-*`` newest first."""
    run = Path(run)
    found = [run / LAST, run / f".{LAST}.old"]
    ring = run / CHECKPOINTS
    if ring.is_dir():
        found += sorted((p for p in ring.iterdir() if p.name.startswith("epoch-")), reverse=True)
    return [p for p in found if p.is_dir()]


def load_latest(run: Path) -> Checkpoint:
    """The newest checkpoint of ``run`` that verifies.

    Each damaged checkpoint skipped is logged (a warning naming its path and the problem), and
    so is the fall-back to an earlier one; with none usable, :class:`ModelFileError`.
    """
    problems: list[str] = []
    for folder in candidates(run):
        try:
            ckpt = read_checkpoint(folder)
        except (ModelFileError, KeyError, ValueError, OSError) as exc:
            text = str(exc) if str(folder) in str(exc) else f"{folder}: {exc}"
            problems.append(text)
            log.warning("damaged checkpoint skipped: %s", text)
            continue
        if problems:
            log.warning(
                "resuming from the earlier checkpoint %s (epoch %d, step %d) instead",
                folder,
                ckpt.state.epoch,
                ckpt.state.step,
            )
        return ckpt
    detail = f": {problems[0]}" if problems else ""
    raise ModelFileError(f"{run}: no usable checkpoint (last/ or checkpoints/) to resume{detail}")


def keep_ring(run: Path, epoch: int, keep: int) -> None:
    """Copy ``last/`` to ``checkpoints/epoch-NNNN`` and delete all but the ``keep`` newest."""
    if keep <= 0:
        return
    ring = Path(run) / CHECKPOINTS
    ring.mkdir(parents=True, exist_ok=True)
    dest = ring / f"epoch-{epoch:04d}"
    full = (
        f"{dest}: cannot copy the checkpoint: no space left on device; {Path(run) / LAST} is "
        f"complete. Free space, then continue with: unetkit train --resume {run}"
    )
    with _staged_folder(dest, ".epoch.", full) as tmp:
        for name in (MODEL_FILE, STATE_FILE):
            shutil.copy2(Path(run) / LAST / name, tmp / name)
    old = sorted(p for p in ring.iterdir() if p.name.startswith("epoch-"))
    for p in old[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def remove_stale_temporaries(run: Path) -> list[Path]:
    """Delete what writes killed half-way left in ``run``: ``.*.tmp`` files and folders there
    and in ``checkpoints/``. Returns what was removed. Complete files are never touched: every
    write goes to such a temporary first and is renamed into place only when complete."""
    removed = []
    for folder in (Path(run), Path(run) / CHECKPOINTS):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if not (p.name.startswith(".") and p.name.endswith(".tmp")):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed
