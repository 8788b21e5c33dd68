"""Write an experiment's numbers (JSON), figure (PNG) and paragraph (Markdown); stitch a report."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unetkit.io.atomic import atomic_save_bytes
from unetkit.lab.common import ExperimentResult, LabSettings


def _jsonable(value: Any) -> Any:
    """Plain JSON: NaN/inf become ``None``, tuples lists, NumPy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_result(result: ExperimentResult, out: Path, settings: LabSettings) -> list[Path]:
    """Write ``out/NAME.json``, ``out/NAME.png`` and ``out/NAME.md``; returns their paths.

    Each file is written atomically, so an interrupted run leaves no half-written file.
    """
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "experiment": result.name,
        "principles": list(result.principles),
        "quick": settings.quick,
        "seed": settings.seed,
        "headline": result.headline,
        "numbers": result.numbers,
    }
    paths = [out / f"{result.name}.json", out / f"{result.name}.png", out / f"{result.name}.md"]
    text = json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n"
    atomic_save_bytes(paths[0], text.encode())
    buf = io.BytesIO()
    result.figure.savefig(buf, format="png", dpi=110)
    atomic_save_bytes(paths[1], buf.getvalue())
    md = f"{result.markdown}\n\n![{result.name}]({result.name}.png)\n"
    atomic_save_bytes(paths[2], md.encode())
    return paths


def write_report(
    results: Sequence[ExperimentResult], out: Path, settings: LabSettings, seconds: dict[str, float]
) -> Path:
    """Write ``out/report.md``: a headline table, then each experiment's paragraph and figure."""
    kind = "quick" if settings.quick else "full"
    lines = [
        "# unetkit lab: why the U-Net works",
        "",
        f"Every number below was measured by `unetkit lab all --out {out}"
        f"{' --quick' if settings.quick else ''} --seed {settings.seed}` ({kind} runs). "
        "The numbers are in `EXPERIMENT.json`, the figures in `EXPERIMENT.png`.",
        "",
        "| experiment | principles | headline | seconds |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| [{r.name}](#{r.name}) | {', '.join(r.principles)} | {r.headline} | "
            f"{seconds.get(r.name, float('nan')):.0f} |"
        )
    for r in results:
        lines += ["", f"## {r.name}", "", r.markdown, "", f"![{r.name}]({r.name}.png)"]
    path = out / "report.md"
    atomic_save_bytes(path, ("\n".join(lines) + "\n").encode())
    return path
