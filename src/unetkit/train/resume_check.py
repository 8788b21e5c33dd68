"""``--resume`` means the same run: options that contradict the stored run are refused.

A resumed run keeps every setting of its ``config.yaml``. Options given with ``--resume`` are
compared with it: an equal value is fine, a different one is a conflict, except for the few
settings that may change mid-run (:data:`MUTABLE`: the time budget, the schedule length, threads
and checkpoint frequency). ``--data`` is the documented way to point a run at its dataset after
the folder moved: it is accepted when the new folder holds the same files (names and sizes, a
fingerprint stored in the run's marker), else refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from unetkit.configtools import to_dict
from unetkit.errors import UnetkitError

#: Settings that may differ from the stored run when resuming, with the option that sets them.
MUTABLE = {
    "train.max_minutes": "--max-minutes",
    "train.epochs": "--epochs",
    "train.total_steps": "train.total_steps",
    "train.threads": "train.threads",
    "train.checkpoint_every": "train.checkpoint_every",
    "train.keep_checkpoints": "train.keep_checkpoints",
    "train.device": "--device",
    "train.prefetch": "train.prefetch",
}
OPTION_NAMES = {
    "data.path": "--data",
    "train.batch_size": "--batch-size",
    "data.patch_size": "--patch-size",
    "train.loss": "--loss",
    "train.seed": "--seed",
    "train.deterministic": "--deterministic",
    "train.epochs": "--epochs",
    "train.max_minutes": "--max-minutes",
}


def _get(data: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _text(value: Any) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def _shown(key: str, value: Any) -> str:
    option = OPTION_NAMES.get(key)
    return f"{option} {_text(value)}" if option else f"{key}={_text(value)}"


def data_fingerprint(folder: str | os.PathLike[str]) -> str | None:
    """SHA-256 over the relative paths and sizes of the files of a dataset folder (hidden files
    skipped); ``None`` when it is not a folder."""
    root = Path(folder)
    if not root.is_dir():
        return None
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            try:
                size = p.stat().st_size
            except OSError:
                continue
            lines.append(f"{p.relative_to(root).as_posix()}\t{size}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def resume_conflicts(stored: Any, requested: Any, explicit: set[str]) -> list[str]:
    """Settings the user gave (``explicit`` dotted keys of ``requested``) that differ from the
    ``stored`` run config, as ``"--batch-size 8 (run: 4)"``; :data:`MUTABLE` keys and
    ``data.path`` (checked by :func:`check_data_relocation`) are not conflicts."""
    s, r = to_dict(stored), to_dict(requested)
    out = []
    for key in sorted(explicit):
        if key in MUTABLE or key == "data.path":
            continue
        mine, theirs = _get(r, key), _get(s, key)
        if mine != theirs:
            out.append(f"{_shown(key, mine)} (run: {_text(theirs)})")
    return out


def check_resume_options(run: Path, stored: Any, requested: Any, explicit: set[str]) -> None:
    """Refuse ``--resume RUN`` with options that conflict with the stored run, listing them.

    Raises:
        UnetkitError: one or more conflicts.
    """
    conflicts = resume_conflicts(stored, requested, explicit)
    if not conflicts:
        return
    changeable = ", ".join(dict.fromkeys(MUTABLE.values()))
    raise UnetkitError(
        f"--resume: {run}: {len(conflicts)} option(s) differ from the stored run: "
        f"{'; '.join(conflicts)}. A resumed run keeps its settings (only {changeable}, "
        f"--stop-after and --quiet may change); to train with other settings, start a new run "
        f"with another --out"
    )


def check_data_relocation(
    run: Path, stored_path: str | None, given: str | None, fingerprint: str | None
) -> str | None:
    """The data folder a resumed run reads: the stored one, or ``given`` (``--data``) when it
    holds the same files. Returns the resolved path (``None`` for synthetic data).

    ``fingerprint`` is the run's stored :func:`data_fingerprint` (``None`` for runs from before
    it was recorded: then the stored folder, if it still exists, is compared instead).

    Raises:
        UnetkitError: the stored folder is gone and no ``--data`` was given; ``--data`` holds
            other files than the run's data; ``--data`` given for a synthetic run.
    """
    if given is None:
        if stored_path is not None and not Path(stored_path).is_dir():
            raise UnetkitError(
                f"--resume: {run}: its data folder {stored_path} does not exist (moved?); give "
                f"its new place with --data DIR (it must hold the same files)"
            )
        return stored_path
    new = str(Path(given).resolve())
    if stored_path is None:
        raise UnetkitError(f"--data: {run} was trained on synthetic data; resume it without --data")
    if new == str(Path(stored_path).resolve()):
        return stored_path
    if not Path(new).is_dir():
        raise UnetkitError(f"--data: {given}: no such folder")
    reference = fingerprint or data_fingerprint(stored_path)
    if reference is not None and data_fingerprint(new) != reference:
        raise UnetkitError(
            f"--data: {given} does not hold the same files (names and sizes) as the data of "
            f"{run} ({stored_path}); a resumed run keeps its data. Start a new run with another "
            f"--out to train on other data"
        )
    return new


__all__ = [
    "MUTABLE",
    "check_data_relocation",
    "check_resume_options",
    "data_fingerprint",
    "resume_conflicts",
]
