"""The run folder's policy: checked before any work, never overwritten silently.

A new run goes into a folder that does not exist or is empty. One that holds a run (a
``config.yaml``, ``last/`` or ``model.safetensors``) is refused unless the user asks to continue
it (``--resume``) or to replace it (``--overwrite``); any other non-empty folder is refused even
with ``--overwrite``, so a mistyped ``--out`` never deletes unrelated files. Whether the folder
can be written is probed with a real file before the data is read, so a read-only disk fails in
a second, not after an hour of training.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from unetkit.errors import UnetkitError

RUN_MARKERS = ("config.yaml", "last", "model.safetensors")


def holds_run(folder: Path) -> bool:
    """``folder`` has a ``config.yaml``, ``last/`` or ``model.safetensors``."""
    return any((Path(folder) / name).exists() for name in RUN_MARKERS)


def check_writable(folder: Path, option: str) -> None:
    """Raise :class:`UnetkitError` (naming ``option`` and the path) unless ``folder`` exists or
    can be created, and a file can be written in it. Creates nothing that stays behind.

    The probe writes a real temporary file in ``folder`` (or its nearest existing parent), so it
    is right where permission bits are not (as root, on a read-only mount, under quotas).
    """
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise UnetkitError(
            f"{option}: {folder}: cannot create the folder, {probe_dir} is a file; "
            f"choose another {option}"
        )
    try:
        with tempfile.TemporaryFile(dir=probe_dir, prefix=".unetkit-probe."):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnetkitError(
            f"{option}: {folder}: cannot write there ({reason} in {probe_dir}); "
            f"choose another {option} or fix its permissions"
        ) from None


def check_new_run_folder(out: Path, *, overwrite: bool) -> None:
    """Refuse ``out`` for a new run unless it is absent, empty, or (with ``overwrite``) a run.

    Raises:
        UnetkitError: ``out`` holds a run and ``overwrite`` is false; ``out`` holds other files;
            ``out`` is a file; or ``out`` cannot be written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnetkitError(f"--out: {out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not holds_run(out):
            raise UnetkitError(
                f"--out: {out} is not empty and holds no unetkit run; choose another --out "
                f"(--overwrite only replaces run folders)"
            )
        if not overwrite:
            raise UnetkitError(
                f"--out: {out} already holds a run; use --resume {out} to continue it, "
                f"--overwrite to replace it, or another --out"
            )
    check_writable(out, "--out")


def discard_old_run(out: Path) -> Path | None:
    """Remove the run in ``out`` (for ``--overwrite``, once the new run's config and data are
    known to be good): renamed aside in one step, then deleted. Returns the folder it was moved
    to (already deleted), or ``None`` when there was nothing to remove.

    A crash during the deletion leaves the old run under ``.NAME.replaced-TIME`` beside ``out``,
    never mixed into the new run.
    """
    out = Path(out)
    if not (out.is_dir() and any(out.iterdir())):
        return None
    aside = out.with_name(f".{out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    out.rename(aside)
    shutil.rmtree(aside)
    return aside


__all__ = ["check_new_run_folder", "check_writable", "discard_old_run", "holds_run"]
