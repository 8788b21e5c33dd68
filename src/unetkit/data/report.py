"""What checking a dataset finds: its image/mask pairs and the :class:`DatasetReport`.

:func:`unetkit.data.dataset.check_dataset` fills the report; ``unetkit check-data`` prints
:meth:`DatasetReport.format` or :meth:`DatasetReport.to_dict` as JSON.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetkit.data.declaration import KEYS, DatasetDeclaration


@dataclass(frozen=True)
class Pair:
    """Files of one sample: ``images/<stem>.*``, ``masks/<stem>.*``, ``instances/<stem>.*``."""

    stem: str
    image: Path
    mask: Path
    instances: Path | None = None


@dataclass
class DatasetReport:
    """What :func:`check_dataset` found.

    Attributes:
        root: the dataset folder.
        pairs: matched pairs, sorted by stem.
        sizes: spatial shape per stem (readable pairs only).
        channels: image channel count per stem.
        class_frequencies: share of all mask pixels per class ``0..num_classes-1``.
        num_classes: as given, else max label + 1.
        problems: errors that make the dataset unusable, each naming a file.
        warnings: suspicious but usable.
        notes: information (e.g. 0/255 masks mapped to 0/1).
        declaration: the folder's ``dataset.yaml`` (class names, ignore label, ...), if any.
    """

    root: Path
    pairs: list[Pair] = field(default_factory=list)
    sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    class_frequencies: dict[int, float] = field(default_factory=dict)
    num_classes: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    declaration: DatasetDeclaration | None = None

    @property
    def ok(self) -> bool:
        """True when there are no problems (warnings are allowed)."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "root": str(self.root),
            "ok": self.ok,
            "pairs": len(self.pairs),
            "sizes": {k: list(v) for k, v in self.sizes.items()},
            "channels": self.channels,
            "num_classes": self.num_classes,
            "class_frequencies": {str(k): v for k, v in self.class_frequencies.items()},
            "problems": self.problems,
            "warnings": self.warnings,
            "notes": self.notes,
            **(self.declaration.to_dict() if self.declaration is not None else dict.fromkeys(KEYS)),
        }

    def format(self) -> str:
        """A readable multi-line summary."""
        lines = [f"dataset {self.root}: {len(self.pairs)} pairs"]
        if self.sizes:
            shapes = Counter(self.sizes.values())
            shown = ", ".join(f"{'x'.join(map(str, s))} ({n})" for s, n in shapes.most_common(5))
            more = f" and {len(shapes) - 5} more" if len(shapes) > 5 else ""
            lines.append(f"  sizes: {shown}{more}")
            chans = Counter(self.channels.values())
            lines.append("  channels: " + ", ".join(f"{c} ({n})" for c, n in sorted(chans.items())))
        if self.class_frequencies:
            lines.append(f"  classes: {self.num_classes}")
            d = self.declaration
            names = d.class_names if d is not None and d.class_names else ()
            for k, share in self.class_frequencies.items():
                name = f" {names[k]}" if k < len(names) else ""
                void = " (ignored)" if d is not None and d.ignore_index == k else ""
                lines.append(f"    {k}{name}: {100 * share:.2f}% of pixels{void}")
        if self.declaration is not None:
            lines.append(f"  {self.declaration.describe()}")
        for title, items in (
            ("notes", self.notes),
            ("warnings", self.warnings),
            ("problems", self.problems),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    - {item}" for item in items)
        lines.append("OK" if self.ok else f"NOT OK: {len(self.problems)} problem(s)")
        return "\n".join(lines)


__all__ = ["DatasetReport", "Pair"]
