"""The output folder of ``unetkit predict``: what it may write there, and the record of it.

``unetkit predict`` writes only into a folder it owns, and replaces only files it wrote:

* a folder is **owned** when it does not exist yet, is empty, or holds the manifest
  ``OUT/.unetkit-predict.json`` of an earlier ``unetkit predict``;
* the manifest records, **by name**, every output written there and the model and settings that
  wrote it. A name is recorded just before its file is written, so a killed run leaves no
  unrecorded output behind. During a run the records are appended to a journal
  ``OUT/.unetkit-predict.journal`` (one JSON line per record, synced), which :meth:`close`
  folds into the manifest at the end; a killed run's journal is read back by the next run.
  Recording costs the same for the ten-thousandth image as for the first (rewriting the whole
  manifest for every image made a run of n images cost O(n^2): 8.8 s of 2000 images);
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
import os
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError
from unetkit.io.atomic import atomic_write

log = logging.getLogger(__name__)

MANIFEST = ".unetkit-predict.json"
JOURNAL = ".unetkit-predict.journal"
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
    _keys: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _nfc: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _listings: dict[Path, dict[str, Path]] = field(default_factory=dict, init=False, repr=False)
    _journaled: bool = field(default=False, init=False, repr=False)
    _replayed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in self.outputs:
            self._keys[name_key(name)] = name
            self._nfc[unicodedata.normalize("NFC", name)] = name

    @property
    def manifest(self) -> Path:
        """``OUT/.unetkit-predict.json``."""
        return self.root / MANIFEST

    @property
    def journal(self) -> Path:
        """``OUT/.unetkit-predict.journal``: the records not yet folded into the manifest."""
        return self.root / JOURNAL

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
        if manifest.is_file() or (root / JOURNAL).is_file():
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
        def unreadable(path: Path, why: str) -> UnetkitError:
            return UnetkitError(
                f"{path}: {why}, so unetkit cannot tell which files in {root} it wrote; choose "
                f"another --out folder"
            )

        folder = cls(root)
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise unreadable(manifest, f"unreadable ({exc.__class__.__name__})") from None
            if not isinstance(data, dict):
                raise unreadable(manifest, "is not a manifest of unetkit predict")
            settings, outputs = data.get("settings", {}), data.get("outputs", {})
            if data.get("written_by") == WRITTEN_BY:
                if not isinstance(settings, dict) or not isinstance(outputs, dict):
                    raise unreadable(manifest, "is not a manifest of unetkit predict")
                folder = cls(root, dict(settings), {str(k): str(v) for k, v in outputs.items()})
            elif "model_sha256" not in data:  # (an earlier unetkit's recorded no names)
                raise unreadable(manifest, "is not a manifest of unetkit predict")
        journal = root / JOURNAL
        if journal.is_file():
            folder._replay(journal, unreadable)
        return folder

    def _replay(self, journal: Path, unreadable: Callable[[Path, str], UnetkitError]) -> None:
        """Apply a killed run's journal; its last line may be cut short (the run was killed
        while recording it, before the files it names were written) and is then ignored."""
        try:
            lines = journal.read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as exc:
            raise unreadable(journal, f"unreadable ({exc.__class__.__name__})") from None
        for i, line in enumerate(lines):
            try:
                entry = json.loads(line)
                settings, outputs = dict(entry["settings"]), dict(entry["outputs"])
            except (ValueError, KeyError, TypeError):
                if i == len(lines) - 1:
                    break
                raise unreadable(journal, f"line {i + 1} is damaged") from None
            self.settings.update(settings)
            self._put(outputs)
        self._journaled = self._replayed = True

    def _put(self, outputs: Mapping[str, str]) -> None:
        """Record names in memory (one name per :func:`name_key`, the newest spelling)."""
        for rel, digest in outputs.items():
            old = self._keys.get(name_key(rel))
            if old is not None:
                del self.outputs[old]
                self._nfc.pop(unicodedata.normalize("NFC", old), None)
            self.outputs[rel] = str(digest)
            self._keys[name_key(rel)] = rel
            self._nfc[unicodedata.normalize("NFC", rel)] = rel

    def owner(self, rel: str) -> str | None:
        """The settings digest that wrote ``rel`` (a relative POSIX name, compared after NFC
        normalisation but with its case), or None."""
        name = self._nfc.get(unicodedata.normalize("NFC", rel))
        return None if name is None else self.outputs[name]

    def existing(self, rel: str) -> Path | None:
        """The file that ``rel`` would replace (same name up to NFC and case), or None.

        Each folder is listed once until the next :meth:`record` (the checks of a run's many
        outputs cost one listing, not one per output)."""
        path = self.root / rel
        folder = path.parent
        listing = self._listings.get(folder)
        if listing is None:
            if not folder.is_dir():
                return None
            listing = {name_key(e.name): e for e in folder.iterdir()}
            self._listings[folder] = listing
        return listing.get(name_key(path.name))

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
        """Record ``rels`` as written by ``identity`` (before they are written): one synced
        line appended to the journal; :meth:`close` folds it into the manifest."""
        if self._replayed:  # a killed run's journal (maybe a cut last line): fold it first
            self.close()
            self._replayed = False
        outputs = {rel: digest for rel in rels}
        self.settings[digest] = dict(identity)
        self._put(outputs)
        self._listings.clear()  # the files recorded are about to be written
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"settings": {digest: self.settings[digest]}, "outputs": outputs})
        with self.journal.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._journaled = True

    def close(self) -> None:
        """Fold the journal into the manifest (written atomically), then remove the journal.

        Call at the end of a run, also one that failed: what was recorded stays recorded."""
        if not self._journaled:
            return
        data = {
            "written_by": WRITTEN_BY,
            "format": 2,
            "settings": self.settings,
            "outputs": dict(sorted(self.outputs.items())),
        }
        with atomic_write(self.manifest, "w") as fh:
            json.dump(data, fh, indent=1)
        self.journal.unlink(missing_ok=True)
        self._journaled = False

    def remove_own_temporaries(self) -> None:
        """Delete temporaries that a killed run left of outputs it recorded (``.NAME.*.tmp``).

        Temporary files of other names (other programs') are left alone. Each folder is
        listed once."""
        by_folder: dict[Path, set[str]] = {}
        for rel in [*self.outputs, MANIFEST]:
            path = self.root / rel
            by_folder.setdefault(path.parent, set()).add(path.name)
        for folder, names in by_folder.items():
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                n = entry.name
                if not (n.startswith(".") and n.endswith(".tmp") and "." in n[1:-4]):
                    continue
                if n[1:-4].rsplit(".", 1)[0] not in names:
                    continue
                try:
                    entry.unlink()
                except OSError:
                    log.warning("could not remove the stale temporary file %s", entry)
