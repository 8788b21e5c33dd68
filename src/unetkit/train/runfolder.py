"""The run folder's policy: recognised by a marker only unetkit writes, never replaced blindly.

A run folder carries ``.unetkit-run.json`` (:data:`MARKER`): unetkit's identity, a run id, the
version that wrote it and the names of the files and folders the run writes there
(:data:`RUN_ENTRIES`). Nothing else makes a folder "a run": a ``config.yaml``, ``last/`` or
``model.safetensors`` left by another tool (or typed by hand) does not.

A new run goes into a folder that is absent, empty, or holds only what an earlier unetkit attempt
wrote before its first checkpoint (a failed first try never blocks the corrected second one).
A folder with a checkpointed run is refused unless the user asks to continue it (``--resume``) or
to replace it (``--overwrite``, which deletes only the entries the marker lists). A folder that
holds anything unetkit did not write is refused whatever the options, and the message never
suggests a command that deletes. Folders of older unetkit versions (no marker) are never deleted;
they can still be continued with ``--resume`` when they hold a checkpoint. Whether the folder can
be written is probed with a real file before the data is read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from unetkit.errors import UnetkitError

MARKER = ".unetkit-run.json"
LOCK = ".unetkit-lock"
MARKER_FORMAT = "unetkit-run"
#: Names a run writes in its folder (trainer, checkpoints, report); ``--overwrite`` removes these.
RUN_ENTRIES = (
    "config.yaml",
    "model.safetensors",
    "last",
    "checkpoints",
    "metrics.csv",
    "progress.png",
    "overlays",
    "report.html",
    "tensorboard",
    "mlruns",
)
#: Entries that only look like a run; without the marker they are someone else's.
LEGACY_SIGNS = ("config.yaml", "last", "model.safetensors")


def _is_own_temporary(name: str) -> bool:
    """Temporaries of unetkit's atomic writes (``.NAME.tmp``, ``.last.old``)."""
    return name.startswith(".") and (name.endswith(".tmp") or name == ".last.old")


@dataclass(frozen=True)
class FolderState:
    """What a folder holds, as far as a run is concerned.

    Attributes:
        exists: the folder exists (and is a folder).
        marker: the parsed marker, or ``None`` (absent or not unetkit's).
        own: entries the marker accounts for (present ones only), the lock and temporaries.
        foreign: every other entry (user files, another tool's files).
        checkpointed: the run has a checkpoint (``last/`` or ``checkpoints/epoch-*``).
        legacy: no marker but what an older unetkit run leaves (``config.yaml``/``last/``).
    """

    exists: bool
    marker: dict | None
    own: tuple[str, ...]
    foreign: tuple[str, ...]
    checkpointed: bool
    legacy: bool

    @property
    def is_run(self) -> bool:
        return self.marker is not None


def read_marker(folder: Path) -> dict | None:
    """The marker of ``folder`` when it is a valid unetkit marker, else ``None``."""
    path = Path(folder) / MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
        return None
    if not isinstance(data.get("entries"), list):
        return None
    return data


def _has_checkpoint(folder: Path) -> bool:
    ring = folder / "checkpoints"
    return (folder / "last").is_dir() or (
        ring.is_dir() and any(p.name.startswith("epoch-") for p in ring.iterdir())
    )


def inspect(folder: Path) -> FolderState:
    """Classify the entries of ``folder`` (reads only)."""
    folder = Path(folder)
    if not folder.is_dir():
        return FolderState(False, None, (), (), False, False)
    marker = read_marker(folder)
    listed = set(marker["entries"]) if marker else set()
    own, foreign = [], []
    for p in sorted(folder.iterdir()):
        name = p.name
        ours = marker is not None and (name in listed or name == MARKER or _is_own_temporary(name))
        if ours or name == LOCK:
            own.append(name)
        else:
            foreign.append(name)
    legacy = marker is None and any(name in LEGACY_SIGNS for name in foreign)
    return FolderState(True, marker, tuple(own), tuple(foreign), _has_checkpoint(folder), legacy)


def holds_run(folder: Path) -> bool:
    """``folder`` carries a unetkit run marker."""
    return read_marker(Path(folder)) is not None


def _names(entries: tuple[str, ...], limit: int = 3) -> str:
    shown = ", ".join(entries[:limit])
    return shown + (f" and {len(entries) - limit} more" if len(entries) > limit else "")


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


