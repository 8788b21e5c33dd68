"""`unetkit report` refused before anything is written."""

from __future__ import annotations

from pathlib import Path

from catalogue_kit import CliCase


def _folder(tmp: Path) -> list[str]:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "todo.txt").write_text("x")
    return ["report", "notes", "--out", "r.html"]


CASES: list[CliCase] = [
    CliCase(
        "cli report",
        "a folder that is not a run",
        _folder,
        ("notes: not a unetkit run (no config.yaml and model.safetensors)",),
    ),
]
