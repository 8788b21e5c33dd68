"""Nothing written until the run will work: the checks before a run folder is made or changed,
and the opening of the folder (lock, marker, replacing an old run) once they have passed.

Order for a new run (``unetkit train --out RUN``): the folder policy and the lock are read
(:func:`unetkit.train.runfolder.check_new_run_folder`, :func:`unetkit.train.lock.check_unlocked`),
the config and data are checked, then :func:`preflight` estimates memory and runs a first
forward and backward pass on one real batch (and one validation image) on a throwaway model.
Only then :func:`open_new_run` creates the folder, takes the lock, re-checks the folder under it,
removes what an old run wrote there (``--overwrite``, or an attempt that failed before its first
checkpoint) and writes the marker.

For ``--resume RUN`` the lock is taken first (it is removed again if anything is refused), then
the options are compared with the stored run, the newest checkpoint is read and loaded into the
model, and :func:`preflight` runs; a refused resume leaves the folder exactly as it was.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError
from unetkit.train import runfolder
from unetkit.train.lock import hold


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def preflight(config: Any, prepared: Any, *, device: str | None = None) -> None:
    """Check that ``config`` trains on ``prepared`` here, writing nothing.

    1. memory: :func:`unetkit.memory.check_train` for the model, patch and batch size;
    2. the model builds at the patch size, one training step (forward, loss, backward,
       optimiser) on a real batch and one validation image run, on a throwaway copy.

    Raises:
        UnetkitError: memory would not suffice (naming the option to lower and a value that
            fits), or the first step fails (the error's first line, naming the step).
    """
    from unetkit.memory import check_train
    from unetkit.precision import resolve_device
    from unetkit.train.distributed import DistInfo
    from unetkit.train.step import StepRunner

    patch = config.data.patch_size or tuple(prepared.train[0].image.shape[1:])
    device = device if device is not None else str(resolve_device(config.train.device))
    check_train(config.model, patch, config.train.batch_size, device=device)
    threads = None
    try:
        import torch

        threads = torch.get_num_threads()
        rng = torch.get_rng_state()
        StepRunner(config, prepared, DistInfo()).measure(steps=1, with_val=True)
        torch.set_rng_state(rng)
    except UnetkitError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError, MemoryError) as exc:
        raise UnetkitError(
            f"the first training step failed before anything was written "
            f"(patch {list(patch)}, batch {config.train.batch_size}): {_first_line(exc)}"
        ) from exc
    finally:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)


def check_resume_checkpoint(run: Path, config: Any) -> None:
    """The run's newest good checkpoint can be read and fits its model (reads only).

    A unetkit run stopped before its first checkpoint passes (it starts again from step 0); a
    folder without the marker (an older unetkit) must hold a checkpoint.
    """
    from unetkit.model import UNet
    from unetkit.modelfile import load_state_into
    from unetkit.train import checkpoint as ckpt

    if not ckpt.candidates(run):
        if runfolder.read_marker(run) is None:
            raise UnetkitError(
                f"--resume: {run}: no checkpoint (last/ or checkpoints/) to continue from, and "
                f"no {runfolder.MARKER}: not a unetkit run folder"
            )
        return
    quiet = logging.getLogger(ckpt.__name__)
    was, quiet.disabled = quiet.disabled, True  # the real load reports skipped checkpoints
    try:
        latest = ckpt.load_latest(run)
    finally:
        quiet.disabled = was
    import torch

    with torch.device("meta"):
        model = UNet(config.model)
    try:
        with warnings.catch_warnings():  # shapes are checked; meta tensors copy nothing
            warnings.simplefilter("ignore")
            load_state_into(model, latest.model_tensors, str(latest.folder))
    except UnetkitError as exc:
        raise UnetkitError(f"--resume: {exc}") from None


@contextlib.contextmanager
def open_new_run(
    out: Path, *, overwrite: bool, is_main: bool, say: Callable[[str], None], extra: dict
) -> Iterator[None]:
    """Create ``out`` (rank 0), hold its lock for the block, re-check it under the lock, remove
    what an old unetkit run wrote there and write the marker (with ``extra``, e.g. the data
    fingerprint). Other ranks only wait for the block.

    On a refusal the lock is released and a folder this call created (still empty) is removed.
    """
    if not is_main:
        yield
        return
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with hold(out, "--out", note=say):
            state = runfolder.check_new_run_folder(out, overwrite=overwrite)
            removed = runfolder.discard_old_run(out) if state.own else []
            if removed and state.checkpointed:
                say(f"--overwrite: deleted the previous run in {out} ({', '.join(removed)})")
            elif removed:
                say(
                    f"note: {out}: removed an earlier attempt that stopped before its first "
                    f"checkpoint ({', '.join(removed)})"
                )
            runfolder.write_marker(out, {**runfolder.new_marker(), **extra})
            created = False  # the folder is the run's now
            yield
    finally:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when still empty


@contextlib.contextmanager
def open_resume(run: Path, *, is_main: bool, say: Callable[[str], None]) -> Iterator[None]:
    """Hold ``run``'s lock for the block (rank 0); a refusal inside releases it, leaving the
    folder as it was."""
    if not is_main:
        yield
        return
    with hold(Path(run), "--resume", note=say):
        yield


def adopt(run: Path, is_main: bool, extra: dict) -> None:
    """Once a resume has passed its checks: give a run of an older unetkit its marker."""
    if is_main and runfolder.read_marker(run) is None:
        marker = runfolder.adopt_legacy_run(run)
        runfolder.write_marker(run, {**marker, **extra})


__all__ = ["adopt", "check_resume_checkpoint", "open_new_run", "open_resume", "preflight"]