def check_new_run_folder(out: Path, *, overwrite: bool) -> FolderState:
    """Refuse ``out`` for a new run unless it is absent, empty, an unfinished attempt of unetkit
    (marker, no checkpoint) or (with ``overwrite``) a unetkit run with nothing foreign in it.

    Reads only. Returns the folder's state (what :func:`claim_run_folder` will replace).

    Raises:
        UnetkitError: ``out`` is a file; holds files unetkit did not write; holds a checkpointed
            run and ``overwrite`` is false; or cannot be written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnetkitError(f"--out: {out} is a file, not a folder; choose another --out")
    state = inspect(out)
    if state.foreign:
        what = _names(state.foreign)
        if state.legacy and all(n in RUN_ENTRIES for n in state.foreign):
            raise UnetkitError(
                f"--out: {out} holds a run without unetkit's {MARKER} (an older unetkit or "
                f"another tool), so unetkit will not delete or overwrite it; continue it with "
                f"--resume {out} or choose another --out"
            )
        if state.is_run:
            raise UnetkitError(
                f"--out: {out} holds a unetkit run and files unetkit did not write ({what}); "
                f"unetkit never deletes those; choose another --out"
            )
        raise UnetkitError(
            f"--out: {out} is not empty and is not a unetkit run ({what}); unetkit never writes "
            f"into or deletes a folder with files it did not write; choose another --out"
        )
    if state.is_run and state.checkpointed and not overwrite:
        raise UnetkitError(
            f"--out: {out} already holds a run; continue it with --resume {out}, choose another "
            f"--out, or replace it with --overwrite (deletes only the files that run wrote)"
        )
    check_writable(out, "--out")
    return state


def new_marker(run_id: str | None = None) -> dict:
    """The marker of a new run (``entries``: what a run may write here, see module doc)."""
    from unetkit.version import __version__

    return {
        "format": MARKER_FORMAT,
        "tool": "unetkit",
        "version": __version__,
        "run_id": run_id or uuid.uuid4().hex,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "entries": list(RUN_ENTRIES),
    }


def write_marker(folder: Path, marker: dict) -> None:
    """Write ``marker`` into ``folder`` atomically."""
    from unetkit.io.atomic import atomic_save_bytes

    atomic_save_bytes(Path(folder) / MARKER, (json.dumps(marker, indent=1) + "\n").encode())


def discard_old_run(out: Path) -> list[str]:
    """Remove the entries of the unetkit run in ``out`` that its marker lists (``--overwrite``,
    once the new run has passed its preflight); everything else is left alone. Returns the
    names removed.

    The entries are first moved into one hidden ``.unetkit-replaced-*.tmp`` folder inside
    ``out`` and then deleted, so a crash leaves them there (removed by the next ``--resume``),
    never mixed into the new run.

    Raises:
        UnetkitError: ``out`` holds entries that unetkit did not write (re-checked here).
    """
    out = Path(out)
    state = inspect(out)
    if not state.exists:
        return []
    if state.foreign:
        raise UnetkitError(
            f"--out: {out} holds files unetkit did not write ({_names(state.foreign)}); "
            f"nothing was deleted; choose another --out"
        )
    doomed = [n for n in state.own if n not in (MARKER, LOCK)]
    if not doomed:
        return []
    aside = Path(tempfile.mkdtemp(dir=out, prefix=".unetkit-replaced-", suffix=".tmp"))
    for name in doomed:
        os.rename(out / name, aside / name)
    shutil.rmtree(aside, ignore_errors=True)
    return doomed


def adopt_legacy_run(folder: Path) -> dict:
    """Give a marker-less run folder of an older unetkit (being resumed) a marker that lists
    only the run entries it already holds, so user files in it stay foreign. Returns it."""
    folder = Path(folder)
    present = [n for n in RUN_ENTRIES if (folder / n).exists()]
    marker = {**new_marker(), "adopted": present}
    write_marker(folder, marker)
    return marker


__all__ = [
    "LOCK",
    "MARKER",
    "RUN_ENTRIES",
    "FolderState",
    "adopt_legacy_run",
    "check_new_run_folder",
    "check_writable",
    "discard_old_run",
    "holds_run",
    "inspect",
    "new_marker",
    "read_marker",
    "write_marker",
]
