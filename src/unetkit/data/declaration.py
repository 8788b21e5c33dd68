"""``dataset.yaml``: what only a dataset's author knows, declared next to ``images/`` and
``masks/``.

Every key is optional; a dataset without the file behaves as before::

    class_names: [void, sky, building, pole, road, pavement, tree, sign, fence, car,
                  pedestrian, bicyclist]      # one name per label 0..K-1
    ignore_index: 0                           # a label excluded from loss and metrics (void)
    modality: photo                           # free text (e.g. CT, MR, EM, fluorescence)
    spacing: [1.0, 1.0]                       # physical size of a pixel per spatial axis

``check-data`` reports it and checks the masks against it, ``train`` fills
``data.class_names`` and ``data.ignore_index`` from it (unless the user set them;
:func:`unetkit.train.recipe.apply_declaration`), and
``evaluate`` names the classes and leaves the ignore label out. ``modality`` and ``spacing``
are validated and kept for the volume work; nothing uses them yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetkit.errors import DataError

DECLARATION_FILE = "dataset.yaml"
KEYS = ("class_names", "ignore_index", "modality", "spacing")


@dataclass(frozen=True)
class DatasetDeclaration:
    """The contents of a ``dataset.yaml`` (every field optional).

    Attributes:
        class_names: one name per label ``0..K-1`` (unique, non-empty), or ``None``.
        ignore_index: the void label, ``0..K-1`` when names are given, or ``None``.
        modality: free text describing the imaging modality, or ``None``.
        spacing: physical pixel size per spatial axis (positive, 1 to 3 values), or ``None``.
        path: the file it was read from (``None`` when built in code).
    """

    class_names: tuple[str, ...] | None = None
    ignore_index: int | None = None
    modality: str | None = None
    spacing: tuple[float, ...] | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        where = f"{self.path}: " if self.path is not None else ""
        names = self.class_names
        if names is not None:
            if not isinstance(names, tuple | list) or not all(
                isinstance(n, str) and n.strip() for n in names
            ):
                raise DataError(
                    f"{where}class_names: expected a list of non-empty names (one per label "
                    f"0..K-1), got {names!r}"
                )
            names = tuple(n.strip() for n in names)
            if len(names) < 2:
                raise DataError(f"{where}class_names: expected at least 2 names, got {names!r}")
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise DataError(
                    f"{where}class_names: names must be unique; {', '.join(dupes)} repeated"
                )
            object.__setattr__(self, "class_names", names)
        ignore = self.ignore_index
        if ignore is not None:
            if isinstance(ignore, bool) or not isinstance(ignore, int) or ignore < 0:
                raise DataError(
                    f"{where}ignore_index: expected a label >= 0 (an integer), got {ignore!r}"
                )
            if names is not None and ignore >= len(names):
                raise DataError(
                    f"{where}ignore_index: {ignore} is out of range for {len(names)} class "
                    f"names (labels 0..{len(names) - 1}); give the void label's index"
                )
        if self.modality is not None and (
            not isinstance(self.modality, str) or not self.modality.strip()
        ):
            raise DataError(f"{where}modality: expected a non-empty text, got {self.modality!r}")
        if self.spacing is not None:
            values = self.spacing
            ok = (
                isinstance(values, tuple | list)
                and 1 <= len(values) <= 3
                and all(
                    isinstance(v, int | float)
                    and not isinstance(v, bool)
                    and math.isfinite(v)
                    and v > 0
                    for v in values
                )
            )
            if not ok:
                raise DataError(
                    f"{where}spacing: expected 1 to 3 positive numbers (one per spatial axis), "
                    f"got {values!r}"
                )
            object.__setattr__(self, "spacing", tuple(float(v) for v in values))

    @property
    def num_classes(self) -> int | None:
        """``len(class_names)``, or ``None`` without names."""
        return None if self.class_names is None else len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """The declared keys as plain data (``None`` where not declared)."""
        return {
            "class_names": list(self.class_names) if self.class_names else None,
            "ignore_index": self.ignore_index,
            "modality": self.modality,
            "spacing": list(self.spacing) if self.spacing else None,
        }

    def describe(self) -> str:
        """One line saying what the file declares."""
        parts = []
        if self.class_names:
            parts.append(f"{len(self.class_names)} class names")
        if self.ignore_index is not None:
            parts.append(f"ignore_index {self.ignore_index}")
        if self.modality:
            parts.append(f"modality {self.modality}")
        if self.spacing:
            parts.append(f"spacing {' x '.join(f'{v:g}' for v in self.spacing)}")
        return f"{DECLARATION_FILE}: " + (", ".join(parts) if parts else "empty")

    def check_labels(self, largest_label: int) -> str | None:
        """A problem line when a mask label has no name (``largest_label >= K``), else None."""
        k = self.num_classes
        if k is None or largest_label < k:
            return None
        return (
            f"{self.path or DECLARATION_FILE}: class_names has {k} names (labels 0..{k - 1}) "
            f"but the masks contain label {largest_label}; add the missing names"
        )


def read_declaration(root: str | Path) -> DatasetDeclaration | None:
    """The ``dataset.yaml`` of dataset folder ``root``; ``None`` when there is none.

    Raises :class:`DataError` (one line naming the file) for YAML that does not parse, a
    top level that is not a mapping, unknown keys or bad values.
    """
    import yaml

    path = Path(root) / DECLARATION_FILE
    if not path.is_file():
        return None
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise DataError(f"{path}: not valid YAML{at} ({problem}); fix the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a mapping of keys ({', '.join(KEYS)}), got {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in data if k not in KEYS)
    if unknown:
        raise DataError(
            f"{path}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(KEYS)}"
        )
    spacing = data.get("spacing")
    names = data.get("class_names")
    return DatasetDeclaration(
        class_names=tuple(names) if isinstance(names, list) else names,
        ignore_index=data.get("ignore_index"),
        modality=data.get("modality"),
        spacing=tuple(spacing) if isinstance(spacing, list) else spacing,
        path=path,
    )


def declaration_of(folder: str | Path) -> DatasetDeclaration | None:
    """The declaration for ``folder`` when it is a dataset folder, or a ``masks/`` (or
    ``images/``) folder inside one; ``None`` when there is none."""
    folder = Path(folder)
    found = read_declaration(folder)
    if found is None and folder.name in ("masks", "images", "instances"):
        found = read_declaration(folder.parent)
    return found
