"""The output folder of ``unetkit predict``: what it may write there, and the record of it.

``unetkit predict`` writes only into a folder it owns, and replaces only files it wrote:

* a folder is **owned** when it does not exist yet, is empty, or holds the manifest
  ``OUT/.unetkit-predict.json`` of an earlier ``unetkit predict``;
* the manifest records, **by name**, every output written there and the model and settings that
  wrote it. A name is recorded just before its file is written, so a killed run leaves no
  unrecorded output behind;
* an existing file that the manifest does not record is the user's (a mask, a note, another
  program's temporary file) and is never replaced, ``--overwrite`` or not;
* names are compared after Unicode NFC normalisation and case folding (:func:`name_key`), so
  ``a.PNG``/``a.png`` or a decomposed ``é`` are one name on every file system.

Manifest (JSON)::

    {"written_by": "unetkit predict", "format": 2,
     "settings": {DIGEST: {"model_sha256", "tile", "overlap", "tta", "precision"}},
     "outputs": {"a.png": DIGEST, "probabilities/a.npy": DIGEST, ...}}
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError
from unetkit.io.atomic import atomic_write

log = logging.getLogger(__name__)

MANIFEST = ".unetkit-predict.json"
WRITTEN_BY = "unetkit predict"


def name_key(name: str) -> str:
    """The form in which two file names or stems are the same: NFC, then case-folded."""
    return unicodedata.normalize("NFC", name).casefold()


def settings_digest(identity: Mapping[str, Any]) -> str:
    """A short stable digest of the model and settings that wrote an output."""
    text = json.dumps(dict(identity), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_location(out: Path, input_files: Iterable[Path], input_folders: Iterable[Path]) -> None:
    """Refuse an output folder that would mix predictions with inputs or a dataset's masks.

    Refused: ``out`` inside (or equal to) an input folder or the folder of an input file; an
    input inside ``out``; ``out`` being a dataset's ``masks/`` folder (a sibling ``images/``).
    """
    target = out.resolve()
    for folder in input_folders:
        where = folder.resolve()
        if _is_within(target, where):
            raise UnetkitError(
                f"--out {out}: is inside the input folder {folder}; predictions there would mix "
                f"with the images. Choose an --out folder outside it"
            )
    for f in input_files:
        source = f.resolve()
        if target == source.parent:
            raise UnetkitError(
                f"--out {out}: is the folder of the input {f}; predictions there would mix with "
                f"the images. Choose an --out folder outside it"
            )
        if _is_within(source, target):
            raise UnetkitError(
                f"--input {f}: is inside the output folder --out {out}; keep inputs and "
                f"outputs in separate folders"
            )
    if target.name.lower() == "masks" and (target.parent / "images").is_dir():
        raise UnetkitError(
            f"--out {out}: is the masks/ folder of the dataset {target.parent}; predictions "
            f"would mix with its truth masks. Choose another --out folder"
        )


@dataclass
class OutputFolder:
    """An owned output folder and its manifest (see the module doc).

    Attributes:
        root: the folder; ``settings``: digest -> identity; ``outputs``: relative POSIX name ->
            digest of what wrote it.
    """

    root: Path
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def manifest(self) -> Path:
        """``OUT/.unetkit-predict.json``."""
        return self.root / MANIFEST

    @classmethod
    def claim(cls, root: Path) -> OutputFolder:
        """The folder if unetkit may write into it; else :class:`UnetkitError` saying why.

        Nothing is created or written here.
        """
        if root.exists() and not root.is_dir():
            raise UnetkitError(f"--out {root}: is a file, not a folder; choose a folder")
        if not root.exists():
            return cls(root)
        manifest = root / MANIFEST
        if manifest.is_file():
            return cls._load(root, manifest)
        entries = sorted(p.name for p in root.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UnetkitError(
                f"--out {root}: holds {len(entries)} file(s) unetkit predict did not write "
                f"({shown}) and no {MANIFEST}; unetkit writes only into a new or empty folder "
                f"or one of its own. Choose another --out folder"
            )
        return cls(root)

    @classmethod
    def _load(cls, root: Path, manifest: Path) -> OutputFolder:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UnetkitError(
                f"{manifest}: unreadable ({exc.__class__.__name__}), so unetkit cannot tell "
                f"which files in {root} it wrote; choose another --out folder"
            ) from None
        if isinstance(data, dict) and data.get("written_by") == WRITTEN_BY:
            settings = data.get("settings", {})
            outputs = data.get("outputs", {})
            if isinstance(settings, dict) and isinstance(outputs, dict):
                return cls(root, dict(settings), {str(k): str(v) for k, v in outputs.items()})
        if isinstance(data, dict) and "model_sha256" in data:
            return cls(root)  # written by an earlier unetkit that did not record names
        raise UnetkitError(
            f"{manifest}: is not a manifest of unetkit predict, so unetkit cannot tell which "
            f"files in {root} it wrote; choose another --out folder"
        )

    def owner(self, rel: str) -> str | None:
        """The settings digest that wrote ``rel`` (a relative POSIX name, compared after NFC
        normalisation but with its case), or None."""
        key = unicodedata.normalize("NFC", rel)
        for name, digest in self.outputs.items():
            if unicodedata.normalize("NFC", name) == key:
                return digest
        return None

    def existing(self, rel: str) -> Path | None:
        """The file that ``rel`` would replace (same name up to NFC and case), or None."""
        path = self.root / rel
        folder = path.parent
        if not folder.is_dir():
            return None
        key = name_key(path.name)
        for entry in folder.iterdir():
            if name_key(entry.name) == key:
                return entry
        return None

    def check(self, rels: Iterable[str], digest: str, *, overwrite: bool) -> bool:
        """Whether every one of ``rels`` is a finished output of ``digest`` (skip the input).

        Raises:
            UnetkitError: one of them exists and unetkit did not write it; or it was written by
                other settings and ``overwrite`` is off.
        """
        done = True
        for rel in rels:
            found = self.existing(rel)
            if found is None:
                done = False
                continue
            owner = self.owner(found.relative_to(self.root).as_posix())
            if owner is None or not found.is_file():
                raise UnetkitError(
                    f"{found}: exists and was not written by unetkit predict (it is not "
                    f"recorded in {self.manifest}); unetkit never replaces it, --overwrite or "
                    f"not. Move it out of the way or choose another --out folder"
                )
            if owner != digest:
                if not overwrite:
                    raise UnetkitError(
                        f"--out {self.root}: {found.name} was predicted with another model or "
                        f"other settings; use --overwrite to replace the outputs unetkit wrote "
                        f"there, or choose another --out folder"
                    )
                done = False
        return done and not overwrite

    def record(self, rels: Iterable[str], digest: str, identity: Mapping[str, Any]) -> None:
        """Record ``rels`` as written by ``identity`` (before they are written)."""
        self.settings[digest] = dict(identity)
        for rel in rels:
            for name in [n for n in self.outputs if name_key(n) == name_key(rel)]:
                del self.outputs[name]
            self.outputs[rel] = digest
        self.root.mkdir(parents=True, exist_ok=True)
        data = {
            "written_by": WRITTEN_BY,
            "format": 2,
            "settings": self.settings,
            "outputs": dict(sorted(self.outputs.items())),
        }
        with atomic_write(self.manifest, "w") as fh:
            json.dump(data, fh, indent=1)

    def remove_own_temporaries(self) -> None:
        """Delete temporaries that a killed run left of outputs it recorded (``.NAME.*.tmp``).

        Temporary files of other names (other programs') are left alone."""
        for rel in [*self.outputs, MANIFEST]:
            path = self.root / rel
            if not path.parent.is_dir():
                continue
            for tmp in path.parent.glob(f".{_glob_escape(path.name)}.*.tmp"):
                try:
                    tmp.unlink()
                except OSError:
                    log.warning("could not remove the stale temporary file %s", tmp)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)
