"""``write_report(run, out)``: one self-contained HTML page for a training run.

The page (:mod:`unetkit.report.html`) needs no server and no network: every image is a
``data:`` URI, the styles and the few lines of script (table sorting, overlay opacity) are
inline. It is written atomically; ``unetkit train`` writes ``report.html`` into the run folder
at the end (a failure there is a warning, never a failed run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError
from unetkit.io.atomic import atomic_save_bytes
from unetkit.report.collect import (
    RunContent,
    check_run,
    read_evaluation,
    read_history,
    score_and_draw,
)

REPORT_NAME = "report.html"


def collect(
    run: str | os.PathLike[str],
    evaluation: str | os.PathLike[str] | None = None,
    prepared: Any = None,
) -> RunContent:
    """Read what the report shows (see :mod:`unetkit.report.collect`).

    ``prepared``: the run's :class:`~unetkit.train.prepare.PreparedData` when the caller has it
    (``train`` does); otherwise the data are read again from the run's config, and a report
    without layered overlays is made (with a note) when they cannot be.
    """
    from unetkit.config import load_run_config
    from unetkit.configtools import load_yaml
    from unetkit.export.bioimageio_card import model_card, run_info
    from unetkit.model import summarize
    from unetkit.modelfile import load_with_metadata

    run = Path(run)
    check_run(run)
    evaluation_data = read_evaluation(Path(evaluation)) if evaluation is not None else None
    try:
        config = load_run_config(run / "config.yaml")
        model, metadata = load_with_metadata(run / "model.safetensors")
    except (UnetkitError, ValueError) as exc:
        raise UnetkitError(f"{run}: not a readable unetkit run: {exc}") from None
    k = max(2, model.config.out_channels)
    names = list(metadata.get("class_names") or config.data.class_names or [])
    names = names if len(names) == k else [str(c) for c in range(k)]
    content = RunContent(
        run=run,
        config_yaml=(run / "config.yaml").read_text(encoding="utf-8"),
        config=load_yaml(str(run / "config.yaml")),
        history=read_history(run),
        metadata=metadata,
        architecture=summarize(model.config, metadata.get("patch_size") or None).format_table(),
        class_names=names,
        evaluation=evaluation_data,
    )
    info = run_info(run)
    content.card = model_card(run.resolve().name, model, metadata, [], info)
    if prepared is None:
        try:
            from unetkit.train.prepare import prepare_data

            prepared = prepare_data(config.data, seed=config.train.seed)
        except Exception as exc:  # moved or changed data: a report without the overlays
            content.notes.append(f"validation images not available ({exc}); overlays omitted")
    if prepared is not None:
        content.data_lines = [
            f"source: {prepared.source}",
            f"images: {len(prepared.train)} train / {len(prepared.val)} validation",
            f"channels: {prepared.in_channels}; classes: {prepared.num_classes} "
            f"({', '.join(names)}); {prepared.spatial_dims}D",
            f"normalisation: {prepared.normalization}",
            *[f"note: {n}" for n in prepared.notes],
        ]
        score_and_draw(content, model, prepared)
    else:
        content.data_lines = [f"source: {config.data.path or 'synthetic'}"]
    return content


def write_report(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    evaluation: str | os.PathLike[str] | None = None,
    prepared: Any = None,
) -> Path:
    """Write the report of ``run`` to ``out`` (default ``<run>/report.html``), atomically."""
    from unetkit.report.html import render

    run = Path(run)
    target = Path(out) if out is not None else run / REPORT_NAME
    content = collect(run, evaluation, prepared)
    page = render(content)
    atomic_save_bytes(target, page.encode("utf-8"))
    return target


def write_run_report(run_dir: Path, prepared: Any, *, echo: Any = print) -> None:
    """``report.html`` at the end of ``unetkit train``; a failure is a warning, never a failed
    run. Skipped for older runs whose marker does not list it (a file their ``--overwrite``
    would not know)."""
    import logging

    from unetkit.train.runfolder import read_marker

    marker = read_marker(run_dir) or {}
    if REPORT_NAME not in marker.get("entries", []):
        return
    try:
        write_report(run_dir, prepared=prepared)
    except Exception as exc:  # a report must never fail the run
        logging.getLogger(__name__).warning("warning: %s not written: %s", REPORT_NAME, exc)
        return
    echo(f"report: {run_dir / REPORT_NAME}")


__all__ = ["REPORT_NAME", "collect", "write_report", "write_run_report"]
